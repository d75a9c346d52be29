// Integer matrix products for int8 students (see dk_int8.h): u8 activations × s8 weights summed in
// int32, then the float epilogue that requantises to the next layer's bytes. The AVX-512 VNNI and
// AVX2 paths are chosen from cpuid once; the scalar loops are the reference the tests hold them to.
//
// Contraction is off so that the epilogue's (float)acc · scale + bias rounds the same way in every
// path (the accumulators themselves are exact integers).
#pragma clang fp contract(off)

#include "dk_int8.h"
#include "int8_private.h"
#include "vector_common.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/// Floats outside ±2^15 are clamped before rounding, so that a huge value cannot overflow the
/// int32 conversion (whose result would differ between paths); any such value saturates a byte.
static const float clamp_limit = 32768.0f;

static inline size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

size_t dk_int8_packed_size(size_t k, size_t n) { return round_up(k, 4) * round_up(n, 16); }

void dk_int8_pack_weights(const int8_t *w, size_t n, size_t k, int8_t *packed, int32_t *column_sums) {
    const size_t k4 = round_up(k, 4), np = round_up(n, 16);
    memset(packed, 0, k4 * np);
    for (size_t o = 0; o < n; o++) {
        int32_t sum = 0;
        for (size_t i = 0; i < k; i++) {
            packed[(i / 4) * np * 4 + o * 4 + i % 4] = w[o * k + i];
            sum += w[o * k + i];
        }
        if (column_sums) column_sums[o] = sum;
    }
    if (column_sums) for (size_t o = n; o < np; o++) column_sums[o] = 0;
}

/// The epilogue of one accumulator, the scalar definition every path reproduces.
static inline void finish_scalar(int32_t acc, size_t o, const dk_int8_epilogue *e, uint8_t *y_u8, float *y_f32) {
    float v = (float)(acc + (e->offset ? e->offset[o] : 0)) * e->scale[o];
    if (e->bias) v = v + e->bias[o];
    if (y_f32) { *y_f32 = v; return; }
    v = fminf(fmaxf(v, -clamp_limit), clamp_limit);
    int32_t q = (int32_t)nearbyintf(v) + e->zero_point;
    const int32_t low = e->relu ? e->zero_point : 0;
    q = q < low ? low : q > 255 ? 255 : q;
    *y_u8 = (uint8_t)q;
}

// MARK: Scalar reference

static void linear_scalar(const uint8_t *a, size_t lda, size_t rows, size_t k, const int8_t *packed, size_t n,
                          const dk_int8_epilogue *e, uint8_t *y_u8, float *y_f32, size_t ldy) {
    const size_t k4 = round_up(k, 4), np = round_up(n, 16);
    for (size_t r = 0; r < rows; r++) {
        for (size_t o = 0; o < n; o++) {
            int32_t acc = 0;
            for (size_t i = 0; i < k4; i++) acc += (int32_t)a[r * lda + i] * (int32_t)packed[(i / 4) * np * 4 + o * 4 + i % 4];
            finish_scalar(acc, o, e, y_u8 ? y_u8 + r * ldy + o : NULL, y_f32 ? y_f32 + r * ldy + o : NULL);
        }
    }
}

#if defined(__x86_64__)

// MARK: AVX-512 VNNI

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

/// Epilogue of 16 accumulators (outputs o0 ..< o0 + 16, of which `mask` are stored).
VNNI_TARGET __attribute__((always_inline)) static inline void
finish_avx512(__m512i acc, size_t o0, __mmask16 mask, const dk_int8_epilogue *e, uint8_t *y_u8, float *y_f32) {
    if (e->offset) acc = _mm512_add_epi32(acc, _mm512_loadu_si512(e->offset + o0));
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_loadu_ps(e->scale + o0));
    if (e->bias) v = _mm512_add_ps(v, _mm512_loadu_ps(e->bias + o0));
    if (y_f32) { _mm512_mask_storeu_ps(y_f32, mask, v); return; }
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-clamp_limit)), _mm512_set1_ps(clamp_limit));
    __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), _mm512_set1_epi32(e->zero_point));
    q = _mm512_max_epi32(q, _mm512_set1_epi32(e->relu ? e->zero_point : 0));
    q = _mm512_min_epi32(q, _mm512_set1_epi32(255));
    _mm512_mask_cvtusepi32_storeu_epi8(y_u8, mask, q);
}

