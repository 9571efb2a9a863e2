/*
 * Managers: a server holding named shared objects, used by clients through
 * authenticated connections — on this machine or across the network.
 *
 * Wire: every request and reply is an mp_args message (the reduction
 * layer's form) over a Connection with Python's framing and handshake.
 *   request: int op, str kind, str name, then the op's arguments
 *   reply:   int status (0 or an MP_E* code), then the results
 * The server checks every argument's type and count before use, and the
 * op against the ops the object's kind exposes (the table `exposed`): a
 * malformed request gets MP_EBADMSG on that connection and nothing else.
 * A request above MAX_REQUEST is refused from its frame header, before
 * anything is allocated; that client gets MP_EBADMSG and is dropped (our
 * own clients refuse to send one: MP_EMSGSIZE, the connection kept).
 *
 * The accepting thread never talks to a peer: it takes the raw connection
 * and starts its thread, which runs the handshake first, with a deadline
 * (MP__HANDSHAKE_TIMEOUT), so a peer that connects and says nothing holds
 * only its own thread.  At most MAX_PENDING connections are in their
 * handshake at once; beyond that a new one is closed at once.
 *
 * The server runs a thread per connection, so a request that blocks (a lock
 * acquire, a queue get) blocks only its own client.  Ownership of a manager
 * lock is per connection, and a proxy opens one connection per thread that
 * uses it: so a lock proxy is owned by a thread, as a local lock is, and a
 * client that dies (its connections close) releases what it held, the next
 * acquirer getting MP_EOWNERDEAD.
 */
#include "internal.h"

#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    OP_OPEN = 1, OP_SHUTDOWN,
    OP_DICT_SET = 10, OP_DICT_GET, OP_DICT_DEL, OP_DICT_LEN, OP_DICT_ADD, OP_DICT_KEYS,
    OP_DICT_BATCH,
    OP_LIST_APPEND = 20, OP_LIST_GET, OP_LIST_SET, OP_LIST_POP, OP_LIST_LEN,
    OP_Q_PUT = 30, OP_Q_GET, OP_Q_QSIZE, OP_Q_FULL,
    OP_LOCK_ACQ = 40, OP_LOCK_REL, OP_LOCK_LOCKED,
    OP_EV_SET = 50, OP_EV_CLEAR, OP_EV_ISSET, OP_EV_WAIT,
    OP_SEM_ACQ = 60, OP_SEM_REL, OP_SEM_VALUE,
    OP_VAL_LOAD = 70, OP_VAL_STORE,
    OP_CALL = 80,
};

#define MAX_REQUEST MP__MANAGER_MAX_REQUEST   /* bytes; see internal.h */
#define MAX_PENDING MP__MANAGER_MAX_PENDING   /* handshakes under way at once */

/* ---- registered custom types -------------------------------------------------- */

#define MAX_TYPES 64
static struct {
    char *typeid;
    mp_method_fn fn;
} types[MAX_TYPES];
static size_t ntypes;
static pthread_mutex_t types_lock = PTHREAD_MUTEX_INITIALIZER;

int mp_manager_register(const char *typeid, mp_method_fn fn)
{
    if (typeid == NULL || fn == NULL || typeid[0] == '\0' || strlen(typeid) > 200)
        return MP_EINVAL;
    int err = 0;
    pthread_mutex_lock(&types_lock);
    size_t i = 0;
    while (i < ntypes && strcmp(types[i].typeid, typeid) != 0)
        i++;
    if (i == ntypes) {
        if (ntypes == MAX_TYPES)
            err = MP_ENOMEM;
        else if ((types[i].typeid = strdup(typeid)) == NULL)
            err = MP_ENOMEM;
        else
            ntypes++;
    }
    if (err == 0)
        types[i].fn = fn;
    pthread_mutex_unlock(&types_lock);
    return err;
}

static mp_method_fn type_fn(const char *typeid)
{
    mp_method_fn fn = NULL;
    pthread_mutex_lock(&types_lock);
    for (size_t i = 0; i < ntypes; i++)
        if (strcmp(types[i].typeid, typeid) == 0)
            fn = types[i].fn;
    pthread_mutex_unlock(&types_lock);
    return fn;
}

/* ---- server objects ----------------------------------------------------------- */

typedef struct kv {
    struct kv *next;
    mp_buf k, v;
} kv;

typedef struct sobj {
    struct sobj *next;
    struct sobj *hnext;        /* the server's table by kind and name */
    uint64_t hash;
    char *kind, *name;
    pthread_cond_t cond;       /* lock, event, semaphore waiters */
    /* dict */
    kv **buckets;
    size_t nbuckets, count;
    /* list */
    mp_buf *items;
    size_t nitems, capitems;
    /* queue */
    mp_queue *q;
    mp_buf *back;              /* taken for clients that died: served first */
    size_t nback, capback;
    /* lock */
    uint64_t owner;            /* connection id, 0 free */
    bool owner_died;
    /* event, semaphore */
    bool flag;
    int64_t value;
    /* value */
    int type;
    uint8_t bytes[8];
    /* custom */
    mp_method_fn fn;
    void *state;
} sobj;

typedef struct server server;
typedef struct sconn {
    struct sconn *next;
    server *srv;
    mp_conn *c;
    uint64_t id;
    bool pending;              /* still in its handshake */
} sconn;

struct server {
    pthread_mutex_t lock;
    sobj *objs;
    sobj **tab;                /* objs by kind and name */
    size_t ntab, nobjs;
    sconn *conns;
    uint64_t next_id;
    size_t nthreads;
    size_t npending;           /* conns still in their handshake */
    mp_listener *l;
    pthread_cond_t idle;
    bool shutdown;
    _Atomic bool stopping;     /* read without the lock by queue waits */
    int wakefd;
};

static uint64_t hash(const void *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const uint8_t *)p)[i]) * 1099511628211ULL;
    return h;
}

static kv **dict_slot(sobj *o, const void *k, size_t kl)
{
    kv **pp = &o->buckets[hash(k, kl) % o->nbuckets];
    while (*pp && ((*pp)->k.len != kl || (kl > 0 && memcmp((*pp)->k.data, k, kl) != 0)))
        pp = &(*pp)->next;
    return pp;
}

static int dict_grow(sobj *o)
{
    if (o->count < o->nbuckets)
        return 0;
    size_t n = o->nbuckets * 2;
    kv **b = calloc(n, sizeof *b);
    if (b == NULL)
        return MP_ENOMEM;
    for (size_t i = 0; i < o->nbuckets; i++)
        while (o->buckets[i]) {
            kv *e = o->buckets[i];
            o->buckets[i] = e->next;
            size_t h = hash(e->k.data, e->k.len) % n;
            e->next = b[h];
            b[h] = e;
        }
    free(o->buckets);
    o->buckets = b;
    o->nbuckets = n;
    return 0;
}

static void sobj_free(sobj *o)
{
    for (size_t i = 0; o->buckets && i < o->nbuckets; i++)
        while (o->buckets[i]) {
            kv *e = o->buckets[i];
            o->buckets[i] = e->next;
            mp_buf_free(&e->k);
            mp_buf_free(&e->v);
            free(e);
        }
    free(o->buckets);
    for (size_t i = 0; i < o->nitems; i++)
        mp_buf_free(&o->items[i]);
    free(o->items);
    for (size_t i = 0; i < o->nback; i++)
        mp_buf_free(&o->back[i]);
    free(o->back);
    mp_queue_free(o->q);
    if (o->fn && o->state) {
        mp_buf none = MP_BUF_INIT;
        o->fn(&o->state, "__del__", NULL, &none); /* its chance to free its state */
        mp_buf_free(&none);
    }
    pthread_cond_destroy(&o->cond);
    free(o->kind);
    free(o->name);
    free(o);
}

static const char *const kinds[] = {"dict", "list", "queue", "lock", "event", "semaphore", "value"};

/* Find or create (under srv->lock). */
static uint64_t obj_hash(const char *kind, const char *name)
{
    return hash(kind, strlen(kind)) * 31 ^ hash(name, strlen(name));
}

/* Enter @o in the table, doubling it past one object a slot. */
static int table_add(server *srv, sobj *o)
{
    if (srv->nobjs + 1 > srv->ntab) {
        size_t n = srv->ntab ? srv->ntab * 2 : 64;
        sobj **t = calloc(n, sizeof *t);
        if (t == NULL)
            return MP_ENOMEM;
        for (sobj *x = srv->objs; x; x = x->next) {
            x->hnext = t[x->hash % n];
            t[x->hash % n] = x;
        }
        free(srv->tab);
        srv->tab = t;
        srv->ntab = n;
    }
    o->hnext = srv->tab[o->hash % srv->ntab];
    srv->tab[o->hash % srv->ntab] = o;
    srv->nobjs++;
    return 0;
}

static int sobj_open(server *srv, const char *kind, const char *name, int64_t param, sobj **out)
{
    uint64_t h = obj_hash(kind, name);
    for (sobj *o = srv->ntab ? srv->tab[h % srv->ntab] : NULL; o; o = o->hnext)
        if (o->hash == h && strcmp(o->kind, kind) == 0 && strcmp(o->name, name) == 0) {
            *out = o;
            return 0;
        }
    mp_method_fn fn = NULL;
    bool known = false;
    for (size_t i = 0; i < MP__ARRAY_LEN(kinds); i++)
        known = known || strcmp(kinds[i], kind) == 0;
    if (!known && (fn = type_fn(kind)) == NULL)
        return MP_ENOENT;
    sobj *o = calloc(1, sizeof *o);
    if (o == NULL)
        return MP_ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&o->cond, &ca);
    pthread_condattr_destroy(&ca);
    o->kind = strdup(kind);
    o->name = strdup(name);
    o->fn = fn;
    int err = o->kind && o->name ? 0 : MP_ENOMEM;
    if (err == 0 && strcmp(kind, "dict") == 0) {
        o->nbuckets = 16;
        if ((o->buckets = calloc(o->nbuckets, sizeof *o->buckets)) == NULL)
            err = MP_ENOMEM;
    } else if (err == 0 && strcmp(kind, "queue") == 0) {
        err = param < 0 ? MP_EINVAL : mp_queue_new(&o->q, (size_t)param);
    } else if (err == 0 && strcmp(kind, "semaphore") == 0) {
        o->value = param < 0 || param > INT32_MAX ? 0 : param;
    } else if (err == 0 && strcmp(kind, "value") == 0) {
        o->type = (int)param;
        if (mp_type_size((mp_type)param) == 0)
            err = MP_EINVAL;
    }
    o->hash = h;
    if (err == 0)
        err = table_add(srv, o);
    if (err < 0) {
        sobj_free(o);
        return err;
    }
    o->next = srv->objs;
    srv->objs = o;
    *out = o;
    return 0;
}

/* ---- requests ----------------------------------------------------------------- */

