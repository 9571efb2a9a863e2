/*
 * Connections: Python's multiprocessing.connection, wire-compatible.
 *
 * Framing (PYTHON-SEMANTICS 20.1): a message is a signed 32-bit big-endian
 * length and the bytes; a length above INT32_MAX goes as -1 and an unsigned
 * 64-bit length.  The long form is accepted for any size; any other
 * negative length is refused (Python reads it as an empty message).
 *
 * One end is a descriptor: a stream socket (socketpair, unix or TCP) or one
 * end of a pipe.  Sockets are written with MSG_NOSIGNAL; a pipe write holds
 * SIGPIPE blocked and swallows the one it caused, so a gone peer is MP_EPIPE
 * and never kills the program.  Typed messages (mp_conn_send) are the
 * reduction layer's wire form in one frame, their descriptors riding on the
 * frame's first bytes (SCM_RIGHTS).
 *
 * The handshake (20.4, 20.5) follows Python's order: the listener challenges
 * first, then answers the client's challenge.  Its reads wait on poll with
 * what is left of one deadline for the whole handshake (a listener's
 * accept timeout), never on per-read socket timeouts, which a peer sending
 * a byte at a time would renew forever.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

struct mp_conn {
    int fd;
    bool readable, writable;
    bool sock;        /* a socket: send() with MSG_NOSIGNAL */
    bool unix_sock;   /* an AF_UNIX socket: descriptors may travel */
    mp_buf sbuf;      /* encoding of typed messages, reused */
    mp_buf rbuf;      /* typed messages received, reused */
    size_t maxlen;    /* the cap for maxlength 0; 0: MP_CONN_MAXLEN */
    size_t maxsend;   /* the largest message sent; 0: no cap */
    /* read-ahead (internal connections only, see mp__conn_buffered) */
    char *ra;
    size_t ra_off, ra_len;
};

#define RA_CAP ((size_t)64 << 10)

/* ---- ends ----------------------------------------------------------------- */

static int conn_wrap(mp_conn **out, int fd, bool readable, bool writable)
{
    mp_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return MP_ENOMEM;
    c->fd = fd;
    c->readable = readable;
    c->writable = writable;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
        c->sock = true;
        int dom = 0;
        socklen_t len = sizeof dom;
        c->unix_sock = getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) == 0 && dom == AF_UNIX;
    }
    *out = c;
    return 0;
}

int mp_conn_from_fd(mp_conn **out, int fd, bool readable, bool writable)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    if (fd < 0 || (!readable && !writable))
        return MP_EBADF;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return MP_EBADF;
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    return conn_wrap(out, fd, readable, writable);
}

int mp_pipe(mp_conn **a, mp_conn **b, bool duplex)
{
    if (a == NULL || b == NULL)
        return MP_EINVAL;
    *a = *b = NULL;
    int fds[2];
    int err = duplex ? mp__sys_socketpair(SOCK_STREAM, fds) : mp__sys_pipe(fds);
    if (err < 0)
        return err;
    err = conn_wrap(a, fds[0], true, duplex);
    if (err == 0)
        err = conn_wrap(b, fds[1], duplex, true);
    if (err < 0) {
        mp_conn_close(*a);
        if (*b == NULL)
            mp__sys_close(fds[1]);
        *a = NULL;
        return err;
    }
    return 0;
}

int mp_conn_fileno(const mp_conn *c)
{
    return c ? c->fd : MP_EINVAL;
}

bool mp_conn_readable(const mp_conn *c)
{
    return c && c->readable;
}

bool mp_conn_writable(const mp_conn *c)
{
    return c && c->writable;
}

int mp_conn_close(mp_conn *c)
{
    if (c == NULL)
        return 0;
    mp__sys_close(c->fd);
    mp_buf_free(&c->sbuf);
    mp_buf_free(&c->rbuf);
    free(c->ra);
    free(c);
    return 0;
}

/* ---- writing ---------------------------------------------------------------- */

