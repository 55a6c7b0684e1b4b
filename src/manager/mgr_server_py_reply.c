/*
 * mgr_server_py_reply - the replies of CPython's manager dialect (requests:
 * mgr_server_py.c): ('#RETURN', v), ('#ERROR', exc) or ('#TRACEBACK', text),
 * and our replies rewritten into them. Static functions: pyreply_.
 */
#include "manager/mgr_server_py.h"

#include <mpipc/error.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Write reply (a value, borrowed) as one frame, as it is: Python's form. */
void mp__mgr_pys_send(struct sconn *c, const mp_obj *reply)
{
    bool py = c->py;
    c->py = false;
    size_t start = c->out.len;
    if (mp__pickler_reserve(&c->out, 4) == 0)
        c->out.len += 4;
    mp__pickler_start(&c->out);
    mp__pickler_obj(&c->out, reply);
    mp__pickler_stop(&c->out);
    if (mp__mgr_frame_finish(c, start, true) != 0) {
        /* Replaced by our own error reply (too large, no memory): say it
         * in Python's form instead. */
        c->out.len = start;
        c->out.err = 0;
        mp_obj *tb = mp_obj_build("(ss)", "#TRACEBACK", "the reply could not be sent");
        if (mp__pickler_reserve(&c->out, 4) == 0)
            c->out.len += 4;
        mp__pickler_start(&c->out);
        if (tb)
            mp__pickler_obj(&c->out, tb);
        mp__pickler_stop(&c->out);
        mp__mgr_frame_finish(c, start, false);
        mp_obj_free(tb);
    }
    c->py = py;
}

/* ('#TRACEBACK', text): Python's client raises RemoteError(text). */
void mp__mgr_pys_traceback(struct sconn *c, const char *fmt, const char *arg)
{
    char text[256];
    snprintf(text, sizeof text, fmt, arg);
    mp_obj *r = mp_obj_build("(ss)", "#TRACEBACK", text);
    if (r)
        mp__mgr_pys_send(c, r);
    else
        c->broken = true; /* not even an error reply can be made */
    mp_obj_free(r);
}

void mp__mgr_pys_return(struct sconn *c, mp_obj *v)
{
    mp_obj *r = v ? mp_obj_build("(sN)", "#RETURN", v) : NULL;
    if (r)
        mp__mgr_pys_send(c, r);
    else
        mp__mgr_pys_traceback(c, "%s", "the server is out of memory");
    mp_obj_free(r);
}

/* An instance of cls with args built from fmt (one str or none). */
mp_obj *mp__mgr_pys_instance(const char *cls, const char *fmt, const char *text)
{
    mp_obj *args = mp_obj_build(fmt, text);
    mp_obj *e = args ? mp_obj_instance_new(cls, args) : NULL;
    mp_obj_free(args);
    return e;
}

/* Python's exception for one of our error codes, with text (our replies
 * start their texts "ValueError: ..." where they name the class: the
 * message is what follows). NULL when the code has no Python exception:
 * the reply is then a traceback. */
static mp_obj *pyreply_exception(const struct sconn *c, int code, const char *text)
{
    const char *cls;
    switch (code) {
    case MP_EKEY: /* a list's texts are Python's: which index, which call */
        cls = c->py_kind == K_ARRAY || c->py_kind == K_LIST ? "builtins.IndexError"
              : c->py_kind == K_NAMESPACE ? "builtins.AttributeError"
                                          : "builtins.KeyError";
        break;
    case MP_ETYPE:
        cls = "builtins.TypeError";
        break;
    case MP_EVALUE:
        cls = c->py_x == PX_RELEASE || c->py_x == PX_WAIT || c->py_x == PX_NOTIFY
                  ? "builtins.RuntimeError"
              : strncmp(text, "OverflowError: ", 15) == 0 ? "builtins.OverflowError"
                                                          : "builtins.ValueError";
        break;
    case MP_EBROKEN:
        return mp__mgr_pys_instance("threading.BrokenBarrierError", "()", NULL);
    case MP_EMPTY:
        return mp__mgr_pys_instance("queue.Empty", "()", NULL);
    case MP_FULL:
        return mp__mgr_pys_instance("queue.Full", "()", NULL);
    default:
        return NULL;
    }
    const char *name = strrchr(cls, '.') + 1, *colon = strstr(text, ": ");
    if (colon && (size_t)(colon - text) == strlen(name) && strncmp(text, name, strlen(name)) == 0)
        text = colon + 2;
    return mp__mgr_pys_instance(cls, "(s)", text);
}

