/*
 * libmpipc - queues: Python's multiprocessing.Queue, JoinableQueue and
 * SimpleQueue for forked processes.
 *
 *     mp_queue *q;
 *     mp_queue_new(&q, 0);                       // before fork; 0 = unbounded
 *     mp_queue_put(q, "job", 3, MP_FOREVER);     // any process
 *     void *item; size_t len;
 *     if (mp_queue_get(q, &item, &len, 5.0) == 0) { ...; free(item); }
 *
 * Items are byte strings (mp_queue_put/get) or mp_obj values
 * (mp_queue_put_obj/get_obj: pickled, as Python's queues carry objects), in
 * FIFO order per producer. A queue made before fork() is shared by the maker
 * and every process forked from it afterwards, and by any number of threads
 * in each.
 *
 * An item keeps the kind it was put with. A get of the other form -
 * mp_queue_get on a value, mp_queue_get_obj on bytes - returns MP_ETYPE and
 * leaves the item at the head of the queue, for every reader in every
 * process; mp_queue_get_item takes either kind and says which. A queue that
 * mixes kinds (bytes items, then a None value as the end marker) is read
 * with mp_queue_get_item, or with mp_queue_get falling back to
 * mp_queue_get_obj on MP_ETYPE:
 *
 *     while ((rc = mp_queue_get(q, &item, &len, 5.0)) == 0) { ...; free(item); }
 *     if (rc == MP_ETYPE)
 *         rc = mp_queue_get_obj(q, &o, 5.0);   // the end marker
 *
 * How it works, as in Python: a pipe, process-shared locks and a semaphore
 * (in shared memory), and in each process that puts, a feeder thread. put()
 * copies the item into the process's buffer and returns; the feeder writes
 * buffered items to the pipe, packing many small ones into each write.
 * get() reads through a read-ahead buffer in shared memory, so a stream of
 * small items costs a fraction of a system call each on both sides, and
 * items read ahead by one process are there for the others.
 *
 * What is guaranteed, beyond Python:
 *   - A process never hangs at exit because of what it put (CPython
 *     gh-73983: a child that put more than a pipe holds, joined by a parent
 *     that has not read yet, waits forever). When the process exits - its
 *     mp_process target returns, or main() returns, or it calls exit() -
 *     its feeder keeps writing while readers make room, and once the pipe
 *     has stayed full for 0.1 s it puts the rest in the queue's spill file
 *     (a memfd, or an unlinked temporary file, made with the queue) and
 *     ends. Readers take spilled items once the pipe is empty, so one
 *     producer's items still arrive in order. Nothing put before exit is
 *     lost, in a process that ends normally and did not call
 *     mp_queue_cancel_join_thread(). mp_queue_close() +
 *     mp_queue_join_thread() behave the same way: they never wait for a
 *     reader for more than that pause.
 *   - A process killed in the middle of a put or a get - SIGKILL, a crash,
 *     at any instant - never wedges the others and never corrupts the
 *     queue: the locks are robust, every write of the pipe is atomic, and
 *     reads are recorded so that the next reader repairs an interrupted
 *     one. What the dead process loses is what it was handling: the item it
 *     was receiving, and the items still in its own feeder buffer.
 *   - A process that writes anything else into the queue's pipe (a stray
 *     write, a bug) does not take down the readers: a get still returns by
 *     its timeout; bytes that are not the library's framing are skipped,
 *     costing only themselves, and never take a valid item with them; an
 *     item longer than the queue's max_item is dropped as it arrives, so a
 *     reader's memory stays bounded; and qsize(), the places of a bounded
 *     queue and a JoinableQueue's count stay exact, since only items that a
 *     put made are counted.
 * As in Python, items still buffered by a process that is killed (or that
 * called cancel_join_thread()) are lost, and an item taken by a process that
 * dies before task_done() keeps a JoinableQueue's join() waiting (give it a
 * timeout).
 *
 * Python's race remains: after put() returns, the item may take a moment to
 * reach the pipe, so empty() can still be true and get(MP_NOWAIT) can still
 * say MP_EMPTY. qsize() and full() count put items at once.
 *
 * Thread/fork: every function may be called from several threads, except
 * that close and free must not race with other calls on the same handle. After
 * fork, the child's handle starts with an empty buffer, no feeder (one starts
 * on its first put) and not closed, as Python's _after_fork() does. Free the
 * queue in the process that made it only once no other process uses it;
 * mp_queue_free() in another process releases that process's resources.
 */
