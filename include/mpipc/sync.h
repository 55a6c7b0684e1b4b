/*
 * libmpipc - process-shared synchronisation: Python's
 * multiprocessing.synchronize (Lock, RLock, Semaphore, BoundedSemaphore,
 * Event, Condition, Barrier) and multiprocessing.sharedctypes (Value, Array),
 * for processes forked after the object was made.
 *
 *     mp_lock *lock;
 *     mp_lock_new(&lock);                     // before fork
 *     ...                                     // in any process, any thread:
 *     if (mp_lock_acquire(lock, 5.0) >= 0) { ...; mp_lock_release(lock); }
 *
 * Every object lives in shared memory (mp_shm_alloc below) and is used, as
 * with Python's fork start method, by the process that made it and by every
 * process forked from it afterwards, from any number of threads in each.
 * Objects made in a child are shared with that child's own children only.
 *
 * Timeouts are seconds as in Python: MP_FOREVER, MP_NOWAIT, or t > 0 on
 * CLOCK_MONOTONIC. Where Python returns False from acquire() or wait(), these
 * functions return MP_ETIMEDOUT.
 *
 * A process that dies holding a lock does not wedge the others - CPython
 * never had that (gh-88304):
 *   - Lock and RLock are robust: when the holder dies (killed, crashed, or
 *     ended without releasing), the next acquirer gets the lock with
 *     MP_EOWNERDEAD instead of waiting forever. The lock is then held by the
 *     new owner and fully usable; the data it guards may be half-updated,
 *     which is why the caller is told.
 *   - Condition, Event and Barrier notice waiters that died and never count
 *     them as woken; a Barrier whose waiting party dies breaks (MP_EBROKEN for
 *     the others) instead of never filling. The others learn it within a
 *     second of the death, waiting with MP_FOREVER too: a barrier's waiters
 *     look for dead parties every 200 ms. Every wait honours its timeout.
 *   - Semaphores have no owner, so a unit taken by a process that died stays
 *     taken, as in Python; waiters still return at their timeouts.
 *
 * Lock ownership - the one deliberate difference from Python. Python lets
 * any thread of any process release a Lock. These locks are robust pthread
 * mutexes, which is what makes dead-holder recovery exact, and a robust mutex
 * can only be unlocked by the thread that locked it. So mp_lock_release()
 * from a thread that does not hold the lock returns MP_ESTATE and changes
 * nothing (if the holder is dead, it releases the lock instead: see there).
 * Code that hands "the right to release" to another process should use a
 * Semaphore with value 1, which has no owner, exactly like Python's Lock.
 *
 * Freeing. mp_X_free() in the process that made the object destroys it; the
 * caller must make sure no other process still uses it. mp_X_free() in a
 * process that inherited the object does nothing (the maker still owns it),
 * so children may call it freely. Every mp_X_free() accepts NULL.
 *
 * Limits. At most MP_SYNC_MAX_WAITERS threads (over all processes) can wait
 * on one Condition or Event at the same time; one more gets -EAGAIN. A
 * Barrier holds 2 * parties + MP_SYNC_MAX_WAITERS waiters.
 */
#ifndef MPIPC_SYNC_H
#define MPIPC_SYNC_H

#include <mpipc/common.h>
#include <mpipc/error.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How many threads may wait on one Condition or Event at once. */
#define MP_SYNC_MAX_WAITERS 256

/* ---- shared memory ------------------------------------------------------------ */

/*
 * mp_shm_alloc - allocate size bytes of zeroed memory shared with every child
 * forked afterwards (mmap(MAP_SHARED|MAP_ANONYMOUS) arenas; Python's
 * multiprocessing.heap). The block is aligned to 64 bytes.
 *
 * Returns 0 with *out set; -EINVAL for size 0 or a NULL out; -ENOMEM.
 * Ownership: release with mp_shm_free() in the allocating process.
 * Thread/fork: any thread. A child allocates from arenas of its own, never
 * from the free space of arenas it inherited.
 */
MP_API int mp_shm_alloc(void **out, size_t size);

