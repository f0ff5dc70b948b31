#!/usr/bin/env python3
"""grad_fixtures.py - parameter gradients of tiny FLUX transformers from PyTorch autograd (oracle).

    python3 tests/oracle/grad_fixtures.py [--out DIR] [--check]

Runs inside tests/oracle/.venv (venv_bootstrap.py). For each case a diffusers
FluxTransformer2DModel (float64) with every parameter drawn from a fixed-seed generator (2-D
weights ~ N(0, 1/fan_in), norm scales 1 + 0.1 N, biases 0.1 N; the modulation linears get larger
weights so the gates are far from zero and every path carries gradient) runs on random inputs and
the scalar
    loss = sum(out * G) + sum_l sum(attn_l * H_l)
is differentiated by autograd, where out [L, out_channels] is the model output, G a random
"upstream gradient", and attn_l [T + L, hidden] the attention output rows of layer l BEFORE the
output projection (text rows first; taken with hooks on attn.to_out.0 / attn.to_add_out inputs in
double blocks and on the attention module's output in single blocks) for the layers in
`attn_layers` with random H_l: exactly what cd_flux_grad_backward computes from dout = G and
dattn[l] = H_l. The CLEAR case runs ClearAttnProcessor of flux_fixtures.py (the reference's masked
attention with pooled keys; its spatial_weight is a trained parameter there).

Files per case in DIR (default tests/fixtures/grad/):
  <case>_weights.safetensors   every parameter, diffusers names (F32; the model ran in float64 on
                               exactly these values)
  <case>_io.safetensors        img, txt, pooled, img_ids, txt_ids, timestep [1], guidance [1]
                               (guidance models), G, H_<l>, out (the forward output) and
                               grad.<name> for every parameter (F32 from float64)
Metadata: the config, rope_axes, grid_h, grid_w, radius, down, attn_layers "l1,l2".
`--check` recomputes and compares with the files on disk.
"""
import argparse
import math
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import diffusers  # noqa: E402
from diffusers import FluxTransformer2DModel  # noqa: E402

from flux_fixtures import ClearAttnProcessor, set_processors  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "grad")

CASES = [
    dict(name="dense_dev", seed=31, guidance=True, heads=2, head_dim=8, axes=(2, 2, 4), depth=1,
         depth_single=2, in_ch=8, out_ch=8, ctx=12, pooled=10, T=3, H=3, W=4, radius=0, down=0,
         t=0.63, g=3.5, attn_layers=(0, 2)),
    dict(name="clear_schnell", seed=32, guidance=False, heads=2, head_dim=8, axes=(2, 2, 4), depth=2,
         depth_single=1, in_ch=8, out_ch=8, ctx=12, pooled=10, T=2, H=4, W=4, radius=2, down=2,
         t=0.27, g=None, attn_layers=(1, 2)),
]


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, p in model.state_dict().items():
        if p.ndim >= 2:
            v = torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel())
            if ".norm" in name and ".linear." in name or name.startswith("norm_out"):
                v = v * 3  # modulation: gates and scales well away from zero
        elif name.endswith("spatial_weight"):
            v = None
        elif name.endswith(".weight"):
            v = 1 + 0.1 * torch.randn(p.shape, generator=g)
        else:
            v = 0.1 * torch.randn(p.shape, generator=g)
        if v is None:
            d = p.shape[3]
            v = (1 + 0.5 * (torch.rand(p.shape, generator=g) * 2 - 1)) / (d * d)
        sd[name] = v.to(torch.float32).contiguous()
    model.load_state_dict(sd, strict=True)
    return sd


