/*
 * Value and Array: PYTHON-SEMANTICS section 14 that applies to C.  Every
 * mp_type, zero-initialised (also where freed memory was dirty) or from an
 * initializer, with and without a lock; shared with children (and their
 * children) under every start method; increments under the value's own
 * lock; many objects without descriptor growth; bad input.
 */
#include "mp_test.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

#define NTYPES 12

static const mp_type all_types[NTYPES] = {
    MP_CHAR,  MP_INT8,   MP_UINT8, MP_INT16,  MP_UINT16, MP_INT32,
    MP_UINT32, MP_INT64, MP_UINT64, MP_FLOAT, MP_DOUBLE, MP_BOOL,
};

static mp_args *args_new(void)
{
    mp_args *a;
    ASSERT_OK(mp_args_new(&a));
    return a;
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

static bool aligned(const void *p, size_t align)
{
    return (uintptr_t)p % align == 0;
}

/* ---- types ---------------------------------------------------------------- */

MP_TEST(type_sizes)
{
    ASSERT_EQ(sizeof(char), mp_type_size(MP_CHAR));
    ASSERT_EQ(1, mp_type_size(MP_INT8));
    ASSERT_EQ(1, mp_type_size(MP_UINT8));
    ASSERT_EQ(2, mp_type_size(MP_INT16));
    ASSERT_EQ(2, mp_type_size(MP_UINT16));
    ASSERT_EQ(4, mp_type_size(MP_INT32));
    ASSERT_EQ(4, mp_type_size(MP_UINT32));
    ASSERT_EQ(8, mp_type_size(MP_INT64));
    ASSERT_EQ(8, mp_type_size(MP_UINT64));
    ASSERT_EQ(sizeof(float), mp_type_size(MP_FLOAT));
    ASSERT_EQ(sizeof(double), mp_type_size(MP_DOUBLE));
    ASSERT_EQ(sizeof(bool), mp_type_size(MP_BOOL));
    ASSERT_EQ(0, mp_type_size((mp_type)NTYPES));
    ASSERT_EQ(0, mp_type_size((mp_type)1000));
    ASSERT_EQ(0, mp_type_size((mp_type)-1));
}

/* ---- Value in one process ------------------------------------------------- */

MP_TEST(value_every_type_zeroed)
{
    for (int locked = 0; locked < 2; locked++) {
        for (int i = 0; i < NTYPES; i++) {
            mp_type t = all_types[i];
            size_t size = mp_type_size(t);
            /* three rounds, the memory dirtied before each free */
            for (int round = 0; round < 3; round++) {
                mp_value *v;
                ASSERT_OK(mp_value_new(&v, t, locked));
                ASSERT_EQ(t, mp_value_type(v));
                void *p = mp_value_ptr(v);
                ASSERT_TRUE(p != NULL);
                ASSERT_TRUE(aligned(p, size));
                ASSERT_TRUE(all_zero(p, size));
                mp_lock *l = mp_value_lock(v);
                if (locked) {
                    ASSERT_TRUE(l != NULL);
                    ASSERT_TRUE(mp_lock_is_recursive(l)); /* Python's default: an RLock */
                    ASSERT_FALSE(mp_lock_locked(l));
                    ASSERT_OK(mp_lock_acquire(l, 0));
                    ASSERT_OK(mp_lock_acquire(l, 0));
                    ASSERT_OK(mp_lock_release(l));
                    ASSERT_OK(mp_lock_release(l));
                    ASSERT_ERR(MP_EINVAL, mp_lock_release(l));
                } else {
                    ASSERT_TRUE(l == NULL);
                }
                memset(p, 0xa5, size);
                ASSERT_EQ(0xa5, *(unsigned char *)mp_value_ptr(v));
                mp_value_free(v);
            }
        }
    }
}

MP_TEST(value_holds_what_is_written)
{
    mp_value *v;
    ASSERT_OK(mp_value_new(&v, MP_INT64, true));
    *(int64_t *)mp_value_ptr(v) = (int64_t)1 << 33;
    ASSERT_EQ((int64_t)1 << 33, *(int64_t *)mp_value_ptr(v));
    ASSERT_TRUE(mp_value_ptr(v) == mp_value_ptr(v)); /* a stable address */
    mp_value_free(v);

    ASSERT_OK(mp_value_new(&v, MP_DOUBLE, false));
    *(double *)mp_value_ptr(v) = 3.625;
    ASSERT_TRUE(*(double *)mp_value_ptr(v) == 3.625);
    mp_value_free(v);

    /* values are distinct objects */
    mp_value *a, *b;
    ASSERT_OK(mp_value_new(&a, MP_INT32, false));
    ASSERT_OK(mp_value_new(&b, MP_INT32, false));
    ASSERT_TRUE(mp_value_ptr(a) != mp_value_ptr(b));
    *(int32_t *)mp_value_ptr(a) = 1;
    *(int32_t *)mp_value_ptr(b) = 2;
    ASSERT_EQ(1, *(int32_t *)mp_value_ptr(a));
    ASSERT_EQ(2, *(int32_t *)mp_value_ptr(b));
    mp_value_free(a);
    mp_value_free(b);

    /* each locked value has its own lock */
    ASSERT_OK(mp_value_new(&a, MP_INT32, true));
    ASSERT_OK(mp_value_new(&b, MP_INT32, true));
    ASSERT_OK(mp_lock_acquire(mp_value_lock(a), 0));
    ASSERT_FALSE(mp_lock_locked(mp_value_lock(b)));
    ASSERT_OK(mp_lock_release(mp_value_lock(a)));
    mp_value_free(a);
    mp_value_free(b);
}

/* ---- Array in one process ------------------------------------------------- */

MP_TEST(array_every_type_zeroed)
{
    for (int locked = 0; locked < 2; locked++) {
        for (int i = 0; i < NTYPES; i++) {
            mp_type t = all_types[i];
            size_t size = mp_type_size(t);
            for (int round = 0; round < 3; round++) {
                mp_array *a;
                ASSERT_OK(mp_array_new(&a, t, 37, NULL, locked));
                ASSERT_EQ(37, mp_array_len(a));
                ASSERT_EQ(t, mp_array_type(a));
                void *p = mp_array_data(a);
                ASSERT_TRUE(p != NULL);
                ASSERT_TRUE(aligned(p, size));
                ASSERT_TRUE(all_zero(p, 37 * size));
                if (locked) {
                    mp_lock *l = mp_array_lock(a);
                    ASSERT_TRUE(l != NULL);
                    ASSERT_TRUE(mp_lock_is_recursive(l));
                    ASSERT_OK(mp_lock_acquire(l, 0));
                    ASSERT_OK(mp_lock_release(l));
                } else {
                    ASSERT_TRUE(mp_array_lock(a) == NULL);
                }
                memset(p, 0x5a, 37 * size);
                mp_array_free(a);
            }
        }
    }
}

MP_TEST(array_from_an_initializer)
{
    int32_t ints[10];
    for (int i = 0; i < 10; i++)
        ints[i] = i * i - 7;
    mp_array *a;
    ASSERT_OK(mp_array_new(&a, MP_INT32, 10, ints, true));
    ASSERT_EQ(10, mp_array_len(a));
    ASSERT_EQ(MP_INT32, mp_array_type(a));
    ASSERT_TRUE(mp_array_data(a) != (void *)ints); /* copied */
    ASSERT_MEMEQ(ints, mp_array_data(a), sizeof ints);
    ints[0] = 99; /* the caller's buffer is not shared */
    ASSERT_EQ(-7, ((int32_t *)mp_array_data(a))[0]);
    /* slice assignment, as Python's arr[4:8] = [1, 2, 3, 4] */
    int32_t *d = mp_array_data(a);
    for (int i = 4; i < 8; i++)
        d[i] = i - 3;
    ASSERT_EQ(4, d[7]);
    ASSERT_EQ(-3, d[2]); /* untouched */
    mp_array_free(a);

    double dbl[5] = {0.5, -1.25, 3.625, 1e300, -0.0};
    ASSERT_OK(mp_array_new(&a, MP_DOUBLE, 5, dbl, false));
    ASSERT_MEMEQ(dbl, mp_array_data(a), sizeof dbl);
    ASSERT_TRUE(mp_array_lock(a) == NULL);
    mp_array_free(a);

    char hello[20] = "hello";
    ASSERT_OK(mp_array_new(&a, MP_CHAR, sizeof hello, hello, true));
    ASSERT_EQ(20, mp_array_len(a));
    ASSERT_STREQ("hello", mp_array_data(a));
    ASSERT_TRUE(all_zero((char *)mp_array_data(a) + 5, 15));
    mp_array_free(a);

    uint64_t big[3] = {UINT64_MAX, 0, (uint64_t)1 << 63};
    ASSERT_OK(mp_array_new(&a, MP_UINT64, 3, big, false));
    ASSERT_MEMEQ(big, mp_array_data(a), sizeof big);
    mp_array_free(a);

    /* a large array, zeroed */
    ASSERT_OK(mp_array_new(&a, MP_DOUBLE, 1 << 18, NULL, false));
    ASSERT_EQ(1 << 18, mp_array_len(a));
    ASSERT_TRUE(all_zero(mp_array_data(a), ((size_t)1 << 18) * sizeof(double)));
    ((double *)mp_array_data(a))[(1 << 18) - 1] = 1.0;
    mp_array_free(a);
}

/* Index and slice access the same for a local array and a manager's:
 * zero at first, what was stored after, exactly the elements asked for,
 * nothing read or written past the end.  A pointer and a lock: a local
 * array's only. */
MP_TEST(array_load_store_every_type, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    for (int i = 0; i < NTYPES; i++) {
        mp_type t = all_types[i];
        size_t es = mp_type_size(t);
        uint8_t want[7 * 8], got[8 * 8];
        mp_array *a;
        ASSERT_OK(mp_test_array_new(&a, t, 7, NULL, true));
        ASSERT_EQ(7, mp_array_len(a));
        ASSERT_EQ(t, mp_array_type(a));
        ASSERT_EQ(mp_test_proxied(), mp_array_data(a) == NULL);
        ASSERT_EQ(mp_test_proxied(), mp_array_lock(a) == NULL);
        memset(got, 0x77, sizeof got);
        ASSERT_OK(mp_array_load(a, 0, 7, got));
        ASSERT_TRUE(all_zero(got, 7 * es));
        ASSERT_EQ(0x77, got[7 * es]); /* not one byte more */
        for (size_t k = 0; k < sizeof want; k++)
            want[k] = (uint8_t)(k * 7 + (size_t)i);
        if (t == MP_BOOL)
            memset(want, 1, sizeof want);
        ASSERT_OK(mp_array_store(a, 2, 3, want)); /* a[2:5] = ... */
        ASSERT_OK(mp_array_store(a, 6, 1, want + 3 * es)); /* a[6] = ... */
        ASSERT_OK(mp_array_store(a, 7, 0, want)); /* an empty slice at the end */
        ASSERT_OK(mp_array_load(a, 0, 7, got));
        ASSERT_TRUE(all_zero(got, 2 * es));
        ASSERT_MEMEQ(got + 2 * es, want, 3 * es);
        ASSERT_TRUE(all_zero(got + 5 * es, es));
        ASSERT_MEMEQ(got + 6 * es, want + 3 * es, es);
        memset(got, 0x77, sizeof got);
        ASSERT_OK(mp_array_load(a, 3, 1, got)); /* a[3] */
        ASSERT_MEMEQ(got, want + es, es);
        ASSERT_EQ(0x77, got[es]);
        if (!mp_test_proxied())
            ASSERT_MEMEQ((uint8_t *)mp_array_data(a) + 2 * es, want, 3 * es);
        /* past the end, or NULL: MP_EINVAL, nothing touched */
        ASSERT_ERR(MP_EINVAL, mp_array_load(a, 6, 2, got));
        ASSERT_ERR(MP_EINVAL, mp_array_load(a, 8, 0, got));
        ASSERT_ERR(MP_EINVAL, mp_array_load(a, SIZE_MAX, 2, got));
        ASSERT_ERR(MP_EINVAL, mp_array_store(a, 0, 8, want));
        ASSERT_ERR(MP_EINVAL, mp_array_store(a, 1, SIZE_MAX, want));
        ASSERT_ERR(MP_EINVAL, mp_array_store(a, 0, 1, NULL));
        ASSERT_ERR(MP_EINVAL, mp_array_load(a, 0, 1, NULL));
        ASSERT_ERR(MP_EINVAL, mp_array_load(NULL, 0, 0, got));
        ASSERT_OK(mp_array_load(a, 0, 7, got));
        ASSERT_MEMEQ(got + 2 * es, want, 3 * es);
        mp_array_free(a);
    }
    /* an initializer */
    int16_t init[4] = {-1, 2, -3, 4}, back[4];
    mp_array *a;
    ASSERT_OK(mp_test_array_new(&a, MP_INT16, 4, init, false));
    ASSERT_OK(mp_array_load(a, 0, 4, back));
    ASSERT_MEMEQ(back, init, sizeof init);
    mp_array_free(a);
}

/* ---- shared with children -------------------------------------------------- */

typedef union scalar {
    char c;
    int8_t i8;
    uint8_t u8;
    int16_t i16;
    uint16_t u16;
    int32_t i32;
    uint32_t u32;
    int64_t i64;
    uint64_t u64;
    float f;
    double d;
    bool b;
} scalar;

/* Per type, in all_types order: the parent's value and the child's. */
static const scalar parent_vals[NTYPES] = {
    {.c = 'x'},        {.i8 = -5},         {.u8 = 250},           {.i16 = -232},
    {.u16 = 60000},    {.i32 = 4343},      {.u32 = 4000000000u},  {.i64 = (int64_t)1 << 33},
    {.u64 = ((uint64_t)1 << 63) + 5}, {.f = 1.5f}, {.d = 3.625}, {.b = true},
};
static const scalar child_vals[NTYPES] = {
    {.c = 'y'},        {.i8 = 100},        {.u8 = 1},             {.i16 = 234},
    {.u16 = 7},        {.i32 = 24234},     {.u32 = 3},            {.i64 = (int64_t)1 << 34},
    {.u64 = UINT64_MAX}, {.f = -0.25f},    {.d = -4.25},          {.b = false},
};

/* What a Value is through mp_value_load/store, the same for a local value
 * and a manager's: zero at first, what was stored after, exactly the type's
 * size copied, distinct objects.  A pointer and a lock: a local value's only. */
MP_TEST(value_load_store_every_type, .variants = MP_TEST_PLAIN | MP_TEST_PROXY)
{
    mp_value *v[NTYPES];
    for (int i = 0; i < NTYPES; i++) {
        size_t size = mp_type_size(all_types[i]);
        ASSERT_OK(mp_test_value_new(&v[i], all_types[i]));
        ASSERT_EQ(all_types[i], mp_value_type(v[i]));
        ASSERT_EQ(mp_test_proxied(), mp_value_ptr(v[i]) == NULL);
        ASSERT_EQ(mp_test_proxied(), mp_value_lock(v[i]) == NULL);
        unsigned char got[sizeof(scalar) + 1];
        memset(got, 0xa5, sizeof got);
        ASSERT_OK(mp_value_load(v[i], got));
        ASSERT_TRUE(all_zero(got, size));
        ASSERT_EQ(0xa5, got[size]); /* not a byte more */
        ASSERT_OK(mp_value_store(v[i], &parent_vals[i]));
    }
    for (int i = 0; i < NTYPES; i++) { /* each kept its own */
        scalar got;
        ASSERT_OK(mp_value_load(v[i], &got));
        ASSERT_MEMEQ(&parent_vals[i], &got, mp_type_size(all_types[i]));
    }
    /* a local value's lock is an RLock: its holder may load and store */
    mp_lock *l = mp_value_lock(v[7]);
    if (l != NULL)
        ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_value_store(v[7], &child_vals[7]));
    int64_t x = 0;
    ASSERT_OK(mp_value_load(v[7], &x));
    ASSERT_EQ(child_vals[7].i64, x);
    if (l != NULL)
        ASSERT_OK(mp_lock_release(l));
    ASSERT_ERR(MP_EINVAL, mp_value_load(v[7], NULL));
    ASSERT_ERR(MP_EINVAL, mp_value_store(v[7], NULL));
    ASSERT_ERR(MP_EINVAL, mp_value_load(NULL, &x));
    ASSERT_ERR(MP_EINVAL, mp_value_store(NULL, &x));
    for (int i = 0; i < NTYPES; i++)
        mp_value_free(v[i]);
}

