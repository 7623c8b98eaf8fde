"""Challenge metrics (BraTS 2023 lesion-wise, ISLES'22, GlaS object level, FIVES) end to end.

Hand-built cases written as real files (NIfTI through SimpleITK, PNG through Pillow) and run through
``nnunet-deconver evaluate-folders``. Every expected value is derived in the comments from the
published definitions; distances that are tedious by hand use the brute-force surface distances of
test_evaluation_metrics (all pairwise distances), never the code under test.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from conftest import run_command
from test_evaluation_metrics import brute_hd95
from test_evaluation_references import tools_hd95

from nnunet_deconver.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]


def _nifti(arr: np.ndarray, path: Path, spacing_xyz) -> None:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(tuple(float(s) for s in spacing_xyz))
    sitk.WriteImage(img, str(path))


def _folders(tmp_path: Path, labels: dict, ending: str, name: str) -> tuple[Path, Path, Path]:
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    dj = {"channel_names": {"0": "X"}, "labels": labels, "numTraining": 1, "file_ending": ending, "name": name}
    if any(isinstance(v, list) for v in labels.values()):
        dj["regions_class_order"] = [1, 2, 3]
    (tmp_path / "dataset.json").write_text(json.dumps(dj))
    return pred, ref, tmp_path / "dataset.json"


def _cli(args: list[str]):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return run_command(["nnunet-deconver", *args], env)


def _rows(out: Path) -> dict[tuple[str, str], dict]:
    with open(out / "per_case.csv") as f:
        return {(r["case"], r["target"]): r for r in csv.DictReader(f)}


def _box(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


# ---------------------------------------------------------------------------------------------
# BraTS 2023 lesion-wise (3D, anisotropic)
# ---------------------------------------------------------------------------------------------

BRATS_LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}


def test_brats_lesionwise_through_the_command(tmp_path):
    pred_dir, ref_dir, dj = _folders(tmp_path, BRATS_LABELS, ".nii.gz", "Dataset502_BraTS23")
    shape, spacing_xyz = (40, 40, 20), (1.0, 1.0, 2.0)  # array axes (z, y, x): spacing (2, 1, 1)
    sp = spacing_xyz[::-1]
    # case b1: all tumour is label 3, so ET = TC = WT and the three regions give the same figures.
    l1 = _box(shape, (5, 5, 2), (10, 10, 6))      # 100 voxels, predicted exactly
    l2 = _box(shape, (25, 25, 10), (29, 29, 14))  # 64 voxels, missed
    l3 = _box(shape, (5, 30, 14), (7, 33, 17))    # 18 voxels, 36 mm^3 (<= 50): left out with its prediction
    fp = _box(shape, (30, 5, 2), (32, 7, 4))      # 8 voxels, > 3 voxels from every lesion: false positive
    ref1, pred1 = (l1 | l2 | l3), (l1 | l3 | fp)
    # scored lesions: l1 (Dice 1, HD95 0), l2 missed (0, 374), fp (0, 374)
    # lesion-wise Dice = 1/3, HD95 = 748/3; legacy Dice = 2 (100 + 18) / (126 + 182) = 236/308
    # case b2: two 64-voxel boxes 2 voxels apart merge under the 3-voxel dilation into one lesion of
    # 128 voxels; the prediction finds one box: Dice 2*64/192 = 2/3 (not (1 + 0) / 2 per box).
    a = _box(shape, (5, 5, 5), (9, 9, 9))
    b = _box(shape, (5, 5, 11), (9, 9, 15))
    ref2, pred2 = a | b, a
    # case b3: both empty: lesion-wise Dice 1 and HD95 0, legacy likewise
    empty = np.zeros(shape, bool)
    for case, (p, r) in {"b1": (pred1, ref1), "b2": (pred2, ref2), "b3": (empty, empty)}.items():
        _nifti(r * 3, ref_dir / f"{case}.nii.gz", spacing_xyz)
        _nifti(p * 3, pred_dir / f"{case}.nii.gz", spacing_xyz)
    out = tmp_path / "out"
    proc = _cli(["evaluate-folders", str(pred_dir), str(ref_dir), "-djfile", str(dj), "-o", str(out), "-j", "1"])
    rows = _rows(out)
    for region in ("whole tumor", "tumor core", "enhancing tumor"):
        r1, r2, r3 = rows["b1", region], rows["b2", region], rows["b3", region]
        assert float(r1["lesionwise_dice"]) == pytest.approx(1 / 3)
        assert float(r1["lesionwise_hd95"]) == pytest.approx(748 / 3)
        assert (r1["n_lesions"], r1["n_missed_lesions"], r1["n_false_positive_lesions"]) == ("2", "1", "1")
        assert float(r1["legacy_dice"]) == pytest.approx(236 / 308)
        # HD95 in the BraTS tools' convention, by the library they call (test_evaluation_references)
        assert float(r1["legacy_hd95"]) == pytest.approx(tools_hd95(pred1, ref1, sp), abs=1e-6)
        assert float(r2["lesionwise_dice"]) == pytest.approx(2 / 3)
        assert float(r2["lesionwise_hd95"]) == pytest.approx(tools_hd95(pred2, ref2, sp), abs=1e-6)
        assert r2["n_lesions"] == "1"
        assert (float(r3["lesionwise_dice"]), float(r3["lesionwise_hd95"])) == (1.0, 0.0)
        assert (float(r3["legacy_dice"]), float(r3["legacy_hd95"])) == (1.0, 0.0)
    # the data set name selects the challenge; --metrics defaults to all: paper columns too
    assert float(rows["b1", "whole tumor"]["dice"]) == pytest.approx(236 / 308)
    # ... whose HD95 is the paper's (surface voxels), not the tools'
    assert float(rows["b1", "whole tumor"]["hd95"]) == pytest.approx(brute_hd95(pred1, ref1, sp, 0.0), abs=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"] == "all" and summary["challenge"]["key"] == "brats23"
    oc = summary["challenge"]["statistics"]["over_cases"]
    assert oc["lesionwise_dice"]["enhancing tumor"]["mean"] == pytest.approx((1 / 3 + 2 / 3 + 1) / 3)
    md = (out / "table.md").read_text()
    assert "**BraTS 2023 (glioma), lesion-wise**" in md and "Lesion-wise DSC enhancing tumor" in md
    assert "Lesion-wise HD95 (mm) whole tumor" in md
    assert f"| **Mean ± std over cases** | 3 | {(1 / 3 + 2 / 3 + 1) / 3:.4f} ±" in md
    assert "Lesion-wise DSC" in proc.stdout


# ---------------------------------------------------------------------------------------------
# ISLES'22 (3D, anisotropic)
# ---------------------------------------------------------------------------------------------


def test_isles_four_figures(tmp_path, capsys):
    pred_dir, ref_dir, dj = _folders(tmp_path, {"background": 0, "lesion": 1}, ".nii.gz", "Dataset501_ISLES22")
    shape, spacing_xyz = (18, 18, 18), (1.0, 0.5, 2.0)  # 1 mm^3 per voxel: 0.001 ml
    ref = _box(shape, (2, 2, 2), (5, 5, 5)) | _box(shape, (10, 10, 10), (12, 12, 12))  # A (27), B (8)
    ref[15, 2, 2] = True  # C: one voxel
    pred = _box(shape, (3, 3, 3), (6, 6, 6))  # overlaps A in 2^3 = 8 voxels
    pred |= _box(shape, (15, 15, 15), (17, 17, 17))  # false positive, 8 voxels
    pred[0, 17, 17] = pred[1, 16, 16] = True  # touch at a corner only: one 26-connected false positive
    # TP = 1 (A), FN = 2 (B, C), FP = 2 -> F1 = 1 / (1 + 4/2) = 1/3
    # |R| = 36, |P| = 27 + 8 + 2 = 37, overlap 8 -> Dice 16/73; AVD = 1 voxel = 0.001 ml; ALCD |3 - 3| = 0
    _nifti(ref, ref_dir / "s1.nii.gz", spacing_xyz)
    _nifti(pred, pred_dir / "s1.nii.gz", spacing_xyz)
    empty = np.zeros(shape, np.uint8)
    _nifti(empty, ref_dir / "s2.nii.gz", spacing_xyz)  # both empty: Dice 1, F1 1, differences 0
    _nifti(empty, pred_dir / "s2.nii.gz", spacing_xyz)
    out = tmp_path / "out"
    assert cli_main(["evaluate-folders", str(pred_dir), str(ref_dir), "-djfile", str(dj), "-o", str(out),
                     "-j", "1", "--metrics", "challenge"]) == 0
    rows = _rows(out)
    r1, r2 = rows["s1", "lesion"], rows["s2", "lesion"]
    assert float(r1["dice"]) == pytest.approx(16 / 73)
    assert float(r1["abs_volume_diff_ml"]) == pytest.approx(0.001)
    assert float(r1["abs_lesion_count_diff"]) == 0
    assert float(r1["lesion_f1"]) == pytest.approx(1 / 3)
    assert [float(r2[k]) for k in ("dice", "abs_volume_diff_ml", "abs_lesion_count_diff", "lesion_f1")] == [1, 0, 0, 1]
    assert "hd95" not in r1  # --metrics challenge: no paper HD95 column
    md = (out / "table.md").read_text()
    assert "| Set | Cases | DSC | AVD (ml) | ALCD | Lesion F1 |" in md and "HD95 (mm) |" not in md.split("**ISLES")[0]


# ---------------------------------------------------------------------------------------------
# GlaS object level (2D PNG, instance maps)
# ---------------------------------------------------------------------------------------------


def _glas_case(tmp_path: Path):
    pred_dir, ref_dir, dj = _folders(tmp_path, {"background": 0, "gland": 1}, ".png", "Dataset503_GlaS")
    inst_dir = tmp_path / "instancesTr"
    inst_dir.mkdir()
    shape = (40, 40)
    inst = np.zeros(shape, np.uint16)
    inst[2:10, 2:10] = 1    # G1, 64 px
    inst[2:10, 10:18] = 2   # G2, 64 px, touching G1
    inst[25:35, 25:35] = 3  # G3, 100 px
    pred = np.zeros(shape, np.uint8)
    pred[2:10, 2:18] = 1    # S_a (128 px) covers G1 and G2
    pred[25:35, 25:29] = 1  # S_b (40 px) and S_c (40 px): G3 split in two
    pred[25:35, 31:35] = 1
    pred[36:38, 2:4] = 1    # S_d (4 px): overlaps nothing
    Image.fromarray((inst > 0).astype(np.uint8)).save(ref_dir / "g1.png")
    Image.fromarray(pred).save(pred_dir / "g1.png")
    Image.fromarray(inst).save(inst_dir / "g1.png")
    return pred_dir, ref_dir, dj, inst_dir


def test_glas_object_metrics_with_instances_through_the_command(tmp_path):
    pred_dir, ref_dir, dj, inst_dir = _glas_case(tmp_path)
    out = tmp_path / "out"
    _cli(["evaluate-folders", str(pred_dir), str(ref_dir), "-djfile", str(dj), "-o", str(out), "-j", "1",
          "--challenge", "glas", "--instances", str(inst_dir)])
    r = _rows(out)["g1", "gland"]
    # F1: S_a covers 64/64 of G1 (> 50%): TP. S_b, S_c cover 40/100 of G3: FP; S_d: FP. FN: G2, G3.
    assert float(r["object_f1"]) == pytest.approx(2 / (2 + 3 + 2))
    # Dice: G1, G2 -> S_a: 2*64/192 = 2/3; G3 -> S_b: 2*40/140 = 4/7; weights 64, 64, 100 of 228.
    #       S_a -> G1: 2/3; S_b, S_c -> G3: 4/7; S_d -> none: 0; weights 128, 40, 40, 4 of 212.
    dice_g = (64 * 2 / 3 + 64 * 2 / 3 + 100 * 4 / 7) / 228
    dice_s = (128 * 2 / 3 + 40 * 4 / 7 + 40 * 4 / 7 + 0) / 212
    assert float(r["object_dice"]) == pytest.approx((dice_g + dice_s) / 2)
    # Hausdorff (pixel sets): H(G1, S_a) = H(G2, S_a) = 8 (S_a's far column to the gland's near one),
    # H(G3, S_b) = H(G3, S_c) = 6; S_d overlaps nothing: nearest gland G3 at sqrt(11^2 + 31^2)
    # (G3's pixel (25, 34) to S_d's (36, 3); G1 would be sqrt(34^2 + 6^2), G2 sqrt(34^2 + 14^2)).
    h_g = (64 * 8 + 64 * 8 + 100 * 6) / 228
    h_s = (128 * 8 + 40 * 6 + 40 * 6 + 4 * math.sqrt(11 ** 2 + 31 ** 2)) / 212
    assert float(r["object_hausdorff"]) == pytest.approx((h_g + h_s) / 2)
    assert (r["n_true_positive_objects"], r["n_false_positive_objects"], r["n_false_negative_objects"]) == \
        ("1", "3", "2")
    md = (out / "table.md").read_text()
    assert "| Set | Cases | Object F1 | Object Dice | Object Hausdorff (px) |" in md


def test_glas_without_instances_uses_components_and_warns(tmp_path, capsys):
    pred_dir, ref_dir, dj, _ = _glas_case(tmp_path)
    out = tmp_path / "out"
    assert cli_main(["evaluate-folders", str(pred_dir), str(ref_dir), "-djfile", str(dj), "-o", str(out),
                     "-j", "1", "--metrics", "challenge"]) == 0
    assert "connected components" in capsys.readouterr().err
    r = _rows(out)["g1", "gland"]
    # touching G1 and G2 merge into one reference object of 128 px = S_a: TP; FP: S_b, S_c, S_d; FN: G3
    assert float(r["object_f1"]) == pytest.approx(2 / (2 + 3 + 1))


def test_glas_set_figures_pool_the_objects_of_all_images(tmp_path):
    """The challenge scores a set of images as one: TP/FP/FN and the area weights over all its objects."""
    pred_dir, ref_dir, dj, inst_dir = _glas_case(tmp_path)  # image g1 as above
    # image g2: one 16 px gland G4 = (rows 4..7, cols 4..7), predicted exactly (S_e): TP, Dice 1, H 0
    inst = np.zeros((40, 40), np.uint16)
    inst[4:8, 4:8] = 7
    Image.fromarray((inst > 0).astype(np.uint8)).save(ref_dir / "g2.png")
    Image.fromarray((inst > 0).astype(np.uint8)).save(pred_dir / "g2.png")
    Image.fromarray(inst).save(inst_dir / "g2.png")
    out = tmp_path / "out"
    _cli(["evaluate-folders", str(pred_dir), str(ref_dir), "-djfile", str(dj), "-o", str(out), "-j", "1",
          "--challenge", "glas", "--instances", str(inst_dir), "--metrics", "challenge"])
    rows = _rows(out)
    assert float(rows["g2", "gland"]["object_f1"]) == 1.0 and float(rows["g2", "gland"]["object_dice"]) == 1.0
    stats = json.loads((out / "summary.json").read_text())["challenge"]["statistics"]["over_cases"]
    # F1 over both images: TP 1 + 1, FP 3 + 0, FN 2 + 0 -> 4 / 9 (the mean of 2/7 and 1 would be 9/14)
    assert stats["object_f1"]["gland"]["mean"] == pytest.approx(4 / 9)
    # Dice: reference weights over 228 + 16 px, predicted weights over 212 + 16 px (g1's sums as above)
    dice_g = (64 * 2 / 3 + 64 * 2 / 3 + 100 * 4 / 7 + 16 * 1) / 244
    dice_s = (128 * 2 / 3 + 40 * 4 / 7 + 40 * 4 / 7 + 0 + 16 * 1) / 228
    assert stats["object_dice"]["gland"]["mean"] == pytest.approx((dice_g + dice_s) / 2)
    h_g = (64 * 8 + 64 * 8 + 100 * 6 + 16 * 0) / 244
    h_s = (128 * 8 + 40 * 6 + 40 * 6 + 4 * math.sqrt(11 ** 2 + 31 ** 2) + 16 * 0) / 228
    assert stats["object_hausdorff"]["gland"]["mean"] == pytest.approx((h_g + h_s) / 2)
    assert f"| **All cases, pooled** | 2 | {4 / 9:.4f} |" in (out / "table.md").read_text()


# ---------------------------------------------------------------------------------------------
# FIVES (2D PNG)
# ---------------------------------------------------------------------------------------------


def test_fives_pixel_figures(tmp_path):
    pred_dir, ref_dir, dj = _folders(tmp_path, {"background": 0, "vessel": 1}, ".png", "Dataset504_FIVES")
    ref = np.zeros((10, 10), np.uint8)
    pred = np.zeros((10, 10), np.uint8)
    ref[2:4] = 1   # rows 2, 3
    pred[3:5] = 1  # rows 3, 4: TP 10, FP 10, FN 10, TN 70
    Image.fromarray(ref).save(ref_dir / "f1.png")
    Image.fromarray(pred).save(pred_dir / "f1.png")
    out = tmp_path / "out"
    _cli(["evaluate-folders", str(pred_dir), str(ref_dir), "-djfile", str(dj), "-o", str(out), "-j", "1"])
    r = _rows(out)["f1", "vessel"]
    assert float(r["sensitivity"]) == pytest.approx(0.5)
    assert float(r["specificity"]) == pytest.approx(70 / 80)
    assert float(r["accuracy"]) == pytest.approx(0.8)
    assert float(r["dice"]) == pytest.approx(0.5)
    # every pixel of both two-row bands is a surface pixel; each direction: ten 0s and ten 1s ->
    # P95 (linear): h = 0.95 * 19 = 18.05 between two 1s: 1
    assert float(r["hd95"]) == pytest.approx(1.0)
    md = (out / "table.md").read_text()
    assert "| Set | Cases | DSC | HD95 (px) | Sensitivity | Specificity | Accuracy |" in md
    assert "| **Mean ± std over cases** | 1 | 0.5000 | 1.00 | 0.5000 | 0.8750 | 0.8000 |" in md


def test_evaluate_finds_the_converted_instance_maps(nnunet_env, tmp_path, capsys):
    """``evaluate`` on a GlaS-named data set: challenge chosen from the name, instancesTr/ from nnUNet_raw."""
    pred_dir, ref_dir, dj, inst_dir = _glas_case(tmp_path)
    ds = "Dataset503_GlaS"
    raw = Path(nnunet_env["nnUNet_raw"]) / ds
    raw.mkdir()
    os.rename(ref_dir, raw / "labelsTr")
    os.rename(inst_dir, raw / "instancesTr")
    (raw / "dataset.json").write_text(dj.read_text())
    val = Path(nnunet_env["nnUNet_results"]) / ds / "nnUNetTrainerDeconver__nnUNetPlans__2d" / "fold_0" / "validation"
    val.mkdir(parents=True)
    os.rename(pred_dir / "g1.png", val / "g1.png")
    assert cli_main(["evaluate", "503", "-tr", "nnUNetTrainerDeconver", "-c", "2d", "-f", "0", "-j", "1"]) == 0
    assert "connected components" not in capsys.readouterr().err
    summary = json.loads((val.parents[1] / "crossval_deconver_eval" / "summary.json").read_text())
    assert summary["challenge"]["key"] == "glas" and summary["instance_folder"] == str(raw / "instancesTr")
    row = summary["cases"][0]
    assert row["object_f1"] == pytest.approx(2 / 7)  # with real instances (components would give 1/3)
    assert "dice" in row and "hd95" in row  # --metrics all by default for a known data set
