// Direct convolution and pooling of one image in NHWC layout, for the inference plan of CNN
// students (see dk_conv.h). A student's convolutions are small (1-64 channels, images of a few
// hundred pixels), where an im2col copy and a BLAS call per layer cost more than the arithmetic;
// here each output tile is a register block of `P` pixels × `V` vectors of 16 output channels,
// accumulated straight from the input rows (no im2col), with the bias, ReLU and the store to the
// next layer's buffer in the same pass.
//
// The AVX-512 path, or the AVX2 + FMA one at half the width, is chosen from cpuid once; other
// CPUs run the portable loops, which the compiler vectorises for its baseline.

#include "vector_common.h"
#include "dk_conv.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// MARK: Portable loops

static void conv_portable(const dk_conv_shape *s, const float *x, const float *w, const float *b, float *y, int relu) {
    const size_t channels = s->channels, padded = s->padded_out, outs = s->out_channels;
    for (size_t oy = 0; oy < s->out_h; oy++) {
        for (size_t ox = 0; ox < s->out_w; ox++) {
            float *yo = y + oy * s->out_row_stride + ox * outs;
            for (size_t o = 0; o < outs; o++) yo[o] = b ? b[o] : 0.0f;
            for (size_t ky = 0; ky < s->kernel_h; ky++) {
                for (size_t kx = 0; kx < s->kernel_w; kx++) {
                    const float *xi = x + (oy * s->stride_h + ky * s->dilation_h) * s->in_row_stride
                                        + (ox * s->stride_w + kx * s->dilation_w) * channels;
                    const float *wk = w + (ky * s->kernel_w + kx) * channels * padded;
                    for (size_t c = 0; c < channels; c++) {
                        const float v = xi[c];
                        const float *wc = wk + c * padded;
                        for (size_t o = 0; o < outs; o++) yo[o] += v * wc[o];
                    }
                }
            }
            if (relu)
                for (size_t o = 0; o < outs; o++) yo[o] = yo[o] > 0.0f ? yo[o] : 0.0f;  // NaN becomes 0, as max(v, 0) below
        }
    }
}

/// The convolution's value at (oy, ox) for output channel o.
static float conv_at(const dk_conv_shape *s, const float *x, const float *w, const float *b, size_t oy, size_t ox, size_t o) {
    float sum = b ? b[o] : 0.0f;
    for (size_t ky = 0; ky < s->kernel_h; ky++)
        for (size_t kx = 0; kx < s->kernel_w; kx++) {
            const float *xi = x + (oy * s->stride_h + ky * s->dilation_h) * s->in_row_stride
                                + (ox * s->stride_w + kx * s->dilation_w) * s->channels;
            const float *wk = w + (ky * s->kernel_w + kx) * s->channels * s->padded_out + o;
            for (size_t c = 0; c < s->channels; c++) sum += xi[c] * wk[c * s->padded_out];
        }
    return sum;
}

static void conv_maxpool2_portable(const dk_conv_shape *s, const float *x, const float *w, const float *b, float *y, int relu) {
    for (size_t py = 0; py < s->out_h / 2; py++)
        for (size_t px = 0; px < s->out_w / 2; px++)
            for (size_t o = 0; o < s->out_channels; o++) {
                float best = -INFINITY;
                for (size_t dy = 0; dy < 2; dy++)
                    for (size_t dx = 0; dx < 2; dx++) {
                        const float v = conv_at(s, x, w, b, 2 * py + dy, 2 * px + dx, o);
                        best = v > best ? v : best;
                    }
                y[py * s->out_row_stride + px * s->out_channels + o] = relu ? (best > 0.0f ? best : 0.0f) : best;
            }
}

/// The rows and columns of the input that window (oy, ox) covers, clipped to the image.
static inline void pool_window(const dk_pool_shape *s, size_t oy, size_t ox, size_t *i0, size_t *i1, size_t *j0, size_t *j1) {
    const long y0 = (long)(oy * s->stride_h) - (long)s->pad_h, x0 = (long)(ox * s->stride_w) - (long)s->pad_w;
    const long y1 = y0 + (long)s->kernel_h, x1 = x0 + (long)s->kernel_w;
    *i0 = y0 < 0 ? 0 : (size_t)y0;
    *j0 = x0 < 0 ? 0 : (size_t)x0;
    *i1 = y1 > (long)s->in_h ? s->in_h : (size_t)y1;
    *j1 = x1 > (long)s->in_w ? s->in_w : (size_t)x1;
}

static void pool_portable(const dk_pool_shape *s, const float *x, float *y, int average, int relu) {
    const size_t channels = s->channels;
    const float area = (float)(s->kernel_h * s->kernel_w);
    for (size_t oy = 0; oy < s->out_h; oy++) {
        for (size_t ox = 0; ox < s->out_w; ox++) {
            size_t i0, i1, j0, j1;
            pool_window(s, oy, ox, &i0, &i1, &j0, &j1);
            float *yo = y + oy * s->out_row_stride + ox * channels;
            for (size_t c = 0; c < channels; c++) {
                float acc = average ? 0.0f : -INFINITY;
                for (size_t i = i0; i < i1; i++)
                    for (size_t j = j0; j < j1; j++) {
                        const float v = x[i * s->in_row_stride + j * channels + c];
                        acc = average ? acc + v : (v > acc ? v : acc);
                    }
                if (average) acc /= area;
                yo[c] = relu ? (acc > 0.0f ? acc : 0.0f) : acc;
            }
        }
    }
}

// MARK: AVX-512

#if defined(__x86_64__)
#define DK_AVX512 __attribute__((target("avx512f")))
#define DK_TILE_INLINE static inline __attribute__((always_inline))

