/*
 * bench_queue.c: Queue, SimpleQueue and JoinableQueue throughput, against a
 * bare single-producer single-consumer ring (the floor) and a bare two-copy
 * transfer.  One operation is one message: put by a producer, got by a
 * consumer; every result is the time of one message (a batch's wall time
 * divided by its messages, one sample per batch: the spread is that of
 * batch averages).  Python's counterparts are in py_queue.py (same names
 * with py_ for mp_).
 *
 *   mp_queue8, mp_simplequeue8, raw_ring8
 *       8-byte messages, one producer (a child) to one consumer (this
 *       process): mp_queue_put / mp_queue_get_into on a Queue, on a
 *       SimpleQueue; raw_ring8: the bare ring (below) of mp_queue's ring
 *       size (4 MiB: RING_MIN of src/queues.c; 8 B messages never grow it).
 *   mp_queue8_4p
 *       8-byte messages, four producers to one consumer (a Queue).  No floor.
 *   mp_queue8_4x4
 *       8-byte messages, four producer processes to four consumer processes
 *       (children; this process only times).  After its share of a batch
 *       each producer puts one end-of-batch marker; a batch ends when the
 *       consumers have got all four markers (FIFO per producer: every
 *       message was got before).  Markers are not counted as messages.
 *       Each consumer checks that every producer's sequence numbers rise
 *       in what it gets; at the end the consumers' counts must add up.
 *       No floor.
 *   mp_jqueue8
 *       a JoinableQueue, 8-byte messages: this process puts a batch of N,
 *       one consumer child gets each and calls mp_queue_task_done, and this
 *       process calls mp_queue_join; the time from the first put until join
 *       returns, per message.  No floor.
 *   mp_bqueue8, raw_bring8
 *       a bounded Queue under backpressure: maxsize 64 messages, 8-byte
 *       messages, one producer to one consumer, placed as mp_queue8; the
 *       floor is the bare ring limited to 64 records (64 x 16 bytes), whose
 *       producer sleeps on a futex when it is full.  (bench_boost_mq
 *       compares Boost.Interprocess message_queue with 64 x 8 B against
 *       mp_bqueue8: keep this setup.)
 *   mp_queue1m, raw_ring1m, raw_copy1m, raw_copy1m_serial
 *       1 MiB messages, one producer to one consumer: a Queue; raw_ring1m,
 *       the floor: the bare ring of 16 MiB, the size mp_queue's ring grows
 *       to in this run (4 MiB doubling to 16 MiB when messages spill to its
 *       log), whose producer sleeps when it is full;
 *       raw_copy1m and raw_copy1m_serial, references: the same
 *       ring holding only two messages (the producer fills one buffer while
 *       the consumer empties the other) and only one (the copies alternate).
 *   scale_queue_mp_SIZE, scale_queue_floor_SIZE
 *       SIZE-byte messages (SIZE = 8, 64, 256, 1024, 4096, 16384, 65536,
 *       262144, 1048576, 4194304), one producer to one consumer, placed as
 *       mp_queue8: a Queue, and the bare ring of the size mp_queue's ring
 *       reaches at that message size (see scale_ring_cap).  Messages per
 *       batch: 32 MiB worth, at least 16, at most N/2 (scaled by -n).
 *
 * The bare ring, the floor: what a correct shared-memory SPSC queue must
 * do and no more.  mmap(MAP_SHARED | MAP_ANONYMOUS) (shmem pages, as the
 * queue's memfd); a record is an 8-byte length and the payload padded to 8
 * bytes, at monotonic byte positions over a circular buffer.  As in
 * mp_queue's own layout, each side's words sit on a cache line of its own:
 * the producer's line holds its published position and the flag a sleeping
 * consumer sets, the consumer's line its released position and the flag a
 * sleeping producer sets; each side keeps its last view of the other's
 * position in its own memory and reads the other's line only when that
 * view says empty (full).  A side that finds the ring empty (full) sets
 * its flag, looks once more, and sleeps on it with FUTEX_WAIT; the other
 * side, after publishing (a seq_cst store, then a load of the flag on the
 * same line), calls FUTEX_WAKE only when the flag is set -- the consumer
 * only once half the ring is free, so that a producer held up by a full
 * ring refills half of it per wake-up.  Neither side spins, as mp_queue
 * does not.  No lock (one producer, one consumer), no
 * crash safety, no message count: that is what the floor leaves out.
 *
 * Placement (-a): "split" (the default) pins the consumer(s) to the first
 * CPU this process may use and the producer(s) to the second, so that both
 * sides run at once; "same" pins all to the first CPU (the sides then take
 * turns: a sleeping side costs a context switch); "free" leaves it to the
 * scheduler.  Producers and consumers are started with multiproc's "fork"
 * context before the first batch, which warms up and is not counted.  In
 * the 1->1 and 4->1 runs the producers wait on a shared go word; a batch
 * starts when this process (the consumer) bumps it and ends when it has
 * got the batch's last message.  Every message's first 8 bytes carry its
 * producer and sequence number; the consumer checks FIFO order per
 * producer, the length, and that nothing is lost.
 *
 * Prints one JSON line per result (see bench_stats.h).
 *
 * usage: bench_queue [-b BATCHES] [-n SMALL_PER_BATCH] [-m BIG_PER_BATCH]
 *                    [-a split|same|free]
 *                    [small|multi|join|bounded|big|scale|NAME ...]
 *                    (default: split, all)
 * (defaults 10 batches, 100000 and 200 messages per batch; with four
 * producers each puts a quarter of a batch)
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include "bench_stats.h"
#include "bench_util.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)
#define BIG MiB
#define NPROD_MULTI 4
#define NCONS_MULTI 4
#define QUEUE_RING_MIN ((uint64_t)4 << 20) /* RING_MIN and RING_MAX of src/queues.c */
#define QUEUE_RING_MAX ((uint64_t)16 << 20)
#define BOUND 64 /* maxsize of the bounded queue, records of the bounded ring */