#ifndef MPIPC_QUEUE_H
#define MPIPC_QUEUE_H

#include <mpipc/common.h>
#include <mpipc/error.h>
#include <mpipc/obj.h>

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Python's multiprocessing.Queue (and JoinableQueue). */
typedef struct mp_queue mp_queue;

/* The longest item a queue takes unless mp_queue_opts.max_item says
 * otherwise: 64 MiB (the manager's default request limit). */
#define MP_QUEUE_MAX_ITEM_DEFAULT ((size_t)64 << 20)

/*
 * Options for mp_queue_new_opts and mp_simplequeue_new_opts. Initialise
 * with MP_QUEUE_OPTS_INIT so that fields added later get their defaults.
 *
 * maxsize:  as for mp_queue_new (0: unbounded). Must be 0 for a SimpleQueue.
 * joinable: a JoinableQueue, as mp_queue_new_joinable. Must be false for a
 *           SimpleQueue.
 * max_item: the longest item, in bytes, the queue carries (for a value, the
 *           length of its pickle); 0 for MP_QUEUE_MAX_ITEM_DEFAULT. A put of
 *           a longer item returns MP_ETOOLONG; readers drop anything longer
 *           that reaches the pipe (only a process writing into it by other
 *           means can put it there) as it arrives, so a reader never holds
 *           more than max_item bytes of one item. Fixed for the queue's life.
 */
typedef struct mp_queue_opts {
    size_t maxsize;  /* 0: unbounded */
    bool joinable;   /* a JoinableQueue */
    size_t max_item; /* the longest item in bytes; 0: MP_QUEUE_MAX_ITEM_DEFAULT */
} mp_queue_opts;

/* Every default of mp_queue_opts: unbounded, not joinable, 64 MiB items. */
#define MP_QUEUE_OPTS_INIT                                                                         \
    {                                                                                              \
        0, false, 0                                                                                \
    }

/* The kinds of item, as mp_queue_get_item reports them. */
#define MP_QUEUE_BYTES 1 /* put with mp_queue_put (mp_simplequeue_put) */
#define MP_QUEUE_OBJ   2 /* put with mp_queue_put_obj (mp_simplequeue_put_obj) */

/*
 * mp_queue_new - Queue(maxsize); mp_queue_new_joinable - JoinableQueue(maxsize).
 *
 * maxsize: 0 for unbounded (as Python's maxsize <= 0), else how many items
 *          may be in the queue before put() waits; at most SEM_VALUE_MAX.
 *
 * Items may be up to MP_QUEUE_MAX_ITEM_DEFAULT bytes long; see
 * mp_queue_new_opts for another limit.
 *
 * Returns 0; MP_EVALUE for a maxsize above SEM_VALUE_MAX; -ENOMEM, -EMFILE
 * and other -errno. *out is NULL on failure.
 * Ownership: mp_queue_free(). The queue holds four descriptors (a pipe, its
 * spill file and its held-item file), close-on-exec.
 */
MP_API int mp_queue_new(mp_queue **out, size_t maxsize);
MP_API int mp_queue_new_joinable(mp_queue **out, size_t maxsize);

/*
 * mp_queue_new_opts - a Queue or JoinableQueue with options.
 *
 * opts: NULL for the defaults (as mp_queue_new(out, 0)), or options made
 *       from MP_QUEUE_OPTS_INIT.
 *
 * Returns as mp_queue_new; also MP_EVALUE for a max_item above SIZE_MAX / 4.
 * Ownership: mp_queue_free().
 */
MP_API int mp_queue_new_opts(mp_queue **out, const mp_queue_opts *opts);

