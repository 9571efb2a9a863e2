/*
 * shm_python.c: named shared memory shared with a Python script.
 *
 * The C program creates a SharedMemory block, puts a greeting and four
 * integers in it, and runs a Python script that attaches to the block by
 * its name, prints what it finds, and answers in place:
 *
 *     from multiprocessing import shared_memory
 *     shm = shared_memory.SharedMemory(name)       # the name C chose
 *     ... read the greeting and the numbers, write a reply, double the numbers
 *     shm.close()
 *
 * The C program then reads the reply and removes the block.  Both sides see
 * the same bytes because both open /dev/shm/<name>: mp_shm_new uses
 * Python's naming ("psm_" + 8 hex digits, given without the slash).
 *
 * One thing to know on the Python side: before Python 3.13, attaching to a
 * block registers it with Python's own resource tracker, which would remove
 * it when the script ends; the script unregisters it (3.13 and later have
 * track=False for that).  The C side needs nothing similar: the block this
 * program creates would be removed when the program ends, even if it were
 * killed, and only because it created it.
 *
 * Run with PYTHON=/path/to/python3 to choose the interpreter.
 */
#include <multiproc.h>

#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

#define CHECK(call)                                                                  \
    do {                                                                             \
        int err_ = (call);                                                           \
        if (err_ < 0) {                                                              \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,      \
                    mp_errname(err_), mp_strerror(err_));                            \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* The block: a NUL-terminated text in bytes 0..31, four int32 at 32. */
#define TEXT_SIZE 32
#define NUMBERS_AT 32
#define BLOCK_SIZE 64

static const char script[] =
    "import struct, sys\n"
    "from multiprocessing import shared_memory, resource_tracker\n"
    "try:\n"
    "    shm = shared_memory.SharedMemory(sys.argv[1], track=False)\n"
    "except TypeError:  # before 3.13\n"
    "    shm = shared_memory.SharedMemory(sys.argv[1])\n"
    "    resource_tracker.unregister(shm._name, 'shared_memory')\n"
    "text = bytes(shm.buf[:32]).split(b'\\0')[0].decode()\n"
    "numbers = struct.unpack_from('=4i', shm.buf, 32)\n"
    "print(f'python read: {text!r} {list(numbers)}')\n"
    "reply = b'hello from Python'\n"
    "shm.buf[:32] = reply + bytes(32 - len(reply))\n"
    "struct.pack_into('=4i', shm.buf, 32, *(2 * n for n in numbers))\n"
    "print(f'python wrote: {reply.decode()!r} {[2 * n for n in numbers]}')\n"
    "shm.close()\n";

/* Run the script on the block's name; its exit status, or -1. */
static int run_python(const char *name)
{
    const char *python = getenv("PYTHON");
    if (python == NULL || *python == '\0')
        python = "python3";
    char *argv[] = {(char *)python, "-c", (char *)script, (char *)name, NULL};
    pid_t pid;
    fflush(stdout); /* our lines first */
    int rc = posix_spawnp(&pid, python, NULL, NULL, argv, environ);
    if (rc != 0) {
        fprintf(stderr, "shm_python: cannot run %s: %s (set PYTHON=...)\n", python,
                strerror(rc));
        return -1;
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

static void show(const char *who, const mp_shm *shm, const char *buf)
{
    int32_t n[4];
    memcpy(n, buf + NUMBERS_AT, sizeof n);
    printf("%s: '%s' [%d, %d, %d, %d] in %s\n", who, buf, (int)n[0], (int)n[1], (int)n[2],
           (int)n[3], mp_shm_name(shm));
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* shm = SharedMemory(create=True, size=64): a random psm_ name */
    mp_shm *shm;
    CHECK(mp_shm_new(&shm, NULL, BLOCK_SIZE, MP_SHM_CREATE));
    char *buf = mp_shm_buf(shm);
    printf("C created %s, %zu bytes\n", mp_shm_name(shm), mp_shm_size(shm));

    snprintf(buf, TEXT_SIZE, "hello from C");
    const int32_t numbers[4] = {1, 2, 3, 4};
    memcpy(buf + NUMBERS_AT, numbers, sizeof numbers);
    show("C wrote", shm, buf);

    int rc = run_python(mp_shm_name(shm));
    int ok = rc == 0;
    if (ok) {
        show("C read", shm, buf);
        int32_t got[4];
        memcpy(got, buf + NUMBERS_AT, sizeof got);
        ok = strcmp(buf, "hello from Python") == 0;
        for (int i = 0; i < 4; i++)
            ok = ok && got[i] == 2 * numbers[i];
    } else if (rc > 0) {
        fprintf(stderr, "shm_python: the script exited with %d\n", rc);
    }

    /* shm.close(); shm.unlink() */
    CHECK(mp_shm_unlink(shm));
    CHECK(mp_shm_close(shm));
    if (!ok) {
        fprintf(stderr, "shm_python: Python's answer is missing or wrong\n");
        return 1;
    }
    printf("shm_python: OK\n");
    return 0;
}
