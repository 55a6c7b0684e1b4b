/*
 * libmpipc - start methods: Python's multiprocessing.get_context(method),
 * the fork server, spawn, and the registry of targets by name.
 *
 *     static int work(const mp_obj *args) { ...; return 0; } // the exit code
 *     MP_TARGET(work);                        // registered as "work"
 *
 *     int main(int argc, char **argv)
 *     {
 *         mp_spawn_main(argc, argv);          // first: a spawned child runs here
 *         mp_forkserver_start();              // early: before any thread
 *         const mp_context *ctx;
 *         mp_context_get(&ctx, "forkserver"); // or "spawn", "fork"
 *         mp_conn *r, *w;
 *         mp_pipe(&r, &w, false);
 *         mp_obj *args = mp_obj_build("(is)", 42, "hello");
 *         mp_process *p;
 *         mp_process_new_ctx(&p, ctx, "work", args);
 *         mp_process_pass_conn(p, w);         // the child's inherited conn 0
 *         mp_process_start(p);
 *         ... mp_process_join(p, 10.0); mp_process_exitcode(p, &code); ...
 *     }
 *
 * The handle is an ordinary mp_process (process.h): sentinel, join with a
 * timeout, is_alive, exitcode (-N when signal N killed the child),
 * terminate, kill, close, free, and the exit procedure, whatever the method.
 *
 * The three methods, and what each child can share with its parent:
 *
 *   method      how the child is made             what the child has
 *   ----------  --------------------------------  ------------------------------
 *   fork        fork() of the parent, from the    everything made before start:
 *               thread that calls start           memory, handles, descriptors,
 *                                                 function pointers
 *   forkserver  fork() of a single-threaded       function pointers; global data
 *               server, itself forked from the    and shared memory (locks,
 *               parent at mp_forkserver_start()   Values, mp_shm_alloc) as they
 *               or on first use                   were when the server started;
 *                                                 the args (pickled); the
 *                                                 descriptors you pass
 *   spawn       posix_spawn of this program       registered targets by name;
 *               (/proc/self/exe, Linux); main()   what main() does before
 *               calls mp_spawn_main() first       mp_spawn_main(); the args
 *                                                 (pickled); the descriptors
 *                                                 you pass
 *
 * Not shared by forkserver and spawn: the parent's heap after the server
 * started (a void * into it means nothing in the child), threads, and
 * handles made after the server started (spawn: any handle). Hand a child
 * connections (mp_process_pass_conn) and Locks, RLocks, Semaphores,
 * Events, Values, Arrays, Conditions, Barriers, Queues and SimpleQueues
 * (mp_process_pass_lock ... mp_process_pass_simplequeue) explicitly:
 *
 *   object                          fork   forkserver   spawn
 *   ------------------------------  -----  -----------  -----
 *   Lock, RLock, Semaphore, Event   yes    passed       passed
 *   Value, Array (with their lock)  yes    passed       passed
 *   Condition (own lock or yours)   yes    passed       passed
 *   Barrier without an action       yes    passed       passed
 *   Barrier with an action          yes    MP_EVALUE    MP_EVALUE
 *   Queue, JoinableQueue            yes    passed       passed
 *   SimpleQueue                     yes    passed       passed
 *   a Connection                    yes    passed       passed
 *   a pointer into your heap        yes    no           no
 *
 * (yes: inherited by fork, passing it too gives it an index; passed: only
 * when passed.) A Barrier's action is a function pointer and its arg a
 * pointer, which mean nothing in another program image or heap.
 *
 * Why the target is a name and the argument an mp_obj: a forkserver or
 * spawn child does not share the parent's heap, and a spawn child does not
 * share its addresses (exec, ASLR), so the argument travels pickled and the
 * target is found by name in the child's own registry, as Python's pickle
 * finds a function by its qualified name. The same call works under every
 * method, so a program switches method by changing one word.
 *
 * Why forkserver: a parent that already runs threads (a queue's feeder, a
 * pool's threads, its own) may be inside malloc or hold a mutex at the
 * moment another thread forks; the fork child inherits the lock held and
 * hangs on it. The fork server is forked while the program is still
 * single-threaded and stays so; children are forked from it. Start it
 * early (mp_forkserver_start, Python's set_forkserver_preload point); a
 * server started on first use is forked from the parent at that moment,
 * and is only as clean as the parent then is.
 *
 * Why spawn: the child is a fresh program image with nothing inherited but
 * what is passed; it is safe from any parent, at the price of an exec.
 *
 * Thread/fork: every call may be made from any thread. The fork server
 * belongs to the process that started it; a child forked from that process
 * that uses the forkserver method starts its own server.
 */
