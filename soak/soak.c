/*
 * soak.c: a chaos soak.  Everything at once -- processes, a JoinableQueue,
 * a pool, a manager (dict, queue, lock), a local lock, an event and named
 * shared memory -- while a chaos thread SIGKILLs random processes of the
 * tree at random instants; then one block of figures, every one of them
 * exact.  Exits non-zero when anything was lost, duplicated, torn, hung or
 * left behind.  Usage: soak [SECONDS] (default 300, or $SOAK_SECONDS);
 * $SOAK_METHOD chooses the start method (fork, default, or spawn).
 * docs/soak.md explains it for readers of the README.
 *
 * The pipeline of one round (P producers, C consumers, A auditors):
 *
 *   producers --JoinableQueue--> consumers --ledger--> main --pool map-->
 *     main --manager dict + manager queue--> auditors (manager clients)
 *
 * Killed at random: producers, consumers, pool workers and auditors.  Never
 * killed: the main process (it keeps the books and makes every
 * non-idempotent write) and the manager's server (its promise is about
 * its clients, not its own death).  Auditors are killed anywhere, inside
 * blocking proxy calls (get, lock acquire) too: what the server takes for
 * a client that dies there goes back.  A process the watchdog suspects of
 * a hang is spared, so that a kill does not hide it.
 *
 * The accounting, and why each figure is exact using only what the
 * library promises:
 *
 * - Ids.  Message ids are dense per round (round << 32 | index + 1); each
 *   message carries its id, a length and an FNV-1a checksum, and its
 *   payload is a function of the id, so a receiver rebuilds the expected
 *   bytes and compares them all: any difference is "torn".
 *
 * - Producers record in the ledger (named shared memory, mp_shm) "attempt
 *   = k + 1" before putting message k and "done = k + 1" after put
 *   returned.  A producer killed between the two leaves message k "in
 *   doubt": the queue promises it is either committed or not there at
 *   all.  The replacement skips it (re-putting would make a real
 *   duplicate).  At the end, an in-doubt message that was delivered counts
 *   as "committed but unrecorded", one never delivered as "interrupted put,
 *   not committed" -- neither is a loss.  Every recorded message (put
 *   returned) must be delivered exactly once, else "lost"/"duplicated".
 *
 * - Consumers take messages with mp_queue_get_into straight into their
 *   slot in the ledger, after bumping the slot's generation and clearing
 *   its header; they then append (id, generation) to their own log in the
 *   ledger.  When a consumer dies, main reads its slot: state GOT (get had
 *   returned) with no log entry of that generation -> the message was
 *   taken and is recovered from the slot; state GETTING with a whole,
 *   valid message in the slot -> the get copied it and may or may not have
 *   committed: it is a candidate, counted as delivered only if, once
 *   everything is drained, no one else received it (a kill inside get
 *   before its commit leaves the message queued for another consumer).
 *   The same protocol serves the auditors on the manager queue.
 *
 * - Delivered ids go to the pool (main maps them; the function is pure, so
 *   an item that fails with MP_EWORKER because chaos killed its worker is
 *   retried); each result is checked against the expected value.  Main,
 *   never killed, writes each result once to the manager dict (keyed by
 *   id) and once to the manager queue.  Auditors take results from that
 *   queue, check them (bytes, and the dict's value for the id) and log
 *   them as above.  Every result must be taken exactly once.
 *
 * - Locks.  Consumers, under the local lock, and auditors, under the
 *   manager's lock, increment two counters of the ledger one after the
 *   other (la/lb; ma/mb).  A kill between the two leaves them unequal;
 *   the next acquirer must then be told
 *   MP_EOWNERDEAD (it repairs, and the repair is counted).  Unequal
 *   counters found without MP_EOWNERDEAD mean mutual exclusion failed:
 *   torn.
 *
 * - Hangs.  Nothing waits forever without a watchdog: a consumer or
 *   auditor asleep in get for HANG_S while its queue held messages at
 *   most looks, a producer asleep in put while the queue had room, a pool
 *   item not back within POOL_WAIT_S, a stage that stops draining, a child
 *   that does not exit when told: each is one hang (reported on stderr
 *   with what it was), and the stuck processes are killed (not counted as
 *   chaos kills) so that the soak goes on.
 *
 * - Leaks.  After the run (pool freed, manager shut down, every process
 *   joined): children still running or unreaped, descriptors open that
 *   were not open at start, and /dev/shm names of this program (the ledger
 *   is the program's only named memory: queues live in memfds).
 *
 * Kills are counted when chaos SIGKILLed a live process: for the processes
 * main started, when it reaped one that chaos had signalled and that died
 * of SIGKILL; for pool workers (found as main's children that main did
 * not start), when the signal went to a process that was not yet a zombie.
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

enum { NPROD = 2, NCONS = 2, NAUD = 2, NWORKERS = 2, NKIDS = NPROD + NCONS + NAUD };
#define PER_PROD 3000                  /* messages per producer per round */
#define NMSG (NPROD * PER_PROD)        /* messages per round */
#define QMAX 32                        /* the JoinableQueue's bound: putters block too */
#define SLOT_CAP 512                   /* a slot's buffer; messages are at most 240 */
#define LOG_CAP (NMSG + 64)
#define HANG_S 5.0                     /* asleep this long with work there: a hang */
#define SUSPECT_S 0.25                 /* asleep this long: chaos spares it (see watchdog) */
#define POOL_WAIT_S 15.0               /* one pool item, at most */
#define EXIT_WAIT_S 5.0                /* a child told to exit, at most */
#define STOP_ID UINT64_MAX             /* the id of a "stop" message (a pill) */

/* ---- messages --------------------------------------------------------- */

typedef struct msg_hdr {
    uint64_t id;
    uint32_t len;   /* payload bytes */
    uint32_t kind;  /* 1 message, 2 result, 3 stop */
} msg_hdr;

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* The value the pool's function gives for an id (checked by main). */
static uint64_t result_of(uint64_t id) { return mix(id ^ 0x5eed5eedull); }

/* Build message @kind for @id into @out; returns its length.  A message's
 * payload (8..207 bytes) and a result's (the value, 8 bytes) follow from
 * the id alone, so any receiver can rebuild what it should have got. */
static size_t msg_build(uint64_t id, uint32_t kind, unsigned char *out)
{
    msg_hdr h = {.id = id, .kind = kind};
    unsigned char *pl = out + sizeof h;
    if (kind == 1) {
        h.len = (uint32_t)(8 + mix(id) % 200);
        uint64_t r = mix(id * 31);
        for (uint32_t i = 0; i < h.len; i++)
            pl[i] = (unsigned char)((r >> (8 * (i % 8))) ^ i);
    } else if (kind == 2) {
        uint64_t v = result_of(id);
        h.len = sizeof v;
        memcpy(pl, &v, sizeof v);
    }
    memcpy(out, &h, sizeof h);
    uint64_t sum = fnv1a(out, sizeof h + h.len);
    memcpy(out + sizeof h + h.len, &sum, sizeof sum);
    return sizeof h + h.len + sizeof sum;
}

/* Whether @b (@n bytes) is exactly the message of kind @kind it claims to
 * be; its id into *id either way (0 when too short to hold one). */
static bool msg_check(const unsigned char *b, size_t n, uint32_t kind, uint64_t *id)
{
    unsigned char want[SLOT_CAP];
    msg_hdr h;
    *id = 0;
    if (n < sizeof h + 8 || n > SLOT_CAP)
        return false;
    memcpy(&h, b, sizeof h);
    *id = h.id;
    if (h.kind == 3 && h.id == STOP_ID)
        return n == msg_build(STOP_ID, 3, want) && memcmp(want, b, n) == 0;
    if (h.kind != kind || h.id == 0 || h.id == STOP_ID)
        return false;
    return n == msg_build(h.id, kind, want) && memcmp(want, b, n) == 0;
}

