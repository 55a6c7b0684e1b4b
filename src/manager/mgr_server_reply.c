/*
 * mgr_server_reply - the manager server's reply frames: error replies, the
 * checks a value reply passes before it stands (size, memory, the budget
 * for large messages), and a whole value. The small hot replies (none, an
 * int, a bool) are inline in mgr_server.h; static functions here: reply_.
 *
 * A reply is one frame appended to the connection's output: 4 bytes of
 * length (the limits keep every frame below 2^31), then a pickle of
 * ('#RETURN', value) or ('#ERROR', code, text).
 *
 * Encode first, then commit. A ('#RETURN', value) reply is built whole
 * before anything else happens; mp__mgr_frame_finish replaces it with an error
 * reply when it cannot be sent (over the reader's max_reply, no memory) and
 * says so. A method that removes or replaces what it replies with (a queue
 * get, a pop, a compare-and-set) changes the object only after its reply
 * stood: an error never loses the item. The size checked is the size of
 * the bytes that go out, whatever sharing the value had on the way in.
 */
#include "codec/objimpl.h"
#include "manager/mgr_server.h"

#include <mpipc/error.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The slow side of mp__mgr_frame_finish: the frame at start ran out of
 * memory, or is a limited (value) reply over the reader's limit or large
 * enough to be charged against the budget. */
int mp__mgr_frame_check(struct sconn *c, size_t start, bool limited)
{
    if (c->out.err) {
        int err = c->out.err;
        c->out.err = 0;
        c->out.len = start;
        if (limited)
            mp__mgr_reply_error(c, err, "the server ran out of memory building the reply");
        else
            c->broken = true; /* not even an error reply fits */
        return err;
    }
    size_t size = c->out.len - start - 4;
    if (limited && size > c->max_reply) {
        c->out.len = start;
        mp__mgr_reply_error(c, MP_ETOOLONG, "the reply is larger than the client accepts");
        return MP_ETOOLONG;
    }
    if (limited && size > MP__MGR_OUT_KEEP) {
        /* A large reply waits in memory until the client has read it:
         * it is charged until then, or refused when the budget is spent. */
        if (!mp__mgr_budget_take(c->srv, size)) {
            c->out.len = start;
            mp__mgr_reply_error(c, -EAGAIN, "the server's budget for large messages is spent");
            return -EAGAIN;
        }
        c->out_charge += size;
    }
    mp__frame_put_short(c->out.p + start, (uint32_t)size);
    return 0;
}

void mp__mgr_reply_error(struct sconn *c, int code, const char *text)
{
    size_t start = c->out.len;
    if (mp__pickler_reserve(&c->out, 4) == 0)
        c->out.len += 4;
    mp__pickler_start(&c->out);
    mp__pickler_str(&c->out, "#ERROR", 6);
    mp__pickler_int(&c->out, code);
    mp__pickler_str(&c->out, text, strlen(text));
    mp__pickler_tuple(&c->out, 3);
    mp__pickler_stop(&c->out);
    mp__mgr_frame_finish(c, start, false);
}

/* A quick "would it fit": a lower bound of the bytes a value takes in a
 * pickle - an opcode per value at least, plus a str's or bytes' own bytes -
 * summed over at most `left` values and only until it passes limit. A
 * value is a tree (obj.h), so its pickle holds every node it has. */
struct reply_floor {
    size_t n, limit;
    unsigned left;
};

static void reply_size_floor(struct reply_floor *f, const mp_obj *o)
{
    if (f->n > f->limit || f->left == 0)
        return;
    f->left--;
    f->n++;
    const char *p;
    const unsigned char *b;
    size_t len = 0;
    switch (mp_obj_type(o)) {
    case MP_TYPE_STR:
        if (mp_obj_get_str(o, &p, &len) == 0)
            f->n += len;
        break;
    case MP_TYPE_BYTES:
        if (mp_obj_get_bytes(o, &b, &len) == 0)
            f->n += len;
        break;
    case MP_TYPE_LIST:
    case MP_TYPE_TUPLE:
        len = (size_t)mp_obj_len(o);
        for (size_t i = 0; i < len && f->n <= f->limit && f->left; i++)
            reply_size_floor(f, mp_obj_list_get(o, i));
        break;
    case MP_TYPE_DICT: {
        size_t pos = 0;
        const mp_obj *k, *v;
        while (f->n <= f->limit && f->left && mp_obj_dict_next(o, &pos, &k, &v) == 1) {
            reply_size_floor(f, k);
            reply_size_floor(f, v);
        }
        break;
    }
    default:
        break;
    }
}

/* ('#RETURN', o): 0 when it stands, else the code the reader got. A value
 * that plainly cannot fit the reader's limit (a few large strs or bytes,
 * as a Python producer's shared references become) is refused without
 * being encoded; anything else is encoded, then checked. */
