"""End-to-end tests of ``nnunet-deconver evaluate`` / ``evaluate-folders`` on synthetic trees.

Two synthetic five-fold nnU-Net results trees with real NIfTI files written by SimpleITK: a
BraTS-like region-based data set (labels 1, 2, 3; regions WT = {1,2,3}, TC = {2,3}, ET = {3})
and a binary one. Expected figures are computed in this file from the arrays that were written,
with the brute-force Dice/HD95 of ``test_evaluation_metrics`` (not with the code under test).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import run_command
from test_evaluation_metrics import brute_dice, brute_hd95, diagonal

from nnunet_deconver.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
TRAINER = "nnUNetTrainerDeconver"
PLANS = "nnUNetPlans"
CONFIG = "3d_fullres"

BRATS_LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
BRATS_REGIONS = {"whole tumor": (1, 2, 3), "tumor core": (2, 3), "enhancing tumor": (3,)}
BINARY_LABELS = {"background": 0, "lesion": 1}


# ---------------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------------


def _ellipsoid(shape, centre, radii):
    g = np.indices(shape).astype(np.float64)
    return sum(((gi - c) / r) ** 2 for gi, c, r in zip(g, centre, radii)) <= 1.0


def _brats_like(rng, shape):
    """Nested labels: 1 outside, 2 inside, 3 innermost (array axes z, y, x)."""
    c = np.array([rng.uniform(0.35, 0.65) * n for n in shape])
    r = np.array([rng.uniform(0.2, 0.3) * n for n in shape])
    seg = np.zeros(shape, dtype=np.uint8)
    seg[_ellipsoid(shape, c, r)] = 1
    seg[_ellipsoid(shape, c + rng.normal(0, 0.6, 3), r * 0.65)] = 2
    seg[_ellipsoid(shape, c + rng.normal(0, 0.6, 3), r * 0.35)] = 3
    return seg


def _perturb(rng, seg, labels):
    """A 'prediction': the reference shifted by a voxel or two and with some labels flipped."""
    pred = np.roll(seg, tuple(int(s) for s in rng.integers(-1, 2, seg.ndim)), axis=tuple(range(seg.ndim)))
    noise = rng.random(seg.shape) < 0.01
    pred[noise] = rng.choice(labels, size=int(noise.sum()))
    return pred.astype(np.uint8)


def _write_nifti(arr: np.ndarray, path: Path, spacing_xyz) -> None:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(tuple(float(s) for s in spacing_xyz))
    sitk.WriteImage(img, str(path))


def build_tree(root_env: dict, dataset_id: int, name: str, kind: str, n_cases: int = 10,
               seed: int = 0) -> dict:
    """Write raw labelsTr, dataset.json, splits_final.json and five folds' validation predictions.

    Returns the in-memory arrays: {case: (pred, ref, spacing_zyx, fold)}.
    """
    rng = np.random.default_rng(seed)
    ds = f"Dataset{dataset_id:03d}_{name}"
    raw = Path(root_env["nnUNet_raw"]) / ds
    (raw / "labelsTr").mkdir(parents=True)
    labels = BRATS_LABELS if kind == "brats" else BINARY_LABELS
    dj = {"channel_names": {"0": "T1"}, "labels": labels, "numTraining": n_cases, "file_ending": ".nii.gz"}
    if kind == "brats":
        dj["regions_class_order"] = [1, 2, 3]
    (raw / "dataset.json").write_text(json.dumps(dj))
    model = Path(root_env["nnUNet_results"]) / ds / f"{TRAINER}__{PLANS}__{CONFIG}"
    cases = [f"{name.lower()}_{i:03d}" for i in range(n_cases)]
    splits = [{"train": [c for j, c in enumerate(cases) if j % 5 != k],
               "val": [c for j, c in enumerate(cases) if j % 5 == k]} for k in range(5)]
    pre = Path(root_env["nnUNet_preprocessed"]) / ds
    pre.mkdir(parents=True)
    (pre / "splits_final.json").write_text(json.dumps(splits))
    data = {}
    for j, case in enumerate(cases):
        fold = j % 5
        shape = tuple(int(s) for s in rng.integers(12, 18, 3))
        spacing_xyz = (float(rng.choice([0.8, 1.0])), 1.0, float(rng.choice([1.5, 2.0])))
        if kind == "brats":
            ref = _brats_like(rng, shape)
            pred = _perturb(rng, ref, [0, 1, 2, 3])
        else:
            ref = _ellipsoid(shape, [n / 2 for n in shape], [n / 4 for n in shape]).astype(np.uint8)
            pred = _perturb(rng, ref, [0, 1])
        if j == 1:
            pred[:] = 0  # one-empty: HD95 penalty (diagonal), Dice 0
        if j == 2 and kind == "brats":
            ref[ref == 3] = 2  # no ET in the reference ...
            pred[pred == 3] = 2  # ... nor in the prediction: both empty for ET
        _write_nifti(ref, raw / "labelsTr" / f"{case}.nii.gz", spacing_xyz)
        val = model / f"fold_{fold}" / "validation"
        val.mkdir(parents=True, exist_ok=True)
        _write_nifti(pred, val / f"{case}.nii.gz", spacing_xyz)
        data[case] = (pred, ref, tuple(spacing_xyz[::-1]), fold)
    shutil.copy(raw / "dataset.json", model / "dataset.json")
    return {"dataset": ds, "model": model, "raw": raw, "data": data, "cases": cases}


def expected_case_metrics(pred, ref, spacing, regions):
    out = {}
    for name, values in regions.items():
        p = np.isin(pred, values)
        r = np.isin(ref, values)
        out[name] = (brute_dice(p, r), brute_hd95(p, r, spacing, diagonal(ref.shape, spacing)))
    return out


def expected_summary(data: dict, regions: dict, drop_cases=(), drop_folds=()):
    """Fold means, mean/std (ddof=1) over folds, with an Avg column when several regions."""
    per_fold: dict[int, list[dict]] = {}
    for case, (pred, ref, sp, fold) in data.items():
        if case in drop_cases or fold in drop_folds:
            continue
        m = expected_case_metrics(pred, ref, sp, regions)
        if len(regions) > 1:
            m["Avg"] = (np.mean([v[0] for v in m.values()]), np.mean([v[1] for v in m.values()]))
        per_fold.setdefault(fold, []).append(m)
    cols = list(regions) + (["Avg"] if len(regions) > 1 else [])
    fold_means = {f: {c: (np.mean([m[c][0] for m in ms]), np.mean([m[c][1] for m in ms])) for c in cols}
                  for f, ms in per_fold.items()}
    overall = {}
    for c in cols:
        d = [fold_means[f][c][0] for f in sorted(fold_means)]
        h = [fold_means[f][c][1] for f in sorted(fold_means)]
        overall[c] = {"dice": (np.mean(d), np.std(d, ddof=1)), "hd95": (np.mean(h), np.std(h, ddof=1))}
    return per_fold, fold_means, overall


def run_cli_inprocess(argv: list[str]) -> int:
    return cli_main(argv)


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_crossval_brats_like_regions_with_missing_case(nnunet_env, capsys):
    tree = build_tree(nnunet_env, 101, "BratsLike", "brats", seed=1)
    # a missing case: fold 1's second case has no prediction
    missing = tree["cases"][6]
    assert tree["data"][missing][3] == 1
    (tree["model"] / "fold_1" / "validation" / f"{missing}.nii.gz").unlink()

    code = run_cli_inprocess(["evaluate", "101", "-tr", TRAINER, "-c", CONFIG, "-j", "1",
                              "--compare-paper", "brats23", "--kernel", "3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert missing in captured.err and "without prediction" in captured.err

    out = tree["model"] / "crossval_deconver_eval"
    summary = json.loads((out / "summary.json").read_text())
    per_fold, fold_means, overall = expected_summary(tree["data"], BRATS_REGIONS, drop_cases={missing})
    stats = summary["statistics"]
    assert summary["region_based"] is True
    # compared with the paper: columns in the paper's order ET, TC, WT
    assert stats["columns"] == ["enhancing tumor", "tumor core", "whole tumor", "Avg"]
    for f in range(5):
        entry = stats["folds"][str(f)]
        assert entry["n_cases"] == len(per_fold[f])
        for c, (d, h) in fold_means[f].items():
            assert entry["dice"][c] == pytest.approx(d, abs=1e-9)
            assert entry["hd95"][c] == pytest.approx(h, abs=1e-6)
    assert stats["folds"]["1"]["n_cases"] == 1
    of = stats["over_folds"]
    assert of["n_folds"] == 5 and of["n_cases"] == 9
    for c, v in overall.items():
        assert of["dice"][c]["mean"] == pytest.approx(v["dice"][0], abs=1e-9)
        assert of["dice"][c]["std"] == pytest.approx(v["dice"][1], abs=1e-9)
        assert of["hd95"][c]["mean"] == pytest.approx(v["hd95"][0], abs=1e-6)
        assert of["hd95"][c]["std"] == pytest.approx(v["hd95"][1], abs=1e-6)
    assert summary["missing"]["missing_cases"]["1"] == [missing]
    assert summary["missing"]["references_without_prediction"] == [missing]

    # CSV: one row per case x region x fold, values per case equal the brute-force ones
    with open(out / "per_case.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 * 3
    for r in rows:
        pred, ref, sp, fold = tree["data"][r["case"]]
        assert int(r["fold"]) == fold
        d, h = expected_case_metrics(pred, ref, sp, {r["target"]: BRATS_REGIONS[r["target"]]})[r["target"]]
        assert float(r["dice"]) == pytest.approx(d, abs=1e-12)
        assert float(r["hd95"]) == pytest.approx(h, abs=1e-6)
    # conventions end to end: case 1 has an empty prediction, case 2 no ET anywhere
    by = {(r["case"], r["target"]): r for r in rows}
    c1, c2 = tree["cases"][1], tree["cases"][2]
    _, ref1, sp1, _ = tree["data"][c1]
    assert float(by[c1, "whole tumor"]["dice"]) == 0.0
    assert float(by[c1, "whole tumor"]["hd95"]) == pytest.approx(diagonal(ref1.shape, sp1))
    assert float(by[c2, "enhancing tumor"]["dice"]) == 1.0
    assert float(by[c2, "enhancing tumor"]["hd95"]) == 0.0

    # Markdown: paper layout, case counts, paper row mapped to the right columns, missing note
    md = (out / "table.md").read_text()
    assert md == summary["markdown"]
    assert "| Fold | Cases | DSC (%) enhancing tumor | DSC (%) tumor core | DSC (%) whole tumor | DSC (%) Avg" in md
    assert "HD95 (mm) Avg |" in md
    assert f"| 1 | 1 | {100 * fold_means[1]['enhancing tumor'][0]:.2f} |" in md
    assert "| **Mean ± std over 5 folds** | 9 |" in md
    assert "| Deconver (3×3×3), paper Table II | — | 87.01 | 91.56 | 93.42 | 90.66 | 3.30 | 3.80 | 5.63 | 4.45 |" in md
    diff_et = 100 * overall["enhancing tumor"]["dice"][0] - 87.01
    assert f"| Difference (this − paper) |  | {diff_et:+.2f} |" in md
    assert missing in md


def test_crossval_binary_missing_fold_and_parallel(nnunet_env, capsys):
    tree = build_tree(nnunet_env, 102, "BinaryLike", "binary", seed=2)
    shutil.rmtree(tree["model"] / "fold_3")
    outdir = Path(nnunet_env["nnUNet_results"]) / "custom_out"
    code = run_cli_inprocess(["evaluate", tree["dataset"], "-tr", TRAINER, "-c", CONFIG, "-p", PLANS,
                              "-j", "2", "-o", str(outdir), "--compare-paper", "isles22"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "fold 3 missing" in captured.err
    summary = json.loads((outdir / "summary.json").read_text())
    regions = {"lesion": (1,)}
    per_fold, fold_means, overall = expected_summary(tree["data"], regions, drop_folds={3})
    stats = summary["statistics"]
    assert stats["columns"] == ["lesion"]
    assert stats["over_folds"]["n_folds"] == 4 and stats["over_folds"]["n_cases"] == 8
    assert stats["folds"]["3"]["n_cases"] == 0
    for f in (0, 1, 2, 4):
        assert stats["folds"][str(f)]["dice"]["lesion"] == pytest.approx(fold_means[f]["lesion"][0], abs=1e-9)
        assert stats["folds"][str(f)]["hd95"]["lesion"] == pytest.approx(fold_means[f]["lesion"][1], abs=1e-6)
    assert stats["over_folds"]["dice"]["lesion"]["mean"] == pytest.approx(overall["lesion"]["dice"][0], abs=1e-9)
    assert stats["over_folds"]["hd95"]["lesion"]["std"] == pytest.approx(overall["lesion"]["hd95"][1], abs=1e-6)
    assert "3" in summary["missing"]["missing_folds"]
    assert sorted(summary["missing"]["missing_cases"]["3"]) == sorted(
        c for c, v in tree["data"].items() if v[3] == 3)
    md = (outdir / "table.md").read_text()
    assert "| Fold | Cases | DSC (%) | HD95 (mm) |" in md
    assert "| 3 | 0 | missing | missing |" in md
    assert "| **Mean ± std over 4 folds** | 8 |" in md
    assert "| Deconver (3×3×3), paper Table I | — | 78.16 | 4.99 |" in md
    assert "| Deconver (5×5×5), paper Table I | — | 77.37 | 4.89 |" in md
    assert "Fold 3 missing" in md
    # --strict turns missing items into a failure
    assert run_cli_inprocess(["evaluate", "102", "-tr", TRAINER, "-c", CONFIG, "-j", "1", "-o",
                              str(outdir), "--strict"]) == 1


def test_evaluate_folders_and_2d_png(tmp_path, capsys):
    """evaluate-folders on 2D PNG natural images: spacing 1, HD95 in pixels."""
    from PIL import Image

    rng = np.random.default_rng(5)
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    pred_dir.mkdir()
    ref_dir.mkdir()
    dj = tmp_path / "dataset.json"
    dj.write_text(json.dumps({"channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "gland": 1},
                              "numTraining": 4, "file_ending": ".png", "name": "GlasLike"}))
    data = {}
    for i in range(4):
        shape = (int(rng.integers(20, 30)), int(rng.integers(20, 30)))
        ref = _ellipsoid(shape, [shape[0] / 2, shape[1] / 2], [shape[0] / 3, shape[1] / 4]).astype(np.uint8)
        pred = _perturb(rng, ref, [0, 1])
        if i == 2:
            pred[:] = 0  # one empty: --empty-hd95 123.5 below
        Image.fromarray(ref).save(ref_dir / f"img_{i}.png")
        if i != 3:  # img_3: reference without prediction
            Image.fromarray(pred).save(pred_dir / f"img_{i}.png")
            data[f"img_{i}"] = (pred, ref)
    Image.fromarray(np.ones((5, 5), np.uint8)).save(pred_dir / "stray.png")  # prediction without reference

    code = run_cli_inprocess(["evaluate-folders", str(pred_dir), str(ref_dir), "-djfile", str(dj), "-j", "1",
                              "--compare-paper", "glas", "--kernel", "5", "--empty-hd95", "123.5"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "img_3" in captured.err and "stray" in captured.err
    out = pred_dir / "deconver_eval"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["hd95_unit"] == "px"
    vals = [(brute_dice(p == 1, r == 1), brute_hd95(p == 1, r == 1, (1.0, 1.0), 123.5)) for p, r in data.values()]
    assert vals[2] == (0.0, 123.5)
    oc = summary["statistics"]["over_cases"]
    assert oc["n_cases"] == 3
    assert oc["dice"]["gland"]["mean"] == pytest.approx(np.mean([v[0] for v in vals]), abs=1e-9)
    assert oc["hd95"]["gland"]["mean"] == pytest.approx(np.mean([v[1] for v in vals]), abs=1e-6)
    assert oc["hd95"]["gland"]["std"] == pytest.approx(np.std([v[1] for v in vals], ddof=1), abs=1e-6)
    rows = summary["cases"]
    assert all(r["spacing"] == [1.0, 1.0] for r in rows)
    md = (out / "table.md").read_text()
    assert "| Set | Cases | DSC (%) | HD95 (px) |" in md
    assert "| Deconver (5×5), paper Table III | — | 92.12 | 60.49 |" in md
    assert "img_3" in md and "stray" in md


def test_evaluate_folders_2d_nifti_anisotropic(tmp_path, capsys):
    """2D NIfTI (nnU-Net reads it as one slice): evaluated in 2D with the in-plane spacing, in order."""
    rng = np.random.default_rng(7)
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    pred_dir.mkdir()
    ref_dir.mkdir()
    dj = tmp_path / "dataset.json"
    dj.write_text(json.dumps({"channel_names": {"0": "X"}, "labels": {"background": 0, "a": 1, "b": 2},
                              "numTraining": 3, "file_ending": ".nii.gz"}))
    spacing_xy = (0.5, 2.0)  # SimpleITK order (x, y); array axes are (y, x)
    expected = {"a": [], "b": []}
    for i in range(3):
        shape = (int(rng.integers(18, 26)), int(rng.integers(18, 26)))
        ref = np.zeros(shape, np.uint8)
        ref[_ellipsoid(shape, [shape[0] / 2, shape[1] / 3], [shape[0] / 4, shape[1] / 5])] = 1
        ref[_ellipsoid(shape, [shape[0] / 2, 2 * shape[1] / 3], [shape[0] / 5, shape[1] / 6])] = 2
        pred = _perturb(rng, ref, [0, 1, 2])
        _write_nifti(ref, ref_dir / f"c{i}.nii.gz", spacing_xy)
        _write_nifti(pred, pred_dir / f"c{i}.nii.gz", spacing_xy)
        sp = spacing_xy[::-1]
        for name, v in (("a", 1), ("b", 2)):
            expected[name].append((brute_dice(pred == v, ref == v),
                                   brute_hd95(pred == v, ref == v, sp, diagonal(shape, sp))))
    out = tmp_path / "out"
    assert run_cli_inprocess(["evaluate-folders", str(pred_dir), str(ref_dir), "-djfile", str(dj),
                              "-j", "1", "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["region_based"] is False and summary["hd95_unit"] == "mm"
    assert all(r["spacing"] == [2.0, 0.5] for r in summary["cases"])
    oc = summary["statistics"]["over_cases"]
    for name in ("a", "b"):
        assert oc["dice"][name]["mean"] == pytest.approx(np.mean([v[0] for v in expected[name]]), abs=1e-9)
        assert oc["hd95"][name]["mean"] == pytest.approx(np.mean([v[1] for v in expected[name]]), abs=1e-6)
    avg = np.mean([(expected["a"][i][1] + expected["b"][i][1]) / 2 for i in range(3)])
    assert oc["hd95"]["Avg"]["mean"] == pytest.approx(avg, abs=1e-6)


def test_clear_errors(nnunet_env, tmp_path, capsys):
    # results folder missing
    tree = build_tree(nnunet_env, 103, "Errs", "binary", n_cases=5, seed=3)
    assert run_cli_inprocess(["evaluate", "103", "-tr", "NoSuchTrainer", "-c", CONFIG]) == 1
    err = capsys.readouterr().err
    assert "results folder not found" in err and "NoSuchTrainer__nnUNetPlans__3d_fullres" in err
    # references missing
    shutil.rmtree(tree["raw"] / "labelsTr")
    assert run_cli_inprocess(["evaluate", "103", "-tr", TRAINER, "-c", CONFIG]) == 1
    err = capsys.readouterr().err
    assert "reference folder not found" in err and str(tree["raw"] / "labelsTr") in err
    # unknown data set id
    assert run_cli_inprocess(["evaluate", "999", "-tr", TRAINER, "-c", CONFIG]) == 1
    assert "999" in capsys.readouterr().err
    # dataset.json missing for evaluate-folders
    missing_dj = tmp_path / "nope" / "dataset.json"
    assert run_cli_inprocess(["evaluate-folders", str(tmp_path), str(tmp_path), "-djfile", str(missing_dj)]) == 1
    assert str(missing_dj) in capsys.readouterr().err
    # prediction folder missing
    assert run_cli_inprocess(["evaluate-folders", str(tmp_path / "nopred"), str(tmp_path), "-djfile",
                              str(missing_dj)]) == 1
    assert str(tmp_path / "nopred") in capsys.readouterr().err
    # region-based labels without regions_class_order
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"labels": {"background": 0, "wt": [1, 2], "tc": [2]}, "file_ending": ".nii.gz"}))
    (tmp_path / "p").mkdir()
    (tmp_path / "r").mkdir()
    assert run_cli_inprocess(["evaluate-folders", str(tmp_path / "p"), str(tmp_path / "r"), "-djfile", str(bad)]) == 1
    assert "regions_class_order" in capsys.readouterr().err
    # paper comparison that does not fit the data set
    tree2 = build_tree(nnunet_env, 104, "Fit", "binary", n_cases=5, seed=4)
    assert run_cli_inprocess(["evaluate", "104", "-tr", TRAINER, "-c", CONFIG, "--compare-paper", "brats23"]) == 1
    assert "regions" in capsys.readouterr().err
    assert not (tree2["model"] / "crossval_deconver_eval").exists()


def test_crossval_through_real_command(nnunet_env):
    """The installed console command on the region-based tree."""
    env = dict(nnunet_env)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    tree = build_tree(nnunet_env, 105, "BratsCmd", "brats", n_cases=5, seed=6)
    shutil.rmtree(tree["model"] / "fold_4")
    args = ["evaluate", "105", "-tr", TRAINER, "-c", CONFIG, "-j", "1"]
    proc = run_command(["nnunet-deconver", *args], env)
    assert "fold 4 missing" in proc.stderr
    summary = json.loads((tree["model"] / "crossval_deconver_eval" / "summary.json").read_text())
    per_fold, fold_means, overall = expected_summary(tree["data"], BRATS_REGIONS, drop_folds={4})
    of = summary["statistics"]["over_folds"]
    assert of["n_folds"] == 4 and of["n_cases"] == 4
    for c, v in overall.items():
        assert of["dice"][c]["mean"] == pytest.approx(v["dice"][0], abs=1e-9)
        assert of["hd95"][c]["mean"] == pytest.approx(v["hd95"][0], abs=1e-6)
    assert "Mean ± std over 4 folds" in proc.stdout


def test_paper_mapping_by_names_and_nesting():
    from nnunet_deconver.evaluation.comparison import match_paper_targets as _match_paper_targets
    from nnunet_deconver.evaluation.targets import Target
    from nnunet_deconver.paper import DATASETS

    row = DATASETS["brats23"].results[3]
    named = [Target("whole tumor", (1, 2, 3)), Target("tumor core", (2, 3)), Target("enhancing tumor", (3,))]
    assert _match_paper_targets(named, row) == {"ET": "enhancing tumor", "TC": "tumor core", "WT": "whole tumor"}
    # names that say nothing: nesting decides (ET smallest, WT largest)
    anonymous = [Target("A", (1, 2, 3)), Target("B", (3,)), Target("C", (2, 3))]
    assert _match_paper_targets(anonymous, row) == {"ET": "B", "TC": "C", "WT": "A"}


def test_hd95_definition_option(tmp_path, capsys):
    """--hd95-definition pooled / directed-max: each against the brute force of its definition."""
    rng = np.random.default_rng(11)
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    pred_dir.mkdir()
    ref_dir.mkdir()
    dj = tmp_path / "dataset.json"
    dj.write_text(json.dumps({"channel_names": {"0": "X"}, "labels": BINARY_LABELS, "file_ending": ".nii.gz"}))
    shape, spacing_xyz = (10, 14, 12), (0.7, 1.0, 2.5)
    sp = spacing_xyz[::-1]
    ref = _ellipsoid(shape, [5, 7, 6], [3, 5, 4]).astype(np.uint8)
    ref[0:2, 0:3, 0:2] = 1  # a far-away piece makes the two definitions differ
    pred = _perturb(rng, _ellipsoid(shape, [5, 7, 6], [3, 5, 4]).astype(np.uint8), [0, 1])
    _write_nifti(ref, ref_dir / "c.nii.gz", spacing_xyz)
    _write_nifti(pred, pred_dir / "c.nii.gz", spacing_xyz)
    values = {}
    for definition in ("pooled", "directed-max"):
        out = tmp_path / definition
        assert run_cli_inprocess(["evaluate-folders", str(pred_dir), str(ref_dir), "-djfile", str(dj), "-j", "1",
                                  "-o", str(out), "--hd95-definition", definition]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["hd95_definition"] == definition
        values[definition] = summary["cases"][0]["hd95"]
        expected = brute_hd95(pred == 1, ref == 1, sp, -1.0, definition=definition)
        assert values[definition] == pytest.approx(expected, abs=1e-6)
    assert values["directed-max"] > values["pooled"]
    assert "larger of the two directed 95th percentiles" in (tmp_path / "directed-max" / "table.md").read_text()
