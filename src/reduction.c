/*
 * The reduction layer: mp_args (a typed argument list), its wire form, and
 * function references that survive spawn and forkserver.
 *
 * Wire form of an mp_args:  "MPA1" u32 count, then per item u8 type and
 *   INT/DOUBLE  u64 (little-endian; doubles by bit pattern)
 *   STR/BYTES   u64 length + bytes (STR without its NUL; one inside is refused)
 *   FD          u32 index into the message's descriptor list
 *   OBJECT      u8 object tag + what the object's reduce() wrote
 * PTR items never travel: encoding one fails with MP_EINVAL.  What a form
 * may carry depends on its channel (mp__channel): a manager's requests and
 * replies are data only; a connection also carries descriptors and objects;
 * only what the library writes to a child it starts carries code or keys.
 * Nothing decoded from a peer's bytes ever loads or runs code.
 */
#include "internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <endian.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct arg {
    mp_arg_type type;
    union {
        int64_t i;
        double d;
        struct {
            char *p;
            size_t n;
        } b;
        void *ptr;
        int fd;
        struct {
            const mp__objtype *t;
            void *obj;
        } o;
    } u;
} arg;

struct mp_args {
    arg *items;
    size_t n, cap;
};

/* Object kinds known to the wire decoder: each kind's file registers its
 * mp__objtype at load (MP__REGISTER_OBJTYPE), so this layer names none of
 * the layers above it.  Written only by constructors, before any thread of
 * the program runs; read-only after. */
#define MAX_OBJTYPES 32
static const mp__objtype *objtypes[MAX_OBJTYPES];
static size_t nobjtypes;

void mp__objtype_register(const mp__objtype *t)
{
    for (size_t i = 0; i < nobjtypes; i++)
        if (objtypes[i]->tag == t->tag || objtypes[i]->letter == t->letter)
            mp__fatal("two object kinds share a tag or a letter");
    if (nobjtypes == MAX_OBJTYPES)
        mp__fatal("too many object kinds: raise MAX_OBJTYPES");
    objtypes[nobjtypes++] = t;
}

static const mp__objtype *objtype_of_tag(uint8_t tag)
{
    for (size_t i = 0; i < nobjtypes; i++)
        if (objtypes[i]->tag == tag)
            return objtypes[i];
    return NULL;
}

static const char *type_name(mp_arg_type t)
{
    switch (t) {
    case MP_ARG_INT: return "int";
    case MP_ARG_DOUBLE: return "double";
    case MP_ARG_STR: return "str";
    case MP_ARG_BYTES: return "bytes";
    case MP_ARG_PTR: return "ptr";
    case MP_ARG_FD: return "fd";
    case MP_ARG_OBJECT: return "object";
    }
    return "none";
}

int mp_args_new(mp_args **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : MP_ENOMEM;
}

static void arg_clear(arg *it)
{
    switch (it->type) {
    case MP_ARG_STR:
    case MP_ARG_BYTES:
        free(it->u.b.p);
        break;
    case MP_ARG_FD:
        mp__sys_close(it->u.fd);
        break;
    case MP_ARG_OBJECT:
        it->u.o.t->release(it->u.o.obj);
        break;
    default:
        break;
    }
}

void mp_args_free(mp_args *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n; i++)
        arg_clear(&a->items[i]);
    free(a->items);
    free(a);
}

static arg *push(mp_args *a)
{
    if (a->n == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 8;
        arg *p = realloc(a->items, ncap * sizeof *p);
        if (p == NULL)
            return NULL;
        a->items = p;
        a->cap = ncap;
    }
    arg *it = &a->items[a->n];
    memset(it, 0, sizeof *it);
    return it;
}

int mp_args_add_int(mp_args *a, int64_t v)
{
    arg *it = push(a);
    if (it == NULL)
        return MP_ENOMEM;
    it->type = MP_ARG_INT;
    it->u.i = v;
    a->n++;
    return 0;
}

int mp_args_add_double(mp_args *a, double v)
{
    arg *it = push(a);
    if (it == NULL)
        return MP_ENOMEM;
    it->type = MP_ARG_DOUBLE;
    it->u.d = v;
    a->n++;
    return 0;
}

