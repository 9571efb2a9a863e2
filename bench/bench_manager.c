/*
 * bench_manager.c: the manager's shared dict, against a bare socket round
 * trip.  The manager is started with the fork context; its clients are
 * forked children that connect to it by address (as a Python proxy does in
 * a child).
 *
 *   mp_mgr_dict_rtt
 *       one mp_dict_set + mp_dict_get (8-byte key, 8-byte value: two
 *       requests, two replies) from a child process;
 *   raw_sock_rtt16x2
 *       the bare kernel operation: two processes on a unix socketpair,
 *       write 16 bytes / read a 16-byte reply, twice (as set + get);
 *   mp_mgr_dict_batch
 *       mp_dict_batch of 1000 operations (500 set + get pairs, 8-byte keys
 *       and values) from a child: per operation
 *       (Python's like-for-like batch is py_mgr_dict_batch: one update
 *       request with the 500 sets, one get_many request for the 500 gets);
 *   mp_mgr_dict_batch_set
 *       mp_dict_batch of 1000 sets from a child: per set (Python's own
 *       batch, dict.update, only sets);
 *   mp_mgr_dict_add_Np
 *       N client processes at once, each doing M mp_dict_add on one shared
 *       key: the wall time from "go" to the last client done, divided by
 *       N*M (per-op time of the aggregate throughput; one sample a round).
 *       The final count is checked;
 *   mp_mgr_dict_rtt_pin, raw_sock_rtt16x2_pin
 *       mp_mgr_dict_rtt and raw_sock_rtt16x2 with everything on one CPU
 *       (the first this process may use): the client, and a second
 *       manager's server with all its threads (pinned by inheritance: this
 *       process is pinned while it starts it; checked), or both ends of the
 *       socketpair.  A round trip is then wake-ups and context switches
 *       only, not how fast the VM wakes an idle CPU;
 *   mp_mgr_cond_rtt
 *       a manager Condition (its own RLock) ping-pong between this process
 *       and a forked child that got it in its arguments: each side, holding
 *       the lock, notifies and waits in turn; one sample per round trip
 *       (from this side's wait returning to its next one returning: both
 *       sides' notify + wait, four requests);
 *   mp_mgr_barrier_rtt
 *       a manager Barrier of two parties, this process and a forked child,
 *       each waiting on it repeatedly: one sample per pass;
 *   mp_mgr_start
 *       one operation: mp_manager_start (its server forked by the "fork"
 *       context), mp_manager_dict + mp_dict_set of one 8-byte value,
 *       mp_manager_free (shut the server down and join it); -s samples
 *       (default 20), placement left to the scheduler.
 *
 * Prints one JSON line per benchmark (see bench_stats.h).
 *
 * usage: bench_manager [-n N_RTT] [-p PROCS] [-m OPS_PER_PROC] [-r ROUNDS] [-s STARTS]
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include "bench_stats.h"
#include "bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static mp_process *start(mp_target_fn fn, const mp_args *args)
{
    mp_process *p;
    check("mp_process_new", mp_process_new(&p, mp_get_context("fork"), fn, args));
    check("mp_process_start", mp_process_start(p));
    return p;
}

static void join(mp_process *p)
{
    int code;
    check("join", mp_process_join(p, 120));
    check("exitcode", mp_process_exitcode(p, &code));
    if (code != 0) {
        fprintf(stderr, "bench_manager: a child exited with %d\n", code);
        exit(1);
    }
    check("close", mp_process_close(p));
}

/* ---- CPU placement ------------------------------------------------------ */

/* The first CPU this process may use. */
static int first_cpu(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) < 0)
        die("sched_getaffinity", errno);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set))
            return c;
    return 0;
}

/* ---- set+get round trip from a child ---------------------------------- */

/* args: address, n, result name, cpu (< 0: anywhere).  Connects on its own,
 * times n set+get pairs, reports. */
