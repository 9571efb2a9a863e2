/*
 * Pool: worker processes that take chunks of work from a task table in
 * shared memory, and a parent that survives any of them dying.  This file
 * is the parent's side; the workers run pool_worker.c, the memory both
 * share is laid out in pool_layout.h, and pool_heap.c hands out the job
 * regions and shared buffers in it.
 *
 * The parent publishes each task in a free entry of the table (keeping its
 * own copy), a worker claims and runs it, then reports.  A report wakes
 * whoever takes reports: a caller waiting for its job takes them itself (a
 * futex word), else the pool thread (an eventfd), and only if it sleeps.
 *
 * The parent runs one thread that polls the eventfd and the workers'
 * pidfds.  Reports settle items (each item once: a bitmap per job).  When a
 * worker dies, the parent first drains the result queue (nothing the worker
 * committed is lost), then looks for the entry it held: the items before
 * the one in progress are settled (their failures from the status array),
 * the item in progress fails with MP_EWORKER (or MP_ETIMEDOUT when the
 * parent killed it for overrunning task_timeout), the rest of the chunk
 * goes back in the table, and a new worker takes the dead one's place.
 *
 * Every worker can write anywhere in the heap (pool_layout.h): the parent
 * keeps its own copy of each entry it published, and whether it has freed
 * it since, and takes from the table only the state, the item in progress
 * (clamped to the entry) and the start time.
 *
 * Handles (mp_async, mp_imap) point at their job, which lives in the pool's
 * list.  Terminate settles what was reported, then finishes every job
 * (broken where items are missing).  mp_pool_free drops the jobs whose
 * handle is gone; if any handle is left, it sheds the rest (workers,
 * queue, descriptors) but keeps the lock, the jobs and the heap's mapping
 * (imap results and statuses are read from it), and the last handle freed
 * destroys the pool (job_release says when).
 */
#include "pool_heap.h"

#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PUBLISH_BYTES ((size_t)256 << 10) /* a map publishes as it copies items in */
#define COPY_OUT_MIN ((size_t)16 << 10)    /* and copies results out as they come */

/* The parent's own copy of each table entry. */
struct posted {
    pentry e;                      /* what it published there: the copy used */
    bool busy;                     /* published, not yet freed */
};
#define POSTED_BYTES (TASKCAP * sizeof(struct posted))

/* ---- parent: jobs -------------------------------------------------------------- */

typedef struct job job;
struct mp_async {
    job *j;
};

struct job {
    job *next;
    uint64_t id;
    int kind;
    size_t n, done;
    bool finished, broken, freed_handle, is_imap, ordered, cb_running, results_in_place;
    bool copy_at_end;              /* results copied out at the end (copy_out) */
    mp_pool *pool;
    /* map */
    void *results;                 /* the caller's (map, map_async) */
    size_t item_size, result_size;
    uint64_t region_off, region_len, fn_off, fn_len, items_off, results_off, status_off;
    uint64_t status_len;           /* its own zero pages (top_alloc) */
    uint64_t *settled;             /* bitmap */
    mp_task_error first;           /* lowest failing index */
    bool failed;
    mp_task_error *errs;           /* worker deaths and timeouts, by item */
    size_t nerrs, caperrs;
    size_t next_ordered;           /* imap */
    size_t *fifo, fifo_head, fifo_tail;
    /* apply */
    mp_buf result;
    int code;
    void (*done_cb)(mp_async *, void *);
    void *udata;
    mp_async handle;
};

typedef struct worker {
    mp_process *proc;
    void *fw;                      /* a backend's worker (then proc is NULL) */
    int pidfd;
    bool timed_out;
} worker;

static bool worker_alive(const worker *w)
{
    return w->proc != NULL || w->fw != NULL;
}

/* A task waiting for a free entry. */
typedef struct pending {
    struct pending *next;
    pentry e;
} pending;

struct mp_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int state;                     /* RUN, CLOSE, TERMINATE */
    mp_context *ctx;
    const mp__pool_backend *be;    /* workers elsewhere (ctx->pool), or NULL */
    void *be_state;
    int nworkers;
    worker *workers;
    double task_timeout;
    unsigned long maxtasks;
    mp_buf initref;
    mp_args *initargs;
    mp__pool_heap mem;             /* what of the heap is whose (mem.fd: its memfd) */
    char *heap;
    phdr *h;
    struct posted *posted;         /* each entry as this process knows it */
    mp_queue *results;
    int efd;
    uint64_t publish;              /* next table position to fill */
    pending *pend_head, *pend_tail;
    job *jobs;
    uint64_t next_job;
    mp_buf wait_msg;               /* job_wait's reports */
    pthread_t thread;
    bool thread_started, quit, init_failed, thread_done, wake_pending;
    _Atomic unsigned imap_callers; /* threads inside mp_imap_next (no lock) */
    bool freed;                    /* mp_pool_free ran; handles keep the rest (shed) */
    int init_code;
    size_t init_reports;
};

enum { RUN = 0, CLOSE = 1, TERMINATE = 2 };

/* Everyone waiting: on p->cond, and callers asleep on the reports word. */
static void wake_all(mp_pool *p)
{
    pthread_cond_broadcast(&p->cond);
    (void)wake_takers(p->h);
}

/* Waiters on p->cond learn of progress.  The pool thread defers this to
 * right after it lets go of the lock, so a woken caller does not at once
 * block on the lock it still holds (two context switches per result). */
static _Thread_local const mp_pool *tl_pool_thread_of; /* set in pool_thread */

static void wake_waiters(mp_pool *p)
{
    if (tl_pool_thread_of == p)
        p->wake_pending = true;
    else
        wake_all(p);
}

static void wake_thread(mp_pool *p);

/* ---- the pool heap (pool_heap.c; under the lock) ---------------------------- */

static void region_free(mp_pool *p, uint64_t off, uint64_t size)
{
    /* the pool thread may sleep with no timer: let it set one for the trim */
    if (mp__pool_region_free(&p->mem, off, size) && tl_pool_thread_of != p)
        wake_thread(p);
}

int mp_pool_shared_alloc(mp_pool *p, size_t size, void **out)
{
    if (out != NULL)
        *out = NULL;
    /* a backend's workers are on other machines: no memory is shared */
    if (p == NULL || out == NULL || size > HEAP_SIZE / 2 || p->be != NULL)
        return MP_EINVAL;
    uint64_t off, len;
    pthread_mutex_lock(&p->lock);
    int err = mp__pool_top_alloc(&p->mem, size, true, &off, &len);
    if (err == 0)
        *out = p->heap + off;
    pthread_mutex_unlock(&p->lock);
    return err;
}

void mp_pool_shared_free(mp_pool *p, void *ptr)
{
    if (p == NULL || ptr == NULL || (char *)ptr < p->heap || (char *)ptr >= p->heap + HEAP_SIZE)
        return;
    pthread_mutex_lock(&p->lock);
    mp__pool_top_free(&p->mem, (uint64_t)((char *)ptr - p->heap), true);
    pthread_mutex_unlock(&p->lock);
}

