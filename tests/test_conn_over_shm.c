/*
 * conn_over_shm: test_conn.c's whole Connection suite run a second time,
 * every mp_pipe() made by mp_pipe_shm(); the tests about the socket or
 * pipe itself (forged frames on the descriptor, read-ahead) are left out,
 * each listed below with why.
 */
#include "conn_testutil.h"

#include <mpipc/conn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int shm_run(const char *name, const struct CMUnitTest *tests, size_t n,
                   CMFixtureFunction setup, CMFixtureFunction teardown);

#undef cmocka_run_group_tests
#define cmocka_run_group_tests(t, s, td) shm_run(#t, t, sizeof(t) / sizeof((t)[0]), s, td)
#define mp_pipe(a, b, duplex)            mp_pipe_shm((a), (b), (duplex), NULL)

#include "test_conn.c"

#undef mp_pipe

/* Tests of the socket transport itself, and why they do not apply. */
static const char *const socket_only[][2] = {
    /* They write forged frames on mp_conn_fileno(), which on an shm end is
     * the doorbell, not the data path; test_conn_shm covers the same
     * behaviours over the ring (death mid-message, corrupt ring, a
     * receive timed out mid-message, poll after it). */
    {"test_peer_dying_mid_message_is_truncated_not_eof", "forges frames on the descriptor"},
    {"test_large_message_truncated_by_dying_peer", "forges frames on the descriptor"},
    {"test_lying_length_header_is_never_trusted_for_allocation", "forges frames"},
    {"test_negative_length_header_is_corrupt", "forges frames on the descriptor"},
    {"test_corrupt_header_read_ahead_makes_poll_ready", "forges frames on the descriptor"},
    {"test_long_form_header_is_accepted_for_any_size", "forges frames on the descriptor"},
    {"test_partial_message_survives_a_timeout", "forges a partial frame on the descriptor"},
    {"test_poll_waits_after_a_receive_timed_out_mid_message", "forges a partial frame"},
    /* A sender to an awake receiver makes no system call, so a send right
     * after the reader closed may still succeed; -EPIPE comes when the bell
     * is rung or the ring is full (conn.h, mp_pipe_shm). */
    {"test_message_over_maxlength_closes_a_receive_only_end", "EPIPE at once"},
    {"test_send_to_a_gone_peer_returns_epipe_and_the_process_survives", "EPIPE at once"},
};

static bool shm_socket_only(const char *name)
{
    for (size_t i = 0; i < sizeof socket_only / sizeof socket_only[0]; i++)
        if (!strcmp(name, socket_only[i][0]))
            return true;
    return false;
}

static int shm_run(const char *name, const struct CMUnitTest *tests, size_t n,
                   CMFixtureFunction setup, CMFixtureFunction teardown)
{
    struct CMUnitTest *keep = calloc(n, sizeof *keep);
    if (!keep)
        return 1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!shm_socket_only(tests[i].name))
            keep[k++] = tests[i];
        else
            printf("[  SKIP    ] %s (socket transport only)\n", tests[i].name);
    int rc = _cmocka_run_group_tests(name, keep, k, setup, teardown);
    free(keep);
    return rc;
}
