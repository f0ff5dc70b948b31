#!/usr/bin/env python3
"""make_corpus.py -- writes the fuzzer's seed corpus (fuzz/corpus/) and the hand-made nasty
inputs of the regression test (tests/fuzz_regressions/). Deterministic; the outputs are committed.

  python3 fuzz/make_corpus.py        # from the repository root; rewrites both directories

Seeds are small valid and malformed safetensors files (one per malformed class of
docs/safetensors.md) and checkpoint indexes (*.json) naming the shards that fuzz_safetensors.c
creates at start-up: a.safetensors (x: F32 [2], y: BF16 [3]) and b.safetensors (z: F16 [1]).
In tests/fuzz_regressions/ a file named ok-* must be accepted, every other one rejected."""
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
REGR = os.path.join(ROOT, "tests", "fuzz_regressions")


def st(header, data=b"", hlen=None):
    """[u64 header length][header][data]; header is a dict (dumped compactly) or raw str/bytes."""
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"))
    if isinstance(header, str):
        header = header.encode("utf-8")
    n = len(header) if hlen is None else hlen
    return struct.pack("<Q", n) + header + data


def t(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


VALID = {
    "empty": st({}),
    "meta_only": st({"__metadata__": {"format": "pt", "note": "r\u00e9sum\u00e9"}}),
    "padded": st('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}      ', b"\x01\x02"),
    "ws_both": st(' \n{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}\r\t ', b"\x07"),
    "f32": st({"w": t("F32", [2, 2], 0, 16)}, f32(1, -2, 3.5, float("nan"))),
    "mixed": st({"__metadata__": {"k": "v"},
                 "a.f16": t("F16", [3], 0, 6), "b.bf16": t("BF16", [2], 6, 10),
                 "c.e4m3": t("F8_E4M3", [4], 10, 14), "d.e5m2": t("F8_E5M2", [4], 14, 18)},
                bytes(range(0x30, 0x30 + 18))),
    "unaligned": st({"pad": t("U8", [3], 0, 3), "x": t("F32", [2], 3, 11)},
                    b"\x01\x02\x03" + f32(1.5, -0.25)),
    "rank0_empty": st({"s": t("F16", [], 0, 2), "e": t("BF16", [3, 0, 2], 2, 2),
                       "e2": t("I64", [0], 2, 2)}, b"\x00\x3c"),
    "subbyte": st({"p": t("F4", [4], 0, 2), "q": t("F6_E2M3", [4], 2, 5)}, b"\x12\x34\x56\x78\x9a"),
    "all_int": st({"i8": t("I8", [1], 0, 1), "u16": t("U16", [1], 1, 3), "i32": t("I32", [1], 3, 7),
                   "u64": t("U64", [1], 7, 15), "b": t("BOOL", [1], 15, 16)}, bytes(16)),
    "escaped_names": st('{"\\u00e9\\n":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\x00"),
}

MALFORMED = {
    "short": b"\x02\x00\x00\x00\x00",
    "hlen_past_eof": st("{}", b"\x00" * 10, hlen=100),
    "hlen_huge": st("{}", hlen=100000001),
    "hlen_u64max": st("{}", hlen=2**64 - 1),
    "hlen_zero": st("", b""),
    "truncated": st({"a": t("F32", [4], 0, 16)}, bytes(12)),
    "trailing": st({"a": t("F32", [4], 0, 16)}, bytes(19)),
    "overlap": st({"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, bytes(12)),
    "alias": st({"a": t("F32", [2], 0, 8), "b": t("F32", [2], 0, 8)}, bytes(8)),
    "gap": st({"a": t("F32", [1], 0, 4), "b": t("F32", [1], 8, 12)}, bytes(12)),
    "gap_first": st({"a": t("F32", [1], 4, 8)}, bytes(8)),
    "reversed": st({"a": t("F32", [1], 8, 4)}, bytes(8)),
    "dup": st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
              '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', bytes(4)),
    "mismatch": st({"a": t("F64", [4], 0, 8)}, bytes(8)),
    "unknown_dtype": st({"a": t("F31", [1], 0, 4)}, bytes(4)),
    "neg_shape": st({"a": t("F32", [-1], 0, 4)}, bytes(4)),
    "frac_shape": st('{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}', bytes(4)),
    "overflow": st({"a": t("F32", [2**32, 2**32, 16], 0, 4)}, bytes(4)),
    "meta_int": st('{"__metadata__":{"k":1}}'),
    "meta_null": st('{"__metadata__":null}'),
    "bad_json": st('{"a":{"dtype":"F32",'),
    "bad_utf8": st(b'{"a\xff":{}}'),
    "missing_field": st('{"a":{"shape":[1],"data_offsets":[0,4]}}', bytes(4)),
    "not_object": st("[]"),
    "rank9": st({"a": t("F32", [1] * 9, 0, 4)}, bytes(4)),
    "offsets_i63": st({"a": t("U8", [2**63 - 1], 0, 2**63 - 1)}, bytes(1)),
}

# Checkpoint indexes for the fuzzer's temp directory (shards a.safetensors, b.safetensors).
INDEX = {
    "index_ok": {"metadata": {"total_size": 22}, "weight_map": {"x": "a.safetensors",
                 "y": "a.safetensors", "z": "b.safetensors"}},
    "index_wrong_shard": {"weight_map": {"x": "b.safetensors", "y": "a.safetensors",
                          "z": "b.safetensors"}},
    "index_not_listed": {"weight_map": {"x": "a.safetensors", "z": "b.safetensors"}},
    "index_ghost": {"weight_map": {"x": "a.safetensors", "y": "a.safetensors",
                    "z": "b.safetensors", "w": "a.safetensors"}},
    "index_missing_shard": {"weight_map": {"x": "c.safetensors"}},
    "index_traversal": {"weight_map": {"x": "../a.safetensors"}},
    "index_bin": {"weight_map": {"x": "pytorch_model.bin"}},
    "index_empty": {"weight_map": {}},
}


def write(directory, name, data):
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def main():
    for d in (CORPUS, REGR):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    for name, data in VALID.items():
        write(CORPUS, "valid_%s.safetensors" % name, data)
    for name, data in MALFORMED.items():
        write(CORPUS, "bad_%s.safetensors" % name, data)
    for name, obj in INDEX.items():
        write(CORPUS, "%s.json" % name, json.dumps(obj).encode())
    write(CORPUS, "index_dup.json",
          b'{"weight_map":{"x":"a.safetensors","x":"a.safetensors"}}')

    # Regression inputs: accepted shards and index, then hand-made nasty inputs.
    write(REGR, "ok-shard-a.safetensors", st({"x": t("F32", [2], 0, 8), "y": t("BF16", [3], 8, 14)},
                                             f32(1, 2) + bytes(6)))
    write(REGR, "ok-shard-b.safetensors", st({"z": t("F16", [1], 0, 2)}, b"\x00\x3c"))
    write(REGR, "ok-index.json", json.dumps({"weight_map": {
        "x": "ok-shard-a.safetensors", "y": "ok-shard-a.safetensors",
        "z": "ok-shard-b.safetensors"}}).encode())
    write(REGR, "ok-many-empty.safetensors",
          st({"e%d" % i: t("F32", [0], 0, 0) for i in range(64)}))
    write(REGR, "index-wrong-shard.json", json.dumps({"weight_map": {
        "x": "ok-shard-b.safetensors", "y": "ok-shard-a.safetensors",
        "z": "ok-shard-b.safetensors"}}).encode())
    write(REGR, "index-traversal.json", b'{"weight_map":{"x":"../../../etc/passwd.safetensors"}}')
    write(REGR, "index-absolute.json", b'{"weight_map":{"x":"/etc/x.safetensors"}}')
    write(REGR, "index-nul.json", b'{"weight_map":{"x":"ok-shard-a.safetensors\\u0000.x"}}')
    write(REGR, "index-deep.json", b'{"weight_map":' + b"[" * 5000 + b"]" * 5000 + b"}")
    write(REGR, "hlen-u64max.safetensors", st("{}", hlen=2**64 - 1))
    write(REGR, "hlen-past-eof-by-one.safetensors", st("{}", hlen=3))
    write(REGR, "deep-nesting.safetensors", st("[" * 20000 + "]" * 20000))
    write(REGR, "nul-key.safetensors", st('{"a\\u0000b":{"dtype":"U8","shape":[1],'
                                          '"data_offsets":[0,1]}}', b"\x00"))
    write(REGR, "lone-surrogate.safetensors", st('{"\\ud800":{"dtype":"U8","shape":[1],'
                                                 '"data_offsets":[0,1]}}', b"\x00"))
    write(REGR, "int-2to64.safetensors", st('{"a":{"dtype":"U8","shape":[18446744073709551616],'
                                            '"data_offsets":[0,1]}}', b"\x00"))
    write(REGR, "offsets-i63max.safetensors",
          st({"a": t("U8", [2**63 - 1], 0, 2**63 - 1)}, bytes(1)))
    write(REGR, "shape-zero-times-huge.safetensors",
          st({"a": t("F32", [0, 2**62, 2**62], 0, 0), "b": t("F32", [2**62, 4], 0, 0)}))
    write(REGR, "f6-misaligned.safetensors", st({"a": t("F6_E3M2", [3], 0, 2)}, bytes(2)))
    write(REGR, "dup-escaped-key.safetensors",
          st('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
             '"\\u0061":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\x00"))
    write(REGR, "metadata-twice.safetensors", st('{"__metadata__":{},"__metadata__":{}}'))
    write(REGR, "header-utf8-overlong.safetensors", st(b'{"\xc0\xaf":{}}'))
    size = sum(os.path.getsize(os.path.join(d, f)) for d in (CORPUS, REGR) for f in os.listdir(d))
    print("make_corpus: %d seeds, %d regression inputs, %d bytes in all"
          % (len(os.listdir(CORPUS)), len(os.listdir(REGR)), size))


if __name__ == "__main__":
    main()
