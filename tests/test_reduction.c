/*
 * reduction.c: mp_args (the typed argument list), its wire form, the
 * bounded reader/writer, and function references.
 */
#include "mp_test.h"

#include <ctype.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static void same_file(int a, int b)
{
    struct stat sa, sb;
    ASSERT_EQ(0, fstat(a, &sa));
    ASSERT_EQ(0, fstat(b, &sb));
    ASSERT_EQ(sa.st_dev, sb.st_dev);
    ASSERT_EQ(sa.st_ino, sb.st_ino);
}

static bool is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* Descriptors for a decoder, which takes them over: duplicates of @v's. */
static void dup_fds(const mp__fdvec *v, int *out)
{
    for (size_t i = 0; i < v->n; i++) {
        out[i] = fcntl(v->fds[i], F_DUPFD_CLOEXEC, 3);
        ASSERT_GE(out[i], 3);
    }
}

static void close_left(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

static bool double_same(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* One of each kind of item (no pointer: those never travel). */
typedef struct sample {
    int pipe[2];
    mp_args *a;
} sample;

static const unsigned char blob[] = {0, 1, 2, 0xff, 0, 0x80, 'x'};
static const int64_t ints[] = {0, 1, -1, INT64_MAX, INT64_MIN, 0x0123456789abcdefLL};

static void sample_make(sample *s)
{
    ASSERT_EQ(0, pipe2(s->pipe, O_CLOEXEC));
    ASSERT_OK(mp_args_new(&s->a));
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        ASSERT_OK(mp_args_add_int(s->a, ints[i]));                 /* 0..5 */
    ASSERT_OK(mp_args_add_double(s->a, -0.0));                     /* 6 */
    ASSERT_OK(mp_args_add_double(s->a, DBL_MIN / 4));              /* 7 */
    ASSERT_OK(mp_args_add_double(s->a, INFINITY));                 /* 8 */
    ASSERT_OK(mp_args_add_str(s->a, ""));                          /* 9 */
    ASSERT_OK(mp_args_add_str(s->a, "h\xc3\xa9llo w\xc3\xb6rld")); /* 10 */
    ASSERT_OK(mp_args_add_bytes(s->a, blob, sizeof blob));         /* 11 */
    ASSERT_OK(mp_args_add_bytes(s->a, NULL, 0));                   /* 12 */
    ASSERT_OK(mp_args_add_fd(s->a, s->pipe[1]));                   /* 13 */
    ASSERT_OK(mp_args_add_fd(s->a, s->pipe[0]));                   /* 14 */
    ASSERT_OK(mp_args_add_fd(s->a, s->pipe[1]));                   /* 15 */
}

static void sample_check(const sample *s, const mp_args *a)
{
    ASSERT_EQ(16, mp_args_count(a));
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        ASSERT_EQ(MP_ARG_INT, mp_args_type(a, i));
        ASSERT_TRUE(mp_args_int(a, i) == ints[i]);
    }
    ASSERT_EQ(MP_ARG_DOUBLE, mp_args_type(a, 6));
    ASSERT_TRUE(double_same(-0.0, mp_args_double(a, 6)));
    ASSERT_TRUE(double_same(DBL_MIN / 4, mp_args_double(a, 7)));
    ASSERT_TRUE(double_same(INFINITY, mp_args_double(a, 8)));
    ASSERT_EQ(MP_ARG_STR, mp_args_type(a, 9));
    ASSERT_STREQ("", mp_args_str(a, 9));
    ASSERT_STREQ("h\xc3\xa9llo w\xc3\xb6rld", mp_args_str(a, 10));
    size_t len = 12345;
    ASSERT_EQ(MP_ARG_BYTES, mp_args_type(a, 11));
    const void *p = mp_args_bytes(a, 11, &len);
    ASSERT_EQ(sizeof blob, len);
    ASSERT_MEMEQ(blob, p, sizeof blob);
    len = 12345;
    mp_args_bytes(a, 12, &len);
    ASSERT_EQ(0, len);
    for (size_t i = 13; i <= 15; i++) {
        ASSERT_EQ(MP_ARG_FD, mp_args_type(a, i));
        ASSERT_GE(mp_args_fd(a, i), 3);
        ASSERT_TRUE(is_open(mp_args_fd(a, i)));
    }
    same_file(s->pipe[1], mp_args_fd(a, 13));
    same_file(s->pipe[0], mp_args_fd(a, 14));
    same_file(s->pipe[1], mp_args_fd(a, 15));
    ASSERT_NE(mp_args_fd(a, 13), mp_args_fd(a, 15)); /* each item owns its own */
    /* the descriptors work: through the stored write end, out of the stored read end */
    ASSERT_EQ(3, write(mp_args_fd(a, 15), "abc", 3));
    char got[4] = "";
    ASSERT_EQ(3, read(mp_args_fd(a, 14), got, 3));
    ASSERT_MEMEQ("abc", got, 3);
    ASSERT_EQ(0, mp_args_type(a, 16));
    ASSERT_EQ(0, mp_args_type(a, (size_t)-1));
}

static void sample_free(sample *s)
{
    mp_args_free(s->a);
    close(s->pipe[0]);
    close(s->pipe[1]);
}

/* ---- mp_args ------------------------------------------------------------ */

MP_TEST(args_round_trip)
{
    sample s;
    sample_make(&s);
    sample_check(&s, s.a);
    sample_free(&s);

    mp_args *a;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_EQ(0, mp_args_count(a));
    ASSERT_EQ(0, mp_args_type(a, 0));
    int x;
    ASSERT_OK(mp_args_add_ptr(a, &x));
    ASSERT_OK(mp_args_add_ptr(a, NULL));
    ASSERT_EQ(2, mp_args_count(a));
    ASSERT_EQ(MP_ARG_PTR, mp_args_type(a, 0));
    ASSERT_TRUE(mp_args_ptr(a, 0) == &x);
    ASSERT_TRUE(mp_args_ptr(a, 1) == NULL);
    ASSERT_TRUE(mp__args_has_ptr(a));
    mp_args_free(a);
    mp_args_free(NULL);
}

MP_TEST(args_copy_their_input)
{
    char s[] = "mutable";
    unsigned char b[] = {1, 2, 3};
    mp_args *a;
    ASSERT_OK(mp_args_new(&a));
    ASSERT_OK(mp_args_add_str(a, s));
    ASSERT_OK(mp_args_add_bytes(a, b, sizeof b));
    memset(s, 'X', sizeof s - 1);
    memset(b, 9, sizeof b);
    ASSERT_STREQ("mutable", mp_args_str(a, 0));
    size_t n;
    ASSERT_MEMEQ("\1\2\3", mp_args_bytes(a, 1, &n), 3);
    ASSERT_EQ(3, n);
    ASSERT_TRUE(mp_args_bytes(a, 1, NULL) != NULL); /* len may be NULL */
    ASSERT_FALSE(mp__args_has_ptr(a));
    /* many items */
    for (int i = 0; i < 1000; i++)
        ASSERT_OK(mp_args_add_int(a, i));
    ASSERT_EQ(1002, mp_args_count(a));
    for (int i = 0; i < 1000; i++)
        ASSERT_EQ(i, mp_args_int(a, (size_t)i + 2));
    mp_args_free(a);
}

MP_TEST(args_add_fd_duplicates)
{
    int p[2];
    ASSERT_EQ(0, pipe2(p, 0));
    mp_args *a;
    ASSERT_OK(mp_args_new(&a));
    /* with fd 0 free, the stored descriptor must still not be 0..2 */
    ASSERT_EQ(0, close(STDIN_FILENO));
    ASSERT_OK(mp_args_add_fd(a, p[1]));
    int fd = mp_args_fd(a, 0);
    ASSERT_GE(fd, 3);
    ASSERT_NE(p[1], fd);
    same_file(p[1], fd);
    ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    ASSERT_EQ(0, close(p[1])); /* the caller's own: the stored one lives on */
    ASSERT_EQ(fd, mp_args_fd(a, 0));
    ASSERT_EQ(2, write(fd, "hi", 2));
    char got[2];
    ASSERT_EQ(2, read(p[0], got, 2));
    ASSERT_MEMEQ("hi", got, 2);
    mp_args_free(a); /* closes its descriptor: the pipe has no writer left */
    ASSERT_FALSE(is_open(fd));
    ASSERT_EQ(0, read(p[0], got, 1));
    close(p[0]);

    /* a descriptor that is not open is refused, and nothing is added */
    ASSERT_OK(mp_args_new(&a));
    ASSERT_ERR(MP_EBADF, mp_args_add_fd(a, -1));
    ASSERT_ERR(MP_EBADF, mp_args_add_fd(a, p[0]));
    ASSERT_EQ(0, mp_args_count(a));
    mp_args_free(a);
}

MP_TEST(args_of)
{
    int p[2];
    ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
    int value = 7;
    mp_args *a = NULL;
    ASSERT_OK(mp_args_of(&a, "ildsbpf", -5, (int64_t)1 << 40, 2.25, "str", "b\0b", (size_t)3,
                         &value, p[0]));
    ASSERT_TRUE(a != NULL);
    ASSERT_EQ(7, mp_args_count(a));
    ASSERT_EQ(MP_ARG_INT, mp_args_type(a, 0));
    ASSERT_EQ(-5, mp_args_int(a, 0));
    ASSERT_EQ(MP_ARG_INT, mp_args_type(a, 1));
    ASSERT_TRUE(mp_args_int(a, 1) == (int64_t)1 << 40);
    ASSERT_EQ(MP_ARG_DOUBLE, mp_args_type(a, 2));
    ASSERT_TRUE(mp_args_double(a, 2) == 2.25);
    ASSERT_STREQ("str", mp_args_str(a, 3));
    size_t n;
    ASSERT_MEMEQ("b\0b", mp_args_bytes(a, 4, &n), 3);
    ASSERT_EQ(3, n);
    ASSERT_TRUE(mp_args_ptr(a, 5) == &value);
    ASSERT_EQ(MP_ARG_FD, mp_args_type(a, 6));
    ASSERT_NE(p[0], mp_args_fd(a, 6));
    same_file(p[0], mp_args_fd(a, 6));
    mp_args_free(a);

    ASSERT_OK(mp_args_of(&a, ""));
    ASSERT_EQ(0, mp_args_count(a));
    mp_args_free(a);

    /* an unknown character fails, and what was built so far (a descriptor
     * too) is released */
    int next = fcntl(p[1], F_DUPFD_CLOEXEC, 3); /* the number a dup would get */
    close(next);
    a = (mp_args *)1;
    ASSERT_ERR(MP_EINVAL, mp_args_of(&a, "fq", p[1]));
    ASSERT_TRUE(a == NULL);
    ASSERT_FALSE(is_open(next));
    a = (mp_args *)1;
    ASSERT_ERR(MP_EINVAL, mp_args_of(&a, "x"));
    ASSERT_TRUE(a == NULL);
    ASSERT_ERR(MP_EINVAL, mp_args_of(&a, "iz", 1));
    ASSERT_ERR(MP_EINVAL, mp_args_of(&a, "s?", "s"));
    ASSERT_ERR(MP_EINVAL, mp_args_of(&a, "I", 1));
    ASSERT_ERR(MP_EINVAL, mp_args_of(&a, "ds d", 1.0, "s", 2.0));
    close(p[0]);
    close(p[1]);
}

/* ---- a wrong getter is a programming error: one line, then abort -------- */

enum getter { G_INT, G_DOUBLE, G_STR, G_BYTES, G_PTR, G_FD };
static const char *const getter_type[] = {"int", "double", "str", "bytes", "ptr", "fd"};

static void call_getter(const mp_args *a, enum getter g, size_t i)
{
    volatile uintptr_t sink = 0;
    switch (g) {
    case G_INT: sink = (uintptr_t)mp_args_int(a, i); break;
    case G_DOUBLE: sink = (uintptr_t)mp_args_double(a, i); break;
    case G_STR: sink = (uintptr_t)mp_args_str(a, i); break;
    case G_BYTES: sink = (uintptr_t)mp_args_bytes(a, i, NULL); break;
    case G_PTR: sink = (uintptr_t)mp_args_ptr(a, i); break;
    case G_FD: sink = (uintptr_t)mp_args_fd(a, i); break;
    }
    (void)sink;
}

/* Does @text hold @word as a whole word (not inside a longer one)? */
static bool has_word(const char *text, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = strstr(text, word); p; p = strstr(p + 1, word)) {
        bool left = p == text || !isalnum((unsigned char)p[-1]);
        bool right = !isalnum((unsigned char)p[n]);
        if (left && right)
            return true;
    }
    return false;
}

