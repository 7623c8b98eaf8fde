"""BraTS 2023, GlaS and FIVES figures against the official tools' definitions, case by case.

* BraTS 2023 lesion-wise and legacy figures: cases built to hit each rule (the 18-neighbour
  dilation, the 50 mm^3 threshold, false positives near and far, nested and touching lesions),
  written as NIfTI files and run through ``nnunet-deconver evaluate-folders``; each expected value
  is worked out from the tools' definitions in the case's comment. HD95 values that are tedious by
  hand come from DeepMind's surface-distance library, which the tools call
  (:func:`test_evaluation_references.tools_hd95`), never from the code under test.
* BraTS on seeded random cases (anisotropic, specks, missed lesions): in memory, against the tools'
  procedure written here step by step on whole arrays (no crops), HD95 by the library.
* GlaS: the 3 x 3 column and an 8-connected prediction through the command; FIVES: its empty-mask
  conventions through the command.

The BraTS cases use label 3 only, so ET = TC = WT and the three regions share the figures. Arrays
are (z, y, x) as SimpleITK writes them; the tools read (x, y, z) with nibabel.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from conftest import run_command
from test_evaluation_references import tools_hd95

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# BraTS 2023 through the command
# ---------------------------------------------------------------------------------------------

BRATS_LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
REGIONS = ("whole tumor", "tumor core", "enhancing tumor")


def _box(shape, lo, hi) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def _write(tmp_path: Path, cases: dict, labels: dict, ending: str, name: str) -> tuple[Path, Path, Path]:
    """cases: name -> (pred, ref, spacing_xyz or None); files in ``ending``; returns the folders."""
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    pred_dir.mkdir()
    ref_dir.mkdir()
    dj = {"channel_names": {"0": "X"}, "labels": labels, "numTraining": len(cases), "file_ending": ending,
          "name": name}
    if any(isinstance(v, list) for v in labels.values()):
        dj["regions_class_order"] = [1, 2, 3]
    (tmp_path / "dataset.json").write_text(json.dumps(dj))
    for case, (pred, ref, spacing_xyz) in cases.items():
        for arr, folder in ((pred, pred_dir), (ref, ref_dir)):
            if ending == ".png":
                Image.fromarray(arr.astype(np.uint8)).save(folder / f"{case}{ending}")
            else:
                img = sitk.GetImageFromArray(arr.astype(np.uint8) * 3)
                img.SetSpacing(spacing_xyz)
                sitk.WriteImage(img, str(folder / f"{case}{ending}"))
    return pred_dir, ref_dir, tmp_path / "dataset.json"


def _evaluate(tmp_path: Path, pred_dir: Path, ref_dir: Path, dj: Path, *extra: str) -> dict:
    out = tmp_path / "out"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    run_command(["nnunet-deconver", "evaluate-folders", str(pred_dir), str(ref_dir), "-djfile", str(dj),
                 "-o", str(out), "-j", "1", "--metrics", "challenge", *extra], env)
    with open(out / "per_case.csv") as f:
        return {(r["case"], r["target"]): r for r in csv.DictReader(f)}


def _brats_cases() -> dict:
    """Each case: (pred, ref, spacing_xyz, expected). Expected: lesion-wise Dice, HD95, counts
    (lesions, missed, false positives), legacy Dice, HD95; a callable HD95 is the library's value.

    Dilation reach: 3 steps of the 18-neighbour element (each step moves by at most 1 along at most
    two axes) reach the offsets with every |component| <= 3 and |dx| + |dy| + |dz| <= 6.
    Weights of surface elements used below: a 4 x 4 x 4 cube has 9 corners inside each face whose
    block is half full (a unit square each), so its surface weighs more than 54 mm^2; a lone voxel's
    8 corners weigh 8 sqrt(3)/8 = 1.73 mm^2, under 5% of 54 + 1.73, so such a voxel's distances
    never reach the 95th percentile of a side that also holds the cube.
    """
    cube_shape, one = (20, 20, 20), (1.0, 1.0, 1.0)
    cube = _box(cube_shape, (4, 4, 4), (8, 8, 8))  # 64 voxels, far corner voxel (7, 7, 7)

    def speck(at):
        return cube | _box(cube_shape, at, tuple(a + 1 for a in at))

    cases = {}
    # A one-voxel prediction at offset (3, 3, 3) or (3, 3, 1) from the cube's corner: |.|_1 = 9 or 7
    # > 6, outside the dilated extent: a false positive. Lesions: the cube (Dice 1, HD95 0) and the
    # speck (0, 374): lesion-wise Dice 1/2, HD95 187. Legacy Dice 2 * 64 / 129; legacy HD95 0 (the
    # speck's weight is under 5% of the prediction's surface, the rest is at distance 0).
    for name, at in (("speck_333", (10, 10, 10)), ("speck_331", (10, 10, 8)), ("far_fp", (19, 19, 19))):
        cases[name] = (speck(at), cube, one, (0.5, 187.0, (1, 0, 1), 128 / 129, 0.0))
    # ... at offset (3, 3, 0): |.|_1 = 6, inside the extent: part of the lesion. Dice 2 * 64 / 129,
    # HD95 0 (as for the legacy figure above), no false positive.
    cases["speck_330"] = (speck((10, 10, 7)), cube, one, (128 / 129, 0.0, (1, 0, 0), 128 / 129, 0.0))
    # Two cubes whose facing corners are (7, 7, 7) apart: their extents (offsets up to 3 per axis,
    # |.|_1 <= 6 from each) do not meet, so they are two lesions (the full 26-neighbour element would
    # merge them). The prediction finds one: (1, 0) and (0, 374).
    far_cube = _box(cube_shape, (14, 14, 14), (18, 18, 18))
    cases["diagonal_pair"] = (cube, cube | far_cube, one, (0.5, 187.0, (2, 1, 0), 128 / 192, "library"))
    # Sizes at 1 mm: lesions of 49 (7x7x1), 50 (5x5x2) and 51 (17x3x1) voxels, 8 voxels apart in z.
    # 49 and 50 mm^3 are not > 50: left out; only the 51-voxel lesion counts.
    s = (30, 24, 24)
    l49, l50, l51 = _box(s, (2, 2, 2), (3, 9, 9)), _box(s, (10, 2, 2), (12, 7, 7)), _box(s, (20, 2, 2), (21, 19, 5))
    ref = l49 | l50 | l51
    # predicted 49 and 51, 50 missed: one lesion, found exactly; legacy Dice 2 * 100 / 250
    cases["sizes_50_missed"] = (l49 | l51, ref, one, (1.0, 0.0, (1, 0, 0), 0.8, "library"))
    # predicted 49 and 50, 51 missed: one lesion, missed; legacy Dice 2 * 99 / 249
    cases["sizes_51_missed"] = (l49 | l50, ref, one, (0.0, 374.0, (1, 1, 0), 198 / 249, "library"))
    # 1 x 1 x 3 mm (z 3 mm): a missed lesion of 30 voxels (90 mm^3) counts, a found one of 16
    # (48 mm^3) does not, a found one of 17 (51 mm^3) does: (0, 374) and (1, 0).
    s = (4, 20, 24)
    a30, b16, c17 = _box(s, (1, 2, 2), (3, 5, 7)), _box(s, (1, 2, 14), (2, 6, 18)), _box(s, (1, 14, 2), (2, 15, 19))
    cases["anisotropic"] = (b16 | c17, a30 | b16 | c17, (1.0, 1.0, 3.0),
                            (0.5, 187.0, (2, 1, 0), 2 * 33 / 96, "library"))
    # Nested: a 9^3 shell (386 voxels) and, 4 voxels inside, its centre voxel: the dilated centre
    # meets the dilated shell, one lesion of 387. The prediction is the shell: Dice 2 * 386 / 773;
    # HD95 0 (the centre's 8 corners are 3 mm from the shell's inner surface but weigh under 5%).
    s = (13, 13, 13)
    shell = _box(s, (2, 2, 2), (11, 11, 11)) & ~_box(s, (3, 3, 3), (10, 10, 10))
    centre = _box(s, (6, 6, 6), (7, 7, 7))
    cases["nested"] = (shell, shell | centre, one, (772 / 773, 0.0, (1, 0, 0), 772 / 773, 0.0))
    # Touching: two 4^3 cubes 12 voxels apart in x (two lesions) and one predicted bar 4 x 4 x 20
    # touching both: it belongs to both, and each lesion is scored against the whole bar: Dice
    # 2 * 64 / (64 + 320) = 1/3 each, no false positive; legacy Dice 2 * 128 / 448.
    s = (10, 10, 26)
    left, right = _box(s, (3, 3, 2), (7, 7, 6)), _box(s, (3, 3, 18), (7, 7, 22))
    bar = _box(s, (3, 3, 2), (7, 7, 22))
    cases["touching"] = (bar, left | right, one, (1 / 3, "library", (2, 0, 0), 256 / 448, "library"))
    # Both empty: Dice 1, HD95 0, lesion-wise and legacy; prediction only: one false positive.
    empty = np.zeros(cube_shape, bool)
    cases["empty"] = (empty, empty, one, (1.0, 0.0, (0, 0, 0), 1.0, 0.0))
    cases["pred_only"] = (cube, empty, one, (0.0, 374.0, (0, 0, 1), 0.0, 374.0))
    return cases


def test_brats_figures_equal_the_tools_definitions(tmp_path):
    cases = _brats_cases()
    pred_dir, ref_dir, dj = _write(tmp_path, {k: v[:3] for k, v in cases.items()}, BRATS_LABELS, ".nii.gz",
                                   "Dataset502_BraTS23")
    rows = _evaluate(tmp_path, pred_dir, ref_dir, dj)
    for case, (pred, ref, spacing_xyz, (lw_dice, lw_hd95, counts, legacy_dice, legacy_hd95)) in cases.items():
        sp = spacing_xyz[::-1]
        if lw_hd95 == "library":  # the touching case: both lesions against the whole bar
            lw_hd95 = tools_hd95(pred, ref & (np.arange(ref.shape[2]) < 13), sp)
        if legacy_hd95 == "library":
            legacy_hd95 = tools_hd95(pred, ref, sp)
        for region in REGIONS:
            r = rows[case, region]
            got = (float(r["lesionwise_dice"]), float(r["lesionwise_hd95"]),
                   (int(r["n_lesions"]), int(r["n_missed_lesions"]), int(r["n_false_positive_lesions"])),
                   float(r["legacy_dice"]), float(r["legacy_hd95"]))
            want = (lw_dice, lw_hd95, counts, legacy_dice, legacy_hd95)
            assert got[2] == want[2], (case, region, got, want)
            assert got[:2] + got[3:] == pytest.approx(want[:2] + want[3:], abs=1e-6), (case, region, got, want)
    # the library's values of the by-hand HD95 cases agree with the hand (checks the reasoning above)
    assert tools_hd95(*cases["speck_333"][:2], (1.0, 1.0, 1.0)) == 0.0
    assert tools_hd95(*cases["nested"][:2], (1.0, 1.0, 1.0)) == 0.0
    assert tools_hd95(cases["touching"][0], cases["touching"][1], (1.0, 1.0, 1.0)) > 0


# ---------------------------------------------------------------------------------------------
# GlaS through the command
# ---------------------------------------------------------------------------------------------


def test_glas_column_and_corner_connected_prediction(tmp_path):
    """Objects are the 8-connected components of each mask (no instance maps given here).

    column: the 3 x 3 image [[0,0,1],[0,0,1],[0,0,1]] as both prediction and reference: one object
    each, identical: F1 1, Dice 1, Hausdorff 0, TP 1, FP 0, FN 0.

    corner: reference glands G1 (rows 0-3, cols 0-3) and G2 (rows 0-3, cols 5-8); prediction S1
    (rows 0-3, cols 0-2) with a pixel (4, 3) that touches it only at a corner (8-connected: part of
    S1, 13 px) and S2 (rows 0-3, cols 6-8, 12 px). S1 covers 12 of G1's 16 px (> 50%): TP; S2 covers
    12 of G2's 16: TP; F1 1. Dice: G1-S1 2*12/(16+13) = 24/29, G2-S2 24/28; reference weights 16, 16
    of 32, predicted 13, 12 of 25: Dice_obj = 1/2 [(24/29 + 24/28) / 2 + (13 * 24/29 + 12 * 24/28) /
    25]. Hausdorff (pixel sets, every pixel within 1 of the other object): 1 for both pairs, so 1.
    (Touching glands with instance maps are in test_evaluation_challenge.)
    """
    column = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1]], np.uint8)
    ref = np.zeros((8, 9), np.uint8)
    ref[0:4, 0:4] = 1
    ref[0:4, 5:9] = 1
    pred = np.zeros((8, 9), np.uint8)
    pred[0:4, 0:3] = 1
    pred[0:4, 6:9] = 1
    pred[4, 3] = 1
    pred_dir, ref_dir, dj = _write(tmp_path, {"column": (column, column, None), "corner": (pred, ref, None)},
                                   {"background": 0, "gland": 1}, ".png", "Dataset503_GlaS")
    rows = _evaluate(tmp_path, pred_dir, ref_dir, dj)
    c, t = rows["column", "gland"], rows["corner", "gland"]
    assert (float(c["object_f1"]), float(c["object_dice"]), float(c["object_hausdorff"])) == (1.0, 1.0, 0.0)
    assert (c["n_true_positive_objects"], c["n_false_positive_objects"], c["n_false_negative_objects"]) == \
        ("1", "0", "0")
    assert float(t["object_f1"]) == 1.0
    assert float(t["object_dice"]) == pytest.approx(((24 / 29 + 24 / 28) / 2 + (13 * 24 / 29 + 12 * 24 / 28) / 25) / 2)
    assert float(t["object_hausdorff"]) == pytest.approx(1.0)
    assert (t["n_true_positive_objects"], t["n_false_positive_objects"], t["n_false_negative_objects"]) == \
        ("2", "0", "0")


def test_fives_empty_mask_conventions(tmp_path):
    """FIVES (no official code: its data paper's figures) on 10 x 10 images, default penalty.

    both empty: Dice 1, HD95 0; TP = FP = FN = 0, TN 100: sensitivity 1 (no reference pixel),
    specificity 1, accuracy 1. reference empty, 10 predicted pixels: Dice 0, HD95 the image
    diagonal sqrt(10^2 + 10^2); sensitivity 1, specificity 90/100, accuracy 0.9. both full: Dice 1,
    HD95 0; TN + FP = 0, specificity 1 (no background pixel); accuracy 1.
    """
    empty, row, full = np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8), np.ones((10, 10), np.uint8)
    row[4] = 1
    cases = {"both_empty": (empty, empty, None), "ref_empty": (row, empty, None), "full": (full, full, None)}
    pred_dir, ref_dir, dj = _write(tmp_path, cases, {"background": 0, "vessel": 1}, ".png", "Dataset504_FIVES")
    rows = _evaluate(tmp_path, pred_dir, ref_dir, dj)
    names = ("dice", "hd95", "sensitivity", "specificity", "accuracy")
    got = {case: tuple(float(rows[case, "vessel"][k]) for k in names) for case in cases}
    assert got["both_empty"] == (1.0, 0.0, 1.0, 1.0, 1.0)
    assert got["ref_empty"] == pytest.approx((0.0, 200 ** 0.5, 1.0, 0.9, 0.9))
    assert got["full"] == (1.0, 0.0, 1.0, 1.0, 1.0)


# ---------------------------------------------------------------------------------------------
# BraTS on seeded random cases: against the tools' procedure step by step
# ---------------------------------------------------------------------------------------------


def tools_brats(pred: np.ndarray, ref: np.ndarray, spacing_xyz) -> dict:
    """The BraTS 2023 tools' procedure, written here from its definition, step by step on whole
    (x, y, z) arrays, as the tools read them: no crops, every lesion and its dilation over the whole
    image, HD95 by DeepMind's library (infinite when a side is empty, then 374)."""
    import surface_distance
    from scipy import ndimage

    struct, full = ndimage.generate_binary_structure(3, 2), ndimage.generate_binary_structure(3, 3)
    pred_cc, _ = ndimage.label(pred, full)
    dil_cc, n_dil = ndimage.label(ndimage.binary_dilation(ref, struct, iterations=3), full)

    def hd(a, b):
        if not a.any() and not b.any():
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if not a.any() or not b.any():
                return 374.0  # the library's infinity, replaced by the tools
            d = surface_distance.compute_surface_distances(b, a, spacing_xyz)
            return float(surface_distance.compute_robust_hausdorff(d, 95))

    rows, matched = [], set()
    for k in range(1, n_dil + 1):
        gt = ref & (dil_cc == k)
        hits = set(np.unique(pred_cc[ndimage.binary_dilation(gt, struct, iterations=3)]).tolist()) - {0}
        matched |= hits
        found = np.isin(pred_cc, list(hits))
        volume = int(gt.sum()) * spacing_xyz[0] * spacing_xyz[1] * spacing_xyz[2]
        rows.append((volume, bool(hits), 2 * (found & gt).sum() / (found.sum() + gt.sum()), hd(found, gt)))
    kept = [r for r in rows if r[0] > 50]
    n_fp = len(set(np.unique(pred_cc).tolist()) - {0} - matched)
    n = len(kept) + n_fp
    return {"lesionwise_dice": sum(r[2] for r in kept) / n if n else 1.0,
            "lesionwise_hd95": (sum(r[3] for r in kept) + 374 * n_fp) / n if n else 0.0,
            "legacy_dice": 2 * (pred & ref).sum() / (pred.sum() + ref.sum()) if (pred.any() or ref.any()) else 1.0,
            "legacy_hd95": hd(pred, ref), "n_lesions": len(kept),
            "n_missed_lesions": sum(1 for r in kept if not r[1]), "n_false_positive_lesions": n_fp}


def test_brats_random_cases_equal_the_tools_procedure():
    from nnunet_deconver.evaluation.challenge.brats import brats_metrics

    rng = np.random.default_rng(23)
    for t in range(24):
        shape = (20, 32, 32)  # (z, y, x)
        spacing_xyz = [(1.0, 1.0, 1.0), (1.0, 1.0, 3.0), (0.9375, 0.9375, 1.2000000476837158)][t % 3]
        ref, pred = np.zeros(shape, bool), np.zeros(shape, bool)
        for _ in range(int(rng.integers(1, 8))):  # lesions: boxes of 1 to 7^3 voxels, some missed
            lo, size = rng.integers(0, shape), rng.integers(1, 8, 3)
            box = tuple(slice(a, a + int(n)) for a, n in zip(lo, size))
            ref[box] = True
            if rng.random() < 0.75:  # found, shifted by up to a voxel, a tenth of it lost
                shift = rng.integers(-1, 2, 3)
                pred[tuple(slice(max(b.start + int(d), 0), b.stop + int(d)) for b, d in zip(box, shift))] = True
        pred &= rng.random(shape) > 0.1
        for _ in range(int(rng.integers(0, 4))):  # one-voxel false positives, near or far
            pred[tuple(int(rng.integers(0, n)) for n in shape)] = True
        if t % 8 == 0:
            pred[:] = False
        got = brats_metrics(pred, ref, spacing_xyz[::-1])
        want = tools_brats(pred.T.copy(), ref.T.copy(), spacing_xyz)
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-6), (t, key, got, want)
