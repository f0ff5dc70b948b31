#!/usr/bin/env python3
"""gguf_fixtures.py -- small GGUF files written by gguf-py's GGUFWriter and what gguf-py's
GGUFReader reads back from them, for tests/test_gguf.c (the reader, src/io/gguf.c).

  CLEARDIT_ORACLE_VENV=/tmp/venv-oracle python3 tests/oracle/gguf_fixtures.py

Writes tests/fixtures/gguf/:
  all_types.gguf  v3, default alignment: a metadata value of every type (scalars, strings with
                  UTF-8, arrays of every element type, arrays of arrays of strings and of ints) and
                  tensors of plain and block types (F32, F16, BF16, I8, I32, F64, Q8_0, Q4_0, Q5_1,
                  Q2_K, Q4_K, Q6_K), 1-D to 4-D
  align64.gguf    general.alignment = 64 and tensors whose sizes are not multiples of it
  expect.tsv      per file: a "file" line (version, alignment, data offset, counts), one "kv" line
                  per key (key, value type, canonical value) and one "tensor" line per tensor (name,
                  ggml type, n_dims, dims fastest-first, absolute data offset, bytes, FNV-1a 64 of
                  the bytes), all as GGUFReader reports them.
Canonical values: integers in decimal, FLOAT32/FLOAT64 as the hex of their bits ("f" + 8 / "d" +
16 digits), BOOL 0/1, strings "s" + hex of the UTF-8 bytes, arrays "[" elements joined by "," "]".
Deterministic (fixed seeds); the outputs are committed."""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()

import numpy as np  # noqa: E402
import gguf  # noqa: E402
from gguf import GGUFValueType as VT, GGMLQuantizationType as QT  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf")


