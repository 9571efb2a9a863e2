/*
 * barrier_pipeline.c: a pipeline of four processes that move in lock step,
 * one Barrier wait per step (the seed notes' "synchronization between
 * processes", 进程间同步, with a Barrier instead of a Lock).
 *
 * Items 0, 1, 2, ... enter at the source and go through one stage per step:
 *
 *     source -> square -> add one -> sink          (item x ends as x*x + 1)
 *
 * At step t stage k works on item t - k: it reads what stage k-1 wrote at
 * step t-1 and writes its own result for stage k+1.  The barrier makes sure
 * nobody starts step t+1 before everyone has finished step t, so a value is
 * never read before it is written nor overwritten before it is read (each
 * stage has two slots, one for the even and one for the odd steps).  In
 * Python:
 *
 *     def stage(k, barrier, slots, results, n):
 *         for t in range(n + STAGES - 1):
 *             i = t - k                        # the item at this stage now
 *             if 0 <= i < n:
 *                 x = slots[k - 1][(t - 1) % 2] if k > 0 else i
 *                 y = (i, x * x, x + 1, x)[k]
 *                 if k == STAGES - 1:
 *                     results[i] = y
 *                 else:
 *                     slots[k][t % 2] = y
 *             barrier.wait()
 *
 *     barrier = Barrier(STAGES, action=show_step, timeout=10)
 *
 * The barrier's action runs once per step, in the last process to arrive,
 * before any is released: here it prints what every stage did in that step
 * and counts the steps.  The main program checks the results, that the
 * action ran exactly once per step and that the barrier never broke, under
 * each start method.
 */
