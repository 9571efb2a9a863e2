/*
 * libmultiproc-mpi: the Pool's workers on MPI ranks.
 *
 * Rank 0 runs the program.  A pool made on mp_mpi_context() is an ordinary
 * pool (pool.c: jobs, results, imap, callbacks, close and terminate) whose
 * "workers" are forwarder threads started through the pool backend hook
 * (mp__pool_backend, pool_layout.h): each runs the worker's own loop
 * (mp__pool_worker_run), claims a task from the table, sends it to its
 * rank, waits for the reply, writes the results and failures into the
 * heap where a worker would have, and reports.  Every rank gets two
 * forwarders per worker process it runs, so that a chunk is always
 * waiting there while another one's results travel back.
 *
 * Every other rank stays in mp_mpi_init, serving: for each pool of rank 0
 * it makes a local pool with the spawn context (never fork in an MPI
 * process) and the same initializer, task_timeout and maxtasksperchild;
 * runner threads put each chunk received into it as one task (an
 * unordered imap with chunksize n: the chunk runs in one worker, item by
 * item, as it would locally) and collect each item's result and error, so
 * an item that kills its worker fails alone exactly as in the local pool.
 *
 * MPI is called from one thread per process (MPI_THREAD_SERIALIZED): on
 * rank 0 the link thread, on the others the serving main thread.  Open MPI
 * has no blocking receive that sleeps, so each polls with MPI_Iprobe, and
 * sleeps between looks on a condition variable (woken at once by a thread
 * with something to send) for a time that doubles while nothing comes: up
 * to LINK_SLEEP_ACTIVE_NS while work is under way (a reply is awaited, or
 * a message came in the last LINK_ACTIVE_NS), which keeps the poll's part
 * of a round trip small (a 2 ms cap made chunk round trips 3x slower), and
 * up to LINK_SLEEP_IDLE_NS on a worker rank with nothing to do.  Rank 0's
 * link thread does not poll at all while nothing is outstanding.
 *
 * A message is a header and its body, packed as this binary lays out its
 * structs (every rank runs the same binary on one architecture); one
 * larger than PIECE bytes (MPI counts in int) goes as a first piece, which
 * carries the total, and the rest in pieces on TAG_PIECE, which MPI
 * delivers in order; the receiver takes each piece at the size it comes.
 */
#include "multiproc/mpi.h"

#include "../src/pool_layout.h"

#include <elf.h>
#include <errno.h>
#include <link.h>
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define PIECE ((size_t)1 << 30)      /* below MPI's int count */
/* The piece size this process sends: PIECE, or (tests only, so that
 * megabyte messages go in pieces) $MULTIPROC_MPI_PIECE bytes. */
static size_t piece = PIECE;
#define LINK_SLEEP_MIN_NS 20000      /* 20 us */
#define LINK_SLEEP_ACTIVE_NS 200000  /* 0.2 ms */
#define LINK_SLEEP_IDLE_NS 5000000   /* 5 ms */
#define LINK_ACTIVE_NS 100000000     /* 100 ms */
#define INFLIGHT_PER_PROCESS 2
#define BID_MAX 64

enum { TAG_REQ = 1, TAG_REP = 2, TAG_PIECE = 3 };
enum { M_POOL_NEW = 1, M_MAP, M_APPLY, M_POOL_FREE, M_STOP, M_REPLY };

typedef struct msg_hdr {
    uint32_t type, pool;
    uint64_t req;                    /* the call a reply answers; 0 none */
    uint64_t total;                  /* bytes of the whole message */
} msg_hdr;

typedef struct pool_new_body {
    int32_t processes, code;         /* code: in the reply */
    uint64_t maxtasks;
    double task_timeout;
    uint64_t initref_len, initargs_len; /* then the bytes of each, 8-aligned */
} pool_new_body;

typedef struct map_body {
    uint64_t item_size, result_size, n, fn_len; /* then fn ref, items */
} map_body;

typedef struct apply_body {
    uint64_t fn_len, args_len;       /* then fn ref, encoded args */
} apply_body;

typedef struct item_err {
    uint64_t index;
    int32_t code, signal, exitcode, pad;
} item_err;

typedef struct reply_body {
    int32_t code;                    /* pool new, apply: the code; map: 0 */
    int32_t signal, exitcode, pad;   /* apply */
    uint64_t n, nfail, len;          /* map: items, failures (item_err each), then results;
                                        apply: result bytes */
} reply_body;

static uint64_t align8(uint64_t v)
{
    return (v + 7) & ~(uint64_t)7;
}

/* ---- both sides: messages ----------------------------------------------- */

/* A message being sent: kept until MPI is done with it. */
typedef struct outmsg {
    struct outmsg *next;
    int dest;
    char *buf;
    size_t len;
    MPI_Request *reqs;
    int nreq;
} outmsg;

static int tag_out; /* TAG_REQ on rank 0, TAG_REP elsewhere */

/* Post the sends of @m (link thread). */
static void post(outmsg *m)
{
    size_t npieces = (m->len + piece - 1) / piece; /* a message has its header */
    m->reqs = calloc(npieces, sizeof *m->reqs);
    m->nreq = 0;
    for (size_t off = 0; off < m->len; off += piece) {
        size_t k = m->len - off < piece ? m->len - off : piece;
        int tag = off == 0 ? tag_out : TAG_PIECE;
        if (m->reqs != NULL)
            MPI_Isend(m->buf + off, (int)k, MPI_BYTE, m->dest, tag, MPI_COMM_WORLD,
                      &m->reqs[m->nreq++]);
        else /* no memory for the requests: each piece in turn */
            MPI_Send(m->buf + off, (int)k, MPI_BYTE, m->dest, tag, MPI_COMM_WORLD);
    }
}

