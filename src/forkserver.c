/*
 * The fork server: a single-threaded process of this program, spawned on
 * first use, that forks each new child on request.
 *
 * Its prep body: blob token, u32 index of the owner's pidfd, u32 index of
 * the control socket (SOCK_SEQPACKET).  Each request on the control socket
 * is one message: the token, with one descriptor, the child's channel (a
 * stream socket).  For each request the server forks; the child's prep
 * message comes on the channel.  A small one is already there (the owner
 * writes it before the request): the server reads it before it forks and
 * the child finds it in memory.  Otherwise the child reads the rest itself
 * (mp__bootstrap).  The server writes back on the channel "u32 pid" with
 * the child's pidfd, and later "i32 wait status" once it has reaped the
 * child.  The server exits when the owner dies or closes the control
 * socket.
 *
 * A fresh child pays a page fault for each page it first writes or runs,
 * which on a virtual machine costs more than the system calls: the server
 * forks without atfork handlers (mp__fork_lone), and the child's first
 * steps are raw calls in MP__CHILD_TEXT.
 */
#include "internal.h"

#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct kid {
    pid_t pid;
    int chan;
};

static struct kid *kids;
static size_t nkids, capkids;

static bool token_ok(const uint8_t *a, const uint8_t *b)
{
    uint8_t d = 0; /* constant time */
    for (size_t i = 0; i < MP__FORKSERVER_TOKEN; i++)
        d |= a[i] ^ b[i];
    return d == 0;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

int mp__forkserver_recv_request(int ctl, const uint8_t *token, int *chan)
{
    uint8_t msg[MP__FORKSERVER_TOKEN];
    int fds[1];
    size_t nfds = 0;
    *chan = -1;
    int err = mp__sys_recv_fds(ctl, msg, MP__FORKSERVER_TOKEN, fds, 1, &nfds);
    if (err == MP_EOF || err == MP_ETRUNCATED)
        return MP_EOF; /* the owner closed the control socket */
    if (err < 0 || nfds != 1 || !token_ok(msg, token)) {
        if (nfds == 1)
            mp__sys_close(fds[0]);
        return MP_EPERM; /* not from our owner: refused */
    }
    *chan = fds[0];
    return 0;
}

/* The kernel's struct sigaction, for a default disposition. */
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

/* A new child's first steps: drop the server's descriptors and signal
 * state, then read its preparation data.  Raw calls in MP__CHILD_TEXT, as
 * the fork child's: every library page a fresh child touches is a fault. */
MP__CHILD_TEXT _Noreturn static void child_start(int chan, int ctl, int sfd, int owner,
                                                 const sigset_t *old, pid_t server,
                                                 mp__prepmsg *m)
{
    mp__rawsys(SYS_close, ctl, 0, 0);
    mp__rawsys(SYS_close, sfd, 0, 0);
    mp__rawsys(SYS_close, owner, 0, 0);
    for (size_t i = 0; i < nkids; i++)
        mp__rawsys(SYS_close, kids[i].chan, 0, 0);
    static const struct kernel_sigaction dfl = {.handler = SIG_DFL};
    mp__rawsys4(SYS_rt_sigaction, SIGCHLD, (long)&dfl, 0, sizeof dfl.mask);
    mp__rawsys4(SYS_rt_sigaction, SIGINT, (long)&dfl, 0, sizeof dfl.mask);
    mp__rawsys4(SYS_rt_sigprocmask, SIG_SETMASK, (long)old, 0, sizeof dfl.mask);
    mp__bootstrap(chan, server, m);
}

static void serve_request(int ctl, const uint8_t *token, int sfd, int owner, sigset_t *old)
{
    int chan;
    int err = mp__forkserver_recv_request(ctl, token, &chan);
    if (err == MP_EOF)
        _exit(0);
    if (err < 0)
        return;
    if (nkids == capkids) {
        size_t ncap = capkids ? capkids * 2 : 16;
        struct kid *k = realloc(kids, ncap * sizeof *k);
        if (k == NULL) {
            mp__sys_close(chan);
            return;
        }
        kids = k;
        capkids = ncap;
    }
    /* A requester writes a small prep before its request (popen_forkserver.c).
     * It is read here, where every page is warm, and the child finds it in
     * memory: a fresh child pays a fault for each page it touches first. */
    mp__prepmsg m, *got = NULL;
    int avail = 0;
    if (ioctl(chan, FIONREAD, &avail) == 0 && avail >= MP__PREP_HDR_SIZE) {
        (void)mp__prep_recv(chan, &m, (size_t)avail - MP__PREP_HDR_SIZE);
        got = &m; /* an error in it is the child's to report */
    }
    pid_t server = getpid();
    pid_t pid = mp__fork_lone();
    if (pid == 0)
        child_start(chan, ctl, sfd, owner, old, server, got);
    /* Let the child run first: what is left here (the prep's descriptors,
     * the pidfd, the reply, the next poll) would otherwise go before it on
     * this CPU, each page written a copy-on-write fault, while the
     * requester waits on the child.  Measured on 2 cores: a start+join
     * 10-15% faster. */
    if (pid > 0)
        sched_yield();
    if (got != NULL)
        mp__prepmsg_clear(got);
    if (pid < 0) {
        mp__sys_close(chan); /* the requester sees EOF */
        return;
    }
    uint8_t reply[4];
    put_u32(reply, (uint32_t)pid);
    int pidfd = mp__sys_pidfd_open(pid);
    if (pidfd >= 0) {
        mp__sys_send_fds(chan, reply, sizeof reply, &pidfd, 1);
        mp__sys_close(pidfd);
    }
    kids[nkids].pid = pid;
    kids[nkids].chan = chan;
    nkids++;
}

static void reap(int sfd)
{
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) > 0)
        ;
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0)
            return;
        for (size_t i = 0; i < nkids; i++) {
            if (kids[i].pid != pid)
                continue;
            uint8_t msg[4];
            put_u32(msg, (uint32_t)st);
            mp__sys_write_all(kids[i].chan, msg, sizeof msg);
            mp__sys_close(kids[i].chan);
            kids[i] = kids[--nkids];
            break;
        }
    }
}

