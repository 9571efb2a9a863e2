/*
 * mp_process: the process object, the current and parent process, the
 * children list, exit handling (Python's process.py and util._exit_function).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
/* Set by mp__fork() around fork(): the child keeps the parent's pidfd. */
static __thread bool in_mp_fork __attribute__((tls_model("initial-exec")));

static void list_add(mp_process *p)
{
    mp__list_add_tail(&mp__me.children, &p->link);
}

static void list_del(mp_process *p)
{
    mp__list_del(&p->link);
}

static mp_process *from_link(mp__link *l)
{
    return (mp_process *)l; /* the link is the first member */
}

/* ---- fork and exit hooks ------------------------------------------------- */

/*
 * What runs around every fork() (ours or the program's own) and at exit,
 * in this order.  Each hook is registered by its module (mp__hooks_add):
 *
 *   slot            registered                         prepare parent child exit
 *   PROCESS         always (here)                         2      3      1    (*)
 *   FORKSERVER      first request to the server           -      -      2     1
 *   HEAP            first arena block made or received    3      2      3     -
 *   PROXIES         first proxy made                      4      1      4     -
 *   TID             first thread id cached                -      -      5     -
 *   TRACKER         first tracker started                 1      4      6     -
 *   TRACKER_STOP    first tracker started or adopted      -      -      -     2
 *
 * Parent is prepare reversed: each lock taken before the fork is released
 * after it in the reverse order.  The tracker's handlers come first before
 * and last after because they were once its own pthread_atfork handlers,
 * registered after process.c's (pthread_atfork runs prepare handlers last
 * registered first).  (*) At exit process.c first terminates its daemonic
 * children and joins all, then runs the exit hooks (the tracker last: it
 * cleans up once the others are gone), then closes its own pidfd; a process
 * that never started a child or server runs the TRACKER_STOP hook alone.
 */
static const uint8_t prepare_order[] = {MP__HOOK_TRACKER, MP__HOOK_PROCESS, MP__HOOK_HEAP,
                                        MP__HOOK_PROXIES};
static const uint8_t parent_order[] = {MP__HOOK_PROXIES, MP__HOOK_HEAP, MP__HOOK_PROCESS,
                                       MP__HOOK_TRACKER};
static const uint8_t child_order[] = {MP__HOOK_PROCESS, MP__HOOK_FORKSERVER, MP__HOOK_HEAP,
                                      MP__HOOK_PROXIES,  MP__HOOK_TID,        MP__HOOK_TRACKER};
static const uint8_t exit_order[] = {MP__HOOK_FORKSERVER, MP__HOOK_TRACKER_STOP};
static const uint8_t exit_idle_order[] = {MP__HOOK_TRACKER_STOP};

/* The child owns none of the parent's children, fork server or cached
 * pidfd. */
MP__CHILD_TEXT static void process_child(void)
{
    mp__list_init(&mp__me.children);
    mp__me.counter = 0;
    mp__me.pid = (pid_t)mp__rawsys(SYS_getpid, 0, 0, 0);
    if (!in_mp_fork && mp__me.pidfd >= 0)
        mp__rawsys(SYS_close, mp__me.pidfd, 0, 0); /* ours is kept as the parent's pidfd */
    mp__me.pidfd = -1;
}

static const mp__hooks process_hooks = {
    .slot = MP__HOOK_PROCESS,
    .held = &mp__me.lock,
    .child = process_child,
};

/* A registered slot never changes (a forked child inherits the table). */
static const mp__hooks *hooks[MP__HOOK_NSLOTS] = {[MP__HOOK_PROCESS] = &process_hooks};
_Static_assert(MP__HOOK_NSLOTS <= 32, "a fork's slots fit one word");
/* The slots this thread's fork ran prepare hooks for: the same thread runs
 * the parent or child hooks, of these slots only. */
static __thread uint32_t fork_slots __attribute__((tls_model("initial-exec")));

void mp__hooks_add(const mp__hooks *h)
{
    if ((unsigned)h->slot >= MP__HOOK_NSLOTS)
        return;
    const mp__hooks *none = NULL;
    if (__atomic_load_n(&hooks[h->slot], __ATOMIC_ACQUIRE) == h ||
        __atomic_compare_exchange_n(&hooks[h->slot], &none, h, false, __ATOMIC_RELEASE,
                                    __ATOMIC_RELAXED))
        return;
    mp__log(MP_LOG_ERROR, "fork/exit hook slot %d taken twice", (int)h->slot);
}

