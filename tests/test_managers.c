/*
 * Managers: a server process holding named shared objects, used through
 * authenticated connections (PYTHON-SEMANTICS section 16, issue 7).
 * Started, connected and remote (TCP) servers; dict, list, custom types;
 * proxies for queue, joinable queue, lock, event, semaphore, value and
 * array used with the ordinary functions, a namespace (a dict of its own
 * kind); wrong keys, dying clients and malformed requests.
 */
#include "mp_test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <poll.h>

/* The wire's op numbers (src/proxy_ops.h), for hand-made requests. */
enum {
    W_OPEN = 1,
    W_DICT_SET = 10,
    W_DICT_GET = 11,
    W_DICT_ADD = 14,
    W_DICT_BATCH = 16,
    W_LIST_APPEND = 20,
    W_LIST_GET = 21,
    W_Q_PUT = 30,
    W_LOCK_ACQ = 40,
    W_LOCK_REL = 41,
    W_LOCK_LOCKED = 42,
    W_EV_SET = 50,
    W_EV_ISSET = 52,
    W_EV_WAIT = 53,
    W_SEM_ACQ = 60,
    W_SEM_REL = 61,
    W_SEM_VALUE = 62,
    W_VAL_STORE = 71,
    W_CALL = 80,
    W_COND_WAIT = 100,
};

static const char KEY[] = "manager-test-key";
#define KEYLEN (sizeof KEY - 1)

/* ---- helpers ------------------------------------------------------------ */

/* Args that let a child connect: item 0 the address, item 1 the key. */
static mp_args *conn_args(const mp_manager *m)
{
    mp_args *a = NULL;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_str(a, mp_manager_address(m)));
    ASSERT_OK(mp_args_add_bytes(a, KEY, KEYLEN));
    return a;
}

/* In a child: connect with args items 0 and 1. */
static mp_manager *child_connect(const mp_args *a)
{
    size_t kl = 0;
    const void *k = mp_args_bytes(a, 1, &kl);
    mp_manager *m = NULL;
    ASSERT_OK(mp_manager_connect(&m, mp_args_str(a, 0), k, kl));
    ASSERT_EQ(mp_manager_pid(m), 0);
    return m;
}

static mp_manager *start_manager(mp_context *ctx)
{
    mp_manager *m = NULL;
    ASSERT_OK(mp_manager_start(&m, ctx, NULL, KEY, KEYLEN));
    ASSERT_GT(mp_manager_pid(m), 0);
    ASSERT_TRUE(mp_manager_address(m) != NULL);
    return m;
}

/* Shut down through @m.  The reply to OP_SHUTDOWN races with the server's
 * teardown (it shuts every connection down, the asker's included), so a
 * lost reply (MP_ECLOSED) is tolerated here; manager_shutdown_replies
 * below insists on it. */
static void shutdown_via(mp_manager *m)
{
    int err = mp_manager_shutdown(m);
    if (err != MP_ECLOSED)
        ASSERT_OK(err);
}

static bool pid_gone(pid_t pid)
{
    return kill(pid, 0) == -1 && errno == ESRCH;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t dict_int(mp_dict *d, const char *k)
{
    mp_buf v = MP_BUF_INIT;
    int err = mp_dict_get(d, k, strlen(k), &v);
    int64_t x = -1;
    if (err == MP_ENOENT)
        x = 0;
    else {
        ASSERT_OK(err);
        ASSERT_EQ(v.len, sizeof x);
        memcpy(&x, v.data, sizeof x);
    }
    mp_buf_free(&v);
    return x;
}

/* The other clients still work: a quick round trip on @m. */
static void still_serving(mp_manager *m)
{
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "alive", &d));
    int64_t before = dict_int(d, "n"), after = 0;
    ASSERT_OK(mp_dict_add(d, "n", 1, 1, &after));
    ASSERT_EQ(after, before + 1);
    mp_dict_free(d);
}

/* ---- start, connect, shutdown ------------------------------------------- */

static int child_set_hello(const mp_args *a)
{
    mp_manager *m = child_connect(a);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "d", &d));
    ASSERT_OK(mp_dict_set(d, "hello", 5, "world", 5));
    mp_dict_free(d);
    mp_manager_free(m);
    return 0;
}

MP_TEST(manager_start_connect_shutdown, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    pid_t pid = mp_manager_pid(m);
    ASSERT_FALSE(pid_gone(pid));

    mp_manager *c = NULL;
    ASSERT_OK(mp_manager_connect(&c, mp_manager_address(m), KEY, KEYLEN));
    ASSERT_EQ(mp_manager_pid(c), 0);
    ASSERT_STREQ(mp_manager_address(c), mp_manager_address(m));

    ASSERT_EQ(mp_test_run_free(ctx, child_set_hello, conn_args(m)), 0);

    mp_dict *d;
    ASSERT_OK(mp_manager_dict(c, "d", &d));
    mp_test_dict_expect(d, "hello", "world", 5);

    /* the started one shuts the server down and joins it */
    shutdown_via(m);
    ASSERT_TRUE(pid_gone(pid));
    /* a connected client then finds it gone */
    ASSERT_LT(mp_dict_len(d, &(size_t){0}), 0);
    mp_dict_free(d);
    mp_manager_free(c);
    mp_manager_free(m);

    /* free alone shuts a started server down too */
    m = start_manager(ctx);
    pid = mp_manager_pid(m);
    mp_manager_free(m);
    ASSERT_TRUE(pid_gone(pid));

    /* any client may shut it down */
    m = start_manager(ctx);
    pid = mp_manager_pid(m);
    ASSERT_OK(mp_manager_connect(&c, mp_manager_address(m), KEY, KEYLEN));
    shutdown_via(c);
    mp_manager_free(c);
    mp_manager_free(m);
    ASSERT_TRUE(pid_gone(pid));

    /* an empty key is refused */
    ASSERT_ERR(MP_EINVAL, mp_manager_start(&m, ctx, NULL, "", 0));
}

/* The private socket directory of a started server goes with it: removed
 * by a server that ends cleanly, and by the owner when the server was
 * SIGKILLed (which could not). */
static bool private_dir_exists(const char *address)
{
    char dir[256];
    ASSERT_EQ(0, strncmp(address, "unix:/", 6));
    snprintf(dir, sizeof dir, "%s", address + 5);
    char *slash = strrchr(dir, '/');
    ASSERT_TRUE(slash != NULL);
    *slash = '\0';
    return access(dir, F_OK) == 0;
}

MP_TEST(manager_private_dir_removed, .variants = MP_START_METHODS)
{
    char addr[256];
    mp_manager *m = start_manager(ctx);
    snprintf(addr, sizeof addr, "%s", mp_manager_address(m));
    ASSERT_TRUE(private_dir_exists(addr));
    mp_manager_free(m);
    ASSERT_FALSE(private_dir_exists(addr));

    m = start_manager(ctx);
    snprintf(addr, sizeof addr, "%s", mp_manager_address(m));
    pid_t pid = mp_manager_pid(m);
    ASSERT_EQ(0, kill(pid, SIGKILL));
    ASSERT_TRUE(private_dir_exists(addr)); /* the server could not */
    mp_manager_free(m);
    ASSERT_TRUE(pid_gone(pid));
    ASSERT_FALSE(private_dir_exists(addr));
}

/* The client that asks for shutdown gets its reply (status 0), every time.
 * (Fails until the reply is sent before the teardown shuts the asker's
 * connection down: see shutdown_via.) */
MP_TEST(manager_shutdown_replies, .timeout_s = 60)
{
    for (int i = 0; i < 100; i++) {
        mp_manager *m = start_manager(NULL);
        pid_t pid = mp_manager_pid(m);
        int err = mp_manager_shutdown(m);
        if (err != 0)
            MP__FAIL("round %d: mp_manager_shutdown: %s", i, mp_errname(err));
        ASSERT_TRUE(pid_gone(pid));
        mp_manager_free(m);
    }
}

MP_TEST(manager_default_authkey, .variants = MP_START_METHODS)
{
    /* NULL: this process's authkey, which children inherit */
    mp_manager *m = NULL;
    ASSERT_OK(mp_manager_start(&m, ctx, NULL, NULL, 0));
    mp_manager *c = NULL;
    ASSERT_OK(mp_manager_connect(&c, mp_manager_address(m), NULL, 0));
    still_serving(c);
    size_t kl = 0;
    const void *k = mp_process_authkey(mp_current_process(), &kl);
    mp_manager *c2 = NULL;
    ASSERT_OK(mp_manager_connect(&c2, mp_manager_address(m), k, kl));
    still_serving(c2);
    mp_manager_free(c2);
    ASSERT_ERR(MP_EAUTH, mp_manager_connect(&c2, mp_manager_address(m), KEY, KEYLEN));
    mp_manager_free(c);
    mp_manager_free(m);
}

/* ---- dict ---------------------------------------------------------------- */

MP_TEST(manager_dict_ops)
{
    mp_manager *m = start_manager(NULL);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "d", &d));
    size_t n = 99;
    ASSERT_OK(mp_dict_len(d, &n));
    ASSERT_EQ(n, 0);
    mp_buf v = MP_BUF_INIT;
    ASSERT_ERR(MP_ENOENT, mp_dict_get(d, "a", 1, &v));
    ASSERT_ERR(MP_ENOENT, mp_dict_del(d, "a", 1));

    ASSERT_OK(mp_dict_set(d, "a", 1, "1", 1));
    ASSERT_OK(mp_dict_set(d, "bb", 2, "22", 2));
    ASSERT_OK(mp_dict_set(d, "nul\0k", 5, "", 0));
    ASSERT_OK(mp_dict_set(d, "c", 1, "3", 1));
    ASSERT_OK(mp_dict_len(d, &n));
    ASSERT_EQ(n, 4);
    ASSERT_OK(mp_dict_get(d, "bb", 2, &v));
    ASSERT_EQ(v.len, 2);
    ASSERT_MEMEQ(v.data, "22", 2);
    ASSERT_OK(mp_dict_get(d, "nul\0k", 5, &v));
    ASSERT_EQ(v.len, 0);
    ASSERT_ERR(MP_ENOENT, mp_dict_get(d, "nul", 3, &v));

    /* overwrite */
    ASSERT_OK(mp_dict_set(d, "a", 1, "one", 3));
    ASSERT_OK(mp_dict_get(d, "a", 1, &v));
    ASSERT_EQ(v.len, 3);
    ASSERT_MEMEQ(v.data, "one", 3);
    ASSERT_OK(mp_dict_len(d, &n));
    ASSERT_EQ(n, 4);

    /* keys: 4-byte length + bytes each, any order */
    mp_buf keys = MP_BUF_INIT;
    ASSERT_OK(mp_dict_keys(d, &keys));
    int seen = 0;
    size_t off = 0;
    while (off < keys.len) {
        uint32_t kl;
        ASSERT_LE(off + 4, keys.len);
        memcpy(&kl, (char *)keys.data + off, 4);
        off += 4;
        ASSERT_LE(off + kl, keys.len);
        const char *k = (const char *)keys.data + off;
        if (kl == 1 && memcmp(k, "a", 1) == 0)
            seen |= 1;
        else if (kl == 2 && memcmp(k, "bb", 2) == 0)
            seen |= 2;
        else if (kl == 1 && memcmp(k, "c", 1) == 0)
            seen |= 4;
        else if (kl == 5 && memcmp(k, "nul\0k", 5) == 0)
            seen |= 8;
        else
            MP__FAIL("unexpected key of %u bytes", kl);
        off += kl;
    }
    ASSERT_EQ(seen, 15);

    /* del */
    ASSERT_OK(mp_dict_del(d, "a", 1));
    ASSERT_ERR(MP_ENOENT, mp_dict_get(d, "a", 1, &v));
    ASSERT_ERR(MP_ENOENT, mp_dict_del(d, "a", 1));
    ASSERT_OK(mp_dict_len(d, &n));
    ASSERT_EQ(n, 3);

    /* add: a missing key starts at 0 */
    int64_t x = 0;
    ASSERT_OK(mp_dict_add(d, "ctr", 3, 5, &x));
    ASSERT_EQ(x, 5);
    ASSERT_OK(mp_dict_add(d, "ctr", 3, -7, &x));
    ASSERT_EQ(x, -2);
    ASSERT_OK(mp_dict_add(d, "ctr", 3, 2, NULL));
    ASSERT_EQ(dict_int(d, "ctr"), 0);

    /* many keys: the table grows */
    for (int i = 0; i < 300; i++) {
        char k[16];
        int kl = snprintf(k, sizeof k, "k%d", i);
        ASSERT_OK(mp_dict_set(d, k, (size_t)kl, &i, sizeof i));
    }
    ASSERT_OK(mp_dict_len(d, &n));
    ASSERT_EQ(n, 304);
    for (int i = 0; i < 300; i += 37) {
        char k[16];
        int kl = snprintf(k, sizeof k, "k%d", i);
        ASSERT_OK(mp_dict_get(d, k, (size_t)kl, &v));
        ASSERT_EQ(v.len, sizeof i);
        ASSERT_MEMEQ(v.data, &i, sizeof i);
    }

    /* another name is another dict; the same name is the same one */
    mp_dict *d2, *d3;
    ASSERT_OK(mp_manager_dict(m, "other", &d2));
    ASSERT_OK(mp_dict_len(d2, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(mp_manager_dict(m, "d", &d3));
    ASSERT_OK(mp_dict_len(d3, &n));
    ASSERT_EQ(n, 304);
    mp_dict_free(d2);
    mp_dict_free(d3);

    /* a large value */
    size_t big = 1 << 20;
    char *p = malloc(big);
    ASSERT_TRUE(p != NULL);
    for (size_t i = 0; i < big; i++)
        p[i] = (char)(i * 7);
    ASSERT_OK(mp_dict_set(d, "big", 3, p, big));
    ASSERT_OK(mp_dict_get(d, "big", 3, &v));
    ASSERT_EQ(v.len, big);
    ASSERT_MEMEQ(v.data, p, big);
    free(p);

    mp_buf_free(&v);
    mp_buf_free(&keys);
    mp_dict_free(d);
    mp_manager_free(m);
}

static int child_add_1000(const mp_args *a)
{
    mp_manager *m = child_connect(a);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "counts", &d));
    for (int i = 0; i < 1000; i++)
        ASSERT_OK(mp_dict_add(d, "n", 1, 1, NULL));
    mp_dict_free(d);
    mp_manager_free(m);
    return 0;
}

MP_TEST(manager_dict_add_atomic, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_manager *m = start_manager(ctx);
    mp_args *a = conn_args(m);
    mp_process *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = mp_test_start(ctx, child_add_1000, a);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(mp_test_join(p[i], 60), 0);
    mp_args_free(a);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "counts", &d));
    ASSERT_EQ(dict_int(d, "n"), 4000);
    size_t n = 0;
    ASSERT_OK(mp_dict_len(d, &n));
    ASSERT_EQ(n, 1);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* ---- batches ----------------------------------------------------------- */

static mp_dict_op op_of(mp_dict_opcode code, const char *k, const char *v, int64_t num)
{
    mp_dict_op o = {.op = code, .key = k, .keylen = strlen(k), .num = num, .status = 1};
    if (v) {
        o.value = v;
        o.valuelen = strlen(v);
    }
    return o;
}

MP_TEST(manager_dict_batch)
{
    mp_manager *m = start_manager(NULL);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "b", &d));
    ASSERT_OK(mp_dict_set(d, "old", 3, "x", 1));

    mp_dict_op ops[] = {
        op_of(MP_DICT_SET, "a", "alpha", 0), op_of(MP_DICT_GET, "a", NULL, 0),
        op_of(MP_DICT_GET, "nope", NULL, 0), op_of(MP_DICT_ADD, "n", NULL, 5),
        op_of(MP_DICT_ADD, "n", NULL, -7),   op_of(MP_DICT_DEL, "old", NULL, 0),
        op_of(MP_DICT_DEL, "old", NULL, 0),  op_of(MP_DICT_SET, "", "", 0),
        op_of(MP_DICT_GET, "", NULL, 0),     op_of(MP_DICT_GET, "old", NULL, 0),
        op_of(MP_DICT_SET, "a", "A", 0),     op_of(MP_DICT_GET, "a", NULL, 0),
    };
    size_t n = sizeof ops / sizeof ops[0];
    mp_buf out = MP_BUF_INIT;
    ASSERT_OK(mp_buf_append(&out, "stale", 5)); /* emptied first */
    ASSERT_OK(mp_dict_batch(d, ops, n, &out));
    int want[] = {0, 0, MP_ENOENT, 0, 0, 0, MP_ENOENT, 0, 0, MP_ENOENT, 0, 0};
    for (size_t i = 0; i < n; i++)
        ASSERT_EQ(ops[i].status, want[i]);
    ASSERT_EQ(ops[1].len, 5);
    ASSERT_MEMEQ((char *)out.data + ops[1].offset, "alpha", 5);
    ASSERT_EQ(ops[3].num, 5);
    ASSERT_EQ(ops[4].num, -2);
    ASSERT_EQ(ops[8].len, 0);
    ASSERT_EQ(ops[11].len, 1);
    ASSERT_MEMEQ((char *)out.data + ops[11].offset, "A", 1);
    ASSERT_EQ(out.len, 6);

    /* the single-op calls see what the batch did */
    ASSERT_EQ(dict_int(d, "n"), -2);
    mp_buf v = MP_BUF_INIT;
    ASSERT_ERR(MP_ENOENT, mp_dict_get(d, "old", 3, &v));
    size_t len = 0;
    ASSERT_OK(mp_dict_len(d, &len));
    ASSERT_EQ(len, 3); /* a, n, "" */

    /* nothing to do; no GET needs no buffer */
    ASSERT_OK(mp_dict_batch(d, NULL, 0, NULL));
    mp_dict_op set = op_of(MP_DICT_SET, "k", "v", 0);
    ASSERT_OK(mp_dict_batch(d, &set, 1, NULL));
    ASSERT_EQ(set.status, 0);

    /* bad input: the whole batch refused, nothing changed */
    mp_dict_op bad[] = {op_of(MP_DICT_ADD, "n", NULL, 100), op_of(MP_DICT_GET, "a", NULL, 0)};
    ASSERT_ERR(MP_EINVAL, mp_dict_batch(d, bad, 2, NULL));
    bad[1].op = (mp_dict_opcode)9;
    ASSERT_ERR(MP_EINVAL, mp_dict_batch(d, bad, 2, &out));
    bad[1] = op_of(MP_DICT_SET, "z", NULL, 0);
    bad[1].valuelen = 3; /* NULL value with a length */
    ASSERT_ERR(MP_EINVAL, mp_dict_batch(d, bad, 2, &out));
    ASSERT_ERR(MP_EINVAL, mp_dict_batch(NULL, bad, 1, &out));
    ASSERT_ERR(MP_EINVAL, mp_dict_batch(d, NULL, 1, &out));
    ASSERT_EQ(dict_int(d, "n"), -2);

    /* a large batch: 10 000 sets then 10 000 gets of 100-byte values */
    enum { BIG = 10000 };
    mp_dict_op *big = calloc(2 * BIG, sizeof *big);
    char (*keys)[16] = calloc(BIG, sizeof *keys);
    char val[100];
    memset(val, 'v', sizeof val);
    ASSERT_TRUE(big && keys);
    for (int i = 0; i < BIG; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        big[i] = (mp_dict_op){.op = MP_DICT_SET, .key = keys[i], .keylen = strlen(keys[i]),
                              .value = val, .valuelen = sizeof val};
        big[BIG + i] = (mp_dict_op){.op = MP_DICT_GET, .key = keys[i], .keylen = strlen(keys[i])};
    }
    ASSERT_OK(mp_dict_batch(d, big, 2 * BIG, &out));
    for (int i = 0; i < 2 * BIG; i++)
        ASSERT_EQ(big[i].status, 0);
    for (int i = BIG; i < 2 * BIG; i++) {
        ASSERT_EQ(big[i].len, sizeof val);
        ASSERT_MEMEQ((char *)out.data + big[i].offset, val, sizeof val);
    }
    ASSERT_EQ(out.len, (size_t)BIG * sizeof val);
    ASSERT_OK(mp_dict_len(d, &len));
    ASSERT_EQ(len, 4 + BIG);
    free(big);
    free(keys);
    mp_buf_free(&v);
    mp_buf_free(&out);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* Writers set "a" and "b" to the same number in one batch; readers read
 * both in one batch and must never see them differ. */
static int child_batch_pairs(const mp_args *a)
{
    mp_manager *m = child_connect(a);
    bool writer = mp_args_int(a, 2) != 0;
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "pairs", &d));
    mp_buf out = MP_BUF_INIT;
    for (int64_t i = 0; i < 2000; i++) {
        if (writer) {
            mp_dict_op ops[2] = {
                {.op = MP_DICT_SET, .key = "a", .keylen = 1, .value = &i, .valuelen = sizeof i},
                {.op = MP_DICT_SET, .key = "b", .keylen = 1, .value = &i, .valuelen = sizeof i},
            };
            ASSERT_OK(mp_dict_batch(d, ops, 2, &out));
            ASSERT_EQ(ops[0].status, 0);
            ASSERT_EQ(ops[1].status, 0);
        } else {
            mp_dict_op ops[2] = {{.op = MP_DICT_GET, .key = "a", .keylen = 1},
                                 {.op = MP_DICT_GET, .key = "b", .keylen = 1}};
            ASSERT_OK(mp_dict_batch(d, ops, 2, &out));
            ASSERT_EQ(ops[0].status, ops[1].status);
            if (ops[0].status == 0) {
                ASSERT_EQ(ops[0].len, ops[1].len);
                ASSERT_MEMEQ((char *)out.data + ops[0].offset,
                             (char *)out.data + ops[1].offset, ops[0].len);
            }
        }
    }
    mp_buf_free(&out);
    mp_dict_free(d);
    mp_manager_free(m);
    return 0;
}

MP_TEST(manager_dict_batch_atomic, .variants = MP_START_METHODS, .timeout_s = 90)
{
    mp_manager *m = start_manager(ctx);
    mp_process *p[4];
    for (int i = 0; i < 4; i++) {
        mp_args *a = conn_args(m);
        ASSERT_OK(mp_args_add_int(a, i % 2));
        p[i] = mp_test_start(ctx, child_batch_pairs, a);
        mp_args_free(a);
    }
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(mp_test_join(p[i], 60), 0);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "pairs", &d));
    ASSERT_EQ(dict_int(d, "a"), 1999);
    ASSERT_EQ(dict_int(d, "b"), 1999);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* Thousands of named objects: each found again by name, none mixed up
 * (the server's table of objects grows on the way). */
MP_TEST(manager_many_named_objects, .timeout_s = 90)
{
    enum { N = 3000 };
    mp_manager *m = start_manager(NULL);
    char name[32];
    for (int i = 0; i < N; i++) {
        mp_dict *d;
        snprintf(name, sizeof name, "d%d", i);
        ASSERT_OK(mp_manager_dict(m, name, &d));
        ASSERT_OK(mp_dict_add(d, "n", 1, i, NULL));
        mp_dict_free(d);
    }
    for (int i = 0; i < N; i += 7) {
        mp_dict *d;
        snprintf(name, sizeof name, "d%d", i);
        ASSERT_OK(mp_manager_dict(m, name, &d));
        ASSERT_EQ(i, dict_int(d, "n"));
        mp_dict_free(d);
        mp_list *l; /* the same name, another kind: another object */
        ASSERT_OK(mp_manager_list(m, name, &l));
        size_t len = 9;
        ASSERT_OK(mp_list_len(l, &len));
        ASSERT_EQ(0, len);
        mp_list_free(l);
    }
    mp_manager_free(m);
}

/* An empty key is a key like any other.  (Fails under UBSan until the
 * server stops comparing a stored empty key with memcmp(NULL, k, 0) in
 * dict_slot: undefined behaviour, and UBSan ends the server.) */
MP_TEST(manager_dict_empty_key)
{
    mp_manager *m = start_manager(NULL);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "d", &d));
    mp_buf v = MP_BUF_INIT;
    ASSERT_OK(mp_dict_set(d, "", 0, "empty key", 9));
    ASSERT_OK(mp_dict_set(d, "a", 1, "1", 1));
    ASSERT_OK(mp_dict_get(d, "", 0, &v));
    ASSERT_EQ(v.len, 9);
    ASSERT_MEMEQ(v.data, "empty key", 9);
    ASSERT_OK(mp_dict_get(d, "a", 1, &v));
    ASSERT_OK(mp_dict_del(d, "", 0));
    ASSERT_ERR(MP_ENOENT, mp_dict_get(d, "", 0, &v));
    size_t n = 0;
    ASSERT_OK(mp_dict_len(d, &n));
    ASSERT_EQ(n, 1);
    mp_buf_free(&v);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* ---- list ---------------------------------------------------------------- */

static void list_expect(mp_list *l, int64_t i, const char *want)
{
    mp_buf v = MP_BUF_INIT;
    ASSERT_OK(mp_list_get(l, i, &v));
    ASSERT_EQ(v.len, strlen(want));
    ASSERT_MEMEQ(v.data, want, v.len);
    mp_buf_free(&v);
}

