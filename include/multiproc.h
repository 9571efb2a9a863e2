/**
 * @file
 * multiproc: Python's multiprocessing for C programs on Linux.
 *
 * This header is the whole public API.  Every call that can fail returns 0
 * (or a count) on success and a negative MP_E* code on failure; see
 * <multiproc/errno.h>.  Timeouts are double seconds: MP_FOREVER blocks
 * without limit (Python timeout=None), 0 never blocks.
 */
#ifndef MULTIPROC_H
#define MULTIPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "multiproc/errno.h"
#include "multiproc/py.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The major version of this header. */
#define MULTIPROC_VERSION_MAJOR 0
/** The minor version of this header. */
#define MULTIPROC_VERSION_MINOR 1
/** The patch level of this header. */
#define MULTIPROC_VERSION_PATCH 0
/** The version of this header as a string; compare with mp_version(). */
#define MULTIPROC_VERSION "0.1.0"

#if defined(__GNUC__)
/** Marks a call whose result must be checked (warn_unused_result). */
#define MP_MUST_CHECK __attribute__((warn_unused_result))
/** Marks a printf-like function: format argument @f, first value @a. */
#define MP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MP_MUST_CHECK
#define MP_PRINTF(f, a)
#endif

/** Block without limit (Python timeout=None). Any negative timeout does. */
#define MP_FOREVER (-1.0)

/* ------------------------------------------------------------------------ */
/* Errors and utilities (util.c)                                            */
/* ------------------------------------------------------------------------ */

/** A description of any code: MP_E* or -errno.  Never NULL. */
const char *mp_strerror(int err);
/** The name of any code ("MP_EEMPTY", "EPIPE"); "unknown" if none. Never NULL. */
const char *mp_errname(int err);
/** The library version, MULTIPROC_VERSION of the library actually linked. */
const char *mp_version(void);

/** Seconds on CLOCK_MONOTONIC, for computing deadlines and durations. */
double mp_monotonic(void);

/**
 * Growable buffer that the caller owns and may reuse across calls.  A receive
 * overwrites it: afterwards len is the message's length.  Growth is capped at
 * MP_BUF_MAX; beyond that calls fail with MP_ENOMEM.
 */
typedef struct mp_buf {
    /** The bytes; NULL until something was stored.  Owned by the buffer. */
    void *data;
    /** The bytes in use (a receive sets it to the message's length). */
    size_t len, cap; /**< cap: the bytes allocated at data. */
} mp_buf;
/** An empty buffer: `mp_buf b = MP_BUF_INIT;` needs no other set-up. */
#define MP_BUF_INIT {NULL, 0, 0}
/** The largest capacity a buffer grows to (64 TiB). */
#define MP_BUF_MAX ((size_t)1 << 46)
/** Make room for at least @cap bytes; len is unchanged.
 *  @return 0; MP_ENOMEM (also beyond MP_BUF_MAX). */
MP_MUST_CHECK int mp_buf_reserve(mp_buf *b, size_t cap);
/** Append @n bytes from @p, growing the buffer as needed.
 *  @return 0; MP_ENOMEM (also beyond MP_BUF_MAX). */
MP_MUST_CHECK int mp_buf_append(mp_buf *b, const void *p, size_t n);
/** Free the bytes and reset @b to MP_BUF_INIT; it may be used again. */
void mp_buf_free(mp_buf *b);

/** Log levels for the library's own debug log (Python util.log_to_stderr). */
enum {
    MP_LOG_OFF = 0,
    MP_LOG_ERROR = 1,
    MP_LOG_WARNING = 2,
    MP_LOG_INFO = 3,
    MP_LOG_DEBUG = 4,
};
/**
 * Send the library's log (process start, exit, ...) at @level and above to
 * stderr; MP_LOG_OFF stops it.  Children inherit the level.  The environment
 * variable MULTIPROC_LOG=LEVEL (a number) sets it at start-up too.
 */
void mp_log_to_stderr(int level);

/* ------------------------------------------------------------------------ */
/* Start methods and contexts (context.c)                                    */
/* ------------------------------------------------------------------------ */

/** A start method and the calls bound to it (Python: a context from
 *  get_context).  Opaque; obtained from mp_get_context(). */
typedef struct mp_context mp_context;

/**
 * Choose the start method of the default context: "fork", "spawn" or
 * "forkserver" (Python: set_start_method).
 * @return 0; MP_EALREADY if one was already chosen and !force;
 *         MP_EINVAL for an unknown name.
 */
MP_MUST_CHECK int mp_set_start_method(const char *method, bool force);
/**
 * The default context's start method.  With !allow_none this fixes the
 * default ("fork" on Linux) when none is chosen yet; with allow_none it
 * returns NULL while none is chosen and chooses nothing.
 */
const char *mp_get_start_method(bool allow_none);
/**
 * A context for @method, which does not change the global choice.  NULL
 * gives the default context (and fixes the default method, as Python does).
 * @return NULL for an unknown name.  Contexts are static: never freed.
 */
mp_context *mp_get_context(const char *method);
/** The start method a context uses. */
const char *mp_context_start_method(const mp_context *ctx);
/** Fill @out with up to @cap method names, the default first; return how many exist (3). */
size_t mp_get_all_start_methods(const char **out, size_t cap);
/** The number of CPUs this process may run on (its affinity mask), >= 1. */
int mp_cpu_count(void);

/* ------------------------------------------------------------------------ */
/* Arguments: the reduction layer (reduction.c)                              */
/* ------------------------------------------------------------------------ */

/**
 * An ordered, typed argument list that crosses every start method (Python:
 * a process's pickled args).  Constructors of processes copy what they need;
 * the caller keeps its mp_args and may free it at once.
 */
typedef struct mp_args mp_args;

/** The kind of one argument, as mp_args_type() reports it. */
typedef enum mp_arg_type {
    MP_ARG_INT = 1,
    MP_ARG_DOUBLE,
    MP_ARG_STR,
    MP_ARG_BYTES,
    MP_ARG_PTR,
    MP_ARG_FD,
    MP_ARG_OBJECT, /* a library object (queue, lock, connection, ...) */
} mp_arg_type;

/** A new, empty list into *out.  @return 0; MP_ENOMEM. */
MP_MUST_CHECK int mp_args_new(mp_args **out);
/** Free the list and everything it owns.  NULL is a no-op. */
void mp_args_free(mp_args *a);
/** Append an integer (any int fits).  @return 0; MP_ENOMEM. */
MP_MUST_CHECK int mp_args_add_int(mp_args *a, int64_t v);
/** Append a double.  @return 0; MP_ENOMEM. */
MP_MUST_CHECK int mp_args_add_double(mp_args *a, double v);
/** Copies the string. */
MP_MUST_CHECK int mp_args_add_str(mp_args *a, const char *s);
/** Copies @n bytes (n may be 0, p NULL then). */
MP_MUST_CHECK int mp_args_add_bytes(mp_args *a, const void *p, size_t n);
/** A raw pointer: only meaningful under fork; starting a spawn or forkserver
 *  process with one fails with MP_EINVAL. */
MP_MUST_CHECK int mp_args_add_ptr(mp_args *a, void *p);
/** Duplicates @fd (CLOEXEC); the caller keeps its own.  The child gets its
 *  own descriptor for the same open file. */
MP_MUST_CHECK int mp_args_add_fd(mp_args *a, int fd);
/**
 * Build a list in one call.  Each character of @fmt takes one argument:
 * 'i' int, 'l' int64_t, 'd' double, 's' const char *, 'b' (const void *,
 * size_t), 'p' void *, 'f' int descriptor; and library objects, as their
 * mp_args_add_<type> would add them: 'Q' mp_queue *, 'L' mp_lock *,
 * 'S' mp_semaphore *, 'C' mp_condition *, 'E' mp_event *, 'B' mp_barrier *,
 * 'V' mp_value *, 'A' mp_array *, 'P' mp_conn * (a Pipe end), 'H' mp_shm *,
 * 'M' mp_manager *, 'D' mp_dict *, 'T' mp_list *.
 * E.g. mp_args_of(&a, "iQL", 42, queue, lock) for Python's (42, queue, lock).
 * @return 0; MP_EINVAL for an unknown character or a NULL object; MP_ENOMEM.
 */
MP_MUST_CHECK int mp_args_of(mp_args **out, const char *fmt, ...);

/** The number of items; 0 for NULL. */
size_t mp_args_count(const mp_args *a);
/** The type of item @i; 0 when i is out of range. */
mp_arg_type mp_args_type(const mp_args *a, size_t i);
/* Getters.  A wrong index or type is a programming error: one line naming
 * the index, the wanted and the actual type is printed, then abort(). */
/** Item @i, an MP_ARG_INT (a wrong index or type aborts, as every getter). */
int64_t mp_args_int(const mp_args *a, size_t i);
/** Item @i, an MP_ARG_DOUBLE. */
double mp_args_double(const mp_args *a, size_t i);
/** Item @i, an MP_ARG_STR, owned by the mp_args (valid as long as it is). */
const char *mp_args_str(const mp_args *a, size_t i);
/** Item @i, an MP_ARG_BYTES, owned by the mp_args; *len (may be NULL)
 *  gets its length. */
const void *mp_args_bytes(const mp_args *a, size_t i, size_t *len);
/** Item @i, an MP_ARG_PTR (only ever set under fork). */
void *mp_args_ptr(const mp_args *a, size_t i);
/** The descriptor stays owned by the mp_args (valid as long as it is). */
int mp_args_fd(const mp_args *a, size_t i);

/* ------------------------------------------------------------------------ */
/* Processes (process.c, popen_*.c, spawn.c, forkserver.c)                   */
/* ------------------------------------------------------------------------ */

/** A process: a child this process starts, this process itself, or its
 *  parent (Python: Process).  Opaque. */
typedef struct mp_process mp_process;
/** A process target; its return value is the exit code (as exit(N)). */
typedef int (*mp_target_fn)(const mp_args *args);

/**
 * Create a process object running @target(args) (Python: Process).  Nothing
 * starts until mp_process_start.  @ctx NULL: the default context, resolved
 * at start.  @args NULL: no arguments; it is copied.
 * @return 0; MP_EINVAL for a NULL target; MP_ENOMEM.
 */
