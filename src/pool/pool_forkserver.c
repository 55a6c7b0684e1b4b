/*
 * pool_forkserver.c - the pool's fork server, a child process that forks,
 * signals and reaps the workers; and the pool's side of talking to it
 * (struct zmsg). The workers it forks run pool_worker.c; pool_impl.h lists
 * the other siblings.
 *
 * Why a fork server (Python's forkserver start method, for the same
 * reason): forked once by mp_pool_new before the pool's threads exist, it
 * stays single-threaded and forks every worker. Forking from the pool's
 * own threads instead would give workers a copy of a process whose other
 * threads may have held a lock at that moment (ASan's allocator does not
 * survive it, and user code might not either). Workers are its children:
 * it reaps them and tells the pool each one's exit code; they connect back
 * to the pool through its private listener.
 *
 * Under the forkserver method (mp_pool_opts.ctx) the pool's server is not
 * forked from the pool's creator but started as a child of the process's
 * shared fork server (process/forkserver.c), under the target name
 * "mp__pool_server": it rebuilds the part of the pool it needs from its
 * arguments and inherited descriptors, then serves as above.
 */
#include "pool/pool_impl.h"

#include "core/shm.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

/* ---- the pool's side ------------------------------------------------------------ */

/*
 * Send the fork server a request about worker slot w (NULL for Z_EXIT):
 * Z_SPAWN (w->k is the new spawn's number), Z_KILL (arg: the signal; the
 * server checks the spawn number, so a slot's next worker is never hit) or
 * Z_EXIT. Returns what the send returned.
 */
int mp__pool_forkserver_send(mp_pool *p, uint32_t op, const struct worker *w, int arg)
{
    struct zmsg m = {.op = op, .arg = arg};
    if (w) {
        m.idx = (uint32_t)w->idx;
        m.k = w->k;
    }
    return mp_conn_send_bytes(p->zctl, &m, sizeof m);
}

/* Wait for the fork server to exit (it does once told to, or once its
 * control connection closes), killing it if it takes over 10 s. */
void mp__pool_forkserver_reap(mp_pool *p)
{
    if (p->ext.start) {
        p->ext.reap(p, p->ext.arg);
        return;
    }
    if (mp_process_join(p->zygote, 10.0) == MP_ETIMEDOUT) {
        (void)mp_process_kill(p->zygote);
        (void)mp_process_join(p->zygote, MP_FOREVER);
    }
}

/* ---- the server (a child process) ------------------------------------------------ */

struct pool_fs {
    mp_pool *p;         /* the pool as it was at fork: its slots, options */
    mp_conn *ctl;       /* to the pool */
    mp_process **procs; /* per slot: its worker, or NULL */
    uint32_t *ks;       /* per slot: that worker's spawn number */
};

static void pool_fs_reply(struct pool_fs *fs, uint32_t op, uint32_t idx, uint32_t k, pid_t pid,
                          int arg, int rc)
{
    struct zmsg m = {.op = op, .idx = idx, .k = k, .pid = (int32_t)pid, .arg = arg, .rc = rc};
    (void)mp_conn_send_bytes(fs->ctl, &m, sizeof m);
}

/* Worker i has ended: reap it and tell the pool its exit code. */
static void pool_fs_reap(struct pool_fs *fs, int i)
{
    int code = 0;
    int rc = mp_process_join(fs->procs[i], 5.0);
    if (rc == MP_ETIMEDOUT) {
        (void)mp_process_kill(fs->procs[i]);
        rc = mp_process_join(fs->procs[i], MP_FOREVER);
    }
    if (rc == 0)
        rc = mp_process_exitcode(fs->procs[i], &code);
    pool_fs_reply(fs, Z_DIED, (uint32_t)i, fs->ks[i], mp_process_pid(fs->procs[i]), code,
                  rc < 0 ? rc : 0);
    mp_process_free(fs->procs[i]);
    fs->procs[i] = NULL;
}

/* Fork a worker into slot m->idx, spawn number m->k, and tell the pool. */
static void pool_fs_spawn(struct pool_fs *fs, const struct zmsg *m)
{
    int i = (int)m->idx;
    int rc = fs->procs[i] ? -EBUSY : 0;
    mp_process *proc = NULL;
    if (rc == 0) {
        /* The worker reads its slot and spawn number from here. */
        fs->p->w[i].k = m->k;
        rc = mp_process_new(&proc, mp__pool_worker_main, &fs->p->w[i]);
    }
    if (rc == 0) {
        char name[32];
        snprintf(name, sizeof name, "PoolWorker-%u", (unsigned)m->k);
        (void)mp_process_set_name(proc, name);
        (void)mp_process_set_daemon(proc, true);
        rc = mp_process_start(proc);
    }
    if (rc == 0) {
        fs->procs[i] = proc;
        fs->ks[i] = m->k;
        pool_fs_reply(fs, Z_SPAWNED, m->idx, m->k, mp_process_pid(proc), 0, 0);
    } else {
        mp_process_free(proc);
        pool_fs_reply(fs, Z_SPAWN_FAILED, m->idx, m->k, 0, rc, rc);
    }
}