MP_TEST(manager_list_ops)
{
    mp_manager *m = start_manager(NULL);
    mp_list *l;
    ASSERT_OK(mp_manager_list(m, "l", &l));
    size_t n = 9;
    mp_buf v = MP_BUF_INIT;
    ASSERT_OK(mp_list_len(l, &n));
    ASSERT_EQ(n, 0);
    ASSERT_ERR(MP_EINVAL, mp_list_get(l, 0, &v));
    ASSERT_ERR(MP_EINVAL, mp_list_get(l, -1, &v));
    ASSERT_ERR(MP_EINVAL, mp_list_pop(l, -1, &v));

    ASSERT_OK(mp_list_append(l, "a", 1));
    ASSERT_OK(mp_list_append(l, "b", 1));
    ASSERT_OK(mp_list_append(l, "c", 1));
    ASSERT_OK(mp_list_append(l, "", 0));
    ASSERT_OK(mp_list_len(l, &n));
    ASSERT_EQ(n, 4);
    list_expect(l, 0, "a");
    list_expect(l, 2, "c");
    list_expect(l, 3, "");
    list_expect(l, -1, "");
    list_expect(l, -4, "a");
    ASSERT_ERR(MP_EINVAL, mp_list_get(l, 4, &v));
    ASSERT_ERR(MP_EINVAL, mp_list_get(l, -5, &v));
    ASSERT_ERR(MP_EINVAL, mp_list_get(l, INT64_MAX, &v));
    ASSERT_ERR(MP_EINVAL, mp_list_get(l, INT64_MIN, &v));

    ASSERT_OK(mp_list_set(l, 1, "B", 1));
    ASSERT_OK(mp_list_set(l, -1, "D", 1));
    ASSERT_ERR(MP_EINVAL, mp_list_set(l, 4, "x", 1));
    ASSERT_ERR(MP_EINVAL, mp_list_set(l, -5, "x", 1));
    list_expect(l, 1, "B");
    list_expect(l, 3, "D");

    /* pop: -1 the last, others shift down */
    ASSERT_OK(mp_list_pop(l, -1, &v));
    ASSERT_EQ(v.len, 1);
    ASSERT_MEMEQ(v.data, "D", 1);
    ASSERT_OK(mp_list_pop(l, 0, &v));
    ASSERT_MEMEQ(v.data, "a", 1);
    ASSERT_OK(mp_list_len(l, &n));
    ASSERT_EQ(n, 2);
    list_expect(l, 0, "B");
    list_expect(l, 1, "c");
    ASSERT_ERR(MP_EINVAL, mp_list_pop(l, 2, NULL));
    ASSERT_ERR(MP_EINVAL, mp_list_pop(l, -3, NULL));
    ASSERT_OK(mp_list_pop(l, -2, NULL)); /* @v may be NULL */
    list_expect(l, 0, "c");
    ASSERT_OK(mp_list_pop(l, -1, NULL));
    ASSERT_OK(mp_list_len(l, &n));
    ASSERT_EQ(n, 0);

    for (int i = 0; i < 100; i++)
        ASSERT_OK(mp_list_append(l, &i, sizeof i));
    ASSERT_OK(mp_list_len(l, &n));
    ASSERT_EQ(n, 100);
    int x;
    ASSERT_OK(mp_list_get(l, -10, &v));
    memcpy(&x, v.data, sizeof x);
    ASSERT_EQ(x, 90);

    /* a dict and a list may share a name */
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "l", &d));
    ASSERT_OK(mp_dict_len(d, &n));
    ASSERT_EQ(n, 0);
    mp_dict_free(d);

    mp_buf_free(&v);
    mp_list_free(l);
    mp_manager_free(m);
}

/* ---- named objects and proxies across processes ------------------------- */

/* args: addr, key, then a queue, lock, event, semaphore and value proxy */
static int child_named(const mp_args *a)
{
    mp_manager *m = child_connect(a);
    /* found by name */
    mp_list *l;
    ASSERT_OK(mp_manager_list(m, "shared-list", &l));
    size_t n = 0;
    ASSERT_OK(mp_list_len(l, &n));
    ASSERT_EQ(n, 1);
    list_expect(l, 0, "from parent");
    ASSERT_OK(mp_list_append(l, "from child", 10));
    mp_list_free(l);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "shared-dict", &d));
    ASSERT_EQ(dict_int(d, "x"), 7);
    ASSERT_OK(mp_dict_add(d, "x", 1, 1, NULL));
    mp_dict_free(d);
    /* proxies opened by name here */
    mp_queue *q;
    ASSERT_OK(mp_manager_queue(m, "q", 0, &q));
    ASSERT_OK(mp_queue_put(q, "by name", 7, 10));
    mp_queue_free(q);
    mp_manager_free(m);

    /* proxies received in the args, no manager handle */
    mp_queue *aq = mp_args_queue(a, 2);
    mp_lock *al = mp_args_lock(a, 3);
    mp_event *ae = mp_args_event(a, 4);
    mp_semaphore *as = mp_args_semaphore(a, 5);
    mp_value *av = mp_args_value(a, 6);
    ASSERT_TRUE(aq && al && ae && as && av);
    ASSERT_OK(mp_queue_put(aq, "by args", 7, 10));
    ASSERT_TRUE(mp_lock_locked(al)); /* the parent holds it */
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(al, 0.05));
    ASSERT_TRUE(mp_event_is_set(ae));
    int sv = -1;
    ASSERT_OK(mp_semaphore_value(as, &sv));
    ASSERT_EQ(sv, 3);
    ASSERT_OK(mp_semaphore_acquire(as, 10));
    int64_t x = 0;
    ASSERT_OK(mp_value_load(av, &x));
    ASSERT_EQ(x, 1234);
    x = 4321;
    ASSERT_OK(mp_value_store(av, &x));
    return 0;
}

MP_TEST(manager_named_objects_and_passed_proxies, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    mp_list *l;
    ASSERT_OK(mp_manager_list(m, "shared-list", &l));
    ASSERT_OK(mp_list_append(l, "from parent", 11));
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "shared-dict", &d));
    ASSERT_OK(mp_dict_add(d, "x", 1, 7, NULL));

    mp_queue *q;
    mp_lock *lk;
    mp_event *e;
    mp_semaphore *s;
    mp_value *v;
    ASSERT_OK(mp_manager_queue(m, "q", 0, &q));
    ASSERT_OK(mp_manager_lock(m, "lk", &lk));
    ASSERT_OK(mp_manager_event(m, "e", &e));
    ASSERT_OK(mp_manager_semaphore(m, "s", 3, &s));
    ASSERT_OK(mp_manager_value(m, "v", MP_INT64, &v));
    ASSERT_TRUE(mp_value_ptr(v) == NULL);
    ASSERT_OK(mp_lock_acquire(lk, 10));
    mp_event_set(e);
    int64_t x = 1234;
    ASSERT_OK(mp_value_store(v, &x));

    mp_args *a = conn_args(m);
    ASSERT_OK(mp_args_add_queue(a, q));
    ASSERT_OK(mp_args_add_lock(a, lk));
    ASSERT_OK(mp_args_add_event(a, e));
    ASSERT_OK(mp_args_add_semaphore(a, s));
    ASSERT_OK(mp_args_add_value(a, v));
    ASSERT_EQ(mp_test_run(ctx, child_named, a), 0);
    mp_args_free(a);

    size_t n = 0;
    ASSERT_OK(mp_list_len(l, &n));
    ASSERT_EQ(n, 2);
    list_expect(l, 1, "from child");
    ASSERT_EQ(dict_int(d, "x"), 8);
    mp_buf b = MP_BUF_INIT;
    ASSERT_OK(mp_queue_get(q, &b, 10));
    ASSERT_EQ(b.len, 7);
    ASSERT_MEMEQ(b.data, "by name", 7);
    ASSERT_OK(mp_queue_get(q, &b, 10));
    ASSERT_MEMEQ(b.data, "by args", 7);
    int sv = 0;
    ASSERT_OK(mp_semaphore_value(s, &sv));
    ASSERT_EQ(sv, 2);
    ASSERT_OK(mp_value_load(v, &x));
    ASSERT_EQ(x, 4321);
    ASSERT_OK(mp_lock_release(lk));

    mp_buf_free(&b);
    mp_queue_free(q);
    mp_lock_free(lk);
    mp_event_free(e);
    mp_semaphore_free(s);
    mp_value_free(v);
    mp_list_free(l);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* ---- queue --------------------------------------------------------------- */

static int child_put_10(const mp_args *a)
{
    mp_queue *q = mp_args_queue(a, 0);
    for (int i = 0; i < 10; i++)
        ASSERT_OK(mp_queue_put(q, &i, sizeof i, 10));
    return 0;
}

MP_TEST(manager_proxy_queue, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    mp_queue *q;
    ASSERT_OK(mp_manager_queue(m, "work", 0, &q));
    mp_buf b = MP_BUF_INIT;
    ASSERT_TRUE(mp_queue_empty(q));
    ASSERT_ERR(MP_EEMPTY, mp_queue_get(q, &b, 0));
    double t0 = now();
    ASSERT_ERR(MP_EEMPTY, mp_queue_get(q, &b, 0.2));
    ASSERT_GE(now() - t0, 0.15);

    mp_args *a = NULL;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_queue(a, q));
    mp_process *p = mp_test_start(ctx, child_put_10, a);
    mp_args_free(a);
    for (int i = 0; i < 10; i++) {
        ASSERT_OK(mp_queue_get(q, &b, 20));
        int x;
        ASSERT_EQ(b.len, sizeof x);
        memcpy(&x, b.data, sizeof x);
        ASSERT_EQ(x, i);
    }
    ASSERT_EQ(mp_test_join(p, 60), 0);
    size_t n = 99;
    ASSERT_OK(mp_queue_qsize(q, &n));
    ASSERT_EQ(n, 0);
    ASSERT_ERR(MP_EINVAL, mp_queue_task_done(q));

    /* maxsize: full, MP_EFULL after the timeout */
    mp_queue *bq;
    ASSERT_OK(mp_manager_queue(m, "bounded", 2, &bq));
    ASSERT_OK(mp_queue_put(bq, "1", 1, 1));
    ASSERT_FALSE(mp_queue_full(bq));
    ASSERT_OK(mp_queue_put(bq, "22", 2, 1));
    ASSERT_TRUE(mp_queue_full(bq));
    ASSERT_OK(mp_queue_qsize(bq, &n));
    ASSERT_EQ(n, 2);
    ASSERT_ERR(MP_EFULL, mp_queue_put(bq, "3", 1, 0));
    t0 = now();
    ASSERT_ERR(MP_EFULL, mp_queue_put(bq, "3", 1, 0.2));
    ASSERT_GE(now() - t0, 0.15);
    /* get_into a too small buffer */
    char small[1];
    size_t len = 0;
    ASSERT_OK(mp_queue_get_into(bq, small, sizeof small, &len, 1));
    ASSERT_EQ(len, 1);
    ASSERT_EQ(small[0], '1');
    ASSERT_ERR(MP_EMSGSIZE, mp_queue_get_into(bq, small, sizeof small, &len, 1));
    ASSERT_EQ(len, 2);
    /* as for a local queue: the message stays queued */
    ASSERT_OK(mp_queue_qsize(bq, &n));
    ASSERT_EQ(n, 1);
    char two[2];
    ASSERT_OK(mp_queue_get_into(bq, two, sizeof two, &len, 1));
    ASSERT_EQ(len, 2);
    ASSERT_TRUE(memcmp(two, "22", 2) == 0);
    ASSERT_TRUE(mp_queue_empty(bq));

    mp_buf_free(&b);
    mp_queue_free(bq);
    mp_queue_free(q);
    mp_manager_free(m);
}

/* ---- lock ---------------------------------------------------------------- */

/* args: addr, key, lock.  200 non-atomic increments under the lock. */
static int child_locked_incr(const mp_args *a)
{
    mp_manager *m = child_connect(a);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "plain", &d));
    mp_lock *l = mp_args_lock(a, 2);
    for (int i = 0; i < 200; i++) {
        ASSERT_OK(mp_lock_acquire(l, 30));
        int64_t x = dict_int(d, "n") + 1;
        ASSERT_OK(mp_dict_set(d, "n", 1, &x, sizeof x));
        ASSERT_OK(mp_lock_release(l));
    }
    mp_dict_free(d);
    mp_manager_free(m);
    return 0;
}

static int child_release_foreign(const mp_args *a)
{
    mp_lock *l = mp_args_lock(a, 0);
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_ERR(MP_EPERM, mp_lock_release(l));
    ASSERT_TRUE(mp_lock_locked(l));
    return 0;
}

MP_TEST(manager_proxy_lock, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_manager *m = start_manager(ctx);
    mp_lock *l;
    ASSERT_OK(mp_manager_lock(m, "lk", &l));
    ASSERT_FALSE(mp_lock_locked(l));
    ASSERT_ERR(MP_EINVAL, mp_lock_release(l));
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_TRUE(mp_lock_locked(l));
    /* not recursive: a second acquire by the owner times out */
    double t0 = now();
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0.2));
    ASSERT_GE(now() - t0, 0.15);

    /* release by another process: MP_EPERM */
    mp_args *a = NULL;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_lock(a, l));
    ASSERT_EQ(mp_test_run(ctx, child_release_foreign, a), 0);
    mp_args_free(a);
    ASSERT_OK(mp_lock_release(l));
    ASSERT_FALSE(mp_lock_locked(l));

    /* mutual exclusion: 4 × 200 read-modify-writes lose nothing */
    a = conn_args(m);
    ASSERT_OK(mp_args_add_lock(a, l));
    mp_process *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = mp_test_start(ctx, child_locked_incr, a);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(mp_test_join(p[i], 60), 0);
    mp_args_free(a);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "plain", &d));
    ASSERT_EQ(dict_int(d, "n"), 800);
    mp_dict_free(d);
    ASSERT_FALSE(mp_lock_locked(l));
    mp_lock_free(l);
    mp_manager_free(m);
}

static void *killer_thread(void *arg)
{
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    kill(*(pid_t *)arg, SIGKILL);
    return NULL;
}

/* args: lock, event.  Take the lock, say so, wait to be killed. */
static int child_hold_lock(const mp_args *a)
{
    mp_lock *l = mp_args_lock(a, 0);
    ASSERT_OK(mp_lock_acquire(l, 30));
    mp_event_set(mp_args_event(a, 1));
    for (;;)
        pause();
}

MP_TEST(manager_lock_owner_killed, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    mp_lock *l;
    mp_event *held;
    ASSERT_OK(mp_manager_lock(m, "lk", &l));
    ASSERT_OK(mp_manager_event(m, "held", &held));
    mp_args *a = NULL;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_lock(a, l));
    ASSERT_OK(mp_args_add_event(a, held));

    /* killed while nobody waits: the next acquire says so */
    mp_process *p = mp_test_start(ctx, child_hold_lock, a);
    ASSERT_OK(mp_event_wait(held, 20));
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(l, 0.05));
    mp_test_kill(p);
    ASSERT_ERR(MP_EOWNERDEAD, mp_lock_acquire(l, 10));
    ASSERT_TRUE(mp_lock_locked(l)); /* and holds it */
    ASSERT_OK(mp_lock_release(l));
    ASSERT_OK(mp_lock_acquire(l, 1)); /* reported once */
    ASSERT_OK(mp_lock_release(l));

    /* killed while the parent waits in acquire */
    mp_event_clear(held);
    p = mp_test_start(ctx, child_hold_lock, a);
    ASSERT_OK(mp_event_wait(held, 20));
    pid_t victim = mp_process_pid(p);
    ASSERT_GT(victim, 0);
    /* a thread kills it while this one blocks in acquire */
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, killer_thread, &victim), 0);
    ASSERT_ERR(MP_EOWNERDEAD, mp_lock_acquire(l, 20));
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(-SIGKILL, mp_test_join(p, 20));
    ASSERT_OK(mp_lock_release(l));
    mp_args_free(a);

    mp_lock_free(l);
    mp_event_free(held);
    mp_manager_free(m);
}

/* ---- event, semaphore, value --------------------------------------------- */

/* args: event go, event done, semaphore, value */
static int child_sync(const mp_args *a)
{
    mp_event *go = mp_args_event(a, 0), *done = mp_args_event(a, 1);
    mp_semaphore *s = mp_args_semaphore(a, 2);
    mp_value *v = mp_args_value(a, 3);
    ASSERT_OK(mp_event_wait(go, 20));
    double x = 0;
    ASSERT_OK(mp_value_load(v, &x));
    ASSERT_TRUE(x == 2.5);
    x = -0.75;
    ASSERT_OK(mp_value_store(v, &x));
    ASSERT_OK(mp_semaphore_release(s));
    ASSERT_OK(mp_semaphore_release(s));
    mp_event_set(done);
    return 0;
}

/* A thread's calls on proxies of a manager that has shut down. */
static void *t_calls_after_shutdown(void *arg)
{
    void **o = arg;
    mp_lock *l = o[0];
    mp_semaphore *s = o[1];
    mp_event *e = o[2];
    int v = 12345;
    ASSERT_ERR(MP_ECLOSED, mp_lock_acquire(l, 0));
    ASSERT_ERR(MP_ECLOSED, mp_lock_acquire(l, 0.1));
    ASSERT_ERR(MP_ECLOSED, mp_lock_release(l));
    ASSERT_FALSE(mp_lock_locked(l));
    ASSERT_ERR(MP_ECLOSED, mp_semaphore_acquire(s, 0));
    ASSERT_ERR(MP_ECLOSED, mp_semaphore_release(s));
    ASSERT_ERR(MP_ECLOSED, mp_semaphore_value(s, &v));
    ASSERT_ERR(MP_ECLOSED, mp_event_set(e));
    ASSERT_ERR(MP_ECLOSED, mp_event_clear(e));
    ASSERT_ERR(MP_ECLOSED, mp_event_wait(e, 0.1));
    ASSERT_FALSE(mp_event_is_set(e));
    return NULL;
}

/* Lock, semaphore and event proxies whose manager has shut down fail with
 * MP_ECLOSED, never a success: on a thread that had its connection (the
 * lock held, the semaphore up, the event set when the server went) and on
 * one that connects afresh. */
MP_TEST(manager_sync_proxies_after_shutdown)
{
    mp_manager *m = start_manager(NULL);
    mp_lock *l;
    mp_semaphore *s;
    mp_event *e;
    ASSERT_OK(mp_manager_lock(m, "l", &l));
    ASSERT_OK(mp_manager_semaphore(m, "s", 3, &s));
    ASSERT_OK(mp_manager_event(m, "e", &e));
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_event_set(e));
    shutdown_via(m);
    void *o[3] = {l, s, e};
    t_calls_after_shutdown(o);
    pthread_t t;
    ASSERT_EQ(0, pthread_create(&t, NULL, t_calls_after_shutdown, o));
    ASSERT_EQ(0, pthread_join(t, NULL));
    mp_lock_free(l);
    mp_semaphore_free(s);
    mp_event_free(e);
    mp_manager_free(m);
}

/* A server that answers every request with status 0 and nothing else,
 * on every connection, until told to stop. */
typedef struct bare_server {
    mp_listener *l;
    int stop[2]; /* a pipe: written to stop */
} bare_server;

static void *bare_serve(void *arg)
{
    bare_server *b = arg;
    enum { MAXC = 8 };
    mp_conn *c[MAXC];
    int n = 0;
    for (;;) {
        struct pollfd pf[MAXC + 2] = {{.fd = b->stop[0], .events = POLLIN},
                                      {.fd = mp_listener_fileno(b->l), .events = POLLIN}};
        for (int i = 0; i < n; i++)
            pf[i + 2] = (struct pollfd){.fd = mp_conn_fileno(c[i]), .events = POLLIN};
        ASSERT_GT(poll(pf, (nfds_t)n + 2, 30000), 0);
        if (pf[0].revents)
            break;
        if (pf[1].revents) {
            ASSERT_LT(n, MAXC);
            ASSERT_OK(mp_listener_accept(b->l, &c[n], 10));
            n++;
        }
        for (int i = 0; i < n; i++) {
            if (pf[i + 2].revents == 0)
                continue;
            mp_args *req = NULL, *rep = NULL;
            if (mp_conn_recv(c[i], &req) < 0) { /* the client hung up */
                mp_conn_close(c[i]);
                c[i] = c[--n];
                break; /* the poll set changed: poll again */
            }
            mp_args_free(req);
            ASSERT_OK(mp_args_of(&rep, "i", 0));
            ASSERT_OK(mp_conn_send(c[i], rep));
            mp_args_free(rep);
        }
    }
    for (int i = 0; i < n; i++)
        mp_conn_close(c[i]);
    return NULL;
}

/* A reply that lacks the number a call returns (a foreign or broken
 * server) is MP_EBADMSG, never a success with 0. */
MP_TEST(manager_proxy_reply_without_its_result)
{
    bare_server b;
    ASSERT_OK(mp_listener_new(&b.l, NULL, KEY, KEYLEN, 4));
    ASSERT_EQ(0, pipe(b.stop));
    pthread_t t;
    ASSERT_EQ(0, pthread_create(&t, NULL, bare_serve, &b));
    mp_manager *m;
    ASSERT_OK(mp_manager_connect(&m, mp_listener_address(b.l), KEY, KEYLEN));
    mp_semaphore *s;
    mp_lock *l;
    mp_event *e;
    ASSERT_OK(mp_manager_semaphore(m, "s", 1, &s));
    ASSERT_OK(mp_manager_lock(m, "l", &l));
    ASSERT_OK(mp_manager_event(m, "e", &e));
    int v = 12345;
    ASSERT_ERR(MP_EBADMSG, mp_semaphore_value(s, &v));
    ASSERT_FALSE(mp_lock_locked(l));
    ASSERT_FALSE(mp_event_is_set(e));
    ASSERT_OK(mp_semaphore_acquire(s, 0)); /* status 0 is all these return */
    ASSERT_OK(mp_lock_release(l));
    mp_semaphore_free(s);
    mp_lock_free(l);
    mp_event_free(e);
    mp_manager_free(m);
    ASSERT_EQ(1, write(b.stop[1], "x", 1));
    ASSERT_EQ(0, pthread_join(t, NULL));
    close(b.stop[0]);
    close(b.stop[1]);
    ASSERT_OK(mp_listener_close(b.l));
}

MP_TEST(manager_proxy_event_semaphore_value, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    mp_event *go, *done;
    mp_semaphore *s;
    mp_value *v;
    ASSERT_OK(mp_manager_event(m, "go", &go));
    ASSERT_OK(mp_manager_event(m, "done", &done));
    ASSERT_OK(mp_manager_semaphore(m, "s", 0, &s));
    ASSERT_OK(mp_manager_value(m, "v", MP_DOUBLE, &v));
    ASSERT_EQ(mp_value_type(v), MP_DOUBLE);
    ASSERT_ERR(MP_EINVAL, mp_manager_value(m, "bad", (mp_type)99, &(mp_value *){NULL}));

    ASSERT_FALSE(mp_event_is_set(go));
    double t0 = now();
    ASSERT_ERR(MP_ETIMEDOUT, mp_event_wait(go, 0.2));
    ASSERT_GE(now() - t0, 0.15);
    ASSERT_ERR(MP_ETIMEDOUT, mp_semaphore_acquire(s, 0));
    double x = 0;
    ASSERT_OK(mp_value_load(v, &x));
    ASSERT_TRUE(x == 0.0);
    x = 2.5;
    ASSERT_OK(mp_value_store(v, &x));

    mp_args *a = NULL;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_event(a, go));
    ASSERT_OK(mp_args_add_event(a, done));
    ASSERT_OK(mp_args_add_semaphore(a, s));
    ASSERT_OK(mp_args_add_value(a, v));
    mp_process *p = mp_test_start(ctx, child_sync, a);
    mp_args_free(a);
    /* the child is blocked in wait; the semaphore blocks us until it releases */
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    mp_event_set(go);
    ASSERT_OK(mp_semaphore_acquire(s, 20));
    ASSERT_OK(mp_event_wait(done, 20));
    ASSERT_OK(mp_semaphore_acquire(s, 1));
    ASSERT_ERR(MP_ETIMEDOUT, mp_semaphore_acquire(s, 0.1));
    int sv = -1;
    ASSERT_OK(mp_semaphore_value(s, &sv));
    ASSERT_EQ(sv, 0);
    ASSERT_OK(mp_value_load(v, &x));
    ASSERT_TRUE(x == -0.75);
    ASSERT_EQ(mp_test_join(p, 60), 0);

    ASSERT_TRUE(mp_event_is_set(go));
    mp_event_clear(go);
    ASSERT_FALSE(mp_event_is_set(go));

    /* other value types round-trip too */
    mp_value *c;
    ASSERT_OK(mp_manager_value(m, "c", MP_UINT8, &c));
    uint8_t u = 200, w = 0;
    ASSERT_OK(mp_value_store(c, &u));
    ASSERT_OK(mp_value_load(c, &w));
    ASSERT_EQ(w, 200);
    mp_value_free(c);

    mp_event_free(go);
    mp_event_free(done);
    mp_semaphore_free(s);
    mp_value_free(v);
    mp_manager_free(m);
}

/* ---- custom types ------------------------------------------------------- */