static int add_blob(mp_args *a, mp_arg_type type, const void *p, size_t n, size_t alloc)
{
    if (p == NULL && n > 0)
        return MP_EINVAL;
    arg *it = push(a);
    if (it == NULL)
        return MP_ENOMEM;
    it->u.b.p = malloc(alloc ? alloc : 1);
    if (it->u.b.p == NULL)
        return MP_ENOMEM;
    if (n > 0)
        memcpy(it->u.b.p, p, n);
    if (alloc > n)
        it->u.b.p[n] = '\0';
    it->u.b.n = n;
    it->type = type;
    a->n++;
    return 0;
}

int mp_args_add_str(mp_args *a, const char *s)
{
    if (s == NULL)
        return MP_EINVAL;
    size_t n = strlen(s);
    return add_blob(a, MP_ARG_STR, s, n, n + 1);
}

int mp_args_add_bytes(mp_args *a, const void *p, size_t n)
{
    return add_blob(a, MP_ARG_BYTES, p, n, n);
}

int mp_args_add_ptr(mp_args *a, void *p)
{
    arg *it = push(a);
    if (it == NULL)
        return MP_ENOMEM;
    it->type = MP_ARG_PTR;
    it->u.ptr = p;
    a->n++;
    return 0;
}

int mp_args_add_fd(mp_args *a, int fd)
{
    if (fd < 0)
        return MP_EBADF;
    arg *it = push(a);
    if (it == NULL)
        return MP_ENOMEM;
    int nfd = mp__sys_dup(fd);
    if (nfd < 0)
        return nfd;
    it->type = MP_ARG_FD;
    it->u.fd = nfd;
    a->n++;
    return 0;
}

int mp__args_add_obj(mp_args *a, const mp__objtype *t, void *obj)
{
    if (obj == NULL)
        return MP_EINVAL;
    arg *it = push(a);
    if (it == NULL)
        return MP_ENOMEM;
    void *h;
    int err = t->dup(obj, &h);
    if (err < 0)
        return err;
    it->type = MP_ARG_OBJECT;
    it->u.o.t = t;
    it->u.o.obj = h;
    a->n++;
    return 0;
}

/* mp_args_of's letters for library objects. */
static const mp__objtype *objtype_of_letter(char c)
{
    for (size_t i = 0; i < nobjtypes; i++)
        if (objtypes[i]->letter == c)
            return objtypes[i];
    return NULL;
}

int mp_args_of(mp_args **out, const char *fmt, ...)
{
    mp_args *a;
    int err = mp_args_new(&a);
    if (err < 0)
        return err;
    va_list ap;
    va_start(ap, fmt);
    for (const char *c = fmt; *c && err == 0; c++) {
        switch (*c) {
        case 'i':
            err = mp_args_add_int(a, va_arg(ap, int));
            break;
        case 'l':
            err = mp_args_add_int(a, va_arg(ap, int64_t));
            break;
        case 'd':
            err = mp_args_add_double(a, va_arg(ap, double));
            break;
        case 's':
            err = mp_args_add_str(a, va_arg(ap, const char *));
            break;
        case 'b': {
            const void *p = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            err = mp_args_add_bytes(a, p, n);
            break;
        }
        case 'p':
            err = mp_args_add_ptr(a, va_arg(ap, void *));
            break;
        case 'f':
            err = mp_args_add_fd(a, va_arg(ap, int));
            break;
        default: {
            const mp__objtype *t = objtype_of_letter(*c);
            err = t ? mp__args_add_obj(a, t, va_arg(ap, void *)) : MP_EINVAL;
        }
        }
    }
    va_end(ap);
    if (err < 0) {
        mp_args_free(a);
        a = NULL;
    }
    *out = a;
    return err;
}

size_t mp_args_count(const mp_args *a)
{
    return a ? a->n : 0;
}

mp_arg_type mp_args_type(const mp_args *a, size_t i)
{
    return a && i < a->n ? a->items[i].type : (mp_arg_type)0;
}