static bool msg_is_stop(const unsigned char *b)
{
    msg_hdr h;
    memcpy(&h, b, sizeof h);
    return h.kind == 3 && h.id == STOP_ID;
}

static volatile uint64_t map_sink; /* keeps busy work from being optimised away */

/* For calls whose failure changes nothing here (gcc's warn_unused_result
 * is not silenced by a cast). */
static inline void ignore(int err) { (void)err; }

static uint64_t make_id(int round, size_t idx) { return (uint64_t)round << 32 | (idx + 1); }

/* The index of @id in round @round, or -1 when it is not one of its ids. */
static long idx_of(uint64_t id, int round)
{
    if (id >> 32 != (uint64_t)round)
        return -1;
    uint64_t lo = id & 0xffffffffu;
    return lo >= 1 && lo <= NMSG ? (long)(lo - 1) : -1;
}

/* ---- the ledger: named shared memory, one per round ---------------------- */

enum { S_IDLE = 0, S_GETTING = 1, S_GOT = 2 };
/* An auditor's whereabouts: waiting for go, making its queue, lock and dict
 * proxies, in get, checking, in the locked check, leaving. */
enum { W_GO = 1, W_QUEUE, W_GET, W_CHECK, W_LOCKED, W_EXIT, W_LOCK, W_DICT };

typedef struct slot {
    _Atomic uint32_t state;
    uint32_t len;
    _Atomic uint64_t gen;
    unsigned char buf[SLOT_CAP];
} slot;

typedef struct logent {
    uint64_t id, gen;
    uint32_t ok, pad;
} logent;

typedef struct plog {
    _Atomic uint64_t n;
    logent e[LOG_CAP];
} plog;

typedef struct ledger {
    _Atomic uint64_t attempt[NPROD], done[NPROD];
    slot cslot[NCONS], aslot[NAUD];
    plog clog[NCONS], alog[NAUD];
    volatile uint64_t la, lb;          /* under the local lock */
    volatile uint64_t ma, mb;          /* under the manager's lock */
    _Atomic uint64_t od_local, od_mgr; /* MP_EOWNERDEAD repairs */
    _Atomic uint64_t excl_local, excl_mgr; /* unequal counters without MP_EOWNERDEAD */
    _Atomic uint64_t dict_bad;         /* an auditor's dict value differed */
    _Atomic uint64_t errors;           /* a child's call failed */
    _Atomic int32_t last_err;
    _Atomic uint32_t where[NAUD]; /* what an auditor is doing, W_* (for a hang's report) */
    _Atomic uint32_t broke; /* SOAK_BREAK done (once) */
} ledger;

static void child_error(ledger *L, int err)
{
    atomic_store(&L->last_err, err);
    atomic_fetch_add(&L->errors, 1);
}

static void log_append(ledger *L, plog *lg, uint64_t id, uint64_t gen, bool ok)
{
    uint64_t n = atomic_load(&lg->n);
    if (n >= LOG_CAP) {
        child_error(L, MP_ENOMEM);
        _exit(3);
    }
    lg->e[n] = (logent){.id = id, .gen = gen, .ok = ok};
    atomic_store(&lg->n, n + 1); /* the entry counts from here on */
}

/* Start a get into @s: the generation names this attempt, the cleared
 * header tells a half-copied slot from a whole message. */
static uint64_t slot_arm(slot *s)
{
    /* idle first: a kill between the steps must not leave "got" with the
     * new generation and a cleared buffer */
    atomic_store(&s->state, S_IDLE);
    uint64_t g = atomic_load(&s->gen) + 1;
    memset(s->buf, 0, sizeof(msg_hdr));
    atomic_store(&s->gen, g);
    atomic_store(&s->state, S_GETTING);
    return g;
}

/* ---- self-check ----------------------------------------------------------- */

/* $SOAK_BREAK=lost|dup|torn|hang|leak breaks the pipeline on purpose, once,
 * in round 1: consumer 0 does not log its 100th message, logs it twice, or
 * sleeps before taking it; producer 0 flips a bit of its 100th message;
 * the round's ledger is not unlinked.  So one can see each figure catch
 * what it counts (the soak.break_* tests do, without chaos, which could
 * kill the breaking process first).  Never set in a real run. */
static bool breaking(const char *what)
{
    const char *b = getenv("SOAK_BREAK");
    return b != NULL && strcmp(b, what) == 0;
}

/* ---- the children ------------------------------------------------------ */

/* Arguments of every child: H ledger, Q JoinableQueue, L local lock,
 * E go, M manager, i index, i round. */
enum { A_SHM, A_Q, A_LOCK, A_GO, A_MGR, A_IDX, A_ROUND };

static int wait_go(const mp_args *a)
{
    return mp_event_wait(mp_args_event(a, A_GO), 60);
}

static int producer(const mp_args *a)
{
    ledger *L = mp_shm_buf(mp_args_shm(a, A_SHM));
    mp_queue *q = mp_args_queue(a, A_Q);
    int p = (int)mp_args_int(a, A_IDX), round = (int)mp_args_int(a, A_ROUND);
    int err = wait_go(a);
    if (err < 0) {
        child_error(L, err);
        return 2;
    }
    unsigned char buf[SLOT_CAP];
    /* resume after the last attempt: an interrupted put is never redone */
    for (uint64_t k = atomic_load(&L->attempt[p]); k < PER_PROD; k++) {
        size_t n = msg_build(make_id(round, (size_t)p * PER_PROD + k), 1, buf);
        if (round == 1 && p == 0 && k == 99 && breaking("torn") &&
            atomic_exchange(&L->broke, 1) == 0)
            buf[n / 2] ^= 1;
        atomic_store(&L->attempt[p], k + 1);
        err = mp_queue_put(q, buf, n, MP_FOREVER);
        if (err < 0) {
            child_error(L, err);
            return 2;
        }
        atomic_store(&L->done[p], k + 1);
    }
    return 0;
}

/* Take @lk and check its pair of counters (*a, *b: equal unless a holder
 * died between them, which MP_EOWNERDEAD must then have said; see the
 * top), then add one to the first.  A failure ends this child. */
static void pair_enter(ledger *L, mp_lock *lk, volatile uint64_t *a, volatile uint64_t *b,
                       _Atomic uint64_t *owner_dead, _Atomic uint64_t *unequal)
{
    int err = mp_lock_acquire(lk, 30);
    if (err == MP_EOWNERDEAD) {
        *b = *a;
        atomic_fetch_add(owner_dead, 1);
    } else if (err < 0) {
        child_error(L, err);
        _exit(2);
    } else if (*a != *b) {
        atomic_fetch_add(unequal, 1);
        *b = *a;
    }
    ++*a;
}

/* Add one to the second counter and release @lk. */
static void pair_leave(ledger *L, mp_lock *lk, volatile uint64_t *b)
{
    ++*b;
    int err = mp_lock_release(lk);
    if (err < 0) {
        child_error(L, err);
        _exit(2);
    }
}

/* Increment la then lb under the local lock (see the top). */
static void locked_pair_local(ledger *L, mp_lock *lk)
{
    pair_enter(L, lk, &L->la, &L->lb, &L->od_local, &L->excl_local);
    /* some work between the two (microseconds), so that chaos lands here
     * now and then */
    uint64_t x = L->la;
    for (int i = 0; i < 2000; i++)
        x = mix(x);
    map_sink = x;
    pair_leave(L, lk, &L->lb);
}

