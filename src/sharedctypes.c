/*
 * Value and Array (Python's sharedctypes): typed memory in the shared
 * arena, optionally with an RLock of their own (Python's default).
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t mp_type_size(mp_type t)
{
    switch (t) {
    case MP_CHAR:
    case MP_INT8:
    case MP_UINT8:
    case MP_BOOL:
        return 1;
    case MP_INT16:
    case MP_UINT16:
        return 2;
    case MP_INT32:
    case MP_UINT32:
    case MP_FLOAT:
        return 4;
    case MP_INT64:
    case MP_UINT64:
    case MP_DOUBLE:
        return 8;
    }
    return 0;
}

/* Both kinds are one block of typed elements plus an optional lock. */
typedef struct shobj {
    mp__handle h; /* the elements' block, or a manager's value */
    mp_type type;
    size_t n;
    mp_lock *lock;
} shobj;

struct mp_value {
    shobj o;
};
struct mp_array {
    shobj o;
};
MP__HANDLE_FIRST(shobj);
_Static_assert(offsetof(struct mp_value, o) == 0 && offsetof(struct mp_array, o) == 0,
               "a value or array handle is its shobj");

static int shobj_new(shobj **out, mp_type type, size_t n, const void *init, bool lock)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    size_t es = mp_type_size(type);
    if (es == 0 || n > SIZE_MAX / es)
        return MP_EINVAL;
    shobj *o = calloc(1, sizeof *o);
    if (o == NULL)
        return MP_ENOMEM;
    o->type = type;
    o->n = n;
    int err = mp__shm_alloc(n * es > 0 ? n * es : 1, &o->h.ref);
    if (err == 0 && lock)
        err = mp_rlock_new(&o->lock);
    if (err < 0) {
        mp__shm_free(&o->h.ref);
        free(o);
        return err;
    }
    if (init != NULL && n > 0)
        memcpy(o->h.ref.p, init, n * es);
    *out = o;
    return 0;
}

static void shobj_free(shobj *o)
{
    if (o == NULL)
        return;
    mp_lock_free(o->lock);
    mp__handle_fini(&o->h);
    free(o);
}

/* Type, then the handle's form and the element count; a local one goes on
 * with its lock, if any. */
static int shobj_reduce(void *obj, mp_buf *out, mp__fdvec *fds, mp__channel ch)
{
    shobj *o = obj;
    int err = mp__put_u8(out, (uint8_t)o->type);
    if (err == 0)
        err = mp__handle_reduce(&o->h, out, fds, ch);
    if (err == 0)
        err = mp__put_u64(out, o->n);
    if (err < 0 || o->h.px)
        return err;
    err = mp__put_u8(out, o->lock != NULL);
    if (err == 0 && o->lock)
        err = mp__lock_objtype.reduce(o->lock, out, fds, ch);
    return err;
}

/* A value or an array may be a manager's (a proxy: a value of one
 * element); their locks are always local. */
static int shobj_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, bool is_array,
                         void **obj)
{
    shobj *o = calloc(1, sizeof *o);
    if (o == NULL)
        return MP_ENOMEM;
    uint8_t type = mp__get_u8(r);
    size_t es = mp_type_size((mp_type)type);
    int err = r->err || es == 0 ? MP_EBADMSG : 0;
    if (err == 0)
        err = mp__handle_rebuild(r, fds, nfds, ch, true, 1, &o->h); /* both served */
    uint64_t n = err == 0 ? mp__get_u64(r) : 0;
    if (err == 0 && (r->err || n > SIZE_MAX / es || (o->h.px && !is_array && n != 1)))
        err = MP_EBADMSG;
    if (err == 0 && o->h.px == NULL) {
        uint8_t has_lock = mp__get_u8(r);
        if (r->err || has_lock > 1 || o->h.ref.size < n * es)
            err = MP_EBADMSG;
        if (err == 0 && has_lock)
            err = mp__lock_rebuild_local(r, fds, nfds, ch, &o->lock);
    }
    if (err < 0) {
        shobj_free(o);
        return err;
    }
    o->type = (mp_type)type;
    o->n = (size_t)n;
    *obj = o;
    return 0;
}

static int value_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, void **obj)
{
    return shobj_rebuild(r, fds, nfds, ch, false, obj);
}

static int array_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, void **obj)
{
    return shobj_rebuild(r, fds, nfds, ch, true, obj);
}

static int shobj_dup(void *obj, void **out)
{
    shobj *o = obj, *d = calloc(1, sizeof *d);
    if (d == NULL)
        return MP_ENOMEM;
    d->type = o->type;
    d->n = o->n;
    int err = mp__handle_dup(&o->h, &d->h);
    if (err == 0 && o->lock)
        err = mp__lock_objtype.dup(o->lock, (void **)&d->lock);
    if (err < 0) {
        shobj_free(d);
        return err;
    }
    *out = d;
    return 0;
}

MP__KIND(mp_value, mp__value_objtype, mp_args_add_value, mp_args_value,
         "value", 'V', MP__TAG_VALUE,
         shobj_reduce, value_rebuild, shobj_dup, shobj_free);

MP__KIND(mp_array, mp__array_objtype, mp_args_add_array, mp_args_array,
         "array", 'A', MP__TAG_ARRAY,
         shobj_reduce, array_rebuild, shobj_dup, shobj_free);

int mp_value_new(mp_value **out, mp_type type, bool lock)
{
    return shobj_new((shobj **)out, type, 1, NULL, lock);
}

void *mp_value_ptr(mp_value *v)
{
    return v ? v->o.h.ref.p : NULL;
}

