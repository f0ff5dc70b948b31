#!/usr/bin/env python3
"""flux_fixtures.py - golden outputs of tiny random FLUX transformers from diffusers (the oracle).

    python3 tests/oracle/flux_fixtures.py [--out DIR] [--check]

Runs inside tests/oracle/.venv (venv_bootstrap.py: torch, safetensors, numpy, diffusers). For each
case below it
  1. draws every weight of a tiny FLUX transformer (float32, fixed-seed torch.Generator) as a
     BFL-named state dict (docs/flux.md section 2: fused img_attn.qkv / txt_attn.qkv, linear1 =
     q|k|v|mlp rows, final_layer.adaLN_modulation.1 = shift|scale rows);
  2. converts it with diffusers' own convert_flux_transformer_checkpoint_to_diffusers (single-file
     loader). That function hard-codes FLUX's inner_dim = 3072 for the single-block linear1 split;
     we run its unmodified source with that one constant set to the tiny hidden size (asserted to
     be the only change) and assert that it consumed every BFL tensor;
  3. loads the result into diffusers.FluxTransformer2DModel with load_state_dict(strict=True)
     (so our BFL names, the converter and the model agree exactly), converts the model to float64
     and runs it on random inputs:
       - dense: diffusers' own FluxAttnProcessor;
       - CLEAR: ClearAttnProcessor below, written after the CLEAR reference processors
         (Huage001/CLEAR attention_processor.py: LocalFlexAttnProcessor and
         LocalDownsampleFlexAttnProcessor): same projections, QK RMSNorm, text-first concat,
         diffusers' apply_rotary_emb, scale 1/sqrt(head_dim); pooled keys/values = image K/V (after
         norm and RoPE) unflattened (H/d, d, W/d, d) times spatial_weight (1,1,1,d,1,d,1), summed
         over each cell, appended after the image tokens; the boolean mask is the reference's
         mask_mod (taken from attention_fixtures.py, asserted equal to a structural construction
         there); attention = SDPA with that mask in float64.
     The pooled variant uses a CLEAR checkpoint (<case>_clear.safetensors, diffusers names as the
     reference trainer saves them: the image-stream to_q/to_k/to_v/to_out.0 of double blocks, the
     to_q/to_k/to_v of single blocks, and one `...attn.processor.spatial_weight` [1,1,1,d,1,d,1] per
     layer), loaded into the model like the reference does (load_state_dict, strict=False, with
     only non-CLEAR keys missing).
  Cross-checks before anything is written: ClearAttnProcessor with no mask reproduces diffusers'
  processor (< 1e-13 relative); with a radius covering the grid it equals dense.
Per-block outputs are recorded with forward hooks: x_block_<i>_<variant> = cat(encoder_hidden_states,
hidden_states) after double block i (i < depth) and after single block i - depth, [T + L, hidden],
text rows first: the joint residual stream that the C probe sees.

Files per case in DIR (default tests/fixtures/flux/):
  <case>_bfl.safetensors        weights, BFL names (F32)
  <case>_diffusers.safetensors  the same weights, diffusers names (F32)
  <case>_clear.safetensors      CLEAR weights (diffusers names), cases with a pooled variant only
  <case>_io.safetensors         inputs img [L, in], txt [T, ctx], pooled [pooled], img_ids [L, 3]
                                (0, row, col) row-major, txt_ids [T, 3] zeros, timestep [1],
                                guidance [1] (guidance models); per variant out_<v> [L, out] and
                                x_block_<i>_<v> [T + L, hidden] (F32, computed in float64)
Metadata of the io file: the config (hidden, heads, head_dim, depth, depth_single, in_channels,
out_channels, context_dim, pooled_dim, mlp_hidden, guidance, rope_axes "a,b,c", rope_theta),
grid_h, grid_w, text_len, timestep, guidance_scale, variants "v1,v2,..", per variant radius_<v>,
down_<v>, weights_<v> ("base" or "clear"), oracle_dtype, torch/diffusers versions, seed, generator.

Numerics of the oracle: float64 everywhere except where diffusers itself computes in float32 in a
float64 model: the timestep/guidance sinusoidal embedding (get_timestep_embedding casts to float32,
as BFL's timestep_embedding does) and apply_rotary_emb (q and k rotated in float32, cos/sin tables
float32 from float64 angles). Those match what FLUX computes in float32 inference.
`--check` recomputes everything and compares with the files on disk (exit 1 on a difference).
"""
import argparse
import inspect
import math
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import diffusers  # noqa: E402
from diffusers import FluxTransformer2DModel  # noqa: E402
from diffusers.loaders import single_file_utils  # noqa: E402
from diffusers.models.embeddings import apply_rotary_emb  # noqa: E402

