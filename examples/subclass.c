/*
 * subclass.c: Python's "subclass Process and override run()" pattern in C.
 *
 *     class Counter(Process):
 *         def __init__(self, name, count):
 *             super().__init__(name=name)
 *             self.count = count
 *         def run(self):                 # runs in the child
 *             for i in range(1, self.count + 1):
 *                 print(self.name, i)
 *
 *     Counter("counter", 5).start()
 *
 * C has no classes, so the usual C shape is used: a base struct embedded as
 * the first member of each "subclass" struct, plus a table of classes, each
 * with its run() function.  Starting an object sends a copy of the whole
 * struct to the child as one bytes argument; a generic target (Python's
 * Process._bootstrap) copies it back and calls the class's run().
 *
 * The object names its class by index in the table, not by a vtable pointer:
 * a pointer would do under fork (same addresses), but a spawned child is a
 * fresh run of the program where addresses differ.  An index into a table
 * compiled into the program means the same thing in every process.
 *
 * (The test suite's upper-casing echo server is the same pattern plus a
 * Pipe; pipes come with the connection module.)
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(call)                                                                  \
    do {                                                                             \
        int err_ = (call);                                                           \
        if (err_ < 0) {                                                              \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,      \
                    mp_errname(err_), mp_strerror(err_));                            \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* ---- the base "class" -------------------------------------------------- */

typedef struct worker {   /* class Worker(Process) */
    unsigned class_id;    /* which entry of classes[] */
    char name[32];        /* Process.name */
} worker;

typedef struct worker_class {
    const char *class_name;
    size_t size;                     /* sizeof the whole subclass struct */
    int (*run)(worker *self);        /* the overridden run(); returns the exit code */
} worker_class;

enum { COUNTER, GREETER, N_CLASSES };
static const worker_class classes[N_CLASSES];

/* Python: Process._bootstrap -> self.run().  The one target for every class. */
static int worker_bootstrap(const mp_args *args)
{
    size_t len;
    const void *bytes = mp_args_bytes(args, 0, &len);
    worker base;
    if (len < sizeof base)
        return 100;
    memcpy(&base, bytes, sizeof base);
    if (base.class_id >= N_CLASSES || len != classes[base.class_id].size)
        return 101; /* not an object this program knows */
    worker *self = malloc(len); /* a private, suitably aligned copy */
    if (self == NULL)
        return 102;
    memcpy(self, bytes, len);
    int code = classes[self->class_id].run(self);
    free(self);
    return code;
}

/* Python: Worker.start().  Sends a copy of *self; later changes to the
 * parent's object are not seen by the child (as with pickling). */
static mp_process *worker_start(const worker *self, mp_context *ctx)
{
    mp_args *args;
    mp_process *p;
    CHECK(mp_args_new(&args));
    CHECK(mp_args_add_bytes(args, self, classes[self->class_id].size));
    CHECK(mp_process_new(&p, ctx, worker_bootstrap, args));
    mp_args_free(args);
    CHECK(mp_process_set_name(p, self->name)); /* super().__init__(name=name) */
    CHECK(mp_process_start(p));
    return p;
}

/* ---- subclass 1: Counter ------------------------------------------------- */

typedef struct counter {
    worker base; /* first member: a counter * is a worker * */
    int count;
} counter;

static void counter_init(counter *c, const char *name, int count)
{
    memset(c, 0, sizeof *c);
    c->base.class_id = COUNTER;
    snprintf(c->base.name, sizeof c->base.name, "%s", name);
    c->count = count;
}

/* Counts to self->count; the exit code carries the sum 1 + ... + count. */
static int counter_run(worker *self)
{
    counter *c = (counter *)self;
    int sum = 0;
    for (int i = 1; i <= c->count; i++) {
        printf("%s (pid %d): %d\n", self->name, (int)getpid(), i);
        sum += i;
    }
    return sum;
}

/* ---- subclass 2: Greeter ------------------------------------------------- */

typedef struct greeter {
    worker base;
    char greeting[32];
    int times;
} greeter;

static void greeter_init(greeter *g, const char *name, const char *greeting, int times)
{
    memset(g, 0, sizeof *g);
    g->base.class_id = GREETER;
    snprintf(g->base.name, sizeof g->base.name, "%s", name);
    snprintf(g->greeting, sizeof g->greeting, "%s", greeting);
    g->times = times;
}

/* Greets; checks that the library gave this process the object's name. */
static int greeter_run(worker *self)
{
    greeter *g = (greeter *)self;
    const char *me = mp_process_name(mp_current_process()); /* self.name */
    for (int i = 0; i < g->times; i++)
        printf("%s says: %s\n", me, g->greeting);
    return strcmp(me, self->name) == 0 ? 0 : 1;
}

static const worker_class classes[N_CLASSES] = {
    [COUNTER] = {"Counter", sizeof(counter), counter_run},
    [GREETER] = {"Greeter", sizeof(greeter), greeter_run},
};

/* ---- main ------------------------------------------------------------------ */

static int join_check(mp_process *p, int expected, const char *method)
{
    int code;
    CHECK(mp_process_join(p, MP_FOREVER));
    CHECK(mp_process_exitcode(p, &code));
    printf("%s (%s) exited with %d, expected %d\n", mp_process_name(p), method, code, expected);
    fflush(stdout);
    CHECK(mp_process_close(p));
    return code != expected;
}

int main(void)
{
    static const char *const methods[] = {"fork", "spawn"};
    int failures = 0;

    /* Line-buffered even into a pipe (run_demo.sh), so that each line leaves
     * when printed and the parent's lines keep their place among the children's. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
        mp_context *ctx = mp_get_context(methods[m]);
        counter c;
        greeter g;
        counter_init(&c, "counter", 5);
        greeter_init(&g, "greeter", "hello from a subclass", 2);

        mp_process *pc = worker_start(&c.base, ctx);
        mp_process *pg = worker_start(&g.base, ctx);
        failures += join_check(pc, 1 + 2 + 3 + 4 + 5, methods[m]);
        failures += join_check(pg, 0, methods[m]);
    }
    if (failures) {
        fprintf(stderr, "subclass: %d worker(s) failed\n", failures);
        return 1;
    }
    printf("subclass: OK\n");
    return 0;
}
