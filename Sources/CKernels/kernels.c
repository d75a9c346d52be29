// Elementwise kernels that Swift cannot vectorise well on its own: Swift compiles for baseline
// x86-64 (SSE2) and cannot target a wider instruction set per function, so these are C with
// per-function target attributes, chosen once from the CPU's features.
//
// Contraction into FMA is off: each kernel computes exactly the rounded scalar expression, so the
// AVX-512, AVX2 and SSE2 versions (and the Swift reference in the tests) agree bit for bit.
#pragma clang fp contract(off)

#include "dk_kernels.h"

#include <string.h>

typedef void (*adam_fn)(float *, const float *, float *, float *, size_t, float, float, float, float, float, float);

// The body is written with explicit vector types (clang's ext_vector_type) rather than left to
// the loop vectoriser, so the vector code runs in debug builds too, where the tests exercise it.
// ADAM_KERNEL(name, lanes, target) defines a kernel of `lanes` floats per step plus a scalar tail
// that computes the same expression.
#define ADAM_KERNEL(NAME, LANES, ATTRIBUTES)                                                        \
    typedef float NAME##_vec __attribute__((ext_vector_type(LANES)));                                \
    ATTRIBUTES static void NAME(float *w, const float *g, float *m, float *v, size_t n, float b1,   \
                                float b2, float l2, float step_size, float inv_sqrt_c2, float eps) { \
        const float a1 = 1.0f - b1, a2 = 1.0f - b2;                                                 \
        size_t j = 0;                                                                               \
        for (; j + LANES <= n; j += LANES) {                                                        \
            NAME##_vec wj, gj, mj, vj;                                                              \
            memcpy(&wj, w + j, sizeof wj); memcpy(&gj, g + j, sizeof gj);                           \
            memcpy(&mj, m + j, sizeof mj); memcpy(&vj, v + j, sizeof vj);                           \
            gj = gj + l2 * wj;                                                                      \
            mj = b1 * mj + a1 * gj;                                                                 \
            vj = b2 * vj + a2 * gj * gj;                                                            \
            wj = wj - step_size * mj / (__builtin_elementwise_sqrt(vj) * inv_sqrt_c2 + eps);        \
            memcpy(m + j, &mj, sizeof mj); memcpy(v + j, &vj, sizeof vj);                           \
            memcpy(w + j, &wj, sizeof wj);                                                          \
        }                                                                                           \
        for (; j < n; j++) {                                                                        \
            float gj = g[j] + l2 * w[j];                                                            \
            float mj = b1 * m[j] + a1 * gj;                                                         \
            float vj = b2 * v[j] + a2 * gj * gj;                                                    \
            m[j] = mj;                                                                              \
            v[j] = vj;                                                                              \
            w[j] = w[j] - step_size * mj / (__builtin_elementwise_sqrt(vj) * inv_sqrt_c2 + eps);    \
        }                                                                                           \
    }

#if defined(__x86_64__)
ADAM_KERNEL(adam_avx512, 16, __attribute__((target("avx512f"))))
ADAM_KERNEL(adam_avx2, 8, __attribute__((target("avx2"))))
#endif
ADAM_KERNEL(adam_sse2, 4, )

static adam_fn pick_adam(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return adam_avx512;
    if (__builtin_cpu_supports("avx2")) return adam_avx2;
#endif
    return adam_sse2;
}

void dk_adam_update(float *w, const float *g, float *m, float *v, size_t n,
                    float b1, float b2, float l2, float step_size, float inv_sqrt_c2, float eps) {
    static adam_fn chosen = 0;
    adam_fn f = __atomic_load_n(&chosen, __ATOMIC_RELAXED);
    if (!f) {
        f = pick_adam();
        __atomic_store_n(&chosen, f, __ATOMIC_RELAXED);
    }
    f(w, g, m, v, n, b1, b2, l2, step_size, inv_sqrt_c2, eps);
}

int dk_adam_update_level(int level, float *w, const float *g, float *m, float *v, size_t n,
                         float b1, float b2, float l2, float step_size, float inv_sqrt_c2, float eps) {
    adam_fn f = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (level == 2 && __builtin_cpu_supports("avx512f")) f = adam_avx512;
    if (level == 1 && __builtin_cpu_supports("avx2")) f = adam_avx2;
#endif
    if (level == 0) f = adam_sse2;
    if (!f) return -1;
    f(w, g, m, v, n, b1, b2, l2, step_size, inv_sqrt_c2, eps);
    return 0;
}
