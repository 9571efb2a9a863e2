/*
 * bench_zmq.c: ZeroMQ (libzmq) doing the work of the Queue and Pipe rows,
 * as the peer column a C programmer would pick instead of multiproc.
 *
 *   zmq_push8, zmq_push1m, zmq_push1m_hwm1000  (beside mp_queue8, mp_queue1m)
 *       8-byte / 1 MiB messages from one producer (a forked child, PUSH)
 *       to one consumer (this process, PULL) over ipc:// (a unix socket in
 *       the abstract namespace), per message.  Same harness as
 *       bench_queue.c: the producer is started before the first batch and
 *       waits on a shared futex go word; a sample is one batch (100000
 *       8-byte or 200 1 MiB messages), from this process bumping the go
 *       word to it taking the batch's last message, divided by the batch's
 *       messages: "n" is the number of batches (a spread of batch
 *       averages).  The first batch warms up (and connects) and is not
 *       counted.  Each message carries its sequence number in its first 8
 *       bytes; the consumer checks the length, FIFO order and that nothing
 *       is lost, as bench_queue does.
 *       Placement "split", as mp_queue8: the consumer process on the first
 *       CPU it may use, the producer process on the second.  Each process
 *       is pinned before it creates its ZeroMQ context, so the context's I/O
 *       thread shares its process's CPU.
 *       High-water marks (ZMQ_SNDHWM on the PUSH, ZMQ_RCVHWM on the PULL):
 *       mp_queue is unbounded, but a limit changes only when the producer
 *       waits, not the work, so each size gets the limit ZeroMQ was fastest
 *       with here (the stronger baseline):
 *         8 B: ZeroMQ's default, 1000 on each side (some 2000 messages plus
 *         the socket buffer in flight; no limit, -w 0, was ~40% slower and
 *         100 was ~2.5x slower);
 *         1 MiB: 1 on each side.  The more messages in flight, the more
 *         each costs here (2: up to 2x, run to run; 4 or more, ZeroMQ's
 *         default 1000 included: ~10x): each 1 MiB message is a fresh
 *         malloc on both sides, and with several alive glibc gives pages
 *         back to the kernel and faults them in again (~140 page faults a
 *         message with 8 in flight, ~4-12 with 1).
 *       zmq_push1m_hwm1000 is zmq_push1m with the default 1000 (more than a
 *       batch: never blocks, as the unbounded mp_queue), to show that cost.
 *       -w N sets N on both sides for zmq_push8 and zmq_push1m.
 *       API: the producer zmq_send's from its own buffer (one copy into a
 *       zmq message, as mp_queue_put copies into the ring); the consumer
 *       takes 8-byte messages with zmq_recv into its buffer and 1 MiB ones
 *       with zmq_msg_recv (zero copy: the message's own buffer, which the
 *       consumer then reads; zmq_recv would add a 1 MiB memcpy to that).
 *       -c uses zmq_recv for 1 MiB too, to see that difference.
 *
 *   zmq_rtt8, zmq_rtt1m  (beside mp_rtt8, mp_rtt1m)
 *       one round trip of an 8-byte / 1 MiB message between this process
 *       and an echoing child over ipc://, each round trip timed alone (the
 *       first tenth warms up), placement left to the scheduler as mp_rtt8.
 *       Pattern: PAIR (no envelope and no request/reply state machine: the
 *       cheapest correct one for a strict ping-pong; -R measures REQ/REP
 *       instead).  The echo takes each message with zmq_msg_recv and sends
 *       that same message back with zmq_msg_send (no copy in user space, as
 *       mp's echo sends the buffer it received into).  This process sends
 *       8 bytes with zmq_send and takes them back with zmq_recv into its
 *       buffer; 1 MiB it sends zero-copy (zmq_msg_init_data on its own
 *       buffer, safe because the reply cannot arrive before the request was
 *       written out) and takes back with zmq_msg_recv (-c: zmq_send and
 *       zmq_recv into a buffer instead, one extra copy each way).
 *   zmq_rtt8_pin, zmq_rtt1m_pin
 *       the same with both processes (and their I/O threads) on one CPU.
 *
 * Prints one JSON line per benchmark (see bench_stats.h).
 *
 * usage: bench_zmq [-b BATCHES] [-n SMALL_PER_BATCH] [-m BIG_PER_BATCH]
 *                  [-r RTT_N] [-s RTT_N_1MIB] [-c] [-R] [-w HWM]
 *                  [push|rtt|NAME ...]
 * (defaults: 10 batches of 100000 8-byte and 200 1 MiB messages, as
 * bench_queue; 20000 and 300 round trips, as bench_conn)
 */
