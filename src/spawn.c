/*
 * The child side of spawn and forkserver: the preparation data a parent
 * sends, the bootstrap that runs before main(), and the exec itself.
 *
 * A prep message on a stream socket:
 *   header  u32 magic "MPH1", u32 role, u64 body length, u32 fd count
 *           (one sendmsg, the descriptors ride along as SCM_RIGHTS)
 *   body    role PROCESS: u32 "MPP1", str name, str ident, u8 daemon,
 *           blob authkey, u32 parent pid, str parent name, u32 direct
 *           parent (0: none), str start method ("" none), u8 log level,
 *           u32 index of the parent's pidfd, u32 index of the resource
 *           tracker's socket (NO_FD: none), function reference, mp_args.
 *           role FORKSERVER: see forkserver.c; TRACKER: resource_tracker.c.
 *
 * The environment marker MULTIPROC_SPAWN=<fd> is a claim anyone can make,
 * so the bootstrap (mp_main_hook, also run by the constructor) acts on it
 * only after the kernel has vouched for the descriptor (channel_check): one
 * end of a stream socket pair made by this process's parent as the same
 * user.  Otherwise it drops the marker, leaves the descriptor alone and
 * main() runs.  A set-user-ID program (AT_SECURE) ignores the marker.
 */
#include "internal.h"

#include <limits.h>
#include <poll.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define HDR_MAGIC 0x3148504dU  /* "MPH1" */
#define PREP_MAGIC 0x3150504dU /* "MPP1" */
#define HDR_SIZE MP__PREP_HDR_SIZE
#define PREP_MAX ((uint64_t)1 << 40)
#define CHILD_FD 3
#define ENV_MARKER "MULTIPROC_SPAWN"
#define NO_FD 0xffffffffU

extern char **environ;

int mp__prep_encode(const mp_process *p, mp_buf *out, mp__fdvec *fds)
{
    int self = mp__self_pidfd();
    if (self < 0)
        return self;
    pid_t me = getpid();
    /* As Python: starting a process fixes this process's default, and the
     * child reports the method it was started with. */
    const char *method = mp_get_start_method(false);
    if (p->ops != NULL)
        method = p->ops->method;
    int err = mp__put_u32(out, PREP_MAGIC);
    if (err == 0)
        err = mp__put_str(out, p->name);
    if (err == 0)
        err = mp__put_str(out, p->ident);
    if (err == 0)
        err = mp__put_u8(out, p->daemon);
    if (err == 0)
        err = mp__put_blob(out, p->authkey, p->authkey_len);
    if (err == 0)
        err = mp__put_u32(out, (uint32_t)me);
    if (err == 0)
        err = mp__put_str(out, mp__me.proc.name);
    if (err == 0) /* PR_SET_PDEATHSIG follows the thread that forks */
        err = mp__put_u32(out, gettid() == me ? (uint32_t)me : 0);
    if (err == 0)
        err = mp__put_str(out, method ? method : "");
    if (err == 0)
        err = mp__put_u8(out, (uint8_t)mp__log_level);
    if (err == 0) {
        err = mp__fdvec_add(fds, self);
        if (err >= 0)
            err = mp__put_u32(out, (uint32_t)err);
    }
    if (err == 0) { /* the child is one more process of this program */
        int tracker = mp__tracker_fd();
        err = tracker < 0 ? 0 : mp__fdvec_add(fds, tracker);
        if (err >= 0)
            err = mp__put_u32(out, tracker < 0 ? NO_FD : (uint32_t)err);
    }
    if (err == 0)
        err = mp__funcref_encode((const void *)p->target, out);
    if (err == 0)
        err = mp__args_encode(p->args, out, fds, MP__WIRE_CHILD);
    return err;
}

int mp__prep_send(int sock, uint32_t role, const mp_buf *body, const mp__fdvec *fds)
{
    mp_buf hdr = MP_BUF_INIT;
    uint8_t space[HDR_SIZE];
    hdr.data = space;
    hdr.cap = sizeof space;
    int err = mp__put_u32(&hdr, HDR_MAGIC);
    if (err == 0)
        err = mp__put_u32(&hdr, role);
    if (err == 0)
        err = mp__put_u64(&hdr, body->len);
    if (err == 0)
        err = mp__put_u32(&hdr, (uint32_t)fds->n);
    if (err == 0)
        err = mp__sys_send_fds(sock, space, HDR_SIZE, fds->fds, fds->n);
    if (err == 0 && body->len > 0)
        err = mp__sys_write_all(sock, body->data, body->len);
    return err;
}

