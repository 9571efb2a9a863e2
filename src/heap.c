/*
 * The shared arena: small shared objects (locks, semaphores, values, queue
 * headers) live in memfd segments mapped MAP_SHARED, so ten thousand locks
 * cost a few descriptors and nothing appears in /dev/shm.
 *
 * A process allocates only from segments it created itself (a forked child
 * inherits its parent's segments mapped, but allocates from new ones of its
 * own): the allocator's state is private to the creator and needs no
 * cross-process locking.  Blocks come in power-of-two classes from 64 bytes
 * to 64 KiB; anything larger gets a segment of its own, unmapped when its
 * last local handle goes.
 *
 * A block travels as (segment descriptor, offset, size).  The receiver
 * recognises a segment it already has by the memfd's inode and maps each
 * segment once.  Each process counts its handles per segment and unmaps
 * (and closes) a segment when its last handle here is freed, so a program
 * that frees what it made holds no descriptor for it.
 *
 * Every process a block was sent to can write all of its segment, so the
 * allocator keeps nothing there: its free lists are arrays of this
 * process's own, and a received (offset, size) must lie inside the
 * segment as mapped here, on a block boundary.  Segments are sealed at
 * their size, so no process can cut one short under the others' mappings.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG_SIZE ((size_t)1 << 20)
#define MIN_SHIFT 6                     /* 64-byte blocks: cache-line aligned */
#define MAX_SHIFT 16                    /* 64 KiB; larger: a dedicated segment */
#define NCLASS (MAX_SHIFT - MIN_SHIFT + 1)

struct mp__seg {
    struct mp__seg *next;
    dev_t dev;
    ino_t ino;
    int fd;
    char *base;
    size_t size;
    pid_t owner;       /* the process that allocates from it */
    bool dedicated;    /* one large block */
    unsigned refs;     /* handles in this process on blocks of it */
    size_t bump;       /* owner only: first never-used byte */
};

/* Freed blocks of one class (owner only), in private memory: not linked
 * through the blocks, which other processes can write. */
typedef struct freelist {
    char **v;
    size_t n, cap;
} freelist;

static struct {
    pthread_mutex_t lock;
    mp__seg *segs;
    freelist free[NCLASS]; /* of this process's own segments */
    pid_t free_pid;        /* whose free lists these are */
} heap = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Empty the free lists (a forked child's are its parent's). */
static void free_lists_drop(void)
{
    for (int c = 0; c < NCLASS; c++) {
        free(heap.free[c].v);
        heap.free[c] = (freelist){0};
    }
}

/* Fork hook (process.c): the arena's lock is held across the fork.  In
 * the child the segments stay mapped (handles inherited by fork point into
 * them), and the free lists are kept as they were. */
static const mp__hooks heap_hooks = {
    .slot = MP__HOOK_HEAP,
    .held = &heap.lock,
};

static int seg_map(int fd, size_t size, bool dedicated, mp__seg **out)
{
    struct stat st;
    uint64_t fixed;
    int err = mp__sys_memfd_sized(fd, &fixed); /* its size stays what is mapped */
    if (err < 0)
        return err;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (size == 0)
        size = (size_t)st.st_size;
    if (size == 0 || (off_t)size > st.st_size)
        return MP_EBADMSG;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    mp__seg *s = calloc(1, sizeof *s);
    if (s == NULL) {
        munmap(p, size);
        return MP_ENOMEM;
    }
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->fd = fd;
    s->base = p;
    s->size = size;
    s->dedicated = dedicated;
    *out = s;
    return 0;
}

static int seg_create(size_t size, bool dedicated, mp__seg **out)
{
    int fd = mp__sys_memfd(dedicated ? "mp-block" : "mp-arena");
    if (fd < 0)
        return fd;
    int err = mp__sys_memfd_size(fd, size);
    if (err == 0)
        err = seg_map(fd, size, dedicated, out);
    if (err < 0) {
        mp__sys_close(fd);
        return err;
    }
    (*out)->owner = mp__me.pid;
    return 0;
}