/* Write all of @iov (modified), descriptors on the first bytes. */
static int write_iov(mp_conn *c, struct iovec *iov, int iovcnt, const int *fds, size_t nfds)
{
    mp__fdbuf u;
    sigset_t pipeset, old;
    bool masked = false;
    if (!c->sock) {
        sigemptyset(&pipeset);
        sigaddset(&pipeset, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipeset, &old);
        masked = true;
    }
    int err = 0;
    while (iovcnt > 0) {
        ssize_t w;
        if (c->sock) {
            struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
            mp__sys_pack_fds(&msg, &u, fds, nfds);
            w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        } else {
            w = writev(c->fd, iov, iovcnt);
        }
        if (w < 0) {
            if (errno == EINTR)
                continue;
            err = -errno;
            break;
        }
        nfds = 0; /* sent with the first bytes */
        size_t n = (size_t)w;
        while (iovcnt > 0 && n >= iov->iov_len) {
            n -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= n;
        }
    }
    if (masked) {
        if (err == -EPIPE && !sigismember(&old, SIGPIPE)) {
            /* take the SIGPIPE this write raised before unblocking */
            static const struct timespec zero = {0, 0};
            while (sigtimedwait(&pipeset, NULL, &zero) < 0 && errno == EINTR)
                ;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    return err;
}

/* Fill @hdr with the frame header for @n bytes; return its length. */
static size_t frame_header(uint8_t hdr[12], uint64_t n)
{
    if (n <= INT32_MAX) {
        uint32_t be = htonl((uint32_t)n);
        memcpy(hdr, &be, 4);
        return 4;
    }
    memset(hdr, 0xff, 4);
    for (int i = 0; i < 8; i++)
        hdr[4 + i] = (uint8_t)(n >> (56 - 8 * i));
    return 12;
}

static int send_frame(mp_conn *c, const void *buf, size_t len, const int *fds, size_t nfds)
{
    if (c == NULL || (buf == NULL && len > 0))
        return MP_EINVAL;
    if (!c->writable)
        return MP_EBADF;
    if (c->maxsend > 0 && len > c->maxsend)
        return MP_EMSGSIZE; /* nothing sent: the stream stays usable */
    uint8_t hdr[12];
    struct iovec iov[2] = {{hdr, frame_header(hdr, len)}, {(void *)buf, len}};
    return write_iov(c, iov, len > 0 ? 2 : 1, fds, nfds);
}

int mp_conn_send_bytes(mp_conn *c, const void *buf, size_t len)
{
    return send_frame(c, buf, len, NULL, 0);
}

/* ---- reading ---------------------------------------------------------------- */

/* Received descriptors of one typed message. */
typedef struct fdin {
    int fds[MP__MAX_FDS];
    size_t n;
} fdin;

/* Read exactly @n bytes.  MP_EOF only when @first and nothing was read. */
/* Buffered reading: one read takes a header and its body (and whatever
 * follows).  0, MP_EOF before any byte, MP_ETRUNCATED after. */
static int read_buffered(mp_conn *c, char *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        if (c->ra_off < c->ra_len) {
            size_t k = c->ra_len - c->ra_off < n - got ? c->ra_len - c->ra_off : n - got;
            memcpy(p + got, c->ra + c->ra_off, k);
            c->ra_off += k;
            got += k;
            continue;
        }
        if (n - got >= RA_CAP) { /* large: straight into place */
            int err = mp__sys_read_all(c->fd, p + got, n - got);
            return err == MP_EOF && got > 0 ? MP_ETRUNCATED : err;
        }
        ssize_t r = read(c->fd, c->ra, RA_CAP);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return got == 0 ? MP_EOF : MP_ETRUNCATED;
        c->ra_off = 0;
        c->ra_len = (size_t)r;
    }
    return 0;
}

void mp__conn_set_limits(mp_conn *c, size_t maxrecv, size_t maxsend)
{
    c->maxlen = maxrecv;
    c->maxsend = maxsend;
}

int mp__conn_buffered(mp_conn *c)
{
    if (c->ra == NULL && (c->ra = malloc(RA_CAP)) == NULL)
        return MP_ENOMEM;
    return 0;
}

static int read_exact(mp_conn *c, void *p, size_t n, bool first, fdin *f)
{
    int err;
    if (c->ra != NULL) {
        err = read_buffered(c, p, n);
    } else if (f != NULL && c->unix_sock) {
        size_t k = 0;
        err = mp__sys_recv_fds(c->fd, p, n, f->fds + f->n, MP__MAX_FDS - f->n, &k);
        f->n += k;
    } else {
        err = mp__sys_read_all(c->fd, p, n);
    }
    if (err == MP_EOF && !first)
        err = MP_ETRUNCATED;
    return err;
}

static int hs_read(mp_conn *c, void *p, size_t n, bool first, const mp__deadline *d);

/* A frame header's length: 4 bytes big-endian, or -1 and then 8 bytes.
 * Read by hs_read when a handshake's deadline @d is given, else by
 * read_exact with @f.  1 (and no size) for any other negative length. */
static inline int frame_len(mp_conn *c, fdin *f, const mp__deadline *d, uint64_t *size)
{
    uint8_t h[8];
    int err = d != NULL ? hs_read(c, h, 4, true, d) : read_exact(c, h, 4, true, f);
    if (err < 0)
        return err;
    int32_t n = (int32_t)((uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3]);
    if (n >= 0) {
        *size = (uint64_t)n;
        return 0;
    }
    if (n != -1)
        return 1;
    err = d != NULL ? hs_read(c, h, 8, false, d) : read_exact(c, h, 8, false, f);
    if (err < 0)
        return err;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | h[i];
    *size = v;
    return 0;
}

/* Read a frame header: the body's length.  A refused length makes the end
 * unreadable (the stream is no longer at a message boundary). */
static int read_header(mp_conn *c, uint64_t *size, uint64_t maxlength, fdin *f)
{
    if (c == NULL || size == NULL)
        return MP_EINVAL;
    if (!c->readable)
        return MP_EBADF;
    int err = frame_len(c, f, NULL, size);
    if (err < 0)
        return err;
    if (err > 0 || *size > maxlength)
        c->readable = false;
    return err > 0 ? MP_EBADMSG : *size > maxlength ? MP_EMSGSIZE : 0;
}

static int recv_frame(mp_conn *c, mp_buf *out, size_t maxlength, fdin *f)
{
    if (out == NULL)
        return MP_EINVAL;
    if (maxlength == 0)
        maxlength = c != NULL && c->maxlen > 0 ? c->maxlen : MP_CONN_MAXLEN;
    uint64_t size;
    int err = read_header(c, &size, maxlength, f);
    if (err < 0)
        return err;
    /* The buffer grows with what has arrived, not with what the header
     * claims: a lying peer costs at most twice what it really sent. */
    out->len = 0;
    size_t got = 0;
    while (got < size) {
        size_t want = got < (size_t)1 << 20 ? (size_t)1 << 20 : got * 2;
        if (want > size)
            want = (size_t)size;
        err = mp_buf_reserve(out, want);
        if (err < 0) {
            c->readable = false; /* the rest of the body stays unread */
            return err;
        }
        err = read_exact(c, (char *)out->data + got, want - got, false, NULL);
        if (err < 0)
            return err;
        got = want;
    }
    out->len = (size_t)size;
    return 0;
}

int mp_conn_recv_bytes(mp_conn *c, mp_buf *out, size_t maxlength)
{
    return recv_frame(c, out, maxlength, NULL);
}

int mp_conn_recv_bytes_into(mp_conn *c, void *buf, size_t cap, size_t *len)
{
    if (len == NULL || (buf == NULL && cap > 0))
        return MP_EINVAL;
    uint64_t size;
    /* no cap: nothing is allocated, a long message is drained and dropped */
    int err = read_header(c, &size, UINT64_MAX, NULL);
    if (err < 0)
        return err;
    *len = size > SIZE_MAX ? SIZE_MAX : (size_t)size;
    size_t first = size <= cap ? (size_t)size : cap;
    if (first > 0 && (err = read_exact(c, buf, first, false, NULL)) < 0)
        return err;
    /* too long: consume the rest and drop it (Python: BufferTooShort) */
    uint64_t rest = size - first;
    char sink[16384];
    while (rest > 0) {
        size_t k = rest < sizeof sink ? (size_t)rest : sizeof sink;
        if ((err = read_exact(c, sink, k, false, NULL)) < 0)
            return err;
        rest -= k;
    }
    return size > cap ? MP_EMSGSIZE : 0;
}

int mp_conn_poll(mp_conn *c, double timeout)
{
    if (c == NULL)
        return MP_EINVAL;
    if (!c->readable)
        return MP_EBADF;
    if (c->ra_off < c->ra_len)
        return 1; /* read ahead already */
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    return mp__sys_poll1(c->fd, POLLIN, &d);
}

/* ---- typed messages -------------------------------------------------------- */

int mp_conn_send(mp_conn *c, const mp_args *msg)
{
    if (c == NULL || msg == NULL)
        return MP_EINVAL;
    if (!c->writable)
        return MP_EBADF;
    mp__fdvec fds;
    fds.n = 0;
    c->sbuf.len = 0;
    int err = mp__args_encode(msg, &c->sbuf, &fds, MP__WIRE_PEER);
    if (err < 0)
        return err;
    if (fds.n > 0 && !c->unix_sock)
        return MP_EINVAL; /* descriptors travel over unix sockets only */
    return send_frame(c, c->sbuf.data, c->sbuf.len, fds.fds, fds.n);
}

int mp_conn_recv(mp_conn *c, mp_args **msg)
{
    return mp__conn_recv(c, msg, MP__WIRE_PEER);
}

int mp__conn_recv(mp_conn *c, mp_args **msg, mp__channel ch)
{
    if (msg == NULL)
        return MP_EINVAL;
    *msg = NULL;
    if (c == NULL)
        return MP_EINVAL;
    fdin f;
    f.n = 0;
    int err = recv_frame(c, &c->rbuf, 0, &f);
    if (err == 0) {
        mp__reader r;
        mp__reader_init(&r, c->rbuf.data, c->rbuf.len);
        err = mp__args_decode(&r, f.fds, f.n, ch, msg);
        if (err == 0 && r.off != r.len) {
            mp_args_free(*msg);
            *msg = NULL;
            err = MP_EBADMSG;
        }
    }
    for (size_t i = 0; i < f.n; i++) /* what the message did not take */
        mp__sys_close(f.fds[i]);
    if (c->rbuf.cap > (size_t)1 << 20) /* keep small buffers only */
        mp_buf_free(&c->rbuf);
    return err;
}

/* A connection in mp_args: direction flags and its descriptor. */
static int conn_reduce(void *obj, mp_buf *out, mp__fdvec *fds, mp__channel ch)
{
    mp_conn *c = obj;
    int k = mp__fdvec_add(fds, c->fd);
    if (k < 0)
        return k;
    int err = mp__put_u8(out, (uint8_t)(c->readable | c->writable << 1));
    return err < 0 ? err : mp__put_u32(out, (uint32_t)k);
}

static int conn_rebuild(mp__reader *r, int *fds, size_t nfds, mp__channel ch, void **obj)
{
    uint8_t fl = mp__get_u8(r);
    uint32_t k = mp__get_u32(r);
    if (r->err || k >= nfds || fds[k] < 0 || (fl & 3) == 0 || fl > 3)
        return MP_EBADMSG;
    mp_conn *c;
    int err = conn_wrap(&c, fds[k], fl & 1, fl & 2);
    if (err < 0)
        return err;
    fds[k] = -1;
    *obj = c;
    return 0;
}

static int conn_dup(void *obj, void **out)
{
    mp_conn *c = obj, *d;
    int fd = mp__sys_dup(c->fd);
    if (fd < 0)
        return fd;
    int err = conn_wrap(&d, fd, c->readable, c->writable);
    if (err < 0) {
        mp__sys_close(fd);
        return err;
    }
    *out = d;
    return 0;
}

MP__KIND(mp_conn, mp__conn_objtype, mp_args_add_conn, mp_args_conn,
         "connection", 'P', MP__TAG_CONN,
         conn_reduce, conn_rebuild, conn_dup, mp_conn_close);

/* ---- the authkey handshake ------------------------------------------------- */

#define HS_MAX 256
#define CHALLENGE "#CHALLENGE#"
#define WELCOME "#WELCOME#"
#define FAILURE "#FAILURE#"
#define CHALLENGE_LEN (sizeof CHALLENGE - 1)
#define NONCE_LEN 40   /* Python 3.12+'s MESSAGE_LENGTH */
#define LEGACY_NONCE 20
#define MD5_LEN 16

static const EVP_MD *digest_by_name(const char *name, size_t n)
{
    static const struct {
        const char *name;
        const EVP_MD *(*md)(void);
    } known[] = {
        {"md5", EVP_md5},           {"sha256", EVP_sha256},     {"sha384", EVP_sha384},
        {"sha3_256", EVP_sha3_256}, {"sha3_384", EVP_sha3_384},
    };
    for (size_t i = 0; i < MP__ARRAY_LEN(known); i++)
        if (strlen(known[i].name) == n && memcmp(known[i].name, name, n) == 0)
            return known[i].md();
    return NULL;
}

/* HMAC of @msg under @key; returns the MAC's length, 0 on failure. */
static unsigned hmac(const EVP_MD *md, const void *key, size_t keylen, const void *msg, size_t n,
                     uint8_t out[EVP_MAX_MD_SIZE])
{
    unsigned len = 0;
    if (HMAC(md, key, (int)keylen, msg, n, out, &len) == NULL)
        return 0;
    return len;
}

/* A "{name}" prefix of @m: the digest, and in *plen the prefix's length.
 * As Python: the '}' is looked for among bytes 1..9. */
static const EVP_MD *digest_prefix(const uint8_t *m, size_t n, size_t *plen)
{
    if (n < 2 || m[0] != '{')
        return NULL;
    for (size_t i = 1; i < n && i < 10; i++) {
        if (m[i] == '}') {
            *plen = i + 1;
            return digest_by_name((const char *)m + 1, i - 1);
        }
    }
    return NULL;
}

/* Read exactly @n handshake bytes by @d: each read waits on poll with what
 * is left of the one deadline, so a peer trickling a byte at a time cannot
 * stretch the handshake (a per-read socket timeout would restart on every
 * byte).  MP_EOF only when @first and nothing was read; MP_ETIMEDOUT. */
static int hs_read(mp_conn *c, void *p, size_t n, bool first, const mp__deadline *d)
{
    size_t got = 0;
    while (got < n) {
        if (c->ra_off < c->ra_len) { /* read ahead already */
            size_t k = c->ra_len - c->ra_off < n - got ? c->ra_len - c->ra_off : n - got;
            memcpy((char *)p + got, c->ra + c->ra_off, k);
            c->ra_off += k;
            got += k;
            continue;
        }
        int r = mp__sys_poll1(c->fd, POLLIN, d);
        if (r < 0)
            return r;
        if (r == 0)
            return MP_ETIMEDOUT;
        ssize_t k = read(c->fd, (char *)p + got, n - got);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return first && got == 0 ? MP_EOF : MP_ETRUNCATED;
        got += (size_t)k;
    }
    return 0;
}

/* One handshake message, at most HS_MAX bytes, by @d.  The frame header
 * as read_header takes it (the long form too); a length that is negative
 * or above HS_MAX is not a handshake message. */
static int hs_recv(mp_conn *c, uint8_t *buf, size_t *len, const mp__deadline *d)
{
    if (!c->readable)
        return MP_EBADF;
    uint64_t size;
    int err = frame_len(c, NULL, d, &size);
    if (err < 0)
        return err;
    if (err > 0 || size > HS_MAX) {
        c->readable = false; /* no longer at a message boundary */
        return MP_EAUTH;
    }
    *len = (size_t)size;
    return size > 0 ? hs_read(c, buf, (size_t)size, false, d) : 0;
}

static int auth_deliver(mp_conn *c, const void *key, size_t keylen, const mp__deadline *d)
{
    /* "#CHALLENGE#" + "{sha256}" + 40 random bytes; the MAC covers all
     * that follows "#CHALLENGE#" */
    uint8_t out[CHALLENGE_LEN + 8 + NONCE_LEN];
    memcpy(out, CHALLENGE "{sha256}", CHALLENGE_LEN + 8);
    if (getrandom(out + CHALLENGE_LEN + 8, NONCE_LEN, 0) != NONCE_LEN)
        return -errno;
    int err = mp_conn_send_bytes(c, out, sizeof out);
    if (err < 0)
        return err;
    const uint8_t *m = out + CHALLENGE_LEN;
    size_t mlen = sizeof out - CHALLENGE_LEN;

    uint8_t resp[HS_MAX];
    size_t rlen = 0;
    err = hs_recv(c, resp, &rlen, d);
    if (err < 0 && err != MP_EAUTH)
        return err;
    bool ok = false;
    if (err == 0) {
        const EVP_MD *md = NULL;
        size_t plen = 0;
        if (rlen == MD5_LEN || rlen == LEGACY_NONCE) /* a 3.11 peer: raw HMAC-MD5 */
            md = EVP_md5();
        else
            md = digest_prefix(resp, rlen, &plen);
        uint8_t want[EVP_MAX_MD_SIZE];
        unsigned wlen = md ? hmac(md, key, keylen, m, mlen, want) : 0;
        ok = wlen > 0 && rlen - plen == wlen && CRYPTO_memcmp(want, resp + plen, wlen) == 0;
    }
    int serr = ok ? mp_conn_send_bytes(c, WELCOME, sizeof WELCOME - 1)
                  : mp_conn_send_bytes(c, FAILURE, sizeof FAILURE - 1);
    if (!ok) {
        mp__log(MP_LOG_INFO, "authentication: the digest received was wrong");
        return MP_EAUTH;
    }
    return serr;
}

static int auth_answer(mp_conn *c, const void *key, size_t keylen, const mp__deadline *d)
{
    uint8_t in[HS_MAX];
    size_t n = 0;
    int err = hs_recv(c, in, &n, d);
    if (err < 0)
        return err;
    /* As Python 3.12+: what follows "#CHALLENGE#" is at least 20 bytes
     * ("challenge too short"); a 16-byte one is refused too, though 3.12's
     * length table would otherwise read it as legacy. */
    if (n < CHALLENGE_LEN || memcmp(in, CHALLENGE, CHALLENGE_LEN) != 0)
        return MP_EAUTH; /* not a challenge */
    const uint8_t *m = in + CHALLENGE_LEN;
    size_t mlen = n - CHALLENGE_LEN;
    if (mlen < LEGACY_NONCE) {
        mp__log(MP_LOG_INFO, "authentication: challenge too short: %zu bytes", mlen);
        return MP_EAUTH;
    }
    uint8_t reply[2 + 8 + EVP_MAX_MD_SIZE];
    size_t rlen = 0;
    uint8_t mac[EVP_MAX_MD_SIZE];
    if (mlen == LEGACY_NONCE) {
        /* a 3.11 challenger: raw HMAC-MD5 */
        unsigned k = hmac(EVP_md5(), key, keylen, m, mlen, mac);
        if (k == 0)
            return MP_EAUTH;
        memcpy(reply, mac, k);
        rlen = k;
    } else {
        size_t plen = 0;
        const EVP_MD *md = digest_prefix(m, mlen, &plen);
        unsigned k = md ? hmac(md, key, keylen, m, mlen, mac) : 0;
        if (k == 0)
            return MP_EAUTH;
        memcpy(reply, m, plen); /* "{name}" */
        memcpy(reply + plen, mac, k);
        rlen = plen + k;
    }
    err = mp_conn_send_bytes(c, reply, rlen);
    if (err < 0)
        return err;
    err = hs_recv(c, in, &n, d);
    if (err < 0)
        return err;
    if (n != sizeof WELCOME - 1 || memcmp(in, WELCOME, n) != 0) {
        mp__log(MP_LOG_INFO, "authentication: the digest sent was rejected");
        return MP_EAUTH;
    }
    return 0;
}

int mp__auth_deliver(mp_conn *c, const void *key, size_t keylen)
{
    mp__deadline d;
    mp__deadline_init(&d, MP_FOREVER);
    return auth_deliver(c, key, keylen, &d);
}

int mp__auth_answer(mp_conn *c, const void *key, size_t keylen)
{
    mp__deadline d;
    mp__deadline_init(&d, MP_FOREVER);
    return auth_answer(c, key, keylen, &d);
}

/* Both directions by @d, in Python's order for the side: a listener
 * challenges first, a client answers first.  A peer that hangs up inside it
 * gives @hangup (MP_EAUTH: it failed it; a manager's client says
 * MP_ECLOSED: its server has gone); a deadline that passes is
 * MP_ETIMEDOUT.  The writes are not timed: a handshake writes under 200
 * bytes into a socket that has carried nothing else, which its send buffer
 * always takes at once. */
static int handshake(mp_conn *c, const void *key, size_t keylen, bool listener,
                     const mp__deadline *d, int hangup)
{
    int err = listener ? auth_deliver(c, key, keylen, d) : auth_answer(c, key, keylen, d);
    if (err == 0)
        err = listener ? auth_answer(c, key, keylen, d) : auth_deliver(c, key, keylen, d);
    if (err == MP_EOF || err == MP_ETRUNCATED || err == -EPIPE || err == -ECONNRESET)
        err = hangup;
    return err;
}

/* ---- addresses ------------------------------------------------------------- */

typedef struct addr {
    struct sockaddr_storage ss;
    socklen_t len;
    int family;
    bool abstract;
} addr;

/* Parse "unix:/path", "unix:@name", "/path", "tcp:HOST:PORT", "HOST:PORT". */
static int addr_parse(const char *s, addr *a)
{
    memset(a, 0, sizeof *a);
    bool is_unix;
    if (strncmp(s, "unix:", 5) == 0) {
        s += 5;
        is_unix = true;
    } else if (strncmp(s, "tcp:", 4) == 0) {
        s += 4;
        is_unix = false;
    } else {
        is_unix = s[0] == '/' || s[0] == '.' || s[0] == '@' || strchr(s, ':') == NULL;
    }
    if (is_unix) {
        struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
        size_t n = strlen(s);
        if (n == 0 || n >= sizeof un->sun_path)
            return n == 0 ? MP_EINVAL : -ENAMETOOLONG;
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, s, n);
        a->abstract = s[0] == '@';
        if (a->abstract)
            un->sun_path[0] = '\0';
        /* an abstract name is exactly its bytes; a path is NUL-terminated */
        a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + !a->abstract);
        a->family = AF_UNIX;
        return 0;
    }
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon[1] == '\0')
        return MP_EINVAL;
    char host[256];
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof host)
        return MP_EINVAL;
    memcpy(host, s, hl);
    host[hl] = '\0';
    char *h = host;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        h = host + 1;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535)
        return MP_EINVAL;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | (h[0] ? 0 : AI_PASSIVE)};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(h[0] ? h : NULL, colon + 1, &hints, &res);
    if (gai != 0 || res == NULL) {
        if (res)
            freeaddrinfo(res);
        return gai == EAI_SYSTEM ? -errno : MP_ENOENT;
    }
    memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
    a->len = res->ai_addrlen;
    a->family = res->ai_family;
    freeaddrinfo(res);
    return 0;
}

