/*
 * Synchronization primitives: PYTHON-SEMANTICS sections 9-13 that apply to
 * C (Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event, Barrier),
 * between threads and between processes under every start method; owner
 * death (a Lock or RLock holder killed, exiting or a thread ending, a
 * waiter blocked on it, a kill loop over contending producers); waiters
 * killed inside Lock, Semaphore, Condition and Barrier waits; many objects
 * without descriptor growth; bad input.  The tests of a Lock, RLock,
 * Event, Semaphore, BoundedSemaphore, Condition or Barrier make it with
 * mp_test_*_new and also run as "name/proxy", against a manager's proxy,
 * except where a comment says why a test stays local.
 *
 * Processes are sequenced with Semaphores, Events and the objects under
 * test, never with sleeps: a sleep only gives a waiter time to block, and
 * the outcome asserted does not depend on whether it did.
 */
#include "mp_test.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* A timed wait took about its timeout: at least 90 % of it, and less than
 * 5 s more (a noisy 2-core VM, sanitizers). */
#define ASSERT_WAITED(t0, timeout)                                                       \
    do {                                                                                 \
        double took_ = mp_monotonic() - (t0), want_ = (timeout);                         \
        if (!(took_ >= 0.9 * want_ && took_ < want_ + 5.0))                              \
            MP__FAIL("ASSERT_WAITED: took %.3f s for a %.3f s timeout", took_, want_);   \
    } while (0)

/* A call that must not block returned promptly. */
#define ASSERT_PROMPT(t0)                                                                \
    do {                                                                                 \
        double took_ = mp_monotonic() - (t0);                                            \
        if (!(took_ < 1.0))                                                              \
            MP__FAIL("ASSERT_PROMPT: took %.3f s", took_);                               \
    } while (0)

static mp_args *args_new(void)
{
    mp_args *a;
    ASSERT_OK(mp_args_new(&a));
    return a;
}

/* In a child: wait to be killed. */
static _Noreturn void park(void)
{
    for (;;)
        pause();
}

static void run_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    ASSERT_EQ(0, pthread_create(&t, NULL, fn, arg));
    ASSERT_EQ(0, pthread_join(t, NULL));
}

static int32_t load32(mp_value *v)
{
    return __atomic_load_n((int32_t *)mp_value_ptr(v), __ATOMIC_SEQ_CST);
}

static void add32(mp_value *v, int32_t n)
{
    __atomic_add_fetch((int32_t *)mp_value_ptr(v), n, __ATOMIC_SEQ_CST);
}

static void store32(mp_value *v, int32_t x)
{
    __atomic_store_n((int32_t *)mp_value_ptr(v), x, __ATOMIC_SEQ_CST);
}

static mp_value *raw_int32(void)
{
    mp_value *v;
    ASSERT_OK(mp_value_new(&v, MP_INT32, false));
    return v;
}

/* Poll (1 ms steps) until *v reaches @want; fail after @limit seconds. */
static void await32(mp_value *v, int32_t want, double limit)
{
    double until = mp_monotonic() + limit;
    while (load32(v) < want) {
        if (mp_monotonic() > until)
            MP__FAIL("waited %.0f s for a counter to reach %d; it is %d", limit, (int)want,
                     (int)load32(v));
        sleep_s(0.001);
    }
}

static void await_n_waiting(mp_barrier *b, unsigned n)
{
    double until = mp_monotonic() + 30;
    while (mp_barrier_n_waiting(b) != n) {
        if (mp_monotonic() > until)
            MP__FAIL("n_waiting stayed %u, want %u", mp_barrier_n_waiting(b), n);
        sleep_s(0.001);
    }
}

/* ---- Lock: one process --------------------------------------------------- */

MP_TEST(lock_basics, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    mp_lock *l;
    ASSERT_OK(mp_test_lock_new(&l));
    ASSERT_FALSE(mp_lock_is_recursive(l));
    ASSERT_FALSE(mp_lock_locked(l));
    ASSERT_OK(mp_lock_acquire(l, MP_FOREVER));
    ASSERT_TRUE(mp_lock_locked(l));

    /* not recursive: timeout 0 fails at once, a timeout is waited out */
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0));
    ASSERT_PROMPT(t0);
    t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0.3));
    ASSERT_WAITED(t0, 0.3);
    /* ... and forever would never end */
    t0 = mp_monotonic();
    ASSERT_ERR(-EDEADLK, mp_lock_acquire(l, MP_FOREVER));
    ASSERT_ERR(-EDEADLK, mp_lock_acquire(l, -7.5));
    ASSERT_PROMPT(t0);
    ASSERT_TRUE(mp_lock_locked(l));

    ASSERT_OK(mp_lock_release(l));
    ASSERT_FALSE(mp_lock_locked(l));
    ASSERT_ERR(MP_EINVAL, mp_lock_release(l)); /* released too many times */
    ASSERT_FALSE(mp_lock_locked(l));

    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_lock_release(l));
    ASSERT_OK(mp_lock_acquire(l, 0.5));
    ASSERT_OK(mp_lock_release(l));
    for (int i = 0; i < 1000; i++) {
        ASSERT_OK(mp_lock_acquire(l, MP_FOREVER));
        ASSERT_OK(mp_lock_release(l));
    }
    mp_lock_free(l);
}

/* What another thread sees of a lock this one holds. */
static void *t_foreign_thread(void *arg)
{
    mp_lock *l = arg;
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_ERR(MP_EPERM, mp_lock_release(l));
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0));
    ASSERT_PROMPT(t0);
    t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0.3));
    ASSERT_WAITED(t0, 0.3);
    ASSERT_ERR(MP_EPERM, mp_lock_release(l));
    ASSERT_TRUE(mp_lock_locked(l));
    return NULL;
}

/* A thread that holds a lock (@depth times) until told to let go. */
typedef struct holder {
    pthread_t tid;
    mp_lock *l;
    int depth;
    mp_event *held, *go;
} holder;

static void *holder_main(void *arg)
{
    holder *h = arg;
    for (int i = 0; i < h->depth; i++)
        ASSERT_OK(mp_lock_acquire(h->l, 10));
    ASSERT_OK(mp_event_set(h->held));
    ASSERT_OK(mp_event_wait(h->go, 30));
    for (int i = 0; i < h->depth; i++)
        ASSERT_OK(mp_lock_release(h->l));
    ASSERT_ERR(MP_EINVAL, mp_lock_release(h->l));
    return NULL;
}

static void holder_start(holder *h, mp_lock *l, int depth)
{
    *h = (holder){.l = l, .depth = depth};
    ASSERT_OK(mp_event_new(&h->held));
    ASSERT_OK(mp_event_new(&h->go));
    ASSERT_EQ(0, pthread_create(&h->tid, NULL, holder_main, h));
    ASSERT_OK(mp_event_wait(h->held, 30));
}

static void holder_finish(holder *h)
{
    ASSERT_OK(mp_event_set(h->go));
    ASSERT_EQ(0, pthread_join(h->tid, NULL));
    mp_event_free(h->held);
    mp_event_free(h->go);
}

MP_TEST(lock_owned_by_a_thread, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    mp_lock *l;
    ASSERT_OK(mp_test_lock_new(&l));
    ASSERT_OK(mp_lock_acquire(l, 0));
    run_thread(t_foreign_thread, l); /* release by another thread: MP_EPERM */
    ASSERT_OK(mp_lock_release(l));

    holder h;
    holder_start(&h, l, 1);
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_ERR(MP_EPERM, mp_lock_release(l));
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0));
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0.2));
    ASSERT_WAITED(t0, 0.2);
    holder_finish(&h);
    ASSERT_FALSE(mp_lock_locked(l));
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_lock_release(l));
    mp_lock_free(l);
}

/* Takes the lock and ends holding it. */
static void *t_take_and_end(void *arg)
{
    ASSERT_OK(mp_lock_acquire(arg, 0));
    return NULL;
}

/* A thread that ends holding a Lock or an RLock is a dead owner, as a
 * process is: the next acquirer gets MP_EOWNERDEAD and the lock, at once. */
MP_TEST(lock_owner_thread_ends, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    mp_lock *l;
    ASSERT_OK(mp_test_lock_new(&l));
    run_thread(t_take_and_end, l);
    ASSERT_TRUE(mp_lock_locked(l)); /* by the dead thread */
    ASSERT_ERR(MP_EPERM, mp_lock_release(l));
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_EOWNERDEAD, mp_lock_acquire(l, 10));
    ASSERT_PROMPT(t0);
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_OK(mp_lock_release(l));
    ASSERT_FALSE(mp_lock_locked(l));
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_lock_release(l));
    mp_lock_free(l);

    ASSERT_OK(mp_test_rlock_new(&l));
    run_thread(t_take_and_end, l);
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_ERR(MP_EPERM, mp_lock_release(l));
    t0 = mp_monotonic();
    ASSERT_ERR(MP_EOWNERDEAD, mp_lock_acquire(l, 10)); /* a proxy: a moment after */
    ASSERT_PROMPT(t0);
    ASSERT_OK(mp_lock_release(l)); /* held once: the dead thread's count is gone */
    ASSERT_FALSE(mp_lock_locked(l));
    mp_lock_free(l);
}

/* Takes the lock, says so, and ends holding it once told to go. */
typedef struct taker {
    mp_lock *l;
    mp_event *held, *go;
} taker;

static void *t_take_wait_and_end(void *arg)
{
    taker *t = arg;
    ASSERT_OK(mp_lock_acquire(t->l, 0));
    ASSERT_OK(mp_event_set(t->held));
    ASSERT_OK(mp_event_wait(t->go, 30));
    return NULL;
}

/* args: semaphore leave.  Waits to be let go. */
static int t_wait_to_leave(const mp_args *a)
{
    ASSERT_OK(mp_semaphore_acquire(mp_args_semaphore(a, 0), 60));
    return 0;
}

/* The same with a child started while the thread held the lock: the child
 * (a fork has a copy of everything the parent had) must not keep the dead
 * thread's hold alive. */
MP_TEST(lock_owner_thread_ends_while_a_child_lives, .variants = MP_START_METHODS | MP_TEST_PROXY,
        .timeout_s = 60)
{
    taker t;
    mp_semaphore *leave;
    ASSERT_OK(mp_test_lock_new(&t.l));
    ASSERT_OK(mp_event_new(&t.held));
    ASSERT_OK(mp_event_new(&t.go));
    ASSERT_OK(mp_semaphore_new(&leave, 0, false));
    pthread_t tid;
    ASSERT_EQ(0, pthread_create(&tid, NULL, t_take_wait_and_end, &t));
    ASSERT_OK(mp_event_wait(t.held, 30));
    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_semaphore(a, leave));
    mp_process *p = mp_test_start_free(ctx, t_wait_to_leave, a);
    ASSERT_OK(mp_event_set(t.go));
    ASSERT_EQ(0, pthread_join(tid, NULL));
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_EOWNERDEAD, mp_lock_acquire(t.l, 10));
    ASSERT_PROMPT(t0);
    ASSERT_OK(mp_lock_release(t.l));
    ASSERT_OK(mp_semaphore_release(leave));
    ASSERT_EQ(0, mp_test_join(p, 60));
    mp_lock_free(t.l);
    mp_event_free(t.held);
    mp_event_free(t.go);
    mp_semaphore_free(leave);
}

/* ---- RLock: one process --------------------------------------------------- */

MP_TEST(rlock_basics, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    mp_lock *l;
    ASSERT_OK(mp_test_rlock_new(&l));
    ASSERT_TRUE(mp_lock_is_recursive(l));
    ASSERT_FALSE(mp_lock_locked(l));
    ASSERT_ERR(MP_EINVAL, mp_lock_release(l));

    ASSERT_OK(mp_lock_acquire(l, MP_FOREVER));
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_lock_acquire(l, 0.5));
    ASSERT_TRUE(mp_lock_locked(l));
    run_thread(t_foreign_thread, l); /* a non-owner cannot release or take it */
    ASSERT_OK(mp_lock_release(l));
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_OK(mp_lock_release(l));
    ASSERT_TRUE(mp_lock_locked(l));
    run_thread(t_foreign_thread, l); /* still held once */
    ASSERT_OK(mp_lock_release(l));
    ASSERT_FALSE(mp_lock_locked(l));
    ASSERT_ERR(MP_EINVAL, mp_lock_release(l)); /* too many releases */
    ASSERT_ERR(MP_EINVAL, mp_lock_release(l));

    /* deep recursion */
    for (int i = 0; i < 1000; i++)
        ASSERT_OK(mp_lock_acquire(l, 0));
    for (int i = 0; i < 1000; i++) {
        ASSERT_TRUE(mp_lock_locked(l));
        ASSERT_OK(mp_lock_release(l));
    }
    ASSERT_FALSE(mp_lock_locked(l));

    /* held twice by another thread */
    holder h;
    holder_start(&h, l, 2);
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_ERR(MP_EPERM, mp_lock_release(l));
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0));
    holder_finish(&h);
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_lock_release(l));
    mp_lock_free(l);
}

/* ---- Lock and RLock between processes ------------------------------------ */

/* args: lock (held by the parent), semaphore step, event go.  Tries the
 * lock, then blocks until the parent lets go, then holds it until "go". */
