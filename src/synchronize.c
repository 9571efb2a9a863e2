/*
 * Lock, RLock, Semaphore, Condition, Event, Barrier in the shared arena.
 *
 * Lock and RLock are robust, process-shared, priority-inheritance pthread
 * mutexes: the kernel marks a mutex whose owner died and hands it to the
 * next acquirer (EOWNERDEAD), and the PI protocol does not lose a wake-up
 * when a just-woken waiter is killed (plain robust glibc mutexes can).  The
 * library never touches the robust list itself: glibc owns it.
 *
 * Everything else waits on 32-bit futex words holding counts and
 * generations, never per-waiter state that a killed process could leave
 * behind; short critical sections (Barrier) use the same robust mutex.
 */
#include "internal.h"

#include <linux/futex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- futex words and thread ids ------------------------------------------ */

int mp__futex_wait(_Atomic uint32_t *w, uint32_t val, const mp__deadline *d)
{
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline; shared
     * (not PRIVATE): the word is in memory other processes map. */
    const struct timespec *ts = d ? mp__deadline_ts(d) : NULL;
    long r = syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_BITSET, val, ts, NULL,
                     FUTEX_BITSET_MATCH_ANY);
    if (r < 0 && errno == ETIMEDOUT)
        return MP_ETIMEDOUT;
    return 0; /* woken, EAGAIN (changed) or EINTR: the caller re-checks */
}

void mp__futex_wake(_Atomic uint32_t *w, int n)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* initial-exec: no __tls_get_addr call on the lock's fast path */
static __thread pid_t cached_tid __attribute__((tls_model("initial-exec")));

/* Fork hook (process.c). */
static void tid_child(void)
{
    cached_tid = 0; /* the forking thread has a new id in the child */
}

static const mp__hooks tid_hooks = {.slot = MP__HOOK_TID, .child = tid_child};

pid_t mp__tid(void)
{
    if (cached_tid == 0) {
        mp__hooks_add(&tid_hooks); /* before an id is cached that a fork must drop */
        cached_tid = (pid_t)syscall(SYS_gettid);
    }
    return cached_tid;
}

/* Until @d: used where Python would sleep out a timeout that cannot end
 * otherwise (a Lock acquired again by its holder). */
static void sleep_until(const mp__deadline *d)
{
    const struct timespec *ts = mp__deadline_ts(d);
    while (ts && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ts, NULL) == EINTR)
        ;
}

/* ---- robust mutexes ------------------------------------------------------ */

int mp__robust_init(pthread_mutex_t *m, bool recursive)
{
    pthread_mutexattr_t a;
    int r = pthread_mutexattr_init(&a);
    if (r == 0)
        r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (r == 0)
        r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (r == 0)
        r = pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    if (r == 0)
        r = pthread_mutexattr_settype(&a, recursive ? PTHREAD_MUTEX_RECURSIVE
                                                    : PTHREAD_MUTEX_ERRORCHECK);
    if (r == 0)
        r = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return -r;
}

/* Lock @m until @d (NULL: forever; expired: try once).  0, EOWNERDEAD,
 * ETIMEDOUT, EDEADLK (positive, as pthread). */
int mp__robust_lock(pthread_mutex_t *m, const mp__deadline *d)
{
    int r;
    if (d == NULL || d->forever)
        r = pthread_mutex_lock(m);
    else if (mp__deadline_expired(d))
        r = pthread_mutex_trylock(m);
    else
        r = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, mp__deadline_ts(d));
    if (r == EBUSY)
        r = ETIMEDOUT;
    if (r == EOWNERDEAD)
        pthread_mutex_consistent(m);
    return r;
}

/* ---- Lock / RLock --------------------------------------------------------- */

typedef struct lockshm {
    pthread_mutex_t m;
    _Atomic int32_t owner;   /* holder's thread id, 0 when free */
    uint32_t depth;          /* acquisitions by the holder */
    uint32_t recursive;
} lockshm;

struct mp_lock {
    mp__handle h; /* local block, or a manager's object */
    lockshm *s;
};
MP__HANDLE_FIRST(struct mp_lock);

static int lock_create(mp_lock **out, bool recursive)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    mp_lock *l = calloc(1, sizeof *l);
    if (l == NULL)
        return MP_ENOMEM;
    int err = mp__shm_alloc(sizeof(lockshm), &l->h.ref);
    if (err == 0) {
        l->s = (lockshm *)l->h.ref.p;
        l->s->recursive = recursive;
        err = mp__robust_init(&l->s->m, recursive);
        if (err < 0)
            mp__shm_free(&l->h.ref);
    }
    if (err < 0) {
        free(l);
        return err;
    }
    *out = l;
    return 0;
}

int mp_lock_new(mp_lock **out)
{
    return lock_create(out, false);
}

int mp_rlock_new(mp_lock **out)
{
    return lock_create(out, true);
}