static bool sent(outmsg *m)
{
    int flag = 1;
    if (m->nreq > 0)
        MPI_Testall(m->nreq, m->reqs, &flag, MPI_STATUSES_IGNORE);
    return flag != 0;
}

static void outmsg_free(outmsg *m)
{
    free(m->reqs);
    free(m->buf);
    free(m);
}

/* Move the sends in flight along; whether any remain. */
static bool sends_progress(outmsg **inflight)
{
    for (outmsg **pp = inflight; *pp;) {
        outmsg *m = *pp;
        if (sent(m)) {
            *pp = m->next;
            outmsg_free(m);
        } else {
            pp = &m->next;
        }
    }
    return *inflight != NULL;
}

/* Receive the message whose first piece was probed as @st; NULL: no memory
 * (the pieces are taken and dropped). */
static char *recv_msg(const MPI_Status *st, int tag, size_t *len)
{
    int cnt = 0;
    MPI_Get_count(st, MPI_BYTE, &cnt);
    size_t first = (size_t)(cnt < 0 ? 0 : cnt);
    char *buf = malloc(first < sizeof(msg_hdr) ? sizeof(msg_hdr) : first);
    static char sink[1];
    MPI_Recv(buf ? buf : sink, buf ? cnt : 0, MPI_BYTE, st->MPI_SOURCE, tag, MPI_COMM_WORLD,
             MPI_STATUS_IGNORE);
    if (buf == NULL || first < sizeof(msg_hdr)) {
        free(buf);
        return NULL;
    }
    msg_hdr h;
    memcpy(&h, buf, sizeof h);
    if (h.total > first) {
        char *b = realloc(buf, h.total);
        if (b == NULL) {
            free(buf);
            return NULL;
        }
        buf = b;
        for (size_t off = first; off < h.total;) {
            MPI_Status ps;
            MPI_Probe(st->MPI_SOURCE, TAG_PIECE, MPI_COMM_WORLD, &ps); /* posted already */
            MPI_Get_count(&ps, MPI_BYTE, &cnt);
            size_t k = cnt < 0 ? 0 : (size_t)cnt;
            if (k == 0 || k > h.total - off) { /* not this message's: give up on it */
                free(buf);
                return NULL;
            }
            MPI_Recv(buf + off, cnt, MPI_BYTE, st->MPI_SOURCE, TAG_PIECE, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE);
            off += k;
        }
    }
    *len = h.total > first ? h.total : first;
    return buf;
}

/* A message of @body_len bytes after its header (zeroed). */
static outmsg *msg_new(int dest, uint32_t type, uint32_t pool, uint64_t req, size_t body_len)
{
    outmsg *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->len = sizeof(msg_hdr) + body_len;
    m->buf = calloc(1, m->len);
    if (m->buf == NULL) {
        free(m);
        return NULL;
    }
    m->dest = dest;
    msg_hdr h = {.type = type, .pool = pool, .req = req, .total = m->len};
    memcpy(m->buf, &h, sizeof h);
    return m;
}

static void sleep_on(pthread_cond_t *cv, pthread_mutex_t *lk, long ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += ns;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(cv, lk, &ts);
}

static void cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

/* This program's build id (the executable's GNU build-id note). */
typedef struct bid {
    uint32_t len;
    uint8_t b[BID_MAX];
} bid;

static int bid_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    bid *out = data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            const char *name = p + sizeof *nh, *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0 &&
                nh->n_descsz <= BID_MAX) {
                out->len = nh->n_descsz;
                memcpy(out->b, desc, nh->n_descsz);
                return 1;
            }
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
    return 1; /* the first object is the executable: only it */
}

/* ---- the process's state -------------------------------------------------- */

static struct {
    bool inited, we_init, finalized;
    int rank, size;
    bool bid_mismatch;
    int *cpus;                       /* rank 0: each rank's CPU count */
    uint32_t next_pool;
} G;

/* ---- rank 0: the link thread and calls -------------------------------------- */

typedef struct call {
    struct call *next;
    uint64_t req;
    int rank;
    bool done, orphan;               /* orphan: its waiter gave up; freed on reply */
    char *reply;
    size_t reply_len;
    /* its waiter's own (a broadcast to every waiter at every reply would
     * wake thousands of threads on a large job), and its stop flag */
    pthread_cond_t cv;
    _Atomic bool *stop;
} call;

static void call_free(call *c)
{
    pthread_cond_destroy(&c->cv);
    free(c->reply);
    free(c);
}

static struct {
    pthread_mutex_t lk;
    pthread_cond_t cv;               /* the link thread: something to send, quit */
    outmsg *outq, *outq_tail;        /* to post */
    call *calls;                     /* waiting for their reply */
    uint64_t next_req;
    bool quit;
    pthread_t thread;
} L = {.lk = PTHREAD_MUTEX_INITIALIZER};