MP_MUST_CHECK int mp_process_new(mp_process **out, mp_context *ctx, mp_target_fn target,
                                 const mp_args *args);
/** Default "Process-N", "Process-N:M" when nested.  Copies @name. */
MP_MUST_CHECK int mp_process_set_name(mp_process *p, const char *name);
/** The process's name, owned by the process object. */
const char *mp_process_name(const mp_process *p);
/** Before start only (MP_EALREADY after).  The default is the creating
 *  process's own daemon flag. */
MP_MUST_CHECK int mp_process_set_daemon(mp_process *p, bool daemon);
/** Whether the process is daemonic (Python: Process.daemon). */
bool mp_process_daemon(const mp_process *p);
/** Before start; 1..1024 bytes.  Default: the creating process's key. */
MP_MUST_CHECK int mp_process_set_authkey(mp_process *p, const void *key, size_t len);
/** The process's authentication key (owned by the process object) and its
 *  length in *len (may be NULL); NULL and 0 when it has none. */
const void *mp_process_authkey(const mp_process *p, size_t *len);
/**
 * Start the process with its context's method.  First reaps, without
 * blocking, the fork and spawn children of this process that have ended
 * (Python's _cleanup): none stays a zombie past the next start, and each
 * keeps its exit code in its object.  A spawn or forkserver child holds
 * only stdin (/dev/null), stdout, stderr, the descriptors of its args, a
 * pidfd of its parent and the resource tracker's socket when its parent
 * had one (docs/guide/02-start-methods.md).
 * @return 0; MP_EALREADY if started before; MP_EPERM from a daemonic
 *         process, or under spawn/forkserver in a set-user-ID program (see
 *         mp_main_hook); MP_EINVAL for a pointer argument under
 *         spawn/forkserver; MP_ECLOSED after close; -errno when the system
 *         refused.
 */
MP_MUST_CHECK int mp_process_start(mp_process *p);
/**
 * Wait up to @timeout seconds for the process to end, and reap it.
 * @return 0 when it has ended; MP_ETIMEDOUT; MP_EINVAL if it was never
 *         started or is the calling process; MP_ECLOSED after close.
 */
MP_MUST_CHECK int mp_process_join(mp_process *p, double timeout);
/** True from start until the process has ended; false as soon as its
 *  sentinel is readable.  Does not wait for a running process; under
 *  forkserver, once the child has died it waits for the server to relay the
 *  exit status (at once, normally; up to 10 s from a stopped server, then
 *  the exit code is 255). */
bool mp_process_is_alive(mp_process *p);
/** 0 before start (and after close). */
pid_t mp_process_pid(const mp_process *p);
/**
 * The exit code once ended: the target's return N or exit(N) gives N & 0xff,
 * death by signal S gives -S.  Reaps the process if it has just ended.
 * @return 0 and *code; MP_EAGAIN while running or before start; MP_ECLOSED.
 */
MP_MUST_CHECK int mp_process_exitcode(const mp_process *p, int *code);
/** The process's pidfd (Python: Process.sentinel): readable once the
 *  process has ended, and from then on is_alive is false, the exit code is
 *  known and active_children leaves it out, under every start method.  It
 *  stays readable after join.  MP_EINVAL before start.  Owned by the
 *  process object (closed by mp_process_close). */
int mp_process_sentinel(const mp_process *p);
/** SIGTERM; 0 and nothing done when it has already ended. MP_EINVAL before start. */
MP_MUST_CHECK int mp_process_terminate(mp_process *p);
/** SIGKILL; as terminate. */
MP_MUST_CHECK int mp_process_kill(mp_process *p);
/**
 * Release the process object (Python: close()).  MP_EBUSY while it runs
 * (the object stays valid).  On success the object is freed; an ended
 * child is reaped first.  NULL is a no-op.
 */
MP_MUST_CHECK int mp_process_close(mp_process *p);

/** This process: "MainProcess" in the main program.  Never NULL. */
mp_process *mp_current_process(void);
/** The process that started this one; NULL in the main program.  It can be
 *  joined (waits for the parent to end) and asked is_alive. */
mp_process *mp_parent_process(void);
/**
 * The children of this process that are still running; a child whose
 * sentinel is readable is never listed.  Ended children are reaped (and
 * leave the list).  Up to @cap are written to @out (may be NULL).
 * @return how many are running.
 */
size_t mp_active_children(mp_process **out, size_t cap);

/* ------------------------------------------------------------------------ */
/* Connections (connection.c): Python's multiprocessing.connection           */
/* ------------------------------------------------------------------------ */

/**
 * One end of a message channel (Python: Connection).  Messages are framed
 * as Python frames them (4-byte big-endian length, or -1 and an 8-byte
 * length), so a connection talks to Python's send_bytes/recv_bytes.  One
 * thread at a time per direction.  Signals never surface as errors.
 */
typedef struct mp_conn mp_conn;

/** The cap on a message received with maxlength 0 (1 GiB); pass a larger
 *  maxlength to receive larger ones.  Memory grows with the bytes that
 *  actually arrive, never with what a length prefix claims. */
#define MP_CONN_MAXLEN ((size_t)1 << 30)

/**
 * A pair of connected ends (Python: Pipe).  @duplex: a socketpair, both
 * ends send and receive (and carry descriptors).  !duplex: a pipe; *a is
 * the reading end, *b the writing end (reader first, as Python).
 */
MP_MUST_CHECK int mp_pipe(mp_conn **a, mp_conn **b, bool duplex);
/**
 * Wrap a connected descriptor (stream socket or pipe end), which the
 * connection then owns.  MP_EBADF when @fd is not open or neither readable
 * nor writable.
 */
MP_MUST_CHECK int mp_conn_from_fd(mp_conn **out, int fd, bool readable, bool writable);
/** Send one message of @len bytes (0 is a valid, empty message).
 *  MP_EBADF on a read-only end; MP_EPIPE when the peer has gone. */
MP_MUST_CHECK int mp_conn_send_bytes(mp_conn *c, const void *buf, size_t len);
/**
 * Receive one message into @out (grown as needed, reused across calls).
 * @maxlength 0 means MP_CONN_MAXLEN.  A longer message is refused before
 * anything is allocated: MP_EMSGSIZE, its body left unread, and the end
 * stops being readable (Python marks it so too).
 * @return 0; MP_EOF at a message boundary; MP_ETRUNCATED for an end of file
 *         inside a message; MP_EBADMSG for a malformed length; MP_EBADF on a
 *         write-only (or no longer readable) end.
 */
MP_MUST_CHECK int mp_conn_recv_bytes(mp_conn *c, mp_buf *out, size_t maxlength);
/**
 * Receive one message into @buf.  *len gets the message's length.  A
 * message longer than @cap is consumed and dropped: MP_EMSGSIZE, with *len
 * its length (Python: BufferTooShort).
 */
MP_MUST_CHECK int mp_conn_recv_bytes_into(mp_conn *c, void *buf, size_t cap, size_t *len);
/**
 * Send a typed message.  Descriptors and library objects (connections,
 * ...) travel too, over unix sockets only: elsewhere MP_EINVAL (a manager's
 * proxy or handle holds no descriptor and travels over any connection).  Pointers
 * never travel (MP_EINVAL).  Code never travels: a barrier with an action
 * is refused with MP_EPERM (pass it to a child as an argument instead).  A
 * manager's proxy travels without its manager's authkey: the receiver
 * connects with its own process authkey, as Python's proxies do.
 */
MP_MUST_CHECK int mp_conn_send(mp_conn *c, const mp_args *msg);
/** Receive a typed message sent by mp_conn_send; the caller frees *msg.
 *  Errors as mp_conn_recv_bytes, and MP_EBADMSG for a message that is not
 *  an mp_args, or that holds what no peer may send (a function reference,
 *  an authkey, a form its object kind cannot have).  Decoding never loads
 *  or runs code (docs/security.md). */
MP_MUST_CHECK int mp_conn_recv(mp_conn *c, mp_args **msg);
/** 1 when a message (or end of file) is waiting, else 0 after @timeout
 *  seconds; never consumes.  MP_EBADF on a write-only end. */
MP_MUST_CHECK int mp_conn_poll(mp_conn *c, double timeout);
/** The connection's descriptor (still owned by it); MP_EINVAL for NULL. */
int mp_conn_fileno(const mp_conn *c);
/** Whether this end receives (Python: Connection.readable). */
bool mp_conn_readable(const mp_conn *c);
/** Whether this end sends (Python: Connection.writable). */
bool mp_conn_writable(const mp_conn *c);
/** Close and free.  NULL is a no-op. */
int mp_conn_close(mp_conn *c);

/** A connection as an argument: the child (or receiver) gets its own end
 *  on the same channel.  The mp_args holds its own duplicate. */
MP_MUST_CHECK int mp_args_add_conn(mp_args *a, mp_conn *c);
/** Owned by the mp_args (valid as long as it is). */
mp_conn *mp_args_conn(const mp_args *a, size_t i);

/**
 * Listens for connections (Python: Listener).  @address:
 *   "unix:/path" (or "/path")   a unix socket, the path removed at close;
 *   "unix:@name"                a Linux abstract name (nothing on disk);
 *   "tcp:HOST:PORT", "HOST:PORT" TCP (IPv6 hosts in brackets); port 0 picks one;
 *   NULL                        a fresh unix socket in a private directory.
 * @authkey NULL: no handshake.  Otherwise every accepted connection must
 * prove it knows the key (Python's handshake, both directions, 3.11 and
 * 3.12+ forms).  An empty key (keylen 0) is refused with MP_EINVAL here and
 * in mp_client, so both sides always agree on whether to authenticate.
 * @backlog <= 0: 16.  MP_EADDRINUSE when the address is taken.
 */
typedef struct mp_listener mp_listener;
/** Listen on @address with @authkey (@keylen bytes) as described above.
 *  @return 0; MP_EINVAL for a bad address or an empty key; MP_EADDRINUSE;
 *          -errno when the system refused. */
