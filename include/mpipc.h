/*
 * libmpipc - Python's multiprocessing for C.
 *
 * The umbrella header: includes every public module header. Each module
 * header also compiles on its own.
 */
#ifndef MPIPC_H
#define MPIPC_H

#include <mpipc/version.h>
#include <mpipc/common.h>
#include <mpipc/error.h>
#include <mpipc/conn.h>
#include <mpipc/obj.h>
#include <mpipc/process.h>
#include <mpipc/listener.h>
#include <mpipc/reduction.h>
#include <mpipc/sync.h>
#include <mpipc/queue.h>
#include <mpipc/manager.h>
#include <mpipc/manager_data.h>
#include <mpipc/manager_user.h>
#include <mpipc/pool.h>
#include <mpipc/shared_memory.h>
#include <mpipc/context.h>

#endif /* MPIPC_H */