static void seg_link(mp__seg *s) /* under heap.lock */
{
    s->next = heap.segs;
    heap.segs = s;
}

static void seg_destroy(mp__seg *s) /* under heap.lock */
{
    for (mp__seg **pp = &heap.segs; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    munmap(s->base, s->size);
    mp__sys_close(s->fd);
    free(s);
}

static int size_class(size_t size)
{
    int c = 0;
    while (((size_t)1 << (MIN_SHIFT + c)) < size)
        c++;
    return c;
}

int mp__shm_alloc(size_t size, mp__shref *out)
{
    mp__init();
    mp__hooks_add(&heap_hooks); /* before the lock is first taken */
    memset(out, 0, sizeof *out);
    if (size == 0)
        return MP_EINVAL;
    pid_t me = mp__me.pid;
    int err = 0;
    pthread_mutex_lock(&heap.lock);
    if (heap.free_pid != me) { /* a forked child: the lists are the parent's */
        free_lists_drop();
        heap.free_pid = me;
    }
    if (size > ((size_t)1 << MAX_SHIFT)) {
        size_t pg = (size_t)sysconf(_SC_PAGESIZE);
        mp__seg *s;
        err = seg_create((size + pg - 1) / pg * pg, true, &s);
        if (err == 0) {
            s->refs = 1;
            seg_link(s);
            out->seg = s;
            out->p = s->base;
        }
        goto done;
    }
    int c = size_class(size);
    size_t bsize = (size_t)1 << (MIN_SHIFT + c);
    if (heap.free[c].n > 0) {
        char *b = heap.free[c].v[--heap.free[c].n];
        memset(b, 0, bsize);
        out->p = b;
        for (mp__seg *s = heap.segs; s; s = s->next)
            if (out->p >= s->base && out->p < s->base + s->size)
                out->seg = s;
        goto done;
    }
    mp__seg *s = NULL;
    for (mp__seg *t = heap.segs; t; t = t->next)
        if (!t->dedicated && t->owner == me && t->size - t->bump >= bsize) {
            s = t;
            break;
        }
    if (s == NULL) {
        err = seg_create(SEG_SIZE, false, &s);
        if (err < 0)
            goto done;
        seg_link(s);
    }
    out->seg = s;
    out->p = s->base + s->bump; /* fresh pages of a memfd read as zero */
    s->bump += bsize;
done:
    if (err == 0) {
        out->size = size;
        out->creator = me;
        if (!out->seg->dedicated)
            out->seg->refs++;
    }
    pthread_mutex_unlock(&heap.lock);
    return err;
}

/* Forget free blocks inside @s (it is going away; under heap.lock). */
static void purge_free(mp__seg *s)
{
    for (int c = 0; c < NCLASS; c++) {
        freelist *l = &heap.free[c];
        size_t k = 0;
        for (size_t i = 0; i < l->n; i++)
            if (l->v[i] < s->base || l->v[i] >= s->base + s->size)
                l->v[k++] = l->v[i];
        l->n = k;
    }
}

/* Keep @b for reuse (under heap.lock); without memory for the list it
 * is not reused, and goes with its segment. */
static void free_push(int c, char *b)
{
    freelist *l = &heap.free[c];
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, cap * sizeof *v);
        if (v == NULL)
            return;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = b;
}

void mp__shm_free(mp__shref *ref)
{
    if (ref == NULL || ref->seg == NULL)
        return;
    mp__seg *s = ref->seg;
    pthread_mutex_lock(&heap.lock);
    bool mine = s->owner == mp__me.pid && heap.free_pid == mp__me.pid;
    if (!s->dedicated && ref->creator == mp__me.pid && mine)
        free_push(size_class(ref->size), ref->p);
    if (s->refs > 0 && --s->refs == 0) {
        if (mine && !s->dedicated)
            purge_free(s);
        seg_destroy(s);
    }
    pthread_mutex_unlock(&heap.lock);
    memset(ref, 0, sizeof *ref);
}

