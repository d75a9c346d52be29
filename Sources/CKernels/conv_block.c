// MobileNet v2's inverted residual block (1×1 expansion, depthwise, 1×1 projection) fused, one
// image at a time, band of output rows by band. See dk_conv_block.h for the contract.
//
// Per band: the expansion's new rows are computed straight into `padded`, the band's input rows
// pixel-major ([row][column][channel]), with zero rows and columns where the window reaches past
// the image (without an expansion, the input's rows are transposed there 8 channels × 8 pixels
// at a time). The depthwise convolution then runs with each vector holding 8 channels of one
// pixel, so that it uses every lane whatever the image's width (MobileNet's late layers are 14
// and 7 pixels wide; one plane at a time, as `dk_depthwise_conv2d` runs, their rows fill one
// masked vector) and needs no copy of each plane into a padded buffer. Its 8 × 8 results are
// transposed back in registers and stored channel-major into `convolved`, which the projection
// (the same AVX2 1×1 kernel) reads.
#include "dk_conv_block.h"
#include "conv_private.h"
#include "vector_common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef DK_BLOCK_BAND_BYTES
/// Bytes of the padded band of expanded rows: chosen by measurement (see dk_conv_block.h).
#define DK_BLOCK_BAND_BYTES (256 * 1024)
#endif

#ifndef DK_BLOCK_BAND_PIXELS
#define DK_BLOCK_BAND_PIXELS 96
#endif

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }
static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

#if defined(__x86_64__)
/// Transposes the 8 × 8 floats of r[0..8) (row i in r[i]) in place.
__attribute__((target("avx2"), always_inline)) static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/// Row `row` (of `width` pixels) of the channel-major src (channels `channel_stride` floats
/// apart, `e` of them, a multiple of 8) into dst [column][channel] (one padded row, starting at
/// its first image column).
__attribute__((target("avx2"))) static void to_pixel_major(const float *src, size_t channel_stride, size_t e, size_t width,
                                                           float *dst) {
    for (size_t c = 0; c < e; c += 8) {
        const float *s = src + c * channel_stride;
        size_t x = 0;
        for (; x + 8 <= width; x += 8) {
            __m256 r[8];
            DK_UNROLLED for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(s + i * channel_stride + x);
            transpose8(r);
            DK_UNROLLED for (int i = 0; i < 8; i++) _mm256_storeu_ps(dst + (x + i) * e + c, r[i]);
        }
        for (; x < width; x++) {
            for (int i = 0; i < 8; i++) dst[x * e + c + i] = s[i * channel_stride + x];
        }
    }
}

/// Most pixels `expand_pixel_major` packs per column block.
#define DK_EXPAND_MAX_BLOCK 1024

/// Pixels of x packed per column block by `expand_pixel_major`: about 64 KiB of x at a time.
static size_t expand_block_pixels(size_t channels) {
    size_t width = (size_t)(1 << 14) / (channels ? channels : 1) / 8 * 8;
    return width < 8 ? 8 : width > DK_EXPAND_MAX_BLOCK ? DK_EXPAND_MAX_BLOCK : width;
}

