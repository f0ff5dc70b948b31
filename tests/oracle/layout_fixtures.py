#!/usr/bin/env python3
"""layout_fixtures.py - BFL <-> diffusers golden pairs for cleardit's checkpoint converter, made
by diffusers' own conversion code.

    python3 tests/oracle/layout_fixtures.py [--out DIR] [--check]

Creates tests/oracle/.venv on first use (torch, safetensors, numpy, diffusers; see
venv_bootstrap.py) and re-executes itself inside it. Writes into DIR (default tests/fixtures/layout/):

  flux_bfl.safetensors        a tiny FLUX transformer in BFL names (F32, torch.randn with a fixed
                              seed), keys written from BFL's flux/model.py + modules/layers.py
  flux_diffusers.safetensors  the same tensors converted by
                              diffusers.loaders.single_file_utils.convert_flux_transformer_checkpoint_to_diffusers
  ae_bfl.safetensors          a tiny FLUX autoencoder in BFL names (flux/modules/autoencoder.py)
  ae_diffusers.safetensors    converted by diffusers' convert_ldm_vae_checkpoint
  diffusers_models.json       for several tiny configs: the config and the state_dict key set with
                              shapes of diffusers.FluxTransformer2DModel / AutoencoderKL
                              instantiated with that config

Each .safetensors carries metadata: "config" (JSON, cleardit's field names), "generator",
"diffusers_version", "torch_version". tests/test_layout_oracle.c converts each BFL fixture with
cd_ckpt_convert and requires the diffusers fixture byte for byte (names, shapes, dtypes, data),
and the reverse; it also requires cleardit's expected diffusers tensor set (names and shapes) to
equal each model's state_dict.

Checks made here before anything is written:
  - the diffusers converters consume every BFL key (the transformer converter pops each key it
    maps; nothing may be left over) and produce no None;
  - the converted state dicts load with load_state_dict(strict=True) into FluxTransformer2DModel
    / AutoencoderKL built from the same config (names AND shapes must match).

One deviation from diffusers, stated here: convert_flux_transformer_checkpoint_to_diffusers
hard-codes inner_dim = 3072 (FLUX.1's hidden size) to split single_blocks.N.linear1. For a tiny
model that constant is replaced by the fixture's hidden size (source patched at run time, the one
line asserted to exist exactly once); nothing else in the function is touched.
`--check` recomputes everything and compares with the files on disk (exit 1 on a difference).
"""
import argparse
import inspect
import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()

import diffusers  # noqa: E402
import torch  # noqa: E402
from diffusers import AutoencoderKL, FluxTransformer2DModel  # noqa: E402
from diffusers.loaders import single_file_utils as sfu  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "layout")

# cleardit's field names (cd_flux_config / cd_ae_config)
# Small enough for < 300 KB of fixtures in all; every dimension distinct from the others (D=8,
# 2D, 3D, 6D, mlp 32, 3D+mlp, D+mlp, head_dim 4, in 6, out 7, context 10, pooled 5) so that a
# mix-up cannot hide behind equal sizes.
FLUX_FIXTURE = dict(hidden=8, head_dim=4, depth=2, depth_single=2, in_channels=6, out_channels=7,
                    context_dim=10, pooled_dim=5, mlp_hidden=32, guidance=1)
FLUX_SCHNELL = dict(hidden=24, head_dim=8, depth=1, depth_single=3, in_channels=12, out_channels=12,
                    context_dim=20, pooled_dim=6, mlp_hidden=96, guidance=0)
AE_FIXTURE = dict(in_channels=3, out_channels=3, ch=2, ch_mult=[1, 2, 3], num_res_blocks=1, z_channels=2)
AE_WIDE = dict(in_channels=3, out_channels=3, ch=8, ch_mult=[1, 2, 4, 4], num_res_blocks=2, z_channels=16)


# ---- BFL state dicts, from BFL's module code ----------------------------------------------------

