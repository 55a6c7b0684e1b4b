/*
 * process - Python's Process for the fork start method (see process.h), and
 * the exit procedure every process that uses the library runs.
 *
 * This file is the library's one home of fork() and waitpid().
 *
 * Process-local state (each process has its own copy after fork):
 *   registry   the children this process started and has not reaped yet,
 *              so the exit procedure can terminate daemons and join them;
 *   hooks      at-exit hooks added by this process (queues flush there);
 *   identity   this process's Python-style identity ("" in the main
 *              process, "2" in Process-2, "2:1" in its first child).
 * One mutex guards all of it. A pthread_atfork child handler empties the
 * registry and the hooks in every child, however it was forked: a child's
 * parent's children and queues are not the child's.
 *
 * Sentinels. start() makes a close-on-exec pipe whose write end only the
 * child keeps; the read end reaches end of file when the child ends. The
 * pipe and the fork happen under the mutex, and the atfork prepare handler
 * takes the same mutex, so a fork from another thread can never inherit a
 * child's write end and keep its sentinel from firing.
 *
 * Statics start with process_.
 */
#include "core/internal.h"
#include "core/io.h"
#include "core/popen.h"

#include <mpipc/process.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum run_state { P_INITIAL, P_STARTED, P_ENDED };

struct mp_process {
    mp_target_fn target;
    void *arg;
    char *name;
    char *identity; /* what the child's own identity will be, e.g. "2:1" */
    bool daemon;
    pid_t creator;           /* the process that made the handle */
    pid_t pid;               /* 0 before start */
    int sentinel;            /* read end of the sentinel pipe, -1 before start */
    int state;               /* enum run_state; guarded by mu */
    int exitcode;            /* valid in P_ENDED; -ECHILD if another waiter reaped it */
    struct mp_process *next; /* registry link, guarded by mu */
    bool registered;
    bool closed; /* mp_process_close() ran: Python's _closed */
    /* Start methods (core/popen.h): NULL for mp_process_new's fork. */
    const struct mp__popen_ops *popen;
    void *popen_data;
};