/* PHASE_CHILD_LONE: the child hooks after mp__fork_lone, no lock held. */
enum hook_phase { PHASE_PREPARE, PHASE_PARENT, PHASE_CHILD, PHASE_CHILD_LONE, PHASE_EXIT };

MP__CHILD_TEXT static void run_hooks(const uint8_t *order, size_t n, uint32_t slots,
                                     enum hook_phase phase)
{
    for (size_t i = 0; i < n; i++) {
        if (!(slots & (UINT32_C(1) << order[i])))
            continue;
        const mp__hooks *h = __atomic_load_n(&hooks[order[i]], __ATOMIC_ACQUIRE);
        void (*fn)(void) = phase == PHASE_PREPARE  ? h->prepare
                           : phase == PHASE_PARENT ? h->parent
                           : phase == PHASE_EXIT   ? h->exit
                                                   : h->child;
        if (h->held != NULL && phase == PHASE_PREPARE)
            pthread_mutex_lock(h->held);
        if (h->held != NULL && phase == PHASE_CHILD)
            *h->held = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
        if (fn != NULL)
            fn();
        if (h->held != NULL && phase == PHASE_PARENT)
            pthread_mutex_unlock(h->held);
    }
}

/* The slots registered now. */
MP__CHILD_TEXT static uint32_t registered(void)
{
    uint32_t slots = 0;
    for (unsigned i = 0; i < MP__HOOK_NSLOTS; i++)
        if (__atomic_load_n(&hooks[i], __ATOMIC_ACQUIRE) != NULL)
            slots |= UINT32_C(1) << i;
    return slots;
}

static void atfork_prepare(void)
{
    fork_slots = registered();
    run_hooks(prepare_order, MP__ARRAY_LEN(prepare_order), fork_slots, PHASE_PREPARE);
}

static void atfork_parent(void)
{
    run_hooks(parent_order, MP__ARRAY_LEN(parent_order), fork_slots, PHASE_PARENT);
}

MP__CHILD_TEXT static void atfork_child(void)
{
    run_hooks(child_order, MP__ARRAY_LEN(child_order), fork_slots, PHASE_CHILD);
}

static void exit_handler(void)
{
    mp__exit_cleanup();
}

static void do_init(void)
{
    mp_process *me = &mp__me.proc;
    me->kind = MP__PROC_SELF;
    me->name = (char *)"MainProcess"; /* never freed: own_name is NULL */
    me->pid = mp__me.pid = getpid();
    me->creator = me->pid;
    me->started = true;
    me->pidfd = me->status_fd = -1;
    me->authkey_len = 32;
    if (getrandom(me->authkey, 32, 0) != 32)
        mp__fatal("getrandom failed: %s", strerror(errno));
    mp__list_init(&mp__me.children);
    const char *lv = getenv("MULTIPROC_LOG");
    if (lv != NULL && *lv)
        mp_log_to_stderr(atoi(lv));
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    atexit(exit_handler);
}

static bool initialized;

void mp__init(void)
{
    if (__atomic_load_n(&initialized, __ATOMIC_ACQUIRE))
        return;
    pthread_once(&init_once, do_init);
    __atomic_store_n(&initialized, true, __ATOMIC_RELEASE);
}

int mp__self_pidfd(void)
{
    pthread_mutex_lock(&mp__me.lock);
    if (mp__me.pidfd < 0)
        mp__me.pidfd = mp__sys_pidfd_open(getpid());
    int fd = mp__me.pidfd;
    pthread_mutex_unlock(&mp__me.lock);
    return fd;
}

pid_t mp__fork(void)
{
    in_mp_fork = true;
    pid_t pid = fork();
    in_mp_fork = false;
    return pid;
}

/*
 * The fork server's fork.  The server is single-threaded and forks only
 * from its poll loop, never inside malloc, stdio or a hook, so no lock that
 * fork() takes and resets (glibc's and the hooks' .held ones) can be held:
 * glibc's _Fork skips them, and the parent runs nothing around it.  The
 * child runs the child hooks, which drop what the server's state says of
 * its own process, without touching the locks.  Each lock taken and reset
 * around a fork is a copy-on-write fault on both sides, and a fresh
 * child's faults are most of what it costs beyond the kernel's fork.
 */
pid_t mp__fork_lone(void)
{
    uint32_t slots = registered();
    pid_t pid = _Fork();
    if (pid == 0)
        run_hooks(child_order, MP__ARRAY_LEN(child_order), slots, PHASE_CHILD_LONE);
    return pid;
}