/* A finished job's heap memory (under the lock; once). */
static void job_free_memory(mp_pool *p, job *j)
{
    if (p->freed)
        return; /* the heap goes whole with the last handle */
    if (j->region_len) {
        region_free(p, j->region_off, j->region_len);
        j->region_len = 0;
    }
    if (j->status_len) {
        mp__pool_top_free(&p->mem, j->status_off, false);
        j->status_len = 0;
    }
}

/* The heap offset of [ptr, ptr + len) if it lies in one shared buffer
 * (under the lock); UINT64_MAX if not. */
static uint64_t shared_off(const mp_pool *p, const void *ptr, uint64_t len)
{
    const char *c = ptr;
    if (c < p->heap || c >= p->heap + HEAP_SIZE)
        return UINT64_MAX;
    uint64_t off = (uint64_t)(c - p->heap);
    return mp__pool_in_shared(&p->mem, off, len) ? off : UINT64_MAX;
}

/* ---- publishing tasks ------------------------------------------------------- */

/* Move pending tasks into free entries, in order (under the lock). */
static void publish(mp_pool *p)
{
    int any = 0;
    while (p->pend_head) {
        pentry *e = &p->h->tasks[p->publish % TASKCAP];
        if (p->posted[p->publish % TASKCAP].busy)
            break; /* not yet freed (by this process: the table's word may lie) */
        pending *t = p->pend_head;
        p->pend_head = t->next;
        if (p->pend_head == NULL)
            p->pend_tail = NULL;
        e->kind = t->e.kind;
        e->flags = t->e.flags;
        e->job = t->e.job;
        e->start = t->e.start;
        e->end = t->e.end;
        atomic_store(&e->cur, t->e.start);
        atomic_store(&e->started_ns, 0);
        e->fn_off = t->e.fn_off;
        e->fn_len = t->e.fn_len;
        e->args_off = t->e.args_off;
        e->args_len = t->e.args_len;
        e->items_off = t->e.items_off;
        e->item_size = t->e.item_size;
        e->results_off = t->e.results_off;
        e->result_size = t->e.result_size;
        e->status_off = t->e.status_off;
        p->posted[p->publish % TASKCAP].e = t->e;
        p->posted[p->publish % TASKCAP].busy = true;
        atomic_store(&e->pos, p->publish);
        atomic_store_explicit(&e->state, E_READY, memory_order_release);
        free(t);
        p->publish++;
        any++;
    }
    if (any) {
        atomic_fetch_add(&p->h->avail, 1);
        if (atomic_load(&p->h->sleepers) > 0) /* as many as there is work for */
            mp__futex_wake(&p->h->avail, any);
    }
}

static int enqueue(mp_pool *p, const pentry *e)
{
    pending *t = calloc(1, sizeof *t);
    if (t == NULL)
        return MP_ENOMEM;
    memcpy(&t->e, e, sizeof *e);
    if (p->pend_tail)
        p->pend_tail->next = t;
    else
        p->pend_head = t;
    p->pend_tail = t;
    return 0;
}

/* ---- settling items (under the lock) ------------------------------------------ */

static job *find_job(mp_pool *p, uint64_t id)
{
    for (job *j = p->jobs; j; j = j->next)
        if (j->id == id)
            return j;
    return NULL;
}

static void job_unlink(mp_pool *p, job *j)
{
    for (job **pp = &p->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            return;
        }
}

static void job_destroy(job *j)
{
    free(j->settled);
    free(j->errs);
    free(j->fifo);
    mp_buf_free(&j->result);
    free(j);
}

/* Called when every item is settled (or the pool is terminated). */
static void job_finish(mp_pool *p, job *j, bool broken)
{
    if (j->finished)
        return;
    j->finished = true;
    j->broken = broken;
    if (!broken && j->copy_at_end)
        memcpy(j->results, p->heap + j->results_off, j->n * j->result_size);
    else if (broken && j->copy_at_end && j->results != NULL)
        for (size_t i = 0; i < j->n; i++) /* what did finish is the caller's */
            if ((j->settled[i / 64] >> (i % 64)) & 1)
                memcpy((char *)j->results + i * j->result_size,
                       p->heap + j->results_off + i * j->result_size, j->result_size);
    if (!j->is_imap)
        job_free_memory(p, j);
    wake_waiters(p);
}

static void record_error(job *j, const mp_task_error *e)
{
    if (!j->failed || e->index < j->first.index) {
        j->first = *e;
        j->failed = true;
    }
    if (e->code == MP_EWORKER || e->code == MP_ETIMEDOUT) {
        if (j->nerrs == j->caperrs) {
            size_t cap = j->caperrs ? j->caperrs * 2 : 8;
            mp_task_error *n = realloc(j->errs, cap * sizeof *n);
            if (n == NULL)
                return;
            j->errs = n;
            j->caperrs = cap;
        }
        j->errs[j->nerrs++] = *e;
    }
}

/* Results of [a, b) into the caller's array (map, map_async), as they
 * settle: copied while the workers go on with the rest. */
static void copy_out(mp_pool *p, job *j, uint64_t a, uint64_t b)
{
    if (b > j->n)
        b = j->n;
    if (j->kind != T_MAP || j->is_imap || j->results == NULL || j->results_in_place || b <= a)
        return;
    size_t rsz = j->result_size;
    if ((b - a) * rsz < COPY_OUT_MIN) {
        j->copy_at_end = true; /* small pieces: all at once at the end */
        return;
    }
    memcpy((char *)j->results + a * rsz, p->heap + j->results_off + a * rsz, (b - a) * rsz);
}

/* Settle item @i of @j once; @e NULL: by its status in the heap. */
static void settle(mp_pool *p, job *j, size_t i, const mp_task_error *e)
{
    if (j->finished || i >= j->n)
        return;
    if (j->settled) {
        if (j->settled[i / 64] & ((uint64_t)1 << (i % 64)))
            return;
        j->settled[i / 64] |= (uint64_t)1 << (i % 64);
    }
    copy_out(p, j, i, i + 1);
    if (e != NULL) {
        record_error(j, e);
        if (j->kind == T_MAP) /* imap reads the status */
            ((_Atomic uint64_t *)(p->heap + j->status_off))[i] = status_word(e);
    } else if (j->kind == T_MAP) {
        uint64_t st = ((_Atomic uint64_t *)(p->heap + j->status_off))[i];
        int rc = (int32_t)(uint32_t)st;
        if (rc != 0) { /* see status_word (pool_layout.h) */
            mp_task_error te = {.index = i, .code = rc, .signal = (int)(st >> 32 & 0xff),
                                .exitcode = (int)(st >> 40 & 0xff)};
            record_error(j, &te);
        }
    }
    if (j->is_imap && !j->ordered)
        j->fifo[j->fifo_tail++] = i;
    j->done++;
    if (j->is_imap)
        wake_waiters(p);
    if (j->done == j->n)
        job_finish(p, j, false);
}

/* Every item of [a, b) succeeded: settle them a word at a time (an
 * unordered imap's come out in index order). */