/* args: int locked, then one value per type.  Checks the parent's values,
 * writes its own (under the value's lock when there is one: the calls
 * take it again, an RLock). */
static int t_values(const mp_args *a)
{
    bool locked = mp_args_int(a, 0) != 0;
    ASSERT_EQ(NTYPES + 1, mp_args_count(a));
    for (int i = 0; i < NTYPES; i++) {
        ASSERT_EQ(MP_ARG_OBJECT, mp_args_type(a, (size_t)i + 1));
        mp_value *v = mp_args_value(a, (size_t)i + 1);
        ASSERT_TRUE(v != NULL);
        ASSERT_EQ(all_types[i], mp_value_type(v));
        size_t size = mp_type_size(all_types[i]);
        scalar got;
        ASSERT_OK(mp_value_load(v, &got));
        ASSERT_MEMEQ(&parent_vals[i], &got, size);
        mp_lock *l = mp_value_lock(v);
        ASSERT_EQ(locked, l != NULL);
        if (l != NULL) {
            ASSERT_TRUE(mp_lock_is_recursive(l));
            ASSERT_OK(mp_lock_acquire(l, 10));
        }
        ASSERT_OK(mp_value_store(v, &child_vals[i]));
        if (l != NULL)
            ASSERT_OK(mp_lock_release(l));
    }
    return 0;
}

