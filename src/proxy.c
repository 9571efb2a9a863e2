/*
 * Proxies: the client side of the manager protocol (managers.c holds the
 * manager's lifecycle, manager_server.c the server).  This layer sits just
 * above connection.c: the remote forms of queues, locks, events,
 * semaphores, values and arrays call down into it, and so do the manager handles.
 *
 * Wire: every request and reply is an mp_args message (the reduction
 * layer's form) over a Connection with Python's framing and handshake.
 *   request: int op (proxy_ops.h), str kind, str name, then the op's arguments
 *   reply:   int status (0 or an MP_E* code), then the results
 * A reply that hands something over (mp__op_hands_over) is followed by
 * this side's receipt, so that what a client that died never received goes
 * back on the server.
 */
#include "internal.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- one request ------------------------------------------------------------------ */

/* Say whether what a reply handed over was taken (see mp__op_hands_over): an
 * empty frame takes it, one byte gives it back (and the connection goes
 * on).  MP_ECLOSED when it cannot be said: the server takes it back. */
static int send_receipt(mp_conn *c, bool taken)
{
    return mp_conn_send_bytes(c, "n", taken ? 0 : 1) < 0 ? MP_ECLOSED : 0;
}

/* One request: @req (op kind name ...) → *reply (status first); the
 * status.  A reply that hands something over (mp__op_hands_over) still awaits
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
    int64_t status = mp__args_has(*reply, 0, MP_ARG_INT) ? mp_args_int(*reply, 0) : 1;
    if (status > 0 || status < INT_MIN) {
        mp_args_free(*reply);
        *reply = NULL;
        return MP_EBADMSG;
    }
    return (int)status;
}

/* One request, and the receipt for what its reply hands over: ours once
 * the server has it. */
int mp__px_rpc(mp_conn *c, const mp_args *req, mp_args **reply)
{
    int status = rpc_unreceipted(c, req, reply);
    if (status >= 0 || status == MP_EOWNERDEAD) {
        int op = (int)mp_args_int(req, 0);
        if (mp__op_hands_over(op, status) && send_receipt(c, true) < 0) {
            mp_args_free(*reply);
            *reply = NULL;
            return MP_ECLOSED;
        }
    }
    return status;
}

/* A client's connection to a server, as every manager handle opens one. */
int mp__px_connect(const char *address, const void *key, size_t keylen, mp_conn **out)
{
    int err = mp__client(out, address, key, keylen, MP_ECLOSED);
    if (err == 0 && (err = mp__conn_buffered(*out)) < 0)
        mp_conn_close(*out);
    if (err == 0) /* a request the server would refuse is not sent */
        mp__conn_set_limits(*out, 0, MP__MANAGER_MAX_REQUEST);
    return err;
}

/* ---- requests ------------------------------------------------------------------ */

mp_args *mp__px_request(int op, const char *kind, const char *name)
{
    mp_args *a;
    return mp_args_of(&a, "iss", op, kind, name) == 0 ? a : NULL;
}

mp_args *mp__px_with_bytes(mp_args *a, const void *p, size_t n)
{
    if (a && mp_args_add_bytes(a, p, n) < 0) {
        mp_args_free(a);
        return NULL;
    }
    return a;
}

mp_args *mp__px_with_int(mp_args *a, int64_t v)
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

/* ---- proxies for local-object kinds ------------------------------------------------ */

/*
 * A proxy is the remote half of a lock, event, semaphore, queue or value
 * handle: those types carry a pointer to one, and each public call goes
 * here when it is set.  One connection per thread, opened on first use,
 * closed when the thread ends or the process forks (in the child).
 *
 * Handles on the same object in one thread share that thread's connection
 * (counted by `refs`): the server knows an owner by its connection, and a
 * thread is one owner however many handles it has — a lock taken through
 * one handle is released through another, and a manager condition, whose
 * requests go over its lock's connection (mp__px_via), finds the lock its
 * caller took through the caller's own handle.
 */
typedef struct tconn {
    mp_conn *c;
    _Atomic int refs;          /* the pconns of handles on one object */
} tconn;

typedef struct pconn {
    struct pconn *next;
    pid_t tid;
    tconn *sh;
} pconn;

static void tconn_unref(tconn *t)
{
    if (atomic_fetch_sub(&t->refs, 1) == 1) {
        mp_conn_close(t->c);
        free(t);
    }
}

