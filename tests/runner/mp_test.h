/*
 * The test harness: kselftest's process-per-test runner with libuv-style
 * assertions and leak checks after every test (see tests/runner/runner.c).
 *
 *   MP_TEST(name) { ... }                               plain test, 30 s
 *   MP_TEST(name, .timeout_s = 10) { ... }
 *   MP_TEST(name, .variants = MP_START_METHODS) { ... } once per start method
 *   MP_TEST(name, .signal = SIGABRT) { ... }            must die by SIGABRT
 *   MP_TEST(name, .variants = MP_START_METHODS | MP_TEST_PROXY)
 *                                     also once with manager proxies
 *   MP_TEST(name, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
 *
 * In a body, `mp_context *ctx` and `const char *method` are in scope: the
 * variant's context and method name, NULL for plain tests.  The proxy
 * variant ("name/proxy", method "proxy", ctx the fork context) runs the
 * same body, and the objects it makes with mp_test_queue_new and its kin
 * below are manager proxies instead of local objects: a proxy must pass
 * the tests of the object it stands for.  A failed
 * assertion prints file:line, the expression and the values, and ends the
 * test process with status 1 (_exit: no exit handlers run); it may be used
 * in helpers and in children.  ASSERT_EQ and its kin compare as intmax_t:
 * use ASSERT_TRUE for floating point.  Each operand is evaluated once.
 *
 * MP_TEST_SKIP("no python3.12 found") ends a test that cannot run here
 * (a missing interpreter or tool, no privilege): the test process exits
 * with MP_TEST_SKIP_STATUS, the runner prints "ok N - id # SKIP why" and
 * counts it as skipped, not passed, and CTest shows it as skipped.  Call
 * it before the test makes anything: the leak checks of the test process
 * do not run (those of the runner do).
 */
#ifndef MP_TEST_H
#define MP_TEST_H

#include <multiproc.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

/* Variant bits for .variants */
enum {
    MP_TEST_FORK = 1,
    MP_TEST_SPAWN = 2,
    MP_TEST_FORKSERVER = 4,
    MP_START_METHODS = MP_TEST_FORK | MP_TEST_SPAWN | MP_TEST_FORKSERVER,
    MP_TEST_PROXY = 8,  /* once more, objects made by mp_test_*_new are proxies */
    MP_TEST_PLAIN = 16, /* the plain run (implied when .variants is 0) */
};

typedef struct mp_test {
    const char *name;
    void (*fn)(mp_context *ctx, const char *method);
    const char *file;
    int line;
    double timeout_s; /* 0: 30 s; scaled by MP_TEST_TIMEOUT_MULTIPLIER */
    unsigned variants; /* 0: one plain run */
    int signal;        /* non-zero: the test passes only by dying of it */
    struct mp_test *next;
} mp_test;

void mp_test_register(mp_test *t);

/* The objects a test shares.  In the proxy variant each is a proxy for a
 * new object of a manager the runner starts before the body (so forked
 * children use it too) and shuts down after it (before the leak checks);
 * otherwise each is the local
 * object (a value with its lock).  Free them with the type's own free. */
bool mp_test_proxied(void);
MP_MUST_CHECK int mp_test_queue_new(mp_queue **out, size_t maxsize);
MP_MUST_CHECK int mp_test_lock_new(mp_lock **out);
MP_MUST_CHECK int mp_test_event_new(mp_event **out);
MP_MUST_CHECK int mp_test_semaphore_new(mp_semaphore **out, unsigned value);
MP_MUST_CHECK int mp_test_value_new(mp_value **out, mp_type type);
MP_MUST_CHECK int mp_test_joinable_queue_new(mp_queue **out, size_t maxsize);
/* Zero, or @init; locally with a lock when @lock (a proxy has none, nor
 * mp_array_data: tests of arrays made here use mp_array_load/_store). */
MP_MUST_CHECK int mp_test_array_new(mp_array **out, mp_type type, size_t n, const void *init,
                                    bool lock);
