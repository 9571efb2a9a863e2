#!/usr/bin/env python3
"""Run the benchmarks and print one Markdown table.

    python3 bench/run.py --build BUILD [--out bench/results.md] [--readme README.md] [--quick]
    python3 bench/run.py --chart-only   # table and charts again from bench/results.json

Each row is the same work done by multiproc, by Python 3.11's
multiprocessing, by the kernel floor (the least a correct implementation must
do, written straight on the kernel) and, where a C programmer would pick one
instead, by ZeroMQ and Boost.Interprocess -- all measured in one run.  The
MPI rows (bench_mpi, py_mpi) run under mpiexec on 3 ranks of this machine,
which their suites start themselves.  Cells
give the median and the p10-p90 spread of one operation; the ratios compare
medians.

The Python reference is the faster of the 3.11 builds on the machine
(Debian's PGO+LTO python3 and pyenv's): both run the interpreter-bound suites
once, quickly, and the table names the one chosen and its build.

Every run also stores the raw results in bench/results.json and draws two
charts from them: bench/results.png (bench/chart.py: each row's ratios) and
bench/scaling.png (bench/scaling.py: cost per item and per message against
item count and message size).  --chart-only redraws the table and both
charts from the stored JSON.

Adding a benchmark: add a Suite (a command that prints JSON lines with name,
n, median_us, p10_us, p90_us) if its numbers come from a new program, and a
Row naming the results it compares.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Suite:
    """One program that measures some benchmarks and prints JSON lines."""
    name: str
    # argv, given the build directory, the Python interpreter (None if
    # absent) and whether --quick was asked for; None: skip this suite.
    argv: Callable[[str, Optional[str], bool], Optional[List[str]]]


@dataclass
class Row:
    """One line of the table: the names of the results it compares."""
    label: str
    mp: str                    # multiproc's result
    py: Optional[str]          # Python's result
    kernel: Optional[str]      # the floor: the bare kernel operation's result
    kernel_label: str = ""     # what that operation is, for the table
    max_vs_kernel: Optional[float] = None  # goal: multiproc / kernel at most this
    min_vs_python: Optional[float] = None  # goal: Python / multiproc at least this
    zmq: Optional[str] = None  # ZeroMQ doing the same work (a peer column)
    boost: Optional[str] = None  # Boost.Interprocess doing the same work
    batch: bool = False        # a sample timed a batch: cells spread batch averages
    reference: bool = False    # the kernel column is a reference to compare with, not a floor
    section: str = ""          # starts a new group of rows, titled so


def c_bench(program, *extra, quick_args=()):
    def argv(build, python, quick):
        exe = os.path.join(build, "bench", program)
        if not os.access(exe, os.X_OK):
            raise SystemExit(f"run.py: {exe} is not built (cmake --build {build})")
        return [exe, *extra, *(quick_args if quick else ())]
    return argv


def py_bench(script, *extra, quick_args=()):
    def argv(build, python, quick):
        if python is None:
            return None
        return [python, os.path.join(HERE, script), *extra, *(quick_args if quick else ())]
    return argv


def optional_c_bench(program, *extra, quick_args=()):
    """A peer's benchmark: built only where its library is installed."""
    inner = c_bench(program, *extra, quick_args=quick_args)

    def argv(build, python, quick):
        if not os.access(os.path.join(build, "bench", program), os.X_OK):
            print(f"run.py: {program} not built (scripts/install-deps.sh bench): "
                  f"its column is n/a", file=sys.stderr)
            return None
        return inner(build, python, quick)
    return argv


# How the MPI suites run: 3 ranks on this machine, with the flags of
# tests/mpi/run_mpi.sh (oversubscribed, as root if need be, unbound, shared
# memory with single copy off, the runtime's TCP on loopback only), under a
# timeout that kills the whole job if it hangs.
MPI_RANKS = 3
MPI_FLAGS = ("--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
             "--mca", "btl", "self,vader", "--mca", "btl_vader_single_copy_mechanism", "none",
             "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo")
MPI_TIMEOUT = 900
# mpi4py.futures comes with Debian's interpreter (python3-mpi4py), whatever
# the Python reference of the other suites is.
MPI4PY_PYTHON = "/usr/bin/python3"


def mpiexec_argv(*argv):
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        return None
    return ["timeout", "-k", "10", str(MPI_TIMEOUT), mpiexec, *MPI_FLAGS,
            "-n", str(MPI_RANKS), *argv]


def mpi_c_bench(program, *extra, quick_args=()):
    """A C program that runs on MPI ranks: under mpiexec, when built."""
    def argv(build, python, quick):
        exe = os.path.join(build, "bench", program)
        if not os.access(exe, os.X_OK) or shutil.which("mpiexec") is None:
            print(f"run.py: {program} not built or no mpiexec (scripts/install-deps.sh): "
                  f"its rows are left out", file=sys.stderr)
            return None
        return mpiexec_argv(exe, *extra, *(quick_args if quick else ()))
    return argv


