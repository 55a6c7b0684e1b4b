/*
 * queue_testutil - the helpers the queue test binaries share (see
 * queue_testutil.h).
 */
#include "queue_testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

mp_process *spawn(mp_target_fn fn, void *arg)
{
    mp_process *p;
    assert_int_equal(mp_process_new(&p, fn, arg), 0);
    assert_int_equal(mp_process_start(p), 0);
    return p;
}

int finish(mp_process *p, double timeout)
{
    int rc = mp_process_join(p, timeout);
    if (rc == MP_ETIMEDOUT) {
        mp_process_kill(p);
        mp_process_join(p, T_LONG);
    }
    int code = -9999;
    mp_process_exitcode(p, &code);
    mp_process_free(p);
    return rc == MP_ETIMEDOUT ? TU_TIMEOUT : code;
}

void watchdog(void)
{
    alarm(TU_CHILD_LIFETIME);
}

int put_int(mp_queue *q, int v, double timeout)
{
    return mp_queue_put(q, &v, sizeof v, timeout);
}

int get_int(mp_queue *q, int *v, double timeout)
{
    void *d;
    size_t len;
    int rc = mp_queue_get(q, &d, &len, timeout);
    if (rc == 0) {
        if (len == sizeof *v)
            memcpy(v, d, sizeof *v);
        else
            rc = -EBADMSG;
        free(d);
    }
    return rc;
}

void wait_not_empty(mp_queue *q)
{
    double end = tu_now() + T_LONG;
    while (mp_queue_empty(q) && tu_now() < end)
        tu_sleep(0.002);
}

bool wait_held_by_other(pthread_mutex_t *m, double timeout)
{
    double end = tu_now() + timeout;
    for (;;) {
        int rc = pthread_mutex_trylock(m);
        if (rc == EBUSY)
            return true;
        if (rc == EOWNERDEAD)
            (void)pthread_mutex_consistent(m);
        if (rc == 0 || rc == EOWNERDEAD)
            (void)pthread_mutex_unlock(m);
        if (tu_now() >= end)
            return false;
        tu_sleep(0.001);
    }
}

size_t make_item(unsigned char *buf, uint32_t seq, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(seq * 31 + i * 7);
    if (len >= 4)
        memcpy(buf, &seq, 4);
    return len;
}

bool check_item(const unsigned char *buf, size_t len, uint32_t *seq)
{
    uint32_t s = 0;
    if (len >= 4)
        memcpy(&s, buf, 4);
    for (size_t i = 4; i < len; i++)
        if (buf[i] != (unsigned char)(s * 31 + i * 7))
            return false;
    *seq = s;
    return true;
}

mp_obj *big_str(size_t n)
{
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)('a' + i % 26);
    s[n] = 0;
    mp_obj *o = mp_obj_str(s, n);
    free(s);
    return o;
}

bool is_big_str(const mp_obj *o, size_t n)
{
    const char *s;
    size_t len;
    if (!o || mp_obj_get_str(o, &s, &len) != 0 || len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] != (char)('a' + i % 26))
            return false;
    return true;
}