/*
 * mp_queue_put - Python's put(item, block, timeout): copy len bytes at data
 * into the queue.
 *
 * timeout: how long to wait for room in a bounded queue (MP_NOWAIT is
 *          put_nowait(), MP_FOREVER waits without limit).
 *
 * Returns 0; MP_FULL when there is no room in time (queue.Full); MP_ECLOSED
 * after mp_queue_close() in this process; MP_ETOOLONG when len is over the
 * queue's max_item (nothing is put); -EINVAL (NULL queue, or NULL data with
 * len > 0); -ENOMEM. The bytes are copied: data is borrowed.
 */
MP_API int mp_queue_put(mp_queue *q, const void *data, size_t len, double timeout);

/*
 * mp_queue_get - Python's get(block, timeout): take the oldest item, which
 * must have been put as bytes.
 *
 * data, len: receive a fresh buffer (never NULL, even for an empty item) and
 *            its length.
 * timeout:   MP_NOWAIT is get_nowait(); MP_FOREVER waits without limit.
 *
 * Returns 0; MP_EMPTY when nothing arrives in time (queue.Empty); MP_ETYPE
 * when the oldest item was put as a value (it stays at the head, for
 * mp_queue_get_obj or mp_queue_get_item); MP_ECLOSED after close in this
 * process; -ENOMEM (the item stays at the head); -errno. The timeout holds
 * whatever arrives in the pipe (a get goes on at most 5 ms longer while an
 * item streams in): a get that has received part of a big item when its
 * time is up leaves that part at the head, and the next get - in any
 * process - goes on with it.
 * Ownership: the caller frees *data with free(). On failure *data is NULL.
 */
MP_API int mp_queue_get(mp_queue *q, void **data, size_t *len, double timeout);

/*
 * mp_queue_put_obj / mp_queue_get_obj - the same for mp_obj values, pickled
 * (protocol 4) as Python's Queue pickles objects.
 *
 * put_obj also returns the pickler's codes (-EINVAL for a NULL value), and
 * MP_ETOOLONG when the pickle is longer than max_item. get_obj returns
 * MP_ETYPE when the oldest item was put as bytes (it stays at the head, for
 * mp_queue_get or mp_queue_get_item); -ENOMEM when the value cannot be
 * built for want of memory (it stays at the head); MP_EPROTO for a pickle
 * the decoder refuses (the item is taken, as no get could read it; on a
 * JoinableQueue it counts as got, so task_done() it).
 * Ownership: get_obj's *obj is the caller's (mp_obj_free); NULL on failure.
 */
MP_API int mp_queue_put_obj(mp_queue *q, const mp_obj *obj, double timeout);
MP_API int mp_queue_get_obj(mp_queue *q, mp_obj **obj, double timeout);

/*
 * mp_queue_get_item - take the oldest item whatever its kind, and say which:
 * for queues that carry both bytes and values.
 *
 * data, len: for an item put as bytes, a fresh buffer (never NULL) and its
 *            length; NULL and 0 otherwise.
 * obj:       for an item put as a value, the value; NULL otherwise.
 * timeout:   as for mp_queue_get.
 *
 * Returns MP_QUEUE_BYTES or MP_QUEUE_OBJ; otherwise as mp_queue_get_obj
 * (never MP_ETYPE); -EINVAL when an argument is NULL.
 * Ownership: the caller frees *data with free() and *obj with mp_obj_free().
 */
MP_API int mp_queue_get_item(mp_queue *q, void **data, size_t *len, mp_obj **obj, double timeout);

/* Python's qsize(): items put and not yet got (>= 0), or -EINVAL. Like
 * Python's, other processes may change it at any moment. */
MP_API ssize_t mp_queue_qsize(mp_queue *q);

/* Python's empty() and full(): 1 or 0 (-EINVAL for NULL). Approximate, as in
 * Python. */
MP_API int mp_queue_empty(mp_queue *q);
MP_API int mp_queue_full(mp_queue *q);

/*
 * mp_queue_close - Python's close(): this process puts no more (put and get
 * then return MP_ECLOSED here); the feeder writes what is buffered, spilling
 * what the pipe cannot take, and stops. Other processes are not affected.
 * Returns 0 or -EINVAL; closing again is fine.
 */
