/*
 * The pool's shared memory: what the parent (pool.c) and the workers
 * (pool_worker.c) both rely on.  Nothing here calls either side.
 *
 * Everything a worker needs lives in one sparse memfd (the pool heap),
 * mapped at start:
 *   [header: task table (a ring of entries), claim cursor, futex words]
 *   [job regions, up from the bottom: items and results of maps (unless
 *    they are in the caller's shared buffers); the function reference and
 *    arguments of applies]
 *   [down from the top: buffers of mp_pool_shared_alloc, and each map's
 *    status array in fresh zero pages, written only where an item fails]
 * (pool_heap.c hands out the regions and buffers.)  A worker claims the
 * entry at the cursor (a CAS on the entry's state that records the
 * worker's slot), runs it item by item, publishing the item in progress in
 * the entry, marks it DONE, then reports on the result queue: a struct
 * report, then (apply) the result bytes.  A map's results and failures are
 * written straight into the heap.
 *
 * Every worker can write anywhere in the heap, so neither side lets a word
 * there drive memory access or a loop: a worker copies the entry it
 * claimed and checks it against the heap's size before it runs it
 * (task_ok; one it cannot run, it dies on, and the parent recovers as from
 * any death); the parent keeps its own copy of each entry it published,
 * and whether it has freed it since, and takes from the table only the
 * state, the item in progress (clamped to the entry) and the start time.
 *
 * The helpers both sides use are static inline: the hot paths (claim,
 * publish, report) make no call into another file.
 */
#ifndef MP_POOL_LAYOUT_H
#define MP_POOL_LAYOUT_H

#include "internal.h"

#include <limits.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PMAGIC 0x3150504dU
#define TASKCAP 4096
#define HEAP_SIZE ((uint64_t)64 << 30)
/* A map's status word for an item that failed: STATUS_DONE | its code (the
 * array is zero pages; only failures are written). */
#define STATUS_DONE ((uint64_t)1 << 63)

/* An entry's state word: the state in the low byte and, once claimed, the
 * claimer's slot above it — one word, so claiming records the claimer in
 * the same atomic step (a worker killed right after claiming is found). */
enum { E_FREE = 0, E_READY = 1, E_CLAIMED = 2, E_DONE = 3 };
#define ST(w) ((w) & 0xff)
#define WHO(w) ((w) >> 8)
#define OWNED(state, slot) ((uint32_t)(state) | (uint32_t)(slot) << 8)
enum { T_MAP = 1, T_APPLY = 2, T_STOP = 3 };
enum { F_TIMED = 1 };

typedef struct pentry {
    _Atomic uint32_t state;       /* ST and WHO */
    _Atomic uint64_t pos;         /* the table position it was published at */
    uint32_t kind, flags;
    uint64_t job, start, end;
    _Atomic uint64_t cur;         /* item in progress (end: finished) */
    _Atomic int64_t started_ns;   /* when it started (F_TIMED) */
    uint64_t fn_off, fn_len;      /* function reference bytes */
    uint64_t args_off, args_len;  /* apply: the encoded arguments */
    uint64_t items_off, item_size, results_off, result_size, status_off;
} pentry;

typedef struct phdr {
    uint32_t magic, nslots;
    _Atomic uint64_t head;        /* next entry to claim */
    _Atomic uint32_t avail;       /* futex: bumped at every publish */
    _Atomic uint32_t sleepers;
    _Atomic uint32_t thread_asleep; /* the pool thread waits for reports */
    _Atomic uint32_t reports;       /* futex: bumped at every report and wake-up */
    _Atomic uint32_t takers;        /* callers taking reports (in job_wait) */
    _Atomic uint32_t takers_asleep; /* how many of them sleep on reports */
    pentry tasks[TASKCAP];
} phdr;

#define HDR_BYTES ((sizeof(phdr) + 4095) & ~(size_t)4095)

/* An entry's position once freed: not its position any more (a claim cursor
 * still on it moves on), and not yet a new one (free, being published). */
#define POS_FREED ((uint64_t)1 << 63)

/* A completion report, then (apply) the result bytes.  @entry is the
 * table index of the task; UINT64_MAX for the report a worker sends once
 * its initializer ran (@code its result).  @signal and @exitcode: an apply
 * whose process died elsewhere (a pool backend's, code MP_EWORKER) says
 * how; a local worker that dies sends no report (the pool learns it from
 * the death itself) and leaves them 0. */
typedef struct report {
    uint64_t job, entry;
    int32_t code;
    uint32_t worker;
    int32_t signal, exitcode;
} report;

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Map the heap: a file sealed at its size, so that no worker can cut it
 * short under the others' mappings. */
