/**
 * @file multiproc/mpi.h
 * @brief libmultiproc-mpi: the Pool's workers on MPI ranks.
 *
 * Python's mpi4py.futures, for the Pool calls of <multiproc.h>: every rank
 * runs the same program; rank 0 runs it, the other ranks serve its pools.
 *
 * @code
 * int main(int argc, char **argv)
 * {
 *     if (mp_mpi_init(&argc, &argv) < 0)  // ranks > 0 serve inside it
 *         return 1;
 *     mp_pool *p;
 *     mp_pool_opts o = {.ctx = mp_mpi_context()};
 *     ... mp_pool_new(&p, &o); mp_pool_map(p, f, ...); mp_pool_free(p); ...
 *     return mp_mpi_finalize() < 0;       // stops the servers, MPI_Finalize
 * }
 * @endcode
 *
 * Link with `pkg-config --cflags --libs multiproc-mpi` (CMake:
 * multiproc::mpi) and run with `mpiexec -n N ./prog` or `srun`.  Each
 * worker rank runs a pool's items in local worker processes started with
 * spawn, so an item that crashes, exits, is killed or overruns task_timeout
 * fails alone (MP_EWORKER, MP_ETIMEDOUT) as in the local pool.  The death
 * of a rank itself ends the whole job (MPI without fault tolerance).
 * Everything travels as bytes: a pool on this context refuses
 * mp_pool_shared_alloc and, in mp_args, pointers, descriptors and objects
 * (MP_EINVAL).  Every rank must run the same binary (MP_ENOTFOUND from
 * mp_pool_new otherwise) on machines of one architecture.
 */
#ifndef MULTIPROC_MPI_H
#define MULTIPROC_MPI_H

#include <multiproc.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Initialize MPI (MPI_Init_thread, unless the program did already) and the
 * pool service.  Call it on every rank first, with main's arguments.  On
 * rank 0 it returns 0.  On every other rank it serves rank 0's pools and
 * never returns: the process exits with status 0 once rank 0 calls
 * mp_mpi_finalize (non-zero if it cannot serve).
 * @return 0, MP_ENOSYS (the MPI library lacks MPI_THREAD_SERIALIZED),
 *         MP_EALREADY (called twice), MP_ENOMEM.
 */
MP_MUST_CHECK int mp_mpi_init(int *argc, char ***argv);

/**
 * The context that puts a pool's workers on the other ranks
 * (mp_pool_opts.ctx).  There, `processes` 0 means every CPU of every
 * worker rank, a positive number that many worker processes on each
 * worker rank; chunksize 0 picks as the local pool does from the number of
 * chunks kept in flight (two per worker process).  mp_pool_new returns
 * MP_EINVAL before mp_mpi_init, off rank 0, or with no other rank, and
 * MP_ENOTFOUND when a rank runs another build of the program.  Processes
 * started on it with mp_process_new are local ones, started with spawn.
 */
mp_context *mp_mpi_context(void);

/**
 * On rank 0, once every pool on the MPI context is freed: stop the worker
 * ranks and finalize MPI (if mp_mpi_init initialized it).
 * @return 0, MP_EINVAL (not initialized, or not rank 0).
 */
MP_MUST_CHECK int mp_mpi_finalize(void);

#ifdef __cplusplus
}
#endif

#endif
