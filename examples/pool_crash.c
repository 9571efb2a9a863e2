/*
 * pool_crash.c: a pool that survives a worker being killed, where Python's
 * does not.
 *
 *     def f(x):
 *         if x == 500:
 *             os.kill(os.getpid(), signal.SIGKILL)
 *         return x * x
 *
 *     with Pool(2) as pool:
 *         print(pool.map(f, range(1000)))    # Python: hangs forever
 *
 * Python's Pool never hears about the lost task: the worker is replaced but
 * map() waits for a result that will not come (concurrent.futures'
 * ProcessPoolExecutor instead breaks the whole pool: BrokenProcessPool for
 * every pending future).  Here the map fails exactly the item that was
 * running, with MP_EWORKER and the signal that killed the worker; every
 * other item gets its result, the dead worker is replaced, and the pool goes
 * on taking work.  Each case runs under every start method.
 *
 * The item that kills its worker is marked in the item itself (an array of
 * structs: Python's starmap), so that the mark reaches spawned workers too.
 */
#include <multiproc.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(call)                                                                  \
    do {                                                                             \
        int err_ = (call);                                                           \
        if (err_ < 0) {                                                              \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,      \
                    mp_errname(err_), mp_strerror(err_));                            \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define N 1000
#define VICTIM 500

static int failures;

static void expect(bool ok, const char *what)
{
    printf("  %-66s %s\n", what, ok ? "ok" : "FAILED");
    if (!ok)
        failures++;
}

typedef struct item {
    int64_t x;
    int32_t die; /* 1: this item kills its worker */
} item;

/* def f(x): if x is the victim, SIGKILL myself; else return x * x */
static int f(const void *in, void *out)
{
    const item *it = in;
    if (it->die)
        kill(getpid(), SIGKILL);
    *(int64_t *)out = it->x * it->x;
    return 0;
}

/* Results other than the victim's: how many are wrong. */
static size_t wrong_results(const int64_t *results, size_t skip)
{
    size_t bad = 0;
    for (size_t i = 0; i < N; i++)
        if (i != skip && results[i] != (int64_t)i * (int64_t)i)
            bad++;
    return bad;
}

static int square_task(const mp_args *args, mp_buf *result)
{
    int64_t x = mp_args_int(args, 0), sq = x * x;
    return mp_buf_append(result, &sq, sizeof sq);
}

static void crash_under(const char *method)
{
    printf("%s:\n", method);
    mp_pool *pool;
    mp_pool_opts opts = {.ctx = mp_get_context(method), .processes = 2};
    CHECK(mp_pool_new(&pool, &opts));
    static item items[N];
    static int64_t results[N];
    for (size_t i = 0; i < N; i++)
        items[i] = (item){.x = (int64_t)i, .die = i == VICTIM};

    /* 1. The map with the victim in it. */
    memset(results, 0xff, sizeof results);
    mp_task_error err = {0};
    int rc = mp_pool_map(pool, f, items, N, sizeof(item), results, sizeof results[0], 0, &err);
    printf("  map over %d items: %s, item %zu, signal %d (%s)\n", N, mp_errname(rc), err.index,
           err.signal, err.signal > 0 ? strsignal(err.signal) : "none");
    expect(rc == MP_EWORKER && err.index == VICTIM && err.signal == SIGKILL,
           "the map reports item 500: MP_EWORKER, killed by signal 9");
    size_t bad = wrong_results(results, VICTIM);
    printf("  the other %d results: %zu wrong\n", N - 1, bad);
    expect(bad == 0, "every other item got its square");

    /* 2. Item by item (imap): the victim is the only failure. */
    mp_imap *it;
    CHECK(mp_pool_imap(pool, f, items, N, sizeof(item), sizeof(int64_t), 0, true, &it));
    size_t nfail = 0, failed_at = SIZE_MAX, got = 0;
    int failed_sig = 0;
    for (;;) {
        int64_t r;
        size_t idx;
        mp_task_error e;
        int ir = mp_imap_next(it, &r, &idx, &e, 30);
        if (ir == MP_EOF)
            break;
        if (ir == 0) {
            got += r == (int64_t)idx * (int64_t)idx;
        } else if (ir == MP_EWORKER) {
            nfail++;
            failed_at = e.index;
            failed_sig = e.signal;
        } else {
            printf("  imap: %s\n", mp_errname(ir));
            break;
        }
    }
    mp_imap_free(it);
    printf("  imap: %zu results right, %zu failed (item %zu, signal %d)\n", got, nfail,
           failed_at, failed_sig);
    expect(got == N - 1 && nfail == 1 && failed_at == VICTIM && failed_sig == SIGKILL,
           "imap: exactly one failure, item 500, the rest in order");

    /* 3. The pool goes on: the same items without the victim, and an apply. */
    items[VICTIM].die = 0;
    memset(results, 0xff, sizeof results);
    rc = mp_pool_map(pool, f, items, N, sizeof(item), results, sizeof results[0], 0, &err);
    expect(rc == 0 && wrong_results(results, SIZE_MAX) == 0,
           "the pool goes on: a second map of all 1000 items succeeds");
    mp_args *args;
    mp_buf b = MP_BUF_INIT;
    CHECK(mp_args_of(&args, "i", (int64_t)12));
    rc = mp_pool_apply(pool, square_task, args, &b);
    mp_args_free(args);
    int64_t v = 0;
    if (rc == 0 && b.len == sizeof v)
        memcpy(&v, b.data, sizeof v);
    mp_buf_free(&b);
    expect(rc == 0 && v == 144, "apply(square, (12,)) = 144 on the replaced workers");

    CHECK(mp_pool_close(pool));
    rc = mp_pool_join(pool, 30);
    expect(rc == 0, "close() + join(): every worker exits");
    mp_pool_free(pool);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *methods[3];
    size_t nm = mp_get_all_start_methods(methods, 3);
    for (size_t i = 0; i < nm && i < 3; i++)
        crash_under(methods[i]);
    if (failures) {
        printf("pool_crash: %d check(s) FAILED\n", failures);
        return 1;
    }
    printf("pool_crash: OK\n");
    return 0;
}
