/* libFuzzer target: mp__pymgr_parse_reply, the check of what a Python
 * manager server (or anything listening at its address) replies to a C
 * client (src/py_manager.c).
 *
 * The input is the reply's pickle.  A reply that parses must be one of the
 * forms the client acts on, with exactly the fields that form has (a
 * value, or a token's typeid and id), and a RETURN value must hold no
 * object node (a name is accepted only where the protocol puts one).  The
 * parser never loads a library: the number of loaded objects is checked
 * after each input. */
#include "py_manager.h"

#include <link.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count_object(struct dl_phdr_info *info, size_t sz, void *n)
{
    (void)info;
    (void)sz;
    ++*(size_t *)n;
    return 0;
}

static size_t loaded_objects(void)
{
    size_t n = 0;
    dl_iterate_phdr(count_object, &n);
    return n;
}

/* Whether @v holds an object node (the decoder bounds the depth). */
static bool holds_object(const mp_py *v)
{
    if (mp_py_type_of(v) == MP_PY_OBJECT)
        return true;
    if (mp_py_type_of(v) == MP_PY_DICT) {
        for (ssize_t i = 0; i < mp_py_len(v); i++) {
            mp_py *k, *val;
            if (mp_py_dict_item(v, (size_t)i, &k, &val) != 0)
                __builtin_trap();
            if (holds_object(k) || holds_object(val))
                return true;
        }
        return false;
    }
    mp_py *item;
    for (size_t i = 0; (item = mp_py_item(v, i)) != NULL; i++)
        if (holds_object(item))
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static size_t objects;
    if (objects == 0)
        objects = loaded_objects();
    mp__pymgr_reply r;
    int err = mp__pymgr_parse_reply(data, size, &r);
    if (err != 0) {
        /* the only failure is a refusal (no memory: ASan aborts), which
         * leaves nothing behind */
        if (err != MP_EBADMSG || r.value || r.exposed || r.typeid || r.id)
            __builtin_trap();
    } else {
        switch (r.kind) {
        case MP__PYMGR_RETURN:
            if (r.value == NULL || holds_object(r.value) || r.typeid || r.id)
                __builtin_trap();
            break;
        case MP__PYMGR_PROXY:
        case MP__PYMGR_PROXY_REF:
            if (r.value || r.typeid == NULL || r.id == NULL || !*r.typeid || !*r.id)
                __builtin_trap();
            if (r.kind == MP__PYMGR_PROXY && r.exposed == NULL)
                __builtin_trap();
            break;
        case MP__PYMGR_ERROR:
            if (mp_py_type_of(r.value) != MP_PY_OBJECT || r.typeid || r.id)
                __builtin_trap();
            break;
        case MP__PYMGR_TRACEBACK:
            if (mp_py_type_of(r.value) != MP_PY_STR || r.typeid || r.id)
                __builtin_trap();
            break;
        default:
            __builtin_trap();
        }
    }
    mp__pymgr_reply_clear(&r);
    if (loaded_objects() != objects)
        __builtin_trap();
    return 0;
}