static int t_lock_contender(const mp_args *a)
{
    ASSERT_EQ(MP_ARG_OBJECT, mp_args_type(a, 0));
    mp_lock *l = mp_args_lock(a, 0);
    mp_semaphore *step = mp_args_semaphore(a, 1);
    mp_event *go = mp_args_event(a, 2);
    ASSERT_TRUE(l != NULL && step != NULL && go != NULL);
    ASSERT_FALSE(mp_lock_is_recursive(l));
    ASSERT_TRUE(mp_lock_locked(l));
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0));
    ASSERT_PROMPT(t0);
    ASSERT_ERR(MP_EPERM, mp_lock_release(l)); /* another process holds it */
    t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0.3));
    ASSERT_WAITED(t0, 0.3);
    ASSERT_OK(mp_semaphore_release(step));
    ASSERT_OK(mp_lock_acquire(l, 30)); /* once the parent releases */
    ASSERT_OK(mp_semaphore_release(step));
    ASSERT_OK(mp_event_wait(go, 30));
    ASSERT_OK(mp_lock_release(l));
    return 0;
}

MP_TEST(lock_between_processes, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    mp_lock *l;
    mp_semaphore *step;
    mp_event *go;
    ASSERT_OK(mp_test_lock_new(&l));
    ASSERT_OK(mp_semaphore_new(&step, 0, false));
    ASSERT_OK(mp_event_new(&go));
    ASSERT_OK(mp_lock_acquire(l, 0));
    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_lock(a, l));
    ASSERT_OK(mp_args_add_semaphore(a, step));
    ASSERT_OK(mp_args_add_event(a, go));
    mp_process *p = mp_test_start_free(ctx, t_lock_contender, a);

    ASSERT_OK(mp_semaphore_acquire(step, 30)); /* it has tried */
    ASSERT_OK(mp_lock_release(l));
    ASSERT_OK(mp_semaphore_acquire(step, 30)); /* it holds the lock */
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_ERR(MP_EPERM, mp_lock_release(l)); /* the child holds it */
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0));
    ASSERT_OK(mp_event_set(go));
    ASSERT_OK(mp_lock_acquire(l, 30));
    ASSERT_EQ(0, mp_test_join(p, 60));
    ASSERT_OK(mp_lock_release(l));
    ASSERT_FALSE(mp_lock_locked(l));
    mp_lock_free(l);
    mp_semaphore_free(step);
    mp_event_free(go);
}

/* args: rlock (held twice by the parent), semaphore step, semaphore next. */
static int t_rlock_contender(const mp_args *a)
{
    mp_lock *l = mp_args_lock(a, 0);
    mp_semaphore *step = mp_args_semaphore(a, 1), *next = mp_args_semaphore(a, 2);
    ASSERT_TRUE(mp_lock_is_recursive(l));
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0));
    ASSERT_ERR(MP_EPERM, mp_lock_release(l));
    ASSERT_OK(mp_semaphore_release(step));
    ASSERT_OK(mp_semaphore_acquire(next, 30)); /* the parent released once */
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0));
    ASSERT_ERR(MP_EPERM, mp_lock_release(l));
    ASSERT_OK(mp_semaphore_release(step));
    ASSERT_OK(mp_lock_acquire(l, 30)); /* the parent releases the last one */
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_lock_release(l));
    ASSERT_OK(mp_lock_release(l));
    ASSERT_OK(mp_lock_release(l));
    ASSERT_ERR(MP_EINVAL, mp_lock_release(l));
    return 0;
}

MP_TEST(rlock_between_processes, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    mp_lock *l;
    mp_semaphore *step, *next;
    ASSERT_OK(mp_test_rlock_new(&l));
    ASSERT_OK(mp_semaphore_new(&step, 0, false));
    ASSERT_OK(mp_semaphore_new(&next, 0, false));
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_lock_acquire(l, 0));
    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_lock(a, l));
    ASSERT_OK(mp_args_add_semaphore(a, step));
    ASSERT_OK(mp_args_add_semaphore(a, next));
    mp_process *p = mp_test_start_free(ctx, t_rlock_contender, a);
    ASSERT_OK(mp_semaphore_acquire(step, 30));
    ASSERT_OK(mp_lock_release(l)); /* depth 1 */
    ASSERT_OK(mp_semaphore_release(next));
    ASSERT_OK(mp_semaphore_acquire(step, 30));
    ASSERT_OK(mp_lock_release(l)); /* free */
    ASSERT_EQ(0, mp_test_join(p, 60));
    ASSERT_FALSE(mp_lock_locked(l));
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_lock_release(l));
    mp_lock_free(l);
    mp_semaphore_free(step);
    mp_semaphore_free(next);
}

/* ---- mutual exclusion under contention ----------------------------------- */

#define INCREMENTS 10000

/* args: lock, raw int64 value, event go.  INCREMENTS non-atomic increments
 * under the lock, with a yield inside the critical section now and then to
 * widen any window a broken lock would leave. */
static int t_increment(const mp_args *a)
{
    mp_lock *l = mp_args_lock(a, 0);
    mp_value *v = mp_args_value(a, 1);
    mp_event *go = mp_args_event(a, 2);
    ASSERT_TRUE(mp_value_lock(v) == NULL);
    volatile int64_t *p = mp_value_ptr(v);
    ASSERT_OK(mp_event_wait(go, 60));
    for (int i = 0; i < INCREMENTS; i++) {
        ASSERT_OK(mp_lock_acquire(l, MP_FOREVER));
        int64_t x = *p;
        if ((i & 127) == 0)
            sched_yield();
        *p = x + 1;
        ASSERT_OK(mp_lock_release(l));
    }
    return 0;
}

MP_TEST(lock_mutual_exclusion, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 120)
{
    mp_lock *l;
    mp_value *v;
    mp_event *go;
    ASSERT_OK(mp_test_lock_new(&l));
    ASSERT_OK(mp_value_new(&v, MP_INT64, false));
    ASSERT_OK(mp_event_new(&go));
    mp_process *p[4];
    for (int i = 0; i < 4; i++) {
        mp_args *a = args_new();
        ASSERT_OK(mp_args_add_lock(a, l));
        ASSERT_OK(mp_args_add_value(a, v));
        ASSERT_OK(mp_args_add_event(a, go));
        p[i] = mp_test_start_free(ctx, t_increment, a);
    }
    ASSERT_OK(mp_event_set(go));
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(0, mp_test_join(p[i], 60));
    ASSERT_EQ(4 * INCREMENTS, *(int64_t *)mp_value_ptr(v));
    ASSERT_FALSE(mp_lock_locked(l));
    mp_lock_free(l);
    mp_value_free(v);
    mp_event_free(go);
}

/* The same with an RLock taken twice per increment. */
static int t_increment_recursive(const mp_args *a)
{
    mp_lock *l = mp_args_lock(a, 0);
    volatile int64_t *p = mp_value_ptr(mp_args_value(a, 1));
    ASSERT_OK(mp_event_wait(mp_args_event(a, 2), 60));
    for (int i = 0; i < INCREMENTS / 2; i++) {
        ASSERT_OK(mp_lock_acquire(l, MP_FOREVER));
        ASSERT_OK(mp_lock_acquire(l, 0));
        int64_t x = *p;
        ASSERT_OK(mp_lock_release(l));
        if ((i & 127) == 0)
            sched_yield();
        *p = x + 1;
        ASSERT_OK(mp_lock_release(l));
    }
    return 0;
}

MP_TEST(rlock_mutual_exclusion, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 120)
{
    mp_lock *l;
    mp_value *v;
    mp_event *go;
    ASSERT_OK(mp_test_rlock_new(&l));
    ASSERT_OK(mp_value_new(&v, MP_INT64, false));
    ASSERT_OK(mp_event_new(&go));
    mp_process *p[3];
    for (int i = 0; i < 3; i++) {
        mp_args *a = args_new();
        ASSERT_OK(mp_args_add_lock(a, l));
        ASSERT_OK(mp_args_add_value(a, v));
        ASSERT_OK(mp_args_add_event(a, go));
        p[i] = mp_test_start_free(ctx, t_increment_recursive, a);
    }
    ASSERT_OK(mp_event_set(go));
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(0, mp_test_join(p[i], 60));
    ASSERT_EQ(3 * (INCREMENTS / 2), *(int64_t *)mp_value_ptr(v));
    mp_lock_free(l);
    mp_value_free(v);
    mp_event_free(go);
}

/* ---- owner death --------------------------------------------------------- */

/* args: lock, semaphore held, semaphore leave, int depth, int exit.  Takes
 * the lock @depth times and says so; then, told to leave, exits holding it,
 * or waits to be killed. */
static int t_hold_lock(const mp_args *a)
{
    mp_lock *l = mp_args_lock(a, 0);
    for (int64_t i = 0; i < mp_args_int(a, 3); i++)
        ASSERT_OK(mp_lock_acquire(l, 30));
    ASSERT_OK(mp_semaphore_release(mp_args_semaphore(a, 1)));
    if (mp_args_int(a, 4)) {
        ASSERT_OK(mp_semaphore_acquire(mp_args_semaphore(a, 2), 60));
        return 0; /* a normal exit, still holding it */
    }
    park();
}

/* The holder's semaphores: posted once it holds the lock; waited for before
 * it leaves. */
static mp_semaphore *holder_held, *holder_leave;

static mp_process *start_holder(mp_context *ctx, mp_lock *l, int depth, bool exit_holding)
{
    if (holder_held == NULL) {
        ASSERT_OK(mp_semaphore_new(&holder_held, 0, false));
        ASSERT_OK(mp_semaphore_new(&holder_leave, 0, false));
    }
    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_lock(a, l));
    ASSERT_OK(mp_args_add_semaphore(a, holder_held));
    ASSERT_OK(mp_args_add_semaphore(a, holder_leave));
    ASSERT_OK(mp_args_add_int(a, depth));
    ASSERT_OK(mp_args_add_int(a, exit_holding));
    mp_process *p = mp_test_start_free(ctx, t_hold_lock, a);
    ASSERT_OK(mp_semaphore_acquire(holder_held, 60));
    return p;
}

static void holder_semaphores_free(void)
{
    mp_semaphore_free(holder_held);
    mp_semaphore_free(holder_leave);
    holder_held = holder_leave = NULL;
}

/* Let an exiting holder go, and reap it. */
static void holder_leaves(mp_process *p)
{
    ASSERT_OK(mp_semaphore_release(holder_leave));
    ASSERT_EQ(0, mp_test_join(p, 60));
}

static void owner_dies(mp_context *ctx, bool recursive, bool killed)
{
    mp_lock *l;
    ASSERT_OK(recursive ? mp_test_rlock_new(&l) : mp_test_lock_new(&l));
    mp_process *p = start_holder(ctx, l, recursive ? 2 : 1, !killed);
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0));
    ASSERT_ERR(MP_EPERM, mp_lock_release(l));
    if (killed)
        mp_test_kill(p);
    else
        holder_leaves(p);
    ASSERT_TRUE(mp_lock_locked(l)); /* by the dead owner */
    ASSERT_ERR(MP_EPERM, mp_lock_release(l));

    double t0 = mp_monotonic();
    ASSERT_ERR(MP_EOWNERDEAD, mp_lock_acquire(l, 10));
    ASSERT_PROMPT(t0);
    ASSERT_TRUE(mp_lock_locked(l)); /* held now, once */
    if (recursive) {
        ASSERT_OK(mp_lock_acquire(l, 0));
        ASSERT_OK(mp_lock_release(l));
    } else {
        ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0));
    }
    ASSERT_OK(mp_lock_release(l));
    ASSERT_FALSE(mp_lock_locked(l));
    ASSERT_ERR(MP_EINVAL, mp_lock_release(l));
    /* back to normal, in this process and in another one */
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_lock_release(l));
    p = start_holder(ctx, l, 1, true);
    holder_leaves(p);
    ASSERT_ERR(MP_EOWNERDEAD, mp_lock_acquire(l, 10));
    ASSERT_OK(mp_lock_release(l));
    ASSERT_OK(mp_lock_acquire(l, 10));
    ASSERT_OK(mp_lock_release(l));
    mp_lock_free(l);
    holder_semaphores_free();
}

MP_TEST(lock_owner_killed, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    owner_dies(ctx, false, true);
}

MP_TEST(lock_owner_exits_holding_it, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    owner_dies(ctx, false, false);
}

MP_TEST(rlock_owner_killed, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    owner_dies(ctx, true, true);
}

MP_TEST(rlock_owner_exits_holding_it, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    owner_dies(ctx, true, false);
}

/* args: lock, semaphore ready.  Blocks on a lock whose owner is killed. */
static int t_blocked_acquirer(const mp_args *a)
{
    mp_lock *l = mp_args_lock(a, 0);
    ASSERT_OK(mp_semaphore_release(mp_args_semaphore(a, 1)));
    ASSERT_ERR(MP_EOWNERDEAD, mp_lock_acquire(l, 30));
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_OK(mp_lock_release(l));
    ASSERT_ERR(MP_EINVAL, mp_lock_release(l));
    return 0;
}

