/*
 * What the modules share and nobody else sees.  Internal cross-file names
 * are mp__*; everything else in a .c file is static.
 */
#ifndef MULTIPROC_INTERNAL_H
#define MULTIPROC_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "multiproc.h"

#define MP__HIDDEN __attribute__((visibility("hidden")))
#define MP__UNUSED __attribute__((unused))
#define MP__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- util.c: deadlines, logging, buffers ------------------------------- */

/* An absolute CLOCK_MONOTONIC deadline, computed once per blocking call. */
typedef struct mp__deadline {
    struct timespec at;
    bool forever, zero;
} mp__deadline;

/* The clock part of mp__deadline_init. */
void mp__deadline_from_now(mp__deadline *d, double timeout);
/* Inline: "forever" and "now" are the fast paths' timeouts and read no clock. */
static inline void mp__deadline_init(mp__deadline *d, double timeout)
{
    d->forever = timeout < 0 || timeout != timeout; /* a NaN waits as None would */
    d->zero = timeout == 0;
    if (d->forever || d->zero)
        d->at = (struct timespec){0, 0}; /* long past: a futex wait returns at once */
    else
        mp__deadline_from_now(d, timeout);
}
/* Remaining time in ms for poll(): -1 forever, 0 when expired (rounded up). */
int mp__deadline_poll_ms(const mp__deadline *d);
bool mp__deadline_expired(const mp__deadline *d);
/* Absolute CLOCK_MONOTONIC timespec, NULL for forever (futex, clock_nanosleep). */
const struct timespec *mp__deadline_ts(const mp__deadline *d);

extern int mp__log_level;
void mp__log_write(int level, const char *fmt, ...) MP_PRINTF(2, 3);
#define mp__log(level, ...)                                                    \
    do {                                                                       \
        if ((level) <= mp__log_level)                                          \
            mp__log_write((level), __VA_ARGS__);                               \
    } while (0)

/* Print one line "multiproc: ..." to stderr and abort (programming errors). */
_Noreturn void mp__fatal(const char *fmt, ...) MP_PRINTF(1, 2);

/* ---- sys.c: the only home of descriptor-creating syscalls -------------- */

/* All descriptors are CLOEXEC and never 0..2.  Return fd or -errno. */
int mp__sys_socketpair(int type, int sv[2]);
int mp__sys_pipe(int fds[2]);
int mp__sys_dup(int fd);
int mp__sys_pidfd_open(pid_t pid);
int mp__sys_open_devnull(int flags);
int mp__sys_signalfd(const sigset_t *mask);
/* eventfd(@init, @flags | EFD_CLOEXEC). */
int mp__sys_eventfd(unsigned init, int flags);
/* A socket and an accepted connection, CLOEXEC and off 0..2; -errno. */
int mp__sys_socket(int family, int type);
int mp__sys_accept(int lfd);
/* shm_open(@name, @flags | O_NOFOLLOW | O_CLOEXEC, 0600). */
int mp__sys_shm_open(const char *name, int flags);
int mp__sys_memfd(const char *name);
/* Give the memfd @fd its size for good: @size bytes, then sealed against
 * shrinking and growing (and further seals), so that no process it is
 * passed to can make another's mappings of it fault.  0 or -errno. */
int mp__sys_memfd_size(int fd, uint64_t size);
/* The size of @fd in *@size if it is a memfd sealed so: 0; MP_EBADMSG if
 * its size could still change (or it is no memfd); -errno. */
int mp__sys_memfd_sized(int fd, uint64_t *size);
/* Close, never retried; keeps errno. */
void mp__sys_close(int fd);
/* Wait for @events on one fd: 1 ready, 0 deadline passed, -errno. EINTR retried. */
int mp__sys_poll1(int fd, short events, const mp__deadline *d);
/* Whole-buffer I/O, EINTR retried.  read: MP_EOF if EOF before the first
 * byte, MP_ETRUNCATED if EOF after it. */
int mp__sys_write_all(int fd, const void *p, size_t n);
int mp__sys_read_all(int fd, void *p, size_t n);
/* One sendmsg of @n bytes plus descriptors (SCM_RIGHTS); the rest of the
 * bytes, if any, follow with write. */
int mp__sys_send_fds(int sock, const void *p, size_t n, const int *fds, size_t nfds);
/* Read exactly @n bytes; descriptors that arrive with them are stored into
 * @fds (up to @maxfds, CLOEXEC) and counted in *nfds; extras are closed and
 * the call fails with MP_EBADMSG. */
int mp__sys_recv_fds(int sock, void *p, size_t n, int *fds, size_t maxfds, size_t *nfds);
int mp__sys_pidfd_send_signal(int pidfd, int sig);

/*
 * Raw system calls for the forked child's start-up path.  In a fresh fork
 * every library page the child touches for the first time costs a page
 * fault; these inline calls touch none, and the child path's own functions
 * sit together in MP__CHILD_TEXT.
 */
#include <sys/syscall.h>
#define MP__CHILD_TEXT __attribute__((section(".text.mp_child"), noinline))
#if defined(__x86_64__)
static inline long mp__rawsys(long n, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret;
}
static inline long mp__rawsys4(long n, long a, long b, long c, long d)
{
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}
#else
#include <unistd.h>
static inline long mp__rawsys(long n, long a, long b, long c)
{
    long r = syscall(n, a, b, c);
    return r < 0 ? -errno : r;
}
static inline long mp__rawsys4(long n, long a, long b, long c, long d)
{
    long r = syscall(n, a, b, c, d);
    return r < 0 ? -errno : r;
}
#endif

