#!/usr/bin/env bash
# fetch_clip_vocab.sh DIR — downloads CLIP's real BPE vocabulary (bpe_simple_vocab_16e6.txt.gz,
# shipped inside the open_clip_torch wheel from PyPI; no torch is installed), checks its SHA-256 and
# prints its path. The tokenizer test clip_bpe_real_vocab_matches_transformers reads it through
# CLEARDIT_CLIP_VOCAB (CI does this: .ci/run):
#   export CLEARDIT_CLIP_VOCAB=$(scripts/fetch_clip_vocab.sh /tmp/clipvocab)
set -euo pipefail
dir=${1:?usage: scripts/fetch_clip_vocab.sh DIR}
mkdir -p "$dir"
out="$dir/bpe_simple_vocab_16e6.txt.gz"
sum=924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a
if ! echo "$sum  $out" | sha256sum -c - >/dev/null 2>&1; then
    [ -x "$dir/venv/bin/pip" ] || python3 -m venv "$dir/venv" >&2
    "$dir/venv/bin/pip" download --quiet --no-deps --only-binary=:all: open_clip_torch==3.3.0 -d "$dir" >&2
    python3 - "$dir" <<'PY'
import glob, sys, zipfile
d = sys.argv[1]
z = zipfile.ZipFile(glob.glob(d + "/open_clip_torch-*.whl")[0])
open(d + "/bpe_simple_vocab_16e6.txt.gz", "wb").write(z.read("open_clip/bpe_simple_vocab_16e6.txt.gz"))
PY
    echo "$sum  $out" | sha256sum -c - >&2
fi
echo "$out"