/// Most output pixels in one register tile. Each pixel's input is read through a pointer of its
/// own, and x86-64 has 16 general registers: with more pixels the compiler spills the pointers
/// and then the accumulators to the stack. Measured (thread CPU time per image): tiles of 12
/// pixels took LeNet-5's second convolution 8.4 µs, tiles of 10 3.7 µs, tiles of 8 3.9 µs.
#define DK_TILE_PIXELS 10

/// `conv_gray_tile` for two convolution rows (2·py, 2·py + 1) and up to 16 columns from x0,
/// max-pooled 2×2 in registers: the vertical max lane by lane, the horizontal one against the
/// vector shifted by one lane; the even lanes then hold the pooled pixels, scattered to NHWC
/// (a quarter of the unfused kernel's scattered values, and no pooling pass).
DK_TILE_INLINE DK_AVX512 void conv_gray_pool_tile(const dk_conv_shape *s, const float *x, const float *w, const float *b,
                                                  float *y, size_t py, size_t x0, size_t o0, const int O, int relu) {
    const size_t pairs = s->out_w / 2 - x0 / 2 < 8 ? s->out_w / 2 - x0 / 2 : 8;
    const __mmask16 columns = (__mmask16)((1u << (2 * pairs)) - 1);
    __m512 top[8], bottom[8];
    for (int o = 0; o < O; o++) top[o] = bottom[o] = _mm512_set1_ps(b ? b[o0 + o] : 0.0f);
    for (size_t ky = 0; ky < s->kernel_h; ky++) {
        const float *upper = x + (2 * py * s->stride_h + ky * s->dilation_h) * s->in_row_stride + x0;
        const float *lower = upper + s->stride_h * s->in_row_stride;
        for (size_t kx = 0; kx < s->kernel_w; kx++) {
            const __m512 a = _mm512_maskz_loadu_ps(columns, upper + kx * s->dilation_w);
            const __m512 c = _mm512_maskz_loadu_ps(columns, lower + kx * s->dilation_w);
            const float *wk = w + (ky * s->kernel_w + kx) * s->padded_out + o0;
            for (int o = 0; o < O; o++) {
                const __m512 wv = _mm512_set1_ps(wk[o]);
                top[o] = _mm512_fmadd_ps(a, wv, top[o]);
                bottom[o] = _mm512_fmadd_ps(c, wv, bottom[o]);
            }
        }
    }
    const __m512i next = _mm512_set_epi32(15, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
    const __m512i lanes = _mm512_mullo_epi32(_mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0),
                                             _mm512_set1_epi32((int)s->out_channels));
    const __mmask16 even = (__mmask16)(0x5555 & columns);
    float *out = y + py * s->out_row_stride + (x0 / 2) * s->out_channels + o0;
    for (int o = 0; o < O; o++) {
        const __m512 v = _mm512_max_ps(top[o], bottom[o]);
        __m512 m = _mm512_max_ps(v, _mm512_permutexvar_ps(next, v));
        if (relu) m = _mm512_max_ps(m, _mm512_setzero_ps());
        _mm512_mask_i32scatter_ps(out + o, even, lanes, m, 4);
    }
}

#define DK_GRAY_POOL_CASE(O) case O: conv_gray_pool_tile(s, x, w, b, y, py, x0, o0, O, relu); break;

DK_AVX512 static void conv_gray_pool_avx512(const dk_conv_shape *s, const float *x, const float *w, const float *b, float *y, int relu) {
    for (size_t py = 0; py < s->out_h / 2; py++)
        for (size_t x0 = 0; x0 + 1 < s->out_w; x0 += 16)
            for (size_t o0 = 0; o0 < s->out_channels; o0 += 8) {
                switch (s->out_channels - o0 < 8 ? (int)(s->out_channels - o0) : 8) {
                    DK_GRAY_POOL_CASE(1) DK_GRAY_POOL_CASE(2) DK_GRAY_POOL_CASE(3) DK_GRAY_POOL_CASE(4)
                    DK_GRAY_POOL_CASE(5) DK_GRAY_POOL_CASE(6) DK_GRAY_POOL_CASE(7) DK_GRAY_POOL_CASE(8)
                }
            }
}

/// What every tile of one convolution shares. The loops run over `taps_h` kernel rows,
/// `taps_w` kernel columns and `run` floats each: when the columns are not dilated, a kernel
/// row's columns and channels lie next to each other in NHWC, and one run of kernel_w × channels
/// floats covers them (the packed weight's rows are in the same order).
typedef struct {
    const float *x, *w, *bias;
    float *y;
    size_t padded, out_channels, out_w, in_row_step, out_row_stride;
    size_t taps_h, taps_w, run;
    size_t tap_row_step, tap_col_step, pixel_step;
    int relu;
} conv_tile_args;

/// The tile arguments of convolution `s` (the same for both instruction sets).
static conv_tile_args tile_args(const dk_conv_shape *s, const float *x, const float *w, const float *b, float *y, int relu) {
    const int undilated = s->dilation_w == 1;
    return (conv_tile_args){
        .x = x, .w = w, .bias = b, .y = y, .padded = s->padded_out, .out_channels = s->out_channels, .out_w = s->out_w,
        .in_row_step = s->stride_h * s->in_row_stride, .out_row_stride = s->out_row_stride,
        .taps_h = s->kernel_h, .taps_w = undilated ? 1 : s->kernel_w,
        .run = undilated ? s->kernel_w * s->channels : s->channels,
        .tap_row_step = s->dilation_h * s->in_row_stride, .tap_col_step = s->dilation_w * s->channels,
        .pixel_step = s->stride_w * s->channels, .relu = relu,
    };
}

