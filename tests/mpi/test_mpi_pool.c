/*
 * libmultiproc-mpi under mpiexec (tests/mpi/CMakeLists.txt runs each
 * scenario on 3 ranks under a timeout).  Rank 0 runs the scenario named by
 * argv[1]; the other ranks serve inside mp_mpi_init.  The exit status is
 * the number of failed checks (0: passed).
 *
 *   map       results byte-identical to the local pool (and to the items'
 *             expected values) for n in {0, 1, 7, 10000}, chunksize in
 *             {0, 1, 3, n}, items and results of 1 B to 1 MiB
 *   calls     map_async with progress, imap both ways, apply, apply_async
 *             with its callback, initializer, maxtasksperchild, several
 *             pools, close/join, terminate, what is refused
 *   failures  items that SIGKILL themselves, segfault, overrun
 *             task_timeout or fail with a code, each alone; an apply that
 *             SIGKILLs itself (MP_EWORKER with the signal); an initializer
 *             that fails on one rank
 *   kill_rank an item kills its rank: the job must end (non-zero)
 *   buildid   rank 0 runs another build (MPMD): mp_pool_new MP_ENOTFOUND
 *   alone     one rank (mpiexec -n 1): mp_pool_new MP_EINVAL
 */
#include <multiproc/mpi.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef MP_TEST_OTHER_BUILD
/* another build of this program: another build id */
const char *mp_test_build_variant = "other";
#else
const char *mp_test_build_variant = "main";
#endif

/* AddressSanitizer takes SIGSEGV itself: it reports and exits (status 1) */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static int failures;
#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            failures++;                                                         \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)
#define MIB ((size_t)1 << 20)

/* The rank a worker process serves (Open MPI, MPICH): -1 if unknown. */
static int my_rank(void)
{
    const char *v = getenv("OMPI_COMM_WORLD_RANK");
    if (v == NULL)
        v = getenv("PMI_RANK");
    return v ? atoi(v) : -1;
}

/* ---- deterministic items and results ------------------------------------------ */

static uint64_t fnv(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

/* @n bytes from a generator seeded by the item's bytes */
static void fill(unsigned char *out, size_t n, uint64_t seed)
{
    uint64_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[i] = (unsigned char)(x >> 24);
    }
}

#define MAPFN(name, isz, rsz)                                                   \
    static int name(const void *item, void *result)                            \
    {                                                                           \
        fill(result, (rsz), fnv(item, (isz)));                                 \
        return 0;                                                               \
    }
MAPFN(map_1_1, 1, 1)
MAPFN(map_8_24, 8, 24)
MAPFN(map_1m_8, MIB, 8)
MAPFN(map_8_1m, 8, MIB)