/*
 * mp_shm_free - release a block from mp_shm_alloc(). In a process that did
 * not allocate it (a child that inherited it) this does nothing, and the
 * block stays valid for everyone. Accepts NULL.
 */
MP_API void mp_shm_free(void *p);

/* ---- Lock ------------------------------------------------------------------------- */

/* Python's multiprocessing.Lock: non-recursive, robust (see above). */
typedef struct mp_lock mp_lock;

/*
 * mp_lock_new - a new, unlocked Lock.
 * Returns 0, -EINVAL, -ENOMEM or another -errno from pthread; *out is NULL
 * on failure. Ownership: mp_lock_free().
 */
MP_API int mp_lock_new(mp_lock **out);

/*
 * mp_lock_acquire - Python's acquire(block, timeout).
 *
 * timeout:  MP_FOREVER, MP_NOWAIT (acquire(False)) or seconds.
 *
 * Returns 0 when acquired; MP_EOWNERDEAD when acquired from a holder that
 * died (the caller now holds it); MP_ETIMEDOUT when not acquired in time.
 * The lock is not recursive: a thread that already holds it gets
 * MP_ETIMEDOUT at once with MP_NOWAIT, after the timeout with t > 0 (as in
 * Python), and -EDEADLK with MP_FOREVER (Python would hang forever).
 * -EINVAL for NULL.
 */
MP_API int mp_lock_acquire(mp_lock *lock, double timeout);

/*
 * mp_lock_release - Python's release().
 *
 * Returns 0; MP_EVALUE when the lock is not locked (Python's ValueError
 * "semaphore or lock released too many times"); MP_ESTATE when another
 * living thread holds it (see "Lock ownership" above: nothing changes).
 * When the holder has died, the lock is released and 0 returned (the next
 * acquirer is then not told of the death). -EINVAL for NULL.
 */
MP_API int mp_lock_release(mp_lock *lock);

/* mp_lock_free - destroy the lock (see "Freeing"). Accepts NULL. */
MP_API void mp_lock_free(mp_lock *lock);

/* ---- RLock ------------------------------------------------------------------------ */

/* Python's multiprocessing.RLock: recursive, owned by one thread, robust. */
typedef struct mp_rlock mp_rlock;

/* mp_rlock_new - a new, unlocked RLock. Returns as mp_lock_new(). */
MP_API int mp_rlock_new(mp_rlock **out);

/*
 * mp_rlock_acquire - acquire, or add one level if the calling thread already
 * holds it. Returns 0; MP_EOWNERDEAD (acquired at level 1 from a holder that
 * died, whatever level it held); MP_ETIMEDOUT; -EAGAIN when the recursion
 * count would overflow; -EINVAL.
 */
MP_API int mp_rlock_acquire(mp_rlock *lock, double timeout);

/*
 * mp_rlock_release - drop one level; the last one unlocks.
 * Returns 0; MP_ESTATE when the calling thread does not hold it (Python's
 * AssertionError "attempt to release recursive lock not owned by thread");
 * -EINVAL.
 */
MP_API int mp_rlock_release(mp_rlock *lock);

/* How many levels the calling thread holds (0 if it does not hold the lock),
 * or -EINVAL. */
MP_API ssize_t mp_rlock_count(mp_rlock *lock);

/* mp_rlock_free - destroy the lock (see "Freeing"). Accepts NULL. */
MP_API void mp_rlock_free(mp_rlock *lock);

/* ---- Semaphore and BoundedSemaphore ----------------------------------------------- */

/* Python's Semaphore / BoundedSemaphore: a counter with no owner. */
typedef struct mp_sem mp_sem;

/*
 * mp_sem_new - Semaphore(value); mp_sem_new_bounded - BoundedSemaphore(value),
 * whose release above the initial value is MP_EVALUE.
 * value: 0..SEM_VALUE_MAX (at least 32767; INT_MAX on Linux), else MP_EVALUE.
 * Returns 0, MP_EVALUE, -ENOMEM, -errno. Ownership: mp_sem_free().
 */
MP_API int mp_sem_new(mp_sem **out, unsigned value);
MP_API int mp_sem_new_bounded(mp_sem **out, unsigned value);