/* Taken: record the owner (r is 0 or EOWNERDEAD). */
static int lock_taken(mp_lock *l, int r)
{
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(&l->s->m);
        l->s->depth = 0; /* the dead owner's count */
    }
    l->s->depth++;
    atomic_store_explicit(&l->s->owner, mp__tid(), memory_order_relaxed);
    return r == 0 ? 0 : MP_EOWNERDEAD;
}

/* Kill-loop tests only: called when a waiter woke holding the mutex,
 * before it has recorded itself as the owner (never set in production). */
void (*mp__lock_fault_hook)(void);

static int lock_acquire_until(mp_lock *l, const mp__deadline *d)
{
    int r = mp__robust_lock(&l->s->m, d);
    if ((r == 0 || r == EOWNERDEAD) && mp__lock_fault_hook != NULL)
        mp__lock_fault_hook();
    if (r == 0 || r == EOWNERDEAD) {
        if (r == EOWNERDEAD)
            l->s->depth = 0; /* the dead owner's count */
        l->s->depth++;
        atomic_store_explicit(&l->s->owner, mp__tid(), memory_order_relaxed);
        return r == 0 ? 0 : MP_EOWNERDEAD;
    }
    if (r == ETIMEDOUT)
        return MP_ETIMEDOUT;
    if (r == EDEADLK) { /* a Lock taken again by its holder: as Python */
        if (d == NULL || d->forever)
            return -EDEADLK;
        sleep_until(d);
        return MP_ETIMEDOUT;
    }
    return -r;
}

int mp_lock_acquire(mp_lock *l, double timeout)
{
    if (l == NULL)
        return MP_EINVAL;
    if (l->h.px)
        return mp__px_simple(l->h.px, MP__OP_LOCK_ACQ, timeout, NULL);
    /* Fast path, no clock: free, or free within a short bounded spin (a
     * contended PI mutex otherwise goes through the kernel every time). */
    for (int spin = 0;; spin++) {
        int r = pthread_mutex_trylock(&l->s->m);
        if (r == 0 || r == EOWNERDEAD)
            return lock_taken(l, r);
        if (r != EBUSY || timeout == 0 || spin >= 100 ||
            atomic_load_explicit(&l->s->owner, memory_order_relaxed) == mp__tid())
            break;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    if (timeout == 0)
        return MP_ETIMEDOUT;
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    return lock_acquire_until(l, &d);
}

int mp_lock_release(mp_lock *l)
{
    if (l == NULL)
        return MP_EINVAL;
    if (l->h.px)
        return mp__px_simple(l->h.px, MP__OP_LOCK_REL, NAN, NULL);
    int32_t owner = atomic_load_explicit(&l->s->owner, memory_order_relaxed);
    if (owner == 0)
        return MP_EINVAL; /* released too many times */
    if (owner != mp__tid())
        return MP_EPERM;
    if (--l->s->depth == 0)
        atomic_store_explicit(&l->s->owner, 0, memory_order_relaxed);
    int r = pthread_mutex_unlock(&l->s->m);
    return -r;
}

bool mp_lock_locked(mp_lock *l)
{
    int64_t v = 0;
    if (l && l->h.px)
        return mp__px_simple(l->h.px, MP__OP_LOCK_LOCKED, NAN, &v) == 0 && v;
    return l && atomic_load_explicit(&l->s->owner, memory_order_relaxed) != 0;
}

bool mp_lock_is_recursive(const mp_lock *l)
{
    if (l && l->h.px) /* a manager's RLock is opened with 1 (managers.c) */
        return mp__px_param(l->h.px) == 1;
    return l && l->s->recursive;
}

void mp_lock_free(mp_lock *l)
{
    if (l == NULL)
        return;
    mp__handle_fini(&l->h);
    free(l);
}

mp__proxy *mp__lock_proxy(const mp_lock *l)
{
    return l->h.px;
}

/* A handle of @size bytes around @px (every kind here begins with its
 * mp__handle). */
static int block_from_proxy(mp__proxy *px, size_t size, void **out)
{
    mp__handle *h = calloc(1, size);
    if (h == NULL)
        return MP_ENOMEM;
    h->px = px;
    *out = h;
    return 0;
}

int mp__lock_from_proxy(mp__proxy *px, void **out)
{
    return block_from_proxy(px, sizeof(mp_lock), out);
}

/* Wholly release a lock this thread holds; its depth for lock_restore. */
static uint32_t lock_save(mp_lock *l)
{
    uint32_t depth = l->s->depth;
    l->s->depth = 0;
    atomic_store_explicit(&l->s->owner, 0, memory_order_relaxed);
    for (uint32_t i = 0; i < depth; i++)
        pthread_mutex_unlock(&l->s->m);
    return depth;
}

static int lock_restore(mp_lock *l, uint32_t depth)
{
    int err = lock_acquire_until(l, NULL);
    for (uint32_t i = 1; i < depth; i++) /* recursive: immediate */
        pthread_mutex_lock(&l->s->m);
    l->s->depth = depth;
    return err;
}

static bool lock_mine(mp_lock *l)
{
    return atomic_load_explicit(&l->s->owner, memory_order_relaxed) == mp__tid();
}

/* ---- handles in mp_args: (kind-specific) + shared block ------------------- */

/* Every kind here begins with its mp__handle (MP__HANDLE_FIRST after each
 * struct): these serve them all, with the size of the kind's whole handle. */

static int block_reduce(void *obj, mp_buf *out, mp__fdvec *fds, mp__channel ch)
{
    return mp__handle_reduce(obj, out, fds, ch);
}

/* A new handle of @size bytes on a block of at least @need bytes from the
 * wire, or on a manager's object when @served. */
static int block_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, size_t size,
                         size_t need, bool served, void **obj)
{
    mp__handle *h = calloc(1, size);
    if (h == NULL)
        return MP_ENOMEM;
    int err = mp__handle_rebuild(r, fds, nfds, ch, served, need, h);
    if (err < 0) {
        free(h);
        return err;
    }
    *obj = h;
    return 0;
}