/* Argument checks: a request is only trusted after these. */
static bool has(const mp_args *a, size_t i, mp_arg_type t)
{
    return mp_args_count(a) > i && mp_args_type(a, i) == t;
}

static const void *arg_bytes(const mp_args *a, size_t i, size_t *n)
{
    if (!has(a, i, MP_ARG_BYTES))
        return NULL;
    return mp_args_bytes(a, i, n);
}

static int reply_bytes(mp_args *r, const void *p, size_t n)
{
    return mp_args_add_bytes(r, p, n);
}

/* Wait on @o->cond (srv->lock held) until @d; MP_ETIMEDOUT. */
/* A client that hung up (or a server going down): its waits end. */
static bool client_gone(server *srv, sconn *sc)
{
    struct pollfd pf = {.fd = mp_conn_fileno(sc->c), .events = POLLRDHUP};
    return atomic_load(&srv->stopping) || (poll(&pf, 1, 0) == 1 && pf.revents);
}

/* The longest a server thread waits before it looks at its client again. */
#define WAIT_SLICE_MS 200

/* Wait on @o's condition (srv->lock held) until it is signalled, @d passes
 * or the client hangs up: a dead client's wait ends within a slice, and
 * takes nothing in its place. */
static int cond_wait_until(server *srv, sconn *sc, sobj *o, const mp__deadline *d)
{
    if (srv->shutdown || client_gone(srv, sc))
        return MP_ECLOSED;
    if (mp__deadline_expired(d))
        return MP_ETIMEDOUT;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until); /* the condition's clock */
    until.tv_nsec += WAIT_SLICE_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    const struct timespec *ts = d->forever ? NULL : mp__deadline_ts(d);
    if (ts && (ts->tv_sec < until.tv_sec ||
               (ts->tv_sec == until.tv_sec && ts->tv_nsec < until.tv_nsec)))
        until = *ts;
    pthread_cond_timedwait(&o->cond, &srv->lock, &until);
    return 0;
}

/* A waiter woken to take @o: 0, or MP_ECLOSED when its client has hung up
 * meanwhile, which takes nothing and passes the wake-up on to a live one
 * (else the lock or the unit would sit with the dead client until its
 * receipt failed to come, seen by others as taken). */
static int gone_after_wait(server *srv, sconn *sc, sobj *o)
{
    if (!client_gone(srv, sc))
        return 0;
    pthread_cond_signal(&o->cond);
    return MP_ECLOSED;
}

static double arg_timeout(const mp_args *a, size_t i)
{
    return has(a, i, MP_ARG_DOUBLE) ? mp_args_double(a, i) : MP_FOREVER;
}

/*
 * Messages a dead client's get had taken go back to the head of their
 * queue, here: each get takes from these first (a getter already waiting
 * sees them within its next slice).
 */
static int back_push(sobj *o, const void *p, size_t n)
{
    if (o->nback == o->capback) {
        size_t cap = o->capback ? 2 * o->capback : 4;
        mp_buf *b = realloc(o->back, cap * sizeof *b);
        if (b == NULL)
            return MP_ENOMEM;
        o->back = b;
        o->capback = cap;
    }
    mp_buf m = MP_BUF_INIT;
    int err = mp_buf_append(&m, p, n);
    if (err < 0)
        return err;
    memmove(&o->back[1], &o->back[0], o->nback * sizeof *o->back);
    o->back[0] = m;
    o->nback++;
    return 0;
}

/* Take the first returned message into @got, as get_bounded (@cap < 0:
 * any length). */
static int back_take(sobj *o, int64_t cap, mp_buf *got, size_t *len)
{
    *len = o->back[0].len;
    if (cap >= 0 && *len > (uint64_t)cap)
        return MP_EMSGSIZE; /* it stays */
    mp_buf_free(got);
    *got = o->back[0];
    memmove(&o->back[0], &o->back[1], --o->nback * sizeof *o->back);
    return 0;
}

/* A get into at most @cap bytes, as mp_queue_get_into: a longer message
 * stays queued (MP_EMSGSIZE, its length in *len). */
static int get_bounded(mp_queue *q, mp_buf *got, size_t cap, double timeout, size_t *len)
{
    for (;;) {
        int err = mp_buf_reserve(got, got->cap ? got->cap : 256);
        if (err == 0) /* never more than @cap: a longer one must stay */
            err = mp_queue_get_into(q, got->data, got->cap < cap ? got->cap : cap, len, timeout);
        if (err == 0)
            got->len = *len;
        if (err != MP_EMSGSIZE || *len > cap)
            return err;
        if ((err = mp_buf_reserve(got, *len)) < 0) /* fits: again, with room */
            return err;
    }
}

/* One dict operation (srv->lock held).  SET stores @v; ADD adds *num and
 * leaves the new value there; GET points *got at the stored value. */
static int dict_apply(sobj *o, int op, const void *k, size_t kl, const void *v, size_t vl,
                      int64_t *num, const mp_buf **got)
{
    kv **pp = dict_slot(o, k, kl);
    if (op == OP_DICT_GET) {
        if (*pp == NULL)
            return MP_ENOENT;
        *got = &(*pp)->v;
        return 0;
    }
    if (op == OP_DICT_DEL) {
        if (*pp == NULL)
            return MP_ENOENT;
        kv *e = *pp;
        *pp = e->next;
        mp_buf_free(&e->k);
        mp_buf_free(&e->v);
        free(e);
        o->count--;
        return 0;
    }
    int64_t add = 0;
    if (op == OP_DICT_ADD) {
        uint64_t sum = (uint64_t)*num; /* wraps, never undefined */
        if (*pp && (*pp)->v.len == sizeof(int64_t)) {
            int64_t old;
            memcpy(&old, (*pp)->v.data, sizeof old);
            sum += (uint64_t)old;
        }
        add = (int64_t)sum;
        v = &add;
        vl = sizeof add;
    }
    if (*pp == NULL) {
        kv *e = calloc(1, sizeof *e);
        if (e == NULL || mp_buf_append(&e->k, k, kl) < 0) {
            free(e);
            return MP_ENOMEM;
        }
        *pp = e;
        o->count++;
    }
    (*pp)->v.len = 0;
    int err = mp_buf_append(&(*pp)->v, v, vl);
    if (err == 0 && op == OP_DICT_ADD)
        *num = add;
    return err < 0 ? err : dict_grow(o);
}

/*
 * A batch of dict operations, the wire form of mp_dict_batch (little-endian):
 *   request: per op  u8 op (mp_dict_opcode), blob key, then SET: blob value, ADD: u64 delta
 *   reply:   per op  u32 status (an int), then if 0: GET: blob value,
 *                    ADD: u64 new value
 * The whole request is checked before any of it runs, so a malformed batch
 * changes nothing; the operations then run in order under the server lock.
 */
static int dict_batch(sobj *o, const void *p, size_t n, mp_buf *out)
{
    for (int pass = 0; pass < 2; pass++) {
        mp__reader rd;
        mp__reader_init(&rd, p, n);
        while (rd.err == 0 && rd.off < rd.len) {
            static const int ops[] = {[MP_DICT_SET] = OP_DICT_SET, [MP_DICT_GET] = OP_DICT_GET,
                                      [MP_DICT_DEL] = OP_DICT_DEL, [MP_DICT_ADD] = OP_DICT_ADD};
            uint8_t wire = mp__get_u8(&rd);
            int op = wire < sizeof ops / sizeof ops[0] ? ops[wire] : 0;
            size_t kl, vl = 0;
            const void *k = mp__get_blob(&rd, &kl), *v = NULL;
            int64_t num = 0;
            if (op == OP_DICT_SET)
                v = mp__get_blob(&rd, &vl);
            else if (op == OP_DICT_ADD)
                num = (int64_t)mp__get_u64(&rd);
            else if (op != OP_DICT_GET && op != OP_DICT_DEL)
                return MP_EBADMSG;
            if (rd.err || k == NULL || (op == OP_DICT_SET && v == NULL))
                return MP_EBADMSG;
            if (pass == 0)
                continue;
            const mp_buf *got = NULL;
            int st = dict_apply(o, op, k, kl, v, vl, &num, &got);
            int err = mp__put_u32(out, (uint32_t)st);
            if (err == 0 && st == 0 && op == OP_DICT_GET)
                err = mp__put_blob(out, got->data, got->len);
            if (err == 0 && st == 0 && op == OP_DICT_ADD)
                err = mp__put_u64(out, (uint64_t)num);
            if (err < 0)
                return err;
        }
        if (rd.err)
            return MP_EBADMSG;
    }
    return 0;
}

/*
 * The operations each kind exposes (Python: BaseProxy._exposed_ and the
 * typeid's exposed list).  handle() checks a request against it before
 * dispatching; an operation the object's kind does not expose is refused
 * with MP_EBADMSG (a malformed request: no client of ours sends one) and
 * the object is left alone.  A registered custom type exposes OP_CALL
 * only, and its methods are its own to check.
 */
static const struct {
    const char *kind;
    int ops[8]; /* ends at the first 0 */
} exposed[] = {
    {"dict", {OP_DICT_SET, OP_DICT_GET, OP_DICT_DEL, OP_DICT_LEN, OP_DICT_ADD, OP_DICT_KEYS,
              OP_DICT_BATCH}},
    {"list", {OP_LIST_APPEND, OP_LIST_GET, OP_LIST_SET, OP_LIST_POP, OP_LIST_LEN}},
    {"queue", {OP_Q_PUT, OP_Q_GET, OP_Q_QSIZE, OP_Q_FULL}},
    {"lock", {OP_LOCK_ACQ, OP_LOCK_REL, OP_LOCK_LOCKED}},
    {"event", {OP_EV_SET, OP_EV_CLEAR, OP_EV_ISSET, OP_EV_WAIT}},
    {"semaphore", {OP_SEM_ACQ, OP_SEM_REL, OP_SEM_VALUE}},
    {"value", {OP_VAL_LOAD, OP_VAL_STORE}},
};

static bool exposes(const sobj *o, int op)
{
    if (o->fn != NULL)
        return op == OP_CALL;
    for (size_t i = 0; i < MP__ARRAY_LEN(exposed); i++) {
        if (strcmp(exposed[i].kind, o->kind) != 0)
            continue;
        for (size_t j = 0; j < MP__ARRAY_LEN(exposed[i].ops) && exposed[i].ops[j] != 0; j++)
            if (exposed[i].ops[j] == op)
                return true;
        return false;
    }
    return false;
}

/* Handle one request (srv->lock held, released around blocking queue ops).
 * Fills @r after its status.  The kind's state is there: exposes() said so. */
