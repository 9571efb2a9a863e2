/*
 * util.c: error codes and their names, version, mp_buf, mp_monotonic,
 * deadlines and the library's log.
 */
#include "mp_test.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const struct code {
    const char *name; /* without the MP_ prefix */
    int value;
    const char *desc;
} codes[] = {
#define CODE(name, value, desc) {#name, MP_##name, desc},
    MP_ERRNO_MAP(CODE)
#undef CODE
};
#define NCODES (sizeof codes / sizeof codes[0])

/* ---- error codes -------------------------------------------------------- */

MP_TEST(error_codes_are_distinct_and_negative)
{
    ASSERT_GE(NCODES, 24);
    for (size_t i = 0; i < NCODES; i++) {
        ASSERT_LT(codes[i].value, 0);
        for (size_t j = i + 1; j < NCODES; j++)
            if (codes[i].value == codes[j].value)
                MP__FAIL("MP_%s and MP_%s are both %d", codes[i].name, codes[j].name,
                         codes[i].value);
    }
}

/* A code with an errno twin is that errno negated (its name is the errno's
 * name); every other code sits below -4095, outside errno's range. */
MP_TEST(error_codes_follow_errno)
{
    static const struct {
        int code, err;
    } twins[] = {
        {MP_EINVAL, EINVAL},         {MP_ENOMEM, ENOMEM},     {MP_ETIMEDOUT, ETIMEDOUT},
        {MP_EAGAIN, EAGAIN},         {MP_EALREADY, EALREADY}, {MP_EPERM, EPERM},
        {MP_EOWNERDEAD, EOWNERDEAD}, {MP_EMSGSIZE, EMSGSIZE}, {MP_ENOENT, ENOENT},
        {MP_EBUSY, EBUSY},           {MP_EEXIST, EEXIST},     {MP_ENOSYS, ENOSYS},
        {MP_EBADF, EBADF},
    };
    for (size_t i = 0; i < sizeof twins / sizeof twins[0]; i++)
        ASSERT_EQ(-twins[i].err, twins[i].code);
    static const int own[] = {MP_EEMPTY,  MP_EFULL,      MP_EOF,      MP_ECLOSED,
                              MP_EBROKEN, MP_EAUTH,      MP_EWORKER,  MP_ETASK,
                              MP_EBADMSG, MP_ETRUNCATED, MP_ENOTFOUND};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        ASSERT_LT(own[i], -4095);
    for (size_t i = 0; i < NCODES; i++) {
        if (codes[i].value < -4095)
            continue;
        const char *errno_name = strerrorname_np(-codes[i].value);
        if (errno_name == NULL || strcmp(errno_name, codes[i].name) != 0)
            MP__FAIL("MP_%s is %d, which is not -%s", codes[i].name, codes[i].value, codes[i].name);
    }
}

MP_TEST(strerror_and_errname_name_every_code)
{
    for (size_t i = 0; i < NCODES; i++) {
        char want[64];
        snprintf(want, sizeof want, "MP_%s", codes[i].name);
        ASSERT_STREQ(want, mp_errname(codes[i].value));
        ASSERT_STREQ(codes[i].desc, mp_strerror(codes[i].value));
        ASSERT_GT(strlen(mp_strerror(codes[i].value)), 0);
    }
    /* a plain -errno is named by the system's tables */
    ASSERT_STREQ("EHOSTUNREACH", mp_errname(-EHOSTUNREACH));
    ASSERT_STREQ(strerror(EHOSTUNREACH), mp_strerror(-EHOSTUNREACH));
    ASSERT_STREQ("ECONNRESET", mp_errname(-ECONNRESET));
    ASSERT_STREQ(strerror(ECONNRESET), mp_strerror(-ECONNRESET));
    ASSERT_STREQ("EINTR", mp_errname(-EINTR));
    /* anything else: a string, never NULL */
    static const int unknown[] = {-4095, -4200, -5000, -99999, 1, 4242, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = mp_strerror(unknown[i]), *n = mp_errname(unknown[i]);
        ASSERT_TRUE(s != NULL && n != NULL);
        ASSERT_GT(strlen(s), 0);
        ASSERT_GT(strlen(n), 0);
    }
    ASSERT_STREQ("unknown", mp_errname(-5000));
    ASSERT_STREQ("unknown", mp_errname(INT_MIN));
}