/* ('#ERROR', cls(text)): Python's client raises it. */
void mp__mgr_pys_raise(struct sconn *c, const char *cls, const char *text)
{
    mp_obj *e = mp__mgr_pys_instance(cls, "(s)", text);
    mp_obj *r = e ? mp_obj_build("(sN)", "#ERROR", e) : NULL;
    if (r)
        mp__mgr_pys_send(c, r);
    else
        mp__mgr_pys_traceback(c, "%s", "the server is out of memory");
    mp_obj_free(r);
}

/* Our reply, decoded (('#RETURN', v) or ('#ERROR', code, text)), as
 * Python's: a new value, or NULL for no memory. */
static mp_obj *pyreply_translate(struct sconn *c, const mp_obj *ours)
{
    const char *kind = NULL, *text = "";
    int64_t code = 0;
    if (mp_obj_get_str(mp_obj_list_get(ours, 0), &kind, NULL) < 0)
        return mp_obj_build("(ss)", "#TRACEBACK", "malformed reply");
    if (strcmp(kind, "#RETURN") == 0) {
        const mp_obj *v = mp_obj_list_get(ours, 1);
        if (c->py_x == PX_ACQUIRE || c->py_x == PX_WAIT)
            return mp_obj_build("(sN)", "#RETURN", mp_obj_bool(true));
        if (c->py_x == PX_NOTIFY)
            return mp_obj_build("(sN)", "#RETURN", mp_obj_none());
        return mp_obj_build("(sO)", "#RETURN", v);
    }
    (void)mp_obj_get_int(mp_obj_list_get(ours, 1), &code);
    (void)mp_obj_get_str(mp_obj_list_get(ours, 2), &text, NULL);
    if ((c->py_x == PX_ACQUIRE || c->py_x == PX_WAIT) &&
        (code == MP_ETIMEDOUT || code == MP_EOWNERDEAD))
        /* Python's acquire returns False when the time is up; a lock
         * whose holder died is acquired all the same. */
        return mp_obj_build("(sN)", "#RETURN", mp_obj_bool(code == MP_EOWNERDEAD));
    if (code == MP_EKEY && c->py_x == PX_ITER) {
        mp_obj *args = mp_obj_tuple_new();
        mp_obj *e = args ? mp_obj_instance_new("builtins.StopIteration", args) : NULL;
        mp_obj_free(args);
        return e ? mp_obj_build("(sN)", "#ERROR", e) : NULL;
    }
    if (code == MP_EKEY && c->py_saved && c->py_x == PX_DEFAULT)
        return mp_obj_build("(sO)", "#RETURN", c->py_saved);
    mp_obj *e = NULL;
    if (code == MP_EKEY && c->py_saved && c->py_x == PX_KEY) {
        mp_obj *args = mp_obj_build("(O)", c->py_saved);
        e = args ? mp_obj_instance_new("builtins.KeyError", args) : NULL;
        mp_obj_free(args);
    } else {
        e = pyreply_exception(c, (int)code, text);
    }
    if (e)
        return mp_obj_build("(sN)", "#ERROR", e);
    char tb[320];
    snprintf(tb, sizeof tb, "libmpipc manager: %s: %s", mp_errname((int)code), text);
    return mp_obj_build("(ss)", "#TRACEBACK", tb);
}

int mp__mgr_py_reply(struct sconn *c, size_t start, bool limited)
{
    if (c->out.err) {
        c->py = false;
        int rc = mp__mgr_frame_finish(c, start, limited);
        c->py = true;
        return rc;
    }
    mp_obj *ours = NULL, *theirs = NULL;
    int rc = mp__pickle_loads(c->out.p + start + 4, c->out.len - start - 4, &ours);
    if (rc == 0)
        theirs = pyreply_translate(c, ours);
    if (theirs && mp__mgr_nest_any(theirs))
        mp__mgr_nest_reply(c->srv, theirs); /* held until the client's incref */
    mp_obj_free(ours);
    c->out.len = start;
    if (theirs) {
        mp__mgr_pys_send(c, theirs);
        mp_obj_free(theirs);
    } else {
        mp__mgr_pys_traceback(c, "%s", "the server is out of memory");
    }
    return 0;
}
