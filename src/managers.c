/*
 * Managers: a server holding named shared objects, used by clients through
 * authenticated connections — on this machine or across the network.
 *
 * This file is the manager's lifecycle (start a server process, connect,
 * shut down, register types) and the client of its dicts and lists; the
 * server is manager_server.c, the client protocol and the proxies of
 * queues, locks, events, semaphores and values are proxy.c.
 */
#include "internal.h"

#include <endian.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Registered types live with the server (manager_server.c), which serves
 * them; a server started here gets them in its arguments. */
int mp_manager_register(const char *typeid, mp_method_fn fn)
{
    return mp__server_register(typeid, fn);
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
    err = mp__server_serve(l, -1);
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
static int manager_conn(mp_manager *m)
{
    mp__init(); /* mp__me.pid follows forks */
    if (m->conn != NULL && m->conn_pid == mp__me.pid)
        return 0;
    mp_conn_close(m->conn);
    m->conn = NULL;
    int err = mp__px_connect(m->address, m->key, m->keylen, &m->conn);
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
    err = mp__server_serve(l, mp__sys_dup(mp_args_fd(a, 2)));
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
    if (err == 0)
        err = mp__server_types_add(a);
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
    int err = mp_args_of(&req, "iss", MP__OP_SHUTDOWN, "", "");
    if (err == 0) {
        pthread_mutex_lock(&m->lock);
        err = manager_conn(m);
        if (err == 0)
            err = mp__px_rpc(m->conn, req, &rep);
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
        err = mp__px_rpc(m->conn, req, rep);
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
    bool ns;                   /* a namespace: a dict of its own kind */
};
struct mp_list {
    mp_manager *m;
    char *name;
    bool ns;                   /* never: as struct mp_dict, which the code shares */
};

static int named_open(mp_manager *m, const char *kind, const char *name, void **out)
{
    if (m == NULL || name == NULL || out == NULL)
        return MP_EINVAL;
    *out = NULL;
    mp_args *req, *rep = NULL;
    int err = mp_args_of(&req, "issl", MP__OP_OPEN, kind, name, (int64_t)0);
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
    h->ns = strcmp(kind, "namespace") == 0;
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
    if (err == 0 && bytes && mp__args_has(rep, 1, MP_ARG_BYTES)) {
        size_t n;
        const void *p = mp_args_bytes(rep, 1, &n);
        bytes->len = 0;
        err = mp_buf_append(bytes, p, n);
    } else if (err == 0 && num && mp__args_has(rep, 1, MP_ARG_INT)) {
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

#define DICT_REQ(op) mp__px_request(op, d->ns ? "namespace" : "dict", d->name)
#define LIST_REQ(op) mp__px_request(op, "list", l->name)

int mp_dict_set(mp_dict *d, const void *k, size_t kl, const void *v, size_t vl)
{
    if (d == NULL || (k == NULL && kl) || (v == NULL && vl))
        return MP_EINVAL;
    return named_rpc(d->m, "dict", d->name, MP__OP_DICT_SET, NULL, NULL,
                     mp__px_with_bytes(mp__px_with_bytes(DICT_REQ(MP__OP_DICT_SET), k, kl), v, vl));
}

int mp_dict_get(mp_dict *d, const void *k, size_t kl, mp_buf *v)
{
    if (d == NULL || (k == NULL && kl) || v == NULL)
        return MP_EINVAL;
    return named_rpc(d->m, "dict", d->name, MP__OP_DICT_GET, v, NULL,
                     mp__px_with_bytes(DICT_REQ(MP__OP_DICT_GET), k, kl));
}

int mp_dict_del(mp_dict *d, const void *k, size_t kl)
{
    if (d == NULL || (k == NULL && kl))
        return MP_EINVAL;
    return named_rpc(d->m, "dict", d->name, MP__OP_DICT_DEL, NULL, NULL,
                     mp__px_with_bytes(DICT_REQ(MP__OP_DICT_DEL), k, kl));
}

int mp_dict_len(mp_dict *d, size_t *out)
{
    int64_t n = 0;
    if (d == NULL || out == NULL)
        return MP_EINVAL;
    int err = named_rpc(d->m, "dict", d->name, MP__OP_DICT_LEN, NULL, &n, DICT_REQ(MP__OP_DICT_LEN));
    *out = (size_t)n;
    return err;
}

int mp_dict_add(mp_dict *d, const void *k, size_t kl, int64_t delta, int64_t *out)
{
    int64_t n = 0;
    if (d == NULL || (k == NULL && kl))
        return MP_EINVAL;
    int err = named_rpc(d->m, "dict", d->name, MP__OP_DICT_ADD, NULL, &n,
                        mp__px_with_int(mp__px_with_bytes(DICT_REQ(MP__OP_DICT_ADD), k, kl), delta));
    if (out)
        *out = n;
    return err;
}

/*
 * Many byte strings in one buffer (keys, values, items, update's pairs, a
 * list's extend and slices): per string a u32 length and the bytes.  The
 * API's form has the lengths in native order, the wire's in little-endian
 * (manager_server.c), so that a server and a client of either byte order
 * agree; these two convert, checking the framing on the way.
 */

/* @b, as it came from the server, into the native form in place. */
static int frames_native(mp_buf *b)
{
    size_t off = 0;
    while (off < b->len) {
        uint32_t n;
        if (b->len - off < sizeof n)
            return MP_EBADMSG;
        memcpy(&n, (char *)b->data + off, sizeof n);
        n = le32toh(n);
        memcpy((char *)b->data + off, &n, sizeof n);
        off += sizeof n;
        if (n > b->len - off)
            return MP_EBADMSG;
        off += n;
    }
    return 0;
}

/* The caller's @n bytes at @p into the wire form @out: MP_EINVAL when
 * they are not whole strings, or (@pairs) not whole pairs. */
static int frames_wire(const void *p, size_t n, bool pairs, mp_buf *out)
{
    if (p == NULL && n)
        return MP_EINVAL;
    int err = mp_buf_append(out, p, n);
    size_t off = 0, count = 0;
    while (err == 0 && off < out->len) {
        uint32_t len;
        if (out->len - off < sizeof len)
            return MP_EINVAL;
        memcpy(&len, (char *)out->data + off, sizeof len);
        if (len > out->len - off - sizeof len)
            return MP_EINVAL;
        uint32_t le = htole32(len);
        memcpy((char *)out->data + off, &le, sizeof le);
        off += sizeof len + len;
        count++;
    }
    return err == 0 && pairs && count % 2 ? MP_EINVAL : err;
}

/* A request whose reply is framed strings into @out. */
static int framed_rpc(mp_manager *m, mp_buf *out, mp_args *req)
{
    int err = named_rpc(m, NULL, NULL, 0, out, NULL, req);
    if (err == 0 && (err = frames_native(out)) < 0)
        out->len = 0;
    return err;
}

int mp_dict_keys(mp_dict *d, mp_buf *out)
{
    if (d == NULL || out == NULL)
        return MP_EINVAL;
    return framed_rpc(d->m, out, DICT_REQ(MP__OP_DICT_KEYS));
}

int mp_dict_values(mp_dict *d, mp_buf *out)
{
    if (d == NULL || out == NULL)
        return MP_EINVAL;
    return framed_rpc(d->m, out, DICT_REQ(MP__OP_DICT_VALUES));
}

int mp_dict_items(mp_dict *d, mp_buf *out)
{
    if (d == NULL || out == NULL)
        return MP_EINVAL;
    return framed_rpc(d->m, out, DICT_REQ(MP__OP_DICT_ITEMS));
}

int mp_dict_copy(mp_dict *d, const char *name)
{
    if (d == NULL || name == NULL)
        return MP_EINVAL;
    mp_args *req = DICT_REQ(MP__OP_DICT_COPY);
    if (req && mp_args_add_str(req, name) < 0) {
        mp_args_free(req);
        req = NULL;
    }
    return named_rpc(d->m, NULL, NULL, 0, NULL, NULL, req);
}

int mp_dict_clear(mp_dict *d)
{
    if (d == NULL)
        return MP_EINVAL;
    return named_rpc(d->m, NULL, NULL, 0, NULL, NULL, DICT_REQ(MP__OP_DICT_CLEAR));
}

int mp_dict_contains(mp_dict *d, const void *k, size_t kl, bool *out)
{
    int64_t n = 0;
    if (d == NULL || (k == NULL && kl) || out == NULL)
        return MP_EINVAL;
    int err = named_rpc(d->m, NULL, NULL, 0, NULL, &n,
                        mp__px_with_bytes(DICT_REQ(MP__OP_DICT_CONTAINS), k, kl));
    *out = err == 0 && n != 0;
    return err;
}

int mp_dict_get_default(mp_dict *d, const void *k, size_t kl, const void *dflt, size_t dl,
                        mp_buf *v)
{
    if (d == NULL || (dflt == NULL && dl) || v == NULL)
        return MP_EINVAL;
    int err = mp_dict_get(d, k, kl, v);
    if (err == MP_ENOENT) {
        v->len = 0;
        err = mp_buf_append(v, dflt, dl);
    }
    return err;
}

int mp_dict_pop(mp_dict *d, const void *k, size_t kl, const void *dflt, size_t dl,
                bool has_default, mp_buf *v)
{
    if (d == NULL || (k == NULL && kl) || (has_default && dflt == NULL && dl))
        return MP_EINVAL;
    mp_args *req = mp__px_with_int(mp__px_with_bytes(DICT_REQ(MP__OP_DICT_POP), k, kl),
                                   has_default);
    if (has_default)
        req = mp__px_with_bytes(req, dflt, dl);
    mp_buf tmp = MP_BUF_INIT;
    int err = named_rpc(d->m, NULL, NULL, 0, v ? v : &tmp, NULL, req);
    mp_buf_free(&tmp);
    return err;
}

int mp_dict_popitem(mp_dict *d, mp_buf *key, mp_buf *value)
{
    if (d == NULL)
        return MP_EINVAL;
    mp_args *req = DICT_REQ(MP__OP_DICT_POPITEM), *rep = NULL;
    if (req == NULL)
        return MP_ENOMEM;
    int err = m_call(d->m, req, &rep);
    if (err == 0 && (!mp__args_has(rep, 1, MP_ARG_BYTES) || !mp__args_has(rep, 2, MP_ARG_BYTES)))
        err = MP_EBADMSG;
    mp_buf *outs[2] = {key, value};
    for (size_t i = 0; i < 2 && err == 0; i++)
        if (outs[i]) {
            size_t n;
            const void *p = mp_args_bytes(rep, i + 1, &n);
            outs[i]->len = 0;
            err = mp_buf_append(outs[i], p, n);
        }
    mp_args_free(rep);
    return err;
}

int mp_dict_setdefault(mp_dict *d, const void *k, size_t kl, const void *dflt, size_t dl,
                       mp_buf *v)
{
    if (d == NULL || (k == NULL && kl) || (dflt == NULL && dl))
        return MP_EINVAL;
    mp_buf tmp = MP_BUF_INIT;
    int err = named_rpc(d->m, NULL, NULL, 0, v ? v : &tmp, NULL,
                        mp__px_with_bytes(mp__px_with_bytes(DICT_REQ(MP__OP_DICT_SETDEFAULT), k, kl),
                                          dflt, dl));
    mp_buf_free(&tmp);
    return err;
}

int mp_dict_update(mp_dict *d, const void *pairs, size_t len)
{
    if (d == NULL)
        return MP_EINVAL;
    mp_buf w = MP_BUF_INIT;
    int err = frames_wire(pairs, len, true, &w);
    if (err == 0 && len > 0)
        err = named_rpc(d->m, NULL, NULL, 0, NULL, NULL,
                        mp__px_with_bytes(DICT_REQ(MP__OP_DICT_UPDATE), w.data, w.len));
    mp_buf_free(&w);
    return err;
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
        err = named_rpc(d->m, "dict", d->name, MP__OP_DICT_BATCH, &rep, NULL,
                        mp__px_with_bytes(DICT_REQ(MP__OP_DICT_BATCH), req.data, req.len));
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
                     mp__px_with_bytes(LIST_REQ(MP__OP_LIST_APPEND), v, vl));
}

int mp_list_get(mp_list *l, int64_t index, mp_buf *v)
{
    if (l == NULL || v == NULL)
        return MP_EINVAL;
    return named_rpc(l->m, "list", l->name, 0, v, NULL, mp__px_with_int(LIST_REQ(MP__OP_LIST_GET), index));
}

int mp_list_set(mp_list *l, int64_t index, const void *v, size_t vl)
{
    if (l == NULL || (v == NULL && vl))
        return MP_EINVAL;
    return named_rpc(l->m, "list", l->name, 0, NULL, NULL,
                     mp__px_with_bytes(mp__px_with_int(LIST_REQ(MP__OP_LIST_SET), index), v, vl));
}

int mp_list_pop(mp_list *l, int64_t index, mp_buf *v)
{
    mp_buf tmp = MP_BUF_INIT;
    if (l == NULL)
        return MP_EINVAL;
    int err = named_rpc(l->m, "list", l->name, 0, v ? v : &tmp, NULL,
                        mp__px_with_int(LIST_REQ(MP__OP_LIST_POP), index));
    mp_buf_free(&tmp);
    return err;
}

int mp_list_len(mp_list *l, size_t *out)
{
    int64_t n = 0;
    if (l == NULL || out == NULL)
        return MP_EINVAL;
    int err = named_rpc(l->m, "list", l->name, 0, NULL, &n, LIST_REQ(MP__OP_LIST_LEN));
    *out = (size_t)n;
    return err;
}

int mp_list_insert(mp_list *l, int64_t index, const void *v, size_t vl)
{
    if (l == NULL || (v == NULL && vl))
        return MP_EINVAL;
    return named_rpc(l->m, NULL, NULL, 0, NULL, NULL,
                     mp__px_with_bytes(mp__px_with_int(LIST_REQ(MP__OP_LIST_INSERT), index), v, vl));
}

int mp_list_remove(mp_list *l, const void *v, size_t vl)
{
    if (l == NULL || (v == NULL && vl))
        return MP_EINVAL;
    return named_rpc(l->m, NULL, NULL, 0, NULL, NULL,
                     mp__px_with_bytes(LIST_REQ(MP__OP_LIST_REMOVE), v, vl));
}

/* A request about one value whose reply is a count or an index. */
/* index, count and contains: one request each.  The answer goes to *out, a
 * size_t (index, count) or a bool (contains): 0 or false on failure. */
static int list_find(mp_list *l, int op, const void *v, size_t vl, int64_t start, int64_t stop,
                     void *out)
{
    if (l == NULL || (v == NULL && vl) || out == NULL)
        return MP_EINVAL;
    mp_args *req = mp__px_with_bytes(LIST_REQ(op), v, vl);
    if (op == MP__OP_LIST_INDEX)
        req = mp__px_with_int(mp__px_with_int(req, start), stop);
    int64_t n = 0;
    int err = named_rpc(l->m, NULL, NULL, 0, NULL, &n, req);
    if (err == 0 && n < 0)
        err = MP_EBADMSG;
    if (op == MP__OP_LIST_CONTAINS)
        *(bool *)out = err == 0 && n != 0;
    else
        *(size_t *)out = err == 0 ? (size_t)n : 0;
    return err;
}

int mp_list_index(mp_list *l, const void *v, size_t vl, int64_t start, int64_t stop, size_t *out)
{
    return list_find(l, MP__OP_LIST_INDEX, v, vl, start, stop, out);
}

int mp_list_count(mp_list *l, const void *v, size_t vl, size_t *out)
{
    return list_find(l, MP__OP_LIST_COUNT, v, vl, 0, 0, out);
}

int mp_list_contains(mp_list *l, const void *v, size_t vl, bool *out)
{
    return list_find(l, MP__OP_LIST_CONTAINS, v, vl, 0, 0, out);
}

/* A request carrying framed values (extend, set_slice). */
static int list_framed_in(mp_list *l, mp_args *req, const void *values, size_t len)
{
    mp_buf w = MP_BUF_INIT;
    int err = frames_wire(values, len, false, &w);
    if (err == 0)
        err = named_rpc(l->m, NULL, NULL, 0, NULL, NULL, mp__px_with_bytes(req, w.data, w.len));
    else
        mp_args_free(req);
    mp_buf_free(&w);
    return err;
}

int mp_list_extend(mp_list *l, const void *values, size_t len)
{
    if (l == NULL)
        return MP_EINVAL;
    return list_framed_in(l, LIST_REQ(MP__OP_LIST_EXTEND), values, len);
}

int mp_list_reverse(mp_list *l)
{
    if (l == NULL)
        return MP_EINVAL;
    return named_rpc(l->m, NULL, NULL, 0, NULL, NULL, LIST_REQ(MP__OP_LIST_REVERSE));
}

int mp_list_sort(mp_list *l, bool reverse)
{
    if (l == NULL)
        return MP_EINVAL;
    return named_rpc(l->m, NULL, NULL, 0, NULL, NULL,
                     mp__px_with_int(LIST_REQ(MP__OP_LIST_SORT), reverse));
}

static mp_args *slice_req(mp_list *l, int op, int64_t start, int64_t stop, int64_t step)
{
    return mp__px_with_int(mp__px_with_int(mp__px_with_int(LIST_REQ(op), start), stop), step);
}

int mp_list_get_slice(mp_list *l, int64_t start, int64_t stop, int64_t step, mp_buf *out)
{
    if (l == NULL || out == NULL || step == 0)
        return MP_EINVAL;
    return framed_rpc(l->m, out, slice_req(l, MP__OP_LIST_GET_SLICE, start, stop, step));
}

int mp_list_set_slice(mp_list *l, int64_t start, int64_t stop, int64_t step, const void *values,
                      size_t len)
{
    if (l == NULL || step == 0)
        return MP_EINVAL;
    return list_framed_in(l, slice_req(l, MP__OP_LIST_SET_SLICE, start, stop, step), values, len);
}

int mp_list_del_slice(mp_list *l, int64_t start, int64_t stop, int64_t step)
{
    if (l == NULL || step == 0)
        return MP_EINVAL;
    return named_rpc(l->m, NULL, NULL, 0, NULL, NULL,
                     slice_req(l, MP__OP_LIST_DEL_SLICE, start, stop, step));
}

int mp_list_repeat(mp_list *l, int64_t n)
{
    if (l == NULL)
        return MP_EINVAL;
    return named_rpc(l->m, NULL, NULL, 0, NULL, NULL,
                     mp__px_with_int(LIST_REQ(MP__OP_LIST_REPEAT), n));
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
    if (err == 0 && (req = mp__px_request(MP__OP_CALL, typeid, name)) == NULL)
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
    err = named_rpc(m, typeid, name, MP__OP_CALL, out ? out : &tmp, NULL, req);
    mp_buf_free(&tmp);
    return err;
}

/* ---- managers, dicts and lists in mp_args ---------------------------------------- */

/* A manager handle travels as where its server is (and its key, into a
 * child); the receiver's handle connects on its first request. */
static int manager_reduce(void *obj, mp_buf *out, mp__fdvec *fds, mp__channel ch)
{
    const mp_manager *m = obj;
    return mp__px_put_server(out, m->address, m->key, m->keylen, ch);
}

static int manager_rebuild_form(mp__reader *r, mp__channel ch, mp_manager **out)
{
    const char *address;
    const void *key;
    size_t keylen;
    int err = mp__px_get_server(r, ch, &address, &key, &keylen);
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

/* Freeing a handle that came in mp_args only unrefs it: a copy never
 * stops the server. */
MP__KIND(mp_manager, mp__manager_objtype, mp_args_add_manager, mp_args_manager,
         "manager", 'M', MP__TAG_MANAGER,
         manager_reduce, manager_rebuild, manager_dup, manager_unref);

/* A dict or list: its manager's form, its name, and whether it is a
 * namespace. */
static int named_reduce(void *obj, mp_buf *out, mp__fdvec *fds, mp__channel ch)
{
    const struct mp_dict *h = obj;
    int err = manager_reduce(h->m, out, fds, ch);
    if (err == 0)
        err = mp__put_str(out, h->name);
    return err < 0 ? err : mp__put_u8(out, h->ns);
}

static int named_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, void **obj)
{
    mp_manager *m;
    int err = manager_rebuild_form(r, ch, &m);
    if (err < 0)
        return err;
    const char *name = mp__get_str(r);
    uint8_t ns = mp__get_u8(r);
    if (r->err || ns > 1)
        name = NULL;
    struct mp_dict *h = name ? calloc(1, sizeof *h) : NULL;
    if (h == NULL || (h->name = strdup(name)) == NULL) {
        free(h);
        manager_unref(m);
        return name ? MP_ENOMEM : MP_EBADMSG;
    }
    h->m = m;
    h->ns = ns;
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
    h->ns = src->ns;
    *out = h;
    return 0;
}

MP__KIND(mp_dict, mp__dict_objtype, mp_args_add_dict, mp_args_dict,
         "dict", 'D', MP__TAG_DICT,
         named_reduce, named_rebuild, named_dup, named_free);

MP__KIND(mp_list, mp__list_objtype, mp_args_add_list, mp_args_list,
         "list", 'T', MP__TAG_LIST,
         named_reduce, named_rebuild, named_dup, named_free);

/* ---- the public proxy constructors ------------------------------------------------ */

static int open_proxy(mp_manager *m, const char *kind, const char *name, int64_t param,
                      int (*wrap)(mp__proxy *, void **), void **out)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    mp__proxy *px;
    int err = m ? mp__px_open(m->address, m->key, m->keylen, kind, name, param, &px) : MP_EINVAL;
    if (err == 0 && (err = wrap(px, out)) < 0)
        mp__px_free(px);
    return err;
}

int mp_manager_queue(mp_manager *m, const char *name, size_t maxsize, mp_queue **out)
{
    if (maxsize > INT64_MAX)
        return MP_EINVAL;
    return open_proxy(m, "queue", name, (int64_t)maxsize, mp__queue_from_proxy, (void **)out);
}

int mp_manager_lock(mp_manager *m, const char *name, mp_lock **out)
{
    return open_proxy(m, "lock", name, 0, mp__lock_from_proxy, (void **)out);
}

int mp_manager_event(mp_manager *m, const char *name, mp_event **out)
{
    return open_proxy(m, "event", name, 0, mp__event_from_proxy, (void **)out);
}

int mp_manager_semaphore(mp_manager *m, const char *name, unsigned value, mp_semaphore **out)
{
    if (value > INT32_MAX)
        return MP_EINVAL;
    return open_proxy(m, "semaphore", name, value, mp__semaphore_from_proxy, (void **)out);
}

int mp_manager_value(mp_manager *m, const char *name, mp_type type, mp_value **out)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    if (mp_type_size(type) == 0)
        return MP_EINVAL;
    mp__proxy *px;
    int err = m ? mp__px_open(m->address, m->key, m->keylen, "value", name, (int64_t)type, &px)
              : MP_EINVAL;
    if (err == 0 && (err = mp__value_from_proxy(px, type, out)) < 0)
        mp__px_free(px);
    return err;
}

/* ---- array, joinable queue, namespace -------------------------------------------- */

int mp_manager_array(mp_manager *m, const char *name, mp_type type, size_t n, const void *init,
                     mp_array **out)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    size_t es = mp_type_size(type);
    if (m == NULL || name == NULL || es == 0 || n > MP__MANAGER_MAX_REQUEST / es)
        return MP_EINVAL;
    /* the shape in the open parameter: every connection opens the same */
    int64_t param = (int64_t)((uint64_t)n << 8 | (uint64_t)type);
    mp__proxy *px;
    int err = mp__px_open(m->address, m->key, m->keylen, "array", name, param, &px);
    if (err < 0)
        return err;
    /* found by name, it must have this shape; @init goes in if nothing has
     * been stored yet */
    mp_args *req = mp__px_with_int(mp__px_op_request(px, MP__OP_ARR_INIT), param), *rep;
    if (init != NULL)
        req = mp__px_with_bytes(req, init, n * es);
    err = mp__px_call(px, req, &rep);
    mp_args_free(rep);
    if (err == 0)
        err = mp__array_from_proxy(px, type, n, out);
    if (err < 0)
        mp__px_free(px);
    return err;
}