def mpi4py_bench(script, *extra, quick_args=()):
    """A Python script for mpi4py.futures: rank 0 runs it, the others serve."""
    def argv(build, python, quick):
        ok = os.access(MPI4PY_PYTHON, os.X_OK) and subprocess.run(
            [MPI4PY_PYTHON, "-c", "import mpi4py.futures"], capture_output=True).returncode == 0
        if not ok or shutil.which("mpiexec") is None:
            print(f"run.py: no mpi4py for {MPI4PY_PYTHON} or no mpiexec "
                  f"(scripts/install-deps.sh bench): {script}'s column is n/a", file=sys.stderr)
            return None
        return mpiexec_argv(MPI4PY_PYTHON, "-m", "mpi4py.futures", os.path.join(HERE, script),
                            *extra, *(quick_args if quick else ()))
    return argv


# The job-queue row's Python manager (and its Python worker) run under
# Debian's interpreter, whatever the reference of the other suites is, as a
# deployed remote-manager server would; the C worker is bench_py.
PY_MANAGER_PYTHON = "/usr/bin/python3"


def py_manager_bench(script, *extra, quick_args=()):
    """py_py.py serving the job queues to its Python worker and bench_py's."""
    def argv(build, python, quick):
        exe = os.path.join(build, "bench", "bench_py")
        if not os.access(exe, os.X_OK):
            raise SystemExit(f"run.py: {exe} is not built (cmake --build {build})")
        if not os.access(PY_MANAGER_PYTHON, os.X_OK):
            print(f"run.py: no {PY_MANAGER_PYTHON}: the Python manager rows are left out",
                  file=sys.stderr)
            return None
        return [PY_MANAGER_PYTHON, os.path.join(HERE, script), *extra, "--c-worker", exe,
                *(quick_args if quick else ())]
    return argv


SUITES = [
    Suite("bench_process", c_bench("bench_process",
                                   quick_args=("-n", "300", "-s", "100", "-r", "3"))),
    Suite("py_process", py_bench("py_process.py",
                                 quick_args=("-n", "60", "-s", "10", "-f", "30", "-r", "2"))),
    Suite("bench_conn", c_bench("bench_conn",
                                quick_args=("-n", "2000", "-m", "30", "-c", "200", "-b", "10"))),
    Suite("py_conn", py_bench("py_conn.py",
                               quick_args=("-n", "2000", "-m", "30", "-c", "200", "-b", "10"))),
    Suite("bench_sync", c_bench("bench_sync", quick_args=("-u", "300", "-c", "20", "-n", "2000", "-A", "3"))),
    Suite("py_sync", py_bench("py_sync.py", quick_args=("-u", "100", "-c", "10", "-n", "1000", "-A", "3"))),
    Suite("bench_queue", c_bench("bench_queue", quick_args=("-b", "5", "-n", "20000", "-m", "50"))),
    Suite("py_queue", py_bench("py_queue.py", quick_args=("-b", "5", "-n", "20000", "-m", "50"))),
    Suite("bench_pool", c_bench("bench_pool",
                                quick_args=("-r", "3", "-c", "100000", "-a", "2000", "-u", "64"))),
    Suite("py_pool", py_bench("py_pool.py",
                              quick_args=("-r", "2", "-c", "10000", "-a", "1000", "-u", "64"))),
    Suite("bench_manager", c_bench("bench_manager", quick_args=("-n", "2000", "-m", "2000", "-r", "3"))),
    Suite("py_manager", py_bench("py_manager.py", quick_args=("-n", "2000", "-m", "1000", "-r", "3"))),
    Suite("bench_py", c_bench("bench_py", quick_args=("-n", "2000"))),
    Suite("py_py", py_bench("py_py.py", "conn", quick_args=("-n", "2000"))),
    Suite("py_pymgr", py_manager_bench("py_py.py", "mgr", quick_args=("-j", "500", "-b", "4"))),
    Suite("bench_zmq", optional_c_bench("bench_zmq", quick_args=("-b", "5", "-n", "20000", "-m", "50",
                                                                 "-r", "2000", "-s", "30"))),
    Suite("bench_boost", optional_c_bench("bench_boost", quick_args=("-b", "5", "-n", "20000", "-m", "50"))),
    Suite("bench_mpi", mpi_c_bench("bench_mpi", quick_args=("-n", "100000", "-r", "3", "-u", "64"))),
    Suite("py_mpi", mpi4py_bench("py_mpi.py", quick_args=("-n", "100000", "-r", "3", "-u", "64"))),
]

# The Python suites run under both candidate interpreters (quick arguments)
# to pick the faster one as the reference.
PY_COMPARE = ("py_sync", "py_queue", "py_pool", "py_conn")