static void make_items(unsigned char *items, size_t n, size_t isz)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < isz; k++)
            items[i * isz + k] = (unsigned char)(i * 131 + k * 7 + (i >> 8));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int scenario_map(void)
{
    mp_pool *local, *remote;
    mp_pool_opts lo = {.ctx = mp_get_context("spawn"), .processes = 2};
    mp_pool_opts ro = {.ctx = mp_mpi_context(), .processes = 1};
    CHECK(mp_pool_new(&local, &lo) == 0, "local pool");
    CHECK(mp_pool_new(&remote, &ro) == 0, "mpi pool");
    if (failures)
        return failures;
    struct {
        mp_map_fn fn;
        size_t isz, rsz, nmax;
    } kinds[] = {{map_1_1, 1, 1, 10000},
                 {map_8_24, 8, 24, 10000},
                 {map_1m_8, MIB, 8, 7},
                 {map_8_1m, 8, MIB, 7}};
    size_t ns[] = {0, 1, 7, 10000};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        for (size_t a = 0; a < 4; a++) {
            size_t n = ns[a];
            if (n > kinds[k].nmax)
                continue;
            size_t isz = kinds[k].isz, rsz = kinds[k].rsz;
            unsigned char *items = malloc(n * isz + 1), *want = malloc(n * rsz + 1),
                          *got_l = malloc(n * rsz + 1), *got_r = malloc(n * rsz + 1);
            make_items(items, n, isz);
            for (size_t i = 0; i < n; i++)
                kinds[k].fn(items + i * isz, want + i * rsz);
            size_t chunks[] = {0, 1, 3, n};
            for (size_t c = 0; c < 4; c++) {
                memset(got_l, 0xAA, n * rsz);
                memset(got_r, 0x55, n * rsz);
                mp_task_error te;
                double t0 = now_s();
                int rl = mp_pool_map(local, kinds[k].fn, items, n, isz, got_l, rsz, chunks[c], &te);
                double t1 = now_s();
                int rr = mp_pool_map(remote, kinds[k].fn, items, n, isz, got_r, rsz, chunks[c], &te);
                if (getenv("MP_TEST_VERBOSE"))
                    fprintf(stderr, "isz %zu rsz %zu n %zu chunk %zu: local %.3fs mpi %.3fs\n",
                            isz, rsz, n, chunks[c], t1 - t0, now_s() - t1);
                CHECK(rl == 0 && rr == 0, "isz %zu rsz %zu n %zu chunk %zu: %d %d", isz, rsz, n,
                      chunks[c], rl, rr);
                CHECK(memcmp(got_r, got_l, n * rsz) == 0 && memcmp(got_r, want, n * rsz) == 0,
                      "isz %zu rsz %zu n %zu chunk %zu: results differ", isz, rsz, n, chunks[c]);
            }
            free(items);
            free(want);
            free(got_l);
            free(got_r);
        }
    }
    /* processes 0: every CPU of every rank */
    mp_pool *all;
    mp_pool_opts ao = {.ctx = mp_mpi_context()};
    CHECK(mp_pool_new(&all, &ao) == 0, "processes 0");
    if (all) {
        unsigned char items[777], got[777 * 24], want[777 * 24];
        make_items(items, 777, 1);
        for (size_t i = 0; i < 777; i++)
            map_1_1(items + i, want + i);
        CHECK(mp_pool_map(all, map_1_1, items, 777, 1, got, 1, 0, NULL) == 0, "map");
        CHECK(memcmp(got, want, 777) == 0, "results");
        mp_pool_free(all);
    }
    mp_pool_free(local);
    mp_pool_free(remote);
    return failures;
}

/* ---- calls ---------------------------------------------------------------------- */

static int64_t worker_value = -1;

static int init_set(const mp_args *a)
{
    worker_value = mp_args_int(a, 0);
    return 0;
}

static int get_value(const void *item, void *result)
{
    int64_t v = worker_value * 1000 + *(const int64_t *)item;
    memcpy(result, &v, sizeof v);
    return 0;
}

static int square(const void *item, void *result)
{
    int64_t v = *(const int64_t *)item;
    v *= v;
    memcpy(result, &v, sizeof v);
    return 0;
}

static int slow_square(const void *item, void *result)
{
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return square(item, result);
}

static int sleepy(const void *item, void *result)
{
    (void)item;
    (void)result;
    sleep(60);
    return 0;
}

static int pid_of(const void *item, void *result)
{
    (void)item;
    int64_t v = getpid();
    memcpy(result, &v, sizeof v);
    return 0;
}

/* apply: "hello " + args[0], and the rank it ran on */
static int greet(const mp_args *a, mp_buf *out)
{
    char s[128];
    int n = snprintf(s, sizeof s, "hello %s from %d", mp_args_str(a, 0), my_rank());
    return mp_buf_append(out, s, (size_t)n);
}

static int apply_fail(const mp_args *a, mp_buf *out)
{
    (void)out;
    return (int)mp_args_int(a, 0);
}

