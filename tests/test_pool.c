/*
 * Pool under every start method: PYTHON-SEMANTICS section 17 where it
 * applies to C (map, imap, apply, async results, callbacks, close, join,
 * terminate, initializer), then what Python's Pool cannot do: a worker
 * killed by a signal, calling exit or crashing fails only its item and is
 * replaced; task_timeout; maxtasksperchild; workers die with a killed
 * owner; a multi-threaded parent; map functions in shared libraries; and a
 * crash test that SIGKILLs random workers during 100 000-item maps.
 *
 * Workers reach shared objects (a counter, a gate event, a barrier, pid
 * slots) through the pool initializer, which keeps a copy of its initargs
 * in a global: the one way a map function gets state under spawn.
 */
#include "mp_test.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- what workers run -------------------------------------------------------- */

/* In a worker: the initializer's arguments, kept (see init_shared). */
static mp_args *g_shared;

/* Initializer: keep the shared objects for the map functions. */
static int init_shared(const mp_args *a)
{
    if (g_shared != NULL)
        return 91; /* runs once per worker process */
    return mp__args_dup(a, &g_shared) == 0 ? 0 : 90;
}

static _Atomic int64_t *w_counter(void)
{
    return (_Atomic int64_t *)mp_value_ptr(mp_args_value(g_shared, 0));
}

static int64_t *w_slots(size_t *n)
{
    mp_array *arr = mp_args_array(g_shared, 3);
    *n = mp_array_len(arr);
    return mp_array_data(arr);
}

enum {
    ACT_NONE = 0,
    ACT_FAIL,       /* return the item's code */
    ACT_KILL,       /* raise(SIGKILL) */
    ACT_EXIT,       /* exit(code) */
    ACT_SEGV,       /* a real segmentation fault */
    ACT_HANG,       /* never return */
    ACT_GATE,       /* wait for the gate event */
    ACT_BARRIER,    /* wait at the barrier (one item per worker) */
    ACT_COUNT_HANG, /* bump the counter, then never return */
    ACT_SIGNAL,     /* die by the signal in code, a real fault where it can be */
};

typedef struct witem {
    int64_t x;
    int32_t act, code;
} witem;

typedef struct wres {
    int64_t sq;
    int64_t pid;
} wres;

_Static_assert(sizeof(witem) % 8 == 0 && sizeof(wres) % 8 == 0, "8-byte aligned items");

#if defined(__SANITIZE_ADDRESS__)
#define MP_TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define MP_TEST_LSAN 1
#endif
#endif
#ifndef MP_TEST_LSAN
#define MP_TEST_LSAN 0
#endif

#if MP_TEST_LSAN
static int g_exit_code;

static void exit_now(void)
{
    _exit(g_exit_code);
}
#endif

static _Noreturn void hang(void)
{
    for (;;)
        pause();
}

static _Noreturn void crash_segv(void)
{
    /* the default action, not a sanitizer's handler: the worker dies by
     * the signal as it would in a plain build */
    signal(SIGSEGV, SIG_DFL);
    void *pg = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pg != MAP_FAILED)
        *(volatile int *)pg = 1;
    raise(SIGSEGV);
    _exit(111);
}

/* 1 / @zero: the trap itself, which UBSan would report and end on first. */
__attribute__((no_sanitize("undefined"))) static int divide(int one, volatile int *zero)
{
    return one / *zero;
}

/* Die by @sig with its default action (a sanitizer may have set a handler),
 * by the fault that raises it where there is one. */
static _Noreturn void die_by(int sig)
{
    signal(sig, SIG_DFL);
    if (sig == SIGBUS) {
        /* a page past the end of an empty file */
        int fd = memfd_create("mp-test-sigbus", MFD_CLOEXEC);
        void *pg = fd >= 0 ? mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                           : MAP_FAILED;
        if (pg != MAP_FAILED)
            *(volatile int *)pg = 1;
    } else if (sig == SIGFPE) {
        volatile int zero = 0;
        volatile int q = divide(1, &zero); /* traps on x86; elsewhere raise() below */
        (void)q;
    } else if (sig == SIGABRT) {
        abort();
    }
    raise(sig);
    _exit(111);
}

/* The general map function: an action, then x*x and this worker's pid. */
static int m_work(const void *item, void *result)
{
    const witem *it = item;
    wres *r = result;
    switch (it->act) {
    case ACT_FAIL:
        return it->code;
    case ACT_KILL:
        raise(SIGKILL);
        break;
    case ACT_EXIT:
#if MP_TEST_LSAN
        /* LeakSanitizer's check at exit would take this worker's copy of
         * the parent's heap for leaks (a worker forked from the pool's
         * thread has no other thread's stack) and change the exit status:
         * end at the first exit handler instead. */
        g_exit_code = it->code;
        atexit(exit_now);
#endif
        exit(it->code);
    case ACT_SEGV:
        crash_segv();
    case ACT_HANG:
        hang();
    case ACT_SIGNAL:
        die_by(it->code);
    case ACT_GATE:
        if (g_shared == NULL || mp_event_wait(mp_args_event(g_shared, 1), 60) != 0)
            return 99;
        break;
    case ACT_BARRIER:
        if (g_shared == NULL || mp_barrier_wait(mp_args_barrier(g_shared, 2), 60) < 0)
            return 98;
        break;
    case ACT_COUNT_HANG:
        if (g_shared == NULL)
            return 97;
        atomic_fetch_add(w_counter(), 1);
        hang();
    default:
        break;
    }
    r->pid = getpid();
    r->sq = it->x * it->x;
    return 0;
}

/* Python's sqr over plain int64 items. */
static int m_square(const void *item, void *result)
{
    const int64_t *x = item;
    *(int64_t *)result = *x * *x;
    return 0;
}

/* Fails items with x % 17 == 7 with code 1000 + x. */
static int m_fail_some(const void *item, void *result)
{
    const int64_t *x = item;
    if (*x % 17 == 7)
        return (int)(1000 + *x);
    *(int64_t *)result = *x * *x;
    return 0;
}

/* starmap: a struct of arguments per item. */
typedef struct pair {
    int64_t a, b;
} pair;

static int m_mul(const void *item, void *result)
{
    const pair *p = item;
    *(int64_t *)result = p->a * p->b;
    return 0;
}

/* Apply tasks. */
static int t_sqr(const mp_args *a, mp_buf *out)
{
    int64_t v[2] = {mp_args_int(a, 0) * mp_args_int(a, 0), getpid()};
    return mp_buf_append(out, v, sizeof v) == 0 ? 0 : 1;
}

static int t_fail(const mp_args *a, mp_buf *out)
{
    (void)out;
    return (int)mp_args_int(a, 0);
}

static int t_kill(const mp_args *a, mp_buf *out)
{
    (void)a, (void)out;
    raise(SIGKILL);
    return 0;
}

static int t_hang(const mp_args *a, mp_buf *out)
{
    (void)a, (void)out;
    hang();
}

static int t_count(const mp_args *a, mp_buf *out)
{
    int64_t n = (int64_t)mp_args_count(a);
    return mp_buf_append(out, &n, sizeof n) == 0 ? 0 : 1;
}

/* A string and bytes in, their concatenation out. */
static int t_concat(const mp_args *a, mp_buf *out)
{
    size_t n;
    const void *b = mp_args_bytes(a, 1, &n);
    const char *s = mp_args_str(a, 0);
    if (mp_buf_append(out, s, strlen(s)) != 0 || mp_buf_append(out, b, n) != 0)
        return 1;
    return mp_args_double(a, 2) == 2.5 ? 0 : 2;
}

/* ---- parent helpers --------------------------------------------------------- */

static void check_imap(mp_pool *p, size_t n, size_t chunksize, bool ordered);

/* The objects workers share, in the initializer's args:
 * 0 counter (int64), 1 gate (event), 2 barrier, 3 pid slots (int64 array). */
typedef struct shared {
    mp_value *counter;
    mp_event *gate;
    mp_barrier *barrier;
    mp_array *slots;
    mp_args *args;
} shared;

#define NSLOTS 64

static void shared_new(shared *s, unsigned parties)
{
    ASSERT_OK(mp_value_new(&s->counter, MP_INT64, false));
    ASSERT_OK(mp_event_new(&s->gate));
    ASSERT_OK(mp_barrier_new(&s->barrier, parties, NULL, MP_FOREVER));
    ASSERT_OK(mp_array_new(&s->slots, MP_INT64, NSLOTS, NULL, false));
    ASSERT_OK(mp_args_new(&s->args));
    ASSERT_OK(mp_args_add_value(s->args, s->counter));
    ASSERT_OK(mp_args_add_event(s->args, s->gate));
    ASSERT_OK(mp_args_add_barrier(s->args, s->barrier));
    ASSERT_OK(mp_args_add_array(s->args, s->slots));
}

static void shared_free(shared *s)
{
    mp_args_free(s->args);
    mp_value_free(s->counter);
    mp_event_free(s->gate);
    mp_barrier_free(s->barrier);
    mp_array_free(s->slots);
    memset(s, 0, sizeof *s);
}

static int64_t counter_of(shared *s)
{
    return atomic_load((_Atomic int64_t *)mp_value_ptr(s->counter));
}

static mp_pool *pool_opts(const mp_pool_opts *o)
{
    mp_pool *p = NULL;
    ASSERT_OK(mp_pool_new(&p, o));
    ASSERT_TRUE(p != NULL);
    return p;
}

/* A pool of @n workers; with @s, each keeps the shared objects. */
static mp_pool *pool_with(mp_context *ctx, int n, shared *s)
{
    mp_pool_opts o = {.ctx = ctx, .processes = n};
    if (s != NULL) {
        o.initializer = init_shared;
        o.initargs = s->args;
    }
    return pool_opts(&o);
}

static void close_join_free(mp_pool *p)
{
    ASSERT_OK(mp_pool_close(p));
    ASSERT_OK(mp_pool_join(p, 60));
    mp_pool_free(p);
}

static witem *items_new(size_t n, int64_t base)
{
    witem *it = calloc(n ? n : 1, sizeof *it);
    ASSERT_TRUE(it != NULL);
    for (size_t i = 0; i < n; i++)
        it[i].x = base + (int64_t)i;
    return it;
}

