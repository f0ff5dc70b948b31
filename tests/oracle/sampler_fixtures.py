#!/usr/bin/env python3
"""sampler_fixtures.py - golden sampling schedules, latent packing and one Euler step (the oracle of
src/pipeline/sampler.c, checked by tests/test_sampler.c).

    python3 tests/oracle/sampler_fixtures.py [--out DIR] [--check]

Runs inside tests/oracle/.venv (venv_bootstrap.py). Writes DIR/schedules.safetensors and
DIR/pack.safetensors (default DIR tests/fixtures/sampler/).

schedules.safetensors, one case per (steps, seq_len, shift), named s<steps>_L<seq_len>_<on|off>:
  bfl_<case>   [steps+1] F32  BFL flux/sampling.py get_schedule (copied below, unmodified logic):
               torch.linspace(1, 0, steps+1) in float32, time_shift in float32 tensor arithmetic.
  diff_<case>  [steps+1] F32  diffusers FlowMatchEulerDiscreteScheduler.sigmas after set_timesteps
               exactly as FluxPipeline calls it: sigmas = np.linspace(1, 1/N, N), mu =
               calculate_shift(seq_len, 256, 4096, 0.5, 1.15); shift on: the FLUX.1-dev scheduler
               config (use_dynamic_shifting=True, exponential); shift off: the FLUX.1-schnell config
               (use_dynamic_shifting=False, shift=1.0). Terminal 0 appended by the scheduler.
  ref_<case>   [steps+1] F64  the same formula in float64 (exact endpoints), the precise target.
  Metadata: cases "name:steps:seq_len:shift,..", versions.
diffusers computes in float32 (np.float32 array with Python-float scalars stays float32 under
NumPy 2's NEP 50 rules), BFL in float32 torch; the script asserts both agree with ref to within
8 * 2^-24 * max(|ref|, 2^-10) before writing, and the C test re-derives that bound.

pack.safetensors: latents [1, C=16, 2h, 2w] (h=3, w=5; F32 from a seeded torch.Generator);
packed = _fns["_pack_latents"](latents, 1, 16, 2h, 2w) [1, h*w, 64];
unpacked = _fns["_unpack_latents"](packed, 8*2h, 8*2w, 8) (must equal latents);
img_ids = _fns["_prepare_latent_image_ids"](1, h, w, cpu, float32) [h*w, 3];
euler: x [1, h*w, 64], v [1, h*w, 64], the 4-step dev schedule for seq_len h*w, and
x1 = scheduler.step(v, timesteps[0], x).prev_sample, x2 = step(v, timesteps[1], x1).prev_sample.
"""
import argparse
import math
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import diffusers  # noqa: E402
from diffusers import FlowMatchEulerDiscreteScheduler  # noqa: E402


def _load_pipeline_flux_functions():
    """calculate_shift and FluxPipeline's static _pack_latents / _unpack_latents /
    _prepare_latent_image_ids, taken from the installed diffusers' pipelines/flux/pipeline_flux.py
    source text (ast) and executed unmodified. The module itself cannot be imported here: it needs
    `transformers` (text encoders), which the oracle venv does not carry and these functions do not
    use."""
    import ast
    path = os.path.join(os.path.dirname(diffusers.__file__), "pipelines", "flux", "pipeline_flux.py")
    src = open(path).read()
    tree = ast.parse(src)
    want = {"calculate_shift", "_pack_latents", "_unpack_latents", "_prepare_latent_image_ids"}
    ns = {"torch": torch, "np": np}
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in want and node.name not in found:
            node.decorator_list = []  # @staticmethod
            mod = ast.Module(body=[node], type_ignores=[])
            exec(compile(mod, path, "exec"), ns)
            found[node.name] = ns[node.name]
    assert set(found) == want, set(found)
    return found


_fns = _load_pipeline_flux_functions()
calculate_shift = _fns["calculate_shift"]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "sampler")
STEPS = [1, 4, 20, 50]
SEQ = [256, 1024, 4096, 16384, 65536]
U = 2.0 ** -24


# ---- BFL flux/sampling.py (github.com/black-forest-labs/flux), verbatim logic ------------------
def time_shift(mu, sigma, t):
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)


def get_lin_function(x1=256, y1=0.5, x2=4096, y2=1.15):
    m = (y2 - y1) / (x2 - x1)
    b = y1 - m * x1
    return lambda x: m * x + b


def get_schedule(num_steps, image_seq_len, base_shift=0.5, max_shift=1.15, shift=True):
    timesteps = torch.linspace(1, 0, num_steps + 1)
    if shift:
        mu = get_lin_function(y1=base_shift, y2=max_shift)(image_seq_len)
        timesteps = time_shift(mu, 1.0, timesteps)
    return timesteps.tolist()