/// One tile: `P` output pixels from flat index `first` (row-major over the output, so a tile may
/// wrap from one row to the next) × `V` vectors of output channels from vector `v0`. `P` and `V`
/// are constants at every call site, so the accumulators live in registers and the inner loop
/// unrolls into P × V fused multiply-adds, each with its input value broadcast from memory.
DK_TILE_INLINE DK_AVX512 void conv_tile(const conv_tile_args *a, size_t first, size_t v0, const int P, const int V) {
    const float *xs[DK_TILE_PIXELS];
    float *ys[DK_TILE_PIXELS];
    for (int p = 0; p < P; p++) {
        const size_t oy = (first + p) / a->out_w, ox = (first + p) % a->out_w;
        xs[p] = a->x + oy * a->in_row_step + ox * a->pixel_step;
        ys[p] = a->y + oy * a->out_row_stride + ox * a->out_channels;
    }
    __m512 acc[DK_TILE_PIXELS][4];
    for (int j = 0; j < V; j++) {
        const __m512 b = a->bias ? _mm512_loadu_ps(a->bias + (v0 + j) * 16) : _mm512_setzero_ps();
        for (int p = 0; p < P; p++) acc[p][j] = b;
    }
    const float *w = a->w + v0 * 16;
    for (size_t ky = 0; ky < a->taps_h; ky++) {
        for (size_t kx = 0; kx < a->taps_w; kx++) {
            const size_t tap = ky * a->tap_row_step + kx * a->tap_col_step;
            for (size_t t = 0; t < a->run; t++, w += a->padded) {
                __m512 wv[4];
                for (int j = 0; j < V; j++) wv[j] = _mm512_loadu_ps(w + 16 * j);
                for (int p = 0; p < P; p++) {
                    const __m512 v = _mm512_set1_ps(xs[p][tap + t]);
                    for (int j = 0; j < V; j++) acc[p][j] = _mm512_fmadd_ps(v, wv[j], acc[p][j]);
                }
            }
        }
    }
    for (int p = 0; p < P; p++) {
        for (int j = 0; j < V; j++) {
            __m512 v = acc[p][j];
            if (a->relu) v = _mm512_max_ps(v, _mm512_setzero_ps());  // NaN becomes 0 (the second operand)
            const size_t column = (v0 + j) * 16;
            if (column + 16 <= a->out_channels) _mm512_storeu_ps(ys[p] + column, v);
            else _mm512_mask_storeu_ps(ys[p] + column, (__mmask16)((1u << (a->out_channels - column)) - 1), v);
        }
    }
}

// One function per channel-vector count, each a switch over the tile's pixels, so that every
// (P, V) pair is its own unrolled instance.
#define DK_TILE_CASE(P, V) case P: conv_tile(a, first, v0, P, V); break;
#define DK_TILE_CASES_4(V) DK_TILE_CASE(1, V) DK_TILE_CASE(2, V) DK_TILE_CASE(3, V) DK_TILE_CASE(4, V)
#define DK_TILE_CASES_6(V) DK_TILE_CASES_4(V) DK_TILE_CASE(5, V) DK_TILE_CASE(6, V)
#define DK_TILE_CASES_8(V) DK_TILE_CASES_6(V) DK_TILE_CASE(7, V) DK_TILE_CASE(8, V)
#define DK_TILE_CASES_10(V) DK_TILE_CASES_8(V) DK_TILE_CASE(9, V) DK_TILE_CASE(10, V)

DK_AVX512 static void conv_tiles_1(const conv_tile_args *a, size_t first, size_t v0, int pixels) {
    switch (pixels) { DK_TILE_CASES_10(1) }
}
DK_AVX512 static void conv_tiles_2(const conv_tile_args *a, size_t first, size_t v0, int pixels) {
    switch (pixels) { DK_TILE_CASES_6(2) }
}
DK_AVX512 static void conv_tiles_3(const conv_tile_args *a, size_t first, size_t v0, int pixels) {
    switch (pixels) { DK_TILE_CASES_4(3) }
}
DK_AVX512 static void conv_tiles_4(const conv_tile_args *a, size_t first, size_t v0, int pixels) {
    switch (pixels) { DK_TILE_CASES_4(4) }
}

/// A first layer on a one-channel image (stride 1 along rows): with one input channel the
/// channel-vector tiles above fill only out_channels of 16 lanes (LeNet-5: 6 of 16), so here the
/// lanes hold 16 neighbouring output pixels instead, read as one unaligned load per tap, and
/// each weight is broadcast. `O` output channels × 2 vectors of pixels (up to 32) per tile; the
/// results go to NHWC through a scatter per channel and vector.
DK_TILE_INLINE DK_AVX512 void conv_gray_tile(const dk_conv_shape *s, const float *x, const float *w, const float *b,
                                             float *y, size_t oy, size_t x0, size_t o0, const int O, int relu) {
    const size_t remaining = s->out_w - x0;
    const __mmask16 m0 = remaining >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << remaining) - 1);
    const __mmask16 m1 = remaining >= 32 ? (__mmask16)0xFFFF : remaining <= 16 ? 0 : (__mmask16)((1u << (remaining - 16)) - 1);
    __m512 acc[8][2];
    for (int o = 0; o < O; o++) acc[o][0] = acc[o][1] = _mm512_set1_ps(b ? b[o0 + o] : 0.0f);
    for (size_t ky = 0; ky < s->kernel_h; ky++) {
        const float *row = x + (oy * s->stride_h + ky * s->dilation_h) * s->in_row_stride + x0;
        for (size_t kx = 0; kx < s->kernel_w; kx++) {
            const float *r = row + kx * s->dilation_w;
            const __m512 in0 = _mm512_maskz_loadu_ps(m0, r), in1 = _mm512_maskz_loadu_ps(m1, r + 16);
            const float *wk = w + (ky * s->kernel_w + kx) * s->padded_out + o0;
            for (int o = 0; o < O; o++) {
                const __m512 wv = _mm512_set1_ps(wk[o]);
                acc[o][0] = _mm512_fmadd_ps(in0, wv, acc[o][0]);
                acc[o][1] = _mm512_fmadd_ps(in1, wv, acc[o][1]);
            }
        }
    }
    const __m512i lanes = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                             _mm512_set1_epi32((int)s->out_channels));
    float *out = y + oy * s->out_row_stride + x0 * s->out_channels + o0;
    for (int o = 0; o < O; o++) {
        __m512 v0 = acc[o][0], v1 = acc[o][1];
        if (relu) { v0 = _mm512_max_ps(v0, _mm512_setzero_ps()); v1 = _mm512_max_ps(v1, _mm512_setzero_ps()); }
        _mm512_mask_i32scatter_ps(out + o, m0, lanes, v0, 4);
        if (m1) _mm512_mask_i32scatter_ps(out + 16 * s->out_channels + o, m1, lanes, v1, 4);
    }
}