/* The canonical text of a bound or peer address. */
static void addr_format(const addr *a, char *out, size_t cap)
{
    if (a->family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&a->ss;
        size_t n = a->len - offsetof(struct sockaddr_un, sun_path);
        if (a->abstract)
            snprintf(out, cap, "unix:@%.*s", (int)(n - 1), un->sun_path + 1);
        else
            snprintf(out, cap, "unix:%s", un->sun_path);
        return;
    }
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (a->family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(out, cap, "tcp:%s:%d", host, port);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(out, cap, "tcp:[%s]:%d", host, port);
    }
}

static int new_socket(int family)
{
    return mp__sys_socket(family, SOCK_STREAM);
}

static int check_key(const void *key, size_t keylen)
{
    return key != NULL && keylen == 0 ? MP_EINVAL : 0;
}

/* ---- listener and client --------------------------------------------------- */

struct mp_listener {
    int fd;
    addr a;
    char address[160];
    char dir[128];        /* the private directory we made, or "" */
    uint8_t *key;
    size_t keylen;
    bool has_key;
};

int mp_listener_new(mp_listener **out, const char *address, const void *authkey, size_t keylen,
                    int backlog)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    int err = check_key(authkey, keylen);
    if (err < 0)
        return err;
    mp_listener *l = calloc(1, sizeof *l);
    if (l == NULL)
        return MP_ENOMEM;
    l->fd = -1;
    if (authkey != NULL) {
        l->key = malloc(keylen);
        if (l->key == NULL) {
            free(l);
            return MP_ENOMEM;
        }
        memcpy(l->key, authkey, keylen);
        l->keylen = keylen;
        l->has_key = true;
    }
    char path[256];
    if (address == NULL) {
        /* Python: <tmp>/pymp-XXXX/listener-XXXXXXXX */
        const char *tmp = getenv("TMPDIR");
        if (tmp == NULL || tmp[0] == '\0' || strlen(tmp) > 60)
            tmp = "/tmp";
        snprintf(l->dir, sizeof l->dir, "%s/mp-XXXXXX", tmp);
        if (mkdtemp(l->dir) == NULL) {
            err = -errno;
            l->dir[0] = '\0';
            goto fail;
        }
        uint32_t r;
        if (getrandom(&r, sizeof r, 0) != sizeof r)
            r = (uint32_t)getpid();
        snprintf(path, sizeof path, "unix:%s/listener-%08x", l->dir, r);
        address = path;
    }
    err = addr_parse(address, &l->a);
    if (err < 0)
        goto fail;
    l->fd = new_socket(l->a.family);
    if (l->fd < 0) {
        err = l->fd;
        goto fail;
    }
    if (l->a.family != AF_UNIX) {
        int one = 1;
        setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (bind(l->fd, (struct sockaddr *)&l->a.ss, l->a.len) < 0 ||
        listen(l->fd, backlog > 0 ? backlog : 16) < 0) {
        err = -errno;
        /* a path we did not create stays */
        mp__sys_close(l->fd);
        l->fd = -1;
        goto fail;
    }
    if (l->a.family != AF_UNIX) {
        socklen_t len = sizeof l->a.ss;
        getsockname(l->fd, (struct sockaddr *)&l->a.ss, &len);
        l->a.len = len;
    }
    addr_format(&l->a, l->address, sizeof l->address);
    *out = l;
    return 0;
fail:
    if (l->dir[0])
        rmdir(l->dir);
    free(l->key);
    free(l);
    return err;
}

