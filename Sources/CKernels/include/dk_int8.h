#ifndef DK_INT8_H
#define DK_INT8_H
#include <stddef.h>
#include <stdint.h>

// Integer kernels for int8 students (Sources/DistillNN/QuantizedPlan.swift): activations are
// unsigned bytes with a zero point (x ≈ scale · (q − zero_point)), weights signed bytes,
// symmetric per output channel (w ≈ scale[n] · q). Products accumulate in int32; the epilogue
// turns each accumulator into the next layer's bytes (or the last layer's floats) in the same
// pass. Every instruction set computes exactly the same values (no fused multiply-adds, the same
// rounding: to nearest, ties to even), so each path is tested against the scalar one bit for bit.
//
// Instruction-set levels: 0 scalar, 1 AVX2 (vpmaddwd on bytes widened to 16 bits: exact, unlike
// vpmaddubsw, which saturates), 2 AVX-512 VNNI (vpdpbusd: four u8×s8 products summed into each
// int32 lane).

/// What happens to each int32 accumulator acc[r][n] (the sum over k of a[r][k] · w[k][n]):
/// v = (float)(acc + offset[n]) · scale[n] + bias[n]; a float output stores v; a byte output stores
/// clamp(round(v) + zero_point, relu ? zero_point : 0, 255). `offset` is −z_a · Σ_k w[k][n], which
/// removes the input's zero point (the column-sum correction); `scale` is s_a · s_w[n] / s_y
/// (s_a · s_w[n] for a float output) and `bias` is b[n] / s_y (b[n]). Arrays hold n_padded values.
typedef struct dk_int8_epilogue {
    const int32_t *offset;
    const float *scale;
    const float *bias;
    int32_t zero_point;
    int relu;
} dk_int8_epilogue;

/// Bytes of a weight packed for `dk_int8_linear`: k rounded up to 4, times n rounded up to 16.
size_t dk_int8_packed_size(size_t k, size_t n);

/// Packs w [n][k] (row-major, int8) as [k4 / 4][n_padded][4]: the four bytes of consecutive k for
/// one output side by side, as vpdpbusd reads them; zero where k ≥ `k` or n ≥ `n`. Also writes
/// column_sums[n'] = Σ_k w[n'][k] for n' < n_padded (zero past n) when column_sums is not NULL.
void dk_int8_pack_weights(const int8_t *w, size_t n, size_t k, int8_t *packed, int32_t *column_sums);

/// y[r][n'] for r < rows, n' < n: the epilogue of Σ_k a[r][k] · w[k][n'] (a: rows of `lda` bytes,
/// of which the first k4 = k rounded up to 4 are read; bytes past k multiply zero weights).
/// Exactly one of y_u8 and y_f32 is non-NULL; `ldy` is the output's row stride in elements.
void dk_int8_linear(const uint8_t *a, size_t lda, size_t rows, size_t k, const int8_t *packed, size_t n,
                    const dk_int8_epilogue *e, uint8_t *y_u8, float *y_f32, size_t ldy);

/// `dk_int8_linear` with one instruction set forced (0 scalar, 1 AVX2, 2 AVX-512 VNNI), for
/// tests; returns -1 (and does nothing) when this CPU lacks it.
int dk_int8_linear_level(int level, const uint8_t *a, size_t lda, size_t rows, size_t k, const int8_t *packed, size_t n,
                         const dk_int8_epilogue *e, uint8_t *y_u8, float *y_f32, size_t ldy);

/// The level `dk_int8_linear` uses on this CPU (2, 1 or 0).
int dk_int8_level(void);

/// q[i] = clamp(round(x[i] · inv_scale) + zero_point, 0, 255) for n floats (NaN gives zero_point).
void dk_int8_quantize(const float *x, size_t n, float inv_scale, int32_t zero_point, uint8_t *q);

/// The sizes of one int8 convolution of one image, NHWC bytes (the layout of dk_conv.h).
typedef struct dk_int8_conv_shape {
    /// Input channels, and bytes from one input row to the next (padded width × channels).
    size_t channels, in_row_stride;
    size_t kernel_h, kernel_w, stride_h, stride_w;
    /// Output channels, extent, and bytes from one output row to the next.
    size_t out_channels, out_h, out_w, out_row_stride;
} dk_int8_conv_shape;

/// Bytes of scratch `dk_int8_conv2d` needs: one output row's patches.
size_t dk_int8_conv_scratch_size(const dk_int8_conv_shape *shape);

