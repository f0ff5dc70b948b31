#!/usr/bin/env bash
# deps.sh — makes sure the Debian packages cleardit builds with are installed. As root it installs
# what is missing with apt-get; otherwise it names the missing packages and fails.
set -euo pipefail
PKGS=(gcc make libc6-dev libjansson-dev libopenblas-openmp-dev libpng-dev zlib1g-dev)
PKGS+=(libopenmpi-dev openmpi-bin)   # patch parallelism (MPI) and its tests under mpirun
PKGS+=("$@")   # callers may add packages (e.g. clang for the fuzzer)
# the CUDA backend is built when nvcc is present; nvcc compiles host code with g++
if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null 2>&1; then PKGS+=(g++); fi
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "cleardit: missing Debian packages: ${missing[*]}" >&2
    echo "cleardit: install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "cleardit: installing ${missing[*]} ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
