/*
 * pyobj.c and pickle.c: the mp_py value type and the pickle codec.
 *
 * Plain unit tests.  The pickles quoted here were written by Python 3.11
 * (pickle.dumps(..., protocol)); tests/interop/pickle_interop.py checks
 * round trips of many random values against Python 3.11, 3.12 and 3.13.
 */
#include "mp_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A pickle quoted as a string literal (without its NUL). */
#define LIT(s) (s), (sizeof(s) - 1)

static mp_py *loads_ok(const void *p, size_t n, unsigned flags)
{
    mp_py *v = NULL;
    ASSERT_OK(mp_py_loads(p, n, flags, &v));
    ASSERT_TRUE(v != NULL);
    return v;
}

static void assert_refused(const void *p, size_t n, unsigned flags)
{
    mp_py *v = (mp_py *)1;
    ASSERT_ERR(MP_EBADMSG, mp_py_loads(p, n, flags, &v));
    ASSERT_TRUE(v == NULL);
}

/* dumps then loads: the same value back. */
static mp_py *roundtrip(const mp_py *v)
{
    mp_buf b = MP_BUF_INIT;
    ASSERT_OK(mp_py_dumps(v, &b));
    ASSERT_GE(b.len, 3);
    ASSERT_MEMEQ(b.data, "\x80\x04", 2);
    mp_py *back = loads_ok(b.data, b.len, 0);
    ASSERT_TRUE(mp_py_equal(v, back));
    free(b.data);
    return back;
}

/* ---- the value type ------------------------------------------------------ */

MP_TEST(scalars_build_and_read)
{
    mp_py *v;
    bool b;
    int64_t i;
    double f;
    size_t n;

    v = mp_py_none_new();
    ASSERT_EQ(MP_PY_NONE, mp_py_type_of(v));
    ASSERT_ERR(MP_EINVAL, mp_py_int(v, &i));
    mp_py_free(v);

    v = mp_py_bool_new(true);
    ASSERT_OK(mp_py_bool(v, &b));
    ASSERT_TRUE(b);
    ASSERT_OK(mp_py_int(v, &i)); /* a bool is an int, as in Python */
    ASSERT_EQ(1, i);
    mp_py_free(v);

    v = mp_py_float_new(-2.5);
    ASSERT_OK(mp_py_float(v, &f));
    ASSERT_TRUE(f == -2.5);
    ASSERT_ERR(MP_EINVAL, mp_py_int(v, &i));
    mp_py_free(v);

    v = mp_py_str_new("h\xc3\xa9");
    ASSERT_STREQ("h\xc3\xa9", mp_py_str(v, &n));
    ASSERT_EQ(3, n);
    ASSERT_EQ(3, mp_py_len(v));
    ASSERT_TRUE(mp_py_bytes(v, NULL) == NULL);
    mp_py_free(v);
    ASSERT_TRUE(mp_py_str_new("\xc3") == NULL);         /* truncated UTF-8 */
    ASSERT_TRUE(mp_py_str_new("\xc0\x80") == NULL);     /* overlong */
    ASSERT_TRUE(mp_py_str_new("\xf4\x90\x80\x80") == NULL); /* > U+10FFFF */
    v = mp_py_str_new("\xed\xa0\x80"); /* a lone surrogate: pickle writes them */
    ASSERT_TRUE(v != NULL);
    mp_py_free(v);
    v = mp_py_str_new_n("a\0b", 3);
    ASSERT_EQ(3, mp_py_len(v));
    mp_py_free(v);

    v = mp_py_bytes_new(NULL, 0);
    ASSERT_TRUE(mp_py_bytes(v, &n) != NULL);
    ASSERT_EQ(0, n);
    mp_py_free(v);
    v = mp_py_bytearray_new("ab", 2);
    ASSERT_MEMEQ("ab", mp_py_bytes(v, &n), 2);
    ASSERT_EQ(MP_PY_BYTEARRAY, mp_py_type_of(v));
    mp_py_free(v);
    ASSERT_STREQ("frozenset", mp_py_type_name(MP_PY_FROZENSET));
}

