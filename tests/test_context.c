/*
 * context.c: start methods and contexts with Python's rules
 * (API.md "Start methods and contexts", PYTHON-SEMANTICS section 2).
 * Every test runs in a fresh process in which nothing chose a method yet.
 */
#include "mp_test.h"

#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const all_methods[] = {"fork", "spawn", "forkserver"};

MP_TEST(nothing_chosen_in_a_fresh_process)
{
    ASSERT_TRUE(mp_get_start_method(true) == NULL);
    ASSERT_TRUE(mp_get_start_method(true) == NULL); /* asking chose nothing */
}

MP_TEST(get_start_method_fixes_the_default)
{
    ASSERT_STREQ("fork", mp_get_start_method(false));
    ASSERT_STREQ("fork", mp_get_start_method(true));
    ASSERT_ERR(MP_EALREADY, mp_set_start_method("spawn", false));
    ASSERT_STREQ("fork", mp_get_start_method(true));
    ASSERT_ERR(MP_EALREADY, mp_set_start_method("fork", false)); /* even the same one */
    ASSERT_OK(mp_set_start_method("spawn", true));
    ASSERT_STREQ("spawn", mp_get_start_method(true));
    ASSERT_STREQ("spawn", mp_get_start_method(false));
    ASSERT_OK(mp_set_start_method("forkserver", true));
    ASSERT_STREQ("forkserver", mp_get_start_method(false));
}

MP_TEST(set_start_method_once)
{
    ASSERT_OK(mp_set_start_method("spawn", false));
    ASSERT_STREQ("spawn", mp_get_start_method(true));
    ASSERT_STREQ("spawn", mp_get_start_method(false));
    ASSERT_ERR(MP_EALREADY, mp_set_start_method("forkserver", false));
    ASSERT_STREQ("spawn", mp_get_start_method(true));
    ASSERT_OK(mp_set_start_method("fork", true));
    ASSERT_STREQ("fork", mp_get_start_method(true));
}

MP_TEST(unknown_method_changes_nothing)
{
    static const char *const bad[] = {"bogus", "", "Fork", "spawn ", "threads", "forkserverx"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_ERR(MP_EINVAL, mp_set_start_method(bad[i], false));
        ASSERT_ERR(MP_EINVAL, mp_set_start_method(bad[i], true));
        ASSERT_TRUE(mp_get_start_method(true) == NULL);
        ASSERT_TRUE(mp_get_context(bad[i]) == NULL);
        ASSERT_TRUE(mp_get_start_method(true) == NULL);
    }
    ASSERT_OK(mp_set_start_method("forkserver", false));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_ERR(MP_EINVAL, mp_set_start_method(bad[i], true));
        ASSERT_STREQ("forkserver", mp_get_start_method(true));
    }
}

MP_TEST(concrete_contexts)
{
    for (size_t i = 0; i < 3; i++) {
        mp_context *c = mp_get_context(all_methods[i]);
        ASSERT_TRUE(c != NULL);
        ASSERT_STREQ(all_methods[i], mp_context_start_method(c));
        ASSERT_TRUE(mp_get_context(all_methods[i]) == c); /* one context per method */
        ASSERT_TRUE(mp_get_start_method(true) == NULL);   /* the global choice is untouched */
    }
    ASSERT_TRUE(mp_get_context("spawn") != mp_get_context("fork"));
    ASSERT_TRUE(mp_get_context("spawn") != mp_get_context("forkserver"));
    /* and with a method chosen, a context does not change it either */
    ASSERT_OK(mp_set_start_method("forkserver", false));
    ASSERT_STREQ("spawn", mp_context_start_method(mp_get_context("spawn")));
    ASSERT_STREQ("forkserver", mp_get_start_method(true));
}

MP_TEST(default_context_fixes_the_default)
{
    ASSERT_TRUE(mp_get_start_method(true) == NULL);
    mp_context *c = mp_get_context(NULL);
    ASSERT_TRUE(c != NULL);
    ASSERT_STREQ("fork", mp_context_start_method(c));
    ASSERT_STREQ("fork", mp_get_start_method(true));
    ASSERT_TRUE(c == mp_get_context("fork"));
    ASSERT_ERR(MP_EALREADY, mp_set_start_method("spawn", false));
    /* after a forced change the default context follows */
    ASSERT_OK(mp_set_start_method("spawn", true));
    c = mp_get_context(NULL);
    ASSERT_STREQ("spawn", mp_context_start_method(c));
    ASSERT_TRUE(c == mp_get_context("spawn"));
}

