#!/usr/bin/env python3
"""t5_fixtures.py - golden outputs of tiny random T5 v1.1 encoders from transformers (the oracle).

    python3 tests/oracle/t5_fixtures.py [--out DIR] [--check]

Needs torch, transformers and safetensors (venv_bootstrap.py makes tests/oracle/.venv with them). For each case
it draws every weight of a tiny T5 v1.1 encoder (fixed-seed torch.Generator, uniform, norm scales
in [0.5, 1.5) so that a missing norm weight shows), stores it in several dtypes and layouts, and
for each stored variant computes transformers' T5EncoderModel (feed_forward_proj "gated-gelu",
converted to float64, no attention mask: FLUX's call) on exactly the stored, rounded weights.
transformers' own code is unmodified: its T5LayerNorm takes the mean of squares in float32 and
its relative-position bucketing runs in float32 (as in FLUX inference); everything else is
float64. The C test (tests/test_t5.c) asserts relative L2 <= 1e-5.

Cases (config in the io file's metadata):
  a: vocab 64, d_model 32, d_kv 8, heads 3 (inner 24 != d_model), d_ff 48, 2 layers, buckets 8,
     max_distance 20, L = 48 (relative distances up to 47: the log buckets and the clamp).
  b: vocab 64, d_model 16, d_kv 8, heads 2, d_ff 24, 2 layers, T5-XXL's buckets 32 and max
     distance 128, L = 160 (distances beyond 128).
Files in DIR (default tests/fixtures/t5/):
  a_f32.safetensors        HF T5EncoderModel names (shared.weight), F32
  a_bf16/                  a diffusers text_encoder_2/ folder: config.json, model.safetensors.index.json
                           and two BF16 shards
  a_f16.safetensors        F16 with encoder.embed_tokens.weight (no shared.weight) plus decoder.* and
                           lm_head.weight tensors (a full T5 checkpoint: the encoder ignores them)
  a_fp8.safetensors        ComfyUI t5xxl_fp8_e4m3fn style: linears and the embedding F8_E4M3, norms
                           BF16, the relative attention bias F16
  a_fp8_scaled.safetensors ComfyUI t5xxl_fp8_e4m3fn_scaled style: the `scaled_fp8` marker (F8_E4M3,
                           shape [0]), linears F8_E4M3 = round(W / s) with `<name>.scale_weight` F32
                           scalars s = max|W| / 448, one `scale_input` (ComfyUI uses it only to
                           quantize activations for fp8 matmuls; exact math ignores it), embedding
                           F16, norms F32; the reference uses fp8 * s
  b_f32.safetensors        case b, F32
  a_config.json, b_config.json  transformers' config.json of each case (kept apart from the weights:
                           the C test copies them beside a copy of the weights)
  a_io.safetensors, b_io.safetensors  ids [L] I32 and out_<variant> [L, d_model] F32 (float64
                           reference rounded once)
  buckets.safetensors      transformers' _relative_position_bucket (bidirectional) for relative
                           positions -1023..1023: b_32_128 and b_8_20, I32 [2047]
--check recomputes everything in memory and compares with the files on disk (exit 1 on a
difference).
"""
import argparse
import json
import os
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()  # tests/oracle/.venv with torch, transformers, tokenizers, sentencepiece

import numpy as np
import torch
import safetensors
import safetensors.torch
import transformers
from transformers import T5Config, T5EncoderModel
from transformers.models.t5.modeling_t5 import T5Attention

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "fixtures", "t5")
SEED = 1414

CASES = {
    "a": dict(vocab=64, d_model=32, d_kv=8, heads=3, d_ff=48, layers=2, buckets=8, max_distance=20, L=48),
    "b": dict(vocab=64, d_model=16, d_kv=8, heads=2, d_ff=24, layers=2, buckets=32, max_distance=128, L=160),
}
LINEARS = [
    "layer.0.SelfAttention.q",
    "layer.0.SelfAttention.k",
    "layer.0.SelfAttention.v",
    "layer.0.SelfAttention.o",
    "layer.1.DenseReluDense.wi_0",
    "layer.1.DenseReluDense.wi_1",
    "layer.1.DenseReluDense.wo",
]


def hf_config(c):
    return T5Config(vocab_size=c["vocab"], d_model=c["d_model"], d_kv=c["d_kv"], num_heads=c["heads"],
                    d_ff=c["d_ff"], num_layers=c["layers"], relative_attention_num_buckets=c["buckets"],
                    relative_attention_max_distance=c["max_distance"], layer_norm_epsilon=1e-6,
                    feed_forward_proj="gated-gelu", dropout_rate=0.0, is_encoder_decoder=False,
                    use_cache=False, tie_word_embeddings=False)


