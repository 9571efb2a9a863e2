/*
 * py_manager_peer: the C end of tests/interop/py_manager_interop.py, a
 * client of Python manager servers (public API only, shared library).
 * Every mode exits 0 when each of its checks held, else 1 with the failed
 * check on stderr.
 *
 *   py_manager_peer worker ADDRESS KEY
 *       the remote-manager example's worker: puts ('ready', 'c') on
 *       get_results, then takes {'id': i, 'numbers': [...]} jobs from
 *       get_jobs and puts {'id': i, 'sum': s, 'by': 'c'} on get_results
 *       until it gets None; prints how many jobs it did.
 *   py_manager_peer sync ADDRESS KEY DICT_ID
 *       a SyncManager: dict and list made here (set, get, keys, KeyError),
 *       the Python dict DICT_ID attached and its 'inner' list proxy
 *       followed (appends 'from c'), a #PROXY result followed (Node.child),
 *       a method not exposed, a Queue (put/get, Full/Empty with timeouts),
 *       a Value, a Namespace, an unknown typeid; after freeing everything the server's
 *       number_of_objects must be what it was.
 *   py_manager_peer auth ADDRESS KEY
 *       the key is wrong: mp_pymgr_connect must fail with MP_EAUTH.
 *   py_manager_peer hostile ADDRESS KEY
 *       against the script's fake server, whose replies name os.system:
 *       each call must fail with MP_EBADMSG.
 */
#include <multiproc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failed;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "py_manager_peer:%d: check failed: %s\n", __LINE__, #cond); \
            failed = 1;                                                              \
        }                                                                            \
    } while (0)

