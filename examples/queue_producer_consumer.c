/*
 * queue_producer_consumer.c: Queue, the first of the seed notes' two
 * channels between processes (进程间通信 / 队列: "multiprocessing.Queue is
 * thread- and process-safe, close to a clone of queue.Queue").  The notes
 * leave its code block empty; this is the producer/consumer program that
 * usually fills it:
 *
 *     from multiprocessing import Process, Queue
 *     import os, time, random
 *
 *     def write(q):
 *         print('Process to write: %s' % os.getpid())
 *         for value in ['A', 'B', 'C']:
 *             print('Put %s to queue...' % value)
 *             q.put(value)
 *             time.sleep(random.random())
 *
 *     def read(q):
 *         print('Process to read: %s' % os.getpid())
 *         while True:
 *             value = q.get(True)
 *             print('Get %s from queue.' % value)
 *
 *     if __name__ == '__main__':
 *         q = Queue()
 *         pw = Process(target=write, args=(q,))
 *         pr = Process(target=read, args=(q,))
 *         pw.start(); pr.start()
 *         pw.join()
 *         pr.terminate()
 *
 * Here there are two producers (A B C and X Y Z) and one consumer.
 * Instead of terminate(), which may kill the reader in the middle of a
 * get, the parent puts a sentinel (an empty message, Python's None) once
 * the producers are done; the reader stops at it.  The reader checks what
 * it got (every value once, each producer's values in the order it put
 * them; values of two producers may interleave) and says so in its exit
 * code.  The whole program runs under each start method: the queue travels
 * to the children in their argument lists.  (Sleeps are at most 0.1 s
 * instead of 1 s to keep the demo short.)
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

#define NPRODUCERS 2
static const char *const values[NPRODUCERS] = {"ABC", "XYZ"};

/* printf, then out at once: children share the parent's stdout, and a
 * spawned child's stdout into a pipe is not line-buffered. */
MP_PRINTF(1, 2) static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* def write(q), args: (queue, str values) */
static int write_values(const mp_args *args)
{
    mp_queue *q = mp_args_queue(args, 0);
    const char *vals = mp_args_str(args, 1);
    unsigned seed = (unsigned)getpid();
    say("Process to write: %d\n", (int)getpid());
    for (const char *v = vals; *v; v++) {
        say("Put %c to queue...\n", *v);
        CHECK(mp_queue_put(q, v, 1, MP_FOREVER)); /* a one-byte message */
        sleep_s(0.1 * rand_r(&seed) / RAND_MAX);  /* time.sleep(random.random()) */
    }
    return 0;
}

/* def read(q), args: (queue).  Exit code 0 when everything arrived right. */
static int read_values(const mp_args *args)
{
    mp_queue *q = mp_args_queue(args, 0);
    say("Process to read: %d\n", (int)getpid());
    char got[64];
    size_t n = 0;
    for (;;) {
        char value;
        size_t len;
        CHECK(mp_queue_get_into(q, &value, 1, &len, MP_FOREVER)); /* q.get(True) */
        if (len == 0)
            break; /* the sentinel */
        say("Get %c from queue.\n", value);
        if (n < sizeof got)
            got[n++] = value;
    }
    /* Each producer's values, in its own order, and nothing else. */
    size_t next[NPRODUCERS] = {0}, expected = 0;
    for (int p = 0; p < NPRODUCERS; p++)
        expected += strlen(values[p]);
    bool ok = n == expected;
    for (size_t i = 0; ok && i < n; i++) {
        bool placed = false;
        for (int p = 0; p < NPRODUCERS && !placed; p++)
            if (values[p][next[p]] == got[i]) {
                next[p]++;
                placed = true;
            }
        ok = placed;
    }
    say("reader: %zu values, each producer's in order: %s\n", n, ok ? "yes" : "NO");
    return ok ? 0 : 1;
}

static mp_process *start(mp_context *ctx, mp_target_fn target, mp_queue *q, const char *vals)
{
    mp_args *args;
    mp_process *p;
    CHECK(mp_args_new(&args));
    CHECK(mp_args_add_queue(args, q));
    if (vals)
        CHECK(mp_args_add_str(args, vals));
    CHECK(mp_process_new(&p, ctx, target, args));
    mp_args_free(args);
    CHECK(mp_process_start(p));
    return p;
}

static int join_and_close(mp_process *p)
{
    int code;
    CHECK(mp_process_join(p, MP_FOREVER));
    CHECK(mp_process_exitcode(p, &code));
    CHECK(mp_process_close(p));
    return code;
}

/* One run of the program under @method; true when everything checked out. */
static bool run(const char *method)
{
    printf("--- start method %s\n", method);
    mp_context *ctx = mp_get_context(method);
    mp_queue *q;
    CHECK(mp_queue_new(&q, 0)); /* q = Queue() */
    mp_process *pw[NPRODUCERS];
    for (int i = 0; i < NPRODUCERS; i++)
        pw[i] = start(ctx, write_values, q, values[i]);
    mp_process *pr = start(ctx, read_values, q, NULL);
    int bad = 0;
    for (int i = 0; i < NPRODUCERS; i++)
        bad += join_and_close(pw[i]) != 0; /* pw.join() */
    CHECK(mp_queue_put(q, "", 0, MP_FOREVER)); /* the sentinel (None) */
    int code = join_and_close(pr);
    bool empty = mp_queue_empty(q);
    mp_queue_free(q);
    bool ok = bad == 0 && code == 0 && empty;
    printf("%s: producers exited with 0: %s, reader exited with %d, queue empty: %s  %s\n",
           method, bad == 0 ? "yes" : "NO", code, empty ? "yes" : "NO", ok ? "ok" : "FAILED");
    return ok;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *methods[3];
    size_t nm = mp_get_all_start_methods(methods, 3);
    int failures = 0;
    for (size_t i = 0; i < nm && i < 3; i++)
        failures += !run(methods[i]);
    if (failures) {
        printf("queue_producer_consumer: %d run(s) FAILED\n", failures);
        return 1;
    }
    printf("queue_producer_consumer: OK\n");
    return 0;
}
