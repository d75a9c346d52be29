#define _GNU_SOURCE
#include "mpi_loader.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Open MPI's handles are pointers to its predefined objects; the functions take them as such. */
typedef void *comm_t, *datatype_t, *op_t;

/* MPI_Status as Open MPI 4.x lays it out (struct ompi_status_public_t in its mpi.h): the three
   public fields, then two internal ones, which only give the struct its size here. */
typedef struct {
    int source, tag, error;
    int cancelled;
    size_t count;
} status_t;
#define ANY_SOURCE (-1) /* MPI_ANY_SOURCE in Open MPI's mpi.h */

static int (*p_init_thread)(int *, char ***, int, int *);
static int (*p_finalize)(void);
static int (*p_finalized)(int *);
static int (*p_comm_rank)(comm_t, int *);
static int (*p_comm_size)(comm_t, int *);
static int (*p_allreduce)(const void *, void *, int, datatype_t, op_t, comm_t);
static int (*p_bcast)(void *, int, datatype_t, int, comm_t);
static int (*p_barrier)(comm_t);
static int (*p_send)(const void *, int, datatype_t, int, int, comm_t);
static int (*p_recv)(void *, int, datatype_t, int, int, comm_t, status_t *);
static int (*p_iprobe)(int, int, comm_t, int *, status_t *);
static int (*p_get_count)(const status_t *, datatype_t, int *);
static int (*p_abort)(comm_t, int);
static int (*p_error_string)(int, char *, int *);
static int (*p_get_library_version)(char *, int *);

static comm_t comm_world;
static datatype_t type_float, type_double, type_byte;
static op_t op_sum;

#define IN_PLACE ((void *)1) /* MPI_IN_PLACE in Open MPI's mpi.h */
#define THREAD_FUNNELED 1    /* MPI_THREAD_FUNNELED */
#define CHUNK (1 << 30)      /* MPI counts are ints: larger buffers go in pieces */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int state;            /* 0 single process, 1 running, -1 failed */
static int rank = 0, size = 1;
static char init_error[768];
static char version[256];
static int together;         /* every rank agreed to exit now (dk_mpi_exit_together) */

static void on_exit_handler(int status, void *unused) {
    (void)unused;
    int done = 0;
    if (state != 1 || (p_finalized(&done) == 0 && done)) return;
    if (status == 0 || together) {
        p_finalize();
    } else {
        /* A rank that stops with an error must not leave the others waiting in a collective:
           say which rank and host it is (the error above it does not), then stop them all. */
        char host[256] = "?";
        gethostname(host, sizeof host - 1);
        fprintf(stderr, "distill: rank %d of %d (host %s) stopped with exit status %d; stopping every rank\n",
                rank, size, host, status);
        fflush(stderr);
        p_abort(comm_world, status);
    }
}

void dk_mpi_exit_together(void) { together = 1; }

static void init_once(void) {
    const char *world = getenv("OMPI_COMM_WORLD_SIZE");
    if (!world || !*world) return; /* not started by mpirun */
    state = -1;
    /* RTLD_GLOBAL: Open MPI's own plugins (mca_*.so), which it dlopens, resolve libmpi's and
       libopen-pal's symbols from the global scope. */
    void *handle = dlopen("libmpi.so.40", RTLD_NOW | RTLD_GLOBAL);
    if (!handle) {
        snprintf(init_error, sizeof init_error,
                 "this process was started by mpirun (OMPI_COMM_WORLD_SIZE=%s) but Open MPI's library could "
                 "not be loaded (%s). Install Open MPI 4.x on every host: apt-get install openmpi-bin "
                 "libopenmpi-dev (Debian/Ubuntu)", world, dlerror());
        return;
    }
#define RESOLVE(pointer, name)                                                                       \
    *(void **)(&pointer) = dlsym(handle, name);                                                      \
    if (!pointer) {                                                                                  \
        snprintf(init_error, sizeof init_error, "libmpi.so.40 has no symbol %s: not Open MPI 4.x?", name); \
        return;                                                                                      \
    }
    RESOLVE(p_init_thread, "MPI_Init_thread")
    RESOLVE(p_finalize, "MPI_Finalize")
    RESOLVE(p_finalized, "MPI_Finalized")
    RESOLVE(p_comm_rank, "MPI_Comm_rank")
    RESOLVE(p_comm_size, "MPI_Comm_size")
    RESOLVE(p_allreduce, "MPI_Allreduce")
    RESOLVE(p_bcast, "MPI_Bcast")
    RESOLVE(p_barrier, "MPI_Barrier")
    RESOLVE(p_send, "MPI_Send")
    RESOLVE(p_recv, "MPI_Recv")
    RESOLVE(p_iprobe, "MPI_Iprobe")
    RESOLVE(p_get_count, "MPI_Get_count")
    RESOLVE(p_abort, "MPI_Abort")
    RESOLVE(p_error_string, "MPI_Error_string")
    RESOLVE(p_get_library_version, "MPI_Get_library_version")
    /* The handles: MPI_COMM_WORLD is &ompi_mpi_comm_world, and so on (mpi.h). */
    RESOLVE(comm_world, "ompi_mpi_comm_world")
    RESOLVE(type_float, "ompi_mpi_float")
    RESOLVE(type_double, "ompi_mpi_double")
    RESOLVE(type_byte, "ompi_mpi_byte")
    RESOLVE(op_sum, "ompi_mpi_op_sum")
#undef RESOLVE
    int provided = 0;
    int rc = p_init_thread(NULL, NULL, THREAD_FUNNELED, &provided);
    if (rc != 0) {
        snprintf(init_error, sizeof init_error, "MPI_Init_thread failed (error %d)", rc);
        return;
    }
    p_comm_rank(comm_world, &rank);
    p_comm_size(comm_world, &size);
    int length = 0;
    p_get_library_version(version, &length);
    version[sizeof version - 1] = 0;
    char *newline = strchr(version, '\n');
    if (newline) *newline = 0;
    state = 1;
    on_exit(on_exit_handler, NULL);
}