MP_MUST_CHECK int mp_listener_new(mp_listener **out, const char *address, const void *authkey,
                                  size_t keylen, int backlog);
/** "unix:/path", "unix:@name" or "tcp:HOST:PORT" with the real port. */
const char *mp_listener_address(const mp_listener *l);
/** The listening descriptor (owned by the listener); MP_EINVAL for NULL. */
int mp_listener_fileno(const mp_listener *l);
/**
 * Accept one connection, waiting up to @timeout in all, the handshake
 * included: one deadline covers both, so a peer that stalls in the
 * handshake, or trickles it a byte at a time, cannot hold the caller
 * longer.  0: only a connection already waiting is taken, and its handshake
 * (which needs the peer's replies) gets up to 5 s.  MP_FOREVER: no limit on
 * either (as Python's Listener.accept).
 * @return 0; MP_ETIMEDOUT (no connection, or a handshake not done in time:
 *         that connection is dropped); MP_EAUTH when the peer failed the
 *         handshake (dropped too).  The listener stays usable.
 */
MP_MUST_CHECK int mp_listener_accept(mp_listener *l, mp_conn **out, double timeout);
/** Close and free; removes the socket file (and private directory). */
int mp_listener_close(mp_listener *l);
/**
 * Connect to a listener (Python: Client).  @authkey as for the listener.
 * The handshake has no time limit, as Python's: a listener that accepts and
 * never answers holds the caller.
 * @return 0; MP_EAUTH when the key was refused, the listener's proof was
 *         wrong, or the listener hung up inside the handshake (Python raises
 *         EOFError for the last); MP_ECONNREFUSED, -ENOENT, ... from the
 *         system.
 */
MP_MUST_CHECK int mp_client(mp_conn **out, const char *address, const void *authkey,
                            size_t keylen);

/** One item for mp_wait. */
typedef struct mp_waitable {
    /** Which member of the union is set. */
    enum { MP_WAIT_CONN, MP_WAIT_PROCESS, MP_WAIT_FD } kind;
    union {
        mp_conn *conn;       /**< MP_WAIT_CONN: ready when readable */
        mp_process *process; /**< MP_WAIT_PROCESS: ready when ended */
        int fd;              /**< MP_WAIT_FD: ready when readable */
    };
    bool ready; /**< out: set by mp_wait() */
} mp_waitable;
/**
 * Wait until at least one item is ready (Python: connection.wait): a
 * connection or descriptor readable (data or end of file), a process
 * ended.  Level-triggered; marks each item's ready flag.
 * @return how many are ready; 0 after @timeout; MP_EINVAL for a bad item.
 */
MP_MUST_CHECK int mp_wait(mp_waitable *items, size_t n, double timeout);

/* ------------------------------------------------------------------------ */
/* Synchronization (synchronize.c)                                           */
/* ------------------------------------------------------------------------ */

/*
 * Every object here lives in shared memory (the library's arena of memfd
 * segments: no descriptor per object, nothing in /dev/shm) and works between
 * any processes of the program under every start method, passed in mp_args
 * (mp_args_add_lock, ...) or over a connection.  Waits block in the kernel.
 *
 * Lifetime: the process that created an object frees its memory with the
 * _free call; a handle obtained from mp_args (or in a forked child) is freed
 * with the same call but frees only the handle.  Other processes must be
 * done with an object before its creator frees it.
 */

/**
 * Lock and RLock (Python: Lock, RLock).  The one deliberate difference from
 * Python: a Lock has an owner, the thread that acquired it, and only that
 * thread may release it (MP_EPERM otherwise).  Ownership is what lets a dead
 * owner be detected: when a process dies holding the lock (SIGKILL
 * included), or a thread ends holding it, the next acquirer gets
 * MP_EOWNERDEAD and holds the lock.  To signal between processes use a
 * Semaphore or an Event.  A manager's Lock proxy (mp_manager_lock) behaves
 * the same; where it cannot, the function says so.
 */
typedef struct mp_lock mp_lock;
/** A new, unlocked Lock into *out.  @return 0; MP_ENOMEM; -errno. */
MP_MUST_CHECK int mp_lock_new(mp_lock **out);
/** A new, unlocked RLock (the owning thread may acquire it again, and
 *  releases it once per acquire).  @return 0; MP_ENOMEM; -errno. */
MP_MUST_CHECK int mp_rlock_new(mp_lock **out);
/**
 * Acquire, waiting up to @timeout (0: try once).
 * @return 0; MP_ETIMEDOUT; MP_EOWNERDEAD (acquired; the previous owner died
 *         holding it: whatever it guarded may be inconsistent).  A Lock
 *         acquired again by the thread that holds it waits out the timeout
 *         as Python's does, and returns -EDEADLK at once when the timeout
 *         is MP_FOREVER (which would never end).
 *         On a manager proxy: the server learns of a dead holder when its
 *         connection closes, a moment after the death, so an acquire with
 *         timeout 0 just after may still give MP_ETIMEDOUT (give it a
 *         timeout); MP_ECLOSED once the manager has gone.
 */
MP_MUST_CHECK int mp_lock_acquire(mp_lock *l, double timeout);
/** MP_EINVAL if not locked; MP_EPERM if another thread holds it.  An RLock
 *  is released once per acquire. */
MP_MUST_CHECK int mp_lock_release(mp_lock *l);
/** True while some thread holds it, a dead one included, until the next
 *  acquire (a snapshot).  On a manager proxy: false also when the request
 *  fails (the manager gone). */
bool mp_lock_locked(mp_lock *l);
/** True for an RLock (a manager's RLock proxy, mp_manager_rlock, included). */
bool mp_lock_is_recursive(const mp_lock *l);
/** Free the lock (creator) or this handle (others); see Lifetime above.
 *  NULL is a no-op. */
void mp_lock_free(mp_lock *l);

/** Semaphore / BoundedSemaphore.  @bounded: releasing past the initial
 *  value fails with MP_EINVAL.  Values up to INT32_MAX. */
typedef struct mp_semaphore mp_semaphore;
/** A new semaphore with @value into *out (Python: Semaphore(value), or
 *  BoundedSemaphore(value) when @bounded).
 *  @return 0; MP_EINVAL above INT32_MAX; MP_ENOMEM. */
MP_MUST_CHECK int mp_semaphore_new(mp_semaphore **out, unsigned value, bool bounded);
/** 0; MP_ETIMEDOUT (timeout 0: try once). */
MP_MUST_CHECK int mp_semaphore_acquire(mp_semaphore *s, double timeout);
/** Add one and wake a waiter.  @return 0; MP_EINVAL past the initial value
 *  of a bounded semaphore. */
MP_MUST_CHECK int mp_semaphore_release(mp_semaphore *s);
/** The current value into *out (a snapshot; Python: get_value).
 *  @return 0; MP_EINVAL; on a manager proxy the request's error
 *  (MP_ECLOSED, ...), never a value of 0. */
MP_MUST_CHECK int mp_semaphore_value(mp_semaphore *s, int *out);
/** As mp_lock_free.  NULL is a no-op. */
void mp_semaphore_free(mp_semaphore *s);

/**
 * Condition variable over a Lock or RLock (Python: Condition).  wait,
 * wait_for, notify and notify_all need the lock held (MP_EPERM otherwise).
 * A process killed while waiting wedges nobody; it may cost one later
 * waiter a spurious wake-up, which wait_for absorbs.
 */
typedef struct mp_condition mp_condition;
/** @lock NULL: a new RLock.  The condition keeps its own handle.
 *  @return 0; MP_ENOMEM; MP_EINVAL for a manager's Lock proxy (a local
 *  condition needs a local lock: use mp_manager_condition for a manager's). */
MP_MUST_CHECK int mp_condition_new(mp_condition **out, mp_lock *lock);
/** The condition's lock (its own handle, freed with the condition). */
mp_lock *mp_condition_lock(mp_condition *c);
/** Acquire the condition's lock; as mp_lock_acquire. */
MP_MUST_CHECK int mp_condition_acquire(mp_condition *c, double timeout);
/** Release the condition's lock; as mp_lock_release. */
MP_MUST_CHECK int mp_condition_release(mp_condition *c);
/** 0 notified; MP_ETIMEDOUT.  Either way the lock is held again on return
 *  (MP_EOWNERDEAD if its owner died meanwhile). */
MP_MUST_CHECK int mp_condition_wait(mp_condition *c, double timeout);
/** Wait until pred(arg) is true: 0, or MP_ETIMEDOUT with pred still false. */
MP_MUST_CHECK int mp_condition_wait_for(mp_condition *c, bool (*pred)(void *), void *arg,
                                        double timeout);
/** Wake up to @n waiters. */
MP_MUST_CHECK int mp_condition_notify(mp_condition *c, int n);
/** Wake every waiter.  MP_EPERM without the lock held. */
MP_MUST_CHECK int mp_condition_notify_all(mp_condition *c);
/** As mp_lock_free; the condition's own handle on its lock goes too
 *  (a lock passed to mp_condition_new stays the caller's). */
void mp_condition_free(mp_condition *c);

/** Event (Python: Event). */
typedef struct mp_event mp_event;
/** A new, clear event into *out.  @return 0; MP_ENOMEM. */
MP_MUST_CHECK int mp_event_new(mp_event **out);
/** Set the flag and wake every waiter.  @return 0; MP_EINVAL. */
int mp_event_set(mp_event *e);
/** Clear the flag.  @return 0; MP_EINVAL. */
int mp_event_clear(mp_event *e);
/** Whether the flag is set (a snapshot).  On a manager proxy: false also
 *  when the request fails (the manager gone). */
bool mp_event_is_set(mp_event *e);
/** 0 once set; MP_ETIMEDOUT. */
MP_MUST_CHECK int mp_event_wait(mp_event *e, double timeout);
/** As mp_lock_free.  NULL is a no-op. */
void mp_event_free(mp_event *e);

