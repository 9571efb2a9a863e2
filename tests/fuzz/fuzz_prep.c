/* libFuzzer target: a spawned child's preparation data (the body of a
 * PROCESS prep message).  First byte: descriptor count (0..7).
 *
 * A stored seed cannot reach past the function reference: that names the
 * target by this binary's build id, which every build changes, so a stale
 * seed stops at "the program changed".  So the seed is made at start-up
 * (LLVMFuzzerInitialize), by encoding a process whose target is a function
 * of this binary, with arguments of several kinds.  Before it is used it
 * must decode to that process and re-encode to the very same bytes.  It is
 * run once here (the replay of the corpus gets it too) and written as
 * "fresh-seed" into the first corpus directory on the command line, the
 * one libFuzzer writes its new inputs to, so that mutations start from it.
 * The replay (replay.c) passes no directory: the checked-in corpus is
 * never written. */
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The target the seed names; never called. */
static int fz_target(const mp_args *a)
{
    return (int)mp_args_count(a);
}

static void fz_fail(const char *what)
{
    fprintf(stderr, "fuzz_prep: the start-up seed: %s\n", what);
    __builtin_trap();
}

/* The seed: count byte, then the body; its descriptors in @fds. */
static void make_seed(mp_buf *seed, mp__fdvec *fds)
{
    mp_args *a;
    mp_process *p;
    static const uint8_t key[] = {0, 1, 2, 0xfe, 0xff};
    if (mp_args_new(&a) != 0 || mp_args_add_int(a, -42) != 0 || mp_args_add_str(a, "seed") != 0 ||
        mp_args_add_bytes(a, key, sizeof key) != 0 || mp_args_add_double(a, 0.5) != 0)
        fz_fail("mp_args");
    if (mp_process_new(&p, NULL, fz_target, a) != 0 || mp_process_set_name(p, "fuzz-seed") != 0 ||
        mp_process_set_daemon(p, true) != 0)
        fz_fail("mp_process_new");
    mp_args_free(a);
    if (mp__put_u8(seed, 0) != 0 || mp__prep_encode(p, seed, fds) != 0)
        fz_fail("mp__prep_encode");
    if (fds->n > 7)
        fz_fail("more than 7 descriptors");
    ((uint8_t *)seed->data)[0] = (uint8_t)fds->n;
    if (mp_process_close(p) != 0)
        fz_fail("mp_process_close");
}

/* Decode the seed as the child would and re-encode the result. */
static void check_seed(const mp_buf *seed, const mp__fdvec *fds)
{
    int copies[8];
    for (size_t i = 0; i < fds->n; i++)
        if ((copies[i] = mp__sys_dup(fds->fds[i])) < 0)
            fz_fail("dup");
    mp__reader r;
    mp__reader_init(&r, seed->data + 1, seed->len - 1);
    mp__prep prep;
    char why[400];
    if (mp__prep_decode(&r, copies, fds->n, &prep, why, sizeof why) != 0)
        fz_fail(why);
    if (prep.proc.target != fz_target || strcmp(prep.proc.name, "fuzz-seed") != 0 ||
        !prep.proc.daemon || mp_args_count(prep.proc.args) != 4)
        fz_fail("decoded to another process");
    mp_buf again = MP_BUF_INIT;
    mp__fdvec v = {.n = 0};
    if (mp__put_u8(&again, (uint8_t)fds->n) != 0 || mp__prep_encode(&prep.proc, &again, &v) != 0)
        fz_fail("re-encoding");
    if (again.len != seed->len || memcmp(again.data, seed->data, seed->len) != 0)
        fz_fail("re-encodes to other bytes");
    mp_buf_free(&again);
    mp__prep_clear(&prep);
    for (size_t i = 0; i < fds->n; i++)
        if (copies[i] >= 0)
            close(copies[i]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    mp_buf seed = MP_BUF_INIT;
    mp__fdvec fds = {.n = 0};
    make_seed(&seed, &fds);
    check_seed(&seed, &fds);
    LLVMFuzzerTestOneInput((const uint8_t *)seed.data, seed.len); /* the whole path, once */
    for (int i = 1; i < *argc; i++) {
        const char *dir = (*argv)[i];
        if (dir[0] == '-')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/fresh-seed", dir);
        FILE *f = fopen(path, "wb");
        if (f != NULL) {
            fwrite(seed.data, 1, seed.len, f);
            fclose(f);
        }
        break;
    }
    mp_buf_free(&seed);
    return 0;
}

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
