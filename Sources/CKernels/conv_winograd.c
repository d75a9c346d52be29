// Winograd F(2×2, 3×3) convolution with a fused 2×2 max-pooling, for the inference plan of CNN
// students on AVX2 (see dk_conv_winograd.h). cnn-tiny's second layer (8 → 16 channels, 14×14)
// took 4.8 µs per image with the direct fused kernel and 3.6-3.7 µs here (one thread, clang -O2
// C driver, best of 5 × 20,000): the direct one already ran near the core's peak of fused
// multiply-adds, and this one does 16 of them per input and output channel where it did 36.

#include "vector_common.h"
#include "dk_conv_winograd.h"

enum { WINOGRAD_MAX_CHANNELS = 64, WINOGRAD_TILES = 3 };

int dk_conv2d_maxpool2_winograd_applies(const dk_conv_shape *s) {
    return dk_choose_level(-1) == 1 && s->kernel_h == 3 && s->kernel_w == 3 && s->stride_h == 1 && s->stride_w == 1 &&
           s->dilation_h == 1 && s->dilation_w == 1 && s->channels >= 2 && s->channels <= WINOGRAD_MAX_CHANNELS &&
           s->padded_out % 16 == 0 && s->padded_out >= s->out_channels;
}

size_t dk_winograd_weight_count(const dk_conv_shape *s) { return 16 * s->channels * s->padded_out; }

void dk_winograd_pack(const dk_conv_shape *s, const float *w, float *u) {
    const size_t C = s->channels, P = s->padded_out;
    for (size_t c = 0; c < C; c++)
        for (size_t o = 0; o < P; o++) {
            float g[3][3], t[4][3];  // t = G g
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) g[i][j] = w[((size_t)(i * 3 + j) * C + c) * P + o];
            for (int j = 0; j < 3; j++) {
                t[0][j] = g[0][j];
                t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
                t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
                t[3][j] = g[2][j];
            }
            for (int i = 0; i < 4; i++) {
                const float r[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
                for (int j = 0; j < 4; j++) u[((size_t)(i * 4 + j) * C + c) * P + o] = r[j];
            }
        }
}

#if defined(__x86_64__)
#define DK_AVX2 __attribute__((target("avx2,fma")))

