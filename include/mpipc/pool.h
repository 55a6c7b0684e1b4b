/*
 * libmpipc - a process pool: Python's multiprocessing.Pool, under the
 * fork, forkserver and spawn start methods.
 *
 *     static int square(const void *in, void *out)
 *     {
 *         *(int *)out = *(const int *)in * *(const int *)in;
 *         return 0;                       // 0: success, else the task's code
 *     }
 *
 *     mp_pool *pool;
 *     mp_pool_new(&pool, NULL);           // one worker per online CPU
 *     int in[1000], out[1000];
 *     mp_pool_map_array(pool, square, in, sizeof in[0], 1000, out, sizeof out[0],
 *                       0, NULL, MP_FOREVER);
 *     mp_pool_close(pool);
 *     mp_pool_join(pool, MP_FOREVER);
 *     mp_pool_free(pool);
 *
 * Task forms. A task is a C function that runs in a worker process. Three
 * forms exist, each natural for one kind of data:
 *   bytes  mp_bytes_fn: a buffer in, a malloc'd buffer out (apply,
 *          apply_async, map, map_async, imap, imap_unordered:
 *          mp_pool_apply_bytes*, mp_pool_map_bytes*, mp_pool_imap*_bytes);
 *   array  mp_array_fn: one fixed-size item in, one fixed-size item out,
 *          mapped over a C array straight into a results array
 *          (mp_pool_map_array*, mp_pool_imap_array*). A chunk of items
 *          travels as one message and is computed into one buffer: nothing
 *          is allocated per item;
 *   value  mp_obj_fn: mp_obj values (pickled on the way), with Python's whole
 *          API: apply, apply_async, map, map_async, starmap, starmap_async,
 *          imap, imap_unordered (mp_pool_apply, mp_pool_map, ...), and
 *          imap over a producer callback in bounded memory, as Python's
 *          imap over a generator (mp_pool_imap_gen).
 * A task returns 0 on success, or a non-zero code of its own choosing to
 * report failure (Python's raise), optionally with a message set by
 * mp_task_fail(). The caller then sees MP_ETASK and, in an mp_task_error,
 * that code and message.
 *
 * Function pointers and fork. Under the fork and forkserver methods a task
 * function is sent to the worker as its address. That is valid because
 * every worker is a fork of the process that created the pool (or of its
 * early fork server), with the same program mapped at the same addresses.
 * The same holds for pointers a task follows into global data, with one
 * caveat: a worker sees memory as it was when mp_pool_new ran (forkserver:
 * when the shared server started) - every worker, replacements included, is
 * forked from a copy of the process taken then (see Design). Data set up
 * after mp_pool_new must travel in the task's input. Under spawn the
 * workers are forked from a fresh run of the program, where addresses mean
 * nothing: a task travels as its registered name (MP_TASK, below).
 *
 * Design. mp_pool_new forks one helper first, the pool's fork server
 * (Python's forkserver start method, for the same reason): it stays
 * single-threaded and forks every worker, so no worker is ever a copy of a
 * process in which another thread held a lock (an allocator's, stdio's, the
 * program's own) at the moment of fork. It reaps the workers and reports
 * each one's exit code. Each worker connects back to the pool over its own
 * socket, through a private AF_UNIX listener (in a 0700 directory) and its
 * random authkey, so no worker holds another's socket. The pool sends tasks
 * over that socket in batches (several chunks in one message) while keeping
 * a bounded window of chunks in flight per worker (wide for short tasks, one
 * for long ones, measured from the workers' own timings) so that work stays
 * balanced; the worker sends one result message per chunk back on the same
 * socket before it starts the next chunk. Two threads in the pool's process
 * run it: a dispatcher (sends tasks, asks the fork server for replacements)
 * and a result thread (receives results and the fork server's news, runs
 * callbacks). There is no shared task queue and no lock shared between
 * workers: a worker that dies can never leave one held, so the failure where
 * "a worker dies holding the task queue's read lock" and wedges the rest of
 * the pool (CPython gh-66587, gh-96062) cannot happen by design.
 *
 * Worker death. The pool knows exactly which chunks each worker holds (its
 * socket's FIFO), and each worker records in a shared-memory slot which chunk
 * (and item) it is running. When a worker dies - killed by a signal, a crash
 * in a task, _exit() or exit() in a task:
 *   - the chunk it was running fails with MP_EWORKER; mp_task_error's code is
 *     the worker's exit code (-signum when a signal killed it, else its exit
 *     status) and its message names the worker, its pid and the cause;
 *   - the chunks it held but had not started are sent to other workers, so
 *     they still complete, and a replacement worker is forked;
 *   - results it had already sent are kept;
 *   - close() + join() still return once the other tasks are done.
 * With chunksize 1 (apply, imap's default), "the chunk" is exactly the task.
 * A worker that dies in its initializer fails no task; it is replaced (with
 * a growing pause between attempts, up to one second, while it keeps dying).
 *
 * Python semantics kept: default processes = online CPUs; map's default
 * chunksize ceil(n / (4 * processes)), imap's 1; maxtasksperchild counts
 * chunks; submit after close or terminate is MP_ECLOSED (ValueError "Pool
 * not running"); join while running is MP_EVALUE; get past its timeout is
 * MP_ETIMEDOUT (and the task goes on); successful() before ready is
 * MP_EVALUE; callbacks run one at a time in the pool's result thread, before
 * waiters in get()/wait() wake; a map fails as a whole with the error of its
 * first (lowest-index) failing item; close() lets queued work finish;
 * terminate() stops the workers at once.
 * Better than Python: worker death as above; terminate() makes every
 * unfinished result MP_ETERMINATED (Python leaves get() blocked forever);
 * every wait takes a timeout; a failing item does not stop the rest of its
 * chunk, so imap reports the exact failing position whatever the chunksize.
 *
 * Thread/fork: every function may be called from any thread of the process
 * that created the pool. The pool's threads exist in that process only: in
 * a child forked from it (by mp_process_start, fork(), or a task inside a
 * worker) every call on the pool, its results and iterators returns
 * MP_EFORKED, except the _free functions, which there release only the
 * child's copies (descriptors, memory) and leave the owner's pool alone.
 * The owner gets one child process per pool, the fork server (named
 * "PoolForkServer-N"); the workers ("PoolWorker-N") are its daemon children
 * and may not start mp_process children themselves, as in Python. When the
 * owner exits with a pool still running, the pool is terminated and joined
 * in its exit procedure, as Python's pool finalizer does; if the owner dies
 * outright, the fork server and the workers notice and exit. Callbacks must
 * not block for long, and must not call mp_pool_join() or mp_pool_free() on
 * their own pool (MP_ESTATE).
 */