def make_case(c):
    D = c["heads"] * c["head_dim"]
    T, H, W = c["T"], c["H"], c["W"]
    L = H * W
    model = FluxTransformer2DModel(
        patch_size=1, in_channels=c["in_ch"], out_channels=c["out_ch"], num_layers=c["depth"],
        num_single_layers=c["depth_single"], attention_head_dim=c["head_dim"],
        num_attention_heads=c["heads"], joint_attention_dim=c["ctx"], pooled_projection_dim=c["pooled"],
        guidance_embeds=c["guidance"], axes_dims_rope=tuple(c["axes"]))
    if c["radius"]:
        set_processors(model, lambda n: ClearAttnProcessor(T, H, W, c["radius"], c["down"]))
    sd = randomize(model, 7000 + c["seed"])
    model = model.double()
    g = torch.Generator().manual_seed(8000 + c["seed"])
    inp = {"img": torch.randn(L, c["in_ch"], generator=g), "txt": torch.randn(T, c["ctx"], generator=g),
           "pooled": torch.randn(c["pooled"], generator=g)}
    ids = torch.zeros(L, 3)
    ids[:, 1] = torch.arange(L).div(W, rounding_mode="floor").float()
    ids[:, 2] = torch.arange(L).remainder(W).float()
    inp["img_ids"], inp["txt_ids"] = ids, torch.zeros(T, 3)
    inp["timestep"] = torch.tensor([c["t"]], dtype=torch.float32)
    if c["guidance"]:
        inp["guidance"] = torch.tensor([c["g"]], dtype=torch.float32)
    G = torch.randn(L, c["out_ch"], generator=g, dtype=torch.float64)
    Hs = {l: torch.randn(T + L, D, generator=g, dtype=torch.float64) for l in c["attn_layers"]}

    # attention rows of the chosen layers, with their autograd graph
    captured = {}
    hooks = []
    for l in c["attn_layers"]:
        if l < c["depth"]:
            a = model.transformer_blocks[l].attn
            hooks.append(a.to_out[0].register_forward_pre_hook(
                lambda m, args, l=l: captured.__setitem__((l, "img"), args[0])))
            hooks.append(a.to_add_out.register_forward_pre_hook(
                lambda m, args, l=l: captured.__setitem__((l, "txt"), args[0])))
        else:
            a = model.single_transformer_blocks[l - c["depth"]].attn
            hooks.append(a.register_forward_hook(
                lambda m, args, out, l=l: captured.__setitem__((l, "all"), out)))
    out = model(hidden_states=inp["img"][None].double(), encoder_hidden_states=inp["txt"][None].double(),
                pooled_projections=inp["pooled"][None].double(), timestep=inp["timestep"],
                img_ids=inp["img_ids"], txt_ids=inp["txt_ids"], guidance=inp.get("guidance"),
                return_dict=False)[0][0]
    for h in hooks:
        h.remove()
    loss = (out * G).sum()
    for l in c["attn_layers"]:
        if l < c["depth"]:
            rows = torch.cat([captured[(l, "txt")][0], captured[(l, "img")][0]], dim=0)
        else:
            rows = captured[(l, "all")][0]
        assert rows.shape == (T + L, D), rows.shape
        loss = loss + (rows * Hs[l]).sum()
    loss.backward()

    tensors = {k: v.to(torch.float32).contiguous() for k, v in inp.items()}
    tensors["G"] = G.float().contiguous()
    tensors["out"] = out.detach().float().contiguous()
    for l, h in Hs.items():
        tensors[f"H_{l}"] = h.float().contiguous()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert p.grad.abs().max() > 0, f"zero gradient for {name}: the case does not exercise it"
        tensors["grad." + name] = p.grad.float().contiguous()
    meta = {
        "generator": "tests/oracle/grad_fixtures.py", "hidden": str(D), "heads": str(c["heads"]),
        "head_dim": str(c["head_dim"]), "depth": str(c["depth"]), "depth_single": str(c["depth_single"]),
        "in_channels": str(c["in_ch"]), "out_channels": str(c["out_ch"]), "context_dim": str(c["ctx"]),
        "pooled_dim": str(c["pooled"]), "mlp_hidden": str(4 * D), "guidance": "1" if c["guidance"] else "0",
        "rope_axes": ",".join(map(str, c["axes"])), "rope_theta": "10000", "grid_h": str(H), "grid_w": str(W),
        "text_len": str(T), "radius": str(c["radius"]), "down": str(c["down"]),
        "attn_layers": ",".join(map(str, c["attn_layers"])), "timestep": repr(c["t"]),
        "torch_version": torch.__version__, "diffusers_version": diffusers.__version__,
    }
    wmeta = {"generator": meta["generator"], "layout": "flux-diffusers", "rope_axes": meta["rope_axes"],
             "rope_theta": "10000"}
    return {f"{c['name']}_weights": (sd, wmeta), f"{c['name']}_io": (tensors, meta)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    bad = total = 0
    for c in CASES:
        for fname, (tensors, meta) in make_case(c).items():
            path = os.path.join(args.out, fname + ".safetensors")
            if args.check:
                old = load_file(path) if os.path.exists(path) else {}
                same = set(old) == set(tensors) and all(torch.equal(old[t], tensors[t]) for t in tensors)
                print(f"{fname}: {'same' if same else 'DIFFERENT'}")
                bad += not same
                continue
            save_file(tensors, path, metadata=meta)
            total += os.path.getsize(path)
            print(f"wrote {path}")
    if not args.check:
        print(f"{total / 1024:.0f} KiB")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