static int counter_type(void **state, const char *method, const mp_args *in, mp_buf *out)
{
    if (strcmp(method, "__del__") == 0) {
        free(*state);
        *state = NULL;
        return 0;
    }
    if (*state == NULL && (*state = calloc(1, sizeof(int64_t))) == NULL)
        return MP_ENOMEM;
    int64_t *c = *state;
    if (strcmp(method, "add") == 0) {
        if (in == NULL || mp_args_count(in) != 1 || mp_args_type(in, 0) != MP_ARG_INT)
            return MP_EINVAL;
        *c += mp_args_int(in, 0);
        return mp_buf_append(out, c, sizeof *c);
    }
    if (strcmp(method, "get") == 0)
        return mp_buf_append(out, c, sizeof *c);
    if (strcmp(method, "echo") == 0) {
        /* str, bytes, double: all arrive */
        if (in == NULL || mp_args_count(in) != 3 || mp_args_type(in, 0) != MP_ARG_STR ||
            mp_args_type(in, 1) != MP_ARG_BYTES || mp_args_type(in, 2) != MP_ARG_DOUBLE)
            return MP_EINVAL;
        size_t n = 0;
        const void *b = mp_args_bytes(in, 1, &n);
        const char *s = mp_args_str(in, 0);
        int err = mp_buf_append(out, s, strlen(s));
        if (err == 0)
            err = mp_buf_append(out, b, n);
        return err;
    }
    if (strcmp(method, "positive") == 0)
        return 7;
    return MP_ENOENT;
}

static int unused_type(void **state, const char *method, const mp_args *in, mp_buf *out)
{
    (void)state, (void)method, (void)in, (void)out;
    return 0;
}

static int64_t call_int(mp_manager *m, const char *name, const char *method, mp_args *in)
{
    mp_buf out = MP_BUF_INIT;
    ASSERT_OK(mp_manager_call(m, "Counter", name, method, in, &out));
    int64_t x;
    ASSERT_EQ(out.len, sizeof x);
    memcpy(&x, out.data, sizeof x);
    mp_buf_free(&out);
    return x;
}

static int child_counter(const mp_args *a)
{
    mp_manager *m = child_connect(a);
    mp_args *in = NULL;
    ASSERT_OK(mp_args_of(&in, "l", (int64_t)100));
    for (int i = 0; i < 10; i++)
        (void)call_int(m, "c1", "add", in);
    mp_args_free(in);
    mp_manager_free(m);
    return 0;
}

MP_TEST(manager_custom_types, .variants = MP_START_METHODS)
{
    ASSERT_OK(mp_manager_register("Counter", counter_type));
    ASSERT_ERR(MP_EINVAL, mp_manager_register("", counter_type));
    ASSERT_ERR(MP_EINVAL, mp_manager_register("X", NULL));
    mp_manager *m = start_manager(ctx);
    /* registered after start: the server never heard of it */
    ASSERT_OK(mp_manager_register("Late", unused_type));

    mp_args *in = NULL;
    ASSERT_OK(mp_args_of(&in, "l", (int64_t)5));
    ASSERT_EQ(call_int(m, "c1", "add", in), 5);
    ASSERT_EQ(call_int(m, "c1", "add", in), 10);
    ASSERT_EQ(call_int(m, "c2", "add", in), 5); /* another object */
    ASSERT_EQ(call_int(m, "c1", "get", NULL), 10);
    mp_args_free(in);

    mp_args *a = conn_args(m);
    mp_process *p[2];
    for (int i = 0; i < 2; i++)
        p[i] = mp_test_start(ctx, child_counter, a);
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(mp_test_join(p[i], 60), 0);
    mp_args_free(a);
    ASSERT_EQ(call_int(m, "c1", "get", NULL), 2010);

    mp_buf out = MP_BUF_INIT;
    ASSERT_OK(mp_args_of(&in, "sbd", "ab", "\0cd", (size_t)3, 1.5));
    ASSERT_OK(mp_manager_call(m, "Counter", "c1", "echo", in, &out));
    ASSERT_EQ(out.len, 5);
    ASSERT_MEMEQ(out.data, "ab\0cd", 5);
    mp_args_free(in);

    /* a method's own error codes come back */
    ASSERT_ERR(MP_EINVAL, mp_manager_call(m, "Counter", "c1", "add", NULL, &out));
    ASSERT_ERR(MP_ENOENT, mp_manager_call(m, "Counter", "c1", "nosuch", NULL, &out));
    ASSERT_ERR(-7, mp_manager_call(m, "Counter", "c1", "positive", NULL, NULL));
    /* unregistered types */
    ASSERT_ERR(MP_ENOENT, mp_manager_call(m, "NoSuchType", "x", "get", NULL, &out));
    ASSERT_ERR(MP_ENOENT, mp_manager_call(m, "Late", "x", "get", NULL, &out));
    /* descriptors cannot go to the server */
    ASSERT_OK(mp_args_of(&in, "f", 0));
    ASSERT_ERR(MP_EINVAL, mp_manager_call(m, "Counter", "c1", "get", in, &out));
    mp_args_free(in);
    /* and the server is fine */
    ASSERT_EQ(call_int(m, "c1", "get", NULL), 2010);
    mp_buf_free(&out);
    mp_manager_free(m); /* "__del__" frees each state (ASan's leak check in the server) */
}

/* ---- authentication ----------------------------------------------------- */

MP_TEST(manager_wrong_authkey, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    mp_manager *c = NULL;
    ASSERT_ERR(MP_EAUTH, mp_manager_connect(&c, mp_manager_address(m), "wrong", 5));
    ASSERT_TRUE(c == NULL);
    ASSERT_ERR(MP_EAUTH, mp_manager_connect(&c, mp_manager_address(m), KEY, KEYLEN - 1));
    ASSERT_ERR(MP_EINVAL, mp_manager_connect(&c, mp_manager_address(m), "", 0));
    /* a raw client without any key hangs in (or fails) the handshake:
     * it must not be served */
    mp_conn *raw = NULL;
    int err = mp_client(&raw, mp_manager_address(m), "nope", 4);
    ASSERT_ERR(MP_EAUTH, err);
    still_serving(m);
    ASSERT_OK(mp_manager_connect(&c, mp_manager_address(m), KEY, KEYLEN));
    still_serving(c);
    mp_manager_free(c);
    mp_manager_free(m);
}

/* ---- dying clients ------------------------------------------------------ */

static int child_spin_add(const mp_args *a)
{
    mp_manager *m = child_connect(a);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "spin", &d));
    mp_list *l;
    ASSERT_OK(mp_manager_list(m, "spin", &l));
    static char big[64 << 10];
    for (;;) {
        ASSERT_OK(mp_dict_add(d, "n", 1, 1, NULL));
        ASSERT_OK(mp_dict_set(d, "big", 3, big, sizeof big));
        ASSERT_OK(mp_list_append(l, "x", 1));
        ASSERT_OK(mp_list_pop(l, -1, NULL));
    }
}

static int child_blocked_get(const mp_args *a)
{
    mp_buf b = MP_BUF_INIT;
    ASSERT_OK(mp_queue_get(mp_args_queue(a, 0), &b, 60));
    return 0;
}

MP_TEST(manager_client_dies_mid_request, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "spin", &d));
    mp_args *a = conn_args(m);
    for (int round = 0; round < 3; round++) {
        mp_process *p[2];
        for (int i = 0; i < 2; i++)
            p[i] = mp_test_start(ctx, child_spin_add, a);
        int64_t target = dict_int(d, "n") + 200;
        double t0 = now();
        while (dict_int(d, "n") < target)
            ASSERT_LT(now() - t0, 20);
        for (int i = 0; i < 2; i++)
            mp_test_kill(p[i]);
        still_serving(m);
        int64_t n1 = dict_int(d, "n");
        ASSERT_EQ(dict_int(d, "n"), n1); /* nobody left adding */
    }
    mp_args_free(a);

    /* a client that dies blocked in a request (a queue get) */
    mp_queue *q;
    ASSERT_OK(mp_manager_queue(m, "q", 0, &q));
    a = NULL;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_queue(a, q));
    mp_process *p = mp_test_start(ctx, child_blocked_get, a);
    mp_args_free(a);
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    mp_test_kill(p);
    still_serving(m);
    mp_dict_free(d);
    mp_queue_free(q);
    mp_manager_free(m);
}

/* args: queue, lock, semaphore, int which (0 get, 1 acquire, 2 sem
 * acquire, 3 event wait), fd, event.  Says so on @fd, then blocks for good
 * in the request. */
static int child_ready_then_block(const mp_args *a)
{
    int which = (int)mp_args_int(a, 3), fd = mp_args_fd(a, 4);
    ASSERT_EQ(1, write(fd, "r", 1));
    mp_buf b = MP_BUF_INIT;
    int err = which == 0   ? mp_queue_get(mp_args_queue(a, 0), &b, MP_FOREVER)
              : which == 1 ? mp_lock_acquire(mp_args_lock(a, 1), MP_FOREVER)
              : which == 2 ? mp_semaphore_acquire(mp_args_semaphore(a, 2), MP_FOREVER)
                           : mp_event_wait(mp_args_event(a, 5), MP_FOREVER);
    return err == 0 ? 3 : 4; /* never: it is killed first */
}

/* Read the byte a child_ready_then_block writes before it blocks. */
static void await_ready(int fd)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    ASSERT_EQ(1, poll(&pf, 1, 30000));
    char c;
    ASSERT_EQ(1, read(fd, &c, 1));
}

/* What child_ready_then_block waits on, and its ready pipe. */
typedef struct waitables {
    mp_queue *q;
    mp_lock *l;
    mp_semaphore *s;
    mp_event *e;
    int ready[2];
} waitables;

static void waitables_open(mp_manager *m, waitables *w)
{
    ASSERT_OK(mp_manager_queue(m, "q", 0, &w->q));
    ASSERT_OK(mp_manager_lock(m, "l", &w->l));
    ASSERT_OK(mp_manager_semaphore(m, "s", 0, &w->s));
    ASSERT_OK(mp_manager_event(m, "e", &w->e));
    ASSERT_EQ(0, pipe2(w->ready, O_CLOEXEC));
}

/* A child blocked for good in request @which (see child_ready_then_block),
 * once it has said it is about to block. */
static mp_process *start_blocked(mp_context *ctx, waitables *w, int which)
{
    mp_args *a = NULL;
    ASSERT_OK(mp_args_of(&a, "QLSifE", w->q, w->l, w->s, which, w->ready[1], w->e));
    mp_process *p = mp_test_start(ctx, child_ready_then_block, a);
    mp_args_free(a);
    await_ready(w->ready[0]);
    return p;
}

static void waitables_free(waitables *w)
{
    close(w->ready[0]);
    close(w->ready[1]);
    mp_queue_free(w->q);
    mp_lock_free(w->l);
    mp_semaphore_free(w->s);
    mp_event_free(w->e);
}

/* A client killed while blocked in a get, a lock acquire or a semaphore
 * acquire takes nothing with it: what is put (released) right after the
 * kill, even while the dead client's request is still being served, goes
 * to a live client.  (Python's manager loses such messages: the server
 * takes them for the dead client and drops them when the reply fails.) */
MP_TEST(manager_killed_waiter_takes_nothing, .variants = MP_START_METHODS, .timeout_s = 120)
{
    mp_manager *m = start_manager(ctx);
    waitables w;
    waitables_open(m, &w);
    mp_queue *q = w.q;
    mp_lock *l = w.l;
    mp_semaphore *s = w.s;
    mp_buf b = MP_BUF_INIT;
    for (int round = 0; round < 60; round++) {
        int which = round % 3;
        if (which == 1)
            ASSERT_OK(mp_lock_acquire(l, 0)); /* the child waits for it */
        mp_process *p = start_blocked(ctx, &w, which);
        /* its request reaches the server (in most rounds: the window
         * varies), then the kill, then at once what it was waiting for */
        struct timespec ts = {0, (5 + round % 7 * 5) * 1000 * 1000};
        nanosleep(&ts, NULL);
        ASSERT_OK(mp_process_kill(p));
        int64_t msg = round;
        if (which == 0)
            ASSERT_OK(mp_queue_put(q, &msg, sizeof msg, 0));
        else if (which == 1)
            ASSERT_OK(mp_lock_release(l));
        else
            ASSERT_OK(mp_semaphore_release(s));
        ASSERT_EQ(-SIGKILL, mp_test_join(p, 30));
        /* a live client gets it: the message, the lock as it was left
         * (not a dead owner's), the semaphore's unit */
        if (which == 0) {
            ASSERT_OK(mp_queue_get(q, &b, 10));
            ASSERT_EQ(sizeof msg, b.len);
            ASSERT_MEMEQ(&msg, b.data, sizeof msg);
            size_t n = 99;
            ASSERT_OK(mp_queue_qsize(q, &n));
            ASSERT_EQ(0, n);
        } else if (which == 1) {
            ASSERT_OK(mp_lock_acquire(l, 10));
            ASSERT_OK(mp_lock_release(l));
        } else {
            ASSERT_OK(mp_semaphore_acquire(s, 10));
            int v = -1;
            ASSERT_OK(mp_semaphore_value(s, &v));
            ASSERT_EQ(0, v);
        }
    }
    mp_buf_free(&b);
    waitables_free(&w);
    mp_manager_free(m);
}

/* ---- malformed requests ------------------------------------------------- */

static mp_args *req_of(const char *fmt, ...)
{
    /* only the shapes used below */
    mp_args *a = NULL;
    ASSERT_OK(mp_args_new(&a));
    va_list ap;
    va_start(ap, fmt);
    for (const char *f = fmt; *f; f++) {
        switch (*f) {
        case 'i':
            ASSERT_OK(mp_args_add_int(a, va_arg(ap, int)));
            break;
        case 'd':
            ASSERT_OK(mp_args_add_double(a, va_arg(ap, double)));
            break;
        case 's':
            ASSERT_OK(mp_args_add_str(a, va_arg(ap, const char *)));
            break;
        case 'b': {
            const void *p = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            ASSERT_OK(mp_args_add_bytes(a, p, n));
            break;
        }
        default:
            MP__FAIL("bad fmt");
        }
    }
    va_end(ap);
    return a;
}

/* The server closed @c (maybe after one error reply). */
static void expect_dropped(mp_conn *c)
{
    ASSERT_EQ(mp_conn_poll(c, 20), 1);
    mp_args *r = NULL;
    int err = mp_conn_recv(c, &r);
    if (err == 0) {
        ASSERT_TRUE(mp_args_count(r) >= 1 && mp_args_type(r, 0) == MP_ARG_INT);
        int64_t st = mp_args_int(r, 0);
        ASSERT_TRUE(st == MP_EBADMSG || st == MP_EMSGSIZE);
        mp_args_free(r);
        ASSERT_EQ(mp_conn_poll(c, 20), 1);
        err = mp_conn_recv(c, &r);
    }
    ASSERT_LT(err, 0);
}

MP_TEST(manager_malformed_requests, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    const char *addr = mp_manager_address(m);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "d", &d));
    ASSERT_OK(mp_dict_set(d, "k", 1, "v", 1));

    /* garbage bytes: an error reply or a closed connection */
    mp_conn *c;
    ASSERT_OK(mp_client(&c, addr, KEY, KEYLEN));
    ASSERT_OK(mp_conn_send_bytes(c, "this is not an mp_args message", 30));
    expect_dropped(c);
    mp_conn_close(c);
    still_serving(m);

    ASSERT_OK(mp_client(&c, addr, KEY, KEYLEN));
    ASSERT_OK(mp_conn_send_bytes(c, "", 0));
    expect_dropped(c);
    mp_conn_close(c);

    /* an oversized frame header: refused before anything is allocated */
    ASSERT_OK(mp_client(&c, addr, KEY, KEYLEN));
    static const uint8_t huge[] = {0x7f, 0xff, 0xff, 0xf0, 'x', 'y'};
    ASSERT_EQ(write(mp_conn_fileno(c), huge, sizeof huge), (ssize_t)sizeof huge);
    expect_dropped(c);
    mp_conn_close(c);
    ASSERT_OK(mp_client(&c, addr, KEY, KEYLEN));
    static const uint8_t huge8[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0};
    ASSERT_EQ(write(mp_conn_fileno(c), huge8, sizeof huge8), (ssize_t)sizeof huge8);
    expect_dropped(c);
    mp_conn_close(c);
    still_serving(m);

    /* a frame cut short, then the client goes */
    ASSERT_OK(mp_client(&c, addr, KEY, KEYLEN));
    static const uint8_t cut[] = {0, 0, 0x10, 0, 'M', 'P'};
    ASSERT_EQ(write(mp_conn_fileno(c), cut, sizeof cut), (ssize_t)sizeof cut);
    mp_conn_close(c);
    still_serving(m);

    /* well-formed mp_args with the wrong shape: an error, and the connection
     * keeps working */
    ASSERT_OK(mp_client(&c, addr, KEY, KEYLEN));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("")));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("i", W_DICT_GET)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("s", "dict")));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("sss", "11", "dict", "d")));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("iis", W_DICT_GET, 3, "d")));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("isd", W_DICT_GET, "dict", 1.0)));
    /* batches: a bad op, a cut key, a SET without its value; none of it
     * runs, not even the valid op in front (the dict's "k" stays "v") */
    static const uint8_t bad_op[] = {9, 1, 0, 0, 0, 0, 0, 0, 0, 'k'};
    static const uint8_t cut_key[] = {3, 1, 0, 0, 0, 0, 0, 0, 0, 'k', 2, 9, 0, 0, 0, 0, 0, 0, 0, 'k'};
    static const uint8_t no_value[] = {1, 1, 0, 0, 0, 0, 0, 0, 0, 'k'};
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_DICT_BATCH, "dict", "d", bad_op, sizeof bad_op)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_DICT_BATCH, "dict", "d", cut_key, sizeof cut_key)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_DICT_BATCH, "dict", "d", no_value, sizeof no_value)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("iss", W_DICT_BATCH, "dict", "d")));
    mp_buf kv = MP_BUF_INIT;
    ASSERT_OK(mp_dict_get(d, "k", 1, &kv));
    ASSERT_EQ(kv.len, 1);
    ASSERT_MEMEQ(kv.data, "v", 1);
    mp_buf_free(&kv);
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("iss", W_DICT_GET, "dict", "d")));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issi", W_DICT_GET, "dict", "d", 5)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("isss", W_DICT_GET, "dict", "d", "k")));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_DICT_SET, "dict", "d", "k", (size_t)1)));
    ASSERT_ERR(MP_EBADMSG,
               mp_test_rpc(c, req_of("issbs", W_DICT_ADD, "dict", "d", "k", (size_t)1, "one")));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_LIST_APPEND, "dict", "d", "x", (size_t)1)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_Q_PUT, "dict", "d", "x", (size_t)1)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issd", W_LOCK_ACQ, "dict", "d", 0.0)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_VAL_STORE, "dict", "d", "x", (size_t)1)));
    ASSERT_ERR(MP_EBADMSG,
               mp_test_rpc(c, req_of("isssb", W_CALL, "dict", "d", "m", "x", (size_t)1)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("iss", 9999, "dict", "d")));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("iss", -1, "dict", "d")));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("iss", 0, "dict", "d")));
    /* unknown kinds, bad parameters */
    ASSERT_ERR(MP_ENOENT, mp_test_rpc(c, req_of("iss", W_OPEN, "nosuchkind", "x")));
    ASSERT_ERR(MP_ENOENT, mp_test_rpc(c, req_of("iss", W_DICT_GET, "", "")));
    ASSERT_ERR(MP_EINVAL, mp_test_rpc(c, req_of("issi", W_OPEN, "queue", "negq", -1)));
    ASSERT_ERR(MP_EINVAL, mp_test_rpc(c, req_of("issi", W_OPEN, "value", "badv", 1000)));
    ASSERT_OK(mp_test_rpc(c, req_of("issi", W_OPEN, "value", "v8", (int)MP_INT64)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_VAL_STORE, "value", "v8", "xyz", (size_t)3)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("isssb", W_CALL, "value", "v8", "m", "", (size_t)0)));
    /* odd timeouts do not hang the server thread for long */
    ASSERT_OK(mp_test_rpc(c, req_of("issi", W_OPEN, "semaphore", "s0", 0)));
    ASSERT_ERR(MP_ETIMEDOUT, mp_test_rpc(c, req_of("issd", W_SEM_ACQ, "semaphore", "s0", 0.0)));
    ASSERT_ERR(MP_ETIMEDOUT, mp_test_rpc(c, req_of("issd", W_SEM_ACQ, "semaphore", "s0", 1e-9)));
    ASSERT_ERR(MP_ETIMEDOUT, mp_test_rpc(c, req_of("issd", W_SEM_ACQ, "semaphore", "s0", 0.01)));
    /* the good request still works on the same connection */
    ASSERT_ERR(MP_ENOENT, mp_test_rpc(c, req_of("issb", W_DICT_GET, "dict", "d", "nope", (size_t)4)));
    ASSERT_OK(mp_test_rpc(c, req_of("issb", W_DICT_GET, "dict", "d", "k", (size_t)1)));
    ASSERT_ERR(MP_EINVAL, mp_test_rpc(c, req_of("issi", W_LIST_GET, "list", "l", 0)));
    /* a custom call's encoded arguments that are not an mp_args */
    mp_conn_close(c);
    still_serving(m);

    mp_buf v = MP_BUF_INIT;
    ASSERT_OK(mp_dict_get(d, "k", 1, &v));
    ASSERT_MEMEQ(v.data, "v", 1);
    mp_buf_free(&v);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* Requests above MAX_REQUEST are refused from the frame header: the server
 * replies MP_EBADMSG and drops the client at once, without waiting for (or
 * allocating) the body; it goes on serving the others. */