static int handle(server *srv, sconn *sc, sobj *o, int op, const mp_args *a, mp_args *r)
{
    size_t kl = 0, vl = 0;
    const void *k = NULL, *v = NULL;
    mp__deadline d;
    int err = 0;
    if (!exposes(o, op))
        return MP_EBADMSG;
    switch (op) {
    case OP_DICT_SET:
    case OP_DICT_GET:
    case OP_DICT_DEL:
    case OP_DICT_ADD: {
        if ((k = arg_bytes(a, 3, &kl)) == NULL)
            return MP_EBADMSG;
        int64_t num = 0;
        if (op == OP_DICT_SET && (v = arg_bytes(a, 4, &vl)) == NULL)
            return MP_EBADMSG;
        if (op == OP_DICT_ADD) {
            if (!has(a, 4, MP_ARG_INT))
                return MP_EBADMSG;
            num = mp_args_int(a, 4);
        }
        const mp_buf *got = NULL;
        err = dict_apply(o, op, k, kl, v, vl, &num, &got);
        if (err == 0 && op == OP_DICT_GET)
            err = reply_bytes(r, got->data, got->len);
        if (err == 0 && op == OP_DICT_ADD)
            err = mp_args_add_int(r, num);
        return err;
    }
    case OP_DICT_BATCH: {
        if ((v = arg_bytes(a, 3, &vl)) == NULL)
            return MP_EBADMSG;
        mp_buf out = MP_BUF_INIT;
        err = dict_batch(o, v, vl, &out);
        if (err == 0)
            err = reply_bytes(r, out.data, out.len);
        mp_buf_free(&out);
        return err;
    }
    case OP_DICT_LEN:
        return mp_args_add_int(r, (int64_t)o->count);
    case OP_DICT_KEYS: {
        mp_buf all = MP_BUF_INIT;
        for (size_t i = 0; i < o->nbuckets && err == 0; i++)
            for (kv *e = o->buckets[i]; e && err == 0; e = e->next) {
                uint32_t n = (uint32_t)e->k.len;
                err = mp_buf_append(&all, &n, sizeof n);
                if (err == 0)
                    err = mp_buf_append(&all, e->k.data, e->k.len);
            }
        if (err == 0)
            err = reply_bytes(r, all.data, all.len);
        mp_buf_free(&all);
        return err;
    }
    case OP_LIST_APPEND:
        if ((v = arg_bytes(a, 3, &vl)) == NULL)
            return MP_EBADMSG;
        if (o->nitems == o->capitems) {
            size_t cap = o->capitems ? o->capitems * 2 : 8;
            mp_buf *n = realloc(o->items, cap * sizeof *n);
            if (n == NULL)
                return MP_ENOMEM;
            o->items = n;
            o->capitems = cap;
        }
        o->items[o->nitems] = (mp_buf)MP_BUF_INIT;
        err = mp_buf_append(&o->items[o->nitems], v, vl);
        if (err == 0)
            o->nitems++;
        return err;
    case OP_LIST_GET:
    case OP_LIST_SET:
    case OP_LIST_POP: {
        if (!has(a, 3, MP_ARG_INT))
            return MP_EBADMSG;
        int64_t i = mp_args_int(a, 3);
        if (i < 0)
            i += (int64_t)o->nitems;
        if (i < 0 || (uint64_t)i >= o->nitems)
            return MP_EINVAL;
        if (op == OP_LIST_GET)
            return reply_bytes(r, o->items[i].data, o->items[i].len);
        if (op == OP_LIST_SET) {
            if ((v = arg_bytes(a, 4, &vl)) == NULL)
                return MP_EBADMSG;
            o->items[i].len = 0;
            return mp_buf_append(&o->items[i], v, vl);
        }
        err = reply_bytes(r, o->items[i].data, o->items[i].len);
        if (err == 0) {
            mp_buf_free(&o->items[i]);
            memmove(&o->items[i], &o->items[i + 1], (o->nitems - (size_t)i - 1) * sizeof(mp_buf));
            o->nitems--;
        }
        return err;
    }
    case OP_LIST_LEN:
        return mp_args_add_int(r, (int64_t)o->nitems);
    case OP_Q_PUT:
    case OP_Q_GET: {
        if (op == OP_Q_PUT && (v = arg_bytes(a, 3, &vl)) == NULL)
            return MP_EBADMSG;
        mp__deadline_init(&d, arg_timeout(a, op == OP_Q_PUT ? 4 : 3));
        /* a get's optional bound (mp_queue_get_into's @cap) */
        int64_t cap = op == OP_Q_GET && has(a, 4, MP_ARG_INT) ? mp_args_int(a, 4) : -1;
        size_t len = 0;
        mp_queue *q = o->q;
        mp_buf got = MP_BUF_INIT;
        /* Wait in slices, the queue blocking on its own (srv->lock
         * released): a server shutting down, or a client that hung up (it
         * must not take a message it can no longer receive), ends it. */
        for (;;) {
            if (op == OP_Q_GET && o->nback > 0) {
                err = back_take(o, cap, &got, &len);
                break;
            }
            int ms = mp__deadline_poll_ms(&d);
            double slice = ms < 0 || ms > WAIT_SLICE_MS ? WAIT_SLICE_MS / 1000.0 : ms / 1000.0;
            pthread_mutex_unlock(&srv->lock);
            err = op == OP_Q_PUT ? mp_queue_put(q, v, vl, slice)
                  : cap >= 0     ? get_bounded(q, &got, (size_t)cap, slice, &len)
                                 : mp_queue_get(q, &got, slice);
            pthread_mutex_lock(&srv->lock);
            if ((err != MP_EFULL && err != MP_EEMPTY) || mp__deadline_expired(&d))
                break;
            if (client_gone(srv, sc)) {
                err = MP_ECLOSED;
                break;
            }
        }
        if (err == 0 && op == OP_Q_GET)
            err = reply_bytes(r, got.data, got.len);
        else if (err == MP_EMSGSIZE && cap >= 0 && mp_args_add_int(r, (int64_t)len) < 0)
            err = MP_ENOMEM;
        mp_buf_free(&got);
        return err;
    }
    case OP_Q_QSIZE:
    case OP_Q_FULL: {
        size_t n = 0;
        err = mp_queue_qsize(o->q, &n);
        if (err == 0)
            err = mp_args_add_int(r, op == OP_Q_QSIZE ? (int64_t)(n + o->nback)
                                                      : mp_queue_full(o->q));
        return err;
    }
    case OP_LOCK_ACQ:
        mp__deadline_init(&d, arg_timeout(a, 3));
        if (o->owner == sc->id) { /* not recursive: as a local Lock */
            if (d.forever)
                return -EDEADLK; /* a wait that would never end */
            pthread_mutex_unlock(&srv->lock); /* wait the timeout out */
            const struct timespec *ts = mp__deadline_ts(&d);
            while (ts && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ts, NULL) == EINTR)
                ;
            pthread_mutex_lock(&srv->lock);
            return MP_ETIMEDOUT;
        }
        for (bool waited = false; err == 0; waited = true) {
            if (o->owner == 0) {
                err = waited ? gone_after_wait(srv, sc, o) : 0;
                break;
            }
            err = cond_wait_until(srv, sc, o, &d);
        }
        if (err < 0)
            return err;
        o->owner = sc->id;
        if (o->owner_died) {
            o->owner_died = false;
            return MP_EOWNERDEAD;
        }
        return 0;
    /* A lock whose owner died is still held, by the dead owner, until the
     * next acquirer takes it (MP_EOWNERDEAD), as a local Lock (a robust
     * mutex) is: locked, and not this client's to release. */
    case OP_LOCK_REL:
        if (o->owner == 0 && !o->owner_died)
            return MP_EINVAL;
        if (o->owner != sc->id)
            return MP_EPERM;
        o->owner = 0;
        pthread_cond_signal(&o->cond);
        return 0;
    case OP_LOCK_LOCKED:
        return mp_args_add_int(r, o->owner != 0 || o->owner_died);
    case OP_EV_SET:
    case OP_EV_CLEAR:
        o->flag = op == OP_EV_SET;
        pthread_cond_broadcast(&o->cond);
        return 0;
    case OP_EV_ISSET:
        return mp_args_add_int(r, o->flag);
    case OP_EV_WAIT:
        mp__deadline_init(&d, arg_timeout(a, 3));
        while (!o->flag && err == 0)
            err = cond_wait_until(srv, sc, o, &d);
        return o->flag ? 0 : err;
    case OP_SEM_ACQ:
        mp__deadline_init(&d, arg_timeout(a, 3));
        for (bool waited = false; err == 0; waited = true) {
            if (o->value > 0) {
                err = waited ? gone_after_wait(srv, sc, o) : 0;
                break;
            }
            err = cond_wait_until(srv, sc, o, &d);
        }
        if (err < 0)
            return err;
        o->value--;
        return 0;
    case OP_SEM_REL:
        if (o->value >= INT32_MAX)
            return MP_EINVAL;
        o->value++;
        pthread_cond_signal(&o->cond);
        return 0;
    case OP_SEM_VALUE:
        return mp_args_add_int(r, o->value);
    case OP_VAL_LOAD:
        return reply_bytes(r, o->bytes, mp_type_size((mp_type)o->type));
    case OP_VAL_STORE:
        if ((v = arg_bytes(a, 3, &vl)) == NULL || vl != mp_type_size((mp_type)o->type))
            return MP_EBADMSG;
        memcpy(o->bytes, v, vl);
        return 0;
    case OP_CALL: {
        if (o->fn == NULL || !has(a, 3, MP_ARG_STR) || (v = arg_bytes(a, 4, &vl)) == NULL)
            return MP_EBADMSG;
        mp__reader rd;
        mp__reader_init(&rd, v, vl);
        mp_args *in = NULL;
        err = mp__args_decode(&rd, NULL, 0, MP__WIRE_DATA, &in);
        if (err < 0)
            return MP_EBADMSG;
        mp_buf out = MP_BUF_INIT;
        err = o->fn(&o->state, mp_args_str(a, 3), in, &out);
        mp_args_free(in);
        if (err == 0)
            err = reply_bytes(r, out.data, out.len);
        else if (err > 0)
            err = -err; /* a method's own code, kept negative on the wire */
        mp_buf_free(&out);
        return err;
    }
    }
    return MP_EBADMSG;
}

static void release_owned(server *srv, uint64_t id) /* under srv->lock */
{
    for (sobj *o = srv->objs; o; o = o->next)
        if (o->owner == id) {
            o->owner = 0;
            o->owner_died = true;
            pthread_cond_signal(&o->cond);
        }
}

/*
 * What a blocking request hands over — a message taken, a lock or a
 * semaphore acquired — is the client's only once it has said it got the
 * reply (an empty frame, sent by rpc()).  A client that died waiting
 * never does: what was taken for it goes back (a message to the head of
 * its queue, a lock released as it was, a semaphore's unit returned).
 */
static bool hands_over(int op, int status)
{
    return (op == OP_Q_GET && status == 0) || (op == OP_SEM_ACQ && status == 0) ||
           (op == OP_LOCK_ACQ && (status == 0 || status == MP_EOWNERDEAD));
}

