/*
 * Named shared memory (Python's multiprocessing.shared_memory.SharedMemory).
 *
 * Names are Python's: the user sees "psm_1234abcd", the POSIX name is
 * "/psm_1234abcd", i.e. /dev/shm/psm_1234abcd, mode 0600, so a C program
 * and a Python program that use the same name share the same bytes.
 * A created segment is registered with the resource tracker
 * (resource_tracker.c) unless MP_SHM_NOTRACK, from the instant it has its
 * name (create_tracked); unlinking unregisters it.
 * The descriptor is closed once the segment is mapped: a handle is just
 * the mapping.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_MAX_CHARS 250 /* the header's promise; /dev/shm allows 255 */
#define RANDOM_PREFIX "psm_"
#define RANDOM_TRIES 100   /* colliding random names are retried */

struct mp_shm {
    void *buf;
    size_t size;
    char path[]; /* "/" + name */
};

/* 1..250 characters, no slash, not "." or ".." (directories in /dev/shm). */
static bool valid_name(const char *name)
{
    size_t len = strnlen(name, NAME_MAX_CHARS + 1);
    return len >= 1 && len <= NAME_MAX_CHARS && strchr(name, '/') == NULL &&
           strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* "/psm_" + 8 hex digits, as Python's _make_filename. */
static int random_path(char *path, size_t cap)
{
    uint32_t r;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        return -errno;
    snprintf(path, cap, "/" RANDOM_PREFIX "%08x", (unsigned)r);
    return 0;
}

static int truncate_to(int fd, size_t size)
{
    if (size > (size_t)INT64_MAX)
        return MP_EINVAL;
    while (ftruncate(fd, (off_t)size) != 0) {
        if (errno != EINTR)
            return errno == EFBIG ? MP_EINVAL : -errno;
    }
    return 0;
}

/* Create a new segment of @size bytes at s->path (a random one when
 * @random); returns its descriptor or a negative code. */
static int create_segment(mp_shm *s, bool random, size_t size)
{
    int fd = MP_EEXIST;
    for (int i = 0; i < (random ? RANDOM_TRIES : 1) && fd == MP_EEXIST; i++) {
        if (random) {
            int err = random_path(s->path, NAME_MAX_CHARS + 2);
            if (err < 0)
                return err;
        }
        fd = mp__sys_shm_open(s->path, O_RDWR | O_CREAT | O_EXCL);
    }
    if (fd < 0)
        return fd;
    int err = truncate_to(fd, size);
    if (err < 0) {
        shm_unlink(s->path); /* nothing is left behind */
        mp__sys_close(fd);
        return err;
    }
    return fd;
}

/* The temporary name of a tracked creation: "/mp-new-" + 32 hex digits,
 * 128 random bits, never another program's name. */
#define TMP_PREFIX "mp-new-"

static int tmp_path(char *path, size_t cap)
{
    uint8_t r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return -errno;
    int k = snprintf(path, cap, "/" TMP_PREFIX);
    for (size_t i = 0; i < sizeof r; i++)
        k += snprintf(path + k, cap - (size_t)k, "%02x", r[i]);
    return 0;
}

/* Give the segment at @from the name @to too; MP_EEXIST if taken. */
static int link_segment(const char *from, const char *to)
{
    char a[sizeof MP__SHM_DIR + NAME_MAX_CHARS + 2], b[sizeof a];
    snprintf(a, sizeof a, MP__SHM_DIR "%s", from);
    snprintf(b, sizeof b, MP__SHM_DIR "%s", to);
    return linkat(AT_FDCWD, a, AT_FDCWD, b, 0) == 0 ? 0 : -errno;
}

/* The descriptor @fd opened under the temporary name, opened again under
 * @path: a mapping shows the name it was opened by in /proc/PID/maps, where
 * tools (and the test runner's leak check) look for who uses a segment.
 * Should the name already be another segment's (unlinked and made again
 * meanwhile), @fd is kept. */
static int reopen_by_name(int fd, const char *path)
{
    int nfd = mp__sys_shm_open(path, O_RDWR);
    struct stat a, b;
    if (nfd < 0)
        return fd;
    if (fstat(fd, &a) != 0 || fstat(nfd, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
        mp__sys_close(nfd);
        return fd;
    }
    mp__sys_close(fd);
    return nfd;
}

/* create_segment for a tracked segment, registered on success.  A segment
 * created and then registered leaks when its creator is killed between the
 * two (issue 14), so a tracked segment is never in /dev/shm unannounced:
 * it is made under a temporary name the tracker was told of first
 * (CREATING tmp:name), sized, linked to its name -- link(2) fails on a
 * taken name, as O_EXCL does -- registered, and the temporary name is
 * removed and the tracker told (CREATED).  Killed at any instant, the
 * creator leaves the tracker the temporary name to remove and, through its
 * inode, the final one (resource_tracker.c, clean_up_creating).  Sizing
 * before the link also means the name never shows an empty segment. */
static int create_tracked(mp_shm *s, bool random, size_t size)
{
    char tmp[sizeof TMP_PREFIX + 34];
    int err = tmp_path(tmp, sizeof tmp);
    if (err < 0)
        return err;
    int fd = -1;
    bool announced = false;
    for (int i = 0; i < (random ? RANDOM_TRIES : 1); i++) {
        if (random && (err = random_path(s->path, NAME_MAX_CHARS + 2)) < 0)
            break;
        /* again for each name tried: the tracker keeps the last one */
        if ((err = mp__tracker_creating(tmp, s->path)) < 0)
            break;
        announced = true;
        if (fd < 0) {
            fd = mp__sys_shm_open(tmp, O_RDWR | O_CREAT | O_EXCL);
            if (fd < 0) {
                err = fd;
                break;
            }
            if ((err = truncate_to(fd, size)) < 0)
                break;
        }
        if ((err = link_segment(tmp, s->path)) != MP_EEXIST)
            break;
    }
    if (err == 0) {
        fd = reopen_by_name(fd, s->path); /* at once: the name shows in use */
        err = mp__tracker_register(s->path);
        if (err < 0)
            shm_unlink(s->path); /* still announced: the tracker would, too */
    }
    if (fd >= 0)
        shm_unlink(tmp); /* before CREATED: no instant without a way back */
    if (announced) {
        int e = mp__tracker_created(tmp);
        if (e < 0)
            mp__log(MP_LOG_WARNING, "cannot tell the tracker about %s: %s", tmp, mp_strerror(e));
    }
    if (err < 0 && fd >= 0) {
        mp__sys_close(fd);
        fd = err;
    }
    return fd >= 0 ? fd : err;
}

/* Open an existing segment; its size is what fstat says. */
static int attach_segment(mp_shm *s, size_t want, size_t *size)
{
    int fd = mp__sys_shm_open(s->path, O_RDWR);
    if (fd < 0)
        return fd;
    struct stat st;
    int err = fstat(fd, &st) == 0 ? 0 : -errno;
    if (err == 0 && (st.st_size <= 0 || (uintmax_t)st.st_size > SIZE_MAX))
        err = MP_EINVAL; /* empty (its creator has not sized it yet): nothing to map */
    if (err == 0 && want > (size_t)st.st_size)
        err = MP_EINVAL; /* more than the segment has */
    if (err < 0) {
        mp__sys_close(fd);
        return err;
    }
    *size = (size_t)st.st_size;
    return fd;
}

int mp_shm_new(mp_shm **out, const char *name, size_t size, int flags)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    bool create = flags & MP_SHM_CREATE;
    bool track = create && !(flags & MP_SHM_NOTRACK);
    if ((flags & ~(MP_SHM_CREATE | MP_SHM_NOTRACK)) != 0 || (create && size == 0) ||
        (name == NULL && !create) || (name != NULL && !valid_name(name)))
        return MP_EINVAL;
    mp__init(); /* the exit handler stops the tracker */
    mp_shm *s = calloc(1, sizeof *s + NAME_MAX_CHARS + 2);
    if (s == NULL)
        return MP_ENOMEM;
    if (name != NULL)
        snprintf(s->path, NAME_MAX_CHARS + 2, "/%s", name);
    /* The tracker runs before the segment exists: a kill between the two
     * cannot leave an unregistered segment behind for long. */
    int fd;
    if (track)
        fd = create_tracked(s, name == NULL, size);
    else if (create)
        fd = create_segment(s, name == NULL, size);
    else
        fd = attach_segment(s, size, &size);
    if (fd < 0) {
        free(s);
        return fd;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int err = p == MAP_FAILED ? -errno : 0;
    mp__sys_close(fd); /* the mapping keeps the segment */
    if (err < 0) {
        if (create)
            shm_unlink(s->path);
        if (track)
            IGNORE_RESULT(mp__tracker_unregister(s->path));
        free(s);
        return err;
    }
    s->buf = p;
    s->size = size;
    *out = s;
    return 0;
}

void *mp_shm_buf(mp_shm *s)
{
    return s ? s->buf : NULL;
}

size_t mp_shm_size(const mp_shm *s)
{
    return s ? s->size : 0;
}

const char *mp_shm_name(const mp_shm *s)
{
    return s ? s->path + 1 : NULL;
}

int mp_shm_close(mp_shm *s)
{
    if (s == NULL)
        return 0;
    int err = munmap(s->buf, s->size) == 0 ? 0 : -errno;
    free(s);
    return err;
}

int mp_shm_unlink(mp_shm *s)
{
    if (s == NULL)
        return MP_EINVAL;
    int err = shm_unlink(s->path) == 0 ? 0 : -errno;
    /* Whoever created it, the name is gone now: the tracker must not
     * remove a later segment of the same name. */
    if (err == 0 || err == -ENOENT) {
        int e = mp__tracker_unregister(s->path);
        if (e < 0)
            mp__log(MP_LOG_WARNING, "cannot unregister %s: %s", s->path, mp_strerror(e));
    }
    return err;
}

/* ---- in mp_args: by name, as Python pickles a SharedMemory ------------------- */

/* The receiver attaches to the segment by its name (never registering it:
 * the tracker keeps the creator's one registration). */
static int shm_reduce(void *obj, mp_buf *out, mp__fdvec *fds, mp__channel ch)
{
    const mp_shm *s = obj;
    int err = mp__put_str(out, s->path + 1);
    return err < 0 ? err : mp__put_u64(out, s->size);
}

static int shm_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, void **obj)
{
    const char *name = mp__get_str(r);
    uint64_t size = mp__get_u64(r);
    if (r->err || size == 0 || size > SIZE_MAX || !valid_name(name))
        return MP_EBADMSG;
    return mp_shm_new((mp_shm **)obj, name, (size_t)size, 0);
}

/* A second handle: a second mapping of the same pages (mremap of a shared
 * mapping with old size 0), so it stays usable after an unlink. */
static int shm_dup(void *obj, void **out)
{
    const mp_shm *s = obj;
    size_t n = strlen(s->path) + 1;
    mp_shm *d = calloc(1, sizeof *d + n);
    if (d == NULL)
        return MP_ENOMEM;
    void *p = mremap(s->buf, 0, s->size, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) {
        int err = -errno;
        free(d);
        return err;
    }
    d->buf = p;
    d->size = s->size;
    memcpy(d->path, s->path, n);
    *out = d;
    return 0;
}

MP__KIND(mp_shm, mp__shm_objtype, mp_args_add_shm, mp_args_shm,
         "shm", 'H', MP__TAG_SHM,
         shm_reduce, shm_rebuild, shm_dup, mp_shm_close);

