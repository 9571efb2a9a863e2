/*
 * Queue, JoinableQueue, SimpleQueue: messages in one memfd per queue.
 *
 * Layout of the file:
 *   [header: locks, commit words, two copies of each side's state]
 *   [ring:   RING_MAX bytes of space, of which the first ring_cap bytes are
 *            used and reused, for the common small messages]
 *   [log:    LOG_SIZE bytes of sparse space for what does not fit the ring;
 *            pages are freed (punched) as soon as they are consumed]
 * Both regions are circular over monotonic 64-bit positions.  The ring
 * starts at RING_MIN and doubles up to RING_MAX when messages had to spill
 * to the log (a backlog of big messages): its pages are then reused where
 * fresh log pages would fault in and be zeroed.  The capacity changes only
 * while the ring holds no record (positions map to other bytes after it),
 * by the producer before its commit, so every record is read with the
 * capacity it was written with; pages once used stay (RING_MAX at most).
 * A record is a 16-byte header {kind, length} and the payload padded to 8
 * bytes.  A producer whose message does not fit the ring writes a TO_LOG
 * record in the ring and continues in the log, and comes back (a TO_RING
 * record in the log) once the ring has drained: consumers follow the
 * records, so order is kept and an unbounded queue never blocks a producer.
 *
 * Producers are serialised by one robust mutex, consumers by another.  A
 * side's state (mode, ring and log positions, message count) changes only
 * by a commit: the new state is written into the spare of two copies and
 * one atomic change of the side's 32-bit sequence word publishes it.
 * Nothing a process writes before its commit is visible, so a process
 * killed at any instant inside put or get leaves either nothing or a whole
 * message; the next one to take the mutex gets EOWNERDEAD and carries on
 * from the last commit.  task_done is a third side of one count (the
 * calls made), serialised by a mutex of its own.
 *
 * The sequence words are also the futex words the other side sleeps on
 * (a consumer on the producers' word, a producer on the consumers', joiners
 * on task_done's).  A commit adds 2; bit 0 (SLEEPER) says that a process
 * sleeps on the word, set by that process just before it sleeps.  A commit
 * that finds it clear is one compare-and-swap, no system call; one that
 * finds it set is made by the kernel (FUTEX_WAKE_OP: add 1, which clears
 * the bit, and wake the word's sleepers) in one call.  So there is no
 * instant between a commit and its wake-up: a process killed anywhere in
 * put, get or task_done either made no commit or woke the sleepers, and no
 * sleeper is ever left asleep while what it waits for is there.  Only a
 * commit clears the bit (a sleeper that gives up leaves it: clearing it
 * would race with a commit that saw it), so one system call may follow a
 * sleep that timed out or a sleeper that was killed.
 *
 * Any process holding the descriptor can write anything into the file, so
 * nothing read from it is trusted with memory: the kind and maxsize fixed
 * at creation are kept in the handle; the ring's capacity is read once per
 * call and must be one of the sizes it can have (a power of two from
 * RING_MIN to RING_MAX, all inside the ring's mapping); the two sides'
 * states must agree (modes, counts, positions at most a region apart) and
 * a record must lie inside what its producer committed.  A queue that
 * breaks one of these gives MP_EBADMSG; one received from another process
 * is checked whole before it is used (queue_check).  The file is sealed at
 * its size, so no process can cut it short under the others' mappings.
 */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define QMAGIC 0x3151504dU /* "MPQ1" */
#define HDR_SIZE ((size_t)4096)
#define RING_MIN ((uint64_t)4 << 20)
#define RING_MAX ((uint64_t)16 << 20)
#define LOG_SIZE ((uint64_t)64 << 30)
#define REC_HDR ((uint64_t)16)
#define PUNCH_MIN ((uint64_t)64 << 10)

enum { REC_MSG = 1, REC_TO_LOG = 2, REC_TO_RING = 3 };
enum { KIND_QUEUE = 1, KIND_JOINABLE = 2, KIND_SIMPLE = 3 };
enum { IN_RING = 0, IN_LOG = 1 };

typedef struct side {
    _Atomic uint64_t mode, ring, log, count;
} side;

typedef struct state {
    uint64_t mode, ring, log, count;
} state;

/* Each side's words on cache lines of their own: a producer and a
 * consumer on two CPUs do not pull each other's lines back and forth. */
#define LINE _Alignas(64)
typedef struct qhdr {
    uint32_t magic, kind;
    uint64_t maxsize;
    LINE pthread_mutex_t put_lock;
    LINE _Atomic uint32_t pseq;                    /* producer commits; futex word */
    side pside[2];
    LINE pthread_mutex_t get_lock;
    LINE _Atomic uint32_t gseq;                    /* consumer commits; futex word */
    _Atomic uint64_t log_punched;                  /* log freed below this */
    LINE _Atomic uint64_t ring_cap;                /* see the top of the file */
    _Atomic uint32_t ring_grow;                    /* a message spilled to the log */
    LINE side gside[2];                            /* own line: written at every get */
    LINE pthread_mutex_t done_lock;                /* task_done */
    LINE _Atomic uint32_t dseq;                    /* task_done commits; futex word */
    side dside[2];                                 /* .count: task_done calls */
} qhdr;