static void take_back(server *srv, sconn *sc, sobj *o, int op, int status, const mp_args *r)
{
    pthread_mutex_lock(&srv->lock);
    if (op == OP_Q_GET) {
        size_t n = 0;
        const void *p = arg_bytes(r, 1, &n);
        if (p == NULL || back_push(o, p, n) < 0)
            mp__log(MP_LOG_ERROR, "manager: a message taken for a client that died is lost");
    } else if (op == OP_SEM_ACQ) {
        o->value++;
        pthread_cond_signal(&o->cond);
    } else if (op == OP_LOCK_ACQ && o->owner == sc->id) {
        o->owner = 0;
        o->owner_died = status == MP_EOWNERDEAD; /* still for the next one to hear */
        pthread_cond_signal(&o->cond);
    }
    pthread_mutex_unlock(&srv->lock);
}

/* The client's receipt of a reply that handed something over: 0 taken,
 * 1 given back (it could not use it), or the connection's error. */
static int await_receipt(sconn *sc)
{
    mp_buf b = MP_BUF_INIT;
    int err = mp_conn_recv_bytes(sc->c, &b, 1);
    if (err == 0)
        err = b.len == 0 ? 0 : 1;
    mp_buf_free(&b);
    return err;
}

static void conn_done(sconn *sc);

static void *serve_conn(void *arg)
{
    sconn *sc = arg;
    server *srv = sc->srv;
    for (;;) {
        mp_args *a = NULL, *r = NULL;
        int err = mp__conn_recv(sc->c, &a, MP__WIRE_DATA);
        if (err == MP_EBADMSG || err == MP_EMSGSIZE) {
            /* a malformed or oversized message: say so once, then drop
             * this client (the stream is no longer at a message boundary) */
            if (mp_args_of(&r, "i", err) == 0)
                IGNORE_RESULT(mp_conn_send(sc->c, r));
            mp_args_free(r);
            break;
        }
        if (err < 0)
            break;
        int status = MP_EBADMSG, op = 0;
        bool stop = false;
        sobj *o = NULL;
        if (mp_args_of(&r, "i", 0) < 0) /* the status goes first, set below */
            break;
        if (has(a, 0, MP_ARG_INT) && has(a, 1, MP_ARG_STR) && has(a, 2, MP_ARG_STR)) {
            op = (int)mp_args_int(a, 0);
            pthread_mutex_lock(&srv->lock);
            if (op == OP_SHUTDOWN) {
                stop = true; /* once the reply is out */
                status = 0;
            } else {
                int64_t param = has(a, 3, MP_ARG_INT) ? mp_args_int(a, 3) : 0;
                status = sobj_open(srv, mp_args_str(a, 1), mp_args_str(a, 2),
                                   op == OP_OPEN ? param : 0, &o);
                if (status == 0 && op != OP_OPEN)
                    status = handle(srv, sc, o, op, a, r);
            }
            pthread_mutex_unlock(&srv->lock);
        }
        mp__args_set_int(r, 0, status);
        err = mp_conn_send(sc->c, r);
        if (o != NULL && hands_over(op, status) && (err < 0 || (err = await_receipt(sc)) != 0))
            take_back(srv, sc, o, op, status, r);
        if (err == 1)
            err = 0; /* given back by a live client, which goes on */
        mp_args_free(a);
        mp_args_free(r);
        if (stop) {
            pthread_mutex_lock(&srv->lock);
            srv->shutdown = true;
            pthread_mutex_unlock(&srv->lock);
            uint64_t one = 1;
            IGNORE_RESULT(write(srv->wakefd, &one, sizeof one));
        }
        if (err < 0)
            break;
    }
    conn_done(sc);
    return NULL;
}

/* A client's thread ends: what it held is released (under srv->lock). */
static void conn_done(sconn *sc)
{
    server *srv = sc->srv;
    pthread_mutex_lock(&srv->lock);
    if (sc->pending)
        srv->npending--;
    release_owned(srv, sc->id);
    for (sconn **pp = &srv->conns; *pp; pp = &(*pp)->next)
        if (*pp == sc) {
            *pp = sc->next;
            break;
        }
    srv->nthreads--;
    pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
    mp_conn_close(sc->c);
    free(sc);
}

/* A new connection's thread: the handshake first, within its own deadline,
 * so that a peer that stalls in it holds only this thread; then requests. */
static void *serve_client(void *arg)
{
    sconn *sc = arg;
    server *srv = sc->srv;
    mp__deadline d;
    mp__deadline_init(&d, MP__HANDSHAKE_TIMEOUT);
    int err = mp__listener_handshake(srv->l, sc->c, &d);
    mp__auth_thread_done(); /* the library uses no OpenSSL here after this */
    if (err < 0) {
        mp__log(MP_LOG_INFO, "manager: refused a client: %s", mp_strerror(err));
        conn_done(sc);
        return NULL;
    }
    IGNORE_RESULT(mp__conn_buffered(sc->c));
    mp__conn_set_limits(sc->c, MAX_REQUEST, 0);
    pthread_mutex_lock(&srv->lock);
    sc->pending = false;
    srv->npending--;
    pthread_mutex_unlock(&srv->lock);
    return serve_conn(sc);
}

/* A server child ends cleanly on SIGTERM (its socket file removed). */
static volatile int term_fd = -1;

static void on_term(int sig)
{
    (void)sig;
    uint64_t one = 1;
    int e = errno;
    if (term_fd >= 0)
        IGNORE_RESULT(write(term_fd, &one, sizeof one));
    errno = e;
}

/* Serve on @l until a client asks for shutdown; @ready (if >= 0) gets the
 * address, one line. */
static int serve_on(mp_listener *l, int ready)
{
    server srv = {.next_id = 1, .l = l};
    pthread_mutex_init(&srv.lock, NULL);
    pthread_cond_init(&srv.idle, NULL);
    srv.wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (srv.wakefd < 0)
        return -errno;
    if (ready >= 0) { /* our own server child: SIGTERM means shut down */
        term_fd = srv.wakefd;
        struct sigaction sa = {.sa_handler = on_term};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGINT, SIG_IGN); /* as Python's manager server */
    }
    if (ready >= 0) {
        const char *addr = mp_listener_address(l);
        IGNORE_RESULT(mp__sys_write_all(ready, addr, strlen(addr) + 1));
        mp__sys_close(ready);
    }
    /* The accepting thread never waits on one peer: it takes the raw
     * connection and hands it to a thread of its own, which runs the
     * handshake with a deadline (serve_client).  At most MAX_PENDING
     * connections may be in their handshake at once; more are closed at
     * once, so that idle peers cannot pile up threads without bound. */
    while (!srv.shutdown) {
        struct pollfd pf[2] = {{.fd = mp_listener_fileno(l), .events = POLLIN},
                               {.fd = srv.wakefd, .events = POLLIN}};
        if (poll(pf, 2, -1) < 0)
            continue;
        if (pf[1].revents)
            break;
        mp__deadline now;
        mp__deadline_init(&now, 0);
        mp_conn *c;
        int err = mp__listener_accept_raw(l, &c, &now);
        if (err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == MP_ENOMEM) {
            /* the connection stays queued: wait a little (or for shutdown)
             * rather than spin on a listener that stays readable */
            mp__log(MP_LOG_INFO, "manager: cannot accept: %s", mp_strerror(err));
            IGNORE_RESULT(poll(&pf[1], 1, 100));
            continue;
        }
        if (err < 0)
            continue; /* gone before we took it */
        sconn *sc = calloc(1, sizeof *sc);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_mutex_lock(&srv.lock);
        if (sc && srv.npending >= MAX_PENDING) {
            mp__log(MP_LOG_INFO, "manager: %zu handshakes under way; a new connection closed",
                    srv.npending);
            free(sc);
            sc = NULL;
        }
        if (sc) {
            sc->srv = &srv;
            sc->c = c;
            sc->id = srv.next_id++;
            sc->pending = true;
            sc->next = srv.conns;
            srv.conns = sc;
            srv.nthreads++;
            srv.npending++;
        }
        if (sc == NULL || pthread_create(&t, &attr, serve_client, sc) != 0) {
            if (sc) {
                srv.conns = sc->next;
                srv.nthreads--;
                srv.npending--;
                free(sc);
            }
            mp_conn_close(c);
        }
        pthread_mutex_unlock(&srv.lock);
        pthread_attr_destroy(&attr);
    }
    /* wake every client thread (blocked reads, waits) and wait for them */
    pthread_mutex_lock(&srv.lock);
    srv.shutdown = true;
    atomic_store(&srv.stopping, true); /* queue waits notice within a slice */
    for (sconn *sc = srv.conns; sc; sc = sc->next)
        shutdown(mp_conn_fileno(sc->c), SHUT_RDWR);
    for (sobj *o = srv.objs; o; o = o->next)
        pthread_cond_broadcast(&o->cond);
    while (srv.nthreads > 0)
        pthread_cond_wait(&srv.idle, &srv.lock);
    while (srv.objs) {
        sobj *o = srv.objs;
        srv.objs = o->next;
        sobj_free(o);
    }
    free(srv.tab);
    pthread_mutex_unlock(&srv.lock);
    term_fd = -1;
    mp__sys_close(srv.wakefd);
    pthread_cond_destroy(&srv.idle);
    pthread_mutex_destroy(&srv.lock);
    return 0;
}

/* For managers NULL means this process's authkey (as Python's). */
static const void *default_key(const void *key, size_t *keylen)
{
    if (key != NULL)
        return key;
    return mp_process_authkey(mp_current_process(), keylen);
}

int mp_manager_serve(const char *address, const void *authkey, size_t keylen)
{
    authkey = default_key(authkey, &keylen);
    mp_listener *l;
    int err = mp_listener_new(&l, address, authkey, keylen, 16);
    if (err < 0)
        return err;
    err = serve_on(l, -1);
    mp_listener_close(l);
    return err;
}

/* ---- the client side ------------------------------------------------------------- */

struct mp_manager {
    pthread_mutex_t lock;      /* one request at a time on conn */
    mp_conn *conn;             /* NULL until first needed */
    pid_t conn_pid;            /* the process conn belongs to */
    char *address;
    uint8_t *key;
    size_t keylen;
    mp_process *server;        /* started here */
    bool private_dir;          /* its socket is in a directory of its own */
    _Atomic int refs;          /* the handle and its dict/list handles */
};

/* Say whether what a reply handed over was taken (see hands_over): an
 * empty frame takes it, one byte gives it back (and the connection goes
 * on).  MP_ECLOSED when it cannot be said: the server takes it back. */
static int send_receipt(mp_conn *c, bool taken)
{
    return mp_conn_send_bytes(c, "n", taken ? 0 : 1) < 0 ? MP_ECLOSED : 0;
}

/* One request: @req (op kind name ...) → *reply (status first); the
 * status.  A reply that hands something over (hands_over) still awaits
 * the caller's send_receipt. */
