/* An out-of-tree program on the installed libmultiproc-mpi: a 10 000-item
 * map on the MPI ranks, identical to the local pool's; an item that kills
 * its worker is reported alone.  Prints "consumer_mpi: ... ok". */
#include <multiproc/mpi.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int f(const void *item, void *result)
{
    int64_t v = *(const int64_t *)item;
    if (v == 4321)
        raise(SIGKILL);
    v = v * v + 1;
    memcpy(result, &v, sizeof v);
    return 0;
}

enum { N = 10000 };
static int64_t items[N], local[N], remote[N];

int main(int argc, char **argv)
{
    if (mp_mpi_init(&argc, &argv) < 0)
        return 1;
    for (int i = 0; i < N; i++)
        items[i] = i;
    mp_pool *lp, *rp;
    mp_pool_opts lo = {.ctx = mp_get_context("spawn"), .processes = 2};
    mp_pool_opts ro = {.ctx = mp_mpi_context()};
    mp_task_error le = {0}, re = {0};
    int ok = mp_pool_new(&lp, &lo) == 0 && mp_pool_new(&rp, &ro) == 0;
    int lrc = ok ? mp_pool_map(lp, f, items, N, 8, local, 8, 0, &le) : -1;
    int rrc = ok ? mp_pool_map(rp, f, items, N, 8, remote, 8, 0, &re) : -1;
    ok = ok && lrc == MP_EWORKER && rrc == MP_EWORKER && re.index == 4321 &&
         re.signal == SIGKILL && le.index == 4321;
    for (int i = 0; ok && i < N; i++)
        if (i != 4321 && (remote[i] != local[i] || remote[i] != items[i] * items[i] + 1))
            ok = 0;
    if (lrc != -1) {
        mp_pool_free(lp);
        mp_pool_free(rp);
    }
    printf("consumer_mpi: %d items, item %zu alone failed (%s, signal %d) %s\n", N, re.index,
           mp_errname(rrc), re.signal, ok ? "ok" : "WRONG");
    if (mp_mpi_finalize() < 0)
        return 1;
    return ok ? 0 : 1;
}