/* Marks in the top byte of a message's tag (producer ids are below). */
#define TAG_END 0xffu  /* end of a producer's share of a batch (4x4) */
#define TAG_STOP 0xfeu /* a consumer's last message (4x4, join) */

/* Where the consumers and the producers run; -1: anywhere. */
static int cons_cpu = -1, prod_cpu = -1;

/* "split", "same" or "free", on the first two CPUs this process may use.
 * "split" on a single CPU falls back to "free" (with a warning). */
static bool placement(const char *how)
{
    int cpus[2] = {-1, -1}, found = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) < 0)
        die("sched_getaffinity", errno);
    for (int c = 0; c < CPU_SETSIZE && found < 2; c++)
        if (CPU_ISSET(c, &set))
            cpus[found++] = c;
    if (strcmp(how, "split") == 0) {
        if (found < 2)
            fprintf(stderr, "bench_queue: one CPU only: the two sides cannot run at once\n");
        cons_cpu = found < 2 ? -1 : cpus[0];
        prod_cpu = found < 2 ? -1 : cpus[1];
    } else if (strcmp(how, "same") == 0) {
        cons_cpu = prod_cpu = cpus[0];
    } else if (strcmp(how, "free") == 0) {
        cons_cpu = prod_cpu = -1;
    } else {
        return false;
    }
    return true;
}

/* ---- the bare SPSC ring (see the top) --------------------------------------- */

/* Each group 128-byte aligned, not just 64: the CPU's adjacent-line
 * prefetcher fetches 64-byte lines in pairs, and mp_queue's producer and
 * consumer words are in different pairs too (src/queues.c: qhdr). */
