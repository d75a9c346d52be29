// Elementwise kernels that Swift cannot vectorise well on its own: Swift compiles for baseline
// x86-64 (SSE2) and cannot target a wider instruction set per function, so these are C with
// per-function target attributes, chosen once from the CPU's features.
//
// Contraction into FMA is off: each kernel computes exactly the rounded scalar expression, so the
// AVX-512, AVX2 and SSE2 versions (and the Swift reference in the tests) agree bit for bit.
#pragma clang fp contract(off)

#include "dk_kernels.h"
#include "vector_common.h"

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

// Adam runs with subnormal numbers flushed to zero, inputs and results (MXCSR's DAZ and FTZ bits,
// which govern SSE, AVX2 and AVX-512 alike, so every version still agrees bit for bit). The
// moments of a parameter whose gradient is exactly zero (a ReLU unit that never fires for a batch,
// an always-black border pixel) decay by β₁ = 0.9 a step into the subnormal range below 2⁻¹²⁶,
// where each multiply and square root takes a microcode assist on Intel cores: measured on an
// AVX-512 Xeon, a quarter of the MLP distillation step went to such assists. A moment that small
// moves its weight by less than 2⁻¹²⁶ · step size / ε, far below one unit in the last place of
// any weight that is not itself near zero, so flushing changes nothing else.
static void adam_flushing_subnormals(adam_fn f, float *w, const float *g, float *m, float *v, size_t n,
                                     float b1, float b2, float l2, float step_size, float inv_sqrt_c2, float eps) {
#if defined(__x86_64__)
    const unsigned int saved = __builtin_ia32_stmxcsr();
    __builtin_ia32_ldmxcsr(saved | 0x8040u);  // FTZ (bit 15) and DAZ (bit 6)
    f(w, g, m, v, n, b1, b2, l2, step_size, inv_sqrt_c2, eps);
    __builtin_ia32_ldmxcsr(saved);
#else
    f(w, g, m, v, n, b1, b2, l2, step_size, inv_sqrt_c2, eps);
#endif
}

static adam_fn pick_adam(void) {
#if defined(__x86_64__)
    if (dk_cpu_has_avx512()) return adam_avx512;
    if (dk_cpu_has_avx2_fma()) return adam_avx2;
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
    adam_flushing_subnormals(f, w, g, m, v, n, b1, b2, l2, step_size, inv_sqrt_c2, eps);
}

// Small-batch fully connected layer: dot products along `in`, LANES products at a time, for four
// outputs at once (four independent accumulators hide the add latency and share each load of x).
// Horizontal sums by halving (a tree, not a chain of LANES dependent adds).
typedef float dk_f2 __attribute__((ext_vector_type(2)));
typedef float dk_f4 __attribute__((ext_vector_type(4)));
typedef float dk_f8 __attribute__((ext_vector_type(8)));
typedef float dk_f16 __attribute__((ext_vector_type(16)));
// Macros, not functions: a vector argument to a function without the wide target attribute
// changes the ABI, and the sums must compile inside each target's kernel.
#define DK_HSUM4(v) ({ dk_f4 h4_ = (v); dk_f2 t_ = h4_.lo + h4_.hi; t_.x + t_.y; })
#define DK_HSUM8(v) ({ dk_f8 h8_ = (v); DK_HSUM4(h8_.lo + h8_.hi); })
#define DK_HSUM16(v) ({ dk_f16 h16_ = (v); DK_HSUM8(h16_.lo + h16_.hi); })

