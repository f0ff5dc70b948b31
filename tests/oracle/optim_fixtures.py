#!/usr/bin/env python3
"""optim_fixtures.py - AdamW steps and gradient clipping from PyTorch (the optimizer oracle).

    python3 tests/oracle/optim_fixtures.py [--out DIR] [--check]

Runs inside tests/oracle/.venv (venv_bootstrap.py). Draws a few float32 parameter tensors and, for
each of STEPS steps, one set of raw gradients (fixed-seed torch.Generator; the same gradients feed
both configs), then runs torch.optim.AdamW(foreach=False) for each config in CONFIGS:
  - "default": torch's defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2);
  - "clip": lr 3e-4, betas (0.9, 0.95), eps 1e-6, weight_decay 0.1, and
    torch.nn.utils.clip_grad_norm_(params, 1.0) before every step.
The gradient scales vary by step so that some steps are clipped and some are not (coefficient
clamped to 1); one tensor has tiny gradients (where eps matters) and a few exact zeros.
Cross-checks before anything is written: every param after every step is within 1e-5 relative
of a float64 AdamW written from the formula in torch/optim/adam.py (the configs mean what they
say), clip_grad_norm_'s total norm is within 1e-6 relative of the float64 norm, and the clipped
gradients are exactly raw * clip_coef with clip_coef computed by the expression in
torch/nn/utils/clip_grad.py.

File DIR/adamw.safetensors (default DIR tests/fixtures/optim/), all F32 unless noted:
  param_<name>                 initial parameters
  grad_<s>_<name>              raw gradients of step s (1-based)
  grad_norm [STEPS]            clip_grad_norm_'s total norm of the raw gradients (f32 torch)
  grad_norm_f64 [STEPS] F64    the same in float64
  <cfg>_clip_coef [STEPS]      "clip" only: clamp(1.0 / (total_norm + 1e-6), max=1) as torch has it
  <cfg>_param_<s>_<name>       parameters after step s
  <cfg>_exp_avg_<name>, <cfg>_exp_avg_sq_<name>   optimizer state after the last step
Metadata: names "a,b,.." (in order), shapes "a=2x3;b=4", steps, configs "default,clip", per config
<cfg>_lr, _beta1, _beta2, _eps, _weight_decay, _max_norm (Python repr: C strtod gives the same
double; max_norm 0 = no clipping), torch_version, seed, generator.
`--check` recomputes everything and compares with the file on disk (exit 1 on a difference).
"""
import argparse
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "optim")
SEED = 20240611
STEPS = 5
# name, shape, gradient scale (times the per-step scale)
TENSORS = [
    ("w1", (33, 17), 1.0),     # 561: vector body and a tail
    ("b1", (33,), 1.0),
    ("w2", (8, 45), 0.5),      # 360
    ("tiny", (21,), 1e-6),     # gradients ~1e-8: eps dominates the denominator
    ("s", (1,), 1.0),
]
STEP_SCALE = [0.05, 0.01, 0.08, 0.02, 0.12]   # total norms ~1.2, 0.25, 1.9, 0.5, 2.9
CONFIGS = [
    dict(name="default", lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2,
         max_norm=0.0),
    dict(name="clip", lr=3e-4, beta1=0.9, beta2=0.95, eps=1e-6, weight_decay=0.1, max_norm=1.0),
]


def draw(g):
    params = {n: torch.randn(*s, generator=g, dtype=torch.float32) for n, s, _ in TENSORS}
    grads = []
    for k in range(STEPS):
        gs = {}
        for n, s, sc in TENSORS:
            x = torch.randn(*s, generator=g, dtype=torch.float32) * (sc * STEP_SCALE[k])
            if n == "tiny":
                x[::7] = 0.0          # exact zeros: m = v = 0, the update is exactly 0
            gs[n] = x.contiguous()
        grads.append(gs)
    return params, grads


def adamw_f64(c, p0, grads):
    """AdamW in float64 from the formula (adam.py, decoupled weight decay), for the cross-check."""
    p = {n: t.double().clone() for n, t in p0.items()}
    m = {n: torch.zeros_like(t) for n, t in p.items()}
    v = {n: torch.zeros_like(t) for n, t in p.items()}
    out = []
    for k, gs in enumerate(grads):
        t = k + 1
        g = {n: x.double() for n, x in gs.items()}
        if c["max_norm"] > 0:
            tn = torch.sqrt(sum((x * x).sum() for x in g.values()))
            coef = min(1.0, c["max_norm"] / (float(tn) + 1e-6))
            g = {n: x * coef for n, x in g.items()}
        for n in p:
            p[n] = p[n] * (1 - c["lr"] * c["weight_decay"])
            m[n] = c["beta1"] * m[n] + (1 - c["beta1"]) * g[n]
            v[n] = c["beta2"] * v[n] + (1 - c["beta2"]) * g[n] * g[n]
            bc1 = 1 - c["beta1"] ** t
            bc2 = 1 - c["beta2"] ** t
            p[n] = p[n] - (c["lr"] / bc1) * m[n] / (v[n].sqrt() / bc2 ** 0.5 + c["eps"])
        out.append({n: x.clone() for n, x in p.items()})
    return out