#define PAIR _Alignas(128)
typedef struct ring {
    /* the producer's line: written by the producer at every message; the
     * consumer writes it only to say it sleeps */
    PAIR _Atomic uint64_t head;          /* bytes published */
    _Atomic uint32_t cons_sleeping;      /* futex word */
    /* the consumer's line, likewise */
    PAIR _Atomic uint64_t tail;          /* bytes released */
    _Atomic uint32_t prod_sleeping;      /* futex word */
    /* fixed at creation: read by both, written by neither */
    PAIR uint64_t cap;
    uint64_t mask;                       /* cap - 1 when cap is a power of two, else 0 */
    PAIR char data[];
} ring;

/* One side's handle, in that side's own memory: its position and its last
 * view of the other side's. */
typedef struct rend {
    ring *r;
    uint64_t pos, seen;
} rend;

static ring *ring_new(uint64_t cap)
{
    ring *r = shared_map(sizeof(ring) + cap);
    r->cap = cap;
    r->mask = (cap & (cap - 1)) == 0 ? cap - 1 : 0;
    memset(r->data, 0, cap); /* its pages in, as the queue's are after warm-up */
    return r;
}

static void ring_free(ring *r)
{
    munmap(r, sizeof(ring) + r->cap);
}

static inline uint64_t pad8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

/* Copy @n bytes in or out at position @pos, wrapping at the end.  Only the
 * two reference rings (raw_copy1m*) have a capacity that is not a power of
 * two, and pay a division. */
static inline void ring_copy(ring *r, uint64_t pos, void *p, uint64_t n, bool in)
{
    uint64_t off = r->mask ? pos & r->mask : pos % r->cap;
    uint64_t k = r->cap - off < n ? r->cap - off : n;
    if (in) {
        memcpy(r->data + off, p, k);
        if (k < n)
            memcpy(r->data, (char *)p + k, n - k);
    } else {
        memcpy(p, r->data + off, k);
        if (k < n)
            memcpy((char *)p + k, r->data, n - k);
    }
}

static void ring_put(rend *e, const void *msg, uint64_t len)
{
    ring *r = e->r;
    uint64_t rec = 8 + pad8(len);
    while (e->pos + rec - e->seen > r->cap) {
        /* full as last seen: look at the consumer's line */
        e->seen = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (e->pos + rec - e->seen <= r->cap)
            break;
        atomic_store(&r->prod_sleeping, 1); /* seq_cst: then read tail again */
        e->seen = atomic_load(&r->tail);
        if (e->pos + rec - e->seen <= r->cap) {
            atomic_store_explicit(&r->prod_sleeping, 0, memory_order_relaxed);
            break;
        }
        futex_wait(&r->prod_sleeping, 1);
    }
    /* the length and an 8-byte message are one 16-byte copy when they do
     * not wrap; two small copies cost the same */
    ring_copy(r, e->pos, &len, 8, true);
    ring_copy(r, e->pos + 8, (void *)msg, len, true);
    e->pos += rec;
    atomic_store(&r->head, e->pos); /* seq_cst: then read the flag */
    if (atomic_load(&r->cons_sleeping)) {
        atomic_store_explicit(&r->cons_sleeping, 0, memory_order_relaxed);
        futex_wake(&r->cons_sleeping, 1);
    }
}

static uint64_t ring_get(rend *e, void *buf)
{
    ring *r = e->r;
    while (e->seen == e->pos) {
        /* empty as last seen: look at the producer's line */
        e->seen = atomic_load_explicit(&r->head, memory_order_acquire);
        if (e->seen != e->pos)
            break;
        atomic_store(&r->cons_sleeping, 1); /* seq_cst: then read head again */
        e->seen = atomic_load(&r->head);
        if (e->seen != e->pos) {
            atomic_store_explicit(&r->cons_sleeping, 0, memory_order_relaxed);
            break;
        }
        futex_wait(&r->cons_sleeping, 1);
    }
    uint64_t len;
    ring_copy(r, e->pos, &len, 8, false);
    ring_copy(r, e->pos + 8, buf, len, false);
    e->pos += 8 + pad8(len);
    atomic_store(&r->tail, e->pos); /* seq_cst: then read the flag */
    /* A producer asleep on a full ring is woken once half of it is free,
     * not at the first free record: it then fills half a ring at a time
     * instead of being woken for every message the consumer takes.  (It
     * waits for room for one record, never more than half the ring.) */
    if (atomic_load(&r->prod_sleeping) && r->cap - (atomic_load(&r->head) - e->pos) >= r->cap / 2) {
        atomic_store_explicit(&r->prod_sleeping, 0, memory_order_relaxed);
        futex_wake(&r->prod_sleeping, 1);
    }
    return len;
}

