/*
 * Trust boundaries (docs/security.md): what a peer sends is data.  Nothing
 * received on a connection or by a manager loads or runs code, a manager's
 * authkey never leaves for anyone but a child started here, and each
 * object kind decodes only the forms it can have.
 *
 * The forged messages are built from real wire forms the library wrote
 * (read back raw), patched the way an attacker would, so these tests hold
 * whatever the encoder's internals.
 */
#include "mp_test.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define OP_OPEN 1
#define OP_CALL 80

/* ---- the library no peer may load --------------------------------------- */

static char marker[128];

static void evil_arm(void)
{
    snprintf(marker, sizeof marker, "/tmp/mp-test-evil-%d", (int)getpid());
    unlink(marker);
    ASSERT_OK(setenv("MP_TEST_EVIL_MARKER", marker, 1));
}

/* Neither loaded here nor run anywhere (its constructor leaves the mark). */
static void evil_check_never_loaded(void)
{
    void *h = dlopen(MP_TESTLIB_EVIL_PATH, RTLD_LAZY | RTLD_NOLOAD);
    if (h != NULL) {
        dlclose(h);
        MP__FAIL("a peer's bytes made this process load %s", MP_TESTLIB_EVIL_PATH);
    }
    if (access(marker, F_OK) == 0) {
        unlink(marker);
        MP__FAIL("the constructors of %s ran", MP_TESTLIB_EVIL_PATH);
    }
}

/* A function reference naming the library, as the encoder lays one out:
 * object path, build id (none), offset. */
static void put_evil_funcref(mp_buf *b)
{
    ASSERT_OK(mp__put_str(b, MP_TESTLIB_EVIL_PATH));
    ASSERT_OK(mp__put_blob(b, NULL, 0));
    ASSERT_OK(mp__put_u64(b, 0x1100));
}

/* A manager proxy's body as the library wrote it before this issue
 * (address, key, kind, name, parameter): what an attacker would send. */
static void put_old_proxy(mp_buf *b, const char *kind)
{
    ASSERT_OK(mp__put_str(b, "unix:@mp-test-nowhere"));
    ASSERT_OK(mp__put_blob(b, "k", 1));
    ASSERT_OK(mp__put_str(b, kind));
    ASSERT_OK(mp__put_str(b, "x"));
    ASSERT_OK(mp__put_u64(b, 0));
}

#define ARGS_MAGIC 0x3141504dU
#define ARG_OBJECT 7 /* MP_ARG_OBJECT on the wire */
#define TAG_BARRIER 6

static void put_args_head(mp_buf *b, uint32_t count)
{
    ASSERT_OK(mp__put_u32(b, ARGS_MAGIC));
    ASSERT_OK(mp__put_u32(b, count));
}

/* One frame: Python's 4-byte big-endian length, then @body; @fds ride on it. */
static void send_frame_raw(int sock, const mp_buf *body, const int *fds, size_t nfds)
{
    mp_buf f = MP_BUF_INIT;
    uint8_t h[4] = {(uint8_t)(body->len >> 24), (uint8_t)(body->len >> 16),
                    (uint8_t)(body->len >> 8), (uint8_t)body->len};
    ASSERT_OK(mp_buf_append(&f, h, 4));
    ASSERT_OK(mp_buf_append(&f, body->data, body->len));
    ASSERT_OK(mp__sys_send_fds(sock, f.data, f.len, fds, nfds));
    mp_buf_free(&f);
}

/* What mp_conn_send writes for @a, read back raw from a socketpair: the
 * body and its descriptors (the caller closes them). */
static void wire_form_of(const mp_args *a, mp_buf *body, int *fds, size_t *nfds)
{
    mp_conn *x, *y;
    ASSERT_OK(mp_pipe(&x, &y, true));
    ASSERT_OK(mp_conn_send(x, a));
    uint8_t h[4];
    *nfds = 0;
    ASSERT_OK(mp__sys_recv_fds(mp_conn_fileno(y), h, 4, fds, 8, nfds));
    size_t n = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    body->len = 0;
    ASSERT_OK(mp_buf_reserve(body, n));
    size_t more = 0;
    ASSERT_OK(mp__sys_recv_fds(mp_conn_fileno(y), body->data, n, fds + *nfds, 8 - *nfds, &more));
    *nfds += more;
    body->len = n;
    mp_conn_close(x);
    mp_conn_close(y);
}

static void close_all(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mp__sys_close(fds[i]);
}

/* ---- 1. no peer's bytes load a library ----------------------------------- */

static int barrier_action(const mp_args *a)
{
    (void)a;
    return 0;
}

/* A barrier (no action) as a connection carries it, then patched to claim
 * an action in the library: the local form, with its segment. */