MP_TEST(default_context_after_set)
{
    ASSERT_OK(mp_set_start_method("forkserver", false));
    ASSERT_STREQ("forkserver", mp_context_start_method(mp_get_context(NULL)));
    ASSERT_STREQ("forkserver", mp_get_start_method(true));
}

MP_TEST(all_start_methods)
{
    const char *out[8];
    for (size_t i = 0; i < 8; i++)
        out[i] = "untouched";
    ASSERT_EQ(3, mp_get_all_start_methods(out, 8));
    for (size_t i = 0; i < 3; i++)
        ASSERT_STREQ(all_methods[i], out[i]);
    for (size_t i = 3; i < 8; i++)
        ASSERT_STREQ("untouched", out[i]);

    /* a smaller array: only what fits is written, the count is the same */
    for (size_t i = 0; i < 8; i++)
        out[i] = "untouched";
    ASSERT_EQ(3, mp_get_all_start_methods(out, 1));
    ASSERT_STREQ("fork", out[0]);
    ASSERT_STREQ("untouched", out[1]);
    ASSERT_EQ(3, mp_get_all_start_methods(out, 2));
    ASSERT_STREQ("fork", out[0]);
    ASSERT_STREQ("spawn", out[1]);
    ASSERT_STREQ("untouched", out[2]);
    ASSERT_EQ(3, mp_get_all_start_methods(NULL, 0));
    /* listing chose nothing, and every listed method has its context */
    ASSERT_TRUE(mp_get_start_method(true) == NULL);
    ASSERT_EQ(3, mp_get_all_start_methods(out, 3));
    for (size_t i = 0; i < 3; i++)
        ASSERT_STREQ(out[i], mp_context_start_method(mp_get_context(out[i])));
}

MP_TEST(cpu_count)
{
    cpu_set_t set;
    ASSERT_EQ(0, sched_getaffinity(0, sizeof set, &set));
    int n = CPU_COUNT(&set);
    ASSERT_GE(mp_cpu_count(), 1);
    ASSERT_EQ(n, mp_cpu_count());
    /* it follows this process's affinity mask */
    int first = 0;
    while (!CPU_ISSET(first, &set))
        first++;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    ASSERT_EQ(0, sched_setaffinity(0, sizeof one, &one));
    ASSERT_EQ(1, mp_cpu_count());
    ASSERT_EQ(0, sched_setaffinity(0, sizeof set, &set));
    ASSERT_EQ(n, mp_cpu_count());
}

/* ---- what a child sees --------------------------------------------------- */

static int t_report_method(const mp_args *a)
{
    const char *m = mp_get_start_method(true);
    char line[64];
    int n = snprintf(line, sizeof line, "%s", m ? m : "none");
    return write(mp_args_fd(a, 0), line, (size_t)n) == n ? 0 : 99;
}

static void child_method(mp_context *ctx, char *out, size_t cap)
{
    int p[2];
    ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "f", p[1]));
    close(p[1]);
    mp_process *proc = mp_test_start_free(ctx, t_report_method, a);
    ASSERT_EQ(0, mp_test_join(proc, 30));
    ssize_t n = read(p[0], out, cap - 1);
    close(p[0]);
    ASSERT_GT(n, 0);
    out[n] = '\0';
}

/* Python: a child started from a context runs with that context's method
 * as its own start method (BaseProcess._bootstrap forces it). */
MP_TEST(child_reports_its_start_method, .variants = MP_START_METHODS)
{
    char got[64];
    child_method(ctx, got, sizeof got);
    ASSERT_STREQ(method, got);
    /* also when this process chose another method */
    const char *other = strcmp(method, "spawn") == 0 ? "forkserver" : "spawn";
    ASSERT_OK(mp_set_start_method(other, true));
    child_method(ctx, got, sizeof got);
    ASSERT_STREQ(method, got);
    /* and a child of the default context gets the default */
    child_method(NULL, got, sizeof got);
    ASSERT_STREQ(other, got);
}

/* Starting a process from a concrete fork context chooses nothing here. */
MP_TEST(fork_context_leaves_the_choice_open)
{
    char got[64];
    child_method(mp_get_context("fork"), got, sizeof got);
    ASSERT_STREQ("fork", got);
    ASSERT_TRUE(mp_get_start_method(true) == NULL);
}