MP_TEST(ints_of_any_size)
{
    const uint8_t *p;
    size_t n;
    int64_t i;

    /* int.to_bytes(9, 'little', signed=True) of 2**64 - 1 */
    static const uint8_t u64max[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00};
    mp_py *v = mp_py_int_from_bytes(u64max, sizeof u64max);
    ASSERT_ERR(MP_EMSGSIZE, mp_py_int(v, &i));
    ASSERT_OK(mp_py_int_bytes(v, &p, &n));
    ASSERT_EQ(9, n);
    ASSERT_MEMEQ(u64max, p, 9);
    mp_py_free(v);

    /* redundant sign bytes are dropped: this is -1, which fits */
    static const uint8_t minus1[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    v = mp_py_int_from_bytes(minus1, sizeof minus1);
    ASSERT_OK(mp_py_int(v, &i));
    ASSERT_EQ(-1, i);
    ASSERT_OK(mp_py_int_bytes(v, &p, &n));
    ASSERT_EQ(1, n);
    mp_py_free(v);

    v = mp_py_int_new(0);
    ASSERT_OK(mp_py_int_bytes(v, &p, &n));
    ASSERT_EQ(0, n); /* as pickle's LONG1 writes 0 */
    mp_py_free(v);

    v = mp_py_int_new(INT64_MIN);
    mp_py *back = roundtrip(v);
    ASSERT_OK(mp_py_int(back, &i));
    ASSERT_EQ(INT64_MIN, i);
    mp_py_free(back);
    mp_py_free(v);

    /* 2**70 as an int equals 2.0**70 as a float, as in Python */
    static const uint8_t two70[] = {0, 0, 0, 0, 0, 0, 0, 0, 0x40};
    v = mp_py_int_from_bytes(two70, sizeof two70);
    mp_py *f = mp_py_float_new(1180591620717411303424.0);
    mp_py *g = mp_py_float_new(-1180591620717411303424.0);
    ASSERT_TRUE(mp_py_equal(v, f));
    ASSERT_FALSE(mp_py_equal(v, g));
    back = roundtrip(v);
    mp_py_free(back);
    mp_py_free(v);
    mp_py_free(f);
    mp_py_free(g);
}

MP_TEST(dict_keys_follow_python)
{
    mp_py *d = mp_py_dict_new(), *k, *v;
    int64_t i;

    ASSERT_OK(mp_py_dict_set(d, mp_py_int_new(1), mp_py_str_new("int")));
    ASSERT_OK(mp_py_dict_set(d, mp_py_float_new(1.0), mp_py_str_new("float")));
    ASSERT_OK(mp_py_dict_set(d, mp_py_bool_new(true), mp_py_str_new("bool")));
    ASSERT_EQ(1, mp_py_len(d)); /* 1 == 1.0 == True: one key */
    ASSERT_OK(mp_py_dict_item(d, 0, &k, &v));
    ASSERT_EQ(MP_PY_INT, mp_py_type_of(k)); /* the first key stays */
    ASSERT_STREQ("bool", mp_py_str(v, NULL)); /* the last value wins */

    ASSERT_OK(mp_py_dict_set(d, mp_py_float_new(-0.0), mp_py_int_new(0)));
    ASSERT_OK(mp_py_dict_set(d, mp_py_bool_new(false), mp_py_int_new(5)));
    ASSERT_EQ(2, mp_py_len(d)); /* -0.0 == 0 == False */

    ASSERT_OK(mp_py_dict_set_str(d, "job", mp_py_int_new(3)));
    ASSERT_OK(mp_py_dict_set(d, mp_py_bytes_new("job", 3), mp_py_int_new(4)));
    ASSERT_EQ(4, mp_py_len(d)); /* b"job" != "job" */
    ASSERT_OK(mp_py_int(mp_py_dict_get_str(d, "job"), &i));
    ASSERT_EQ(3, i);
    ASSERT_TRUE(mp_py_dict_get_str(d, "jobs") == NULL);

    /* tuples by items, frozensets as sets */
    mp_py *t1 = mp_py_tuple_new(2), *t2 = mp_py_tuple_new(2);
    mp_py *s1 = mp_py_frozenset_new(), *s2 = mp_py_frozenset_new();
    ASSERT_OK(mp_py_set_add(s1, mp_py_str_new("a")));
    ASSERT_OK(mp_py_set_add(s1, mp_py_int_new(2)));
    ASSERT_OK(mp_py_set_add(s2, mp_py_float_new(2.0)));
    ASSERT_OK(mp_py_set_add(s2, mp_py_str_new("a")));
    ASSERT_OK(mp_py_tuple_set(t1, 0, mp_py_int_new(7)));
    ASSERT_OK(mp_py_tuple_set(t1, 1, s1));
    ASSERT_OK(mp_py_tuple_set(t2, 0, mp_py_float_new(7.0)));
    ASSERT_OK(mp_py_tuple_set(t2, 1, s2));
    ASSERT_OK(mp_py_dict_set(d, t1, mp_py_str_new("first")));
    ASSERT_TRUE(mp_py_dict_get(d, t2) != NULL);
    ASSERT_STREQ("first", mp_py_str(mp_py_dict_get(d, t2), NULL));
    mp_py_free(t2);

    /* unhashable keys: refused, and both stolen references dropped */
    ASSERT_ERR(MP_EINVAL, mp_py_dict_set(d, mp_py_list_new(), mp_py_int_new(1)));
    ASSERT_ERR(MP_EINVAL, mp_py_dict_set(d, mp_py_dict_new(), mp_py_int_new(1)));
    ASSERT_ERR(MP_EINVAL, mp_py_dict_set(d, mp_py_set_new(), mp_py_int_new(1)));
    ASSERT_ERR(MP_EINVAL, mp_py_dict_set(d, mp_py_bytearray_new("x", 1), mp_py_int_new(1)));
    mp_py *tl = mp_py_tuple_new(1);
    ASSERT_OK(mp_py_tuple_set(tl, 0, mp_py_list_new()));
    ASSERT_ERR(MP_EINVAL, mp_py_dict_set(d, tl, mp_py_int_new(1)));
    /* a NULL item (a constructor out of memory) is MP_ENOMEM, the other
     * argument still dropped */
    ASSERT_ERR(MP_ENOMEM, mp_py_dict_set(d, NULL, mp_py_int_new(1)));
    mp_py *l = mp_py_list_new();
    ASSERT_ERR(MP_ENOMEM, mp_py_list_append(l, NULL));
    ASSERT_EQ(0, mp_py_len(l));
    mp_py_free(l);
    ASSERT_ERR(MP_EINVAL, mp_py_list_append(d, mp_py_int_new(1)));
    ASSERT_EQ(5, mp_py_len(d));
    mp_py_free(d);
}

MP_TEST(sets_drop_equal_items)
{
    mp_py *s = mp_py_set_new();
    for (int i = 0; i < 1000; i++)
        ASSERT_OK(mp_py_set_add(s, mp_py_int_new(i % 100)));
    ASSERT_OK(mp_py_set_add(s, mp_py_float_new(5.0)));
    ASSERT_OK(mp_py_set_add(s, mp_py_float_new(5.5)));
    ASSERT_EQ(101, mp_py_len(s));
    mp_py *five = mp_py_bool_new(true);
    ASSERT_TRUE(mp_py_set_contains(s, five)); /* True == 1 */
    mp_py_free(five);
    ASSERT_EQ(MP_PY_INT, mp_py_type_of(mp_py_item(s, 5)));
    ASSERT_ERR(MP_EINVAL, mp_py_set_add(s, mp_py_list_new()));

    mp_py *fs = mp_py_frozenset_new();
    for (int i = 99; i >= 0; i--)
        ASSERT_OK(mp_py_set_add(fs, mp_py_int_new(i)));
    ASSERT_OK(mp_py_set_add(fs, mp_py_float_new(5.5)));
    ASSERT_TRUE(mp_py_equal(s, fs)); /* set == frozenset, any order */
    mp_py *back = roundtrip(fs);
    ASSERT_EQ(MP_PY_FROZENSET, mp_py_type_of(back));
    mp_py_free(back);
    back = roundtrip(s);
    ASSERT_EQ(MP_PY_SET, mp_py_type_of(back));
    mp_py_free(back);
    mp_py_free(s);
    mp_py_free(fs);
}

MP_TEST(equality_is_pythons)
{
    mp_py *a = mp_py_list_new(), *b = mp_py_list_new();
    ASSERT_OK(mp_py_list_append(a, mp_py_bytes_new("x", 1)));
    ASSERT_OK(mp_py_list_append(b, mp_py_bytearray_new("x", 1)));
    ASSERT_TRUE(mp_py_equal(a, b)); /* b"x" == bytearray(b"x") */
    mp_py *t = mp_py_tuple_new(1);
    ASSERT_OK(mp_py_tuple_set(t, 0, mp_py_bytes_new("x", 1)));
    ASSERT_FALSE(mp_py_equal(a, t)); /* [x] != (x,) */
    mp_py *n1 = mp_py_float_new(__builtin_nan("")), *n2 = mp_py_float_new(__builtin_nan(""));
    ASSERT_TRUE(mp_py_equal(n1, n1));
    ASSERT_FALSE(mp_py_equal(n1, n2));
    mp_py *d1 = mp_py_dict_new(), *d2 = mp_py_dict_new();
    ASSERT_OK(mp_py_dict_set_str(d1, "a", mp_py_int_new(1)));
    ASSERT_OK(mp_py_dict_set_str(d1, "b", mp_py_int_new(2)));
    ASSERT_OK(mp_py_dict_set_str(d2, "b", mp_py_float_new(2.0)));
    ASSERT_OK(mp_py_dict_set_str(d2, "a", mp_py_bool_new(true)));
    ASSERT_TRUE(mp_py_equal(d1, d2)); /* any order; 1 == True */
    ASSERT_OK(mp_py_dict_set_str(d2, "a", mp_py_int_new(3)));
    ASSERT_FALSE(mp_py_equal(d1, d2));
    mp_py *objs[] = {a, b, t, n1, n2, d1, d2};
    for (size_t i = 0; i < MP__ARRAY_LEN(objs); i++)
        mp_py_free(objs[i]);
}

/* ---- decoding what Python wrote ------------------------------------------ */

static const char job_p2[] = "\x80\x02\x7d\x71\x00\x58\x03\x00\x00\x00\x6a\x6f\x62\x71\x01\x4b\x03\x73\x2e";
static const char job_p5[] = "\x80\x05\x95\x0c\x00\x00\x00\x00\x00\x00\x00\x7d\x94\x8c\x03\x6a\x6f\x62\x94\x4b\x03\x73\x2e";
/* [b'ab', {1, 2}, frozenset([3]), bytearray(b'xy'), b'', bytearray(), 2**70, -1.5,
 *  ('t', None, True)] with protocols 2, 3, 4, 5 */
static const char mixed_p2[] = "\x80\x02\x5d\x71\x00\x28\x63\x5f\x63\x6f\x64\x65\x63\x73\x0a\x65\x6e\x63\x6f\x64\x65\x0a\x71\x01\x58\x02\x00\x00\x00\x61\x62\x71\x02\x58\x06\x00\x00\x00\x6c\x61\x74\x69\x6e\x31\x71\x03\x86\x71\x04\x52\x71\x05\x63\x5f\x5f\x62\x75\x69\x6c\x74\x69\x6e\x5f\x5f\x0a\x73\x65\x74\x0a\x71\x06\x5d\x71\x07\x28\x4b\x01\x4b\x02\x65\x85\x71\x08\x52\x71\x09\x63\x5f\x5f\x62\x75\x69\x6c\x74\x69\x6e\x5f\x5f\x0a\x66\x72\x6f\x7a\x65\x6e\x73\x65\x74\x0a\x71\x0a\x5d\x71\x0b\x4b\x03\x61\x85\x71\x0c\x52\x71\x0d\x63\x5f\x5f\x62\x75\x69\x6c\x74\x69\x6e\x5f\x5f\x0a\x62\x79\x74\x65\x61\x72\x72\x61\x79\x0a\x71\x0e\x68\x01\x58\x02\x00\x00\x00\x78\x79\x71\x0f\x68\x03\x86\x71\x10\x52\x71\x11\x85\x71\x12\x52\x71\x13\x63\x5f\x5f\x62\x75\x69\x6c\x74\x69\x6e\x5f\x5f\x0a\x62\x79\x74\x65\x73\x0a\x71\x14\x29\x52\x71\x15\x68\x0e\x29\x52\x71\x16\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x40\x47\xbf\xf8\x00\x00\x00\x00\x00\x00\x58\x01\x00\x00\x00\x74\x71\x17\x4e\x88\x87\x71\x18\x65\x2e";
static const char mixed_p3[] = "\x80\x03\x5d\x71\x00\x28\x43\x02\x61\x62\x71\x01\x63\x62\x75\x69\x6c\x74\x69\x6e\x73\x0a\x73\x65\x74\x0a\x71\x02\x5d\x71\x03\x28\x4b\x01\x4b\x02\x65\x85\x71\x04\x52\x71\x05\x63\x62\x75\x69\x6c\x74\x69\x6e\x73\x0a\x66\x72\x6f\x7a\x65\x6e\x73\x65\x74\x0a\x71\x06\x5d\x71\x07\x4b\x03\x61\x85\x71\x08\x52\x71\x09\x63\x62\x75\x69\x6c\x74\x69\x6e\x73\x0a\x62\x79\x74\x65\x61\x72\x72\x61\x79\x0a\x71\x0a\x43\x02\x78\x79\x71\x0b\x85\x71\x0c\x52\x71\x0d\x43\x00\x71\x0e\x68\x0a\x29\x52\x71\x0f\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x40\x47\xbf\xf8\x00\x00\x00\x00\x00\x00\x58\x01\x00\x00\x00\x74\x71\x10\x4e\x88\x87\x71\x11\x65\x2e";
static const char mixed_p4[] = "\x80\x04\x95\x5d\x00\x00\x00\x00\x00\x00\x00\x5d\x94\x28\x43\x02\x61\x62\x94\x8f\x94\x28\x4b\x01\x4b\x02\x90\x28\x4b\x03\x91\x94\x8c\x08\x62\x75\x69\x6c\x74\x69\x6e\x73\x94\x8c\x09\x62\x79\x74\x65\x61\x72\x72\x61\x79\x94\x93\x94\x43\x02\x78\x79\x94\x85\x94\x52\x94\x43\x00\x94\x68\x06\x29\x52\x94\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x40\x47\xbf\xf8\x00\x00\x00\x00\x00\x00\x8c\x01\x74\x94\x4e\x88\x87\x94\x65\x2e";
static const char mixed_p5[] = "\x80\x05\x95\x4c\x00\x00\x00\x00\x00\x00\x00\x5d\x94\x28\x43\x02\x61\x62\x94\x8f\x94\x28\x4b\x01\x4b\x02\x90\x28\x4b\x03\x91\x94\x96\x02\x00\x00\x00\x00\x00\x00\x00\x78\x79\x94\x43\x00\x94\x96\x00\x00\x00\x00\x00\x00\x00\x00\x94\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x40\x47\xbf\xf8\x00\x00\x00\x00\x00\x00\x8c\x01\x74\x94\x4e\x88\x87\x94\x65\x2e";
/* KeyError('x') with protocols 2 and 4 */
static const char keyerror_p2[] = "\x80\x02\x63\x65\x78\x63\x65\x70\x74\x69\x6f\x6e\x73\x0a\x4b\x65\x79\x45\x72\x72\x6f\x72\x0a\x71\x00\x58\x01\x00\x00\x00\x78\x71\x01\x85\x71\x02\x52\x71\x03\x2e";
static const char keyerror_p4[] = "\x80\x04\x95\x21\x00\x00\x00\x00\x00\x00\x00\x8c\x08\x62\x75\x69\x6c\x74\x69\x6e\x73\x94\x8c\x08\x4b\x65\x79\x45\x72\x72\x6f\x72\x94\x93\x94\x8c\x01\x78\x94\x85\x94\x52\x94\x2e";
/* multiprocessing.managers.Token('dict', ('127.0.0.1', 5000), '7f0a'), 4 and 2 */
static const char token_p4[] = "\x80\x04\x95\x4b\x00\x00\x00\x00\x00\x00\x00\x8c\x18\x6d\x75\x6c\x74\x69\x70\x72\x6f\x63\x65\x73\x73\x69\x6e\x67\x2e\x6d\x61\x6e\x61\x67\x65\x72\x73\x94\x8c\x05\x54\x6f\x6b\x65\x6e\x94\x93\x94\x29\x81\x94\x8c\x04\x64\x69\x63\x74\x94\x8c\x09\x31\x32\x37\x2e\x30\x2e\x30\x2e\x31\x94\x4d\x88\x13\x86\x94\x8c\x04\x37\x66\x30\x61\x94\x87\x94\x62\x2e";
static const char token_p2[] = "\x80\x02\x63\x6d\x75\x6c\x74\x69\x70\x72\x6f\x63\x65\x73\x73\x69\x6e\x67\x2e\x6d\x61\x6e\x61\x67\x65\x72\x73\x0a\x54\x6f\x6b\x65\x6e\x0a\x71\x00\x29\x81\x71\x01\x58\x04\x00\x00\x00\x64\x69\x63\x74\x71\x02\x58\x09\x00\x00\x00\x31\x32\x37\x2e\x30\x2e\x30\x2e\x31\x71\x03\x4d\x88\x13\x86\x71\x04\x58\x04\x00\x00\x00\x37\x66\x30\x61\x71\x05\x87\x71\x06\x62\x2e";

static const struct {
    const char *p;
    size_t n;
} python_pickles[] = {
    {LIT(job_p2)},      {LIT(job_p5)},      {LIT(mixed_p2)},    {LIT(mixed_p3)},
    {LIT(mixed_p4)},    {LIT(mixed_p5)},    {LIT(keyerror_p2)}, {LIT(keyerror_p4)},
    {LIT(token_p4)},    {LIT(token_p2)},
};

MP_TEST(decodes_python_dict_every_protocol)
{
    int64_t i;
    mp_py *a = loads_ok(LIT(job_p2), 0), *b = loads_ok(LIT(job_p5), 0);
    ASSERT_OK(mp_py_int(mp_py_dict_get_str(a, "job"), &i));
    ASSERT_EQ(3, i);
    ASSERT_TRUE(mp_py_equal(a, b));
    mp_py_free(a);
    mp_py_free(b);
}

/* Protocols 2 and 3 write bytes, sets and bytearrays as calls of fixed
 * builtins: recognised by name and built here, with the right types. */
MP_TEST(decodes_bytes_sets_bytearrays_every_protocol)
{
    static const mp_py_type types[] = {MP_PY_BYTES, MP_PY_SET, MP_PY_FROZENSET,
                                       MP_PY_BYTEARRAY, MP_PY_BYTES, MP_PY_BYTEARRAY,
                                       MP_PY_INT, MP_PY_FLOAT, MP_PY_TUPLE};
    const struct {
        const char *p;
        size_t n;
    } in[] = {{LIT(mixed_p2)}, {LIT(mixed_p3)}, {LIT(mixed_p4)}, {LIT(mixed_p5)}};
    mp_py *first = NULL;
    size_t n;
    for (size_t k = 0; k < MP__ARRAY_LEN(in); k++) {
        mp_py *v = loads_ok(in[k].p, in[k].n, 0);
        ASSERT_EQ(MP_PY_LIST, mp_py_type_of(v));
        ASSERT_EQ(9, mp_py_len(v));
        for (size_t i = 0; i < 9; i++)
            if (mp_py_type_of(mp_py_item(v, i)) != types[i])
                MP__FAIL("protocol %zu item %zu: %s, want %s", k + 2, i,
                         mp_py_type_name(mp_py_type_of(mp_py_item(v, i))),
                         mp_py_type_name(types[i]));
        ASSERT_MEMEQ("ab", mp_py_bytes(mp_py_item(v, 0), &n), 2);
        ASSERT_EQ(2, n);
        ASSERT_MEMEQ("xy", mp_py_bytes(mp_py_item(v, 3), &n), 2);
        ASSERT_EQ(2, mp_py_len(mp_py_item(v, 1)));
        ASSERT_EQ(0, mp_py_len(mp_py_item(v, 4)));
        ASSERT_EQ(0, mp_py_len(mp_py_item(v, 5)));
        if (first == NULL)
            first = v;
        else {
            ASSERT_TRUE(mp_py_equal(first, v));
            mp_py_free(v);
        }
    }
    mp_py_free(first);
}

/* What names a class or function: refused, or with MP_PY_INERT kept as an
 * object node that can be read (an exception, a manager's Token). */
MP_TEST(inert_objects_are_read_not_run)
{
    assert_refused(LIT(keyerror_p2), 0);
    assert_refused(LIT(keyerror_p4), 0);
    assert_refused(LIT(token_p4), 0);

    const struct {
        const char *p;
        size_t n;
    } errs[] = {{LIT(keyerror_p2)}, {LIT(keyerror_p4)}};
    for (size_t k = 0; k < 2; k++) {
        mp_py *e = loads_ok(errs[k].p, errs[k].n, MP_PY_INERT);
        ASSERT_EQ(MP_PY_OBJECT, mp_py_type_of(e));
        ASSERT_STREQ("builtins", mp_py_object_module(e)); /* "exceptions" in protocol 2 */
        ASSERT_STREQ("KeyError", mp_py_object_name(e));
        mp_py *args = mp_py_object_args(e);
        ASSERT_EQ(MP_PY_TUPLE, mp_py_type_of(args));
        ASSERT_STREQ("x", mp_py_str(mp_py_item(args, 0), NULL));
        ASSERT_TRUE(mp_py_object_state(e) == NULL);
        mp_buf b = MP_BUF_INIT;
        ASSERT_ERR(MP_EINVAL, mp_py_dumps(e, &b)); /* never written back */
        free(b.data);
        mp_py_free(e);
    }

    const struct {
        const char *p;
        size_t n;
    } toks[] = {{LIT(token_p4)}, {LIT(token_p2)}};
    for (size_t k = 0; k < 2; k++) {
        int64_t port;
        mp_py *t = loads_ok(toks[k].p, toks[k].n, MP_PY_INERT);
        ASSERT_STREQ("multiprocessing.managers", mp_py_object_module(t));
        ASSERT_STREQ("Token", mp_py_object_name(t));
        ASSERT_EQ(0, mp_py_len(mp_py_object_args(t)));
        mp_py *st = mp_py_object_state(t); /* (typeid, address, id) */
        ASSERT_EQ(3, mp_py_len(st));
        ASSERT_STREQ("dict", mp_py_str(mp_py_item(st, 0), NULL));
        ASSERT_STREQ("127.0.0.1", mp_py_str(mp_py_item(mp_py_item(st, 1), 0), NULL));
        ASSERT_OK(mp_py_int(mp_py_item(mp_py_item(st, 1), 1), &port));
        ASSERT_EQ(5000, port);
        ASSERT_STREQ("7f0a", mp_py_str(mp_py_item(st, 2), NULL));
        mp_py_free(t);
    }
}

/* ---- hostile input ------------------------------------------------------- */

MP_TEST(code_references_refused)
{
    static const struct {
        const char *what, *p;
        size_t n;
        bool inert_ok; /* kept inert with MP_PY_INERT */
    } cases[] = {
        /* os.system('echo hi') as protocol 0-2 write it */
        {"GLOBAL+REDUCE", LIT("\x80\x02" "cos\nsystem\nX\x07\x00\x00\x00" "echo hi\x85R."), true},
        {"STACK_GLOBAL eval",
         LIT("\x80\x04\x8c\x08" "builtins\x8c\x04" "eval\x93\x8c\x01" "1\x85R."), true},
        {"NEWOBJ", LIT("\x80\x02" "cos\nsystem\n)\x81."), true},
        {"NEWOBJ_EX", LIT("\x80\x04" "cos\nsystem\n)}\x92."), true},
        {"INST", LIT("(X\x02\x00\x00\x00hiios\nsystem\n."), true},
        {"OBJ", LIT("(cos\nsystem\nX\x02\x00\x00\x00hio."), true},
        {"BUILD on a dict", LIT("\x80\x02}}b."), false},
        {"BUILD on a bare name", LIT("\x80\x02" "cos\nsystem\n}b."), false},
        {"REDUCE of a str", LIT("\x80\x02X\x01\x00\x00\x00x)R."), false},
        {"EXT1", LIT("\x80\x02\x82\x01."), false},
        {"EXT2", LIT("\x80\x02\x83\x01\x00."), false},
        {"EXT4", LIT("\x80\x02\x84\x01\x00\x00\x00."), false},
        {"PERSID", LIT("Pid\n."), false},
        {"BINPERSID", LIT("\x80\x02K\x01Q."), false},
        {"NEXT_BUFFER", LIT("\x80\x05\x97."), false},
        {"READONLY_BUFFER", LIT("\x80\x05)\x98."), false},
        {"STRING", LIT("S'x'\n."), false},
        {"BINSTRING", LIT("T\x01\x00\x00\x00x."), false},
        {"SHORT_BINSTRING", LIT("U\x01x."), false},
        {"UNICODE", LIT("Vx\n."), false},
        {"unknown opcode", LIT("\x80\x04\xff."), false},
        {"protocol 6", LIT("\x80\x06N."), false},
        {"_codecs.encode of not latin1", LIT("\x80\x02" "c_codecs\nencode\nX\x02\x00\x00\x00"
                                             "\xe2\x82X\x06\x00\x00\x00latin1\x86R."), false},
        {"_codecs.encode with utf8", LIT("\x80\x02" "c_codecs\nencode\nX\x01\x00\x00\x00"
                                         "aX\x04\x00\x00\x00utf8\x86R."), false},
        {"builtins.set of an int", LIT("\x80\x02" "c__builtin__\nset\nK\x01\x85R."), false},
        {"a name with NUL", LIT("\x80\x04\x8c\x02o\x00\x8c\x01x\x93."), false},
        {"a bare builtin name left", LIT("\x80\x02" "c__builtin__\nset\n."), true},
    };
    for (size_t i = 0; i < MP__ARRAY_LEN(cases); i++) {
        mp_py *v = (mp_py *)1;
        int err = mp_py_loads(cases[i].p, cases[i].n, 0, &v);
        if (err != MP_EBADMSG || v != NULL)
            MP__FAIL("%s: %d (%s), want MP_EBADMSG", cases[i].what, err, mp_errname(err));
        err = mp_py_loads(cases[i].p, cases[i].n, MP_PY_INERT, &v);
        if (cases[i].inert_ok) {
            if (err != 0 || mp_py_type_of(v) != MP_PY_OBJECT)
                MP__FAIL("%s (inert): %d (%s), want an object", cases[i].what, err,
                         mp_errname(err));
            mp_py_free(v);
        } else if (err != MP_EBADMSG)
            MP__FAIL("%s (inert): %d (%s), want MP_EBADMSG", cases[i].what, err,
                     mp_errname(err));
    }
    mp_py *v = loads_ok(LIT("\x80\x02" "cos\nsystem\nX\x07\x00\x00\x00" "echo hi\x85R."),
                        MP_PY_INERT);
    ASSERT_STREQ("os", mp_py_object_module(v));
    ASSERT_STREQ("system", mp_py_object_name(v));
    ASSERT_STREQ("echo hi", mp_py_str(mp_py_item(mp_py_object_args(v), 0), NULL));
    mp_py_free(v);
}

/* Every proper prefix of a good pickle is refused; every one-byte change
 * is either refused or decodes to something (never a crash: ASan runs). */
MP_TEST(truncated_and_mutated_input)
{
    for (size_t k = 0; k < MP__ARRAY_LEN(python_pickles); k++) {
        const char *p = python_pickles[k].p;
        size_t n = python_pickles[k].n;
        for (size_t cut = 0; cut < n; cut++) {
            /* a heap copy of exactly @cut bytes: ASan sees any read past it */
            char *copy = malloc(cut ? cut : 1);
            memcpy(copy, p, cut);
            mp_py *v = (mp_py *)1;
            int err = mp_py_loads(copy, cut, MP_PY_INERT, &v);
            if (err != MP_EBADMSG)
                MP__FAIL("pickle %zu cut at %zu: %d (%s)", k, cut, err, mp_errname(err));
            free(copy);
        }
        char *copy = malloc(n);
        for (size_t at = 0; at < n; at++)
            for (int x = 1; x < 256; x <<= 1) {
                memcpy(copy, p, n);
                copy[at] = (char)(copy[at] ^ x);
                mp_py *v = NULL;
                int err = mp_py_loads(copy, n, MP_PY_INERT, &v);
                ASSERT_TRUE(err == 0 || err == MP_EBADMSG);
                mp_py_free(v);
            }
        free(copy);
    }
}

MP_TEST(declared_sizes_checked_before_allocating)
{
    static const struct {
        const char *what, *p;
        size_t n;
    } cases[] = {
        {"BINUNICODE8 2**62", LIT("\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x40x.")},
        {"BINUNICODE 4 GiB", LIT("\x80\x04X\xff\xff\xff\xffx.")},
        {"SHORT_BINUNICODE past the end", LIT("\x80\x04\x8c\x05x.")},
        {"BINBYTES8 2**64-1", LIT("\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xffx.")},
        {"BINBYTES 4 GiB", LIT("\x80\x04" "B\xff\xff\xff\xffx.")},
        {"BYTEARRAY8 2**63", LIT("\x80\x05\x96\x00\x00\x00\x00\x00\x00\x00\x80.")},
        {"LONG4 2 GiB", LIT("\x80\x02\x8b\xff\xff\xff\x7f.")},
        {"LONG4 negative", LIT("\x80\x02\x8b\xff\xff\xff\xff.")},
        {"LONG1 past the end", LIT("\x80\x02\x8a\x09\x01.")},
        {"FRAME 2**63", LIT("\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x80N.")},
        {"FRAME past the end", LIT("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00N.")},
        {"no STOP", LIT("\x80\x04N")},
        {"empty", LIT("")},
        {"text INT beyond int64", LIT("I99999999999999999999\n.")},
        {"text FLOAT junk", LIT("F1.5x\n.")},
    };
    for (size_t i = 0; i < MP__ARRAY_LEN(cases); i++) {
        mp_py *v = (mp_py *)1;
        int err = mp_py_loads(cases[i].p, cases[i].n, 0, &v);
        if (err != MP_EBADMSG)
            MP__FAIL("%s: %d (%s), want MP_EBADMSG", cases[i].what, err, mp_errname(err));
    }
}

MP_TEST(memo_and_stack_misuse_refused)
{
    static const struct {
        const char *what, *p;
        size_t n;
    } cases[] = {
        {"BINGET of nothing", LIT("\x80\x02h\x00.")},
        {"LONG_BINGET far", LIT("\x80\x02N\x72\x00\x00\x00\x00j\xff\xff\xff\xff.")},
        {"LONG_BINPUT far", LIT("\x80\x02Nr\xff\xff\xff\xff.")},
        {"PUT far", LIT("Np99999999999\n.")},
        {"PUT negative", LIT("Np-1\n.")},
        {"BINPUT on empty stack", LIT("\x80\x02q\x00N.")},
        {"MEMOIZE on empty stack", LIT("\x80\x04\x94N.")},
        {"APPEND to nothing", LIT("\x80\x02K\x01" "a.")},
        {"APPEND across a MARK", LIT("\x80\x02](K\x01" "a.")},
        {"APPEND to a tuple", LIT("\x80\x02)K\x01" "a.")},
        {"SETITEM to a list", LIT("\x80\x02]K\x01K\x02s.")},
        {"SETITEMS odd", LIT("\x80\x02}(K\x01u.")},
        {"ADDITEMS to a frozenset", LIT("\x80\x04(\x91(K\x01\x90.")},
        {"TUPLE without MARK", LIT("\x80\x02K\x01t.")},
        {"TUPLE2 of one", LIT("\x80\x02K\x01\x86.")},
        {"POP of nothing", LIT("\x80\x02" "0N.")},
        {"POP_MARK without MARK", LIT("\x80\x02" "1N.")},
        {"DUP of nothing", LIT("\x80\x02" "2.")},
        {"STOP on empty stack", LIT("\x80\x02.")},
        {"STOP inside a MARK", LIT("\x80\x02N(.")},
        {"STACK_GLOBAL of ints", LIT("\x80\x04K\x01K\x02\x93.")},
    };
    for (size_t i = 0; i < MP__ARRAY_LEN(cases); i++) {
        mp_py *v = (mp_py *)1;
        int err = mp_py_loads(cases[i].p, cases[i].n, MP_PY_INERT, &v);
        if (err != MP_EBADMSG)
            MP__FAIL("%s: %d (%s), want MP_EBADMSG", cases[i].what, err, mp_errname(err));
    }
    /* what Python accepts: POP of an empty segment pops its MARK, bytes
     * after STOP are ignored, PUT then GET */
    mp_py *v = loads_ok(LIT("\x80\x02K\x05(0.junk"), 0);
    int64_t i;
    ASSERT_OK(mp_py_int(v, &i));
    ASSERT_EQ(5, i);
    mp_py_free(v);
    v = loads_ok(LIT("(lp0\nI7\naI01\naL12L\naF0.5\na."), 0); /* protocol 0's */
    ASSERT_EQ(4, mp_py_len(v));
    ASSERT_EQ(MP_PY_BOOL, mp_py_type_of(mp_py_item(v, 1)));
    mp_py_free(v);
    v = loads_ok(LIT("I7\np1\n0g1\n."), 0);
    ASSERT_OK(mp_py_int(v, &i));
    ASSERT_EQ(7, i);
    mp_py_free(v);
}

MP_TEST(cycles_refused_garbage_freed)
{
    /* l = []; l.append(l) */
    assert_refused(LIT("\x80\x02]q\x00h\x00" "a."), 0);
    /* d = {}; d['self'] = [d] */
    assert_refused(LIT("\x80\x02}q\x00X\x04\x00\x00\x00selfh\x00\x85s."), 0);
    /* l = []; l.append((l,)) */
    assert_refused(LIT("\x80\x02]q\x00h\x00\x85" "a."), 0);
    /* an inert object whose state holds itself */
    assert_refused(LIT("\x80\x02" "cm\nC\n)\x81q\x00h\x00" "b."), MP_PY_INERT);
    /* a cycle the result does not reach: freed, the result stands
     * (LeakSanitizer would report a leak) */
    mp_py *v = loads_ok(LIT("\x80\x02]q\x00h\x00" "a0N."), 0);
    ASSERT_EQ(MP_PY_NONE, mp_py_type_of(v));
    mp_py_free(v);
    /* shared, not cyclic: fine, and shared in C too */
    v = loads_ok(LIT("\x80\x02]q\x00]q\x01(h\x00h\x00" "e\x86."), 0); /* (L, [L, L]) */
    ASSERT_EQ(2, mp_py_len(mp_py_item(v, 1)));
    ASSERT_TRUE(mp_py_item(mp_py_item(v, 1), 0) == mp_py_item(v, 0));
    ASSERT_TRUE(mp_py_item(mp_py_item(v, 1), 1) == mp_py_item(v, 0));
    mp_py_free(v);
}

MP_TEST(unhashable_keys_refused)
{
    assert_refused(LIT("\x80\x02}]K\x01s."), 0);                 /* {[]: 1} */
    assert_refused(LIT("\x80\x02}}K\x01s."), 0);                 /* {{}: 1} */
    assert_refused(LIT("\x80\x04\x8f(]\x90."), 0);               /* {[]} */
    assert_refused(LIT("\x80\x04(\x8f\x91."), 0);                /* frozenset({set()}) */
    assert_refused(LIT("\x80\x05(\x96\x00\x00\x00\x00\x00\x00\x00\x00\x91."), 0);
    assert_refused(LIT("\x80\x02}]\x85K\x01s."), 0);             /* {([],): 1} */
    assert_refused(LIT("\x80\x02(]K\x01" "d."), 0);              /* DICT opcode */
    /* an equal key later: one entry, the first key, the last value */
    mp_py *d = loads_ok(LIT("\x80\x02}(K\x01K\x02\x88K\x03G?\xf0\x00\x00\x00\x00\x00\x00K\x04u."), 0);
    ASSERT_EQ(1, mp_py_len(d));
    mp_py *k, *val;
    int64_t i;
    ASSERT_OK(mp_py_dict_item(d, 0, &k, &val));
    ASSERT_EQ(MP_PY_INT, mp_py_type_of(k));
    ASSERT_OK(mp_py_int(val, &i));
    ASSERT_EQ(4, i);
    mp_py_free(d);
}

static void nested_lists(mp_buf *b, int levels)
{
    b->len = 0;
    ASSERT_OK(mp_buf_append(b, "\x80\x02", 2));
    for (int i = 0; i < levels; i++)
        ASSERT_OK(mp_buf_append(b, "]", 1));
    for (int i = 1; i < levels; i++)
        ASSERT_OK(mp_buf_append(b, "a", 1));
    ASSERT_OK(mp_buf_append(b, ".", 1));
}

MP_TEST(nesting_bounded)
{
    mp_buf b = MP_BUF_INIT, out = MP_BUF_INIT;
    nested_lists(&b, MP_PY_MAX_DEPTH);
    mp_py *v = loads_ok(b.data, b.len, 0);
    ASSERT_OK(mp_py_dumps(v, &out));
    mp_py_free(v);
    nested_lists(&b, MP_PY_MAX_DEPTH + 1);
    assert_refused(b.data, b.len, 0);
    nested_lists(&b, 100000);
    assert_refused(b.data, b.len, 0);
    /* MARKs nest no deeper either */
    b.len = 0;
    for (int i = 0; i < MP_PY_MAX_DEPTH + 5; i++)
        ASSERT_OK(mp_buf_append(&b, "(", 1));
    assert_refused(b.data, b.len, 0);

    /* the encoder: the same bound, built by hand */
    mp_py *root = mp_py_list_new(), *inner = root;
    for (int i = 1; i < MP_PY_MAX_DEPTH; i++) {
        mp_py *l = mp_py_list_new();
        ASSERT_OK(mp_py_list_append(inner, l));
        inner = l;
    }
    ASSERT_OK(mp_py_dumps(root, &out));
    ASSERT_OK(mp_py_list_append(inner, mp_py_list_new()));
    ASSERT_ERR(MP_EINVAL, mp_py_dumps(root, &out));
    ASSERT_EQ(0, out.len);
    mp_py_free(root);
    /* A deep tuple as a dict key or a set item is hashed as it comes, before
     * the nesting check at STOP: refused, with no stack overflow (found by
     * fuzz_pymgr_reply). */
    for (int set = 0; set <= 1; set++) {
        b.len = 0;
        ASSERT_OK(mp_buf_append(&b, set ? "\x80\x04\x8f(N" : "\x80\x04}N", set ? 5 : 4));
        for (int i = 0; i < 100000; i++)
            ASSERT_OK(mp_buf_append(&b, "\x85", 1));
        ASSERT_OK(mp_buf_append(&b, set ? "\x90." : "Ns.", set ? 2 : 3));
        assert_refused(b.data, b.len, 0);
    }
    /* built by hand: no hash, and equality without deep recursion */
    mp_py *deep[2];
    for (int k = 0; k < 2; k++) {
        deep[k] = mp_py_none_new();
        for (int i = 0; i < 100000; i++) {
            mp_py *t = mp_py_tuple_new(1);
            ASSERT_OK(mp_py_tuple_set(t, 0, deep[k]));
            deep[k] = t;
        }
    }
    mp_py *dict = mp_py_dict_new();
    ASSERT_ERR(MP_EINVAL, mp_py_dict_set(dict, mp_py_ref(deep[0]), mp_py_none_new()));
    ASSERT_EQ(0, mp_py_len(dict));
    mp_py_free(dict);
    ASSERT_TRUE(mp_py_equal(deep[0], deep[0]));
    ASSERT_TRUE(!mp_py_equal(deep[0], deep[1])); /* too deep to compare */
    mp_py_free(deep[0]);
    mp_py_free(deep[1]);

    /* a deep value frees without recursion */
    root = mp_py_list_new();
    inner = root;
    for (int i = 0; i < 1000000; i++) {
        mp_py *l = mp_py_list_new();
        ASSERT_OK(mp_py_list_append(inner, l));
        inner = l;
    }
    mp_py_free(root);
    free(b.data);
    free(out.data);
}

MP_TEST(encoder_refuses_cycles_and_objects)
{
    mp_buf b = MP_BUF_INIT;
    mp_py *l = mp_py_list_new(), *t = mp_py_tuple_new(1);
    ASSERT_OK(mp_py_list_append(l, mp_py_ref(t)));
    ASSERT_OK(mp_py_tuple_set(t, 0, mp_py_ref(l))); /* l -> t -> l */
    ASSERT_ERR(MP_EINVAL, mp_py_dumps(l, &b));
    ASSERT_ERR(MP_EINVAL, mp_py_dumps(t, &b));
    ASSERT_OK(mp_py_tuple_set(t, 0, mp_py_none_new())); /* break it to free it */
    ASSERT_OK(mp_py_dumps(l, &b));
    mp_py_free(l);
    mp_py_free(t);

    mp_py *d = mp_py_dict_new();
    ASSERT_OK(mp_py_dict_set_str(d, "me", mp_py_ref(d)));
    ASSERT_ERR(MP_EINVAL, mp_py_dumps(d, &b));
    ASSERT_OK(mp_py_dict_set_str(d, "me", mp_py_none_new()));
    mp_py_free(d);
    ASSERT_ERR(MP_EINVAL, mp_py_dumps(NULL, &b));
    free(b.data);
}

/* Shared items are written once and read back shared; a DAG that unfolds
 * to 2**60 nodes costs its own size to write, read and compare. */
MP_TEST(shared_items_and_dag_bomb)
{
    mp_buf b = MP_BUF_INIT, out = MP_BUF_INIT;
    mp_py *shared = mp_py_list_new(), *l = mp_py_list_new();
    ASSERT_OK(mp_py_list_append(shared, mp_py_str_new("s")));
    for (int i = 0; i < 3; i++)
        ASSERT_OK(mp_py_list_append(l, mp_py_ref(shared)));
    mp_py_free(shared);
    mp_py *back = roundtrip(l);
    ASSERT_TRUE(mp_py_item(back, 0) == mp_py_item(back, 2));
    mp_py_free(back);
    mp_py_free(l);

    /* t0 = (); t(i+1) = (t(i), t(i)); twice, then {A60: 1, B60: 2} */
    ASSERT_OK(mp_buf_append(&b, "\x80\x04", 2));
    uint32_t memo = 0, top[2];
    for (int copy = 0; copy < 2; copy++) {
        ASSERT_OK(mp_buf_append(&b, ")\x94", 2));
        for (int i = 0; i < 60; i++) {
            uint8_t get[5] = {'j', (uint8_t)memo, (uint8_t)(memo >> 8), 0, 0};
            ASSERT_OK(mp_buf_append(&b, get, 5));
            ASSERT_OK(mp_buf_append(&b, "2\x86\x94", 3)); /* DUP TUPLE2 MEMOIZE */
            memo++;
            ASSERT_OK(mp_buf_append(&b, "0", 1)); /* POP */
        }
        top[copy] = memo++; /* the last MEMOIZE; the next () is memo */
        ASSERT_OK(mp_buf_append(&b, "0", 1)); /* the first () */
    }
    ASSERT_OK(mp_buf_append(&b, "}(", 2));
    for (int copy = 0; copy < 2; copy++) {
        uint8_t get[7] = {'j', (uint8_t)top[copy], 0, 0, 0, 'K', (uint8_t)(copy + 1)};
        ASSERT_OK(mp_buf_append(&b, get, 7));
    }
    ASSERT_OK(mp_buf_append(&b, "u.", 2));
    double t0 = mp_monotonic();
    mp_py *d = loads_ok(b.data, b.len, 0);
    ASSERT_EQ(1, mp_py_len(d)); /* A60 == B60 */
    ASSERT_OK(mp_py_dumps(d, &out));
    ASSERT_LT(out.len, 4096);
    mp_py *again = loads_ok(out.data, out.len, 0);
    ASSERT_TRUE(mp_py_equal(d, again));
    ASSERT_LT(mp_monotonic() - t0, 10.0);
    mp_py_free(again);
    mp_py_free(d);
    free(b.data);
    free(out.data);
}

/* Big values decode in linear time (a quadratic decoder would take hours
 * here; the bound is generous for a loaded 2-core machine). */
MP_TEST(big_values_linear_time, .timeout_s = 120)
{
    mp_buf b = MP_BUF_INIT;
    mp_py *d = mp_py_dict_new(), *s = mp_py_set_new(), *ints = mp_py_dict_new();
    char key[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof key, "key%d", i);
        ASSERT_OK(mp_py_dict_set_str(d, key, mp_py_int_new(i)));
        ASSERT_OK(mp_py_set_add(s, mp_py_int_new((int64_t)i << 32)));
        /* int keys that differ only in high bits */
        ASSERT_OK(mp_py_dict_set(ints, mp_py_int_new((int64_t)i << 40), mp_py_none_new()));
    }
    char *big = malloc(1 << 20);
    memset(big, 'z', 1 << 20);
    mp_py *str = mp_py_str_new_n(big, 1 << 20);
    free(big);
    mp_py *vals[] = {d, s, ints, str};
    for (size_t k = 0; k < MP__ARRAY_LEN(vals); k++) {
        ASSERT_OK(mp_py_dumps(vals[k], &b));
        double t0 = mp_monotonic();
        mp_py *back = loads_ok(b.data, b.len, 0);
        double took = mp_monotonic() - t0;
        if (took > 10.0)
            MP__FAIL("value %zu: %.1f s to decode", k, took);
        ASSERT_TRUE(mp_py_equal(vals[k], back));
        mp_py_free(back);
        mp_py_free(vals[k]);
    }
    free(b.data);
}