/// `T` ≤ 3 pooling windows of pooled row `ty` from column `tx0`, `V` ≤ 2 vectors of 8 output
/// channels at a time. The input transform runs with input channels in the lanes and is kept in
/// `d_hat`; the 16 products then run with output channels in the lanes (each transformed input
/// broadcast); the output transform, the max over the window, the bias and the ReLU last.
static inline __attribute__((always_inline)) DK_AVX2 void winograd_tiles(const dk_conv_shape *s, const float *x, const float *u,
                                                                          const float *b, float *y, size_t ty, size_t tx0,
                                                                          const int T, const int V, int relu) {
    const size_t C = s->channels, P = s->padded_out;
    float d_hat[WINOGRAD_TILES][16][WINOGRAD_MAX_CHANNELS];
    for (int t = 0; t < T; t++) {
        const float *patch = x + 2 * ty * s->in_row_stride + 2 * (tx0 + (size_t)t) * C;
        for (size_t c = 0; c < C; c += 8) {
            const __m256i mask = dk_lanes8((long)(C - c));
            __m256 d[4][4], r[4][4];  // r = Bᵀ d, then Bᵀ d B row by row
            const int whole = C - c >= 8;  // masked loads only where needed: they are slow on AMD
            DK_UNROLLED for (int i = 0; i < 4; i++)
                DK_UNROLLED for (int j = 0; j < 4; j++) {
                    const float *at = patch + i * s->in_row_stride + j * C + c;
                    d[i][j] = whole ? _mm256_loadu_ps(at) : _mm256_maskload_ps(at, mask);
                }
            DK_UNROLLED for (int j = 0; j < 4; j++) {
                r[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
                r[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
                r[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
                r[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
            }
            // Whole vectors: lanes past C land inside the row (C ≤ 64) and are never read. A masked
            // store (vmaskmovps) here took the kernel from 3.6 to ~6.4 µs per image on AMD Zen 3.
            DK_UNROLLED for (int i = 0; i < 4; i++) {
                _mm256_storeu_ps(&d_hat[t][i * 4 + 0][c], _mm256_sub_ps(r[i][0], r[i][2]));
                _mm256_storeu_ps(&d_hat[t][i * 4 + 1][c], _mm256_add_ps(r[i][1], r[i][2]));
                _mm256_storeu_ps(&d_hat[t][i * 4 + 2][c], _mm256_sub_ps(r[i][2], r[i][1]));
                _mm256_storeu_ps(&d_hat[t][i * 4 + 3][c], _mm256_sub_ps(r[i][1], r[i][3]));
            }
        }
    }
    const size_t vectors = (s->out_channels + 7) / 8;
    for (size_t v0 = 0; v0 < vectors; v0 += (size_t)V) {
        __m256 m[WINOGRAD_TILES][2][16];
        for (int xi = 0; xi < 16; xi++) {
            __m256 acc[WINOGRAD_TILES][2];
            DK_UNROLLED for (int t = 0; t < T; t++) DK_UNROLLED for (int j = 0; j < V; j++) acc[t][j] = _mm256_setzero_ps();
            const float *uw = u + (size_t)xi * C * P + v0 * 8;  // within the padded row: v0 is even when V is 2
            for (size_t c = 0; c < C; c++, uw += P) {
                __m256 wv[2];
                DK_UNROLLED for (int j = 0; j < V; j++) wv[j] = _mm256_loadu_ps(uw + 8 * j);
                DK_UNROLLED for (int t = 0; t < T; t++) {
                    const __m256 dv = _mm256_broadcast_ss(&d_hat[t][xi][c]);
                    DK_UNROLLED for (int j = 0; j < V; j++) acc[t][j] = _mm256_fmadd_ps(dv, wv[j], acc[t][j]);
                }
            }
            DK_UNROLLED for (int t = 0; t < T; t++) DK_UNROLLED for (int j = 0; j < V; j++) m[t][j][xi] = acc[t][j];
        }
        DK_UNROLLED for (int t = 0; t < T; t++) DK_UNROLLED for (int j = 0; j < V; j++) {
            const size_t column = (v0 + (size_t)j) * 8;
            if (column >= s->out_channels) continue;
            const __m256 *q = m[t][j];
            __m256 r0[4], r1[4];  // Aᵀ M, then Aᵀ M A
            DK_UNROLLED for (int k = 0; k < 4; k++) {
                r0[k] = _mm256_add_ps(_mm256_add_ps(q[k], q[4 + k]), q[8 + k]);
                r1[k] = _mm256_sub_ps(_mm256_sub_ps(q[4 + k], q[8 + k]), q[12 + k]);
            }
            const __m256 y00 = _mm256_add_ps(_mm256_add_ps(r0[0], r0[1]), r0[2]), y01 = _mm256_sub_ps(_mm256_sub_ps(r0[1], r0[2]), r0[3]);
            const __m256 y10 = _mm256_add_ps(_mm256_add_ps(r1[0], r1[1]), r1[2]), y11 = _mm256_sub_ps(_mm256_sub_ps(r1[1], r1[2]), r1[3]);
            __m256 v = _mm256_max_ps(_mm256_max_ps(y00, y01), _mm256_max_ps(y10, y11));
            if (b) v = _mm256_add_ps(v, _mm256_loadu_ps(b + column));  // max(y) + b = max(y + b)
            if (relu) v = _mm256_max_ps(v, _mm256_setzero_ps());
            float *out = y + ty * s->out_row_stride + (tx0 + (size_t)t) * s->out_channels + column;
            if (column + 8 <= s->out_channels) _mm256_storeu_ps(out, v);
            else _mm256_maskstore_ps(out, dk_lanes8((long)(s->out_channels - column)), v);
        }
    }
}

#define DK_WINOGRAD_CASES(V)                                                          \
    switch (T) {                                                                      \
        case 1: winograd_tiles(s, x, u, b, y, ty, tx, 1, V, relu); break;             \
        case 2: winograd_tiles(s, x, u, b, y, ty, tx, 2, V, relu); break;             \
        default: winograd_tiles(s, x, u, b, y, ty, tx, 3, V, relu); break;           \
    }

DK_AVX2 static void winograd_maxpool2_avx2(const dk_conv_shape *s, const float *x, const float *u, const float *b, float *y, int relu) {
    const size_t pooled_h = s->out_h / 2, pooled_w = s->out_w / 2;
    const int wide = s->out_channels > 8;
    for (size_t ty = 0; ty < pooled_h; ty++)
        for (size_t tx = 0; tx < pooled_w; tx += WINOGRAD_TILES) {
            const int T = pooled_w - tx < WINOGRAD_TILES ? (int)(pooled_w - tx) : WINOGRAD_TILES;
            if (wide) { DK_WINOGRAD_CASES(2) } else { DK_WINOGRAD_CASES(1) }
        }
}
#endif

int dk_conv2d_maxpool2_winograd_nhwc(const dk_conv_shape *shape, const float *x, const float *u,
                                     const float *bias_padded, float *y, int relu) {
#if defined(__x86_64__)
    if (dk_conv2d_maxpool2_winograd_applies(shape)) {
        winograd_maxpool2_avx2(shape, x, u, bias_padded, y, relu);
        return 0;
    }
#endif
    (void)shape; (void)x; (void)u; (void)bias_padded; (void)y; (void)relu;
    return -1;
}
