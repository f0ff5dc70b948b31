#!/usr/bin/env bash
# demo.sh — the README's main job until the default model ships: installs missing build packages
# (as root), builds, prints the exact attention FLOPs of FLUX.1 at 1024^2 and 8192^2, runs the
# dense-vs-CLEAR attention benchmark, then a full-width FLUX transformer forward (random weights,
# one double and one single block) dense vs CLEAR (about 1.5 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
make -j"$(nproc)" build/cleardit >/dev/null
build/cleardit flops --width 1024 --height 1024 --radius 16
echo
build/cleardit flops --width 8192 --height 8192 --radius 8
echo
build/cleardit bench attention "$@"
echo
build/cleardit bench forward --grids 32 --radii 8,16
