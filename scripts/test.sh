#!/usr/bin/env bash
# test.sh — the README's test command: installs missing build packages (as root), builds, runs
# every test: the test runner, then patch parallelism under mpirun with 2 and 3 processes (MPI
# builds). The last line is the total "N passed, N failed"; the exit status is non-zero on any
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
make -j"$(nproc)" all >/dev/null
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
make test | tee "$log" || status=1
counts=$(tail -n 1 "$log")
pass=$(echo "$counts" | awk '{print $1}')
fail=$(echo "$counts" | awk '{print $3}')
if [ -x build/test_mpi ]; then
    for np in 2 3; do
        echo "== patch parallelism under mpirun -np $np (tests/mpi/test_patch.c)"
        OMP_NUM_THREADS=1 timeout 600 scripts/mpirun.sh -np "$np" build/test_mpi | tee "$log" || status=1
        line=$(tail -n 1 "$log")
        case "$line" in
            *" passed, "*" failed") pass=$((pass + $(echo "$line" | awk '{print $1}')))
                                    fail=$((fail + $(echo "$line" | awk '{print $3}'))) ;;
            *) fail=$((fail + 1)) ;;
        esac
    done
fi
[ "${pass:-}" ] || { pass=0; fail=$((fail + 1)); }
echo "$pass passed, $fail failed"
[ "$status" -eq 0 ] && [ "$fail" -eq 0 ]
