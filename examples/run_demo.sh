#!/usr/bin/env bash
# Run every example and check it: exit status 0 and a few expected lines.
#
#   examples/run_demo.sh BUILD_EXAMPLES_DIR [-v] [NAME...]
#
# Each example runs under `timeout` (MP_DEMO_TIMEOUT seconds, default 60);
# mpi_primes (built when MPI was found) under mpiexec -n 3, with the options
# of tests/mpi/run_mpi.sh (one machine, oversubscribed, shared memory).
# Each prints one PASS/FAIL line; its output is shown when it fails, or
# always with -v.  The main demo (pool_demo) runs last, with its own output
# live on the terminal (progress bar, speed-up, the crashed chunk), and is
# checked like the others.  At the end, no
# process of these programs may be left running (a leaked daemon or fork
# server).  Exits non-zero if anything failed.
set -u

usage() { echo "usage: $0 BUILD_EXAMPLES_DIR [-v] [NAME...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
dir=$(cd "$1" 2>/dev/null && pwd) || { echo "$0: no such directory: $1" >&2; exit 2; }
shift
verbose=0
only=()
for a in "$@"; do
    case $a in
        -v) verbose=1 ;;
        -*) usage ;;
        *) only+=("$a") ;;
    esac
done
limit=${MP_DEMO_TIMEOUT:-60}

