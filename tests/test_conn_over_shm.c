/*
 * conn_over_shm: test_conn.c's whole Connection suite run a second time,
 * every mp_pipe() made by mp_pipe_shm(); the tests about the socket or
 * pipe itself are left out, each listed below with why.
 */
#include "over_shm.h"

#include "conn_testutil.h"

#include <string.h>

#include "test_conn.c"

/* They write forged frames on mp_conn_fileno(), which on an shm end is the
 * doorbell, not the data path; test_conn_shm covers the same behaviours
 * over the ring (death mid-message, corrupt ring, a receive timed out
 * mid-message, poll after it). Or they expect -EPIPE from the first send
 * after the reader closed: a sender to an awake receiver makes no system
 * call, so -EPIPE comes when the bell is rung or the ring is full
 * (conn.h, mp_pipe_shm). */
static const char *const skipped[][2] = {
    {"test_peer_dying_mid_message_is_truncated_not_eof", "forges frames on the descriptor"},
    {"test_large_message_truncated_by_dying_peer", "forges frames on the descriptor"},
    {"test_lying_length_header_is_never_trusted_for_allocation", "forges frames"},
    {"test_negative_length_header_is_corrupt", "forges frames on the descriptor"},
    {"test_corrupt_header_read_ahead_makes_poll_ready", "forges frames on the descriptor"},
    {"test_long_form_header_is_accepted_for_any_size", "forges frames on the descriptor"},
    {"test_partial_message_survives_a_timeout", "forges a partial frame"},
    {"test_poll_waits_after_a_receive_timed_out_mid_message", "forges a partial frame"},
    {"test_message_over_maxlength_closes_a_receive_only_end", "expects EPIPE at once"},
    {"test_send_to_a_gone_peer_returns_epipe_and_the_process_survives", "expects EPIPE at once"},
};

static const char *over_shm_skip(const char *name)
{
    for (size_t i = 0; i < sizeof skipped / sizeof skipped[0]; i++)
        if (!strcmp(name, skipped[i][0]))
            return skipped[i][1];
    return NULL;
}