static int block_dup(void *obj, size_t size, void **out)
{
    mp__handle *h = malloc(size);
    if (h == NULL)
        return MP_ENOMEM;
    memcpy(h, obj, size);
    int err = mp__handle_dup(obj, h);
    if (err < 0) {
        free(h);
        return err;
    }
    *out = h;
    return 0;
}

static void block_release(void *obj)
{
    mp__handle_fini(obj);
    free(obj);
}

static int lock_rebuild_forms(mp__reader *r, int *fds, size_t nfds, mp__channel ch, bool served,
                              void **obj)
{
    int err = block_rebuild(r, fds, nfds, ch, sizeof(mp_lock), sizeof(lockshm), served, obj);
    if (err == 0) {
        mp_lock *l = *obj;
        l->s = (lockshm *)l->h.ref.p;
    }
    return err;
}

static int lock_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, void **obj)
{
    return lock_rebuild_forms(r, fds, nfds, ch, true, obj);
}

int mp__lock_rebuild_local(mp__reader *r, int *fds, size_t nfds, mp__channel ch, mp_lock **out)
{
    return lock_rebuild_forms(r, fds, nfds, ch, false, (void **)out);
}

static int lock_dup(void *obj, void **out)
{
    return block_dup(obj, sizeof(mp_lock), out);
}

MP__KIND(mp_lock, mp__lock_objtype, mp_args_add_lock, mp_args_lock,
         "lock", 'L', MP__TAG_LOCK,
         block_reduce, lock_rebuild, lock_dup, block_release);

/* ---- Semaphore -------------------------------------------------------------- */

typedef struct semshm {
    _Atomic uint32_t value;
    _Atomic uint32_t sleepers;  /* only to skip needless wake calls */
    uint32_t max;               /* bounded: the initial value */
    uint32_t bounded;
} semshm;

struct mp_semaphore {
    mp__handle h; /* local block, or a manager's object */
    semshm *s;
};
MP__HANDLE_FIRST(struct mp_semaphore);

int mp_semaphore_new(mp_semaphore **out, unsigned value, bool bounded)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    if (value > INT32_MAX)
        return MP_EINVAL;
    mp_semaphore *h = calloc(1, sizeof *h);
    if (h == NULL)
        return MP_ENOMEM;
    int err = mp__shm_alloc(sizeof(semshm), &h->h.ref);
    if (err < 0) {
        free(h);
        return err;
    }
    h->s = (semshm *)h->h.ref.p;
    atomic_store(&h->s->value, value);
    h->s->max = value;
    h->s->bounded = bounded;
    *out = h;
    return 0;
}

static bool sem_trydown(semshm *s)
{
    uint32_t v = atomic_load(&s->value);
    while (v > 0)
        if (atomic_compare_exchange_weak(&s->value, &v, v - 1))
            return true;
    return false;
}

int mp_semaphore_acquire(mp_semaphore *h, double timeout)
{
    if (h == NULL)
        return MP_EINVAL;
    if (h->h.px)
        return mp__px_simple(h->h.px, MP__OP_SEM_ACQ, timeout, NULL);
    semshm *s = h->s;
    if (sem_trydown(s))
        return 0;
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    for (;;) {
        if (mp__deadline_expired(&d))
            return MP_ETIMEDOUT;
        atomic_fetch_add(&s->sleepers, 1);
        int r = mp__futex_wait(&s->value, 0, &d);
        atomic_fetch_sub(&s->sleepers, 1);
        if (sem_trydown(s))
            return 0;
        if (r == MP_ETIMEDOUT)
            return MP_ETIMEDOUT;
    }
}

