#ifndef DK_MAX_POOL_TRAIN_H
#define DK_MAX_POOL_TRAIN_H
#include <stddef.h>
#include <stdint.h>

// 2×2 max-pooling with stride 2 and no padding for training (Sources/DistillTensor/Ops/Pool.swift,
// `Tensor.maxPool2d`'s common case): the forward pass keeps each window's winner for the backward
// pass. On the cnn-small teacher the two Swift loops this replaces were about a tenth of the
// training step: branch-free, but one window at a time.

/// Pools planes x [planes, h, w] into y [planes, h/2, w/2] (rounded down: an odd last row or
/// column is left out). argmax receives each winner's index in its h×w plane, or -1 where
/// `relu` is set and the maximum is not positive (then y is 0). The winner is the window's top
/// pair's larger (the right one only when strictly greater), then the bottom pair's likewise,
/// and the bottom one only when strictly greater than the top one: so ties go to the first in
/// row-major order and a NaN in the first position of a pair wins that pair.
/// `level`: -1 the best this CPU runs, 0 portable, 1 AVX2, 2 AVX-512 (for tests). Returns 0, or -1 when
/// the level is not available (nothing written then).
int dk_max_pool2x2_forward(int level, const float *x, float *y, int32_t *argmax, size_t planes, size_t h, size_t w,
                           int relu);

/// The adjoint when the windows tile the planes exactly (h and w even): dx [planes, h, w]
/// receives grad [planes, h/2, w/2] at each window's winner (from argmax) and 0 at the other
/// three positions (and at all four where the winner is -1). Same `level` and return value.
int dk_max_pool2x2_backward(int level, const float *grad, const int32_t *argmax, float *dx, size_t planes, size_t h,
                            size_t w);

/// `dk_max_pool2x2_forward` of a tensor held blocked, [images][channels/block][h][w][block]
/// (oneDNN's nChw16c for block 16, nChw8c for 8): y [images, channels, h/2, w/2] and argmax
/// (index in the h×w plane, or -1) come out plain, with the same values and winners as pooling
/// the plain tensor. `block` is 8 or 16 and divides `channels`; returns 0, or -1 otherwise.
int dk_max_pool2x2_blocked_forward(const float *x, size_t images, size_t channels, size_t h, size_t w, size_t block, int relu,
                                   float *y, int32_t *argmax);

/// Its adjoint: dx (blocked like x, [images][channels/block][h][w][block]) receives each
/// window's gradient at its winner and 0 everywhere else. Returns 0, or -1 as above.
int dk_max_pool2x2_blocked_backward(const float *grad, const int32_t *argmax, size_t images, size_t channels, size_t h, size_t w,
                                    size_t block, float *dx);

#endif
