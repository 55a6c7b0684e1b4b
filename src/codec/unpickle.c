/*
 * unpickle - the decoder, mp__pickle_loads: the pickle machine and the
 * placing of its result. pickle.h says what is read and refused; the
 * encoder is pickle.c, protocol 0's text fields unpickle_text.c. Statics
 * here start with unpickle_.
 *
 * Names. The decoder never imports and never calls. GLOBAL / STACK_GLOBAL
 * resolve exactly three names, builtins.bytearray, builtins.set and
 * builtins.frozenset (module __builtin__ too, Python 2's name), to markers
 * that only REDUCE accepts, with bytearray's () or (bytes,) and the sets'
 * (list,) argument; REDUCE then builds the value as any opcode builds one.
 * They also resolve the CPython classes of obj_instance.c's list (Python's
 * manager Token, RemoteError, a few exceptions, queue.Empty and Full) to a
 * class marker: REDUCE of an exception's marker with a tuple, and NEWOBJ of
 * Token's marker with () followed by BUILD with a 3-tuple state, make an
 * inert MP_TYPE_INSTANCE holding the args; nothing is called. A proxy
 * inside a value is REDUCE of RebuildProxy's marker with (func, token,
 * serializer, kwds), func a marker of AutoProxy or a SyncManager proxy
 * class (the one place a marker may sit in a tuple), read as an inert
 * instance too. No other name is resolved (docs/wire.md has the table).
 *
 * Decoding happens in two phases.
 *
 * 1. Run the pickle machine. Every node it creates goes into an arena (a
 *    list of all nodes, threaded through the nodes' own parent fields, which
 *    mean nothing yet), and containers point at nodes with no regard for
 *    ownership: DUP and memo GETs make several slots point at one node, and
 *    a hostile pickle can even build cycles. Nothing is freed in this phase,
 *    so no node can be freed twice or while still referenced. None, True,
 *    False and small ints are the immortal shared nodes (objimpl.h): no
 *    allocation, and not in the arena.
 * 2. Place the result: a depth-first walk from the value STOP returns. The
 *    first slot that reaches a node adopts it; a later slot that reaches an
 *    already placed node gets a copy (charged to the work budget); reaching
 *    a node that is still on the walk's path means a cycle, which is
 *    refused. The walk also enforces the nesting limit and sets heights.
 *    Nodes of the arena that were not placed (popped, replaced, or only in
 *    the memo) are then freed one by one, without following their pointers,
 *    and a last walk sets every parent, so what comes out is a tree obeying
 *    every invariant of obj.h.
 * On any error, every arena node is freed the same way, plus the copies.
 *
 * Memory. Phase 1 charges every byte it allocates - nodes, text, item
 * arrays, dict blocks, the stack, the marks, the memo - to a budget of
 * MP__PICKLE_MEM_MIN + MP__PICKLE_MEM_FACTOR bytes per input byte, checked
 * before each allocation, and refuses the pickle (MP_EPROTO) beyond it. The
 * copies of phase 2 are charged to the work budget. So memory is linear in
 * the input whatever the opcodes (docs/wire.md states the bound).
 */
#include "codec/unpickle.h"

#define HIGHEST_PROTOCOL 5

/* The growth of unpickle_vec_push (unpickle.h), out of line: it is rare,
 * and inlined it would weigh down every opcode's handler. */
