/*
 * The spawn bootstrap trusts only its own channel (issue 12, finding 2).
 *
 * A program that links the library and starts with MULTIPROC_SPAWN set
 * runs its own main() -- and never reads or closes the descriptor the
 * marker names -- unless that descriptor is the channel mp__spawn_exec
 * makes: one end of an AF_UNIX stream socket pair whose other end belongs
 * to this process's parent, of the same user.  In a set-user-ID or
 * set-capability program (AT_SECURE) the marker is not even looked at, by
 * the constructor or by mp_main_hook().
 *
 * The program under test is tests/lib/spawn_probe.c: its main() prints
 * "spawn-probe main: secure=<AT_SECURE> marker=<...>".  Each test leaves
 * bytes in the descriptor it hands over and reads them back afterwards.
 * Each runs the probe twice: relying on the constructor, and calling
 * mp_main_hook() first thing in main().
 */
#include "mp_test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define MARKER "MULTIPROC_SPAWN"
#define MAIN_LINE "spawn-probe main: "
#define NOBODY 65534

static const char *const modes[] = {"ctor", "hook"};
static const char *const fresh[] = {"spawn", "forkserver"};

typedef struct probe_run {
    int status;
    char out[4096];
} probe_run;

/* Run @path with @chan as its fd 3 and MULTIPROC_SPAWN=3 (no marker for
 * @chan < 0); capture its stdout (stderr goes to ours). */
static void run_probe(const char *path, int chan, const char *mode, probe_run *r)
{
    int out[2];
    ASSERT_OK(mp__sys_pipe(out));
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = calloc(n + 2, sizeof *envp);
    ASSERT_TRUE(envp != NULL);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], MARKER "=", sizeof MARKER) != 0)
            envp[k++] = environ[i];
    if (chan >= 0)
        envp[k++] = (char *)MARKER "=3";
    char *argv[] = {(char *)path, (char *)mode, NULL};
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (dup2(out[1], STDOUT_FILENO) < 0)
            _exit(120);
        if (chan == 3 ? fcntl(3, F_SETFD, 0) < 0 : chan >= 0 && dup2(chan, 3) < 0)
            _exit(121);
        execve(path, argv, envp);
        _exit(122);
    }
    free(envp);
    close(out[1]);
    size_t len = 0;
    for (;;) {
        ssize_t got = read(out[0], r->out + len, sizeof r->out - 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    r->out[len] = '\0';
    close(out[0]);
    ASSERT_EQ(pid, waitpid(pid, &r->status, 0));
}

static void assert_main_ran(const probe_run *r)
{
    if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != 0 || !strstr(r->out, MAIN_LINE))
        MP__FAIL("the probe's main() did not run: status %#x, output \"%s\"", r->status, r->out);
}

/* The bytes a parent would send: a well-formed header (role PROCESS) and
 * a body. */
static void put_prep(int sock, size_t *len)
{
    static const char junk[] = "not a preparation body";
    mp_buf body = MP_BUF_INIT;
    mp__fdvec fds = {.n = 0};
    ASSERT_OK(mp__put_blob(&body, junk, sizeof junk));
    ASSERT_OK(mp__prep_send(sock, MP__ROLE_PROCESS, &body, &fds));
    *len = 20 + body.len;
    mp_buf_free(&body);
}

/* All of the @want bytes are still waiting in @fd, and nothing else. */
static void assert_unread(int fd, size_t want)
{
    char buf[512];
    size_t got = 0;
    ASSERT_LE(want, sizeof buf);
    for (;;) {
        ssize_t r = recv(fd, buf + got, sizeof buf - got, MSG_DONTWAIT);
        if (r < 0 && errno == ENOTSOCK)
            r = read(fd, buf + got, sizeof buf - got); /* pipes: O_NONBLOCK set by the caller */
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    ASSERT_EQ(want, got);
}

/* A process that is not the probe's parent makes a stream socket pair and
 * hands both ends over; with @hold it stays alive until *hold is closed,
 * otherwise it has exited and been reaped on return. */
static pid_t foreign_pair(int sv[2], int *hold)
{
    int link[2], keep[2];
    ASSERT_OK(mp__sys_socketpair(SOCK_STREAM, link));
    ASSERT_OK(mp__sys_pipe(keep));
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        close(keep[1]);
        int pair[2];
        if (mp__sys_socketpair(SOCK_STREAM, pair) < 0 ||
            mp__sys_send_fds(link[1], "p", 1, pair, 2) < 0)
            _exit(1);
        close(pair[0]);
        close(pair[1]);
        char c;
        while (read(keep[0], &c, 1) < 0 && errno == EINTR)
            ; /* until the test closes its end */
        _exit(0);
    }
    close(link[1]);
    close(keep[0]);
    char c;
    size_t nfds = 0;
    ASSERT_OK(mp__sys_recv_fds(link[0], &c, 1, sv, 2, &nfds));
    ASSERT_EQ(2, nfds);
    close(link[0]);
    if (hold != NULL) {
        *hold = keep[1];
        return pid;
    }
    close(keep[1]);
    int st;
    ASSERT_EQ(pid, waitpid(pid, &st, 0));
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}

