/*
 * Every shareable type travels in mp_args (API.md, Reduction): named shared
 * memory by name, managers, dicts and lists as handles on the same server;
 * mp_args_of's letters for library objects; manager handles used in a
 * process other than the one that opened them (a forked child) get a
 * connection of their own.
 */
#include "mp_test.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- named shared memory ------------------------------------------------ */

static int child_shm(const mp_args *a)
{
    mp_shm *s = mp_args_shm(a, 0);
    if (strcmp(mp_shm_name(s), mp_args_str(a, 1)) != 0 || mp_shm_size(s) < 4096)
        return 2;
    char *p = mp_shm_buf(s);
    if (memcmp(p, "parent", 6) != 0)
        return 3;
    memcpy(p + 100, "child", 5);
    return 0;
}

MP_TEST(shm_in_args, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_shm *s;
    ASSERT_OK(mp_shm_new(&s, NULL, 4096, MP_SHM_CREATE));
    memcpy(mp_shm_buf(s), "parent", 6);
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "Hs", s, mp_shm_name(s)));
    ASSERT_EQ(mp_args_type(a, 0), MP_ARG_OBJECT);
    /* the list's own mapping: the same bytes */
    ASSERT_TRUE(memcmp(mp_shm_buf(mp_args_shm(a, 0)), "parent", 6) == 0);
    ASSERT_EQ(mp_test_run(ctx, child_shm, a), 0);
    ASSERT_TRUE(memcmp((char *)mp_shm_buf(s) + 100, "child", 5) == 0);
    ASSERT_EQ(mp_test_run(ctx, child_shm, a), 0); /* the child's end left it in place */
    mp_args_free(a);
    /* still there under its name, registered once: unlink removes it */
    mp_shm *again;
    ASSERT_OK(mp_shm_new(&again, mp_shm_name(s), 0, 0));
    ASSERT_OK(mp_shm_close(again));
    ASSERT_OK(mp_shm_unlink(s));
    ASSERT_OK(mp_shm_close(s));
}

MP_TEST(shm_in_args_after_unlink)
{
    mp_shm *s;
    ASSERT_OK(mp_shm_new(&s, NULL, 4096, MP_SHM_CREATE));
    mp_args *a;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_shm(a, s));
    ASSERT_OK(mp_shm_unlink(s));
    ASSERT_OK(mp_shm_close(s));
    /* the list's own mapping outlives both */
    memcpy(mp_shm_buf(mp_args_shm(a, 0)), "still", 5);
    mp_args_free(a);
}

/* ---- managers, dicts and lists ----------------------------------------- */

static const char KEY[] = "args-objects-key";

static int child_manager(const mp_args *a)
{
    mp_manager *m = mp_args_manager(a, 0);
    mp_dict *d;
    if (mp_manager_dict(m, "d", &d) != 0)
        return 2;
    int err = mp_dict_set(d, "from", 4, "child", 5);
    mp_dict_free(d);
    return err == 0 ? 0 : 3;
}

MP_TEST(manager_in_args, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_manager *m; /* a key of its own: it must travel into the child */
    ASSERT_OK(mp_manager_start(&m, ctx, NULL, KEY, sizeof KEY - 1));
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "M", m));
    ASSERT_EQ(mp_test_run_free(ctx, child_manager, a), 0);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "d", &d));
    mp_test_dict_expect(d, "from", "child", 5);
    mp_dict_free(d);
    ASSERT_GT(mp_manager_pid(m), 0); /* the child's copy did not stop it */
    mp_manager_free(m);
}

static int child_dict_list(const mp_args *a)
{
    mp_dict *d = mp_args_dict(a, 0);
    mp_list *l = mp_args_list(a, 1);
    int64_t n = 0;
    if (mp_dict_add(d, "n", 1, 5, &n) != 0 || n != 6)
        return 2;
    if (mp_list_append(l, "c", 1) != 0)
        return 3;
    size_t len = 0;
    return mp_list_len(l, &len) == 0 && len == 2 ? 0 : 4;
}

MP_TEST(dict_and_list_in_args, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_manager *m;
    ASSERT_OK(mp_manager_start(&m, ctx, NULL, NULL, 0));
    mp_dict *d;
    mp_list *l;
    ASSERT_OK(mp_manager_dict(m, "d", &d));
    ASSERT_OK(mp_manager_list(m, "l", &l));
    int64_t n = 0;
    ASSERT_OK(mp_dict_add(d, "n", 1, 1, &n));
    ASSERT_OK(mp_list_append(l, "p", 1));
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "DT", d, l));
    ASSERT_EQ(mp_test_run(ctx, child_dict_list, a), 0);
    mp_args_free(a);
    ASSERT_OK(mp_dict_add(d, "n", 1, 0, &n));
    ASSERT_EQ(n, 6);
    mp_buf v = MP_BUF_INIT;
    ASSERT_OK(mp_list_get(l, 1, &v));
    ASSERT_TRUE(v.len == 1 && ((char *)v.data)[0] == 'c');
    mp_buf_free(&v);
    mp_dict_free(d);
    mp_list_free(l);
    mp_manager_free(m);
}

/* A handle opened here, used by a forked child through a pointer while
 * this process keeps using it: each process on a connection of its own,
 * so no update is lost and nobody hangs. */
#define ROUNDS 300

