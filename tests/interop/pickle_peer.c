/*
 * pickle_peer: the C end of tests/interop/pickle_interop.py (public API
 * only, shared library).
 *
 *   pickle_peer roundtrip [inert]
 *       reads records from stdin (u32 little-endian length, the pickle)
 *       and for each writes: i32 result of mp_py_loads (0 or MP_E*), then
 *       when 0: u32 length and mp_py_dumps of the value (or i32 error of
 *       dumps as a negative length: a value C read but cannot write, e.g.
 *       an inert object), plus one byte: 1 if decoding the re-encoding
 *       gave a value mp_py_equal to the first.
 *   pickle_peer build
 *       writes the records (u32 length, pickle) of values built with the
 *       constructors; the script knows what each must load as.
 *   pickle_peer conn-client ADDRESS KEYHEX
 *   pickle_peer conn-listen ADDRESS KEYHEX
 *       connects to Python's Listener (or listens, printing its address as
 *       the only line on stdout, for Python's Client), sends
 *       {'from': 'c', 'n': [1, 2.5, None]} with mp_conn_send_py, then
 *       echoes every value mp_conn_recv_py reads (MP_PY_INERT) until the
 *       str "end of exchange";
 *       a pickle it refuses is answered with the str "refused", an inert
 *       object with "object <module>.<name>".
 */
#include <multiproc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_all(void *p, size_t n)
{
    return fread(p, 1, n, stdin) == n ? 0 : -1;
}

static void write_u32(uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    fwrite(b, 1, 4, stdout);
}