static void settle_ok_range(mp_pool *p, job *j, uint64_t a, uint64_t b)
{
    copy_out(p, j, a, b);
    bool fifo = j->is_imap && !j->ordered;
    size_t added = 0;
    for (uint64_t i = a; i < b && i < j->n;) {
        uint64_t *w = &j->settled[i / 64];
        bool whole = i % 64 == 0 && i + 64 <= b && i + 64 <= j->n;
        uint64_t mask = whole ? ~(uint64_t)0 : (uint64_t)1 << (i % 64);
        uint64_t fresh = mask & ~*w;
        *w |= mask;
        added += (size_t)__builtin_popcountll(fresh);
        for (; fifo && fresh; fresh &= fresh - 1)
            j->fifo[j->fifo_tail++] = i / 64 * 64 + (size_t)__builtin_ctzll(fresh);
        i += whole ? 64 : 1;
    }
    j->done += added;
    if (j->is_imap)
        wake_waiters(p);
    if (j->done == j->n)
        job_finish(p, j, false);
}

/* How many table entries have ever been published: a scan stops there,
 * and reads no page of the table, nor of posted, that no task used. */
static int entries_used(const mp_pool *p)
{
    return p->publish < TASKCAP ? (int)p->publish : TASKCAP;
}

/* Done with an entry: it may take the next round's task. */
static void free_entry(mp_pool *p, pentry *e)
{
    p->posted[e - p->h->tasks].busy = false;
    /* the position first: a worker that sees the entry free sees this too */
    atomic_store(&e->pos, atomic_load(&e->pos) | POS_FREED);
    atomic_store(&e->state, E_FREE);
}

static void on_report(mp_pool *p, const report *r, const void *bytes, size_t n)
{
    if (r->entry == UINT64_MAX) { /* a worker's initializer ran */
        p->init_reports++;
        if (r->code != 0) {
            p->init_failed = true;
            p->init_code = r->code;
        }
        wake_waiters(p);
        return;
    }
    if (r->entry >= TASKCAP || !p->posted[r->entry].busy || p->posted[r->entry].e.job != r->job)
        return; /* not a report of what that entry holds */
    pentry *e = &p->h->tasks[r->entry];
    const pentry *t = &p->posted[r->entry].e;
    job *j = find_job(p, r->job);
    if (j != NULL && !j->finished) {
        if (j->kind == T_MAP && r->code == 0) {
            settle_ok_range(p, j, t->start, t->end); /* the common case, whole words */
        } else if (j->kind == T_MAP) {
            for (uint64_t i = t->start; i < t->end; i++)
                settle(p, j, i, NULL);
        } else {
            j->code = r->code;
            if (r->code == 0)
                IGNORE_RESULT(mp_buf_append(&j->result, bytes, n));
            else {
                mp_task_error te = {.index = 0, .code = r->code, .signal = r->signal,
                                    .exitcode = r->exitcode};
                record_error(j, &te);
            }
            j->done = 1;
            job_finish(p, j, false);
        }
    }
    if (ST(atomic_load(&e->state)) == E_DONE)
        free_entry(p, e);
}

/* ---- workers -------------------------------------------------------------- */

/* Start worker @idx: its arguments in the order mp__pool_worker_main reads
 * them (pool_worker.c). */
static int worker_start(mp_pool *p, int idx)
{
    if (p->be != NULL) { /* a thread here that forwards (mp__pool_backend) */
        mp__pool_worker_args wa = {.heapfd = p->mem.fd,
                                   .results = p->results,
                                   .efd = p->efd,
                                   .slot = (uint32_t)idx,
                                   .initref = p->initref.data,
                                   .initlen = p->initref.len,
                                   .heap = p->heap};
        int err = p->be->start(p->be_state, &wa, &p->workers[idx].fw, &p->workers[idx].pidfd);
        p->workers[idx].timed_out = false;
        return err;
    }
    mp_args *a;
    int err = mp_args_new(&a);
    if (err < 0)
        return err;
    err = mp_args_add_fd(a, p->mem.fd);
    if (err == 0)
        err = mp_args_add_queue(a, p->results);
    if (err == 0)
        err = mp_args_add_int(a, idx);
    if (err == 0)
        err = mp_args_add_int(a, (int64_t)p->maxtasks);
    if (err == 0)
        err = mp_args_add_fd(a, p->efd);
    if (err == 0)
        err = mp_args_add_bytes(a, p->initref.data, p->initref.len);
    if (err == 0)
        err = mp__args_append(a, p->initargs, 0);
    mp_process *proc = NULL;
    if (err == 0)
        err = mp_process_new(&proc, p->ctx, mp__pool_worker_main, a);
    mp_args_free(a);
    if (err == 0) {
        char name[48];
        snprintf(name, sizeof name, "PoolWorker-%d", idx + 1);
        IGNORE_RESULT(mp_process_set_name(proc, name));
        IGNORE_RESULT(mp_process_set_daemon(proc, true));
        err = mp_process_start(proc);
    }
    if (err < 0) {
        if (proc)
            IGNORE_RESULT(mp_process_close(proc));
        return err;
    }
    p->workers[idx].proc = proc;
    p->workers[idx].pidfd = mp_process_sentinel(proc);
    p->workers[idx].timed_out = false;
    return 0;
}

/* The pool thread takes at most this many reports at a time while a
 * caller is inside mp_imap_next, before it lets go of the lock and wakes
 * it: while workers report faster than the thread settles, an imap's
 * consumer would otherwise see its first result only when the reports
 * stop coming. */
#define DRAIN_BATCH 32

/* Take the reports there are (under the lock); how many.  With @yield, stop
 * after DRAIN_BATCH of them if an imap consumer waits. */
static size_t drain_some(mp_pool *p, mp_buf *msg, bool yield)
{
    size_t n = 0;
    for (; !(yield && n >= DRAIN_BATCH && atomic_load_explicit(&p->imap_callers,
                                                                memory_order_relaxed) > 0) &&
           mp_queue_get(p->results, msg, 0) == 0;
         n++) {
        if (msg->len < sizeof(report))
            continue;
        report r;
        memcpy(&r, msg->data, sizeof r);
        on_report(p, &r, (char *)msg->data + sizeof r, msg->len - sizeof r);
    }
    return n;
}

/* Take every report there is (under the lock); how many. */
static size_t drain(mp_pool *p, mp_buf *msg)
{
    return drain_some(p, msg, false);
}

