// Direct int8 convolutions of one image in NHWC bytes, with an optional 2×2 max-pooling at stride
// 2 in the same pass (see dk_int8.h, `dk_int8_conv2d_direct`), for the int8 plan of CNN students
// (Sources/DistillNN/QuantizedPlan.swift).
//
// `dk_int8_conv2d` (Sources/CKernels/int8_gemm.c) copies each output row's patches into a scratch
// buffer and runs them through the matrix kernel; for a student's small layers the copy, the
// lanes a few output channels leave empty, and a pooling pass of its own cost as much as the
// products. Here, with AVX-512 VNNI:
// - a one-channel first layer (stride 1 along rows) puts 16 neighbouring output pixels in the
//   lanes: each lane's four input bytes (four taps of one kernel row) come from one load, spread
//   by a dword permute and a byte shuffle, and each output channel's four weights are broadcast;
// - any other layer puts 16 output channels in the lanes and reads each pixel's four input bytes
//   straight from the input rows (no patch copy): the packed weight pads every kernel row's run of
//   kernel_w · channels bytes to a multiple of 4 with zero weights, so the four bytes read never
//   straddle two kernel rows (the up to 3 bytes read past a run multiply zeros);
// - pooling takes the max of the int32 accumulators before the requantisation, which is monotone
//   (the scales are positive), so the pooled byte is exactly the max of the requantised bytes.
// Other CPUs run the patch copy and `dk_int8_linear_level` per row (the AVX2 or scalar product),
// pooling two rows at a time. Every path gives the same bytes as `dk_int8_conv2d` then
// `dk_int8_pool2d` (the same int32 sums, the same epilogue), which the tests check.
#pragma clang fp contract(off)

#include "dk_int8.h"
#include "int8_private.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/// As in int8_gemm.c: floats are clamped to ±2^15 before rounding.
static const float clamp_limit = 32768.0f;

static inline size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

/// Bytes of one kernel row's run in the packed weight: kernel_w · channels rounded up to 4.
static inline size_t run4(const dk_int8_conv_shape *s) { return round_up(s->kernel_w * s->channels, 4); }

size_t dk_int8_conv_packed_size(const dk_int8_conv_shape *s) {
    return dk_int8_packed_size(s->kernel_h * run4(s), s->out_channels);
}

int dk_int8_conv_pack_weights(const dk_int8_conv_shape *s, const int8_t *w, int8_t *packed, int32_t *column_sums) {
    const size_t span = s->kernel_w * s->channels, r4 = run4(s), k = s->kernel_h * r4;
    int8_t *spread = calloc(s->out_channels * k, 1);
    if (!spread) return -1;
    for (size_t o = 0; o < s->out_channels; o++)
        for (size_t ky = 0; ky < s->kernel_h; ky++) memcpy(spread + o * k + ky * r4, w + (o * s->kernel_h + ky) * span, span);
    dk_int8_pack_weights(spread, s->out_channels, k, packed, column_sums);
    free(spread);
    return 0;
}

size_t dk_int8_conv_direct_scratch_size(const dk_int8_conv_shape *s) {
    // One output row's patches, two convolution rows to pool, and slack for the last move's spill.
    return s->out_w * s->kernel_h * run4(s) + 2 * s->out_w * s->out_channels + 128;
}

// MARK: Patches and the matrix kernel (every level)

/// Convolution row `oy` into `out` (pixel stride out_channels) through `dk_int8_linear_level`.
static void conv_row_gemm(int level, const dk_int8_conv_shape *s, const uint8_t *x, const int8_t *packed,
                          const dk_int8_epilogue *e, size_t oy, uint8_t *out, uint8_t *scratch) {
    const size_t k = s->kernel_h * run4(s);
    // Each kernel row's run at a multiple of 4 bytes (the packed weight's order).
    dk_int8_copy_patches(s, x + oy * s->stride_h * s->in_row_stride, run4(s), k, scratch);
    dk_int8_linear_level(level, scratch, k, s->out_w, k, packed, s->out_channels, e, out, NULL, s->out_channels);
}