static const arg *get(const mp_args *a, size_t i, mp_arg_type want)
{
    if (a == NULL || i >= a->n)
        mp__fatal("mp_args: no item %zu (count %zu) where a %s was wanted", i,
                  a ? a->n : 0, type_name(want));
    if (a->items[i].type != want)
        mp__fatal("mp_args: item %zu is a %s, not a %s", i, type_name(a->items[i].type),
                  type_name(want));
    return &a->items[i];
}

int64_t mp_args_int(const mp_args *a, size_t i)
{
    return get(a, i, MP_ARG_INT)->u.i;
}

void mp__args_set_int(mp_args *a, size_t i, int64_t v)
{
    ((arg *)get(a, i, MP_ARG_INT))->u.i = v; /* a is ours to change */
}

double mp_args_double(const mp_args *a, size_t i)
{
    return get(a, i, MP_ARG_DOUBLE)->u.d;
}

const char *mp_args_str(const mp_args *a, size_t i)
{
    return get(a, i, MP_ARG_STR)->u.b.p;
}

const void *mp_args_bytes(const mp_args *a, size_t i, size_t *len)
{
    const arg *it = get(a, i, MP_ARG_BYTES);
    if (len)
        *len = it->u.b.n;
    return it->u.b.p;
}

void *mp_args_ptr(const mp_args *a, size_t i)
{
    return get(a, i, MP_ARG_PTR)->u.ptr;
}

int mp_args_fd(const mp_args *a, size_t i)
{
    return get(a, i, MP_ARG_FD)->u.fd;
}

void *mp__args_obj(const mp_args *a, size_t i, const mp__objtype *t)
{
    const arg *it = get(a, i, MP_ARG_OBJECT);
    if (it->u.o.t != t)
        mp__fatal("mp_args: item %zu is a %s, not a %s", i, it->u.o.t->name, t->name);
    return it->u.o.obj;
}

bool mp__args_has_ptr(const mp_args *a)
{
    for (size_t i = 0; a && i < a->n; i++)
        if (a->items[i].type == MP_ARG_PTR)
            return true;
    return false;
}

int mp__args_append(mp_args *a, const mp_args *src, size_t from)
{
    int err = 0;
    for (size_t i = from; src != NULL && i < src->n && err == 0; i++) {
        const arg *s = &src->items[i];
        switch (s->type) {
        case MP_ARG_INT:
            err = mp_args_add_int(a, s->u.i);
            break;
        case MP_ARG_DOUBLE:
            err = mp_args_add_double(a, s->u.d);
            break;
        case MP_ARG_STR:
            err = mp_args_add_str(a, s->u.b.p);
            break;
        case MP_ARG_BYTES:
            err = mp_args_add_bytes(a, s->u.b.p, s->u.b.n);
            break;
        case MP_ARG_PTR:
            err = mp_args_add_ptr(a, s->u.ptr);
            break;
        case MP_ARG_FD:
            err = mp_args_add_fd(a, s->u.fd);
            break;
        case MP_ARG_OBJECT:
            err = mp__args_add_obj(a, s->u.o.t, s->u.o.obj);
            break;
        }
    }
    return err;
}

int mp__args_dup(const mp_args *src, mp_args **out)
{
    int err = mp_args_new(out);
    if (err < 0)
        return err;
    err = mp__args_append(*out, src, 0);
    if (err < 0) {
        mp_args_free(*out);
        *out = NULL;
    }
    return err;
}

/* ---- writer and bounded reader ------------------------------------------ */

int mp__fdvec_add(mp__fdvec *v, int fd)
{
    if (v->n >= MP__MAX_FDS)
        return MP_EINVAL;
    v->fds[v->n] = fd;
    return (int)v->n++;
}

int mp__put_u8(mp_buf *b, uint8_t v)
{
    return mp_buf_append(b, &v, 1);
}

int mp__put_u32(mp_buf *b, uint32_t v)
{
    v = htole32(v);
    return mp_buf_append(b, &v, 4);
}

int mp__put_u64(mp_buf *b, uint64_t v)
{
    v = htole64(v);
    return mp_buf_append(b, &v, 8);
}