/* A worker ended: settle what it held, replace it (under the lock). */
static void on_death(mp_pool *p, int idx)
{
    worker *w = &p->workers[idx];
    if (!worker_alive(w))
        return;
    int code = 0;
    bool stopped = false; /* it took a STOP: it was meant to exit */
    if (w->fw != NULL) {
        code = p->be->reap(w->fw);
        w->fw = NULL;
    } else {
        IGNORE_RESULT(mp_process_join(w->proc, 10)); /* a fork server relays the status a moment later */
        IGNORE_RESULT(mp_process_exitcode(w->proc, &code));
    }
    for (int t = 0; t < entries_used(p); t++) {
        if (!p->posted[t].busy)
            continue;
        pentry *e = &p->h->tasks[t];
        const pentry *pe = &p->posted[t].e; /* what the entry holds */
        uint32_t word = atomic_load(&e->state), st = ST(word);
        if ((st != E_CLAIMED && st != E_DONE) || WHO(word) != (uint32_t)idx)
            continue;
        if (pe->kind == T_STOP) {
            stopped = true;
            free_entry(p, e);
            continue;
        }
        job *j = find_job(p, pe->job);
        uint64_t cur = atomic_load(&e->cur);
        mp_task_error te = {
            .code = w->timed_out ? MP_ETIMEDOUT : MP_EWORKER,
            .signal = code < 0 ? -code : 0,
            .exitcode = code > 0 ? code : 0,
        };
        if (j != NULL && !j->finished && j->kind == T_MAP) {
            /* the items before the one in progress are done (their
             * failures, if any, in the status array); that one failed */
            uint64_t i = pe->start,
                     upto = cur < pe->start ? pe->start : cur > pe->end ? pe->end : cur;
            for (; i < upto; i++)
                settle(p, j, i, NULL);
            if (i < pe->end) {
                te.index = i;
                settle(p, j, i, &te);
                if (i + 1 < pe->end) {
                    pentry rest = *pe;
                    rest.start = i + 1;
                    (void)enqueue(p, &rest);
                }
            }
        } else if (j != NULL && !j->finished) {
            if (cur >= 1 && st == E_DONE)
                te.code = MP_EWORKER; /* it finished, but its result was lost */
            record_error(j, &te);
            j->code = te.code;
            j->done = 1;
            job_finish(p, j, false);
        }
        free_entry(p, e);
    }
    if (code != 0 || w->timed_out)
        mp__log(MP_LOG_INFO, "pool: worker %d ended with %d%s", idx + 1, code,
                w->timed_out ? " (task timeout)" : "");
    if (w->proc != NULL)
        IGNORE_RESULT(mp_process_close(w->proc));
    w->proc = NULL;
    w->pidfd = -1;
    if (p->state != TERMINATE && !stopped && !p->init_failed && worker_start(p, idx) < 0)
        mp__log(MP_LOG_ERROR, "pool: cannot replace worker %d", idx + 1);
    publish(p);
}

/* Kill workers that overran task_timeout; the next deadline (ms, -1 none). */
static int check_timeouts(mp_pool *p)
{
    if (p->task_timeout <= 0)
        return -1;
    int64_t now = now_ns(), limit = (int64_t)(p->task_timeout * 1e9), next = -1;
    for (int t = 0; t < entries_used(p); t++) {
        if (!p->posted[t].busy)
            continue;
        pentry *e = &p->h->tasks[t];
        uint32_t word = atomic_load(&e->state);
        if (ST(word) != E_CLAIMED)
            continue;
        int64_t s = atomic_load(&e->started_ns);
        if (s == 0)
            continue;
        if (s < 0 || s > now)
            s = now; /* a worker's word: no overflow below */
        uint32_t idx = WHO(word);
        if (idx >= (uint32_t)p->nworkers || p->workers[idx].proc == NULL)
            continue;
        if (now - s >= limit) {
            if (!p->workers[idx].timed_out) {
                p->workers[idx].timed_out = true;
                IGNORE_RESULT(mp_process_kill(p->workers[idx].proc));
            }
        } else if (next < 0 || s + limit - now < next) {
            next = s + limit - now;
        }
    }
    return next < 0 ? -1 : (int)(next / 1000000 + 1);
}

static void *pool_thread(void *arg)
{
    mp_pool *p = arg;
    tl_pool_thread_of = p;
    mp_buf msg = MP_BUF_INIT;
    struct pollfd *pfd = calloc((size_t)p->nworkers + 1, sizeof *pfd);
    if (pfd == NULL)
        return NULL;
    pthread_mutex_lock(&p->lock);
    while (!p->quit) {
        pfd[0] = (struct pollfd){.fd = p->efd, .events = POLLIN};
        for (int i = 0; i < p->nworkers; i++)
            pfd[i + 1] = (struct pollfd){.fd = p->workers[i].pidfd, .events = POLLIN};
        int ms = check_timeouts(p);
        if (ms < 0 && p->task_timeout > 0) {
            /* a task claimed while we sleep starts its clock unseen: look
             * again a few times per timeout */
            double q = p->task_timeout * 250;
            ms = q < 10 ? 10 : q > 1000 ? 1000 : (int)q;
        }
        int trim = mp__pool_trim_idle(&p->mem);
        if (trim >= 0 && (ms < 0 || trim < ms))
            ms = trim;
        bool wake = p->wake_pending;
        p->wake_pending = false;
        pthread_mutex_unlock(&p->lock);
        if (wake)
            wake_all(p);
        atomic_store(&p->h->thread_asleep, 1); /* see reported() */
        atomic_thread_fence(memory_order_seq_cst);
        if (!mp_queue_empty(p->results))
            ms = 0;
        int r = poll(pfd, (nfds_t)p->nworkers + 1, ms);
        atomic_store(&p->h->thread_asleep, 0);
        pthread_mutex_lock(&p->lock);
        if (r < 0)
            continue;
        if (pfd[0].revents) {
            uint64_t v;
            (void)!read(p->efd, &v, sizeof v);
        }
        bool death = false;
        for (int i = 0; i < p->nworkers; i++)
            death = death || pfd[i + 1].revents;
        /* a worker's last reports are taken before its death is seen:
         * what it reported is not lost with it */
        if (!death && atomic_load_explicit(&p->imap_callers, memory_order_relaxed) > 0)
            drain_some(p, &msg, true);
        else
            drain(p, &msg);
        for (int i = 0; i < p->nworkers; i++)
            if (pfd[i + 1].revents && p->workers[i].pidfd == pfd[i + 1].fd)
                on_death(p, i);
        /* callbacks of finished jobs, each once, outside the lock */
        for (bool again = true; again;) {
            again = false;
            for (job *j = p->jobs; j; j = j->next) {
                if (!j->finished || j->done_cb == NULL)
                    continue;
                void (*cb)(mp_async *, void *) = j->done_cb;
                j->done_cb = NULL;
                j->cb_running = true;
                pthread_mutex_unlock(&p->lock);
                cb(&j->handle, j->udata);
                pthread_mutex_lock(&p->lock);
                j->cb_running = false;
                wake_all(p);
                again = true; /* the list may have changed meanwhile */
                break;
            }
        }
        /* jobs whose handle was freed go once finished */
        for (job **pp = &p->jobs; *pp;) {
            job *j = *pp;
            if (j->finished && j->freed_handle && j->done_cb == NULL && !j->cb_running) {
                *pp = j->next;
                job_destroy(j);
            } else {
                pp = &j->next;
            }
        }
        publish(p);
        if (p->state != RUN) {
            bool any = false;
            for (int i = 0; i < p->nworkers; i++)
                any = any || worker_alive(&p->workers[i]);
            if (!any)
                break;
        }
    }
    p->thread_done = true;
    wake_all(p);
    pthread_mutex_unlock(&p->lock);
    free(pfd);
    mp_buf_free(&msg);
    return NULL;
}