MP_TEST(lock_waiter_sees_owner_death, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 90)
{
    for (int recursive = 0; recursive < 2; recursive++) {
        mp_lock *l;
        mp_semaphore *ready;
        ASSERT_OK(recursive ? mp_test_rlock_new(&l) : mp_test_lock_new(&l));
        ASSERT_OK(mp_semaphore_new(&ready, 0, false));
        mp_process *owner = start_holder(ctx, l, recursive ? 2 : 1, false);
        mp_args *a = args_new();
        ASSERT_OK(mp_args_add_lock(a, l));
        ASSERT_OK(mp_args_add_semaphore(a, ready));
        mp_process *waiter = mp_test_start_free(ctx, t_blocked_acquirer, a);
        ASSERT_OK(mp_semaphore_acquire(ready, 60));
        sleep_s(0.2); /* let it block (it gets MP_EOWNERDEAD either way) */
        ASSERT_TRUE(mp_process_is_alive(waiter));
        mp_test_kill(owner);
        ASSERT_EQ(0, mp_test_join(waiter, 60));
        ASSERT_OK(mp_lock_acquire(l, 0)); /* the waiter released it */
        ASSERT_OK(mp_lock_release(l));
        mp_lock_free(l);
        mp_semaphore_free(ready);
        holder_semaphores_free();
    }
}

/* args: lock (held by the parent), semaphore ready.  Waits for the lock
 * until it is killed. */
static int t_waits_to_be_killed(const mp_args *a)
{
    ASSERT_OK(mp_semaphore_release(mp_args_semaphore(a, 1)));
    int r = mp_lock_acquire(mp_args_lock(a, 0), 60);
    MP__FAIL("a waiter meant to be killed in its wait got %d (%s)", r, mp_errname(r));
}

/* Waiters killed in their wait took nothing: the lock they waited for goes
 * to the next acquirer as a plain 0, not MP_EOWNERDEAD (they never held
 * it), and at once. */
MP_TEST(lock_waiter_killed, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    mp_lock *l;
    mp_semaphore *ready;
    ASSERT_OK(mp_test_lock_new(&l));
    ASSERT_OK(mp_semaphore_new(&ready, 0, false));
    ASSERT_OK(mp_lock_acquire(l, 0));
    mp_process *w[2];
    for (int i = 0; i < 2; i++) {
        mp_args *a = args_new();
        ASSERT_OK(mp_args_add_lock(a, l));
        ASSERT_OK(mp_args_add_semaphore(a, ready));
        w[i] = mp_test_start_free(ctx, t_waits_to_be_killed, a);
        ASSERT_OK(mp_semaphore_acquire(ready, 60));
    }
    sleep_s(0.3); /* let them block (one that has not proves less, no more) */
    for (int i = 0; i < 2; i++)
        mp_test_kill(w[i]);
    ASSERT_OK(mp_lock_release(l));
    double t0 = mp_monotonic();
    ASSERT_OK(mp_lock_acquire(l, 10));
    ASSERT_PROMPT(t0);
    ASSERT_OK(mp_lock_release(l));
    ASSERT_FALSE(mp_lock_locked(l));
    mp_lock_free(l);
    mp_semaphore_free(ready);
}

/* The kill loop: the known trap of robust mutexes that are not
 * priority-inheriting.  Producers contend on one lock without pause, each
 * holding it a little while, so at any moment most of them sleep in the
 * lock or have just been woken from it.  Each round one is SIGKILLed at a
 * random moment.  If it dies between its wake-up and taking the lock while
 * another process barged in, a plain robust mutex loses that wake-up: the
 * other sleepers are never woken again as long as no new contender comes.
 * So the survivors must progress on their own before the parent takes the
 * lock itself or starts a replacement (either would hide a lost wake-up). */
#define PRODUCERS 3

/* The kill loop's shared int64 array. */
enum {
    K_PROGRESS = 0,                /* per producer, counted outside the lock */
    K_COUNT = PRODUCERS,           /* per producer, counted under the lock */
    K_TOTAL = 2 * PRODUCERS,       /* under the lock: the sum of K_COUNT */
    K_ARM,                         /* 1: the next woken waiter dies in the window */
    K_HITS,                        /* deaths in that window */
    K_REPAIRS,                     /* MP_EOWNERDEAD seen: the total made whole */
    K_LEN
};

static int64_t *window_data; /* in a producer: its array */

/* mp__lock_fault_hook: a waiter woke holding the mutex, not yet recorded as
 * its owner; when armed, it dies right there. */
static void die_in_the_window(void)
{
    int64_t one = 1;
    if (__atomic_compare_exchange_n(&window_data[K_ARM], &one, 0, false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST)) {
        __atomic_add_fetch(&window_data[K_HITS], 1, __ATOMIC_SEQ_CST);
        raise(SIGKILL);
    }
}

/* Under the lock after MP_EOWNERDEAD: whatever the dead holder left half
 * done, the total is the sum of the counts again (the repair a program
 * makes when told). */
static void repair(int64_t *data)
{
    int64_t sum = 0;
    for (int i = 0; i < PRODUCERS; i++)
        sum += data[K_COUNT + i];
    data[K_TOTAL] = sum;
    data[K_REPAIRS]++;
}

/* args: lock, int64 array (see K_*), int slot.  Under the lock: the total,
 * then its own count, with a pause between (a kill there leaves them
 * disagreeing until the next holder repairs them). */
static int t_producer(const mp_args *a)
{
    mp_lock *l = mp_args_lock(a, 0);
    int64_t *data = mp_array_data(mp_args_array(a, 1));
    int slot = (int)mp_args_int(a, 2);
    window_data = data;
    mp__lock_fault_hook = die_in_the_window;
    volatile int64_t *total = &data[K_TOTAL], *count = &data[K_COUNT + slot];
    for (;;) {
        int r = mp_lock_acquire(l, MP_FOREVER);
        if (r != 0 && r != MP_EOWNERDEAD)
            MP__FAIL("producer: acquire returned %d (%s)", r, mp_errname(r));
        if (r == MP_EOWNERDEAD)
            repair(data);
        *total = *total + 1;
        for (volatile int spin = 0; spin < 2000; spin++)
            ;
        *count = *count + 1;
        ASSERT_OK(mp_lock_release(l));
        __atomic_add_fetch(&data[K_PROGRESS + slot], 1, __ATOMIC_RELAXED);
    }
}

static mp_process *start_producer(mp_context *ctx, mp_lock *l, mp_array *arr, int slot)
{
    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_lock(a, l));
    ASSERT_OK(mp_args_add_array(a, arr));
    ASSERT_OK(mp_args_add_int(a, slot));
    return mp_test_start_free(ctx, t_producer, a);
}

/* Every producer but @skip (-1: none) progresses within 30 s. */
static void all_progress(mp_process **p, int64_t *data, int skip, int round, const char *when)
{
    int64_t seen[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++)
        seen[i] = __atomic_load_n(&data[K_PROGRESS + i], __ATOMIC_RELAXED);
    double until = mp_monotonic() + 30;
    for (int i = 0; i < PRODUCERS; i++) {
        while (i != skip &&
               __atomic_load_n(&data[K_PROGRESS + i], __ATOMIC_RELAXED) < seen[i] + 10) {
            if (!mp_process_is_alive(p[i])) {
                int code = -1000;
                ASSERT_OK(mp_process_exitcode(p[i], &code));
                MP__FAIL("round %d: producer %d ended with code %d", round, i, code);
            }
            if (mp_monotonic() > until)
                MP__FAIL("round %d, %s: producer %d (pid %d) made no progress in 30 s while "
                         "the others did: a lost wake-up",
                         round, when, i, (int)mp_process_pid(p[i]));
            sleep_s(0.0002);
        }
    }
}

/* Arm the window and wait (up to 5 s) for a producer to die in it: its
 * index, reaped; -1 when none got there (disarmed). */
static int window_kill(mp_process **p, int64_t *data)
{
    int64_t hits = __atomic_load_n(&data[K_HITS], __ATOMIC_SEQ_CST);
    __atomic_store_n(&data[K_ARM], 1, __ATOMIC_SEQ_CST);
    double until = mp_monotonic() + 5;
    while (__atomic_load_n(&data[K_HITS], __ATOMIC_SEQ_CST) == hits) {
        if (mp_monotonic() > until) {
            int64_t one = 1;
            if (__atomic_compare_exchange_n(&data[K_ARM], &one, 0, false, __ATOMIC_SEQ_CST,
                                            __ATOMIC_SEQ_CST))
                return -1;
        }
        sleep_s(0.0005);
    }
    for (;;) { /* the one that died */
        for (int i = 0; i < PRODUCERS; i++)
            if (!mp_process_is_alive(p[i])) {
                int code = -1000;
                ASSERT_OK(mp_process_exitcode(p[i], &code));
                ASSERT_EQ(-SIGKILL, code);
                ASSERT_OK(mp_process_close(p[i]));
                return i;
            }
        ASSERT_LT(mp_monotonic(), until + 30);
        sleep_s(0.0005);
    }
}

/*
 * Producers contend for the lock while this process kills one per round:
 * every other round a woken waiter dies in the window between its wake-up
 * and recording itself as the owner (a hook there), else one dies wherever
 * the kill finds it.  Each time the others keep going, the next holder is
 * told MP_EOWNERDEAD when a holder died, and at the end the total equals
 * the sum of the counts: no kill went unreported.  The window must have
 * been hit in most of its rounds (a proxy's acquire runs on the server:
 * there, only anywhere kills).
 */
static void kill_loop(mp_context *ctx, bool recursive, int rounds)
{
    mp_lock *l;
    mp_array *arr;
    ASSERT_OK(recursive ? mp_test_rlock_new(&l) : mp_test_lock_new(&l));
    ASSERT_OK(mp_array_new(&arr, MP_INT64, K_LEN, NULL, false));
    int64_t *data = mp_array_data(arr);
    mp_process *p[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++)
        p[i] = start_producer(ctx, l, arr, i);
    unsigned seed = (unsigned)getpid();
    int owner_dead = 0, windows = 0;
    for (int round = 0; round < rounds; round++) {
        all_progress(p, data, -1, round, "before the kill");
        int victim = -1;
        if (round % 2 == 0 && !mp_test_proxied()) {
            windows++;
            victim = window_kill(p, data);
        }
        if (victim < 0) {
            sleep_s((double)(rand_r(&seed) % 1000) / 1e6);
            victim = round % PRODUCERS;
            mp_test_kill(p[victim]);
        }
        all_progress(p, data, victim, round, "after the kill");
        double t0 = mp_monotonic();
        int r = mp_lock_acquire(l, 30);
        if (r != 0 && r != MP_EOWNERDEAD)
            MP__FAIL("round %d: the parent's acquire returned %d (%s) after %.1f s", round, r,
                     mp_errname(r), mp_monotonic() - t0);
        if (r == MP_EOWNERDEAD)
            repair(data);
        owner_dead += r == MP_EOWNERDEAD;
        ASSERT_OK(mp_lock_release(l));
        p[victim] = start_producer(ctx, l, arr, victim);
    }
    for (int i = 0; i < PRODUCERS; i++)
        mp_test_kill(p[i]);
    int r = mp_lock_acquire(l, 30);
    ASSERT_TRUE(r == 0 || r == MP_EOWNERDEAD);
    if (r == MP_EOWNERDEAD)
        repair(data);
    int64_t sum = 0;
    for (int i = 0; i < PRODUCERS; i++)
        sum += data[K_COUNT + i];
    ASSERT_EQ(sum, data[K_TOTAL]); /* every holder's death was reported */
    ASSERT_GT(data[K_TOTAL], 0);
    ASSERT_OK(mp_lock_release(l));
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_lock_release(l));
    int64_t hits = data[K_HITS];
    printf("kill loop: %d rounds; %lld of %d woken waiters killed in the window; the parent "
           "inherited a dead owner's lock %d times; %lld repairs; %lld increments\n",
           rounds, (long long)hits, windows, owner_dead, (long long)data[K_REPAIRS],
           (long long)data[K_TOTAL]);
    ASSERT_GE(hits * 2, windows); /* the window was really reached */
    ASSERT_GE(data[K_REPAIRS], hits); /* each such death told to someone */
    mp_lock_free(l);
    mp_array_free(arr);
}

MP_TEST(lock_kill_loop, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 300)
{
    kill_loop(ctx, false, 200);
}

MP_TEST(rlock_kill_loop, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 300)
{
    kill_loop(ctx, true, 100);
}

/* ---- Semaphore / BoundedSemaphore ---------------------------------------- */

static int sem_value(mp_semaphore *s)
{
    int v = -12345;
    ASSERT_OK(mp_semaphore_value(s, &v));
    return v;
}

