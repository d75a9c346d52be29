// Depthwise convolution (MobileNet's and EfficientNet's 3×3 and 5×5 per-channel filters) and the
// activations fused into a convolution's output pass, for the ONNX executor.
//
// A depthwise convolution has a handful of multiply-adds per output (9 or 25), too few for
// im2col + GEMM to pay: one GEMM per channel with a single output row. Here each input plane is
// copied once into a zero-padded scratch plane whose columns are split by stride phase (column
// c goes to phase c % stride, slot c / stride), so every kernel tap reads the output row's inputs
// as one contiguous run whatever the stride; the outputs of a row are then computed 16 (AVX-512)
// or 8 (AVX2 + FMA) at a time in registers, masked at the row's end, and the activation is
// applied to the finished plane while it is still in cache.
#include "vector_common.h"
#include "dk_conv_depthwise.h"
#include "dk_kernels.h"
#include "dk_recurrent.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// MARK: Activations

// The loop bodies, inlined into a per-target wrapper so that each is vectorised for that target.
static inline __attribute__((always_inline)) void activation_body(float *y, size_t n, int activation, float lo, float hi) {
    switch (activation) {
    case DK_ACTIVATION_RELU:
        for (size_t i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        break;
    case DK_ACTIVATION_CLIP:
        for (size_t i = 0; i < n; i++) {
            float v = y[i];
            float c = v < lo ? lo : v;
            c = c > hi ? hi : c;
            y[i] = v != v ? v : c;
        }
        break;
    case DK_ACTIVATION_HARDSWISH:
        for (size_t i = 0; i < n; i++) {
            float v = y[i], g = v * (1.0f / 6.0f) + 0.5f;
            g = g > 1.0f ? 1.0f : g;
            g = g < 0.0f ? 0.0f : g;
            y[i] = v * g;
        }
        break;
    default:
        break;
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void activation_avx512(float *y, size_t n, int activation, float lo, float hi) {
    activation_body(y, n, activation, lo, hi);
}
__attribute__((target("avx2,fma"))) static void activation_avx2(float *y, size_t n, int activation, float lo, float hi) {
    activation_body(y, n, activation, lo, hi);
}
#endif
static void activation_portable(float *y, size_t n, int activation, float lo, float hi) {
    activation_body(y, n, activation, lo, hi);
}

/// The widest level this CPU runs (2 AVX-512, 1 AVX2 + FMA, 0 portable), read once.
static int cpu_level(void) {
    static int known = -1;
    int v = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (v < 0) { v = dk_choose_level(-1); __atomic_store_n(&known, v, __ATOMIC_RELAXED); }
    return v;
}
static int has_avx512(void) { return cpu_level() == 2; }

void dk_activation_inplace(float *y, size_t n, int activation, float lo, float hi) {
    switch (activation) {
    case DK_ACTIVATION_NONE: return;
    case DK_ACTIVATION_SIGMOID: dk_sigmoid_inplace(y, n); return;
    case DK_ACTIVATION_SILU: dk_silu_inplace(y, n); return;
    default: break;
    }
#if defined(__x86_64__)
    if (cpu_level() == 2) { activation_avx512(y, n, activation, lo, hi); return; }
    if (cpu_level() == 1) { activation_avx2(y, n, activation, lo, hi); return; }
#endif
    activation_portable(y, n, activation, lo, hi);
}

// MARK: Depthwise convolution

/// Extents of the padded, phase-split scratch plane: rows, slots per phase, floats per row.
typedef struct { size_t rows, phase_width, row_stride; } padded_plane;

static padded_plane padded_extents(const dk_window_shape *s) {
    size_t span_h = (s->out_h - 1) * s->stride_h + (s->kernel_h - 1) * s->dilation_h + 1;
    size_t span_w = (s->out_w - 1) * s->stride_w + (s->kernel_w - 1) * s->dilation_w + 1;
    size_t phase_width = (span_w + s->stride_w - 1) / s->stride_w;
    padded_plane p = { span_h, phase_width, phase_width * s->stride_w };
    return p;
}

size_t dk_depthwise_scratch_floats(const dk_window_shape *s) {
    padded_plane p = padded_extents(s);
    return p.rows * p.row_stride;
}

static inline __attribute__((always_inline)) void fill(float *p, size_t n, float value) {
    for (size_t i = 0; i < n; i++) p[i] = value;
}

/// dst[i] = from[i·stride] for i < count.
static void strided_copy_portable(float *dst, const float *from, size_t count, size_t stride) {
    for (size_t i = 0; i < count; i++) dst[i] = from[i * stride];
}

#if defined(__x86_64__)
/// `strided_copy_portable`, with stride 2 (the stride of every downsampling depthwise layer in
/// MobileNet and EfficientNet) taken 16 outputs at a time: two loads and one two-source permute
/// picking the even lanes. `available`: floats readable from `from` (the rest of its image row),
/// so that no load reaches past the row's end.
__attribute__((target("avx512f"))) static void strided_copy_avx512(float *dst, const float *from, size_t count, size_t stride,
                                                                   size_t available) {
    size_t i = 0;
    if (stride == 2) {
        const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        for (; i + 16 <= count && 2 * i + 32 <= available; i += 16) {
            __m512 a = _mm512_loadu_ps(from + 2 * i), b = _mm512_loadu_ps(from + 2 * i + 16);
            _mm512_storeu_ps(dst + i, _mm512_permutex2var_ps(a, even, b));
        }
    }
    for (; i < count; i++) dst[i] = from[i * stride];
}

/// `strided_copy_avx512` at 8 lanes: stride 2 by two loads, a shuffle picking the even lanes of
/// each 128-bit half and a permute putting the halves' pairs in order.
__attribute__((target("avx2"))) static void strided_copy_avx2(float *dst, const float *from, size_t count, size_t stride,
                                                              size_t available) {
    size_t i = 0;
    if (stride == 2) {
        for (; i + 8 <= count && 2 * i + 16 <= available; i += 8) {
            __m256 a = _mm256_loadu_ps(from + 2 * i), b = _mm256_loadu_ps(from + 2 * i + 8);
            __m256 even = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // a0 a2 b0 b2 | a4 a6 b4 b6
            _mm256_storeu_ps(dst + i, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), _MM_SHUFFLE(3, 1, 2, 0))));
        }
    }
    for (; i < count; i++) dst[i] = from[i * stride];
}
#endif

