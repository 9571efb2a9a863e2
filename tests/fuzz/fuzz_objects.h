/* Shared by the fuzz targets that check a decode loads no library. */
#ifndef MP_FUZZ_OBJECTS_H
#define MP_FUZZ_OBJECTS_H

#include <link.h>
#include <stddef.h>

static inline int fuzz_count_object(struct dl_phdr_info *info, size_t sz, void *n)
{
    (void)info;
    (void)sz;
    ++*(size_t *)n;
    return 0;
}

/* How many objects (the program and its shared libraries) are loaded: a
 * decoder that dlopen()s anything makes the number grow. */
static inline size_t loaded_objects(void)
{
    size_t n = 0;
    dl_iterate_phdr(fuzz_count_object, &n);
    return n;
}

#endif