MP_TEST(semaphore_basics, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    mp_semaphore *s;
    ASSERT_OK(mp_test_semaphore_new(&s, 2));
    ASSERT_EQ(2, sem_value(s));
    ASSERT_OK(mp_semaphore_acquire(s, MP_FOREVER));
    ASSERT_EQ(1, sem_value(s));
    ASSERT_OK(mp_semaphore_acquire(s, 0));
    ASSERT_EQ(0, sem_value(s));
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_semaphore_acquire(s, 0));
    ASSERT_PROMPT(t0);
    ASSERT_EQ(0, sem_value(s));
    t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_semaphore_acquire(s, 0.3));
    ASSERT_WAITED(t0, 0.3);
    ASSERT_EQ(0, sem_value(s));
    ASSERT_OK(mp_semaphore_release(s));
    ASSERT_EQ(1, sem_value(s));
    ASSERT_OK(mp_semaphore_release(s));
    ASSERT_EQ(2, sem_value(s));
    ASSERT_OK(mp_semaphore_release(s)); /* unbounded: past the initial value */
    ASSERT_EQ(3, sem_value(s));
    ASSERT_OK(mp_semaphore_release(s));
    ASSERT_EQ(4, sem_value(s));
    for (int i = 4; i > 0; i--)
        ASSERT_OK(mp_semaphore_acquire(s, 0));
    ASSERT_ERR(MP_ETIMEDOUT, mp_semaphore_acquire(s, 0));
    mp_semaphore_free(s);

    /* Semaphore(0) */
    ASSERT_OK(mp_test_semaphore_new(&s, 0));
    ASSERT_EQ(0, sem_value(s));
    ASSERT_ERR(MP_ETIMEDOUT, mp_semaphore_acquire(s, 0));
    t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_semaphore_acquire(s, 0.1));
    ASSERT_WAITED(t0, 0.1);
    ASSERT_OK(mp_semaphore_release(s));
    ASSERT_OK(mp_semaphore_acquire(s, MP_FOREVER));
    mp_semaphore_free(s);

    /* a large value */
    ASSERT_OK(mp_test_semaphore_new(&s, INT32_MAX));
    ASSERT_EQ(INT32_MAX, sem_value(s));
    ASSERT_OK(mp_semaphore_acquire(s, 0));
    ASSERT_EQ(INT32_MAX - 1, sem_value(s));
    mp_semaphore_free(s);
}

MP_TEST(bounded_semaphore, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    mp_semaphore *s;
    ASSERT_OK(mp_test_bounded_semaphore_new(&s, 2));
    ASSERT_EQ(2, sem_value(s));
    ASSERT_ERR(MP_EINVAL, mp_semaphore_release(s)); /* at the initial value already */
    ASSERT_EQ(2, sem_value(s));
    ASSERT_OK(mp_semaphore_acquire(s, 0));
    ASSERT_OK(mp_semaphore_acquire(s, 0));
    ASSERT_ERR(MP_ETIMEDOUT, mp_semaphore_acquire(s, 0));
    ASSERT_EQ(0, sem_value(s));
    ASSERT_OK(mp_semaphore_release(s));
    ASSERT_EQ(1, sem_value(s));
    ASSERT_OK(mp_semaphore_release(s));
    ASSERT_EQ(2, sem_value(s));
    ASSERT_ERR(MP_EINVAL, mp_semaphore_release(s));
    ASSERT_ERR(MP_EINVAL, mp_semaphore_release(s));
    ASSERT_EQ(2, sem_value(s));
    ASSERT_OK(mp_semaphore_acquire(s, 0));
    ASSERT_OK(mp_semaphore_release(s));
    mp_semaphore_free(s);

    ASSERT_OK(mp_test_bounded_semaphore_new(&s, 0));
    ASSERT_ERR(MP_EINVAL, mp_semaphore_release(s));
    ASSERT_EQ(0, sem_value(s));
    ASSERT_ERR(MP_ETIMEDOUT, mp_semaphore_acquire(s, 0));
    mp_semaphore_free(s);
}

/* args: semaphore ping (unbounded, 0), semaphore pong (bounded 1, taken by
 * the parent), int rounds.  Acquire in the child, release in the parent and
 * the other way round. */
static int t_sem_pingpong(const mp_args *a)
{
    mp_semaphore *ping = mp_args_semaphore(a, 0), *pong = mp_args_semaphore(a, 1);
    int64_t rounds = mp_args_int(a, 2);
    for (int64_t i = 0; i < rounds; i++) {
        ASSERT_OK(mp_semaphore_acquire(ping, 30));
        ASSERT_OK(mp_semaphore_release(pong));
    }
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_semaphore_acquire(ping, 0.2));
    ASSERT_WAITED(t0, 0.2);
    ASSERT_OK(mp_semaphore_release(pong)); /* "timed out" */
    ASSERT_OK(mp_semaphore_acquire(ping, 30));
    ASSERT_OK(mp_semaphore_release(pong)); /* the parent took it back: this one fits */
    ASSERT_ERR(MP_EINVAL, mp_semaphore_release(pong)); /* bounded, in this process too */
    return 0;
}

/* args: semaphore s, semaphore ready, raw int32 value passed.  One acquire. */
static int t_sem_waiter(const mp_args *a)
{
    ASSERT_OK(mp_semaphore_release(mp_args_semaphore(a, 1)));
    ASSERT_OK(mp_semaphore_acquire(mp_args_semaphore(a, 0), 30));
    add32(mp_args_value(a, 2), 1);
    return 0;
}

MP_TEST(semaphore_between_processes, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 90)
{
    mp_semaphore *ping, *pong; /* pong is bounded */
    ASSERT_OK(mp_test_semaphore_new(&ping, 0));
    ASSERT_OK(mp_test_bounded_semaphore_new(&pong, 1));
    ASSERT_OK(mp_semaphore_acquire(pong, 0));
    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_semaphore(a, ping));
    ASSERT_OK(mp_args_add_semaphore(a, pong));
    ASSERT_OK(mp_args_add_int(a, 200));
    mp_process *p = mp_test_start_free(ctx, t_sem_pingpong, a);
    for (int i = 0; i < 200; i++) {
        ASSERT_OK(mp_semaphore_release(ping));
        ASSERT_OK(mp_semaphore_acquire(pong, 30));
    }
    ASSERT_EQ(0, sem_value(ping));
    ASSERT_OK(mp_semaphore_acquire(pong, 30)); /* its timed acquire is over */
    ASSERT_EQ(0, sem_value(pong));
    ASSERT_OK(mp_semaphore_release(ping));
    ASSERT_EQ(0, mp_test_join(p, 60));
    ASSERT_EQ(1, sem_value(pong));
    ASSERT_EQ(0, sem_value(ping));
    ASSERT_ERR(MP_EINVAL, mp_semaphore_release(pong));
    mp_semaphore_free(ping);
    mp_semaphore_free(pong);

    /* three children blocked on one semaphore: each release lets one go */
    mp_semaphore *s, *ready;
    ASSERT_OK(mp_test_semaphore_new(&s, 0));
    ASSERT_OK(mp_semaphore_new(&ready, 0, false));
    mp_value *passed = raw_int32();
    mp_process *w[3];
    for (int i = 0; i < 3; i++) {
        a = args_new();
        ASSERT_OK(mp_args_add_semaphore(a, s));
        ASSERT_OK(mp_args_add_semaphore(a, ready));
        ASSERT_OK(mp_args_add_value(a, passed));
        w[i] = mp_test_start_free(ctx, t_sem_waiter, a);
    }
    for (int i = 0; i < 3; i++)
        ASSERT_OK(mp_semaphore_acquire(ready, 60));
    sleep_s(0.2); /* let them block */
    ASSERT_EQ(0, load32(passed));
    ASSERT_OK(mp_semaphore_release(s));
    await32(passed, 1, 30);
    sleep_s(0.2);
    ASSERT_EQ(1, load32(passed)); /* one release, one waiter through */
    ASSERT_OK(mp_semaphore_release(s));
    ASSERT_OK(mp_semaphore_release(s));
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(0, mp_test_join(w[i], 60));
    ASSERT_EQ(3, load32(passed));
    ASSERT_EQ(0, sem_value(s));
    mp_semaphore_free(s);
    mp_semaphore_free(ready);
    mp_value_free(passed);
}

/* args: semaphore s (at 0), semaphore ready.  Waits on s until killed. */
static int t_sem_waits_to_be_killed(const mp_args *a)
{
    ASSERT_OK(mp_semaphore_release(mp_args_semaphore(a, 1)));
    int r = mp_semaphore_acquire(mp_args_semaphore(a, 0), 60);
    MP__FAIL("a waiter meant to be killed in its wait got %d (%s)", r, mp_errname(r));
}

/* Waiters killed in their wait took nothing: every later release is there
 * for the living. */
MP_TEST(semaphore_waiter_killed, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    mp_semaphore *s, *ready;
    ASSERT_OK(mp_test_semaphore_new(&s, 0));
    ASSERT_OK(mp_semaphore_new(&ready, 0, false));
    mp_process *w[2];
    for (int i = 0; i < 2; i++) {
        mp_args *a = args_new();
        ASSERT_OK(mp_args_add_semaphore(a, s));
        ASSERT_OK(mp_args_add_semaphore(a, ready));
        w[i] = mp_test_start_free(ctx, t_sem_waits_to_be_killed, a);
        ASSERT_OK(mp_semaphore_acquire(ready, 60));
    }
    sleep_s(0.3); /* let them block (one that has not proves less, no more) */
    for (int i = 0; i < 2; i++)
        mp_test_kill(w[i]);
    ASSERT_OK(mp_semaphore_release(s));
    ASSERT_OK(mp_semaphore_release(s));
    double t0 = mp_monotonic();
    ASSERT_OK(mp_semaphore_acquire(s, 10));
    ASSERT_OK(mp_semaphore_acquire(s, 10));
    ASSERT_PROMPT(t0);
    ASSERT_EQ(0, sem_value(s));
    ASSERT_ERR(MP_ETIMEDOUT, mp_semaphore_acquire(s, 0));
    mp_semaphore_free(s);
    mp_semaphore_free(ready);
}

/* ---- Condition ------------------------------------------------------------ */

typedef struct want32 {
    mp_value *v;
    int32_t want;
} want32;

static bool reached(void *arg)
{
    want32 *w = arg;
    return load32(w->v) >= w->want;
}

static bool always(void *arg)
{
    (void)arg;
    return true;
}

static bool never(void *arg)
{
    int *calls = arg;
    ++*calls;
    return false;
}

static void *t_cond_foreign(void *arg)
{
    mp_condition *c = arg;
    int calls = 0;
    ASSERT_ERR(MP_EPERM, mp_condition_wait(c, 0));
    ASSERT_ERR(MP_EPERM, mp_condition_wait(c, 0.1));
    ASSERT_ERR(MP_EPERM, mp_condition_wait_for(c, never, &calls, 0.1));
    ASSERT_ERR(MP_EPERM, mp_condition_notify(c, 1));
    ASSERT_ERR(MP_EPERM, mp_condition_notify_all(c));
    ASSERT_ERR(MP_EPERM, mp_condition_release(c));
    ASSERT_ERR(MP_ETIMEDOUT, mp_condition_acquire(c, 0));
    return NULL;
}

MP_TEST(condition_basics, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    mp_condition *c;
    int calls = 0;
    ASSERT_OK(mp_test_condition_new(&c, NULL));
    mp_lock *l = mp_condition_lock(c);
    ASSERT_TRUE(l != NULL);
    ASSERT_TRUE(mp_lock_is_recursive(l)); /* the default is an RLock */

    /* without the lock */
    ASSERT_ERR(MP_EPERM, mp_condition_wait(c, 0));
    ASSERT_ERR(MP_EPERM, mp_condition_wait(c, 1));
    ASSERT_ERR(MP_EPERM, mp_condition_wait(c, MP_FOREVER));
    ASSERT_ERR(MP_EPERM, mp_condition_wait_for(c, never, &calls, 0));
    ASSERT_ERR(MP_EPERM, mp_condition_notify(c, 1));
    ASSERT_ERR(MP_EPERM, mp_condition_notify_all(c));

    ASSERT_OK(mp_condition_acquire(c, 0));
    ASSERT_TRUE(mp_lock_locked(l));
    run_thread(t_cond_foreign, c); /* another thread: not the owner */
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_condition_wait(c, 0));
    ASSERT_PROMPT(t0);
    t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_condition_wait(c, 0.3));
    ASSERT_WAITED(t0, 0.3);
    ASSERT_TRUE(mp_lock_locked(l)); /* held again */
    run_thread(t_cond_foreign, c);
    ASSERT_OK(mp_condition_notify(c, 1)); /* nobody waits: nothing happens */
    ASSERT_OK(mp_condition_notify(c, 5));
    ASSERT_OK(mp_condition_notify_all(c));

    t0 = mp_monotonic();
    ASSERT_OK(mp_condition_wait_for(c, always, NULL, 0));
    ASSERT_OK(mp_condition_wait_for(c, always, NULL, MP_FOREVER));
    ASSERT_PROMPT(t0);
    ASSERT_ERR(MP_ETIMEDOUT, mp_condition_wait_for(c, never, &calls, 0));
    ASSERT_PROMPT(t0);
    ASSERT_GE(calls, 1);
    t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_condition_wait_for(c, never, &calls, 0.3));
    ASSERT_WAITED(t0, 0.3);
    ASSERT_GE(calls, 2);

    ASSERT_OK(mp_condition_release(c)); /* held exactly once */
    ASSERT_FALSE(mp_lock_locked(l));
    ASSERT_ERR(MP_EINVAL, mp_condition_release(c));
    mp_condition_free(c);
}

