/*
 * multiproc error codes (libuv model).
 *
 * A code that has an errno twin is the negated errno; the library's own codes
 * sit below -4095, outside the range of errno values.  An unexpected system
 * error is returned as -errno, and mp_strerror() names it too.
 */
#ifndef MULTIPROC_ERRNO_H
#define MULTIPROC_ERRNO_H

#include <errno.h>

/* XX(name, value, description) */
#define MP_ERRNO_MAP(XX)                                                        \
    XX(EINVAL,      -EINVAL,      "invalid argument or wrong state")            \
    XX(ENOMEM,      -ENOMEM,      "out of memory")                              \
    XX(ETIMEDOUT,   -ETIMEDOUT,   "timed out")                                  \
    XX(EAGAIN,      -EAGAIN,      "not yet known")                              \
    XX(EALREADY,    -EALREADY,    "already set or already started")             \
    XX(EPERM,       -EPERM,       "operation not permitted")                    \
    XX(EOWNERDEAD,  -EOWNERDEAD,  "lock acquired; its previous owner died")     \
    XX(EMSGSIZE,    -EMSGSIZE,    "message too long")                           \
    XX(ENOENT,      -ENOENT,      "no such entry")                              \
    XX(EBUSY,       -EBUSY,       "process is still running")                   \
    XX(EEXIST,      -EEXIST,      "already exists")                             \
    XX(ENOSYS,      -ENOSYS,      "not supported by this kernel")               \
    XX(EBADF,       -EBADF,       "bad file descriptor")                        \
    XX(EPIPE,       -EPIPE,       "the peer has gone")                          \
    XX(EADDRINUSE,  -EADDRINUSE,  "address already in use")                     \
    XX(ECONNREFUSED, -ECONNREFUSED, "connection refused")                       \
    XX(EEMPTY,      -4201,        "queue is empty")                             \
    XX(EFULL,       -4202,        "queue is full")                              \
    XX(EOF,         -4203,        "end of file")                                \
    XX(ECLOSED,     -4204,        "object is closed")                           \
    XX(EBROKEN,     -4205,        "broken: barrier broken or pool terminated")  \
    XX(EAUTH,       -4206,        "authentication failed")                      \
    XX(EWORKER,     -4207,        "a pool worker died while running the task")  \
    XX(ETASK,       -4208,        "the task or remote call failed")             \
    XX(EBADMSG,     -4209,        "malformed message")                          \
    XX(ETRUNCATED,  -4210,        "end of file inside a message")               \
    XX(ENOTFOUND,   -4211,        "function reference cannot be resolved")

enum {
#define MP__ERR_ENUM(name, value, desc) MP_##name = (value),
    MP_ERRNO_MAP(MP__ERR_ENUM)
#undef MP__ERR_ENUM
};

#endif
