#!/bin/sh
# scripts/gpu-bundle.sh — builds the CUDA-enabled binaries here and packs them, with the shared
# libraries they need beyond libc and the CUDA driver/toolkit, into one archive for a GPU machine
# that cannot build the project (no network, no -dev packages): scripts/gpu-check.sh --prebuilt F
# unpacks it there. usage: scripts/gpu-bundle.sh [OUT.tar.xz]  (default .gpu/bundle.tar.xz)
set -eu
cd "$(dirname "$0")/.."
out=${1:-.gpu/bundle.tar.xz}
command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ] || {
    echo "gpu-bundle: nvcc not found: the bundle needs a CUDA build" >&2; exit 2; }
make -j"$(nproc)" CUDA=1 all lab >/dev/null
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/build/rt"
for b in cleardit test_cleardit lab_attention; do
    cp "build/$b" "$stage/build/$b"
    strip --strip-debug "$stage/build/$b"
done
# the libraries a bare CUDA image may lack (OpenBLAS, Jansson, libpng, gfortran runtime, OpenMPI);
# not the CUDA libraries (cuBLASLt, NCCL: hundreds of MB, and the GPU machine has them)
ldd build/cleardit | awk '/=> \//{print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
        libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libcuda.so*|libcublas*|libnccl*|libstdc++*|libgcc_s*) ;;
        *) cp -L "$lib" "$stage/build/rt/" ;;
    esac
done
mkdir -p "$(dirname "$out")"
tar -C "$stage" -cJf "$out.tmp" build && mv "$out.tmp" "$out"
echo "gpu-bundle: $out ($(du -h "$out" | cut -f1))"