/* mp_sem_acquire - take one unit: 0, MP_ETIMEDOUT, -EINVAL, -errno. */
MP_API int mp_sem_acquire(mp_sem *sem, double timeout);

/*
 * mp_sem_release - give one unit back (any thread, any process).
 * Returns 0; MP_EVALUE for a bounded semaphore already at its initial value
 * (Python's ValueError "semaphore or lock released too many times");
 * -EOVERFLOW at SEM_VALUE_MAX; -EINVAL.
 */
MP_API int mp_sem_release(mp_sem *sem);

/* mp_sem_get_value - the current value (>= 0; Python's get_value()), or
 * -EINVAL. Other processes may change it at any moment. */
MP_API int mp_sem_get_value(mp_sem *sem);

/* mp_sem_free - destroy (see "Freeing"). Accepts NULL. */
MP_API void mp_sem_free(mp_sem *sem);

/* ---- Event ------------------------------------------------------------------------ */

/* Python's multiprocessing.Event: a flag that waiters sleep on. */
typedef struct mp_event mp_event;

/* mp_event_new - a new Event, not set. Returns 0, -ENOMEM, -errno. */
MP_API int mp_event_new(mp_event **out);

/* mp_event_set - set the flag and wake every waiter. 0 or -EINVAL. */
MP_API int mp_event_set(mp_event *ev);

/* mp_event_clear - clear the flag. 0 or -EINVAL. */
MP_API int mp_event_clear(mp_event *ev);

/* mp_event_is_set - 1 if set, 0 if not, -EINVAL. */
MP_API int mp_event_is_set(mp_event *ev);

/*
 * mp_event_wait - wait until the flag is set (Python's wait(timeout), which
 * returns whether the flag was set).
 * Returns 0 when the flag is (or became) set; MP_ETIMEDOUT when the timeout
 * passed with the flag clear; -EAGAIN when MP_SYNC_MAX_WAITERS threads are
 * already waiting; -EINVAL.
 */
MP_API int mp_event_wait(mp_event *ev, double timeout);

/* mp_event_free - destroy (see "Freeing"). Accepts NULL. */
MP_API void mp_event_free(mp_event *ev);

/* ---- Condition -------------------------------------------------------------------- */

/* Python's multiprocessing.Condition(lock). */
typedef struct mp_cond mp_cond;

/*
 * mp_cond_new - Condition(lock) over a Lock; NULL makes the condition's own
 * RLock, Python's default. mp_cond_new_rlock - Condition(rlock) over an
 * RLock the caller made.
 * The lock is borrowed: it must outlive the condition, which never frees it
 * (the condition's own RLock is freed with it).
 * Returns 0, -ENOMEM, -errno. Ownership: mp_cond_free().
 */
MP_API int mp_cond_new(mp_cond **out, mp_lock *lock);
MP_API int mp_cond_new_rlock(mp_cond **out, mp_rlock *rlock);

/* mp_cond_acquire / mp_cond_release - the underlying lock's acquire and
 * release, with their return codes. */
MP_API int mp_cond_acquire(mp_cond *cond, double timeout);
MP_API int mp_cond_release(mp_cond *cond);

/*
 * mp_cond_wait - Python's wait(timeout): release the lock (every level of an
 * RLock), sleep until notified or the timeout passes, take the lock back
 * (waiting for it without limit, as Python does) at the same level.
 *
 * Returns 0 when notified; MP_ETIMEDOUT when the timeout passed first;
 * MP_EOWNERDEAD when notified or not, the lock was taken back from a
 * holder that died meanwhile (check your predicate); MP_ESTATE when the
 * calling thread does not hold the lock (Python's AssertionError "must
 * acquire() condition before using wait()"); -EAGAIN when
 * MP_SYNC_MAX_WAITERS threads already wait; -EINVAL. On every return
 * except MP_ESTATE, -EAGAIN and -EINVAL the caller holds the lock.
 */
MP_API int mp_cond_wait(mp_cond *cond, double timeout);

/*
 * mp_cond_wait_for - Python's wait_for(predicate, timeout): wait until
 * pred(arg) is true, re-checking after each wake, for at most timeout in all.
 * Returns 0 when the predicate is true (checked with the lock held);
 * MP_ETIMEDOUT when it is still false at the deadline; MP_EOWNERDEAD when it
 * is true and the lock was taken back from a dead holder on the way;
 * otherwise as mp_cond_wait().
 */