const char *mp_listener_address(const mp_listener *l)
{
    return l ? l->address : NULL;
}

int mp_listener_fileno(const mp_listener *l)
{
    return l ? l->fd : MP_EINVAL;
}

static void set_nodelay(int fd, const addr *a)
{
    if (a->family == AF_INET || a->family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
}

int mp__listener_accept_raw(mp_listener *l, mp_conn **out, const mp__deadline *d)
{
    *out = NULL;
    if (l == NULL || l->fd < 0)
        return MP_EINVAL;
    int fd;
    for (;;) {
        int r = mp__sys_poll1(l->fd, POLLIN, d);
        if (r < 0)
            return r;
        if (r == 0)
            return MP_ETIMEDOUT;
        fd = mp__sys_accept(l->fd);
        if (fd >= 0)
            break;
        /* a peer that went away before we took it, or a signal: wait again
         * (with a deadline of 0, poll says so at once) */
        if (fd != -EINTR && fd != -ECONNABORTED && fd != -EAGAIN)
            return fd;
    }
    set_nodelay(fd, &l->a);
    int err = conn_wrap(out, fd, true, true);
    if (err < 0)
        mp__sys_close(fd);
    return err;
}

int mp__listener_handshake(mp_listener *l, mp_conn *c, const mp__deadline *d)
{
    if (l == NULL || c == NULL)
        return MP_EINVAL;
    return l->has_key ? handshake(c, l->key, l->keylen, true, d, MP_EAUTH) : 0;
}

void mp__auth_thread_done(void)
{
    OPENSSL_thread_stop();
}

int mp_listener_accept(mp_listener *l, mp_conn **out, double timeout)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    /* One deadline for the accept and the handshake together.  A timeout
     * of 0 takes only a connection already waiting; its handshake, which
     * needs the peer's replies, gets MP__HANDSHAKE_TIMEOUT. */
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    mp_conn *c;
    int err = mp__listener_accept_raw(l, &c, &d);
    if (err < 0)
        return err;
    if (d.zero)
        mp__deadline_init(&d, MP__HANDSHAKE_TIMEOUT);
    err = mp__listener_handshake(l, c, &d);
    if (err < 0) {
        mp_conn_close(c);
        return err;
    }
    *out = c;
    return 0;
}

