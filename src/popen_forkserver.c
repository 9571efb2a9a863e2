/* The forkserver start method, requester side (see forkserver.c). */
#include "internal.h"

#include <poll.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define fs mp__me.fs

static void server_drop(void) /* under fs.lock */
{
    if (fs.ctl < 0)
        return;
    mp__sys_close(fs.ctl);
    fs.ctl = -1;
    /* Without its control socket the server exits at once. */
    while (waitpid(fs.pid, NULL, 0) < 0 && errno == EINTR)
        ;
    mp__sys_close(fs.pidfd);
    fs.pidfd = -1;
    fs.pid = 0;
}

static int server_start(void) /* under fs.lock */
{
    int owner = mp__self_pidfd();
    if (owner < 0)
        return owner;
    int sv[2];
    int err = mp__sys_socketpair(SOCK_SEQPACKET, sv);
    if (err < 0)
        return err;
    if (getrandom(fs.token, sizeof fs.token, 0) != (ssize_t)sizeof fs.token) {
        err = -errno;
        goto out;
    }
    mp_buf body = MP_BUF_INIT;
    mp__fdvec fds = {.n = 0};
    mp__fdvec_add(&fds, owner);
    mp__fdvec_add(&fds, sv[1]);
    err = mp__put_blob(&body, fs.token, sizeof fs.token);
    if (err == 0)
        err = mp__put_u32(&body, 0);
    if (err == 0)
        err = mp__put_u32(&body, 1);
    int chan = -1;
    pid_t pid = 0;
    int pidfd = -1;
    if (err == 0)
        err = mp__spawn_exec(&chan, &pid, &pidfd);
    if (err == 0) {
        err = mp__prep_send(chan, MP__ROLE_FORKSERVER, &body, &fds);
        mp__sys_close(chan);
        if (err < 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            mp__sys_close(pidfd);
        }
    }
    mp_buf_free(&body);
    if (err == 0) {
        fs.ctl = sv[0];
        sv[0] = -1;
        fs.pid = pid;
        fs.pidfd = pidfd;
        mp__log(MP_LOG_INFO, "fork server started, pid %d", (int)pid);
    }
out:
    mp__sys_close(sv[0]);
    mp__sys_close(sv[1]);
    return err;
}

void mp__forkserver_stop(void)
{
    pthread_mutex_lock(&fs.lock);
    server_drop();
    pthread_mutex_unlock(&fs.lock);
}

/* Fork hook (process.c). */
MP__CHILD_TEXT static void forkserver_child(void)
{
    /* The server belongs to the parent.  Write only what must change: the
     * page is copy-on-write. */
    fs.lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    if (fs.ctl >= 0 || fs.pidfd >= 0) {
        mp__sys_close(fs.ctl);
        mp__sys_close(fs.pidfd);
        fs.ctl = -1;
        fs.pidfd = -1;
        fs.pid = 0;
    }
}

static const mp__hooks forkserver_hooks = {
    .slot = MP__HOOK_FORKSERVER,
    .child = forkserver_child,
    .exit = mp__forkserver_stop,
};

/* Ask the server for a child on @remote; on a dead server start another. */
static int request(int remote, bool restart)
{
    mp__hooks_add(&forkserver_hooks); /* before the first server or lock */
    pthread_mutex_lock(&fs.lock);
    int err = 0;
    if (restart || fs.ctl < 0) {
        server_drop();
        err = server_start();
    }
    if (err == 0)
        err = mp__sys_send_fds(fs.ctl, fs.token, sizeof fs.token, &remote, 1);
    pthread_mutex_unlock(&fs.lock);
    return err;
}

/* A prep up to this size is written before its request, so that the server
 * finds it whole and reads it before forking (forkserver.c); it fits a
 * socket's buffer with no reader yet.  A bigger one follows the request and
 * the child reads it. */
#define PREP_AHEAD_MAX (64 * 1024)