/* Carry out the pool's requests. Returns false when it says exit, or has
 * gone away. */
static bool pool_fs_requests(struct pool_fs *fs)
{
    do {
        struct zmsg m;
        ssize_t r = mp_conn_recv_bytes_into(fs->ctl, &m, sizeof m, 0, NULL, MP_NOWAIT);
        if (r == MP_ETIMEDOUT)
            break;
        if (r != (ssize_t)sizeof m || m.op == Z_EXIT)
            return false; /* the pool closed us, or went away */
        if (m.idx >= (uint32_t)fs->p->nproc)
            continue;
        int i = (int)m.idx;
        if (m.op == Z_KILL) {
            if (fs->procs[i] && fs->ks[i] == m.k)
                (void)(m.arg == SIGKILL ? mp_process_kill(fs->procs[i])
                                        : mp_process_terminate(fs->procs[i]));
        } else if (m.op == Z_SPAWN) {
            pool_fs_spawn(fs, &m);
        }
    } while (mp_conn_buffered(fs->ctl) > 0);
    return true;
}

/* The server's loop: wait for the pool's requests and the workers' ends;
 * deaths first, so a slot is free again before its next spawn. */
static void pool_fs_serve(struct pool_fs *fs, mp_wait_item *items, int *owner)
{
    pid_t pool_pid = getppid();
    for (;;) {
        size_t n = 0;
        items[n] = (mp_wait_item){.conn = fs->ctl, .fd = -1, .ready = 0};
        owner[n++] = -1;
        for (int i = 0; i < fs->p->nproc; i++) {
            if (!fs->procs[i])
                continue;
            items[n] =
                (mp_wait_item){.conn = NULL, .fd = mp_process_sentinel(fs->procs[i]), .ready = 0};
            owner[n++] = i;
        }
        int ready = mp_wait(items, n, WORKER_IDLE_CHECK);
        if (ready == 0) {
            if (getppid() != pool_pid)
                return; /* the pool's process is gone */
            continue;
        }
        if (ready < 0) {
            mp__sleep(0.001);
            continue;
        }
        for (size_t k = 1; k < n; k++)
            if (items[k].ready)
                pool_fs_reap(fs, owner[k]);
        if (items[0].ready && !pool_fs_requests(fs))
            return;
    }
}

int mp__pool_forkserver_main(void *arg)
{
    mp_pool *p = arg;
    struct pool_fs fs = {.p = p, .ctl = p->zctl_child};
    /* The pool's own descriptors are not ours (a forked listener's free
     * leaves the socket file to its creator). */
    mp_conn_free(p->zctl);
    p->zctl = NULL;
    mp_listener_free(p->lis);
    p->lis = NULL;
    if (p->notify[0] >= 0)
        mp__close(p->notify[0]);
    if (p->notify[1] >= 0)
        mp__close(p->notify[1]);
    size_t cap = (size_t)p->nproc + 1;
    fs.procs = calloc((size_t)p->nproc, sizeof *fs.procs);
    fs.ks = calloc((size_t)p->nproc, sizeof *fs.ks);
    mp_wait_item *items = calloc(cap, sizeof *items);
    int *owner = calloc(cap, sizeof *owner);
    int code = 1;
    if (fs.procs && fs.ks && items && owner) {
        pool_fs_serve(&fs, items, owner);
        /* Whatever is left (the pool's process died): end it. */
        for (int i = 0; i < p->nproc; i++) {
            if (fs.procs[i]) {
                (void)mp_process_kill(fs.procs[i]);
                (void)mp_process_join(fs.procs[i], MP_FOREVER);
                mp_process_free(fs.procs[i]);
            }
        }
        code = 0;
    }
    free(fs.procs);
    free(fs.ks);
    free(items);
    free(owner);
    mp_conn_free(fs.ctl);
    return code;
}

/* ---- the pool's server under the shared fork server ------------------------------- */

/* The initializer under spawn: its registry id, mapped to this run's
 * address (the parent checked that it is registered; a run that lacks it
 * cannot serve). */
static int pool_fs_init_from_id(mp_pool *p, uint64_t id)
{
    mp_task_fn fn = NULL;
    if (id != 0 && mp__task_by_id(MP_TASK_INIT, id, &fn) < 0)
        return MP_EKEY;
    p->init = (mp_init_fn)fn;
    p->initarg = NULL;
    return 0;
}

