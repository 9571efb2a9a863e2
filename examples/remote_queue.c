/*
 * remote_queue.c: a work queue served over the network by one program and
 * consumed by workers started separately (the seeds' distributed
 * processes: a BaseManager that registers a queue and serves it on a TCP
 * port; workers elsewhere connect with the address and the authkey).
 *
 *     remote_queue serve  ADDR KEY            serve a manager on ADDR
 *                                             (tcp:HOST:PORT) until shut down
 *     remote_queue worker ADDR KEY            take tasks from queue "tasks",
 *                                             put results on "results",
 *                                             until an empty task
 *     remote_queue feed   ADDR KEY N WORKERS  put N tasks and WORKERS
 *                                             stops, collect and check the
 *                                             N results, shut the server down
 *     remote_queue                            all of it on this machine: the
 *                                             server started as a process on
 *                                             tcp:127.0.0.1:0, three workers
 *                                             as separate programs (this one,
 *                                             run again as "worker")
 *
 * For instance, on one machine `remote_queue serve tcp:0.0.0.0:50000 secret`,
 * on others `remote_queue worker tcp:server:50000 secret`, and
 * `remote_queue feed tcp:server:50000 secret 100 2` to give them work.
 *
 * A task is the text "task N"; its result "N -> N*N by pid P".  The queues
 * are named objects of the manager, created by whoever uses them first.
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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

extern char **environ;

static int serve(const char *addr, const char *key)
{
    printf("serving on %s\n", addr);
    CHECK(mp_manager_serve(addr, key, strlen(key)));
    printf("server: shut down by a client\n");
    return 0;
}

static int worker(const char *addr, const char *key)
{
    mp_manager *m;
    mp_queue *tasks, *results;
    CHECK(mp_manager_connect(&m, addr, key, strlen(key)));
    CHECK(mp_manager_queue(m, "tasks", 0, &tasks));
    CHECK(mp_manager_queue(m, "results", 0, &results));
    mp_buf task = MP_BUF_INIT;
    int done = 0;
    for (;;) {
        CHECK(mp_queue_get(tasks, &task, MP_FOREVER));
        if (task.len == 0) /* the stop message */
            break;
        int n;
        char text[64], res[96];
        snprintf(text, sizeof text, "%.*s", (int)task.len, (char *)task.data);
        if (sscanf(text, "task %d", &n) != 1) {
            fprintf(stderr, "worker: a strange task: %s\n", text);
            return 1;
        }
        int rl = snprintf(res, sizeof res, "%d -> %d by pid %d", n, n * n, (int)getpid());
        CHECK(mp_queue_put(results, res, (size_t)rl, MP_FOREVER));
        done++;
    }
    printf("worker %d: %d tasks done\n", (int)getpid(), done);
    mp_buf_free(&task);
    mp_queue_free(tasks);
    mp_queue_free(results);
    mp_manager_free(m);
    return 0;
}

/* Give out @n tasks and @workers stops, take the @n results and check that
 * every task was done exactly once, by someone, right. */
