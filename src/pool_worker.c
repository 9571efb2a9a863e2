/*
 * Pool workers: what runs in the worker processes.  A worker maps the pool
 * heap, runs the initializer if there is one, then claims entries of the
 * task table (pool_layout.h) one after the other and runs them: a map's
 * chunk item by item, its results and failures written straight into the
 * heap; an apply, its result bytes sent with the report.  Every task ends
 * with a report on the result queue and a wake-up of whoever takes reports.
 *
 * This side knows the shared layout and nothing of the parent (pool.c):
 * it could be started by another launcher (see mp__pool_worker_args).
 */
#include "pool_layout.h"

#include <stdlib.h>
#include <string.h>

/* Test hook: between a claim and the cursor's move (never set in production). */
void (*mp__pool_claim_hook)(void);

/* Claim the entry published at the cursor; sleep while it is not yet
 * published.  An entry carries its position, so one still busy from the
 * table's previous round is never mistaken for the current one. */
static pentry *claim(phdr *h, uint32_t me, _Atomic bool *stop)
{
    for (;;) {
        if (stop != NULL && atomic_load(stop))
            return NULL; /* a backend's thread told to end */
        uint32_t seen = atomic_load(&h->avail);
        uint64_t at = atomic_load(&h->head);
        pentry *e = &h->tasks[at % TASKCAP];
        uint32_t st = atomic_load(&e->state);
        uint64_t pos = atomic_load(&e->pos);
        if (pos == (at | POS_FREED)) {
            /* claimed, then freed before its claimer moved the cursor on
             * (it died in between): move it on for it */
            atomic_compare_exchange_strong(&h->head, &at, at + 1);
            continue;
        }
        if (pos == at && st == E_READY) {
            if (atomic_compare_exchange_strong(&e->state, &st, OWNED(E_CLAIMED, me))) {
                if (mp__pool_claim_hook)
                    mp__pool_claim_hook();
                atomic_compare_exchange_strong(&h->head, &at, at + 1);
                return e;
            }
            continue;
        }
        if (pos == at && ST(st) != E_FREE) { /* claimed by another: move the cursor on */
            atomic_compare_exchange_strong(&h->head, &at, at + 1);
            continue;
        }
        /* nothing there yet, or being published (its position is out, its
         * state not yet): sleep until the publish that bumps avail; no
         * spinning, should the publisher be preempted between its steps */
        if (atomic_load(&h->head) != at)
            continue;
        atomic_fetch_add(&h->sleepers, 1);
        mp__futex_wait(&h->avail, seen, NULL);
        atomic_fetch_sub(&h->sleepers, 1);
    }
}

static void *resolve(char *heap, const pentry *e, mp_buf *cache_key, void **cache_fn)
{
    const void *ref = heap + e->fn_off;
    if (cache_key->len == e->fn_len && memcmp(cache_key->data, ref, e->fn_len) == 0)
        return *cache_fn;
    mp__reader r;
    mp__reader_init(&r, ref, e->fn_len);
    char why[256];
    void *fn = NULL;
    if (mp__funcref_decode(&r, true, &fn, why, sizeof why) < 0) {
        mp__log(MP_LOG_ERROR, "pool worker: %s", why);
        return NULL;
    }
    cache_key->len = 0;
    if (mp_buf_append(cache_key, ref, e->fn_len) == 0)
        *cache_fn = fn;
    return fn;
}

/* Run the chunk @t (checked) of entry @e; the number of items that failed. */
static int run_map(char *heap, pentry *e, const pentry *t, mp_map_fn fn)
{
    int failed = 0;
    const char *items = heap + t->items_off;
    char *results = heap + t->results_off;
    _Atomic uint64_t *status = (_Atomic uint64_t *)(heap + t->status_off);
    bool timed = t->flags & F_TIMED;
    for (uint64_t i = t->start; i < t->end; i++) {
        atomic_store_explicit(&e->cur, i, memory_order_relaxed);
        if (timed)
            atomic_store(&e->started_ns, now_ns());
        int rc = fn(items + i * t->item_size, results + i * t->result_size);
        if (rc != 0) { /* the status array is zero: only failures are written */
            atomic_store_explicit(&status[i], STATUS_DONE | (uint32_t)rc, memory_order_release);
            failed++;
        }
    }
    atomic_store(&e->cur, t->end);
    return failed;
}

/* After a report was put: wake whoever takes reports (see wake_takers). */
static void reported(phdr *h, int efd)
{
    if (wake_takers(h))
        return;
    if (atomic_exchange(&h->thread_asleep, 0)) {
        uint64_t one = 1;
        (void)!write(efd, &one, sizeof one);
    }
}

/* In a worker: the table and the entry it runs (for mp__pool_poke); per
 * thread, since a pool backend runs its workers as threads. */
static _Thread_local phdr *worker_table;
static _Thread_local pentry *worker_entry;

/* Tests only: see internal.h. */
int mp__pool_poke(const char *what, uint64_t v)
{
    pentry *e = worker_entry;
    if (e == NULL || what == NULL)
        return MP_EINVAL;
    if (strncmp(what, "next.", 5) == 0) {
        /* the entry after this one, once it is published */
        uint64_t pos = atomic_load(&e->pos) + 1;
        e = &worker_table->tasks[pos % TASKCAP];
        for (int i = 0; i < 10000; i++) {
            if (atomic_load(&e->pos) == pos && ST(atomic_load(&e->state)) == E_READY)
                break;
            nanosleep(&(struct timespec){0, 1000000}, NULL);
        }
        what += 5;
    }
    uint64_t *w = strcmp(what, "start") == 0       ? &e->start
                  : strcmp(what, "end") == 0       ? &e->end
                  : strcmp(what, "job") == 0       ? &e->job
                  : strcmp(what, "items_off") == 0 ? &e->items_off
                  : strcmp(what, "fn_len") == 0    ? &e->fn_len
                                                   : NULL;
    if (strcmp(what, "kind") == 0)
        e->kind = (uint32_t)v;
    else if (strcmp(what, "started_ns") == 0)
        atomic_store(&e->started_ns, (int64_t)v);
    else if (w != NULL)
        *w = v;
    else
        return MP_EINVAL;
    return 0;
}

