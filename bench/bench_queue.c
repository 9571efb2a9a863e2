/*
 * bench_queue.c: Queue and SimpleQueue throughput, against a bare
 * single-producer single-consumer ring and a bare two-copy transfer.
 *
 *   mp_queue8, mp_simplequeue8, raw_ring8
 *       8-byte messages from one producer (a child) to one consumer (this
 *       process): mp_queue_put / mp_queue_get_into on a Queue, on a
 *       SimpleQueue, and on a bare ring written here (see below);
 *   mp_queue8_4p
 *       8-byte messages from four producers to one consumer (a Queue);
 *   mp_queue1m, raw_copy1m, raw_copy1m_serial
 *       1 MiB messages from one producer to one consumer: a Queue, against
 *       the bare two-copy transfer (the producer memcpy's the message into
 *       shared memory, the consumer memcpy's it out) over the same ring
 *       code sized for two messages (raw_copy1m: the producer fills one
 *       buffer while the consumer empties the other), and sized for one
 *       (raw_copy1m_serial: one shared buffer, so the copies alternate).
 *
 * The bare ring: mmap(MAP_SHARED | MAP_ANONYMOUS), a producer index and a
 * consumer index (monotonic byte positions, each on its own cache line), a
 * record = 8-byte length + payload padded to 8 bytes, and one "sleeping"
 * futex word per side: a side that finds the ring empty (full) announces
 * itself and sleeps; the other side calls FUTEX_WAKE only when it sees that
 * announcement.  Neither side spins, as mp_queue does not.
 *
 * Placement (-a): "split" (the default) pins this process, the consumer,
 * to the first CPU it may use and the producers to the second, so that
 * both sides run at once; "same" pins all to the first CPU (the sides then
 * take turns: a sleeping side costs a context switch); "free" leaves it to
 * the scheduler, which may do either, and on a busy machine changes its
 * mind from run to run.
 *
 * Throughput, not latency: each sample is one batch.  All producers are
 * started (multiproc's "fork" context) before the first batch and wait on
 * a shared go word; a batch starts when this process bumps it and ends when
 * this process has taken the batch's last message.  A sample is that wall
 * time divided by the batch's messages: the time of one message.  The
 * first batch warms up and is not counted.  Every message carries its
 * producer and sequence number, and the consumer checks FIFO order per
 * producer and that nothing is lost.
 *
 * Prints one JSON line per benchmark (see bench_stats.h).
 *
 * usage: bench_queue [-b BATCHES] [-n SMALL_PER_BATCH] [-m BIG_PER_BATCH]
 *                    [-a split|same|free] [small|multi|big|NAME ...]
 *                    (default: split, all)
 * (defaults 10 batches, 100000 and 200 messages per batch; with four
 * producers each puts a quarter of a batch)
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include "bench_stats.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BIG ((size_t)1 << 20)
#define NPROD_MULTI 4
#define SMALL_RING ((uint64_t)2 << 20) /* as mp_queue's ring */

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_queue: %s: %s\n", what, err < 0 ? mp_strerror(err) : strerror(err));
    exit(1);
}

static void check(const char *what, int err)
{
    if (err < 0)
        die(what, err);
}

static void *shared_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap", errno);
    return p;
}

static inline void futex_wait(_Atomic uint32_t *w, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val, NULL, NULL, 0);
}

static inline void futex_wake(_Atomic uint32_t *w, int n)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* Where the consumer and the producers run; -1: anywhere. */
static int cons_cpu = -1, prod_cpu = -1;

/* Pin the calling process to @cpu; < 0: leave it alone. */
static void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0)
        die("sched_setaffinity", errno);
}

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

/* Samples that each timed @per messages, reported as the time of one. */
static void report_per(const char *name, uint64_t *s, size_t n, size_t per)
{
    double sum = 0, d = (double)per * 1e3;
    qsort(s, n, sizeof *s, bench_cmp_u64);
    for (size_t i = 0; i < n; i++)
        sum += (double)s[i];
    printf("{\"name\": \"%s\", \"n\": %zu, \"per_sample\": %zu, \"median_us\": %.5f, "
           "\"p10_us\": %.5f, \"p90_us\": %.5f, \"mean_us\": %.5f, \"min_us\": %.5f}\n",
           name, n, per, bench_quantile(s, n, 0.5) / d, bench_quantile(s, n, 0.1) / d,
           bench_quantile(s, n, 0.9) / d, sum / (double)n / d, (double)s[0] / d);
    fflush(stdout);
}

/* ---- the bare SPSC ring ---------------------------------------------------- */