/// A tile of R rows × V vectors of 16 outputs: R·V accumulators, each step one broadcast of four
/// input bytes per row and one load of 4 × 16 weight bytes per vector.
#define VNNI_TILE(R, V)                                                                                      \
    VNNI_TARGET static void tile_vnni_##R##_##V(const uint8_t *a, size_t lda, size_t k4, const int8_t *b,     \
                                                size_t np, size_t o0, size_t n, const dk_int8_epilogue *e,   \
                                                uint8_t *y_u8, float *y_f32, size_t ldy) {                   \
        __m512i acc[R][V];                                                                                   \
        for (int r = 0; r < R; r++) for (int v = 0; v < V; v++) acc[r][v] = _mm512_setzero_si512();         \
        const int8_t *bk = b + o0 * 4;                                                                       \
        for (size_t i = 0; i < k4; i += 4, bk += np * 4) {                                                   \
            __m512i w[V];                                                                                    \
            for (int v = 0; v < V; v++) w[v] = _mm512_loadu_si512(bk + v * 64);                              \
            for (int r = 0; r < R; r++) {                                                                    \
                int32_t four;                                                                                \
                memcpy(&four, a + r * lda + i, 4);                                                           \
                const __m512i x = _mm512_set1_epi32(four);                                                   \
                for (int v = 0; v < V; v++) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], x, w[v]);             \
            }                                                                                                \
        }                                                                                                    \
        for (int v = 0; v < V; v++) {                                                                        \
            const size_t o = o0 + 16 * v;                                                                    \
            if (o >= n) break;                                                                               \
            const __mmask16 mask = n - o >= 16 ? 0xFFFF : (__mmask16)((1u << (n - o)) - 1);                  \
            for (int r = 0; r < R; r++)                                                                      \
                finish_avx512(acc[r][v], o, mask, e, y_u8 ? y_u8 + r * ldy + o : NULL,                       \
                              y_f32 ? y_f32 + r * ldy + o : NULL);                                           \
        }                                                                                                    \
    }
VNNI_TILE(4, 4)
VNNI_TILE(1, 4)
VNNI_TILE(4, 1)
VNNI_TILE(1, 1)

VNNI_TARGET static void linear_vnni(const uint8_t *a, size_t lda, size_t rows, size_t k, const int8_t *packed, size_t n,
                                    const dk_int8_epilogue *e, uint8_t *y_u8, float *y_f32, size_t ldy) {
    const size_t k4 = round_up(k, 4), np = round_up(n, 16);
    size_t o0 = 0;
    // 64 outputs at a time (the weight block is reused by four rows), then 16 at a time.
    for (; o0 + 48 < n; o0 += 64) {
        size_t r = 0;
        for (; r + 4 <= rows; r += 4)
            tile_vnni_4_4(a + r * lda, lda, k4, packed, np, o0, n, e, y_u8 ? y_u8 + r * ldy : NULL, y_f32 ? y_f32 + r * ldy : NULL, ldy);
        for (; r < rows; r++)
            tile_vnni_1_4(a + r * lda, lda, k4, packed, np, o0, n, e, y_u8 ? y_u8 + r * ldy : NULL, y_f32 ? y_f32 + r * ldy : NULL, ldy);
    }
    for (; o0 < n; o0 += 16) {
        size_t r = 0;
        for (; r + 4 <= rows; r += 4)
            tile_vnni_4_1(a + r * lda, lda, k4, packed, np, o0, n, e, y_u8 ? y_u8 + r * ldy : NULL, y_f32 ? y_f32 + r * ldy : NULL, ldy);
        for (; r < rows; r++)
            tile_vnni_1_1(a + r * lda, lda, k4, packed, np, o0, n, e, y_u8 ? y_u8 + r * ldy : NULL, y_f32 ? y_f32 + r * ldy : NULL, ldy);
    }
}

// MARK: AVX2

#define AVX2_TARGET __attribute__((target("avx2")))

/// Sums of 8 outputs from the two vpmaddwd accumulators of a step: lo holds (o0:k01, o0:k23, o1,
/// o1, o2, o2, o3, o3), hi the same for o4..o7; hadd gives (o0 o1 o4 o5 | o2 o3 o6 o7).
AVX2_TARGET __attribute__((always_inline)) static inline __m256i sums_avx2(__m256i lo, __m256i hi) {
    return _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo, hi), 0xD8);
}