_Static_assert(sizeof(qhdr) <= HDR_SIZE, "queue header fits its page");

/* Fault injection for the crash tests: called at points inside put, get
 * and task_done (never set in production; see internal.h). */
void (*mp__queue_fault_hook)(int point);
#define FAULT(n)                                                               \
    do {                                                                       \
        if (mp__queue_fault_hook)                                              \
            mp__queue_fault_hook(n);                                           \
    } while (0)

struct mp_queue {
    int fd;
    qhdr *h;
    uint64_t maxsize;    /* fixed at creation: these copies are the ones used */
    uint32_t kind;
    /* The other side's state as last read (under this side's mutex).  The
     * positions and counts only grow, so an old copy understates the
     * room and the messages there are: a side reads the other's state
     * (a cache line the other CPU keeps writing) only when its copy says
     * full or empty. */
    state gseen, pseen;
    char *ring;
    char *_Atomic log;   /* mapped on first use */
    bool closed;
    mp__proxy *px;       /* a manager's queue: every call goes there */
};

/* ---- side states ----------------------------------------------------------- */

/* Bit 0 of a sequence word: a process sleeps on it (see the top). */
#define SLEEPER 1u

/* Whether @a and @b name the same commit (a sleeper may have come). */
static bool same_commit(uint32_t a, uint32_t b)
{
    return ((a ^ b) & ~SLEEPER) == 0;
}

static void state_read(_Atomic uint32_t *seq, side *copies, state *out)
{
    for (;;) {
        uint32_t s = atomic_load_explicit(seq, memory_order_acquire);
        side *c = &copies[(s >> 1) & 1];
        out->mode = atomic_load_explicit(&c->mode, memory_order_relaxed);
        out->ring = atomic_load_explicit(&c->ring, memory_order_relaxed);
        out->log = atomic_load_explicit(&c->log, memory_order_relaxed);
        out->count = atomic_load_explicit(&c->count, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (same_commit(atomic_load_explicit(seq, memory_order_relaxed), s))
            return;
    }
}

/* The kernel adds 1 to *@seq (its SLEEPER bit set: the commit) and wakes
 * every process sleeping on it, in one call: no kill can come between the
 * two.  0, or -errno when it did neither. */
static int futex_add_wake(_Atomic uint32_t *seq)
{
    /* shared (not PRIVATE): the word is in a file other processes map */
    long r = syscall(SYS_futex, (uint32_t *)seq, FUTEX_WAKE_OP, INT_MAX, (void *)0,
                     (uint32_t *)seq, FUTEX_OP(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_EQ, 0));
    return r < 0 ? -errno : 0;
}

/* Publish @v: the spare copy, then the commit of the sequence word (the
 * caller holds the side's mutex, so it is the only one to commit; the
 * other side may only set SLEEPER meanwhile).  @point: the fault point
 * just before a commit that wakes sleepers (0: none). */
static void state_commit(_Atomic uint32_t *seq, side *copies, const state *v, int point)
{
    uint32_t s = atomic_load_explicit(seq, memory_order_relaxed);
    side *c = &copies[((s >> 1) + 1) & 1];
    atomic_store_explicit(&c->mode, v->mode, memory_order_relaxed);
    atomic_store_explicit(&c->ring, v->ring, memory_order_relaxed);
    atomic_store_explicit(&c->log, v->log, memory_order_relaxed);
    atomic_store_explicit(&c->count, v->count, memory_order_relaxed);
    /* nobody asleep: one compare-and-swap (seq_cst, as the store it
     * replaces), failing only when SLEEPER is set, or set meanwhile */
    s &= ~SLEEPER;
    while (!(s & SLEEPER))
        if (atomic_compare_exchange_strong(seq, &s, s + 2))
            return;
    if (point != 0)
        FAULT(point);
    /* the copy before the word, as the compare-and-swap orders it */
    atomic_thread_fence(memory_order_seq_cst);
    if (futex_add_wake(seq) < 0) {
        /* no FUTEX_WAKE_OP here (a seccomp filter): the commit, then the
         * wake-up, as two steps */
        atomic_fetch_add(seq, 1);
        mp__futex_wake(seq, INT_MAX);
    }
}

/* ---- regions ------------------------------------------------------------------ */

static uint64_t pad8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

/* Copy in or out of a circular region of @cap bytes at position @pos: a
 * power of two no larger than the region's mapping (ring_cap, LOG_SIZE),
 * so that no position reaches outside it. */
static void region_copy(char *base, uint64_t cap, uint64_t pos, void *p, uint64_t n, bool in)
{
    while (n > 0) {
        uint64_t off = pos & (cap - 1), k = cap - off < n ? cap - off : n;
        if (in)
            memcpy(base + off, p, k);
        else
            memcpy(p, base + off, k);
        pos += k;
        p = (char *)p + k;
        n -= k;
    }
}

static char *log_base(mp_queue *q)
{
    char *l = atomic_load(&q->log);
    if (l != NULL)
        return l;
    void *m = mmap(NULL, LOG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, q->fd,
                   (off_t)(HDR_SIZE + RING_MAX));
    if (m == MAP_FAILED)
        return NULL;
    char *expect = NULL;
    if (!atomic_compare_exchange_strong(&q->log, &expect, (char *)m)) {
        munmap(m, LOG_SIZE); /* another thread was first */
        return expect;
    }
    return m;
}

/* The ring's capacity, or 0 if the header holds none it can have.  Read
 * once per put or get, after the commit that published the records read
 * with it; the call uses this copy throughout. */
static uint64_t ring_cap(const qhdr *h)
{
    uint64_t cap = atomic_load_explicit(&h->ring_cap, memory_order_relaxed);
    return cap >= RING_MIN && cap <= RING_MAX && (cap & (cap - 1)) == 0 ? cap : 0;
}

static int rec_write(mp_queue *q, int where, uint64_t cap, uint64_t pos, uint32_t kind,
                     const void *msg, uint64_t len)
{
    char *base = where == IN_RING ? q->ring : log_base(q);
    if (where != IN_RING)
        cap = LOG_SIZE;
    if (base == NULL)
        return MP_ENOMEM;
    uint64_t hdr[2] = {kind, len};
    region_copy(base, cap, pos, hdr, REC_HDR, true);
    if (len > 0)
        region_copy(base, cap, pos + REC_HDR, (void *)msg, len, true);
    return 0;
}

static int rec_header(mp_queue *q, int where, uint64_t cap, uint64_t pos, uint64_t *kind,
                      uint64_t *len)
{
    char *base = where == IN_RING ? q->ring : log_base(q);
    if (where != IN_RING)
        cap = LOG_SIZE;
    if (base == NULL)
        return MP_ENOMEM;
    uint64_t hdr[2];
    region_copy(base, cap, pos, hdr, REC_HDR, false);
    *kind = hdr[0];
    *len = hdr[1];
    return 0;
}

/* Free the log's consumed pages below @upto (whole pages, in batches). */
static void log_punch(mp_queue *q, uint64_t upto, bool drained)
{
    qhdr *h = q->h;
    uint64_t from = atomic_load(&h->log_punched);
    uint64_t to = upto & ~(uint64_t)4095;
    if (to <= from || (!drained && to - from < PUNCH_MIN))
        return;
    if (to - from > LOG_SIZE)
        from = to - LOG_SIZE; /* the whole log at most (a word from elsewhere) */
    for (uint64_t pos = from; pos < to;) {
        uint64_t off = pos % LOG_SIZE, k = LOG_SIZE - off < to - pos ? LOG_SIZE - off : to - pos;
        fallocate(q->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)(HDR_SIZE + RING_MAX + off), (off_t)k);
        pos += k;
    }
    atomic_store(&h->log_punched, to);
}

