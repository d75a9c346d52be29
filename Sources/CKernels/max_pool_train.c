// 2×2 max-pooling with stride 2 for training, forward with argmax and backward (dk_max_pool_train.h).
//
// The AVX-512 path takes up to 16 windows of a row at a time, with masked loads and stores for
// shorter runs (cnn-small's second layer pools 14-wide planes: 7 windows a row), so that no
// window goes through scalar code: the even and odd columns of a row pair are split
// with two-source permutes, the pairs compared with masks, and the winners' indices blended the
// same way; the backward pass builds each output row pair's 32 values from four masks and
// interleaves them back with the same permutes. The AVX2 path is the same at 8 windows. All
// paths make the same comparisons in the same order, so their outputs are identical.

#include "vector_common.h"
#include "dk_max_pool_train.h"
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/// One window of the forward pass: the scalar rule both paths follow.
static inline void pool_window(const float *r0, const float *r1, size_t ox, size_t w, int32_t base, int relu, float *out,
                               int32_t *index) {
    const float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
    const int right_top = b > a, right_bottom = d > c;
    const float top = right_top ? b : a, bottom = right_bottom ? d : c;
    const int down = bottom > top;
    const float best = down ? bottom : top;
    const int32_t winner = base + (down ? (int32_t)(w + 2 * ox) + right_bottom : (int32_t)(2 * ox) + right_top);
    const int active = !relu || best > 0;
    *out = active ? best : 0;
    *index = active ? winner : -1;
}

/// One window of the backward pass.
static inline void unpool_window(float g, int32_t won, size_t top, size_t w, float *dx) {
    dx[top] = won == (int32_t)top ? g : 0;
    dx[top + 1] = won == (int32_t)(top + 1) ? g : 0;
    dx[top + w] = won == (int32_t)(top + w) ? g : 0;
    dx[top + w + 1] = won == (int32_t)(top + w + 1) ? g : 0;
}

static void forward_portable(const float *x, float *y, int32_t *argmax, size_t planes, size_t h, size_t w, int relu) {
    const size_t p = h / 2, q = w / 2;
    for (size_t plane = 0; plane < planes; plane++) {
        const float *src = x + plane * h * w;
        float *dst = y + plane * p * q;
        int32_t *idx = argmax + plane * p * q;
        for (size_t oy = 0; oy < p; oy++) {
            const float *r0 = src + 2 * oy * w, *r1 = r0 + w;
            for (size_t ox = 0; ox < q; ox++) pool_window(r0, r1, ox, w, (int32_t)(2 * oy * w), relu, dst + oy * q + ox, idx + oy * q + ox);
        }
    }
}

static void backward_portable(const float *grad, const int32_t *argmax, float *dx, size_t planes, size_t h, size_t w) {
    const size_t p = h / 2, q = w / 2;
    for (size_t plane = 0; plane < planes; plane++) {
        const float *g = grad + plane * p * q;
        const int32_t *won = argmax + plane * p * q;
        float *d = dx + plane * h * w;
        for (size_t oy = 0; oy < p; oy++)
            for (size_t ox = 0; ox < q; ox++) unpool_window(g[oy * q + ox], won[oy * q + ox], 2 * oy * w + 2 * ox, w, d);
    }
}