static void *link_thread(void *arg)
{
    (void)arg;
    outmsg *inflight = NULL;
    long nap = LINK_SLEEP_MIN_NS;
    pthread_mutex_lock(&L.lk);
    for (;;) {
        outmsg *q = L.outq;
        L.outq = L.outq_tail = NULL;
        bool quit = L.quit;
        pthread_mutex_unlock(&L.lk);
        bool busy = q != NULL;
        while (q) {
            outmsg *m = q;
            q = q->next;
            post(m);
            m->next = inflight;
            inflight = m;
        }
        bool sending = sends_progress(&inflight);
        for (;;) {
            int flag = 0;
            MPI_Status st;
            MPI_Iprobe(MPI_ANY_SOURCE, TAG_REP, MPI_COMM_WORLD, &flag, &st);
            if (!flag)
                break;
            busy = true;
            size_t len = 0;
            char *buf = recv_msg(&st, TAG_REP, &len);
            if (buf == NULL)
                continue;
            msg_hdr h;
            memcpy(&h, buf, sizeof h);
            pthread_mutex_lock(&L.lk);
            call **pp = &L.calls;
            while (*pp && (*pp)->req != h.req)
                pp = &(*pp)->next;
            call *c = *pp;
            if (c != NULL)
                *pp = c->next;
            if (c != NULL && !c->orphan) {
                c->reply = buf;
                c->reply_len = len;
                c->done = true;
                buf = NULL;
                pthread_cond_signal(&c->cv);
            } else if (c != NULL) {
                call_free(c);
            }
            pthread_mutex_unlock(&L.lk);
            free(buf); /* a reply nobody waits for any more */
        }
        pthread_mutex_lock(&L.lk);
        /* L.quit afresh: it may have been set while the lock was let go */
        if (L.quit && quit && !sending && L.outq == NULL)
            break;
        if (L.outq != NULL || L.quit != quit)
            continue;
        /* (it polls only while replies are awaited: work is under way) */
        nap = busy ? LINK_SLEEP_MIN_NS
                   : nap * 2 > LINK_SLEEP_ACTIVE_NS ? LINK_SLEEP_ACTIVE_NS : nap * 2;
        if (L.calls == NULL && !sending && !L.quit)
            pthread_cond_wait(&L.cv, &L.lk); /* nothing to hear: no polling */
        else if (!busy)
            sleep_on(&L.cv, &L.lk, nap);
    }
    pthread_mutex_unlock(&L.lk);
    return NULL;
}

/* Queue @m (under L.lk); with @c, a call waiting for its reply. */
static void submit_locked(outmsg *m, call *c)
{
    if (c != NULL) {
        c->next = L.calls;
        L.calls = c;
    }
    if (L.outq_tail)
        L.outq_tail->next = m;
    else
        L.outq = m;
    L.outq_tail = m;
    pthread_cond_signal(&L.cv);
}

/* Send @m as a call to @rank: its req set here. */
static call *call_start(outmsg *m)
{
    call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        outmsg_free(m);
        return NULL;
    }
    pthread_cond_init(&c->cv, NULL);
    pthread_mutex_lock(&L.lk);
    c->req = ++L.next_req;
    c->rank = m->dest;
    ((msg_hdr *)m->buf)->req = c->req;
    submit_locked(m, c);
    pthread_mutex_unlock(&L.lk);
    return c;
}

/* Wait for @c's reply, or until *@stop.  The reply (the caller frees it),
 * or NULL: given up (the call is left to the link thread). */
static char *call_wait(call *c, _Atomic bool *stop, size_t *len)
{
    pthread_mutex_lock(&L.lk);
    c->stop = stop;
    while (!c->done && !(stop && atomic_load(stop)))
        pthread_cond_wait(&c->cv, &L.lk);
    char *r = NULL;
    if (c->done) {
        r = c->reply;
        *len = c->reply_len;
        c->reply = NULL;
        call_free(c);
    } else {
        c->orphan = true;
    }
    pthread_mutex_unlock(&L.lk);
    return r;
}

static void send_oneway(outmsg *m)
{
    pthread_mutex_lock(&L.lk);
    submit_locked(m, NULL);
    pthread_mutex_unlock(&L.lk);
}

/* ---- rank 0: the pool backend ------------------------------------------------ */

typedef struct rpool {
    uint32_t id;
    int nworkers;
    int *slot_rank;                  /* the rank each worker forwards to */
} rpool;

typedef struct fwd {
    rpool *rp;
    int rank;
    mp__pool_worker_args wa;
    _Atomic bool stop;
    pthread_t thread;
    int efd;                         /* the sentinel: written when it ends */
    int code;
} fwd;

