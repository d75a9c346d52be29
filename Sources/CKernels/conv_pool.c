// conv → ReLU → max-pool for training, one batch chunk per call (see dk_conv_pool.h).
//
// Why: on the cnn-small teacher (batch 128, 28×28×1 images, 32 output channels) the unfused
// layer writes a 12.8 MB convolution output, reads it back to pool it, and in the backward pass
// writes and reads a 12.8 MB gradient of it; max-pooling's backward alone was 21% of the
// training step (BENCHMARKS.md, "Round two"). Here no convolution output reaches memory: in the
// general route each image's convolution output is computed into a scratch buffer that stays in the core's cache ([P·Q][O] floats, channels innermost,
// 100 KB for cnn-small), pooled from there, and only the pooled values and the winners' positions
// are stored. The backward pass scatters the pooled gradient to the winners in a cache-resident
// [P·Q][O] buffer and accumulates dw from the rows that received one (at most one per window).
//
// Two routes. The row-pair route (stride 1, a 2×2/2 pool, rows of at most 32 outputs: cnn-small's
// and LeNet-5's first layers) puts the convolution's columns in the vector lanes; it is described
// above its code below. The general route, for every other shape, is this one.
// With few input channels a convolution is a short dot product (K = C·R·S, 9 for a grayscale
// 3×3) per output: the inner loops run over 16 output channels per vector, with the input value
// broadcast (16 lanes busy whatever C is). The three code paths share their loops: the AVX2 and
// AVX-512 entry points inline the same functions under `target(...)`.
//
// Letters: C input channels, H×W input, O output channels (Op: O rounded up to 16), R×S kernel,
// K = C·R·S, P×Q convolution output, U×V pooled output.
#pragma clang fp contract(fast)

#include "vector_common.h"
#include "dk_conv_pool.h"

#include <stdlib.h>
#include <string.h>

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

#define DK_INLINE static inline __attribute__((always_inline))

/// Sizes derived once per call, and the scratch regions.
typedef struct {
    const dk_conv_pool_shape *s;
    size_t k, op, hp, wp, pq, uv;
    size_t *taps;    // [K] offset of tap (c, i, j) in the padded image
    float *xp;       // [C][Hp][Wp] the image with its zero border
    float *wt;       // [K][Op] forward: the weights, transposed and zero-padded; backward: dw's sums
    float *bias;     // [Op] forward: the bias; backward: db's sums
    float *conv;     // [P·Q][Op] forward: the convolution; backward: its gradient
    float *pooled;   // [U·V][Op] forward: pooled values; backward unused
    int32_t *winner; // [U·V][Op] forward: winners' positions
    unsigned char *hit;  // [P·Q] backward: rows of `conv` that received a gradient
    void *block;
} context;

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

