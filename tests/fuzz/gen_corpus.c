/* Writes seed inputs for the fuzz targets: valid encodings made by the
 * library itself.  Usage: gen_corpus DIR_ARGS DIR_PREP */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int target(const mp_args *a)
{
    return (int)mp_args_count(a);
}

static void save_raw(const char *dir, const char *name, const uint8_t *hdr, size_t nhdr,
                     const mp_buf *b)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return;
    fwrite(hdr, 1, nhdr, f);
    fwrite(b->data, 1, b->len, f);
    fclose(f);
}

static void save(const char *dir, const char *name, uint8_t nfds, const mp_buf *b)
{
    save_raw(dir, name, &nfds, 1, b);
}

/* fuzz_args's descriptor kinds (see fuzz_args.c) */
static unsigned fd_kind(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return 0;
    if (S_ISSOCK(st.st_mode))
        return 1;
    return st.st_size > (off_t)1 << 30 ? 3 : 2; /* a queue's memfd is sparse and huge */
}

/* An mp_args as a peer sends it, with fuzz_args's two header bytes. */
static int save_args(const char *dir, const char *name, const mp_args *a, bool data_only)
{
    mp_buf b = MP_BUF_INIT;
    static mp__fdvec v;
    v.n = 0;
    if (mp__args_encode(a, &b, &v, data_only ? MP__WIRE_DATA : MP__WIRE_PEER) != 0 || v.n > 4)
        return -1;
    uint8_t hdr[2] = {(uint8_t)(v.n | (data_only ? 8 : 0)), 0};
    for (size_t i = 0; i < v.n; i++)
        hdr[1] |= (uint8_t)(fd_kind(v.fds[i]) << (2 * i));
    save_raw(dir, name, hdr, 2, &b);
    mp_buf_free(&b);
    return 0;
}

/* One object of each kind, local (descriptors travel) ... */
static int save_objects(const char *dir)
{
    mp_conn *c1, *c2;
    mp_lock *l;
    mp_semaphore *s;
    mp_condition *cv;
    mp_event *e;
    mp_barrier *br;
    mp_value *val;
    mp_array *arr;
    mp_queue *q;
    if (mp_pipe(&c1, &c2, true) != 0 || mp_lock_new(&l) != 0 || mp_semaphore_new(&s, 2, false) != 0 ||
        mp_condition_new(&cv, NULL) != 0 || mp_event_new(&e) != 0 ||
        mp_barrier_new(&br, 2, NULL, MP_FOREVER) != 0 || mp_value_new(&val, MP_INT64, true) != 0 ||
        mp_array_new(&arr, MP_DOUBLE, 4, NULL, true) != 0 || mp_queue_new(&q, 0) != 0)
        return -1;
    static const char *const names[] = {"obj_conn",  "obj_lock",  "obj_semaphore",
                                        "obj_condition", "obj_event", "obj_barrier",
                                        "obj_value", "obj_array", "obj_queue"};
    int err = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && err == 0; i++) {
        mp_args *a;
        err = mp_args_new(&a);
        if (err == 0) {
            switch (i) {
            case 0: err = mp_args_add_conn(a, c1); break;
            case 1: err = mp_args_add_lock(a, l); break;
            case 2: err = mp_args_add_semaphore(a, s); break;
            case 3: err = mp_args_add_condition(a, cv); break;
            case 4: err = mp_args_add_event(a, e); break;
            case 5: err = mp_args_add_barrier(a, br); break;
            case 6: err = mp_args_add_value(a, val); break;
            case 7: err = mp_args_add_array(a, arr); break;
            default: err = mp_args_add_queue(a, q); break;
            }
        }
        if (err == 0)
            err = save_args(dir, names[i], a, false);
        mp_args_free(a);
    }
    mp_conn_close(c1);
    mp_conn_close(c2);
    mp_lock_free(l);
    mp_semaphore_free(s);
    mp_condition_free(cv);
    mp_event_free(e);
    mp_barrier_free(br);
    mp_value_free(val);
    mp_array_free(arr);
    mp_queue_free(q);
    return err;
}

/* ... and a manager's proxy of each kind a manager serves, as a peer sends
 * it: (tag, remote, address, no key, kind, name, parameter), then a value's
 * or array's element count, or whether a queue is joinable. */
