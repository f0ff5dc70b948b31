#!/usr/bin/env python3
"""ae_fixtures.py - the FLUX autoencoder (decoder and encoder) against diffusers' AutoencoderKL.

    python3 tests/oracle/ae_fixtures.py [--out DIR] [--check]

Runs inside tests/oracle/.venv (venv_bootstrap.py; diffusers pinned there). Writes into DIR
(default tests/fixtures/ae/), per case NAME:

  NAME_bfl.safetensors        encoder + decoder weights in BFL names (flux/modules/autoencoder.py)
  NAME_diffusers.safetensors  the same tensors converted by diffusers'
                              single_file_utils.convert_ldm_vae_checkpoint
  NAME_io.safetensors         z [z_channels, h, w] (F32, the latent as the sampler hands it over)
                              and image [out_channels, H, W] (F32, computed in float64);
                              x [in_channels, H, W] (F32, uniform in [-1, 1]) and
                              latent [z_channels, h, w] (F32, its encoding, computed in float64)

How the expected image is made: an AutoencoderKL with the FLUX structure (no quant_conv /
post_quant_conv, UpDecoderBlock2D, layers_per_block = num_res_blocks, scaling_factor 0.3611,
shift_factor 0.1159, the FLUX.1 values) is built from the case's config; the converted state dict
is loaded (strict); the model is cast to float64 and, exactly as diffusers' FluxPipeline does
before decoding,
    image = vae.decode(z / vae.config.scaling_factor + vae.config.shift_factor).sample
and, as BFL's AutoEncoder.encode (sample_z=False: the mean) and FluxImg2ImgPipeline with
retrieve_latents(sample_mode="argmax") do (the img2img default "sample" adds noise),
    latent = (vae.encode(x).latent_dist.mode() - shift_factor) * scaling_factor
cleardit's cd_ae_decode / cd_ae_encode apply the same scale and shift themselves (src/model/ae.h).
The decoder weights and z are drawn first from the case's seed (as before the encoder was
added); the encoder weights, then x, come from a second generator seeded seed + 1000.

GroupNorm's group count holds no tensors, so it cannot be inferred from a checkpoint: FLUX uses
32; these tiny cases use fewer groups and record theirs in the metadata "num_groups" (the C test
passes it on). Weights (seeded torch.Generator, float32): convs N(0, 1/fan_in), biases 0.1 N(0,1),
GroupNorm scales 1 + 0.1 N(0,1), shifts 0.1 N(0,1); z ~ N(0,1).
Cross-check before writing: the float32 decode and encode agree with the float64 ones (relative
L2 < 1e-5).
`--check` recomputes everything and compares with the files on disk (exit 1 on a difference).
"""
import argparse
import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()

import diffusers  # noqa: E402
import torch  # noqa: E402
from diffusers import AutoencoderKL  # noqa: E402
from diffusers.loaders import single_file_utils as sfu  # noqa: E402
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "ae")
SCALE, SHIFT = 0.3611, 0.1159

# cleardit's field names (cd_ae_config) plus num_groups and the latent grid.
CASES = {
    "ae2_g4_3x5": dict(out_channels=3, ch=4, ch_mult=[1, 3], num_res_blocks=1, z_channels=4,
                       num_groups=4, h=3, w=5, seed=11),
    "ae3_g2_4x4": dict(out_channels=3, ch=4, ch_mult=[1, 2, 2], num_res_blocks=1, z_channels=3,
                       num_groups=2, h=4, w=4, seed=12),
    # FLUX's factor 8 (4 levels), kept narrow so that its weights stay small
    "ae4_g2_2x3": dict(out_channels=3, ch=2, ch_mult=[1, 1, 2, 2], num_res_blocks=1, z_channels=2,
                       num_groups=2, h=2, w=3, seed=13),
}

