/*
 * pyobj.c: mp_py, Python values in C (include/multiproc/py.h).
 *
 * Reference counted nodes; dicts and sets keep insertion order with a hash
 * index (keyed per process, so that nobody can choose keys that collide)
 * once they hold more than a few entries.  Equality and hashing follow
 * Python for the hashable kinds: numbers by value (1 == 1.0 == True, also
 * 2.0**70 == 2**70), str with str, bytes with bytes (and bytearray),
 * tuples item by item, frozensets as sets.
 */
#include "pyobj.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Small dicts and sets are scanned; an index is built beyond this. */
#define MAP_LINEAR_MAX 8

/* ---- hashing ------------------------------------------------------------ */

static uint64_t sip_k0, sip_k1;
static pthread_once_t sip_once = PTHREAD_ONCE_INIT;

static void sip_init(void)
{
    uint64_t k[2];
    if (getrandom(k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k) {
        /* No entropy yet (early boot): still differs between processes. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15u ^ (uint64_t)getpid();
        k[1] = (uint64_t)ts.tv_sec * 0xbf58476d1ce4e5b9u ^ (uintptr_t)&ts;
    }
    sip_k0 = k[0];
    sip_k1 = k[1];
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                               \
    do {                                                                       \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);              \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                 \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                 \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);              \
    } while (0)

/* SipHash-1-3 of @n bytes, the kind @tag folded into the key so that b"a"
 * and "a" (unequal in Python) do not collide by construction. */
static uint64_t siphash(uint8_t tag, const void *p, size_t n)
{
    pthread_once(&sip_once, sip_init);
    const uint8_t *in = p;
    uint64_t k0 = sip_k0 ^ tag, k1 = sip_k1;
    uint64_t v0 = k0 ^ 0x736f6d6570736575u, v1 = k1 ^ 0x646f72616e646f6du;
    uint64_t v2 = k0 ^ 0x6c7967656e657261u, v3 = k1 ^ 0x7465646279746573u;
    uint64_t b = (uint64_t)n << 56, m;
    size_t i;
    for (i = 0; i + 8 <= n; i += 8) {
        memcpy(&m, in + i, 8);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    m = 0;
    for (size_t j = 0; i + j < n; j++)
        m |= (uint64_t)in[i + j] << (8 * j);
    b |= m;
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* ---- integers ----------------------------------------------------------- */

/* Drop the redundant sign bytes of little-endian two's complement; 0 is
 * no bytes at all (as pickle's LONG1 writes it). */
static size_t int_minimal(const uint8_t *b, size_t n)
{
    while (n > 0) {
        uint8_t top = b[n - 1];
        bool below_neg = n >= 2 && (b[n - 2] & 0x80);
        if (top == 0x00 && (n == 1 || !below_neg))
            n--;
        else if (top == 0xff && n >= 2 && below_neg)
            n--;
        else
            break;
    }
    return n;
}

static size_t int64_le(int64_t i, uint8_t out[8])
{
    uint64_t u = (uint64_t)i;
    for (int k = 0; k < 8; k++)
        out[k] = (uint8_t)(u >> (8 * k));
    return int_minimal(out, 8);
}

/* Room for any finite double's integer value (2**1024) and a sign byte. */
#define NUM_BYTES_MAX 136

/* If @v is a number with an integer value (int, bool, integral float), its
 * minimal two's complement bytes in *p and *n (possibly in @tmp); else false. */
static bool num_integral(const mp_py *v, uint8_t tmp[NUM_BYTES_MAX], const uint8_t **p,
                         size_t *n)
{
    switch (v->type) {
    case MP_PY_INT:
        *p = v->u.n.big ? v->u.n.big : v->u.n.small;
        *n = v->u.n.n;
        return true;
    case MP_PY_BOOL:
        *n = int64_le(v->u.b, tmp);
        *p = tmp;
        return true;
    case MP_PY_FLOAT: {
        /* no libm: the bits say it all */
        double d = v->u.f;
        if (!isfinite(d))
            return false;
        if (d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
            if ((double)(int64_t)d != d)
                return false;
            *n = int64_le((int64_t)d, tmp);
            *p = tmp;
            return true;
        }
        /* |d| >= 2**63, always integral: its 53-bit mantissa shifted left */
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        uint64_t m = (bits & (((uint64_t)1 << 52) - 1)) | (uint64_t)1 << 52;
        int shift = (int)((bits >> 52) & 0x7ff) - 1075;
        memset(tmp, 0, NUM_BYTES_MAX);
        for (int bit = 0; bit < 53; bit++)
            if (m >> bit & 1) {
                int at = bit + shift;
                tmp[at / 8] |= (uint8_t)(1u << (at % 8));
            }
        size_t len = (size_t)((53 + shift) / 8 + 2);
        if (d < 0) {
            unsigned carry = 1;
            for (size_t k = 0; k < len; k++) {
                unsigned x = (uint8_t)~tmp[k] + carry;
                tmp[k] = (uint8_t)x;
                carry = x >> 8;
            }
        }
        *n = int_minimal(tmp, len);
        *p = tmp;
        return true;
    }
    default:
        return false;
    }
}

static bool is_number(const mp_py *v)
{
    return v->type == MP_PY_INT || v->type == MP_PY_BOOL || v->type == MP_PY_FLOAT;
}

/* ---- nodes -------------------------------------------------------------- */

mp_py *mp__py_alloc(int type)
{
    mp_py *v = calloc(1, sizeof *v);
    if (v == NULL)
        return NULL;
    v->refcnt = 1;
    v->type = (uint8_t)type;
    return v;
}

void mp__py_destroy(mp_py *v)
{
    switch (v->type) {
    case MP_PY_INT:
        free(v->u.n.big);
        break;
    case MP_PY_STR:
    case MP_PY_BYTES:
    case MP_PY_BYTEARRAY:
        free(v->u.s.p);
        break;
    case MP_PY_TUPLE:
    case MP_PY_LIST:
        free(v->u.seq.items);
        break;
    case MP_PY_DICT:
    case MP_PY_SET:
    case MP_PY_FROZENSET:
        free(v->u.map.e);
        free(v->u.map.slots);
        break;
    case MP_PY_OBJECT:
        free(v->u.o.module);
        free(v->u.o.name);
        break;
    default:
        break;
    }
    free(v);
}

size_t mp__py_nchildren(const mp_py *v)
{
    switch (v->type) {
    case MP_PY_TUPLE:
    case MP_PY_LIST:
        return v->u.seq.len;
    case MP_PY_DICT:
        return 2 * v->u.map.len;
    case MP_PY_SET:
    case MP_PY_FROZENSET:
        return v->u.map.len;
    case MP_PY_OBJECT:
        return 3;
    default:
        return 0;
    }
}

mp_py *mp__py_child(const mp_py *v, size_t i)
{
    switch (v->type) {
    case MP_PY_TUPLE:
    case MP_PY_LIST:
        return v->u.seq.items[i];
    case MP_PY_DICT:
        return i % 2 ? v->u.map.e[i / 2].value : v->u.map.e[i / 2].key;
    case MP_PY_SET:
    case MP_PY_FROZENSET:
        return v->u.map.e[i].key;
    case MP_PY_OBJECT:
        return i == 0 ? v->u.o.args : i == 1 ? v->u.o.kwargs : v->u.o.state;
    default:
        return NULL;
    }
}

mp_py *mp_py_ref(mp_py *v)
{
    if (v != NULL)
        v->refcnt++;
    return v;
}

/* Drop one reference to @c; true when it is now garbage to destroy. */
static bool unref(mp_py *c)
{
    if (c->flags & MP__PY_TRACKED) {
        /* the decoder frees its nodes itself (pickle.c) */
        if (c->refcnt > 0)
            c->refcnt--;
        return false;
    }
    return --c->refcnt == 0;
}

void mp_py_free(mp_py *v)
{
    if (v == NULL || !unref(v))
        return;
    /* Iterative, so that a deep value built by hand cannot overflow the
     * C stack; a failed worklist growth falls back to recursion. */
    mp_py **work = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        size_t k = mp__py_nchildren(v);
        for (size_t i = 0; i < k; i++) {
            mp_py *c = mp__py_child(v, i);
            if (c == NULL || !unref(c))
                continue;
            if (n == cap) {
                size_t ncap = cap ? 2 * cap : 64;
                mp_py **nw = realloc(work, ncap * sizeof *nw);
                if (nw == NULL) {
                    c->refcnt = 1;
                    mp_py_free(c);
                    continue;
                }
                work = nw;
                cap = ncap;
            }
            work[n++] = c;
        }
        mp__py_destroy(v);
        if (n == 0)
            break;
        v = work[--n];
    }
    free(work);
}

mp_py *mp_py_none_new(void)
{
    return mp__py_alloc(MP_PY_NONE);
}

mp_py *mp_py_bool_new(bool b)
{
    mp_py *v = mp__py_alloc(MP_PY_BOOL);
    if (v)
        v->u.b = b;
    return v;
}

mp_py *mp_py_int_new(int64_t i)
{
    mp_py *v = mp__py_alloc(MP_PY_INT);
    if (v) {
        v->u.n.i = i;
        v->u.n.n = int64_le(i, v->u.n.small);
    }
    return v;
}

mp_py *mp_py_int_from_bytes(const void *le, size_t n)
{
    const uint8_t *b = le;
    if (b == NULL && n > 0)
        return NULL;
    n = n ? int_minimal(b, n) : 0;
    if (n <= 8) {
        /* sign-extend into an int64 */
        uint64_t u = (n > 0 && (b[n - 1] & 0x80)) ? UINT64_MAX : 0;
        for (size_t k = 0; k < n; k++) {
            u &= ~((uint64_t)0xff << (8 * k));
            u |= (uint64_t)b[k] << (8 * k);
        }
        return mp_py_int_new((int64_t)u);
    }
    mp_py *v = mp__py_alloc(MP_PY_INT);
    if (v == NULL)
        return NULL;
    v->u.n.big = malloc(n);
    if (v->u.n.big == NULL) {
        free(v);
        return NULL;
    }
    memcpy(v->u.n.big, b, n);
    v->u.n.n = n;
    return v;
}

mp_py *mp_py_float_new(double d)
{
    mp_py *v = mp__py_alloc(MP_PY_FLOAT);
    if (v)
        v->u.f = d;
    return v;
}

/* UTF-8 as Python's 'surrogatepass' reads it: like strict UTF-8, but the
 * encoded surrogates U+D800..U+DFFF (ED A0..BF xx) are allowed, since
 * pickle writes a str holding one that way. */
bool mp__py_utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0)
                lo = 0xa0;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else
            return false;
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        i += len;
    }
    return true;
}

static mp_py *bytes_node(int type, const void *p, size_t n)
{
    mp_py *v = mp__py_alloc(type);
    if (v == NULL)
        return NULL;
    v->u.s.p = malloc(n + 1);
    if (v->u.s.p == NULL) {
        free(v);
        return NULL;
    }
    if (n)
        memcpy(v->u.s.p, p, n);
    v->u.s.p[n] = '\0';
    v->u.s.len = n;
    return v;
}

mp_py *mp__py_str(const char *s, size_t n, int *err)
{
    if (!mp__py_utf8_ok((const uint8_t *)s, n)) {
        *err = MP_EINVAL;
        return NULL;
    }
    mp_py *v = bytes_node(MP_PY_STR, s, n);
    if (v == NULL)
        *err = MP_ENOMEM;
    return v;
}

mp_py *mp_py_str_new_n(const char *s, size_t n)
{
    int err;
    if (s == NULL && n > 0)
        return NULL;
    return mp__py_str(s ? s : "", n, &err);
}

mp_py *mp_py_str_new(const char *s)
{
    return s ? mp_py_str_new_n(s, strlen(s)) : NULL;
}

mp_py *mp_py_bytes_new(const void *p, size_t n)
{
    return (p || n == 0) ? bytes_node(MP_PY_BYTES, p, n) : NULL;
}

mp_py *mp_py_bytearray_new(const void *p, size_t n)
{
    return (p || n == 0) ? bytes_node(MP_PY_BYTEARRAY, p, n) : NULL;
}

static int seq_reserve(mp_py *v, size_t want)
{
    if (want <= v->u.seq.cap)
        return 0;
    size_t cap = v->u.seq.cap ? v->u.seq.cap : 4;
    while (cap < want)
        cap *= 2;
    mp_py **items = realloc(v->u.seq.items, cap * sizeof *items);
    if (items == NULL)
        return MP_ENOMEM;
    v->u.seq.items = items;
    v->u.seq.cap = cap;
    return 0;
}

mp_py *mp_py_tuple_new(size_t n)
{
    mp_py *t = mp__py_alloc(MP_PY_TUPLE);
    if (t == NULL)
        return NULL;
    if (n > SIZE_MAX / sizeof(mp_py *) || seq_reserve(t, n) < 0) {
        free(t);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        t->u.seq.items[i] = mp_py_none_new();
        if (t->u.seq.items[i] == NULL) {
            mp_py_free(t);
            return NULL;
        }
        t->u.seq.len = i + 1;
    }
    return t;
}

mp_py *mp_py_list_new(void)
{
    return mp__py_alloc(MP_PY_LIST);
}

mp_py *mp_py_dict_new(void)
{
    return mp__py_alloc(MP_PY_DICT);
}

mp_py *mp_py_set_new(void)
{
    return mp__py_alloc(MP_PY_SET);
}

mp_py *mp_py_frozenset_new(void)
{
    return mp__py_alloc(MP_PY_FROZENSET);
}

mp_py *mp__py_object(const char *module, size_t mlen, const char *name, size_t nlen)
{
    mp_py *v = mp__py_alloc(MP_PY_OBJECT);
    if (v == NULL)
        return NULL;
    v->u.o.module = strndup(module, mlen);
    v->u.o.name = strndup(name, nlen);
    if (v->u.o.module == NULL || v->u.o.name == NULL) {
        mp__py_destroy(v);
        return NULL;
    }
    return v;
}

/* ---- equality ----------------------------------------------------------- */

/* The container pairs one mp_py_equal call has found equal: a DAG that
 * shares its items (as a pickle's memo lets it) is compared in time linear
 * in its nodes, not in its unfolded tree. */
typedef struct eqctx {
    const mp_py **pairs; /* 2 per slot; NULL = empty */
    size_t nslots, used;
    unsigned depth;      /* of the recursion: bounded by MP_PY_MAX_DEPTH */
} eqctx;

static size_t pair_slot(const eqctx *c, const mp_py *a, const mp_py *b)
{
    return (size_t)mix64((uintptr_t)a * 31 + (uintptr_t)b) & (c->nslots - 1);
}

static bool pair_known(const eqctx *c, const mp_py *a, const mp_py *b)
{
    if (c->nslots == 0)
        return false;
    for (size_t s = pair_slot(c, a, b);; s = (s + 1) & (c->nslots - 1)) {
        if (c->pairs[2 * s] == NULL)
            return false;
        if (c->pairs[2 * s] == a && c->pairs[2 * s + 1] == b)
            return true;
    }
}

/* Remembering is an optimisation: out of memory, it is skipped. */
static void pair_add(eqctx *c, const mp_py *a, const mp_py *b)
{
    if (2 * (c->used + 1) > c->nslots) {
        size_t n = c->nslots ? 2 * c->nslots : 64;
        const mp_py **np = calloc(2 * n, sizeof *np);
        if (np == NULL)
            return;
        eqctx old = *c;
        c->pairs = np;
        c->nslots = n;
        c->used = 0;
        for (size_t s = 0; s < old.nslots; s++)
            if (old.pairs[2 * s])
                pair_add(c, old.pairs[2 * s], old.pairs[2 * s + 1]);
        free(old.pairs);
    }
    size_t s = pair_slot(c, a, b);
    while (c->pairs[2 * s] != NULL)
        s = (s + 1) & (c->nslots - 1);
    c->pairs[2 * s] = a;
    c->pairs[2 * s + 1] = b;
    c->used++;
}

static bool eq(const mp_py *a, const mp_py *b, eqctx *c);
static const mp__py_entry *map_find(const mp__py_map *m, const mp_py *key, uint64_t h,
                                    eqctx *c);
static int hash_of(const mp_py *v, uint64_t *out);

static bool num_eq(const mp_py *a, const mp_py *b)
{
    if (a->type == MP_PY_INT && b->type == MP_PY_INT && !a->u.n.big && !b->u.n.big)
        return a->u.n.i == b->u.n.i;
    uint8_t ta[NUM_BYTES_MAX], tb[NUM_BYTES_MAX];
    const uint8_t *pa, *pb;
    size_t na, nb;
    bool ia = num_integral(a, ta, &pa, &na), ib = num_integral(b, tb, &pb, &nb);
    if (ia && ib)
        return na == nb && memcmp(pa, pb, na) == 0;
    if (!ia && !ib)
        return a->u.f == b->u.f; /* both non-integral floats */
    return false;
}

static bool is_bytes(const mp_py *v)
{
    return v->type == MP_PY_BYTES || v->type == MP_PY_BYTEARRAY;
}

static bool is_set(const mp_py *v)
{
    return v->type == MP_PY_SET || v->type == MP_PY_FROZENSET;
}

static bool eq_body(const mp_py *a, const mp_py *b, eqctx *c);

/* Values nested deeper than MP_PY_MAX_DEPTH (a decoder refuses them, but
 * hashing a dict key comes before that check) are not compared: unequal,
 * and the stack stays bounded. */
static bool eq(const mp_py *a, const mp_py *b, eqctx *c)
{
    if (c->depth >= MP_PY_MAX_DEPTH)
        return a == b;
    c->depth++;
    bool same = eq_body(a, b, c);
    c->depth--;
    return same;
}

static bool eq_body(const mp_py *a, const mp_py *b, eqctx *c)
{
    if (a == b)
        return true;
    if (is_number(a) && is_number(b))
        return num_eq(a, b);
    if (is_bytes(a) && is_bytes(b))
        return a->u.s.len == b->u.s.len && memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0;
    if (is_set(a) && is_set(b)) {
        /* fall through to the set comparison below */
    } else if (a->type != b->type)
        return false;
    if ((a->flags & b->flags & MP__PY_HASHED) && a->hash != b->hash)
        return false;
    switch (a->type) {
    case MP_PY_NONE:
        return true;
    case MP_PY_STR:
        return a->u.s.len == b->u.s.len && memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0;
    default:
        break;
    }
    if (pair_known(c, a, b))
        return true;
    bool same = true;
    switch (a->type) {
    case MP_PY_TUPLE:
    case MP_PY_LIST:
        if (a->u.seq.len != b->u.seq.len)
            return false;
        for (size_t i = 0; i < a->u.seq.len && same; i++)
            same = eq(a->u.seq.items[i], b->u.seq.items[i], c);
        break;
    case MP_PY_DICT:
    case MP_PY_SET:
    case MP_PY_FROZENSET:
        if (a->u.map.len != b->u.map.len)
            return false;
        for (size_t i = 0; i < a->u.map.len && same; i++) {
            const mp__py_entry *e = map_find(&b->u.map, a->u.map.e[i].key, a->u.map.e[i].hash, c);
            same = e != NULL && (a->type != MP_PY_DICT || eq(a->u.map.e[i].value, e->value, c));
        }
        break;
    case MP_PY_OBJECT: {
        const mp_py *pa[3] = {a->u.o.args, a->u.o.kwargs, a->u.o.state};
        const mp_py *pb[3] = {b->u.o.args, b->u.o.kwargs, b->u.o.state};
        same = strcmp(a->u.o.module, b->u.o.module) == 0 &&
               strcmp(a->u.o.name, b->u.o.name) == 0;
        for (int i = 0; i < 3 && same; i++)
            same = (pa[i] == NULL && pb[i] == NULL) ||
                   (pa[i] != NULL && pb[i] != NULL && eq(pa[i], pb[i], c));
        break;
    }
    default:
        return false;
    }
    if (same)
        pair_add(c, a, b);
    return same;
}

bool mp_py_equal(const mp_py *a, const mp_py *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    eqctx c = {NULL, 0, 0, 0};
    bool r = eq(a, b, &c);
    free(c.pairs);
    return r;
}

/* ---- hashing of values -------------------------------------------------- */

/* A number's hash: apart, so that its buffer is not in every frame of the
 * recursion below. */
static __attribute__((noinline)) uint64_t num_hash(const mp_py *v)
{
    uint8_t tmp[NUM_BYTES_MAX];
    const uint8_t *p;
    size_t n;
    if (num_integral(v, tmp, &p, &n))
        return siphash('i', p, n);
    return siphash('f', &v->u.f, sizeof v->u.f);
}

/* A tuple nested deeper than MP_PY_MAX_DEPTH has no hash (MP_EINVAL): a
 * decoder refuses such nesting at its end, but a dict key is hashed as it
 * comes, so the bound must hold here too. */
static int hash_at(const mp_py *cv, uint64_t *out, unsigned depth)
{
    mp_py *v = (mp_py *)cv; /* the cache is not part of the value */
    if (v->flags & MP__PY_HASHED) {
        *out = v->hash;
        return 0;
    }
    uint64_t h;
    switch (v->type) {
    case MP_PY_NONE:
        h = siphash('N', "", 0);
        break;
    case MP_PY_BOOL:
    case MP_PY_INT:
    case MP_PY_FLOAT:
        h = num_hash(v);
        break;
    case MP_PY_STR:
        h = siphash('s', v->u.s.p, v->u.s.len);
        break;
    case MP_PY_BYTES:
        h = siphash('b', v->u.s.p, v->u.s.len);
        break;
    case MP_PY_TUPLE:
        if (depth > MP_PY_MAX_DEPTH)
            return MP_EINVAL;
        h = mix64(0x7475706c65u ^ v->u.seq.len);
        for (size_t i = 0; i < v->u.seq.len; i++) {
            uint64_t ch;
            int err = hash_at(v->u.seq.items[i], &ch, depth + 1);
            if (err < 0)
                return err;
            h = mix64(h ^ ch) + i;
        }
        break;
    case MP_PY_FROZENSET:
        /* independent of the order: the sum of the items' mixed hashes */
        h = 0x66726f7a656eu ^ v->u.map.len;
        for (size_t i = 0; i < v->u.map.len; i++)
            h += mix64(v->u.map.e[i].hash);
        h = mix64(h);
        break;
    default:
        return MP_EINVAL; /* list, dict, set, bytearray, object */
    }
    v->hash = h;
    v->flags |= MP__PY_HASHED;
    *out = h;
    return 0;
}

static int hash_of(const mp_py *v, uint64_t *out)
{
    return hash_at(v, out, 1);
}

int mp__py_hash(mp_py *v, uint64_t *out)
{
    return hash_of(v, out);
}

/* ---- dicts and sets ----------------------------------------------------- */

static const mp__py_entry *map_find(const mp__py_map *m, const mp_py *key, uint64_t h,
                                    eqctx *c)
{
    if (m->nslots == 0) {
        for (size_t i = 0; i < m->len; i++)
            if (m->e[i].hash == h && eq(m->e[i].key, key, c))
                return &m->e[i];
        return NULL;
    }
    for (size_t s = h & (m->nslots - 1);; s = (s + 1) & (m->nslots - 1)) {
        uint32_t at = m->slots[s];
        if (at == 0)
            return NULL;
        const mp__py_entry *e = &m->e[at - 1];
        if (e->hash == h && eq(e->key, key, c))
            return e;
    }
}

static const mp__py_entry *lookup(const mp__py_map *m, const mp_py *key, uint64_t h)
{
    eqctx c = {NULL, 0, 0, 0};
    const mp__py_entry *e = map_find(m, key, h, &c);
    free(c.pairs);
    return e;
}

static void slot_put(mp__py_map *m, size_t idx)
{
    size_t s = m->e[idx].hash & (m->nslots - 1);
    while (m->slots[s] != 0)
        s = (s + 1) & (m->nslots - 1);
    m->slots[s] = (uint32_t)(idx + 1);
}

/* Rebuild the index for the entries there are; 0 or MP_ENOMEM. */
static int map_reindex(mp__py_map *m, size_t want)
{
    size_t n = 16;
    while (n < 4 * want)
        n *= 2;
    uint32_t *slots = calloc(n, sizeof *slots);
    if (slots == NULL)
        return MP_ENOMEM;
    free(m->slots);
    m->slots = slots;
    m->nslots = n;
    for (size_t i = 0; i < m->len; i++)
        slot_put(m, i);
    return 0;
}

int mp__py_map_put(mp_py *d, mp_py *key, mp_py *value)
{
    int err;
    uint64_t h;
    mp__py_map *m = &d->u.map;

    if (key == NULL || (d->type == MP_PY_DICT && value == NULL)) {
        err = MP_ENOMEM;
        goto fail;
    }
    err = hash_of(key, &h);
    if (err < 0)
        goto fail;
    if (m->len >= UINT32_MAX - 1) {
        err = MP_ENOMEM;
        goto fail;
    }
    mp__py_entry *e = (mp__py_entry *)lookup(m, key, h);
    if (e != NULL) {
        /* as CPython: the first key stays, the new value replaces */
        mp_py_free(key);
        if (d->type == MP_PY_DICT) {
            mp_py *old = e->value;
            e->value = value;
            mp_py_free(old);
        }
        return 0;
    }
    if (m->len == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 4;
        mp__py_entry *ne = realloc(m->e, cap * sizeof *ne);
        if (ne == NULL) {
            err = MP_ENOMEM;
            goto fail;
        }
        m->e = ne;
        m->cap = cap;
    }
    if (m->len + 1 > MAP_LINEAR_MAX && 2 * (m->len + 1) > m->nslots) {
        err = map_reindex(m, m->cap);
        if (err < 0)
            goto fail;
    }
    m->e[m->len] = (mp__py_entry){key, d->type == MP_PY_DICT ? value : NULL, h};
    m->len++;
    if (m->nslots)
        slot_put(m, m->len - 1);
    if (d->type != MP_PY_DICT)
        mp_py_free(value);
    return 0;
fail:
    mp_py_free(key);
    mp_py_free(value);
    return err;
}

int mp_py_dict_set(mp_py *d, mp_py *key, mp_py *value)
{
    if (d == NULL || d->type != MP_PY_DICT) {
        mp_py_free(key);
        mp_py_free(value);
        return MP_EINVAL;
    }
    return mp__py_map_put(d, key, value);
}

int mp_py_dict_set_str(mp_py *d, const char *key, mp_py *value)
{
    if (key == NULL) {
        mp_py_free(value);
        return MP_EINVAL;
    }
    int err;
    mp_py *k = mp__py_str(key, strlen(key), &err);
    if (k == NULL) {
        mp_py_free(value);
        return err;
    }
    return mp_py_dict_set(d, k, value);
}

int mp_py_set_add(mp_py *s, mp_py *item)
{
    if (s == NULL || !is_set(s)) {
        mp_py_free(item);
        return MP_EINVAL;
    }
    if (s->type == MP_PY_FROZENSET)
        s->flags &= (uint8_t)~MP__PY_HASHED;
    return mp__py_map_put(s, item, NULL);
}

mp_py *mp_py_dict_get(const mp_py *d, const mp_py *key)
{
    uint64_t h;
    if (d == NULL || key == NULL || d->type != MP_PY_DICT || hash_of(key, &h) < 0)
        return NULL;
    const mp__py_entry *e = lookup(&d->u.map, key, h);
    return e ? e->value : NULL;
}

mp_py *mp_py_dict_get_str(const mp_py *d, const char *key)
{
    if (d == NULL || key == NULL || d->type != MP_PY_DICT)
        return NULL;
    /* a str node on the stack: no allocation for a lookup */
    mp_py k = {.refcnt = 1, .type = MP_PY_STR};
    k.u.s.p = (char *)key;
    k.u.s.len = strlen(key);
    uint64_t h;
    if (hash_of(&k, &h) < 0)
        return NULL;
    const mp__py_entry *e = lookup(&d->u.map, &k, h);
    return e ? e->value : NULL;
}

bool mp_py_set_contains(const mp_py *s, const mp_py *item)
{
    uint64_t h;
    if (s == NULL || item == NULL || !is_set(s) || hash_of(item, &h) < 0)
        return false;
    return lookup(&s->u.map, item, h) != NULL;
}

int mp_py_dict_item(const mp_py *d, size_t i, mp_py **key, mp_py **value)
{
    if (d == NULL || d->type != MP_PY_DICT || i >= d->u.map.len)
        return MP_EINVAL;
    if (key)
        *key = d->u.map.e[i].key;
    if (value)
        *value = d->u.map.e[i].value;
    return 0;
}

/* ---- sequences ---------------------------------------------------------- */

int mp__py_seq_push(mp_py *v, mp_py *item)
{
    if (item == NULL)
        return MP_ENOMEM;
    if (seq_reserve(v, v->u.seq.len + 1) < 0) {
        mp_py_free(item);
        return MP_ENOMEM;
    }
    v->u.seq.items[v->u.seq.len++] = item;
    return 0;
}

int mp_py_list_append(mp_py *l, mp_py *item)
{
    if (l == NULL || l->type != MP_PY_LIST) {
        mp_py_free(item);
        return MP_EINVAL;
    }
    return mp__py_seq_push(l, item);
}

int mp_py_tuple_set(mp_py *t, size_t i, mp_py *item)
{
    if (t == NULL || t->type != MP_PY_TUPLE || i >= t->u.seq.len) {
        mp_py_free(item);
        return MP_EINVAL;
    }
    if (item == NULL)
        return MP_ENOMEM;
    mp_py *old = t->u.seq.items[i];
    t->u.seq.items[i] = item;
    t->flags &= (uint8_t)~MP__PY_HASHED;
    mp_py_free(old);
    return 0;
}

/* ---- reading ------------------------------------------------------------ */

mp_py_type mp_py_type_of(const mp_py *v)
{
    return v ? (mp_py_type)v->type : MP_PY_NONE;
}

const char *mp_py_type_name(mp_py_type t)
{
    static const char *const names[] = {
        [MP_PY_NONE] = "NoneType", [MP_PY_BOOL] = "bool",
        [MP_PY_INT] = "int",       [MP_PY_FLOAT] = "float",
        [MP_PY_STR] = "str",       [MP_PY_BYTES] = "bytes",
        [MP_PY_BYTEARRAY] = "bytearray", [MP_PY_TUPLE] = "tuple",
        [MP_PY_LIST] = "list",     [MP_PY_DICT] = "dict",
        [MP_PY_SET] = "set",       [MP_PY_FROZENSET] = "frozenset",
        [MP_PY_OBJECT] = "object",
    };
    if ((unsigned)t < MP__ARRAY_LEN(names))
        return names[t];
    return "unknown";
}

int mp_py_bool(const mp_py *v, bool *out)
{
    if (v == NULL || v->type != MP_PY_BOOL)
        return MP_EINVAL;
    *out = v->u.b;
    return 0;
}

int mp_py_int(const mp_py *v, int64_t *out)
{
    if (v == NULL)
        return MP_EINVAL;
    if (v->type == MP_PY_BOOL) {
        *out = v->u.b;
        return 0;
    }
    if (v->type != MP_PY_INT)
        return MP_EINVAL;
    if (v->u.n.big)
        return MP_EMSGSIZE;
    *out = v->u.n.i;
    return 0;
}

int mp_py_int_bytes(const mp_py *v, const uint8_t **p, size_t *n)
{
    if (v == NULL || v->type != MP_PY_INT)
        return MP_EINVAL;
    *p = v->u.n.big ? v->u.n.big : v->u.n.small;
    *n = v->u.n.n;
    return 0;
}

int mp_py_float(const mp_py *v, double *out)
{
    if (v == NULL || v->type != MP_PY_FLOAT)
        return MP_EINVAL;
    *out = v->u.f;
    return 0;
}

const char *mp_py_str(const mp_py *v, size_t *len)
{
    if (v == NULL || v->type != MP_PY_STR)
        return NULL;
    if (len)
        *len = v->u.s.len;
    return v->u.s.p;
}

const uint8_t *mp_py_bytes(const mp_py *v, size_t *len)
{
    if (v == NULL || !is_bytes(v))
        return NULL;
    if (len)
        *len = v->u.s.len;
    return (const uint8_t *)v->u.s.p;
}

ssize_t mp_py_len(const mp_py *v)
{
    if (v == NULL)
        return MP_EINVAL;
    switch (v->type) {
    case MP_PY_STR:
    case MP_PY_BYTES:
    case MP_PY_BYTEARRAY:
        return (ssize_t)v->u.s.len;
    case MP_PY_TUPLE:
    case MP_PY_LIST:
        return (ssize_t)v->u.seq.len;
    case MP_PY_DICT:
    case MP_PY_SET:
    case MP_PY_FROZENSET:
        return (ssize_t)v->u.map.len;
    default:
        return MP_EINVAL;
    }
}

mp_py *mp_py_item(const mp_py *v, size_t i)
{
    if (v == NULL)
        return NULL;
    if ((v->type == MP_PY_TUPLE || v->type == MP_PY_LIST) && i < v->u.seq.len)
        return v->u.seq.items[i];
    if (is_set(v) && i < v->u.map.len)
        return v->u.map.e[i].key;
    return NULL;
}

const char *mp_py_object_module(const mp_py *v)
{
    return v && v->type == MP_PY_OBJECT ? v->u.o.module : NULL;
}

const char *mp_py_object_name(const mp_py *v)
{
    return v && v->type == MP_PY_OBJECT ? v->u.o.name : NULL;
}

mp_py *mp_py_object_args(const mp_py *v)
{
    return v && v->type == MP_PY_OBJECT ? v->u.o.args : NULL;
}

mp_py *mp_py_object_kwargs(const mp_py *v)
{
    return v && v->type == MP_PY_OBJECT ? v->u.o.kwargs : NULL;
}

mp_py *mp_py_object_state(const mp_py *v)
{
    return v && v->type == MP_PY_OBJECT ? v->u.o.state : NULL;
}
