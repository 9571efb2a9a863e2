#!/bin/sh
# Run every libFuzzer target for SECONDS each, offline, with a fresh random
# seed per run (CI's short runs keep -seed=1 so that a failure reproduces;
# here each run explores somewhere else).  Starts from the checked-in
# corpus and the corpus earlier runs grew in the build tree, with the
# target's dictionary.  Prints the executions of each target and a
# summary; exits non-zero if any target found a crash (its input is in
# BUILD/fuzz-artifacts/, with the seed to rerun it).
#
#   scripts/fuzz.sh BUILD SECONDS [TARGET...]
set -u
build=${1:?usage: fuzz.sh BUILD SECONDS [TARGET...]}
seconds=${2:?usage: fuzz.sh BUILD SECONDS [TARGET...]}
shift 2
src=$(cd "$(dirname "$0")/.." && pwd)
fuzz="$build/tests/fuzz"
targets=${*:-"fuzz_args fuzz_prep fuzz_conn fuzz_manager fuzz_queue fuzz_tracker fuzz_forkserver fuzz_bootstrap fuzz_manager_client fuzz_pickle fuzz_pymgr_reply"}
artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"
summary=""
failed=0
for t in $targets; do
    corpus=${t#fuzz_}
    work="$fuzz/corpus-$corpus"
    log="$artifacts/$t.log"
    mkdir -p "$work"
    seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
    echo "== $t: $seconds s, seed $seed"
    "$fuzz/$t" -max_total_time="$seconds" -seed="$seed" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -dict="$src/tests/fuzz/$t.dict" \
        -artifact_prefix="$artifacts/$t-" "$work" "$src/tests/fuzz/corpus/$corpus" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    if [ "$rc" -eq 0 ]; then
        verdict=ok
    else
        verdict="FAILED (exit $rc, see $log)"
        failed=1
        grep -E "^(==[0-9]+==ERROR|SUMMARY|fuzz_)" "$log" | head -5
    fi
    line=$(printf '%-20s %12s execs %8s/s  seed %-10s %s' "$t" "${execs:-?}" "${rate:-?}" "$seed" "$verdict")
    echo "$line"
    summary="$summary$line
"
done
echo
echo "fuzz: $seconds s per target"
printf '%s' "$summary"
exit $failed