AVX2_TARGET __attribute__((always_inline)) static inline void
finish_avx2(__m256i acc, size_t o0, size_t count, const dk_int8_epilogue *e, uint8_t *y_u8, float *y_f32) {
    if (e->offset) acc = _mm256_add_epi32(acc, _mm256_loadu_si256((const __m256i *)(e->offset + o0)));
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(e->scale + o0));
    if (e->bias) v = _mm256_add_ps(v, _mm256_loadu_ps(e->bias + o0));
    if (y_f32) {
        if (count >= 8) _mm256_storeu_ps(y_f32, v);
        else { float t[8]; _mm256_storeu_ps(t, v); memcpy(y_f32, t, count * sizeof(float)); }
        return;
    }
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-clamp_limit)), _mm256_set1_ps(clamp_limit));
    __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(e->zero_point));
    q = _mm256_max_epi32(q, _mm256_set1_epi32(e->relu ? e->zero_point : 0));
    q = _mm256_min_epi32(q, _mm256_set1_epi32(255));
    int32_t t[8];
    _mm256_storeu_si256((__m256i *)t, q);
    for (size_t j = 0; j < count && j < 8; j++) y_u8[j] = (uint8_t)t[j];
}

/// A tile of R rows × 8 outputs: the weights' bytes widened to int16 and multiplied by the input's
/// four bytes (widened, repeated) with vpmaddwd, which cannot saturate.
#define AVX2_TILE(R)                                                                                         \
    AVX2_TARGET static void tile_avx2_##R(const uint8_t *a, size_t lda, size_t k4, const int8_t *b,           \
                                          size_t np, size_t o0, size_t n, const dk_int8_epilogue *e,         \
                                          uint8_t *y_u8, float *y_f32, size_t ldy) {                         \
        __m256i lo[R], hi[R];                                                                                \
        for (int r = 0; r < R; r++) { lo[r] = _mm256_setzero_si256(); hi[r] = _mm256_setzero_si256(); }     \
        const int8_t *bk = b + o0 * 4;                                                                       \
        for (size_t i = 0; i < k4; i += 4, bk += np * 4) {                                                   \
            const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)bk));                   \
            const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(bk + 16)));            \
            for (int r = 0; r < R; r++) {                                                                    \
                int32_t four;                                                                                \
                memcpy(&four, a + r * lda + i, 4);                                                           \
                const __m256i x = _mm256_cvtepu8_epi16(_mm_set1_epi32(four));                                \
                lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(x, w0));                                   \
                hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(x, w1));                                   \
            }                                                                                                \
        }                                                                                                    \
        for (int r = 0; r < R; r++)                                                                          \
            finish_avx2(sums_avx2(lo[r], hi[r]), o0, n - o0, e, y_u8 ? y_u8 + r * ldy + o0 : NULL,            \
                        y_f32 ? y_f32 + r * ldy + o0 : NULL);                                                \
    }
AVX2_TILE(4)
AVX2_TILE(1)

AVX2_TARGET static void linear_avx2(const uint8_t *a, size_t lda, size_t rows, size_t k, const int8_t *packed, size_t n,
                                    const dk_int8_epilogue *e, uint8_t *y_u8, float *y_f32, size_t ldy) {
    const size_t k4 = round_up(k, 4), np = round_up(n, 16);
    for (size_t o0 = 0; o0 < n; o0 += 8) {
        size_t r = 0;
        for (; r + 4 <= rows; r += 4)
            tile_avx2_4(a + r * lda, lda, k4, packed, np, o0, n, e, y_u8 ? y_u8 + r * ldy : NULL, y_f32 ? y_f32 + r * ldy : NULL, ldy);
        for (; r < rows; r++)
            tile_avx2_1(a + r * lda, lda, k4, packed, np, o0, n, e, y_u8 ? y_u8 + r * ldy : NULL, y_f32 ? y_f32 + r * ldy : NULL, ldy);
    }
}