/* Neither a pipe nor a regular file is a channel. */
MP_TEST(spawn_marker_pipe_ignored)
{
    for (size_t m = 0; m < MP__ARRAY_LEN(modes); m++) {
        int p[2];
        ASSERT_OK(mp__sys_pipe(p));
        size_t len;
        static const char bytes[] = "MPH1 and more bytes than a header";
        ASSERT_EQ((ssize_t)sizeof bytes, write(p[1], bytes, sizeof bytes));
        len = sizeof bytes;
        probe_run r;
        run_probe(MP_SPAWN_PROBE_PATH, p[0], modes[m], &r);
        assert_main_ran(&r);
        ASSERT_TRUE(strstr(r.out, "marker=(none)") != NULL); /* not ours: dropped */
        ASSERT_OK(fcntl(p[0], F_SETFL, O_NONBLOCK));
        assert_unread(p[0], len);
        close(p[0]);
        close(p[1]);
    }
}

MP_TEST(spawn_marker_regular_file_ignored)
{
    for (size_t m = 0; m < MP__ARRAY_LEN(modes); m++) {
        char path[] = "/tmp/mp-trust-XXXXXX";
        int fd = mkostemp(path, O_CLOEXEC);
        ASSERT_GE(fd, 0);
        unlink(path);
        static const char bytes[] = "MPH1 and more bytes than a header";
        ASSERT_EQ((ssize_t)sizeof bytes, write(fd, bytes, sizeof bytes));
        ASSERT_EQ(0, lseek(fd, 0, SEEK_SET));
        probe_run r;
        run_probe(MP_SPAWN_PROBE_PATH, fd, modes[m], &r);
        assert_main_ran(&r);
        ASSERT_EQ(0, lseek(fd, 0, SEEK_CUR)); /* the shared offset did not move */
        assert_unread(fd, sizeof bytes);
        close(fd);
    }
}

/* Right type, same user, but made by a process that is not the parent,
 * and that is still alive. */
MP_TEST(spawn_marker_foreign_socketpair_ignored)
{
    for (size_t m = 0; m < MP__ARRAY_LEN(modes); m++) {
        int sv[2], hold;
        pid_t maker = foreign_pair(sv, &hold);
        size_t len;
        put_prep(sv[0], &len);
        probe_run r;
        run_probe(MP_SPAWN_PROBE_PATH, sv[1], modes[m], &r);
        assert_main_ran(&r);
        assert_unread(sv[1], len);
        close(sv[0]);
        close(sv[1]);
        close(hold);
        int st;
        ASSERT_EQ(maker, waitpid(maker, &st, 0));
        ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
}

/* A connection to a listener -- even one the parent itself listens on --
 * is not a socket pair: its peer has a name. */
MP_TEST(spawn_marker_listener_connection_ignored)
{
    for (size_t m = 0; m < MP__ARRAY_LEN(modes); m++) {
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_GE(lfd, 3);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        int alen = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "mp-trust-%d-%zu",
                            (int)getpid(), m);
        socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)alen);
        ASSERT_OK(bind(lfd, (struct sockaddr *)&a, salen));
        ASSERT_OK(listen(lfd, 1));
        int cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_GE(cfd, 3);
        ASSERT_OK(connect(cfd, (struct sockaddr *)&a, salen));
        int sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_GE(sfd, 3);
        size_t len;
        put_prep(sfd, &len);
        probe_run r;
        run_probe(MP_SPAWN_PROBE_PATH, cfd, modes[m], &r);
        assert_main_ran(&r);
        assert_unread(cfd, len);
        close(sfd);
        close(cfd);
        close(lfd);
    }
}

