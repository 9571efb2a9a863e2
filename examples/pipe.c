/*
 * pipe.c: Pipe(), from the seed notes' "communication between processes"
 * (进程间通信 / 管道): Pipe() returns a pair of connection objects joined by
 * a pipe, duplex by default; each end can send and receive.  The example
 * of Python's documentation that goes with it:
 *
 *     from multiprocessing import Process, Pipe
 *
 *     def f(conn):
 *         conn.send([42, None, 'hello'])
 *         conn.close()
 *
 *     if __name__ == '__main__':
 *         parent_conn, child_conn = Pipe()
 *         p = Process(target=f, args=(child_conn,))
 *         p.start()
 *         print(parent_conn.recv())   # prints "[42, None, 'hello']"
 *         p.join()
 *
 * In C a message is an mp_args list (ints, doubles, strings, bytes, even
 * descriptors and other connections) sent with mp_conn_send, or plain bytes
 * with mp_conn_send_bytes.  There is no None, so the list here is
 * [42, 3.5, 'hello'].  The part after it shows both directions on one
 * duplex pipe, and a one-way pipe, Pipe(duplex=False), whose end of file
 * (Python: EOFError) tells the parent that the child is done.
 *
 * The seed notes' warning holds in C too: two processes (or threads) must
 * not read from, or write to, the same end at the same moment, or messages
 * get mixed up.  Here each end has one user: the parent keeps one, the
 * child gets the other.
 */
