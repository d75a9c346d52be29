// 1×1 convolutions for the ONNX executor (MobileNet's and EfficientNet's expand and project
// layers), NCHW, one image per call. See dk_conv_pointwise.h for the contract.
//
// Layout of the work: the image's pixels are cut into strips of `strip_pixels` (3 vectors of 16);
// for each strip, every block of `block_rows` output channels is a register tile of 8 × 3
// accumulators (24 of the 32 zmm registers) started at bias + residual and updated once per
// input channel k with 3 loads of x[k, strip] and 8 broadcasts of w[o, k]: 11 loads per 24 fused
// multiply-adds, and the strip of x (channels × 48 floats: 3 KiB at 16 channels, 180 KiB at 960)
// is read from memory once and from cache for every later block of rows. Row and pixel tails are
// the same tile with fewer rows or masked vectors. The AVX2 version (below) works the same way
// with tiles of 6 × 16 and x copied into contiguous strips first.
#include "dk_conv_depthwise.h"
#include "dk_conv_pointwise.h"
#include "conv_private.h"
#include "vector_common.h"

#include <stdlib.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { block_rows = 8, strip_vectors = 3, strip_pixels = 16 * strip_vectors };

#if defined(__x86_64__)

/// Pixels per column block: a multiple of `strip` such that the block's x (channels × width) and
/// y (m × width) fit in about 256 KiB of a core's cache; at least one strip.
static size_t column_width(size_t channels, size_t m, size_t strip) {
    size_t width = (size_t)(1 << 16) / (channels + m) / strip * strip;
    return width < strip ? strip : width;
}

/// Whether the tiles apply `activation` in registers (Relu, Clip, none); the others run as a pass
/// over each block while it is in cache.
static int activation_in_registers(int activation) {
    return activation == DK_ACTIVATION_NONE || activation == DK_ACTIVATION_RELU || activation == DK_ACTIVATION_CLIP;
}