static void conv_gemm(int level, const dk_int8_conv_shape *s, int pool, const uint8_t *x, const int8_t *packed,
                      const dk_int8_epilogue *e, uint8_t *y, uint8_t *scratch) {
    if (!pool) {
        for (size_t oy = 0; oy < s->out_h; oy++) conv_row_gemm(level, s, x, packed, e, oy, y + oy * s->out_row_stride, scratch);
        return;
    }
    const size_t outs = s->out_channels, line = s->out_w * outs;
    uint8_t *rows = scratch + s->out_w * s->kernel_h * run4(s) + 64;
    for (size_t py = 0; py < s->out_h / 2; py++) {
        conv_row_gemm(level, s, x, packed, e, 2 * py, rows, scratch);
        conv_row_gemm(level, s, x, packed, e, 2 * py + 1, rows + line, scratch);
        for (size_t px = 0; px < s->out_w / 2; px++) {
            const uint8_t *a = rows + 2 * px * outs, *b = a + outs, *c = a + line, *d = c + outs;
            uint8_t *out = y + py * s->out_row_stride + px * outs;
            for (size_t o = 0; o < outs; o++) {
                const uint8_t top = a[o] > b[o] ? a[o] : b[o], bottom = c[o] > d[o] ? c[o] : d[o];
                out[o] = top > bottom ? top : bottom;
            }
        }
    }
}

#if defined(__x86_64__)

// MARK: AVX-512 VNNI

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define VNNI_INLINE VNNI_TARGET static inline __attribute__((always_inline))

/// The epilogue of dk_int8.h on 16 accumulators: outputs o ..< o + 16 (`single` 0), or output o
/// in every lane (`single` 1). The same operations in the same order as `finish_scalar` in
/// int8_gemm.c, so every lane rounds as the scalar code does; the result is in 0 ... 255.
VNNI_INLINE __m512i requantize(__m512i acc, size_t o, int single, const dk_int8_epilogue *e) {
    if (e->offset) acc = _mm512_add_epi32(acc, single ? _mm512_set1_epi32(e->offset[o]) : _mm512_loadu_si512(e->offset + o));
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), single ? _mm512_set1_ps(e->scale[o]) : _mm512_loadu_ps(e->scale + o));
    if (e->bias) v = _mm512_add_ps(v, single ? _mm512_set1_ps(e->bias[o]) : _mm512_loadu_ps(e->bias + o));
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-clamp_limit)), _mm512_set1_ps(clamp_limit));
    __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), _mm512_set1_epi32(e->zero_point));
    q = _mm512_max_epi32(q, _mm512_set1_epi32(e->relu ? e->zero_point : 0));
    return _mm512_min_epi32(q, _mm512_set1_epi32(255));
}

/// What every tile of one convolution shares.
typedef struct {
    const dk_int8_conv_shape *s;
    const uint8_t *x;
    const int8_t *w;
    const dk_int8_epilogue *e;
    uint8_t *y;
    /// Outputs rounded up to 16 (the packed weight's row), groups of four bytes per kernel row.
    size_t np, groups;
} conv_args;

// MARK: Output channels in lanes

/// Most pixels of one tile (pointers and accumulators in registers: P · V ≤ 16 accumulators).
#define MAX_PIXELS 12

