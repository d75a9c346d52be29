#ifndef DK_CONV_DEPTHWISE_H
#define DK_CONV_DEPTHWISE_H
#include <stddef.h>

/// Activations fused into a convolution's output pass (the ONNX executor's graph optimiser
/// folds a Relu, Clip, Sigmoid, x·Sigmoid(x) or HardSwish node that follows a Conv into it).
enum dk_activation {
    DK_ACTIVATION_NONE = 0,
    DK_ACTIVATION_RELU = 1,       ///< max(x, 0); NaN becomes 0, as the Relu operator gives
    DK_ACTIVATION_CLIP = 2,       ///< min(max(x, lo), hi); NaN stays NaN
    DK_ACTIVATION_SIGMOID = 3,    ///< 1 / (1 + exp(-x))
    DK_ACTIVATION_SILU = 4,       ///< x / (1 + exp(-x)), x·Sigmoid(x) (EfficientNet's activation)
    DK_ACTIVATION_HARDSWISH = 5,  ///< x · max(0, min(1, x/6 + 1/2))
};

/// Applies `activation` (a `dk_activation`) to n floats in place; `lo` and `hi` are the Clip
/// limits (ignored otherwise). Exponentials use `dk_exp_inplace` (relative error about 1e-7).
/// Vectorised for the CPU found at run time.
void dk_activation_inplace(float *y, size_t n, int activation, float lo, float hi);

/// The sizes of a windowed operation on each plane of an [N, C, H, W] tensor (a depthwise
/// convolution: every channel convolved with its own kernel_h × kernel_w filter, ONNX Conv with
/// group == C == M; or max pooling), output extents given.
typedef struct {
    size_t channels, height, width;
    size_t kernel_h, kernel_w;
    size_t stride_h, stride_w;
    size_t pad_top, pad_left;
    size_t dilation_h, dilation_w;
    size_t out_h, out_w;
} dk_window_shape;

/// Most taps (kernel_h · kernel_w) of the windowed kernels below; larger windows do nothing.
#define DK_WINDOW_MAX_TAPS 64

/// Floats of scratch memory `dk_depthwise_conv2d` needs (one padded input plane), per thread.
size_t dk_depthwise_scratch_floats(const dk_window_shape *shape);

/// Depthwise convolution of the planes first_plane..<end_plane of x [N, C, H, W] (plane p is
/// image p / C, channel p % C) into y [N, C, out_h, out_w]: y = activation(bias[c] + Σ w[c]·x),
/// w [C, 1, kernel_h, kernel_w], bias [C] or NULL. Padding beyond pad_top/pad_left is implied by
/// the output extents (asymmetric padding works). `scratch` holds `dk_depthwise_scratch_floats`
/// floats. AVX-512 with fused multiply-adds when the CPU has it, else a portable loop.
void dk_depthwise_conv2d(const dk_window_shape *shape, const float *x, const float *w, const float *bias,
                         float *y, size_t first_plane, size_t end_plane, int activation, float lo, float hi,
                         float *scratch);

/// `dk_depthwise_conv2d` with the portable loop forced (level 0), AVX2 + FMA (1) or AVX-512 (2), for
/// tests; returns -1 (and does nothing) when this CPU lacks the level.
int dk_depthwise_conv2d_level(int level, const dk_window_shape *shape, const float *x, const float *w,
                              const float *bias, float *y, size_t first_plane, size_t end_plane, int activation,
                              float lo, float hi, float *scratch);

/// Max pooling of the planes first_plane..<end_plane of x [planes, height, width] into y
/// [planes, out_h, out_w] (`channels` is unused). Padding never wins (it reads as -infinity);
/// a NaN in a window gives NaN. `scratch` holds `dk_depthwise_scratch_floats` floats.
void dk_max_pool2d(const dk_window_shape *shape, const float *x, float *y, size_t first_plane, size_t end_plane,
                   float *scratch);

/// `dk_max_pool2d` with the portable loop forced (level 0) or AVX-512 (level 2), for tests;
/// returns -1 (and does nothing) when this CPU lacks the level.
int dk_max_pool2d_level(int level, const dk_window_shape *shape, const float *x, float *y, size_t first_plane,
                        size_t end_plane, float *scratch);

#endif