_Noreturn static void bootstrap_fail(const char *what, int err)
{
    char line[600];
    int n = snprintf(line, sizeof line, "multiproc: child %d cannot start: %s%s%s\n",
                     (int)getpid(), what, err ? ": " : "", err ? mp_strerror(err) : "");
    if (n > (int)sizeof line - 1)
        n = (int)sizeof line - 1;
    (void)!write(STDERR_FILENO, line, (size_t)n);
    _exit(MP_EXIT_BOOTSTRAP);
}

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mp__sys_close(fds[i]);
}

static int bad_prep(char *why, size_t whylen)
{
    snprintf(why, whylen, "bad preparation data");
    return MP_EBADMSG;
}

int mp__prep_decode(mp__reader *r, int *fds, size_t nfds, mp__prep *out, char *why,
                    size_t whylen)
{
    mp_process *p = &out->proc;
    memset(out, 0, sizeof *out);
    p->kind = MP__PROC_CHILD;
    p->pidfd = p->status_fd = out->parent_pidfd = out->tracker_fd = -1;
    /* Text is formatted on failure only: in a forked child each library
     * page first touched costs a fault (see MP__CHILD_TEXT). */
    if (mp__get_u32(r) != PREP_MAGIC)
        return bad_prep(why, whylen);
    const char *name = mp__get_str(r);
    const char *ident = mp__get_str(r);
    p->daemon = mp__get_u8(r) != 0;
    size_t keylen;
    const void *key = mp__get_blob(r, &keylen);
    out->parent_pid = (pid_t)mp__get_u32(r);
    out->parent_name = mp__get_str(r);
    out->direct_parent = (pid_t)mp__get_u32(r);
    out->method = mp__get_str(r);
    out->log_level = mp__get_u8(r);
    uint32_t pfd_index = mp__get_u32(r);
    uint32_t trk_index = mp__get_u32(r);
    if (r->err || keylen > MP__AUTHKEY_MAX || strlen(ident) >= sizeof p->ident ||
        pfd_index >= nfds || fds[pfd_index] < 0 ||
        (trk_index != NO_FD && (trk_index >= nfds || trk_index == pfd_index || fds[trk_index] < 0)))
        return bad_prep(why, whylen);
    void *fn;
    int err = mp__funcref_decode(r, true, &fn, why, whylen);
    if (err < 0)
        return err;
    p->target = (mp_target_fn)fn;
    out->parent_pidfd = fds[pfd_index];
    fds[pfd_index] = -1;
    if (trk_index != NO_FD) {
        out->tracker_fd = fds[trk_index];
        fds[trk_index] = -1;
    }
    err = mp__args_decode(r, fds, nfds, MP__WIRE_CHILD, &p->args);
    if (err == 0 && r->off != r->len)
        err = MP_EBADMSG; /* trailing garbage */
    if (err < 0) {
        snprintf(why, whylen, "bad arguments: %s", mp_strerror(err));
        mp__prep_clear(out);
        return err;
    }
    p->name = (char *)name;
    strcpy(p->ident, ident);
    memcpy(p->authkey, key, keylen);
    p->authkey_len = keylen;
    return 0;
}

void mp__prep_clear(mp__prep *prep)
{
    mp_args_free(prep->proc.args);
    prep->proc.args = NULL;
    prep->proc.name = NULL; /* the reader's */
    mp__sys_close(prep->parent_pidfd);
    prep->parent_pidfd = -1;
    mp__sys_close(prep->tracker_fd);
    prep->tracker_fd = -1;
}

/* Decode a PROCESS body and become that process. */
_Noreturn static void run_process(mp__reader *r, int *fds, size_t nfds, pid_t direct_override)
{
    mp__prep prep;
    char why[400];
    int err = mp__prep_decode(r, fds, nfds, &prep, why, sizeof why);
    close_fds(fds, nfds); /* whatever the message did not use */
    if (err < 0)
        bootstrap_fail(why, 0);
    mp__init();
    mp__tracker_adopt(prep.tracker_fd);
    mp__log_level = prep.log_level;
    mp__context_inherit(prep.method);
    mp__child_run(&prep.proc, prep.parent_pid, prep.parent_name, prep.parent_pidfd,
                  direct_override ? direct_override : prep.direct_parent);
}

int mp__prep_header_decode(const uint8_t *hdr, size_t nfds, uint32_t *role, uint64_t *len)
{
    mp__reader r;
    mp__reader_init(&r, hdr, HDR_SIZE);
    uint32_t magic = mp__get_u32(&r);
    *role = mp__get_u32(&r);
    *len = mp__get_u64(&r);
    uint32_t want = mp__get_u32(&r);
    if (magic != HDR_MAGIC || want != nfds || *len > PREP_MAX)
        return MP_EBADMSG;
    return 0;
}

