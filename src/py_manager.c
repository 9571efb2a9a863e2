/*
 * py_manager.c: a C client of Python's manager servers (BaseManager,
 * SyncManager), include/multiproc/py.h.
 *
 * The protocol is Lib/multiprocessing/managers.py's (the same in Python
 * 3.8 to 3.13):
 *   - a request is `(ident, methodname, args, kwds)` pickled, one message;
 *   - the server itself (ident None) answers one request per connection
 *     (Server.handle_request: 'create', 'incref', 'decref', 'dummy',
 *     'number_of_objects', ...) and hangs up, except 'accept_connection',
 *     after which a server thread serves method calls on that connection
 *     until it closes (Server.serve_client);
 *   - the reply is ('#RETURN', value), ('#ERROR', exception),
 *     ('#TRACEBACK', str), ('#UNSERIALIZABLE', str) or ('#PROXY',
 *     (exposed, Token)).
 *
 * Counting (Server.create, BaseProxy.__init__/_incref/_decref): 'create',
 * and a method whose result the server wraps as a #PROXY, leave the new
 * object with one count for the caller.  Python's proxy increfs once more
 * and its maker decrefs the first count; a handle here simply keeps that
 * first count, which leaves the server in the same state with two round
 * trips fewer.  A proxy pickled inside a value (RebuildProxy) carries no
 * count: Python's unpickler increfs, and so does this client.  Every
 * handle decrefs once when freed.
 *
 * Layer: above the connection layer and the Python values; it never calls
 * the C managers (managers.c, proxy.c), whose wire form is another.
 */
#include "py_manager.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct mp_pymgr {
    size_t refcnt; /* the caller's reference and one per live handle */
    char *address;
    uint8_t *key;  /* NULL: no handshake */
    size_t keylen;
    mp_conn *conn; /* method calls (after accept_connection), or NULL */
};

struct mp_pyproxy {
    mp_pymgr *m;
    char *typeid, *id;
    mp_py *exposed; /* tuple of str, or NULL when the server did not say */
};

static const char MANAGERS[] = "multiprocessing.managers";

/* ---- checking a reply ------------------------------------------------------ */

/* Whether @v holds an object node anywhere (depth is bounded by the
 * decoder, MP_PY_MAX_DEPTH, so the recursion is too). */
static bool has_object(const mp_py *v)
{
    switch (mp_py_type_of(v)) {
    case MP_PY_OBJECT:
        return true;
    case MP_PY_TUPLE:
    case MP_PY_LIST:
    case MP_PY_SET:
    case MP_PY_FROZENSET: {
        ssize_t n = mp_py_len(v);
        for (ssize_t i = 0; i < n; i++)
            if (has_object(mp_py_item(v, (size_t)i)))
                return true;
        return false;
    }
    case MP_PY_DICT: {
        ssize_t n = mp_py_len(v);
        for (ssize_t i = 0; i < n; i++) {
            mp_py *k, *val;
            if (mp_py_dict_item(v, (size_t)i, &k, &val) != 0 || has_object(k) ||
                has_object(val))
                return true;
        }
        return false;
    }
    default:
        return false;
    }
}

static bool is_named(const mp_py *v, const char *module, const char *name)
{
    const char *mod = mp_py_object_module(v), *nm = mp_py_object_name(v);
    return mod != NULL && nm != NULL && strcmp(mod, module) == 0 &&
           (name == NULL || strcmp(nm, name) == 0);
}

/* A str with no NUL inside, copied for use as a C string. */
static int c_string(const mp_py *v, char **out)
{
    size_t len;
    const char *s = mp_py_str(v, &len);
    if (s == NULL || strlen(s) != len || len == 0)
        return MP_EBADMSG;
    *out = strdup(s);
    return *out ? 0 : MP_ENOMEM;
}

/* A tuple (or list) of str: what the server says a proxy exposes. */
static bool is_str_seq(const mp_py *v)
{
    mp_py_type t = mp_py_type_of(v);
    if (t != MP_PY_TUPLE && t != MP_PY_LIST)
        return false;
    ssize_t n = mp_py_len(v);
    for (ssize_t i = 0; i < n; i++)
        if (mp_py_type_of(mp_py_item(v, (size_t)i)) != MP_PY_STR)
            return false;
    return true;
}

