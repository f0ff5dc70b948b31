#!/usr/bin/env bash
# format.sh — applies .clang-format to the project's C, CUDA and C++ sources; with --check, changes
# nothing and fails (listing the files) when any file is not formatted. CI runs --check.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "format.sh: clang-format is not installed (scripts/deps.sh clang-format)" >&2; exit 1; }
mapfile -t files < <(git ls-files 'include/*.h' 'src/*.c' 'src/*.h' 'src/*.cu' 'src/*.cuh' 'tests/*.c' 'tests/*.h' \
                     'lab/*.c' 'lab/*.h' 'lab/*.cu' 'lab/*.cuh' 'lab/*.cpp' 'bench/*.c' 'examples/*.c' 'fuzz/*.c')
if [ "${1:-}" = "--check" ]; then
    bad=()
    for f in "${files[@]}"; do
        clang-format --style=file "$f" | cmp -s - "$f" || bad+=("$f")
    done
    if [ ${#bad[@]} -ne 0 ]; then
        echo "format.sh: ${#bad[@]} file(s) differ from .clang-format (run scripts/format.sh):" >&2
        printf '  %s\n' "${bad[@]}" >&2
        exit 1
    fi
    echo "format.sh: ${#files[@]} files formatted"
else
    clang-format --style=file -i "${files[@]}"
fi