static int save_proxies(const char *dir)
{
    static const struct {
        uint8_t tag;
        const char *kind;
        bool typed; /* a value or array: its type byte comes first */
    } px[] = {{2, "lock", false}, {3, "semaphore", false}, {5, "event", false},
              {7, "value", true},  {9, "queue", false},    {8, "array", true},
              {9, "jqueue", false}};
    for (size_t i = 0; i < sizeof px / sizeof px[0]; i++) {
        mp_buf b = MP_BUF_INIT;
        int err = mp__put_u32(&b, 0x3141504dU); /* "MPA1" */
        err |= mp__put_u32(&b, 1);
        err |= mp__put_u8(&b, MP_ARG_OBJECT);
        err |= mp__put_u8(&b, px[i].tag);
        if (px[i].typed)
            err |= mp__put_u8(&b, MP_INT64);
        err |= mp__put_u8(&b, 1); /* remote */
        err |= mp__put_str(&b, "unix:@mp-fuzz-nowhere");
        err |= mp__put_u8(&b, 0); /* no key: a peer never sends one */
        err |= mp__put_str(&b, px[i].kind);
        err |= mp__put_str(&b, "x");
        err |= mp__put_u64(&b, 1);
        if (px[i].typed) /* elements: a value has one */
            err |= mp__put_u64(&b, px[i].tag == 8 ? 4 : 1);
        if (px[i].tag == 9) /* joinable */
            err |= mp__put_u8(&b, strcmp(px[i].kind, "jqueue") == 0);
        if (err != 0)
            return -1;
        char name[64];
        snprintf(name, sizeof name, "proxy_%s", px[i].kind);
        uint8_t hdr[2] = {0, 0};
        save_raw(dir, name, hdr, 2, &b);
        mp_buf_free(&b);
    }
    /* a manager, its dict and list (tags 11-13), and named shared memory
     * (tag 10) as a peer sends them: no key, no descriptor */
    for (uint8_t tag = 10; tag <= 13; tag++) {
        mp_buf b = MP_BUF_INIT;
        int err = mp__put_u32(&b, 0x3141504dU);
        err |= mp__put_u32(&b, 1);
        err |= mp__put_u8(&b, MP_ARG_OBJECT);
        err |= mp__put_u8(&b, tag);
        if (tag == 10) {
            err |= mp__put_str(&b, "psm_fuzz_nowhere");
            err |= mp__put_u64(&b, 4096);
        } else {
            err |= mp__put_str(&b, "unix:@mp-fuzz-nowhere");
            err |= mp__put_u8(&b, 0);
            if (tag > 11) {
                err |= mp__put_str(&b, "d");
                err |= mp__put_u8(&b, 0); /* not a namespace */
            }
        }
        if (err != 0)
            return -1;
        static const char *const names[] = {"obj_shm", "obj_manager", "obj_dict", "obj_list"};
        uint8_t hdr[2] = {0, 0};
        save_raw(dir, names[tag - 10], hdr, 2, &b);
        mp_buf_free(&b);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    mp_args *a;
    if (mp_args_of(&a, "ildsbf", 1, (int64_t)-2, 3.5, "str", "bytes", (size_t)5, 2) != 0)
        return 1;
    if (save_args(argv[1], "all_kinds", a, false) != 0 || save_objects(argv[1]) != 0 ||
        save_proxies(argv[1]) != 0)
        return 1;
    mp_args *d;
    if (mp_args_of(&d, "ildsb", 1, (int64_t)-2, 3.5, "str", "bytes", (size_t)5) != 0 ||
        save_args(argv[1], "data_only", d, true) != 0)
        return 1;
    mp_args_free(d);
    mp_buf b = MP_BUF_INIT;
    mp__fdvec v = {.n = 0};
    mp_process *p;
    if (mp_process_new(&p, NULL, target, a) != 0)
        return 1;
    if (mp__prep_encode(p, &b, &v) != 0)
        return 1;
    save(argv[2], "process", (uint8_t)v.n, &b);
    mp_buf_free(&b);
    mp_args_free(a);
    return mp_process_close(p) == 0 ? 0 : 1;
}
