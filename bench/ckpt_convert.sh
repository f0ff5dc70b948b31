#!/bin/sh
# ckpt_convert.sh — evidence for `cleardit inspect` speed and `cleardit convert` memory on
# multi-GB FLUX-shaped checkpoints.
#
#   bench/ckpt_convert.sh [CLEARDIT] [DEPTH SINGLE]     # defaults: build/cleardit, 3 4
#
# Writes under ${TMPDIR:-/tmp}/cd_ckpt_bench.XXXXXX (deleted at the end):
#   sparse.safetensors  a FLUX.1-dev-shaped BFL checkpoint (hidden 3072, 19 + 38 blocks, BF16,
#                       23.8 GB) as a sparse file: a valid header, data = a hole (no disk space)
#   flux.safetensors    hidden 3072 with DEPTH double + SINGLE single blocks, BF16, random bytes
#                       (3.3 GB for 3 + 4), written for real
# then prints: inspect wall time (mean of 20 runs, process start included; `--version` for
# comparison), and for convert BFL -> diffusers, diffusers -> BFL and BFL -> diffusers --dtype f32
# the wall time and the peak RSS (/usr/bin/time), each from a cold page cache for its input
# (posix_fadvise DONTNEED on that file only; convert fsyncs its output, so the time includes
# the write to disk: compare with "cp + sync"), and checks that BFL -> diffusers -> BFL equals
# BFL -> BFL byte for byte. Needs python3 (stdlib only) and /usr/bin/time; about 2.5x the file
# size of free disk. Not a test.
set -eu
BIN=${1:-build/cleardit}
DEPTH=${2:-3}
SINGLE=${3:-4}
[ -x "$BIN" ] || { echo "ckpt_convert.sh: $BIN not found (run make)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "ckpt_convert.sh: /usr/bin/time not found (apt-get install time)" >&2; exit 2; }
DIR=$(mktemp -d "${TMPDIR:-/tmp}/cd_ckpt_bench.XXXXXX")
trap 'rm -rf "$DIR"' EXIT INT TERM

python3 - "$DIR" "$DEPTH" "$SINGLE" <<'EOF'
# BFL names and shapes of docs/flux.md section 2 (hidden 3072, mlp 12288, in/out 64, T5 4096,
# CLIP 768, guidance embedder), BF16.
import json, os, struct, sys
d, depth, single = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
D, M = 3072, 12288

def tensors(nd, ns):
    t = []
    lin = lambda n, o, i: t.extend([(n + ".weight", [o, i]), (n + ".bias", [o])])
    lin("img_in", D, 64); lin("txt_in", D, 4096)
    for p, i in (("time_in", 256), ("vector_in", 768), ("guidance_in", 256)):
        lin(p + ".in_layer", D, i); lin(p + ".out_layer", D, D)
    for b in range(nd):
        for s in ("img", "txt"):
            p = f"double_blocks.{b}.{s}"
            lin(p + "_mod.lin", 6 * D, D); lin(p + "_attn.qkv", 3 * D, D)
            t.extend([(p + "_attn.norm.query_norm.scale", [128]), (p + "_attn.norm.key_norm.scale", [128])])
            lin(p + "_attn.proj", D, D); lin(p + "_mlp.0", M, D); lin(p + "_mlp.2", D, M)
    for b in range(ns):
        p = f"single_blocks.{b}."
        lin(p + "linear1", 3 * D + M, D); lin(p + "linear2", D, D + M)
        t.extend([(p + "norm.query_norm.scale", [128]), (p + "norm.key_norm.scale", [128])])
        lin(p + "modulation.lin", 3 * D, D)
    lin("final_layer.linear", 64, D); lin("final_layer.adaLN_modulation.1", 2 * D, D)
    return t

def write(path, t, sparse):
    hdr, off = {}, 0
    for name, shape in t:
        n = 2
        for s in shape:
            n *= s
        hdr[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        if sparse:
            f.truncate(8 + len(h) + off)
            return
        left = off
        while left:
            k = min(left, 64 << 20)
            f.write(os.urandom(k))
            left -= k

write(os.path.join(d, "sparse.safetensors"), tensors(19, 38), True)
write(os.path.join(d, "flux.safetensors"), tensors(depth, single), False)
EOF

evict() { python3 -c 'import os,sys
fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$1"; }
mean_ms() { # mean wall time of 20 runs of "$@", in ms
    python3 -c 'import subprocess, sys, time
t = time.perf_counter()
for _ in range(20): subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
print("%.1f" % ((time.perf_counter() - t) / 20 * 1e3))' "$@"; }
size_gb() { python3 -c 'import os,sys; print("%.2f" % (os.path.getsize(sys.argv[1]) / 1e9))' "$1"; }
timed() { # label, command...: wall s and peak RSS MB
    label=$1; shift
    /usr/bin/time -f "%e %M" -o "$DIR/t" "$@" --quiet
    awk -v l="$label" '{printf "  %-34s %7.1f s  %8.0f MB peak RSS\n", l, $1, $2 / 1024}' "$DIR/t"; }

echo "cleardit inspect (mean of 20 runs, process start included)"
echo "  sparse FLUX.1-dev, $(size_gb "$DIR/sparse.safetensors") GB   $(mean_ms "$BIN" inspect "$DIR/sparse.safetensors") ms"
echo "  random, $(size_gb "$DIR/flux.safetensors") GB              $(mean_ms "$BIN" inspect "$DIR/flux.safetensors") ms"
echo "  cleardit --version            $(mean_ms "$BIN" --version) ms"
echo "cleardit convert, $(size_gb "$DIR/flux.safetensors") GB BF16 input (hidden 3072, $DEPTH + $SINGLE blocks), cold cache"
evict "$DIR/flux.safetensors"
timed "BFL -> diffusers" "$BIN" convert "$DIR/flux.safetensors" "$DIR/dif.safetensors" --layout diffusers
evict "$DIR/dif.safetensors"
timed "diffusers -> BFL" "$BIN" convert "$DIR/dif.safetensors" "$DIR/back.safetensors" --layout bfl
rm -f "$DIR/dif.safetensors"
evict "$DIR/flux.safetensors"
timed "BFL -> BFL" "$BIN" convert "$DIR/flux.safetensors" "$DIR/same.safetensors" --layout bfl
cmp -s "$DIR/same.safetensors" "$DIR/back.safetensors" && echo "  BFL -> diffusers -> BFL == BFL -> BFL, byte for byte" \
    || { echo "  ROUND TRIP DIFFERS" >&2; exit 1; }
rm -f "$DIR/same.safetensors" "$DIR/back.safetensors"
evict "$DIR/flux.safetensors"
timed "BFL -> diffusers --dtype f32" "$BIN" convert "$DIR/flux.safetensors" "$DIR/f32.safetensors" --layout diffusers --dtype f32
rm -f "$DIR/f32.safetensors"
evict "$DIR/flux.safetensors"
/usr/bin/time -f "%e %M" -o "$DIR/t" sh -c 'cp "$1" "$2" && sync "$2"' sh "$DIR/flux.safetensors" "$DIR/copy.safetensors"
awk '{printf "  %-34s %7.1f s  %8.0f MB peak RSS\n", "cp + sync (for comparison)", $1, $2 / 1024}' "$DIR/t"
