#!/usr/bin/env python3
"""attention_fixtures.py - golden outputs of CLEAR attention from an independent PyTorch oracle.

    python3 tests/oracle/attention_fixtures.py [--out DIR] [--check]

Creates tests/oracle/.venv on first use (torch, safetensors, numpy from PyPI; see venv_bootstrap.py)
and re-executes itself there. For each case below it draws q, k, v ~ N(0, 1) (float32,
torch.Generator with a fixed seed) of shape [heads, T + H*W, head_dim], and, for the pooled variant,
spatial_weight [d, d] around 1/d^2; then computes the expected o [heads, N, head_dim] and
lse [heads, N] in float64 and writes DIR/<case>.safetensors (default tests/fixtures/attention/)
with tensors q, k, v, (spatial_weight), o, lse and metadata grid_h, grid_w, text_len, radius, down,
scale ("0" = 1/sqrt(head_dim)), dtype, generator, torch_version. `--check` recomputes everything and
compares with the files on disk instead of writing (exit 1 on a difference).

The oracle is written from docs/clear.md and the CLEAR reference code (its FlexAttention
mask_mod and its pooled-key reshape), not from cleardit's C code:
  - the boolean mask [N, N + P] is the reference's mask_mod evaluated on every (q_idx, kv_idx) pair,
    and is asserted equal to a second, structural construction (text rows / text columns / disc
    offsets / pooled columns written out separately);
  - pooled keys/values: image K/V reshaped (heads, H/d, d, W/d, d, hd), times spatial_weight[a, b],
    summed over each d x d cell, appended after the image tokens; text rows do not see them;
  - scores = scale * q @ k'^T (float64), -inf where masked; o = softmax(scores) @ v';
    lse = logsumexp(scores, -1);
  - cross-checked against torch.nn.functional.scaled_dot_product_attention(attn_mask=mask) in
    float64, and against flex_attention (eager, CPU, float64) when this torch has it.
BF16 cases store q, k, v as BF16 (round-to-nearest-even of the f32 draws) and their expected outputs
are computed from the rounded values. spatial_weight is always F32 (the C API takes f32 weights).
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
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from safetensors import safe_open  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "attention")

# name, heads, head_dim, T, H, W, radius, down, scale (0 = 1/sqrt(hd)), dtype, seed
CASES = [
    ("dense_t7_6x9_hd64", 2, 64, 7, 6, 9, 0, 0, 0.0, "f32", 1),
    ("clear_r3_t5_7x10_hd64", 2, 64, 5, 7, 10, 3, 0, 0.0, "f32", 2),
    ("clear_r3_t5_7x10_hd64_bf16", 2, 64, 5, 7, 10, 3, 0, 0.0, "bf16", 2),
    ("clear_r2_t0_5x5_hd128", 1, 128, 0, 5, 5, 2, 0, 0.0, "f32", 3),
    ("clear_r4_d2_t4_8x8_hd32", 3, 32, 4, 8, 8, 4, 2, 0.0, "f32", 4),
    ("clear_r4_d2_t4_8x8_hd32_bf16", 3, 32, 4, 8, 8, 4, 2, 0.0, "bf16", 4),
    ("clear_rhuge_t3_4x5_hd32", 2, 32, 3, 4, 5, 1000, 0, 0.0, "f32", 5),
    ("clear_r3_t2_1x20_hd64", 1, 64, 2, 1, 20, 3, 0, 0.0, "f32", 6),
    ("clear_r8_t4_3x4_hd64", 1, 64, 4, 3, 4, 8, 0, 0.0, "f32", 7),
    ("clear_r2_t3_5x6_hd64_scale0.3", 1, 64, 3, 5, 6, 2, 0, 0.3, "f32", 8),
]


def mask_mod_reference(T, H, W, r, n_pool):
    """The CLEAR reference mask_mod (local_mask / local_downsample_mask), evaluated densely."""
    N = T + H * W
    q_idx = torch.arange(N).view(N, 1)
    kv_idx = torch.arange(N + n_pool).view(1, N + n_pool)
    if r <= 0:
        m = torch.ones(N, N + n_pool, dtype=torch.bool)
        m[:, N:] = False
        return m
    q_y, q_x = torch.div(q_idx - T, W, rounding_mode="floor"), torch.remainder(q_idx - T, W)
    k_y, k_x = torch.div(kv_idx - T, W, rounding_mode="floor"), torch.remainder(kv_idx - T, W)
    disc = (q_y - k_y) ** 2 + (q_x - k_x) ** 2 < r * r
    if n_pool == 0:
        return (q_idx < T) | (kv_idx < T) | disc
    return ((q_idx < T) & (kv_idx < N)) | ((q_idx >= T) & ((kv_idx < T) | (kv_idx >= N) | disc))


def mask_structural(T, H, W, r, n_pool):
    """The same mask written out part by part, from the spec's wording."""
    N = T + H * W
    m = torch.zeros(N, N + n_pool, dtype=torch.bool)
    m[:T, :N] = True                 # text rows: all text and image keys, no pooled keys
    m[T:, :T] = True                 # image rows: all text keys
    m[T:, N:] = True                 # image rows: all pooled keys
    for qy in range(H):
        for qx in range(W):
            i = T + qy * W + qx
            if r <= 0:
                m[i, T:N] = True
                continue
            for dy in range(-r + 1, r):
                for dx in range(-r + 1, r):
                    ky, kx = qy + dy, qx + dx
                    if 0 <= ky < H and 0 <= kx < W and dy * dy + dx * dx < r * r:
                        m[i, T + ky * W + kx] = True
    return m