ROWS = [
    # ---- processes
    Row("process start+join (fork)", mp="mp_fork", py="py_fork",
        kernel="raw_fork_wait", kernel_label="fork+waitpid",
        max_vs_kernel=1.3, min_vs_python=10, section="Processes"),
    Row("process start+join (spawn)", mp="mp_spawn", py="py_spawn",
        kernel="raw_posix_spawn", kernel_label="posix_spawn of the same program + waitpid",
        max_vs_kernel=1.5, min_vs_python=10),
    Row("process start+join (forkserver)", mp="mp_forkserver", py="py_forkserver",
        kernel="raw_forkserver",
        kernel_label="request to a fork server over a unix socket, fork, waitpid, status back",
        max_vs_kernel=1.5, min_vs_python=10),
    Row("cold one-shot pool: create, map 10 000 items, close, join (fork)",
        mp="mp_pool_cold_fork", py="py_pool_cold_fork", kernel=None),
    Row("… same (spawn)", mp="mp_pool_cold_spawn", py="py_pool_cold_spawn", kernel=None),
    Row("… same (forkserver)", mp="mp_pool_cold_forkserver", py="py_pool_cold_forkserver",
        kernel=None),
    Row("Manager start, one request, shutdown", mp="mp_mgr_start", py="py_mgr_start",
        kernel=None),
    # ---- connections
    Row("Pipe round trip, 8 B (both on one CPU)", mp="mp_rtt8_pin", py="py_rtt8_pin",
        kernel="raw_rtt8_pin", kernel_label="socketpair write+read", zmq="zmq_rtt8_pin",
        section="Connections"),
    Row("… same, placement left to the scheduler", mp="mp_rtt8", py="py_rtt8",
        kernel="raw_rtt8", kernel_label="socketpair write+read", zmq="zmq_rtt8"),
    Row("Pipe round trip, 1 MiB (both on one CPU)", mp="mp_rtt1m_pin", py="py_rtt1m_pin",
        kernel="raw_rtt1m_pin", kernel_label="socketpair write+read", zmq="zmq_rtt1m_pin"),
    Row("… same, placement left to the scheduler", mp="mp_rtt1m", py="py_rtt1m",
        kernel="raw_rtt1m", kernel_label="socketpair write+read", zmq="zmq_rtt1m"),
    Row("typed message round trip: 3 ints + 16 B string (both on one CPU; Python: "
        "conn.send of the tuple)", mp="mp_send_args", py="py_send_tuple",
        kernel="raw_send_packed", kernel_label="packed struct write+read"),
    Row("connect + authkey handshake (unix)", mp="mp_connect_auth", py="py_connect_auth",
        kernel="raw_connect_auth",
        kernel_label="connect, accept, the handshake's messages (digests precomputed)"),
    # ---- synchronization
    Row("Lock acquire+release, uncontended", mp="mp_lock_uncontended",
        py="py_lock_uncontended", kernel="raw_futex_lock_uncontended",
        kernel_label="3-state futex mutex", max_vs_kernel=1.5, batch=True,
        section="Synchronization"),
    Row("… same, vs the robust PI mutex Lock is built on", mp="mp_lock_uncontended",
        py=None, kernel="raw_pthread_robust_pi_uncontended",
        kernel_label="robust PI pshared pthread mutex", batch=True, reference=True),
    Row("Lock, 2 processes contending (per op)", mp="mp_lock_contended",
        py="py_lock_contended", kernel="raw_pthread_robust_contended",
        kernel_label="robust pshared pthread mutex", max_vs_kernel=1.25, batch=True),
    Row("… same, vs the robust PI mutex Lock is built on", mp="mp_lock_contended",
        py=None, kernel="raw_pthread_robust_pi_contended",
        kernel_label="robust PI pshared pthread mutex", batch=True, reference=True),
    Row("Event ping-pong round trip (both on one CPU)", mp="mp_event_pingpong",
        py="py_event_pingpong", kernel="raw_futex_pingpong",
        kernel_label="futex wake/wait on two words", max_vs_kernel=1.2),
    Row("Semaphore ping-pong round trip (both on one CPU)", mp="mp_sem_pingpong",
        py="py_sem_pingpong", kernel="raw_futex_pingpong",
        kernel_label="futex wake/wait on two words"),
    Row("Condition ping-pong round trip (both on one CPU)", mp="mp_cond_pingpong",
        py="py_cond_pingpong", kernel="raw_cond_pingpong",
        kernel_label="pshared pthread mutex + condvar"),
    Row("Barrier, 2 parties (per wait; both on one CPU)", mp="mp_barrier2",
        py="py_barrier2", kernel="raw_barrier2",
        kernel_label="futex generation-counter barrier"),
    # ---- queues
    Row("Queue 1→1, 8 B messages (per message)", mp="mp_queue8", py="py_queue8",
        kernel="raw_ring8", kernel_label="bare SPSC shm ring", zmq="zmq_push8",
        boost="boost_mq8_unbounded_like", max_vs_kernel=3.33, min_vs_python=50, batch=True,
        section="Queues"),
    Row("SimpleQueue 1→1, 8 B messages (per message)", mp="mp_simplequeue8",
        py="py_simplequeue8", kernel="raw_ring8", kernel_label="bare SPSC shm ring",
        max_vs_kernel=3.33, batch=True),
    Row("Queue 4→1, 8 B messages (per message)", mp="mp_queue8_4p", py="py_queue8_4p",
        kernel=None, batch=True),
    Row("Queue 4→4, 8 B messages (per message)", mp="mp_queue8_4x4", py="py_queue8_4x4",
        kernel=None, batch=True),
    Row("Queue 1→1, 64 B messages (per message)", mp="scale_queue_mp_64",
        py="scale_queue_py_64", kernel="scale_queue_floor_64",
        kernel_label="bare SPSC shm ring", batch=True),
    Row("Queue 1→1, 1 KiB messages (per message)", mp="scale_queue_mp_1024",
        py="scale_queue_py_1024", kernel="scale_queue_floor_1024",
        kernel_label="bare SPSC shm ring", batch=True),
    Row("Queue 1→1, 64 KiB messages (per message)", mp="scale_queue_mp_65536",
        py="scale_queue_py_65536", kernel="scale_queue_floor_65536",
        kernel_label="bare SPSC shm ring", batch=True),
    Row("Queue 1→1, 1 MiB messages (per message)", mp="mp_queue1m", py="py_queue1m",
        kernel="raw_ring1m", kernel_label="bare SPSC shm ring as large as the queue's",
        zmq="zmq_push1m", boost="boost_mq1m", max_vs_kernel=1.25, batch=True),
    Row("bounded Queue(maxsize=64) 1→1, 8 B, under backpressure (per message)",
        mp="mp_bqueue8", py="py_bqueue8", kernel="raw_bring8",
        kernel_label="bare SPSC shm ring of 64 records", boost="boost_mq8", batch=True),
    Row("JoinableQueue put, get + task_done, join (per message)", mp="mp_jqueue8",
        py="py_jqueue8", kernel=None, batch=True),
    # ---- shared memory
    Row("100 MB shared Array: create, attach in a child, sum", mp="mp_array100m",
        py="py_array100m", kernel="raw_array100m",
        kernel_label="memfd + mmap + fork, the child sums", section="Shared memory"),
    Row("… same, made and filled before timing: attach in a child, sum", mp="mp_array100m_sum",
        py="py_array100m_sum", kernel="raw_array100m_sum",
        kernel_label="fork, the child sums a memfd mapping"),
    # ---- pool
    Row("Pool.map, 10⁶ trivial items, default chunksize (per item)", mp="mp_pool_map_default",
        py="py_pool_map_default", kernel="scale_map_floor_1000000",
        kernel_label="2 started processes square their halves in shm, nothing copied",
        min_vs_python=100, batch=True, section="Pool"),
    Row("… same, items and results in mp_pool_shared_alloc buffers (Python: map over "
        "slices of a SharedMemory buffer)", mp="mp_pool_map_shared", py="py_pool_map_shm",
        kernel="scale_map_floor_1000000",
        kernel_label="2 started processes square their halves in shm, nothing copied",
        min_vs_python=100, batch=True),
    Row("Pool.map, 1 KiB items and 1 KiB results (per item)", mp="mp_pool_map_1k",
        py="py_pool_map_1k", kernel=None, batch=True),
    Row("Pool.map, chunksize 1 (per item; Python maps 10× fewer items)",
        mp="mp_pool_map_chunk1", py="py_pool_map_chunk1", kernel=None, min_vs_python=50,
        batch=True),
    Row("imap, time to the first result", mp="mp_imap_first", py="py_imap_first", kernel=None),
    Row("imap_unordered, time to the first result", mp="mp_imap_first_unordered",
        py="py_imap_first_unordered", kernel=None),
    Row("imap streaming (per item)", mp="mp_imap_rate", py="py_imap_rate", kernel=None,
        batch=True),
    Row("imap_unordered streaming (per item)", mp="mp_imap_rate_unordered",
        py="py_imap_rate_unordered", kernel=None, batch=True),
    Row("apply_async + get round trip (all on one CPU)", mp="mp_pool_apply_rtt",
        py="py_pool_apply_rtt", kernel="raw_futex_rtt_2proc",
        kernel_label="futex ping-pong, 2 processes", max_vs_kernel=3),
    Row("… same, placement left to the scheduler", mp="mp_pool_apply_rtt_free",
        py="py_pool_apply_rtt_free", kernel="raw_futex_rtt_2proc_free",
        kernel_label="futex ping-pong, 2 processes"),
    Row("apply_async, 1000 tasks in flight (per task)", mp="mp_apply_async_1000",
        py="py_apply_async_1000", kernel=None, batch=True),
    Row("Pool.map, CPU-bound ≈1 ms items, 2 workers (per item)", mp="mp_pool_cpu_2w",
        py="py_pool_cpu_2w", kernel="mp_pool_cpu_1w", kernel_label="same map, 1 worker",
        max_vs_kernel=0.55, batch=True, reference=True),
    # ---- managers
    Row("Manager dict set+get from a child, 2 requests (all on one CPU)",
        mp="mp_mgr_dict_rtt_pin", py="py_mgr_dict_rtt_pin", kernel="raw_sock_rtt16x2_pin",
        kernel_label="socketpair 16 B write + 16 B reply, ×2", max_vs_kernel=1.2,
        section="Managers"),
    Row("… same, placement left to the scheduler", mp="mp_mgr_dict_rtt",
        py="py_mgr_dict_rtt", kernel="raw_sock_rtt16x2",
        kernel_label="socketpair 16 B write + 16 B reply, ×2"),
    Row("Manager dict, 1000 sets + 1000 gets in batches (per op; Python: d.update + a "
        "registered get_many, one request each)", mp="mp_mgr_dict_batch",
        py="py_mgr_dict_batch", kernel=None, min_vs_python=20, batch=True),
    Row("Manager dict, batch of 1000 sets (per op; Python: d.update of 1000)",
        mp="mp_mgr_dict_batch_set", py="py_mgr_dict_update", kernel=None, batch=True),
    Row("Manager dict, 4 client processes at once (per op; Python: d[k] = v)",
        mp="mp_mgr_dict_add_4p", py="py_mgr_dict_set_4p", kernel=None, batch=True),
    Row("Manager Condition ping-pong between 2 processes (notify + wait each side)",
        mp="mp_mgr_cond_rtt", py="py_mgr_cond_rtt", kernel=None),
    Row("Manager Barrier of 2 processes, one pass", mp="mp_mgr_barrier_rtt",
        py="py_mgr_barrier_rtt", kernel=None),
    # ---- Python peers (bench_py.c, py_py.py)
    Row("small dict round trip, {'job': 3, 'args': [1.5, 'x', b'yy'], 'ok': True} (both on "
        "one CPU; multiproc: mp_conn_send_py + mp_conn_recv_py, Python: conn.send + recv)",
        mp="mp_send_dict", py="py_send_dict", kernel="mp_send_dict_bytes",
        kernel_label="its pickle precomputed, mp_conn_send_bytes + recv_bytes",
        reference=True, section="Talking to Python"),
    Row("worker of a Python BaseManager job queue over TCP: get a job + put its result "
        "(per job; multiproc: mp_pyproxy_get + put, Python: proxies; same server)",
        mp="mp_pymgr_jobs", py="py_pymgr_jobs", kernel=None, batch=True),
    # ---- MPI (bench_mpi.c, py_mpi.py: 3 ranks, 2 worker processes on every side)
    Row("Pool.map on 2 MPI worker ranks, 10⁶ trivial items, default chunksize (per item; "
        "Python: mpi4py.futures MPIPoolExecutor.map, chunksize n/8)", mp="mpi_map_trivial",
        py="py_mpi_map_trivial", kernel="mpi_local_map_trivial",
        kernel_label="local pool, 2 workers", batch=True, reference=True,
        section="MPI (libmultiproc-mpi, mpiexec -n 3)"),
    Row("Pool.map on 2 MPI worker ranks, CPU-bound: 200 items of ≈1 ms (whole map; "
        "Python: MPIPoolExecutor.map)", mp="mpi_map_cpu", py="py_mpi_map_cpu",
        kernel="mpi_local_map_cpu", kernel_label="local pool, 2 workers", reference=True),
]


