/* manager_pyscenarios: CPython's own manager test scenarios, the scripts
 * of tests/py (CPython's _TestContainers, _TestManagerRestart,
 * _TestRemoteManager and what applies of _TestMyManager), run with
 * `python -m unittest` under every interpreter tu_pythons finds, against
 * our server, the program mgr_pyserve, which the scripts start and stop. */
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

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_containers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