/// One tile: P pixels, whose patch corners lie at row + offset[p], × V vectors of 16 output
/// channels from vector v0. Not pooled: pixel p's bytes go to out + p · out_channels. Pooled: the
/// pixels come in fours (the 2×2 windows), and window q's bytes go to out + q · out_channels.
VNNI_INLINE void channel_tile(const conv_args *a, const uint8_t *row, const size_t *offset, const int P, size_t v0,
                              const int V, const int pooled, uint8_t *out) {
    __m512i acc[MAX_PIXELS][4];
    for (int p = 0; p < P; p++) for (int v = 0; v < V; v++) acc[p][v] = _mm512_setzero_si512();
    const int8_t *wk = a->w + v0 * 64;
    const size_t rs = a->s->in_row_stride;
    for (size_t ky = 0; ky < a->s->kernel_h; ky++, row += rs) {
        for (size_t g = 0; g < a->groups; g++, wk += a->np * 4) {
            __m512i w[4];
            for (int v = 0; v < V; v++) w[v] = _mm512_loadu_si512(wk + v * 64);
            for (int p = 0; p < P; p++) {
                int32_t four;
                memcpy(&four, row + offset[p] + 4 * g, 4);
                const __m512i xv = _mm512_set1_epi32(four);
                for (int v = 0; v < V; v++) acc[p][v] = _mm512_dpbusd_epi32(acc[p][v], xv, w[v]);
            }
        }
    }
    const size_t outs = a->s->out_channels;
    for (int v = 0; v < V; v++) {
        const size_t o = (v0 + v) * 16;
        const __mmask16 mask = outs - o >= 16 ? 0xFFFF : (__mmask16)((1u << (outs - o)) - 1);
        if (pooled) {
            for (int q = 0; q < P / 4; q++) {
                const __m512i m = _mm512_max_epi32(_mm512_max_epi32(acc[4 * q][v], acc[4 * q + 1][v]),
                                                   _mm512_max_epi32(acc[4 * q + 2][v], acc[4 * q + 3][v]));
                _mm512_mask_cvtusepi32_storeu_epi8(out + q * outs + o, mask, requantize(m, o, 0, a->e));
            }
        } else {
            for (int p = 0; p < P; p++) _mm512_mask_cvtusepi32_storeu_epi8(out + p * outs + o, mask, requantize(acc[p][v], o, 0, a->e));
        }
    }
}

#define CHANNEL_CASE(P, V, POOLED) case P: channel_tile(a, row, offset, P, v0, V, POOLED, out); break;

/// Tiles of V vectors: up to 12, 6, 4, 4 pixels for V = 1, 2, 3, 4 (up to 3, 1, 1, 1 windows pooled).
VNNI_TARGET static void channel_tiles(const conv_args *a, const uint8_t *row, const size_t *offset, int pixels, size_t v0,
                                      int V, int pooled, uint8_t *out) {
    if (pooled) {
        if (V == 1) {
            switch (pixels) { CHANNEL_CASE(4, 1, 1) CHANNEL_CASE(8, 1, 1) CHANNEL_CASE(12, 1, 1) }
        } else {
            switch (V) {
            case 2: channel_tile(a, row, offset, 4, v0, 2, 1, out); break;
            case 3: channel_tile(a, row, offset, 4, v0, 3, 1, out); break;
            default: channel_tile(a, row, offset, 4, v0, 4, 1, out); break;
            }
        }
        return;
    }
    switch (V) {
    case 1:
        switch (pixels) {
            CHANNEL_CASE(1, 1, 0) CHANNEL_CASE(2, 1, 0) CHANNEL_CASE(3, 1, 0) CHANNEL_CASE(4, 1, 0) CHANNEL_CASE(5, 1, 0)
            CHANNEL_CASE(6, 1, 0) CHANNEL_CASE(7, 1, 0) CHANNEL_CASE(8, 1, 0) CHANNEL_CASE(9, 1, 0) CHANNEL_CASE(10, 1, 0)
            CHANNEL_CASE(11, 1, 0) CHANNEL_CASE(12, 1, 0)
        }
        break;
    case 2:
        switch (pixels) {
            CHANNEL_CASE(1, 2, 0) CHANNEL_CASE(2, 2, 0) CHANNEL_CASE(3, 2, 0) CHANNEL_CASE(4, 2, 0) CHANNEL_CASE(5, 2, 0)
            CHANNEL_CASE(6, 2, 0)
        }
        break;
    case 3: switch (pixels) { CHANNEL_CASE(1, 3, 0) CHANNEL_CASE(2, 3, 0) CHANNEL_CASE(3, 3, 0) CHANNEL_CASE(4, 3, 0) } break;
    default: switch (pixels) { CHANNEL_CASE(1, 4, 0) CHANNEL_CASE(2, 4, 0) CHANNEL_CASE(3, 4, 0) CHANNEL_CASE(4, 4, 0) } break;
    }
}