#ifndef MPIPC_CONTEXT_H
#define MPIPC_CONTEXT_H

#include <mpipc/common.h>
#include <mpipc/conn.h>
#include <mpipc/error.h>
#include <mpipc/obj.h>
#include <mpipc/process.h>
#include <mpipc/queue.h>
#include <mpipc/sync.h>

#include <stdbool.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- targets by name ------------------------------------------------------ */

/*
 * The code a child started through a context runs. args is the tuple (or
 * other value) given to mp_process_new_ctx, as the child received it;
 * borrowed, valid until the target returns. The return value is the exit
 * code (0..255 kept).
 */
typedef int (*mp_named_target_fn)(const mp_obj *args);

/*
 * mp_target_register - register fn under name, in this process's registry.
 *
 * name:  1..255 bytes; copied.
 * fn:    the target.
 *
 * A spawn child is a new run of the program: it knows the names registered
 * before its main() calls mp_spawn_main(), so register with MP_TARGET (a
 * constructor, run before main in every run of the program) or at the top
 * of main(), before mp_spawn_main(). A forkserver child knows the names
 * registered before the server started. Registering the same fn under the
 * same name again does nothing. The registry is shared with the pool's
 * tasks (pool.h: MP_TASK), which have names of their own.
 * Returns 0; -EINVAL for NULL or a bad length; MP_EVALUE if name is taken
 * by another function (or, never in practice, if its 64-bit id is another
 * name's); -ENOMEM.
 * Thread/fork: any thread; a child inherits (fork, forkserver) or rebuilds
 * (spawn) the registry.
 */
MP_API int mp_target_register(const char *name, mp_named_target_fn fn);

/* MP_TARGET(fn): register fn under its own name ("fn") before main() runs,
 * in the parent and in every spawned child alike. Use at file scope. A
 * constructor attribute: GCC and Clang; elsewhere call mp_target_register
 * at the top of main(). */