static int rpc_unreceipted(mp_conn *c, const mp_args *req, mp_args **reply)
{
    *reply = NULL;
    int err = mp_conn_send(c, req);
    if (err == 0)
        err = mp__conn_recv(c, reply, MP__WIRE_DATA);
    if (err == MP_EOF || err == MP_ETRUNCATED || err == -ECONNRESET || err == -EPIPE)
        err = MP_ECLOSED; /* the server has gone */
    if (err < 0)
        return err;
    /* The status is 0 or an MP_E* code: anything else (a positive number,
     * one that an int cannot hold and whose truncation could read as 0)
     * is a malformed reply, not a result (found by fuzz_manager_client). */
    int64_t status = has(*reply, 0, MP_ARG_INT) ? mp_args_int(*reply, 0) : 1;
    if (status > 0 || status < INT_MIN) {
        mp_args_free(*reply);
        *reply = NULL;
        return MP_EBADMSG;
    }
    return (int)status;
}

/* One request, and the receipt for what its reply hands over: ours once
 * the server has it. */
static int rpc(mp_conn *c, const mp_args *req, mp_args **reply)
{
    int status = rpc_unreceipted(c, req, reply);
    if (status >= 0 || status == MP_EOWNERDEAD) {
        int op = (int)mp_args_int(req, 0);
        if (hands_over(op, status) && send_receipt(c, true) < 0) {
            mp_args_free(*reply);
            *reply = NULL;
            return MP_ECLOSED;
        }
    }
    return status;
}

static int manager_new(mp_manager **out, const char *address, const void *key, size_t keylen)
{
    mp_manager *m = calloc(1, sizeof *m);
    if (m == NULL)
        return MP_ENOMEM;
    pthread_mutex_init(&m->lock, NULL);
    m->address = strdup(address);
    m->key = malloc(keylen ? keylen : 1);
    if (m->address == NULL || m->key == NULL) {
        free(m->address);
        free(m->key);
        free(m);
        return MP_ENOMEM;
    }
    memcpy(m->key, key, keylen);
    m->keylen = keylen;
    m->refs = 1;
    *out = m;
    return 0;
}

/*
 * The connection for this process (under m->lock).  A handle is usable in
 * any process that has it — a forked child, one that got it in its
 * arguments — as Python's proxies are: a process other than the one whose
 * connection it holds (two processes on one connection would mix their
 * replies) connects afresh on its first request.  Closing the inherited
 * copy only drops this process's descriptor for it.
 */
/* A client's connection to a server, as every manager handle opens one. */
static int client_conn(const char *address, const void *key, size_t keylen, mp_conn **out)
{
    int err = mp__client(out, address, key, keylen, MP_ECLOSED);
    if (err == 0 && (err = mp__conn_buffered(*out)) < 0)
        mp_conn_close(*out);
    if (err == 0) /* a request the server would refuse is not sent */
        mp__conn_set_limits(*out, 0, MAX_REQUEST);
    return err;
}

static int manager_conn(mp_manager *m)
{
    mp__init(); /* mp__me.pid follows forks */
    if (m->conn != NULL && m->conn_pid == mp__me.pid)
        return 0;
    mp_conn_close(m->conn);
    m->conn = NULL;
    int err = client_conn(m->address, m->key, m->keylen, &m->conn);
    if (err < 0) {
        m->conn = NULL;
        return err;
    }
    m->conn_pid = mp__me.pid;
    return 0;
}

/* Whether this process started @m's server (and so stops it). */
static bool server_is_mine(const mp_manager *m)
{
    return m->server != NULL && m->server->creator == mp__me.pid;
}

static void manager_unref(mp_manager *m)
{
    if (atomic_fetch_sub(&m->refs, 1) != 1)
        return;
    mp_conn_close(m->conn);
    free(m->address);
    free(m->key);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

int mp_manager_connect(mp_manager **out, const char *address, const void *authkey, size_t keylen)
{
    if (out == NULL || address == NULL)
        return MP_EINVAL;
    *out = NULL;
    authkey = default_key(authkey, &keylen);
    mp_manager *m;
    int err = manager_new(&m, address, authkey, keylen);
    if (err < 0)
        return err;
    err = manager_conn(m); /* connected now: a wrong key or address fails here */
    if (err < 0) {
        manager_unref(m);
        return err;
    }
    *out = m;
    return 0;
}

/* The server child: listen, report the address, serve. */
static int manager_main(const mp_args *a)
{
    size_t keylen;
    const void *key = mp_args_bytes(a, 1, &keylen);
    const char *addr = mp_args_str(a, 0);
    for (size_t i = 3; i + 1 < mp_args_count(a); i += 2) {
        size_t n;
        const void *ref = mp_args_bytes(a, i + 1, &n);
        mp__reader r;
        mp__reader_init(&r, ref, n);
        char why[256];
        void *fn = NULL;
        if (mp__funcref_decode(&r, true, &fn, why, sizeof why) < 0)
            mp__log(MP_LOG_ERROR, "manager: type %s: %s", mp_args_str(a, i), why);
        else
            IGNORE_RESULT(mp_manager_register(mp_args_str(a, i), (mp_method_fn)fn));
    }
    mp_listener *l;
    int err = mp_listener_new(&l, addr[0] ? addr : NULL, key, keylen, 16);
    if (err < 0) {
        char msg[128];
        int n = snprintf(msg, sizeof msg, "!%d", err);
        IGNORE_RESULT(mp__sys_write_all(mp_args_fd(a, 2), msg, (size_t)n + 1));
        return 1;
    }
    /* fd 2 of the args is ours to close once the address is written */
    err = serve_on(l, mp__sys_dup(mp_args_fd(a, 2)));
    mp_listener_close(l);
    return err < 0 ? 1 : 0;
}

int mp_manager_start(mp_manager **out, mp_context *ctx, const char *address, const void *authkey,
                     size_t keylen)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    authkey = default_key(authkey, &keylen);
    if (keylen == 0)
        return MP_EINVAL;
    int rp[2];
    int err = mp__sys_pipe(rp);
    if (err < 0)
        return err;
    mp_args *a = NULL;
    mp_process *p = NULL;
    err = mp_args_new(&a);
    if (err == 0)
        err = mp_args_add_str(a, address ? address : "");
    if (err == 0)
        err = mp_args_add_bytes(a, authkey, keylen);
    if (err == 0)
        err = mp_args_add_fd(a, rp[1]);
    /* registered types travel with it: (typeid, function reference) pairs */
    pthread_mutex_lock(&types_lock);
    for (size_t i = 0; i < ntypes && err == 0; i++) {
        mp_buf ref = MP_BUF_INIT;
        err = mp__funcref_encode((const void *)types[i].fn, &ref);
        if (err == 0)
            err = mp_args_add_str(a, types[i].typeid);
        if (err == 0)
            err = mp_args_add_bytes(a, ref.data, ref.len);
        mp_buf_free(&ref);
    }
    pthread_mutex_unlock(&types_lock);
    if (err == 0)
        err = mp_process_new(&p, ctx, manager_main, a);
    mp_args_free(a);
    if (err == 0) {
        IGNORE_RESULT(mp_process_set_name(p, "SyncManager"));
        IGNORE_RESULT(mp_process_set_daemon(p, true));
        err = mp_process_start(p);
    }
    mp__sys_close(rp[1]);
    char addr[256];
    size_t n = 0;
    while (err == 0 && n < sizeof addr - 1) {
        ssize_t r = read(rp[0], addr + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            err = MP_EBROKEN; /* the server died before listening */
            break;
        }
        if (addr[n] == '\0')
            break;
        n++;
    }
    addr[n] = '\0';
    mp__sys_close(rp[0]);
    if (err == 0 && addr[0] == '!')
        err = (int)strtol(addr + 1, NULL, 10);
    mp_manager *m = NULL;
    if (err == 0)
        err = mp_manager_connect(&m, addr, authkey, keylen);
    if (err < 0) {
        if (p) {
            if (mp_process_pid(p) > 0) {
                IGNORE_RESULT(mp_process_kill(p));
                IGNORE_RESULT(mp_process_join(p, MP_FOREVER));
            }
            IGNORE_RESULT(mp_process_close(p));
        }
        return err;
    }
    m->server = p;
    m->private_dir = address == NULL || address[0] == '\0';
    *out = m;
    return 0;
}

const char *mp_manager_address(const mp_manager *m)
{
    return m ? m->address : NULL;
}

pid_t mp_manager_pid(const mp_manager *m)
{
    return m && m->server ? mp_process_pid(m->server) : 0;
}

/* After a started server ended: its socket and the private directory it
 * made for it, which a server killed by a signal could not remove (one that
 * ended cleanly did; then these find nothing). */
static void remove_private_dir(const char *address)
{
    if (strncmp(address, "unix:/", 6) != 0)
        return;
    char path[256];
    snprintf(path, sizeof path, "%s", address + 5);
    char *slash = strrchr(path, '/');
    if (slash == NULL || strncmp(slash, "/listener-", 10) != 0)
        return;
    unlink(path);
    *slash = '\0';
    rmdir(path);
}

int mp_manager_shutdown(mp_manager *m)
{
    if (m == NULL)
        return MP_EINVAL;
    mp_args *req, *rep = NULL;
    int err = mp_args_of(&req, "iss", OP_SHUTDOWN, "", "");
    if (err == 0) {
        pthread_mutex_lock(&m->lock);
        err = manager_conn(m);
        if (err == 0)
            err = rpc(m->conn, req, &rep);
        pthread_mutex_unlock(&m->lock);
    }
    mp_args_free(req);
    mp_args_free(rep);
    if (server_is_mine(m)) {
        /* as Python: wait a little, then terminate */
        if (mp_process_join(m->server, 5) == MP_ETIMEDOUT) {
            IGNORE_RESULT(mp_process_terminate(m->server));
            if (mp_process_join(m->server, 5) == MP_ETIMEDOUT) {
                IGNORE_RESULT(mp_process_kill(m->server));
                IGNORE_RESULT(mp_process_join(m->server, MP_FOREVER));
            }
        }
        IGNORE_RESULT(mp_process_close(m->server));
        m->server = NULL;
        if (m->private_dir)
            remove_private_dir(m->address);
    }
    return err;
}

void mp_manager_free(mp_manager *m)
{
    if (m == NULL)
        return;
    if (server_is_mine(m)) /* a copy in another process leaves it running */
        IGNORE_RESULT(mp_manager_shutdown(m));
    manager_unref(m);
}

/* A request on the manager's own connection. */
static int m_call(mp_manager *m, mp_args *req, mp_args **rep)
{
    *rep = NULL;
    pthread_mutex_lock(&m->lock);
    int err = manager_conn(m);
    if (err == 0)
        err = rpc(m->conn, req, rep);
    else if (err == MP_ECONNREFUSED || err == -ENOENT)
        err = MP_ECLOSED; /* the server has gone */
    pthread_mutex_unlock(&m->lock);
    mp_args_free(req);
    return err;
}