PYTHONS = ["/usr/bin/python3", "/root/.pyenv/versions/3.11.7/bin/python3"]


def python_version(cand):
    try:
        return subprocess.run([cand, "-c", "import platform; print(platform.python_version())"],
                              capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def find_pythons(given=None):
    """The candidate reference interpreters: Python 3.11 builds on this machine."""
    cands = [given] if given else PYTHONS + [shutil.which("python3.11")]
    out = []
    for cand in cands:
        if cand and os.access(cand, os.X_OK) and python_version(cand).startswith("3.11"):
            real = os.path.realpath(cand)
            if real not in (os.path.realpath(c) for c in out):
                out.append(cand)
    return out


def python_build(python):
    """How an interpreter was built, in a few words: the table names it."""
    code = ("import sysconfig; print(sysconfig.get_config_var('CONFIG_ARGS') or ''); "
            "print(sysconfig.get_config_var('PY_CFLAGS_NODIST') or '')")
    args = subprocess.run([python, "-c", code], capture_output=True, text=True).stdout
    version = python_version(python)
    if os.path.realpath(python).startswith("/usr/bin/"):
        # Debian's rules build the interpreter with --enable-optimizations and
        # --with-lto (a static libpython): its sysconfig records the shared
        # build's flags, not those.
        return f"Debian's python3 {version} ({python}; PGO+LTO, static libpython)"
    flags = []
    flags.append("PGO" if "--enable-optimizations" in args else "no PGO")
    flags.append("LTO" if "--with-lto" in args else "no LTO")
    if "-O3" in args:
        flags.append("-O3")
    return f"Python {version} ({python}; {', '.join(flags)})"


def geomean(xs):
    import math
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else 1.0


def pick_python(pythons, build):
    """Run the interpreter-bound suites (quick) under each candidate and
    return (the faster one, a sentence saying what was measured)."""
    if len(pythons) < 2:
        return (pythons[0] if pythons else None), ""
    runs = {}
    for python in pythons:
        runs[python] = {}
        for suite in SUITES:
            if suite.name in PY_COMPARE:
                runs[python].update(run_suite(suite, build, python, True))
    a, b = pythons[:2]
    common = [k for k in runs[a] if k in runs[b] and runs[a][k]["median_us"] > 0]
    ratio = geomean([runs[b][k]["median_us"] / runs[a][k]["median_us"] for k in common])
    best = a if ratio >= 1 else b
    other = b if best == a else a
    r = ratio if best == a else 1 / ratio
    spread = sorted(runs[other][k]["median_us"] / runs[best][k]["median_us"] for k in common)
    note = (f"Python reference: {python_build(best)}, the faster of the two 3.11 builds "
            f"here; against {python_build(other)}, over the {len(common)} results of a "
            f"quick run of {', '.join(PY_COMPARE)} in each, it took 1/{r:.2f} of the time "
            f"(geometric mean; per result {spread[0]:.2f}×–{spread[-1]:.2f}×).")
    return best, note


SUITE_TIMEOUT = 1200


def run_suite(suite, build, python, quick):
    argv = suite.argv(build, python, quick)
    if argv is None:
        print(f"[{suite.name}] skipped", file=sys.stderr)
        return {}
    print(f"[{suite.name}] {' '.join(argv)}", file=sys.stderr, flush=True)
    try:
        # Python's Pool hangs for good when a worker dies while starting
        # (seen here under heavy load: a spawned worker found its pool's
        # semaphore gone): a suite that hangs fails the run instead.
        proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=SUITE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"run.py: {suite.name} did not finish in {SUITE_TIMEOUT} s "
                         f"(run it alone to see where it hangs)")
    if proc.returncode != 0:
        raise SystemExit(f"run.py: {suite.name} failed with status {proc.returncode}")
    results = {}
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            results[r["name"]] = r
    return results


