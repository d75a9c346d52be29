#ifndef DK_DNNL_CONV_H
#define DK_DNNL_CONV_H
#include <stdint.h>

/// The sizes of one 2-D convolution (NCHW input, OIHW weight, groups = 1), as DistillKit's
/// `ConvGeometry` derives them: n batch, c input channels, h×w input, o output channels,
/// r×s kernel, p×q output; stride, padding (top/left; bottom/right follow from p and q) and
/// dilation (1 = none).
typedef struct {
    int n, c, h, w, o, r, s, p, q;
    int stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
} dk_dnnl_shape;

/// Loads oneDNN (libdnnl.so.2) once. Returns 0 when it is usable, else -1 with the reason in
/// `message`. Every convolution then runs on the calling thread only (OpenMP limited to one
/// thread there): DistillKit splits the batch across its own workers.
int dk_dnnl_load(char *message, int capacity);

/// "oneDNN 2.6.3" once loaded, else the reason it is not.
const char *dk_dnnl_description(void);

/// The implementation oneDNN chose for the forward convolution of `shape` (e.g.
/// "jit:avx512_core"), or NULL when it cannot run it.
const char *dk_dnnl_forward_implementation(const dk_dnnl_shape *shape);

/// dst [n, o, p, q] = conv(src [n, c, h, w], weights [o, c, r, s]) + bias [o] (bias may be NULL),
/// all in plain layouts. Returns 0, or -1 when oneDNN is not loaded or cannot run this shape
/// (nothing is written then).
int dk_dnnl_conv_forward(const dk_dnnl_shape *shape, const float *src, const float *weights,
                         const float *bias, float *dst);

/// The gradients of one convolution from diff_dst [n, o, p, q]: diff_src [n, c, h, w] (from
/// the weights; skipped when NULL), diff_weights [o, c, r, s] and diff_bias [o] (from src;
/// each skipped when NULL). All are overwritten, not added to. Returns 0, or -1 (nothing written).
int dk_dnnl_conv_backward(const dk_dnnl_shape *shape, const float *src, const float *weights,
                          const float *diff_dst, float *diff_src, float *diff_weights, float *diff_bias);

/// conv → ReLU → 2×2/2 max-pool with the convolution's output left in oneDNN's blocked layout,
/// where the pooling reads it (`dk_max_pool2x2_blocked_forward`), and the pooled gradient routed
/// straight back into that layout: the two reorders around the output and the full-size plain
/// output are not needed. The same primitives and pooling rule as `dk_dnnl_conv_forward` then
/// `dk_max_pool2x2_forward`, so the same bits.
///
/// The channel block (16 for nChw16c, 8 for nChw8c) that the forward, backward-data and
/// backward-weights primitives of `shape` all keep the output in, or 0 when they do not share one
/// such layout (or oneDNN is missing): then use the plain calls above.
int dk_dnnl_channel_block(const dk_dnnl_shape *shape, int with_bias);

/// pooled [n, o, p/2, q/2] = maxpool(relu(conv(src) + bias)), argmax as `dk_max_pool2x2_forward`
/// gives it. Returns 0, or -1 (also when `dk_dnnl_channel_block` is 0 for this shape).
int dk_dnnl_conv_relu_maxpool_forward(const dk_dnnl_shape *shape, const float *src, const float *weights, const float *bias,
                                      float *pooled, int32_t *argmax);

/// The gradients from pooled_grad and the forward pass's argmax: diff_src in plain NCHW (skipped
/// when NULL), diff_weights [o, c, r, s] and diff_bias [o] (skipped when NULL), all overwritten.
/// Returns 0 or -1.
int dk_dnnl_conv_relu_maxpool_backward(const dk_dnnl_shape *shape, const float *src, const float *weights, const float *pooled_grad,
                                       const int32_t *argmax, float *diff_src, float *diff_weights, float *diff_bias);

#endif