VNNI_TARGET static void conv_channels_vnni(const conv_args *a, int pool) {
    const dk_int8_conv_shape *s = a->s;
    const size_t outs = s->out_channels, vectors = (outs + 15) / 16, step = s->stride_w * s->channels;
    const size_t down = s->stride_h * s->in_row_stride;
    size_t offset[MAX_PIXELS];
    for (size_t v0 = 0; v0 < vectors; v0 += 4) {
        const int V = vectors - v0 < 4 ? (int)(vectors - v0) : 4;
        if (pool) {
            const size_t windows = V == 1 ? 3 : 1, pw = s->out_w / 2;
            for (size_t py = 0; py < s->out_h / 2; py++) {
                const uint8_t *row = a->x + 2 * py * down;
                for (size_t px = 0; px < pw; px += windows) {
                    const size_t n = pw - px < windows ? pw - px : windows;
                    for (size_t q = 0; q < n; q++) {
                        const size_t left = (2 * (px + q)) * step;
                        offset[4 * q] = left, offset[4 * q + 1] = left + step;
                        offset[4 * q + 2] = left + down, offset[4 * q + 3] = left + down + step;
                    }
                    channel_tiles(a, row, offset, (int)(4 * n), v0, V, 1, a->y + py * s->out_row_stride + px * outs);
                }
            }
        } else {
            const size_t tile = V == 1 ? 12 : V == 2 ? 6 : 4;
            for (size_t p = 0; p < tile; p++) offset[p] = p * step;
            for (size_t oy = 0; oy < s->out_h; oy++) {
                const uint8_t *row = a->x + oy * down;
                for (size_t ox = 0; ox < s->out_w; ox += tile) {
                    const size_t n = s->out_w - ox < tile ? s->out_w - ox : tile;
                    channel_tiles(a, row + ox * step, offset, (int)n, v0, V, 0, a->y + oy * s->out_row_stride + ox * outs);
                }
            }
        }
    }
}

// MARK: Output pixels in lanes (one input channel)

/// Dword i of the result holds bytes i ..< i + 4 of p (of which the bytes `mask` selects are
/// read, the rest are zero): 16 neighbouring pixels' four taps of one kernel row. The dword
/// permute gives 128-bit lane L the bytes 4L ..< 4L + 16, the byte shuffle each dword its four.
VNNI_INLINE __m512i quads(const uint8_t *p, __mmask32 mask) {
    const __m256i raw = _mm256_maskz_loadu_epi8(mask, p);
    const __m512i spread = _mm512_permutexvar_epi32(_mm512_set_epi32(6, 5, 4, 3, 5, 4, 3, 2, 4, 3, 2, 1, 3, 2, 1, 0),
                                                    _mm512_castsi256_si512(raw));
    return _mm512_shuffle_epi8(spread, _mm512_set4_epi32(0x06050403, 0x05040302, 0x04030201, 0x03020100));
}