#define DK_GRAY_CASE(O) case O: conv_gray_tile(s, x, w, b, y, oy, x0, o0, O, relu); break;

DK_AVX512 static void conv_gray_avx512(const dk_conv_shape *s, const float *x, const float *w, const float *b, float *y, int relu) {
    for (size_t oy = 0; oy < s->out_h; oy++)
        for (size_t x0 = 0; x0 < s->out_w; x0 += 32)
            for (size_t o0 = 0; o0 < s->out_channels; o0 += 8) {
                switch (s->out_channels - o0 < 8 ? (int)(s->out_channels - o0) : 8) {
                    DK_GRAY_CASE(1) DK_GRAY_CASE(2) DK_GRAY_CASE(3) DK_GRAY_CASE(4)
                    DK_GRAY_CASE(5) DK_GRAY_CASE(6) DK_GRAY_CASE(7) DK_GRAY_CASE(8)
                }
            }
}

DK_AVX512 static void conv_avx512(const dk_conv_shape *s, const float *x, const float *w, const float *b, float *y, int relu) {
    // One input channel and at most half a vector of outputs: pixels in the lanes. Measured
    // (thread CPU time per image): LeNet-5's first convolution (6 outputs) 3.6 µs against 8.9 µs
    // with channels in the lanes, cnn-tiny's (8 outputs) 2.9 µs against 5.0 µs; with 16 outputs
    // the scatters make it slower (9.7 µs against 8.2 µs).
    if (s->channels == 1 && s->stride_w == 1 && s->out_channels <= 8) { conv_gray_avx512(s, x, w, b, y, relu); return; }
    const conv_tile_args a = tile_args(s, x, w, b, y, relu);
    const size_t vectors = s->padded_out / 16, pixels = s->out_h * s->out_w;
    for (size_t v0 = 0; v0 < vectors; v0 += 4) {
        const int V = vectors - v0 < 4 ? (int)(vectors - v0) : 4;
        const size_t widest = V == 1 ? 10 : V == 2 ? 6 : 4;  // 10-16 accumulators
        for (size_t first = 0; first < pixels; first += widest) {
            const int tile = (int)(pixels - first < widest ? pixels - first : widest);
            switch (V) {
                case 1: conv_tiles_1(&a, first, v0, tile); break;
                case 2: conv_tiles_2(&a, first, v0, tile); break;
                case 3: conv_tiles_3(&a, first, v0, tile); break;
                default: conv_tiles_4(&a, first, v0, tile); break;
            }
        }
    }
}

/// The common pooling, 2×2 windows at stride 2 without padding: no window bookkeeping. The
/// sums run in the same order as the general loop's (and `Tensor.avgPool2d`'s).
DK_AVX512 static void pool_2x2_avx512(const dk_pool_shape *s, const float *x, float *y, int average, int relu) {
    const size_t channels = s->channels;
    const __m512 quarter = _mm512_set1_ps(4.0f);
    for (size_t oy = 0; oy < s->out_h; oy++) {
        const float *r0 = x + 2 * oy * s->in_row_stride, *r1 = r0 + s->in_row_stride;
        float *yo = y + oy * s->out_row_stride;
        for (size_t ox = 0; ox < s->out_w; ox++) {
            const size_t left = 2 * ox * channels, right = left + channels;
            for (size_t c = 0; c < channels; c += 16) {
                const __mmask16 mask = channels - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (channels - c)) - 1);
                const __m512 a = _mm512_maskz_loadu_ps(mask, r0 + left + c), b = _mm512_maskz_loadu_ps(mask, r0 + right + c);
                const __m512 d = _mm512_maskz_loadu_ps(mask, r1 + left + c), e = _mm512_maskz_loadu_ps(mask, r1 + right + c);
                __m512 v = average ? _mm512_div_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), d), e), quarter)
                                   : _mm512_max_ps(_mm512_max_ps(e, d), _mm512_max_ps(b, a));
                if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
                _mm512_mask_storeu_ps(yo + ox * channels + c, mask, v);
            }
        }
    }
}

DK_AVX512 static void pool_avx512(const dk_pool_shape *s, const float *x, float *y, int average, int relu) {
    const size_t channels = s->channels;
    if (s->kernel_h == 2 && s->kernel_w == 2 && s->stride_h == 2 && s->stride_w == 2 && s->pad_h == 0 && s->pad_w == 0) {
        pool_2x2_avx512(s, x, y, average, relu);
        return;
    }
    const __m512 area = _mm512_set1_ps((float)(s->kernel_h * s->kernel_w));
    for (size_t oy = 0; oy < s->out_h; oy++) {
        for (size_t ox = 0; ox < s->out_w; ox++) {
            size_t i0, i1, j0, j1;
            pool_window(s, oy, ox, &i0, &i1, &j0, &j1);
            float *yo = y + oy * s->out_row_stride + ox * channels;
            for (size_t c = 0; c < channels; c += 16) {
                const __mmask16 mask = channels - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (channels - c)) - 1);
                __m512 acc = average ? _mm512_setzero_ps() : _mm512_set1_ps(-INFINITY);
                for (size_t i = i0; i < i1; i++)
                    for (size_t j = j0; j < j1; j++) {
                        const __m512 v = _mm512_maskz_loadu_ps(mask, x + i * s->in_row_stride + j * channels + c);
                        acc = average ? _mm512_add_ps(acc, v) : _mm512_max_ps(v, acc);
                    }
                if (average) acc = _mm512_div_ps(acc, area);
                if (relu) acc = _mm512_max_ps(acc, _mm512_setzero_ps());
                _mm512_mask_storeu_ps(yo + c, mask, acc);
            }
        }
    }
}
#endif

