/*
 * The resource tracker (Python's resource_tracker.py): it removes the named
 * shared memory segments the program created and never unlinked once every
 * process of the program is gone, however they ended (SIGKILL of the whole
 * process group included, and SIGKILL of every process of the program's
 * tree, found by parent pids as a test runner or supervisor finds them).
 *
 * One tracker serves a tree of processes.  The first process without one
 * that creates a tracked segment starts it: a fresh execution of this
 * program (role TRACKER), spawned as its child so that the spawn
 * bootstrap's channel check (the socket pair's maker is the parent) holds.
 * That process forks the tracker and exits at once: the tracker is
 * reparented to init, or to the nearest subreaper (PR_SET_CHILD_SUBREAPER)
 * above the starter, and is no descendant of the program.  It leads a
 * session and process group of its own, so a signal sent to the program's
 * group or terminal never reaches it either.  The tracker holds
 * one end of a SOCK_SEQPACKET socket pair; every process of the tree holds
 * the other: forked children inherit it, spawned and forkserver children
 * receive it in their preparation data (spawn.c).  Each command is one
 * message in Python's format, the name with its leading slash:
 *
 *     REGISTER:/psm_1234abcd:shared_memory\n
 *     UNREGISTER:/psm_1234abcd:shared_memory\n
 *
 * and two of our own, around the creation of a tracked segment, which is
 * made under a temporary name and then linked to its name
 * (shared_memory.c, create_tracked), so that no kill leaves a segment the
 * tracker cannot find:
 *
 *     CREATING:/mp-new-<32 hex>:/psm_1234abcd:shared_memory\n
 *     CREATED:/mp-new-<32 hex>:shared_memory\n
 *
 * A creation announced and never closed is undone at the end: the
 * temporary name is removed, and the final name too when it is the same
 * segment (same inode).
 *
 * When the last copy of the tree's end is closed -- every process has
 * exited or been killed -- the tracker reads end of file, unlinks what is
 * still registered and exits.  It holds nothing else of the program: its
 * stdin and stdout (and stderr unless the log level asks for warnings) are
 * /dev/null, so it never keeps a pipe of the program's open.
 *
 * Once detached and set up, the tracker sends a hello on its end: its pid
 * and a pidfd of itself (SCM_RIGHTS).  The starter waits for it (it also
 * proves the tracker runs), reaps the process it spawned and keeps the
 * pidfd.  At exit (mp__tracker_stop, the last step of mp__exit_cleanup) it
 * closes its end and waits on that pidfd, a bounded time, for the tracker
 * to finish: a program that ends normally leaves neither a process nor a
 * segment behind.  The tracker is not its child: init or the subreaper
 * reaps it (or the starter itself, when it is that subreaper).
 *
 * As in Python, a tracker belongs to the process that started it and to the
 * processes that process starts afterwards: a child that creates segments
 * while its parent has no tracker starts its own, which cleans up when that
 * child and its descendants are gone.
 */
#include "internal.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BODY_MAGIC 0x3154504dU /* "MPT1" */
#define MSG_MAX 512            /* Python's limit: one message, one write */
#define RTYPE "shared_memory"
#define NAME_MAX_LEN 251       /* "/" + 250 characters */
/* How long a process that started the tracker waits for it at exit.  It
 * normally ends within milliseconds; it runs on only while some other
 * process of the program (one the program did not join) still holds it. */
#define STOP_WAIT_S 5.0
/* How long the starter waits for the detached tracker's hello. */
#define HELLO_WAIT_S 30.0
#define HELLO_MAGIC 0x4854504dU /* "MPTH" */

/* This process's link to its tracker. */
static struct {
    pthread_mutex_t lock;
    int fd;       /* our end of the tracker's socket, -1: none */
    pid_t pid;    /* the tracker, when this process started it; else 0 */
    int pidfd;    /* its pidfd, likewise; else -1 */
} trk = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1, .pidfd = -1};

/* ---- the program's side ------------------------------------------------- */

