#!/usr/bin/env python3
"""generate_fixtures.py - end-to-end golden images from diffusers' FLUX pipelines (the oracle).

    python3 tests/oracle/generate_fixtures.py [--out DIR] [--check]

Runs inside tests/oracle/.venv (venv_bootstrap.py). Tiny random models, every weight drawn from a
fixed-seed torch.Generator (2-D and 4-D weights ~ N(0, 1/fan_in), norm scales 1 + 0.1 N, biases
0.1 N), saved with diffusers names:
  tiny_dev.safetensors      FluxTransformer2DModel, guidance-embedded (dev-like)
  tiny_schnell.safetensors  the same shape without guidance (schnell-like)
  tiny_ae.safetensors       AutoencoderKL (2 levels: x2, 4 latent channels, 4 GroupNorm groups,
                            FLUX's scaling 0.3611 / shift 0.1159, no quant convs)
The RoPE axes are in the transformer files' metadata (rope_axes, rope_theta), as cleardit reads.

Each case runs diffusers' own pipeline with the models in float64 (the scheduler's Euler step is
float32 inside diffusers, as in cleardit) and records the decoded image before any 8-bit
conversion (the pipeline with output_type="latent", then unpack, z / scaling + shift and
vae.decode, all diffusers code):
  t2i_dev       FluxPipeline, dynamic shift (FLUX.1-dev's scheduler config), 3 steps, guidance 3.5
  t2i_schnell   FluxPipeline, no shift (FLUX.1-schnell's config), 2 steps
  i2i_dev       FluxImg2ImgPipeline, 5 steps at strength 0.6 (3 run)
  hires_dev     FluxImg2ImgPipeline as the CLEAR reference high-resolution path: static shift 3
                (use_dynamic_shifting=False), RoPE theta x 10 (pos_embed.theta, which is what the
                reference's ntk_factor does), proportional attention scale
                sqrt(log_4608(T + L) / head_dim) on every layer, 4 steps at strength 0.7
Two things are pinned so the C side can reproduce them exactly: the Gaussian noise (the pipelines'
randn_tensor is replaced by a function returning a recorded tensor, which cleardit takes through
its noise override), and the init image's latent (retrieve_latents takes the latent
distribution's mode, as cleardit and BFL do, instead of a sample). The proportional scale is set by
wrapping torch.nn.functional.scaled_dot_product_attention (which diffusers' attention dispatch
calls) to pass scale= when the caller passes none.

Per case <case>.safetensors: txt [T, ctx], pooled [P], noise [z, h/2, w/2], init_u8 [H, W, 3]
(image-to-image cases; the C side converts it with u / 127.5 - 1 in float32, and so does this
script), image [3, H, W] (F32 from float64). Metadata: model, width, height, steps, guidance,
strength, time_shift, ntk, proportional, versions.
`--check` recomputes and compares with the files on disk (exit 1 on a difference).
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
from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxImg2ImgPipeline,  # noqa: E402
                       FluxPipeline, FluxTransformer2DModel)
from diffusers.pipelines.flux import pipeline_flux, pipeline_flux_img2img  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "generate")
SCALE, SHIFT = 0.3611, 0.1159
AXES, THETA = (4, 6, 6), 10000
TF = dict(patch_size=1, in_channels=16, out_channels=16, num_layers=1, num_single_layers=2,
          attention_head_dim=16, num_attention_heads=2, joint_attention_dim=24,
          pooled_projection_dim=20, axes_dims_rope=AXES)
AE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
          up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
          latent_channels=4, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
          scaling_factor=SCALE, shift_factor=SHIFT)
T_LEN = 5
CASES = [
    dict(name="t2i_dev", model="dev", W=48, H=32, steps=3, guidance=3.5, seed=21),
    dict(name="t2i_schnell", model="schnell", W=32, H=32, steps=2, guidance=0.0, seed=22),
    dict(name="i2i_dev", model="dev", W=48, H=32, steps=5, guidance=3.5, strength=0.6, seed=23),
    dict(name="hires_dev", model="dev", W=32, H=48, steps=4, guidance=3.5, strength=0.7, seed=24,
         time_shift=3.0, ntk=10.0, proportional=True),
]


def randomize(module, seed):
    """Every parameter redrawn from a fixed-seed generator (the default inits zero some layers)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, p in module.state_dict().items():
        if p.ndim >= 2:
            fan_in = p[0].numel()
            v = torch.randn(p.shape, generator=g) / math.sqrt(fan_in)
        elif name.endswith(".weight"):  # norm scales
            v = 1 + 0.1 * torch.randn(p.shape, generator=g)
        else:
            v = 0.1 * torch.randn(p.shape, generator=g)
        sd[name] = v.to(torch.float32).contiguous()
    module.load_state_dict(sd, strict=True)
    return sd


