/*
 * The harness's own test: tests named pass_* must pass, skip_* must be
 * skipped and fail_* must fail, each for the reason its name gives.  check_selftest.cmake runs this
 * and checks the verdicts and the diagnostics.
 */
#include "mp_test.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

MP_TEST(pass_plain)
{
    ASSERT_TRUE(ctx == NULL);
    ASSERT_TRUE(method == NULL);
    ASSERT_EQ(getpid(), getpgid(0)); /* its own process group */
    printf("this output is not shown\n");
}

static int t_exit7(const mp_args *a)
{
    (void)a;
    return 7;
}

/* A real process under each method leaves nothing behind. */
MP_TEST(pass_variant, .variants = MP_START_METHODS)
{
    ASSERT_TRUE(ctx != NULL);
    ASSERT_STREQ(method, mp_context_start_method(ctx));
    mp_process *p = mp_test_start(ctx, t_exit7, NULL);
    ASSERT_EQ(7, mp_test_join(p, 20));
}

MP_TEST(pass_expected_signal, .signal = SIGABRT)
{
    abort();
}

MP_TEST(pass_assertions)
{
    ASSERT_EQ(-1, (int64_t)-1);
    ASSERT_NE(1, 2);
    ASSERT_LT((size_t)1, 2);
    ASSERT_LE(2, 2);
    ASSERT_GT(0, -1); /* signed against signed, no surprise */
    ASSERT_GE((size_t)3, 3);
    ASSERT_STREQ("a", "a");
    ASSERT_MEMEQ("ab\0c", "ab\0c", 4);
    ASSERT_MEMEQ(NULL, NULL, 0);
    ASSERT_OK(0);
    ASSERT_ERR(MP_EINVAL, -EINVAL);
    int calls = 0;
    ASSERT_EQ(1, ++calls); /* each operand evaluated once */
    ASSERT_OK(calls - 1);
    ASSERT_EQ(1, calls);
}

MP_TEST(fail_assert_eq)
{
    printf("output of a failed test is shown\n");
    ASSERT_EQ(1, 2);
}

MP_TEST(fail_assert_ok)
{
    ASSERT_OK(MP_EEMPTY);
}

MP_TEST(fail_assert_err)
{
    ASSERT_ERR(MP_EINVAL, MP_ETIMEDOUT);
}

MP_TEST(fail_assert_streq)
{
    ASSERT_STREQ("abc", NULL);
}

MP_TEST(fail_assert_memeq)
{
    ASSERT_MEMEQ("abcdef", "abcxef", 6);
}

static void helper(void)
{
    ASSERT_FALSE(1);
}

static void helper_skip(void)
{
    MP_TEST_SKIP("from a helper");
}

MP_TEST(fail_in_helper)
{
    helper();
}

MP_TEST(fail_exit_status)
{
    exit(3);
}

MP_TEST(fail_crash)
{
    raise(SIGSEGV);
}

MP_TEST(fail_expected_signal_missing, .signal = SIGABRT)
{
}

MP_TEST(fail_fd_leak)
{
    int p[2];
    ASSERT_EQ(0, pipe(p));
}

MP_TEST(fail_running_child)
{
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0)
        pause();
}

MP_TEST(fail_zombie_child)
{
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0)
        _exit(0);
    siginfo_t si;
    ASSERT_EQ(0, waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT)); /* ended, not reaped */
}

/* A grandchild that outlives the test briefly: reaped by the runner. */
MP_TEST(fail_orphan)
{
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (fork() == 0) {
            usleep(300 * 1000);
            _exit(0);
        }
        _exit(0);
    }
    ASSERT_EQ(pid, waitpid(pid, NULL, 0));
}

/* One in its own session that never ends: killed by the runner. */
MP_TEST(fail_orphan_elsewhere)
{
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (fork() == 0) {
            setsid();
            for (;;)
                pause();
        }
        _exit(0);
    }
    ASSERT_EQ(pid, waitpid(pid, NULL, 0));
}

MP_TEST(fail_timeout, .timeout_s = 1)
{
    if (fork() == 0) /* the whole group goes */
        for (;;)
            pause();
    for (;;)
        pause();
}

/* Make a /dev/shm entry named after @tag and leave it there. */
static void leave_shm(const char *tag)
{
    char name[64];
    snprintf(name, sizeof name, "/mp-selftest-%s%d", tag, (int)getpid());
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    ASSERT_GE(fd, 0);
    close(fd);
}

MP_TEST(fail_shm_left)
{
    leave_shm("");
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MP_SELFTEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(MP_SELFTEST_ASAN)
/* LeakSanitizer runs at the test child's exit */
MP_TEST(fail_memory_leak)
{
    void *volatile p = malloc(100);
    printf("leaking %p\n", p);
}
#endif

/* Skipped, with the reason shown: counted neither as passed nor failed. */
MP_TEST(skip_plain)
{
    MP_TEST_SKIP("no %s here", "frobnicator");
}

MP_TEST(skip_variant, .variants = MP_START_METHODS)
{
    if (strcmp(method, "spawn") == 0)
        MP_TEST_SKIP("not under %s", method);
    /* the other variants fall through to the skip as well, from a helper */
    helper_skip();
}

/* Status 77 alone is no skip: a test must say why. */
MP_TEST(fail_exit_skip_status)
{
    exit(MP_TEST_SKIP_STATUS);
}

/* A skip does not hide what the test left behind. */
MP_TEST(fail_skip_after_shm_left)
{
    leave_shm("skip-");
    MP_TEST_SKIP("too late");
}