/* A socket pair the parent made, but a datagram-like one: the library's
 * channel is a stream. */
MP_TEST(spawn_marker_seqpacket_ignored)
{
    for (size_t m = 0; m < MP__ARRAY_LEN(modes); m++) {
        int sv[2];
        ASSERT_OK(mp__sys_socketpair(SOCK_SEQPACKET, sv));
        size_t len;
        put_prep(sv[0], &len);
        probe_run r;
        run_probe(MP_SPAWN_PROBE_PATH, sv[1], modes[m], &r);
        assert_main_ran(&r);
        char buf[512];
        /* a seqpacket keeps message boundaries: header, then body */
        ASSERT_EQ(20, recv(sv[1], buf, sizeof buf, MSG_DONTWAIT));
        ASSERT_EQ((ssize_t)len - 20, recv(sv[1], buf, sizeof buf, MSG_DONTWAIT));
        close(sv[0]);
        close(sv[1]);
    }
}

/* The parent made the pair, but as another user (the peer's credentials
 * are those of the socketpair() call). */
MP_TEST(spawn_marker_other_user_ignored)
{
    if (geteuid() != 0)
        MP_TEST_SKIP("needs root to make a socket pair as another user");
    for (size_t m = 0; m < MP__ARRAY_LEN(modes); m++) {
        int sv[2];
        ASSERT_OK(setresuid(-1, NOBODY, -1));
        int err = mp__sys_socketpair(SOCK_STREAM, sv);
        ASSERT_OK(setresuid(-1, 0, -1));
        ASSERT_OK(err);
        size_t len;
        put_prep(sv[0], &len);
        probe_run r;
        run_probe(MP_SPAWN_PROBE_PATH, sv[1], modes[m], &r);
        assert_main_ran(&r);
        assert_unread(sv[1], len);
        close(sv[0]);
        close(sv[1]);
    }
}

/* Made by a process that has exited: what a spawned child sees when its
 * parent died before the child started (it was reparented).  It cannot be
 * verified, and running the program's main() in place of the child would
 * be worse: the child exits at once, with MP_EXIT_BOOTSTRAP and one line,
 * without reading the descriptor. */
MP_TEST(spawn_marker_dead_maker_exits_unread)
{
    for (size_t m = 0; m < MP__ARRAY_LEN(modes); m++) {
        int sv[2];
        foreign_pair(sv, NULL);
        size_t len;
        put_prep(sv[0], &len);
        probe_run r;
        run_probe(MP_SPAWN_PROBE_PATH, sv[1], modes[m], &r);
        ASSERT_TRUE(strstr(r.out, MAIN_LINE) == NULL);
        ASSERT_TRUE(WIFEXITED(r.status));
        ASSERT_EQ(MP_EXIT_BOOTSTRAP, WEXITSTATUS(r.status));
        assert_unread(sv[1], len);
        close(sv[0]);
        close(sv[1]);
    }
}

/* The control: a channel the parent made is read (the probe has no target
 * to run, so it reads the bad body and exits with MP_EXIT_BOOTSTRAP). */
MP_TEST(spawn_marker_parent_channel_is_read)
{
    for (size_t m = 0; m < MP__ARRAY_LEN(modes); m++) {
        int sv[2];
        ASSERT_OK(mp__sys_socketpair(SOCK_STREAM, sv));
        size_t len;
        put_prep(sv[0], &len);
        probe_run r;
        run_probe(MP_SPAWN_PROBE_PATH, sv[1], modes[m], &r);
        ASSERT_TRUE(strstr(r.out, MAIN_LINE) == NULL);
        ASSERT_TRUE(WIFEXITED(r.status));
        ASSERT_EQ(MP_EXIT_BOOTSTRAP, WEXITSTATUS(r.status));
        assert_unread(sv[1], 0); /* the child read them through its copy */
        close(sv[0]);
        close(sv[1]);
    }
}

/* A set-user-ID program (AT_SECURE=1): a channel its own parent made, of
 * the right type and as the program's effective user, is still ignored --
 * the environment belongs to whoever ran the program.  The marker is not
 * even removed. */