int mp__exitcode_from_status(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus))
        return -WTERMSIG(wstatus);
    return 255;
}

/* ---- the object --------------------------------------------------------- */

int mp_process_new(mp_process **out, mp_context *ctx, mp_target_fn target, const mp_args *args)
{
    *out = NULL;
    if (target == NULL)
        return MP_EINVAL;
    mp__init();
    mp_process *p = calloc(1, sizeof *p);
    if (p == NULL)
        return MP_ENOMEM;
    int err = mp__args_dup(args, &p->args);
    if (err < 0)
        goto fail;
    const mp_process *me = &mp__me.proc;
    pthread_mutex_lock(&mp__me.lock);
    unsigned n = ++mp__me.counter;
    pthread_mutex_unlock(&mp__me.lock);
    int k = snprintf(p->ident, sizeof p->ident, me->ident[0] ? "%s:%u" : "%s%u", me->ident, n);
    if (k < 0 || (size_t)k >= sizeof p->ident) {
        err = MP_EINVAL; /* nested too deep to name */
        goto fail;
    }
    if (asprintf(&p->name, "Process-%s", p->ident) < 0) {
        p->name = NULL;
        err = MP_ENOMEM;
        goto fail;
    }
    p->kind = MP__PROC_CHILD;
    p->ctx = ctx;
    p->target = target;
    p->daemon = me->daemon;
    memcpy(p->authkey, me->authkey, me->authkey_len);
    p->authkey_len = me->authkey_len;
    p->creator = mp__me.pid;
    p->pidfd = p->status_fd = -1;
    *out = p;
    return 0;
fail:
    mp_args_free(p->args);
    free(p->name);
    free(p);
    return err;
}

int mp_process_set_name(mp_process *p, const char *name)
{
    if (p == NULL || name == NULL || p->kind == MP__PROC_PARENT)
        return MP_EINVAL;
    char *s = strdup(name);
    if (s == NULL)
        return MP_ENOMEM;
    if (p->kind == MP__PROC_SELF) {
        /* this process's name may be borrowed (a literal, the object it was
         * started from): free only what an earlier call here allocated */
        prctl(PR_SET_NAME, s);
        free(mp__me.own_name);
        mp__me.own_name = s;
    } else {
        free(p->name);
    }
    p->name = s;
    return 0;
}

const char *mp_process_name(const mp_process *p)
{
    return p ? p->name : NULL;
}

int mp_process_set_daemon(mp_process *p, bool daemon)
{
    if (p == NULL || p->kind != MP__PROC_CHILD)
        return MP_EINVAL;
    if (p->started)
        return MP_EALREADY;
    p->daemon = daemon;
    return 0;
}

bool mp_process_daemon(const mp_process *p)
{
    return p && p->daemon;
}

int mp_process_set_authkey(mp_process *p, const void *key, size_t len)
{
    if (p == NULL || key == NULL || len == 0 || len > MP__AUTHKEY_MAX || p->kind == MP__PROC_PARENT)
        return MP_EINVAL;
    if (p->kind == MP__PROC_CHILD && p->started)
        return MP_EALREADY;
    memcpy(p->authkey, key, len);
    p->authkey_len = len;
    return 0;
}

const void *mp_process_authkey(const mp_process *p, size_t *len)
{
    if (p == NULL || p->authkey_len == 0) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = p->authkey_len;
    return p->authkey;
}

/*
 * Reap a direct child (fork or spawn) that has ended, under mp__me.lock:
 * whoever gets there first, a join or the cleanup at the next start,
 * records the exit code in the object for the others.  1 when reaped (now
 * or before), 0 while it runs, a negative code when it cannot be waited for.
 */
static int reap_locked(mp_process *p)
{
    if (p->reaped)
        return 1;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    while (waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG) != 0) {
        if (errno != EINTR)
            return -errno;
    }
    if (si.si_pid == 0)
        return 0;
    p->exitcode = si.si_code == CLD_EXITED ? si.si_status : -si.si_status;
    p->reaped = true;
    return 1;
}

