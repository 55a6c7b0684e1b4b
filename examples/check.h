/*
 * The examples' one error-handling helper: a failed libmpipc call prints
 * where and why, then leaves. Real programs handle each status code.
 */
#ifndef MPIPC_EXAMPLE_CHECK_H
#define MPIPC_EXAMPLE_CHECK_H

#include <mpipc/error.h>

#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                                \
    do {                                                                                           \
        int check_rc_ = (int)(call);                                                               \
        if (check_rc_ < 0) {                                                                       \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,                     \
                    mp_strerror(check_rc_), mp_errname(check_rc_));                                \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#endif