#define _GNU_SOURCE
#include "bench_stats.h"
#include "bench_util.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define BIG ((size_t)1 << 20)

static bool copy_big = false; /* -c: zmq_recv/zmq_send copies for 1 MiB too */
static bool req_rep = false;  /* -R: REQ/REP instead of PAIR for round trips */
/* The PUSH/PULL high-water marks, in messages, on each side (0: none); -w
 * sets both.  See the comment at the top for why these. */
static int hwm_small = 1000, hwm_big = 1;

/* For ZeroMQ calls: they return -1 and set errno. */
static void zcheck(const char *what, int rc)
{
    if (rc < 0)
        die(what, errno);
}

/* The first two CPUs this process may use (-1: none). */
static int cpus[2] = {-1, -1};

static void set_int(void *sock, int opt, int val)
{
    zcheck("zmq_setsockopt", zmq_setsockopt(sock, opt, &val, sizeof val));
}

/* A fresh ipc endpoint in the abstract namespace: nothing to clean up. */
static void endpoint(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "ipc://@mp-bench-zmq-%d-%s", (int)getpid(), name);
}

static void reap(pid_t pid, const char *name)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            die("waitpid", errno);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench_zmq: %s: child failed (status %#x)\n", name, st);
        exit(1);
    }
}

/* ---- PUSH/PULL throughput ------------------------------------------------ */

/* The producer child: waits for each batch on @go, then pushes @per
 * messages of @size bytes, each tagged with its sequence number. */
static int producer(const char *ep, _Atomic uint32_t *go, size_t per, size_t size,
                    uint32_t batches, int hwm)
{
    /* before the context: its I/O thread inherits this (one CPU only:
     * "split" falls back to "free", as in bench_queue) */
    pin(cpus[1]);
    char *msg = calloc(1, size);
    if (msg == NULL)
        return 3;
    void *ctx = zmq_ctx_new();
    if (ctx == NULL)
        return 4;
    void *s = zmq_socket(ctx, ZMQ_PUSH);
    if (s == NULL)
        return 4;
    set_int(s, ZMQ_SNDHWM, hwm);
    uint64_t seq = 0;
    for (uint32_t b = 1; b <= batches; b++) {
        uint32_t g;
        while ((g = atomic_load(go)) < b)
            futex_wait(go, g);
        if (b == 1) /* the consumer has bound by now */
            zcheck("zmq_connect", zmq_connect(s, ep));
        for (size_t i = 0; i < per; i++) {
            memcpy(msg, &seq, 8);
            seq++;
            if (zmq_send(s, msg, size, 0) != (int)size)
                return 5;
        }
    }
    /* Stay connected until the consumer has taken every message: ZeroMQ
     * may drop messages still queued on the receiving side when the
     * connection ends (seen here with finite high-water marks). */
    uint32_t g;
    while ((g = atomic_load(go)) <= batches)
        futex_wait(go, g);
    zmq_close(s);
    zmq_ctx_term(ctx);
    free(msg);
    return 0;
}

