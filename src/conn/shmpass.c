/*
 * shmpass - handing an mp_pipe_shm end to another process by descriptor:
 * what travels (the ring's memfd, then the doorbell socket) and how the
 * receiver checks it before trusting it. Static functions carry shmpass_.
 *
 * An end is two descriptors: the memfd behind the mapping (its first
 * SHMPIPE_PASSPORT bytes say the ring's size and shape and name each
 * side's doorbell socket by inode) and the end's doorbell. Nothing else
 * travels: the side is the one whose doorbell inode is the one received.
 * The receiver reads the passport once into a private copy, checks it
 * against the file's size and the doorbell, checks each ring's indexes, and
 * then keeps cap from its copy, as the processes that made the pipe do.
 */
#define _GNU_SOURCE /* F_GET_SEALS */
#include "conn/conn_state.h"
#include "conn/shmpipe_impl.h"
#include "core/internal.h"
#include "core/io.h"
#include "core/psync.h"
#include "core/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int mp__shmc_export(const mp_conn *c, int *memfd)
{
    const struct mp__shmc *s = c->shm;
    if (!s)
        return -EINVAL;
    if (s->map->fd < 0)
        return mp__err(MP_ESTATE, "this shared-memory end has no descriptor for its memory (no "
                                  "memfd could be made): share it by fork");
    if (__atomic_load_n(&s->loan_on, __ATOMIC_ACQUIRE) || s->view_on)
        return mp__err(MP_ESTATE, "a loan or view is out on this shared-memory end: commit or "
                                  "release it before handing the end over");
    if (s->part_on)
        return mp__err(MP_ESTATE, "a message is part-way received on this shared-memory end "
                                  "(a receive timed out in it); receive it first");
    *memfd = s->map->fd;
    return 0;
}

bool mp__shmc_is_ring_fd(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

/* Check the private copy of the passport against the file's size and the
 * doorbell; *side is the doorbell's side. */
static int shmpass_check(const struct shmpipe_passport *pp, size_t size, int doorbell, int *side)
{
    if (pp->magic != SHMPIPE_MAGIC || pp->version != 1 || pp->duplex > 1)
        return mp__err(MP_EPROTO, "the memory handed over is not a shared-memory pipe's ring "
                                  "(magic, version or shape does not match)");
    uint64_t cap = pp->cap;
    if (cap < SHMPIPE_RING_MIN || cap > SHMPIPE_RING_MAX || (cap & (cap - 1)) != 0)
        return mp__err(MP_EPROTO, "the ring handed over has a size of %ju bytes, which no ring has",
                       (uintmax_t)cap);
    size_t want = SHMPIPE_PASSPORT + (pp->duplex ? 2 : 1) * (SHMPIPE_HDR_SPACE + (size_t)cap);
    if (size != want)
        return mp__err(MP_EPROTO, "the memory handed over is %zu bytes where its ring needs %zu",
                       size, want);
    struct stat st;
    if (fstat(doorbell, &st) < 0)
        return -errno;
    if (!S_ISSOCK(st.st_mode))
        return mp__err(MP_EPROTO, "the doorbell handed over with a shared-memory ring is not a "
                                  "socket");
    for (int i = 0; i < 2; i++)
        if (pp->ino[i] == (uint64_t)st.st_ino && pp->dev[i] == (uint64_t)st.st_dev) {
            *side = i;
            return 0;
        }
    return mp__err(MP_EPROTO, "the doorbell handed over is not one of this ring's ends");
}

/* The ring at `at` as this process sees it, its indexes checked. */
static int shmpass_ring(struct shmpipe_ring *r, unsigned char *at, size_t cap)
{
    r->h = (struct shmpipe_hdr *)at;
    r->data = at + SHMPIPE_HDR_SPACE;
    r->cap = cap;
    uint64_t head = __atomic_load_n(&r->h->head, __ATOMIC_ACQUIRE);
    uint64_t tail = __atomic_load_n(&r->h->tail, __ATOMIC_ACQUIRE);
    r->seen = 0;
    if (tail - head > cap)
        return mp__err(MP_EPROTO,
                       "the ring handed over has indexes %ju and %ju, more than its "
                       "%zu bytes apart",
                       (uintmax_t)head, (uintmax_t)tail, cap);
    return 0;
}

int mp__shmc_adopt(mp_conn **out, int memfd, int doorbell)
{
    *out = NULL;
    struct stat st;
    if (fstat(memfd, &st) < 0)
        return -errno;
    const size_t lo = SHMPIPE_PASSPORT + SHMPIPE_HDR_SPACE + SHMPIPE_RING_MIN;
    const size_t hi = SHMPIPE_PASSPORT + 2 * (SHMPIPE_HDR_SPACE + SHMPIPE_RING_MAX);
    if (!S_ISREG(st.st_mode) || st.st_size < (off_t)lo || (uint64_t)st.st_size > hi)
        return mp__err(MP_EPROTO,
                       "the memory handed over (%jd bytes) is not a shared-memory "
                       "pipe's ring",
                       (intmax_t)st.st_size);
#if defined(__linux__) && defined(F_GET_SEALS)
    /* Unsealed, a peer could shrink it under this process's mapping. */
    int seals = fcntl(memfd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK))
        return mp__err(MP_EPROTO, "the memory handed over is not sealed against shrinking, as a "
                                  "shared-memory pipe's ring is");
#endif
    size_t size = (size_t)st.st_size;
    void *base = NULL;
    int rc = mp__shm_map_fd(&base, memfd, size);
    if (rc < 0)
        return rc;
    struct shmpipe_passport pp;
    memcpy(&pp, base, sizeof pp);
    int side = 0;
    rc = shmpass_check(&pp, size, doorbell, &side);
    size_t cap = (size_t)pp.cap;
    unsigned char *rings = (unsigned char *)base + SHMPIPE_PASSPORT;
    struct shmpipe_ring r0 = {0}, r1 = {0};
    if (rc == 0)
        rc = shmpass_ring(&r0, rings, cap);
    if (rc == 0 && pp.duplex)
        rc = shmpass_ring(&r1, rings + SHMPIPE_HDR_SPACE + cap, cap);
    struct shmpipe_map *map = NULL;
    struct mp__shmc *s = NULL;
    if (rc == 0) {
        map = calloc(1, sizeof *map);
        s = calloc(1, sizeof *s);
        rc = map && s ? 0 : -ENOMEM;
    }
    /* Side 0 receives on ring 0 (and, duplex, sends on ring 1); side 1 the
     * other way round; a one-way pipe's side 0 only receives. */
    bool readable = side == 0 || pp.duplex, writable = side == 1 || pp.duplex;
    if (rc == 0)
        rc = mp__conn_new(out, doorbell, true, false, readable, writable);
    if (rc < 0) {
        free(map);
        free(s);
        mp__shm_unmap(base, size);
        return rc;
    }
    *map = (struct shmpipe_map){.base = base, .size = size, .fd = memfd, .refs = 1};
    s->map = map;
    s->spin_ns = 20000;
    s->gen = mp__forkgen();
    s->rx = side == 0 ? r0 : r1;
    s->tx = side == 0 ? r1 : r0;
    (*out)->shm = s;
    return 0;
}