#if defined(__x86_64__)
/// The first `n` of 16 lanes (all 16 from n = 16 up, none at 0).
static inline __mmask16 lanes_mask(size_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

__attribute__((target("avx512f"))) static void pool2x2_forward_avx512(const float *x, float *y, int32_t *argmax, size_t planes, size_t h,
                                                              size_t w, int relu) {
    const size_t p = h / 2, q = w / 2;
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    const __m512i one = _mm512_set1_epi32(1), none = _mm512_set1_epi32(-1);
    const __m512 zero = _mm512_setzero_ps();
    for (size_t plane = 0; plane < planes; plane++) {
        const float *src = x + plane * h * w;
        float *dst = y + plane * p * q;
        int32_t *idx = argmax + plane * p * q;
        for (size_t oy = 0; oy < p; oy++) {
            const float *r0 = src + 2 * oy * w, *r1 = r0 + w;
            const int32_t base = (int32_t)(2 * oy * w);
            for (size_t ox = 0; ox < q; ox += 16) {
                // Up to 16 windows: a short last run reads and writes only its own lanes.
                const size_t n = q - ox < 16 ? q - ox : 16;
                const __mmask16 lanes = (__mmask16)((1u << n) - 1), first = lanes_mask(2 * n), second = n > 8 ? lanes_mask(2 * n - 16) : 0;
                const __m512 t0 = _mm512_maskz_loadu_ps(first, r0 + 2 * ox), t1 = _mm512_maskz_loadu_ps(second, r0 + 2 * ox + 16);
                const __m512 b0 = _mm512_maskz_loadu_ps(first, r1 + 2 * ox), b1 = _mm512_maskz_loadu_ps(second, r1 + 2 * ox + 16);
                const __m512 a = _mm512_permutex2var_ps(t0, even, t1), b = _mm512_permutex2var_ps(t0, odd, t1);
                const __m512 c = _mm512_permutex2var_ps(b0, even, b1), d = _mm512_permutex2var_ps(b0, odd, b1);
                const __mmask16 right_top = _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ);
                const __mmask16 right_bottom = _mm512_cmp_ps_mask(d, c, _CMP_GT_OQ);
                const __m512 top = _mm512_mask_blend_ps(right_top, a, b), bottom = _mm512_mask_blend_ps(right_bottom, c, d);
                const __mmask16 down = _mm512_cmp_ps_mask(bottom, top, _CMP_GT_OQ);
                const __m512 best = _mm512_mask_blend_ps(down, top, bottom);
                const __m512i column = _mm512_add_epi32(_mm512_set1_epi32(base + (int32_t)(2 * ox)), even);
                const __m512i top_index = _mm512_mask_add_epi32(column, right_top, column, one);
                const __m512i bottom_column = _mm512_add_epi32(column, _mm512_set1_epi32((int32_t)w));
                const __m512i bottom_index = _mm512_mask_add_epi32(bottom_column, right_bottom, bottom_column, one);
                const __m512i winner = _mm512_mask_blend_epi32(down, top_index, bottom_index);
                const __mmask16 active = relu ? _mm512_cmp_ps_mask(best, zero, _CMP_GT_OQ) : (__mmask16)0xFFFF;
                _mm512_mask_storeu_ps(dst + oy * q + ox, lanes, _mm512_maskz_mov_ps(active, best));
                _mm512_mask_storeu_epi32(idx + oy * q + ox, lanes, _mm512_mask_blend_epi32(active, none, winner));
            }
        }
    }
}