static bool feed(mp_manager *m, int n, int workers)
{
    mp_queue *tasks, *results;
    CHECK(mp_manager_queue(m, "tasks", 0, &tasks));
    CHECK(mp_manager_queue(m, "results", 0, &results));
    for (int i = 0; i < n; i++) {
        char t[32];
        int tl = snprintf(t, sizeof t, "task %d", i);
        CHECK(mp_queue_put(tasks, t, (size_t)tl, MP_FOREVER));
    }
    for (int i = 0; i < workers; i++)
        CHECK(mp_queue_put(tasks, "", 0, MP_FOREVER));
    printf("put %d tasks and %d stops on the remote queue\n", n, workers);

    int *seen = calloc((size_t)n, sizeof *seen);
    if (seen == NULL)
        exit(1);
    int wrong = 0, pids = 0;
    int pid_list[64];
    mp_buf r = MP_BUF_INIT;
    for (int i = 0; i < n; i++) {
        int err = mp_queue_get(results, &r, 30);
        if (err == MP_ETIMEDOUT) {
            printf("no result for 30 s after %d of %d\n", i, n);
            wrong++;
            break;
        }
        CHECK(err);
        char text[128];
        snprintf(text, sizeof text, "%.*s", (int)r.len, (char *)r.data);
        int k, sq, pid;
        if (sscanf(text, "%d -> %d by pid %d", &k, &sq, &pid) != 3 || k < 0 || k >= n
            || sq != k * k) {
            wrong++;
            continue;
        }
        seen[k]++;
        bool known = false;
        for (int j = 0; j < pids; j++)
            known = known || pid_list[j] == pid;
        if (!known && pids < 64)
            pid_list[pids++] = pid;
        if (k < 3)
            printf("result: %s\n", text);
    }
    int once = 0;
    for (int i = 0; i < n; i++)
        once += seen[i] == 1;
    bool ok = wrong == 0 && once == n;
    printf("%d results from %d worker processes: every task done exactly once, every square "
           "right %s\n", once, pids, ok ? "ok" : "FAILED");
    free(seen);
    mp_buf_free(&r);
    mp_queue_free(tasks);
    mp_queue_free(results);
    return ok;
}

static int demo(const char *self)
{
    static const char key[] = "remote-queue demo key";
    enum { TASKS = 30, WORKERS = 3 };

    /* the server: one process serving the network (here loopback) */
    mp_manager *m;
    CHECK(mp_manager_start(&m, NULL, "tcp:127.0.0.1:0", key, strlen(key)));
    const char *addr = mp_manager_address(m);
    printf("server pid %d serving on %s\n", (int)mp_manager_pid(m), addr);

    /* the workers: separate programs, knowing only the address and the key */
    pid_t pids[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        char *argv[] = {(char *)self, "worker", (char *)addr, (char *)key, NULL};
        int err = posix_spawn(&pids[i], "/proc/self/exe", NULL, NULL, argv, environ);
        if (err != 0) {
            fprintf(stderr, "posix_spawn: %s\n", strerror(err));
            return 1;
        }
    }
    printf("started %d workers: remote_queue worker %s '%s'\n", WORKERS, addr, key);

    bool ok = feed(m, TASKS, WORKERS);
    int clean = 0;
    for (int i = 0; i < WORKERS; i++) {
        int st;
        if (waitpid(pids[i], &st, 0) == pids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            clean++;
    }
    printf("%d of %d workers exited with 0 %s\n", clean, WORKERS,
           clean == WORKERS ? "ok" : "FAILED");

    /* a client with the wrong key is refused */
    mp_manager *bad;
    int err = mp_manager_connect(&bad, addr, "wrong key", 9);
    printf("connecting with a wrong authkey: %s %s\n", mp_errname(err),
           err < 0 ? "ok" : "FAILED");
    if (err == 0)
        mp_manager_free(bad);

    mp_manager_free(m); /* a started manager: shut down and joined */
    if (!ok || clean != WORKERS || err == 0)
        return 1;
    printf("remote_queue: OK\n");
    return 0;
}

static void usage(const char *self)
{
    fprintf(stderr,
            "usage: %s [serve ADDR KEY | worker ADDR KEY | feed ADDR KEY N WORKERS]\n", self);
    exit(2);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 1)
        return demo(argv[0]);
    if (argc == 4 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "worker") == 0)
        return worker(argv[2], argv[3]);
    if (argc == 6 && strcmp(argv[1], "feed") == 0) {
        int n = atoi(argv[4]), workers = atoi(argv[5]);
        if (n <= 0 || workers < 0)
            usage(argv[0]);
        mp_manager *m;
        CHECK(mp_manager_connect(&m, argv[2], argv[3], strlen(argv[3])));
        bool ok = feed(m, n, workers);
        /* the server may close the connection before its reply arrives */
        int err = mp_manager_shutdown(m);
        if (err < 0 && err != MP_ECLOSED)
            CHECK(err);
        mp_manager_free(m);
        return ok ? 0 : 1;
    }
    usage(argv[0]);
}
