/*
 * A manager served over TCP by one program, for clients that are other
 * programs (examples/manager_tcp_client.c) - Python's
 *
 *     m = BaseManager(address=('127.0.0.1', port), authkey=b'cookbook')
 *     m.get_server().serve_forever()
 *
 * The server holds whatever its clients create by name (a dict, a queue...)
 * and runs until a client sends a shutdown request (mp_manager_shutdown()
 * on a connected handle, as a Python client's m.shutdown()).
 * Usage: manager_tcp_server [ADDRESS_FILE [PORT]]. It listens on
 * 127.0.0.1:PORT (0, the default, picks a free port) and writes the address
 * it got ("tcp:127.0.0.1:41235") to ADDRESS_FILE ("" for none), for clients
 * to read: `manager_tcp_server "" 50000` serves on a fixed port. Its
 * log goes to stderr, as a server's does.
 */
#include <mpipc.h>

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTHKEY "cookbook"

/* Called once the server listens: publish the address. Written to a
 * temporary name and renamed, so a client never reads half of it. */
static void publish(const char *address, void *arg)
{
    const char *file = arg;
    fprintf(stderr, "server: listening on 127.0.0.1\n");
    if (!file)
        return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%s\n", address) < 0 || fclose(f) != 0 || rename(tmp, file) != 0)
        perror(file);
}

int main(int argc, char **argv)
{
    const char *file = argc > 1 && argv[1][0] ? argv[1] : NULL;
    char address[64];
    snprintf(address, sizeof address, "tcp:127.0.0.1:%s", argc > 2 ? argv[2] : "0");

    mp_manager_opts opts = MP_MANAGER_OPTS_INIT;
    opts.ready = publish;
    opts.ready_arg = (void *)file;
    CHECK(mp_manager_serve(address, AUTHKEY, strlen(AUTHKEY), &opts));
    fprintf(stderr, "server: stopped by a client's shutdown request\n");
    if (file)
        remove(file);
    return 0;
}
