#!/usr/bin/env python3
"""bwd_fixtures.py - PyTorch autograd gradients of the FLUX transformer's non-attention ops (the
oracle of src/backend/cpu/bwd_ref.c and bwd_cpu.c, checked by tests/test_bwd.c).

    python3 tests/oracle/bwd_fixtures.py [--out DIR] [--check]

Runs inside tests/oracle/.venv (venv_bootstrap.py). For each op below: inputs and the upstream
gradient are drawn in float32 from a fixed-seed torch.Generator (so the C test sees exactly the
same values), upcast to float64, run through the op built from PyTorch's own modules/functions,
and differentiated with autograd (torch.autograd.grad, float64). Written to DIR (default
tests/fixtures/bwd/), one file per op: inputs F32, forward output and gradients F64.

  linear.safetensors        F.linear. x [n, in], w [out, in], b [out], dy [n, out];
                            y [n, out], dx [n, in], dw [out, in], db [out].
  ln_modulate.safetensors   (1 + scale) * nn.LayerNorm(dim, elementwise_affine=False, eps)(x)
                            + shift. x [n, dim], shift [dim], scale [dim], dy [n, dim];
                            y, dx [n, dim], dshift, dscale [dim].
  rmsnorm_heads.safetensors F.rms_norm(x.view(n, NH, HD), (HD,), w, eps), torch's semantics
                            x * rsqrt(mean(x^2) + eps) * w (diffusers' RMSNorm formula; its module
                            computes the variance in float32, so it is only a float32 cross-check
                            here). x [n, NH*HD], w [HD], dy; y, dx [n, NH*HD], dw [HD].
  gate_add.safetensors      out = x + gate * y. x, y [n, dim], gate [dim], dout [n, dim] (gradient
                            of out); out, grad_x, grad_y [n, dim], grad_gate [dim].
  act.safetensors           F.gelu(approximate="tanh") and F.silu on m values (randn * 3 and
                            fixed tails +-5, 10, 30, 100): <op>_x, <op>_dy [m]; <op>_y, <op>_dx.
  rope.safetensors          the interleaved-pair rotation of our forward (ops.h, diffusers'
                            apply_rotary_emb with use_real_unbind_dim=-1, FLUX's convention):
                            out[2i] = c x[2i] - s x[2i+1], out[2i+1] = s x[2i] + c x[2i+1], written
                            in float64 (diffusers' function casts x to float32, which would round
                            the gradient) and asserted equal to diffusers' apply_rotary_emb within
                            float32 rounding. cos/sin from diffusers' FluxPosEmbed(theta, axes)
                            (float64 angles, float32 cos/sin) on ids [n, 3]; cs [n, HD/2, 2] =
                            (cos, sin) pairs as cd_rope_table lays them out. x, dy [n, NH, HD];
                            y, dx.
Metadata: the shapes, eps, axes/theta, seed, torch/diffusers versions, generator.
Cross-checks before writing: F.rms_norm equals the explicit formula (< 1e-14) and diffusers'
RMSNorm in float32 (< 1e-5); the float64 RoPE equals diffusers' apply_rotary_emb (< 1e-6); every
autograd gradient equals a central finite difference of the float64 forward along one random
direction (relative < 1e-7).
torch runs on one thread, so a rerun reproduces the files bit for bit: `--check` recomputes and
compares with the files on disk (exit 1 on a difference).
"""
import argparse
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import diffusers  # noqa: E402
from diffusers.models.embeddings import apply_rotary_emb  # noqa: E402
from diffusers.models.normalization import RMSNorm  # noqa: E402
from diffusers.models.transformers.transformer_flux import FluxPosEmbed  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "bwd")
EPS = 1e-6
SEED = 20240
N, IN, OUT, DIM, NH, HD = 13, 48, 40, 96, 3, 32
AXES, THETA = (8, 12, 12), 10000
TAILS = [-100.0, -30.0, -10.0, -5.0, 5.0, 10.0, 30.0, 100.0]


