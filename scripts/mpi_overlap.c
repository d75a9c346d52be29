// Would overlapping the gradient allreduce with the backward pass pay on this machine?
//
// Measures, on every rank of `mpirun -np N`, for a gradient of FLOATS floats and COMPUTE_MS
// milliseconds of single-core arithmetic standing for the rest of the backward pass:
//   serial:     the computation, then MPI_Allreduce (what Trainer does today);
//   overlapped: MPI_Iallreduce started first, the computation with MPI_Test every CHUNKS-th of
//               it (Open MPI has no progress thread: a nonblocking collective only advances
//               inside MPI calls), then MPI_Wait.
// Prints the medians over REPEATS and how much of the allreduce's time the overlap hid.
//
//   mpicc -O2 -o mpi_overlap scripts/mpi_overlap.c
//   mpirun -np 2 ./mpi_overlap FLOATS COMPUTE_MS [CHUNKS] [REPEATS]
//
// Used by scripts/mpi_bench.sh with the gradient sizes of cnn-small (421,642 floats) and of the
// MLP student mlp:784-64-10 (50,890), and their step times (BENCHMARKS.md, "Open MPI").
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double now(void) { return MPI_Wtime(); }

// About `units` × 4 µs of dependent floating-point work on a small buffer (kept in cache, so
// that it stands for compute-bound backward work rather than memory traffic).
static float work(float *scratch, long units) {
    float acc = 0;
    for (long u = 0; u < units; u++)
        for (int i = 0; i < 1024; i++) { scratch[i] = scratch[i] * 0.999f + 0.001f; acc += scratch[i]; }
    return acc;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, compare);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 3) {
        if (rank == 0) fprintf(stderr, "usage: mpirun -np N %s FLOATS COMPUTE_MS [CHUNKS] [REPEATS]\n", argv[0]);
        MPI_Finalize();
        return 2;
    }
    long floats = atol(argv[1]);
    double compute_ms = atof(argv[2]);
    int chunks = argc > 3 ? atoi(argv[3]) : 16, repeats = argc > 4 ? atoi(argv[4]) : 30;
    if (floats <= 0 || compute_ms <= 0 || chunks <= 0 || repeats <= 0) {
        if (rank == 0) fprintf(stderr, "FLOATS, COMPUTE_MS, CHUNKS and REPEATS must be positive\n");
        MPI_Finalize();
        return 2;
    }
    float *gradient = malloc((size_t)floats * sizeof(float)), scratch[1024];
    for (long i = 0; i < floats; i++) gradient[i] = (float)(i % 97) / 97.0f;
    for (int i = 0; i < 1024; i++) scratch[i] = (float)i / 1024.0f;
    volatile float sink = 0;

    // Calibrate the work to COMPUTE_MS on this rank (the same units on every rank: rank 0's).
    // The fastest of five timings: on a shared machine a slow one means the rank was descheduled.
    long units = 64;
    for (;;) {
        double best = 1e30;
        for (int k = 0; k < 5; k++) {
            double t0 = now();
            sink += work(scratch, units);
            double ms = (now() - t0) * 1e3;
            if (ms < best) best = ms;
        }
        if (best > 20 || units > (1L << 30)) { units = (long)(units * compute_ms / best); break; }
        units *= 2;
    }
    if (units < 1) units = 1;
    MPI_Bcast(&units, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    long per_chunk = units / chunks > 0 ? units / chunks : 1;

    double *comm = malloc(sizeof(double) * repeats), *comp = malloc(sizeof(double) * repeats),
           *serial = malloc(sizeof(double) * repeats), *overlapped = malloc(sizeof(double) * repeats);
    for (int r = 0; r < repeats; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now();
        MPI_Allreduce(MPI_IN_PLACE, gradient, (int)floats, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        comm[r] = now() - t0;

        MPI_Barrier(MPI_COMM_WORLD);
        t0 = now();
        for (int c = 0; c < chunks; c++) sink += work(scratch, per_chunk);
        comp[r] = now() - t0;

        MPI_Barrier(MPI_COMM_WORLD);
        t0 = now();
        for (int c = 0; c < chunks; c++) sink += work(scratch, per_chunk);
        MPI_Allreduce(MPI_IN_PLACE, gradient, (int)floats, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        serial[r] = now() - t0;

        MPI_Barrier(MPI_COMM_WORLD);
        t0 = now();
        MPI_Request request;
        int done = 0;
        MPI_Iallreduce(MPI_IN_PLACE, gradient, (int)floats, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &request);
        for (int c = 0; c < chunks; c++) {
            sink += work(scratch, per_chunk);
            if (!done) MPI_Test(&request, &done, MPI_STATUS_IGNORE);
        }
        MPI_Wait(&request, MPI_STATUS_IGNORE);
        overlapped[r] = now() - t0;
    }
    double m_comm = median(comm, repeats) * 1e3, m_comp = median(comp, repeats) * 1e3;
    double m_serial = median(serial, repeats) * 1e3, m_over = median(overlapped, repeats) * 1e3;
    if (rank == 0) {
        printf("ranks %d, %ld floats (%.0f KB), compute %.2f ms in %d chunks: allreduce %.3f ms, compute %.3f ms, "
               "serial %.3f ms, overlapped %.3f ms, hidden %.0f%% of the allreduce\n",
               size, floats, floats * 4 / 1024.0, m_comp, chunks, m_comm, m_comp, m_serial, m_over,
               100 * (m_serial - m_over) / m_comm);
    }
    free(gradient); free(comm); free(comp); free(serial); free(overlapped);
    MPI_Finalize();
    return sink == 12345.0f;  // keeps the work from being optimised away; never true in practice
}
