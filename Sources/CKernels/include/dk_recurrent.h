#ifndef DK_RECURRENT_H
#define DK_RECURRENT_H
#include <stddef.h>

// Kernels of the ONNX recurrent cells (LSTM, GRU, RNN), and the logistic activations the executor
// fuses into convolutions (Sigmoid, SiLU), vectorised for the CPU found at run time (AVX-512, AVX2
// with FMA, or SSE2). See Sources/CKernels/recurrent.c.

/// The logistic sigmoid 1 / (1 + e^-x) of n floats in place (exp by Cephes' method; relative
/// error a few ulp; NaN stays NaN).
void dk_sigmoid_inplace(float *x, size_t n);

/// tanh(x) of n floats in place (Cephes' tanhf: a polynomial below |x| = 0.625, 1 - 2/(e^2|x| + 1)
/// above; relative error a few ulp; NaN stays NaN).
void dk_tanh_inplace(float *x, size_t n);

/// SiLU x / (1 + e^-x) of n floats in place (EfficientNet's activation; the same exponential;
/// NaN stays NaN).
void dk_silu_inplace(float *x, size_t n);

/// `dk_sigmoid_inplace` (`kind` 0), `dk_tanh_inplace` (1) or `dk_silu_inplace` (2) with one instruction set forced
/// (0: SSE2, 1: AVX2 + FMA, 2: AVX-512), for tests. Returns -1 (and does nothing) when this CPU
/// lacks it.
int dk_activation_level(int level, int kind, float *x, size_t n);

#endif