int mp_semaphore_release(mp_semaphore *h)
{
    if (h == NULL)
        return MP_EINVAL;
    if (h->h.px)
        return mp__px_simple(h->h.px, MP__OP_SEM_REL, NAN, NULL);
    semshm *s = h->s;
    uint32_t v = atomic_load(&s->value);
    do {
        if ((s->bounded && v >= s->max) || v >= INT32_MAX)
            return MP_EINVAL; /* released too many times */
    } while (!atomic_compare_exchange_weak(&s->value, &v, v + 1));
    if (atomic_load(&s->sleepers) > 0)
        mp__futex_wake(&s->value, 1);
    return 0;
}

int mp_semaphore_value(mp_semaphore *h, int *out)
{
    if (h == NULL || out == NULL)
        return MP_EINVAL;
    if (h->h.px) {
        int64_t v = 0;
        int err = mp__px_simple(h->h.px, MP__OP_SEM_VALUE, NAN, &v);
        *out = (int)v;
        return err;
    }
    *out = (int)atomic_load(&h->s->value);
    return 0;
}

int mp__semaphore_from_proxy(mp__proxy *px, void **out)
{
    return block_from_proxy(px, sizeof(mp_semaphore), out);
}

void mp_semaphore_free(mp_semaphore *h)
{
    if (h)
        block_release(h);
}

static int sem_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, void **obj)
{
    int err = block_rebuild(r, fds, nfds, ch, sizeof(mp_semaphore), sizeof(semshm),
                            true, obj);
    if (err == 0)
        ((mp_semaphore *)*obj)->s = (semshm *)((mp_semaphore *)*obj)->h.ref.p;
    return err;
}

static int sem_dup(void *obj, void **out)
{
    return block_dup(obj, sizeof(mp_semaphore), out);
}

MP__KIND(mp_semaphore, mp__semaphore_objtype, mp_args_add_semaphore, mp_args_semaphore,
         "semaphore", 'S', MP__TAG_SEMAPHORE,
         block_reduce, sem_rebuild, sem_dup, block_release);

/* ---- Event -------------------------------------------------------------- */

typedef struct eventshm {
    _Atomic uint32_t flag;
    _Atomic uint32_t sleepers;
} eventshm;

struct mp_event {
    mp__handle h; /* local block, or a manager's object */
    eventshm *s;
};
MP__HANDLE_FIRST(struct mp_event);

int mp_event_new(mp_event **out)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    mp_event *h = calloc(1, sizeof *h);
    if (h == NULL)
        return MP_ENOMEM;
    int err = mp__shm_alloc(sizeof(eventshm), &h->h.ref);
    if (err < 0) {
        free(h);
        return err;
    }
    h->s = (eventshm *)h->h.ref.p;
    *out = h;
    return 0;
}

int mp_event_set(mp_event *e)
{
    if (e == NULL)
        return MP_EINVAL;
    if (e->h.px)
        return mp__px_simple(e->h.px, MP__OP_EV_SET, NAN, NULL);
    atomic_store(&e->s->flag, 1);
    if (atomic_load(&e->s->sleepers) > 0)
        mp__futex_wake(&e->s->flag, INT32_MAX);
    return 0;
}

int mp_event_clear(mp_event *e)
{
    if (e == NULL)
        return MP_EINVAL;
    if (e->h.px)
        return mp__px_simple(e->h.px, MP__OP_EV_CLEAR, NAN, NULL);
    atomic_store(&e->s->flag, 0);
    return 0;
}

bool mp_event_is_set(mp_event *e)
{
    int64_t v = 0;
    if (e && e->h.px)
        return mp__px_simple(e->h.px, MP__OP_EV_ISSET, NAN, &v) == 0 && v;
    return e && atomic_load(&e->s->flag) != 0;
}

int mp__event_from_proxy(mp__proxy *px, void **out)
{
    return block_from_proxy(px, sizeof(mp_event), out);
}

int mp_event_wait(mp_event *e, double timeout)
{
    if (e == NULL)
        return MP_EINVAL;
    if (e->h.px)
        return mp__px_simple(e->h.px, MP__OP_EV_WAIT, timeout, NULL);
    if (atomic_load(&e->s->flag))
        return 0;
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    for (;;) {
        if (mp__deadline_expired(&d))
            return MP_ETIMEDOUT;
        atomic_fetch_add(&e->s->sleepers, 1);
        int r = mp__futex_wait(&e->s->flag, 0, &d);
        atomic_fetch_sub(&e->s->sleepers, 1);
        if (atomic_load(&e->s->flag))
            return 0;
        if (r == MP_ETIMEDOUT)
            return MP_ETIMEDOUT;
    }
}

void mp_event_free(mp_event *e)
{
    if (e)
        block_release(e);
}

static int event_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, void **obj)
{
    int err = block_rebuild(r, fds, nfds, ch, sizeof(mp_event), sizeof(eventshm), true,
                            obj);
    if (err == 0)
        ((mp_event *)*obj)->s = (eventshm *)((mp_event *)*obj)->h.ref.p;
    return err;
}

