/*
 * The manager server: named shared objects, served to clients through
 * authenticated connections — on this machine or across the network
 * (managers.c starts and stops it; proxy.c is the client side).
 *
 * Wire: see proxy.c.  The server checks every argument's type and count
 * before use, and the op against the ops the object's kind exposes (the
 * kind table `kinds`): a malformed request gets MP_EBADMSG on that
 * connection and nothing else.  A request above MAX_REQUEST is refused
 * from its frame header, before anything is allocated; that client gets
 * MP_EBADMSG and is dropped (our own clients refuse to send one:
 * MP_EMSGSIZE, the connection kept).
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
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

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

int mp__server_register(const char *typeid, mp_method_fn fn)
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

int mp__server_types_add(mp_args *a)
{
    int err = 0;
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

typedef struct server server;
typedef struct sconn sconn;
typedef struct kind kind;

/* What every object has; its kind's own state is behind @st. */
typedef struct sobj {
    struct sobj *next;
    struct sobj *hnext;        /* the server's table by kind and name */
    uint64_t hash;
    const kind *k;
    char *kindname, *name;     /* kindname: a registered type's own typeid */
    pthread_cond_t cond;       /* lock, event, semaphore waiters */
    void *st;                  /* k->size bytes, zeroed before k->init */
} sobj;

/*
 * One entry per kind of object (Python: a typeid and its exposed methods).
 * The server checks a request's op against @ops before it calls @call, so
 * @call sees only the ops it exposes.  @call runs under srv->lock (a
 * blocking op releases it around its waits) and fills the reply after its
 * status.  @take_back undoes what a reply handed over (see
 * mp__op_hands_over) when the client's receipt does not come; @conn_gone
 * releases what a client whose connection ended held.
 */
struct kind {
    const char *name;          /* NULL: a registered type (mp_manager_register) */
    int ops[32];               /* the ops it exposes, ending at the first 0 */
    size_t size;               /* of its state */
    int (*init)(sobj *o, int64_t param);
    void (*fini)(sobj *o);
    int (*call)(server *srv, sconn *sc, sobj *o, int op, const mp_args *a, mp_args *r);
    void (*take_back)(sobj *o, sconn *sc, int op, int status, const mp_args *r);
    void (*conn_gone)(sobj *o, uint64_t id);
};

struct sconn {
    struct sconn *next;
    server *srv;
    mp_conn *c;
    uint64_t id;
    bool pending;              /* still in its handshake */
};

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

/* ---- what the kinds share ----------------------------------------------------- */

static const void *arg_bytes(const mp_args *a, size_t i, size_t *n)
{
    if (!mp__args_has(a, i, MP_ARG_BYTES))
        return NULL;
    return mp_args_bytes(a, i, n);
}

static int reply_bytes(mp_args *r, const void *p, size_t n)
{
    return mp_args_add_bytes(r, p, n);
}

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
    return mp__args_has(a, i, MP_ARG_DOUBLE) ? mp_args_double(a, i) : MP_FOREVER;
}

/* ---- dict --------------------------------------------------------------------- */

typedef struct kv {
    struct kv *next;
    struct kv *older, *newer;  /* insertion order, as Python's dict keeps */
    mp_buf k, v;
} kv;

typedef struct {
    kv **buckets;
    size_t nbuckets, count;
    kv *oldest, *newest;       /* keys, items, values walk from oldest; popitem takes newest */
} dict_st;

/* Take the entry at *@pp out of @d (its bucket chain and the order) and free it. */
static void dict_remove(dict_st *d, kv **pp)
{
    kv *e = *pp;
    *pp = e->next;
    if (e->older)
        e->older->newer = e->newer;
    else
        d->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        d->newest = e->older;
    mp_buf_free(&e->k);
    mp_buf_free(&e->v);
    free(e);
    d->count--;
}

static kv **dict_slot(dict_st *d, const void *k, size_t kl)
{
    kv **pp = &d->buckets[hash(k, kl) % d->nbuckets];
    while (*pp && ((*pp)->k.len != kl || (kl > 0 && memcmp((*pp)->k.data, k, kl) != 0)))
        pp = &(*pp)->next;
    return pp;
}

static int dict_grow(dict_st *d)
{
    if (d->count < d->nbuckets)
        return 0;
    size_t n = d->nbuckets * 2;
    kv **b = calloc(n, sizeof *b);
    if (b == NULL)
        return MP_ENOMEM;
    for (size_t i = 0; i < d->nbuckets; i++)
        while (d->buckets[i]) {
            kv *e = d->buckets[i];
            d->buckets[i] = e->next;
            size_t h = hash(e->k.data, e->k.len) % n;
            e->next = b[h];
            b[h] = e;
        }
    free(d->buckets);
    d->buckets = b;
    d->nbuckets = n;
    return 0;
}

static int dict_st_init(dict_st *d)
{
    *d = (dict_st){.nbuckets = 16};
    d->buckets = calloc(d->nbuckets, sizeof *d->buckets);
    return d->buckets ? 0 : MP_ENOMEM;
}

static void dict_st_fini(dict_st *d)
{
    for (size_t i = 0; d->buckets && i < d->nbuckets; i++)
        while (d->buckets[i]) {
            kv *e = d->buckets[i];
            d->buckets[i] = e->next;
            mp_buf_free(&e->k);
            mp_buf_free(&e->v);
            free(e);
        }
    free(d->buckets);
    *d = (dict_st){0};
}

static int dict_init(sobj *o, int64_t param)
{
    (void)param;
    return dict_st_init(o->st);
}

static void dict_fini(sobj *o)
{
    dict_st_fini(o->st);
}

/* One dict operation (srv->lock held).  SET stores @v; ADD adds *num and
 * leaves the new value there; GET points *got at the stored value. */
static int dict_apply(dict_st *d, int op, const void *k, size_t kl, const void *v, size_t vl,
                      int64_t *num, const mp_buf **got)
{
    kv **pp = dict_slot(d, k, kl);
    if (op == MP__OP_DICT_GET) {
        if (*pp == NULL)
            return MP_ENOENT;
        *got = &(*pp)->v;
        return 0;
    }
    if (op == MP__OP_DICT_DEL) {
        if (*pp == NULL)
            return MP_ENOENT;
        dict_remove(d, pp);
        return 0;
    }
    int64_t add = 0;
    if (op == MP__OP_DICT_ADD) {
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
        e->older = d->newest;
        if (d->newest)
            d->newest->newer = e;
        else
            d->oldest = e;
        d->newest = e;
        d->count++;
    }
    (*pp)->v.len = 0;
    int err = mp_buf_append(&(*pp)->v, v, vl);
    if (err == 0 && op == MP__OP_DICT_ADD)
        *num = add;
    return err < 0 ? err : dict_grow(d);
}

/*
 * A batch of dict operations, the wire form of mp_dict_batch (little-endian):
 *   request: per op  u8 op (mp_dict_opcode), blob key, then SET: blob value, ADD: u64 delta
 *   reply:   per op  u32 status (an int), then if 0: GET: blob value,
 *                    ADD: u64 new value
 * The whole request is checked before any of it runs, so a malformed batch
 * changes nothing; the operations then run in order under the server lock.
 */
