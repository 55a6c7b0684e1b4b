"""The Python side of manager_priority_queue.c: BaseManager.register on the
C server's "PriorityQueue" type; its MP_EMPTY arrives as queue.Empty."""
import queue
import sys
from multiprocessing.managers import BaseManager


class Manager(BaseManager):
    pass


Manager.register('PriorityQueue')

address = sys.argv[1]
if address.startswith('unix:'):
    address = address[5:]
else:
    host, port = address[4:].rsplit(':', 1)
    address = (host, int(port))
m = Manager(address=address, authkey=sys.argv[2].encode())
m.connect()
q = m.PriorityQueue()
for prio, job in [(3, 'tests'), (0, 'deploy'), (7, 'docs')]:
    q.put(prio, job)
print('python: %d queued' % q.len())
try:
    while True:
        print('python got %r' % q.get())
except queue.Empty:
    print('python: queue.Empty')
sys.stdout.flush()