int mp__mgr_reply_obj(struct sconn *c, const mp_obj *o)
{
    struct reply_floor f = {0, c->max_reply, 4096};
    reply_size_floor(&f, o);
    if (f.n > c->max_reply) {
        mp__mgr_reply_error(c, MP_ETOOLONG, "the reply is larger than the client accepts");
        return MP_ETOOLONG;
    }
    size_t st = mp__mgr_reply_begin(c);
    mp__pickler_obj(&c->out, o);
    return mp__mgr_reply_end(c, st);
}

/* The codes a failed operation replies with; anything unexpected from the
 * object layer is reported as what it is. */
void mp__mgr_reply_status(struct sconn *c, int rc)
{
    const char *text;
    switch (rc) {
    case MP_EKEY:
        text = "KeyError / IndexError";
        break;
    case MP_ETYPE:
        text = "TypeError";
        break;
    case MP_EVALUE:
        text = "ValueError";
        break;
    case -ENOMEM:
        text = "the server is out of memory";
        break;
    case -EOVERFLOW:
        text = "OverflowError: the result does not fit in 64 bits";
        break;
    default:
        text = mp_strerror(rc);
        break;
    }
    mp__mgr_reply_error(c, rc, text);
}

/* ---- error texts that name a value ------------------------------------------------ */

/* Bytes of a key's repr an error text keeps: a huge key makes a short reply. */
#define REPLY_REPR_MAX 200

/* head + repr(o) into text[cap], the repr cut to REPLY_REPR_MAX bytes (at a
 * character boundary) and ended with "..." when cut. A long str or bytes is
 * cut before it is repr'd, so a huge key costs no huge repr. Without memory
 * the text is head alone, less its ": ". */
static void reply_repr_text(char *text, size_t cap, const char *head, const mp_obj *o)
{
    mp_obj *part = NULL;
    const char *p;
    const unsigned char *b;
    size_t len;
    if (mp_obj_type(o) == MP_TYPE_STR && mp_obj_get_str(o, &p, &len) == 0 && len > REPLY_REPR_MAX) {
        len = REPLY_REPR_MAX;
        while (len > 0 && ((unsigned char)p[len] & 0xC0) == 0x80)
            len--; /* whole characters only */
        part = mp_obj_str(p, len);
    } else if (mp_obj_type(o) == MP_TYPE_BYTES && mp_obj_get_bytes(o, &b, &len) == 0 &&
               len > REPLY_REPR_MAX) {
        part = mp_obj_bytes(b, REPLY_REPR_MAX);
    }
    char *r = NULL;
    if (mp_obj_repr(part ? part : o, &r) < 0) {
        mp_obj_free(part);
        snprintf(text, cap, "%.*s", (int)strcspn(head, ":"), head);
        return;
    }
    size_t rlen = strlen(r);
    bool cut = part != NULL || rlen > REPLY_REPR_MAX;
    if (rlen > REPLY_REPR_MAX) {
        rlen = REPLY_REPR_MAX;
        while (rlen > 0 && ((unsigned char)r[rlen] & 0xC0) == 0x80)
            rlen--;
    }
    snprintf(text, cap, "%s%.*s%s", head, (int)rlen, r, cut ? "..." : "");
    free(r);
    mp_obj_free(part);
}

/* Python's words for a missing dict key: "KeyError: 'count'". */
void mp__mgr_reply_keyerror(struct sconn *c, const mp_obj *key)
{
    char text[REPLY_REPR_MAX + 32];
    reply_repr_text(text, sizeof text, "KeyError: ", key);
    mp__mgr_reply_error(c, MP_EKEY, text);
}

/* A method's failure status, as mp__mgr_reply_status words it, except where
 * the request says more: a dict's missing key (KeyError with its repr) and
 * its unhashable key (Python's "TypeError: unhashable type: 'list'"). */
void mp__mgr_reply_failed(const struct req *r, int rc)
{
    mp_obj *key =
        r->o && r->o->kind == K_DICT && mp_obj_len(r->args) > 0 ? mp__mgr_arg(r, 0) : NULL;
    uint64_t h;
    if (key && rc == MP_EKEY) {
        mp__mgr_reply_keyerror(r->c, key);
    } else if (key && rc == MP_ETYPE && mp__obj_hash(key, false, &h) == MP_ETYPE) {
        char text[96];
        snprintf(text, sizeof text, "TypeError: unhashable type: '%s'",
                 mp_type_name(mp_obj_type(key)));
        mp__mgr_reply_error(r->c, MP_ETYPE, text);
    } else {
        mp__mgr_reply_status(r->c, rc);
    }
}