static int64_t *ints_new(size_t n, int64_t base)
{
    int64_t *v = calloc(n ? n : 1, sizeof *v);
    ASSERT_TRUE(v != NULL);
    for (size_t i = 0; i < n; i++)
        v[i] = base + (int64_t)i;
    return v;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* How many distinct values among @n (sorts a copy). */
static size_t distinct(const int64_t *v, size_t n)
{
    int64_t *c = malloc((n ? n : 1) * sizeof *c);
    ASSERT_TRUE(c != NULL);
    memcpy(c, v, n * sizeof *c);
    qsort(c, n, sizeof *c, cmp_i64);
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        d += i == 0 || c[i] != c[i - 1];
    free(c);
    return d;
}

/* The pool has @n live workers: @n items that each wait at the barrier
 * (parties @n) all pass, on @n different processes. */
static void check_all_workers(mp_pool *p, int n)
{
    witem it[16];
    wres r[16];
    int64_t pids[16];
    ASSERT_LE(n, 16);
    for (int i = 0; i < n; i++)
        it[i] = (witem){.x = 100 + i, .act = ACT_BARRIER};
    memset(r, 0, sizeof r);
    mp_task_error e = {0};
    ASSERT_OK(mp_pool_map(p, m_work, it, (size_t)n, sizeof *it, r, sizeof *r, 1, &e));
    for (int i = 0; i < n; i++) {
        ASSERT_EQ((100 + i) * (100 + i), r[i].sq);
        ASSERT_GT(r[i].pid, 0);
        pids[i] = r[i].pid;
    }
    ASSERT_EQ((size_t)n, distinct(pids, (size_t)n));
}

/* Poll @what until it holds, failing after @timeout seconds. */
#define WAIT_FOR(what, timeout)                                                          \
    do {                                                                                 \
        double wf_until_ = mp_monotonic() + (timeout);                                   \
        while (!(what)) {                                                                \
            if (mp_monotonic() > wf_until_)                                              \
                MP__FAIL("WAIT_FOR(%s): not within %g s", #what, (double)(timeout));     \
            usleep(2000);                                                                \
        }                                                                                \
    } while (0)

/* ============================================================================ */
/* Python semantics                                                              */
/* ============================================================================ */

/* test_map, test_starmap, test_empty_iterable (map), default chunksize. */
MP_TEST(map_squares_in_order, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_pool *p = pool_with(ctx, 4, NULL);
    int64_t *x = ints_new(1000, 0), r[1000];
    mp_task_error e = {0};

    memset(r, 0xff, sizeof r);
    ASSERT_OK(mp_pool_map(p, m_square, x, 10, 8, r, 8, 1, &e));
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(i * i, r[i]);
    ASSERT_EQ(-1, r[10]); /* nothing written past n */

    memset(r, 0xff, sizeof r);
    ASSERT_OK(mp_pool_map(p, m_square, x, 100, 8, r, 8, 20, &e));
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(i * i, r[i]);

    memset(r, 0xff, sizeof r);
    ASSERT_OK(mp_pool_map(p, m_square, x, 0, 8, r, 8, 1, &e));
    ASSERT_EQ(-1, r[0]);
    ASSERT_OK(mp_pool_map(p, m_square, NULL, 0, 8, NULL, 8, 0, NULL));

    /* chunksize 0: Python's choice; larger than n; odd sizes */
    size_t cs[] = {0, 1, 3, 7, 999, 5000};
    for (size_t k = 0; k < sizeof cs / sizeof *cs; k++) {
        memset(r, 0, sizeof r);
        ASSERT_OK(mp_pool_map(p, m_square, x, 1000, 8, r, 8, cs[k], NULL));
        for (int i = 0; i < 1000; i++)
            ASSERT_EQ((int64_t)i * i, r[i]);
    }

    /* starmap: mul over zip(range(10), range(9, -1, -1)), chunksize 1 and 20 */
    pair pr[10];
    for (int i = 0; i < 10; i++)
        pr[i] = (pair){i, 9 - i};
    for (size_t c = 1; c <= 20; c += 19) {
        memset(r, 0, sizeof r);
        ASSERT_OK(mp_pool_map(p, m_mul, pr, 10, sizeof *pr, r, 8, c, &e));
        for (int i = 0; i < 10; i++)
            ASSERT_EQ(i * (9 - i), r[i]);
    }
    free(x);
    close_join_free(p);
}

/* More tasks than the pool's task table holds (4096 entries), chunksize 1:
 * map and imap complete, in order. */
MP_TEST(map_many_tasks, .variants = MP_START_METHODS, .timeout_s = 60)
{
    enum { N = 10000 };
    mp_pool *p = pool_with(ctx, 3, NULL);
    int64_t *x = ints_new(N, 0), *r = calloc(N, sizeof *r);
    ASSERT_TRUE(r != NULL);
    ASSERT_OK(mp_pool_map(p, m_square, x, N, 8, r, 8, 1, NULL));
    for (int i = 0; i < N; i++)
        ASSERT_EQ((int64_t)i * i, r[i]);
    free(x);
    free(r);
    check_imap(p, N, 1, true);
    check_imap(p, N, 1, false);
    close_join_free(p);
}

/* The default chunksize is ceil(n / (4 × workers)).  With maxtasksperchild
 * 1 every chunk runs in a fresh process, so the result pids change exactly
 * at chunk boundaries. */
static void check_chunks(mp_pool *p, size_t n, size_t chunksize, size_t want)
{
    witem *it = items_new(n, 0);
    wres *r = calloc(n, sizeof *r);
    ASSERT_TRUE(r != NULL);
    ASSERT_OK(mp_pool_map(p, m_work, it, n, sizeof *it, r, sizeof *r, chunksize, NULL));
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ((int64_t)(i * i), r[i].sq);
        if (i > 0 && (r[i].pid == r[i - 1].pid) != (i % want != 0))
            MP__FAIL("n %zu chunksize %zu: item %zu ran in pid %jd, item %zu in %jd; want "
                     "chunks of %zu",
                     n, chunksize, i - 1, (intmax_t)r[i - 1].pid, i, (intmax_t)r[i].pid, want);
    }
    free(it);
    free(r);
}

MP_TEST(map_default_chunksize, .variants = MP_START_METHODS, .timeout_s = 90)
{
    mp_pool_opts o = {.ctx = ctx, .processes = 2, .maxtasksperchild = 1};
    mp_pool *p = pool_opts(&o);
    check_chunks(p, 80, 0, 10); /* ceil(80 / 8) */
    check_chunks(p, 81, 0, 11); /* ceil(81 / 8) */
    check_chunks(p, 5, 0, 1);
    check_chunks(p, 30, 7, 7);
    close_join_free(p);
}

/* test_apply, test_async; strings, bytes and doubles travel; a failing
 * task; descriptors do not travel. */
MP_TEST(apply, .variants = MP_START_METHODS)
{
    mp_pool *p = pool_with(ctx, 2, NULL);
    mp_args *a;
    mp_buf out = MP_BUF_INIT;

    ASSERT_OK(mp_args_of(&a, "l", (int64_t)5));
    ASSERT_OK(mp_pool_apply(p, t_sqr, a, &out));
    ASSERT_EQ(16, out.len);
    int64_t v[2];
    memcpy(v, out.data, sizeof v);
    ASSERT_EQ(25, v[0]);
    ASSERT_NE(getpid(), v[1]);
    mp_args_free(a);

    ASSERT_OK(mp_args_of(&a, "sbd", "hello, ", "world\0!", (size_t)7, 2.5));
    ASSERT_OK(mp_pool_apply(p, t_concat, a, &out));
    ASSERT_EQ(14, out.len);
    ASSERT_MEMEQ("hello, world\0!", out.data, 14);
    mp_args_free(a);

    /* a non-zero return fails the task with its code */
    ASSERT_OK(mp_args_of(&a, "i", 42));
    ASSERT_ERR(MP_ETASK, mp_pool_apply(p, t_fail, a, &out));
    mp_async *r;
    ASSERT_OK(mp_pool_apply_async(p, t_fail, a, NULL, NULL, &r));
    mp_task_error e = {0};
    ASSERT_ERR(MP_ETASK, mp_async_get(r, 60, &out, &e));
    ASSERT_EQ(42, e.code);
    ASSERT_EQ(0, e.index);
    ASSERT_EQ(0, mp_async_successful(r));
    mp_async_free(r);
    mp_args_free(a);

    /* apply_async(sqr, (7,)).get() */
    ASSERT_OK(mp_args_of(&a, "i", 7));
    ASSERT_OK(mp_pool_apply_async(p, t_sqr, a, NULL, NULL, &r));
    ASSERT_OK(mp_async_get(r, 60, &out, NULL));
    memcpy(v, out.data, sizeof v);
    ASSERT_EQ(49, v[0]);
    ASSERT_EQ(1, mp_async_successful(r));
    mp_async_free(r);
    mp_args_free(a);

    /* no arguments at all: an empty list */
    ASSERT_OK(mp_pool_apply(p, t_count, NULL, &out));
    ASSERT_EQ(8, out.len);
    ASSERT_EQ(0, ((int64_t *)out.data)[0]);

    /* descriptors do not travel to pool workers */
    ASSERT_OK(mp_args_of(&a, "f", 1));
    ASSERT_ERR(MP_EINVAL, mp_pool_apply(p, t_fail, a, &out));
    mp_args_free(a);

    mp_buf_free(&out);
    close_join_free(p);
}

/* test_async_error_callback, test_map_async_callbacks: the done callback
 * runs once per task, on success and on failure, with the result ready. */
typedef struct cbslot {
    atomic_int calls, ready, successful;
} cbslot;

static sem_t cb_sem;

static void on_done(mp_async *r, void *udata)
{
    cbslot *s = udata;
    atomic_fetch_add(&s->calls, 1);
    atomic_store(&s->ready, mp_async_ready(r));
    atomic_store(&s->successful, mp_async_successful(r));
    sem_post(&cb_sem);
}

static void sem_wait_deadline(sem_t *s, double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)seconds;
    int rc;
    while ((rc = sem_timedwait(s, &ts)) != 0 && errno == EINTR)
        ;
    if (rc != 0)
        MP__FAIL("sem_timedwait: %s", strerror(errno));
}

MP_TEST(apply_async_callback_once, .variants = MP_START_METHODS, .timeout_s = 60)
{
    enum { N = 40, BAD = 13 };
    static cbslot slots[N];
    ASSERT_EQ(0, sem_init(&cb_sem, 0, 0));
    mp_pool *p = pool_with(ctx, 3, NULL);
    mp_async *r[N];
    for (int i = 0; i < N; i++) {
        mp_args *a;
        ASSERT_OK(mp_args_of(&a, "i", i == BAD ? 7 : i));
        ASSERT_OK(mp_pool_apply_async(p, i == BAD ? t_fail : t_sqr, a, on_done, &slots[i], &r[i]));
        mp_args_free(a);
    }
    for (int i = 0; i < N; i++)
        sem_wait_deadline(&cb_sem, 60);
    mp_buf out = MP_BUF_INIT;
    for (int i = 0; i < N; i++) {
        mp_task_error e = {0};
        if (i == BAD) {
            ASSERT_ERR(MP_ETASK, mp_async_get(r[i], 0, &out, &e));
            ASSERT_EQ(7, e.code);
        } else {
            ASSERT_OK(mp_async_get(r[i], 0, &out, &e));
            ASSERT_EQ(16, out.len);
            ASSERT_EQ(i * i, ((int64_t *)out.data)[0]);
        }
    }
    /* once the pool is joined no callback can run any more: each ran once */
    ASSERT_OK(mp_pool_close(p));
    ASSERT_OK(mp_pool_join(p, 60));
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(1, atomic_load(&slots[i].calls));
        ASSERT_EQ(1, atomic_load(&slots[i].ready));
        ASSERT_EQ(i == BAD ? 0 : 1, atomic_load(&slots[i].successful));
        mp_async_free(r[i]);
    }
    ASSERT_EQ(-1, sem_trywait(&cb_sem));
    mp_buf_free(&out);
    mp_pool_free(p);
    sem_destroy(&cb_sem);
}

/* map_async + get/wait/ready/successful, with the items held at a gate
 * so that "not ready" is certain. */
MP_TEST(map_async_get_wait_ready, .variants = MP_START_METHODS)
{
    shared s;
    shared_new(&s, 2);
    mp_pool *p = pool_with(ctx, 2, &s);
    enum { N = 10 };
    witem *it = items_new(N, 0);
    for (int i = 0; i < N; i++)
        it[i].act = ACT_GATE;
    wres r[N];
    memset(r, 0, sizeof r);
    mp_async *a;
    ASSERT_OK(mp_pool_map_async(p, m_work, it, N, sizeof *it, r, sizeof *r, 0, &a));
    free(it); /* the pool has its own copy of the items */
    ASSERT_FALSE(mp_async_ready(a));
    ASSERT_ERR(MP_EINVAL, mp_async_successful(a));
    ASSERT_ERR(MP_ETIMEDOUT, mp_async_wait(a, 0.05));
    ASSERT_ERR(MP_ETIMEDOUT, mp_async_wait(a, 0));
    mp_task_error e = {0};
    ASSERT_ERR(MP_ETIMEDOUT, mp_async_get(a, 0.05, NULL, &e));
    ASSERT_FALSE(mp_async_ready(a));
    ASSERT_EQ(0, r[0].sq + r[N - 1].sq); /* nothing copied out yet */
    ASSERT_OK(mp_event_set(s.gate));
    ASSERT_OK(mp_async_wait(a, 60));
    ASSERT_TRUE(mp_async_ready(a));
    ASSERT_EQ(1, mp_async_successful(a));
    ASSERT_OK(mp_async_get(a, 0, NULL, &e));
    ASSERT_OK(mp_async_get(a, MP_FOREVER, NULL, NULL)); /* again: same outcome */
    for (int i = 0; i < N; i++)
        ASSERT_EQ(i * i, r[i].sq);
    mp_async_free(a);

    /* test_map_chunksize, test_empty_iterable: an empty map is ready at once */
    ASSERT_OK(mp_pool_map_async(p, m_square, NULL, 0, 8, NULL, 8, 1, &a));
    ASSERT_TRUE(mp_async_ready(a));
    ASSERT_OK(mp_async_get(a, 0, NULL, NULL));
    ASSERT_EQ(1, mp_async_successful(a));
    size_t done = 9, total = 9;
    ASSERT_OK(mp_async_progress(a, &done, &total));
    ASSERT_EQ(0, done);
    ASSERT_EQ(0, total);
    mp_async_free(a);

    close_join_free(p);
    shared_free(&s);
}

/* Progress of a long map_async: the first half of the items are plain, the
 * second half wait at a gate, so done stops at exactly half, then reaches
 * the total once the gate opens; it never goes back. */
MP_TEST(map_async_progress, .variants = MP_START_METHODS, .timeout_s = 60)
{
    shared s;
    shared_new(&s, 2);
    mp_pool *p = pool_with(ctx, 2, &s);
    enum { N = 1000, HALF = N / 2 };
    witem *it = items_new(N, 0);
    for (int i = HALF; i < N; i++)
        it[i].act = ACT_GATE;
    wres *r = calloc(N, sizeof *r);
    ASSERT_TRUE(r != NULL);
    mp_async *a;
    ASSERT_OK(mp_pool_map_async(p, m_work, it, N, sizeof *it, r, sizeof *r, 10, &a));
    size_t done = 0, total = 0, last = 0;
    double until = mp_monotonic() + 30;
    do {
        ASSERT_OK(mp_async_progress(a, &done, &total));
        ASSERT_EQ(N, total);
        ASSERT_GE(done, last);
        ASSERT_LE(done, HALF);
        last = done;
        ASSERT_LT(mp_monotonic(), until);
        if (done < HALF)
            usleep(1000);
    } while (done < HALF);
    ASSERT_FALSE(mp_async_ready(a));
    ASSERT_OK(mp_event_set(s.gate));
    while (!mp_async_ready(a)) {
        ASSERT_OK(mp_async_progress(a, &done, &total));
        ASSERT_GE(done, last);
        ASSERT_LE(done, N);
        last = done;
        ASSERT_LT(mp_monotonic(), until + 30);
        usleep(1000);
    }
    ASSERT_OK(mp_async_progress(a, &done, &total));
    ASSERT_EQ(N, done);
    ASSERT_EQ(N, total);
    ASSERT_OK(mp_async_get(a, 0, NULL, NULL));
    for (int i = 0; i < N; i++)
        ASSERT_EQ((int64_t)i * i, r[i].sq);
    mp_async_free(a);
    free(it);
    free(r);
    close_join_free(p);
    shared_free(&s);
}