#ifndef MPIPC_POOL_H
#define MPIPC_POOL_H

#include <mpipc/common.h>
#include <mpipc/context.h>
#include <mpipc/error.h>
#include <mpipc/obj.h>

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A pool of worker processes. */
typedef struct mp_pool mp_pool;

/* The outcome of an asynchronous call (Python's AsyncResult). */
typedef struct mp_result mp_result;

/* The iterator imap and imap_unordered return (Python's IMapIterator). */
typedef struct mp_imap mp_imap;

/* A pool's initializer (mp_pool_opts.initializer). */
typedef void (*mp_init_fn)(void *initarg);

/*
 * Options for mp_pool_new. Initialise with MP_POOL_OPTS_INIT so that fields
 * added later get their defaults.
 *
 * processes:        the number of workers; 0 means the number of online
 *                   CPUs (Python's os.cpu_count()).
 * initializer:      NULL, or a function each worker runs once when it starts,
 *                   before its first task (Python's initializer(*initargs)).
 * initarg:          passed to initializer.
 * maxtasksperchild: 0 for no limit, or the number of tasks (chunks) after
 *                   which a worker exits and is replaced by a fresh one.
 * ctx:              the start method (Python's Pool(context=...)), from
 *                   mp_context_get(); NULL for the default. What each
 *                   method means for the pool's workers:
 *
 *   ctx         the workers                      what they see
 *   ----------  -------------------------------  ----------------------------
 *   NULL, fork  forked by the pool's own         everything the caller had
 *               single-threaded server, itself   at mp_pool_new (memory,
 *               forked by mp_pool_new from the   handles, function pointers)
 *               calling thread
 *   forkserver  forked by the pool's own         the program as it was when
 *               server, itself a child of the    the shared server started
 *               shared fork server               (mpipc/context.h): function
 *               (mp_forkserver_start(); on       pointers, global data; so
 *               first use if not yet started):   initarg must point at data
 *               nothing is forked from the       that existed then (a static,
 *               caller, whatever its threads     say), not at the heap
 *   spawn       forked by the pool's own         what main() did before
 *               server, itself a fresh run of    mp_spawn_main() (which main
 *               this program (exec; main()       calls first) and registered
 *               calls mp_spawn_main() first)     tasks: each task, and the
 *                                                initializer, must be
 *                                                registered (MP_TASK), else
 *                                                the submit call (for the
 *                                                initializer mp_pool_new)
 *                                                fails with MP_EKEY and sends
 *                                                nothing; initarg must be
 *                                                NULL (MP_EVALUE: a pointer
 *                                                does not survive exec)
 *
 *                   Under every method no process is ever forked from the
 *                   pool's own threads, and tasks, results and worker
 *                   deaths behave the same.
 */
typedef struct mp_pool_opts {
    int processes;          /* how many workers; 0 for the online CPUs */
    mp_init_fn initializer; /* run by each worker first; may be NULL */
    void *initarg;          /* passed to initializer */
    int maxtasksperchild;   /* tasks before a worker is replaced; 0: never */
    const mp_context *ctx;  /* the start method; NULL for fork */
} mp_pool_opts;

/* Every default of mp_pool_opts: one worker per CPU, forked, never replaced. */
#define MP_POOL_OPTS_INIT                                                                          \
    {                                                                                              \
        0, NULL, NULL, 0, NULL                                                                     \
    }

/* ---- task functions (run in a worker) ----------------------------------- */

/*
 * A bytes task: in_len bytes at in; on success it sets *out to a buffer from
 * malloc() (or NULL when *out_len is 0) and returns 0. The worker frees the
 * buffer after sending it. A non-zero return is the task's failure code.
 */
typedef int (*mp_bytes_fn)(const void *in, size_t in_len, void **out, size_t *out_len);

/*
 * An array task: reads one item of in_size bytes at in and writes one item
 * of out_size bytes at out (both aligned for any type whose size divides the
 * item size). Returns 0, or a non-zero failure code.
 */
typedef int (*mp_array_fn)(const void *in, void *out);

/*
 * A value task: args is the tuple of positional arguments (Python's *args):
 * the args of apply, (item,) for map and imap, the item itself for starmap.
 * On success it sets *result to a new root value (NULL is taken as None) and
 * returns 0; the worker frees it after sending. A non-zero return is the
 * task's failure code (*result is then ignored and freed if set).
 * Ownership: args is borrowed for the call.
 */
typedef int (*mp_obj_fn)(const mp_obj *args, mp_obj **result);