#if defined(__x86_64__)
// MARK: AVX2

/// The AVX-512 tiles at half the width, for CPUs without AVX-512 (AMD before Zen 4, Intel client
/// cores): 8 output channels per vector, and 16 vector registers, so at most 12 accumulators. No
/// pixels-in-lanes kernel for one-channel images: 8-lane vectors already hold LeNet-5's 6 outputs
/// (its 16-lane vectors were 6/16 busy), except where the pooling is fused, below.
#define DK_AVX2 __attribute__((target("avx2,fma")))

/// Whether the pooled grayscale convolution puts output channels in the lanes
/// (`conv_gray_pool_channels_avx2`) rather than columns: when they fill whole vectors. Measured
/// (one thread, per image): cnn-tiny's first layer (8 channels) 2.0 µs against 2.5 µs, LeNet-5's
/// (6 channels, 6/8 lanes busy) 5.2 µs against 4.6 µs.
static int gray_pool_by_channels(const dk_conv_shape *s) { return s->out_channels % 8 == 0; }

/// `conv_tile` with `V` vectors of 8 output channels from vector `v0` (in eights). With `pool`,
/// the tile is P / 4 pooled pixels from flat pooled index `first`, each one's 2×2 window of
/// convolution pixels four of the P, max-pooled in registers before the store (`a->y` and
/// `a->out_row_stride` are then the pooled output's).
DK_TILE_INLINE DK_AVX2 void conv_tile_avx2(const conv_tile_args *a, size_t first, size_t v0, const int P, const int V,
                                           const int pool) {
    const float *xs[8];
    float *ys[8];
    const size_t pooled_w = a->out_w / 2;
    DK_UNROLLED for (int p = 0; p < P; p++) {
        size_t oy, ox;
        if (pool) {
            const size_t q = first + (size_t)(p / 4);
            oy = 2 * (q / pooled_w) + (size_t)((p / 2) % 2);
            ox = 2 * (q % pooled_w) + (size_t)(p % 2);
            if (p % 4 == 0) ys[p / 4] = a->y + (q / pooled_w) * a->out_row_stride + (q % pooled_w) * a->out_channels;
        } else {
            oy = (first + p) / a->out_w;
            ox = (first + p) % a->out_w;
            ys[p] = a->y + oy * a->out_row_stride + ox * a->out_channels;
        }
        xs[p] = a->x + oy * a->in_row_step + ox * a->pixel_step;
    }
    __m256 acc[8][3];
    DK_UNROLLED for (int j = 0; j < V; j++) {
        const __m256 b = a->bias ? _mm256_loadu_ps(a->bias + (v0 + j) * 8) : _mm256_setzero_ps();
        DK_UNROLLED for (int p = 0; p < P; p++) acc[p][j] = b;
    }
    const float *w = a->w + v0 * 8;
    for (size_t ky = 0; ky < a->taps_h; ky++) {
        for (size_t kx = 0; kx < a->taps_w; kx++) {
            const size_t tap = ky * a->tap_row_step + kx * a->tap_col_step;
            for (size_t t = 0; t < a->run; t++, w += a->padded) {
                __m256 wv[3];
                DK_UNROLLED for (int j = 0; j < V; j++) wv[j] = _mm256_loadu_ps(w + 8 * j);
                DK_UNROLLED for (int p = 0; p < P; p++) {
                    const __m256 v = _mm256_broadcast_ss(xs[p] + tap + t);
                    DK_UNROLLED for (int j = 0; j < V; j++) acc[p][j] = _mm256_fmadd_ps(v, wv[j], acc[p][j]);
                }
            }
        }
    }
    DK_UNROLLED for (int p = 0; p < (pool ? P / 4 : P); p++) {
        DK_UNROLLED for (int j = 0; j < V; j++) {
            __m256 v = pool ? _mm256_max_ps(_mm256_max_ps(acc[4 * p][j], acc[4 * p + 1][j]),
                                            _mm256_max_ps(acc[4 * p + 2][j], acc[4 * p + 3][j]))
                            : acc[p][j];
            if (a->relu) v = _mm256_max_ps(v, _mm256_setzero_ps());  // NaN becomes 0 (the second operand)
            const size_t column = (v0 + j) * 8;
            if (column + 8 <= a->out_channels) _mm256_storeu_ps(ys[p] + column, v);
            else _mm256_maskstore_ps(ys[p] + column, dk_lanes8((long)(a->out_channels - column)), v);
        }
    }
}

#define DK_TILE_AVX2_CASE(P, V) case P: conv_tile_avx2(a, first, v0, P, V, 0); break;

DK_AVX2 static void conv_tiles_avx2_1(const conv_tile_args *a, size_t first, size_t v0, int pixels) {
    switch (pixels) {
        DK_TILE_AVX2_CASE(1, 1) DK_TILE_AVX2_CASE(2, 1) DK_TILE_AVX2_CASE(3, 1) DK_TILE_AVX2_CASE(4, 1)
        DK_TILE_AVX2_CASE(5, 1) DK_TILE_AVX2_CASE(6, 1) DK_TILE_AVX2_CASE(7, 1) DK_TILE_AVX2_CASE(8, 1)
    }
}
DK_AVX2 static void conv_tiles_avx2_2(const conv_tile_args *a, size_t first, size_t v0, int pixels) {
    switch (pixels) {
        DK_TILE_AVX2_CASE(1, 2) DK_TILE_AVX2_CASE(2, 2) DK_TILE_AVX2_CASE(3, 2) DK_TILE_AVX2_CASE(4, 2)
        DK_TILE_AVX2_CASE(5, 2) DK_TILE_AVX2_CASE(6, 2)
    }
}
DK_AVX2 static void conv_tiles_avx2_3(const conv_tile_args *a, size_t first, size_t v0, int pixels) {
    switch (pixels) { DK_TILE_AVX2_CASE(1, 3) DK_TILE_AVX2_CASE(2, 3) DK_TILE_AVX2_CASE(3, 3) DK_TILE_AVX2_CASE(4, 3) }
}

