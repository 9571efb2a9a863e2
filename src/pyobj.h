/*
 * The mp_py node, shared by pyobj.c (the value type) and pickle.c (the
 * codec) only.  Public API: include/multiproc/py.h.
 */
#ifndef MULTIPROC_PYOBJ_H
#define MULTIPROC_PYOBJ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Node flags. */
enum {
    /* Made by a decode still running: a reference count that reaches 0
     * does not free it (the decoder owns every node it made until STOP,
     * see pickle.c), so no pointer the decoder holds can dangle. */
    MP__PY_TRACKED = 1,
    MP__PY_HASHED = 2,  /* hash is valid (hashable, immutable kinds only) */
    MP__PY_GREY = 4,    /* on the path of a depth-first walk (cycle check) */
    MP__PY_BLACK = 8,   /* finished by a walk */
    MP__PY_CALLED = 16, /* an OBJECT that a REDUCE/NEWOBJ/INST/OBJ made */
};

/* Names the decoder recognises and builds itself (OBJECT nodes that were
 * only named).  Never anything else is called. */
enum {
    MP__PY_FN_NONE,
    MP__PY_FN_CODECS_ENCODE,
    MP__PY_FN_BYTES,
    MP__PY_FN_BYTEARRAY,
    MP__PY_FN_SET,
    MP__PY_FN_FROZENSET,
};

/* A dict's or a set's entries in insertion order with a hash index over
 * them once there are more than a few (open addressing, linear probing;
 * slots hold entry index + 1, 0 = empty). */
typedef struct mp__py_entry {
    struct mp_py *key, *value; /* value NULL in a set */
    uint64_t hash;
} mp__py_entry;

typedef struct mp__py_map {
    mp__py_entry *e;
    size_t len, cap;
    uint32_t *slots;
    size_t nslots; /* 0 or a power of two > 2 * len */
} mp__py_map;

struct mp_py {
    size_t refcnt;
    uint8_t type;
    uint8_t flags;
    uint8_t fn;      /* MP__PY_FN_* of an OBJECT node that was only named */
    uint32_t depth;  /* set by walks: 1 + deepest item */
    uint64_t hash;
    union {
        bool b;
        double f;
        struct {
            int64_t i;        /* the value when it fits (big == NULL) */
            uint8_t *big;     /* else its minimal two's complement, LE */
            size_t n;         /* bytes at big, or in small */
            uint8_t small[8]; /* minimal two's complement of i */
        } n;
        struct {
            char *p; /* NUL-terminated, also bytes (for convenience) */
            size_t len;
        } s;
        struct {
            struct mp_py **items;
            size_t len, cap;
        } seq;
        mp__py_map map;
        struct {
            char *module, *name;
            struct mp_py *args, *kwargs, *state;
        } o;
    } u;
};

/* A node of @type with refcount 1 and zeroed contents, or NULL. */
mp_py *mp__py_alloc(int type);
/* Free @v's own memory without touching its items' reference counts. */
void mp__py_destroy(mp_py *v);
/* The number of child pointers of @v and child @i (may be NULL for an
 * OBJECT's missing parts). */
size_t mp__py_nchildren(const mp_py *v);
mp_py *mp__py_child(const mp_py *v, size_t i);
/* A str node of @n bytes at @s if they are UTF-8 (surrogates allowed), else
 * NULL and *err (MP_EINVAL or MP_ENOMEM). */
mp_py *mp__py_str(const char *s, size_t n, int *err);
bool mp__py_utf8_ok(const uint8_t *s, size_t n);
/* Python's hash-equivalent of @v (keyed per process).  0, or MP_EINVAL
 * when @v is unhashable. */
int mp__py_hash(mp_py *v, uint64_t *out);
/* list append / tuple build / map insertion for the decoder; they steal
 * as the public ones do. */
int mp__py_seq_push(mp_py *v, mp_py *item);
/* dict: key/value; set: value NULL.  Steals both. */
int mp__py_map_put(mp_py *m, mp_py *key, mp_py *value);
/* An OBJECT node. */
mp_py *mp__py_object(const char *module, size_t mlen, const char *name, size_t nlen);

#endif
