/*
 * bench_sync.c: Lock, Event, Semaphore, Condition, Barrier and a 100 MB
 * shared Array, against bare futexes, pthreads and memfd.
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
 *       leaves them to the scheduler;
 *   mp_sem_pingpong
 *       one round trip on two semaphores made with value 0: A releases s1
 *       and acquires s2, B acquires s1 and releases s2; placed as the Event
 *       ping-pong (-a), whose floor, raw_futex_pingpong, is this one's too
 *       (one word handed over each way, two wake-ups).  Both values are
 *       checked to be 0 at the end;
 *   mp_cond_pingpong, raw_cond_pingpong
 *       one round trip through one condition over one Lock (not an RLock)
 *       and a shared turn word (an mp_value without lock): each side, per
 *       turn, acquires, wait_for(the turn is mine), hands the turn over,
 *       notifies one, releases; one round trip is one of A's turns.  The
 *       floor is the same protocol on a process-shared pthread mutex and
 *       condvar (plain, not robust: the fastest ordinary C) in MAP_SHARED
 *       memory.  Placed as the Event ping-pong (-a, default one CPU).
 *       Each sample times a batch of -B turns (default 100) and reports
 *       the average of one (the cells are the spread of batch averages):
 *       whether the notified side runs at the notify, at the release or
 *       only when A next waits varies from turn to turn, so single turns
 *       range from under a microsecond to two round trips;
 *   mp_barrier2, raw_barrier2
 *       one pass of a 2-party barrier, both processes looping on wait,
 *       placed as the Event ping-pong; the floor is a generation-counter
 *       barrier on two futex words (count, generation) in shared memory.
 *       Batches of -B passes, as the condition's: on one CPU the parent
 *       alternately arrives first (and sleeps) and last (and goes
 *       through);
 *   mp_array100m, raw_array100m
 *       one operation: create a 100 MiB (-M) shared array of doubles and
 *       fill it (element i = i mod 1024; the filling is included, on every
 *       side), start a child that sums it (4 running sums, the same code on
 *       both sides) and writes the sum into a shared result slot made once
 *       beforehand, wait for the child, check the sum, free the array.
 *       multiproc: mp_array_new (no lock) + a loop filling it, a "fork"
 *       child given the array in its mp_args, the sum into an mp_value,
 *       mp_process_join, mp_array_free.  Floor: memfd_create + ftruncate +
 *       mmap + the same loop, fork, the child sums into a shared page and
 *       _exits, waitpid, munmap + close.  Placement is left to the
 *       scheduler.  On this VM first touches of fresh memory cost some 10
 *       to 25 us a page whatever the mapping (MAP_POPULATE does not save
 *       it), so the filling dominates every side;
 *   mp_array100m_sum, raw_array100m_sum
 *       the same with the array made and filled before the clock starts
 *       and freed after it stops: start the child, it sums into the
 *       result slot, wait, check.
 *   -A array samples (default 10), each after one that warms up.
 *
 * Children are started by multiproc's "fork" context (the floors' by bare
 * fork() where noted).  The round harness of the contended benchmark
 * (start and finish flags, spinning then yielding) is the same code for
 * every variant.  Prints one JSON line per benchmark (see bench_stats.h).
 *
 * usage: bench_sync [-u SAMPLES] [-b BATCH] [-c ROUNDS] [-k OPS] [-n ROUND_TRIPS]
 *                   [-B TURNS_PER_SAMPLE] [-A ARRAY_SAMPLES] [-M ARRAY_MIB]
 *                   [-a same|split|free]
 *                   [uncontended|contended|pingpong|sem|cond|barrier|array ...]
 *        (default: all; -n also counts the semaphore and condition round
 *        trips and the barrier passes)
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include "bench_stats.h"
#include "bench_util.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* ---- CPU placement ------------------------------------------------------- */