struct exit_hook {
    int id;
    int priority;
    mp__exit_hook_fn fn;
    void *arg;
    struct exit_hook *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static mp_process *registry;
static struct exit_hook *hooks; /* newest first */
static int next_hook_id;
static unsigned made_count; /* processes made by this process */
static char *cur_identity;  /* NULL in the main process */
static char *cur_name;      /* NULL: "MainProcess" */
static bool cur_daemon;
static bool exiting;
static int cur_sentinel = -1;       /* in a child: the write end of its sentinel */
static pid_t parent_pid;            /* 0 in the main process */
static char *parent_name;           /* NULL in the main process */
static _Thread_local bool in_spawn; /* this thread holds mu across fork() */

static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

/* ---- fork and exit plumbing ----------------------------------------------- */

/*
 * The library's other fork handlers that take locks (mp__atfork_register)
 * run from these, after mu in prepare: mp_process_start holds mu across
 * fork() (so no other fork inherits a sentinel being made), and a handler
 * pthread_atfork ran on its own would take its locks before mu in a plain
 * fork but after it in mp_process_start's - a lock-order inversion between
 * two threads forking at once. Here every fork takes mu first, then the
 * registered handlers' locks in registration order.
 */
#define PROCESS_ATFORK_MAX 8
static struct {
    void (*prepare)(void), (*parent)(void), (*child)(void);
} atforks[PROCESS_ATFORK_MAX];
static size_t natforks; /* under mu */

static void process_atfork_prepare(void)
{
    if (!in_spawn)
        pthread_mutex_lock(&mu);
    for (size_t i = 0; i < natforks; i++)
        if (atforks[i].prepare)
            atforks[i].prepare();
}

static void process_atfork_parent(void)
{
    for (size_t i = natforks; i-- > 0;)
        if (atforks[i].parent)
            atforks[i].parent();
    if (!in_spawn)
        pthread_mutex_unlock(&mu);
}

static void process_atfork_child(void)
{
    /* Single-threaded here. The forking thread held mu; start afresh. The
     * parent's children and hooks stay allocated in this copy of memory, but
     * they belong to the parent: drop the lists without freeing entries the
     * parent's handles still point to (hook entries are the library's own,
     * so those are freed). */
    /* The forking thread - this one - took mu in prepare (or holds it
     * across mp_process_start's fork): released as the lock it is, so that
     * ThreadSanitizer's lock-order graph does not go on counting it held. */
    (void)pthread_mutex_unlock(&mu);
    registry = NULL;
    cur_sentinel = -1; /* mp_process_start sets it in the child it made */
    while (hooks) {
        struct exit_hook *h = hooks;
        hooks = h->next;
        free(h);
    }
    exiting = false;
    for (size_t i = natforks; i-- > 0;)
        if (atforks[i].child)
            atforks[i].child();
}

static void process_exit_procedure(void);

static void process_setup(void)
{
    (void)pthread_atfork(process_atfork_prepare, process_atfork_parent, process_atfork_child);
    (void)atexit(process_exit_procedure);
}

static void process_ensure_setup(void)
{
    (void)pthread_once(&setup_once, process_setup);
}

int mp__atfork_register(void (*prepare)(void), void (*parent)(void), void (*child)(void))
{
    process_ensure_setup();
    pthread_mutex_lock(&mu);
    int rc = -ENOMEM;
    if (natforks < PROCESS_ATFORK_MAX) {
        atforks[natforks].prepare = prepare;
        atforks[natforks].parent = parent;
        atforks[natforks].child = child;
        natforks++;
        rc = 0;
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

/* Run the hooks of one priority group, newest first. Each is taken off the
 * list before it runs, so a hook may add or remove hooks. */
static void process_run_hooks(bool high)
{
    for (;;) {
        pthread_mutex_lock(&mu);
        struct exit_hook **pp = &hooks;
        while (*pp && ((*pp)->priority >= 0) != high)
            pp = &(*pp)->next;
        struct exit_hook *h = *pp;
        if (h)
            *pp = h->next;
        pthread_mutex_unlock(&mu);
        if (!h)
            return;
        h->fn(h->arg);
        free(h);
    }
}

int mp__exit_hook_add(mp__exit_hook_fn fn, void *arg, int priority)
{
    process_ensure_setup();
    struct exit_hook *h = malloc(sizeof *h);
    if (!h)
        return -ENOMEM;
    h->fn = fn;
    h->arg = arg;
    h->priority = priority;
    pthread_mutex_lock(&mu);
    if (next_hook_id == INT32_MAX)
        next_hook_id = 0;
    h->id = ++next_hook_id;
    h->next = hooks;
    hooks = h;
    pthread_mutex_unlock(&mu);
    return h->id;
}

void mp__exit_hook_remove(int id)
{
    pthread_mutex_lock(&mu);
    for (struct exit_hook **pp = &hooks; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            struct exit_hook *h = *pp;
            *pp = h->next;
            free(h);
            break;
        }
    }
    pthread_mutex_unlock(&mu);
}

/* ---- registry and reaping ------------------------------------------------- */

/* state changes under mu; calls that only look at it do so without mu. */
static int process_state(const mp_process *p)
{
    return __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
}

/* Only forward: P_INITIAL, then P_STARTED, then P_ENDED (mu held). */
static void process_set_state(mp_process *p, int state)
{
    MP__ASSERT(state == process_state(p) + 1);
    __atomic_store_n(&p->state, state, __ATOMIC_RELEASE);
}

static void process_unregister_locked(mp_process *p)
{
    if (!p->registered)
        return;
    bool found = false;
    for (mp_process **pp = &registry; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            found = true;
            break;
        }
    }
    /* Registered means on the list, in the process that made the handle (a
     * child that inherited it starts with an empty list). */
    MP__ASSERT(found || p->creator != getpid());
    (void)found;
    p->next = NULL;
    p->registered = false;
}

/* Python's os.waitstatus_to_exitcode. */
static int process_exitcode_of(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return -WTERMSIG(status);
    return status;
}

/* Reap the child if it has ended, without blocking (mu held). Returns true
 * once the process is in P_ENDED. */
static bool process_reap_locked(mp_process *p)
{
    if (p->state != P_STARTED)
        return p->state == P_ENDED;
    if (p->popen && p->popen->poll) { /* start methods: not a child of ours */
        int code = 0;
        if (p->popen->poll(p->popen_data, p->sentinel, &code) <= 0)
            return false;
        p->exitcode = code;
        process_set_state(p, P_ENDED);
        process_unregister_locked(p);
        return true;
    }
    int status = 0;
    pid_t r;
    do
        r = waitpid(p->pid, &status, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == p->pid) {
        p->exitcode = process_exitcode_of(status);
    } else if (r < 0 && errno == ECHILD) {
        /* Someone else reaped it (SIGCHLD set to SIG_IGN, or a waitpid(-1)
         * elsewhere): it has ended, but its exit code is lost. */
        p->exitcode = -ECHILD;
    } else {
        return false;
    }
    process_set_state(p, P_ENDED);
    process_unregister_locked(p);
    return true;
}

static bool process_reap(mp_process *p)
{
    pthread_mutex_lock(&mu);
    bool ended = process_reap_locked(p);
    pthread_mutex_unlock(&mu);
    return ended;
}

/* Python's _check_closed(): after close() a call that needs the process
 * raises ValueError("process object is closed"). */
static int process_check_open(const mp_process *p)
{
    if (!p)
        return -EINVAL;
    return __atomic_load_n(&p->closed, __ATOMIC_ACQUIRE)
               ? mp__err(MP_EVALUE, "process object is closed")
               : 0;
}

/* The calls Python reserves for the parent: the handle must be ours, not
 * one a child inherited. */
static int process_check_parent(const mp_process *p)
{
    int rc = process_check_open(p);
    if (rc < 0)
        return rc;
    return p->creator == getpid()
               ? 0
               : mp__err(MP_ESTATE, "only the process that created the process object can do this");
}

/* ... and some of them for a process that has started. */
static int process_check_child(const mp_process *p)
{
    int rc = process_check_parent(p);
    if (rc == 0 && process_state(p) == P_INITIAL)
        rc = mp__err(MP_ESTATE, "the process has not been started");
    return rc;
}

/* ---- construction and properties ------------------------------------------ */

MP_API int mp_process_new(mp_process **out, mp_target_fn target, void *arg)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    process_ensure_setup();
    mp_process *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    pthread_mutex_lock(&mu);
    unsigned n = ++made_count;
    const char *parent = cur_identity;
    int len = snprintf(NULL, 0, "%s%s%u", parent ? parent : "", parent ? ":" : "", n);
    p->identity = malloc((size_t)len + 1);
    if (p->identity)
        snprintf(p->identity, (size_t)len + 1, "%s%s%u", parent ? parent : "", parent ? ":" : "",
                 n);
    pthread_mutex_unlock(&mu);
    if (p->identity) {
        p->name = malloc(strlen("Process-") + (size_t)len + 1);
        if (p->name)
            sprintf(p->name, "Process-%s", p->identity);
    }
    if (!p->identity || !p->name) {
        free(p->identity);
        free(p->name);
        free(p);
        return -ENOMEM;
    }
    p->target = target;
    p->arg = arg;
    p->creator = getpid();
    p->sentinel = -1;
    p->state = P_INITIAL;
    *out = p;
    return 0;
}