MP_TEST(manager_request_too_large, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    const char *addr = mp_manager_address(m);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "d", &d));
    ASSERT_OK(mp_dict_set(d, "k", 1, "v", 1));
    mp_conn *other;
    ASSERT_OK(mp_client(&other, addr, KEY, KEYLEN));
    ASSERT_OK(mp_test_rpc(other, req_of("issb", W_DICT_GET, "dict", "d", "k", (size_t)1)));

    uint32_t n = (uint32_t)MP__MANAGER_MAX_REQUEST + 1;
    uint8_t normal[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    uint64_t n8 = (uint64_t)MP__MANAGER_MAX_REQUEST + 1;
    uint8_t large[12] = {0xff, 0xff, 0xff, 0xff};
    for (int i = 0; i < 8; i++)
        large[4 + i] = (uint8_t)(n8 >> (56 - 8 * i));
    const struct {
        const uint8_t *p;
        size_t n;
    } heads[] = {{normal, sizeof normal}, {large, sizeof large}};
    for (size_t i = 0; i < 2; i++) {
        mp_conn *c;
        ASSERT_OK(mp_client(&c, addr, KEY, KEYLEN));
        ASSERT_EQ(write(mp_conn_fileno(c), heads[i].p, heads[i].n), (ssize_t)heads[i].n);
        /* only the header: a server waiting for the body would never answer */
        double t0 = now();
        expect_dropped(c);
        ASSERT_LT(now() - t0, 10.0);
        mp_conn_close(c);
    }
    /* a request of exactly the limit's header is not refused from it: the
     * server waits for its body (here it never comes) */
    mp_conn *c;
    ASSERT_OK(mp_client(&c, addr, KEY, KEYLEN));
    n = (uint32_t)MP__MANAGER_MAX_REQUEST;
    uint8_t at[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    ASSERT_EQ(write(mp_conn_fileno(c), at, sizeof at), (ssize_t)sizeof at);
    ASSERT_EQ(mp_conn_poll(c, 0.3), 0);
    mp_conn_close(c);

    ASSERT_OK(mp_test_rpc(other, req_of("issb", W_DICT_GET, "dict", "d", "k", (size_t)1)));
    mp_conn_close(other);
    still_serving(m);

    /* our own clients do not send one: MP_EMSGSIZE, and the connection
     * (the manager's, a proxy's) goes on working */
    size_t big = MP__MANAGER_MAX_REQUEST;
    char *p = calloc(1, big);
    ASSERT_TRUE(p != NULL);
    ASSERT_ERR(MP_EMSGSIZE, mp_dict_set(d, "big", 3, p, big));
    mp_buf v = MP_BUF_INIT;
    ASSERT_OK(mp_dict_get(d, "k", 1, &v));
    ASSERT_MEMEQ(v.data, "v", 1);
    ASSERT_ERR(MP_ENOENT, mp_dict_get(d, "big", 3, &v));
    mp_queue *q;
    ASSERT_OK(mp_manager_queue(m, "q", 0, &q));
    ASSERT_ERR(MP_EMSGSIZE, mp_queue_put(q, p, big, 10));
    ASSERT_OK(mp_queue_put(q, "small", 5, 10));
    ASSERT_OK(mp_queue_get(q, &v, 10));
    ASSERT_EQ(v.len, 5);
    free(p);
    mp_buf_free(&v);
    mp_queue_free(q);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* Every operation is checked against the ops its object's kind exposes
 * (one table in the server): an event op on a dict, a lock op on a queue,
 * a semaphore op on an event ... are MP_EBADMSG and change nothing. */
MP_TEST(manager_ops_checked_against_kind, .variants = MP_START_METHODS)
{
    ASSERT_OK(mp_manager_register("Counter", counter_type));
    mp_manager *m = start_manager(ctx);
    const char *addr = mp_manager_address(m);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "d", &d));
    ASSERT_OK(mp_dict_set(d, "k", 1, "v", 1));
    mp_queue *q;
    ASSERT_OK(mp_manager_queue(m, "q", 0, &q));
    ASSERT_OK(mp_queue_put(q, "item", 4, 10));
    mp_event *e;
    ASSERT_OK(mp_manager_event(m, "e", &e));
    mp_lock *l;
    ASSERT_OK(mp_manager_lock(m, "l", &l));
    mp_semaphore *sem;
    ASSERT_OK(mp_manager_semaphore(m, "s", 1, &sem));
    mp_args *in = NULL;
    ASSERT_OK(mp_args_of(&in, "l", (int64_t)5));
    ASSERT_EQ(call_int(m, "c1", "add", in), 5);
    mp_args_free(in);

    mp_conn *c;
    ASSERT_OK(mp_client(&c, addr, KEY, KEYLEN));
    static const struct {
        int op;
        const char *kind, *name;
    } wrong[] = {
        {W_EV_SET, "dict", "d"},      {W_EV_ISSET, "dict", "d"},     {W_SEM_REL, "dict", "d"},
        {W_SEM_VALUE, "dict", "d"},   {W_LOCK_LOCKED, "dict", "d"},  {W_LOCK_LOCKED, "queue", "q"},
        {W_LOCK_REL, "queue", "q"},   {W_SEM_REL, "event", "e"},     {W_SEM_ACQ, "event", "e"},
        {W_EV_SET, "lock", "l"},      {W_EV_WAIT, "lock", "l"},      {W_SEM_REL, "lock", "l"},
        {W_EV_SET, "semaphore", "s"}, {W_LOCK_ACQ, "semaphore", "s"}, {W_EV_SET, "Counter", "c1"},
        {W_SEM_REL, "Counter", "c1"}, {W_DICT_GET, "Counter", "c1"}, {W_LOCK_LOCKED, "event", "e"},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        int st = mp_test_rpc(c, req_of("issd", wrong[i].op, wrong[i].kind, wrong[i].name, 0.0));
        if (st != MP_EBADMSG)
            MP__FAIL("op %d on %s: %d (%s)", wrong[i].op, wrong[i].kind, st, mp_errname(st));
    }
    /* the right kind still works on the same connection */
    ASSERT_OK(mp_test_rpc(c, req_of("iss", W_EV_SET, "event", "e")));
    ASSERT_OK(mp_test_rpc(c, req_of("iss", W_SEM_REL, "semaphore", "s")));
    mp_conn_close(c);

    /* nothing changed where the op was refused */
    size_t n = 0;
    ASSERT_OK(mp_dict_len(d, &n));
    ASSERT_EQ(n, 1);
    mp_buf v = MP_BUF_INIT;
    ASSERT_OK(mp_dict_get(d, "k", 1, &v));
    ASSERT_EQ(v.len, 1);
    ASSERT_MEMEQ(v.data, "v", 1);
    size_t qn = 0;
    ASSERT_OK(mp_queue_qsize(q, &qn));
    ASSERT_EQ(qn, 1);
    ASSERT_OK(mp_queue_get(q, &v, 10));
    ASSERT_EQ(v.len, 4);
    mp_buf_free(&v);
    ASSERT_OK(mp_lock_acquire(l, 0)); /* free, and a lock: not an event */
    ASSERT_OK(mp_lock_release(l));
    ASSERT_TRUE(mp_event_is_set(e)); /* set above, by its own op */
    int sv = -1;
    ASSERT_OK(mp_semaphore_value(sem, &sv));
    ASSERT_EQ(sv, 2); /* 1 + the one good release */
    ASSERT_EQ(call_int(m, "c1", "get", NULL), 5);

    mp_semaphore_free(sem);
    mp_lock_free(l);
    mp_event_free(e);
    mp_queue_free(q);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* ---- handshakes: idle and trickling peers ---------------------------------- */

/* Connect a raw unix socket to a manager at "unix:/path"; no handshake. */
static int raw_connect(const char *addr)
{
    ASSERT_TRUE(strncmp(addr, "unix:/", 6) == 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    ASSERT_LT(strlen(addr + 5), sizeof un.sun_path);
    strcpy(un.sun_path, addr + 5);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(0, connect(fd, (struct sockaddr *)&un, sizeof un));
    return fd;
}

/* Entries in /proc/@pid/@what (descriptors or threads of the server). */
static int proc_count(pid_t pid, const char *what)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, what);
    DIR *dir = opendir(path);
    ASSERT_TRUE(dir != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        n += e->d_name[0] != '.';
    closedir(dir);
    return n;
}

/* Wait (up to @secs) until the server has @fds descriptors and @threads
 * threads again. */
static void server_back_to(pid_t pid, int fds, int threads, double secs)
{
    double until = now() + secs;
    while (proc_count(pid, "fd") != fds || proc_count(pid, "task") != threads) {
        if (now() > until)
            MP__FAIL("server: %d fds, %d threads; %d and %d expected", proc_count(pid, "fd"),
                     proc_count(pid, "task"), fds, threads);
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Read @fd until the server closes it: the bytes it sent first. */
static size_t read_until_closed(int fd, double secs)
{
    size_t got = 0;
    double until = now() + secs;
    for (;;) {
        double left = until - now();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ASSERT_EQ(1, poll(&p, 1, left > 0 ? (int)(left * 1000) + 1 : 0));
        char buf[256];
        ssize_t r = read(fd, buf, sizeof buf);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return got;
        ASSERT_GT(r, 0);
        got += (size_t)r;
    }
}

#define N_IDLE 50
#define N_TRICKLE 50

typedef struct trickle {
    pthread_t tid;
    int fds[N_TRICKLE];
    _Atomic bool stop;
} trickle;

/* One byte of a handshake answer on each trickling peer every 150 ms. */
static void *trickle_main(void *arg)
{
    trickle *t = arg;
    static const uint8_t answer[] = {0, 0, 0, 40, '{', 's', 'h', 'a', '2', '5', '6', '}'};
    for (size_t k = 0; !atomic_load(&t->stop); k++) {
        uint8_t b = k < sizeof answer ? answer[k] : (uint8_t)k;
        for (int i = 0; i < N_TRICKLE; i++)
            IGNORE_RESULT(send(t->fds[i], &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT));
        struct timespec ts = {0, 150 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Peers that connect and say nothing, or trickle a byte at a time, hold
 * only their own handshake: a real client is served at once, and the server
 * drops them after its handshake deadline (MP__HANDSHAKE_TIMEOUT), leaking
 * neither descriptors nor threads. */
MP_TEST(manager_idle_peers_do_not_block, .timeout_s = 60)
{
    mp_manager *m = start_manager(ctx);
    const char *addr = mp_manager_address(m);
    pid_t pid = mp_manager_pid(m);
    still_serving(m);
    int fds0 = proc_count(pid, "fd"), threads0 = proc_count(pid, "task");

    int idle[N_IDLE];
    trickle t;
    atomic_store(&t.stop, false);
    double t0 = now();
    for (int i = 0; i < N_IDLE; i++)
        idle[i] = raw_connect(addr);
    for (int i = 0; i < N_TRICKLE; i++)
        t.fds[i] = raw_connect(addr);
    ASSERT_EQ(0, pthread_create(&t.tid, NULL, trickle_main, &t));

    /* a real client, behind all of them */
    double t1 = now();
    mp_manager *m2 = NULL;
    ASSERT_OK(mp_manager_connect(&m2, addr, KEY, KEYLEN));
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m2, "d", &d));
    ASSERT_OK(mp_dict_set(d, "k", 1, "v", 1));
    double took = now() - t1;
    mp_dict_free(d);
    mp_manager_free(m2);
    if (took > 2.5)
        MP__FAIL("a client behind %d idle peers took %.2f s", N_IDLE + N_TRICKLE, took);

    /* every peer got its challenge, then the server hung up: the idle ones
     * and the trickling ones alike, after the one deadline */
    for (int i = 0; i < N_IDLE; i++)
        ASSERT_EQ(read_until_closed(idle[i], MP__HANDSHAKE_TIMEOUT + 20), 4 + 11 + 8 + 40);
    for (int i = 0; i < N_TRICKLE; i++)
        ASSERT_EQ(read_until_closed(t.fds[i], 20), 4 + 11 + 8 + 40);
    double dropped = now() - t0;
    ASSERT_GE(dropped, MP__HANDSHAKE_TIMEOUT - 1.0);
    ASSERT_LT(dropped, MP__HANDSHAKE_TIMEOUT + 20);
    atomic_store(&t.stop, true);
    ASSERT_EQ(0, pthread_join(t.tid, NULL));
    for (int i = 0; i < N_IDLE; i++)
        close(idle[i]);
    for (int i = 0; i < N_TRICKLE; i++)
        close(t.fds[i]);
    server_back_to(pid, fds0, threads0, 20);
    still_serving(m);
    mp_manager_free(m);
}

/* A client killed while it waits — for a message, a lock, a semaphore, an
 * event that is never set — leaves no thread or descriptor behind on the
 * server: each wait ends soon after its client hangs up. */
MP_TEST(manager_dead_waiters_leave_nothing_behind, .variants = MP_START_METHODS,
        .timeout_s = 60)
{
    mp_manager *m = start_manager(ctx);
    pid_t pid = mp_manager_pid(m);
    waitables w;
    waitables_open(m, &w);
    ASSERT_OK(mp_lock_acquire(w.l, 0)); /* held here for good */
    ASSERT_FALSE(mp_event_is_set(w.e)); /* every proxy connected */
    size_t n;
    ASSERT_OK(mp_queue_qsize(w.q, &n));
    int v;
    ASSERT_OK(mp_semaphore_value(w.s, &v));
    still_serving(m);
    int fds0 = proc_count(pid, "fd"), threads0 = proc_count(pid, "task");
    mp_process *p[4];
    for (int which = 0; which < 4; which++)
        p[which] = start_blocked(ctx, &w, which);
    struct timespec ts = {0, 100 * 1000 * 1000}; /* their requests arrive */
    nanosleep(&ts, NULL);
    ASSERT_GT(proc_count(pid, "task"), threads0);
    for (int which = 0; which < 4; which++)
        mp_test_kill(p[which]);
    server_back_to(pid, fds0, threads0, 10);
    ASSERT_OK(mp_lock_release(w.l));
    still_serving(m);
    waitables_free(&w);
    mp_manager_free(m);
}

/* At most MP__MANAGER_MAX_PENDING connections wait in their handshake; one
 * more is closed at once, without a challenge.  Once they go, clients are
 * taken again. */
MP_TEST(manager_pending_handshakes_capped, .timeout_s = 60)
{
    mp_manager *m = start_manager(ctx);
    const char *addr = mp_manager_address(m);
    pid_t pid = mp_manager_pid(m);
    still_serving(m);
    int fds0 = proc_count(pid, "fd"), threads0 = proc_count(pid, "task");

    enum { N = MP__MANAGER_MAX_PENDING };
    int *peers = calloc(N, sizeof *peers);
    ASSERT_TRUE(peers != NULL);
    for (int i = 0; i < N; i++)
        peers[i] = raw_connect(addr);
    /* each pending one got its challenge: the server has taken them all */
    for (int i = 0; i < N; i++) {
        struct pollfd p = {.fd = peers[i], .events = POLLIN};
        ASSERT_EQ(1, poll(&p, 1, 20000));
    }
    int extra = raw_connect(addr);
    double t0 = now();
    ASSERT_EQ(read_until_closed(extra, 10), 0); /* no challenge: closed at once */
    ASSERT_LT(now() - t0, MP__HANDSHAKE_TIMEOUT - 1.0);
    close(extra);
    /* the pending ones hang up: their handshakes end, and clients come in */
    for (int i = 0; i < N; i++)
        close(peers[i]);
    free(peers);
    server_back_to(pid, fds0, threads0, 20);
    mp_manager *m2 = NULL;
    ASSERT_OK(mp_manager_connect(&m2, addr, KEY, KEYLEN));
    still_serving(m2);
    mp_manager_free(m2);
    still_serving(m);
    mp_manager_free(m);
}

/* ---- remote: a server process on TCP, clients by address ---------------- */

static int child_serve_tcp(const mp_args *a)
{
    size_t kl = 0;
    const void *k = mp_args_bytes(a, 1, &kl);
    return mp_manager_serve(mp_args_str(a, 0), k, kl) == 0 ? 0 : 3;
}

static int child_tcp_producer(const mp_args *a)
{
    mp_manager *m = child_connect(a);
    ASSERT_TRUE(strncmp(mp_args_str(a, 0), "tcp:127.0.0.1:", 14) == 0);
    mp_queue *q;
    ASSERT_OK(mp_manager_queue(m, "jobs", 0, &q));
    for (int64_t i = 1; i <= 50; i++)
        ASSERT_OK(mp_queue_put(q, &i, sizeof i, 10));
    int64_t stop = 0;
    ASSERT_OK(mp_queue_put(q, &stop, sizeof stop, 10));
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "meta", &d));
    ASSERT_OK(mp_dict_set(d, "producer", 8, "done", 4));
    mp_dict_free(d);
    mp_queue_free(q);
    mp_manager_free(m);
    return 0;
}

static int child_tcp_consumer(const mp_args *a)
{
    mp_manager *m = child_connect(a);
    mp_queue *q;
    ASSERT_OK(mp_manager_queue(m, "jobs", 0, &q));
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "meta", &d));
    mp_buf b = MP_BUF_INIT;
    for (;;) {
        ASSERT_OK(mp_queue_get(q, &b, 30));
        int64_t x;
        ASSERT_EQ(b.len, sizeof x);
        memcpy(&x, b.data, sizeof x);
        if (x == 0)
            break;
        ASSERT_OK(mp_dict_add(d, "sum", 3, x, NULL));
    }
    /* a proxy from the args, connected over TCP */
    mp_lock *l = mp_args_lock(a, 2);
    ASSERT_OK(mp_lock_acquire(l, 10));
    ASSERT_OK(mp_lock_release(l));
    mp_buf_free(&b);
    mp_dict_free(d);
    mp_queue_free(q);
    mp_manager_free(m);
    return 0;
}

static char *free_tcp_address(void)
{
    mp_listener *l;
    ASSERT_OK(mp_listener_new(&l, "tcp:127.0.0.1:0", NULL, 0, 1));
    char *s = strdup(mp_listener_address(l));
    ASSERT_OK(mp_listener_close(l));
    return s;
}

MP_TEST(manager_remote_tcp, .variants = MP_START_METHODS, .timeout_s = 60)
{
    static const uint8_t rkey[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                     17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
    /* mp_manager_serve in its own process on a fixed port */
    char *addr = free_tcp_address();
    mp_args *sa = NULL;
    ASSERT_OK(mp_args_new(&sa));
    ASSERT_OK(mp_args_add_str(sa, addr));
    ASSERT_OK(mp_args_add_bytes(sa, rkey, sizeof rkey));
    mp_process *server = mp_test_start(ctx, child_serve_tcp, sa);
    mp_args_free(sa);
    mp_manager *m = NULL;
    double t0 = now();
    int err;
    while ((err = mp_manager_connect(&m, addr, rkey, sizeof rkey)) != 0) {
        ASSERT_LT(now() - t0, 20);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ASSERT_EQ(mp_manager_pid(m), 0);
    ASSERT_ERR(MP_EAUTH, mp_manager_connect(&(mp_manager *){NULL}, addr, KEY, KEYLEN));

    mp_lock *l;
    ASSERT_OK(mp_manager_lock(m, "tcp-lock", &l));
    mp_args *a = NULL;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_str(a, addr));
    ASSERT_OK(mp_args_add_bytes(a, rkey, sizeof rkey));
    ASSERT_OK(mp_args_add_lock(a, l));
    mp_process *cons = mp_test_start(ctx, child_tcp_consumer, a);
    mp_process *prod = mp_test_start(ctx, child_tcp_producer, a);
    ASSERT_EQ(mp_test_join(prod, 60), 0);
    ASSERT_EQ(mp_test_join(cons, 60), 0);
    mp_args_free(a);

    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "meta", &d));
    ASSERT_EQ(dict_int(d, "sum"), 50 * 51 / 2);
    mp_buf v = MP_BUF_INIT;
    ASSERT_OK(mp_dict_get(d, "producer", 8, &v));
    ASSERT_MEMEQ(v.data, "done", 4);
    mp_buf_free(&v);
    mp_dict_free(d);
    mp_lock_free(l);

    /* a connected client shuts the serving process down: it exits 0 */
    shutdown_via(m);
    mp_manager_free(m);
    ASSERT_EQ(mp_test_join(server, 60), 0);
    free(addr);

    /* mp_manager_start on TCP port 0: the real port is reported */
    ASSERT_OK(mp_manager_start(&m, ctx, "tcp:127.0.0.1:0", rkey, sizeof rkey));
    const char *ra = mp_manager_address(m);
    ASSERT_TRUE(strncmp(ra, "tcp:127.0.0.1:", 14) == 0);
    ASSERT_GT(atoi(ra + 14), 0);
    a = NULL;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_str(a, ra));
    ASSERT_OK(mp_args_add_bytes(a, rkey, sizeof rkey));
    ASSERT_OK(mp_manager_lock(m, "tcp-lock", &l));
    ASSERT_OK(mp_args_add_lock(a, l));
    cons = mp_test_start(ctx, child_tcp_consumer, a);
    prod = mp_test_start(ctx, child_tcp_producer, a);
    ASSERT_EQ(mp_test_join(prod, 60), 0);
    ASSERT_EQ(mp_test_join(cons, 60), 0);
    mp_args_free(a);
    ASSERT_OK(mp_manager_dict(m, "meta", &d));
    ASSERT_EQ(dict_int(d, "sum"), 50 * 51 / 2);
    mp_dict_free(d);
    mp_lock_free(l);
    mp_manager_free(m);
}

/* ---- restart on the same address --------------------------------------- */

MP_TEST(manager_rapid_restart, .variants = MP_START_METHODS)
{
    char *addr = free_tcp_address();
    for (int i = 0; i < 3; i++) {
        mp_manager *m = NULL;
        ASSERT_OK(mp_manager_start(&m, ctx, addr, KEY, KEYLEN));
        ASSERT_STREQ(mp_manager_address(m), addr);
        still_serving(m);
        mp_manager_free(m);
    }
    free(addr);
}

/* ---- shutdown while clients are blocked in requests --------------------- */

/* Each says so on its fd (args item 3) right before it blocks; the only
 * way out is the server's shutdown: MP_ECLOSED, exit code 10. */
static int blocked_exit(int err)
{
    return err == MP_ECLOSED ? 10 : err == 0 ? 0 : 11;
}

static void say_ready(const mp_args *a)
{
    ASSERT_EQ(1, write(mp_args_fd(a, 3), "r", 1));
}

static int child_put_forever(const mp_args *a)
{
    say_ready(a);
    return blocked_exit(mp_queue_put(mp_args_queue(a, 0), "y", 1, MP_FOREVER));
}

static int child_get_forever(const mp_args *a)
{
    mp_buf b = MP_BUF_INIT;
    say_ready(a);
    int err = mp_queue_get(mp_args_queue(a, 1), &b, MP_FOREVER);
    mp_buf_free(&b);
    return blocked_exit(err);
}

static int child_acquire_forever(const mp_args *a)
{
    say_ready(a);
    return blocked_exit(mp_semaphore_acquire(mp_args_semaphore(a, 2), MP_FOREVER));
}

typedef struct shutdown_job {
    mp_manager *m;
    int err;
} shutdown_job;

static void *shutdown_thread(void *arg)
{
    shutdown_job *j = arg;
    j->err = mp_manager_shutdown(j->m);
    return NULL;
}

/* Python's shutdown ends the server even with requests in flight.  Here:
 * 2 clients blocked in put on a full queue, 2 in get on an empty one, 2 in
 * a semaphore acquire; each ends with MP_ECLOSED, whether its request had
 * reached the server before the shutdown or not. */
MP_TEST(manager_shutdown_with_blocked_clients, .timeout_s = 40)
{
    mp_manager *m = start_manager(NULL);
    mp_queue *full, *empty;
    mp_semaphore *s;
    ASSERT_OK(mp_manager_queue(m, "full", 1, &full));
    ASSERT_OK(mp_queue_put(full, "x", 1, 0));
    ASSERT_OK(mp_manager_queue(m, "empty", 0, &empty));
    ASSERT_OK(mp_manager_semaphore(m, "s", 0, &s));
    int ready[2];
    ASSERT_EQ(0, pipe2(ready, O_CLOEXEC));
    mp_args *a = NULL;
    ASSERT_OK(mp_args_of(&a, "QQSf", full, empty, s, ready[1]));
    mp_target_fn fns[3] = {child_put_forever, child_get_forever, child_acquire_forever};
    mp_process *p[6];
    for (int i = 0; i < 6; i++)
        p[i] = mp_test_start(NULL, fns[i / 2], a);
    mp_args_free(a);
    for (int i = 0; i < 6; i++) /* every one about to block */
        await_ready(ready[0]);

    shutdown_job j = {.m = m};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, shutdown_thread, &j), 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until); /* pthread_timedjoin_np's clock */
    until.tv_sec += 15;
    if (pthread_timedjoin_np(t, NULL, &until) != 0)
        MP__FAIL("mp_manager_shutdown still blocked after 15 s (server %d)",
                 (int)mp_manager_pid(m));
    if (j.err != MP_ECLOSED)
        ASSERT_OK(j.err);
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(10, mp_test_join(p[i], 60));
    close(ready[0]);
    close(ready[1]);
    mp_queue_free(full);
    mp_queue_free(empty);
    mp_semaphore_free(s);
    mp_manager_free(m);
}

/* ---- every dict and list method (issue 17 item 2) ----------------------- */

/* The strings of @list ('|' between them) framed as the API's (native
 * 4-byte lengths); '~' stands for a NUL byte. */
static void frames_of(const char *list, mp_buf *out)
{
    out->len = 0;
    if (list == NULL)
        return;
    for (const char *p = list;;) {
        const char *end = strchr(p, '|');
        uint32_t n = (uint32_t)(end ? (size_t)(end - p) : strlen(p));
        ASSERT_OK(mp_buf_append(out, &n, sizeof n));
        for (uint32_t i = 0; i < n; i++)
            ASSERT_OK(mp_buf_append(out, p[i] == '~' ? "" : &p[i], 1));
        if (end == NULL)
            break;
        p = end + 1;
    }
}

/* The framed strings of @b joined with '|' (NUL as '~'); "" for none, "()" for one empty. */
static char *frames_join(const mp_buf *b)
{
    static char s[4096];
    size_t w = 0, off = 0, count = 0;
    while (off < b->len) {
        uint32_t n;
        ASSERT_LE(off + sizeof n, b->len);
        memcpy(&n, (const char *)b->data + off, sizeof n);
        off += sizeof n;
        ASSERT_LE(off + n, b->len);
        ASSERT_LT(w + n + 2, sizeof s);
        if (count++)
            s[w++] = '|';
        for (uint32_t i = 0; i < n; i++) {
            char ch = ((const char *)b->data)[off + i];
            s[w++] = ch == '\0' ? '~' : ch;
        }
        off += n;
    }
    s[w] = '\0';
    if (count == 1 && w == 0)
        return strcpy(s, "()");
    return s;
}

static void dict_expect(mp_dict *d, const char *items)
{
    mp_buf b = MP_BUF_INIT;
    ASSERT_OK(mp_dict_items(d, &b));
    ASSERT_STREQ(frames_join(&b), items);
    mp_buf_free(&b);
}

static void dict_set_s(mp_dict *d, const char *k, const char *v)
{
    ASSERT_OK(mp_dict_set(d, k, strlen(k), v, strlen(v)));
}