static int rtt_client(const mp_args *a)
{
    size_t n = (size_t)mp_args_int(a, 1);
    pin((int)mp_args_int(a, 3));
    mp_manager *m;
    check("mp_manager_connect", mp_manager_connect(&m, mp_args_str(a, 0), NULL, 0));
    mp_dict *d;
    check("mp_manager_dict", mp_manager_dict(m, "rtt", &d));
    uint64_t *s = calloc(n, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    mp_buf got = MP_BUF_INIT;
    char key[8] = "key-0000";
    for (size_t i = 0; i < n + n / 10; i++) { /* the first tenth warms up */
        uint64_t v = i;
        key[7] = (char)('0' + i % 8);
        uint64_t t0 = bench_now_ns();
        check("mp_dict_set", mp_dict_set(d, key, sizeof key, &v, sizeof v));
        check("mp_dict_get", mp_dict_get(d, key, sizeof key, &got));
        uint64_t t1 = bench_now_ns();
        if (got.len != sizeof v || memcmp(got.data, &v, sizeof v) != 0)
            die("dict value", MP_EBADMSG);
        if (i >= n / 10)
            s[i - n / 10] = t1 - t0;
    }
    bench_report(mp_args_str(a, 2), s, n);
    free(s);
    mp_buf_free(&got);
    mp_dict_free(d);
    mp_manager_free(m);
    return 0;
}

static void mgr_rtt(mp_manager *m, size_t n, const char *name, int cpu)
{
    mp_args *args;
    check("mp_args_of", mp_args_of(&args, "slsi", mp_manager_address(m), (int64_t)n, name, cpu));
    mp_process *p = start(rtt_client, args);
    mp_args_free(args);
    join(p);
}

/* ---- batches from a child ---------------------------------------------- */

enum { BATCH = 1000 };

/* args: address, n batches, sets only.  One sample per batch, per op. */
static int batch_client(const mp_args *a)
{
    size_t n = (size_t)mp_args_int(a, 1);
    bool sets_only = mp_args_int(a, 2) != 0;
    mp_manager *m;
    check("mp_manager_connect", mp_manager_connect(&m, mp_args_str(a, 0), NULL, 0));
    mp_dict *d;
    check("mp_manager_dict", mp_manager_dict(m, "batch", &d));
    uint64_t *s = calloc(n, sizeof *s), vals[BATCH];
    char keys[BATCH][8];
    mp_dict_op ops[BATCH];
    if (s == NULL)
        die("calloc", ENOMEM);
    mp_buf got = MP_BUF_INIT;
    for (size_t r = 0; r < n + n / 10 + 1; r++) { /* the first tenth warms up */
        for (int i = 0; i < BATCH; i++) {
            int k = sets_only ? i : i / 2;
            memcpy(keys[i], "key-", 4);
            memcpy(keys[i] + 4, &k, 4);
            vals[i] = r * BATCH + (uint64_t)k;
            ops[i] = (mp_dict_op){.op = sets_only || i % 2 == 0 ? MP_DICT_SET : MP_DICT_GET,
                                  .key = keys[i], .keylen = 8,
                                  .value = &vals[i], .valuelen = 8};
        }
        uint64_t t0 = bench_now_ns();
        check("mp_dict_batch", mp_dict_batch(d, ops, BATCH, &got));
        uint64_t t1 = bench_now_ns();
        for (int i = 0; i < BATCH; i++)
            if (ops[i].status != 0 ||
                (ops[i].op == MP_DICT_GET &&
                 (ops[i].len != 8 || memcmp((char *)got.data + ops[i].offset, &vals[i], 8))))
                die("batch result", MP_EBADMSG);
        if (r >= n / 10 + 1)
            s[r - n / 10 - 1] = (t1 - t0) / BATCH;
    }
    bench_report(sets_only ? "mp_mgr_dict_batch_set" : "mp_mgr_dict_batch", s, n);
    free(s);
    mp_buf_free(&got);
    mp_dict_free(d);
    mp_manager_free(m);
    return 0;
}

static void mgr_batch(mp_manager *m, size_t n, bool sets_only)
{
    mp_args *args;
    check("mp_args_of", mp_args_of(&args, "sll", mp_manager_address(m), (int64_t)n,
                                   (int64_t)sets_only));
    mp_process *p = start(batch_client, args);
    mp_args_free(args);
    join(p);
}

/* ---- the bare socket round trip ---------------------------------------- */

/* @cpu >= 0: both processes pinned to it; < 0: anywhere. */
static void raw_rtt(size_t n, const char *name, int cpu)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair", errno);
    uint64_t *s = calloc(n, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    char msg[16] = {0};
    cpu_set_t saved;
    pin_saved(cpu, &saved); /* the child inherits it */
    pid_t pid = fork();
    if (pid < 0)
        die("fork", errno);
    if (pid == 0) {
        close(sv[0]);
        while (xfer(sv[1], msg, sizeof msg, false) == 0 && xfer(sv[1], msg, sizeof msg, true) == 0)
            ;
        _exit(0);
    }
    close(sv[1]);
    for (size_t i = 0; i < n + n / 10; i++) {
        uint64_t t0 = bench_now_ns();
        for (int j = 0; j < 2; j++)
            if (xfer(sv[0], msg, sizeof msg, true) < 0 || xfer(sv[0], msg, sizeof msg, false) < 0)
                die("raw echo", EIO);
        if (i >= n / 10)
            s[i - n / 10] = bench_now_ns() - t0;
    }
    close(sv[0]); /* the child sees end of file */
    waitpid(pid, NULL, 0);
    unpin(&saved);
    bench_report(name, s, n);
    free(s);
}

/* ---- N clients at once -------------------------------------------------- */

/* args: address, ops, ready fd (write), go fd (read), done fd (write). */
static int add_client(const mp_args *a)
{
    int64_t ops = mp_args_int(a, 1);
    mp_manager *m;
    check("mp_manager_connect", mp_manager_connect(&m, mp_args_str(a, 0), NULL, 0));
    mp_dict *d;
    check("mp_manager_dict", mp_manager_dict(m, "adds", &d));
    char c = 'r';
    if (write(mp_args_fd(a, 2), &c, 1) != 1)
        die("ready", errno);
    if (read(mp_args_fd(a, 3), &c, 1) != 1) /* one byte each is "go" */
        die("go", EIO);
    for (int64_t i = 0; i < ops; i++)
        check("mp_dict_add", mp_dict_add(d, "count", 5, 1, NULL));
    c = 'd';
    if (write(mp_args_fd(a, 4), &c, 1) != 1)
        die("done", errno);
    mp_dict_free(d);
    mp_manager_free(m);
    return 0;
}

static void read_n(int fd, size_t n)
{
    char c;
    for (size_t i = 0; i < n; i++)
        if (read(fd, &c, 1) != 1)
            die("a client died", EIO);
}

static void mgr_adds(mp_manager *m, size_t procs, size_t ops, size_t rounds)
{
    mp_dict *d;
    check("mp_manager_dict", mp_manager_dict(m, "adds", &d));
    uint64_t *s = calloc(rounds, sizeof *s);
    mp_process **ps = calloc(procs, sizeof *ps);
    if (s == NULL || ps == NULL)
        die("calloc", ENOMEM);
    int64_t expect = 0;
    for (size_t r = 0; r < rounds + 1; r++) { /* round 0 warms up */
        int ready[2], go[2], done[2];
        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0 || pipe2(done, O_CLOEXEC) < 0)
            die("pipe", errno);
        mp_args *args;
        check("mp_args_of", mp_args_of(&args, "slfff", mp_manager_address(m), (int64_t)ops,
                                        ready[1], go[0], done[1]));
        for (size_t i = 0; i < procs; i++)
            ps[i] = start(add_client, args);
        mp_args_free(args);
        close(ready[1]);
        close(go[0]);
        close(done[1]);
        read_n(ready[0], procs);
        /* forked children hold the write end too: no end of file, a byte each */
        char *gos = malloc(procs);
        if (gos == NULL)
            die("malloc", ENOMEM);
        memset(gos, 'g', procs);
        uint64_t t0 = bench_now_ns();
        if (write(go[1], gos, procs) != (ssize_t)procs)
            die("go", errno);
        free(gos);
        read_n(done[0], procs);
        uint64_t t1 = bench_now_ns();
        close(ready[0]);
        close(go[1]);
        close(done[0]);
        for (size_t i = 0; i < procs; i++)
            join(ps[i]);
        if (r > 0)
            s[r - 1] = (t1 - t0) / (procs * ops);
        expect += (int64_t)(procs * ops);
    }
    int64_t total;
    check("mp_dict_add", mp_dict_add(d, "count", 5, 0, &total));
    if (total != expect) {
        fprintf(stderr, "bench_manager: count %lld, expected %lld\n", (long long)total,
                (long long)expect);
        exit(1);
    }
    char name[64];
    snprintf(name, sizeof name, "mp_mgr_dict_add_%zup", procs);
    bench_report(name, s, rounds);
    free(s);
    free(ps);
    mp_dict_free(d);
}