int mp_manager_joinable_queue(mp_manager *m, const char *name, size_t maxsize, mp_queue **out)
{
    if (maxsize > INT64_MAX)
        return MP_EINVAL;
    return open_proxy(m, "jqueue", name, (int64_t)maxsize, mp__joinable_queue_from_proxy,
                      (void **)out);
}

int mp_manager_namespace(mp_manager *m, const char *name, mp_dict **out)
{
    return named_open(m, "namespace", name, (void **)out);
}

/* ---- the synchronization kinds: RLock, BoundedSemaphore, Condition, Barrier ---- */

/* Param 1 marks a recursive lock's proxy (mp_lock_is_recursive). */
int mp_manager_rlock(mp_manager *m, const char *name, mp_lock **out)
{
    return open_proxy(m, "rlock", name, 1, mp__lock_from_proxy, (void **)out);
}

int mp_manager_bounded_semaphore(mp_manager *m, const char *name, unsigned value,
                                 mp_semaphore **out)
{
    if (value > INT32_MAX)
        return MP_EINVAL;
    return open_proxy(m, "bounded_semaphore", name, value, mp__semaphore_from_proxy, (void **)out);
}

/*
 * The condition's requests travel over its lock's connection (proxy.c's
 * mp__px_via), so the lock must be a proxy on the same server.  Without
 * one the condition has its own RLock on the server (SyncManager.Condition()
 * makes a threading.Condition, whose lock is an RLock), of kind "condlock"
 * under the condition's name: every client of the condition finds it.
 */