/* test_imap, test_imap_unordered, test_empty_iterable (imap). */
static void check_imap(mp_pool *p, size_t n, size_t chunksize, bool ordered)
{
    int64_t *x = ints_new(n, 0);
    mp_imap *it;
    ASSERT_OK(mp_pool_imap(p, m_square, x, n, 8, 8, chunksize, ordered, &it));
    free(x);
    unsigned char *seen = calloc(n + 1, 1);
    ASSERT_TRUE(seen != NULL);
    for (size_t k = 0; k < n; k++) {
        int64_t v = -1;
        size_t idx = SIZE_MAX;
        mp_task_error e = {0};
        ASSERT_OK(mp_imap_next(it, &v, &idx, &e, 60));
        if (ordered)
            ASSERT_EQ(k, idx);
        ASSERT_LT(idx, n);
        ASSERT_EQ(0, seen[idx]);
        seen[idx] = 1;
        ASSERT_EQ((int64_t)(idx * idx), v);
    }
    ASSERT_ERR(MP_EOF, mp_imap_next(it, NULL, NULL, NULL, 60));
    ASSERT_ERR(MP_EOF, mp_imap_next(it, NULL, NULL, NULL, 0)); /* and stays there */
    free(seen);
    mp_imap_free(it);
}

MP_TEST(imap_ordered_and_unordered, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_pool *p = pool_with(ctx, 4, NULL);
    for (int ordered = 0; ordered <= 1; ordered++) {
        check_imap(p, 10, 1, ordered);
        check_imap(p, 1000, 100, ordered);
        check_imap(p, 1000, 0, ordered);
        check_imap(p, 0, 1, ordered);
    }
    close_join_free(p);
}

/* imap next(timeout) raises TimeoutError; a later next still returns it. */
MP_TEST(imap_next_timeout, .variants = MP_START_METHODS)
{
    shared s;
    shared_new(&s, 2);
    mp_pool *p = pool_with(ctx, 2, &s);
    witem *items = items_new(3, 5);
    for (int i = 0; i < 3; i++)
        items[i].act = ACT_GATE;
    for (int ordered = 1; ordered >= 0; ordered--) {
        ASSERT_OK(mp_event_clear(s.gate));
        mp_imap *it;
        ASSERT_OK(mp_pool_imap(p, m_work, items, 3, sizeof *items, sizeof(wres), 1, ordered, &it));
        wres r = {0};
        size_t idx = SIZE_MAX;
        double t0 = mp_monotonic();
        ASSERT_ERR(MP_ETIMEDOUT, mp_imap_next(it, &r, &idx, NULL, 0.1));
        ASSERT_GE(mp_monotonic() - t0, 0.09);
        ASSERT_ERR(MP_ETIMEDOUT, mp_imap_next(it, &r, &idx, NULL, 0));
        ASSERT_EQ(SIZE_MAX, idx);
        ASSERT_OK(mp_event_set(s.gate));
        int64_t sum = 0;
        for (int k = 0; k < 3; k++) {
            ASSERT_OK(mp_imap_next(it, &r, &idx, NULL, 60));
            if (ordered)
                ASSERT_EQ(k, idx);
            ASSERT_EQ((int64_t)(5 + idx) * (int64_t)(5 + idx), r.sq);
            sum += (int64_t)idx;
        }
        ASSERT_EQ(3, sum);
        ASSERT_ERR(MP_EOF, mp_imap_next(it, &r, &idx, NULL, 60));
        mp_imap_free(it);
    }
    free(items);
    close_join_free(p);
    shared_free(&s);
}

/* test_map_no_failfast: a failing item fails the map with the first
 * failing index and that item's code, once every chunk is done and every
 * other result written. */
MP_TEST(map_item_failure, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_pool *p = pool_with(ctx, 3, NULL);
    enum { N = 200 };
    int64_t *x = ints_new(N, 0), r[N];
    size_t cs[] = {1, 5, 0, 64};
    for (size_t k = 0; k < sizeof cs / sizeof *cs; k++) {
        memset(r, 0xff, sizeof r);
        mp_task_error e = {.index = 12345};
        ASSERT_ERR(MP_ETASK, mp_pool_map(p, m_fail_some, x, N, 8, r, 8, cs[k], &e));
        ASSERT_EQ(7, e.index);
        ASSERT_EQ(1007, e.code);
        for (int i = 0; i < N; i++)
            if (i % 17 != 7)
                ASSERT_EQ((int64_t)i * i, r[i]);
        /* the same through map_async */
        mp_async *a;
        memset(r, 0xff, sizeof r);
        ASSERT_OK(mp_pool_map_async(p, m_fail_some, x + 8, N - 8, 8, r, 8, cs[k], &a));
        e = (mp_task_error){0};
        ASSERT_ERR(MP_ETASK, mp_async_get(a, 60, NULL, &e));
        ASSERT_EQ(16, e.index); /* x = 24 */
        ASSERT_EQ(1024, e.code);
        ASSERT_EQ(0, mp_async_successful(a));
        size_t done, total;
        ASSERT_OK(mp_async_progress(a, &done, &total));
        ASSERT_EQ(N - 8, done);
        ASSERT_EQ(N - 8, total);
        for (int i = 0; i < N - 8; i++)
            if ((i + 8) % 17 != 7)
                ASSERT_EQ((int64_t)(i + 8) * (i + 8), r[i]);
        mp_async_free(a);
        /* err may be NULL */
        ASSERT_ERR(MP_ETASK, mp_pool_map(p, m_fail_some, x, N, 8, r, 8, cs[k], NULL));
    }
    free(x);
    close_join_free(p);
}

/* imap over a function that fails on some items: results up to the
 * failure, the failure, then the rest. */
MP_TEST(imap_item_failure, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_pool *p = pool_with(ctx, 3, NULL);
    enum { N = 60 };
    int64_t *x = ints_new(N, 0);
    for (int ordered = 1; ordered >= 0; ordered--) {
        for (size_t cs = 1; cs <= 4; cs += 3) {
            mp_imap *it;
            ASSERT_OK(mp_pool_imap(p, m_fail_some, x, N, 8, 8, cs, ordered, &it));
            unsigned char seen[N] = {0};
            int failures = 0;
            for (int k = 0; k < N; k++) {
                int64_t v = -1;
                size_t idx = SIZE_MAX;
                mp_task_error e = {0};
                int rc = mp_imap_next(it, &v, &idx, &e, 60);
                if (ordered)
                    ASSERT_EQ(k, idx);
                ASSERT_LT(idx, N);
                ASSERT_EQ(0, seen[idx]);
                seen[idx] = 1;
                if (idx % 17 == 7) {
                    ASSERT_ERR(MP_ETASK, rc);
                    ASSERT_EQ(idx, e.index);
                    ASSERT_EQ(1000 + (int)idx, e.code);
                    failures++;
                } else {
                    ASSERT_OK(rc);
                    ASSERT_EQ((int64_t)(idx * idx), v);
                }
            }
            ASSERT_EQ(4, failures); /* 7, 24, 41, 58 */
            ASSERT_ERR(MP_EOF, mp_imap_next(it, NULL, NULL, NULL, 60));
            mp_imap_free(it);
        }
    }
    free(x);
    close_join_free(p);
}

/* After close: no new work (ValueError "Pool not running"); join waits for
 * what was submitted.  join while running: ValueError. */
MP_TEST(close_join_rules, .variants = MP_START_METHODS)
{
    mp_pool *p = pool_with(ctx, 2, NULL);
    ASSERT_ERR(MP_EINVAL, mp_pool_join(p, 0));
    ASSERT_ERR(MP_EINVAL, mp_pool_join(p, 1));

    /* submitted before close: completes */
    enum { N = 500 };
    int64_t *x = ints_new(N, 0), r[N];
    mp_async *a;
    ASSERT_OK(mp_pool_map_async(p, m_square, x, N, 8, r, 8, 1, &a));
    mp_args *args;
    ASSERT_OK(mp_args_of(&args, "i", 9));
    mp_async *b;
    ASSERT_OK(mp_pool_apply_async(p, t_sqr, args, NULL, NULL, &b));
    ASSERT_OK(mp_pool_close(p));
    ASSERT_OK(mp_pool_close(p)); /* twice: no-op */

    mp_async *c = (mp_async *)1;
    mp_imap *it = (mp_imap *)1;
    mp_buf out = MP_BUF_INIT;
    ASSERT_ERR(MP_EINVAL, mp_pool_map(p, m_square, x, N, 8, r, 8, 0, NULL));
    ASSERT_ERR(MP_EINVAL, mp_pool_map_async(p, m_square, x, N, 8, r, 8, 0, &c));
    ASSERT_TRUE(c == NULL);
    ASSERT_ERR(MP_EINVAL, mp_pool_imap(p, m_square, x, N, 8, 8, 0, true, &it));
    ASSERT_TRUE(it == NULL);
    ASSERT_ERR(MP_EINVAL, mp_pool_apply(p, t_sqr, args, &out));
    ASSERT_ERR(MP_EINVAL, mp_pool_apply_async(p, t_sqr, args, NULL, NULL, &c));
    ASSERT_TRUE(c == NULL);

    ASSERT_OK(mp_pool_join(p, 60));
    ASSERT_OK(mp_pool_join(p, 0)); /* twice: fine */
    ASSERT_TRUE(mp_async_ready(a));
    ASSERT_OK(mp_async_get(a, 0, NULL, NULL));
    for (int i = 0; i < N; i++)
        ASSERT_EQ((int64_t)i * i, r[i]);
    ASSERT_OK(mp_async_get(b, 0, &out, NULL));
    ASSERT_EQ(81, ((int64_t *)out.data)[0]);
    ASSERT_EQ(0, mp_active_children(NULL, 0)); /* the workers are gone */
    /* still refused after join */
    ASSERT_ERR(MP_EINVAL, mp_pool_map(p, m_square, x, N, 8, r, 8, 0, NULL));
    mp_async_free(a);
    mp_async_free(b);
    mp_args_free(args);
    mp_buf_free(&out);
    free(x);
    mp_pool_free(p);
}

/* test_context / test_enter: after terminate, join works and new work is
 * refused. */
MP_TEST(terminate_then_refuse, .variants = MP_START_METHODS)
{
    mp_pool *p = pool_with(ctx, 2, NULL);
    int64_t x[4] = {1, 2, 3, 4}, r[4];
    ASSERT_OK(mp_pool_map(p, m_square, x, 4, 8, r, 8, 0, NULL));
    ASSERT_EQ(16, r[3]);
    ASSERT_OK(mp_pool_terminate(p));
    ASSERT_OK(mp_pool_join(p, 60));
    ASSERT_ERR(MP_EINVAL, mp_pool_map(p, m_square, x, 4, 8, r, 8, 0, NULL));
    mp_async *a;
    ASSERT_ERR(MP_EINVAL, mp_pool_apply_async(p, t_sqr, NULL, NULL, NULL, &a));
    ASSERT_OK(mp_pool_terminate(p)); /* twice: fine */
    ASSERT_OK(mp_pool_close(p));     /* after terminate: nothing to do */
    ASSERT_OK(mp_pool_join(p, 0));
    mp_pool_free(p);
}

/* test_terminate: 10 000 long tasks queued (chunksize 1), terminate and
 * join return promptly; every waiting call gets MP_EBROKEN. */
typedef struct mapper {
    mp_pool *p;
    witem *items;
    size_t n;
    wres *r;
    int rc;
} mapper;

static void *map_thread(void *arg)
{
    mapper *m = arg;
    m->rc = mp_pool_map(m->p, m_work, m->items, m->n, sizeof *m->items, m->r, sizeof *m->r, 1,
                        NULL);
    return NULL;
}

typedef struct getter {
    mp_async *a;
    int rc;
} getter;

static void *get_thread(void *arg)
{
    getter *g = arg;
    g->rc = mp_async_get(g->a, MP_FOREVER, NULL, NULL);
    return NULL;
}

