#!/usr/bin/env python3
"""resize_fixtures.py - golden 8-bit RGB resizes made by Pillow itself (the oracle of
src/io/resize.c, cd_rgb8_resize, checked exactly by tests/test_resize.c).

    python3 tests/oracle/resize_fixtures.py [--out DIR] [--check]

Runs inside tests/oracle/.venv (venv_bootstrap.py; Pillow is there as a dependency of diffusers).
Writes one DIR/<case>.safetensors per case (default DIR tests/fixtures/resize/):
  src  [sh, sw, 3] U8  random pixels (numpy default_rng(seed); the "clip" case uses only 0 and 255,
                       which drives the bicubic overshoot into the clamp; the "smooth" case is
                       sinusoids plus a little noise, like photo content)
  dst  [dh, dw, 3] U8  Image.fromarray(src, "RGB").resize((dw, dh)), the default filter
                       (BICUBIC for RGB; the script asserts it equals an explicit BICUBIC call)
  metadata: sw, sh, dw, dh, seed, filter, pillow_version, numpy_version, generator.

sweep.safetensors: SWEEP_CASES random cases in one file, every side drawn from 1..SWEEP_MAX
(both pass orders, ties of Pillow's order rule, up and down mixes): src_<i>, dst_<i> as above;
metadata cases = "sw:sh:dw:dh,..." (in order), seed, versions.

--sweep-out PATH --sweep-n N --sweep-max M writes a larger sweep of the same format to PATH for a
one-off stress check (not committed): CD_RESIZE_EXTRA=PATH build/test_cleardit resize_pillow.

--check reads each file, resizes its stored src again with the installed Pillow and compares with
the stored dst (exit status 1 on any difference); it also says whether the seeded src would come
out the same with this numpy.
"""
import argparse
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()

import numpy as np  # noqa: E402
import PIL  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "resize")

# name, (sw, sh), (dw, dh), seed, content
CASES = [
    ("up2_13x9", (13, 9), (26, 18), 1, "random"),            # x2 both axes
    ("up3.5_10x8", (10, 8), (35, 28), 2, "random"),          # x3.5, non-integer
    ("down0.37_100x81", (100, 81), (37, 30), 3, "random"),   # x0.37: antialiased support
    ("mixed_40x11", (40, 11), (17, 29), 4, "random"),        # x down, y up
    ("mixed_9x50", (9, 50), (23, 13), 5, "random"),          # x up, y down
    ("w1_1x17", (1, 17), (5, 40), 6, "random"),              # 1-pixel-wide source
    ("to1x1_23x19", (23, 19), (1, 1), 7, "random"),          # everything into one pixel
    ("from1x1", (1, 1), (4, 3), 8, "random"),                # one pixel out to many
    ("h_only_31x7", (31, 7), (12, 7), 9, "random"),          # horizontal pass only
    ("v_only_7x31", (7, 31), (7, 45), 10, "random"),         # vertical pass only
    ("clip_12x12", (12, 12), (29, 31), 11, "binary"),        # overshoot clamped to 0..255
    ("strong_211x5", (211, 5), (2, 1), 12, "random"),        # factor 105 down
    ("smooth_96x64", (96, 64), (128, 85), 13, "smooth"),     # photo-like content, x4/3
    ("vfirst_30x100", (30, 100), (25, 40), 14, "random"),    # both down, vertical pass first
    ("tie_20x50", (20, 50), (10, 30), 15, "random"),         # sh-dh == 2(sw-dw): horizontal first
    ("tie1_20x51", (20, 51), (10, 30), 16, "random"),        # sh-dh == 2(sw-dw)+1: vertical first
]
SWEEP_SEED = 1000
SWEEP_CASES = 48
SWEEP_MAX = 20


def make_src(sw, sh, seed, content):
    rng = np.random.default_rng(seed)
    if content == "smooth":
        y, x = np.mgrid[0:sh, 0:sw].astype(np.float64)
        ph = rng.uniform(0, 2 * np.pi, size=3)
        img = np.stack([127.5 + 120 * np.sin(x / (5 + 3 * c) + y / (7 + 2 * c) + ph[c])
                        for c in range(3)], axis=-1)
        img += rng.normal(0, 4, size=img.shape)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if content == "binary":
        return (rng.integers(0, 2, size=(sh, sw, 3), dtype=np.uint8) * 255).astype(np.uint8)
    return rng.integers(0, 256, size=(sh, sw, 3), dtype=np.uint8)


