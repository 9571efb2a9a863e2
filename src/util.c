/* Errors, time and deadlines, logging, mp_buf. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------- */

const char *mp_strerror(int err)
{
    switch (err) {
#define MP__ERR_STR(name, value, desc)                                         \
    case MP_##name:                                                            \
        return desc;
        MP_ERRNO_MAP(MP__ERR_STR)
#undef MP__ERR_STR
    default:
        break;
    }
    if (err < 0 && err > -4096)
        return strerror(-err);
    if (err == 0)
        return "success";
    return "unknown error";
}

const char *mp_errname(int err)
{
    switch (err) {
#define MP__ERR_NAME(name, value, desc)                                        \
    case MP_##name:                                                            \
        return "MP_" #name;
        MP_ERRNO_MAP(MP__ERR_NAME)
#undef MP__ERR_NAME
    default:
        break;
    }
    if (err < 0 && err > -4096) {
        const char *n = strerrorname_np(-err);
        if (n != NULL)
            return n;
    }
    if (err == 0)
        return "OK";
    return "unknown";
}

const char *mp_version(void)
{
    return MULTIPROC_VERSION;
}

/* ---- time --------------------------------------------------------------- */

double mp_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void mp__deadline_from_now(mp__deadline *d, double timeout)
{
    clock_gettime(CLOCK_MONOTONIC, &d->at);
    if (timeout > 1e9)
        timeout = 1e9; /* ~31 years: effectively forever, no overflow */
    time_t sec = (time_t)timeout;
    long nsec = (long)((timeout - (double)sec) * 1e9);
    d->at.tv_sec += sec;
    d->at.tv_nsec += nsec;
    if (d->at.tv_nsec >= 1000000000L) {
        d->at.tv_sec++;
        d->at.tv_nsec -= 1000000000L;
    }
}

static int64_t remaining_ns(const mp__deadline *d)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(d->at.tv_sec - now.tv_sec) * 1000000000LL + (d->at.tv_nsec - now.tv_nsec);
}

int mp__deadline_poll_ms(const mp__deadline *d)
{
    if (d->forever)
        return -1;
    if (d->zero)
        return 0;
    int64_t ns = remaining_ns(d);
    if (ns <= 0)
        return 0;
    int64_t ms = (ns + 999999) / 1000000;
    return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

bool mp__deadline_expired(const mp__deadline *d)
{
    return !d->forever && (d->zero || remaining_ns(d) <= 0);
}

const struct timespec *mp__deadline_ts(const mp__deadline *d)
{
    return d->forever ? NULL : &d->at;
}

/* ---- logging ------------------------------------------------------------ */

int mp__log_level = MP_LOG_OFF;

void mp_log_to_stderr(int level)
{
    if (level < MP_LOG_OFF)
        level = MP_LOG_OFF;
    if (level > MP_LOG_DEBUG)
        level = MP_LOG_DEBUG;
    mp__log_level = level;
}

/* This process's own record (process.c keeps it).  Defined here, at the
 * bottom of the layers, because every layer reads it -- the log line
 * below names the process -- and a definition in process.c made util.c
 * reach up into it (docs/ARCHITECTURE.md). */
mp__self mp__me __attribute__((aligned(4096))) = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .pidfd = -1,
    .fs = {.lock = PTHREAD_MUTEX_INITIALIZER, .ctl = -1, .pidfd = -1},
};
_Static_assert(sizeof(mp__self) <= 4096, "mp__self fits one page");

void mp__log_write(int level, const char *fmt, ...)
{
    static const char *names[] = {"", "ERROR", "WARNING", "INFO", "DEBUG"};
    char line[512];
    int n = snprintf(line, sizeof line, "[%s/%s %d] ", names[level],
                     mp__me.proc.name ? mp__me.proc.name : "MainProcess", (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof line)
        n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line - 1)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    /* one write: lines from several processes never interleave */
    (void)!write(STDERR_FILENO, line, (size_t)n);
}

void mp__fatal(const char *fmt, ...)
{
    char line[512];
    int n = snprintf(line, sizeof line, "multiproc: ");
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if ((size_t)n >= sizeof line - 1)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    (void)!write(STDERR_FILENO, line, (size_t)n);
    abort();
}

/* ---- mp_buf ------------------------------------------------------------- */

int mp_buf_reserve(mp_buf *b, size_t cap)
{
    if (cap <= b->cap)
        return 0;
    if (cap > MP_BUF_MAX)
        return MP_ENOMEM;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < cap)
        ncap = ncap > MP_BUF_MAX / 2 ? MP_BUF_MAX : ncap * 2;
    void *p = realloc(b->data, ncap);
    if (p == NULL)
        return MP_ENOMEM;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int mp_buf_append(mp_buf *b, const void *p, size_t n)
{
    if (n > MP_BUF_MAX - b->len)
        return MP_ENOMEM;
    int err = mp_buf_reserve(b, b->len + n);
    if (err < 0)
        return err;
    if (n > 0)
        memcpy((char *)b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void mp_buf_free(mp_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
