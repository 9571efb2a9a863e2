/* libFuzzer target: the manager client's reply decoding (managers.c and proxy.c: the
 * status check of every request, the results of dict, list and call, the
 * dict batch's per-operation replies, and the proxies of queue, lock,
 * event, semaphore and value), against a server that answers anything.
 *
 * This process plays the server: a listener thread accepts the client's
 * authenticated connections and answers each request with an empty
 * success ("i 0") -- enough to open objects -- unless an input has armed
 * a reply: then it sends the input's bytes, raw, as the reply frame.
 *
 *   data[0]  which client call (mod 20; see fz_call)
 *   data[1]  a parameter: the batch's operations, a buffer's size
 *   data[2..] the reply the server sends to that call's request
 *
 * Oracles: each call returns 0 or a negative MP_E* code (a server cannot
 * make a call return a positive number, nor a status that only looks like
 * 0); results stay within the reply: a value no longer than the reply, a
 * batch's statuses 0 or negative and its values inside the output buffer,
 * an into-buffer read no longer than the buffer.  The calls use timeouts
 * of 0, and the server answers every request at once, so nothing blocks. */
#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fz_key[] = "fuzz-manager-client-key";
#define FZ_KEYLEN (sizeof fz_key - 1)

static char fz_addr[64];
static pthread_mutex_t fz_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *fz_reply; /* armed: the next request's reply (a copy) */
static size_t fz_reply_len;

static mp_manager *fz_m;
static mp_dict *fz_dict;
static mp_list *fz_list;
static mp_queue *fz_queue;
static mp_lock *fz_mlock;
static mp_event *fz_event;
static mp_semaphore *fz_sem;
static mp_value *fz_value;

static void *fz_serve_conn(void *arg)
{
    mp_conn *c = arg;
    mp_buf req = MP_BUF_INIT;
    while (mp_conn_recv_bytes(c, &req, 0) == 0) {
        if (req.len <= 1)
            continue; /* a receipt (empty: taken; one byte: given back), not a request */
        pthread_mutex_lock(&fz_lock);
        uint8_t *p = fz_reply; /* ours now: a client call that gave up
                                * waiting may already be gone */
        size_t n = fz_reply_len;
        fz_reply = NULL; /* one reply per arming */
        pthread_mutex_unlock(&fz_lock);
        int err;
        if (p != NULL) {
            err = mp_conn_send_bytes(c, p, n);
            free(p);
        } else {
            mp_args *ok = NULL;
            err = mp_args_of(&ok, "i", 0);
            if (err == 0)
                err = mp_conn_send(c, ok);
            mp_args_free(ok);
        }
        if (err != 0)
            break;
    }
    mp_buf_free(&req);
    mp_conn_close(c);
    return NULL;
}

static void *fz_accept(void *arg)
{
    mp_listener *l = arg;
    for (;;) {
        mp_conn *c;
        if (mp_listener_accept(l, &c, MP_FOREVER) != 0)
            continue;
        pthread_t t;
        if (pthread_create(&t, NULL, fz_serve_conn, c) != 0)
            mp_conn_close(c);
        else
            pthread_detach(t);
    }
    return NULL;
}

static void fz_need(int err, const char *what)
{
    if (err != 0) {
        fprintf(stderr, "fuzz_manager_client: %s: %s\n", what, mp_strerror(err));
        __builtin_trap();
    }
}

static void fz_start(void)
{
    mp__log_level = MP_LOG_OFF;
    snprintf(fz_addr, sizeof fz_addr, "unix:@mp-fuzz-client-%d", (int)getpid());
    mp_listener *l;
    fz_need(mp_listener_new(&l, fz_addr, fz_key, FZ_KEYLEN, 16), "mp_listener_new");
    pthread_t t;
    fz_need(pthread_create(&t, NULL, fz_accept, l) ? MP_ENOMEM : 0, "pthread_create");
    pthread_detach(t);
    fz_need(mp_manager_connect(&fz_m, fz_addr, fz_key, FZ_KEYLEN), "mp_manager_connect");
    fz_need(mp_manager_dict(fz_m, "d", &fz_dict), "dict");
    fz_need(mp_manager_list(fz_m, "l", &fz_list), "list");
    fz_need(mp_manager_queue(fz_m, "q", 0, &fz_queue), "queue");
    fz_need(mp_manager_lock(fz_m, "k", &fz_mlock), "lock");
    fz_need(mp_manager_event(fz_m, "e", &fz_event), "event");
    fz_need(mp_manager_semaphore(fz_m, "s", 1, &fz_sem), "semaphore");
    fz_need(mp_manager_value(fz_m, "v", MP_INT64, &fz_value), "value");
}

static const uint8_t *fz_sent; /* the reply of the call under way */
static size_t fz_sent_len;

