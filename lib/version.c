/*
 * version.c - the version of the library a program runs with.
 *
 * The NEA_VERSION_* macros say which header a program was compiled
 * against; these functions, compiled into the library, say which library
 * it runs with. The string is built from the same macros at compile time,
 * so the two can never disagree.
 */
#include "nea.h"

#define NEA__STR(x) #x
#define NEA__XSTR(x) NEA__STR(x)

unsigned nea_version(void)
{
    return NEA_VERSION_HEX;
}

const char *nea_version_string(void)
{
    return NEA__XSTR(NEA_VERSION_MAJOR) "." NEA__XSTR(NEA_VERSION_MINOR) "." NEA__XSTR(
        NEA_VERSION_PATCH);
}
