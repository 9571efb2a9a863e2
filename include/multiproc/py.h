/*
 * multiproc: Python values in C, and a pickle codec that never runs code.
 *
 * Included by <multiproc.h>; self-contained (it needs only the standard
 * headers and <multiproc/errno.h>), so it may also be included alone.
 *
 * An mp_py is one immutable-or-mutable Python value, reference counted:
 *
 *   Python type   mp_py_type          read with
 *   -----------   ------------------  -----------------------------------------
 *   None          MP_PY_NONE          mp_py_type_of()
 *   bool          MP_PY_BOOL          mp_py_bool()
 *   int           MP_PY_INT           mp_py_int() (int64_t), mp_py_int_bytes()
 *   float         MP_PY_FLOAT         mp_py_float()
 *   str           MP_PY_STR           mp_py_str() (UTF-8, NUL-terminated)
 *   bytes         MP_PY_BYTES         mp_py_bytes()
 *   bytearray     MP_PY_BYTEARRAY     mp_py_bytes()
 *   tuple, list   MP_PY_TUPLE/LIST    mp_py_len(), mp_py_item()
 *   dict          MP_PY_DICT          mp_py_dict_get(), _get_str(), _item()
 *   set/frozenset MP_PY_SET/FROZENSET mp_py_len(), mp_py_item(), _contains()
 *   (anything)    MP_PY_OBJECT        mp_py_object_*(): an inert description
 *
 * Ownership (as CPython's C API): a constructor returns a new reference (NULL
 * when out of memory, or for a str that is not UTF-8); mp_py_ref() adds one
 * and mp_py_free() drops one.  Putting an item into a container STEALS the
 * caller's reference to it, on failure too (the item is then dropped), and a
 * NULL item makes the call fail with MP_ENOMEM, so
 * `mp_py_list_append(l, mp_py_int_new(3))` needs no check of its own and
 * leaks nothing.  Accessors return borrowed pointers, valid while the
 * container holds them.
 *
 * Values are DAGs: an item may appear in several containers (the decoder
 * shares what a pickle's memo shares), but a value never contains itself.
 * There is no cycle collector: the decoder refuses a pickle of a value that
 * contains itself (Python writes one for `l = []; l.append(l)`) with
 * MP_EBADMSG, and the encoder refuses such a value (built by hand) with
 * MP_EINVAL.  Nesting deeper than MP_PY_MAX_DEPTH is refused the same way.
 *
 * Dict keys and set items follow Python: numbers compare by value (1, 1.0
 * and True are one key), a later value for an equal key replaces the value
 * and keeps the first key, a set drops equal items; list, dict, set,
 * bytearray and object nodes (and tuples holding them) are unhashable and
 * refused (MP_EINVAL).  A tuple or frozenset must not change once it is a
 * key or an item of a set.  A value is not thread-safe: share one between
 * threads only read-only, and hold a lock around mp_py_ref/mp_py_free.
 */
#ifndef MULTIPROC_PY_H
#define MULTIPROC_PY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "errno.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MP__PY_CHECK __attribute__((warn_unused_result))
#else
#define MP__PY_CHECK
#endif

/** Deepest nesting the codec accepts (a list in a list ... 1000 levels). */
#define MP_PY_MAX_DEPTH 1000

typedef struct mp_py mp_py;
struct mp_buf;

/** The type of a value. */
typedef enum mp_py_type {
    MP_PY_NONE,
    MP_PY_BOOL,
    MP_PY_INT,
    MP_PY_FLOAT,
    MP_PY_STR,
    MP_PY_BYTES,
    MP_PY_BYTEARRAY,
    MP_PY_TUPLE,
    MP_PY_LIST,
    MP_PY_DICT,
    MP_PY_SET,
    MP_PY_FROZENSET,
    /** What a pickle named but was not run: module, name, arguments,
     *  state (decoded only with MP_PY_INERT; never encoded). */
    MP_PY_OBJECT,
} mp_py_type;

/* ---- references --------------------------------------------------------- */

/** Add a reference; returns @v.  NULL is a no-op. */
mp_py *mp_py_ref(mp_py *v);
/** Drop a reference; the last one frees the value and drops its items'.
 *  NULL is a no-op. */
void mp_py_free(mp_py *v);

/* ---- constructors: a new reference, or NULL (out of memory) ------------- */

/** None. */
mp_py *mp_py_none_new(void);
/** True or False. */
mp_py *mp_py_bool_new(bool b);
/** An int. */
mp_py *mp_py_int_new(int64_t i);
/** An int of any size: @n bytes of little-endian two's complement (as
 *  Python's int.to_bytes(n, 'little', signed=True)); n == 0 is 0. */