static int dict_batch(dict_st *d, const void *p, size_t n, mp_buf *out)
{
    for (int pass = 0; pass < 2; pass++) {
        mp__reader rd;
        mp__reader_init(&rd, p, n);
        while (rd.err == 0 && rd.off < rd.len) {
            static const int ops[] = {
                [MP_DICT_SET] = MP__OP_DICT_SET, [MP_DICT_GET] = MP__OP_DICT_GET,
                [MP_DICT_DEL] = MP__OP_DICT_DEL, [MP_DICT_ADD] = MP__OP_DICT_ADD};
            uint8_t wire = mp__get_u8(&rd);
            int op = wire < sizeof ops / sizeof ops[0] ? ops[wire] : 0;
            size_t kl, vl = 0;
            const void *k = mp__get_blob(&rd, &kl), *v = NULL;
            int64_t num = 0;
            if (op == MP__OP_DICT_SET)
                v = mp__get_blob(&rd, &vl);
            else if (op == MP__OP_DICT_ADD)
                num = (int64_t)mp__get_u64(&rd);
            else if (op != MP__OP_DICT_GET && op != MP__OP_DICT_DEL)
                return MP_EBADMSG;
            if (rd.err || k == NULL || (op == MP__OP_DICT_SET && v == NULL))
                return MP_EBADMSG;
            if (pass == 0)
                continue;
            const mp_buf *got = NULL;
            int st = dict_apply(d, op, k, kl, v, vl, &num, &got);
            int err = mp__put_u32(out, (uint32_t)st);
            if (err == 0 && st == 0 && op == MP__OP_DICT_GET)
                err = mp__put_blob(out, got->data, got->len);
            if (err == 0 && st == 0 && op == MP__OP_DICT_ADD)
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
 * The framing of many byte strings in one blob (keys, values, items, the
 * pairs of update, the values of a list's extend and slices): per string a
 * u32 length, little-endian on the wire, and the bytes; a pair is its key
 * then its value.  The client turns the lengths into native order, the
 * form the API documents (managers.c).
 */
static int put_frame(mp_buf *out, const mp_buf *b)
{
    int err = mp__put_u32(out, (uint32_t)b->len);
    return err < 0 ? err : mp_buf_append(out, b->data, b->len);
}

/* One string of a framed blob; NULL (and rd->err) when short. */
static const void *get_frame(mp__reader *rd, size_t *n)
{
    *n = mp__get_u32(rd);
    if (rd->err || *n > rd->len - rd->off) {
        rd->err = MP_EBADMSG;
        return NULL;
    }
    const void *p = rd->p + rd->off;
    rd->off += *n;
    return p;
}

/* Every entry oldest first: @what 1 its key, 2 its value, 3 both. */
static int dict_walk(const dict_st *d, int what, mp_args *r)
{
    mp_buf all = MP_BUF_INIT;
    int err = 0;
    for (const kv *e = d->oldest; e && err == 0; e = e->newer) {
        if (what & 1)
            err = put_frame(&all, &e->k);
        if (err == 0 && (what & 2))
            err = put_frame(&all, &e->v);
    }
    if (err == 0)
        err = reply_bytes(r, all.data, all.len);
    mp_buf_free(&all);
    return err;
}

/* Forward: the destination of COPY is found (or made) like any object. */
static int sobj_open(server *srv, const char *kindname, const char *name, int64_t param,
                     sobj **out);

/* COPY: the dict called @name on this server becomes a copy of @d (its
 * old entries gone), all or nothing: the copy is built aside first. */
static int dict_copy_to(server *srv, const dict_st *d, sobj *self, const char *name)
{
    sobj *o;
    int err = sobj_open(srv, self->k->name, name, 0, &o); /* a namespace's to a namespace */
    if (err < 0 || o == self)
        return err;
    dict_st fresh;
    if ((err = dict_st_init(&fresh)) < 0)
        return err;
    for (const kv *e = d->oldest; e && err == 0; e = e->newer)
        err = dict_apply(&fresh, MP__OP_DICT_SET, e->k.data, e->k.len, e->v.data, e->v.len, NULL,
                         NULL);
    if (err < 0) {
        dict_st_fini(&fresh);
        return err;
    }
    dict_st_fini(o->st);
    *(dict_st *)o->st = fresh;
    return 0;
}

/* UPDATE: the framed pairs of @p, checked whole before any is stored, so
 * a malformed request changes nothing. */
static int dict_update(dict_st *d, const void *p, size_t n)
{
    for (int pass = 0; pass < 2; pass++) {
        mp__reader rd;
        mp__reader_init(&rd, p, n);
        while (rd.err == 0 && rd.off < rd.len) {
            size_t kl, vl;
            const void *k = get_frame(&rd, &kl);
            const void *v = k ? get_frame(&rd, &vl) : NULL;
            if (v == NULL)
                return MP_EBADMSG;
            int err = pass ? dict_apply(d, MP__OP_DICT_SET, k, kl, v, vl, NULL, NULL) : 0;
            if (err < 0)
                return err;
        }
    }
    return 0;
}

static int dict_call(server *srv, sconn *sc, sobj *o, int op, const mp_args *a, mp_args *r)
{
    (void)sc;
    dict_st *d = o->st;
    size_t kl = 0, vl = 0;
    const void *k = NULL, *v = NULL;
    int err = 0;
    switch (op) {
    case MP__OP_DICT_BATCH: {
        if ((v = arg_bytes(a, 3, &vl)) == NULL)
            return MP_EBADMSG;
        mp_buf out = MP_BUF_INIT;
        err = dict_batch(d, v, vl, &out);
        if (err == 0)
            err = reply_bytes(r, out.data, out.len);
        mp_buf_free(&out);
        return err;
    }
    case MP__OP_DICT_LEN:
        return mp_args_add_int(r, (int64_t)d->count);
    case MP__OP_DICT_KEYS:
        return dict_walk(d, 1, r);
    case MP__OP_DICT_VALUES:
        return dict_walk(d, 2, r);
    case MP__OP_DICT_ITEMS:
        return dict_walk(d, 3, r);
    case MP__OP_DICT_CLEAR: {
        dict_st fresh; /* made first: out of memory leaves the dict whole */
        if ((err = dict_st_init(&fresh)) < 0)
            return err;
        dict_st_fini(d);
        *d = fresh;
        return 0;
    }
    case MP__OP_DICT_COPY:
        if (!mp__args_has(a, 3, MP_ARG_STR))
            return MP_EBADMSG;
        return dict_copy_to(srv, d, o, mp_args_str(a, 3));
    case MP__OP_DICT_UPDATE:
        if ((v = arg_bytes(a, 3, &vl)) == NULL)
            return MP_EBADMSG;
        return dict_update(d, v, vl);
    case MP__OP_DICT_POPITEM: {
        /* LIFO, as Python 3.7+: the newest entry */
        if (d->newest == NULL)
            return MP_ENOENT;
        kv *e = d->newest;
        err = reply_bytes(r, e->k.data, e->k.len);
        if (err == 0)
            err = reply_bytes(r, e->v.data, e->v.len);
        if (err == 0)
            dict_remove(d, dict_slot(d, e->k.data, e->k.len));
        return err;
    }
    }
    /* the rest take a key first */
    if ((k = arg_bytes(a, 3, &kl)) == NULL)
        return MP_EBADMSG;
    if (op == MP__OP_DICT_CONTAINS)
        return mp_args_add_int(r, *dict_slot(d, k, kl) != NULL);
    if (op == MP__OP_DICT_POP) {
        /* then int has_default, and the default's bytes when it has one */
        if (!mp__args_has(a, 4, MP_ARG_INT))
            return MP_EBADMSG;
        bool has_default = mp_args_int(a, 4) != 0;
        if (has_default && (v = arg_bytes(a, 5, &vl)) == NULL)
            return MP_EBADMSG;
        kv **pp = dict_slot(d, k, kl);
        if (*pp == NULL)
            return has_default ? reply_bytes(r, v, vl) : MP_ENOENT;
        err = reply_bytes(r, (*pp)->v.data, (*pp)->v.len);
        if (err == 0)
            dict_remove(d, pp);
        return err;
    }
    if (op == MP__OP_DICT_SETDEFAULT) {
        if ((v = arg_bytes(a, 4, &vl)) == NULL)
            return MP_EBADMSG;
        kv **pp = dict_slot(d, k, kl);
        if (*pp == NULL && (err = dict_apply(d, MP__OP_DICT_SET, k, kl, v, vl, NULL, NULL)) < 0)
            return err;
        const mp_buf *got = NULL;
        err = dict_apply(d, MP__OP_DICT_GET, k, kl, NULL, 0, NULL, &got);
        return err < 0 ? err : reply_bytes(r, got->data, got->len);
    }
    /* SET, GET, DEL, ADD: then SET's value or ADD's delta */
    int64_t num = 0;
    if (op == MP__OP_DICT_SET && (v = arg_bytes(a, 4, &vl)) == NULL)
        return MP_EBADMSG;
    if (op == MP__OP_DICT_ADD) {
        if (!mp__args_has(a, 4, MP_ARG_INT))
            return MP_EBADMSG;
        num = mp_args_int(a, 4);
    }
    const mp_buf *got = NULL;
    err = dict_apply(d, op, k, kl, v, vl, &num, &got);
    if (err == 0 && op == MP__OP_DICT_GET)
        err = reply_bytes(r, got->data, got->len);
    if (err == 0 && op == MP__OP_DICT_ADD)
        err = mp_args_add_int(r, num);
    return err;
}

/* ---- list --------------------------------------------------------------------- */

typedef struct {
    mp_buf *items;
    size_t nitems, capitems;
} list_st;

static void list_fini(sobj *o)
{
    list_st *l = o->st;
    for (size_t i = 0; i < l->nitems; i++)
        mp_buf_free(&l->items[i]);
    free(l->items);
}

/* Room for @more items beyond the list's length (counts checked). */
static int list_reserve(list_st *l, size_t more)
{
    if (more > SIZE_MAX / sizeof(mp_buf) - l->nitems)
        return MP_ENOMEM;
    size_t need = l->nitems + more;
    if (need <= l->capitems)
        return 0;
    size_t cap = l->capitems ? l->capitems : 8;
    while (cap < need)
        cap = cap > SIZE_MAX / sizeof(mp_buf) / 2 ? need : cap * 2;
    mp_buf *n = realloc(l->items, cap * sizeof *n);
    if (n == NULL)
        return MP_ENOMEM;
    l->items = n;
    l->capitems = cap;
    return 0;
}

/* A copy of @vl bytes at @v into *@b, in a block of just that size (a
 * list holds many items that seldom grow). */
static int item_of(mp_buf *b, const void *v, size_t vl)
{
    *b = (mp_buf)MP_BUF_INIT;
    if (vl == 0)
        return 0;
    if ((b->data = malloc(vl)) == NULL)
        return MP_ENOMEM;
    memcpy(b->data, v, vl);
    b->len = b->cap = vl;
    return 0;
}

/* The framed values of @p as new items into @dst (room made by the
 * caller for *@count, which the first call counts: @dst NULL). */
static int list_unframe(const void *p, size_t n, mp_buf *dst, size_t *count)
{
    mp__reader rd;
    mp__reader_init(&rd, p, n);
    size_t i = 0;
    while (rd.err == 0 && rd.off < rd.len) {
        size_t vl;
        const void *v = get_frame(&rd, &vl);
        if (v == NULL)
            break;
        if (dst && item_of(&dst[i], v, vl) < 0) {
            while (i > 0)
                mp_buf_free(&dst[--i]);
            return MP_ENOMEM;
        }
        i++;
    }
    if (rd.err)
        return MP_EBADMSG;
    *count = i;
    return 0;
}

/* Python's order of byte strings: memcmp over the common length, then the
 * shorter first ("a" < "ab" < "b"). */
static int bytes_cmp(const mp_buf *x, const mp_buf *y)
{
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->data, y->data, n) : 0;
    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int cmp_up(const void *x, const void *y)
{
    return bytes_cmp(x, y);
}

static int cmp_down(const void *x, const void *y)
{
    return bytes_cmp(y, x);
}

/*
 * A slice's indexes as Python's slice.indices(len): negative ones count
 * from the end, the rest is clamped to the list, so any int64 pair is a
 * slice (omitted bounds: INT64_MIN / INT64_MAX).  *count items from
 * *start by step.  Step 0 is MP_EINVAL, as Python's ValueError.
 */
static int slice_clamp(size_t len, int64_t b, int64_t e, int64_t st, int64_t *start,
                       int64_t *step, size_t *count)
{
    if (st == 0)
        return MP_EINVAL;
    if (st < -INT64_MAX)
        st = -INT64_MAX; /* as Python, so that -step is defined */
    int64_t n = (int64_t)len;
    int64_t lo = st < 0 ? -1 : 0, hi = st < 0 ? n - 1 : n;
    int64_t *ends[2] = {&b, &e};
    for (int j = 0; j < 2; j++) {
        int64_t *x = ends[j];
        if (*x < 0) {
            *x += n;
            if (*x < 0)
                *x = lo;
        } else if (*x >= n) {
            *x = hi;
        }
    }
    uint64_t c = 0;
    if (st > 0 && b < e)
        c = (uint64_t)(e - b - 1) / (uint64_t)st + 1;
    else if (st < 0 && e < b)
        c = (uint64_t)(b - e - 1) / (uint64_t)-st + 1;
    *start = b;
    *step = st;
    *count = (size_t)c;
    return 0;
}

/* A slice's start, stop and step from request items @i..@i+2. */
static int slice_of(const list_st *l, const mp_args *a, size_t i, int64_t *start, int64_t *step,
                    size_t *count)
{
    if (!mp__args_has(a, i, MP_ARG_INT) || !mp__args_has(a, i + 1, MP_ARG_INT) ||
        !mp__args_has(a, i + 2, MP_ARG_INT))
        return MP_EBADMSG;
    return slice_clamp(l->nitems, mp_args_int(a, i), mp_args_int(a, i + 1), mp_args_int(a, i + 2),
                       start, step, count);
}

/* The most items a list may hold, and the most memory REPEAT may make it
 * take: beyond them a request is MP_ENOMEM (Python's MemoryError) instead
 * of a server that pages itself to death.  REPEAT is the one request whose
 * few bytes ask for any amount of memory, so it counts what the result
 * takes, each item with its slot and the allocator's header, not only its
 * bytes (a list of short items is mostly bookkeeping).  A list grows past
 * the bound only by requests that carry their items. */
#define LIST_MAX_ITEMS ((size_t)1 << 28)
#define LIST_MAX_REPEAT_BYTES ((uint64_t)256 << 20)
#define LIST_ITEM_COST ((uint64_t)sizeof(mp_buf) + 16)

static void list_drop(list_st *l, size_t i, size_t n)
{
    if (n == 0)
        return; /* items may still be NULL: no memmove on it */
    for (size_t j = i; j < i + n; j++)
        mp_buf_free(&l->items[j]);
    memmove(&l->items[i], &l->items[i + n], (l->nitems - i - n) * sizeof(mp_buf));
    l->nitems -= n;
}

/* SET_SLICE: items start, start+step, ... become the framed values of @p.
 * Step 1 replaces the range by any number of values (stop below start: an
 * insertion at start); another step needs exactly as many values as the
 * slice has items (Python's ValueError: MP_EINVAL). */
static int list_set_slice(list_st *l, int64_t start, int64_t step, size_t count, const void *p,
                          size_t n)
{
    size_t m;
    int err = list_unframe(p, n, NULL, &m); /* checks the whole request first */
    if (err < 0)
        return err;
    if (step != 1 && m != count)
        return MP_EINVAL;
    size_t grow = m > count ? m - count : 0;
    if (grow > LIST_MAX_ITEMS - (l->nitems < LIST_MAX_ITEMS ? l->nitems : LIST_MAX_ITEMS))
        return MP_ENOMEM;
    if (grow && (err = list_reserve(l, grow)) < 0)
        return err; /* room to spare is harmless */
    mp_buf *fresh = m ? malloc(m * sizeof *fresh) : NULL;
    if (m && fresh == NULL)
        return MP_ENOMEM;
    if ((err = list_unframe(p, n, fresh, &m)) < 0) {
        free(fresh);
        return err;
    }
    if (step == 1) { /* 0 <= start <= len */
        size_t s = (size_t)start;
        for (size_t j = s; j < s + count; j++)
            mp_buf_free(&l->items[j]);
        if (l->nitems > s + count)
            memmove(&l->items[s + m], &l->items[s + count],
                    (l->nitems - s - count) * sizeof(mp_buf));
        if (m)
            memcpy(&l->items[s], fresh, m * sizeof *fresh);
        l->nitems = l->nitems - count + m;
    } else {
        for (size_t j = 0; j < m; j++) {
            size_t at = (size_t)(start + (int64_t)j * step);
            mp_buf_free(&l->items[at]);
            l->items[at] = fresh[j];
        }
    }
    free(fresh);
    return 0;
}

/* DEL_SLICE: the slice's items go, the rest keep their order. */
static void list_del_slice(list_st *l, int64_t start, int64_t step, size_t count)
{
    if (count == 0)
        return;
    if (step < 0) { /* the same items, walked upwards */
        start += (int64_t)(count - 1) * step;
        step = -step;
    }
    size_t s = (size_t)start, w = s;
    for (size_t r = s, k = 0; r < l->nitems; r++) {
        if (k < count && r == s + k * (size_t)step) {
            mp_buf_free(&l->items[r]);
            k++;
        } else {
            l->items[w++] = l->items[r];
        }
    }
    l->nitems = w;
}

/* REPEAT (l *= n): n <= 0 empties the list, 1 leaves it. */
static int list_repeat(list_st *l, int64_t n)
{
    if (n <= 0 || l->nitems == 0) {
        list_drop(l, 0, l->nitems);
        return 0;
    }
    if (n == 1)
        return 0;
    size_t old = l->nitems;
    uint64_t cost = 0; /* what the list takes now: at least one item's cost */
    for (size_t i = 0; i < old; i++)
        cost += l->items[i].len + LIST_ITEM_COST;
    if ((uint64_t)n - 1 > (LIST_MAX_ITEMS - (old < LIST_MAX_ITEMS ? old : LIST_MAX_ITEMS)) / old ||
        (uint64_t)n > LIST_MAX_REPEAT_BYTES / cost)
        return MP_ENOMEM;
    size_t more = old * (size_t)(n - 1);
    int err = list_reserve(l, more);
    for (size_t j = 0; j < more && err == 0; j++) {
        const mp_buf *src = &l->items[j % old];
        if ((err = item_of(&l->items[old + j], src->data, src->len)) == 0)
            l->nitems++;
    }
    if (err < 0) /* all or nothing */
        list_drop(l, old, l->nitems - old);
    return err;
}

static int list_call(server *srv, sconn *sc, sobj *o, int op, const mp_args *a, mp_args *r)
{
    (void)srv;
    (void)sc;
    list_st *l = o->st;
    size_t vl = 0;
    const void *v = NULL;
    int err = 0;
    switch (op) {
    case MP__OP_LIST_LEN:
        return mp_args_add_int(r, (int64_t)l->nitems);
    case MP__OP_LIST_APPEND:
        if ((v = arg_bytes(a, 3, &vl)) == NULL)
            return MP_EBADMSG;
        if (l->nitems >= LIST_MAX_ITEMS)
            return MP_ENOMEM;
        if ((err = list_reserve(l, 1)) == 0 && (err = item_of(&l->items[l->nitems], v, vl)) == 0)
            l->nitems++;
        return err;
    case MP__OP_LIST_INSERT: {
        /* an index clamped as Python's insert: before the first, after the last */
        if (!mp__args_has(a, 3, MP_ARG_INT) || (v = arg_bytes(a, 4, &vl)) == NULL)
            return MP_EBADMSG;
        int64_t i = mp_args_int(a, 3), n = (int64_t)l->nitems;
        if (i < 0 && (i += n) < 0)
            i = 0;
        if (i > n)
            i = n;
        if (l->nitems >= LIST_MAX_ITEMS)
            return MP_ENOMEM;
        mp_buf b;
        if ((err = list_reserve(l, 1)) < 0 || (err = item_of(&b, v, vl)) < 0)
            return err;
        memmove(&l->items[i + 1], &l->items[i], (l->nitems - (size_t)i) * sizeof b);
        l->items[i] = b;
        l->nitems++;
        return 0;
    }
    case MP__OP_LIST_REMOVE:
    case MP__OP_LIST_COUNT:
    case MP__OP_LIST_CONTAINS:
    case MP__OP_LIST_INDEX: {
        if ((v = arg_bytes(a, 3, &vl)) == NULL)
            return MP_EBADMSG;
        mp_buf want = {(void *)v, vl, vl};
        size_t from = 0, to = l->nitems;
        if (op == MP__OP_LIST_INDEX) { /* start and stop as a slice's */
            int64_t start, step;
            size_t count;
            if (!mp__args_has(a, 4, MP_ARG_INT) || !mp__args_has(a, 5, MP_ARG_INT))
                return MP_EBADMSG;
            if ((err = slice_clamp(l->nitems, mp_args_int(a, 4), mp_args_int(a, 5), 1, &start,
                                   &step, &count)) < 0)
                return err;
            from = (size_t)start;
            to = from + count;
        }
        int64_t found = 0;
        for (size_t i = from; i < to; i++)
            if (bytes_cmp(&l->items[i], &want) == 0) {
                if (op == MP__OP_LIST_COUNT) {
                    found++;
                    continue;
                }
                if (op == MP__OP_LIST_REMOVE)
                    list_drop(l, i, 1);
                return op == MP__OP_LIST_REMOVE ? 0 : mp_args_add_int(r, op == MP__OP_LIST_INDEX ? (int64_t)i : 1);
            }
        if (op == MP__OP_LIST_COUNT || op == MP__OP_LIST_CONTAINS)
            return mp_args_add_int(r, found);
        return MP_EINVAL; /* Python's ValueError: not in list */
    }
    case MP__OP_LIST_EXTEND: {
        if ((v = arg_bytes(a, 3, &vl)) == NULL)
            return MP_EBADMSG;
        return list_set_slice(l, (int64_t)l->nitems, 1, 0, v, vl); /* l[len:len] = values */
    }
    case MP__OP_LIST_REVERSE:
        for (size_t i = 0, j = l->nitems; i + 1 < j; i++, j--) {
            mp_buf t = l->items[i];
            l->items[i] = l->items[j - 1];
            l->items[j - 1] = t;
        }
        return 0;
    case MP__OP_LIST_SORT:
        /* items that compare equal are equal bytes: which of them goes
         * first cannot be told, so qsort's instability is unseen */
        if (!mp__args_has(a, 3, MP_ARG_INT))
            return MP_EBADMSG;
        if (l->nitems > 1)
            qsort(l->items, l->nitems, sizeof(mp_buf), mp_args_int(a, 3) ? cmp_down : cmp_up);
        return 0;
    case MP__OP_LIST_REPEAT:
        if (!mp__args_has(a, 3, MP_ARG_INT))
            return MP_EBADMSG;
        return list_repeat(l, mp_args_int(a, 3));
    case MP__OP_LIST_GET_SLICE:
    case MP__OP_LIST_SET_SLICE:
    case MP__OP_LIST_DEL_SLICE: {
        int64_t start, step;
        size_t count;
        if ((err = slice_of(l, a, 3, &start, &step, &count)) < 0)
            return err;
        if (op == MP__OP_LIST_DEL_SLICE) {
            list_del_slice(l, start, step, count);
            return 0;
        }
        if (op == MP__OP_LIST_SET_SLICE) {
            if ((v = arg_bytes(a, 6, &vl)) == NULL)
                return MP_EBADMSG;
            return list_set_slice(l, start, step, count, v, vl);
        }
        mp_buf out = MP_BUF_INIT;
        for (size_t j = 0; j < count && err == 0; j++)
            err = put_frame(&out, &l->items[start + (int64_t)j * step]);
        if (err == 0)
            err = reply_bytes(r, out.data, out.len);
        mp_buf_free(&out);
        return err;
    }
    }
    /* GET, SET, POP: an index, counted from the end when negative */
    if (!mp__args_has(a, 3, MP_ARG_INT))
        return MP_EBADMSG;
    int64_t i = mp_args_int(a, 3);
    if (i < 0)
        i += (int64_t)l->nitems;
    if (i < 0 || (uint64_t)i >= l->nitems)
        return MP_EINVAL;
    if (op == MP__OP_LIST_GET)
        return reply_bytes(r, l->items[i].data, l->items[i].len);
    if (op == MP__OP_LIST_SET) {
        if ((v = arg_bytes(a, 4, &vl)) == NULL)
            return MP_EBADMSG;
        l->items[i].len = 0;
        return mp_buf_append(&l->items[i], v, vl);
    }
    err = reply_bytes(r, l->items[i].data, l->items[i].len);
    if (err == 0)
        list_drop(l, (size_t)i, 1);
    return err;
}

/* ---- queue -------------------------------------------------------------------- */

typedef struct {
    mp_queue *q;
    mp_buf *back;              /* taken for clients that died: served first */
    size_t nback, capback;
} queue_st;

static int queue_init(sobj *o, int64_t param)
{
    queue_st *s = o->st;
    return param < 0 ? MP_EINVAL : mp_queue_new(&s->q, (size_t)param);
}

static void queue_fini(sobj *o)
{
    queue_st *s = o->st;
    for (size_t i = 0; i < s->nback; i++)
        mp_buf_free(&s->back[i]);
    free(s->back);
    mp_queue_free(s->q);
}

/*
 * Messages a dead client's get had taken go back to the head of their
 * queue, here: each get takes from these first (a getter already waiting
 * sees them within its next slice).
 */
static int back_push(queue_st *s, const void *p, size_t n)
{
    if (s->nback == s->capback) {
        size_t cap = s->capback ? 2 * s->capback : 4;
        mp_buf *b = realloc(s->back, cap * sizeof *b);
        if (b == NULL)
            return MP_ENOMEM;
        s->back = b;
        s->capback = cap;
    }
    mp_buf m = MP_BUF_INIT;
    int err = mp_buf_append(&m, p, n);
    if (err < 0)
        return err;
    memmove(&s->back[1], &s->back[0], s->nback * sizeof *s->back);
    s->back[0] = m;
    s->nback++;
    return 0;
}

/* Take the first returned message into @got, as get_bounded (@cap < 0:
 * any length). */
static int back_take(queue_st *s, int64_t cap, mp_buf *got, size_t *len)
{
    *len = s->back[0].len;
    if (cap >= 0 && *len > (uint64_t)cap)
        return MP_EMSGSIZE; /* it stays */
    mp_buf_free(got);
    *got = s->back[0];
    memmove(&s->back[0], &s->back[1], --s->nback * sizeof *s->back);
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

static int queue_call(server *srv, sconn *sc, sobj *o, int op, const mp_args *a, mp_args *r)
{
    queue_st *s = o->st;
    int err = 0;
    if (op == MP__OP_Q_QSIZE || op == MP__OP_Q_FULL) {
        size_t n = 0;
        err = mp_queue_qsize(s->q, &n);
        if (err == 0)
            err = mp_args_add_int(r, op == MP__OP_Q_QSIZE ? (int64_t)(n + s->nback)
                                                          : mp_queue_full(s->q));
        return err;
    }
    /* PUT, GET */
    size_t vl = 0;
    const void *v = NULL;
    if (op == MP__OP_Q_PUT && (v = arg_bytes(a, 3, &vl)) == NULL)
        return MP_EBADMSG;
    mp__deadline d;
    mp__deadline_init(&d, arg_timeout(a, op == MP__OP_Q_PUT ? 4 : 3));
    /* a get's optional bound (mp_queue_get_into's @cap) */
    int64_t cap =
        op == MP__OP_Q_GET && mp__args_has(a, 4, MP_ARG_INT) ? mp_args_int(a, 4) : -1;
    size_t len = 0;
    mp_queue *q = s->q;
    mp_buf got = MP_BUF_INIT;
    /* Wait in slices, the queue blocking on its own (srv->lock
     * released): a server shutting down, or a client that hung up (it
     * must not take a message it can no longer receive), ends it. */
    for (;;) {
        if (op == MP__OP_Q_GET && s->nback > 0) {
            err = back_take(s, cap, &got, &len);
            break;
        }
        int ms = mp__deadline_poll_ms(&d);
        double slice = ms < 0 || ms > WAIT_SLICE_MS ? WAIT_SLICE_MS / 1000.0 : ms / 1000.0;
        pthread_mutex_unlock(&srv->lock);
        err = op == MP__OP_Q_PUT ? mp_queue_put(q, v, vl, slice)
              : cap >= 0         ? get_bounded(q, &got, (size_t)cap, slice, &len)
                                 : mp_queue_get(q, &got, slice);
        pthread_mutex_lock(&srv->lock);
        if ((err != MP_EFULL && err != MP_EEMPTY) || mp__deadline_expired(&d))
            break;
        if (client_gone(srv, sc)) {
            err = MP_ECLOSED;
            break;
        }
    }
    if (err == 0 && op == MP__OP_Q_GET)
        err = reply_bytes(r, got.data, got.len);
    else if (err == MP_EMSGSIZE && cap >= 0 && mp_args_add_int(r, (int64_t)len) < 0)
        err = MP_ENOMEM;
    mp_buf_free(&got);
    return err;
}

/* A message taken for a client that died goes back to the head. */
static void queue_take_back(sobj *o, sconn *sc, int op, int status, const mp_args *r)
{
    size_t n = 0;
    const void *p = arg_bytes(r, 1, &n);
    if (p == NULL || back_push(o->st, p, n) < 0)
        mp__log(MP_LOG_ERROR, "manager: a message taken for a client that died is lost");
}

/* ---- lock --------------------------------------------------------------------- */

typedef struct {
    uint64_t owner;            /* connection id, 0 free */
    bool owner_died;
    bool recursive;            /* an RLock: its owner may take it again */
    uint32_t depth;            /* the owner's acquisitions (1 for a Lock) */
} lock_st;

static int lock_call(server *srv, sconn *sc, sobj *o, int op, const mp_args *a, mp_args *r)
{
    lock_st *l = o->st;
    mp__deadline d;
    int err = 0;
    switch (op) {
    case MP__OP_LOCK_ACQ:
        mp__deadline_init(&d, arg_timeout(a, 3));
        if (l->owner == sc->id && l->recursive) {
            if (l->depth == UINT32_MAX)
                return MP_EINVAL;
            l->depth++;
            return 0;
        }
        if (l->owner == sc->id) { /* not recursive: as a local Lock */
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
            if (l->owner == 0) {
                err = waited ? gone_after_wait(srv, sc, o) : 0;
                break;
            }
            err = cond_wait_until(srv, sc, o, &d);
        }
        if (err < 0)
            return err;
        l->owner = sc->id;
        l->depth = 1;
        if (l->owner_died) {
            l->owner_died = false;
            return MP_EOWNERDEAD;
        }
        return 0;
    /* A lock whose owner died is still held, by the dead owner, until the
     * next acquirer takes it (MP_EOWNERDEAD), as a local Lock (a robust
     * mutex) is: locked, and not this client's to release. */
    case MP__OP_LOCK_REL:
        if (l->owner == 0 && !l->owner_died)
            return MP_EINVAL;
        if (l->owner != sc->id)
            return MP_EPERM;
        if (--l->depth > 0) /* an RLock taken more than once */
            return 0;
        l->owner = 0;
        pthread_cond_signal(&o->cond);
        return 0;
    default: /* LOCKED */
        return mp_args_add_int(r, l->owner != 0 || l->owner_died);
    }
}

/* An acquire whose receipt did not come: released as it was. */
static void lock_take_back(sobj *o, sconn *sc, int op, int status, const mp_args *r)
{
    lock_st *l = o->st;
    if (l->owner != sc->id)
        return;
    if (l->depth > 1) { /* an RLock's acquire again: only that one undone */
        l->depth--;
        return;
    }
    l->owner = 0;
    l->depth = 0;
    l->owner_died = status == MP_EOWNERDEAD; /* still for the next one to hear */
    pthread_cond_signal(&o->cond);
}

/* Its owner's connection ended: the next acquirer hears MP_EOWNERDEAD. */
static void lock_conn_gone(sobj *o, uint64_t id)
{
    lock_st *l = o->st;
    if (l->owner != id)
        return;
    l->owner = 0;
    l->depth = 0;
    l->owner_died = true;
    pthread_cond_signal(&o->cond);
}

/* ---- event -------------------------------------------------------------------- */

typedef struct {
    bool flag;
} event_st;

static int event_call(server *srv, sconn *sc, sobj *o, int op, const mp_args *a, mp_args *r)
{
    event_st *e = o->st;
    mp__deadline d;
    int err = 0;
    switch (op) {
    case MP__OP_EV_SET:
    case MP__OP_EV_CLEAR:
        e->flag = op == MP__OP_EV_SET;
        pthread_cond_broadcast(&o->cond);
        return 0;
    case MP__OP_EV_ISSET:
        return mp_args_add_int(r, e->flag);
    default: /* WAIT */
        mp__deadline_init(&d, arg_timeout(a, 3));
        while (!e->flag && err == 0)
            err = cond_wait_until(srv, sc, o, &d);
        return e->flag ? 0 : err;
    }
}

/* ---- semaphore ---------------------------------------------------------------- */

typedef struct {
    int64_t value;
    int64_t max;               /* a bounded one's initial value */
    bool bounded;
} sem_st;

static int sem_init(sobj *o, int64_t param)
{
    sem_st *s = o->st;
    s->value = param < 0 || param > INT32_MAX ? 0 : param;
    s->max = s->value;
    return 0;
}

static int sem_call(server *srv, sconn *sc, sobj *o, int op, const mp_args *a, mp_args *r)
{
    sem_st *s = o->st;
    mp__deadline d;
    int err = 0;
    switch (op) {
    case MP__OP_SEM_ACQ:
        mp__deadline_init(&d, arg_timeout(a, 3));
        for (bool waited = false; err == 0; waited = true) {
            if (s->value > 0) {
                err = waited ? gone_after_wait(srv, sc, o) : 0;
                break;
            }
            err = cond_wait_until(srv, sc, o, &d);
        }
        if (err < 0)
            return err;
        s->value--;
        return 0;
    case MP__OP_SEM_REL:
        if (s->value >= INT32_MAX || (s->bounded && s->value >= s->max))
            return MP_EINVAL; /* released too many times, as a local one */
        s->value++;
        pthread_cond_signal(&o->cond);
        return 0;
    default: /* VALUE */
        return mp_args_add_int(r, s->value);
    }
}

/* An acquire whose receipt did not come: its unit returned. */
static void sem_take_back(sobj *o, sconn *sc, int op, int status, const mp_args *r)
{
    ((sem_st *)o->st)->value++;
    pthread_cond_signal(&o->cond);
}

/* ---- value -------------------------------------------------------------------- */

typedef struct {
    int type;
    uint8_t bytes[8];
} value_st;

static int value_init(sobj *o, int64_t param)
{
    value_st *v = o->st;
    v->type = (int)param;
    return mp_type_size((mp_type)param) == 0 ? MP_EINVAL : 0;
}

static int value_call(server *srv, sconn *sc, sobj *o, int op, const mp_args *a, mp_args *r)
{
    value_st *val = o->st;
    size_t vl = 0;
    const void *v = NULL;
    if (op == MP__OP_VAL_LOAD)
        return reply_bytes(r, val->bytes, mp_type_size((mp_type)val->type));
    /* STORE */
    if ((v = arg_bytes(a, 3, &vl)) == NULL || vl != mp_type_size((mp_type)val->type))
        return MP_EBADMSG;
    memcpy(val->bytes, v, vl);
    return 0;
}

/* ---- a registered type (mp_manager_register) ---------------------------------- */

typedef struct {
    mp_method_fn fn;
    void *state;               /* the type's own, given to each call */
} custom_st;

static int custom_init(sobj *o, int64_t param)
{
    custom_st *c = o->st;
    c->fn = type_fn(o->kindname);
    return c->fn ? 0 : MP_ENOENT;
}

static void custom_fini(sobj *o)
{
    custom_st *c = o->st;
    if (c->fn && c->state) {
        mp_buf none = MP_BUF_INIT;
        c->fn(&c->state, "__del__", NULL, &none); /* its chance to free its state */
        mp_buf_free(&none);
    }
}

/* The type's methods are its own to check. */
static int custom_call(server *srv, sconn *sc, sobj *o, int op, const mp_args *a, mp_args *r)
{
    custom_st *c = o->st;
    size_t vl = 0;
    const void *v = NULL;
    if (!mp__args_has(a, 3, MP_ARG_STR) || (v = arg_bytes(a, 4, &vl)) == NULL)
        return MP_EBADMSG;
    mp__reader rd;
    mp__reader_init(&rd, v, vl);
    mp_args *in = NULL;
    int err = mp__args_decode(&rd, NULL, 0, MP__WIRE_DATA, &in);
    if (err < 0)
        return MP_EBADMSG;
    mp_buf out = MP_BUF_INIT;
    err = c->fn(&c->state, mp_args_str(a, 3), in, &out);
    mp_args_free(in);
    if (err == 0)
        err = reply_bytes(r, out.data, out.len);
    else if (err > 0)
        err = -err; /* a method's own code, kept negative on the wire */
    mp_buf_free(&out);
    return err;
}

/* ---- array -------------------------------------------------------------------- */

/*
 * A typed array (SyncManager.Array): @n elements of one mp_type, zero when
 * made.  The open parameter carries both (ARRAY_PARAM), so that every
 * connection of every proxy opens the same shape; ARR_INIT checks that an
 * array found by name has the shape asked for, and stores the opener's
 * initial elements if none has been stored yet.  Each load or store is one
 * request, so a slice is read or written whole under the server lock.
 */
typedef struct {
    mp_type type;
    size_t n, es;
    uint8_t *data;
    bool stored;               /* written since made: a later init is ignored */
} array_st;

static int array_init(sobj *o, int64_t param)
{
    array_st *s = o->st;
    s->type = (mp_type)(param & 0xff);
    s->es = mp_type_size(s->type);
    uint64_t n = (uint64_t)param >> 8;
    if (param < 0 || s->es == 0 || n > MAX_REQUEST / s->es)
        return MP_EINVAL;
    s->n = (size_t)n;
    s->data = calloc(s->n ? s->n : 1, s->es);
    return s->data ? 0 : MP_ENOMEM;
}

static void array_fini(sobj *o)
{
    free(((array_st *)o->st)->data);
}

/* The element range [a[3], a[3] + count) of @s, as a byte offset and
 * length: MP_EINVAL past the end. */
static int array_range(const array_st *s, const mp_args *a, int64_t count, size_t *off,
                       size_t *len)
{
    if (!mp__args_has(a, 3, MP_ARG_INT))
        return MP_EBADMSG;
    int64_t start = mp_args_int(a, 3);
    if (start < 0 || count < 0 || (uint64_t)start > s->n || (uint64_t)count > s->n - (uint64_t)start)
        return MP_EINVAL;
    *off = (size_t)start * s->es;
    *len = (size_t)count * s->es;
    return 0;
}

static int array_call(server *srv, sconn *sc, sobj *o, int op, const mp_args *a, mp_args *r)
{
    array_st *s = o->st;
    size_t off = 0, len = 0, vl = 0;
    const void *v = NULL;
    int err;
    switch (op) {
    case MP__OP_ARR_LOAD: /* start, count */
        if (!mp__args_has(a, 4, MP_ARG_INT))
            return MP_EBADMSG;
        if ((err = array_range(s, a, mp_args_int(a, 4), &off, &len)) < 0)
            return err;
        return reply_bytes(r, s->data + off, len);
    case MP__OP_ARR_STORE: /* start, the elements' bytes */
        if ((v = arg_bytes(a, 4, &vl)) == NULL || vl % s->es != 0)
            return MP_EBADMSG;
        if ((err = array_range(s, a, (int64_t)(vl / s->es), &off, &len)) < 0)
            return err;
        if (len > 0)
            memcpy(s->data + off, v, len);
        s->stored = true;
        return 0;
    default: /* INIT: the shape's parameter, then the initial elements or none */
        if (!mp__args_has(a, 3, MP_ARG_INT))
            return MP_EBADMSG;
        if ((uint64_t)mp_args_int(a, 3) != ((uint64_t)s->n << 8 | (uint64_t)s->type))
            return MP_EINVAL; /* the name is another array's */
        if (mp_args_count(a) > 4) {
            if ((v = arg_bytes(a, 4, &vl)) == NULL || vl != s->n * s->es)
                return MP_EBADMSG;
            if (!s->stored && vl > 0)
                memcpy(s->data, v, vl);
            s->stored = true;
        }
        return 0;
    }
}

/* ---- joinable queue ----------------------------------------------------------- */

/*
 * A JoinableQueue (SyncManager.JoinableQueue): the queue kind's code runs
 * on its first member, and this kind counts the unfinished tasks on top:
 * a put adds one (before the message is in: its task_done cannot come
 * first), a task_done takes one (MP_EINVAL at 0, as the local queue), and
 * join waits on the server until the count reaches 0.
 *
 * A consumer that dies: the server counts, per connection, the messages
 * handed over to it (after the receipt) and not yet task_done'd by it.  When
 * the connection ends with some outstanding, they are written off: the
 * unfinished count drops by them (never below 0), so join does not hang
 * for tasks no one will finish.  A join that returns because the count
 * reached 0 after a write-off returns MP_EOWNERDEAD instead of 0 — every
 * join waiting then, or, if none was, the next join to find the count 0.
 * A task_done by another connection than the getter's (Python allows it)
 * only lowers the global count; a write-off is then bounded by it.
 */
typedef struct {
    uint64_t id;               /* a connection */
    int64_t n;                 /* messages it got, not yet task_done'd by it */
} jq_taken;

typedef struct {
    queue_st q;                /* first: queue_call runs on it */
    int64_t unfinished;
    jq_taken *taken;
    size_t ntaken, captaken;
    uint64_t zeros;            /* times the count reached 0 */
    uint64_t lost_zero;        /* the last of those that followed a write-off */
    bool lost_since_zero;      /* a write-off since the last zero */
    bool lost_unreported;      /* lost_zero not yet returned by any join */
} jqueue_st;

_Static_assert(offsetof(jqueue_st, q) == 0, "a joinable queue's state is a queue's");

static void jqueue_fini(sobj *o)
{
    queue_fini(o);
    free(((jqueue_st *)o->st)->taken);
}

/* The entry of connection @id, made (at 0) when @make. */
static jq_taken *jq_find(jqueue_st *j, uint64_t id, bool make)
{
    for (size_t i = 0; i < j->ntaken; i++)
        if (j->taken[i].id == id)
            return &j->taken[i];
    if (!make)
        return NULL;
    if (j->ntaken == j->captaken) {
        size_t cap = j->captaken ? 2 * j->captaken : 4;
        jq_taken *t = realloc(j->taken, cap * sizeof *t);
        if (t == NULL)
            return NULL;
        j->taken = t;
        j->captaken = cap;
    }
    j->taken[j->ntaken] = (jq_taken){.id = id};
    return &j->taken[j->ntaken++];
}

/* @k fewer unfinished tasks (at most as many as there are); @lost: written
 * off.  Reaching 0 wakes the joiners. */
static void jq_finish(sobj *o, int64_t k, bool lost)
{
    jqueue_st *j = o->st;
    if (k > j->unfinished)
        k = j->unfinished;
    if (k <= 0)
        return;
    j->unfinished -= k;
    j->lost_since_zero |= lost;
    if (j->unfinished > 0)
        return;
    j->zeros++;
    if (j->lost_since_zero) {
        j->lost_zero = j->zeros;
        j->lost_unreported = true;
        j->lost_since_zero = false;
    }
    pthread_cond_broadcast(&o->cond);
}

static int jqueue_join(server *srv, sconn *sc, sobj *o, const mp_args *a)
{
    jqueue_st *j = o->st;
    mp__deadline d;
    mp__deadline_init(&d, arg_timeout(a, 3));
    uint64_t start = j->zeros;
    int err = 0;
    if (j->unfinished > 0) {
        while (j->zeros == start && err == 0)
            err = cond_wait_until(srv, sc, o, &d);
        if (j->zeros == start)
            return err;
        if (j->lost_zero <= start)
            return 0;
    } else if (!j->lost_unreported) {
        return 0;
    }
    j->lost_unreported = false;
    return MP_EOWNERDEAD;
}

static int jqueue_call(server *srv, sconn *sc, sobj *o, int op, const mp_args *a, mp_args *r)
{
    jqueue_st *j = o->st;
    jq_taken *t;
    int err;
    switch (op) {
    case MP__OP_Q_PUT:
        if (j->unfinished == INT64_MAX)
            return MP_EFULL;
        j->unfinished++;
        if ((err = queue_call(srv, sc, o, op, a, r)) < 0)
            jq_finish(o, 1, false);
        return err;
    case MP__OP_Q_GET:
        /* the entry made first: once the message is taken, counting it
         * cannot fail (the entry stays put: only this connection's end
         * removes it, on this thread) */
        if (jq_find(j, sc->id, true) == NULL)
            return MP_ENOMEM;
        err = queue_call(srv, sc, o, op, a, r);
        if (err == 0)
            jq_find(j, sc->id, false)->n++; /* until its receipt fails to come */
        return err;
    case MP__OP_JQ_TASK_DONE:
        if (j->unfinished <= 0)
            return MP_EINVAL; /* called more often than messages were put */
        if ((t = jq_find(j, sc->id, false)) != NULL && t->n > 0)
            t->n--;
        jq_finish(o, 1, false);
        return 0;
    case MP__OP_JQ_JOIN:
        return jqueue_join(srv, sc, o, a);
    default: /* QSIZE, FULL */
        return queue_call(srv, sc, o, op, a, r);
    }
}

/* A message taken for a client that died goes back, and is not its task. */
static void jqueue_take_back(sobj *o, sconn *sc, int op, int status, const mp_args *r)
{
    queue_take_back(o, sc, op, status, r);
    jq_taken *t = jq_find(o->st, sc->id, false);
    if (t && t->n > 0)
        t->n--;
}

/* A connection ended: the tasks it got and did not finish are written off. */
static void jqueue_conn_gone(sobj *o, uint64_t id)
{
    jqueue_st *j = o->st;
    jq_taken *t = jq_find(j, id, false);
    if (t == NULL)
        return;
    int64_t n = t->n;
    *t = j->taken[--j->ntaken];
    jq_finish(o, n, true);
}

/* ---- namespace ---------------------------------------------------------------- */

/*
 * A Namespace (SyncManager.Namespace) is a dict of its own kind: its
 * attributes are the keys, their values byte strings, used through the
 * mp_dict calls.  Its own kind keeps a namespace apart from a dict of the
 * same name; the state and the code are the dict's.
 */

/* ---- rlock, bounded semaphore ------------------------------------------------- */

/* An RLock is a lock (lock_call) whose owner may take it again: its depth
 * is counted here, and a dead owner's holds all go at once (lock_conn_gone).
 * A condition made without a lock gets one of these of its own, kind
 * "condlock" under the condition's name, so no user's RLock can be it. */
static int rlock_init(sobj *o, int64_t param)
{
    ((lock_st *)o->st)->recursive = true;
    return 0;
}

/* A BoundedSemaphore: a semaphore (sem_call) whose release past its initial
 * value is refused, MP_EINVAL as a local bounded one. */
static int bsem_init(sobj *o, int64_t param)
{
    ((sem_st *)o->st)->bounded = true;
    return sem_init(o, param);
}

/* ---- condition ---------------------------------------------------------------- */

static int sobj_open(server *srv, const char *kindname, const char *name, int64_t param,
                     sobj **out);

/* A client in a condition's wait: listed until notified (a notify unlinks
 * it) or until it leaves on its own (timed out, or its client gone). */
typedef struct cwaiter {
    mp__link link;             /* first */
    sconn *sc;
    bool notified;
} cwaiter;

typedef struct {
    sobj *lock;                /* its lock, bound by the first request */
    mp__link waiters;          /* oldest first, as Python's deque */
} cond_st;

static int cond_init(sobj *o, int64_t param)
{
    (void)param;
    mp__list_init(&((cond_st *)o->st)->waiters);
    return 0;
}

static bool is_lock(const sobj *o)
{
    return o->k->call == lock_call;
}

/*
 * Every condition request names the condition's lock (args 3, 4: its kind
 * and name) and comes over that lock's connection (the proxy sends it
 * there), so the lock's owner is the caller: wait and notify check that
 * the caller holds it, as Python's Condition does, and wait releases and
 * retakes it for the caller.  The first request binds the condition to
 * its lock; a request naming another is MP_EINVAL.
 */
static int cond_lock(server *srv, sobj *o, const mp_args *a, sobj **lk)
{
    cond_st *c = o->st;
    if (!mp__args_has(a, 3, MP_ARG_STR) || !mp__args_has(a, 4, MP_ARG_STR))
        return MP_EBADMSG;
    const char *kn = mp_args_str(a, 3);
    if (strcmp(kn, "lock") != 0 && strcmp(kn, "rlock") != 0 && strcmp(kn, "condlock") != 0)
        return MP_EINVAL;
    int err = sobj_open(srv, kn, mp_args_str(a, 4), 0, lk);
    if (err < 0)
        return err;
    if (!is_lock(*lk))
        return MP_EINVAL;
    if (c->lock == NULL)
        c->lock = *lk;
    return c->lock == *lk ? 0 : MP_EINVAL;
}

/* Hand a notification to the oldest waiter whose client is still there
 * (srv->lock held); false when there is none.  A waiter whose client has
 * gone is never counted as notified: it is skipped, and leaves on its own
 * within a slice. */
static bool cond_notify_one(server *srv, sobj *o)
{
    mp__link *head = &((cond_st *)o->st)->waiters;
    for (mp__link *l = head->next; l != head; l = l->next) {
        cwaiter *w = (cwaiter *)l;
        if (!client_gone(srv, w->sc)) {
            mp__list_del(l);
            w->notified = true;
            pthread_cond_broadcast(&o->cond);
            return true;
        }
    }
    return false;
}

/*
 * wait: release the caller's hold on the lock (all of an RLock's depth),
 * wait for a notify, the timeout or the client's end, then take the lock
 * back for the caller at its depth — all under srv->lock, so no notify
 * falls between the release and the wait (Python's Condition is as
 * atomic).  The reply is the status of retaking the lock (0 or
 * MP_EOWNERDEAD) and 1 notified / 0 timed out; the lock is handed over
 * with a receipt (mp__op_hands_over).  A client gone meanwhile retakes
 * nothing, and a notification it had been given goes to the next waiter.
 */
static int cond_wait(server *srv, sconn *sc, sobj *o, sobj *lk, const mp_args *a)
{
    cond_st *c = o->st;
    lock_st *l = lk->st;
    if (l->owner != sc->id)
        return MP_EPERM;
    mp__deadline d;
    mp__deadline_init(&d, arg_timeout(a, 5));
    uint32_t depth = l->depth;
    l->owner = 0;
    l->depth = 0;
    pthread_cond_signal(&lk->cond);
    cwaiter w = {.sc = sc};
    mp__list_add_tail(&c->waiters, &w.link);
    int err = 0;
    while (!w.notified && err == 0)
        err = cond_wait_until(srv, sc, o, &d);
    mp__list_del(&w.link); /* if not notified */
    if (err == MP_ETIMEDOUT || w.notified)
        err = 0;
    mp__deadline forever;
    mp__deadline_init(&forever, MP_FOREVER);
    for (bool waited = false; err == 0; waited = true) {
        if (l->owner == 0) {
            err = waited ? gone_after_wait(srv, sc, lk) : client_gone(srv, sc) ? MP_ECLOSED : 0;
            break;
        }
        err = cond_wait_until(srv, sc, lk, &forever);
    }
    if (err < 0) {
        if (w.notified)
            cond_notify_one(srv, o);
        return err;
    }
    l->owner = sc->id;
    l->depth = depth;
    return w.notified ? 1 : 0;
}

static int cond_call(server *srv, sconn *sc, sobj *o, int op, const mp_args *a, mp_args *r)
{
    sobj *lk;
    int err = cond_lock(srv, o, a, &lk);
    if (err < 0)
        return err;
    lock_st *l = lk->st;
    if (op == MP__OP_COND_NOTIFY) {
        if (l->owner != sc->id)
            return MP_EPERM;
        if (!mp__args_has(a, 6, MP_ARG_INT) || mp_args_int(a, 6) < 0)
            return MP_EBADMSG;
        for (int64_t n = mp_args_int(a, 6); n > 0 && cond_notify_one(srv, o); n--)
            ;
        return 0;
    }
    /* WAIT */
    int notified = cond_wait(srv, sc, o, lk, a);
    if (notified < 0)
        return notified;
    err = mp_args_add_int(r, notified);
    if (err < 0) { /* no reply to hand the lock over with: retaken for nothing */
        l->owner = 0;
        l->depth = 0;
        pthread_cond_signal(&lk->cond);
        if (notified)
            cond_notify_one(srv, o);
        return err;
    }
    if (l->owner_died) {
        l->owner_died = false;
        return MP_EOWNERDEAD;
    }
    return 0;
}

/* A wait whose receipt did not come: the lock it retook goes as it came
 * (lock_take_back), and a notification it had goes to the next waiter. */
static void cond_take_back(sobj *o, sconn *sc, int op, int status, const mp_args *r)
{
    cond_st *c = o->st;
    if (c->lock == NULL)
        return;
    lock_st *l = c->lock->st;
    if (l->owner == sc->id) {
        l->owner = 0;
        l->depth = 0;
        l->owner_died = status == MP_EOWNERDEAD;
        pthread_cond_signal(&c->lock->cond);
    }
    if (mp__args_has(r, 1, MP_ARG_INT) && mp_args_int(r, 1) == 1)
        cond_notify_one(sc->srv, o);
}

/* ---- barrier ------------------------------------------------------------------ */

/*
 * Python's Barrier, with generations: the waiters of a pass wait for
 * `gen` to move on, and learn how their pass ended from a small ring (as
 * the local barrier does).  A waiter whose client has gone breaks the
 * barrier at once: the others would otherwise wait for a party that never
 * comes (until the timeout, or for ever).  There is no action: an action
 * is code, which cannot run in the server (mp_manager_barrier).
 */
#define BAR_RING 16

typedef struct {
    uint32_t parties, count;
    bool broken;
    double timeout;            /* the default of a wait: MP_FOREVER none */
    uint64_t gen;
    uint8_t ended[BAR_RING];   /* GEN_PASSED or GEN_BROKEN, by gen */
} bar_st;

enum { BAR_PASSED = 1, BAR_BROKEN = 2 };

/* @param: the parties in the low 32 bits; above them the default timeout
 * in milliseconds plus one, 0 for none (mp_manager_barrier). */
static int bar_init(sobj *o, int64_t param)
{
    bar_st *b = o->st;
    b->parties = (uint32_t)(param & 0xffffffff);
    int64_t ms = param >> 32;
    b->timeout = ms <= 0 ? MP_FOREVER : (double)(ms - 1) / 1000.0;
    return b->parties < 1 || b->parties > INT32_MAX ? MP_EINVAL : 0;
}

/* End the current pass (srv->lock held) and wake its waiters. */
static void bar_end_pass(sobj *o, uint8_t how)
{
    bar_st *b = o->st;
    b->ended[b->gen % BAR_RING] = how;
    b->ended[(b->gen + 1) % BAR_RING] = 0;
    b->gen++;
    b->count = 0;
    pthread_cond_broadcast(&o->cond);
}

static int bar_wait(server *srv, sconn *sc, sobj *o, const mp_args *a, mp_args *r)
{
    bar_st *b = o->st;
    double timeout = mp__args_has(a, 3, MP_ARG_DOUBLE) ? mp_args_double(a, 3) : -1;
    if (timeout < 0 || isnan(timeout))
        timeout = b->timeout;
    if (b->broken)
        return MP_EBROKEN;
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    uint64_t g = b->gen;
    int64_t index = b->count++;
    if (b->count == b->parties) {
        bar_end_pass(o, BAR_PASSED);
        return mp_args_add_int(r, index);
    }
    int err = 0;
    while (b->gen == g && err == 0)
        err = cond_wait_until(srv, sc, o, &d);
    if (b->gen != g) /* the pass ended, whatever the wait said */
        return b->ended[g % BAR_RING] == BAR_PASSED ? mp_args_add_int(r, index) : MP_EBROKEN;
    /* timed out (Python: the barrier breaks), or this party's client has
     * gone: the others are told now, not at their own timeouts */
    b->broken = true;
    bar_end_pass(o, BAR_BROKEN);
    return err;
}

static int bar_call(server *srv, sconn *sc, sobj *o, int op, const mp_args *a, mp_args *r)
{
    bar_st *b = o->st;
    switch (op) {
    case MP__OP_BAR_WAIT:
        return bar_wait(srv, sc, o, a, r);
    case MP__OP_BAR_RESET: /* current waiters broken; the barrier whole again */
        if (b->count > 0)
            bar_end_pass(o, BAR_BROKEN);
        b->broken = false;
        return 0;
    case MP__OP_BAR_ABORT:
        b->broken = true;
        if (b->count > 0)
            bar_end_pass(o, BAR_BROKEN);
        return 0;
    case MP__OP_BAR_PARTIES:
        return mp_args_add_int(r, b->parties);
    case MP__OP_BAR_NWAITING:
        return mp_args_add_int(r, b->count);
    default: /* BROKEN */
        return mp_args_add_int(r, b->broken);
    }
}

/* ---- the kinds ---------------------------------------------------------------- */

/*
 * The operations each kind exposes are Python's BaseProxy._exposed_ (the
 * typeid's exposed list).  dispatch() checks a request against them; an
 * operation the object's kind does not expose is refused with MP_EBADMSG
 * (a malformed request: no client of ours sends one) and the object is
 * left alone.  A registered type exposes MP__OP_CALL only.
 */
static const kind kinds[] = {
    {"dict",
     {MP__OP_DICT_SET, MP__OP_DICT_GET, MP__OP_DICT_DEL, MP__OP_DICT_LEN, MP__OP_DICT_ADD,
      MP__OP_DICT_KEYS, MP__OP_DICT_BATCH, MP__OP_DICT_ITEMS, MP__OP_DICT_VALUES,
      MP__OP_DICT_COPY, MP__OP_DICT_CLEAR, MP__OP_DICT_POP, MP__OP_DICT_POPITEM,
      MP__OP_DICT_SETDEFAULT, MP__OP_DICT_UPDATE, MP__OP_DICT_CONTAINS},
     sizeof(dict_st), dict_init, dict_fini, dict_call, NULL, NULL},
    {"list",
     {MP__OP_LIST_APPEND, MP__OP_LIST_GET, MP__OP_LIST_SET, MP__OP_LIST_POP, MP__OP_LIST_LEN,
      MP__OP_LIST_INSERT, MP__OP_LIST_REMOVE, MP__OP_LIST_INDEX, MP__OP_LIST_COUNT,
      MP__OP_LIST_CONTAINS, MP__OP_LIST_EXTEND, MP__OP_LIST_REVERSE, MP__OP_LIST_SORT,
      MP__OP_LIST_GET_SLICE, MP__OP_LIST_SET_SLICE, MP__OP_LIST_DEL_SLICE, MP__OP_LIST_REPEAT},
     sizeof(list_st), NULL, list_fini, list_call, NULL, NULL},
    {"queue", {MP__OP_Q_PUT, MP__OP_Q_GET, MP__OP_Q_QSIZE, MP__OP_Q_FULL},
     sizeof(queue_st), queue_init, queue_fini, queue_call, queue_take_back, NULL},
    {"lock", {MP__OP_LOCK_ACQ, MP__OP_LOCK_REL, MP__OP_LOCK_LOCKED},
     sizeof(lock_st), NULL, NULL, lock_call, lock_take_back, lock_conn_gone},
    {"event", {MP__OP_EV_SET, MP__OP_EV_CLEAR, MP__OP_EV_ISSET, MP__OP_EV_WAIT},
     sizeof(event_st), NULL, NULL, event_call, NULL, NULL},
    {"semaphore", {MP__OP_SEM_ACQ, MP__OP_SEM_REL, MP__OP_SEM_VALUE},
     sizeof(sem_st), sem_init, NULL, sem_call, sem_take_back, NULL},
    {"value", {MP__OP_VAL_LOAD, MP__OP_VAL_STORE},
     sizeof(value_st), value_init, NULL, value_call, NULL, NULL},
    {"array", {MP__OP_ARR_LOAD, MP__OP_ARR_STORE, MP__OP_ARR_INIT},
     sizeof(array_st), array_init, array_fini, array_call, NULL, NULL},
    {"jqueue",
     {MP__OP_Q_PUT, MP__OP_Q_GET, MP__OP_Q_QSIZE, MP__OP_Q_FULL, MP__OP_JQ_TASK_DONE,
      MP__OP_JQ_JOIN},
     sizeof(jqueue_st), queue_init, jqueue_fini, jqueue_call, jqueue_take_back,
     jqueue_conn_gone},
    /* the dict's operations (keep the two lists alike) */
    {"namespace",
     {MP__OP_DICT_SET, MP__OP_DICT_GET, MP__OP_DICT_DEL, MP__OP_DICT_LEN, MP__OP_DICT_ADD,
      MP__OP_DICT_KEYS, MP__OP_DICT_BATCH, MP__OP_DICT_ITEMS, MP__OP_DICT_VALUES,
      MP__OP_DICT_COPY, MP__OP_DICT_CLEAR, MP__OP_DICT_POP, MP__OP_DICT_POPITEM,
      MP__OP_DICT_SETDEFAULT, MP__OP_DICT_UPDATE, MP__OP_DICT_CONTAINS},
     sizeof(dict_st), dict_init, dict_fini, dict_call, NULL, NULL},
    {"rlock", {MP__OP_LOCK_ACQ, MP__OP_LOCK_REL, MP__OP_LOCK_LOCKED},
     sizeof(lock_st), rlock_init, NULL, lock_call, lock_take_back, lock_conn_gone},
    {"condlock", {MP__OP_LOCK_ACQ, MP__OP_LOCK_REL, MP__OP_LOCK_LOCKED},
     sizeof(lock_st), rlock_init, NULL, lock_call, lock_take_back, lock_conn_gone},
    {"bounded_semaphore", {MP__OP_SEM_ACQ, MP__OP_SEM_REL, MP__OP_SEM_VALUE},
     sizeof(sem_st), bsem_init, NULL, sem_call, sem_take_back, NULL},
    {"condition", {MP__OP_COND_WAIT, MP__OP_COND_NOTIFY},
     sizeof(cond_st), cond_init, NULL, cond_call, cond_take_back, NULL},
    {"barrier", {MP__OP_BAR_WAIT, MP__OP_BAR_RESET, MP__OP_BAR_ABORT, MP__OP_BAR_PARTIES,
                 MP__OP_BAR_NWAITING, MP__OP_BAR_BROKEN},
     sizeof(bar_st), bar_init, NULL, bar_call, NULL, NULL},
};

static const kind custom_kind = {
    NULL, {MP__OP_CALL}, sizeof(custom_st), custom_init, custom_fini, custom_call, NULL, NULL};

/* The kind named @name: a built-in one first, then a registered type;
 * NULL for neither. */
static const kind *find_kind(const char *name)
{
    for (size_t i = 0; i < MP__ARRAY_LEN(kinds); i++)
        if (strcmp(kinds[i].name, name) == 0)
            return &kinds[i];
    return type_fn(name) ? &custom_kind : NULL;
}

static bool exposes(const kind *k, int op)
{
    for (size_t j = 0; j < MP__ARRAY_LEN(k->ops) && k->ops[j] != 0; j++)
        if (k->ops[j] == op)
            return true;
    return false;
}

/* Handle one request on @o (srv->lock held): the one check that its kind
 * exposes @op, then the kind's own call. */
static int dispatch(server *srv, sconn *sc, sobj *o, int op, const mp_args *a, mp_args *r)
{
    if (!exposes(o->k, op))
        return MP_EBADMSG;
    return o->k->call(srv, sc, o, op, a, r);
}

/* ---- the table of objects ----------------------------------------------------- */

static void sobj_free(sobj *o)
{
    if (o->st && o->k->fini)
        o->k->fini(o);
    free(o->st);
    pthread_cond_destroy(&o->cond);
    free(o->kindname);
    free(o->name);
    free(o);
}

static uint64_t obj_hash(const char *kindname, const char *name)
{
    return hash(kindname, strlen(kindname)) * 31 ^ hash(name, strlen(name));
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

/* Find or create (under srv->lock). */
static int sobj_open(server *srv, const char *kindname, const char *name, int64_t param,
                     sobj **out)
{
    uint64_t h = obj_hash(kindname, name);
    for (sobj *o = srv->ntab ? srv->tab[h % srv->ntab] : NULL; o; o = o->hnext)
        if (o->hash == h && strcmp(o->kindname, kindname) == 0 && strcmp(o->name, name) == 0) {
            *out = o;
            return 0;
        }
    const kind *k = find_kind(kindname);
    if (k == NULL)
        return MP_ENOENT;
    sobj *o = calloc(1, sizeof *o);
    if (o == NULL)
        return MP_ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&o->cond, &ca);
    pthread_condattr_destroy(&ca);
    o->k = k;
    o->kindname = strdup(kindname);
    o->name = strdup(name);
    o->st = calloc(1, k->size);
    int err = o->kindname && o->name && o->st ? 0 : MP_ENOMEM;
    if (err == 0 && k->init)
        err = k->init(o, param);
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

/* ---- serving ------------------------------------------------------------------ */

/* A client's connection ended: what it held is released (under srv->lock). */
static void release_owned(server *srv, uint64_t id)
{
    for (sobj *o = srv->objs; o; o = o->next)
        if (o->k->conn_gone)
            o->k->conn_gone(o, id);
}

/* What a reply handed over, its receipt not come: back to @o's kind. */
static void take_back(server *srv, sconn *sc, sobj *o, int op, int status, const mp_args *r)
{
    pthread_mutex_lock(&srv->lock);
    if (o->k->take_back)
        o->k->take_back(o, sc, op, status, r);
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
        if (mp__args_has(a, 0, MP_ARG_INT) && mp__args_has(a, 1, MP_ARG_STR) && mp__args_has(a, 2, MP_ARG_STR)) {
            op = (int)mp_args_int(a, 0);
            pthread_mutex_lock(&srv->lock);
            if (op == MP__OP_SHUTDOWN) {
                stop = true; /* once the reply is out */
                status = 0;
            } else {
                int64_t param = mp__args_has(a, 3, MP_ARG_INT) ? mp_args_int(a, 3) : 0;
                status = sobj_open(srv, mp_args_str(a, 1), mp_args_str(a, 2),
                                   op == MP__OP_OPEN ? param : 0, &o);
                if (status == 0 && op != MP__OP_OPEN)
                    status = dispatch(srv, sc, o, op, a, r);
            }
            pthread_mutex_unlock(&srv->lock);
        }
        mp__args_set_int(r, 0, status);
        err = mp_conn_send(sc->c, r);
        if (o != NULL && mp__op_hands_over(op, status) && (err < 0 || (err = await_receipt(sc)) != 0))
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

int mp__server_serve(mp_listener *l, int ready)
{
    server srv = {.next_id = 1, .l = l};
    pthread_mutex_init(&srv.lock, NULL);
    pthread_cond_init(&srv.idle, NULL);
    srv.wakefd = mp__sys_eventfd(0, EFD_NONBLOCK);
    if (srv.wakefd < 0)
        return srv.wakefd;
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