/* Where the two processes of a benchmark run: CPU numbers, -1 for anywhere. */
typedef struct placement {
    int parent, child;
} placement;

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
    bench_report_per("mp_lock_uncontended", s, n, batch);

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
    bench_report_per("raw_futex_lock_uncontended", s, n, batch);

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
    bench_report_per("raw_pthread_robust_pi_uncontended", s, n, batch);
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
    bench_report_per(name, s, n, 2 * k);
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

/* ---- Semaphore ping-pong ------------------------------------------------ */

/* args: (int round trips, int cpu, semaphore s1, semaphore s2) */
static int sem_ponger(const mp_args *a)
{
    int64_t n = mp_args_int(a, 0);
    pin((int)mp_args_int(a, 1));
    mp_semaphore *s1 = mp_args_semaphore(a, 2), *s2 = mp_args_semaphore(a, 3);
    for (int64_t i = 0; i < n; i++) {
        if (mp_semaphore_acquire(s1, MP_FOREVER) != 0 || mp_semaphore_release(s2) != 0)
            return 1;
    }
    return 0;
}

static void sem_pingpong(size_t n, placement at)
{
    size_t warm = n / 10 + 1, total = n + warm;
    mp_semaphore *s1, *s2;
    check("mp_semaphore_new", mp_semaphore_new(&s1, 0, false));
    check("mp_semaphore_new", mp_semaphore_new(&s2, 0, false));
    mp_args *args;
    check("mp_args_of", mp_args_of(&args, "liSS", (int64_t)total, at.child, s1, s2));
    cpu_set_t saved;
    mp_process *p = start_child(sem_ponger, args, at.parent, &saved);
    uint64_t *s = calloc(n, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    for (size_t i = 0; i < total; i++) {
        uint64_t t0 = bench_now_ns();
        check("mp_semaphore_release", mp_semaphore_release(s1));
        check("mp_semaphore_acquire", mp_semaphore_acquire(s2, MP_FOREVER));
        if (i >= warm)
            s[i - warm] = bench_now_ns() - t0;
    }
    join_child(p, &saved);
    int v1, v2;
    check("mp_semaphore_value", mp_semaphore_value(s1, &v1));
    check("mp_semaphore_value", mp_semaphore_value(s2, &v2));
    if (v1 != 0 || v2 != 0) {
        fprintf(stderr, "bench_sync: semaphores end at %d and %d, not 0\n", v1, v2);
        exit(1);
    }
    mp_semaphore_free(s1);
    mp_semaphore_free(s2);
    bench_report("mp_sem_pingpong", s, n);
    free(s);
}

/* ---- Condition ping-pong ------------------------------------------------ */

/* One turn of one side, the same for both sides and both variants: take the
 * lock, wait until the turn word says it is this side's turn, hand the turn
 * to the other side, notify one waiter, drop the lock.  The parent's turn
 * i+1 cannot begin before the child's turn i has ended: the time of one of
 * the parent's turns is one round trip. */
typedef struct turn_arg {
    volatile int32_t *turn;
    int32_t me;
} turn_arg;

static bool my_turn(void *arg)
{
    turn_arg *t = arg;
    return *t->turn == t->me;
}

static void mp_turn(mp_condition *c, turn_arg *t)
{
    if (__builtin_expect(mp_condition_acquire(c, MP_FOREVER) != 0, 0))
        die("mp_condition_acquire", EIO);
    if (__builtin_expect(mp_condition_wait_for(c, my_turn, t, MP_FOREVER) != 0, 0))
        die("mp_condition_wait_for", EIO);
    *t->turn = 1 - t->me;
    if (__builtin_expect(mp_condition_notify(c, 1) != 0, 0))
        die("mp_condition_notify", EIO);
    if (__builtin_expect(mp_condition_release(c) != 0, 0))
        die("mp_condition_release", EIO);
}

/* The floor's shared state: a process-shared (not robust) pthread mutex and
 * condvar and the turn word, in MAP_SHARED anonymous memory. */
typedef struct raw_cond {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    volatile int32_t turn;
} raw_cond;

static void raw_turn(raw_cond *rc, int32_t me)
{
    int r = pthread_mutex_lock(&rc->mutex);
    if (__builtin_expect(r != 0, 0))
        die("pthread_mutex_lock", r);
    while (rc->turn != me)
        if ((r = pthread_cond_wait(&rc->cond, &rc->mutex)) != 0)
            die("pthread_cond_wait", r);
    rc->turn = 1 - me;
    if ((r = pthread_cond_signal(&rc->cond)) != 0)
        die("pthread_cond_signal", r);
    if ((r = pthread_mutex_unlock(&rc->mutex)) != 0)
        die("pthread_mutex_unlock", r);
}

/* args: (int turns, int cpu, ptr raw_cond | condition, value turn) */
static int cond_ponger(const mp_args *a)
{
    int64_t n = mp_args_int(a, 0);
    pin((int)mp_args_int(a, 1));
    if (mp_args_count(a) == 3) {
        raw_cond *rc = mp_args_ptr(a, 2);
        for (int64_t i = 0; i < n; i++)
            raw_turn(rc, 1);
    } else {
        turn_arg t = {mp_value_ptr(mp_args_value(a, 3)), 1};
        mp_condition *c = mp_args_condition(a, 2);
        for (int64_t i = 0; i < n; i++)
            mp_turn(c, &t);
    }
    return 0;
}

/* @n round trips, timed in batches of @batch: whether the child is woken
 * by the notify, or only later by the lock's release, or runs its whole
 * turn before the parent next looks, varies from turn to turn, so single
 * turns of the parent range from a fraction of a microsecond (the turn was
 * already back) to two round trips; a batch averages them. */
static void cond_pingpong(bool mp, size_t n, size_t batch, placement at)
{
    size_t samples = n / batch ? n / batch : 1, warm = samples / 10 + 1;
    size_t total = (samples + warm) * batch;
    mp_lock *l = NULL;
    mp_condition *c = NULL;
    mp_value *v = NULL;
    raw_cond *rc = NULL;
    turn_arg t = {NULL, 0};
    mp_args *args;
    check("mp_args_of", mp_args_of(&args, "li", (int64_t)total, at.child));
    if (mp) {
        /* a Lock, not the default RLock: Python's side uses Condition(Lock()) */
        check("mp_lock_new", mp_lock_new(&l));
        check("mp_condition_new", mp_condition_new(&c, l));
        check("mp_value_new", mp_value_new(&v, MP_INT32, false));
        check("mp_args_add_condition", mp_args_add_condition(args, c));
        check("mp_args_add_value", mp_args_add_value(args, v));
        t.turn = mp_value_ptr(v);
    } else {
        rc = shared_map(sizeof *rc);
        pthread_mutexattr_t ma;
        pthread_condattr_t ca;
        pthread_mutexattr_init(&ma);
        pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
        pthread_condattr_init(&ca);
        pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
        int r = pthread_mutex_init(&rc->mutex, &ma);
        if (r != 0 || (r = pthread_cond_init(&rc->cond, &ca)) != 0)
            die("pthread_*_init", r);
        pthread_mutexattr_destroy(&ma);
        pthread_condattr_destroy(&ca);
        check("mp_args_add_ptr", mp_args_add_ptr(args, rc));
    }
    cpu_set_t saved;
    mp_process *p = start_child(cond_ponger, args, at.parent, &saved);
    uint64_t *s = calloc(samples, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    for (size_t i = 0; i < samples + warm; i++) {
        uint64_t t0 = bench_now_ns();
        for (size_t j = 0; j < batch; j++) {
            if (mp)
                mp_turn(c, &t);
            else
                raw_turn(rc, 0);
        }
        if (i >= warm)
            s[i - warm] = bench_now_ns() - t0;
    }
    join_child(p, &saved);
    /* the child took its last turn after the parent's last: the turn is back */
    if (*(mp ? t.turn : &rc->turn) != 0) {
        fprintf(stderr, "bench_sync: the turn did not come back\n");
        exit(1);
    }
    if (mp) {
        mp_value_free(v);
        mp_condition_free(c);
        mp_lock_free(l);
    } else {
        pthread_cond_destroy(&rc->cond);
        pthread_mutex_destroy(&rc->mutex);
        munmap(rc, sizeof *rc);
    }
    bench_report_per(mp ? "mp_cond_pingpong" : "raw_cond_pingpong", s, samples, batch);
    free(s);
}

/* ---- Barrier, 2 parties ------------------------------------------------- */

/* The floor: a generation-counter barrier on two futex words.  Each arrival
 * reads the generation, then counts itself in; the last resets the count
 * and only then moves the generation on and wakes the sleepers, so no one
 * can arrive for the next pass before the count is back to 0. */
typedef struct ftx_barrier {
    _Atomic uint32_t count;
    char pad[60];
    _Atomic uint32_t gen;
} ftx_barrier;

static void ftx_barrier_wait(ftx_barrier *b, uint32_t parties)
{
    uint32_t g = atomic_load_explicit(&b->gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) + 1 == parties) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->gen, 1, memory_order_release);
        futex_wake(&b->gen, INT32_MAX);
    } else {
        while (atomic_load_explicit(&b->gen, memory_order_acquire) == g)
            futex_wait(&b->gen, g);
    }
}