/* ---- the harness ------------------------------------------------------------ */

enum { T_QUEUE, T_RING };

/* Shared by this process and its children. */
typedef struct ctl {
    _Alignas(64) _Atomic uint32_t go;   /* batches released so far (futex word) */
    _Alignas(64) _Atomic uint32_t ends; /* end markers got so far (futex word, 4x4) */
    _Alignas(64) uint64_t got[NCONS_MULTI]; /* messages each consumer got (4x4) */
} ctl;

typedef struct run {
    const char *name;
    int kind;          /* T_QUEUE or T_RING */
    mp_queue *q;
    ring *r;
    int nprod, ncons;  /* ncons 0: this process consumes */
    size_t per;        /* messages per producer per batch */
    size_t size;       /* bytes per message */
    size_t batches;    /* counted; one more warms up */
} run;

/* The message @seq of producer @id: its first 8 bytes say who and which. */
static inline uint64_t tag(uint64_t id, uint64_t seq)
{
    return id << 56 | seq;
}

#define SEQ(t) ((t) & (((uint64_t)1 << 56) - 1))

static void qput(mp_queue *q, const void *msg, size_t len)
{
    if (mp_queue_put(q, msg, len, MP_FOREVER) < 0)
        exit(4);
}

/* A producer: its share of each batch once the batch is released, then
 * (when asked) an end marker. */
static int producer(const mp_args *a)
{
    ctl *c = mp_args_ptr(a, 0);
    int kind = (int)mp_args_int(a, 1);
    mp_queue *q = kind == T_QUEUE ? mp_args_queue(a, 2) : NULL;
    rend e = {kind == T_RING ? mp_args_ptr(a, 2) : NULL, 0, 0};
    uint64_t id = (uint64_t)mp_args_int(a, 3);
    size_t per = (size_t)mp_args_int(a, 4), size = (size_t)mp_args_int(a, 5);
    uint32_t batches = (uint32_t)mp_args_int(a, 6);
    pin((int)mp_args_int(a, 7));
    bool marks = mp_args_int(a, 8) != 0;
    char *msg = calloc(1, size);
    if (msg == NULL)
        return 3;
    uint64_t seq = 0;
    for (uint32_t b = 1; b <= batches; b++) {
        uint32_t g;
        while ((g = atomic_load(&c->go)) < b)
            futex_wait(&c->go, g);
        for (size_t i = 0; i < per; i++) {
            uint64_t t = tag(id, seq++);
            memcpy(msg, &t, 8);
            if (kind == T_QUEUE)
                qput(q, msg, size);
            else
                ring_put(&e, msg, size);
        }
        if (marks) {
            uint64_t t = tag(TAG_END, id);
            qput(q, &t, 8);
        }
    }
    free(msg);
    return 0;
}

/* A consumer of the 4x4 run: gets until its stop message; counts and
 * checks what it gets, and counts the end markers into c->ends, waking
 * this process at a batch's last one. */