/* multiprocessing.managers.Token, as its __getstate__ pickles it: made
 * with no arguments (NEWOBJ), state (typeid, address, id).  The address is
 * not used: as Python's proxies do for a #PROXY, every handle talks to the
 * manager it came from. */
static int parse_token(const mp_py *t, mp__pymgr_reply *r)
{
    if (!is_named(t, MANAGERS, "Token") || mp_py_object_kwargs(t) != NULL)
        return MP_EBADMSG;
    const mp_py *args = mp_py_object_args(t);
    if (args != NULL && mp_py_len(args) != 0)
        return MP_EBADMSG;
    const mp_py *st = mp_py_object_state(t);
    if (mp_py_type_of(st) != MP_PY_TUPLE || mp_py_len(st) != 3 || has_object(st))
        return MP_EBADMSG;
    int err = c_string(mp_py_item(st, 0), &r->typeid);
    if (err == 0)
        err = c_string(mp_py_item(st, 2), &r->id);
    return err;
}

/* RebuildProxy(func, token, serializer, kwds): a proxy pickled as a value
 * (BaseProxy.__reduce__).  func is a proxy type or AutoProxy, named only;
 * kwds may say what it exposes. */
static int parse_rebuild(const mp_py *v, mp__pymgr_reply *r)
{
    const mp_py *a = mp_py_object_args(v);
    if (mp_py_object_kwargs(v) != NULL || mp_py_object_state(v) != NULL ||
        mp_py_type_of(a) != MP_PY_TUPLE || mp_py_len(a) != 4)
        return MP_EBADMSG;
    const mp_py *func = mp_py_item(a, 0), *kw = mp_py_item(a, 3);
    if (!is_named(func, MANAGERS, NULL) || mp_py_object_args(func) != NULL ||
        mp_py_object_state(func) != NULL || mp_py_type_of(mp_py_item(a, 2)) != MP_PY_STR ||
        mp_py_type_of(kw) != MP_PY_DICT || has_object(kw))
        return MP_EBADMSG;
    mp_py *exposed = mp_py_dict_get_str(kw, "exposed");
    if (exposed != NULL && !is_str_seq(exposed))
        return MP_EBADMSG;
    int err = parse_token(mp_py_item(a, 1), r);
    if (err == 0) {
        r->exposed = mp_py_ref(exposed);
        r->kind = MP__PYMGR_PROXY_REF;
    }
    return err;
}

void mp__pymgr_reply_clear(mp__pymgr_reply *r)
{
    mp_py_free(r->value);
    mp_py_free(r->exposed);
    free(r->typeid);
    free(r->id);
    memset(r, 0, sizeof *r);
}