/* ---- create ----------------------------------------------------------------- */

/* Everything but what handles still use: the lock, the condition, the
 * jobs and the heap's mapping (results, statuses and shared buffers that
 * handles read).  Once each; the workers and the pool thread are gone. */
static void pool_shed(mp_pool *p)
{
    while (p->pend_head) {
        pending *t = p->pend_head;
        p->pend_head = t->next;
        free(t);
    }
    p->pend_tail = NULL;
    if (p->be != NULL && p->be_state != NULL)
        p->be->close(p->be_state, p->state == TERMINATE);
    p->be_state = NULL;
    if (p->posted)
        munmap(p->posted, POSTED_BYTES);
    p->posted = NULL;
    mp__sys_close(p->mem.fd); /* the mapping stays */
    p->mem.fd = -1;
    mp__sys_close(p->efd);
    p->efd = -1;
    mp_queue_free(p->results);
    p->results = NULL;
    mp_buf_free(&p->initref);
    mp_buf_free(&p->wait_msg);
    mp__pool_heap_fini(&p->mem);
    mp_args_free(p->initargs);
    p->initargs = NULL;
    free(p->workers);
    p->workers = NULL;
    p->nworkers = 0;
}

static void pool_destroy(mp_pool *p)
{
    pool_shed(p);
    while (p->jobs) {
        job *j = p->jobs;
        p->jobs = j->next;
        job_destroy(j);
    }
    if (p->heap)
        munmap(p->heap, HEAP_SIZE);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static void kill_workers(mp_pool *p)
{
    bool threads = false;
    for (int i = 0; i < p->nworkers; i++)
        if (p->workers[i].proc)
            IGNORE_RESULT(mp_process_kill(p->workers[i].proc));
        else if (p->workers[i].fw) {
            p->be->kill(p->workers[i].fw);
            threads = true;
        }
    if (threads) { /* those asleep for a task see their stop flag */
        atomic_fetch_add(&p->h->avail, 1);
        mp__futex_wake(&p->h->avail, INT_MAX);
    }
}

static void reap_workers(mp_pool *p)
{
    for (int i = 0; i < p->nworkers; i++)
        if (p->workers[i].fw) {
            IGNORE_RESULT(p->be->reap(p->workers[i].fw));
            p->workers[i].fw = NULL;
        } else if (p->workers[i].proc) {
            IGNORE_RESULT(mp_process_join(p->workers[i].proc, MP_FOREVER));
            IGNORE_RESULT(mp_process_close(p->workers[i].proc));
            p->workers[i].proc = NULL;
        }
}

static void wake_thread(mp_pool *p)
{
    uint64_t one = 1;
    (void)!write(p->efd, &one, sizeof one);
}

int mp_pool_new(mp_pool **out, const mp_pool_opts *opts)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    mp_pool_opts def = {0};
    if (opts == NULL)
        opts = &def;
    if (opts->processes < 0 || opts->processes > 4096)
        return MP_EINVAL;
    mp__init();
    mp_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return MP_ENOMEM;
    p->efd = -1;
    mp__pool_heap_init(&p->mem, -1);
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    p->ctx = opts->ctx ? opts->ctx : mp_get_context(NULL);
    p->be = p->ctx->pool;
    p->nworkers = opts->processes ? opts->processes : mp_cpu_count();
    p->task_timeout = opts->task_timeout;
    p->maxtasks = opts->maxtasksperchild;
    p->next_job = 1;
    int err = 0;
    p->workers = calloc((size_t)p->nworkers, sizeof *p->workers);
    /* Fresh zero pages, faulted in only as entries are used: calloc would
     * clear all 4096 entries at once, and after an earlier fork every page
     * it clears is a copy-on-write fault (milliseconds on a VM). */
    p->posted = mmap(NULL, POSTED_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (p->posted == MAP_FAILED)
        p->posted = NULL;
    if (p->workers == NULL || p->posted == NULL)
        err = MP_ENOMEM;
    if (err == 0)
        err = p->mem.fd = mp__sys_memfd("mp-pool");
    if (err >= 0)
        err = mp__sys_memfd_size(p->mem.fd, HEAP_SIZE);
    if (err == 0 && (p->heap = heap_map(p->mem.fd)) == NULL)
        err = -errno ? -errno : MP_ENOMEM;
    if (err == 0) {
        p->h = (phdr *)p->heap;
        /* The table is left as the new memfd gives it, all zeros: an entry
         * whose position matches the cursor but whose state is still
         * E_FREE reads as "being published", so a worker waits for the
         * first publish.  Writing the 512 KiB table here faulted in 128
         * shared pages at every mp_pool_new (milliseconds on a VM). */
        p->h->magic = PMAGIC;
        p->h->nslots = (uint32_t)p->nworkers;
        err = mp_queue_new(&p->results, 0);
    }
    if (err == 0) {
        int e = mp__sys_eventfd(0, EFD_NONBLOCK);
        err = e < 0 ? e : 0;
        p->efd = e < 0 ? -1 : e;
    }
    if (err == 0 && opts->initializer)
        err = mp__funcref_encode((const void *)opts->initializer, &p->initref);
    if (err == 0)
        err = mp__args_dup(opts->initargs, &p->initargs);
    if (err == 0 && mp__args_has_ptr(p->initargs) && p->ctx != mp_get_context("fork"))
        err = MP_EINVAL;
    if (err == 0 && p->be != NULL) {
        /* the far side takes the initializer and the limits; the number
         * of workers here is how many tasks it keeps in flight */
        err = p->be->open(opts, &p->initref, &p->be_state, &p->nworkers);
        if (err == 0) {
            free(p->workers);
            p->workers = calloc((size_t)p->nworkers, sizeof *p->workers);
            if (p->workers == NULL)
                err = MP_ENOMEM;
            else
                p->h->nslots = (uint32_t)p->nworkers;
        }
    }
    for (int i = 0; err == 0 && i < p->nworkers; i++)
        err = worker_start(p, i);
    if (err == 0) {
        err = -pthread_create(&p->thread, NULL, pool_thread, p);
        p->thread_started = err == 0;
    }
    if (err == 0 && opts->initializer) {
        /* every worker's initializer has run, or one failed */
        pthread_mutex_lock(&p->lock);
        while (!p->init_failed && p->init_reports < (size_t)p->nworkers && !p->thread_done)
            pthread_cond_wait(&p->cond, &p->lock);
        if (p->init_failed)
            err = MP_ETASK;
        pthread_mutex_unlock(&p->lock);
    }
    if (err < 0) {
        if (p->thread_started) {
            mp_pool_free(p);
            return err;
        }
        kill_workers(p);
        reap_workers(p);
        pool_destroy(p);
        return err;
    }
    *out = p;
    return 0;
}

/* ---- submitting ---------------------------------------------------------------- */

static job *job_new(mp_pool *p, int kind, size_t n)
{
    job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    j->kind = kind;
    j->n = n;
    j->pool = p;
    j->handle.j = j;
    j->id = p->next_job++;
    return j;
}

static uint64_t align8(uint64_t v)
{
    return (v + 7) & ~(uint64_t)7;
}

static int submit_map(mp_pool *p, mp_map_fn fn, const void *items, size_t n, size_t isz,
                      void *results, size_t rsz, size_t chunksize, bool imap, bool ordered,
                      job **out)
{
    if (p == NULL || fn == NULL || (n > 0 && (items == NULL || isz == 0)) ||
        (n > 0 && !imap && results == NULL && rsz > 0))
        return MP_EINVAL;
    if (n > SIZE_MAX / 64 || (isz && n > SIZE_MAX / isz) || (rsz && n > SIZE_MAX / rsz))
        return MP_EINVAL;
    mp_buf ref = MP_BUF_INIT;
    int err = mp__funcref_encode((const void *)fn, &ref);
    if (err < 0)
        return err;
    pthread_mutex_lock(&p->lock);
    if (p->state != RUN) {
        pthread_mutex_unlock(&p->lock);
        mp_buf_free(&ref);
        return MP_EINVAL;
    }
    job *j = job_new(p, T_MAP, n);
    if (j == NULL) {
        err = MP_ENOMEM;
        goto out;
    }
    j->is_imap = imap;
    j->ordered = ordered;
    j->results = results;
    j->item_size = isz;
    j->result_size = rsz;
    j->settled = calloc((n + 63) / 64 + 1, sizeof *j->settled);
    if (imap && !ordered)
        j->fifo = calloc(n + 1, sizeof *j->fifo);
    if (j->settled == NULL || (imap && !ordered && j->fifo == NULL)) {
        job_destroy(j);
        err = MP_ENOMEM;
        goto out;
    }
    j->fn_len = ref.len;
    /* items and results in shared buffers are used where they are */
    uint64_t items_in = n ? shared_off(p, items, n * isz) : UINT64_MAX;
    uint64_t results_in = n && !imap ? shared_off(p, results, n * rsz) : UINT64_MAX;
    j->results_in_place = results_in != UINT64_MAX;
    uint64_t fn_at = 0, items_at = align8(ref.len),
             results_at = align8(items_at + (items_in == UINT64_MAX ? n * isz : 0)),
             total = align8(results_at + (results_in == UINT64_MAX ? n * rsz : 0));
    err = mp__pool_region_alloc(&p->mem, total, &j->region_off);
    if (err == 0) {
        err = mp__pool_top_alloc(&p->mem, n * 8, false, &j->status_off, &j->status_len);
        if (err < 0)
            region_free(p, j->region_off, total);
    }
    if (err < 0) {
        job_destroy(j);
        goto out;
    }
    j->region_len = total;
    j->fn_off = j->region_off + fn_at;
    j->items_off = items_in != UINT64_MAX ? items_in : j->region_off + items_at;
    j->results_off = j->results_in_place ? results_in : j->region_off + results_at;
    memcpy(p->heap + j->fn_off, ref.data, ref.len);
    if (chunksize == 0) { /* Python: ceil(n / (4 × workers)) */
        size_t w4 = (size_t)p->nworkers * 4;
        chunksize = n / w4 + (n % w4 != 0);
        if (chunksize == 0)
            chunksize = 1;
    }
    pentry e = {.kind = T_MAP,
                .flags = p->task_timeout > 0 ? F_TIMED : 0,
                .job = j->id,
                .fn_off = j->fn_off,
                .fn_len = j->fn_len,
                .items_off = j->items_off,
                .item_size = isz,
                .results_off = j->results_off,
                .result_size = rsz,
                .status_off = j->status_off};
    /* every task first (no memory: nothing runs), then each chunk's items
     * copied in and the chunk published as it goes, so that the workers
     * start while the rest is copied */
    pending *first = NULL, **tail = &first;
    for (size_t s = 0; s < n && err == 0; s += chunksize) {
        pending *t = calloc(1, sizeof *t);
        if (t == NULL) {
            err = MP_ENOMEM;
            break;
        }
        t->e = e;
        t->e.start = s;
        t->e.end = s + chunksize < n ? s + chunksize : n;
        *tail = t;
        tail = &t->next;
    }
    j->next = p->jobs;
    p->jobs = j;
    if (err < 0) { /* out of memory queueing: give up on this job */
        while (first) {
            pending *t = first;
            first = t->next;
            free(t);
        }
        job_finish(p, j, true);
    } else if (n == 0) {
        job_finish(p, j, false);
    }
    /* copied in and published a group of chunks (PUBLISH_BYTES) at a time */
    while (first) {
        pending *last = first;
        uint64_t from = first->e.start;
        while (last->next && (last->e.end - from) * isz < PUBLISH_BYTES)
            last = last->next;
        uint64_t k = last->e.end - from;
        if (items_in == UINT64_MAX)
            memcpy(p->heap + j->items_off + from * isz, (const char *)items + from * isz, k * isz);
        if (p->pend_tail)
            p->pend_tail->next = first;
        else
            p->pend_head = first;
        p->pend_tail = last;
        first = last->next;
        last->next = NULL;
        publish(p);
    }
    publish(p);
    *out = j;
out:
    pthread_mutex_unlock(&p->lock);
    mp_buf_free(&ref);
    return err;
}

/* Whether finished jobs wait for the pool thread: callbacks to run,
 * handles freed before the end (under the lock). */
static bool thread_needed(mp_pool *p)
{
    for (job *j = p->jobs; j; j = j->next)
        if (j->finished && (j->done_cb != NULL || j->freed_handle))
            return true;
    return false;
}

/* Wait until @j is finished (under the lock).  0, MP_ETIMEDOUT. */
static int job_wait(mp_pool *p, job *j, double timeout)
{
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    phdr *h = p->h;
    /* take the reports here (see reported()): the result comes straight
     * from the worker, not by way of the pool thread */
    atomic_fetch_add(&h->takers, 1);
    for (bool last = false;; ) {
        if (p->freed) { /* every job finished at terminate; no queue any more */
            if (!last)
                atomic_fetch_sub(&h->takers, 1);
            break;
        }
        uint32_t seen = atomic_load(&h->reports);
        if (drain(p, &p->wait_msg) > 0) {
            publish(p); /* entries were freed */
            if (thread_needed(p))
                wake_thread(p);
        }
        if (last)
            break;
        if (j->finished || mp__deadline_expired(&d)) {
            /* reports sent to this caller before it stopped taking them
             * are taken by the last drain, not left to a pool thread that
             * nobody woke */
            atomic_fetch_sub(&h->takers, 1);
            last = true;
            continue;
        }
        /* a count, not a flag a waker clears: a wake-up that comes
         * before the sleep must not take the next one with it */
        atomic_fetch_add(&h->takers_asleep, 1);
        atomic_thread_fence(memory_order_seq_cst);
        if (mp_queue_empty(p->results)) {
            pthread_mutex_unlock(&p->lock);
            mp__futex_wait(&h->reports, seen, &d);
            pthread_mutex_lock(&p->lock);
        }
        atomic_fetch_sub(&h->takers_asleep, 1);
    }
    return j->finished ? 0 : MP_ETIMEDOUT;
}

/* What a finished job reports. */
static int job_outcome(job *j, mp_task_error *err)
{
    if (j->broken)
        return MP_EBROKEN;
    if (!j->failed)
        return 0;
    if (err)
        *err = j->first;
    int c = j->first.code;
    return c == MP_EWORKER || c == MP_ETIMEDOUT ? c : MP_ETASK;
}

/* The caller lets go of @j (under the lock).  True when it was the last
 * job of a freed pool: the caller destroys the pool once it has unlocked. */
static bool job_release(mp_pool *p, job *j)
{
    if (p->freed) {
        job_unlink(p, j);
        job_destroy(j);
        return p->jobs == NULL;
    }
    if (j->finished && !j->cb_running && j->done_cb == NULL) {
        job_unlink(p, j);
        job_free_memory(p, j);
        job_destroy(j);
    } else {
        j->freed_handle = true;
        j->results = NULL; /* nobody to copy to any more */
    }
    return false;
}

int mp_pool_map(mp_pool *p, mp_map_fn fn, const void *items, size_t n, size_t item_size,
                void *results, size_t result_size, size_t chunksize, mp_task_error *err)
{
    job *j;
    int rc = submit_map(p, fn, items, n, item_size, results, result_size, chunksize, false,
                        false, &j);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&p->lock);
    (void)job_wait(p, j, MP_FOREVER);
    rc = job_outcome(j, err);
    bool last = job_release(p, j);
    pthread_mutex_unlock(&p->lock);
    if (last)
        pool_destroy(p);
    return rc;
}

