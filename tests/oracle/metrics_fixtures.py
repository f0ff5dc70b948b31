#!/usr/bin/env python3
"""metrics_fixtures.py - PSNR and SSIM of 8-bit grey image pairs from scikit-image (the oracle of
src/train/metrics.c, checked to 1e-6 relative by tests/test_metrics.c).

    python3 tests/oracle/metrics_fixtures.py [--out DIR] [--check]

Runs inside tests/oracle/.venv (venv_bootstrap.py); installs scikit-image there when it is
missing. Writes DIR/pairs.safetensors (default DIR tests/fixtures/metrics/):
  <case>.a, <case>.b  [h, w] U8   the reference image and the test image
  psnr  [ncases] F64   skimage.metrics.peak_signal_noise_ratio(a, b, data_range=255)
                       (+inf for identical images)
  ssim  [ncases] F64   skimage.metrics.structural_similarity(a, b, gaussian_weights=True,
                       sigma=1.5, use_sample_covariance=False, data_range=255)
  metadata: cases "name,name,..." (the order of psnr/ssim), seed, skimage_version,
  numpy_version, scipy_version, generator.
Cross-checks before writing: SSIM recomputed from the formula with scipy.ndimage.gaussian_filter
(truncate 3.5, mode reflect) and a 5-pixel crop agrees to 1e-12 (the settings mean what they
say), identical images give SSIM 1 and PSNR inf, PSNR matches 10 log10(255^2 / mse).

Cases (numpy default_rng(SEED + i)): independent uniform noise pairs (28x28 and 40x33, h x w);
a structured image (smooth shapes like a garment silhouette, or sinusoids) against itself plus
Gaussian noise of sigma 2, 8 and 30 (rounded, clipped to 0..255: saturation at both ends); an
inverted image (negative structure); two different constants (zero variance: only C1/C2 keep
SSIM finite); a one-level shift of a single pixel; identical images; a 11x11 image (the smallest
skimage accepts: one SSIM value after the crop) and a 11x17 one.
--check recomputes every value from the stored images and compares (exit 1 on a difference).
"""
import argparse
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()

try:
    import skimage  # noqa: E402
except ImportError:
    print("[metrics_fixtures] installing scikit-image into the venv", file=sys.stderr, flush=True)
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "scikit-image"])
    import skimage  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
from scipy import ndimage  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "metrics")
SEED = 20250301

# name, (h, w), kind, noise sigma
CASES = [
    ("random_28x28", (28, 28), "random", 0),
    ("random_40x33", (40, 33), "random", 0),
    ("garment_28x28_n2", (28, 28), "garment", 2),
    ("garment_28x28_n8", (28, 28), "garment", 8),
    ("garment_28x28_n30", (28, 28), "garment", 30),
    ("waves_40x33_n2", (40, 33), "waves", 2),
    ("waves_40x33_n8", (40, 33), "waves", 8),
    ("waves_40x33_n30", (40, 33), "waves", 30),
    ("inverted_28x28", (28, 28), "inverted", 0),
    ("constants_40x33", (40, 33), "constants", 0),
    ("one_level_28x28", (28, 28), "one_level", 0),
    ("identical_28x28", (28, 28), "identical", 0),
    ("small_11x11_n8", (11, 11), "waves", 8),
    ("small_11x17_n8", (11, 17), "garment", 8),
]