/* Frames as CPython writes them: about 64 KiB each, at opcode boundaries;
 * a big payload outside any frame; no frame for a tiny pickle. */
MP_TEST(framing)
{
    mp_buf b = MP_BUF_INIT;
    mp_py *l = mp_py_list_new();
    for (int i = 0; i < 100000; i++)
        ASSERT_OK(mp_py_list_append(l, mp_py_int_new(i)));
    ASSERT_OK(mp_py_dumps(l, &b));
    const uint8_t *p = b.data;
    size_t pos = 2, frames = 0;
    ASSERT_EQ(0x95, p[pos]);
    while (pos < b.len && p[pos] == 0x95) {
        uint64_t n = 0;
        for (int i = 0; i < 8; i++)
            n |= (uint64_t)p[pos + 1 + i] << (8 * i);
        ASSERT_LE(n, 65536 + 1024);
        pos += 9 + n;
        frames++;
    }
    ASSERT_EQ(b.len, pos); /* frames cover it all */
    ASSERT_GE(frames, 4);
    mp_py *back = loads_ok(b.data, b.len, 0);
    ASSERT_TRUE(mp_py_equal(l, back));
    mp_py_free(back);
    mp_py_free(l);

    mp_py *none = mp_py_none_new();
    ASSERT_OK(mp_py_dumps(none, &b));
    ASSERT_EQ(4, b.len); /* PROTO 4, NONE, STOP: too small for a frame */
    ASSERT_MEMEQ("\x80\x04N.", b.data, 4);
    mp_py_free(none);

    mp_py *by = mp_py_bytes_new(NULL, 0);
    char *big = calloc(1, 100000);
    mp_py_free(by);
    by = mp_py_bytes_new(big, 100000);
    free(big);
    ASSERT_OK(mp_py_dumps(by, &b));
    /* PROTO, BINBYTES + length + payload, STOP: all unframed */
    ASSERT_EQ(2 + 5 + 100000 + 1, b.len);
    ASSERT_EQ('B', ((uint8_t *)b.data)[2]);
    mp_py_free(by);
    free(b.data);
}