int mp__pymgr_parse_reply(const void *p, size_t n, mp__pymgr_reply *r)
{
    memset(r, 0, sizeof *r);
    mp_py *msg = NULL;
    /* Inert: a name is kept as a description, never looked up; the checks
     * below accept one only where the protocol has one. */
    int err = mp_py_loads(p, n, MP_PY_INERT, &msg);
    if (err != 0)
        return err;
    err = MP_EBADMSG;
    const char *kind = mp_py_str(mp_py_item(msg, 0), NULL);
    mp_py *val = mp_py_item(msg, 1);
    if (mp_py_type_of(msg) != MP_PY_TUPLE || mp_py_len(msg) != 2 || kind == NULL) {
        /* not a reply */
    } else if (strcmp(kind, "#RETURN") == 0) {
        /* A dict's keys(), values() and items() views: managers.py pickles
         * them as list(a_list) (rebuild_as_list), which is that list. */
        const mp_py *va = mp_py_object_args(val);
        if (is_named(val, "builtins", "list") && mp_py_len(va) == 1 &&
            mp_py_type_of(mp_py_item(va, 0)) == MP_PY_LIST && mp_py_object_state(val) == NULL &&
            mp_py_object_kwargs(val) == NULL)
            val = mp_py_item(va, 0);
        if (is_named(val, MANAGERS, "RebuildProxy")) {
            err = parse_rebuild(val, r);
        } else if (!has_object(val)) {
            r->kind = MP__PYMGR_RETURN;
            r->value = mp_py_ref(val);
            err = 0;
        }
    } else if (strcmp(kind, "#PROXY") == 0) {
        if (mp_py_type_of(val) == MP_PY_TUPLE && mp_py_len(val) == 2 &&
            is_str_seq(mp_py_item(val, 0))) {
            err = parse_token(mp_py_item(val, 1), r);
            if (err == 0) {
                r->kind = MP__PYMGR_PROXY;
                r->exposed = mp_py_ref(mp_py_item(val, 0));
            }
        }
    } else if (strcmp(kind, "#ERROR") == 0) {
        /* The exception object the method raised: any class (a user's own
         * exceptions too), read as a description only. */
        if (mp_py_type_of(val) == MP_PY_OBJECT) {
            r->kind = MP__PYMGR_ERROR;
            r->value = mp_py_ref(val);
            err = 0;
        }
    } else if (strcmp(kind, "#TRACEBACK") == 0 || strcmp(kind, "#UNSERIALIZABLE") == 0) {
        if (mp_py_type_of(val) == MP_PY_STR) {
            r->kind = MP__PYMGR_TRACEBACK;
            r->value = mp_py_ref(val);
            err = 0;
        }
    }
    mp_py_free(msg);
    if (err != 0)
        mp__pymgr_reply_clear(r);
    return err;
}

/* ---- requests -------------------------------------------------------------- */

/* args as the request carries them: a new reference to a tuple or list,
 * an empty tuple for NULL; NULL (MP_EINVAL) for anything else. */
static int request_args(const mp_py *args, mp_py **out)
{
    if (args == NULL) {
        *out = mp_py_tuple_new(0);
        return *out ? 0 : MP_ENOMEM;
    }
    if (mp_py_type_of(args) != MP_PY_TUPLE && mp_py_type_of(args) != MP_PY_LIST)
        return MP_EINVAL;
    *out = mp_py_ref((mp_py *)args);
    return 0;
}

static int request_kwargs(const mp_py *kwargs, mp_py **out)
{
    if (kwargs == NULL) {
        *out = mp_py_dict_new();
        return *out ? 0 : MP_ENOMEM;
    }
    if (mp_py_type_of(kwargs) != MP_PY_DICT)
        return MP_EINVAL;
    *out = mp_py_ref((mp_py *)kwargs);
    return 0;
}

/* Send (ident, method, args, kwargs) (ident NULL: None, the server) and
 * read the reply.  *broken (if not NULL) says whether the connection
 * failed: a reply refused by the checks was read whole, and the
 * connection is still in step. */
static int roundtrip(mp_conn *c, const char *ident, const char *method, const mp_py *args,
                     const mp_py *kwargs, mp__pymgr_reply *r, bool *broken)
{
    memset(r, 0, sizeof *r);
    if (broken != NULL)
        *broken = false;
    mp_py *a = NULL, *k = NULL;
    int err = request_args(args, &a);
    if (err == 0)
        err = request_kwargs(kwargs, &k);
    if (err != 0) {
        mp_py_free(a);
        return err;
    }
    mp_py *req = mp_py_tuple_new(4);
    if (req == NULL) {
        mp_py_free(a);
        mp_py_free(k);
        return MP_ENOMEM;
    }
    /* each set steals its item, on failure too: all four run */
    err = mp_py_tuple_set(req, 2, a);
    err |= mp_py_tuple_set(req, 3, k);
    err |= mp_py_tuple_set(req, 0, ident ? mp_py_str_new(ident) : mp_py_none_new());
    err |= mp_py_tuple_set(req, 1, mp_py_str_new(method));
    if (err != 0) {
        mp_py_free(req);
        return MP_EINVAL; /* an ident or method that is not UTF-8 (or no memory) */
    }
    err = mp_conn_send_py(c, req);
    mp_py_free(req);
    if (err == MP_EINVAL || err == MP_ENOMEM)
        return err; /* not encodable (an object node among the args): nothing sent */
    mp_buf b = MP_BUF_INIT;
    if (err == 0)
        err = mp_conn_recv_bytes(c, &b, 0);
    if (err != 0 && broken != NULL)
        *broken = true;
    if (err == 0)
        err = mp__pymgr_parse_reply(b.data, b.len, r);
    mp_buf_free(&b);
    return err;
}

