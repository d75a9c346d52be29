// DISTILL_MAX_CPU_ISA, read once (dk_cpu.h).
#include "dk_cpu.h"
#include "vector_common.h"

#include <pthread.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <stdlib.h>
#include <strings.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int limit = 2;

static void read_limit(void) {
    const char *value = getenv("DISTILL_MAX_CPU_ISA");
    if (!value || !*value || strcasecmp(value, "avx512") == 0) limit = 2;
    else if (strcasecmp(value, "avx2") == 0) limit = 1;
    else if (strcasecmp(value, "scalar") == 0) limit = 0;
    else limit = -1;
}

int dk_cpu_isa_limit(void) {
    pthread_once(&once, read_limit);
    return limit;
}

int dk_cpu_kernel_level(void) { return dk_choose_level(-1); }

int dk_cpu_splits_avx512(void) {
#if defined(__x86_64__)
    // AMD's family 19h is Zen 3 (no AVX-512) and Zen 4 (AVX-512 on 256-bit units); the
    // compiler's own CPU tables do not name every Zen 4 model (Genoa's model 11h read as Zen 3).
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx) || ebx != 0x68747541 /* "Auth" of AuthenticAMD */) return 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const unsigned family = ((eax >> 8) & 0xf) + ((eax >> 20) & 0xff);
    __builtin_cpu_init();
    return family == 0x19 && __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
    return 0;
#endif
}
