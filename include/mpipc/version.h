/*
 * libmpipc - version macros.
 *
 * The build reads MP_VERSION_MAJOR/MINOR/PATCH from this file, so it is the one
 * place the version is written. The shared library's SONAME carries the major
 * version: libmpipc.so.MAJOR.
 */
#ifndef MPIPC_VERSION_H
#define MPIPC_VERSION_H

#define MP_VERSION_MAJOR 0
#define MP_VERSION_MINOR 1
#define MP_VERSION_PATCH 0

/* "MAJOR.MINOR.PATCH" as a string literal. */
#define MP_VERSION_STRING "0.1.0"

/* One integer for compile-time comparisons: MP_VERSION >= MP_MAKE_VERSION(0, 1, 0). */
#define MP_MAKE_VERSION(major, minor, patch) ((major) * 10000 + (minor) * 100 + (patch))
#define MP_VERSION MP_MAKE_VERSION(MP_VERSION_MAJOR, MP_VERSION_MINOR, MP_VERSION_PATCH)

#endif /* MPIPC_VERSION_H */