/**
 * Barrier (Python: Barrier) for @parties >= 1 (else MP_EINVAL).  @action,
 * if not NULL, runs once per pass (args NULL) in the last process to
 * arrive, before any is released; a non-zero return breaks the barrier
 * (that process's wait returns MP_EBROKEN too).  @timeout is the default
 * for waits that pass a negative timeout, as Python's (MP_FOREVER: none).
 * A process killed while waiting counts as having arrived; one killed
 * inside the barrier's short critical section breaks it (MP_EBROKEN).
 */
typedef struct mp_barrier mp_barrier;
/** A new barrier into *out, as described above.
 *  @return 0; MP_EINVAL for 0 parties; MP_ENOMEM. */
MP_MUST_CHECK int mp_barrier_new(mp_barrier **out, unsigned parties, mp_target_fn action,
                                 double timeout);
/**
 * @return this process's arrival index, 0..parties-1; MP_EBROKEN when the
 *         barrier is (or becomes) broken, aborted or reset while waiting;
 *         MP_ETIMEDOUT for the waiter that timed out (the barrier breaks).
 */
MP_MUST_CHECK int mp_barrier_wait(mp_barrier *b, double timeout);
/** Back to the initial state; current waiters get MP_EBROKEN. */
int mp_barrier_reset(mp_barrier *b);
/** Break it: current and future waiters get MP_EBROKEN until reset. */
int mp_barrier_abort(mp_barrier *b);
/** The number of parties the barrier was made for. */
unsigned mp_barrier_parties(mp_barrier *b);
/** How many are waiting now (a snapshot). */
unsigned mp_barrier_n_waiting(mp_barrier *b);
/** Whether the barrier is broken. */
bool mp_barrier_broken(mp_barrier *b);
/** As mp_lock_free.  NULL is a no-op. */
void mp_barrier_free(mp_barrier *b);

/* As arguments: the receiver gets its own handle on the same object, owned
 * by the mp_args (valid as long as it is). */
/** Append a lock or RLock.  @return 0; MP_ENOMEM. */
MP_MUST_CHECK int mp_args_add_lock(mp_args *a, mp_lock *l);
/** Append a semaphore.  @return 0; MP_ENOMEM. */
MP_MUST_CHECK int mp_args_add_semaphore(mp_args *a, mp_semaphore *s);
/** Append a condition (its lock comes with it).  @return 0; MP_ENOMEM. */
MP_MUST_CHECK int mp_args_add_condition(mp_args *a, mp_condition *c);
/** Append an event.  @return 0; MP_ENOMEM. */
MP_MUST_CHECK int mp_args_add_event(mp_args *a, mp_event *e);
/** Append a barrier.  @return 0; MP_ENOMEM. */
MP_MUST_CHECK int mp_args_add_barrier(mp_args *a, mp_barrier *b);
/** Item @i, a lock (a wrong index or type aborts, as every getter). */
mp_lock *mp_args_lock(const mp_args *a, size_t i);
/** Item @i, a semaphore. */
mp_semaphore *mp_args_semaphore(const mp_args *a, size_t i);
/** Item @i, a condition. */
mp_condition *mp_args_condition(const mp_args *a, size_t i);
/** Item @i, an event. */
mp_event *mp_args_event(const mp_args *a, size_t i);
/** Item @i, a barrier. */
mp_barrier *mp_args_barrier(const mp_args *a, size_t i);

/* ------------------------------------------------------------------------ */
/* Shared values, arrays and memory (sharedctypes.c, shared_memory.c)        */
/* ------------------------------------------------------------------------ */

/** Element types of Value and Array (Python typecodes c b B h H i I q Q f d ?). */
typedef enum mp_type {
    MP_CHAR,
    MP_INT8,
    MP_UINT8,
    MP_INT16,
    MP_UINT16,
    MP_INT32,
    MP_UINT32,
    MP_INT64,
    MP_UINT64,
    MP_FLOAT,
    MP_DOUBLE,
    MP_BOOL,
} mp_type;
/** The size in bytes of one element; 0 for an unknown type. */
size_t mp_type_size(mp_type t);

/** A shared scalar (Python: Value / RawValue), zero-initialised. */
typedef struct mp_value mp_value;
/** @lock: guarded by a new RLock (Python's default); false: RawValue. */
MP_MUST_CHECK int mp_value_new(mp_value **out, mp_type type, bool lock);
/** The shared scalar itself, to read or write in place (hold
 *  mp_value_lock() for read-modify-write); NULL for a manager proxy. */
void *mp_value_ptr(mp_value *v);
/** The element type the value was made with. */
mp_type mp_value_type(const mp_value *v);
/** NULL when made without one, and for a manager proxy. */
mp_lock *mp_value_lock(mp_value *v);
/** Copy the value out / in (Python: v.value), under the value's lock when
 *  it has one, as Python's synchronized Value; works for manager proxies
 *  too, where mp_value_ptr is NULL and each call is one atomic request.
 *  A read-modify-write needs a lock held around both calls: the value's
 *  own (RLock: these calls may be made while holding it) or, for a proxy,
 *  which has none (mp_value_lock is NULL, as Python's ValueProxy has no
 *  get_lock), a lock of your own such as a manager's.
 *  @return 0; MP_EINVAL for NULL; MP_EOWNERDEAD (copied; the lock's
 *  previous holder died holding it); a proxy's error (MP_ECLOSED, ...). */
MP_MUST_CHECK int mp_value_load(mp_value *v, void *out);
/** Copy mp_type_size() bytes from @in into the value (see mp_value_load). */
MP_MUST_CHECK int mp_value_store(mp_value *v, const void *in);
/** As mp_lock_free (its lock goes with it).  NULL is a no-op. */
void mp_value_free(mp_value *v);

/** A shared array (Python: Array / RawArray); @init NULL: zeroed, else
 *  @n elements copied. */
typedef struct mp_array mp_array;
/** A new array of @n elements of @type into *out; @lock as for
 *  mp_value_new.  @return 0; MP_EINVAL for an unknown type; MP_ENOMEM. */
MP_MUST_CHECK int mp_array_new(mp_array **out, mp_type type, size_t n, const void *init,
                               bool lock);
/** The shared elements, to read or write in place; NULL for a manager's
 *  array (a proxy has no memory here: use mp_array_load/mp_array_store). */
void *mp_array_data(mp_array *a);
/** Copy the @count elements from index @start into @out (Python: a[i],
 *  a[i:j]), local or proxy alike: a local array copies under its lock when
 *  it has one, a proxy makes one request (the slice read whole).
 *  @return 0; MP_EINVAL for NULL or past the end; MP_EOWNERDEAD (copied;
 *  the lock's previous holder died holding it); a proxy's error. */
MP_MUST_CHECK int mp_array_load(mp_array *a, size_t start, size_t count, void *out);
/** Copy @count elements from @in to index @start on (a[i] = v, a[i:j] = s),
 *  as mp_array_load. */
MP_MUST_CHECK int mp_array_store(mp_array *a, size_t start, size_t count, const void *in);
/** The number of elements. */
size_t mp_array_len(const mp_array *a);
/** The element type. */
mp_type mp_array_type(const mp_array *a);
/** The array's RLock; NULL when made without one. */
mp_lock *mp_array_lock(mp_array *a);
/** As mp_lock_free (its lock goes with it).  NULL is a no-op. */
void mp_array_free(mp_array *a);

/** Append a value: the receiver maps the same memory.  @return 0; MP_ENOMEM. */
MP_MUST_CHECK int mp_args_add_value(mp_args *a, mp_value *v);
/** Append an array: the receiver maps the same memory (a manager's array:
 *  a proxy for the same array).  @return 0; MP_ENOMEM. */
MP_MUST_CHECK int mp_args_add_array(mp_args *a, mp_array *arr);
/** Item @i, a value, owned by the mp_args (a wrong index or type aborts). */
mp_value *mp_args_value(const mp_args *a, size_t i);
/** Item @i, an array, owned by the mp_args (a wrong index or type aborts). */
mp_array *mp_args_array(const mp_args *a, size_t i);

/**
 * Named shared memory (Python: shared_memory.SharedMemory), interoperable
 * with Python: the same name opens the same bytes (/dev/shm/NAME).
 */
typedef struct mp_shm mp_shm;
enum {
    MP_SHM_CREATE = 1,  /* create a new segment (MP_EEXIST if the name is taken) */
    MP_SHM_NOTRACK = 2, /* do not remove it when the program ends */
};
/**
 * Create (MP_SHM_CREATE: @size > 0 bytes; @name NULL picks a random
 * "psm_xxxxxxxx") or attach to an existing segment by @name (its size is
 * discovered; @size 0, or at most the segment's size).  Names are given
 * without the leading slash, as Python's; at most 250 characters.
 * A created segment the program never unlinks is removed once its last
 * process has ended, even if they were all SIGKILLed, by process group or
 * one by one (the resource tracker: a detached process, no descendant of
 * the program -- init or a subreaper ancestor adopts it -- that ends once
 * the program has), unless MP_SHM_NOTRACK; a kill inside mp_shm_new
 * leaves nothing either.  A tracked segment is made under a temporary name
 * ("mp-new-" and 32 hex digits, for an instant) and gets its name sized.
 * @return 0; MP_EEXIST; MP_ENOENT; MP_EINVAL.
 */
MP_MUST_CHECK int mp_shm_new(mp_shm **out, const char *name, size_t size, int flags);
/** The mapped bytes (Python: SharedMemory.buf). */
void *mp_shm_buf(mp_shm *s);
/** The mapped size in bytes (Python: SharedMemory.size). */
size_t mp_shm_size(const mp_shm *s);
/** The segment's name, without the leading slash (Python: SharedMemory.name). */
const char *mp_shm_name(const mp_shm *s);
/** Unmap and free this handle; the segment stays. */
int mp_shm_close(mp_shm *s);
/** Remove the name (the memory lives while mapped); the handle stays open. */
int mp_shm_unlink(mp_shm *s);
/** A segment as an argument: it travels by name, as Python pickles a
 *  SharedMemory; the receiver attaches (an unlinked name cannot be
 *  attached: MP_ENOENT from its start) and never registers it again, so
 *  the creator's registration stays the one the tracker keeps.  The
 *  mp_args holds its own mapping. */