def run_config(c, p0, grads, tensors):
    params = [torch.nn.Parameter(p0[n].clone()) for n, _, _ in TENSORS]
    names = [n for n, _, _ in TENSORS]
    opt = torch.optim.AdamW(params, lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"],
                            weight_decay=c["weight_decay"], amsgrad=False, foreach=False,
                            maximize=False, capturable=False, fused=False)
    ref = adamw_f64(c, p0, grads)
    coefs = []
    for k, gs in enumerate(grads):
        for prm, n in zip(params, names):
            prm.grad = gs[n].clone()
        if c["max_norm"] > 0:
            total = torch.nn.utils.clip_grad_norm_(params, c["max_norm"])
            # the expression of torch/nn/utils/clip_grad.py, _clip_grads_with_norm_
            coef = torch.clamp(c["max_norm"] / (total + 1e-6), max=1.0)
            for prm, n in zip(params, names):
                assert torch.equal(prm.grad, gs[n] * coef), "clip_grad_norm_ is not g * clip_coef"
            coefs.append(coef.reshape(1))
        opt.step()
        for prm, n in zip(params, names):
            x = prm.detach()
            e = ((x.double() - ref[k][n]).abs().max() / ref[k][n].abs().max()).item()
            assert e < 1e-5, f"{c['name']} step {k + 1} {n}: torch vs float64 AdamW {e}"
            tensors[f"{c['name']}_param_{k + 1}_{n}"] = x.clone().contiguous()
    for prm, n in zip(params, names):
        st = opt.state[prm]
        assert float(st["step"]) == STEPS
        tensors[f"{c['name']}_exp_avg_{n}"] = st["exp_avg"].clone().contiguous()
        tensors[f"{c['name']}_exp_avg_sq_{n}"] = st["exp_avg_sq"].clone().contiguous()
    if coefs:
        tensors[f"{c['name']}_clip_coef"] = torch.cat(coefs).contiguous()
        return [float(x) for x in coefs]
    return []


def make():
    g = torch.Generator().manual_seed(SEED)
    p0, grads = draw(g)
    names = [n for n, _, _ in TENSORS]
    tensors = {f"param_{n}": p0[n].contiguous() for n in names}
    norms, norms64 = [], []
    for k, gs in enumerate(grads):
        for n in names:
            tensors[f"grad_{k + 1}_{n}"] = gs[n]
        norms.append(torch.nn.utils.get_total_norm([gs[n] for n in names]).reshape(1))
        norms64.append(torch.sqrt(sum((gs[n].double() ** 2).sum() for n in names)).reshape(1))
        e = abs(float(norms[-1]) - float(norms64[-1])) / float(norms64[-1])
        assert e < 1e-6, f"step {k + 1}: f32 total norm vs float64 {e}"
    tensors["grad_norm"] = torch.cat(norms).contiguous()
    tensors["grad_norm_f64"] = torch.cat(norms64).contiguous()
    notes = ["norms " + " ".join(f"{float(x):.3f}" for x in norms)]
    for c in CONFIGS:
        coefs = run_config(c, p0, grads, tensors)
        if coefs:
            notes.append(f"{c['name']} coefs " + " ".join(f"{x:.4f}" for x in coefs))
    meta = {
        "generator": "tests/oracle/optim_fixtures.py",
        "names": ",".join(names),
        "shapes": ";".join(f"{n}=" + "x".join(str(d) for d in s) for n, s, _ in TENSORS),
        "steps": str(STEPS),
        "configs": ",".join(c["name"] for c in CONFIGS),
        "torch_version": torch.__version__,
        "seed": str(SEED),
    }
    for c in CONFIGS:
        for key in ("lr", "beta1", "beta2", "eps", "weight_decay", "max_norm"):
            meta[f"{c['name']}_{key}"] = repr(float(c[key]))
    return tensors, meta, "; ".join(notes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--check", action="store_true",
                    help="compare with the file on disk, write nothing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tensors, meta, note = make()
    path = os.path.join(args.out, "adamw.safetensors")
    if args.check:
        if not os.path.exists(path):
            print(f"adamw: MISSING {path}")
            sys.exit(1)
        old = load_file(path)
        same = set(old) == set(tensors) and all(torch.equal(old[t], tensors[t]) for t in tensors)
        with safe_open(path, "pt") as f:
            om = f.metadata() or {}
        same = same and all(om.get(k) == v for k, v in meta.items() if k != "torch_version")
        print(f"adamw: {'same' if same else 'DIFFERENT'} ({note})")
        sys.exit(0 if same else 1)
    os.makedirs(args.out, exist_ok=True)
    save_file(tensors, path, metadata=meta)
    print(f"adamw: {os.path.getsize(path)} bytes, {len(tensors)} tensors in {path} "
          f"(torch {torch.__version__}); {note}")


if __name__ == "__main__":
    main()
