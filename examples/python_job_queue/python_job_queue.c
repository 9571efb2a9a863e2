/*
 * python_job_queue.c: C workers for a Python manager (issue 19): the
 * remote-manager setup of Python's documentation, with the workers in C.
 *
 *     python_job_queue worker ADDR KEY   one C worker: take jobs from the
 *                                        Python server's 'get_jobs' queue,
 *                                        put results on 'get_results',
 *                                        until a None
 *     python_job_queue [SCRIPT]          all of it on this machine: the
 *                                        Python server (SCRIPT, by default
 *                                        job_server.py next to this source,
 *                                        run with $PYTHON or python3) and
 *                                        three workers, this program run
 *                                        again as "worker"
 *
 * For instance, on one machine `python3 job_server.py --address
 * 0.0.0.0:50000 --authkey secret`, on others `python_job_queue worker
 * tcp:server:50000 secret`.  job_server.py describes the jobs and checks
 * the results.  The values cross as Python's own pickles (mp_py values);
 * nothing the server sends is ever run here.
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

#ifndef MP_JOB_SERVER
#define MP_JOB_SERVER "job_server.py"
#endif
#define WORKERS 3
#define KEY "abracadabra"

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

static int64_t int_item(const mp_py *job, const char *key)
{
    int64_t v;
    if (mp_py_int(mp_py_dict_get_str(job, key), &v) != 0) {
        fprintf(stderr, "worker: a job without an int '%s'\n", key);
        exit(1);
    }
    return v;
}

/* The number in start .. start+count-1 with the longest Collatz sequence. */
static void longest_collatz(int64_t start, int64_t count, int64_t *best, int64_t *best_steps)
{
    *best = start;
    *best_steps = -1;
    for (int64_t n = start; n < start + count; n++) {
        uint64_t k = (uint64_t)n;
        int64_t steps = 0;
        while (k != 1) {
            k = k % 2 == 0 ? k / 2 : 3 * k + 1;
            steps++;
        }
        if (steps > *best_steps) {
            *best = n;
            *best_steps = steps;
        }
    }
}

static int worker(const char *addr, const char *key)
{
    mp_pymgr *m;
    mp_pyproxy *jobs, *results;
    CHECK(mp_pymgr_connect(&m, addr, key, strlen(key)));
    /* Python: m.get_jobs(), m.get_results() */
    CHECK(mp_pymgr_create(m, "get_jobs", NULL, NULL, &jobs, NULL));
    CHECK(mp_pymgr_create(m, "get_results", NULL, NULL, &results, NULL));
    char me[32];
    snprintf(me, sizeof me, "c:%d", (int)getpid());
    int done = 0;
    for (;;) {
        mp_py *job;
        CHECK(mp_pyproxy_get(jobs, MP_FOREVER, &job));
        if (mp_py_type_of(job) == MP_PY_NONE) { /* the stop */
            mp_py_free(job);
            break;
        }
        int64_t number, steps;
        longest_collatz(int_item(job, "start"), int_item(job, "count"), &number, &steps);
        mp_py *r = mp_py_dict_new();
        /* each set steals its value (and checks it for NULL) */
        CHECK(mp_py_dict_set_str(r, "id", mp_py_int_new(int_item(job, "id"))));
        CHECK(mp_py_dict_set_str(r, "number", mp_py_int_new(number)));
        CHECK(mp_py_dict_set_str(r, "steps", mp_py_int_new(steps)));
        CHECK(mp_py_dict_set_str(r, "worker", mp_py_str_new(me)));
        CHECK(mp_pyproxy_put(results, r, MP_FOREVER));
        mp_py_free(r);
        mp_py_free(job);
        done++;
    }
    printf("C worker %d: %d jobs done\n", (int)getpid(), done);
    /* each free gives the handle's reference on the server back */
    mp_pyproxy_free(jobs);
    mp_pyproxy_free(results);
    mp_pymgr_free(m);
    return 0;
}

static bool exited_0(pid_t pid)
{
    int st;
    return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int all_here(const char *script)
{
    const char *python = getenv("PYTHON");
    if (python == NULL || *python == '\0')
        python = "python3";
    int in[2], out[2];
    if (pipe(in) < 0 || pipe(out) < 0)
        return 1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    char workers[8];
    snprintf(workers, sizeof workers, "%d", WORKERS);
    char *pargv[] = {(char *)python, (char *)script, "--authkey", KEY, "--workers", workers, NULL};
    pid_t server;
    int err = posix_spawnp(&server, python, &fa, NULL, pargv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (err != 0) {
        printf("SKIP: cannot run %s: %s\n", python, strerror(err));
        return 0;
    }
    FILE *from = fdopen(out[0], "r");
    char line[256], addr[128];
    if (from == NULL || fgets(line, sizeof line, from) == NULL ||
        sscanf(line, "serving jobs on %127s", addr) != 1) {
        printf("the Python server did not start\n");
        return 1;
    }
    printf("Python server pid %d: %s", (int)server, line);

    /* the key is checked both ways, as between Python programs */
    mp_pymgr *m = NULL;
    err = mp_pymgr_connect(&m, addr, "wrong key", 9);
    printf("connecting with a wrong authkey: %s %s\n", mp_errname(err),
           err == MP_EAUTH ? "ok" : "FAILED");
    bool ok = err == MP_EAUTH;

    pid_t pids[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        char *wargv[] = {"python_job_queue", "worker", addr, KEY, NULL};
        if (posix_spawn(&pids[i], "/proc/self/exe", NULL, NULL, wargv, environ) != 0) {
            printf("cannot start a worker\n");
            return 1;
        }
    }
    int good = 0;
    for (int i = 0; i < WORKERS; i++)
        good += exited_0(pids[i]);
    printf("%d of %d C workers exited with 0 %s\n", good, WORKERS,
           good == WORKERS ? "ok" : "FAILED");
    ok = ok && good == WORKERS;
    fflush(stdout);
    close(in[1]); /* tells the server the workers have gone */
    while (fgets(line, sizeof line, from) != NULL)
        fputs(line, stdout);
    fclose(from);
    bool server_ok = exited_0(server);
    printf("the Python server exited with 0 %s\n", server_ok ? "ok" : "FAILED");
    ok = ok && server_ok;
    if (ok)
        printf("python_job_queue: OK\n");
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "worker") == 0)
        return worker(argv[2], argv[3]);
    if (argc <= 2)
        return all_here(argc == 2 ? argv[1] : MP_JOB_SERVER);
    fprintf(stderr, "usage: python_job_queue [worker ADDR KEY | SCRIPT]\n");
    return 2;
}