/* ---- reduction.c: mp_args, wire form, function references -------------- */

/* Descriptors that travel with a serialized message. */
#define MP__MAX_FDS 250
/* Room for the SCM_RIGHTS of up to MP__MAX_FDS descriptors. */
typedef union mp__fdbuf {
    char buf[CMSG_SPACE(sizeof(int) * MP__MAX_FDS)];
    struct cmsghdr align;
} mp__fdbuf;
/* Attach @fds (@nfds <= MP__MAX_FDS; none: nothing) to @msg, in @buf. */
void mp__sys_pack_fds(struct msghdr *msg, mp__fdbuf *buf, const int *fds, size_t nfds);
typedef struct mp__fdvec {
    int fds[MP__MAX_FDS];
    size_t n;
} mp__fdvec;
/* Index of @fd in the vector, appending it; MP_EINVAL when full. */
int mp__fdvec_add(mp__fdvec *v, int fd);

/* Append-only writer into an mp_buf (little-endian fixed widths). */
int mp__put_u8(mp_buf *b, uint8_t v);
int mp__put_u32(mp_buf *b, uint32_t v);
int mp__put_u64(mp_buf *b, uint64_t v);
int mp__put_blob(mp_buf *b, const void *p, size_t n); /* u64 length + bytes */
int mp__put_str(mp_buf *b, const char *s);             /* blob with a NUL inside */

/* Bounded cursor reader: fails (sticky err = MP_EBADMSG) rather than over-reads. */
typedef struct mp__reader {
    const uint8_t *p;
    size_t len, off;
    int err;
} mp__reader;
void mp__reader_init(mp__reader *r, const void *p, size_t len);
uint8_t mp__get_u8(mp__reader *r);
uint32_t mp__get_u32(mp__reader *r);
uint64_t mp__get_u64(mp__reader *r);
/* Points into the reader's memory; NULL (and err) on short input. */
const void *mp__get_blob(mp__reader *r, size_t *n);
const char *mp__get_str(mp__reader *r); /* checks the terminating NUL */

/*
 * Where a wire form goes, or came from: that decides what it may carry.
 * A peer is anyone at the other end of a connection, or a manager's client
 * or server; only a channel the library itself writes to a child it starts
 * (spawn and forkserver preparation data, the pool's task table) carries
 * code (function references) or a manager's authkey.
 */
typedef enum mp__channel {
    MP__WIRE_DATA,   /* ints, doubles, strings, bytes (manager requests, replies) */
    MP__WIRE_PEER,   /* and descriptors and library objects (connections) */
    MP__WIRE_CHILD,  /* and function references and authkeys (to a child started here) */
} mp__channel;

/*
 * Library object kinds carried in mp_args.  Each shareable type (queue,
 * lock, connection, ...) supplies one of these; reduction.c knows them by tag.
 * reduce() writes whatever the object needs to be rebuilt in another process
 * (descriptors go through @fds and are referred to by index), or refuses an
 * object @ch may not carry (MP_EPERM); rebuild() creates a new handle for
 * this process, taking ownership of the fds it uses, and accepts exactly
 * the forms the kind can have on @ch (MP_EBADMSG otherwise); dup() makes a
 * second handle in the same process; release() frees a handle.  Neither
 * sees MP__WIRE_DATA: objects never travel there.
 */
typedef struct mp__objtype {
    const char *name;
    char letter; /* mp_args_of's format letter */
    uint8_t tag;
    int (*reduce)(void *obj, mp_buf *out, mp__fdvec *fds, mp__channel ch);
    int (*rebuild)(mp__reader *r, int *fds, size_t nfds, mp__channel ch, void **obj);
    int (*dup)(void *obj, void **out);
    void (*release)(void *obj);
} mp__objtype;
/* The wire tag of each kind (the byte after OBJECT): one list, so that no
 * two collide and a new kind takes the next number.  Never renumber one:
 * a spawned child may be rebuilding what its parent wrote. */
enum mp__objtag {
    MP__TAG_CONN = 1,
    MP__TAG_LOCK = 2,
    MP__TAG_SEMAPHORE = 3,
    MP__TAG_CONDITION = 4,
    MP__TAG_EVENT = 5,
    MP__TAG_BARRIER = 6,
    MP__TAG_VALUE = 7,
    MP__TAG_ARRAY = 8,
    MP__TAG_QUEUE = 9,
    MP__TAG_SHM = 10,
    MP__TAG_MANAGER = 11,
    MP__TAG_DICT = 12,
    MP__TAG_LIST = 13,
};
/* Each kind's file registers its mp__objtype with the wire decoder of the
 * layer below it (reduction.c), from a constructor that runs before any
 * other (before the spawn bootstrap's, which may never return), so that
 * reduction.c names no kind: MP__REGISTER_OBJTYPE(mp__queue_objtype); */
void mp__objtype_register(const mp__objtype *t);
#define MP__REGISTER_OBJTYPE(t)                                                \
    __attribute__((constructor(101))) static void t##_register(void)           \
    {                                                                          \
        mp__objtype_register(&t);                                              \
    }                                                                          \
    _Static_assert(1, "a semicolon after the macro")