/* One request to the server itself, over a connection of its own (the
 * server answers one and hangs up). */
static int server_request(mp_pymgr *m, const char *name, const mp_py *args,
                          const mp_py *kwargs, mp__pymgr_reply *r)
{
    memset(r, 0, sizeof *r);
    mp_conn *c;
    int err = mp_client(&c, m->address, m->key, m->keylen);
    if (err != 0)
        return err;
    err = roundtrip(c, NULL, name, args, kwargs, r, NULL);
    mp_conn_close(c);
    return err;
}

/* incref/decref (ident,) to the server; 0 or the error. */
static int count(mp_pymgr *m, const char *what, const char *id)
{
    mp_py *args = mp_py_tuple_new(1);
    if (args == NULL || mp_py_tuple_set(args, 0, mp_py_str_new(id))) {
        mp_py_free(args);
        return MP_ENOMEM;
    }
    mp__pymgr_reply r;
    int err = server_request(m, what, args, NULL, &r);
    mp_py_free(args);
    if (err == 0 && r.kind != MP__PYMGR_RETURN)
        err = r.kind == MP__PYMGR_TRACEBACK ? MP_ETASK : MP_EBADMSG;
    mp__pymgr_reply_clear(&r);
    return err;
}

/* ---- the manager ------------------------------------------------------------- */

static void mgr_unref(mp_pymgr *m)
{
    if (m == NULL || --m->refcnt > 0)
        return;
    mp_conn_close(m->conn);
    free(m->address);
    if (m->key)
        memset(m->key, 0, m->keylen);
    free(m->key);
    free(m);
}

int mp_pymgr_connect(mp_pymgr **out, const char *address, const void *authkey, size_t keylen)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    if (address == NULL || (authkey != NULL && keylen == 0))
        return MP_EINVAL;
    mp_pymgr *m = calloc(1, sizeof *m);
    if (m == NULL)
        return MP_ENOMEM;
    m->refcnt = 1;
    m->address = strdup(address);
    m->keylen = keylen;
    if (authkey != NULL && (m->key = malloc(keylen)) != NULL)
        memcpy(m->key, authkey, keylen);
    if (m->address == NULL || (authkey != NULL && m->key == NULL)) {
        mgr_unref(m);
        return MP_ENOMEM;
    }
    /* BaseManager.connect: one 'dummy' request proves the address, the key
     * and that a manager server answers. */
    mp__pymgr_reply r;
    int err = server_request(m, "dummy", NULL, NULL, &r);
    if (err == 0 && r.kind != MP__PYMGR_RETURN)
        err = MP_EBADMSG;
    mp__pymgr_reply_clear(&r);
    if (err != 0) {
        mgr_unref(m);
        return err;
    }
    *out = m;
    return 0;
}

void mp_pymgr_free(mp_pymgr *m)
{
    mgr_unref(m);
}

/* A handle for a checked #PROXY / RebuildProxy reply; takes its strings. */
static int new_handle(mp_pymgr *m, mp__pymgr_reply *r, mp_pyproxy **out)
{
    mp_pyproxy *p = calloc(1, sizeof *p);
    if (p == NULL)
        return MP_ENOMEM;
    p->m = m;
    m->refcnt++;
    p->typeid = r->typeid;
    p->id = r->id;
    p->exposed = r->exposed;
    r->typeid = r->id = NULL;
    r->exposed = NULL;
    *out = p;
    return 0;
}

/* The error of a reply that is not a value: MP_ETASK with the exception
 * or traceback handed to the caller (*error, when not NULL). */
