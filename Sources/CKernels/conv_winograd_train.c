// Winograd F(2×2, 3×3) transforms for training a 3×3 convolution (see dk_conv_winograd_train.h).
//
// Each image is first copied channels-innermost into a scratch buffer (with the zero border the
// padding needs), so that every transform is a loop over contiguous channels, which the compiler
// vectorises; the AVX2 and AVX-512 entry points inline the same loops under `target(...)`.
// The transforms: additions and halvings only, with contraction off (the same bits at every
// instruction set); the products use explicit fused multiply-adds.

#include <string.h>
#include "vector_common.h"
#include "dk_conv_winograd_train.h"

#pragma clang fp contract(off)

#define DK_INLINE static inline __attribute__((always_inline))

static size_t tiles_along(size_t extent) { return (extent + 1) / 2; }

size_t dk_winograd_train_scratch(size_t height, size_t width, size_t channels) {
    // the padded image, then (pool_grad) the pooled gradient and its winners' places, with room to spare
    return (2 * tiles_along(height) + 2) * (2 * tiles_along(width) + 2) * channels + 2 * (height / 2) * (width / 2) * channels;
}

/// Eight floats (unaligned loads and stores), for the 8×8 transposes below.
typedef float dk_v8 __attribute__((vector_size(32), aligned(4)));
typedef int dk_i8 __attribute__((vector_size(32), aligned(4)));

