"""How far the BraTS tools' HD95 lies from the paper's, on seeded synthetic lesion pairs.

Each pair on a 64^3 grid at 1 mm (BraTS's spacing): a reference lesion, an ellipsoid with radii of
3-14 voxels whose boundary radius varies smoothly with direction; a prediction, another such
perturbation of it shifted by up to 2 voxels, plus 0-2 cubic false positives (1, 27 or 125
voxels) 12-28 voxels away. For each pair the whole-region ("legacy") HD95 in both conventions:
the BraTS tools' (area-weighted surface elements at voxel corners,
:func:`nnunet_deconver.evaluation.challenge.brats.brats_hd95`) and the paper's (surface voxels,
numpy's linear percentile, directed-max, :func:`nnunet_deconver.evaluation.metrics.hd95`).

Run: ``python benchmarks/hd95_conventions.py [--pairs N] [--seed S]``.
"""

from __future__ import annotations

import argparse

import numpy as np

import _repo  # noqa: F401  (the working tree's nnunet_deconver, not an installed copy)
from nnunet_deconver.evaluation.challenge.brats import brats_hd95
from nnunet_deconver.evaluation.metrics import hd95

SHAPE = (64, 64, 64)
GRID = np.indices(SHAPE, dtype=np.float32)


def lesion(rng: np.random.Generator, centre, radii, amplitude: float = 0.2, n_waves: int = 6) -> np.ndarray:
    d = [(g - c) / r for g, c, r in zip(GRID, centre, radii)]
    rho = np.sqrt(sum(x * x for x in d)) + 1e-6
    f = sum(np.sin(sum(w * x / rho for w, x in zip(rng.normal(0, 2.5, 3), d)) + rng.uniform(0, 2 * np.pi))
            for _ in range(n_waves))
    return rho <= 1 + amplitude * f / np.sqrt(n_waves)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    centre = np.array([32.0, 32.0, 32.0])
    diffs = []
    for _ in range(args.pairs):
        radii = rng.uniform(3, 14, 3)
        ref = lesion(rng, centre, radii)
        pred = lesion(rng, centre + rng.integers(-2, 3, 3), radii * rng.uniform(0.9, 1.1, 3))
        for _ in range(int(rng.integers(0, 3))):
            q = (centre + rng.choice([-1, 1], 3) * rng.uniform(12, 28, 3)).astype(int)
            k = int(rng.integers(0, 3))
            pred[q[0] - k:q[0] + k + 1, q[1] - k:q[1] + k + 1, q[2] - k:q[2] + k + 1] = True
        diffs.append(brats_hd95(pred, ref, (1.0, 1.0, 1.0)) - hd95(pred, ref, (1.0, 1.0, 1.0)))
    d = np.abs(np.array(diffs))
    print(f"{len(d)} pairs, seed {args.seed}: |BraTS tools' HD95 - paper's HD95|")
    print(f"  > 1 voxel (1 mm): {(d > 1).sum()} pairs ({100 * (d > 1).mean():.1f} %)")
    print(f"  > 0.5 mm: {(d > 0.5).sum()} pairs; median {np.median(d):.3f} mm; max {d.max():.2f} mm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
