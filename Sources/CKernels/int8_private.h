// Pieces shared by int8_gemm.c and int8_conv.c (private: not part of the CKernels module's
// public headers).
#ifndef DK_INT8_PRIVATE_H
#define DK_INT8_PRIVATE_H

#include "dk_int8.h"
#include <stddef.h>
#include <stdint.h>

/// Copies the patches of one output row of a convolution: for each output pixel, its kernel rows'
/// runs of kernel_w · channels bytes from `row` (NHWC, row stride in_row_stride), run ky of pixel
/// ox at scratch + ox · patch_stride + ky · run_stride. Copies move 16 bytes at a time (a byte
/// loop or a memcpy call per run costs more than the data), so a run's last move may spill up to
/// 15 bytes past it and read up to 15 bytes past the input's last row: callers lay the patches
/// out so that a spill lands where a later run or patch is written afterwards, in padding that
/// multiplies zero weights, or in the scratch's slack, and allow for the read.
void dk_int8_copy_patches(const dk_int8_conv_shape *s, const uint8_t *row, size_t run_stride, size_t patch_stride, uint8_t *scratch);

#endif