static int consumer(const mp_args *a)
{
    ctl *c = mp_args_ptr(a, 0);
    mp_queue *q = mp_args_queue(a, 1);
    int me = (int)mp_args_int(a, 2);
    uint32_t nprod = (uint32_t)mp_args_int(a, 3);
    pin((int)mp_args_int(a, 4));
    uint64_t next[NPROD_MULTI] = {0}, got = 0, t;
    for (;;) {
        size_t len;
        if (mp_queue_get_into(q, &t, sizeof t, &len, MP_FOREVER) < 0 || len != 8)
            return 4;
        uint64_t id = t >> 56;
        if (id == TAG_END) {
            if ((atomic_fetch_add(&c->ends, 1) + 1) % nprod == 0)
                futex_wake(&c->ends, 1);
            continue;
        }
        if (id == TAG_STOP)
            break;
        if (id >= nprod || SEQ(t) < next[id])
            return 5; /* a producer's messages out of order */
        next[id] = SEQ(t) + 1;
        got++;
    }
    c->got[me] = got;
    return 0;
}

static void start(mp_process **p, mp_target_fn fn, mp_args *a)
{
    check("mp_process_new", mp_process_new(p, mp_get_context("fork"), fn, a));
    mp_args_free(a);
    check("mp_process_start", mp_process_start(*p));
}

static void reap(const char *name, mp_process **p, int n)
{
    for (int i = 0; i < n; i++) {
        int code;
        check("join", mp_process_join(p[i], 120));
        check("exitcode", mp_process_exitcode(p[i], &code));
        if (code != 0) {
            fprintf(stderr, "bench_queue: %s: a child exited with %d\n", name, code);
            exit(1);
        }
        check("close", mp_process_close(p[i]));
    }
}

static void bench(const run *rn)
{
    cpu_set_t saved;
    if (sched_getaffinity(0, sizeof saved, &saved) < 0)
        die("sched_getaffinity", errno);
    pin(cons_cpu);
    ctl *c = shared_map(sizeof *c);
    mp_process *p[NPROD_MULTI], *cp[NCONS_MULTI];
    size_t total = rn->batches + 1;
    for (int i = 0; i < rn->nprod; i++) {
        mp_args *a;
        check("mp_args_new", mp_args_new(&a));
        check("args", mp_args_add_ptr(a, c));
        check("args", mp_args_add_int(a, rn->kind));
        if (rn->kind == T_QUEUE)
            check("args", mp_args_add_queue(a, rn->q));
        else
            check("args", mp_args_add_ptr(a, rn->r));
        check("args", mp_args_add_int(a, i));
        check("args", mp_args_add_int(a, (int64_t)rn->per));
        check("args", mp_args_add_int(a, (int64_t)rn->size));
        check("args", mp_args_add_int(a, (int64_t)total));
        check("args", mp_args_add_int(a, prod_cpu));
        check("args", mp_args_add_int(a, rn->ncons > 0));
        start(&p[i], producer, a);
    }
    for (int i = 0; i < rn->ncons; i++) {
        mp_args *a;
        check("mp_args_new", mp_args_new(&a));
        check("args", mp_args_add_ptr(a, c));
        check("args", mp_args_add_queue(a, rn->q));
        check("args", mp_args_add_int(a, i));
        check("args", mp_args_add_int(a, rn->nprod));
        check("args", mp_args_add_int(a, cons_cpu));
        start(&cp[i], consumer, a);
    }
    char *buf = malloc(rn->size);
    uint64_t *s = calloc(total, sizeof *s);
    uint64_t next[NPROD_MULTI] = {0};
    if (buf == NULL || s == NULL)
        die("malloc", ENOMEM);
    memset(buf, 1, rn->size); /* fault it in before timing */
    rend e = {rn->r, 0, 0};
    size_t n = rn->per * (size_t)rn->nprod;
    for (size_t b = 0; b < total; b++) {
        uint64_t t0 = bench_now_ns();
        atomic_fetch_add(&c->go, 1);
        futex_wake(&c->go, INT_MAX);
        if (rn->ncons > 0) {
            /* the consumers count the end markers */
            uint32_t want = (uint32_t)((b + 1) * (size_t)rn->nprod), v;
            while ((v = atomic_load(&c->ends)) < want)
                futex_wait(&c->ends, v);
        }
        for (size_t i = 0; rn->ncons == 0 && i < n; i++) {
            size_t len;
            if (rn->kind == T_QUEUE)
                check("mp_queue_get_into",
                      mp_queue_get_into(rn->q, buf, rn->size, &len, MP_FOREVER));
            else
                len = ring_get(&e, buf);
            uint64_t t;
            memcpy(&t, buf, 8);
            uint64_t id = t >> 56;
            if (len != rn->size || id >= (uint64_t)rn->nprod || SEQ(t) != next[id]) {
                fprintf(stderr, "bench_queue: %s: message %zu of batch %zu is wrong\n",
                        rn->name, i, b);
                exit(1);
            }
            next[id]++;
        }
        s[b] = bench_now_ns() - t0;
    }
    reap(rn->name, p, rn->nprod);
    if (rn->ncons > 0) {
        for (int i = 0; i < rn->ncons; i++) {
            uint64_t t = tag(TAG_STOP, 0);
            check("mp_queue_put", mp_queue_put(rn->q, &t, 8, MP_FOREVER));
        }
        reap(rn->name, cp, rn->ncons);
        uint64_t got = 0;
        for (int i = 0; i < rn->ncons; i++)
            got += c->got[i];
        if (got != n * total) {
            fprintf(stderr, "bench_queue: %s: %llu messages got of %zu\n", rn->name,
                    (unsigned long long)got, n * total);
            exit(1);
        }
    }
    if (sched_setaffinity(0, sizeof saved, &saved) < 0)
        die("sched_setaffinity", errno);
    bench_report_per(rn->name, s + 1, rn->batches, n);
    free(s);
    free(buf);
    munmap(c, sizeof *c);
}