/* ---- tasks by name (the spawn start method) ------------------------------ */

/*
 * Under the spawn method a pool's workers are forked from a fresh run of
 * the program (exec), where the caller's function addresses mean nothing
 * (ASLR). The pool then sends a task as its registered identity, found in
 * the worker's own registry, as Python's pickle sends a function by its
 * qualified name. Register every task a spawn pool runs, and its
 * initializer, with MP_TASK at file scope:
 *
 *     static int square(const void *in, void *out) { ... }
 *     MP_TASK(square);                // registered as "square"
 *
 * The registry is the process's one registry of functions by name, shared
 * with mp_target_register (context.h); each form has its own names. Fork
 * and forkserver pools send addresses and need no registration.
 */

/* Which kind of function a registered name stands for. */
typedef enum mp_task_kind {
    MP_TASK_OBJ = 1,   /* mp_obj_fn */
    MP_TASK_BYTES = 2, /* mp_bytes_fn */
    MP_TASK_ARRAY = 3, /* mp_array_fn */
    MP_TASK_INIT = 4   /* mp_init_fn */
} mp_task_kind;

/* Any registered function, as mp_task_lookup and mp_task_name take it:
 * cast it back to its kind's type (mp_obj_fn for MP_TASK_OBJ ...). */
typedef void (*mp_task_fn)(void);

/*
 * mp_task_register_obj, _bytes, _array, _init - register fn under name as
 * a task of that form (or a pool initializer), in this process's registry.
 *
 * name:  1..255 bytes; copied.
 * fn:    the function.
 *
 * A spawned run of the program knows the names registered before its
 * main() calls mp_spawn_main(): register with MP_TASK (a constructor, run
 * before main) or at the top of main(). Registering the same fn under the
 * same name again does nothing; one fn may have several names.
 * Returns 0; -EINVAL for NULL or a bad length; MP_EVALUE if the name is
 * another function's of that form, or if its 64-bit id (a hash of form and
 * name, what a spawn pool sends) is another name's (mp_errmsg names both);
 * -ENOMEM.
 * Thread/fork: any thread; a fork child inherits the registry, a spawned
 * child rebuilds it.
 */
MP_API int mp_task_register_obj(const char *name, mp_obj_fn fn);
MP_API int mp_task_register_bytes(const char *name, mp_bytes_fn fn);
MP_API int mp_task_register_array(const char *name, mp_array_fn fn);
MP_API int mp_task_register_init(const char *name, mp_init_fn fn);

/* MP_TASK(fn): register fn under its own name ("fn") before main() runs,
 * in the parent and in every spawned run alike; the form is chosen by fn's
 * type (mp_obj_fn, mp_bytes_fn, mp_array_fn or mp_init_fn; another type
 * does not compile). Use at file scope, after fn is declared. A
 * constructor attribute: GCC and Clang; elsewhere call the
 * mp_task_register_* functions at the top of main(). */
