#ifndef DK_CONV_POINTWISE_H
#define DK_CONV_POINTWISE_H
#include <stddef.h>

/// One image's 1×1 convolution (stride 1, no padding) in NCHW layout:
/// y[o, p] = activation(bias[o] + residual[o, p] + Σ_k w[o, k] · x[k, p])
/// for o < m output channels, p < pixels, k < channels; w [m, channels], x [channels, pixels],
/// y and residual [m, pixels]; bias and residual may be NULL. `activation` is a
/// `dk_activation` (dk_conv_depthwise.h), `lo`/`hi` the Clip limits.
///
/// MobileNet's and EfficientNet's expand and project layers have few input channels (16 to 960)
/// against many pixels: a GEMM library packs both operands on every call and writes the output
/// before a separate pass adds the residual and activates it. Here each strip of pixels of x
/// (channels × 48 or 16 floats) stays in cache while every block of output channels is
/// accumulated in registers; bias, residual, Relu and Clip are applied
/// there before the single store (Sigmoid, SiLU and HardSwish right after, on the block while in
/// cache). Products are summed in k order from bias + residual, so results differ from a GEMM
/// library's only by rounding.
///
/// `level`: -1 for the best this CPU has, AVX-512 (2: tiles of 8 channels × 48 pixels read
/// straight from the image) or AVX2 + FMA (1: tiles of 6 × 16 over a packed copy of each column
/// block); or that level, for tests. There is no portable level: returns -1 (and does nothing)
/// when this CPU lacks the level, or when the AVX2 level's packing buffer cannot be allocated,
/// for the caller to use BLAS instead; 0 otherwise.
int dk_pointwise_conv_level(int level, size_t m, size_t channels, size_t pixels, const float *w, const float *x,
                            const float *bias, const float *residual, float *y, int activation, float lo, float hi);

#endif
