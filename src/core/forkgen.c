/*
 * forkgen - the fork generation counter and the forkfix mutex (see
 * internal.h): how a handle tells, for one load, that it lives in a child.
 *
 * The counter only changes in a child, inside the atfork handler, while that
 * child is still single-threaded; readers elsewhere see a stable value, so a
 * relaxed atomic load is enough. Statics start with forkgen_.
 */
#include "core/internal.h"

#include <pthread.h>

static unsigned generation;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t forkfix_mutex = PTHREAD_MUTEX_INITIALIZER;

static void forkgen_child(void)
{
    __atomic_store_n(&generation, __atomic_load_n(&generation, __ATOMIC_RELAXED) + 1,
                     __ATOMIC_RELAXED);
    /* Another parent thread may have held the mutex at the moment of fork;
     * in the child that thread does not exist, so start from a fresh one. */
    /* Re-initialised, not assigned: ThreadSanitizer has to see it. */
    (void)pthread_mutex_init(&forkfix_mutex, NULL);
}

static void forkgen_install(void)
{
    /* pthread_atfork only fails with ENOMEM; then children are not told, and
     * the only cost is that a child may reuse a read-ahead buffer it inherited.
     * There is nothing better to do from a once-routine, so it is ignored. */
    (void)pthread_atfork(NULL, NULL, forkgen_child);
}

unsigned mp__forkgen(void)
{
    (void)pthread_once(&install_once, forkgen_install);
    return __atomic_load_n(&generation, __ATOMIC_RELAXED);
}

/* The mutex is valid in every process (the child handler re-creates it)
 * and never taken twice by one thread, so locking and unlocking it cannot
 * fail: a failure would be a broken lock discipline. */
void mp__forkfix_lock(void)
{
    int rc = pthread_mutex_lock(&forkfix_mutex);
    MP__ASSERT(rc == 0);
    (void)rc;
}

void mp__forkfix_unlock(void)
{
    int rc = pthread_mutex_unlock(&forkfix_mutex);
    MP__ASSERT(rc == 0);
    (void)rc;
}
