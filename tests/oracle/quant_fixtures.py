"""Writes tests/fixtures/quant/quant.safetensors: gguf-py's (the `gguf` PyPI package, quants.py)
dequantization of random blocks of every type cleardit dequantizes, and its quantization of random
float32 rows for every type it quantizes. tests/test_quant.c compares src/quant bit for bit.

Dequantization cases, per type: random bytes for the code fields, the f16 scale fields set per block
from a rotation of random finite values, +-65504, +-0, f16 subnormals, +-inf and NaN (inf*0 and NaN
give NaN, which the test compares as NaN). F16 and BF16: random bit patterns (NaN and inf included)
plus edge values. Quantization cases: random normal rows with blocks scaled from 1e-30 to 1e30,
all-zero, constant, one-hot, integer-valued (rounding ties) blocks; F16/BF16 also NaN, inf, -0,
overflow and subnormal-rounding edges. Inputs stay finite for the block types (gguf-py's casts of
NaN codes are undefined). Tensors: "deq.<TYPE>.in" (U8), "deq.<TYPE>.out" (F32), "q.<TYPE>.in" (F32;
"q.blocks.in" for all block types), "q.<TYPE>.out" (U8).

Run from the repository root: python3 tests/oracle/quant_fixtures.py (CLEARDIT_ORACLE_VENV selects
the venv).
"""
import importlib.metadata
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()

import numpy as np  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import quants  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

OUT = "tests/fixtures/quant/quant.safetensors"

# type -> (block elements, block bytes, byte offsets of the f16 scale fields)
DEQ = {
    "Q4_0": (32, 18, [0]), "Q4_1": (32, 20, [0, 2]), "Q5_0": (32, 22, [0]), "Q5_1": (32, 24, [0, 2]),
    "Q8_0": (32, 34, [0]), "Q2_K": (256, 84, [80, 82]), "Q3_K": (256, 110, [108]),
    "Q4_K": (256, 144, [0, 2]), "Q5_K": (256, 176, [0, 2]), "Q6_K": (256, 210, [208]),
    "IQ4_NL": (32, 18, [0]), "IQ4_XS": (256, 136, [0]),
}
SPECIAL = [None, 0x7BFF, 0x8000, 0x0001, None, 0x83FF, 0x7C00, 0x7E00, 0xFBFF, 0x0000, 0xFC00, 0x0400,
           None, 0x3C00]


def rand_finite_f16(rng):
    while True:
        h = int(rng.integers(0, 1 << 16))
        if (h & 0x7C00) != 0x7C00:
            return h


def deq_cases(rng, out):
    for t, (name, (elems, nbytes, offs)) in enumerate(DEQ.items()):
        nb = 14 if elems == 32 else 7
        blocks = rng.integers(0, 256, size=(nb, nbytes), dtype=np.uint8)
        for i in range(nb):
            for k, off in enumerate(offs):
                s = SPECIAL[((2 if nb == 7 else 1) * i + 5 * k + t) % len(SPECIAL)]
                h = rand_finite_f16(rng) if s is None else s
                blocks[i, off] = h & 0xFF
                blocks[i, off + 1] = h >> 8
        flat = blocks.reshape(-1)
        y = quants.dequantize(flat, getattr(T, name))
        out[f"deq.{name}.in"] = flat.copy()
        out[f"deq.{name}.out"] = np.ascontiguousarray(y, dtype=np.float32).reshape(-1)
    edges16 = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
                        0x7E00, 0x7C01, 0xFE01, 0x3C00, 0x3555], dtype=np.uint16)
    h = np.concatenate([edges16, rng.integers(0, 1 << 16, size=497, dtype=np.uint16)])
    out["deq.F16.in"] = h.view(np.uint8).copy()
    out["deq.F16.out"] = quants.dequantize(h.view(np.uint8), T.F16).astype(np.float32).reshape(-1)
    b = np.concatenate([edges16 | 0x4000, np.array([0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0x0001, 0x807F],
                                                   dtype=np.uint16),
                        rng.integers(0, 1 << 16, size=491, dtype=np.uint16)])
    out["deq.BF16.in"] = b.view(np.uint8).copy()
    out["deq.BF16.out"] = quants.dequantize(b.view(np.uint8), T.BF16).reshape(-1).astype(np.float32)


def q_rows(rng):
    """24 blocks of 32: random normal blocks at many scales plus the edge blocks."""
    blocks = []
    for s in [1.0, 1e-30, 1e-6, 3e-5, 1e4, 7e4, 1e30, 0.01]:
        blocks.append(rng.standard_normal(32).astype(np.float32) * np.float32(s))
    blocks.append(np.zeros(32, np.float32))
    blocks.append(np.full(32, 0.37, np.float32))
    blocks.append(np.full(32, -5.0, np.float32))
    one = np.zeros(32, np.float32)
    one[7] = -3.0
    blocks.append(one)
    blocks.append(rng.integers(-16, 17, size=32).astype(np.float32))      # rounding ties
    blocks.append((rng.integers(-127, 128, size=32) / 2).astype(np.float32))
    blocks.append(np.linspace(-1, 1, 32, dtype=np.float32))
    tie = rng.standard_normal(32).astype(np.float32)
    tie[3], tie[20] = 2.5, -2.5  # equal magnitudes: the first wins argmax
    blocks.append(tie)
    blocks.append(np.abs(rng.standard_normal(32)).astype(np.float32) + np.float32(100.0))
    blocks.append(-np.abs(rng.standard_normal(32)).astype(np.float32))
    for _ in range(6):
        blocks.append(rng.standard_normal(32).astype(np.float32) * np.float32(rng.uniform(0.1, 10)))
    return np.concatenate(blocks)


def q_cases(rng, out):
    x = q_rows(rng)
    out["q.blocks.in"] = x  # the input of every block type
    for name in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]:
        out[f"q.{name}.out"] = quants.quantize(x.reshape(1, -1), getattr(T, name)).reshape(-1)
    edges = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65519.0, 65520.0, -70000.0, 2.0**-24,
                      2.0**-25, 2.0**-25 * 1.0000001, 3 * 2.0**-25, 2.0**-14, 2.0**-14 - 2.0**-25, 1e-10,
                      1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 3.4e38, 1.17549435e-38], dtype=np.float32)
    bits = rng.integers(0, 1 << 32, size=236, dtype=np.uint32).view(np.float32)
    bits = np.where(np.isfinite(bits), bits, np.float32(1.5))
    xf = np.concatenate([edges, bits, rng.standard_normal(256).astype(np.float32)])
    out["q.F16.in"] = xf
    out["q.F16.out"] = quants.quantize(xf, T.F16).view(np.uint8).reshape(-1).copy()
    xb = np.concatenate([xf, np.array([0x7F800001, 0xFFC00000, 0x7FFFFFFF, 0x7F7FFFFF, 0x3F808000,
                                       0x3F818000, 0x3F808001, 0x00008000], dtype=np.uint32).view(np.float32)])
    xb = np.concatenate([xb, np.zeros(8, np.float32)])
    out["q.BF16.in"] = xb
    out["q.BF16.out"] = quants.quantize(xb.reshape(1, -1), T.BF16).reshape(-1)


def main():
    rng = np.random.default_rng(1515)
    out = {}
    deq_cases(rng, out)
    q_cases(rng, out)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(out, OUT, metadata={"source": "gguf " + importlib.metadata.version("gguf")})
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes, {len(out)} tensors")


if __name__ == "__main__":
    main()
