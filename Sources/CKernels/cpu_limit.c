// DISTILL_MAX_CPU_ISA, read once (dk_cpu.h).
#include "dk_cpu.h"
#include "vector_common.h"

#include <pthread.h>
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