#define CHECK_EQ(want, got)                                                          \
    do {                                                                             \
        long long w_ = (want), g_ = (got);                                           \
        if (w_ != g_) {                                                              \
            fprintf(stderr, "py_manager_peer:%d: %s: want %lld, got %lld (%s)\n",    \
                    __LINE__, #got, w_, g_, g_ < 0 ? mp_strerror((int)g_) : "");      \
            failed = 1;                                                              \
        }                                                                            \
    } while (0)

static mp_py *tuple1(mp_py *a)
{
    mp_py *t = mp_py_tuple_new(1);
    if (t == NULL || mp_py_tuple_set(t, 0, a) != 0) {
        fprintf(stderr, "py_manager_peer: out of memory\n");
        exit(1);
    }
    return t;
}

/* mp_pyproxy_call, then drop @args (made for this one call). */
static int call_steal(mp_pyproxy *p, const char *method, mp_py *args, const mp_py *kwargs,
                      mp_py **result, mp_pyproxy **proxy)
{
    int err = mp_pyproxy_call(p, method, args, kwargs, result, proxy);
    mp_py_free(args);
    return err;
}

static int64_t as_int(const mp_py *v)
{
    int64_t i = -1;
    if (mp_py_int(v, &i) != 0)
        return -999999;
    return i;
}

/* The result of obj.method(*args), which must be an int (or -999999). */
static int64_t call_int(mp_pyproxy *p, const char *method, mp_py *args)
{
    mp_py *r = NULL;
    int err = call_steal(p, method, args, NULL, &r, NULL);
    CHECK_EQ(0, err);
    int64_t i = as_int(r);
    mp_py_free(r);
    return i;
}

static int64_t objects(mp_pymgr *m)
{
    mp_py *n = NULL;
    CHECK_EQ(0, mp_pymgr_dispatch(m, "number_of_objects", NULL, NULL, &n));
    int64_t i = as_int(n);
    mp_py_free(n);
    return i;
}

static int worker(const char *address, const char *key)
{
    mp_pymgr *m;
    mp_pyproxy *jobs, *results;
    int err = mp_pymgr_connect(&m, address, key, strlen(key));
    CHECK_EQ(0, err);
    if (err != 0)
        return 1;
    CHECK_EQ(0, mp_pymgr_create(m, "get_jobs", NULL, NULL, &jobs, NULL));
    CHECK_EQ(0, mp_pymgr_create(m, "get_results", NULL, NULL, &results, NULL));
    if (failed)
        return 1;
    mp_py *ready = mp_py_tuple_new(2);
    CHECK(ready && mp_py_tuple_set(ready, 0, mp_py_str_new("ready")) == 0 &&
          mp_py_tuple_set(ready, 1, mp_py_str_new("c")) == 0);
    CHECK_EQ(0, mp_pyproxy_put(results, ready, MP_FOREVER));
    mp_py_free(ready);
    long done = 0;
    for (;;) {
        mp_py *job = NULL;
        err = mp_pyproxy_get(jobs, 60, &job);
        CHECK_EQ(0, err);
        if (err != 0 || mp_py_type_of(job) == MP_PY_NONE) {
            mp_py_free(job);
            break;
        }
        mp_py *numbers = mp_py_dict_get_str(job, "numbers");
        int64_t sum = 0;
        for (ssize_t i = 0; i < mp_py_len(numbers); i++)
            sum += as_int(mp_py_item(numbers, (size_t)i));
        mp_py *res = mp_py_dict_new();
        CHECK(res && mp_py_dict_set_str(res, "id", mp_py_ref(mp_py_dict_get_str(job, "id"))) == 0 &&
              mp_py_dict_set_str(res, "sum", mp_py_int_new(sum)) == 0 &&
              mp_py_dict_set_str(res, "by", mp_py_str_new("c")) == 0);
        CHECK_EQ(0, mp_pyproxy_put(results, res, MP_FOREVER));
        mp_py_free(res);
        mp_py_free(job);
        done++;
    }
    mp_pyproxy_free(jobs);
    mp_pyproxy_free(results);
    mp_pymgr_free(m);
    printf("%ld\n", done);
    return failed;
}

static int sync_checks(const char *address, const char *key, const char *dict_id)
{
    mp_pymgr *m;
    int err = mp_pymgr_connect(&m, address, key, strlen(key));
    CHECK_EQ(0, err);
    if (err != 0)
        return 1;
    int64_t before = objects(m);

    /* a dict of our own: set, get, keys, a missing key */
    mp_pyproxy *d = NULL;
    CHECK_EQ(0, mp_pymgr_create(m, "dict", NULL, NULL, &d, NULL));
    if (d == NULL)
        return 1;
    CHECK(mp_pyproxy_exposes(d, "__getitem__"));
    CHECK_EQ(before + 1, objects(m));
    mp_py *v = mp_py_list_new();
    CHECK(v && mp_py_list_append(v, mp_py_int_new(1)) == 0 &&
          mp_py_list_append(v, mp_py_str_new("x")) == 0);
    CHECK_EQ(0, mp_pyproxy_setitem(d, "b", v));
    mp_py_free(v);
    mp_py *one = mp_py_int_new(1);
    CHECK_EQ(0, mp_pyproxy_setitem(d, "a", one));
    mp_py_free(one);
    mp_py *got = NULL;
    CHECK_EQ(0, mp_pyproxy_getitem(d, "a", &got));
    CHECK_EQ(1, as_int(got));
    mp_py_free(got);
    got = NULL;
    CHECK_EQ(0, mp_pyproxy_getitem(d, "b", &got));
    CHECK(mp_py_type_of(got) == MP_PY_LIST && mp_py_len(got) == 2);
    CHECK(mp_py_str(mp_py_item(got, 1), NULL) && strcmp(mp_py_str(mp_py_item(got, 1), NULL), "x") == 0);
    mp_py_free(got);
    got = NULL;
    CHECK_EQ(0, call_steal(d, "keys", NULL, NULL, &got, NULL));
    CHECK(mp_py_type_of(got) == MP_PY_LIST && mp_py_len(got) == 2);
    CHECK(mp_py_str(mp_py_item(got, 0), NULL) && strcmp(mp_py_str(mp_py_item(got, 0), NULL), "b") == 0);
    mp_py_free(got);
    got = NULL;
    /* KeyError: the generic call hands over the inert exception ... */
    CHECK_EQ(MP_ETASK, call_steal(d, "__getitem__", tuple1(mp_py_str_new("missing")), NULL,
                                       &got, NULL));
    CHECK(mp_py_type_of(got) == MP_PY_OBJECT);
    CHECK(mp_py_object_module(got) && strcmp(mp_py_object_module(got), "builtins") == 0);
    CHECK(mp_py_object_name(got) && strcmp(mp_py_object_name(got), "KeyError") == 0);
    mp_py *eargs = mp_py_object_args(got);
    CHECK(mp_py_len(eargs) == 1 && mp_py_str(mp_py_item(eargs, 0), NULL) &&
          strcmp(mp_py_str(mp_py_item(eargs, 0), NULL), "missing") == 0);
    mp_py_free(got);
    got = NULL;
    /* ... the convenience says MP_ENOENT */
    CHECK_EQ(MP_ENOENT, mp_pyproxy_getitem(d, "missing", &got));
    CHECK(got == NULL);
    /* a method the server does not expose: its traceback, a str */
    CHECK_EQ(MP_ETASK, call_steal(d, "__class__", NULL, NULL, &got, NULL));
    CHECK(mp_py_type_of(got) == MP_PY_STR);
    mp_py_free(got);
    got = NULL;

    /* a list of our own, made with an argument */
    mp_py *init = mp_py_list_new();
    CHECK(init && mp_py_list_append(init, mp_py_int_new(1)) == 0 &&
          mp_py_list_append(init, mp_py_int_new(2)) == 0);
    mp_pyproxy *l = NULL;
    mp_py *largs = tuple1(init);
    CHECK_EQ(0, mp_pymgr_create(m, "list", largs, NULL, &l, NULL));
    mp_py_free(largs);
    if (l == NULL)
        return 1;
    mp_py_free(got);
    got = NULL;
    CHECK_EQ(0, call_steal(l, "append", tuple1(mp_py_int_new(3)), NULL, &got, NULL));
    CHECK(mp_py_type_of(got) == MP_PY_NONE);
    mp_py_free(got);
    CHECK_EQ(3, call_int(l, "__len__", NULL));
    CHECK_EQ(3, call_int(l, "__getitem__", tuple1(mp_py_int_new(2))));

    /* SyncManager's Queue(1): put and get with timeouts, Full and Empty */
    mp_pyproxy *q = NULL;
    mp_py *qargs = tuple1(mp_py_int_new(1));
    CHECK_EQ(0, mp_pymgr_create(m, "Queue", qargs, NULL, &q, NULL));
    mp_py_free(qargs);
    if (q == NULL)
        return 1;
    mp_py *item = mp_py_str_new("job");
    CHECK_EQ(0, mp_pyproxy_put(q, item, 0));
    CHECK_EQ(MP_EFULL, mp_pyproxy_put(q, item, 0));
    CHECK_EQ(MP_EFULL, mp_pyproxy_put(q, item, 0.2));
    mp_py_free(item);
    got = NULL;
    CHECK_EQ(0, mp_pyproxy_get(q, 5, &got));
    CHECK(mp_py_str(got, NULL) && strcmp(mp_py_str(got, NULL), "job") == 0);
    mp_py_free(got);
    got = NULL;
    CHECK_EQ(MP_EEMPTY, mp_pyproxy_get(q, 0.2, &got));
    CHECK_EQ(MP_EEMPTY, mp_pyproxy_get(q, 0, &got));
    CHECK(got == NULL);
    mp_pyproxy_free(q);

    /* Value('i', 3) and Namespace(x=1) */
    mp_pyproxy *val = NULL, *ns = NULL;
    mp_py *vargs = mp_py_tuple_new(2);
    CHECK(vargs && mp_py_tuple_set(vargs, 0, mp_py_str_new("i")) == 0 &&
          mp_py_tuple_set(vargs, 1, mp_py_int_new(3)) == 0);
    CHECK_EQ(0, mp_pymgr_create(m, "Value", vargs, NULL, &val, NULL));
    mp_py_free(vargs);
    if (val == NULL)
        return 1;
    CHECK_EQ(3, call_int(val, "get", NULL));
    CHECK_EQ(0, call_steal(val, "set", tuple1(mp_py_int_new(42)), NULL, &got, NULL));
    mp_py_free(got);
    CHECK_EQ(42, call_int(val, "get", NULL));
    mp_py *kw = mp_py_dict_new();
    CHECK(kw && mp_py_dict_set_str(kw, "x", mp_py_int_new(1)) == 0);
    CHECK_EQ(0, mp_pymgr_create(m, "Namespace", NULL, kw, &ns, NULL));
    mp_py_free(kw);
    if (ns == NULL)
        return 1;
    CHECK_EQ(1, call_int(ns, "__getattribute__", tuple1(mp_py_str_new("x"))));
    mp_pyproxy_free(val);
    mp_pyproxy_free(ns);
    /* an unknown typeid: the server's traceback */
    mp_pyproxy *nothing = NULL;
    mp_py *tb = NULL;
    CHECK_EQ(MP_ETASK, mp_pymgr_create(m, "NoSuchType", NULL, NULL, &nothing, &tb));
    CHECK(nothing == NULL && mp_py_type_of(tb) == MP_PY_STR);
    mp_py_free(tb);

    /* Python's dict, holding a list proxy: attach, follow the proxy */
    mp_pyproxy *pd = NULL, *inner = NULL;
    CHECK_EQ(0, mp_pymgr_attach(m, "dict", dict_id, &pd, NULL));
    if (pd == NULL)
        return 1;
    got = NULL;
    CHECK_EQ(0, call_steal(pd, "__getitem__", tuple1(mp_py_str_new("inner")), NULL, &got,
                                &inner));
    CHECK(got == NULL && inner != NULL);
    if (inner == NULL)
        return 1;
    CHECK(strcmp(mp_pyproxy_typeid(inner), "list") == 0);
    int64_t n = call_int(inner, "__len__", NULL);
    CHECK_EQ(0, call_steal(inner, "append", tuple1(mp_py_str_new("from c")), NULL, &got, NULL));
    mp_py_free(got);
    CHECK_EQ(n + 1, call_int(inner, "__len__", NULL));
    /* attaching to what does not exist: the server's traceback */
    mp_pyproxy *none = NULL;
    mp_py *error = NULL;
    CHECK_EQ(MP_ETASK, mp_pymgr_attach(m, "dict", "no-such-id", &none, &error));
    CHECK(none == NULL && mp_py_type_of(error) == MP_PY_STR);
    mp_py_free(error);

    /* a method whose result the server makes a proxy (#PROXY) */
    mp_pyproxy *node = NULL, *child = NULL, *grandchild = NULL;
    CHECK_EQ(0, mp_pymgr_create(m, "Node", NULL, NULL, &node, NULL));
    if (node == NULL)
        return 1;
    got = NULL;
    CHECK_EQ(0, call_steal(node, "child", NULL, NULL, &got, &child));
    CHECK(got == NULL && child != NULL);
    if (child == NULL)
        return 1;
    CHECK(strcmp(mp_pyproxy_typeid(child), "NodeRef") == 0);
    CHECK(mp_pyproxy_exposes(child, "get_depth"));
    CHECK_EQ(1, call_int(child, "get_depth", NULL));
    CHECK_EQ(0, call_steal(child, "child", NULL, NULL, &got, &grandchild));
    CHECK_EQ(2, call_int(grandchild, "get_depth", NULL));
    /* a proxy result nobody keeps is given back at once */
    CHECK_EQ(0, call_steal(child, "child", NULL, NULL, &got, NULL));
    CHECK(mp_py_type_of(got) == MP_PY_NONE);
    mp_py_free(got);

    mp_pyproxy_free(grandchild);
    mp_pyproxy_free(child);
    mp_pyproxy_free(node);
    mp_pyproxy_free(inner);
    mp_pyproxy_free(pd);
    mp_pyproxy_free(l);
    mp_pyproxy_free(d);
    CHECK_EQ(before, objects(m));
    mp_pymgr_free(m);
    return failed;
}

static int auth(const char *address, const char *key)
{
    mp_pymgr *m = NULL;
    CHECK_EQ(MP_EAUTH, mp_pymgr_connect(&m, address, key, strlen(key)));
    CHECK(m == NULL);
    return failed;
}

static int hostile(const char *address, const char *key)
{
    mp_pymgr *m = NULL;
    CHECK_EQ(0, mp_pymgr_connect(&m, address, key, strlen(key)));
    if (m == NULL)
        return 1;
    mp_pyproxy *p = NULL, *q = NULL;
    mp_py *got = NULL;
    /* 1: 'create' answered by an os.system call */
    CHECK_EQ(MP_EBADMSG, mp_pymgr_create(m, "x", NULL, NULL, &p, NULL));
    /* 2: a plain create; then replies on the call connection */
    CHECK_EQ(0, mp_pymgr_create(m, "x", NULL, NULL, &p, NULL));
    if (p == NULL)
        return 1;
    /* 3: #RETURN of an os.system call */
    CHECK_EQ(MP_EBADMSG, call_steal(p, "get", NULL, NULL, &got, &q));
    CHECK(got == NULL && q == NULL);
    /* 4: #PROXY whose token is an os.system call */
    CHECK_EQ(MP_EBADMSG, call_steal(p, "get", NULL, NULL, &got, &q));
    CHECK(got == NULL && q == NULL);
    /* 5: a RebuildProxy whose function is os.system */
    CHECK_EQ(MP_EBADMSG, call_steal(p, "get", NULL, NULL, &got, &q));
    CHECK(got == NULL && q == NULL);
    /* 6: a reply that is no reply at all: an os.system call */
    CHECK_EQ(MP_EBADMSG, call_steal(p, "get", NULL, NULL, &got, &q));
    CHECK(got == NULL && q == NULL);
    mp_pyproxy_free(p);
    mp_pymgr_free(m);
    return failed;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "worker") == 0)
        return worker(argv[2], argv[3]);
    if (argc == 5 && strcmp(argv[1], "sync") == 0)
        return sync_checks(argv[2], argv[3], argv[4]);
    if (argc == 4 && strcmp(argv[1], "auth") == 0)
        return auth(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "hostile") == 0)
        return hostile(argv[2], argv[3]);
    fprintf(stderr, "usage: py_manager_peer worker|sync|auth|hostile ADDRESS KEY [DICT_ID]\n");
    return 2;
}