DK_AVX2 static void conv_avx2(const dk_conv_shape *s, const float *x, const float *w, const float *b, float *y, int relu) {
    const conv_tile_args a = tile_args(s, x, w, b, y, relu);
    const size_t vectors = s->padded_out / 8, pixels = s->out_h * s->out_w;
    for (size_t v0 = 0; v0 < vectors; v0 += 3) {
        const int V = vectors - v0 < 3 ? (int)(vectors - v0) : 3;
        const size_t widest = V == 1 ? 8 : V == 2 ? 6 : 4;  // 8-12 accumulators
        for (size_t first = 0; first < pixels; first += widest) {
            const int tile = (int)(pixels - first < widest ? pixels - first : widest);
            switch (V) {
                case 1: conv_tiles_avx2_1(&a, first, v0, tile); break;
                case 2: conv_tiles_avx2_2(&a, first, v0, tile); break;
                default: conv_tiles_avx2_3(&a, first, v0, tile); break;
            }
        }
    }
}

/// A convolution of several input channels and its 2×2 max-pooling in one pass (`conv_tile_avx2`
/// with `pool`): tiles of one pooled pixel (four convolution pixels) × up to 3 vectors of 8
/// output channels, or two pooled pixels × one vector. The convolution's output is never stored,
/// and no pooling pass reads it back: cnn-tiny's second layer and its pooling took 60% and 7% of
/// the batch-256 profile apart.
DK_AVX2 static void conv_pool_avx2(const dk_conv_shape *s, const float *x, const float *w, const float *b, float *y, int relu) {
    const conv_tile_args a = tile_args(s, x, w, b, y, relu);
    const size_t vectors = (s->out_channels + 7) / 8, pooled = (s->out_h / 2) * (s->out_w / 2);
    for (size_t v0 = 0; v0 < vectors; v0 += 3) {
        const int V = vectors - v0 < 3 ? (int)(vectors - v0) : 3;
        for (size_t first = 0; first < pooled; first += V == 1 ? 2 : 1) {
            if (V == 1 && pooled - first >= 2) conv_tile_avx2(&a, first, v0, 8, 1, 1);
            else if (V == 1) conv_tile_avx2(&a, first, v0, 4, 1, 1);
            else if (V == 2) conv_tile_avx2(&a, first, v0, 4, 2, 1);
            else conv_tile_avx2(&a, first, v0, 4, 3, 1);
        }
    }
}

/// `conv_gray_pool_tile` at 8 lanes: two convolution rows × up to 8 columns from x0 for `O` ≤ 4
/// output channels, pooled 2×2 in registers; the even lanes hold the up to 4 pooled pixels.
DK_TILE_INLINE DK_AVX2 void conv_gray_pool_tile_avx2(const dk_conv_shape *s, const float *x, const float *w, const float *b,
                                                      float *y, size_t py, size_t x0, size_t o0, const int O, int relu) {
    const size_t pairs = s->out_w / 2 - x0 / 2 < 4 ? s->out_w / 2 - x0 / 2 : 4;
    const __m256i columns = dk_lanes8((long)(2 * pairs));
    __m256 top[4], bottom[4];
    DK_UNROLLED for (int o = 0; o < O; o++) top[o] = bottom[o] = _mm256_set1_ps(b ? b[o0 + o] : 0.0f);
    for (size_t ky = 0; ky < s->kernel_h; ky++) {
        const float *upper = x + (2 * py * s->stride_h + ky * s->dilation_h) * s->in_row_stride + x0;
        const float *lower = upper + s->stride_h * s->in_row_stride;
        for (size_t kx = 0; kx < s->kernel_w; kx++) {
            const __m256 a = _mm256_maskload_ps(upper + kx * s->dilation_w, columns);
            const __m256 c = _mm256_maskload_ps(lower + kx * s->dilation_w, columns);
            const float *wk = w + (ky * s->kernel_w + kx) * s->padded_out + o0;
            DK_UNROLLED for (int o = 0; o < O; o++) {
                const __m256 wv = _mm256_broadcast_ss(wk + o);
                top[o] = _mm256_fmadd_ps(a, wv, top[o]);
                bottom[o] = _mm256_fmadd_ps(c, wv, bottom[o]);
            }
        }
    }
    const __m256i next = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7), evens = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    float *out = y + py * s->out_row_stride + (x0 / 2) * s->out_channels + o0;
    DK_UNROLLED for (int o = 0; o < O; o++) {
        const __m256 v = _mm256_max_ps(top[o], bottom[o]);
        __m256 m = _mm256_max_ps(v, _mm256_permutevar8x32_ps(v, next));
        if (relu) m = _mm256_max_ps(m, _mm256_setzero_ps());
        float pooled[8];
        _mm256_storeu_ps(pooled, _mm256_permutevar8x32_ps(m, evens));
        for (size_t k = 0; k < pairs; k++) out[k * s->out_channels + o] = pooled[k];
    }
}

#define DK_GRAY_POOL_AVX2_CASE(O) case O: conv_gray_pool_tile_avx2(s, x, w, b, y, py, x0, o0, O, relu); break;