static inline char *heap_map(int fd)
{
    uint64_t size;
    if (mp__sys_memfd_sized(fd, &size) < 0 || size != HEAP_SIZE)
        return NULL;
    void *m = mmap(NULL, HEAP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    return m == MAP_FAILED ? NULL : m;
}

/* Whether [off, off + len) lies in the heap. */
static inline bool in_heap(uint64_t off, uint64_t len)
{
    return off <= HEAP_SIZE && len <= HEAP_SIZE - off;
}

/* Whether @n items of @size bytes from @off lie in the heap. */
static inline bool array_in_heap(uint64_t off, uint64_t n, uint64_t size)
{
    return off <= HEAP_SIZE && (size == 0 || n <= (HEAP_SIZE - off) / size);
}

/* Whether a task copied from the table is one the parent could have
 * published: every region it names inside the heap. */
static inline bool task_ok(const pentry *t)
{
    if (t->kind == T_STOP)
        return true;
    if ((t->kind != T_MAP && t->kind != T_APPLY) || !in_heap(t->fn_off, t->fn_len))
        return false;
    if (t->kind == T_APPLY)
        return in_heap(t->args_off, t->args_len);
    return t->start <= t->end && array_in_heap(t->items_off, t->end, t->item_size) &&
           array_in_heap(t->results_off, t->end, t->result_size) && t->status_off % 8 == 0 &&
           array_in_heap(t->status_off, t->end, 8);
}

/* After a report was put (reported(), pool_worker.c): wake whoever takes
 * reports.  A caller waiting for its job (job_wait, pool.c) takes them
 * itself, sparing a wake-up of the pool thread on the way; else the pool
 * thread, if it sleeps.  Each sleeper announces itself before it looks at
 * the queue a last time, and a report is committed before this looks at
 * the announcements (all seq_cst), so one of the two sees the other; while
 * they work, reports cost no system call. */
/* Bump the reports word, waking the callers asleep on it; whether any
 * caller takes reports. */
static inline bool wake_takers(phdr *h)
{
    atomic_fetch_add(&h->reports, 1);
    if (atomic_load(&h->takers_asleep) > 0)
        mp__futex_wake(&h->reports, INT_MAX);
    return atomic_load(&h->takers) > 0;
}

/* ---- the worker's side (pool_worker.c) ---------------------------------------
 *
 * What a worker process needs, and nothing of the parent's: the heap, the
 * queue its reports go to, the eventfd that wakes the pool thread, its
 * slot, and its limits.  Another launcher (one that does not start workers
 * with mp_process) fills this in and calls mp__pool_worker_run. */
typedef struct mp__pool_worker_args {
    int heapfd;                /* the pool heap: a memfd sealed at HEAP_SIZE */
    mp_queue *results;         /* where reports go */
    int efd;                   /* the pool thread's eventfd (written when it sleeps) */
    uint32_t slot;             /* this worker's slot, recorded in what it claims */
    uint64_t maxtasks;         /* tasks it runs before it exits; 0 no limit */
    const void *initref;       /* the initializer's reference (mp__funcref_encode) */
    size_t initlen;            /* its length; 0: no initializer */
    const mp_args *initargs;   /* the initializer's arguments: those of initargs */
    size_t initargs_from;      /* from this index on */
    /* A launcher that runs the worker as a thread of the pool's own
     * process (a pool backend) sets these; a worker process leaves them
     * zero. */
    char *heap;                /* the heap, mapped already (heapfd unused) */
    _Atomic bool *stop;        /* set (then avail woken): return at once */
    /* Runs a task in place of the worker's own loop over its items: a map
     * chunk writes its results and failures into the heap (as run_map
     * does) and returns how many failed; an apply returns its code and
     * leaves its result bytes in @out, and when its process died
     * (MP_EWORKER) that process's signal and exit status in @fate. */
    int (*run)(void *ctx, char *heap, pentry *e, const pentry *t, mp_buf *out,
               mp_task_error *fate);
    /* Whatever stands for the initializer (run when initlen > 0): its code. */
    int (*init)(void *ctx);
    void *ctx;
} mp__pool_worker_args;

/* A failure's status word carries, besides its code, the signal (bits
 * 32..39) and exit status (40..47) of a worker that died on it: a backend
 * whose workers run elsewhere reports them that way. */
static inline uint64_t status_word(const mp_task_error *te)
{
    return STATUS_DONE | (uint32_t)te->code | (uint64_t)(te->signal & 0xff) << 32 |
           (uint64_t)(te->exitcode & 0xff) << 40;
}

/* A pool whose workers are not processes of this machine (mp_context.pool;
 * libmultiproc-mpi registers one).  The pool starts its workers through
 * it; each is a thread here that takes tasks from the table like a worker
 * process (mp__pool_worker_run with run/init set) and has them run
 * elsewhere.  Items, results and codes travel; no shared buffer does. */
typedef struct mp__pool_backend {
    /* mp_pool_new, before any worker: set up the far side (initializer,
     * limits); *@nworkers: how many workers (tasks in flight) to start. */
    int (*open)(const mp_pool_opts *o, const mp_buf *initref, void **state, int *nworkers);
    /* Start worker @wa->slot (@wa is the backend's to copy); *@sentinel: a
     * descriptor readable once it has ended. */
    int (*start)(void *state, const mp__pool_worker_args *wa, void **w, int *sentinel);
    /* End it soon (terminate): its task is abandoned. */
    void (*kill)(void *w);
    /* Once ended: reap it, free it; its exit code. */
    int (*reap)(void *w);
    /* The pool is done with the far side (every worker reaped);
     * @terminated: what still runs there is abandoned. */
    void (*close)(void *state, bool terminated);
} mp__pool_backend;

/* Run a worker until it takes a STOP, reaches maxtasks or cannot go on; its
 * exit code: 0, 3 (no heap), 4 (the initializer failed), 5 (the queue
 * failed), 6 (a corrupted entry). */
int mp__pool_worker_run(const mp__pool_worker_args *wa);

/* The entry point mp_process runs (mp_target_fn): args heap fd, result
 * queue, slot, maxtasks, eventfd, initializer reference (bytes, may be
 * empty), then the initializer's args. */
int mp__pool_worker_main(const mp_args *a);

#endif