class Sd:
    """An ordered state dict of random float32 tensors."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)
        self.d = {}

    def t(self, name, *shape):
        self.d[name] = torch.randn(*shape, generator=self.g, dtype=torch.float32)

    def linear(self, name, out, inp):  # nn.Linear(inp, out, bias=True)
        self.t(name + ".weight", out, inp)
        self.t(name + ".bias", out)

    def conv(self, name, out, inp, k):  # nn.Conv2d(inp, out, k)
        self.t(name + ".weight", out, inp, k, k)
        self.t(name + ".bias", out)

    def gn(self, name, c):  # nn.GroupNorm(affine=True)
        self.t(name + ".weight", c)
        self.t(name + ".bias", c)


def flux_bfl(cfg, seed):
    """Flux(params).state_dict() key set of model.py / layers.py, all Linear layers with bias."""
    s = Sd(seed)
    D, M, hd = cfg["hidden"], cfg["mlp_hidden"], cfg["head_dim"]
    s.linear("img_in", D, cfg["in_channels"])
    s.linear("time_in.in_layer", D, 256)          # MLPEmbedder(in_dim=256, hidden_dim=D)
    s.linear("time_in.out_layer", D, D)
    s.linear("vector_in.in_layer", D, cfg["pooled_dim"])
    s.linear("vector_in.out_layer", D, D)
    if cfg["guidance"]:
        s.linear("guidance_in.in_layer", D, 256)
        s.linear("guidance_in.out_layer", D, D)
    s.linear("txt_in", D, cfg["context_dim"])
    for i in range(cfg["depth"]):                  # DoubleStreamBlock
        p = f"double_blocks.{i}."
        for st in ("img", "txt"):
            s.linear(p + f"{st}_mod.lin", 6 * D, D)  # Modulation(double=True)
            s.linear(p + f"{st}_attn.qkv", 3 * D, D)  # SelfAttention(qkv_bias=True)
            s.t(p + f"{st}_attn.norm.query_norm.scale", hd)  # QKNorm -> RMSNorm.scale
            s.t(p + f"{st}_attn.norm.key_norm.scale", hd)
            s.linear(p + f"{st}_attn.proj", D, D)
            s.linear(p + f"{st}_mlp.0", M, D)
            s.linear(p + f"{st}_mlp.2", D, M)
    for i in range(cfg["depth_single"]):           # SingleStreamBlock
        p = f"single_blocks.{i}."
        s.linear(p + "linear1", 3 * D + M, D)
        s.linear(p + "linear2", D, D + M)
        s.t(p + "norm.query_norm.scale", hd)
        s.t(p + "norm.key_norm.scale", hd)
        s.linear(p + "modulation.lin", 3 * D, D)   # Modulation(double=False)
    s.linear("final_layer.linear", cfg["out_channels"], D)
    s.linear("final_layer.adaLN_modulation.1", 2 * D, D)
    return s.d


def ae_bfl(cfg, seed):
    """AutoEncoder(params).state_dict() key set of autoencoder.py (Encoder + Decoder)."""
    s = Sd(seed)
    ch, mult, nrb, z = cfg["ch"], cfg["ch_mult"], cfg["num_res_blocks"], cfg["z_channels"]
    n = len(mult)

    def resnet(p, cin, cout):
        s.gn(p + ".norm1", cin)
        s.conv(p + ".conv1", cout, cin, 3)
        s.gn(p + ".norm2", cout)
        s.conv(p + ".conv2", cout, cout, 3)
        if cin != cout:
            s.conv(p + ".nin_shortcut", cout, cin, 1)

    def attn(p, c):
        s.gn(p + ".norm", c)
        for q in ("q", "k", "v", "proj_out"):
            s.conv(p + "." + q, c, c, 1)

    s.conv("encoder.conv_in", ch, cfg["in_channels"], 3)
    in_ch_mult = (1,) + tuple(mult)
    block_in = ch
    for i in range(n):
        block_in = ch * in_ch_mult[i]
        block_out = ch * mult[i]
        for j in range(nrb):
            resnet(f"encoder.down.{i}.block.{j}", block_in, block_out)
            block_in = block_out
        if i != n - 1:
            s.conv(f"encoder.down.{i}.downsample.conv", block_in, block_in, 3)
    resnet("encoder.mid.block_1", block_in, block_in)
    attn("encoder.mid.attn_1", block_in)
    resnet("encoder.mid.block_2", block_in, block_in)
    s.gn("encoder.norm_out", block_in)
    s.conv("encoder.conv_out", 2 * z, block_in, 3)

    block_in = ch * mult[-1]
    s.conv("decoder.conv_in", block_in, z, 3)
    resnet("decoder.mid.block_1", block_in, block_in)
    attn("decoder.mid.attn_1", block_in)
    resnet("decoder.mid.block_2", block_in, block_in)
    for i in reversed(range(n)):
        block_out = ch * mult[i]
        for j in range(nrb + 1):
            resnet(f"decoder.up.{i}.block.{j}", block_in, block_out)
            block_in = block_out
        if i != 0:
            s.conv(f"decoder.up.{i}.upsample.conv", block_in, block_in, 3)
    s.gn("decoder.norm_out", block_in)
    s.conv("decoder.conv_out", cfg["out_channels"], block_in, 3)
    return s.d


# ---- diffusers ----------------------------------------------------------------------------------

def flux_converter(hidden):
    """diffusers' converter with its one FLUX.1 constant (inner_dim = 3072) set to `hidden`."""
    src = inspect.getsource(sfu.convert_flux_transformer_checkpoint_to_diffusers)
    if src.count("inner_dim = 3072") != 1:
        sys.exit("layout_fixtures: diffusers' convert_flux_transformer_checkpoint_to_diffusers no "
                 "longer has exactly one 'inner_dim = 3072'; update the patch")
    ns = dict(sfu.__dict__)
    exec(src.replace("inner_dim = 3072", f"inner_dim = {hidden}"), ns)  # noqa: S102
    return ns["convert_flux_transformer_checkpoint_to_diffusers"]