# name:  extended regexps its output must match (one per line); a leading
# "N*" means the pattern must match at least N lines.
declare -A expect
expect[hello]='^hello bob$
^child process$
^main process$
^hello: OK$'
expect[sing_dance]='3*^singing\.\.\.$
3*^dancing\.\.\.$
^singing: pid [0-9]+, ppid [0-9]+$
Process-1 exited with 0, Process-2 exited with 0
^sing_dance: OK$'
expect[args_kwargs]='6*sings \(3/3\)
positional args +under spawn: exit code 0
keyword args \(struct\) +under spawn: exit code 0
keyword args \(pairs\) +under spawn: exit code 0
^args_kwargs: OK$'
expect[os_fork]='^2\. w=100, child pid=[0-9]+, its parent pid=[0-9]+$
raw fork: child [0-9]+ reaped, exit status 0
^2\. w=0 at 0x[0-9a-f]+, child pid=[0-9]+
spawn: child exit code 0
^os_fork: OK$'
expect[subclass]='5*^counter \(pid [0-9]+\): [1-5]$
counter \(spawn\) exited with 15, expected 15
greeter \(spawn\) exited with 0, expected 0
^subclass: OK$'
expect[start_methods]='set_start_method\("fork"\) again = MP_EALREADY +ok
get_all_start_methods: 3: fork spawn forkserver
start method forkserver$
forkserver child exited with 0 +ok
^start_methods: OK$'
expect[daemon]='its exit waited for the 0\.5 s non-daemon .* ok$
the daemon that would run forever is gone too +ok
in the daemon: start a child -> MP_EPERM
its daemon died with it +ok
^daemon: OK$'
expect[exit_codes]='^mp_process_terminate +-15 +-15$
^mp_process_kill +-9 +-9$
^abort\(\) +-6 +-6$
^exit\(7\) +7 +7$
^exit_codes: OK$'
expect[process_info]='I am Process-1:1, pid [0-9]+; my parent is Process-1
two started: active_children\(\) = 2 +ok
readable once it ended .* ok$
^process_info: OK$'
expect[pipe]='^fork +parent_conn\.recv\(\) = \[42, 3\.5, .hello.\]$
^spawn +parent_conn\.recv\(\) = \[42, 3\.5, .hello.\]$
^forkserver +parent_conn\.recv\(\) = \[42, 3\.5, .hello.\]$
^ping 3 -> pong 3$
^one-way: received 0 1 4 9 16, then end of file$
sending on the reader: MP_EBADF .* ok$
^pipe: OK$'
expect[lock10]='^pid: [0-9]+$
10*^pid: [0-9]+, num: [0-9]$
^fork +10 processes went through the lock one at a time, each number once, .* ok$
^spawn +10 processes went through the lock one at a time, each number once, .* ok$
^forkserver +10 processes went through the lock one at a time, each number once, .* ok$
^lock10: OK$'
expect[value_counter]='^fork +counter\.value = 40000 \(4 processes x 10000 increments\) +ok$
^spawn +counter\.value = 40000 .* ok$
^forkserver +counter\.value = 40000 .* ok$
^value_counter: OK$'
expect[array_fill]='^3\.1415927$
^\[0, -1, -2, -3, -4, -5, -6, -7, -8, -9\]$
3*num\.value and arr\[:\] as Python prints them +ok$
^squares: \[0, 1, 4, 9, 16, 25, .*, 324, 361\]$
3*4 children filled 20 squares +ok$
^array_fill: OK$'
expect[barrier_pipeline]='^step 0: +source: 0 +square: - +add one: - +sink: -$
^step 4: +source: 4 +square: 3\*3=9 +add one: 4\+1=5 +sink: results\[1\]=2$
^step 8: +source: - +square: - +add one: - +sink: results\[5\]=26$
3*6 items through 4 stages in 9 steps: 1 2 5 10 17 26 +ok$
^barrier_pipeline: OK$'
expect[queue_producer_consumer]='3*^Process to read: [0-9]+$
6*^Process to write: [0-9]+$
3*^Put A to queue\.\.\.$
3*^Get Z from queue\.$
3*^reader: 6 values, each producer.s in order: yes$
^fork: producers exited with 0: yes, reader exited with 0, queue empty: yes +ok$
^spawn: producers exited with 0: yes, reader exited with 0, queue empty: yes +ok$
^forkserver: producers exited with 0: yes, reader exited with 0, queue empty: yes +ok$
^queue_producer_consumer: OK$'
expect[joinable_work_queue]='^join\(timeout=0\.05\) before any worker runs: MP_ETIMEDOUT$
^tasks\.join\(\) returned after [0-9.]+ s: all 20 tasks done$
^results: 20, sum of squares 2470; tasks per worker:( [0-9]+){4}$
every task done exactly once, every square right +ok$
the sentinels stopped every worker, all exited with 0 +ok$
^task_done\(\) once too often: MP_EINVAL
^joinable_work_queue: OK$'
expect[shm_python]='^C created psm_[0-9a-f]{8}, 64 bytes$
^C wrote: .hello from C. \[1, 2, 3, 4\] in psm_[0-9a-f]{8}$
^python read: .hello from C. \[1, 2, 3, 4\]$
^C read: .hello from Python. \[2, 4, 6, 8\] in psm_[0-9a-f]{8}$
^shm_python: OK$'
expect[pool_map]='^fork +\[0, 1, 4, 9, 16, 25, 36, 49, 64, 81\]$
^spawn +\[0, 1, 4, 9, 16, 25, 36, 49, 64, 81\]$
^forkserver +\[0, 1, 4, 9, 16, 25, 36, 49, 64, 81\]$
^Parent process [0-9]+\.$
5*^Run task [0-4] \([0-9]+\)\.\.\.$
5*^Task [0-4] runs [0-9.]+ seconds\.$
5*^callback: task [0-4] returned [0-9]+ \(in the parent, pid [0-9]+\)$
^Waiting for all subprocesses done\.\.\.$
^All subprocesses done\.$
apply_async after close\(\): MP_EINVAL .* ok$
the callback ran once for each of the 5 tasks +ok$
5 tasks sleeping [0-9.]+ s in all took [0-9.]+ s on 4 workers +ok$
^400$
^We lacked patience and got a multiprocessing\.TimeoutError$
^pool_map: OK$'
expect[pool_demo]='^  serial: [0-9]+ primes in
^  pool of [0-9]+: .* speed-up [0-9.]+x$
^  chunk 42 failed: MP_EWORKER \(its worker was killed by signal 9\)
recounted it on the replaced worker: ([0-9]+) primes in all \(serial: [0-9]+\) ok$'
expect[pool_crash]='3*^  map over 1000 items: MP_EWORKER, item 500, signal 9
3*the map reports item 500: MP_EWORKER, killed by signal 9 +ok$
3*^  the other 999 results: 0 wrong$
3*imap: exactly one failure, item 500, the rest in order +ok$
3*the pool goes on: a second map of all 1000 items succeeds +ok$
3*apply\(square, \(12,\)\) = 144 on the replaced workers +ok$
^pool_crash: OK$'
expect[manager_dict]='^manager server: pid [0-9]+ at unix:
^fork +\{.task-00.: .0 by worker 0., .*.task-11.: .121 by worker 3.\}$
3*4 workers wrote 12 results, done counter 12, 0 wrong ok$
^d\[.task-99.\] -> MP_ENOENT ok$
^manager_dict: OK$'
expect[big_data]='^map over 10\^7 items in shared buffers: all right +ok$
^the same map over private arrays: all right +ok$
^in place: [0-9.]+ ns per item; copied in and out: [0-9.]+ ns per item$
^2 writers set 400000 keys in batches of 1000: [0-9]+ sets per second$
^writers and reader exited with 0 \(the reader never saw a != b\) +ok$
^every key is there, once +ok$
^big_data: OK$'
expect[remote_queue]='^server pid [0-9]+ serving on tcp:127\.0\.0\.1:[0-9]+$
3*^worker [0-9]+: [0-9]+ tasks done$
^result: 0 -> 0 by pid [0-9]+$
^30 results from [0-9]+ worker processes: every task done exactly once, every square right ok$
^3 of 3 workers exited with 0 ok$
^connecting with a wrong authkey: MP_E[A-Z]+ ok$
^remote_queue: OK$'
expect[python_job_queue]='^Python server pid [0-9]+: serving jobs on tcp:127\.0\.0\.1:[0-9]+$
^connecting with a wrong authkey: MP_EAUTH ok$
3*^C worker [0-9]+: [0-9]+ jobs done$
^3 of 3 C workers exited with 0 ok$
^40 jobs done by [1-3] C workers, each once, every result right ok$
^objects the manager still holds after the workers left: 0 ok$
^python_job_queue: OK$'
expect[mpi_primes]='^counting the primes below 6000000 in 120 chunks on the other ranks$
^  chunk 42 failed: MP_EWORKER \(its worker was killed by signal 9\)
^  recounted it: 412849 primes in all \(pi\(6000000\) = 412849\) ok$'
order=(hello sing_dance args_kwargs os_fork subclass start_methods daemon exit_codes
       process_info pipe lock10 value_counter array_fill barrier_pipeline
       queue_producer_consumer joinable_work_queue shm_python
       pool_map pool_crash manager_dict remote_queue python_job_queue big_data pool_demo)
