/* pyserver_testutil: CPython's own manager server as a test's child
 * (pyserver_testutil.h). */
#include "pyserver_testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char ps_script[] =
    "import os, sys, queue, threading\n"
    "from multiprocessing.managers import SyncManager, DictProxy, ListProxy, AcquirerProxy\n"
    "mode, fam, wfd, rfd, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), "
    "int(sys.argv[4]), int(sys.argv[5])\n"
    "shared = {'dict': {'count': count, 'who': 'python'}, 'list': [1, 'two'],\n"
    "          'lock': threading.Lock(), 'queue': queue.Queue()}\n"
    "class M(SyncManager): pass\n"
    "M.register('shared_dict', callable=lambda: shared['dict'], proxytype=DictProxy)\n"
    "M.register('shared_list', callable=lambda: shared['list'], proxytype=ListProxy)\n"
    "M.register('shared_lock', callable=lambda: shared['lock'], proxytype=AcquirerProxy)\n"
    "M.register('shared_queue', callable=lambda: shared['queue'])\n"
    "address = ('127.0.0.1', 0) if fam == 'tcp' else sys.argv[6]\n"
    "# the manager's authkey is the process's, as a SyncManager made without one\n"
    "# has it: the proxies the server rebuilds for itself (Condition(lock)) need it\n"
    "if sys.argv[7] == '1':\n"
    "    import multiprocessing; multiprocessing.current_process().authkey = b'" PS_KEY "'\n"
    "m = M(address=address, authkey=b'" PS_KEY "')\n"
    "def ours(a): return 'tcp:%s:%d' % a if isinstance(a, tuple) else 'unix:' + a\n"
    "if mode == 'start':\n"
    "    m.start()\n"
    "    os.write(wfd, ours(m.address).encode() + b'\\n'); os.close(wfd)\n"
    "    os.read(rfd, 1)\n"
    "    m.shutdown()\n"
    "else:\n"
    "    s = m.get_server()\n"
    "    os.write(wfd, ours(s.address).encode() + b'\\n'); os.close(wfd)\n"
    "    s.serve_forever()\n";

/* Read the address line the script writes, within 60 s. */
static int ps_read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    double until = tu_now() + 60.0;
    while (n + 1 < cap) {
        int left = (int)((until - tu_now()) * 1000);
        if (left <= 0)
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        ssize_t k = read(fd, buf + n, 1);
        if (k <= 0)
            return -1;
        if (buf[n] == '\n') {
            buf[n] = '\0';
            return 0;
        }
        n++;
    }
    return -1;
}

int ps_start(struct ps_server *s, const char *py, bool serve, bool tcp, int count)
{
    return ps_start_key(s, py, serve, tcp, count, true);
}

int ps_start_key(struct ps_server *s, const char *py, bool serve, bool tcp, int count,
                 bool process_key)
{
    static int seq;
    memset(s, 0, sizeof *s);
    s->serve = serve;
    s->stop_fd = -1;
    int up[2], stop[2];
    if (pipe(up) < 0)
        return -1;
    if (pipe(stop) < 0) {
        close(up[0]);
        close(up[1]);
        return -1;
    }
    (void)fcntl(up[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(stop[1], F_SETFD, FD_CLOEXEC);
    char wfd[16], rfd[16], cnt[16], path[128];
    snprintf(wfd, sizeof wfd, "%d", up[1]);
    snprintf(rfd, sizeof rfd, "%d", stop[0]);
    snprintf(cnt, sizeof cnt, "%d", count);
    snprintf(path, sizeof path, "/tmp/mpipc-pysrv-%d-%d.sock", (int)getpid(), seq++);
    (void)unlink(path);
    const char *args[] = {
        serve ? "serve" : "start", tcp ? "tcp" : "unix", wfd, rfd, cnt, path,
        process_key ? "1" : "0", NULL};
    int keep[2] = {up[1], stop[0]};
    s->pid = tu_spawn_python_as(py, ps_script, args, keep, 2);
    close(up[1]);
    close(stop[0]);
    s->stop_fd = stop[1];
    int rc = s->pid > 0 ? ps_read_line(up[0], s->address, sizeof s->address) : -1;
    close(up[0]);
    if (rc < 0) {
        if (s->pid > 0)
            (void)ps_stop(s);
        return -1;
    }
    return 0;
}

int ps_stop(struct ps_server *s)
{
    if (s->stop_fd >= 0) {
        close(s->stop_fd);
        s->stop_fd = -1;
    }
    if (s->pid <= 0)
        return -1;
    int st = tu_wait_child(s->pid, s->serve ? 10.0 : 30.0); /* kills it at the end */
    s->pid = 0;
    return st == TU_TIMEOUT ? -1 : st;
}