static int child_forked_handles(const mp_args *a)
{
    mp_dict *d = mp_args_ptr(a, 0);
    mp_manager *m = mp_args_ptr(a, 1);
    for (int i = 0; i < ROUNDS; i++) {
        int64_t n;
        if (mp_dict_add(d, "child", 5, 1, &n) != 0 || n != i + 1)
            return 2;
    }
    mp_list *l;
    if (mp_manager_list(m, "fl", &l) != 0)
        return 3;
    int err = mp_list_append(l, "x", 1);
    mp_list_free(l);
    mp_dict_free(d);     /* frees this process's copies only */
    mp_manager_free(m);  /* does not stop the parent's server */
    return err == 0 ? 0 : 4;
}

MP_TEST(manager_handles_in_a_forked_child, .timeout_s = 60)
{
    mp_context *fork_ctx = mp_get_context("fork");
    mp_manager *m;
    ASSERT_OK(mp_manager_start(&m, NULL, NULL, NULL, 0));
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "d", &d));
    ASSERT_OK(mp_dict_set(d, "k", 1, "v", 1)); /* the parent's connection is in use */
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "pp", d, m));
    mp_process *p = mp_test_start(fork_ctx, child_forked_handles, a);
    for (int i = 0; i < ROUNDS; i++) {
        int64_t n;
        ASSERT_OK(mp_dict_add(d, "parent", 6, 1, &n));
        ASSERT_EQ(n, i + 1);
    }
    ASSERT_EQ(0, mp_test_join(p, 60));
    mp_args_free(a);
    int64_t n;
    ASSERT_OK(mp_dict_add(d, "child", 5, 0, &n));
    ASSERT_EQ(n, ROUNDS);
    mp_list *l;
    ASSERT_OK(mp_manager_list(m, "fl", &l));
    size_t len = 0;
    ASSERT_OK(mp_list_len(l, &len));
    ASSERT_EQ(len, 1);
    mp_list_free(l);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* Over a connection a manager handle travels without its key. */
MP_TEST(manager_over_a_connection_keeps_its_key)
{
    uint8_t key[32];
    mp_manager *m = mp_test_manager_keyed(NULL, key, sizeof key);
    mp_dict *d;
    ASSERT_OK(mp_manager_dict(m, "d", &d));
    mp_conn *x, *y;
    ASSERT_OK(mp_pipe(&x, &y, true));
    mp_args *a, *got;
    ASSERT_OK(mp_args_of(&a, "MD", m, d));
    ASSERT_OK(mp_conn_send(x, a));
    mp_buf raw = MP_BUF_INIT;
    ASSERT_OK(mp_conn_recv_bytes(y, &raw, 0));
    ASSERT_TRUE(memmem(raw.data, raw.len, key, sizeof key) == NULL);
    ASSERT_OK(mp_conn_send(x, a));
    ASSERT_OK(mp_conn_recv(y, &got));
    /* the receiver uses its process key: not this manager's */
    mp_dict *d2 = mp_args_dict(got, 1);
    ASSERT_ERR(MP_EAUTH, mp_dict_set(d2, "k", 1, "v", 1));
    mp_args_free(got);
    mp_args_free(a);
    mp_buf_free(&raw);
    mp_conn_close(x);
    mp_conn_close(y);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* ---- mp_args_of's object letters --------------------------------------- */

MP_TEST(args_of_object_letters)
{
    mp_queue *q;
    mp_lock *l;
    mp_semaphore *s;
    mp_condition *c;
    mp_event *e;
    mp_barrier *b;
    mp_value *v;
    mp_array *arr;
    mp_conn *x, *y;
    ASSERT_OK(mp_queue_new(&q, 0));
    ASSERT_OK(mp_lock_new(&l));
    ASSERT_OK(mp_semaphore_new(&s, 1, false));
    ASSERT_OK(mp_condition_new(&c, NULL));
    ASSERT_OK(mp_event_new(&e));
    ASSERT_OK(mp_barrier_new(&b, 2, NULL, MP_FOREVER));
    ASSERT_OK(mp_value_new(&v, MP_INT32, false));
    ASSERT_OK(mp_array_new(&arr, MP_DOUBLE, 3, NULL, false));
    ASSERT_OK(mp_pipe(&x, &y, true));
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "iQLSCEBVAP", 7, q, l, s, c, e, b, v, arr, x));
    ASSERT_EQ(mp_args_count(a), 10);
    ASSERT_EQ(mp_args_int(a, 0), 7);
    for (size_t i = 1; i < 10; i++)
        ASSERT_EQ(mp_args_type(a, i), MP_ARG_OBJECT);
    /* each as its own getter reads it (a wrong type would abort) */
    ASSERT_TRUE(mp_args_queue(a, 1) != NULL && mp_args_lock(a, 2) != NULL);
    ASSERT_TRUE(mp_args_semaphore(a, 3) != NULL && mp_args_condition(a, 4) != NULL);
    ASSERT_TRUE(mp_args_event(a, 5) != NULL && mp_args_barrier(a, 6) != NULL);
    ASSERT_TRUE(mp_args_value(a, 7) != NULL && mp_args_array(a, 8) != NULL);
    ASSERT_TRUE(mp_args_conn(a, 9) != NULL);
    mp_args_free(a);
    mp_args *bad = (mp_args *)1;
    ASSERT_ERR(MP_EINVAL, mp_args_of(&bad, "Q", (mp_queue *)NULL));
    ASSERT_TRUE(bad == NULL);
    ASSERT_ERR(MP_EINVAL, mp_args_of(&bad, "Z", q));
    mp_conn_close(x);
    mp_conn_close(y);
    mp_array_free(arr);
    mp_value_free(v);
    mp_barrier_free(b);
    mp_event_free(e);
    mp_condition_free(c);
    mp_semaphore_free(s);
    mp_lock_free(l);
    mp_queue_free(q);
}