static void push_bench(const char *name, size_t size, size_t per, size_t batches, int hwm)
{
    cpu_set_t saved;
    if (sched_getaffinity(0, sizeof saved, &saved) < 0)
        die("sched_getaffinity", errno);
    char ep[128];
    endpoint(ep, sizeof ep, name);
    _Atomic uint32_t *go = shared_map(sizeof *go);
    size_t total = batches + 1;
    /* fork before this process has a ZeroMQ context (they do not survive
     * fork) */
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", errno);
    if (pid == 0)
        _exit(producer(ep, go, per, size, (uint32_t)total, hwm));
    pin(cpus[1] >= 0 ? cpus[0] : -1);
    void *ctx = zmq_ctx_new();
    if (ctx == NULL)
        die("zmq_ctx_new", errno);
    void *s = zmq_socket(ctx, ZMQ_PULL);
    if (s == NULL)
        die("zmq_socket", errno);
    set_int(s, ZMQ_RCVHWM, hwm);
    zcheck("zmq_bind", zmq_bind(s, ep));
    bool zc = size > 8 && !copy_big;
    char *buf = malloc(size);
    uint64_t *smp = calloc(total, sizeof *smp);
    if (buf == NULL || smp == NULL)
        die("malloc", ENOMEM);
    memset(buf, 1, size); /* fault it in before timing */
    zmq_msg_t m;
    zcheck("zmq_msg_init", zmq_msg_init(&m));
    uint64_t next = 0;
    for (size_t b = 0; b < total; b++) {
        uint64_t t0 = bench_now_ns();
        atomic_fetch_add(go, 1);
        futex_wake(go, INT32_MAX);
        for (size_t i = 0; i < per; i++) {
            size_t len;
            const char *data;
            if (zc) {
                zcheck("zmq_msg_recv", zmq_msg_recv(&m, s, 0));
                len = zmq_msg_size(&m);
                data = zmq_msg_data(&m);
            } else {
                int r = zmq_recv(s, buf, size, 0);
                zcheck("zmq_recv", r);
                len = (size_t)r;
                data = buf;
            }
            uint64_t t;
            memcpy(&t, data, 8);
            if (len != size || t != next) {
                fprintf(stderr, "bench_zmq: %s: message %zu of batch %zu is wrong\n", name,
                        i, b);
                exit(1);
            }
            next++;
        }
        smp[b] = bench_now_ns() - t0;
    }
    zmq_msg_close(&m);
    atomic_fetch_add(go, 1); /* all taken: the producer may go */
    futex_wake(go, INT32_MAX);
    reap(pid, name);
    zmq_close(s);
    zmq_ctx_term(ctx);
    munmap(go, sizeof *go);
    sched_setaffinity(0, sizeof saved, &saved);
    bench_report_per(name, smp + 1, batches, per);
    free(smp);
    free(buf);
}

/* ---- round trip ------------------------------------------------------------ */

/* The echo child: binds, says so on @ready, then sends every message back
 * as it came, until told to stop by a signal. */
static int echo(const char *ep, int ready, int cpu)
{
    pin(cpu);
    void *ctx = zmq_ctx_new();
    if (ctx == NULL)
        return 4;
    void *s = zmq_socket(ctx, req_rep ? ZMQ_REP : ZMQ_PAIR);
    if (s == NULL)
        return 4;
    zcheck("zmq_bind", zmq_bind(s, ep));
    if (write(ready, "r", 1) != 1)
        return 2;
    close(ready);
    zmq_msg_t m;
    zmq_msg_init(&m);
    for (;;) {
        if (zmq_msg_recv(&m, s, 0) < 0 || zmq_msg_send(&m, s, 0) < 0)
            return 6;
    }
}

static void rtt_bench(const char *name, size_t size, size_t n, bool same_cpu)
{
    cpu_set_t saved;
    if (sched_getaffinity(0, sizeof saved, &saved) < 0)
        die("sched_getaffinity", errno);
    int cpu = same_cpu ? cpus[0] : -1;
    char ep[128];
    endpoint(ep, sizeof ep, name);
    int rp[2];
    if (pipe(rp) < 0)
        die("pipe", errno);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", errno);
    if (pid == 0) {
        close(rp[0]);
        _exit(echo(ep, rp[1], cpu));
    }
    close(rp[1]);
    char c;
    if (read(rp[0], &c, 1) != 1)
        die("echo start", EIO);
    close(rp[0]);
    pin(cpu);
    void *ctx = zmq_ctx_new();
    if (ctx == NULL)
        die("zmq_ctx_new", errno);
    void *s = zmq_socket(ctx, req_rep ? ZMQ_REQ : ZMQ_PAIR);
    if (s == NULL)
        die("zmq_socket", errno);
    zcheck("zmq_connect", zmq_connect(s, ep));
    bool zc = size > 8 && !copy_big;
    char *msg = calloc(1, size), *in = malloc(size);
    uint64_t *smp = calloc(n, sizeof *smp);
    if (msg == NULL || in == NULL || smp == NULL)
        die("calloc", ENOMEM);
    memset(in, 1, size);
    zmq_msg_t m;
    zcheck("zmq_msg_init", zmq_msg_init(&m));
    size_t warm = n / 10;
    for (size_t i = 0; i < n + warm; i++) {
        uint64_t t0 = bench_now_ns();
        size_t len;
        if (zc) {
            zmq_msg_t out;
            /* no free function: msg is ours, and is not written while
             * ZeroMQ may still read it */
            zcheck("zmq_msg_init_data", zmq_msg_init_data(&out, msg, size, NULL, NULL));
            zcheck("zmq_msg_send", zmq_msg_send(&out, s, 0));
            zcheck("zmq_msg_recv", zmq_msg_recv(&m, s, 0));
            len = zmq_msg_size(&m);
        } else {
            if (zmq_send(s, msg, size, 0) != (int)size)
                die("zmq_send", errno);
            int r = zmq_recv(s, in, size, 0);
            zcheck("zmq_recv", r);
            len = (size_t)r;
        }
        if (i >= warm)
            smp[i - warm] = bench_now_ns() - t0;
        if (len != size)
            die("echo length", EBADMSG);
    }
    zmq_msg_close(&m);
    kill(pid, SIGKILL); /* the echo never returns by itself */
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            die("waitpid", errno);
    /* the echo is gone: do not wait to hand anything over to it */
    set_int(s, ZMQ_LINGER, 0);
    zmq_close(s);
    zmq_ctx_term(ctx);
    sched_setaffinity(0, sizeof saved, &saved);
    bench_report(name, smp, n);
    free(smp);
    free(msg);
    free(in);
}

