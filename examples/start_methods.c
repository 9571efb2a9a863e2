/*
 * start_methods.c: start methods and contexts (the seeds' set_start_method
 * and get_context sections).
 *
 *     mp.get_start_method(allow_none=True)   # None: nothing chosen yet
 *     mp.set_start_method('spawn')
 *     mp.set_start_method('fork')            # RuntimeError: already set
 *     mp.set_start_method('fork', force=True)
 *     ctx = mp.get_context('spawn')          # a context; the default stays
 *     ctx.Process(target=f).start()
 *     mp.get_all_start_methods(); mp.cpu_count()
 *
 * Then one child under each method, reporting the start method it was
 * started with, its name and its parent.
 *   fork:       a copy of this process;
 *   spawn:      a fresh run of this program (/proc/self/exe) that never
 *               enters main() and runs only the target;
 *   forkserver: forked by a server process (itself a fresh run of this
 *               program) started on first use; the child's getppid() is the
 *               server, while mp_parent_process() is still this program.
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static int failures;

/* Record a failed expectation and go on (so that one run shows them all). */
static void expect(bool ok, const char *what)
{
    printf("  %-58s %s\n", what, ok ? "ok" : "FAILED");
    if (!ok)
        failures++;
}

static const char *show(const char *s)
{
    return s ? s : "(none)";
}

/* args: (str method it was started with, int pid of the main program) */
static int report(const mp_args *args)
{
    const char *expected = mp_args_str(args, 0);
    pid_t main_pid = (pid_t)mp_args_int(args, 1);
    const char *method = mp_get_start_method(false);
    mp_process *parent = mp_parent_process();

    printf("  child %-12s pid %-7d getppid %-7d parent %s (pid %d), start method %s\n",
           mp_process_name(mp_current_process()), (int)getpid(), (int)getppid(),
           parent ? mp_process_name(parent) : "(none)", parent ? (int)mp_process_pid(parent) : 0,
           method);
    fflush(stdout);
    if (parent == NULL || mp_process_pid(parent) != main_pid)
        return 2;
    return strcmp(method, expected) == 0 ? 0 : 3;
}

/* Start report() in @ctx (NULL: the default context); 0 if it was happy. */
static int run_in(mp_context *ctx, const char *expected)
{
    mp_args *args;
    mp_process *p;
    int code;
    CHECK(mp_args_of(&args, "si", expected, (int)getpid()));
    CHECK(mp_process_new(&p, ctx, report, args));
    mp_args_free(args);
    CHECK(mp_process_start(p));
    CHECK(mp_process_join(p, 30.0));
    CHECK(mp_process_exitcode(p, &code));
    CHECK(mp_process_close(p));
    return code;
}

int main(void)
{
    char line[128];

    /* Line-buffered even into a pipe (run_demo.sh), so that each line leaves
     * when printed and the parent's lines keep their place among the children's. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("choosing the start method:\n");
    const char *m = mp_get_start_method(true);
    snprintf(line, sizeof line, "get_start_method(allow_none) = %s", show(m));
    expect(m == NULL, line);

    expect(mp_set_start_method("bogus", false) == MP_EINVAL,
           "set_start_method(\"bogus\") = MP_EINVAL");
    expect(mp_get_start_method(true) == NULL, "  ... and nothing is chosen");

    expect(mp_set_start_method("spawn", false) == 0, "set_start_method(\"spawn\") = 0");
    m = mp_get_start_method(true);
    snprintf(line, sizeof line, "get_start_method(allow_none) = %s", show(m));
    expect(m != NULL && strcmp(m, "spawn") == 0, line);

    int err = mp_set_start_method("fork", false);
    snprintf(line, sizeof line, "set_start_method(\"fork\") again = %s", mp_errname(err));
    expect(err == MP_EALREADY, line);
    expect(strcmp(mp_get_start_method(false), "spawn") == 0, "  ... and it is still spawn");

    expect(mp_set_start_method("fork", true) == 0, "set_start_method(\"fork\", force) = 0");
    m = mp_get_start_method(false);
    snprintf(line, sizeof line, "get_start_method() = %s", m);
    expect(strcmp(m, "fork") == 0, line);

    printf("contexts:\n");
    mp_context *spawn_ctx = mp_get_context("spawn");
    expect(spawn_ctx != NULL && strcmp(mp_context_start_method(spawn_ctx), "spawn") == 0,
           "get_context(\"spawn\") uses spawn");
    expect(strcmp(mp_get_start_method(false), "fork") == 0, "  ... and the default stays fork");
    expect(mp_get_context("spawn") == spawn_ctx, "  ... contexts are static: the same one again");
    expect(mp_get_context("bogus") == NULL, "get_context(\"bogus\") = NULL");
    expect(strcmp(mp_context_start_method(mp_get_context(NULL)), "fork") == 0,
           "get_context(NULL) is the default (fork)");

    const char *all[8];
    size_t n = mp_get_all_start_methods(all, 8);
    printf("  get_all_start_methods: %zu:", n);
    for (size_t i = 0; i < n && i < 8; i++)
        printf(" %s", all[i]);
    printf("\n");
    expect(n == 3 && strcmp(all[0], "fork") == 0, "three methods, the default (fork) first");

    int cpus = mp_cpu_count();
    snprintf(line, sizeof line, "cpu_count() = %d", cpus);
    expect(cpus >= 1, line);

    printf("main program: pid %d\n", (int)getpid());
    printf("one child per method (each checks its own start method):\n");
    fflush(stdout);
    for (size_t i = 0; i < n && i < 8; i++) {
        int code = run_in(mp_get_context(all[i]), all[i]);
        snprintf(line, sizeof line, "%s child exited with %d", all[i], code);
        expect(code == 0, line);
    }
    printf("a child of the default context:\n");
    fflush(stdout);
    int code = run_in(NULL, "fork");
    snprintf(line, sizeof line, "default (fork) child exited with %d", code);
    expect(code == 0, line);

    if (failures) {
        fprintf(stderr, "start_methods: %d check(s) failed\n", failures);
        return 1;
    }
    printf("start_methods: OK\n");
    return 0;
}
