#!/usr/bin/env python3
"""attention_bwd_fixtures.py - golden gradients of CLEAR attention from PyTorch autograd.

    python3 tests/oracle/attention_bwd_fixtures.py [--out DIR] [--check]

Runs inside tests/oracle/.venv (venv_bootstrap.py, as attention_fixtures.py). For each case below it
draws q, k, v, dout ~ N(0, 1) (float32, torch.Generator with a fixed seed) of shape
[heads, T + H*W, head_dim] and, for the pooled variant, spatial_weight [d, d] around 1/d^2; then, in
float64, runs the masked softmax attention forward with autograd (q, k, v and spatial_weight are
leaves requiring grad) and backpropagates the loss L = sum(dout * o). It writes
DIR/<case>.safetensors (default tests/fixtures/attention_bwd/) with tensors q, k, v,
(spatial_weight), dout, o, lse (the forward of the same call, so a test can feed either the
library forward's o/lse or these) and the expected dq, dk, dv, (dspatial_weight), all F32, plus
the metadata of the forward fixtures (grid_h, grid_w, text_len, radius, down, scale "0" =
1/sqrt(head_dim), seed, allowed_pairs_per_head, generator, torch_version). `--check` recomputes
everything and compares with the files on disk (exit 1 on a difference).

Independence from cleardit's C code: the mask is attention_fixtures.py's mask_mod_reference (the
CLEAR reference code's FlexAttention mask_mod, asserted there equal to a structural construction),
the pooled keys/values its `pooled` (the reference's reshape to (heads, H/d, d, W/d, d, hd) times
spatial_weight, summed per cell, appended after the image tokens). The gradients are autograd's.
Cross-checks that must hold before a file is written:
  - o and lse equal attention_fixtures.oracle() (its own SDPA and mask asserts run too), < 1e-12;
  - autograd's dq, dk, dv, dspatial_weight equal the closed-form backward (P = exp(s - lse),
    dS = P (dP - rowsum(dout * o)), dq = scale dS k', dk' = scale dS^T q, dv' = P^T dout, pooled
    gradients scattered through spatial_weight), < 1e-12 relative;
  - torch.autograd.gradcheck (central finite differences, float64) of L on every input.
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
from safetensors.torch import load_file, save_file  # noqa: E402
from safetensors import safe_open  # noqa: E402

import attention_fixtures as fwd  # noqa: E402  (mask_mod_reference, pooled, oracle)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "attention_bwd")
GENERATOR = "tests/oracle/attention_bwd_fixtures.py"

# name, heads, head_dim, T, H, W, radius, down, scale (0 = 1/sqrt(hd)), seed
CASES = [
    ("dense_t3_4x5_hd16", 2, 16, 3, 4, 5, 0, 0, 0.0, 1),
    ("clear_r2_t4_5x6_hd32", 2, 32, 4, 5, 6, 2, 0, 0.0, 2),
    ("clear_r3_d2_t3_6x6_hd16", 2, 16, 3, 6, 6, 3, 2, 0.0, 3),
    ("clear_r2_d3_t2_6x9_hd8", 1, 8, 2, 6, 9, 2, 3, 0.0, 4),
    ("clear_rhuge_t2_3x4_hd8", 2, 8, 2, 3, 4, 100, 0, 0.0, 5),
    ("clear_r3_t0_1x12_hd64", 1, 64, 0, 1, 12, 3, 0, 0.0, 6),
    ("clear_r2_t2_4x4_hd128", 1, 128, 2, 4, 4, 2, 0, 0.0, 7),
    ("clear_r3_d2_t2_4x6_hd8_scale0.3", 2, 8, 2, 4, 6, 3, 2, 0.3, 8),
]


def forward(q, k, v, sw, T, H, W, r, d, scale):
    """float64 o [heads, N, hd], lse [heads, N] with autograd; the boolean mask [N, N + P]."""
    n_pool = (H // d) * (W // d) if (r > 0 and d >= 2) else 0
    if n_pool:
        k = torch.cat([k, fwd.pooled(k, T, H, W, d, sw)], dim=1)
        v = torch.cat([v, fwd.pooled(v, T, H, W, d, sw)], dim=1)
    mask = fwd.mask_mod_reference(T, H, W, r, n_pool)
    s = (scale * (q @ k.transpose(1, 2))).masked_fill(~mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v, torch.logsumexp(s, dim=-1), mask


def closed_form(q, k, v, sw, dout, o, lse, T, H, W, r, d, scale):
    """The backward written out (no autograd), for the cross-check."""
    nh, N, hd = q.shape
    n_pool = (H // d) * (W // d) if (r > 0 and d >= 2) else 0
    kk, vv = k, v
    if n_pool:
        kk = torch.cat([k, fwd.pooled(k, T, H, W, d, sw)], dim=1)
        vv = torch.cat([v, fwd.pooled(v, T, H, W, d, sw)], dim=1)
    mask = fwd.mask_mod_reference(T, H, W, r, n_pool)
    p = torch.exp(scale * (q @ kk.transpose(1, 2)) - lse.unsqueeze(-1)) * mask
    dp = dout @ vv.transpose(1, 2)
    D = (dout * o).sum(-1, keepdim=True)
    ds = p * (dp - D)
    dq = scale * ds @ kk
    dkk = scale * ds.transpose(1, 2) @ q
    dvv = p.transpose(1, 2) @ dout
    dk, dv = dkk[:, :N].clone(), dvv[:, :N].clone()
    dsw = None
    if n_pool:
        gk = dkk[:, N:].reshape(nh, H // d, 1, W // d, 1, hd)
        gv = dvv[:, N:].reshape(nh, H // d, 1, W // d, 1, hd)
        w6 = sw.view(1, 1, d, 1, d, 1)
        dk[:, T:] += (gk * w6).reshape(nh, H * W, hd)
        dv[:, T:] += (gv * w6).reshape(nh, H * W, hd)
        ki = k[:, T:].reshape(nh, H // d, d, W // d, d, hd)
        vi = v[:, T:].reshape(nh, H // d, d, W // d, d, hd)
        dsw = (gk * ki + gv * vi).sum(dim=(0, 1, 3, 5))
    return dq, dk, dv, dsw


def rel_err(a, b):
    return ((a - b).abs().max() / (1e-300 + b.abs().max())).item()


def make_case(case):
    name, nh, hd, T, H, W, r, d, scale, seed = case
    N = T + H * W
    g = torch.Generator().manual_seed(2000 + seed)
    q = torch.randn(nh, N, hd, generator=g, dtype=torch.float32)
    k = torch.randn(nh, N, hd, generator=g, dtype=torch.float32)
    v = torch.randn(nh, N, hd, generator=g, dtype=torch.float32)
    dout = torch.randn(nh, N, hd, generator=g, dtype=torch.float32)
    pooled = r > 0 and d >= 2
    sw = None
    if pooled:
        u = torch.rand(d, d, generator=g, dtype=torch.float32) * 2 - 1
        sw = ((1.0 + 0.5 * u) / (d * d)).to(torch.float32)
    eff = scale if scale != 0 else 1.0 / math.sqrt(hd)

    leaves = [t.double().requires_grad_(True) for t in (q, k, v)]
    swl = sw.double().requires_grad_(True) if pooled else None
    o, lse, mask = forward(*leaves, swl, T, H, W, r, d, eff)
    loss = (dout.double() * o).sum()
    grads = torch.autograd.grad(loss, leaves + ([swl] if pooled else []))
    dq, dk, dv = grads[:3]
    dsw = grads[3] if pooled else None
    o, lse = o.detach(), lse.detach()

    # cross-check 1: the forward fixtures' oracle (mask asserts, SDPA) gives the same o, lse
    o2, lse2, _, _, _ = fwd.oracle(q.double(), k.double(), v.double(),
                                   sw.double() if pooled else None, T, H, W, r, d, eff)
    assert (o2 - o).abs().max().item() < 1e-12 and (lse2 - lse).abs().max().item() < 1e-12
    # cross-check 2: the closed-form backward
    cf = closed_form(q.double(), k.double(), v.double(), sw.double() if pooled else None,
                     dout.double(), o, lse, T, H, W, r, d, eff)
    for a, b, what in zip(cf, (dq, dk, dv, dsw), ("dq", "dk", "dv", "dsw")):
        if b is not None:
            e = rel_err(a, b)
            assert e < 1e-12, f"{name}: closed form {what} disagrees with autograd: {e}"
    # cross-check 3: finite differences of L on every input
    def loss_fn(*xs):
        oo, _, _ = forward(xs[0], xs[1], xs[2], xs[3] if pooled else None, T, H, W, r, d, eff)
        return (dout.double() * oo).sum()
    gc_in = tuple(t.double().requires_grad_(True) for t in (q, k, v)) + \
        ((sw.double().requires_grad_(True),) if pooled else ())
    assert torch.autograd.gradcheck(loss_fn, gc_in, eps=1e-6, atol=1e-7, rtol=1e-6), name

    tensors = {"q": q, "k": k, "v": v}
    if pooled:
        tensors["spatial_weight"] = sw
    tensors["dout"] = dout
    tensors["o"] = o.float()
    tensors["lse"] = lse.float()
    tensors["dq"] = dq.float()
    tensors["dk"] = dk.float()
    tensors["dv"] = dv.float()
    if pooled:
        tensors["dspatial_weight"] = dsw.float()
    tensors = {key: t.contiguous() for key, t in tensors.items()}
    meta = {
        "grid_h": str(H), "grid_w": str(W), "text_len": str(T), "radius": str(r),
        "down": str(d), "scale": repr(float(scale)) if scale else "0", "dtype": "f32",
        "generator": GENERATOR, "torch_version": torch.__version__, "seed": str(2000 + seed),
        "allowed_pairs_per_head": str(int(mask.sum().item())),
    }
    return name, tensors, meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    bad = total = 0
    for case in CASES:
        name, tensors, meta = make_case(case)
        path = os.path.join(args.out, name + ".safetensors")
        if args.check:
            if not os.path.exists(path):
                print(f"{name}: MISSING {path}")
                bad += 1
                continue
            old = load_file(path)
            same = set(old) == set(tensors) and all(torch.equal(old[t], tensors[t]) for t in tensors)
            with safe_open(path, "pt") as f:
                om = f.metadata() or {}
            same = same and all(om.get(key) == val for key, val in meta.items() if key != "torch_version")
            print(f"{name}: {'same' if same else 'DIFFERENT'}")
            bad += not same
            continue
        save_file(tensors, path, metadata=meta)
        size = os.path.getsize(path)
        total += size
        print(f"{name}: {size} bytes, {meta['allowed_pairs_per_head']} pairs/head")
    if args.check:
        sys.exit(1 if bad else 0)
    print(f"{len(CASES)} fixtures, {total} bytes in {args.out} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
