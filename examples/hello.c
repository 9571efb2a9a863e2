/*
 * hello.c: the first example of Python's multiprocessing documentation.
 *
 *     from multiprocessing import Process
 *
 *     def f(name):
 *         print('hello', name)
 *
 *     if __name__ == '__main__':
 *         p = Process(target=f, args=('bob',))
 *         p.start()
 *         p.join()
 *
 * and, second, the seed's variant where the main process runs the same
 * function while the child does:
 *
 *     my_process = Process(target=action, args=("process",))
 *     my_process.start()
 *     action("main process")
 *
 * In C the target is an ordinary function taking the argument list; its
 * return value becomes the child's exit code.  There is no need for an
 * `if __name__ == '__main__'` guard: under every start method the child runs
 * only the target, never main().
 */
#include <multiproc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Stop with a message when a library call fails (every call is checked). */
#define CHECK(call)                                                                  \
    do {                                                                             \
        int err_ = (call);                                                           \
        if (err_ < 0) {                                                              \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,      \
                    mp_errname(err_), mp_strerror(err_));                            \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* def f(name): print('hello', name) */
static int f(const mp_args *args)
{
    const char *name = mp_args_str(args, 0);
    printf("hello %s\n", name);
    /* The exit code tells the parent whether the argument arrived intact. */
    return strcmp(name, "bob") == 0 ? 0 : 1;
}

/* def action(name): print(name) */
static int action(const mp_args *args)
{
    printf("%s\n", mp_args_str(args, 0));
    return 0;
}

/* p = Process(target=target, args=(arg,)); p.start() */
static mp_process *start_with(mp_target_fn target, const char *arg)
{
    mp_args *args;
    mp_process *p;
    CHECK(mp_args_of(&args, "s", arg));      /* args=(arg,) */
    CHECK(mp_process_new(&p, NULL, target, args));
    mp_args_free(args);                      /* the process keeps its own copy */
    CHECK(mp_process_start(p));
    return p;
}

/* p.join(); return p.exitcode; p.close() */
static int join_and_close(mp_process *p)
{
    int code;
    CHECK(mp_process_join(p, MP_FOREVER));
    CHECK(mp_process_exitcode(p, &code));
    CHECK(mp_process_close(p));              /* frees the object */
    return code;
}

int main(void)
{
    /* Line-buffered even into a pipe (run_demo.sh), so that each line leaves
     * when printed and the parent's lines keep their place among the children's. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* Part 1: hello bob. */
    mp_process *p = start_with(f, "bob");
    int code = join_and_close(p);
    if (code != 0) {
        fprintf(stderr, "hello: the child exited with %d\n", code);
        return 1;
    }

    /* Part 2: the child and the main process both run action(). */
    p = start_with(action, "child process");
    mp_args *mine;
    CHECK(mp_args_of(&mine, "s", "main process"));
    action(mine);                            /* the parent calls it directly */
    mp_args_free(mine);
    code = join_and_close(p);
    if (code != 0) {
        fprintf(stderr, "hello: the child exited with %d\n", code);
        return 1;
    }
    printf("hello: OK\n");
    return 0;
}
