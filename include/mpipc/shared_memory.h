/*
 * libmpipc - named shared memory: Python's multiprocessing.shared_memory
 * (SharedMemory, ShareableList, SharedMemoryManager) and the resource
 * tracker that unlinks what a killed process leaves behind.
 *
 *     mp_shared_memory *shm;
 *     mp_shared_memory_create(&shm, NULL, 1 << 20, NULL);   // "psm_1a2b3c4d"
 *     memcpy(mp_shared_memory_buf(shm), data, n);
 *     // another process, C or Python, attaches by name:
 *     //   SharedMemory(name="psm_1a2b3c4d")  /  mp_shared_memory_attach
 *     mp_shared_memory_close(shm);
 *     mp_shared_memory_unlink(shm);      // once, by one process
 *     mp_shared_memory_free(shm);
 *
 * Names. Blocks are POSIX shared memory objects (shm_open), named exactly as
 * Python names them, so C and Python attach to each other's blocks: a name
 * given here is used with a leading "/" added, as Python does, and a
 * generated one is Python's "psm_" followed by 8 hex digits. Names are
 * reported without the slash (Python's SharedMemory.name); on Linux the block
 * is the file /dev/shm/<name>.
 *
 * Tracking (Python 3.13's track=True, the default). A tracked block is
 * registered with the process's resource tracker: a small process forked on
 * the first tracked create or attach (or by
 * mp_resource_tracker_ensure_running), which holds the read end of a pipe
 * whose write end this process and every child it forks afterwards keep
 * open. When all of them have ended - however they ended, SIGKILL included -
 * the tracker sees end of file and unlinks every tracked block that was not
 * unlinked by then. mp_shared_memory_unlink unregisters the block. As in
 * Python, attaching with tracking on also registers the block: the
 * attaching process tree's end then unlinks it, which is rarely what an
 * attacher that did not create the block wants. A process that attaches to
 * a block some other program owns should pass track = false (Python 3.13's
 * track=False). The tracker is the one process-wide state of this module:
 * it is started once per process tree and never prints.
 *
 * Status codes (Python's exceptions): -ENOENT attaching to a name that does
 * not exist (FileNotFoundError); -EEXIST creating a name that exists
 * (FileExistsError); MP_EVALUE for size 0 on create and for attaching to an
 * empty object (ValueError); -EINVAL for NULL or a name shm_open refuses (one
 * holding "/"); other -errno from the system.
 *
 * Thread/fork: a handle may be used by one thread at a time; the memory
 * itself may be used by any number of threads and processes, without
 * locking (add a Lock, as in Python). A forked child inherits the mapping:
 * its handle copy works in the child, and freeing it there removes only the
 * child's view.
 */
#ifndef MPIPC_SHARED_MEMORY_H
#define MPIPC_SHARED_MEMORY_H

#include <mpipc/common.h>
#include <mpipc/error.h>
#include <mpipc/obj.h>

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A named shared memory block mapped into this process (SharedMemory). */
typedef struct mp_shared_memory mp_shared_memory;

/* Options for creating or attaching to a block. */
typedef struct mp_shared_memory_opts {
    /* Register the block with the resource tracker (see the top of this
     * file). Default true, as Python's track=True. */
    bool track;
} mp_shared_memory_opts;

/* Every default of mp_shared_memory_opts: tracked, as in Python. */
#define MP_SHARED_MEMORY_OPTS_INIT                                                                 \
    {                                                                                              \
        .track = true                                                                              \
    }

/* The longest name a block may have (without the leading slash): NAME_MAX
 * less the slash. */
#define MP_SHARED_MEMORY_NAME_MAX 254

/*
 * mp_shared_memory_create - create a new block and map it (Python's
 * SharedMemory(name, create=True, size=size)).
 *
 * name:  the block's name without a leading slash, or NULL for a new name
 *        ("psm_" and 8 random hex digits, tried until one is free).
 * size:  its size in bytes, > 0. The block is zero-filled.
 * opts:  NULL for every default (tracked).
 *
 * Returns 0; MP_EVALUE for size 0 ("'size' must be a positive number
 * different from zero"); -EEXIST when name exists; -EINVAL for NULL out, a
 * name longer than MP_SHARED_MEMORY_NAME_MAX or one shm_open refuses;
 * -ERANGE for a size beyond off_t; -errno (-ENOSPC, -EMFILE, -ENOMEM, and
 * what starting the tracker can fail with). On failure *out is NULL and no
 * block is left behind.
 * Ownership: release the handle with mp_shared_memory_free(); the block
 * itself lives until someone unlinks it (or the tracker does).
 */