MP_TEST(condition_over_a_lock, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    mp_lock *l;
    mp_condition *c;
    ASSERT_OK(mp_test_lock_new(&l));
    ASSERT_OK(mp_test_condition_new(&c, l));
    mp_lock *cl = mp_condition_lock(c);
    ASSERT_TRUE(cl != NULL);
    ASSERT_FALSE(mp_lock_is_recursive(cl));
    ASSERT_OK(mp_lock_acquire(l, 0)); /* the caller's handle: the same lock */
    ASSERT_TRUE(mp_lock_locked(cl));
    ASSERT_ERR(MP_ETIMEDOUT, mp_condition_acquire(c, 0));
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_condition_wait(c, 0.2));
    ASSERT_WAITED(t0, 0.2);
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_OK(mp_condition_notify(c, 1));
    ASSERT_OK(mp_condition_release(c));
    ASSERT_FALSE(mp_lock_locked(l));
    ASSERT_ERR(MP_EINVAL, mp_lock_release(l));

    /* held by another thread: wait and notify are refused */
    holder h;
    holder_start(&h, l, 1);
    ASSERT_ERR(MP_EPERM, mp_condition_wait(c, 0.1));
    ASSERT_ERR(MP_EPERM, mp_condition_notify(c, 1));
    ASSERT_ERR(MP_EPERM, mp_condition_notify_all(c));
    ASSERT_ERR(MP_EPERM, mp_condition_release(c));
    holder_finish(&h);
    ASSERT_OK(mp_condition_acquire(c, 0));
    ASSERT_OK(mp_lock_release(l));
    mp_condition_free(c);
    mp_lock_free(l);
}

/* A condition over a Lock: a local one works; a manager's Lock proxy is
 * refused (MP_EINVAL), the condition needing a lock in shared memory. */
MP_TEST(condition_needs_a_local_lock, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    mp_lock *l;
    mp_condition *c = (mp_condition *)1;
    ASSERT_OK(mp_test_lock_new(&l));
    if (mp_test_proxied()) {
        ASSERT_ERR(MP_EINVAL, mp_condition_new(&c, l));
        ASSERT_TRUE(c == NULL);
    } else {
        ASSERT_OK(mp_test_condition_new(&c, l));
        ASSERT_OK(mp_condition_acquire(c, 0));
        ASSERT_TRUE(mp_lock_locked(l));
        ASSERT_OK(mp_condition_release(c));
        mp_condition_free(c);
    }
    ASSERT_OK(mp_lock_acquire(l, 0)); /* the lock itself is untouched */
    ASSERT_OK(mp_lock_release(l));
    mp_lock_free(l);
}

/* args: condition, semaphore asleep, raw int32 value woken.  One wait. */
static int t_cond_waiter(const mp_args *a)
{
    mp_condition *c = mp_args_condition(a, 0);
    ASSERT_OK(mp_condition_acquire(c, 30));
    ASSERT_OK(mp_semaphore_release(mp_args_semaphore(a, 1)));
    ASSERT_OK(mp_condition_wait(c, 60));
    add32(mp_args_value(a, 2), 1);
    ASSERT_OK(mp_condition_release(c));
    return 0;
}

/* Until @want waiters have counted themselves woken; then a while more,
 * and exactly @want. */
static void expect_woken(mp_condition *c, mp_value *woken, int32_t want)
{
    await32(woken, want, 30);
    sleep_s(0.3); /* room for a wrong extra wake-up to show */
    ASSERT_OK(mp_condition_acquire(c, 30));
    ASSERT_EQ(want, load32(woken));
    ASSERT_OK(mp_condition_release(c));
}

MP_TEST(condition_notify_n, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 90)
{
    enum { K = 5 };
    mp_condition *c;
    mp_semaphore *asleep;
    ASSERT_OK(mp_test_condition_new(&c, NULL));
    ASSERT_OK(mp_semaphore_new(&asleep, 0, false));
    mp_value *woken = raw_int32();
    mp_process *p[K];
    for (int i = 0; i < K; i++) {
        mp_args *a = args_new();
        ASSERT_OK(mp_args_add_condition(a, c));
        ASSERT_OK(mp_args_add_semaphore(a, asleep));
        ASSERT_OK(mp_args_add_value(a, woken));
        p[i] = mp_test_start_free(ctx, t_cond_waiter, a);
    }
    for (int i = 0; i < K; i++)
        ASSERT_OK(mp_semaphore_acquire(asleep, 60));
    /* each let the lock go only by waiting: now all K wait */
    ASSERT_OK(mp_condition_acquire(c, 30));
    ASSERT_EQ(0, load32(woken));
    ASSERT_OK(mp_condition_notify(c, 2));
    ASSERT_OK(mp_condition_release(c));
    expect_woken(c, woken, 2);

    ASSERT_OK(mp_condition_acquire(c, 30));
    ASSERT_OK(mp_condition_notify(c, 1));
    ASSERT_OK(mp_condition_release(c));
    expect_woken(c, woken, 3);

    ASSERT_OK(mp_condition_acquire(c, 30));
    ASSERT_OK(mp_condition_notify_all(c));
    ASSERT_OK(mp_condition_release(c));
    for (int i = 0; i < K; i++)
        ASSERT_EQ(0, mp_test_join(p[i], 60));
    ASSERT_EQ(K, load32(woken));

    /* nobody waits: notify does nothing, and a later waiter is not woken by it */
    ASSERT_OK(mp_condition_acquire(c, 30));
    ASSERT_OK(mp_condition_notify(c, 3));
    ASSERT_OK(mp_condition_notify_all(c));
    ASSERT_ERR(MP_ETIMEDOUT, mp_condition_wait(c, 0.1));
    ASSERT_OK(mp_condition_release(c));
    mp_condition_free(c);
    mp_semaphore_free(asleep);
    mp_value_free(woken);
}

/* args: condition, raw int32 value state.  Wakes the parent from its
 * wait, then waits for state 4. */
static int t_cond_wait_for(const mp_args *a)
{
    mp_condition *c = mp_args_condition(a, 0);
    want32 w = {mp_args_value(a, 1), 4};
    ASSERT_OK(mp_condition_acquire(c, 30)); /* possible only while the parent waits */
    ASSERT_OK(mp_condition_notify(c, 1));
    ASSERT_OK(mp_condition_wait_for(c, reached, &w, 10));
    ASSERT_EQ(4, load32(w.v));
    ASSERT_OK(mp_condition_release(c));
    ASSERT_ERR(MP_EPERM, mp_condition_notify(c, 1));
    return 0;
}

MP_TEST(condition_wait_for, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    mp_condition *c;
    ASSERT_OK(mp_test_condition_new(&c, NULL));
    mp_value *state = raw_int32();
    want32 zero = {state, 0};
    ASSERT_OK(mp_condition_acquire(c, 0));
    ASSERT_OK(mp_condition_wait_for(c, reached, &zero, 0));

    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_condition(a, c));
    ASSERT_OK(mp_args_add_value(a, state));
    mp_process *p = mp_test_start_free(ctx, t_cond_wait_for, a);
    ASSERT_OK(mp_condition_wait(c, 10)); /* the child's notify */
    for (int i = 0; i < 4; i++) {
        store32(state, i + 1);
        ASSERT_OK(mp_condition_notify(c, 1));
        ASSERT_OK(mp_condition_release(c));
        ASSERT_OK(mp_condition_acquire(c, 30));
    }
    ASSERT_OK(mp_condition_release(c));
    ASSERT_EQ(0, mp_test_join(p, 60));

    /* wait_for with a timeout: the predicate stays false */
    want32 five = {state, 5};
    ASSERT_OK(mp_condition_acquire(c, 0));
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_condition_wait_for(c, reached, &five, 0.3));
    ASSERT_WAITED(t0, 0.3);
    ASSERT_OK(mp_condition_release(c)); /* held again */
    ASSERT_ERR(MP_EINVAL, mp_condition_release(c));
    mp_condition_free(c);
    mp_value_free(state);
}

/* args: condition, raw int32 value flag.  Sets it and notifies; it can take
 * the lock only while the parent waits. */
static int t_cond_setter(const mp_args *a)
{
    mp_condition *c = mp_args_condition(a, 0);
    ASSERT_OK(mp_condition_acquire(c, 30));
    store32(mp_args_value(a, 1), 1);
    ASSERT_OK(mp_condition_notify_all(c));
    ASSERT_OK(mp_condition_release(c));
    return 0;
}

MP_TEST(condition_wait_releases_an_rlock_fully, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    for (int own = 0; own < 2; own++) {
        mp_lock *rl = NULL;
        mp_condition *c;
        if (own) {
            ASSERT_OK(mp_test_rlock_new(&rl));
            ASSERT_OK(mp_test_condition_new(&c, rl));
            ASSERT_OK(mp_lock_acquire(rl, 0));
            ASSERT_OK(mp_lock_acquire(rl, 0));
        } else {
            ASSERT_OK(mp_test_condition_new(&c, NULL));
            ASSERT_OK(mp_condition_acquire(c, 0));
            ASSERT_OK(mp_condition_acquire(c, 0));
        }
        mp_value *flag = raw_int32();
        want32 w = {flag, 1};
        mp_args *a = args_new();
        ASSERT_OK(mp_args_add_condition(a, c));
        ASSERT_OK(mp_args_add_value(a, flag));
        mp_process *p = mp_test_start_free(ctx, t_cond_setter, a);
        ASSERT_OK(mp_condition_wait_for(c, reached, &w, 30));
        ASSERT_EQ(1, load32(flag));
        /* restored to depth 2 */
        ASSERT_OK(mp_condition_release(c));
        ASSERT_TRUE(mp_lock_locked(mp_condition_lock(c)));
        ASSERT_OK(mp_condition_release(c));
        ASSERT_FALSE(mp_lock_locked(mp_condition_lock(c)));
        ASSERT_ERR(MP_EINVAL, mp_condition_release(c));
        ASSERT_EQ(0, mp_test_join(p, 60));
        mp_condition_free(c);
        mp_lock_free(rl);
        mp_value_free(flag);
    }
}

/* args: condition, semaphore asleep.  Waits until killed. */
static int t_cond_wait_forever(const mp_args *a)
{
    mp_condition *c = mp_args_condition(a, 0);
    ASSERT_OK(mp_condition_acquire(c, 30));
    ASSERT_OK(mp_semaphore_release(mp_args_semaphore(a, 1)));
    int r = mp_condition_wait(c, MP_FOREVER);
    (void)r;
    park();
}

/* args: condition, semaphore asleep, raw int32 value flag, int want. */
static int t_cond_wait_flag(const mp_args *a)
{
    mp_condition *c = mp_args_condition(a, 0);
    want32 w = {mp_args_value(a, 2), (int32_t)mp_args_int(a, 3)};
    ASSERT_OK(mp_condition_acquire(c, 30));
    ASSERT_OK(mp_semaphore_release(mp_args_semaphore(a, 1)));
    ASSERT_OK(mp_condition_wait_for(c, reached, &w, 30));
    ASSERT_OK(mp_condition_release(c));
    return 0;
}

static mp_process *start_flag_waiter(mp_context *ctx, mp_condition *c, mp_semaphore *asleep,
                                     mp_value *flag, int want)
{
    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_condition(a, c));
    ASSERT_OK(mp_args_add_semaphore(a, asleep));
    ASSERT_OK(mp_args_add_value(a, flag));
    ASSERT_OK(mp_args_add_int(a, want));
    return mp_test_start_free(ctx, t_cond_wait_flag, a);
}

MP_TEST(condition_waiter_killed, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 90)
{
    mp_condition *c;
    mp_semaphore *asleep;
    ASSERT_OK(mp_test_condition_new(&c, NULL));
    ASSERT_OK(mp_semaphore_new(&asleep, 0, false));
    mp_value *flag = raw_int32();

    /* two waiters killed inside wait */
    mp_process *doomed[2];
    for (int i = 0; i < 2; i++) {
        mp_args *a = args_new();
        ASSERT_OK(mp_args_add_condition(a, c));
        ASSERT_OK(mp_args_add_semaphore(a, asleep));
        doomed[i] = mp_test_start_free(ctx, t_cond_wait_forever, a);
        ASSERT_OK(mp_semaphore_acquire(asleep, 60));
    }
    ASSERT_OK(mp_condition_acquire(c, 30)); /* both wait now */
    ASSERT_OK(mp_condition_release(c));
    for (int i = 0; i < 2; i++)
        mp_test_kill(doomed[i]);

    /* this process: wait still times out (or wakes spuriously), holding the lock */
    ASSERT_OK(mp_condition_acquire(c, 10));
    double t0 = mp_monotonic();
    int r = mp_condition_wait(c, 0.3);
    if (r != 0 && r != MP_ETIMEDOUT)
        MP__FAIL("wait after a waiter was killed: %d (%s)", r, mp_errname(r));
    ASSERT_LT(mp_monotonic() - t0, 5.3);
    want32 w = {flag, 1};
    t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_condition_wait_for(c, reached, &w, 0.3));
    ASSERT_WAITED(t0, 0.3);
    ASSERT_OK(mp_condition_release(c));
    ASSERT_ERR(MP_EINVAL, mp_condition_release(c));

    /* a new waiter is woken by notify(1): by the notify itself, within
     * seconds, not by its wait_for's own 30 s timeout re-checking the
     * predicate (which would hide a notify the dead waiters swallowed) */
    mp_process *p = start_flag_waiter(ctx, c, asleep, flag, 1);
    ASSERT_OK(mp_semaphore_acquire(asleep, 60));
    ASSERT_OK(mp_condition_acquire(c, 30));
    store32(flag, 1);
    t0 = mp_monotonic();
    ASSERT_OK(mp_condition_notify(c, 1));
    ASSERT_OK(mp_condition_release(c));
    ASSERT_EQ(0, mp_test_join(p, 60));
    ASSERT_LT(mp_monotonic() - t0, 5.0); /* its own timeout: 30 s */

    /* two more, by notify_all */
    mp_process *q[2];
    for (int i = 0; i < 2; i++) {
        q[i] = start_flag_waiter(ctx, c, asleep, flag, 2);
        ASSERT_OK(mp_semaphore_acquire(asleep, 60));
    }
    ASSERT_OK(mp_condition_acquire(c, 30));
    store32(flag, 2);
    t0 = mp_monotonic();
    ASSERT_OK(mp_condition_notify_all(c));
    ASSERT_OK(mp_condition_release(c));
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(0, mp_test_join(q[i], 60));
    ASSERT_LT(mp_monotonic() - t0, 5.0); /* its own timeout: 30 s */
    mp_condition_free(c);
    mp_semaphore_free(asleep);
    mp_value_free(flag);
}

