/* libFuzzer target: a spawned child's preparation data (the body of a
 * PROCESS prep message).  First byte: descriptor count (0..7). */
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
    mp__prep prep;
    char why[400];
    if (mp__prep_decode(&r, fds, nfds, &prep, why, sizeof why) == 0)
        mp__prep_clear(&prep);
    else if (why[0] == '\0')
        __builtin_trap(); /* a failure always says why */
    for (size_t i = 0; i < nfds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return 0;
}