/* ---- create, map, free ------------------------------------------------------- */

/* Map @fd: a queue's file, of its size for good (the mappings never reach
 * past its end, whatever another process does with the file). */
static int queue_map(int fd, mp_queue **out)
{
    uint64_t size;
    int err = mp__sys_memfd_sized(fd, &size);
    if (err < 0)
        return err;
    if (size != HDR_SIZE + RING_MAX + LOG_SIZE)
        return MP_EBADMSG;
    void *m = mmap(NULL, HDR_SIZE + RING_MAX, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                   fd, 0);
    if (m == MAP_FAILED)
        return -errno;
    mp_queue *q = calloc(1, sizeof *q);
    if (q == NULL) {
        munmap(m, HDR_SIZE + RING_MAX);
        return MP_ENOMEM;
    }
    q->fd = fd;
    q->h = m;
    q->ring = (char *)m + HDR_SIZE;
    *out = q;
    return 0;
}

static void queue_unmap(mp_queue *q)
{
    if (q->px) {
        mp__px_free(q->px);
        free(q);
        return;
    }
    char *l = atomic_load(&q->log);
    if (l)
        munmap(l, LOG_SIZE);
    munmap(q->h, HDR_SIZE + RING_MAX);
    mp__sys_close(q->fd);
    free(q);
}

