/*
 * bench_sync.c: Lock and Event, against bare futexes and pthread mutexes.
 *
 *   mp_lock_uncontended, raw_futex_lock_uncontended
 *       one acquire + release of a lock nobody else wants: mp_lock_acquire
 *       (MP_FOREVER) + mp_lock_release, against a minimal three-state futex
 *       mutex (0 free, 1 held, 2 held with waiters) in shared memory.  One
 *       pair takes some 10 to 40 ns, near the clock's resolution: each
 *       sample times a batch of pairs and reports the time of one;
 *   raw_pthread_robust_pi_uncontended
 *       for reference, the same on the mutex mp_lock is built on, bare: a
 *       robust, process-shared, priority-inheriting, error-checking pthread
 *       mutex;
 *   mp_lock_contended, raw_pthread_robust_contended
 *       two processes (this one and a forked child, pinned to two different
 *       CPUs) each doing acquire / increment a shared counter / release in a
 *       loop on one lock: wall time over the operations of both, against the
 *       same loop on a bare robust process-shared pthread mutex (default
 *       protocol) in MAP_SHARED anonymous memory.  Each sample is one round
 *       in which both start together and each does K operations; the
 *       counter is checked at the end;
 *   raw_pthread_robust_pi_contended
 *       for reference, the same on a bare robust process-shared mutex with
 *       the priority-inheritance protocol, as mp_lock's;
 *   mp_event_pingpong, raw_futex_pingpong
 *       one round trip between two processes: A sets e1 and waits for e2
 *       (then clears it), B waits for e1, clears it and sets e2; against the
 *       same protocol on two bare futex words (store + FUTEX_WAKE,
 *       FUTEX_WAIT while zero).  By default both processes are pinned to one
 *       CPU (-a same): a round trip is then two wake-ups and two context
 *       switches, and does not depend on how fast the (virtual) machine
 *       wakes an idle CPU, which on a VM can swing from 4 to 50 us from one
 *       round trip to the next.  -a split pins them to two CPUs, -a free
 *       leaves them to the scheduler.
 *
 * Children are started by multiproc's "fork" context.  The round harness of
 * the contended benchmark (start and finish flags, spinning then yielding)
 * is the same code for every variant.  Prints one JSON line per benchmark
 * (see bench_stats.h).
 *
 * usage: bench_sync [-u SAMPLES] [-b BATCH] [-c ROUNDS] [-k OPS] [-n ROUND_TRIPS]
 *                   [-a same|split|free] [uncontended|contended|pingpong ...]
 *        (default: all three)
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include "bench_stats.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_sync: %s: %s\n", what, err < 0 ? mp_strerror(err) : strerror(err));
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

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Print the JSON line of samples that each timed @batch operations, as the
 * time of one operation. */
static void report_batch(const char *name, uint64_t *s, size_t n, size_t batch)
{
    double sum = 0, b = (double)batch * 1e3;
    qsort(s, n, sizeof *s, bench_cmp_u64);
    for (size_t i = 0; i < n; i++)
        sum += (double)s[i];
    printf("{\"name\": \"%s\", \"n\": %zu, \"median_us\": %.5f, \"p10_us\": %.5f, "
           "\"p90_us\": %.5f, \"mean_us\": %.5f, \"min_us\": %.5f}\n",
           name, n, bench_quantile(s, n, 0.5) / b, bench_quantile(s, n, 0.1) / b,
           bench_quantile(s, n, 0.9) / b, sum / (double)n / b, (double)s[0] / b);
    fflush(stdout);
}

/* ---- CPU placement ------------------------------------------------------- */

/* Where the two processes of a benchmark run: CPU numbers, -1 for anywhere. */
typedef struct placement {
    int parent, child;
} placement;

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

/* "same", "split" or "free", on the first two CPUs this process may use.
 * "split" on a single CPU falls back to "free" (with a warning). */