/* A Value (in the proxy variant a manager's, which has no lock), then a
 * RawValue, of every type, written by the parent and then by a child. */
MP_TEST(values_shared_with_a_child, .variants = MP_START_METHODS | MP_TEST_PROXY,
        .timeout_s = 60)
{
    for (int raw = 0; raw < 2 && !(raw && mp_test_proxied()); raw++) {
        mp_value *v[NTYPES];
        mp_args *a = args_new();
        bool locked = !raw && !mp_test_proxied();
        ASSERT_OK(mp_args_add_int(a, locked));
        for (int i = 0; i < NTYPES; i++) {
            if (raw)
                ASSERT_OK(mp_value_new(&v[i], all_types[i], false));
            else
                ASSERT_OK(mp_test_value_new(&v[i], all_types[i]));
            ASSERT_OK(mp_value_store(v[i], &parent_vals[i]));
            ASSERT_OK(mp_args_add_value(a, v[i]));
        }
        ASSERT_EQ(0, mp_test_run(ctx, t_values, a));
        mp_args_free(a);
        for (int i = 0; i < NTYPES; i++) {
            scalar got;
            ASSERT_OK(mp_value_load(v[i], &got));
            ASSERT_MEMEQ(&child_vals[i], &got, mp_type_size(all_types[i]));
            if (locked)
                ASSERT_FALSE(mp_lock_locked(mp_value_lock(v[i])));
            mp_value_free(v[i]);
        }
    }
}