MP_MUST_CHECK int mp_args_add_shm(mp_args *a, mp_shm *s);
/** Owned by the mp_args (valid as long as it is; do not close it). */
mp_shm *mp_args_shm(const mp_args *a, size_t i);

/* ------------------------------------------------------------------------ */
/* Queues (queues.c)                                                         */
/* ------------------------------------------------------------------------ */

/**
 * Queue, JoinableQueue, SimpleQueue.  A message is bytes of any length (0
 * included; larger than any buffer, up to what memory holds).  FIFO per
 * producer.  Messages live in shared memory (one memfd per queue): no helper
 * thread, so a child that put large messages never deadlocks at join.  A
 * process killed at any instant inside put or get (SIGKILL included) never
 * leaves a torn, duplicated or lost committed message and never blocks the
 * others.  An unbounded queue takes memory for what is pending (plus a
 * ring of a few MiB that it reuses).  A queue whose shared memory another
 * process corrupted gives MP_EBADMSG from put, get, get_into and qsize
 * (empty then says true, full false), and is refused when received in
 * mp_args.
 */
typedef struct mp_queue mp_queue;
/** @maxsize: messages; 0 unbounded. */
MP_MUST_CHECK int mp_queue_new(mp_queue **out, size_t maxsize);
/** A JoinableQueue: a queue with task_done and join.  @maxsize as above. */
MP_MUST_CHECK int mp_joinable_queue_new(mp_queue **out, size_t maxsize);
/** A SimpleQueue: unbounded, put/get/empty/close only. */
MP_MUST_CHECK int mp_simple_queue_new(mp_queue **out);
/** Put a copy of @len bytes, waiting up to @timeout for room (0: never
 *  waits).  MP_EFULL; MP_ECLOSED after mp_queue_close in this process. */
MP_MUST_CHECK int mp_queue_put(mp_queue *q, const void *msg, size_t len, double timeout);
/** Take the oldest message into @msg (grown as needed), waiting up to
 *  @timeout.  MP_EEMPTY; MP_ECLOSED. */
MP_MUST_CHECK int mp_queue_get(mp_queue *q, mp_buf *msg, double timeout);
/** Into @buf; MP_EMSGSIZE when it does not fit: the message stays queued
 *  and *len is its size. */
MP_MUST_CHECK int mp_queue_get_into(mp_queue *q, void *buf, size_t cap, size_t *len,
                                    double timeout);
/** Messages put and not yet taken (a snapshot).  A proxy's failed request
 *  is its error (MP_ECLOSED, ...), never a count of 0. */
MP_MUST_CHECK int mp_queue_qsize(mp_queue *q, size_t *out);
/** True when no message is pending (a snapshot). */
bool mp_queue_empty(mp_queue *q);
/** True when a bounded queue holds maxsize messages (a snapshot). */
bool mp_queue_full(mp_queue *q);
/** JoinableQueue: one taken message is done.  MP_EINVAL when called more
 *  often than messages were put, or on another kind of queue (a proxy of
 *  mp_manager_queue included; mp_manager_joinable_queue's works). */
MP_MUST_CHECK int mp_queue_task_done(mp_queue *q);
/** JoinableQueue: wait until every message put has been task_done.
 *  MP_ETIMEDOUT; MP_EINVAL on another kind of queue; on a proxy of
 *  mp_manager_joinable_queue, MP_EOWNERDEAD when tasks of a consumer that
 *  died were written off (see there). */
MP_MUST_CHECK int mp_queue_join(mp_queue *q, double timeout);
/** This process puts and gets no more (MP_ECLOSED after); what was put is
 *  still delivered to others.  A second close is a no-op.  On a proxy it
 *  closes this handle only, as for a local queue. */
int mp_queue_close(mp_queue *q);
/** Free the queue (its creator) or this handle (others), as mp_lock_free.
 *  NULL is a no-op. */
void mp_queue_free(mp_queue *q);
/** Append a queue (or a manager's queue proxy).  @return 0; MP_ENOMEM. */
MP_MUST_CHECK int mp_args_add_queue(mp_args *a, mp_queue *q);
/** Item @i, a queue, owned by the mp_args (a wrong index or type aborts). */
mp_queue *mp_args_queue(const mp_args *a, size_t i);

/* ------------------------------------------------------------------------ */
/* Pool (pool.c)                                                             */
/* ------------------------------------------------------------------------ */

/**
 * A process pool (Python: Pool) that survives crashes: a worker killed by
 * a signal, calling exit, crashing or overrunning task_timeout fails only
 * the one item it was running (MP_EWORKER with the signal, or
 * MP_ETIMEDOUT); the worker is replaced and every other item completes.
 * Items and results travel through shared memory; workers are daemonic and
 * die with the program.
 */
/** A process pool; see above.  Opaque. */
typedef struct mp_pool mp_pool;
/** Options of mp_pool_new() (Python: Pool's arguments); zero means the default. */
typedef struct mp_pool_opts {
    mp_context *ctx;                 /**< NULL: default context */
    int processes;                   /**< 0: mp_cpu_count() */
    mp_target_fn initializer;        /**< NULL: none; runs once in each worker */
    const mp_args *initargs;         /**< the initializer's arguments (may be NULL) */
    unsigned long maxtasksperchild;  /**< 0: workers live as long as the pool */
    double task_timeout;             /**< <= 0: none; beyond it the item fails (code MP_ETIMEDOUT) */
} mp_pool_opts;
/**
 * Handles: mp_async (a pending result, Python's AsyncResult) and mp_imap
 * (an imap iterator) stay valid after mp_pool_terminate and mp_pool_free
 * of their pool, until mp_async_free / mp_imap_free; free handles and pool
 * in either order.  Once the pool is terminated or freed, what had
 * finished stays readable (mp_async_get gives its result, mp_imap_next its
 * items) and what had not gives MP_EBROKEN (a map's results of the items
 * that finished are in @results; the others' slots are unspecified).  A
 * freed pool keeps its memory until its last handle is freed.
 */
typedef struct mp_async mp_async;
typedef struct mp_imap mp_imap;      /**< an imap iterator; see mp_async */
/**
 * Why an item or task failed: filled by map, imap and get calls.  A failed
 * item's result slot (in a map's @results, or imap's @result) holds
 * unspecified bytes: what the function wrote before it failed, or what was
 * there before; only the slots of items that succeeded are results.
 */
typedef struct mp_task_error {
    size_t index;   /**< which item */
    int code;       /**< the item's own non-zero return (with MP_ETASK), or MP_EWORKER,
                         or MP_ETIMEDOUT: the item overran task_timeout */
    int signal;     /**< MP_EWORKER: the signal that killed the worker, 0 if it exited;
                         MP_ETIMEDOUT: SIGKILL, the pool's kill of the overrunning worker */
    int exitcode;   /**< MP_EWORKER: its exit status when it exited (MP_ETIMEDOUT: 0) */
} mp_task_error;

/** A map function: reads *item, writes *result; non-zero fails the item
 *  with that code.  Runs in a worker: under spawn and forkserver it must be
 *  a function of the program or of a shared library (not a pointer made at
 *  run time). */
typedef int (*mp_map_fn)(const void *item, void *result);
/** An apply task: args in, result bytes out; non-zero fails the task. */
typedef int (*mp_task_fn)(const mp_args *args, mp_buf *result);

/** @opts NULL: defaults.  MP_EINVAL for processes < 0; a worker whose
 *  initializer fails (non-zero) makes this fail with MP_ETASK, and no
 *  worker is left. */
MP_MUST_CHECK int mp_pool_new(mp_pool **out, const mp_pool_opts *opts);
/**
 * fn over @n items of @item_size bytes into @results (@n × @result_size),
 * in order.  @chunksize 0: Python's choice (ceil(n / (4 × workers))).
 * Python's starmap is this over an array of structs.
 * @return 0; or, once every item is done (the others' results written),
 *         the error of the first failing item in index order: MP_ETASK
 *         (the item's code in err->code), MP_EWORKER, MP_ETIMEDOUT; err
 *         (may be NULL) says which.  MP_EBROKEN if the pool is terminated;
 *         MP_EINVAL after close.
 */
MP_MUST_CHECK int mp_pool_map(mp_pool *p, mp_map_fn fn, const void *items, size_t n,
                              size_t item_size, void *results, size_t result_size,
                              size_t chunksize, mp_task_error *err);
/**
 * Memory the pool's workers see (Python has no equivalent): items and
 * results of mp_pool_map, mp_pool_map_async and mp_pool_imap that lie in one
 * such buffer are used where they are, not copied in and out.  Leave the
 * items as they are and the results alone while a map runs.  Zeroed, page
 * granular; valid until mp_pool_shared_free or mp_pool_free.  @size is at
 * most half of the pool's 64 GiB heap; the buffer goes into *@out.
 * @return 0, MP_ENOMEM (no heap space left), MP_EINVAL.
 */
MP_MUST_CHECK int mp_pool_shared_alloc(mp_pool *p, size_t size, void **out);
/** Give a buffer of mp_pool_shared_alloc back (its pages at once).  Not
 *  while a map uses it. */
void mp_pool_shared_free(mp_pool *p, void *ptr);
/** As map, without waiting.  The items are copied in before this returns
 *  (free or reuse them at once), except items in a mp_pool_shared_alloc
 *  buffer, used where they are: leave those until the result is ready.
 *  @results must stay valid until the result is ready or the handle is
 *  freed (then nothing more is written to it, unless it is in a shared
 *  buffer).  mp_async_get reports what mp_pool_map would return. */
MP_MUST_CHECK int mp_pool_map_async(mp_pool *p, mp_map_fn fn, const void *items, size_t n,
                                    size_t item_size, void *results, size_t result_size,
                                    size_t chunksize, mp_async **out);
/** Results one by one, in order or as they complete (@ordered false).
 *  The items are copied in before this returns, as for mp_pool_map_async;
 *  the results are kept in the pool until taken or mp_imap_free. */
MP_MUST_CHECK int mp_pool_imap(mp_pool *p, mp_map_fn fn, const void *items, size_t n,
                               size_t item_size, size_t result_size, size_t chunksize,
                               bool ordered, mp_imap **out);