def fmt_us(us):
    if us < 0.1:
        return f"{us * 1000:.1f} ns"
    if us < 10:
        return f"{us:.2f} µs"
    if us >= 10000:
        return f"{us / 1000:.1f} ms"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def cell(r):
    if r is None:
        return "n/a"
    return f"{fmt_us(r['median_us'])} ({fmt_us(r['p10_us'])}–{fmt_us(r['p90_us'])})"


def python_short(python):
    """The Python column's header."""
    if not python:
        return "Python"
    version = python_version(python)
    if os.path.realpath(python).startswith("/usr/bin/"):
        return f"Python {version} (Debian, PGO+LTO)"
    return f"Python {version} ({python_build(python).split('; ', 1)[1].rstrip(')')})"


def vs_text(r):
    return f"{r:.1f}× faster" if r >= 1 else f"{1 / r:.1f}× slower"


def peer_cell(peer, mp):
    if peer is None:
        return "n/a"
    return f"{cell(peer)}: {peer['median_us'] / mp['median_us']:.1f}×"


def build_table(rows, results, python_header="Python"):
    peers = [(key, title) for key, title in (("zmq", "ZeroMQ"), ("boost", "Boost.Interprocess"))
             if any(getattr(r, key) in results for r in rows if getattr(r, key))]
    head = ["operation", "multiproc", python_header, "kernel floor", "vs Python",
            "vs floor"] + [t for _, t in peers] + ["goals"]
    out = ["| " + " | ".join(head) + " |",
           "|---|" + "---:|" * (len(head) - 2) + "---|"]
    for row in rows:
        mp = results.get(row.mp)
        py = results.get(row.py) if row.py else None
        k = results.get(row.kernel) if row.kernel else None
        if row.section:
            out.append(f"| **{row.section}** |" + " |" * (len(head) - 1))
        if mp is None:
            print(f"run.py: no result {row.mp}: row {row.label!r} left out", file=sys.stderr)
            continue
        vs_py = vs_k = kcell = "n/a"
        goals = []
        if py is not None:
            r = py["median_us"] / mp["median_us"]
            vs_py = vs_text(r)
            if row.min_vs_python is not None:
                ok = "met" if r >= row.min_vs_python else "MISSED"
                goals.append(f"≥{row.min_vs_python:g}× faster than Python: {ok}")
        if k is not None:
            r = mp["median_us"] / k["median_us"]
            below = r < 0.95 and not row.reference
            vs_k = f"{r:.2f}×" + (" ‡" if below else "")
            kcell = f"{row.kernel_label}: {cell(k)}"
            if row.max_vs_kernel is not None:
                ok = "MISSED" if r > row.max_vs_kernel else "not judged (‡)" if below else "met"
                goals.append(f"≤{row.max_vs_kernel:g}× floor: {ok}")
        peer_cells = [peer_cell(results.get(getattr(row, key)) if getattr(row, key) else None,
                                mp) for key, _ in peers]
        label = row.label + (" †" if row.batch else "")
        out.append(f"| {label} | {cell(mp)} | {cell(py)} | {kcell} | {vs_py} | {vs_k} | "
                   + "".join(f"{c} | " for c in peer_cells)
                   + f"{'; '.join(goals) or '–'} |")
    return "\n".join(out)