MP_TEST(terminate_with_queued_tasks, .variants = MP_START_METHODS, .timeout_s = 60)
{
    shared s;
    shared_new(&s, 3);
    mp_pool *p = pool_with(ctx, 3, &s);
    enum { N = 10000 };
    witem *items = items_new(N, 0);
    for (int i = 0; i < N; i++)
        items[i].act = ACT_COUNT_HANG;
    wres *r1 = calloc(N, sizeof *r1), *r2 = calloc(N, sizeof *r2);
    ASSERT_TRUE(r1 && r2);

    /* a blocking map in another thread: once an item has started, it was
     * submitted (and waits, or is about to) */
    mapper m = {.p = p, .items = items, .n = N, .r = r1, .rc = 1};
    pthread_t mt, gt;
    ASSERT_EQ(0, pthread_create(&mt, NULL, map_thread, &m));
    WAIT_FOR(counter_of(&s) >= 1, 30);
    mp_async *a;
    ASSERT_OK(mp_pool_map_async(p, m_work, items, N, sizeof *items, r2, sizeof *r2, 1, &a));
    getter g = {.a = a, .rc = 1};
    ASSERT_EQ(0, pthread_create(&gt, NULL, get_thread, &g));
    mp_imap *it;
    ASSERT_OK(mp_pool_imap(p, m_work, items, 10, sizeof *items, sizeof(wres), 1, true, &it));
    ASSERT_FALSE(mp_async_ready(a));

    double t0 = mp_monotonic();
    ASSERT_OK(mp_pool_terminate(p));
    ASSERT_OK(mp_pool_join(p, 30));
    double took = mp_monotonic() - t0;
    ASSERT_EQ(0, pthread_join(mt, NULL));
    ASSERT_EQ(0, pthread_join(gt, NULL));
    ASSERT_ERR(MP_EBROKEN, m.rc);
    ASSERT_ERR(MP_EBROKEN, g.rc);
    ASSERT_ERR(MP_EBROKEN, mp_async_wait(a, 0));
    ASSERT_ERR(MP_EBROKEN, mp_async_get(a, MP_FOREVER, NULL, NULL));
    ASSERT_TRUE(mp_async_ready(a));
    ASSERT_EQ(0, mp_async_successful(a));
    ASSERT_ERR(MP_EBROKEN, mp_imap_next(it, NULL, NULL, NULL, MP_FOREVER));
    ASSERT_LT(took, 15.0);
    /* queued items never ran: only the ones the 3 workers held started */
    ASSERT_LE(counter_of(&s), 3);
    printf("# terminate + join with %d queued: %.3f s\n", 2 * N, took);
    mp_imap_free(it);
    mp_async_free(a);
    mp_pool_free(p);
    free(items);
    free(r1);
    free(r2);
    shared_free(&s);
}

/* Handles outlive their pool (issue 13): after mp_pool_terminate and
 * mp_pool_free, what did not finish gives MP_EBROKEN, what did stays
 * readable, and handles and pool are freed in either order.  The fixture:
 * two workers, finished jobs, and jobs cut short by two items that hang
 * (once both hang, every item published before them has run and been
 * reported); then jobs queued behind them that never run. */
typedef struct outlive {
    shared s;
    mp_pool *p;
    witem *q, *part;              /* 4 quick items; 4 quick then one that hangs */
    wres r_done[4], r_part[5], r_busy[4];
    mp_async *a_done, *m_done, *m_part, *m_busy, *a_busy;
    mp_imap *it_done, *it_part;
} outlive;

static void outlive_new(mp_context *ctx, outlive *o)
{
    memset(o, 0, sizeof *o);
    shared_new(&o->s, 2);
    o->p = pool_with(ctx, 2, &o->s);
    o->q = items_new(4, 0);
    o->part = items_new(5, 0);
    o->part[4].act = ACT_COUNT_HANG;
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "l", (int64_t)7));
    ASSERT_OK(mp_pool_apply_async(o->p, t_sqr, a, NULL, NULL, &o->a_done));
    ASSERT_OK(mp_async_wait(o->a_done, 60));
    ASSERT_OK(mp_pool_map_async(o->p, m_work, o->q, 4, sizeof *o->q, o->r_done, sizeof(wres), 1,
                                &o->m_done));
    ASSERT_OK(mp_async_wait(o->m_done, 60));
    ASSERT_OK(mp_pool_imap(o->p, m_work, o->q, 4, sizeof *o->q, sizeof(wres), 1, true,
                           &o->it_done));
    ASSERT_OK(mp_pool_map_async(o->p, m_work, o->part, 5, sizeof *o->part, o->r_part,
                                sizeof(wres), 1, &o->m_part));
    ASSERT_OK(mp_pool_imap(o->p, m_work, o->part, 5, sizeof *o->part, sizeof(wres), 1, true,
                           &o->it_part));
    WAIT_FOR(counter_of(&o->s) == 2, 60);
    ASSERT_OK(mp_pool_map_async(o->p, m_work, o->q, 4, sizeof *o->q, o->r_busy, sizeof(wres), 1,
                                &o->m_busy));
    ASSERT_OK(mp_pool_apply_async(o->p, t_sqr, a, NULL, NULL, &o->a_busy));
    mp_args_free(a);
}

/* Every handle as the pool left it (terminated or freed). */
static void outlive_check(outlive *o, bool imaps)
{
    mp_buf out = MP_BUF_INIT;
    mp_task_error e;
    int64_t v[2];
    /* finished: the results */
    ASSERT_OK(mp_async_get(o->a_done, MP_FOREVER, &out, NULL));
    ASSERT_EQ(16, out.len);
    memcpy(v, out.data, sizeof v);
    ASSERT_EQ(49, v[0]);
    ASSERT_TRUE(mp_async_ready(o->a_done));
    ASSERT_EQ(1, mp_async_successful(o->a_done));
    ASSERT_OK(mp_async_get(o->m_done, 0, NULL, NULL));
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(i * i, o->r_done[i].sq);
    for (int i = 0; imaps && i < 4; i++) {
        wres w = {0};
        size_t idx = SIZE_MAX;
        ASSERT_OK(mp_imap_next(o->it_done, &w, &idx, NULL, 0));
        ASSERT_EQ(i, idx);
        ASSERT_EQ(i * i, w.sq);
    }
    ASSERT_ERR(MP_EOF, mp_imap_next(o->it_done, NULL, NULL, NULL, MP_FOREVER));
    /* cut short: what finished, then MP_EBROKEN */
    ASSERT_ERR(MP_EBROKEN, mp_async_get(o->m_part, MP_FOREVER, NULL, &e));
    ASSERT_ERR(MP_EBROKEN, mp_async_wait(o->m_part, 0));
    ASSERT_TRUE(mp_async_ready(o->m_part));
    ASSERT_EQ(0, mp_async_successful(o->m_part));
    size_t done = 0, total = 0;
    ASSERT_OK(mp_async_progress(o->m_part, &done, &total));
    ASSERT_EQ(4, done);
    ASSERT_EQ(5, total);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(i * i, o->r_part[i].sq);
    for (int i = 0; imaps && i < 4; i++) {
        wres w = {0};
        size_t idx = SIZE_MAX;
        ASSERT_OK(mp_imap_next(o->it_part, &w, &idx, NULL, MP_FOREVER));
        ASSERT_EQ(i, idx);
        ASSERT_EQ(i * i, w.sq);
    }
    ASSERT_ERR(MP_EBROKEN, mp_imap_next(o->it_part, NULL, NULL, NULL, MP_FOREVER));
    ASSERT_ERR(MP_EBROKEN, mp_imap_next(o->it_part, NULL, NULL, NULL, 0));
    /* never ran */
    ASSERT_ERR(MP_EBROKEN, mp_async_wait(o->m_busy, MP_FOREVER));
    ASSERT_ERR(MP_EBROKEN, mp_async_get(o->m_busy, 0, NULL, NULL));
    ASSERT_OK(mp_async_progress(o->m_busy, &done, &total));
    ASSERT_EQ(0, done);
    ASSERT_EQ(4, total);
    ASSERT_ERR(MP_EBROKEN, mp_async_get(o->a_busy, MP_FOREVER, &out, NULL));
    ASSERT_TRUE(mp_async_ready(o->a_busy));
    ASSERT_EQ(0, mp_async_successful(o->a_busy));
    mp_buf_free(&out);
}

static void outlive_free_handles(outlive *o)
{
    mp_async_free(o->m_busy);
    mp_imap_free(o->it_part);
    mp_async_free(o->a_done);
    mp_imap_free(o->it_done);
    mp_async_free(o->m_part);
    mp_async_free(o->a_busy);
    mp_async_free(o->m_done);
}

static void outlive_end(outlive *o)
{
    free(o->q);
    free(o->part);
    shared_free(&o->s);
}

MP_TEST(handles_outlive_pool_free, .variants = MP_START_METHODS, .timeout_s = 90)
{
    outlive o;
    outlive_new(ctx, &o);
    mp_pool_free(o.p); /* busy: terminates */
    outlive_check(&o, true);
    outlive_check(&o, false); /* again: the imaps' items are taken, only their end is left */
    outlive_free_handles(&o);
    outlive_end(&o);
}

MP_TEST(handles_freed_before_pool_free, .variants = MP_START_METHODS, .timeout_s = 90)
{
    outlive o;
    outlive_new(ctx, &o);
    outlive_free_handles(&o);
    mp_pool_free(o.p);
    outlive_end(&o);
}

/* terminate, wait on the handles, then free them (before or after the pool) */
MP_TEST(handles_after_terminate, .variants = MP_START_METHODS, .timeout_s = 90)
{
    outlive o;
    outlive_new(ctx, &o);
    ASSERT_OK(mp_pool_terminate(o.p));
    outlive_check(&o, true);
    ASSERT_OK(mp_pool_join(o.p, 60));
    outlive_free_handles(&o);
    mp_pool_free(o.p);
    outlive_end(&o);

    outlive_new(ctx, &o);
    ASSERT_OK(mp_pool_terminate(o.p));
    ASSERT_OK(mp_pool_join(o.p, 60));
    mp_pool_free(o.p);
    outlive_check(&o, true);
    outlive_free_handles(&o);
    outlive_end(&o);
}

/* A thread waiting on a handle while another frees the pool: woken with
 * MP_EBROKEN; the handle is freed after. */
MP_TEST(handle_waiter_during_pool_free, .variants = MP_START_METHODS, .timeout_s = 60)
{
    outlive o;
    outlive_new(ctx, &o);
    getter g = {.a = o.m_busy, .rc = 1};
    pthread_t gt;
    ASSERT_EQ(0, pthread_create(&gt, NULL, get_thread, &g));
    usleep(50000);
    mp_pool_free(o.p);
    ASSERT_EQ(0, pthread_join(gt, NULL));
    ASSERT_ERR(MP_EBROKEN, g.rc);
    outlive_check(&o, true);
    outlive_free_handles(&o);
    outlive_end(&o);
}

/* A blocking map in another thread holds the last job of a pool freed
 * under it: it returns MP_EBROKEN, and the pool goes with it. */
MP_TEST(blocking_map_during_pool_free, .variants = MP_START_METHODS, .timeout_s = 60)
{
    shared s;
    shared_new(&s, 2);
    mp_pool *p = pool_with(ctx, 2, &s);
    enum { N = 8 };
    witem *items = items_new(N, 0);
    for (int i = 0; i < N; i++)
        items[i].act = ACT_COUNT_HANG;
    wres r[N];
    mapper m = {.p = p, .items = items, .n = N, .r = r, .rc = 1};
    pthread_t mt;
    ASSERT_EQ(0, pthread_create(&mt, NULL, map_thread, &m));
    WAIT_FOR(counter_of(&s) == 2, 30);
    mp_pool_free(p);
    ASSERT_EQ(0, pthread_join(mt, NULL));
    ASSERT_ERR(MP_EBROKEN, m.rc);
    free(items);
    shared_free(&s);
}

/* imap: MP_ETIMEDOUT is only the wait's own expiry; an item that overran
 * task_timeout is a failed item (MP_EWORKER, e.code MP_ETIMEDOUT, its
 * worker killed by SIGKILL), and iteration goes on. */
MP_TEST(imap_wait_timeout_vs_item_timeout, .variants = MP_START_METHODS, .timeout_s = 90)
{
    const double limit = 1.0;
    mp_pool_opts opt = {.ctx = ctx, .processes = 2, .task_timeout = limit};
    mp_pool *p = pool_opts(&opt);
    witem *items = items_new(2, 0);
    items[0].act = ACT_HANG;
    mp_imap *it;
    ASSERT_OK(mp_pool_imap(p, m_work, items, 2, sizeof *items, sizeof(wres), 1, true, &it));
    wres w = {0};
    size_t idx = SIZE_MAX;
    mp_task_error e = {0};
    ASSERT_ERR(MP_ETIMEDOUT, mp_imap_next(it, &w, &idx, &e, 0.1)); /* the wait */
    ASSERT_EQ(SIZE_MAX, idx);
    ASSERT_ERR(MP_EWORKER, mp_imap_next(it, &w, &idx, &e, limit + 30)); /* the item */
    ASSERT_EQ(0, idx);
    ASSERT_EQ(0, e.index);
    ASSERT_ERR(MP_ETIMEDOUT, e.code);
    ASSERT_EQ(SIGKILL, e.signal);
    ASSERT_OK(mp_imap_next(it, &w, &idx, &e, limit + 30));
    ASSERT_EQ(1, idx);
    ASSERT_EQ(1, w.sq);
    ASSERT_ERR(MP_EOF, mp_imap_next(it, &w, &idx, &e, 0));
    mp_imap_free(it);
    free(items);
    close_join_free(p);
}