static void forge_local_barrier(mp_buf *body, int *fds, size_t *nfds)
{
    mp_barrier *b;
    mp_args *a;
    ASSERT_OK(mp_barrier_new(&b, 2, NULL, MP_FOREVER));
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_barrier(a, b));
    wire_form_of(a, body, fds, nfds);
    ASSERT_EQ(*nfds, 1);
    ASSERT_EQ(((uint8_t *)body->data)[body->len - 1], 0); /* "no action" comes last */
    ((uint8_t *)body->data)[body->len - 1] = 1;
    put_evil_funcref(body);
    mp_args_free(a);
    mp_barrier_free(b);
}

/* A barrier in a manager proxy's form (no descriptor needed) with an
 * action in the library. */
static void forge_remote_barrier(mp_buf *body)
{
    body->len = 0;
    put_args_head(body, 1);
    ASSERT_OK(mp__put_u8(body, ARG_OBJECT));
    ASSERT_OK(mp__put_u8(body, TAG_BARRIER));
    ASSERT_OK(mp__put_u8(body, 1)); /* remote */
    put_old_proxy(body, "barrier");
    ASSERT_OK(mp__put_u8(body, 1)); /* has an action */
    put_evil_funcref(body);
}

/* A connected pair through a keyless listener on an abstract address
 * named after @tag: @peer the client's end, @srv the accepted one. */
static mp_listener *keyless_pair(const char *tag, mp_conn **peer, mp_conn **srv)
{
    char addr[64];
    snprintf(addr, sizeof addr, "unix:@mp-test-trust-%s%d", tag, (int)getpid());
    mp_listener *l;
    ASSERT_OK(mp_listener_new(&l, addr, NULL, 0, 4));
    ASSERT_OK(mp_client(peer, addr, NULL, 0));
    ASSERT_OK(mp_listener_accept(l, srv, 10));
    return l;
}

MP_TEST(keyless_listener_never_loads_what_a_peer_names)
{
    evil_arm();
    mp_conn *peer, *srv;
    mp_listener *l = keyless_pair("", &peer, &srv);

    mp_buf body = MP_BUF_INIT;
    int fds[8];
    size_t nfds = 0;
    for (int form = 0; form < 2; form++) {
        if (form == 0)
            forge_local_barrier(&body, fds, &nfds);
        else
            forge_remote_barrier(&body);
        send_frame_raw(mp_conn_fileno(peer), &body, fds, nfds);
        close_all(fds, nfds);
        nfds = 0;
        mp_args *got = (mp_args *)1;
        ASSERT_ERR(MP_EBADMSG, mp_conn_recv(srv, &got));
        ASSERT_TRUE(got == NULL);
        evil_check_never_loaded();
    }
    /* the connection still carries good messages */
    mp_args *a, *got;
    ASSERT_OK(mp_args_of(&a, "is", 7, "fine"));
    ASSERT_OK(mp_conn_send(peer, a));
    ASSERT_OK(mp_conn_recv(srv, &got));
    ASSERT_EQ(mp_args_int(got, 0), 7);
    mp_args_free(got);
    mp_args_free(a);
    mp_buf_free(&body);
    mp_conn_close(peer);
    mp_conn_close(srv);
    ASSERT_OK(mp_listener_close(l));
    unlink(marker);
}

MP_TEST(a_barrier_with_an_action_is_not_sent)
{
    mp_barrier *with, *without;
    ASSERT_OK(mp_barrier_new(&with, 2, barrier_action, MP_FOREVER));
    ASSERT_OK(mp_barrier_new(&without, 3, NULL, MP_FOREVER));
    mp_conn *x, *y;
    ASSERT_OK(mp_pipe(&x, &y, true));
    mp_args *a, *got;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_barrier(a, with));
    ASSERT_ERR(MP_EPERM, mp_conn_send(x, a)); /* code never crosses a connection */
    mp_args_free(a);
    ASSERT_EQ(mp_conn_poll(y, 0), 0);         /* and nothing was written */
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_barrier(a, without));
    ASSERT_OK(mp_conn_send(x, a));
    ASSERT_OK(mp_conn_recv(y, &got));
    ASSERT_EQ(mp_barrier_parties(mp_args_barrier(got, 0)), 3);
    mp_args_free(got);
    mp_args_free(a);
    mp_conn_close(x);
    mp_conn_close(y);
    mp_barrier_free(with);
    mp_barrier_free(without);
}

/* A barrier with an action still reaches a child it is given to (the
 * library writes that channel itself). */
static int child_barrier_party(const mp_args *a)
{
    return mp_barrier_wait(mp_args_barrier(a, 0), 30) >= 0 ? 0 : 1;
}