/* ---- dict and list ------------------------------------------------------------------ */

struct mp_dict {
    mp_manager *m;
    char *name;
};
struct mp_list {
    mp_manager *m;
    char *name;
};

static int named_open(mp_manager *m, const char *kind, const char *name, void **out)
{
    if (m == NULL || name == NULL || out == NULL)
        return MP_EINVAL;
    *out = NULL;
    mp_args *req, *rep = NULL;
    int err = mp_args_of(&req, "issl", OP_OPEN, kind, name, (int64_t)0);
    if (err < 0)
        return err;
    err = m_call(m, req, &rep);
    mp_args_free(rep);
    if (err < 0)
        return err;
    struct mp_dict *h = calloc(1, sizeof *h);
    if (h == NULL || (h->name = strdup(name)) == NULL) {
        free(h);
        return MP_ENOMEM;
    }
    atomic_fetch_add(&m->refs, 1);
    h->m = m;
    *out = h;
    return 0;
}

int mp_manager_dict(mp_manager *m, const char *name, mp_dict **out)
{
    return named_open(m, "dict", name, (void **)out);
}

int mp_manager_list(mp_manager *m, const char *name, mp_list **out)
{
    return named_open(m, "list", name, (void **)out);
}

static void named_free(struct mp_dict *h)
{
    if (h == NULL)
        return;
    manager_unref(h->m);
    free(h->name);
    free(h);
}

void mp_dict_free(mp_dict *d)
{
    named_free(d);
}

void mp_list_free(mp_list *l)
{
    named_free((struct mp_dict *)l);
}

/* Build "op kind name" + @fmt arguments, run it, copy the first result. */
static int named_rpc(mp_manager *m, const char *kind, const char *name, int op, mp_buf *bytes,
                     int64_t *num, mp_args *req)
{
    if (req == NULL)
        return MP_ENOMEM;
    mp_args *rep = NULL;
    int err = m_call(m, req, &rep);
    if (err == 0 && bytes && has(rep, 1, MP_ARG_BYTES)) {
        size_t n;
        const void *p = mp_args_bytes(rep, 1, &n);
        bytes->len = 0;
        err = mp_buf_append(bytes, p, n);
    } else if (err == 0 && num && has(rep, 1, MP_ARG_INT)) {
        *num = mp_args_int(rep, 1);
    } else if (err == 0 && (bytes || num)) {
        err = MP_EBADMSG;
    }
    mp_args_free(rep);
    (void)kind;
    (void)name;
    (void)op;
    return err;
}

static mp_args *request(int op, const char *kind, const char *name)
{
    mp_args *a;
    return mp_args_of(&a, "iss", op, kind, name) == 0 ? a : NULL;
}

static mp_args *with_bytes(mp_args *a, const void *p, size_t n)
{
    if (a && mp_args_add_bytes(a, p, n) < 0) {
        mp_args_free(a);
        return NULL;
    }
    return a;
}

static mp_args *with_int(mp_args *a, int64_t v)
{
    if (a && mp_args_add_int(a, v) < 0) {
        mp_args_free(a);
        return NULL;
    }
    return a;
}

static mp_args *with_double(mp_args *a, double v)
{
    if (a && mp_args_add_double(a, v) < 0) {
        mp_args_free(a);
        return NULL;
    }
    return a;
}

#define DICT_REQ(op) request(op, "dict", d->name)
#define LIST_REQ(op) request(op, "list", l->name)

int mp_dict_set(mp_dict *d, const void *k, size_t kl, const void *v, size_t vl)
{
    if (d == NULL || (k == NULL && kl) || (v == NULL && vl))
        return MP_EINVAL;
    return named_rpc(d->m, "dict", d->name, OP_DICT_SET, NULL, NULL,
                     with_bytes(with_bytes(DICT_REQ(OP_DICT_SET), k, kl), v, vl));
}

int mp_dict_get(mp_dict *d, const void *k, size_t kl, mp_buf *v)
{
    if (d == NULL || (k == NULL && kl) || v == NULL)
        return MP_EINVAL;
    return named_rpc(d->m, "dict", d->name, OP_DICT_GET, v, NULL,
                     with_bytes(DICT_REQ(OP_DICT_GET), k, kl));
}

int mp_dict_del(mp_dict *d, const void *k, size_t kl)
{
    if (d == NULL || (k == NULL && kl))
        return MP_EINVAL;
    return named_rpc(d->m, "dict", d->name, OP_DICT_DEL, NULL, NULL,
                     with_bytes(DICT_REQ(OP_DICT_DEL), k, kl));
}

int mp_dict_len(mp_dict *d, size_t *out)
{
    int64_t n = 0;
    if (d == NULL || out == NULL)
        return MP_EINVAL;
    int err = named_rpc(d->m, "dict", d->name, OP_DICT_LEN, NULL, &n, DICT_REQ(OP_DICT_LEN));
    *out = (size_t)n;
    return err;
}

int mp_dict_add(mp_dict *d, const void *k, size_t kl, int64_t delta, int64_t *out)
{
    int64_t n = 0;
    if (d == NULL || (k == NULL && kl))
        return MP_EINVAL;
    int err = named_rpc(d->m, "dict", d->name, OP_DICT_ADD, NULL, &n,
                        with_int(with_bytes(DICT_REQ(OP_DICT_ADD), k, kl), delta));
    if (out)
        *out = n;
    return err;
}

int mp_dict_keys(mp_dict *d, mp_buf *out)
{
    if (d == NULL || out == NULL)
        return MP_EINVAL;
    return named_rpc(d->m, "dict", d->name, OP_DICT_KEYS, out, NULL, DICT_REQ(OP_DICT_KEYS));
}

/* The request of mp_dict_batch (the wire form is above dict_batch). */
static int batch_encode(const mp_dict_op *ops, size_t n, mp_buf *req, bool *gets)
{
    size_t need = 0;
    for (size_t i = 0; i < n; i++)
        need += 17 + ops[i].keylen + (ops[i].op == MP_DICT_SET ? 8 + ops[i].valuelen : 8);
    int err = mp_buf_reserve(req, need);
    *gets = false;
    for (size_t i = 0; i < n && err == 0; i++) {
        const mp_dict_op *o = &ops[i];
        if (o->op < MP_DICT_SET || o->op > MP_DICT_ADD || (o->key == NULL && o->keylen) ||
            (o->op == MP_DICT_SET && o->value == NULL && o->valuelen))
            return MP_EINVAL;
        *gets |= o->op == MP_DICT_GET;
        err = mp__put_u8(req, (uint8_t)o->op);
        if (err == 0)
            err = mp__put_blob(req, o->key, o->keylen);
        if (err == 0 && o->op == MP_DICT_SET)
            err = mp__put_blob(req, o->value, o->valuelen);
        if (err == 0 && o->op == MP_DICT_ADD)
            err = mp__put_u64(req, (uint64_t)o->num);
    }
    return err;
}

static int batch_decode(mp_dict_op *ops, size_t n, const mp_buf *rep, mp_buf *out)
{
    mp__reader rd;
    mp__reader_init(&rd, rep->data, rep->len);
    int err = out ? mp_buf_reserve(out, rep->len) : 0;
    for (size_t i = 0; i < n && err == 0; i++) {
        mp_dict_op *o = &ops[i];
        o->status = (int)(int32_t)mp__get_u32(&rd);
        o->offset = o->len = 0;
        if (rd.err || o->status > 0)
            return MP_EBADMSG;
        if (o->status == 0 && o->op == MP_DICT_GET) {
            const void *v = mp__get_blob(&rd, &o->len);
            o->offset = out->len;
            err = v ? mp_buf_append(out, v, o->len) : MP_EBADMSG;
        } else if (o->status == 0 && o->op == MP_DICT_ADD) {
            o->num = (int64_t)mp__get_u64(&rd);
        }
    }
    if (err == 0 && (rd.err || rd.off != rd.len))
        err = MP_EBADMSG;
    return err;
}

int mp_dict_batch(mp_dict *d, mp_dict_op *ops, size_t n, mp_buf *out)
{
    if (d == NULL || (ops == NULL && n > 0))
        return MP_EINVAL;
    mp_buf req = MP_BUF_INIT, rep = MP_BUF_INIT;
    bool gets;
    int err = batch_encode(ops, n, &req, &gets);
    if (err == 0 && gets && out == NULL)
        err = MP_EINVAL;
    if (out)
        out->len = 0;
    if (err == 0 && n > 0)
        err = named_rpc(d->m, "dict", d->name, OP_DICT_BATCH, &rep, NULL,
                        with_bytes(DICT_REQ(OP_DICT_BATCH), req.data, req.len));
    if (err == 0)
        err = batch_decode(ops, n, &rep, out);
    mp_buf_free(&req);
    mp_buf_free(&rep);
    return err;
}

int mp_list_append(mp_list *l, const void *v, size_t vl)
{
    if (l == NULL || (v == NULL && vl))
        return MP_EINVAL;
    return named_rpc(l->m, "list", l->name, 0, NULL, NULL,
                     with_bytes(LIST_REQ(OP_LIST_APPEND), v, vl));
}

int mp_list_get(mp_list *l, int64_t index, mp_buf *v)
{
    if (l == NULL || v == NULL)
        return MP_EINVAL;
    return named_rpc(l->m, "list", l->name, 0, v, NULL, with_int(LIST_REQ(OP_LIST_GET), index));
}

int mp_list_set(mp_list *l, int64_t index, const void *v, size_t vl)
{
    if (l == NULL || (v == NULL && vl))
        return MP_EINVAL;
    return named_rpc(l->m, "list", l->name, 0, NULL, NULL,
                     with_bytes(with_int(LIST_REQ(OP_LIST_SET), index), v, vl));
}

int mp_list_pop(mp_list *l, int64_t index, mp_buf *v)
{
    mp_buf tmp = MP_BUF_INIT;
    if (l == NULL)
        return MP_EINVAL;
    int err = named_rpc(l->m, "list", l->name, 0, v ? v : &tmp, NULL,
                        with_int(LIST_REQ(OP_LIST_POP), index));
    mp_buf_free(&tmp);
    return err;
}

int mp_list_len(mp_list *l, size_t *out)
{
    int64_t n = 0;
    if (l == NULL || out == NULL)
        return MP_EINVAL;
    int err = named_rpc(l->m, "list", l->name, 0, NULL, &n, LIST_REQ(OP_LIST_LEN));
    *out = (size_t)n;
    return err;
}