#if defined(__GNUC__) || defined(__clang__)
#define MP_TARGET(fn)                                                                              \
    __attribute__((constructor)) static void mp_target_register_##fn(void)                         \
    {                                                                                              \
        (void)mp_target_register(#fn, fn);                                                         \
    }                                                                                              \
    struct mp_target_semicolon_##fn
#endif

/*
 * mp_target_lookup - the function registered under name.
 * fn: receives it.
 * Returns 0; MP_EKEY when nothing is registered under name (mp_errmsg
 * names it); -EINVAL for NULL.
 */
MP_API int mp_target_lookup(const char *name, mp_named_target_fn *fn);

/* ---- contexts ------------------------------------------------------------- */

/* A start method (Python's context object). Static: never freed. */
typedef struct mp_context mp_context;

/*
 * mp_context_get - Python's multiprocessing.get_context(method).
 *
 * out:     receives the context (static storage).
 * method:  "fork", "forkserver" or "spawn"; NULL for the default, "fork"
 *          (Python 3.11's default on Linux).
 *
 * Returns 0; MP_EVALUE for another name (Python's ValueError "cannot find
 * context for 'x'"), *out then NULL; -EINVAL for NULL out.
 * Ownership: the context is static; nothing to free.
 */
MP_API int mp_context_get(const mp_context **out, const char *method);

/* The context's method name ("fork", "forkserver", "spawn"); NULL for NULL
 * (Python's get_start_method()). */
MP_API const char *mp_context_start_method(const mp_context *ctx);

/*
 * mp_process_new_ctx - a process started by ctx's method (Python's
 * ctx.Process(target=..., args=...)).
 *
 * ctx:     from mp_context_get(); NULL for the default.
 * target:  the registered name of the child's target (mp_target_register).
 *          Looked up when the process starts, in the parent: an unknown
 *          name fails mp_process_start with MP_EKEY and nothing starts.
 * args:    the target's argument, copied (pickled for forkserver and
 *          spawn); NULL gives an empty tuple. Borrowed.
 *
 * The rest of the handle is process.h's: name, daemon, start, join ...
 * Returns 0; -EINVAL for a NULL out or target; -ENOMEM (*out is then NULL).
 * Ownership: mp_process_free().
 */
MP_API int mp_process_new_ctx(mp_process **out, const mp_context *ctx, const char *target,
                              const mp_obj *args);

/*
 * mp_process_pass_fd - give the child a descriptor (Python pickles a
 * Connection argument as a duplicated descriptor: DupFd).
 *
 * fd:  an open descriptor; borrowed: the parent keeps its own and may close
 *      it after start. The child receives its own copy, inherited across
 *      the exec (spawn: at the same number, close-on-exec cleared for that
 *      exec only), sent to the server (forkserver: SCM_RIGHTS), or inherited
 *      by fork.
 *
 * Returns the index the child finds it at (mp_process_inherited_fd), 0 for
 * the first; MP_ESTATE after start or for a handle mp_process_new made;
 * -EBADF if fd is not open; MP_EVALUE beyond 60 descriptors; -EINVAL.
 */
MP_API ssize_t mp_process_pass_fd(mp_process *p, int fd);

/* mp_process_pass_conn - mp_process_pass_fd(p, mp_conn_fileno(c)): the
 * child rebuilds the end with mp_process_inherited_conn. A shared-memory
 * end (mp_pipe_shm) takes two indexes, its ring's memory then its doorbell:
 * the first is returned and is the one to rebuild. Returns as
 * mp_process_pass_fd; MP_ECLOSED for a closed connection; MP_ESTATE for a
 * shared-memory end with a loan, view or part-way message out, or no
 * memfd (see mp_pipe_shm). */
MP_API ssize_t mp_process_pass_conn(mp_process *p, const mp_conn *c);

/*
 * mp_process_inherited_fd - in a child started through a context, the
 * descriptor the parent passed at index i (Python's
 * forkserver.get_inherited_fds()[i]; negative i counts from the end).
 *
 * Returns the descriptor (close-on-exec; the child owns it and closes it
 * when done); MP_EKEY when there is no such index, or in a process not
 * started through a context.
 */
MP_API int mp_process_inherited_fd(ssize_t i);

/*
 * mp_process_inherited_conn - the connection end the parent passed at
 * index i (mp_process_pass_conn), rebuilt: duplex for a socket, else
 * receive-only or send-only as the descriptor was opened.
 *
 * A shared-memory end is rebuilt from index i (its ring) and i + 1 (its
 * doorbell), both checked as mp_recv_conn checks them (MP_EPROTO).
 *
 * Returns 0; MP_EKEY as mp_process_inherited_fd; MP_ESTATE if that index
 * was already taken as a connection (its descriptor belongs to it);
 * -ENOMEM. Ownership: mp_conn_free(), which closes the descriptor.
 */
MP_API int mp_process_inherited_conn(mp_conn **out, ssize_t i);

/* ---- locks, semaphores and events ------------------------------------------ */

/*
 * mp_process_pass_lock, _rlock, _sem, _event, _value, _array - give the
 * child a Lock, RLock, Semaphore (bounded or not), Event, Value or Array
 * (with its lock, if it has one) (Python pickles a SemLock for a spawn
 * child by its handle and name, and a sharedctypes object by its heap
 * block).
 *
 * p:     a process made by mp_process_new_ctx, not started yet.
 * lock, sem, ev, v, a:  the object; borrowed. It must stay alive (not freed)
 *        until the process has started. It was made by this process, or by
 *        an ancestor this process was forked from (fork method or
 *        mp_process_new), so that its shared memory has a descriptor.
 *
 * The child finds the same object - the same shared memory, mapped at its
 * own address under forkserver and spawn (the memory's descriptor travels
 * like mp_process_pass_fd's, after the caller's descriptors, which keep
 * their indexes) - with mp_process_inherited_lock and its siblings, at the
 * index returned. Objects have their own indexes, 0 for the first, apart
 * from descriptors'. A lock held by a child that dies is MP_EOWNERDEAD to
 * the next acquirer, whatever the method.
 *
 * Returns the index; MP_ESTATE after start or for a handle mp_process_new
 * made; MP_EVALUE beyond 60 objects, or for an object whose memory has no
 * descriptor here (one a forkserver or spawn child itself inherited); or
 * at start, when the objects' descriptors and the caller's exceed 60;
 * -EINVAL for NULL.
 * Thread/fork: any thread; the handle is not shared between threads.
 */
MP_API ssize_t mp_process_pass_lock(mp_process *p, const mp_lock *lock);
MP_API ssize_t mp_process_pass_rlock(mp_process *p, const mp_rlock *lock);
MP_API ssize_t mp_process_pass_sem(mp_process *p, const mp_sem *sem);
MP_API ssize_t mp_process_pass_event(mp_process *p, const mp_event *ev);
MP_API ssize_t mp_process_pass_value(mp_process *p, const mp_value *v);
MP_API ssize_t mp_process_pass_array(mp_process *p, const mp_array *a);

/*
 * mp_process_inherited_lock, _rlock, _sem, _event, _value, _array - in a
 * child started through a context, the object the parent passed at index
 * i (negative i counts from the end).
 *
 * out:  receives the object.
 * i:    the index mp_process_pass_lock (or a sibling) returned.
 *
 * Returns 0; MP_EKEY when there is no such index, or in a process not
 * started through a context; MP_ETYPE when the object at i is of another
 * kind (mp_errmsg names both); -EINVAL for NULL out.
 * Ownership: the object stays valid for the child's whole life. The child
 * need not free it; mp_lock_free (and its siblings) on it does nothing, as
 * for any object a process did not make. It cannot be passed on by a
 * forkserver or spawn child (MP_EVALUE); a fork child can pass it.
 */
MP_API int mp_process_inherited_lock(mp_lock **out, ssize_t i);
MP_API int mp_process_inherited_rlock(mp_rlock **out, ssize_t i);
MP_API int mp_process_inherited_sem(mp_sem **out, ssize_t i);
MP_API int mp_process_inherited_event(mp_event **out, ssize_t i);
MP_API int mp_process_inherited_value(mp_value **out, ssize_t i);
MP_API int mp_process_inherited_array(mp_array **out, ssize_t i);

/*
 * mp_process_pass_queue - give the child a Queue or JoinableQueue (Python
 * pickles a Queue for a spawn child with its pipe, locks and semaphores:
 * Queue.__getstate__).
 *
 * p:  a process made by mp_process_new_ctx, not started yet.
 * q:  the queue; borrowed, alive and not closed until the process started.
 *     Its pipe and files travel as descriptors (like mp_process_pass_fd's,
 *     after the caller's, which keep their indexes), its shared state as
 *     the locks do.
 *
 * The child's end works both ways (put and get, task_done and join for a
 * JoinableQueue), with its own feeder thread; items it puts are flushed at
 * its exit as under fork. Items this process put before start that its
 * feeder has not written yet are not the child's to see until written.
 * Returns the object index (shared with the locks'); MP_ESTATE as for
 * mp_process_pass_lock; MP_ECLOSED for a queue closed here; MP_EVALUE
 * beyond 60 objects, for a queue already passed to p, or one this process
 * inherited from a forkserver or spawn parent; -EINVAL.
 * Thread/fork: any thread.
 */
MP_API ssize_t mp_process_pass_queue(mp_process *p, mp_queue *q);

/*
 * mp_process_inherited_queue - in the child, the Queue passed at index i.
 * Returns 0; MP_EKEY, MP_ETYPE, -EINVAL as mp_process_inherited_lock.
 * Ownership: the handle is this process's, the same at every call: free
 * it once with mp_queue_free (which flushes its feeder and closes its
 * descriptors, never the parent's queue), or leave it to the exit, which
 * flushes it as under fork.
 */
MP_API int mp_process_inherited_queue(mp_queue **out, ssize_t i);

/*
 * mp_process_pass_cond - give the child a Condition, made with its own lock
 * (mp_cond_new(&c, NULL), Python's Condition()) or over a Lock or RLock of
 * the caller's (Python's Condition(lock), pickled with its lock); in the
 * child, mp_process_inherited_cond gives it.
 *
 * p:     a process made by mp_process_new_ctx, not started yet.
 * cond:  the Condition; borrowed, alive until the process has started. A
 *        lock of the caller's travels with it (its memory, like
 *        mp_process_pass_lock's), and need not be passed as well; passed
 *        as well, the child's Condition and Lock are the same lock.
 *
 * Returns, and owns, as mp_process_pass_lock and mp_process_inherited_lock.
 * Thread/fork: any thread.
 */
MP_API ssize_t mp_process_pass_cond(mp_process *p, const mp_cond *cond);
MP_API int mp_process_inherited_cond(mp_cond **out, ssize_t i);

/*
 * mp_process_pass_barrier - give the child a Barrier (Python's
 * multiprocessing Barrier, pickled with its Condition and counters); in
 * the child, mp_process_inherited_barrier gives it.
 *
 * p:  a process made by mp_process_new_ctx, not started yet.
 * b:  the Barrier; borrowed, alive until the process has started.
 *
 * A Barrier made with an action (or an action arg) passes only to a fork
 * child: its action is a function pointer and its arg a pointer, which
 * mean nothing in a forkserver or spawn child (MP_EVALUE, and mp_errmsg
 * says so). Otherwise returns, and owns, as mp_process_pass_lock and
 * mp_process_inherited_lock; a party that dies in the child breaks the
 * barrier for the others (MP_EBROKEN), whatever the method.
 * Thread/fork: any thread.
 */
MP_API ssize_t mp_process_pass_barrier(mp_process *p, const mp_barrier *b);
MP_API int mp_process_inherited_barrier(mp_barrier **out, ssize_t i);

/*
 * mp_process_pass_simplequeue - give the child a SimpleQueue (Python
 * pickles one with its pipe and locks: SimpleQueue.__getstate__).
 *
 * p:  a process made by mp_process_new_ctx, not started yet.
 * q:  the queue; borrowed, alive and not closed until the process started.
 *     Its pipe and files travel as descriptors (after the caller's, which
 *     keep their indexes), its shared state as the locks do.
 *
 * The child's end works both ways (put and get). Returns the object index
 * (shared with the locks'); MP_ESTATE as for mp_process_pass_lock;
 * MP_ECLOSED for a queue closed here; MP_EVALUE beyond 60 objects, for a
 * queue already passed to p, or one this process inherited from a
 * forkserver or spawn parent; -EINVAL.
 * Thread/fork: any thread.
 */
MP_API ssize_t mp_process_pass_simplequeue(mp_process *p, mp_simplequeue *q);

/*
 * mp_process_inherited_simplequeue - in the child, the SimpleQueue passed
 * at index i. Returns 0; MP_EKEY, MP_ETYPE, -EINVAL as
 * mp_process_inherited_lock.
 * Ownership: as mp_process_inherited_queue's: free it once with
 * mp_simplequeue_free (which closes its descriptors, never the parent's
 * queue), or leave it to the exit.
 */
MP_API int mp_process_inherited_simplequeue(mp_simplequeue **out, ssize_t i);

/* ---- the fork server and spawn -------------------------------------------- */

/*
 * mp_forkserver_start - start this process's fork server now, if it does
 * not run yet (Python's forkserver.ensure_running(); call it where Python
 * calls set_forkserver_preload: early in main, before any thread). It
 * forks once, closes in the server every descriptor but its own, and
 * serves mp_process_start requests until this process ends (its exit
 * procedure stops the server once the server's children have ended).
 * A server that died is replaced by the next start that needs it; its
 * children still running report exit code 255, as in Python. If this
 * process dies without its exit procedure, the server ends at once and
 * leaves its children running.
 * Returns 0; MP_ESTATE in a daemon child (it may not have children);
 * -errno.
 */
MP_API int mp_forkserver_start(void);

/*
 * mp_spawn_main - Python's freeze_support() / `if __name__ == "__main__"`:
 * call first in main(). In a child the spawn method started, runs the
 * named target with its args and ends the process (the exit procedure, then
 * _exit with the target's return value; 1 if the parent's message cannot
 * be read or names no registered target). Otherwise returns 0 at once.
 *
 * Returns 0 when this run is not a spawned child; MP_EVALUE when argv looks
 * like one but is malformed (nothing is run). Never returns in a child.
 */
MP_API int mp_spawn_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_CONTEXT_H */
