/*
 * start.h - what the start methods (mpipc/context.h) share: the data behind
 * a handle made by mp_process_new_ctx, the message a child receives, and
 * the child's table of inherited descriptors. Never installed.
 *
 * Members and their static prefixes: registry.c (reg_, targets by name),
 * context.c (ctx_, contexts, handles, the fork method, inherited
 * descriptors), forkserver.c (fs_, the server and its client), spawn.c
 * (spawn_, posix_spawn and mp_spawn_main).
 */
#ifndef MPIPC_PROCESS_START_H
#define MPIPC_PROCESS_START_H

#include "core/io.h"
#include "core/popen.h"

#include <mpipc/context.h>

#include <stddef.h>

/* As Python's forkserver: MAXFDS_TO_SEND is 256; ours travel in one SCM_RIGHTS message. */
#define MP__START_MAX_FDS 60
_Static_assert(MP__START_MAX_FDS + 1 <= MP__FDS_MAX, "a request's descriptors fit one message");

enum mp__start_method { MP__START_FORK, MP__START_FORKSERVER, MP__START_SPAWN };

struct mp_context {
    enum mp__start_method method;
    const char *name;
};

/* The popen data of a handle made by mp_process_new_ctx (owned by it). */
struct mp__start_proc {
    enum mp__start_method method;
    char *target;
    mp_obj *args;
    int fds[MP__START_MAX_FDS];
    size_t nfds;
    /* forkserver: the 4 bytes of the exit code read so far */
    unsigned char code[4];
    size_t ncode;
};

/*
 * The message a forkserver or spawn child receives: the pickled dict
 * {'target': str, 'args': obj, 'name': str, 'identity': str,
 *  'daemon': bool, 'fds': [int, ...]}. Build returns an owned value or
 * NULL (no memory). Run decodes one in the child, sets the inherited
 * descriptors (fds, n: this process's numbers, in the parent's order),
 * takes the identity, finds and runs the target: its return value, or 1
 * when the message is malformed or names no registered target.
 */
mp_obj *mp__start_message(const struct mp__start_proc *sp, const struct mp__popen_child *child);
int mp__start_run(const mp_obj *msg, const int *fds, size_t n, int sentinel);

/* Release a struct mp__start_proc (the methods' ops->free). */
void mp__start_proc_free(void *data);

/* The parent's check at start: MP_EKEY (with a message) for an unknown
 * target name. */
int mp__start_check_target(const struct mp__start_proc *sp);

/* The methods' popen operations (forkserver.c, spawn.c). */
extern const struct mp__popen_ops mp__forkserver_ops;
extern const struct mp__popen_ops mp__spawn_ops;

#endif /* MPIPC_PROCESS_START_H */