static atomic_int cb_calls;
static void on_done(mp_async *r, void *udata)
{
    (void)r;
    atomic_fetch_add(&cb_calls, *(int *)udata);
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int scenario_calls(void)
{
    mp_pool *p;
    mp_pool_opts o = {.ctx = mp_mpi_context(), .processes = 1};
    CHECK(mp_pool_new(&p, &o) == 0, "pool");
    if (failures)
        return failures;
    enum { N = 300 };
    int64_t items[N], res[N];
    for (int i = 0; i < N; i++)
        items[i] = i - 17;
    /* map_async and its progress */
    mp_async *r;
    CHECK(mp_pool_map_async(p, slow_square, items, N, 8, res, 8, 4, &r) == 0, "map_async");
    size_t done = 0, total = 0, last = 0;
    bool monotone = true;
    for (int k = 0; k < 3000 && !mp_async_ready(r); k++) {
        CHECK(mp_async_progress(r, &done, &total) == 0, "progress");
        monotone = monotone && done >= last && done <= N;
        last = done;
        nap_ms(2);
    }
    CHECK(mp_async_get(r, 60, NULL, NULL) == 0, "map_async result");
    CHECK(mp_async_progress(r, &done, &total) == 0 && done == N && total == N,
          "progress at the end %zu/%zu", done, total);
    CHECK(monotone, "progress went back or past the total");
    for (int i = 0; i < N; i++)
        CHECK(res[i] == items[i] * items[i], "map_async item %d", i);
    mp_async_free(r);
    /* imap, both orders */
    for (int ordered = 0; ordered < 2; ordered++) {
        mp_imap *it;
        CHECK(mp_pool_imap(p, square, items, N, 8, 8, 7, ordered, &it) == 0, "imap");
        bool seen[N] = {false};
        size_t idx, count = 0, expect = 0;
        int64_t v;
        int rc;
        while ((rc = mp_imap_next(it, &v, &idx, NULL, 60)) == 0) {
            CHECK(idx < N && !seen[idx] && v == items[idx] * items[idx], "imap item %zu", idx);
            if (ordered)
                CHECK(idx == expect, "ordered imap gave %zu for %zu", idx, expect);
            if (idx < N)
                seen[idx] = true;
            expect++;
            count++;
        }
        CHECK(rc == MP_EOF && count == N, "imap end %d after %zu", rc, count);
        mp_imap_free(it);
    }
    /* apply, apply_async with its callback */
    mp_args *a;
    CHECK(mp_args_new(&a) == 0 && mp_args_add_str(a, "world") == 0, "args");
    mp_buf out = MP_BUF_INIT;
    CHECK(mp_pool_apply(p, greet, a, &out) == 0, "apply");
    CHECK(out.len > 12 && memcmp(out.data, "hello world ", 12) == 0 &&
              atoi((char *)out.data + 17) >= 1,
          "apply result '%.*s'", (int)out.len, (char *)out.data);
    int one = 1;
    mp_async *ar[8];
    for (int i = 0; i < 8; i++)
        CHECK(mp_pool_apply_async(p, greet, a, on_done, &one, &ar[i]) == 0, "apply_async");
    for (int i = 0; i < 8; i++) {
        out.len = 0;
        CHECK(mp_async_get(ar[i], 60, &out, NULL) == 0 && out.len > 12, "apply_async %d", i);
    }
    for (int k = 0; k < 1000 && atomic_load(&cb_calls) < 8; k++)
        nap_ms(10);
    CHECK(atomic_load(&cb_calls) == 8, "callbacks %d", atomic_load(&cb_calls));
    for (int i = 0; i < 8; i++)
        mp_async_free(ar[i]);
    mp_args *fa;
    CHECK(mp_args_new(&fa) == 0 && mp_args_add_int(fa, 42) == 0, "args");
    mp_task_error te = {0};
    CHECK(mp_pool_apply_async(p, apply_fail, fa, NULL, NULL, &r) == 0, "apply_async");
    CHECK(mp_async_get(r, 60, NULL, &te) == MP_ETASK && te.code == 42, "failing apply %d",
          te.code);
    mp_async_free(r);
    mp_args_free(fa);
    /* what cannot travel */
    void *buf = (void *)1;
    CHECK(mp_pool_shared_alloc(p, 4096, &buf) == MP_EINVAL && buf == NULL, "shared_alloc");
    mp_args *pa;
    CHECK(mp_args_new(&pa) == 0 && mp_args_add_ptr(pa, &out) == 0, "ptr args");
    CHECK(mp_pool_apply_async(p, greet, pa, NULL, NULL, &r) == MP_EINVAL, "a pointer travels");
    mp_args_free(pa);
    CHECK(mp_args_new(&pa) == 0 && mp_args_add_fd(pa, 1) == 0, "fd args");
    CHECK(mp_pool_apply_async(p, greet, pa, NULL, NULL, &r) == MP_EINVAL, "a descriptor travels");
    mp_args_free(pa);
    mp_queue *mq = NULL;
    CHECK(mp_queue_new(&mq, 0) == 0 && mp_args_new(&pa) == 0 && mp_args_add_queue(pa, mq) == 0,
          "queue args");
    CHECK(mp_pool_apply_async(p, greet, pa, NULL, NULL, &r) == MP_EINVAL, "a queue travels");
    mp_pool *refused = NULL;
    mp_pool_opts bad = {.ctx = mp_mpi_context(), .processes = 1, .initializer = init_set,
                        .initargs = pa};
    CHECK(mp_pool_new(&refused, &bad) == MP_EINVAL && refused == NULL, "a queue in initargs");
    mp_args_free(pa);
    mp_queue_free(mq);
    /* a second pool beside the first, with an initializer and maxtasksperchild */
    mp_args *ia;
    CHECK(mp_args_new(&ia) == 0 && mp_args_add_int(ia, 7) == 0, "initargs");
    mp_pool *q;
    mp_pool_opts qo = {.ctx = mp_mpi_context(), .processes = 1, .initializer = init_set,
                       .initargs = ia};
    CHECK(mp_pool_new(&q, &qo) == 0, "second pool");
    if (q) {
        CHECK(mp_pool_map(q, get_value, items, N, 8, res, 8, 0, NULL) == 0, "map on q");
        for (int i = 0; i < N; i++)
            CHECK(res[i] == 7000 + items[i], "initializer value: item %d %ld", i, (long)res[i]);
        CHECK(mp_pool_map(p, square, items, N, 8, res, 8, 0, NULL) == 0, "map on p");
        CHECK(res[N - 1] == items[N - 1] * items[N - 1], "map on p");
        /* both pools at once */
        int64_t res_q[N];
        mp_async *rp, *rq;
        CHECK(mp_pool_map_async(p, slow_square, items, N, 8, res, 8, 3, &rp) == 0, "async on p");
        CHECK(mp_pool_map_async(q, get_value, items, N, 8, res_q, 8, 3, &rq) == 0, "async on q");
        CHECK(mp_async_get(rq, 60, NULL, NULL) == 0 && mp_async_get(rp, 60, NULL, NULL) == 0,
              "two pools at once");
        for (int i = 0; i < N; i++)
            CHECK(res[i] == items[i] * items[i] && res_q[i] == 7000 + items[i],
                  "two pools at once: item %d", i);
        mp_async_free(rp);
        mp_async_free(rq);
        CHECK(mp_pool_close(q) == 0 && mp_pool_join(q, 60) == 0, "close, join");
        CHECK(mp_pool_map(q, square, items, N, 8, res, 8, 0, NULL) == MP_EINVAL,
              "map after close");
        mp_pool_free(q);
    }
    mp_args_free(ia);
    mp_pool *m;
    mp_pool_opts mo = {.ctx = mp_mpi_context(), .processes = 1, .maxtasksperchild = 1};
    CHECK(mp_pool_new(&m, &mo) == 0, "maxtasksperchild pool");
    if (m) {
        enum { M = 8 };
        int64_t pids[M];
        CHECK(mp_pool_map(m, pid_of, items, M, 8, pids, 8, 1, NULL) == 0, "map");
        int distinct = 0;
        for (int i = 0; i < M; i++) {
            bool dup = false;
            for (int k = 0; k < i; k++)
                dup = dup || pids[k] == pids[i];
            distinct += !dup;
        }
        CHECK(distinct == M, "maxtasksperchild 1: %d processes for %d tasks", distinct, M);
        mp_pool_free(m);
    }
    /* terminate with work outstanding: it ends promptly, the handle broken */
    CHECK(mp_pool_map_async(p, sleepy, items, 4, 8, res, 8, 1, &r) == 0, "map_async");
    nap_ms(300);
    time_t t0 = time(NULL);
    CHECK(mp_pool_terminate(p) == 0 && mp_pool_join(p, 30) == 0, "terminate, join");
    CHECK(mp_async_get(r, 10, NULL, NULL) == MP_EBROKEN, "terminated map");
    CHECK(time(NULL) - t0 < 20, "terminate took %lds", (long)(time(NULL) - t0));
    mp_async_free(r);
    mp_pool_free(p);
    mp_args_free(a);
    mp_buf_free(&out);
    /* and a pool after all that */
    CHECK(mp_pool_new(&p, &o) == 0, "pool after terminate");
    if (p) {
        CHECK(mp_pool_map(p, square, items, N, 8, res, 8, 0, NULL) == 0, "map");
        CHECK(res[3] == items[3] * items[3], "map");
        mp_pool_free(p);
    }
    return failures;
}

/* ---- failures ------------------------------------------------------------------- */

static int fragile(const void *item, void *result)
{
    int64_t v = *(const int64_t *)item;
    if (v == 5)
        raise(SIGKILL);
    if (v == 17)
        raise(SIGSEGV);
    if (v == 29)
        sleep(60); /* overruns task_timeout */
    if (v == 33)
        return 7;
    v = v * 3 + 1;
    memcpy(result, &v, sizeof v);
    return 0;
}

static int apply_kill(const mp_args *a, mp_buf *out)
{
    (void)a;
    (void)out;
    raise(SIGKILL);
    return 0;
}

static int init_fail_on_rank2(const mp_args *a)
{
    (void)a;
    return my_rank() == 2 ? 9 : 0;
}

static int scenario_failures(void)
{
    mp_pool *p;
    mp_pool_opts o = {.ctx = mp_mpi_context(), .processes = 1, .task_timeout = 2};
    CHECK(mp_pool_new(&p, &o) == 0, "pool");
    if (failures)
        return failures;
    enum { N = 40 };
    int64_t items[N], res[N];
    for (int i = 0; i < N; i++)
        items[i] = i;
    mp_task_error te = {0};
    int rc = mp_pool_map(p, fragile, items, N, 8, res, 8, 3, &te);
    CHECK(rc == MP_EWORKER && te.index == 5 && te.code == MP_EWORKER && te.signal == SIGKILL,
          "map: %d, item %zu code %d signal %d", rc, te.index, te.code, te.signal);
    for (int i = 0; i < N; i++)
        if (i != 5 && i != 17 && i != 29 && i != 33)
            CHECK(res[i] == items[i] * 3 + 1, "item %d: %ld", i, (long)res[i]);
    mp_imap *it;
    CHECK(mp_pool_imap(p, fragile, items, N, 8, 8, 2, false, &it) == 0, "imap");
    size_t idx, count = 0;
    int64_t v;
    for (;;) {
        te = (mp_task_error){0};
        rc = mp_imap_next(it, &v, &idx, &te, 120);
        if (rc == MP_EOF || rc == MP_ETIMEDOUT || rc == MP_EBROKEN)
            break;
        count++;
        if (idx == 5)
            CHECK(rc == MP_EWORKER && te.code == MP_EWORKER && te.signal == SIGKILL,
                  "SIGKILL item: %d %d %d", rc, te.code, te.signal);
        else if (idx == 17)
            CHECK(rc == MP_EWORKER && te.code == MP_EWORKER &&
                      (te.signal == SIGSEGV || (UNDER_ASAN && te.exitcode != 0)),
                  "segfault item: %d %d %d", rc, te.code, te.signal);
        else if (idx == 29)
            CHECK(rc == MP_EWORKER && te.code == MP_ETIMEDOUT, "overrunning item: %d %d", rc,
                  te.code);
        else if (idx == 33)
            CHECK(rc == MP_ETASK && te.code == 7, "failing item: %d %d", rc, te.code);
        else
            CHECK(rc == 0 && v == items[idx] * 3 + 1, "item %zu: %d", idx, rc);
    }
    CHECK(rc == MP_EOF && count == N, "imap end: %d after %zu", rc, count);
    mp_imap_free(it);
    mp_buf out = MP_BUF_INIT;
    CHECK(mp_pool_apply(p, apply_kill, NULL, &out) == MP_EWORKER, "apply that kills itself");
    /* ...and says how its process died, as a map item does */
    mp_async *ka = NULL;
    CHECK(mp_pool_apply_async(p, apply_kill, NULL, NULL, NULL, &ka) == 0, "apply_async");
    te = (mp_task_error){0};
    rc = ka ? mp_async_get(ka, 60, NULL, &te) : MP_EINVAL;
    CHECK(rc == MP_EWORKER && te.code == MP_EWORKER && te.signal == SIGKILL && te.exitcode == 0,
          "apply_async that kills itself: %d, code %d signal %d exitcode %d", rc, te.code,
          te.signal, te.exitcode);
    mp_async_free(ka);
    /* the pool goes on */
    CHECK(mp_pool_map(p, square, items, N, 8, res, 8, 0, NULL) == 0 && res[N - 1] == 39 * 39,
          "map after the failures");
    mp_pool_free(p);
    mp_buf_free(&out);
    /* an initializer that fails on rank 2 */
    mp_pool_opts io = {.ctx = mp_mpi_context(), .processes = 1, .initializer = init_fail_on_rank2};
    p = NULL;
    rc = mp_pool_new(&p, &io);
    CHECK(rc == MP_ETASK && p == NULL, "initializer failing on rank 2: %d", rc);
    /* and the ranks serve the next pool */
    CHECK(mp_pool_new(&p, &o) == 0, "pool after the failed one");
    if (p) {
        CHECK(mp_pool_map(p, square, items, N, 8, res, 8, 0, NULL) == 0 && res[2] == 4, "map");
        mp_pool_free(p);
    }
    return failures;
}

/* ---- a rank that dies ------------------------------------------------------------- */

static int kill_rank(const void *item, void *result)
{
    (void)item;
    (void)result;
    if (my_rank() == 1)
        kill(getppid(), SIGKILL); /* the rank process this worker serves */
    sleep(60);
    return 0;
}

static int scenario_kill_rank(void)
{
    mp_pool *p;
    mp_pool_opts o = {.ctx = mp_mpi_context(), .processes = 1};
    CHECK(mp_pool_new(&p, &o) == 0, "pool");
    int64_t items[4] = {0}, res[4];
    /* never returns: the job ends under it */
    if (mp_pool_map(p, kill_rank, items, 4, 8, res, 8, 1, NULL) < 0)
        fprintf(stderr, "the map failed\n");
    fprintf(stderr, "FAIL: the map returned after its rank died\n");
    return 1;
}

/* mpiexec -n 1: no rank to serve */
static int scenario_alone(void)
{
    mp_pool *p = NULL;
    mp_pool_opts o = {.ctx = mp_mpi_context()};
    int rc = mp_pool_new(&p, &o);
    CHECK(rc == MP_EINVAL && p == NULL, "a pool with no other rank: %d", rc);
    return failures;
}

static int scenario_buildid(void)
{
    mp_pool *p = NULL;
    mp_pool_opts o = {.ctx = mp_mpi_context(), .processes = 1};
    int rc = mp_pool_new(&p, &o);
    CHECK(rc == MP_ENOTFOUND && p == NULL, "pool with another build on the ranks: %d", rc);
    return failures;
}

int main(int argc, char **argv)
{
    if (mp_mpi_init(&argc, &argv) < 0) {
        fprintf(stderr, "mp_mpi_init failed\n");
        return 1;
    }
    const char *what = argc > 1 ? argv[1] : "";
    int f;
    if (strcmp(what, "map") == 0)
        f = scenario_map();
    else if (strcmp(what, "calls") == 0)
        f = scenario_calls();
    else if (strcmp(what, "failures") == 0)
        f = scenario_failures();
    else if (strcmp(what, "kill_rank") == 0)
        f = scenario_kill_rank();
    else if (strcmp(what, "alone") == 0)
        f = scenario_alone();
    else if (strcmp(what, "buildid") == 0)
        f = scenario_buildid();
    else {
        fprintf(stderr, "unknown scenario '%s'\n", what);
        f = 1;
    }
    if (mp_mpi_finalize() < 0)
        f++;
    if (f == 0)
        printf("%s (%s): passed\n", what, mp_test_build_variant);
    return f != 0;
}
