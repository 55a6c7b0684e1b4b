/*
 * libmpipc - the manager's synchronization proxies (1.1): Semaphore,
 * BoundedSemaphore, Event, Condition and Barrier held in a manager server,
 * as Python's Manager().Semaphore() and the rest. Included by manager.h.
 *
 *     mp_semproxy *sem;
 *     mp_manager_semaphore(m, 2, &sem);
 *     if (mp_semproxy_acquire(sem, 5.0) >= 0) {   // 0 or MP_EOWNERDEAD
 *         ...                                      // at most two at a time
 *         mp_semproxy_release(sem);
 *     }
 *     mp_semproxy_free(sem);
 *
 * What the server promises beyond Python: units of a semaphore, and a
 * condition's lock, held by a process that dies (or exits, or closes its
 * manager) are given back, and the next acquirer gets MP_EOWNERDEAD; a
 * waiter whose process died never takes a notify, an event's wake-up or a
 * barrier's place; nothing waits without the timeout its caller gave.
 * Python clients of the same server see Python's own proxies (docs/manager.md).
 *
 * Common returns of every call below, as for dict proxies (manager.h):
 * -EINVAL for a NULL proxy, MP_ECLOSED, MP_ENOSERVER, MP_ENOOBJ. Thread/fork
 * of every proxy: as mp_dictproxy (any thread; a forked child that uses an
 * inherited proxy registers as a holder), the holder of a unit or a lock
 * being the calling thread of the calling process.
 */
#ifndef MPIPC_MANAGER_SYNC_H
#define MPIPC_MANAGER_SYNC_H