typedef struct ring {
    _Alignas(64) _Atomic uint64_t head; /* bytes published by the producer */
    _Atomic uint32_t prod_sleeping;
    _Alignas(64) _Atomic uint64_t tail; /* bytes released by the consumer */
    _Atomic uint32_t cons_sleeping;
    _Alignas(64) uint64_t cap;
    /* each side's private view, on its own line (written only by that side,
     * which is a process of its own: no sharing actually happens) */
    _Alignas(64) uint64_t p_tail_seen;
    _Alignas(64) uint64_t c_head_seen;
    _Alignas(64) char data[];
} ring;

static ring *ring_new(uint64_t cap)
{
    ring *r = shared_map(sizeof(ring) + cap);
    r->cap = cap;
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

static inline void ring_copy(ring *r, uint64_t pos, void *p, uint64_t n, bool in)
{
    uint64_t off = pos % r->cap, k = r->cap - off < n ? r->cap - off : n;
    if (in) {
        memcpy(r->data + off, p, k);
        memcpy(r->data, (char *)p + k, n - k);
    } else {
        memcpy(p, r->data + off, k);
        memcpy((char *)p + k, r->data, n - k);
    }
}

static void ring_put(ring *r, const void *msg, uint64_t len)
{
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t rec = 8 + pad8(len);
    while (head + rec - r->p_tail_seen > r->cap) {
        r->p_tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (head + rec - r->p_tail_seen <= r->cap)
            break;
        atomic_store(&r->prod_sleeping, 1); /* seq_cst: then read tail again */
        r->p_tail_seen = atomic_load(&r->tail);
        if (head + rec - r->p_tail_seen <= r->cap) {
            atomic_store_explicit(&r->prod_sleeping, 0, memory_order_relaxed);
            break;
        }
        futex_wait(&r->prod_sleeping, 1);
    }
    ring_copy(r, head, &len, 8, true);
    ring_copy(r, head + 8, (void *)msg, len, true);
    atomic_store(&r->head, head + rec); /* seq_cst: then read the flag */
    if (atomic_load(&r->cons_sleeping)) {
        atomic_store_explicit(&r->cons_sleeping, 0, memory_order_relaxed);
        futex_wake(&r->cons_sleeping, 1);
    }
}

static uint64_t ring_get(ring *r, void *buf)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    while (r->c_head_seen == tail) {
        r->c_head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
        if (r->c_head_seen != tail)
            break;
        atomic_store(&r->cons_sleeping, 1);
        r->c_head_seen = atomic_load(&r->head);
        if (r->c_head_seen != tail) {
            atomic_store_explicit(&r->cons_sleeping, 0, memory_order_relaxed);
            break;
        }
        futex_wait(&r->cons_sleeping, 1);
    }
    uint64_t len;
    ring_copy(r, tail, &len, 8, false);
    ring_copy(r, tail + 8, buf, len, false);
    atomic_store(&r->tail, tail + 8 + pad8(len));
    if (atomic_load(&r->prod_sleeping)) {
        atomic_store_explicit(&r->prod_sleeping, 0, memory_order_relaxed);
        futex_wake(&r->prod_sleeping, 1);
    }
    return len;
}

/* ---- the harness ------------------------------------------------------------ */

enum { T_QUEUE, T_RING };

/* Shared by this process and the producers. */
typedef struct ctl {
    _Atomic uint32_t go; /* batches released so far (futex word) */
} ctl;

typedef struct run {
    const char *name;
    int kind;          /* T_QUEUE or T_RING */
    mp_queue *q;
    ring *r;
    int nprod;
    size_t per;        /* messages per producer per batch */
    size_t size;       /* bytes per message */
    size_t batches;    /* counted; one more warms up */
} run;

/* The message @seq of producer @id: its first 8 bytes say who and which. */
static inline uint64_t tag(uint64_t id, uint64_t seq)
{
    return id << 56 | seq;
}

static int producer(const mp_args *a)
{
    ctl *c = mp_args_ptr(a, 0);
    int kind = (int)mp_args_int(a, 1);
    mp_queue *q = kind == T_QUEUE ? mp_args_queue(a, 2) : NULL;
    ring *r = kind == T_RING ? mp_args_ptr(a, 2) : NULL;
    uint64_t id = (uint64_t)mp_args_int(a, 3);
    size_t per = (size_t)mp_args_int(a, 4), size = (size_t)mp_args_int(a, 5);
    uint32_t batches = (uint32_t)mp_args_int(a, 6);
    pin((int)mp_args_int(a, 7));
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
            if (kind == T_QUEUE) {
                if (mp_queue_put(q, msg, size, MP_FOREVER) < 0)
                    return 4;
            } else {
                ring_put(r, msg, size);
            }
        }
    }
    free(msg);
    return 0;
}