def pooled(x, T, H, W, d, sw):
    """[heads, N, hd] -> [heads, (H/d)*(W/d), hd]: weighted sums of d x d cells of image tokens."""
    nh, _, hd = x.shape
    img = x[:, T:].reshape(nh, H // d, d, W // d, d, hd)
    return (img * sw.view(1, 1, d, 1, d, 1)).sum(dim=(2, 4)).reshape(nh, (H // d) * (W // d), hd)


def oracle(q, k, v, sw, T, H, W, r, d, scale):
    """float64 o, lse and the mask; q, k, v float64 [heads, N, hd]."""
    n_pool = (H // d) * (W // d) if (r > 0 and d >= 2) else 0
    if n_pool:
        k = torch.cat([k, pooled(k, T, H, W, d, sw)], dim=1)
        v = torch.cat([v, pooled(v, T, H, W, d, sw)], dim=1)
    mask = mask_mod_reference(T, H, W, r, n_pool)
    assert torch.equal(mask, mask_structural(T, H, W, r, n_pool)), "mask constructions disagree"
    assert bool(mask.any(dim=1).all()), "a row with no allowed key"
    s = scale * (q @ k.transpose(1, 2))
    s = s.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    o = torch.softmax(s, dim=-1) @ v
    # cross-check 1: SDPA with the boolean mask, float64
    o_sdpa = F.scaled_dot_product_attention(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0),
                                            attn_mask=mask, scale=scale).squeeze(0)
    err = (o_sdpa - o).abs().max().item()
    assert err < 1e-12, f"SDPA disagrees with the explicit softmax: {err}"
    # cross-check 2: lse as log(sum(exp)) of the allowed scores, row by row (no logsumexp)
    m = s.max(dim=-1, keepdim=True).values
    lse2 = (m.squeeze(-1) + torch.log(torch.exp(s - m).sum(dim=-1)))
    assert (lse2 - lse).abs().max().item() < 1e-12
    return o, lse, mask, k, v


_flex_note = None


def flex_check(q, k, v, mask, scale, o, lse):
    """Optional: eager flex_attention with the same mask (float64, CPU). Returns a note."""
    global _flex_note
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except Exception as e:  # noqa: BLE001
        return f"flex_attention unavailable ({type(e).__name__}: {e})"
    nq, nk = mask.shape

    def mask_mod(b, h, qi, ki):
        return mask[qi, ki]

    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bm = create_block_mask(mask_mod, B=None, H=None, Q_LEN=nq, KV_LEN=nk, device="cpu")
            try:
                out = flex_attention(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), block_mask=bm,
                                     scale=scale, return_lse=True)
            except TypeError:
                out = flex_attention(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), block_mask=bm,
                                     scale=scale, return_aux=True)
        of, lf = out[0], out[1]
        lf = getattr(lf, "lse", lf)
    except Exception as e:  # noqa: BLE001
        return f"flex_attention failed on CPU ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    eo = (of.squeeze(0).double() - o).abs().max().item()
    el = (lf.squeeze(0).double() - lse).abs().max().item()
    # flex_attention's eager lse may be base-2 in some versions; accept either
    el2 = (lf.squeeze(0).double() * math.log(2) - lse).abs().max().item()
    assert eo < 1e-9, f"flex_attention o disagrees: {eo}"
    assert min(el, el2) < 1e-9, f"flex_attention lse disagrees: {el} / {el2}"
    return "flex_attention agrees"


def make_case(case):
    name, nh, hd, T, H, W, r, d, scale, dtype, seed = case
    N = T + H * W
    g = torch.Generator().manual_seed(1000 + seed)
    q = torch.randn(nh, N, hd, generator=g, dtype=torch.float32)
    k = torch.randn(nh, N, hd, generator=g, dtype=torch.float32)
    v = torch.randn(nh, N, hd, generator=g, dtype=torch.float32)
    sw = None
    if r > 0 and d >= 2:
        u = torch.rand(d, d, generator=g, dtype=torch.float32) * 2 - 1
        sw = ((1.0 + 0.5 * u) / (d * d)).to(torch.float32)
    if dtype == "bf16":
        q, k, v = q.to(torch.bfloat16), k.to(torch.bfloat16), v.to(torch.bfloat16)
    eff_scale = scale if scale != 0 else 1.0 / math.sqrt(hd)
    o, lse, mask, k_all, v_all = oracle(q.double(), k.double(), v.double(),
                                        sw.double() if sw is not None else None, T, H, W, r, d,
                                        eff_scale)
    note = flex_check(q.double(), k_all, v_all, mask, eff_scale, o, lse)
    if r >= max(H, W) * 2:  # disc covers the grid: must be dense attention
        assert bool(mask.all()), "huge radius does not cover the grid"
        od, lsed, _, _, _ = oracle(q.double(), k.double(), v.double(), None, T, H, W, 0, 0, eff_scale)
        assert torch.equal(od, o) and torch.equal(lsed, lse), "CLEAR(r huge) != dense"
        note += "; r huge == dense (bitwise)"
    tensors = {"q": q.contiguous(), "k": k.contiguous(), "v": v.contiguous()}
    if sw is not None:
        tensors["spatial_weight"] = sw.contiguous()
    tensors["o"] = o.to(torch.float32).contiguous()
    tensors["lse"] = lse.to(torch.float32).contiguous()
    meta = {
        "grid_h": str(H), "grid_w": str(W), "text_len": str(T), "radius": str(r),
        "down": str(d), "scale": repr(float(scale)) if scale else "0", "dtype": dtype,
        "generator": "tests/oracle/attention_fixtures.py", "torch_version": torch.__version__,
        "seed": str(1000 + seed),
        "allowed_pairs_per_head": str(int(mask.sum().item())),
    }
    return name, tensors, meta, note


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    bad = 0
    total = 0
    for case in CASES:
        name, tensors, meta, note = make_case(case)
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
            print(f"{name}: {'same' if same else 'DIFFERENT'} ({note})")
            bad += not same
            continue
        save_file(tensors, path, metadata=meta)
        size = os.path.getsize(path)
        total += size
        print(f"{name}: {size} bytes, {meta['allowed_pairs_per_head']} pairs/head ({note})")
    if args.check:
        sys.exit(1 if bad else 0)
    print(f"{len(CASES)} fixtures, {total} bytes in {args.out} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
