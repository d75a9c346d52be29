#ifndef DK_CPU_H
#define DK_CPU_H

/// The widest instruction set DistillKit lets its kernels use, from the environment variable
/// DISTILL_MAX_CPU_ISA, read once per process: 2 for "avx512" (the default: no limit), 1 for
/// "avx2", 0 for "scalar" (SSE2 on x86-64), -1 for any other value (which the kernels treat as no
/// limit and the command line refuses). Below the limit each kernel still takes the widest level
/// the CPU has. The limit also reaches OpenBLAS (OPENBLAS_CORETYPE) and oneDNN
/// (ONEDNN_MAX_CPU_ISA) when they are loaded, unless those variables are set: an AVX-512 machine
/// then runs what an AVX2-only one would, to measure or reproduce it.
int dk_cpu_isa_limit(void);

/// The level DistillKit's own kernels run at on this CPU under that limit: 2 (AVX-512), 1 (AVX2
/// with FMA) or 0 (SSE2 on x86-64, portable C elsewhere).
int dk_cpu_kernel_level(void);

/// 1 where the CPU runs each 512-bit multiply-add as two 256-bit halves (AMD Zen 4), so that
/// AVX-512 code does no more arithmetic per cycle there than AVX2 code; 0 elsewhere.
int dk_cpu_splits_avx512(void);

#endif