mp_py *mp_py_int_from_bytes(const void *le, size_t n);
/** A float. */
mp_py *mp_py_float_new(double d);
/** A str from NUL-terminated UTF-8; NULL also when @s is NULL or not UTF-8
 *  (encoded surrogates, which Python's pickle writes, are accepted). */
mp_py *mp_py_str_new(const char *s);
/** A str from @n bytes of UTF-8 (may hold NUL bytes). */
mp_py *mp_py_str_new_n(const char *s, size_t n);
/** bytes: a copy of @n bytes at @p (@p may be NULL when n == 0). */
mp_py *mp_py_bytes_new(const void *p, size_t n);
/** bytearray: a copy of @n bytes at @p. */
mp_py *mp_py_bytearray_new(const void *p, size_t n);
/** A tuple of @n items, each None until mp_py_tuple_set(). */
mp_py *mp_py_tuple_new(size_t n);
/** An empty list. */
mp_py *mp_py_list_new(void);
/** An empty dict. */
mp_py *mp_py_dict_new(void);
/** An empty set. */
mp_py *mp_py_set_new(void);
/** An empty frozenset; fill it with mp_py_set_add() before sharing it. */
mp_py *mp_py_frozenset_new(void);

/* ---- building: each call steals @item / @key / @value ------------------- */

/** Put @item at @i of tuple @t (dropping what was there).
 *  @return 0; MP_EINVAL (not a tuple, i out of range); MP_ENOMEM (item NULL). */
MP__PY_CHECK int mp_py_tuple_set(mp_py *t, size_t i, mp_py *item);
/** Append @item to list @l.  @return 0; MP_EINVAL; MP_ENOMEM. */
MP__PY_CHECK int mp_py_list_append(mp_py *l, mp_py *item);
/** d[key] = value: an equal key keeps its first key object and takes the
 *  new value.  @return 0; MP_EINVAL (not a dict, unhashable key);
 *  MP_ENOMEM (also key or value NULL). */
MP__PY_CHECK int mp_py_dict_set(mp_py *d, mp_py *key, mp_py *value);
/** d[key] = value with a str key from NUL-terminated UTF-8. */
MP__PY_CHECK int mp_py_dict_set_str(mp_py *d, const char *key, mp_py *value);
/** Add @item to a set or frozenset (an equal item already there stays).
 *  @return 0; MP_EINVAL (not a set, unhashable item); MP_ENOMEM. */
MP__PY_CHECK int mp_py_set_add(mp_py *s, mp_py *item);

/* ---- reading ------------------------------------------------------------ */

/** The type of @v (MP_PY_NONE for NULL). */
mp_py_type mp_py_type_of(const mp_py *v);
/** The Python name of a type ("int", "frozenset", "object"). */
const char *mp_py_type_name(mp_py_type t);
/** A bool's value.  @return 0; MP_EINVAL (not a bool). */
MP__PY_CHECK int mp_py_bool(const mp_py *v, bool *out);
/** An int's (or a bool's) value.  @return 0; MP_EINVAL (not an int or
 *  bool); MP_EMSGSIZE (does not fit int64_t: read mp_py_int_bytes()). */
MP__PY_CHECK int mp_py_int(const mp_py *v, int64_t *out);
/** An int's exact value: the fewest bytes of little-endian two's complement
 *  that hold it (borrowed, valid while @v lives).  @return 0; MP_EINVAL. */
MP__PY_CHECK int mp_py_int_bytes(const mp_py *v, const uint8_t **p, size_t *n);
/** A float's value.  @return 0; MP_EINVAL (not a float). */
MP__PY_CHECK int mp_py_float(const mp_py *v, double *out);
/** A str's UTF-8 (NUL-terminated; *len, if not NULL, without the NUL), or
 *  NULL when @v is not a str. */
const char *mp_py_str(const mp_py *v, size_t *len);
/** The bytes of a bytes or bytearray (never NULL for those, even empty), or
 *  NULL for anything else. */
const uint8_t *mp_py_bytes(const mp_py *v, size_t *len);
/** len(v) for str (in bytes of UTF-8), bytes, bytearray, tuple, list, dict,
 *  set, frozenset; MP_EINVAL for the others. */
ssize_t mp_py_len(const mp_py *v);
/** Item @i (borrowed) of a tuple or list, or of a set or frozenset in
 *  insertion order; NULL when out of range or not one of those. */