int mp_manager_call(mp_manager *m, const char *typeid, const char *name, const char *method,
                    const mp_args *in, mp_buf *out)
{
    if (m == NULL || typeid == NULL || name == NULL || method == NULL)
        return MP_EINVAL;
    mp_buf enc = MP_BUF_INIT;
    mp__fdvec fds;
    fds.n = 0;
    mp_args *empty = NULL;
    int err = in ? 0 : mp_args_new(&empty);
    if (err == 0)
        err = mp__args_encode(in ? in : empty, &enc, &fds, MP__WIRE_DATA); /* data only */
    mp_args_free(empty);
    mp_args *req = NULL;
    if (err == 0 && (req = request(OP_CALL, typeid, name)) == NULL)
        err = MP_ENOMEM;
    if (err == 0 && mp_args_add_str(req, method) < 0)
        err = MP_ENOMEM;
    if (err == 0 && mp_args_add_bytes(req, enc.data, enc.len) < 0)
        err = MP_ENOMEM;
    mp_buf_free(&enc);
    if (err < 0) {
        mp_args_free(req);
        return err;
    }
    mp_buf tmp = MP_BUF_INIT;
    err = named_rpc(m, typeid, name, OP_CALL, out ? out : &tmp, NULL, req);
    mp_buf_free(&tmp);
    return err;
}

/* ---- proxies for local-object kinds ------------------------------------------------ */

/*
 * A proxy is the remote half of a lock, event, semaphore, queue or value
 * handle: those types carry a pointer to one, and each public call goes
 * here when it is set.  One connection per thread, opened on first use,
 * closed when the thread ends or the process forks (in the child).
 */
typedef struct pconn {
    struct pconn *next;
    pid_t tid;
    mp_conn *c;
} pconn;

struct mp__proxy {
    pthread_mutex_t lock;
    char *address, *kind, *name;
    uint8_t *key;
    size_t keylen;
    int64_t param;
    pconn *conns;
    struct mp__proxy *next_live; /* in live_proxies */
};

/*
 * A thread that ends closes the connections it opened for proxies, as a
 * local object forgets a thread that ends: the server sees the connection
 * close and releases what the thread held, so a Lock proxy it held goes to
 * the next acquirer with MP_EOWNERDEAD, as a local Lock does (a robust
 * mutex).  Without this the dead thread's connection stayed open for the
 * life of the proxy, holding the lock for ever.  So every proxy is listed
 * here, and a thread that opened a connection gets a key whose destructor
 * closes its connections of every live proxy.
 */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER; /* before any px->lock */
static mp__proxy *live_proxies;
static pthread_key_t thread_end_key;
static pthread_once_t thread_end_once = PTHREAD_ONCE_INIT;
static bool thread_end_ok;

static void thread_ends(void *unused)
{
    (void)unused;
    pid_t tid = mp__tid();
    pconn *gone = NULL;
    pthread_mutex_lock(&live_lock);
    for (mp__proxy *px = live_proxies; px; px = px->next_live) {
        pthread_mutex_lock(&px->lock);
        for (pconn **pp = &px->conns; *pp;) {
            pconn *c = *pp;
            if (c->tid != tid) {
                pp = &c->next;
                continue;
            }
            *pp = c->next;
            c->next = gone;
            gone = c;
        }
        pthread_mutex_unlock(&px->lock);
    }
    pthread_mutex_unlock(&live_lock);
    while (gone) { /* closed outside the locks */
        pconn *c = gone;
        gone = c->next;
        mp_conn_close(c->c);
        free(c);
    }
}

/*
 * Forks (process.c).  The child's threads are not the parent's: it drops
 * the copies it has of the parent's connections (its own threads connect
 * afresh, as Python's proxies do after a fork).  Kept, a copy would hold a
 * connection open after the parent's thread ended or the parent died, and
 * the server would never release what that one held.  The lists are
 * locked across the fork, so the child finds them whole.
 */
static void proxies_prepare(void)
{
    pthread_mutex_lock(&live_lock);
    for (mp__proxy *px = live_proxies; px; px = px->next_live)
        pthread_mutex_lock(&px->lock);
}

static void proxies_parent(void)
{
    for (mp__proxy *px = live_proxies; px; px = px->next_live)
        pthread_mutex_unlock(&px->lock);
    pthread_mutex_unlock(&live_lock);
}

MP__CHILD_TEXT static void proxies_child(void)
{
    live_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    for (mp__proxy *px = live_proxies; px; px = px->next_live) {
        px->lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
        while (px->conns) { /* closes this process's descriptor only */
            pconn *c = px->conns;
            px->conns = c->next;
            mp_conn_close(c->c);
            free(c);
        }
    }
}

static const mp__hooks proxies_hooks = {
    .slot = MP__HOOK_PROXIES,
    .prepare = proxies_prepare,
    .parent = proxies_parent,
    .child = proxies_child,
};

static void thread_end_init(void)
{
    thread_end_ok = pthread_key_create(&thread_end_key, thread_ends) == 0;
}

/* This thread's connections are closed when it ends (see thread_ends). */
static void close_at_thread_end(void)
{
    pthread_once(&thread_end_once, thread_end_init);
    if (thread_end_ok && pthread_getspecific(thread_end_key) == NULL)
        IGNORE_RESULT(pthread_setspecific(thread_end_key, &live_proxies));
}

static void proxy_free(mp__proxy *px)
{
    if (px == NULL)
        return;
    pthread_mutex_lock(&live_lock);
    for (mp__proxy **pp = &live_proxies; *pp; pp = &(*pp)->next_live)
        if (*pp == px) {
            *pp = px->next_live;
            break;
        }
    pthread_mutex_unlock(&live_lock);
    while (px->conns) {
        pconn *c = px->conns;
        px->conns = c->next;
        mp_conn_close(c->c);
        free(c);
    }
    free(px->address);
    free(px->kind);
    free(px->name);
    free(px->key);
    pthread_mutex_destroy(&px->lock);
    free(px);
}

static int proxy_make(const char *address, const void *key, size_t keylen, const char *kind,
                      const char *name, int64_t param, mp__proxy **out)
{
    mp__proxy *px = calloc(1, sizeof *px);
    if (px == NULL)
        return MP_ENOMEM;
    pthread_mutex_init(&px->lock, NULL);
    px->address = strdup(address);
    px->kind = strdup(kind);
    px->name = strdup(name);
    px->key = malloc(keylen ? keylen : 1);
    px->keylen = keylen;
    px->param = param;
    if (!px->address || !px->kind || !px->name || !px->key) {
        proxy_free(px);
        return MP_ENOMEM;
    }
    memcpy(px->key, key, keylen);
    mp__hooks_add(&proxies_hooks); /* before live_lock is first taken */
    pthread_mutex_lock(&live_lock);
    px->next_live = live_proxies;
    live_proxies = px;
    pthread_mutex_unlock(&live_lock);
    *out = px;
    return 0;
}

/* This thread's connection, opened (and the object opened) on first use. */
static int proxy_conn(mp__proxy *px, mp_conn **out)
{
    pid_t tid = mp__tid();
    pthread_mutex_lock(&px->lock);
    for (pconn *c = px->conns; c; c = c->next)
        if (c->tid == tid) {
            *out = c->c;
            pthread_mutex_unlock(&px->lock);
            return 0;
        }
    pthread_mutex_unlock(&px->lock);
    mp_conn *c;
    int err = client_conn(px->address, px->key, px->keylen, &c);
    if (err == -ECONNREFUSED || err == -ENOENT)
        err = MP_ECLOSED; /* the server this proxy came from has gone */
    if (err < 0)
        return err;
    mp_args *req, *rep = NULL;
    err = mp_args_of(&req, "issl", OP_OPEN, px->kind, px->name, px->param);
    if (err == 0)
        err = rpc(c, req, &rep);
    mp_args_free(req);
    mp_args_free(rep);
    pconn *pc = err == 0 ? calloc(1, sizeof *pc) : NULL;
    if (pc == NULL) {
        mp_conn_close(c);
        return err < 0 ? err : MP_ENOMEM;
    }
    pc->tid = tid;
    pc->c = c;
    close_at_thread_end();
    pthread_mutex_lock(&px->lock);
    pc->next = px->conns;
    px->conns = pc;
    pthread_mutex_unlock(&px->lock);
    *out = c;
    return 0;
}

/* Run @req (consumed) on this thread's connection (into *@conn when not
 * NULL: the caller sends the receipt, see rpc_unreceipted). */
static int proxy_rpc_on(mp__proxy *px, mp_args *req, mp_args **rep, mp_conn **conn)
{
    *rep = NULL;
    if (req == NULL)
        return MP_ENOMEM;
    mp_conn *c;
    int err = proxy_conn(px, &c);
    if (err == 0)
        err = conn ? rpc_unreceipted(c, req, rep) : rpc(c, req, rep);
    if (conn)
        *conn = c;
    mp_args_free(req);
    return err;
}

static int proxy_rpc(mp__proxy *px, mp_args *req, mp_args **rep)
{
    return proxy_rpc_on(px, req, rep, NULL);
}

static int px_op(int which);

int mp__px_simple(mp__proxy *px, int which, double timeout, int64_t *num)
{
    int op = px_op(which);
    mp_args *req = request(op, px->kind, px->name), *rep = NULL;
    if (!isnan(timeout))
        req = with_double(req, timeout);
    int err = proxy_rpc(px, req, &rep);
    if (err == 0 && num) { /* a reply without its number is no count of 0 */
        if (has(rep, 1, MP_ARG_INT))
            *num = mp_args_int(rep, 1);
        else
            err = MP_EBADMSG;
    }
    mp_args_free(rep);
    return err;
}

int mp__px_bytes(mp__proxy *px, int which, const void *p, size_t n, double timeout, mp_buf *out,
                 void *into, size_t cap, size_t *len)
{
    int op = px_op(which);
    /* into a caller's buffer (even none: cap 0), rather than an mp_buf */
    bool bounded = out == NULL && len != NULL;
    mp_args *req = request(op, px->kind, px->name), *rep = NULL;
    if (p != NULL || op == OP_Q_PUT || op == OP_VAL_STORE)
        req = with_bytes(req, p, n);
    if (!isnan(timeout) || bounded)
        req = with_double(req, isnan(timeout) ? MP_FOREVER : timeout);
    if (bounded) /* a longer message stays queued on the server */
        req = with_int(req, cap > INT64_MAX ? INT64_MAX : (int64_t)cap);
    /* a message is taken once it is in the caller's memory: a kill before
     * the receipt leaves it on the server, as a local get before its
     * commit leaves it in the queue */
    mp_conn *c = NULL;
    int err = proxy_rpc_on(px, req, &rep, op == OP_Q_GET ? &c : NULL);
    if (err == MP_EMSGSIZE && bounded && has(rep, 1, MP_ARG_INT))
        *len = (size_t)mp_args_int(rep, 1);
    if (err == 0 && (out || bounded)) {
        size_t k = 0;
        const void *b = has(rep, 1, MP_ARG_BYTES) ? mp_args_bytes(rep, 1, &k) : NULL;
        if (b == NULL) {
            err = MP_EBADMSG;
        } else if (out) {
            out->len = 0;
            err = mp_buf_append(out, b, k);
        } else {
            if (len)
                *len = k;
            if (k > cap)
                err = MP_EMSGSIZE; /* a server that ignored the bound: can't be */
            else if (k > 0)
                memcpy(into, b, k);
        }
    }
    if (op == OP_Q_GET && hands_over(op, rep ? (int)mp_args_int(rep, 0) : -1)) {
        int r = send_receipt(c, err == 0);
        if (err == 0)
            err = r;
    }
    mp_args_free(rep);
    return err;
}

