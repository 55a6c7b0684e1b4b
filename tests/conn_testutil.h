/*
 * conn_testutil - what the conn test binaries share (test_conn for the
 * stream, test_conn_fork for a child forked in the middle of it, both of
 * src/conn/conn.c): time bounds, forging raw frames, and receiving one.
 */
#ifndef MPIPC_CONN_TESTUTIL_H
#define MPIPC_CONN_TESTUTIL_H

#include "testutil.h"

#include <mpipc/conn.h>

#include <stdbool.h>
#include <stddef.h>

#define T_SHORT 0.2  /* a timeout the tests expect to expire */
#define T_LONG  10.0 /* a timeout that must never expire in a passing test */

/* Write raw bytes on a descriptor, bypassing the library (to forge frames). */
void raw_write(int fd, const void *buf, size_t n);

/* Write the header of an n-byte message at h, in the 12-byte form when
 * longhdr (a receiver accepts that form for any size); returns its length. */
size_t put_header(unsigned char *h, size_t n, bool longhdr);

/* Receive one message and compare it with want: 0 when equal, the status
 * of a failed receive, or -12345 for other bytes. */
int recv_expect(mp_conn *c, const void *want, size_t want_len);

/* A child that writes len raw bytes on fd, then exits; it closes its copy
 * of the receiving end first, so the peer's end of file is the parent's. */
struct forge_args {
    int fd;
    const void *bytes;
    size_t len;
    mp_conn *reader; /* the child's copy of the receiving end, closed first */
};
int forge_and_exit_child(void *arg);

/* One receive, by recv_bytes or recv_bytes_into, with its status. */
int recv_one(mp_conn *c, int into, unsigned char *dest, size_t cap, double timeout);

#endif /* MPIPC_CONN_TESTUTIL_H */
