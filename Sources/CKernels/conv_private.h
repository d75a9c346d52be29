// Pieces shared by conv_pointwise.c and conv_block.c (private: not part of the CKernels module's
// public headers).
#ifndef DK_CONV_PRIVATE_H
#define DK_CONV_PRIVATE_H

#include <stddef.h>

/// `dk_pointwise_conv_level` at the AVX2 + FMA level (dk_conv_pointwise.h), with x's channels
/// `x_stride` floats apart and y's (and the residual's) `y_stride` apart, so that a band of rows
/// of a larger image can be read or written in place. Returns -1 (having done nothing) when the
/// CPU lacks AVX2 + FMA or the packing buffer cannot be allocated; 0 otherwise.
int dk_pointwise_avx2_strided(size_t m, size_t channels, size_t pixels, size_t x_stride, size_t y_stride, const float *w,
                              const float *x, const float *bias, const float *residual, float *y, int activation,
                              float lo, float hi);

#endif
