/*
 * value_counter.c: a counter in shared memory, incremented by several
 * processes under the lock that comes with it (the seed notes' "sharing
 * state between processes / shared memory", 进程间共享状态 / 共享内存).
 *
 *     from multiprocessing import Process, Value
 *
 *     def work(counter, n):
 *         for _ in range(n):
 *             with counter.get_lock():
 *                 counter.value += 1
 *
 *     if __name__ == '__main__':
 *         counter = Value('i', 0)          # an int, with an RLock
 *         procs = [Process(target=work, args=(counter, 10000)) for _ in range(4)]
 *         for p in procs: p.start()
 *         for p in procs: p.join()
 *         print(counter.value)             # 40000
 *
 * `counter.value += 1` is a read, an add and a write: two processes doing it
 * at once can both read the same value and one increment is lost.  The lock
 * makes the three steps one.  In C, mp_value_ptr() is the value (a pointer
 * into the shared memory, the same bytes in every process) and
 * mp_value_lock() is counter.get_lock().
 *
 * The main program checks that no increment was lost, under each start
 * method, and that the lock is free at the end.
 */
#include <multiproc.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                  \
    do {                                                                             \
        int err_ = (call);                                                           \
        if (err_ < 0) {                                                              \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,      \
                    mp_errname(err_), mp_strerror(err_));                            \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define NPROC 4
#define PER_PROC 10000

/* def work(counter, n): ...   args: (value counter, int n) */
static int work(const mp_args *args)
{
    mp_value *counter = mp_args_value(args, 0);
    int64_t n = mp_args_int(args, 1);
    int32_t *value = mp_value_ptr(counter);   /* counter.value */
    mp_lock *lock = mp_value_lock(counter);   /* counter.get_lock() */

    for (int64_t k = 0; k < n; k++) {
        CHECK(mp_lock_acquire(lock, MP_FOREVER)); /* with counter.get_lock(): */
        *value += 1;                              /*     counter.value += 1 */
        CHECK(mp_lock_release(lock));
    }
    return 0;
}

static int run(const char *method)
{
    mp_value *counter;
    mp_process *procs[NPROC];

    CHECK(mp_value_new(&counter, MP_INT32, true)); /* Value('i', 0) */
    mp_args *args;
    CHECK(mp_args_new(&args));
    CHECK(mp_args_add_value(args, counter));       /* args=(counter, n) */
    CHECK(mp_args_add_int(args, PER_PROC));
    for (int i = 0; i < NPROC; i++)
        CHECK(mp_process_new(&procs[i], mp_get_context(method), work, args));
    mp_args_free(args);

    for (int i = 0; i < NPROC; i++)
        CHECK(mp_process_start(procs[i]));
    int bad = 0;
    for (int i = 0; i < NPROC; i++) {
        int code;
        CHECK(mp_process_join(procs[i], MP_FOREVER));
        CHECK(mp_process_exitcode(procs[i], &code));
        bad += code != 0;
        CHECK(mp_process_close(procs[i]));
    }

    int32_t got = *(int32_t *)mp_value_ptr(counter); /* print(counter.value) */
    bool ok = bad == 0 && got == NPROC * PER_PROC && !mp_lock_locked(mp_value_lock(counter));
    printf("%-10s counter.value = %d (%d processes x %d increments)  %s\n", method, (int)got,
           NPROC, PER_PROC, ok ? "ok" : "FAILED");
    mp_value_free(counter);
    return ok ? 0 : 1;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);

    int failed = 0;
    failed += run("fork");
    failed += run("spawn");
    failed += run("forkserver");
    if (failed) {
        fprintf(stderr, "value_counter: FAILED\n");
        return 1;
    }
    printf("value_counter: OK\n");
    return 0;
}