# Tiled decode / encode (NAME_tiled.safetensors): tile side in pixels, the overlap factors, and
# the latent grid h x w (image 8h x 8w-style: h * up) of fresh inputs drawn from seed + 2000.
# Grids chosen for several tiles with smaller last tiles (ae2: tiling along the width only), and
# so that no tile leaves torch a GroupNorm group of one value (torch refuses; cleardit would not).
TILED = {
    "ae2_g4_3x5": dict(tile=8, overlaps=[0.25, 0.5], h=3, w=10),
    "ae3_g2_4x4": dict(tile=32, overlaps=[0.25, 0.5], h=11, w=14),
    "ae4_g2_2x3": dict(tile=32, overlaps=[0.25, 0.5], h=7, w=6),
}


def weight_fns(g, d):
    """conv / gn / resnet initialisers writing into d from generator g."""

    def conv(name, out, inp, k):
        d[name + ".weight"] = torch.randn(out, inp, k, k, generator=g) / (inp * k * k) ** 0.5
        d[name + ".bias"] = 0.1 * torch.randn(out, generator=g)

    def gn(name, c):
        d[name + ".weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        d[name + ".bias"] = 0.1 * torch.randn(c, generator=g)

    def resnet(p, cin, cout):
        gn(p + ".norm1", cin)
        conv(p + ".conv1", cout, cin, 3)
        gn(p + ".norm2", cout)
        conv(p + ".conv2", cout, cout, 3)
        if cin != cout:
            conv(p + ".nin_shortcut", cout, cin, 1)

    return conv, gn, resnet


def encoder_bfl(cfg, g):
    """Encoder(...).state_dict() keys of BFL's autoencoder.py, prefixed "encoder."."""
    d = {}
    conv, gn, resnet = weight_fns(g, d)
    ch, mult, nrb, z = cfg["ch"], cfg["ch_mult"], cfg["num_res_blocks"], cfg["z_channels"]
    n = len(mult)
    conv("encoder.conv_in", ch, 3, 3)
    block_in = ch
    for i in range(n):
        block_out = ch * mult[i]
        for j in range(nrb):
            resnet(f"encoder.down.{i}.block.{j}", block_in, block_out)
            block_in = block_out
        if i != n - 1:
            conv(f"encoder.down.{i}.downsample.conv", block_in, block_in, 3)
    resnet("encoder.mid.block_1", block_in, block_in)
    gn("encoder.mid.attn_1.norm", block_in)
    for q in ("q", "k", "v", "proj_out"):
        conv("encoder.mid.attn_1." + q, block_in, block_in, 1)
    resnet("encoder.mid.block_2", block_in, block_in)
    gn("encoder.norm_out", block_in)
    conv("encoder.conv_out", 2 * z, block_in, 3)
    return d


def decoder_bfl(cfg, g):
    """Decoder(...).state_dict() keys of BFL's autoencoder.py, prefixed "decoder."."""
    d = {}
    conv, gn, resnet = weight_fns(g, d)
    ch, mult, nrb, z = cfg["ch"], cfg["ch_mult"], cfg["num_res_blocks"], cfg["z_channels"]
    n = len(mult)
    block_in = ch * mult[-1]
    conv("decoder.conv_in", block_in, z, 3)
    resnet("decoder.mid.block_1", block_in, block_in)
    gn("decoder.mid.attn_1.norm", block_in)
    for q in ("q", "k", "v", "proj_out"):
        conv("decoder.mid.attn_1." + q, block_in, block_in, 1)
    resnet("decoder.mid.block_2", block_in, block_in)
    for i in reversed(range(n)):
        block_out = ch * mult[i]
        for j in range(nrb + 1):
            resnet(f"decoder.up.{i}.block.{j}", block_in, block_out)
            block_in = block_out
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", block_in, block_in, 3)
    gn("decoder.norm_out", block_in)
    conv("decoder.conv_out", cfg["out_channels"], block_in, 3)
    return d


def model(cfg):
    n = len(cfg["ch_mult"])
    return AutoencoderKL(
        in_channels=3, out_channels=cfg["out_channels"],
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg["ch"] * m for m in cfg["ch_mult"]),
        layers_per_block=cfg["num_res_blocks"], latent_channels=cfg["z_channels"],
        norm_num_groups=cfg["num_groups"], use_quant_conv=False, use_post_quant_conv=False,
        scaling_factor=SCALE, shift_factor=SHIFT)


