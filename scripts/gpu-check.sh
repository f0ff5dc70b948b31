#!/bin/sh
# scripts/gpu-check.sh — the GPU check of the CUDA backend, in one call of at most ~8 minutes on
# one H100/H200:
#  1. build: make CUDA=1 all lab (or --prebuilt F: unpack a bundle made by scripts/gpu-bundle.sh,
#     for GPU machines without the project's build dependencies)
#  2. the CUDA tests (test_cleardit cuda: device, model, patch parallelism, CLI, and the op
#     harness's CUDA rows) and the op harness on every backend of this machine (test_cleardit
#     ops_harness: the CUDA table and the CPU tables under every ISA against the reference)
#  3. the kernel lab: every attention kernel version validated against the CPU reference
#  4. attention per layer for FLUX.1 shapes (24 x 128, T = 512) at 1024^2 .. 8192^2, dense and
#     r = 8/16/32, every kernel version: time, useful TFLOP/s, % of the card's bf16 peak
#  5. the peer: the same shapes through PyTorch (SDPA dense, FlexAttention with the CLEAR mask)
#  6. one FLUX.1-shaped transformer forward per resolution (random bf16 weights; 1 double + 1
#     single block timed, scaled to 19 + 38), dense and r = 8/16/32
#  7. the summary table (scripts/gpu_report.py)
# Logs and JSON go to $OUT (when set) or gpu-check-out/. A failing step is reported and the others
# still run; the exit status is 1 when any step failed.
# usage: scripts/gpu-check.sh [--prebuilt BUNDLE] [--sizes 1024,2048,4096,8192] [--quick]
#                             [--skip-peer]  (the PyTorch peer takes ~2 of the ~4 minutes)
#                             [--variants all|LIST]  (attention kernel versions timed)
set -u
cd "$(dirname "$0")/.."
prebuilt= sizes=1024,2048,4096,8192 quick=0 peer=1 variants=all
while [ $# -gt 0 ]; do
    case "$1" in
        --prebuilt) prebuilt=$2; shift 2 ;;
        --sizes) sizes=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --skip-peer) peer=0; shift ;;
        --variants) variants=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
out=${OUT:-gpu-check-out}
mkdir -p "$out"
failed=0
t0=$(date +%s)
step() { # step NAME SECONDS CMD... : runs CMD with a time limit, output to $out/NAME.log
    name=$1 limit=$2; shift 2
    s=$(date +%s)
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    tail -n 25 "$out/$name.log"
    echo "== $name: exit $rc, $(( $(date +%s) - s )) s"
    [ $rc -eq 0 ] || failed=1
    return $rc
}

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader 2>&1 | tee "$out/gpu.txt"

if [ -n "$prebuilt" ]; then
    tar -xJf "$prebuilt" || { echo "gpu-check: cannot unpack $prebuilt" >&2; exit 1; }
    LD_LIBRARY_PATH=$PWD/build/rt${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
else
    step build 300 make -j"$(nproc)" CUDA=1 all lab || exit 1
fi
# cuBLASLt and NCCL: the toolkit's (runpath), else the ones PyTorch's wheels carry
sp=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null || true)
for lib in libcublasLt.so.13 libnccl.so.2; do
    [ -e "/usr/local/cuda/lib64/$lib" ] && continue
    found=$(find $sp /usr/local/cuda* /usr/lib -name "$lib*" 2>/dev/null | head -n 1)
    [ -n "$found" ] && LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$(dirname "$found")
done
export LD_LIBRARY_PATH
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}

step tests 90 env CLEARDIT_BIN=build/cleardit build/test_cleardit cuda
step ops 60 build/test_cleardit ops_harness
if ! step lab_check 90 build/lab_attention --check; then
    # timing kernels that compute the wrong thing tells nothing: keep the device time for a rerun
    echo "gpu-check: the kernel lab's check failed; benchmarks skipped ($(( $(date +%s) - t0 )) s)"
    exit 1
fi
radii=0,8,16,32
[ $quick -eq 1 ] && sizes=1024,2048 && radii=0,16
step lab_bench 150 build/lab_attention --bench --sizes "$sizes" --radii "$radii" --variants "$variants" --json "$out/lab_bench.json"
[ $peer -eq 1 ] && step peer 150 python3 bench/flex_attention_peer.py --sizes "$sizes" --radii "$radii" --json "$out/peer.json"
grids=$(echo "$sizes" | tr ',' '\n' | awk '{printf "%s%d", (NR>1?",":""), $1/16}')
fr=$(echo "$radii" | sed 's/^0,//')
step forward 120 sh -c "build/cleardit bench forward --device cuda --grids $grids --radii $fr --json > '$out/forward.json'"
python3 scripts/gpu_report.py "$out" | tee "$out/report.md"
echo "gpu-check: $(( $(date +%s) - t0 )) s; $( [ $failed -eq 0 ] && echo 'all steps passed' || echo 'SOME STEPS FAILED (logs in '"$out"')')"
exit $failed