static int consumer(const mp_args *a)
{
    ledger *L = mp_shm_buf(mp_args_shm(a, A_SHM));
    mp_queue *q = mp_args_queue(a, A_Q);
    mp_lock *lk = mp_args_lock(a, A_LOCK);
    int c = (int)mp_args_int(a, A_IDX);
    slot *s = &L->cslot[c];
    int round = (int)mp_args_int(a, A_ROUND);
    unsigned long taken = 0;
    int err = wait_go(a);
    while (err == 0) {
        uint64_t g = slot_arm(s);
        size_t len = 0;
        bool brk = round == 1 && c == 0 && ++taken == 100 &&
                   (breaking("lost") || breaking("dup") || breaking("hang")) &&
                   atomic_exchange(&L->broke, 1) == 0;
        if (brk && breaking("hang"))
            pause(); /* asleep in "get" while messages wait */
        /* MP_FOREVER on purpose: a consumer left asleep is what the
         * watchdog looks for */
        err = mp_queue_get_into(q, s->buf, SLOT_CAP, &len, MP_FOREVER);
        if (err < 0)
            break;
        s->len = (uint32_t)len;
        atomic_store(&s->state, S_GOT);
        uint64_t id;
        bool ok = msg_check(s->buf, len, 1, &id);
        bool stop = ok && msg_is_stop(s->buf);
        if (!stop && !(brk && breaking("lost")))
            log_append(L, &L->clog[c], id, g, ok);
        if (!stop && brk && breaking("dup"))
            log_append(L, &L->clog[c], id, g, ok);
        err = mp_queue_task_done(q);
        if (err < 0 || stop)
            break;
        locked_pair_local(L, lk);
    }
    atomic_store(&s->state, S_IDLE);
    if (err < 0) {
        child_error(L, err);
        return 2;
    }
    return 0;
}

/* Acquire the manager's lock and increment ma; unlock_mgr increments mb
 * and releases (see the top).  The counters live in shared memory, not in
 * the manager: a dead client's request still in flight on another of its
 * connections (its dict proxy's) may reach the server after its lock has
 * passed on, so counters in the dict would not say whether the lock kept
 * its promise. */
static void lock_mgr(ledger *L, mp_lock *ml)
{
    pair_enter(L, ml, &L->ma, &L->mb, &L->od_mgr, &L->excl_mgr);
}

static void unlock_mgr(ledger *L, mp_lock *ml)
{
    pair_leave(L, ml, &L->mb);
}

/* A manager client: takes results from the manager's queue and checks
 * them against the manager's dict. */
static int auditor(const mp_args *a)
{
    ledger *L = mp_shm_buf(mp_args_shm(a, A_SHM));
    mp_manager *m = mp_args_manager(a, A_MGR);
    int i = (int)mp_args_int(a, A_IDX);
    slot *s = &L->aslot[i];
    mp_queue *rq = NULL;
    mp_lock *ml = NULL;
    mp_dict *d = NULL;
    mp_buf v = MP_BUF_INIT;
    unsigned long done = 0;
    atomic_store(&L->where[i], W_GO);
    int err = wait_go(a);
    atomic_store(&L->where[i], W_QUEUE);
    if (err == 0)
        err = mp_manager_queue(m, "results", 0, &rq);
    atomic_store(&L->where[i], W_LOCK);
    if (err == 0)
        err = mp_manager_lock(m, "audit", &ml);
    atomic_store(&L->where[i], W_DICT);
    if (err == 0)
        err = mp_manager_dict(m, "results", &d);
    while (err == 0) {
        uint64_t g = slot_arm(s);
        size_t len = 0;
        atomic_store(&L->where[i], W_GET);
        err = mp_queue_get_into(rq, s->buf, SLOT_CAP, &len, MP_FOREVER);
        if (err < 0)
            break;
        atomic_store(&L->where[i], W_CHECK);
        s->len = (uint32_t)len;
        atomic_store(&s->state, S_GOT);
        uint64_t id;
        bool ok = msg_check(s->buf, len, 2, &id);
        if (ok && msg_is_stop(s->buf))
            break;
        log_append(L, &L->alog[i], id, g, ok);
        atomic_store(&L->where[i], W_LOCKED);
        /* every 8th check under the manager's lock (between its counters) */
        bool locked = ++done % 8 == 0;
        if (locked)
            lock_mgr(L, ml);
        if (ok) {
            /* main set the dict before it put the result */
            err = mp_dict_get(d, &id, sizeof id, &v);
            uint64_t want = result_of(id);
            if (err == MP_ENOENT || (err == 0 && (v.len != sizeof want ||
                                                  memcmp(v.data, &want, sizeof want) != 0)))
                atomic_fetch_add(&L->dict_bad, 1);
            else if (err < 0)
                break;
            err = 0;
        }
        if (locked)
            unlock_mgr(L, ml);
    }
    atomic_store(&L->where[i], W_EXIT);
    atomic_store(&s->state, S_IDLE);
    mp_buf_free(&v);
    mp_queue_free(rq);
    mp_lock_free(ml);
    mp_dict_free(d);
    if (err < 0) {
        child_error(L, err);
        return 2;
    }
    return 0;
}

/* The pool's function: pure, so an item failed by a killed worker is
 * safely mapped again. */
typedef struct map_item { uint64_t id; } map_item;
typedef struct map_result { uint64_t id, value; } map_result;

static int map_fn(const void *in, void *out)
{
    const map_item *it = in;
    map_result *r = out;
    /* some work (tens of microseconds), so that chaos also finds workers
     * in the middle of an item */
    uint64_t x = it->id;
    for (int i = 0; i < 4000; i++)
        x = mix(x);
    r->id = it->id;
    map_sink = x;
    r->value = result_of(it->id);
    return 0;
}

/* ---- main: the figures ------------------------------------------------- */

typedef struct figures {
    double seconds;
    unsigned long rounds;
    unsigned long kills[4]; /* producers, consumers, pool workers, manager clients */
    unsigned long committed, unrecorded, interrupted;
    unsigned long delivered, rdelivered, rec_m, rec_r, drained;
    unsigned long items, retried, results;
    unsigned long od_local, od_mgr;
    unsigned long lost, dup, torn, hangs, errors;
    unsigned long procs_left, fds_left, shm_left;
} figures;

static figures F;
static const char *const kind_names[4] = {"producer", "consumer", "pool worker",
                                          "manager client"};
enum { K_PROD, K_CONS, K_WORK, K_AUD };

/* ---- main: the process table, shared with the chaos thread ------------- */

typedef struct kid {
    mp_process *p;
    int kind, idx;
    bool live;
    bool chaos;    /* chaos signalled it */
    bool retired;  /* main killed it (a hang) or told it to stop */
    bool suspect;  /* the watchdog watches it: chaos spares it */
} kid;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t chaos_cv;
static bool chaos_on, chaos_quit;
static long kill_mean_ms = 40; /* mean interval between chaos kills; 0: none */
static kid kids[NKIDS];
static pid_t manager_pid;

/* Main's children that main did not start: the pool's workers.  Under mu. */
static int pool_workers(pid_t *out, int cap)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/children", e->d_name);
        FILE *f = fopen(path, "re");
        long pid;
        while (f != NULL && fscanf(f, "%ld", &pid) == 1 && n < cap) {
            bool known = pid == manager_pid;
            for (int i = 0; i < NKIDS && !known; i++)
                known = kids[i].p != NULL && mp_process_pid(kids[i].p) == pid;
            if (!known)
                out[n++] = (pid_t)pid;
        }
        if (f != NULL)
            fclose(f);
    }
    if (d != NULL)
        closedir(d);
    return n;
}

/* A process's state letter and parent pid from /proc ('?' and 0 when it
 * cannot be read). */