int mp__shm_ref_dup(const mp__shref *src, mp__shref *out)
{
    *out = *src;
    out->creator = 0; /* a second handle never frees the block */
    if (src->seg) {
        pthread_mutex_lock(&heap.lock);
        src->seg->refs++;
        pthread_mutex_unlock(&heap.lock);
    }
    return 0;
}

int mp__shm_reduce(const mp__shref *ref, mp_buf *out, mp__fdvec *fds)
{
    int k = mp__fdvec_add(fds, ref->seg->fd);
    if (k < 0)
        return k;
    int err = mp__put_u32(out, (uint32_t)k);
    if (err == 0)
        err = mp__put_u64(out, (uint64_t)(ref->p - ref->seg->base));
    if (err == 0)
        err = mp__put_u64(out, ref->size);
    if (err == 0)
        err = mp__put_u8(out, ref->seg->dedicated);
    return err;
}

int mp__shm_rebuild(mp__reader *r, int *fds, size_t nfds, mp__shref *out)
{
    memset(out, 0, sizeof *out);
    uint32_t k = mp__get_u32(r);
    uint64_t off = mp__get_u64(r), size = mp__get_u64(r);
    uint8_t dedicated = mp__get_u8(r);
    /* blocks start on 64-byte boundaries (a dedicated one at 0) */
    if (r->err || k >= nfds || fds[k] < 0 || size == 0 || dedicated > 1 ||
        off % ((uint64_t)1 << MIN_SHIFT) != 0 || (dedicated && off != 0))
        return MP_EBADMSG;
    struct stat st;
    if (fstat(fds[k], &st) < 0)
        return -errno;
    if (off > (uint64_t)st.st_size || size > (uint64_t)st.st_size - off)
        return MP_EBADMSG;
    int err = 0;
    mp__hooks_add(&heap_hooks); /* a block this process did not make */
    pthread_mutex_lock(&heap.lock);
    mp__seg *s = NULL;
    for (mp__seg *t = heap.segs; t; t = t->next)
        if (t->dev == st.st_dev && t->ino == st.st_ino) {
            s = t;
            break;
        }
    if (s == NULL) {
        err = seg_map(fds[k], 0, dedicated, &s);
        if (err == 0) {
            fds[k] = -1; /* the segment keeps it */
            seg_link(s);
        }
    }
    if (err == 0) {
        if (off + size > s->size) {
            err = MP_EBADMSG;
        } else {
            s->refs++;
            out->seg = s;
            out->p = s->base + off;
            out->size = (size_t)size;
        }
    }
    pthread_mutex_unlock(&heap.lock);
    return err;
}

int mp__handle_reduce(const mp__handle *h, mp_buf *out, mp__fdvec *fds, mp__channel ch)
{
    int err = mp__px_reduce_either(h->px, out, ch);
    return err == 0 && h->px == NULL ? mp__shm_reduce(&h->ref, out, fds) : err;
}

int mp__handle_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, bool served,
                       size_t need, mp__handle *h)
{
    int err = mp__px_rebuild_either(r, ch, served, &h->px);
    if (err < 0 || h->px)
        return err;
    err = mp__shm_rebuild(r, fds, nfds, &h->ref);
    if (err == 0 && h->ref.size < need) {
        mp__shm_free(&h->ref);
        err = MP_EBADMSG;
    }
    return err;
}

int mp__handle_dup(const mp__handle *src, mp__handle *out)
{
    memset(out, 0, sizeof *out);
    if (src->px)
        return mp__px_dup(src->px, &out->px);
    return mp__shm_ref_dup(&src->ref, &out->ref);
}

void mp__handle_fini(mp__handle *h)
{
    mp__px_free(h->px);
    h->px = NULL;
    mp__shm_free(&h->ref);
}
