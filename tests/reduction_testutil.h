/*
 * reduction_testutil - what the reduction test binaries share: files that
 * prove which descriptor arrived, messages, and raw sendmsg peers.
 */
#ifndef MPIPC_REDUCTION_TESTUTIL_H
#define MPIPC_REDUCTION_TESTUTIL_H

#include "testutil.h"

#include <mpipc/conn.h>
#include <mpipc/error.h>

#include <stddef.h>

#define T_LONG 20.0

/* An unnamed file holding text, for a handle whose contents prove which
 * file arrived. */
int make_file(const char *text);

/* 0 if fd's file starts with text. */
int file_has(int fd, const char *text);

/* 0 if the next message on c is want; a receive's status, or -12345 for
 * other bytes. */
int expect_bytes(mp_conn *c, const char *want);

/* Send s (without its NUL) as one message. */
int send_str(mp_conn *c, const char *s);

/* Assert that the message recorded for code contains want. */
#define ASSERT_MSG_HAS(code, want)                                                                 \
    do {                                                                                           \
        const char *m_ = mp_errmsg(code);                                                          \
        if (!strstr(m_, (want)))                                                                   \
            fail_msg("mp_errmsg(%s) = \"%s\", wanted \"%s\" in it", mp_errname(code), m_, (want)); \
    } while (0)

/* A hostile peer: one sendmsg() of the byte `count` with n fresh
 * descriptors (of /dev/null), which it then closes. */
void raw_send(int sock, unsigned char count, int n);

/* A hostile peer: one sendmsg() of len bytes with n fresh descriptors. */
void raw_sendmsg(int sock, const void *buf, size_t len, int n);

/* A framed message (Python's 4-byte big-endian length) with n descriptors. */
void raw_send_framed(int sock, const char *payload, int n);

#endif /* MPIPC_REDUCTION_TESTUTIL_H */
