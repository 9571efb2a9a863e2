/*
 * py_manager.c's reply parser, apart so that a fuzz target can reach it
 * (tests/fuzz/fuzz_pymgr_reply.c).  Public API: include/multiproc/py.h.
 */
#ifndef MULTIPROC_PY_MANAGER_H
#define MULTIPROC_PY_MANAGER_H

#include "internal.h"

/* What a manager server's reply turned out to be, once checked. */
typedef enum mp__pymgr_kind {
    MP__PYMGR_RETURN,    /* value: plain data (no object node anywhere) */
    MP__PYMGR_PROXY,     /* a #PROXY reply: the server counted it for us */
    MP__PYMGR_PROXY_REF, /* a pickled proxy returned as a value: not counted */
    MP__PYMGR_ERROR,     /* value: the exception, an inert object node */
    MP__PYMGR_TRACEBACK, /* value: a str (#TRACEBACK, #UNSERIALIZABLE) */
} mp__pymgr_kind;

typedef struct mp__pymgr_reply {
    mp__pymgr_kind kind;
    mp_py *value;   /* RETURN, ERROR, TRACEBACK (a new reference) */
    mp_py *exposed; /* PROXY, PROXY_REF: a tuple of str, or NULL (unknown) */
    char *typeid;   /* PROXY, PROXY_REF (malloc'd) */
    char *id;       /* PROXY, PROXY_REF (malloc'd) */
} mp__pymgr_reply;

/* Decode and check one reply (@n bytes at @p).  0 and *r filled (free it
 * with mp__pymgr_reply_clear); MP_EBADMSG for anything that is not one of
 * the forms above, with *r left empty; MP_ENOMEM. */
int mp__pymgr_parse_reply(const void *p, size_t n, mp__pymgr_reply *r);
void mp__pymgr_reply_clear(mp__pymgr_reply *r);

#endif