/// Up to 16 output columns from x0 × O output channels from o0, of convolution row `oy` (not
/// pooled), or of rows 2·oy and 2·oy + 1 pooled 2×2 in registers: the vertical max lane by lane,
/// the horizontal one against the vector shifted by one lane, leaving the pooled values in the
/// even lanes. The bytes reach NHWC through a small transpose.
VNNI_INLINE void gray_tile(const conv_args *a, size_t oy, size_t x0, size_t o0, const int O, const int pooled) {
    const dk_int8_conv_shape *s = a->s;
    const size_t rs = s->in_row_stride, outs = s->out_channels, groups = a->groups;
    // Columns computed: all 16 except at the row's end; pooled, only whole pairs.
    const size_t n = pooled ? 2 * (s->out_w / 2 - x0 / 2 < 8 ? s->out_w / 2 - x0 / 2 : 8) : (s->out_w - x0 < 16 ? s->out_w - x0 : 16);
    const __mmask32 mask = (__mmask32)((1u << (n + 3)) - 1);  // the last column's four bytes
    __m512i top[8], bottom[8];
    for (int o = 0; o < O; o++) top[o] = bottom[o] = _mm512_setzero_si512();
    const uint8_t *upper = a->x + (pooled ? 2 * oy : oy) * s->stride_h * rs + x0, *lower = upper + s->stride_h * rs;
    const int8_t *w = a->w + o0 * 4;
    for (size_t ky = 0; ky < s->kernel_h; ky++) {
        for (size_t g = 0; g < groups; g++, w += a->np * 4) {
            const __m512i qa = quads(upper + ky * rs + 4 * g, mask);
            const __m512i qb = pooled ? quads(lower + ky * rs + 4 * g, mask) : qa;
            for (int o = 0; o < O; o++) {
                int32_t four;
                memcpy(&four, w + 4 * o, 4);
                const __m512i wv = _mm512_set1_epi32(four);
                top[o] = _mm512_dpbusd_epi32(top[o], qa, wv);
                if (pooled) bottom[o] = _mm512_dpbusd_epi32(bottom[o], qb, wv);
            }
        }
    }
    const __m512i next = _mm512_set_epi32(15, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
    uint8_t bytes[8][16];
    for (int o = 0; o < O; o++) {
        __m512i m = top[o];
        if (pooled) {
            m = _mm512_max_epi32(top[o], bottom[o]);
            m = _mm512_max_epi32(m, _mm512_permutexvar_epi32(next, m));
        }
        _mm_storeu_si128((__m128i *)bytes[o], _mm512_cvtusepi32_epi8(requantize(m, o0 + o, 1, a->e)));
    }
    if (pooled) {
        uint8_t *out = a->y + oy * s->out_row_stride + (x0 / 2) * outs + o0;
        for (size_t i = 0; i < n / 2; i++, out += outs) for (int o = 0; o < O; o++) out[o] = bytes[o][2 * i];
    } else {
        uint8_t *out = a->y + oy * s->out_row_stride + x0 * outs + o0;
        for (size_t i = 0; i < n; i++, out += outs) for (int o = 0; o < O; o++) out[o] = bytes[o][i];
    }
}

#define GRAY_CASE(O) case O: if (pool) gray_tile(a, oy, x0, o0, O, 1); else gray_tile(a, oy, x0, o0, O, 0); break;

VNNI_TARGET static void conv_gray_vnni(const conv_args *a, int pool) {
    const dk_int8_conv_shape *s = a->s;
    const size_t rows = pool ? s->out_h / 2 : s->out_h, columns = pool ? s->out_w / 2 * 2 : s->out_w;
    for (size_t oy = 0; oy < rows; oy++)
        for (size_t x0 = 0; x0 < columns; x0 += 16)
            for (size_t o0 = 0; o0 < s->out_channels; o0 += 8) {
                switch (s->out_channels - o0 < 8 ? (int)(s->out_channels - o0) : 8) {
                    GRAY_CASE(1) GRAY_CASE(2) GRAY_CASE(3) GRAY_CASE(4) GRAY_CASE(5) GRAY_CASE(6) GRAY_CASE(7) GRAY_CASE(8)
                }
            }
}

#endif

// MARK: Dispatch

/// Whether the pixels-in-lanes kernel takes this shape: one input channel read along rows at
/// stride 1, and few output channels (more fill the channel lanes by themselves).
static int gray_shape(const dk_int8_conv_shape *s) { return s->channels == 1 && s->stride_w == 1 && s->out_channels <= 16; }

static void conv_direct_with(int level, const dk_int8_conv_shape *s, int pool, const uint8_t *x, const int8_t *packed,
                             const dk_int8_epilogue *e, uint8_t *y, uint8_t *scratch) {
#if defined(__x86_64__)
    if (level == 2) {
        const conv_args a = {s, x, packed, e, y, round_up(s->out_channels, 16), run4(s) / 4};
        if (gray_shape(s)) conv_gray_vnni(&a, pool);
        else conv_channels_vnni(&a, pool);
        return;
    }
#endif
    conv_gemm(level, s, pool, x, packed, e, y, scratch);
}

void dk_int8_conv2d_direct(const dk_int8_conv_shape *shape, int pool, const uint8_t *x, const int8_t *packed,
                           const dk_int8_epilogue *e, uint8_t *y, uint8_t *scratch) {
    conv_direct_with(dk_int8_level(), shape, pool, x, packed, e, y, scratch);
}

int dk_int8_conv2d_direct_level(int level, const dk_int8_conv_shape *shape, int pool, const uint8_t *x, const int8_t *packed,
                                const dk_int8_epilogue *e, uint8_t *y, uint8_t *scratch) {
    if (level < 0 || level > dk_int8_level()) return -1;
    conv_direct_with(level, shape, pool, x, packed, e, y, scratch);
    return 0;
}
