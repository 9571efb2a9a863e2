/* libFuzzer target: the manager server's request decoder, end to end.
 *
 * The decoder is static in manager_server.c, so this process serves a manager
 * itself (mp_manager_serve on a thread, on an abstract unix name) and sends
 * each input as one raw message on an authenticated connection.  Oracles:
 * every reply is an mp_args whose first item is an int status; and after
 * the server dropped us or a request blocked (an acquire or get without a
 * timeout is a legitimate way to wait forever), a fresh client must still
 * be served within a few seconds.
 *
 * Inputs whose op is OP_SHUTDOWN (2) are skipped: shutting down is a valid
 * request, not a malformed one, and would end the server under test.
 *
 * The server's objects outlive an input, as they outlive a request.  Every
 * FZ_GENERATION inputs the target shuts the server down and starts a fresh
 * one: what thousands of valid appends store is a server doing its job, not
 * a defect, and would otherwise reach libFuzzer's memory limit.  A single
 * request that asks for much memory is still found: that is what the limit
 * is for (a list repeat was).
 * Self-contained, so the corpus replay (replay.c) works the same way. */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fz_key[] = "fuzz-manager-key";
#define FZ_KEYLEN (sizeof fz_key - 1)

#define FZ_GENERATION 1000

static char fz_addr[64];
static mp_conn *fz_conn;
static bool fz_started;
static atomic_bool fz_ending; /* the target asked the server to end */
static pthread_t fz_thread;
static unsigned fz_inputs, fz_gen;

static void *fz_serve(void *arg)
{
    (void)arg;
    int err = mp_manager_serve(fz_addr, fz_key, FZ_KEYLEN);
    if (err == 0 && fz_ending)
        return NULL;
    fprintf(stderr, "fuzz_manager: the server ended: %s\n", mp_strerror(err));
    __builtin_trap(); /* nothing but the target asks it to end */
}

static void fz_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A new authenticated connection; the server may still be starting. */
static mp_conn *fz_connect(void)
{
    for (int i = 0; i < 5000; i++) {
        mp_conn *c = NULL;
        if (mp_client(&c, fz_addr, fz_key, FZ_KEYLEN) == 0)
            return c;
        fz_sleep_ms(1);
    }
    fprintf(stderr, "fuzz_manager: cannot connect to %s\n", fz_addr);
    __builtin_trap();
}

static void fz_start(void)
{
    snprintf(fz_addr, sizeof fz_addr, "unix:@mp-fuzz-%d-%u", (int)getpid(), fz_gen++);
    fz_ending = false;
    if (pthread_create(&fz_thread, NULL, fz_serve, NULL) != 0)
        __builtin_trap();
    fz_started = true;
}

/* A shutdown request on a fresh connection; the server ends (requests
 * left blocked by earlier inputs included) and frees every object. */
static void fz_restart(void)
{
    if (fz_conn != NULL)
        mp_conn_close(fz_conn);
    fz_conn = fz_connect();
    mp_args *req = NULL, *rep = NULL;
    fz_ending = true;
    if (mp_args_of(&req, "iss", 2 /* OP_SHUTDOWN */, "", "") != 0 || mp_conn_send(fz_conn, req) != 0)
        __builtin_trap();
    /* the reply races with the teardown, which shuts every connection
     * down: it may be lost; the join below is what counts */
    IGNORE_RESULT(mp_conn_recv(fz_conn, &rep));
    mp_args_free(req);
    mp_args_free(rep);
    mp_conn_close(fz_conn);
    fz_conn = NULL;
    if (pthread_join(fz_thread, NULL) != 0)
        __builtin_trap();
    fz_start();
}

/* A reply must be an mp_args with an int status first. */
static void fz_check_reply(const mp_buf *b)
{
    mp__reader r;
    mp__reader_init(&r, b->data, b->len);
    mp_args *a = NULL;
    if (mp__args_decode(&r, NULL, 0, MP__WIRE_DATA, &a) != 0 || r.off != r.len || mp_args_count(a) < 1 ||
        mp_args_type(a, 0) != MP_ARG_INT) {
        fprintf(stderr, "fuzz_manager: a malformed reply of %zu bytes\n", b->len);
        __builtin_trap();
    }
    mp_args_free(a);
}

/* The server still serves: a fresh client's dict request is answered. */
static void fz_probe(void)
{
    mp_conn *c = fz_connect();
    mp_args *req = NULL;
    if (mp_args_of(&req, "iss", 13 /* OP_DICT_LEN */, "dict", "probe") != 0 ||
        mp_conn_send(c, req) != 0)
        __builtin_trap();
    mp_args_free(req);
    if (mp_conn_poll(c, 10) != 1) {
        fprintf(stderr, "fuzz_manager: the server stopped answering\n");
        __builtin_trap();
    }
    mp_args *rep = NULL;
    if (mp_conn_recv(c, &rep) != 0 || mp_args_count(rep) != 2 || mp_args_type(rep, 0) != MP_ARG_INT ||
        mp_args_int(rep, 0) != 0)
        __builtin_trap();
    mp_args_free(rep);
    fz_conn = c; /* and keep it */
}

static bool fz_is_shutdown(const uint8_t *data, size_t size)
{
    mp__reader r;
    mp__reader_init(&r, data, size);
    mp_args *a = NULL;
    if (mp__args_decode(&r, NULL, 0, MP__WIRE_DATA, &a) != 0)
        return false;
    bool sd = mp_args_count(a) > 0 && mp_args_type(a, 0) == MP_ARG_INT &&
              (int)mp_args_int(a, 0) == 2;
    mp_args_free(a);
    return sd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz_started)
        fz_start();
    else if (++fz_inputs % FZ_GENERATION == 0)
        fz_restart();
    if (fz_is_shutdown(data, size))
        return 0;
    if (fz_conn == NULL)
        fz_conn = fz_connect();
    bool dropped = false;
    if (mp_conn_send_bytes(fz_conn, data, size) != 0) {
        dropped = true;
    } else {
        int ready = mp_conn_poll(fz_conn, 1.0);
        if (ready == 1) {
            mp_buf b = MP_BUF_INIT;
            if (mp_conn_recv_bytes(fz_conn, &b, 0) == 0) {
                fz_check_reply(&b);
                /* after an error for a malformed message the server hangs
                 * up: find out now rather than on the next input */
                if (mp_conn_poll(fz_conn, 0) == 1)
                    dropped = true;
            } else {
                dropped = true;
            }
            mp_buf_free(&b);
        } else {
            dropped = true; /* a request that blocks: leave it behind */
        }
    }
    if (dropped) {
        mp_conn_close(fz_conn);
        fz_conn = NULL;
        fz_probe();
    }
    return 0;
}