/* Call the getter in a forked child; it must die by SIGABRT after printing
 * exactly one line on stderr, which is returned in @msg. */
static void expect_abort(const mp_args *a, enum getter g, size_t i, char *msg, size_t cap)
{
    int p[2];
    pid_t pid = mp_test_fork_pipe(p);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        dup2(p[1], STDERR_FILENO);
        call_getter(a, g, i);
        _exit(0); /* not reached when the getter aborts */
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while (n < cap - 1 && (r = read(p[0], msg + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    msg[n] = '\0';
    close(p[0]);
    int st;
    ASSERT_EQ(pid, waitpid(pid, &st, 0));
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT)
        MP__FAIL("getter %s on item %zu: wait status %#x, not SIGABRT; it printed \"%s\"",
                 getter_type[g], i, st, msg);
    ASSERT_GT(n, 0);
    ASSERT_TRUE(msg[n - 1] == '\n');
    ASSERT_TRUE(strchr(msg, '\n') == msg + n - 1); /* one line */
}

MP_TEST(wrong_getter_aborts)
{
    int p[2];
    ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
    mp_args *a;
    int x;
    /* item i has type getter_type[i] */
    ASSERT_OK(mp_args_of(&a, "ldsbpf", (int64_t)1, 2.0, "three", "4", (size_t)1, &x, p[0]));
    close(p[0]);
    close(p[1]);
    char msg[1024], idx[16];
    for (int have = G_INT; have <= G_FD; have++) {
        for (int want = G_INT; want <= G_FD; want++) {
            if (want == have)
                continue;
            expect_abort(a, (enum getter)want, (size_t)have, msg, sizeof msg);
            snprintf(idx, sizeof idx, "%d", have);
            if (!has_word(msg, idx) || !has_word(msg, getter_type[have]) ||
                !has_word(msg, getter_type[want]))
                MP__FAIL("asking item %d (%s) for a %s printed \"%s\"", have, getter_type[have],
                         getter_type[want], msg);
        }
    }
    /* an index out of range: the line names the index and the wanted type */
    for (int want = G_INT; want <= G_FD; want++) {
        expect_abort(a, (enum getter)want, 17, msg, sizeof msg);
        if (!has_word(msg, "17") || !has_word(msg, getter_type[want]))
            MP__FAIL("asking item 17 of 6 for a %s printed \"%s\"", getter_type[want], msg);
    }
    mp_args_free(a);
}

/* ---- bounded writer and reader ------------------------------------------ */

MP_TEST(writer_and_reader)
{
    mp_buf b = MP_BUF_INIT;
    ASSERT_OK(mp__put_u8(&b, 0xa5));
    ASSERT_OK(mp__put_u32(&b, 0x01020304));
    ASSERT_OK(mp__put_u64(&b, 0x1122334455667788ULL));
    ASSERT_OK(mp__put_blob(&b, "\0bl\0b", 5));
    ASSERT_OK(mp__put_blob(&b, NULL, 0));
    ASSERT_OK(mp__put_str(&b, "text"));
    /* fixed widths are little-endian */
    ASSERT_EQ(1 + 4 + 8 + 8 + 5 + 8 + 8 + 5, b.len);
    ASSERT_MEMEQ("\xa5\x04\x03\x02\x01\x88\x77\x66\x55\x44\x33\x22\x11", b.data, 13);

    mp__reader r;
    mp__reader_init(&r, b.data, b.len);
    ASSERT_EQ(0xa5, mp__get_u8(&r));
    ASSERT_EQ(0x01020304, mp__get_u32(&r));
    ASSERT_TRUE(mp__get_u64(&r) == 0x1122334455667788ULL);
    size_t n;
    const void *p = mp__get_blob(&r, &n);
    ASSERT_EQ(5, n);
    ASSERT_MEMEQ("\0bl\0b", p, 5);
    p = mp__get_blob(&r, &n);
    ASSERT_EQ(0, n);
    ASSERT_STREQ("text", mp__get_str(&r));
    ASSERT_EQ(0, r.err);
    ASSERT_EQ(b.len, r.off);
    /* past the end: an error that sticks, and zero values */
    ASSERT_EQ(0, mp__get_u8(&r));
    ASSERT_EQ(MP_EBADMSG, r.err);
    mp__reader_init(&r, b.data, 3);
    ASSERT_EQ(0xa5, mp__get_u8(&r));
    ASSERT_EQ(0, mp__get_u32(&r));
    ASSERT_EQ(MP_EBADMSG, r.err);
    mp_buf_free(&b);

    /* a blob longer than what is left, or a huge one, is refused */
    ASSERT_OK(mp__put_u64(&b, 100));
    ASSERT_OK(mp_buf_append(&b, "short", 5));
    mp__reader_init(&r, b.data, b.len);
    ASSERT_TRUE(mp__get_blob(&r, &n) == NULL);
    ASSERT_EQ(MP_EBADMSG, r.err);
    b.len = 0;
    ASSERT_OK(mp__put_u64(&b, UINT64_MAX));
    mp__reader_init(&r, b.data, b.len);
    ASSERT_TRUE(mp__get_blob(&r, &n) == NULL);
    ASSERT_EQ(MP_EBADMSG, r.err);
    /* a str must end with its only NUL */
    b.len = 0;
    ASSERT_OK(mp__put_blob(&b, "abc", 3));
    mp__reader_init(&r, b.data, b.len);
    ASSERT_TRUE(mp__get_str(&r) == NULL);
    ASSERT_EQ(MP_EBADMSG, r.err);
    b.len = 0;
    ASSERT_OK(mp__put_blob(&b, "a\0c", 4));
    mp__reader_init(&r, b.data, b.len);
    ASSERT_TRUE(mp__get_str(&r) == NULL);
    b.len = 0;
    ASSERT_OK(mp__put_blob(&b, "", 0));
    mp__reader_init(&r, b.data, b.len);
    ASSERT_TRUE(mp__get_str(&r) == NULL);
    mp_buf_free(&b);
}

MP_TEST(fdvec)
{
    static mp__fdvec v;
    v.n = 0;
    for (int i = 0; i < MP__MAX_FDS; i++)
        ASSERT_EQ(i, mp__fdvec_add(&v, 1000 + i));
    ASSERT_EQ(MP__MAX_FDS, v.n);
    ASSERT_ERR(MP_EINVAL, mp__fdvec_add(&v, 5));
    ASSERT_EQ(MP__MAX_FDS, v.n);
    ASSERT_EQ(1000 + 17, v.fds[17]);
}

/* ---- wire form ---------------------------------------------------------- */

MP_TEST(wire_round_trip)
{
    sample s;
    sample_make(&s);
    mp_buf w = MP_BUF_INIT;
    static mp__fdvec v;
    v.n = 0;
    ASSERT_OK(mp__put_str(&w, "before")); /* encoding appends */
    size_t start = w.len;
    ASSERT_OK(mp__args_encode(s.a, &w, &v, MP__WIRE_CHILD));
    ASSERT_EQ(3, v.n); /* one descriptor per fd item */

    int fds[3];
    dup_fds(&v, fds);
    mp__reader r;
    mp__reader_init(&r, (char *)w.data + start, w.len - start);
    mp_args *b = NULL;
    ASSERT_OK(mp__args_decode(&r, fds, v.n, MP__WIRE_CHILD, &b));
    ASSERT_EQ(w.len - start, r.off); /* all of it, nothing more */
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(-1, fds[i]); /* all taken over */
    sample_check(&s, b);
    mp_args_free(b);

    /* empty lists (and none) travel too */
    mp_args *e;
    ASSERT_OK(mp_args_new(&e));
    for (int k = 0; k < 2; k++) {
        w.len = 0;
        v.n = 0;
        ASSERT_OK(mp__args_encode(k ? NULL : e, &w, &v, MP__WIRE_CHILD));
        ASSERT_EQ(0, v.n);
        mp__reader_init(&r, w.data, w.len);
        ASSERT_OK(mp__args_decode(&r, NULL, 0, MP__WIRE_CHILD, &b));
        ASSERT_EQ(0, mp_args_count(b));
        mp_args_free(b);
    }
    /* a pointer never travels */
    ASSERT_OK(mp_args_add_ptr(e, &s));
    w.len = 0;
    v.n = 0;
    ASSERT_ERR(MP_EINVAL, mp__args_encode(e, &w, &v, MP__WIRE_CHILD));
    mp_args_free(e);

    /* mp__args_dup: the same items, its own descriptors */
    ASSERT_OK(mp__args_dup(s.a, &b));
    sample_check(&s, b);
    for (size_t i = 13; i <= 15; i++)
        ASSERT_NE(mp_args_fd(s.a, i), mp_args_fd(b, i));
    mp_args_free(b);
    mp_buf_free(&w);
    sample_free(&s);
}

static int decode_bytes(const void *p, size_t n, const mp__fdvec *v, mp_args **out)
{
    int fds[MP__MAX_FDS];
    dup_fds(v, fds);
    mp__reader r;
    mp__reader_init(&r, p, n);
    int err = mp__args_decode(&r, fds, v->n, MP__WIRE_CHILD, out);
    close_left(fds, v->n);
    return err;
}

MP_TEST(wire_truncated)
{
    sample s;
    sample_make(&s);
    mp_buf w = MP_BUF_INIT;
    static mp__fdvec v;
    v.n = 0;
    ASSERT_OK(mp__args_encode(s.a, &w, &v, MP__WIRE_CHILD));
    /* every proper prefix is refused: nothing built, nothing left open */
    for (size_t n = 0; n < w.len; n++) {
        char *copy = malloc(n ? n : 1); /* exactly n bytes: ASan sees over-reads */
        ASSERT_TRUE(copy != NULL);
        memcpy(copy, w.data, n);
        mp_args *b = (mp_args *)1;
        int err = decode_bytes(copy, n, &v, &b);
        if (err != MP_EBADMSG)
            MP__FAIL("prefix of %zu of %zu bytes: %d (%s), not MP_EBADMSG", n, w.len, err,
                     mp_errname(err));
        ASSERT_TRUE(b == NULL);
        free(copy);
    }
    mp_buf_free(&w);
    sample_free(&s);
}

MP_TEST(wire_corrupted)
{
    sample s;
    sample_make(&s);
    mp_buf w = MP_BUF_INIT;
    static mp__fdvec v;
    v.n = 0;
    ASSERT_OK(mp__args_encode(s.a, &w, &v, MP__WIRE_CHILD));
    unsigned char *copy = malloc(w.len);
    ASSERT_TRUE(copy != NULL);
    unsigned seed = 4242;
    int ok = 0, bad = 0;
    for (int round = 0; round < 5000; round++) {
        memcpy(copy, w.data, w.len);
        int flips = 1 + rand_r(&seed) % 4;
        for (int k = 0; k < flips; k++)
            copy[(size_t)rand_r(&seed) % w.len] ^= (unsigned char)(1 + rand_r(&seed) % 255);
        mp_args *b = (mp_args *)1;
        int err = decode_bytes(copy, w.len, &v, &b);
        if (err == 0) {
            ASSERT_TRUE(b != NULL);
            ASSERT_LE(mp_args_count(b), 16);
            mp_args_free(b);
            ok++;
        } else {
            ASSERT_ERR(MP_EBADMSG, err);
            ASSERT_TRUE(b == NULL);
            bad++;
        }
    }
    /* both outcomes happen (a flipped int is still a valid message) */
    ASSERT_GT(ok, 0);
    ASSERT_GT(bad, 0);
    /* a bad magic is always refused */
    for (size_t i = 0; i < 4; i++) {
        memcpy(copy, w.data, w.len);
        copy[i] ^= 0x20;
        mp_args *b;
        ASSERT_ERR(MP_EBADMSG, decode_bytes(copy, w.len, &v, &b));
    }
    free(copy);
    mp_buf_free(&w);
    sample_free(&s);
}

/* Messages made by hand: the magic, a count, then (type, payload) items. */
static void hand_header(mp_buf *w, uint32_t count)
{
    mp_buf e = MP_BUF_INIT;
    mp__fdvec v = {.n = 0};
    ASSERT_OK(mp__args_encode(NULL, &e, &v, MP__WIRE_CHILD));
    ASSERT_EQ(8, e.len); /* magic and a zero count */
    w->len = 0;
    ASSERT_OK(mp_buf_append(w, e.data, 4));
    ASSERT_OK(mp__put_u32(w, count));
    mp_buf_free(&e);
}

MP_TEST(wire_hostile_messages)
{
    int p[2];
    ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
    static mp__fdvec v;
    v.n = 0;
    ASSERT_EQ(0, mp__fdvec_add(&v, p[0]));
    ASSERT_EQ(1, mp__fdvec_add(&v, p[1]));
    mp_buf w = MP_BUF_INIT;
    mp_args *b;

    hand_header(&w, 1); /* a valid one first: the format is what we think */
    ASSERT_OK(mp__put_u8(&w, MP_ARG_FD));
    ASSERT_OK(mp__put_u32(&w, 1));
    ASSERT_OK(decode_bytes(w.data, w.len, &v, &b));
    same_file(p[1], mp_args_fd(b, 0));
    mp_args_free(b);

    hand_header(&w, 0xffffffffu); /* a huge count, no items */
    ASSERT_ERR(MP_EBADMSG, decode_bytes(w.data, w.len, &v, &b));
    hand_header(&w, 2); /* fewer items than counted */
    ASSERT_OK(mp__put_u8(&w, MP_ARG_INT));
    ASSERT_OK(mp__put_u64(&w, 5));
    ASSERT_ERR(MP_EBADMSG, decode_bytes(w.data, w.len, &v, &b));
    static const uint8_t bad_types[] = {0, MP_ARG_OBJECT + 1, 0x7f, 0xff};
    for (size_t i = 0; i < sizeof bad_types; i++) {
        hand_header(&w, 1);
        ASSERT_OK(mp__put_u8(&w, bad_types[i]));
        ASSERT_OK(mp__put_u64(&w, 0));
        ASSERT_ERR(MP_EBADMSG, decode_bytes(w.data, w.len, &v, &b));
    }
    hand_header(&w, 1); /* a pointer never arrives */
    ASSERT_OK(mp__put_u8(&w, MP_ARG_PTR));
    ASSERT_OK(mp__put_u64(&w, (uintptr_t)&w));
    ASSERT_ERR(MP_EBADMSG, decode_bytes(w.data, w.len, &v, &b));
    hand_header(&w, 1); /* an object of no known kind */
    ASSERT_OK(mp__put_u8(&w, MP_ARG_OBJECT));
    ASSERT_OK(mp__put_u8(&w, 0xee));
    ASSERT_ERR(MP_EBADMSG, decode_bytes(w.data, w.len, &v, &b));
    hand_header(&w, 1); /* a blob claiming 2^63 bytes */
    ASSERT_OK(mp__put_u8(&w, MP_ARG_BYTES));
    ASSERT_OK(mp__put_u64(&w, (uint64_t)1 << 63));
    ASSERT_OK(mp_buf_append(&w, "abc", 3));
    ASSERT_ERR(MP_EBADMSG, decode_bytes(w.data, w.len, &v, &b));
    hand_header(&w, 1); /* a string with a NUL inside */
    ASSERT_OK(mp__put_u8(&w, MP_ARG_STR));
    ASSERT_OK(mp__put_blob(&w, "a\0b", 3));
    ASSERT_ERR(MP_EBADMSG, decode_bytes(w.data, w.len, &v, &b));
    hand_header(&w, 1); /* a descriptor index past the list */
    ASSERT_OK(mp__put_u8(&w, MP_ARG_FD));
    ASSERT_OK(mp__put_u32(&w, 2));
    ASSERT_ERR(MP_EBADMSG, decode_bytes(w.data, w.len, &v, &b));
    /* the same descriptor twice: the first item took it; freeing the
     * half-built list closes it (the harness checks no fd is left) */
    hand_header(&w, 3);
    ASSERT_OK(mp__put_u8(&w, MP_ARG_FD));
    ASSERT_OK(mp__put_u32(&w, 0));
    ASSERT_OK(mp__put_u8(&w, MP_ARG_FD));
    ASSERT_OK(mp__put_u32(&w, 0));
    ASSERT_OK(mp__put_u8(&w, MP_ARG_INT));
    ASSERT_OK(mp__put_u64(&w, 1));
    ASSERT_ERR(MP_EBADMSG, decode_bytes(w.data, w.len, &v, &b));

    mp_buf_free(&w);
    close(p[0]);
    close(p[1]);
}

/* ---- function references ------------------------------------------------ */

int mp_test_global_function(int x);
int mp_test_global_function(int x)
{
    return x + 1;
}

static int static_function(int x)
{
    return x * 3;
}

/* Encode, decode, compare; returns the encoding in @w. */
static void funcref_round_trip(const void *fn, mp_buf *w)
{
    w->len = 0;
    ASSERT_OK(mp__funcref_encode(fn, w));
    mp__reader r;
    mp__reader_init(&r, w->data, w->len);
    void *out = NULL;
    char why[256] = "";
    ASSERT_OK(mp__funcref_decode(&r, true, &out, why, sizeof why));
    if (out != fn)
        MP__FAIL("function %p came back as %p", fn, out);
    ASSERT_EQ(w->len, r.off);
}

/* Where the build id and the offset sit in an encoding. */
static void funcref_parts(const mp_buf *w, size_t *id_off, size_t *id_len, size_t *offset_off)
{
    mp__reader r;
    mp__reader_init(&r, w->data, w->len);
    ASSERT_TRUE(mp__get_str(&r) != NULL);
    const void *id = mp__get_blob(&r, id_len);
    ASSERT_TRUE(id != NULL);
    *id_off = (size_t)((const char *)id - (const char *)w->data);
    *offset_off = r.off;
    mp__get_u64(&r);
    ASSERT_EQ(0, r.err);
    ASSERT_EQ(w->len, r.off);
}

static void expect_not_found(const mp_buf *w)
{
    mp__reader r;
    mp__reader_init(&r, w->data, w->len);
    void *out = (void *)1;
    char why[512];
    memset(why, 'x', sizeof why);
    ASSERT_ERR(MP_ENOTFOUND, mp__funcref_decode(&r, true, &out, why, sizeof why));
    ASSERT_TRUE(out == NULL);
    ASSERT_TRUE(memchr(why, '\0', sizeof why) != NULL);
    ASSERT_GT(strlen(why), 0);
    ASSERT_TRUE(strchr(why, '\n') == NULL); /* one line */
}

/* A corrupted build id, or an offset outside the object, does not resolve. */
static void funcref_corruptions(const void *fn)
{
    mp_buf w = MP_BUF_INIT;
    funcref_round_trip(fn, &w);
    size_t id_off, id_len, offset_off;
    funcref_parts(&w, &id_off, &id_len, &offset_off);
    ASSERT_GT(id_len, 0); /* the build uses --build-id */
    size_t flip[] = {id_off, id_off + id_len - 1}; /* its first and last byte */
    for (size_t i = 0; i < 2; i++) {
        ((unsigned char *)w.data)[flip[i]] ^= 0x5a;
        expect_not_found(&w);
        ((unsigned char *)w.data)[flip[i]] ^= 0x5a;
    }
    static const uint64_t offsets[] = {(uint64_t)1 << 40, UINT64_MAX, UINT64_MAX - 4096,
                                       (uint64_t)1 << 62};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        w.len = offset_off;
        ASSERT_OK(mp__put_u64(&w, offsets[i]));
        expect_not_found(&w);
    }
    /* truncated: malformed, not a crash */
    funcref_round_trip(fn, &w);
    for (size_t n = 0; n < w.len; n++) {
        mp__reader r;
        mp__reader_init(&r, w.data, n);
        void *out = (void *)1;
        char why[256] = "";
        ASSERT_ERR(MP_EBADMSG, mp__funcref_decode(&r, true, &out, why, sizeof why));
        ASSERT_TRUE(out == NULL);
        ASSERT_GT(strlen(why), 0);
    }
    mp_buf_free(&w);
}

MP_TEST(funcref_in_executable)
{
    mp_buf w = MP_BUF_INIT;
    funcref_round_trip((const void *)mp_test_global_function, &w);
    funcref_round_trip((const void *)static_function, &w);
    funcref_round_trip((const void *)funcref_round_trip, &w);
    mp_buf_free(&w);
    funcref_corruptions((const void *)static_function);
    /* not code at all */
    static int data;
    ASSERT_ERR(MP_EINVAL, mp__funcref_encode(&data, &w));
    mp_buf_free(&w);
}

MP_TEST(funcref_in_shared_library)
{
    /* puts in libc, which the test links (asked of libc itself: under a
     * sanitizer the program's own puts is an interceptor in the executable) */
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    ASSERT_TRUE(libc != NULL);
    const void *fn = dlsym(libc, "puts");
    ASSERT_TRUE(fn != NULL);
    Dl_info info;
    ASSERT_TRUE(dladdr(fn, &info) != 0);
    ASSERT_TRUE(strstr(info.dli_fname, "libc.so") != NULL);
    mp_buf w = MP_BUF_INIT;
    funcref_round_trip(fn, &w);
    funcref_round_trip((const void *)mp_args_new, &w); /* the library itself */
    mp_buf_free(&w);
    funcref_corruptions(fn);
    dlclose(libc);
}

MP_TEST(funcref_in_dlopened_library)
{
    void *h = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
    ASSERT_TRUE(h != NULL);
    double (*fn)(double) = (double (*)(double))dlsym(h, "cos");
    ASSERT_TRUE(fn != NULL);
    mp_buf w = MP_BUF_INIT;
    funcref_round_trip((const void *)fn, &w);
    funcref_corruptions((const void *)fn);
    funcref_round_trip((const void *)fn, &w);
    dlclose(h);
    /* once unloaded (if it was), decoding loads it again */
    mp__reader r;
    mp__reader_init(&r, w.data, w.len);
    void *out = NULL;
    char why[256] = "";
    if (mp__funcref_decode(&r, true, &out, why, sizeof why) != 0)
        MP__FAIL("cos no longer resolves: %s", why);
    void *again = dlopen("libm.so.6", RTLD_NOW | RTLD_NOLOAD);
    ASSERT_TRUE(again != NULL);
    ASSERT_TRUE(out == dlsym(again, "cos"));
    ASSERT_TRUE(((double (*)(double))out)(0.0) == 1.0);
    dlclose(again);
    mp_buf_free(&w);
}