int mp_listener_close(mp_listener *l)
{
    if (l == NULL)
        return 0;
    mp__sys_close(l->fd);
    if (l->a.family == AF_UNIX && !l->a.abstract)
        unlink(((struct sockaddr_un *)&l->a.ss)->sun_path);
    if (l->dir[0])
        rmdir(l->dir);
    free(l->key);
    free(l);
    return 0;
}

int mp_client(mp_conn **out, const char *address, const void *authkey, size_t keylen)
{
    return mp__client(out, address, authkey, keylen, MP_EAUTH);
}

int mp__client(mp_conn **out, const char *address, const void *authkey, size_t keylen,
               int hangup)
{
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    if (address == NULL)
        return MP_EINVAL;
    int err = check_key(authkey, keylen);
    if (err < 0)
        return err;
    addr a;
    err = addr_parse(address, &a);
    if (err < 0)
        return err;
    int fd = new_socket(a.family);
    if (fd < 0)
        return fd;
    int r;
    do
        r = connect(fd, (struct sockaddr *)&a.ss, a.len);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        err = errno == EINPROGRESS ? -ETIMEDOUT : -errno;
        mp__sys_close(fd);
        return err;
    }
    set_nodelay(fd, &a);
    mp_conn *c;
    err = conn_wrap(&c, fd, true, true);
    if (err < 0) {
        mp__sys_close(fd);
        return err;
    }
    if (authkey != NULL) {
        /* no time limit, as Python's Client */
        mp__deadline d;
        mp__deadline_init(&d, MP_FOREVER);
        err = handshake(c, authkey, keylen, false, &d, hangup);
        if (err < 0) {
            mp_conn_close(c);
            return err;
        }
    }
    *out = c;
    return 0;
}