static int queue_create(mp_queue **out, uint32_t kind, size_t maxsize)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    mp__init();
    int fd = mp__sys_memfd("mp-queue");
    if (fd < 0)
        return fd;
    int err = mp__sys_memfd_size(fd, HDR_SIZE + RING_MAX + LOG_SIZE);
    mp_queue *q = NULL;
    if (err == 0)
        err = queue_map(fd, &q);
    if (err < 0) {
        mp__sys_close(fd);
        return err;
    }
    qhdr *h = q->h;
    h->kind = q->kind = kind;
    h->maxsize = q->maxsize = maxsize;
    h->ring_cap = RING_MIN;
    err = mp__robust_init(&h->put_lock, false);
    if (err == 0)
        err = mp__robust_init(&h->get_lock, false);
    if (err == 0)
        err = mp__robust_init(&h->done_lock, false);
    if (err < 0) {
        queue_unmap(q);
        return err;
    }
    h->magic = QMAGIC;
    *out = q;
    return 0;
}

int mp_queue_new(mp_queue **out, size_t maxsize)
{
    return queue_create(out, KIND_QUEUE, maxsize);
}

int mp_joinable_queue_new(mp_queue **out, size_t maxsize)
{
    return queue_create(out, KIND_JOINABLE, maxsize);
}

int mp_simple_queue_new(mp_queue **out)
{
    return queue_create(out, KIND_SIMPLE, 0);
}

int mp_queue_close(mp_queue *q)
{
    if (q == NULL)
        return MP_EINVAL;
    q->closed = true;
    return 0;
}

void mp_queue_free(mp_queue *q)
{
    if (q)
        queue_unmap(q);
}

/* ---- put and get ------------------------------------------------------------- */

/* Take a side's mutex by @d.  Its state is consistent whatever a dead
 * holder was doing: only commits publish. */
static int side_lock(pthread_mutex_t *m, const mp__deadline *d)
{
    int r = mp__robust_lock(m, d);
    if (r == EOWNERDEAD) {
        mp__log(MP_LOG_INFO, "queue: recovered from a process that died inside it");
        r = 0;
    }
    return r;
}

/* Sleep until the commit after @s (@seq as read before the state that
 * made the caller wait) or until @d.  SLEEPER is set first, so that the
 * commit wakes the caller in the same call that makes it (see the top); if
 * a commit came since @s, the word has changed and nobody sleeps.  0, or
 * MP_ETIMEDOUT: the caller re-reads the state either way. */
static int side_sleep(_Atomic uint32_t *seq, uint32_t s, const mp__deadline *d)
{
    if (!(s & SLEEPER) && !atomic_compare_exchange_strong(seq, &s, s | SLEEPER))
        return 0;
    return mp__futex_wait(seq, s | SLEEPER, d);
}

/* Messages up to half the ring (and a page) go in the ring; bigger ones
 * to the log. */
static bool fits_ring(uint64_t len, uint64_t cap)
{
    return len <= cap / 2 + 4096;
}

/* Whether the consumers' state as last seen (@g) is not enough for this
 * put: the queue looks full, or the message would not go where it goes
 * when the ring has room.  Then the put reads their state afresh. */
static bool room_short(const mp_queue *q, const state *p, const state *g, uint64_t rec,
                       uint64_t len, uint64_t cap)
{
    const qhdr *h = q->h;
    if (q->maxsize != 0 && p->count - g->count >= q->maxsize)
        return true;
    if (p->ring - g->ring > cap || p->log - g->log > LOG_SIZE ||
        atomic_load_explicit(&h->ring_grow, memory_order_relaxed))
        return true; /* a copy from long ago; a growth to make */
    bool small = fits_ring(len, cap);
    return (small && cap - (p->ring - g->ring) < rec + REC_HDR) ||
           (!small && p->log + rec + 2 * REC_HDR - g->log > LOG_SIZE);
}

/* Whether the producers' state @p and the consumers' @g, read at one
 * instant (@g not after @p), cannot be: each side has a mode, the
 * consumers are not ahead, and what lies between them fits the queue
 * (@maxsize messages if not 0, @cap bytes of ring, LOG_SIZE of log). */
static bool sides_bad(const state *p, const state *g, uint64_t cap, uint64_t maxsize)
{
    return p->mode > IN_LOG || g->mode > IN_LOG || (int64_t)(p->count - g->count) < 0 ||
           (maxsize != 0 && p->count - g->count > maxsize) || p->ring - g->ring > cap ||
           p->log - g->log > LOG_SIZE;
}