MP_TEST(spawn_secure_mode_ignores_marker)
{
    if (geteuid() != 0)
        MP_TEST_SKIP("needs root to make a set-user-ID copy of the probe");
    char dir[] = "/tmp/mp-trust-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    struct statvfs vfs;
    ASSERT_OK(statvfs(dir, &vfs));
    if (vfs.f_flag & ST_NOSUID) {
        rmdir(dir);
        MP_TEST_SKIP("%s is mounted nosuid", dir);
    }
    ASSERT_OK(chmod(dir, 0755));
    char path[sizeof dir + 32];
    snprintf(path, sizeof path, "%s/spawn_probe", dir);
    int in = open(MP_SPAWN_PROBE_PATH, O_RDONLY | O_CLOEXEC);
    ASSERT_GE(in, 0);
    int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
    ASSERT_GE(out, 0);
    char buf[65536];
    ssize_t got;
    while ((got = read(in, buf, sizeof buf)) > 0)
        ASSERT_EQ(got, write(out, buf, (size_t)got));
    ASSERT_EQ(0, got);
    close(in);
    close(out);
    ASSERT_OK(chown(path, NOBODY, NOBODY));
    ASSERT_OK(chmod(path, 04755)); /* after chown, which clears the bit */

    probe_run plain, runs[MP__ARRAY_LEN(modes)];
    size_t left[MP__ARRAY_LEN(modes)], len = 0;
    run_probe(path, -1, "ctor", &plain);
    bool secure = strstr(plain.out, "secure=1") != NULL;
    for (size_t m = 0; secure && m < MP__ARRAY_LEN(modes); m++) {
        /* made as the probe's effective user: every other check passes */
        int sv[2];
        ASSERT_OK(setresuid(-1, NOBODY, -1));
        int err = mp__sys_socketpair(SOCK_STREAM, sv);
        ASSERT_OK(setresuid(-1, 0, -1));
        ASSERT_OK(err);
        put_prep(sv[0], &len);
        run_probe(path, sv[1], modes[m], &runs[m]);
        /* what is still unread */
        left[m] = 0;
        ssize_t n;
        while ((n = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT)) > 0)
            left[m] += (size_t)n;
        close(sv[0]);
        close(sv[1]);
    }
    probe_run starts[MP__ARRAY_LEN(fresh)];
    for (size_t m = 0; secure && m < MP__ARRAY_LEN(fresh); m++)
        run_probe(path, -1, fresh[m], &starts[m]);
    ASSERT_OK(unlink(path)); /* clean up before any verdict */
    ASSERT_OK(rmdir(dir));
    assert_main_ran(&plain);
    if (!secure)
        MP_TEST_SKIP("the set-user-ID bit is not honoured here (no_new_privs?): %s", plain.out);
    for (size_t m = 0; m < MP__ARRAY_LEN(modes); m++) {
        assert_main_ran(&runs[m]);
        ASSERT_TRUE(strstr(runs[m].out, "secure=1") != NULL);
        ASSERT_TRUE(strstr(runs[m].out, "marker=3") != NULL); /* not even removed */
        ASSERT_EQ(len, left[m]);
    }
    /* Its own fresh runs would be set-user-ID runs as well, which ignore
     * the marker and would run main(): spawn and forkserver refuse. */
    for (size_t m = 0; m < MP__ARRAY_LEN(fresh); m++) {
        assert_main_ran(&starts[m]);
        const char *line = strstr(starts[m].out, MAIN_LINE);
        ASSERT_TRUE(strstr(line + 1, MAIN_LINE) == NULL); /* main() ran once */
        if (strstr(starts[m].out, "start=MP_EPERM\n") == NULL)
            MP__FAIL("%s in a set-user-ID program: \"%s\"", fresh[m], starts[m].out);
    }
}

/* The control for the above: without AT_SECURE, the probe starts by spawn
 * and forkserver (its children run their target, not main()). */
MP_TEST(spawn_probe_starts_processes)
{
    for (size_t m = 0; m < MP__ARRAY_LEN(fresh); m++) {
        probe_run r;
        run_probe(MP_SPAWN_PROBE_PATH, -1, fresh[m], &r);
        assert_main_ran(&r);
        const char *line = strstr(r.out, MAIN_LINE);
        ASSERT_TRUE(strstr(line + 1, MAIN_LINE) == NULL);
        if (strstr(r.out, "start=ok\n") == NULL)
            MP__FAIL("%s: \"%s\"", fresh[m], r.out);
    }
}