def machine_info():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    return (f"{model}, {usable} of {cores} CPUs, Linux {platform.release()}, "
            f"commit {commit}, {when}")


def render(info, results, python_header, python_note):
    """results.md's text (without the chart links) from one run's results."""
    table = build_table(ROWS, results, python_header)
    text = [f"Machine: {info}", "", table, ""]
    if python_note:
        text.append(python_note)
    text.append("Cells: median (p10–p90) of one operation; ratios compare medians. "
                "vs Python = Python / multiproc; vs floor = multiproc / floor. "
                "Rows marked † time batches: each sample is a batch's time divided by its "
                "operations, and the cell gives the median (p10–p90) of those batch "
                "averages.")
    if any(r.zmq or r.boost for r in ROWS):
        text.append("Peer cells (ZeroMQ 4.3 `ipc://`, Boost.Interprocess 1.74 "
                    "`message_queue`, doing the same work beside multiproc): median "
                    "(p10–p90), then the peer's time / multiproc's.")
    text.append("The kernel floor is the least a correct implementation of the row's work "
                "must do, written straight on the kernel (each bench/*.c file says what "
                "its floors do).")
    if any(results[r.mp]["median_us"] / results[r.kernel]["median_us"] < 0.95
           for r in ROWS if r.kernel and not r.reference and r.mp in results
           and r.kernel in results):
        text.append("‡ multiproc measured more than 5% below its floor: that floor is not a "
                    "true floor there (a queue ring's consumer that outruns its producer is "
                    "woken once per message, while multiproc's slower consumer finds a "
                    "backlog and sleeps less), or the two differ by noise. The ratio is "
                    "shown as measured, and no goal is judged against such a floor. "
                    "Rows whose kernel column is a reference (the mutex Lock is built on, "
                    "the 1-worker map, the precomputed pickle) are not floors and carry no ‡.")
    extra = results.get("raw_fork_exec")
    if extra is not None:
        text.append("For reference, fork() + execv(\"/proc/self/exe\") of the same program "
                    f"+ waitpid(): {cell(extra)}.")
    speedups = [(who, results.get(f"{who}_pool_cpu_1w"), results.get(f"{who}_pool_cpu_2w"))
                for who in ("mp", "py")]
    if all(a and b for _, a, b in speedups[:1]):
        text.append("CPU-bound map (each item ≈1 ms of arithmetic, calibrated at start; "
                    "Python's items are Python arithmetic): 2 workers are "
                    + " and ".join(f"{a['median_us'] / b['median_us']:.2f}× as fast as 1 "
                                   f"({'multiproc' if who == 'mp' else 'Python'})"
                                   for who, a, b in speedups if a and b)
                    + " on the 2 CPUs.")
    if any(r in results for r in ("mpi_map_trivial", "mpi_map_cpu")):
        text.append(f"MPI rows: {MPI_RANKS} ranks on this machine under mpiexec (bench_mpi.c "
                    "says how): rank 0 and 2 worker ranks of 1 worker process each; the "
                    "kernel column is the local pool (2 spawned workers) doing the same map "
                    "on rank 0, and the Python column mpi4py.futures on the same ranks, run "
                    f"by {MPI4PY_PYTHON} (python3-mpi4py).")
    if "mp_pymgr_jobs" in results or "py_pymgr_jobs" in results:
        text.append(f"Job-queue row: one Python BaseManager ({PY_MANAGER_PYTHON}, "
                    "bench/py_py.py) serves 'get_jobs' and 'get_results' queue.Queue objects "
                    "on 127.0.0.1 to one worker at a time, each a process of its own: "
                    f"bench_py in C, py_py.py under {PY_MANAGER_PYTHON} in Python; same jobs, "
                    "same count. The server's Python sets the pace of both.")
    used = sorted({n for r in ROWS for n in (r.mp, r.py, r.kernel, r.zmq, r.boost)
                   if n and n in results})
    counts = [results[n]["n"] for n in used]
    if counts:
        few = [n for n in used if results[n]["n"] < 10]
        text.append(f"Samples: {min(counts)} to {max(counts)} per cell"
                    + (f" (fewer than 10: {', '.join(few)})" if few else "")
                    + "; results.json has each one's count.")
    return "\n".join(text) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build", help="the CMake build directory")
    ap.add_argument("--out", default=os.path.join(HERE, "results.md"),
                    help="also write the table here (default: bench/results.md)")
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    ap.add_argument("--python", help="the reference Python 3.11 (default: the faster of "
                    "Debian's and pyenv's, measured)")
    ap.add_argument("--only", help="run only these suites (comma-separated names)")
    ap.add_argument("--readme", help="replace the table between the bench markers of this file")
    ap.add_argument("--json", default=os.path.join(HERE, "results.json"),
                    help="the raw results (default: bench/results.json)")
    ap.add_argument("--png", default=os.path.join(HERE, "results.png"),
                    help="the ratio chart (default: bench/results.png)")
    ap.add_argument("--scaling-png", default=os.path.join(HERE, "scaling.png"),
                    help="the scaling chart (default: bench/scaling.png)")
    ap.add_argument("--chart-only", action="store_true",
                    help="run nothing: redraw the table and charts from the results in --json")
    args = ap.parse_args()

    if args.chart_only:
        with open(args.json, encoding="utf-8") as f:
            stored = json.load(f)
        info, results = stored["machine"], stored["results"]
        header, note = stored.get("python_header", "Python"), stored.get("python_note", "")
        limits = stored.get("limits", {})
    else:
        pythons = find_pythons(args.python)
        if not pythons:
            print("run.py: Python 3.11 not found: Python columns are n/a", file=sys.stderr)
        python, note = pick_python(pythons, args.build) if len(pythons) > 1 and not args.quick \
            else ((pythons[0] if pythons else None), "")
        if python and not note:
            note = f"Python reference: {python_build(python)}."
        header = python_short(python)
        info = machine_info()
        limits = machine_limits()
        results: Dict[str, dict] = {}
        only = set(args.only.split(",")) if args.only else None
        for suite in SUITES:
            if only is None or suite.name in only:
                results.update(run_suite(suite, args.build, python, args.quick))
    text = render(info, results, header, note)
    write_json(args.json, info, results, header, note, limits)
    charted = draw_chart(args.json, args.png, args.scaling_png)
    sys.stderr.flush()
    print(text, end="", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + (chart_link(args.png, args.scaling_png, args.out) if charted else ""))
        print(f"(written to {args.out})", file=sys.stderr)
    if args.readme:
        update_readme(args.readme, text + (chart_link(args.png, args.scaling_png, args.readme)
                                           if charted else ""))