/* fd and pidfd are read without the lock by mp__tracker_stop's fast path. */
static void set_fds(int fd, int pidfd)
{
    __atomic_store_n(&trk.fd, fd, __ATOMIC_RELAXED);
    __atomic_store_n(&trk.pidfd, pidfd, __ATOMIC_RELAXED);
}

/* Fork hook (process.c), with the lock held across the fork.  A forked
 * child keeps the socket (it is one more process of the program) but the
 * tracker is not its child to wait for. */
MP__CHILD_TEXT static void atfork_child(void)
{
    if (trk.pidfd >= 0)
        mp__rawsys(SYS_close, trk.pidfd, 0, 0);
    trk.pidfd = -1;
    trk.pid = 0;
}

/* Registered once this process has started a tracker, as its own
 * pthread_atfork handlers were. */
static const mp__hooks fork_hooks = {
    .slot = MP__HOOK_TRACKER,
    .held = &trk.lock,
    .child = atfork_child,
};

/* Registered once this process has a tracker's end, started or adopted:
 * without one the stop has nothing to do. */
static const mp__hooks stop_hooks = {.slot = MP__HOOK_TRACKER_STOP, .exit = mp__tracker_stop};

/* Wait up to @timeout for the tracker we started to end.  It is not our
 * child (init or a subreaper reaps it) unless this process is the
 * subreaper that adopted it: then reap it too.  Under trk.lock. */
static void reap_locked(double timeout)
{
    if (trk.pidfd < 0)
        return;
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    if (mp__sys_poll1(trk.pidfd, POLLIN, &d) == 1) {
        siginfo_t si;
        while (waitid((idtype_t)P_PIDFD, (id_t)trk.pidfd, &si, WEXITED | WNOHANG) < 0 &&
               errno == EINTR)
            ; /* ECHILD: not ours to reap */
        mp__log(MP_LOG_INFO, "resource tracker %d ended", (int)trk.pid);
    } else {
        mp__log(MP_LOG_WARNING,
                "resource tracker %d still runs: another process of the program holds it",
                (int)trk.pid);
    }
    mp__sys_close(trk.pidfd);
    set_fds(trk.fd, -1);
    trk.pid = 0;
}

/* The tracker's hello on our end: its pid and a pidfd of itself. */
static int await_hello(int sock, pid_t *pid, int *pidfd)
{
    mp__deadline d;
    mp__deadline_init(&d, HELLO_WAIT_S);
    int r = mp__sys_poll1(sock, POLLIN, &d);
    if (r <= 0)
        return r < 0 ? r : MP_ETIMEDOUT;
    uint8_t msg[8];
    int fds[1];
    size_t nfds = 0;
    int err = mp__sys_recv_fds(sock, msg, sizeof msg, fds, 1, &nfds);
    if (err < 0)
        return err; /* MP_EOF: it died before detaching */
    mp__reader rd;
    mp__reader_init(&rd, msg, sizeof msg);
    uint32_t magic = mp__get_u32(&rd);
    uint32_t p = mp__get_u32(&rd);
    if (rd.err || magic != HELLO_MAGIC || nfds != 1 || p == 0 || p > INT32_MAX) {
        for (size_t i = 0; i < nfds; i++)
            mp__sys_close(fds[i]);
        return MP_EBADMSG;
    }
    *pid = (pid_t)p;
    *pidfd = fds[0];
    return 0;
}

/* Start a tracker for this process and the children it starts from now on.
 * The spawned process detaches (resource_tracker.c's top comment): we reap
 * it at once and keep the pidfd the detached tracker sends us.  Under
 * trk.lock, with no tracker. */
