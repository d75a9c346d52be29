// 1×1 convolutions for the ONNX executor (MobileNet's and EfficientNet's expand and project
// layers), NCHW, one image per call. See dk_conv_pointwise.h for the contract.
//
// Layout of the work: the image's pixels are cut into strips of `strip_pixels` (3 vectors of 16);
// for each strip, every block of `block_rows` output channels is a register tile of 8 × 3
// accumulators (24 of the 32 zmm registers) started at bias + residual and updated once per
// input channel k with 3 loads of x[k, strip] and 8 broadcasts of w[o, k]: 11 loads per 24 fused
// multiply-adds, and the strip of x (channels × 48 floats: 3 KiB at 16 channels, 180 KiB at 960)
// is read from memory once and from cache for every later block of rows. Row and pixel tails are
// the same tile with fewer rows or masked vectors.
#include "dk_conv_depthwise.h"
#include "dk_conv_pointwise.h"
#include "vector_common.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { block_rows = 8, strip_vectors = 3, strip_pixels = 16 * strip_vectors };

#if defined(__x86_64__)

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
    int in_registers = activation == DK_ACTIVATION_NONE || activation == DK_ACTIVATION_RELU || activation == DK_ACTIVATION_CLIP;
    int tile_activation = in_registers ? activation : DK_ACTIVATION_NONE;
    // Column blocks whose x (channels × width) and y (m × width) fit in about 256 KiB of this
    // core's cache: x is read from memory by the first block of rows and from cache by the
    // others, and each row of y is written in one contiguous run per block.
    size_t width = (size_t)(1 << 16) / (channels + m) / strip_pixels * strip_pixels;
    if (width < strip_pixels) width = strip_pixels;
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
#endif

int dk_pointwise_conv_available(void) {
#if defined(__x86_64__)
    static int known = -1;
    int v = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (v < 0) {
        v = dk_cpu_has_avx512();
        __atomic_store_n(&known, v, __ATOMIC_RELAXED);
    }
    return v;
#else
    return 0;
#endif
}

int dk_pointwise_conv(size_t m, size_t channels, size_t pixels, const float *w, const float *x, const float *bias,
                      const float *residual, float *y, int activation, float lo, float hi) {
#if defined(__x86_64__)
    if (!dk_pointwise_conv_available()) return -1;
    pointwise_avx512(m, channels, pixels, w, x, bias, residual, y, activation, lo, hi);
    return 0;
#else
    (void)m; (void)channels; (void)pixels; (void)w; (void)x; (void)bias; (void)residual; (void)y;
    (void)activation; (void)lo; (void)hi;
    return -1;
#endif
}
