#ifndef DK_KERNELS_H
#define DK_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/// One Adam update of n parameters, in place (PyTorch's formula, L2 decay `l2` added to the
/// gradient): m = b1*m + (1-b1)*g', v = b2*v + (1-b2)*g'*g', w -= step_size*m / (sqrt(v)*inv_sqrt_c2 + eps)
/// with g' = g + l2*w. Vectorised for the CPU found at run time (AVX-512, AVX2 or SSE2) with no
/// fused multiply-adds, so every CPU gives the same bits. Subnormal inputs and results are flushed
/// to zero (x86's DAZ and FTZ, for this call only): moments decaying through the subnormal range
/// cost a microcode assist per operation on Intel cores.
void dk_adam_update(float *w, const float *g, float *m, float *v, size_t n,
                    float b1, float b2, float l2, float step_size, float inv_sqrt_c2, float eps);

/// A fully connected layer for a few rows, where a BLAS call costs more than the arithmetic:
/// y[r][o] = b[o] + sum_i x[r][i] * w[o][i] (x [rows, in], w [out, in], b [out] or NULL), then
/// max(y, 0) when `relu`. Vectorised along `in` for the CPU found at run time, no FMA.
void dk_linear_small(const float *x, const float *w, const float *b, float *y,
                     size_t rows, size_t in, size_t out, int relu);

/// A fully connected layer on many rows, AVX-512 or AVX2 + FMA: weights packed as wt[in][padded]
/// (the transpose of [out][in], columns zero-padded to `padded`, a multiple of 16), bias padded the
/// same way (or NULL); y[r][o] for o < out, then max(y, 0) when `relu`. Uses fused multiply-adds.
/// Returns -1 (and does nothing) on other CPUs, so the caller uses BLAS instead.
int dk_linear_packed(const float *x, const float *wt, const float *b_padded, float *y,
                     size_t rows, size_t in, size_t out, size_t padded, int relu);

/// How this CPU runs `dk_linear_packed`: 2 with AVX-512, 1 with AVX2 + FMA, 0 not at all (-1).
/// Measured on an AVX2-only AMD EPYC: the AVX2 kernel beats OpenBLAS for a few rows (an LSTM's
/// batch-1 steps took 0.55 of the time) but not for hundreds (an MLP at 256 rows: 7% slower), so
/// callers use it there for few rows only.
int dk_linear_packed_level(void);

/// `dk_linear_small` with one instruction set forced (0: SSE2, 1: AVX2, 2: AVX-512), for tests;
/// returns -1 (and does nothing) when this CPU lacks it.
int dk_linear_small_level(int level, const float *x, const float *w, const float *b, float *y,
                          size_t rows, size_t in, size_t out, int relu);

/// The Adam update with one instruction set forced (0: SSE2, 1: AVX2, 2: AVX-512), for tests;
/// returns -1 (and does nothing) when this CPU lacks it.
int dk_adam_update_level(int level, float *w, const float *g, float *m, float *v, size_t n,
                         float b1, float b2, float l2, float step_size, float inv_sqrt_c2, float eps);

/// exp(x) of n floats in place (Cephes' method: relative error about 1e-7; 0 below -87.34, +inf
/// above 88.72, NaN stays NaN), vectorised for the CPU found at run time; every CPU gives the
/// same bits. For softmax over many short rows, where a libm call per element dominates.
void dk_exp_inplace(float *x, size_t n);

/// `dk_exp_inplace` with one instruction set forced (0: SSE2, 1: AVX2, 2: AVX-512), for tests;
/// returns -1 (and does nothing) when this CPU lacks it.
int dk_exp_inplace_level(int level, float *x, size_t n);

/// destination[r][k] = source[rows[r]][k] / 255 for `count` rows of `row_size` bytes: a batch of
/// 8-bit examples (`LabeledDataset`), with each row's cache lines requested a few rows before it
/// is read (rows are drawn at random from the dataset, so each one starts with a cache miss).
void dk_gather_unit_bytes(const uint8_t *source, size_t row_size, const int64_t *rows, size_t count, float *destination);

/// The same at a chosen level (-1 the widest this CPU has, 0 portable, 1 AVX2, 2 AVX-512), for
/// tests: every level gives the same bits. Returns 0, or -1 where the level does not run here.
int dk_gather_unit_bytes_level(int level, const uint8_t *source, size_t row_size, const int64_t *rows, size_t count,
                               float *destination);

#endif
