"""CPython's _TestContainers (Lib/test/_test_multiprocessing.py, 3.11),
unchanged, against our server: a SyncManager client connected to
tests/mgr_pyserve over TCP (and again over AF_UNIX), self.list, self.dict,
self.Namespace and self.Queue being its proxies as in CPython's manager
test mixin. Every case runs: none is skipped."""
import unittest
from multiprocessing import managers
from multiprocessing import current_process

from mpipc_server import OurServer


class BaseTestCase(object):
    """CPython's ManagerMixin, with our server in place of manager.start()."""
    FAMILY = 'AF_INET'

    @classmethod
    def setUpClass(cls):
        # manager.start()'s authkey, the process's own: a proxy a value
        # carries is rebuilt with it (RebuildProxy gets no authkey).
        cls.server = OurServer(family=cls.FAMILY,
                               authkey=bytes(current_process().authkey))
        cls.manager = cls.server.manager()
        m = cls.manager
        cls.list, cls.dict, cls.Namespace, cls.Queue = (
            m.list, m.dict, m.Namespace, m.Queue)

    @classmethod
    def tearDownClass(cls):
        del cls.list, cls.dict, cls.Namespace, cls.Queue
        cls.manager = None
        assert cls.server.shutdown() == 0


# ---- from CPython, unchanged ----
class _TestContainers(BaseTestCase):

    ALLOWED_TYPES = ('manager',)

    def test_list(self):
        a = self.list(list(range(10)))
        self.assertEqual(a[:], list(range(10)))

        b = self.list()
        self.assertEqual(b[:], [])

        b.extend(list(range(5)))
        self.assertEqual(b[:], list(range(5)))

        self.assertEqual(b[2], 2)
        self.assertEqual(b[2:10], [2,3,4])

        b *= 2
        self.assertEqual(b[:], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4])

        self.assertEqual(b + [5, 6], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6])

        self.assertEqual(a[:], list(range(10)))

        d = [a, b]
        e = self.list(d)
        self.assertEqual(
            [element[:] for element in e],
            [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]]
            )

        f = self.list([a])
        a.append('hello')
        self.assertEqual(f[0][:], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 'hello'])

    def test_list_iter(self):
        a = self.list(list(range(10)))
        it = iter(a)
        self.assertEqual(list(it), list(range(10)))
        self.assertEqual(list(it), [])  # exhausted
        # list modified during iteration
        it = iter(a)
        a[0] = 100
        self.assertEqual(next(it), 100)

    def test_list_proxy_in_list(self):
        a = self.list([self.list(range(3)) for _i in range(3)])
        self.assertEqual([inner[:] for inner in a], [[0, 1, 2]] * 3)

        a[0][-1] = 55
        self.assertEqual(a[0][:], [0, 1, 55])
        for i in range(1, 3):
            self.assertEqual(a[i][:], [0, 1, 2])

        self.assertEqual(a[1].pop(), 2)
        self.assertEqual(len(a[1]), 2)
        for i in range(0, 3, 2):
            self.assertEqual(len(a[i]), 3)

        del a

        b = self.list()
        b.append(b)
        del b

    def test_dict(self):
        d = self.dict()
        indices = list(range(65, 70))
        for i in indices:
            d[i] = chr(i)
        self.assertEqual(d.copy(), dict((i, chr(i)) for i in indices))
        self.assertEqual(sorted(d.keys()), indices)
        self.assertEqual(sorted(d.values()), [chr(i) for i in indices])
        self.assertEqual(sorted(d.items()), [(i, chr(i)) for i in indices])

    def test_dict_iter(self):
        d = self.dict()
        indices = list(range(65, 70))
        for i in indices:
            d[i] = chr(i)
        it = iter(d)
        self.assertEqual(list(it), indices)
        self.assertEqual(list(it), [])  # exhausted
        # dictionary changed size during iteration
        it = iter(d)
        d.clear()
        self.assertRaises(RuntimeError, next, it)

    def test_dict_proxy_nested(self):
        pets = self.dict(ferrets=2, hamsters=4)
        supplies = self.dict(water=10, feed=3)
        d = self.dict(pets=pets, supplies=supplies)

        self.assertEqual(supplies['water'], 10)
        self.assertEqual(d['supplies']['water'], 10)

        d['supplies']['blankets'] = 5
        self.assertEqual(supplies['blankets'], 5)
        self.assertEqual(d['supplies']['blankets'], 5)

        d['supplies']['water'] = 7
        self.assertEqual(supplies['water'], 7)
        self.assertEqual(d['supplies']['water'], 7)

        del pets
        del supplies
        self.assertEqual(d['pets']['ferrets'], 2)
        d['supplies']['blankets'] = 11
        self.assertEqual(d['supplies']['blankets'], 11)

        pets = d['pets']
        supplies = d['supplies']
        supplies['water'] = 7
        self.assertEqual(supplies['water'], 7)
        self.assertEqual(d['supplies']['water'], 7)

        d.clear()
        self.assertEqual(len(d), 0)
        self.assertEqual(supplies['water'], 7)
        self.assertEqual(pets['hamsters'], 4)

        l = self.list([pets, supplies])
        l[0]['marmots'] = 1
        self.assertEqual(pets['marmots'], 1)
        self.assertEqual(l[0]['marmots'], 1)

        del pets
        del supplies
        self.assertEqual(l[0]['marmots'], 1)

        outer = self.list([[88, 99], l])
        self.assertIsInstance(outer[0], list)  # Not a ListProxy
        self.assertEqual(outer[-1][-1]['feed'], 3)

    def test_nested_queue(self):
        a = self.list() # Test queue inside list
        a.append(self.Queue())
        a[0].put(123)
        self.assertEqual(a[0].get(), 123)
        b = self.dict() # Test queue inside dict
        b[0] = self.Queue()
        b[0].put(456)
        self.assertEqual(b[0].get(), 456)

    def test_namespace(self):
        n = self.Namespace()
        n.name = 'Bob'
        n.job = 'Builder'
        n._hidden = 'hidden'
        self.assertEqual((n.name, n.job), ('Bob', 'Builder'))
        del n.job
        self.assertEqual(str(n), "Namespace(name='Bob')")
        self.assertTrue(hasattr(n, 'name'))
        self.assertTrue(not hasattr(n, 'job'))

