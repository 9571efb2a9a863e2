/*
 * big_data.c: two things Python's multiprocessing cannot do, for when the
 * data is large or the requests are many.
 *
 * 1. A pool map without copies.  Python pickles every item to a worker and
 *    every result back:
 *
 *        with Pool() as pool:
 *            out = pool.map(f, data)     # data and out both travel, pickled
 *
 *    Arrays placed in mp_pool_shared_alloc buffers are read and written by
 *    the workers where they are: the map below squares ten million numbers
 *    and checks them, and the same map over private arrays (copied in and
 *    out) runs for comparison.
 *
 * 2. Many manager requests in one.  Every access to a Manager().dict()
 *    proxy is a round trip to the server:
 *
 *        for k in keys:
 *            d[k] = v                    # one request each
 *
 *    mp_dict_batch sends a thousand sets, gets, deletes or adds at once;
 *    the server runs them in order under its lock, so no other client sees
 *    the batch half done.  Below, two processes fill a shared dict in
 *    batches while a third reads two keys that every batch sets together,
 *    and never sees them differ.
 */
#include <multiproc.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(call)                                                                  \
    do {                                                                             \
        int err_ = (call);                                                           \
        if (err_ < 0) {                                                              \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,      \
                    mp_errname(err_), mp_strerror(err_));                            \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

static int failures;

static void expect(bool ok, const char *what)
{
    printf("%-70s %s\n", what, ok ? "ok" : "FAILED");
    if (!ok)
        failures++;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- 1. a map over shared buffers ------------------------------------ */

#define N 10000000

static int square(const void *in, void *out)
{
    int64_t x = *(const int64_t *)in;
    *(int64_t *)out = x * x;
    return 0;
}

static size_t wrong_squares(const int64_t *in, const int64_t *out)
{
    size_t bad = 0;
    for (size_t i = 0; i < N; i++)
        bad += out[i] != in[i] * in[i];
    return bad;
}

static void map_without_copies(void)
{
    mp_pool *pool;
    CHECK(mp_pool_new(&pool, NULL)); /* one worker per CPU */
    int64_t *items, *results;
    CHECK(mp_pool_shared_alloc(pool, N * sizeof *items, (void **)&items));
    CHECK(mp_pool_shared_alloc(pool, N * sizeof *results, (void **)&results));
    for (size_t i = 0; i < N; i++)
        items[i] = (int64_t)i - N / 2;

    /* each map twice, timing the second: the first also faults pages in */
    double t0 = 0;
    for (int run = 0; run < 2; run++) {
        t0 = now();
        CHECK(mp_pool_map(pool, square, items, N, sizeof *items, results, sizeof *results, 0,
                          NULL));
    }
    double shared = now() - t0;
    expect(wrong_squares(items, results) == 0, "map over 10^7 items in shared buffers: all right");

    /* the same map over private arrays: copied in and out */
    int64_t *pin = malloc(N * sizeof *pin), *pout = malloc(N * sizeof *pout);
    if (pin == NULL || pout == NULL)
        exit(1);
    memcpy(pin, items, N * sizeof *pin);
    for (int run = 0; run < 2; run++) {
        t0 = now();
        CHECK(mp_pool_map(pool, square, pin, N, sizeof *pin, pout, sizeof *pout, 0, NULL));
    }
    double copied = now() - t0;
    expect(wrong_squares(pin, pout) == 0, "the same map over private arrays: all right");
    printf("in place: %.1f ns per item; copied in and out: %.1f ns per item\n", shared / N * 1e9,
           copied / N * 1e9);

    free(pin);
    free(pout);
    mp_pool_shared_free(pool, items);
    mp_pool_shared_free(pool, results);
    CHECK(mp_pool_close(pool));
    CHECK(mp_pool_join(pool, 60));
    mp_pool_free(pool);
}

/* ---- 2. manager requests in batches ------------------------------------ */

#define WRITERS 2
#define BATCHES 200
#define PER_BATCH 1000

/* args: address, writer number.  Each batch sets PER_BATCH keys of its
 * own, then "a" and "b" to the same stamp, all in one request. */
static int writer(const mp_args *args)
{
    int w = (int)mp_args_int(args, 1);
    mp_manager *m;
    mp_dict *d;
    CHECK(mp_manager_connect(&m, mp_args_str(args, 0), NULL, 0));
    CHECK(mp_manager_dict(m, "big", &d));
    static mp_dict_op ops[PER_BATCH + 2];
    static char keys[PER_BATCH][16];
    static int64_t vals[PER_BATCH];
    for (int b = 0; b < BATCHES; b++) {
        int64_t stamp = (int64_t)w * 1000000 + b;
        for (int i = 0; i < PER_BATCH; i++) {
            int n = snprintf(keys[i], sizeof keys[i], "w%d-%d", w, b * PER_BATCH + i);
            vals[i] = (int64_t)(b * PER_BATCH + i);
            ops[i] = (mp_dict_op){.op = MP_DICT_SET, .key = keys[i], .keylen = (size_t)n,
                                  .value = &vals[i], .valuelen = sizeof vals[i]};
        }
        ops[PER_BATCH] = (mp_dict_op){.op = MP_DICT_SET, .key = "a", .keylen = 1,
                                      .value = &stamp, .valuelen = sizeof stamp};
        ops[PER_BATCH + 1] = (mp_dict_op){.op = MP_DICT_SET, .key = "b", .keylen = 1,
                                          .value = &stamp, .valuelen = sizeof stamp};
        CHECK(mp_dict_batch(d, ops, PER_BATCH + 2, NULL));
        for (int i = 0; i < PER_BATCH + 2; i++)
            if (ops[i].status != 0)
                return 2;
    }
    mp_dict_free(d);
    mp_manager_free(m);
    return 0;
}

/* args: address.  Reads "a" and "b" in one batch, over and over. */
static int reader(const mp_args *args)
{
    mp_manager *m;
    mp_dict *d;
    CHECK(mp_manager_connect(&m, mp_args_str(args, 0), NULL, 0));
    CHECK(mp_manager_dict(m, "big", &d));
    mp_buf out = MP_BUF_INIT;
    int torn = 0;
    for (int r = 0; r < 2000; r++) {
        mp_dict_op ops[2] = {{.op = MP_DICT_GET, .key = "a", .keylen = 1},
                             {.op = MP_DICT_GET, .key = "b", .keylen = 1}};
        CHECK(mp_dict_batch(d, ops, 2, &out));
        if (ops[0].status != ops[1].status ||
            (ops[0].status == 0 &&
             (ops[0].len != ops[1].len ||
              memcmp((char *)out.data + ops[0].offset, (char *)out.data + ops[1].offset,
                     ops[0].len) != 0)))
            torn++;
    }
    mp_buf_free(&out);
    mp_dict_free(d);
    mp_manager_free(m);
    return torn ? 3 : 0;
}

static void batches(void)
{
    mp_manager *m;
    CHECK(mp_manager_start(&m, NULL, NULL, NULL, 0));
    mp_process *ps[WRITERS + 1];
    double t0 = now();
    for (int i = 0; i <= WRITERS; i++) {
        mp_args *a;
        CHECK(mp_args_of(&a, "si", mp_manager_address(m), i));
        CHECK(mp_process_new(&ps[i], NULL, i < WRITERS ? writer : reader, a));
        mp_args_free(a);
        CHECK(mp_process_start(ps[i]));
    }
    int bad = 0;
    for (int i = 0; i <= WRITERS; i++) {
        int code;
        CHECK(mp_process_join(ps[i], MP_FOREVER));
        CHECK(mp_process_exitcode(ps[i], &code));
        CHECK(mp_process_close(ps[i]));
        bad += code != 0;
    }
    double secs = now() - t0;
    mp_dict *d;
    CHECK(mp_manager_dict(m, "big", &d));
    size_t len = 0;
    CHECK(mp_dict_len(d, &len));
    printf("%d writers set %d keys in batches of %d: %.0f sets per second\n", WRITERS,
           WRITERS * BATCHES * PER_BATCH, PER_BATCH, WRITERS * BATCHES * PER_BATCH / secs);
    expect(bad == 0, "writers and reader exited with 0 (the reader never saw a != b)");
    expect(len == (size_t)WRITERS * BATCHES * PER_BATCH + 2, "every key is there, once");
    mp_dict_free(d);
    mp_manager_free(m);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    map_without_copies();
    batches();
    if (failures) {
        printf("big_data: %d check(s) FAILED\n", failures);
        return 1;
    }
    printf("big_data: OK\n");
    return 0;
}