#include <multiproc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                  \
    do {                                                                             \
        int err_ = (call);                                                           \
        if (err_ < 0) {                                                              \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,      \
                    mp_errname(err_), mp_strerror(err_));                            \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

static int failures;

static void expect(bool ok, const char *what)
{
    printf("  %-58s %s\n", what, ok ? "ok" : "FAILED");
    if (!ok)
        failures++;
}

/* def f(conn): conn.send([42, None, 'hello']); conn.close()
 * The connection arrives as argument 0; the argument list owns it (and
 * closes it when the child ends). */
static int f(const mp_args *args)
{
    mp_conn *conn = mp_args_conn(args, 0);
    mp_args *msg;
    CHECK(mp_args_of(&msg, "ids", 42, 3.5, "hello"));
    CHECK(mp_conn_send(conn, msg));
    mp_args_free(msg);
    return 0;
}

/* Both directions on one duplex pipe: answer "ping N" with "pong N" until
 * "bye". */
static int ponger(const mp_args *args)
{
    mp_conn *conn = mp_args_conn(args, 0);
    mp_buf in = MP_BUF_INIT;
    for (;;) {
        CHECK(mp_conn_recv_bytes(conn, &in, 0));
        if (in.len == 3 && memcmp(in.data, "bye", 3) == 0)
            break;
        if (in.len < 5 || memcmp(in.data, "ping ", 5) != 0)
            return 1;
        char out[64];
        int n = snprintf(out, sizeof out, "pong %.*s", (int)(in.len - 5), (char *)in.data + 5);
        CHECK(mp_conn_send_bytes(conn, out, (size_t)n));
    }
    mp_buf_free(&in);
    return 0;
}

/* One way: send the squares of 0..4, then end (the end of file is the
 * "no more" signal). */
static int squares(const mp_args *args)
{
    mp_conn *writer = mp_args_conn(args, 0);
    for (int i = 0; i < 5; i++) {
        mp_args *msg;
        CHECK(mp_args_of(&msg, "i", i * i));
        CHECK(mp_conn_send(writer, msg));
        mp_args_free(msg);
    }
    return 0;
}

/* Start @target with one connection as its argument; the parent then
 * closes its own copy of that end (the child has its own). */
static mp_process *start_with_conn(mp_context *ctx, mp_target_fn target, mp_conn *end)
{
    mp_args *args;
    mp_process *p;
    CHECK(mp_args_new(&args));
    CHECK(mp_args_add_conn(args, end));
    CHECK(mp_process_new(&p, ctx, target, args));
    mp_args_free(args);
    CHECK(mp_process_start(p));
    CHECK(mp_conn_close(end));
    return p;
}

static int join_and_close(mp_process *p)
{
    int code;
    CHECK(mp_process_join(p, MP_FOREVER));
    CHECK(mp_process_exitcode(p, &code));
    CHECK(mp_process_close(p));
    return code;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* Part 1: the documentation's example, under each start method. */
    const char *methods[3];
    size_t nm = mp_get_all_start_methods(methods, 3);
    for (size_t i = 0; i < nm && i < 3; i++) {
        mp_context *ctx = mp_get_context(methods[i]);
        mp_conn *parent_conn, *child_conn;
        CHECK(mp_pipe(&parent_conn, &child_conn, true));      /* Pipe() */
        mp_process *p = start_with_conn(ctx, f, child_conn);
        mp_args *got;
        CHECK(mp_conn_recv(parent_conn, &got));                  /* parent_conn.recv() */
        bool ok = mp_args_count(got) == 3 && mp_args_type(got, 0) == MP_ARG_INT &&
                  mp_args_int(got, 0) == 42 && mp_args_type(got, 1) == MP_ARG_DOUBLE &&
                  mp_args_double(got, 1) == 3.5 && mp_args_type(got, 2) == MP_ARG_STR &&
                  strcmp(mp_args_str(got, 2), "hello") == 0;
        if (ok)
            printf("%-10s parent_conn.recv() = [%lld, %g, '%s']\n", methods[i],
                   (long long)mp_args_int(got, 0), mp_args_double(got, 1), mp_args_str(got, 2));
        mp_args_free(got);
        int code = join_and_close(p);
        expect(ok && code == 0, "the list arrived intact, the child exited with 0");
        CHECK(mp_conn_close(parent_conn));
    }

    /* Part 2: duplex, both ends send and receive. */
    mp_conn *mine, *theirs;
    CHECK(mp_pipe(&mine, &theirs, true));
    mp_process *p = start_with_conn(NULL, ponger, theirs);
    mp_buf in = MP_BUF_INIT;
    bool all = true;
    for (int i = 1; i <= 3; i++) {
        char ping[32], want[32];
        int n = snprintf(ping, sizeof ping, "ping %d", i);
        snprintf(want, sizeof want, "pong %d", i);
        CHECK(mp_conn_send_bytes(mine, ping, (size_t)n));
        CHECK(mp_conn_recv_bytes(mine, &in, 0));
        bool ok = in.len == strlen(want) && memcmp(in.data, want, in.len) == 0;
        printf("%s -> %.*s\n", ping, (int)in.len, (char *)in.data);
        all = all && ok;
    }
    CHECK(mp_conn_send_bytes(mine, "bye", 3));
    int code = join_and_close(p);
    expect(all && code == 0, "duplex: three pings, three pongs");
    mp_buf_free(&in);
    CHECK(mp_conn_close(mine));

    /* Part 3: Pipe(duplex=False) gives (reader, writer), reader first. */
    mp_conn *reader, *writer;
    CHECK(mp_pipe(&reader, &writer, false));
    expect(mp_conn_readable(reader) && !mp_conn_writable(reader) && !mp_conn_readable(writer) &&
               mp_conn_writable(writer),
           "one-way: the reader only reads, the writer only writes");
    expect(mp_conn_send_bytes(reader, "x", 1) == MP_EBADF,
           "sending on the reader: MP_EBADF (Python: OSError)");
    p = start_with_conn(NULL, squares, writer);
    printf("one-way: received");
    int count = 0, sum = 0, r;
    mp_args *msg;
    while ((r = mp_conn_recv(reader, &msg)) == 0) {
        printf(" %lld", (long long)mp_args_int(msg, 0));
        sum += (int)mp_args_int(msg, 0);
        count++;
        mp_args_free(msg);
    }
    printf(", then %s\n", r == MP_EOF ? "end of file" : mp_errname(r));
    code = join_and_close(p);
    expect(r == MP_EOF && count == 5 && sum == 0 + 1 + 4 + 9 + 16 && code == 0,
           "one-way: five squares, then MP_EOF (Python: EOFError)");
    CHECK(mp_conn_close(reader));

    if (failures) {
        printf("pipe: %d check(s) FAILED\n", failures);
        return 1;
    }
    printf("pipe: OK\n");
    return 0;
}