static int event_dup(void *obj, void **out)
{
    return block_dup(obj, sizeof(mp_event), out);
}

MP__KIND(mp_event, mp__event_objtype, mp_args_add_event, mp_args_event,
         "event", 'E', MP__TAG_EVENT,
         block_reduce, event_rebuild, event_dup, block_release);

/* ---- Condition ------------------------------------------------------------ */

/*
 * Wake-ups are anonymous tokens.  Under the lock, wait counts itself in
 * `waiting`; notify(n) turns up to n of those into tokens and wakes as many
 * sleepers; a waiter leaves with a token, or, timed out and back under the
 * lock, takes a token that arrived meanwhile or else uncounts itself.  So
 * waiting + tokens is always the number of waiters still inside wait, and a
 * waiter that was killed leaves at most one token for a later waiter (a
 * spurious wake-up), never a notifier blocked on it.
 */
typedef struct condshm {
    _Atomic uint32_t tokens;   /* futex word */
    _Atomic uint32_t waiting;  /* waiters not yet given a token */
    _Atomic uint32_t notifier; /* a notify waits for its tokens to be taken */
} condshm;

struct mp_condition {
    mp__handle h; /* local block, or a manager's object */
    condshm *s;
    mp_lock *lock;
};
MP__HANDLE_FIRST(struct mp_condition);

int mp_condition_new(mp_condition **out, mp_lock *lock)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    if (lock && lock->h.px)
        return MP_EINVAL; /* a condition needs a local lock */
    mp_condition *c = calloc(1, sizeof *c);
    if (c == NULL)
        return MP_ENOMEM;
    int err = lock ? lock_dup(lock, (void **)&c->lock) : mp_rlock_new(&c->lock);
    if (err == 0)
        err = mp__shm_alloc(sizeof(condshm), &c->h.ref);
    if (err < 0) {
        mp_lock_free(c->lock);
        free(c);
        return err;
    }
    c->s = (condshm *)c->h.ref.p;
    *out = c;
    return 0;
}

mp_lock *mp_condition_lock(mp_condition *c)
{
    return c ? c->lock : NULL;
}

int mp_condition_acquire(mp_condition *c, double timeout)
{
    return c ? mp_lock_acquire(c->lock, timeout) : MP_EINVAL;
}

int mp_condition_release(mp_condition *c)
{
    return c ? mp_lock_release(c->lock) : MP_EINVAL;
}

static bool take_token(condshm *s)
{
    uint32_t t = atomic_load(&s->tokens);
    while (t > 0)
        if (atomic_compare_exchange_weak(&s->tokens, &t, t - 1)) {
            if (atomic_load(&s->notifier))
                mp__futex_wake(&s->tokens, INT32_MAX); /* tell the notifier */
            return true;
        }
    return false;
}

static int cond_wait_until(mp_condition *c, const mp__deadline *d)
{
    condshm *s = c->s;
    atomic_fetch_add(&s->waiting, 1);
    uint32_t depth = lock_save(c->lock);
    bool woken = false;
    for (;;) {
        if (take_token(s)) {
            woken = true;
            break;
        }
        if (mp__deadline_expired(d))
            break;
        mp__futex_wait(&s->tokens, 0, d);
    }
    /* Timed out: sign off before taking the lock back (a notifier holding
     * it may be waiting for us), or take the token it gave us meanwhile. */
    for (int spins = 0; !woken; spins++) {
        uint32_t w = atomic_load(&s->waiting);
        if (w > 0 && atomic_compare_exchange_weak(&s->waiting, &w, w - 1))
            break;
        woken = take_token(s);
        if (!woken && spins > 100) { /* a notifier between its two steps */
            if (spins > 1100)
                break; /* it died there: give up the token it owes us */
            mp__deadline shortly;
            mp__deadline_init(&shortly, 0.001);
            mp__futex_wait(&s->tokens, 0, &shortly);
        }
    }
    int err = lock_restore(c->lock, depth);
    if (!woken)
        return MP_ETIMEDOUT;
    return err;
}

/* A manager condition's wait: one request, over its lock's connection (the
 * server checks the lock is ours, releases it, waits and retakes it). */
static int cond_px_wait(mp_condition *c, double timeout)
{
    int64_t notified = 0;
    int err = mp__px_via(c->lock->h.px, c->h.px, MP__OP_COND_WAIT, timeout, 0, &notified);
    if ((err == 0 || err == MP_EOWNERDEAD) && !notified)
        return MP_ETIMEDOUT; /* as a local wait that timed out */
    return err;
}

int mp_condition_wait(mp_condition *c, double timeout)
{
    if (c == NULL)
        return MP_EINVAL;
    if (c->h.px)
        return cond_px_wait(c, timeout);
    if (!lock_mine(c->lock))
        return MP_EPERM;
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    return cond_wait_until(c, &d);
}

