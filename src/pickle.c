/*
 * pickle.c: Python's pickle format for mp_py values, without ever running
 * code (include/multiproc/py.h).  Python's Lib/pickle.py and
 * Lib/pickletools.py describe the opcodes.
 *
 * Decoding.  The decoder owns every node it makes until STOP: each is
 * marked TRACKED and listed, a reference count reaching 0 frees nothing,
 * and the stack and the memo hold borrowed pointers; reference counts
 * count only the edges between nodes.  So a pickle that makes a cycle (or
 * fails half-way through one) frees all it made by walking the list, with
 * no collector.  At STOP one iterative depth-first walk from the result
 * refuses a cycle and nesting deeper than MP_PY_MAX_DEPTH (linear: each
 * node is entered once), then whatever the result does not reach is freed.
 *
 * Every length read from the input is checked against what remains before
 * anything is allocated; a node costs at least one input byte (at most one
 * node per opcode), so memory and work are linear in the input.  Memo
 * indexes are bounded by the input's length.
 *
 * Encoding: protocol 4, framed as CPython frames it (frames of about 64 KiB
 * at opcode boundaries, large str/bytes outside frames), with the shortest
 * opcodes; a node referenced more than once is memoized and read back with
 * BINGET, so a DAG is written in its own size and read back shared.
 */
#include "pyobj.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Opcodes (pickletools). */
enum {
    OP_MARK = '(', OP_STOP = '.', OP_POP = '0', OP_POP_MARK = '1', OP_DUP = '2',
    OP_FLOAT = 'F', OP_INT = 'I', OP_BININT = 'J', OP_BININT1 = 'K', OP_LONG = 'L',
    OP_BININT2 = 'M', OP_NONE = 'N', OP_PERSID = 'P', OP_BINPERSID = 'Q',
    OP_REDUCE = 'R', OP_STRING = 'S', OP_BINSTRING = 'T', OP_SHORT_BINSTRING = 'U',
    OP_UNICODE = 'V', OP_BINUNICODE = 'X', OP_APPEND = 'a', OP_BUILD = 'b',
    OP_GLOBAL = 'c', OP_DICT = 'd', OP_EMPTY_DICT = '}', OP_APPENDS = 'e', OP_GET = 'g',
    OP_BINGET = 'h', OP_INST = 'i', OP_LONG_BINGET = 'j', OP_LIST = 'l',
    OP_EMPTY_LIST = ']', OP_OBJ = 'o', OP_PUT = 'p', OP_BINPUT = 'q',
    OP_LONG_BINPUT = 'r', OP_SETITEM = 's', OP_TUPLE = 't', OP_EMPTY_TUPLE = ')',
    OP_SETITEMS = 'u', OP_BINFLOAT = 'G',
    OP_PROTO = 0x80, OP_NEWOBJ = 0x81, OP_EXT1 = 0x82, OP_EXT2 = 0x83, OP_EXT4 = 0x84,
    OP_TUPLE1 = 0x85, OP_TUPLE2 = 0x86, OP_TUPLE3 = 0x87, OP_NEWTRUE = 0x88,
    OP_NEWFALSE = 0x89, OP_LONG1 = 0x8a, OP_LONG4 = 0x8b,
    OP_BINBYTES = 'B', OP_SHORT_BINBYTES = 'C',
    OP_SHORT_BINUNICODE = 0x8c, OP_BINUNICODE8 = 0x8d, OP_BINBYTES8 = 0x8e,
    OP_EMPTY_SET = 0x8f, OP_ADDITEMS = 0x90, OP_FROZENSET = 0x91, OP_NEWOBJ_EX = 0x92,
    OP_STACK_GLOBAL = 0x93, OP_MEMOIZE = 0x94, OP_FRAME = 0x95,
    OP_BYTEARRAY8 = 0x96, OP_NEXT_BUFFER = 0x97, OP_READONLY_BUFFER = 0x98,
};

/* ======================================================================== */
/* Decoder                                                                  */
/* ======================================================================== */

typedef struct dec {
    const uint8_t *p;
    size_t n, pos;
    unsigned flags;
    mp_py **stack; /* borrowed */
    size_t sp, scap;
    size_t *marks; /* stack heights at each MARK */
    size_t nmarks, mcap;
    mp_py **memo; /* borrowed, by index; NULL = unset */
    size_t memocap, memolen;
    mp_py **all; /* every node made: the decoder frees them itself */
    size_t nall, allcap;
} dec;

#define BAD MP_EBADMSG

static int grow(void **arr, size_t *cap, size_t want, size_t elem)
{
    if (want <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < want)
        n *= 2;
    void *p = realloc(*arr, n * elem);
    if (p == NULL)
        return MP_ENOMEM;
    *arr = p;
    *cap = n;
    return 0;
}

/* Take ownership of a node just made (NULL: out of memory). */
static int track(dec *d, mp_py *v, mp_py **out)
{
    if (v == NULL)
        return MP_ENOMEM;
    if (grow((void **)&d->all, &d->allcap, d->nall + 1, sizeof *d->all) < 0) {
        mp_py_free(v);
        return MP_ENOMEM;
    }
    v->flags |= MP__PY_TRACKED;
    v->refcnt = 0; /* only edges from other nodes count while decoding */
    d->all[d->nall++] = v;
    if (out)
        *out = v;
    return 0;
}

static int push(dec *d, mp_py *v)
{
    if (grow((void **)&d->stack, &d->scap, d->sp + 1, sizeof *d->stack) < 0)
        return MP_ENOMEM;
    d->stack[d->sp++] = v;
    return 0;
}

/* Make, track and push. */
static int push_new(dec *d, mp_py *v)
{
    int err = track(d, v, NULL);
    return err < 0 ? err : push(d, v);
}

/* The bottom of the current segment: items below the last MARK are out of
 * reach until POP_MARK (Python's metastack). */
static size_t base(const dec *d)
{
    return d->nmarks ? d->marks[d->nmarks - 1] : 0;
}

