/* libFuzzer target: the mp_args wire form (what a parent sends a child).
 * First byte: how many descriptors arrive with the message (0..7). */
#include "internal.h"

#include <fcntl.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int fds[8];
    size_t nfds = data[0] & 7;
    for (size_t i = 0; i < nfds; i++)
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    mp__reader r;
    mp__reader_init(&r, data + 1, size - 1);
    mp_args *a = NULL;
    int err = mp__args_decode(&r, fds, nfds, &a);
    if (err == 0) {
        /* a decoded list re-encodes to the same bytes */
        mp_buf out = MP_BUF_INIT;
        mp__fdvec v = {.n = 0};
        if (mp__args_encode(a, &out, &v) != 0 || out.len != r.off)
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
