// The first layer of an MLP student in training: forward product and weight gradient with a
// fixed summation order per result (see dk_dense_train.h). Each result is one accumulator lane
// fed by fused multiply-adds in order (k for the forward, r for the gradient); tiles only decide
// how many such lanes run side by side, so any tiling gives the same bits. Scalar tails use
// fmaf, which rounds as the vector instruction does.
#include "dk_dense_train.h"
#include "vector_common.h"
#include <math.h>
#include <string.h>
#pragma clang fp contract(off)

size_t dk_dense_forward_scratch(size_t cols, size_t in) { return ((cols + 7) / 8) * 8 * in; }

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE_AVX2 __attribute__((target("avx2,fma"), always_inline)) static inline

/// ROWS rows × VECS groups of 8 outputs: acc[i][v] = Σ_k x[r+i][k]·wp[g+v][k][0..8].
#define FORWARD_TILE(ROWS, VECS)                                                                        \
    INLINE_AVX2 void forward_tile_##ROWS##_##VECS(const float *x, size_t in, const float *wp,        \
                                                  __m256 acc[ROWS][VECS]) {                          \
        DK_UNROLLED for (int i = 0; i < ROWS; i++) DK_UNROLLED for (int v = 0; v < VECS; v++) acc[i][v] = _mm256_setzero_ps(); \
        for (size_t k = 0; k < in; k++) {                                                             \
            __m256 w[VECS];                                                                           \
            DK_UNROLLED for (int v = 0; v < VECS; v++) w[v] = _mm256_loadu_ps(wp + (size_t)v * in * 8 + k * 8); \
            DK_UNROLLED for (int i = 0; i < ROWS; i++) {                                              \
                const __m256 a = _mm256_broadcast_ss(x + (size_t)i * in + k);                         \
                DK_UNROLLED for (int v = 0; v < VECS; v++) acc[i][v] = _mm256_fmadd_ps(a, w[v], acc[i][v]); \
            }                                                                                         \
        }                                                                                             \
    }
FORWARD_TILE(6, 2)
FORWARD_TILE(1, 2)
FORWARD_TILE(6, 1)
FORWARD_TILE(1, 1)

/// Bias, ReLU and the store of one vector of outputs (`n` ≤ 8 of them valid).
INLINE_AVX2 void forward_store(__m256 v, const float *b, float *y, long n, int relu) {
    const __m256i mask = dk_lanes8(n);
    if (b) v = _mm256_add_ps(v, _mm256_maskload_ps(b, mask));
    if (relu) v = _mm256_and_ps(v, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ));
    if (n >= 8) _mm256_storeu_ps(y, v); else _mm256_maskstore_ps(y, mask, v);
}

#define FORWARD_RUN(ROWS, VECS)                                                                        \
    {                                                                                                  \
        __m256 acc[ROWS][VECS];                                                                        \
        forward_tile_##ROWS##_##VECS(x + r * in, in, wp, acc);                                         \
        DK_UNROLLED for (int i = 0; i < ROWS; i++) DK_UNROLLED for (int v = 0; v < VECS; v++) {        \
            const size_t j = g * 8 + (size_t)v * 8;                                                    \
            forward_store(acc[i][v], b ? b + j : NULL, y + (r + (size_t)i) * ldy + j, (long)cols - (long)j, relu); \
        }                                                                                              \
    }

AVX2 static void dense_forward_avx2(const float *x, size_t rows, size_t in, const float *w, size_t cols,
                                    const float *b, float *y, size_t ldy, int relu, float *wp_all) {
    const size_t groups = (cols + 7) / 8;
    // wp[g][k][0..8] = w[8g + 0..8][k], zero past the last output.
    for (size_t g = 0; g < groups; g++)
        for (size_t k = 0; k < in; k++)
            for (size_t l = 0; l < 8; l++) {
                const size_t j = g * 8 + l;
                wp_all[(g * in + k) * 8 + l] = j < cols ? w[j * in + k] : 0.0f;
            }
    for (size_t g = 0; g < groups; g += 2) {
        const float *wp = wp_all + g * in * 8;
        const int two = g + 1 < groups;
        size_t r = 0;
        if (two) {
            for (; r + 6 <= rows; r += 6) FORWARD_RUN(6, 2)
            for (; r < rows; r++) FORWARD_RUN(1, 2)
        } else {
            for (; r + 6 <= rows; r += 6) FORWARD_RUN(6, 1)
            for (; r < rows; r++) FORWARD_RUN(1, 1)
        }
    }
}