/* ---- main -------------------------------------------------------------------- */

static const struct {
    const char *group, *name;
    bool big, rtt, same_cpu;
    int hwm; /* PUSH/PULL: 0: hwm_small or hwm_big, else this one */
} all[] = {
    {"push", "zmq_push8", false, false, false, 0},
    {"push", "zmq_push1m", true, false, false, 0},
    {"push", "zmq_push1m_hwm1000", true, false, false, 1000},
    {"rtt", "zmq_rtt8", false, true, false, 0},
    {"rtt", "zmq_rtt1m", true, true, false, 0},
    {"rtt", "zmq_rtt8_pin", false, true, true, 0},
    {"rtt", "zmq_rtt1m_pin", true, true, true, 0},
};
#define NALL (sizeof all / sizeof all[0])

int main(int argc, char **argv)
{
    size_t batches = 10, nsmall = 100000, nbig = 200, nrtt = 20000, nrtt_big = 300;
    bool pick[NALL] = {false}, any = false;
    for (int i = 1; i < argc; i++) {
        bool known = false;
        if (strcmp(argv[i], "-b") == 0)
            batches = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-n") == 0)
            nsmall = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-m") == 0)
            nbig = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-r") == 0)
            nrtt = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-s") == 0)
            nrtt_big = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-c") == 0)
            copy_big = true;
        else if (strcmp(argv[i], "-R") == 0)
            req_rep = true;
        else if (strcmp(argv[i], "-w") == 0) {
            hwm_small = hwm_big = i + 1 < argc ? atoi(argv[++i]) : -1;
            if (hwm_big < 0) {
                fprintf(stderr, "bench_zmq: -w needs a count (0: no limit)\n");
                return 2;
            }
        } else {
            for (size_t k = 0; k < NALL; k++)
                if (strcmp(argv[i], all[k].group) == 0 || strcmp(argv[i], all[k].name) == 0)
                    pick[k] = known = any = true;
            if (!known) {
                fprintf(stderr,
                        "usage: %s [-b BATCHES] [-n SMALL_PER_BATCH] [-m BIG_PER_BATCH] "
                        "[-r RTT_N] [-s RTT_N_1MIB] [-c] [-R] [-w HWM] [push|rtt|NAME ...]\n",
                        argv[0]);
                return 2;
            }
        }
    }
    cpu_set_t set;
    int found = 0;
    if (sched_getaffinity(0, sizeof set, &set) < 0)
        die("sched_getaffinity", errno);
    for (int c = 0; c < CPU_SETSIZE && found < 2; c++)
        if (CPU_ISSET(c, &set))
            cpus[found++] = c;
    if (found < 2)
        fprintf(stderr, "bench_zmq: one CPU only: the two sides cannot run at once\n");
    for (size_t k = 0; k < NALL; k++) {
        if (any && !pick[k])
            continue;
        size_t size = all[k].big ? BIG : 8;
        if (all[k].rtt)
            rtt_bench(all[k].name, size, all[k].big ? nrtt_big : nrtt, all[k].same_cpu);
        else
            push_bench(all[k].name, size, all[k].big ? nbig : nsmall, batches,
                       all[k].hwm ? all[k].hwm : all[k].big ? hwm_big : hwm_small);
    }
    return 0;
}