static int start_locked(void)
{
    int sv[2];
    int err = mp__sys_socketpair(SOCK_SEQPACKET, sv);
    if (err < 0)
        return err;
    mp_buf body = MP_BUF_INIT;
    mp__fdvec fds = {.n = 0};
    int chan = -1, spfd = -1, pidfd = -1;
    pid_t sp = 0, pid = 0;
    err = mp__put_u32(&body, BODY_MAGIC);
    if (err == 0)
        err = mp__put_u8(&body, (uint8_t)mp__log_level);
    if (err == 0)
        err = mp__fdvec_add(&fds, sv[1]);
    if (err >= 0)
        err = mp__put_u32(&body, (uint32_t)err);
    if (err == 0)
        err = mp__spawn_exec_setsid(&chan, &sp, &spfd);
    if (err == 0) {
        err = mp__prep_send(chan, MP__ROLE_TRACKER, &body, &fds);
        mp__sys_close(chan);
    }
    mp_buf_free(&body);
    mp__sys_close(sv[1]); /* the tracker's end lives in the tracker only */
    if (err == 0)
        err = await_hello(sv[0], &pid, &pidfd);
    if (spfd >= 0) {
        /* The spawned process exits once it has forked the tracker; if it
         * is stuck (no hello), it cannot have detached anything: kill it. */
        if (err < 0)
            mp__sys_pidfd_send_signal(spfd, SIGKILL);
        siginfo_t si;
        while (waitid((idtype_t)P_PIDFD, (id_t)spfd, &si, WEXITED) < 0 && errno == EINTR)
            ;
        mp__sys_close(spfd);
    }
    if (err < 0) {
        mp__sys_close(sv[0]);
        mp__log(MP_LOG_ERROR, "cannot start the resource tracker: %s", mp_strerror(err));
        return err;
    }
    mp__hooks_add(&stop_hooks);
    mp__hooks_add(&fork_hooks);
    set_fds(sv[0], pidfd);
    trk.pid = pid;
    mp__log(MP_LOG_INFO, "resource tracker started, pid %d", (int)pid);
    return 0;
}

/* Forget a tracker that has died (its end is closed). Under trk.lock. */
static void drop_locked(void)
{
    mp__sys_close(trk.fd);
    set_fds(-1, trk.pidfd);
    reap_locked(1.0); /* dead already, or about to be */
}

static int send_locked(const char *cmd, const char *name)
{
    char msg[MSG_MAX + 1];
    int n = snprintf(msg, sizeof msg, "%s:%s:" RTYPE "\n", cmd, name);
    if (n < 0 || n > MSG_MAX)
        return MP_EINVAL;
    return mp__sys_write_all(trk.fd, msg, (size_t)n);
}

static bool tracker_gone(int err)
{
    return err == -EPIPE || err == -ECONNRESET || err == -ENOTCONN;
}

/* Send @cmd for @name, starting the tracker when there is none and
 * relaunching it when it has died. */
static int send_starting(const char *cmd, const char *name)
{
    pthread_mutex_lock(&trk.lock);
    int err = trk.fd < 0 ? start_locked() : 0;
    if (err == 0)
        err = send_locked(cmd, name);
    if (tracker_gone(err)) {
        /* Python relaunches too: what the dead one held is lost. */
        mp__log(MP_LOG_WARNING, "resource tracker died unexpectedly, relaunching; "
                                "some segments might leak");
        drop_locked();
        err = start_locked();
        if (err == 0)
            err = send_locked(cmd, name);
    }
    pthread_mutex_unlock(&trk.lock);
    return err;
}

int mp__tracker_register(const char *name)
{
    return send_starting("REGISTER", name);
}

int mp__tracker_creating(const char *tmp, const char *name)
{
    char both[2 * NAME_MAX_LEN + 2];
    int n = snprintf(both, sizeof both, "%s:%s", tmp, name);
    if (n < 0 || (size_t)n >= sizeof both)
        return MP_EINVAL;
    return send_starting("CREATING", both);
}

/* Send @cmd for @name when this process has a tracker. */
static int send_if_tracked(const char *cmd, const char *name)
{
    pthread_mutex_lock(&trk.lock);
    int err = trk.fd < 0 ? 0 : send_locked(cmd, name);
    if (tracker_gone(err)) {
        drop_locked(); /* a dead tracker holds nothing to unregister */
        err = 0;
    }
    pthread_mutex_unlock(&trk.lock);
    return err;
}

int mp__tracker_unregister(const char *name)
{
    return send_if_tracked("UNREGISTER", name);
}

int mp__tracker_created(const char *tmp)
{
    return send_if_tracked("CREATED", tmp);
}