int mp_condition_wait_for(mp_condition *c, bool (*pred)(void *), void *arg, double timeout)
{
    if (c == NULL || pred == NULL)
        return MP_EINVAL;
    if (!c->h.px && !lock_mine(c->lock))
        return MP_EPERM;
    /* a proxy's: notify(0) is the server's check that the lock is ours */
    int err = c->h.px ? mp__px_via(c->lock->h.px, c->h.px, MP__OP_COND_NOTIFY, NAN, 0, NULL) : 0;
    if (err < 0)
        return err;
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    bool died = false;
    while (!pred(arg)) {
        if (mp__deadline_expired(&d))
            return MP_ETIMEDOUT;
        if (c->h.px) { /* the predicate is the client's: one wait a round */
            int ms = mp__deadline_poll_ms(&d);
            err = cond_px_wait(c, ms < 0 ? MP_FOREVER : ms / 1000.0);
            if (err < 0 && err != MP_ETIMEDOUT && err != MP_EOWNERDEAD)
                return err; /* MP_EPERM, MP_ECLOSED: the lock is not held */
        } else {
            err = cond_wait_until(c, &d);
        }
        if (err == MP_EOWNERDEAD)
            died = true;
    }
    return died ? MP_EOWNERDEAD : 0;
}

int mp_condition_notify(mp_condition *c, int n)
{
    if (c == NULL || n < 0)
        return MP_EINVAL;
    if (c->h.px)
        return mp__px_via(c->lock->h.px, c->h.px, MP__OP_COND_NOTIFY, NAN, n, NULL);
    if (!lock_mine(c->lock))
        return MP_EPERM;
    condshm *s = c->s;
    uint32_t w = atomic_load(&s->waiting), k;
    do
        k = w < (uint32_t)n ? w : (uint32_t)n;
    while (k > 0 && !atomic_compare_exchange_weak(&s->waiting, &w, w - k));
    if (k == 0)
        return 0;
    uint32_t before = atomic_load(&s->tokens);
    atomic_store(&s->notifier, 1);
    atomic_fetch_add(&s->tokens, k);
    mp__futex_wake(&s->tokens, (int)k);
    /* Keep the lock until the sleepers took their tokens, as Python's
     * notify does: a waiter arriving later cannot take them.  Bounded: a
     * sleeper killed in its sleep never takes its token. */
    mp__deadline d;
    mp__deadline_init(&d, 1.0);
    for (uint32_t t; (t = atomic_load(&s->tokens)) > before;)
        if (mp__futex_wait(&s->tokens, t, &d) == MP_ETIMEDOUT)
            break;
    atomic_store(&s->notifier, 0);
    return 0;
}

int mp_condition_notify_all(mp_condition *c)
{
    return mp_condition_notify(c, INT32_MAX);
}

int mp__condition_from_proxy(mp__proxy *px, mp_lock *lock, mp_condition **out)
{
    mp_condition *c = calloc(1, sizeof *c);
    if (c == NULL)
        return MP_ENOMEM;
    int err = lock_dup(lock, (void **)&c->lock);
    if (err < 0) {
        free(c);
        return err;
    }
    c->h.px = px;
    *out = c;
    return 0;
}

void mp_condition_free(mp_condition *c)
{
    if (c == NULL)
        return;
    mp_lock_free(c->lock);
    block_release(c);
}

static int cond_reduce(void *obj, mp_buf *out, mp__fdvec *fds, mp__channel ch)
{
    mp_condition *c = obj;
    int err = mp__handle_reduce(&c->h, out, fds, ch);
    return err < 0 ? err : block_reduce(c->lock, out, fds, ch);
}

/* A local condition's lock is a local one (mp_condition_new refuses a
 * proxy); a manager's condition's is a proxy on the same server. */
static int cond_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, void **obj)
{
    int err = block_rebuild(r, fds, nfds, ch, sizeof(mp_condition), sizeof(condshm), true, obj);
    if (err < 0)
        return err;
    mp_condition *c = *obj;
    c->s = (condshm *)c->h.ref.p;
    bool px = c->h.px != NULL;
    err = lock_rebuild_forms(r, fds, nfds, ch, px, (void **)&c->lock);
    if (err == 0 && px && (c->lock->h.px == NULL || !mp__px_same_server(c->h.px, c->lock->h.px))) {
        mp_lock_free(c->lock);
        c->lock = NULL;
        err = MP_EBADMSG;
    }
    if (err < 0) {
        block_release(c);
        *obj = NULL;
    }
    return err;
}

static int cond_dup(void *obj, void **out)
{
    mp_condition *c = obj;
    int err = block_dup(obj, sizeof(mp_condition), out);
    if (err < 0)
        return err;
    mp_condition *d = *out;
    if ((err = lock_dup(c->lock, (void **)&d->lock)) < 0) {
        block_release(d);
        *out = NULL;
    }
    return err;
}