/* Drop a handle's use of its thread's connection: closed with the last. */
static void pconn_drop(pconn *c)
{
    tconn_unref(c->sh);
    free(c);
}

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

/* This thread's id, the key of its connections.  Cached as synchronize.c's
 * mp__tid is, but here: this layer stands below the primitives.  The
 * forking thread's copy is reset in the child (proxies_child). */
static __thread pid_t cached_tid __attribute__((tls_model("initial-exec")));

static pid_t proxy_tid(void)
{
    if (cached_tid == 0)
        cached_tid = (pid_t)syscall(SYS_gettid);
    return cached_tid;
}

static void thread_ends(void *unused)
{
    (void)unused;
    pid_t tid = proxy_tid();
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
        pconn_drop(c);
    }
}

/*
 * Forks (process.c's hook table, slot MP__HOOK_PROXIES, registered when the
 * first proxy is made).  The child's threads are not the parent's: it drops
 * the copies it has of the parent's connections (its own threads connect
 * afresh, as Python's proxies do after a fork).  Kept, a copy would hold a
 * connection open after the parent's thread ended or the parent died, and
 * the server would never release what that one held.  The lists are
 * locked across the fork, so the child finds them whole.
 */
static void proxies_prepare(void)
{
    for (mp__proxy *px = live_proxies; px; px = px->next_live)
        pthread_mutex_lock(&px->lock);
}

static void proxies_parent(void)
{
    for (mp__proxy *px = live_proxies; px; px = px->next_live)
        pthread_mutex_unlock(&px->lock);
}

MP__CHILD_TEXT static void proxies_child(void)
{
    cached_tid = 0; /* the forking thread has a new id in the child */
    for (mp__proxy *px = live_proxies; px; px = px->next_live) {
        px->lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
        while (px->conns) { /* closes this process's descriptor only */
            pconn *c = px->conns;
            px->conns = c->next;
            pconn_drop(c);
        }
    }
}

static const mp__hooks proxies_hooks = {
    .slot = MP__HOOK_PROXIES,
    .held = &live_lock,
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
        pconn_drop(c);
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
    mp__hooks_add(&proxies_hooks);
    pthread_mutex_lock(&live_lock);
    px->next_live = live_proxies;
    live_proxies = px;
    pthread_mutex_unlock(&live_lock);
    *out = px;
    return 0;
}

/* The connection of this thread that another handle on @px's object has
 * (see tconn), with a reference taken; NULL for none. */
static tconn *sibling_conn(mp__proxy *px, pid_t tid)
{
    tconn *t = NULL;
    pthread_mutex_lock(&live_lock);
    for (mp__proxy *q = live_proxies; q && t == NULL; q = q->next_live) {
        if (q == px || strcmp(q->name, px->name) != 0 || strcmp(q->kind, px->kind) != 0 ||
            strcmp(q->address, px->address) != 0 || q->keylen != px->keylen ||
            memcmp(q->key, px->key, px->keylen) != 0)
            continue;
        pthread_mutex_lock(&q->lock);
        for (pconn *c = q->conns; c; c = c->next)
            if (c->tid == tid) {
                t = c->sh;
                atomic_fetch_add(&t->refs, 1);
                break;
            }
        pthread_mutex_unlock(&q->lock);
    }
    pthread_mutex_unlock(&live_lock);
    return t;
}

/* Enter @pc, this thread's (@tid) use of connection @sh, in @px's list. */
static void pconn_add(mp__proxy *px, pconn *pc, pid_t tid, tconn *sh)
{
    pc->tid = tid;
    pc->sh = sh;
    close_at_thread_end();
    pthread_mutex_lock(&px->lock);
    pc->next = px->conns;
    px->conns = pc;
    pthread_mutex_unlock(&px->lock);
}

/* This thread's connection, opened (and the object opened) on first use,
 * or shared with another handle on the same object. */
