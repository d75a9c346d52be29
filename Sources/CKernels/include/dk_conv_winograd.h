#ifndef DK_CONV_WINOGRAD_H
#define DK_CONV_WINOGRAD_H
#include <stddef.h>
#include "dk_conv.h"

// A 3×3 convolution (stride 1, no dilation) followed by a 2×2 max-pooling at stride 2, by
// Winograd's minimal filtering F(2×2, 3×3) (Lavin and Gray, "Fast Algorithms for Convolutional
// Neural Networks", CVPR 2016): each 2×2 block of convolution outputs, which is exactly one
// pooling window, comes from a 4×4 input patch with 16 multiplications per input and output
// channel instead of 36, and is pooled in registers. Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A, summed over
// the input channels, with
//   Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1],
//   Aᵀ = [1 1 1 0; 0 1 -1 -1].
// Results differ from the direct convolution's by float rounding only.

/// Whether `dk_conv2d_maxpool2_winograd_nhwc` runs `shape` on this CPU: a 3×3 kernel at stride 1
/// without dilation, 2-64 input channels, and AVX2 as the best instruction set (CPUs with AVX-512
/// keep the direct kernels: not yet compared there).
int dk_conv2d_maxpool2_winograd_applies(const dk_conv_shape *shape);

/// Floats of the transformed weight: 16 × channels × padded_out.
size_t dk_winograd_weight_count(const dk_conv_shape *shape);

/// `u` [16][channels][padded_out] = G g Gᵀ for each input and output channel of `w_packed`
/// ([3][3][channels][padded_out], as `dk_conv2d_nhwc` takes it).
void dk_winograd_pack(const dk_conv_shape *shape, const float *w_packed, float *u);

/// `dk_conv2d_maxpool2_nhwc` for a shape that `dk_conv2d_maxpool2_winograd_applies` accepts, from
/// the transformed weight `u`; returns -1 (and does nothing) for any other.
int dk_conv2d_maxpool2_winograd_nhwc(const dk_conv_shape *shape, const float *x, const float *u,
                                     const float *bias_padded, float *y, int relu);

#endif
