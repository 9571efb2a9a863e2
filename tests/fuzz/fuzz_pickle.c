/* libFuzzer target: mp_py_loads, the pickle decoder, on what any peer
 * (a Python process, or anything that connects) may send.
 *
 * Byte 0: bit 0 set decodes with MP_PY_INERT (objects kept, not refused).
 * The rest is the pickle.  A decode that succeeds is encoded, decoded
 * again and encoded again: both decodes must succeed and both encodings
 * be the same bytes (the codec is its own inverse on what it accepts).  A
 * value without MP_PY_INERT must always encode; with it, only an object
 * node may make mp_py_dumps refuse (MP_EINVAL).  The decoder never loads
 * a library: the number of loaded objects is checked after each input. */
#include "internal.h"
#include "fuzz_objects.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static size_t objects;
    if (objects == 0)
        objects = loaded_objects();
    if (size < 1)
        return 0;
    unsigned flags = data[0] & 1 ? MP_PY_INERT : 0;
    mp_py *v = NULL, *again = NULL;
    mp_buf a = MP_BUF_INIT, b = MP_BUF_INIT;
    int err = mp_py_loads(data + 1, size - 1, flags, &v);
    if (err != 0 && (err != MP_EBADMSG || v != NULL))
        __builtin_trap(); /* the only failures: malformed (or no memory: ASan aborts) */
    if (err == 0) {
        err = mp_py_dumps(v, &a);
        if (err == MP_EINVAL && flags) {
            /* an inert object somewhere: fine */
        } else if (err != 0) {
            __builtin_trap();
        } else {
            if (mp_py_loads(a.data, a.len, 0, &again) != 0 || mp_py_dumps(again, &b) != 0 ||
                a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
                __builtin_trap();
            (void)mp_py_equal(v, again);
        }
    }
    mp_py_free(v);
    mp_py_free(again);
    mp_buf_free(&a);
    mp_buf_free(&b);
    if (loaded_objects() != objects)
        __builtin_trap();
    return 0;
}
