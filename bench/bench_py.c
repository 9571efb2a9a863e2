/*
 * bench_py.c: talking to Python: the pickle codec on a connection, and a C
 * worker of a Python manager's job queue.  py_py.py measures the same in
 * Python and runs the manager.
 *
 * The value every benchmark moves is one small dict, as a job queue would
 * carry: {'job': 3, 'args': [1.5, 'x', b'yy'], 'ok': True}.
 *
 *   mp_send_dict, mp_send_dict_bytes (pinned: this process is pinned to the
 *   first CPU it may use before the child is forked, so both share it, as
 *   the typed-message row of bench_conn.c)
 *       one round trip of the dict between this process and a forked child
 *       over mp_pipe(duplex): mp_conn_send_py of the dict (built once), the
 *       child mp_conn_recv_py's it and mp_conn_send_py's the value it got
 *       back, this process mp_conn_recv_py's that and checks it equals the
 *       dict sent (mp_py_equal).  mp_send_dict_bytes, a reference for the
 *       codec's own cost: the same pickle bytes (mp_py_dumps once, before
 *       timing) with mp_conn_send_bytes, echoed by the child with
 *       mp_conn_recv_bytes + mp_conn_send_bytes, received into an mp_buf
 *       reused across calls and compared with memcmp.  Not a floor: the
 *       bytes pass through the same connection code, only the pickling is
 *       left out;
 *   mp_pymgr_jobs (run by py_py.py mgr, which serves the queues)
 *       a worker's job throughput from a Python BaseManager: `bench_py
 *       worker ADDRESS AUTHKEY N BATCHES` connects (mp_pymgr_connect), gets
 *       the 'get_jobs' and 'get_results' queues (mp_pymgr_create), then
 *       takes N x (BATCHES + 1) jobs, each with mp_pyproxy_get, and for each
 *       puts {'job': job, 'result': 2 * job} with mp_pyproxy_put.  A sample
 *       is a batch of N jobs (the first batch warms up), reported per job.
 *
 * Each round trip benchmark warms up for a tenth of its count first.
 * Prints one JSON line per benchmark (see bench_stats.h).
 *
 * usage: bench_py [-n N]               the round trips (default 20000)
 *        bench_py worker ADDRESS AUTHKEY N BATCHES
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include "bench_stats.h"
#include "bench_util.h"

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL)
        die("calloc", ENOMEM);
    return p;
}

/* The dict every benchmark here moves (py_py.py's DICT). */
static mp_py *job_dict(int64_t job)
{
    mp_py *d = mp_py_dict_new(), *args = mp_py_list_new();
    if (d == NULL || args == NULL)
        die("mp_py", ENOMEM);
    check("list", mp_py_list_append(args, mp_py_float_new(1.5)));
    check("list", mp_py_list_append(args, mp_py_str_new("x")));
    check("list", mp_py_list_append(args, mp_py_bytes_new("yy", 2)));
    check("dict", mp_py_dict_set_str(d, "job", mp_py_int_new(job)));
    check("dict", mp_py_dict_set_str(d, "args", args));
    check("dict", mp_py_dict_set_str(d, "ok", mp_py_bool_new(true)));
    return d;
}

/* ---- children ------------------------------------------------------------- */

/* Start @fn under fork with a Pipe end as its only argument, pinned with
 * this process to its first CPU; *mine gets our end.  The old affinity goes
 * to @saved. */
static mp_process *pinned_child(mp_conn **mine, int (*fn)(const mp_args *), cpu_set_t *saved)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) < 0)
        die("sched_getaffinity", errno);
    int first = 0;
    while (first < CPU_SETSIZE && !CPU_ISSET(first, &set))
        first++;
    pin_saved(first, saved);
    mp_conn *b;
    check("mp_pipe", mp_pipe(mine, &b, true));
    mp_args *args;
    check("mp_args_of", mp_args_of(&args, "P", b));
    mp_process *p;
    check("mp_process_new", mp_process_new(&p, mp_get_context("fork"), fn, args));
    mp_args_free(args);
    check("mp_process_start", mp_process_start(p));
    mp_conn_close(b);
    return p;
}

static void child_end(mp_conn *mine, mp_process *p, const cpu_set_t *saved)
{
    mp_conn_close(mine);
    /* A forked child holds a copy of our end too: it never sees EOF. */
    check("terminate", mp_process_terminate(p));
    check("join", mp_process_join(p, 60));
    check("close", mp_process_close(p));
    unpin(saved);
}

/* ---- the dict over a Pipe ------------------------------------------------- */

static int py_echo(const mp_args *a)
{
    mp_conn *c = mp_args_conn(a, 0);
    mp_py *v;
    while (mp_conn_recv_py(c, 0, &v) == 0) {
        int err = mp_conn_send_py(c, v);
        mp_py_free(v);
        if (err < 0)
            return 1;
    }
    return 0;
}

