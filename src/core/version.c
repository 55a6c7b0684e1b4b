/*
 * version - the version of the library loaded at run time, from the macros
 * it was built with (include/mpipc/version.h).
 */
#include <mpipc/version.h>

MP_API int mp_version(void)
{
    return MP_VERSION;
}

MP_API const char *mp_version_string(void)
{
    return MP_VERSION_STRING;
}