int mp__tracker_fd(void)
{
    pthread_mutex_lock(&trk.lock);
    int fd = trk.fd;
    pthread_mutex_unlock(&trk.lock);
    return fd;
}

void mp__tracker_adopt(int fd)
{
    if (fd < 0)
        return;
    mp__hooks_add(&stop_hooks);
    pthread_mutex_lock(&trk.lock);
    mp__sys_close(trk.fd);
    set_fds(fd, trk.pidfd);
    pthread_mutex_unlock(&trk.lock);
}

pid_t mp__tracker_pid(void)
{
    pthread_mutex_lock(&trk.lock);
    pid_t pid = trk.pidfd >= 0 ? trk.pid : 0;
    pthread_mutex_unlock(&trk.lock);
    return pid;
}

MP__CHILD_TEXT void mp__tracker_stop(void)
{
    /* The common case, a process that never met a tracker: no lock. */
    if (__atomic_load_n(&trk.fd, __ATOMIC_RELAXED) < 0 &&
        __atomic_load_n(&trk.pidfd, __ATOMIC_RELAXED) < 0)
        return;
    pthread_mutex_lock(&trk.lock);
    mp__sys_close(trk.fd);
    set_fds(-1, trk.pidfd);
    reap_locked(STOP_WAIT_S);
    pthread_mutex_unlock(&trk.lock);
}

/* ---- the tracker -------------------------------------------------------- */

/* The registered names: a chained hash set (Python's tracker keeps a set). */
typedef struct entry {
    struct entry *next;
    char name[];
} entry;

typedef struct mp__tracker_registry {
    entry **slots;
    size_t cap, n; /* cap: 0 or a power of two */
} registry;