int mp__put_blob(mp_buf *b, const void *p, size_t n)
{
    int err = mp__put_u64(b, n);
    return err < 0 ? err : mp_buf_append(b, p, n);
}

int mp__put_str(mp_buf *b, const char *s)
{
    return mp__put_blob(b, s, strlen(s) + 1);
}

void mp__reader_init(mp__reader *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->off = 0;
    r->err = 0;
}

static const uint8_t *take(mp__reader *r, size_t n)
{
    if (r->err || n > r->len - r->off) {
        r->err = MP_EBADMSG;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

uint8_t mp__get_u8(mp__reader *r)
{
    const uint8_t *p = take(r, 1);
    return p ? p[0] : 0;
}

uint32_t mp__get_u32(mp__reader *r)
{
    const uint8_t *p = take(r, 4);
    uint32_t v = 0;
    if (p)
        memcpy(&v, p, 4);
    return le32toh(v);
}

uint64_t mp__get_u64(mp__reader *r)
{
    const uint8_t *p = take(r, 8);
    uint64_t v = 0;
    if (p)
        memcpy(&v, p, 8);
    return le64toh(v);
}

const void *mp__get_blob(mp__reader *r, size_t *n)
{
    uint64_t len = mp__get_u64(r);
    if (r->err || len > r->len - r->off) {
        r->err = MP_EBADMSG;
        *n = 0;
        return NULL;
    }
    *n = (size_t)len;
    return take(r, (size_t)len);
}

const char *mp__get_str(mp__reader *r)
{
    size_t n;
    const char *s = mp__get_blob(r, &n);
    if (s == NULL || n == 0 || s[n - 1] != '\0' || memchr(s, '\0', n) != s + n - 1) {
        r->err = MP_EBADMSG;
        return NULL;
    }
    return s;
}

/* ---- wire form of mp_args ----------------------------------------------- */

#define ARGS_MAGIC 0x3141504dU /* "MPA1" */

int mp__args_encode(const mp_args *a, mp_buf *out, mp__fdvec *fds, mp__channel ch)
{
    size_t n = a ? a->n : 0;
    int err = mp__put_u32(out, ARGS_MAGIC);
    if (err == 0)
        err = mp__put_u32(out, (uint32_t)n);
    for (size_t i = 0; i < n && err == 0; i++) {
        const arg *it = &a->items[i];
        if (it->type == MP_ARG_PTR ||
            (ch == MP__WIRE_DATA && (it->type == MP_ARG_FD || it->type == MP_ARG_OBJECT)))
            return MP_EINVAL;
        err = mp__put_u8(out, (uint8_t)it->type);
        if (err < 0)
            break;
        switch (it->type) {
        case MP_ARG_INT:
            err = mp__put_u64(out, (uint64_t)it->u.i);
            break;
        case MP_ARG_DOUBLE: {
            uint64_t bits;
            memcpy(&bits, &it->u.d, sizeof bits);
            err = mp__put_u64(out, bits);
            break;
        }
        case MP_ARG_STR:
        case MP_ARG_BYTES:
            err = mp__put_blob(out, it->u.b.p, it->u.b.n);
            break;
        case MP_ARG_FD:
            err = mp__fdvec_add(fds, it->u.fd);
            if (err >= 0)
                err = mp__put_u32(out, (uint32_t)err);
            break;
        case MP_ARG_OBJECT:
            err = mp__put_u8(out, it->u.o.t->tag);
            if (err == 0)
                err = it->u.o.t->reduce(it->u.o.obj, out, fds, ch);
            break;
        case MP_ARG_PTR:
            break;
        }
    }
    return err < 0 ? err : 0;
}

int mp__args_decode(mp__reader *r, int *fds, size_t nfds, mp__channel ch, mp_args **out)
{
    mp_args *a;
    *out = NULL;
    if (mp__get_u32(r) != ARGS_MAGIC)
        return MP_EBADMSG;
    uint32_t n = mp__get_u32(r);
    if (r->err || n > r->len - r->off) /* each item takes at least a byte */
        return MP_EBADMSG;
    int err = mp_args_new(&a);
    if (err < 0)
        return err;
    for (uint32_t i = 0; i < n && err == 0; i++) {
        uint8_t type = mp__get_u8(r);
        if (r->err)
            break;
        if (ch == MP__WIRE_DATA && (type == MP_ARG_FD || type == MP_ARG_OBJECT)) {
            err = MP_EBADMSG;
            break;
        }
        switch (type) {
        case MP_ARG_INT:
            err = mp_args_add_int(a, (int64_t)mp__get_u64(r));
            break;
        case MP_ARG_DOUBLE: {
            uint64_t bits = mp__get_u64(r);
            double d;
            memcpy(&d, &bits, sizeof d);
            err = mp_args_add_double(a, d);
            break;
        }
        case MP_ARG_STR:
        case MP_ARG_BYTES: {
            size_t len;
            const void *p = mp__get_blob(r, &len);
            if (p == NULL)
                break;
            if (type == MP_ARG_STR && memchr(p, '\0', len) != NULL) {
                err = MP_EBADMSG;
                break;
            }
            err = add_blob(a, (mp_arg_type)type, p, len, type == MP_ARG_STR ? len + 1 : len);
            break;
        }
        case MP_ARG_FD: {
            uint32_t k = mp__get_u32(r);
            if (r->err)
                break;
            if (k >= nfds || fds[k] < 0) {
                err = MP_EBADMSG;
                break;
            }
            arg *it = push(a);
            if (it == NULL) {
                err = MP_ENOMEM;
                break;
            }
            it->type = MP_ARG_FD;
            it->u.fd = fds[k];
            fds[k] = -1;
            a->n++;
            break;
        }
        case MP_ARG_OBJECT: {
            uint8_t tag = mp__get_u8(r);
            const mp__objtype *t = objtype_of_tag(tag);
            if (r->err || t == NULL) {
                err = MP_EBADMSG;
                break;
            }
            void *obj;
            err = t->rebuild(r, fds, nfds, ch, &obj);
            if (err < 0)
                break;
            arg *it = push(a);
            if (it == NULL) {
                t->release(obj);
                err = MP_ENOMEM;
                break;
            }
            it->type = MP_ARG_OBJECT;
            it->u.o.t = t;
            it->u.o.obj = obj;
            a->n++;
            break;
        }
        default:
            err = MP_EBADMSG;
        }
    }
    if (err == 0 && r->err)
        err = r->err;
    if (err < 0) {
        mp_args_free(a);
        return err;
    }
    *out = a;
    return 0;
}

/* ---- function references ------------------------------------------------ */

#define BUILD_ID_MAX 64

struct objinfo {
    const void *addr;            /* what we look for (encode) */
    const char *name;            /* object name, "" for the executable */
    uintptr_t base;              /* load bias */
    uint8_t id[BUILD_ID_MAX];
    size_t idlen;
    bool found;
};

static size_t note_build_id(const struct dl_phdr_info *info, uint8_t *id)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
        const char *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            size_t namesz = (nh->n_namesz + 3) & ~(size_t)3;
            size_t descsz = (nh->n_descsz + 3) & ~(size_t)3;
            const char *name = p + sizeof *nh;
            const uint8_t *desc = (const uint8_t *)(name + namesz);
            if ((const char *)desc + descsz > end)
                break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
                memcmp(name, "GNU", 4) == 0 && nh->n_descsz <= BUILD_ID_MAX) {
                memcpy(id, desc, nh->n_descsz);
                return nh->n_descsz;
            }
            p = (const char *)desc + descsz;
        }
    }
    return 0;
}