static int forkserver_start(mp_process *p)
{
    mp_buf body = MP_BUF_INIT;
    mp__fdvec fds = {.n = 0};
    int chan[2] = {-1, -1};
    int err = mp__prep_encode(p, &body, &fds);
    for (int attempt = 0; err == 0 && attempt < 2; attempt++) {
        err = mp__sys_socketpair(SOCK_STREAM, chan);
        if (err < 0)
            break;
        bool ahead = body.len + MP__PREP_HDR_SIZE <= PREP_AHEAD_MAX;
        if (ahead && (err = mp__prep_send(chan[0], MP__ROLE_PROCESS, &body, &fds)) < 0) {
            mp__sys_close(chan[0]);
            mp__sys_close(chan[1]);
            break;
        }
        err = request(chan[1], attempt > 0);
        mp__sys_close(chan[1]);
        if (err == -EPIPE || err == -ECONNRESET || err == -ENOTCONN) {
            mp__sys_close(chan[0]);
            err = 0;
            continue; /* the server died: start a new one */
        }
        if (err == 0 && !ahead)
            err = mp__prep_send(chan[0], MP__ROLE_PROCESS, &body, &fds);
        uint8_t reply[4];
        int pidfd = -1;
        size_t n = 0;
        if (err == 0)
            err = mp__sys_recv_fds(chan[0], reply, sizeof reply, &pidfd, 1, &n);
        if (err == 0 && n == 1) {
            p->pid = (pid_t)(reply[0] | reply[1] << 8 | reply[2] << 16 | (uint32_t)reply[3] << 24);
            p->pidfd = pidfd;
            p->status_fd = chan[0];
            break;
        }
        if (n == 1)
            mp__sys_close(pidfd);
        mp__sys_close(chan[0]);
        if (err == MP_EOF || err == -EPIPE || err == -ECONNRESET) {
            err = 0; /* the server died before forking: once more */
            continue;
        }
        if (err == 0)
            err = MP_EBADMSG;
        break;
    }
    if (err == 0 && p->pidfd < 0)
        err = -ECHILD;
    mp_buf_free(&body);
    return err;
}

/* How long the server may take to relay the status of a child its pidfd
 * shows has ended.  It reaps on SIGCHLD at once; only a stopped or wedged
 * server takes longer. */
#define STATUS_GRACE 10.0

/*
 * The sentinel is the child's pidfd, readable the moment the child dies;
 * the status comes a little later, once the server has reaped it.  So that
 * every view agrees (a readable sentinel means not alive, exit code known),
 * a wait that finds the pidfd readable waits for the status too, whatever
 * its own deadline.
 */
static int forkserver_wait(mp_process *p, const mp__deadline *d)
{
    int r = mp__sys_poll1(p->status_fd, POLLIN, d);
    if (r < 0)
        return r;
    if (r == 0) {
        mp__deadline now;
        mp__deadline_init(&now, 0);
        r = mp__sys_poll1(p->pidfd, POLLIN, &now);
        if (r < 0)
            return r;
        if (r == 0)
            return MP_ETIMEDOUT; /* still running */
        mp__deadline grace;
        mp__deadline_init(&grace, STATUS_GRACE);
        r = mp__sys_poll1(p->status_fd, POLLIN, &grace);
        if (r < 0)
            return r;
        if (r == 0) {
            mp__log(MP_LOG_WARNING, "%s: the fork server sent no status for pid %d: exitcode 255",
                    p->name, (int)p->pid);
            p->exitcode = 255;
            goto done;
        }
    }
    uint8_t st[4];
    int err = mp__sys_read_all(p->status_fd, st, sizeof st);
    if (err == 0) {
        p->exitcode = mp__exitcode_from_status(
            (int)(st[0] | st[1] << 8 | st[2] << 16 | (uint32_t)st[3] << 24));
    } else {
        /* The server died: no status will come.  Wait for the child itself. */
        r = mp__sys_poll1(p->pidfd, POLLIN, d);
        if (r < 0)
            return r;
        if (r == 0)
            return MP_ETIMEDOUT;
        p->exitcode = 255;
    }
done:
    mp__sys_close(p->status_fd);
    p->status_fd = -1;
    return 0;
}

const mp__popen_ops mp__popen_forkserver = {
    .method = "forkserver",
    .start = forkserver_start,
    .wait = forkserver_wait,
};