/* test_make_pool: Pool(-1) is refused; opts NULL gives a working default
 * pool (mp_cpu_count() workers, default context). */
MP_TEST(bad_arguments)
{
    mp_pool *p = (mp_pool *)1;
    mp_pool_opts o = {.processes = -1};
    ASSERT_ERR(MP_EINVAL, mp_pool_new(&p, &o));
    ASSERT_TRUE(p == NULL);
    o.processes = -100;
    ASSERT_ERR(MP_EINVAL, mp_pool_new(&p, &o));
    ASSERT_ERR(MP_EINVAL, mp_pool_new(NULL, NULL));

    p = pool_opts(NULL);
    int64_t x[3] = {4, 5, 6}, r[3];
    ASSERT_OK(mp_pool_map(p, m_square, x, 3, 8, r, 8, 0, NULL));
    ASSERT_EQ(36, r[2]);
    ASSERT_EQ((size_t)mp_cpu_count(), mp_active_children(NULL, 0));
    /* bad calls on a good pool */
    ASSERT_ERR(MP_EINVAL, mp_pool_map(p, NULL, x, 3, 8, r, 8, 0, NULL));
    ASSERT_ERR(MP_EINVAL, mp_pool_map(p, m_square, NULL, 3, 8, r, 8, 0, NULL));
    ASSERT_ERR(MP_EINVAL, mp_pool_map(p, m_square, x, 3, 8, NULL, 8, 0, NULL));
    ASSERT_ERR(MP_EINVAL, mp_pool_map_async(p, m_square, x, 3, 8, r, 8, 0, NULL));
    ASSERT_ERR(MP_EINVAL, mp_pool_imap(p, m_square, x, 3, 8, 8, 0, true, NULL));
    mp_async *a;
    ASSERT_ERR(MP_EINVAL, mp_pool_apply_async(p, NULL, NULL, NULL, NULL, &a));
    ASSERT_ERR(MP_EINVAL, mp_imap_next(NULL, NULL, NULL, NULL, 0));
    ASSERT_ERR(MP_EINVAL, mp_async_get(NULL, 0, NULL, NULL));
    mp_async_free(NULL);
    mp_imap_free(NULL);
    close_join_free(p);
    mp_pool_free(NULL);
}

/* TestInitializers.test_pool_initializer: the initializer runs exactly
 * once in each worker, with its arguments. */
static int init_count(const mp_args *a)
{
    if (strcmp(mp_args_str(a, 2), "init") != 0)
        return 3;
    atomic_fetch_add((_Atomic int64_t *)mp_value_ptr(mp_args_value(a, 0)), mp_args_int(a, 1));
    return 0;
}

MP_TEST(initializer_once_per_worker, .variants = MP_START_METHODS)
{
    mp_value *v;
    ASSERT_OK(mp_value_new(&v, MP_INT64, false));
    mp_args *a;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_value(a, v));
    ASSERT_OK(mp_args_add_int(a, 1000));
    ASSERT_OK(mp_args_add_str(a, "init"));
    mp_pool_opts o = {.ctx = ctx, .processes = 3, .initializer = init_count, .initargs = a};
    mp_pool *p = pool_opts(&o);
    mp_args_free(a); /* the pool keeps its own copy */
    /* mp_pool_new returned after every initializer ran */
    _Atomic int64_t *cnt = (_Atomic int64_t *)mp_value_ptr(v);
    ASSERT_EQ(3000, atomic_load(cnt));
    int64_t x[30], r[30];
    for (int i = 0; i < 30; i++)
        x[i] = i;
    ASSERT_OK(mp_pool_map(p, m_square, x, 30, 8, r, 8, 1, NULL));
    ASSERT_EQ(29 * 29, r[29]);
    close_join_free(p);
    ASSERT_EQ(3000, atomic_load(cnt));
    mp_value_free(v);
}

/* An initializer that fails: mp_pool_new fails with MP_ETASK and leaves no
 * worker (the harness checks for stray processes after the test). */
static int init_fail(const mp_args *a)
{
    (void)a;
    return 5;
}

/* Fails in the second worker to get there only. */
static int init_fail_second(const mp_args *a)
{
    return atomic_fetch_add((_Atomic int64_t *)mp_value_ptr(mp_args_value(a, 0)), 1) == 1 ? 6 : 0;
}

MP_TEST(initializer_failure, .variants = MP_START_METHODS)
{
    mp_pool *p = (mp_pool *)1;
    mp_pool_opts o = {.ctx = ctx, .processes = 3, .initializer = init_fail};
    ASSERT_ERR(MP_ETASK, mp_pool_new(&p, &o));
    ASSERT_TRUE(p == NULL);
    ASSERT_EQ(0, mp_active_children(NULL, 0));

    mp_value *v;
    ASSERT_OK(mp_value_new(&v, MP_INT64, false));
    mp_args *a;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_value(a, v));
    o = (mp_pool_opts){.ctx = ctx, .processes = 4, .initializer = init_fail_second, .initargs = a};
    p = (mp_pool *)1;
    ASSERT_ERR(MP_ETASK, mp_pool_new(&p, &o));
    ASSERT_TRUE(p == NULL);
    ASSERT_EQ(0, mp_active_children(NULL, 0));
    ASSERT_GE(atomic_load((_Atomic int64_t *)mp_value_ptr(v)), 2);
    mp_args_free(a);
    mp_value_free(v);

    /* a pointer in initargs cannot travel under spawn/forkserver */
    ASSERT_OK(mp_args_of(&a, "p", (void *)&o));
    o = (mp_pool_opts){.ctx = ctx, .processes = 1, .initializer = init_fail, .initargs = a};
    int rc = mp_pool_new(&p, &o);
    if (strcmp(method, "fork") == 0)
        ASSERT_ERR(MP_ETASK, rc);
    else
        ASSERT_ERR(MP_EINVAL, rc);
    ASSERT_EQ(0, mp_active_children(NULL, 0));
    mp_args_free(a);
}

/* A map writes only its failures into its status array, which starts as
 * fresh zero pages: a failure never shows up in a later map that reuses
 * the memory, and imap reads the same codes. */
MP_TEST(map_failures_do_not_outlive_their_map, .variants = MP_START_METHODS, .timeout_s = 60)
{
    enum { N = 5000 };
    mp_pool *p = pool_with(ctx, 2, NULL);
    witem *bad = items_new(N, 0), *good = items_new(N, 0);
    for (int i = 3; i < N; i += 7) {
        bad[i].act = ACT_FAIL;
        bad[i].code = 40 + i % 5;
    }
    wres *r = calloc(N, sizeof *r);
    ASSERT_TRUE(r != NULL);
    for (int round = 0; round < 20; round++) {
        mp_task_error e = {0};
        size_t cs = (size_t)(round % 4) * 50;
        ASSERT_ERR(MP_ETASK, mp_pool_map(p, m_work, bad, N, sizeof *bad, r, sizeof *r, cs, &e));
        ASSERT_EQ(3, e.index);
        ASSERT_EQ(43, e.code);
        ASSERT_OK(mp_pool_map(p, m_work, good, N, sizeof *good, r, sizeof *r, cs, &e));
        ASSERT_EQ((int64_t)(N - 1) * (N - 1), r[N - 1].sq);
    }
    mp_imap *it;
    ASSERT_OK(mp_pool_imap(p, m_work, bad, 100, sizeof *bad, sizeof(wres), 9, true, &it));
    for (size_t k = 0; k < 100; k++) {
        wres w;
        size_t idx;
        mp_task_error e = {0};
        int rc = mp_imap_next(it, &w, &idx, &e, 60);
        ASSERT_EQ(k, idx);
        if (k % 7 == 3) {
            ASSERT_ERR(MP_ETASK, rc);
            ASSERT_EQ((int)(40 + k % 5), e.code);
        } else {
            ASSERT_OK(rc);
        }
    }
    mp_imap_free(it);
    free(bad);
    free(good);
    free(r);
    close_join_free(p);
}

/* Bytes of memory the pool heap holds (the "mp-pool" memfd among this
 * process's descriptors). */
static uint64_t pool_heap_bytes(void)
{
    uint64_t bytes = 0;
    for (int fd = 3; fd < 1024; fd++) {
        char path[64], target[256];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        struct stat st;
        if (strstr(target, "memfd:mp-pool") && fstat(fd, &st) == 0)
            bytes += (uint64_t)st.st_blocks * 512;
    }
    return bytes;
}

/* Job memory of a big map over private arrays stays for the next map, and
 * goes once the pool has been idle a while (2 s). */
MP_TEST(pool_job_memory_kept_then_freed, .timeout_s = 60)
{
    enum { N = 6000000 }; /* 96 MB of items and results: above the 64 MiB always kept */
    mp_pool *p = pool_with(NULL, 2, NULL);
    int64_t *x = ints_new(N, 0), *r = calloc(N, sizeof *r);
    ASSERT_TRUE(r != NULL);
    uint64_t before = pool_heap_bytes();
    ASSERT_OK(mp_pool_map(p, m_square, x, N, 8, r, 8, 0, NULL));
    uint64_t after = pool_heap_bytes();
    ASSERT_GT(after, before + ((uint64_t)80 << 20)); /* kept */
    ASSERT_OK(mp_pool_map(p, m_square, x, N, 8, r, 8, 0, NULL));
    ASSERT_EQ((int64_t)(N - 1) * (N - 1), r[N - 1]);
    WAIT_FOR(pool_heap_bytes() < before + ((uint64_t)70 << 20), 10); /* then freed */
    /* and the map after that still right, on fresh pages */
    memset(r, 0, (size_t)N * sizeof *r);
    ASSERT_OK(mp_pool_map(p, m_square, x, N, 8, r, 8, 0, NULL));
    for (size_t i = 0; i < N; i += 9973)
        ASSERT_EQ((int64_t)(i * i), r[i]);
    free(x);
    free(r);
    close_join_free(p);
}

/* Items and results in mp_pool_shared_alloc buffers are used in place:
 * map, map_async, imap and a slice of a buffer; a killed worker fails only
 * its item; job memory keeps being reused while buffers are held; freeing
 * gives the space back. */
