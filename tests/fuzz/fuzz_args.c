/* libFuzzer target: the mp_args wire form as a peer sends it — over a
 * connection (objects and descriptors) or to a manager (data only).
 *
 * Byte 0: bits 0-2 how many descriptors arrive with the message (0..7),
 *         bit 3 the channel (0 a connection, 1 a manager's data only).
 * Byte 1: two bits per descriptor (the first four; the rest are /dev/null):
 *         0 /dev/null, 1 a socket, 2 a zeroed 1 MiB memfd sealed at its
 *         size (an arena segment's shape), 3 a real queue's memfd.
 * So every object kind is decoded in every form (local, a manager's proxy,
 * with and without its descriptors) from arbitrary bytes.  A decode must
 * load no library: the number of loaded objects is checked after each. */
#include "internal.h"
#include "fuzz_objects.h"

#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fz_memfd = -1, fz_queue_fd = -1;

static void fz_init(void)
{
    fz_memfd = mp__sys_memfd("fuzz-arena");
    if (fz_memfd < 0 || mp__sys_memfd_size(fz_memfd, (size_t)1 << 20) != 0)
        __builtin_trap();
    mp_queue *q;
    mp_args *a;
    mp_buf b = MP_BUF_INIT;
    mp__fdvec v = {.n = 0};
    /* a real queue's descriptor, taken from its wire form */
    if (mp_queue_new(&q, 0) != 0 || mp_args_new(&a) != 0 || mp_args_add_queue(a, q) != 0 ||
        mp__args_encode(a, &b, &v, MP__WIRE_PEER) != 0 || v.n != 1)
        __builtin_trap();
    fz_queue_fd = mp__sys_dup(v.fds[0]);
    mp_buf_free(&b);
    mp_args_free(a);
    mp_queue_free(q);
}

static int fz_fd(unsigned kind)
{
    switch (kind) {
    case 1: {
        int sv[2];
        if (mp__sys_socketpair(SOCK_STREAM, sv) < 0)
            return -1;
        mp__sys_close(sv[1]);
        return sv[0];
    }
    case 2:
        return mp__sys_dup(fz_memfd);
    case 3:
        return mp__sys_dup(fz_queue_fd);
    default:
        return open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    if (fz_memfd < 0) {
        fz_init();
    }
    int fds[8];
    size_t nfds = data[0] & 7;
    mp__channel ch = data[0] & 8 ? MP__WIRE_DATA : MP__WIRE_PEER;
    for (size_t i = 0; i < nfds; i++)
        fds[i] = fz_fd(i < 4 ? (unsigned)(data[1] >> (2 * i)) & 3 : 0);
    int received[8];
    memcpy(received, fds, nfds * sizeof *fds);
    size_t before = loaded_objects();
    mp__reader r;
    mp__reader_init(&r, data + 2, size - 2);
    mp_args *a = NULL;
    int err = mp__args_decode(&r, fds, nfds, ch, &a);
    if (loaded_objects() != before)
        __builtin_trap(); /* a peer's bytes loaded a library */
    if (err == 0) {
        /* a decoded list re-encodes, on the same channel, to the very
         * bytes it was decoded from: one wire form per list, so nothing a
         * peer sends is read in a way the sender did not write.  The one
         * freedom is a descriptor's index, which names its place among
         * those received: the encoder numbers them in order of use, so
         * the bytes must match whenever the input used them so too (the
         * re-encoding lists the received descriptors in their order). */
        mp_buf out = MP_BUF_INIT;
        mp__fdvec v = {.n = 0};
        if (mp__args_encode(a, &out, &v, ch) != 0 || out.len != r.off)
            __builtin_trap();
        bool in_order = v.n <= nfds;
        for (size_t i = 0; in_order && i < v.n; i++)
            in_order = v.fds[i] == received[i];
        if (in_order && r.off > 0 && memcmp(out.data, data + 2, r.off) != 0)
            __builtin_trap();
        mp_buf_free(&out);
        mp_args_free(a);
    } else if (a != NULL) {
        __builtin_trap();
    }
    for (size_t i = 0; i < nfds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return 0;
}
