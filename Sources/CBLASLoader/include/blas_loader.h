// OpenBLAS, loaded with dlopen after DistillKit has chosen its CPU kernels.
//
// Why not link it: OpenBLAS picks its kernels in a constructor that runs when the library is
// loaded, reading OPENBLAS_CORETYPE from the environment at that moment. On CPUs that its
// version does not know (recent Xeons and EPYCs) it falls back to SSE3 kernels, 4-8x slower.
// Linked at start-up, nothing in the process can run before that constructor; loaded here, we
// first check the CPU's features (cpuid + xgetbv) and name a core it really supports.
#ifndef DISTILLKIT_BLAS_LOADER_H
#define DISTILLKIT_BLAS_LOADER_H

#ifdef __cplusplus
extern "C" {
#endif

/// Loads OpenBLAS once (thread-safe). Returns 0 on success; otherwise writes a message to
/// `message` (at most `capacity` bytes) and returns -1.
int dk_blas_load(char *message, int capacity);

/// The kernel family OpenBLAS runs ("SkylakeX", "Haswell", "Prescott", ...), after dk_blas_load.
const char *dk_blas_corename(void);

/// What DistillKit set OPENBLAS_CORETYPE to ("" when the user had set it, or when the CPU needs
/// no hint), and why, as a short sentence.
const char *dk_blas_coretype_choice(void);

/// Number of threads OpenBLAS may use for one call.
void dk_blas_set_threads(int threads);
int dk_blas_get_threads(void);

/// Row-major single-precision GEMM: C = alpha * op(A) * op(B) + beta * C.
/// op(X) is X, or its transpose when trans* is non-zero. C is M x N, op(A) M x K, op(B) K x N.
void dk_sgemm(int transA, int transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/// Keeps freed large blocks in the heap (glibc's mmap/trim thresholds raised to 1 GiB) so that
/// each training step reuses the previous step's activation memory instead of page-faulting.
void dk_tune_allocator(void);

/// CPU features, from cpuid and the OS's saved-state mask (xgetbv).
int dk_cpu_has_avx2_fma(void);
int dk_cpu_has_avx512(void);

#ifdef __cplusplus
}
#endif
#endif
