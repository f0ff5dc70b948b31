#!/usr/bin/env python3
"""clip_text_fixtures.py — writes tests/fixtures/clip_text/: tiny CLIP text models and what
transformers' CLIPTextModel computes from them in float64, for the C CLIP text encoder
(src/model/clip_text*.c, tested by tests/test_clip_text.c).

    python3 tests/oracle/clip_text_fixtures.py          # (re)write the fixtures
    python3 tests/oracle/clip_text_fixtures.py --check  # recompute, compare

(any venv with torch, transformers, safetensors and numpy; the fixtures record the versions.)

Models (every weight drawn with a seeded torch.Generator: linears uniform with variance 1/fan_in,
biases 0.1 N(0,1), LayerNorm weights 1 + 0.1 N(0,1) and biases 0.1 N(0,1), embeddings N(0,1)):
  hf_<dt>/       a diffusers text_encoder/ folder: config.json + model.safetensors with transformers'
                 names, weights (all of them) stored as dt in {f32, bf16, f16, f8} (F8 = F8_E4M3);
                 hidden 32, heads 2, intermediate 64, 2 layers, vocab 128, 77 positions, eos 127.
  hf_argmax/     the same shapes, a config with eos_token_id = 2 (the legacy pooling rule:
                 argmax of the ids), F8 weights.
  comfy_f16.safetensors  a single file as ComfyUI users have clip_l.safetensors: transformers'
                 names plus text_model.embeddings.position_ids (I64) and text_projection.weight,
                 no config (the C loader infers it: head_dim 64, eos = vocab - 1, quick_gelu);
                 hidden 64, 1 head, intermediate 64, 1 layer, vocab 128.
  comfy_prefixed_f8.safetensors  the same model under ComfyUI's CLIP save prefix
                 "clip_l.transformer." (text_model.* and text_projection.weight), F8 weights.
The expected values are computed from exactly the stored (rounded) weights, converted to float64.

References <model>.ref.safetensors: per case c, ids_c [n] I32, hidden_c [n, hidden] F32
(last_hidden_state, after the final LayerNorm), pooled_c [hidden] F32 (pooler_output), and
pos_c [1] I32 (the pooled position, asserted equal to the rule's). Cases: "flux" (BOS + content +
EOS + EOS padding to 77, FLUX's layout), "mid" (an EOS in the middle of the content: the first-EOS
rule pools there), "short" (n = 9), "argmax" (hf_argmax only: the largest id is not the EOS);
hf_f32 and hf_argmax hold every case, the others "flux" only (the fixtures stay small).
"""
import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()  # tests/oracle/.venv with torch, transformers, tokenizers, sentencepiece

import numpy as np
import torch
import transformers
import safetensors
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "clip_text")
DT = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16, "f8": torch.float8_e4m3fn}


def draw_weights(cfg, seed):
    """transformers-named state dict (float32), drawn here."""
    g = torch.Generator().manual_seed(seed)
    H, I, V, P = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.max_position_embeddings
    sd = {}

    def lin(name, out, inp):
        a = (3.0 / inp) ** 0.5
        sd[name + ".weight"] = (torch.rand(out, inp, generator=g) * 2 - 1) * a
        sd[name + ".bias"] = 0.1 * torch.randn(out, generator=g)

    def ln(name):
        sd[name + ".weight"] = 1 + 0.1 * torch.randn(H, generator=g)
        sd[name + ".bias"] = 0.1 * torch.randn(H, generator=g)

    sd["text_model.embeddings.token_embedding.weight"] = torch.randn(V, H, generator=g)
    sd["text_model.embeddings.position_embedding.weight"] = torch.randn(P, H, generator=g)
    for i in range(cfg.num_hidden_layers):
        p = f"text_model.encoder.layers.{i}."
        for x in "qkv":
            lin(p + f"self_attn.{x}_proj", H, H)
        lin(p + "self_attn.out_proj", H, H)
        ln(p + "layer_norm1")
        lin(p + "mlp.fc1", I, H)
        lin(p + "mlp.fc2", H, I)
        ln(p + "layer_norm2")
    ln("text_model.final_layer_norm")
    return sd