int mp_pool_map_async(mp_pool *p, mp_map_fn fn, const void *items, size_t n, size_t item_size,
                      void *results, size_t result_size, size_t chunksize, mp_async **out)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    job *j;
    int rc = submit_map(p, fn, items, n, item_size, results, result_size, chunksize, false,
                        false, &j);
    if (rc == 0)
        *out = &j->handle;
    return rc;
}

struct mp_imap {
    job *j;
};

int mp_pool_imap(mp_pool *p, mp_map_fn fn, const void *items, size_t n, size_t item_size,
                 size_t result_size, size_t chunksize, bool ordered, mp_imap **out)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    mp_imap *it = calloc(1, sizeof *it);
    if (it == NULL)
        return MP_ENOMEM;
    int rc = submit_map(p, fn, items, n, item_size, NULL, result_size, chunksize, true, ordered,
                        &it->j);
    if (rc < 0) {
        free(it);
        return rc;
    }
    *out = it;
    return 0;
}

static bool is_settled(const job *j, size_t i)
{
    return (j->settled[i / 64] >> (i % 64)) & 1;
}

int mp_imap_next(mp_imap *it, void *result, size_t *index, mp_task_error *err, double timeout)
{
    if (it == NULL)
        return MP_EINVAL;
    job *j = it->j;
    mp_pool *p = j->pool;
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    /* Counted in imap_callers (see drain_some) when it must wait, for the
     * lock or for a result; a result that is ready costs no more. */
    bool counted = pthread_mutex_trylock(&p->lock) != 0;
    if (counted) {
        atomic_fetch_add(&p->imap_callers, 1);
        pthread_mutex_lock(&p->lock);
    }
    size_t i;
    int rc = 0;
    for (;;) {
        if (j->ordered ? j->next_ordered >= j->n : j->fifo_head >= j->n) {
            rc = MP_EOF;
            break;
        }
        bool ready = j->ordered ? is_settled(j, j->next_ordered) : j->fifo_head < j->fifo_tail;
        if (ready) {
            i = j->ordered ? j->next_ordered++ : j->fifo[j->fifo_head++];
            break;
        }
        if (j->broken) {
            rc = MP_EBROKEN;
            break;
        }
        if (mp__deadline_expired(&d)) {
            rc = MP_ETIMEDOUT;
            break;
        }
        if (!counted) {
            atomic_fetch_add(&p->imap_callers, 1);
            counted = true;
        }
        if (d.forever)
            pthread_cond_wait(&p->cond, &p->lock);
        else
            pthread_cond_timedwait(&p->cond, &p->lock, mp__deadline_ts(&d));
    }
    if (rc == 0) {
        if (index)
            *index = i;
        if (result && j->result_size)
            memcpy(result, p->heap + j->results_off + i * j->result_size, j->result_size);
        for (size_t k = 0; k < j->nerrs; k++)
            if (j->errs[k].index == i) {
                if (err)
                    *err = j->errs[k];
                /* an item that overran task_timeout had its worker killed:
                 * MP_EWORKER, err->code MP_ETIMEDOUT (MP_ETIMEDOUT itself
                 * is this wait's own expiry) */
                rc = MP_EWORKER;
            }
        if (rc == 0) {
            uint64_t st = ((_Atomic uint64_t *)(p->heap + j->status_off))[i];
            int code = (int32_t)(uint32_t)st;
            if (code != 0) {
                if (err)
                    *err = (mp_task_error){.index = i, .code = code};
                rc = MP_ETASK;
            }
        }
    }
    if (counted)
        atomic_fetch_sub(&p->imap_callers, 1);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

void mp_imap_free(mp_imap *it)
{
    if (it == NULL)
        return;
    mp_pool *p = it->j->pool;
    pthread_mutex_lock(&p->lock);
    job *j = it->j;
    if (j->finished)
        job_free_memory(p, j);
    bool last = job_release(p, j);
    pthread_mutex_unlock(&p->lock);
    if (last)
        pool_destroy(p);
    free(it);
}

int mp_pool_apply_async(mp_pool *p, mp_task_fn fn, const mp_args *args,
                        void (*done)(mp_async *r, void *udata), void *udata, mp_async **out)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    if (p == NULL || fn == NULL)
        return MP_EINVAL;
    mp_buf ref = MP_BUF_INIT, enc = MP_BUF_INIT;
    mp__fdvec fds;
    fds.n = 0;
    mp_args *empty = NULL;
    int err = mp__funcref_encode((const void *)fn, &ref);
    if (err == 0 && args == NULL)
        err = mp_args_new(&empty);
    if (err == 0)
        err = mp__args_encode(args ? args : empty, &enc, &fds, MP__WIRE_CHILD);
    if (err == 0 && fds.n > 0)
        err = MP_EINVAL; /* descriptors and objects do not travel to pool workers */
    if (err == 0 && p->be != NULL) {
        /* to another machine only data travels: what the data channel
         * refuses (pointers, descriptors, objects) is refused here */
        mp_buf chk = MP_BUF_INIT;
        mp__fdvec none;
        none.n = 0;
        err = mp__args_encode(args ? args : empty, &chk, &none, MP__WIRE_DATA) < 0 ? MP_EINVAL : 0;
        mp_buf_free(&chk);
    }
    mp_args_free(empty);
    if (err < 0)
        goto out_free;
    pthread_mutex_lock(&p->lock);
    if (p->state != RUN) {
        err = MP_EINVAL;
        goto out;
    }
    job *j = job_new(p, T_APPLY, 1);
    if (j == NULL) {
        err = MP_ENOMEM;
        goto out;
    }
    uint64_t args_at = align8(ref.len), total = args_at + enc.len;
    err = mp__pool_region_alloc(&p->mem, total, &j->region_off);
    if (err < 0) {
        job_destroy(j);
        goto out;
    }
    j->region_len = total;
    memcpy(p->heap + j->region_off, ref.data, ref.len);
    memcpy(p->heap + j->region_off + args_at, enc.data, enc.len);
    j->done_cb = done;
    j->udata = udata;
    pentry e = {.kind = T_APPLY,
                .flags = p->task_timeout > 0 ? F_TIMED : 0,
                .job = j->id,
                .start = 0,
                .end = 1,
                .fn_off = j->region_off,
                .fn_len = ref.len,
                .args_off = j->region_off + args_at,
                .args_len = enc.len};
    err = enqueue(p, &e);
    j->next = p->jobs;
    p->jobs = j;
    if (err < 0)
        job_finish(p, j, true);
    publish(p);
    *out = &j->handle;
out:
    pthread_mutex_unlock(&p->lock);
out_free:
    mp_buf_free(&ref);
    mp_buf_free(&enc);
    return err;
}