def fnv1a64(b):
    h = 0xcbf29ce484222325
    for x in b:
        h = ((h ^ x) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def canon(parts, i, t):
    """Canonical text of the value of type t whose parts start at parts[i]; (text, next i)."""
    if t == VT.STRING:
        return "s" + bytes(parts[i + 1].tobytes()).hex(), i + 2
    if t == VT.ARRAY:
        et, n = int(parts[i][0]), int(parts[i + 1][0])
        i += 2
        out = []
        for _ in range(n):
            s, i = canon(parts, i, et)
            out.append(s)
        return "[" + ",".join(out) + "]", i
    v = parts[i][0]
    if t == VT.FLOAT32:
        return "f%08x" % int(np.array(v, dtype=np.float32).view(np.uint32)), i + 1
    if t == VT.FLOAT64:
        return "d%016x" % int(np.array(v, dtype=np.float64).view(np.uint64)), i + 1
    if t == VT.BOOL:
        return str(int(bool(v))), i + 1
    return str(int(v)), i + 1


def quant_tensor(w, rng, name, qt, rows, cols):
    """Random bytes as a (rows, cols) tensor of block type qt (the reader does not dequantize)."""
    be, bb = gguf.GGML_QUANT_SIZES[qt]
    raw = rng.integers(0, 256, size=(rows, cols // be * bb), dtype=np.uint8)
    w.add_tensor(name, raw, raw_dtype=qt)


def write_all_types(path):
    rng = np.random.default_rng(15)
    w = gguf.GGUFWriter(path, "test")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 65000)
    w.add_int16("t.i16", -32000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", -1.25e-3)
    w.add_bool("t.bool_true", True)
    w.add_bool("t.bool_false", False)
    w.add_string("t.str", "flux \u00e9t\u00e9 \u6f22\u5b57 \U0001f600")
    w.add_string("t.str_empty", "")
    w.add_uint64("t.u64", 18000000000000000000)
    w.add_int64("t.i64", -9000000000000000000)
    w.add_float64("t.f64", 3.141592653589793)
    for vt, vals in [(VT.UINT8, [0, 1, 255]), (VT.INT8, [-128, 0, 127]), (VT.UINT16, [0, 65535]),
                     (VT.INT16, [-32768, 32767]), (VT.UINT32, [1, 2, 3, 4294967295]),
                     (VT.INT32, [-1, 7]), (VT.FLOAT32, [0.5, -0.0, 1e30]), (VT.BOOL, [True, False, True]),
                     (VT.UINT64, [2**64 - 1]), (VT.INT64, [-(2**63), 5]), (VT.FLOAT64, [1e-300, -2.5])]:
        w.add_key_value("a." + vt.name.lower(), vals, VT.ARRAY, sub_type=vt)
    w.add_array("a.string", ["a", "", "\u00fc\u00df", "tok" * 30])
    w.add_key_value("a.nested_str", [["x", "yz"], ["w"], ["", "q", "r"]], VT.ARRAY)
    w.add_key_value("a.nested_int", [[1, 2, 3], [4]], VT.ARRAY)
    w.add_tensor("f32.2d", rng.standard_normal((5, 3)).astype(np.float32))
    w.add_tensor("f32.1d", rng.standard_normal(7).astype(np.float32))
    w.add_tensor("f16.3d", rng.standard_normal((2, 3, 4)).astype(np.float16))
    w.add_tensor("f64.4d", rng.standard_normal((2, 1, 2, 3)).astype(np.float64))
    w.add_tensor("i8", rng.integers(-128, 128, 9, dtype=np.int8))
    w.add_tensor("i32", rng.integers(-1000, 1000, (2, 2), dtype=np.int32))
    bf = rng.integers(0, 65536, (3, 4), dtype=np.uint16).view(np.uint8).reshape(3, 8)
    w.add_tensor("bf16", bf, raw_dtype=QT.BF16)
    quant_tensor(w, rng, "q8_0", QT.Q8_0, 3, 64)
    quant_tensor(w, rng, "q4_0", QT.Q4_0, 2, 32)
    quant_tensor(w, rng, "q5_1", QT.Q5_1, 1, 96)
    quant_tensor(w, rng, "blk.0.q2_k", QT.Q2_K, 2, 256)
    quant_tensor(w, rng, "blk.0.q4_k", QT.Q4_K, 1, 512)
    quant_tensor(w, rng, "blk.0.q6_k", QT.Q6_K, 2, 256)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_align64(path):
    rng = np.random.default_rng(64)
    w = gguf.GGUFWriter(path, "flux")
    w.add_custom_alignment(64)
    w.add_string("general.name", "align64")
    w.add_tensor("img_in.weight", rng.standard_normal((3, 5)).astype(np.float32))
    w.add_tensor("img_in.bias", rng.standard_normal(3).astype(np.float32))
    quant_tensor(w, rng, "double_blocks.0.img_attn.qkv.weight", QT.Q8_0, 3, 32)
    w.add_tensor("x", rng.standard_normal(1).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def describe(name, path):
    r = gguf.GGUFReader(path)
    lines = []
    kvs = [f for f in r.fields.values() if not f.name.startswith("GGUF.")]
    lines.append("file\t%s\t%d\t%d\t%d\t%d\t%d" % (name, int(r.fields["GGUF.version"].parts[0][0]), r.alignment,
                                                   r.data_offset, len(kvs), len(r.tensors)))
    for f in kvs:
        s, end = canon(f.parts, 3, f.types[0])
        assert end == len(f.parts), f.name
        lines.append("kv\t%s\t%d\t%s" % (f.name, int(f.types[0]), s))
    with open(path, "rb") as fh:
        blob = fh.read()
    for t in r.tensors:
        dims = [int(d) for d in t.shape]
        lines.append("tensor\t%s\t%d\t%d\t%s\t%d\t%d\t%s" % (
            t.name, int(t.tensor_type), len(dims), ",".join(map(str, dims)), t.data_offset, t.n_bytes,
            fnv1a64(blob[t.data_offset:t.data_offset + t.n_bytes])))
    return lines


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = []
    for name, fn in [("all_types.gguf", write_all_types), ("align64.gguf", write_align64)]:
        path = os.path.join(OUT, name)
        fn(path)
        lines += describe(name, path)
    with open(os.path.join(OUT, "expect.tsv"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