def row_data(rows, results):
    """The rows of the table as plain data, for results.json and the chart."""
    out = []
    for row in rows:
        mp = results.get(row.mp)
        py = results.get(row.py) if row.py else None
        k = results.get(row.kernel) if row.kernel else None
        if mp is None:
            continue
        out.append({
            "label": row.label, "mp": row.mp, "py": row.py, "kernel": row.kernel,
            "kernel_label": row.kernel_label, "section": row.section,
            "vs_python": py["median_us"] / mp["median_us"] if py else None,
            "vs_kernel": mp["median_us"] / k["median_us"] if k else None,
            "min_vs_python": row.min_vs_python, "max_vs_kernel": row.max_vs_kernel,
        })
    return out


def machine_limits():
    """Sizes where a scaling curve may bend: caches, the socket buffer."""
    out = {}
    for key, var in (("l1d", "LEVEL1_DCACHE_SIZE"), ("l2", "LEVEL2_CACHE_SIZE")):
        try:   # glibc's getconf reads CPUID where /sys has no cache directory
            out[key] = int(subprocess.run(["getconf", var], capture_output=True,
                                          text=True).stdout.strip() or 0)
        except (OSError, ValueError):
            pass
    try:
        with open("/proc/sys/net/core/wmem_default") as f:
            out["sock_buf"] = int(f.read())
    except (OSError, ValueError):
        pass
    return {k: v for k, v in out.items() if v and v > 0}


