#!/usr/bin/env bash
# demo.sh — the README's main job: installs missing build packages (as root), builds, and
# generates images with the model this project trained and ships (embedded in the binary):
# OUT/PROMPT.png with dense attention and OUT/PROMPT_clear.png with its distilled CLEAR attention,
# for the prompts given (default: sneaker). A few seconds on two cores.
#   scripts/demo.sh                      # sneaker.png, sneaker_clear.png in the current directory
#   scripts/demo.sh "ankle boot" bag     # any of: t-shirt trouser pullover dress coat sandal
#                                        #         shirt sneaker bag "ankle boot"
# OUT is $DEMO_OUT (default: the current directory).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${DEMO_OUT:-$PWD}"
"$root/scripts/deps.sh"
make -C "$root" -j"$(nproc)" build/cleardit >/dev/null
[ $# -eq 0 ] && set -- sneaker
for p in "$@"; do
    f="$out/${p// /_}"
    "$root/build/cleardit" generate --prompt "$p" --seed 1 -o "$f.png"
    "$root/build/cleardit" generate --prompt "$p" --seed 1 --attention clear -o "${f}_clear.png"
done