/* args: int locked, int32 array (prefix sum in place), double array
 * (doubled), char array (its string repeated). */
static int t_arrays(const mp_args *a)
{
    bool locked = mp_args_int(a, 0) != 0;
    mp_array *ints = mp_args_array(a, 1), *dbls = mp_args_array(a, 2), *chars = mp_args_array(a, 3);
    ASSERT_EQ(MP_INT32, mp_array_type(ints));
    ASSERT_EQ(MP_DOUBLE, mp_array_type(dbls));
    ASSERT_EQ(MP_CHAR, mp_array_type(chars));
    ASSERT_EQ(10, mp_array_len(ints));
    ASSERT_EQ(10, mp_array_len(dbls));
    ASSERT_EQ(20, mp_array_len(chars));
    ASSERT_EQ(locked, mp_array_lock(ints) != NULL);
    ASSERT_EQ(locked, mp_array_lock(dbls) != NULL);
    ASSERT_EQ(locked, mp_array_lock(chars) != NULL);
    /* through load and store, which a manager's array has too: an index, a
     * slice, the whole */
    if (locked)
        ASSERT_OK(mp_lock_acquire(mp_array_lock(ints), 10));
    int32_t n[10];
    ASSERT_OK(mp_array_load(ints, 0, 10, n));
    for (int i = 1; i < 10; i++) {
        n[i] += n[i - 1];
        ASSERT_OK(mp_array_store(ints, (size_t)i, 1, &n[i]));
    }
    if (locked)
        ASSERT_OK(mp_lock_release(mp_array_lock(ints)));
    double d[10];
    ASSERT_OK(mp_array_load(dbls, 0, 10, d));
    for (int i = 0; i < 10; i++)
        d[i] *= 2;
    ASSERT_OK(mp_array_store(dbls, 0, 10, d));
    char s[20];
    ASSERT_OK(mp_array_load(chars, 0, 20, s));
    ASSERT_STREQ("hello", s);
    ASSERT_OK(mp_array_store(chars, 5, 5, s));
    return 0;
}

