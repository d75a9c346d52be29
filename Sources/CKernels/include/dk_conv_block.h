#ifndef DK_CONV_BLOCK_H
#define DK_CONV_BLOCK_H
#include "dk_conv_depthwise.h"
#include <stddef.h>

/// One convolution of a fused block: its weight, its bias (or NULL) and the `dk_activation` applied
/// to its output (`lo`/`hi`: Clip's limits).
typedef struct {
    const float *weight, *bias;
    int activation;
    float lo, hi;
} dk_conv_stage;

/// MobileNet v2's inverted residual block for one image, NCHW:
///   e = act(W_e · x + b_e)              1×1 expansion, `channels` → window->channels (E);
///                                       none when expand.weight is NULL (e = x, E = channels)
///   d = act(depthwise(e))               the depthwise convolution `window` (height and width: x's)
///   y = act(W_p · d + b_p + residual)   1×1 projection, E → `outputs`; residual NULL or y's shape;
///                                       none when project.weight is NULL (y = d, `outputs` unused:
///                                       EfficientNet's blocks, where squeeze-excitation reads d)
/// for the output rows first_row..<end_row of y [outputs, out_h, out_w].
///
/// Run layer by layer, e (6× the input's channels: 4.8 MB per image for MobileNet v2's widest) is
/// written to memory and read back, and d too. Here the output rows are taken in bands whose
/// input rows of e, pixel-major and padded, fit in about 256 KiB of a core's cache: each band's
/// new rows of e are computed (rows shared with the band before are kept, not recomputed),
/// convolved into the band's rows of d, and projected straight into y. The depthwise step runs
/// on vectors of 8 channels of one pixel (see conv_block.c). Same sums in the same order as the
/// layers run one by one on this CPU's AVX2 kernels, so the same results to the bit.
///
/// Returns -1 (with y possibly part-written) when the CPU lacks AVX2 + FMA, E is not a multiple
/// of 8, a padded row would be unreasonably large, or scratch memory cannot be allocated, for the
/// caller to run the layers on their own; 0 otherwise.
int dk_inverted_residual(const dk_window_shape *window, size_t channels, size_t outputs, const float *x,
                         dk_conv_stage expand, dk_conv_stage depthwise, dk_conv_stage project, const float *residual,
                         float *y, size_t first_row, size_t end_row);

#endif