MP_TEST(a_barrier_with_an_action_reaches_a_child, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_barrier *b;
    ASSERT_OK(mp_barrier_new(&b, 2, barrier_action, MP_FOREVER));
    mp_args *a;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_barrier(a, b));
    mp_process *p = mp_test_start_free(ctx, child_barrier_party, a);
    ASSERT_GE(mp_barrier_wait(b, 30), 0);
    ASSERT_EQ(0, mp_test_join(p, 30));
    mp_barrier_free(b);
}

static int sink_type(void **state, const char *method, const mp_args *in, mp_buf *out)
{
    (void)state;
    (void)method;
    (void)out;
    (void)in;
    return 0;
}

static bool maps_name(pid_t pid, const char *what)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    ASSERT_TRUE(f != NULL);
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, what) != NULL;
    fclose(f);
    return found;
}

MP_TEST(manager_takes_data_only, .variants = MP_START_METHODS, .timeout_s = 60)
{
    evil_arm();
    ASSERT_OK(mp_manager_register("Sink", sink_type));
    mp_manager *m;
    ASSERT_OK(mp_manager_start(&m, ctx, NULL, NULL, 0));
    size_t kl;
    const void *key = mp_process_authkey(mp_current_process(), &kl);
    mp_conn *c;
    ASSERT_OK(mp_client(&c, mp_manager_address(m), key, kl));
    mp_args *req;
    ASSERT_OK(mp_args_of(&req, "iss", OP_OPEN, "Sink", "s"));
    ASSERT_OK(mp_test_rpc(c, req));

    /* a custom call whose encoded arguments hold a barrier with an action */
    mp_buf body = MP_BUF_INIT;
    forge_remote_barrier(&body);
    ASSERT_OK(mp_args_of(&req, "isss", OP_CALL, "Sink", "s", "m"));
    ASSERT_OK(mp_args_add_bytes(req, body.data, body.len));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req));
    /* a request that carries an object itself (a lock, its segment riding
     * on the frame): refused, and this client dropped */
    mp_lock *l;
    ASSERT_OK(mp_lock_new(&l));
    ASSERT_OK(mp_args_of(&req, "isss", OP_CALL, "Sink", "s", "m"));
    ASSERT_OK(mp_args_add_lock(req, l));
    ASSERT_ERR(MP_EBADMSG, mp_test_rpc(c, req));
    mp_lock_free(l);
    mp_conn_close(c);
    /* and from a proper client: arguments with an object never leave */
    mp_args *in;
    ASSERT_OK(mp_args_new(&in));
    ASSERT_OK(mp_lock_new(&l));
    ASSERT_OK(mp_args_add_lock(in, l));
    ASSERT_ERR(MP_EINVAL, mp_manager_call(m, "Sink", "s", "m", in, NULL));
    mp_args_free(in);
    mp_lock_free(l);

    ASSERT_TRUE(!maps_name(mp_manager_pid(m), "libmp_testevil"));
    evil_check_never_loaded();
    /* still serving */
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "d", &d));
    ASSERT_OK(mp_dict_set(d, "k", 1, "v", 1));
    mp_dict_free(d);
    mp_buf_free(&body);
    mp_manager_free(m);
    unlink(marker);
}

/* ---- 4. a manager's key travels only into a child started here ------------ */

static bool contains(const void *hay, size_t n, const void *needle, size_t k)
{
    return memmem(hay, n, needle, k) != NULL;
}

static int child_uses_proxy_lock(const mp_args *a)
{
    mp_lock *l = mp_args_lock(a, 0);
    if (mp_lock_acquire(l, 10) != 0)
        return 2;
    return mp_lock_release(l) == 0 ? 0 : 3;
}

MP_TEST(proxy_key_never_on_a_connection, .variants = MP_START_METHODS, .timeout_s = 60)
{
    uint8_t key[32];
    mp_manager *m = mp_test_manager_keyed(ctx, key, sizeof key);
    mp_lock *pl;
    ASSERT_OK(mp_manager_lock(m, "l", &pl));

    mp_conn *peer, *srv;
    mp_listener *lis = keyless_pair("key-", &peer, &srv);
    mp_args *a;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_lock(a, pl));
    ASSERT_OK(mp_conn_send(peer, a));
    mp_buf raw = MP_BUF_INIT;
    ASSERT_OK(mp_conn_recv_bytes(srv, &raw, 0));
    ASSERT_TRUE(raw.len > 0);
    ASSERT_TRUE(contains(raw.data, raw.len, mp_manager_address(m), strlen(mp_manager_address(m))));
    ASSERT_TRUE(!contains(raw.data, raw.len, key, sizeof key));

    /* received, the proxy authenticates with this process's key, as a
     * Python proxy unpickled outside spawning: here not the manager's */
    ASSERT_OK(mp_conn_send(peer, a));
    mp_args *got;
    ASSERT_OK(mp_conn_recv(srv, &got));
    ASSERT_ERR(MP_EAUTH, mp_lock_acquire(mp_args_lock(got, 0), 5));
    mp_args_free(got);

    /* a child started with it gets the key and uses the lock */
    mp_process *p = mp_test_start(ctx, child_uses_proxy_lock, a);
    ASSERT_EQ(0, mp_test_join(p, 30));

    mp_args_free(a);
    mp_buf_free(&raw);
    mp_conn_close(peer);
    mp_conn_close(srv);
    ASSERT_OK(mp_listener_close(lis));
    mp_lock_free(pl);
    mp_manager_free(m);
}