int mp__popen_wait_pidfd(mp_process *p, const mp__deadline *d)
{
    int r = mp__sys_poll1(p->pidfd, POLLIN, d);
    if (r < 0)
        return r;
    if (r == 0)
        return MP_ETIMEDOUT;
    /* Readable: it has ended. */
    for (;;) {
        pthread_mutex_lock(&mp__me.lock);
        r = reap_locked(p);
        pthread_mutex_unlock(&mp__me.lock);
        if (r != 0)
            break;
        /* Ended but not yet ours to reap (a tracer is told first): wait
         * until it is, without reaping, then take it under the lock. */
        siginfo_t si;
        memset(&si, 0, sizeof si);
        while (waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOWAIT) != 0 &&
               errno == EINTR)
            ;
    }
    if (r == 1)
        return 0;
    /* ECHILD: reaped behind our back (SIGCHLD ignored): unknown status */
    mp__log(MP_LOG_WARNING, "%s: cannot reap pid %d: %s", p->name, (int)p->pid, strerror(-r));
    p->exitcode = 255;
    return 0;
}

/* Python's _cleanup(), run at each start: reap the fork and spawn children
 * that have ended, so none stays a zombie until joined.  Never blocks; the
 * exit code stays in the object.  Forkserver children are the server's. */
static void reap_ended_children(void)
{
    pthread_mutex_lock(&mp__me.lock);
    for (mp__link *c = mp__me.children.next, *next; c != &mp__me.children; c = next) {
        next = c->next;
        mp_process *p = from_link(c);
        if (p->ops != &mp__popen_forkserver && p->pidfd >= 0 && reap_locked(p) == 1)
            list_del(p);
    }
    pthread_mutex_unlock(&mp__me.lock);
}

static bool mine(const mp_process *p)
{
    return p->kind == MP__PROC_CHILD && p->creator == mp__me.pid;
}

int mp_process_start(mp_process *p)
{
    if (p == NULL || p->kind != MP__PROC_CHILD)
        return MP_EINVAL;
    if (p->closed)
        return MP_ECLOSED;
    if (p->started)
        return MP_EALREADY;
    if (!mine(p))
        return MP_EINVAL;
    if (mp__me.proc.daemon)
        return MP_EPERM; /* daemonic processes are not allowed to have children */
    mp_context *ctx = p->ctx ? p->ctx : mp__default_context();
    if (ctx->ops != &mp__popen_fork && mp__args_has_ptr(p->args))
        return MP_EINVAL; /* a pointer means nothing in a fresh program */
    reap_ended_children();
    p->ops = ctx->ops;
    int err = p->ops->start(p);
    if (err < 0) {
        p->ops = NULL;
        mp__log(MP_LOG_ERROR, "cannot start %s (%s): %s", p->name, ctx->method, mp_strerror(err));
        return err;
    }
    p->started = true;
    /* The child has its own copy now: let go of ours (Python deletes the
     * arguments at start), so descriptors in them close here at once. */
    mp_args_free(p->args);
    p->args = NULL;
    pthread_mutex_lock(&mp__me.lock);
    list_add(p);
    pthread_mutex_unlock(&mp__me.lock);
    mp__log(MP_LOG_INFO, "started %s (%s), pid %d", p->name, ctx->method, (int)p->pid);
    return 0;
}

/* Wait for a child of ours; 0 once it has ended (and is reaped). */
static int wait_child(mp_process *p, double timeout)
{
    if (p->ended)
        return 0;
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    int err = p->ops->wait(p, &d);
    if (err < 0)
        return err;
    p->ended = true;
    pthread_mutex_lock(&mp__me.lock);
    list_del(p);
    pthread_mutex_unlock(&mp__me.lock);
    mp__log(MP_LOG_INFO, "%s ended with exitcode %d", p->name, p->exitcode);
    return 0;
}

int mp_process_join(mp_process *p, double timeout)
{
    if (p == NULL)
        return MP_EINVAL;
    if (p->closed)
        return MP_ECLOSED;
    if (p->kind == MP__PROC_PARENT) {
        mp__deadline d;
        mp__deadline_init(&d, timeout);
        if (p->pidfd < 0)
            return 0;
        int r = mp__sys_poll1(p->pidfd, POLLIN, &d);
        return r < 0 ? r : r == 0 ? MP_ETIMEDOUT : 0;
    }
    if (p->kind == MP__PROC_SELF || !p->started || !mine(p))
        return MP_EINVAL; /* can only join a started child process */
    return wait_child(p, timeout);
}

bool mp_process_is_alive(mp_process *p)
{
    if (p == NULL || p->closed)
        return false;
    switch (p->kind) {
    case MP__PROC_SELF:
        return true;
    case MP__PROC_PARENT: {
        mp__deadline d;
        mp__deadline_init(&d, 0);
        return p->pidfd >= 0 && mp__sys_poll1(p->pidfd, POLLIN, &d) == 0;
    }
    case MP__PROC_CHILD:
        break;
    }
    if (!p->started || p->ended || !mine(p))
        return false;
    return wait_child(p, 0) == MP_ETIMEDOUT;
}