MP_TEST(version)
{
    ASSERT_STREQ(MULTIPROC_VERSION, mp_version());
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", MULTIPROC_VERSION_MAJOR, MULTIPROC_VERSION_MINOR,
             MULTIPROC_VERSION_PATCH);
    ASSERT_STREQ(want, MULTIPROC_VERSION);
}

/* ---- mp_buf ------------------------------------------------------------- */

MP_TEST(buf_reserve)
{
    mp_buf b = MP_BUF_INIT;
    ASSERT_TRUE(b.data == NULL);
    ASSERT_EQ(0, b.len);
    ASSERT_EQ(0, b.cap);
    ASSERT_OK(mp_buf_reserve(&b, 0));
    ASSERT_OK(mp_buf_reserve(&b, 100));
    ASSERT_TRUE(b.data != NULL);
    ASSERT_GE(b.cap, 100);
    ASSERT_EQ(0, b.len);
    memset(b.data, 0xab, 100); /* the capacity is really there */
    void *data = b.data;
    size_t cap = b.cap;
    ASSERT_OK(mp_buf_reserve(&b, 10)); /* never shrinks */
    ASSERT_OK(mp_buf_reserve(&b, cap));
    ASSERT_TRUE(b.data == data);
    ASSERT_EQ(cap, b.cap);
    ASSERT_OK(mp_buf_append(&b, "abc", 3));
    ASSERT_OK(mp_buf_reserve(&b, 100000));
    ASSERT_GE(b.cap, 100000);
    ASSERT_EQ(3, b.len);
    ASSERT_MEMEQ("abc", b.data, 3); /* growth keeps the contents */
    mp_buf_free(&b);
    ASSERT_TRUE(b.data == NULL);
    ASSERT_EQ(0, b.len);
    ASSERT_EQ(0, b.cap);
}

MP_TEST(buf_append_grows)
{
    mp_buf b = MP_BUF_INIT;
    size_t total = 0;
    unsigned char *shadow = malloc(1 << 20);
    ASSERT_TRUE(shadow != NULL);
    unsigned seed = 12345;
    for (int i = 0; i < 2000 && total < (1 << 19); i++) {
        unsigned char chunk[600];
        size_t n = (size_t)(rand_r(&seed) % (int)sizeof chunk);
        for (size_t k = 0; k < n; k++)
            chunk[k] = (unsigned char)rand_r(&seed);
        ASSERT_OK(mp_buf_append(&b, chunk, n));
        memcpy(shadow + total, chunk, n);
        total += n;
        ASSERT_EQ(total, b.len);
        ASSERT_GE(b.cap, b.len);
    }
    ASSERT_GT(total, 100000);
    ASSERT_MEMEQ(shadow, b.data, total);
    ASSERT_OK(mp_buf_append(&b, NULL, 0));
    ASSERT_EQ(total, b.len);
    free(shadow);
    mp_buf_free(&b);
    /* a freed buffer is reusable */
    ASSERT_OK(mp_buf_append(&b, "xyz", 3));
    ASSERT_EQ(3, b.len);
    ASSERT_MEMEQ("xyz", b.data, 3);
    mp_buf_free(&b);
}

MP_TEST(buf_max_is_refused)
{
    mp_buf b = MP_BUF_INIT;
    ASSERT_ERR(MP_ENOMEM, mp_buf_reserve(&b, MP_BUF_MAX + 1));
    ASSERT_ERR(MP_ENOMEM, mp_buf_reserve(&b, SIZE_MAX));
    ASSERT_TRUE(b.data == NULL);
    ASSERT_EQ(0, b.cap);
    ASSERT_OK(mp_buf_append(&b, "0123456789", 10));
    void *data = b.data;
    size_t cap = b.cap;
    /* refused before anything is read from the (short) source */
    ASSERT_ERR(MP_ENOMEM, mp_buf_append(&b, "x", MP_BUF_MAX));
    ASSERT_ERR(MP_ENOMEM, mp_buf_append(&b, "x", MP_BUF_MAX - 9));
    ASSERT_ERR(MP_ENOMEM, mp_buf_append(&b, "x", SIZE_MAX));
    ASSERT_ERR(MP_ENOMEM, mp_buf_append(&b, "x", SIZE_MAX - 5));
    ASSERT_ERR(MP_ENOMEM, mp_buf_reserve(&b, MP_BUF_MAX + 1));
    /* and the buffer is unchanged */
    ASSERT_TRUE(b.data == data);
    ASSERT_EQ(cap, b.cap);
    ASSERT_EQ(10, b.len);
    ASSERT_MEMEQ("0123456789", b.data, 10);
    mp_buf_free(&b);
}

