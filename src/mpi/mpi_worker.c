/*
 * mpi_worker.c - a worker rank of the Pool on MPI ranks: it runs the
 * root's initializer, then the batches the root relays, sending each
 * chunk's result back, until the root lets it go (T_EXIT, or the pool's
 * own exit message inside a batch). mpi_impl.h has the messages.
 */
#include "mpi/mpi_impl.h"
#include "pool/pool_ext.h"

#include <mpipc/mpi.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct mpi_wk {
    MPI_Comm comm;
    unsigned char *buf;
    size_t cap;
    uint64_t nbatch;
};

static int mpi_wk_send(void *ctx, const void *buf, size_t len)
{
    struct mpi_wk *w = ctx;
    if (len > INT_MAX)
        return MP_EVALUE;
    return MPI_Send(buf, (int)len, MPI_BYTE, 0, T_RESULT, w->comm) == MPI_SUCCESS ? 0 : MP_EPROTO;
}

/* Wait (politely: no busy MPI_Probe, the ranks may share cores) for a
 * message from the root; T_EXIT first when one is there. */
static int mpi_wk_probe(struct mpi_wk *w, MPI_Status *st)
{
    long nap = 10000;
    for (;;) {
        int flag = 0;
        if (MPI_Iprobe(0, T_EXIT, w->comm, &flag, st) != MPI_SUCCESS)
            return MP_EPROTO;
        if (!flag && MPI_Iprobe(0, MPI_ANY_TAG, w->comm, &flag, st) != MPI_SUCCESS)
            return MP_EPROTO;
        if (flag)
            return 0;
        struct timespec ts = {0, nap};
        nanosleep(&ts, NULL);
        if (nap < 1000000)
            nap += nap / 4;
    }
}

/* Receive the probed message into w->buf. Returns its length or < 0. */
static ssize_t mpi_wk_recv(struct mpi_wk *w, const MPI_Status *st)
{
    int count = 0;
    MPI_Get_count(st, MPI_BYTE, &count);
    if (count < 0)
        return MP_EPROTO;
    size_t need = count ? (size_t)count : 1;
    if (need > w->cap) {
        unsigned char *b = realloc(w->buf, need);
        if (!b)
            return -ENOMEM;
        w->buf = b;
        w->cap = need;
    }
    if (MPI_Recv(w->buf, count, MPI_BYTE, 0, st->MPI_TAG, w->comm, MPI_STATUS_IGNORE) !=
        MPI_SUCCESS)
        return MP_EPROTO;
    return count;
}

/* T_EXIT: take (and drop) the batches still on their way, so that every
 * send of the root's completes, then say goodbye. */
static int mpi_wk_exit(struct mpi_wk *w, ssize_t len)
{
    uint64_t total = 0;
    if (len == (ssize_t)sizeof total)
        memcpy(&total, w->buf, sizeof total);
    while (w->nbatch < total) {
        MPI_Status st;
        if (MPI_Probe(0, T_BATCH, w->comm, &st) != MPI_SUCCESS || mpi_wk_recv(w, &st) < 0)
            return MP_EPROTO;
        w->nbatch++;
    }
    return MPI_Send(NULL, 0, MPI_BYTE, 0, T_BYE, w->comm) == MPI_SUCCESS ? MP_MPI_WORKER_DONE
                                                                         : MP_EPROTO;
}

/* T_CONFIG: run the initializer by its name, then say hello. */
static int mpi_wk_config(struct mpi_wk *w, ssize_t len)
{
    struct mpi_config cfg;
    struct mpi_hello h = {.pid = (int32_t)getpid(), .init_ok = 1};
    if (len != (ssize_t)sizeof cfg)
        return MP_EPROTO;
    memcpy(&cfg, w->buf, sizeof cfg);
    cfg.init_name[sizeof cfg.init_name - 1] = '\0';
    if (cfg.init_name[0]) {
        mp_task_fn fn;
        if (mp_task_lookup(MP_TASK_INIT, cfg.init_name, &fn) == 0)
            ((mp_init_fn)fn)(NULL);
        else
            h.init_ok = 0;
    }
    if (gethostname(h.host, sizeof h.host) < 0)
        h.host[0] = '\0';
    h.host[sizeof h.host - 1] = '\0';
    return MPI_Send(&h, sizeof h, MPI_BYTE, 0, T_HELLO, w->comm) == MPI_SUCCESS ? 0 : MP_EPROTO;
}

/* Serve until let go: MP_MPI_WORKER_DONE, or < 0 when MPI or memory fails. */
static int mpi_wk_serve(struct mpi_wk *w, struct mp__pool_exec *x)
{
    struct mp__pool_sink sink = {.send = mpi_wk_send, .ctx = w};
    for (;;) {
        MPI_Status st;
        int rc = mpi_wk_probe(w, &st);
        ssize_t len = rc < 0 ? rc : mpi_wk_recv(w, &st);
        if (len < 0)
            return (int)len;
        if (st.MPI_TAG == T_EXIT)
            return mpi_wk_exit(w, len);
        if (st.MPI_TAG == T_CONFIG && (rc = mpi_wk_config(w, len)) < 0)
            return rc;
        if (st.MPI_TAG != T_BATCH)
            continue;
        w->nbatch++;
        /* Before running it: a death from now on is this batch's to blame. */
        if (MPI_Send(&w->nbatch, sizeof w->nbatch, MPI_BYTE, 0, T_STARTED, w->comm) != MPI_SUCCESS)
            return MP_EPROTO;
        rc = mp__pool_exec_batch(x, w->buf, (size_t)len, &sink);
        if (rc < 0)
            return rc;
        if (rc == 1) /* the pool closed: this rank's worker exits */
            return MPI_Send(NULL, 0, MPI_BYTE, 0, T_BYE, w->comm) == MPI_SUCCESS
                       ? MP_MPI_WORKER_DONE
                       : MP_EPROTO;
    }
}

MP_API int mp_mpi_worker_main(MPI_Comm comm)
{
    int inited = 0, rank = 0, size = 0;
    if (MPI_Initialized(&inited) != MPI_SUCCESS || !inited || comm == MPI_COMM_NULL)
        return MP_EVALUE;
    if (MPI_Comm_rank(comm, &rank) != MPI_SUCCESS || MPI_Comm_size(comm, &size) != MPI_SUCCESS)
        return MP_EPROTO;
    if (rank == 0 || size < 2)
        return MP_EVALUE;
    struct mpi_wk w = {.comm = MPI_COMM_NULL};
    if (MPI_Comm_dup(comm, &w.comm) != MPI_SUCCESS)
        return MP_EPROTO;
    MPI_Comm_set_errhandler(w.comm, MPI_ERRORS_RETURN);
    struct mp__pool_exec *x = NULL;
    int rc = mp__pool_exec_new(&x);
    if (rc == 0)
        rc = mpi_wk_serve(&w, x);
    mp__pool_exec_free(x);
    free(w.buf);
    MPI_Comm_free(&w.comm);
    return rc;
}
