/* libFuzzer target: the first things a spawned child reads (spawn.c): the
 * environment marker MULTIPROC_SPAWN=<fd>, which anyone can set, and the
 * prep header its parent writes (u32 "MPH1", u32 role, u64 body length,
 * u32 descriptor count).
 *
 *   data[0] bit 0 = 0: the marker's value is data[1..] (up to its first
 *           NUL) as a string (mp__spawn_marker_fd).
 *   data[0] bit 0 = 1: the header is data[2..22) (zero-padded when the
 *           input is shorter, as a short read is no header), received with
 *           data[1] descriptors (mp__prep_header_decode).
 *
 * Oracles: the marker names a descriptor only for a plain decimal number
 * above stderr that fits an int (checked against strtol); the header
 * passes only with its magic, a descriptor count equal to the one
 * received and a body length within the limit, and then gives back the
 * role and length it holds. */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t le32(const uint8_t *p)
{
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static void marker(const uint8_t *data, size_t size)
{
    char v[64];
    size_t n = size - 1 < sizeof v - 1 ? size - 1 : sizeof v - 1;
    memcpy(v, data + 1, n);
    v[n] = '\0';
    int fd = mp__spawn_marker_fd(v);
    /* what a number is, said another way */
    bool digits = v[0] != '\0' && strspn(v, "0123456789") == strlen(v);
    errno = 0;
    long want = digits ? strtol(v, NULL, 10) : -1;
    if (errno == ERANGE || want > INT_MAX || want <= 2)
        want = -1;
    if (fd != want)
        __builtin_trap();
}

static void header(const uint8_t *data, size_t size)
{
    uint8_t hdr[MP__PREP_HDR_SIZE] = {0};
    size_t nfds = data[1];
    size_t n = size - 2 < sizeof hdr ? size - 2 : sizeof hdr;
    memcpy(hdr, data + 2, n);
    uint32_t role = 0xdeadbeef;
    uint64_t len = 0xdeadbeef;
    int err = mp__prep_header_decode(hdr, nfds, &role, &len);
    uint64_t want_len = le32(hdr + 8) | (uint64_t)le32(hdr + 12) << 32;
    bool valid = le32(hdr) == 0x3148504dU /* "MPH1" */ && le32(hdr + 16) == nfds &&
                 want_len <= (uint64_t)1 << 40;
    if (err != (valid ? 0 : MP_EBADMSG))
        __builtin_trap();
    if (err == 0 && (role != le32(hdr + 4) || len != want_len))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    if (data[0] & 1)
        header(data, size);
    else
        marker(data, size);
    return 0;
}