MP_API int mp_cond_wait_for(mp_cond *cond, bool (*pred)(void *arg), void *arg, double timeout);

/*
 * mp_cond_notify - wake up to n waiters, oldest first (Python's notify(n)):
 * exactly min(n, living waiters) of them return 0 from their wait. Waiters
 * that died are skipped. mp_cond_notify_all - wake every waiter.
 * Returns the number woken (>= 0); MP_ESTATE when the calling thread does not
 * hold the lock (Python's AssertionError "lock is not owned"); -EINVAL.
 */
MP_API ssize_t mp_cond_notify(mp_cond *cond, size_t n);
MP_API ssize_t mp_cond_notify_all(mp_cond *cond);

/* mp_cond_free - destroy (see "Freeing"); not the borrowed lock. */
MP_API void mp_cond_free(mp_cond *cond);

/* ---- Barrier ---------------------------------------------------------------------- */

/* Python's multiprocessing.Barrier(parties, action, timeout). */
typedef struct mp_barrier mp_barrier;

/* The action run once per cycle, by the last party to arrive, before any
 * party is released. Return 0; non-zero breaks the barrier (Python: the
 * action raised). It must not call the barrier's functions. */
typedef int (*mp_barrier_action)(void *arg);

/*
 * mp_barrier_new - a barrier for `parties` threads or processes.
 * action, arg: run as above, in whichever process arrives last (function
 *              pointers are valid in forked children); may be NULL.
 * timeout:     the default for mp_barrier_wait() (MP_FOREVER: none).
 * Returns 0; MP_EVALUE for parties == 0 (Python's ValueError); -ENOMEM.
 * Ownership: mp_barrier_free().
 */
MP_API int mp_barrier_new(mp_barrier **out, unsigned parties, mp_barrier_action action, void *arg,
                          double timeout);

/*
 * mp_barrier_wait - wait for every party (Python's wait(timeout)).
 *
 * timeout: seconds, MP_NOWAIT, or MP_FOREVER for Python's timeout=None,
 *          which means, as in Python, the barrier's own timeout (the one
 *          given to mp_barrier_new(); that one may be MP_FOREVER: no limit).
 *
 * Returns the arrival index, 0 .. parties-1, unique per cycle (the first to
 * arrive gets 0); MP_EBROKEN (Python's BrokenBarrierError) when the barrier
 * is or becomes broken while waiting: a party timed out (it breaks the
 * barrier for all, as in Python), abort() was called, the action failed, a
 * waiting party died (told within a second of its death, whatever the
 * timeout), or reset() ran during the wait; -EAGAIN when too many
 * threads wait at once; -EINVAL. The barrier is reusable cycle after cycle.
 */
MP_API int mp_barrier_wait(mp_barrier *b, double timeout);

/* mp_barrier_abort - break the barrier: every waiter and every later wait
 * gets MP_EBROKEN until reset. 0 or -EINVAL. */
MP_API int mp_barrier_abort(mp_barrier *b);

/* mp_barrier_reset - back to the empty state; current waiters get
 * MP_EBROKEN. 0 or -EINVAL. */
MP_API int mp_barrier_reset(mp_barrier *b);

/* Python's parties, n_waiting and broken properties (n_waiting and broken
 * return -EINVAL for NULL). */
MP_API unsigned mp_barrier_parties(const mp_barrier *b);
MP_API ssize_t mp_barrier_n_waiting(mp_barrier *b);
MP_API int mp_barrier_broken(mp_barrier *b);

/* mp_barrier_free - destroy (see "Freeing"). Accepts NULL. */
MP_API void mp_barrier_free(mp_barrier *b);

/* ---- shared Value and Array ---------------------------------------------------------- */