MP_API int mp_process_set_name(mp_process *p, const char *name)
{
    if (!p || !name)
        return -EINVAL;
    size_t n = strlen(name) + 1;
    char *copy = malloc(n);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, name, n);
    free(p->name);
    p->name = copy;
    return 0;
}

MP_API const char *mp_process_name(const mp_process *p)
{
    return p ? p->name : NULL;
}

MP_API int mp_process_set_daemon(mp_process *p, bool daemon)
{
    if (!p)
        return -EINVAL;
    if (process_state(p) != P_INITIAL)
        return mp__err(MP_ESTATE, "process has already started"); /* Python's words */
    p->daemon = daemon;
    return 0;
}

MP_API bool mp_process_daemon(const mp_process *p)
{
    return p && p->daemon;
}

MP_API pid_t mp_process_pid(const mp_process *p)
{
    return p ? p->pid : 0;
}

MP_API int mp_process_sentinel(const mp_process *p)
{
    int rc = process_check_open(p);
    if (rc < 0)
        return rc;
    return process_state(p) == P_INITIAL ? mp__err(MP_EVALUE, "process not started") : p->sentinel;
}

int mp__process_sentinel_fd(void)
{
    return cur_sentinel;
}

MP_API const char *mp_process_current_name(void)
{
    return cur_name ? cur_name : "MainProcess";
}

