// Kernels of the ONNX recurrent cells (Sources/DistillONNX/Ops/Recurrent.swift): the gates'
// sigmoid and tanh over a whole gate block at once. At batch 1 an LSTM step (128 hidden units) is a
// 128 × 512 product and 640 transcendental functions; a libm call per element cost more than the
// product, so they are vector code here, chosen once from the CPU's features. Inference only:
// fused multiply-adds are allowed (results agree with the scalar formulas to float rounding, not
// bit for bit across CPUs).
#pragma clang fp contract(fast)

#include "dk_recurrent.h"
#include "vector_common.h"

#include <string.h>

// RECURRENT_KERNELS(name, lanes, target) defines name_activation (sigmoid or tanh) for vectors of
// `lanes` floats. Short tails go through the same vector code in a zero-padded vector,
// so every element gets the same formula.
#define RECURRENT_KERNELS(NAME, LANES, ATTRIBUTES)                                                   \
    typedef float NAME##_vf __attribute__((ext_vector_type(LANES)));                                  \
    typedef int NAME##_vi __attribute__((ext_vector_type(LANES)));                                    \
    /* e^v (the same formula as dk_exp_inplace); NaN left to callers */                            \
    DK_VECTOR_EXP(NAME##_exp, NAME##_vf, NAME##_vi, ATTRIBUTES)                                       \
    /* kind 0: sigmoid, 1: tanh, 2: SiLU x·sigmoid(x) */                                             \
    ATTRIBUTES __attribute__((always_inline)) static inline NAME##_vf NAME##_activate(NAME##_vf v, int kind) { \
        NAME##_vi vbits = (NAME##_vi)v, result;                                                       \
        if (kind == 0) {                                                                              \
            result = (NAME##_vi)(1.0f / (1.0f + NAME##_exp(-v)));                                    \
        } else if (kind == 2) {                                                                       \
            result = (NAME##_vi)(v / (1.0f + NAME##_exp(-v)));                                       \
        } else {                                                                                      \
            NAME##_vi sign = vbits & (int)0x80000000;                                                 \
            NAME##_vf a = (NAME##_vf)(vbits & 0x7fffffff);                                            \
            NAME##_vf large = 1.0f - 2.0f / (NAME##_exp(a + a) + 1.0f);                               \
            NAME##_vf z = a * a;                                                                      \
            NAME##_vf small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z \
                                + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * a + a;           \
            NAME##_vi isSmall = a < 0.625f;                                                           \
            result = ((isSmall & (NAME##_vi)small) | (~isSmall & (NAME##_vi)large)) | sign;           \
        }                                                                                             \
        NAME##_vi nan = v != v;                                                                       \
        return (NAME##_vf)((result & ~nan) | (vbits & nan));                                          \
    }                                                                                                 \
    ATTRIBUTES static void NAME##_activation(int kind, float *x, size_t n) {                          \
        size_t j = 0;                                                                                 \
        for (; j + LANES <= n; j += LANES) {                                                          \
            NAME##_vf v;                                                                              \
            memcpy(&v, x + j, sizeof v);                                                              \
            v = NAME##_activate(v, kind);                                                             \
            memcpy(x + j, &v, sizeof v);                                                              \
        }                                                                                             \
        if (j < n) {                                                                                  \
            NAME##_vf v = 0.0f;                                                                       \
            memcpy(&v, x + j, (n - j) * sizeof(float));                                               \
            v = NAME##_activate(v, kind);                                                             \
            memcpy(x + j, &v, (n - j) * sizeof(float));                                               \
        }                                                                                             \
    }

#if defined(__x86_64__)
RECURRENT_KERNELS(rec_avx512, 16, __attribute__((target("avx512f"))))
RECURRENT_KERNELS(rec_avx2, 8, __attribute__((target("avx2,fma"))))
#endif
RECURRENT_KERNELS(rec_sse2, 4, )

typedef void (*activation_fn)(int, float *, size_t);

/// The widest level this CPU runs: 2 (AVX-512), 1 (AVX2 + FMA) or 0 (SSE2).
static int cpu_level(void) {
#if defined(__x86_64__)
    if (dk_cpu_has_avx512()) return 2;
    if (dk_cpu_has_avx2_fma()) return 1;
#endif
    return 0;
}

static activation_fn activation_for(int level) {
#if defined(__x86_64__)
    if (level == 2) return rec_avx512_activation;
    if (level == 1) return rec_avx2_activation;
#endif
    return level == 0 ? rec_sse2_activation : 0;
}

/// The level chosen for this CPU, found once (-1: not yet).
static int chosen_level(void) {
    static int level = -1;
    int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (l < 0) {
        l = cpu_level();
        __atomic_store_n(&level, l, __ATOMIC_RELAXED);
    }
    return l;
}

void dk_sigmoid_inplace(float *x, size_t n) { activation_for(chosen_level())(0, x, n); }

void dk_tanh_inplace(float *x, size_t n) { activation_for(chosen_level())(1, x, n); }

void dk_silu_inplace(float *x, size_t n) { activation_for(chosen_level())(2, x, n); }

int dk_activation_level(int level, int kind, float *x, size_t n) {
    if (level < 0 || level > cpu_level() || kind < 0 || kind > 2) return -1;
    activation_for(level)(kind, x, n);
    return 0;
}
