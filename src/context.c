/* Start methods, contexts, cpu_count. */
#include "internal.h"

#include <sched.h>
#include <string.h>
#include <unistd.h>

static mp_context contexts[] = {
    {"fork", &mp__popen_fork, NULL},
    {"spawn", &mp__popen_spawn, NULL},
    {"forkserver", &mp__popen_forkserver, NULL},
};

/* The chosen default (Python's _actual_context); NULL until chosen. */
static mp_context *actual;
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;

static mp_context *find(const char *method)
{
    if (method == NULL)
        return NULL;
    for (size_t i = 0; i < MP__ARRAY_LEN(contexts); i++)
        if (strcmp(contexts[i].method, method) == 0)
            return &contexts[i];
    return NULL;
}

int mp_set_start_method(const char *method, bool force)
{
    mp_context *c = find(method);
    if (c == NULL)
        return MP_EINVAL;
    int err = 0;
    pthread_mutex_lock(&ctx_lock);
    if (actual != NULL && !force)
        err = MP_EALREADY;
    else
        actual = c;
    pthread_mutex_unlock(&ctx_lock);
    return err;
}

mp_context *mp__default_context(void)
{
    pthread_mutex_lock(&ctx_lock);
    if (actual == NULL)
        actual = &contexts[0]; /* fork on Linux, as Python 3.11 */
    mp_context *c = actual;
    pthread_mutex_unlock(&ctx_lock);
    return c;
}

const char *mp_get_start_method(bool allow_none)
{
    if (allow_none) {
        pthread_mutex_lock(&ctx_lock);
        mp_context *c = actual;
        pthread_mutex_unlock(&ctx_lock);
        return c ? c->method : NULL;
    }
    return mp__default_context()->method;
}

mp_context *mp_get_context(const char *method)
{
    if (method == NULL)
        return mp__default_context();
    return find(method);
}

const char *mp_context_start_method(const mp_context *ctx)
{
    return ctx ? ctx->method : NULL;
}

void mp__context_inherit(const char *method)
{
    mp_context *c = find(method);
    pthread_mutex_lock(&ctx_lock);
    actual = c;
    pthread_mutex_unlock(&ctx_lock);
}

/* In a forked child, before anything else runs: a child reports the method
 * it was started with.  No lock: another thread may have held it at fork. */
void mp__context_forked(void)
{
    actual = &contexts[0];
}

size_t mp_get_all_start_methods(const char **out, size_t cap)
{
    for (size_t i = 0; i < cap && i < MP__ARRAY_LEN(contexts); i++)
        out[i] = contexts[i].method;
    return MP__ARRAY_LEN(contexts);
}

int mp_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