def draw(c, gen):
    """float64 master weights, HF names (shared.weight for the embedding)."""
    def u(shape, a):
        return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * a
    D, inner, F = c["d_model"], c["heads"] * c["d_kv"], c["d_ff"]
    sd = {"shared.weight": u((c["vocab"], D), 1.0)}
    for i in range(c["layers"]):
        p = "encoder.block.%d." % i
        for n in ("q", "k", "v"):
            sd[p + "layer.0.SelfAttention.%s.weight" % n] = u((inner, D), 1.2 / D ** 0.5)
        sd[p + "layer.0.SelfAttention.o.weight"] = u((D, inner), 1.0 / inner ** 0.5)
        if i == 0:
            sd[p + "layer.0.SelfAttention.relative_attention_bias.weight"] = u((c["buckets"], c["heads"]), 2.0)
        sd[p + "layer.0.layer_norm.weight"] = 1.0 + u((D,), 0.5)
        sd[p + "layer.1.DenseReluDense.wi_0.weight"] = u((F, D), 1.5 / D ** 0.5)
        sd[p + "layer.1.DenseReluDense.wi_1.weight"] = u((F, D), 1.5 / D ** 0.5)
        sd[p + "layer.1.DenseReluDense.wo.weight"] = u((D, F), 1.0 / F ** 0.5)
        sd[p + "layer.1.layer_norm.weight"] = 1.0 + u((D,), 0.5)
    sd["encoder.final_layer_norm.weight"] = 1.0 + u((D,), 0.5)
    return sd


def is_linear(name):
    return any(name.endswith(l + ".weight") for l in LINEARS)


def is_norm(name):
    return name.endswith("layer_norm.weight")


def cast(sd, pick):
    """Stored tensors: pick(name) -> torch dtype; returns (stored dict, float64 dict of the stored values)."""
    stored, exact = {}, {}
    for k, v in sd.items():
        t = v.to(pick(k)).contiguous()
        stored[k] = t
        exact[k] = t.to(torch.float64)
    return stored, exact


def scaled_fp8(sd):
    """ComfyUI's scaled fp8: linear W stored as fp8(W / s) with s = max|W| / 448; reference fp8 * s."""
    stored, exact = {}, {}
    for k, v in sd.items():
        if is_linear(k):
            s = torch.tensor(float(v.abs().max()) / 448.0, dtype=torch.float32)
            q = (v / s.to(torch.float64)).to(torch.float8_e4m3fn)
            stored[k] = q
            stored[k[: -len("weight")] + "scale_weight"] = s
            exact[k] = q.to(torch.float64) * s.to(torch.float64)
        else:
            dt = torch.float16 if k == "shared.weight" else torch.float32
            stored[k] = v.to(dt)
            exact[k] = stored[k].to(torch.float64)
    # scale_input only scales activations before an fp8 matmul in ComfyUI (x / scale_input, then
    # the product times scale_input): no effect in exact arithmetic.
    stored["encoder.block.0.layer.0.SelfAttention.q.scale_input"] = torch.tensor(1.75, dtype=torch.float32)
    stored["scaled_fp8"] = torch.empty((0,), dtype=torch.float8_e4m3fn)
    return stored, exact


def reference(c, exact, ids):
    model = T5EncoderModel(hf_config(c)).to(torch.float64).eval()
    missing, unexpected = model.load_state_dict(exact, strict=False)
    # transformers ties encoder.embed_tokens to shared; nothing else may be missing or left over.
    missing = [m for m in missing if m != "encoder.embed_tokens.weight"]
    assert not missing and not unexpected, (missing, unexpected)
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids, dtype=torch.long)[None]).last_hidden_state[0]
    return out.to(torch.float32).contiguous()


def config_json(c, dtype):
    """transformers' config.json of case c (as save_pretrained writes it, keys sorted)."""
    cfg = hf_config(c).to_dict()
    cfg["architectures"] = ["T5EncoderModel"]
    cfg["torch_dtype"] = dtype
    return json.dumps({k: cfg[k] for k in sorted(cfg) if not k.startswith("_")}, indent=2, default=str) + "\n"


def variants(c, sd):
    """name -> (files {relpath: (tensors, metadata)}, extra files {relpath: text}, float64 weights)."""
    out = {}
    st, ex = cast(sd, lambda k: torch.float32)
    # config.json of the case, not beside any weights: the C test puts it beside a copy (the
    # config inferred from the shapes must equal it)
    out["f32"] = ({"f32.safetensors": st}, {"config.json": config_json(c, "float32")}, ex)
    return out


