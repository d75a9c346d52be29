#ifndef DK_DENSE_TRAIN_H
#define DK_DENSE_TRAIN_H
#include <stddef.h>

/// The first layer of an MLP student in training (`TrainingPlan`), for a run of its outputs,
/// with every result a fixed function of its inputs: each output is one chain of fused
/// multiply-adds in input order, started from 0, whatever the number of rows or outputs in the
/// call, so cutting the layer into runs differently never changes a bit. (A BLAS product's
/// bits depend on its shape: measured with OpenBLAS 0.3.21, one product for 16 outputs differs
/// from two of 8.) AVX2 + FMA; both return -1 (and do nothing) on other CPUs.

/// Floats of scratch `dk_dense_forward` needs for `cols` outputs of `in` inputs.
size_t dk_dense_forward_scratch(size_t cols, size_t in);

/// y[r][j] = b[j] + Σ_k x[r][k]·w[j][k] for r < rows, j < cols (x [rows][in] with row stride
/// in; w [cols][in]; y with row stride ldy; b NULL for none), then max(y, 0) when `relu` (NaN
/// becomes 0). The weights are repacked into `scratch` first.
int dk_dense_forward(const float *x, size_t rows, size_t in, const float *w, size_t cols,
                     const float *b, float *y, size_t ldy, int relu, float *scratch);

/// The weight gradient: g[j][i] (+)= Σ_r e[r][j]·x[r][i] for j < cols, i < in (e [rows][cols]
/// with row stride lde, x [rows][in], g [cols][in]); added to g's values when `add`, else
/// written.
int dk_dense_weight_gradient(const float *e, size_t lde, const float *x, size_t rows, size_t in,
                             size_t cols, float *g, int add);

#endif