static int be_open(const mp_pool_opts *o, const mp_buf *initref, void **state, int *nworkers)
{
    if (!G.inited || G.finalized || G.rank != 0 || G.size < 2)
        return MP_EINVAL;
    if (G.bid_mismatch)
        return MP_ENOTFOUND;
    /* the initializer's arguments: data only (MP_EINVAL otherwise) */
    mp_buf args = MP_BUF_INIT;
    mp_args *empty = NULL;
    int err = o->initargs ? 0 : mp_args_new(&empty);
    mp__fdvec fds;
    fds.n = 0;
    if (err == 0)
        err = mp__args_encode(o->initargs ? o->initargs : empty, &args, &fds, MP__WIRE_DATA) < 0
                  ? MP_EINVAL
                  : 0;
    mp_args_free(empty);
    rpool *rp = calloc(1, sizeof *rp);
    if (err == 0 && rp == NULL)
        err = MP_ENOMEM;
    int total = 0;
    for (int r = 1; err == 0 && r < G.size; r++)
        total += INFLIGHT_PER_PROCESS * (o->processes > 0 ? o->processes : G.cpus[r]);
    if (err == 0 && (rp->slot_rank = calloc((size_t)total, sizeof(int))) == NULL)
        err = MP_ENOMEM;
    if (err < 0) {
        free(rp);
        mp_buf_free(&args);
        return err;
    }
    rp->nworkers = total;
    for (int r = 1, s = 0; r < G.size; r++)
        for (int k = 0; k < INFLIGHT_PER_PROCESS * (o->processes > 0 ? o->processes : G.cpus[r]);
             k++)
            rp->slot_rank[s++] = r;
    pthread_mutex_lock(&L.lk);
    rp->id = ++G.next_pool;
    pthread_mutex_unlock(&L.lk);
    /* every rank makes its local pool (its initializer runs there now) */
    size_t blen = sizeof(pool_new_body) + align8(initref->len) + align8(args.len);
    call **calls = calloc((size_t)G.size, sizeof *calls);
    if (calls == NULL)
        err = MP_ENOMEM;
    for (int r = 1; err == 0 && r < G.size; r++) {
        outmsg *m = msg_new(r, M_POOL_NEW, rp->id, 0, blen);
        if (m == NULL) {
            err = MP_ENOMEM;
            break;
        }
        pool_new_body b = {.processes = o->processes > 0 ? o->processes : 0,
                           .maxtasks = o->maxtasksperchild,
                           .task_timeout = o->task_timeout,
                           .initref_len = initref->len,
                           .initargs_len = args.len};
        char *at = m->buf + sizeof(msg_hdr);
        memcpy(at, &b, sizeof b);
        if (initref->len) /* (no initializer: no buffer at all) */
            memcpy(at + sizeof b, initref->data, initref->len);
        if (args.len)
            memcpy(at + sizeof b + align8(initref->len), args.data, args.len);
        if ((calls[r] = call_start(m)) == NULL)
            err = MP_ENOMEM;
    }
    for (int r = 1; calls && r < G.size; r++) {
        if (calls[r] == NULL)
            continue;
        size_t len = 0;
        char *rep = call_wait(calls[r], NULL, &len);
        reply_body rb = {.code = MP_EBADMSG};
        if (len >= sizeof(msg_hdr) + sizeof rb)
            memcpy(&rb, rep + sizeof(msg_hdr), sizeof rb);
        free(rep);
        if (rb.code != 0 && err == 0) {
            mp__log(MP_LOG_ERROR, "mpi pool: rank %d could not start its pool (%d)", r, rb.code);
            err = rb.code;
        }
    }
    free(calls);
    mp_buf_free(&args);
    if (err < 0) {
        /* the ranks that did make theirs free it */
        for (int r = 1; r < G.size; r++) {
            outmsg *m = msg_new(r, M_POOL_FREE, rp->id, 0, 0);
            if (m)
                send_oneway(m);
        }
        free(rp->slot_rank);
        free(rp);
        return err;
    }
    *state = rp;
    *nworkers = total;
    return 0;
}

/* Fail every item of the chunk @t with @code (its results are left). */
static int fail_chunk(char *heap, const pentry *t, int code)
{
    if (t->kind != T_MAP)
        return code;
    _Atomic uint64_t *status = (_Atomic uint64_t *)(heap + t->status_off);
    mp_task_error te = {.code = code};
    for (uint64_t i = t->start; i < t->end; i++)
        atomic_store(&status[i], status_word(&te));
    return (int)(t->end - t->start);
}

/* The worker's run (mp__pool_worker_args.run): the task at its rank. */
static int fwd_run(void *ctx, char *heap, pentry *e, const pentry *t, mp_buf *out,
                   mp_task_error *fate)
{
    fwd *f = ctx;
    outmsg *m;
    if (t->kind == T_MAP) {
        uint64_t n = t->end - t->start;
        map_body b = {.item_size = t->item_size, .result_size = t->result_size, .n = n,
                      .fn_len = t->fn_len};
        m = msg_new(f->rank, M_MAP, f->rp->id, 0,
                    sizeof b + align8(t->fn_len) + n * t->item_size);
        if (m == NULL)
            return fail_chunk(heap, t, MP_ENOMEM);
        char *at = m->buf + sizeof(msg_hdr);
        memcpy(at, &b, sizeof b);
        memcpy(at + sizeof b, heap + t->fn_off, t->fn_len);
        memcpy(at + sizeof b + align8(t->fn_len), heap + t->items_off + t->start * t->item_size,
               n * t->item_size);
    } else {
        apply_body b = {.fn_len = t->fn_len, .args_len = t->args_len};
        m = msg_new(f->rank, M_APPLY, f->rp->id, 0, sizeof b + align8(t->fn_len) + t->args_len);
        if (m == NULL)
            return MP_ENOMEM;
        char *at = m->buf + sizeof(msg_hdr);
        memcpy(at, &b, sizeof b);
        memcpy(at + sizeof b, heap + t->fn_off, t->fn_len);
        memcpy(at + sizeof b + align8(t->fn_len), heap + t->args_off, t->args_len);
    }
    call *c = call_start(m);
    if (c == NULL)
        return fail_chunk(heap, t, MP_ENOMEM);
    size_t len = 0;
    char *rep = call_wait(c, &f->stop, &len);
    if (rep == NULL)
        return fail_chunk(heap, t, MP_EBROKEN); /* abandoned (terminate) */
    reply_body rb;
    int rc;
    const char *body = rep + sizeof(msg_hdr) + sizeof rb;
    size_t blen = len - sizeof(msg_hdr) - sizeof rb;
    if (len < sizeof(msg_hdr) + sizeof rb) {
        rc = fail_chunk(heap, t, MP_EBADMSG);
    } else if (memcpy(&rb, rep + sizeof(msg_hdr), sizeof rb), t->kind == T_APPLY) {
        rc = rb.code;
        if (rc == 0 && (rb.len > blen || mp_buf_append(out, body, rb.len) < 0))
            rc = MP_ENOMEM;
        /* the rank's worker process died on it: how, as a map item's
         * status word carries it */
        if (rc == MP_EWORKER || rc == MP_ETIMEDOUT) {
            fate->signal = rb.signal;
            fate->exitcode = rb.exitcode;
        }
    } else {
        uint64_t n = t->end - t->start;
        if (rb.code != 0 || rb.n != n || rb.nfail > n ||
            blen != rb.nfail * sizeof(item_err) + n * t->result_size) {
            rc = fail_chunk(heap, t, rb.code != 0 ? rb.code : MP_EBADMSG);
        } else {
            _Atomic uint64_t *status = (_Atomic uint64_t *)(heap + t->status_off);
            const char *res = body + rb.nfail * sizeof(item_err);
            memcpy(heap + t->results_off + t->start * t->result_size, res, n * t->result_size);
            for (uint64_t k = 0; k < rb.nfail; k++) {
                item_err ie;
                memcpy(&ie, body + k * sizeof ie, sizeof ie);
                if (ie.index >= n || ie.code == 0)
                    continue;
                mp_task_error te = {.code = ie.code, .signal = ie.signal, .exitcode = ie.exitcode};
                atomic_store(&status[t->start + ie.index], status_word(&te));
            }
            rc = (int)rb.nfail;
        }
    }
    (void)e;
    free(rep);
    return rc;
}