#define LINEAR_KERNEL(NAME, LANES, ATTRIBUTES)                                                      \
    typedef float NAME##_vec __attribute__((ext_vector_type(LANES)));                                \
    ATTRIBUTES static void NAME(const float *x, const float *w, const float *b, float *y,           \
                                size_t rows, size_t in, size_t out, int relu) {                     \
        for (size_t r = 0; r < rows; r++) {                                                         \
            const float *xr = x + r * in;                                                           \
            float *yr = y + r * out;                                                                \
            size_t o = 0;                                                                           \
            for (; o + 4 <= out; o += 4) {                                                          \
                const float *w0 = w + o * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;          \
                NAME##_vec a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, xv, wv;                      \
                size_t i = 0;                                                                       \
                for (; i + LANES <= in; i += LANES) {                                               \
                    memcpy(&xv, xr + i, sizeof xv);                                                 \
                    memcpy(&wv, w0 + i, sizeof wv); a0 += xv * wv;                                  \
                    memcpy(&wv, w1 + i, sizeof wv); a1 += xv * wv;                                  \
                    memcpy(&wv, w2 + i, sizeof wv); a2 += xv * wv;                                  \
                    memcpy(&wv, w3 + i, sizeof wv); a3 += xv * wv;                                  \
                }                                                                                   \
                float s0 = DK_HSUM##LANES(a0), s1 = DK_HSUM##LANES(a1), s2 = DK_HSUM##LANES(a2), s3 = DK_HSUM##LANES(a3); \
                for (; i < in; i++) {                                                               \
                    s0 += xr[i] * w0[i]; s1 += xr[i] * w1[i]; s2 += xr[i] * w2[i]; s3 += xr[i] * w3[i]; \
                }                                                                                   \
                yr[o] = s0; yr[o + 1] = s1; yr[o + 2] = s2; yr[o + 3] = s3;                         \
            }                                                                                       \
            for (; o < out; o++) {                                                                  \
                const float *wo = w + o * in;                                                       \
                NAME##_vec acc = 0.0f, xv, wv;                                                      \
                size_t i = 0;                                                                       \
                for (; i + LANES <= in; i += LANES) {                                               \
                    memcpy(&xv, xr + i, sizeof xv);                                                 \
                    memcpy(&wv, wo + i, sizeof wv);                                                 \
                    acc += xv * wv;                                                                 \
                }                                                                                   \
                float s = DK_HSUM##LANES(acc);                                                          \
                for (; i < in; i++) s += xr[i] * wo[i];                                             \
                yr[o] = s;                                                                          \
            }                                                                                       \
            for (o = 0; o < out; o++) {                                                             \
                float v = b ? yr[o] + b[o] : yr[o];                                                 \
                yr[o] = relu ? (v > 0.0f ? v : 0.0f) : v;                                           \
            }                                                                                       \
        }                                                                                           \
    }

typedef void (*linear_fn)(const float *, const float *, const float *, float *, size_t, size_t, size_t, int);

#if defined(__x86_64__)
LINEAR_KERNEL(linear_avx512, 16, __attribute__((target("avx512f"))))
LINEAR_KERNEL(linear_avx2, 8, __attribute__((target("avx2"))))
#endif
LINEAR_KERNEL(linear_sse2, 4, )

static linear_fn pick_linear(int level) {
#if defined(__x86_64__)
    if (level >= 2 && dk_cpu_has_avx512()) return linear_avx512;
    if (level >= 1 && dk_cpu_has_avx2_fma()) return linear_avx2;
#endif
    (void)level;
    return linear_sse2;
}

int dk_linear_small_level(int level, const float *x, const float *w, const float *b, float *y,
                          size_t rows, size_t in, size_t out, int relu) {
    linear_fn f = pick_linear(level);
#if defined(__x86_64__)
    if ((level == 2 && f != linear_avx512) || (level == 1 && f != linear_avx2)) return -1;
#else
    if (level > 0) return -1;
#endif
    f(x, w, b, y, rows, in, out, relu);
    return 0;
}

void dk_linear_small(const float *x, const float *w, const float *b, float *y,
                     size_t rows, size_t in, size_t out, int relu) {
    static linear_fn chosen = 0;
    linear_fn f = __atomic_load_n(&chosen, __ATOMIC_RELAXED);
    if (!f) {
        f = pick_linear(2);
        __atomic_store_n(&chosen, f, __ATOMIC_RELAXED);
    }
    f(x, w, b, y, rows, in, out, relu);
}

