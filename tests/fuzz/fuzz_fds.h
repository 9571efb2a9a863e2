/* Shared by the fuzz targets that check for leaked descriptors. */
#ifndef MP_FUZZ_FDS_H
#define MP_FUZZ_FDS_H

#include <dirent.h>

/* How many descriptors are open.  (The lowest free number would not do:
 * a leaked descriptor can sit above a hole that closes again.) */
static inline int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    if (d != NULL)
        closedir(d);
    return n;
}

#endif