mp_py *mp_py_item(const mp_py *v, size_t i);
/** Entry @i of a dict in insertion order (borrowed).  @return 0; MP_EINVAL. */
MP__PY_CHECK int mp_py_dict_item(const mp_py *d, size_t i, mp_py **key, mp_py **value);
/** d[key] (borrowed), or NULL when absent, unhashable or not a dict. */
mp_py *mp_py_dict_get(const mp_py *d, const mp_py *key);
/** d[key] for a str key given as NUL-terminated UTF-8 (borrowed) or NULL. */
mp_py *mp_py_dict_get_str(const mp_py *d, const char *key);
/** Whether a set or frozenset holds an item equal to @item. */
bool mp_py_set_contains(const mp_py *s, const mp_py *item);
/** Python's ==: numbers by value (1 == 1.0 == True), bytes == bytearray,
 *  set == frozenset, tuple != list, dicts regardless of order; a node
 *  equals itself (as Python's containers treat a NaN they hold). */
bool mp_py_equal(const mp_py *a, const mp_py *b);

/** An OBJECT node's module ("builtins" also for Python 2's "__builtin__"
 *  and "exceptions"), or NULL when @v is not one. */
const char *mp_py_object_module(const mp_py *v);
/** An OBJECT node's qualified name ("KeyError", "Token"), or NULL. */
const char *mp_py_object_name(const mp_py *v);
/** The arguments it was called with (a tuple; borrowed), or NULL when the
 *  pickle only named it (a class or function itself) or not an OBJECT. */
mp_py *mp_py_object_args(const mp_py *v);
/** The keyword arguments (NEWOBJ_EX; a dict, borrowed), or NULL. */
mp_py *mp_py_object_kwargs(const mp_py *v);
/** The state a BUILD gave it (borrowed; often a dict), or NULL. */
mp_py *mp_py_object_state(const mp_py *v);

/* ---- pickle ------------------------------------------------------------- */

/** mp_py_loads flag: keep what names a class or function (GLOBAL,
 *  STACK_GLOBAL and REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ, BUILD applied to
 *  it) as inert MP_PY_OBJECT nodes instead of refusing the pickle.  Nothing
 *  is ever imported, looked up or called either way. */
#define MP_PY_INERT 1u

/**
 * Decode one pickle of protocol 2-5 (Python 3.8-3.14 write 4 or 5 by
 * default) from @n bytes at @p; the older opcodes such a pickle may hold
 * for these types (MARK-based TUPLE/LIST/DICT, text INT/LONG/FLOAT,
 * PUT/GET) are read too.  Bytes after STOP are ignored, as Python's
 * pickle.loads ignores them.
 *
 * The fixed calls Python writes for bytes, bytearray, set and frozenset
 * in protocols 2 and 3 (`_codecs.encode(s, 'latin1')`, `builtins.bytes`,
 * `bytearray`, `set`, `frozenset`, also under `__builtin__`) are recognised
 * by name and the value built here.  Any other name is never resolved:
 * refused, or with MP_PY_INERT kept as an MP_PY_OBJECT.  Always refused:
 * EXT1/2/4 and PERSID/BINPERSID (registry and persistent references),
 * NEXT_BUFFER/READONLY_BUFFER (out-of-band buffers), Python 2 str opcodes
 * (STRING, BINSTRING, SHORT_BINSTRING, UNICODE).
 *
 * Sizes are checked against the input before anything is allocated; the
 * work and the memory are linear in @n (at most one node, about 100 bytes,
 * per input byte; dict and set lookups are hashed with a per-process
 * random key); nesting beyond MP_PY_MAX_DEPTH, a value that contains
 * itself and an unhashable key or set item are refused.  An inert object
 * takes a state (BUILD) but no items: the APPENDS/SETITEMS Python writes
 * after a list or dict subclass (an OrderedDict, a defaultdict) are
 * refused, and an object is never a dict key or a set item.
 *
 * @return 0 and a new reference in *out; MP_EBADMSG (malformed, or refused
 *         as above; *out NULL); MP_ENOMEM; MP_EINVAL (unknown flags).
 */
MP__PY_CHECK int mp_py_loads(const void *p, size_t n, unsigned flags, mp_py **out);

/**
 * Encode @v as a pickle of protocol 4 (read by every Python 3.4+), with
 * the shortest opcodes and framing as CPython writes them; an item shared
 * by several containers is written once and referenced (memo).  The
 * pickle replaces the contents of @out.
 * @return 0; MP_EINVAL (an MP_PY_OBJECT node, a value that contains itself
 *         or nested deeper than MP_PY_MAX_DEPTH); MP_ENOMEM.
 */
