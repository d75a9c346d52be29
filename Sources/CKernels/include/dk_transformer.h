#ifndef DK_TRANSFORMER_H
#define DK_TRANSFORMER_H
#include <stddef.h>

// Kernels of the transformer encoder's inference path (Sources/DistillNN/TransformerInference.swift),
// vectorised for the CPU found at run time (AVX-512, AVX2 with FMA, or SSE2). See
// Sources/CKernels/transformer.c.

/// GELU, exact form x·Φ(x) = 0.5·x·(1 + erf(x/√2)), of n floats in place. erf by Abramowitz &
/// Stegun 7.1.26 (absolute error at most 1.5e-7) with exp by Cephes' method; NaN stays NaN.
void dk_gelu_erf_inplace(float *x, size_t n);

/// Layer norm of `rows` rows of `d` floats in place, after adding `residual` (same layout, or NULL):
/// v = x + residual, x = (v − mean(v)) / sqrt(var(v) + eps) · gamma + beta (biased variance).
void dk_layer_norm_rows(float *x, const float *residual, size_t rows, size_t d,
                        const float *gamma, const float *beta, float eps);

/// Softmax of each of `rows` rows of `n` floats in place; row r starts at x + r·ld.
void dk_softmax_rows(float *x, size_t rows, size_t n, size_t ld);

/// The kernels above with one instruction set forced (0: SSE2, 1: AVX2 + FMA, 2: AVX-512), for
/// tests: `kind` 0 GELU (rows·d floats), 1 layer norm, 2 softmax (ld = d). Returns -1 (and does
/// nothing) when this CPU lacks the instruction set.
int dk_transformer_kernel_level(int level, int kind, float *x, const float *residual, size_t rows, size_t d,
                                const float *gamma, const float *beta, float eps);

#endif
