// Kernels of the transformer encoder's inference path (Sources/DistillNN/TransformerInference.swift):
// the erf GELU over the feed-forward block, layer norm with the residual added, and the row
// softmax of attention scores. A libm erff per element cost more than a third of an encoder
// layer's time, so they are vector code here, chosen once from the CPU's features. Inference
// only: fused multiply-adds are allowed (results agree with the scalar formulas to float rounding).
#pragma clang fp contract(fast)

#include "dk_transformer.h"
#include "vector_common.h"

#include <math.h>
#include <string.h>

// TRANSFORMER_KERNELS(name, lanes, target) defines name_gelu, name_layer_norm and name_softmax
// for vectors of `lanes` floats.
#define TRANSFORMER_KERNELS(NAME, LANES, ATTRIBUTES)                                                  \
    typedef float NAME##_vf __attribute__((ext_vector_type(LANES)));                                  \
    typedef int NAME##_vi __attribute__((ext_vector_type(LANES)));                                    \
    DK_VECTOR_EXP(NAME##_exp, NAME##_vf, NAME##_vi, ATTRIBUTES)                                       \
    /* 0.5·v·(1 + erf(v/√2)); erf(z) = sign(z)·(1 − poly(t)·t·e^{−z²}), t = 1/(1 + p|z|) */          \
    ATTRIBUTES __attribute__((always_inline)) static inline NAME##_vf NAME##_gelu1(NAME##_vf v) {     \
        NAME##_vf z = v * 0.70710678118654752f;                                                       \
        NAME##_vi zbits = (NAME##_vi)z;                                                               \
        NAME##_vf a = (NAME##_vf)(zbits & 0x7fffffff);                                                \
        NAME##_vf t = 1.0f / (1.0f + 0.3275911f * a);                                                 \
        NAME##_vf poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t \
                          + 0.254829592f) * t;                                                        \
        NAME##_vf erfa = 1.0f - poly * NAME##_exp(-(a * a));                                          \
        NAME##_vf erfz = (NAME##_vf)(((NAME##_vi)erfa) | (zbits & (int)0x80000000));                  \
        NAME##_vf result = 0.5f * v * (1.0f + erfz);                                                  \
        NAME##_vi nan = v != v;                                                                       \
        return (NAME##_vf)((((NAME##_vi)result) & ~nan) | (((NAME##_vi)v) & nan));                    \
    }                                                                                                 \
    ATTRIBUTES static void NAME##_gelu(float *x, size_t n) {                                          \
        size_t j = 0;                                                                                 \
        for (; j + LANES <= n; j += LANES) {                                                          \
            NAME##_vf v;                                                                              \
            memcpy(&v, x + j, sizeof v);                                                              \
            v = NAME##_gelu1(v);                                                                      \
            memcpy(x + j, &v, sizeof v);                                                              \
        }                                                                                             \
        if (j < n) {                                                                                  \
            NAME##_vf v = 0.0f;                                                                       \
            memcpy(&v, x + j, (n - j) * sizeof(float));                                               \
            v = NAME##_gelu1(v);                                                                      \
            memcpy(x + j, &v, (n - j) * sizeof(float));                                               \
        }                                                                                             \
    }                                                                                                 \
    ATTRIBUTES static void NAME##_layer_norm(float *x, const float *residual, size_t rows, size_t d,  \
                                             const float *gamma, const float *beta, float eps) {      \
        for (size_t r = 0; r < rows; r++) {                                                           \
            float *row = x + r * d;                                                                   \
            NAME##_vf acc = 0.0f;                                                                     \
            size_t j = 0;                                                                             \
            for (; j + LANES <= d; j += LANES) {                                                      \
                NAME##_vf v, s;                                                                       \
                memcpy(&v, row + j, sizeof v);                                                        \
                if (residual) { memcpy(&s, residual + r * d + j, sizeof s); v += s; memcpy(row + j, &v, sizeof v); } \
                acc += v;                                                                             \
            }                                                                                         \
            float sum = 0.0f;                                                                         \
            for (int k = 0; k < LANES; k++) sum += acc[k];                                            \
            for (; j < d; j++) { if (residual) row[j] += residual[r * d + j]; sum += row[j]; }        \
            float mean = sum / (float)d;                                                              \
            acc = 0.0f;                                                                               \
            for (j = 0; j + LANES <= d; j += LANES) {                                                 \
                NAME##_vf v;                                                                          \
                memcpy(&v, row + j, sizeof v);                                                        \
                v -= mean;                                                                            \
                acc += v * v;                                                                         \
            }                                                                                         \
            float sq = 0.0f;                                                                          \
            for (int k = 0; k < LANES; k++) sq += acc[k];                                             \
            for (; j < d; j++) { float v = row[j] - mean; sq += v * v; }                              \
            float inv = 1.0f / sqrtf(sq / (float)d + eps);                                            \
            for (j = 0; j + LANES <= d; j += LANES) {                                                 \
                NAME##_vf v, g, b;                                                                    \
                memcpy(&v, row + j, sizeof v); memcpy(&g, gamma + j, sizeof g); memcpy(&b, beta + j, sizeof b); \
                v = (v - mean) * inv * g + b;                                                         \
                memcpy(row + j, &v, sizeof v);                                                        \
            }                                                                                         \
            for (; j < d; j++) row[j] = (row[j] - mean) * inv * gamma[j] + beta[j];                   \
        }                                                                                             \
    }                                                                                                 \
    ATTRIBUTES static void NAME##_softmax(float *x, size_t rows, size_t n, size_t ld) {               \
        for (size_t r = 0; r < rows; r++) {                                                           \
            float *row = x + r * ld;                                                                  \
            NAME##_vf m = -INFINITY;                                                                  \
            size_t j = 0;                                                                             \
            for (; j + LANES <= n; j += LANES) {                                                      \
                NAME##_vf v;                                                                          \
                memcpy(&v, row + j, sizeof v);                                                        \
                m = __builtin_elementwise_max(m, v);                                                  \
            }                                                                                         \
            float top = -INFINITY;                                                                    \
            for (int k = 0; k < LANES; k++) top = m[k] > top ? m[k] : top;                            \
            for (; j < n; j++) top = row[j] > top ? row[j] : top;                                     \
            if (!isfinite(top)) top = 0.0f;                                                           \
            NAME##_vf acc = 0.0f;                                                                     \
            for (j = 0; j + LANES <= n; j += LANES) {                                                 \
                NAME##_vf v;                                                                          \
                memcpy(&v, row + j, sizeof v);                                                        \
                v = NAME##_exp(v - top);                                                              \
                acc += v;                                                                             \
                memcpy(row + j, &v, sizeof v);                                                        \
            }                                                                                         \
            if (j < n) { /* the tail padded with -inf, whose exp is 0 */                              \
                NAME##_vf v = -INFINITY;                                                              \
                memcpy(&v, row + j, (n - j) * sizeof(float));                                         \
                v = NAME##_exp(v - top);                                                              \
                acc += v;                                                                             \
                memcpy(row + j, &v, (n - j) * sizeof(float));                                         \
            }                                                                                         \
            float total = 0.0f;                                                                       \
            for (int k = 0; k < LANES; k++) total += acc[k];                                          \
            float inv = 1.0f / total;                                                                 \
            for (j = 0; j < n; j++) row[j] *= inv;                                                    \
        }                                                                                             \
    }