def schedulers(dynamic, shift):
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift,
                                           use_dynamic_shifting=dynamic, base_shift=0.5, max_shift=1.15,
                                           base_image_seq_len=256, max_image_seq_len=4096)


class Pinned:
    """Replaces the pipelines' noise draw and latent sampling, and optionally the attention scale."""

    def __init__(self, noise, scale=None, transformer=None):
        # the scale applies inside the transformer only (the autoencoder's attention keeps its own)
        self.noise, self.scale, self.calls, self.active = noise, scale, 0, False
        if transformer is not None:
            self.hooks = [transformer.register_forward_pre_hook(lambda *a: setattr(self, "active", True)),
                          transformer.register_forward_hook(lambda *a: setattr(self, "active", False))]

    def __enter__(self):
        self.saved = (pipeline_flux.randn_tensor, pipeline_flux_img2img.randn_tensor,
                      pipeline_flux_img2img.retrieve_latents, torch.nn.functional.scaled_dot_product_attention)
        noise = self.noise

        def fixed(shape, generator=None, device=None, dtype=None, layout=None):
            assert tuple(shape) == tuple(noise.shape), (shape, noise.shape)
            return noise.to(dtype)

        def mode(encoder_output, generator=None, sample_mode="sample"):
            return encoder_output.latent_dist.mode()

        pipeline_flux.randn_tensor = fixed
        pipeline_flux_img2img.randn_tensor = fixed
        pipeline_flux_img2img.retrieve_latents = mode
        if self.scale is not None:
            sdpa, s = self.saved[3], self.scale

            def scaled(*a, scale=None, **k):
                if not self.active:
                    return sdpa(*a, scale=scale, **k)
                self.calls += 1
                return sdpa(*a, scale=s if scale is None else scale, **k)

            torch.nn.functional.scaled_dot_product_attention = scaled
        return self

    def __exit__(self, *exc):
        for h in getattr(self, "hooks", []):
            h.remove()
        (pipeline_flux.randn_tensor, pipeline_flux_img2img.randn_tensor,
         pipeline_flux_img2img.retrieve_latents, torch.nn.functional.scaled_dot_product_attention) = self.saved


def make_models():
    out = {}
    for i, kind in enumerate(("dev", "schnell")):
        m = FluxTransformer2DModel(guidance_embeds=(kind == "dev"), **TF)
        out[kind] = (m, randomize(m, 100 + i))
    ae = AutoencoderKL(**AE)
    out["ae"] = (ae, randomize(ae, 102))
    return out