from attention_fixtures import mask_mod_reference, mask_structural  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "flux")
THETA = 10000

# variants: (name, radius, down, weights) ; weights "base" or "clear" (the CLEAR checkpoint)
CASES = [
    dict(name="dev_h32_sq4x4", seed=11, guidance=True, heads=2, head_dim=16, axes=(4, 6, 6),
         depth=2, depth_single=2, in_ch=16, out_ch=16, ctx=32, pooled=16, T=5, H=4, W=4,
         t=0.37, g=3.5,
         variants=[("dense", 0, 0, "base"), ("clear_r2", 2, 0, "base"),
                   ("clear_r2_d2", 2, 2, "clear")]),
    dict(name="schnell_h32_rect3x5", seed=12, guidance=False, heads=2, head_dim=16, axes=(2, 6, 8),
         depth=1, depth_single=2, in_ch=8, out_ch=8, ctx=24, pooled=24, T=3, H=3, W=5,
         t=0.81, g=None,
         variants=[("dense", 0, 0, "base"), ("clear_r2", 2, 0, "base"), ("clear_r3", 3, 0, "base")]),
    dict(name="dev_h32x4_6x4", seed=13, guidance=True, heads=4, head_dim=8, axes=(2, 2, 4),
         depth=1, depth_single=3, in_ch=16, out_ch=16, ctx=28, pooled=20, T=7, H=6, W=4,
         t=0.055, g=4.0,
         variants=[("dense", 0, 0, "base"), ("clear_r2", 2, 0, "base"),
                   ("clear_r3_d2", 3, 2, "clear")]),
]


# ---- weights -------------------------------------------------------------------------------------
def bfl_shapes(c):
    """(name, shape, kind) of every BFL tensor, in a fixed order. kind: w (linear weight), b (bias),
    s (RMSNorm scale)."""
    D = c["heads"] * c["head_dim"]
    Fm = 4 * D
    out = []

    def lin(name, o, i):
        out.append((name + ".weight", (o, i), "w"))
        out.append((name + ".bias", (o,), "b"))

    lin("img_in", D, c["in_ch"])
    lin("txt_in", D, c["ctx"])
    lin("time_in.in_layer", D, 256)
    lin("time_in.out_layer", D, D)
    lin("vector_in.in_layer", D, c["pooled"])
    lin("vector_in.out_layer", D, D)
    if c["guidance"]:
        lin("guidance_in.in_layer", D, 256)
        lin("guidance_in.out_layer", D, D)
    for i in range(c["depth"]):
        p = f"double_blocks.{i}."
        for s in ("img", "txt"):
            lin(p + f"{s}_mod.lin", 6 * D, D)
            lin(p + f"{s}_attn.qkv", 3 * D, D)
            out.append((p + f"{s}_attn.norm.query_norm.scale", (c["head_dim"],), "s"))
            out.append((p + f"{s}_attn.norm.key_norm.scale", (c["head_dim"],), "s"))
            lin(p + f"{s}_attn.proj", D, D)
            lin(p + f"{s}_mlp.0", Fm, D)
            lin(p + f"{s}_mlp.2", D, Fm)
    for i in range(c["depth_single"]):
        p = f"single_blocks.{i}."
        lin(p + "linear1", 3 * D + Fm, D)
        lin(p + "linear2", D, D + Fm)
        out.append((p + "norm.query_norm.scale", (c["head_dim"],), "s"))
        out.append((p + "norm.key_norm.scale", (c["head_dim"],), "s"))
        lin(p + "modulation.lin", 3 * D, D)
    lin("final_layer.adaLN_modulation.1", 2 * D, D)
    lin("final_layer.linear", c["out_ch"], D)
    return out


def draw(g, shape, kind):
    x = torch.randn(*shape, generator=g, dtype=torch.float32)
    if kind == "w":
        return x / math.sqrt(shape[1])      # ~ N(0, 1/fan_in): 0.06..0.25 here
    if kind == "b":
        return 0.1 * x
    return 1.0 + 0.1 * x                    # RMSNorm scales around 1


def bfl_weights(c, g):
    return {name: draw(g, shape, kind).contiguous() for name, shape, kind in bfl_shapes(c)}