MP_API int mp_shared_memory_create(mp_shared_memory **out, const char *name, size_t size,
                                   const mp_shared_memory_opts *opts);

/*
 * mp_shared_memory_attach - map an existing block (Python's
 * SharedMemory(name)). Its size is the object's real size (fstat), which
 * may be larger than the size asked for at creation on systems that round
 * it up to pages (not on Linux).
 *
 * name:  the block's name, without a leading slash.
 * opts:  NULL for every default (tracked: see the top of this file).
 *
 * Returns 0; -ENOENT when no block has that name; MP_EVALUE when the
 * object is empty ("cannot mmap an empty file"); -EINVAL, -EACCES, other
 * -errno. On failure *out is NULL.
 * Ownership: release the handle with mp_shared_memory_free().
 */
MP_API int mp_shared_memory_attach(mp_shared_memory **out, const char *name,
                                   const mp_shared_memory_opts *opts);

/* mp_shared_memory_name - the block's name without the leading slash
 * (Python's name), or NULL for NULL. Borrowed from the handle. */
MP_API const char *mp_shared_memory_name(const mp_shared_memory *shm);

/* mp_shared_memory_size - the block's size in bytes (Python's size); 0 for
 * NULL. */
MP_API size_t mp_shared_memory_size(const mp_shared_memory *shm);

/*
 * mp_shared_memory_buf - the start of the mapping (Python's buf): size
 * bytes, readable and writable, shared with every process that maps the
 * block. NULL after mp_shared_memory_close() or for NULL.
 * Ownership: borrowed; valid until the handle is closed or freed.
 */
MP_API void *mp_shared_memory_buf(const mp_shared_memory *shm);

/*
 * mp_shared_memory_close - unmap the block and close its descriptor in this
 * process (Python's close()); the block itself stays. Closing twice is
 * harmless. Returns 0, or -EINVAL for NULL.
 */
MP_API int mp_shared_memory_close(mp_shared_memory *shm);

/*
 * mp_shared_memory_unlink - remove the block's name (Python's unlink()), so
 * that no one else can attach; processes that mapped it keep their mapping
 * until they close. Call it once, from one process; it may come before or
 * after close. A tracked block is unregistered from the resource tracker.
 *
 * Returns 0; -ENOENT when the name is already gone (FileNotFoundError);
 * -EINVAL for NULL; -EACCES.
 */
MP_API int mp_shared_memory_unlink(mp_shared_memory *shm);

/* mp_shared_memory_free - close (not unlink) and release the handle.
 * Accepts NULL. */
MP_API void mp_shared_memory_free(mp_shared_memory *shm);

/*
 * mp_resource_tracker_ensure_running - start this process's resource
 * tracker now if it is not running (Python's
 * resource_tracker.ensure_running()). The tracker is also started by the
 * first tracked create or attach. The tracker is forked from this process:
 * it closes every descriptor but its pipe and stdio, and unmaps the named
 * blocks it inherited, so it holds nothing of the program's; starting it
 * early, before the program grows, makes that fork cheap.
 *
 * Returns 0, or -errno when the pipe or fork fails.
 * Thread/fork: safe from any thread. Children forked afterwards share the
 * tracker; a process that inherited none starts its own.
 */
MP_API int mp_resource_tracker_ensure_running(void);

/* ---- ShareableList ------------------------------------------------------ */

/*
 * A fixed-length list of ints, floats, bools, str, bytes and None kept in a
 * shared memory block in CPython's ShareableList layout, so Python's
 * ShareableList(name=...) reads and writes a list C made, and the other way
 * round:
 *
 *     8 bytes       the item count N (int64)
 *     (N+1) * 8     each item's offset into the data area, and its end
 *     data          one slot per item, 8-byte aligned: 8 bytes for an int
 *                   ("q"), float ("d"), bool ("xxxxxxx?") or None
 *                   ("xxxxxx?x"); for str and bytes ("16s"...) the length
 *                   rounded up to the next multiple of 8 (a multiple of 8
 *                   gets 8 more)
 *     N * 8         each item's struct format, NUL-padded
 *     N bytes       each item's back-transform code: 0 int/float/bool,
 *                   1 str, 2 bytes, 3 None
 *
 * Python's rules hold: the length is fixed; an item may change type, but a
 * str or bytes written later must fit its slot (MP_EVALUE "bytes/str item
 * exceeds available storage"); str and bytes lose trailing NUL bytes when
 * read, as in Python. One difference: Python sizes a str's slot by its
 * count of code points and so silently cuts a non-ASCII str that needs more
 * bytes; here the slot is sized by its UTF-8 length, so nothing is cut (the
 * layout is the same for ASCII text and bytes, and Python reads both).
 *
 * Thread/fork: as mp_shared_memory; there is no locking between writers.
 */
