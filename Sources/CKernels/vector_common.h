// Pieces shared by the C kernels of this folder (private: not part of the CKernels module's
// public headers). Each kernel file keeps its own floating-point contraction setting: a macro
// expands under the pragma of the file that uses it.
#ifndef DK_VECTOR_COMMON_H
#define DK_VECTOR_COMMON_H

#include "dk_cpu.h"

/// Whether the CPU runs AVX-512F code and DISTILL_MAX_CPU_ISA allows it (dk_cpu.h; 0 off x86-64).
static inline int dk_cpu_has_avx512(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return dk_cpu_isa_limit() != 0 && dk_cpu_isa_limit() != 1 && __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
    return 0;
#endif
}

/// Whether the CPU runs AVX-512 with the byte and word instructions and VNNI (`vpdpbusd`), and
/// DISTILL_MAX_CPU_ISA allows AVX-512.
static inline int dk_cpu_has_avx512_vnni(void) {
#if defined(__x86_64__)
    return dk_cpu_has_avx512() && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
           && __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

/// Whether the CPU runs AVX2 code with fused multiply-adds and DISTILL_MAX_CPU_ISA allows it (0
/// off x86-64).
static inline int dk_cpu_has_avx2_fma(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return dk_cpu_isa_limit() != 0 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
#else
    return 0;
#endif
}

/// For kernels with a portable level (0), an AVX2 + FMA one (1) and an AVX-512 one (2): the
/// level to run. -1 picks the best this CPU has; a forced level it lacks (or an unknown one)
/// gives -1.
static inline int dk_choose_level(int level) {
    const int avx512 = dk_cpu_has_avx512(), avx2 = dk_cpu_has_avx2_fma();
    if (level < 0) return avx512 ? 2 : avx2 ? 1 : 0;
    if (level == 0) return 0;
    if (level == 1) return avx2 ? 1 : -1;
    if (level == 2) return avx512 ? 2 : -1;
    return -1;
}

/// Loops over a register tile's rows, pixels or vectors, unrolled before the accumulators are
/// assigned registers: at -O2 (SwiftPM's release setting) clang otherwise kept a copy of each AVX2
/// accumulator on the stack, stored after every multiply-add (cnn-tiny's second convolution:
/// 16.0 µs, 5.0 µs unrolled).
#define DK_UNROLLED _Pragma("clang loop unroll(full)")

#if defined(__x86_64__)
#include <immintrin.h>

/// Lanes below `n` of 8 set (all from n = 8 up, none at 0 or below), as an AVX2 load/store mask.
__attribute__((target("avx2"), always_inline)) static inline __m256i dk_lanes8(long n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 0 ? 0 : n > 8 ? 8 : n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

// DK_VECTOR_EXP(NAME, VF, VI, ATTRIBUTES) defines `VF NAME(VF v)`: e^v for a vector of floats VF
// (VI: the int vector of the same lanes), Cephes' single-precision method (S. L. Moshier):
// v = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two parts for an exact product), e^r by a degree-7
// polynomial, times 2^n built in the exponent bits in two factors (so n = ±127, ±128 stays in
// range). Relative error about 1e-7. Below -87.34 gives 0, above 88.72 +inf; NaN is left to the
// caller (the result's lanes are unspecified there).
#define DK_VECTOR_EXP(NAME, VF, VI, ATTRIBUTES)                                                     \
    ATTRIBUTES __attribute__((always_inline)) static inline VF NAME(VF v) {                        \
        VF lo = -88.0f, hi = 88.72283935546875f;                                                    \
        VF c = __builtin_elementwise_min(__builtin_elementwise_max(v, lo), hi);                     \
        VF fx = __builtin_elementwise_floor(c * 1.44269504088896341f + 0.5f);                       \
        VF r = c - fx * 0.693359375f;                                                               \
        r = r - fx * -2.12194440e-4f;                                                               \
        VF z = r * r, y = 1.9875691500e-4f;                                                         \
        y = y * r + 1.3981999507e-3f;                                                               \
        y = y * r + 8.3334519073e-3f;                                                               \
        y = y * r + 4.1665795894e-2f;                                                               \
        y = y * r + 1.6666665459e-1f;                                                               \
        y = y * r + 5.0000001201e-1f;                                                               \
        y = y * z + r + 1.0f;                                                                       \
        VI n = __builtin_convertvector(fx, VI), half = n / 2;                                       \
        VI scale1 = (half + 127) << 23, scale2 = (n - half + 127) << 23;                            \
        y = y * (VF)scale1 * (VF)scale2; /* 2^n in two steps: 2^±128 alone would overflow */        \
        VI bits = (VI)y;                                                                            \
        VI under = v < -87.3365478515625f, over = v > 88.72283935546875f;                           \
        bits = bits & ~under;                                                                       \
        bits = (bits & ~over) | (over & 0x7f800000);                                                \
        return (VF)bits;                                                                            \
    }

#endif
