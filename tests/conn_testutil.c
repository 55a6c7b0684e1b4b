/*
 * conn_testutil - the helpers the conn test binaries share (see
 * conn_testutil.h).
 */
#include "conn_testutil.h"

#include "codec/frame.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void raw_write(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(99);
        p += w;
        n -= (size_t)w;
    }
}

size_t put_header(unsigned char *h, size_t n, bool longhdr)
{
    if (!longhdr)
        return mp__frame_encode(n, h);
    memset(h, 0xff, 4);
    for (int i = 0; i < 8; i++)
        h[4 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    return MP__FRAME_LONG;
}

int recv_expect(mp_conn *c, const void *want, size_t want_len)
{
    void *buf = NULL;
    size_t len = 0;
    int rc = mp_conn_recv_bytes(c, 0, &buf, &len, T_LONG);
    if (rc != 0)
        return rc;
    int ok = len == want_len && memcmp(buf, want, len) == 0;
    free(buf);
    return ok ? 0 : -12345;
}

int forge_and_exit_child(void *arg)
{
    struct forge_args *f = arg;
    mp_conn_free(f->reader);
    raw_write(f->fd, f->bytes, f->len);
    return 0;
}

int recv_one(mp_conn *c, int into, unsigned char *dest, size_t cap, double timeout)
{
    if (into) {
        ssize_t r = mp_conn_recv_bytes_into(c, dest, cap, 0, NULL, timeout);
        return r < 0 ? (int)r : 0;
    }
    void *buf;
    size_t len;
    int rc = mp_conn_recv_bytes(c, 0, &buf, &len, timeout);
    if (rc == 0) {
        memcpy(dest, buf, len < cap ? len : cap);
        free(buf);
    }
    return rc;
}
