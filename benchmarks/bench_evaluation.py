"""Time of evaluating one BraTS-sized case (240 x 240 x 155, 1 mm) with every metric.

The case: a tumour-like reference with nested labels (1 edema / 2 core / 3 enhancing, ellipsoids
with smoothly perturbed radii, as in ``bench_hd95.py``) plus two satellite lesions (one under the
50-voxel lesion threshold); the prediction is another perturbation, shifted by a voxel or two,
with small false-positive blobs. Both are written as ``.nii.gz`` and evaluated by
``nnunet_deconver.evaluation.case.evaluate_case`` exactly as ``nnunet-deconver evaluate`` does:
complete read and checks of both files, then Dice / HD95 and the BraTS 2023 lesion-wise and legacy
figures for ET, TC and WT. The read and the metrics are also timed apart.

Run: ``python benchmarks/bench_evaluation.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile

import numpy as np

from _machine import cpu_model
import _repo  # noqa: F401  (the working tree's nnunet_deconver, not an installed copy)
from bench_hd95 import median_time, perturbed_ellipsoid

SHAPE = (240, 240, 155)
REGIONS = {"whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}


def brats_like(rng: np.random.Generator, shift: np.ndarray) -> np.ndarray:
    centre = np.array([120.0, 110.0, 80.0]) + shift
    seg = np.zeros(SHAPE, np.uint8)
    seg[perturbed_ellipsoid(rng, centre, (38, 32, 26))] = 1
    seg[perturbed_ellipsoid(rng, centre, (20, 17, 14))] = 2
    seg[perturbed_ellipsoid(rng, centre, (12, 10, 8))] = 3
    g = np.indices((9, 9, 9)) - 4
    for c, r in (((60, 60, 60), 4), ((180, 170, 110), 2)):  # satellites: 257 and 33 voxels
        sl = tuple(slice(ci - 4, ci + 5) for ci in c)
        seg[sl][(g ** 2).sum(0) <= r * r] = 3
    return seg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import SimpleITK as sitk
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    from nnunet_deconver.evaluation.case import CaseTask, Settings, evaluate_case
    from nnunet_deconver.evaluation.penalty import EmptyPenalty
    from nnunet_deconver.evaluation.reading import read_segmentation
    from nnunet_deconver.evaluation.targets import Target

    rng = np.random.default_rng(0)
    ref = brats_like(rng, np.zeros(3))
    pred = brats_like(rng, rng.integers(-2, 3, 3).astype(float))
    pred[20:24, 30:34, 40:44] = 2  # false positives
    pred[200:202, 200:203, 20:22] = 3
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs visible, load average "
          f"{os.getloadavg()[0]:.1f}; {platform.platform()}; numpy {np.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, arr in (("ref", ref), ("pred", pred)):
            files[name] = os.path.join(tmp, f"{name}.nii.gz")
            sitk.WriteImage(sitk.GetImageFromArray(arr), files[name], True)
        targets = tuple(Target(n, tuple(v)) for n, v in REGIONS.items())
        allowed = frozenset({0, 1, 2, 3})
        reader = SimpleITKIO()

        def read_both() -> None:
            read_segmentation(reader, files["ref"], allowed, "reference")
            read_segmentation(reader, files["pred"], allowed, "prediction")

        def evaluate(paper: bool, challenge: str | None):
            settings = Settings(targets, None, allowed, EmptyPenalty.parse("brats"), "directed-max", paper, challenge)
            result = evaluate_case(CaseTask("all", "case", files["pred"], files["ref"], reader, settings))
            assert result.error is None, result.error
            return result

        rows = []
        for label, run in (("read + check both files only", read_both),
                           ("paper metrics (DSC, HD95)", lambda: evaluate(True, None)),
                           ("challenge metrics (BraTS 2023)", lambda: evaluate(False, "brats23")),
                           ("all metrics", lambda: evaluate(True, "brats23"))):
            seconds, result = median_time(run, args.repeats)
            rows.append((label, seconds))
        print(f"volume {SHAPE}, median of {args.repeats} runs, one process\n")
        print(f"{'what':34s} {'seconds':>8s}")
        for label, t in rows:
            print(f"{label:34s} {t:8.2f}")
        print("\nfigures of the last run (all metrics):")
        for r in result.targets:
            c = r.challenge
            print(f"  {r.target:16s} DSC {r.dice:.4f} HD95 {r.hd95:7.3f} | lesion-wise DSC {c['lesionwise_dice']:.4f} "
                  f"HD95 {c['lesionwise_hd95']:7.3f} ({c['n_lesions']} lesions, {c['n_missed_lesions']} missed, "
                  f"{c['n_false_positive_lesions']} FP)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