def reference(cfg, sd64, ids):
    """float64 last_hidden_state [n, H] and pooler_output [H] of transformers' CLIPTextModel."""
    model = CLIPTextModel(cfg).double().eval()
    # transformers 5 keeps CLIPTextModel's modules at the top level (its checkpoint loader maps the
    # files' "text_model." names); older versions nest them under text_model
    have = set(model.state_dict().keys())
    if not any(k.startswith("text_model.") for k in have):
        sd64 = {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in sd64.items()}
    missing, unexpected = model.load_state_dict(sd64, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    assert not missing and not unexpected, (missing, unexpected)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], dtype=torch.long))
    return out.last_hidden_state[0], out.pooler_output[0]


def pooled_pos(cfg, ids):
    if cfg.eos_token_id == 2:
        return int(np.argmax(ids))
    hits = [i for i, t in enumerate(ids) if t == cfg.eos_token_id]
    return hits[0] if hits else 0


def cases(cfg, rng, argmax, full):
    V, eos, bos = cfg.vocab_size, cfg.vocab_size - 1, cfg.vocab_size - 2
    content = [int(x) for x in rng.integers(0, V - 2, 20)]
    out = {"flux": [bos] + content + [eos] * (77 - 1 - len(content)),
           "mid": [bos] + content[:8] + [eos] + content[8:] + [eos] * (77 - 2 - len(content)),
           "short": [bos] + content[:7] + [eos]}
    if not full:
        return {"flux": out["flux"]}
    if argmax:
        c = list(content)
        c[5] = V - 1  # the largest id, not at the first EOS
        out["argmax"] = [bos] + c + [eos - 1] * (77 - 1 - len(c))
    return out


def build(name, cfg, seed, dt, layout, config_json, full):
    sd = draw_weights(cfg, seed)
    stored = {k: v.to(DT[dt]).contiguous() for k, v in sd.items()}
    sd64 = {k: v.to(torch.float64) for k, v in stored.items()}
    files = {}
    if layout == "hf":
        files["model.safetensors"] = dict(stored)
    else:
        extra = dict(stored)
        extra["text_model.embeddings.position_ids"] = torch.arange(cfg.max_position_embeddings).unsqueeze(0)
        g = torch.Generator().manual_seed(seed + 1)
        extra["text_projection.weight"] = (torch.randn(cfg.hidden_size, cfg.hidden_size, generator=g)
                                           * cfg.hidden_size ** -0.5).to(DT[dt])
        if layout == "comfy_prefixed":
            extra = {"clip_l.transformer." + k: v for k, v in extra.items()}
        files[""] = extra
    rng = np.random.default_rng(seed)
    ref, meta = {}, {"generator": "tests/oracle/clip_text_fixtures.py", "seed": str(seed), "dtype": dt,
                     "layout": layout, "oracle_dtype": "float64", "torch_version": torch.__version__,
                     "transformers_version": transformers.__version__,
                     "safetensors_version": safetensors.__version__, "numpy_version": np.__version__}
    names = []
    for c, ids in cases(cfg, rng, cfg.eos_token_id == 2, full).items():
        h, p = reference(cfg, sd64, ids)
        pos = pooled_pos(cfg, ids)
        assert torch.equal(p, h[pos]), c
        ref[f"ids_{c}"] = torch.tensor(ids, dtype=torch.int32)
        ref[f"hidden_{c}"] = h.to(torch.float32).contiguous()
        ref[f"pooled_{c}"] = p.to(torch.float32).contiguous()
        ref[f"pos_{c}"] = torch.tensor([pos], dtype=torch.int32)
        names.append(c)
    meta["cases"] = ",".join(names)
    return files, ref, meta, config_json