#include <multiproc.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                  \
    do {                                                                             \
        int err_ = (call);                                                           \
        if (err_ < 0) {                                                              \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,      \
                    mp_errname(err_), mp_strerror(err_));                            \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define STAGES 4
#define NITEMS 6
#define NSTEPS (NITEMS + STAGES - 1)

static const char *const stage_name[STAGES] = {"source", "square", "add one", "sink"};

/* What the barrier's action needs, in whichever stage process runs it: set
 * by each stage when it starts (the action gets no arguments). */
static struct {
    int64_t *slots;   /* [k * 2 + t % 2]: stage k's output at step t */
    int64_t *results; /* the sink's output, by item */
    int32_t *steps;   /* steps completed: counted by the action */
    bool verbose;
} g;

/* def show_step(): runs once per step, while every stage waits. */
static int show_step(const mp_args *unused)
{
    (void)unused; /* NULL: an action gets no arguments */
    int t = *g.steps;
    if (g.verbose) {
        printf("step %d:", t);
        for (int k = 0; k < STAGES; k++) {
            int i = t - k;
            if (i < 0 || i >= NITEMS) {
                printf("  %s: -", stage_name[k]);
                continue;
            }
            long long in = k == 0 ? i : g.slots[(k - 1) * 2 + (t - 1) % 2];
            switch (k) {
            case 0:
                printf("  %s: %lld", stage_name[k], in);
                break;
            case 1:
                printf("  %s: %lld*%lld=%lld", stage_name[k], in, in,
                       (long long)g.slots[k * 2 + t % 2]);
                break;
            case 2:
                printf("  %s: %lld+1=%lld", stage_name[k], in, (long long)g.slots[k * 2 + t % 2]);
                break;
            default:
                printf("  %s: results[%d]=%lld", stage_name[k], i, (long long)g.results[i]);
            }
        }
        printf("\n");
        fflush(stdout);
    }
    *g.steps = t + 1;
    return 0;
}

/* def stage(k, barrier, slots, results, n): ...
 * args: (int k, barrier, array slots, array results, value steps, int verbose) */
static int stage(const mp_args *args)
{
    int k = (int)mp_args_int(args, 0);
    mp_barrier *barrier = mp_args_barrier(args, 1);
    g.slots = mp_array_data(mp_args_array(args, 2));
    g.results = mp_array_data(mp_args_array(args, 3));
    g.steps = mp_value_ptr(mp_args_value(args, 4));
    g.verbose = mp_args_int(args, 5) != 0;

    for (int t = 0; t < NSTEPS; t++) {
        int i = t - k;
        if (i >= 0 && i < NITEMS) {
            int64_t x = k > 0 ? g.slots[(k - 1) * 2 + (t - 1) % 2] : i;
            int64_t y = k == 0 ? i : k == 1 ? x * x : k == 2 ? x + 1 : x;
            if (k == STAGES - 1)
                g.results[i] = y;
            else
                g.slots[k * 2 + t % 2] = y;
        }
        /* barrier.wait(): MP_FOREVER takes the barrier's own timeout (10 s),
         * so a stage that died would break the barrier, not hang the others */
        int r = mp_barrier_wait(barrier, MP_FOREVER);
        if (r < 0) {
            fprintf(stderr, "%s: step %d: barrier wait: %s\n", stage_name[k], t, mp_errname(r));
            return 2;
        }
    }
    return 0;
}

static int run(const char *method, bool verbose)
{
    mp_barrier *barrier;
    mp_array *slots, *results;
    mp_value *steps;
    mp_process *procs[STAGES];

    /* barrier = Barrier(STAGES, action=show_step, timeout=10) */
    CHECK(mp_barrier_new(&barrier, STAGES, show_step, 10.0));
    CHECK(mp_array_new(&slots, MP_INT64, (STAGES - 1) * 2, NULL, false));
    CHECK(mp_array_new(&results, MP_INT64, NITEMS, NULL, false));
    CHECK(mp_value_new(&steps, MP_INT32, false));

    for (int k = 0; k < STAGES; k++) {
        mp_args *args;
        CHECK(mp_args_new(&args));
        CHECK(mp_args_add_int(args, k));
        CHECK(mp_args_add_barrier(args, barrier));
        CHECK(mp_args_add_array(args, slots));
        CHECK(mp_args_add_array(args, results));
        CHECK(mp_args_add_value(args, steps));
        CHECK(mp_args_add_int(args, verbose));
        CHECK(mp_process_new(&procs[k], mp_get_context(method), stage, args));
        mp_args_free(args);
        CHECK(mp_process_set_name(procs[k], stage_name[k]));
        CHECK(mp_process_start(procs[k]));
    }
    int bad = 0;
    for (int k = 0; k < STAGES; k++) {
        int code;
        CHECK(mp_process_join(procs[k], MP_FOREVER));
        CHECK(mp_process_exitcode(procs[k], &code));
        if (code != 0) {
            fprintf(stderr, "barrier_pipeline: stage %s exited with %d\n", stage_name[k], code);
            bad++;
        }
        CHECK(mp_process_close(procs[k]));
    }

    const int64_t *r = mp_array_data(results);
    int32_t nsteps = *(int32_t *)mp_value_ptr(steps);
    bool ok = bad == 0 && nsteps == NSTEPS && !mp_barrier_broken(barrier) &&
              mp_barrier_n_waiting(barrier) == 0;
    printf("%-10s %d items through %d stages in %d steps:", method, NITEMS, STAGES, (int)nsteps);
    for (int i = 0; i < NITEMS; i++) {
        printf(" %lld", (long long)r[i]);
        ok = ok && r[i] == (int64_t)i * i + 1;
    }
    printf("  %s\n", ok ? "ok" : "FAILED");
    mp_value_free(steps);
    mp_array_free(results);
    mp_array_free(slots);
    mp_barrier_free(barrier);
    return ok ? 0 : 1;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);

    int failed = run("fork", true);
    failed += run("spawn", false);
    failed += run("forkserver", false);
    if (failed) {
        fprintf(stderr, "barrier_pipeline: FAILED\n");
        return 1;
    }
    printf("barrier_pipeline: OK\n");
    return 0;
}