MP_TEST(manager_dict_methods, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "d", &d));
    mp_buf v = MP_BUF_INIT, k = MP_BUF_INIT, f = MP_BUF_INIT;
    size_t n;
    bool in = true;

    /* empty */
    dict_expect(d, "");
    ASSERT_OK(mp_dict_values(d, &v));
    ASSERT_EQ(v.len, 0);
    ASSERT_ERR(MP_ENOENT, mp_dict_popitem(d, &k, &v));
    ASSERT_ERR(MP_ENOENT, mp_dict_pop(d, "a", 1, NULL, 0, false, &v));
    ASSERT_OK(mp_dict_contains(d, "a", 1, &in));
    ASSERT_FALSE(in);
    ASSERT_OK(mp_dict_clear(d));

    /* insertion order: an overwrite keeps its place, a re-added key goes last */
    dict_set_s(d, "b", "1");
    dict_set_s(d, "a", "2");
    dict_set_s(d, "c", "3");
    dict_set_s(d, "b", "4");
    dict_expect(d, "b|4|a|2|c|3");
    ASSERT_OK(mp_dict_del(d, "a", 1));
    dict_set_s(d, "a", "5");
    dict_expect(d, "b|4|c|3|a|5");
    ASSERT_OK(mp_dict_keys(d, &k));
    ASSERT_STREQ(frames_join(&k), "b|c|a");
    ASSERT_OK(mp_dict_values(d, &v));
    ASSERT_STREQ(frames_join(&v), "4|3|5");

    /* contains, get with a default */
    ASSERT_OK(mp_dict_contains(d, "c", 1, &in));
    ASSERT_TRUE(in);
    ASSERT_OK(mp_dict_contains(d, "cc", 2, &in));
    ASSERT_FALSE(in);
    ASSERT_OK(mp_dict_get_default(d, "c", 1, "dflt", 4, &v));
    ASSERT_EQ(v.len, 1);
    ASSERT_MEMEQ(v.data, "3", 1);
    ASSERT_OK(mp_dict_get_default(d, "x", 1, "dflt", 4, &v));
    ASSERT_EQ(v.len, 4);
    ASSERT_MEMEQ(v.data, "dflt", 4);
    ASSERT_OK(mp_dict_get_default(d, "x", 1, NULL, 0, &v));
    ASSERT_EQ(v.len, 0);
    ASSERT_OK(mp_dict_contains(d, "x", 1, &in));
    ASSERT_FALSE(in); /* get never stores */

    /* pop: the value, or the default, or MP_ENOENT; nothing else moves */
    ASSERT_OK(mp_dict_pop(d, "c", 1, NULL, 0, false, &v));
    ASSERT_EQ(v.len, 1);
    ASSERT_MEMEQ(v.data, "3", 1);
    dict_expect(d, "b|4|a|5");
    ASSERT_ERR(MP_ENOENT, mp_dict_pop(d, "c", 1, NULL, 0, false, &v));
    ASSERT_OK(mp_dict_pop(d, "c", 1, "none", 4, true, &v));
    ASSERT_EQ(v.len, 4);
    ASSERT_MEMEQ(v.data, "none", 4);
    ASSERT_OK(mp_dict_pop(d, "c", 1, "", 0, true, &v));
    ASSERT_EQ(v.len, 0);
    ASSERT_OK(mp_dict_pop(d, "b", 1, "none", 4, true, NULL)); /* present: the default unused */
    dict_expect(d, "a|5");
    ASSERT_ERR(MP_EINVAL, mp_dict_pop(d, "a", 1, NULL, 3, true, &v));

    /* setdefault: stores only when absent; gives what is there */
    ASSERT_OK(mp_dict_setdefault(d, "a", 1, "zz", 2, &v));
    ASSERT_EQ(v.len, 1);
    ASSERT_MEMEQ(v.data, "5", 1);
    ASSERT_OK(mp_dict_setdefault(d, "n\0l", 3, "zz", 2, &v));
    ASSERT_EQ(v.len, 2);
    ASSERT_MEMEQ(v.data, "zz", 2);
    ASSERT_OK(mp_dict_setdefault(d, "e", 1, "", 0, NULL));
    dict_expect(d, "a|5|n~l|zz|e|");

    /* update: many pairs; an existing key keeps its place, a later
     * duplicate wins; a malformed buffer changes nothing */
    frames_of("x|1|a|6|y|~|x|7", &f);
    ASSERT_OK(mp_dict_update(d, f.data, f.len));
    dict_expect(d, "a|6|n~l|zz|e||x|7|y|~");
    frames_of("p|1|q", &f); /* a key without its value */
    ASSERT_ERR(MP_EINVAL, mp_dict_update(d, f.data, f.len));
    frames_of("p|1", &f);
    ASSERT_ERR(MP_EINVAL, mp_dict_update(d, f.data, f.len - 1)); /* cut short */
    ASSERT_ERR(MP_EINVAL, mp_dict_update(d, f.data, 3));
    ASSERT_ERR(MP_EINVAL, mp_dict_update(d, NULL, 4));
    ASSERT_OK(mp_dict_update(d, NULL, 0));
    dict_expect(d, "a|6|n~l|zz|e||x|7|y|~");

    /* popitem: newest first (LIFO) */
    ASSERT_OK(mp_dict_popitem(d, &k, &v));
    ASSERT_EQ(k.len, 1);
    ASSERT_MEMEQ(k.data, "y", 1);
    ASSERT_EQ(v.len, 1);
    ASSERT_MEMEQ(v.data, "\0", 1);
    ASSERT_OK(mp_dict_popitem(d, &k, NULL));
    ASSERT_MEMEQ(k.data, "x", 1);
    ASSERT_OK(mp_dict_popitem(d, NULL, &v));
    ASSERT_EQ(v.len, 0); /* "e" */
    dict_expect(d, "a|6|n~l|zz");

    /* copy: into another dict on the server, whose old entries go */
    mp_dict *d2;
    ASSERT_OK(mp_manager_dict(m, "d2", &d2));
    dict_set_s(d2, "old", "gone");
    dict_set_s(d2, "a", "old a");
    ASSERT_OK(mp_dict_copy(d, "d2"));
    dict_expect(d2, "a|6|n~l|zz");
    dict_set_s(d, "a", "7"); /* a copy, not a view */
    dict_expect(d2, "a|6|n~l|zz");
    ASSERT_OK(mp_dict_copy(d, "d")); /* itself: unchanged */
    dict_expect(d, "a|7|n~l|zz");
    ASSERT_OK(mp_dict_copy(d, "fresh")); /* made on first use */
    mp_dict *d3;
    ASSERT_OK(mp_manager_dict(m, "fresh", &d3));
    dict_expect(d3, "a|7|n~l|zz");
    ASSERT_ERR(MP_EINVAL, mp_dict_copy(d, NULL));

    /* clear; then a copy of an empty dict empties the destination */
    ASSERT_OK(mp_dict_clear(d));
    ASSERT_OK(mp_dict_len(d, &n));
    ASSERT_EQ(n, 0);
    dict_expect(d, "");
    dict_set_s(d, "after", "clear");
    dict_expect(d, "after|clear");
    ASSERT_OK(mp_dict_clear(d));
    ASSERT_OK(mp_dict_copy(d, "d2"));
    dict_expect(d2, "");
    ASSERT_OK(mp_dict_len(d2, &n));
    ASSERT_EQ(n, 0);

    /* many keys: order survives the table's growth, popitem unwinds it */
    for (int i = 0; i < 300; i++)
        ASSERT_OK(mp_dict_set(d, &i, sizeof i, &i, sizeof i));
    for (int i = 299; i >= 0; i--) {
        ASSERT_OK(mp_dict_popitem(d, &k, &v));
        ASSERT_EQ(k.len, sizeof i);
        ASSERT_MEMEQ(k.data, &i, sizeof i);
    }
    ASSERT_ERR(MP_ENOENT, mp_dict_popitem(d, &k, &v));

    ASSERT_ERR(MP_EINVAL, mp_dict_items(NULL, &v));
    ASSERT_ERR(MP_EINVAL, mp_dict_items(d, NULL));
    ASSERT_ERR(MP_EINVAL, mp_dict_contains(d, "a", 1, NULL));
    mp_buf_free(&v);
    mp_buf_free(&k);
    mp_buf_free(&f);
    mp_dict_free(d3);
    mp_dict_free(d2);
    mp_dict_free(d);
    mp_manager_free(m);
}

static void list_expect_all(mp_list *l, const char *items)
{
    mp_buf b = MP_BUF_INIT;
    ASSERT_OK(mp_list_get_slice(l, 0, INT64_MAX, 1, &b));
    ASSERT_STREQ(frames_join(&b), items);
    mp_buf_free(&b);
}

/* Make @l hold exactly the strings of @items ('|' between them). */
static void list_fill(mp_list *l, const char *items)
{
    ASSERT_OK(mp_list_del_slice(l, INT64_MIN, INT64_MAX, 1));
    mp_buf f = MP_BUF_INIT;
    frames_of(items, &f);
    ASSERT_OK(mp_list_extend(l, f.data, f.len));
    mp_buf_free(&f);
}

MP_TEST(manager_list_methods, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    mp_list *l;
    ASSERT_OK(mp_manager_list(m, "l", &l));
    size_t n = 9;
    bool in = true;
    mp_buf f = MP_BUF_INIT;

    /* empty */
    list_expect_all(l, "");
    ASSERT_ERR(MP_EINVAL, mp_list_remove(l, "a", 1));
    ASSERT_ERR(MP_EINVAL, mp_list_index(l, "a", 1, 0, INT64_MAX, &n));
    ASSERT_OK(mp_list_count(l, "a", 1, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(mp_list_contains(l, "", 0, &in));
    ASSERT_FALSE(in);
    ASSERT_OK(mp_list_reverse(l));
    ASSERT_OK(mp_list_sort(l, false));
    ASSERT_OK(mp_list_repeat(l, 1000000));
    ASSERT_OK(mp_list_repeat(l, INT64_MAX)); /* nothing times anything */
    list_expect_all(l, "");
    ASSERT_OK(mp_list_extend(l, NULL, 0));
    list_expect_all(l, "");

    /* insert: Python's clamping */
    ASSERT_OK(mp_list_insert(l, 0, "c", 1));
    ASSERT_OK(mp_list_insert(l, -100, "a", 1));
    ASSERT_OK(mp_list_insert(l, 100, "e", 1));
    ASSERT_OK(mp_list_insert(l, -1, "d", 1));
    ASSERT_OK(mp_list_insert(l, 1, "b", 1));
    ASSERT_OK(mp_list_insert(l, INT64_MIN, "<", 1));
    ASSERT_OK(mp_list_insert(l, INT64_MAX, ">", 1));
    list_expect_all(l, "<|a|b|c|d|e|>");

    /* extend; a malformed buffer adds nothing */
    frames_of("b|~|b", &f);
    ASSERT_OK(mp_list_extend(l, f.data, f.len));
    list_expect_all(l, "<|a|b|c|d|e|>|b|~|b");
    ASSERT_ERR(MP_EINVAL, mp_list_extend(l, f.data, f.len - 1));
    ASSERT_ERR(MP_EINVAL, mp_list_extend(l, f.data, 2));
    ASSERT_ERR(MP_EINVAL, mp_list_extend(l, NULL, 1));
    list_expect_all(l, "<|a|b|c|d|e|>|b|~|b");

    /* count, contains, index with start and stop as a slice's */
    ASSERT_OK(mp_list_count(l, "b", 1, &n));
    ASSERT_EQ(n, 3);
    ASSERT_OK(mp_list_count(l, "", 1, &n)); /* "\0" */
    ASSERT_EQ(n, 1);
    ASSERT_OK(mp_list_count(l, "", 0, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(mp_list_contains(l, "e", 1, &in));
    ASSERT_TRUE(in);
    ASSERT_OK(mp_list_contains(l, "ee", 2, &in));
    ASSERT_FALSE(in);
    ASSERT_OK(mp_list_index(l, "b", 1, 0, INT64_MAX, &n));
    ASSERT_EQ(n, 2);
    ASSERT_OK(mp_list_index(l, "b", 1, 3, INT64_MAX, &n));
    ASSERT_EQ(n, 7);
    ASSERT_OK(mp_list_index(l, "b", 1, -2, INT64_MAX, &n));
    ASSERT_EQ(n, 9);
    ASSERT_OK(mp_list_index(l, "b", 1, INT64_MIN, 3, &n));
    ASSERT_EQ(n, 2);
    ASSERT_ERR(MP_EINVAL, mp_list_index(l, "b", 1, 3, 7, &n));
    ASSERT_ERR(MP_EINVAL, mp_list_index(l, "b", 1, 3, -3, &n));
    ASSERT_ERR(MP_EINVAL, mp_list_index(l, "b", 1, 100, INT64_MAX, &n));
    ASSERT_ERR(MP_EINVAL, mp_list_index(l, "b", 1, 5, 2, &n));
    ASSERT_ERR(MP_EINVAL, mp_list_index(l, "bb", 2, 0, INT64_MAX, &n));

    /* remove: the first equal one only */
    ASSERT_OK(mp_list_remove(l, "b", 1));
    list_expect_all(l, "<|a|c|d|e|>|b|~|b");
    ASSERT_OK(mp_list_remove(l, "\0", 1));
    ASSERT_ERR(MP_EINVAL, mp_list_remove(l, "\0", 1));
    ASSERT_ERR(MP_EINVAL, mp_list_remove(l, "", 0));
    list_expect_all(l, "<|a|c|d|e|>|b|b");

    /* reverse: odd and even lengths */
    ASSERT_OK(mp_list_reverse(l));
    list_expect_all(l, "b|b|>|e|d|c|a|<");
    ASSERT_OK(mp_list_pop(l, 0, NULL));
    ASSERT_OK(mp_list_reverse(l));
    list_expect_all(l, "<|a|c|d|e|>|b");

    /* sort: byte order, a prefix first, NUL below every other byte, 0xff above */
    list_fill(l, "b|ab|a||a~|B|abc|~|aa|a");
    ASSERT_OK(mp_list_append(l, "\xff", 1));
    ASSERT_OK(mp_list_sort(l, false));
    list_expect_all(l, "|~|B|a|a|a~|aa|ab|abc|b|\xff");
    ASSERT_OK(mp_list_sort(l, true));
    list_expect_all(l, "\xff|b|abc|ab|aa|a~|a|a|B|~|");
    ASSERT_OK(mp_list_sort(l, true));
    list_expect_all(l, "\xff|b|abc|ab|aa|a~|a|a|B|~|");

    /* repeat: *= n, n <= 0 empties, overflow refused whole */
    list_fill(l, "x|y");
    ASSERT_OK(mp_list_repeat(l, 3));
    list_expect_all(l, "x|y|x|y|x|y");
    ASSERT_OK(mp_list_repeat(l, 1));
    list_expect_all(l, "x|y|x|y|x|y");
    ASSERT_ERR(MP_ENOMEM, mp_list_repeat(l, INT64_MAX));
    ASSERT_ERR(MP_ENOMEM, mp_list_repeat(l, (int64_t)1 << 40));
    list_expect_all(l, "x|y|x|y|x|y");
    ASSERT_OK(mp_list_repeat(l, 0));
    list_expect_all(l, "");
    list_fill(l, "x");
    ASSERT_OK(mp_list_repeat(l, INT64_MIN));
    ASSERT_OK(mp_list_len(l, &n));
    ASSERT_EQ(n, 0);
    list_fill(l, "");
    ASSERT_OK(mp_list_repeat(l, 1000));
    ASSERT_OK(mp_list_len(l, &n));
    ASSERT_EQ(n, 1000);
    ASSERT_OK(mp_list_count(l, "", 0, &n));
    ASSERT_EQ(n, 1000);
    /* what a repeat's result takes counts each item's bookkeeping, not
     * only its bytes: 1000 empty items 10^4 times over (10^7 items, a few
     * bytes of data asking for some 400 MiB) is refused, 100 times is not */
    ASSERT_ERR(MP_ENOMEM, mp_list_repeat(l, 10000));
    ASSERT_OK(mp_list_len(l, &n));
    ASSERT_EQ(n, 1000);
    ASSERT_OK(mp_list_repeat(l, 100));
    ASSERT_OK(mp_list_len(l, &n));
    ASSERT_EQ(n, 100000);
    ASSERT_OK(mp_list_repeat(l, 0));

    ASSERT_ERR(MP_EINVAL, mp_list_sort(NULL, false));
    ASSERT_ERR(MP_EINVAL, mp_list_count(l, "a", 1, NULL));
    ASSERT_ERR(MP_EINVAL, mp_list_insert(l, 0, NULL, 1));
    mp_buf_free(&f);
    mp_list_free(l);
    mp_manager_free(m);
}
/* Python's answers (generated with CPython from the list "0123456"): for
 * each start, stop, step, the slice and what del leaves. */
static const struct {
    int64_t start, stop, step;
    const char *got, *after_del;
} slice_cases[] = {
    {INT64_MAX, 100, -1, "", "0123456"},
    {-3, INT64_MIN, -100, "4", "012356"},
    {-3, -100, 2, "", "0123456"},
    {-7, INT64_MAX, 1, "0123456", ""},
    {7, -8, -3, "630", "1245"},
    {-100, INT64_MAX, 2, "0246", "135"},
    {-100, INT64_MIN, -3, "", "0123456"},
    {-1, -1, -2, "", "0123456"},
    {-8, 7, 1, "0123456", ""},
    {-8, -100, -2, "", "0123456"},
    {INT64_MIN, -3, 3, "03", "12456"},
    {-8, 0, -2, "", "0123456"},
    {-3, 0, 1, "", "0123456"},
    {-7, -1, 100, "0", "123456"},
    {7, -7, -3, "63", "01245"},
    {6, 100, 2, "6", "012345"},
    {-1, 6, 1, "", "0123456"},
    {100, 0, 2, "", "0123456"},
    {INT64_MAX, 1, -2, "642", "0135"},
    {7, 6, 2, "", "0123456"},
    {0, -100, -3, "0", "123456"},
    {3, 6, -2, "", "0123456"},
    {-7, -1, -2, "", "0123456"},
    {-7, -7, -1, "", "0123456"},
    {1, -3, -2, "", "0123456"},
    {-100, 7, 1, "0123456", ""},
    {-8, -1, 3, "03", "12456"},
    {0, 6, 3, "03", "12456"},
    {6, 7, 2, "6", "012345"},
    {-100, -7, 3, "", "0123456"},
    {-3, INT64_MIN, -1, "43210", "56"},
    {7, 3, 3, "", "0123456"},
    {1, INT64_MAX, 1, "123456", "0"},
    {3, 7, -2, "", "0123456"},
    {0, -100, 1, "", "0123456"},
    {7, 6, 3, "", "0123456"},
    {7, -7, -1, "654321", "0"},
    {100, 1, 1, "", "0123456"},
    {0, 100, -100, "", "0123456"},
    {-1, -100, 3, "", "0123456"},
    {100, 1, -1, "65432", "01"},
    {INT64_MIN, 1, 2, "0", "123456"},
    {0, -1, -100, "", "0123456"},
    {0, 0, 2, "", "0123456"},
    {3, 7, -100, "", "0123456"},
    {INT64_MAX, 100, -3, "", "0123456"},
    {7, 100, 1, "", "0123456"},
    {-8, INT64_MIN, -3, "", "0123456"},
    {100, 7, 100, "", "0123456"},
    {100, 100, 100, "", "0123456"},
    {0, -3, 100, "0", "123456"},
    {3, 0, -1, "321", "0456"},
    {INT64_MAX, 3, -1, "654", "0123"},
    {1, -7, -100, "1", "023456"},
    {-7, 0, 100, "", "0123456"},
    {INT64_MIN, -1, 3, "03", "12456"},
    {100, 3, 2, "", "0123456"},
    {1, 6, -2, "", "0123456"},
    {INT64_MAX, INT64_MIN, -2, "6420", "135"},
    {-8, 7, 3, "036", "1245"},
    {-8, 0, 1, "", "0123456"},
    {-7, 0, -100, "", "0123456"},
    {7, -7, -2, "642", "0135"},
    {7, 0, -1, "654321", "0"},
    {-7, -3, 3, "03", "12456"},
    {3, -1, 3, "3", "012456"},
    {-3, -7, -100, "4", "012356"},
    {-1, -1, 100, "", "0123456"},
    {6, 100, -100, "", "0123456"},
    {-3, 3, 100, "", "0123456"},
    {6, -3, -100, "6", "012345"},
    {7, 100, -3, "", "0123456"},
    {-3, 7, -100, "", "0123456"},
    {INT64_MIN, -100, 3, "", "0123456"},
    {-7, 6, 1, "012345", "6"},
    {-1, 100, 2, "6", "012345"},
    {1, -8, -100, "1", "023456"},
    {-8, 6, 2, "024", "1356"},
    {-8, -1, -2, "", "0123456"},
    {6, -1, 1, "", "0123456"},
    {1, -1, -1, "", "0123456"},
    {-100, 100, 100, "0", "123456"},
    {0, -8, -100, "0", "123456"},
    {7, 7, 3, "", "0123456"},
    {-8, 100, -2, "", "0123456"},
    {-100, -100, 1, "", "0123456"},
    {0, -100, 3, "", "0123456"},
    {-3, -1, 2, "4", "012356"},
    {-8, 6, -1, "", "0123456"},
    {3, -7, -1, "321", "0456"},
    {-3, INT64_MAX, 1, "456", "0123"},
    {100, -8, 3, "", "0123456"},
    {3, -8, -100, "3", "012456"},
    {-3, -1, -3, "", "0123456"},
    {-7, INT64_MAX, 2, "0246", "135"},
    {6, 3, -100, "6", "012345"},
    {-8, -3, 2, "02", "13456"},
    {0, 100, 1, "0123456", ""},
    {6, -100, 1, "", "0123456"},
    {6, 1, -1, "65432", "01"},
    {-7, INT64_MIN, -2, "0", "123456"},
    {6, 100, -2, "", "0123456"},
    {0, 0, -1, "", "0123456"},
    {-100, 3, 2, "02", "13456"},
    {-1, 0, 100, "", "0123456"},
    {100, 100, -100, "", "0123456"},
    {-100, 3, -100, "", "0123456"},
    {-8, -100, 3, "", "0123456"},
    {-3, -1, 3, "4", "012356"},
    {7, 100, -1, "", "0123456"},
    {INT64_MAX, 7, -100, "", "0123456"},
    {-1, 100, -100, "", "0123456"},
    {-8, 0, -100, "", "0123456"},
    {-7, 6, -100, "", "0123456"},
    {-7, 7, -3, "", "0123456"},
    {1, -3, -100, "", "0123456"},
    {7, 7, -1, "", "0123456"},
    {100, -7, 2, "", "0123456"},
    {0, -100, -1, "0", "123456"},
    {INT64_MAX, -3, -3, "6", "012345"},
    {INT64_MIN, INT64_MAX, 1, "0123456", ""},
    {INT64_MAX, INT64_MIN, -1, "6543210", ""},
    {INT64_MAX, INT64_MIN, -1, "6543210", ""},
    {INT64_MIN, INT64_MIN, 1, "", "0123456"},
    {INT64_MAX, INT64_MAX, -1, "", "0123456"},
    {INT64_MAX, INT64_MIN, INT64_MIN, "6", "012345"},
    {INT64_MIN, INT64_MAX, INT64_MAX, "0", "123456"},
    {INT64_MAX, INT64_MIN, -1, "6543210", ""},
    {INT64_MIN, INT64_MAX, -1, "", "0123456"},
    {3, INT64_MIN, -1, "3210", "456"},
    {INT64_MIN, 3, 1, "012", "3456"},
};

/* l[start:stop] = new, and with a step (Python's results). */
static const struct {
    int64_t start, stop;
    const char *new, *after;
} set_cases[] = {
    {2, 4, "ab", "01ab456"},
    {2, 4, "", "01456"},
    {2, 4, "abcd", "01abcd456"},
    {4, 2, "xy", "0123xy456"},
    {-2, INT64_MAX, "z", "01234z"},
    {INT64_MIN, INT64_MAX, "q", "q"},
    {100, 200, "e", "0123456e"},
    {-100, 1, "f", "f123456"},
    {0, 0, "", "0123456"},
};
static const struct {
    int64_t start, stop, step;
    const char *new, *after;
} set_step_cases[] = {
    {0, INT64_MAX, 2, "abcd", "a1b3c5d"},
    {INT64_MAX, INT64_MIN, -3, "xyz", "z12y45x"},
    {1, 6, 2, "abc", "0a2b4c6"},
    {5, 0, -2, "uvw", "0w2v4u6"},
};

/* The list "0".."6" as one string of its items: "0123456". */
static void list_expect_chars(mp_list *l, const char *want)
{
    mp_buf b = MP_BUF_INIT;
    ASSERT_OK(mp_list_get_slice(l, INT64_MIN, INT64_MAX, 1, &b));
    char got[64] = "";
    size_t w = 0;
    for (size_t off = 0; off < b.len; w++) {
        uint32_t n;
        memcpy(&n, (char *)b.data + off, sizeof n);
        ASSERT_EQ(n, 1);
        ASSERT_LT(w + 1, sizeof got);
        got[w] = ((char *)b.data)[off + sizeof n];
        off += sizeof n + 1;
    }
    got[w] = '\0';
    ASSERT_STREQ(got, want);
    mp_buf_free(&b);
}

/* Each char of @s an item. */
static void chars_framed(const char *s, mp_buf *out)
{
    out->len = 0;
    for (; *s; s++) {
        uint32_t one = 1;
        ASSERT_OK(mp_buf_append(out, &one, sizeof one));
        ASSERT_OK(mp_buf_append(out, s, 1));
    }
}

static void list_reset_digits(mp_list *l)
{
    mp_buf f = MP_BUF_INIT;
    chars_framed("0123456", &f);
    ASSERT_OK(mp_list_set_slice(l, INT64_MIN, INT64_MAX, 1, f.data, f.len));
    mp_buf_free(&f);
    list_expect_chars(l, "0123456");
}

MP_TEST(manager_list_slices, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    mp_list *l;
    ASSERT_OK(mp_manager_list(m, "l", &l));
    mp_buf b = MP_BUF_INIT, f = MP_BUF_INIT;

    /* an empty list: every slice is empty, deleting one changes nothing */
    ASSERT_OK(mp_list_get_slice(l, INT64_MAX, INT64_MIN, -1, &b));
    ASSERT_EQ(b.len, 0);
    ASSERT_OK(mp_list_del_slice(l, -5, 5, 2));
    ASSERT_ERR(MP_EINVAL, mp_list_get_slice(l, 0, 1, 0, &b));
    ASSERT_ERR(MP_EINVAL, mp_list_del_slice(l, 0, 1, 0));
    ASSERT_ERR(MP_EINVAL, mp_list_set_slice(l, 0, 1, 0, NULL, 0));

    list_reset_digits(l);
    for (size_t i = 0; i < MP__ARRAY_LEN(slice_cases); i++) {
        char what[160];
        snprintf(what, sizeof what, "l[%lld:%lld:%lld]", (long long)slice_cases[i].start,
                 (long long)slice_cases[i].stop, (long long)slice_cases[i].step);
        ASSERT_OK(mp_list_get_slice(l, slice_cases[i].start, slice_cases[i].stop,
                                    slice_cases[i].step, &b));
        char got[16] = "";
        size_t w = 0;
        for (size_t off = 0; off < b.len && w + 1 < sizeof got; off += 5)
            got[w++] = ((char *)b.data)[off + 4];
        got[w] = '\0';
        if (strcmp(got, slice_cases[i].got) != 0)
            MP__FAIL("%s: got \"%s\", Python \"%s\"", what, got, slice_cases[i].got);
        ASSERT_EQ(b.len, 5 * strlen(slice_cases[i].got));
        ASSERT_OK(mp_list_del_slice(l, slice_cases[i].start, slice_cases[i].stop,
                                    slice_cases[i].step));
        list_expect_chars(l, slice_cases[i].after_del);
        list_reset_digits(l);
    }

    for (size_t i = 0; i < MP__ARRAY_LEN(set_cases); i++) {
        chars_framed(set_cases[i].new, &f);
        ASSERT_OK(mp_list_set_slice(l, set_cases[i].start, set_cases[i].stop, 1, f.data, f.len));
        list_expect_chars(l, set_cases[i].after);
        list_reset_digits(l);
    }
    for (size_t i = 0; i < MP__ARRAY_LEN(set_step_cases); i++) {
        chars_framed(set_step_cases[i].new, &f);
        ASSERT_OK(mp_list_set_slice(l, set_step_cases[i].start, set_step_cases[i].stop,
                                    set_step_cases[i].step, f.data, f.len));
        list_expect_chars(l, set_step_cases[i].after);
        list_reset_digits(l);
    }
    /* an extended slice takes exactly as many values as it has items
     * (Python's ValueError); a malformed buffer changes nothing */
    chars_framed("ab", &f);
    ASSERT_ERR(MP_EINVAL, mp_list_set_slice(l, 0, INT64_MAX, 2, f.data, f.len));
    ASSERT_ERR(MP_EINVAL, mp_list_set_slice(l, 0, 2, 1, f.data, f.len - 1));
    list_expect_chars(l, "0123456");

    /* values of any length, moved whole */
    list_fill(l, "|long value|~~|x");
    ASSERT_OK(mp_list_get_slice(l, -3, INT64_MAX, 1, &b));
    ASSERT_STREQ(frames_join(&b), "long value|~~|x");
    ASSERT_OK(mp_list_get_slice(l, INT64_MAX, INT64_MIN, -2, &b));
    ASSERT_STREQ(frames_join(&b), "x|long value");
    ASSERT_OK(mp_list_get_slice(l, 0, 1, 1, &b));
    ASSERT_STREQ(frames_join(&b), "()");

    mp_buf_free(&b);
    mp_buf_free(&f);
    mp_list_free(l);
    mp_manager_free(m);
}

/* ---- over TCP, from another process ------------------------------------- */

static int child_dict_list_tcp(const mp_args *a)
{
    mp_manager *m = child_connect(a);
    ASSERT_TRUE(strncmp(mp_args_str(a, 0), "tcp:127.0.0.1:", 14) == 0);
    mp_dict *d;
    mp_list *l;
    ASSERT_OK(mp_manager_dict(m, "td", &d));
    ASSERT_OK(mp_manager_list(m, "tl", &l));
    mp_buf f = MP_BUF_INIT, k = MP_BUF_INIT, v = MP_BUF_INIT;
    frames_of("k1|v1|k2|v2|k3|v3", &f);
    ASSERT_OK(mp_dict_update(d, f.data, f.len));
    ASSERT_OK(mp_dict_popitem(d, &k, &v));
    ASSERT_EQ(k.len, 2);
    ASSERT_MEMEQ(k.data, "k3", 2);
    ASSERT_OK(mp_dict_setdefault(d, "k1", 2, "no", 2, &v));
    ASSERT_MEMEQ(v.data, "v1", 2);
    ASSERT_OK(mp_dict_copy(d, "td-copy"));
    frames_of("c|a|b", &f);
    ASSERT_OK(mp_list_extend(l, f.data, f.len));
    ASSERT_OK(mp_list_sort(l, false));
    ASSERT_OK(mp_list_insert(l, -1, "ab", 2));
    ASSERT_OK(mp_list_repeat(l, 2));
    /* and the rest, once each, over the network */
    bool in = false;
    size_t n = 0;
    ASSERT_OK(mp_dict_contains(d, "k2", 2, &in));
    ASSERT_TRUE(in);
    ASSERT_OK(mp_dict_pop(d, "zz", 2, "dflt", 4, true, &v));
    ASSERT_MEMEQ(v.data, "dflt", 4);
    ASSERT_OK(mp_dict_get_default(d, "zz", 2, "g", 1, &v));
    ASSERT_MEMEQ(v.data, "g", 1);
    ASSERT_OK(mp_dict_values(d, &v));
    ASSERT_STREQ(frames_join(&v), "v1|v2");
    ASSERT_OK(mp_dict_clear(d));
    ASSERT_OK(mp_list_count(l, "ab", 2, &n));
    ASSERT_EQ(n, 2);
    ASSERT_OK(mp_list_contains(l, "c", 1, &in));
    ASSERT_TRUE(in);
    mp_list *s;
    ASSERT_OK(mp_manager_list(m, "scratch", &s));
    frames_of("1|2|3|4|5", &f);
    ASSERT_OK(mp_list_set_slice(s, 0, 0, 1, f.data, f.len));
    ASSERT_OK(mp_list_del_slice(s, 0, INT64_MAX, 2));
    ASSERT_OK(mp_list_reverse(s));
    ASSERT_OK(mp_list_remove(s, "4", 1));
    ASSERT_OK(mp_list_sort(s, true));
    mp_list_free(s);
    mp_buf_free(&f);
    mp_buf_free(&k);
    mp_buf_free(&v);
    mp_list_free(l);
    mp_dict_free(d);
    mp_manager_free(m);
    return 0;
}

MP_TEST(manager_dict_list_methods_tcp, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_manager *m = NULL;
    ASSERT_OK(mp_manager_start(&m, ctx, "tcp:127.0.0.1:0", KEY, KEYLEN));
    mp_process *p = mp_test_start_free(ctx, child_dict_list_tcp, conn_args(m));
    ASSERT_EQ(mp_test_join(p, 60), 0);
    mp_dict *d;
    mp_list *l;
    ASSERT_OK(mp_manager_dict(m, "td-copy", &d));
    dict_expect(d, "k1|v1|k2|v2");
    mp_dict_free(d);
    ASSERT_OK(mp_manager_dict(m, "td", &d));
    dict_expect(d, ""); /* cleared */
    ASSERT_OK(mp_manager_list(m, "scratch", &l));
    list_expect_all(l, "2");
    mp_list_free(l);
    ASSERT_OK(mp_manager_list(m, "tl", &l));
    list_expect_all(l, "a|b|ab|c|a|b|ab|c");
    mp_buf b = MP_BUF_INIT;
    ASSERT_OK(mp_list_get_slice(l, INT64_MAX, INT64_MIN, -3, &b));
    ASSERT_STREQ(frames_join(&b), "c|a|b");
    size_t i = 0;
    ASSERT_OK(mp_list_index(l, "c", 1, -5, INT64_MAX, &i));
    ASSERT_EQ(i, 3);
    ASSERT_OK(mp_list_index(l, "c", 1, -4, INT64_MAX, &i));
    ASSERT_EQ(i, 7);
    mp_buf_free(&b);
    mp_list_free(l);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* ---- atomicity: racing clients neither lose nor duplicate ---------------- */

enum { RACE_N = 1000 };

/* args: addr, key, this child's id (0 or 1).  Per round: pop a shared
 * token (one child gets it, the other the default), setdefault a shared
 * key to its own id (one child's id sticks), update two keys of its own
 * and popitem one entry (whosever it is), counting it in "seen". */
static int child_race(const mp_args *a)
{
    mp_manager *m = child_connect(a);
    char me = (char)('0' + mp_args_int(a, 2));
    mp_dict *tok, *win, *pool, *seen, *res;
    ASSERT_OK(mp_manager_dict(m, "tok", &tok));
    ASSERT_OK(mp_manager_dict(m, "win", &win));
    ASSERT_OK(mp_manager_dict(m, "pool", &pool));
    ASSERT_OK(mp_manager_dict(m, "seen", &seen));
    ASSERT_OK(mp_manager_dict(m, "res", &res));
    mp_buf v = MP_BUF_INIT, k = MP_BUF_INIT, f = MP_BUF_INIT;
    int64_t popped = 0, won = 0, items = 0;
    /* both start racing together, however slow their start method */
    mp_event *go;
    ASSERT_OK(mp_manager_event(m, "go", &go));
    ASSERT_OK(mp_dict_add(res, "ready", 5, 1, NULL));
    ASSERT_OK(mp_event_wait(go, 60));
    mp_event_free(go);
    for (int i = 0; i < RACE_N; i++) {
        char key[32];
        int kl = snprintf(key, sizeof key, "t%d", i);
        ASSERT_OK(mp_dict_pop(tok, key, (size_t)kl, "-", 1, true, &v));
        if (!(v.len == 1 && ((char *)v.data)[0] == '-')) {
            ASSERT_EQ(v.len, (size_t)kl);
            ASSERT_MEMEQ(v.data, key, (size_t)kl);
            popped++;
        }
        ASSERT_OK(mp_dict_setdefault(win, key, (size_t)kl, &me, 1, &v));
        ASSERT_EQ(v.len, 1);
        won += ((char *)v.data)[0] == me;
        char pairs[64];
        snprintf(pairs, sizeof pairs, "%c-%d-a|x|%c-%d-b|y", me, i, me, i);
        frames_of(pairs, &f);
        ASSERT_OK(mp_dict_update(pool, f.data, f.len));
        int err = mp_dict_popitem(pool, &k, NULL);
        if (err != MP_ENOENT) {
            ASSERT_OK(err);
            int64_t times = 0;
            ASSERT_OK(mp_dict_add(seen, k.data, k.len, 1, &times));
            ASSERT_EQ(times, 1); /* no entry handed out twice */
            items++;
        }
    }
    ASSERT_OK(mp_dict_add(res, "popped", 6, popped, NULL));
    ASSERT_OK(mp_dict_add(res, "won", 3, won, NULL));
    ASSERT_OK(mp_dict_add(res, "items", 5, items, NULL));
    mp_buf_free(&v);
    mp_buf_free(&k);
    mp_buf_free(&f);
    mp_dict_free(tok);
    mp_dict_free(win);
    mp_dict_free(pool);
    mp_dict_free(seen);
    mp_dict_free(res);
    mp_manager_free(m);
    return 0;
}

MP_TEST(manager_dict_pop_setdefault_update_atomic, .variants = MP_START_METHODS,
        .timeout_s = 120)
{
    mp_manager *m = start_manager(ctx);
    mp_dict *tok, *pool, *seen, *res;
    ASSERT_OK(mp_manager_dict(m, "tok", &tok));
    for (int i = 0; i < RACE_N; i++) {
        char key[32];
        int kl = snprintf(key, sizeof key, "t%d", i);
        ASSERT_OK(mp_dict_set(tok, key, (size_t)kl, key, (size_t)kl));
    }
    mp_process *p[2];
    for (int i = 0; i < 2; i++) {
        mp_args *a = conn_args(m);
        ASSERT_OK(mp_args_add_int(a, i));
        p[i] = mp_test_start_free(ctx, child_race, a);
    }
    ASSERT_OK(mp_manager_dict(m, "res", &res));
    double t0 = now();
    while (dict_int(res, "ready") < 2) {
        ASSERT_LT(now() - t0, 30);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    mp_event *go;
    ASSERT_OK(mp_manager_event(m, "go", &go));
    ASSERT_OK(mp_event_set(go));
    mp_event_free(go);
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(mp_test_join(p[i], 100), 0);
    ASSERT_OK(mp_manager_dict(m, "pool", &pool));
    ASSERT_OK(mp_manager_dict(m, "seen", &seen));
    /* every token popped exactly once, every key won exactly once */
    ASSERT_EQ(dict_int(res, "popped"), RACE_N);
    ASSERT_EQ(dict_int(res, "won"), RACE_N);
    size_t n = 9;
    ASSERT_OK(mp_dict_len(tok, &n));
    ASSERT_EQ(n, 0);
    /* each pair added was popped once or is still there, never both */
    size_t left = 0, seen_n = 0;
    ASSERT_OK(mp_dict_len(pool, &left));
    ASSERT_OK(mp_dict_len(seen, &seen_n));
    ASSERT_EQ(dict_int(res, "items"), (int64_t)seen_n);
    ASSERT_EQ(left + seen_n, (size_t)2 * 2 * RACE_N);
    mp_buf keys = MP_BUF_INIT;
    ASSERT_OK(mp_dict_keys(pool, &keys));
    for (size_t off = 0; off < keys.len;) {
        uint32_t kl;
        memcpy(&kl, (char *)keys.data + off, sizeof kl);
        bool in = true;
        ASSERT_OK(mp_dict_contains(seen, (char *)keys.data + off + 4, kl, &in));
        ASSERT_FALSE(in);
        off += 4 + kl;
    }
    mp_buf_free(&keys);
    mp_dict_free(tok);
    mp_dict_free(pool);
    mp_dict_free(seen);
    mp_dict_free(res);
    mp_manager_free(m);
}

/* ---- the new ops' requests, checked by the server ------------------------ */

static mp_args *req_l(int op, const char *kind, const char *name, int nints, int64_t i0, int64_t i1,
                      int64_t i2)
{
    mp_args *a = req_of("iss", op, kind, name);
    int64_t v[3] = {i0, i1, i2};
    for (int i = 0; i < nints; i++)
        ASSERT_OK(mp_args_add_int(a, v[i]));
    return a;
}

MP_TEST(manager_dict_list_malformed_requests, .variants = MP_START_METHODS)
{
    enum {
        W_DICT_ITEMS = 130, W_DICT_COPY = 132, W_DICT_POP = 134, W_DICT_SETDEFAULT = 136,
        W_DICT_UPDATE = 137, W_DICT_CONTAINS = 138,
        W_LIST_INSERT = 150, W_LIST_INDEX = 152, W_LIST_EXTEND = 155, W_LIST_SORT = 157,
        W_LIST_GET_SLICE = 158, W_LIST_SET_SLICE = 159, W_LIST_REPEAT = 161,
    };
    mp_manager *m = start_manager(ctx);
    mp_dict *d;
    mp_list *l;
    ASSERT_OK(mp_manager_dict(m, "d", &d));
    ASSERT_OK(mp_manager_list(m, "l", &l));
    dict_set_s(d, "k", "v");
    ASSERT_OK(mp_list_append(l, "x", 1));
    mp_conn *c;
    ASSERT_OK(mp_client(&c, mp_manager_address(m), KEY, KEYLEN));

    /* framed strings cut short, a pair without its value: nothing stored */
    static const uint8_t cut[] = {1, 0, 0, 0, 'a', 1, 0, 0, 0, 'b', 9, 0, 0, 0, 'c'};
    static const uint8_t odd[] = {1, 0, 0, 0, 'a', 1, 0, 0, 0, 'b', 1, 0, 0, 0, 'c'};
    static const uint8_t stub[] = {1, 0, 0};
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 'a'};
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_DICT_UPDATE, "dict", "d", cut, sizeof cut)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_DICT_UPDATE, "dict", "d", odd, sizeof odd)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_DICT_UPDATE, "dict", "d", stub, sizeof stub)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_DICT_UPDATE, "dict", "d", huge, sizeof huge)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("iss", W_DICT_UPDATE, "dict", "d")));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_LIST_EXTEND, "list", "l", cut, sizeof cut)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_LIST_EXTEND, "list", "l", huge, sizeof huge)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issi", W_LIST_EXTEND, "list", "l", 1)));
    mp_args *sl = req_l(W_LIST_SET_SLICE, "list", "l", 3, 0, 1, 1);
    ASSERT_OK(mp_args_add_bytes(sl, cut, sizeof cut));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, sl));
    /* arguments missing or of the wrong type */
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("iss", W_DICT_COPY, "dict", "d")));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_DICT_COPY, "dict", "d", "x", (size_t)1)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_DICT_POP, "dict", "d", "k", (size_t)1)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issbi", W_DICT_POP, "dict", "d", "k", (size_t)1, 1)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_DICT_SETDEFAULT, "dict", "d", "k", (size_t)1)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issi", W_DICT_CONTAINS, "dict", "d", 1)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_l(W_LIST_INSERT, "list", "l", 1, 0, 0, 0)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_LIST_INDEX, "list", "l", "x", (size_t)1)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_l(W_LIST_GET_SLICE, "list", "l", 2, 0, 1, 0)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_l(W_LIST_SET_SLICE, "list", "l", 3, 0, 1, 1)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("iss", W_LIST_SORT, "list", "l")));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issd", W_LIST_REPEAT, "list", "l", 2.0)));
    /* valid shapes, bad values */
    ASSERT_ERR(MP_EINVAL, mp_test_rpc(c, req_l(W_LIST_GET_SLICE, "list", "l", 3, 0, 1, 0)));
    ASSERT_OK(mp_test_rpc(c, req_l(W_LIST_GET_SLICE, "list", "l", 3, INT64_MIN, INT64_MIN, INT64_MIN)));
    ASSERT_ERR(MP_ENOMEM, mp_test_rpc(c, req_l(W_LIST_REPEAT, "list", "l", 1, INT64_MAX, 0, 0)));
    /* a list op on a dict: refused, the dict untouched */
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_l(W_LIST_REPEAT, "dict", "d", 1, 2, 0, 0)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("iss", W_DICT_ITEMS, "list", "l")));
    mp_conn_close(c);
    still_serving(m);

    dict_expect(d, "k|v");
    list_expect_all(l, "x");
    mp_list_free(l);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* update and extend above the request cap: refused by this side
 * (MP_EMSGSIZE), nothing stored, the connection still usable. */