def rel(a, b):
    return float((a - b).norm() / b.norm())


def tiled_run(vae, up, tile, f, z, x):
    """diffusers' tiled decode and encode of z (before scale / shift) and x at tile / overlap f,
    through vae.decode / vae.encode with use_tiling (which dispatch to tiled_decode /
    _tiled_encode), asserted equal to calling those directly. Returns (image, latent)."""
    vae.enable_tiling()
    vae.tile_sample_min_size = tile
    vae.tile_latent_min_size = tile // up
    vae.tile_overlap_factor = f
    zz = z[None].to(vae.dtype) / vae.config.scaling_factor + vae.config.shift_factor
    xx = x[None].to(vae.dtype)
    img = vae.decode(zz).sample[0]
    assert torch.equal(img, vae.tiled_decode(zz).sample[0])
    mode = vae.encode(xx).latent_dist.mode()[0]
    moments = vae._tiled_encode(xx)
    assert torch.equal(mode, DiagonalGaussianDistribution(moments).mode()[0])
    vae.disable_tiling()
    return img, (mode - vae.config.shift_factor) * vae.config.scaling_factor


def make_tiled(cfg, t, dif):
    """NAME_tiled.safetensors: z, x and per overlap f (tag = f * 100) image_oTAG = the tiled
    decode, latent_oTAG = the tiled encode (mode of the blended moments, then (mode - shift) *
    scale), in float64; cross-checked against float32, and asserted to differ from the untiled
    results (so the tiling shows) while having their shapes."""
    n = len(cfg["ch_mult"])
    up = 2 ** (n - 1)
    g = torch.Generator().manual_seed(cfg["seed"] + 2000)
    z = torch.randn(cfg["z_channels"], t["h"], t["w"], generator=g)
    x = 2 * torch.rand(3, t["h"] * up, t["w"] * up, generator=g) - 1
    vae = model(cfg).eval()
    vae.load_state_dict(dif, strict=True)
    io = {"z": z.contiguous(), "x": x.contiguous()}
    with torch.no_grad():
        r32 = {f: tiled_run(vae, up, t["tile"], f, z, x) for f in t["overlaps"]}
        vae = vae.double()
        ref_img = vae.decode(z[None].double() / SCALE + SHIFT).sample[0]
        ref_lat = (vae.encode(x[None].double()).latent_dist.mode()[0] - SHIFT) * SCALE
        for f in t["overlaps"]:
            img, lat = tiled_run(vae, up, t["tile"], f, z, x)
            assert img.shape == ref_img.shape and lat.shape == ref_lat.shape, (img.shape, lat.shape)
            e, e2 = rel(r32[f][0].double(), img), rel(r32[f][1].double(), lat)
            assert e < 1e-5 and e2 < 1e-5, f"float32 vs float64 tiled: {e} {e2}"
            d, d2 = rel(img, ref_img), rel(lat, ref_lat)
            assert d > 1e-3 and d2 > 1e-3, f"tiled equals untiled: {d} {d2}"
            tag = round(f * 100)
            io[f"image_o{tag}"] = img.float().contiguous()
            io[f"latent_o{tag}"] = lat.float().contiguous()
            print(f"  tiled {t['tile']} px, overlap {f}: f32-vs-f64 {e:.1e} / {e2:.1e}, "
                  f"vs untiled {d:.2f} / {d2:.2f}", file=sys.stderr)
        # Why cleardit refuses (tile, overlap) pairs whose stride is not the crop: diffusers then
        # returns a differently sized image (tile = 6 latent cells at 0.25: the stride is
        # int(4.5) = 4 cells = 4 up px, the crop 6 up - int(1.5 up) px).
        if max(t["h"], t["w"]) > 6:
            vae.enable_tiling()
            vae.tile_sample_min_size, vae.tile_latent_min_size = 6 * up, 6
            vae.tile_overlap_factor = 0.25
            odd = vae.decode(z[None].double() / SCALE + SHIFT).sample[0]
            vae.disable_tiling()
            assert odd.shape != ref_img.shape, odd.shape
    meta = {"tile": str(t["tile"]), "overlaps": ",".join(str(f) for f in t["overlaps"])}
    return io, meta


