/*
 * A C program and a Python program exchanging values over one Pipe.
 *
 * The C side makes a duplex Pipe, starts `python3 python_peer.py <fd>` with
 * one end, and sends requests as tuples; the Python side (python_peer.py)
 * is ordinary multiprocessing code - Connection(fd).recv() / .send() - and
 * answers with dicts, strings and lists. Both ends speak the same framing
 * and pickles, so neither knows the other is not its own language.
 */
#include <mpipc.h>

#include "check.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef PEER_SCRIPT
#define PEER_SCRIPT "python_peer.py"
#endif

static int run_python(void *arg)
{
    mp_conn *theirs = arg;
    char fd[16];
    snprintf(fd, sizeof fd, "%d", mp_conn_fileno(theirs));
    /* The library opens every descriptor close-on-exec; this one is meant to
     * cross into python3. */
    fcntl(mp_conn_fileno(theirs), F_SETFD, 0);
    execlp("python3", "python3", PEER_SCRIPT, fd, (char *)NULL);
    perror("python3");
    return 127;
}

/* Send (op, arg) and print what Python answers. Takes arg over. */
static void ask(mp_conn *c, const char *op, mp_obj *arg)
{
    mp_obj *req = mp_obj_tuple_new();
    CHECK(mp_obj_tuple_append(req, mp_obj_str_cstr(op)));
    CHECK(mp_obj_tuple_append(req, arg));
    CHECK(mp_conn_send(c, req));

    mp_obj *reply;
    CHECK(mp_conn_recv(c, &reply, 30.0));
    char *sent, *got;
    CHECK(mp_obj_repr(req, &sent));
    CHECK(mp_obj_repr(reply, &got));
    printf("C sent %s\n  python answered %s\n", sent, got);
    fflush(stdout);
    free(sent);
    free(got);
    mp_obj_free(req);
    mp_obj_free(reply);
}

int main(void)
{
    mp_conn *mine, *theirs;
    CHECK(mp_pipe(&mine, &theirs, true));
    mp_process *py;
    CHECK(mp_process_new(&py, run_python, theirs));
    CHECK(mp_process_start(py));
    mp_conn_close(theirs);

    mp_obj *numbers = mp_obj_list_new();
    const int values[] = {3, 1, 4, 1, 5, 9, 2, 6};
    for (int i = 0; i < 8; i++)
        CHECK(mp_obj_list_append(numbers, mp_obj_int(values[i])));
    ask(mine, "stats", numbers);

    ask(mine, "upper", mp_obj_str_cstr("hello 妹妹"));

    mp_obj *nested = mp_obj_dict_new();
    mp_obj *pair = mp_obj_tuple_new();
    CHECK(mp_obj_tuple_append(pair, mp_obj_float(2.5)));
    CHECK(mp_obj_tuple_append(pair, mp_obj_bytes("\x00\xff", 2)));
    CHECK(mp_obj_dict_set(nested, mp_obj_str_cstr("pair"), pair));
    CHECK(mp_obj_dict_set(nested, mp_obj_str_cstr("none"), mp_obj_none()));
    ask(mine, "echo", nested);

    mp_conn_close(mine); /* Python's recv() raises EOFError: it says goodbye */
    CHECK(mp_process_join(py, 30.0));
    int code;
    CHECK(mp_process_exitcode(py, &code));
    printf("C: python exited with %d\n", code);
    mp_process_free(py);
    mp_conn_free(mine);
    mp_conn_free(theirs);
    return code;
}