static void proc_stat(pid_t pid, char *state, pid_t *ppid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    int pp = 0;
    *state = '?';
    if (p != NULL && sscanf(p + 1, " %c %d", state, &pp) != 2)
        pp = 0;
    *ppid = pp;
}

static char proc_state(pid_t pid)
{
    char st;
    pid_t pp;
    proc_stat(pid, &st, &pp);
    return st;
}

static pid_t proc_ppid(pid_t pid)
{
    char st;
    pid_t pp;
    proc_stat(pid, &st, &pp);
    return pp;
}

static void *chaos_main(void *arg)
{
    (void)arg;
    uint64_t rng = mix((uint64_t)getpid() ^ (uint64_t)time(NULL));
    pthread_mutex_lock(&mu);
    while (!chaos_quit) {
        rng = mix(rng);
        long ms = (long)(rng % (2 * (uint64_t)(kill_mean_ms > 0 ? kill_mean_ms : 1000) + 1));
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&chaos_cv, &mu, &ts);
        if (!chaos_on || chaos_quit || kill_mean_ms <= 0)
            continue;
        /* a kind first (among those with a process to kill), then one of
         * its live processes */
        pid_t w[16];
        int nw = pool_workers(w, 16), kinds[4], nk = 0;
        for (int kd = 0; kd < 4; kd++) {
            bool any = kd == K_WORK && nw > 0;
            for (int i = 0; i < NKIDS && !any; i++)
                any = kids[i].live && kids[i].kind == kd && !kids[i].retired && !kids[i].suspect;
            if (any)
                kinds[nk++] = kd;
        }
        if (nk == 0)
            continue;
        int kind = kinds[mix(rng + 1) % (uint64_t)nk];
        if (kind == K_WORK) {
            int n = nw;
            pid_t pid = w[mix(rng + 2) % (uint64_t)n];
            /* a pidfd, then a check that it is still our child: a pid
             * reused meanwhile is never signalled */
            int fd = (int)syscall(SYS_pidfd_open, pid, 0);
            if (fd < 0)
                continue;
            if (proc_ppid(pid) == getpid() && proc_state(pid) != 'Z' &&
                syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0) == 0)
                F.kills[K_WORK]++;
            close(fd);
            continue;
        }
        int cand[NKIDS], n = 0;
        for (int i = 0; i < NKIDS; i++)
            if (kids[i].live && kids[i].kind == kind && !kids[i].retired && !kids[i].suspect)
                cand[n++] = i;
        if (n == 0)
            continue;
        kid *k = &kids[cand[mix(rng + 3) % (uint64_t)n]];
        int fd = mp_process_sentinel(k->p);
        if (syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0) == 0)
            k->chaos = true;
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void chaos_set(bool on)
{
    pthread_mutex_lock(&mu);
    chaos_on = on;
    pthread_mutex_unlock(&mu); /* from here on no kill is under way */
}

/* ---- main: one round ----------------------------------------------------- */

typedef struct round_state {
    int r;
    mp_context *ctx;
    mp_shm *shm;
    ledger *L;
    mp_queue *jq;
    mp_lock *lk;
    mp_event *go;
    mp_manager *m;
    mp_pool *pool;
    mp_dict *d;
    mp_queue *rq;
    int retiring; /* the kind being stopped (not replaced), else -1 */
    uint64_t seen_c[NCONS], seen_a[NAUD];
    uint8_t indoubt[NMSG], mapped[NMSG];
    uint16_t deliv[NMSG], rdeliv[NMSG];
    long maybe_m[NMSG], maybe_r[NMSG];  /* candidates of GETTING slots */
    size_t nmaybe_m, nmaybe_r;
    size_t pending[NMSG];               /* delivered ids waiting for the pool */
    size_t npending;
    /* watchdogs: per kid, the progress mark and since when it stands */
    uint64_t wd_mark[NKIDS];
    double wd_since[NKIDS];
    unsigned wd_looks[NKIDS], wd_work[NKIDS]; /* looks since, and how many saw work */
} round_state;

static void fail(const char *what, int err)
{
    fprintf(stderr, "soak: %s: %s (%s)\n", what, mp_errname(err), mp_strerror(err));
    exit(2);
}

static int spawn_kid(round_state *R, int i)
{
    kid *k = &kids[i];
    static const mp_target_fn fns[] = {[K_PROD] = producer, [K_CONS] = consumer,
                                       [K_AUD] = auditor};
    mp_args *a = NULL;
    int err = mp_args_of(&a, "HQLEMii", R->shm, R->jq, R->lk, R->go, R->m, k->idx, R->r);
    mp_process *p = NULL;
    if (err == 0)
        err = mp_process_new(&p, R->ctx, fns[k->kind], a);
    mp_args_free(a);
    if (err < 0)
        return err;
    pthread_mutex_lock(&mu);
    err = mp_process_start(p);
    if (err == 0) {
        *k = (kid){.p = p, .kind = k->kind, .idx = k->idx, .live = true};
    }
    pthread_mutex_unlock(&mu);
    if (err < 0)
        ignore(mp_process_close(p));
    R->wd_mark[i] = UINT64_MAX;
    return err;
}