# ---- diffusers ----------------------------------------------------------------------------------
def dev_scheduler():
    # FLUX.1-dev scheduler/scheduler_config.json
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0,
                                           use_dynamic_shifting=True, base_shift=0.5,
                                           max_shift=1.15, base_image_seq_len=256,
                                           max_image_seq_len=4096)


def schnell_scheduler():
    # FLUX.1-schnell scheduler/scheduler_config.json
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0,
                                           use_dynamic_shifting=False)


def diffusers_sigmas(steps, seq_len, shift):
    sch = dev_scheduler() if shift else schnell_scheduler()
    sigmas = np.linspace(1.0, 1 / steps, steps)  # FluxPipeline.__call__
    mu = calculate_shift(seq_len, sch.config.get("base_image_seq_len", 256),
                         sch.config.get("max_image_seq_len", 4096),
                         sch.config.get("base_shift", 0.5), sch.config.get("max_shift", 1.15))
    sch.set_timesteps(steps, device="cpu", sigmas=sigmas, mu=mu)
    return sch, sch.sigmas.clone()


def ref_schedule(steps, seq_len, shift):
    out = []
    m = (1.15 - 0.5) / (4096 - 256)
    mu = m * seq_len + (0.5 - 256 * m)
    for i in range(steps + 1):
        t = 1.0 - i / steps
        if shift and 0.0 < t < 1.0:
            t = math.exp(mu) / (math.exp(mu) + (1.0 / t - 1.0))
        out.append(t)
    return torch.tensor(out, dtype=torch.float64)


def build():
    sched, names = {}, []
    for steps in STEPS:
        for L in SEQ:
            for shift in (True, False):
                name = f"s{steps}_L{L}_{'on' if shift else 'off'}"
                names.append(f"{name}:{steps}:{L}:{int(shift)}")
                bfl = torch.tensor(get_schedule(steps, L, shift=shift), dtype=torch.float32)
                _, diff = diffusers_sigmas(steps, L, shift)
                ref = ref_schedule(steps, L, shift)
                tol = 8 * U * torch.clamp(ref.abs(), min=2.0 ** -10)
                for lab, x in (("bfl", bfl), ("diffusers", diff)):
                    assert x.shape == ref.shape and x.dtype == torch.float32, (lab, name)
                    err = (x.double() - ref).abs()
                    assert bool((err <= tol).all()), (lab, name, float((err / tol).max()))
                    assert float(x[0]) == 1.0 and float(x[-1]) == 0.0, (lab, name)
                sched[f"bfl_{name}"] = bfl
                sched[f"diff_{name}"] = diff
                sched[f"ref_{name}"] = ref
    meta = {"cases": ",".join(names), "torch_version": torch.__version__,
            "diffusers_version": diffusers.__version__, "numpy_version": np.__version__,
            "generator": "tests/oracle/sampler_fixtures.py"}

    g = torch.Generator().manual_seed(5)
    C, h, w = 16, 3, 5
    lat = torch.randn(1, C, 2 * h, 2 * w, generator=g, dtype=torch.float32)
    packed = _fns["_pack_latents"](lat, 1, C, 2 * h, 2 * w).contiguous()
    unpacked = _fns["_unpack_latents"](packed, 8 * 2 * h, 8 * 2 * w, 8).contiguous()
    assert torch.equal(unpacked, lat)
    ids = _fns["_prepare_latent_image_ids"](1, h, w, "cpu", torch.float32).contiguous()
    x = torch.randn(1, h * w, 4 * C, generator=g, dtype=torch.float32)
    v = torch.randn(1, h * w, 4 * C, generator=g, dtype=torch.float32)
    sch, sig = diffusers_sigmas(4, h * w, True)
    x1 = sch.step(v, sch.timesteps[0], x).prev_sample.contiguous()
    x2 = sch.step(v, sch.timesteps[1], x1).prev_sample.contiguous()
    pack = {"latents": lat, "packed": packed, "unpacked": unpacked, "img_ids": ids,
            "x": x, "v": v, "sigmas": sig, "x1": x1, "x2": x2}
    pmeta = {"channels": str(C), "h": str(h), "w": str(w), "euler_seq_len": str(h * w),
             "euler_steps": "4", "seed": "5", "torch_version": torch.__version__,
             "diffusers_version": diffusers.__version__,
             "generator": "tests/oracle/sampler_fixtures.py"}
    return {"schedules.safetensors": (sched, meta), "pack.safetensors": (pack, pmeta)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    files = build()
    bad = 0
    os.makedirs(a.out, exist_ok=True)
    for fname, (tensors, meta) in files.items():
        path = os.path.join(a.out, fname)
        if a.check:
            old = load_file(path)
            same = old.keys() == tensors.keys() and all(torch.equal(old[k], tensors[k]) for k in old)
            print(f"{fname}: {'ok' if same else 'DIFFERS'}")
            bad += not same
        else:
            save_file(tensors, path, metadata=meta)
            print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