MP_TEST(buf_free_of_empty_is_fine)
{
    mp_buf b = MP_BUF_INIT;
    mp_buf_free(&b);
    mp_buf_free(&b);
    ASSERT_TRUE(b.data == NULL);
    ASSERT_EQ(0, b.len);
    ASSERT_EQ(0, b.cap);
}

/* ---- time --------------------------------------------------------------- */

MP_TEST(monotonic)
{
    struct timespec ts;
    ASSERT_EQ(0, clock_gettime(CLOCK_MONOTONIC, &ts));
    double sys = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    double prev = mp_monotonic();
    ASSERT_TRUE(prev >= sys && prev - sys < 0.5); /* the same clock */
    for (int i = 0; i < 100000; i++) {
        double t = mp_monotonic();
        ASSERT_TRUE(t >= prev);
        prev = t;
    }
    double t0 = mp_monotonic();
    ts = (struct timespec){0, 50 * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
    double took = mp_monotonic() - t0;
    ASSERT_GE(took * 1000, 49);
    ASSERT_LT(took, 5);
}

MP_TEST(deadlines)
{
    mp__deadline d;
    mp__deadline_init(&d, MP_FOREVER);
    ASSERT_EQ(-1, mp__deadline_poll_ms(&d));
    ASSERT_FALSE(mp__deadline_expired(&d));
    ASSERT_TRUE(mp__deadline_ts(&d) == NULL);

    mp__deadline_init(&d, 0);
    ASSERT_EQ(0, mp__deadline_poll_ms(&d));
    ASSERT_TRUE(mp__deadline_expired(&d));

    mp__deadline_init(&d, 0.25);
    int ms = mp__deadline_poll_ms(&d);
    ASSERT_GT(ms, 200);
    ASSERT_LE(ms, 250);
    ASSERT_FALSE(mp__deadline_expired(&d));
    const struct timespec *at = mp__deadline_ts(&d);
    ASSERT_TRUE(at != NULL);
    ASSERT_LT(at->tv_nsec, 1000000000L);
    double when = (double)at->tv_sec + (double)at->tv_nsec / 1e9;
    ASSERT_LT((when - mp_monotonic()) * 1000, 251);
    ASSERT_GT((when - mp_monotonic()) * 1000, 200);

    mp__deadline_init(&d, 1e12); /* huge: no overflow into the past */
    ASSERT_FALSE(mp__deadline_expired(&d));
    ASSERT_GT(mp__deadline_poll_ms(&d), 1000000);
}

/* ---- the log ------------------------------------------------------------ */

/* Runs with stderr redirected into a pipe; returns what was written. */
typedef struct capture {
    int saved, rd;
    char text[16384];
} capture;

static void capture_start(capture *c)
{
    int p[2];
    ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
    fflush(stderr);
    c->saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    ASSERT_GE(c->saved, 0);
    ASSERT_EQ(STDERR_FILENO, dup2(p[1], STDERR_FILENO));
    close(p[1]);
    c->rd = p[0];
}

static const char *capture_end(capture *c)
{
    fflush(stderr);
    ASSERT_EQ(STDERR_FILENO, dup2(c->saved, STDERR_FILENO));
    close(c->saved);
    size_t n = 0;
    ssize_t r;
    while (n < sizeof c->text - 1 && (r = read(c->rd, c->text + n, sizeof c->text - 1 - n)) > 0)
        n += (size_t)r;
    c->text[n] = '\0';
    close(c->rd);
    return c->text;
}

MP_TEST(log_levels)
{
    static const int levels[] = {MP_LOG_OFF, MP_LOG_ERROR, MP_LOG_WARNING, MP_LOG_INFO,
                                 MP_LOG_DEBUG};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        capture c;
        capture_start(&c);
        mp_log_to_stderr(levels[i]);
        for (int lv = MP_LOG_ERROR; lv <= MP_LOG_DEBUG; lv++)
            mp__log(lv, "message at level %d", lv);
        mp_log_to_stderr(MP_LOG_OFF);
        mp__log(MP_LOG_ERROR, "message after off");
        const char *out = capture_end(&c);
        for (int lv = MP_LOG_ERROR; lv <= MP_LOG_DEBUG; lv++) {
            char want[64];
            snprintf(want, sizeof want, "message at level %d\n", lv);
            if ((strstr(out, want) != NULL) != (lv <= levels[i]))
                MP__FAIL("level %d: a level-%d message %s; output: \"%s\"", levels[i], lv,
                         lv <= levels[i] ? "is missing" : "was printed", out);
        }
        ASSERT_TRUE(strstr(out, "after off") == NULL);
        /* one whole line per message */
        int lines = 0;
        for (const char *l = out; *l; l = strchr(l, '\n') + 1, lines++)
            ASSERT_TRUE(strchr(l, '\n') != NULL);
        ASSERT_EQ(levels[i], lines);
    }
    /* out-of-range levels are clamped, not trusted */
    capture c;
    capture_start(&c);
    mp_log_to_stderr(-7);
    mp__log(MP_LOG_ERROR, "clamped low");
    mp_log_to_stderr(1000);
    mp__log(MP_LOG_DEBUG, "clamped high");
    mp_log_to_stderr(MP_LOG_OFF);
    const char *out = capture_end(&c);
    ASSERT_TRUE(strstr(out, "clamped low") == NULL);
    ASSERT_TRUE(strstr(out, "clamped high") != NULL);
}