/// The mask of the first `n` lanes (n ≤ 16).
static inline __mmask16 lanes(size_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

/// One tile: `rows` output channels (≤ block_rows) × `vectors` vectors of 16 pixels (≤
/// strip_vectors), the last vector masked by `last`. Inlined with constant `rows` and `vectors`
/// (see `tile_any`), so that the accumulators live in registers.
/// With `prefetch` (the first row block of a column block, the one that reads x from memory),
/// the next strip's x is requested while this one is computed: one stream per input channel is
/// more than the hardware prefetcher follows.
__attribute__((target("avx512f"), always_inline)) static inline void tile(
    const int rows, const int vectors, const int prefetch, __mmask16 last, size_t channels, size_t pixels, const float *w,
    const float *x, const float *bias, const float *residual, float *y, int activation, float lo, float hi) {
    __m512 acc[block_rows][strip_vectors];
    __mmask16 mask[strip_vectors];
    for (int v = 0; v < vectors; v++) mask[v] = v == vectors - 1 ? last : (__mmask16)0xFFFF;
    for (int r = 0; r < rows; r++) {
        __m512 b = _mm512_set1_ps(bias ? bias[r] : 0.0f);
        for (int v = 0; v < vectors; v++) {
            acc[r][v] = residual ? _mm512_add_ps(b, _mm512_maskz_loadu_ps(mask[v], residual + r * pixels + 16 * v)) : b;
        }
    }
    for (size_t k = 0; k < channels; k++) {
        __m512 xv[strip_vectors];
        for (int v = 0; v < vectors; v++) xv[v] = _mm512_maskz_loadu_ps(mask[v], x + k * pixels + 16 * v);
        if (prefetch) {
            for (int v = 0; v < strip_vectors; v++) _mm_prefetch((const char *)(x + k * pixels + strip_pixels + 16 * v), _MM_HINT_T0);
        }
        for (int r = 0; r < rows; r++) {
            __m512 wv = _mm512_set1_ps(w[r * channels + k]);
            for (int v = 0; v < vectors; v++) acc[r][v] = _mm512_fmadd_ps(wv, xv[v], acc[r][v]);
        }
    }
    // Relu: vmaxps returns its second operand when either is NaN, so NaN becomes 0 (as the Relu
    // operator gives). Clip: lo and hi first, so NaN stays NaN.
    const __m512 zero = _mm512_setzero_ps(), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    for (int r = 0; r < rows; r++) {
        for (int v = 0; v < vectors; v++) {
            __m512 a = acc[r][v];
            if (activation == DK_ACTIVATION_RELU) a = _mm512_max_ps(a, zero);
            else if (activation == DK_ACTIVATION_CLIP) a = _mm512_min_ps(vhi, _mm512_max_ps(vlo, a));
            _mm512_mask_storeu_ps(y + r * pixels + 16 * v, mask[v], a);
        }
    }
}

/// `tile` for any rows 1...block_rows and vectors 1...strip_vectors, each combination compiled
/// with its extents as constants.
__attribute__((target("avx512f"))) static void tile_any(int rows, int vectors, int prefetch, __mmask16 last, size_t channels, size_t pixels,
                                                         const float *w, const float *x, const float *bias,
                                                         const float *residual, float *y, int activation, float lo, float hi) {
#define DK_TILE(R, V) \
    if (prefetch) tile(R, V, 1, last, channels, pixels, w, x, bias, residual, y, activation, lo, hi); \
    else tile(R, V, 0, last, channels, pixels, w, x, bias, residual, y, activation, lo, hi)
#define DK_TILE_ROWS(R)                    \
    switch (vectors) {                     \
    case 1: DK_TILE(R, 1); return;         \
    case 2: DK_TILE(R, 2); return;         \
    default: DK_TILE(R, 3); return;        \
    }
    switch (rows) {
    case 1: DK_TILE_ROWS(1)
    case 2: DK_TILE_ROWS(2)
    case 3: DK_TILE_ROWS(3)
    case 4: DK_TILE_ROWS(4)
    case 5: DK_TILE_ROWS(5)
    case 6: DK_TILE_ROWS(6)
    case 7: DK_TILE_ROWS(7)
    default: DK_TILE_ROWS(8)
    }
#undef DK_TILE_ROWS
#undef DK_TILE
}

__attribute__((target("avx512f"))) static void pointwise_avx512(size_t m, size_t channels, size_t pixels, const float *w,
                                                                const float *x, const float *bias, const float *residual,
                                                                float *y, int activation, float lo, float hi) {
    int in_registers = activation_in_registers(activation);
    int tile_activation = in_registers ? activation : DK_ACTIVATION_NONE;
    // Column blocks in cache: x is read from memory by the first block of rows and from cache by
    // the others, and each row of y is written in one contiguous run per block.
    size_t width = column_width(channels, m, strip_pixels);
    for (size_t block = 0; block < pixels; block += width) {
        size_t block_end = pixels - block < width ? pixels : block + width;
        for (size_t o = 0; o < m; o += block_rows) {
            int rows = m - o < block_rows ? (int)(m - o) : block_rows;
            const float *wo = w + o * channels, *bo = bias ? bias + o : NULL;
            int prefetch = o == 0;
            for (size_t start = block; start < block_end; start += strip_pixels) {
                size_t n = block_end - start < strip_pixels ? block_end - start : strip_pixels;
                int vectors = (int)((n + 15) / 16);
                __mmask16 last = lanes(n - 16 * (size_t)(vectors - 1));
                const float *ro = residual ? residual + o * pixels + start : NULL;
                float *yo = y + o * pixels + start;
                // The full tile is the common case: called with constant extents directly.
                if (rows == block_rows && vectors == strip_vectors && last == (__mmask16)0xFFFF) {
                    if (prefetch) tile(block_rows, strip_vectors, 1, 0xFFFF, channels, pixels, wo, x + start, bo, ro, yo, tile_activation, lo, hi);
                    else tile(block_rows, strip_vectors, 0, 0xFFFF, channels, pixels, wo, x + start, bo, ro, yo, tile_activation, lo, hi);
                } else {
                    tile_any(rows, vectors, prefetch, last, channels, pixels, wo, x + start, bo, ro, yo, tile_activation, lo, hi);
                }
            }
        }
        if (!in_registers) {
            for (size_t o = 0; o < m; o++) dk_activation_inplace(y + o * pixels + block, block_end - block, activation, lo, hi);
        }
    }
}
// AVX2 + FMA: 16 ymm registers, so the tile is 6 rows × 2 vectors of 8 pixels (12 accumulators,
// 2 loads of x and 1 broadcast per input channel: 15 registers). With 4 rows × 3 vectors (16
// registers) clang spilled inside the loop. Measured on an AMD EPYC (one thread, MobileNet v2's
// shapes): reading x's strips straight from the image ran at 40-55 GFLOP/s, below OpenBLAS; so each
// column block of x is first copied into strips of 16 pixels × all channels, contiguous and padded
// with zeros, which every row block then reads as one sequential stream.
enum { avx2_rows = 6, avx2_strip = 16 };

/// One AVX2 tile: `rows` ≤ avx2_rows output channels × one strip of 16 pixels, of which the
/// first `valid` are stored; `xs` is the strip's packed copy [channels][16]; rows of y and of
/// the residual are `y_stride` floats apart.
__attribute__((target("avx2,fma"), always_inline)) static inline void tile_avx2(
    const int rows, int valid, size_t channels, size_t y_stride, const float *w, const float *xs, const float *bias,
    const float *residual, float *y, int activation, float lo, float hi) {
    __m256 acc[avx2_rows][2];
    const __m256i mask0 = dk_lanes8(valid), mask1 = dk_lanes8(valid - 8);
    const int whole = valid == avx2_strip;
    DK_UNROLLED for (int r = 0; r < rows; r++) {
        __m256 b = _mm256_set1_ps(bias ? bias[r] : 0.0f);
        acc[r][0] = acc[r][1] = b;
        if (residual) {
            const float *rr = residual + r * y_stride;
            acc[r][0] = _mm256_add_ps(b, whole ? _mm256_loadu_ps(rr) : _mm256_maskload_ps(rr, mask0));
            acc[r][1] = _mm256_add_ps(b, whole ? _mm256_loadu_ps(rr + 8) : _mm256_maskload_ps(rr + 8, mask1));
        }
    }
    for (size_t k = 0; k < channels; k++) {
        const __m256 x0 = _mm256_load_ps(xs + 16 * k), x1 = _mm256_load_ps(xs + 16 * k + 8);
        DK_UNROLLED for (int r = 0; r < rows; r++) {
            __m256 wv = _mm256_broadcast_ss(w + r * channels + k);
            acc[r][0] = _mm256_fmadd_ps(wv, x0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(wv, x1, acc[r][1]);
        }
    }
    // Relu: vmaxps returns its second operand when either is NaN, so NaN becomes 0. Clip: lo and
    // hi first, so NaN stays NaN.
    const __m256 zero = _mm256_setzero_ps(), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    DK_UNROLLED for (int r = 0; r < rows; r++) {
        DK_UNROLLED for (int v = 0; v < 2; v++) {
            __m256 a = acc[r][v];
            if (activation == DK_ACTIVATION_RELU) a = _mm256_max_ps(a, zero);
            else if (activation == DK_ACTIVATION_CLIP) a = _mm256_min_ps(vhi, _mm256_max_ps(vlo, a));
            if (whole) _mm256_storeu_ps(y + r * y_stride + 8 * v, a);
            else _mm256_maskstore_ps(y + r * y_stride + 8 * v, v == 0 ? mask0 : mask1, a);
        }
    }
}

/// `tile_avx2` for rows 1...avx2_rows, each compiled with its row count as a constant.
__attribute__((target("avx2,fma"))) static void tile_avx2_any(int rows, int valid, size_t channels, size_t y_stride,
                                                              const float *w, const float *xs, const float *bias,
                                                              const float *residual, float *y, int activation, float lo, float hi) {
    switch (rows) {
    case 1: tile_avx2(1, valid, channels, y_stride, w, xs, bias, residual, y, activation, lo, hi); return;
    case 2: tile_avx2(2, valid, channels, y_stride, w, xs, bias, residual, y, activation, lo, hi); return;
    case 3: tile_avx2(3, valid, channels, y_stride, w, xs, bias, residual, y, activation, lo, hi); return;
    case 4: tile_avx2(4, valid, channels, y_stride, w, xs, bias, residual, y, activation, lo, hi); return;
    case 5: tile_avx2(5, valid, channels, y_stride, w, xs, bias, residual, y, activation, lo, hi); return;
    default: tile_avx2(6, valid, channels, y_stride, w, xs, bias, residual, y, activation, lo, hi); return;
    }
}

/// `dk_pointwise_avx2_strided` (conv_private.h) once the CPU is known to have AVX2 + FMA.
__attribute__((target("avx2,fma"))) static int pointwise_avx2(size_t m, size_t channels, size_t pixels, size_t x_stride,
                                                              size_t y_stride, const float *w, const float *x,
                                                              const float *bias, const float *residual, float *y,
                                                              int activation, float lo, float hi) {
    int in_registers = activation_in_registers(activation);
    int tile_activation = in_registers ? activation : DK_ACTIVATION_NONE;
    // Column blocks in cache (the packed copy of x, channels × width, no larger than the image).
    size_t width = column_width(channels, m, avx2_strip), whole = (pixels + avx2_strip - 1) / avx2_strip * avx2_strip;
    if (width > whole) width = whole;
    float *packed = aligned_alloc(64, channels * width * sizeof(float));
    if (!packed) return -1;
    for (size_t block = 0; block < pixels; block += width) {
        size_t block_end = pixels - block < width ? pixels : block + width;
        size_t strips = (block_end - block + avx2_strip - 1) / avx2_strip;
        // x[k, block + 16s + i] → packed[s][k][i], zeros past the image's last pixel.
        for (size_t k = 0; k < channels; k++) {
            const float *row = x + k * x_stride;
            for (size_t s = 0; s < strips; s++) {
                size_t start = block + avx2_strip * s, n = block_end - start < avx2_strip ? block_end - start : avx2_strip;
                float *dst = packed + (s * channels + k) * avx2_strip;
                if (n == avx2_strip) {
                    _mm256_store_ps(dst, _mm256_loadu_ps(row + start));
                    _mm256_store_ps(dst + 8, _mm256_loadu_ps(row + start + 8));
                } else {
                    _mm256_store_ps(dst, _mm256_maskload_ps(row + start, dk_lanes8((long)n)));
                    _mm256_store_ps(dst + 8, _mm256_maskload_ps(row + start + 8, dk_lanes8((long)n - 8)));
                }
            }
        }
        for (size_t o = 0; o < m; o += avx2_rows) {
            int rows = m - o < avx2_rows ? (int)(m - o) : avx2_rows;
            const float *wo = w + o * channels, *bo = bias ? bias + o : NULL;
            for (size_t s = 0; s < strips; s++) {
                size_t start = block + avx2_strip * s;
                int valid = block_end - start < avx2_strip ? (int)(block_end - start) : avx2_strip;
                const float *xs = packed + s * channels * avx2_strip;
                const float *ro = residual ? residual + o * y_stride + start : NULL;
                float *yo = y + o * y_stride + start;
                // The full tile is the common case: called with constant extents directly.
                if (rows == avx2_rows) tile_avx2(avx2_rows, valid, channels, y_stride, wo, xs, bo, ro, yo, tile_activation, lo, hi);
                else tile_avx2_any(rows, valid, channels, y_stride, wo, xs, bo, ro, yo, tile_activation, lo, hi);
            }
        }
        if (!in_registers) {
            for (size_t o = 0; o < m; o++) dk_activation_inplace(y + o * y_stride + block, block_end - block, activation, lo, hi);
        }
    }
    free(packed);
    return 0;
}
#endif

int dk_pointwise_avx2_strided(size_t m, size_t channels, size_t pixels, size_t x_stride, size_t y_stride, const float *w,
                              const float *x, const float *bias, const float *residual, float *y, int activation,
                              float lo, float hi) {
#if defined(__x86_64__)
    if (dk_cpu_has_avx2_fma()) return pointwise_avx2(m, channels, pixels, x_stride, y_stride, w, x, bias, residual, y, activation, lo, hi);
#else
    (void)m; (void)channels; (void)pixels; (void)x_stride; (void)y_stride; (void)w; (void)x; (void)bias; (void)residual;
    (void)y; (void)activation; (void)lo; (void)hi;
#endif
    return -1;
}

int dk_pointwise_conv_level(int level, size_t m, size_t channels, size_t pixels, const float *w, const float *x,
                            const float *bias, const float *residual, float *y, int activation, float lo, float hi) {
    level = dk_choose_level(level);
#if defined(__x86_64__)
    if (level == 2) { pointwise_avx512(m, channels, pixels, w, x, bias, residual, y, activation, lo, hi); return 0; }
    if (level == 1) return pointwise_avx2(m, channels, pixels, pixels, pixels, w, x, bias, residual, y, activation, lo, hi);
#else
    (void)m; (void)channels; (void)pixels; (void)w; (void)x; (void)bias; (void)residual; (void)y;
    (void)activation; (void)lo; (void)hi;
#endif
    return -1;
}
