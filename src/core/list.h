/*
 * list - the library's one intrusive doubly-linked list, header-only: a node
 * embedded in each element, linked in a ring through the list's head. The
 * model is nng's nni_list: the list knows where the node sits in its
 * elements, so callers hand it and get back elements, never nodes.
 *
 * Why a ring: neither end is a special case (an empty list is a head that
 * points at itself), so insert and remove are a handful of stores with no
 * branch, and an element is removed in O(1) from wherever it sits.
 *
 * Invariants (MP__ASSERT, checked in Debug and sanitizer builds):
 *   - A list is initialized (MP__LIST_INIT or MP__LIST_INITIALIZER) before
 *     use: its head is in its own ring, never NULL.
 *   - A linked node's neighbours point back at it.
 *   - An unlinked node has both pointers NULL. Zeroed memory (calloc) is an
 *     unlinked node, and remove clears them again, so mp__list_linked()
 *     tells whether an element is on a list. A node is on one list at most.
 * Iterating with first/next may remove the current element (or free it) if
 * it took the next one first. No locking: the owner of a list guards it.
 * Names ending in _ are this header's own helpers.
 */
#ifndef MPIPC_LIST_H
#define MPIPC_LIST_H

#include "core/internal.h"

#include <stdbool.h>
#include <stddef.h>

struct mp__list_node {
    struct mp__list_node *next, *prev; /* both NULL: not on a list */
};

struct mp__list {
    struct mp__list_node head;
    size_t offset; /* of the node in an element */
};

/* Make l an empty list of `type` elements linked through their `member`. */
#define MP__LIST_INIT(l, type, member) mp__list_init_offset((l), offsetof(type, member))

/* The same for a list with static storage: = MP__LIST_INITIALIZER(name, ...). */
/* clang-format off */
#define MP__LIST_INITIALIZER(name, type, member) {{&(name).head, &(name).head}, offsetof(type, member)}
/* clang-format on */

static inline void mp__list_init_offset(struct mp__list *l, size_t offset)
{
    l->head.next = l->head.prev = &l->head;
    l->offset = offset;
}

static inline struct mp__list_node *mp__list_node_(const struct mp__list *l, const void *e)
{
    return (struct mp__list_node *)(void *)((char *)e + l->offset);
}

/* The element of node n, or NULL for the head (the end of the list). */
static inline void *mp__list_elem_(const struct mp__list *l, const struct mp__list_node *n)
{
    return n == &l->head ? NULL : (char *)n - l->offset;
}

static inline bool mp__list_empty(const struct mp__list *l)
{
    MP__ASSERT(l->head.next != NULL); /* initialized */
    return l->head.next == &l->head;
}

/* True while e is on a list (on l, if anywhere: a node has one list). */
static inline bool mp__list_linked(const struct mp__list *l, const void *e)
{
    return mp__list_node_(l, e)->next != NULL;
}

/* The first element, or NULL when the list is empty. */
static inline void *mp__list_first(const struct mp__list *l)
{
    MP__ASSERT(l->head.next != NULL); /* initialized */
    return mp__list_elem_(l, l->head.next);
}

/* The element after e (which is on l), or NULL after the last. */
static inline void *mp__list_next(const struct mp__list *l, const void *e)
{
    const struct mp__list_node *n = mp__list_node_(l, e);
    MP__ASSERT(n->next != NULL); /* e is linked */
    return mp__list_elem_(l, n->next);
}

/* Link node n, which is on no list, between prev and next. */
static inline void mp__list_link_(struct mp__list_node *n, struct mp__list_node *prev,
                                  struct mp__list_node *next)
{
    MP__ASSERT(n->next == NULL && n->prev == NULL);       /* on no list yet */
    MP__ASSERT(prev->next == next && next->prev == prev); /* neighbours */
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}

static inline void mp__list_push_front(struct mp__list *l, void *e)
{
    MP__ASSERT(l->head.next != NULL); /* initialized */
    mp__list_link_(mp__list_node_(l, e), &l->head, l->head.next);
}

static inline void mp__list_push_back(struct mp__list *l, void *e)
{
    MP__ASSERT(l->head.prev != NULL); /* initialized */
    mp__list_link_(mp__list_node_(l, e), l->head.prev, &l->head);
}

/* Take e, which is on l, off it. */
static inline void mp__list_remove(struct mp__list *l, void *e)
{
    struct mp__list_node *n = mp__list_node_(l, e);
    MP__ASSERT(n->next != NULL && n != &l->head);         /* linked */
    MP__ASSERT(n->prev->next == n && n->next->prev == n); /* consistent */
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

/* Take the first element off l and return it; NULL when l is empty. */
static inline void *mp__list_pop_front(struct mp__list *l)
{
    void *e = mp__list_first(l);
    if (e)
        mp__list_remove(l, e);
    return e;
}

/* Move every element of src, in order, to the end of dst (the same kind of
 * list); src is left empty. */
static inline void mp__list_append_all(struct mp__list *dst, struct mp__list *src)
{
    MP__ASSERT(dst != src && dst->offset == src->offset);
    if (mp__list_empty(src))
        return;
    struct mp__list_node *first = src->head.next, *last = src->head.prev;
    first->prev = dst->head.prev;
    dst->head.prev->next = first;
    last->next = &dst->head;
    dst->head.prev = last;
    src->head.next = src->head.prev = &src->head;
}

#endif /* MPIPC_LIST_H */