static int proxy_conn(mp__proxy *px, mp_conn **out)
{
    pid_t tid = proxy_tid();
    pthread_mutex_lock(&px->lock);
    for (pconn *c = px->conns; c; c = c->next)
        if (c->tid == tid) {
            *out = c->sh->c;
            pthread_mutex_unlock(&px->lock);
            return 0;
        }
    pthread_mutex_unlock(&px->lock);
    tconn *sh = sibling_conn(px, tid);
    if (sh != NULL) {
        pconn *pc = calloc(1, sizeof *pc);
        if (pc == NULL) {
            tconn_unref(sh);
            return MP_ENOMEM;
        }
        pconn_add(px, pc, tid, sh);
        *out = sh->c;
        return 0;
    }
    mp_conn *c;
    int err = mp__px_connect(px->address, px->key, px->keylen, &c);
    if (err == -ECONNREFUSED || err == -ENOENT)
        err = MP_ECLOSED; /* the server this proxy came from has gone */
    if (err < 0)
        return err;
    mp_args *req, *rep = NULL;
    err = mp_args_of(&req, "issl", MP__OP_OPEN, px->kind, px->name, px->param);
    if (err == 0)
        err = mp__px_rpc(c, req, &rep);
    mp_args_free(req);
    mp_args_free(rep);
    pconn *pc = err == 0 ? calloc(1, sizeof *pc) : NULL;
    sh = pc ? calloc(1, sizeof *sh) : NULL;
    if (sh == NULL) {
        free(pc);
        mp_conn_close(c);
        return err < 0 ? err : MP_ENOMEM;
    }
    sh->c = c;
    sh->refs = 1;
    pconn_add(px, pc, tid, sh);
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
        err = conn ? rpc_unreceipted(c, req, rep) : mp__px_rpc(c, req, rep);
    if (conn)
        *conn = c;
    mp_args_free(req);
    return err;
}

static int proxy_rpc(mp__proxy *px, mp_args *req, mp_args **rep)
{
    return proxy_rpc_on(px, req, rep, NULL);
}

int mp__px_simple(mp__proxy *px, int op, double timeout, int64_t *num)
{
    mp_args *req = mp__px_request(op, px->kind, px->name), *rep = NULL;
    if (!isnan(timeout))
        req = with_double(req, timeout);
    int err = proxy_rpc(px, req, &rep);
    if (err == 0 && num) { /* a reply without its number is no count of 0 */
        if (mp__args_has(rep, 1, MP_ARG_INT))
            *num = mp_args_int(rep, 1);
        else
            err = MP_EBADMSG;
    }
    mp_args_free(rep);
    return err;
}

/*
 * A request on @px sent over @via's connection for this thread, naming
 * @via after @px: a manager condition's requests go over its lock's
 * connection, so that the server sees the lock's owner in the caller
 * (ownership is per connection).  The arguments are the timeout and @n;
 * the reply's number into *@num (not NULL) when it succeeded, the lock
 * retaken included (MP_EOWNERDEAD).
 */
int mp__px_via(mp__proxy *via, mp__proxy *px, int op, double timeout, int64_t n, int64_t *num)
{
    mp_args *req = mp__px_request(op, px->kind, px->name), *rep = NULL;
    if (req && (mp_args_add_str(req, via->kind) < 0 || mp_args_add_str(req, via->name) < 0)) {
        mp_args_free(req);
        req = NULL;
    }
    req = mp__px_with_int(with_double(req, isnan(timeout) ? MP_FOREVER : timeout), n);
    int err = proxy_rpc(via, req, &rep);
    if ((err == 0 || err == MP_EOWNERDEAD) && num) {
        if (mp__args_has(rep, 1, MP_ARG_INT))
            *num = mp_args_int(rep, 1);
        else
            err = MP_EBADMSG;
    }
    mp_args_free(rep);
    return err;
}

/* The parameter @px opened its object with. */
int64_t mp__px_param(const mp__proxy *px)
{
    return px->param;
}

const char *mp__px_address(const mp__proxy *px)
{
    return px->address;
}

/* Whether @a and @b are proxies on the same server. */
bool mp__px_same_server(const mp__proxy *a, const mp__proxy *b)
{
    return strcmp(a->address, b->address) == 0;
}