static void hang(round_state *R, const char *fmt, ...) MP_PRINTF(2, 3);
static void hang(round_state *R, const char *fmt, ...)
{
    F.hangs++;
    fprintf(stderr, "soak: round %d: HANG: ", R->r);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Kill a stuck or lingering kid on main's behalf (not a chaos kill). */
static void retire_kill(int i)
{
    pthread_mutex_lock(&mu);
    if (kids[i].live) {
        kids[i].retired = true;
        ignore(mp_process_kill(kids[i].p));
    }
    pthread_mutex_unlock(&mu);
}

static void deliver(round_state *R, uint64_t id, bool ok, bool result)
{
    long x = idx_of(id, R->r);
    if (!ok || x < 0) {
        F.torn++;
        fprintf(stderr, "soak: round %d: TORN %s (id %#llx)\n", R->r,
                result ? "result" : "message", (unsigned long long)id);
        return;
    }
    if (result) {
        R->rdeliv[x]++;
    } else {
        if (R->deliv[x]++ == 0)
            R->pending[R->npending++] = (size_t)x;
    }
}

/* New entries of the consumers' and auditors' logs. */
static void collect(round_state *R)
{
    for (int c = 0; c < NCONS; c++) {
        plog *lg = &R->L->clog[c];
        uint64_t n = atomic_load(&lg->n);
        for (; R->seen_c[c] < n; R->seen_c[c]++)
            deliver(R, lg->e[R->seen_c[c]].id, lg->e[R->seen_c[c]].ok, false);
    }
    for (int a = 0; a < NAUD; a++) {
        plog *lg = &R->L->alog[a];
        uint64_t n = atomic_load(&lg->n);
        for (; R->seen_a[a] < n; R->seen_a[a]++)
            deliver(R, lg->e[R->seen_a[a]].id, lg->e[R->seen_a[a]].ok, true);
    }
}

/* A consumer or auditor died: what its slot holds (see the top). */
static void recover_slot(round_state *R, slot *s, plog *lg, bool result)
{
    collect(R);
    uint32_t st = atomic_load(&s->state);
    uint64_t g = atomic_load(&s->gen), n = atomic_load(&lg->n), id;
    bool logged = n > 0 && lg->e[n - 1].gen == g;
    if (getenv("SOAK_TRACE")) {
        msg_hdr h;
        memcpy(&h, s->buf, sizeof h);
        fprintf(stderr, "trace: round %d: %s slot: state %u gen %llu logged %d id %#llx len %u\n",
                R->r, result ? "auditor" : "consumer", st, (unsigned long long)g, logged,
                (unsigned long long)h.id, h.len);
    }
    if (st == S_GOT && !logged) {
        bool ok = msg_check(s->buf, s->len, result ? 2 : 1, &id);
        if (!(ok && msg_is_stop(s->buf))) {
            if (result)
                F.rec_r++;
            else
                F.rec_m++;
            deliver(R, id, ok, result);
        }
    } else if (st == S_GETTING) {
        /* a whole message there: the get copied it, its commit unknown */
        msg_hdr h;
        memcpy(&h, s->buf, sizeof h);
        size_t len = sizeof h + h.len + 8;
        if (h.id != 0 && h.len <= SLOT_CAP - sizeof h - 8 && msg_check(s->buf, len, result ? 2 : 1, &id) &&
            !msg_is_stop(s->buf)) {
            long x = idx_of(id, R->r);
            if (x >= 0) {
                if (result)
                    R->maybe_r[R->nmaybe_r++] = x;
                else
                    R->maybe_m[R->nmaybe_m++] = x;
            }
        }
    }
    atomic_store(&s->state, S_IDLE);
}

/* Reap ended kids; recover, count and replace them. */
static void reap(round_state *R, double wait_s)
{
    struct pollfd pf[NKIDS];
    int map[NKIDS], n = 0;
    for (int i = 0; i < NKIDS; i++)
        if (kids[i].live) {
            pf[n] = (struct pollfd){.fd = mp_process_sentinel(kids[i].p), .events = POLLIN};
            map[n++] = i;
        }
    if (poll(pf, (nfds_t)n, (int)(wait_s * 1000)) <= 0)
        return;
    for (int j = 0; j < n; j++) {
        if (!(pf[j].revents & (POLLIN | POLLHUP)))
            continue;
        int i = map[j], code = 0;
        kid *k = &kids[i];
        if (mp_process_join(k->p, 10) < 0 || mp_process_exitcode(k->p, &code) < 0) {
            F.hangs++;
            fprintf(stderr, "soak: round %d: HANG: a dead child could not be joined\n", R->r);
            continue;
        }
        pthread_mutex_lock(&mu);
        bool chaos = k->chaos, retired = k->retired;
        if (mp_process_close(k->p) < 0)
            fprintf(stderr, "soak: close failed\n");
        k->p = NULL;
        k->live = false;
        pthread_mutex_unlock(&mu);
        if (code == -SIGKILL && chaos && !retired)
            F.kills[k->kind]++;
        if (code > 0) {
            F.errors++;
            fprintf(stderr, "soak: round %d: %s %d failed (exit %d; last error %s)\n", R->r,
                    kind_names[k->kind], k->idx, code, mp_errname(atomic_load(&R->L->last_err)));
        }
        if (k->kind == K_PROD) {
            uint64_t at = atomic_load(&R->L->attempt[k->idx]), dn = atomic_load(&R->L->done[k->idx]);
            /* the message of its last attempt (an earlier one skipped in
             * doubt leaves done behind: attempt, not done, names it) */
            if (at > dn)
                R->indoubt[(size_t)k->idx * PER_PROD + at - 1] = 1;
            if (getenv("SOAK_TRACE"))
                fprintf(stderr, "trace: round %d: producer %d ended (%d): attempt %llu done %llu\n",
                        R->r, k->idx, code, (unsigned long long)at, (unsigned long long)dn);
            if (code != 0 && at < PER_PROD) { /* its share is not all put */
                int err = spawn_kid(R, i);
                if (err < 0)
                    fail("restart a producer", err);
            }
        } else {
            bool aud = k->kind == K_AUD;
            recover_slot(R, aud ? &R->L->aslot[k->idx] : &R->L->cslot[k->idx],
                         aud ? &R->L->alog[k->idx] : &R->L->clog[k->idx], aud);
            if (code != 0 && R->retiring != k->kind) {
                int err = spawn_kid(R, i);
                if (err < 0)
                    fail("restart a child", err);
            }
        }
    }
}

/* Map the pending ids; each result goes once to the dict, then once to the
 * results queue.  Items failed by a killed worker are mapped again. */
static void map_pending(round_state *R)
{
    while (R->npending > 0) {
        size_t n = R->npending;
        map_item *items = malloc(n * sizeof *items);
        uint8_t *back = calloc(n, 1);
        for (size_t i = 0; i < n; i++)
            items[i].id = make_id(R->r, R->pending[i]);
        mp_imap *it = NULL;
        int err = mp_pool_imap(R->pool, map_fn, items, n, sizeof(map_item), sizeof(map_result), 8, false,
                               &it);
        if (err < 0)
            fail("pool imap", err);
        mp_dict_op ops[64];
        uint64_t keys[64], vals[64];
        size_t nops = 0, got = 0;
        for (;;) {
            map_result res;
            size_t index = 0;
            mp_task_error te;
            err = mp_imap_next(it, &res, &index, &te, POOL_WAIT_S);
            if (err == MP_EOF)
                break;
            if (err == MP_EWORKER) {
                F.retried++;
                continue; /* stays pending */
            }
            if (err == MP_ETIMEDOUT) {
                F.hangs++;
                fprintf(stderr, "soak: round %d: HANG: a pool item was not back in %.0f s\n",
                        R->r, POOL_WAIT_S);
                break;
            }
            if (err < 0)
                fail("pool imap_next", err);
            if (index >= n || back[index] || res.id != items[index].id ||
                res.value != result_of(res.id)) {
                F.torn++;
                fprintf(stderr, "soak: round %d: TORN pool result\n", R->r);
                continue;
            }
            back[index] = 1;
            got++;
            keys[nops] = res.id;
            vals[nops] = res.value;
            ops[nops] = (mp_dict_op){.op = MP_DICT_SET, .key = &keys[nops], .keylen = 8,
                                     .value = &vals[nops], .valuelen = 8};
            if (++nops == 64 || got == n) {
                /* the dict first: an auditor checks it on taking the result */
                if ((err = mp_dict_batch(R->d, ops, nops, NULL)) < 0)
                    fail("dict batch set", err);
                for (size_t j = 0; j < nops; j++) {
                    unsigned char buf[SLOT_CAP];
                    size_t len = msg_build(keys[j], 2, buf);
                    if ((err = mp_queue_put(R->rq, buf, len, 30)) < 0)
                        fail("put a result", err);
                    long x = idx_of(keys[j], R->r);
                    R->mapped[x]++;
                    F.results++;
                }
                nops = 0;
            }
            if (got == n)
                break;
        }
        mp_imap_free(it);
        if (nops > 0) {
            if ((err = mp_dict_batch(R->d, ops, nops, NULL)) < 0)
                fail("dict batch set", err);
            for (size_t j = 0; j < nops; j++) {
                unsigned char buf[SLOT_CAP];
                size_t len = msg_build(keys[j], 2, buf);
                if ((err = mp_queue_put(R->rq, buf, len, 30)) < 0)
                    fail("put a result", err);
                R->mapped[idx_of(keys[j], R->r)]++;
                F.results++;
            }
        }
        F.items += got;
        size_t keep = 0;
        for (size_t i = 0; i < n; i++)
            if (!back[i])
                R->pending[keep++] = R->pending[i];
        R->npending = keep;
        free(items);
        free(back);
    }
}

/* The watchdog: a getter asleep in get (a putter in put) with the same
 * progress mark for HANG_S while its queue held messages (had room) at
 * most of the looks meanwhile: a hang.  One asleep for SUSPECT_S is a
 * suspect, which chaos leaves alone so that a kill never hides a hang. */
static void watchdog(round_state *R)
{
    size_t qj = 0, qr = 0;
    if (mp_queue_qsize(R->jq, &qj) < 0)
        qj = 0;
    if (mp_queue_qsize(R->rq, &qr) < 0)
        qr = 0;
    double now = mp_monotonic();
    for (int i = 0; i < NKIDS; i++) {
        kid *k = &kids[i];
        if (!k->live || k->retired)
            continue;
        uint64_t mark;
        bool waiting, work;
        if (k->kind == K_PROD) {
            uint64_t at = atomic_load(&R->L->attempt[k->idx]);
            mark = at;
            waiting = at > atomic_load(&R->L->done[k->idx]);
            work = qj < QMAX;
        } else {
            slot *s = k->kind == K_AUD ? &R->L->aslot[k->idx] : &R->L->cslot[k->idx];
            mark = atomic_load(&s->gen);
            waiting = atomic_load(&s->state) == S_GETTING;
            work = (k->kind == K_AUD ? qr : qj) > 0;
        }
        if (mark != R->wd_mark[i] || !waiting) {
            R->wd_mark[i] = mark;
            R->wd_since[i] = now;
            R->wd_looks[i] = R->wd_work[i] = 0;
            if (k->suspect) {
                pthread_mutex_lock(&mu);
                k->suspect = false;
                pthread_mutex_unlock(&mu);
            }
            continue;
        }
        R->wd_looks[i]++;
        R->wd_work[i] += work;
        if (!k->suspect && now - R->wd_since[i] > SUSPECT_S) {
            pthread_mutex_lock(&mu);
            k->suspect = true;
            pthread_mutex_unlock(&mu);
        }
        if (now - R->wd_since[i] > HANG_S && work && 2 * R->wd_work[i] > R->wd_looks[i]) {
            hang(R, "%s %d asleep for %.1f s with work there at %u of %u looks (queue %zu)",
                 kind_names[k->kind], k->idx, now - R->wd_since[i], R->wd_work[i],
                 R->wd_looks[i], k->kind == K_AUD ? qr : qj);
            retire_kill(i);
            R->wd_mark[i] = UINT64_MAX;
        }
    }
}

static void service(round_state *R)
{
    reap(R, 0.02);
    collect(R);
    watchdog(R);
    if (R->npending >= 64)
        map_pending(R);
}

static bool any_live(int kind)
{
    for (int i = 0; i < NKIDS; i++)
        if (kids[i].live && kids[i].kind == kind)
            return true;
    return false;
}

/* Until no kid of @kind is left: stop messages, then a deadline. */
static void retire(round_state *R, int kind, mp_queue *q)
{
    unsigned char buf[SLOT_CAP];
    size_t len = msg_build(STOP_ID, 3, buf);
    for (int i = 0; i < NKIDS; i++)
        if (kids[i].live && kids[i].kind == kind) {
            kids[i].retired = true;
            int err = mp_queue_put(q, buf, len, 10);
            if (err < 0)
                fail("put a stop message", err);
        }
    double t0 = mp_monotonic();
    while (any_live(kind)) {
        reap(R, 0.05);
        if (mp_monotonic() - t0 > EXIT_WAIT_S) {
            for (int i = 0; i < NKIDS; i++)
                if (kids[i].live && kids[i].kind == kind) {
                    hang(R, "%s %d did not take its stop message in %.0f s", kind_names[kind],
                         kids[i].idx, EXIT_WAIT_S);
                    retire_kill(i);
                }
            t0 = mp_monotonic();
        }
    }
    collect(R);
}

/* What is left in @q, taken by main (only after a hang). */
static void drain(round_state *R, mp_queue *q, bool result)
{
    unsigned char buf[SLOT_CAP];
    size_t len;
    int err;
    while ((err = mp_queue_get_into(q, buf, sizeof buf, &len, 0)) == 0) {
        uint64_t id;
        bool ok = msg_check(buf, len, result ? 2 : 1, &id);
        if (ok && msg_is_stop(buf))
            continue;
        F.drained++;
        deliver(R, id, ok, result);
    }
    if (err != MP_EEMPTY)
        fail("drain a queue", err);
}

/* Wait while @busy says a stage still works; no progress for HANG_S is a
 * hang. */
static void settle(round_state *R, bool (*busy)(round_state *), const char *what)
{
    double t0 = mp_monotonic();
    uint64_t mark = 0;
    while (busy(R)) {
        service(R);
        map_pending(R);
        uint64_t now_mark = 0;
        for (int c = 0; c < NCONS; c++)
            now_mark += atomic_load(&R->L->clog[c].n);
        for (int a = 0; a < NAUD; a++)
            now_mark += atomic_load(&R->L->alog[a].n);
        if (now_mark != mark) {
            mark = now_mark;
            t0 = mp_monotonic();
        } else if (mp_monotonic() - t0 > HANG_S) {
            size_t qj = 0, qr = 0;
            ignore(mp_queue_qsize(R->jq, &qj));
            ignore(mp_queue_qsize(R->rq, &qr));
            hang(R, "%s made no progress for %.0f s (queues %zu, %zu; slots %u %u, %u %u; "
                 "auditors at W_ %u %u)", what, HANG_S, qj, qr, atomic_load(&R->L->cslot[0].state),
                 atomic_load(&R->L->cslot[1].state), atomic_load(&R->L->aslot[0].state),
                 atomic_load(&R->L->aslot[1].state), atomic_load(&R->L->where[0]),
                 atomic_load(&R->L->where[1]));
            return;
        }
    }
}

/* Work still in flight on one side: queued in @q, or a live child of
 * @kind (with its slots in @slots) not waiting in a get. */
static bool busy(mp_queue *q, int kind, slot *slots)
{
    size_t n = 0;
    if (mp_queue_qsize(q, &n) < 0 || n > 0)
        return true;
    for (int i = 0; i < NKIDS; i++)
        if (kids[i].live && kids[i].kind == kind &&
            atomic_load(&slots[kids[i].idx].state) != S_GETTING)
            return true;
    return false;
}

static bool in_busy(round_state *R)
{
    return busy(R->jq, K_CONS, R->L->cslot);
}

static bool out_busy(round_state *R)
{
    return busy(R->rq, K_AUD, R->L->aslot);
}

/* The lock pairs, checked by main (which may be the next acquirer). */
static void check_pair(round_state *R, mp_lock *l, volatile uint64_t *x, volatile uint64_t *y,
                       _Atomic uint64_t *od, _Atomic uint64_t *excl, const char *what)
{
    int err = mp_lock_acquire(l, 10);
    if (err == MP_EOWNERDEAD) {
        atomic_fetch_add(od, 1);
        *y = *x;
    } else if (err < 0) {
        hang(R, "%s: %s", what, mp_errname(err));
        return;
    } else if (*x != *y) {
        atomic_fetch_add(excl, 1);
    }
    if ((err = mp_lock_release(l)) < 0)
        fail("release a lock", err);
}

/* Every result in the dict exactly as mapped; then the keys go. */
static void check_dict(round_state *R)
{
    mp_dict_op ops[256];
    uint64_t keys[256];
    mp_buf out = MP_BUF_INIT;
    for (int pass = 0; pass < 2; pass++)
        for (size_t base = 0; base < NMSG; base += 256) {
            size_t n = 0;
            for (size_t x = base; x < NMSG && x < base + 256; x++)
                if (R->mapped[x]) {
                    keys[n] = make_id(R->r, x);
                    ops[n] = (mp_dict_op){.op = pass == 0 ? MP_DICT_GET : MP_DICT_DEL,
                                          .key = &keys[n], .keylen = 8};
                    n++;
                }
            if (n == 0)
                continue;
            int err = mp_dict_batch(R->d, ops, n, &out);
            if (err < 0)
                fail("dict batch", err);
            for (size_t j = 0; j < n; j++) {
                uint64_t want = result_of(keys[j]);
                if (ops[j].status != 0 ||
                    (pass == 0 && (ops[j].len != 8 ||
                                   memcmp((char *)out.data + ops[j].offset, &want, 8) != 0))) {
                    F.torn++;
                    fprintf(stderr, "soak: round %d: TORN dict entry %#llx (%s)\n", R->r,
                            (unsigned long long)keys[j], mp_errname(ops[j].status));
                }
            }
        }
    size_t left = 1;
    if (mp_dict_len(R->d, &left) < 0 || left != 0) {
        F.torn++;
        fprintf(stderr, "soak: round %d: the dict holds %zu keys it should not\n", R->r, left);
    }
    mp_buf_free(&out);
}

static void round_run(round_state *R, mp_lock *ml)
{
    char name[64];
    snprintf(name, sizeof name, "soak-%d-%d", (int)getpid(), R->r);
    int err = mp_shm_new(&R->shm, name, sizeof(ledger), MP_SHM_CREATE);
    if (err < 0)
        fail("mp_shm_new", err);
    R->L = mp_shm_buf(R->shm); /* zeroed: a new segment */
    if ((err = mp_joinable_queue_new(&R->jq, QMAX)) < 0 || (err = mp_event_new(&R->go)) < 0)
        fail("queue/event", err);
    R->retiring = -1;
    for (int i = 0; i < NKIDS; i++) {
        kids[i] = (kid){.kind = i < NPROD ? K_PROD : i < NPROD + NCONS ? K_CONS : K_AUD,
                        .idx = i < NPROD ? i : i < NPROD + NCONS ? i - NPROD : i - NPROD - NCONS};
        if ((err = spawn_kid(R, i)) < 0)
            fail("start a child", err);
    }
    (void)mp_event_set(R->go);
    chaos_set(true);

    /* run: until every producer has put its share */
    double tr = mp_monotonic();
    while (any_live(K_PROD))
        service(R);
    double tp = mp_monotonic();
    /* drain the JoinableQueue (chaos goes on), stop the consumers (chaos
     * off: a stop message taken by a consumer killed before it exits would
     * need another), take what is left */
    settle(R, in_busy, "the consumers");
    chaos_set(false);
    R->retiring = K_CONS;
    retire(R, K_CONS, R->jq);
    drain(R, R->jq, false);
    collect(R);
    for (size_t i = 0; i < R->nmaybe_m; i++)
        if (R->deliv[R->maybe_m[i]] == 0) {
            F.rec_m++;
            deliver(R, make_id(R->r, (size_t)R->maybe_m[i]), true, false);
        }
    map_pending(R);
    /* drain the results (chaos again, on the auditors and workers), stop
     * the auditors */
    chaos_set(true);
    settle(R, out_busy, "the manager clients");
    chaos_set(false);
    R->retiring = K_AUD;
    retire(R, K_AUD, R->rq);
    drain(R, R->rq, true);
    for (size_t i = 0; i < R->nmaybe_r; i++)
        if (R->rdeliv[R->maybe_r[i]] == 0) {
            F.rec_r++;
            R->rdeliv[R->maybe_r[i]]++;
        }
    double ta = mp_monotonic();
    check_pair(R, R->lk, &R->L->la, &R->L->lb, &R->L->od_local, &R->L->excl_local,
               "the local lock");
    check_pair(R, ml, &R->L->ma, &R->L->mb, &R->L->od_mgr, &R->L->excl_mgr,
               "the manager lock");
    check_dict(R);
    if (getenv("SOAK_VERBOSE"))
        fprintf(stderr, "soak: round %d: producers %.2f s, rest %.2f s, checks %.2f s\n", R->r,
                tp - tr, ta - tp, mp_monotonic() - ta);

    /* the books of the round */
    unsigned long lost = 0, dup = 0, torn = 0;
    for (size_t x = 0; x < NMSG; x++) {
        size_t p = x / PER_PROD, k = x % PER_PROD;
        bool recorded = k < atomic_load(&R->L->done[p]) && !R->indoubt[x];
        if (R->deliv[x] > 1)
            dup += R->deliv[x] - 1u;
        if (recorded) {
            F.committed++;
            lost += R->deliv[x] == 0;
            if (R->deliv[x] == 0)
                fprintf(stderr, "soak: round %d: LOST message %#llx (producer %zu: attempt %llu, "
                        "done %llu)\n", R->r, (unsigned long long)make_id(R->r, x), p,
                        (unsigned long long)atomic_load(&R->L->attempt[p]),
                        (unsigned long long)atomic_load(&R->L->done[p]));
        } else if (R->indoubt[x]) {
            if (R->deliv[x] > 0) {
                F.committed++;
                F.unrecorded++;
            } else {
                F.interrupted++;
            }
        } else if (R->deliv[x] > 0) {
            torn++;
            fprintf(stderr, "soak: round %d: TORN: message %#llx delivered, never put\n", R->r,
                    (unsigned long long)make_id(R->r, x));
        }
        F.delivered += R->deliv[x] > 0;
        F.rdelivered += R->rdeliv[x] > 0;
        if (R->deliv[x] > 0 && !R->mapped[x])
            lost++; /* an item the pool never gave back */
        if (R->mapped[x] > 1)
            dup += R->mapped[x] - 1u;
        if (R->mapped[x] && R->rdeliv[x] == 0) {
            lost++;
            fprintf(stderr, "soak: round %d: LOST result %#llx\n", R->r,
                    (unsigned long long)make_id(R->r, x));
        }
        if (R->rdeliv[x] > 1)
            dup += R->rdeliv[x] - 1u;
        if (!R->mapped[x] && R->rdeliv[x] > 0) {
            torn++;
            fprintf(stderr, "soak: round %d: TORN: result %#llx delivered, never put\n", R->r,
                    (unsigned long long)make_id(R->r, x));
        }
    }
    ledger *L = R->L;
    if (atomic_load(&L->excl_local) || atomic_load(&L->excl_mgr) || atomic_load(&L->dict_bad))
        fprintf(stderr, "soak: round %d: TORN: counters unequal without MP_EOWNERDEAD: "
                "local lock %llu, manager lock %llu; dict values wrong: %llu\n", R->r,
                (unsigned long long)atomic_load(&L->excl_local),
                (unsigned long long)atomic_load(&L->excl_mgr),
                (unsigned long long)atomic_load(&L->dict_bad));
    torn += atomic_load(&L->excl_local) + atomic_load(&L->excl_mgr) + atomic_load(&L->dict_bad);
    F.errors += atomic_load(&L->errors);
    F.od_local += atomic_load(&L->od_local);
    F.od_mgr += atomic_load(&L->od_mgr);
    if (lost || dup || torn)
        fprintf(stderr, "soak: round %d: lost %lu, duplicated %lu, torn %lu\n", R->r, lost, dup,
                torn);
    F.lost += lost;
    F.dup += dup;
    F.torn += torn;
    F.rounds++;

    mp_event_free(R->go);
    mp_queue_free(R->jq);
    if (!(R->r == 1 && breaking("leak")))
        ignore(mp_shm_unlink(R->shm));
    (void)mp_shm_close(R->shm);
}

/* ---- main: leaks ------------------------------------------------------- */

static int list_fds(int *out, int cap)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0, self = d ? dirfd(d) : -1;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && atoi(e->d_name) != self && n < cap)
            out[n++] = atoi(e->d_name);
    if (d != NULL)
        closedir(d);
    return n;
}