#if defined(__GNUC__) || defined(__clang__)
#define MP_TASK(fn)                                                                                \
    __attribute__((constructor)) static void mp__task_ctor_##fn(void)                              \
    {                                                                                              \
        (void)_Generic(&(fn), mp_obj_fn                                                            \
                       : mp_task_register_obj, mp_bytes_fn                                         \
                       : mp_task_register_bytes, mp_array_fn                                       \
                       : mp_task_register_array, mp_init_fn                                        \
                       : mp_task_register_init)(#fn, fn);                                          \
    }                                                                                              \
    struct mp__task_semicolon_##fn
#endif

/*
 * mp_task_lookup - the function registered under name as kind (in a
 * worker: name to function).
 *
 * kind:  the form.
 * name:  the registered name.
 * fn:    receives the function; cast it to kind's type.
 * Returns 0; MP_EKEY when nothing of that kind is registered under name
 * (mp_errmsg names it); -EINVAL for NULL or an unknown kind.
 * Thread/fork: any thread.
 */
MP_API int mp_task_lookup(mp_task_kind kind, const char *name, mp_task_fn *fn);

/*
 * mp_task_name - the name fn is registered under as kind (in the parent:
 * function to name); the first registered when it has several.
 *
 * kind:  the form.
 * fn:    the function, cast to mp_task_fn.
 * name:  receives the name.
 * Returns 0; MP_EKEY when fn is not registered as kind (mp_errmsg says
 * so); -EINVAL for NULL or an unknown kind.
 * Ownership: *name is borrowed from the registry and valid for the
 * process's life (entries are never removed).
 * Thread/fork: any thread.
 */
MP_API int mp_task_name(mp_task_kind kind, mp_task_fn fn, const char **name);

/*
 * mp_task_fail - in a task, describe the failure it is about to report
 * (Python's raise SomeError(message)):
 *
 *     if (x < 0)
 *         return mp_task_fail(EDOM, "negative input %d", x);
 *
 * code: the task's failure code; 0 is replaced by -1 (0 means success).
 * fmt:  a printf format for the message (at most MP_TASK_MSG_MAX - 1 bytes
 *       are kept).
 * Returns the code to return from the task. Without a message, the failure
 * reads "task failed with code N".
 * Ownership: the message is copied; fmt and its arguments stay the caller's.
 * Thread/fork: meant for a task in a worker; anywhere else it only records
 * the message for the calling thread.
 */
MP_API int mp_task_fail(int code, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The longest message an mp_task_error holds, NUL included. */
#define MP_TASK_MSG_MAX 256

/*
 * Why a task failed.
 *
 * status:  the status the call returned: MP_ETASK (the task reported
 *          failure), MP_EWORKER (its worker died), MP_ETERMINATED (the pool
 *          was terminated first), or a negative errno / MP_EPROTO when its
 *          input or result could not be encoded (Python's MaybeEncodingError).
 * code:    MP_ETASK: the task's own code. MP_EWORKER: the worker's exit code
 *          (-signum if a signal killed it, else its exit status). Otherwise
 *          equal to status.
 * index:   the failing item's index in the input (0 for apply).
 * message: a NUL-terminated description: the task's mp_task_fail() message,
 *          or the library's ("worker PoolWorker-3 (pid 1234) died: killed
 *          by signal 9 (Killed)").
 */
typedef struct mp_task_error {
    int status;                    /* the status the call returned */
    int code;                      /* the task's code, or the worker's exit code */
    size_t index;                  /* the failing item's index in the input */
    char message[MP_TASK_MSG_MAX]; /* why, NUL-terminated */
} mp_task_error;

/*
 * Callbacks of an asynchronous call (Python's callback= and
 * error_callback=). Either may be NULL; pass NULL for the whole struct to
 * have none.
 *
 * callback:        runs once the call has succeeded;
 * error_callback:  runs once it has failed (any status, MP_ETERMINATED
 *                  included);
 * user:            passed to both.
 * Exactly one of them runs for each call, in the pool's result thread,
 * before the result becomes ready for other threads. Inside the callback,
 * r is valid (even if the caller already freed its handle) and
 * mp_result_get(r, ..., MP_NOWAIT) (mp_result_get_bytes() for a bytes-form
 * call) reads the outcome: the value, or through its err argument why the
 * call failed.
 */
typedef void (*mp_result_cb)(mp_result *r, void *user);

/* The callbacks of an asynchronous call, as described above. */
typedef struct mp_callbacks {
    mp_result_cb callback;       /* runs once the call has succeeded */
    mp_result_cb error_callback; /* runs once it has failed */
    void *user;                  /* passed to both */
} mp_callbacks;

/* ---- the pool ------------------------------------------------------------ */

/*
 * mp_pool_new - start a pool (Python's Pool(processes, initializer,
 * initargs, maxtasksperchild)).
 *
 * out:   receives the pool.
 * opts:  NULL for the defaults, or options made from MP_POOL_OPTS_INIT.
 *
 * Forks the pool's fork server from the calling thread (under the
 * forkserver method: starts it through the shared fork server; under
 * spawn: as a fresh run of this program), starts the
 * pool's two threads, and returns once every worker has started and
 * connected back (before the initializers run, so a slow initializer does
 * not delay it).
 * Returns 0; MP_EVALUE for processes < 0 or maxtasksperchild < 0 (Python's
 * ValueError for a non-positive number); under spawn, MP_EKEY for an
 * initializer not registered (MP_TASK, mp_task_register_init) and
 * MP_EVALUE for a non-NULL initarg (both with a message); under forkserver
 * and spawn, the codes of mp_process_start() for starting the pool's
 * server; -EINVAL for
 * a NULL out; MP_ESTATE in a daemon process (a pool worker, say), which
 * may not have children;
 * -errno (-EAGAIN, -ENOMEM, -EMFILE) if a process, a socket or a thread
 * cannot be made - then no process is left running and *out is NULL.
 * Ownership: free with mp_pool_free().
 * Thread/fork: see the file comment. As for any fork, other threads of the
 * caller should not hold locks the workers will need at that moment.
 */
MP_API int mp_pool_new(mp_pool **out, const mp_pool_opts *opts);

/*
 * mp_pool_close - stop accepting work (Python's close). Queued and running
 * tasks still complete; then the workers exit.
 * Returns 0 (also when already closed or terminated); -EINVAL; MP_EFORKED.
 * Ownership: the pool stays the caller's; free it after mp_pool_join().
 * Thread/fork: any thread of the owner, callbacks included; never blocks.
 */
MP_API int mp_pool_close(mp_pool *p);

/*
 * mp_pool_terminate - stop at once (Python's terminate). Workers get SIGTERM
 * (SIGKILL if one is still alive 2 s later); every result that is not ready
 * fails with MP_ETERMINATED (its error_callback runs) and every imap
 * iterator's missing items give MP_ETERMINATED. When called from outside a
 * callback, those results are already failed when it returns.
 * Returns 0 (also when already terminated); -EINVAL; MP_EFORKED.
 * Ownership: results and iterators stay their holders' (free them as usual).
 * Thread/fork: any thread of the owner. From a callback it returns at once
 * and the result thread fails the pending results once the callback
 * returns; elsewhere it waits for the error callbacks to have run.
 */
MP_API int mp_pool_terminate(mp_pool *p);

/*
 * mp_pool_join - wait for the workers to exit and the pool's threads to end
 * (Python's join), after close() or terminate().
 *
 * timeout: MP_FOREVER, MP_NOWAIT or seconds.
 * Returns 0; MP_EVALUE while the pool is still running (Python's ValueError
 * "Pool is still running"); MP_ETIMEDOUT; MP_ESTATE from a callback of this
 * pool (its thread cannot wait for itself); -EINVAL; MP_EFORKED.
 * Ownership: the pool stays the caller's (mp_pool_free()).
 * Thread/fork: any thread of the owner but the pool's own; several may join
 * at once. The first successful join also reaps the fork server.
 */
MP_API int mp_pool_join(mp_pool *p, double timeout);

/*
 * mp_pool_free - release the pool. A pool still running is terminated first
 * (Python's "with Pool() as p:" exit), then joined without limit. Accepts
 * NULL. Results and iterators stay valid (terminated ones report
 * MP_ETERMINATED) until they are freed themselves.
 * Never fails. Called from a callback of this pool (its own result thread)
 * it is a misuse and does nothing: the pool stays as it was, to be freed
 * by its owner (freeing there would join the thread from itself).
 * Thread/fork: in a forked child, only closes the child's copies of the
 * pool's descriptors and frees its memory copy.
 */
MP_API void mp_pool_free(mp_pool *p);

/* mp_pool_processes - the number of workers the pool keeps (Python's
 * len(pool._pool)), or -EINVAL / MP_EFORKED. Thread/fork: any thread of the
 * owner. */
MP_API ssize_t mp_pool_processes(const mp_pool *p);

/*
 * mp_pool_pids - the pids of the live workers.
 *
 * pids, cap: an array of cap entries to fill. Returns the number of live
 * workers (which may exceed cap: only cap are stored); -EINVAL; MP_EFORKED.
 * Useful for watching maxtasksperchild replace workers, or for sending a
 * worker a signal (the pool then treats it as any other death).
 * Ownership: pids is the caller's array. Thread/fork: any thread of the
 * owner; the list is a snapshot.
 */
MP_API ssize_t mp_pool_pids(mp_pool *p, pid_t *pids, size_t cap);

/*
 * Every call below that submits work (apply, map, imap and starmap in every
 * form, and mp_pool_imap_gen) also returns MP_EKEY in a spawn pool when fn
 * is not registered as a task of its form (MP_TASK, mp_task_register_*),
 * with a message naming MP_TASK: nothing is sent, the out handle is NULL,
 * and the pool goes on. A task the parent registered after main() called
 * mp_spawn_main is unknown to the spawned workers: each of its items fails
 * with MP_EKEY there.
 */

/* ---- bytes tasks --------------------------------------------------------- */

/*
 * mp_pool_apply_bytes_async - run fn(in, in_len, ...) in a worker (Python's
 * apply_async).
 *
 * in, in_len: the input (copied before the call returns; in may be NULL
 *             when in_len is 0).
 * cbs:        callbacks, or NULL.
 * out:        receives the result handle; read it with
 *             mp_result_get_bytes().
 * Returns 0; MP_ECLOSED after close or terminate; -EINVAL; MP_EFORKED;
 * -ENOMEM. Ownership: free *out with mp_result_free(); in stays the
 * caller's. Thread/fork: any thread of the owner, callbacks included (a
 * callback must not wait for the new result: it runs in the same thread).
 */
MP_API int mp_pool_apply_bytes_async(mp_pool *p, mp_bytes_fn fn, const void *in, size_t in_len,
                                     const mp_callbacks *cbs, mp_result **out);

/*
 * mp_pool_apply_bytes - run fn in a worker and wait for its output
 * (Python's apply).
 *
 * out, out_len: receive the task's output.
 * timeout:      the longest wait; when it passes the task goes on, its
 *               output is discarded, and MP_ETIMEDOUT is returned.
 * err:          NULL, or receives why the task failed.
 * Returns 0; MP_ETASK, MP_EWORKER, MP_ETERMINATED (see mp_task_error);
 * MP_ETIMEDOUT; MP_ESTATE from a callback of this pool; the codes of
 * mp_pool_apply_bytes_async().
 * Ownership: the caller frees *out with free() (*out is NULL on failure).
 * Thread/fork: any thread of the owner except the pool's result thread
 * (a callback waiting for a task would wait for itself).
 */
MP_API int mp_pool_apply_bytes(mp_pool *p, mp_bytes_fn fn, const void *in, size_t in_len,
                               void **out, size_t *out_len, mp_task_error *err, double timeout);

/*
 * mp_pool_map_bytes_async - outs[i] = fn(in[i]) for i in [0, n), in chunks
 * of chunksize items (Python's map_async over a list of bytes).
 *
 * in:        n buffers, as struct iovec (iov_base, iov_len): the pair POSIX
 *            already uses for scattered buffers (readv, writev), so items
 *            of any sizes, anywhere in memory, need no packing and no new
 *            type. They are copied before the call returns (iov_base may
 *            be NULL when iov_len is 0).
 * n:         the number of items.
 * outs:      n struct iovec that receive the outputs. Set to {NULL, 0} by
 *            this call; then, as each item succeeds, to a buffer from
 *            malloc() holding its output and its length (a zero-length
 *            output is a 1-byte buffer with iov_len 0). A failed item's
 *            entry stays {NULL, 0}.
 * chunksize: items per task; 0 for Python's default,
 *            ceil(n / (4 * processes)).
 * cbs, result: as for mp_pool_apply_bytes_async(). The result is read with
 *            mp_result_get() or mp_result_wait() (the outputs are in outs).
 * outs must stay valid until the result is ready - even if the handle is
 * freed before then.
 * Returns 0; MP_ECLOSED; -EINVAL (NULL fn, in or outs with n > 0, an item
 * with a NULL iov_base and a non-zero iov_len); MP_EFORKED; -ENOMEM.
 * Ownership: once the result is ready, every outs[i].iov_base is the
 * caller's, to free(), whatever the outcome (those of the items that
 * succeeded before a failure too); in stays the caller's.
 * Thread/fork: as mp_pool_apply_bytes_async(). outs is written by the
 * pool's result thread; read it after the result is ready.
 */
MP_API int mp_pool_map_bytes_async(mp_pool *p, mp_bytes_fn fn, const struct iovec *in, size_t n,
                                   struct iovec *outs, size_t chunksize, const mp_callbacks *cbs,
                                   mp_result **result);

/*
 * mp_pool_map_bytes - the same, waiting (Python's map).
 *
 * timeout, err: as for mp_pool_apply_bytes().
 * Returns 0 once every item succeeded: each outs[i] then holds its output;
 * the status of the first failing item (err->index says which: MP_ETASK,
 * MP_EWORKER when its worker died - the other items still ran -,
 * MP_ETERMINATED, an encoding error); MP_ETIMEDOUT (chunks not yet sent are
 * cancelled); the codes of mp_pool_map_bytes_async(). On any failure every
 * outs[i] is {NULL, 0}: the outputs made before it are freed, as Python's
 * map returns no list when it raises.
 * Ownership: on success the caller frees every outs[i].iov_base with
 * free(); in and outs stay the caller's, and the pool writes no more into
 * outs once the call has returned.
 * Thread/fork: as mp_pool_apply_bytes().
 */
MP_API int mp_pool_map_bytes(mp_pool *p, mp_bytes_fn fn, const struct iovec *in, size_t n,
                             struct iovec *outs, size_t chunksize, mp_task_error *err,
                             double timeout);

/*
 * mp_pool_imap_bytes / mp_pool_imap_unordered_bytes - as map_bytes, but
 * hand each item to the caller as soon as it is done (Python's imap and
 * imap_unordered): mp_imap_next() returns its index once outs[index] holds
 * its output, in input order (imap) or completion order (imap_unordered);
 * a failed item gives its status and leaves outs[index] {NULL, 0}.
 *
 * chunksize: items per task; 0 means 1, as in Python.
 * outs must stay valid until the iterator is exhausted or freed;
 * mp_imap_free() stops all writes into it.
 * Returns 0; the codes of mp_pool_map_bytes_async().
 * Ownership: free *it with mp_imap_free(); every outs[i].iov_base written
 * is the caller's, to free() (also those of items not yet handed out when
 * the iterator is freed); in stays the caller's.
 * Thread/fork: any thread of the owner; one thread at a time per iterator.
 */
MP_API int mp_pool_imap_bytes(mp_pool *p, mp_bytes_fn fn, const struct iovec *in, size_t n,
                              struct iovec *outs, size_t chunksize, mp_imap **it);
MP_API int mp_pool_imap_unordered_bytes(mp_pool *p, mp_bytes_fn fn, const struct iovec *in,
                                        size_t n, struct iovec *outs, size_t chunksize,
                                        mp_imap **it);

/* ---- array tasks --------------------------------------------------------- */

/*
 * mp_pool_map_array_async - out[i] = fn(in[i]) for i in [0, n), in chunks of
 * chunksize items (Python's map_async over a list).
 *
 * in, in_size:   the input array: n items of in_size bytes (in_size >= 1).
 * out, out_size: the output array: n items of out_size bytes (>= 1).
 * chunksize:     items per task; 0 for Python's default,
 *                ceil(n / (4 * processes)).
 * cbs, out:      as for mp_pool_apply_bytes_async().
 * The pool reads in and writes out while the call runs: both must stay
 * valid, and in unchanged, until the result is ready - even if the handle
 * is freed before then. The slot of an item that failed is left as it was.
 * Returns 0; MP_ECLOSED; -EINVAL (NULL arrays with n > 0, zero sizes, item
 * sizes over 1 MiB); -EOVERFLOW (n * size overflows); MP_EFORKED; -ENOMEM.
 * Ownership: free *result with mp_result_free(); in and out stay the
 * caller's (see above for how long the pool uses them).
 * Thread/fork: as mp_pool_apply_bytes_async(). out is written by the
 * pool's result thread; read it after the result is ready.
 */
MP_API int mp_pool_map_array_async(mp_pool *p, mp_array_fn fn, const void *in, size_t in_size,
                                   size_t n, void *out, size_t out_size, size_t chunksize,
                                   const mp_callbacks *cbs, mp_result **result);

/*
 * mp_pool_map_array - the same, waiting (Python's map).
 *
 * timeout, err: as for mp_pool_apply_bytes(). When the timeout passes, chunks
 * not yet sent are cancelled and no later result is written into out: the
 * arrays are the caller's again when the call returns, whatever it returns.
 * Returns 0 once every item succeeded; the status of the first failing item
 * (err->index says which); MP_ETIMEDOUT; the codes of
 * mp_pool_map_array_async().
 * Ownership: in and out stay the caller's. Thread/fork: as
 * mp_pool_apply_bytes().
 */
MP_API int mp_pool_map_array(mp_pool *p, mp_array_fn fn, const void *in, size_t in_size, size_t n,
                             void *out, size_t out_size, size_t chunksize, mp_task_error *err,
                             double timeout);

/*
 * mp_pool_imap_array / mp_pool_imap_unordered_array - as map_array, but
 * hand each item to the caller as soon as it is done (Python's imap and
 * imap_unordered): mp_imap_next() returns its index once out[index] is
 * written, in input order (imap) or in completion order (imap_unordered).
 *
 * chunksize: items per task; 0 means 1, as in Python.
 * The arrays must stay valid until the iterator is exhausted or freed;
 * mp_imap_free() stops all writes into out.
 * Returns 0; the codes of mp_pool_map_array_async().
 * Ownership: free *it with mp_imap_free(); the arrays stay the caller's.
 * Thread/fork: any thread of the owner; one thread at a time per iterator.
 */
MP_API int mp_pool_imap_array(mp_pool *p, mp_array_fn fn, const void *in, size_t in_size, size_t n,
                              void *out, size_t out_size, size_t chunksize, mp_imap **it);
MP_API int mp_pool_imap_unordered_array(mp_pool *p, mp_array_fn fn, const void *in, size_t in_size,
                                        size_t n, void *out, size_t out_size, size_t chunksize,
                                        mp_imap **it);

/* ---- value tasks --------------------------------------------------------- */

/*
 * mp_pool_apply_async - run fn(args) in a worker (Python's apply_async).
 *
 * args:  a tuple or list of positional arguments, or NULL for (); copied
 *        (pickled) before the call returns.
 * Read the result with mp_result_get(r, &value, &err, timeout).
 * Returns 0; MP_ECLOSED; -EINVAL (NULL fn, args not a tuple or list);
 * MP_EFORKED; -ENOMEM. Ownership: free *out with mp_result_free(); args
 * stays the caller's. Thread/fork: as mp_pool_apply_bytes_async().
 */
MP_API int mp_pool_apply_async(mp_pool *p, mp_obj_fn fn, const mp_obj *args,
                               const mp_callbacks *cbs, mp_result **out);

/*
 * mp_pool_apply - run fn(args) in a worker and wait (Python's apply).
 * result: receives the task's value.
 * Returns 0 and the codes of mp_pool_apply_bytes().
 * Ownership: the caller frees *result with mp_obj_free(); args stays the
 * caller's. Thread/fork: as mp_pool_apply_bytes().
 */
MP_API int mp_pool_apply(mp_pool *p, mp_obj_fn fn, const mp_obj *args, mp_obj **result,
                         mp_task_error *err, double timeout);

/*
 * mp_pool_map_async / mp_pool_starmap_async - fn((x,)) / fn(x) for every
 * item x of a list or tuple, in chunks (Python's map_async, starmap_async).
 * For starmap each item must be a tuple or list (Python unpacks it with *);
 * any other item fails with MP_ETASK, code MP_ETYPE (Python's TypeError).
 *
 * items:     a list or tuple; copied (pickled) before the call returns.
 * chunksize: 0 for Python's default rule.
 * The result's value is a list of the n results in input order.
 * Returns 0; MP_ECLOSED; -EINVAL; MP_EFORKED; -ENOMEM.
 * Ownership: free *out with mp_result_free(); items stays the caller's.
 * Thread/fork: as mp_pool_apply_bytes_async().
 */
MP_API int mp_pool_map_async(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                             const mp_callbacks *cbs, mp_result **out);
MP_API int mp_pool_starmap_async(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                                 const mp_callbacks *cbs, mp_result **out);

/*
 * mp_pool_map / mp_pool_starmap - the same, waiting (Python's map,
 * starmap).
 * results: receives a new list of the results.
 * Returns 0; the status of the first failing item; the codes of
 * mp_pool_apply_bytes(). Ownership: free *results with mp_obj_free();
 * items stays the caller's. Thread/fork: as mp_pool_apply_bytes().
 */
MP_API int mp_pool_map(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                       mp_obj **results, mp_task_error *err, double timeout);
MP_API int mp_pool_starmap(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                           mp_obj **results, mp_task_error *err, double timeout);

/*
 * mp_pool_imap / mp_pool_imap_unordered - fn((x,)) for every item, handed
 * out one at a time by mp_imap_next() in input order (imap) or completion
 * order (imap_unordered). chunksize 0 means 1, as in Python.
 * Returns 0; the codes of mp_pool_map_async(). Ownership: free *it with
 * mp_imap_free(); items stays the caller's. Thread/fork: any thread of the
 * owner; one thread at a time per iterator.
 */
MP_API int mp_pool_imap(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                        mp_imap **it);
MP_API int mp_pool_imap_unordered(mp_pool *p, mp_obj_fn fn, const mp_obj *items, size_t chunksize,
                                  mp_imap **it);

/*
 * A producer of items for mp_pool_imap_gen (Python's generator passed to
 * imap): each call yields the next item.
 *
 * user: the pointer given to mp_pool_imap_gen.
 * item: on 1, receives a new root value (NULL is taken as None); the pool
 *       takes it. Not read on other returns.
 * Returns 1 with an item; 0 at the end; a negative code of its own to fail
 * (Python's generator raising): the iteration then ends, and mp_imap_next
 * reports the failure in its place (MP_ETASK, err->code the producer's
 * code), after the items it yielded before.
 */
typedef int (*mp_producer_fn)(void *user, mp_obj **item);

/*
 * mp_pool_imap_gen / mp_pool_imap_unordered_gen - imap and imap_unordered
 * over a producer instead of a list (Python's imap(fn, generator)): fn((x,))
 * for every item x the producer yields, read with mp_imap_next() in input
 * order (imap) or completion order (imap_unordered), with indexes counting
 * the producer's items from 0.
 *
 * fn:        the task, run in the workers.
 * producer:  yields the items; user is passed to it.
 * chunksize: items per task; 0 means 1, as in Python.
 * it:        receives the iterator.
 *
 * Memory stays bounded however many items the producer yields (Python's
 * imap takes the whole generator as fast as it can; this does not): the
 * items are taken in segments of processes x chunksize, and at most 4
 * segments are outstanding - taken from the producer and not yet all handed
 * out by mp_imap_next(). The next segment is taken only when the caller has
 * taken every item of one, so at most 4 x processes x chunksize items (their
 * pickles, their results) are held at any moment.
 *
 * The producer runs in the caller's thread: inside this call (which fills
 * the first segments before it returns) and inside mp_imap_next(), one call
 * at a time, never after it returned 0 or failed, and never after
 * mp_imap_free(). It may call the pool (submit other work) but must not
 * call mp_imap_next() or mp_imap_free() on this iterator. An item that
 * cannot be pickled ends the iteration at its index with the encoding
 * error (Python's task handler fails that one task and goes on).
 *
 * close() lets a started iteration go on (Python's close() lets queued
 * work finish): the pool's workers stay until the producer has ended and
 * every item has run, so mp_pool_join() after mp_pool_close() waits until
 * the caller has consumed the iteration (or freed the iterator) - with
 * MP_FOREVER, take the items first. terminate() ends it: missing items
 * give MP_ETERMINATED.
 * Returns 0; MP_ECLOSED after close or terminate; -EINVAL (NULL fn,
 * producer or it; chunksize x processes over 2^32 - 1); MP_EFORKED;
 * -ENOMEM.
 * Ownership: free *it with mp_imap_free(), which cancels what is not yet
 * sent and drops the items not yet handed out; values handed out by
 * mp_imap_next() are the caller's. user stays the caller's.
 * Thread/fork: any thread of the owner; one thread at a time per iterator
 * (the producer is called from that thread).
 */
MP_API int mp_pool_imap_gen(mp_pool *p, mp_obj_fn fn, mp_producer_fn producer, void *user,
                            size_t chunksize, mp_imap **it);
MP_API int mp_pool_imap_unordered_gen(mp_pool *p, mp_obj_fn fn, mp_producer_fn producer, void *user,
                                      size_t chunksize, mp_imap **it);

/* ---- results ------------------------------------------------------------- */

/*
 * mp_result_get - wait for the outcome (Python's AsyncResult.get(timeout)).
 *
 * timeout: MP_FOREVER, MP_NOWAIT or seconds.
 * value:   NULL, or receives the value of a value-form call (apply: the
 *          task's value; map/starmap: the list of results); NULL for other
 *          forms and on failure.
 * err:     NULL, or receives why the call failed.
 * Returns 0 on success; MP_ETASK / MP_EWORKER / MP_ETERMINATED / an
 * encoding error (see mp_task_error); MP_ETIMEDOUT when not ready in time
 * (the call goes on; ask again); -EINVAL; MP_EFORKED.
 * Ownership: *value is borrowed from r and valid until mp_result_free(r);
 * copy it with mp_obj_copy() to keep it longer.
 * Thread/fork: several threads may wait on one result. Inside its own
 * callback the outcome is already readable; elsewhere in the result thread
 * (another result's callback) it must not wait.
 */
MP_API int mp_result_get(mp_result *r, const mp_obj **value, mp_task_error *err, double timeout);

/*
 * mp_result_get_bytes - the same for a bytes-form call: *out and *out_len
 * receive the task's output (borrowed from r until mp_result_free; out may
 * be NULL). Returns the codes of mp_result_get(), and -EINVAL for a call of
 * another form. Ownership and Thread/fork: as mp_result_get().
 */
MP_API int mp_result_get_bytes(mp_result *r, const void **out, size_t *out_len, mp_task_error *err,
                               double timeout);

/*
 * mp_result_wait - wait until the result is ready (Python's wait(timeout)).
 * Returns 0 when ready; MP_ETIMEDOUT; -EINVAL; MP_EFORKED.
 * Thread/fork: as mp_result_get().
 */
MP_API int mp_result_wait(mp_result *r, double timeout);

/* mp_result_ready - 1 when the outcome is known, 0 while the call runs
 * (Python's ready()); -EINVAL; MP_EFORKED. Thread/fork: any thread of the
 * owner; never blocks. */
MP_API int mp_result_ready(mp_result *r);

/*
 * mp_result_successful - 1 if the call succeeded, 0 if it failed (Python's
 * successful()); MP_EVALUE while it is not ready (Python's ValueError);
 * -EINVAL; MP_EFORKED. Thread/fork: any thread of the owner; never blocks.
 */
MP_API int mp_result_successful(mp_result *r);

/*
 * mp_result_free - release the handle. Accepts NULL. The call itself goes
 * on if it is not finished: its callbacks still run and an array call still
 * writes its output array, as in Python when an AsyncResult is dropped.
 * Ownership: values borrowed from r (mp_result_get) die with it.
 * Thread/fork: must not race with other calls on the same handle. In a
 * forked child it does nothing (the copy is left as it is).
 */
MP_API void mp_result_free(mp_result *r);

/* ---- imap iterators ------------------------------------------------------ */

/*
 * mp_imap_next - the next result (Python's next(it, timeout)).
 *
 * timeout: MP_FOREVER, MP_NOWAIT or seconds.
 * index:   NULL, or receives the item's index in the input (for the array
 *          forms, out[index] holds its output).
 * value:   NULL, or receives the item's value (value forms; NULL
 *          otherwise).
 * err:     NULL, or receives why the item failed.
 * Returns 1 with the next item; 0 when every item has been handed out
 * (Python's StopIteration); MP_ETASK / MP_EWORKER for an item that failed
 * (*index and err say which; the next call goes on with the next item, as
 * Python's imap does); MP_ETERMINATED for every missing item once the pool
 * was terminated; MP_ETIMEDOUT; -EINVAL; MP_EFORKED.
 * Ownership: the caller frees *value with mp_obj_free().
 * Thread/fork: one thread at a time per iterator, of the owner.
 */
MP_API int mp_imap_next(mp_imap *it, size_t *index, mp_obj **value, mp_task_error *err,
                        double timeout);

/*
 * mp_imap_free - release the iterator. Accepts NULL. Items not yet sent to a
 * worker are cancelled, and nothing more is written into an array form's
 * output, so the arrays are the caller's again at once.
 * Ownership: values already handed out stay the caller's.
 * Thread/fork: must not race with mp_imap_next() on the same iterator; in a
 * forked child it does nothing.
 */
MP_API void mp_imap_free(mp_imap *it);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_POOL_H */