/* See pool_layout.h. */
int mp__pool_worker_run(const mp__pool_worker_args *wa)
{
    char *heap = wa->heap ? wa->heap : heap_map(wa->heapfd);
    mp_queue *results = wa->results;
    uint32_t me = wa->slot;
    uint64_t maxtasks = wa->maxtasks;
    int efd = wa->efd;
    size_t initlen = wa->initlen;
    const void *initref = wa->initref;
    if (heap == NULL)
        return 3;
    phdr *h = (phdr *)heap;
    worker_table = h;
    report rep = {0};
    if (initlen > 0) {
        mp__reader r;
        mp__reader_init(&r, initref, initlen);
        char why[256];
        void *init = NULL;
        mp_args *initargs = NULL;
        int rc;
        if (wa->init != NULL) {
            rc = wa->init(wa->ctx);
        } else {
            rc = mp__funcref_decode(&r, true, &init, why, sizeof why) < 0 ? MP_ENOTFOUND : 0;
            if (rc == 0)
                rc = mp_args_new(&initargs);
            if (rc == 0)
                rc = mp__args_append(initargs, wa->initargs, wa->initargs_from);
            if (rc == 0)
                rc = ((mp_target_fn)init)(initargs);
        }
        mp_args_free(initargs);
        /* the parent counts these; a failure makes it give up on the pool */
        rep.entry = UINT64_MAX;
        rep.code = rc;
        rep.worker = me;
        IGNORE_RESULT(mp_queue_put(results, &rep, sizeof rep, MP_FOREVER));
        reported(h, efd);
        if (rc != 0)
            return 4;
    }
    mp_buf key = MP_BUF_INIT, msg = MP_BUF_INIT, out = MP_BUF_INIT;
    void *fn = NULL;
    int code = 0;
    for (uint64_t done = 0; maxtasks == 0 || done < maxtasks; done++) {
        pentry *e = claim(h, me, wa->stop);
        if (e == NULL)
            break;
        pentry t = *e; /* what runs: read once, checked */
        worker_entry = e;
        if (!task_ok(&t)) {
            /* not what the parent publishes: it recovers the task from
             * its own copy, as from any worker's death */
            mp__log(MP_LOG_ERROR, "pool worker: task table entry %ld is corrupted",
                    (long)(e - h->tasks));
            code = 6;
            break;
        }
        if (t.kind == T_STOP) {
            atomic_store(&e->state, OWNED(E_DONE, me));
            break;
        }
        rep = (report){.job = t.job, .entry = (uint64_t)(e - h->tasks), .worker = me};
        out.len = 0;
        void *f = wa->run ? NULL : resolve(heap, &t, &key, &fn);
        if (wa->run != NULL) {
            atomic_store(&e->cur, t.start);
            mp_task_error fate = {0};
            rep.code = wa->run(wa->ctx, heap, e, &t, &out, &fate);
            rep.signal = fate.signal;
            rep.exitcode = fate.exitcode;
            if (wa->stop != NULL && atomic_load(wa->stop))
                break; /* abandoned: no report, as a killed worker sends none */
            atomic_store(&e->cur, t.kind == T_MAP ? t.end : 1);
        } else if (f == NULL) {
            rep.code = MP_ENOTFOUND;
        } else if (t.kind == T_MAP) {
            rep.code = run_map(heap, e, &t, (mp_map_fn)f);
        } else {
            mp_args *args = NULL;
            mp__reader r;
            mp__reader_init(&r, heap + t.args_off, t.args_len);
            atomic_store(&e->cur, 0);
            if (t.flags & F_TIMED)
                atomic_store(&e->started_ns, now_ns());
            rep.code = mp__args_decode(&r, NULL, 0, MP__WIRE_CHILD, &args);
            if (rep.code == 0)
                rep.code = ((mp_task_fn)f)(args, &out);
            mp_args_free(args);
            atomic_store(&e->cur, 1);
        }
        atomic_store(&e->state, OWNED(E_DONE, me));
        msg.len = 0;
        if (mp_buf_append(&msg, &rep, sizeof rep) < 0 || mp_buf_append(&msg, out.data, out.len) < 0)
            msg.len = sizeof rep; /* no memory for the bytes: an empty result */
        if (mp_queue_put(results, msg.data, msg.len, MP_FOREVER) < 0) {
            code = 5;
            break;
        }
        reported(h, efd);
    }
    mp_buf_free(&key);
    mp_buf_free(&msg);
    mp_buf_free(&out);
    return code;
}

/* args: task table heap fd, result queue, slot, maxtasks, eventfd,
 * initializer reference (bytes, may be empty), then the initializer's args
 * (as worker_start in pool.c packs them). */
int mp__pool_worker_main(const mp_args *a)
{
    mp__pool_worker_args wa = {
        .heapfd = mp_args_fd(a, 0),
        .results = mp_args_queue(a, 1),
        .slot = (uint32_t)mp_args_int(a, 2),
        .maxtasks = (uint64_t)mp_args_int(a, 3),
        .efd = mp_args_fd(a, 4),
        .initargs = a,
        .initargs_from = 6,
    };
    wa.initref = mp_args_bytes(a, 5, &wa.initlen);
    return mp__pool_worker_run(&wa);
}
