#!/usr/bin/env bash
# test.sh — the README's test command: installs missing build packages (as root), builds, runs
# every test. The last line is "N passed, N failed"; the exit status is non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
make -j"$(nproc)" all >/dev/null
make test