int mp_queue_put(mp_queue *q, const void *msg, size_t len, double timeout)
{
    if (q == NULL || (msg == NULL && len > 0))
        return MP_EINVAL;
    if (q->closed)
        return MP_ECLOSED;
    if (q->px)
        return mp__px_bytes(q->px, MP__OP_Q_PUT, msg, len, timeout, NULL, NULL, 0, NULL);
    qhdr *h = q->h;
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    int r = side_lock(&h->put_lock, &d);
    if (r != 0)
        return r == ETIMEDOUT ? MP_EFULL : -r;
    FAULT(1);
    state p, g = q->gseen;
    state_read(&h->pseq, h->pside, &p);
    /* only this side changes the capacity: it stays this until the commit */
    uint64_t rec = REC_HDR + pad8(len), cap = ring_cap(h);
    if (cap == 0 || p.mode > IN_LOG) {
        pthread_mutex_unlock(&h->put_lock);
        return MP_EBADMSG;
    }
    /* @g as last seen passed sides_bad when it was read afresh */
    for (bool fresh = false; !fresh && room_short(q, &p, &g, rec, len, cap);) {
        uint32_t s = atomic_load(&h->gseq);
        state_read(&h->gseq, h->gside, &g);
        if (sides_bad(&p, &g, cap, q->maxsize)) {
            pthread_mutex_unlock(&h->put_lock);
            return MP_EBADMSG;
        }
        if (q->maxsize == 0 || p.count - g.count < q->maxsize) {
            fresh = true;
            break;
        }
        if (mp__deadline_expired(&d) ||
            (side_sleep(&h->gseq, s, &d) == MP_ETIMEDOUT &&
             mp__deadline_expired(&d))) {
            state_read(&h->gseq, h->gside, &g);
            bool bad = sides_bad(&p, &g, cap, q->maxsize);
            if (!bad && p.count - g.count < q->maxsize)
                break;
            pthread_mutex_unlock(&h->put_lock);
            return bad ? MP_EBADMSG : MP_EFULL;
        }
    }
    q->gseen = g;
    if (atomic_load_explicit(&h->ring_grow, memory_order_relaxed) && p.ring == g.ring) {
        /* no record in the ring: it may change size (see the top) */
        cap = cap * 2 > RING_MAX ? RING_MAX : cap * 2;
        atomic_store_explicit(&h->ring_cap, cap, memory_order_relaxed);
        atomic_store_explicit(&h->ring_grow, 0, memory_order_relaxed);
    }
    bool small = fits_ring(len, cap);
    uint64_t ring_free = cap - (p.ring - g.ring);
    int err = 0;
    if (p.mode == IN_LOG && small && ring_free >= rec + REC_HDR) {
        /* back to the ring as soon as it has room: the consumer reaches
         * the new records after this switch record in the log */
        err = rec_write(q, IN_LOG, cap, p.log, REC_TO_RING, NULL, 0);
        p.log += REC_HDR;
        p.mode = IN_RING;
    }
    FAULT(2);
    if (err == 0 && p.mode == IN_RING) {
        if (small && ring_free >= rec + REC_HDR) {
            rec_write(q, IN_RING, cap, p.ring, REC_MSG, msg, len);
            p.ring += rec;
        } else {
            rec_write(q, IN_RING, cap, p.ring, REC_TO_LOG, NULL, 0);
            p.ring += REC_HDR;
            p.mode = IN_LOG;
            if (cap < RING_MAX && len <= RING_MAX / 2)
                atomic_store_explicit(&h->ring_grow, 1, memory_order_relaxed);
        }
    }
    if (err == 0 && p.mode == IN_LOG) {
        if (p.log + rec + REC_HDR - g.log > LOG_SIZE)
            err = MP_ENOMEM; /* 64 GiB pending */
        else
            err = rec_write(q, IN_LOG, cap, p.log, REC_MSG, msg, len);
        p.log += rec;
    }
    FAULT(3);
    if (err == 0) {
        p.count++;
        state_commit(&h->pseq, h->pside, &p, 5); /* and the wake-up of a consumer */
        FAULT(4);
    }
    pthread_mutex_unlock(&h->put_lock);
    if (err == 0)
        FAULT(6);
    return err;
}

