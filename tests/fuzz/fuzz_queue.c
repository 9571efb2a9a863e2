/* libFuzzer target: a queue whose shared header another process wrote.
 * The input is a program run on one fresh queue (maxsize: the first
 * byte's low 3 bits), one byte an operation:
 *   0 put (next byte x 1 KiB)   1 put of 3 MiB (to the log; 4 at most)
 *   2 get                       3 get_into a 64-byte buffer
 *   4 qsize, empty, full        5 poke: next byte a word (words[]), next 8 a value
 *   6 rebuild the queue from its wire form and use the new handle
 * Every call waits 0 s; each must return one of the codes a queue can
 * give, never crash, never wait. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const words[] = {
    "ring_cap", "ring_grow", "log_punched", "ndone",  "maxsize", "kind",    "magic",
    "p.mode",   "p.ring",    "p.log",       "p.count", "g.mode", "g.ring",  "g.log",
    "g.count",  "next.kind", "next.len",
};

static void check(int err)
{
    if (err != 0 && err != MP_EEMPTY && err != MP_EFULL && err != MP_EBADMSG &&
        err != MP_EMSGSIZE && err != MP_ENOMEM)
        __builtin_trap();
}

static void use(mp_queue *q, mp_buf *b)
{
    check(mp_queue_get(q, b, 0));
    check(mp_queue_put(q, "x", 1, 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char *big;
    if (big == NULL && (big = calloc(1, (size_t)3 << 20)) == NULL)
        return 0;
    if (size < 1)
        return 0;
    mp_queue *q;
    if (mp_queue_new(&q, data[0] & 7) != 0)
        return 0;
    mp_buf b = MP_BUF_INIT;
    int bigs = 0;
    for (size_t i = 1; i < size; i++) {
        size_t n;
        switch (data[i] % 7) {
        case 0:
            n = i + 1 < size ? (size_t)data[++i] << 10 : 0;
            check(mp_queue_put(q, big, n, 0));
            break;
        case 1:
            if (bigs++ < 4)
                check(mp_queue_put(q, big, (size_t)3 << 20, 0));
            break;
        case 2:
            check(mp_queue_get(q, &b, 0));
            break;
        case 3: {
            char small[64];
            check(mp_queue_get_into(q, small, sizeof small, &n, 0));
            break;
        }
        case 4:
            check(mp_queue_qsize(q, &n));
            (void)mp_queue_empty(q);
            (void)mp_queue_full(q);
            break;
        case 5: {
            if (i + 9 >= size) {
                i = size;
                break;
            }
            const char *w = words[data[i + 1] % MP__ARRAY_LEN(words)];
            uint64_t v;
            memcpy(&v, data + i + 2, 8);
            i += 9;
            if (mp__queue_poke(q, w, v) != 0 && strncmp(w, "next.", 5) != 0)
                __builtin_trap();
            break;
        }
        default: {
            mp_buf wire = MP_BUF_INIT;
            mp__fdvec fds = {.n = 0};
            if (mp__queue_objtype.reduce(q, &wire, &fds, MP__WIRE_PEER) != 0 || fds.n != 1)
                __builtin_trap();
            int fd = mp__sys_dup(fds.fds[0]);
            mp__reader r;
            mp__reader_init(&r, wire.data, wire.len);
            void *obj = NULL;
            int err = fd < 0 ? fd : mp__queue_objtype.rebuild(&r, &fd, 1, MP__WIRE_PEER, &obj);
            if (err == 0) {
                use(obj, &b);
                mp_queue_free(obj);
            } else {
                check(err);
                if (fd >= 0)
                    mp__sys_close(fd);
            }
            mp_buf_free(&wire);
            break;
        }
        }
    }
    mp_buf_free(&b);
    mp_queue_free(q);
    return 0;
}