/// A convolution (dilation 1) as patches × weights: for each output row, the patches of its
/// pixels (ky, kx, c order, kernel_w · channels contiguous bytes per ky) are copied to `scratch`
/// and run through `dk_int8_linear` into y + oy · out_row_stride (pixel stride out_channels).
/// `x` points at row 0, column 0 of the already padded input, whose border holds the input's zero
/// point, and 16 bytes past its last row are readable (short runs are copied 8 bytes at a time);
/// `packed` is the weight [out][kh][kw][c] packed by `dk_int8_pack_weights`.
void dk_int8_conv2d(const dk_int8_conv_shape *shape, const uint8_t *x, const int8_t *packed, const dk_int8_epilogue *e,
                    uint8_t *y, uint8_t *scratch);

/// `dk_int8_conv2d` with one instruction set forced (as `dk_int8_linear_level`), for tests.
int dk_int8_conv2d_level(int level, const dk_int8_conv_shape *shape, const uint8_t *x, const int8_t *packed,
                         const dk_int8_epilogue *e, uint8_t *y, uint8_t *scratch);

/// Bytes of a convolution's weight packed by `dk_int8_conv_pack_weights`.
size_t dk_int8_conv_packed_size(const dk_int8_conv_shape *shape);

/// Packs w [out][kh][kw][c] for `dk_int8_conv2d_direct`: as `dk_int8_pack_weights` packs it after
/// padding each kernel row's run of kw · c bytes with zero weights to a multiple of 4 (so that
/// four bytes read from an input row never straddle two kernel rows); column_sums as there (the
/// zeros add nothing). Returns 0, or -1 when memory ran out (nothing written then).
int dk_int8_conv_pack_weights(const dk_int8_conv_shape *shape, const int8_t *w, int8_t *packed, int32_t *column_sums);

/// Bytes of scratch `dk_int8_conv2d_direct` needs (used only where the CPU lacks AVX-512 VNNI).
size_t dk_int8_conv_direct_scratch_size(const dk_int8_conv_shape *shape);

/// The convolution of `dk_int8_conv2d` (same shape, epilogue and input contract, 16 readable bytes
/// past the last row included; `packed` from
/// `dk_int8_conv_pack_weights`), and with `pool` a 2×2 max-pooling at stride 2 (floor: a last odd
/// row or column is dropped) in the same pass, writing the pooled bytes (row stride
/// shape->out_row_stride; out_h and out_w stay the convolution's). The bytes equal those of
/// `dk_int8_conv2d` then `dk_int8_pool2d`. With AVX-512 VNNI a direct convolution
/// (Sources/CKernels/int8_conv.c: output pixels in the lanes for a one-channel input, output
/// channels otherwise; pooling on the int32 accumulators); elsewhere the patch copy and the
/// level's matrix kernel, row by row.
void dk_int8_conv2d_direct(const dk_int8_conv_shape *shape, int pool, const uint8_t *x, const int8_t *packed,
                           const dk_int8_epilogue *e, uint8_t *y, uint8_t *scratch);

/// `dk_int8_conv2d_direct` with one instruction set forced (0 scalar, 1 AVX2, 2 AVX-512 VNNI), for
/// tests; returns -1 (and does nothing) when this CPU lacks it.
int dk_int8_conv2d_direct_level(int level, const dk_int8_conv_shape *shape, int pool, const uint8_t *x, const int8_t *packed,
                                const dk_int8_epilogue *e, uint8_t *y, uint8_t *scratch);

/// Max (`average` 0) or mean (`average` 1, the sum rounded to nearest, divided by the window's
/// area: padding counts as the zero point) over each window of an NHWC byte image; the pooled
/// bytes go to y (row stride out_row_stride). `x` points at row 0, column 0 of the unpadded input;
/// padding positions never win a max. Max commutes with the (monotone) quantization, so it is
/// exact; ReLU needs no pass of its own (the producer clamps at the zero point).
void dk_int8_pool2d(size_t channels, size_t in_h, size_t in_w, size_t in_row_stride,
                    size_t kernel_h, size_t kernel_w, size_t stride_h, size_t stride_w, size_t pad_h, size_t pad_w,
                    size_t out_h, size_t out_w, size_t out_row_stride, int32_t zero_point,
                    const uint8_t *x, uint8_t *y, int average);

#endif
