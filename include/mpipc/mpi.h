/*
 * mpipc/mpi.h - the Pool on MPI ranks (libmpipc_mpi, an optional library:
 * link with `pkg-config --libs mpipc_mpi` or CMake's mpipc::mpipc_mpi).
 * Not included by <mpipc.h>, which stays POSIX-only.
 *
 * The anchor is mpi4py's MPICommExecutor: a program started with
 * `mpirun -n N ./app` calls mp_pool_new_mpi on every rank. On the root
 * (rank 0 of comm) it returns an ordinary mp_pool whose N-1 workers are the
 * other ranks, so every mp_pool_* call works on it (apply, map, imap,
 * starmap families, chunksize, callbacks, close, join, terminate); on the
 * other ranks it serves tasks until the root's pool is closed or freed,
 * then returns MP_MPI_WORKER_DONE, and the program returns from main.
 *
 *     mp_pool *pool;
 *     int rc = mp_pool_new_mpi(&pool, &opts, MPI_COMM_WORLD, NULL); // was mp_pool_new
 *     if (rc == MP_MPI_WORKER_DONE) return 0;                  // a worker rank
 *
 * Tasks travel by their registered name (MP_TASK, as under spawn): every
 * rank runs the same program, whose MP_TASK lines register the same names.
 * Function pointers are never sent. Value, bytes and array task forms work
 * as on a fork pool. The initializer must be registered (MP_TASK) and
 * initarg NULL; maxtasksperchild must be 0 (a rank is not replaced).
 *
 * Failure. A rank that dies while the root's MPI survives it (Open MPI
 * with `--mca orte_abort_on_non_zero_status 0`, ranks on the root's host)
 * fails the chunk it was running with MP_EWORKER, as a dead fork worker
 * does; the root notices within about 0.1 s by the rank's pid (ranks on
 * another host are checked only through MPI). The chunks it had not
 * started go to the other ranks. Once no rank is left, every pending result
 * gets MP_EBROKEN instead of waiting forever. With Open MPI's default,
 * mpirun ends the whole job when a rank dies (the root too): nothing hangs.
 * mp_pool_terminate cannot stop a task running on a rank: the rank's later
 * results are dropped and the rank stops at its next batch.
 *
 * Left for later: dynamic process management (MPI_Comm_spawn, as
 * MPIPoolExecutor does without mpirun -n): Debian's Open MPI 4.1 supports
 * it, but a spawned world needs its own launcher story (singleton mode,
 * an ompi-server) that the tests cannot run in CI; the ranks' communicator
 * is the caller's. Ranks on other hosts are watched through MPI only.
 */
#ifndef MPIPC_MPI_H
#define MPIPC_MPI_H

#include <mpipc/pool.h>

#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What mp_pool_new_mpi and mp_mpi_worker_main return on a worker rank
 * once the root's pool has let it go. Positive: not an error. */
#define MP_MPI_WORKER_DONE 1

/* The default of mp_mpi_opts.message_max, in bytes (1 GiB). */
#define MP_MPI_MESSAGE_MAX ((size_t)1 << 30)

/*
 * Options for mp_pool_new_mpi. Initialise with MP_MPI_OPTS_INIT so that
 * fields added later get their defaults.
 *
 * message_max: the largest task input, in bytes, of one chunk sent to a
 *              rank: a chunk whose inputs are bigger fails on the root with
 *              MP_EVALUE ("task input too big for MPI") before it is sent,
 *              and the other chunks go on. 0 means MP_MPI_MESSAGE_MAX.
 */
typedef struct mp_mpi_opts {
    size_t message_max; /* the largest chunk input sent; 0: MP_MPI_MESSAGE_MAX */
} mp_mpi_opts;

/* Every default of mp_mpi_opts. */
#define MP_MPI_OPTS_INIT                                                                           \
    {                                                                                              \
        0                                                                                          \
    }

/*
 * mp_pool_new_mpi - a pool whose workers are the ranks of comm other than
 * rank 0 (Python: mpi4py.futures.MPICommExecutor(comm, root=0)). Call it
 * on every rank of comm, after MPI_Init_thread with MPI_THREAD_MULTIPLE
 * (the root's pool talks MPI from a thread of its own); the library never
 * initializes or finalizes MPI.
 *
 * out:  on rank 0, the new pool; set to NULL on other ranks and on failure.
 * opts: as for mp_pool_new; processes must be 0 (every other rank) or at
 *       most the communicator's size - 1; initializer registered
 *       (MP_TASK), initarg NULL, maxtasksperchild 0, ctx NULL.
 * comm: the communicator (MPI_COMM_WORLD); the pool uses a duplicate.
 * mopts: NULL for every default, or the MPI options (read on rank 0).
 *
 * Returns 0 on rank 0 with *out set; MP_MPI_WORKER_DONE on other ranks
 * once the root's pool has been closed and joined, or freed; -EINVAL for
 * out NULL on rank 0 (the other ranks are let go); MP_EVALUE for
 * a communicator of size 1, bad options, or MPI initialized without
 * MPI_THREAD_MULTIPLE; MP_EKEY for an unregistered initializer; -ENOMEM;
 * MP_EPROTO when MPI fails.
 * Ownership: *out is the caller's, released with mp_pool_free (which lets
 * the worker ranks return) before MPI_Finalize: the pool's thread talks MPI
 * until then.
 * Thread/fork: the pool is used as any mp_pool; do not call MPI on comm
 * from other threads while it lives.
 */
MP_API int mp_pool_new_mpi(mp_pool **out, const mp_pool_opts *opts, MPI_Comm comm,
                           const mp_mpi_opts *mopts);

/*
 * mp_mpi_worker_main - serve the pool of comm's rank 0 on this rank: run
 * its tasks until the pool lets the rank go (mp_pool_new_mpi calls it on
 * ranks other than 0).
 *
 * comm: the communicator the root passed to mp_pool_new_mpi.
 *
 * Returns MP_MPI_WORKER_DONE once released; MP_EVALUE on rank 0 or for a
 * communicator of size 1; -ENOMEM; MP_EPROTO when MPI fails.
 * Thread/fork: call it from one thread per rank.
 */
MP_API int mp_mpi_worker_main(MPI_Comm comm);

#ifdef __cplusplus
}
#endif

#endif