/* The initializer ran on the rank when the pool was made (be_open). */
static int fwd_init(void *ctx)
{
    (void)ctx;
    return 0;
}

static void *fwd_thread(void *arg)
{
    fwd *f = arg;
    f->code = mp__pool_worker_run(&f->wa);
    uint64_t one = 1;
    (void)!write(f->efd, &one, sizeof one);
    return NULL;
}

static int be_start(void *state, const mp__pool_worker_args *wa, void **w, int *sentinel)
{
    rpool *rp = state;
    if (wa->slot >= (uint32_t)rp->nworkers)
        return MP_EINVAL;
    fwd *f = calloc(1, sizeof *f);
    if (f == NULL)
        return MP_ENOMEM;
    f->rp = rp;
    f->rank = rp->slot_rank[wa->slot];
    f->wa = *wa;
    f->wa.stop = &f->stop;
    f->wa.run = fwd_run;
    f->wa.init = fwd_init;
    f->wa.ctx = f;
    f->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (f->efd < 0) {
        int err = -errno;
        free(f);
        return err;
    }
    int err = -pthread_create(&f->thread, NULL, fwd_thread, f);
    if (err < 0) {
        close(f->efd);
        free(f);
        return err;
    }
    *w = f;
    *sentinel = f->efd;
    return 0;
}

static void be_kill(void *w)
{
    fwd *f = w;
    pthread_mutex_lock(&L.lk);
    atomic_store(&f->stop, true);
    for (call *c = L.calls; c; c = c->next) /* its call, if it waits for one */
        if (c->stop == &f->stop)
            pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&L.lk);
}

static int be_reap(void *w)
{
    fwd *f = w;
    pthread_join(f->thread, NULL);
    int code = f->code;
    close(f->efd);
    free(f);
    return code;
}

static void be_close(void *state, bool terminated)
{
    rpool *rp = state;
    for (int r = 1; r < G.size; r++) {
        outmsg *m = msg_new(r, M_POOL_FREE, rp->id, terminated, 0);
        if (m)
            send_oneway(m);
    }
    free(rp->slot_rank);
    free(rp);
}

static const mp__pool_backend backend = {
    .open = be_open, .start = be_start, .kill = be_kill, .reap = be_reap, .close = be_close};

static mp_context mpi_ctx;

mp_context *mp_mpi_context(void)
{
    if (mpi_ctx.method == NULL) {
        /* processes started on it are local, with spawn */
        mpi_ctx = *mp_get_context("spawn");
        mpi_ctx.method = "mpi";
        mpi_ctx.pool = &backend;
    }
    return &mpi_ctx;
}

/* ---- worker ranks: the server ------------------------------------------------- */

typedef struct req {
    struct req *next;
    char *buf;
    size_t len;
} req;

typedef struct lpool {
    struct lpool *next;
    uint32_t id;
    mp_pool *p;
    pthread_t *runners;
    int nrunners;
    req *head, *tail;                /* to run */
    bool stop;
} lpool;

static struct {
    pthread_mutex_t lk;
    pthread_cond_t cv;               /* runners: a request, stop */
    pthread_cond_t main_cv;          /* the main thread: a reply to send */
    outmsg *outq, *outq_tail;
    lpool *pools;
} S = {.lk = PTHREAD_MUTEX_INITIALIZER};

static void reply_locked(outmsg *m)
{
    if (S.outq_tail)
        S.outq_tail->next = m;
    else
        S.outq = m;
    S.outq_tail = m;
    pthread_cond_signal(&S.main_cv);
}

static outmsg *reply_new(const msg_hdr *h, const reply_body *rb, size_t extra)
{
    outmsg *m = msg_new(0, M_REPLY, h->pool, h->req, sizeof *rb + extra);
    if (m != NULL)
        memcpy(m->buf + sizeof(msg_hdr), rb, sizeof *rb);
    return m;
}

static void *resolve_fn(const void *ref, size_t len)
{
    mp__reader r;
    mp__reader_init(&r, ref, len);
    char why[256];
    void *fn = NULL;
    if (mp__funcref_decode(&r, true, &fn, why, sizeof why) < 0) {
        fprintf(stderr, "multiproc-mpi: rank %d: %s\n", G.rank, why);
        return NULL;
    }
    return fn;
}