MP_TEST(dumps_small_values_exactly)
{
    /* what CPython writes for these too (it memoizes the str; we need not) */
    mp_buf b = MP_BUF_INIT;
    mp_py *d = mp_py_dict_new();
    ASSERT_OK(mp_py_dict_set_str(d, "job", mp_py_int_new(3)));
    ASSERT_OK(mp_py_dumps(d, &b));
    static const char want[] = "\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00}\x8c\x03jobK\x03s.";
    ASSERT_EQ(sizeof want - 1, b.len);
    ASSERT_MEMEQ(want, b.data, b.len);
    mp_py_free(d);

    static const struct {
        int64_t v;
        const char *op;
        size_t n;
    } ints[] = {
        {255, "K\xff", 2},          {256, "M\x00\x01", 3},
        {-1, "J\xff\xff\xff\xff", 5}, {65536, "J\x00\x00\x01\x00", 5},
        {(int64_t)1 << 31, "\x8a\x05\x00\x00\x00\x80\x00", 7},
    };
    for (size_t i = 0; i < MP__ARRAY_LEN(ints); i++) {
        mp_py *v = mp_py_int_new(ints[i].v);
        ASSERT_OK(mp_py_dumps(v, &b));
        /* a frame once its contents (the opcode and STOP) reach 4 bytes */
        size_t frame = ints[i].n + 1 >= 4 ? 9 : 0;
        ASSERT_EQ(2 + frame + ints[i].n + 1, b.len);
        ASSERT_MEMEQ(ints[i].op, (char *)b.data + 2 + frame, ints[i].n);
        mp_py_free(v);
    }
    free(b.data);
}