int mp__unpickle_vec_grow(struct vec *a, mp_obj *o, size_t *mem)
{
    if (a->len == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        if (cap < a->cap || cap > SIZE_MAX / sizeof(mp_obj *))
            return -ENOMEM;
        size_t grow = (cap - a->cap) * sizeof(mp_obj *);
        if (mem) {
            if (*mem < grow)
                return MP_EPROTO;
            *mem -= grow;
        }
        mp_obj **v = realloc(a->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->len++] = o;
    return 0;
}

static int unpickle_push_mark(struct unpickler *u)
{
    if (u->nmarks == u->mcap) {
        size_t cap = u->mcap ? u->mcap * 2 : 16;
        if (cap > SIZE_MAX / sizeof(size_t))
            return -ENOMEM;
        int rc = unpickle_charge(u, (cap - u->mcap) * sizeof(size_t));
        if (rc < 0)
            return rc;
        size_t *m = realloc(u->marks, cap * sizeof *m);
        if (!m)
            return -ENOMEM;
        u->marks = m;
        u->mcap = cap;
    }
    u->marks[u->nmarks++] = u->stack.len;
    return 0;
}

/* ---- The machine's own opcodes: the protocol, frames, STOP, the marks and
 * the stack. */

static int unpickle_op_proto(struct unpickler *u)
{
    uint64_t v;
    int rc = unpickle_read_le(u, 1, &v);
    if (rc < 0)
        return rc;
    return v > HIGHEST_PROTOCOL ? MP_EPROTO : 0;
}

static int unpickle_op_frame(struct unpickler *u)
{
    /* CPython only checks that the frame is there; so do we. */
    size_t len;
    return unpickle_read_len(u, unpickle_width(MP__OP_FRAME), &len);
}

static int unpickle_op_stop(struct unpickler *u)
{
    u->stopped = true;
    return 0;
}

static int unpickle_op_mark(struct unpickler *u)
{
    return unpickle_push_mark(u);
}

static int unpickle_op_pop(struct unpickler *u)
{
    /* Python's load_pop: with nothing above the MARK, drop the MARK. */
    size_t first;
    if (u->stack.len > unpickle_fence(u)) {
        u->stack.len--;
        return 0;
    }
    return unpickle_pop_mark(u, &first);
}

static int unpickle_op_pop_mark(struct unpickler *u)
{
    size_t first;
    int rc = unpickle_pop_mark(u, &first);
    if (rc < 0)
        return rc;
    u->stack.len = first;
    return 0;
}

static int unpickle_op_dup(struct unpickler *u)
{
    mp_obj *o;
    int rc = unpickle_top(u, &o);
    return rc < 0 ? rc : unpickle_push(u, o);
}

/* ---- Phase 1: the machine ------------------------------------------------ */

/*
 * Each opcode the decoder runs, with its handler (pickle.py's
 * Unpickler.dispatch). Absent, so refused: INST, OBJ, NEWOBJ_EX, EXT1/2/4,
 * PERSID, BINPERSID, which import or call code; STRING, BINSTRING,
 * SHORT_BINSTRING, Python 2 str; NEXT_BUFFER, READONLY_BUFFER, out-of-band
 * data; and every byte that is not an opcode.
 */
static mp__unpickle_handler *const unpickle_dispatch[256] = {
    [MP__OP_PROTO] = unpickle_op_proto,
    [MP__OP_FRAME] = unpickle_op_frame,
    [MP__OP_STOP] = unpickle_op_stop,
    [MP__OP_MARK] = unpickle_op_mark,
    [MP__OP_POP] = unpickle_op_pop,
    [MP__OP_POP_MARK] = unpickle_op_pop_mark,
    [MP__OP_DUP] = unpickle_op_dup,

    [MP__OP_NONE] = mp__unpickle_op_none,
    [MP__OP_NEWTRUE] = mp__unpickle_op_bool,
    [MP__OP_NEWFALSE] = mp__unpickle_op_bool,
    [MP__OP_INT] = mp__unpickle_op_int,
    [MP__OP_LONG] = mp__unpickle_op_long,
    [MP__OP_BININT] = mp__unpickle_op_binint,
    [MP__OP_BININT1] = mp__unpickle_op_binint1,
    [MP__OP_BININT2] = mp__unpickle_op_binint2,
    [MP__OP_LONG1] = mp__unpickle_op_long_bin,
    [MP__OP_LONG4] = mp__unpickle_op_long_bin,
    [MP__OP_FLOAT] = mp__unpickle_op_float,
    [MP__OP_BINFLOAT] = mp__unpickle_op_binfloat,
    [MP__OP_SHORT_BINUNICODE] = mp__unpickle_op_binunicode,
    [MP__OP_BINUNICODE] = mp__unpickle_op_binunicode,
    [MP__OP_BINUNICODE8] = mp__unpickle_op_binunicode,
    [MP__OP_UNICODE] = mp__unpickle_op_unicode,
    [MP__OP_SHORT_BINBYTES] = mp__unpickle_op_binbytes,
    [MP__OP_BINBYTES] = mp__unpickle_op_binbytes,
    [MP__OP_BINBYTES8] = mp__unpickle_op_binbytes,
    [MP__OP_BYTEARRAY8] = mp__unpickle_op_binbytes,

    [MP__OP_EMPTY_LIST] = mp__unpickle_op_empty,
    [MP__OP_EMPTY_TUPLE] = mp__unpickle_op_empty,
    [MP__OP_EMPTY_DICT] = mp__unpickle_op_empty,
    [MP__OP_EMPTY_SET] = mp__unpickle_op_empty,
    [MP__OP_ADDITEMS] = mp__unpickle_op_additems,
    [MP__OP_FROZENSET] = mp__unpickle_op_frozenset,
    [MP__OP_LIST] = mp__unpickle_op_list,
    [MP__OP_TUPLE] = mp__unpickle_op_list,
    [MP__OP_TUPLE1] = mp__unpickle_op_tuple_n,
    [MP__OP_TUPLE2] = mp__unpickle_op_tuple_n,
    [MP__OP_TUPLE3] = mp__unpickle_op_tuple_n,
    [MP__OP_DICT] = mp__unpickle_op_dict,
    [MP__OP_APPEND] = mp__unpickle_op_append,
    [MP__OP_APPENDS] = mp__unpickle_op_appends,
    [MP__OP_SETITEM] = mp__unpickle_op_setitem,
    [MP__OP_SETITEMS] = mp__unpickle_op_setitems,

    [MP__OP_PUT] = mp__unpickle_op_put,
    [MP__OP_BINPUT] = mp__unpickle_op_put,
    [MP__OP_LONG_BINPUT] = mp__unpickle_op_put,
    [MP__OP_MEMOIZE] = mp__unpickle_op_memoize,
    [MP__OP_GET] = mp__unpickle_op_get,
    [MP__OP_BINGET] = mp__unpickle_op_get,
    [MP__OP_LONG_BINGET] = mp__unpickle_op_get,

    [MP__OP_GLOBAL] = mp__unpickle_op_global,
    [MP__OP_STACK_GLOBAL] = mp__unpickle_op_stack_global,
    [MP__OP_REDUCE] = mp__unpickle_op_reduce,
    [MP__OP_NEWOBJ] = mp__unpickle_op_newobj,
    [MP__OP_BUILD] = mp__unpickle_op_build,
};

/* Run one opcode: its handler, or a refusal. */
static int unpickle_step(struct unpickler *u, int op)
{
    mp__unpickle_handler *run = unpickle_dispatch[op];
    if (!run)
        return unpickle_fail(u, MP__UNPICKLE_REFUSED);
    u->op = op;
    return run(u);
}

/* ---- Phase 2: placing ----------------------------------------------------- */

static bool unpickle_is_container(const mp_obj *o)
{
    return mp__obj_has_items(o) || mp__obj_is_table(o);
}

/*
 * Place the node *slot points at, which sits level containers deep (0: *slot
 * is the result). Parents are set afterwards (unpickle_set_parents): until the
 * unplaced nodes are freed, each node's parent field links the arena.
 * Recursion depth is bounded by MP_OBJ_MAX_DEPTH, checked before descending.
 */
static int unpickle_place(struct unpickler *u, mp_obj **slot, unsigned level)
{
    mp_obj *o = *slot;
    int rc;
    MP__ASSERT(level <= MP_OBJ_MAX_DEPTH); /* checked before descending */
    if (mp__obj_immortal(o))
        return 0; /* shared by design: any number of slots may hold it */
    if (o->flags & MP__F_BLACK) {
        /* Reached again (a memo reference or DUP): a copy goes here. */
        if (level + o->height > MP_OBJ_MAX_DEPTH)
            return unpickle_fail(u, MP__UNPICKLE_DEPTH);
        mp_obj *c;
        if ((rc = mp__obj_copy_limited(o, &u->budget, &c)) < 0)
            return rc;
        if ((rc = unpickle_vec_push(&u->copies, c, NULL)) < 0) {
            mp__obj_free_tree(c);
            return rc;
        }
        *slot = c;
        return 0;
    }
    if (o->flags & MP__F_GREY)
        return unpickle_fail(u, MP__UNPICKLE_CYCLE); /* o contains itself */
    if (o->type == TYPE_PROXY_FUNC)
        return unpickle_fail(u, MP__UNPICKLE_CALLS); /* a class as a value */
    if (!unpickle_is_container(o)) {
        o->height = 0;
        o->flags |= MP__F_BLACK;
        return 0;
    }
    if (level + 1 > MP_OBJ_MAX_DEPTH)
        return unpickle_fail(u, MP__UNPICKLE_DEPTH);
    o->flags |= MP__F_GREY;
    unsigned h = 0;
    if (mp__obj_is_table(o)) {
        for (size_t i = 0; i < o->u.d.n; i++) {
            struct mp__dict_entry *e = &o->u.d.entries[i];
            if (!e->key)
                continue;
            if ((rc = unpickle_place(u, &e->key, level + 1)) < 0 ||
                (e->value && (rc = unpickle_place(u, &e->value, level + 1)) < 0))
                return rc;
            if (e->key->height > h)
                h = e->key->height;
            if (e->value && e->value->height > h) /* a set's entries: no value */
                h = e->value->height;
        }
    } else {
        for (size_t i = 0; i < o->u.seq.len; i++) {
            if ((rc = unpickle_place(u, &o->u.seq.items[i], level + 1)) < 0)
                return rc;
            if (o->u.seq.items[i]->height > h)
                h = o->u.seq.items[i]->height;
        }
    }
    o->height = (uint16_t)(h + 1);
    o->flags = (uint8_t)((o->flags & ~MP__F_GREY) | MP__F_BLACK);
    return 0;
}

/* A placed child of container c: it joins c. A copy made while placing is
 * a proper tree already, so only its root is touched. */
static void unpickle_set_parents(mp_obj *c);

static void unpickle_adopt(mp_obj *c, mp_obj *child)
{
    if (mp__obj_immortal(child))
        return;
    child->parent = c;
    if (!(child->flags & MP__F_BLACK))
        return; /* a copy */
    child->flags &= (uint8_t)~MP__F_BLACK;
    if (unpickle_is_container(child))
        unpickle_set_parents(child);
}

/* Recursion bounded by MP_OBJ_MAX_DEPTH, which unpickle_place() checked. */
static void unpickle_set_parents(mp_obj *c)
{
    if (mp__obj_is_table(c)) {
        for (size_t i = 0; i < c->u.d.n; i++) {
            struct mp__dict_entry *e = &c->u.d.entries[i];
            if (e->key) {
                unpickle_adopt(c, e->key);
                if (e->value) /* a set's entries have none */
                    unpickle_adopt(c, e->value);
            }
        }
    } else {
        for (size_t i = 0; i < c->u.seq.len; i++)
            unpickle_adopt(c, c->u.seq.items[i]);
    }
}

/* Free what phase 1 made and the result does not hold (ok), or everything
 * (!ok), then the machine's own arrays. */
static void unpickle_free(struct unpickler *u, bool ok)
{
    for (mp_obj *o = u->arena, *next; o; o = next) {
        next = o->parent;
        MP__ASSERT(!mp__obj_immortal(o)); /* immortal nodes never join the arena */
        if (!ok || !(o->flags & MP__F_BLACK))
            mp__obj_free_node(o);
    }
    if (!ok)
        for (size_t i = 0; i < u->copies.len; i++)
            mp__obj_free_tree(u->copies.v[i]);
    free(u->copies.v);
    free(u->stack.v);
    free(u->marks);
    free(u->dense);
    free(u->memo);
}

/* mp__pickle_loads, and with trailing true mp_obj_loads: bytes after STOP
 * are then ignored, as Python's pickle.loads ignores them. */
static int unpickle_loads(const unsigned char *p, size_t n, bool trailing, mp_obj **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!p && n)
        return -EINVAL;
    struct unpickler u;
    memset(&u, 0, sizeof u);
    u.p = p;
    u.n = n;
    u.budget = MP__PICKLE_BUDGET_MIN;
    if (n <= SIZE_MAX / MP__PICKLE_BUDGET_FACTOR && n * MP__PICKLE_BUDGET_FACTOR > u.budget)
        u.budget = n * MP__PICKLE_BUDGET_FACTOR;
    u.mem = SIZE_MAX;
    if (n <= (SIZE_MAX - MP__PICKLE_MEM_MIN) / MP__PICKLE_MEM_FACTOR)
        u.mem = MP__PICKLE_MEM_MIN + n * MP__PICKLE_MEM_FACTOR;

    int rc = 0;
    size_t at = 0; /* the opcode being run */
    while (rc == 0 && !u.stopped) {
        if (u.pos >= u.n) {
            rc = unpickle_fail(&u, MP__UNPICKLE_NO_STOP);
            at = u.pos;
            break;
        }
        at = u.pos;
        rc = unpickle_step(&u, u.p[u.pos++]);
    }
    bool machine = rc < 0; /* else what fails below is the placing */
    mp_obj *result = NULL;
    if (rc == 0) {
        /* Stricter than Python: exactly one value, no open MARK, nothing
         * after STOP. */
        if (u.stack.len != 1 || u.nmarks || (u.pos != u.n && !trailing))
            rc = unpickle_fail(&u, MP__UNPICKLE_NOT_ONE);
        else if ((rc = unpickle_check_value(u.stack.v[0])) == 0)
            rc = unpickle_place(&u, &u.stack.v[0], 0);
        if (rc == 0)
            result = u.stack.v[0];
    }
    unpickle_free(&u, rc == 0);
    if (rc == 0 && !mp__obj_immortal(result)) {
        result->parent = NULL;
        result->flags &= (uint8_t)~MP__F_BLACK;
        if (unpickle_is_container(result))
            unpickle_set_parents(result);
    }
    if (rc == 0)
        *out = result;
    else
        mp__unpickle_errmsg(rc, u.why, machine && at < n ? u.p[at] : -1, machine ? at : u.pos, n);
    return rc;
}

int mp__pickle_loads(const unsigned char *p, size_t n, mp_obj **out)
{
    return unpickle_loads(p, n, false, out);
}

MP_API int mp_obj_loads(const void *buf, size_t len, mp_obj **out)
{
    return unpickle_loads(buf, len, true, out);
}
