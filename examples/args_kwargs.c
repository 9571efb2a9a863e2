/*
 * args_kwargs.c: passing arguments to a process (the seed's args= and
 * kwargs= examples).
 *
 *     Process(target=sing, args=(3,))            # positional
 *     Process(target=sing, kwargs={"num": 3})    # by keyword
 *
 * An mp_args is Python's pickled args tuple: an ordered, typed list that is
 * copied into the child under every start method.  C has no keyword
 * arguments, so two usual ways of passing "named" values are shown:
 *
 *   A. a struct of options, carried as one bytes item (mp_args_add_bytes);
 *      fixed fields, checked by size, the most C-like;
 *   B. name/value pairs ("num", 3, "interval", 0.01): a str item naming each
 *      value, looked up by name in the child, with defaults for missing ones.
 *
 * Every variant runs under fork (a copy of this process) and under spawn (a
 * fresh run of this program that never enters main): the arguments reach the
 * child the same way.  Each child checks what it received and returns a
 * non-zero exit code when something is off.
 */
#define _GNU_SOURCE
#include <multiproc.h>

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

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* The work all variants share: sing @num times, @interval seconds apart. */
static void sing(const char *how, const char *who, int num, double interval)
{
    for (int i = 0; i < num; i++) {
        sleep_s(interval);
        printf("[%s] %s sings (%d/%d)\n", how, who, i + 1, num);
    }
}

/* ---- positional: Process(target=sing, args=("alice", 3, 0.01)) ----------- */

static int sing_positional(const mp_args *args)
{
    /* The child reads items by position and type, as the parent added them.
     * A wrong index or type is a programming error: the getter aborts. */
    if (mp_args_count(args) != 3 || mp_args_type(args, 0) != MP_ARG_STR ||
        mp_args_type(args, 1) != MP_ARG_INT || mp_args_type(args, 2) != MP_ARG_DOUBLE)
        return 2;
    const char *who = mp_args_str(args, 0);
    int num = (int)mp_args_int(args, 1);
    double interval = mp_args_double(args, 2);
    sing("args", who, num, interval);
    return strcmp(who, "alice") == 0 && num == 3 && interval == 0.01 ? 0 : 3;
}

/* ---- keywords, pattern A: one struct of named fields ---------------------- */

struct sing_kwargs {
    char who[16];
    int num;
    double interval;
};

static int sing_struct(const mp_args *args)
{
    size_t len;
    const void *p = mp_args_bytes(args, 0, &len);
    struct sing_kwargs kw;
    if (len != sizeof kw)
        return 2; /* not the struct this target expects */
    memcpy(&kw, p, sizeof kw); /* the bytes need not be aligned for the struct */
    sing("struct", kw.who, kw.num, kw.interval);
    return strcmp(kw.who, "bob") == 0 && kw.num == 3 && kw.interval == 0.01 ? 0 : 3;
}

/* ---- keywords, pattern B: name/value pairs --------------------------------- */

/* Find the value that follows the str item @name; -1 if absent. */
static long kw_find(const mp_args *args, const char *name)
{
    size_t n = mp_args_count(args);
    for (size_t i = 0; i + 1 < n; i += 2)
        if (mp_args_type(args, i) == MP_ARG_STR && strcmp(mp_args_str(args, i), name) == 0)
            return (long)i + 1;
    return -1;
}

static int64_t kw_int(const mp_args *args, const char *name, int64_t dflt)
{
    long i = kw_find(args, name);
    return i >= 0 && mp_args_type(args, (size_t)i) == MP_ARG_INT ? mp_args_int(args, (size_t)i)
                                                                 : dflt;
}

static double kw_double(const mp_args *args, const char *name, double dflt)
{
    long i = kw_find(args, name);
    return i >= 0 && mp_args_type(args, (size_t)i) == MP_ARG_DOUBLE
               ? mp_args_double(args, (size_t)i)
               : dflt;
}

static const char *kw_str(const mp_args *args, const char *name, const char *dflt)
{
    long i = kw_find(args, name);
    return i >= 0 && mp_args_type(args, (size_t)i) == MP_ARG_STR ? mp_args_str(args, (size_t)i)
                                                                 : dflt;
}

/* def sing_kw(who="nobody", num=1, interval=0.01) */
static int sing_pairs(const mp_args *args)
{
    const char *who = kw_str(args, "who", "nobody");
    int num = (int)kw_int(args, "num", 1);
    double interval = kw_double(args, "interval", 0.01);
    sing("pairs", who, num, interval);
    /* The parent passes who="carol", num=3 and leaves interval at its default. */
    return strcmp(who, "carol") == 0 && num == 3 && interval == 0.01 ? 0 : 3;
}

/* ---- the parent ----------------------------------------------------------- */

/* Run @target(args) under @method and check that it exited with 0. */
static int run(const char *method, const char *what, mp_target_fn target, const mp_args *args)
{
    mp_context *ctx = mp_get_context(method);
    mp_process *p;
    int code;
    if (ctx == NULL)
        return 1;
    CHECK(mp_process_new(&p, ctx, target, args));
    CHECK(mp_process_start(p));
    CHECK(mp_process_join(p, MP_FOREVER));
    CHECK(mp_process_exitcode(p, &code));
    CHECK(mp_process_close(p));
    printf("%-22s under %-5s: exit code %d%s\n", what, method, code, code ? "  FAILED" : "");
    fflush(stdout);
    return code != 0;
}

int main(void)
{
    static const char *const methods[] = {"fork", "spawn"};
    int failures = 0;
    mp_args *positional, *by_struct, *pairs;

    /* Line-buffered even into a pipe (run_demo.sh), so that each line leaves
     * when printed and the parent's lines keep their place among the children's. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* args=("alice", 3, 0.01): one call with a format string ... */
    CHECK(mp_args_of(&positional, "sid", "alice", 3, 0.01));

    /* kwargs as a struct: one bytes item */
    struct sing_kwargs kw;
    memset(&kw, 0, sizeof kw); /* no uninitialised padding goes to the child */
    snprintf(kw.who, sizeof kw.who, "%s", "bob");
    kw.num = 3;
    kw.interval = 0.01;
    CHECK(mp_args_new(&by_struct));
    CHECK(mp_args_add_bytes(by_struct, &kw, sizeof kw));

    /* kwargs={"who": "carol", "num": 3}: ... or item by item */
    CHECK(mp_args_new(&pairs));
    CHECK(mp_args_add_str(pairs, "who"));
    CHECK(mp_args_add_str(pairs, "carol"));
    CHECK(mp_args_add_str(pairs, "num"));
    CHECK(mp_args_add_int(pairs, 3));

    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
        failures += run(methods[m], "positional args", sing_positional, positional);
        failures += run(methods[m], "keyword args (struct)", sing_struct, by_struct);
        failures += run(methods[m], "keyword args (pairs)", sing_pairs, pairs);
    }
    mp_args_free(positional);
    mp_args_free(by_struct);
    mp_args_free(pairs);

    if (failures) {
        fprintf(stderr, "args_kwargs: %d run(s) failed\n", failures);
        return 1;
    }
    printf("args_kwargs: OK\n");
    return 0;
}
