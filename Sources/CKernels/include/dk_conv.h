#ifndef DK_CONV_H
#define DK_CONV_H
#include <stddef.h>

// Convolution and pooling of one image in NHWC layout (channels innermost), for the inference
// plan of CNN students (Sources/DistillNN/ConvInferencePlan.swift). Activations are dense along
// a row (pixel stride = channels) with a row stride of their own, so that a producer can write
// straight into the interior of a zero-bordered buffer that the next convolution reads as its
// padding.

/// The sizes of one convolution of one image.
typedef struct dk_conv_shape {
    /// Input channels, and floats from one input row to the next (padded width × channels).
    size_t channels, in_row_stride;
    size_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
    /// Output channels, the same rounded up to a multiple of 16 (the packed weight's row), output
    /// extent, and floats from one output row to the next (at least out_w × out_channels).
    size_t out_channels, padded_out, out_h, out_w, out_row_stride;
} dk_conv_shape;

/// y[oy][ox][o] = bias[o] + sum over (ky, kx, c) of x[oy*sh + ky*dh][ox*sw + kx*dw][c] * w[ky][kx][c][o],
/// then max(y, 0) when `relu`. `x` points at row 0, column 0 of the already padded input (no
/// bounds are checked: the caller's buffer holds the zero border); `w_packed` is
/// [kernel_h][kernel_w][channels][padded_out] with zero columns past out_channels, `bias_padded`
/// is [padded_out] or NULL. Vectorised over output channels for AVX-512 (fused multiply-adds),
/// with a portable loop elsewhere; results agree with other summation orders to float rounding.
void dk_conv2d_nhwc(const dk_conv_shape *shape, const float *x, const float *w_packed,
                    const float *bias_padded, float *y, int relu);

/// `dk_conv2d_nhwc` with one code path forced (0: portable, 1: AVX2 + FMA, 2: AVX-512), for tests; returns -1
/// (and does nothing) when this CPU lacks it.
int dk_conv2d_nhwc_level(int level, const dk_conv_shape *shape, const float *x, const float *w_packed,
                         const float *bias_padded, float *y, int relu);

/// `dk_conv2d_nhwc` then a 2×2 max-pooling at stride 2 (floor: a last odd row or column of the
/// convolution is dropped), then max(y, 0) when `relu`, in one pass: the convolution's output
/// never reaches memory. `shape->out_h` and `out_w` are the convolution's extent;
/// `shape->out_row_stride` is the pooled output's row stride. Vectorised (AVX-512 or AVX2) when the
/// input has one channel and rows have stride 1 (a grayscale image's first layer), for AVX2 when
/// it has several; portable loops otherwise.
void dk_conv2d_maxpool2_nhwc(const dk_conv_shape *shape, const float *x, const float *w_packed,
                             const float *bias_padded, float *y, int relu);

/// `dk_conv2d_maxpool2_nhwc` with one code path forced (0: portable, 1: AVX2 + FMA, 2: AVX-512), for tests;
/// returns -1 (and does nothing) when this CPU or this shape lacks it.
int dk_conv2d_maxpool2_nhwc_level(int level, const dk_conv_shape *shape, const float *x, const float *w_packed,
                                  const float *bias_padded, float *y, int relu);

/// 1 when `dk_conv2d_maxpool2_nhwc` has a fused kernel for `shape` on this CPU (one input channel
/// with AVX2 or AVX-512; several with AVX2), 0 when it would run the portable loops: a plan then
/// keeps the convolution and the pooling apart.
int dk_conv2d_maxpool2_nhwc_is_fused(const dk_conv_shape *shape);

/// The sizes of one pooling of one image.
typedef struct dk_pool_shape {
    /// Channels (the pixel stride of input and output), input extent and row stride.
    size_t channels, in_h, in_w, in_row_stride;
    size_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
    size_t out_h, out_w, out_row_stride;
} dk_pool_shape;

/// Max (`average` 0) or mean (`average` 1) over each window, then max(y, 0) when `relu`. Padding
/// positions never win a max, and count as zeros in a mean (whose divisor is the kernel's area),
/// as `Tensor.maxPool2d` and `Tensor.avgPool2d` define them. `x` points at row 0, column 0 of
/// the unpadded input.
void dk_pool2d_nhwc(const dk_pool_shape *shape, const float *x, float *y, int average, int relu);

/// `dk_pool2d_nhwc` with one code path forced (0: portable, 1: AVX2 + FMA, 2: AVX-512), for tests; returns -1
/// (and does nothing) when this CPU lacks it.
int dk_pool2d_nhwc_level(int level, const dk_pool_shape *shape, const float *x, float *y, int average, int relu);

#endif