MP_TEST(map_over_shared_buffers, .variants = MP_START_METHODS, .timeout_s = 90)
{
    enum { N = 20000, BAD = 777 };
    mp_pool *p = pool_with(ctx, 3, NULL);
    witem *items;
    wres *r;
    ASSERT_OK(mp_pool_shared_alloc(p, N * sizeof *items, (void **)&items));
    ASSERT_OK(mp_pool_shared_alloc(p, N * sizeof *r, (void **)&r));
    ASSERT_EQ(0, items[N - 1].x); /* zeroed */
    for (int i = 0; i < N; i++)
        items[i].x = i;

    size_t cs[] = {0, 1, 333};
    for (size_t k = 0; k < 3; k++) {
        memset(r, 0, N * sizeof *r);
        ASSERT_OK(mp_pool_map(p, m_work, items, N, sizeof *items, r, sizeof *r, cs[k], NULL));
        for (int i = 0; i < N; i++)
            ASSERT_EQ((int64_t)i * i, r[i].sq);
    }
    /* a slice, results into a private array (copied out) */
    wres *priv = calloc(100, sizeof *priv);
    ASSERT_TRUE(priv != NULL);
    ASSERT_OK(mp_pool_map(p, m_work, items + 500, 100, sizeof *items, priv, sizeof *priv, 7, NULL));
    for (int i = 0; i < 100; i++)
        ASSERT_EQ((int64_t)(500 + i) * (500 + i), priv[i].sq);
    free(priv);

    /* async, then imap over the shared items */
    memset(r, 0, N * sizeof *r);
    mp_async *a;
    ASSERT_OK(mp_pool_map_async(p, m_work, items, N, sizeof *items, r, sizeof *r, 50, &a));
    ASSERT_OK(mp_async_get(a, 60, NULL, NULL));
    mp_async_free(a);
    ASSERT_EQ((int64_t)(N - 1) * (N - 1), r[N - 1].sq);
    mp_imap *it;
    ASSERT_OK(mp_pool_imap(p, m_work, items, 1000, sizeof *items, sizeof(wres), 10, true, &it));
    for (size_t k = 0; k < 1000; k++) {
        wres w;
        size_t idx;
        ASSERT_OK(mp_imap_next(it, &w, &idx, NULL, 60));
        ASSERT_EQ(k, idx);
        ASSERT_EQ((int64_t)(k * k), w.sq);
    }
    mp_imap_free(it);

    /* one item kills its worker: only it fails */
    items[BAD].act = ACT_KILL;
    memset(r, 0, N * sizeof *r);
    mp_task_error e = {0};
    ASSERT_ERR(MP_EWORKER, mp_pool_map(p, m_work, items, N, sizeof *items, r, sizeof *r, 100, &e));
    ASSERT_EQ(BAD, e.index);
    ASSERT_EQ(SIGKILL, e.signal);
    for (int i = 0; i < N; i++)
        if (i != BAD)
            ASSERT_EQ((int64_t)i * i, r[i].sq);
    items[BAD].act = ACT_NONE;

    /* job memory is reused while the buffers stay: many maps, no ENOMEM */
    int64_t *x = ints_new(200000, 0), *y = calloc(200000, sizeof *y);
    ASSERT_TRUE(y != NULL);
    for (int k = 0; k < 300; k++)
        ASSERT_OK(mp_pool_map(p, m_square, x, 200000, 8, y, 8, 0, NULL));
    ASSERT_EQ((int64_t)199999 * 199999, y[199999]);
    free(x);
    free(y);

    /* bad sizes; space comes back when freed */
    void *big = NULL;
    ASSERT_ERR(MP_EINVAL, mp_pool_shared_alloc(p, (size_t)1 << 62, &big));
    ASSERT_ERR(MP_EINVAL, mp_pool_shared_alloc(NULL, 10, &big));
    for (int k = 0; k < 100; k++) {
        ASSERT_OK(mp_pool_shared_alloc(p, (size_t)8 << 30, &big));
        mp_pool_shared_free(p, big);
    }
    /* the heap runs out cleanly: 24 + 24 GiB fit below 64, a third does not */
    void *b1 = NULL, *b2 = NULL, *b3 = NULL;
    ASSERT_OK(mp_pool_shared_alloc(p, (size_t)24 << 30, &b1));
    ASSERT_OK(mp_pool_shared_alloc(p, (size_t)24 << 30, &b2));
    ASSERT_ERR(MP_ENOMEM, mp_pool_shared_alloc(p, (size_t)24 << 30, &b3));
    ASSERT_TRUE(b3 == NULL);
    mp_pool_shared_free(p, b2);
    mp_pool_shared_free(p, b1);
    mp_pool_shared_free(p, NULL);
    mp_pool_shared_free(p, items);
    mp_pool_shared_free(p, r);
    close_join_free(p);
}

/* ============================================================================ */
/* Beyond Python: crashes, timeouts, worker lifetime                              */
/* ============================================================================ */

/* Item 37 of 100 (in the middle of its chunk of 10) kills its worker:
 * exactly that item fails with MP_EWORKER and the cause; every other
 * result is right; the worker is replaced. */
static void one_item_kills_its_worker(mp_context *ctx, int act, int code, int want_signal,
                                      int want_exit)
{
    enum { N = 100, BAD = 37, NPROC = 3 };
    shared s;
    shared_new(&s, NPROC);
    mp_pool *p = pool_with(ctx, NPROC, &s);
    witem *items = items_new(N, 0);
    items[BAD].act = act;
    items[BAD].code = code;
    wres *r = calloc(N, sizeof *r);
    ASSERT_TRUE(r != NULL);

    const size_t chunksizes[] = {10, 1};
    for (size_t k = 0; k < 2; k++) {
        size_t cs = chunksizes[k];
        memset(r, 0, N * sizeof *r);
        mp_task_error e = {0};
        ASSERT_ERR(MP_EWORKER, mp_pool_map(p, m_work, items, N, sizeof *items, r, sizeof *r, cs, &e));
        ASSERT_EQ(BAD, e.index);
        ASSERT_ERR(MP_EWORKER, e.code);
        ASSERT_EQ(want_signal, e.signal);
        ASSERT_EQ(want_exit, e.exitcode);
        for (int i = 0; i < N; i++) {
            if (i == BAD)
                continue;
            ASSERT_EQ((int64_t)i * i, r[i].sq);
            ASSERT_GT(r[i].pid, 0);
        }
        /* the dead worker was replaced: all NPROC are there */
        check_all_workers(p, NPROC);
    }

    /* imap: the same item fails, iteration goes on */
    for (int ordered = 1; ordered >= 0; ordered--) {
        mp_imap *it;
        ASSERT_OK(mp_pool_imap(p, m_work, items, N, sizeof *items, sizeof(wres), 7, ordered, &it));
        int failures = 0;
        for (int k = 0; k < N; k++) {
            wres w = {0};
            size_t idx = SIZE_MAX;
            mp_task_error e = {0};
            int rc = mp_imap_next(it, &w, &idx, &e, 60);
            if (ordered)
                ASSERT_EQ(k, idx);
            if (idx == BAD) {
                ASSERT_ERR(MP_EWORKER, rc);
                ASSERT_EQ(BAD, e.index);
                ASSERT_ERR(MP_EWORKER, e.code);
                ASSERT_EQ(want_signal, e.signal);
                ASSERT_EQ(want_exit, e.exitcode);
                failures++;
            } else {
                ASSERT_OK(rc);
                ASSERT_EQ((int64_t)(idx * idx), w.sq);
            }
        }
        ASSERT_EQ(1, failures);
        ASSERT_ERR(MP_EOF, mp_imap_next(it, NULL, NULL, NULL, 60));
        mp_imap_free(it);
    }

    /* a map that does not crash: all fine, on all workers */
    items[BAD].act = ACT_NONE;
    ASSERT_OK(mp_pool_map(p, m_work, items, N, sizeof *items, r, sizeof *r, 1, NULL));
    for (int i = 0; i < N; i++)
        ASSERT_EQ((int64_t)i * i, r[i].sq);
    check_all_workers(p, NPROC);
    close_join_free(p);
    free(items);
    free(r);
    shared_free(&s);
}

/* The first task claimed in the pool kills its worker between its claim
 * and its move of the shared claim cursor (two adjacent steps; a hook in
 * the library stops there).  The cursor then points at an entry the
 * parent frees: the other workers must move past it, not spin on it or
 * sleep behind it.  Exactly that task's first item fails. */
static mp_args *g_claim_args;

static void claim_then_die(void)
{
    mp_value *v = mp_args_value(g_claim_args, 0);
    if (atomic_fetch_add((_Atomic int64_t *)mp_value_ptr(v), 1) == 0)
        raise(SIGKILL);
}

static int init_claim_hook(const mp_args *a)
{
    if (mp__args_dup(a, &g_claim_args) != 0)
        return 90;
    mp__pool_claim_hook = claim_then_die;
    return 0;
}

MP_TEST(worker_killed_between_claim_and_cursor, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_value *v;
    ASSERT_OK(mp_value_new(&v, MP_INT64, false));
    mp_args *ia;
    ASSERT_OK(mp_args_new(&ia));
    ASSERT_OK(mp_args_add_value(ia, v));
    /* one worker: nobody else moves the cursor before the parent frees the entry */
    mp_pool_opts o = {.ctx = ctx, .processes = 1, .initializer = init_claim_hook, .initargs = ia};
    mp_pool *p = pool_opts(&o);
    enum { N = 1000 };
    int64_t *x = ints_new(N, 0), *r = calloc(N, sizeof *r);
    ASSERT_TRUE(r != NULL);
    mp_task_error e = {0};
    ASSERT_ERR(MP_EWORKER, mp_pool_map(p, m_square, x, N, 8, r, 8, 10, &e));
    ASSERT_EQ(SIGKILL, e.signal);
    ASSERT_EQ(0, e.index % 10); /* the first item of a chunk: none of it ran */
    for (size_t i = 0; i < N; i++)
        if (i != e.index)
            ASSERT_EQ((int64_t)(i * i), r[i]);
    /* chunksize 1 and an apply: nothing else fails */
    ASSERT_OK(mp_pool_map(p, m_square, x, N, 8, r, 8, 1, NULL));
    ASSERT_EQ((int64_t)(N - 1) * (N - 1), r[N - 1]);
    ASSERT_GE(*(int64_t *)mp_value_ptr(v), 1);
    free(x);
    free(r);
    close_join_free(p);
    mp_args_free(ia);
    mp_value_free(v);
}

MP_TEST(worker_killed_by_sigkill, .variants = MP_START_METHODS, .timeout_s = 90)
{
    one_item_kills_its_worker(ctx, ACT_KILL, 0, SIGKILL, 0);

    /* an apply task that kills its worker */
    mp_pool *p = pool_with(ctx, 2, NULL);
    mp_async *a;
    ASSERT_OK(mp_pool_apply_async(p, t_kill, NULL, NULL, NULL, &a));
    mp_task_error e = {0};
    ASSERT_ERR(MP_EWORKER, mp_async_get(a, 60, NULL, &e));
    ASSERT_ERR(MP_EWORKER, e.code);
    ASSERT_EQ(SIGKILL, e.signal);
    ASSERT_EQ(0, mp_async_successful(a));
    mp_async_free(a);
    mp_buf out = MP_BUF_INIT;
    ASSERT_ERR(MP_EWORKER, mp_pool_apply(p, t_kill, NULL, &out));
    mp_args *args;
    ASSERT_OK(mp_args_of(&args, "i", 12));
    ASSERT_OK(mp_pool_apply(p, t_sqr, args, &out));
    ASSERT_EQ(144, ((int64_t *)out.data)[0]);
    mp_args_free(args);
    mp_buf_free(&out);
    close_join_free(p);
}

MP_TEST(worker_calls_exit, .variants = MP_START_METHODS, .timeout_s = 90)
{
    one_item_kills_its_worker(ctx, ACT_EXIT, 3, 0, 3);
}

MP_TEST(worker_segfaults, .variants = MP_START_METHODS, .timeout_s = 90)
{
    one_item_kills_its_worker(ctx, ACT_SEGV, 0, SIGSEGV, 0);
}

/* Issue 14, item 8: with SIGKILL and SIGSEGV above, a worker killed by each
 * of SIGTERM, SIGBUS, SIGABRT and SIGFPE fails its item only, reported
 * with that signal, and is replaced. */
MP_TEST(worker_killed_by_each_signal, .variants = MP_START_METHODS, .timeout_s = 240)
{
    const int sigs[] = {SIGTERM, SIGBUS, SIGABRT, SIGFPE};
    for (size_t i = 0; i < MP__ARRAY_LEN(sigs); i++) {
        printf("%s\n", strsignal(sigs[i]));
        one_item_kills_its_worker(ctx, ACT_SIGNAL, sigs[i], sigs[i], 0);
    }
}

/* task_timeout: an item that overruns it fails with MP_ETIMEDOUT, the
 * others complete, the worker is replaced.  Every wait is bounded, so that
 * a timeout that never fires fails the test instead of hanging it, and the
 * item fails within 2 s of its limit (its item starts at once: the items
 * before it take microseconds). */
static int get_timed_out(mp_async *a, double limit, mp_task_error *e, const char *what)
{
    double t0 = mp_monotonic();
    *e = (mp_task_error){0};
    int rc = mp_async_get(a, limit + 30, NULL, e);
    double took = mp_monotonic() - t0;
    if (rc == MP_ETIMEDOUT && !mp_async_ready(a))
        MP__FAIL("%s: not failed by task_timeout (%g s) within %g s", what, limit, took);
    ASSERT_GE(took, limit - 0.05);
    if (took > limit + 2.0)
        MP__FAIL("%s: failed by task_timeout (%g s) only after %.2f s", what, limit, took);
    return rc;
}

MP_TEST(task_timeout, .variants = MP_START_METHODS, .timeout_s = 150)
{
    enum { N = 20, BAD = 9, NPROC = 2 };
    const double limit = 2.0;
    shared s;
    shared_new(&s, NPROC);
    mp_pool_opts o = {.ctx = ctx,
                      .processes = NPROC,
                      .initializer = init_shared,
                      .initargs = s.args,
                      .task_timeout = limit};
    mp_pool *p = pool_opts(&o);
    witem *items = items_new(N, 0);
    items[BAD].act = ACT_HANG;
    wres r[N];
    memset(r, 0, sizeof r);
    mp_task_error e;
    mp_async *a;

    /* a map: the item fails, the rest of its chunk and the others complete */
    ASSERT_OK(mp_pool_map_async(p, m_work, items, N, sizeof *items, r, sizeof *r, 4, &a));
    ASSERT_ERR(MP_ETIMEDOUT, get_timed_out(a, limit, &e, "item 9 of a map"));
    ASSERT_EQ(BAD, e.index);
    ASSERT_ERR(MP_ETIMEDOUT, e.code);
    ASSERT_EQ(0, mp_async_successful(a));
    mp_async_free(a);
    for (int i = 0; i < N; i++)
        if (i != BAD)
            ASSERT_EQ((int64_t)i * i, r[i].sq);
    check_all_workers(p, NPROC);

    /* imap: the item fails (MP_EWORKER, e.code MP_ETIMEDOUT), the rest come */
    mp_imap *it;
    ASSERT_OK(mp_pool_imap(p, m_work, items, N, sizeof *items, sizeof(wres), 1, true, &it));
    for (int k = 0; k < N; k++) {
        wres w;
        size_t idx = SIZE_MAX;
        e = (mp_task_error){0};
        int rc = mp_imap_next(it, &w, &idx, &e, limit + 30);
        if (rc == MP_ETIMEDOUT) /* only ever the wait's own expiry */
            MP__FAIL("imap: no result for item %d within %g s", k, limit + 30);
        ASSERT_EQ(k, idx);
        if (k == BAD) { /* its worker killed: MP_EWORKER, the detail in e */
            ASSERT_ERR(MP_EWORKER, rc);
            ASSERT_EQ(BAD, e.index);
            ASSERT_ERR(MP_ETIMEDOUT, e.code);
            ASSERT_EQ(SIGKILL, e.signal);
        } else {
            ASSERT_OK(rc);
            ASSERT_EQ(k * k, w.sq);
        }
    }
    mp_imap_free(it);

    /* the pool goes on: quick items under the limit, on all workers */
    items[BAD].act = ACT_NONE;
    ASSERT_OK(mp_pool_map(p, m_work, items, N, sizeof *items, r, sizeof *r, 1, NULL));
    for (int i = 0; i < N; i++)
        ASSERT_EQ((int64_t)i * i, r[i].sq);
    check_all_workers(p, NPROC);
    free(items);
    close_join_free(p);
    shared_free(&s);
}

