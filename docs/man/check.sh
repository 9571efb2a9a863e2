#!/bin/sh
# Check the man pages: each renders with groff without a single warning,
# and every prototype in a SYNOPSIS is declared as such in the header.
#
#   docs/man/check.sh [SOURCE_DIR]
#
# Exits 77 (a skip for CTest) when groff is not installed.
set -eu
src=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
cd "$src/docs/man"
if ! command -v groff >/dev/null 2>&1; then
    echo "groff not installed: man pages not checked (skipped)"
    exit 77
fi
fail=0
n=0
for page in man3/*.3; do
    n=$((n + 1))
    # groff -ww prints warnings but still exits 0: any output is a failure.
    out=$(groff -man -ww -z "$page" 2>&1) || fail=1
    if [ -n "$out" ]; then
        printf '%s:\n%s\n' "$page" "$out"
        fail=1
    fi
done
if command -v python3 >/dev/null 2>&1; then
    python3 check_synopsis.py "$src/include/multiproc.h" man3/*.3 || fail=1
fi
if [ "$fail" = 0 ]; then
    echo "$n man pages render cleanly and match the header"
fi
exit "$fail"