__attribute__((target("avx512f"))) static void pool2x2_backward_avx512(const float *grad, const int32_t *argmax, float *dx, size_t planes,
                                                               size_t h, size_t w) {
    const size_t p = h / 2, q = w / 2;
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i low = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i high = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    const __m512i one = _mm512_set1_epi32(1), row = _mm512_set1_epi32((int32_t)w);
    for (size_t plane = 0; plane < planes; plane++) {
        const float *g = grad + plane * p * q;
        const int32_t *won = argmax + plane * p * q;
        float *d = dx + plane * h * w;
        for (size_t oy = 0; oy < p; oy++) {
            float *d0 = d + 2 * oy * w, *d1 = d0 + w;
            for (size_t ox = 0; ox < q; ox += 16) {
                const size_t n = q - ox < 16 ? q - ox : 16;
                const __mmask16 lanes = (__mmask16)((1u << n) - 1), first = lanes_mask(2 * n), second = n > 8 ? lanes_mask(2 * n - 16) : 0;
                const __m512 v = _mm512_maskz_loadu_ps(lanes, g + oy * q + ox);
                const __m512i winner = _mm512_maskz_loadu_epi32(lanes, won + oy * q + ox);
                const __m512i top_left = _mm512_add_epi32(_mm512_set1_epi32((int32_t)(2 * oy * w + 2 * ox)), even);
                const __m512i bottom_left = _mm512_add_epi32(top_left, row);
                const __m512 tl = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(winner, top_left), v);
                const __m512 tr = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(winner, _mm512_add_epi32(top_left, one)), v);
                const __m512 bl = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(winner, bottom_left), v);
                const __m512 br = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(winner, _mm512_add_epi32(bottom_left, one)), v);
                _mm512_mask_storeu_ps(d0 + 2 * ox, first, _mm512_permutex2var_ps(tl, low, tr));
                _mm512_mask_storeu_ps(d0 + 2 * ox + 16, second, _mm512_permutex2var_ps(tl, high, tr));
                _mm512_mask_storeu_ps(d1 + 2 * ox, first, _mm512_permutex2var_ps(bl, low, br));
                _mm512_mask_storeu_ps(d1 + 2 * ox + 16, second, _mm512_permutex2var_ps(bl, high, br));
            }
        }
    }
}
#define AVX2_TARGET __attribute__((target("avx2")))

/// Lanes 0, 2, 4, ..., 14 (`odd` 0: the even columns) or 1, 3, ..., 15 of the 16 floats lo, hi.
AVX2_TARGET static inline __m256 columns8(__m256 lo, __m256 hi, int odd) {
    const __m256 mixed = odd ? _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)) : _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(mixed), _MM_SHUFFLE(3, 1, 2, 0)));
}

/// The AVX-512 loops at half the width: 8 windows at a time, masked loads and stores for a
/// shorter run; comparison masks are all-ones lanes here, so `index - mask` adds 1 where set.
AVX2_TARGET static void pool2x2_forward_avx2(const float *x, float *y, int32_t *argmax, size_t planes, size_t h, size_t w,
                                             int relu) {
    const size_t p = h / 2, q = w / 2;
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14), none = _mm256_set1_epi32(-1);
    const __m256 zero = _mm256_setzero_ps();
    for (size_t plane = 0; plane < planes; plane++) {
        const float *src = x + plane * h * w;
        float *dst = y + plane * p * q;
        int32_t *idx = argmax + plane * p * q;
        for (size_t oy = 0; oy < p; oy++) {
            const float *r0 = src + 2 * oy * w, *r1 = r0 + w;
            const int32_t base = (int32_t)(2 * oy * w);
            for (size_t ox = 0; ox < q; ox += 8) {
                const long n = q - ox < 8 ? (long)(q - ox) : 8;
                const __m256i lanes = dk_lanes8(n), first = dk_lanes8(2 * n), second = dk_lanes8(2 * n - 8);
                const __m256 t0 = _mm256_maskload_ps(r0 + 2 * ox, first), t1 = _mm256_maskload_ps(r0 + 2 * ox + 8, second);
                const __m256 b0 = _mm256_maskload_ps(r1 + 2 * ox, first), b1 = _mm256_maskload_ps(r1 + 2 * ox + 8, second);
                const __m256 a = columns8(t0, t1, 0), b = columns8(t0, t1, 1), c = columns8(b0, b1, 0), d = columns8(b0, b1, 1);
                const __m256 right_top = _mm256_cmp_ps(b, a, _CMP_GT_OQ), right_bottom = _mm256_cmp_ps(d, c, _CMP_GT_OQ);
                const __m256 top = _mm256_blendv_ps(a, b, right_top), bottom = _mm256_blendv_ps(c, d, right_bottom);
                const __m256 down = _mm256_cmp_ps(bottom, top, _CMP_GT_OQ);
                const __m256 best = _mm256_blendv_ps(top, bottom, down);
                const __m256i column = _mm256_add_epi32(_mm256_set1_epi32(base + (int32_t)(2 * ox)), even);
                const __m256i top_index = _mm256_sub_epi32(column, _mm256_castps_si256(right_top));
                const __m256i bottom_index = _mm256_sub_epi32(_mm256_add_epi32(column, _mm256_set1_epi32((int32_t)w)),
                                                              _mm256_castps_si256(right_bottom));
                const __m256i winner = _mm256_blendv_epi8(top_index, bottom_index, _mm256_castps_si256(down));
                const __m256 active = relu ? _mm256_cmp_ps(best, zero, _CMP_GT_OQ) : _mm256_castsi256_ps(none);
                _mm256_maskstore_ps(dst + oy * q + ox, lanes, _mm256_and_ps(best, active));
                _mm256_maskstore_epi32(idx + oy * q + ox, lanes, _mm256_blendv_epi8(none, winner, _mm256_castps_si256(active)));
            }
        }
    }
}