/* A notify is for the waiters waiting when it is made: a wait that starts
 * later (here the notifier's own) must not take it from them. */
static void *t_notify_then_wait(void *arg)
{
    mp_condition *c = arg;
    ASSERT_OK(mp_condition_acquire(c, 30)); /* only once the main thread waits */
    ASSERT_OK(mp_condition_notify(c, 1));
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_condition_wait(c, 0.2)); /* nobody notified this one */
    ASSERT_WAITED(t0, 0.2);
    ASSERT_OK(mp_condition_release(c));
    return NULL;
}

MP_TEST(condition_notify_is_not_taken_by_a_later_waiter, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    mp_condition *c;
    ASSERT_OK(mp_test_condition_new(&c, NULL));
    for (int i = 0; i < 10; i++) {
        ASSERT_OK(mp_condition_acquire(c, 0));
        pthread_t t;
        ASSERT_EQ(0, pthread_create(&t, NULL, t_notify_then_wait, c));
        double t0 = mp_monotonic();
        ASSERT_OK(mp_condition_wait(c, 10));
        ASSERT_LT(mp_monotonic() - t0, 5);
        ASSERT_OK(mp_condition_release(c));
        ASSERT_EQ(0, pthread_join(t, NULL));
    }
    mp_condition_free(c);
}

/* args: condition, semaphore asleep.  Notified while it waits; the notifier
 * is killed holding the lock. */
static int t_cond_waiter_inherits(const mp_args *a)
{
    mp_condition *c = mp_args_condition(a, 0);
    ASSERT_OK(mp_condition_acquire(c, 30));
    ASSERT_OK(mp_semaphore_release(mp_args_semaphore(a, 1)));
    ASSERT_ERR(MP_EOWNERDEAD, mp_condition_wait(c, 30));
    ASSERT_OK(mp_condition_release(c)); /* held, once */
    ASSERT_ERR(MP_EINVAL, mp_condition_release(c));
    return 0;
}

/* args: condition, semaphore held.  Notifies and dies holding the lock. */
static int t_cond_notify_and_hold(const mp_args *a)
{
    mp_condition *c = mp_args_condition(a, 0);
    ASSERT_OK(mp_condition_acquire(c, 30)); /* only once the waiter waits */
    ASSERT_OK(mp_condition_notify(c, 1));
    ASSERT_OK(mp_semaphore_release(mp_args_semaphore(a, 1)));
    park();
}

MP_TEST(condition_lock_owner_killed, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    mp_condition *c;
    mp_semaphore *sem;
    ASSERT_OK(mp_test_condition_new(&c, NULL));
    ASSERT_OK(mp_semaphore_new(&sem, 0, false));
    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_condition(a, c));
    ASSERT_OK(mp_args_add_semaphore(a, sem));
    mp_process *waiter = mp_test_start_free(ctx, t_cond_waiter_inherits, a);
    ASSERT_OK(mp_semaphore_acquire(sem, 60));
    a = args_new();
    ASSERT_OK(mp_args_add_condition(a, c));
    ASSERT_OK(mp_args_add_semaphore(a, sem));
    mp_process *owner = mp_test_start_free(ctx, t_cond_notify_and_hold, a);
    ASSERT_OK(mp_semaphore_acquire(sem, 60));
    mp_test_kill(owner);
    ASSERT_EQ(0, mp_test_join(waiter, 60));
    ASSERT_OK(mp_condition_acquire(c, 0));
    ASSERT_OK(mp_condition_release(c));
    mp_condition_free(c);
    mp_semaphore_free(sem);
}

/* ---- Event ---------------------------------------------------------------- */

MP_TEST(event_basics, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    mp_event *e;
    ASSERT_OK(mp_test_event_new(&e));
    ASSERT_FALSE(mp_event_is_set(e));
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_event_wait(e, 0));
    ASSERT_PROMPT(t0);
    t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_event_wait(e, 0.3));
    ASSERT_WAITED(t0, 0.3);

    ASSERT_OK(mp_event_set(e));
    ASSERT_TRUE(mp_event_is_set(e));
    t0 = mp_monotonic();
    ASSERT_OK(mp_event_wait(e, MP_FOREVER));
    ASSERT_OK(mp_event_wait(e, 0));
    ASSERT_OK(mp_event_wait(e, 0.3));
    ASSERT_PROMPT(t0);
    ASSERT_OK(mp_event_set(e)); /* again: still set */
    ASSERT_TRUE(mp_event_is_set(e));

    ASSERT_OK(mp_event_clear(e));
    ASSERT_FALSE(mp_event_is_set(e));
    ASSERT_OK(mp_event_clear(e));
    ASSERT_FALSE(mp_event_is_set(e));
    ASSERT_ERR(MP_ETIMEDOUT, mp_event_wait(e, 0));
    t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_event_wait(e, 0.1));
    ASSERT_WAITED(t0, 0.1);
    mp_event_free(e);
}

static void *t_set_later(void *arg)
{
    sleep_s(0.2);
    ASSERT_OK(mp_event_set(arg));
    return NULL;
}

MP_TEST(event_set_by_a_thread, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    mp_event *e;
    ASSERT_OK(mp_test_event_new(&e));
    pthread_t t;
    ASSERT_EQ(0, pthread_create(&t, NULL, t_set_later, e));
    ASSERT_OK(mp_event_wait(e, 30));
    ASSERT_TRUE(mp_event_is_set(e));
    ASSERT_EQ(0, pthread_join(t, NULL));
    mp_event_free(e);
}

/* args: event e1 (set by the parent), event e2. */
static int t_event_child(const mp_args *a)
{
    mp_event *e1 = mp_args_event(a, 0), *e2 = mp_args_event(a, 1);
    ASSERT_TRUE(mp_event_is_set(e1));
    ASSERT_OK(mp_event_wait(e1, 0));
    ASSERT_OK(mp_event_wait(e1, MP_FOREVER));
    ASSERT_OK(mp_event_clear(e1));
    ASSERT_FALSE(mp_event_is_set(e1));
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_event_wait(e1, 0.2));
    ASSERT_WAITED(t0, 0.2);
    ASSERT_FALSE(mp_event_is_set(e2));
    ASSERT_OK(mp_event_set(e2));
    return 0;
}

MP_TEST(event_between_processes, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    mp_event *e1, *e2;
    ASSERT_OK(mp_test_event_new(&e1));
    ASSERT_OK(mp_test_event_new(&e2));
    ASSERT_OK(mp_event_set(e1));
    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_event(a, e1));
    ASSERT_OK(mp_args_add_event(a, e2));
    mp_process *p = mp_test_start_free(ctx, t_event_child, a);
    ASSERT_OK(mp_event_wait(e2, 30));
    ASSERT_TRUE(mp_event_is_set(e2));
    ASSERT_EQ(0, mp_test_join(p, 60));
    ASSERT_FALSE(mp_event_is_set(e1)); /* the child cleared it */
    mp_event_free(e1);
    mp_event_free(e2);
}

/* args: event, semaphore ready, raw int32 value through. */
static int t_event_waiter(const mp_args *a)
{
    ASSERT_OK(mp_semaphore_release(mp_args_semaphore(a, 1)));
    ASSERT_OK(mp_event_wait(mp_args_event(a, 0), 30));
    add32(mp_args_value(a, 2), 1);
    return 0;
}

MP_TEST(event_releases_every_waiter, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 90)
{
    enum { K = 5 };
    mp_event *e;
    mp_semaphore *ready;
    ASSERT_OK(mp_test_event_new(&e));
    ASSERT_OK(mp_semaphore_new(&ready, 0, false));
    mp_value *through = raw_int32();
    mp_process *p[K];
    for (int i = 0; i < K; i++) {
        mp_args *a = args_new();
        ASSERT_OK(mp_args_add_event(a, e));
        ASSERT_OK(mp_args_add_semaphore(a, ready));
        ASSERT_OK(mp_args_add_value(a, through));
        p[i] = mp_test_start_free(ctx, t_event_waiter, a);
    }
    for (int i = 0; i < K; i++)
        ASSERT_OK(mp_semaphore_acquire(ready, 60));
    sleep_s(0.2); /* let them block */
    ASSERT_EQ(0, load32(through));
    ASSERT_OK(mp_event_set(e));
    for (int i = 0; i < K; i++)
        ASSERT_EQ(0, mp_test_join(p[i], 60));
    ASSERT_EQ(K, load32(through));
    ASSERT_TRUE(mp_event_is_set(e));
    mp_event_free(e);
    mp_semaphore_free(ready);
    mp_value_free(through);
}

/* ---- Barrier -------------------------------------------------------------- */

static int actions_run; /* in-process, for the plain tests */

static int count_action(const mp_args *a)
{
    ASSERT_TRUE(a == NULL);
    actions_run++;
    return 0;
}

static int failing_action(const mp_args *a)
{
    (void)a;
    return 7;
}

MP_TEST(barrier_basics, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    mp_barrier *b = (mp_barrier *)1;
    ASSERT_ERR(MP_EINVAL, mp_test_barrier_new(&b, 0, MP_FOREVER));
    ASSERT_TRUE(b == NULL);

    /* one party: every wait passes at once, with index 0 */
    ASSERT_OK(mp_test_barrier_new(&b, 1, MP_FOREVER));
    ASSERT_EQ(1, mp_barrier_parties(b));
    ASSERT_EQ(0, mp_barrier_n_waiting(b));
    ASSERT_FALSE(mp_barrier_broken(b));
    double t0 = mp_monotonic();
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(0, mp_barrier_wait(b, MP_FOREVER));
        ASSERT_EQ(0, mp_barrier_wait(b, 0));
    }
    ASSERT_PROMPT(t0);
    mp_barrier_free(b);

    /* the action runs on every pass (local only: a manager's barrier has
     * no action, an action being code the server cannot run) */
    if (!mp_test_proxied()) {
        actions_run = 0;
        ASSERT_OK(mp_barrier_new(&b, 1, count_action, MP_FOREVER));
        for (int i = 0; i < 3; i++)
            ASSERT_EQ(0, mp_barrier_wait(b, 1));
        ASSERT_EQ(3, actions_run);
        mp_barrier_free(b);

        /* an action that fails breaks it */
        ASSERT_OK(mp_barrier_new(&b, 1, failing_action, MP_FOREVER));
        ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, 1));
        ASSERT_TRUE(mp_barrier_broken(b));
        ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, 1));
        ASSERT_OK(mp_barrier_reset(b));
        ASSERT_FALSE(mp_barrier_broken(b));
        mp_barrier_free(b);
    }

    /* a lone waiter of two times out with the default timeout and breaks it */
    ASSERT_OK(mp_test_barrier_new(&b, 2, 0.3));
    ASSERT_EQ(2, mp_barrier_parties(b));
    t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_barrier_wait(b, MP_FOREVER));
    ASSERT_WAITED(t0, 0.3);
    ASSERT_TRUE(mp_barrier_broken(b));
    ASSERT_EQ(0, mp_barrier_n_waiting(b));
    t0 = mp_monotonic();
    ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, 0));
    ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, 10));
    ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, MP_FOREVER));
    ASSERT_PROMPT(t0);
    ASSERT_OK(mp_barrier_reset(b));
    ASSERT_FALSE(mp_barrier_broken(b));
    ASSERT_EQ(0, mp_barrier_n_waiting(b));
    /* an explicit timeout wins over the default */
    mp_barrier_free(b);
    ASSERT_OK(mp_test_barrier_new(&b, 2, 60));
    t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_barrier_wait(b, 0.2));
    ASSERT_WAITED(t0, 0.2);
    ASSERT_TRUE(mp_barrier_broken(b));
    ASSERT_OK(mp_barrier_reset(b));

    /* abort with nobody waiting: later waits fail until reset */
    ASSERT_OK(mp_barrier_abort(b));
    ASSERT_TRUE(mp_barrier_broken(b));
    t0 = mp_monotonic();
    ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, 0));
    ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, 5));
    ASSERT_PROMPT(t0);
    ASSERT_TRUE(mp_barrier_broken(b));
    ASSERT_OK(mp_barrier_reset(b));
    ASSERT_FALSE(mp_barrier_broken(b));
    ASSERT_OK(mp_barrier_reset(b)); /* twice: harmless */
    ASSERT_FALSE(mp_barrier_broken(b));
    mp_barrier_free(b);
}

