"""Timing of Dice / HD95 on a BraTS-sized volume (240 x 240 x 155, spacing 1 mm).

Masks: tumour-like pairs built from ellipsoids whose radius is perturbed by smooth random
functions of direction; the "prediction" is another perturbation of the same ellipsoid, shifted
by a voxel or two, plus a couple of small false-positive blobs elsewhere in the brain. Three
sizes like BraTS regions (whole tumour, tumour core, enhancing tumour) and a one-empty case.

HD95 is timed with the default definition (``directed-max``, the larger of the two directed 95th
percentiles) and its value is also printed for ``pooled``. For comparison the script also times
the same HD95 with the distance transforms over the whole volume (no bounding-box crop) and checks
both give the same value.

Run: ``python benchmarks/bench_hd95.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import scipy
from scipy import ndimage

from _machine import cpu_model
import _repo  # noqa: F401  (the working tree's nnunet_deconver, not an installed copy)
from nnunet_deconver.evaluation.metrics import dice, hd95, surface_mask

SHAPE = (240, 240, 155)
SPACING = (1.0, 1.0, 1.0)


def perturbed_ellipsoid(rng: np.random.Generator, centre, radii, amplitude=0.15, n_waves=6) -> np.ndarray:
    """Ellipsoid whose boundary radius varies smoothly with direction (tumour-like lobes)."""
    g = np.indices(SHAPE, dtype=np.float32)
    d = [(gi - c) / r for gi, c, r in zip(g, centre, radii)]
    rho = np.sqrt(sum(di * di for di in d)) + 1e-6
    u = [di / rho for di in d]
    f = np.zeros(SHAPE, dtype=np.float32)
    for _ in range(n_waves):
        w = rng.normal(0, 2.5, 3)
        f += np.sin(w[0] * u[0] + w[1] * u[1] + w[2] * u[2] + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    f *= amplitude / np.sqrt(n_waves)
    return rho <= 1.0 + f


def tumour_pair(rng: np.random.Generator, radii, n_fp: int = 2) -> tuple[np.ndarray, np.ndarray]:
    centre = np.array([120.0, 110.0, 80.0])
    ref = perturbed_ellipsoid(rng, centre, radii)
    pred = perturbed_ellipsoid(rng, centre + rng.integers(-2, 3, 3), np.array(radii) * rng.uniform(0.95, 1.05, 3))
    for _ in range(n_fp):  # small false positives away from the tumour
        c = centre + rng.choice([-1, 1], 3) * rng.uniform(40, 60, 3)
        g = np.indices((7, 7, 7)) - 3
        blob = (g ** 2).sum(0) <= 9
        sl = tuple(slice(int(ci) - 3, int(ci) + 4) for ci in c)
        pred[sl] |= blob
    return pred, ref


def hd95_full_volume(pred: np.ndarray, ref: np.ndarray, spacing) -> float:
    """Same definition (directed-max), distance transforms over the whole volume (for comparison only)."""
    sp, sr = surface_mask(pred), surface_mask(ref)
    dr = ndimage.distance_transform_edt(~sr, sampling=spacing)
    dp = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return float(max(np.percentile(dr[sp], 95), np.percentile(dp[sr], 95)))


def median_time(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` runs of ``fn`` (no warm-up: the first, cold run counts) and the last
    run's result. Hand-written rather than ``torch.utils.benchmark``: numpy/scipy work, no torch."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)

    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs visible; {platform.platform()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}")
    print(f"volume {SHAPE}, spacing {SPACING} mm, median of {args.repeats} runs\n")

    cases = {
        "whole tumour (radii 38/32/26)": tumour_pair(rng, (38, 32, 26), n_fp=2),
        "tumour core (radii 20/17/14)": tumour_pair(rng, (20, 17, 14), n_fp=1),
        "enhancing (radii 12/10/8)": tumour_pair(rng, (12, 10, 8), n_fp=1),
    }
    header = f"{'case':32s} {'ref vox':>8s} {'pred vox':>8s} {'DSC %':>6s} {'HD95 mm':>8s} {'pooled':>8s} " \
             f"{'hd95 s':>8s} {'dice s':>8s} {'full-vol s':>10s}"
    print(header)
    print("-" * len(header))
    total = 0.0
    for name, (pred, ref) in cases.items():
        t_hd, v_hd = median_time(lambda: hd95(pred, ref, SPACING), args.repeats)
        t_d, v_d = median_time(lambda: dice(pred, ref), args.repeats)
        t_full, v_full = median_time(lambda: hd95_full_volume(pred, ref, SPACING), max(1, args.repeats // 2))
        assert abs(v_full - v_hd) < 1e-9, (v_full, v_hd)
        v_pooled = hd95(pred, ref, SPACING, definition="pooled")
        total += t_hd + t_d
        print(f"{name:32s} {int(ref.sum()):8d} {int(pred.sum()):8d} {100 * v_d:6.2f} {v_hd:8.3f} {v_pooled:8.3f} "
              f"{t_hd:8.3f} {t_d:8.3f} {t_full:10.3f}")
    pred, ref = cases["whole tumour (radii 38/32/26)"]
    empty = np.zeros(SHAPE, dtype=bool)
    t_e, v_e = median_time(lambda: hd95(empty, ref, SPACING), args.repeats)
    print(f"{'one empty (penalty: diagonal)':32s} {int(ref.sum()):8d} {0:8d} {0.0:6.2f} {v_e:8.3f} {v_e:8.3f} "
          f"{t_e:8.3f}")
    print(f"\nthree regions of one case (DSC + HD95): {total:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