/// Transposes the 8×8 block r (8 rows of 8) in place.
DK_INLINE void transpose8(dk_v8 r[8]) {
    dk_v8 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4)
        for (int k = 0; k < 2; k++) {
            u[i + 2 * k] = __builtin_shufflevector(t[i + k], t[i + k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            u[i + 2 * k + 1] = __builtin_shufflevector(t[i + k], t[i + k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int k = 0; k < 4; k++) {
        r[k] = __builtin_shufflevector(u[k], u[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[k + 4] = __builtin_shufflevector(u[k], u[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

/// dst[j·ld_dst + i] = src[i·ld_src + j] for i < rows, j < cols: between planes ([C][pixels]) and
/// channels-last ([pixels][C]) in 8×8 blocks (a value at a time, each store went to its own
/// cache line: a third of the transforms' time).
DK_INLINE void transpose(const float *restrict src, size_t ld_src, size_t rows, size_t cols, float *restrict dst,
                         size_t ld_dst) {
    size_t i = 0;
    for (; i + 8 <= rows; i += 8) {
        size_t j = 0;
        for (; j + 8 <= cols; j += 8) {
            dk_v8 r[8];
            for (int k = 0; k < 8; k++) r[k] = *(const dk_v8 *)(src + (i + k) * ld_src + j);
            transpose8(r);
            for (int k = 0; k < 8; k++) *(dk_v8 *)(dst + (j + k) * ld_dst + i) = r[k];
        }
        for (; j < cols; j++)
            for (size_t k = 0; k < 8; k++) dst[j * ld_dst + i + k] = src[(i + k) * ld_src + j];
    }
    for (; i < rows; i++)
        for (size_t j = 0; j < cols; j++) dst[j * ld_dst + i] = src[i * ld_src + j];
}

/// Copies image [C][H][W] into `hwc` [rows][cols][C] at row and column `border`, zero elsewhere.
DK_INLINE void to_channels_last(const float *restrict image, size_t C, size_t H, size_t W, float *restrict hwc,
                                 size_t rows, size_t cols, size_t border) {
    const size_t row = cols * C;
    for (size_t i = 0; i < rows; i++) {
        float *line = hwc + i * row;
        if (i < border || i >= H + border) {
            memset(line, 0, row * sizeof(float));
            continue;
        }
        memset(line, 0, border * C * sizeof(float));
        memset(line + (W + border) * C, 0, (cols - W - border) * C * sizeof(float));
    }
    for (size_t i = 0; i < H; i++)
        transpose(image + i * W, H * W, C, W, hwc + ((i + border) * cols + border) * C, C);
}

/// v = Bᵀ d B for the tiles of one image, from its copy `hwc` [rows][cols][C] with a border of
/// one; the image's first tile goes to `out`, position k of the tile to out + k·plane.
DK_INLINE void input_tiles(const float *restrict hwc, size_t C, size_t th, size_t tw, size_t cols, float *restrict out,
                           size_t plane) {
    for (size_t ty = 0; ty < th; ty++)
        for (size_t tx = 0; tx < tw; tx++) {
            const float *restrict p = hwc + (2 * ty * cols + 2 * tx) * C;
            float *restrict o = out + (ty * tw + tx) * C;
            for (size_t c = 0; c < C; c++) {
                float d[4][4], r[4][4];
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) d[i][j] = p[(i * cols + j) * C + c];
                for (int j = 0; j < 4; j++) {  // r = Bᵀ d
                    r[0][j] = d[0][j] - d[2][j];
                    r[1][j] = d[1][j] + d[2][j];
                    r[2][j] = d[2][j] - d[1][j];
                    r[3][j] = d[1][j] - d[3][j];
                }
                for (int i = 0; i < 4; i++) {  // r B
                    o[(i * 4 + 0) * plane + c] = r[i][0] - r[i][2];
                    o[(i * 4 + 1) * plane + c] = r[i][1] + r[i][2];
                    o[(i * 4 + 2) * plane + c] = r[i][2] - r[i][1];
                    o[(i * 4 + 3) * plane + c] = r[i][1] - r[i][3];
                }
            }
        }
}

/// g = A dy Aᵀ for the 2×2 blocks of one image's output gradient, from its copy `hwc` with a
/// border of one (as `input_tiles`).
DK_INLINE void grad_tiles(const float *restrict hwc, size_t C, size_t th, size_t tw, size_t cols, float *restrict out,
                          size_t plane) {
    for (size_t ty = 0; ty < th; ty++)
        for (size_t tx = 0; tx < tw; tx++) {
            const float *restrict p = hwc + ((2 * ty + 1) * cols + 2 * tx + 1) * C;
            float *restrict o = out + (ty * tw + tx) * C;
            for (size_t c = 0; c < C; c++) {
                const float d00 = p[c], d01 = p[C + c], d10 = p[cols * C + c], d11 = p[(cols + 1) * C + c];
                const float r[4][2] = {{d00, d01}, {d00 + d10, d01 + d11}, {d00 - d10, d01 - d11}, {-d10, -d11}};  // A dy
                for (int i = 0; i < 4; i++) {  // (A dy) Aᵀ
                    o[(i * 4 + 0) * plane + c] = r[i][0];
                    o[(i * 4 + 1) * plane + c] = r[i][0] + r[i][1];
                    o[(i * 4 + 2) * plane + c] = r[i][0] - r[i][1];
                    o[(i * 4 + 3) * plane + c] = -r[i][1];
                }
            }
        }
}

/// The 2×2 outputs Aᵀ m A of one tile and channel, each plus `b`, in row-major order. The same
/// operations in the same order for the plain and the pooled outputs (the same bits).
DK_INLINE void tile_outputs(const float *restrict in, size_t plane, size_t c, float b, float y[4]) {
    float s[2][4];
    for (int j = 0; j < 4; j++) {  // s = Aᵀ m
        const float m0 = in[j * plane + c], m1 = in[(4 + j) * plane + c];
        const float m2 = in[(8 + j) * plane + c], m3 = in[(12 + j) * plane + c];
        s[0][j] = m0 + m1 + m2;
        s[1][j] = m1 - m2 - m3;
    }
    for (int a = 0; a < 2; a++) {  // s A
        y[2 * a] = s[a][0] + s[a][1] + s[a][2] + b;
        y[2 * a + 1] = s[a][1] - s[a][2] - s[a][3] + b;
    }
}

DK_INLINE void input_body(const float *restrict x, size_t images, size_t C, size_t H, size_t W, float *restrict v,
                          float *restrict scratch) {
    const size_t th = tiles_along(H), tw = tiles_along(W), rows = 2 * th + 2, cols = 2 * tw + 2;
    const size_t plane = images * th * tw * C;
    for (size_t n = 0; n < images; n++) {
        to_channels_last(x + n * C * H * W, C, H, W, scratch, rows, cols, 1);
        input_tiles(scratch, C, th, tw, cols, v + n * th * tw * C, plane);
    }
}

DK_INLINE void output_body(const float *restrict m, const float *restrict bias, size_t images, size_t C, size_t H,
                           size_t W, float *restrict y, float *restrict scratch) {
    const size_t th = tiles_along(H), tw = tiles_along(W), cols = 2 * tw;
    const size_t plane = images * th * tw * C;
    for (size_t n = 0; n < images; n++) {
        for (size_t ty = 0; ty < th; ty++)
            for (size_t tx = 0; tx < tw; tx++) {
                const float *restrict in = m + ((n * th + ty) * tw + tx) * C;
                float *restrict q = scratch + (2 * ty * cols + 2 * tx) * C;
                for (size_t c = 0; c < C; c++) {
                    float out[4];
                    tile_outputs(in, plane, c, bias ? bias[c] : 0.0f, out);
                    q[c] = out[0];
                    q[C + c] = out[1];
                    q[cols * C + c] = out[2];
                    q[(cols + 1) * C + c] = out[3];
                }
            }
        for (size_t i = 0; i < H; i++) transpose(scratch + i * cols * C, C, W, C, y + n * C * H * W + i * W, H * W);
    }
}

/// The pooled outputs: max over each tile's four outputs (the first of equals in row-major
/// order), then ReLU; `winners` gets the winner's place in the tile (0-3), or
/// DK_WINOGRAD_NO_WINNER where the maximum is not positive (the output is 0 and passes no gradient).
DK_INLINE void output_pool_body(const float *restrict m, const float *restrict bias, size_t images, size_t C, size_t H,
                                size_t W, float *restrict y, unsigned char *restrict winners, float *restrict scratch) {
    const size_t th = tiles_along(H), tw = tiles_along(W), ph = H / 2, pw = W / 2;
    const size_t plane = images * th * tw * C;
    unsigned char *places = (unsigned char *)(scratch + ph * pw * C);
    for (size_t n = 0; n < images; n++) {
        for (size_t ty = 0; ty < ph; ty++)
            for (size_t tx = 0; tx < pw; tx++) {
                const float *restrict in = m + ((n * th + ty) * tw + tx) * C;
                float *restrict q = scratch + (ty * pw + tx) * C;
                unsigned char *restrict place = places + (ty * pw + tx) * C;
                for (size_t c = 0; c < C; c++) {
                    float out[4];
                    tile_outputs(in, plane, c, bias ? bias[c] : 0.0f, out);
                    // maxPool2dReLU's 2×2 rule (max_pool_train.c): each row's right value wins only
                    // when greater, then the bottom row's winner only when greater
                    const int right_top = out[1] > out[0], right_bottom = out[3] > out[2];
                    const float top = right_top ? out[1] : out[0], bottom = right_bottom ? out[3] : out[2];
                    const int down = bottom > top;
                    const float best = down ? bottom : top;
                    const int at = down ? 2 + right_bottom : right_top;
                    const int wins = best > 0.0f;
                    q[c] = wins ? best : 0.0f;
                    place[c] = wins ? (unsigned char)at : DK_WINOGRAD_NO_WINNER;
                }
            }
        transpose(scratch, C, ph * pw, C, y + n * C * ph * pw, ph * pw);
        for (size_t c = 0; c < C; c++)
            for (size_t i = 0; i < ph * pw; i++) winners[(n * C + c) * ph * pw + i] = places[i * C + c];
    }
}

/// The output gradient's transforms for one image's copy `hwc` (border of one): g = A dy Aᵀ and
/// v = Bᵀ dy B, each when asked for.
DK_INLINE void grad_transforms(const float *restrict hwc, size_t n, size_t C, size_t th, size_t tw, size_t cols,
                               size_t plane, float *restrict g, float *restrict v) {
    if (g) grad_tiles(hwc, C, th, tw, cols, g + n * th * tw * C, plane);
    if (v) input_tiles(hwc, C, th, tw, cols, v + n * th * tw * C, plane);
}

DK_INLINE void output_grad_body(const float *restrict dy, size_t images, size_t C, size_t H, size_t W,
                                float *restrict g, float *restrict v, float *restrict scratch) {
    const size_t th = tiles_along(H), tw = tiles_along(W), rows = 2 * th + 2, cols = 2 * tw + 2;
    const size_t plane = images * th * tw * C;
    for (size_t n = 0; n < images; n++) {
        to_channels_last(dy + n * C * H * W, C, H, W, scratch, rows, cols, 1);
        grad_transforms(scratch, n, C, th, tw, cols, plane, g, v);
    }
}

DK_INLINE void pool_grad_body(const float *restrict dy, const unsigned char *restrict winners, size_t images, size_t C,
                              size_t H, size_t W, float *restrict g, float *restrict v, float *restrict scratch) {
    const size_t th = tiles_along(H), tw = tiles_along(W), rows = 2 * th + 2, cols = 2 * tw + 2;
    const size_t plane = images * th * tw * C, ph = H / 2, pw = W / 2, windows = ph * pw;
    // scratch: the output gradient [rows][cols][C] (border of one), then the pooled gradient and
    // the winners channels-last, [windows][C] each
    float *restrict pooled = scratch + rows * cols * C;
    float *restrict places = pooled + windows * C;  // as floats, so that the selects below vectorise
    for (size_t n = 0; n < images; n++) {
        const float *image = dy + n * C * windows;
        const unsigned char *image_winners = winners + n * C * windows;
        transpose(image, windows, C, windows, pooled, C);
        for (size_t c = 0; c < C; c++)
            for (size_t w = 0; w < windows; w++) places[w * C + c] = (float)image_winners[c * windows + w];
        // zero what no window covers: the border, and a last row or column the pooling dropped
        for (size_t i = 0; i < rows; i++) {
            float *line = scratch + i * cols * C;
            if (i == 0 || i > 2 * ph) {
                memset(line, 0, cols * C * sizeof(float));
                continue;
            }
            memset(line, 0, C * sizeof(float));
            memset(line + (2 * pw + 1) * C, 0, (cols - 2 * pw - 1) * C * sizeof(float));
        }
        // each window's four outputs: the pooled gradient at the winner, zero elsewhere
        for (size_t ty = 0; ty < ph; ty++)
            for (size_t tx = 0; tx < pw; tx++) {
                const float *restrict value = pooled + (ty * pw + tx) * C;
                const float *restrict place = places + (ty * pw + tx) * C;
                float *restrict top = scratch + ((2 * ty + 1) * cols + 2 * tx + 1) * C, *restrict bottom = top + cols * C;
                size_t c = 0;
                for (; c + 8 <= C; c += 8) {  // explicit vectors: the compiler left this loop scalar
                    const dk_i8 x = (dk_i8)(*(const dk_v8 *)(value + c));
                    const dk_v8 at = *(const dk_v8 *)(place + c);
                    *(dk_v8 *)(top + c) = (dk_v8)(x & (at == 0.0f));
                    *(dk_v8 *)(top + C + c) = (dk_v8)(x & (at == 1.0f));
                    *(dk_v8 *)(bottom + c) = (dk_v8)(x & (at == 2.0f));
                    *(dk_v8 *)(bottom + C + c) = (dk_v8)(x & (at == 3.0f));
                }
                for (; c < C; c++) {
                    const float x = value[c], at = place[c];
                    top[c] = at == 0.0f ? x : 0.0f;
                    top[C + c] = at == 1.0f ? x : 0.0f;
                    bottom[c] = at == 2.0f ? x : 0.0f;
                    bottom[C + c] = at == 3.0f ? x : 0.0f;
                }
            }
        grad_transforms(scratch, n, C, th, tw, cols, plane, g, v);
    }
}

#if defined(__x86_64__)
// The products between the transforms: C [m, n] (=, or += with accumulate) Σ_k A(i, k) · B[k, n],
// A read with strides (a[i·ai + k·ak]: V for the convolutions, the transformed gradient read
// transposed for dU), B and C row-major with n a multiple of 8. Register tiles of `rows` rows ×
// `vectors` vectors (at most MAX_ROWS × MAX_VECTORS), each A value broadcast, B's rows (at most
// 64 × 64 floats) staying in L1: no packing, which OpenBLAS spent 10% of the step on for these
// short products (K = 32 or 64).
// Every element is one chain of multiply-adds along k in the same order at both widths (runs of
// 64, each added to C), so the AVX2 and AVX-512 levels give the same bits.
#define DK_PRODUCT_TILE(NAME, TARGET, VEC, LANES, BROADCAST, MAX_ROWS, MAX_VECTORS)                                                    \
    __attribute__((target(TARGET))) DK_INLINE void NAME(int rows, int vectors, size_t k, const float *a, size_t ai, \
                                                        size_t ak, const float *b, size_t ldb, float *c, size_t ldc,  \
                                                        int accumulate) {                                            \
        VEC acc[MAX_ROWS][MAX_VECTORS];                                                                              \
        DK_UNROLLED for (int r = 0; r < MAX_ROWS; r++) DK_UNROLLED for (int v = 0; v < MAX_VECTORS; v++) acc[r][v] = (VEC){0}; \
        for (size_t p = 0; p < k; p++) {                                                                             \
            VEC bv[MAX_VECTORS];                                                                                     \
            DK_UNROLLED for (int v = 0; v < MAX_VECTORS; v++) if (v < vectors) bv[v] = *(const VEC *)(b + p * ldb + LANES * v); \
            DK_UNROLLED for (int r = 0; r < MAX_ROWS; r++) {                                                         \
                if (r >= rows) break;                                                                                \
                const VEC x = (VEC)BROADCAST(a + r * ai + p * ak);                                                   \
                DK_UNROLLED for (int v = 0; v < MAX_VECTORS; v++) if (v < vectors) acc[r][v] = __builtin_elementwise_fma(x, bv[v], acc[r][v]); \
            }                                                                                                        \
        }                                                                                                            \
        DK_UNROLLED for (int r = 0; r < MAX_ROWS; r++) {                                                             \
            if (r >= rows) break;                                                                                    \
            DK_UNROLLED for (int v = 0; v < MAX_VECTORS; v++) {                                                      \
                if (v >= vectors) break;                                                                             \
                VEC *out = (VEC *)(c + r * ldc + LANES * v);                                                         \
                *out = accumulate ? *out + acc[r][v] : acc[r][v];                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }

typedef float dk_v16 __attribute__((vector_size(64), aligned(4)));
static inline __attribute__((target("avx512f"))) __m512 broadcast16(const float *x) { return _mm512_set1_ps(*x); }
DK_PRODUCT_TILE(product_tile_avx2, "avx2,fma", dk_v8, 8, _mm256_broadcast_ss, 6, 2)
DK_PRODUCT_TILE(product_tile_avx512, "avx512f", dk_v16, 16, broadcast16, 6, 4)
DK_PRODUCT_TILE(product_tile_avx512_tall, "avx512f", dk_v16, 16, broadcast16, 12, 2)

// Runs of at most 64 along k, so that the A and B rows a run reads stay in L1 while every
// register tile of C passes over them (the weight gradient's k is a block's tile count). AVX2:
// tiles of 6 rows × 2 vectors (12 of the 16 registers accumulate). AVX-512 (n a multiple of 16):
// 6 × 4 where 64 columns remain, else 12 × 2 or 12 × 1 (24 of the 32 registers).
__attribute__((target("avx2,fma"))) static void product_avx2(size_t m, size_t n, size_t k, const float *a, size_t ai, size_t ak,
                                                            const float *b, size_t ldb, float *c, size_t ldc, int accumulate) {
    for (size_t k0 = 0; k0 < k; k0 += 64) {
        const size_t kn = k - k0 < 64 ? k - k0 : 64;
        const int add = accumulate || k0 > 0;
        for (size_t i = 0; i < m; i += 6) {
            const int rows = m - i < 6 ? (int)(m - i) : 6;
            for (size_t j = 0; j < n; j += 16) {
                const float *at = a + i * ai + k0 * ak, *bt = b + k0 * ldb + j;
                float *ct = c + i * ldc + j;
                // constant tile shapes, so that each is unrolled into registers
                if (rows == 6 && n - j >= 16) product_tile_avx2(6, 2, kn, at, ai, ak, bt, ldb, ct, ldc, add);
                else if (n - j >= 16) product_tile_avx2(rows, 2, kn, at, ai, ak, bt, ldb, ct, ldc, add);
                else product_tile_avx2(rows, 1, kn, at, ai, ak, bt, ldb, ct, ldc, add);
            }
        }
    }
}

// Fewer than 6 rows at AVX-512, each row count its own unrolled tile: clang leaves a tile of 4
// vectors over a variable row count rolled, its accumulators on the stack.
__attribute__((target("avx512f"))) static void product_rows_avx512(int rows, int vectors, size_t k, const float *a, size_t ai,
                                                                   size_t ak, const float *b, size_t ldb, float *c,
                                                                   size_t ldc, int accumulate) {
#define DK_ROWS(R)                                                                                          \
    case R:                                                                                                 \
        if (vectors == 4) product_tile_avx512(R, 4, k, a, ai, ak, b, ldb, c, ldc, accumulate);              \
        else if (vectors == 2) product_tile_avx512(R, 2, k, a, ai, ak, b, ldb, c, ldc, accumulate);         \
        else product_tile_avx512(R, 1, k, a, ai, ak, b, ldb, c, ldc, accumulate);                           \
        break;
    switch (rows) { DK_ROWS(1) DK_ROWS(2) DK_ROWS(3) DK_ROWS(4) DK_ROWS(5) DK_ROWS(6) }
#undef DK_ROWS
}

__attribute__((target("avx512f"))) static void product_avx512(size_t m, size_t n, size_t k, const float *a, size_t ai,
                                                              size_t ak, const float *b, size_t ldb, float *c, size_t ldc,
                                                              int accumulate) {
    for (size_t k0 = 0; k0 < k; k0 += 64) {
        const size_t kn = k - k0 < 64 ? k - k0 : 64;
        const int add = accumulate || k0 > 0;
        size_t j = 0;
        for (; n - j >= 64; j += 64)
            for (size_t i = 0; i < m; i += 6) {
                const int rows = m - i < 6 ? (int)(m - i) : 6;
                product_rows_avx512(rows, 4, kn, a + i * ai + k0 * ak, ai, ak, b + k0 * ldb + j, ldb, c + i * ldc + j, ldc, add);
            }
        for (; j < n; j += 32) {
            const int vectors = n - j >= 32 ? 2 : 1;
            size_t i = 0;
            for (; m - i >= 12; i += 12) {
                const float *at = a + i * ai + k0 * ak, *bt = b + k0 * ldb + j;
                float *ct = c + i * ldc + j;
                if (vectors == 2) product_tile_avx512_tall(12, 2, kn, at, ai, ak, bt, ldb, ct, ldc, add);
                else product_tile_avx512_tall(12, 1, kn, at, ai, ak, bt, ldb, ct, ldc, add);
            }
            for (; i < m; i += 6) {  // the last rows, in tiles of at most 6
                const int rows = m - i < 6 ? (int)(m - i) : 6;
                product_rows_avx512(rows, vectors, kn, a + i * ai + k0 * ak, ai, ak, b + k0 * ldb + j, ldb, c + i * ldc + j, ldc, add);
            }
        }
    }
}
#endif

int dk_winograd_train_products_apply(size_t n) {
#if defined(__x86_64__)
    return dk_cpu_has_avx2_fma() && n % 8 == 0;
#else
    (void)n;
    return 0;
#endif
}

int dk_winograd_train_products(int level, size_t positions, size_t m, size_t n, size_t k, const float *a, size_t ai,
                               size_t ak, size_t a_step, const float *b, size_t b_step, float *c, size_t c_step,
                               int accumulate) {
#if defined(__x86_64__)
    if (level < 0) level = dk_cpu_has_avx512() && n % 16 == 0 ? 2 : 1;
    if (!dk_winograd_train_products_apply(n) || dk_choose_level(level) != level || (level == 2 && n % 16 != 0)) return -1;
    for (size_t q = 0; q < positions; q++) {
        if (level == 2) product_avx512(m, n, k, a + q * a_step, ai, ak, b + q * b_step, n, c + q * c_step, n, accumulate);
        else product_avx2(m, n, k, a + q * a_step, ai, ak, b + q * b_step, n, c + q * c_step, n, accumulate);
    }
    return 0;
#else
    (void)level, (void)positions, (void)m, (void)n, (void)k, (void)a, (void)ai, (void)ak, (void)a_step, (void)b;
    (void)b_step, (void)c, (void)c_step, (void)accumulate;
    return -1;
#endif
}

#if defined(__x86_64__)
#define DK_LEVELS(NAME, PARAMS, ARGS)                                                      \
    __attribute__((target("avx512f"))) static void NAME##_avx512 PARAMS { NAME##_body ARGS; } \
    __attribute__((target("avx2,fma"))) static void NAME##_avx2 PARAMS { NAME##_body ARGS; }  \
    static void NAME##_portable PARAMS { NAME##_body ARGS; }                               \
    static void NAME##_best PARAMS {                                                       \
        if (dk_cpu_has_avx512()) NAME##_avx512 ARGS;                                       \
        else if (dk_cpu_has_avx2_fma()) NAME##_avx2 ARGS;                                  \
        else NAME##_portable ARGS;                                                         \
    }
#else
#define DK_LEVELS(NAME, PARAMS, ARGS) \
    static void NAME##_best PARAMS { NAME##_body ARGS; }
#endif

DK_LEVELS(input, (const float *x, size_t images, size_t C, size_t H, size_t W, float *v, float *scratch),
          (x, images, C, H, W, v, scratch))
DK_LEVELS(output, (const float *m, const float *bias, size_t images, size_t C, size_t H, size_t W, float *y, float *scratch),
          (m, bias, images, C, H, W, y, scratch))
DK_LEVELS(output_pool, (const float *m, const float *bias, size_t images, size_t C, size_t H, size_t W, float *y,
                        unsigned char *winners, float *scratch),
          (m, bias, images, C, H, W, y, winners, scratch))
DK_LEVELS(output_grad, (const float *dy, size_t images, size_t C, size_t H, size_t W, float *g, float *v, float *scratch),
          (dy, images, C, H, W, g, v, scratch))
DK_LEVELS(pool_grad, (const float *dy, const unsigned char *winners, size_t images, size_t C, size_t H, size_t W, float *g,
                      float *v, float *scratch),
          (dy, winners, images, C, H, W, g, v, scratch))

void dk_winograd_train_input(const float *x, size_t images, size_t channels, size_t height, size_t width, float *v,
                             float *scratch) {
    input_best(x, images, channels, height, width, v, scratch);
}

void dk_winograd_train_output(const float *m, const float *bias, size_t images, size_t channels, size_t height,
                              size_t width, float *y, float *scratch) {
    output_best(m, bias, images, channels, height, width, y, scratch);
}

void dk_winograd_train_output_pool(const float *m, const float *bias, size_t images, size_t channels, size_t height,
                                   size_t width, float *y, unsigned char *winners, float *scratch) {
    output_pool_best(m, bias, images, channels, height, width, y, winners, scratch);
}

void dk_winograd_train_output_grad(const float *dy, size_t images, size_t channels, size_t height, size_t width,
                                   float *g, float *v, float *scratch) {
    output_grad_best(dy, images, channels, height, width, g, v, scratch);
}

void dk_winograd_train_pool_grad(const float *dy, const unsigned char *winners, size_t images, size_t channels,
                                 size_t height, size_t width, float *g, float *v, float *scratch) {
    pool_grad_best(dy, winners, images, channels, height, width, g, v, scratch);
}

void dk_winograd_train_weights(const float *w, size_t out_channels, size_t in_channels, int rotated, float *u) {
    const size_t O = out_channels, C = in_channels;
    const size_t ins = rotated ? O : C, outs = rotated ? C : O;
    for (size_t o = 0; o < O; o++)
        for (size_t c = 0; c < C; c++) {
            const float *k = w + (o * C + c) * 9;
            float g[3][3], t[4][3];
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) g[i][j] = rotated ? k[(2 - i) * 3 + (2 - j)] : k[i * 3 + j];
            for (int j = 0; j < 3; j++) {  // t = G g
                t[0][j] = g[0][j];
                t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
                t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
                t[3][j] = g[2][j];
            }
            const size_t in = rotated ? o : c, out = rotated ? c : o;
            for (int i = 0; i < 4; i++) {  // t Gᵀ
                const float r[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
                for (int j = 0; j < 4; j++) u[((size_t)(i * 4 + j) * ins + in) * outs + out] = r[j];
            }
        }
}

void dk_winograd_train_weight_grad(const float *du, size_t out_channels, size_t in_channels, float *dw) {
    const size_t O = out_channels, C = in_channels, plane = O * C;
    for (size_t o = 0; o < O; o++)
        for (size_t c = 0; c < C; c++) {
            float d[4][4], e[3][4];
            for (int k = 0; k < 16; k++) d[k / 4][k % 4] = du[k * plane + o * C + c];
            for (int j = 0; j < 4; j++) {  // e = Gᵀ du
                e[0][j] = d[0][j] + 0.5f * (d[1][j] + d[2][j]);
                e[1][j] = 0.5f * (d[1][j] - d[2][j]);
                e[2][j] = 0.5f * (d[1][j] + d[2][j]) + d[3][j];
            }
            float *out = dw + (o * C + c) * 9;
            for (int i = 0; i < 3; i++) {  // e G
                out[i * 3 + 0] = e[i][0] + 0.5f * (e[i][1] + e[i][2]);
                out[i * 3 + 1] = 0.5f * (e[i][1] - e[i][2]);
                out[i * 3 + 2] = 0.5f * (e[i][1] + e[i][2]) + e[i][3];
            }
        }
}
