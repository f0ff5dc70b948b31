#!/usr/bin/env python3
"""torch_peer.py - cleardit's attention next to PyTorch on this CPU, in one run.

    python3 bench/torch_peer.py [--grids 32,48,64] [--radii 8,16,32] [--threads 2] [--json]

Runs in tests/oracle/.venv (created on first use, see tests/oracle/venv_bootstrap.py). FLUX.1
shapes: 24 heads x 128, T = 512 text tokens, f32, batch 1. For each square grid G and each mode
(dense, CLEAR r = 8, 16, 32) it times
  cleardit       `build/cleardit bench attention --grid GxG --radius R --json --repeat 3`
                 (spawned; median of 3; dense via --radius 0, CLEAR rows with --no-dense)
  sdpa           torch.nn.functional.scaled_dot_product_attention, no mask (dense mode only)
  flex           FlexAttention with the CLEAR block mask (mask_mod: text rows and columns always
                 allowed, image-image open disc; 128 x 128 blocks as the CLEAR reference code),
                 torch.compile'd (one compile per grid; compile time reported apart)
  sdpa-masked    SDPA with the dense boolean CLEAR mask (O(N^2) mask memory; grids <=
                 --masked-max-grid only)
Peers: 1 warm-up then the median of --repeat timed runs; torch.set_num_threads(--threads), and
cleardit gets the same --threads. Useful GFLOP/s counts exact FLOPs: 4 * allowed (query, key)
pairs * heads * head_dim (pairs from the separable disc formula, checked against the boolean mask
and against cleardit's own count). "ours/peer" is the ratio of useful GFLOP/s, i.e. peer time /
cleardit time: > 1 means cleardit is faster. Before timing, at the smallest grid and every radius,
it checks that cleardit (`cleardit attention`), flex and sdpa-masked compute the same output as a
float64 SDPA with the boolean mask (max abs error < 1e-4, else it stops).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "oracle"))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HEADS, HD, TEXT = 24, 128, 512


def disc_halfwidth(r, dy):
    """Largest dx >= 0 with dx^2 + dy^2 < r^2, or -1."""
    rem = r * r - dy * dy - 1
    return -1 if rem < 0 else math.isqrt(rem)


def allowed_pairs(T, H, W, r):
    """Exact allowed (query, key) pairs of one head (separable: sum over row offsets dy)."""
    N = T + H * W
    if r <= 0:
        return N * N
    pairs = T * N + H * W * T
    for dy in range(-(r - 1), r):
        if abs(dy) >= H:
            continue
        hw = min(disc_halfwidth(r, dy), W - 1)
        pairs += (H - abs(dy)) * ((2 * hw + 1) * W - hw * (hw + 1))
    return pairs


def clear_mask(T, H, W, r):
    """Dense boolean [N, N] CLEAR mask (True = attend)."""
    N = T + H * W
    idx = torch.arange(N)
    y = torch.div(idx - T, W, rounding_mode="floor")
    x = torch.remainder(idx - T, W)
    disc = (y[:, None] - y[None, :]) ** 2 + (x[:, None] - x[None, :]) ** 2 < r * r
    text = idx < T
    return text[:, None] | text[None, :] | disc


def timed(fn, repeat):
    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def run_cleardit(binary, G, r, threads, repeat):
    cmd = [binary, "bench", "attention", "--grid", f"{G}x{G}", "--radius", str(r), "--json",
           "--repeat", str(repeat), "--threads", str(threads)]
    if r > 0:
        cmd.append("--no-dense")
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()}")
    doc = json.loads(p.stdout)
    rows = [row for row in doc["rows"] if row["radius"] == r]
    if len(rows) != 1 or rows[0].get("skipped"):
        raise RuntimeError(f"unexpected cleardit output: {p.stdout[:200]}")
    return rows[0], doc


class Flex:
    """Compiled FlexAttention with a CLEAR mask_mod whose radius lives in a tensor, so that one
    compiled kernel per grid serves every radius (the block mask is rebuilt per radius)."""

    def __init__(self):
        self.error = None
        try:
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention
            self.create_block_mask = create_block_mask
            self.fn = torch.compile(flex_attention, dynamic=False)
        except Exception as e:  # noqa: BLE001
            self.error = f"flex_attention unavailable: {type(e).__name__}: {e}"
        self.r2 = torch.tensor(64, dtype=torch.int64)
        self.grid = None

    def set_case(self, T, H, W, r):
        if self.error:
            return None
        if self.grid != (T, H, W):
            r2 = self.r2

            def mask_mod(b, h, q_idx, kv_idx):
                qy, qx = (q_idx - T) // W, (q_idx - T) % W
                ky, kx = (kv_idx - T) // W, (kv_idx - T) % W
                disc = (qy - ky) * (qy - ky) + (qx - kx) * (qx - kx) < r2
                return (q_idx < T) | (kv_idx < T) | disc

            self.mask_mod = mask_mod
            self.grid = (T, H, W)
        self.r2.fill_(r * r)
        N = T + H * W
        t0 = time.perf_counter()
        self.bm = self.create_block_mask(self.mask_mod, None, None, N, N, device="cpu", BLOCK_SIZE=128)
        build_s = time.perf_counter() - t0
        # fraction of 128x128 blocks the kernel visits (partial + full)
        nb = self.bm.kv_num_blocks.sum().item()
        if getattr(self.bm, "full_kv_num_blocks", None) is not None:
            nb += self.bm.full_kv_num_blocks.sum().item()
        nqb = self.bm.kv_num_blocks.shape[-1]
        nkb = (N + 127) // 128
        return {"mask_build_s": build_s, "block_density": nb / (nqb * nkb)}

    def __call__(self, q, k, v):
        return self.fn(q, k, v, block_mask=self.bm)


def verify_small(binary, G, r, threads, flex, notes):
    """At one small case: cleardit (CLI), flex and sdpa-masked must compute the same output."""
    from safetensors.torch import load_file, save_file
    T, N = TEXT, TEXT + G * G
    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(1, HEADS, N, HD, generator=g) for _ in range(3))
    mask = clear_mask(T, G, G, r)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask)[0].float()
    errs = {}
    with tempfile.TemporaryDirectory() as d:
        save_file({"q": q[0].contiguous(), "k": k[0].contiguous(), "v": v[0].contiguous()}, f"{d}/in.safetensors")
        p = subprocess.run([binary, "attention", "--in", f"{d}/in.safetensors", "--out", f"{d}/out.safetensors",
                            "--grid", f"{G}x{G}", "--text-len", str(T), "--radius", str(r), "--threads",
                            str(threads)], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"cleardit attention failed: {p.stderr.strip()}")
        errs["cleardit"] = (load_file(f"{d}/out.safetensors")["o"] - ref).abs().max().item()
    errs["sdpa-masked"] = (F.scaled_dot_product_attention(q, k, v, attn_mask=mask)[0] - ref).abs().max().item()
    if not flex.error:
        try:
            flex.set_case(T, G, G, r)
            errs["flex"] = (flex(q, k, v)[0] - ref).abs().max().item()
        except Exception as e:  # noqa: BLE001
            flex.error = f"flex_attention failed on CPU: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    worst = max(errs.values())
    notes.append(f"verify {G}x{G} r={r}: max |o - float64 oracle| " +
                 ", ".join(f"{k_} {e_:.2e}" for k_, e_ in errs.items()))
    if worst > 1e-4:
        raise RuntimeError(f"implementations disagree at {G}x{G} r={r}: {errs}")
    return errs


def main():
    ap = argparse.ArgumentParser(description="cleardit vs PyTorch attention on this CPU")
    ap.add_argument("--grids", default="32,48,64", help="square grid sides (default 32,48,64)")
    ap.add_argument("--radii", default="8,16,32", help="CLEAR radii (default 8,16,32)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both (default 2)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs, median reported (default 3)")
    ap.add_argument("--masked-max-grid", type=int, default=48,
                    help="largest grid side for SDPA with the dense boolean mask (default 48)")
    ap.add_argument("--no-flex", action="store_true", help="skip FlexAttention")
    ap.add_argument("--no-verify", action="store_true", help="skip the output cross-check")
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "cleardit"), help="cleardit binary")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--save", metavar="FILE", help="also write the JSON object to FILE")
    args = ap.parse_args()
    grids = [int(s) for s in args.grids.split(",") if s]
    radii = [int(s) for s in args.radii.split(",") if s]
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"torch_peer.py: {args.bin} not found: run 'make' first")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_start = time.perf_counter()
    flex = Flex()
    if args.no_flex:
        flex.error = "skipped (--no-flex)"
    notes, rows = [], []
    if not args.no_verify:
        for r in radii:  # every radius: the flex kernel is compiled once and the radius changes
            verify_small(args.bin, min(grids), r, args.threads, flex, notes)
    info = {}

    def add(G, r, impl, seconds=None, unavailable=None, **extra):
        pairs = allowed_pairs(TEXT, G, G, r)
        flop = 4.0 * pairs * HEADS * HD
        row = {"grid": G, "mode": "dense" if r == 0 else f"r={r}", "radius": r, "impl": impl,
               "pairs_per_head": pairs, "gflop": flop * 1e-9, **extra}
        if seconds is not None:
            row.update(time_ms=seconds * 1e3, gflops=flop * 1e-9 / seconds)
        else:
            row["unavailable"] = unavailable
        rows.append(row)
        return row

    for G in grids:
        T, N = TEXT, TEXT + G * G
        q, k, v = (torch.randn(1, HEADS, N, HD) for _ in range(3))
        for r in [0] + radii:
            # cleardit
            try:
                cr, doc = run_cleardit(args.bin, G, r, args.threads, args.repeat)
                info["cleardit"] = {"isa": doc["isa"], "threads": doc["threads"],
                                    "fma_peak_gflops": doc["fma_peak_gflops"]}
                ours = add(G, r, "cleardit", cr["time_s"])
                if abs(cr["gflop"] - ours["gflop"]) > 1e-3 * ours["gflop"] + 0.002:
                    notes.append(f"{G}x{G} r={r}: FLOP count differs: cleardit {cr['gflop']:.3f}, "
                                 f"python {ours['gflop']:.3f} GFLOP")
            except Exception as e:  # noqa: BLE001
                ours = add(G, r, "cleardit", unavailable=str(e)[:200])
            if r == 0:
                add(G, 0, "sdpa", timed(lambda: F.scaled_dot_product_attention(q, k, v), args.repeat))
                continue
            # FlexAttention with the CLEAR block mask
            if flex.error:
                add(G, r, "flex", unavailable=flex.error)
            else:
                try:
                    meta = flex.set_case(T, G, G, r)
                    t0 = time.perf_counter()
                    flex(q, k, v)  # compiles on the first call per grid
                    first = time.perf_counter() - t0
                    s = timed(lambda: flex(q, k, v), args.repeat)
                    add(G, r, "flex", s, block_density=meta["block_density"],
                        mask_build_s=meta["mask_build_s"], first_call_s=first)
                except Exception as e:  # noqa: BLE001
                    flex.error = f"flex_attention failed on CPU: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                    add(G, r, "flex", unavailable=flex.error)
            # SDPA with the dense boolean mask
            mask_bytes = N * N
            if G > args.masked_max_grid:
                add(G, r, "sdpa-masked", unavailable=f"skipped: grid > --masked-max-grid {args.masked_max_grid}")
            elif 5 * mask_bytes > 2 << 30:
                add(G, r, "sdpa-masked", unavailable="skipped: mask would need > 2 GB")
            else:
                mask = clear_mask(T, G, G, r)
                if G <= 64:
                    assert int(mask.sum()) == allowed_pairs(T, G, G, r), "pair formula != mask count"
                add(G, r, "sdpa-masked", timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                                               args.repeat))
                del mask
            # ratio: our useful speed over the peer's
        by = {(x["grid"], x["radius"], x["impl"]): x for x in rows if x["grid"] == G}
        for x in rows:
            if x["grid"] != G or x["impl"] == "cleardit" or "time_ms" not in x:
                continue
            ours = by.get((G, x["radius"], "cleardit"))
            if ours and "time_ms" in ours:
                x["ours_over_peer"] = x["time_ms"] / ours["time_ms"]
    total = time.perf_counter() - t_start
    doc = {"heads": HEADS, "head_dim": HD, "text_len": TEXT, "dtype": "f32", "threads": args.threads,
           "repeat": args.repeat, "torch_version": torch.__version__,
           "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), **info,
           "flex_status": flex.error or "ok", "rows": rows, "notes": notes, "total_s": total}
    if args.save:
        with open(args.save, "w") as f:
            json.dump(doc, f, indent=1)
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print_table(doc)


def print_table(doc):
    c = doc.get("cleardit", {})
    rows, notes, total = doc["rows"], doc["notes"], doc["total_s"]
    print(f"cleardit vs PyTorch {doc['torch_version']} ({doc['torch_cpu_capability']}): {HEADS} heads x {HD}, "
          f"T = {TEXT}, f32, {doc['threads']} threads; cleardit path {c.get('isa', '?')}, "
          f"measured FMA peak {c.get('fma_peak_gflops', 0):.1f} GFLOP/s")
    print("ours/peer = cleardit useful GFLOP/s / peer useful GFLOP/s (= peer time / cleardit time; > 1: "
          "cleardit faster)\n")
    print(f"{'grid':<8} {'mode':<6} {'implementation':<12} {'time ms':>10} {'GFLOP/s':>9} {'ours/peer':>9}  note")
    for x in rows:
        grid = f"{x['grid']}x{x['grid']}"
        if "time_ms" not in x:
            print(f"{grid:<8} {x['mode']:<6} {x['impl']:<12} {'-':>10} {'-':>9} {'-':>9}  {x['unavailable']}")
            continue
        ratio = f"{x['ours_over_peer']:.2f}x" if "ours_over_peer" in x else ""
        note = ""
        if "block_density" in x:
            note = (f"{100 * x['block_density']:.0f}% of 128x128 blocks visited; first call "
                    f"{x['first_call_s']:.1f} s")
        print(f"{grid:<8} {x['mode']:<6} {x['impl']:<12} {x['time_ms']:>10.1f} {x['gflops']:>9.1f} {ratio:>9}  {note}")
    for n in notes:
        print(f"note: {n}")
    print(f"total {total:.0f} s")


if __name__ == "__main__":
    main()
