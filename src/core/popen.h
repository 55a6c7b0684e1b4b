/*
 * popen - the hooks process.c offers the start methods (src/process/):
 * Python's Popen classes, one per start method, behind one mp_process.
 * Never installed. process.c keeps the handle's life (state, registry,
 * sentinel, exit procedure); a start method says how the child is made and,
 * for a child that is not ours to waitpid (forkserver), how its end is read.
 */
#ifndef MPIPC_POPEN_H
#define MPIPC_POPEN_H

#include <mpipc/process.h>

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* What the child will be: the handle's name, identity ("2:1") and flag. */
struct mp__popen_child {
    const char *name;
    const char *identity;
    bool daemon;
};

struct mp__popen_ops {
    /*
     * Make the child (called by mp_process_start without the process mutex,
     * after its checks). Returns 1 to let process.c fork it as usual (the
     * handle's target and arg run in the child), or 0 with *pid and
     * *sentinel (a descriptor the handle then owns, readable once the child
     * has ended), or a negative status (nothing started, nothing leaked).
     */
    int (*start)(void *data, const struct mp__popen_child *child, pid_t *pid, int *sentinel);
    /*
     * For a child this process cannot waitpid (NULL: a real child, reaped
     * with waitpid). Without blocking: 1 with *code (0..255 or -signum) once
     * it has ended, 0 while it runs. Called with the process mutex held.
     */
    int (*poll)(void *data, int sentinel, int *code);
    /* Release data (mp_process_free). */
    void (*free)(void *data);
};

/* Attach a start method to a handle mp_process_new made and nobody started
 * yet; the handle owns data from then on (ops->free). */
void mp__process_set_popen(mp_process *p, const struct mp__popen_ops *ops, void *data);

/* The handle's start method (NULL for mp_process_new's fork), its data in
 * *data. */
const struct mp__popen_ops *mp__process_popen(const mp_process *p, void **data);

/* Give back the "Process-N" number p took when no process was made since:
 * a helper process the library starts for itself (the fork server) does
 * not shift the names of the program's processes (Python's fork server is
 * no Process). */
void mp__process_uncount(const mp_process *p);

/*
 * posix_spawn path with argv, keeping the n descriptors of keep open across
 * the exec (at their numbers, close-on-exec cleared in the child only),
 * under the process mutex so that no fork made by another thread meanwhile
 * inherits them. Every other descriptor stays close-on-exec. The caller
 * makes the descriptors it keeps between mp__process_lock() and
 * mp__process_unlock() and calls this in between. Returns 0 with *pid, or
 * -errno (exec failures included: glibc's posix_spawn reports them).
 */
void mp__process_lock(void);
void mp__process_unlock(void);
int mp__process_spawn_locked(const char *path, char *const argv[], const int *keep, size_t n,
                             pid_t *pid);

/*
 * In a child made by a start method: take the identity the parent chose,
 * as process.c's own child does after fork (name, identity, daemon flag,
 * no children made yet, sentinel the descriptor that keeps the parent's
 * sentinel open, or -1).
 */
void mp__process_become_child(const char *name, const char *identity, bool daemon, int sentinel);

/* The end of a spawned child: the exit procedure, stdio flushed, then
 * _exit(code & 0xff), as process.c's forked children end. */
_Noreturn void mp__process_child_exit(int code);

#endif /* MPIPC_POPEN_H */