/* ---- start ---------------------------------------------------------------- */

static void process_note_parent(const mp_process *p);

/* The child's life after fork: adopt the handle's identity, run the target,
 * run the exit procedure, leave. Never returns. */
static void process_child_main(mp_process *p)
{
    /* The strings are this process's own copies now; duplicate them so the
     * target may free or rename its handle. Out of memory keeps what the
     * child inherited. */
    process_note_parent(p); /* before cur_name becomes the child's */
    char *identity = strdup(p->identity), *name = strdup(p->name);
    if (identity) {
        free(cur_identity); /* the parent's, when it was a child itself */
        cur_identity = identity;
    }
    if (name) {
        free(cur_name);
        cur_name = name;
    }
    cur_daemon = p->daemon;
    made_count = 0;

    int code = p->target ? p->target(p->arg) : 0;

    process_exit_procedure();
    fflush(NULL);
    _exit(code & 0xff);
}

/* A child has started (mu held): the handle takes its pid and sentinel and
 * joins the registry of this process's children. */
static void process_register_started_locked(mp_process *p, pid_t pid, int sentinel)
{
    p->pid = pid;
    p->sentinel = sentinel;
    MP__ASSERT(!p->registered);
    process_set_state(p, P_STARTED);
    p->next = registry;
    registry = p;
    p->registered = true;
}

/* A start method makes the child (core/popen.h); the handle records it as
 * the fork path does. Returns 1 when the method asks for the fork path. */
static int process_start_popen(mp_process *p)
{
    struct mp__popen_child child = {.name = p->name, .identity = p->identity, .daemon = p->daemon};
    pid_t pid = 0;
    int sentinel = -1;
    int rc = p->popen->start(p->popen_data, &child, &pid, &sentinel);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&mu);
    process_register_started_locked(p, pid, sentinel);
    pthread_mutex_unlock(&mu);
    return 0;
}

