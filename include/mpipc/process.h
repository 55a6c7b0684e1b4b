/*
 * libmpipc - processes: Python's multiprocessing.Process for the fork start
 * method.
 *
 *     static int work(void *arg) { ...; return 0; }   // the exit code
 *
 *     mp_process *p;
 *     mp_process_new(&p, work, arg);
 *     mp_process_start(p);              // fork(); the child runs work(arg)
 *     mp_process_join(p, MP_FOREVER);
 *     int code;
 *     mp_process_exitcode(p, &code);    // 0
 *     mp_process_close(p);              // MP_EVALUE if still running
 *     mp_process_free(p);
 *
 * The child runs the target, then the library's exit procedure (below), and
 * leaves with _exit(): it never returns into the caller's code and never runs
 * the parent's atexit() handlers or flushes the parent's stdio buffers twice.
 * Function pointers and every handle made before start are valid in the child
 * because it is a fork of the parent.
 *
 * Exit procedure. When a process that used this module ends - a child whose
 * target returned, or the main program calling exit() or returning from
 * main() - the library, like Python's multiprocessing.util._exit_function:
 *   1. runs the at-exit hooks of its own queues (they flush buffered items);
 *   2. sends SIGTERM to its running daemon children;
 *   3. joins every child it started (daemon or not);
 *   4. flushes stdio.
 * A process killed by a signal or leaving through _exit() does none of this,
 * as in Python.
 *
 * Exit codes follow Python: the target's return value (0..255, as the OS
 * keeps only 8 bits) when it returned or called exit(); -N when signal N
 * killed the child.
 *
 * Thread/fork: a handle may be used from several threads. Only the process
 * that started a child may join, poll or signal it (Python: "can only join a
 * child process"); a copy of the handle inherited by a grandchild gives
 * MP_ESTATE there.
 */
#ifndef MPIPC_PROCESS_H
#define MPIPC_PROCESS_H

#include <mpipc/common.h>
#include <mpipc/error.h>

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A child process and its bookkeeping. */
typedef struct mp_process mp_process;

/* The code a child runs; its return value becomes the child's exit code. */
typedef int (*mp_target_fn)(void *arg);

/*
 * mp_process_new - describe a child process (Python's Process(target, args)).
 *
 * target:  the function the child runs; NULL makes a child that exits 0 at
 *          once (Python's Process() with no target).
 * arg:     passed to target in the child; borrowed, never freed.
 *
 * The default name is "Process-N" with N counting the processes made by
 * this process ("Process-2:1" for the first one made by the child
 * "Process-2"), as in Python.
 * Returns 0 or -ENOMEM (*out is then NULL). Ownership: mp_process_free().
 */
MP_API int mp_process_new(mp_process **out, mp_target_fn target, void *arg);

/* mp_process_set_name - copy name into the handle (Python's p.name = ...).
 * Returns 0, -EINVAL for NULL, -ENOMEM. */
MP_API int mp_process_set_name(mp_process *p, const char *name);

/* The process's name; valid until the handle is freed or renamed. */
MP_API const char *mp_process_name(const mp_process *p);

/*
 * mp_process_set_daemon - Python's p.daemon = flag. A daemon child is
 * terminated (SIGTERM) when its parent's exit procedure runs, and may not
 * start children of its own.
 * Returns 0, or MP_ESTATE once the process has been started.
 */
MP_API int mp_process_set_daemon(mp_process *p, bool daemon);
MP_API bool mp_process_daemon(const mp_process *p);

/*
 * mp_process_start - fork and run the target in the child (Python's start).
 *
 * stdio buffers are flushed before fork so the child does not repeat them.
 * Returns 0; MP_ESTATE if the process was already started, if this handle was
 * made by another process, or if the calling process is itself a daemon
 * child (Python: "daemonic processes are not allowed to have children");
 * -errno if pipe() or fork() fails (-EAGAIN, -ENOMEM, -EMFILE).
 */
MP_API int mp_process_start(mp_process *p);

/*
 * mp_process_join - wait for the child to end (Python's join(timeout)).
 *
 * Returns 0 once the child has ended (its exit code is then available);
 * MP_ETIMEDOUT if it is still running when the timeout passes (Python
 * returns silently; the exit code stays MP_ENOTDONE); MP_ESTATE if it was
 * never started or is not this process's child; -errno.
 */
MP_API int mp_process_join(mp_process *p, double timeout);

/* 1 if started and still running, 0 if not started or ended, MP_ESTATE if
 * not this process's child (Python's is_alive). */
MP_API int mp_process_is_alive(mp_process *p);

/*
 * mp_process_exitcode - Python's exitcode.
 * code: receives the exit code (0..255, or -signum) when the child has ended.
 * Returns 0; MP_ENOTDONE while it runs or before it starts (Python: None);
 * MP_ESTATE if not this process's child.
 */
MP_API int mp_process_exitcode(mp_process *p, int *code);

/* The child's pid (Python's pid/ident), or 0 before start. */
MP_API pid_t mp_process_pid(const mp_process *p);

/*
 * mp_process_sentinel - a descriptor that becomes readable (end of file)
 * when the child ends, for mp_wait() or your own poll loop (Python's
 * sentinel). The handle keeps owning it.
 * Returns the descriptor, or MP_EVALUE before start (Python: ValueError
 * "process not started").
 */
MP_API int mp_process_sentinel(const mp_process *p);

/*
 * mp_process_terminate / mp_process_kill - send SIGTERM / SIGKILL (Python's
 * terminate/kill). Nothing is sent once the child is known to have ended.
 * Returns 0, MP_ESTATE if never started or not this process's child, -errno.
 */