/* A lone overrunning task on an idle pool, where nothing else happens
 * while it runs: an apply, then a map of one item.  (The pause lets the
 * pool go idle first, which makes the case certain; no outcome depends on
 * it.) */
MP_TEST(task_timeout_lone_task, .variants = MP_START_METHODS, .timeout_s = 150)
{
    enum { NPROC = 2 };
    const double limit = 1.0;
    shared s;
    shared_new(&s, NPROC);
    mp_pool_opts o = {.ctx = ctx,
                      .processes = NPROC,
                      .initializer = init_shared,
                      .initargs = s.args,
                      .task_timeout = limit};
    mp_pool *p = pool_opts(&o);
    mp_task_error e;
    mp_async *a;
    usleep(200000);
    ASSERT_OK(mp_pool_apply_async(p, t_hang, NULL, NULL, NULL, &a));
    ASSERT_ERR(MP_ETIMEDOUT, get_timed_out(a, limit, &e, "a lone apply on an idle pool"));
    ASSERT_ERR(MP_ETIMEDOUT, e.code);
    mp_async_free(a);

    usleep(200000);
    witem hang_item = {.x = 3, .act = ACT_HANG};
    wres r = {0};
    ASSERT_OK(mp_pool_map_async(p, m_work, &hang_item, 1, sizeof hang_item, &r, sizeof r, 1, &a));
    ASSERT_ERR(MP_ETIMEDOUT, get_timed_out(a, limit, &e, "a one-item map on an idle pool"));
    ASSERT_EQ(0, e.index);
    ASSERT_ERR(MP_ETIMEDOUT, e.code);
    mp_async_free(a);

    /* the pool goes on */
    mp_buf out = MP_BUF_INIT;
    mp_args *args;
    ASSERT_OK(mp_args_of(&args, "i", 3));
    ASSERT_OK(mp_pool_apply(p, t_sqr, args, &out));
    ASSERT_EQ(9, ((int64_t *)out.data)[0]);
    mp_args_free(args);
    mp_buf_free(&out);
    check_all_workers(p, NPROC);
    close_join_free(p);
    shared_free(&s);
}

/* maxtasksperchild: workers retire after that many tasks (chunks) and are
 * replaced (test_pool_worker_lifetime); close + join right after submitting
 * does not hang (test_pool_worker_lifetime_early_close). */
MP_TEST(maxtasksperchild, .variants = MP_START_METHODS, .timeout_s = 120)
{
    enum { N = 30 };
    mp_pool_opts o = {.ctx = ctx, .processes = 2, .maxtasksperchild = 3};
    mp_pool *p = pool_opts(&o);
    witem *items = items_new(N, 0);
    wres r[N];
    int64_t pids[N];
    ASSERT_OK(mp_pool_map(p, m_work, items, N, sizeof *items, r, sizeof *r, 1, NULL));
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(i * i, r[i].sq);
        pids[i] = r[i].pid;
    }
    size_t d = distinct(pids, N);
    ASSERT_GT(d, 2);
    /* no worker ran more than 3 tasks: at least N / 3 of them */
    ASSERT_GE(d, N / 3);
    qsort(pids, N, sizeof *pids, cmp_i64);
    for (int i = 3; i < N; i++)
        ASSERT_NE(pids[i], pids[i - 3]);

    /* 30 apply_async: all correct, spread over >= 10 processes */
    mp_async *a[N];
    for (int i = 0; i < N; i++) {
        mp_args *args;
        ASSERT_OK(mp_args_of(&args, "i", i));
        ASSERT_OK(mp_pool_apply_async(p, t_sqr, args, NULL, NULL, &a[i]));
        mp_args_free(args);
    }
    mp_buf out = MP_BUF_INIT;
    for (int i = 0; i < N; i++) {
        ASSERT_OK(mp_async_get(a[i], 60, &out, NULL));
        ASSERT_EQ(i * i, ((int64_t *)out.data)[0]);
        pids[i] = ((int64_t *)out.data)[1];
        mp_async_free(a[i]);
    }
    ASSERT_GE(distinct(pids, N), N / 3);
    close_join_free(p);

    /* early close: maxtasksperchild 1, 6 tasks, close and join at once */
    o.processes = 3;
    o.maxtasksperchild = 1;
    p = pool_opts(&o);
    for (int i = 0; i < 6; i++) {
        mp_args *args;
        ASSERT_OK(mp_args_of(&args, "i", i + 1));
        ASSERT_OK(mp_pool_apply_async(p, t_sqr, args, NULL, NULL, &a[i]));
        mp_args_free(args);
    }
    ASSERT_OK(mp_pool_close(p));
    ASSERT_OK(mp_pool_join(p, 60));
    for (int i = 0; i < 6; i++) {
        ASSERT_OK(mp_async_get(a[i], 0, &out, NULL));
        ASSERT_EQ((i + 1) * (i + 1), ((int64_t *)out.data)[0]);
        pids[i] = ((int64_t *)out.data)[1];
        mp_async_free(a[i]);
    }
    ASSERT_EQ(6, distinct(pids, 6));
    mp_pool_free(p);
    mp_buf_free(&out);
    free(items);
}

/* Pool workers die when the program that owns the pool is SIGKILLed. */
static int t_pool_owner(const mp_args *a)
{
    enum { NPROC = 3 };
    int fd = mp_args_fd(a, 0);
    shared s;
    shared_new(&s, NPROC);
    mp_pool *p = pool_with(mp_get_context(mp_args_str(a, 1)), NPROC, &s);
    witem it[NPROC];
    wres r[NPROC];
    for (int i = 0; i < NPROC; i++)
        it[i] = (witem){.x = i, .act = ACT_BARRIER};
    if (mp_pool_map(p, m_work, it, NPROC, sizeof *it, r, sizeof *r, 1, NULL) != 0)
        return 30;
    char line[128];
    int n = snprintf(line, sizeof line, "%jd %jd %jd\n", (intmax_t)r[0].pid, (intmax_t)r[1].pid,
                     (intmax_t)r[2].pid);
    if (write(fd, line, (size_t)n) != n)
        return 31;
    hang();
}

MP_TEST(workers_die_with_killed_owner, .variants = MP_START_METHODS, .timeout_s = 90)
{
    /* the workers are reparented to us when their owner dies: reap here */
    ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1));
    int pfd[2];
    ASSERT_EQ(0, pipe2(pfd, O_CLOEXEC));
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "fs", pfd[1], method));
    mp_process *owner = mp_test_start(ctx, t_pool_owner, a);
    close(pfd[1]);
    const char *line = mp_test_read_line(pfd[0]);
    close(pfd[0]);
    intmax_t pid[3] = {0};
    ASSERT_EQ(3, sscanf(line, "%jd %jd %jd", &pid[0], &pid[1], &pid[2]));
    int fds[3];
    for (int i = 0; i < 3; i++) {
        ASSERT_GT(pid[i], 1);
        fds[i] = (int)syscall(SYS_pidfd_open, (pid_t)pid[i], 0);
        ASSERT_GE(fds[i], 0);
    }
    ASSERT_OK(mp_process_kill(owner));
    ASSERT_OK(mp_process_join(owner, 30));
    int code = 0;
    ASSERT_OK(mp_process_exitcode(owner, &code));
    ASSERT_EQ(-SIGKILL, code);
    for (int i = 0; i < 3; i++) {
        struct pollfd q = {.fd = fds[i], .events = POLLIN};
        ASSERT_EQ(1, poll(&q, 1, 30000)); /* this worker is gone */
        close(fds[i]);
    }
    /* stop our own fork server, then collect whatever was reparented to us
     * (the workers, the dead owner's fork server) */
    mp__exit_cleanup();
    mp_test_reap_orphans(20);
    ASSERT_OK(mp_process_close(owner));
    mp_args_free(a);
}

/* ---- a task table another process corrupted ------------------------------------------ */

/*
 * Any worker can write anywhere in the pool's heap, the task table
 * included.  These map functions do so from inside a task (mp__pool_poke):
 * the parent must go on from its own copy of what it published, and a
 * worker must refuse an entry that names memory outside the heap (it exits
 * 6 and the parent recovers as from a death) rather than crash or loop.
 */

/* Item 0 fails after making its entry span every index there is. */
static int m_poke_span_then_fail(const void *item, void *result)
{
    const int64_t *x = item;
    if (*x == 0) {
        if (mp__pool_poke("start", 0) < 0 || mp__pool_poke("end", UINT64_MAX) < 0 ||
            mp__pool_poke("job", 0) < 0)
            return 99;
        return 1;
    }
    *(int64_t *)result = *x * *x;
    return 0;
}

/* Item 1 points its entry's items past the heap and its end at the last
 * index there is, then its worker dies. */
static int m_poke_then_die(const void *item, void *result)
{
    const int64_t *x = item;
    if (*x == 1) {
        if (mp__pool_poke("items_off", (uint64_t)1 << 62) < 0 ||
            mp__pool_poke("end", UINT64_MAX) < 0 || mp__pool_poke("started_ns", 1) < 0)
            return 99;
        _exit(3);
    }
    *(int64_t *)result = *x * *x;
    return 0;
}

/* Item 0 points the next entry's items past the heap. */
static int m_poke_next(const void *item, void *result)
{
    const int64_t *x = item;
    if (*x == 0 && mp__pool_poke("next.items_off", (uint64_t)1 << 62) < 0)
        return 99;
    *(int64_t *)result = *x * *x;
    return 0;
}

MP_TEST(pool_parent_ignores_a_corrupted_entry, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_pool *p = pool_with(ctx, 1, NULL);
    enum { N = 8 };
    int64_t *x = ints_new(N, 0), r[N];
    mp_task_error e = {.index = 12345};
    /* a failure report: the parent settles the chunk it published */
    ASSERT_ERR(MP_ETASK, mp_pool_map(p, m_poke_span_then_fail, x, N, 8, r, 8, 4, &e));
    ASSERT_EQ(0, e.index);
    ASSERT_EQ(1, e.code);
    for (int i = 1; i < N; i++)
        ASSERT_EQ((int64_t)i * i, r[i]);
    /* a death: the rest of the chunk goes back as published */
    memset(r, 0xff, sizeof r);
    e = (mp_task_error){.index = 12345};
    ASSERT_ERR(MP_EWORKER, mp_pool_map(p, m_poke_then_die, x, N, 8, r, 8, 4, &e));
    ASSERT_EQ(1, e.index);
    ASSERT_EQ(MP_EWORKER, e.code);
    ASSERT_EQ(3, e.exitcode);
    for (int i = 0; i < N; i++)
        if (i != 1)
            ASSERT_EQ((int64_t)i * i, r[i]);
    /* and the pool works on */
    ASSERT_OK(mp_pool_map(p, m_square, x, N, 8, r, 8, 1, NULL));
    for (int i = 0; i < N; i++)
        ASSERT_EQ((int64_t)i * i, r[i]);
    free(x);
    close_join_free(p);
}

MP_TEST(pool_worker_refuses_a_corrupted_entry, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_pool *p = pool_with(ctx, 1, NULL);
    enum { N = 2 };
    int64_t *x = ints_new(N, 0), r[N];
    mp_task_error e = {.index = 12345};
    /* one worker: it runs item 0 while the entry of item 1 waits */
    ASSERT_ERR(MP_EWORKER, mp_pool_map(p, m_poke_next, x, N, 8, r, 8, 1, &e));
    ASSERT_EQ(1, e.index);
    ASSERT_EQ(MP_EWORKER, e.code);
    ASSERT_EQ(0, e.signal); /* it did not crash: it refused the entry */
    ASSERT_EQ(6, e.exitcode);
    ASSERT_EQ(0, r[0]);
    ASSERT_OK(mp_pool_map(p, m_square, x, N, 8, r, 8, 1, NULL));
    ASSERT_EQ(1, r[1]);
    free(x);
    close_join_free(p);
}