static bool have(const dec *d, size_t k)
{
    return d->sp - base(d) >= k;
}

/* End the segment since the last MARK: its items are stack[*start..sp). */
static int pop_mark(dec *d, size_t *start)
{
    if (d->nmarks == 0)
        return BAD;
    *start = d->marks[--d->nmarks];
    return 0;
}

static int need_bytes(const dec *d, size_t k)
{
    return d->n - d->pos >= k ? 0 : BAD;
}

static uint64_t rd_le(const uint8_t *p, size_t k)
{
    uint64_t v = 0;
    for (size_t i = 0; i < k; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Read a little-endian unsigned of @k bytes. */
static int rd_uint(dec *d, size_t k, uint64_t *out)
{
    if (need_bytes(d, k) < 0)
        return BAD;
    *out = rd_le(d->p + d->pos, k);
    d->pos += k;
    return 0;
}

/* A text line (without its '\n'); no NUL byte in it. */
static int rd_line(dec *d, const char **s, size_t *len)
{
    const uint8_t *start = d->p + d->pos;
    const uint8_t *nl = memchr(start, '\n', d->n - d->pos);
    if (nl == NULL)
        return BAD;
    *s = (const char *)start;
    *len = (size_t)(nl - start);
    d->pos += *len + 1;
    if (memchr(start, '\0', *len) != NULL)
        return BAD;
    return 0;
}

/* A decimal int64 filling all of @s (optional sign). */
static int parse_int64(const char *s, size_t len, int64_t *out)
{
    char buf[32];
    if (len == 0 || len >= sizeof buf)
        return BAD;
    memcpy(buf, s, len);
    buf[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (!(buf[i] >= '0' && buf[i] <= '9') && !(i == 0 && (buf[i] == '-' || buf[i] == '+')))
            return BAD;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno != 0 || *end != '\0' || end == buf)
        return BAD;
    *out = v;
    return 0;
}

static int op_text_int(dec *d, int op)
{
    const char *s;
    size_t len;
    int64_t v;
    int err = rd_line(d, &s, &len);
    if (err < 0)
        return err;
    if (op == OP_INT && len == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1'))
        return push_new(d, mp_py_bool_new(s[1] == '1')); /* protocol 0's bools */
    if (op == OP_LONG && len > 0 && s[len - 1] == 'L')
        len--;
    /* Python 3 never writes these beyond int64 in protocols 2-5 */
    err = parse_int64(s, len, &v);
    return err < 0 ? err : push_new(d, mp_py_int_new(v));
}

static int op_text_float(dec *d)
{
    const char *s;
    size_t len;
    char buf[64];
    int err = rd_line(d, &s, &len);
    if (err < 0)
        return err;
    if (len == 0 || len >= sizeof buf)
        return BAD;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    double v = strtod(buf, &end);
    if (*end != '\0')
        return BAD;
    return push_new(d, mp_py_float_new(v));
}

static int op_str(dec *d, size_t lenbytes)
{
    uint64_t len;
    int err = rd_uint(d, lenbytes, &len);
    if (err < 0)
        return err;
    if (need_bytes(d, len) < 0)
        return BAD;
    mp_py *v = mp__py_str((const char *)d->p + d->pos, len, &err);
    if (v == NULL)
        return err == MP_EINVAL ? BAD : err;
    d->pos += len;
    return push_new(d, v);
}

static int op_bytes(dec *d, size_t lenbytes, int type)
{
    uint64_t len;
    int err = rd_uint(d, lenbytes, &len);
    if (err < 0)
        return err;
    if (need_bytes(d, len) < 0)
        return BAD;
    const uint8_t *p = d->p + d->pos;
    d->pos += len;
    return push_new(d, type == MP_PY_BYTES ? mp_py_bytes_new(p, len)
                                           : mp_py_bytearray_new(p, len));
}

static int op_long(dec *d, size_t lenbytes)
{
    uint64_t len;
    int err = rd_uint(d, lenbytes, &len);
    if (err < 0)
        return err;
    if (lenbytes == 4 && len > INT32_MAX)
        return BAD; /* a negative LONG4 length */
    if (need_bytes(d, len) < 0)
        return BAD;
    const uint8_t *p = d->p + d->pos;
    d->pos += len;
    return push_new(d, mp_py_int_from_bytes(p, len));
}

/* A new tracked sequence (tuple or list) of stack[start..end). */
static int make_seq(dec *d, int type, size_t start, size_t end, mp_py **out)
{
    mp_py *v = NULL;
    int err = track(d, mp__py_alloc(type), &v);
    for (size_t i = start; i < end && err == 0; i++)
        err = mp__py_seq_push(v, mp_py_ref(d->stack[i]));
    *out = v;
    return err;
}

static int op_tuple_n(dec *d, size_t k)
{
    mp_py *t;
    if (!have(d, k))
        return BAD;
    int err = make_seq(d, MP_PY_TUPLE, d->sp - k, d->sp, &t);
    if (err < 0)
        return err;
    d->sp -= k;
    return push(d, t);
}

static int op_mark_seq(dec *d, int type)
{
    size_t start;
    mp_py *v;
    int err = pop_mark(d, &start);
    if (err < 0)
        return err;
    err = make_seq(d, type, start, d->sp, &v);
    if (err < 0)
        return err;
    d->sp = start;
    return push(d, v);
}

/* An unhashable key is a malformed pickle, not a caller's mistake. */
static int map_put(mp_py *m, mp_py *key, mp_py *value)
{
    int err = mp__py_map_put(m, mp_py_ref(key), mp_py_ref(value));
    return err == MP_EINVAL ? BAD : err;
}

/* Add stack[start..end) to @m: pairs for a dict, items for a set. */
static int fill_map(dec *d, mp_py *m, size_t start, size_t end)
{
    int err = 0;
    if (m->type == MP_PY_DICT) {
        if ((end - start) % 2)
            return BAD;
        for (size_t i = start; i < end && err == 0; i += 2)
            err = map_put(m, d->stack[i], d->stack[i + 1]);
    } else {
        for (size_t i = start; i < end && err == 0; i++)
            err = map_put(m, d->stack[i], NULL);
    }
    return err;
}

static int op_mark_map(dec *d, int type)
{
    size_t start;
    mp_py *m;
    int err = pop_mark(d, &start);
    if (err == 0)
        err = track(d, mp__py_alloc(type), &m);
    if (err == 0)
        err = fill_map(d, m, start, d->sp);
    if (err < 0)
        return err;
    d->sp = start;
    return push(d, m);
}

/* APPENDS, SETITEMS, ADDITEMS: the container sits just below the MARK. */
static int op_add_items(dec *d, int type)
{
    size_t start;
    int err = pop_mark(d, &start);
    if (err < 0)
        return err;
    if (start == 0 || start <= base(d))
        return BAD;
    mp_py *c = d->stack[start - 1];
    if (c->type != type)
        return BAD; /* e.g. a list subclass: its own append is never called */
    if (type == MP_PY_LIST) {
        for (size_t i = start; i < d->sp && err == 0; i++)
            err = mp__py_seq_push(c, mp_py_ref(d->stack[i]));
    } else
        err = fill_map(d, c, start, d->sp);
    d->sp = start;
    return err;
}

static int op_put(dec *d, uint64_t idx)
{
    if (!have(d, 1))
        return BAD;
    /* any honest index is below the number of opcodes, so below n */
    if (idx >= d->n)
        return BAD;
    if (idx >= d->memocap) {
        size_t old = d->memocap, want = idx + 1;
        if (want < 2 * old)
            want = 2 * old < d->n ? 2 * old : d->n;
        mp_py **m = realloc(d->memo, want * sizeof *m);
        if (m == NULL)
            return MP_ENOMEM;
        memset(m + old, 0, (want - old) * sizeof *m);
        d->memo = m;
        d->memocap = want;
    }
    if (d->memo[idx] == NULL)
        d->memolen++;
    d->memo[idx] = d->stack[d->sp - 1];
    return 0;
}

static int op_get(dec *d, uint64_t idx)
{
    if (idx >= d->memocap || d->memo[idx] == NULL)
        return BAD;
    return push(d, d->memo[idx]);
}

static int text_index(dec *d, uint64_t *idx)
{
    const char *s;
    size_t len;
    int64_t v = 0;
    int err = rd_line(d, &s, &len);
    if (err == 0)
        err = parse_int64(s, len, &v);
    if (err == 0 && v < 0)
        err = BAD;
    *idx = (uint64_t)v;
    return err;
}

static bool name_is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* GLOBAL / STACK_GLOBAL: a name, never looked up. */
static int make_global(dec *d, const char *mod, size_t mlen, const char *name, size_t nlen)
{
    if (!mp__py_utf8_ok((const uint8_t *)mod, mlen) || !mp__py_utf8_ok((const uint8_t *)name, nlen) ||
        memchr(mod, '\0', mlen) || memchr(name, '\0', nlen))
        return BAD;
    /* Python 2's names for the builtins, as Python 3's fix_imports maps them */
    if (name_is(mod, mlen, "__builtin__") || name_is(mod, mlen, "exceptions")) {
        mod = "builtins";
        mlen = strlen(mod);
    }
    int fn = MP__PY_FN_NONE;
    if (name_is(mod, mlen, "builtins")) {
        if (name_is(name, nlen, "set"))
            fn = MP__PY_FN_SET;
        else if (name_is(name, nlen, "frozenset"))
            fn = MP__PY_FN_FROZENSET;
        else if (name_is(name, nlen, "bytearray"))
            fn = MP__PY_FN_BYTEARRAY;
        else if (name_is(name, nlen, "bytes"))
            fn = MP__PY_FN_BYTES;
    } else if (name_is(mod, mlen, "_codecs") && name_is(name, nlen, "encode"))
        fn = MP__PY_FN_CODECS_ENCODE;
    if (fn == MP__PY_FN_NONE && !(d->flags & MP_PY_INERT))
        return BAD;
    mp_py *v;
    int err = track(d, mp__py_object(mod, mlen, name, nlen), &v);
    if (err < 0)
        return err;
    v->fn = (uint8_t)fn;
    return push(d, v);
}

static int op_global(dec *d)
{
    const char *mod, *name;
    size_t mlen, nlen;
    int err = rd_line(d, &mod, &mlen);
    if (err == 0)
        err = rd_line(d, &name, &nlen);
    return err < 0 ? err : make_global(d, mod, mlen, name, nlen);
}

static int op_stack_global(dec *d)
{
    if (!have(d, 2))
        return BAD;
    mp_py *mod = d->stack[d->sp - 2], *name = d->stack[d->sp - 1];
    if (mod->type != MP_PY_STR || name->type != MP_PY_STR)
        return BAD;
    d->sp -= 2;
    return make_global(d, mod->u.s.p, mod->u.s.len, name->u.s.p, name->u.s.len);
}

static bool is_bare(const mp_py *v)
{
    return v->type == MP_PY_OBJECT && !(v->flags & MP__PY_CALLED);
}

/* str -> bytes, each code point below 256 (Python's latin-1 encoding). */
static int latin1(dec *d, const mp_py *s, int type)
{
    mp_py *v;
    int err = track(d, mp__py_alloc(type), &v);
    if (err < 0)
        return err;
    v->u.s.p = malloc(s->u.s.len + 1); /* never longer than the UTF-8 */
    if (v->u.s.p == NULL)
        return MP_ENOMEM;
    const uint8_t *p = (const uint8_t *)s->u.s.p;
    size_t n = 0;
    for (size_t i = 0; i < s->u.s.len;) {
        if (p[i] < 0x80)
            v->u.s.p[n++] = (char)p[i++];
        else if ((p[i] == 0xc2 || p[i] == 0xc3) && i + 1 < s->u.s.len)
            v->u.s.p[n++] = (char)(((p[i] & 0x03) << 6) | (p[i + 1] & 0x3f)), i += 2;
        else
            return BAD; /* not latin-1: Python would raise UnicodeEncodeError */
    }
    v->u.s.p[n] = '\0';
    v->u.s.len = n;
    return push(d, v);
}

/* The fixed calls of protocols 2 and 3, built here. */
static int call_builtin(dec *d, int fn, const mp_py *args)
{
    size_t argc = args->u.seq.len;
    mp_py *a0 = argc > 0 ? args->u.seq.items[0] : NULL;
    mp_py *a1 = argc > 1 ? args->u.seq.items[1] : NULL;
    bool latin1_args = argc == 2 && a0->type == MP_PY_STR && a1->type == MP_PY_STR &&
                       (strcmp(a1->u.s.p, "latin1") == 0 || strcmp(a1->u.s.p, "latin-1") == 0);
    switch (fn) {
    case MP__PY_FN_CODECS_ENCODE:
        return latin1_args ? latin1(d, a0, MP_PY_BYTES) : BAD;
    case MP__PY_FN_BYTES:
    case MP__PY_FN_BYTEARRAY: {
        int type = fn == MP__PY_FN_BYTES ? MP_PY_BYTES : MP_PY_BYTEARRAY;
        mp_py *(*make)(const void *, size_t) =
            type == MP_PY_BYTES ? mp_py_bytes_new : mp_py_bytearray_new;
        if (argc == 0)
            return push_new(d, make(NULL, 0));
        if (argc == 1 && (a0->type == MP_PY_BYTES || a0->type == MP_PY_BYTEARRAY))
            return push_new(d, make(a0->u.s.p, a0->u.s.len));
        return latin1_args ? latin1(d, a0, type) : BAD;
    }
    case MP__PY_FN_SET:
    case MP__PY_FN_FROZENSET: {
        mp_py *m;
        int err = track(d, mp__py_alloc(fn == MP__PY_FN_SET ? MP_PY_SET : MP_PY_FROZENSET), &m);
        if (err < 0)
            return err;
        if (argc == 1 && (a0->type == MP_PY_LIST || a0->type == MP_PY_TUPLE)) {
            for (size_t i = 0; i < a0->u.seq.len && err == 0; i++)
                err = map_put(m, a0->u.seq.items[i], NULL);
        } else if (argc == 1 && (a0->type == MP_PY_SET || a0->type == MP_PY_FROZENSET)) {
            for (size_t i = 0; i < a0->u.map.len && err == 0; i++)
                err = map_put(m, a0->u.map.e[i].key, NULL);
        } else if (argc != 0)
            err = BAD;
        return err < 0 ? err : push(d, m);
    }
    default:
        return BAD;
    }
}

/* An inert OBJECT for a call of @cls (bare) with @args (a tuple). */
static int make_called(dec *d, const mp_py *cls, mp_py *args, mp_py *kwargs)
{
    if (!(d->flags & MP_PY_INERT) || !is_bare(cls))
        return BAD;
    mp_py *v;
    int err = track(d, mp__py_object(cls->u.o.module, strlen(cls->u.o.module), cls->u.o.name,
                                     strlen(cls->u.o.name)),
                    &v);
    if (err < 0)
        return err;
    v->flags |= MP__PY_CALLED;
    v->u.o.args = mp_py_ref(args);
    v->u.o.kwargs = mp_py_ref(kwargs);
    return push(d, v);
}

static int op_reduce(dec *d)
{
    if (!have(d, 2))
        return BAD;
    mp_py *fn = d->stack[d->sp - 2], *args = d->stack[d->sp - 1];
    if (!is_bare(fn) || args->type != MP_PY_TUPLE)
        return BAD;
    d->sp -= 2;
    if (fn->fn != MP__PY_FN_NONE)
        return call_builtin(d, fn->fn, args);
    return make_called(d, fn, args, NULL);
}

static int op_newobj(dec *d, bool ex)
{
    size_t k = ex ? 3 : 2;
    if (!have(d, k))
        return BAD;
    mp_py *cls = d->stack[d->sp - k], *args = d->stack[d->sp - k + 1];
    mp_py *kwargs = ex ? d->stack[d->sp - 1] : NULL;
    if (args->type != MP_PY_TUPLE || (kwargs && kwargs->type != MP_PY_DICT))
        return BAD;
    d->sp -= k;
    return make_called(d, cls, args, kwargs);
}

/* INST (names on lines) and OBJ (class first): the items since the MARK
 * are the arguments. */
static int op_inst_obj(dec *d, bool inst)
{
    size_t start;
    mp_py *cls, *args;
    int err = 0;
    if (!(d->flags & MP_PY_INERT))
        return BAD;
    if (inst) {
        err = op_global(d); /* pushes the class above the arguments */
        if (err < 0)
            return err;
        cls = d->stack[--d->sp];
    }
    err = pop_mark(d, &start);
    if (err < 0)
        return err;
    if (!inst) {
        if (start == d->sp)
            return BAD;
        cls = d->stack[start++];
    }
    err = make_seq(d, MP_PY_TUPLE, start, d->sp, &args);
    if (err < 0)
        return err;
    d->sp = inst ? start : start - 1;
    return make_called(d, cls, args, NULL);
}

static int op_build(dec *d)
{
    if (!have(d, 2))
        return BAD;
    mp_py *obj = d->stack[d->sp - 2], *state = d->stack[d->sp - 1];
    /* only an inert object takes a state; nothing's __setstate__ runs */
    if (obj->type != MP_PY_OBJECT || !(obj->flags & MP__PY_CALLED))
        return BAD;
    mp_py *old = obj->u.o.state;
    obj->u.o.state = mp_py_ref(state);
    mp_py_free(old);
    d->sp--;
    return 0;
}

/* One opcode; 1 at STOP. */
static int step(dec *d)
{
    uint64_t u;
    int err;
    if (d->pos >= d->n)
        return BAD;
    int op = d->p[d->pos++];
    switch (op) {
    case OP_PROTO:
        err = rd_uint(d, 1, &u);
        return err < 0 ? err : u <= 5 ? 0 : BAD;
    case OP_FRAME:
        /* frames only group opcodes: check the length, read on */
        err = rd_uint(d, 8, &u);
        return err < 0 ? err : need_bytes(d, u);
    case OP_STOP:
        return have(d, 1) ? 1 : BAD;
    case OP_MARK:
        if (d->nmarks > MP_PY_MAX_DEPTH)
            return BAD;
        if (grow((void **)&d->marks, &d->mcap, d->nmarks + 1, sizeof *d->marks) < 0)
            return MP_ENOMEM;
        d->marks[d->nmarks++] = d->sp;
        return 0;
    case OP_POP:
        if (have(d, 1))
            d->sp--;
        else if (d->nmarks > 0)
            d->nmarks--; /* as Python: an empty segment pops its mark */
        else
            return BAD;
        return 0;
    case OP_POP_MARK: {
        size_t start;
        err = pop_mark(d, &start);
        if (err == 0)
            d->sp = start;
        return err;
    }
    case OP_DUP:
        return have(d, 1) ? push(d, d->stack[d->sp - 1]) : BAD;
    case OP_NONE:
        return push_new(d, mp_py_none_new());
    case OP_NEWTRUE:
    case OP_NEWFALSE:
        return push_new(d, mp_py_bool_new(op == OP_NEWTRUE));
    case OP_BININT:
        err = rd_uint(d, 4, &u);
        return err < 0 ? err : push_new(d, mp_py_int_new((int32_t)(uint32_t)u));
    case OP_BININT1:
    case OP_BININT2:
        err = rd_uint(d, op == OP_BININT1 ? 1 : 2, &u);
        return err < 0 ? err : push_new(d, mp_py_int_new((int64_t)u));
    case OP_INT:
    case OP_LONG:
        return op_text_int(d, op);
    case OP_LONG1:
        return op_long(d, 1);
    case OP_LONG4:
        return op_long(d, 4);
    case OP_BINFLOAT: {
        double f;
        if (need_bytes(d, 8) < 0)
            return BAD;
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++)
            bits = bits << 8 | d->p[d->pos + i]; /* big-endian */
        d->pos += 8;
        memcpy(&f, &bits, sizeof f);
        return push_new(d, mp_py_float_new(f));
    }
    case OP_FLOAT:
        return op_text_float(d);
    case OP_SHORT_BINUNICODE:
        return op_str(d, 1);
    case OP_BINUNICODE:
        return op_str(d, 4);
    case OP_BINUNICODE8:
        return op_str(d, 8);
    case OP_SHORT_BINBYTES:
        return op_bytes(d, 1, MP_PY_BYTES);
    case OP_BINBYTES:
        return op_bytes(d, 4, MP_PY_BYTES);
    case OP_BINBYTES8:
        return op_bytes(d, 8, MP_PY_BYTES);
    case OP_BYTEARRAY8:
        return op_bytes(d, 8, MP_PY_BYTEARRAY);
    case OP_EMPTY_TUPLE:
        return op_tuple_n(d, 0);
    case OP_TUPLE1:
    case OP_TUPLE2:
    case OP_TUPLE3:
        return op_tuple_n(d, (size_t)(op - OP_TUPLE1 + 1));
    case OP_TUPLE:
        return op_mark_seq(d, MP_PY_TUPLE);
    case OP_EMPTY_LIST:
        return push_new(d, mp_py_list_new());
    case OP_LIST:
        return op_mark_seq(d, MP_PY_LIST);
    case OP_APPEND:
        if (!have(d, 2) || d->stack[d->sp - 2]->type != MP_PY_LIST)
            return BAD;
        d->sp--;
        return mp__py_seq_push(d->stack[d->sp - 1], mp_py_ref(d->stack[d->sp]));
    case OP_APPENDS:
        return op_add_items(d, MP_PY_LIST);
    case OP_EMPTY_DICT:
        return push_new(d, mp_py_dict_new());
    case OP_DICT:
        return op_mark_map(d, MP_PY_DICT);
    case OP_SETITEM:
        if (!have(d, 3) || d->stack[d->sp - 3]->type != MP_PY_DICT)
            return BAD;
        d->sp -= 2;
        return map_put(d->stack[d->sp - 1], d->stack[d->sp], d->stack[d->sp + 1]);
    case OP_SETITEMS:
        return op_add_items(d, MP_PY_DICT);
    case OP_EMPTY_SET:
        return push_new(d, mp_py_set_new());
    case OP_ADDITEMS:
        return op_add_items(d, MP_PY_SET);
    case OP_FROZENSET:
        return op_mark_map(d, MP_PY_FROZENSET);
    case OP_PUT:
        err = text_index(d, &u);
        return err < 0 ? err : op_put(d, u);
    case OP_BINPUT:
    case OP_LONG_BINPUT:
        err = rd_uint(d, op == OP_BINPUT ? 1 : 4, &u);
        return err < 0 ? err : op_put(d, u);
    case OP_MEMOIZE:
        return op_put(d, d->memolen);
    case OP_GET:
        err = text_index(d, &u);
        return err < 0 ? err : op_get(d, u);
    case OP_BINGET:
    case OP_LONG_BINGET:
        err = rd_uint(d, op == OP_BINGET ? 1 : 4, &u);
        return err < 0 ? err : op_get(d, u);
    case OP_GLOBAL:
        return op_global(d);
    case OP_STACK_GLOBAL:
        return op_stack_global(d);
    case OP_REDUCE:
        return op_reduce(d);
    case OP_NEWOBJ:
        return op_newobj(d, false);
    case OP_NEWOBJ_EX:
        return op_newobj(d, true);
    case OP_BUILD:
        return op_build(d);
    case OP_INST:
        return op_inst_obj(d, true);
    case OP_OBJ:
        return op_inst_obj(d, false);
    default:
        /* EXT1/2/4, PERSID, BINPERSID, NEXT_BUFFER, READONLY_BUFFER,
         * Python 2's str opcodes, and whatever is not an opcode */
        return BAD;
    }
}

/* The walk at STOP: a cycle, nesting deeper than MP_PY_MAX_DEPTH or (without
 * MP_PY_INERT) an OBJECT left in the value refuse the pickle.  Iterative,
 * with a path no longer than MP_PY_MAX_DEPTH + 1. */
static int check_value(mp_py *root, unsigned flags)
{
    struct frame {
        mp_py *v;
        size_t next;
    } *path = malloc((MP_PY_MAX_DEPTH + 2) * sizeof *path);
    size_t len = 0;
    int err = 0;
    if (path == NULL)
        return MP_ENOMEM;
    root->flags |= MP__PY_GREY;
    path[len++] = (struct frame){root, 0};
    while (len > 0) {
        struct frame *f = &path[len - 1];
        mp_py *v = f->v;
        if (v->type == MP_PY_OBJECT && !(flags & MP_PY_INERT)) {
            err = BAD;
            break;
        }
        if (f->next < mp__py_nchildren(v)) {
            mp_py *c = mp__py_child(v, f->next++);
            if (c == NULL || (c->flags & MP__PY_BLACK))
                continue;
            if ((c->flags & MP__PY_GREY) || len > MP_PY_MAX_DEPTH) {
                err = BAD; /* a cycle, or too deep */
                break;
            }
            c->flags |= MP__PY_GREY;
            path[len++] = (struct frame){c, 0};
            continue;
        }
        uint32_t depth = 1;
        for (size_t i = 0, k = mp__py_nchildren(v); i < k; i++) {
            mp_py *c = mp__py_child(v, i);
            if (c && c->depth + 1 > depth)
                depth = c->depth + 1;
        }
        if (depth > MP_PY_MAX_DEPTH) {
            err = BAD;
            break;
        }
        v->depth = depth;
        v->flags = (uint8_t)((v->flags & ~MP__PY_GREY) | MP__PY_BLACK);
        len--;
    }
    free(path);
    return err;
}

static void dec_free(dec *d)
{
    free(d->stack);
    free(d->marks);
    free(d->memo);
    free(d->all);
}

int mp_py_loads(const void *p, size_t n, unsigned flags, mp_py **out)
{
    dec d = {.p = p, .n = n, .flags = flags};
    mp_py *root = NULL;
    int err;

    *out = NULL;
    if (flags & ~MP_PY_INERT || (p == NULL && n > 0))
        return MP_EINVAL;
    while ((err = step(&d)) == 0)
        ;
    if (err == 1) {
        root = d.stack[d.sp - 1];
        err = check_value(root, flags);
    }
    if (err < 0) {
        for (size_t i = 0; i < d.nall; i++)
            mp__py_destroy(d.all[i]);
        dec_free(&d);
        return err;
    }
    /* What the result does not reach is garbage: take its edges into the
     * result's nodes off their counts, then free it without walking it. */
    for (size_t i = 0; i < d.nall; i++) {
        mp_py *v = d.all[i];
        if (v->flags & MP__PY_BLACK)
            continue;
        for (size_t k = 0, nk = mp__py_nchildren(v); k < nk; k++) {
            mp_py *c = mp__py_child(v, k);
            if (c && (c->flags & MP__PY_BLACK))
                c->refcnt--;
        }
    }
    for (size_t i = 0; i < d.nall; i++) {
        mp_py *v = d.all[i];
        if (v->flags & MP__PY_BLACK)
            v->flags &= (uint8_t) ~(MP__PY_BLACK | MP__PY_TRACKED);
        else
            mp__py_destroy(v);
    }
    root->refcnt++; /* the caller's reference */
    dec_free(&d);
    *out = root;
    return 0;
}

/* ======================================================================== */
/* Encoder                                                                  */
/* ======================================================================== */

/* CPython's framer: a frame is closed at the first opcode boundary past
 * 64 KiB; a frame of fewer than 4 bytes gets no FRAME header; a str or
 * bytes payload of 64 KiB or more is written outside any frame. */
#define FRAME_TARGET 65536
#define FRAME_MIN 4
#define BATCH 1000 /* items per APPENDS/SETITEMS/ADDITEMS, as CPython */

typedef struct memo_slot {
    const mp_py *v;
    uint32_t idx; /* memo index; IN_PROGRESS until it is memoized */
    bool busy;    /* its items are being written: met again, it is a cycle */
} memo_slot;

#define IN_PROGRESS UINT32_MAX

typedef struct enc {
    struct mp_buf *b;
    size_t frame; /* offset of the open frame's 9-byte header */
    memo_slot *memo; /* the nodes referenced more than once */
    size_t nslots, used;
    uint32_t nmemo;
} enc;

static int put(enc *e, const void *p, size_t n)
{
    return mp_buf_append(e->b, p, n);
}

static int put1(enc *e, int op)
{
    uint8_t c = (uint8_t)op;
    return put(e, &c, 1);
}

/* Opcode @op and @k bytes of little-endian @v. */
static int put_op_le(enc *e, int op, uint64_t v, size_t k)
{
    uint8_t buf[9];
    buf[0] = (uint8_t)op;
    for (size_t i = 0; i < k; i++)
        buf[1 + i] = (uint8_t)(v >> (8 * i));
    return put(e, buf, 1 + k);
}

static int frame_open(enc *e)
{
    e->frame = e->b->len;
    static const uint8_t hdr[9] = {OP_FRAME};
    return put(e, hdr, sizeof hdr);
}

/* Close the open frame: write its length, or drop its header when it is
 * under FRAME_MIN bytes (an empty one included). */
static void frame_close(enc *e)
{
    uint8_t *b = e->b->data;
    size_t len = e->b->len - e->frame - 9;
    if (len < FRAME_MIN) {
        memmove(b + e->frame, b + e->frame + 9, len);
        e->b->len -= 9;
    } else {
        for (int i = 0; i < 8; i++)
            b[e->frame + 1 + i] = (uint8_t)((uint64_t)len >> (8 * i));
    }
}

/* At an opcode boundary: a full frame is closed and another opened. */
static int frame_boundary(enc *e)
{
    if (e->b->len - e->frame - 9 < FRAME_TARGET)
        return 0;
    frame_close(e);
    return frame_open(e);
}

/* A str/bytes opcode with its length header (@hdr, @hlen) and payload. */
static int put_payload(enc *e, const uint8_t *hdr, size_t hlen, const void *p, size_t n)
{
    int err;
    if (n >= FRAME_TARGET) {
        /* outside any frame: the reader need not buffer a whole frame */
        frame_close(e);
        if ((err = put(e, hdr, hlen)) < 0 || (err = put(e, p, n)) < 0)
            return err;
        return frame_open(e);
    }
    if ((err = put(e, hdr, hlen)) < 0)
        return err;
    return put(e, p, n);
}

static int put_sized(enc *e, int op1, int op4, int op8, const void *p, size_t n)
{
    uint8_t hdr[9];
    size_t hlen;
    if (n < 256 && op1) {
        hdr[0] = (uint8_t)op1;
        hdr[1] = (uint8_t)n;
        hlen = 2;
    } else if (n <= UINT32_MAX) {
        hdr[0] = (uint8_t)op4;
        for (int i = 0; i < 4; i++)
            hdr[1 + i] = (uint8_t)(n >> (8 * i));
        hlen = 5;
    } else {
        hdr[0] = (uint8_t)op8;
        for (int i = 0; i < 8; i++)
            hdr[1 + i] = (uint8_t)((uint64_t)n >> (8 * i));
        hlen = 9;
    }
    return put_payload(e, hdr, hlen, p, n);
}

static int put_int(enc *e, const mp_py *v)
{
    if (!v->u.n.big) {
        int64_t i = v->u.n.i;
        if (i >= 0 && i < 256)
            return put_op_le(e, OP_BININT1, (uint64_t)i, 1);
        if (i >= 0 && i < 65536)
            return put_op_le(e, OP_BININT2, (uint64_t)i, 2);
        if (i >= INT32_MIN && i <= INT32_MAX)
            return put_op_le(e, OP_BININT, (uint64_t)(uint32_t)(int32_t)i, 4);
    }
    const uint8_t *p = v->u.n.big ? v->u.n.big : v->u.n.small;
    size_t n = v->u.n.n;
    int err;
    if (n < 256)
        err = put_op_le(e, OP_LONG1, n, 1);
    else if (n <= INT32_MAX)
        err = put_op_le(e, OP_LONG4, n, 4);
    else
        return MP_EINVAL; /* Python cannot read it either */
    return err < 0 ? err : put(e, p, n);
}

static int put_float(enc *e, double f)
{
    uint64_t bits;
    uint8_t buf[9] = {OP_BINFLOAT};
    memcpy(&bits, &f, sizeof bits);
    for (int i = 0; i < 8; i++)
        buf[1 + i] = (uint8_t)(bits >> (56 - 8 * i)); /* big-endian */
    return put(e, buf, sizeof buf);
}

static int put_str(enc *e, const char *s, size_t n)
{
    return put_sized(e, OP_SHORT_BINUNICODE, OP_BINUNICODE, OP_BINUNICODE8, s, n);
}

/* ---- the memo of shared nodes ------------------------------------------- */

static memo_slot *memo_find(enc *e, const mp_py *v)
{
    if (e->nslots == 0)
        return NULL;
    size_t s = ((uintptr_t)v >> 4) * 0x9e3779b97f4a7c15u >> 20 & (e->nslots - 1);
    for (;; s = (s + 1) & (e->nslots - 1)) {
        if (e->memo[s].v == v)
            return &e->memo[s];
        if (e->memo[s].v == NULL)
            return NULL;
    }
}

static int memo_add(enc *e, const mp_py *v, uint32_t idx)
{
    if (2 * (e->used + 1) > e->nslots) {
        size_t n = e->nslots ? 2 * e->nslots : 64;
        memo_slot *old = e->memo;
        size_t oldn = e->nslots;
        e->memo = calloc(n, sizeof *e->memo);
        if (e->memo == NULL) {
            e->memo = old;
            return MP_ENOMEM;
        }
        e->nslots = n;
        e->used = 0;
        for (size_t i = 0; i < oldn; i++)
            if (old[i].v)
                memo_add(e, old[i].v, old[i].idx); /* cannot grow again */
        for (size_t i = 0; i < oldn; i++)
            if (old[i].v && old[i].busy)
                memo_find(e, old[i].v)->busy = true;
        free(old);
    }
    size_t s = ((uintptr_t)v >> 4) * 0x9e3779b97f4a7c15u >> 20 & (e->nslots - 1);
    while (e->memo[s].v != NULL)
        s = (s + 1) & (e->nslots - 1);
    e->memo[s] = (memo_slot){v, idx, idx == IN_PROGRESS};
    e->used++;
    return 0;
}

/* After a shared node is made: MEMOIZE, and remember its index. */
static int memoize(enc *e, const mp_py *v)
{
    if (v->refcnt <= 1)
        return 0;
    memo_slot *m = memo_find(e, v);
    int err = put1(e, OP_MEMOIZE);
    if (err < 0)
        return err;
    if (m)
        m->idx = e->nmemo++;
    else
        err = memo_add(e, v, e->nmemo++);
    return err;
}

static int enc_value(enc *e, const mp_py *v, unsigned depth);

/* The items of a list, dict or set in batches; @op1 for a lone item (0:
 * none), @opn after a MARK. */
static int put_batches(enc *e, const mp_py *v, size_t nitems, int op1, int opn, unsigned depth)
{
    size_t per = v->type == MP_PY_DICT ? 2 : 1;
    int err = 0;
    for (size_t at = 0; at < nitems && err == 0;) {
        size_t k = nitems - at < BATCH ? nitems - at : BATCH;
        if (k > 1 || !op1)
            err = put1(e, OP_MARK);
        for (size_t i = 0; i < k * per && err == 0; i++)
            err = enc_value(e, mp__py_child(v, at * per + i), depth + 1);
        if (err == 0)
            err = put1(e, (k > 1 || !op1) ? opn : op1);
        at += k;
    }
    return err;
}

static int enc_value(enc *e, const mp_py *v, unsigned depth)
{
    int err;
    bool shared = v->refcnt > 1 && v->type >= MP_PY_STR;

    if (depth > MP_PY_MAX_DEPTH)
        return MP_EINVAL; /* also what stops a cycle of unshared nodes */
    if ((err = frame_boundary(e)) < 0)
        return err;
    if (shared) {
        memo_slot *m = memo_find(e, v);
        if (m && m->busy)
            return MP_EINVAL; /* it contains itself */
        if (m)
            return m->idx < 256 ? put_op_le(e, OP_BINGET, m->idx, 1)
                                : put_op_le(e, OP_LONG_BINGET, m->idx, 4);
        if ((err = memo_add(e, v, IN_PROGRESS)) < 0)
            return err;
    }
    switch (v->type) {
    case MP_PY_NONE:
        return put1(e, OP_NONE);
    case MP_PY_BOOL:
        return put1(e, v->u.b ? OP_NEWTRUE : OP_NEWFALSE);
    case MP_PY_INT:
        return put_int(e, v);
    case MP_PY_FLOAT:
        return put_float(e, v->u.f);
    case MP_PY_STR:
        err = put_str(e, v->u.s.p, v->u.s.len);
        break;
    case MP_PY_BYTES:
        err = put_sized(e, OP_SHORT_BINBYTES, OP_BINBYTES, OP_BINBYTES8, v->u.s.p, v->u.s.len);
        break;
    case MP_PY_BYTEARRAY:
        /* protocol 4 has no bytearray opcode: builtins.bytearray(b"...") as
         * CPython writes it (a fixed name, the only one we ever write) */
        if ((err = put_str(e, "builtins", 8)) < 0 || (err = put_str(e, "bytearray", 9)) < 0 ||
            (err = put1(e, OP_STACK_GLOBAL)) < 0)
            return err;
        if (v->u.s.len == 0)
            err = put1(e, OP_EMPTY_TUPLE);
        else if ((err = put_sized(e, OP_SHORT_BINBYTES, OP_BINBYTES, OP_BINBYTES8, v->u.s.p,
                                  v->u.s.len)) == 0)
            err = put1(e, OP_TUPLE1);
        if (err == 0)
            err = put1(e, OP_REDUCE);
        break;
    case MP_PY_TUPLE: {
        size_t n = v->u.seq.len;
        if (n > 3 && (err = put1(e, OP_MARK)) < 0)
            return err;
        for (size_t i = 0; i < n && err == 0; i++)
            err = enc_value(e, v->u.seq.items[i], depth + 1);
        if (err == 0)
            err = put1(e, n == 0 ? OP_EMPTY_TUPLE : n <= 3 ? OP_TUPLE1 + (int)n - 1 : OP_TUPLE);
        break;
    }
    case MP_PY_LIST:
    case MP_PY_DICT:
    case MP_PY_SET: {
        static const int empty[] = {[MP_PY_LIST] = OP_EMPTY_LIST, [MP_PY_DICT] = OP_EMPTY_DICT,
                                    [MP_PY_SET] = OP_EMPTY_SET};
        static const int one[] = {[MP_PY_LIST] = OP_APPEND, [MP_PY_DICT] = OP_SETITEM,
                                  [MP_PY_SET] = 0};
        static const int many[] = {[MP_PY_LIST] = OP_APPENDS, [MP_PY_DICT] = OP_SETITEMS,
                                   [MP_PY_SET] = OP_ADDITEMS};
        /* made empty and memoized first, then filled: as CPython does */
        if ((err = put1(e, empty[v->type])) < 0 || (shared && (err = memoize(e, v)) < 0))
            return err;
        size_t n = v->type == MP_PY_LIST ? v->u.seq.len : v->u.map.len;
        err = put_batches(e, v, n, one[v->type], many[v->type], depth);
        if (err == 0 && shared)
            memo_find(e, v)->busy = false;
        return err;
    }
    case MP_PY_FROZENSET:
        if ((err = put1(e, OP_MARK)) < 0)
            return err;
        for (size_t i = 0; i < v->u.map.len && err == 0; i++)
            err = enc_value(e, v->u.map.e[i].key, depth + 1);
        if (err == 0)
            err = put1(e, OP_FROZENSET);
        break;
    default:
        return MP_EINVAL; /* an OBJECT: we never write a reference to code */
    }
    if (err == 0 && shared) {
        memo_find(e, v)->busy = false;
        err = memoize(e, v);
    }
    return err;
}

int mp_py_dumps(const mp_py *v, struct mp_buf *out)
{
    enc e = {.b = out};
    int err;
    if (v == NULL || out == NULL)
        return MP_EINVAL;
    out->len = 0;
    static const uint8_t proto[2] = {OP_PROTO, 4};
    if ((err = put(&e, proto, 2)) < 0 || (err = frame_open(&e)) < 0)
        goto done;
    err = enc_value(&e, v, 1);
    if (err == 0)
        err = put1(&e, OP_STOP);
    if (err == 0)
        frame_close(&e);
done:
    free(e.memo);
    if (err < 0)
        out->len = 0;
    return err;
}