static int reply_error(mp__pymgr_reply *r, mp_py **error)
{
    if (r->kind != MP__PYMGR_ERROR && r->kind != MP__PYMGR_TRACEBACK)
        return MP_EBADMSG;
    if (error != NULL) {
        *error = r->value;
        r->value = NULL;
    }
    return MP_ETASK;
}

int mp_pymgr_dispatch(mp_pymgr *m, const char *name, const mp_py *args, const mp_py *kwargs,
                      mp_py **result)
{
    if (result == NULL)
        return MP_EINVAL;
    *result = NULL;
    if (m == NULL || name == NULL)
        return MP_EINVAL;
    mp__pymgr_reply r;
    int err = server_request(m, name, args, kwargs, &r);
    if (err == 0) {
        if (r.kind == MP__PYMGR_RETURN) {
            *result = r.value;
            r.value = NULL;
        } else {
            err = reply_error(&r, result);
        }
    }
    mp__pymgr_reply_clear(&r);
    return err;
}

int mp_pymgr_create(mp_pymgr *m, const char *typeid, const mp_py *args, const mp_py *kwargs,
                    mp_pyproxy **out, mp_py **error)
{
    if (error != NULL)
        *error = NULL;
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    if (m == NULL || typeid == NULL)
        return MP_EINVAL;
    mp_py *a = NULL;
    int err = request_args(args, &a);
    if (err != 0)
        return err;
    /* Server.create(c, typeid, /, *args, **kwds): typeid leads the args */
    ssize_t n = mp_py_len(a);
    mp_py *full = mp_py_tuple_new((size_t)n + 1);
    err = full == NULL || mp_py_tuple_set(full, 0, mp_py_str_new(typeid)) ? MP_ENOMEM : 0;
    for (ssize_t i = 0; err == 0 && i < n; i++)
        err = mp_py_tuple_set(full, (size_t)i + 1, mp_py_ref(mp_py_item(a, (size_t)i)));
    mp_py_free(a);
    mp__pymgr_reply r = {0};
    if (err == 0)
        err = server_request(m, "create", full, kwargs, &r);
    mp_py_free(full);
    if (err != 0)
        return err;
    if (r.kind == MP__PYMGR_RETURN) {
        /* (ident, tuple(exposed)); the object holds one count: ours */
        mp_py *v = r.value;
        if (mp_py_type_of(v) != MP_PY_TUPLE || mp_py_len(v) != 2 ||
            !is_str_seq(mp_py_item(v, 1)) || (err = c_string(mp_py_item(v, 0), &r.id)) != 0 ||
            (r.typeid = strdup(typeid)) == NULL) {
            err = err ? err : r.id == NULL ? MP_EBADMSG : MP_ENOMEM;
        } else {
            r.exposed = mp_py_ref(mp_py_item(v, 1));
            err = new_handle(m, &r, out);
        }
        if (err != 0 && r.id != NULL)
            (void)count(m, "decref", r.id); /* give its count back */
    } else {
        err = reply_error(&r, error);
    }
    mp__pymgr_reply_clear(&r);
    return err;
}

int mp_pymgr_attach(mp_pymgr *m, const char *type_id, const char *id, mp_pyproxy **out,
                    mp_py **error)
{
    if (error != NULL)
        *error = NULL;
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    if (m == NULL || type_id == NULL || id == NULL || *id == '\0')
        return MP_EINVAL;
    mp__pymgr_reply r = {0};
    r.typeid = strdup(type_id);
    r.id = strdup(id);
    if (r.typeid == NULL || r.id == NULL) {
        mp__pymgr_reply_clear(&r);
        return MP_ENOMEM;
    }
    mp_py *args = mp_py_tuple_new(1);
    mp__pymgr_reply c = {0};
    int err = args == NULL || mp_py_tuple_set(args, 0, mp_py_str_new(id)) ? MP_EINVAL : 0;
    if (err == 0)
        err = server_request(m, "incref", args, NULL, &c);
    mp_py_free(args);
    if (err == 0 && c.kind != MP__PYMGR_RETURN)
        err = reply_error(&c, error);
    mp__pymgr_reply_clear(&c);
    if (err == 0 && (err = new_handle(m, &r, out)) != 0)
        (void)count(m, "decref", id);
    mp__pymgr_reply_clear(&r);
    return err;
}