/* args: (int passes, int cpu, ptr ftx_barrier | barrier) */
static int barrier_party(const mp_args *a)
{
    int64_t n = mp_args_int(a, 0);
    pin((int)mp_args_int(a, 1));
    if (mp_args_type(a, 2) == MP_ARG_PTR) {
        ftx_barrier *b = mp_args_ptr(a, 2);
        for (int64_t i = 0; i < n; i++)
            ftx_barrier_wait(b, 2);
    } else {
        mp_barrier *b = mp_args_barrier(a, 2);
        for (int64_t i = 0; i < n; i++)
            if (mp_barrier_wait(b, MP_FOREVER) < 0)
                return 1;
    }
    return 0;
}

/* @n passes, timed in batches of @batch: on one CPU the parent alternately
 * arrives first (and sleeps) and last (and goes straight through), so
 * single passes would be two populations; a batch averages the pair. */
static void barrier2(bool mp, size_t n, size_t batch, placement at)
{
    size_t samples = n / batch ? n / batch : 1, warm = samples / 10 + 1;
    size_t total = (samples + warm) * batch;
    mp_barrier *b = NULL;
    ftx_barrier *fb = NULL;
    mp_args *args;
    check("mp_args_of", mp_args_of(&args, "li", (int64_t)total, at.child));
    if (mp) {
        check("mp_barrier_new", mp_barrier_new(&b, 2, NULL, MP_FOREVER));
        check("mp_args_add_barrier", mp_args_add_barrier(args, b));
    } else {
        fb = shared_map(sizeof *fb);
        check("mp_args_add_ptr", mp_args_add_ptr(args, fb));
    }
    cpu_set_t saved;
    mp_process *p = start_child(barrier_party, args, at.parent, &saved);
    uint64_t *s = calloc(samples, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    for (size_t i = 0; i < samples + warm; i++) {
        uint64_t t0 = bench_now_ns();
        for (size_t j = 0; j < batch; j++) {
            if (mp)
                check("mp_barrier_wait", mp_barrier_wait(b, MP_FOREVER));
            else
                ftx_barrier_wait(fb, 2);
        }
        if (i >= warm)
            s[i - warm] = bench_now_ns() - t0;
    }
    join_child(p, &saved);
    if (mp) {
        if (mp_barrier_broken(b) || mp_barrier_n_waiting(b) != 0)
            die("barrier left broken or occupied", MP_EBROKEN);
        mp_barrier_free(b);
    } else {
        if (atomic_load(&fb->gen) != (uint32_t)total || atomic_load(&fb->count) != 0)
            die("futex barrier count", EIO);
        munmap(fb, sizeof *fb);
    }
    bench_report_per(mp ? "mp_barrier2" : "raw_barrier2", s, samples, batch);
    free(s);
}

/* ---- 100 MB shared array: create, fill, sum in a child -------------------- */

/* The values: element i is i mod 1024, so the sum of a whole number of
 * blocks of 1024 is exact in double arithmetic and known in advance. */
static void fill_array(double *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (double)(i & 1023);
}

static double expected_sum(size_t n)
{
    return (double)(n / 1024) * (1023.0 * 1024.0 / 2.0);
}

/* Four running sums, so the adds are not one serial chain and the loop runs
 * at the speed of memory (all partial sums are exact integers). */
static double sum_array(const double *a, size_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i];
        s1 += a[i + 1];
        s2 += a[i + 2];
        s3 += a[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i];
    return (s0 + s1) + (s2 + s3);
}