/* ---- a multi-threaded parent ------------------------------------------------------ */

typedef struct tjob {
    mp_pool *p; /* NULL: the thread makes its own */
    mp_context *ctx;
    int id, rounds;
    int rc;     /* 0 when every result was right */
} tjob;

static void *thread_maps(void *arg)
{
    tjob *t = arg;
    enum { N = 300 };
    mp_pool *p = t->p;
    bool own = p == NULL;
    t->rc = 1;
    if (own) {
        mp_pool_opts o = {.ctx = t->ctx, .processes = 2};
        if (mp_pool_new(&p, &o) != 0)
            return NULL;
    }
    int64_t *x = ints_new(N, 0), *r = calloc(N, sizeof *r);
    for (int round = 0; round < t->rounds; round++) {
        int64_t base = (int64_t)t->id * 1000000 + round * 1000;
        for (int i = 0; i < N; i++)
            x[i] = base + i;
        memset(r, 0, N * sizeof *r);
        if (mp_pool_map(p, m_square, x, N, 8, r, 8, (size_t)(round % 3) * 7, NULL) != 0)
            goto out;
        for (int i = 0; i < N; i++)
            if (r[i] != x[i] * x[i])
                goto out;
        /* an imap and an apply too */
        mp_imap *it;
        if (mp_pool_imap(p, m_square, x, 50, 8, 8, 3, round % 2, &it) != 0)
            goto out;
        int64_t sum = 0, want = 0, v;
        for (int i = 0; i < 50; i++)
            want += x[i] * x[i];
        while (mp_imap_next(it, &v, NULL, NULL, 60) == 0)
            sum += v;
        mp_imap_free(it);
        if (sum != want)
            goto out;
        mp_args *a;
        mp_buf out = MP_BUF_INIT;
        if (mp_args_of(&a, "l", base) != 0)
            goto out;
        int rc = mp_pool_apply(p, t_sqr, a, &out);
        mp_args_free(a);
        bool ok = rc == 0 && out.len == 16 && ((int64_t *)out.data)[0] == base * base;
        mp_buf_free(&out);
        if (!ok)
            goto out;
    }
    t->rc = 0;
out:
    free(x);
    free(r);
    if (own) {
        if (mp_pool_close(p) != 0 || mp_pool_join(p, 60) != 0)
            t->rc = 2;
        mp_pool_free(p);
    }
    return NULL;
}

MP_TEST(multithreaded_parent, .variants = MP_START_METHODS, .timeout_s = 120)
{
    enum { T = 4 };
    pthread_t th[T];
    tjob tj[T];
    /* several threads on one pool */
    mp_pool *p = pool_with(ctx, 3, NULL);
    for (int i = 0; i < T; i++) {
        tj[i] = (tjob){.p = p, .ctx = ctx, .id = i + 1, .rounds = 10};
        ASSERT_EQ(0, pthread_create(&th[i], NULL, thread_maps, &tj[i]));
    }
    for (int i = 0; i < T; i++) {
        ASSERT_EQ(0, pthread_join(th[i], NULL));
        ASSERT_EQ(0, tj[i].rc);
    }
    close_join_free(p);
    /* several threads, each with a pool of its own, made and freed there */
    for (int i = 0; i < T - 1; i++) {
        tj[i] = (tjob){.p = NULL, .ctx = ctx, .id = i + 10, .rounds = 4};
        ASSERT_EQ(0, pthread_create(&th[i], NULL, thread_maps, &tj[i]));
    }
    for (int i = 0; i < T - 1; i++) {
        ASSERT_EQ(0, pthread_join(th[i], NULL));
        ASSERT_EQ(0, tj[i].rc);
    }
}

/* ---- map functions in shared libraries ----------------------------------------------- */

int mp_testlib_map_cube(const void *item, void *result);
void *mp_testlib_static_map(void);

static void check_lib_map(mp_context *ctx, mp_map_fn cube, mp_map_fn plus1)
{
    mp_pool *p = pool_with(ctx, 2, NULL);
    int64_t *x = ints_new(100, -50), r[100];
    ASSERT_OK(mp_pool_map(p, cube, x, 100, 8, r, 8, 0, NULL));
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(x[i] * x[i] * x[i], r[i]);
    ASSERT_OK(mp_pool_map(p, plus1, x, 100, 8, r, 8, 7, NULL));
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(x[i] * x[i] + 1, r[i]);
    mp_imap *it;
    ASSERT_OK(mp_pool_imap(p, cube, x, 100, 8, 8, 9, true, &it));
    for (int i = 0; i < 100; i++) {
        int64_t v;
        ASSERT_OK(mp_imap_next(it, &v, NULL, NULL, 60));
        ASSERT_EQ(x[i] * x[i] * x[i], v);
    }
    mp_imap_free(it);
    free(x);
    close_join_free(p);
}

MP_TEST(map_fn_in_shared_library, .variants = MP_START_METHODS, .timeout_s = 60)
{
    check_lib_map(ctx, mp_testlib_map_cube, (mp_map_fn)mp_testlib_static_map());
}

MP_TEST(map_fn_in_dlopened_library, .variants = MP_START_METHODS, .timeout_s = 60)
{
    void *h = dlopen(MP_TESTLIB_DL_PATH, RTLD_NOW | RTLD_LOCAL);
    ASSERT_TRUE(h != NULL);
    mp_map_fn cube = (mp_map_fn)dlsym(h, "mp_testlib_map_cube");
    void *(*get_static)(void) = (void *(*)(void))dlsym(h, "mp_testlib_static_map");
    ASSERT_TRUE(cube != NULL && get_static != NULL);
    check_lib_map(ctx, cube, (mp_map_fn)get_static());
    dlclose(h);
}

/* ============================================================================ */
/* The crash test (issue 6): random SIGKILLs during 100 000-item maps            */
/* ============================================================================ */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#define CRASH_WORK 512

/* A microsecond or so of work, then the value and the worker's pid; the
 * pid also goes into a shared slot, where the killer finds live workers. */
static int m_crashwork(const void *item, void *result)
{
    uint64_t x = *(const uint64_t *)item, v = x;
    for (int k = 0; k < CRASH_WORK; k++)
        v = mix64(v);
    wres *r = result;
    r->pid = getpid();
    r->sq = (int64_t)v;
    if (g_shared != NULL) {
        size_t n;
        int64_t *slots = w_slots(&n);
        __atomic_store_n(&slots[x % n], (int64_t)getpid(), __ATOMIC_RELAXED);
    }
    return 0;
}

static int64_t crash_expect(uint64_t x)
{
    uint64_t v = x;
    for (int k = 0; k < CRASH_WORK; k++)
        v = mix64(v);
    return (int64_t)v;
}

typedef struct killer {
    int64_t *slots;
    atomic_bool stop;
    uint64_t seed;
    long kills;
} killer;

static void *killer_thread(void *arg)
{
    killer *k = arg;
    pid_t me = getpid();
    while (!atomic_load(&k->stop)) {
        k->seed = mix64(k->seed);
        struct timespec ts = {0, (long)(2 + k->seed % 10) * 1000000L}; /* pacing only */
        nanosleep(&ts, NULL);
        if (atomic_load(&k->stop))
            break;
        k->seed = mix64(k->seed);
        pid_t pid = (pid_t)__atomic_load_n(&k->slots[k->seed % NSLOTS], __ATOMIC_RELAXED);
        if (pid > 1 && pid != me && kill(pid, SIGKILL) == 0)
            k->kills++;
    }
    return NULL;
}

MP_TEST(crash_test_random_kills, .variants = MP_START_METHODS, .timeout_s = 400)
{
    enum { NPROC = 4, ROUNDS = 20 };
    const size_t N = 100000;
    shared s;
    shared_new(&s, NPROC);
    mp_pool *p = pool_with(ctx, NPROC, &s);
    uint64_t *x = malloc(N * sizeof *x);
    wres *r = malloc(N * sizeof *r);
    unsigned char *seen = malloc(N);
    ASSERT_TRUE(x && r && seen);
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    printf("# crash test (%s): seed %ju\n", method, (uintmax_t)seed);
    long total_kills = 0, total_failed = 0;
    double t0 = mp_monotonic();

    for (int round = 0; round < ROUNDS; round++) {
        int mode = round % 3; /* map, imap ordered, imap unordered */
        size_t chunksize = round % 2 ? 100 : 0;
        for (size_t i = 0; i < N; i++)
            x[i] = ((uint64_t)(round + 1) << 32) | i;
        killer k = {.slots = mp_array_data(s.slots), .seed = seed + (uint64_t)round};
        atomic_init(&k.stop, false);
        pthread_t kt;
        ASSERT_EQ(0, pthread_create(&kt, NULL, killer_thread, &k));
        long failed = 0;
        double rt = mp_monotonic();
        if (mode == 0) {
            mp_task_error e = {0};
            mp_async *a;
            ASSERT_OK(mp_pool_map_async(p, m_crashwork, x, N, 8, r, sizeof *r, chunksize, &a));
            int rc = mp_async_get(a, 120, NULL, &e);
            if (rc == MP_ETIMEDOUT && !mp_async_ready(a))
                MP__FAIL("round %d: the map did not finish within 120 s (a hang)", round);
            mp_async_free(a);
            atomic_store(&k.stop, true);
            ASSERT_EQ(0, pthread_join(kt, NULL));
            /* a failed item's result is not defined: count what is wrong */
            size_t lowest = SIZE_MAX;
            for (size_t i = 0; i < N; i++)
                if (r[i].sq != crash_expect(x[i]) || r[i].pid <= 0) {
                    failed++;
                    if (lowest == SIZE_MAX)
                        lowest = i;
                }
            if (rc == 0) {
                ASSERT_EQ(0, failed);
            } else {
                ASSERT_ERR(MP_EWORKER, rc);
                ASSERT_ERR(MP_EWORKER, e.code);
                ASSERT_EQ(SIGKILL, e.signal);
                ASSERT_EQ(0, e.exitcode);
                ASSERT_LT(e.index, N);
                if (lowest != SIZE_MAX) /* the first failure in index order */
                    ASSERT_LE(e.index, lowest);
                if (failed == 0)
                    failed = 1; /* at least the one reported */
            }
        } else {
            mp_imap *it;
            ASSERT_OK(mp_pool_imap(p, m_crashwork, x, N, 8, sizeof *r, chunksize, mode == 1, &it));
            memset(seen, 0, N);
            for (size_t n = 0; n < N; n++) {
                wres w = {0};
                size_t idx = SIZE_MAX;
                mp_task_error e = {0};
                int rc = mp_imap_next(it, &w, &idx, &e, 120);
                if (rc == MP_ETIMEDOUT)
                    MP__FAIL("round %d: no result for 120 s after %zu of %zu (a hang)", round, n,
                             N);
                ASSERT_LT(idx, N);
                if (mode == 1)
                    ASSERT_EQ(n, idx);
                ASSERT_EQ(0, seen[idx]);
                seen[idx] = 1;
                if (rc == 0) {
                    ASSERT_EQ(crash_expect(x[idx]), w.sq);
                    ASSERT_GT(w.pid, 0);
                } else {
                    ASSERT_ERR(MP_EWORKER, rc);
                    ASSERT_EQ(idx, e.index);
                    ASSERT_ERR(MP_EWORKER, e.code);
                    ASSERT_EQ(SIGKILL, e.signal);
                    failed++;
                }
            }
            atomic_store(&k.stop, true);
            ASSERT_EQ(0, pthread_join(kt, NULL));
            ASSERT_ERR(MP_EOF, mp_imap_next(it, NULL, NULL, NULL, 60));
            mp_imap_free(it);
        }
        ASSERT_LE(failed, k.kills);
        printf("# round %d (%s, chunksize %zu): %.2f s, %ld kills, %ld failed items\n", round,
               mode == 0 ? "map" : mode == 1 ? "imap" : "imap_unordered", chunksize,
               mp_monotonic() - rt, k.kills, failed);
        total_kills += k.kills;
        total_failed += failed;
        /* the pool is whole and usable */
        check_all_workers(p, NPROC);
        int64_t sx[100], sr[100];
        for (int i = 0; i < 100; i++)
            sx[i] = i + round;
        ASSERT_OK(mp_pool_map(p, m_square, sx, 100, 8, sr, 8, 0, NULL));
        for (int i = 0; i < 100; i++)
            ASSERT_EQ(sx[i] * sx[i], sr[i]);
    }
    printf("# crash test (%s): %d rounds of %zu items, %ld kills, %ld failed items, %.1f s\n",
           method, ROUNDS, N, total_kills, total_failed, mp_monotonic() - t0);
    ASSERT_GT(total_kills, 0);
    close_join_free(p);
    free(x);
    free(r);
    free(seen);
    shared_free(&s);
}
