/*
 * shm - shared-memory arenas and a first-fit allocator over them (shm.h).
 *
 * Each arena is one shared mapping of an anonymous file (a memfd), whose
 * descriptor the arena keeps open so that a block can be handed to a child
 * that was not forked from this process (forkserver, spawn: mp__shm_locate),
 * as Python's heap.Arena keeps its fd. Its bookkeeping is two lists
 * of extents kept in ordinary (process-private) heap memory: the free ones,
 * sorted by offset and coalesced, and the used ones. Allocation is first-fit
 * over the free lists; blocks are small and few (locks, semaphores, queue
 * state), so lists are plenty. An arena that becomes entirely free is
 * unmapped unless it is the only one left.
 *
 * The state is per process: after fork the child drops what it inherited
 * (without unmapping: the shared objects in those arenas are still in use)
 * and starts new arenas of its own on its first allocation.
 *
 * Statics start with shm_.
 */
/* MAP_ANONYMOUS is POSIX.1-2024, not 2008: glibc shows it with _DEFAULT_SOURCE. */
#define _DEFAULT_SOURCE
#define _GNU_SOURCE /* memfd_create, file seals */
#include "core/shm.h"
#include "core/io.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARENA_MIN ((size_t)256 * 1024)

struct extent {
    size_t off, len;
    struct extent *next;
};

struct arena {
    unsigned char *base;
    size_t size;
    struct extent *free_list; /* sorted by off, coalesced */
    struct extent *used;      /* any order */
    struct arena *next;
    int fd;    /* the memfd behind the mapping; -1 when none could be made */
    dev_t dev; /* and its identity, to recognise it after a fork server */
    ino_t ino; /* closed every descriptor it inherited */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct arena *arenas;
/* Arenas a forked child inherited: never allocated from, kept to locate. */
static struct arena *inherited;
static unsigned gen; /* the fork generation the lists belong to */

static void shm_free_extents(struct extent *e)
{
    while (e) {
        struct extent *next = e->next;
        free(e);
        e = next;
    }
}

/* In a forked child, forget the parent's arenas (see the file comment). The
 * mutex is re-created too: a parent thread may have held it during fork. */
static void shm_fork_check(void)
{
    unsigned now = mp__forkgen();
    if (__atomic_load_n(&gen, __ATOMIC_ACQUIRE) == now)
        return;
    mp__forkfix_lock();
    if (gen != now) {
        /* Re-initialised, not assigned: ThreadSanitizer has to see it. */
        (void)pthread_mutex_init(&mu, NULL);
        while (arenas) {
            struct arena *a = arenas;
            arenas = a->next;
            shm_free_extents(a->free_list);
            shm_free_extents(a->used);
            a->free_list = a->used = NULL;
            a->next = inherited;
            inherited = a;
        }
        __atomic_store_n(&gen, now, __ATOMIC_RELEASE);
    }
    mp__forkfix_unlock();
    /* A process's generation is fixed once its atfork handler ran: the lists
     * are dropped once per process, never again. */
    MP__ASSERT(__atomic_load_n(&gen, __ATOMIC_ACQUIRE) == mp__forkgen());
}

static size_t shm_page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

/*
 * Map size bytes for arena a: a memfd when one can be made, so the arena
 * can be passed by descriptor; an anonymous mapping otherwise (fork still
 * shares it). Both are shmem pages, so fork behaviour and speed are the
 * same. Returns the base or NULL.
 */
static void *shm_arena_map(struct arena *a, size_t size)
{
    a->fd = mp__anon_file("mpipc-shm");
    struct stat st;
    if (a->fd >= 0 && (mp__truncate(a->fd, size) < 0 || fstat(a->fd, &st) < 0)) {
        (void)mp__close(a->fd);
        a->fd = -1;
    }
    if (a->fd >= 0) {
        a->dev = st.st_dev;
        a->ino = st.st_ino;
        void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, a->fd, 0);
        if (base != MAP_FAILED)
            return base;
        (void)mp__close(a->fd);
        a->fd = -1;
    }
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return base == MAP_FAILED ? NULL : base;
}

