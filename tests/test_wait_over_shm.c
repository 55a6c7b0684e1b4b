/*
 * wait_over_shm: test_wait.c's mp_wait suite run a second time, every
 * mp_pipe() made by mp_pipe_shm(); the tests about read-ahead on the
 * socket are left out, each listed below with why.
 */
#include "over_shm.h"

#include <string.h>

#include "test_wait.c"

/* Both write a forged partial frame on mp_conn_fileno(), which on an shm
 * end is the doorbell, not the data path (test_conn_shm covers a message
 * part way received after a timeout, and a peer killed in the middle). */
static const char *const skipped[][2] = {
    {"test_wait_does_not_count_the_start_of_a_message_as_ready", "forges a partial frame"},
    {"test_wait_reports_end_of_file_after_a_partial_message_as_ready", "forges a partial frame"},
};

static const char *over_shm_skip(const char *name)
{
    for (size_t i = 0; i < sizeof skipped / sizeof skipped[0]; i++)
        if (!strcmp(name, skipped[i][0]))
            return skipped[i][1];
    return NULL;
}