static bool placement_of(const char *how, placement *out)
{
    int cpus[2] = {-1, -1}, found = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) < 0)
        die("sched_getaffinity", errno);
    for (int c = 0; c < CPU_SETSIZE && found < 2; c++)
        if (CPU_ISSET(c, &set))
            cpus[found++] = c;
    if (strcmp(how, "same") == 0) {
        *out = (placement){cpus[0], cpus[0]};
    } else if (strcmp(how, "split") == 0) {
        if (found < 2)
            fprintf(stderr, "bench_sync: one CPU only: two processes cannot run at once\n");
        *out = found < 2 ? (placement){-1, -1} : (placement){cpus[0], cpus[1]};
    } else if (strcmp(how, "free") == 0) {
        *out = (placement){-1, -1};
    } else {
        return false;
    }
    return true;
}

/* ---- children ------------------------------------------------------------- */

/* Start @target(args) in a child forked by multiproc's "fork" context, with
 * this process pinned to @parent_cpu from now on (its affinity before goes
 * to @saved).  The child pins itself. */
static mp_process *start_child(mp_target_fn target, mp_args *args, int parent_cpu,
                               cpu_set_t *saved)
{
    if (sched_getaffinity(0, sizeof *saved, saved) < 0)
        die("sched_getaffinity", errno);
    pin(parent_cpu);
    mp_process *p;
    check("mp_process_new", mp_process_new(&p, mp_get_context("fork"), target, args));
    mp_args_free(args);
    check("mp_process_start", mp_process_start(p));
    return p;
}

/* Join the child, check it succeeded, give this process its affinity back. */
static void join_child(mp_process *p, const cpu_set_t *saved)
{
    int code;
    check("join", mp_process_join(p, 120));
    check("exitcode", mp_process_exitcode(p, &code));
    if (code != 0) {
        fprintf(stderr, "bench_sync: a child exited with %d\n", code);
        exit(1);
    }
    check("close", mp_process_close(p));
    if (sched_setaffinity(0, sizeof *saved, saved) < 0)
        die("sched_setaffinity", errno);
}

/* ---- bare futexes -------------------------------------------------------- */

static inline void futex_wait(_Atomic uint32_t *w, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val, NULL, NULL, 0);
}

static inline void futex_wake(_Atomic uint32_t *w, int n)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* The three-state futex mutex of Drepper's "Futexes Are Tricky". */
static inline void ftx_lock(_Atomic uint32_t *w)
{
    uint32_t c = 0;
    if (atomic_compare_exchange_strong_explicit(w, &c, 1, memory_order_acquire,
                                                memory_order_relaxed))
        return;
    if (c != 2)
        c = atomic_exchange_explicit(w, 2, memory_order_acquire);
    while (c != 0) {
        futex_wait(w, 2);
        c = atomic_exchange_explicit(w, 2, memory_order_acquire);
    }
}

static inline void ftx_unlock(_Atomic uint32_t *w)
{
    if (atomic_fetch_sub_explicit(w, 1, memory_order_release) != 1) {
        atomic_store_explicit(w, 0, memory_order_release);
        futex_wake(w, 1);
    }
}

/* A robust process-shared pthread mutex; @pi: priority inheritance, and
 * error-checking, as mp_lock's. */
static void robust_mutex_init(pthread_mutex_t *m, bool pi)
{
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    if (pi) {
        pthread_mutexattr_setprotocol(&ma, PTHREAD_PRIO_INHERIT);
        pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
    }
    int r = pthread_mutex_init(m, &ma);
    pthread_mutexattr_destroy(&ma);
    if (r != 0)
        die("pthread_mutex_init", r);
}

/* ---- uncontended acquire + release ---------------------------------------- */