MP__KIND(mp_condition, mp__condition_objtype, mp_args_add_condition, mp_args_condition,
         "condition", 'C', MP__TAG_CONDITION,
         cond_reduce, cond_rebuild, cond_dup, mp_condition_free);

/* ---- Barrier -------------------------------------------------------------- */

/*
 * Arrivals are counted under a robust mutex; waiters sleep on the
 * generation word, which the last arrival (or a break, reset or abort)
 * advances.  How each generation ended is kept in a small ring, so a waiter
 * that wakes late still learns whether its pass completed or broke.
 */
#define GEN_RING 16
enum { GEN_PASSED = 1, GEN_BROKEN = 2 };

typedef struct barshm {
    pthread_mutex_t m;
    _Atomic uint32_t gen;
    uint32_t parties, count, broken;
    double timeout;
    _Atomic uint8_t ended[GEN_RING];
} barshm;

struct mp_barrier {
    mp__handle h; /* local block, or a manager's object */
    barshm *s;
    mp_target_fn action; /* this process's address of it */
};
MP__HANDLE_FIRST(struct mp_barrier);

int mp_barrier_new(mp_barrier **out, unsigned parties, mp_target_fn action, double timeout)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    if (parties < 1 || parties > INT32_MAX)
        return MP_EINVAL;
    mp_barrier *b = calloc(1, sizeof *b);
    if (b == NULL)
        return MP_ENOMEM;
    int err = mp__shm_alloc(sizeof(barshm), &b->h.ref);
    if (err == 0) {
        b->s = (barshm *)b->h.ref.p;
        err = mp__robust_init(&b->s->m, false);
        if (err < 0)
            mp__shm_free(&b->h.ref);
    }
    if (err < 0) {
        free(b);
        return err;
    }
    b->s->parties = parties;
    b->s->timeout = timeout;
    b->action = action;
    *out = b;
    return 0;
}

/* End the current generation (under the mutex); its waiters are still to
 * be woken. */
static void bar_end(barshm *s, uint8_t how)
{
    uint32_t g = atomic_load(&s->gen);
    atomic_store(&s->ended[g % GEN_RING], how);
    atomic_store(&s->ended[(g + 1) % GEN_RING], 0);
    s->count = 0;
    atomic_store(&s->gen, g + 1);
}

/* End the current generation (under the mutex) and wake its waiters. */
static void bar_advance(barshm *s, uint8_t how)
{
    bar_end(s, how);
    mp__futex_wake(&s->gen, INT32_MAX);
}

/* Take the barrier's mutex; a holder that died leaves the state suspect:
 * break the barrier. */
static void bar_lock(barshm *s)
{
    if (mp__robust_lock(&s->m, NULL) == EOWNERDEAD) {
        s->broken = 1;
        bar_advance(s, GEN_BROKEN);
    }
}

int mp_barrier_wait(mp_barrier *b, double timeout)
{
    if (b == NULL)
        return MP_EINVAL;
    if (b->h.px) { /* the server takes its default for a negative timeout */
        int64_t index = 0;
        int err = mp__px_simple(b->h.px, MP__OP_BAR_WAIT,
                                timeout < 0 || isnan(timeout) ? -1.0 : timeout, &index);
        return err < 0 ? err : (int)index;
    }
    barshm *s = b->s;
    if (timeout < 0 || isnan(timeout))
        timeout = s->timeout;
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    bar_lock(s);
    if (s->broken) {
        pthread_mutex_unlock(&s->m);
        return MP_EBROKEN;
    }
    uint32_t g = atomic_load(&s->gen);
    int index = (int)s->count++;
    if (s->count == s->parties) {
        int rc = b->action ? b->action(NULL) : 0;
        if (rc != 0)
            s->broken = 1;
        bar_end(s, rc != 0 ? GEN_BROKEN : GEN_PASSED);
        pthread_mutex_unlock(&s->m);
        /* Wake after the unlock: a waiter woken first, on this CPU, would
         * run into the mutex at its next wait and hand the CPU straight
         * back.  The generation is already out, so a waiter that wakes
         * by its own timeout sees it; should this process die before the
         * wake, its waiters find it within their one-second slice. */
        mp__futex_wake(&s->gen, INT32_MAX);
        return rc != 0 ? MP_EBROKEN : index;
    }
    pthread_mutex_unlock(&s->m);
    while (atomic_load(&s->gen) == g) {
        /* Sleep in slices of a second: a process killed while holding the
         * mutex (running the action) must not leave us asleep forever. */
        mp__deadline slice;
        mp__deadline_init(&slice, 1.0);
        bool last = mp__deadline_poll_ms(&d) >= 0 && mp__deadline_poll_ms(&d) <= 1000;
        int r = mp__futex_wait(&s->gen, g, last ? &d : &slice);
        if (r == MP_ETIMEDOUT && !last && atomic_load(&s->gen) == g) {
            int t = pthread_mutex_trylock(&s->m);
            if (t == 0 || t == EOWNERDEAD) {
                if (t == EOWNERDEAD) {
                    pthread_mutex_consistent(&s->m);
                    s->broken = 1;
                    bar_advance(s, GEN_BROKEN);
                }
                pthread_mutex_unlock(&s->m);
            }
            continue;
        }
        if (r == MP_ETIMEDOUT && atomic_load(&s->gen) == g) {
            bar_lock(s);
            bool still = atomic_load(&s->gen) == g;
            if (still) { /* Python: a timeout breaks the barrier */
                s->broken = 1;
                bar_advance(s, GEN_BROKEN);
            }
            pthread_mutex_unlock(&s->m);
            if (still)
                return MP_ETIMEDOUT;
        }
    }
    return atomic_load(&s->ended[g % GEN_RING]) == GEN_PASSED ? index : MP_EBROKEN;
}