MP__PY_CHECK int mp_py_dumps(const mp_py *v, struct mp_buf *out);

/* ---- over a connection (Python's Connection.send / recv) ---------------- */

struct mp_conn;

/**
 * Send @v as Python's `conn.send(v)` does: one message holding its pickle
 * (protocol 4), which Python's `conn.recv()` returns as the Python value.
 * @return 0; the errors of mp_py_dumps (MP_EINVAL: nothing was sent) and
 *         of mp_conn_send_bytes.
 */
MP__PY_CHECK int mp_conn_send_py(struct mp_conn *c, const mp_py *v);
/**
 * Receive what Python's `conn.send(obj)` sent (any protocol 2-5) as a new
 * value in *out; @flags as for mp_py_loads (MP_PY_INERT to read, say, an
 * exception).  A message longer than MP_CONN_MAXLEN is refused as by
 * mp_conn_recv_bytes.  Nothing the peer sent is ever run.
 * @return 0; the errors of mp_conn_recv_bytes (MP_EOF, ...); MP_EBADMSG
 *         for a pickle refused as by mp_py_loads (the message is consumed).
 */
MP__PY_CHECK int mp_conn_recv_py(struct mp_conn *c, unsigned flags, mp_py **out);

/* ---- C clients of Python managers (py_manager.c) ------------------------- */

/*
 * A C program as a client of a Python BaseManager / SyncManager server, as
 * Python's proxies are (Lib/multiprocessing/managers.py): the
 * multiprocessing.connection wire format and authkey handshake, requests
 * `(id, method, args, kwds)` and replies `('#RETURN', value)`,
 * `('#ERROR', exception)`, `('#TRACEBACK', text)`, `('#PROXY', (exposed,
 * token))`, all pickled with the codec above.  Nothing a server sends is
 * ever run: a reply is decoded with MP_PY_INERT and then checked, and a
 * name (a class or function) is accepted only where the protocol puts one:
 *   - an exception in #ERROR (an inert MP_PY_OBJECT: module, name, args);
 *   - the Token of a #PROXY reply (multiprocessing.managers.Token);
 *   - a #RETURN value that is itself a pickled proxy (RebuildProxy of a
 *     Token; a SyncManager dict holding a list, say), returned as a handle.
 *   - a dict's keys(), values() or items(), which managers.py pickles as
 *     a call of builtins.list on a list: returned as that list.
 * Any other name in a reply (a #RETURN holding a datetime, or os.system,
 * or a proxy inside a list or dict rather than returned by itself) is
 * refused with MP_EBADMSG.  A remote exception is MP_ETASK (Python's
 * "the call raised"), never a code of its own.
 *
 * Reference counts are kept as Python's proxies keep them, so the server's
 * number_of_objects is back where it was once every handle is freed: a
 * handle made by mp_pymgr_create or by a #PROXY reply owns the count the
 * server took when it made the object; a handle made from a pickled proxy
 * in a #RETURN takes one ('incref'); mp_pyproxy_free gives it back
 * ('decref').  Like Python's, these and 'create' go over a connection of
 * their own (one request each); method calls share one connection per
 * manager, on which the server runs one thread for this client.
 *
 * Threads: an mp_pymgr and the handles made from it are used by one thread
 * at a time (a blocking call holds the connection, as a Python proxy holds
 * its thread's one).  Threads that call concurrently connect each their own
 * mp_pymgr, which is what Python's thread-local connections amount to.
 * A forked child does not use its parent's mp_pymgr or handles (they
 * would share one connection): it connects its own, and leaves the
 * parent's alone (not even mp_pyproxy_free, which would decref them).
 */
typedef struct mp_pymgr mp_pymgr;
typedef struct mp_pyproxy mp_pyproxy;

/**
 * Connect to the manager server at @address ("tcp:HOST:PORT" or "HOST:PORT"
 * for Python's ('HOST', PORT); "unix:/path" or "/path" for a unix socket)
 * with @authkey (@keylen bytes; NULL for a server without one, which Python
 * never runs), and check it answers (Python's BaseManager.connect).
 * @return 0; MP_EAUTH (wrong key); MP_ECONNREFUSED, -ENOENT, ... (as
 *         mp_client); MP_EBADMSG (the peer is not a manager server).
 */
MP__PY_CHECK int mp_pymgr_connect(mp_pymgr **out, const char *address, const void *authkey,
                                  size_t keylen);
/** Drop the caller's reference: the connection closes once the handles made
 *  from @m are freed too.  NULL is a no-op. */
void mp_pymgr_free(mp_pymgr *m);