#include <mpipc/common.h>
#include <mpipc/manager.h>

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A manager Semaphore or BoundedSemaphore (Python's AcquirerProxy on one). */
typedef struct mp_semproxy mp_semproxy;
/* A manager Event (Python's EventProxy). */
typedef struct mp_eventproxy mp_eventproxy;
/* A manager Condition (Python's ConditionProxy). */
typedef struct mp_condproxy mp_condproxy;
/* A manager Barrier (Python's BarrierProxy). */
typedef struct mp_barrierproxy mp_barrierproxy;

/* ---- Semaphore proxies ----------------------------------------------------------- */

/*
 * mp_manager_semaphore - a new manager Semaphore(value) (Python's
 * Manager().Semaphore(value)).
 * Returns 0. Ownership: mp_semproxy_free() the proxy. Thread/fork: as
 * mp_manager_dict().
 */
MP_API int mp_manager_semaphore(mp_manager *m, unsigned value, mp_semproxy **out);

/*
 * mp_manager_bounded_semaphore - a new manager BoundedSemaphore(value):
 * releasing it above value is MP_EVALUE (Python's ValueError).
 * Returns 0. Ownership and Thread/fork as mp_manager_semaphore().
 */
MP_API int mp_manager_bounded_semaphore(mp_manager *m, unsigned value, mp_semproxy **out);

/*
 * mp_semproxy_acquire - Python's sem.acquire(timeout=...): take one unit.
 *
 * timeout: MP_FOREVER, MP_NOWAIT (Python's blocking=False) or seconds.
 *          Waiters are served in arrival order.
 *
 * Returns 0 when acquired; MP_EOWNERDEAD when acquired after a process died
 * holding units (given back by the server; the next acquirer gets 0);
 * MP_ETIMEDOUT when not acquired (Python returns False); the common codes.
 * Thread/fork: any thread; the units are held by the calling process.
 */
MP_API int mp_semproxy_acquire(mp_semproxy *sem, double timeout);

/*
 * mp_semproxy_release - Python's sem.release(): give one unit back (any
 * process may, as in Python).
 * Returns 0; MP_EVALUE for a BoundedSemaphore already at its value (Python's
 * ValueError); the common codes. Thread/fork: any thread, any process.
 */
MP_API int mp_semproxy_release(mp_semproxy *sem);

/*
 * mp_semproxy_get_value - the free units now (Python's sem._value).
 * Returns the count, or a negative code. Thread/fork: any.
 */
MP_API ssize_t mp_semproxy_get_value(mp_semproxy *sem);

/* mp_semproxy_free - release the proxy (not the semaphore). Accepts NULL.
 * Thread/fork: as mp_dictproxy_free(). */
MP_API void mp_semproxy_free(mp_semproxy *sem);

/* ---- Event proxies ------------------------------------------------------------------ */

/*
 * mp_manager_event - a new manager Event (Python's Manager().Event()), clear.
 * Returns 0. Ownership: mp_eventproxy_free() the proxy. Thread/fork: as
 * mp_manager_dict().
 */
MP_API int mp_manager_event(mp_manager *m, mp_eventproxy **out);

/* mp_eventproxy_set - ev.set(): every waiter wakes. Returns 0 or a common code. */
MP_API int mp_eventproxy_set(mp_eventproxy *ev);

/* mp_eventproxy_clear - ev.clear(). Returns 0 or a common code. */
MP_API int mp_eventproxy_clear(mp_eventproxy *ev);

/* mp_eventproxy_is_set - ev.is_set(): 1 or 0, or a negative code. */
MP_API int mp_eventproxy_is_set(mp_eventproxy *ev);

/*
 * mp_eventproxy_wait - ev.wait(timeout): until the event is set.
 * timeout: MP_FOREVER, MP_NOWAIT or seconds.
 * Returns 0 when it is set (Python's True); MP_ETIMEDOUT (False); the
 * common codes.
 */
MP_API int mp_eventproxy_wait(mp_eventproxy *ev, double timeout);

/* mp_eventproxy_free - release the proxy. Accepts NULL. Thread/fork: as
 * mp_dictproxy_free(). */
MP_API void mp_eventproxy_free(mp_eventproxy *ev);

/* ---- Condition proxies -------------------------------------------------------------- */

/*
 * mp_manager_condition - a new manager Condition (Python's
 * Manager().Condition(lock)).
 *
 * lock: a manager Lock or RLock of the same manager (borrowed; the
 *       calling process then holds it for as long as it is connected), or
 *       NULL for a new RLock of the condition's own. On CPython's server the
 *       lock travels as a pickled proxy, which the server calls through a
 *       proxy of its own: as with Python's m.Condition(m.Lock()), that needs
 *       the server process's authkey to be the manager's, and wait and
 *       notify over an RLock are MP_EVALUE (Python's RuntimeError) there.
 *
 * Returns 0; MP_ENOOBJ when lock is gone. Ownership: mp_condproxy_free()
 * the proxy. Thread/fork: as mp_manager_dict().
 */
MP_API int mp_manager_condition(mp_manager *m, mp_lockproxy *lock, mp_condproxy **out);

/*
 * mp_condproxy_acquire - cond.acquire(timeout=...): take the condition's
 * lock. Returns as mp_lockproxy_acquire().
 */
MP_API int mp_condproxy_acquire(mp_condproxy *cond, double timeout);

/*
 * mp_condproxy_release - cond.release(). Returns as mp_lockproxy_release().
 */
MP_API int mp_condproxy_release(mp_condproxy *cond);

/*
 * mp_condproxy_wait - cond.wait(timeout): release the lock, wait for a
 * notify or the timeout, then take the lock back (however long that takes,
 * as in Python).
 *
 * timeout: MP_FOREVER, MP_NOWAIT or seconds.
 *
 * Returns 0 when notified (Python's True); MP_ETIMEDOUT when not (False);
 * MP_EOWNERDEAD when woken and the lock came back from a process that died
 * holding it; MP_EVALUE (Python's RuntimeError) when the caller does not
 * hold the lock; the common codes. On 0, MP_ETIMEDOUT and MP_EOWNERDEAD
 * the caller holds the lock again. Taking the lock back counts against the
 * manager's call timeout (mp_manager_set_timeout), not against timeout: a
 * lock held elsewhere for longer than that after the timeout gives
 * MP_ETIMEDOUT without the lock, which the server still hands to this
 * thread once it is free (a later mp_condproxy_release() from this thread,
 * or the process's end, gives it up): keep the call timeout above the
 * time others hold the lock.
 */
MP_API int mp_condproxy_wait(mp_condproxy *cond, double timeout);

/*
 * mp_condproxy_wait_for - cond.wait_for(pred, timeout): wait until pred(arg)
 * is true, calling it with the lock held (first before any wait).
 * Returns 1 when pred became true, 0 when the timeout passed first (Python
 * returns the predicate's last value), or a negative code of
 * mp_condproxy_wait().
 */
MP_API int mp_condproxy_wait_for(mp_condproxy *cond, bool (*pred)(void *arg), void *arg,
                                 double timeout);

/*
 * mp_condproxy_notify - cond.notify(n): wake up to n waiters, in arrival
 * order; a waiter whose process died is skipped, not counted.
 * Returns how many were woken; MP_EVALUE (RuntimeError) when the caller
 * does not hold the lock; the common codes.
 */
MP_API ssize_t mp_condproxy_notify(mp_condproxy *cond, size_t n);

/* mp_condproxy_notify_all - cond.notify_all(). Returns as mp_condproxy_notify(). */
MP_API ssize_t mp_condproxy_notify_all(mp_condproxy *cond);

/* mp_condproxy_free - release the proxy. Accepts NULL. Thread/fork: as
 * mp_dictproxy_free(). */
MP_API void mp_condproxy_free(mp_condproxy *cond);

/* ---- Barrier proxies ---------------------------------------------------------------- */

/*
 * mp_manager_barrier - a new manager Barrier(parties,
 * timeout=default_timeout) (Python's Manager().Barrier()). Python's action
 * has no C form here: the server runs no client code.
 *
 * parties: how many waiters trip it, at least 1 (else MP_EVALUE).
 * default_timeout: what mp_barrierproxy_wait(..., MP_FOREVER) waits:
 *          MP_FOREVER or seconds.
 *
 * Returns 0. Ownership: mp_barrierproxy_free() the proxy. Thread/fork: as
 * mp_manager_dict().
 */
MP_API int mp_manager_barrier(mp_manager *m, unsigned parties, double default_timeout,
                              mp_barrierproxy **out);

/*
 * mp_barrierproxy_wait - barrier.wait(timeout): wait until parties waiters
 * are there. A waiter whose process died holds no place.
 *
 * timeout: MP_FOREVER (the barrier's own timeout), MP_NOWAIT or seconds;
 *          when it passes, the barrier breaks, as in Python.
 *
 * Returns this waiter's index, 0 to parties - 1 (the last to come gets
 * parties - 1); MP_EBROKEN (Python's BrokenBarrierError) when the barrier
 * is or becomes broken (a timeout, an abort, a reset while waiting); the
 * common codes.
 */
MP_API int mp_barrierproxy_wait(mp_barrierproxy *b, double timeout);

/* mp_barrierproxy_abort - barrier.abort(): break it; waiters get MP_EBROKEN.
 * Returns 0 or a common code. */
MP_API int mp_barrierproxy_abort(mp_barrierproxy *b);

/* mp_barrierproxy_reset - barrier.reset(): waiters get MP_EBROKEN and the
 * barrier is whole again. Returns 0 or a common code. */
MP_API int mp_barrierproxy_reset(mp_barrierproxy *b);

/* mp_barrierproxy_parties - barrier.parties, or a negative code. */
MP_API ssize_t mp_barrierproxy_parties(mp_barrierproxy *b);

/* mp_barrierproxy_n_waiting - barrier.n_waiting (live waiters only), or a
 * negative code. */
MP_API ssize_t mp_barrierproxy_n_waiting(mp_barrierproxy *b);

/* mp_barrierproxy_broken - barrier.broken: 1 or 0, or a negative code. */
MP_API int mp_barrierproxy_broken(mp_barrierproxy *b);

/* mp_barrierproxy_free - release the proxy. Accepts NULL. Thread/fork: as
 * mp_dictproxy_free(). */
MP_API void mp_barrierproxy_free(mp_barrierproxy *b);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_MANAGER_SYNC_H */