# over MPI: only where libmultiproc-mpi was built and mpiexec is there
if [ -x "$dir/mpi_primes" ] && command -v mpiexec >/dev/null 2>&1; then
    order+=(mpi_primes)
fi
[ ${#only[@]} -gt 0 ] && order=("${only[@]}")
# C workers for a Python manager: only where a Python 3 runs ($PYTHON or python3)
if ! command -v "${PYTHON:-python3}" >/dev/null 2>&1; then
    kept=()
    for name in "${order[@]}"; do
        if [ "$name" = python_job_queue ]; then
            echo "SKIP  python_job_queue (no ${PYTHON:-python3} found)"
        else
            kept+=("$name")
        fi
    done
    order=(${kept[@]+"${kept[@]}"})
fi
# how each program is started: directly, or (MPI) under mpiexec on 3 ranks
declare -A launch
launch[mpi_primes]="mpiexec --oversubscribe --allow-run-as-root --bind-to none
 --mca btl self,vader --mca btl_vader_single_copy_mechanism none
 --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo -n 3"

# The main demo, shown live: it goes last.
main_demo=pool_demo
rest=()
has_main=0
for name in "${order[@]}"; do
    if [ "$name" = "$main_demo" ]; then has_main=1; else rest+=("$name"); fi
done
order=(${rest[@]+"${rest[@]}"})
[ $has_main -eq 1 ] && order+=("$main_demo")
# Line-buffered output through the pipe to tee, so each line shows at once.
linebuf=()
command -v stdbuf >/dev/null 2>&1 && linebuf=(stdbuf -oL -eL)

logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT
pass=0
fail=0
failed=()

for name in "${order[@]}"; do
    exe=$dir/$name
    log=$logdir/$name.log
    why=""
    if [ ! -x "$exe" ]; then
        why="not built ($exe)"
    else
        start=$(date +%s%N)
        if [ "$name" = "$main_demo" ]; then
            echo "---- $name, the main demo (examples/$name.c):"
            timeout -k 5 "$limit" ${linebuf[@]+"${linebuf[@]}"} "$exe" 2>&1 | tee "$log"
            rc=${PIPESTATUS[0]}
            # (cut off mid-line, e.g. in its progress bar: end that line)
            [ -n "$(tail -c 1 "$log")" ] && echo
            echo "----"
        else
            # shellcheck disable=SC2086  # (the launcher's words)
            timeout -k 5 "$limit" ${launch[$name]:-} "$exe" >"$log" 2>&1
            rc=$?
        fi
        ms=$((($(date +%s%N) - start) / 1000000))
        if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
            why="timed out after ${limit} s"
        elif [ $rc -ne 0 ]; then
            why="exit status $rc"
        fi
        while IFS= read -r pat; do
            [ -n "$pat" ] || continue
            want=1
            if [[ $pat =~ ^([0-9]+)\*(.*)$ ]]; then
                want=${BASH_REMATCH[1]}
                pat=${BASH_REMATCH[2]}
            fi
            got=$(grep -cE -- "$pat" "$log")
            if [ "$got" -lt "$want" ]; then
                why="${why:+$why; }expected ${want} line(s) matching /$pat/, got $got"
            fi
        done <<<"${expect[$name]:-}"
    fi
    if [ -z "$why" ]; then
        pass=$((pass + 1))
        printf 'PASS  %-14s %6d ms\n' "$name" "$ms"
        [ $verbose -eq 1 ] && [ "$name" != "$main_demo" ] && sed 's/^/      | /' "$log"
    else
        fail=$((fail + 1))
        failed+=("$name")
        printf 'FAIL  %-14s %s\n' "$name" "$why"
        # (the main demo's output was just shown)
        [ -f "$log" ] && [ "$name" != "$main_demo" ] && sed 's/^/      | /' "$log"
    fi
done

# Nothing may outlive the examples: look for any process running one of them.
sleep 0.2
leftover=""
for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    case $exe in
        "$dir"/*) leftover="$leftover ${p#/proc/}($(basename "$exe"))" ;;
    esac
done
if [ -n "$leftover" ]; then
    fail=$((fail + 1))
    failed+=("leftover processes:$leftover")
    echo "FAIL  processes left running:$leftover"
fi

echo "----"
echo "examples: $pass passed, $fail failed${failed[*]:+ (${failed[*]})}"
[ $fail -eq 0 ]