/* The server's arguments: (processes, maxtasksperchild, initializer,
 * initarg, listener address, authkey, by_id); inherited: conn 0 its end
 * to the pool, fd 1 the slots' file. Under forkserver the two addresses
 * are this program's own (the shared server is a fork of it); under spawn
 * (by_id) the initializer is its registry id and initarg 0, and tasks
 * travel as ids too. */
static int pool_fs_shared_main(const mp_obj *args)
{
    int64_t v[4];
    bool by_id = false;
    const char *addr;
    const unsigned char *key;
    size_t key_len;
    mp_conn *ctl = NULL;
    for (size_t i = 0; i < 4; i++)
        if (mp_obj_get_int(mp_obj_list_get(args, i), &v[i]) < 0)
            return 1;
    if (mp_obj_get_str(mp_obj_list_get(args, 4), &addr, NULL) < 0 ||
        mp_obj_get_bytes(mp_obj_list_get(args, 5), &key, &key_len) < 0 ||
        mp_obj_get_bool(mp_obj_list_get(args, 6), &by_id) < 0 || v[0] <= 0 || v[0] > 4096 ||
        key_len != sizeof((mp_pool *)0)->authkey || mp_process_inherited_conn(&ctl, 0) < 0)
        return 1;
    int fd = mp_process_inherited_fd(1);
    mp_pool *p = calloc(1, sizeof *p);
    int code = 1;
    if (!p || fd < 0)
        goto out;
    p->notify[0] = p->notify[1] = -1;
    p->slots_fd = -1;
    p->nproc = (int)v[0];
    p->maxtasks = (int)v[1];
    p->by_id = by_id;
    if (by_id) {
        if (pool_fs_init_from_id(p, (uint64_t)v[2]) < 0)
            goto out;
    } else {
        p->init = (mp_init_fn)(uintptr_t)(uint64_t)v[2];
        p->initarg = (void *)(uintptr_t)(uint64_t)v[3];
    }
    memcpy(p->authkey, key, key_len);
    p->lis_addr = strdup(addr);
    p->w = calloc((size_t)p->nproc, sizeof *p->w);
    void *m = NULL;
    if (!p->lis_addr || !p->w || mp__shm_map_fd(&m, fd, (size_t)p->nproc * sizeof(struct slot)) < 0)
        goto out;
    p->slots = m;
    for (int i = 0; i < p->nproc; i++) {
        p->w[i].pool = p;
        p->w[i].idx = i;
    }
    p->zctl_child = ctl;
    ctl = NULL; /* mp__pool_forkserver_main frees it */
    code = mp__pool_forkserver_main(p);
out:
    mp_conn_free(ctl);
    if (p) {
        if (p->slots)
            mp__shm_unmap(p->slots, (size_t)p->nproc * sizeof(struct slot));
        free(p->w);
        free(p->lis_addr);
        mp__wipe(p->authkey, sizeof p->authkey);
    }
    free(p);
    return code;
}

/* Registered at load, so the shared server (a fork of this program) and
 * its children find it whenever the server was started. */
__attribute__((constructor)) static void pool_fs_register(void)
{
    (void)mp_target_register("mp__pool_server", pool_fs_shared_main);
}

/*
 * Start the pool's server as a child of the shared fork server (ctx: the
 * forkserver method) or as a spawned run of the program (spawn). p has its listener, authkey,
 * slots' file and control pipe. Returns 0 with p->zygote set, or a status.
 */
int mp__pool_forkserver_start_shared(mp_pool *p, const mp_context *ctx)
{
    uint64_t init = (uint64_t)(uintptr_t)p->init;
    if (p->by_id && p->init && mp__task_id(MP_TASK_INIT, (mp_task_fn)p->init, &init) < 0)
        return MP_EKEY; /* checked by mp_pool_new already */
    /* 'L' (int64): an id uses all 64 bits; the server casts back. */
    mp_obj *args = mp_obj_build("(iiLLsy#p)", p->nproc, p->maxtasks, (int64_t)init,
                                (int64_t)(uintptr_t)p->initarg, p->lis_addr,
                                (const char *)p->authkey, sizeof p->authkey, (int)p->by_id);
    if (!args)
        return -ENOMEM;
    mp_process *z = NULL;
    int rc = mp_process_new_ctx(&z, ctx, "mp__pool_server", args);
    mp_obj_free(args);
    ssize_t i = 0;
    if (rc == 0 && (i = mp_process_pass_conn(z, p->zctl_child)) >= 0)
        i = mp_process_pass_fd(z, p->slots_fd);
    if (rc == 0 && i < 0)
        rc = (int)i;
    if (rc == 0) {
        char zname[48];
        snprintf(zname, sizeof zname, "PoolForkServer-%s", mp_process_name(z) + 8);
        (void)mp_process_set_name(z, zname);
        rc = mp_process_start(z);
    }
    if (rc < 0) {
        mp_process_free(z);
        return rc;
    }
    p->zygote = z;
    return 0;
}