/* A new arena with room for at least `need` bytes (mu held). */
static struct arena *shm_arena_new(size_t need)
{
    size_t pg = shm_page_size();
    size_t size = need < ARENA_MIN ? ARENA_MIN : need;
    if (size > SIZE_MAX - pg)
        return NULL;
    size = (size + pg - 1) / pg * pg;
    struct arena *a = calloc(1, sizeof *a);
    struct extent *e = malloc(sizeof *e);
    if (!a || !e) {
        free(a);
        free(e);
        return NULL;
    }
    void *base = shm_arena_map(a, size);
    if (!base) {
        free(a);
        free(e);
        return NULL;
    }
    a->base = base;
    a->size = size;
    e->off = 0;
    e->len = size;
    e->next = NULL;
    a->free_list = e;
    a->next = arenas;
    arenas = a;
    return a;
}

/* Carve len bytes from the first free extent that fits (mu held). */
static void *shm_arena_take(struct arena *a, size_t len)
{
    for (struct extent **pp = &a->free_list; *pp; pp = &(*pp)->next) {
        struct extent *f = *pp;
        if (f->len < len)
            continue;
        struct extent *u = malloc(sizeof *u);
        if (!u)
            return NULL;
        u->off = f->off;
        u->len = len;
        u->next = a->used;
        a->used = u;
        MP__ASSERT(u->off + len <= a->size);
        if (f->len == len) {
            *pp = f->next;
            free(f);
        } else {
            f->off += len;
            f->len -= len;
        }
        return a->base + u->off;
    }
    return NULL;
}

int mp__shm_alloc(void **out, size_t size)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (size == 0 || size > SIZE_MAX - MP__SHM_ALIGN)
        return -EINVAL;
    size_t len = (size + MP__SHM_ALIGN - 1) & ~(MP__SHM_ALIGN - 1);
    shm_fork_check();
    pthread_mutex_lock(&mu);
    void *p = NULL;
    for (struct arena *a = arenas; a && !p; a = a->next)
        p = shm_arena_take(a, len);
    if (!p) {
        struct arena *a = shm_arena_new(len);
        if (a)
            p = shm_arena_take(a, len);
    }
    pthread_mutex_unlock(&mu);
    if (!p)
        return -ENOMEM;
    MP__ASSERT(((uintptr_t)p & (MP__SHM_ALIGN - 1)) == 0);
    /* Fresh mappings are zero; a reused extent may hold an old object. */
    memset(p, 0, len);
    *out = p;
    return 0;
}

/* The arena and used extent holding p (mu held), or false. */
static bool shm_find_block(const void *p, struct arena **arena, struct extent ***link)
{
    const unsigned char *c = p;
    for (struct arena *a = arenas; a; a = a->next) {
        if (c < a->base || c >= a->base + a->size)
            continue;
        size_t off = (size_t)(c - a->base);
        for (struct extent **pp = &a->used; *pp; pp = &(*pp)->next) {
            if ((*pp)->off == off) {
                *arena = a;
                *link = pp;
                return true;
            }
        }
        return false;
    }
    return false;
}

/* Put extent u back on a's free list, merging with its neighbours. */
static void shm_release_extent(struct arena *a, struct extent *u)
{
    struct extent **pp = &a->free_list;
    while (*pp && (*pp)->off < u->off)
        pp = &(*pp)->next;
    u->next = *pp;
    *pp = u;
    /* A used extent lies in its arena and overlaps no free one. */
    MP__ASSERT(u->off + u->len <= a->size);
    MP__ASSERT(!u->next || u->off + u->len <= u->next->off);
    if (u->next && u->off + u->len == u->next->off) {
        struct extent *n = u->next;
        u->len += n->len;
        u->next = n->next;
        free(n);
    }
    /* Merge with the predecessor: walk again (the list is short). */
    for (struct extent *f = a->free_list; f && f->next; f = f->next) {
        if (f->next != u)
            continue;
        MP__ASSERT(f->off + f->len <= u->off);
        if (f->off + f->len == u->off) {
            f->len += u->len;
            f->next = u->next;
            free(u);
        }
        break;
    }
}

