/*
 * The pool heap's allocator: job regions up from the bottom, shared
 * buffers and status arrays down from the top (pool_heap.h).  Freed job
 * memory is kept a while for the next job to reuse; a freed buffer's pages
 * go back at once.
 */
#include "pool_heap.h"

#include <fcntl.h>
#include <stdlib.h>

#define KEEP_RESIDENT ((uint64_t)64 << 20) /* job memory below this is reused, not freed */
#define RETAIN_MAX ((uint64_t)1 << 30)     /* job memory below this is freed once idle */
#define RETAIN_NS ((int64_t)2000000000)    /* that long idle */

/*
 * Buffers from mp_pool_shared_alloc are taken from the top of the heap,
 * down, so that job regions (from the bottom) still start over at the
 * bottom once they are all freed.
 */
struct mp__pool_ubuf {
    mp__pool_ubuf *next;
    uint64_t off, size;
    bool user;                     /* mp_pool_shared_alloc's (else a status array) */
};

void mp__pool_heap_init(mp__pool_heap *hp, int fd)
{
    *hp = (mp__pool_heap){
        .fd = fd,
        .bump = HDR_BYTES,
        .top = HEAP_SIZE,
        .dirty_end = KEEP_RESIDENT,
    };
}

void mp__pool_heap_fini(mp__pool_heap *hp)
{
    while (hp->ubufs) {
        mp__pool_ubuf *b = hp->ubufs;
        hp->ubufs = b->next;
        free(b);
    }
}

/* ---- job regions ------------------------------------------------------------ */

int mp__pool_region_alloc(mp__pool_heap *hp, uint64_t size, uint64_t *off)
{
    size = (size + 4095) & ~(uint64_t)4095;
    if (size == 0)
        size = 4096;
    if (hp->live_regions == 0)
        hp->bump = HDR_BYTES; /* everything freed: reuse the resident start */
    if (hp->bump + size > hp->top)
        return MP_ENOMEM;
    *off = hp->bump;
    hp->bump += size;
    hp->live_regions++;
    return 0;
}

bool mp__pool_region_free(mp__pool_heap *hp, uint64_t off, uint64_t size)
{
    size = (size + 4095) & ~(uint64_t)4095;
    /* Above KEEP_RESIDENT, job memory up to RETAIN_MAX stays a while: maps
     * of big private arrays one after the other reuse its pages instead of
     * faulting fresh ones in; the pool thread frees it once the pool has
     * been idle RETAIN_NS (trim_idle).  Beyond RETAIN_MAX it goes at once. */
    uint64_t end = off + size;
    if (end > RETAIN_MAX) {
        uint64_t from = off < RETAIN_MAX ? RETAIN_MAX : off;
        fallocate(hp->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from,
                  (off_t)(end - from));
        end = RETAIN_MAX;
    }
    if (end > hp->dirty_end)
        hp->dirty_end = end;
    hp->freed_ns = now_ns();
    hp->live_regions--;
    return hp->live_regions == 0 && hp->dirty_end > KEEP_RESIDENT;
}

int mp__pool_trim_idle(mp__pool_heap *hp)
{
    if (hp->dirty_end <= KEEP_RESIDENT || hp->live_regions > 0)
        return -1;
    int64_t left = hp->freed_ns + RETAIN_NS - now_ns();
    if (left > 0)
        return (int)(left / 1000000) + 1;
    fallocate(hp->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)KEEP_RESIDENT,
              (off_t)(hp->dirty_end - KEEP_RESIDENT));
    hp->dirty_end = KEEP_RESIDENT;
    return -1;
}

/* ---- shared buffers and status arrays: down from the top --------------------- */

/* A status array is written only where an item fails, so mostly never
 * touched: no pages at all. */
int mp__pool_top_alloc(mp__pool_heap *hp, uint64_t size, bool user, uint64_t *off,
                       uint64_t *len)
{
    uint64_t l = size ? (size + 4095) & ~(uint64_t)4095 : 4096;
    mp__pool_ubuf *b = calloc(1, sizeof *b);
    if (b == NULL)
        return MP_ENOMEM;
    /* fresh pages only: above job regions and job memory kept for reuse */
    if (l > hp->top || hp->top - l < hp->bump || hp->top - l < hp->dirty_end) {
        free(b);
        return MP_ENOMEM;
    }
    hp->top -= l;
    b->off = hp->top;
    b->size = l;
    b->user = user;
    b->next = hp->ubufs;
    hp->ubufs = b;
    *off = b->off;
    *len = l;
    return 0;
}

void mp__pool_top_free(mp__pool_heap *hp, uint64_t off, bool user)
{
    for (mp__pool_ubuf **pp = &hp->ubufs; *pp; pp = &(*pp)->next) {
        mp__pool_ubuf *b = *pp;
        if (b->off != off || b->user != user)
            continue;
        *pp = b->next;
        fallocate(hp->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)b->off,
                  (off_t)b->size);
        free(b);
        hp->top = HEAP_SIZE;
        for (mp__pool_ubuf *o = hp->ubufs; o; o = o->next)
            if (o->off < hp->top)
                hp->top = o->off;
        return;
    }
}

bool mp__pool_in_shared(const mp__pool_heap *hp, uint64_t off, uint64_t len)
{
    for (const mp__pool_ubuf *b = hp->ubufs; b; b = b->next)
        if (b->user && off >= b->off && len <= b->size && off - b->off <= b->size - len)
            return true;
    return false;
}