/// Allocates the scratch of one call in one block; 0 on success.
static int context_init(context *c, const dk_conv_pool_shape *s) {
    c->s = s;
    c->k = (size_t)s->channels * s->kernel_h * s->kernel_w;
    c->op = round_up((size_t)s->out_channels, 16);
    c->hp = (size_t)s->in_h + 2 * (size_t)s->pad_h;
    c->wp = (size_t)s->in_w + 2 * (size_t)s->pad_w;
    c->pq = (size_t)s->conv_h * s->conv_w;
    c->uv = (size_t)s->out_h * s->out_w;
    const size_t sizes[] = {
        c->k * sizeof(size_t), (size_t)s->channels * c->hp * c->wp * sizeof(float), c->k * c->op * sizeof(float),
        c->op * sizeof(float), c->pq * c->op * sizeof(float), c->uv * c->op * sizeof(float), c->uv * c->op * sizeof(int32_t),
        c->pq,
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += round_up(sizes[i], 64);
    char *p = aligned_alloc(64, total);
    if (!p) return -1;
    memset(p, 0, total);
    c->block = p;
    c->taps = (size_t *)p; p += round_up(sizes[0], 64);
    c->xp = (float *)p; p += round_up(sizes[1], 64);
    c->wt = (float *)p; p += round_up(sizes[2], 64);
    c->bias = (float *)p; p += round_up(sizes[3], 64);
    c->conv = (float *)p; p += round_up(sizes[4], 64);
    c->pooled = (float *)p; p += round_up(sizes[5], 64);
    c->winner = (int32_t *)p; p += round_up(sizes[6], 64);
    c->hit = (unsigned char *)p;
    size_t k = 0;
    for (int ch = 0; ch < s->channels; ch++)
        for (int i = 0; i < s->kernel_h; i++)
            for (int j = 0; j < s->kernel_w; j++)
                c->taps[k++] = ((size_t)ch * c->hp + (size_t)i * s->dilation_h) * c->wp + (size_t)j * s->dilation_w;
    return 0;
}

/// Copies image [C, H, W] into the interior of the zero-bordered `xp`.
static void load_image(const context *c, const float *x) {
    const dk_conv_pool_shape *s = c->s;
    for (int ch = 0; ch < s->channels; ch++)
        for (int y = 0; y < s->in_h; y++)
            memcpy(c->xp + ((size_t)ch * c->hp + y + s->pad_h) * c->wp + s->pad_w,
                   x + ((size_t)ch * s->in_h + y) * s->in_w, (size_t)s->in_w * sizeof(float));
}

/// Offset in `xp` of the input read by tap (0, 0, 0) for convolution output t.
DK_INLINE size_t patch_origin(const context *c, size_t t) {
    const size_t oy = t / (size_t)c->s->conv_w, ox = t % (size_t)c->s->conv_w;
    return oy * (size_t)c->s->stride_h * c->wp + ox * (size_t)c->s->stride_w;
}

// Macros rather than functions: a function taking or returning a 64-byte vector has a
// different calling convention with and without AVX-512 (clang warns), even when inlined.
#define load16(p) (*(const v16f *)(p))
#define select16(mask, yes, no) ((v16f)(((v16i)(yes) & (mask)) | ((v16i)(no) & ~(mask))))
typedef float v16f_unaligned __attribute__((vector_size(64), aligned(4)));
typedef int32_t v16i_unaligned __attribute__((vector_size(64), aligned(4)));
#define load16u(p) ((v16f)(*(const v16f_unaligned *)(p)))
#define store16u(p, v) (*(v16f_unaligned *)(p) = (v))
/// The sum of a vector's lanes, in a fixed order (halves added pairwise).
#define sum16(v)                                                                                                    \
    ({                                                                                                              \
        const v16f s16_ = (v);                                                                                      \
        const float s8_[8] = {s16_[0] + s16_[8], s16_[1] + s16_[9], s16_[2] + s16_[10], s16_[3] + s16_[11],          \
                              s16_[4] + s16_[12], s16_[5] + s16_[13], s16_[6] + s16_[14], s16_[7] + s16_[15]};      \
        ((s8_[0] + s8_[4]) + (s8_[1] + s8_[5])) + ((s8_[2] + s8_[6]) + (s8_[3] + s8_[7]));                          \
    })

/// conv [t0 + p][·] = bias + Σ_k xp[origin(t0 + p) + tap k] · wt[k][·] for p < n: n positions
/// (a constant at each call site, so that the n accumulators stay in registers) × one vector of
/// 16 output channels at a time.
DK_INLINE void conv_tile(const context *c, size_t t0, const int n) {
    size_t origin[8];
    for (int p = 0; p < n; p++) origin[p] = patch_origin(c, t0 + (size_t)p);
    for (size_t v = 0; v < c->op; v += 16) {
        v16f acc[8];
        const v16f b = load16(c->bias + v);
        for (int p = 0; p < n; p++) acc[p] = b;
        for (size_t k = 0; k < c->k; k++) {
            const v16f wv = load16(c->wt + k * c->op + v);
            const float *xk = c->xp + c->taps[k];
            for (int p = 0; p < n; p++) acc[p] += xk[origin[p]] * wv;
        }
        for (int p = 0; p < n; p++) *(v16f *)(c->conv + (t0 + (size_t)p) * c->op + v) = acc[p];
    }
}

/// Pools `conv` into `pooled`/`winner` ([U·V][Op]): the first strictly greater value of each
/// window wins; then ReLU (0 and winner -1 where the maximum is not positive).
DK_INLINE void pool_image(const context *c) {
    const dk_conv_pool_shape *s = c->s;
    for (int u = 0; u < s->out_h; u++) {
        const int y0 = u * s->pool_stride_h - s->pool_pad_h;
        const int i0 = y0 < 0 ? 0 : y0, i1 = y0 + s->pool_h > s->conv_h ? s->conv_h : y0 + s->pool_h;
        for (int v = 0; v < s->out_w; v++) {
            const int x0 = v * s->pool_stride_w - s->pool_pad_w;
            const int j0 = x0 < 0 ? 0 : x0, j1 = x0 + s->pool_w > s->conv_w ? s->conv_w : x0 + s->pool_w;
            const size_t first = (size_t)i0 * s->conv_w + j0, out = (size_t)u * s->out_w + v;
            for (size_t o = 0; o < c->op; o += 16) {
                v16f best = load16(c->conv + first * c->op + o);
                v16i index = (v16i){0} + (int32_t)first;
                for (int i = i0; i < i1; i++)
                    for (int j = i == i0 ? j0 + 1 : j0; j < j1; j++) {
                        const size_t w = (size_t)i * s->conv_w + j;
                        const v16f value = load16(c->conv + w * c->op + o);
                        const v16i greater = value > best;
                        best = select16(greater, value, best);
                        index = (index & ~greater) | (greater & (int32_t)w);
                    }
                const v16i active = best > 0.0f;  // false for NaN, as `best > 0` in Tensor.maxPool2d
                *(v16f *)(c->pooled + out * c->op + o) = select16(active, best, (v16f){0});
                *(v16i *)(c->winner + out * c->op + o) = index | ~active;
            }
        }
    }
}

/// `tile`: convolution outputs per register tile (a constant at each call site): 8 with
/// AVX-512's 32 vector registers, 4 with AVX2's 16 (each 16-lane accumulator takes two there).
DK_INLINE void forward_images(const context *c, int images, const float *x, const float *w, const float *bias, float *y,
                              int32_t *argmax, const int tile) {
    const dk_conv_pool_shape *s = c->s;
    const size_t o_count = (size_t)s->out_channels, image_size = (size_t)s->channels * s->in_h * s->in_w;
    for (size_t o = 0; o < o_count; o++) {
        for (size_t k = 0; k < c->k; k++) c->wt[k * c->op + o] = w[o * c->k + k];
        c->bias[o] = bias ? bias[o] : 0.0f;
    }
    for (int n = 0; n < images; n++) {
        load_image(c, x + (size_t)n * image_size);
        size_t t = 0;
        if (tile == 8)
            for (; t + 8 <= c->pq; t += 8) conv_tile(c, t, 8);
        else
            for (; t + 4 <= c->pq; t += 4) conv_tile(c, t, 4);
        for (; t < c->pq; t++) conv_tile(c, t, 1);
        pool_image(c);
        // [U·V][Op] → [O][U·V]
        const size_t uv = c->uv, op = c->op;
        const float *pooled = c->pooled;
        const int32_t *winner = c->winner;
        float *yn = y + (size_t)n * o_count * uv;
        for (size_t o = 0; o < o_count; o++)
            for (size_t q = 0; q < uv; q++) yn[o * uv + q] = pooled[q * op + o];
        if (argmax) {
            int32_t *an = argmax + (size_t)n * o_count * uv;
            for (size_t o = 0; o < o_count; o++)
                for (size_t q = 0; q < uv; q++) an[o * uv + q] = winner[q * op + o];
        }
    }
}

DK_INLINE void backward_images(const context *c, int images, const float *x, const int32_t *argmax, const float *grad,
                               float *dw, float *db) {
    const dk_conv_pool_shape *s = c->s;
    const size_t o_count = (size_t)s->out_channels, image_size = (size_t)s->channels * s->in_h * s->in_w;
    // c->wt holds dw's sums [K][Op], c->bias db's, c->conv the convolution's gradient (zero
    // except in the rows flagged in c->hit, which are cleared again once used).
    // Sizes and pointers in locals: the stores below could alias the context's fields.
    const size_t op = c->op, uv = c->uv, pq = c->pq, kk = c->k;
    float *const conv = c->conv, *const dw_sums = c->wt, *const db_sums = c->bias;
    unsigned char *const hit = c->hit;
    const size_t *const taps = c->taps;
    for (int n = 0; n < images; n++) {
        load_image(c, x + (size_t)n * image_size);
        const float *gn = grad + (size_t)n * o_count * uv;
        const int32_t *an = argmax + (size_t)n * o_count * uv;
        for (size_t o = 0; o < o_count; o++) {
            float total = 0.0f;  // this image's share of db[o]
            for (size_t q = 0; q < uv; q++) {
                const int32_t won = an[o * uv + q];
                if (won < 0) continue;
                const float g = gn[o * uv + q];
                conv[(size_t)won * op + o] += g;
                hit[won] = 1;
                total += g;
            }
            db_sums[o] += total;
        }
        for (size_t t = 0; t < pq; t++) {
            if (!hit[t]) continue;
            hit[t] = 0;
            float *row = conv + t * op;
            const float *xt = c->xp + patch_origin(c, t);
            for (size_t o = 0; o < op; o += 16) {
                const v16f r = load16(row + o);
                for (size_t k = 0; k < kk; k++) *(v16f *)(dw_sums + k * op + o) += xt[taps[k]] * r;
                *(v16f *)(row + o) = (v16f){0};
            }
        }
    }
    for (size_t o = 0; o < o_count; o++) {
        for (size_t k = 0; k < c->k; k++) dw[o * c->k + k] = c->wt[k * c->op + o];
        if (db) db[o] = c->bias[o];
    }
}

// ---- Row pairs: stride 1, a 2×2/2 pool, rows of at most 32 outputs -----------------------------
//
// The common first layer (cnn-small: 3×3, padding 1, 2×2 pool on 28×28 images) takes another
// route, with the convolution's columns in the vector lanes instead of its channels: one output
// channel's two convolution rows of a pooling row are four vectors (two rows × two halves of 16
// columns), the 2×2 windows are their even and odd lanes (one permute), and the pooled row and
// its winners are stored straight into the [O][U][V] output, with no transposes. The backward
// pass does the same from the other side: each pooled gradient is split by its winner into the
// four positions of its window (compares, no scatter), and each weight's gradient is a sum of
// four products of those with the input's even or odd columns, kept in registers across the
// rows of an image. On cnn-small's first layer (16 images per call, one thread, best of 50) it took
// 6.7 + 6.2 µs per image forward + backward with AVX-512 against 16.4 + 20.4 for the general route,
// and 13.0 + 11.9 against 17.6 + 22.5 with AVX2; the training step gained about 1.2× (BENCHMARKS.md).

enum { kRow = 64, kHalf = 32 };  // floats per padded input row, and per even/odd half of one

/// Whether `s` takes the row-pair route.
static int row_pairs_apply(const dk_conv_pool_shape *s) {
    return s->stride_h == 1 && s->stride_w == 1 && s->dilation_h == 1 && s->dilation_w == 1 && s->pool_h == 2 && s->pool_w == 2
           && s->pool_stride_h == 2 && s->pool_stride_w == 2 && s->pool_pad_h == 0 && s->pool_pad_w == 0 && s->conv_w <= 32
           && s->kernel_w <= 16 && s->in_w + 2 * s->pad_w + 16 <= kRow && s->out_h == s->conv_h / 2 && s->out_w == s->conv_w / 2
           && s->out_h > 0 && s->out_w > 0;
}

/// Scratch of the row-pair route: the padded image ([C][Hp][kRow], zero outside the image), its
/// even and odd columns ([C][Hp][2][kHalf], backward), and per-lane sums of dw and db.
typedef struct {
    size_t hp, k;
    float *xp, *split;
    v16f *dw, *db;  // [O][K], [O]
    void *block;
} row_pairs;

static int row_pairs_init(row_pairs *r, const dk_conv_pool_shape *s) {
    r->hp = (size_t)s->in_h + 2 * (size_t)s->pad_h + 1;  // one extra zero row for the taps below an odd last row
    r->k = (size_t)s->channels * s->kernel_h * s->kernel_w;
    const size_t xp = (size_t)s->channels * r->hp * kRow, split = xp;  // 2 × kHalf = kRow
    const size_t dw = (size_t)s->out_channels * r->k, db = (size_t)s->out_channels;
    const size_t bytes = (xp + split) * sizeof(float) + (dw + db) * sizeof(v16f);
    char *p = aligned_alloc(64, round_up(bytes, 64));
    if (!p) return -1;
    memset(p, 0, bytes);
    r->block = p;
    r->xp = (float *)p;
    r->split = r->xp + xp;
    r->dw = (v16f *)(r->split + split);
    r->db = r->dw + dw;
    return 0;
}

/// Copies image [C, H, W] into the interior of `xp` (its border stays zero).
static void row_pairs_load(const row_pairs *r, const dk_conv_pool_shape *s, const float *x) {
    for (int ch = 0; ch < s->channels; ch++)
        for (int y = 0; y < s->in_h; y++)
            memcpy(r->xp + ((size_t)ch * r->hp + y + s->pad_h) * kRow + s->pad_w, x + ((size_t)ch * s->in_h + y) * s->in_w,
                   (size_t)s->in_w * sizeof(float));
}

#define even16(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define odd16(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
#define iota16 ((v16i){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})

/// `channels`, `kh` and `kw` are the shape's, constants where cnn-small's layer is special-cased.
DK_INLINE int row_pairs_forward(const dk_conv_pool_shape *s, int images, const float *x, const float *w, const float *bias,
                                float *y, int32_t *argmax, const int channels, const int kh, const int kw) {
    row_pairs r;
    if (row_pairs_init(&r, s) != 0) return -1;
    const size_t k_count = r.k, uv = (size_t)s->out_h * s->out_w, image_size = (size_t)s->channels * s->in_h * s->in_w;
    const int qw = s->conv_w;
    for (int n = 0; n < images; n++) {
        row_pairs_load(&r, s, x + (size_t)n * image_size);
        float *yn = y + (size_t)n * s->out_channels * uv;
        int32_t *an = argmax ? argmax + (size_t)n * s->out_channels * uv : NULL;
        // Channel by channel, row by row: each row is stored as a whole vector, whose lanes past
        // out_w land on the next rows (or channel) and are overwritten when they are stored; only
        // the image's last rows, where 16 lanes would reach past it, are stored exactly.
        const size_t plane = (size_t)s->out_channels * uv;
        for (int o = 0; o < s->out_channels; o++) {
            const v16f b = (v16f){0} + (bias ? bias[o] : 0.0f);
            const float *wo = w + (size_t)o * k_count;
            for (int u = 0; u < s->out_h; u++) {
                const v16i base = iota16 * 2 + 2 * u * qw;  // the window's top-left position in the P×Q plane
                v16f top0 = b, top1 = b, bottom0 = b, bottom1 = b;
                for (int ch = 0; ch < channels; ch++)
                    for (int i = 0; i < kh; i++) {
                        const float *row = r.xp + ((size_t)ch * r.hp + 2 * (size_t)u + i) * kRow;
                        for (int j = 0; j < kw; j++) {
                            const v16f wv = (v16f){0} + wo[((size_t)ch * kh + i) * kw + j];
                            top0 += load16u(row + j) * wv;
                            top1 += load16u(row + j + 16) * wv;
                            bottom0 += load16u(row + kRow + j) * wv;
                            bottom1 += load16u(row + kRow + j + 16) * wv;
                        }
                    }
                // The window's four values in row-major order; the first strictly greater wins.
                v16f best = even16(top0, top1);
                v16i index = base;
                const v16f candidates[3] = {odd16(top0, top1), even16(bottom0, bottom1), odd16(bottom0, bottom1)};
                const int32_t offsets[3] = {1, qw, qw + 1};
                for (int c = 0; c < 3; c++) {
                    const v16i greater = candidates[c] > best;
                    best = select16(greater, candidates[c], best);
                    index = (index & ~greater) | (greater & (base + offsets[c]));
                }
                const v16i active = best > 0.0f;
                const v16f pooled = select16(active, best, (v16f){0});
                const v16i winner = index | ~active;
                float *yrow = yn + (size_t)o * uv + (size_t)u * s->out_w;
                int32_t *arow = an ? an + (size_t)o * uv + (size_t)u * s->out_w : NULL;
                if ((size_t)o * uv + (size_t)u * s->out_w + 16 <= plane) {
                    store16u(yrow, pooled);
                    if (arow) *(v16i_unaligned *)arow = winner;
                } else {
                    memcpy(yrow, &pooled, (size_t)s->out_w * sizeof(float));
                    if (arow) memcpy(arow, &winner, (size_t)s->out_w * sizeof(int32_t));
                }
            }
        }
    }
    free(r.block);
    return 0;
}

/// Adds one image's gradient sums of output channel `o` to r->dw [o][·] and r->db [o].
/// `channels`, `kh`, `kw` and `in_registers` are constants at the call that keeps the sums in
/// registers (at most 9 of them).
DK_INLINE void row_pairs_channel_grads(const row_pairs *r, const dk_conv_pool_shape *s, const float *gn, const int32_t *an, int o,
                                       const int channels, const int kh, const int kw, const int in_registers) {
    const size_t uv = (size_t)s->out_h * s->out_w;
    const int qw = s->conv_w;
    const v16i valid = iota16 < s->out_w;
    v16f local[9];
    v16f *acc = in_registers ? local : r->dw + (size_t)o * r->k;
    if (in_registers)
        DK_UNROLLED for (int k = 0; k < 9; k++) local[k] = (v16f){0};
    v16f sum_db = (v16f){0};
    for (int u = 0; u < s->out_h; u++) {
        // The row's gradient and winners; lanes past out_w (the next rows', read as a whole vector
        // except where 16 lanes would reach past the image) count as lost windows.
        const float *grow = gn + (size_t)o * uv + (size_t)u * s->out_w;
        const int32_t *arow = an + (size_t)o * uv + (size_t)u * s->out_w;
        v16f g = (v16f){0};
        v16i won = (v16i){0} - 1;
        if ((size_t)o * uv + (size_t)u * s->out_w + 16 <= (size_t)s->out_channels * uv) {
            g = select16(valid, load16u(grow), (v16f){0});
            won = (*(const v16i_unaligned *)arow & valid) | ~valid;
        } else {
            memcpy(&g, grow, (size_t)s->out_w * sizeof(float));
            memcpy(&won, arow, (size_t)s->out_w * sizeof(int32_t));
        }
        const v16i base = iota16 * 2 + 2 * u * qw;
        const v16f zero = (v16f){0};
        // The gradient of each of the window's four positions: g where it won, else 0.
        const v16f g00 = select16(won == base, g, zero), g01 = select16(won == base + 1, g, zero);
        const v16f g10 = select16(won == base + qw, g, zero), g11 = select16(won == base + qw + 1, g, zero);
        sum_db += select16(won >= 0, g, zero);
        for (int ch = 0; ch < channels; ch++)
            for (int i = 0; i < kh; i++) {
                const float *top = r->split + ((size_t)ch * r->hp + 2 * (size_t)u + i) * kRow, *bottom = top + kRow;
                for (int j = 0; j < kw; j++) {
                    // Input column 2v + j (position 0 of the window's row) and 2v + j + 1 (position 1).
                    const float *t0 = top + (j & 1) * kHalf + (j >> 1), *t1 = top + ((j + 1) & 1) * kHalf + ((j + 1) >> 1);
                    const float *b0 = bottom + (j & 1) * kHalf + (j >> 1), *b1 = bottom + ((j + 1) & 1) * kHalf + ((j + 1) >> 1);
                    v16f *a = acc + ((size_t)ch * kh + i) * kw + j;
                    *a += g00 * load16u(t0) + g01 * load16u(t1) + g10 * load16u(b0) + g11 * load16u(b1);
                }
            }
    }
    if (in_registers) {
        v16f *sums = r->dw + (size_t)o * r->k;
        DK_UNROLLED for (int k = 0; k < 9; k++) sums[k] += local[k];
    }
    r->db[o] += sum_db;
}

DK_INLINE int row_pairs_backward(const dk_conv_pool_shape *s, int images, const float *x, const int32_t *argmax,
                                  const float *grad, float *dw, float *db) {
    row_pairs r;
    if (row_pairs_init(&r, s) != 0) return -1;
    const size_t k_count = r.k, uv = (size_t)s->out_h * s->out_w, image_size = (size_t)s->channels * s->in_h * s->in_w;
    const int kh = s->kernel_h, kw = s->kernel_w, qw = s->conv_w;
    const size_t rows = (size_t)s->channels * r.hp;
    for (int n = 0; n < images; n++) {
        row_pairs_load(&r, s, x + (size_t)n * image_size);
        // Even and odd columns of every padded row: split[row][0][m] = xp[row][2m], [1][m] = xp[row][2m + 1].
        for (size_t row = 0; row < rows; row++) {
            const float *in = r.xp + row * kRow;
            float *out = r.split + row * kRow;
            const v16f a = load16u(in), b = load16u(in + 16), c = load16u(in + 32), d = load16u(in + 48);
            *(v16f *)out = even16(a, b);
            *(v16f *)(out + 16) = even16(c, d);
            *(v16f *)(out + kHalf) = odd16(a, b);
            *(v16f *)(out + kHalf + 16) = odd16(c, d);
        }
        const float *gn = grad + (size_t)n * s->out_channels * uv;
        const int32_t *an = argmax + (size_t)n * s->out_channels * uv;
        for (int o = 0; o < s->out_channels; o++) {
            // cnn-small's 3×3 grayscale layer keeps its 9 sums in registers; other kernels in memory.
            if (s->channels == 1 && kh == 3 && kw == 3)
                row_pairs_channel_grads(&r, s, gn, an, o, 1, 3, 3, 1);
            else
                row_pairs_channel_grads(&r, s, gn, an, o, s->channels, kh, kw, 0);
        }
    }
    for (int o = 0; o < s->out_channels; o++) {
        for (size_t k = 0; k < k_count; k++) dw[(size_t)o * k_count + k] = sum16(r.dw[(size_t)o * k_count + k]);
        if (db) db[o] = sum16(r.db[o]);
    }
    free(r.block);
    return 0;
}

// One copy of the loops per instruction set; the AVX2 copy also fuses the multiply-adds.
// The route is chosen before any scratch is allocated, so the row-pair route never pays for the
// general route's scratch. Each returns 0, or -1 when the scratch could not be allocated.
#define CONV_POOL_LEVEL(NAME, TILE, SPECIALIZE, ATTRIBUTES)                                                            \
    ATTRIBUTES static int forward_##NAME(const dk_conv_pool_shape *s, int images, const float *x, const float *w,      \
                                         const float *bias, float *y, int32_t *argmax) {                               \
        if (row_pairs_apply(s)) {                                                                                      \
            if (SPECIALIZE && s->channels == 1 && s->kernel_h == 3 && s->kernel_w == 3)                                \
                return row_pairs_forward(s, images, x, w, bias, y, argmax, 1, 3, 3);                                   \
            return row_pairs_forward(s, images, x, w, bias, y, argmax, s->channels, s->kernel_h, s->kernel_w);         \
        }                                                                                                              \
        context c;                                                                                                     \
        if (context_init(&c, s) != 0) return -1;                                                                       \
        forward_images(&c, images, x, w, bias, y, argmax, TILE);                                                       \
        free(c.block);                                                                                                 \
        return 0;                                                                                                      \
    }                                                                                                                  \
    ATTRIBUTES static int backward_##NAME(const dk_conv_pool_shape *s, int images, const float *x,                     \
                                          const int32_t *argmax, const float *grad, float *dw, float *db) {            \
        if (row_pairs_apply(s)) return row_pairs_backward(s, images, x, argmax, grad, dw, db);                         \
        context c;                                                                                                     \
        if (context_init(&c, s) != 0) return -1;                                                                       \
        backward_images(&c, images, x, argmax, grad, dw, db);                                                          \
        free(c.block);                                                                                                 \
        return 0;                                                                                                      \
    }