def write_json(path, info, results, header, note, limits=None):
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"machine": info, "python_header": header, "python_note": note,
                   "limits": limits if limits is not None else machine_limits(),
                   "results": results, "rows": row_data(ROWS, results)},
                  f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"(results written to {path})", file=sys.stderr)


def chart_python():
    """An interpreter that has matplotlib: this one, or Debian's."""
    for cand in (sys.executable, "/usr/bin/python3", shutil.which("python3")):
        if cand and subprocess.run([cand, "-c", "import matplotlib"],
                                   capture_output=True).returncode == 0:
            return cand
    return None


def draw_chart(json_path, png_path, scaling_png):
    """The two charts from results.json; False if matplotlib is missing."""
    python = chart_python()
    if python is None:
        print("run.py: no matplotlib (scripts/install-deps.sh bench): charts not drawn",
              file=sys.stderr)
        return False
    subprocess.run([python, os.path.join(HERE, "chart.py"), "--json", json_path,
                    "--out", png_path], check=True, stdout=sys.stderr)
    subprocess.run([python, os.path.join(HERE, "scaling.py"), "--json", json_path,
                    "--out", scaling_png], check=True, stdout=sys.stderr)
    return True


def chart_link(png_path, scaling_png, doc_path):
    """The Markdown image lines for the charts, relative to the document."""
    base = os.path.dirname(os.path.abspath(doc_path))
    rel, rel2 = os.path.relpath(png_path, base), os.path.relpath(scaling_png, base)
    return (f"\n![Each row's ratio against Python and against the kernel floor, "
            f"log scales]({rel})\n"
            f"\n![How cost grows: Pool.map per item against item count, Queue and Pipe per "
            f"message against message size; multiproc, Python and the floor, log-log]({rel2})\n")


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def update_readme(path, text):
    with open(path) as f:
        doc = f.read()
    a, b = doc.find(BEGIN), doc.find(END)
    if a < 0 or b < a:
        print(f"run.py: no {BEGIN} ... {END} in {path}: not updated", file=sys.stderr)
        return
    doc = doc[:a + len(BEGIN)] + "\n" + text + doc[b:]
    with open(path, "w") as f:
        f.write(doc)
    print(f"(table updated in {path})", file=sys.stderr)


if __name__ == "__main__":
    main()
