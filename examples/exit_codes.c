/*
 * exit_codes.c: how a child's end becomes its exit code (Process.exitcode).
 *
 *   the target returns N         -> N & 0xff   (run() returning normally: 0)
 *   the target calls exit(N)     -> N & 0xff   (sys.exit(N))
 *   mp_process_terminate()       -> -SIGTERM   (p.terminate())
 *   mp_process_kill()            -> -SIGKILL   (p.kill())
 *   the child dies of signal S   -> -S         (abort(): -SIGABRT)
 *
 * Before the child has ended, mp_process_exitcode() says MP_EAGAIN (Python's
 * exitcode is None).  Each case runs under fork, the default; the rules are
 * the same under every start method.
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

/* ---- targets; each takes (int n) ---------------------------------------- */

static int return_n(const mp_args *args)
{
    return (int)mp_args_int(args, 0);
}

static int exit_n(const mp_args *args)
{
    exit((int)mp_args_int(args, 0)); /* atexit handlers and stdio flush run */
}

static int run_forever(const mp_args *args)
{
    (void)args;
    while (pause() < 0)
        ;
    return 0;
}

static int call_abort(const mp_args *args)
{
    (void)args;
    /* No core file for a death that is on purpose. */
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    abort();
}

/* ---- the table ------------------------------------------------------------- */

enum action { NONE, TERMINATE, KILL };

struct exit_case {
    const char *what;
    mp_target_fn target;
    int arg;
    enum action action; /* what the parent does once it has started */
    int expected;
};

static const struct exit_case cases[] = {
    {"return 0", return_n, 0, NONE, 0},
    {"return 3", return_n, 3, NONE, 3},
    {"return 256 (& 0xff)", return_n, 256, NONE, 0},
    {"return -1 (& 0xff)", return_n, -1, NONE, 255},
    {"exit(0)", exit_n, 0, NONE, 0},
    {"exit(7)", exit_n, 7, NONE, 7},
    {"mp_process_terminate", run_forever, 0, TERMINATE, -SIGTERM},
    {"mp_process_kill", run_forever, 0, KILL, -SIGKILL},
    {"abort()", call_abort, 0, NONE, -SIGABRT},
};

static int run_case(const struct exit_case *c)
{
    mp_args *args;
    mp_process *p;
    int code;

    CHECK(mp_args_of(&args, "i", c->arg));
    CHECK(mp_process_new(&p, NULL, c->target, args));
    mp_args_free(args);
    /* exitcode is "not yet known" before start ... */
    if (mp_process_exitcode(p, &code) != MP_EAGAIN)
        return -1000;
    CHECK(mp_process_start(p));
    if (c->action != NONE) {
        /* ... and while it runs (this child never ends by itself). */
        if (mp_process_join(p, 0.05) != MP_ETIMEDOUT || mp_process_exitcode(p, &code) != MP_EAGAIN)
            return -1001;
        CHECK(c->action == TERMINATE ? mp_process_terminate(p) : mp_process_kill(p));
    }
    CHECK(mp_process_join(p, 30.0));
    CHECK(mp_process_exitcode(p, &code));
    /* Signalling a process that has ended does nothing and succeeds. */
    CHECK(mp_process_terminate(p));
    CHECK(mp_process_close(p));
    return code;
}

int main(void)
{
    int failures = 0;

    /* Line-buffered even into a pipe (run_demo.sh), so that each line leaves
     * when printed and the parent's lines keep their place among the children's. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("%-24s %9s %9s\n", "child", "expected", "exitcode");
    printf("%-24s %9s %9s\n", "------------------------", "--------", "--------");
    fflush(stdout);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct exit_case *c = &cases[i];
        int code = run_case(c);
        printf("%-24s %9d %9d%s\n", c->what, c->expected, code,
               code == c->expected ? "" : "  FAILED");
        fflush(stdout);
        if (code != c->expected)
            failures++;
    }
    if (failures) {
        fprintf(stderr, "exit_codes: %d case(s) failed\n", failures);
        return 1;
    }
    printf("exit_codes: OK\n");
    return 0;
}