static void bench(const run *rn)
{
    cpu_set_t saved;
    if (sched_getaffinity(0, sizeof saved, &saved) < 0)
        die("sched_getaffinity", errno);
    pin(cons_cpu);
    ctl *c = shared_map(sizeof *c);
    mp_process *p[NPROD_MULTI];
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
        check("mp_process_new", mp_process_new(&p[i], mp_get_context("fork"), producer, a));
        mp_args_free(a);
        check("mp_process_start", mp_process_start(p[i]));
    }
    char *buf = malloc(rn->size);
    uint64_t *s = calloc(total, sizeof *s);
    uint64_t next[NPROD_MULTI] = {0};
    if (buf == NULL || s == NULL)
        die("malloc", ENOMEM);
    memset(buf, 1, rn->size); /* fault it in before timing */
    size_t n = rn->per * (size_t)rn->nprod;
    for (size_t b = 0; b < total; b++) {
        uint64_t t0 = bench_now_ns();
        atomic_fetch_add(&c->go, 1);
        futex_wake(&c->go, INT32_MAX);
        for (size_t i = 0; i < n; i++) {
            size_t len;
            if (rn->kind == T_QUEUE)
                check("mp_queue_get_into",
                      mp_queue_get_into(rn->q, buf, rn->size, &len, MP_FOREVER));
            else
                len = ring_get(rn->r, buf);
            uint64_t t;
            memcpy(&t, buf, 8);
            uint64_t id = t >> 56;
            if (len != rn->size || id >= (uint64_t)rn->nprod ||
                (t & (((uint64_t)1 << 56) - 1)) != next[id]) {
                fprintf(stderr, "bench_queue: %s: message %zu of batch %zu is wrong\n",
                        rn->name, i, b);
                exit(1);
            }
            next[id]++;
        }
        s[b] = bench_now_ns() - t0;
    }
    for (int i = 0; i < rn->nprod; i++) {
        int code;
        check("join", mp_process_join(p[i], 120));
        check("exitcode", mp_process_exitcode(p[i], &code));
        if (code != 0) {
            fprintf(stderr, "bench_queue: %s: producer %d exited with %d\n", rn->name, i,
                    code);
            exit(1);
        }
        check("close", mp_process_close(p[i]));
    }
    sched_setaffinity(0, sizeof saved, &saved);
    report_per(rn->name, s + 1, rn->batches, n);
    free(s);
    free(buf);
    munmap(c, sizeof *c);
}

static void bench_queue(const char *name, int kind, int nprod, size_t per, size_t size,
                        size_t batches)
{
    mp_queue *q;
    if (kind == 1)
        check("mp_simple_queue_new", mp_simple_queue_new(&q));
    else
        check("mp_queue_new", mp_queue_new(&q, 0));
    run rn = {name, T_QUEUE, q, NULL, nprod, per, size, batches};
    bench(&rn);
    mp_queue_free(q);
}

static void bench_ring(const char *name, uint64_t cap, size_t per, size_t size, size_t batches)
{
    ring *r = ring_new(cap);
    run rn = {name, T_RING, NULL, r, 1, per, size, batches};
    bench(&rn);
    ring_free(r);
}

static size_t count(const char *s)
{
    long v = s ? strtol(s, NULL, 10) : 0;
    if (v <= 0) {
        fprintf(stderr, "bench_queue: a positive count is needed\n");
        exit(2);
    }
    return (size_t)v;
}

/* Every benchmark, in the order they run; a group name on the command line
 * selects its members, a benchmark's name selects it alone. */
static const struct {
    const char *group, *name;
    int kind;       /* 0 Queue, 1 SimpleQueue, 2 ring */
    int nprod;
    bool big;
    uint64_t ring_cap;
} all[] = {
    {"small", "mp_queue8", 0, 1, false, 0},
    {"small", "mp_simplequeue8", 1, 1, false, 0},
    {"small", "raw_ring8", 2, 1, false, SMALL_RING},
    {"multi", "mp_queue8_4p", 0, NPROD_MULTI, false, 0},
    {"big", "mp_queue1m", 0, 1, true, 0},
    {"big", "raw_copy1m", 2, 1, true, 2 * (8 + BIG)},
    {"big", "raw_copy1m_serial", 2, 1, true, 8 + BIG},
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
            batches = count(i + 1 < argc ? argv[++i] : NULL);
            continue;
        }
        if (strcmp(argv[i], "-n") == 0) {
            nsmall = count(i + 1 < argc ? argv[++i] : NULL);
            continue;
        }
        if (strcmp(argv[i], "-m") == 0) {
            nbig = count(i + 1 < argc ? argv[++i] : NULL);
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
                    "[-a split|same|free] [small|multi|big|NAME ...]\n",
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
        if (all[k].kind == 2)
            bench_ring(all[k].name, all[k].ring_cap, per, size, batches);
        else
            bench_queue(all[k].name, all[k].kind, all[k].nprod, per, size, batches);
    }
    return 0;
}