/// Copies plane `x` [height, width] into `buf`, padded with `pad`, columns split by stride phase.
/// Inlined into each kernel, so that its copies are vectorised for that kernel's target; `vector`:
/// the kernel runs with AVX-512 (2) or AVX2 (1), and so may the strided copies.
static inline __attribute__((always_inline)) void fill_padded(const dk_window_shape *s, padded_plane p, const float *x, float *buf,
                                                              float pad, int vector) {
    size_t span_w = (s->out_w - 1) * s->stride_w + (s->kernel_w - 1) * s->dilation_w + 1;
    for (size_t r = 0; r < p.rows; r++) {
        float *row = buf + r * p.row_stride;
        if (r < s->pad_top || r - s->pad_top >= s->height) { fill(row, p.row_stride, pad); continue; }
        const float *src = x + (r - s->pad_top) * s->width;
        if (s->stride_w == 1) {
            size_t left = s->pad_left < span_w ? s->pad_left : span_w;
            size_t copied = s->width < span_w - left ? s->width : span_w - left;
            fill(row, left, pad);
            memcpy(row + left, src, copied * sizeof(float));
            fill(row + left + copied, p.row_stride - left - copied, pad);
            continue;
        }
        // Slot `slot` of phase `phase` holds padded column c = slot·stride + phase, which is
        // image column c − pad_left when that lies inside the image (slots lo..<hi), else zero.
        size_t sw = s->stride_w, image_end = s->pad_left + s->width < span_w ? s->pad_left + s->width : span_w;
        for (size_t phase = 0; phase < sw; phase++) {
            float *dst = row + phase * p.phase_width;
            size_t lo = s->pad_left > phase ? (s->pad_left - phase + sw - 1) / sw : 0;
            size_t hi = image_end > phase ? (image_end - phase + sw - 1) / sw : 0;
            if (hi > p.phase_width) hi = p.phase_width;
            if (lo > hi) lo = hi;
            fill(dst, lo, pad);
            size_t start = lo * sw + phase - s->pad_left;  // the image column of slot lo
#if defined(__x86_64__)
            if (vector == 2) strided_copy_avx512(dst + lo, src + start, hi - lo, sw, s->width - start);
            else if (vector == 1) strided_copy_avx2(dst + lo, src + start, hi - lo, sw, s->width - start);
            else
#endif
                strided_copy_portable(dst + lo, src + start, hi - lo, sw);
            (void)vector;
            fill(dst + hi, p.phase_width - hi, pad);
        }
    }
}