/**
 * Create an object through a registered typeid (Python: `manager.dict()`,
 * `manager.get_queue()`, `manager.Queue(5)`): `type_id(*args, **kwargs)` on
 * the server.  @args a tuple or list, @kwargs a dict; either may be NULL.
 * @return 0 and a handle in *out; MP_ETASK when the server raised (its
 *         traceback, a str, in *error if @error is not NULL; the caller
 *         frees it); MP_EBADMSG (a malformed or refused reply); the errors
 *         of the connection (MP_EOF, MP_EPIPE, ...).
 */
MP__PY_CHECK int mp_pymgr_create(mp_pymgr *m, const char *type_id, const mp_py *args,
                                 const mp_py *kwargs, mp_pyproxy **out, mp_py **error);
/**
 * A handle for an object that already exists on the server, known by its
 * typeid and Token.id (a Python program passes `proxy._token.id`): what
 * Python does when it unpickles a proxy.  It takes its own count
 * ('incref'), given back by mp_pyproxy_free.
 * @return 0; MP_ETASK (no such object: the server's traceback in *error if
 *         not NULL); errors as mp_pymgr_create.
 */
MP__PY_CHECK int mp_pymgr_attach(mp_pymgr *m, const char *type_id, const char *id,
                                 mp_pyproxy **out, mp_py **error);
/**
 * One request to the server itself (Python's managers.dispatch(conn, None,
 * name, args, kwds)): "number_of_objects", "debug_info", "get_methods",
 * "shutdown", ...  Errors as mp_pymgr_create; *result the value returned.
 */
MP__PY_CHECK int mp_pymgr_dispatch(mp_pymgr *m, const char *name, const mp_py *args,
                                   const mp_py *kwargs, mp_py **result);

/**
 * Call @method of the object (Python: proxy._callmethod(method, args,
 * kwds)); @args, @kwargs as for mp_pymgr_create.
 * @return 0 with the value in *result (a new reference) and *proxy NULL;
 *         or 0 with *result NULL and a new handle in *proxy, when the
 *         method returned a proxy (a #PROXY reply, or a pickled proxy
 *         returned as a value); @proxy may be NULL (such a result is then
 *         released at once and *result is None).
 *         MP_ETASK: the method raised; *result is the exception as an inert
 *         object (e.g. module "builtins", name "KeyError", args ('x',)), or
 *         a str (a traceback) for an error outside the method (a name not
 *         exposed).  MP_EBADMSG: a malformed or refused reply (*result
 *         NULL); the errors of the connection.
 */
MP__PY_CHECK int mp_pyproxy_call(mp_pyproxy *p, const char *method, const mp_py *args,
                                 const mp_py *kwargs, mp_py **result, mp_pyproxy **proxy);
/** Give back the handle's reference on the server ('decref'; an
 *  unreachable server is ignored, as Python ignores it) and free it.  NULL
 *  is a no-op. */
void mp_pyproxy_free(mp_pyproxy *p);
/** The typeid the object was made with ("dict", "get_queue"). */
const char *mp_pyproxy_typeid(const mp_pyproxy *p);
/** The server's id of the object (Token.id). */
const char *mp_pyproxy_id(const mp_pyproxy *p);
/** Whether the server exposes @method on this object (as the proxy's
 *  `_exposed_`); false when the server did not say. */
bool mp_pyproxy_exposes(const mp_pyproxy *p, const char *method);

/* Conveniences over mp_pyproxy_call.  @timeout: negative blocks without
 * limit, 0 does not block, else seconds (Python: block, timeout). */

/** q.put(item, block, timeout).  @return 0; MP_EFULL (queue.Full);
 *  otherwise as mp_pyproxy_call (the exception is dropped). */
MP__PY_CHECK int mp_pyproxy_put(mp_pyproxy *q, const mp_py *item, double timeout);
/** q.get(block, timeout) into *item.  @return 0; MP_EEMPTY (queue.Empty);
 *  otherwise as mp_pyproxy_call. */
MP__PY_CHECK int mp_pyproxy_get(mp_pyproxy *q, double timeout, mp_py **item);
/** d[key] into *value (a str key).  @return 0; MP_ENOENT (KeyError);
 *  otherwise as mp_pyproxy_call. */
MP__PY_CHECK int mp_pyproxy_getitem(mp_pyproxy *d, const char *key, mp_py **value);
/** d[key] = value (a str key).  @return 0; as mp_pyproxy_call. */
MP__PY_CHECK int mp_pyproxy_setitem(mp_pyproxy *d, const char *key, const mp_py *value);

#ifdef __cplusplus
}
#endif

#endif