MP_TEST(arrays_shared_with_a_child, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 60)
{
    for (int locked = 0; locked < 2; locked++) {
        if (locked && mp_test_proxied())
            break; /* a manager's array has no lock of its own */
        int32_t init[10];
        double dinit[10];
        for (int i = 0; i < 10; i++)
            init[i] = i, dinit[i] = i;
        mp_array *ints, *dbls, *chars;
        ASSERT_OK(mp_test_array_new(&ints, MP_INT32, 10, init, locked));
        ASSERT_OK(mp_test_array_new(&dbls, MP_DOUBLE, 10, dinit, locked));
        char hello[20] = "hello";
        ASSERT_OK(mp_test_array_new(&chars, MP_CHAR, sizeof hello, hello, locked));
        mp_args *a = args_new();
        ASSERT_OK(mp_args_add_int(a, locked));
        ASSERT_OK(mp_args_add_array(a, ints));
        ASSERT_OK(mp_args_add_array(a, dbls));
        ASSERT_OK(mp_args_add_array(a, chars));
        ASSERT_EQ(0, mp_test_run(ctx, t_arrays, a));
        mp_args_free(a);
        int32_t n[10];
        double d[10];
        char s[20];
        ASSERT_OK(mp_array_load(ints, 0, 10, n));
        ASSERT_OK(mp_array_load(dbls, 0, 10, d));
        ASSERT_OK(mp_array_load(chars, 0, 20, s));
        for (int i = 0; i < 10; i++)
            ASSERT_EQ(i * (i + 1) / 2, n[i]);
        for (int i = 0; i < 10; i++)
            ASSERT_TRUE(d[i] == 2.0 * i);
        ASSERT_STREQ("hellohello", s);
        if (!mp_test_proxied()) { /* the very bytes a local array shares */
            ASSERT_MEMEQ(n, mp_array_data(ints), sizeof n);
            ASSERT_MEMEQ(s, mp_array_data(chars), sizeof s);
        }
        mp_array_free(ints);
        mp_array_free(dbls);
        mp_array_free(chars);
    }
}

/* args: value (int64, locked), array (int64, raw), int depth.  Adds one to
 * both, then passes them on to a child of its own while depth > 0. */