def variants_a(c, sd):
    out = variants(c, sd)
    st, ex = cast(sd, lambda k: torch.bfloat16)
    names = sorted(st)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": {k: st[k] for k in names[:half]},
              "model-00002-of-00002.safetensors": {k: st[k] for k in names[half:]}}
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in st.values())},
             "weight_map": {k: ("model-00001-of-00002.safetensors" if k in names[:half]
                                else "model-00002-of-00002.safetensors") for k in names}}
    extra = {"bf16/model.safetensors.index.json": json.dumps(index, indent=2, sort_keys=True) + "\n",
             "bf16/config.json": config_json(c, "bfloat16")}
    out["bf16"] = ({"bf16/" + k: v for k, v in shards.items()}, extra, ex)

    st, ex = cast(sd, lambda k: torch.float16)
    st["encoder.embed_tokens.weight"] = st.pop("shared.weight")
    # a full T5 checkpoint also holds the decoder and the LM head: the encoder ignores them
    st["decoder.final_layer_norm.weight"] = torch.ones(c["d_model"], dtype=torch.float16)
    st["decoder.block.0.layer.0.SelfAttention.q.weight"] = torch.zeros(4, c["d_model"], dtype=torch.float16)
    st["lm_head.weight"] = torch.zeros(2, c["d_model"], dtype=torch.float16)
    out["f16"] = ({"f16.safetensors": st}, {}, ex)

    def pick(k):
        if is_linear(k) or k == "shared.weight":
            return torch.float8_e4m3fn
        return torch.bfloat16 if is_norm(k) else torch.float16
    st, ex = cast(sd, pick)
    out["fp8"] = ({"fp8.safetensors": st}, {}, ex)

    st, ex = scaled_fp8(sd)
    out["fp8_scaled"] = ({"fp8_scaled.safetensors": st}, {}, ex)
    return out


def build():
    """All files as {relpath: bytes}."""
    gen = torch.Generator().manual_seed(SEED)
    files = {}
    meta_common = {"generator": "tests/oracle/t5_fixtures.py", "torch_version": torch.__version__,
                   "transformers_version": transformers.__version__,
                   "safetensors_version": safetensors.__version__, "seed": str(SEED),
                   "oracle_dtype": "float64 (T5LayerNorm variance and position buckets float32, as transformers)"}
    for case, c in CASES.items():
        sd = draw(c, gen)
        L, V = c["L"], c["vocab"]
        ids = torch.randint(2, V, (L,), generator=gen).tolist()
        ids[-1], ids[-2], ids[L // 2] = 0, 0, 1  # FLUX pads after EOS; an EOS in the middle
        ids[3] = V - 1
        vs = variants_a(c, sd) if case == "a" else variants(c, sd)
        io = {"ids": torch.tensor(ids, dtype=torch.int32)}
        for vname, (tfiles, extra, exact) in vs.items():
            io["out_" + vname] = reference(c, exact, ids)
            for rel, tensors in tfiles.items():
                files["%s_%s" % (case, rel)] = safetensors.torch.save(tensors, metadata={"format": "pt"})
            for rel, text in extra.items():
                files["%s_%s" % (case, rel)] = text.encode()
        meta = dict(meta_common)
        meta.update({k: str(v) for k, v in c.items()})
        meta["eps"] = "1e-6"
        meta["variants"] = ",".join(vs)
        files["%s_io.safetensors" % case] = safetensors.torch.save(io, metadata=meta)
    r = torch.arange(-1023, 1024)
    bk = {"b_%d_%d" % (nb, md): T5Attention._relative_position_bucket(r, True, nb, md).to(torch.int32)
          for nb, md in ((32, 128), (8, 20))}
    files["buckets.safetensors"] = safetensors.torch.save(bk, metadata=meta_common)
    return files


def same_file(data, disk):
    """Byte equality, except that a safetensors header's JSON key order may differ between runs
    (the writer's metadata map is unordered): compare the parsed header and the data."""
    if data == disk:
        return True
    if len(data) != len(disk) or len(data) < 8:
        return False
    n = int.from_bytes(data[:8], "little")
    if int.from_bytes(disk[:8], "little") != n:
        return False
    try:
        same = json.loads(data[8:8 + n]) == json.loads(disk[8:8 + n])
    except ValueError:
        return False
    return same and data[8 + n:] == disk[8 + n:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(0)
    files = build()
    bad = 0
    for rel, data in sorted(files.items()):
        path = os.path.join(a.out, rel)
        if a.check:
            try:
                with open(path, "rb") as f:
                    same = same_file(data, f.read())
            except OSError:
                same = False
            if not same:
                print("differs:", path)
                bad += 1
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
    if a.check:
        print("%d files, %d differ" % (len(files), bad))
        return 1 if bad else 0
    print("wrote %d files, %d bytes, to %s" % (len(files), sum(map(len, files.values())), a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
