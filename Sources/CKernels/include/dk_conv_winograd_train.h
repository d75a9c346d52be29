#ifndef DK_CONV_WINOGRAD_TRAIN_H
#define DK_CONV_WINOGRAD_TRAIN_H
#include <stddef.h>

// The transforms of a 3×3 convolution at stride 1 with padding 1 (one group, NCHW arrays) by
// Winograd's minimal filtering F(2×2, 3×3) (Lavin and Gray, "Fast Algorithms for Convolutional
// Neural Networks", CVPR 2016; the matrices Bᵀ, G, Aᵀ are in dk_conv_winograd.h), for training:
// the forward pass and both gradients. Each 2×2 block of outputs ("tile") comes from a 4×4 input
// patch; between the transforms, each pass is 16 matrix products, one per position k of the
// 4×4 transformed tile (`dk_winograd_train_products` below, or BLAS for channel counts it does
// not take):
//   forward        M_k [tiles × O] = V_k [tiles × C] · U_k [C × O],        V = Bᵀ d B, U = G g Gᵀ,
//                  y = Aᵀ M A (+ bias), cropped to H×W;
//   input grad     the forward pass of dY through the kernel rotated by 180° with C and O swapped;
//   weight grad    dU_k [O × C] = Ĝ_kᵀ [O × tiles] · V_k [tiles × C],     Ĝ = A dY Aᵀ,
//                  dW = Gᵀ dU G   (the adjoint of y = Aᵀ[U ⊙ V]A in U, then of U = G g Gᵀ).
// Tiles are numbered image by image, then tile row, then tile column: ⌈H/2⌉·⌈W/2⌉ per image.
// Transformed arrays are [16][tiles][channels] (channels innermost). (Tile-major arrays made the
// transforms' stores faster but the weight gradient's products, which then read each row a
// tile's stride apart, 1.3-1.5 times slower: measured, not kept.)

/// Floats of the scratch buffer every transform here takes, for images of H×W and up to
/// `channels` channels.
size_t dk_winograd_train_scratch(size_t height, size_t width, size_t channels);

/// v = Bᵀ d B for every tile of `images` images x [channels][H][W] (zero outside the image).
void dk_winograd_train_input(const float *x, size_t images, size_t channels, size_t height, size_t width, float *v,
                             float *scratch);

/// y [images][channels][H][W] = Aᵀ m A (+ bias[channel] when bias is not NULL), from m.
void dk_winograd_train_output(const float *m, const float *bias, size_t images, size_t channels, size_t height,
                              size_t width, float *y, float *scratch);

/// The winner's place in a pooled tile when the window's maximum is not positive.
#define DK_WINOGRAD_NO_WINNER 255

/// The output followed by ReLU and 2×2 max-pooling at stride 2 (each pooling window is one tile):
/// y [images][channels][H/2][W/2] = max(0, max over the tile of Aᵀ m A + bias), and `winners`
/// (same shape) the place of the maximum in its tile, 0-3 in row-major order, or
/// DK_WINOGRAD_NO_WINNER where it is not positive. The maximum follows maxPool2dReLU's 2×2 rule
/// (each row's right value wins when greater than the left, then the bottom row's winner when
/// greater than the top's; so the first of equal values wins), and the values are those of
/// `dk_winograd_train_output` followed by that pooling, bit for bit.
void dk_winograd_train_output_pool(const float *m, const float *bias, size_t images, size_t channels, size_t height,
                                   size_t width, float *y, unsigned char *winners, float *scratch);

/// From the output gradient dy [images][channels][H][W] (zero outside the image): g = A dy Aᵀ
/// for every 2×2 block (the weight gradient's) and v = Bᵀ dy B for every 4×4 patch around it
/// (the input gradient's, `dk_winograd_train_input` of dy), each unless NULL.
void dk_winograd_train_output_grad(const float *dy, size_t images, size_t channels, size_t height, size_t width,
                                   float *g, float *v, float *scratch);

/// `dk_winograd_train_output_grad` for the output of `dk_winograd_train_output_pool`, from the
/// pooled gradient dy [images][channels][H/2][W/2] and the winners: each pooled value goes back
/// to its winner's place, the rest of the output gradient is zero.
void dk_winograd_train_pool_grad(const float *dy, const unsigned char *winners, size_t images, size_t channels,
                                 size_t height, size_t width, float *g, float *v, float *scratch);

/// u [16][in][out] from w [O][C][3][3]. rotated = 0: in = C, out = O, G w[o][c] Gᵀ (the
/// forward pass's); rotated = 1: in = O, out = C, G rot180(w[o][c]) Gᵀ (the input gradient's).
void dk_winograd_train_weights(const float *w, size_t out_channels, size_t in_channels, int rotated, float *u);

/// dw [O][C][3][3] = Gᵀ du_oc G, from du [16][O][C].
void dk_winograd_train_weight_grad(const float *du, size_t out_channels, size_t in_channels, float *dw);

/// Whether `dk_winograd_train_products` runs on this CPU for products n columns wide: AVX2 with
/// FMA (AVX-512 used where present and n is a multiple of 16) and n a multiple of 8.
int dk_winograd_train_products_apply(size_t n);

/// For each of `positions` products q: C_q [m, n] = (accumulate ? C_q : 0) + A_q · B_q, where
/// A_q(i, l) = a[q·a_step + i·ai + l·ak] (l < k), B_q = b + q·b_step and C_q = c + q·c_step are
/// row-major with n columns. level: -1 the widest this CPU has, 1 AVX2, 2 AVX-512 (n a multiple
/// of 16); both give the same bits. Returns 0, or -1 (nothing done) where the level does not run
/// here or `dk_winograd_train_products_apply(n)` is 0.
int dk_winograd_train_products(int level, size_t positions, size_t m, size_t n, size_t k, const float *a, size_t ai,
                               size_t ak, size_t a_step, const float *b, size_t b_step, float *c, size_t c_step,
                               int accumulate);

#endif
