/*
 * loan - zero-copy sending and receiving on a connection: mp_conn_loan /
 * mp_conn_commit / mp_conn_loan_cancel and mp_conn_recv_view /
 * mp_conn_release. In place on a shared-memory end (shmpipe.c); on the heap,
 * through the copying calls, everywhere else. Static functions carry loan_.
 */
#include "conn/conn_state.h"
#include "conn/shmpipe.h"
#include "core/internal.h"
#include "core/io.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A heap loan is preceded by this header: its size, and a magic number so
 * that a pointer that is no loan gets -EINVAL rather than a free(). */
#define LOAN_MAGIC UINT64_C(0x6d7069706c6f616e) /* "mpiploan" */

struct loan_hdr {
    uint64_t magic;
    uint64_t size;
};

static struct loan_hdr *loan_heap_hdr(void *buf)
{
    struct loan_hdr *h = (struct loan_hdr *)((unsigned char *)buf - sizeof *h);
    return h->magic == LOAN_MAGIC ? h : NULL;
}

static bool loan_closed(const mp_conn *c)
{
    return __atomic_load_n(&c->closed, __ATOMIC_ACQUIRE);
}

MP_API size_t mp_conn_loan_max(const mp_conn *c)
{
    if (!c || loan_closed(c) || !c->shm || !c->writable)
        return 0;
    return mp__shmc_loan_max(c);
}

MP_API int mp_conn_loan(mp_conn *c, size_t size, void **buf, double timeout)
{
    if (!c || !buf)
        return -EINVAL;
    *buf = NULL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    if (loan_closed(c))
        return MP_ECLOSED;
    if (!c->writable)
        return MP_EREADONLY;
    if (c->shm && size <= mp__shmc_loan_max(c))
        return mp__shmc_loan(c, size, buf, mp__deadline(timeout));
    /* A socket end, or more than the ring holds in place: on the heap,
     * sent by copying at commit. */
    if (size > SIZE_MAX - sizeof(struct loan_hdr))
        return -ENOMEM;
    struct loan_hdr *h = malloc(sizeof *h + size);
    if (!h)
        return -ENOMEM;
    h->magic = LOAN_MAGIC;
    h->size = size;
    *buf = h + 1;
    return 0;
}

/* End a loan: publish len bytes of it, or drop it. */
static int loan_end(mp_conn *c, void *buf, size_t len, bool cancel)
{
    if (!c || !buf)
        return -EINVAL;
    if (loan_closed(c))
        return MP_ECLOSED;
    if (c->shm && mp__shmc_is_loan(c, buf))
        return mp__shmc_commit(c, len, cancel);
    struct loan_hdr *h = loan_heap_hdr(buf);
    if (!h)
        return mp__err(-EINVAL, "not a loan of this thread on this connection");
    if (!cancel && len > h->size)
        return mp__err(MP_EVALUE, "commit of %zu bytes on a loan of %zu", len, (size_t)h->size);
    int rc = cancel ? 0 : mp_conn_send_bytes(c, buf, len);
    h->magic = 0;
    free(h);
    return rc;
}

MP_API int mp_conn_commit(mp_conn *c, void *buf, size_t len)
{
    return loan_end(c, buf, len, false);
}

MP_API int mp_conn_loan_cancel(mp_conn *c, void *buf)
{
    return loan_end(c, buf, 0, true);
}

MP_API int mp_conn_recv_view(mp_conn *c, const void **view, size_t *len, double timeout)
{
    if (!c || !view || !len)
        return -EINVAL;
    *view = NULL;
    *len = 0;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    if (loan_closed(c))
        return MP_ECLOSED;
    if (!__atomic_load_n(&c->readable, __ATOMIC_ACQUIRE))
        return MP_EWRITEONLY;
    if (c->shm)
        return mp__shmc_recv_view(c, view, len, mp__deadline(timeout));
    void *buf = NULL;
    int rc = mp_conn_recv_bytes(c, 0, &buf, len, timeout);
    if (rc == 0)
        *view = buf;
    return rc;
}

MP_API int mp_conn_release(mp_conn *c, const void *view)
{
    if (!c || !view)
        return -EINVAL;
    if (loan_closed(c))
        return MP_ECLOSED; /* the view may be in memory unmapped by the close */
    if (c->shm && mp__shmc_release_view(c, view))
        return 0;
    free((void *)view); /* a copy from the heap */
    return 0;
}