void mp__px_free(mp__proxy *px)
{
    proxy_free(px);
}

int mp__px_dup(const mp__proxy *px, mp__proxy **out)
{
    return proxy_make(px->address, px->key, px->keylen, px->kind, px->name, px->param, out);
}

/*
 * Where a server is and, into a child started here only, its key: the form
 * every manager handle (proxy, manager, dict, list) begins with.  The key
 * travels only so, as in Python (where a proxy pickles its authkey only
 * while spawning); a handle from a peer uses this process's own key.
 */
static int put_server(mp_buf *out, const char *address, const void *key, size_t keylen,
                      mp__channel ch)
{
    int err = mp__put_str(out, address);
    if (err == 0)
        err = mp__put_u8(out, ch == MP__WIRE_CHILD);
    if (err == 0 && ch == MP__WIRE_CHILD)
        err = mp__put_blob(out, key, keylen);
    return err;
}

static int get_server(mp__reader *r, mp__channel ch, const char **address, const void **key,
                      size_t *keylen)
{
    *address = mp__get_str(r);
    uint8_t has_key = mp__get_u8(r);
    if (r->err || has_key != (ch == MP__WIRE_CHILD))
        return MP_EBADMSG;
    *key = has_key ? mp__get_blob(r, keylen) : mp_process_authkey(mp_current_process(), keylen);
    if (r->err || *key == NULL || *keylen == 0 || *keylen > MP__AUTHKEY_MAX)
        return MP_EBADMSG;
    return 0;
}

int mp__px_reduce(const mp__proxy *px, mp_buf *out, mp__channel ch)
{
    int err = put_server(out, px->address, px->key, px->keylen, ch);
    if (err == 0)
        err = mp__put_str(out, px->kind);
    if (err == 0)
        err = mp__put_str(out, px->name);
    if (err == 0)
        err = mp__put_u64(out, (uint64_t)px->param);
    return err;
}

int mp__px_rebuild(mp__reader *r, mp__channel ch, mp__proxy **out)
{
    const char *address;
    const void *key;
    size_t keylen;
    int err = get_server(r, ch, &address, &key, &keylen);
    const char *kind = mp__get_str(r), *name = mp__get_str(r);
    int64_t param = (int64_t)mp__get_u64(r);
    if (err < 0 || r->err)
        return MP_EBADMSG;
    return proxy_make(address, key, keylen, kind, name, param, out);
}

/* ---- managers, dicts and lists in mp_args ---------------------------------------- */

/* A manager handle travels as where its server is (and its key, into a
 * child); the receiver's handle connects on its first request. */
static int manager_reduce(void *obj, mp_buf *out, mp__fdvec *fds, mp__channel ch)
{
    const mp_manager *m = obj;
    return put_server(out, m->address, m->key, m->keylen, ch);
}

static int manager_rebuild_form(mp__reader *r, mp__channel ch, mp_manager **out)
{
    const char *address;
    const void *key;
    size_t keylen;
    int err = get_server(r, ch, &address, &key, &keylen);
    return err < 0 ? err : manager_new(out, address, key, keylen);
}

static int manager_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, void **obj)
{
    return manager_rebuild_form(r, ch, (mp_manager **)obj);
}

static int manager_dup(void *obj, void **out)
{
    atomic_fetch_add(&((mp_manager *)obj)->refs, 1);
    *out = obj;
    return 0;
}

static void manager_release(void *obj)
{
    manager_unref(obj); /* a copy never stops the server */
}

const mp__objtype mp__manager_objtype = {
    .name = "manager",
    .tag = 11,
    .reduce = manager_reduce,
    .rebuild = manager_rebuild,
    .dup = manager_dup,
    .release = manager_release,
};

int mp_args_add_manager(mp_args *a, mp_manager *m)
{
    return a && m ? mp__args_add_obj(a, &mp__manager_objtype, m) : MP_EINVAL;
}

mp_manager *mp_args_manager(const mp_args *a, size_t i)
{
    return mp__args_obj(a, i, &mp__manager_objtype);
}

/* A dict or list: its manager's form, then its name. */
static int named_reduce(void *obj, mp_buf *out, mp__fdvec *fds, mp__channel ch)
{
    const struct mp_dict *h = obj;
    int err = manager_reduce(h->m, out, fds, ch);
    return err < 0 ? err : mp__put_str(out, h->name);
}

static int named_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, void **obj)
{
    mp_manager *m;
    int err = manager_rebuild_form(r, ch, &m);
    if (err < 0)
        return err;
    const char *name = mp__get_str(r);
    struct mp_dict *h = name ? calloc(1, sizeof *h) : NULL;
    if (h == NULL || (h->name = strdup(name)) == NULL) {
        free(h);
        manager_unref(m);
        return name ? MP_ENOMEM : MP_EBADMSG;
    }
    h->m = m;
    *obj = h;
    return 0;
}

static int named_dup(void *obj, void **out)
{
    const struct mp_dict *src = obj;
    struct mp_dict *h = calloc(1, sizeof *h);
    if (h == NULL || (h->name = strdup(src->name)) == NULL) {
        free(h);
        return MP_ENOMEM;
    }
    atomic_fetch_add(&src->m->refs, 1);
    h->m = src->m;
    *out = h;
    return 0;
}

static void named_release(void *obj)
{
    named_free(obj);
}

const mp__objtype mp__dict_objtype = {
    .name = "dict",
    .tag = 12,
    .reduce = named_reduce,
    .rebuild = named_rebuild,
    .dup = named_dup,
    .release = named_release,
};

const mp__objtype mp__list_objtype = {
    .name = "list",
    .tag = 13,
    .reduce = named_reduce,
    .rebuild = named_rebuild,
    .dup = named_dup,
    .release = named_release,
};

int mp_args_add_dict(mp_args *a, mp_dict *d)
{
    return a && d ? mp__args_add_obj(a, &mp__dict_objtype, d) : MP_EINVAL;
}

mp_dict *mp_args_dict(const mp_args *a, size_t i)
{
    return mp__args_obj(a, i, &mp__dict_objtype);
}

int mp_args_add_list(mp_args *a, mp_list *l)
{
    return a && l ? mp__args_add_obj(a, &mp__list_objtype, l) : MP_EINVAL;
}

mp_list *mp_args_list(const mp_args *a, size_t i)
{
    return mp__args_obj(a, i, &mp__list_objtype);
}

/* Make a proxy for @kind @name on @m's server; the object is opened now. */
int mp__px_open(mp_manager *m, const char *kind, const char *name, int64_t param, mp__proxy **out)
{
    if (m == NULL || name == NULL)
        return MP_EINVAL;
    int err = proxy_make(m->address, m->key, m->keylen, kind, name, param, out);
    if (err < 0)
        return err;
    mp_conn *c;
    err = proxy_conn(*out, &c); /* opens it on the server: MP_EINVAL etc. now */
    if (err < 0) {
        proxy_free(*out);
        *out = NULL;
    }
    return err;
}

static int px_op(int which)
{
    static const int ops[] = {
        [MP__PX_Q_PUT] = OP_Q_PUT,         [MP__PX_Q_GET] = OP_Q_GET,
        [MP__PX_Q_QSIZE] = OP_Q_QSIZE,     [MP__PX_Q_FULL] = OP_Q_FULL,
        [MP__PX_LOCK_ACQ] = OP_LOCK_ACQ,   [MP__PX_LOCK_REL] = OP_LOCK_REL,
        [MP__PX_LOCK_LOCKED] = OP_LOCK_LOCKED, [MP__PX_EV_SET] = OP_EV_SET,
        [MP__PX_EV_CLEAR] = OP_EV_CLEAR,   [MP__PX_EV_ISSET] = OP_EV_ISSET,
        [MP__PX_EV_WAIT] = OP_EV_WAIT,     [MP__PX_SEM_ACQ] = OP_SEM_ACQ,
        [MP__PX_SEM_REL] = OP_SEM_REL,     [MP__PX_SEM_VALUE] = OP_SEM_VALUE,
        [MP__PX_VAL_LOAD] = OP_VAL_LOAD,   [MP__PX_VAL_STORE] = OP_VAL_STORE,
    };
    return ops[which];
}

/* ---- the public proxy constructors ------------------------------------------------ */



static int open_proxy(mp_manager *m, const char *kind, const char *name, int64_t param,
                      int (*wrap)(mp__proxy *, void **), void **out)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    mp__proxy *px;
    int err = mp__px_open(m, kind, name, param, &px);
    if (err == 0 && (err = wrap(px, out)) < 0)
        mp__px_free(px);
    return err;
}

static int wrap_queue(mp__proxy *px, void **out)
{
    return mp__queue_from_proxy(px, (mp_queue **)out);
}

static int wrap_lock(mp__proxy *px, void **out)
{
    return mp__lock_from_proxy(px, (mp_lock **)out);
}

static int wrap_event(mp__proxy *px, void **out)
{
    return mp__event_from_proxy(px, (mp_event **)out);
}

static int wrap_semaphore(mp__proxy *px, void **out)
{
    return mp__semaphore_from_proxy(px, (mp_semaphore **)out);
}

int mp_manager_queue(mp_manager *m, const char *name, size_t maxsize, mp_queue **out)
{
    if (maxsize > INT64_MAX)
        return MP_EINVAL;
    return open_proxy(m, "queue", name, (int64_t)maxsize, wrap_queue, (void **)out);
}

int mp_manager_lock(mp_manager *m, const char *name, mp_lock **out)
{
    return open_proxy(m, "lock", name, 0, wrap_lock, (void **)out);
}

int mp_manager_event(mp_manager *m, const char *name, mp_event **out)
{
    return open_proxy(m, "event", name, 0, wrap_event, (void **)out);
}

int mp_manager_semaphore(mp_manager *m, const char *name, unsigned value, mp_semaphore **out)
{
    if (value > INT32_MAX)
        return MP_EINVAL;
    return open_proxy(m, "semaphore", name, value, wrap_semaphore, (void **)out);
}

int mp_manager_value(mp_manager *m, const char *name, mp_type type, mp_value **out)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    if (mp_type_size(type) == 0)
        return MP_EINVAL;
    mp__proxy *px;
    int err = mp__px_open(m, "value", name, (int64_t)type, &px);
    if (err == 0 && (err = mp__value_from_proxy(px, type, out)) < 0)
        mp__px_free(px);
    return err;
}
