/*
 * bench_util.h: the small system helpers the C benchmark programs share:
 * dying on an error, a shared anonymous mapping, bare futex calls,
 * pinning to a CPU, and whole reads and writes on a descriptor.  (bench_stats.h has the clock and the JSON lines.)
 *
 * A program that includes multiproc.h first gets its error names for the
 * library's negative codes.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <errno.h>
#include <linux/futex.h>
#include <stdbool.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* @err: an errno value, or a negative error code. */
static inline void die(const char *what, int err)
{
#ifdef MULTIPROC_H
    const char *why = err < 0 ? mp_strerror(err) : strerror(err);
#else
    const char *why = strerror(err < 0 ? -err : err);
#endif
    fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, why);
    exit(1);
}

/* For calls that return a negative code on failure. */
static inline void check(const char *what, int err)
{
    if (err < 0)
        die(what, err);
}

/* @size bytes of memory shared with the children forked after this. */
static inline void *shared_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap", errno);
    return p;
}

/* Shared (not private) futex calls: the words live in shared mappings. */
static inline void futex_wait(_Atomic uint32_t *w, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val, NULL, NULL, 0);
}

static inline void futex_wake(_Atomic uint32_t *w, int n)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* Pin the calling process (and what it forks after) to @cpu; < 0: leave
 * it alone. */
static inline void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0)
        die("sched_setaffinity", errno);
}

/* The same, keeping where it could run in @saved, for unpin. */
static inline void pin_saved(int cpu, cpu_set_t *saved)
{
    if (sched_getaffinity(0, sizeof *saved, saved) < 0)
        die("sched_getaffinity", errno);
    pin(cpu);
}

static inline void unpin(const cpu_set_t *saved)
{
    if (sched_setaffinity(0, sizeof *saved, saved) < 0)
        die("sched_setaffinity", errno);
}

/* Write (@out) or read all @n bytes, through EINTR; -1 on an error or an
 * early end. */
static inline int xfer(int fd, void *p, size_t n, bool out)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = out ? write(fd, c, n) : read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* A positive count from the command line (@s NULL: it is missing), or
 * exit with status 2. */
static inline size_t bench_count(const char *s)
{
    char *end = NULL;
    long v = s ? strtol(s, &end, 10) : 0;
    if (v <= 0 || *end != '\0') {
        fprintf(stderr, "%s: a positive count is needed\n", program_invocation_short_name);
        exit(2);
    }
    return (size_t)v;
}

/* Whether the benchmark @name runs: named in @which, or none named. */
static inline bool wanted(char **which, int nwhich, const char *name)
{
    if (nwhich == 0)
        return true;
    for (int i = 0; i < nwhich; i++)
        if (strcmp(which[i], name) == 0)
            return true;
    return false;
}

#endif