/* Did the call's reply say 0, as an int status first? */
static bool fz_reply_ok(void)
{
    mp__reader r;
    mp__reader_init(&r, fz_sent, fz_sent_len);
    mp_args *a = NULL;
    if (mp__args_decode(&r, NULL, 0, MP__WIRE_DATA, &a) != 0)
        return false;
    bool ok = mp_args_count(a) > 0 && mp_args_type(a, 0) == MP_ARG_INT && mp_args_int(a, 0) == 0;
    mp_args_free(a);
    return ok;
}

static void fz_status(int err)
{
    if (err > 0) {
        fprintf(stderr, "fuzz_manager_client: a call returned %d\n", err);
        __builtin_trap(); /* errors are negative MP_E* codes */
    }
    if (err == 0 && !fz_reply_ok()) {
        fprintf(stderr, "fuzz_manager_client: success from a reply without status 0\n");
        __builtin_trap();
    }
}

static int fz_batch(unsigned param, size_t replied)
{
    static const char *const keys[] = {"a", "bb", "", "dddd"};
    mp_dict_op ops[4];
    size_t n = 1 + (param & 3);
    memset(ops, 0, sizeof ops);
    for (size_t i = 0; i < n; i++) {
        ops[i].op = (mp_dict_opcode)(MP_DICT_SET + (int)((param >> (2 + i)) & 3) % 4);
        ops[i].key = keys[i];
        ops[i].keylen = strlen(keys[i]);
        ops[i].value = "value";
        ops[i].valuelen = 5;
        ops[i].num = 7;
    }
    mp_buf out = MP_BUF_INIT;
    int err = mp_dict_batch(fz_dict, ops, n, &out);
    if (err == 0) {
        if (out.len > replied)
            __builtin_trap();
        for (size_t i = 0; i < n; i++) {
            if (ops[i].status > 0)
                __builtin_trap();
            if (ops[i].status == 0 && ops[i].op == MP_DICT_GET &&
                (ops[i].offset > out.len || ops[i].len > out.len - ops[i].offset))
                __builtin_trap(); /* a value outside the output */
        }
    }
    mp_buf_free(&out);
    return err;
}

static void fz_call(unsigned which, unsigned param, size_t replied)
{
    mp_buf b = MP_BUF_INIT;
    int64_t num = 0;
    size_t len = 0;
    int ival = 0;
    int err = 0;
    switch (which % 20) {
    case 0:
        err = mp_dict_get(fz_dict, "k", 1, &b);
        break;
    case 1:
        err = mp_dict_set(fz_dict, "k", 1, "v", 1);
        break;
    case 2:
        err = mp_dict_len(fz_dict, &len);
        break;
    case 3:
        err = mp_dict_add(fz_dict, "k", 1, 1, &num);
        break;
    case 4:
        err = mp_dict_keys(fz_dict, &b);
        break;
    case 5:
        err = fz_batch(param, replied);
        break;
    case 6:
        err = mp_list_get(fz_list, (int64_t)param - 128, &b);
        break;
    case 7:
        err = mp_list_pop(fz_list, -1, &b);
        break;
    case 8:
        err = mp_list_len(fz_list, &len);
        break;
    case 9:
        err = mp_manager_call(fz_m, "t", "o", "m", NULL, &b);
        break;
    case 10:
        err = mp_queue_get(fz_queue, &b, 0);
        break;
    case 11: {
        uint8_t buf[64];
        size_t cap = param % sizeof buf;
        err = mp_queue_get_into(fz_queue, buf, cap, &len, 0);
        if (err == 0 && len > cap)
            __builtin_trap();
        break;
    }
    case 12:
        err = mp_queue_qsize(fz_queue, &len);
        break;
    case 13:
        (void)mp_queue_full(fz_queue); /* a bool: no status to check */
        return;
    case 14:
        err = mp_lock_acquire(fz_mlock, 0);
        break;
    case 15:
        (void)mp_lock_locked(fz_mlock);
        return;
    case 16:
        err = mp_semaphore_value(fz_sem, &ival);
        break;
    case 17:
        err = mp_event_wait(fz_event, 0);
        break;
    case 18: {
        int64_t v = 0;
        err = mp_value_load(fz_value, &v);
        break;
    }
    default: {
        int64_t v = 42;
        err = mp_queue_put(fz_queue, &v, sizeof v, 0);
        if (err == 0)
            err = mp_value_store(fz_value, &v);
        break;
    }
    }
    fz_status(err);
    if (err == 0 && b.len > replied)
        __builtin_trap(); /* a result longer than the reply that carried it */
    mp_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    if (fz_m == NULL)
        fz_start();
    uint8_t *copy = malloc(size - 2 ? size - 2 : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data + 2, size - 2);
    pthread_mutex_lock(&fz_lock);
    free(fz_reply);
    fz_reply = copy;
    fz_reply_len = size - 2;
    pthread_mutex_unlock(&fz_lock);
    fz_sent = data + 2;
    fz_sent_len = size - 2;
    fz_call(data[0], data[1], size - 2);
    pthread_mutex_lock(&fz_lock);
    free(fz_reply); /* a call that sent nothing leaves it armed */
    fz_reply = NULL;
    pthread_mutex_unlock(&fz_lock);
    return 0;
}