#if defined(__x86_64__)
TRANSFORMER_KERNELS(tf_avx512, 16, __attribute__((target("avx512f"))))
TRANSFORMER_KERNELS(tf_avx2, 8, __attribute__((target("avx2,fma"))))
#endif
TRANSFORMER_KERNELS(tf_sse2, 4, )

/// The widest level this CPU runs: 2 (AVX-512), 1 (AVX2 + FMA) or 0 (SSE2).
static int tf_cpu_level(void) {
#if defined(__x86_64__)
    if (dk_cpu_has_avx512()) return 2;
    if (dk_cpu_has_avx2_fma()) return 1;
#endif
    return 0;
}

static int tf_level(void) {
    static int level = -1;
    int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (l < 0) { l = tf_cpu_level(); __atomic_store_n(&level, l, __ATOMIC_RELAXED); }
    return l;
}

static void run_level(int level, int kind, float *x, const float *residual, size_t rows, size_t d,
                      const float *gamma, const float *beta, float eps) {
#if defined(__x86_64__)
    if (level == 2) {
        if (kind == 0) tf_avx512_gelu(x, rows * d);
        else if (kind == 1) tf_avx512_layer_norm(x, residual, rows, d, gamma, beta, eps);
        else tf_avx512_softmax(x, rows, d, d);
        return;
    }
    if (level == 1) {
        if (kind == 0) tf_avx2_gelu(x, rows * d);
        else if (kind == 1) tf_avx2_layer_norm(x, residual, rows, d, gamma, beta, eps);
        else tf_avx2_softmax(x, rows, d, d);
        return;
    }
#endif
    if (kind == 0) tf_sse2_gelu(x, rows * d);
    else if (kind == 1) tf_sse2_layer_norm(x, residual, rows, d, gamma, beta, eps);
    else tf_sse2_softmax(x, rows, d, d);
}

void dk_gelu_erf_inplace(float *x, size_t n) { run_level(tf_level(), 0, x, 0, 1, n, 0, 0, 0); }

void dk_layer_norm_rows(float *x, const float *residual, size_t rows, size_t d,
                        const float *gamma, const float *beta, float eps) {
    run_level(tf_level(), 1, x, residual, rows, d, gamma, beta, eps);
}

void dk_softmax_rows(float *x, size_t rows, size_t n, size_t ld) {
#if defined(__x86_64__)
    int level = tf_level();
    if (level == 2) { tf_avx512_softmax(x, rows, n, ld); return; }
    if (level == 1) { tf_avx2_softmax(x, rows, n, ld); return; }
#endif
    tf_sse2_softmax(x, rows, n, ld);
}

int dk_transformer_kernel_level(int level, int kind, float *x, const float *residual, size_t rows, size_t d,
                                const float *gamma, const float *beta, float eps) {
    if (level < 0 || level > 2 || level > tf_cpu_level()) return -1;
    run_level(level, kind, x, residual, rows, d, gamma, beta, eps);
    return 0;
}