// SPECIALIZE: the forward row-pair loops compiled for cnn-small's 3×3 grayscale layer (AVX-512
// only: with AVX2's 16 registers the unrolled loops spilled and ran 15% slower, one thread:
// 6.7 against 13.7 µs per image with AVX-512, 15.0 against 12.9 with AVX2).
CONV_POOL_LEVEL(portable, 8, 0, )
#if defined(__x86_64__)
CONV_POOL_LEVEL(avx2, 4, 0, __attribute__((target("avx2,fma"))))
CONV_POOL_LEVEL(avx512, 8, 1, __attribute__((target("avx512f"))))
#endif

int dk_conv_relu_maxpool_forward(int level, const dk_conv_pool_shape *shape, int images, const float *x, const float *w,
                                 const float *bias, float *y, int32_t *argmax) {
    const int l = dk_choose_level(level);
    if (l < 0) return -1;
#if defined(__x86_64__)
    if (l == 2) return forward_avx512(shape, images, x, w, bias, y, argmax);
    if (l == 1) return forward_avx2(shape, images, x, w, bias, y, argmax);
#endif
    return forward_portable(shape, images, x, w, bias, y, argmax);
}

int dk_conv_relu_maxpool_backward(int level, const dk_conv_pool_shape *shape, int images, const float *x,
                                  const int32_t *argmax, const float *grad, float *dw, float *db) {
    const int l = dk_choose_level(level);
    if (l < 0) return -1;
#if defined(__x86_64__)
    if (l == 2) return backward_avx512(shape, images, x, argmax, grad, dw, db);
    if (l == 1) return backward_avx2(shape, images, x, argmax, grad, dw, db);
#endif
    return backward_portable(shape, images, x, argmax, grad, dw, db);
}