static void uncontended(size_t n, size_t batch)
{
    uint64_t *s = calloc(n, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    size_t warm = n / 10 + 1;

    mp_lock *l;
    check("mp_lock_new", mp_lock_new(&l));
    for (size_t i = 0; i < n + warm; i++) {
        uint64_t t0 = bench_now_ns();
        for (size_t j = 0; j < batch; j++) {
            if (__builtin_expect(mp_lock_acquire(l, MP_FOREVER) != 0, 0))
                die("mp_lock_acquire", EIO);
            if (__builtin_expect(mp_lock_release(l) != 0, 0))
                die("mp_lock_release", EIO);
        }
        if (i >= warm)
            s[i - warm] = bench_now_ns() - t0;
    }
    mp_lock_free(l);
    report_batch("mp_lock_uncontended", s, n, batch);

    _Atomic uint32_t *w = shared_map(4096);
    for (size_t i = 0; i < n + warm; i++) {
        uint64_t t0 = bench_now_ns();
        for (size_t j = 0; j < batch; j++) {
            ftx_lock(w);
            /* keep the compiler from merging the pairs of a batch */
            atomic_signal_fence(memory_order_seq_cst);
            ftx_unlock(w);
        }
        if (i >= warm)
            s[i - warm] = bench_now_ns() - t0;
    }
    munmap((void *)w, 4096);
    report_batch("raw_futex_lock_uncontended", s, n, batch);

    pthread_mutex_t *m = shared_map(4096);
    robust_mutex_init(m, true);
    for (size_t i = 0; i < n + warm; i++) {
        uint64_t t0 = bench_now_ns();
        for (size_t j = 0; j < batch; j++) {
            if (__builtin_expect(pthread_mutex_lock(m) != 0, 0))
                die("pthread_mutex_lock", EIO);
            if (__builtin_expect(pthread_mutex_unlock(m) != 0, 0))
                die("pthread_mutex_unlock", EIO);
        }
        if (i >= warm)
            s[i - warm] = bench_now_ns() - t0;
    }
    pthread_mutex_destroy(m);
    munmap(m, 4096);
    report_batch("raw_pthread_robust_pi_uncontended", s, n, batch);
    free(s);
}

/* ---- two processes contending ------------------------------------------- */

/* The round harness, in MAP_SHARED memory, identical for every variant. */
typedef struct harness {
    _Atomic uint32_t go;       /* the round the child may start */
    char pad1[60];
    _Atomic uint32_t done;     /* the last round the child finished */
    char pad2[60];
    pthread_mutex_t mutex;     /* the bare variants' lock */
    char pad3[64];
    int64_t raw_counter;       /* the bare variants' counter */
} harness;

enum { KIND_MP, KIND_RAW, KIND_RAW_PI };

/* Wait for *w == r: spin a little, then yield the CPU at each look. */
static void await_round(_Atomic uint32_t *w, uint32_t r)
{
    for (int i = 0; atomic_load_explicit(w, memory_order_acquire) != r; i++) {
        if (i < 1000)
            cpu_relax();
        else
            sched_yield();
    }
}

/* The operations of one side: @k times acquire, increment, release. */
static void mp_ops(mp_lock *l, int64_t *counter, size_t k)
{
    for (size_t j = 0; j < k; j++) {
        if (__builtin_expect(mp_lock_acquire(l, MP_FOREVER) != 0, 0))
            die("mp_lock_acquire", EIO);
        (*(volatile int64_t *)counter)++;
        if (__builtin_expect(mp_lock_release(l) != 0, 0))
            die("mp_lock_release", EIO);
    }
}

static void raw_ops(harness *h, size_t k)
{
    for (size_t j = 0; j < k; j++) {
        if (__builtin_expect(pthread_mutex_lock(&h->mutex) != 0, 0))
            die("pthread_mutex_lock", EIO);
        (*(volatile int64_t *)&h->raw_counter)++;
        if (__builtin_expect(pthread_mutex_unlock(&h->mutex) != 0, 0))
            die("pthread_mutex_unlock", EIO);
    }
}

/* args: (ptr harness, int kind, int rounds, int k, int cpu, [lock, value]) */
static int contender(const mp_args *a)
{
    harness *h = mp_args_ptr(a, 0);
    int kind = (int)mp_args_int(a, 1);
    uint32_t rounds = (uint32_t)mp_args_int(a, 2);
    size_t k = (size_t)mp_args_int(a, 3);
    pin((int)mp_args_int(a, 4));
    mp_lock *l = kind == KIND_MP ? mp_args_lock(a, 5) : NULL;
    int64_t *counter = kind == KIND_MP ? mp_value_ptr(mp_args_value(a, 6)) : NULL;
    for (uint32_t r = 1; r <= rounds; r++) {
        await_round(&h->go, r);
        if (kind == KIND_MP)
            mp_ops(l, counter, k);
        else
            raw_ops(h, k);
        atomic_store_explicit(&h->done, r, memory_order_release);
    }
    return 0;
}

static void contended(const char *name, int kind, size_t n, size_t k, placement at)
{
    size_t warm = n / 10 + 1, rounds = n + warm;
    harness *h = shared_map(sizeof(harness));
    mp_lock *l = NULL;
    mp_value *v = NULL;
    int64_t *counter;
    mp_args *args;
    check("mp_args_of", mp_args_of(&args, "piiii", (void *)h, kind, (int)rounds, (int)k,
                                   at.child));
    if (kind == KIND_MP) {
        check("mp_lock_new", mp_lock_new(&l));
        check("mp_value_new", mp_value_new(&v, MP_INT64, false));
        check("mp_args_add_lock", mp_args_add_lock(args, l));
        check("mp_args_add_value", mp_args_add_value(args, v));
        counter = mp_value_ptr(v);
    } else {
        robust_mutex_init(&h->mutex, kind == KIND_RAW_PI);
        counter = &h->raw_counter;
    }
    cpu_set_t saved;
    mp_process *p = start_child(contender, args, at.parent, &saved);

    uint64_t *s = calloc(n, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    for (uint32_t r = 1; r <= rounds; r++) {
        uint64_t t0 = bench_now_ns();
        atomic_store_explicit(&h->go, r, memory_order_release);
        if (kind == KIND_MP)
            mp_ops(l, counter, k);
        else
            raw_ops(h, k);
        await_round(&h->done, r);
        uint64_t t1 = bench_now_ns();
        if (r > warm)
            s[r - warm - 1] = t1 - t0;
    }
    join_child(p, &saved);
    if (*counter != (int64_t)(2 * k * rounds)) {
        fprintf(stderr, "bench_sync: %s: counter %lld, expected %lld\n", name,
                (long long)*counter, (long long)(2 * k * rounds));
        exit(1);
    }
    if (kind == KIND_MP) {
        mp_value_free(v);
        mp_lock_free(l);
    } else {
        pthread_mutex_destroy(&h->mutex);
    }
    munmap(h, sizeof(harness));
    report_batch(name, s, n, 2 * k);
    free(s);
}

/* ---- Event ping-pong --------------------------------------------------------- */

/* args: (int round trips, int cpu, event e1, event e2) */
static int mp_ponger(const mp_args *a)
{
    int64_t n = mp_args_int(a, 0);
    pin((int)mp_args_int(a, 1));
    mp_event *e1 = mp_args_event(a, 2), *e2 = mp_args_event(a, 3);
    for (int64_t i = 0; i < n; i++) {
        if (mp_event_wait(e1, MP_FOREVER) != 0)
            return 1;
        mp_event_clear(e1);
        mp_event_set(e2);
    }
    return 0;
}

/* args: (int round trips, int cpu, ptr words) */
static int raw_ponger(const mp_args *a)
{
    int64_t n = mp_args_int(a, 0);
    pin((int)mp_args_int(a, 1));
    _Atomic uint32_t *w = mp_args_ptr(a, 2), *w1 = &w[0], *w2 = &w[16];
    for (int64_t i = 0; i < n; i++) {
        while (atomic_load(w1) == 0)
            futex_wait(w1, 0);
        atomic_store(w1, 0);
        atomic_store(w2, 1);
        futex_wake(w2, 1);
    }
    return 0;
}

static void pingpong(bool mp, size_t n, placement at)
{
    size_t warm = n / 10 + 1, total = n + warm;
    mp_event *e1 = NULL, *e2 = NULL;
    _Atomic uint32_t *w = NULL, *w1 = NULL, *w2 = NULL;
    mp_args *args;
    check("mp_args_of", mp_args_of(&args, "li", (int64_t)total, at.child));
    if (mp) {
        check("mp_event_new", mp_event_new(&e1));
        check("mp_event_new", mp_event_new(&e2));
        check("mp_args_add_event", mp_args_add_event(args, e1));
        check("mp_args_add_event", mp_args_add_event(args, e2));
    } else {
        w = shared_map(4096);
        w1 = &w[0];
        w2 = &w[16]; /* another cache line */
        check("mp_args_add_ptr", mp_args_add_ptr(args, (void *)w));
    }
    cpu_set_t saved;
    mp_process *p = start_child(mp ? mp_ponger : raw_ponger, args, at.parent, &saved);

    uint64_t *s = calloc(n, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    for (size_t i = 0; i < total; i++) {
        uint64_t t0 = bench_now_ns();
        if (mp) {
            mp_event_set(e1);
            check("mp_event_wait", mp_event_wait(e2, MP_FOREVER));
            mp_event_clear(e2);
        } else {
            atomic_store(w1, 1);
            futex_wake(w1, 1);
            while (atomic_load(w2) == 0)
                futex_wait(w2, 0);
            atomic_store(w2, 0);
        }
        if (i >= warm)
            s[i - warm] = bench_now_ns() - t0;
    }
    join_child(p, &saved);
    if (mp) {
        mp_event_free(e1);
        mp_event_free(e2);
    } else {
        munmap((void *)w, 4096);
    }
    bench_report(mp ? "mp_event_pingpong" : "raw_futex_pingpong", s, n);
    free(s);
}

static size_t count(const char *s)
{
    long v = s ? strtol(s, NULL, 10) : 0;
    if (v <= 0 || v > INT32_MAX / 4) {
        fprintf(stderr, "bench_sync: a positive count is needed\n");
        exit(2);
    }
    return (size_t)v;
}

int main(int argc, char **argv)
{
    size_t nu = 3000, batch = 1000, nc = 100, k = 10000, np = 20000;
    const char *place = "same";
    bool run_u = false, run_c = false, run_p = false, any = false;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (argv[i][0] != '-') {
            if (strcmp(argv[i], "uncontended") == 0)
                run_u = true;
            else if (strcmp(argv[i], "contended") == 0)
                run_c = true;
            else if (strcmp(argv[i], "pingpong") == 0)
                run_p = true;
            else
                goto usage;
            any = true;
            continue;
        }
        if (strcmp(argv[i], "-u") == 0)
            nu = count(next);
        else if (strcmp(argv[i], "-b") == 0)
            batch = count(next);
        else if (strcmp(argv[i], "-c") == 0)
            nc = count(next);
        else if (strcmp(argv[i], "-k") == 0)
            k = count(next);
        else if (strcmp(argv[i], "-n") == 0)
            np = count(next);
        else if (strcmp(argv[i], "-a") == 0 && next)
            place = next;
        else
            goto usage;
        i++;
    }
    placement split, ping;
    if (!placement_of(place, &ping))
        goto usage;
    placement_of("split", &split); /* contention needs two CPUs at work */
    if (!any)
        run_u = run_c = run_p = true;
    if (run_u)
        uncontended(nu, batch);
    if (run_c) {
        contended("mp_lock_contended", KIND_MP, nc, k, split);
        contended("raw_pthread_robust_contended", KIND_RAW, nc, k, split);
        contended("raw_pthread_robust_pi_contended", KIND_RAW_PI, nc, k, split);
    }
    if (run_p) {
        pingpong(true, np, ping);
        pingpong(false, np, ping);
    }
    return 0;
usage:
    fprintf(stderr, "usage: %s [-u SAMPLES] [-b BATCH] [-c ROUNDS] [-k OPS] [-n ROUND_TRIPS] "
                    "[-a same|split|free] [uncontended|contended|pingpong ...]\n", argv[0]);
    return 2;
}