static int roundtrip(unsigned flags)
{
    uint8_t hdr[4];
    mp_buf out = MP_BUF_INIT;
    while (read_all(hdr, 4) == 0) {
        uint32_t n = hdr[0] | hdr[1] << 8 | hdr[2] << 16 | (uint32_t)hdr[3] << 24;
        uint8_t *p = malloc(n ? n : 1);
        if (p == NULL || read_all(p, n) < 0)
            return 1;
        mp_py *v, *again = NULL;
        int err = mp_py_loads(p, n, flags, &v);
        write_u32((uint32_t)err);
        if (err == 0) {
            err = mp_py_dumps(v, &out);
            if (err < 0) {
                write_u32((uint32_t)err);
            } else {
                write_u32((uint32_t)out.len);
                fwrite(out.data, 1, out.len, stdout);
                uint8_t same = mp_py_loads(out.data, out.len, 0, &again) == 0 &&
                               mp_py_equal(v, again);
                fwrite(&same, 1, 1, stdout);
                mp_py_free(again);
            }
            mp_py_free(v);
        }
        free(p);
    }
    free(out.data);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int emit(mp_py *v)
{
    mp_buf out = MP_BUF_INIT;
    int err = v ? mp_py_dumps(v, &out) : MP_ENOMEM;
    mp_py_free(v);
    if (err < 0) {
        fprintf(stderr, "pickle_peer: dumps: %s\n", mp_strerror(err));
        return 1;
    }
    write_u32((uint32_t)out.len);
    fwrite(out.data, 1, out.len, stdout);
    free(out.data);
    return 0;
}

#define CHECK(x)                                                               \
    do {                                                                       \
        if ((x) != 0) {                                                        \
            fprintf(stderr, "pickle_peer: %s failed\n", #x);                   \
            return 1;                                                          \
        }                                                                      \
    } while (0)

/* The values of EXPECTED_BUILD in pickle_interop.py, in its order. */
static int build(void)
{
    static const uint8_t big[] = {0, 0, 0, 0, 0, 0, 0, 0, 0x80}; /* -2**71 */
    static const uint8_t big2[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00};
    int rc = 0;
    rc |= emit(mp_py_none_new());
    rc |= emit(mp_py_bool_new(true));
    rc |= emit(mp_py_int_new(INT64_MIN));
    rc |= emit(mp_py_int_from_bytes(big, sizeof big));
    rc |= emit(mp_py_int_from_bytes(big2, sizeof big2));
    rc |= emit(mp_py_float_new(-2.5));
    rc |= emit(mp_py_str_new("h\xc3\xa9llo \xe2\x82\xac"));
    rc |= emit(mp_py_bytes_new("\0\1\2", 3));
    rc |= emit(mp_py_bytearray_new("ba", 2));
    rc |= emit(mp_py_bytearray_new(NULL, 0));

    mp_py *t = mp_py_tuple_new(5);
    CHECK(mp_py_tuple_set(t, 0, mp_py_int_new(1)));
    CHECK(mp_py_tuple_set(t, 1, mp_py_str_new("two")));
    CHECK(mp_py_tuple_set(t, 2, mp_py_list_new()));
    rc |= emit(t);

    mp_py *d = mp_py_dict_new();
    CHECK(mp_py_dict_set_str(d, "job", mp_py_int_new(3)));
    CHECK(mp_py_dict_set(d, mp_py_int_new(1), mp_py_str_new("one")));
    CHECK(mp_py_dict_set(d, mp_py_float_new(1.0), mp_py_str_new("uno"))); /* same key */
    mp_py *key = mp_py_tuple_new(2);
    CHECK(mp_py_tuple_set(key, 0, mp_py_bytes_new("k", 1)));
    CHECK(mp_py_tuple_set(key, 1, mp_py_frozenset_new()));
    CHECK(mp_py_dict_set(d, key, mp_py_none_new()));
    rc |= emit(d);

    mp_py *s = mp_py_set_new(), *fs = mp_py_frozenset_new();
    for (int i = 0; i < 2500; i++)
        CHECK(mp_py_set_add(s, mp_py_int_new(i % 2000)));
    CHECK(mp_py_set_add(fs, mp_py_str_new("a")));
    CHECK(mp_py_set_add(fs, mp_py_bool_new(true)));
    CHECK(mp_py_set_add(fs, mp_py_int_new(1))); /* == True: dropped */
    mp_py *l = mp_py_list_new();
    CHECK(mp_py_list_append(l, s));
    CHECK(mp_py_list_append(l, fs));
    /* one list shared three times: Python must load it shared */
    mp_py *shared = mp_py_list_new();
    CHECK(mp_py_list_append(shared, mp_py_int_new(7)));
    for (int i = 0; i < 3; i++)
        CHECK(mp_py_list_append(l, mp_py_ref(shared)));
    mp_py_free(shared);
    rc |= emit(l);

    /* a large str and bytes: written outside frames */
    char *bigs = malloc(200001);
    memset(bigs, 'x', 200000);
    bigs[200000] = '\0';
    mp_py *pair = mp_py_tuple_new(2);
    CHECK(mp_py_tuple_set(pair, 0, mp_py_str_new(bigs)));
    CHECK(mp_py_tuple_set(pair, 1, mp_py_bytes_new(bigs, 100000)));
    free(bigs);
    rc |= emit(pair);

    /* more than one 64 KiB frame of small opcodes */
    mp_py *many = mp_py_list_new();
    for (int i = 0; i < 30000; i++)
        CHECK(mp_py_list_append(many, mp_py_int_new(i)));
    rc |= emit(many);
    fflush(stdout);
    return rc;
}

static size_t unhex(const char *h, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (; h[0] && h[1] && n < cap; h += 2) {
        unsigned x;
        if (sscanf(h, "%2x", &x) != 1)
            break;
        out[n++] = (uint8_t)x;
    }
    return n;
}

static int conn_peer(bool listen, const char *address, const char *keyhex)
{
    uint8_t key[256];
    size_t keylen = unhex(keyhex, key, sizeof key);
    mp_conn *c = NULL;
    mp_listener *l = NULL;
    if (listen) {
        CHECK(mp_listener_new(&l, address, key, keylen, 0));
        printf("%s\n", mp_listener_address(l));
        fflush(stdout);
        CHECK(mp_listener_accept(l, &c, 60.0));
    } else
        CHECK(mp_client(&c, address, key, keylen));

    mp_py *hello = mp_py_dict_new(), *n = mp_py_list_new();
    CHECK(mp_py_dict_set_str(hello, "from", mp_py_str_new("c")));
    CHECK(mp_py_list_append(n, mp_py_int_new(1)));
    CHECK(mp_py_list_append(n, mp_py_float_new(2.5)));
    CHECK(mp_py_list_append(n, mp_py_none_new()));
    CHECK(mp_py_dict_set_str(hello, "n", n));
    CHECK(mp_conn_send_py(c, hello));
    mp_py_free(hello);

    for (;;) {
        mp_py *v = NULL;
        int err = mp_conn_recv_py(c, MP_PY_INERT, &v);
        if (err == MP_EBADMSG) {
            mp_py *r = mp_py_str_new("refused");
            CHECK(mp_conn_send_py(c, r));
            mp_py_free(r);
            continue;
        }
        CHECK(err);
        const char *s = mp_py_str(v, NULL);
        if (s && strcmp(s, "end of exchange") == 0) {
            mp_py_free(v);
            break;
        }
        if (mp_py_type_of(v) == MP_PY_OBJECT) {
            char text[512];
            snprintf(text, sizeof text, "object %s.%s", mp_py_object_module(v),
                     mp_py_object_name(v));
            mp_py_free(v);
            v = mp_py_str_new(text);
        }
        CHECK(mp_conn_send_py(c, v));
        mp_py_free(v);
    }
    CHECK(mp_conn_close(c));
    if (l)
        CHECK(mp_listener_close(l));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "conn-client") == 0)
        return conn_peer(false, argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "conn-listen") == 0)
        return conn_peer(true, argv[2], argv[3]);
    if (argc >= 2 && strcmp(argv[1], "roundtrip") == 0)
        return roundtrip(argc >= 3 && strcmp(argv[2], "inert") == 0 ? MP_PY_INERT : 0);
    if (argc == 2 && strcmp(argv[1], "build") == 0)
        return build();
    fprintf(stderr, "usage: pickle_peer roundtrip [inert] | build\n");
    return 2;
}
