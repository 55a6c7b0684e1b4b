/*
 * conn_impl - what conn.c lends its siblings: the descriptor of a
 * connection, locked, for traffic outside the framing (reduction.c passes
 * descriptors with it). Functions start with mp__conn_.
 */
#ifndef MPIPC_CONN_IMPL_H
#define MPIPC_CONN_IMPL_H

#include <mpipc/conn.h>

#include <stdbool.h>

/* What the raw use of a connection is for, and so which lock it takes. */
enum mp__conn_raw_use {
    MP__CONN_RAW_SEND,     /* write outside the framing: the send lock */
    MP__CONN_RAW_RECV,     /* read outside the framing: the receive lock */
    MP__CONN_RAW_HAND_OVER /* give the descriptor away: the receive lock */
};

/* The connection as a raw user sees it. */
struct mp__conn_raw {
    int fd;
    bool is_socket;
    bool readable; /* false also after MP_ETOOLONG on a duplex end */
    bool writable;
};

/*
 * Lock c for raw use and describe it. SEND needs a writable end (else
 * MP_EREADONLY), RECV a readable one (MP_EWRITEONLY); HAND_OVER refuses
 * with MP_ESTATE while the connection holds any byte it read from the
 * descriptor and has not delivered (read-ahead, a message begun, or in a
 * forked child the rest of a parent's message to discard): the receiver
 * would not get them. A RECV user asks mp__conn_raw_take_handle() first.
 * Returns 0 with the lock held (release it with mp__conn_raw_end(c, use)),
 * -EINVAL for NULL, MP_ECLOSED, or the codes above with no lock held.
 */
int mp__conn_raw_begin(mp_conn *c, enum mp__conn_raw_use use, struct mp__conn_raw *out);
void mp__conn_raw_end(mp_conn *c, enum mp__conn_raw_use use);

/*
 * Under RECV: take the next handle from what c read ahead (conn.c, Handles).
 * Returns 1 with *fd the kept descriptor (its byte consumed; the caller
 * owns it); 0 when nothing is buffered, so the next byte is still in the
 * descriptor; MP_EPROTO when the next buffered byte is not a handle whose
 * descriptor was kept (nothing consumed); MP_ESTATE while a message is part
 * way (a large one after a timeout, or a parent's being discarded).
 */
int mp__conn_raw_take_handle(mp_conn *c, int *fd);

#endif /* MPIPC_CONN_IMPL_H */