/* Barriers between processes.  Stats shared with the action, wherever it
 * runs: [0] passes, [1] pid of the process that ran the last one. */
static int64_t *barrier_stats;

static int shared_count_action(const mp_args *a)
{
    ASSERT_TRUE(a == NULL);
    ASSERT_TRUE(barrier_stats != NULL);
    __atomic_add_fetch(&barrier_stats[0], 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&barrier_stats[1], (int64_t)getpid(), __ATOMIC_SEQ_CST);
    return 0;
}

#define BPARTIES 4
#define BPASSES 10

/* One party's passes: record the index per pass in @log, check the action
 * ran exactly once before anyone was released, in the last to arrive. */
static void barrier_party(mp_barrier *b, int32_t *log, int party)
{
    for (int pass = 0; pass < BPASSES; pass++) {
        int r = mp_barrier_wait(b, 30);
        ASSERT_GE(r, 0);
        ASSERT_LT(r, BPARTIES);
        log[pass * BPARTIES + party] = r;
        ASSERT_EQ(pass + 1, __atomic_load_n(&barrier_stats[0], __ATOMIC_SEQ_CST));
        if (r == BPARTIES - 1)
            ASSERT_EQ(getpid(), __atomic_load_n(&barrier_stats[1], __ATOMIC_SEQ_CST));
    }
}

/* args: barrier, int64 array stats, int32 array log, int party. */
static int t_barrier_party(const mp_args *a)
{
    mp_barrier *b = mp_args_barrier(a, 0);
    barrier_stats = mp_array_data(mp_args_array(a, 1));
    ASSERT_EQ(BPARTIES, mp_barrier_parties(b));
    barrier_party(b, mp_array_data(mp_args_array(a, 2)), (int)mp_args_int(a, 3));
    return 0;
}

/* Each of @n indices is 0..n-1 exactly once. */
static void assert_permutation(const int32_t *idx, int n)
{
    int seen = 0;
    for (int i = 0; i < n; i++) {
        ASSERT_GE(idx[i], 0);
        ASSERT_LT(idx[i], n);
        ASSERT_FALSE(seen & (1 << idx[i]));
        seen |= 1 << idx[i];
    }
}

/* Local only: it counts passes with an action, which a manager's barrier
 * has not (code cannot run in the server). */
MP_TEST(barrier_passes, .variants = MP_START_METHODS, .timeout_s = 90)
{
    mp_barrier *b;
    mp_array *stats, *log;
    ASSERT_OK(mp_barrier_new(&b, BPARTIES, shared_count_action, MP_FOREVER));
    ASSERT_OK(mp_array_new(&stats, MP_INT64, 2, NULL, false));
    ASSERT_OK(mp_array_new(&log, MP_INT32, BPARTIES * BPASSES, NULL, false));
    barrier_stats = mp_array_data(stats);
    mp_process *p[BPARTIES - 1];
    for (int i = 0; i < BPARTIES - 1; i++) {
        mp_args *a = args_new();
        ASSERT_OK(mp_args_add_barrier(a, b));
        ASSERT_OK(mp_args_add_array(a, stats));
        ASSERT_OK(mp_args_add_array(a, log));
        ASSERT_OK(mp_args_add_int(a, i + 1));
        p[i] = mp_test_start_free(ctx, t_barrier_party, a);
    }
    barrier_party(b, mp_array_data(log), 0);
    for (int i = 0; i < BPARTIES - 1; i++)
        ASSERT_EQ(0, mp_test_join(p[i], 60));
    ASSERT_EQ(BPASSES, barrier_stats[0]);
    int32_t *idx = mp_array_data(log);
    for (int pass = 0; pass < BPASSES; pass++)
        assert_permutation(&idx[pass * BPARTIES], BPARTIES);
    ASSERT_EQ(0, mp_barrier_n_waiting(b));
    ASSERT_FALSE(mp_barrier_broken(b));
    ASSERT_EQ(BPARTIES, mp_barrier_parties(b));
    barrier_stats = NULL;
    mp_barrier_free(b);
    mp_array_free(stats);
    mp_array_free(log);
}

/* args: barrier, semaphore ready.  One wait, which must break. */
static int t_barrier_broken_waiter(const mp_args *a)
{
    ASSERT_OK(mp_semaphore_release(mp_args_semaphore(a, 1)));
    ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(mp_args_barrier(a, 0), 30));
    return 0;
}

MP_TEST(barrier_timeout_breaks_it, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    mp_barrier *b;
    mp_semaphore *ready;
    ASSERT_OK(mp_test_barrier_new(&b, 3, MP_FOREVER));
    ASSERT_OK(mp_semaphore_new(&ready, 0, false));
    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_barrier(a, b));
    ASSERT_OK(mp_args_add_semaphore(a, ready));
    mp_process *p = mp_test_start_free(ctx, t_barrier_broken_waiter, a);
    ASSERT_OK(mp_semaphore_acquire(ready, 60));
    await_n_waiting(b, 1);
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_barrier_wait(b, 0.3));
    ASSERT_WAITED(t0, 0.3);
    ASSERT_TRUE(mp_barrier_broken(b));
    ASSERT_EQ(0, mp_test_join(p, 60)); /* it got MP_EBROKEN */
    ASSERT_EQ(0, mp_barrier_n_waiting(b));
    ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, 0));
    ASSERT_OK(mp_barrier_reset(b));
    ASSERT_FALSE(mp_barrier_broken(b));

    /* the default timeout of the barrier, for a child's wait too */
    mp_barrier_free(b);
    ASSERT_OK(mp_test_barrier_new(&b, 3, 0.3));
    a = args_new();
    ASSERT_OK(mp_args_add_barrier(a, b));
    ASSERT_OK(mp_args_add_semaphore(a, ready));
    p = mp_test_start_free(ctx, t_barrier_broken_waiter, a);
    ASSERT_OK(mp_semaphore_acquire(ready, 60));
    t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_barrier_wait(b, MP_FOREVER));
    ASSERT_WAITED(t0, 0.3);
    ASSERT_EQ(0, mp_test_join(p, 60));
    ASSERT_TRUE(mp_barrier_broken(b));
    mp_barrier_free(b);
    mp_semaphore_free(ready);
}

/* args: barrier, event again, int32 array idx, int slot.  The first wait
 * breaks; after "again" the second passes. */
static int t_barrier_twice(const mp_args *a)
{
    mp_barrier *b = mp_args_barrier(a, 0);
    mp_event *again = mp_args_event(a, 1);
    int32_t *idx = mp_array_data(mp_args_array(a, 2));
    ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, 30));
    if (again != NULL)
        ASSERT_OK(mp_event_wait(again, 30));
    int r = mp_barrier_wait(b, 30);
    ASSERT_GE(r, 0);
    idx[mp_args_int(a, 3)] = r;
    return 0;
}

static void barrier_interrupted(mp_context *ctx, bool abort)
{
    mp_barrier *b;
    mp_event *again;
    mp_array *idx;
    ASSERT_OK(mp_test_barrier_new(&b, 3, MP_FOREVER));
    ASSERT_OK(mp_event_new(&again));
    ASSERT_OK(mp_array_new(&idx, MP_INT32, 3, NULL, false));
    int32_t *ix = mp_array_data(idx);
    mp_process *p[2];
    for (int i = 0; i < 2; i++) {
        mp_args *a = args_new();
        ASSERT_OK(mp_args_add_barrier(a, b));
        ASSERT_OK(mp_args_add_event(a, again));
        ASSERT_OK(mp_args_add_array(a, idx));
        ASSERT_OK(mp_args_add_int(a, i + 1));
        p[i] = mp_test_start_free(ctx, t_barrier_twice, a);
    }
    await_n_waiting(b, 2);
    ASSERT_FALSE(mp_barrier_broken(b));
    if (abort) {
        ASSERT_OK(mp_barrier_abort(b));
        ASSERT_TRUE(mp_barrier_broken(b));
        double t0 = mp_monotonic();
        ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, 0));
        ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, 30));
        ASSERT_PROMPT(t0);
        await_n_waiting(b, 0);
        ASSERT_TRUE(mp_barrier_broken(b));
        ASSERT_OK(mp_barrier_reset(b));
    } else {
        ASSERT_OK(mp_barrier_reset(b));
    }
    ASSERT_FALSE(mp_barrier_broken(b));
    ASSERT_OK(mp_event_set(again));
    int r = mp_barrier_wait(b, 30);
    ASSERT_GE(r, 0);
    ix[0] = r;
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(0, mp_test_join(p[i], 60));
    assert_permutation(ix, 3);
    ASSERT_FALSE(mp_barrier_broken(b));
    ASSERT_EQ(0, mp_barrier_n_waiting(b));
    mp_barrier_free(b);
    mp_event_free(again);
    mp_array_free(idx);
}

MP_TEST(barrier_abort, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    barrier_interrupted(ctx, true);
}

MP_TEST(barrier_reset_while_waiting, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    barrier_interrupted(ctx, false);
}

/* Reset, then everyone waits again at once (no event in between): waiters
 * coming back from the reset must not see it broken. */
static int t_barrier_twice_no_gate(const mp_args *a)
{
    mp_barrier *b = mp_args_barrier(a, 0);
    int32_t *idx = mp_array_data(mp_args_array(a, 1));
    ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, 30));
    int r = mp_barrier_wait(b, 30);
    ASSERT_GE(r, 0);
    idx[mp_args_int(a, 2)] = r;
    return 0;
}

MP_TEST(barrier_reset_then_pass_again, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    mp_barrier *b;
    mp_array *idx;
    ASSERT_OK(mp_test_barrier_new(&b, 3, MP_FOREVER));
    ASSERT_OK(mp_array_new(&idx, MP_INT32, 3, NULL, false));
    mp_process *p[2];
    for (int i = 0; i < 2; i++) {
        mp_args *a = args_new();
        ASSERT_OK(mp_args_add_barrier(a, b));
        ASSERT_OK(mp_args_add_array(a, idx));
        ASSERT_OK(mp_args_add_int(a, i + 1));
        p[i] = mp_test_start_free(ctx, t_barrier_twice_no_gate, a);
    }
    await_n_waiting(b, 2);
    ASSERT_OK(mp_barrier_reset(b));
    int r = mp_barrier_wait(b, 30);
    ASSERT_GE(r, 0);
    ((int32_t *)mp_array_data(idx))[0] = r;
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(0, mp_test_join(p[i], 60));
    assert_permutation(mp_array_data(idx), 3);
    ASSERT_FALSE(mp_barrier_broken(b));
    mp_barrier_free(b);
    mp_array_free(idx);
}

/* Local only: a manager's barrier has no action. */
MP_TEST(barrier_failing_action_breaks_it, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_barrier *b;
    mp_semaphore *ready;
    ASSERT_OK(mp_barrier_new(&b, 2, failing_action, MP_FOREVER));
    ASSERT_OK(mp_semaphore_new(&ready, 0, false));
    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_barrier(a, b));
    ASSERT_OK(mp_args_add_semaphore(a, ready));
    mp_process *p = mp_test_start_free(ctx, t_barrier_broken_waiter, a);
    ASSERT_OK(mp_semaphore_acquire(ready, 60));
    /* whoever arrives last runs the action; both waits break */
    ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, 30));
    ASSERT_EQ(0, mp_test_join(p, 60));
    ASSERT_TRUE(mp_barrier_broken(b));
    ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, 1));
    ASSERT_OK(mp_barrier_reset(b));
    ASSERT_FALSE(mp_barrier_broken(b));
    mp_barrier_free(b);
    mp_semaphore_free(ready);
}

/* args: barrier, semaphore ready.  Waits until killed. */
static int t_barrier_wait_forever(const mp_args *a)
{
    ASSERT_OK(mp_semaphore_release(mp_args_semaphore(a, 1)));
    int r = mp_barrier_wait(mp_args_barrier(a, 0), MP_FOREVER);
    (void)r;
    park();
}

/* Local only: a manager's barrier breaks at once when a waiting party's
 * client dies (test_managers.c, manager_barrier_party_killed). */
MP_TEST(barrier_waiter_killed_counts_as_arrived, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_barrier *b;
    mp_semaphore *ready;
    ASSERT_OK(mp_test_barrier_new(&b, 2, MP_FOREVER));
    ASSERT_OK(mp_semaphore_new(&ready, 0, false));
    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_barrier(a, b));
    ASSERT_OK(mp_args_add_semaphore(a, ready));
    mp_process *p = mp_test_start_free(ctx, t_barrier_wait_forever, a);
    ASSERT_OK(mp_semaphore_acquire(ready, 60));
    await_n_waiting(b, 1);
    mp_test_kill(p);
    ASSERT_EQ(1, mp_barrier_wait(b, 10)); /* the second to arrive: the pass completes */
    ASSERT_FALSE(mp_barrier_broken(b));
    ASSERT_EQ(0, mp_barrier_n_waiting(b));
    /* the next pass needs two again */
    ASSERT_ERR(MP_ETIMEDOUT, mp_barrier_wait(b, 0.2));
    ASSERT_TRUE(mp_barrier_broken(b));
    mp_barrier_free(b);
    mp_semaphore_free(ready);
}