AVX2_TARGET static void pool2x2_backward_avx2(const float *grad, const int32_t *argmax, float *dx, size_t planes, size_t h,
                                              size_t w) {
    const size_t p = h / 2, q = w / 2;
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14), one = _mm256_set1_epi32(1), row = _mm256_set1_epi32((int32_t)w);
    for (size_t plane = 0; plane < planes; plane++) {
        const float *g = grad + plane * p * q;
        const int32_t *won = argmax + plane * p * q;
        float *d = dx + plane * h * w;
        for (size_t oy = 0; oy < p; oy++) {
            float *d0 = d + 2 * oy * w, *d1 = d0 + w;
            for (size_t ox = 0; ox < q; ox += 8) {
                const long n = q - ox < 8 ? (long)(q - ox) : 8;
                const __m256i lanes = dk_lanes8(n), first = dk_lanes8(2 * n), second = dk_lanes8(2 * n - 8);
                const __m256 v = _mm256_maskload_ps(g + oy * q + ox, lanes);
                const __m256i winner = _mm256_maskload_epi32(won + oy * q + ox, lanes);
                const __m256i top_left = _mm256_add_epi32(_mm256_set1_epi32((int32_t)(2 * oy * w + 2 * ox)), even);
                const __m256i bottom_left = _mm256_add_epi32(top_left, row);
#define DK_WHERE(position) _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_cmpeq_epi32(winner, position)))
                const __m256 tl = DK_WHERE(top_left), tr = DK_WHERE(_mm256_add_epi32(top_left, one));
                const __m256 bl = DK_WHERE(bottom_left), br = DK_WHERE(_mm256_add_epi32(bottom_left, one));
#undef DK_WHERE
                // Interleave left and right: unpack within 128-bit halves, then put the halves in order.
                const __m256 top_lo = _mm256_unpacklo_ps(tl, tr), top_hi = _mm256_unpackhi_ps(tl, tr);
                const __m256 bottom_lo = _mm256_unpacklo_ps(bl, br), bottom_hi = _mm256_unpackhi_ps(bl, br);
                _mm256_maskstore_ps(d0 + 2 * ox, first, _mm256_permute2f128_ps(top_lo, top_hi, 0x20));
                _mm256_maskstore_ps(d0 + 2 * ox + 8, second, _mm256_permute2f128_ps(top_lo, top_hi, 0x31));
                _mm256_maskstore_ps(d1 + 2 * ox, first, _mm256_permute2f128_ps(bottom_lo, bottom_hi, 0x20));
                _mm256_maskstore_ps(d1 + 2 * ox + 8, second, _mm256_permute2f128_ps(bottom_lo, bottom_hi, 0x31));
            }
        }
    }
}
#endif


int dk_max_pool2x2_forward(int level, const float *x, float *y, int32_t *argmax, size_t planes, size_t h, size_t w,
                           int relu) {
    const int l = dk_choose_level(level);
    if (l < 0) return -1;
#if defined(__x86_64__)
    if (l == 2) { pool2x2_forward_avx512(x, y, argmax, planes, h, w, relu); return 0; }
    if (l == 1) { pool2x2_forward_avx2(x, y, argmax, planes, h, w, relu); return 0; }
#endif
    forward_portable(x, y, argmax, planes, h, w, relu);
    return 0;
}