MP_API int mp_process_start(mp_process *p)
{
    int rc = process_check_open(p);
    if (rc < 0)
        return rc;
    if (process_state(p) != P_INITIAL) /* Python's assertion texts, here and below */
        return mp__err(MP_ESTATE, "cannot start a process twice");
    if (p->creator != getpid())
        return mp__err(MP_ESTATE, "can only start a process object created by current process");
    if (cur_daemon)
        return mp__err(MP_ESTATE, "daemonic processes are not allowed to have children");
    process_ensure_setup();

    /* Python flushes sys.stdout/stderr before fork for the same reason: a
     * buffer not yet written would be written by both processes. */
    fflush(NULL);

    if (p->popen && p->popen->start && (rc = process_start_popen(p)) <= 0)
        return rc;

    in_spawn = true;
    pthread_mutex_lock(&mu);
    int fds[2];
    rc = mp__pipe(fds);
    if (rc < 0) {
        pthread_mutex_unlock(&mu);
        in_spawn = false;
        return rc;
    }
    pid_t pid = fork();
    if (pid == 0) {
        in_spawn = false; /* mu was re-created by process_atfork_child */
        mp__close(fds[0]);
        cur_sentinel = fds[1];
        process_child_main(p); /* keeps fds[1] open until _exit */
    }
    int fork_errno = errno;
    mp__close(fds[1]);
    if (pid < 0) {
        pthread_mutex_unlock(&mu);
        in_spawn = false;
        mp__close(fds[0]);
        return -fork_errno;
    }
    process_register_started_locked(p, pid, fds[0]);
    pthread_mutex_unlock(&mu);
    in_spawn = false;
    return 0;
}

/* ---- join, poll, signal --------------------------------------------------- */

MP_API int mp_process_join(mp_process *p, double timeout)
{
    int rc = process_check_child(p);
    if (rc < 0)
        return rc;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int64_t deadline = mp__deadline(timeout);
    if (process_reap(p))
        return p->exitcode == -ECHILD ? -ECHILD : 0;

    struct pollfd pfd = {.fd = p->sentinel, .events = POLLIN, .revents = 0};
    rc = mp__poll(&pfd, 1, deadline);
    if (rc < 0)
        return rc;
    /* The sentinel fires when the child's descriptors close, a moment before
     * the kernel makes it reapable (or early, if the child closed the
     * descriptor itself or exec'd): poll for the exit status, backing off
     * from 50 us to 10 ms, until the deadline. */
    double pause = 50e-6;
    for (;;) {
        if (process_reap(p))
            return p->exitcode == -ECHILD ? -ECHILD : 0;
        if (rc == 0 || mp__deadline_passed(deadline))
            return MP_ETIMEDOUT;
        mp__sleep(pause);
        if (pause < 10e-3)
            pause *= 2;
    }
}

MP_API int mp_process_is_alive(mp_process *p)
{
    int rc = process_check_parent(p);
    if (rc < 0)
        return rc;
    if (process_state(p) == P_INITIAL)
        return 0;
    return process_reap(p) ? 0 : 1;
}

MP_API int mp_process_exitcode(mp_process *p, int *code)
{
    if (!code)
        return -EINVAL;
    int rc = process_check_parent(p);
    if (rc < 0)
        return rc;
    if (process_state(p) == P_INITIAL || !process_reap(p))
        return MP_ENOTDONE;
    if (p->exitcode == -ECHILD)
        return -ECHILD;
    *code = p->exitcode;
    return 0;
}

static int process_signal(mp_process *p, int sig)
{
    int rc = process_check_child(p);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&mu);
    /* Only signal a pid we have not reaped: a reaped pid may belong to
     * another process by now. An unreaped zombie ignores the signal. */
    if (p->state == P_STARTED && kill(p->pid, sig) < 0 && errno != ESRCH)
        rc = MP__NEG_ERRNO();
    pthread_mutex_unlock(&mu);
    return rc;
}

MP_API int mp_process_terminate(mp_process *p)
{
    return process_signal(p, SIGTERM);
}

MP_API int mp_process_kill(mp_process *p)
{
    return process_signal(p, SIGKILL);
}

/* Python's Process.close(): refuse while the child runs, else let go of
 * the sentinel and the registry entry; a second close does nothing. */
MP_API int mp_process_close(mp_process *p)
{
    if (!p)
        return -EINVAL;
    if (__atomic_load_n(&p->closed, __ATOMIC_ACQUIRE))
        return 0;
    if (p->creator == getpid() && process_state(p) == P_STARTED && !process_reap(p))
        return mp__err(MP_EVALUE, "Cannot close a process while it is still running. You should "
                                  "first call join() or terminate().");
    pthread_mutex_lock(&mu);
    process_unregister_locked(p);
    if (p->sentinel >= 0)
        mp__close(p->sentinel);
    p->sentinel = -1;
    __atomic_store_n(&p->closed, true, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&mu);
    return 0;
}