// A fully connected layer on many rows with weights packed as [in][padded_out] (the transpose of
// PyTorch's [out][in], zero-padded to whole vectors): four rows by BLOCK vectors of outputs per
// block in 4·BLOCK accumulators, so each weight vector loaded feeds four rows: 4 × 4 vectors of
// 16 with AVX-512's 32 registers, 4 × 2 vectors of 8 with AVX2's 16. Explicit fused multiply-adds
// (this kernel trades bit-equality with the scalar formula for speed; results agree with a BLAS
// product to float rounding). Macros rather than functions for the stores: a function taking a
// 64-byte vector has a different calling convention with and without AVX-512. A single row (a
// recurrent cell's step at batch 1) has only BLOCK independent sums; with ODD_SUMS (AVX2's 2
// vectors) the odd inputs go to a second set, added at the end. Measured on an AMD EPYC (AVX2,
// `distill bench onnx`, batch 1, two threads): with a loop of run-time length over the lone row's
// vectors clang kept its sums on the stack, a store after every multiply-add (67% of the LSTM's
// profile on two instructions); with constant trip counts and two sums, alternating binaries, the
// LSTM went from 451-637 to 240-265 µs per sample, the GRU from 396-476 to 172-228 µs.
#if defined(__x86_64__)
typedef float dk_v16 __attribute__((ext_vector_type(16)));
typedef float dk_v8 __attribute__((ext_vector_type(8)));

/// y[0..<columns] = v (+ b) (then ReLU): a whole vector with one store, a short one lane by lane.
#define PACKED_STORE(VT, LANES, y, v, b, columns, relu)                                                       \
    do {                                                                                                       \
        VT out_ = (v);                                                                                         \
        if (b) { VT bv_; memcpy(&bv_, (b), sizeof bv_); out_ += bv_; }                                          \
        if (relu) out_ = __builtin_elementwise_max(out_, (VT)0.0f);                                            \
        if ((columns) == LANES) memcpy((y), &out_, sizeof out_);                                               \
        else for (size_t c_ = 0; c_ < (columns); c_++) (y)[c_] = out_[c_];                                     \
    } while (0)