pid_t mp_process_pid(const mp_process *p)
{
    if (p == NULL || p->closed)
        return 0;
    if (p->kind == MP__PROC_SELF)
        return mp__me.pid;
    return p->pid;
}

int mp_process_exitcode(const mp_process *cp, int *code)
{
    mp_process *p = (mp_process *)cp;
    if (p == NULL)
        return MP_EINVAL;
    if (p->closed)
        return MP_ECLOSED;
    if (p->kind != MP__PROC_CHILD || !p->started)
        return MP_EAGAIN;
    if (!p->ended && (!mine(p) || wait_child(p, 0) < 0))
        return MP_EAGAIN;
    *code = p->exitcode;
    return 0;
}

int mp_process_sentinel(const mp_process *p)
{
    if (p == NULL || p->closed || p->pidfd < 0)
        return MP_EINVAL;
    return p->pidfd;
}

static int send_signal(mp_process *p, int sig)
{
    if (p == NULL || p->kind != MP__PROC_CHILD || !p->started)
        return MP_EINVAL;
    if (p->closed)
        return MP_ECLOSED;
    if (p->ended)
        return 0;
    int err = mp__sys_pidfd_send_signal(p->pidfd, sig);
    return err == -ESRCH ? 0 : err; /* it has just ended */
}

int mp_process_terminate(mp_process *p)
{
    return send_signal(p, SIGTERM);
}

int mp_process_kill(mp_process *p)
{
    return send_signal(p, SIGKILL);
}

static void release(mp_process *p)
{
    mp__sys_close(p->pidfd);
    mp__sys_close(p->status_fd);
    mp_args_free(p->args);
    free(p->name);
    free(p);
}

int mp_process_close(mp_process *p)
{
    if (p == NULL)
        return 0;
    if (p->kind != MP__PROC_CHILD)
        return MP_EINVAL;
    if (p->started && !p->ended && mine(p) && wait_child(p, 0) == MP_ETIMEDOUT)
        return MP_EBUSY;
    pthread_mutex_lock(&mp__me.lock);
    list_del(p);
    pthread_mutex_unlock(&mp__me.lock);
    release(p);
    return 0;
}

mp_process *mp_current_process(void)
{
    mp__init();
    return &mp__me.proc;
}

mp_process *mp_parent_process(void)
{
    mp__init();
    return mp__me.parent;
}

size_t mp_active_children(mp_process **out, size_t cap)
{
    mp__init();
    /* Reap what has ended, then report the rest.  wait_child takes the lock
     * itself, so walk a snapshot. */
    mp_process *snap[256];
    size_t count = 0;
    bool again = true;
    while (again) {
        size_t n = 0;
        again = false;
        pthread_mutex_lock(&mp__me.lock);
        for (mp__link *c = mp__me.children.next; c != &mp__me.children; c = c->next) {
            if (n == MP__ARRAY_LEN(snap)) {
                again = true;
                break;
            }
            snap[n++] = from_link(c);
        }
        pthread_mutex_unlock(&mp__me.lock);
        for (size_t i = 0; i < n; i++) {
            if (wait_child(snap[i], 0) == MP_ETIMEDOUT) {
                if (!again) {
                    if (out && count < cap)
                        out[count] = snap[i];
                    count++;
                }
            } else {
                again = again || n == MP__ARRAY_LEN(snap);
            }
        }
        if (again)
            count = 0;
    }
    return count;
}

/* ---- exit handling ------------------------------------------------------ */

MP__CHILD_TEXT void mp__exit_cleanup(void)
{
    if (mp__me.children.next == NULL)
        return; /* the library was never initialised in this process */
    if (mp__me.children.next == &mp__me.children && mp__me.fs.ctl < 0 && mp__me.fs.pidfd < 0 &&
        mp__me.pidfd < 0) {
        /* nothing else to do (and no lock to touch in a fresh child) */
        run_hooks(exit_idle_order, MP__ARRAY_LEN(exit_idle_order), registered(), PHASE_EXIT);
        return;
    }
    /* Python's _exit_function: terminate daemonic children, join all. */
    pthread_mutex_lock(&mp__me.lock);
    for (mp__link *l = mp__me.children.next; l != &mp__me.children; l = l->next) {
        mp_process *c = from_link(l);
        if (c->daemon && !c->ended)
            mp__sys_pidfd_send_signal(c->pidfd, SIGTERM);
    }
    pthread_mutex_unlock(&mp__me.lock);
    for (;;) {
        pthread_mutex_lock(&mp__me.lock);
        mp__link *l = mp__me.children.next;
        pthread_mutex_unlock(&mp__me.lock);
        if (l == &mp__me.children)
            break;
        mp_process *c = from_link(l);
        mp__log(MP_LOG_INFO, "joining %s at exit", c->name);
        if (wait_child(c, MP_FOREVER) < 0) {
            pthread_mutex_lock(&mp__me.lock);
            list_del(c);
            pthread_mutex_unlock(&mp__me.lock);
        }
    }
    run_hooks(exit_order, MP__ARRAY_LEN(exit_order), registered(), PHASE_EXIT);
    pthread_mutex_lock(&mp__me.lock);
    mp__sys_close(mp__me.pidfd);
    mp__me.pidfd = -1;
    pthread_mutex_unlock(&mp__me.lock);
}