__attribute__((target("avx512f,avx512bw"))) static void quantize_avx512(const float *x, size_t n, float inv_scale, int32_t zp, uint8_t *q) {
    size_t i = 0;
    const __m512 s = _mm512_set1_ps(inv_scale), lo = _mm512_set1_ps(-clamp_limit), hi = _mm512_set1_ps(clamp_limit);
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), s);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);  // NaN becomes -limit here; fixed below
        __mmask16 nan = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), _mm512_loadu_ps(x + i), _CMP_UNORD_Q);
        v = _mm512_mask_blend_ps(nan, v, _mm512_setzero_ps());
        __m512i r = _mm512_add_epi32(_mm512_cvtps_epi32(v), _mm512_set1_epi32(zp));
        r = _mm512_min_epi32(_mm512_max_epi32(r, _mm512_setzero_si512()), _mm512_set1_epi32(255));
        _mm_storeu_si128((__m128i *)(q + i), _mm512_cvtepi32_epi8(r));
    }
    for (; i < n; i++) {
        float v = x[i] * inv_scale;
        v = v != v ? 0.0f : fminf(fmaxf(v, -clamp_limit), clamp_limit);
        int32_t r = (int32_t)nearbyintf(v) + zp;
        q[i] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
    }
}

#endif

// MARK: Dispatch

typedef void (*linear_fn)(const uint8_t *, size_t, size_t, size_t, const int8_t *, size_t, const dk_int8_epilogue *,
                          uint8_t *, float *, size_t);

static int cpu_level(void) {
#if defined(__x86_64__)
    if (dk_cpu_has_avx512_vnni()) return 2;
    if (dk_cpu_has_avx2_fma()) return 1;
#endif
    return 0;
}

int dk_int8_level(void) {
    static int level = -1;
    int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (l < 0) { l = cpu_level(); __atomic_store_n(&level, l, __ATOMIC_RELAXED); }
    return l;
}

/// The kernel of `level`, or NULL when this CPU lacks it.
static linear_fn linear_of(int level) {
    if (level < 0 || level > dk_int8_level()) return NULL;
#if defined(__x86_64__)
    if (level == 2) return linear_vnni;
    if (level == 1) return linear_avx2;
#endif
    return level == 0 ? linear_scalar : NULL;
}

void dk_int8_linear(const uint8_t *a, size_t lda, size_t rows, size_t k, const int8_t *packed, size_t n,
                    const dk_int8_epilogue *e, uint8_t *y_u8, float *y_f32, size_t ldy) {
    linear_of(dk_int8_level())(a, lda, rows, k, packed, n, e, y_u8, y_f32, ldy);
}

int dk_int8_linear_level(int level, const uint8_t *a, size_t lda, size_t rows, size_t k, const int8_t *packed, size_t n,
                         const dk_int8_epilogue *e, uint8_t *y_u8, float *y_f32, size_t ldy) {
    linear_fn f = linear_of(level);
    if (!f) return -1;
    f(a, lda, rows, k, packed, n, e, y_u8, y_f32, ldy);
    return 0;
}

void dk_int8_quantize(const float *x, size_t n, float inv_scale, int32_t zero_point, uint8_t *q) {
#if defined(__x86_64__)
    if (dk_int8_level() == 2) { quantize_avx512(x, n, inv_scale, zero_point, q); return; }
#endif
    for (size_t i = 0; i < n; i++) {
        float v = x[i] * inv_scale;
        v = v != v ? 0.0f : fminf(fmaxf(v, -clamp_limit), clamp_limit);
        int32_t r = (int32_t)nearbyintf(v) + zero_point;
        q[i] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
    }
}

// MARK: Convolution and pooling

size_t dk_int8_conv_scratch_size(const dk_int8_conv_shape *s) {
    return s->out_w * round_up(s->kernel_h * s->kernel_w * s->channels, 4) + 64;  // the slack takes the last spill
}

/// See int8_private.h. Runs are short (LeNet-5 copies runs of 5 and 30 bytes), hence the 16-byte moves.
void dk_int8_copy_patches(const dk_int8_conv_shape *s, const uint8_t *row, size_t run_stride, size_t patch_stride, uint8_t *scratch) {
    const size_t span = s->kernel_w * s->channels;
    for (size_t ox = 0; ox < s->out_w; ox++) {
        uint8_t *patch = scratch + ox * patch_stride;
        const uint8_t *corner = row + ox * s->stride_w * s->channels;
        for (size_t ky = 0; ky < s->kernel_h; ky++) {
            const uint8_t *from = corner + ky * s->in_row_stride;
            uint8_t *to = patch + ky * run_stride;
            for (size_t j = 0; j < span; j += 16) {
                uint64_t a, b;
                memcpy(&a, from + j, 8);
                memcpy(&b, from + j + 8, 8);
                memcpy(to + j, &a, 8);
                memcpy(to + j + 8, &b, 8);
            }
        }
    }
}

