"""synthetic_t5xxl.py OUT.safetensors [--dtype bf16|f16|f8] — a T5-v1.1-XXL encoder checkpoint with
transformers' names and shapes (24 layers, d_model 4096, 64 heads x 64, d_ff 10240, vocab 32128)
and random weights, ~9.5 GB in bf16, for measuring `cleardit bench encode --t5 FILE` (time and
peak memory of a real mapped checkpoint) without downloading one. Needs numpy only; writes one
tensor at a time (memory stays one tensor). Not an oracle: the values are noise."""
import json
import struct
import sys

import numpy as np

D, DKV, NH, F, LAYERS, VOCAB, BUCKETS = 4096, 64, 64, 10240, 24, 32128, 32


def shapes():
    yield "shared.weight", (VOCAB, D)
    for i in range(LAYERS):
        p = f"encoder.block.{i}.layer."
        for n in "qkv":
            yield f"{p}0.SelfAttention.{n}.weight", (NH * DKV, D)
        yield f"{p}0.SelfAttention.o.weight", (D, NH * DKV)
        if i == 0:
            yield f"{p}0.SelfAttention.relative_attention_bias.weight", (BUCKETS, NH)
        yield f"{p}0.layer_norm.weight", (D,)
        yield f"{p}1.DenseReluDense.wi_0.weight", (F, D)
        yield f"{p}1.DenseReluDense.wi_1.weight", (F, D)
        yield f"{p}1.DenseReluDense.wo.weight", (D, F)
        yield f"{p}1.layer_norm.weight", (D,)
    yield "encoder.final_layer_norm.weight", (D,)


def values(shape, rng, dtype):
    n = int(np.prod(shape))
    if len(shape) == 1:  # norm scales near 1
        x = (1 + 0.1 * rng.standard_normal(n)).astype(np.float32)
    else:
        x = (rng.standard_normal(n) * (1.0 / np.sqrt(shape[-1]))).astype(np.float32)
    if dtype == "bf16":
        u = x.view(np.uint32)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16).tobytes()
    if dtype == "f16":
        return x.astype(np.float16).tobytes()
    # f8 e4m3 linears (norms stay bf16): round through the nearest code of a 256-entry table
    if len(shape) == 1:
        return values(shape, rng, "bf16")
    codes = np.arange(256, dtype=np.uint8)
    e, m, s = (codes >> 3) & 15, codes & 7, codes >> 7
    val = np.where(e == 0, m / 8 * 2.0 ** -6, (1 + m / 8) * 2.0 ** (e.astype(np.float64) - 7))
    val = np.where(s == 1, -val, val)
    val[(e == 15) & (m == 7)] = np.nan
    ok = ~np.isnan(val)
    order = np.argsort(val[ok])
    sv, sc = val[ok][order], codes[ok][order]
    idx = np.clip(np.searchsorted(sv, x), 1, len(sv) - 1)
    pick = np.where(np.abs(sv[idx - 1] - x) <= np.abs(sv[idx] - x), idx - 1, idx)
    return sc[pick].tobytes()


def main():
    out = sys.argv[1]
    dtype = sys.argv[sys.argv.index("--dtype") + 1] if "--dtype" in sys.argv else "bf16"
    st = {"bf16": ("BF16", 2), "f16": ("F16", 2), "f8": ("F8_E4M3", 1)}[dtype]
    header, off = {}, 0
    for name, shape in shapes():
        dt, es = (st if len(shape) == 2 else ("BF16", 2)) if dtype == "f8" else st
        n = int(np.prod(shape)) * es
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    rng = np.random.default_rng(0)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name, shape in shapes():
            f.write(values(shape, rng, dtype))
    print(f"wrote {out}: {off / 1e9:.2f} GB of {dtype} weights")


if __name__ == "__main__":
    main()
