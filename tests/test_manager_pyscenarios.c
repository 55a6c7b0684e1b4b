/* manager_pyscenarios: CPython's own manager test scenarios, the scripts
 * of tests/py (its _TestContainers, _TestManagerRestart, _TestRemoteManager,
 * what applies of _TestMyManager and _TestSharedMemory), run by unittest
 * under every interpreter tu_pythons finds against our server, the program
 * mgr_pyserve, which the scripts start and stop. */
#include "testutil.h"

#define PY_TIMEOUT 300.0

static const char py_runner[] =
    "import os, sys, unittest\n"
    "os.environ['MPIPC_PYSERVE'] = sys.argv[1]\n"
    "sys.path.insert(0, sys.argv[2])\n"
    "suite = unittest.defaultTestLoader.discover(sys.argv[2], pattern=sys.argv[3])\n"
    "r = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)\n"
    "sys.exit(0 if r.wasSuccessful() and r.testsRun > 0 else 1)\n";

static void pyscen_run(const char *pattern)
{
    const char *py;
    for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++) {
        const char *args[] = {MGR_PYSERVE, MGR_PYTESTS, pattern, NULL};
        pid_t pid = tu_spawn_python_as(py, py_runner, args, NULL, 0);
        assert_true(pid > 0);
        assert_int_equal(tu_wait_child(pid, PY_TIMEOUT), 0);
    }
}

/* _TestContainers: list, dict, Namespace and Queue proxies, nested ones. */
static void test_containers(void **state)
{
    (void)state;
    pyscen_run("test_containers.py");
}

/* _TestRemoteManager and _TestManagerRestart, ported to pickle and a
 * queue shared by Token: a forked process's put reaches the other client, a
 * function is refused and the queue goes on, a new server listens at once on
 * the old address; an xmlrpclib client fails at once, without a hang. */
static void test_remote_manager_and_restart(void **state)
{
    (void)state;
    pyscen_run("test_remote_manager.py");
}

/* What applies of _TestMyManager: a BaseManager subclass of the client's
 * own on our typeids - exposure, exceptions, RemoteError, its own iterator
 * proxy class - and an unknown typeid. */
static void test_mymanager(void **state)
{
    (void)state;
    pyscen_run("test_mymanager.py");
}

/* _TestSharedMemory's manager parts: SharedMemoryManager's server calls are
 * not ours, so its client fails at once with RemoteError, unlinks the
 * blocks it made, and the server goes on. */
static void test_shared_memory_manager(void **state)
{
    (void)state;
    pyscen_run("test_shared_memory_manager.py");
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_containers),
        TU_TEST(test_remote_manager_and_restart),
        TU_TEST(test_mymanager),
        TU_TEST(test_shared_memory_manager),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