def sweep(n, max_side, seed):
    """n random (src, dst) cases; every 4th is forced onto or next to the order rule's tie."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        sw, sh, dw, dh = (int(v) for v in rng.integers(1, max_side + 1, size=4))
        if i % 4 == 3 and sw > 1:
            dw = int(rng.integers(1, sw))
            dh = sh - 2 * (sw - dw) - int(rng.integers(0, 2))
            if dh < 1:
                sh, dh = sh + 2 * (sw - dw) + 1, sh
        src = rng.integers(0, 256, size=(sh, sw, 3), dtype=np.uint8)
        cases.append((sw, sh, dw, dh, src, pil_resize(src, dw, dh)))
    return cases


def write_sweep(path, cases, seed):
    tensors = {}
    for i, (sw, sh, dw, dh, src, dst) in enumerate(cases):
        tensors[f"src_{i}"] = src
        tensors[f"dst_{i}"] = dst
    meta = {
        "cases": ",".join(f"{c[0]}:{c[1]}:{c[2]}:{c[3]}" for c in cases), "seed": str(seed),
        "filter": "default (BICUBIC)", "pillow_version": PIL.__version__,
        "numpy_version": np.__version__, "generator": "tests/oracle/resize_fixtures.py",
    }
    save_file(tensors, path, metadata=meta)


def check_sweep(path):
    old = load_file(path)
    n = len([k for k in old if k.startswith("src_")])
    ok = True
    for i in range(n):
        src, want = old[f"src_{i}"], old[f"dst_{i}"]
        ok &= np.array_equal(pil_resize(src, want.shape[1], want.shape[0]), want)
    return ok


def pil_resize(src, dw, dh):
    im = Image.fromarray(np.ascontiguousarray(src), "RGB")
    out = np.asarray(im.resize((dw, dh)), dtype=np.uint8)
    explicit = np.asarray(im.resize((dw, dh), Image.Resampling.BICUBIC), dtype=np.uint8)
    assert np.array_equal(out, explicit), "Pillow's default RGB filter is not BICUBIC any more"
    assert out.shape == (dh, dw, 3), out.shape
    return np.ascontiguousarray(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--sweep-out", help="write a larger sweep here (stress check, not committed)")
    ap.add_argument("--sweep-n", type=int, default=2000)
    ap.add_argument("--sweep-max", type=int, default=64)
    a = ap.parse_args()
    if a.sweep_out:
        write_sweep(a.sweep_out, sweep(a.sweep_n, a.sweep_max, SWEEP_SEED + 1), SWEEP_SEED + 1)
        print(f"wrote {a.sweep_out} ({a.sweep_n} cases, sides 1..{a.sweep_max})")
        return
    bad = 0
    total = 0
    os.makedirs(a.out, exist_ok=True)
    for name, (sw, sh), (dw, dh), seed, content in CASES:
        path = os.path.join(a.out, f"{name}.safetensors")
        if a.check:
            old = load_file(path)
            dst = pil_resize(old["src"], dw, dh)
            same = np.array_equal(dst, old["dst"])
            src_same = np.array_equal(make_src(sw, sh, seed, content), old["src"])
            print(f"{name}: {'ok' if same else 'DIFFERS'}"
                  f"{'' if src_same else ' (this numpy draws another src; dst checked on stored src)'}")
            bad += not same
            continue
        src = make_src(sw, sh, seed, content)
        dst = pil_resize(src, dw, dh)
        meta = {
            "sw": str(sw), "sh": str(sh), "dw": str(dw), "dh": str(dh), "seed": str(seed),
            "content": content, "filter": "default (BICUBIC)",
            "pillow_version": PIL.__version__, "numpy_version": np.__version__,
            "generator": "tests/oracle/resize_fixtures.py",
        }
        save_file({"src": src, "dst": dst}, path, metadata=meta)
        total += os.path.getsize(path)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    path = os.path.join(a.out, "sweep.safetensors")
    if a.check:
        same = check_sweep(path)
        print(f"sweep: {'ok' if same else 'DIFFERS'}")
        bad += not same
    else:
        write_sweep(path, sweep(SWEEP_CASES, SWEEP_MAX, SWEEP_SEED), SWEEP_SEED)
        total += os.path.getsize(path)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    if not a.check:
        print(f"{len(CASES) + 1} files, {total} bytes, Pillow {PIL.__version__}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
