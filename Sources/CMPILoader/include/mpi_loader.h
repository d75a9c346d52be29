// Open MPI, loaded with dlopen only when the process was started by mpirun.
//
// Why not link it: DistillKit must build and run where Open MPI is not installed, and one
// process (the usual case) must not pay for it. `mpirun` sets OMPI_COMM_WORLD_SIZE in each
// process it starts; only then is libmpi.so.40 loaded, and a missing library is an error that
// names the Debian packages. MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are C
// macros over the addresses of global objects in libmpi (`&ompi_mpi_comm_world`), resolved
// here with dlsym; MPI_IN_PLACE is the constant (void *)1 in Open MPI's ABI.
//
// Only the thread that called dk_mpi_init makes MPI calls (MPI_THREAD_FUNNELED).
#ifndef DISTILLKIT_MPI_LOADER_H
#define DISTILLKIT_MPI_LOADER_H

#ifdef __cplusplus
extern "C" {
#endif

/// Starts MPI once when this process was started by mpirun (OMPI_COMM_WORLD_SIZE set).
/// Returns 0 for a single process (not under mpirun: nothing is loaded), 1 when MPI runs,
/// -1 on error with the reason in `message` (at most `capacity` bytes). Once MPI runs, the
/// process finalizes it when it exits with status 0; with any other status it prints which rank
/// and host stopped and calls MPI_Abort, which stops every rank of the job at once (unless
/// `dk_mpi_exit_together` was called).
int dk_mpi_init(char *message, int capacity);

/// This process's rank and the number of ranks (0 and 1 without MPI).
int dk_mpi_rank(void);
int dk_mpi_size(void);

/// "Open MPI v4.1.4, ..." once started, else "".
const char *dk_mpi_library_version(void);

/// In-place sums over every rank of `count` floats / doubles (MPI_Allreduce with MPI_IN_PLACE).
/// Returns 0, or an MPI error code with the reason in `message`.
int dk_mpi_allreduce_sum_float(float *buffer, long count, char *message, int capacity);
int dk_mpi_allreduce_sum_double(double *buffer, long count, char *message, int capacity);

/// Copies `bytes` bytes from rank `root`'s `buffer` into every other rank's (MPI_Bcast).
int dk_mpi_broadcast(void *buffer, long bytes, int root, char *message, int capacity);

/// Sends `bytes` bytes (at most INT_MAX) to rank `destination` with `tag` (MPI_Send of MPI_BYTE).
int dk_mpi_send(const void *buffer, long bytes, int destination, int tag, char *message, int capacity);

/// Whether a message with `tag` from `source` (-1: any rank) has arrived, without receiving it
/// (MPI_Iprobe): `*found` is 1 and `*from` and `*bytes` say whose and how long, or `*found` is 0.
int dk_mpi_probe(int source, int tag, int *found, int *from, long *bytes, char *message, int capacity);

/// Receives the message of `bytes` bytes with `tag` from rank `source` into `buffer` (MPI_Recv);
/// call after `dk_mpi_probe` found it, so that the call does not wait.
int dk_mpi_receive(void *buffer, long bytes, int source, int tag, char *message, int capacity);

/// Waits until every rank has called it.
int dk_mpi_barrier(char *message, int capacity);

/// Every rank has agreed to exit now (e.g. all stop after the same step with a checkpoint, on a
/// signal): a non-zero exit status then finalizes MPI like status 0 instead of calling MPI_Abort,
/// so that mpirun does not report a rank as having failed.
void dk_mpi_exit_together(void);

/// Stops every rank of the job with `code` (MPI_Abort on MPI_COMM_WORLD); does not return.
void dk_mpi_abort(int code);

#ifdef __cplusplus
}
#endif
#endif