/* Run a map chunk in the local pool: one task, each item's outcome. */
static outmsg *run_map(lpool *lp, const msg_hdr *h, const char *body, size_t blen)
{
    map_body b;
    reply_body rb = {0};
    if (blen < sizeof b)
        return reply_new(h, &(reply_body){.code = MP_EBADMSG}, 0);
    memcpy(&b, body, sizeof b);
    if (b.fn_len > blen || sizeof b + align8(b.fn_len) > blen || b.item_size == 0 ||
        (blen - sizeof b - align8(b.fn_len)) / b.item_size < b.n)
        return reply_new(h, &(reply_body){.code = MP_EBADMSG}, 0);
    const char *items = body + sizeof b + align8(b.fn_len);
    mp_map_fn fn = (mp_map_fn)resolve_fn(body + sizeof b, b.fn_len);
    item_err *errs = calloc(b.n + 1, sizeof *errs);
    char *results = calloc(b.n * b.result_size + 1, 1), *tmp = malloc(b.result_size + 1);
    mp_imap *it = NULL;
    int err = errs && results && tmp ? 0 : MP_ENOMEM;
    if (err == 0 && fn == NULL)
        err = MP_ENOTFOUND;
    if (err == 0)
        err = mp_pool_imap(lp->p, fn, items, b.n, b.item_size, b.result_size,
                           b.n ? b.n : 1, false, &it);
    for (; err == 0;) {
        size_t i;
        mp_task_error te = {0};
        int rc = mp_imap_next(it, tmp, &i, &te, MP_FOREVER);
        if (rc == MP_EOF)
            break;
        if (rc == 0 || rc == MP_ETASK || rc == MP_EWORKER) {
            if (i < b.n)
                memcpy(results + i * b.result_size, tmp, b.result_size);
            if (rc != 0 && i < b.n)
                errs[rb.nfail++] = (item_err){
                    .index = i, .code = te.code, .signal = te.signal, .exitcode = te.exitcode};
            continue;
        }
        err = rc; /* MP_EBROKEN: terminated */
    }
    mp_imap_free(it);
    outmsg *m = NULL;
    if (err == 0) {
        rb.n = b.n;
        m = reply_new(h, &rb, rb.nfail * sizeof *errs + b.n * b.result_size);
        if (m != NULL) {
            char *at = m->buf + sizeof(msg_hdr) + sizeof rb;
            memcpy(at, errs, rb.nfail * sizeof *errs);
            memcpy(at + rb.nfail * sizeof *errs, results, b.n * b.result_size);
        }
    } else {
        m = reply_new(h, &(reply_body){.code = err}, 0);
    }
    free(errs);
    free(results);
    free(tmp);
    return m;
}

static outmsg *run_apply(lpool *lp, const msg_hdr *h, const char *body, size_t blen)
{
    apply_body b;
    if (blen < sizeof b)
        return reply_new(h, &(reply_body){.code = MP_EBADMSG}, 0);
    memcpy(&b, body, sizeof b);
    if (b.fn_len > blen || sizeof b + align8(b.fn_len) > blen ||
        b.args_len > blen - sizeof b - align8(b.fn_len))
        return reply_new(h, &(reply_body){.code = MP_EBADMSG}, 0);
    mp_task_fn fn = (mp_task_fn)resolve_fn(body + sizeof b, b.fn_len);
    if (fn == NULL)
        return reply_new(h, &(reply_body){.code = MP_ENOTFOUND}, 0);
    mp__reader r;
    mp__reader_init(&r, body + sizeof b + align8(b.fn_len), b.args_len);
    mp_args *args = NULL;
    int rc = mp__args_decode(&r, NULL, 0, MP__WIRE_CHILD, &args);
    mp_async *a = NULL;
    mp_buf res = MP_BUF_INIT;
    mp_task_error te = {0};
    if (rc == 0)
        rc = mp_pool_apply_async(lp->p, fn, args, NULL, NULL, &a);
    if (rc == 0)
        rc = mp_async_get(a, MP_FOREVER, &res, &te);
    mp_async_free(a);
    mp_args_free(args);
    /* the task's own code (MP_ETASK), or the worker's fate (MP_EWORKER,
     * te.code MP_EWORKER or MP_ETIMEDOUT), as a local worker reports it */
    reply_body rb = {.code = rc == MP_ETASK || rc == MP_EWORKER ? te.code : rc,
                     .signal = te.signal,
                     .exitcode = te.exitcode,
                     .len = rc == 0 ? res.len : 0};
    outmsg *m = reply_new(h, &rb, rb.len);
    if (m != NULL && rb.len)
        memcpy(m->buf + sizeof(msg_hdr) + sizeof rb, res.data, rb.len);
    mp_buf_free(&res);
    return m;
}

static void *runner(void *arg)
{
    lpool *lp = arg;
    pthread_mutex_lock(&S.lk);
    for (;;) {
        while (lp->head == NULL && !lp->stop)
            pthread_cond_wait(&S.cv, &S.lk);
        if (lp->head == NULL)
            break;
        req *q = lp->head;
        lp->head = q->next;
        if (lp->head == NULL)
            lp->tail = NULL;
        pthread_mutex_unlock(&S.lk);
        msg_hdr h;
        memcpy(&h, q->buf, sizeof h);
        const char *body = q->buf + sizeof h;
        size_t blen = q->len - sizeof h;
        outmsg *m = h.type == M_MAP ? run_map(lp, &h, body, blen) : run_apply(lp, &h, body, blen);
        free(q->buf);
        free(q);
        pthread_mutex_lock(&S.lk);
        if (m != NULL)
            reply_locked(m);
        /* no memory for a reply: rank 0's forwarder waits; nothing better */
    }
    pthread_mutex_unlock(&S.lk);
    return NULL;
}