int mp__args_add_obj(mp_args *a, const mp__objtype *t, void *obj);
void *mp__args_obj(const mp_args *a, size_t i, const mp__objtype *t);
/*
 * One shareable kind, defined once: its wire type @var (name, mp_args_of
 * letter, wire tag, then its reduce, rebuild and dup, and what frees one
 * handle, e.g. the public mp_<kind>_free: its result, if any, is ignored),
 * registered with reduction.c, and its public pair @add (mp_args_add_<kind>)
 * and @get (mp_args_<kind>), named in full at the use so that a search for
 * either finds its definition:
 *
 *   MP__KIND(mp_lock, mp__lock_objtype, mp_args_add_lock, mp_args_lock,
 *            "lock", 'L', MP__TAG_LOCK, reduce, rebuild, dup, mp_lock_free);
 */
#define MP__KIND(type, var, add, get, name_, letter_, tag_, reduce_, rebuild_, dup_, free_) \
    static void var##_release(void *obj)                                       \
    {                                                                          \
        (void)free_(obj);                                                      \
    }                                                                          \
    const mp__objtype var = {.name = name_, .letter = letter_, .tag = tag_,    \
                             .reduce = reduce_, .rebuild = rebuild_,           \
                             .dup = dup_, .release = var##_release};           \
    MP__REGISTER_OBJTYPE(var);                                                 \
    int add(mp_args *a, type *obj)                                             \
    {                                                                          \
        return a && obj ? mp__args_add_obj(a, &var, obj) : MP_EINVAL;          \
    }                                                                          \
    type *get(const mp_args *a, size_t i)                                      \
    {                                                                          \
        return mp__args_obj(a, i, &var);                                       \
    }                                                                          \
    _Static_assert(1, "a semicolon after the macro")

int mp__args_dup(const mp_args *src, mp_args **out);
/* Append copies of @src's items from index @from on. */
int mp__args_append(mp_args *a, const mp_args *src, size_t from);
/* Overwrite item @i, an int (a reply's status, filled in last). */
void mp__args_set_int(mp_args *a, size_t i, int64_t v);
bool mp__args_has_ptr(const mp_args *a);
/* Serialize for @ch (append to @out, descriptors into @fds): MP_EINVAL for
 * a pointer, or a descriptor or object on MP__WIRE_DATA; MP_EPERM for an
 * object that carries code (a barrier's action) off MP__WIRE_CHILD. */
int mp__args_encode(const mp_args *a, mp_buf *out, mp__fdvec *fds, mp__channel ch);
/* Rebuild from the wire, accepting only what @ch may carry (MP_EBADMSG).
 * Descriptors named by the message are taken from @fds (set to -1 there);
 * the caller closes what is left. */
int mp__args_decode(mp__reader *r, int *fds, size_t nfds, mp__channel ch, mp_args **out);

/* Function references: address <-> (object, build id, offset).  Decoded
 * only from MP__WIRE_CHILD channels. */
int mp__funcref_encode(const void *fn, mp_buf *out);
/* Resolve among the objects loaded in this process; with @load (a channel
 * the library wrote to this child, never a peer's bytes) a library the
 * parent had loaded and this process has not is loaded first.  On failure
 * writes a one-line reason and returns MP_EBADMSG (malformed) or
 * MP_ENOTFOUND (no such object or function, build id changed). */
int mp__funcref_decode(mp__reader *r, bool load, void **fn, char *why, size_t whylen);

/* ---- connection.c ------------------------------------------------------- */

/* The authkey handshake on a connected end, exposed for tests and fuzzing.
 * Challenger (what a listener runs first): send "#CHALLENGE#{sha256}" + 40
 * random bytes, accept a 16-byte HMAC-MD5 or a "{name}"+HMAC reply, answer
 * #WELCOME#/#FAILURE#.  Responder (what a client runs first): answer a
 * 20-byte challenge with raw HMAC-MD5, a "{name}" one with "{name}"+HMAC
 * over the whole payload; refuse one under 20 bytes, as Python 3.12+; expect
 * #WELCOME#.  Each message is capped at 256 bytes.  No time limit here
 * (mp__listener_handshake has one).  Return 0 or MP_EAUTH (wrong key,
 * protocol error), MP_EOF, ... */
int mp__auth_deliver(mp_conn *c, const void *key, size_t keylen);
int mp__auth_answer(mp_conn *c, const void *key, size_t keylen);
/* The time a listener gives a handshake when its caller gave none to wait
 * (mp_listener_accept with timeout 0, the manager server), seconds. */
#define MP__HANDSHAKE_TIMEOUT 5.0
/* Take one connection from @l by @d without its handshake: 0, or
 * MP_ETIMEDOUT when none came (a zero @d only looks). */
int mp__listener_accept_raw(mp_listener *l, mp_conn **out, const mp__deadline *d);
/* The listener's side of the handshake on @c (none without a key), every
 * read bounded by the one deadline @d: 0; MP_EAUTH (wrong key, protocol
 * error, the peer hung up); MP_ETIMEDOUT.  @c is the caller's to close. */
int mp__listener_handshake(mp_listener *l, mp_conn *c, const mp__deadline *d);
/* mp_client, with @hangup the code for a listener that hangs up inside the
 * handshake (mp_client: MP_EAUTH, as Python's EOFError; a manager's
 * client: MP_ECLOSED, its server is going). */
int mp__client(mp_conn **out, const char *address, const void *authkey, size_t keylen,
               int hangup);
/* Free the calling thread's OpenSSL state (its error queue) now rather than
 * at its exit: for the library's own threads once their handshake is done,
 * so that one ending as the process exits leaves nothing half-freed. */
void mp__auth_thread_done(void);
/* Caps on @c's messages.  Received above @maxrecv (for maxlength 0 and
 * typed messages; 0: MP_CONN_MAXLEN): MP_EMSGSIZE from the frame header,
 * before anything is allocated.  Sent above @maxsend (0: no cap):
 * MP_EMSGSIZE before a byte goes out. */
void mp__conn_set_limits(mp_conn *c, size_t maxrecv, size_t maxsend);
/* Read ahead on @c (one read per message): for the library's own
 * connections, which never carry descriptors and are never passed on. */
int mp__conn_buffered(mp_conn *c);
/* mp_conn_recv accepting only what @ch may carry (managers: MP__WIRE_DATA). */
int mp__conn_recv(mp_conn *c, mp_args **msg, mp__channel ch);
/* The object type of connections in mp_args. */
extern const mp__objtype mp__conn_objtype;

/* ---- heap.c: the shared arena -------------------------------------------- */

typedef struct mp__seg mp__seg;
/* A block of shared memory as one process sees it. */
typedef struct mp__shref {
    mp__seg *seg;
    char *p;
    size_t size;
    pid_t creator;   /* set in the creating handle only: it frees the block */
} mp__shref;
/* Zeroed, 64-byte aligned shared memory of @size bytes. */
int mp__shm_alloc(size_t size, mp__shref *out);
/* Drop this handle; the creating handle returns the block for reuse. */
void mp__shm_free(mp__shref *ref);
/* A second handle on the same block (never frees it). */
int mp__shm_ref_dup(const mp__shref *src, mp__shref *out);
/* Wire form: segment descriptor (through @fds), offset, size. */
int mp__shm_reduce(const mp__shref *ref, mp_buf *out, mp__fdvec *fds);
int mp__shm_rebuild(mp__reader *r, int *fds, size_t nfds, mp__shref *out);

/*
 * The shared prefix of the kinds that are one block of the arena here or an
 * object in a manager (lock, semaphore, event, condition, barrier, value,
 * array): each one's struct begins with an mp__handle named h, checked by
 * MP__HANDLE_FIRST, so that one wire form, dup and release serve them all.
 */
typedef struct mp__proxy mp__proxy;
typedef struct mp__handle {
    mp__shref ref;  /* the local block (px NULL) */
    mp__proxy *px;  /* or a manager's object: every call goes there */
} mp__handle;
#define MP__HANDLE_FIRST(type)                                                 \
    _Static_assert(offsetof(type, h) == 0 &&                                   \
                       __builtin_types_compatible_p(__typeof__(((type *)0)->h), \
                                                    mp__handle),               \
                   #type " begins with its mp__handle")
/* Wire form: the proxy's (mp__px_reduce_either), or the block's. */
int mp__handle_reduce(const mp__handle *h, mp_buf *out, mp__fdvec *fds, mp__channel ch);
/* Into a zeroed @h: a proxy only when @served (a kind a manager serves), a
 * block only of @need bytes or more; MP_EBADMSG otherwise.  Nothing is
 * held on failure. */
int mp__handle_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, bool served,
                       size_t need, mp__handle *h);
/* A second handle on the same object. */
int mp__handle_dup(const mp__handle *src, mp__handle *out);
/* Drop what @h holds (a zeroed one holds nothing). */
void mp__handle_fini(mp__handle *h);

/* ---- futex words (synchronize.c) ----------------------------------------- */

/* Sleep while *w == val, until woken or @d passes (NULL: forever).
 * 0 when woken, changed or interrupted (callers re-check), MP_ETIMEDOUT. */
int mp__futex_wait(_Atomic uint32_t *w, uint32_t val, const mp__deadline *d);
void mp__futex_wake(_Atomic uint32_t *w, int n);
/* Process-shared robust priority-inheritance mutexes (Lock, Barrier, queue
 * sides).  lock: until @d (NULL: forever; expired: try once); returns 0,
 * EOWNERDEAD (already made consistent), ETIMEDOUT or EDEADLK, positive. */
int mp__robust_init(pthread_mutex_t *m, bool recursive);
int mp__robust_lock(pthread_mutex_t *m, const mp__deadline *d);
/* This thread's id, cached (reset in a forked child). */
pid_t mp__tid(void);

/* Object types of synchronize.c and sharedctypes.c in mp_args. */
extern const mp__objtype mp__lock_objtype, mp__semaphore_objtype, mp__condition_objtype,
    mp__event_objtype, mp__barrier_objtype, mp__value_objtype, mp__array_objtype,
    mp__queue_objtype;

/* ---- queues.c ------------------------------------------------------------ */

/* Crash tests only: called at numbered points inside put (1-4: locked,
 * writing, written, committed; 5: just before a commit that wakes a
 * sleeping consumer, made in one call with the wake-up; 6: returning, the
 * lock released), get (11-14: locked, copied, about to commit, committed;
 * 15: before a commit that wakes a sleeping producer; 16: returning) and
 * task_done (21: locked; 22: before a commit that wakes joiners; 23:
 * committed; 24: returning).  5, 15 and 22 are reached only when a process
 * sleeps on the other side; 6, 16 and 24 only after a commit. */
extern void (*mp__queue_fault_hook)(int point);
/* Kill-loop tests only: called inside mp_lock_acquire when a waiter that
 * slept woke holding the mutex, before it records itself as the owner. */
extern void (*mp__lock_fault_hook)(void);
/* Tests only: write @v where another process holding the queue's file
 * could, into the shared header word @what: "magic", "kind", "maxsize",
 * "ring_cap", "ring_grow", "log_punched", "ndone"; a field of a side's
 * current state, "p.mode" "p.ring" "p.log" "p.count" (producers) or "g.*"
 * (consumers), committed as a new state; "next.kind" or "next.len" of the
 * record the consumers read next.  MP_EINVAL for another name. */
int mp__queue_poke(mp_queue *q, const char *what, uint64_t v);
/* pool_worker.c, for the tests: called in a worker between a claim and the
 * move of the claim cursor. */
extern void (*mp__pool_claim_hook)(void);
/* Tests only, in a pool worker's task: write @v where any worker could,
 * into the word @what ("start", "end", "job", "items_off", "fn_len",
 * "kind", "started_ns") of the table entry this worker runs, or with
 * "next." in front, of the entry after it once that is published.
 * MP_EINVAL for another name, or outside a worker. */
int mp__pool_poke(const char *what, uint64_t v);

/* ---- manager_server.c: the server ------------------------------------------ */

/* Connections still in their handshake at once; more are closed at once. */
#define MP__MANAGER_MAX_PENDING 128
/* The largest request a server reads; a larger one is refused from its
 * frame header (the client gets MP_EBADMSG and is dropped). */
#define MP__MANAGER_MAX_REQUEST ((size_t)64 << 20)
/* The registered types (mp_manager_register): add or replace one; append
 * every (typeid, function reference) pair to @a (a server child's args). */
int mp__server_register(const char *typeid, mp_method_fn fn);
int mp__server_types_add(mp_args *a);
/* Serve on @l until a client asks for shutdown; @ready (if >= 0) gets the
 * address, one line, and is closed (and SIGTERM then shuts it down). */
int mp__server_serve(mp_listener *l, int ready);

/* ---- proxy.c: the client side of the manager protocol ---------------------- */

#include "proxy_ops.h" /* the operations, shared with the server */

/* Whether argument @i of @a is there with type @t (a request or a reply is
 * only trusted after this). */
static inline bool mp__args_has(const mp_args *a, size_t i, mp_arg_type t)
{
    return mp_args_count(a) > i && mp_args_type(a, i) == t;
}

/* A connection to the server at @address, as every manager handle opens
 * one (buffered; a request the server would refuse is not sent). */
int mp__px_connect(const char *address, const void *key, size_t keylen, mp_conn **out);
/* One request @req (op kind name ...) on @c into *reply (status first),
 * and the receipt for what the reply hands over; the status. */
int mp__px_rpc(mp_conn *c, const mp_args *req, mp_args **reply);
/* Request builders: "op kind name", then arguments appended one by one;
 * NULL in, or a failure, gives NULL (what was built is freed). */
mp_args *mp__px_request(int op, const char *kind, const char *name);
mp_args *mp__px_with_bytes(mp_args *a, const void *p, size_t n);
mp_args *mp__px_with_int(mp_args *a, int64_t v);
/* Where a server is and, into a child started here only, its key: the form
 * every manager handle (proxy, manager, dict, list) begins with.  Rebuilt
 * from a peer, the key is this process's authkey (as Python's proxies). */
int mp__px_put_server(mp_buf *out, const char *address, const void *key, size_t keylen,
                      mp__channel ch);
int mp__px_get_server(mp__reader *r, mp__channel ch, const char **address, const void **key,
                      size_t *keylen);

/* A lock, event, semaphore, queue, value or array handle whose object lives in a
 * manager carries one of these; each public call on it goes to the server. */
typedef struct mp__proxy mp__proxy;
/* Open @kind @name (created with @param on first use) on the server at
 * @address, authenticating with @key. */
int mp__px_open(const char *address, const void *key, size_t keylen, const char *kind,
                const char *name, int64_t param, mp__proxy **out);
/* Request @op (MP__OP_*) with an optional timeout (NAN: none) and an
 * optional int result. */
int mp__px_simple(mp__proxy *px, int op, double timeout, int64_t *num);
/* @op on @px over @via's connection (a condition's over its lock's): see
 * proxy.c. */
int mp__px_via(mp__proxy *via, mp__proxy *px, int op, double timeout, int64_t n, int64_t *num);
int64_t mp__px_param(const mp__proxy *px);
const char *mp__px_address(const mp__proxy *px);
int mp__px_open_via(mp__proxy *via, const char *kind, const char *name, mp__proxy **out);
bool mp__px_same_server(const mp__proxy *a, const mp__proxy *b);
/* Request @op carrying bytes @p (may be NULL) and returning bytes into
 * @out, or into @into (@cap, *len). */
int mp__px_bytes(mp__proxy *px, int op, const void *p, size_t n, double timeout, mp_buf *out,
                 void *into, size_t cap, size_t *len);
/* Any other request: "op kind name" of @px, arguments appended by the
 * caller (mp__px_with_*); mp__px_call runs it (consumed) into *rep. */
mp_args *mp__px_op_request(const mp__proxy *px, int op);
int mp__px_call(mp__proxy *px, mp_args *req, mp_args **rep);
void mp__px_free(mp__proxy *px);
int mp__px_dup(const mp__proxy *px, mp__proxy **out);
/* Wire form: the server's (mp__px_put_server), kind, name, parameter. */
int mp__px_reduce(const mp__proxy *px, mp_buf *out, mp__channel ch);
int mp__px_rebuild(mp__reader *r, mp__channel ch, mp__proxy **out);
/* The one wire form of a handle that may be a manager's (every kind a
 * manager serves): u8 1 and the proxy's form, or u8 0 and the local form,
 * which the caller writes (reads) next.  Rebuilding, a proxy is accepted
 * only when @served; *out is the proxy, or NULL when the local form follows. */
int mp__px_reduce_either(const mp__proxy *px, mp_buf *out, mp__channel ch);
int mp__px_rebuild_either(mp__reader *r, mp__channel ch, bool served, mp__proxy **out);
/* Handles around a proxy (synchronize.c, queues.c, sharedctypes.c).  Those
 * that need nothing but the proxy return the handle in *(void **)out, the
 * form managers.c's open_proxy takes them in: an mp_lock, mp_event,
 * mp_semaphore or mp_queue. */
int mp__lock_from_proxy(mp__proxy *px, void **out);
/* A manager condition over @lock (a proxy; the condition takes a handle of
 * its own on it); a manager barrier. */
/* @l's proxy; NULL for a local lock. */
mp__proxy *mp__lock_proxy(const mp_lock *l);
int mp__condition_from_proxy(mp__proxy *px, mp_lock *lock, mp_condition **out);
int mp__barrier_from_proxy(mp__proxy *px, mp_barrier **out);
int mp__event_from_proxy(mp__proxy *px, void **out);
int mp__semaphore_from_proxy(mp__proxy *px, void **out);
int mp__queue_from_proxy(mp__proxy *px, void **out);
int mp__value_from_proxy(mp__proxy *px, mp_type type, mp_value **out);
int mp__joinable_queue_from_proxy(mp__proxy *px, void **out);
int mp__array_from_proxy(mp__proxy *px, mp_type type, size_t n, mp_array **out);
/* Object types of shared_memory.c and managers.c in mp_args. */
extern const mp__objtype mp__shm_objtype, mp__manager_objtype, mp__dict_objtype,
    mp__list_objtype;
/* A lock that must be a local one (a condition's, a value's). */
int mp__lock_rebuild_local(mp__reader *r, int *fds, size_t nfds, mp__channel ch, mp_lock **out);

/* A result a cleanup path has no use for (best effort). */
#define IGNORE_RESULT(x)                                                       \
    do {                                                                       \
        if ((x) < 0) {                                                         \
        }                                                                      \
    } while (0)

/* ---- process.c ---------------------------------------------------------- */

#define MP__AUTHKEY_MAX 1024
#define MP__IDENT_MAX 128

typedef struct mp__popen_ops mp__popen_ops;

enum mp__proc_kind { MP__PROC_CHILD, MP__PROC_SELF, MP__PROC_PARENT };

/* A link in a circular doubly linked list (the children list, a manager
 * condition's waiters); the head is a bare link, linked to itself when the
 * list is empty.  A link that is in no list has next == NULL. */
typedef struct mp__link {
    struct mp__link *next, *prev;
} mp__link;

static inline void mp__list_init(mp__link *head)
{
    head->next = head->prev = head;
}

static inline void mp__list_add_tail(mp__link *head, mp__link *l)
{
    l->next = head;
    l->prev = head->prev;
    head->prev->next = l;
    head->prev = l;
}

/* Unlink @l, if it is in a list. */
static inline void mp__list_del(mp__link *l)
{
    if (l->next == NULL)
        return;
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->next = l->prev = NULL;
}

struct mp_process {
    mp__link link;              /* first: in the creator's children list */
    enum mp__proc_kind kind;
    mp_context *ctx;            /* as given; NULL: default at start */
    const mp__popen_ops *ops;   /* set at start */
    mp_target_fn target;
    mp_args *args;
    char *name;
    bool daemon, started, ended, closed;
    bool reaped;                /* fork/spawn: waited for, exitcode set (under mp__me.lock) */
    pid_t pid;
    pid_t creator;              /* only this process may start/join it */
    int pidfd;                  /* sentinel: -1 until started */
    int status_fd;              /* forkserver: exit status channel, else -1 */
    int exitcode;
    size_t authkey_len;
    char ident[MP__IDENT_MAX];  /* "1", "1:2", ... ("" for the main process) */
    uint8_t authkey[MP__AUTHKEY_MAX];
};

/* The fork server this process started (popen_forkserver.c). */
typedef struct mp__fsstate {
    pthread_mutex_t lock;
    int ctl;                    /* control socket, -1 when no server */
    pid_t pid;
    int pidfd;
    uint8_t token[32];          /* MP__FORKSERVER_TOKEN */
} mp__fsstate;

/*
 * This process's view of itself.  A forked child writes to it at once, so
 * it is laid out to fit one page (each copy-on-write fault costs time).
 */
typedef struct mp__self {
    pthread_mutex_t lock;       /* children list and counter */
    mp__link children;          /* list head */
    unsigned counter;           /* children created so far (for names) */
    pid_t pid;
    int pidfd;                  /* pidfd of this process, lazily, for children */
    mp__fsstate fs;
    mp_process *parent;         /* NULL in the main process */
    mp_process proc;            /* this process */
    char *own_name;             /* proc.name when set here (else not ours) */
    mp_process parent_storage;  /* what parent points to */
} mp__self;
extern mp__self mp__me;

void mp__init(void);            /* idempotent; authkey, atexit, atfork */

/*
 * Fork and exit hooks.  A module that must act around fork() or at exit
 * registers one static const mp__hooks, naming its slot, with
 * mp__hooks_add from its own first use; process.c runs the registered
 * hooks in the order its table (hook orders, in process.c) gives each
 * slot, so that process.c never names a function of a module above it.
 * A new hook needs a slot here and a place in that table.
 */
typedef enum {
    MP__HOOK_PROCESS,      /* process.c's own (always there) */
    MP__HOOK_FORKSERVER,   /* popen_forkserver.c: the server's link */
    MP__HOOK_HEAP,         /* heap.c: the arena's lock */
    MP__HOOK_PROXIES,      /* managers.c: the live proxies' connections */
    MP__HOOK_TID,          /* synchronize.c: the cached thread id */
    MP__HOOK_TRACKER,      /* resource_tracker.c, once it started a tracker */
    MP__HOOK_TRACKER_STOP, /* resource_tracker.c, once it has a tracker's end */
    MP__HOOK_NSLOTS
} mp__hook_slot;

typedef struct {
    mp__hook_slot slot; /* which entry of process.c's table this is */
    /* A mutex held across the fork: taken before prepare, released after
     * parent, and made new in the child before child runs. */
    pthread_mutex_t *held;
    void (*prepare)(void); /* before fork(), in the forking thread */
    void (*parent)(void);  /* after fork() in the parent */
    void (*child)(void);   /* after fork() in the child: no allocation */
    void (*exit)(void);    /* at exit (mp__exit_cleanup) */
} mp__hooks;

/* Idempotent, thread-safe, allocates nothing.  A fork that has already run
 * its prepare hooks when @h arrives runs none of @h's: a fork runs either
 * all of a module's hooks or none (as pthread_atfork did). */
void mp__hooks_add(const mp__hooks *h);
int mp__self_pidfd(void);
/* What atexit does: terminate daemonic children, join the others, stop the
 * fork server.  Tests call it to check for leaks. */
void mp__exit_cleanup(void);
/* The child side, common to all start methods: become @p and run it.
 * @parent_pidfd is taken over.  A daemonic child dies with its parent: by
 * PR_SET_PDEATHSIG when @direct_parent (the pid of the process that forked
 * it from its main/only thread) is given, else by a watcher thread on the
 * parent's pidfd.  Never returns. */
_Noreturn void mp__child_run(mp_process *p, pid_t parent_pid, const char *parent_name,
                             int parent_pidfd, pid_t direct_parent);
/* fork() that lets the child keep this process's pidfd as its parent's. */
pid_t mp__fork(void);
/* fork() for the fork server, single-threaded: no atfork handler runs, the
 * child runs the library's child hooks (process.c). */
pid_t mp__fork_lone(void);
_Noreturn void mp__child_exit(int code);
/* Flush stdout and stderr if they hold output (Python flushes just these
 * two around fork and at a child's exit). */
void mp__flush_stdio(void);
/* Exit status (wait status or siginfo) to Python's exitcode. */
int mp__exitcode_from_status(int wstatus);

/* Each start method supplies: */
struct mp__popen_ops {
    const char *method;
    int (*start)(mp_process *p);                        /* sets pid, pidfd */
    int (*wait)(mp_process *p, const mp__deadline *d);  /* 0 ended (exitcode set), MP_ETIMEDOUT */
};
extern const mp__popen_ops mp__popen_fork, mp__popen_spawn, mp__popen_forkserver;
/* Wait on a direct child's pidfd and reap it (fork and spawn). */
int mp__popen_wait_pidfd(mp_process *p, const mp__deadline *d);

/* ---- context.c ---------------------------------------------------------- */

struct mp__pool_backend; /* pool_layout.h */
struct mp_context {
    const char *method;
    const mp__popen_ops *ops;
    /* NULL: a pool on this context runs worker processes here.  Set by
     * another library (libmultiproc-mpi) whose pool workers are elsewhere:
     * the pool starts its workers through it (pool_layout.h). */
    const struct mp__pool_backend *pool;
};
/* The context a process started with NULL uses (fixes the default). */
mp_context *mp__default_context(void);
/* In a child: adopt the parent's choice ("" for none). */
void mp__context_inherit(const char *method);
/* In a fork child: the default becomes "fork" (takes no lock). */
void mp__context_forked(void);

/* ---- spawn.c: preparation data and the child's bootstrap ---------------- */

enum { MP__ROLE_PROCESS = 1, MP__ROLE_FORKSERVER = 2, MP__ROLE_TRACKER = 3 };
/* Encode what a spawned/forkserver child needs to become @p. */
int mp__prep_encode(const mp_process *p, mp_buf *out, mp__fdvec *fds);
/* A decoded PROCESS prep body.  Strings point into the reader's memory. */
typedef struct mp__prep {
    mp_process proc;           /* name, ident, daemon, authkey, target, args */
    pid_t parent_pid, direct_parent;
    const char *parent_name, *method;
    int log_level;
    int parent_pidfd;          /* taken from the message's fds */
    int tracker_fd;            /* the resource tracker's socket, -1: none */
} mp__prep;
/* Decode; on failure a one-line reason in @why and nothing left open. */
int mp__prep_decode(mp__reader *r, int *fds, size_t nfds, mp__prep *out, char *why,
                    size_t whylen);
void mp__prep_clear(mp__prep *prep);
/* Write a prep message (role + body + fds) on a stream socket. */
int mp__prep_send(int sock, uint32_t role, const mp_buf *body, const mp__fdvec *fds);
/* A prep message received: its header's role and body length, the
 * descriptors that came with it, and the body once read (malloc'd). */
typedef struct mp__prepmsg {
    uint32_t role;
    uint64_t len;
    int fds[MP__MAX_FDS];
    size_t nfds;
    void *body;                /* NULL: still to be read */
    int err;                   /* < 0: receiving failed, for the reason @why */
    const char *why;
} mp__prepmsg;
/* Receive a prep message's header and descriptors from @sock, and its body
 * when it has at most @body_max bytes.  0, or the error (also in m->err). */
int mp__prep_recv(int sock, mp__prepmsg *m, size_t body_max);
void mp__prepmsg_clear(mp__prepmsg *m);
/* Run the prep message on @sock: never returns.  @m: what was received of
 * it already (a fork server's child), or NULL.  @direct_parent as for
 * mp__child_run (0: take the parent's word for it). */
_Noreturn void mp__bootstrap(int sock, pid_t direct_parent, mp__prepmsg *m);
/* The bootstrap's parsers, exposed for the fuzz targets.  The prep header
 * (MP__PREP_HDR_SIZE bytes) with @nfds descriptors received: 0 and its
 * role and body length, or MP_EBADMSG.  The environment marker's value:
 * the descriptor it names, or -1 when it names none we may use. */
#define MP__PREP_HDR_SIZE 20
int mp__prep_header_decode(const uint8_t *hdr, size_t nfds, uint32_t *role, uint64_t *len);
int mp__spawn_marker_fd(const char *value);
/* Start a fresh execution of this program reading its prep from a channel.
 * *sock gets our end of the channel; returns 0 and *pid, *pidfd. */
int mp__spawn_exec(int *sock, pid_t *pid, int *pidfd);
/* The same, the new process in a session (and process group) of its own. */
int mp__spawn_exec_setsid(int *sock, pid_t *pid, int *pidfd);

/* ---- forkserver.c ------------------------------------------------------- */

/* The server, in a spawned process: body of a FORKSERVER prep message. */
_Noreturn void mp__forkserver_main(mp__reader *r, int *fds, size_t nfds);
#define MP__FORKSERVER_TOKEN 32
/* The server's parsers, exposed for the fuzz targets.  Its prep body: 0
 * and the token and the indexes of the owner's pidfd and of the control
 * socket among @nfds descriptors, or MP_EBADMSG.  One request on @ctl: 0
 * and *chan (the child's channel, ours to close) when it carries @token
 * and one descriptor; MP_EOF when the owner has closed the socket (the
 * server exits); MP_EPERM for anything else (refused, nothing kept). */
int mp__forkserver_body_decode(mp__reader *r, size_t nfds, const uint8_t **token,
                               uint32_t *owner_i, uint32_t *ctl_i);
int mp__forkserver_recv_request(int ctl, const uint8_t *token, int *chan);
void mp__forkserver_stop(void);

/* ---- resource_tracker.c -------------------------------------------------- */

/* Names keep their leading slash ("/psm_1234abcd").  Register and
 * creating start the tracker when this process has none. */
int mp__tracker_register(const char *name);
/* A tracked segment is made under the temporary name @tmp, then linked to
 * @name and registered: announced by creating before, closed by created
 * after (shared_memory.c). */
int mp__tracker_creating(const char *tmp, const char *name);
int mp__tracker_created(const char *tmp);
/* Where shm_open's names live (glibc and musl). */
#define MP__SHM_DIR "/dev/shm"
/* A no-op (0) when this process has no tracker. */
int mp__tracker_unregister(const char *name);
/* This process's end of the tracker's socket, for a spawned child; -1: none. */
int mp__tracker_fd(void);
/* In a spawned child: take over the end its prep message carried. */
void mp__tracker_adopt(int fd);
/* Close this process's end; the process that started the tracker waits
 * (a bounded time) for it to clean up and exit.  Part of mp__exit_cleanup. */
void mp__tracker_stop(void);
/* The tracker this process started and still waits for at exit; 0: none. */
pid_t mp__tracker_pid(void);
/* The tracker, in a spawned process: body of a TRACKER prep message. */
_Noreturn void mp__tracker_main(mp__reader *r, int *fds, size_t nfds);
/* The tracker's command parser and its sets of names, exposed for the
 * fuzz targets.  mp__tracker_handle takes one message (@len bytes in @msg,
 * which it may modify) as the tracker does, into @g (registered names) and
 * @creating (creations under way: "tmp" then "final" in one entry): 0 when
 * it was a command (REGISTER, UNREGISTER, CREATING, CREATED, PROBE),
 * MP_EBADMSG when malformed (ignored).  mp__tracker_registry_free forgets
 * the names without unlinking them. */
typedef struct mp__tracker_registry mp__tracker_registry;
mp__tracker_registry *mp__tracker_registry_new(void);
int mp__tracker_handle(mp__tracker_registry *g, mp__tracker_registry *creating, char *msg,
                       size_t len);
size_t mp__tracker_registry_each(const mp__tracker_registry *g,
                                 void (*fn)(const char *name, void *arg), void *arg);
void mp__tracker_registry_free(mp__tracker_registry *g);

#endif
