#!/bin/sh
# Run a program under mpiexec on one machine, as the MPI tests and the demo
# need it: oversubscribed (2 cores, 3 ranks), as root if need be, unbound,
# over shared memory with single copy off (containers forbid the kernel's
# cross-process copy) and the runtime's TCP on loopback only; under a
# timeout, so that a hang fails instead of waiting forever.
#
#   run_mpi.sh [--expect-fail SECONDS] TIMEOUT NPROCS MPIEXEC PROGRAM [ARGS...]
#
# With --expect-fail: the job must end non-zero, by itself, within SECONDS.
set -u
expect_fail=""
if [ "$1" = --expect-fail ]; then
    expect_fail=$2
    shift 2
fi
limit=$1 np=$2 mpiexec=$3
shift 3
start=$(date +%s)
timeout -k 10 "$limit" "$mpiexec" --oversubscribe --allow-run-as-root --bind-to none \
    --mca btl self,vader --mca btl_vader_single_copy_mechanism none \
    --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo \
    -n "$np" "$@"
rc=$?
took=$(($(date +%s) - start))
# 124: timeout's own status; 137 (SIGKILL) is also mpiexec's when a rank
# was killed, so that one is a hang only if it took the whole time
if [ "$rc" = 124 ] || { [ "$rc" = 137 ] && [ "$took" -ge "$limit" ]; }; then
    echo "run_mpi.sh: no end within ${limit}s (a hang)" >&2
    exit 1
fi
if [ -n "$expect_fail" ]; then
    if [ "$rc" = 0 ]; then
        echo "run_mpi.sh: the job exited 0; it should have failed" >&2
        exit 1
    fi
    if [ "$took" -gt "$expect_fail" ]; then
        echo "run_mpi.sh: the job ended (status $rc) after ${took}s, more than ${expect_fail}s" >&2
        exit 1
    fi
    echo "run_mpi.sh: the job ended with status $rc after ${took}s, as it should"
    exit 0
fi
exit "$rc"