# ---- end of CPython's text ----


class _TestListSlices(BaseTestCase):
    """Slices of a ListProxy (a builtins.slice in each request) on our
    server behave as on a Python list."""

    def test_list_until_proxies_in_a_list(self):
        # CPython's test_list, unchanged, up to d = [a, b] (a list of proxies)
        a = self.list(list(range(10)))
        self.assertEqual(a[:], list(range(10)))

        b = self.list()
        self.assertEqual(b[:], [])

        b.extend(list(range(5)))
        self.assertEqual(b[:], list(range(5)))

        self.assertEqual(b[2], 2)
        self.assertEqual(b[2:10], [2,3,4])

        b *= 2
        self.assertEqual(b[:], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4])

        self.assertEqual(b + [5, 6], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6])

        self.assertEqual(a[:], list(range(10)))

    def test_slices_get_set_del_as_a_python_list(self):
        # Every slice of the grid, got, set (to a sequence of its own size,
        # then of one more) and deleted: the same result, or the same
        # exception with the same words, as a list here.
        bounds = [None, 0, 3, 9, -1, -4, 20, -20, 2**70, -2**70, True]
        steps = [None, 1, 2, -1, -3, 0, 4, 2**70, -2**70]
        p = self.list()

        def outcome(f, target):
            try:
                return ('ok', f(target), target[:])
            except Exception as e:
                return (type(e), str(e), target[:])

        for start in bounds:
            for stop in bounds:
                for step in steps:
                    sl = slice(start, stop, step)
                    local = list(range(10))
                    p[:] = local
                    want = outcome(lambda t: t[sl], local)
                    self.assertEqual(outcome(lambda t: t[sl], p), want, sl)
                    n = len(want[1]) if want[0] == 'ok' else 2
                    for k in (n, n + 1):
                        seq = ['x%d' % i for i in range(k)]

                        def assign(t):
                            t[sl] = seq
                        local = list(range(10))
                        p[:] = local
                        want = outcome(assign, local)
                        self.assertEqual(outcome(assign, p), want, (sl, k))

                    def delete(t):
                        del t[sl]
                    local = list(range(10))
                    p[:] = local
                    want = outcome(delete, local)
                    self.assertEqual(outcome(delete, p), want, sl)

    def test_slice_assignment_takes_a_tuple_and_grows_or_shrinks(self):
        p = self.list(list(range(5)))
        p[1:3] = ('a', 'b', 'c', 'd')
        self.assertEqual(p[:], [0, 'a', 'b', 'c', 'd', 3, 4])
        p[4:1] = ['x']
        self.assertEqual(p[:], [0, 'a', 'b', 'c', 'x', 'd', 3, 4])
        p[::-2] = [1, 2, 3, 4]
        self.assertEqual(p[:], [0, 4, 'b', 3, 'x', 2, 3, 1])
        del p[:]
        self.assertEqual(len(p), 0)

    def test_slice_of_other_than_ints_is_refused_and_nothing_lost(self):
        # Python's own server raises TypeError (slice indices must be
        # integers...); ours refuses the request's pickle as it refuses
        # every value it does not read (docs/wire.md): RemoteError. The
        # list and the connection are as they were.
        p = self.list(list(range(5)))
        for bad in (slice('a', 'b'), slice(1.5, None), slice(None, None, 0.5)):
            with self.assertRaises(managers.RemoteError) as cm:
                p[bad]
            self.assertIn('MP_EPROTO', str(cm.exception))
            with self.assertRaises(managers.RemoteError):
                p[bad] = [1]
            with self.assertRaises(managers.RemoteError):
                del p[bad]
        with self.assertRaises(TypeError) as cm:
            p[:2] = 5
        self.assertEqual(str(cm.exception), 'can only assign an iterable')
        with self.assertRaises(TypeError) as cm:
            p['x']
        self.assertEqual(str(cm.exception),
                         'list indices must be integers or slices, not str')
        self.assertEqual(p[:], [0, 1, 2, 3, 4])


class TestContainers(_TestContainers, unittest.TestCase):
    pass


class TestContainersUnix(_TestContainers, unittest.TestCase):
    FAMILY = 'AF_UNIX'


class TestListSlices(_TestListSlices, unittest.TestCase):
    pass


class TestListSlicesUnix(_TestListSlices, unittest.TestCase):
    FAMILY = 'AF_UNIX'


if __name__ == '__main__':
    unittest.main()