/* Copy @n bytes under the value's lock when it has one (Python's
 * synchronized .value does the same): never torn by a writer that holds
 * it.  A dead holder's MP_EOWNERDEAD is passed on, the copy made. */
static int locked_copy(shobj *o, void *dst, const void *src, size_t n)
{
    int err = o->lock ? mp_lock_acquire(o->lock, MP_FOREVER) : 0;
    if (err < 0 && err != MP_EOWNERDEAD)
        return err;
    memcpy(dst, src, n);
    if (o->lock) {
        int r = mp_lock_release(o->lock);
        if (err == 0)
            err = r;
    }
    return err;
}

int mp_value_load(mp_value *v, void *out)
{
    if (v == NULL || out == NULL)
        return MP_EINVAL;
    size_t n = mp_type_size(v->o.type);
    if (v->o.h.px) {
        size_t len = 0;
        int err = mp__px_bytes(v->o.h.px, MP__OP_VAL_LOAD, NULL, 0, NAN, NULL, out, n, &len);
        return err == 0 && len != n ? MP_EBADMSG : err;
    }
    return locked_copy(&v->o, out, v->o.h.ref.p, n);
}

int mp_value_store(mp_value *v, const void *in)
{
    if (v == NULL || in == NULL)
        return MP_EINVAL;
    size_t n = mp_type_size(v->o.type);
    if (v->o.h.px)
        return mp__px_bytes(v->o.h.px, MP__OP_VAL_STORE, in, n, NAN, NULL, NULL, 0, NULL);
    return locked_copy(&v->o, v->o.h.ref.p, in, n);
}

/* A handle around a manager's value or array @px (taken on success). */
static int shobj_from_proxy(mp__proxy *px, mp_type type, size_t n, shobj **out)
{
    shobj *o = calloc(1, sizeof *o);
    if (o == NULL)
        return MP_ENOMEM;
    o->h.px = px;
    o->type = type;
    o->n = n;
    *out = o;
    return 0;
}

int mp__value_from_proxy(mp__proxy *px, mp_type type, mp_value **out)
{
    return shobj_from_proxy(px, type, 1, (shobj **)out);
}

mp_type mp_value_type(const mp_value *v)
{
    return v ? v->o.type : (mp_type)-1;
}

mp_lock *mp_value_lock(mp_value *v)
{
    return v ? v->o.lock : NULL;
}

void mp_value_free(mp_value *v)
{
    shobj_free((shobj *)v);
}

int mp_array_new(mp_array **out, mp_type type, size_t n, const void *init, bool lock)
{
    return shobj_new((shobj **)out, type, n, init, lock);
}

void *mp_array_data(mp_array *a)
{
    return a ? a->o.h.ref.p : NULL; /* NULL for a proxy: it has no memory here */
}

/* Elements [@start, @start + @count) of @a as a byte offset and length:
 * MP_EINVAL past the end (and for NULL). */
static int array_range(const mp_array *a, size_t start, size_t count, const void *p,
                       size_t *off, size_t *len)
{
    if (a == NULL || (p == NULL && count > 0) || start > a->o.n || count > a->o.n - start)
        return MP_EINVAL;
    size_t es = mp_type_size(a->o.type);
    *off = start * es;
    *len = count * es;
    return 0;
}

/* A slice of a proxy's array: one request, so it is read or written whole. */
static int array_px(mp_array *a, int op, size_t start, size_t count, void *out,
                    const void *in, size_t len)
{
    mp_args *req = mp__px_with_int(mp__px_op_request(a->o.h.px, op), (int64_t)start), *rep;
    req = op == MP__OP_ARR_LOAD ? mp__px_with_int(req, (int64_t)count)
                                : mp__px_with_bytes(req, in, len);
    int err = mp__px_call(a->o.h.px, req, &rep);
    if (err == 0 && op == MP__OP_ARR_LOAD) {
        size_t k = 0;
        const void *b = mp__args_has(rep, 1, MP_ARG_BYTES) ? mp_args_bytes(rep, 1, &k) : NULL;
        if (b == NULL || k != len)
            err = MP_EBADMSG;
        else if (len > 0)
            memcpy(out, b, len);
    }
    mp_args_free(rep);
    return err;
}

int mp_array_load(mp_array *a, size_t start, size_t count, void *out)
{
    size_t off, len;
    int err = array_range(a, start, count, out, &off, &len);
    if (err < 0)
        return err;
    if (a->o.h.px)
        return array_px(a, MP__OP_ARR_LOAD, start, count, out, NULL, len);
    return len ? locked_copy(&a->o, out, (char *)a->o.h.ref.p + off, len) : 0;
}

int mp_array_store(mp_array *a, size_t start, size_t count, const void *in)
{
    size_t off, len;
    int err = array_range(a, start, count, in, &off, &len);
    if (err < 0)
        return err;
    if (a->o.h.px)
        return array_px(a, MP__OP_ARR_STORE, start, count, NULL, in, len);
    return len ? locked_copy(&a->o, (char *)a->o.h.ref.p + off, in, len) : 0;
}

int mp__array_from_proxy(mp__proxy *px, mp_type type, size_t n, mp_array **out)
{
    return shobj_from_proxy(px, type, n, (shobj **)out);
}

size_t mp_array_len(const mp_array *a)
{
    return a ? a->o.n : 0;
}

mp_type mp_array_type(const mp_array *a)
{
    return a ? a->o.type : (mp_type)-1;
}

mp_lock *mp_array_lock(mp_array *a)
{
    return a ? a->o.lock : NULL;
}

void mp_array_free(mp_array *a)
{
    shobj_free((shobj *)a);
}