/* Get into @out (grown) or @buf (@cap bytes). */
static int get(mp_queue *q, mp_buf *out, void *buf, size_t cap, size_t *len, double timeout)
{
    if (q == NULL)
        return MP_EINVAL;
    if (q->closed)
        return MP_ECLOSED;
    if (q->px)
        return mp__px_bytes(q->px, MP__OP_Q_GET, NULL, 0, timeout, out, buf, cap, len);
    qhdr *h = q->h;
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    int r = side_lock(&h->get_lock, &d);
    if (r != 0)
        return r == ETIMEDOUT ? MP_EEMPTY : -r;
    FAULT(11);
    state g, p = q->pseen;
    state_read(&h->gseq, h->gside, &g);
    if (g.mode > IN_LOG) {
        pthread_mutex_unlock(&h->get_lock);
        return MP_EBADMSG;
    }
    /* other consumers may have taken what @p (last seen) counts */
    while ((int64_t)(p.count - g.count) <= 0) {
        uint32_t s = atomic_load(&h->pseq);
        state_read(&h->pseq, h->pside, &p);
        if ((int64_t)(p.count - g.count) < 0) {
            pthread_mutex_unlock(&h->get_lock); /* the consumers ahead */
            return MP_EBADMSG;
        }
        if (p.count != g.count)
            break;
        if (mp__deadline_expired(&d) ||
            (side_sleep(&h->pseq, s, &d) == MP_ETIMEDOUT &&
             mp__deadline_expired(&d))) {
            state_read(&h->pseq, h->pside, &p);
            if (p.count != g.count)
                break;
            pthread_mutex_unlock(&h->get_lock);
            return MP_EEMPTY;
        }
    }
    q->pseen = p;
    /* Follow switches to the next message.  @p (as last seen, or newer)
     * counts it, so it and the records before it lie inside what @p
     * committed: each record is checked against that, and the ring's
     * capacity (read after @p) against what it can be. */
    uint64_t kind = 0, n = 0, rcap = ring_cap(h), avail = 0;
    int err = rcap == 0 ? MP_EBADMSG : 0;
    for (int hops = 0; err == 0; hops++) {
        bool ring = g.mode == IN_RING;
        uint64_t pos = ring ? g.ring : g.log;
        avail = ring ? p.ring - g.ring : p.log - g.log;
        if (avail < REC_HDR || avail > (ring ? rcap : LOG_SIZE)) {
            err = MP_EBADMSG;
            break;
        }
        err = rec_header(q, (int)g.mode, rcap, pos, &kind, &n);
        if (err < 0)
            break;
        if (kind == REC_MSG) {
            if (n > avail - REC_HDR || pad8(n) > avail - REC_HDR)
                err = MP_EBADMSG; /* longer than what was committed */
            break;
        }
        if (hops > 1 || (kind != REC_TO_LOG && kind != REC_TO_RING) ||
            (kind == REC_TO_LOG) != (g.mode == IN_RING)) {
            err = MP_EBADMSG; /* not what a put writes */
            break;
        }
        if (g.mode == IN_RING)
            g.ring += REC_HDR;
        else
            g.log += REC_HDR;
        g.mode = kind == REC_TO_LOG ? IN_LOG : IN_RING;
    }
    if (err == 0) {
        *len = (size_t)n;
        if (out != NULL) {
            err = mp_buf_reserve(out, (size_t)n);
            buf = out->data;
        } else if (n > cap) {
            err = MP_EMSGSIZE; /* stays queued */
        }
    }
    if (err == 0) {
        bool ring = g.mode == IN_RING;
        uint64_t pos = ring ? g.ring : g.log;
        if (n > 0)
            region_copy(ring ? q->ring : log_base(q), ring ? rcap : LOG_SIZE, pos + REC_HDR, buf,
                        n, false);
        FAULT(12);
        if (out != NULL)
            out->len = (size_t)n;
        if (ring)
            g.ring += REC_HDR + pad8(n);
        else
            g.log += REC_HDR + pad8(n);
        g.count++;
        FAULT(13);
        state_commit(&h->gseq, h->gside, &g, 15); /* and the wake-up of a producer */
        FAULT(14);
        if (!ring || g.log != atomic_load(&h->log_punched))
            log_punch(q, g.log, g.log == p.log);
    }
    pthread_mutex_unlock(&h->get_lock);
    if (err == 0)
        FAULT(16);
    return err;
}

int mp_queue_get(mp_queue *q, mp_buf *msg, double timeout)
{
    size_t len;
    if (msg == NULL)
        return MP_EINVAL;
    return get(q, msg, NULL, 0, &len, timeout);
}

int mp_queue_get_into(mp_queue *q, void *buf, size_t cap, size_t *len, double timeout)
{
    if (len == NULL || (buf == NULL && cap > 0))
        return MP_EINVAL;
    return get(q, NULL, buf, cap, len, timeout);
}

/* ---- sizes, joinable ------------------------------------------------------------ */

/* Messages in the queue into *@n; MP_EBADMSG when the consumers' count is
 * ahead of the producers' (read after it: never so in a sound queue). */
static int pending(mp_queue *q, uint64_t *n)
{
    *n = 0;
    if (q->px) {
        int64_t k = 0;
        int err = mp__px_simple(q->px, MP__OP_Q_QSIZE, NAN, &k);
        *n = err == 0 ? (uint64_t)k : 0;
        return err;
    }
    state p, g;
    state_read(&q->h->gseq, q->h->gside, &g);
    state_read(&q->h->pseq, q->h->pside, &p);
    if ((int64_t)(p.count - g.count) < 0)
        return MP_EBADMSG;
    *n = p.count - g.count;
    return 0;
}

int mp_queue_qsize(mp_queue *q, size_t *out)
{
    if (q == NULL || out == NULL)
        return MP_EINVAL;
    uint64_t n;
    int err = pending(q, &n);
    *out = (size_t)n;
    return err; /* a proxy's failed request too (MP_ECLOSED, ...) */
}

bool mp_queue_empty(mp_queue *q)
{
    uint64_t n;
    return q == NULL || pending(q, &n) < 0 || n == 0;
}

bool mp_queue_full(mp_queue *q)
{
    int64_t full = 0;
    if (q && q->px)
        return mp__px_simple(q->px, MP__OP_Q_FULL, NAN, &full) == 0 && full;
    uint64_t n;
    return q != NULL && q->maxsize != 0 && pending(q, &n) == 0 && n >= q->maxsize;
}