/// Most taps whose offsets and weights are held in local arrays (a 7×7 kernel has 49).
enum { max_taps = DK_WINDOW_MAX_TAPS };

/// Where tap (ky, kx) starts reading, relative to the first padded row of an output row: the
/// run of inputs it multiplies with the output row's columns is contiguous from there.
static void tap_offsets(const dk_window_shape *s, padded_plane p, size_t *offsets) {
    for (size_t ky = 0; ky < s->kernel_h; ky++) {
        for (size_t kx = 0; kx < s->kernel_w; kx++) {
            size_t off = kx * s->dilation_w;
            offsets[ky * s->kernel_w + kx] = ky * s->dilation_h * p.row_stride + (off % s->stride_w) * p.phase_width + off / s->stride_w;
        }
    }
}

static void depthwise_portable(const dk_window_shape *s, const float *x, const float *w, const float *bias, float *y,
                               size_t first, size_t end, float *buf) {
    padded_plane p = padded_extents(s);
    size_t taps = s->kernel_h * s->kernel_w, out_plane = s->out_h * s->out_w;
    size_t offsets[max_taps];
    tap_offsets(s, p, offsets);
    for (size_t plane = first; plane < end; plane++) {
        size_t c = plane % s->channels;
        const float *k = w + c * taps;
        float b = bias ? bias[c] : 0.0f;
        float *yp = y + plane * out_plane;
        fill_padded(s, p, x + plane * s->height * s->width, buf, 0.0f, 0);
        for (size_t oy = 0; oy < s->out_h; oy++) {
            float *out = yp + oy * s->out_w;
            const float *base = buf + oy * s->stride_h * p.row_stride;
            for (size_t j = 0; j < s->out_w; j++) out[j] = b;
            for (size_t t = 0; t < taps; t++) {
                const float *src = base + offsets[t];
                float kv = k[t];
                for (size_t j = 0; j < s->out_w; j++) out[j] += kv * src[j];
            }
        }
    }
}

#if defined(__x86_64__)
/// 4 rows × 8 outputs of `depthwise_plane_avx2`: `whole` (a constant after inlining) for 8
/// outputs, with plain loads and stores; otherwise `mask` covers the row's last outputs. Masked
/// loads cost several plain ones on AMD's cores: on an AMD EPYC, MobileNet v2's depthwise nodes
/// (batch 256, `DISTILL_PROFILE=1`) took 4.7-5.1 s with masked loads everywhere and scalar
/// stride-2 copies, 2.9-3.8 s with plain loads and `strided_copy_avx2` (a noisy host; two runs each).
__attribute__((target("avx2,fma"), always_inline)) static inline void depthwise_tile_avx2(
    const int whole, __m256i mask, __m256 b, const size_t *offsets, const float *k, size_t taps, const float *src0,
    size_t row_step, float *out, size_t out_w) {
    __m256 acc0 = b, acc1 = b, acc2 = b, acc3 = b;
    for (size_t t = 0; t < taps; t++) {
        const float *src = src0 + offsets[t];
        const __m256 kv = _mm256_broadcast_ss(k + t);
        if (whole) {
            acc0 = _mm256_fmadd_ps(kv, _mm256_loadu_ps(src), acc0);
            acc1 = _mm256_fmadd_ps(kv, _mm256_loadu_ps(src + row_step), acc1);
            acc2 = _mm256_fmadd_ps(kv, _mm256_loadu_ps(src + 2 * row_step), acc2);
            acc3 = _mm256_fmadd_ps(kv, _mm256_loadu_ps(src + 3 * row_step), acc3);
        } else {
            acc0 = _mm256_fmadd_ps(kv, _mm256_maskload_ps(src, mask), acc0);
            acc1 = _mm256_fmadd_ps(kv, _mm256_maskload_ps(src + row_step, mask), acc1);
            acc2 = _mm256_fmadd_ps(kv, _mm256_maskload_ps(src + 2 * row_step, mask), acc2);
            acc3 = _mm256_fmadd_ps(kv, _mm256_maskload_ps(src + 3 * row_step, mask), acc3);
        }
    }
    if (whole) {
        _mm256_storeu_ps(out, acc0);
        _mm256_storeu_ps(out + out_w, acc1);
        _mm256_storeu_ps(out + 2 * out_w, acc2);
        _mm256_storeu_ps(out + 3 * out_w, acc3);
    } else {
        _mm256_maskstore_ps(out, mask, acc0);
        _mm256_maskstore_ps(out + out_w, mask, acc1);
        _mm256_maskstore_ps(out + 2 * out_w, mask, acc2);
        _mm256_maskstore_ps(out + 3 * out_w, mask, acc3);
    }
}