typedef struct mp_shareable_list mp_shareable_list;

/*
 * mp_shareable_list_create - a new block holding the items of seq (Python's
 * ShareableList(seq, name=name)).
 *
 * seq:   a list or tuple of None, bool, int (within int64), float, str and
 *        bytes; NULL for an empty list.
 * name:  the block's name, or NULL for a generated one.
 * opts:  as for mp_shared_memory_create.
 *
 * Returns 0; MP_ETYPE when seq is not a list or tuple or holds another
 * type (Python's KeyError from its type table); -ERANGE for an int beyond
 * int64 (Python's struct.error); MP_EVALUE for a str or bytes of 9,999,992
 * bytes or more (its format would exceed 8 characters; Python's
 * AssertionError) or a str holding lone surrogates (UnicodeEncodeError);
 * the codes of mp_shared_memory_create. On failure *out is NULL.
 * Ownership: seq is borrowed; free the list with mp_shareable_list_free().
 */
MP_API int mp_shareable_list_create(mp_shareable_list **out, const mp_obj *seq, const char *name,
                                    const mp_shared_memory_opts *opts);

/*
 * mp_shareable_list_attach - open the list in the block called name
 * (Python's ShareableList(name=name)).
 *
 * Returns 0; MP_EPROTO when the block does not hold a well-formed list (a
 * count or offsets that point outside the block); the codes of
 * mp_shared_memory_attach. On failure *out is NULL.
 * Ownership: free the list with mp_shareable_list_free().
 */
MP_API int mp_shareable_list_attach(mp_shareable_list **out, const char *name,
                                    const mp_shared_memory_opts *opts);

/* mp_shareable_list_shm - the list's block (Python's .shm), to read its
 * name or unlink it. Borrowed from the list. */
MP_API mp_shared_memory *mp_shareable_list_shm(const mp_shareable_list *l);

/* mp_shareable_list_len - the number of items (Python's len()), or
 * -EINVAL for NULL. */
MP_API ssize_t mp_shareable_list_len(const mp_shareable_list *l);

/*
 * mp_shareable_list_get - Python's l[i]; a negative i counts from the end.
 *
 * out:  receives the item: None, bool, int, float, str or bytes.
 *
 * Returns 0; MP_EKEY when i is out of range (IndexError); MP_EVALUE when a
 * str slot does not hold UTF-8 (UnicodeDecodeError); MP_EPROTO when the
 * slot's format or code is not one ShareableList writes, or points outside
 * the block; -EINVAL; -ENOMEM. On failure *out is NULL.
 * Ownership: the caller owns *out (mp_obj_free).
 */
MP_API int mp_shareable_list_get(const mp_shareable_list *l, ssize_t i, mp_obj **out);

/*
 * mp_shareable_list_set - Python's l[i] = v; a negative i counts from the
 * end. The item may change type; a str or bytes must fit the slot.
 *
 * Returns 0; MP_EKEY when i is out of range (IndexError); MP_EVALUE when a
 * str or bytes exceeds the slot ("bytes/str item exceeds available
 * storage") or a str holds lone surrogates; MP_ETYPE for another type;
 * -ERANGE for an int beyond int64; -EINVAL. Nothing is written on failure.
 * Ownership: v is borrowed.
 */
MP_API int mp_shareable_list_set(mp_shareable_list *l, ssize_t i, const mp_obj *v);

/* mp_shareable_list_count - Python's l.count(v): how many items equal v
 * (Python's ==: 1 == 1.0 == True). Returns the count, or the code of
 * mp_shareable_list_get for an item that cannot be read. */
MP_API ssize_t mp_shareable_list_count(const mp_shareable_list *l, const mp_obj *v);

/* mp_shareable_list_index - Python's l.index(v): the first position of an
 * item equal to v. Returns it, MP_EVALUE when there is none ("... not in
 * this container"), or the code of mp_shareable_list_get. */
MP_API ssize_t mp_shareable_list_index(const mp_shareable_list *l, const mp_obj *v);