static lpool *find_pool(uint32_t id)
{
    for (lpool *lp = S.pools; lp; lp = lp->next)
        if (lp->id == id)
            return lp;
    return NULL;
}

/* Make pool @h->pool as rank 0 asked; the reply's code. */
static int pool_new(const msg_hdr *h, const char *body, size_t blen)
{
    pool_new_body b;
    if (blen < sizeof b)
        return MP_EBADMSG;
    memcpy(&b, body, sizeof b);
    if (b.initref_len > blen || sizeof b + align8(b.initref_len) > blen ||
        b.initargs_len > blen - sizeof b - align8(b.initref_len) ||
        b.processes < 0 || b.processes > 4096)
        return MP_EBADMSG;
    mp_pool_opts o = {.ctx = mp_get_context("spawn"),
                      .processes = b.processes,
                      .maxtasksperchild = b.maxtasks,
                      .task_timeout = b.task_timeout};
    mp_args *initargs = NULL;
    int err = 0;
    if (b.initref_len) {
        o.initializer = (mp_target_fn)resolve_fn(body + sizeof b, b.initref_len);
        if (o.initializer == NULL)
            return MP_ENOTFOUND;
        mp__reader r;
        mp__reader_init(&r, body + sizeof b + align8(b.initref_len), b.initargs_len);
        err = mp__args_decode(&r, NULL, 0, MP__WIRE_DATA, &initargs);
        o.initargs = initargs;
    }
    lpool *lp = calloc(1, sizeof *lp);
    int n = b.processes > 0 ? b.processes : mp_cpu_count();
    if (err == 0 && lp == NULL)
        err = MP_ENOMEM;
    if (err == 0 && (lp->runners = calloc((size_t)n * INFLIGHT_PER_PROCESS, sizeof(pthread_t))) == NULL)
        err = MP_ENOMEM;
    if (err == 0)
        err = mp_pool_new(&lp->p, &o);
    mp_args_free(initargs);
    if (err == 0) {
        lp->id = h->pool;
        for (int i = 0; i < n * INFLIGHT_PER_PROCESS; i++)
            if (pthread_create(&lp->runners[lp->nrunners], NULL, runner, lp) == 0)
                lp->nrunners++;
        lp->next = S.pools;
        S.pools = lp;
        return 0;
    }
    if (lp)
        free(lp->runners);
    free(lp);
    return err;
}

static void pool_free(lpool *lp, bool terminate)
{
    if (terminate)
        IGNORE_RESULT(mp_pool_terminate(lp->p)); /* its runners' waits end (MP_EBROKEN) */
    pthread_mutex_lock(&S.lk);
    lp->stop = true;
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.lk);
    for (int i = 0; i < lp->nrunners; i++)
        pthread_join(lp->runners[i], NULL);
    pthread_mutex_lock(&S.lk);
    while (lp->head) { /* never run: terminated */
        req *q = lp->head;
        lp->head = q->next;
        free(q->buf);
        free(q);
    }
    pthread_mutex_unlock(&S.lk);
    mp_pool_free(lp->p);
    free(lp->runners);
    free(lp);
}

/* Serve until rank 0 says stop. */
static _Noreturn void serve(void)
{
    outmsg *inflight = NULL;
    long nap = LINK_SLEEP_MIN_NS;
    int64_t last_busy = 0;
    bool stop = false;
    cond_init(&S.cv);
    cond_init(&S.main_cv);
    while (!stop || inflight != NULL) {
        bool busy = false;
        int flag = 0;
        MPI_Status st;
        if (!stop)
            MPI_Iprobe(0, TAG_REQ, MPI_COMM_WORLD, &flag, &st);
        if (flag) {
            busy = true;
            size_t len = 0;
            char *buf = recv_msg(&st, TAG_REQ, &len);
            msg_hdr h = {0};
            const char *body = NULL;
            size_t blen = 0;
            if (buf != NULL) {
                memcpy(&h, buf, sizeof h);
                body = buf + sizeof h;
                blen = len - sizeof h;
            }
            if (buf == NULL) {
                fprintf(stderr, "multiproc-mpi: rank %d: out of memory for a request\n", G.rank);
            } else if (h.type == M_POOL_NEW) {
                int code = pool_new(&h, body, blen);
                outmsg *m = reply_new(&h, &(reply_body){.code = code}, 0);
                pthread_mutex_lock(&S.lk);
                if (m)
                    reply_locked(m);
                pthread_mutex_unlock(&S.lk);
            } else if (h.type == M_MAP || h.type == M_APPLY) {
                req *q = calloc(1, sizeof *q);
                pthread_mutex_lock(&S.lk);
                lpool *lp = find_pool(h.pool);
                if (q != NULL && lp != NULL) {
                    q->buf = buf;
                    q->len = len;
                    buf = NULL;
                    if (lp->tail)
                        lp->tail->next = q;
                    else
                        lp->head = q;
                    lp->tail = q;
                    pthread_cond_broadcast(&S.cv);
                } else {
                    free(q);
                    outmsg *m = reply_new(&h, &(reply_body){.code = lp ? MP_ENOMEM : MP_EINVAL}, 0);
                    if (m)
                        reply_locked(m);
                }
                pthread_mutex_unlock(&S.lk);
            } else if (h.type == M_POOL_FREE) { /* req: whether terminated */
                pthread_mutex_lock(&S.lk);
                lpool **pp = &S.pools;
                while (*pp && (*pp)->id != h.pool)
                    pp = &(*pp)->next;
                lpool *lp = *pp;
                if (lp)
                    *pp = lp->next;
                pthread_mutex_unlock(&S.lk);
                if (lp)
                    pool_free(lp, h.req != 0);
            } else if (h.type == M_STOP) {
                /* pools rank 0 did not free: ended.  The answer goes after
                 * every reply before it; rank 0 takes them all (and drops
                 * those nobody waits for) until it has every rank's. */
                stop = true;
                while (S.pools) {
                    lpool *lp = S.pools;
                    S.pools = lp->next;
                    pool_free(lp, true);
                }
                outmsg *m = reply_new(&h, &(reply_body){0}, 0);
                pthread_mutex_lock(&S.lk);
                if (m)
                    reply_locked(m);
                pthread_mutex_unlock(&S.lk);
            }
            free(buf);
        }
        pthread_mutex_lock(&S.lk);
        outmsg *q = S.outq;
        S.outq = S.outq_tail = NULL;
        pthread_mutex_unlock(&S.lk);
        busy = busy || q != NULL;
        while (q) {
            outmsg *m = q;
            q = q->next;
            post(m);
            m->next = inflight;
            inflight = m;
        }
        sends_progress(&inflight);
        int64_t now = now_ns();
        if (busy) {
            nap = LINK_SLEEP_MIN_NS;
            last_busy = now;
            continue;
        }
        long cap = now - last_busy < LINK_ACTIVE_NS ? LINK_SLEEP_ACTIVE_NS : LINK_SLEEP_IDLE_NS;
        nap = nap * 2 > cap ? cap : nap * 2;
        pthread_mutex_lock(&S.lk);
        if (S.outq == NULL)
            sleep_on(&S.main_cv, &S.lk, nap);
        pthread_mutex_unlock(&S.lk);
    }
    if (G.we_init)
        MPI_Finalize();
    exit(0);
}