int mp_pool_apply(mp_pool *p, mp_task_fn fn, const mp_args *args, mp_buf *result)
{
    mp_async *r;
    int err = mp_pool_apply_async(p, fn, args, NULL, NULL, &r);
    if (err < 0)
        return err;
    err = mp_async_get(r, MP_FOREVER, result, NULL);
    mp_async_free(r);
    return err;
}

/* ---- results -------------------------------------------------------------------- */

int mp_async_wait(mp_async *r, double timeout)
{
    if (r == NULL)
        return MP_EINVAL;
    job *j = r->j;
    pthread_mutex_lock(&j->pool->lock);
    int err = job_wait(j->pool, j, timeout);
    if (err == 0 && j->broken)
        err = MP_EBROKEN;
    pthread_mutex_unlock(&j->pool->lock);
    return err;
}

int mp_async_get(mp_async *r, double timeout, mp_buf *result, mp_task_error *err)
{
    if (r == NULL)
        return MP_EINVAL;
    job *j = r->j;
    pthread_mutex_lock(&j->pool->lock);
    int rc = job_wait(j->pool, j, timeout);
    if (rc == 0) {
        rc = job_outcome(j, err);
        if (rc == 0 && result && j->kind == T_APPLY) {
            result->len = 0;
            rc = mp_buf_append(result, j->result.data, j->result.len);
        }
    }
    pthread_mutex_unlock(&j->pool->lock);
    return rc;
}