def tiny_cfg(eos_token_id=127):
    return CLIPTextConfig(vocab_size=128, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                          num_hidden_layers=2, max_position_embeddings=77, layer_norm_eps=1e-5,
                          hidden_act="quick_gelu", eos_token_id=eos_token_id, bos_token_id=126,
                          pad_token_id=1, projection_dim=32, attn_implementation="eager")


def comfy_cfg():
    return CLIPTextConfig(vocab_size=128, hidden_size=64, num_attention_heads=1, intermediate_size=64,
                          num_hidden_layers=1, max_position_embeddings=77, layer_norm_eps=1e-5,
                          hidden_act="quick_gelu", eos_token_id=127, bos_token_id=126, pad_token_id=1,
                          projection_dim=64, attn_implementation="eager")


def config_json(cfg):
    d = {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "vocab_size": cfg.vocab_size,
         "hidden_size": cfg.hidden_size, "num_attention_heads": cfg.num_attention_heads,
         "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
         "max_position_embeddings": cfg.max_position_embeddings, "layer_norm_eps": cfg.layer_norm_eps,
         "hidden_act": cfg.hidden_act, "eos_token_id": cfg.eos_token_id, "bos_token_id": cfg.bos_token_id,
         "pad_token_id": cfg.pad_token_id, "projection_dim": cfg.projection_dim, "torch_dtype": "float32"}
    return json.dumps(d, indent=2) + "\n"


def all_models():
    out = []
    for i, dt in enumerate(("f32", "bf16", "f16", "f8")):
        c = tiny_cfg()
        out.append((f"hf_{dt}", c, 100 + i, dt, "hf", config_json(c)))
    c = tiny_cfg(eos_token_id=2)
    out.append(("hf_argmax", c, 110, "f8", "hf", config_json(c)))
    out.append(("comfy_f16", comfy_cfg(), 120, "f16", "comfy", None))
    out.append(("comfy_prefixed_f8", comfy_cfg(), 121, "f8", "comfy_prefixed", None))
    return out


def main():
    check = "--check" in sys.argv[1:]
    os.makedirs(OUT, exist_ok=True)
    total, bad = 0, 0
    for name, cfg, seed, dt, layout, cj in all_models():
        files, ref, meta, cj = build(name, cfg, seed, dt, layout, cj, name in ("hf_f32", "hf_argmax"))
        writes = []
        if layout == "hf":
            d = os.path.join(OUT, name)
            os.makedirs(d, exist_ok=True)
            writes.append((os.path.join(d, "model.safetensors"), files["model.safetensors"], {"format": "pt"}))
            cpath = os.path.join(d, "config.json")
            if check:
                bad += open(cpath).read() != cj
            else:
                open(cpath, "w").write(cj)
            total += len(cj)
        else:
            writes.append((os.path.join(OUT, name + ".safetensors"), files[""], {"format": "pt"}))
        writes.append((os.path.join(OUT, name + ".ref.safetensors"), ref, meta))
        for path, tensors, md in writes:
            if check:
                old = load_file(path)
                same = old.keys() == tensors.keys() and all(
                    torch.equal(old[k].view(torch.uint8) if old[k].dtype == torch.float8_e4m3fn else old[k],
                                tensors[k].view(torch.uint8) if tensors[k].dtype == torch.float8_e4m3fn
                                else tensors[k]) or
                    (k.startswith(("hidden_", "pooled_")) and
                     float((old[k].double() - tensors[k].double()).norm() / tensors[k].double().norm()) < 1e-6)
                    for k in tensors)
                if not same:
                    print("MISMATCH", path)
                    bad += 1
            else:
                save_file(tensors, path, metadata=md)
            total += os.path.getsize(path)
    print(f"{'checked' if check else 'wrote'} {OUT}: {total} bytes (torch {torch.__version__}, "
          f"transformers {transformers.__version__}){'' if not bad else f', {bad} MISMATCH'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