int mp__queue_from_proxy(mp__proxy *px, void **out)
{
    mp_queue *q = calloc(1, sizeof *q);
    if (q == NULL)
        return MP_ENOMEM;
    q->fd = -1;
    q->px = px;
    q->kind = KIND_QUEUE;
    *out = q;
    return 0;
}

/* A manager's joinable queue: task_done and join go to the server too. */
int mp__joinable_queue_from_proxy(mp__proxy *px, void **out)
{
    int err = mp__queue_from_proxy(px, out);
    if (err == 0)
        ((mp_queue *)*out)->kind = KIND_JOINABLE;
    return err;
}

static uint64_t nput(mp_queue *q)
{
    state p;
    state_read(&q->h->pseq, q->h->pside, &p);
    return p.count;
}

static uint64_t ndone(mp_queue *q)
{
    state dn;
    state_read(&q->h->dseq, q->h->dside, &dn);
    return dn.count;
}

/* A commit like put's and get's, so that the count and the wake-up of the
 * joiners are one step (see the top); the mutex makes the check against
 * the puts and the count one step too. */
int mp_queue_task_done(mp_queue *q)
{
    if (q == NULL || q->kind != KIND_JOINABLE)
        return MP_EINVAL;
    if (q->px) /* the server's count (see manager_server.c, joinable queue) */
        return mp__px_simple(q->px, MP__OP_JQ_TASK_DONE, NAN, NULL);
    qhdr *h = q->h;
    int r = side_lock(&h->done_lock, NULL);
    if (r != 0)
        return -r;
    FAULT(21);
    state dn;
    state_read(&h->dseq, h->dside, &dn);
    if (dn.count >= nput(q)) {
        pthread_mutex_unlock(&h->done_lock);
        return MP_EINVAL; /* called too many times */
    }
    dn.count++;
    state_commit(&h->dseq, h->dside, &dn, 22); /* and the wake-up of the joiners */
    FAULT(23);
    pthread_mutex_unlock(&h->done_lock);
    FAULT(24);
    return 0;
}

int mp_queue_join(mp_queue *q, double timeout)
{
    if (q == NULL || q->kind != KIND_JOINABLE)
        return MP_EINVAL;
    if (q->px) /* waits on the server; MP_EOWNERDEAD: tasks written off */
        return mp__px_simple(q->px, MP__OP_JQ_JOIN, timeout, NULL);
    qhdr *h = q->h;
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    for (;;) {
        uint32_t s = atomic_load(&h->dseq);
        if (ndone(q) >= nput(q))
            return 0;
        if (mp__deadline_expired(&d))
            return MP_ETIMEDOUT;
        side_sleep(&h->dseq, s, &d); /* with the other joiners: all are woken */
    }
}

/* Tests only: see internal.h. */
int mp__queue_poke(mp_queue *q, const char *what, uint64_t v)
{
    if (q == NULL || q->px || what == NULL)
        return MP_EINVAL;
    qhdr *h = q->h;
    state p, g;
    state_read(&h->pseq, h->pside, &p);
    state_read(&h->gseq, h->gside, &g);
    if (strcmp(what, "magic") == 0)
        h->magic = (uint32_t)v;
    else if (strcmp(what, "kind") == 0)
        h->kind = (uint32_t)v;
    else if (strcmp(what, "maxsize") == 0)
        h->maxsize = v;
    else if (strcmp(what, "ring_cap") == 0)
        atomic_store(&h->ring_cap, v);
    else if (strcmp(what, "ring_grow") == 0)
        atomic_store(&h->ring_grow, (uint32_t)v);
    else if (strcmp(what, "log_punched") == 0)
        atomic_store(&h->log_punched, v);
    else if (strcmp(what, "ndone") == 0) {
        state dn;
        state_read(&h->dseq, h->dside, &dn);
        dn.count = v;
        state_commit(&h->dseq, h->dside, &dn, 0);
    }
    else if (strncmp(what, "next.", 5) == 0) {
        /* a word of the record header at the consumers' position */
        char *base = g.mode == IN_RING ? q->ring : log_base(q);
        uint64_t cap = g.mode == IN_RING ? RING_MIN : LOG_SIZE, c = ring_cap(h);
        cap = g.mode == IN_RING && c ? c : cap;
        uint64_t pos = g.mode == IN_RING ? g.ring : g.log;
        if (base == NULL || g.mode > IN_LOG || (strcmp(what + 5, "kind") && strcmp(what + 5, "len")))
            return MP_EINVAL;
        region_copy(base, cap, pos + (strcmp(what + 5, "len") == 0 ? 8 : 0), &v, 8, true);
    } else if ((what[0] == 'p' || what[0] == 'g') && what[1] == '.') {
        bool prod = what[0] == 'p';
        state *s = prod ? &p : &g;
        const char *f = what + 2;
        uint64_t *w = strcmp(f, "mode") == 0    ? &s->mode
                      : strcmp(f, "ring") == 0  ? &s->ring
                      : strcmp(f, "log") == 0   ? &s->log
                      : strcmp(f, "count") == 0 ? &s->count
                                                : NULL;
        if (w == NULL)
            return MP_EINVAL;
        *w = v;
        if (prod)
            state_commit(&h->pseq, h->pside, &p, 0);
        else
            state_commit(&h->gseq, h->gside, &g, 0);
    } else {
        return MP_EINVAL;
    }
    return 0;
}