/* args: (array a, value result) */
static int mp_summer(const mp_args *a)
{
    mp_array *arr = mp_args_array(a, 0);
    *(double *)mp_value_ptr(mp_args_value(a, 1)) =
        sum_array(mp_array_data(arr), mp_array_len(arr));
    return 0;
}

static void check_sum(double got, size_t n)
{
    if (got != expected_sum(n)) {
        fprintf(stderr, "bench_sync: array sum %.1f, expected %.1f\n", got, expected_sum(n));
        exit(1);
    }
}

/* multiproc: mp_array_new (no lock) + fill; a "fork" child given the array
 * sums it into a RawValue-like mp_value; join; check; mp_array_free.
 * @sum_only: the array is made and filled before the clock starts and freed
 * after it stops. */
static void mp_array_sum(size_t n, size_t samples, bool sum_only)
{
    size_t warm = 1;
    mp_value *res;
    check("mp_value_new", mp_value_new(&res, MP_DOUBLE, false));
    double *result = mp_value_ptr(res);
    uint64_t *s = calloc(samples, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    for (size_t i = 0; i < samples + warm; i++) {
        mp_array *arr = NULL;
        *result = 0;
        if (sum_only) {
            check("mp_array_new", mp_array_new(&arr, MP_DOUBLE, n, NULL, false));
            fill_array(mp_array_data(arr), n);
        }
        uint64_t t0 = bench_now_ns();
        if (!sum_only) {
            check("mp_array_new", mp_array_new(&arr, MP_DOUBLE, n, NULL, false));
            fill_array(mp_array_data(arr), n);
        }
        mp_args *args;
        check("mp_args_of", mp_args_of(&args, "AV", arr, res));
        cpu_set_t saved;
        mp_process *p = start_child(mp_summer, args, -1, &saved);
        join_child(p, &saved);
        check_sum(*result, n);
        if (!sum_only)
            mp_array_free(arr);
        uint64_t t1 = bench_now_ns();
        if (sum_only)
            mp_array_free(arr);
        if (i >= warm)
            s[i - warm] = t1 - t0;
    }
    mp_value_free(res);
    bench_report(sum_only ? "mp_array100m_sum" : "mp_array100m", s, samples);
    free(s);
}

/* The floor's array: memfd_create + ftruncate + mmap, filled. */
static double *raw_array_new(size_t n, int *fd)
{
    size_t bytes = n * sizeof(double);
    *fd = memfd_create("bench_array", MFD_CLOEXEC);
    if (*fd < 0)
        die("memfd_create", errno);
    if (ftruncate(*fd, (off_t)bytes) < 0)
        die("ftruncate", errno);
    double *a = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
    if (a == MAP_FAILED)
        die("mmap", errno);
    fill_array(a, n);
    return a;
}

static void raw_array_free(double *a, size_t n, int fd)
{
    if (munmap(a, n * sizeof(double)) < 0 || close(fd) < 0)
        die("munmap/close", errno);
}

/* The floor: raw_array_new; fork; the child sums into a shared page and
 * _exits; waitpid; check; munmap + close.  @sum_only as for mp_array_sum. */
static void raw_array_sum(size_t n, size_t samples, bool sum_only)
{
    size_t warm = 1;
    volatile double *result = shared_map(4096);
    uint64_t *s = calloc(samples, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    for (size_t i = 0; i < samples + warm; i++) {
        int fd = -1;
        double *a = NULL;
        *result = 0;
        if (sum_only)
            a = raw_array_new(n, &fd);
        uint64_t t0 = bench_now_ns();
        if (!sum_only)
            a = raw_array_new(n, &fd);
        pid_t pid = fork();
        if (pid < 0)
            die("fork", errno);
        if (pid == 0) {
            *result = sum_array(a, n);
            _exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("waitpid", ECHILD);
        check_sum(*result, n);
        if (!sum_only)
            raw_array_free(a, n, fd);
        uint64_t t1 = bench_now_ns();
        if (sum_only)
            raw_array_free(a, n, fd);
        if (i >= warm)
            s[i - warm] = t1 - t0;
    }
    munmap((void *)result, 4096);
    bench_report(sum_only ? "raw_array100m_sum" : "raw_array100m", s, samples);
    free(s);
}

/* A count that the benchmarks' int arithmetic takes. */
static size_t count(const char *s)
{
    size_t v = bench_count(s);
    if (v > INT32_MAX / 4) {
        fprintf(stderr, "%s: a count up to %d is needed\n", program_invocation_short_name,
                INT32_MAX / 4);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    size_t nu = 3000, batch = 1000, nc = 100, k = 10000, np = 20000, nbatch = 100;
    size_t na = 10, mb = 100;
    const char *place = "same";
    static const char *const groups[] = {"uncontended", "contended", "pingpong", "sem",
                                         "cond", "barrier", "array"};
    enum { NGROUPS = sizeof groups / sizeof groups[0] };
    bool run[NGROUPS] = {false}, any = false;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (argv[i][0] != '-') {
            size_t g = 0;
            while (g < NGROUPS && strcmp(argv[i], groups[g]) != 0)
                g++;
            if (g == NGROUPS)
                goto usage;
            run[g] = any = true;
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
        else if (strcmp(argv[i], "-B") == 0)
            nbatch = count(next);
        else if (strcmp(argv[i], "-A") == 0)
            na = count(next);
        else if (strcmp(argv[i], "-M") == 0)
            mb = count(next);
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
    for (size_t g = 0; g < NGROUPS; g++)
        run[g] = run[g] || !any;
    if (run[0])
        uncontended(nu, batch);
    if (run[1]) {
        contended("mp_lock_contended", KIND_MP, nc, k, split);
        contended("raw_pthread_robust_contended", KIND_RAW, nc, k, split);
        contended("raw_pthread_robust_pi_contended", KIND_RAW_PI, nc, k, split);
    }
    if (run[2]) {
        pingpong(true, np, ping);
        pingpong(false, np, ping);
    }
    if (run[3])
        sem_pingpong(np, ping);
    if (run[4]) {
        cond_pingpong(true, np, nbatch, ping);
        cond_pingpong(false, np, nbatch, ping);
    }
    if (run[5]) {
        barrier2(true, np, nbatch, ping);
        barrier2(false, np, nbatch, ping);
    }
    if (run[6]) {
        size_t n = mb * (1024 * 1024 / sizeof(double));
        mp_array_sum(n, na, false);
        raw_array_sum(n, na, false);
        mp_array_sum(n, na, true);
        raw_array_sum(n, na, true);
    }
    return 0;
usage:
    fprintf(stderr, "usage: %s [-u SAMPLES] [-b BATCH] [-c ROUNDS] [-k OPS] [-n ROUND_TRIPS] "
                    "[-B PASSES_PER_SAMPLE] [-A ARRAY_SAMPLES] [-M ARRAY_MB] "
                    "[-a same|split|free] "
                    "[uncontended|contended|pingpong|sem|cond|barrier|array ...]\n", argv[0]);
    return 2;
}