/* Never refuses: a child still running is left running, detached (no longer
 * joined or signalled by the exit procedure; nobody reaps it here). */
MP_API void mp_process_free(mp_process *p)
{
    if (!p)
        return;
    if (p->creator == getpid() && process_state(p) == P_STARTED)
        (void)process_reap(p);
    pthread_mutex_lock(&mu);
    process_unregister_locked(p);
    pthread_mutex_unlock(&mu);
    if (p->sentinel >= 0)
        mp__close(p->sentinel);
    if (p->popen && p->popen->free)
        p->popen->free(p->popen_data);
    free(p->name);
    free(p->identity);
    free(p);
}

/* ---- the exit procedure --------------------------------------------------- */

/* Python's util._exit_function: hooks, terminate daemons, join children,
 * late hooks. Runs once per process (atexit in the main program, explicitly
 * at the end of a child's target). */
static void process_exit_procedure(void)
{
    pthread_mutex_lock(&mu);
    bool again = exiting;
    exiting = true;
    pthread_mutex_unlock(&mu);
    if (again)
        return;

    process_run_hooks(true);

    pthread_mutex_lock(&mu);
    for (mp_process *c = registry; c; c = c->next)
        if (c->daemon && c->state == P_STARTED)
            (void)kill(c->pid, SIGTERM);
    pthread_mutex_unlock(&mu);

    for (;;) {
        pthread_mutex_lock(&mu);
        mp_process *c = registry;
        pthread_mutex_unlock(&mu);
        if (!c)
            break;
        if (mp_process_join(c, MP_FOREVER) < 0) {
            /* Not joinable (reaped elsewhere): stop tracking it. */
            pthread_mutex_lock(&mu);
            process_unregister_locked(c);
            pthread_mutex_unlock(&mu);
        }
    }

    process_run_hooks(false);
}

/* ---- helpers: current, parent, active children ----------------------------- */

/* In a child just forked by mp_process_start: remember who started it
 * (Python's _bootstrap makes _parent_process from the handle's _parent_pid
 * and _parent_name). cur_name is still the parent's here. Out of memory
 * keeps the name inherited from further up. */
static void process_note_parent(const mp_process *p)
{
    char *name = strdup(cur_name ? cur_name : "MainProcess");
    parent_pid = p->creator;
    if (name) {
        free(parent_name); /* the grandparent's, in this copy of memory */
        parent_name = name;
    }
}

MP_API pid_t mp_process_current_pid(void)
{
    return getpid();
}

MP_API pid_t mp_process_parent_pid(void)
{
    return parent_pid;
}

MP_API const char *mp_process_parent_name(void)
{
    return parent_name;
}

/* The parent has ended once this process has another parent: the kernel
 * hands an orphan to a subreaper or init, never to a pid that the dead
 * parent had. (Python watches a pipe from the parent instead; this needs no
 * descriptor and no change to start.) */
MP_API int mp_process_parent_is_alive(void)
{
    if (parent_pid == 0)
        return -ESRCH;
    return getppid() == parent_pid ? 1 : 0;
}

MP_API int mp_process_parent_join(double timeout)
{
    if (parent_pid == 0)
        return -ESRCH;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int64_t deadline = mp__deadline(timeout);
    double pause = 1e-3;
    while (getppid() == parent_pid) {
        if (mp__deadline_passed(deadline))
            return MP_ETIMEDOUT;
        double left = mp__deadline_left(deadline);
        mp__sleep(left >= 0 && left < pause ? left : pause);
        if (pause < 10e-3)
            pause *= 2;
    }
    return 0;
}