/* The body of @m from @sock. */
static int recv_body(int sock, mp__prepmsg *m)
{
    int err = 0;
    if ((m->body = malloc(m->len ? (size_t)m->len : 1)) == NULL) {
        m->why = "out of memory";
        err = MP_ENOMEM;
    } else if ((err = mp__sys_read_all(sock, m->body, (size_t)m->len)) < 0) {
        m->why = "short preparation data";
    }
    return m->err = err;
}

int mp__prep_recv(int sock, mp__prepmsg *m, size_t body_max)
{
    uint8_t hdr[HDR_SIZE];
    m->body = NULL;
    m->nfds = 0;
    m->err = 0;
    m->why = NULL;
    int err = mp__sys_recv_fds(sock, hdr, sizeof hdr, m->fds, MP__ARRAY_LEN(m->fds), &m->nfds);
    if (err < 0) {
        m->why = "no preparation data from the parent";
        return m->err = err;
    }
    if (mp__prep_header_decode(hdr, m->nfds, &m->role, &m->len) < 0) {
        m->why = "bad preparation header";
        return m->err = MP_EBADMSG;
    }
    return m->len > body_max ? 0 : recv_body(sock, m); /* else left to the child */
}

void mp__prepmsg_clear(mp__prepmsg *m)
{
    close_fds(m->fds, m->nfds);
    m->nfds = 0;
    free(m->body);
    m->body = NULL;
}

_Noreturn void mp__bootstrap(int sock, pid_t direct_parent, mp__prepmsg *m)
{
    mp__prepmsg own;
    if (m == NULL) {
        m = &own;
        (void)mp__prep_recv(sock, m, PREP_MAX);
    } else if (m->err == 0 && m->body == NULL) {
        (void)recv_body(sock, m);
    }
    if (m->err < 0)
        bootstrap_fail(m->why, m->err == MP_ENOMEM ? 0 : m->err);
    mp__rawsys(SYS_close, sock, 0, 0);
    mp__reader r;
    mp__reader_init(&r, m->body, (size_t)m->len);
    /* the body stays allocated: strings point into it for the process's life */
    if (m->role == MP__ROLE_PROCESS)
        run_process(&r, m->fds, m->nfds, direct_parent);
    if (m->role == MP__ROLE_FORKSERVER)
        mp__forkserver_main(&r, m->fds, m->nfds);
    if (m->role == MP__ROLE_TRACKER)
        mp__tracker_main(&r, m->fds, m->nfds);
    bootstrap_fail("unknown role", MP_EBADMSG);
}

/* What the descriptor a marker names turned out to be. */
enum channel {
    CHANNEL_FOREIGN,  /* not ours: leave it alone and let main() run */
    CHANNEL_OURS,     /* the channel our parent made for us */
    CHANNEL_ORPHANED, /* ours, but its maker exited before we started */
};

/* The marker's descriptor: decimal digits only, and not stdio. */
int mp__spawn_marker_fd(const char *v)
{
    long fd = 0;
    if (*v == '\0')
        return -1;
    for (; *v != '\0'; v++) {
        if (*v < '0' || *v > '9' || fd > INT_MAX / 10)
            return -1;
        fd = fd * 10 + (*v - '0');
    }
    return fd > STDERR_FILENO && fd <= INT_MAX ? (int)fd : -1;
}

/*
 * Is @fd the channel spawn_exec made for this process?  That is one end of
 * an AF_UNIX SOCK_STREAM socket pair, and the kernel recorded who called
 * socketpair(): the parent, as the same user.  Only metadata is looked at;
 * nothing is read, nothing closed.  Five system calls on the normal path.
 *
 * Every way the library starts a fresh execution passes this check with
 * "the maker is our parent": spawn_exec calls socketpair() and then
 * posix_spawn() from the same process, so the peer's pid (a process id,
 * whichever thread made the pair) is the new process's parent.  That holds
 * for the spawn start method, for the fork server (spawned by the process
 * that first needs it) and for the resource tracker (POSIX_SPAWN_SETSID
 * makes a new session in the child itself, and the double fork that
 * detaches the tracker happens after this check, in the spawned child:
 * resource_tracker.c).
 * Forkserver children are forked, not executed: they are handed their
 * channel by mp__bootstrap directly and never come here.
 *
 * One legitimate child fails "the maker is our parent": one whose parent
 * died before this check and that was reparented (to init or a subreaper).
 * Its channel cannot be verified any more, and running the program's main()
 * in a process that was meant to be a child is no way out either: if the
 * maker has exited, the verdict is CHANNEL_ORPHANED and the caller exits
 * without touching the descriptor.  A maker that is alive but not our
 * parent is CHANNEL_FOREIGN.
 */
