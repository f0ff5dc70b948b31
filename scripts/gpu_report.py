#!/usr/bin/env python3
"""The summary table of scripts/gpu-check.sh: reads DIR/lab_bench.json (our kernels, every
version), DIR/peer.json (PyTorch SDPA / FlexAttention) and DIR/forward.json (FLUX.1-shaped forward)
and prints Markdown tables plus the issue's targets, measured or not. Standard library only."""
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"(no {os.path.basename(path)}: {e})")
        return None


def mode(r):
    return "dense" if r == 0 else f"r={r}"


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "gpu-check-out"
    lab, peer, fwd = (load(os.path.join(d, n)) for n in ("lab_bench.json", "peer.json", "forward.json"))
    best = {}  # (size, radius) -> our fastest kernel version (naive excluded)
    if lab:
        for r in lab["results"]:
            if r["name"] == "naive":
                continue
            k = (r["size"], r["radius"])
            if k not in best or r["ms"] < best[k]["ms"]:
                best[k] = r
    pr = {(r["size"], r["radius"]): r for r in (peer or {}).get("rows", [])}
    print()
    print(f"### Attention per layer, FLUX.1 shapes (24 heads x 128, T = 512), bf16")
    if lab:
        print(f"device: {lab['device']}; bf16 tensor peak {lab['peak_bf16_tflops']:.0f} TFLOP/s (SMs x clock)")
    if peer:
        print(f"peer: torch {peer['torch']} (dense: SDPA; CLEAR: FlexAttention + CLEAR block mask)")
    print()
    print("| image | mode | ours ms | ours TFLOP/s | % peak | kernel | vs our dense | peer ms | peer TFLOP/s | peer vs its dense | ours vs peer |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for k in sorted(set(best) | set(pr)):
        size, r = k
        o, p = best.get(k), pr.get(k)
        od, pd = best.get((size, 0)), pr.get((size, 0))
        cells = [f"{size}^2", mode(r)]
        cells += [f"{o['ms']:.3f}", f"{o['tflops']:.1f}", f"{o['pct_peak']:.1f}", o["name"],
                  f"{od['ms'] / o['ms']:.1f}x" if (od and r) else ""] if o else ["-"] * 5
        cells += [f"{p['time_s'] * 1e3:.3f}", f"{p['tflops']:.1f}",
                  f"{pd['time_s'] / p['time_s']:.1f}x" if (pd and r) else ""] if p else ["-"] * 3
        cells += [f"{p['time_s'] * 1e3 / o['ms']:.2f}x" if (o and p) else ""]
        print("| " + " | ".join(cells) + " |")
    if fwd:
        print()
        print(f"### One FLUX.1-shaped forward (random bf16 weights, {fwd['double_blocks']} double + "
              f"{fwd['single_blocks']} single blocks timed, scaled to 19 + 38), {fwd['device']}")
        print()
        print("| image | tokens | mode | s per forward (19+38) | double block s | single block s | vs dense |")
        print("|---|---|---|---|---|---|---|")
        for r in fwd["rows"]:
            sp = f"{r['speedup_vs_dense']:.1f}x" if r["radius"] else ""
            print(f"| {r['grid'] * 16}^2 | {r['tokens']} | {mode(r['radius'])} | {r['full_model_s']:.3f} | "
                  f"{r['double_s']:.4f} | {r['single_s']:.4f} | {sp} |")
    print()
    print("### Targets (issue 7)")
    def target(name, ok, text):
        print(f"- {name}: {text} -> {'met' if ok else 'NOT met'}" if ok is not None else f"- {name}: not measured")
    c, dn = best.get((4096, 16)), best.get((4096, 0))
    target("CLEAR kernel >= 60% of our dense useful TFLOP/s at r = 16, 4096^2",
           (c["tflops"] / dn["tflops"] >= 0.6) if (c and dn) else None,
           f"{c['tflops']:.1f} / {dn['tflops']:.1f} = {100 * c['tflops'] / dn['tflops']:.0f}%" if (c and dn) else "")
    dd = [v for (s, r), v in best.items() if r == 0]
    top = max(dd, key=lambda v: v["pct_peak"]) if dd else None
    target("dense kernel >= 50% of the card's bf16 peak", (top["pct_peak"] >= 50) if top else None,
           f"best {top['pct_peak']:.1f}% at {top['size']}^2 ({top['tflops']:.0f} TFLOP/s)" if top else "")
    f8 = {r["radius"]: r for r in (fwd or {}).get("rows", []) if r["grid"] == 512}
    target("FLUX.1 forward at 8192^2, r = 8, >= 8x faster than dense",
           (f8[8]["speedup_vs_dense"] >= 8) if (0 in f8 and 8 in f8) else None,
           f"{f8[0]['full_model_s']:.2f} s vs {f8[8]['full_model_s']:.2f} s = {f8[8]['speedup_vs_dense']:.1f}x"
           if (0 in f8 and 8 in f8) else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
