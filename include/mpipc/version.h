/*
 * libmpipc - version macros, and the calls that tell the version of the
 * library loaded at run time.
 *
 * The build reads MP_VERSION_MAJOR/MINOR/PATCH from this file, so it is the one
 * place the version is written. The shared library's SONAME carries the major
 * version: libmpipc.so.MAJOR.
 *
 * The macros give the version a program was compiled against; mp_version()
 * and mp_version_string() the version it runs with, which may be a later
 * minor or patch release of the same major version (as uv_version() and
 * sqlite3_libversion() do):
 *
 *     if (mp_version() < MP_MAKE_VERSION(1, 1, 0)) ...   // older library
 */
#ifndef MPIPC_VERSION_H
#define MPIPC_VERSION_H

#include <mpipc/common.h>

/* The version compiled against: major (breaking changes), minor (additions),
 * patch (fixes). mp_version() gives the library loaded at run time. */
#define MP_VERSION_MAJOR 1
#define MP_VERSION_MINOR 0
#define MP_VERSION_PATCH 0

/* "MAJOR.MINOR.PATCH" as a string literal. */
#define MP_VERSION_STRING "1.0.0"

/* One integer for compile-time comparisons: MP_VERSION >= MP_MAKE_VERSION(1, 0, 0). */
#define MP_MAKE_VERSION(major, minor, patch) ((major)*10000 + (minor)*100 + (patch))
#define MP_VERSION                           MP_MAKE_VERSION(MP_VERSION_MAJOR, MP_VERSION_MINOR, MP_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* mp_version - the loaded library's version as MP_VERSION encodes it:
 * MP_MAKE_VERSION(major, minor, patch). Never fails. */
MP_API int mp_version(void);

/* mp_version_string - the loaded library's version as "MAJOR.MINOR.PATCH".
 * Never fails. Ownership: static storage; never free it. */
MP_API const char *mp_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_VERSION_H */
