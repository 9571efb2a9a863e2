/*
 * manager_dict.c: a shared dict of results, kept by a server process (the
 * seeds' "server process" form of sharing state).
 *
 *     from multiprocessing import Manager, Process
 *
 *     def work(d, done, w):
 *         for n in range(w, 12, 4):
 *             d[f"task-{n:02d}"] = f"{n * n} by worker {w}"
 *             with lock: done.value += 1      # atomic add in C
 *
 *     if __name__ == '__main__':
 *         with Manager() as manager:
 *             d = manager.dict()
 *             ps = [Process(target=work, args=(d, w)) for w in range(4)]
 *             ...
 *             for k in sorted(d.keys()): print(k, d[k])
 *
 * The manager holds named objects; each worker connects to it by address
 * (with the authkey every process of the program inherits) and finds the
 * dict by its name.  Workers run under each start method; the parent prints
 * the results sorted by key and checks every one.
 */
#include <multiproc.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                  \
    do {                                                                             \
        int err_ = (call);                                                           \
        if (err_ < 0) {                                                              \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,      \
                    mp_errname(err_), mp_strerror(err_));                            \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define WORKERS 4
#define TASKS 12

/* args: manager address, dict name, worker number */
static int work(const mp_args *args)
{
    int w = (int)mp_args_int(args, 2);
    mp_manager *m;
    mp_dict *d, *stats;
    CHECK(mp_manager_connect(&m, mp_args_str(args, 0), NULL, 0)); /* inherited authkey */
    CHECK(mp_manager_dict(m, mp_args_str(args, 1), &d));
    CHECK(mp_manager_dict(m, "stats", &stats));
    for (int n = w; n < TASKS; n += WORKERS) {
        char key[32], val[64];
        snprintf(key, sizeof key, "task-%02d", n);
        int vl = snprintf(val, sizeof val, "%d by worker %d", n * n, w);
        CHECK(mp_dict_set(d, key, strlen(key), val, (size_t)vl));   /* d[key] = val */
        CHECK(mp_dict_add(stats, mp_args_str(args, 1), strlen(mp_args_str(args, 1)), 1,
                          NULL));                                     /* done += 1 */
    }
    mp_dict_free(stats);
    mp_dict_free(d);
    mp_manager_free(m); /* a connected manager just disconnects */
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One round: WORKERS processes under @method fill dict "results-METHOD". */
static int round_with(mp_manager *m, const char *method)
{
    char name[32];
    snprintf(name, sizeof name, "results-%s", method);
    mp_process *ps[WORKERS];
    for (int w = 0; w < WORKERS; w++) {
        mp_args *a;
        CHECK(mp_args_of(&a, "ssi", mp_manager_address(m), name, w));
        CHECK(mp_process_new(&ps[w], mp_get_context(method), work, a));
        mp_args_free(a);
        CHECK(mp_process_start(ps[w]));
    }
    int bad = 0;
    for (int w = 0; w < WORKERS; w++) {
        int code;
        CHECK(mp_process_join(ps[w], MP_FOREVER));
        CHECK(mp_process_exitcode(ps[w], &code));
        CHECK(mp_process_close(ps[w]));
        bad += code != 0;
    }

    mp_dict *d, *stats;
    CHECK(mp_manager_dict(m, name, &d));
    CHECK(mp_manager_dict(m, "stats", &stats));
    int64_t done;
    CHECK(mp_dict_add(stats, name, strlen(name), 0, &done));
    size_t len;
    CHECK(mp_dict_len(d, &len));

    /* keys(): each a 4-byte length and the bytes; sort them as strings */
    mp_buf keys = MP_BUF_INIT, val = MP_BUF_INIT;
    CHECK(mp_dict_keys(d, &keys));
    char *sorted[TASKS + 1];
    size_t nkeys = 0, off = 0;
    while (off + 4 <= keys.len && nkeys < TASKS + 1) {
        uint32_t kl;
        memcpy(&kl, (char *)keys.data + off, 4);
        off += 4;
        sorted[nkeys] = strndup((char *)keys.data + off, kl);
        if (sorted[nkeys] == NULL)
            exit(1);
        nkeys++;
        off += kl;
    }
    qsort(sorted, nkeys, sizeof *sorted, cmp_str);

    printf("%-10s {", method);
    int wrong = 0;
    for (size_t i = 0; i < nkeys; i++) {
        CHECK(mp_dict_get(d, sorted[i], strlen(sorted[i]), &val));
        int n = -1, square = -1, w = -1;
        char text[64];
        snprintf(text, sizeof text, "%.*s", (int)val.len, (char *)val.data);
        if (sscanf(sorted[i], "task-%d", &n) != 1 || sscanf(text, "%d by worker %d", &square, &w) != 2
            || n != (int)i || square != n * n || w != n % WORKERS)
            wrong++;
        printf("%s'%s': '%s'", i ? ", " : "", sorted[i], text);
        free(sorted[i]);
    }
    printf("}\n");
    mp_buf_free(&keys);
    mp_buf_free(&val);
    mp_dict_free(d);
    mp_dict_free(stats);

    bool ok = bad == 0 && wrong == 0 && len == TASKS && nkeys == TASKS && done == TASKS;
    printf("%-10s %d workers wrote %zu results, done counter %lld, %d wrong %s\n", method,
           WORKERS, len, (long long)done, wrong, ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* with Manager() as manager: (a server child, private unix socket) */
    mp_manager *m;
    CHECK(mp_manager_start(&m, NULL, NULL, NULL, 0));
    printf("manager server: pid %d at %s\n", (int)mp_manager_pid(m), mp_manager_address(m));

    int failed = 0;
    const char *methods[] = {"fork", "spawn", "forkserver"};
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        failed += round_with(m, methods[i]);

    /* a missing key: KeyError in Python, MP_ENOENT here */
    mp_dict *d;
    mp_buf v = MP_BUF_INIT;
    CHECK(mp_manager_dict(m, "results-fork", &d));
    int err = mp_dict_get(d, "task-99", 7, &v);
    printf("d['task-99'] -> %s %s\n", mp_errname(err), err == MP_ENOENT ? "ok" : "FAILED");
    failed += err != MP_ENOENT;
    mp_buf_free(&v);
    mp_dict_free(d);

    mp_manager_free(m); /* shuts the server down and joins it */
    if (failed)
        return 1;
    printf("manager_dict: OK\n");
    return 0;
}
