// conv → ReLU → max-pool for training, one batch chunk per call (see dk_conv_pool.h).
//
// Why: on the cnn-small teacher (batch 128, 28×28×1 images, 32 output channels) the unfused
// layer writes a 12.8 MB convolution output, reads it back to pool it, and in the backward pass
// writes and reads a 12.8 MB gradient of it; max-pooling's backward alone was 21% of the
// training step (BENCHMARKS.md, "Round two"). Here each image's convolution output is computed
// into a scratch buffer that stays in the core's cache ([P·Q][O] floats, channels innermost,
// 100 KB for cnn-small), pooled from there, and only the pooled values and the winners' positions
// are stored. The backward pass scatters the pooled gradient to the winners in a cache-resident
// [P·Q][O] buffer and accumulates dw from the rows that received one (at most one per window).
//
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

// One copy of the loops per instruction set; the AVX2 copy also fuses the multiply-adds.
#define CONV_POOL_LEVEL(NAME, TILE, ATTRIBUTES)                                                                           \
    ATTRIBUTES static void forward_##NAME(const context *c, int images, const float *x, const float *w, const float *bias, \
                                          float *y, int32_t *argmax) {                                                  \
        forward_images(c, images, x, w, bias, y, argmax, TILE);                                                         \
    }                                                                                                                   \
    ATTRIBUTES static void backward_##NAME(const context *c, int images, const float *x, const int32_t *argmax,         \
                                           const float *grad, float *dw, float *db) {                                   \
        backward_images(c, images, x, argmax, grad, dw, db);                                                            \
    }

CONV_POOL_LEVEL(portable, 8, )
#if defined(__x86_64__)
CONV_POOL_LEVEL(avx2, 4, __attribute__((target("avx2,fma"))))
CONV_POOL_LEVEL(avx512, 8, __attribute__((target("avx512f"))))
#endif

int dk_conv_relu_maxpool_forward(int level, const dk_conv_pool_shape *shape, int images, const float *x, const float *w,
                                 const float *bias, float *y, int32_t *argmax) {
    const int l = dk_choose_level(level);
    context c;
    if (l < 0 || context_init(&c, shape) != 0) return -1;
#if defined(__x86_64__)
    if (l == 2) forward_avx512(&c, images, x, w, bias, y, argmax);
    else if (l == 1) forward_avx2(&c, images, x, w, bias, y, argmax);
    else
#endif
        forward_portable(&c, images, x, w, bias, y, argmax);
    free(c.block);
    return 0;
}

int dk_conv_relu_maxpool_backward(int level, const dk_conv_pool_shape *shape, int images, const float *x,
                                  const int32_t *argmax, const float *grad, float *dw, float *db) {
    const int l = dk_choose_level(level);
    context c;
    if (l < 0 || context_init(&c, shape) != 0) return -1;
#if defined(__x86_64__)
    if (l == 2) backward_avx512(&c, images, x, argmax, grad, dw, db);
    else if (l == 1) backward_avx2(&c, images, x, argmax, grad, dw, db);
    else
#endif
        backward_portable(&c, images, x, argmax, grad, dw, db);
    free(c.block);
    return 0;
}