MP_TEST(manager_dict_list_too_large, .timeout_s = 60)
{
    mp_manager *m = start_manager(NULL);
    mp_dict *d;
    mp_list *l;
    ASSERT_OK(mp_manager_dict(m, "d", &d));
    ASSERT_OK(mp_manager_list(m, "l", &l));
    size_t big = (64u << 20) + 16;
    char *p = calloc(1, big + 16);
    ASSERT_TRUE(p != NULL);
    uint32_t kl = 1, vl = (uint32_t)big;
    memcpy(p, &kl, 4);
    p[4] = 'k';
    memcpy(p + 5, &vl, 4);
    ASSERT_ERR(MP_EMSGSIZE, mp_dict_update(d, p, 9 + big));
    memcpy(p, &vl, 4);
    ASSERT_ERR(MP_EMSGSIZE, mp_list_extend(l, p, 4 + big));
    free(p);
    size_t n = 9;
    ASSERT_OK(mp_dict_len(d, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(mp_list_len(l, &n));
    ASSERT_EQ(n, 0);
    dict_set_s(d, "still", "works");
    dict_expect(d, "still|works");
    mp_list_free(l);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* args: addr, key, this child's id.  Per round: remove a shared token (one
 * child removes it, the other gets MP_EINVAL), extend by two values of its
 * own and pop the front item (whosever it is), counting it in "seen". */
static int child_list_race(const mp_args *a)
{
    mp_manager *m = child_connect(a);
    int me = (int)mp_args_int(a, 2);
    mp_list *l, *toks;
    mp_dict *seen, *res;
    ASSERT_OK(mp_manager_list(m, "items", &l));
    ASSERT_OK(mp_manager_list(m, "toks", &toks));
    ASSERT_OK(mp_manager_dict(m, "seen", &seen));
    ASSERT_OK(mp_manager_dict(m, "res", &res));
    mp_event *go;
    ASSERT_OK(mp_manager_event(m, "go", &go));
    ASSERT_OK(mp_dict_add(res, "ready", 5, 1, NULL));
    ASSERT_OK(mp_event_wait(go, 60));
    mp_event_free(go);
    mp_buf v = MP_BUF_INIT, f = MP_BUF_INIT;
    int64_t removed = 0;
    for (int i = 0; i < RACE_N; i++) {
        char s[64];
        int n = snprintf(s, sizeof s, "t%d", i);
        int err = mp_list_remove(toks, s, (size_t)n);
        if (err != MP_EINVAL) {
            ASSERT_OK(err);
            removed++;
        }
        snprintf(s, sizeof s, "%d-%d-a|%d-%d-b", me, i, me, i);
        frames_of(s, &f);
        ASSERT_OK(mp_list_extend(l, f.data, f.len));
        ASSERT_OK(mp_list_pop(l, 0, &v));
        int64_t times = 0;
        ASSERT_OK(mp_dict_add(seen, v.data, v.len, 1, &times));
        ASSERT_EQ(times, 1);
    }
    ASSERT_OK(mp_dict_add(res, "removed", 7, removed, NULL));
    mp_buf_free(&v);
    mp_buf_free(&f);
    mp_list_free(l);
    mp_list_free(toks);
    mp_dict_free(seen);
    mp_dict_free(res);
    mp_manager_free(m);
    return 0;
}

MP_TEST(manager_list_remove_extend_pop_atomic, .variants = MP_START_METHODS, .timeout_s = 120)
{
    mp_manager *m = start_manager(ctx);
    mp_list *l, *toks;
    mp_dict *seen, *res;
    ASSERT_OK(mp_manager_list(m, "toks", &toks));
    for (int i = 0; i < RACE_N; i++) { /* each token followed by a bystander */
        char s[32];
        int n = snprintf(s, sizeof s, "t%d", i);
        ASSERT_OK(mp_list_append(toks, s, (size_t)n));
        n = snprintf(s, sizeof s, "x%d", i);
        ASSERT_OK(mp_list_append(toks, s, (size_t)n));
    }
    ASSERT_OK(mp_manager_dict(m, "res", &res));
    mp_process *p[2];
    for (int i = 0; i < 2; i++) {
        mp_args *a = conn_args(m);
        ASSERT_OK(mp_args_add_int(a, i));
        p[i] = mp_test_start_free(ctx, child_list_race, a);
    }
    double t0 = now();
    while (dict_int(res, "ready") < 2) {
        ASSERT_LT(now() - t0, 30);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    mp_event *go;
    ASSERT_OK(mp_manager_event(m, "go", &go));
    ASSERT_OK(mp_event_set(go));
    mp_event_free(go);
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(mp_test_join(p[i], 100), 0);
    ASSERT_EQ(dict_int(res, "removed"), RACE_N);
    size_t n = 9, left = 0, seen_n = 0;
    /* the tokens went, each once, and only they: the bystanders stay */
    ASSERT_OK(mp_list_len(toks, &n));
    ASSERT_EQ(n, RACE_N);
    for (int i = 0; i < RACE_N; i += 97) {
        char s[32];
        snprintf(s, sizeof s, "x%d", i);
        list_expect(toks, i, s);
    }
    ASSERT_OK(mp_manager_list(m, "items", &l));
    ASSERT_OK(mp_manager_dict(m, "seen", &seen));
    ASSERT_OK(mp_list_len(l, &left));
    ASSERT_OK(mp_dict_len(seen, &seen_n));
    ASSERT_EQ(seen_n, (size_t)2 * RACE_N);
    ASSERT_EQ(left + seen_n, (size_t)2 * 2 * RACE_N);
    mp_buf all = MP_BUF_INIT;
    ASSERT_OK(mp_list_get_slice(l, 0, INT64_MAX, 1, &all));
    for (size_t off = 0; off < all.len;) {
        uint32_t vl;
        memcpy(&vl, (char *)all.data + off, sizeof vl);
        bool in = true;
        ASSERT_OK(mp_dict_contains(seen, (char *)all.data + off + 4, vl, &in));
        ASSERT_FALSE(in); /* popped and still there: duplicated */
        off += 4 + vl;
    }
    mp_buf_free(&all);
    mp_list_free(l);
    mp_list_free(toks);
    mp_dict_free(seen);
    mp_dict_free(res);
    mp_manager_free(m);
}

/* ---- array, joinable queue, namespace (issue 17) ------------------------------ */

/* args: array (int32), lock, joinable queue, namespace.  Adds 1 to every
 * element under the lock, takes the queue's messages (doing each one), and
 * names itself in the namespace. */
static int child_arr_jq_ns(const mp_args *a)
{
    mp_array *arr = mp_args_array(a, 0);
    mp_lock *l = mp_args_lock(a, 1);
    mp_queue *q = mp_args_queue(a, 2);
    mp_dict *ns = mp_args_dict(a, 3);
    ASSERT_TRUE(mp_array_data(arr) == NULL);
    ASSERT_EQ(mp_array_len(arr), 8);
    ASSERT_EQ(mp_array_type(arr), MP_INT32);
    ASSERT_OK(mp_lock_acquire(l, 30));
    int32_t v[8];
    ASSERT_OK(mp_array_load(arr, 0, 8, v));
    for (int i = 0; i < 8; i++)
        v[i]++;
    ASSERT_OK(mp_array_store(arr, 0, 8, v));
    ASSERT_OK(mp_lock_release(l));
    mp_buf b = MP_BUF_INIT;
    int64_t sum = 0;
    for (;;) {
        ASSERT_OK(mp_queue_get(q, &b, 30));
        int64_t x;
        ASSERT_EQ(b.len, sizeof x);
        memcpy(&x, b.data, sizeof x);
        sum += x;
        ASSERT_OK(mp_queue_task_done(q)); /* the child's task_done: same object */
        if (x == 0)
            break;
    }
    mp_buf_free(&b);
    ASSERT_OK(mp_dict_set(ns, "sum", 3, &sum, sizeof sum));
    return 0;
}

/* The array, joinable queue and namespace of @m to a child (twice, one
 * after the other) and back: every message done, every element 2 up. */
static void arr_jq_ns_round(mp_context *ctx, mp_manager *m)
{
    int32_t init[8] = {0, 1, 2, 3, 4, 5, 6, 7}, got[8];
    mp_array *arr;
    mp_lock *l;
    mp_queue *q;
    mp_dict *ns;
    ASSERT_OK(mp_manager_array(m, "arr", MP_INT32, 8, init, &arr));
    ASSERT_OK(mp_manager_lock(m, "arr-lock", &l));
    ASSERT_OK(mp_manager_joinable_queue(m, "jobs", 0, &q));
    ASSERT_OK(mp_manager_namespace(m, "ns", &ns));
    mp_args *a = NULL;
    ASSERT_OK(mp_args_of(&a, "ALQD", arr, l, q, ns));
    for (int round = 0; round < 2; round++) {
        for (int64_t i = 1; i <= 20; i++)
            ASSERT_OK(mp_queue_put(q, &i, sizeof i, 10));
        int64_t stop = 0;
        ASSERT_OK(mp_queue_put(q, &stop, sizeof stop, 10));
        mp_process *p = mp_test_start(ctx, child_arr_jq_ns, a);
        ASSERT_OK(mp_queue_join(q, 30)); /* the child's task_done's count here */
        ASSERT_EQ(mp_test_join(p, 60), 0);
        ASSERT_EQ(dict_int(ns, "sum"), 20 * 21 / 2);
        ASSERT_OK(mp_dict_del(ns, "sum", 3));
    }
    mp_args_free(a);
    ASSERT_OK(mp_array_load(arr, 0, 8, got));
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(got[i], i + 2);
    ASSERT_ERR(MP_EINVAL, mp_queue_task_done(q)); /* every one done */
    mp_array_free(arr);
    mp_lock_free(l);
    mp_queue_free(q);
    mp_dict_free(ns);
}

MP_TEST(manager_array_ops, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    int32_t init[5] = {10, 20, 30, 40, 50}, v[5] = {0};
    mp_array *arr, *same, *zero;
    ASSERT_OK(mp_manager_array(m, "a", MP_INT32, 5, init, &arr));
    ASSERT_TRUE(mp_array_data(arr) == NULL);
    ASSERT_TRUE(mp_array_lock(arr) == NULL);
    ASSERT_EQ(mp_array_len(arr), 5);
    ASSERT_EQ(mp_array_type(arr), MP_INT32);
    ASSERT_OK(mp_array_load(arr, 0, 5, v));
    ASSERT_MEMEQ(v, init, sizeof init);
    /* an index, a slice, an empty slice at the end */
    int32_t x = 0, two[2] = {-1, -2};
    ASSERT_OK(mp_array_load(arr, 4, 1, &x));
    ASSERT_EQ(x, 50);
    ASSERT_OK(mp_array_store(arr, 1, 2, two));
    ASSERT_OK(mp_array_load(arr, 0, 5, v));
    ASSERT_EQ(v[0], 10);
    ASSERT_EQ(v[1], -1);
    ASSERT_EQ(v[2], -2);
    ASSERT_EQ(v[3], 40);
    ASSERT_OK(mp_array_load(arr, 5, 0, v));
    /* past the end: nothing read or written */
    ASSERT_ERR(MP_EINVAL, mp_array_load(arr, 4, 2, v));
    ASSERT_ERR(MP_EINVAL, mp_array_load(arr, 6, 0, v));
    ASSERT_ERR(MP_EINVAL, mp_array_store(arr, 3, 3, init));
    ASSERT_ERR(MP_EINVAL, mp_array_store(arr, SIZE_MAX, 2, init));
    ASSERT_ERR(MP_EINVAL, mp_array_load(NULL, 0, 1, v));
    ASSERT_OK(mp_array_load(arr, 3, 2, two));
    ASSERT_EQ(two[0], 40);
    ASSERT_EQ(two[1], 50);
    /* the same name: the same array; a second init is not stored */
    ASSERT_OK(mp_manager_array(m, "a", MP_INT32, 5, (int32_t[5]){0}, &same));
    ASSERT_OK(mp_array_load(same, 1, 1, &x));
    ASSERT_EQ(x, -1);
    /* another shape under the name is refused; a new name is zero */
    ASSERT_ERR(MP_EINVAL, mp_manager_array(m, "a", MP_INT32, 6, NULL, &(mp_array *){NULL}));
    ASSERT_ERR(MP_EINVAL, mp_manager_array(m, "a", MP_INT64, 5, NULL, &(mp_array *){NULL}));
    ASSERT_ERR(MP_EINVAL, mp_manager_array(m, "bad", (mp_type)99, 5, NULL, &(mp_array *){NULL}));
    ASSERT_OK(mp_manager_array(m, "z", MP_DOUBLE, 3, NULL, &zero));
    double d[3] = {1, 1, 1};
    ASSERT_OK(mp_array_load(zero, 0, 3, d));
    ASSERT_TRUE(d[0] == 0 && d[1] == 0 && d[2] == 0);
    /* an array and a value of one name are two objects */
    mp_value *val;
    ASSERT_OK(mp_manager_value(m, "a", MP_INT32, &val));
    ASSERT_OK(mp_value_load(val, &x));
    ASSERT_EQ(x, 0);
    mp_value_free(val);
    mp_array_free(zero);
    mp_array_free(same);
    mp_array_free(arr);

    /* in mp_args to a child of this start method, with the other two */
    arr_jq_ns_round(ctx, m);
    mp_manager_free(m);
}

MP_TEST(manager_joinable_queue, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    mp_queue *q, *plain;
    ASSERT_OK(mp_manager_joinable_queue(m, "jq", 2, &q));
    ASSERT_OK(mp_manager_queue(m, "jq", 0, &plain)); /* another object */
    /* nothing put: join returns at once, task_done is one too many */
    ASSERT_OK(mp_queue_join(q, 0));
    ASSERT_ERR(MP_EINVAL, mp_queue_task_done(q));
    ASSERT_ERR(MP_EINVAL, mp_queue_task_done(plain));
    ASSERT_ERR(MP_EINVAL, mp_queue_join(plain, 0));
    ASSERT_OK(mp_queue_put(q, "a", 1, 1));
    ASSERT_OK(mp_queue_put(q, "b", 1, 1));
    ASSERT_TRUE(mp_queue_full(q)); /* maxsize 2 */
    ASSERT_ERR(MP_EFULL, mp_queue_put(q, "c", 1, 0.05));
    size_t n = 0;
    ASSERT_OK(mp_queue_qsize(plain, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(mp_queue_qsize(q, &n));
    ASSERT_EQ(n, 2);
    double t0 = now();
    ASSERT_ERR(MP_ETIMEDOUT, mp_queue_join(q, 0.2));
    ASSERT_GE(now() - t0, 0.15);
    mp_buf b = MP_BUF_INIT;
    ASSERT_OK(mp_queue_get(q, &b, 1));
    ASSERT_OK(mp_queue_get(q, &b, 1));
    ASSERT_ERR(MP_ETIMEDOUT, mp_queue_join(q, 0.05)); /* got, not done */
    ASSERT_OK(mp_queue_task_done(q));
    ASSERT_ERR(MP_ETIMEDOUT, mp_queue_join(q, 0.05));
    ASSERT_OK(mp_queue_task_done(q));
    ASSERT_OK(mp_queue_join(q, 1));
    ASSERT_ERR(MP_EINVAL, mp_queue_task_done(q));
    mp_buf_free(&b);
    mp_queue_free(plain);

    /* a dup and an args copy in this process are the joinable queue too */
    mp_args *a = NULL;
    ASSERT_OK(mp_args_of(&a, "Q", q));
    ASSERT_OK(mp_queue_put(q, "x", 1, 1));
    ASSERT_OK(mp_queue_get(mp_args_queue(a, 0), &b, 1));
    ASSERT_OK(mp_queue_task_done(mp_args_queue(a, 0)));
    ASSERT_OK(mp_queue_join(q, 1));
    mp_buf_free(&b);
    mp_args_free(a);
    mp_queue_free(q);

    /* the three travel to a child of this start method and back */
    arr_jq_ns_round(ctx, m);
    mp_manager_free(m);
}

/* args: joinable queue, ready pipe fd.  Take one message, say so, and wait
 * to be killed with it undone. */
static int child_take_and_hold(const mp_args *a)
{
    mp_buf b = MP_BUF_INIT;
    ASSERT_OK(mp_queue_get(mp_args_queue(a, 0), &b, 30));
    ASSERT_EQ(1, write(mp_args_fd(a, 1), "r", 1));
    for (;;)
        pause();
}

/* A consumer that dies with messages got and not done: its tasks are
 * written off, and join returns MP_EOWNERDEAD (not 0, not a hang) — every
 * join waiting then, or the next one when none was.  A consumer killed
 * while its get waits has nothing written off. */
MP_TEST(manager_joinable_queue_consumer_killed, .variants = MP_START_METHODS, .timeout_s = 90)
{
    mp_manager *m = start_manager(ctx);
    mp_queue *q;
    ASSERT_OK(mp_manager_joinable_queue(m, "jq", 0, &q));
    int ready[2];
    ASSERT_EQ(0, pipe2(ready, O_CLOEXEC));
    mp_args *a = NULL;
    ASSERT_OK(mp_args_of(&a, "Qf", q, ready[1]));

    /* killed while this process waits in join */
    ASSERT_OK(mp_queue_put(q, "1", 1, 1));
    mp_process *p = mp_test_start(ctx, child_take_and_hold, a);
    await_ready(ready[0]);
    pid_t victim = mp_process_pid(p);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, killer_thread, &victim), 0);
    double t0 = now();
    ASSERT_ERR(MP_EOWNERDEAD, mp_queue_join(q, 30));
    ASSERT_LT(now() - t0, 10);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(-SIGKILL, mp_test_join(p, 20));
    ASSERT_OK(mp_queue_join(q, 1)); /* reported once */
    ASSERT_ERR(MP_EINVAL, mp_queue_task_done(q)); /* nothing left to do */

    /* killed while nobody joins, another task still open: the join that
     * returns once that one is done reports the write-off */
    ASSERT_OK(mp_queue_put(q, "2", 1, 1));
    ASSERT_OK(mp_queue_put(q, "3", 1, 1));
    p = mp_test_start(ctx, child_take_and_hold, a);
    await_ready(ready[0]);
    mp_test_kill(p);
    mp_buf b = MP_BUF_INIT;
    ASSERT_OK(mp_queue_get(q, &b, 10));
    ASSERT_MEMEQ(b.data, "3", 1);
    t0 = now();
    ASSERT_ERR(MP_ETIMEDOUT, mp_queue_join(q, 0.1)); /* "3" still open */
    ASSERT_OK(mp_queue_task_done(q));
    ASSERT_ERR(MP_EOWNERDEAD, mp_queue_join(q, 10));
    ASSERT_LT(now() - t0, 10);
    ASSERT_OK(mp_queue_join(q, 1));

    /* killed while its get waits: it took nothing, nothing is written off */
    waitables w = {.q = q};
    ASSERT_OK(mp_manager_lock(m, "l", &w.l));
    ASSERT_OK(mp_manager_semaphore(m, "s", 0, &w.s));
    ASSERT_OK(mp_manager_event(m, "e", &w.e));
    ASSERT_EQ(0, pipe2(w.ready, O_CLOEXEC));
    p = start_blocked(ctx, &w, 0);
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL); /* into its get */
    mp_test_kill(p);
    ASSERT_OK(mp_queue_put(q, "4", 1, 1));
    ASSERT_OK(mp_queue_get(q, &b, 10));
    ASSERT_MEMEQ(b.data, "4", 1);
    ASSERT_OK(mp_queue_task_done(q));
    ASSERT_OK(mp_queue_join(q, 10));
    w.q = NULL; /* freed below */
    waitables_free(&w);

    mp_buf_free(&b);
    mp_args_free(a);
    close(ready[0]);
    close(ready[1]);
    mp_queue_free(q);
    still_serving(m);
    mp_manager_free(m);
}

MP_TEST(manager_namespace, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    mp_dict *ns, *d, *again;
    ASSERT_OK(mp_manager_namespace(m, "cfg", &ns));
    ASSERT_OK(mp_manager_dict(m, "cfg", &d)); /* a dict of the same name: apart */
    mp_buf v = MP_BUF_INIT;
    ASSERT_ERR(MP_ENOENT, mp_dict_get(ns, "x", 1, &v)); /* no such attribute */
    ASSERT_OK(mp_dict_set(ns, "x", 1, "1", 1));
    ASSERT_OK(mp_dict_set(ns, "name", 4, "abc", 3));
    ASSERT_ERR(MP_ENOENT, mp_dict_get(d, "x", 1, &v));
    size_t n = 9;
    ASSERT_OK(mp_dict_len(d, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(mp_manager_namespace(m, "cfg", &again));
    ASSERT_OK(mp_dict_get(again, "name", 4, &v));
    ASSERT_EQ(v.len, 3);
    ASSERT_MEMEQ(v.data, "abc", 3);
    ASSERT_OK(mp_dict_del(again, "x", 1));
    ASSERT_ERR(MP_ENOENT, mp_dict_del(ns, "x", 1));
    ASSERT_OK(mp_dict_len(ns, &n));
    ASSERT_EQ(n, 1);
    ASSERT_OK(mp_dict_keys(ns, &v)); /* vars(ns): one attribute */
    ASSERT_GT(v.len, 0);
    /* the dict methods serve a namespace too, and a copy stays one: into
     * the namespace "cfg2", not the dict of that name */
    bool in = false;
    ASSERT_OK(mp_dict_contains(ns, "name", 4, &in));
    ASSERT_TRUE(in);
    ASSERT_OK(mp_dict_copy(ns, "cfg2"));
    mp_dict *ns2, *d2;
    ASSERT_OK(mp_manager_namespace(m, "cfg2", &ns2));
    ASSERT_OK(mp_manager_dict(m, "cfg2", &d2));
    ASSERT_OK(mp_dict_len(ns2, &n));
    ASSERT_EQ(n, 1);
    ASSERT_OK(mp_dict_len(d2, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(mp_dict_clear(ns2));
    ASSERT_OK(mp_dict_len(ns2, &n));
    ASSERT_EQ(n, 0);
    mp_dict_free(d2);
    mp_dict_free(ns2);
    mp_buf_free(&v);
    mp_dict_free(again);
    mp_dict_free(d);
    mp_dict_free(ns);

    /* in mp_args to a child of this start method (with the other two) */
    arr_jq_ns_round(ctx, m);
    mp_manager_free(m);
}

/* The three proxies over a connection (no descriptor: a byte pipe would do)
 * and in mp_args over TCP, to a manager on 127.0.0.1. */
MP_TEST(manager_array_jqueue_namespace_travel, .variants = MP_START_METHODS, .timeout_s = 60)
{
    /* the process authkey: a handle over a connection carries no key and
     * the receiver uses its own (docs/security.md) */
    mp_manager *m = NULL;
    ASSERT_OK(mp_manager_start(&m, ctx, "tcp:127.0.0.1:0", NULL, 0));
    ASSERT_TRUE(strncmp(mp_manager_address(m), "tcp:127.0.0.1:", 14) == 0);
    mp_array *arr;
    mp_queue *q;
    mp_dict *ns;
    ASSERT_OK(mp_manager_array(m, "t-arr", MP_INT64, 4, NULL, &arr));
    ASSERT_OK(mp_manager_joinable_queue(m, "t-jq", 0, &q));
    ASSERT_OK(mp_manager_namespace(m, "t-ns", &ns));

    /* over a connection: the receiver's handles reach the same objects */
    mp_conn *c1, *c2;
    ASSERT_OK(mp_pipe(&c1, &c2, true));
    mp_args *a = NULL, *r = NULL;
    ASSERT_OK(mp_args_of(&a, "AQD", arr, q, ns));
    ASSERT_OK(mp_conn_send(c1, a));
    ASSERT_OK(mp_conn_recv(c2, &r));
    mp_args_free(a);
    int64_t four[4] = {1, 2, 3, 4}, got[4] = {0};
    ASSERT_OK(mp_array_store(mp_args_array(r, 0), 0, 4, four));
    ASSERT_OK(mp_array_load(arr, 0, 4, got));
    ASSERT_MEMEQ(got, four, sizeof four);
    ASSERT_EQ(mp_array_len(mp_args_array(r, 0)), 4);
    ASSERT_OK(mp_queue_put(q, "m", 1, 1));
    mp_buf b = MP_BUF_INIT;
    ASSERT_OK(mp_queue_get(mp_args_queue(r, 1), &b, 5));
    ASSERT_ERR(MP_ETIMEDOUT, mp_queue_join(q, 0.05));
    ASSERT_OK(mp_queue_task_done(mp_args_queue(r, 1))); /* joinable over there */
    ASSERT_OK(mp_queue_join(q, 5));
    ASSERT_OK(mp_dict_set(mp_args_dict(r, 2), "k", 1, "v", 1));
    ASSERT_OK(mp_dict_get(ns, "k", 1, &b));
    ASSERT_MEMEQ(b.data, "v", 1);
    mp_buf_free(&b);
    mp_args_free(r);
    mp_conn_close(c1);
    mp_conn_close(c2);
    mp_array_free(arr);
    mp_queue_free(q);
    mp_dict_free(ns);

    /* in mp_args to a child, over TCP */
    arr_jq_ns_round(ctx, m);
    mp_manager_free(m);
}

/* The server's own checks on the new kinds, by hand-made requests (our
 * clients check bounds before they send): a range past the end is
 * MP_EINVAL and touches nothing, a malformed store MP_EBADMSG, the
 * joinable ops are the joinable queue's only, an array opened under
 * another shape is refused. */
MP_TEST(manager_array_jqueue_server_checks, .variants = MP_START_METHODS)
{
    enum { W_ARR_LOAD = 170, W_ARR_STORE, W_ARR_INIT, W_JQ_TASK_DONE = 180, W_JQ_JOIN };
    mp_manager *m = start_manager(ctx);
    int32_t init[4] = {1, 2, 3, 4}, got[4];
    mp_array *arr;
    mp_queue *q, *jq;
    mp_value *v;
    ASSERT_OK(mp_manager_array(m, "sa", MP_INT32, 4, init, &arr));
    ASSERT_OK(mp_manager_queue(m, "q", 0, &q));
    ASSERT_OK(mp_manager_joinable_queue(m, "jq", 0, &jq));
    ASSERT_OK(mp_manager_value(m, "v", MP_INT32, &v));
    mp_conn *c;
    ASSERT_OK(mp_client(&c, mp_manager_address(m), KEY, KEYLEN));
    int32_t three[3] = {7, 7, 7};
    ASSERT_ERR(MP_EINVAL, mp_test_rpc(c, req_of("issii", W_ARR_LOAD, "array", "sa", 3, 2)));
    ASSERT_ERR(MP_EINVAL, mp_test_rpc(c, req_of("issii", W_ARR_LOAD, "array", "sa", -1, 1)));
    ASSERT_ERR(MP_EINVAL, mp_test_rpc(c, req_of("issii", W_ARR_LOAD, "array", "sa", 0, -1)));
    ASSERT_ERR(MP_EINVAL, mp_test_rpc(c, req_of("issib", W_ARR_STORE, "array", "sa", 2,
                                                three, sizeof three)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issib", W_ARR_STORE, "array", "sa", 0,
                                                 three, (size_t)5)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issb", W_ARR_STORE, "array", "sa",
                                                 three, (size_t)4)));
    ASSERT_ERR(MP_EINVAL, mp_test_rpc(c, req_of("issi", W_ARR_INIT, "array", "sa",
                                                5 << 8 | MP_INT32)));
    ASSERT_ERR(MP_EINVAL, mp_test_rpc(c, req_of("issi", W_OPEN, "array", "sb", 99)));
    ASSERT_ERR(MP_EINVAL, mp_test_rpc(c, req_of("issi", W_OPEN, "array", "sb", -1)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issii", W_ARR_LOAD, "value", "v", 0, 1)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("iss", W_JQ_TASK_DONE, "queue", "q")));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issd", W_JQ_JOIN, "queue", "q", 0.0)));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req_of("issii", W_ARR_LOAD, "jqueue", "jq", 0, 1)));
    ASSERT_ERR(MP_EINVAL, mp_test_rpc(c, req_of("iss", W_JQ_TASK_DONE, "jqueue", "jq")));
    ASSERT_OK(mp_test_rpc(c, req_of("issd", W_JQ_JOIN, "jqueue", "jq", 0.0)));
    mp_conn_close(c);
    ASSERT_OK(mp_array_load(arr, 0, 4, got)); /* untouched */
    ASSERT_MEMEQ(got, init, sizeof init);
    mp_array_free(arr);
    mp_queue_free(q);
    mp_queue_free(jq);
    mp_value_free(v);
    mp_manager_free(m);
}

/* args: joinable queue, ready pipe fd.  Join for ever (killed first). */
static int child_join_forever(const mp_args *a)
{
    ASSERT_EQ(1, write(mp_args_fd(a, 1), "r", 1));
    return mp_queue_join(mp_args_queue(a, 0), MP_FOREVER) == 0 ? 3 : 4;
}

/* A client killed while it waits in join leaves no thread or descriptor on
 * the server (its wait ends soon after it hangs up), and, having taken
 * nothing, has nothing written off. */
MP_TEST(manager_dead_joiner_leaves_nothing_behind, .variants = MP_START_METHODS,
        .timeout_s = 60)
{
    mp_manager *m = start_manager(ctx);
    pid_t pid = mp_manager_pid(m);
    mp_queue *q;
    ASSERT_OK(mp_manager_joinable_queue(m, "jq", 0, &q));
    ASSERT_OK(mp_queue_put(q, "t", 1, 1)); /* one task open: join waits */
    still_serving(m);
    int fds0 = proc_count(pid, "fd"), threads0 = proc_count(pid, "task");
    int ready[2];
    ASSERT_EQ(0, pipe2(ready, O_CLOEXEC));
    mp_args *a = NULL;
    ASSERT_OK(mp_args_of(&a, "Qf", q, ready[1]));
    mp_process *p[2];
    for (int i = 0; i < 2; i++) {
        p[i] = mp_test_start(ctx, child_join_forever, a);
        await_ready(ready[0]);
    }
    double until = now() + 20; /* their joins arrive: a thread each */
    while (proc_count(pid, "task") < threads0 + 2) {
        ASSERT_LT(now(), until);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < 2; i++)
        mp_test_kill(p[i]);
    server_back_to(pid, fds0, threads0, 10);
    mp_buf b = MP_BUF_INIT;
    ASSERT_OK(mp_queue_get(q, &b, 5));
    ASSERT_OK(mp_queue_task_done(q));
    ASSERT_OK(mp_queue_join(q, 5)); /* 0: nothing was written off */
    mp_buf_free(&b);
    mp_args_free(a);
    close(ready[0]);
    close(ready[1]);
    mp_queue_free(q);
    mp_manager_free(m);
}

/* ---- RLock, BoundedSemaphore, Condition, Barrier (issue 17) ------------- */

/* args: rlock, event held.  Take the RLock twice, say so, wait to be killed. */
static int child_hold_rlock_twice(const mp_args *a)
{
    mp_lock *l = mp_args_lock(a, 0);
    ASSERT_TRUE(mp_lock_is_recursive(l)); /* the proxy travelled as an RLock */
    ASSERT_OK(mp_lock_acquire(l, 30));
    ASSERT_OK(mp_lock_acquire(l, 30));
    mp_event_set(mp_args_event(a, 1));
    for (;;)
        pause();
}

static void *t_release_foreign(void *arg)
{
    return (void *)(intptr_t)mp_lock_release(arg);
}

MP_TEST(manager_rlock, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_manager *m = start_manager(ctx);
    mp_lock *r, *plain;
    mp_event *held;
    ASSERT_OK(mp_manager_rlock(m, "rl", &r));
    ASSERT_OK(mp_manager_lock(m, "rl", &plain)); /* another kind: another object */
    ASSERT_OK(mp_manager_event(m, "held", &held));
    ASSERT_TRUE(mp_lock_is_recursive(r));
    ASSERT_FALSE(mp_lock_is_recursive(plain));

    /* re-entrant, released once per acquire, owned by the thread */
    ASSERT_ERR(MP_EINVAL, mp_lock_release(r));
    ASSERT_OK(mp_lock_acquire(r, 1));
    ASSERT_OK(mp_lock_acquire(r, 1));
    ASSERT_OK(mp_lock_acquire(r, 0));
    ASSERT_FALSE(mp_lock_locked(plain));
    pthread_t t;
    void *res;
    ASSERT_EQ(pthread_create(&t, NULL, t_release_foreign, r), 0);
    ASSERT_EQ(pthread_join(t, &res), 0);
    ASSERT_EQ((int)(intptr_t)res, MP_EPERM);
    ASSERT_OK(mp_lock_release(r));
    ASSERT_OK(mp_lock_release(r));
    ASSERT_TRUE(mp_lock_locked(r));
    ASSERT_OK(mp_lock_release(r));
    ASSERT_FALSE(mp_lock_locked(r));
    ASSERT_ERR(MP_EINVAL, mp_lock_release(r));

    /* a client killed holding it twice: released at once, the next
     * acquirer (already waiting) hears MP_EOWNERDEAD and holds it once */
    mp_args *a = NULL;
    ASSERT_OK(mp_args_of(&a, "LE", r, held));
    mp_process *p = mp_test_start(ctx, child_hold_rlock_twice, a);
    ASSERT_OK(mp_event_wait(held, 20));
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(r, 0.05));
    pid_t victim = mp_process_pid(p);
    ASSERT_EQ(pthread_create(&t, NULL, killer_thread, &victim), 0);
    double t0 = now();
    ASSERT_ERR(MP_EOWNERDEAD, mp_lock_acquire(r, 20));
    ASSERT_LT(now() - t0, 10);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(-SIGKILL, mp_test_join(p, 20));
    ASSERT_OK(mp_lock_release(r));
    ASSERT_FALSE(mp_lock_locked(r)); /* the dead one's depth went with it */
    ASSERT_OK(mp_lock_acquire(r, 1)); /* reported once */
    ASSERT_OK(mp_lock_release(r));
    mp_args_free(a);

    mp_lock_free(r);
    mp_lock_free(plain);
    mp_event_free(held);
    mp_manager_free(m);
}