#define LINEAR_PACKED_KERNEL(NAME, VT, LANES, BLOCK, ODD_SUMS, ATTRIBUTES)                                          \
    ATTRIBUTES static void NAME(const float *x, const float *wt, const float *bp, float *y, size_t rows,       \
                                size_t in, size_t out, size_t padded, int relu) {                              \
        for (size_t c0 = 0; c0 < padded; c0 += BLOCK * LANES) {                                                \
            const size_t vectors = (padded - c0) / LANES < BLOCK ? (padded - c0) / LANES : BLOCK;              \
            size_t r = 0;                                                                                      \
            for (; r + 4 <= rows; r += 4) {                                                                    \
                VT acc[4][BLOCK];                                                                              \
                for (int i = 0; i < 4; i++) for (int j = 0; j < BLOCK; j++) acc[i][j] = (VT)0.0f;               \
                const float *x0 = x + r * in, *x1 = x0 + in, *x2 = x1 + in, *x3 = x2 + in;                     \
                if (vectors == BLOCK) { /* constant trip counts: clang unrolls this into 4·BLOCK FMAs per k */ \
                    for (size_t k = 0; k < in; k++) {                                                          \
                        const float *wk = wt + k * padded + c0;                                                \
                        const float xs[4] = { x0[k], x1[k], x2[k], x3[k] };                                    \
                        VT w[BLOCK];                                                                           \
                        memcpy(w, wk, sizeof w);                                                               \
                        for (int i = 0; i < 4; i++)                                                            \
                            for (int j = 0; j < BLOCK; j++) acc[i][j] = __builtin_elementwise_fma((VT)xs[i], w[j], acc[i][j]); \
                    }                                                                                          \
                } else {                                                                                       \
                    for (size_t k = 0; k < in; k++) {                                                          \
                        const float *wk = wt + k * padded + c0;                                                \
                        const float xs[4] = { x0[k], x1[k], x2[k], x3[k] };                                    \
                        for (size_t j = 0; j < vectors; j++) {                                                 \
                            VT w; memcpy(&w, wk + LANES * j, sizeof w);                                        \
                            for (int i = 0; i < 4; i++) acc[i][j] = __builtin_elementwise_fma((VT)xs[i], w, acc[i][j]); \
                        }                                                                                      \
                    }                                                                                          \
                }                                                                                              \
                for (int i = 0; i < 4; i++)                                                                    \
                    for (size_t j = 0; j < vectors; j++) {                                                     \
                        size_t col = c0 + LANES * j;                                                           \
                        if (col >= out) break;                                                                 \
                        PACKED_STORE(VT, LANES, y + (r + i) * out + col, acc[i][j], bp ? bp + col : 0,         \
                                     out - col < LANES ? out - col : LANES, relu);                             \
                    }                                                                                          \
            }                                                                                                  \
            for (; r < rows; r++) {                                                                            \
                VT acc[BLOCK], odd[BLOCK];                                                                     \
                for (int j = 0; j < BLOCK; j++) acc[j] = odd[j] = (VT)0.0f;                                    \
                const float *xr = x + r * in;                                                                  \
                size_t k = 0;                                                                                  \
                if (vectors == BLOCK) { /* constant trip counts: the accumulators stay in registers */         \
                    for (; ODD_SUMS && k + 2 <= in; k += 2) { /* two sums: twice the independent FMAs */       \
                        VT a = (VT)xr[k], b = (VT)xr[k + 1], w[BLOCK], v[BLOCK];                               \
                        memcpy(w, wt + k * padded + c0, sizeof w);                                             \
                        memcpy(v, wt + (k + 1) * padded + c0, sizeof v);                                       \
                        for (int j = 0; j < BLOCK; j++) {                                                      \
                            acc[j] = __builtin_elementwise_fma(a, w[j], acc[j]);                               \
                            odd[j] = __builtin_elementwise_fma(b, v[j], odd[j]);                               \
                        }                                                                                      \
                    }                                                                                          \
                    for (; k < in; k++) {                                                                      \
                        VT a = (VT)xr[k], w[BLOCK];                                                            \
                        memcpy(w, wt + k * padded + c0, sizeof w);                                             \
                        for (int j = 0; j < BLOCK; j++) acc[j] = __builtin_elementwise_fma(a, w[j], acc[j]);   \
                    }                                                                                          \
                    if (ODD_SUMS) for (int j = 0; j < BLOCK; j++) acc[j] += odd[j];                            \
                }                                                                                              \
                for (; k < in; k++) {                                                                          \
                    const float *wk = wt + k * padded + c0;                                                    \
                    VT a = (VT)xr[k];                                                                          \
                    for (size_t j = 0; j < vectors; j++) {                                                     \
                        VT w; memcpy(&w, wk + LANES * j, sizeof w);                                            \
                        acc[j] = __builtin_elementwise_fma(a, w, acc[j]);                                      \
                    }                                                                                          \
                }                                                                                              \
                for (size_t j = 0; j < vectors; j++) {                                                         \
                    size_t col = c0 + LANES * j;                                                               \
                    if (col >= out) break;                                                                     \
                    PACKED_STORE(VT, LANES, y + r * out + col, acc[j], bp ? bp + col : 0,                      \
                                 out - col < LANES ? out - col : LANES, relu);                                 \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }

LINEAR_PACKED_KERNEL(linear_packed_avx512, dk_v16, 16, 4, 0, __attribute__((target("avx512f"))))
LINEAR_PACKED_KERNEL(linear_packed_avx2, dk_v8, 8, 2, 1, __attribute__((target("avx2,fma"))))
#endif

int dk_linear_packed_level(void) { return dk_choose_level(-1); }

int dk_linear_packed(const float *x, const float *wt, const float *b_padded, float *y,
                     size_t rows, size_t in, size_t out, size_t padded, int relu) {
#if defined(__x86_64__)
    const int level = dk_choose_level(-1);
    if (level > 0 && padded % 16 == 0 && padded >= out) {
        if (level == 2) linear_packed_avx512(x, wt, b_padded, y, rows, in, out, padded, relu);
        else linear_packed_avx2(x, wt, b_padded, y, rows, in, out, padded, relu);
        return 0;
    }
#endif
    (void)x; (void)wt; (void)b_padded; (void)y; (void)rows; (void)in; (void)out; (void)padded; (void)relu;
    return -1;
}

int dk_adam_update_level(int level, float *w, const float *g, float *m, float *v, size_t n,
                         float b1, float b2, float l2, float step_size, float inv_sqrt_c2, float eps) {
    adam_fn f = 0;
#if defined(__x86_64__)
    if (level == 2 && dk_cpu_has_avx512()) f = adam_avx512;
    if (level == 1 && dk_cpu_has_avx2_fma()) f = adam_avx2;
#endif
    if (level == 0) f = adam_sse2;
    if (!f) return -1;
    adam_flushing_subnormals(f, w, g, m, v, n, b1, b2, l2, step_size, inv_sqrt_c2, eps);
    return 0;
}

// exp(x) in place, Cephes' single-precision method (S. L. Moshier): x = n·ln2 + r with |r| ≤ ln2/2
// (ln2 split in two parts for an exact product), e^r by a degree-7 polynomial, times 2^n built in
// the exponent bits (in two factors, so that n = ±127, ±128 stays in range). Relative error about 1e-7 (1-2 ulp) over the whole range. Below -87.34 gives
// 0, above 88.72 gives +inf, NaN stays NaN. Vector body only: a short tail goes through it in a
// zero-padded vector, so every element of every CPU's version gets the same bits.
#define EXP_KERNEL(NAME, LANES, ATTRIBUTES)                                                         \
    typedef float NAME##_vf __attribute__((ext_vector_type(LANES)));                                \
    typedef int NAME##_vi __attribute__((ext_vector_type(LANES)));                                  \
    DK_VECTOR_EXP(NAME##_exp, NAME##_vf, NAME##_vi, ATTRIBUTES)                                     \
    /* e^v with NaN lanes kept as they are (the vector formula leaves them unspecified) */          \
    ATTRIBUTES __attribute__((always_inline)) static inline NAME##_vf NAME##_exp_nan(NAME##_vf v) { \
        NAME##_vi bits = (NAME##_vi)NAME##_exp(v), nan = v != v;                                    \
        return (NAME##_vf)((bits & ~nan) | (nan & (NAME##_vi)v));                                   \
    }                                                                                               \
    /* Whole vectors are loaded and stored directly (a constant-size copy is one instruction); */   \
    /* a short tail goes through a zero-padded vector. */                                           \
    ATTRIBUTES static void NAME(float *x, size_t n) {                                               \
        size_t j = 0;                                                                               \
        for (; j + LANES <= n; j += LANES) {                                                        \
            NAME##_vf v;                                                                            \
            memcpy(&v, x + j, sizeof v);                                                            \
            v = NAME##_exp_nan(v);                                                                  \
            memcpy(x + j, &v, sizeof v);                                                            \
        }                                                                                           \
        if (j < n) {                                                                                \
            NAME##_vf v = 0.0f;                                                                     \
            memcpy(&v, x + j, (n - j) * sizeof(float));                                             \
            v = NAME##_exp_nan(v);                                                                  \
            memcpy(x + j, &v, (n - j) * sizeof(float));                                             \
        }                                                                                           \
    }

typedef void (*exp_fn)(float *, size_t);
#if defined(__x86_64__)
EXP_KERNEL(exp_avx512, 16, __attribute__((target("avx512f"))))
EXP_KERNEL(exp_avx2, 8, __attribute__((target("avx2"))))
#endif
EXP_KERNEL(exp_sse2, 4, )

void dk_exp_inplace(float *x, size_t n) {
    static exp_fn chosen = 0;
    exp_fn f = __atomic_load_n(&chosen, __ATOMIC_RELAXED);
    if (!f) {
#if defined(__x86_64__)
        f = dk_cpu_has_avx512() ? exp_avx512 : dk_cpu_has_avx2_fma() ? exp_avx2 : exp_sse2;
#else
        f = exp_sse2;
#endif
        __atomic_store_n(&chosen, f, __ATOMIC_RELAXED);
    }
    f(x, n);
}

int dk_exp_inplace_level(int level, float *x, size_t n) {
#if defined(__x86_64__)
    if (level == 2) { if (!dk_cpu_has_avx512()) return -1; exp_avx512(x, n); return 0; }
    if (level == 1) { if (!dk_cpu_has_avx2_fma()) return -1; exp_avx2(x, n); return 0; }
#else
    if (level != 0) return -1;
#endif
    exp_sse2(x, n);
    return 0;
}

// One body at three widths: the division is exact at every width (the same bits), and the wider
// levels convert and divide 8 or 16 values per instruction (a batch of 128 Fashion-MNIST rows:
// 37-51 µs at the SSE2 baseline, 30 µs with AVX2, 26 µs with AVX-512, measured on a Zen 4 EPYC).
#define GATHER_UNIT_BYTES(NAME, ATTRIBUTES)                                                                    \
    ATTRIBUTES static void NAME(const uint8_t *source, size_t row_size, const int64_t *rows, size_t count,   \
                                float *destination) {                                                        \
        enum { ahead = 4 }; /* rows requested before they are read: a 28×28 image is 13 cache lines */        \
        for (size_t r = 0; r < count && r < ahead; r++)                                                      \
            for (size_t k = 0; k < row_size; k += 64) __builtin_prefetch(source + (size_t)rows[r] * row_size + k); \
        for (size_t r = 0; r < count; r++) {                                                                 \
            if (r + ahead < count)                                                                           \
                for (size_t k = 0; k < row_size; k += 64)                                                    \
                    __builtin_prefetch(source + (size_t)rows[r + ahead] * row_size + k);                     \
            const uint8_t *from = source + (size_t)rows[r] * row_size;                                      \
            float *to = destination + r * row_size;                                                          \
            for (size_t k = 0; k < row_size; k++) to[k] = (float)from[k] / 255.0f;                           \
        }                                                                                                    \
    }

GATHER_UNIT_BYTES(gather_unit_bytes_portable, )
#if defined(__x86_64__)
GATHER_UNIT_BYTES(gather_unit_bytes_avx2, __attribute__((target("avx2,fma"))))
GATHER_UNIT_BYTES(gather_unit_bytes_avx512, __attribute__((target("avx512f"))))
#endif

int dk_gather_unit_bytes_level(int level, const uint8_t *source, size_t row_size, const int64_t *rows, size_t count,
                               float *destination) {
    level = dk_choose_level(level);
#if defined(__x86_64__)
    if (level == 2) { gather_unit_bytes_avx512(source, row_size, rows, count, destination); return 0; }
    if (level == 1) { gather_unit_bytes_avx2(source, row_size, rows, count, destination); return 0; }
#endif
    if (level != 0) return -1;
    gather_unit_bytes_portable(source, row_size, rows, count, destination);
    return 0;
}

void dk_gather_unit_bytes(const uint8_t *source, size_t row_size, const int64_t *rows, size_t count, float *destination) {
    dk_gather_unit_bytes_level(-1, source, row_size, rows, count, destination);
}