/* The connection method calls go over: opened on first use with
 * accept_connection, which turns it into a server thread's. */
static int call_conn(mp_pymgr *m, mp_conn **out)
{
    if (m->conn != NULL) {
        *out = m->conn;
        return 0;
    }
    mp_conn *c;
    int err = mp_client(&c, m->address, m->key, m->keylen);
    if (err != 0)
        return err;
    char name[48];
    snprintf(name, sizeof name, "multiproc-%ld", (long)getpid());
    mp_py *args = mp_py_tuple_new(1);
    mp__pymgr_reply r = {0};
    if (args == NULL || mp_py_tuple_set(args, 0, mp_py_str_new(name)))
        err = MP_ENOMEM;
    else
        err = roundtrip(c, NULL, "accept_connection", args, NULL, &r, NULL);
    mp_py_free(args);
    if (err == 0 && r.kind != MP__PYMGR_RETURN)
        err = r.kind == MP__PYMGR_TRACEBACK ? MP_ETASK : MP_EBADMSG;
    mp__pymgr_reply_clear(&r);
    if (err != 0) {
        mp_conn_close(c);
        return err;
    }
    *out = m->conn = c;
    return 0;
}

int mp_pyproxy_call(mp_pyproxy *p, const char *method, const mp_py *args, const mp_py *kwargs,
                    mp_py **result, mp_pyproxy **proxy)
{
    if (proxy != NULL)
        *proxy = NULL;
    if (result == NULL)
        return MP_EINVAL;
    *result = NULL;
    if (p == NULL || method == NULL)
        return MP_EINVAL;
    mp_pymgr *m = p->m;
    mp_conn *c;
    int err = call_conn(m, &c);
    if (err != 0)
        return err;
    mp__pymgr_reply r;
    bool broken;
    err = roundtrip(c, p->id, method, args, kwargs, &r, &broken);
    if (broken) {
        /* the connection failed mid-request: a fresh one next time */
        mp_conn_close(m->conn);
        m->conn = NULL;
    }
    if (err != 0)
        return err;
    switch (r.kind) {
    case MP__PYMGR_RETURN:
        *result = r.value;
        r.value = NULL;
        break;
    case MP__PYMGR_PROXY:
    case MP__PYMGR_PROXY_REF:
        /* a #PROXY arrives counted for us; a pickled proxy does not */
        if (r.kind == MP__PYMGR_PROXY_REF && proxy != NULL)
            err = count(m, "incref", r.id);
        else if (r.kind == MP__PYMGR_PROXY && proxy == NULL)
            (void)count(m, "decref", r.id);
        if (err == 0 && proxy != NULL && (err = new_handle(m, &r, proxy)) != 0)
            (void)count(m, "decref", r.id); /* the count it would have owned */
        if (err == 0 && proxy == NULL && (*result = mp_py_none_new()) == NULL)
            err = MP_ENOMEM;
        break;
    default:
        err = reply_error(&r, result);
        break;
    }
    mp__pymgr_reply_clear(&r);
    return err;
}

void mp_pyproxy_free(mp_pyproxy *p)
{
    if (p == NULL)
        return;
    /* BaseProxy._decref: a server already gone has nothing to count */
    (void)count(p->m, "decref", p->id);
    mgr_unref(p->m);
    free(p->typeid);
    free(p->id);
    mp_py_free(p->exposed);
    free(p);
}

const char *mp_pyproxy_typeid(const mp_pyproxy *p)
{
    return p ? p->typeid : NULL;
}

const char *mp_pyproxy_id(const mp_pyproxy *p)
{
    return p ? p->id : NULL;
}

bool mp_pyproxy_exposes(const mp_pyproxy *p, const char *method)
{
    if (p == NULL || method == NULL || p->exposed == NULL)
        return false;
    ssize_t n = mp_py_len(p->exposed);
    for (ssize_t i = 0; i < n; i++) {
        const char *s = mp_py_str(mp_py_item(p->exposed, (size_t)i), NULL);
        if (s != NULL && strcmp(s, method) == 0)
            return true;
    }
    return false;
}