/// `depthwise_plane_avx512` at 8 lanes (AVX2 + FMA): 8 outputs of 4 rows at a time, masked loads
/// and stores at a row's end, each weight broadcast from memory (16 registers cannot hold 25).
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void
depthwise_plane_avx2(const dk_window_shape *s, padded_plane p, const size_t *offsets, const float *k, float bias,
                     const float *buf, float *yp, size_t taps) {
    const __m256 b = _mm256_set1_ps(bias);
    size_t row_step = s->stride_h * p.row_stride;
    for (size_t oy = 0; oy < s->out_h; oy += 4) {
        size_t rows = s->out_h - oy < 4 ? s->out_h - oy : 4;
        const float *base = buf + oy * row_step;
        float *out = yp + oy * s->out_w;
        for (size_t j = 0; j < s->out_w; j += 8) {
            const size_t n = s->out_w - j < 8 ? s->out_w - j : 8;
            const __m256i mask = dk_lanes8((long)n);
            if (rows == 4) {
                if (n == 8) depthwise_tile_avx2(1, mask, b, offsets, k, taps, base + j, row_step, out + j, s->out_w);
                else depthwise_tile_avx2(0, mask, b, offsets, k, taps, base + j, row_step, out + j, s->out_w);
                continue;
            }
            for (size_t r = 0; r < rows; r++) {  // the plane's last rows
                __m256 acc = b;
                for (size_t t = 0; t < taps; t++)
                    acc = _mm256_fmadd_ps(_mm256_broadcast_ss(k + t), _mm256_maskload_ps(base + r * row_step + offsets[t] + j, mask), acc);
                _mm256_maskstore_ps(out + r * s->out_w + j, mask, acc);
            }
        }
    }
}

// DEPTHWISE_PLANES(NAME, PLANE, VECTOR, ATTRIBUTES) defines NAME, the planes first..<end of a
// depthwise convolution: each plane copied into `buf` with its padding (`fill_padded` at level
// VECTOR), then PLANE over it, inlined with 9 and 25 taps as constants.
#define DEPTHWISE_PLANES(NAME, PLANE, VECTOR, ATTRIBUTES)                                                      \
    ATTRIBUTES static void NAME(const dk_window_shape *s, const float *x, const float *w, const float *bias,   \
                                float *y, size_t first, size_t end, float *buf) {                              \
        padded_plane p = padded_extents(s);                                                                    \
        size_t taps = s->kernel_h * s->kernel_w, out_plane = s->out_h * s->out_w;                              \
        size_t offsets[max_taps];                                                                              \
        tap_offsets(s, p, offsets);                                                                            \
        for (size_t plane = first; plane < end; plane++) {                                                     \
            size_t c = plane % s->channels;                                                                    \
            const float *k = w + c * taps;                                                                     \
            float b = bias ? bias[c] : 0.0f;                                                                   \
            float *yp = y + plane * out_plane;                                                                 \
            fill_padded(s, p, x + plane * s->height * s->width, buf, 0.0f, VECTOR);                            \
            if (taps == 9) PLANE(s, p, offsets, k, b, buf, yp, 9);                                             \
            else if (taps == 25) PLANE(s, p, offsets, k, b, buf, yp, 25);                                      \
            else PLANE(s, p, offsets, k, b, buf, yp, taps);                                                    \
        }                                                                                                      \
    }

DEPTHWISE_PLANES(depthwise_avx2, depthwise_plane_avx2, 1, __attribute__((target("avx2,fma"))))
#endif