/* ---- objects over a connection ------------------------------------------- */

/* args: conn.  Receives a message of objects and uses each. */
static int t_conn_objects(const mp_args *a)
{
    mp_conn *c = mp_args_conn(a, 0);
    mp_args *m;
    ASSERT_OK(mp_conn_recv(c, &m));
    ASSERT_EQ(7, mp_args_count(m));
    mp_lock *l = mp_args_lock(m, 0);
    mp_semaphore *s = mp_args_semaphore(m, 1);
    mp_condition *cv = mp_args_condition(m, 2);
    mp_event *e = mp_args_event(m, 3);
    mp_barrier *b = mp_args_barrier(m, 4);
    mp_value *v = mp_args_value(m, 5);
    mp_array *arr = mp_args_array(m, 6);
    for (size_t i = 0; i < 7; i++)
        ASSERT_EQ(MP_ARG_OBJECT, mp_args_type(m, i));
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0)); /* the parent holds it */
    ASSERT_TRUE(mp_event_is_set(e));
    ASSERT_EQ(2, mp_barrier_parties(b));
    ASSERT_EQ(MP_INT32, mp_value_type(v));
    ASSERT_EQ(3, mp_array_len(arr));
    *(int32_t *)mp_value_ptr(v) = 42;
    ((int64_t *)mp_array_data(arr))[2] = 7;
    ASSERT_OK(mp_condition_acquire(cv, 10));
    ASSERT_OK(mp_condition_notify_all(cv));
    ASSERT_OK(mp_condition_release(cv));
    ASSERT_GE(mp_barrier_wait(b, 30), 0);
    ASSERT_OK(mp_semaphore_release(s));
    mp_args_free(m);
    return 0;
}

MP_TEST(objects_over_a_connection, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    mp_conn *mine, *theirs;
    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_conn(a, theirs));
    mp_process *p = mp_test_start_free(ctx, t_conn_objects, a);
    ASSERT_OK(mp_conn_close(theirs));

    mp_lock *l;
    mp_semaphore *s;
    mp_condition *cv;
    mp_event *e;
    mp_barrier *b;
    mp_value *v;
    mp_array *arr;
    ASSERT_OK(mp_test_lock_new(&l));
    ASSERT_OK(mp_test_semaphore_new(&s, 0));
    ASSERT_OK(mp_test_condition_new(&cv, NULL));
    ASSERT_OK(mp_test_event_new(&e));
    ASSERT_OK(mp_test_barrier_new(&b, 2, MP_FOREVER));
    ASSERT_OK(mp_value_new(&v, MP_INT32, true));
    ASSERT_OK(mp_array_new(&arr, MP_INT64, 3, NULL, true));
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_event_set(e));
    mp_args *m = args_new();
    ASSERT_OK(mp_args_add_lock(m, l));
    ASSERT_OK(mp_args_add_semaphore(m, s));
    ASSERT_OK(mp_args_add_condition(m, cv));
    ASSERT_OK(mp_args_add_event(m, e));
    ASSERT_OK(mp_args_add_barrier(m, b));
    ASSERT_OK(mp_args_add_value(m, v));
    ASSERT_OK(mp_args_add_array(m, arr));
    ASSERT_OK(mp_conn_send(mine, m));
    mp_args_free(m);

    ASSERT_GE(mp_barrier_wait(b, 30), 0);
    ASSERT_OK(mp_semaphore_acquire(s, 30));
    ASSERT_EQ(42, *(int32_t *)mp_value_ptr(v));
    ASSERT_EQ(7, ((int64_t *)mp_array_data(arr))[2]);
    ASSERT_EQ(0, mp_test_join(p, 60));
    ASSERT_OK(mp_lock_release(l));
    ASSERT_OK(mp_conn_close(mine));
    mp_lock_free(l);
    mp_semaphore_free(s);
    mp_condition_free(cv);
    mp_event_free(e);
    mp_barrier_free(b);
    mp_value_free(v);
    mp_array_free(arr);
}

/* ---- many objects --------------------------------------------------------- */

#define MANY 10000

/* Nothing of this process lives in /dev/shm: no descriptor, no mapping. */
static void assert_nothing_in_dev_shm(void)
{
    DIR *d = opendir("/proc/self/fd");
    ASSERT_TRUE(d != NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[300], target[512];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        if (strncmp(target, "/dev/shm/", 9) == 0)
            MP__FAIL("fd %s is %s", e->d_name, target);
    }
    closedir(d);
    FILE *m = fopen("/proc/self/maps", "re");
    ASSERT_TRUE(m != NULL);
    char line[1024];
    while (fgets(line, sizeof line, m) != NULL)
        if (strstr(line, "/dev/shm/") != NULL)
            MP__FAIL("mapped: %s", line);
    fclose(m);
}

MP_TEST(ten_thousand_locks, .timeout_s = 60)
{
    int before = mp_test_count_fds();
    mp_lock **l = calloc(MANY, sizeof *l);
    ASSERT_TRUE(l != NULL);
    for (int i = 0; i < MANY; i++)
        ASSERT_OK(i % 2 ? mp_rlock_new(&l[i]) : mp_lock_new(&l[i]));
    int during = mp_test_count_fds();
    ASSERT_LE(during, before + 4);
    assert_nothing_in_dev_shm();
    /* each is its own lock: all held at once */
    for (int i = 0; i < MANY; i++)
        ASSERT_OK(mp_lock_acquire(l[i], 0));
    for (int i = 0; i < MANY; i++) {
        ASSERT_TRUE(mp_lock_locked(l[i]));
        if (i % 2)
            ASSERT_OK(mp_lock_acquire(l[i], 0));
        else
            ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l[i], 0));
    }
    for (int i = 0; i < MANY; i++) {
        ASSERT_OK(mp_lock_release(l[i]));
        if (i % 2)
            ASSERT_OK(mp_lock_release(l[i]));
        ASSERT_FALSE(mp_lock_locked(l[i]));
    }
    for (int i = 0; i < MANY; i++)
        mp_lock_free(l[i]);
    free(l);

    /* and a thousand of each other kind */
    enum { N = 1000 };
    static mp_semaphore *s[N];
    static mp_event *e[N];
    static mp_condition *c[N];
    static mp_barrier *b[N];
    for (int i = 0; i < N; i++) {
        ASSERT_OK(mp_semaphore_new(&s[i], (unsigned)i, i % 2));
        ASSERT_OK(mp_event_new(&e[i]));
        ASSERT_OK(mp_condition_new(&c[i], NULL));
        ASSERT_OK(mp_barrier_new(&b[i], (unsigned)i + 1, NULL, MP_FOREVER));
    }
    ASSERT_LE(mp_test_count_fds(), before + 4);
    assert_nothing_in_dev_shm();
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(i, sem_value(s[i]));
        ASSERT_FALSE(mp_event_is_set(e[i]));
        ASSERT_EQ(i + 1, mp_barrier_parties(b[i]));
        mp_semaphore_free(s[i]);
        mp_event_free(e[i]);
        mp_condition_free(c[i]);
        mp_barrier_free(b[i]);
    }
    ASSERT_LE(mp_test_count_fds(), before + 4);
}

/* args: lock first, lock middle (held by the parent), lock last. */
static int t_three_of_many(const mp_args *a)
{
    int before = mp_test_count_fds();
    ASSERT_OK(mp_lock_acquire(mp_args_lock(a, 0), 0));
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(mp_args_lock(a, 1), 0));
    ASSERT_OK(mp_lock_acquire(mp_args_lock(a, 2), 0));
    ASSERT_OK(mp_lock_release(mp_args_lock(a, 0)));
    ASSERT_OK(mp_lock_release(mp_args_lock(a, 2)));
    ASSERT_LE(mp_test_count_fds(), before + 4);
    return 0;
}

MP_TEST(locks_from_many_segments_in_a_child, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_lock **l = calloc(MANY, sizeof *l);
    ASSERT_TRUE(l != NULL);
    for (int i = 0; i < MANY; i++)
        ASSERT_OK(mp_lock_new(&l[i]));
    ASSERT_OK(mp_lock_acquire(l[MANY / 2], 0));
    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_lock(a, l[0]));
    ASSERT_OK(mp_args_add_lock(a, l[MANY / 2]));
    ASSERT_OK(mp_args_add_lock(a, l[MANY - 1]));
    mp_process *p = mp_test_start_free(ctx, t_three_of_many, a);
    ASSERT_EQ(0, mp_test_join(p, 60));
    ASSERT_FALSE(mp_lock_locked(l[0]));
    ASSERT_FALSE(mp_lock_locked(l[MANY - 1]));
    ASSERT_OK(mp_lock_release(l[MANY / 2]));
    for (int i = 0; i < MANY; i++)
        mp_lock_free(l[i]);
    free(l);
}

/* ---- bad input ------------------------------------------------------------ */

MP_TEST(bad_input)
{
    ASSERT_ERR(MP_EINVAL, mp_lock_new(NULL));
    ASSERT_ERR(MP_EINVAL, mp_rlock_new(NULL));
    ASSERT_ERR(MP_EINVAL, mp_semaphore_new(NULL, 1, false));
    ASSERT_ERR(MP_EINVAL, mp_condition_new(NULL, NULL));
    ASSERT_ERR(MP_EINVAL, mp_event_new(NULL));
    ASSERT_ERR(MP_EINVAL, mp_barrier_new(NULL, 2, NULL, MP_FOREVER));
    mp_barrier *b = (mp_barrier *)1;
    ASSERT_ERR(MP_EINVAL, mp_barrier_new(&b, 0, NULL, MP_FOREVER));
    ASSERT_TRUE(b == NULL);
    mp_semaphore *s = (mp_semaphore *)1;
    ASSERT_ERR(MP_EINVAL, mp_semaphore_new(&s, (unsigned)INT32_MAX + 1u, false));
    ASSERT_TRUE(s == NULL);
    ASSERT_ERR(MP_EINVAL, mp_semaphore_new(&s, UINT_MAX, true));
    ASSERT_OK(mp_semaphore_new(&s, 1, false));
    ASSERT_ERR(MP_EINVAL, mp_semaphore_value(s, NULL));
    mp_semaphore_free(s);

    mp_args *a = args_new();
    ASSERT_ERR(MP_EINVAL, mp_args_add_lock(a, NULL));
    ASSERT_ERR(MP_EINVAL, mp_args_add_semaphore(a, NULL));
    ASSERT_ERR(MP_EINVAL, mp_args_add_condition(a, NULL));
    ASSERT_ERR(MP_EINVAL, mp_args_add_event(a, NULL));
    ASSERT_ERR(MP_EINVAL, mp_args_add_barrier(a, NULL));
    ASSERT_EQ(0, mp_args_count(a));
    mp_args_free(a);

    /* freeing NULL does nothing */
    mp_lock_free(NULL);
    mp_semaphore_free(NULL);
    mp_condition_free(NULL);
    mp_event_free(NULL);
    mp_barrier_free(NULL);
}

/* A waiter whose timeout ran out while the notifier held the lock does not
 * make the notify wait for it. */
typedef struct timed_waiter {
    mp_condition *c;
    mp_event *asleep;
    int rc;
} timed_waiter;

static void *t_timed_waiter(void *arg)
{
    timed_waiter *w = arg;
    ASSERT_OK(mp_condition_acquire(w->c, 30));
    ASSERT_OK(mp_event_set(w->asleep));
    w->rc = mp_condition_wait(w->c, 0.1);
    ASSERT_TRUE(mp_lock_locked(mp_condition_lock(w->c)));
    ASSERT_OK(mp_condition_release(w->c));
    return NULL;
}

MP_TEST(condition_notify_after_a_waiter_timed_out, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    timed_waiter w = {.rc = 12345};
    ASSERT_OK(mp_test_condition_new(&w.c, NULL));
    ASSERT_OK(mp_event_new(&w.asleep));
    pthread_t t;
    ASSERT_EQ(0, pthread_create(&t, NULL, t_timed_waiter, &w));
    ASSERT_OK(mp_event_wait(w.asleep, 30));
    ASSERT_OK(mp_condition_acquire(w.c, 30)); /* it waits now */
    sleep_s(0.5);                              /* its timeout runs out meanwhile */
    double t0 = mp_monotonic();
    ASSERT_OK(mp_condition_notify(w.c, 1));
    double took = mp_monotonic() - t0;
    ASSERT_OK(mp_condition_release(w.c));
    ASSERT_EQ(0, pthread_join(t, NULL));
    if (w.rc != 0 && w.rc != MP_ETIMEDOUT)
        MP__FAIL("the waiter's wait returned %d (%s)", w.rc, mp_errname(w.rc));
    if (took > 0.5)
        MP__FAIL("notify held the lock %.2f s for a waiter that had timed out", took);
    mp_condition_free(w.c);
    mp_event_free(w.asleep);
}