/**
 * The next result into @result (result_size bytes) and its @index (may be
 * NULL).  @return 0; for a failed item (@index and @err filled; iteration
 * goes on after it) MP_ETASK (the function's code in err->code) or
 * MP_EWORKER: its worker died (err->signal, err->exitcode), or was killed
 * for overrunning task_timeout (err->code MP_ETIMEDOUT); MP_ETIMEDOUT only
 * when nothing came within @timeout (no item consumed); MP_EOF at the end;
 * MP_EBROKEN once the items that finished are taken, if the pool was
 * terminated or freed.
 */
MP_MUST_CHECK int mp_imap_next(mp_imap *it, void *result, size_t *index, mp_task_error *err,
                               double timeout);
/** Free the iterator; results not yet taken are dropped.  Before or after
 *  mp_pool_free of its pool.  NULL is a no-op. */
void mp_imap_free(mp_imap *it);
/** Run fn(args) in a worker and wait: 0 with its result bytes; MP_ETASK
 *  (its code in err of mp_async_get), MP_EWORKER, MP_ETIMEDOUT.  Args may
 *  hold numbers, strings and bytes (no descriptors or objects). */
MP_MUST_CHECK int mp_pool_apply(mp_pool *p, mp_task_fn fn, const mp_args *args, mp_buf *result);
/** As apply, without waiting.  @done (may be NULL) runs once in the parent,
 *  on a thread the pool owns, when the result is ready; it must not block. */
MP_MUST_CHECK int mp_pool_apply_async(mp_pool *p, mp_task_fn fn, const mp_args *args,
                                      void (*done)(mp_async *r, void *udata), void *udata,
                                      mp_async **out);
/** Wait up to @timeout; 0 and the result (apply: its bytes into @result);
 *  the task's error; MP_ETIMEDOUT; MP_EBROKEN.  @result, @err may be NULL. */
MP_MUST_CHECK int mp_async_get(mp_async *r, double timeout, mp_buf *result, mp_task_error *err);
/** 0 when ready, MP_ETIMEDOUT, MP_EBROKEN. */
MP_MUST_CHECK int mp_async_wait(mp_async *r, double timeout);
/** True once the result is there (Python: AsyncResult.ready); never blocks. */
bool mp_async_ready(mp_async *r);
/** 1 succeeded, 0 failed, MP_EINVAL before ready. */
int mp_async_successful(mp_async *r);
/** Items done so far and in all. */
int mp_async_progress(mp_async *r, size_t *done, size_t *total);
/** Frees the handle; a pending task still runs, its result is dropped.
 *  Before or after mp_pool_free of its pool (see mp_async).  NULL: no-op. */
void mp_async_free(mp_async *r);
/** No more tasks; workers exit once all submitted work is done. */
int mp_pool_close(mp_pool *p);
/** After close or terminate: wait for the workers to exit.  MP_EINVAL while
 *  the pool is running; MP_ETIMEDOUT. */
MP_MUST_CHECK int mp_pool_join(mp_pool *p, double timeout);
/** Stop now: workers are killed, queued tasks never run; waiting calls
 *  get MP_EBROKEN for what had not finished (results already reported stay
 *  readable through their handles). */
int mp_pool_terminate(mp_pool *p);
/** Terminates if still running, joins, frees.  Handles of its jobs stay
 *  valid until freed (see mp_async); the pool's shared buffers stay mapped
 *  as long as they do, but must not be given to mp_pool_shared_free. */
void mp_pool_free(mp_pool *p);

/* ------------------------------------------------------------------------ */
/* Managers (managers.c)                                                     */
/* ------------------------------------------------------------------------ */

/**
 * A manager is a server process holding named shared objects; processes on
 * this machine or across the network use them through authenticated
 * connections (Python: SyncManager, BaseManager).  For managers a NULL
 * authkey means this process's own authkey (as Python's); an empty key is
 * refused (MP_EINVAL).  Objects are created on first use and found by name
 * by every client.
 *
 * The server's limits (beyond Python): a connection must finish the
 * handshake within 5 s of being accepted, each in its own thread, so a
 * silent peer holds no one else up; at most 128 connections may be in
 * their handshake at once (more are closed unanswered); a request above
 * 64 MiB is refused from its length (MP_EBADMSG, and that client is
 * dropped; this library's clients do not send one: the call returns
 * MP_EMSGSIZE and the connection stays usable); an operation the object's kind does not have (an event op on
 * a dict) is MP_EBADMSG and changes nothing.
 */
typedef struct mp_manager mp_manager;
/** Start a server child under @ctx (NULL: default) listening on @address
 *  (NULL: a private unix socket; "tcp:HOST:PORT" to serve the network). */
MP_MUST_CHECK int mp_manager_start(mp_manager **out, mp_context *ctx, const char *address,
                                   const void *authkey, size_t keylen);
/** Connect to a running manager (from any process, or another machine). */
MP_MUST_CHECK int mp_manager_connect(mp_manager **out, const char *address, const void *authkey,
                                     size_t keylen);
/** Serve in this process until a client calls mp_manager_shutdown. */
MP_MUST_CHECK int mp_manager_serve(const char *address, const void *authkey, size_t keylen);
/** The address clients connect to (the real port when 0 was asked). */
const char *mp_manager_address(const mp_manager *m);
/** The server's pid; 0 for a connected manager. */
pid_t mp_manager_pid(const mp_manager *m);
/** Stop the server (any client may); a started one is joined. */
int mp_manager_shutdown(mp_manager *m);
/** A started manager is shut down first (by the process that started
 *  it; a copy in another process only disconnects); a connected one
 *  disconnects. */
void mp_manager_free(mp_manager *m);
/**
 * A manager as an argument (Python's way of passing a manager or a proxy
 * to a child): the receiver gets a handle on the same server, which
 * connects on its first request.  A child started with it gets the
 * manager's authkey too; over a connection the key stays behind and the
 * receiver connects with its own process authkey (docs/security.md).
 * Every manager handle (manager, dict, list, proxies) may be used in any
 * process that has it — a forked child included: a process other than the
 * one whose connection it holds opens its own on first use.
 */
MP_MUST_CHECK int mp_args_add_manager(mp_args *a, mp_manager *m);
/** Owned by the mp_args (valid as long as it is; do not free it). */
mp_manager *mp_args_manager(const mp_args *a, size_t i);

/** A shared dict of byte strings. */
typedef struct mp_dict mp_dict;
/** The manager's dict called @name (made empty on first use) into *out
 *  (Python: SyncManager.dict).  @return 0; MP_ECLOSED; MP_ENOMEM. */
MP_MUST_CHECK int mp_manager_dict(mp_manager *m, const char *name, mp_dict **out);
/** Store @vl bytes at @v under the key of @kl bytes at @k (d[k] = v). */
MP_MUST_CHECK int mp_dict_set(mp_dict *d, const void *k, size_t kl, const void *v, size_t vl);
/** MP_ENOENT when absent. */
MP_MUST_CHECK int mp_dict_get(mp_dict *d, const void *k, size_t kl, mp_buf *v);
/** Remove a key (del d[k]).  MP_ENOENT when absent. */
MP_MUST_CHECK int mp_dict_del(mp_dict *d, const void *k, size_t kl);
/** The number of keys into *out (len(d)). */
MP_MUST_CHECK int mp_dict_len(mp_dict *d, size_t *out);
/** Atomic on the server; a missing key starts at 0; the value is an
 *  int64_t in native byte order.  *out (may be NULL) gets the new value. */
MP_MUST_CHECK int mp_dict_add(mp_dict *d, const void *k, size_t kl, int64_t delta, int64_t *out);
/**
 * Every key, each as a 4-byte native length (uint32_t) and the bytes, in
 * insertion order (oldest first, as Python's dict; setting an existing key
 * keeps its place).  This framing is used by every call below that moves
 * many strings: items (each pair its key, then its value), values,
 * update, and the list's extend and slices.  @return 0; MP_ECLOSED.
 */
MP_MUST_CHECK int mp_dict_keys(mp_dict *d, mp_buf *out);
/** Every value, framed as mp_dict_keys, in the same order. */
MP_MUST_CHECK int mp_dict_values(mp_dict *d, mp_buf *out);
/** Every pair, key then value, framed as mp_dict_keys (Python: items(),
 *  and copy(), whose result is a local dict: this is its snapshot). */
MP_MUST_CHECK int mp_dict_items(mp_dict *d, mp_buf *out);
/**
 * Make the dict called @name on the same manager a copy of @d (its own
 * entries replaced, in @d's order), in one request, atomic on the server
 * (Python: copy(), but kept on the server, so that other clients can read
 * a consistent snapshot while @d changes; mp_dict_items is the local
 * copy).  @name == @d's own name changes nothing.
 * @return 0; MP_EINVAL (NULL @name); MP_ENOMEM (nothing changed); MP_ECLOSED.
 */
MP_MUST_CHECK int mp_dict_copy(mp_dict *d, const char *name);
/** Remove every key (clear()).  @return 0; MP_ECLOSED. */
MP_MUST_CHECK int mp_dict_clear(mp_dict *d);
/** *@out: whether the key is present (k in d), without moving its value.
 *  @return 0; MP_ECLOSED. */
MP_MUST_CHECK int mp_dict_contains(mp_dict *d, const void *k, size_t kl, bool *out);
/** d.get(k, default): the value, or the @dl bytes at @dflt when the key is
 *  absent (then 0 too; one request).  @return 0; MP_ECLOSED. */
MP_MUST_CHECK int mp_dict_get_default(mp_dict *d, const void *k, size_t kl, const void *dflt,
                                      size_t dl, mp_buf *v);
/**
 * Remove the key and give its value into @v (may be NULL) (d.pop(k[,
 * default])).  An absent key gives the @dl bytes at @dflt when
 * @has_default, else MP_ENOENT (KeyError); either way nothing else changes.
 * @return 0; MP_ENOENT; MP_EINVAL; MP_ECLOSED.
 */
MP_MUST_CHECK int mp_dict_pop(mp_dict *d, const void *k, size_t kl, const void *dflt, size_t dl,
                              bool has_default, mp_buf *v);