/// The expansion e = act(W_e · x + b_e) of n consecutive pixels of x (channel-major, channels
/// `x_stride` apart), stored pixel-major: pixel p (image row p / w, column p % w of the band)
/// at dst + (p / w)·row_floats + (p % w)·e, columns from `copied` on not stored. Tiles of 8
/// pixels × 8 output channels; the sums in the order of the channel-major 1×1 kernel (from the
/// bias, input channels ascending), so the values are the same to the bit. `wt`: W_e regrouped
/// as [e / 8][channels][8]; `xs`: scratch of channels × expand_block_pixels(channels) floats.
__attribute__((target("avx2,fma"))) static void expand_pixel_major(size_t e, size_t channels, const float *wt,
                                                                   const float *bias, const float *x, size_t x_stride,
                                                                   size_t n, size_t w, size_t copied, float *dst,
                                                                   size_t row_floats, int activation, float lo, float hi,
                                                                   float *xs) {
    const __m256 zero = _mm256_setzero_ps(), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    const size_t width = expand_block_pixels(channels);
    for (size_t block = 0; block < n; block += width) {
        const size_t block_end = min_size(n, block + width), strips = (block_end - block + 7) / 8;
        // Where each pixel of the block is stored (SIZE_MAX: not stored), found once per block.
        size_t offsets[DK_EXPAND_MAX_BLOCK];
        for (size_t p = block, row = block / w, column = block % w; p < block_end; p++) {
            offsets[p - block] = column < copied ? row * row_floats + column * e : SIZE_MAX;
            if (++column == w) { column = 0; row++; }
        }
        // x[k, block + 8s + i] → xs[s][k][i], zeros past the last pixel.
        for (size_t k = 0; k < channels; k++) {
            const float *row = x + k * x_stride;
            for (size_t strip = 0; strip < strips; strip++) {
                const size_t start = block + 8 * strip, valid = min_size(8, block_end - start);
                float *to = xs + (strip * channels + k) * 8;
                if (valid == 8) _mm256_storeu_ps(to, _mm256_loadu_ps(row + start));
                else { for (size_t i = 0; i < 8; i++) to[i] = i < valid ? row[start + i] : 0.0f; }
            }
        }
        for (size_t o = 0; o < e; o += 8) {
            const float *wo = wt + o * channels;
            const __m256 b = bias ? _mm256_loadu_ps(bias + o) : zero;
            for (size_t strip = 0; strip < strips; strip++) {
                const float *xk = xs + strip * channels * 8;
                __m256 acc[8];
                DK_UNROLLED for (int i = 0; i < 8; i++) acc[i] = b;
                for (size_t k = 0; k < channels; k++) {
                    const __m256 wv = _mm256_loadu_ps(wo + k * 8);
                    DK_UNROLLED for (int i = 0; i < 8; i++) acc[i] = _mm256_fmadd_ps(wv, _mm256_broadcast_ss(xk + k * 8 + i), acc[i]);
                }
                const size_t first = 8 * strip, valid = min_size(8, block_end - block - first);
                DK_UNROLLED for (size_t i = 0; i < 8; i++) {
                    if (i >= valid || offsets[first + i] == SIZE_MAX) continue;
                    __m256 a = acc[i];
                    // Relu: NaN becomes 0; Clip: NaN stays NaN (as the channel-major kernel gives).
                    if (activation == DK_ACTIVATION_RELU) a = _mm256_max_ps(a, zero);
                    else if (activation == DK_ACTIVATION_CLIP) a = _mm256_min_ps(vhi, _mm256_max_ps(vlo, a));
                    _mm256_storeu_ps(dst + offsets[first + i] + o, a);
                }
            }
        }
    }
    if (activation != DK_ACTIVATION_NONE && activation != DK_ACTIVATION_RELU && activation != DK_ACTIVATION_CLIP) {
        for (size_t r = 0; r < (n + w - 1) / w; r++) dk_activation_inplace(dst + r * row_floats, copied * e, activation, lo, hi);
    }
}