def to_diffusers(bfl, hidden):
    """diffusers' convert_flux_transformer_checkpoint_to_diffusers with inner_dim = hidden."""
    fn = single_file_utils.convert_flux_transformer_checkpoint_to_diffusers
    src = inspect.getsource(fn)
    assert src.count("inner_dim = 3072") == 1 and "mlp_ratio = 4.0" in src, \
        "diffusers' converter changed: review the inner_dim patch"
    src = src.replace("inner_dim = 3072", f"inner_dim = {hidden}")
    ns = dict(vars(single_file_utils))
    exec(compile(src, inspect.getsourcefile(fn), "exec"), ns)  # noqa: S102 - diffusers' own source
    ck = dict(bfl)
    conv = ns[fn.__name__](ck)
    assert not ck, f"converter left BFL tensors unconverted: {sorted(ck)}"
    return {k: v.contiguous() for k, v in conv.items()}


# ---- CLEAR attention processor -------------------------------------------------------------------
class ClearAttnProcessor(nn.Module):
    """The CLEAR reference processors (LocalFlexAttnProcessor / LocalDownsampleFlexAttnProcessor)
    with the FlexAttention block mask replaced by a dense boolean mask and SDPA (float64 here).
    radius 0: no mask (dense). T, H, W fixed per instance (the reference keeps them global and
    hard-codes T = 512 in its key slice)."""

    def __init__(self, T, H, W, radius, down=0):
        super().__init__()
        self.T, self.H, self.W, self.radius, self.down = T, H, W, radius, down
        self.n_pool = (H // down) * (W // down) if (radius > 0 and down >= 2) else 0
        if self.n_pool:
            assert H % down == 0 and W % down == 0
            self.spatial_weight = nn.Parameter(
                torch.ones(1, 1, 1, down, 1, down, 1) / (down * down))
        if radius > 0:
            m = mask_mod_reference(T, H, W, radius, self.n_pool)
            assert torch.equal(m, mask_structural(T, H, W, radius, self.n_pool))
            self.register_buffer("mask", m, persistent=False)
        else:
            self.mask = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 image_rotary_emb=None):
        assert attention_mask is None
        B = hidden_states.shape[0]
        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(B, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(B, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(B, -1, attn.heads, head_dim).transpose(1, 2)
        query = attn.norm_q(query)
        key = attn.norm_k(key)
        if encoder_hidden_states is not None:
            eq = attn.add_q_proj(encoder_hidden_states).view(B, -1, attn.heads, head_dim).transpose(1, 2)
            ek = attn.add_k_proj(encoder_hidden_states).view(B, -1, attn.heads, head_dim).transpose(1, 2)
            ev = attn.add_v_proj(encoder_hidden_states).view(B, -1, attn.heads, head_dim).transpose(1, 2)
            eq = attn.norm_added_q(eq)
            ek = attn.norm_added_k(ek)
            query = torch.cat([eq, query], dim=2)
            key = torch.cat([ek, key], dim=2)
            value = torch.cat([ev, value], dim=2)
        assert query.shape[2] == self.T + self.H * self.W
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb)
            key = apply_rotary_emb(key, image_rotary_emb)
        scale = math.sqrt(1 / head_dim)
        if self.n_pool:
            d = self.down
            kd = (key[:, :, self.T:].unflatten(2, (self.H // d, d, self.W // d, d))
                  * self.spatial_weight).sum(dim=(3, 5)).flatten(2, 3)
            vd = (value[:, :, self.T:].unflatten(2, (self.H // d, d, self.W // d, d))
                  * self.spatial_weight).sum(dim=(3, 5)).flatten(2, 3)
            key = torch.cat([key, kd], dim=2)
            value = torch.cat([value, vd], dim=2)
        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=self.mask,
                                                       dropout_p=0.0, is_causal=False, scale=scale)
        hidden_states = hidden_states.transpose(1, 2).reshape(B, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        if encoder_hidden_states is not None:
            T = encoder_hidden_states.shape[1]
            encoder_hidden_states, hidden_states = hidden_states[:, :T], hidden_states[:, T:]
            hidden_states = attn.to_out[0](hidden_states)
            hidden_states = attn.to_out[1](hidden_states)
            encoder_hidden_states = attn.to_add_out(encoder_hidden_states)
            return hidden_states, encoder_hidden_states
        return hidden_states


def set_processors(model, make):
    names = list(model.attn_processors.keys())
    model.set_attn_processor({n: make(n) for n in names})
    return names


# ---- running -------------------------------------------------------------------------------------
def run(model, inp, c):
    """Final output [L, out] and the per-block joint residual streams, float64."""
    blocks = list(model.transformer_blocks) + list(model.single_transformer_blocks)
    rec = [None] * len(blocks)
    hooks = []
    for i, b in enumerate(blocks):
        def hook(_m, _args, out, i=i):
            enc, hid = out
            rec[i] = torch.cat([enc, hid], dim=1)[0].detach().clone()
        hooks.append(b.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(hidden_states=inp["img"][None].double(),
                        encoder_hidden_states=inp["txt"][None].double(),
                        pooled_projections=inp["pooled"][None].double(),
                        timestep=inp["timestep"],
                        img_ids=inp["img_ids"], txt_ids=inp["txt_ids"],
                        guidance=inp.get("guidance"), return_dict=False)[0][0]
    finally:
        for h in hooks:
            h.remove()
    assert all(r is not None for r in rec)
    return out, rec


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def clear_state(c, diff, g, d):
    """A CLEAR checkpoint: trained projections (base + perturbation) and spatial weights."""
    sd = {}
    for i in range(c["depth"]):
        for p in ("to_q", "to_k", "to_v", "to_out.0"):
            for s in ("weight", "bias"):
                k = f"transformer_blocks.{i}.attn.{p}.{s}"
                sd[k] = diff[k] + 0.05 * torch.randn(diff[k].shape, generator=g)
    for i in range(c["depth_single"]):
        for p in ("to_q", "to_k", "to_v"):
            for s in ("weight", "bias"):
                k = f"single_transformer_blocks.{i}.attn.{p}.{s}"
                sd[k] = diff[k] + 0.05 * torch.randn(diff[k].shape, generator=g)
    for i in range(c["depth"]):
        u = torch.rand(1, 1, 1, d, 1, d, 1, generator=g) * 2 - 1
        sd[f"transformer_blocks.{i}.attn.processor.spatial_weight"] = (1 + 0.5 * u) / (d * d)
    for i in range(c["depth_single"]):
        u = torch.rand(1, 1, 1, d, 1, d, 1, generator=g) * 2 - 1
        sd[f"single_transformer_blocks.{i}.attn.processor.spatial_weight"] = (1 + 0.5 * u) / (d * d)
    return {k: v.to(torch.float32).contiguous() for k, v in sd.items()}


def make_case(c):
    D = c["heads"] * c["head_dim"]
    T, H, W = c["T"], c["H"], c["W"]
    L = H * W
    g = torch.Generator().manual_seed(5000 + c["seed"])
    bfl = bfl_weights(c, g)
    diff = to_diffusers(bfl, D)

    def fresh_model():
        m = FluxTransformer2DModel(
            patch_size=1, in_channels=c["in_ch"], out_channels=c["out_ch"],
            num_layers=c["depth"], num_single_layers=c["depth_single"],
            attention_head_dim=c["head_dim"], num_attention_heads=c["heads"],
            joint_attention_dim=c["ctx"], pooled_projection_dim=c["pooled"],
            guidance_embeds=c["guidance"], axes_dims_rope=tuple(c["axes"]))
        m.load_state_dict(diff, strict=True)
        return m.double().eval()

    # inputs
    inp = {
        "img": torch.randn(L, c["in_ch"], generator=g),
        "txt": torch.randn(T, c["ctx"], generator=g),
        "pooled": torch.randn(c["pooled"], generator=g),
    }
    ids = torch.zeros(L, 3)
    ids[:, 1] = torch.arange(L).div(W, rounding_mode="floor").float()
    ids[:, 2] = torch.arange(L).remainder(W).float()
    inp["img_ids"] = ids
    inp["txt_ids"] = torch.zeros(T, 3)
    inp["timestep"] = torch.tensor([c["t"]], dtype=torch.float32)
    if c["guidance"]:
        inp["guidance"] = torch.tensor([c["g"]], dtype=torch.float32)

    tensors = {k: v.to(torch.float32).contiguous() for k, v in inp.items()}
    notes = []

    # dense: diffusers' own processor
    model = fresh_model()
    assert all(type(p).__name__ == "FluxAttnProcessor" for p in model.attn_processors.values())
    out_dense, rec_dense = run(model, inp, c)
    # our CLEAR processor without a mask must reproduce it
    set_processors(model, lambda n: ClearAttnProcessor(T, H, W, 0))
    out_c0, rec_c0 = run(model, inp, c)
    e = max([rel(out_c0, out_dense)] + [rel(a, b) for a, b in zip(rec_c0, rec_dense)])
    assert e < 1e-13, f"ClearAttnProcessor(dense) differs from diffusers' processor: {e}"
    notes.append(f"processor(dense)=diffusers {e:.1e}")
    # a disc covering the grid equals dense
    set_processors(model, lambda n: ClearAttnProcessor(T, H, W, 2 * (H + W)))
    out_big, _ = run(model, inp, c)
    e = rel(out_big, out_dense)
    assert e < 1e-13, f"CLEAR with a covering disc differs from dense: {e}"

    clear_sd = None
    meta_var = {}
    results = {}
    for vname, r, d, wts in c["variants"]:
        meta_var[f"radius_{vname}"] = str(r)
        meta_var[f"down_{vname}"] = str(d)
        meta_var[f"weights_{vname}"] = wts
        if vname == "dense":
            results[vname] = (out_dense, rec_dense)
            continue
        model = fresh_model()
        set_processors(model, lambda n, r=r, d=d: ClearAttnProcessor(T, H, W, r, d))
        model.double()
        if wts == "clear":
            assert d >= 2 and clear_sd is None
            clear_sd = clear_state(c, diff, g, d)
            missing, unexpected = model.load_state_dict(clear_sd, strict=False)
            assert not unexpected, f"CLEAR names unknown to the model: {unexpected}"
            trained = [k for k in missing if ".attn.to_q." in k or ".attn.to_k." in k or
                       ".attn.to_v." in k or ".attn.to_out." in k or "spatial_weight" in k]
            assert not trained, f"CLEAR tensors not loaded: {trained}"
            n_proj = len([k for k in clear_sd if "spatial_weight" not in k])
            assert len(missing) == len(diff) - n_proj, "CLEAR load: unexpected missing-key count"
        out, rec = run(model, inp, c)
        e = rel(out, out_dense)
        assert e > 1e-3, f"{vname}: CLEAR output indistinguishable from dense ({e}): mask not local"
        notes.append(f"{vname} vs dense {e:.2f}")
        results[vname] = (out, rec)

    for vname, (out, rec) in results.items():
        tensors[f"out_{vname}"] = out.to(torch.float32).contiguous()
        for i, x in enumerate(rec):
            tensors[f"x_block_{i}_{vname}"] = x.to(torch.float32).contiguous()

    meta = {
        "generator": "tests/oracle/flux_fixtures.py",
        "hidden": str(D), "heads": str(c["heads"]), "head_dim": str(c["head_dim"]),
        "depth": str(c["depth"]), "depth_single": str(c["depth_single"]),
        "in_channels": str(c["in_ch"]), "out_channels": str(c["out_ch"]),
        "context_dim": str(c["ctx"]), "pooled_dim": str(c["pooled"]), "mlp_hidden": str(4 * D),
        "guidance": "1" if c["guidance"] else "0",
        "rope_axes": ",".join(str(a) for a in c["axes"]), "rope_theta": str(THETA),
        "grid_h": str(H), "grid_w": str(W), "text_len": str(T),
        "timestep": repr(c["t"]), "guidance_scale": repr(c["g"]) if c["guidance"] else "none",
        "variants": ",".join(v[0] for v in c["variants"]),
        "oracle_dtype": "float64 (diffusers computes the timestep embedding and RoPE in float32)",
        "torch_version": torch.__version__, "diffusers_version": diffusers.__version__,
        "seed": str(5000 + c["seed"]),
    }
    meta.update(meta_var)
    files = {
        f"{c['name']}_bfl": (bfl, {"layout": "flux-bfl", "generator": meta["generator"]}),
        f"{c['name']}_diffusers": (diff, {"layout": "flux-diffusers", "generator": meta["generator"]}),
        f"{c['name']}_io": (tensors, meta),
    }
    if clear_sd is not None:
        files[f"{c['name']}_clear"] = (clear_sd, {"layout": "clear", "generator": meta["generator"]})
    return files, "; ".join(notes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    bad = total = nfiles = 0
    for c in CASES:
        files, note = make_case(c)
        for fname, (tensors, meta) in files.items():
            path = os.path.join(args.out, fname + ".safetensors")
            if args.check:
                if not os.path.exists(path):
                    print(f"{fname}: MISSING {path}")
                    bad += 1
                    continue
                old = load_file(path)
                same = set(old) == set(tensors) and all(torch.equal(old[t], tensors[t]) for t in tensors)
                with safe_open(path, "pt") as f:
                    om = f.metadata() or {}
                same = same and all(om.get(k) == v for k, v in meta.items()
                                    if k not in ("torch_version", "diffusers_version"))
                print(f"{fname}: {'same' if same else 'DIFFERENT'}")
                bad += not same
                continue
            save_file(tensors, path, metadata=meta)
            size = os.path.getsize(path)
            total += size
            nfiles += 1
            print(f"{fname}: {size} bytes")
        print(f"  {c['name']}: {note}")
    if args.check:
        sys.exit(1 if bad else 0)
    print(f"{nfiles} files, {total} bytes in {args.out} (torch {torch.__version__}, "
          f"diffusers {diffusers.__version__})")


if __name__ == "__main__":
    main()
