/*
 * start.h - what the start methods (mpipc/context.h) share: the data behind
 * a handle made by mp_process_new_ctx, the message a child receives, and
 * the child's table of inherited descriptors. Never installed.
 *
 * Members and their static prefixes: registry.c (reg_, targets by name),
 * context.c (ctx_, contexts, handles, the fork method, inherited
 * descriptors), forkserver.c (fs_, the server and its client), spawn.c
 * (spawn_, posix_spawn and mp_spawn_main), passobj.c (pass_, objects
 * handed to a child in parts: core/parts.h).
 */
#ifndef MPIPC_PROCESS_START_H
#define MPIPC_PROCESS_START_H

#include "core/io.h"
#include "core/parts.h"
#include "core/popen.h"

#include <mpipc/context.h>
#include <mpipc/pool.h>

#include <stddef.h>
#include <stdint.h>

/* As Python's forkserver: MAXFDS_TO_SEND is 256; ours travel in one SCM_RIGHTS message. */
#define MP__START_MAX_FDS 60
_Static_assert(MP__START_MAX_FDS + 1 <= MP__FDS_MAX, "a request's descriptors fit one message");

enum mp__start_method { MP__START_FORK, MP__START_FORKSERVER, MP__START_SPAWN };

struct mp_context {
    enum mp__start_method method;
    const char *name;
};

/* A shared block of an object: where it is here, in which arena memfd at
 * what offset, and (after mp__start_prepare) which passed descriptor. */
struct mp__start_blk {
    size_t size;
    int fd; /* the arena's memfd in the parent (borrowed) */
    size_t off;
    size_t fdidx;
};

/* One object handed to the child: its handle here (the fork method uses
 * it as is), its blocks, its own descriptors (a queue's pipe), extra data. */
struct mp__start_obj {
    enum mp__part_kind kind;
    void *ptr;
    struct mp__start_blk blk[MP__PARTS_MAX];
    size_t nblk;
    int raw[MP__PARTS_MAX];
    size_t rawidx[MP__PARTS_MAX];
    size_t nraw;
    int64_t extra;
};

/* The popen data of a handle made by mp_process_new_ctx (owned by it). */
struct mp__start_proc {
    enum mp__start_method method;
    char *target;
    mp_obj *args;
    /* The caller's descriptors (nuserfds), then the objects' arenas. */
    int fds[MP__START_MAX_FDS];
    size_t nfds;
    size_t nuserfds;
    struct mp__start_obj objs[MP__START_MAX_FDS];
    size_t nobjs;
    /* forkserver: the 4 bytes of the exit code read so far */
    unsigned char code[4];
    size_t ncode;
};

/*
 * The message a forkserver or spawn child receives: the pickled dict
 * {'target': str, 'args': obj, 'name': str, 'identity': str,
 *  'daemon': bool, 'fds': [int, ...], 'objs': [...], 'nuserfds': int}.
 * mp__start_dumps builds and pickles it into *msg (malloc'd, *len bytes):
 * 0, -ENOMEM or mp_obj_dumps's code. Run decodes one in the child, sets the inherited
 * descriptors (fds, n: this process's numbers, in the parent's order),
 * takes the identity, finds and runs the target: its return value, or 1
 * when the message is malformed or names no registered target.
 */
int mp__start_dumps(const struct mp__start_proc *sp, const struct mp__popen_child *child,
                    void **msg, size_t *len);
int mp__start_run(const mp_obj *msg, const int *fds, size_t n, int sentinel);

/* The start-method data of p, or NULL for a handle mp_process_new made. */
struct mp__start_proc *mp__start_of(mp_process *p);

/* Release a struct mp__start_proc (the methods' ops->free). */
void mp__start_proc_free(void *data);

/* The parent's check at start: MP_EKEY (with a message) for an unknown
 * target name. It also appends the descriptors of the objects passed
 * (mp__start_prepare): MP_EVALUE when they do not fit. */
int mp__start_check_target(struct mp__start_proc *sp);

/*
 * passobj.c: put the passed objects' arena descriptors after the caller's
 * (once per arena) and note each object's index. Idempotent. Returns 0 or
 * MP_EVALUE when the descriptors exceed MP__START_MAX_FDS.
 */
int mp__start_prepare(struct mp__start_proc *sp);

/* The message's "objs" value: a list of (kind, [(fdidx, off, size), ...],
 * [fdidx, ...], extra). NULL: no memory. */
mp_obj *mp__start_objs_message(const struct mp__start_proc *sp);

/*
 * In the child: make the inherited objects table. Fork: the parent's
 * pointers (sp). Forkserver and spawn: from the message's "objs" (objs may
 * be NULL: none) and the child's descriptors, each arena mapped once.
 * Returns 0, MP_EVALUE for a malformed entry, -errno.
 */
int mp__start_objs_from_fork(const struct mp__start_proc *sp);
int mp__start_objs_from_message(const mp_obj *objs, const int *fds, size_t n);

/*
 * registry.c: the registry's kinds are MP__REG_TARGET (mp_target_register)
 * and the pool's mp_task_kind values. A spawn pool sends a task's id (a
 * hash of its kind and name, unique in the registry) instead of its
 * address: mp__task_id gives fn's id in the parent, mp__task_by_id the
 * function in the worker. Both return 0 or MP_EKEY (no message recorded:
 * the caller knows the context).
 */
#define MP__REG_TARGET 0
int mp__task_id(int kind, mp_task_fn fn, uint64_t *id);
int mp__task_by_id(int kind, uint64_t id, mp_task_fn *fn);

/* The methods' popen operations (forkserver.c, spawn.c). */
extern const struct mp__popen_ops mp__forkserver_ops;
extern const struct mp__popen_ops mp__spawn_ops;

#endif /* MPIPC_PROCESS_START_H */