#if defined(__x86_64__)
/// One output plane from the padded input plane `buf`, 16 outputs of 4 rows at a time: four
/// independent chains of multiply-adds (one chain waits on each add's latency; MobileNet's rows
/// of 7 to 56 outputs left one or two). Inlined with `taps` a constant (9 for 3×3, 25 for 5×5)
/// where it can be, so that the tap loops unroll and the weights stay in registers.
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
depthwise_plane_avx512(const dk_window_shape *s, padded_plane p, const size_t *offsets, const float *k, float bias,
                       const float *buf, float *yp, size_t taps) {
    __m512 b = _mm512_set1_ps(bias);
    __m512 kv[max_taps];
    for (size_t t = 0; t < taps; t++) kv[t] = _mm512_set1_ps(k[t]);
    size_t row_step = s->stride_h * p.row_stride;  // between the inputs of consecutive output rows
    for (size_t oy = 0; oy < s->out_h; oy += 4) {
        size_t rows = s->out_h - oy < 4 ? s->out_h - oy : 4;
        const float *base = buf + oy * row_step;
        float *out = yp + oy * s->out_w;
        for (size_t j = 0; j < s->out_w; j += 16) {
            __mmask16 mask = s->out_w - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (s->out_w - j)) - 1);
            if (rows == 4) {
                __m512 acc0 = b, acc1 = b, acc2 = b, acc3 = b;
                for (size_t t = 0; t < taps; t++) {
                    const float *src = base + offsets[t] + j;
                    acc0 = _mm512_fmadd_ps(kv[t], _mm512_maskz_loadu_ps(mask, src), acc0);
                    acc1 = _mm512_fmadd_ps(kv[t], _mm512_maskz_loadu_ps(mask, src + row_step), acc1);
                    acc2 = _mm512_fmadd_ps(kv[t], _mm512_maskz_loadu_ps(mask, src + 2 * row_step), acc2);
                    acc3 = _mm512_fmadd_ps(kv[t], _mm512_maskz_loadu_ps(mask, src + 3 * row_step), acc3);
                }
                _mm512_mask_storeu_ps(out + j, mask, acc0);
                _mm512_mask_storeu_ps(out + s->out_w + j, mask, acc1);
                _mm512_mask_storeu_ps(out + 2 * s->out_w + j, mask, acc2);
                _mm512_mask_storeu_ps(out + 3 * s->out_w + j, mask, acc3);
                continue;
            }
            for (size_t r = 0; r < rows; r++) {  // the plane's last rows
                __m512 acc = b;
                for (size_t t = 0; t < taps; t++) {
                    acc = _mm512_fmadd_ps(kv[t], _mm512_maskz_loadu_ps(mask, base + r * row_step + offsets[t] + j), acc);
                }
                _mm512_mask_storeu_ps(out + r * s->out_w + j, mask, acc);
            }
        }
    }
}

DEPTHWISE_PLANES(depthwise_avx512, depthwise_plane_avx512, 2, __attribute__((target("avx512f"))))
#endif

// MARK: Max pooling: the same padded plane (padding -infinity), max instead of multiply-add.