/* Does @addr fall in an executable segment of this object? */
static bool in_exec_segment(const struct dl_phdr_info *info, uintptr_t addr)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (addr >= lo && addr < lo + ph->p_memsz)
            return true;
    }
    return false;
}

static int find_by_addr(struct dl_phdr_info *info, size_t size, void *data)
{
    struct objinfo *oi = data;
    if (!in_exec_segment(info, (uintptr_t)oi->addr))
        return 0;
    oi->name = info->dlpi_name ? info->dlpi_name : "";
    oi->base = info->dlpi_addr;
    oi->idlen = note_build_id(info, oi->id);
    oi->found = true;
    return 1;
}

int mp__funcref_encode(const void *fn, mp_buf *out)
{
    struct objinfo oi = {.addr = fn};
    dl_iterate_phdr(find_by_addr, &oi);
    if (!oi.found)
        return MP_EINVAL; /* not code of any loaded object */
    /* The first object dl_iterate_phdr reports is the executable itself. */
    int err = mp__put_str(out, oi.name);
    if (err == 0)
        err = mp__put_blob(out, oi.id, oi.idlen);
    if (err == 0)
        err = mp__put_u64(out, (uint64_t)((uintptr_t)fn - oi.base));
    return err;
}

struct lookup {
    const char *name;
    const uint8_t *id;
    size_t idlen;
    uint64_t offset;
    void *fn;
    int index;
    bool name_matched, id_mismatch;
};