/* Python's active_children(): _cleanup() reaps the children that ended
 * (their exit codes stay in their handles), then the rest are listed. The
 * registry is newest first; the array is filled oldest first. */
MP_API ssize_t mp_process_active_children(mp_process **children, size_t cap)
{
    if (!children && cap > 0)
        return -EINVAL;
    process_ensure_setup();
    pthread_mutex_lock(&mu);
    size_t live = 0;
    mp_process *next;
    for (mp_process *c = registry; c; c = next) {
        next = c->next; /* reaping unlinks c */
        if (!process_reap_locked(c))
            live++;
    }
    size_t i = 0;
    for (mp_process *c = registry; c; c = c->next, i++)
        if (live - 1 - i < cap)
            children[live - 1 - i] = c;
    MP__ASSERT(i == live);
    pthread_mutex_unlock(&mu);
    return (ssize_t)live;
}

/* ---- hooks for the start methods (core/popen.h, src/process/) ------------- */

void mp__process_set_popen(mp_process *p, const struct mp__popen_ops *ops, void *data)
{
    MP__ASSERT(process_state(p) == P_INITIAL && !p->popen);
    p->popen = ops;
    p->popen_data = data;
}

const struct mp__popen_ops *mp__process_popen(const mp_process *p, void **data)
{
    *data = p->popen_data;
    return p->popen;
}

void mp__process_uncount(const mp_process *p)
{
    const char *last = strrchr(p->identity, ':');
    unsigned long n = strtoul(last ? last + 1 : p->identity, NULL, 10);
    pthread_mutex_lock(&mu);
    if (n == made_count && made_count > 0)
        made_count--;
    pthread_mutex_unlock(&mu);
}

/* Held across making the descriptors a spawned child keeps and the spawn,
 * so a fork from another thread (its atfork prepare handler takes mu) never
 * inherits them. posix_spawn runs no atfork handlers, so in_spawn stays. */
void mp__process_lock(void)
{
    process_ensure_setup();
    pthread_mutex_lock(&mu);
}

void mp__process_unlock(void)
{
    pthread_mutex_unlock(&mu);
}

/* posix_spawn rather than fork+exec: glibc's runs the child on a vfork-like
 * clone with no atfork handlers and no malloc, so it is safe from a parent
 * with threads; a dup2 of a descriptor onto itself clears its close-on-exec
 * flag in the child only (POSIX 2024; glibc >= 2.29). */
int mp__process_spawn_locked(const char *path, char *const argv[], const int *keep, size_t n,
                             pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int err = posix_spawn_file_actions_init(&fa);
    if (err)
        return -err;
    if ((err = posix_spawnattr_init(&attr)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return -err;
    }
    for (size_t i = 0; i < n && !err; i++)
        err = posix_spawn_file_actions_adddup2(&fa, keep[i], keep[i]);
    /* A new program starts with no signal blocked, whatever the calling
     * thread blocks (libuv does the same). */
    sigset_t none;
    sigemptyset(&none);
    if (!err)
        err = posix_spawnattr_setsigmask(&attr, &none);
    if (!err)
        err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    extern char **environ;
    if (!err)
        err = posix_spawn(pid, path, &fa, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return -err;
}

void mp__process_become_child(const char *name, const char *identity, bool daemon, int sentinel)
{
    process_ensure_setup();
    char *id = identity ? strdup(identity) : NULL, *nm = name ? strdup(name) : NULL;
    pthread_mutex_lock(&mu);
    if (id) {
        free(cur_identity);
        cur_identity = id;
    }
    if (nm) {
        free(cur_name);
        cur_name = nm;
    }
    cur_daemon = daemon;
    made_count = 0;
    cur_sentinel = sentinel;
    pthread_mutex_unlock(&mu);
}

_Noreturn void mp__process_child_exit(int code)
{
    process_exit_procedure();
    fflush(NULL);
    _exit(code & 0xff);
}