/* ---- in mp_args ------------------------------------------------------------------ */

/* Whether the header of a queue received from another process is one this
 * code could have left (see the top), before anything else reads it; then
 * its kind and maxsize become the handle's.  The two sides are compared on
 * a view of one instant (the consumers' word unchanged across the reads);
 * in a queue too busy to give one, put and get check them as they go. */
static int queue_check(mp_queue *q)
{
    qhdr *h = q->h;
    uint32_t kind = h->kind;
    uint64_t maxsize = h->maxsize;
    if (h->magic != QMAGIC || kind < KIND_QUEUE || kind > KIND_SIMPLE ||
        (kind == KIND_SIMPLE && maxsize != 0) || atomic_load(&h->ring_grow) > 1)
        return MP_EBADMSG;
    /* each read before the state it must not exceed */
    uint64_t done = ndone(q), punched = atomic_load(&h->log_punched);
    for (int tries = 0; tries < 8; tries++) {
        state p, g;
        uint32_t s = atomic_load(&h->gseq);
        state_read(&h->gseq, h->gside, &g);
        state_read(&h->pseq, h->pside, &p);
        uint64_t cap = ring_cap(h);
        if (cap == 0 || p.mode > IN_LOG || g.mode > IN_LOG ||
            (int64_t)(p.count - g.count) < 0 || done > p.count ||
            (kind != KIND_JOINABLE && done != 0) || punched > g.log)
            return MP_EBADMSG;
        if (!same_commit(atomic_load(&h->gseq), s))
            continue; /* the consumers moved meanwhile */
        if (sides_bad(&p, &g, cap, maxsize))
            return MP_EBADMSG;
        break;
    }
    q->kind = kind;
    q->maxsize = maxsize;
    return 0;
}

static int queue_reduce(void *obj, mp_buf *out, mp__fdvec *fds, mp__channel ch)
{
    mp_queue *q = obj;
    int err = mp__px_reduce_either(q->px, out, ch);
    if (err == 0 && q->px) /* a proxy says whether it is joinable */
        err = mp__put_u8(out, q->kind == KIND_JOINABLE);
    if (err < 0 || q->px)
        return err;
    int k = mp__fdvec_add(fds, q->fd);
    return k < 0 ? k : mp__put_u32(out, (uint32_t)k);
}

static int queue_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, void **obj)
{
    mp__proxy *px;
    int err = mp__px_rebuild_either(r, ch, true, &px);
    if (err < 0 || px) {
        uint8_t joinable = err == 0 ? mp__get_u8(r) : 0;
        if (err == 0 && (r->err || joinable > 1))
            err = MP_EBADMSG;
        if (err == 0)
            err = joinable ? mp__joinable_queue_from_proxy(px, obj)
                           : mp__queue_from_proxy(px, obj);
        if (err < 0)
            mp__px_free(px);
        return err;
    }
    uint32_t k = mp__get_u32(r);
    if (r->err || k >= nfds || fds[k] < 0)
        return MP_EBADMSG;
    mp_queue *q;
    if ((err = queue_map(fds[k], &q)) < 0)
        return err;
    if ((err = queue_check(q)) < 0) {
        q->fd = -1; /* not ours to close: the caller still owns it */
        queue_unmap(q);
        return err;
    }
    fds[k] = -1;
    *obj = q;
    return 0;
}

static int queue_dup(void *obj, void **out)
{
    mp_queue *src = obj;
    if (src->px) {
        mp__proxy *px;
        int err = mp__px_dup(src->px, &px);
        if (err == 0 && (err = mp__queue_from_proxy(px, (void **)out)) < 0)
            mp__px_free(px);
        if (err == 0)
            (*(mp_queue **)out)->kind = src->kind;
        return err;
    }
    int fd = mp__sys_dup(((mp_queue *)obj)->fd);
    if (fd < 0)
        return fd;
    int err = queue_map(fd, (mp_queue **)out);
    if (err < 0) {
        mp__sys_close(fd);
        return err;
    }
    (*(mp_queue **)out)->kind = src->kind;
    (*(mp_queue **)out)->maxsize = src->maxsize;
    return 0;
}

MP__KIND(mp_queue, mp__queue_objtype, mp_args_add_queue, mp_args_queue,
         "queue", 'Q', MP__TAG_QUEUE,
         queue_reduce, queue_rebuild, queue_dup, mp_queue_free);