static int find_by_ref(struct dl_phdr_info *info, size_t size, void *data)
{
    struct lookup *lk = data;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    int index = lk->index++;
    /* The executable is object 0 with an empty name; libraries by path. */
    bool same_name = lk->name[0] == '\0' ? index == 0 : strcmp(name, lk->name) == 0;
    if (!same_name)
        return 0;
    /* The object's build id exactly as the reference has it (none for an
     * object without one): a reference matches one encoding only, the one
     * mp__funcref_encode writes, and never an object other than it names. */
    uint8_t id[BUILD_ID_MAX];
    size_t idlen = note_build_id(info, id);
    if (idlen != lk->idlen || (idlen > 0 && memcmp(id, lk->id, idlen) != 0)) {
        lk->id_mismatch = true;
        return 0;
    }
    lk->name_matched = true;
    uintptr_t addr = info->dlpi_addr + (uintptr_t)lk->offset;
    if (lk->offset > UINTPTR_MAX - info->dlpi_addr || !in_exec_segment(info, addr))
        return 0;
    lk->fn = (void *)addr;
    return 1;
}

static void hex(char *dst, size_t cap, const uint8_t *id, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 3 <= cap; i++)
        k += (size_t)snprintf(dst + k, cap - k, "%02x", id[i]);
    if (k < cap)
        dst[k] = '\0';
}

int mp__funcref_decode(mp__reader *r, bool load, void **fn, char *why, size_t whylen)
{
    struct lookup lk = {0};
    size_t idlen;
    *fn = NULL;
    lk.name = mp__get_str(r);
    lk.id = mp__get_blob(r, &idlen);
    lk.idlen = idlen;
    lk.offset = mp__get_u64(r);
    if (r->err || idlen > BUILD_ID_MAX) {
        snprintf(why, whylen, "malformed function reference");
        return MP_EBADMSG;
    }
    dl_iterate_phdr(find_by_ref, &lk);
    if (load && lk.fn == NULL && !lk.name_matched && !lk.id_mismatch && lk.name[0] != '\0') {
        /* A library the parent had loaded and this process has not: only
         * when the library itself wrote the reference to this child. */
        if (dlopen(lk.name, RTLD_NOW | RTLD_NOLOAD) == NULL && dlopen(lk.name, RTLD_NOW) != NULL) {
            lk.index = 0;
            dl_iterate_phdr(find_by_ref, &lk);
        }
    }
    if (lk.fn != NULL) {
        *fn = lk.fn;
        return 0;
    }
    char idhex[2 * BUILD_ID_MAX + 1] = "none";
    if (lk.idlen)
        hex(idhex, sizeof idhex, lk.id, lk.idlen);
    snprintf(why, whylen,
             "cannot find the target function (object '%s', build id %s, offset %#llx): "
             "%s",
             lk.name[0] ? lk.name : "<executable>", idhex, (unsigned long long)lk.offset,
             lk.id_mismatch ? "the program changed since the parent started"
             : lk.name_matched ? "offset outside the object's code"
                               : "no such object loaded");
    return MP_ENOTFOUND;
}