int mp_barrier_reset(mp_barrier *b)
{
    if (b == NULL)
        return MP_EINVAL;
    if (b->h.px)
        return mp__px_simple(b->h.px, MP__OP_BAR_RESET, NAN, NULL);
    bar_lock(b->s);
    if (b->s->count > 0)
        bar_advance(b->s, GEN_BROKEN);
    b->s->broken = 0;
    pthread_mutex_unlock(&b->s->m);
    return 0;
}

int mp_barrier_abort(mp_barrier *b)
{
    if (b == NULL)
        return MP_EINVAL;
    if (b->h.px)
        return mp__px_simple(b->h.px, MP__OP_BAR_ABORT, NAN, NULL);
    bar_lock(b->s);
    b->s->broken = 1;
    if (b->s->count > 0)
        bar_advance(b->s, GEN_BROKEN);
    pthread_mutex_unlock(&b->s->m);
    return 0;
}

/* A manager barrier's number: 0 also when the request fails. */
static int64_t bar_px_num(mp_barrier *b, int op)
{
    int64_t v = 0;
    return mp__px_simple(b->h.px, op, NAN, &v) == 0 ? v : 0;
}

unsigned mp_barrier_parties(mp_barrier *b)
{
    if (b && b->h.px)
        return (unsigned)bar_px_num(b, MP__OP_BAR_PARTIES);
    return b ? b->s->parties : 0;
}

unsigned mp_barrier_n_waiting(mp_barrier *b)
{
    if (b && b->h.px)
        return (unsigned)bar_px_num(b, MP__OP_BAR_NWAITING);
    return b ? b->s->count : 0;
}

bool mp_barrier_broken(mp_barrier *b)
{
    if (b && b->h.px)
        return bar_px_num(b, MP__OP_BAR_BROKEN) != 0;
    return b && b->s->broken;
}

int mp__barrier_from_proxy(mp__proxy *px, mp_barrier **out)
{
    return block_from_proxy(px, sizeof(mp_barrier), (void **)out);
}

void mp_barrier_free(mp_barrier *b)
{
    if (b)
        block_release(b);
}

/* A barrier's action is code: it travels only to a child started here
 * (Python too shares a Barrier by inheritance only). */
static int bar_reduce(void *obj, mp_buf *out, mp__fdvec *fds, mp__channel ch)
{
    mp_barrier *b = obj;
    if (b->action != NULL && ch != MP__WIRE_CHILD)
        return MP_EPERM;
    int err = block_reduce(b, out, fds, ch);
    if (err == 0)
        err = mp__put_u8(out, b->action != NULL);
    if (err == 0 && b->action)
        err = mp__funcref_encode((const void *)b->action, out);
    return err;
}

static int bar_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, void **obj)
{
    int err = block_rebuild(r, fds, nfds, ch, sizeof(mp_barrier), sizeof(barshm), true, obj);
    if (err < 0)
        return err;
    mp_barrier *b = *obj;
    b->s = (barshm *)b->h.ref.p;
    uint8_t has = mp__get_u8(r);
    if (r->err || has > (ch == MP__WIRE_CHILD && b->h.px == NULL)) /* a manager's has none */
        err = MP_EBADMSG;
    if (err == 0 && has) {
        char why[256];
        void *fn;
        err = mp__funcref_decode(r, true, &fn, why, sizeof why);
        if (err < 0)
            mp__log(MP_LOG_ERROR, "barrier action: %s", why);
        b->action = (mp_target_fn)fn;
    }
    if (err < 0) {
        block_release(b);
        *obj = NULL;
    }
    return err;
}

static int bar_dup(void *obj, void **out)
{
    return block_dup(obj, sizeof(mp_barrier), out);
}

MP__KIND(mp_barrier, mp__barrier_objtype, mp_args_add_barrier, mp_args_barrier,
         "barrier", 'B', MP__TAG_BARRIER,
         bar_reduce, bar_rebuild, bar_dup, block_release);