/* ---- init, finalize -------------------------------------------------------------- */

typedef struct hello {
    int32_t cpus;
    bid id;
} hello;

int mp_mpi_init(int *argc, char ***argv)
{
    if (G.inited)
        return MP_EALREADY;
    int have = 0, provided = 0;
    MPI_Initialized(&have);
    if (have) {
        MPI_Query_thread(&provided);
    } else {
        if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
            return MP_ENOSYS;
        G.we_init = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &G.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &G.size);
    if (provided < MPI_THREAD_SERIALIZED) {
        /* every rank sees the same level: all give up alike */
        if (G.we_init)
            MPI_Finalize();
        return MP_ENOSYS;
    }
    G.inited = true;
    const char *pv = getenv("MULTIPROC_MPI_PIECE");
    if (pv != NULL && atol(pv) >= 64 && (size_t)atol(pv) < PIECE)
        piece = (size_t)atol(pv);
    /* each rank's CPUs and build id, for rank 0 */
    hello me = {.cpus = mp_cpu_count()};
    dl_iterate_phdr(bid_cb, &me.id);
    hello *all = G.rank == 0 ? calloc((size_t)G.size, sizeof *all) : NULL;
    G.cpus = G.rank == 0 ? calloc((size_t)G.size, sizeof *G.cpus) : NULL;
    if (G.rank == 0 && (all == NULL || G.cpus == NULL)) {
        fprintf(stderr, "multiproc-mpi: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1); /* the other ranks wait in the gather */
    }
    MPI_Gather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (G.rank != 0) {
        tag_out = TAG_REP;
        serve();
    }
    tag_out = TAG_REQ;
    for (int r = 1; r < G.size; r++) {
        G.cpus[r] = all[r].cpus > 0 ? all[r].cpus : 1;
        if (all[r].id.len != me.id.len || memcmp(all[r].id.b, me.id.b, me.id.len) != 0) {
            mp__log(MP_LOG_ERROR, "mpi: rank %d runs another build of the program", r);
            G.bid_mismatch = true;
        }
    }
    free(all);
    cond_init(&L.cv);
    int err = -pthread_create(&L.thread, NULL, link_thread, NULL);
    if (err < 0) {
        MPI_Abort(MPI_COMM_WORLD, 1); /* the others would serve forever */
    }
    (void)mp_mpi_context();
    return 0;
}

int mp_mpi_finalize(void)
{
    if (!G.inited || G.finalized || G.rank != 0)
        return MP_EINVAL;
    G.finalized = true;
    /* each rank answers once it sent everything else: the link thread
     * takes all it sends before it quits */
    call **calls = calloc((size_t)G.size, sizeof *calls);
    for (int r = 1; r < G.size; r++) {
        outmsg *m = msg_new(r, M_STOP, 0, 0, 0);
        if (m == NULL || calls == NULL) {
            fprintf(stderr, "multiproc-mpi: out of memory stopping the ranks\n");
            MPI_Abort(MPI_COMM_WORLD, 1); /* they would serve forever */
        }
        calls[r] = call_start(m);
    }
    for (int r = 1; r < G.size; r++) {
        size_t len;
        if (calls[r])
            free(call_wait(calls[r], NULL, &len));
    }
    free(calls);
    pthread_mutex_lock(&L.lk);
    L.quit = true;
    pthread_cond_signal(&L.cv);
    pthread_mutex_unlock(&L.lk);
    pthread_join(L.thread, NULL);
    while (L.calls) { /* replies that never came (terminated pools) */
        call *c = L.calls;
        L.calls = c->next;
        if (c->orphan)
            call_free(c);
        /* else a pool never freed still waits on it: left as it is */
    }
    free(G.cpus);
    G.cpus = NULL;
    if (G.we_init)
        MPI_Finalize();
    return 0;
}
