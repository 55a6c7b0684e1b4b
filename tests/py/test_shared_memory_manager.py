"""CPython's _TestSharedMemory, its manager parts (Lib/test/
_test_multiprocessing.py, 3.11), against our server (tests/mgr_pyserve).

Not applicable, with the reason: test_shared_memory_SharedMemoryManager_basics,
..._reuses_resource_tracker and test_shared_memory_SharedMemoryServer_ignores_sigint
need SharedMemoryManager's own server (SharedMemoryServer: the calls
track_segment, release_segment, list_segments), which our manager server
does not serve; libmpipc's SharedMemoryManager (mp_shared_memory_manager,
include/mpipc/shared_memory.h) is a table in shared memory, no server.
Ported instead: a SharedMemoryManager client connected to our server
fails at once with RemoteError and leaves no segment behind (its own
client unlinks the block it made when the server refuses to track it),
and the server goes on serving.
"""
import unittest
from multiprocessing import shared_memory
from multiprocessing.managers import RemoteError, SharedMemoryManager

from mpipc_server import OurServer


class TestSharedMemoryManager(unittest.TestCase):

    def test_not_served_fails_cleanly(self):
        server = OurServer()
        self.addCleanup(lambda: self.assertEqual(server.shutdown(), 0))
        smm = SharedMemoryManager(address=server.address,
                                  authkey=server.authkey)
        smm.connect()
        made = []
        real = shared_memory.SharedMemory

        def recording(*args, **kw):
            shm = real(*args, **kw)
            made.append(shm.name)
            return shm
        shared_memory.SharedMemory = recording
        try:
            with self.assertRaises(RemoteError):
                smm.SharedMemory(size=64)
            with self.assertRaises(RemoteError):
                smm.ShareableList(range(3))
        finally:
            shared_memory.SharedMemory = real
        self.assertEqual(len(made), 2)
        for name in made:  # unlinked by the client when tracking failed
            with self.assertRaises(FileNotFoundError):
                real(name=name).close()
        # the server still serves SyncManager's types
        d = server.manager().dict({'a': 1})
        self.assertEqual(d['a'], 1)
        del d


if __name__ == '__main__':
    unittest.main()