int mp__forkserver_body_decode(mp__reader *r, size_t nfds, const uint8_t **token,
                               uint32_t *owner_i, uint32_t *ctl_i)
{
    size_t toklen;
    *token = mp__get_blob(r, &toklen);
    *owner_i = mp__get_u32(r);
    *ctl_i = mp__get_u32(r);
    if (r->err || toklen != MP__FORKSERVER_TOKEN || *owner_i >= nfds || *ctl_i >= nfds ||
        *owner_i == *ctl_i)
        return MP_EBADMSG;
    return 0;
}

_Noreturn void mp__forkserver_main(mp__reader *r, int *fds, size_t nfds)
{
    const uint8_t *token;
    uint32_t owner_i, ctl_i;
    if (mp__forkserver_body_decode(r, nfds, &token, &owner_i, &ctl_i) < 0)
        _exit(MP_EXIT_BOOTSTRAP);
    int owner = fds[owner_i], ctl = fds[ctl_i];
    for (size_t i = 0; i < nfds; i++)
        if (i != owner_i && i != ctl_i)
            mp__sys_close(fds[i]);
    prctl(PR_SET_NAME, "mp-forkserver");
    mp__init(); /* once here, not in every child */
    /* As Python's: a Ctrl-C meant for the program's process group leaves
     * the server (and the exit statuses it relays) alone. */
    signal(SIGINT, SIG_IGN);

    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old);
    int sfd = mp__sys_signalfd(&chld);
    if (sfd < 0)
        _exit(MP_EXIT_BOOTSTRAP);

    for (;;) {
        struct pollfd pf[3] = {
            {.fd = ctl, .events = POLLIN},
            {.fd = sfd, .events = POLLIN},
            {.fd = owner, .events = POLLIN},
        };
        if (poll(pf, 3, -1) < 0)
            continue; /* EINTR */
        if (pf[1].revents)
            reap(sfd);
        if (pf[2].revents)
            _exit(0); /* the owner is gone: daemonic children die with us */
        if (pf[0].revents & POLLIN)
            serve_request(ctl, token, sfd, owner, &old);
        else if (pf[0].revents & (POLLHUP | POLLERR))
            _exit(0);
    }
}