/* ---- conveniences ------------------------------------------------------------ */

/* Whether an error the call returned is the exception module.name (module
 * NULL: any of "queue", "_queue"). */
static bool raised(const mp_py *exc, const char *module, const char *name)
{
    if (module != NULL)
        return is_named(exc, module, name);
    return is_named(exc, "queue", name) || is_named(exc, "_queue", name);
}

/* (item,) / (item, False) / (item, True, timeout) and so on: Python's
 * block and timeout arguments from one timeout. */
static int block_args(const mp_py *first, double timeout, mp_py **out)
{
    size_t n = (first ? 1 : 0) + (timeout < 0 ? 0 : timeout == 0 ? 1 : 2);
    mp_py *t = mp_py_tuple_new(n);
    size_t i = 0;
    int err = t ? 0 : MP_ENOMEM;
    if (err == 0 && first)
        err = mp_py_tuple_set(t, i++, mp_py_ref((mp_py *)first));
    if (err == 0 && timeout >= 0)
        err = mp_py_tuple_set(t, i++, mp_py_bool_new(timeout > 0));
    if (err == 0 && timeout > 0)
        err = mp_py_tuple_set(t, i++, mp_py_float_new(timeout));
    if (err != 0) {
        mp_py_free(t);
        return err;
    }
    *out = t;
    return 0;
}

/* A call whose result is a plain value; @code replaces MP_ETASK when the
 * exception is @module.@name. */
static int simple_call(mp_pyproxy *p, const char *method, mp_py *args, mp_py **value,
                       const char *module, const char *name, int code, bool any_queue)
{
    mp_py *res = NULL;
    int err = mp_pyproxy_call(p, method, args, NULL, &res, NULL);
    mp_py_free(args);
    if (err == MP_ETASK && name != NULL && (any_queue ? raised(res, NULL, name) : raised(res, module, name)))
        err = code;
    if (err == 0 && value != NULL) {
        *value = res;
        res = NULL;
    }
    mp_py_free(res);
    return err;
}

int mp_pyproxy_put(mp_pyproxy *q, const mp_py *item, double timeout)
{
    if (item == NULL)
        return MP_EINVAL;
    mp_py *args;
    int err = block_args(item, timeout, &args);
    return err ? err : simple_call(q, "put", args, NULL, NULL, "Full", MP_EFULL, true);
}

int mp_pyproxy_get(mp_pyproxy *q, double timeout, mp_py **item)
{
    if (item == NULL)
        return MP_EINVAL;
    *item = NULL;
    mp_py *args;
    int err = block_args(NULL, timeout, &args);
    return err ? err : simple_call(q, "get", args, item, NULL, "Empty", MP_EEMPTY, true);
}

static int key_args(const char *key, const mp_py *value, mp_py **out)
{
    if (key == NULL)
        return MP_EINVAL;
    mp_py *t = mp_py_tuple_new(value ? 2 : 1);
    if (t == NULL || mp_py_tuple_set(t, 0, mp_py_str_new(key)) ||
        (value && mp_py_tuple_set(t, 1, mp_py_ref((mp_py *)value)))) {
        mp_py_free(t);
        return t ? MP_EINVAL : MP_ENOMEM; /* a key that is not UTF-8 */
    }
    *out = t;
    return 0;
}

int mp_pyproxy_getitem(mp_pyproxy *d, const char *key, mp_py **value)
{
    if (value == NULL)
        return MP_EINVAL;
    *value = NULL;
    mp_py *args;
    int err = key_args(key, NULL, &args);
    return err ? err
               : simple_call(d, "__getitem__", args, value, "builtins", "KeyError", MP_ENOENT,
                             false);
}

int mp_pyproxy_setitem(mp_pyproxy *d, const char *key, const mp_py *value)
{
    if (value == NULL)
        return MP_EINVAL;
    mp_py *args;
    int err = key_args(key, value, &args);
    return err ? err : simple_call(d, "__setitem__", args, NULL, NULL, NULL, 0, false);
}