/* The JoinableQueue's consumer: gets @n messages in order, task_done for
 * each. */
static int join_consumer(const mp_args *a)
{
    mp_queue *q = mp_args_queue(a, 0);
    uint64_t n = (uint64_t)mp_args_int(a, 1);
    pin((int)mp_args_int(a, 2));
    for (uint64_t i = 0; i < n; i++) {
        uint64_t t;
        size_t len;
        if (mp_queue_get_into(q, &t, sizeof t, &len, MP_FOREVER) < 0)
            return 4;
        if (len != 8 || t != tag(0, i))
            return 5;
        if (mp_queue_task_done(q) < 0)
            return 6;
    }
    return 0;
}

/* mp_jqueue8: this process is the producer (on the producers' CPU). */
static void bench_join(const char *name, size_t per, size_t batches)
{
    cpu_set_t saved;
    if (sched_getaffinity(0, sizeof saved, &saved) < 0)
        die("sched_getaffinity", errno);
    pin(prod_cpu);
    mp_queue *q;
    check("mp_joinable_queue_new", mp_joinable_queue_new(&q, 0));
    size_t total = batches + 1;
    mp_process *p;
    mp_args *a;
    check("mp_args_new", mp_args_new(&a));
    check("args", mp_args_add_queue(a, q));
    check("args", mp_args_add_int(a, (int64_t)(per * total)));
    check("args", mp_args_add_int(a, cons_cpu));
    start(&p, join_consumer, a);
    uint64_t *s = calloc(total, sizeof *s), seq = 0;
    if (s == NULL)
        die("malloc", ENOMEM);
    for (size_t b = 0; b < total; b++) {
        uint64_t t0 = bench_now_ns();
        for (size_t i = 0; i < per; i++) {
            uint64_t t = tag(0, seq++);
            check("mp_queue_put", mp_queue_put(q, &t, 8, MP_FOREVER));
        }
        check("mp_queue_join", mp_queue_join(q, MP_FOREVER));
        s[b] = bench_now_ns() - t0;
    }
    reap(name, &p, 1);
    if (sched_setaffinity(0, sizeof saved, &saved) < 0)
        die("sched_setaffinity", errno);
    bench_report_per(name, s + 1, batches, per);
    free(s);
    mp_queue_free(q);
}