/* ---- wait ------------------------------------------------------------------ */

int mp_wait(mp_waitable *items, size_t n, double timeout)
{
    if (items == NULL && n > 0)
        return MP_EINVAL;
    struct pollfd stackfds[64];
    struct pollfd *pfd = stackfds;
    if (n > MP__ARRAY_LEN(stackfds)) {
        pfd = calloc(n, sizeof *pfd);
        if (pfd == NULL)
            return MP_ENOMEM;
    }
    int err = 0;
    for (size_t i = 0; i < n && err == 0; i++) {
        items[i].ready = false;
        int fd = -1;
        switch (items[i].kind) {
        case MP_WAIT_CONN:
            fd = items[i].conn ? items[i].conn->fd : -1;
            break;
        case MP_WAIT_PROCESS:
            fd = items[i].process ? mp_process_sentinel(items[i].process) : -1;
            break;
        case MP_WAIT_FD:
            fd = items[i].fd;
            break;
        }
        if (fd < 0)
            err = MP_EINVAL;
        pfd[i] = (struct pollfd){.fd = fd, .events = POLLIN};
    }
    mp__deadline d;
    mp__deadline_init(&d, timeout);
    int ready = 0;
    while (err == 0) {
        int r = poll(pfd, n, mp__deadline_poll_ms(&d));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            err = -errno;
            break;
        }
        if (r == 0) {
            if (mp__deadline_expired(&d))
                break;
            continue; /* woken early by poll's rounding */
        }
        for (size_t i = 0; i < n; i++) {
            if (pfd[i].revents & POLLNVAL) {
                err = MP_EBADF;
                break;
            }
            if (pfd[i].revents) {
                items[i].ready = true;
                ready++;
            }
        }
        break;
    }
    if (pfd != stackfds)
        free(pfd);
    return err < 0 ? err : ready;
}

/* ---- Python values (issue 19) -------------------------------------------- */

/* What Python's Connection.send/recv do: one message holding one pickle
 * (Python 3.8-3.13 write protocol 4 by default, 3.14 protocol 5; we write
 * 4 and read both). */
int mp_conn_send_py(mp_conn *c, const mp_py *v)
{
    mp_buf b = MP_BUF_INIT;
    if (c == NULL || v == NULL)
        return MP_EINVAL;
    int err = mp_py_dumps(v, &b);
    if (err == 0)
        err = mp_conn_send_bytes(c, b.data, b.len);
    mp_buf_free(&b);
    return err;
}

int mp_conn_recv_py(mp_conn *c, unsigned flags, mp_py **out)
{
    mp_buf b = MP_BUF_INIT;
    if (out == NULL)
        return MP_EINVAL;
    *out = NULL;
    if (c == NULL || (flags & ~MP_PY_INERT))
        return MP_EINVAL;
    int err = mp_conn_recv_bytes(c, &b, 0);
    if (err == 0)
        err = mp_py_loads(b.data, b.len, flags, out);
    mp_buf_free(&b);
    return err;
}