/// One band's depthwise convolution from `padded` (pixel-major, `columns` floats·e per row;
/// padded row j is the band's input row j, column q image column q − pad_left) into `out`
/// (channel-major: out_rows · out_w floats of each channel, channels `plane` floats apart): 8
/// output pixels × 8 channels per tile, the taps summed in the order `dk_depthwise_conv2d` sums
/// them (from the bias, kernel row by row). `weights`: [e / 8][taps][8], the filters regrouped 8
/// channels to a vector.
__attribute__((target("avx2,fma"))) static void depthwise_pixel_major(const dk_window_shape *s, size_t out_rows,
                                                                      const float *padded, size_t columns,
                                                                      const float *weights, const float *bias,
                                                                      int activation, float lo, float hi, float *out,
                                                                      size_t plane) {
    const size_t e = s->channels, taps = s->kernel_h * s->kernel_w;
    const __m256 zero = _mm256_setzero_ps(), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    for (size_t c = 0; c < e; c += 8) {
        const float *wc = weights + c * taps;
        const __m256 b = bias ? _mm256_loadu_ps(bias + c) : zero;
        for (size_t oy = 0; oy < out_rows; oy++) {
            const float *row = padded + (oy * s->stride_h * columns) * e + c;
            for (size_t ox = 0; ox < s->out_w; ox += 8) {
                __m256 acc[8];
                DK_UNROLLED for (int i = 0; i < 8; i++) acc[i] = b;
                const float *base = row + ox * s->stride_w * e;
                for (size_t ky = 0; ky < s->kernel_h; ky++) {
                    const float *tap_row = base + ky * s->dilation_h * columns * e;
                    for (size_t kx = 0; kx < s->kernel_w; kx++) {
                        const __m256 wv = _mm256_loadu_ps(wc + (ky * s->kernel_w + kx) * 8);
                        const float *src = tap_row + kx * s->dilation_w * e;
                        DK_UNROLLED for (int i = 0; i < 8; i++)
                            acc[i] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(src + i * s->stride_w * e), acc[i]);
                    }
                }
                // Relu: vmaxps returns its second operand when either is NaN, so NaN becomes 0.
                // Clip: lo and hi first, so NaN stays NaN (as dk_activation_inplace gives).
                DK_UNROLLED for (int i = 0; i < 8; i++) {
                    if (activation == DK_ACTIVATION_RELU) acc[i] = _mm256_max_ps(acc[i], zero);
                    else if (activation == DK_ACTIVATION_CLIP) acc[i] = _mm256_min_ps(vhi, _mm256_max_ps(vlo, acc[i]));
                }
                transpose8(acc);
                float *dst = out + c * plane + oy * s->out_w + ox;
                const size_t valid = min_size(8, s->out_w - ox);
                if (valid == 8) {
                    DK_UNROLLED for (int i = 0; i < 8; i++) _mm256_storeu_ps(dst + i * plane, acc[i]);
                } else {
                    float tile[8][8];
                    DK_UNROLLED for (int i = 0; i < 8; i++) _mm256_storeu_ps(tile[i], acc[i]);
                    for (int i = 0; i < 8; i++) memcpy(dst + i * plane, tile[i], valid * sizeof(float));
                }
            }
        }
    }
    if (activation != DK_ACTIVATION_NONE && activation != DK_ACTIVATION_RELU && activation != DK_ACTIVATION_CLIP) {
        for (size_t c = 0; c < e; c++) dk_activation_inplace(out + c * plane, out_rows * s->out_w, activation, lo, hi);
    }
}
#endif