static void max_pool_portable(const dk_window_shape *s, const float *x, float *y, size_t first, size_t end, float *buf) {
    padded_plane p = padded_extents(s);
    size_t taps = s->kernel_h * s->kernel_w, out_plane = s->out_h * s->out_w;
    size_t offsets[max_taps];
    tap_offsets(s, p, offsets);
    for (size_t plane = first; plane < end; plane++) {
        float *yp = y + plane * out_plane;
        fill_padded(s, p, x + plane * s->height * s->width, buf, -__builtin_inff(), 0);
        for (size_t oy = 0; oy < s->out_h; oy++) {
            float *out = yp + oy * s->out_w;
            const float *base = buf + oy * s->stride_h * p.row_stride;
            for (size_t j = 0; j < s->out_w; j++) {
                float best = -__builtin_inff();
                for (size_t t = 0; t < taps; t++) {
                    float v = base[offsets[t] + j];
                    best = v > best || v != v ? v : best;
                    if (v != v) break;
                }
                out[j] = best;
            }
        }
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void max_pool_avx512(const dk_window_shape *s, const float *x, float *y, size_t first,
                                                               size_t end, float *buf) {
    padded_plane p = padded_extents(s);
    size_t taps = s->kernel_h * s->kernel_w, out_plane = s->out_h * s->out_w;
    size_t offsets[max_taps];
    tap_offsets(s, p, offsets);
    const __m512 low = _mm512_set1_ps(-__builtin_inff()), nan = _mm512_set1_ps(__builtin_nanf(""));
    for (size_t plane = first; plane < end; plane++) {
        float *yp = y + plane * out_plane;
        fill_padded(s, p, x + plane * s->height * s->width, buf, -__builtin_inff(), 2);
        for (size_t oy = 0; oy < s->out_h; oy++) {
            float *out = yp + oy * s->out_w;
            const float *base = buf + oy * s->stride_h * p.row_stride;
            for (size_t j = 0; j < s->out_w; j += 16) {
                __mmask16 mask = s->out_w - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (s->out_w - j)) - 1);
                __m512 best = low;
                __mmask16 seen_nan = 0;
                for (size_t t = 0; t < taps; t++) {
                    __m512 v = _mm512_maskz_loadu_ps(mask, base + offsets[t] + j);
                    seen_nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                    best = _mm512_max_ps(best, v);
                }
                _mm512_mask_storeu_ps(out + j, mask, _mm512_mask_blend_ps(seen_nan, best, nan));
            }
        }
    }
}
#endif

int dk_max_pool2d_level(int level, const dk_window_shape *s, const float *x, float *y, size_t first, size_t end, float *scratch) {
    if (s->kernel_h * s->kernel_w > max_taps) return -1;
    if (level == 2) {
#if defined(__x86_64__)
        if (!has_avx512()) return -1;
        max_pool_avx512(s, x, y, first, end, scratch);
        return 0;
#else
        return -1;
#endif
    }
    if (level != 0) return -1;
    max_pool_portable(s, x, y, first, end, scratch);
    return 0;
}

void dk_max_pool2d(const dk_window_shape *s, const float *x, float *y, size_t first, size_t end, float *scratch) {
    if (s->kernel_h * s->kernel_w > max_taps) return;
#if defined(__x86_64__)
    if (has_avx512()) { max_pool_avx512(s, x, y, first, end, scratch); return; }
#endif
    max_pool_portable(s, x, y, first, end, scratch);
}

int dk_depthwise_conv2d_level(int level, const dk_window_shape *s, const float *x, const float *w, const float *bias,
                              float *y, size_t first, size_t end, int activation, float lo, float hi, float *scratch) {
    if (s->kernel_h * s->kernel_w > max_taps) return -1;
    if (level == 2) {
#if defined(__x86_64__)
        if (!has_avx512()) return -1;
        depthwise_avx512(s, x, w, bias, y, first, end, scratch);
#else
        return -1;
#endif
    } else if (level == 1) {
#if defined(__x86_64__)
        if (cpu_level() < 1) return -1;
        depthwise_avx2(s, x, w, bias, y, first, end, scratch);
#else
        return -1;
#endif
    } else if (level == 0) {
        depthwise_portable(s, x, w, bias, y, first, end, scratch);
    } else {
        return -1;
    }
    size_t out_plane = s->out_h * s->out_w;
    dk_activation_inplace(y + first * out_plane, (end - first) * out_plane, activation, lo, hi);
    return 0;
}

void dk_depthwise_conv2d(const dk_window_shape *s, const float *x, const float *w, const float *bias, float *y,
                         size_t first, size_t end, int activation, float lo, float hi, float *scratch) {
    if (s->kernel_h * s->kernel_w > max_taps) return;
    size_t out_plane = s->out_h * s->out_w;
    // The activation runs plane by plane, while each output plane is still in cache.
    for (size_t plane = first; plane < end; plane++) {
#if defined(__x86_64__)
        if (cpu_level() == 2) depthwise_avx512(s, x, w, bias, y, plane, plane + 1, scratch);
        else if (cpu_level() == 1) depthwise_avx2(s, x, w, bias, y, plane, plane + 1, scratch);
        else
#endif
            depthwise_portable(s, x, w, bias, y, plane, plane + 1, scratch);
        dk_activation_inplace(y + plane * out_plane, out_plane, activation, lo, hi);
    }
}