/// The other way round from `conv_gray_pool_tile_avx2`, when the output channels fill whole vectors
/// (`gray_pool_by_channels`): the lanes
/// are 8 output channels from o0, and each of `P` ≤ 3 pooled pixels from px0 keeps its 2×2
/// window's four sums in registers (12 accumulators), fed by broadcast input values. The pooled
/// vector is already a pixel's NHWC channels, so it is stored as is: the column-lane kernel's
/// shuffles and scalar stores were a third of its time on cnn-tiny's first layer. Each sum is the
/// same chain, bias then taps in (ky, kx) order, so both kernels give the same bits.
DK_TILE_INLINE DK_AVX2 void conv_gray_pool_channels_tile_avx2(const dk_conv_shape *s, const float *x, const float *w,
                                                               const float *b, float *y, size_t py, size_t px0, size_t o0,
                                                               const int P, int relu) {
    __m256 acc[3][4];
    const __m256 bias = b ? _mm256_loadu_ps(b + o0) : _mm256_setzero_ps();
    DK_UNROLLED for (int p = 0; p < P; p++) acc[p][0] = acc[p][1] = acc[p][2] = acc[p][3] = bias;
    for (size_t ky = 0; ky < s->kernel_h; ky++) {
        const float *upper = x + (2 * py * s->stride_h + ky * s->dilation_h) * s->in_row_stride + 2 * px0;
        const float *lower = upper + s->stride_h * s->in_row_stride;
        for (size_t kx = 0; kx < s->kernel_w; kx++) {
            const __m256 wv = _mm256_loadu_ps(w + (ky * s->kernel_w + kx) * s->padded_out + o0);
            const size_t c = kx * s->dilation_w;
            DK_UNROLLED for (int p = 0; p < P; p++) {
                acc[p][0] = _mm256_fmadd_ps(_mm256_broadcast_ss(upper + 2 * p + c), wv, acc[p][0]);
                acc[p][1] = _mm256_fmadd_ps(_mm256_broadcast_ss(upper + 2 * p + 1 + c), wv, acc[p][1]);
                acc[p][2] = _mm256_fmadd_ps(_mm256_broadcast_ss(lower + 2 * p + c), wv, acc[p][2]);
                acc[p][3] = _mm256_fmadd_ps(_mm256_broadcast_ss(lower + 2 * p + 1 + c), wv, acc[p][3]);
            }
        }
    }
    const __m256i lanes = dk_lanes8((long)(s->out_channels - o0));
    float *out = y + py * s->out_row_stride + px0 * s->out_channels + o0;
    DK_UNROLLED for (int p = 0; p < P; p++) {
        __m256 m = _mm256_max_ps(_mm256_max_ps(acc[p][0], acc[p][2]), _mm256_max_ps(acc[p][1], acc[p][3]));
        if (relu) m = _mm256_max_ps(m, _mm256_setzero_ps());
        if (o0 + 8 <= s->out_channels) _mm256_storeu_ps(out + p * s->out_channels, m);
        else _mm256_maskstore_ps(out + p * s->out_channels, lanes, m);
    }
}

DK_AVX2 static void conv_gray_pool_channels_avx2(const dk_conv_shape *s, const float *x, const float *w, const float *b,
                                                 float *y, int relu) {
    const size_t pooled_w = s->out_w / 2;
    for (size_t py = 0; py < s->out_h / 2; py++)
        for (size_t px0 = 0; px0 < pooled_w; px0 += 3)
            for (size_t o0 = 0; o0 < s->out_channels; o0 += 8) {
                switch (pooled_w - px0 < 3 ? (int)(pooled_w - px0) : 3) {
                    case 1: conv_gray_pool_channels_tile_avx2(s, x, w, b, y, py, px0, o0, 1, relu); break;
                    case 2: conv_gray_pool_channels_tile_avx2(s, x, w, b, y, py, px0, o0, 2, relu); break;
                    default: conv_gray_pool_channels_tile_avx2(s, x, w, b, y, py, px0, o0, 3, relu); break;
                }
            }
}

DK_AVX2 static void conv_gray_pool_avx2(const dk_conv_shape *s, const float *x, const float *w, const float *b, float *y, int relu) {
    if (gray_pool_by_channels(s)) { conv_gray_pool_channels_avx2(s, x, w, b, y, relu); return; }
    for (size_t py = 0; py < s->out_h / 2; py++)
        for (size_t x0 = 0; x0 + 1 < s->out_w; x0 += 8)
            for (size_t o0 = 0; o0 < s->out_channels; o0 += 4) {
                switch (s->out_channels - o0 < 4 ? (int)(s->out_channels - o0) : 4) {
                    DK_GRAY_POOL_AVX2_CASE(1) DK_GRAY_POOL_AVX2_CASE(2) DK_GRAY_POOL_AVX2_CASE(3) DK_GRAY_POOL_AVX2_CASE(4)
                }
            }
}

/// `pool_2x2_avx512` at 8 lanes.
DK_AVX2 static void pool_2x2_avx2(const dk_pool_shape *s, const float *x, float *y, int average, int relu) {
    const size_t channels = s->channels;
    const __m256 quarter = _mm256_set1_ps(4.0f);
    for (size_t oy = 0; oy < s->out_h; oy++) {
        const float *r0 = x + 2 * oy * s->in_row_stride, *r1 = r0 + s->in_row_stride;
        float *yo = y + oy * s->out_row_stride;
        for (size_t ox = 0; ox < s->out_w; ox++) {
            const size_t left = 2 * ox * channels, right = left + channels;
            for (size_t c = 0; c < channels; c += 8) {
                const __m256i mask = dk_lanes8((long)(channels - c));
                const __m256 a = _mm256_maskload_ps(r0 + left + c, mask), b = _mm256_maskload_ps(r0 + right + c, mask);
                const __m256 d = _mm256_maskload_ps(r1 + left + c, mask), e = _mm256_maskload_ps(r1 + right + c, mask);
                __m256 v = average ? _mm256_div_ps(_mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a, b), d), e), quarter)
                                   : _mm256_max_ps(_mm256_max_ps(e, d), _mm256_max_ps(b, a));
                if (relu) v = _mm256_max_ps(v, _mm256_setzero_ps());
                _mm256_maskstore_ps(yo + ox * channels + c, mask, v);
            }
        }
    }
}

