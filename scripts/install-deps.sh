#!/bin/sh
# Install the Debian packages the build, tests, examples and benchmarks need,
# when they are missing.  Runs apt-get only as root and only if needed.
# With the argument `docs`: the documentation tools instead; with `bench`:
# what the benchmark chart and peer columns need (make bench runs the
# default mode too).
set -eu
need=""
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

if [ "${1:-}" = docs ]; then
    # `install-deps.sh docs`: only what `make docs` needs (API reference,
    # man page checks).
    have_cmd doxygen || need="$need doxygen"
    have_cmd python3 || need="$need python3"
    have_cmd groff || need="$need groff-base"
elif [ "${1:-}" = bench ]; then
    # `install-deps.sh bench`: bench/chart.py draws bench/results.png with
    # Debian's matplotlib, run by the system interpreter (the python3 first
    # on PATH may be another one, without it); the peer columns need ZeroMQ
    # (bench_zmq) and the Boost headers (bench_boost, Boost.Interprocess),
    # which bench/CMakeLists.txt builds only when it finds them.
    /usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1 ||
        need="$need python3 python3-matplotlib"
    have_pkg libzmq3-dev || need="$need libzmq3-dev"
    have_pkg libboost-dev || need="$need libboost-dev"
    have_cmd g++ || have_cmd clang++ || need="$need g++"
    # bench/py_mpi.py: mpi4py.futures, the Python side of the MPI rows, for
    # Debian's interpreter (bench_mpi itself is built with libmultiproc-mpi)
    /usr/bin/python3 -c 'import mpi4py.futures' >/dev/null 2>&1 ||
        need="$need python3-mpi4py"
else
have_cmd cmake || need="$need cmake"
have_cmd make || need="$need make"
have_cmd gcc || need="$need gcc"
have_cmd g++ || need="$need g++"  # the C++ header test (clang++ comes with clang)
have_cmd clang || need="$need clang"
have_cmd pkg-config || need="$need pkg-config"
have_cmd python3 || need="$need python3"
have_pkg libclang-rt-14-dev || have_pkg libclang-rt-dev || need="$need libclang-rt-14-dev"
have_pkg libssl-dev || need="$need libssl-dev"
# libmultiproc-mpi (mpi/) and its tests: Open MPI's headers, compiler
# wrappers and mpiexec.  CMake builds mpi/ only when it finds MPI.
have_pkg libopenmpi-dev || need="$need libopenmpi-dev"
have_cmd mpiexec || need="$need openmpi-bin"
fi

if [ -z "$need" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "missing packages:$need (run as root, or install them)" >&2
    exit 1
fi
echo "installing:$need"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $need