static inline bool pending(FILE *f)
{
#ifdef __GLIBC__
    return f->_IO_write_ptr > f->_IO_write_base; /* what __fpending computes */
#else
    return __fpending(f) > 0;
#endif
}

MP__CHILD_TEXT void mp__flush_stdio(void)
{
    if (pending(stdout))
        fflush(stdout);
    if (pending(stderr))
        fflush(stderr);
}

MP__CHILD_TEXT _Noreturn void mp__child_exit(int code)
{
    mp__log(MP_LOG_INFO, "process exiting with exitcode %d", code & 0xff);
    mp__exit_cleanup();
    mp__flush_stdio();
    for (;;)
        mp__rawsys(SYS_exit_group, code, 0, 0);
}

static void *watch_parent(void *arg)
{
    struct pollfd pfd = {.fd = (int)(intptr_t)arg, .events = POLLIN};
    while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
        ;
    kill(getpid(), SIGKILL); /* a daemonic child dies with its parent */
    return NULL;
}

MP__CHILD_TEXT _Noreturn void mp__child_run(mp_process *p, pid_t parent_pid,
                                            const char *parent_name, int parent_pidfd,
                                            pid_t direct_parent)
{
    mp__init();
    mp_process *me = &mp__me.proc;
    /* No allocation here: the parent's name string is the one this process
     * inherited (fork) or received, and the parent object is static. */
    mp_process *parent = &mp__me.parent_storage;
    parent->kind = MP__PROC_PARENT;
    parent->pid = parent_pid;
    parent->name = (char *)parent_name;
    parent->pidfd = parent_pidfd;
    parent->status_fd = -1;
    parent->started = true;
    mp__me.parent = parent;
    me->name = p->name; /* shared with @p, which this process never frees */
    memcpy(me->ident, p->ident, sizeof me->ident);
    me->daemon = p->daemon;
    memcpy(me->authkey, p->authkey, p->authkey_len);
    me->authkey_len = p->authkey_len;
    me->pid = me->creator = mp__me.pid = (pid_t)mp__rawsys(SYS_getpid, 0, 0, 0);
    mp__me.counter = 0;

    mp__rawsys(SYS_prctl, PR_SET_NAME, (long)me->name, 0);
    /* Python closes the child's stdin: it reads /dev/null. */
    static const char devnull[] = "/dev/null";
    long nul = mp__rawsys(SYS_openat, AT_FDCWD, (long)devnull, O_RDONLY | O_CLOEXEC);
    if (nul >= 0) {
        mp__rawsys(SYS_dup3, nul, STDIN_FILENO, 0);
        mp__rawsys(SYS_close, nul, 0, 0);
    }

    if (me->daemon) {
        bool parent_gone = false;
        if (direct_parent != 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            parent_gone = getppid() != direct_parent;
        } else if (parent_pidfd >= 0) {
            pthread_t t;
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            pthread_attr_setstacksize(&attr, 64 * 1024);
            if (pthread_create(&t, &attr, watch_parent, (void *)(intptr_t)parent_pidfd) != 0)
                mp__log(MP_LOG_WARNING, "cannot watch the parent: daemon may outlive it");
            pthread_attr_destroy(&attr);
        }
        mp__deadline d;
        mp__deadline_init(&d, 0);
        if (parent_gone || (parent_pidfd >= 0 && mp__sys_poll1(parent_pidfd, POLLIN, &d) == 1))
            kill(getpid(), SIGKILL);
    }

    mp__log(MP_LOG_INFO, "child process calling its target");
    int code = p->target(p->args);
    mp__child_exit(code);
}