/* Unmap a wholly free arena unless it is the last one (mu held). */
static void shm_maybe_unmap(struct arena *a)
{
    if (a->used || !a->free_list || a->free_list->len != a->size)
        return;
    if (arenas == a && !a->next)
        return; /* keep one arena so alloc/free cycles do not thrash mmap */
    for (struct arena **pp = &arenas; *pp; pp = &(*pp)->next) {
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    }
    (void)munmap(a->base, a->size);
    if (a->fd >= 0)
        (void)mp__close(a->fd);
    shm_free_extents(a->free_list);
    free(a);
}

/* Whether p is a live block of this process, and (release) free it. */
static bool shm_lookup(const void *p, bool release)
{
    if (!p)
        return false;
    shm_fork_check();
    pthread_mutex_lock(&mu);
    struct arena *a;
    struct extent **link;
    bool mine = shm_find_block(p, &a, &link);
    if (mine && release) {
        struct extent *u = *link;
        *link = u->next;
        shm_release_extent(a, u);
        shm_maybe_unmap(a);
    }
    pthread_mutex_unlock(&mu);
    return mine;
}

bool mp__shm_free(void *p)
{
    return shm_lookup(p, true);
}

bool mp__shm_owned(const void *p)
{
    return shm_lookup(p, false);
}

/* The arena of list l holding [c, c + len), or NULL (mu held). */
static struct arena *shm_arena_of(struct arena *l, const unsigned char *c, size_t len)
{
    for (struct arena *a = l; a; a = a->next)
        if (c >= a->base && c < a->base + a->size && len <= (size_t)(a->base + a->size - c))
            return a;
    return NULL;
}

int mp__shm_locate(const void *p, size_t len, int *fd, size_t *off, size_t *size)
{
    if (!p || !fd || !off || !size)
        return -EINVAL;
    shm_fork_check();
    pthread_mutex_lock(&mu);
    struct arena *a = shm_arena_of(arenas, p, len);
    if (!a)
        a = shm_arena_of(inherited, p, len);
    struct stat st;
    /* An inherited descriptor may have been closed (a fork server closes
     * all it inherits) and its number reused: the identity tells. */
    bool ok =
        a && a->fd >= 0 && fstat(a->fd, &st) == 0 && st.st_dev == a->dev && st.st_ino == a->ino;
    if (ok) {
        *fd = a->fd;
        *off = (size_t)((const unsigned char *)p - a->base);
        *size = a->size;
    }
    pthread_mutex_unlock(&mu);
    return ok ? 0 : MP_EVALUE;
}

int mp__shm_map(void **out, size_t size)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (size == 0)
        return -EINVAL;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -ENOMEM;
    *out = p;
    return 0;
}

int mp__shm_map_memfd(void **out, size_t size, int *fd)
{
    if (!out || !fd)
        return -EINVAL;
    *out = NULL;
    *fd = -1;
    if (size == 0)
        return -EINVAL;
#if defined(__linux__) && defined(MFD_ALLOW_SEALING) && defined(F_ADD_SEALS)
    /* Sealed at its size: a process it is handed to cannot shrink it under
     * the others' mappings (SIGBUS on their next access). */
    int f = memfd_create("mpipc-shmpipe", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (f >= 0 && (mp__truncate(f, size) < 0 ||
                   fcntl(f, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)) {
        (void)mp__close(f);
        f = -1;
    }
#else
    int f = mp__anon_file("mpipc-shmpipe");
    if (f >= 0 && mp__truncate(f, size) < 0) {
        (void)mp__close(f);
        f = -1;
    }
#endif
    if (f >= 0) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
        if (p != MAP_FAILED) {
            *out = p;
            *fd = f;
            return 0;
        }
    }
    if (f >= 0)
        (void)mp__close(f);
    return mp__shm_map(out, size); /* no memfd: shared by fork only */
}

void mp__shm_unmap(void *p, size_t size)
{
    if (p)
        (void)munmap(p, size);
}

int mp__shm_map_fd(void **out, int fd, size_t size)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (size == 0 || fd < 0)
        return -EINVAL;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    *out = p;
    return 0;
}