static int t_nested(const mp_args *a)
{
    mp_value *v = mp_args_value(a, 0);
    mp_array *arr = mp_args_array(a, 1);
    int64_t depth = mp_args_int(a, 2);
    ASSERT_OK(mp_lock_acquire(mp_value_lock(v), 10));
    ++*(int64_t *)mp_value_ptr(v);
    ASSERT_OK(mp_lock_release(mp_value_lock(v)));
    ((int64_t *)mp_array_data(arr))[depth]++;
    if (depth > 0) {
        mp_args *b = args_new();
        ASSERT_OK(mp_args_add_value(b, v));
        ASSERT_OK(mp_args_add_array(b, arr));
        ASSERT_OK(mp_args_add_int(b, depth - 1));
        ASSERT_EQ(0, mp_test_run(NULL, t_nested, b));
        mp_args_free(b);
    }
    return 0;
}

MP_TEST(shared_with_grandchildren, .variants = MP_START_METHODS, .timeout_s = 60)
{
    /* grandchildren use the default context: make it this variant's method */
    ASSERT_OK(mp_set_start_method(method, true));
    mp_value *v;
    mp_array *arr;
    ASSERT_OK(mp_value_new(&v, MP_INT64, true));
    ASSERT_OK(mp_array_new(&arr, MP_INT64, 3, NULL, false));
    mp_args *a = args_new();
    ASSERT_OK(mp_args_add_value(a, v));
    ASSERT_OK(mp_args_add_array(a, arr));
    ASSERT_OK(mp_args_add_int(a, 2));
    ASSERT_EQ(0, mp_test_run(ctx, t_nested, a));
    mp_args_free(a);
    ASSERT_EQ(3, *(int64_t *)mp_value_ptr(v));
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(1, ((int64_t *)mp_array_data(arr))[i]);
    mp_value_free(v);
    mp_array_free(arr);
}

/* ---- increments under the value's own lock --------------------------------- */

/* Per process; fewer for a proxy, where each step is a round trip. */
#define BUMPS(proxied) ((proxied) ? 500 : 5000)

/* args: value (int64), its lock (the value's own, or for a proxy value,
 * which has none, a manager lock), int proxied. */
static int t_bump(const mp_args *a)
{
    mp_value *v = mp_args_value(a, 0);
    mp_lock *l = mp_args_lock(a, 1);
    ASSERT_TRUE(l != NULL);
    for (int i = 0; i < BUMPS(mp_args_int(a, 2)); i++) {
        int64_t x;
        ASSERT_OK(mp_lock_acquire(l, MP_FOREVER));
        ASSERT_OK(mp_value_load(v, &x));
        x++;
        ASSERT_OK(mp_value_store(v, &x));
        ASSERT_OK(mp_lock_release(l));
    }
    return 0;
}

/* Read-modify-write under a lock from four processes: not one lost. */
MP_TEST(locked_value_increments, .variants = MP_START_METHODS | MP_TEST_PROXY, .timeout_s = 120)
{
    mp_value *v;
    mp_lock *own = NULL;
    ASSERT_OK(mp_test_value_new(&v, MP_INT64));
    if (mp_value_lock(v) == NULL)
        ASSERT_OK(mp_test_lock_new(&own));
    mp_process *p[4];
    for (int i = 0; i < 4; i++) {
        mp_args *a = args_new();
        ASSERT_OK(mp_args_add_value(a, v));
        ASSERT_OK(mp_args_add_lock(a, own ? own : mp_value_lock(v)));
        ASSERT_OK(mp_args_add_int(a, mp_test_proxied()));
        ASSERT_OK(mp_process_new(&p[i], ctx, t_bump, a));
        mp_args_free(a);
        ASSERT_OK(mp_process_start(p[i]));
    }
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(0, mp_test_join(p[i], 90));
    }
    int64_t total = 0;
    ASSERT_OK(mp_value_load(v, &total));
    ASSERT_EQ(4 * BUMPS(mp_test_proxied()), total);
    if (!mp_test_proxied())
        ASSERT_EQ(total, *(int64_t *)mp_value_ptr(v)); /* the same bytes */
    mp_value_free(v);
    mp_lock_free(own);
}

/* ---- many objects ---------------------------------------------------------- */