int mp__px_bytes(mp__proxy *px, int op, const void *p, size_t n, double timeout, mp_buf *out,
                 void *into, size_t cap, size_t *len)
{
    /* into a caller's buffer (even none: cap 0), rather than an mp_buf */
    bool bounded = out == NULL && len != NULL;
    mp_args *req = mp__px_request(op, px->kind, px->name), *rep = NULL;
    if (p != NULL || op == MP__OP_Q_PUT || op == MP__OP_VAL_STORE)
        req = mp__px_with_bytes(req, p, n);
    if (!isnan(timeout) || bounded)
        req = with_double(req, isnan(timeout) ? MP_FOREVER : timeout);
    if (bounded) /* a longer message stays queued on the server */
        req = mp__px_with_int(req, cap > INT64_MAX ? INT64_MAX : (int64_t)cap);
    /* a message is taken once it is in the caller's memory: a kill before
     * the receipt leaves it on the server, as a local get before its
     * commit leaves it in the queue */
    mp_conn *c = NULL;
    int err = proxy_rpc_on(px, req, &rep, op == MP__OP_Q_GET ? &c : NULL);
    if (err == MP_EMSGSIZE && bounded && mp__args_has(rep, 1, MP_ARG_INT))
        *len = (size_t)mp_args_int(rep, 1);
    if (err == 0 && (out || bounded)) {
        size_t k = 0;
        const void *b = mp__args_has(rep, 1, MP_ARG_BYTES) ? mp_args_bytes(rep, 1, &k) : NULL;
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
    if (op == MP__OP_Q_GET && mp__op_hands_over(op, rep ? (int)mp_args_int(rep, 0) : -1)) {
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
int mp__px_put_server(mp_buf *out, const char *address, const void *key, size_t keylen,
                      mp__channel ch)
{
    int err = mp__put_str(out, address);
    if (err == 0)
        err = mp__put_u8(out, ch == MP__WIRE_CHILD);
    if (err == 0 && ch == MP__WIRE_CHILD)
        err = mp__put_blob(out, key, keylen);
    return err;
}

int mp__px_get_server(mp__reader *r, mp__channel ch, const char **address, const void **key,
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
    int err = mp__px_put_server(out, px->address, px->key, px->keylen, ch);
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
    int err = mp__px_get_server(r, ch, &address, &key, &keylen);
    const char *kind = mp__get_str(r), *name = mp__get_str(r);
    int64_t param = (int64_t)mp__get_u64(r);
    if (err < 0 || r->err)
        return MP_EBADMSG;
    return proxy_make(address, key, keylen, kind, name, param, out);
}

int mp__px_reduce_either(const mp__proxy *px, mp_buf *out, mp__channel ch)
{
    int err = mp__put_u8(out, px != NULL);
    return err == 0 && px ? mp__px_reduce(px, out, ch) : err;
}

int mp__px_rebuild_either(mp__reader *r, mp__channel ch, bool served, mp__proxy **out)
{
    *out = NULL;
    uint8_t remote = mp__get_u8(r);
    if (r->err || remote > (served ? 1 : 0))
        return MP_EBADMSG;
    return remote ? mp__px_rebuild(r, ch, out) : 0;
}

/* A proxy for @kind @name on @via's server, the object opened now over
 * @via's connection (a condition's, which goes over its lock's: no
 * connection of its own). */
int mp__px_open_via(mp__proxy *via, const char *kind, const char *name, mp__proxy **out)
{
    if (name == NULL)
        return MP_EINVAL;
    int err = proxy_make(via->address, via->key, via->keylen, kind, name, 0, out);
    if (err == 0 && (err = mp__px_via(via, *out, MP__OP_OPEN, NAN, 0, NULL)) < 0) {
        proxy_free(*out);
        *out = NULL;
    }
    return err;
}

/* Make a proxy for @kind @name on the server at @address; the object is
 * opened now. */
int mp__px_open(const char *address, const void *key, size_t keylen, const char *kind,
                const char *name, int64_t param, mp__proxy **out)
{
    if (address == NULL || name == NULL)
        return MP_EINVAL;
    int err = proxy_make(address, key, keylen, kind, name, param, out);
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

/* A request of @op on @px's object, for the ops whose arguments fit neither
 * mp__px_simple nor mp__px_bytes (the caller appends them with
 * mp__px_with_*). */
mp_args *mp__px_op_request(const mp__proxy *px, int op)
{
    return mp__px_request(op, px->kind, px->name);
}

/* Run @req (consumed; NULL: MP_ENOMEM) on this thread's connection: the
 * status, and the reply in *rep (the caller frees it).  What a reply hands
 * over is receipted at once (mp__px_rpc): for a get, use mp__px_bytes. */
int mp__px_call(mp__proxy *px, mp_args *req, mp_args **rep)
{
    return proxy_rpc(px, req, rep);
}