static void conv_with(int level, const dk_int8_conv_shape *s, const uint8_t *x, const int8_t *packed,
                      const dk_int8_epilogue *e, uint8_t *y, uint8_t *scratch) {
    const linear_fn linear = linear_of(level);
    const size_t span = s->kernel_w * s->channels, k = s->kernel_h * span, k4 = round_up(k, 4);
    // Bytes k ..< k4 of each patch multiply zero weights: they are never cleared.
    for (size_t oy = 0; oy < s->out_h; oy++) {
        const uint8_t *row = x + oy * s->stride_h * s->in_row_stride;
        dk_int8_copy_patches(s, row, span, k4, scratch);
        linear(scratch, k4, s->out_w, k, packed, s->out_channels, e, y + oy * s->out_row_stride, NULL, s->out_channels);
    }
}

void dk_int8_conv2d(const dk_int8_conv_shape *shape, const uint8_t *x, const int8_t *packed, const dk_int8_epilogue *e,
                    uint8_t *y, uint8_t *scratch) {
    conv_with(dk_int8_level(), shape, x, packed, e, y, scratch);
}

int dk_int8_conv2d_level(int level, const dk_int8_conv_shape *shape, const uint8_t *x, const int8_t *packed,
                         const dk_int8_epilogue *e, uint8_t *y, uint8_t *scratch) {
    if (!linear_of(level)) return -1;
    conv_with(level, shape, x, packed, e, y, scratch);
    return 0;
}

void dk_int8_pool2d(size_t channels, size_t in_h, size_t in_w, size_t in_row_stride,
                    size_t kernel_h, size_t kernel_w, size_t stride_h, size_t stride_w, size_t pad_h, size_t pad_w,
                    size_t out_h, size_t out_w, size_t out_row_stride, int32_t zero_point,
                    const uint8_t *x, uint8_t *y, int average) {
    if (!average && pad_h == 0 && pad_w == 0) {
        // Every window inside the image: the running max, one pass per window position.
        for (size_t oy = 0; oy < out_h; oy++) {
            for (size_t ox = 0; ox < out_w; ox++) {
                uint8_t *out = y + oy * out_row_stride + ox * channels;
                const uint8_t *base = x + oy * stride_h * in_row_stride + ox * stride_w * channels;
                memcpy(out, base, channels);
                for (size_t ky = 0; ky < kernel_h; ky++) {
                    for (size_t kx = 0; kx < kernel_w; kx++) {
                        const uint8_t *p = base + ky * in_row_stride + kx * channels;
                        for (size_t c = 0; c < channels; c++) out[c] = p[c] > out[c] ? p[c] : out[c];
                    }
                }
            }
        }
        return;
    }
    int32_t sums[256];
    const float area = (float)(kernel_h * kernel_w);
    for (size_t oy = 0; oy < out_h; oy++) {
        for (size_t ox = 0; ox < out_w; ox++) {
            uint8_t *out = y + oy * out_row_stride + ox * channels;
            for (size_t c0 = 0; c0 < channels; c0 += 256) {
                const size_t cn = channels - c0 < 256 ? channels - c0 : 256;
                for (size_t c = 0; c < cn; c++) sums[c] = average ? 0 : -1;
                for (size_t ky = 0; ky < kernel_h; ky++) {
                    const long iy = (long)(oy * stride_h + ky) - (long)pad_h;
                    if (iy < 0 || iy >= (long)in_h) continue;
                    for (size_t kx = 0; kx < kernel_w; kx++) {
                        const long ix = (long)(ox * stride_w + kx) - (long)pad_w;
                        if (ix < 0 || ix >= (long)in_w) continue;
                        const uint8_t *p = x + (size_t)iy * in_row_stride + (size_t)ix * channels + c0;
                        if (average) for (size_t c = 0; c < cn; c++) sums[c] += (int32_t)p[c] - zero_point;
                        else for (size_t c = 0; c < cn; c++) sums[c] = p[c] > sums[c] ? p[c] : sums[c];
                    }
                }
                for (size_t c = 0; c < cn; c++) {
                    int32_t q = average ? (int32_t)nearbyintf((float)sums[c] / area) + zero_point : sums[c];
                    out[c0 + c] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
                }
            }
        }
    }
}