MP_MUST_CHECK int mp_test_rlock_new(mp_lock **out);
MP_MUST_CHECK int mp_test_bounded_semaphore_new(mp_semaphore **out, unsigned value);
/* @lock NULL or from mp_test_lock_new / mp_test_rlock_new. */
MP_MUST_CHECK int mp_test_condition_new(mp_condition **out, mp_lock *lock);
/* A barrier without an action (a manager's has none). */
MP_MUST_CHECK int mp_test_barrier_new(mp_barrier **out, unsigned parties, double timeout);
/* The manager of the proxy variant; NULL elsewhere. */
mp_manager *mp_test_manager(void);

/* Call @fn for every process in /proc with its pid, parent pid, state
 * letter and name; returns how many calls returned true. */
typedef bool (*mp_test_proc_fn)(pid_t pid, pid_t ppid, char state, const char *comm, void *arg);
int mp_test_each_process(mp_test_proc_fn fn, void *arg);
/* ---- helpers for test bodies (tests/runner/helpers.c) ---- */

/* Make and start a process for @fn(@a) under @ctx.  The _free form frees
 * @a once the process has its own copy, before the start (a forked child
 * then holds nothing of it). */
mp_process *mp_test_start(mp_context *ctx, mp_target_fn fn, const mp_args *a);
mp_process *mp_test_start_free(mp_context *ctx, mp_target_fn fn, mp_args *a);
/* Join @p (within @timeout seconds), close it and return its exit code. */
int mp_test_join(mp_process *p, double timeout);
/* Start @fn(@a) under @ctx and join it (60 s at most); its exit code.
 * The _free form frees @a as mp_test_start_free does. */
int mp_test_run(mp_context *ctx, mp_target_fn fn, const mp_args *a);
int mp_test_run_free(mp_context *ctx, mp_target_fn fn, mp_args *a);
/* SIGKILL @p, join it (30 s at most), check that it died of it, close it. */
void mp_test_kill(mp_process *p);
/* In a test that made itself a child subreaper: reap whatever was
 * reparented to it, waiting up to @timeout seconds for the last ones to
 * end, then check that no child is left. */
void mp_test_reap_orphans(double timeout);
/* In a child: write one line (a '\n' is added) to @fd in one write; _exit(99)
 * when it cannot. */
void mp_test_say(int fd, const char *fmt, ...) MP_PRINTF(2, 3);
void mp_test_vsay(int fd, const char *fmt, va_list ap) MP_PRINTF(2, 0);
/* One line from @fd without its '\n' ("" at end of file), in a static
 * buffer that the next call overwrites; fails the test after 60 s without
 * one. */
const char *mp_test_read_line(int fd);
/* Send @req (and free it) on a raw connection to a manager; the status
 * (item 0, an integer) of its reply, which must come within 20 s. */
int mp_test_rpc(mp_conn *c, mp_args *req);
/* A raw fork() with a pipe: make a close-on-exec pipe in @fds, flush
 * stdio (so that the child does not write out what was buffered here too)
 * and fork; fork's value (0 in the child), after checking that it worked. */
pid_t mp_test_fork_pipe(int fds[2]);
/* How many descriptors this process has open. */
int mp_test_count_fds(void);
/* Check that @d holds @key (a C string) with the value @want (@n bytes). */
void mp_test_dict_expect(mp_dict *d, const char *key, const void *want, size_t n);
/* Fill @key with @n random bytes and start a manager under @ctx (NULL: the
 * default) that authenticates with them. */
mp_manager *mp_test_manager_keyed(mp_context *ctx, uint8_t *key, size_t n);

_Noreturn void mp_test_fail(const char *file, int line, const char *fmt, ...) MP_PRINTF(3, 4);

/* The exit status of a skipped test (Automake's and CTest's convention). */
#define MP_TEST_SKIP_STATUS 77
_Noreturn void mp_test_skip(const char *fmt, ...) MP_PRINTF(1, 2);
#define MP_TEST_SKIP(...) mp_test_skip(__VA_ARGS__)