MP_TEST(proxy_from_a_peer_uses_the_process_key, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_manager *m; /* the process's own key, as Python's default */
    ASSERT_OK(mp_manager_start(&m, ctx, NULL, NULL, 0));
    mp_lock *pl;
    ASSERT_OK(mp_manager_lock(m, "l", &pl));
    mp_conn *x, *y;
    ASSERT_OK(mp_pipe(&x, &y, true));
    mp_args *a, *got;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_lock(a, pl));
    ASSERT_OK(mp_conn_send(x, a));
    ASSERT_OK(mp_conn_recv(y, &got));
    mp_lock *l2 = mp_args_lock(got, 0);
    ASSERT_OK(mp_lock_acquire(l2, 5));
    ASSERT_ERR(MP_ETIMEDOUT, mp_lock_acquire(pl, 0)); /* the same lock, held */
    ASSERT_OK(mp_lock_release(l2));
    mp_args_free(got);
    mp_args_free(a);
    mp_conn_close(x);
    mp_conn_close(y);
    mp_lock_free(pl);
    mp_manager_free(m);
}

/* ---- 7. each kind decodes exactly the forms it can have ------------------- */

/* Decode @body as a connection would; the result code. */
static int decode_peer(const mp_buf *body, int *fds, size_t nfds)
{
    mp_conn *x, *y;
    ASSERT_OK(mp_pipe(&x, &y, true));
    send_frame_raw(mp_conn_fileno(x), body, fds, nfds);
    mp_args *got = NULL;
    int err = mp_conn_recv(y, &got);
    mp_args_free(got);
    mp_conn_close(x);
    mp_conn_close(y);
    return err;
}

/* One object item with @tag in a proxy's form (old layout), @pre bytes
 * before it (a value's type). */
static void forge_proxy_form(mp_buf *b, uint8_t tag, const char *kind, int pre)
{
    b->len = 0;
    put_args_head(b, 1);
    ASSERT_OK(mp__put_u8(b, ARG_OBJECT));
    ASSERT_OK(mp__put_u8(b, tag));
    if (pre >= 0)
        ASSERT_OK(mp__put_u8(b, (uint8_t)pre));
    ASSERT_OK(mp__put_u8(b, 1));
    put_old_proxy(b, kind);
    ASSERT_OK(mp__put_u8(b, 0)); /* a barrier's "no action" (others: trailing) */
}

MP_TEST(forged_forms_are_refused)
{
    mp_buf b = MP_BUF_INIT;
    /* a proxy's form in the layout of before (no wire flags): refused, for a
     * barrier and an array as for every kind */
    forge_proxy_form(&b, TAG_BARRIER, "barrier", -1);
    ASSERT_ERR(MP_EBADMSG, decode_peer(&b, NULL, 0));
    forge_proxy_form(&b, 8 /* array */, "array", MP_INT64);
    ASSERT_ERR(MP_EBADMSG, decode_peer(&b, NULL, 0));

    /* a condition over a proxy lock (mp_condition_new refuses one): take a
     * real condition's form and swap its lock for a proxy's */
    mp_condition *cv;
    ASSERT_OK(mp_condition_new(&cv, NULL));
    mp_args *a;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_condition(a, cv));
    int fds[8], fds2[8];
    size_t nfds, nfds2;
    wire_form_of(a, &b, fds, &nfds);
    ASSERT_GE(nfds, 1);
    /* header 8, type 1, tag 1, local/manager 1, shm ref (4 + 8 + 8 + 1),
     * then the lock */
    size_t lock_at = 8 + 1 + 1 + 1 + 21;
    ASSERT_EQ(((uint8_t *)b.data)[8 + 1 + 1], 0); /* the condition: local */
    ASSERT_EQ(((uint8_t *)b.data)[lock_at], 0); /* the lock: local */
    b.len = lock_at;
    ASSERT_OK(mp__put_u8(&b, 1));
    put_old_proxy(&b, "lock");
    ASSERT_ERR(MP_EBADMSG, decode_peer(&b, fds, nfds));
    /* the real form decodes */
    wire_form_of(a, &b, fds2, &nfds2);
    ASSERT_OK(decode_peer(&b, fds2, nfds2));
    close_all(fds, nfds);
    close_all(fds2, nfds2);
    mp_args_free(a);
    mp_condition_free(cv);
    mp_buf_free(&b);
}
