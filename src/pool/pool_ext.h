/*
 * pool_ext.h - the pool's hook for workers that are not forked processes
 * (src/mpi: MPI ranks). The only mp__ symbols libmpipc exports, for the
 * optional libmpipc_mpi built from this same tree; not part of the API.
 */
#ifndef MPIPC_POOL_EXT_H
#define MPIPC_POOL_EXT_H

#include <mpipc/common.h>
#include <mpipc/conn.h>
#include <mpipc/pool.h>

#include <stdbool.h>
#include <stddef.h>

/* Where a worker sends each chunk's result message: 0 or a negative code. */
struct mp__pool_sink {
    int (*send)(void *ctx, const void *buf, size_t len);
    void *ctx;
};

/*
 * A pool's worker server other than the fork server. start() is given the
 * server's end of the control connection (struct zmsg, pool_impl.h), which
 * it then owns, and serves it as the fork server does: on Z_SPAWN it
 * connects a worker for that slot back to p->lis_addr with a struct hello
 * and answers Z_SPAWNED; it answers Z_DIED when the worker is gone, and
 * closes the control connection (the pool then fails what is left with
 * lost_status) when it can serve no more. reap() waits for it to finish
 * once the pool's threads have stopped (after Z_EXIT, or a closed control
 * connection). Tasks travel by registered id, as under spawn.
 */
struct mp__pool_ext {
    int (*start)(mp_pool *p, mp_conn *ctl, void *arg);
    void (*reap)(mp_pool *p, void *arg);
    void *arg;
    int lost_status; /* what unfinished jobs get once the server is gone */
};

/* mp_pool_new with ext's server; processes is the number of workers. */
MP_API int mp__pool_new_ext(mp_pool **out, const mp_pool_opts *opts,
                            const struct mp__pool_ext *ext);

/* What runs batches outside a forked worker: its buffers and slot. */
struct mp__pool_exec;
MP_API int mp__pool_exec_new(struct mp__pool_exec **out);
MP_API void mp__pool_exec_free(struct mp__pool_exec *x);

/* Run one batch message (len bytes, tasks by registered id), sending each
 * chunk's result through sink. Returns 0, 1 when the batch said exit, or
 * a negative code (malformed message, a result that could not be sent). */
MP_API int mp__pool_exec_batch(struct mp__pool_exec *x, const void *msg, size_t len,
                               const struct mp__pool_sink *sink);

#endif