/* ---- over a connection ---------------------------------------------------- */

MP_TEST(conn_send_recv_py)
{
    mp_conn *a, *b;
    mp_py *v, *got = (mp_py *)1;
    ASSERT_OK(mp_pipe(&a, &b, true));

    v = mp_py_dict_new();
    ASSERT_OK(mp_py_dict_set_str(v, "job", mp_py_int_new(3)));
    ASSERT_OK(mp_conn_send_py(a, v));
    ASSERT_OK(mp_conn_recv_py(b, 0, &got));
    ASSERT_TRUE(mp_py_equal(v, got));
    mp_py_free(got);
    mp_py_free(v);

    /* the other way, and what Python's conn.send(dict) wrote */
    ASSERT_OK(mp_conn_send_bytes(b, LIT(job_p5)));
    ASSERT_OK(mp_conn_recv_py(a, 0, &got));
    int64_t i;
    ASSERT_OK(mp_py_int(mp_py_dict_get_str(got, "job"), &i));
    ASSERT_EQ(3, i);
    mp_py_free(got);

    /* refused: consumed, the next message reads fine */
    ASSERT_OK(mp_conn_send_bytes(a, LIT(keyerror_p4)));
    ASSERT_OK(mp_conn_send_bytes(a, LIT(keyerror_p4)));
    got = (mp_py *)1;
    ASSERT_ERR(MP_EBADMSG, mp_conn_recv_py(b, 0, &got));
    ASSERT_TRUE(got == NULL);
    ASSERT_OK(mp_conn_recv_py(b, MP_PY_INERT, &got));
    ASSERT_STREQ("KeyError", mp_py_object_name(got));

    /* an object is never written: nothing is sent */
    ASSERT_ERR(MP_EINVAL, mp_conn_send_py(a, got));
    ASSERT_EQ(0, mp_conn_poll(b, 0));
    mp_py_free(got);
    ASSERT_ERR(MP_EINVAL, mp_conn_recv_py(b, 2, &got));
    ASSERT_ERR(MP_EINVAL, mp_conn_send_py(a, NULL));

    ASSERT_OK(mp_conn_close(a));
    ASSERT_ERR(MP_EOF, mp_conn_recv_py(b, 0, &got));
    ASSERT_TRUE(got == NULL);
    ASSERT_OK(mp_conn_close(b));
}
