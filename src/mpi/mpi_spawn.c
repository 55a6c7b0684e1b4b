/*
 * mpi_spawn.c - the Pool on workers started with MPI_Comm_spawn (as
 * mpi4py's MPIPoolExecutor does): the parent spawns them, both sides merge
 * the intercommunicator into one where the parent is rank 0, and the pool
 * of mpi_pool.c / mpi_worker.c runs over it unchanged.
 */
#include <mpipc/mpi.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A spawned worker: serve the parent's pool, then let the parent go. */
static int mpi_spawn_serve(MPI_Comm parent)
{
    MPI_Comm merged = MPI_COMM_NULL;
    MPI_Comm_set_errhandler(parent, MPI_ERRORS_RETURN);
    if (MPI_Intercomm_merge(parent, 1, &merged) != MPI_SUCCESS)
        return MP_EPROTO;
    int rc = mp_mpi_worker_main(merged);
    MPI_Comm_free(&merged);
    /* Freed, not disconnected: a disconnect waits for every process of
     * both sides, and a dead sibling would hold it forever. */
    MPI_Comm_free(&parent);
    return rc;
}

/* What the ranks could not take, found before anything is spawned. */
static int mpi_spawn_check(mp_pool **out, const mp_pool_opts *o)
{
    int level = 0;
    const char *name;
    if (!out)
        return -EINVAL;
    (void)MPI_Query_thread(&level);
    if (level < MPI_THREAD_MULTIPLE || o->processes < 0 || o->maxtasksperchild != 0 || o->ctx ||
        o->initarg)
        return MP_EVALUE;
    if (o->initializer && mp_task_name(MP_TASK_INIT, (mp_task_fn)o->initializer, &name) < 0)
        return MP_EKEY;
    return 0;
}

/* -errno unless cmd names a program this process could run, looked up in
 * PATH when it has no '/' (as MPI_Comm_spawn does). */
static int mpi_spawn_runnable(const char *cmd)
{
    if (!cmd[0])
        return -ENOENT;
    if (strchr(cmd, '/'))
        return access(cmd, X_OK) == 0 ? 0 : -errno;
    const char *path = getenv("PATH");
    char full[PATH_MAX];
    int err = -ENOENT;
    for (const char *d = path ? path : ""; *d;) {
        size_t n = strcspn(d, ":");
        if (n > 0 && snprintf(full, sizeof full, "%.*s/%s", (int)n, d, cmd) < (int)sizeof full) {
            if (access(full, X_OK) == 0)
                return 0;
            if (errno == EACCES)
                err = -EACCES;
        }
        d += n + (d[n] == ':');
    }
    return err;
}

/* MPI_Comm_spawn the workers; returns 0 with *inter, -errno for a program
 * that cannot run (Open MPI 4.1's spawn hangs on one), or MP_EWORKER. */
static int mpi_spawn_run(int n, const mp_mpi_opts *mopts, MPI_Comm *inter)
{
    char exe[PATH_MAX];
    const char *cmd = mopts ? mopts->command : NULL;
    if (!cmd) {
        ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (len <= 0)
            return MP_EWORKER;
        exe[len] = '\0';
        cmd = exe;
    }
    int rc = mpi_spawn_runnable(cmd);
    if (rc < 0)
        return rc;
    char **argv = mopts && mopts->argv ? (char **)mopts->argv : MPI_ARGV_NULL;
    /* MPI_COMM_SELF's error handler is the caller's: set for the call only. */
    MPI_Errhandler old;
    MPI_Comm_get_errhandler(MPI_COMM_SELF, &old);
    MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
    rc = MPI_Comm_spawn(cmd, argv, n, MPI_INFO_NULL, 0, MPI_COMM_SELF, inter, MPI_ERRCODES_IGNORE);
    MPI_Comm_set_errhandler(MPI_COMM_SELF, old);
    MPI_Errhandler_free(&old);
    return rc == MPI_SUCCESS ? 0 : MP_EWORKER;
}

MP_API int mp_pool_new_mpi_spawn(mp_pool **out, const mp_pool_opts *opts, const mp_mpi_opts *mopts)
{
    MPI_Comm parent = MPI_COMM_NULL, inter = MPI_COMM_NULL, merged = MPI_COMM_NULL;
    int inited = 0;
    if (out)
        *out = NULL;
    if (MPI_Initialized(&inited) != MPI_SUCCESS || !inited)
        return MP_EVALUE;
    if (MPI_Comm_get_parent(&parent) != MPI_SUCCESS)
        return MP_EPROTO;
    if (parent != MPI_COMM_NULL)
        return mpi_spawn_serve(parent);
    mp_pool_opts defaults = MP_POOL_OPTS_INIT, o = opts ? *opts : defaults;
    int rc = mpi_spawn_check(out, &o);
    if (rc < 0)
        return rc;
    if (o.processes == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.processes = n > 0 ? (n > 4096 ? 4096 : (int)n) : 1;
    }
    rc = mpi_spawn_run(o.processes, mopts, &inter);
    if (rc < 0)
        return rc;
    MPI_Comm_set_errhandler(inter, MPI_ERRORS_RETURN);
    if (MPI_Intercomm_merge(inter, 0, &merged) != MPI_SUCCESS) {
        MPI_Comm_free(&inter);
        return MP_EPROTO;
    }
    /* The pool works on a duplicate of merged: both can go now. */
    rc = mp_pool_new_mpi(out, &o, merged, mopts);
    MPI_Comm_free(&merged);
    MPI_Comm_free(&inter);
    return rc;
}
