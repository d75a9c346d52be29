#ifndef DK_KERNELS_H
#define DK_KERNELS_H
#include <stddef.h>

/// One Adam update of n parameters, in place (PyTorch's formula, L2 decay `l2` added to the
/// gradient): m = b1*m + (1-b1)*g', v = b2*v + (1-b2)*g'*g', w -= step_size*m / (sqrt(v)*inv_sqrt_c2 + eps)
/// with g' = g + l2*w. Vectorised for the CPU found at run time (AVX-512, AVX2 or SSE2) with no
/// fused multiply-adds, so every CPU gives the same bits.
void dk_adam_update(float *w, const float *g, float *m, float *v, size_t n,
                    float b1, float b2, float l2, float step_size, float inv_sqrt_c2, float eps);

/// The same update with one instruction set forced (0: SSE2, 1: AVX2, 2: AVX-512), for tests;
/// returns -1 (and does nothing) when this CPU lacks it.
int dk_adam_update_level(int level, float *w, const float *g, float *m, float *v, size_t n,
                         float b1, float b2, float l2, float step_size, float inv_sqrt_c2, float eps);

#endif
