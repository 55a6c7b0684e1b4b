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
 * The pool's own test cases run on ranks too (ctest's pool_mpi,
 * pool_life_mpi, pool_lazy_mpi, pool_bytes_mpi: one mp_pool_new_mpi after
 * another on the same communicator, dozens per program). What a pool of
 * ranks cannot do, and the fork pool's cases that test it: replace a worker
 * (maxtasksperchild is refused, MP_EVALUE; a dead rank stays gone, its exit
 * status unknown, and MPI_COMM_WORLD serves no later pool once a rank has
 * died), share the caller's memory (an initarg or task argument that is a
 * pointer, a descriptor made by rank 0), a pool made in a child forked from
 * a rank (it cannot take part in MPI), a start method (ctx), and stopping a
 * running task (above: the next pool waits until the rank is free).
 *
 * Dynamic process management (mp_pool_new_mpi_spawn, as MPIPoolExecutor
 * does): a program started alone (`./app`, or `mpirun -n 1 ./app`) spawns
 * its workers with MPI_Comm_spawn; they re-execute the program, whose same
 * call finds their parent communicator and serves the pool. Debian's Open
 * MPI 4.1 does it in singleton mode (it starts an orted for the spawn), but
 * places at most one process per core unless told to oversubscribe: set
 * OMPI_MCA_rmaps_base_oversubscribe=1 (and, as root,
 * OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1), or run
 * `mpirun -n 1 --oversubscribe`; otherwise the spawn fails (MP_EWORKER).
 * Seen with Open MPI 4.1.4 in singleton mode on a loaded machine: the third
 * MPI_Comm_spawn of one program now and then leaves a spawned process
 * stuck in MPI_Init (PMIx_Init) and the spawn never returns; one pool
 * spawned per program, as MPIPoolExecutor programs do, has not shown it.
 * Ranks on other hosts are watched through MPI only.
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
 * command:     mp_pool_new_mpi_spawn only: the program the spawned workers
 *              run (its path); NULL means this program (/proc/self/exe),
 *              which must call mp_pool_new_mpi_spawn as the parent does.
 * argv:        mp_pool_new_mpi_spawn only: the workers' arguments after the
 *              program's name, ending in NULL (MPI_Comm_spawn's argv);
 *              NULL means none.
 */
typedef struct mp_mpi_opts {
    size_t message_max;  /* the largest chunk input sent; 0: MP_MPI_MESSAGE_MAX */
    const char *command; /* spawn: the workers' program; NULL: this one */
    char *const *argv;   /* spawn: its arguments, NULL-terminated; NULL: none */
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
 * mp_pool_new_mpi_spawn - a pool whose workers are processes spawned with
 * MPI_Comm_spawn (Python: mpi4py.futures.MPIPoolExecutor(max_workers)).
 * Call it in the parent, started alone, and in the workers, which run the
 * same program (mopts->command NULL) and reach the same call: there it
 * finds the parent communicator (MPI_Comm_get_parent), serves the parent's
 * pool until it is closed and joined, or freed, and returns
 * MP_MPI_WORKER_DONE. MPI_Init_thread with MPI_THREAD_MULTIPLE first, on
 * both sides; the library never initializes or finalizes MPI.
 *
 *     int rc = mp_pool_new_mpi_spawn(&pool, &opts, NULL);   // was mp_pool_new
 *     if (rc == MP_MPI_WORKER_DONE) { MPI_Finalize(); return 0; } // a worker
 *
 * out:   in the parent, the new pool; set to NULL in workers and on failure.
 * opts:  as for mp_pool_new_mpi; processes is the number of workers spawned
 *        (0: the number of online CPUs).
 * mopts: NULL for every default, or the MPI options (read in the parent):
 *        command and argv choose the workers' program.
 *
 * Returns 0 in the parent with *out set; MP_MPI_WORKER_DONE in a worker
 * once let go; -EINVAL for out NULL; MP_EVALUE for bad options, MPI not
 * initialized or initialized without MPI_THREAD_MULTIPLE; MP_EKEY for an
 * unregistered initializer; -ENOENT or -EACCES for a program that cannot
 * be run (looked up in PATH without a '/'; Open MPI 4.1's spawn would hang
 * on it) - all found before spawning; MP_EWORKER when MPI_Comm_spawn fails
 * (Open MPI prints why, e.g. too few slots without oversubscription);
 * -ENOMEM; MP_EPROTO when MPI fails.
 * The pool then behaves as mp_pool_new_mpi's: a dead worker fails its task
 * with MP_EWORKER (Open MPI told to survive it:
 * OMPI_MCA_orte_abort_on_non_zero_status=0), and with none left every
 * pending result gets MP_EBROKEN. Under Open MPI's default the death ends
 * the other spawned workers but not the parent: the pool reports
 * MP_EBROKEN to what is pending, and the parent goes on.
 * Ownership: *out is the caller's, released with mp_pool_free before
 * MPI_Finalize. The workers' communicators are freed, not disconnected.
 * Thread/fork: the pool is used as any mp_pool; MPI_COMM_SELF's error
 * handler is set to MPI_ERRORS_RETURN during the spawn and restored.
 */
MP_API int mp_pool_new_mpi_spawn(mp_pool **out, const mp_pool_opts *opts, const mp_mpi_opts *mopts);

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
