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

/* The opcodes that drive the machine itself: the protocol, frames, STOP,
 * the marks and the stack. */
static int unpickle_control(struct unpickler *u, int op, bool *stop)
{
    int rc;
    size_t len, first;
    uint64_t v;
    mp_obj *o;
    switch (op) {
    case MP__OP_PROTO:
        if ((rc = unpickle_read_le(u, 1, &v)) < 0)
            return rc;
        return v > HIGHEST_PROTOCOL ? MP_EPROTO : 0;
    case MP__OP_FRAME:
        /* CPython only checks that the frame is there; so do we. */
        return unpickle_read_len(u, unpickle_width(op), &len);
    case MP__OP_STOP:
        *stop = true;
        return 0;

    case MP__OP_MARK:
        return unpickle_push_mark(u);
    case MP__OP_POP:
        /* Python's load_pop: with nothing above the MARK, drop the MARK. */
        if (u->stack.len > unpickle_fence(u)) {
            u->stack.len--;
            return 0;
        }
        return unpickle_pop_mark(u, &first);
    case MP__OP_POP_MARK:
        if ((rc = unpickle_pop_mark(u, &first)) < 0)
            return rc;
        u->stack.len = first;
        return 0;
    case MP__OP_DUP:
        if ((rc = unpickle_top(u, &o)) < 0)
            return rc;
        return unpickle_push(u, o);
    default:
        MP__ASSERT(!"an opcode of another family");
        return unpickle_fail(u, MP__UNPICKLE_REFUSED);
    }
}

/* ---- Phase 1: the machine ------------------------------------------------ */

/* One opcode: its family's handler reads its argument and runs it. */
static int unpickle_step(struct unpickler *u, int op, bool *stop)
{
    switch (op) {
    case MP__OP_PROTO:
    case MP__OP_FRAME:
    case MP__OP_STOP:
    case MP__OP_MARK:
    case MP__OP_POP:
    case MP__OP_POP_MARK:
    case MP__OP_DUP:
        return unpickle_control(u, op, stop);
    case MP__OP_NONE:
    case MP__OP_NEWTRUE:
    case MP__OP_NEWFALSE:
    case MP__OP_INT:
    case MP__OP_LONG:
    case MP__OP_BININT:
    case MP__OP_BININT1:
    case MP__OP_BININT2:
    case MP__OP_LONG1:
    case MP__OP_LONG4:
    case MP__OP_FLOAT:
    case MP__OP_BINFLOAT:
    case MP__OP_SHORT_BINUNICODE:
    case MP__OP_BINUNICODE:
    case MP__OP_BINUNICODE8:
    case MP__OP_UNICODE:
    case MP__OP_SHORT_BINBYTES:
    case MP__OP_BINBYTES:
    case MP__OP_BINBYTES8:
    case MP__OP_BYTEARRAY8:
        return mp__unpickle_scalar(u, op);
    case MP__OP_EMPTY_LIST:
    case MP__OP_EMPTY_TUPLE:
    case MP__OP_EMPTY_DICT:
    case MP__OP_EMPTY_SET:
    case MP__OP_ADDITEMS:
    case MP__OP_FROZENSET:
    case MP__OP_LIST:
    case MP__OP_TUPLE:
    case MP__OP_TUPLE1:
    case MP__OP_TUPLE2:
    case MP__OP_TUPLE3:
    case MP__OP_DICT:
    case MP__OP_APPEND:
    case MP__OP_APPENDS:
    case MP__OP_SETITEM:
    case MP__OP_SETITEMS:
        return mp__unpickle_container(u, op);
    case MP__OP_PUT:
    case MP__OP_BINPUT:
    case MP__OP_LONG_BINPUT:
    case MP__OP_MEMOIZE:
    case MP__OP_GET:
    case MP__OP_BINGET:
    case MP__OP_LONG_BINGET:
        return mp__unpickle_memo(u, op);
    case MP__OP_GLOBAL:
    case MP__OP_STACK_GLOBAL:
    case MP__OP_REDUCE:
    case MP__OP_NEWOBJ:
    case MP__OP_BUILD:
        return mp__unpickle_object(u, op);
    default:
        /* INST, OBJ, NEWOBJ_EX, EXT1/2/4, PERSID, BINPERSID:
         * they import or call code. STRING, BINSTRING, SHORT_BINSTRING:
         * Python 2 str. NEXT_BUFFER, READONLY_BUFFER: out-of-band data.
         * And every byte that is not an opcode. */
        return unpickle_fail(u, MP__UNPICKLE_REFUSED);
    }
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
    bool stop = false;
    size_t at = 0; /* the opcode being run */
    while (rc == 0 && !stop) {
        if (u.pos >= u.n) {
            rc = unpickle_fail(&u, MP__UNPICKLE_NO_STOP);
            at = u.pos;
            break;
        }
        at = u.pos;
        rc = unpickle_step(&u, u.p[u.pos++], &stop);
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
