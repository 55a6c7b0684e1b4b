/*
 * over_shm - run a Connection test file a second time over mp_pipe_shm
 * ends: include this, then the test file; every mp_pipe() in it becomes
 * mp_pipe_shm(), and its main runs every test except those the including
 * file's over_shm_skip() names (the socket transport's own tests).
 */
#ifndef MPIPC_OVER_SHM_H
#define MPIPC_OVER_SHM_H

#include "testutil.h"

#include <mpipc/conn.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* Defined by the including file: why name does not apply, or NULL. */
static const char *over_shm_skip(const char *name);

static int over_shm_run(const char *group, const struct CMUnitTest *tests, size_t n,
                        CMFixtureFunction setup, CMFixtureFunction teardown)
{
    struct CMUnitTest *keep = calloc(n, sizeof *keep);
    if (!keep)
        return 1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *why = over_shm_skip(tests[i].name);
        if (!why)
            keep[k++] = tests[i];
        else
            printf("[  SKIP    ] %s (over mp_pipe_shm: %s)\n", tests[i].name, why);
    }
    int rc = _cmocka_run_group_tests(group, keep, k, setup, teardown);
    free(keep);
    return rc;
}

#undef cmocka_run_group_tests
#define cmocka_run_group_tests(t, s, td) over_shm_run(#t, t, sizeof(t) / sizeof((t)[0]), s, td)
#define mp_pipe(a, b, duplex)            mp_pipe_shm((a), (b), (duplex), NULL)

#endif /* MPIPC_OVER_SHM_H */
