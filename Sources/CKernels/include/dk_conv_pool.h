#ifndef DK_CONV_POOL_H
#define DK_CONV_POOL_H
#include <stdint.h>

// A first convolution layer fused with its ReLU and max-pooling, for training
// (Sources/DistillTensor/Ops/Conv.swift, `conv2dReLUMaxPool2d`): conv → ReLU → max-pool over a
// batch of NCHW images whose input needs no gradient (the data). Each image's convolution output
// lives only in a per-call scratch buffer (L2-sized: 28×28×32 floats for cnn-small); what reaches
// memory is the pooled output and, for the backward pass, the position of each window's winner.

/// The sizes of one fused layer: the convolution's (groups = 1) and the pooling's.
typedef struct dk_conv_pool_shape {
    /// Input channels C and extent H×W; output channels O.
    int channels, in_h, in_w, out_channels;
    /// Kernel R×S, stride, zero padding (top/left; the bottom/right follow from the extents) and
    /// dilation (1 = none) of the convolution.
    int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
    /// The convolution's output extent P×Q.
    int conv_h, conv_w;
    /// Pooling window, stride and padding (padded positions never win), and the pooled extent.
    int pool_h, pool_w, pool_stride_h, pool_stride_w, pool_pad_h, pool_pad_w;
    int out_h, out_w;
} dk_conv_pool_shape;

/// For `images` images x [images, C, H, W], weights w [O, C, R, S] and bias [O] (or NULL):
/// y [images, O, out_h, out_w] = max over each window of conv(x, w) + bias, then 0 where that
/// maximum is not positive (ReLU; max commutes with it). Ties go to the first position of the
/// window in row-major order (strict `>`), as `Tensor.maxPool2d` resolves them.
/// argmax [images, O, out_h, out_w] (skipped when NULL) receives the winner's index in the
/// convolution's P×Q plane, or -1 where the ReLU zeroed the output.
/// `level`: -1 the best this CPU runs, 0 portable, 1 AVX2, 2 AVX-512 (for tests). Returns 0, or -1 when
/// the level is not available or memory ran out (nothing written then).
int dk_conv_relu_maxpool_forward(int level, const dk_conv_pool_shape *shape, int images, const float *x, const float *w,
                                 const float *bias, float *y, int32_t *argmax);

/// The weight and bias gradients of the same images from the pooled gradient grad [images, O,
/// out_h, out_w] and the forward pass's argmax: each pooled gradient goes to its winner's
/// convolution output, and from there dw [O, C, R, S] += that gradient × the input patch, db [O]
/// += the gradient. dw and db (db may be NULL) are overwritten with these images' sums, added
/// image by image in order. Same `level` and return value as the forward pass.
int dk_conv_relu_maxpool_backward(int level, const dk_conv_pool_shape *shape, int images, const float *x,
                                  const int32_t *argmax, const float *grad, float *dw, float *db);

#endif
