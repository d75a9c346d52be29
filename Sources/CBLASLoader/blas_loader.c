#define _GNU_SOURCE
#include "blas_loader.h"
#include "dk_cpu.h"

#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
static unsigned long long read_xcr0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}
static int os_saves(unsigned long long mask) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & (1u << 27))) return 0; /* OSXSAVE */
    return (read_xcr0() & mask) == mask;
}
int dk_cpu_has_avx2_fma(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, avx = (c >> 28) & 1;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int avx2 = (b >> 5) & 1;
    return fma && avx && avx2 && os_saves(0x6);
}
int dk_cpu_has_avx512(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    /* XMM, YMM, opmask, ZMM_Hi256, Hi16_ZMM state all saved by the OS */
    return f && dq && bw && vl && dk_cpu_has_avx2_fma() && os_saves(0xE6);
}
#else
int dk_cpu_has_avx2_fma(void) { return 0; }
int dk_cpu_has_avx512(void) { return 0; }
#endif

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int,
                         float, float *, int);
typedef void (*set_threads_fn)(int);
typedef int (*get_threads_fn)(void);
typedef char *(*corename_fn)(void);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static sgemm_fn p_sgemm;
static set_threads_fn p_set_threads;
static get_threads_fn p_get_threads;
static corename_fn p_corename;
static char load_error[512];
static char choice[256];

/* CBLAS enum values (cblas.h): RowMajor = 101, NoTrans = 111, Trans = 112. */
enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };

static void choose_coretype(void) {
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (user && *user) {
        /* Kept, but said when it leaves AVX-512 unused: some machines preset an older core in
           their environment (seen: Haswell on an AVX-512 EPYC, where SkylakeX's kernels made the
           MLP's distillation step 1.6x faster, BENCHMARKS.md). */
        const int avx512_core = strcasecmp(user, "SkylakeX") == 0 || strcasecmp(user, "Cooperlake") == 0
                                || strcasecmp(user, "SapphireRapids") == 0;
        snprintf(choice, sizeof choice, "OPENBLAS_CORETYPE=%s set by the user; left as is%s", user,
                 dk_cpu_has_avx512() && !avx512_core ? " (this CPU has AVX-512: unset it to use OpenBLAS's SkylakeX kernels)" : "");
        return;
    }
    const char *core = NULL;
    // DISTILL_MAX_CPU_ISA (dk_cpu.h) caps the choice: "avx2" gives Haswell, "scalar" Prescott (SSE3).
    const int limit = dk_cpu_isa_limit();
    const int capped = limit == 0 || limit == 1;
    if (dk_cpu_has_avx512() && !capped) core = "SkylakeX";
    else if (dk_cpu_has_avx2_fma() && limit != 0) core = "Haswell";
    else if (limit == 0) core = "Prescott";
    if (core) {
        setenv("OPENBLAS_CORETYPE", core, 1);
        if (capped && (dk_cpu_has_avx512() || (limit == 0 && dk_cpu_has_avx2_fma())))
            snprintf(choice, sizeof choice, "OPENBLAS_CORETYPE=%s chosen from DISTILL_MAX_CPU_ISA=%s (the CPU has %s)", core,
                     limit == 1 ? "avx2" : "scalar", dk_cpu_has_avx512() ? "AVX-512" : "AVX2+FMA");
        else
            snprintf(choice, sizeof choice, "OPENBLAS_CORETYPE=%s chosen from the CPU's features (%s)", core,
                     strcmp(core, "SkylakeX") == 0 ? "AVX-512" : "AVX2+FMA");
    } else {
        snprintf(choice, sizeof choice, "no AVX2: OpenBLAS's own CPU detection");
    }
}

static void load_once(void) {
    choose_coretype();
    /* DistillKit splits work across cores itself and runs every OpenBLAS call on one thread.
       Started with more, OpenBLAS keeps server threads that spin (sched_yield) on the other
       cores between calls and take them from DistillKit's own workers (measured: 9% of a core
       during `distill bench kd --cached-teacher`), so it starts with one. */
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    const char *names[] = {"libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0"};
    void *handle = NULL;
    for (unsigned i = 0; i < sizeof names / sizeof names[0] && !handle; i++)
        handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        snprintf(load_error, sizeof load_error,
                 "OpenBLAS could not be loaded (%s). Install it with: apt-get install libopenblas0",
                 dlerror());
        return;
    }
    p_sgemm = (sgemm_fn)dlsym(handle, "cblas_sgemm");
    p_set_threads = (set_threads_fn)dlsym(handle, "openblas_set_num_threads");
    p_get_threads = (get_threads_fn)dlsym(handle, "openblas_get_num_threads");
    p_corename = (corename_fn)dlsym(handle, "openblas_get_corename");
    if (!p_sgemm)
        snprintf(load_error, sizeof load_error, "the loaded OpenBLAS has no cblas_sgemm symbol");
}

int dk_blas_load(char *message, int capacity) {
    pthread_once(&once, load_once);
    if (p_sgemm) return 0;
    if (message && capacity > 0) snprintf(message, (size_t)capacity, "%s", load_error);
    return -1;
}

const char *dk_blas_corename(void) { return p_corename ? p_corename() : "unknown"; }
const char *dk_blas_coretype_choice(void) { return choice; }
void dk_blas_set_threads(int threads) { if (p_set_threads) p_set_threads(threads); }
int dk_blas_get_threads(void) { return p_get_threads ? p_get_threads() : 1; }

void dk_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    p_sgemm(kRowMajor, transA ? kTrans : kNoTrans, transB ? kTrans : kNoTrans, M, N, K, alpha, A, lda, B,
            ldb, beta, C, ldc);
}

void dk_tune_allocator(void) {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
}