static void bench_queue(const char *name, int kind, int nprod, int ncons, size_t maxsize,
                        size_t per, size_t size, size_t batches)
{
    mp_queue *q;
    if (kind == 1)
        check("mp_simple_queue_new", mp_simple_queue_new(&q));
    else
        check("mp_queue_new", mp_queue_new(&q, maxsize));
    run rn = {name, T_QUEUE, q, NULL, nprod, ncons, per, size, batches};
    bench(&rn);
    mp_queue_free(q);
}

static void bench_ring(const char *name, uint64_t cap, size_t per, size_t size, size_t batches)
{
    ring *r = ring_new(cap);
    run rn = {name, T_RING, NULL, r, 1, 0, per, size, batches};
    bench(&rn);
    ring_free(r);
}

/* ---- message-size scaling ------------------------------------------------------ */

static const size_t scale_sizes[] = {8,     64,     256,    1024,    4096,
                                     16384, 65536, 262144, 1048576, 4194304};
#define NSCALE (sizeof scale_sizes / sizeof scale_sizes[0])

/* Messages per batch at @size: 32 MiB worth, at least 16, at most half of
 * -n, scaled by -n against its default (py_queue.py: scale_count). */
static size_t scale_count(size_t size, size_t nsmall)
{
    double want = (double)(32 * MiB) / (double)size * ((double)nsmall / 100000.0);
    size_t n = want > (double)(nsmall / 2) ? nsmall / 2 : (size_t)want;
    return n < 16 ? 16 : n;
}

/* The capacity mp_queue's ring reaches with @per @size-byte messages a
 * batch (src/queues.c: it starts at RING_MIN, 4 MiB, and doubles up to
 * RING_MAX, 16 MiB, once a message has spilled to its log, which happens
 * when the ring is full or the message is bigger than half of it and a
 * page).  Watched in these runs (a print at the growth, not kept): when a
 * batch's records (16-byte header + payload) overflow 4 MiB, the producer
 * gets ahead at some point and the ring reaches 16 MiB (from 256 B up at
 * the default counts); otherwise it stays at 4 MiB. */
static uint64_t scale_ring_cap(size_t size, size_t per)
{
    /* The queue's ring starts at 4 MiB and doubles to 16 MiB once messages
     * spill past it to its log (it then holds on, unbounded, in the log);
     * the floor is a ring of the size the queue's reaches, whose producer
     * sleeps when it is full (woken when half of it is free, see
     * ring_get). */
    return (8 + pad8(size)) * (uint64_t)per > QUEUE_RING_MIN ? QUEUE_RING_MAX : QUEUE_RING_MIN;
}

static void bench_scale(bool mp, bool floor, size_t nsmall, size_t batches)
{
    for (size_t k = 0; k < NSCALE; k++) {
        size_t size = scale_sizes[k], per = scale_count(size, nsmall);
        char name[64];
        if (mp) {
            snprintf(name, sizeof name, "scale_queue_mp_%zu", size);
            bench_queue(name, 0, 1, 0, 0, per, size, batches);
        }
        if (floor) {
            snprintf(name, sizeof name, "scale_queue_floor_%zu", size);
            bench_ring(name, scale_ring_cap(size, per), per, size, batches);
        }
    }
}

/* Every benchmark, in the order they run; a group name on the command line
 * selects its members, a benchmark's name selects it alone. */