/* ---- condition and barrier round trips --------------------------------- */

/* args: condition, n.  The other side of cond_rtt: notify, then wait. */
static int cond_peer(const mp_args *a)
{
    mp_condition *c = mp_args_condition(a, 0);
    int64_t n = mp_args_int(a, 1);
    check("mp_condition_acquire", mp_condition_acquire(c, 60));
    for (int64_t i = 0; i < n; i++) {
        check("mp_condition_notify", mp_condition_notify(c, 1));
        check("mp_condition_wait", mp_condition_wait(c, 60));
    }
    check("mp_condition_release", mp_condition_release(c));
    return 0;
}

/* The peer can take the lock only once our wait has released it, and each
 * side notifies only while the other waits: a strict ping-pong. */
static void cond_rtt(mp_manager *m, size_t n)
{
    mp_condition *c;
    check("mp_manager_condition", mp_manager_condition(m, "bench-cond", NULL, &c));
    uint64_t *s = calloc(n, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    size_t warm = n / 10, total = n + warm;
    check("mp_condition_acquire", mp_condition_acquire(c, 60));
    mp_args *args;
    check("mp_args_of", mp_args_of(&args, "Cl", c, (int64_t)total));
    mp_process *p = start(cond_peer, args);
    mp_args_free(args);
    check("mp_condition_wait", mp_condition_wait(c, 60)); /* the peer's first notify */
    uint64_t t0 = bench_now_ns();
    for (size_t i = 1; i < total; i++) {
        check("mp_condition_notify", mp_condition_notify(c, 1));
        check("mp_condition_wait", mp_condition_wait(c, 60));
        uint64_t t1 = bench_now_ns();
        if (i > warm)
            s[i - warm - 1] = t1 - t0;
        t0 = t1;
    }
    check("mp_condition_notify", mp_condition_notify(c, 1)); /* its last wait */
    check("mp_condition_release", mp_condition_release(c));
    join(p);
    bench_report("mp_mgr_cond_rtt", s, n - 1);
    free(s);
    mp_condition_free(c);
}

/* args: barrier, n.  The other party: n waits. */
static int barrier_peer(const mp_args *a)
{
    mp_barrier *b = mp_args_barrier(a, 0);
    for (int64_t i = 0; i < mp_args_int(a, 1); i++) {
        int r = mp_barrier_wait(b, 60);
        if (r < 0)
            check("mp_barrier_wait", r);
    }
    return 0;
}

static void barrier_rtt(mp_manager *m, size_t n)
{
    mp_barrier *b;
    check("mp_manager_barrier", mp_manager_barrier(m, "bench-barrier", 2, MP_FOREVER, &b));
    uint64_t *s = calloc(n, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    size_t warm = n / 10;
    mp_args *args;
    check("mp_args_of", mp_args_of(&args, "Bl", b, (int64_t)(n + warm)));
    mp_process *p = start(barrier_peer, args);
    mp_args_free(args);
    for (size_t i = 0; i < n + warm; i++) {
        uint64_t t0 = bench_now_ns();
        int r = mp_barrier_wait(b, 60);
        if (r < 0)
            check("mp_barrier_wait", r);
        if (i >= warm)
            s[i - warm] = bench_now_ns() - t0;
    }
    join(p);
    bench_report("mp_mgr_barrier_rtt", s, n);
    free(s);
    mp_barrier_free(b);
}

/* ---- start-up ------------------------------------------------------------ */

/* One operation: start a manager (its server a child forked by the "fork"
 * context), make a dict and set one key in it, shut the server down and
 * join it (mp_manager_free). */
static void mgr_start(size_t n)
{
    uint64_t *s = calloc(n, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    for (size_t i = 0; i < n + 1; i++) { /* the first warms up */
        uint64_t t0 = bench_now_ns(), one = 1;
        mp_manager *m;
        mp_dict *d;
        check("mp_manager_start", mp_manager_start(&m, mp_get_context("fork"), NULL, NULL, 0));
        check("mp_manager_dict", mp_manager_dict(m, "d", &d));
        check("mp_dict_set", mp_dict_set(d, "k", 1, &one, sizeof one));
        mp_dict_free(d);
        mp_manager_free(m);
        uint64_t t1 = bench_now_ns();
        if (i >= 1)
            s[i - 1] = t1 - t0;
    }
    bench_report("mp_mgr_start", s, n);
    free(s);
}

int main(int argc, char **argv)
{
    size_t n = 20000, procs = 4, ops = 20000, rounds = 10, starts = 20;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0)
            n = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-p") == 0)
            procs = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-m") == 0)
            ops = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-r") == 0)
            rounds = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-s") == 0)
            starts = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else {
            fprintf(stderr, "usage: %s [-n N_RTT] [-p PROCS] [-m OPS_PER_PROC] [-r ROUNDS] "
                            "[-s STARTS]\n",
                    argv[0]);
            return 2;
        }
    }
    mp_manager *m;
    check("mp_manager_start", mp_manager_start(&m, mp_get_context("fork"), NULL, NULL, 0));
    mgr_rtt(m, n, "mp_mgr_dict_rtt", -1);
    raw_rtt(n, "raw_sock_rtt16x2", -1);
    mgr_batch(m, n / 20 ? n / 20 : 1, false);
    mgr_batch(m, n / 20 ? n / 20 : 1, true);
    mgr_adds(m, procs, ops, rounds);
    cond_rtt(m, n / 10 > 1 ? n / 10 : 2);
    barrier_rtt(m, n / 10 ? n / 10 : 1);
    mp_manager_free(m); /* shuts the server down and joins it */

    /* The same set+get with the client, the server (all its threads) and,
     * for the floor, both ends on one CPU: the server inherits the pin
     * from this process, pinned while it starts it. */
    int cpu = first_cpu();
    cpu_set_t saved;
    pin_saved(cpu, &saved);
    check("mp_manager_start", mp_manager_start(&m, mp_get_context("fork"), NULL, NULL, 0));
    unpin(&saved);
    cpu_set_t server;
    if (sched_getaffinity(mp_manager_pid(m), sizeof server, &server) < 0)
        die("sched_getaffinity", errno);
    if (CPU_COUNT(&server) != 1 || !CPU_ISSET(cpu, &server)) {
        fprintf(stderr, "bench_manager: the manager's server is not pinned\n");
        exit(1);
    }
    mgr_rtt(m, n, "mp_mgr_dict_rtt_pin", cpu);
    mp_manager_free(m);
    raw_rtt(n, "raw_sock_rtt16x2_pin", cpu);

    mgr_start(starts);
    return 0;
}
