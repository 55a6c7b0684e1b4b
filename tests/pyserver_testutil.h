/* pyserver_testutil: CPython's own manager server for the tests of our
 * client against it (test_manager_cpython_server, test_manager_mixed): a
 * Python SyncManager started with manager.start() or run with
 * get_server().serve_forever(), over AF_UNIX or TCP, with the shared
 * objects a Python program would register for others to reach. */
#ifndef MPIPC_PYSERVER_TESTUTIL_H
#define MPIPC_PYSERVER_TESTUTIL_H

#include "mgr_testutil.h"

#include <stdbool.h>
#include <sys/types.h>

#define PS_KEY     "py-server-key"
#define PS_KEY_LEN 13

/* A running Python manager server. */
struct ps_server {
    pid_t pid;
    int stop_fd;       /* start mode: closing it makes the script shut down */
    bool serve;        /* serve_forever mode: stopped by a shutdown request */
    char address[300]; /* ours: "unix:/path" or "tcp:127.0.0.1:port" */
};

/*
 * Start CPython's server under interpreter py: serve (get_server().
 * serve_forever()) or start (manager.start()), on TCP or AF_UNIX. The
 * server also has the typeids 'shared_dict' ({'count': count, 'who':
 * 'python'}), 'shared_list', 'shared_lock' and 'shared_queue': one object
 * each, as BaseManager.register(typeid, callable=...) shares them. The
 * server process's authkey is the manager's.
 * Returns 0, or -1 (the child is then reaped).
 */
int ps_start(struct ps_server *s, const char *py, bool serve, bool tcp, int count);
/* ps_start, the server process's own authkey the manager's (process_key,
 * as ps_start has it: a SyncManager made without an authkey) or Python's
 * random one (a SyncManager given authkey=): a proxy the server rebuilds
 * for itself (Condition(lock)) can connect back only with the first. */
int ps_start_key(struct ps_server *s, const char *py, bool serve, bool tcp, int count,
                 bool process_key);

/* Stop it (start mode: close the pipe; serve mode: the caller sent
 * shutdown, or it is killed) and reap it: its exit status, or -1. */
int ps_stop(struct ps_server *s);

#endif /* MPIPC_PYSERVER_TESTUTIL_H */