enum { K_QUEUE, K_SIMPLE, K_RING, K_JOIN, K_SCALE_MP, K_SCALE_FLOOR };
static const struct {
    const char *group, *name;
    int kind;
    int nprod, ncons;
    size_t maxsize;
    bool big;
    uint64_t ring_cap;
} all[] = {
    {"small", "mp_queue8", K_QUEUE, 1, 0, 0, false, 0},
    {"small", "mp_simplequeue8", K_SIMPLE, 1, 0, 0, false, 0},
    {"small", "raw_ring8", K_RING, 1, 0, 0, false, QUEUE_RING_MIN},
    {"multi", "mp_queue8_4p", K_QUEUE, NPROD_MULTI, 0, 0, false, 0},
    {"multi", "mp_queue8_4x4", K_QUEUE, NPROD_MULTI, NCONS_MULTI, 0, false, 0},
    {"join", "mp_jqueue8", K_JOIN, 1, 0, 0, false, 0},
    {"bounded", "mp_bqueue8", K_QUEUE, 1, 0, BOUND, false, 0},
    {"bounded", "raw_bring8", K_RING, 1, 0, 0, false, BOUND * (8 + 8)},
    {"big", "mp_queue1m", K_QUEUE, 1, 0, 0, true, 0},
    {"big", "raw_ring1m", K_RING, 1, 0, 0, true, 0}, /* 0: as the queue's (scale_ring_cap) */
    {"big", "raw_copy1m", K_RING, 1, 0, 0, true, 2 * (8 + BIG)},
    {"big", "raw_copy1m_serial", K_RING, 1, 0, 0, true, 8 + BIG},
    {"scale", "scale_queue_mp", K_SCALE_MP, 1, 0, 0, false, 0},
    {"scale", "scale_queue_floor", K_SCALE_FLOOR, 1, 0, 0, false, 0},
};
#define NALL (sizeof all / sizeof all[0])

int main(int argc, char **argv)
{
    size_t batches = 10, nsmall = 100000, nbig = 200;
    bool pick[NALL] = {false}, any = false;
    placement("split");
    for (int i = 1; i < argc; i++) {
        bool known = false;
        if (strcmp(argv[i], "-b") == 0) {
            batches = bench_count(i + 1 < argc ? argv[++i] : NULL);
            continue;
        }
        if (strcmp(argv[i], "-n") == 0) {
            nsmall = bench_count(i + 1 < argc ? argv[++i] : NULL);
            continue;
        }
        if (strcmp(argv[i], "-m") == 0) {
            nbig = bench_count(i + 1 < argc ? argv[++i] : NULL);
            continue;
        }
        if (strcmp(argv[i], "-a") == 0 && i + 1 < argc && placement(argv[i + 1])) {
            i++;
            continue;
        }
        for (size_t k = 0; k < NALL; k++)
            if (strcmp(argv[i], all[k].group) == 0 || strcmp(argv[i], all[k].name) == 0)
                pick[k] = known = any = true;
        if (!known) {
            fprintf(stderr,
                    "usage: %s [-b BATCHES] [-n SMALL_PER_BATCH] [-m BIG_PER_BATCH] "
                    "[-a split|same|free] [small|multi|join|bounded|big|scale|NAME ...]\n",
                    argv[0]);
            return 2;
        }
    }
    for (size_t k = 0; k < NALL; k++) {
        if (any && !pick[k])
            continue;
        size_t size = all[k].big ? BIG : 8;
        size_t per = (all[k].big ? nbig : nsmall) / (size_t)all[k].nprod;
        if (per == 0)
            per = 1;
        switch (all[k].kind) {
        case K_RING:
            bench_ring(all[k].name, all[k].ring_cap ? all[k].ring_cap : scale_ring_cap(size, per),
                       per, size, batches);
            break;
        case K_JOIN:
            bench_join(all[k].name, per, batches);
            break;
        case K_SCALE_MP:
            /* with the floor (if picked too): each size's pair one after the other */
            bench_scale(true, !any || pick[k + 1], nsmall, batches);
            break;
        case K_SCALE_FLOOR:
            if (any && !pick[k - 1])
                bench_scale(false, true, nsmall, batches);
            break;
        default:
            bench_queue(all[k].name, all[k].kind == K_SIMPLE, all[k].nprod, all[k].ncons,
                        all[k].maxsize, per, size, batches);
        }
    }
    return 0;
}
