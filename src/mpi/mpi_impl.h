/*
 * mpi_impl.h - what the root (mpi_pool.c) and the worker ranks
 * (mpi_worker.c) share: the message tags and fixed-size records between
 * them. Private to src/mpi/, never installed.
 *
 * root -> rank: T_CONFIG {struct mpi_config} once; T_BATCH: a batch of the
 *   pool's wire (pool_impl.h), chunks for this rank; T_EXIT {u64: how many
 *   T_BATCH messages were sent in all}: stop after receiving that many.
 * rank -> root: T_HELLO {struct mpi_hello} after the initializer; T_RESULT:
 *   one chunk's result message (pool_impl.h); T_BYE: the rank is done;
 *   T_STARTED {u64: how many T_BATCH messages it has received} as it starts
 *   running a batch, so that after its death the root blames only a chunk
 *   the rank had (the others never started: they go to other ranks).
 */
#ifndef MPIPC_MPI_IMPL_H
#define MPIPC_MPI_IMPL_H

#include <stdint.h>

enum { T_CONFIG = 7101, T_BATCH, T_EXIT, T_HELLO, T_RESULT, T_BYE, T_STARTED };

struct mpi_config {
    char init_name[128]; /* the registered initializer, or "" */
};

struct mpi_hello {
    int32_t pid;
    int32_t init_ok; /* 0: the initializer's name is not registered here */
    char host[64];
};

#endif