/// JS outputs × VECS vectors of 8 inputs: acc[j][v] = Σ_r e[r][j0+j]·x[r][i0+8v..].
#define GRADIENT_TILE(JS, VECS)                                                                        \
    INLINE_AVX2 void gradient_tile_##JS##_##VECS(const float *e, size_t lde, const float *x, size_t in, \
                                                 size_t rows, __m256 acc[JS][VECS]) {                  \
        DK_UNROLLED for (int j = 0; j < JS; j++) DK_UNROLLED for (int v = 0; v < VECS; v++) acc[j][v] = _mm256_setzero_ps(); \
        for (size_t r = 0; r < rows; r++) {                                                            \
            __m256 xv[VECS];                                                                           \
            DK_UNROLLED for (int v = 0; v < VECS; v++) xv[v] = _mm256_loadu_ps(x + r * in + (size_t)v * 8); \
            DK_UNROLLED for (int j = 0; j < JS; j++) {                                                 \
                const __m256 a = _mm256_broadcast_ss(e + r * lde + (size_t)j);                         \
                DK_UNROLLED for (int v = 0; v < VECS; v++) acc[j][v] = _mm256_fmadd_ps(a, xv[v], acc[j][v]); \
            }                                                                                          \
        }                                                                                              \
    }
GRADIENT_TILE(6, 2)
GRADIENT_TILE(1, 2)
GRADIENT_TILE(6, 1)
GRADIENT_TILE(1, 1)

INLINE_AVX2 void gradient_store(__m256 v, float *g, int add) {
    if (add) v = _mm256_add_ps(_mm256_loadu_ps(g), v);
    _mm256_storeu_ps(g, v);
}

#define GRADIENT_RUN(JS, VECS)                                                                         \
    {                                                                                                  \
        __m256 acc[JS][VECS];                                                                          \
        gradient_tile_##JS##_##VECS(e + j, lde, x + i, in, rows, acc);                                 \
        DK_UNROLLED for (int jj = 0; jj < JS; jj++) DK_UNROLLED for (int v = 0; v < VECS; v++)         \
            gradient_store(acc[jj][v], g + (j + (size_t)jj) * in + i + (size_t)v * 8, add);            \
    }

AVX2 static void dense_weight_gradient_avx2(const float *e, size_t lde, const float *x, size_t rows, size_t in,
                                            size_t cols, float *g, int add) {
    const size_t whole = in / 8 * 8;
    for (size_t i = 0; i < whole; i += 16) {
        const int two = i + 16 <= whole;
        size_t j = 0;
        if (two) {
            for (; j + 6 <= cols; j += 6) GRADIENT_RUN(6, 2)
            for (; j < cols; j++) GRADIENT_RUN(1, 2)
        } else {
            for (; j + 6 <= cols; j += 6) GRADIENT_RUN(6, 1)
            for (; j < cols; j++) GRADIENT_RUN(1, 1)
        }
    }
    // The inputs past the last whole vector, one chain each.
    for (size_t j = 0; j < cols; j++)
        for (size_t i = whole; i < in; i++) {
            float s = 0.0f;
            for (size_t r = 0; r < rows; r++) s = fmaf(e[r * lde + j], x[r * in + i], s);
            g[j * in + i] = add ? g[j * in + i] + s : s;
        }
}
#endif

int dk_dense_forward(const float *x, size_t rows, size_t in, const float *w, size_t cols,
                     const float *b, float *y, size_t ldy, int relu, float *scratch) {
#if defined(__x86_64__)
    if (dk_cpu_has_avx2_fma()) {
        dense_forward_avx2(x, rows, in, w, cols, b, y, ldy, relu, scratch);
        return 0;
    }
#endif
    (void)x; (void)rows; (void)in; (void)w; (void)cols; (void)b; (void)y; (void)ldy; (void)relu; (void)scratch;
    return -1;
}

int dk_dense_weight_gradient(const float *e, size_t lde, const float *x, size_t rows, size_t in,
                             size_t cols, float *g, int add) {
#if defined(__x86_64__)
    if (dk_cpu_has_avx2_fma()) {
        dense_weight_gradient_avx2(e, lde, x, rows, in, cols, g, add);
        return 0;
    }
#endif
    (void)e; (void)lde; (void)x; (void)rows; (void)in; (void)cols; (void)g; (void)add;
    return -1;
}