static int t_noop(const mp_args *a)
{
    (void)a;
    return 0;
}

MP_TEST(log_shows_process_start, .variants = MP_START_METHODS)
{
    capture c;
    capture_start(&c);
    mp_log_to_stderr(MP_LOG_DEBUG);
    mp_process *p = mp_test_start(ctx, t_noop, NULL);
    pid_t pid = mp_process_pid(p);
    ASSERT_OK(mp_process_join(p, 30));
    mp_log_to_stderr(MP_LOG_OFF);
    ASSERT_OK(mp_process_close(p));
    mp__exit_cleanup(); /* a fork server writes to the pipe too: stop it first */
    const char *out = capture_end(&c);
    /* a line about the start names the child's pid */
    char want[32];
    snprintf(want, sizeof want, "%d", (int)pid);
    if (strstr(out, want) == NULL)
        MP__FAIL("no log line names pid %d:\n%s", (int)pid, out);
}

static int t_log_marker(const mp_args *a)
{
    mp__log(MP_LOG_DEBUG, "marker from the child %d", (int)mp_args_int(a, 0));
    return 0;
}

/* The level is inherited: the child's own debug line shows up. */
MP_TEST(log_level_is_inherited, .variants = MP_START_METHODS)
{
    capture c;
    capture_start(&c);
    mp_log_to_stderr(MP_LOG_DEBUG);
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "i", 4711));
    mp_process *p = mp_test_start(ctx, t_log_marker, a);
    ASSERT_OK(mp_process_join(p, 30));
    mp_log_to_stderr(MP_LOG_OFF);
    int code = -1;
    ASSERT_OK(mp_process_exitcode(p, &code));
    ASSERT_EQ(0, code);
    ASSERT_OK(mp_process_close(p));
    mp_args_free(a);
    mp__exit_cleanup();
    const char *out = capture_end(&c);
    if (strstr(out, "marker from the child 4711\n") == NULL)
        MP__FAIL("the child's debug line is missing:\n%s", out);

    /* and a child of a process logging at OFF stays quiet */
    capture_start(&c);
    ASSERT_OK(mp_args_of(&a, "i", 4712));
    ASSERT_OK(mp_process_new(&p, ctx, t_log_marker, a));
    ASSERT_OK(mp_process_start(p));
    ASSERT_OK(mp_process_join(p, 30));
    ASSERT_OK(mp_process_close(p));
    mp_args_free(a);
    mp__exit_cleanup();
    out = capture_end(&c);
    ASSERT_TRUE(strstr(out, "4712") == NULL);
}
