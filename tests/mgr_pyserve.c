/* mgr_pyserve: our manager server as a program, for the Python test scripts
 * of tests/py (CPython's own manager scenarios): `mgr_pyserve ADDRESS
 * KEYHEX` serves with mp_manager_serve, prints the bound address once it
 * listens, and exits 0 after a shutdown request (the code otherwise). */
#include <mpipc/error.h>
#include <mpipc/manager.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pyserve_ready(const char *address, void *arg)
{
    (void)arg;
    printf("%s\n", address);
    fflush(stdout);
}

static int pyserve_hex(const char *hex, unsigned char *out, size_t cap, size_t *len)
{
    size_t n = strlen(hex);
    if (n == 0 || n % 2 != 0 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    *len = n / 2;
    return 0;
}

int main(int argc, char **argv)
{
    unsigned char key[256];
    size_t keylen = 0;
    if (argc != 3 || pyserve_hex(argv[2], key, sizeof key, &keylen) < 0) {
        fprintf(stderr, "usage: mgr_pyserve ADDRESS KEYHEX\n");
        return 2;
    }
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.ready = pyserve_ready;
    int rc = mp_manager_serve(argv[1], key, keylen, &o);
    if (rc != 0)
        fprintf(stderr, "mgr_pyserve: %s (%s)\n", mp_strerror(rc), mp_errmsg(rc));
    return rc == 0 ? 0 : 1;
}