/*
 * Python's multiprocessing.Value / Array (and RawValue / RawArray): a typed
 * scalar or fixed-length array in shared memory, by default with an RLock
 * that every typed accessor below takes, as Python's synchronized wrappers
 * do. Typecodes are Python's (array module / ctypes):
 *
 *   'c' char  'b' signed char  'B' unsigned char  'h' short  'H' unsigned short
 *   'i' int   'I' unsigned int 'l' long  'L' unsigned long
 *   'q' long long  'Q' unsigned long long  'f' float  'd' double
 *
 * Like Python's Value, the typed accessors take the lock around each single
 * access only: a read-modify-write such as v -= 1 needs the caller to hold
 * the lock (mp_value_get_lock) around both, exactly as `with v.get_lock():
 * v.value -= 1` in Python. The RLock lets the accessors run inside it.
 */
typedef struct mp_value mp_value;
typedef struct mp_array mp_array;

/*
 * mp_value_new - Value(typecode, init, lock=with_lock).
 * init:      a pointer to one item of the type, or NULL for zero.
 * with_lock: true for Python's default (a new RLock), false for RawValue.
 * Returns 0; MP_EVALUE for an unknown typecode; -ENOMEM.
 * Ownership: mp_value_free() (which frees its lock too).
 */
MP_API int mp_value_new(mp_value **out, char typecode, const void *init, bool with_lock);

/* The raw item (Python's RawValue / the wrapper's get_obj()): access it
 * yourself under the lock when other processes write it. */
MP_API void *mp_value_ptr(mp_value *v);

/* The value's lock (Python's get_lock()), or NULL for a raw value. Owned by
 * the value. */
MP_API mp_rlock *mp_value_get_lock(mp_value *v);

/* The typecode the value was made with, or 0 for NULL. */
MP_API char mp_value_typecode(const mp_value *v);

/*
 * mp_value_get_int / mp_value_set_int - read or write an integer-typed value
 * (also 'c'), under the lock. set_int returns -ERANGE when x does not fit
 * the type (ctypes would silently truncate it), get_int -ERANGE for an
 * unsigned 64-bit item above INT64_MAX (read it through the pointer). mp_value_get_float /
 * mp_value_set_float - the same for 'f' and 'd'.
 * Returns 0; MP_ETYPE for the other kind of typecode; MP_EOWNERDEAD when the
 * access happened but the lock was taken from a holder that died; -EINVAL.
 */
MP_API int mp_value_get_int(mp_value *v, int64_t *out);
MP_API int mp_value_set_int(mp_value *v, int64_t x);
MP_API int mp_value_get_float(mp_value *v, double *out);
MP_API int mp_value_set_float(mp_value *v, double x);

/* mp_value_free - destroy (see "Freeing"). Accepts NULL. */
MP_API void mp_value_free(mp_value *v);

/*
 * mp_array_new - Array(typecode, n or initializer, lock=with_lock).
 * n:     number of items (> 0).
 * init:  n items to copy in, or NULL for zeros.
 * Returns 0; MP_EVALUE for an unknown typecode or n == 0; -ENOMEM.
 * Ownership: mp_array_free().
 */
MP_API int mp_array_new(mp_array **out, char typecode, size_t n, const void *init, bool with_lock);

/* The first item, the number of items (Python's len(); -EINVAL for NULL),
 * the lock (NULL if raw), the typecode. */
MP_API void *mp_array_ptr(mp_array *a);
MP_API ssize_t mp_array_len(const mp_array *a);
MP_API mp_rlock *mp_array_get_lock(mp_array *a);
MP_API char mp_array_typecode(const mp_array *a);

/*
 * mp_array_get_int / _set_int / _get_float / _set_float - item i under the
 * lock; a negative i counts from the end, as in Python.
 * Returns as the mp_value accessors, and MP_EKEY for an index out of range
 * (Python's IndexError).
 */
MP_API int mp_array_get_int(mp_array *a, ssize_t i, int64_t *out);
MP_API int mp_array_set_int(mp_array *a, ssize_t i, int64_t x);
MP_API int mp_array_get_float(mp_array *a, ssize_t i, double *out);
MP_API int mp_array_set_float(mp_array *a, ssize_t i, double x);

/* mp_array_free - destroy (see "Freeing"). Accepts NULL. */
MP_API void mp_array_free(mp_array *a);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_SYNC_H */