MP_TEST(many_values_and_arrays, .timeout_s = 60)
{
    enum { N = 10000 };
    int before = mp_test_count_fds();
    mp_value **v = calloc(N, sizeof *v);
    mp_array **arr = calloc(N, sizeof *arr);
    ASSERT_TRUE(v != NULL && arr != NULL);
    for (int i = 0; i < N; i++) {
        ASSERT_OK(mp_value_new(&v[i], all_types[i % NTYPES], i % 3 == 0));
        ASSERT_OK(mp_array_new(&arr[i], all_types[i % NTYPES], (size_t)(i % 50) + 1, NULL,
                               i % 5 == 0));
    }
    ASSERT_LE(mp_test_count_fds(), before + 4);
    /* no two overlap: tag each, then check the tags */
    for (int i = 0; i < N; i++) {
        memset(mp_value_ptr(v[i]), i & 0xff, mp_type_size(mp_value_type(v[i])));
        memset(mp_array_data(arr[i]), (i + 1) & 0xff,
               mp_array_len(arr[i]) * mp_type_size(mp_array_type(arr[i])));
    }
    for (int i = 0; i < N; i++) {
        unsigned char *p = mp_value_ptr(v[i]);
        for (size_t k = 0; k < mp_type_size(mp_value_type(v[i])); k++)
            ASSERT_EQ(i & 0xff, p[k]);
        p = mp_array_data(arr[i]);
        for (size_t k = 0; k < mp_array_len(arr[i]) * mp_type_size(mp_array_type(arr[i])); k++)
            ASSERT_EQ((i + 1) & 0xff, p[k]);
    }
    /* random-size alloc/free cycles, as Python's heap test */
    unsigned seed = 12345;
    for (int i = 0; i < 5000; i++) {
        int j = (int)(rand_r(&seed) % N);
        mp_array_free(arr[j]);
        size_t n = (size_t)(rand_r(&seed) % 2000) + 1;
        ASSERT_OK(mp_array_new(&arr[j], MP_UINT8, n, NULL, rand_r(&seed) % 2));
        ASSERT_TRUE(all_zero(mp_array_data(arr[j]), n));
        memset(mp_array_data(arr[j]), 0xee, n);
    }
    /* some megabytes live now: a few more descriptors at most, never one
     * per object */
    ASSERT_LE(mp_test_count_fds(), before + 32);
    for (int i = 0; i < N; i++) {
        mp_value_free(v[i]);
        mp_array_free(arr[i]);
    }
    free(v);
    free(arr);
    ASSERT_LE(mp_test_count_fds(), before + 32);
}

/* ---- bad input ------------------------------------------------------------- */

MP_TEST(bad_input)
{
    mp_value *v = (mp_value *)1;
    ASSERT_ERR(MP_EINVAL, mp_value_new(NULL, MP_INT32, true));
    ASSERT_ERR(MP_EINVAL, mp_value_new(&v, (mp_type)NTYPES, true));
    ASSERT_TRUE(v == NULL);
    v = (mp_value *)1;
    ASSERT_ERR(MP_EINVAL, mp_value_new(&v, (mp_type)-1, false));
    ASSERT_TRUE(v == NULL);

    mp_array *a = (mp_array *)1;
    ASSERT_ERR(MP_EINVAL, mp_array_new(NULL, MP_INT32, 3, NULL, true));
    ASSERT_ERR(MP_EINVAL, mp_array_new(&a, (mp_type)NTYPES, 3, NULL, true));
    ASSERT_TRUE(a == NULL);
    a = (mp_array *)1;
    ASSERT_ERR(MP_EINVAL, mp_array_new(&a, (mp_type)77, 3, NULL, false));
    ASSERT_TRUE(a == NULL);
    /* a size that overflows */
    a = (mp_array *)1;
    int err = mp_array_new(&a, MP_INT64, SIZE_MAX / 4, NULL, false);
    ASSERT_TRUE(err == MP_EINVAL || err == MP_ENOMEM);
    ASSERT_TRUE(a == NULL);

    mp_args *args = args_new();
    ASSERT_ERR(MP_EINVAL, mp_args_add_value(args, NULL));
    ASSERT_ERR(MP_EINVAL, mp_args_add_array(args, NULL));
    ASSERT_EQ(0, mp_args_count(args));
    mp_args_free(args);

    mp_value_free(NULL);
    mp_array_free(NULL);
}

/* ---- the arena against writes from other processes ------------------------ */

/* Any process a block was sent to can write its whole segment, freed
 * blocks included: the allocator must not keep its free lists there. */
MP_TEST(arena_free_list_survives_writes_to_freed_blocks)
{
    mp__shref a, b, c, d;
    ASSERT_OK(mp__shm_alloc(64, &a));
    ASSERT_OK(mp__shm_alloc(64, &b)); /* keeps the segment */
    char *pa = a.p;
    mp__shm_free(&a);
    memset(pa, 0x41, 64); /* as another process holding the segment could */
    ASSERT_OK(mp__shm_alloc(64, &c));
    ASSERT_TRUE(c.p == pa); /* reused, and zeroed */
    for (int i = 0; i < 64; i++)
        ASSERT_EQ(0, c.p[i]);
    ASSERT_OK(mp__shm_alloc(64, &d)); /* not from a pointer found in the block */
    memset(d.p, 0x42, 64);
    ASSERT_TRUE(d.p != pa && d.p != b.p);
    mp__shm_free(&d);
    mp__shm_free(&c);
    mp__shm_free(&b);
}