MP_API int mp_process_terminate(mp_process *p);
MP_API int mp_process_kill(mp_process *p);

/*
 * mp_process_close - release what the handle holds of the child: its
 * sentinel descriptor and its place among the children the exit procedure
 * joins (Python's close()). The handle itself stays until mp_process_free().
 *
 * Returns 0, also when the process was never started or is already closed;
 * MP_EVALUE while the child is still running (Python's ValueError "Cannot
 * close a process while it is still running"): nothing changes - join or
 * terminate first; -EINVAL for NULL.
 * After a close, start, join, is_alive, exitcode, sentinel, terminate and
 * kill return MP_EVALUE (Python's ValueError "process object is closed");
 * name, daemon and pid still answer.
 */
MP_API int mp_process_close(mp_process *p);

/*
 * mp_process_free - release the handle. Accepts NULL; never fails.
 * A child that is still running is left running, detached: the exit
 * procedure no longer terminates (daemon) or joins it, and its exit status is
 * not collected, so once it ends it stays a zombie until this process reaps
 * it (waitpid) or ends. To wait for it, join before freeing; to refuse
 * while it runs, call mp_process_close() first.
 * Thread/fork: must not race with other calls on the same handle. In a child
 * that inherited the handle, frees the child's copy only.
 */
MP_API void mp_process_free(mp_process *p);

/* The name of the calling process: "MainProcess", or a child's name (Python's
 * current_process().name). Static storage; valid until the process ends. */
MP_API const char *mp_process_current_name(void);

/* ---- helpers: current, parent, children, CPUs ---------------------------- */

/* The pid of the calling process (Python's current_process().pid, which is
 * also its ident). Never fails. Thread/fork: any thread; in a forked child it
 * is the child's own pid. */
MP_API pid_t mp_process_current_pid(void);

/*
 * mp_process_parent_pid / mp_process_parent_name - the process that started
 * the calling one with mp_process_start() (Python's parent_process().pid and
 * .name).
 *
 * In the main process there is none (Python's parent_process() is None):
 * the pid is 0 and the name NULL. In a child they are the pid and the name
 * its parent had when it started the child ("MainProcess", "Process-2"...).
 * Like Python's, the answer is set when a child starts and is inherited
 * across a bare fork() (only mp_process_start() sets it anew); it says
 * nothing of whether the parent is still alive.
 * Ownership: the name is static storage, valid until the process ends.
 * Thread/fork: any thread; never fails.
 */
MP_API pid_t mp_process_parent_pid(void);
MP_API const char *mp_process_parent_name(void);

/*
 * mp_process_parent_is_alive - whether the parent (mp_process_parent_pid())
 * still runs (Python's parent_process().is_alive()).
 * Returns 1 while it runs; 0 once it has ended (this process has then been
 * handed to another parent, which is how it is told); -ESRCH in the main
 * process, which has no parent process (Python: parent_process() is None).
 * Thread/fork: any thread; never blocks.
 */
MP_API int mp_process_parent_is_alive(void);

/*
 * mp_process_parent_join - wait until the parent has ended (Python's
 * parent_process().join(timeout)).
 * timeout: MP_FOREVER, MP_NOWAIT or seconds.
 * Returns 0 once it has ended; MP_ETIMEDOUT while it still runs (Python's
 * join returns silently); MP_EVALUE for a NaN timeout; -ESRCH in the main
 * process. It checks every 10 ms at most, so it may return that much after
 * the parent's end.
 * Thread/fork: any thread.
 */
MP_API int mp_process_parent_join(double timeout);

/*
 * mp_process_active_children - the live children this process started
 * (Python's active_children()).
 *
 * Like Python's, it first reaps every child that has ended: the exit code of
 * each becomes available through its handle (mp_process_exitcode()), and it
 * leaves the list of children the exit procedure joins. Children whose
 * handle was closed or freed are not counted (this process no longer tracks
 * them).
 *
 * children: an array of cap entries that receives the live children, oldest
 *           started first; may be NULL when cap is 0 (to count them).
 * cap:      the array's size.
 * Returns the number of live children, which may exceed cap (then only the
 * cap oldest are stored, as mp_pool_pids() does); -EINVAL when children is
 * NULL and cap is not 0.
 * Ownership: the handles are the caller's own (the ones mp_process_new()
 * made), borrowed here: nothing to free, and valid until the caller frees
 * them.
 * Thread/fork: any thread. In a child made by mp_process_start() the list
 * starts empty (Python: a child's _children is a new set).
 */
MP_API ssize_t mp_process_active_children(mp_process **children, size_t cap);

/*
 * mp_cpu_count - the number of CPUs online in the system (Python's
 * os.cpu_count() and multiprocessing.cpu_count()).
 * Returns the count (>= 1); -ENOSYS when it cannot be determined (Python's
 * cpu_count() raises NotImplementedError).
 * Thread/fork: any thread; never blocks.
 */
MP_API ssize_t mp_cpu_count(void);

/*
 * mp_process_cpu_count - the number of CPUs the calling thread may run on
 * (Python 3.13's os.process_cpu_count(): the size of its
 * sched_getaffinity() set, as changed by taskset or sched_setaffinity), or
 * mp_cpu_count() when the system cannot tell.
 * Returns the count (>= 1); -ENOSYS as mp_cpu_count().
 * Thread/fork: any thread; the affinity mask is per thread, and a child
 * inherits its parent's.
 */
MP_API ssize_t mp_process_cpu_count(void);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_PROCESS_H */