def flux_model(cfg):
    assert cfg["mlp_hidden"] == 4 * cfg["hidden"], "diffusers fixes mlp_ratio at 4"
    return FluxTransformer2DModel(
        patch_size=1, in_channels=cfg["in_channels"], out_channels=cfg["out_channels"],
        num_layers=cfg["depth"], num_single_layers=cfg["depth_single"],
        attention_head_dim=cfg["head_dim"], num_attention_heads=cfg["hidden"] // cfg["head_dim"],
        joint_attention_dim=cfg["context_dim"], pooled_projection_dim=cfg["pooled_dim"],
        guidance_embeds=bool(cfg["guidance"]),
        axes_dims_rope=(cfg["head_dim"] // 2, cfg["head_dim"] // 4, cfg["head_dim"] // 4))


def ae_model(cfg):
    n = len(cfg["ch_mult"])
    chans = [cfg["ch"] * m for m in cfg["ch_mult"]]
    groups = min(chans)  # any divisor of every width; GroupNorm's group count holds no tensors
    return AutoencoderKL(
        in_channels=cfg["in_channels"], out_channels=cfg["out_channels"],
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(chans), layers_per_block=cfg["num_res_blocks"],
        latent_channels=cfg["z_channels"], norm_num_groups=groups,
        use_quant_conv=False, use_post_quant_conv=False)


def convert_flux(cfg, bfl):
    work = dict(bfl)
    out = flux_converter(cfg["hidden"])(work)
    assert not work, f"diffusers did not consume: {sorted(work)[:5]}"
    flux_model(cfg).load_state_dict(out, strict=True)
    return out


def convert_ae(cfg, bfl):
    n = len(cfg["ch_mult"])
    out = sfu.convert_ldm_vae_checkpoint(dict(bfl), {"down_block_types": ["DownEncoderBlock2D"] * n,
                                                     "up_block_types": ["UpDecoderBlock2D"] * n})
    assert all(v is not None for v in out.values()), "converter produced None"
    assert len(out) == len(bfl), f"{len(bfl)} BFL tensors became {len(out)}"
    ae_model(cfg).load_state_dict(out, strict=True)
    return out


def state_shapes(model):
    return {k: list(v.shape) for k, v in model.state_dict().items()}


# ---- files --------------------------------------------------------------------------------------

def meta(cfg):
    return {"config": json.dumps(cfg, sort_keys=True), "generator": "tests/oracle/layout_fixtures.py",
            "diffusers_version": diffusers.__version__, "torch_version": torch.__version__}


def contiguous(sd):
    # chunks of one fused tensor share storage; safetensors refuses shared tensors
    return {k: v.clone().contiguous() for k, v in sd.items()}


def build():
    files = {}
    fb = flux_bfl(FLUX_FIXTURE, 1)
    files["flux_bfl.safetensors"] = (fb, meta(FLUX_FIXTURE))
    files["flux_diffusers.safetensors"] = (convert_flux(FLUX_FIXTURE, fb), meta(FLUX_FIXTURE))
    ab = ae_bfl(AE_FIXTURE, 2)
    files["ae_bfl.safetensors"] = (ab, meta(AE_FIXTURE))
    files["ae_diffusers.safetensors"] = (convert_ae(AE_FIXTURE, ab), meta(AE_FIXTURE))
    # key sets (and shapes) of the models themselves; the schnell-like and wide configs are
    # converted too, so that the BFL key sets above are checked for them as well
    convert_flux(FLUX_SCHNELL, flux_bfl(FLUX_SCHNELL, 3))
    convert_ae(AE_WIDE, ae_bfl(AE_WIDE, 4))
    models = {
        "generator": "tests/oracle/layout_fixtures.py",
        "diffusers_version": diffusers.__version__,
        "models": [
            {"kind": "flux", "config": c, "state_dict": state_shapes(flux_model(c))}
            for c in (FLUX_FIXTURE, FLUX_SCHNELL)
        ] + [
            {"kind": "ae", "config": c, "state_dict": state_shapes(ae_model(c))}
            for c in (AE_FIXTURE, AE_WIDE)
        ],
    }
    return files, json.dumps(models, indent=0, sort_keys=True) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="compare with the files on disk")
    args = ap.parse_args()
    torch.manual_seed(0)
    files, models = build()
    if args.check:
        bad = 0
        for name, (sd, _) in files.items():
            path = os.path.join(args.out, name)
            with safe_open(path, "pt") as f:
                keys = set(f.keys())
                same = keys == set(sd) and all(torch.equal(f.get_tensor(k), sd[k]) for k in keys)
            print(f"{'ok ' if same else 'DIFF'} {name}")
            bad += not same
        with open(os.path.join(args.out, "diffusers_models.json")) as f:
            same = f.read() == models
        print(f"{'ok ' if same else 'DIFF'} diffusers_models.json")
        bad += not same
        sys.exit(1 if bad else 0)
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for name, (sd, md) in files.items():
        path = os.path.join(args.out, name)
        save_file(contiguous(sd), path, metadata=md)
        total += os.path.getsize(path)
        print(f"wrote {path} ({len(sd)} tensors, {os.path.getsize(path)} bytes)")
    path = os.path.join(args.out, "diffusers_models.json")
    with open(path, "w") as f:
        f.write(models)
    total += os.path.getsize(path)
    print(f"wrote {path}; {total} bytes in all")


if __name__ == "__main__":
    main()
