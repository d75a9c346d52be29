#ifndef DK_DNNL_CONV_H
#define DK_DNNL_CONV_H

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

#endif