def f32(g, *shape, scale=1.0, shift=0.0):
    return (torch.randn(*shape, generator=g, dtype=torch.float32) * scale + shift).contiguous()


def grads(fn, inputs, dy):
    """Forward fn(*inputs) in float64 and autograd gradients of <fn(...), dy> w.r.t. every input;
    also checks them against a central difference along one random direction."""
    xs = [t.double().requires_grad_() for t in inputs]
    y = fn(*xs)
    gs = torch.autograd.grad(y, xs, dy.double())
    g = torch.Generator().manual_seed(7)
    dirs = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in xs]
    h = 1e-6
    with torch.no_grad():
        lp = (fn(*[x + h * d for x, d in zip(xs, dirs)]) * dy.double()).sum()
        lm = (fn(*[x - h * d for x, d in zip(xs, dirs)]) * dy.double()).sum()
    fd = ((lp - lm) / (2 * h)).item()
    an = sum((gi * d).sum() for gi, d in zip(gs, dirs)).item()
    mag = sum((gi * d).abs().sum() for gi, d in zip(gs, dirs)).item()
    assert abs(fd - an) <= 1e-7 * mag, (fn, fd, an)
    return y.detach(), [t.detach() for t in gs]


def cpy(t):
    return t.contiguous().clone()


def build():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(SEED)
    files = {}
    meta0 = {"seed": str(SEED), "torch_version": torch.__version__,
             "diffusers_version": diffusers.__version__, "oracle_dtype": "float64",
             "generator": "tests/oracle/bwd_fixtures.py"}

    # linear
    x, w, b, dy = f32(g, N, IN), f32(g, OUT, IN, scale=IN ** -0.5), f32(g, OUT, scale=0.1), f32(g, N, OUT)
    y, (dx, dw, db) = grads(F.linear, [x, w, b], dy)
    files["linear.safetensors"] = (
        {"x": x, "w": w, "b": b, "dy": dy, "y": y, "dx": dx, "dw": dw, "db": db},
        dict(meta0, n=str(N), **{"in": str(IN), "out": str(OUT)}))

    # LayerNorm (no affine) + modulation
    ln = nn.LayerNorm(DIM, elementwise_affine=False, eps=EPS)
    x, sh, sc = f32(g, N, DIM, scale=1.5, shift=0.4), f32(g, DIM, scale=0.3), f32(g, DIM, scale=0.3)
    dy = f32(g, N, DIM)
    y, (dx, dsh, dsc) = grads(lambda a, s, c: (1 + c) * ln(a) + s, [x, sh, sc], dy)
    files["ln_modulate.safetensors"] = (
        {"x": x, "shift": sh, "scale": sc, "dy": dy, "y": y, "dx": dx, "dshift": dsh, "dscale": dsc},
        dict(meta0, n=str(N), dim=str(DIM), eps=repr(EPS)))

    # RMSNorm per head
    x, w, dy = f32(g, N, NH * HD), f32(g, HD, scale=0.1, shift=1.0), f32(g, N, NH * HD)

    def rms(a, wt):
        return F.rms_norm(a.view(N, NH, HD), (HD,), wt, EPS).reshape(N, NH * HD)

    with torch.no_grad():
        xd, wd = x.double(), w.double()
        explicit = (xd.view(N, NH, HD) * torch.rsqrt(xd.view(N, NH, HD).pow(2).mean(-1, keepdim=True)
                                                     + EPS) * wd).reshape(N, NH * HD)
        assert (rms(xd, wd) - explicit).abs().max().item() < 1e-14
        dn = RMSNorm(HD, eps=EPS)
        dn.weight.copy_(w)
        d32 = dn(x.view(N, NH, HD)).reshape(N, NH * HD).double()
        assert ((d32 - explicit).norm() / explicit.norm()).item() < 1e-5
    y, (dx, dw) = grads(rms, [x, w], dy)
    files["rmsnorm_heads.safetensors"] = (
        {"x": x, "w": w, "dy": dy, "y": y, "dx": dx, "dw": dw},
        dict(meta0, n=str(N), heads=str(NH), head_dim=str(HD), eps=repr(EPS)))

    # gated residual
    x, yv, gate, dout = f32(g, N, DIM), f32(g, N, DIM), f32(g, DIM, scale=0.5), f32(g, N, DIM)
    out, (gx, gy, gg) = grads(lambda a, v, gt: a + gt * v, [x, yv, gate], dout)
    files["gate_add.safetensors"] = (
        {"x": x, "y": yv, "gate": gate, "dout": dout, "out": out, "grad_x": gx, "grad_y": gy,
         "grad_gate": gg}, dict(meta0, n=str(N), dim=str(DIM)))

    # activations
    act = {}
    for name, fn in (("gelu", lambda a: F.gelu(a, approximate="tanh")), ("silu", F.silu)):
        xa = torch.cat([f32(g, 248, scale=3.0), torch.tensor(TAILS, dtype=torch.float32)])
        da = f32(g, xa.numel())
        ya, (dxa,) = grads(fn, [xa], da)
        act.update({f"{name}_x": xa, f"{name}_dy": da, f"{name}_y": ya, f"{name}_dx": dxa})
    files["act.safetensors"] = (act, dict(meta0, m=str(act["gelu_x"].numel())))

    # RoPE, interleaved pairs
    ids = torch.stack([torch.zeros(N), torch.randint(0, 64, (N,), generator=g).float(),
                       torch.randint(0, 64, (N,), generator=g).float()], dim=1).contiguous()
    cos, sin = FluxPosEmbed(THETA, list(AXES))(ids)  # [n, HD] float32, repeat-interleaved
    assert cos.dtype == torch.float32 and torch.equal(cos[:, 0::2], cos[:, 1::2])
    assert torch.equal(sin[:, 0::2], sin[:, 1::2])
    cs = torch.stack([cos[:, 0::2], sin[:, 0::2]], dim=-1).contiguous()  # [n, HD/2, 2]
    x, dy = f32(g, N, NH, HD), f32(g, N, NH, HD)
    c64, s64 = cs[..., 0].double()[:, None, :], cs[..., 1].double()[:, None, :]

    def rope(a):
        p = a.view(N, NH, HD // 2, 2)
        x0, x1 = p[..., 0], p[..., 1]
        return torch.stack([c64 * x0 - s64 * x1, s64 * x0 + c64 * x1], dim=-1).reshape(N, NH, HD)

    with torch.no_grad():
        ref = apply_rotary_emb(x[None], (cos, sin), use_real=True, use_real_unbind_dim=-1,
                               sequence_dim=1)[0].double()
        mine = rope(x.double())
        assert ((ref - mine).abs().max() / mine.abs().max()).item() < 1e-6
    y, (dx,) = grads(rope, [x], dy)
    files["rope.safetensors"] = (
        {"ids": ids, "cs": cs, "x": x, "dy": dy, "y": y, "dx": dx},
        dict(meta0, n=str(N), heads=str(NH), head_dim=str(HD),
             rope_axes=",".join(map(str, AXES)), rope_theta=str(THETA)))
    return {k: ({n: cpy(t) for n, t in ts.items()}, m) for k, (ts, m) in files.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    files = build()
    bad, total = 0, 0
    os.makedirs(a.out, exist_ok=True)
    for fname, (tensors, meta) in files.items():
        path = os.path.join(a.out, fname)
        if a.check:
            old = load_file(path)
            same = old.keys() == tensors.keys() and all(
                old[k].dtype == tensors[k].dtype and torch.equal(old[k], tensors[k]) for k in old)
            print(f"{fname}: {'ok' if same else 'DIFFERS'}")
            bad += not same
        else:
            save_file(tensors, path, metadata=meta)
            total += os.path.getsize(path)
            print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    if not a.check:
        print(f"total {total} bytes")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
