"""What applies of CPython's _TestMyManager (Lib/test/
_test_multiprocessing.py, 3.11) against our server (tests/mgr_pyserve).

Not applicable, with the reason:
  - MyManager.register('Foo', callable=FooBar) / 'Bar' / 'baz': the types
    are Python classes and a generator, run inside the server process; our
    server hosts only its own (SyncManager's) types and runs no Python;
  - test_mymanager, test_mymanager_context, test_mymanager_context_prestarted:
    manager.start() and the with-block fork a Python server process and
    check its exit code; a client connected to our server has no
    shutdown() (as with any connected BaseManager).
Ported: common()'s assertions about exposure, on a BaseManager subclass of
the client's own registering typeids our server serves: hasattr shows the
exposed methods only, methods run, a method's exception reaches the
client as itself, _callmethod of a name not exposed gives RemoteError,
and an iterator proxy of the client's own class (CPython's IteratorProxy)
drains a server-side iterator.
"""
import unittest
from multiprocessing.managers import (AutoProxy, BaseManager, BaseProxy,
                                      DictProxy, RemoteError)

from mpipc_server import OurServer


# CPython's IteratorProxy, unchanged
class IteratorProxy(BaseProxy):
    _exposed_ = ('__next__',)
    def __iter__(self):
        return self
    def __next__(self):
        return self._callmethod('__next__')


class MyDictProxy(DictProxy):
    """dict's proxy, whose __iter__ gives CPython's test IteratorProxy."""
    _method_to_typeid_ = {'__iter__': 'Iterator'}


class MyManager(BaseManager):
    pass

MyManager.register('list', proxytype=AutoProxy)       # like 'Foo'
MyManager.register('dict', proxytype=MyDictProxy)     # like 'baz'
MyManager.register('Iterator', proxytype=IteratorProxy, create_method=False)
MyManager.register('Unknown')                         # served by nobody


class TestMyManager(unittest.TestCase):

    def setUp(self):
        self.server = OurServer()
        self.addCleanup(lambda: self.assertEqual(self.server.shutdown(), 0))
        self.manager = self.server.manager(MyManager)

    def test_common(self):
        manager = self.manager
        foo = manager.list([3, 1, 2])
        baz = manager.dict(dict((i * i, i) for i in range(10)))

        foo_methods = [name for name in ('append', 'remove', '_h', 'f')
                       if hasattr(foo, name)]
        self.assertEqual(foo_methods, ['append', 'remove'])

        foo.append(4)
        self.assertEqual(foo.__len__(), 4)
        self.assertEqual(foo._callmethod('__len__'), 4)
        self.assertRaises(ValueError, foo.remove, 99)
        self.assertRaises(RemoteError, foo._callmethod, '_h')

        self.assertEqual(list(iter(baz)), [i * i for i in range(10)])
        self.assertIsInstance(iter(baz), IteratorProxy)

    def test_unknown_typeid(self):
        # CPython's server: KeyError in create, sent as a traceback
        self.assertRaises(RemoteError, self.manager.Unknown)
        # the connection's manager still works
        self.assertEqual(self.manager.list([1])._callmethod('__len__'), 1)


if __name__ == '__main__':
    unittest.main()