int dk_inverted_residual(const dk_window_shape *s, size_t channels, size_t outputs, const float *x, dk_conv_stage expand,
                         dk_conv_stage depthwise, dk_conv_stage project, const float *residual, float *y, size_t first_row,
                         size_t end_row) {
#if defined(__x86_64__)
    const size_t e = s->channels, h = s->height, w = s->width;
    if (!dk_cpu_has_avx2_fma() || e % 8 != 0 || (!expand.weight && channels != e)) return -1;
    if (first_row >= end_row) return 0;
    const size_t taps = s->kernel_h * s->kernel_w, out_plane = s->out_h * s->out_w, sh = s->stride_h;
    // Padded rows one output row reads; padded columns of a row (with slack for the last tile
    // of 8 outputs, whose extra lanes read past the row and are not stored).
    const size_t reach = (s->kernel_h - 1) * s->dilation_h + 1;
    const size_t columns = (s->out_w + 7) / 8 * 8 * s->stride_w + (s->kernel_w - 1) * s->dilation_w;
    const size_t row_floats = columns * e;
    if (row_floats > ((size_t)1 << 24) / reach) return -1;  // one band over 64 MiB: a hostile window
    const size_t budget_rows = DK_BLOCK_BAND_BYTES / sizeof(float) / row_floats;
    size_t band = budget_rows > reach ? (budget_rows - reach) / sh + 1 : 1;
    // At least DK_BLOCK_BAND_PIXELS output pixels a band, whatever the budget: the 1×1 kernels'
    // tiles are 16 pixels wide, and each band streams the projection's weights once.
    band = max_size(band, (DK_BLOCK_BAND_PIXELS + s->out_w - 1) / s->out_w);
    band = min_size(band, end_row - first_row);
    const size_t span = (band - 1) * sh + reach;  // padded rows of a whole band
    if (span > ((size_t)1 << 24) / row_floats) return -1;  // a band over 64 MiB: a hostile stride

    const size_t padded_floats = span * row_floats, packed_floats = expand.weight ? channels * expand_block_pixels(channels) : 0;
    const size_t convolved_floats = project.weight ? e * band * s->out_w : 0, weight_floats = e * taps;
    const size_t expand_floats = expand.weight ? e * channels : 0;
    const size_t total = padded_floats + packed_floats + convolved_floats + weight_floats + expand_floats;
    float *memory = aligned_alloc(64, (total * sizeof(float) + 63) / 64 * 64);
    if (!memory) return -1;
    float *padded = memory, *packed = padded + padded_floats, *convolved = packed + packed_floats;
    float *weights = convolved + convolved_floats, *expand_weights = weights + weight_floats;
    for (size_t c = 0; c < e; c++) {
        for (size_t t = 0; t < taps; t++) weights[(c / 8 * taps + t) * 8 + c % 8] = depthwise.weight[c * taps + t];
    }
    for (size_t o = 0; o < expand_floats / (channels ? channels : 1); o++) {
        for (size_t k = 0; k < channels; k++) expand_weights[(o / 8 * channels + k) * 8 + o % 8] = expand.weight[o * channels + k];
    }
    // Columns left of the image and right of it are zero in every row (set once: rows move as
    // wholes and image rows are written over the image columns only).
    const size_t left = min_size(s->pad_left, columns), image_end = min_size(columns, s->pad_left + w);
    for (size_t j = 0; j < span; j++) {
        float *row = padded + j * row_floats;
        memset(row, 0, left * e * sizeof(float));
        memset(row + image_end * e, 0, (columns - image_end) * e * sizeof(float));
    }
    const size_t copied = image_end > left ? image_end - left : 0;  // image columns in a padded row

    int status = 0;
    long previous_base = 0;
    size_t previous_span = 0;
    for (size_t r0 = first_row; r0 < end_row && status == 0; r0 += band) {
        const size_t r1 = min_size(end_row, r0 + band), rows = (r1 - r0 - 1) * sh + reach;
        // Padded row j holds input row base + j (zero outside the image).
        const long base = (long)(r0 * sh) - (long)s->pad_top;
        const size_t shift = (size_t)(base - previous_base), kept = previous_span > shift ? previous_span - shift : 0;
        if (kept > 0) memmove(padded, padded + shift * row_floats, kept * row_floats * sizeof(float));
        const size_t first_image = base < 0 ? (size_t)(-base) : 0;
        const size_t compute_lo = max_size(kept, first_image);
        const size_t compute_hi = (long)h > base ? max_size(compute_lo, min_size(rows, (size_t)((long)h - base))) : compute_lo;
        for (size_t j = kept; j < rows; j++) {
            if (j < compute_lo || j >= compute_hi) memset(padded + j * row_floats + left * e, 0, copied * e * sizeof(float));
        }
        if (compute_hi > compute_lo && copied > 0) {
            const size_t first_row_in = (size_t)(base + (long)compute_lo), n = compute_hi - compute_lo;
            const float *src = x + first_row_in * w;
            float *dst = padded + compute_lo * row_floats + left * e;
            // Image columns past `copied` fall outside the window and are not stored.
            if (expand.weight) {
                expand_pixel_major(e, channels, expand_weights, expand.bias, src, h * w, n * w, w, copied, dst, row_floats,
                                   expand.activation, expand.lo, expand.hi, packed);
            } else {
                for (size_t j = 0; j < n; j++) to_pixel_major(src + j * w, h * w, e, copied, dst + j * row_floats);
            }
        }
        previous_base = base; previous_span = rows;
        if (!project.weight) {  // the band's rows straight into y
            depthwise_pixel_major(s, r1 - r0, padded, columns, weights, depthwise.bias, depthwise.activation, depthwise.lo,
                                  depthwise.hi, y + r0 * s->out_w, out_plane);
            continue;
        }
        const size_t n = (r1 - r0) * s->out_w;
        depthwise_pixel_major(s, r1 - r0, padded, columns, weights, depthwise.bias, depthwise.activation, depthwise.lo,
                              depthwise.hi, convolved, n);
        status = dk_pointwise_avx2_strided(outputs, e, n, n, out_plane, project.weight, convolved, project.bias,
                                           residual ? residual + r0 * s->out_w : NULL, y + r0 * s->out_w,
                                           project.activation, project.lo, project.hi);
    }
    free(memory);
    return status;
#else
    (void)s; (void)channels; (void)outputs; (void)x; (void)expand; (void)depthwise; (void)project; (void)residual;
    (void)y; (void)first_row; (void)end_row;
    return -1;
#endif
}