int dk_max_pool2x2_backward(int level, const float *grad, const int32_t *argmax, float *dx, size_t planes, size_t h,
                            size_t w) {
    const int l = dk_choose_level(level);
    if (l < 0 || h % 2 != 0 || w % 2 != 0) return -1;
#if defined(__x86_64__)
    if (l == 2) { pool2x2_backward_avx512(grad, argmax, dx, planes, h, w); return 0; }
    if (l == 1) { pool2x2_backward_avx2(grad, argmax, dx, planes, h, w); return 0; }
#endif
    backward_portable(grad, argmax, dx, planes, h, w);
    return 0;
}

// ---- Blocked [images][channels/block][h][w][block] input (oneDNN's nChw16c / nChw8c) -------------

/// One image's channel block: the windows of `block` channels side by side (one lane each, the
/// same rule as `pool_window`), written to the plain [channels, p, q] output and argmax.
__attribute__((always_inline)) static inline void blocked_forward_block(const float *plane, size_t block, size_t h, size_t w,
                                                                       int relu, float *y, int32_t *argmax) {
    const size_t p = h / 2, q = w / 2;
    float best[16];
    int32_t winner[16];
    for (size_t oy = 0; oy < p; oy++)
        for (size_t ox = 0; ox < q; ox++) {
            const int32_t top_left = (int32_t)(2 * oy * w + 2 * ox);
            const float *a = plane + (size_t)top_left * block, *b = a + block, *c = a + w * block, *d = c + block;
            for (size_t lane = 0; lane < block; lane++) {
                const int right_top = b[lane] > a[lane], right_bottom = d[lane] > c[lane];
                const float top = right_top ? b[lane] : a[lane], bottom = right_bottom ? d[lane] : c[lane];
                const int down = bottom > top;
                const float most = down ? bottom : top;
                const int32_t won = top_left + (down ? (int32_t)w + right_bottom : right_top);
                const int active = !relu || most > 0;
                best[lane] = active ? most : 0;
                winner[lane] = active ? won : -1;
            }
            for (size_t lane = 0; lane < block; lane++) {
                y[lane * p * q + oy * q + ox] = best[lane];
                argmax[lane * p * q + oy * q + ox] = winner[lane];
            }
        }
}

__attribute__((always_inline)) static inline void blocked_forward(const float *x, size_t images, size_t channels, size_t h, size_t w,
                                                                 size_t block, int relu, float *y, int32_t *argmax) {
    const size_t blocks = channels / block, pq = (h / 2) * (w / 2);
    for (size_t img = 0; img < images; img++)
        for (size_t cb = 0; cb < blocks; cb++) {
            const size_t first = img * channels + cb * block;
            blocked_forward_block(x + (img * blocks + cb) * h * w * block, block, h, w, relu, y + first * pq, argmax + first * pq);
        }
}

/// One image's channel block of the backward pass: every position of the window written, the
/// gradient at the winner and 0 at the other three (dense stores, lane by lane).
__attribute__((always_inline)) static inline void blocked_backward_block(const float *grad, const int32_t *argmax, size_t block,
                                                                        size_t h, size_t w, float *d) {
    const size_t p = h / 2, q = w / 2, pq = p * q;
    if (h % 2 != 0 || w % 2 != 0) memset(d, 0, h * w * block * sizeof(float));  // the rows and columns no window covers
    float g[16];
    int32_t won[16];
    for (size_t oy = 0; oy < p; oy++)
        for (size_t ox = 0; ox < q; ox++) {
            const int32_t top_left = (int32_t)(2 * oy * w + 2 * ox), bottom_left = top_left + (int32_t)w;
            for (size_t lane = 0; lane < block; lane++) {
                g[lane] = grad[lane * pq + oy * q + ox];
                won[lane] = argmax[lane * pq + oy * q + ox];
            }
            float *tl = d + (size_t)top_left * block, *tr = tl + block, *bl = d + (size_t)bottom_left * block, *br = bl + block;
            for (size_t lane = 0; lane < block; lane++) {
                tl[lane] = won[lane] == top_left ? g[lane] : 0;
                tr[lane] = won[lane] == top_left + 1 ? g[lane] : 0;
                bl[lane] = won[lane] == bottom_left ? g[lane] : 0;
                br[lane] = won[lane] == bottom_left + 1 ? g[lane] : 0;
            }
        }
}