MP_API int mp_queue_close(mp_queue *q);

/*
 * mp_queue_join_thread - Python's join_thread(): wait for the feeder to
 * finish after close. It never waits for a reader (see above).
 * Returns 0; MP_ESTATE before close (Python's AssertionError); -EINVAL.
 */
MP_API int mp_queue_join_thread(mp_queue *q);

/*
 * mp_queue_cancel_join_thread - Python's cancel_join_thread(): at exit, do
 * not flush this process's buffered items; they are lost. 0 or -EINVAL.
 */
MP_API int mp_queue_cancel_join_thread(mp_queue *q);

/*
 * mp_queue_task_done - JoinableQueue.task_done(): one item got earlier is
 * processed. Returns 0; MP_EVALUE when called more times than items were put
 * (Python's ValueError); MP_ESTATE on a queue not made joinable; -EINVAL.
 */
MP_API int mp_queue_task_done(mp_queue *q);

/*
 * mp_queue_join - JoinableQueue.join(): wait until every item put has been
 * task_done()'d. Returns 0; MP_ETIMEDOUT; MP_ESTATE on a queue not made
 * joinable; -EINVAL.
 */
MP_API int mp_queue_join(mp_queue *q, double timeout);

/*
 * mp_queue_free - close (flushing as mp_queue_close does), wait for this
 * process's feeder, release this process's resources, and - in the process
 * that made the queue - the queue itself. Accepts NULL.
 */
MP_API void mp_queue_free(mp_queue *q);

/* ---- SimpleQueue ------------------------------------------------------------- */

/* Python's multiprocessing.SimpleQueue: a locked pipe, no feeder thread. */
typedef struct mp_simplequeue mp_simplequeue;

/* mp_simplequeue_new - a new SimpleQueue. Returns as mp_queue_new(). */
MP_API int mp_simplequeue_new(mp_simplequeue **out);

/* mp_simplequeue_new_opts - a new SimpleQueue with options (NULL for the
 * defaults); only max_item applies: maxsize and joinable must be 0 and
 * false (-EINVAL otherwise). Returns as mp_queue_new_opts(). */
MP_API int mp_simplequeue_new_opts(mp_simplequeue **out, const mp_queue_opts *opts);

/*
 * mp_simplequeue_put - write the item into the pipe now (Python's put()),
 * waiting for room when the pipe is full.
 * timeout: how long to wait for room (Python waits without limit); an item
 *          that could not be written whole in time is not delivered.
 * Returns 0; MP_FULL when no room came in time; MP_ECLOSED; MP_ETOOLONG
 * over max_item; -EINVAL; -EPIPE when no process can read it any more;
 * -ENOMEM.
 */
MP_API int mp_simplequeue_put(mp_simplequeue *q, const void *data, size_t len, double timeout);

/* mp_simplequeue_get - Python's get(), with a timeout: as mp_queue_get()
 * (MP_ETYPE for an item put as a value, which stays at the head). */
MP_API int mp_simplequeue_get(mp_simplequeue *q, void **data, size_t *len, double timeout);

/* The mp_obj forms and the get of either kind, as for mp_queue. */
MP_API int mp_simplequeue_put_obj(mp_simplequeue *q, const mp_obj *obj, double timeout);
MP_API int mp_simplequeue_get_obj(mp_simplequeue *q, mp_obj **obj, double timeout);
MP_API int mp_simplequeue_get_item(mp_simplequeue *q, void **data, size_t *len, mp_obj **obj,
                                   double timeout);

/* Python's empty(): 1 or 0, -EINVAL. */
MP_API int mp_simplequeue_empty(mp_simplequeue *q);

/* Python's close(): close this process's ends; later calls here return
 * MP_ECLOSED. Returns 0 or -EINVAL. */
MP_API int mp_simplequeue_close(mp_simplequeue *q);

/* mp_simplequeue_free - close, and in the making process release the queue.
 * Accepts NULL. */
MP_API void mp_simplequeue_free(mp_simplequeue *q);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_QUEUE_H */