/** Remove the newest entry (LIFO, as Python 3.7+'s popitem) and give its
 *  key and value (either may be NULL).  @return 0; MP_ENOENT when empty
 *  (KeyError); MP_ECLOSED. */
MP_MUST_CHECK int mp_dict_popitem(mp_dict *d, mp_buf *key, mp_buf *value);
/** d.setdefault(k, default): store the @dl bytes at @dflt when the key is
 *  absent; @v (may be NULL) gets the value the key has now.  One atomic
 *  request: of clients racing on a new key exactly one stores its default.
 *  @return 0; MP_ECLOSED. */
MP_MUST_CHECK int mp_dict_setdefault(mp_dict *d, const void *k, size_t kl, const void *dflt,
                                     size_t dl, mp_buf *v);
/** d.update(pairs): store each pair of the @len bytes at @pairs (framed
 *  as mp_dict_items: key, value, key, value...; a later duplicate key
 *  wins) in one request, all of them or, on a malformed buffer, none.
 *  @return 0; MP_EINVAL (not whole pairs); MP_EMSGSIZE (above 64 MiB);
 *  MP_ECLOSED. */
MP_MUST_CHECK int mp_dict_update(mp_dict *d, const void *pairs, size_t len);

/** The operations of a batch (mp_dict_batch). */
typedef enum mp_dict_opcode {
    MP_DICT_SET = 1, /**< store value under key */
    MP_DICT_GET = 2, /**< read the value of key (MP_ENOENT when absent) */
    MP_DICT_DEL = 3, /**< remove key (MP_ENOENT when absent) */
    MP_DICT_ADD = 4  /**< add num to the int64_t under key (0 when absent) */
} mp_dict_opcode;

/** One operation of a batch: the caller fills the inputs, the batch the
 *  outputs. */
typedef struct mp_dict_op {
    mp_dict_opcode op;    /**< in: what to do */
    const void *key;      /**< in: the key */
    size_t keylen;        /**< in: its length */
    const void *value;    /**< in, MP_DICT_SET: the value */
    size_t valuelen;      /**< in, MP_DICT_SET: its length */
    int64_t num;          /**< MP_DICT_ADD: the delta in, the new value out */
    int status;           /**< out: 0, or this operation's error */
    size_t offset;        /**< out, MP_DICT_GET: the value is at out->data + offset */
    size_t len;           /**< out, MP_DICT_GET: and has len bytes */
} mp_dict_op;

/**
 * Run @n operations in one request: one round trip instead of @n, and the
 * whole batch runs in order under the server's lock, so no other client sees
 * it half done (Python has no equivalent; its nearest is dict.update).  The
 * values read by MP_DICT_GET go into @out (emptied first; may be NULL when
 * there is no GET), each op says where.  Returns 0 when the batch ran — then
 * each op's own result is in its status — or an error for the whole batch
 * (MP_EINVAL for a bad op or argument, MP_ECLOSED when the server has gone),
 * in which case the server changed nothing, except after MP_ECLOSED.
 */
MP_MUST_CHECK int mp_dict_batch(mp_dict *d, mp_dict_op *ops, size_t n, mp_buf *out);
/** Free this proxy; the dict stays on the server.  NULL is a no-op. */
void mp_dict_free(mp_dict *d);

/** A shared list of byte strings. */
typedef struct mp_list mp_list;
/** The manager's list called @name (made empty on first use) into *out
 *  (Python: SyncManager.list).  @return 0; MP_ECLOSED; MP_ENOMEM. */
MP_MUST_CHECK int mp_manager_list(mp_manager *m, const char *name, mp_list **out);
/** Append @vl bytes at @v. */
MP_MUST_CHECK int mp_list_append(mp_list *l, const void *v, size_t vl);
/** Negative index from the end; MP_EINVAL out of range. */
MP_MUST_CHECK int mp_list_get(mp_list *l, int64_t index, mp_buf *v);
/** Replace item @index (negative: from the end); MP_EINVAL out of range. */
MP_MUST_CHECK int mp_list_set(mp_list *l, int64_t index, const void *v, size_t vl);
/** Index -1: the last, as Python.  @v may be NULL. */
MP_MUST_CHECK int mp_list_pop(mp_list *l, int64_t index, mp_buf *v);
/** The number of items into *out (len(l)). */
MP_MUST_CHECK int mp_list_len(mp_list *l, size_t *out);
/*
 * Each of the calls below is one request, atomic on the server.  Values
 * are compared as Python compares bytes: byte by byte (memcmp), a prefix
 * before the longer string ("a" < "ab" < "b"); equal means the same bytes.
 * Many values in one buffer are framed as mp_dict_keys's.  A list holds
 * at most 2^28 items: beyond, MP_ENOMEM (Python's MemoryError).
 */
/** Insert before item @index (l.insert(i, v)): negative from the end,
 *  clamped to the list as Python's (below -len: the front, above len: the
 *  end).  @return 0; MP_ENOMEM; MP_ECLOSED. */
MP_MUST_CHECK int mp_list_insert(mp_list *l, int64_t index, const void *v, size_t vl);
/** Remove the first item equal to @v (l.remove(v)).  @return 0; MP_EINVAL
 *  when there is none (ValueError); MP_ECLOSED. */
MP_MUST_CHECK int mp_list_remove(mp_list *l, const void *v, size_t vl);
/** The index of the first item equal to @v among l[start:stop] (indexes
 *  as a slice's: pass 0, INT64_MAX for the whole list) into *@out
 *  (l.index(v, start, stop)).  @return 0; MP_EINVAL when there is none
 *  (ValueError); MP_ECLOSED. */
MP_MUST_CHECK int mp_list_index(mp_list *l, const void *v, size_t vl, int64_t start, int64_t stop,
                                size_t *out);
/** How many items equal @v, into *@out (l.count(v)). */
MP_MUST_CHECK int mp_list_count(mp_list *l, const void *v, size_t vl, size_t *out);
/** *@out: whether an item equals @v (v in l). */
MP_MUST_CHECK int mp_list_contains(mp_list *l, const void *v, size_t vl, bool *out);
/** Append every value framed in the @len bytes at @values (l.extend()),
 *  all or, on a malformed buffer, none.  @return 0; MP_EINVAL (not whole
 *  strings); MP_ENOMEM; MP_EMSGSIZE (above 64 MiB); MP_ECLOSED. */
MP_MUST_CHECK int mp_list_extend(mp_list *l, const void *values, size_t len);
/** Reverse in place (l.reverse()). */
MP_MUST_CHECK int mp_list_reverse(mp_list *l);
/** Sort in place in byte order (see above), descending when @reverse
 *  (l.sort(reverse=...); no key function: sort locally for another order).
 *  Equal items are the same bytes, so stability cannot be seen. */
MP_MUST_CHECK int mp_list_sort(mp_list *l, bool reverse);
/**
 * l[start:stop:step] into @out, framed as mp_dict_keys.  Indexes as
 * Python's slices: negative from the end, then clamped to the list, so
 * any pair is valid; an omitted bound is INT64_MIN or INT64_MAX (e.g. the
 * whole list reversed: INT64_MAX, INT64_MIN, -1).  Python's l[:] (and
 * with it `l + other`, `l * n` and reversed(l), which make local lists).
 * @return 0; MP_EINVAL (step 0); MP_ECLOSED.
 */
MP_MUST_CHECK int mp_list_get_slice(mp_list *l, int64_t start, int64_t stop, int64_t step,
                                    mp_buf *out);
/** l[start:stop:step] = values (framed).  Step 1 replaces the slice by any
 *  number of values (an empty slice: they are inserted at start); another
 *  step needs exactly as many values as the slice has items, as Python's.
 *  @return 0; MP_EINVAL (step 0, a count that differs, a malformed buffer:
 *  nothing changed); MP_ENOMEM; MP_ECLOSED. */
MP_MUST_CHECK int mp_list_set_slice(mp_list *l, int64_t start, int64_t stop, int64_t step,
                                    const void *values, size_t len);
/** del l[start:stop:step].  @return 0; MP_EINVAL (step 0); MP_ECLOSED. */
MP_MUST_CHECK int mp_list_del_slice(mp_list *l, int64_t start, int64_t stop, int64_t step);
/** l *= n: the items @n times over; n <= 0 empties the list.  A result
 *  above 2^28 items, or that would take more than 256 MiB on the server
 *  (each item counted as its bytes and about 40 more), is refused whole.
 *  @return 0; MP_ENOMEM (nothing changed); MP_ECLOSED. */
MP_MUST_CHECK int mp_list_repeat(mp_list *l, int64_t n);
/** Free this proxy; the list stays on the server.  NULL is a no-op. */
void mp_list_free(mp_list *l);
/** A dict or list as an argument: the receiver's handle names the same
 *  object on the same server (see mp_args_add_manager for the key). */
MP_MUST_CHECK int mp_args_add_dict(mp_args *a, mp_dict *d);
/** Owned by the mp_args (valid as long as it is; do not free it). */
mp_dict *mp_args_dict(const mp_args *a, size_t i);
MP_MUST_CHECK int mp_args_add_list(mp_args *a, mp_list *l);
/** Owned by the mp_args (valid as long as it is; do not free it). */
mp_list *mp_args_list(const mp_args *a, size_t i);

/*
 * Proxies, used with the ordinary functions of each type (mp_queue_put,
 * mp_lock_acquire, mp_condition_wait, mp_barrier_wait, ...), and the suite
 * runs the queue, joinable queue, lock, RLock, semaphore, condition, event,
 * barrier, value and array tests against proxies as well as local objects
 * (the "/proxy" test variant).  Each call is one request to the server (tens of
 * microseconds), timeouts included; once the server has gone (shut down,
 * killed) every call returns MP_ECLOSED.  A proxy lock is owned by the
 * thread that acquired it; a client that dies holding it releases it and
 * the next acquirer gets MP_EOWNERDEAD.  A client killed while blocked in a
 * get or an acquire takes nothing with it (beyond Python, whose server
 * drops such a message): what the server takes for a waiting client is
 * handed over only once the client has confirmed the reply, and otherwise
 * goes back — a message to the head of its queue, a lock released as it
 * was, a semaphore's unit returned.  Where a proxy differs, the function's own
 * comment says so: a proxy value has no pointer and no lock (mp_value_ptr
 * and mp_value_lock are NULL: use mp_value_load/mp_value_store, and a lock
 * of your own for read-modify-write); a proxy array has no pointer
 * (mp_array_data is NULL: use mp_array_load/mp_array_store); task_done and
 * join work on a joinable queue's proxy only (MP_EINVAL on
 * mp_manager_queue's, as on a local plain queue); a manager's barrier has
 * no action.  A proxy holds no descriptor, so it also travels over byte
 * pipes and TCP.  Proxies travel in mp_args and over
 * connections (the receiver connects to the same manager).
 */