bool mp_async_ready(mp_async *r)
{
    if (r == NULL)
        return false;
    pthread_mutex_lock(&r->j->pool->lock);
    bool f = r->j->finished;
    pthread_mutex_unlock(&r->j->pool->lock);
    return f;
}

int mp_async_successful(mp_async *r)
{
    if (r == NULL)
        return MP_EINVAL;
    pthread_mutex_lock(&r->j->pool->lock);
    int v = !r->j->finished ? MP_EINVAL : !r->j->failed && !r->j->broken;
    pthread_mutex_unlock(&r->j->pool->lock);
    return v;
}

int mp_async_progress(mp_async *r, size_t *done, size_t *total)
{
    if (r == NULL)
        return MP_EINVAL;
    pthread_mutex_lock(&r->j->pool->lock);
    if (done)
        *done = r->j->done;
    if (total)
        *total = r->j->n;
    pthread_mutex_unlock(&r->j->pool->lock);
    return 0;
}

void mp_async_free(mp_async *r)
{
    if (r == NULL)
        return;
    mp_pool *p = r->j->pool;
    pthread_mutex_lock(&p->lock);
    bool last = job_release(p, r->j);
    pthread_mutex_unlock(&p->lock);
    if (last)
        pool_destroy(p);
}

/* ---- close, join, terminate -------------------------------------------------------- */

int mp_pool_close(mp_pool *p)
{
    if (p == NULL)
        return MP_EINVAL;
    pthread_mutex_lock(&p->lock);
    int err = 0;
    if (p->state == RUN) {
        p->state = CLOSE;
        pentry stop = {.kind = T_STOP};
        for (int i = 0; i < p->nworkers && err == 0; i++)
            err = enqueue(p, &stop);
        publish(p);
    }
    pthread_mutex_unlock(&p->lock);
    wake_thread(p);
    return err;
}

int mp_pool_terminate(mp_pool *p)
{
    if (p == NULL)
        return MP_EINVAL;
    pthread_mutex_lock(&p->lock);
    /* what the workers reported before this settles: the results that did
     * finish stay readable through their handles; the rest breaks */
    drain(p, &p->wait_msg);
    p->state = TERMINATE;
    while (p->pend_head) {
        pending *t = p->pend_head;
        p->pend_head = t->next;
        free(t);
    }
    p->pend_tail = NULL;
    for (job *j = p->jobs; j; j = j->next)
        job_finish(p, j, true);
    kill_workers(p);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    wake_thread(p);
    return 0;
}

int mp_pool_join(mp_pool *p, double timeout)
{
    if (p == NULL)
        return MP_EINVAL;
    pthread_mutex_lock(&p->lock);
    if (p->state == RUN) {
        pthread_mutex_unlock(&p->lock);
        return MP_EINVAL; /* Python: "Pool is still running" */
    }
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    while (!p->thread_done) {
        if (d.forever) {
            pthread_cond_wait(&p->cond, &p->lock);
        } else {
            if (mp__deadline_expired(&d)) {
                pthread_mutex_unlock(&p->lock);
                return MP_ETIMEDOUT;
            }
            pthread_cond_timedwait(&p->cond, &p->lock, mp__deadline_ts(&d));
        }
    }
    pthread_mutex_unlock(&p->lock);
    if (p->thread_started) {
        pthread_join(p->thread, NULL);
        p->thread_started = false;
    }
    reap_workers(p);
    return 0;
}

void mp_pool_free(mp_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    bool running = p->state != TERMINATE;
    pthread_mutex_unlock(&p->lock);
    if (running)
        mp_pool_terminate(p);
    IGNORE_RESULT(mp_pool_join(p, MP_FOREVER));
    /* Handles outlive the pool (Python: an AsyncResult after terminate):
     * every job is finished, what did not finish broken.  Jobs whose
     * handle is gone go now; while any handle is left the pool keeps its
     * lock, its jobs and the heap's mapping, and the last mp_async_free /
     * mp_imap_free (or a map returning in another thread) destroys it. */
    pthread_mutex_lock(&p->lock);
    for (job **pp = &p->jobs; *pp;) {
        job *j = *pp;
        if (j->freed_handle) {
            *pp = j->next;
            job_destroy(j);
        } else {
            pp = &j->next;
        }
    }
    bool held = p->jobs != NULL;
    if (held) {
        p->freed = true;
        pool_shed(p);
    }
    pthread_mutex_unlock(&p->lock);
    if (!held)
        pool_destroy(p);
}