static void send_dict(size_t n)
{
    cpu_set_t saved;
    mp_conn *a;
    mp_process *p = pinned_child(&a, py_echo, &saved);
    mp_py *d = job_dict(3);
    uint64_t *s = xcalloc(n, sizeof *s);
    for (size_t i = 0; i < n + n / 10; i++) { /* the first tenth warms up */
        uint64_t t0 = bench_now_ns();
        mp_py *back;
        check("send_py", mp_conn_send_py(a, d));
        check("recv_py", mp_conn_recv_py(a, 0, &back));
        bool same = mp_py_equal(back, d);
        mp_py_free(back);
        if (i >= n / 10)
            s[i - n / 10] = bench_now_ns() - t0;
        if (!same)
            die("echo values", MP_EBADMSG);
    }
    child_end(a, p, &saved);
    mp_py_free(d);
    bench_report("mp_send_dict", s, n);
    free(s);
}

static int bytes_echo(const mp_args *a)
{
    mp_conn *c = mp_args_conn(a, 0);
    mp_buf b = MP_BUF_INIT;
    while (mp_conn_recv_bytes(c, &b, 0) == 0)
        if (mp_conn_send_bytes(c, b.data, b.len) < 0)
            return 1;
    mp_buf_free(&b);
    return 0;
}

static void send_dict_bytes(size_t n)
{
    mp_py *d = job_dict(3);
    mp_buf pickle = MP_BUF_INIT, in = MP_BUF_INIT;
    check("dumps", mp_py_dumps(d, &pickle));
    mp_py_free(d);
    cpu_set_t saved;
    mp_conn *a;
    mp_process *p = pinned_child(&a, bytes_echo, &saved);
    uint64_t *s = xcalloc(n, sizeof *s);
    for (size_t i = 0; i < n + n / 10; i++) {
        uint64_t t0 = bench_now_ns();
        check("send", mp_conn_send_bytes(a, pickle.data, pickle.len));
        check("recv", mp_conn_recv_bytes(a, &in, 0));
        bool same = in.len == pickle.len && memcmp(in.data, pickle.data, in.len) == 0;
        if (i >= n / 10)
            s[i - n / 10] = bench_now_ns() - t0;
        if (!same)
            die("echo bytes", MP_EBADMSG);
    }
    child_end(a, p, &saved);
    bench_report("mp_send_dict_bytes", s, n);
    free(s);
    mp_buf_free(&pickle);
    mp_buf_free(&in);
}

/* ---- a worker of a Python manager's job queue ----------------------------- */

static int64_t job_of(const mp_py *job)
{
    int64_t v;
    if (mp_py_int(mp_py_dict_get_str(job, "job"), &v) != 0)
        die("job without an int 'job'", MP_EBADMSG);
    return v;
}

static int worker(const char *address, const char *key, size_t n, size_t batches)
{
    mp_pymgr *m;
    mp_pyproxy *jobs, *results;
    check("mp_pymgr_connect", mp_pymgr_connect(&m, address, key, strlen(key)));
    check("create get_jobs", mp_pymgr_create(m, "get_jobs", NULL, NULL, &jobs, NULL));
    check("create get_results", mp_pymgr_create(m, "get_results", NULL, NULL, &results, NULL));
    uint64_t *s = xcalloc(batches, sizeof *s);
    for (size_t b = 0; b < batches + 1; b++) { /* batch 0 warms up */
        uint64_t t0 = bench_now_ns();
        for (size_t i = 0; i < n; i++) {
            mp_py *job;
            check("get", mp_pyproxy_get(jobs, MP_FOREVER, &job));
            int64_t j = job_of(job);
            mp_py_free(job);
            mp_py *r = mp_py_dict_new();
            if (r == NULL)
                die("mp_py", ENOMEM);
            check("dict", mp_py_dict_set_str(r, "job", mp_py_int_new(j)));
            check("dict", mp_py_dict_set_str(r, "result", mp_py_int_new(2 * j)));
            check("put", mp_pyproxy_put(results, r, MP_FOREVER));
            mp_py_free(r);
        }
        if (b > 0)
            s[b - 1] = bench_now_ns() - t0;
    }
    mp_pyproxy_free(jobs);
    mp_pyproxy_free(results);
    mp_pymgr_free(m);
    bench_report_per("mp_pymgr_jobs", s, batches, (double)n);
    free(s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "worker") == 0) {
        if (argc != 6) {
            fprintf(stderr, "usage: bench_py worker ADDRESS AUTHKEY N BATCHES\n");
            return 2;
        }
        return worker(argv[2], argv[3], bench_count(argv[4]), bench_count(argv[5]));
    }
    size_t n = 20000;
    int opt;
    while ((opt = getopt(argc, argv, "n:")) != -1) {
        if (opt != 'n') {
            fprintf(stderr, "usage: bench_py [-n N] | worker ADDRESS AUTHKEY N BATCHES\n");
            return 2;
        }
        n = bench_count(optarg);
    }
    send_dict(n);
    send_dict_bytes(n);
    return 0;
}