def run_case(c, models):
    g = torch.Generator().manual_seed(1000 + c["seed"])
    W, H = c["W"], c["H"]
    lh, lw = H // 2, W // 2
    txt = torch.randn(1, T_LEN, TF["joint_attention_dim"], generator=g, dtype=torch.float64)
    pooled = torch.randn(1, TF["pooled_projection_dim"], generator=g, dtype=torch.float64)
    noise = torch.randn(1, AE["latent_channels"], lh, lw, generator=g, dtype=torch.float64)
    noise = noise.to(torch.float32).to(torch.float64)  # the f32 values the C side is given
    tf = models[c["model"]][0].double().eval()
    if c.get("ntk"):
        tf.pos_embed.theta = THETA * c["ntk"]
    else:
        tf.pos_embed.theta = THETA
    vae = models["ae"][0].double().eval()
    dynamic = c["model"] == "dev" and not c.get("time_shift")
    sched = schedulers(dynamic, c.get("time_shift", 1.0))
    L = (lh // 2) * (lw // 2)
    scale = None
    if c.get("proportional"):
        scale = math.sqrt(math.log(T_LEN + L, 64 ** 2 + 512) / TF["attention_head_dim"])
    common = dict(prompt_embeds=txt, pooled_prompt_embeds=pooled, height=H, width=W,
                  num_inference_steps=c["steps"], guidance_scale=c["guidance"], output_type="latent")
    tensors = {"txt": txt[0].float().contiguous(), "pooled": pooled[0].float().contiguous(),
               "noise": noise[0].float().contiguous()}
    with torch.no_grad(), Pinned(noise, scale, tf) as pin:
        if "strength" in c:
            u8 = torch.randint(0, 256, (H, W, 3), generator=g, dtype=torch.uint8)
            u8[0, 0] = torch.tensor([0, 255, 17], dtype=torch.uint8)  # both ends present
            init = (u8.to(torch.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]  # as cd_rgb8_to_image
            tensors["init_u8"] = u8.contiguous()
            pipe = FluxImg2ImgPipeline(scheduler=sched, vae=vae, text_encoder=None, tokenizer=None,
                                       text_encoder_2=None, tokenizer_2=None, transformer=tf)
            out = pipe(image=init.to(torch.float64), strength=c["strength"], **common).images
        else:
            pipe = FluxPipeline(scheduler=sched, vae=vae, text_encoder=None, tokenizer=None,
                                text_encoder_2=None, tokenizer_2=None, transformer=tf)
            out = pipe(**common).images
        if scale is not None:  # every layer of every step run went through the scaled SDPA
            layers = TF["num_layers"] + TF["num_single_layers"]
            assert pin.calls == layers * (c["steps"] - int(c["steps"] - c["steps"] * c["strength"])), pin.calls
        lat = pipe._unpack_latents(out, H, W, pipe.vae_scale_factor)
        img = vae.decode(lat / SCALE + SHIFT, return_dict=False)[0][0]
    tensors["image"] = img.float().contiguous()
    meta = {
        "generator": "tests/oracle/generate_fixtures.py", "model": c["model"],
        "width": str(W), "height": str(H), "steps": str(c["steps"]), "guidance": repr(c["guidance"]),
        "strength": repr(c.get("strength", 0.0)), "time_shift": repr(c.get("time_shift", 0.0)),
        "ntk": repr(c.get("ntk", 0.0)), "proportional": "1" if c.get("proportional") else "0",
        "seed": str(1000 + c["seed"]), "torch_version": torch.__version__,
        "diffusers_version": diffusers.__version__,
    }
    return tensors, meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    models = make_models()
    files = {}
    layout = {"dev": "flux-diffusers", "schnell": "flux-diffusers", "ae": "ae-diffusers"}
    for kind in ("dev", "schnell", "ae"):
        meta = {"generator": "tests/oracle/generate_fixtures.py", "layout": layout[kind]}
        if kind != "ae":
            meta.update(rope_axes=",".join(map(str, AXES)), rope_theta=str(THETA))
        files["tiny_" + kind] = (models[kind][1], meta)
    for c in CASES:
        files[c["name"]] = run_case(c, models)
    os.makedirs(args.out, exist_ok=True)
    bad = total = 0
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
        total += os.path.getsize(path)
        print(f"wrote {path}")
    if not args.check:
        print(f"{len(files)} files, {total / 1024:.0f} KiB")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
