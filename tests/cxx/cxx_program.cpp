// A C++ program using <multiproc.h>: the header must compile as C++
// (-std=c++11 -pedantic -Werror) and the library must work from C++.  It
// starts one child under spawn and maps over a pool of spawned workers
// (a function, then a captureless lambda).
// A spawned child never runs main(): its target is found by address, so
// plain functions of this program serve as target and map function.
#include <multiproc.h>

#include <cstdio>
#include <cstring>

namespace {

int child(const mp_args *args)
{
    return static_cast<int>(mp_args_int(args, 0));
}

int square(const void *item, void *result)
{
    long v;
    std::memcpy(&v, item, sizeof v);
    v *= v;
    std::memcpy(result, &v, sizeof v);
    return 0;
}

int fail(const char *what, int err)
{
    std::fprintf(stderr, "cxx: %s: %s (%s)\n", what, mp_errname(err), mp_strerror(err));
    return 1;
}

}  // namespace

int main()
{
    mp_context *ctx = mp_get_context("spawn");
    if (ctx == nullptr)
        return fail("mp_get_context(\"spawn\")", MP_EINVAL);

    // One child under spawn; its exit code is its argument.
    mp_args *a = nullptr;
    mp_process *p = nullptr;
    int code = -1;
    int err = mp_args_of(&a, "l", static_cast<int64_t>(42));
    if (err < 0)
        return fail("mp_args_of", err);
    err = mp_process_new(&p, ctx, child, a);
    mp_args_free(a);
    if (err < 0)
        return fail("mp_process_new", err);
    if ((err = mp_process_start(p)) < 0)
        return fail("mp_process_start", err);
    if ((err = mp_process_join(p, 60)) < 0)
        return fail("mp_process_join", err);
    if ((err = mp_process_exitcode(p, &code)) < 0)
        return fail("mp_process_exitcode", err);
    if (code != 42) {
        std::fprintf(stderr, "cxx: spawned child exited with %d, expected 42\n", code);
        return 1;
    }
    if ((err = mp_process_close(p)) < 0)
        return fail("mp_process_close", err);

    // A pool of two spawned workers maps square over 100 numbers.
    mp_pool_opts opts = mp_pool_opts();
    opts.ctx = ctx;
    opts.processes = 2;
    mp_pool *pool = nullptr;
    if ((err = mp_pool_new(&pool, &opts)) < 0)
        return fail("mp_pool_new", err);
    long items[100], results[100];
    for (long i = 0; i < 100; i++) {
        items[i] = i;
        results[i] = -1;
    }
    mp_task_error terr = mp_task_error();
    err = mp_pool_map(pool, square, items, 100, sizeof items[0], results, sizeof results[0],
                      0, &terr);
    if (err < 0)
        return fail("mp_pool_map", err);
    for (long i = 0; i < 100; i++) {
        if (results[i] != i * i) {
            std::fprintf(stderr, "cxx: square(%ld) = %ld\n", i, results[i]);
            return 1;
        }
    }

    // A captureless lambda is a plain function too.
    mp_map_fn negate = [](const void *item, void *result) -> int {
        long v;
        std::memcpy(&v, item, sizeof v);
        v = -v;
        std::memcpy(result, &v, sizeof v);
        return 0;
    };
    err = mp_pool_map(pool, negate, items, 100, sizeof items[0], results, sizeof results[0],
                      7, &terr);
    if (err < 0)
        return fail("mp_pool_map (lambda)", err);
    for (long i = 0; i < 100; i++) {
        if (results[i] != -i) {
            std::fprintf(stderr, "cxx: negate(%ld) = %ld\n", i, results[i]);
            return 1;
        }
    }
    mp_pool_close(pool);
    if ((err = mp_pool_join(pool, 60)) < 0)
        return fail("mp_pool_join", err);
    mp_pool_free(pool);

    mp_buf b = MP_BUF_INIT;
    if ((err = mp_buf_append(&b, "ok", 2)) < 0)
        return fail("mp_buf_append", err);
    mp_buf_free(&b);

    std::printf("cxx consumer: spawn child exit 42, pool maps of 100 items (function, lambda), %s ok\n",
                mp_version());
    return 0;
}
