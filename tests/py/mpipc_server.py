"""Our manager server (tests/mgr_pyserve, a C program serving with
mp_manager_serve) for CPython's own manager test scenarios: start it on an
address, connect CPython's SyncManager / BaseManager clients to it, stop it
with a shutdown request as any client may. MPIPC_PYSERVE names the program
(the ctest wrapper, test_manager_pyscenarios, sets it)."""
import os
import subprocess
import tempfile

from multiprocessing import connection, managers

TIMEOUT = 60.0


def to_python(address):
    """'unix:/path' -> '/path'; 'tcp:host:port' -> (host, port)."""
    if address.startswith('unix:'):
        return address[5:]
    host, port = address[4:].rsplit(':', 1)
    return (host, int(port))


def to_ours(address):
    if isinstance(address, str):
        return 'unix:' + address
    return 'tcp:%s:%d' % address


class OurServer:
    """One run of our server; address is in Python's form."""

    def __init__(self, address=None, authkey=None, family='AF_INET'):
        self.authkey = authkey if authkey is not None else os.urandom(32)
        if address is None:
            if family == 'AF_UNIX':
                self._dir = tempfile.mkdtemp(prefix='mpipc-pytest-')
                address = os.path.join(self._dir, 'listener')
            else:
                address = ('127.0.0.1', 0)
        prog = os.environ['MPIPC_PYSERVE']
        self.proc = subprocess.Popen(
            [prog, to_ours(address), self.authkey.hex()],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode().strip()
        if not line:
            self.proc.wait(TIMEOUT)
            raise OSError('our server did not start (exit %r)' % self.proc.returncode)
        self.address = to_python(line)

    def shutdown(self):
        """Ask it to stop (dispatch 'shutdown', as Python's own
        BaseManager._finalize_manager does) and reap it: its exit status."""
        if self.proc.poll() is None:
            try:
                conn = connection.Client(self.address, authkey=self.authkey)
                try:
                    managers.dispatch(conn, None, 'shutdown')
                finally:
                    conn.close()
            except Exception:
                pass
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        return self.proc.returncode

    def manager(self, cls=managers.SyncManager, **kw):
        """A connected client of class cls (SyncManager by default)."""
        m = cls(address=self.address, authkey=self.authkey, **kw)
        m.connect()
        return m