def make_case(cfg):
    g = torch.Generator().manual_seed(cfg["seed"])
    bfl = decoder_bfl(cfg, g)
    z = torch.randn(cfg["z_channels"], cfg["h"], cfg["w"], generator=g)
    n = len(cfg["ch_mult"])
    up = 2 ** (n - 1)
    ge = torch.Generator().manual_seed(cfg["seed"] + 1000)
    bfl.update(encoder_bfl(cfg, ge))
    x = 2 * torch.rand(3, cfg["h"] * up, cfg["w"] * up, generator=ge) - 1
    dif = sfu.convert_ldm_vae_checkpoint(dict(bfl), {"down_block_types": ["DownEncoderBlock2D"] * n,
                                                     "up_block_types": ["UpDecoderBlock2D"] * n})
    assert all(v is not None for v in dif.values()) and len(dif) == len(bfl)
    dif = {k: v.clone().contiguous() for k, v in dif.items()}
    vae = model(cfg).eval()
    vae.load_state_dict(dif, strict=True)
    assert vae.config.scaling_factor == SCALE and vae.config.shift_factor == SHIFT
    with torch.no_grad():
        lat = z[None] / vae.config.scaling_factor + vae.config.shift_factor
        img32 = vae.decode(lat).sample[0]
        lat32 = (vae.encode(x[None]).latent_dist.mode()[0] - SHIFT) * SCALE
        vae64 = vae.double()
        img = vae64.decode(z[None].double() / vae.config.scaling_factor
                           + vae.config.shift_factor).sample[0]
        latent = ((vae64.encode(x[None].double()).latent_dist.mode()[0]
                   - vae.config.shift_factor) * vae.config.scaling_factor)
    assert latent.shape == z.shape, latent.shape
    e2 = rel(lat32.double(), latent)
    assert e2 < 1e-5, f"float32 vs float64 encode: {e2}"
    assert img.shape == (cfg["out_channels"], cfg["h"] * up, cfg["w"] * up), img.shape
    e = rel(img32.double(), img)
    assert e < 1e-5, f"float32 vs float64 decode: {e}"
    meta = {"config": json.dumps({k: v for k, v in cfg.items() if k != "seed"}, sort_keys=True),
            "num_groups": str(cfg["num_groups"]), "scaling_factor": str(SCALE),
            "shift_factor": str(SHIFT), "seed": str(cfg["seed"]),
            "generator": "tests/oracle/ae_fixtures.py", "diffusers_version": diffusers.__version__,
            "torch_version": torch.__version__}
    io = {"z": z.contiguous(), "image": img.float().contiguous(), "x": x.contiguous(),
          "latent": latent.float().contiguous()}
    print(f"  f32-vs-f64 rel L2 decode {e:.2e}, encode {e2:.2e}, image {tuple(img.shape)}",
          file=sys.stderr)
    return {"bfl": bfl, "diffusers": dif, "io": io}, meta, dif


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    bad = 0
    for name, cfg in CASES.items():
        print(name, file=sys.stderr)
        files, meta, dif = make_case(cfg)
        metas = {part: meta for part in files}
        if name in TILED:
            files["tiled"], extra = make_tiled(cfg, TILED[name], dif)
            metas["tiled"] = dict(meta, **extra)
        for part, tensors in files.items():
            meta = metas[part]
            path = os.path.join(a.out, f"{name}_{part}.safetensors")
            if a.check:
                old = load_file(path)
                if old.keys() != tensors.keys() or any(not torch.equal(old[k], tensors[k]) for k in old):
                    print(f"DIFFERS: {path}", file=sys.stderr)
                    bad = 1
            else:
                save_file(tensors, path, metadata=meta)
    sys.exit(bad)


if __name__ == "__main__":
    main()