int dk_mpi_init(char *message, int capacity) {
    pthread_once(&once, init_once);
    if (state < 0 && message && capacity > 0) snprintf(message, (size_t)capacity, "%s", init_error);
    return state;
}

int dk_mpi_rank(void) { return rank; }
int dk_mpi_size(void) { return size; }
const char *dk_mpi_library_version(void) { return version; }

static int report(int rc, const char *what, char *message, int capacity) {
    if (rc == 0) return 0;
    if (message && capacity > 0) {
        char text[512] = "";
        int length = 0;
        if (p_error_string) p_error_string(rc, text, &length);
        snprintf(message, (size_t)capacity, "%s failed on rank %d: %s (error %d)", what, rank, text, rc);
    }
    return rc;
}

static int not_running(char *message, int capacity) {
    if (message && capacity > 0) snprintf(message, (size_t)capacity, "MPI is not running in this process");
    return -1;
}

int dk_mpi_allreduce_sum_float(float *buffer, long count, char *message, int capacity) {
    if (state != 1) return size == 1 ? 0 : not_running(message, capacity);
    for (long start = 0; start < count; start += CHUNK) {
        int n = (int)(count - start < CHUNK ? count - start : CHUNK);
        int rc = p_allreduce(IN_PLACE, buffer + start, n, type_float, op_sum, comm_world);
        if (rc) return report(rc, "MPI_Allreduce", message, capacity);
    }
    return 0;
}

int dk_mpi_allreduce_sum_double(double *buffer, long count, char *message, int capacity) {
    if (state != 1) return size == 1 ? 0 : not_running(message, capacity);
    for (long start = 0; start < count; start += CHUNK) {
        int n = (int)(count - start < CHUNK ? count - start : CHUNK);
        int rc = p_allreduce(IN_PLACE, buffer + start, n, type_double, op_sum, comm_world);
        if (rc) return report(rc, "MPI_Allreduce", message, capacity);
    }
    return 0;
}

int dk_mpi_broadcast(void *buffer, long bytes, int root, char *message, int capacity) {
    if (state != 1) return size == 1 ? 0 : not_running(message, capacity);
    for (long start = 0; start < bytes; start += CHUNK) {
        int n = (int)(bytes - start < CHUNK ? bytes - start : CHUNK);
        int rc = p_bcast((char *)buffer + start, n, type_byte, root, comm_world);
        if (rc) return report(rc, "MPI_Bcast", message, capacity);
    }
    return 0;
}

static int too_long(long bytes, char *message, int capacity) {
    if (message && capacity > 0)
        snprintf(message, (size_t)capacity, "a message of %ld bytes is longer than one MPI message can be (%d)", bytes, INT_MAX);
    return -1;
}

int dk_mpi_send(const void *buffer, long bytes, int destination, int tag, char *message, int capacity) {
    if (state != 1) return not_running(message, capacity);
    if (bytes < 0 || bytes > INT_MAX) return too_long(bytes, message, capacity);
    return report(p_send(buffer, (int)bytes, type_byte, destination, tag, comm_world), "MPI_Send", message, capacity);
}

int dk_mpi_probe(int source, int tag, int *found, int *from, long *bytes, char *message, int capacity) {
    *found = 0;
    if (state != 1) return not_running(message, capacity);
    status_t status;
    memset(&status, 0, sizeof status);
    int rc = p_iprobe(source < 0 ? ANY_SOURCE : source, tag, comm_world, found, &status);
    if (rc) return report(rc, "MPI_Iprobe", message, capacity);
    if (!*found) return 0;
    int count = 0;
    rc = p_get_count(&status, type_byte, &count);
    if (rc) return report(rc, "MPI_Get_count", message, capacity);
    *from = status.source;
    *bytes = count;
    return 0;
}

int dk_mpi_receive(void *buffer, long bytes, int source, int tag, char *message, int capacity) {
    if (state != 1) return not_running(message, capacity);
    if (bytes < 0 || bytes > INT_MAX) return too_long(bytes, message, capacity);
    status_t status;
    return report(p_recv(buffer, (int)bytes, type_byte, source, tag, comm_world, &status), "MPI_Recv", message, capacity);
}

int dk_mpi_barrier(char *message, int capacity) {
    if (state != 1) return 0;
    return report(p_barrier(comm_world), "MPI_Barrier", message, capacity);
}

void dk_mpi_abort(int code) {
    if (state == 1) p_abort(comm_world, code);
    exit(code);
}
