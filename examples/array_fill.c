/*
 * array_fill.c: Value and Array, data in shared memory that children write
 * and the parent reads (the seed notes' "sharing state between processes /
 * shared memory", 进程间共享状态 / 共享内存).  First the example of Python's
 * documentation:
 *
 *     from multiprocessing import Process, Value, Array
 *
 *     def f(n, a):
 *         n.value = 3.1415927
 *         for i in range(len(a)):
 *             a[i] = -a[i]
 *
 *     if __name__ == '__main__':
 *         num = Value('d', 0.0)
 *         arr = Array('i', range(10))
 *         p = Process(target=f, args=(num, arr))
 *         p.start()
 *         p.join()
 *         print(num.value)     # 3.1415927
 *         print(arr[:])        # [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]
 *
 * then an Array of squares filled by several children at once, each writing
 * its own share of the elements (child k the elements k, k + 4, k + 8, ...):
 * disjoint elements need no lock, so the array is made without one (Python's
 * RawArray, or Array(..., lock=False)).
 *
 *     def fill(a, k, step):
 *         for i in range(k, len(a), step):
 *             a[i] = i * i
 *
 * The main program checks every element it prints, under each start method.
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

#define NCHILD 4
#define NSQUARES 20

/* Start @target(args) under @method (the process copies args, freed here). */
static mp_process *start(const char *method, mp_target_fn target, mp_args *args)
{
    mp_process *p;
    CHECK(mp_process_new(&p, mp_get_context(method), target, args));
    mp_args_free(args);
    CHECK(mp_process_start(p));
    return p;
}

/* Join and close @p; its exit code. */
static int join(mp_process *p)
{
    int code;
    CHECK(mp_process_join(p, MP_FOREVER));
    CHECK(mp_process_exitcode(p, &code));
    CHECK(mp_process_close(p));
    return code;
}

/* print(arr[:]) for int32 and int64 elements */
static void print_array(const char *prefix, mp_array *arr)
{
    printf("%s[", prefix);
    for (size_t i = 0; i < mp_array_len(arr); i++) {
        long long v = mp_array_type(arr) == MP_INT64 ? ((int64_t *)mp_array_data(arr))[i]
                                                     : ((int32_t *)mp_array_data(arr))[i];
        printf("%s%lld", i ? ", " : "", v);
    }
    printf("]\n");
}

/* ---- Python's documentation example -------------------------------------- */

/* def f(n, a): ...   args: (value n, array a) */
static int f(const mp_args *args)
{
    double *n = mp_value_ptr(mp_args_value(args, 0));
    mp_array *arr = mp_args_array(args, 1);
    int32_t *a = mp_array_data(arr);

    *n = 3.1415927;                             /* n.value = 3.1415927 */
    for (size_t i = 0; i < mp_array_len(arr); i++)
        a[i] = -a[i];                           /* a[i] = -a[i] */
    return 0;
}

static int docs_example(const char *method, bool verbose)
{
    mp_value *num;
    mp_array *arr;
    int32_t init[10];
    for (int i = 0; i < 10; i++)
        init[i] = i;                            /* range(10) */
    CHECK(mp_value_new(&num, MP_DOUBLE, true)); /* Value('d', 0.0) */
    CHECK(mp_array_new(&arr, MP_INT32, 10, init, true)); /* Array('i', range(10)) */

    mp_args *args;
    CHECK(mp_args_new(&args));
    CHECK(mp_args_add_value(args, num));        /* args=(num, arr) */
    CHECK(mp_args_add_array(args, arr));
    int code = join(start(method, f, args));

    double n = *(double *)mp_value_ptr(num);
    const int32_t *a = mp_array_data(arr);
    bool ok = code == 0 && n == 3.1415927;
    for (int i = 0; i < 10; i++)
        ok = ok && a[i] == -i;
    if (verbose) {
        printf("%.8g\n", n);                    /* print(num.value) */
        print_array("", arr);                   /* print(arr[:]) */
    }
    printf("%-10s num.value and arr[:] as Python prints them  %s\n", method,
           ok ? "ok" : "FAILED");
    mp_array_free(arr);
    mp_value_free(num);
    return ok ? 0 : 1;
}

/* ---- squares, filled by several children ----------------------------------- */

/* def fill(a, k, step): ...   args: (array a, int k, int step) */
static int fill(const mp_args *args)
{
    mp_array *arr = mp_args_array(args, 0);
    size_t k = (size_t)mp_args_int(args, 1), step = (size_t)mp_args_int(args, 2);
    int64_t *a = mp_array_data(arr);
    for (size_t i = k; i < mp_array_len(arr); i += step)
        a[i] = (int64_t)(i * i);
    return 0;
}

static int squares(const char *method, bool verbose)
{
    mp_array *arr;
    mp_process *procs[NCHILD];
    CHECK(mp_array_new(&arr, MP_INT64, NSQUARES, NULL, false)); /* RawArray('q', 20) */
    for (int k = 0; k < NCHILD; k++) {
        mp_args *args;
        CHECK(mp_args_new(&args));
        CHECK(mp_args_add_array(args, arr));
        CHECK(mp_args_add_int(args, k));
        CHECK(mp_args_add_int(args, NCHILD));
        procs[k] = start(method, fill, args);
    }
    int bad = 0;
    for (int k = 0; k < NCHILD; k++)
        bad += join(procs[k]) != 0;

    const int64_t *a = mp_array_data(arr);
    bool ok = bad == 0 && mp_array_lock(arr) == NULL;
    for (int i = 0; i < NSQUARES; i++)
        ok = ok && a[i] == (int64_t)i * i;
    if (verbose)
        print_array("squares: ", arr);
    printf("%-10s %d children filled %d squares  %s\n", method, NCHILD, NSQUARES,
           ok ? "ok" : "FAILED");
    mp_array_free(arr);
    return ok ? 0 : 1;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);

    static const char *const methods[] = {"fork", "spawn", "forkserver"};
    int failed = 0;
    for (int m = 0; m < 3; m++)
        failed += docs_example(methods[m], m == 0);
    for (int m = 0; m < 3; m++)
        failed += squares(methods[m], m == 0);
    if (failed) {
        fprintf(stderr, "array_fill: FAILED\n");
        return 1;
    }
    printf("array_fill: OK\n");
    return 0;
}