/** A proxy for the manager's queue @name (made with @maxsize on first use;
 *  Python: SyncManager.Queue).  Free it with mp_queue_free. */
MP_MUST_CHECK int mp_manager_queue(mp_manager *m, const char *name, size_t maxsize,
                                   mp_queue **out);
/** A proxy for the manager's lock @name (SyncManager.Lock); mp_lock_free. */
MP_MUST_CHECK int mp_manager_lock(mp_manager *m, const char *name, mp_lock **out);
/** A proxy for the manager's event @name (SyncManager.Event); mp_event_free. */
MP_MUST_CHECK int mp_manager_event(mp_manager *m, const char *name, mp_event **out);
/** A proxy for the manager's semaphore @name (made with @value on first use;
 *  SyncManager.Semaphore); mp_semaphore_free. */
MP_MUST_CHECK int mp_manager_semaphore(mp_manager *m, const char *name, unsigned value,
                                       mp_semaphore **out);
/** A proxy for the manager's value @name of @type (zero on first use;
 *  SyncManager.Value); mp_value_free. */
MP_MUST_CHECK int mp_manager_value(mp_manager *m, const char *name, mp_type type,
                                   mp_value **out);
/** A proxy for the manager's array @name of @n elements of @type
 *  (SyncManager.Array): made zero on first use, and @init (@n elements;
 *  NULL: none) stored if no element has been stored in it yet, so the
 *  first opener with an @init sets it.  Use mp_array_load/mp_array_store
 *  (one request each), mp_array_len and mp_array_type; mp_array_data and
 *  mp_array_lock are NULL.  Free it with mp_array_free.
 *  @return 0; MP_EINVAL for an unknown type, more than 64 MiB of elements,
 *  or a name the manager already has as an array of another type or
 *  length; MP_ECLOSED; MP_ENOMEM. */
MP_MUST_CHECK int mp_manager_array(mp_manager *m, const char *name, mp_type type, size_t n,
                                   const void *init, mp_array **out);
/**
 * A proxy for the manager's joinable queue @name (made with @maxsize on
 * first use; SyncManager.JoinableQueue), a queue of its own kind (apart
 * from mp_manager_queue's of the same name).  mp_queue_task_done and
 * mp_queue_join work on it as on a local joinable queue (task_done more
 * often than put: MP_EINVAL), join waiting on the server; it travels in
 * mp_args and over connections as a joinable queue.
 *
 * A consumer that dies: the server counts, per connection (a proxy opens
 * one per thread), the messages handed over to it and not yet task_done'd
 * by it.  When the connection ends (the process died, or the thread
 * ended) with some outstanding, they are written off: the unfinished count
 * drops by them, so join does not wait for ever on tasks no one will
 * finish.  A join that returns because the count reached 0 after a
 * write-off returns MP_EOWNERDEAD instead of 0 (the dead consumer's tasks
 * were not done): every join waiting then, or, if none was, the next one.
 * A consumer killed while its get waits takes nothing (see above), so it
 * has nothing written off.  A task_done from another thread or process
 * than the getter's lowers the global count only (Python allows it); a
 * later write-off then never takes the count below 0.
 * @return 0; MP_EINVAL; MP_ECLOSED; MP_ENOMEM.
 */
MP_MUST_CHECK int mp_manager_joinable_queue(mp_manager *m, const char *name, size_t maxsize,
                                            mp_queue **out);
/**
 * The manager's namespace @name (SyncManager.Namespace), empty on first
 * use.  Python's Namespace is an object with named attributes; in C those
 * are a dict with string keys, so a namespace is an mp_dict of its own
 * kind (apart from mp_manager_dict's of the same name): ns.x = v is
 * mp_dict_set(ns, "x", 1, v, vl), getattr mp_dict_get (MP_ENOENT: no such
 * attribute), delattr mp_dict_del, vars(ns) mp_dict_keys; it travels as a
 * dict (mp_args_add_dict).  Free it with mp_dict_free.
 * @return 0; MP_EINVAL; MP_ECLOSED; MP_ENOMEM.
 */
MP_MUST_CHECK int mp_manager_namespace(mp_manager *m, const char *name, mp_dict **out);
/** A proxy for the manager's RLock @name (SyncManager.RLock): owned by the
 *  acquiring thread, re-entrant (the depth is counted on the server), a
 *  dead client's holds released at once, the next acquirer getting
 *  MP_EOWNERDEAD; mp_lock_is_recursive is true.  mp_lock_free.
 *  @return 0; MP_EINVAL; MP_ECLOSED; MP_ENOMEM. */
MP_MUST_CHECK int mp_manager_rlock(mp_manager *m, const char *name, mp_lock **out);
/** A proxy for the manager's BoundedSemaphore @name (made with @value on
 *  first use; SyncManager.BoundedSemaphore): a release past @value is
 *  MP_EINVAL, as a local bounded one.  Its names are apart from
 *  mp_manager_semaphore's.  mp_semaphore_free.
 *  @return 0; MP_EINVAL above INT32_MAX; MP_ECLOSED; MP_ENOMEM. */
MP_MUST_CHECK int mp_manager_bounded_semaphore(mp_manager *m, const char *name, unsigned value,
                                               mp_semaphore **out);
/**
 * A proxy for the manager's Condition @name (SyncManager.Condition) over
 * @lock, a Lock or RLock proxy of the same manager (the condition keeps a
 * handle of its own on it), or NULL: then the condition has an RLock of its
 * own on the server, shared by every client of @name (mp_condition_lock).
 * Used with mp_condition_*: wait is one request, in which the server
 * releases the lock the caller holds, waits for a notify and retakes the
 * lock for it, atomically with respect to notify, as Python's Condition;
 * wait_for evaluates its predicate in the caller, one wait a round.  A
 * waiter whose client dies is removed from the waiters and never counted
 * as notified (a notification it was given goes to the next waiter), and
 * retakes no lock.  Every client must name the same lock for @name.
 * mp_condition_free.
 * @return 0; MP_EINVAL for a local lock, another manager's, or a lock other
 *         than the one @name was first used with (at the first wait or
 *         notify); MP_ECLOSED; MP_ENOMEM.
 */
MP_MUST_CHECK int mp_manager_condition(mp_manager *m, const char *name, mp_lock *lock,
                                       mp_condition **out);
/**
 * A proxy for the manager's Barrier @name for @parties (SyncManager.Barrier;
 * made with @parties and @timeout, the default of waits, on first use).
 * There is no action: an action is code, which cannot run in the server
 * (run it in the waiter that gets index 0).  Used with mp_barrier_*: wait
 * returns the index, MP_EBROKEN, MP_ETIMEDOUT as a local barrier; a party
 * whose client dies while waiting breaks the barrier at once (the other
 * waiters get MP_EBROKEN), not at the timeout.  A default timeout of 24
 * days or more is none.  mp_barrier_free.
 * @return 0; MP_EINVAL for 0 parties or more than INT32_MAX; MP_ECLOSED;
 *         MP_ENOMEM.
 */
MP_MUST_CHECK int mp_manager_barrier(mp_manager *m, const char *name, unsigned parties,
                                     double timeout, mp_barrier **out);

/**
 * Your own shared types, like BaseManager.register: register before
 * mp_manager_start (and in the serving process for mp_manager_serve); the
 * server finds @fn by @type_name.  *state starts NULL for each named object
 * and is the method's to allocate; the method "__del__" is called when the
 * server ends, to free it.  A non-zero return is that call's error.
 */
typedef int (*mp_method_fn)(void **state, const char *method, const mp_args *in, mp_buf *out);
/** Register @fn as the methods of type @type_name (see mp_method_fn); a second
 *  registration of the same type replaces the first.
 *  @return 0; MP_EINVAL for an empty or over-long type; MP_ENOMEM. */
MP_MUST_CHECK int mp_manager_register(const char *type_name, mp_method_fn fn);
/** Call @method of object @name of type @type_name; @in: numbers, strings and
 *  bytes only.  MP_ENOENT for an unregistered type. */
MP_MUST_CHECK int mp_manager_call(mp_manager *m, const char *type_name, const char *name,
                                  const char *method, const mp_args *in, mp_buf *out);

/**
 * Fallback for programs that cannot rely on the library's constructor (a
 * static link that runs other constructors first, a custom loader): call it
 * first thing in main().  In a spawned child it runs the target and never
 * returns; in any other process it returns at once.
 *
 * A spawned child is recognised by the MULTIPROC_SPAWN environment variable
 * and the descriptor it names, which is trusted only if it is one end of a
 * stream socket pair made by this process's parent as the same (effective)
 * user.  Anything else is left untouched -- never read or closed -- the
 * variable is removed and the program runs as usual.  (A child whose
 * parent died before it started exits with MP_EXIT_BOOTSTRAP instead.)
 * In a set-user-ID, set-group-ID or file-capability program (AT_SECURE)
 * neither the constructor nor this function looks at the variable at all;
 * such a program cannot start processes by spawn or forkserver, nor a
 * resource tracker (MP_EPERM): use fork, and MP_SHM_NOTRACK.
 */
void mp_main_hook(void);

/** A spawned child that cannot rebuild its target (the program changed
 *  under it) prints one line on stderr and exits with this code. */
#define MP_EXIT_BOOTSTRAP 126

#ifdef __cplusplus
}
#endif
#endif