def structured(h, w, kind, rng):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == "waves":
        ph = rng.uniform(0, 2 * np.pi, size=2)
        img = 127.5 + 110 * np.sin(x / 3.1 + ph[0]) * np.cos(y / 4.3 + ph[1])
    else:  # a dark background, a bright torso with sleeves, a darker band, some texture
        cy, cx = h / 2, w / 2
        body = (np.abs(x - cx) < w * 0.22) & (np.abs(y - cy) < h * 0.38)
        sleeves = (np.abs(y - (cy - h * 0.2)) < h * 0.1) & (np.abs(x - cx) < w * 0.42)
        img = np.where(body | sleeves, 200.0, 10.0)
        img -= 60 * ((np.abs(y - cy) < h * 0.05) & body)
        img += rng.normal(0, 6, size=img.shape) * (body | sleeves)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_pair(h, w, kind, sigma, rng):
    if kind == "random":
        return (rng.integers(0, 256, size=(h, w), dtype=np.uint8),
                rng.integers(0, 256, size=(h, w), dtype=np.uint8))
    if kind == "constants":
        return np.full((h, w), 100, np.uint8), np.full((h, w), 117, np.uint8)
    a = structured(h, w, "garment" if kind in ("inverted", "one_level", "identical") else kind, rng)
    if kind == "inverted":
        return a, (255 - a).astype(np.uint8)
    if kind == "identical":
        return a, a.copy()
    if kind == "one_level":
        b = a.copy()
        b[h // 3, w // 2] += 1 if b[h // 3, w // 2] < 255 else -1
        return a, b
    b = np.clip(np.rint(a.astype(np.float64) + rng.normal(0, sigma, size=a.shape)), 0, 255)
    return a, b.astype(np.uint8)


def skimage_values(a, b):
    with np.errstate(divide="ignore"):
        p = peak_signal_noise_ratio(a, b, data_range=255)
    s = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=255)
    return float(p), float(s)


def formula_ssim(a, b):
    """SSIM from the paper's formula with scipy's filter, independently of skimage's code."""
    x, y = a.astype(np.float64), b.astype(np.float64)

    def f(v):
        return ndimage.gaussian_filter(v, 1.5, truncate=3.5, mode="reflect")

    ux, uy = f(x), f(y)
    vx, vy, vxy = f(x * x) - ux * ux, f(y * y) - uy * uy, f(x * y) - ux * uy
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s[5:-5, 5:-5].mean())


def cross_check(name, a, b, p, s):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    if mse == 0:
        assert p == np.inf and s == 1.0, (name, p, s)
    else:
        assert abs(p - 10 * np.log10(255.0 ** 2 / mse)) <= 1e-12 * abs(p), (name, p)
    fs = formula_ssim(a, b)
    assert abs(fs - s) <= 1e-12 * max(1.0, abs(s)), (name, fs, s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    path = os.path.join(args.out, "pairs.safetensors")
    if args.check:
        old = load_file(path)
        bad = 0
        for i, (name, _, _, _) in enumerate(CASES):
            p, s = skimage_values(old[f"{name}.a"], old[f"{name}.b"])
            wp, ws = old["psnr"][i], old["ssim"][i]
            same_p = (p == wp) if np.isinf(wp) else abs(p - wp) <= 1e-12 * abs(wp)
            if not same_p or abs(s - ws) > 1e-12 * max(1.0, abs(ws)):
                print(f"{name}: psnr {p} vs {wp}, ssim {s} vs {ws}")
                bad += 1
        print(f"{len(CASES) - bad}/{len(CASES)} cases agree")
        sys.exit(1 if bad else 0)
    tensors, psnr, ssim = {}, [], []
    for i, (name, (h, w), kind, sigma) in enumerate(CASES):
        rng = np.random.default_rng(SEED + i)
        a, b = make_pair(h, w, kind, sigma, rng)
        p, s = skimage_values(a, b)
        cross_check(name, a, b, p, s)
        tensors[f"{name}.a"] = np.ascontiguousarray(a)
        tensors[f"{name}.b"] = np.ascontiguousarray(b)
        psnr.append(p)
        ssim.append(s)
        print(f"{name:20s} psnr {p:10.6f}  ssim {s:.9f}")
    tensors["psnr"] = np.array(psnr, np.float64)
    tensors["ssim"] = np.array(ssim, np.float64)
    meta = {
        "cases": ",".join(c[0] for c in CASES), "seed": str(SEED),
        "skimage_version": skimage.__version__, "numpy_version": np.__version__,
        "scipy_version": scipy.__version__, "generator": "tests/oracle/metrics_fixtures.py",
    }
    os.makedirs(args.out, exist_ok=True)
    save_file(tensors, path, metadata=meta)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