/// `pool_avx512` at 8 lanes.
DK_AVX2 static void pool_avx2(const dk_pool_shape *s, const float *x, float *y, int average, int relu) {
    const size_t channels = s->channels;
    if (s->kernel_h == 2 && s->kernel_w == 2 && s->stride_h == 2 && s->stride_w == 2 && s->pad_h == 0 && s->pad_w == 0) {
        pool_2x2_avx2(s, x, y, average, relu);
        return;
    }
    const __m256 area = _mm256_set1_ps((float)(s->kernel_h * s->kernel_w));
    for (size_t oy = 0; oy < s->out_h; oy++) {
        for (size_t ox = 0; ox < s->out_w; ox++) {
            size_t i0, i1, j0, j1;
            pool_window(s, oy, ox, &i0, &i1, &j0, &j1);
            float *yo = y + oy * s->out_row_stride + ox * channels;
            for (size_t c = 0; c < channels; c += 8) {
                const __m256i mask = dk_lanes8((long)(channels - c));
                __m256 acc = average ? _mm256_setzero_ps() : _mm256_set1_ps(-INFINITY);
                for (size_t i = i0; i < i1; i++)
                    for (size_t j = j0; j < j1; j++) {
                        const __m256 v = _mm256_maskload_ps(x + i * s->in_row_stride + j * channels + c, mask);
                        acc = average ? _mm256_add_ps(acc, v) : _mm256_max_ps(v, acc);
                    }
                if (average) acc = _mm256_div_ps(acc, area);
                if (relu) acc = _mm256_max_ps(acc, _mm256_setzero_ps());
                _mm256_maskstore_ps(yo + c, mask, acc);
            }
        }
    }
}
#endif

// MARK: Dispatch

/// The level every call without one runs: 2 (AVX-512), 1 (AVX2 + FMA) or 0, chosen once.
static int best_level(void) {
    static int level = -1;  // every thread computes the same value
    int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (l < 0) { l = dk_choose_level(-1); __atomic_store_n(&level, l, __ATOMIC_RELAXED); }
    return l;
}

void dk_conv2d_nhwc(const dk_conv_shape *shape, const float *x, const float *w_packed,
                    const float *bias_padded, float *y, int relu) {
    if (dk_conv2d_nhwc_level(best_level(), shape, x, w_packed, bias_padded, y, relu) != 0)
        conv_portable(shape, x, w_packed, bias_padded, y, relu);  // weights not padded to whole vectors
}

int dk_conv2d_nhwc_level(int level, const dk_conv_shape *shape, const float *x, const float *w_packed,
                         const float *bias_padded, float *y, int relu) {
    const int l = dk_choose_level(level);
    if (l == 0) { conv_portable(shape, x, w_packed, bias_padded, y, relu); return 0; }
#if defined(__x86_64__)
    if (l > 0 && shape->padded_out % 16 == 0 && shape->padded_out >= shape->out_channels) {
        if (l == 2) conv_avx512(shape, x, w_packed, bias_padded, y, relu);
        else conv_avx2(shape, x, w_packed, bias_padded, y, relu);
        return 0;
    }
#endif
    return -1;
}

void dk_conv2d_maxpool2_nhwc(const dk_conv_shape *shape, const float *x, const float *w_packed,
                             const float *bias_padded, float *y, int relu) {
    if (dk_conv2d_maxpool2_nhwc_level(best_level(), shape, x, w_packed, bias_padded, y, relu) != 0)
        conv_maxpool2_portable(shape, x, w_packed, bias_padded, y, relu);
}

int dk_conv2d_maxpool2_nhwc_level(int level, const dk_conv_shape *shape, const float *x, const float *w_packed,
                                  const float *bias_padded, float *y, int relu) {
    const int l = dk_choose_level(level);
    if (l == 0) { conv_maxpool2_portable(shape, x, w_packed, bias_padded, y, relu); return 0; }
#if defined(__x86_64__)
    if (l > 0 && shape->channels == 1 && shape->stride_w == 1) {
        if (l == 2) conv_gray_pool_avx512(shape, x, w_packed, bias_padded, y, relu);
        else conv_gray_pool_avx2(shape, x, w_packed, bias_padded, y, relu);
        return 0;
    }
    if (l == 1 && shape->channels > 1 && shape->padded_out % 16 == 0 && shape->padded_out >= shape->out_channels) {
        conv_pool_avx2(shape, x, w_packed, bias_padded, y, relu);
        return 0;
    }
#endif
    return -1;
}

int dk_conv2d_maxpool2_nhwc_is_fused(const dk_conv_shape *shape) {
    const int l = best_level();
    return l > 0 && (shape->channels == 1 ? shape->stride_w == 1 : l == 1);
}

void dk_pool2d_nhwc(const dk_pool_shape *shape, const float *x, float *y, int average, int relu) {
    dk_pool2d_nhwc_level(best_level(), shape, x, y, average, relu);
}

int dk_pool2d_nhwc_level(int level, const dk_pool_shape *shape, const float *x, float *y, int average, int relu) {
    const int l = dk_choose_level(level);
    if (l == 0) { pool_portable(shape, x, y, average, relu); return 0; }
#if defined(__x86_64__)
    if (l == 2) { pool_avx512(shape, x, y, average, relu); return 0; }
    if (l == 1) { pool_avx2(shape, x, y, average, relu); return 0; }
#endif
    return -1;
}