static size_t hash(const char *s)
{
    size_t h = 14695981039346656037u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static entry **slot_of(registry *g, const char *name)
{
    entry **pp = &g->slots[hash(name) & (g->cap - 1)];
    while (*pp != NULL && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    return pp;
}

static int grow(registry *g)
{
    size_t ncap = g->cap ? g->cap * 2 : 64;
    entry **ns = calloc(ncap, sizeof *ns);
    if (ns == NULL)
        return MP_ENOMEM;
    for (size_t i = 0; i < g->cap; i++) {
        for (entry *e = g->slots[i], *next; e != NULL; e = next) {
            next = e->next;
            entry **head = &ns[hash(e->name) & (ncap - 1)];
            e->next = *head;
            *head = e;
        }
    }
    free(g->slots);
    g->slots = ns;
    g->cap = ncap;
    return 0;
}

static void reg_remove(registry *g, const char *name);

/* Add @name; with @extra (a creation's final name), the entry holds it
 * after the name's NUL and replaces any entry of that name. */
static void reg_add(registry *g, const char *name, const char *extra)
{
    if (extra != NULL)
        reg_remove(g, name);
    if (g->n >= g->cap && grow(g) < 0) {
        mp__log(MP_LOG_ERROR, "resource_tracker: out of memory: %s will not be cleaned up", name);
        return;
    }
    entry **pp = slot_of(g, name);
    if (*pp != NULL)
        return; /* a set: registered already */
    size_t len = strlen(name) + 1;
    size_t xlen = extra != NULL ? strlen(extra) + 1 : 0;
    entry *e = malloc(sizeof *e + len + xlen);
    if (e == NULL) {
        mp__log(MP_LOG_ERROR, "resource_tracker: out of memory: %s will not be cleaned up", name);
        return;
    }
    memcpy(e->name, name, len);
    if (extra != NULL)
        memcpy(e->name + len, extra, xlen);
    e->next = NULL;
    *pp = e;
    g->n++;
}

static void reg_remove(registry *g, const char *name)
{
    entry **pp = g->cap ? slot_of(g, name) : NULL;
    if (pp == NULL || *pp == NULL) {
        /* unlinked by a process that did not create it, or twice; or a
         * creation's first announcement */
        mp__log(MP_LOG_DEBUG, "resource_tracker: %s was not registered", name);
        return;
    }
    entry *e = *pp;
    *pp = e->next;
    free(e);
    g->n--;
}

/* "/" and 1..250 characters, none of them a slash: all shm_unlink may get. */
static bool valid_name(const char *name)
{
    size_t len = strlen(name);
    return len >= 2 && len <= NAME_MAX_LEN && name[0] == '/' && strchr(name + 1, '/') == NULL;
}

/* One message "CMD:name:rtype\n".  The name may itself hold colons.
 * CREATING's name is "tmp:final": the temporary name holds none.  0, or
 * MP_EBADMSG for a malformed one (logged, ignored). */
int mp__tracker_handle(registry *g, registry *creating, char *msg, size_t len)
{
    if (len == 0 || msg[len - 1] != '\n')
        goto bad;
    msg[len - 1] = '\0';
    char *name = strchr(msg, ':');
    char *rtype = strrchr(msg, ':');
    if (name == NULL || rtype == name)
        goto bad;
    *name++ = '\0';
    *rtype++ = '\0';
    if (strcmp(msg, "PROBE") == 0)
        return 0;
    if (strcmp(rtype, RTYPE) != 0)
        goto bad;
    if (strcmp(msg, "CREATING") == 0) {
        char *final = strchr(name, ':');
        if (final == NULL)
            goto bad;
        *final++ = '\0';
        if (!valid_name(name) || !valid_name(final))
            goto bad;
        reg_add(creating, name, final);
        return 0;
    }
    if (!valid_name(name))
        goto bad;
    if (strcmp(msg, "REGISTER") == 0)
        reg_add(g, name, NULL);
    else if (strcmp(msg, "UNREGISTER") == 0)
        reg_remove(g, name);
    else if (strcmp(msg, "CREATED") == 0)
        reg_remove(creating, name);
    else
        goto bad;
    return 0;
bad:
    mp__log(MP_LOG_WARNING, "resource_tracker: malformed message ignored");
    return MP_EBADMSG;
}

registry *mp__tracker_registry_new(void)
{
    return calloc(1, sizeof(registry));
}

size_t mp__tracker_registry_each(const registry *g, void (*fn)(const char *name, void *arg),
                                 void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i < g->cap; i++)
        for (const entry *e = g->slots[i]; e != NULL; e = e->next, n++)
            fn(e->name, arg);
    return n;
}

void mp__tracker_registry_free(registry *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < g->cap; i++) {
        for (entry *e = g->slots[i], *next; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(g->slots);
    free(g);
}

/* Read commands until every process of the program has closed its end. */
static void serve(int sock, registry *g, registry *creating)
{
    for (;;) {
        char msg[MSG_MAX + 1];
        ssize_t n = recv(sock, msg, sizeof msg - 1, MSG_TRUNC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            mp__log(MP_LOG_ERROR, "resource_tracker: %s", strerror(errno));
            return;
        }
        if (n == 0)
            return; /* end of file: the program is gone */
        if ((size_t)n >= sizeof msg) {
            mp__log(MP_LOG_WARNING, "resource_tracker: overlong message ignored");
            continue;
        }
        (void)mp__tracker_handle(g, creating, msg, (size_t)n); /* malformed: logged, ignored */
    }
}

/* A creation that never finished (shared_memory.c, create_tracked): its
 * temporary name, if it was made, is removed, and so is the final name
 * when it is the same segment (linked there, not yet registered). */
static void clean_up_creating(registry *c)
{
    for (size_t i = 0; i < c->cap; i++) {
        for (entry *e = c->slots[i], *next; e != NULL; e = next) {
            next = e->next;
            const char *final = e->name + strlen(e->name) + 1;
            char tpath[sizeof MP__SHM_DIR + NAME_MAX_LEN], fpath[sizeof tpath];
            snprintf(tpath, sizeof tpath, MP__SHM_DIR "%s", e->name);
            snprintf(fpath, sizeof fpath, MP__SHM_DIR "%s", final);
            struct stat ts, fs;
            if (lstat(tpath, &ts) == 0) {
                if (ts.st_nlink > 1 && lstat(fpath, &fs) == 0 && fs.st_dev == ts.st_dev &&
                    fs.st_ino == ts.st_ino) {
                    mp__log(MP_LOG_INFO, "resource_tracker: unfinished creation of %s", final);
                    shm_unlink(final);
                }
                shm_unlink(e->name);
            }
            free(e);
        }
    }
    free(c->slots);
    c->slots = NULL;
    c->cap = c->n = 0;
}

static void clean_up(registry *g)
{
    if (g->n > 0)
        mp__log(MP_LOG_WARNING,
                "resource_tracker: There appear to be %zu leaked " RTYPE
                " objects to clean up at shutdown",
                g->n);
    for (size_t i = 0; i < g->cap; i++) {
        for (entry *e = g->slots[i], *next; e != NULL; e = next) {
            next = e->next;
            /* The program that created it is gone without unlinking it. */
            if (shm_unlink(e->name) != 0)
                mp__log(MP_LOG_WARNING, "resource_tracker: '%s': %s", e->name, strerror(errno));
            free(e);
        }
    }
    free(g->slots);
    g->slots = NULL;
    g->cap = g->n = 0;
}

/* Point a standard descriptor at /dev/null. */
static void to_devnull(int fd, int flags)
{
    int nul = mp__sys_open_devnull(flags);
    if (nul < 0)
        return;
    mp__rawsys(SYS_dup3, nul, fd, 0);
    mp__sys_close(nul);
}

_Noreturn void mp__tracker_main(mp__reader *r, int *fds, size_t nfds)
{
    uint32_t magic = mp__get_u32(r);
    uint8_t level = mp__get_u8(r);
    uint32_t index = mp__get_u32(r);
    if (r->err || magic != BODY_MAGIC || r->off != r->len || index >= nfds || fds[index] < 0)
        _exit(MP_EXIT_BOOTSTRAP);
    int sock = fds[index];
    for (size_t i = 0; i < nfds; i++)
        if (i != index)
            mp__sys_close(fds[i]);
    mp__me.proc.name = (char *)"ResourceTracker"; /* for the log lines */
    mp__log_level = level;
    /* Detach: the process the program spawned (its child, as the spawn
     * bootstrap's channel check requires) forks the tracker and exits, so
     * the tracker is reparented to init or the nearest subreaper and is no
     * descendant of the program: killing the program's process tree, found
     * by parent pids, leaves it running to clean up. */
    pid_t child = fork();
    if (child < 0) {
        mp__log(MP_LOG_ERROR, "resource_tracker: fork: %s", strerror(errno));
        _exit(MP_EXIT_BOOTSTRAP);
    }
    if (child > 0)
        _exit(0); /* the starter reaps us; the tracker is on its own */
    /* A session and process group of its own, led by itself: a signal sent
     * to the program's group or terminal never reaches it.  As Python's:
     * ^C and "killall" are for the program, not for us (we end when it has
     * ended). */
    setsid();
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    to_devnull(STDIN_FILENO, O_RDONLY);
    to_devnull(STDOUT_FILENO, O_WRONLY);
    if (level < MP_LOG_WARNING)
        to_devnull(STDERR_FILENO, O_WRONLY); /* nothing to say: keep no pipe open */
    prctl(PR_SET_NAME, "mp-tracker"); /* once named, it is set up */
    /* Hello to the starter: our pid and a pidfd of ourselves, by which it
     * waits for us at its exit (we are not its child). */
    int self = mp__sys_pidfd_open(getpid());
    uint32_t hello[2] = {htole32(HELLO_MAGIC), htole32((uint32_t)getpid())};
    if (self < 0 || mp__sys_send_fds(sock, hello, sizeof hello, &self, 1) < 0)
        _exit(MP_EXIT_BOOTSTRAP); /* the starter sees end of file */
    mp__sys_close(self);

    registry g = {0}, creating = {0};
    serve(sock, &g, &creating);
    clean_up_creating(&creating);
    clean_up(&g);
    mp__log(MP_LOG_DEBUG, "resource_tracker: exiting");
    _exit(0);
}