__attribute__((always_inline)) static inline void blocked_backward(const float *grad, const int32_t *argmax, size_t images, size_t channels,
                                                                  size_t h, size_t w, size_t block, float *dx) {
    const size_t blocks = channels / block, pq = (h / 2) * (w / 2);
    for (size_t img = 0; img < images; img++)
        for (size_t cb = 0; cb < blocks; cb++) {
            const size_t first = (img * channels + cb * block) * pq;
            blocked_backward_block(grad + first, argmax + first, block, h, w, dx + (img * blocks + cb) * h * w * block);
        }
}

#if defined(__x86_64__)
/// Both blocked kernels compiled for one instruction set, the block size a constant in each call
/// so that the lane loops vectorise.
#define BLOCKED_KERNELS(SUFFIX, TARGET)                                                                              \
    TARGET static void blocked_forward_##SUFFIX(const float *x, size_t images, size_t channels, size_t h, size_t w,  \
                                                size_t block, int relu, float *y, int32_t *argmax) {                 \
        if (block == 16) blocked_forward(x, images, channels, h, w, 16, relu, y, argmax);                          \
        else blocked_forward(x, images, channels, h, w, 8, relu, y, argmax);                                       \
    }                                                                                                                \
    TARGET static void blocked_backward_##SUFFIX(const float *grad, const int32_t *argmax, size_t images,           \
                                                 size_t channels, size_t h, size_t w, size_t block, float *dx) {     \
        if (block == 16) blocked_backward(grad, argmax, images, channels, h, w, 16, dx);                           \
        else blocked_backward(grad, argmax, images, channels, h, w, 8, dx);                                        \
    }
BLOCKED_KERNELS(avx512, __attribute__((target("avx512f"))))
BLOCKED_KERNELS(avx2, __attribute__((target("avx2"))))
#endif

int dk_max_pool2x2_blocked_forward(const float *x, size_t images, size_t channels, size_t h, size_t w, size_t block, int relu,
                                   float *y, int32_t *argmax) {
    if ((block != 8 && block != 16) || channels % block != 0) return -1;
#if defined(__x86_64__)
    if (dk_cpu_has_avx512()) { blocked_forward_avx512(x, images, channels, h, w, block, relu, y, argmax); return 0; }
    if (dk_cpu_has_avx2_fma()) { blocked_forward_avx2(x, images, channels, h, w, block, relu, y, argmax); return 0; }
#endif
    blocked_forward(x, images, channels, h, w, block, relu, y, argmax);
    return 0;
}

int dk_max_pool2x2_blocked_backward(const float *grad, const int32_t *argmax, size_t images, size_t channels, size_t h, size_t w,
                                    size_t block, float *dx) {
    if ((block != 8 && block != 16) || channels % block != 0) return -1;
#if defined(__x86_64__)
    if (dk_cpu_has_avx512()) { blocked_backward_avx512(grad, argmax, images, channels, h, w, block, dx); return 0; }
    if (dk_cpu_has_avx2_fma()) { blocked_backward_avx2(grad, argmax, images, channels, h, w, block, dx); return 0; }
#endif
    blocked_backward(grad, argmax, images, channels, h, w, block, dx);
    return 0;
}
