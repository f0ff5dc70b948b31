#!/usr/bin/env python3
"""The peer of cleardit's attention kernels: the same FLUX.1 attention shapes through PyTorch.

Dense: torch.nn.functional.scaled_dot_product_attention (its flash kernel). CLEAR: FlexAttention
with the CLEAR block mask, the way the CLEAR reference implementation runs it (text queries and
text keys unmasked, image pairs inside the open disc of radius r). bf16 inputs [1, heads, N, hd].

Useful FLOPs are counted here independently of cleardit (4 x allowed pairs x heads x head_dim),
so the two programs' TFLOP/s can be compared line by line. Prints a table; --json writes rows.
Run on a GPU machine with PyTorch >= 2.5 (scripts/gpu-check.sh calls it).
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F


def allowed_pairs(T, H, W, r):
    """Exact (query, key) pairs of one head: dense N^2; CLEAR as docs/clear.md."""
    N = T + H * W
    if r == 0:
        return N * N
    total = T * N + H * W * T  # text queries see everything; image queries see the text
    for dy in range(-(r - 1), r):
        hw = math.isqrt(r * r - dy * dy - 1)  # largest dx with dx^2 + dy^2 < r^2
        rows = max(0, H - abs(dy))
        cols = sum(min(x + hw, W - 1) - max(x - hw, 0) + 1 for x in range(W))
        total += rows * cols
    return total


def time_call(fn, budget_s):
    """Median seconds over repetitions after one warm-up, timed with CUDA events."""
    fn()
    torch.cuda.synchronize()
    times = []
    t_start = time.time()
    while True:
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e-3)
        if len(times) >= 5 or (time.time() - t_start) > budget_s:
            break
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1024,2048,4096,8192", help="image sides in pixels (grid = side/16)")
    ap.add_argument("--radii", default="0,8,16,32", help="0 = dense (SDPA), else CLEAR radius (FlexAttention)")
    ap.add_argument("--heads", type=int, default=24)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--text-len", type=int, default=512)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timed repetitions per case")
    ap.add_argument("--json", help="write the rows to this file")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("flex_attention_peer: no CUDA device", file=sys.stderr)
        return 2
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    flex = torch.compile(flex_attention, dynamic=False)
    dev = torch.device("cuda")
    NH, HD, T = a.heads, a.head_dim, a.text_len
    rows = []
    print(f"peer: torch {torch.__version__} on {torch.cuda.get_device_name()}; {NH} heads x {HD}, T = {T}")
    print(f"{'size':>6} {'grid':>9} {'mode':>6} {'impl':>6} {'ms':>10} {'TFLOP/s':>9} {'vs dense':>9}")
    for size in [int(s) for s in a.sizes.split(",")]:
        G = size // 16
        N = T + G * G
        g = torch.Generator(device=dev).manual_seed(size)
        q, k, v = (torch.rand(1, NH, N, HD, device=dev, generator=g, dtype=torch.float32).mul_(2).sub_(1)
                   .to(torch.bfloat16) for _ in range(3))
        # captured tensors, not Python ints: one compiled kernel per shape, not per radius
        T_t = torch.tensor(T, device=dev)
        W_t = torch.tensor(G, device=dev)
        dense_s = None
        for r in [int(x) for x in a.radii.split(",")]:
            flops = 4.0 * allowed_pairs(T, G, G, r) * NH * HD
            if r == 0:
                fn = lambda: F.scaled_dot_product_attention(q, k, v)
                impl = "sdpa"
            else:
                r2 = torch.tensor(r * r, device=dev)

                def mask_mod(b, h, qi, ki):
                    qy = (qi - T_t) // W_t
                    qx = (qi - T_t) % W_t
                    ky = (ki - T_t) // W_t
                    kx = (ki - T_t) % W_t
                    near = (qy - ky) * (qy - ky) + (qx - kx) * (qx - kx) < r2
                    return (qi < T_t) | (ki < T_t) | near

                bm = create_block_mask(mask_mod, 1, 1, N, N, device=dev, _compile=True)
                fn = lambda: flex(q, k, v, block_mask=bm, return_lse=True)
                impl = "flex"
            sec = time_call(fn, a.budget)
            if r == 0:
                dense_s = sec
            sp = f"{dense_s / sec:.2f}x" if (r and dense_s) else ""
            mode = f"r={r}" if r else "dense"
            print(f"{size:>6} {G:>4}x{G:<4} {mode:>6} {impl:>6} {sec * 1e3:>10.2f} {flops / sec * 1e-12:>9.1f} {sp:>9}",
                  flush=True)
            rows.append({"size": size, "grid": G, "radius": r, "impl": impl, "time_s": sec,
                         "useful_flop": flops, "tflops": flops / sec * 1e-12,
                         "speedup_vs_dense": (dense_s / sec) if (r and dense_s) else None})
        del q, k, v
        torch.cuda.empty_cache()
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "heads": NH,
                       "head_dim": HD, "text_len": T, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