static enum channel channel_check(int fd)
{
    struct sockaddr_un peer;
    socklen_t alen = sizeof peer;
    /* A connected AF_UNIX socket whose peer has no address: a socket pair
     * (not a pipe or file -- ENOTSOCK --, not a listener or an unconnected
     * socket -- ENOTCONN --, not a connection to a named listener). */
    if (getpeername(fd, (struct sockaddr *)&peer, &alen) != 0 || peer.sun_family != AF_UNIX ||
        alen != offsetof(struct sockaddr_un, sun_path))
        return CHANNEL_FOREIGN;
    int type;
    socklen_t tlen = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM)
        return CHANNEL_FOREIGN;
    struct ucred cred;
    socklen_t clen = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 || clen != sizeof cred)
        return CHANNEL_FOREIGN;
    /* uid: the maker's effective uid when it called socketpair().  pid 0:
     * no maker, or one outside our pid namespace (whose getppid() is 0). */
    if (cred.uid != geteuid() || cred.pid <= 0)
        return CHANNEL_FOREIGN;
    if (cred.pid == getppid())
        return CHANNEL_OURS;
    /* Not our parent.  Has the maker exited?  A zombie has: its pidfd
     * polls readable.  The short wait covers the instant in which the
     * exiting parent has handed us over but is not marked exited yet. */
    int pidfd = mp__sys_pidfd_open(cred.pid);
    if (pidfd == -ESRCH)
        return CHANNEL_ORPHANED;
    if (pidfd < 0)
        return CHANNEL_FOREIGN;
    mp__deadline d;
    mp__deadline_init(&d, 0.01);
    int r = mp__sys_poll1(pidfd, POLLIN, &d);
    mp__sys_close(pidfd);
    return r == 1 ? CHANNEL_ORPHANED : CHANNEL_FOREIGN;
}

/*
 * The bootstrap entry, from the constructor or mp_main_hook().  A marker
 * this process cannot trust is dropped from the environment and main()
 * runs as if it had never been set.
 */
void mp_main_hook(void)
{
    /* Set-user-ID, set-group-ID or file capabilities: whoever ran us chose
     * the environment and the descriptors.  The marker is not ours to read,
     * nor to remove. */
    if (getauxval(AT_SECURE) != 0)
        return;
    const char *v = getenv(ENV_MARKER);
    if (v == NULL)
        return;
    int fd = mp__spawn_marker_fd(v);
    enum channel c = fd < 0 ? CHANNEL_FOREIGN : channel_check(fd);
    unsetenv(ENV_MARKER);
    if (c == CHANNEL_ORPHANED)
        bootstrap_fail("the parent exited before the child started", 0);
    if (c == CHANNEL_OURS)
        mp__bootstrap(fd, 0, NULL);
}

/* Before main(): a spawned child never runs the program's main. */
__attribute__((constructor)) static void spawn_constructor(void)
{
    mp_main_hook();
}

static int spawn_exec(int *sock, pid_t *pid, int *pidfd, short flags)
{
    /* A set-user-ID program's fresh runs are set-user-ID runs too, whose
     * bootstrap ignores the marker (mp_main_hook): each would run main()
     * instead of its orders.  Only the fork start method works there. */
    if (getauxval(AT_SECURE) != 0)
        return MP_EPERM;
    int sv[2];
    int err = mp__sys_socketpair(SOCK_STREAM, sv);
    if (err < 0)
        return err;
    /* Environment: ours plus the marker (an old marker dropped). */
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **envp = malloc((n + 2) * sizeof *envp);
    if (envp == NULL) {
        err = MP_ENOMEM;
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], ENV_MARKER "=", sizeof ENV_MARKER) != 0)
            envp[k++] = environ[i];
    char marker[] = ENV_MARKER "=3";
    envp[k++] = marker;
    envp[k] = NULL;
    char *argv[] = {program_invocation_name, NULL};

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    /* The child gets only stdio and its channel (as fd 3). */
    posix_spawn_file_actions_adddup2(&fa, sv[1], CHILD_FD);
    posix_spawn_file_actions_addclosefrom_np(&fa, CHILD_FD + 1);
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGCHLD); /* an ignored SIGCHLD would break its waits */
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &def);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | flags);
    int rc = posix_spawn(pid, "/proc/self/exe", &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    free(envp);
    if (rc != 0) {
        err = -rc;
        goto out;
    }
    *pidfd = mp__sys_pidfd_open(*pid);
    if (*pidfd < 0) {
        err = *pidfd;
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
        goto out;
    }
    *sock = sv[0];
    sv[0] = -1;
out:
    mp__sys_close(sv[0]);
    mp__sys_close(sv[1]);
    return err;
}

int mp__spawn_exec(int *sock, pid_t *pid, int *pidfd)
{
    return spawn_exec(sock, pid, pidfd, 0);
}

int mp__spawn_exec_setsid(int *sock, pid_t *pid, int *pidfd)
{
    return spawn_exec(sock, pid, pidfd, POSIX_SPAWN_SETSID);
}