int mp_manager_condition(mp_manager *m, const char *name, mp_lock *lock, mp_condition **out)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    if (m == NULL || name == NULL)
        return MP_EINVAL;
    mp__proxy *lpx = lock ? mp__lock_proxy(lock) : NULL;
    if (lock && lpx == NULL)
        return MP_EINVAL; /* a local lock: the server cannot hold it */
    mp_lock *own = NULL;
    int err = 0;
    if (lock == NULL) {
        err = open_proxy(m, "condlock", name, 1, mp__lock_from_proxy, (void **)&own);
        lock = own;
    }
    mp__proxy *px = NULL;
    if (err == 0 && (strcmp(mp_manager_address(m), mp__px_address(mp__lock_proxy(lock))) != 0))
        err = MP_EINVAL; /* another manager's lock */
    if (err == 0) /* over the lock's connection, as its requests will go */
        err = mp__px_open_via(mp__lock_proxy(lock), "condition", name, &px);
    if (err == 0)
        err = mp__condition_from_proxy(px, lock, out);
    if (err < 0)
        mp__px_free(px);
    mp_lock_free(own); /* the condition has its own handle */
    return err;
}

/* @timeout, the default of waits, goes with the parties in the parameter:
 * milliseconds plus one above bit 32 (0: none), so up to about 24 days. */
int mp_manager_barrier(mp_manager *m, const char *name, unsigned parties, double timeout,
                       mp_barrier **out)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    if (parties < 1 || parties > INT32_MAX || isnan(timeout))
        return MP_EINVAL;
    int64_t ms = timeout < 0 || timeout * 1000.0 >= (double)(INT32_MAX - 1)
                     ? 0
                     : (int64_t)(timeout * 1000.0) + 1;
    mp__proxy *px;
    int err = m ? mp__px_open(m->address, m->key, m->keylen, "barrier", name,
                              (int64_t)parties | ms << 32, &px)
                : MP_EINVAL;
    if (err == 0 && (err = mp__barrier_from_proxy(px, out)) < 0)
        mp__px_free(px);
    return err;
}