static unsigned long count_children(void)
{
    pid_t w[64];
    pthread_mutex_lock(&mu);
    manager_pid = 0;
    unsigned long n = (unsigned long)pool_workers(w, 64);
    pthread_mutex_unlock(&mu);
    for (unsigned long i = 0; i < n; i++)
        fprintf(stderr, "soak: LEAK: process %d left\n", (int)w[i]);
    int st;
    while (waitpid(-1, &st, WNOHANG) > 0)
        n++; /* one nobody reaped */
    return n;
}

static unsigned long count_shm(void)
{
    char prefix[32];
    snprintf(prefix, sizeof prefix, "soak-%d-", (int)getpid());
    unsigned long n = 0;
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            fprintf(stderr, "soak: LEAK: /dev/shm/%s left (removed now)\n", e->d_name);
            /* counted; removed, so that the run leaves nothing behind for
             * the machine (or a test running beside it) to find */
            char path[300];
            snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
            (void)unlink(path);
            n++;
        }
    if (d != NULL)
        closedir(d);
    return n;
}

static int warm_up(const mp_args *a)
{
    (void)a;
    return 0;
}

int main(int argc, char **argv)
{
    double seconds = 300;
    const char *env = getenv("SOAK_SECONDS");
    if (argc > 1)
        seconds = atof(argv[1]);
    else if (env != NULL && *env != '\0')
        seconds = atof(env);
    const char *kms = getenv("SOAK_KILL_MS");
    if (kms != NULL && *kms != '\0')
        kill_mean_ms = atol(kms);
    const char *method = getenv("SOAK_METHOD");
    if (method == NULL || *method == '\0')
        method = "fork";
    if (seconds <= 0 || (strcmp(method, "fork") != 0 && strcmp(method, "spawn") != 0)) {
        fprintf(stderr, "usage: soak [SECONDS]  ($SOAK_METHOD: fork or spawn)\n");
        return 2;
    }
    /* What the library keeps for the program's whole life (closed at
     * exit) is opened before the descriptors are counted: this process's
     * own pidfd (opened when it first starts a child: one is started and
     * joined) and the resource tracker's channel and pidfd (started with
     * a segment made and removed at once). */
    mp_context *ctx = mp_get_context(method);
    mp_process *first = NULL;
    int err = mp_process_new(&first, ctx, warm_up, NULL);
    if (err == 0)
        err = mp_process_start(first);
    if (err == 0)
        err = mp_process_join(first, 30);
    if (err == 0)
        err = mp_process_close(first);
    if (err < 0)
        fail("a first child", err);
    char name[64];
    snprintf(name, sizeof name, "soak-%d-0", (int)getpid());
    mp_shm *warm = NULL;
    err = mp_shm_new(&warm, name, 64, MP_SHM_CREATE);
    if (err < 0)
        fail("mp_shm_new", err);
    ignore(mp_shm_unlink(warm));
    ignore(mp_shm_close(warm));
    static int fds0[1024];
    int nfds0 = list_fds(fds0, 1024);

    mp_manager *m = NULL;
    mp_pool *pool = NULL;
    mp_lock *lk = NULL, *ml = NULL;
    mp_dict *d = NULL;
    mp_queue *rq = NULL;
    err = mp_manager_start(&m, ctx, NULL, NULL, 0);
    if (err < 0)
        fail("mp_manager_start", err);
    manager_pid = mp_manager_pid(m);
    mp_pool_opts po = {.ctx = ctx, .processes = NWORKERS};
    if ((err = mp_pool_new(&pool, &po)) < 0 || (err = mp_lock_new(&lk)) < 0 ||
        (err = mp_manager_lock(m, "audit", &ml)) < 0 ||
        (err = mp_manager_dict(m, "results", &d)) < 0 ||
        (err = mp_manager_queue(m, "results", 0, &rq)) < 0)
        fail("set-up", err);

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&chaos_cv, &ca);
    pthread_t chaos;
    if (pthread_create(&chaos, NULL, chaos_main, NULL) != 0)
        fail("pthread_create", MP_ENOMEM);

    round_state *R = calloc(1, sizeof *R);
    double t0 = mp_monotonic(), end = t0 + seconds;
    for (int r = 1; mp_monotonic() < end; r++) {
        memset(R, 0, sizeof *R);
        *R = (round_state){.r = r, .ctx = ctx, .lk = lk, .m = m, .pool = pool, .d = d, .rq = rq};
        round_run(R, ml);
    }
    F.seconds = mp_monotonic() - t0;
    free(R);

    pthread_mutex_lock(&mu);
    chaos_quit = true;
    pthread_cond_signal(&chaos_cv);
    pthread_mutex_unlock(&mu);
    pthread_join(chaos, NULL);
    pthread_cond_destroy(&chaos_cv);
    mp_queue_free(rq);
    mp_dict_free(d);
    mp_lock_free(ml);
    mp_lock_free(lk);
    mp_pool_free(pool);
    mp_manager_free(m);

    F.procs_left = count_children();
    static int fds1[1024];
    int nfds1 = list_fds(fds1, 1024);
    for (int i = 0; i < nfds1; i++) {
        bool known = false;
        for (int j = 0; j < nfds0 && !known; j++)
            known = fds0[j] == fds1[i];
        if (!known) {
            char path[64], target[256] = "";
            snprintf(path, sizeof path, "/proc/self/fd/%d", fds1[i]);
            ssize_t n = readlink(path, target, sizeof target - 1);
            target[n > 0 ? n : 0] = '\0';
            fprintf(stderr, "soak: LEAK: descriptor %d (%s) left open\n", fds1[i], target);
            F.fds_left++;
        }
    }
    F.shm_left = count_shm();

    unsigned long kills = 0;
    for (int k = 0; k < 4; k++)
        kills += F.kills[k];
    bool ok = F.lost == 0 && F.dup == 0 && F.torn == 0 && F.hangs == 0 && F.errors == 0 &&
              F.procs_left == 0 && F.fds_left == 0 && F.shm_left == 0;
    printf("chaos soak: start method %s, %d cores\n", method, mp_cpu_count());
    printf("  seconds                  %.0f\n", F.seconds);
    printf("  rounds                   %lu\n", F.rounds);
    printf("  kills                    %lu (producers %lu, consumers %lu, pool workers %lu, "
           "manager clients %lu)\n",
           kills, F.kills[K_PROD], F.kills[K_CONS], F.kills[K_WORK], F.kills[K_AUD]);
    printf("  messages committed       %lu (of them committed but unrecorded %lu; "
           "interrupted puts, not committed: %lu)\n",
           F.committed, F.unrecorded, F.interrupted);
    printf("  messages delivered       %lu (recovered from a killed consumer's slot: %lu)\n",
           F.delivered, F.rec_m);
    printf("  items committed          %lu (pool items retried after MP_EWORKER: %lu)\n",
           F.items, F.retried);
    printf("  results committed        %lu (to the manager dict and queue)\n", F.results);
    printf("  results delivered        %lu (recovered from a killed client's slot: %lu)\n",
           F.rdelivered, F.rec_r);
    printf("  taken by main            %lu (left in a queue after a hang)\n", F.drained);
    printf("  owner-dead recoveries    %lu local lock, %lu manager lock\n", F.od_local, F.od_mgr);
    printf("  lost                     %lu\n", F.lost);
    printf("  duplicated               %lu\n", F.dup);
    printf("  torn                     %lu\n", F.torn);
    printf("  hangs                    %lu\n", F.hangs);
    printf("  errors                   %lu\n", F.errors);
    printf("  processes left           %lu\n", F.procs_left);
    printf("  descriptors left         %lu\n", F.fds_left);
    printf("  /dev/shm names left      %lu\n", F.shm_left);
    printf("result: %s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