/* args: bounded semaphore.  Take one unit, give back one, then one too many. */
static int child_bsem(const mp_args *a)
{
    mp_semaphore *s = mp_args_semaphore(a, 0);
    ASSERT_OK(mp_semaphore_acquire(s, 10));
    ASSERT_OK(mp_semaphore_release(s));
    return mp_semaphore_release(s) == MP_EINVAL ? 0 : 3;
}

MP_TEST(manager_bounded_semaphore, .variants = MP_START_METHODS)
{
    mp_manager *m = start_manager(ctx);
    mp_semaphore *b, *plain, *again;
    ASSERT_OK(mp_manager_bounded_semaphore(m, "s", 2, &b));
    ASSERT_OK(mp_manager_semaphore(m, "s", 2, &plain)); /* a name of its own */
    ASSERT_ERR(MP_EINVAL, mp_manager_bounded_semaphore(m, "big", (unsigned)INT32_MAX + 1, &again));
    int v = -1;
    ASSERT_ERR(MP_EINVAL, mp_semaphore_release(b)); /* past the initial value */
    ASSERT_OK(mp_semaphore_value(b, &v));
    ASSERT_EQ(v, 2);
    ASSERT_OK(mp_semaphore_release(plain)); /* unbounded: 3 */
    ASSERT_OK(mp_semaphore_value(plain, &v));
    ASSERT_EQ(v, 3);
    ASSERT_OK(mp_semaphore_acquire(b, 0));
    ASSERT_OK(mp_semaphore_acquire(b, 0));
    ASSERT_ERR(MP_ETIMEDOUT, mp_semaphore_acquire(b, 0.05));
    ASSERT_OK(mp_semaphore_release(b));
    ASSERT_OK(mp_semaphore_release(b));
    ASSERT_ERR(MP_EINVAL, mp_semaphore_release(b));
    /* found by name, bound kept (a later value is ignored, as for a
     * semaphore); and in a child */
    ASSERT_OK(mp_manager_bounded_semaphore(m, "s", 5, &again));
    ASSERT_ERR(MP_EINVAL, mp_semaphore_release(again));
    mp_args *a = NULL;
    ASSERT_OK(mp_args_of(&a, "S", again));
    ASSERT_EQ(mp_test_run(ctx, child_bsem, a), 0);
    mp_args_free(a);
    ASSERT_OK(mp_semaphore_value(b, &v));
    ASSERT_EQ(v, 2);
    mp_semaphore_free(again);
    mp_semaphore_free(b);
    mp_semaphore_free(plain);
    mp_manager_free(m);
}