/*
 * mp_shareable_list_format - Python's l.format: every item's struct format,
 * joined, e.g. "qdxxxxxxx?16s" for [1, 2.0, True, "hi"].
 *
 * out:  receives a NUL-terminated copy.
 * Returns 0; MP_EPROTO for a damaged format table; -EINVAL; -ENOMEM.
 * Ownership: the caller frees *out with free().
 */
MP_API int mp_shareable_list_format(const mp_shareable_list *l, char **out);

/* mp_shareable_list_free - close (not unlink) the list's block and release
 * the handle. Accepts NULL. */
MP_API void mp_shareable_list_free(mp_shareable_list *l);

/* ---- SharedMemoryManager ------------------------------------------------ */

/*
 * An owner of blocks (Python's multiprocessing.managers.SharedMemoryManager):
 * every block made through it, by the process that made the manager or by
 * any child forked after that, is unlinked when the manager shuts down.
 *
 *     mp_shared_memory_manager *smm;
 *     mp_shared_memory_manager_new(&smm);             // before fork
 *     mp_shared_memory *shm;
 *     mp_shared_memory_manager_create(smm, 4096, &shm);  // in any process
 *     ...
 *     mp_shared_memory_manager_free(smm);     // shutdown: unlinks them all
 *
 * Python runs a server process for this; here the list of names lives in
 * shared memory made by mp_shared_memory_manager_new, so children forked
 * later add to it without a round trip. It holds at most
 * MP_SHARED_MEMORY_MANAGER_MAX blocks at a time. Blocks made through it
 * are tracked, so if the manager's process is killed before its shutdown,
 * the resource tracker unlinks them instead.
 *
 * Thread/fork: every call may be made from any thread of the process that
 * made the manager or of a child forked after it; shutdown only from the
 * process that made it.
 */
typedef struct mp_shared_memory_manager mp_shared_memory_manager;

/* The most blocks one manager holds at a time. */
#define MP_SHARED_MEMORY_MANAGER_MAX 1024

/*
 * mp_shared_memory_manager_new - a manager with no blocks (Python's
 * SharedMemoryManager() and start()). Starts the resource tracker if this
 * process has none, so children forked later share it.
 * Returns 0, -EINVAL for NULL, -ENOMEM, or -errno from starting the
 * tracker. On failure *out is NULL.
 * Ownership: release with mp_shared_memory_manager_free().
 */
MP_API int mp_shared_memory_manager_new(mp_shared_memory_manager **out);

/*
 * mp_shared_memory_manager_create - a new block with a generated name,
 * owned by the manager (Python's smm.SharedMemory(size)).
 *
 * size:  the block's size, > 0.
 * out:   receives the block's handle in this process.
 *
 * Returns 0; MP_ESTATE after shutdown; -ENOSPC when the manager already
 * holds MP_SHARED_MEMORY_MANAGER_MAX blocks; the codes of
 * mp_shared_memory_create. On failure *out is NULL and no block is made.
 * Ownership: the caller frees the handle with mp_shared_memory_free(); the
 * block belongs to the manager (unlinking it early is allowed).
 */
MP_API int mp_shared_memory_manager_create(mp_shared_memory_manager *m, size_t size,
                                           mp_shared_memory **out);

/*
 * mp_shared_memory_manager_shareable_list - a new ShareableList owned by
 * the manager (Python's smm.ShareableList(seq)). seq as for
 * mp_shareable_list_create.
 * Returns as mp_shared_memory_manager_create, plus the codes of
 * mp_shareable_list_create. Ownership: free *out with
 * mp_shareable_list_free(); seq is borrowed.
 */
MP_API int mp_shared_memory_manager_shareable_list(mp_shared_memory_manager *m, const mp_obj *seq,
                                                   mp_shareable_list **out);

/*
 * mp_shared_memory_manager_shutdown - unlink every block made through the
 * manager that still exists (Python's shutdown()). Later creates return
 * MP_ESTATE; shutting down twice is harmless.
 * Returns 0; MP_ESTATE when called from a process other than the one that
 * made the manager; -EINVAL for NULL.
 */
MP_API int mp_shared_memory_manager_shutdown(mp_shared_memory_manager *m);

/* mp_shared_memory_manager_free - shut down (in the process that made the
 * manager; a child's copy only lets go of its view) and release the handle.
 * Accepts NULL. */
MP_API void mp_shared_memory_manager_free(mp_shared_memory_manager *m);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_SHARED_MEMORY_H */
