/*
 * Helpers that test bodies share (declared in mp_test.h): start and join a
 * process, reap what a test inherited as a subreaper, read and write the
 * one-line reports that children send through a pipe, check a manager's
 * dict entry, start a manager with a random key.  They fail the test
 * with the ASSERT macros, so they may be used in helpers and children
 * alike; a failure names this file's line, and the test's output shows
 * which call it was.
 */
#include "mp_test.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

mp_process *mp_test_start(mp_context *ctx, mp_target_fn fn, const mp_args *a)
{
    mp_process *p = NULL;
    ASSERT_OK(mp_process_new(&p, ctx, fn, a));
    ASSERT_OK(mp_process_start(p));
    return p;
}

mp_process *mp_test_start_free(mp_context *ctx, mp_target_fn fn, mp_args *a)
{
    mp_process *p = NULL;
    ASSERT_OK(mp_process_new(&p, ctx, fn, a));
    /* before the start: a forked child must not inherit what @a holds */
    mp_args_free(a);
    ASSERT_OK(mp_process_start(p));
    return p;
}

int mp_test_join(mp_process *p, double timeout)
{
    int code = -1000;
    ASSERT_OK(mp_process_join(p, timeout));
    ASSERT_OK(mp_process_exitcode(p, &code));
    ASSERT_OK(mp_process_close(p));
    return code;
}

int mp_test_run(mp_context *ctx, mp_target_fn fn, const mp_args *a)
{
    return mp_test_join(mp_test_start(ctx, fn, a), 60);
}

int mp_test_run_free(mp_context *ctx, mp_target_fn fn, mp_args *a)
{
    return mp_test_join(mp_test_start_free(ctx, fn, a), 60);
}

void mp_test_kill(mp_process *p)
{
    ASSERT_OK(mp_process_kill(p));
    ASSERT_EQ(-SIGKILL, mp_test_join(p, 30));
}

void mp_test_reap_orphans(double timeout)
{
    double until = mp_monotonic() + timeout;
    for (;;) {
        pid_t w = waitpid(-1, NULL, WNOHANG);
        if (w < 0)
            break;
        if (w == 0) {
            if (mp_monotonic() > until)
                break;
            usleep(10000); /* orphans give no descriptor to wait on */
        }
    }
    ASSERT_EQ(-1, waitpid(-1, NULL, WNOHANG));
    ASSERT_EQ(ECHILD, errno);
}

void mp_test_vsay(int fd, const char *fmt, va_list ap)
{
    char line[512];
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    if (n < 0 || n > (int)sizeof line - 2)
        n = (int)sizeof line - 2; /* vsnprintf's count is what it wanted */
    line[n++] = '\n';
    /* one write: lines from several children do not interleave */
    if (write(fd, line, (size_t)n) != n)
        _exit(99);
}

void mp_test_say(int fd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mp_test_vsay(fd, fmt, ap);
    va_end(ap);
}

const char *mp_test_read_line(int fd)
{
    static char line[512];
    size_t n = 0;
    while (n < sizeof line - 1) {
        /* a child that never reports fails here, not at the test's timeout */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 60000) == 0)
            MP__FAIL("no line on descriptor %d in 60 s", fd);
        ssize_t r = read(fd, line + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    return line;
}

int mp_test_rpc(mp_conn *c, mp_args *req)
{
    ASSERT_OK(mp_conn_send(c, req));
    mp_args_free(req);
    ASSERT_EQ(mp_conn_poll(c, 20), 1);
    mp_args *r = NULL;
    ASSERT_OK(mp_conn_recv(c, &r));
    ASSERT_GE(mp_args_count(r), 1);
    ASSERT_EQ(mp_args_type(r, 0), MP_ARG_INT);
    int st = (int)mp_args_int(r, 0);
    mp_args_free(r);
    return st;
}

pid_t mp_test_fork_pipe(int fds[2])
{
    ASSERT_EQ(0, pipe2(fds, O_CLOEXEC));
    fflush(NULL);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    return pid;
}

int mp_test_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ASSERT_TRUE(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += isdigit((unsigned char)e->d_name[0]) != 0;
    closedir(d);
    return n - 1; /* the directory's own */
}

void mp_test_dict_expect(mp_dict *d, const char *key, const void *want, size_t n)
{
    mp_buf v = MP_BUF_INIT;
    ASSERT_OK(mp_dict_get(d, key, strlen(key), &v));
    ASSERT_EQ(v.len, n);
    ASSERT_MEMEQ(v.data, want, n);
    mp_buf_free(&v);
}

mp_manager *mp_test_manager_keyed(mp_context *ctx, uint8_t *key, size_t n)
{
    ASSERT_EQ(getrandom(key, n, 0), (ssize_t)n);
    mp_manager *m = NULL;
    ASSERT_OK(mp_manager_start(&m, ctx, NULL, key, n));
    return m;
}