/* args: condition, event ready, int timeout ms.  Wait once, holding the
 * lock; 0 notified (and the lock held again), 5 timed out. */
static int child_cond_wait(const mp_args *a)
{
    mp_condition *c = mp_args_condition(a, 0);
    ASSERT_OK(mp_condition_acquire(c, 20));
    mp_event_set(mp_args_event(a, 1));
    int err = mp_condition_wait(c, (double)mp_args_int(a, 2) / 1000.0);
    if (err != 0 && err != MP_ETIMEDOUT)
        return 6;
    ASSERT_TRUE(mp_lock_locked(mp_condition_lock(c)));
    ASSERT_OK(mp_condition_release(c));
    return err == 0 ? 0 : 5;
}

/* Start child_cond_wait and return once it is inside its wait: its ready
 * event is set with the lock held, and our acquire then needs the wait's
 * release. */
static mp_process *start_cond_waiter(mp_context *ctx, mp_condition *c, mp_event *ready, int ms)
{
    mp_event_clear(ready);
    mp_args *a = NULL;
    ASSERT_OK(mp_args_of(&a, "CEi", c, ready, ms));
    mp_process *p = mp_test_start(ctx, child_cond_wait, a);
    mp_args_free(a);
    ASSERT_OK(mp_event_wait(ready, 30));
    ASSERT_OK(mp_condition_acquire(c, 30));
    ASSERT_OK(mp_condition_release(c));
    return p;
}

typedef struct {
    mp_dict *d;
} pred_arg;

static bool dict_n_is_3(void *arg)
{
    return dict_int(((pred_arg *)arg)->d, "n") == 3;
}

/* args: condition, dict.  Add 1 to "n" three times, notifying each time. */
static int child_cond_producer(const mp_args *a)
{
    mp_condition *c = mp_args_condition(a, 0);
    mp_dict *d = mp_args_dict(a, 1);
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(mp_condition_acquire(c, 20));
        ASSERT_OK(mp_dict_add(d, "n", 1, 1, NULL));
        ASSERT_OK(mp_condition_notify_all(c));
        ASSERT_OK(mp_condition_release(c));
    }
    return 0;
}

/* The condition's calls on one made over @lock (NULL: its own RLock). */
static void condition_round(mp_context *ctx, mp_manager *m, const char *name, mp_lock *lock)
{
    mp_condition *c;
    mp_event *ready;
    ASSERT_OK(mp_manager_condition(m, name, lock, &c));
    ASSERT_OK(mp_manager_event(m, "cond-ready", &ready));
    mp_lock *l = mp_condition_lock(c);
    ASSERT_TRUE(l != NULL);
    ASSERT_EQ(mp_lock_is_recursive(l), lock == NULL || mp_lock_is_recursive(lock));

    /* the lock is needed */
    ASSERT_ERR(MP_EPERM, mp_condition_wait(c, 0.01));
    ASSERT_ERR(MP_EPERM, mp_condition_notify(c, 1));
    ASSERT_ERR(MP_EINVAL, mp_condition_notify(c, -1));
    /* a timed-out wait holds the lock again */
    ASSERT_OK(mp_condition_acquire(c, 5));
    double t0 = now();
    ASSERT_ERR(MP_ETIMEDOUT, mp_condition_wait(c, 0.1));
    ASSERT_GE(now() - t0, 0.09);
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_OK(mp_condition_notify(c, 1)); /* nobody waits: a no-op */
    ASSERT_OK(mp_condition_release(c));
    ASSERT_FALSE(mp_lock_locked(l));

    /* notify(1) wakes one of two waiters (children of this start method,
     * the condition in their args), notify_all the rest */
    mp_process *w1 = start_cond_waiter(ctx, c, ready, 30000);
    mp_process *w2 = start_cond_waiter(ctx, c, ready, 30000);
    ASSERT_OK(mp_condition_acquire(c, 5));
    ASSERT_OK(mp_condition_notify(c, 1));
    ASSERT_OK(mp_condition_release(c));
    ASSERT_EQ(mp_test_join(w1, 30), 0); /* the oldest, as Python's */
    t0 = now();
    while (mp_process_is_alive(w2) && now() - t0 < 0.3) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ASSERT_TRUE(mp_process_is_alive(w2)); /* not woken by that one */
    ASSERT_OK(mp_condition_acquire(c, 5));
    ASSERT_OK(mp_condition_notify_all(c));
    ASSERT_OK(mp_condition_release(c));
    ASSERT_EQ(mp_test_join(w2, 30), 0);

    /* wait_for: the predicate in the client, over a dict a child fills */
    mp_dict *d;
    char dn[64];
    snprintf(dn, sizeof dn, "%s-d", name);
    ASSERT_OK(mp_manager_dict(m, dn, &d));
    mp_args *a = NULL;
    ASSERT_OK(mp_args_of(&a, "CD", c, d));
    ASSERT_OK(mp_condition_acquire(c, 5));
    mp_process *p = mp_test_start(ctx, child_cond_producer, a);
    pred_arg pa = {d};
    ASSERT_OK(mp_condition_wait_for(c, dict_n_is_3, &pa, 30));
    ASSERT_TRUE(mp_lock_locked(l));
    ASSERT_OK(mp_condition_release(c));
    ASSERT_EQ(mp_test_join(p, 30), 0);
    ASSERT_OK(mp_condition_acquire(c, 5));
    ASSERT_OK(mp_dict_del(d, "n", 1)); /* 0 now: never 3 */
    ASSERT_ERR(MP_ETIMEDOUT, mp_condition_wait_for(c, dict_n_is_3, &pa, 0.1));
    ASSERT_OK(mp_condition_release(c));
    mp_args_free(a);
    mp_dict_free(d);
    mp_event_free(ready);
    mp_condition_free(c);
}

MP_TEST(manager_condition, .variants = MP_START_METHODS, .timeout_s = 120)
{
    mp_manager *m = start_manager(ctx);
    condition_round(ctx, m, "own", NULL);
    mp_lock *rl, *pl, *local;
    ASSERT_OK(mp_manager_rlock(m, "c-rlock", &rl));
    condition_round(ctx, m, "over-rlock", rl);
    ASSERT_OK(mp_manager_lock(m, "c-lock", &pl));
    condition_round(ctx, m, "over-lock", pl);

    /* an RLock held twice is wholly released by wait, and held twice after */
    mp_condition *c;
    ASSERT_OK(mp_manager_condition(m, "over-rlock", rl, &c));
    ASSERT_OK(mp_lock_acquire(rl, 5));
    ASSERT_OK(mp_lock_acquire(rl, 5));
    ASSERT_ERR(MP_ETIMEDOUT, mp_condition_wait(c, 0.05));
    ASSERT_OK(mp_lock_release(rl));
    ASSERT_TRUE(mp_lock_locked(rl));
    ASSERT_OK(mp_lock_release(rl));
    ASSERT_FALSE(mp_lock_locked(rl));
    mp_condition_free(c);

    /* a condition is bound to the lock it was first used with */
    ASSERT_OK(mp_manager_condition(m, "over-lock", rl, &c));
    ASSERT_OK(mp_lock_acquire(rl, 5));
    ASSERT_ERR(MP_EINVAL, mp_condition_notify(c, 1));
    ASSERT_OK(mp_lock_release(rl));
    mp_condition_free(c);
    /* a local lock cannot be the lock of a manager's condition */
    ASSERT_OK(mp_lock_new(&local));
    ASSERT_ERR(MP_EINVAL, mp_manager_condition(m, "x", local, &c));
    ASSERT_TRUE(c == NULL);
    mp_lock_free(local);
    mp_lock_free(rl);
    mp_lock_free(pl);
    mp_manager_free(m);
}

/* A condition waiter killed in its wait is never counted as notified, and
 * a notified one killed before it had the lock back passes the notification
 * on; neither leaves the lock held. */
MP_TEST(manager_condition_waiter_killed, .variants = MP_START_METHODS, .timeout_s = 120)
{
    mp_manager *m = start_manager(ctx);
    mp_condition *c;
    mp_event *ready;
    ASSERT_OK(mp_manager_condition(m, "c", NULL, &c));
    ASSERT_OK(mp_manager_event(m, "ready", &ready));

    /* killed while waiting, before the notify: the live waiter gets it */
    mp_process *victim = start_cond_waiter(ctx, c, ready, 60000);
    mp_process *live = start_cond_waiter(ctx, c, ready, 60000);
    mp_test_kill(victim);
    double t0 = now();
    ASSERT_OK(mp_condition_acquire(c, 10));
    ASSERT_OK(mp_condition_notify(c, 1));
    ASSERT_OK(mp_condition_release(c));
    ASSERT_EQ(mp_test_join(live, 30), 0);
    ASSERT_LT(now() - t0, 10);

    /* notified, then killed while the lock is still ours: the notification
     * goes on to the live waiter when we release it */
    victim = start_cond_waiter(ctx, c, ready, 60000);
    live = start_cond_waiter(ctx, c, ready, 60000);
    ASSERT_OK(mp_condition_acquire(c, 10));
    ASSERT_OK(mp_condition_notify(c, 1)); /* the victim, the oldest */
    mp_test_kill(victim);
    t0 = now();
    ASSERT_OK(mp_condition_release(c));
    ASSERT_EQ(mp_test_join(live, 30), 0);
    ASSERT_LT(now() - t0, 10);

    /* nobody holds the lock, nobody waits */
    ASSERT_OK(mp_condition_acquire(c, 5));
    ASSERT_OK(mp_condition_release(c));
    ASSERT_FALSE(mp_lock_locked(mp_condition_lock(c)));
    mp_event_free(ready);
    mp_condition_free(c);
    mp_manager_free(m);
}

/* A waiter whose wake-up was sent but whose receipt never came (its
 * process died between the server's reply and its own receipt: here a raw
 * client that hangs up instead of sending it) takes nothing with it: the
 * lock it was handed is free again, and its notification goes on to the
 * next waiter.  A receipt that declines (a live client giving it back) does
 * the same, and that client's connection goes on. */
MP_TEST(manager_condition_receipt_not_sent, .timeout_s = 90)
{
    /* not forked: a forked child would hold the raw connection open, and
     * the server would see no hang-up */
    mp_context *fs = mp_get_context("forkserver");
    mp_manager *m = start_manager(fs);
    mp_lock *lk;
    mp_condition *c;
    mp_event *ready;
    ASSERT_OK(mp_manager_lock(m, "rl", &lk));
    ASSERT_OK(mp_manager_condition(m, "rc", lk, &c));
    ASSERT_OK(mp_manager_event(m, "ready", &ready));
    for (int decline = 0; decline < 2; decline++) {
        mp_conn *raw;
        ASSERT_OK(mp_client(&raw, mp_manager_address(m), KEY, KEYLEN));
        ASSERT_EQ(0, mp_test_rpc(raw, req_of("issd", W_LOCK_ACQ, "lock", "rl", 10.0)));
        ASSERT_OK(mp_conn_send_bytes(raw, "", 0)); /* the lock taken */
        mp_args *wait = req_of("issssdi", W_COND_WAIT, "condition", "rc", "lock", "rl", 60.0, 0);
        ASSERT_OK(mp_conn_send(raw, wait));
        mp_args_free(wait);
        /* the raw client waits once its wait has let the lock go; then a
         * live waiter behind it */
        ASSERT_OK(mp_condition_acquire(c, 10));
        ASSERT_OK(mp_condition_release(c));
        mp_process *live = start_cond_waiter(fs, c, ready, 20000);

        ASSERT_OK(mp_condition_acquire(c, 10));
        ASSERT_OK(mp_condition_notify(c, 1)); /* the raw client, the oldest */
        ASSERT_OK(mp_condition_release(c));
        ASSERT_EQ(1, mp_conn_poll(raw, 20));
        mp_args *rep = NULL;
        ASSERT_OK(mp_conn_recv(raw, &rep));
        ASSERT_EQ(2, mp_args_count(rep));
        ASSERT_EQ(0, mp_args_int(rep, 0)); /* the lock is ours again */
        ASSERT_EQ(1, mp_args_int(rep, 1)); /* notified */
        mp_args_free(rep);
        if (decline)
            ASSERT_OK(mp_conn_send_bytes(raw, "n", 1));
        else
            mp_conn_close(raw);

        /* the live waiter gets the lock and the notification (not its
         * 20 s timeout), and then so do we */
        ASSERT_EQ(0, mp_test_join(live, 30));
        ASSERT_OK(mp_condition_acquire(c, 10));
        ASSERT_OK(mp_condition_release(c));
        ASSERT_FALSE(mp_lock_locked(lk));
        if (decline) { /* the connection still serves */
            ASSERT_EQ(0, mp_test_rpc(raw, req_of("issd", W_LOCK_ACQ, "lock", "rl", 10.0)));
            ASSERT_OK(mp_conn_send_bytes(raw, "", 0));
            ASSERT_TRUE(mp_lock_locked(lk));
            mp_conn_close(raw);
        }
    }
    /* a lock held by a client that hung up is let go, as its dead owner's */
    ASSERT_ERR(MP_EOWNERDEAD, mp_condition_acquire(c, 10));
    ASSERT_OK(mp_condition_release(c));
    mp_event_free(ready);
    mp_condition_free(c);
    mp_lock_free(lk);
    mp_manager_free(m);
}

/* args: barrier, dict, int rounds.  Wait @rounds times, adding each index
 * to "sum". */
static int child_bar_rounds(const mp_args *a)
{
    mp_barrier *b = mp_args_barrier(a, 0);
    mp_dict *d = mp_args_dict(a, 1);
    ASSERT_EQ(mp_barrier_parties(b), 3);
    for (int64_t i = 0; i < mp_args_int(a, 2); i++) {
        int idx = mp_barrier_wait(b, 30);
        ASSERT_TRUE(idx >= 0 && idx < 3);
        ASSERT_OK(mp_dict_add(d, "sum", 3, idx, NULL));
    }
    return 0;
}

/* args: barrier, int timeout ms.  One wait: 0 passed, 7 broken, 8 timed out. */
static int child_bar_wait(const mp_args *a)
{
    int r = mp_barrier_wait(mp_args_barrier(a, 0), (double)mp_args_int(a, 1) / 1000.0);
    return r >= 0 ? 0 : r == MP_EBROKEN ? 7 : r == MP_ETIMEDOUT ? 8 : 9;
}

static mp_process *start_bar_waiter(mp_context *ctx, mp_barrier *b, int ms)
{
    mp_args *a = NULL;
    ASSERT_OK(mp_args_of(&a, "Bi", b, ms));
    mp_process *p = mp_test_start(ctx, child_bar_wait, a);
    mp_args_free(a);
    return p;
}

/* Until @n wait on @b (30 s at most). */
static void await_waiting(mp_barrier *b, unsigned n)
{
    double t0 = now();
    while (mp_barrier_n_waiting(b) != n) {
        ASSERT_LT(now() - t0, 30);
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

MP_TEST(manager_barrier, .variants = MP_START_METHODS, .timeout_s = 120)
{
    mp_manager *m = start_manager(ctx);
    mp_barrier *b, *again;
    mp_dict *d;
    ASSERT_ERR(MP_EINVAL, mp_manager_barrier(m, "none", 0, MP_FOREVER, &b));
    ASSERT_OK(mp_manager_barrier(m, "b", 3, MP_FOREVER, &b));
    ASSERT_OK(mp_manager_dict(m, "d", &d));
    ASSERT_EQ(mp_barrier_parties(b), 3);
    ASSERT_EQ(mp_barrier_n_waiting(b), 0);
    ASSERT_FALSE(mp_barrier_broken(b));

    /* three parties, ten passes: the indices of each pass are 0, 1, 2 */
    mp_args *a = NULL;
    ASSERT_OK(mp_args_of(&a, "BDi", b, d, 10));
    mp_process *p1 = mp_test_start(ctx, child_bar_rounds, a);
    mp_process *p2 = mp_test_start(ctx, child_bar_rounds, a);
    int64_t mine = 0;
    for (int i = 0; i < 10; i++) {
        int idx = mp_barrier_wait(b, 30);
        ASSERT_TRUE(idx >= 0 && idx < 3);
        mine += idx;
    }
    ASSERT_EQ(mp_test_join(p1, 30), 0);
    ASSERT_EQ(mp_test_join(p2, 30), 0);
    ASSERT_EQ(dict_int(d, "sum") + mine, 10 * 3);
    mp_args_free(a);

    /* abort: waiters and later waits broken until reset */
    p1 = start_bar_waiter(ctx, b, 30000);
    await_waiting(b, 1);
    ASSERT_OK(mp_barrier_abort(b));
    ASSERT_EQ(mp_test_join(p1, 30), 7);
    ASSERT_TRUE(mp_barrier_broken(b));
    ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, 1));
    ASSERT_OK(mp_barrier_reset(b));
    ASSERT_FALSE(mp_barrier_broken(b));

    /* reset with a waiter: it is broken, the barrier is whole again */
    p1 = start_bar_waiter(ctx, b, 30000);
    await_waiting(b, 1);
    ASSERT_OK(mp_barrier_reset(b));
    ASSERT_EQ(mp_test_join(p1, 30), 7);
    ASSERT_FALSE(mp_barrier_broken(b));
    ASSERT_EQ(mp_barrier_n_waiting(b), 0);

    /* a timeout breaks it: the waiter that timed out gets MP_ETIMEDOUT, the
     * others MP_EBROKEN */
    p1 = start_bar_waiter(ctx, b, 30000);
    await_waiting(b, 1);
    ASSERT_ERR(MP_ETIMEDOUT, mp_barrier_wait(b, 0.2));
    ASSERT_EQ(mp_test_join(p1, 30), 7);
    ASSERT_TRUE(mp_barrier_broken(b));
    ASSERT_OK(mp_barrier_reset(b));

    /* the default timeout is the server's, from the first open */
    ASSERT_OK(mp_manager_barrier(m, "short", 2, 0.2, &again));
    double t0 = now();
    ASSERT_ERR(MP_ETIMEDOUT, mp_barrier_wait(again, MP_FOREVER));
    ASSERT_LT(now() - t0, 10);
    ASSERT_TRUE(mp_barrier_broken(again));
    mp_barrier_free(again);
    ASSERT_OK(mp_manager_barrier(m, "short", 5, MP_FOREVER, &again));
    ASSERT_EQ(mp_barrier_parties(again), 2); /* found, not made again */
    mp_barrier_free(again);

    mp_dict_free(d);
    mp_barrier_free(b);
    mp_manager_free(m);
}

/* A party killed while waiting breaks the barrier at once: the others get
 * MP_EBROKEN long before their timeout. */
MP_TEST(manager_barrier_party_killed, .variants = MP_START_METHODS, .timeout_s = 90)
{
    mp_manager *m = start_manager(ctx);
    mp_barrier *b;
    ASSERT_OK(mp_manager_barrier(m, "b", 3, MP_FOREVER, &b));
    mp_process *live = start_bar_waiter(ctx, b, 60000);
    await_waiting(b, 1);
    mp_process *victim = start_bar_waiter(ctx, b, 60000);
    await_waiting(b, 2);
    double t0 = now();
    mp_test_kill(victim);
    ASSERT_EQ(mp_test_join(live, 30), 7);
    ASSERT_LT(now() - t0, 10);
    ASSERT_TRUE(mp_barrier_broken(b));
    ASSERT_ERR(MP_EBROKEN, mp_barrier_wait(b, 0));
    ASSERT_OK(mp_barrier_reset(b));
    ASSERT_EQ(mp_barrier_n_waiting(b), 0);
    mp_barrier_free(b);
    mp_manager_free(m);
}

/* args: addr, key, condition, barrier, rlock, bounded semaphore: each used
 * once from a client connected over TCP. */
static int child_tcp_sync(const mp_args *a)
{
    ASSERT_TRUE(strncmp(mp_args_str(a, 0), "tcp:127.0.0.1:", 14) == 0);
    mp_condition *c = mp_args_condition(a, 2);
    mp_barrier *b = mp_args_barrier(a, 3);
    mp_lock *r = mp_args_lock(a, 4);
    mp_semaphore *s = mp_args_semaphore(a, 5);
    ASSERT_OK(mp_lock_acquire(r, 10));
    ASSERT_OK(mp_lock_acquire(r, 10));
    ASSERT_OK(mp_lock_release(r));
    ASSERT_OK(mp_lock_release(r));
    ASSERT_ERR(MP_EINVAL, mp_semaphore_release(s));
    ASSERT_TRUE(mp_barrier_wait(b, 30) >= 0); /* the parent is there */
    ASSERT_OK(mp_condition_acquire(c, 10));
    ASSERT_OK(mp_condition_notify(c, 1));
    ASSERT_OK(mp_condition_release(c));
    return 0;
}

MP_TEST(manager_sync_kinds_tcp, .variants = MP_START_METHODS, .timeout_s = 60)
{
    static const uint8_t rkey[16] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};
    mp_manager *m;
    ASSERT_OK(mp_manager_start(&m, ctx, "tcp:127.0.0.1:0", rkey, sizeof rkey));
    mp_condition *c;
    mp_barrier *b;
    mp_lock *r;
    mp_semaphore *s;
    ASSERT_OK(mp_manager_condition(m, "c", NULL, &c));
    ASSERT_OK(mp_manager_barrier(m, "b", 2, 30, &b));
    ASSERT_OK(mp_manager_rlock(m, "r", &r));
    ASSERT_OK(mp_manager_bounded_semaphore(m, "s", 1, &s));
    mp_args *a = NULL;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_str(a, mp_manager_address(m)));
    ASSERT_OK(mp_args_add_bytes(a, rkey, sizeof rkey));
    ASSERT_OK(mp_args_add_condition(a, c));
    ASSERT_OK(mp_args_add_barrier(a, b));
    ASSERT_OK(mp_args_add_lock(a, r));
    ASSERT_OK(mp_args_add_semaphore(a, s));
    /* the parent waits on the condition before the child may notify */
    ASSERT_OK(mp_condition_acquire(c, 10));
    mp_process *p = mp_test_start(ctx, child_tcp_sync, a);
    ASSERT_TRUE(mp_barrier_wait(b, 30) >= 0);
    ASSERT_OK(mp_condition_wait(c, 30));
    ASSERT_OK(mp_condition_release(c));
    ASSERT_EQ(mp_test_join(p, 30), 0);
    mp_args_free(a);
    mp_condition_free(c);
    mp_barrier_free(b);
    mp_lock_free(r);
    mp_semaphore_free(s);
    mp_manager_free(m);
}