/* A block's wire form with its offset moved by @delta (and its size). */
static int rebuild_moved(const mp__shref *ref, uint64_t delta, uint64_t size, mp__shref *out)
{
    mp_buf b = MP_BUF_INIT;
    mp__fdvec fds = {.n = 0};
    ASSERT_OK(mp__shm_reduce(ref, &b, &fds));
    mp__reader r;
    mp__reader_init(&r, b.data, b.len);
    uint32_t k = mp__get_u32(&r);
    uint64_t off = mp__get_u64(&r);
    (void)mp__get_u64(&r);
    uint8_t dedicated = mp__get_u8(&r);
    ASSERT_EQ(0, r.err);
    mp_buf forged = MP_BUF_INIT;
    ASSERT_OK(mp__put_u32(&forged, k));
    ASSERT_OK(mp__put_u64(&forged, off + delta));
    ASSERT_OK(mp__put_u64(&forged, size));
    ASSERT_OK(mp__put_u8(&forged, dedicated));
    int fd = mp__sys_dup(fds.fds[k]);
    ASSERT_GE(fd, 3);
    mp__reader_init(&r, forged.data, forged.len);
    int err = mp__shm_rebuild(&r, &fd, 1, out);
    if (fd >= 0)
        mp__sys_close(fd); /* a segment this process has keeps its own */
    mp_buf_free(&forged);
    mp_buf_free(&b);
    return err;
}

MP_TEST(arena_rebuild_refuses_a_block_off_its_boundary)
{
    mp__shref a, big, out;
    ASSERT_OK(mp__shm_alloc(64, &a));
    ASSERT_OK(mp__shm_alloc((size_t)1 << 20, &big)); /* a dedicated segment */
    ASSERT_OK(rebuild_moved(&a, 0, 64, &out));
    mp__shm_free(&out);
    ASSERT_ERR(MP_EBADMSG, rebuild_moved(&a, 8, 56, &out));   /* misaligned */
    ASSERT_ERR(MP_EBADMSG, rebuild_moved(&a, 1, 16, &out));
    ASSERT_ERR(MP_EBADMSG, rebuild_moved(&big, 64, 64, &out)); /* inside a dedicated block */
    ASSERT_ERR(MP_EBADMSG, rebuild_moved(&a, (uint64_t)1 << 40, 64, &out)); /* outside */
    mp__shm_free(&big);
    mp__shm_free(&a);
}

/* No process can cut a segment short under the others' mappings. */
MP_TEST(arena_segments_keep_their_size)
{
    mp__shref a, big;
    ASSERT_OK(mp__shm_alloc(64, &a));
    ASSERT_OK(mp__shm_alloc((size_t)1 << 20, &big));
    const mp__shref *refs[] = {&a, &big};
    for (int i = 0; i < 2; i++) {
        mp_buf b = MP_BUF_INIT;
        mp__fdvec fds = {.n = 0};
        ASSERT_OK(mp__shm_reduce(refs[i], &b, &fds));
        ASSERT_EQ(-1, ftruncate(fds.fds[0], 0));
        ASSERT_EQ(EPERM, errno);
        mp_buf_free(&b);
    }
    memset(big.p, 1, big.size); /* all still there */
    mp__shm_free(&big);
    mp__shm_free(&a);
}

/* Issue 16: the arena's lock is held across a program's own fork() (heap.c's
 * fork hooks, registered at its first allocation), so a child forked while
 * another thread allocates finds it free and can allocate. */
static void *alloc_churn(void *arg)
{
    bool *stop = arg;
    while (!__atomic_load_n(stop, __ATOMIC_RELAXED)) {
        mp__shref r;
        if (mp__shm_alloc(64, &r) == 0)
            mp__shm_free(&r);
    }
    return NULL;
}

MP_TEST(fork_while_another_thread_allocates, .timeout_s = 120)
{
    mp__shref first;
    ASSERT_OK(mp__shm_alloc(64, &first)); /* keeps the segment */
    bool stop = false;
    pthread_t t;
    ASSERT_EQ(0, pthread_create(&t, NULL, alloc_churn, &stop));
    for (int i = 0; i < 200; i++) {
        fflush(stdout);
        pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            mp__shref r;
            _exit(mp__shm_alloc(64, &r) == 0 ? 0 : 1);
        }
        int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
        ASSERT_GE(pfd, 0);
        struct pollfd p = {.fd = pfd, .events = POLLIN};
        int r = poll(&p, 1, 20000); /* a child stuck on the lock never ends */
        if (r != 1)
            kill(pid, SIGKILL);
        int st;
        ASSERT_EQ(pid, waitpid(pid, &st, 0));
        close(pfd);
        ASSERT_EQ(1, r);
        ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    __atomic_store_n(&stop, true, __ATOMIC_RELAXED);
    ASSERT_EQ(0, pthread_join(t, NULL));
    mp__shm_free(&first);
}
