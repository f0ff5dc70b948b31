#!/usr/bin/env python3
"""make_gguf_corpus.py -- writes the GGUF fuzzer's seed corpus (fuzz/corpus_gguf/): small valid
GGUF files (every metadata value type, nested arrays, plain and block tensor types, a custom
alignment, no tensors, v2) and one malformed file per class the reader refuses (docs/gguf.md).
Deterministic, plain Python (no gguf-py: the bytes are laid out here); the outputs are committed.

  python3 fuzz/make_gguf_corpus.py     # from the repository root; rewrites fuzz/corpus_gguf/"""
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus_gguf")

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
FMT = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?", U64: "Q", I64: "q",
       F64: "d"}


def s(x):
    b = x.encode("utf-8") if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b


def val(t, v):
    if t == STR:
        return s(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(val(et, i) for i in items)
    return struct.pack("<" + FMT[t], v)


def gguf(kvs, tensors, data=b"", version=3, align=32, magic=b"GGUF", n_t=None, n_kv=None):
    """kvs: [(key, type, value)]; tensors: [(name, dims, type, offset)]."""
    out = magic + struct.pack("<IQQ", version, len(tensors) if n_t is None else n_t,
                              len(kvs) if n_kv is None else n_kv)
    for k, t, v in kvs:
        out += s(k) + struct.pack("<I", t) + val(t, v)
    for name, dims, t, off in tensors:
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", t, off)
    out += b"\0" * (-len(out) % align)
    return out + data


ARCH = [("general.architecture", STR, "flux")]
ALL_KV = ARCH + [("u8", U8, 7), ("i8", I8, -7), ("u16", U16, 600), ("i16", I16, -600), ("u32", U32, 70000),
                 ("i32", I32, -70000), ("f32", F32, 0.5), ("b", BOOL, True), ("s", STR, "h\u00e9"),
                 ("u64", U64, 2**40), ("i64", I64, -2**40), ("f64", F64, -0.25),
                 ("au", ARR, (U32, [1, 2, 3])), ("as", ARR, (STR, ["a", "", "bc"])),
                 ("aa", ARR, (ARR, [(STR, ["x"]), (U8, [1, 2])]))]
F32_T = [("w", [4, 2], 0, 0), ("b", [3], 0, 32)]
F32_D = struct.pack("<8f", *range(8)) + b"\0" * 0 + struct.pack("<3f", 1, 2, 3)
F32_D = F32_D[:32] + F32_D[32:] + b"\0" * 4

SEEDS = {
    "ok_empty": gguf([], []),
    "ok_arch": gguf(ARCH, []),
    "ok_all_kv": gguf(ALL_KV, []),
    "ok_f32": gguf(ARCH, F32_T, F32_D),
    "ok_v2": gguf(ARCH, F32_T, F32_D, version=2),
    "ok_blocks": gguf(ARCH, [("q8", [32, 2], 8, 0), ("q4k", [256], 12, 96), ("bf", [2], 30, 256),
                             ("s", [], 0, 288)], bytes(range(256)) * 2),
    "ok_align64": gguf(ARCH + [("general.alignment", U32, 64)], [("a", [3], 1, 0), ("c", [1], 0, 64)],
                       b"\1" * 68, align=64),
    "bad_magic": gguf(ARCH, [], magic=b"GGUG"),
    "bad_v1": gguf(ARCH, [], version=1),
    "bad_be": gguf(ARCH, [], version=3 << 24),
    "bad_huge_tensors": gguf(ARCH, [], n_t=1 << 60),
    "bad_huge_kv": gguf(ARCH, [], n_kv=1 << 60),
    "bad_overlap": gguf(ARCH, [("w", [4, 2], 0, 0), ("b", [3], 0, 0)], F32_D),
    "bad_misaligned": gguf(ARCH, [("w", [4, 2], 0, 0), ("b", [3], 0, 40)], F32_D + b"\0" * 16),
    "bad_dup": gguf(ARCH, [("w", [4, 2], 0, 0), ("w", [3], 0, 32)], F32_D),
    "bad_utf8": gguf(ARCH, [("w\xff".encode("latin-1"), [4, 2], 0, 0)], F32_D),
    "bad_type42": gguf(ARCH, [("w", [4, 2], 42, 0)], F32_D),
    "bad_partial_block": gguf(ARCH, [("q", [48], 8, 0)], b"\0" * 64),
    "bad_ndims5": gguf(ARCH, [("w", [2, 1, 1, 1, 1], 0, 0)], F32_D),
    "bad_align48": gguf(ARCH + [("general.alignment", U32, 48)], [], align=48),
    "bad_dup_key": gguf(ARCH + ARCH, []),
    "bad_past_eof": gguf(ARCH, [("w", [400], 0, 0)], F32_D),
}


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    for name, b in SEEDS.items():
        with open(os.path.join(OUT, name + ".gguf"), "wb") as f:
            f.write(b)
    for name in ("all_types.gguf", "align64.gguf"):
        shutil.copy(os.path.join(ROOT, "tests", "fixtures", "gguf", name), os.path.join(OUT, "fixture_" + name))
    print("wrote", len(SEEDS) + 2, "seeds to", OUT)


if __name__ == "__main__":
    main()
