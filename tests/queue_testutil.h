/*
 * queue_testutil - what the queue test binaries share (test_queue for
 * src/queue/queue.c, test_qpipe for src/queue/qpipe.c): time bounds, mp_process
 * children, int items, self-checking byte items and long string values.
 */
#ifndef MPIPC_QUEUE_TESTUTIL_H
#define MPIPC_QUEUE_TESTUTIL_H

#include "testutil.h"

#include <mpipc/obj.h>
#include <mpipc/process.h>
#include <mpipc/queue.h>

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define T_LONG 30.0 /* a bound that only a hang can reach */
#define DELTA  0.1  /* Python's DELTA */
#define SLACK  1.5  /* how late a timed call may return on a loaded machine */

#define ASSERT_TOOK(t0, expected)                                                                  \
    do {                                                                                           \
        double took_ = tu_now() - (t0);                                                            \
        if (took_ < (expected)-0.005 || took_ > (expected) + SLACK)                                \
            fail_msg("took %.3f s, expected about %.3f s", took_, (double)(expected));             \
    } while (0)

/* A started mp_process running fn(arg). */
mp_process *spawn(mp_target_fn fn, void *arg);

/* Join with a deadline (killing a child that overstays) and free; returns
 * the exit code, -signal, or TU_TIMEOUT. */
int finish(mp_process *p, double timeout);

/* Children run with the test's watchdog too. */
void watchdog(void);

/* put() an int. */
int put_int(mp_queue *q, int v, double timeout);

/* get() an int; returns the status, *v the value. */
int get_int(mp_queue *q, int *v, double timeout);

/* Poll until the queue stops looking empty (Python's race: put() returns
 * before the feeder wrote the item). */
void wait_not_empty(mp_queue *q);

/* Wait until another process holds m (trylock says EBUSY): a state, not a
 * guess. Returns true once it does, false at the deadline. */
bool wait_held_by_other(pthread_mutex_t *m, double timeout);

/* A self-checking item: [seq][len][bytes derived from seq]. */
size_t make_item(unsigned char *buf, uint32_t seq, size_t len);
bool check_item(const unsigned char *buf, size_t len, uint32_t *seq);

/* A value whose pickle spans several chunks: a str of n letters, and the
 * check that o is one. */
mp_obj *big_str(size_t n);
bool is_big_str(const mp_obj *o, size_t n);

#endif /* MPIPC_QUEUE_TESTUTIL_H */
