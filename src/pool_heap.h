/*
 * The pool heap's allocator (pool_heap.c), the parent's only: where each
 * job's memory and each shared buffer goes in the heap (pool_layout.h).
 * Job regions go up from the end of the header (a bump pointer that starts
 * over once every region is freed); shared buffers and maps' status arrays
 * go down from the top.  The caller holds the pool's lock around every
 * call; the allocator takes no lock of its own.
 */
#ifndef MP_POOL_HEAP_H
#define MP_POOL_HEAP_H

#include "pool_layout.h"

typedef struct mp__pool_ubuf mp__pool_ubuf;

typedef struct mp__pool_heap {
    int fd;                        /* the heap's memfd (pages are punched out of it) */
    uint64_t bump;                 /* job regions up from here */
    uint64_t top;                  /* shared buffers down from here */
    uint64_t dirty_end;            /* job memory not freed below this (region_free) */
    int64_t freed_ns;              /* when job memory was last freed */
    mp__pool_ubuf *ubufs;          /* what top_alloc gave */
    size_t live_regions;
} mp__pool_heap;

/* An empty heap on @fd (-1: not yet made). */
void mp__pool_heap_init(mp__pool_heap *hp, int fd);
/* Forget every buffer (the heap's pages go with its file). */
void mp__pool_heap_fini(mp__pool_heap *hp);

/* A job region of @size bytes (rounded up to pages): its offset in *@off.
 * 0, MP_ENOMEM. */
int mp__pool_region_alloc(mp__pool_heap *hp, uint64_t size, uint64_t *off);
/* Give back a region.  True when it was the last one and job memory is
 * kept for reuse: mp__pool_trim_idle has work once the pool is idle, so a
 * pool thread asleep with no timer must be woken to set one. */
bool mp__pool_region_free(mp__pool_heap *hp, uint64_t off, uint64_t size);
/* Free kept job memory once the pool has been idle long enough; the ms to
 * wait before looking again, -1 none. */
int mp__pool_trim_idle(mp__pool_heap *hp);

/* Zeroed pages from the top: a @user buffer (mp_pool_shared_alloc), or a
 * map's status array; its offset and length.  0, MP_ENOMEM. */
int mp__pool_top_alloc(mp__pool_heap *hp, uint64_t size, bool user, uint64_t *off,
                       uint64_t *len);
/* Give back what top_alloc gave at @off for a @user buffer or not, its
 * pages at once; nothing when there is no such buffer. */
void mp__pool_top_free(mp__pool_heap *hp, uint64_t off, bool user);
/* Whether [off, off + len) lies in one user buffer. */
bool mp__pool_in_shared(const mp__pool_heap *hp, uint64_t off, uint64_t len);

#endif