#define MP_TEST(tname, ...)                                                              \
    static void mp__test_body_##tname(mp_context *ctx, const char *method);              \
    static mp_test mp__test_case_##tname = {.name = #tname,                              \
                                            .fn = mp__test_body_##tname,                 \
                                            .file = __FILE__,                            \
                                            .line = __LINE__, ##__VA_ARGS__};            \
    __attribute__((constructor)) static void mp__test_add_##tname(void)                  \
    {                                                                                    \
        mp_test_register(&mp__test_case_##tname);                                        \
    }                                                                                    \
    static void mp__test_body_##tname(mp_context *ctx MP__UNUSED, const char *method MP__UNUSED)

#define MP__FAIL(...) mp_test_fail(__FILE__, __LINE__, __VA_ARGS__)

#define MP__ASSERT_CMP(op, a, b, name)                                                   \
    do {                                                                                 \
        intmax_t mp__a_ = (intmax_t)(a), mp__b_ = (intmax_t)(b);                         \
        if (!(mp__a_ op mp__b_))                                                         \
            MP__FAIL(name "(%s, %s): %jd " #op " %jd is false", #a, #b, mp__a_, mp__b_); \
    } while (0)

#define ASSERT_EQ(a, b) MP__ASSERT_CMP(==, a, b, "ASSERT_EQ")
#define ASSERT_NE(a, b) MP__ASSERT_CMP(!=, a, b, "ASSERT_NE")
#define ASSERT_LT(a, b) MP__ASSERT_CMP(<, a, b, "ASSERT_LT")
#define ASSERT_LE(a, b) MP__ASSERT_CMP(<=, a, b, "ASSERT_LE")
#define ASSERT_GT(a, b) MP__ASSERT_CMP(>, a, b, "ASSERT_GT")
#define ASSERT_GE(a, b) MP__ASSERT_CMP(>=, a, b, "ASSERT_GE")

#define ASSERT_TRUE(x)                                                                   \
    do {                                                                                 \
        if (!(x))                                                                        \
            MP__FAIL("ASSERT_TRUE(%s) is false", #x);                                    \
    } while (0)
#define ASSERT_FALSE(x)                                                                  \
    do {                                                                                 \
        if (x)                                                                           \
            MP__FAIL("ASSERT_FALSE(%s) is true", #x);                                    \
    } while (0)

#define ASSERT_STREQ(a, b)                                                               \
    do {                                                                                 \
        const char *mp__s_ = (a), *mp__t_ = (b);                                         \
        if (mp__s_ == NULL || mp__t_ == NULL ? mp__s_ != mp__t_ : strcmp(mp__s_, mp__t_)) \
            MP__FAIL("ASSERT_STREQ(%s, %s): \"%s\" != \"%s\"", #a, #b,                   \
                     mp__s_ ? mp__s_ : "(null)", mp__t_ ? mp__t_ : "(null)");            \
    } while (0)

void mp_test_memeq_fail(const char *file, int line, const char *ea, const char *eb,
                        const void *a, const void *b, size_t n);
#define ASSERT_MEMEQ(a, b, n)                                                            \
    do {                                                                                 \
        const void *mp__p_ = (a), *mp__q_ = (b);                                         \
        size_t mp__n_ = (n);                                                             \
        if (mp__n_ && (mp__p_ == NULL || mp__q_ == NULL || memcmp(mp__p_, mp__q_, mp__n_))) \
            mp_test_memeq_fail(__FILE__, __LINE__, #a, #b, mp__p_, mp__q_, mp__n_);      \
    } while (0)

#define ASSERT_OK(expr)                                                                  \
    do {                                                                                 \
        intmax_t mp__v_ = (expr);                                                        \
        if (mp__v_ != 0)                                                                 \
            MP__FAIL("ASSERT_OK(%s): %jd (%s: %s)", #expr, mp__v_,                       \
                     mp_errname((int)mp__v_), mp_strerror((int)mp__v_));                 \
    } while (0)

#define ASSERT_ERR(code, expr)                                                           \
    do {                                                                                 \
        intmax_t mp__w_ = (code), mp__v_ = (expr);                                       \
        if (mp__v_ != mp__w_)                                                            \
            MP__FAIL("ASSERT_ERR(%s, %s): got %jd (%s), want %jd (%s)", #code, #expr,    \
                     mp__v_, mp_errname((int)mp__v_), mp__w_, mp_errname((int)mp__w_));  \
    } while (0)

#endif
