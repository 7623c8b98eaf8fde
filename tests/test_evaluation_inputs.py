"""Bad inputs to ``evaluate-folders`` / ``evaluate``: each is refused (or warned about) in one clear line.

Every case checks the exit code, that the message names the offending file and says what is wrong,
that no traceback is printed, and that no result file was written. Most run the real command-line
entry point in this process (``nnunet_deconver.cli.main``); a few run the installed command.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from _unprivileged import permission_checked
from test_evaluation_report import TRAINER, CONFIG, build_tree

from nnunet_deconver.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
SHAPE = (6, 8, 10)  # array axes (z, y, x)
LABELS = {"background": 0, "lesion": 1}


def _nifti(arr, path: Path, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> Path:
    img = sitk.GetImageFromArray(np.asarray(arr))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return path


@pytest.fixture
def good(tmp_path) -> dict:
    """Two cases, predictions equal to their references; dataset.json declares labels 0 and 1."""
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    seg = np.zeros(SHAPE, np.uint8)
    seg[2:4, 2:5, 3:7] = 1
    for case in ("c1", "c2"):
        _nifti(seg, ref / f"{case}.nii.gz")
        _nifti(seg, pred / f"{case}.nii.gz")
    dj = tmp_path / "dataset.json"
    dj.write_text(json.dumps({"channel_names": {"0": "X"}, "labels": LABELS, "numTraining": 2,
                              "file_ending": ".nii.gz"}))
    return {"pred": pred, "ref": ref, "dj": dj, "out": tmp_path / "out", "seg": seg}


def _run(g: dict, capsys, *extra: str, code: int = 1) -> str:
    argv = ["evaluate-folders", str(g["pred"]), str(g["ref"]), "-djfile", str(g["dj"]), "-o", str(g["out"]),
            "-j", "1", *extra]
    assert cli_main(argv) == code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    if code == 1:
        assert not (Path(g["out"]) / "summary.json").exists() and not (Path(g["out"]) / "per_case.csv").exists()
        errors = [ln for ln in captured.err.splitlines() if ln.startswith("nnunet-deconver: error: ")]
        assert len(errors) == 1, captured.err
    return captured.err


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ---------------------------------------------------------------------- damaged files


def test_truncated_prediction(good, capsys):
    target = good["pred"] / "c1.nii.gz"
    # a longer volume, so that half of the gzip stream still decodes to a NIfTI header
    _nifti(np.zeros((40, 40, 40), np.uint8), target)
    _nifti(np.zeros((40, 40, 40), np.uint8), good["ref"] / "c1.nii.gz")
    raw = gzip.decompress(target.read_bytes())
    target.write_bytes(gzip.compress(raw[: len(raw) // 2]))  # complete gzip, short NIfTI
    err = _run(good, capsys)
    assert f"cannot read prediction {target}: truncated file" in err
    _truncate(target)  # now a truncated gzip stream
    err = _run(good, capsys)
    assert f"cannot read prediction {target}: damaged or truncated compressed file" in err


def test_truncated_reference(good, capsys):
    _truncate(good["ref"] / "c2.nii.gz")
    err = _run(good, capsys)
    assert f"reference {good['ref'] / 'c2.nii.gz'}" in err and "truncated" in err


def test_not_an_image(good, capsys):
    (good["pred"] / "c1.nii.gz").write_bytes(gzip.compress(b"this is not a NIfTI file at all" * 20))
    err = _run(good, capsys)
    assert f"cannot read prediction {good['pred'] / 'c1.nii.gz'}: not a NIfTI file" in err


def _run_permission_checked(g: dict) -> str:
    """The command in a process to which permission bits apply (also as root); returns stderr."""
    cmd = permission_checked([sys.executable, "-m", "nnunet_deconver", "evaluate-folders", str(g["pred"]),
                              str(g["ref"]), "-djfile", str(g["dj"]), "-o", str(g["out"]), "-j", "1"])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert not (Path(g["out"]) / "summary.json").exists()
    return proc.stderr


def test_unreadable_prediction_is_permission_denied(good):
    target = good["pred"] / "c1.nii.gz"
    target.chmod(0)
    try:
        err = _run_permission_checked(good)
    finally:
        target.chmod(0o644)
    assert f"cannot read prediction {target}: permission denied" in err


def test_folder_named_like_a_prediction(good, capsys):
    (good["pred"] / "c1.nii.gz").unlink()
    (good["pred"] / "c1.nii.gz").mkdir()
    err = _run(good, capsys)
    assert f"{good['pred'] / 'c1.nii.gz'} in the prediction folder is a folder, not a segmentation file" in err


# ---------------------------------------------------------------------- wrong values


def test_prediction_stored_as_0_255(good, capsys):
    _nifti(good["seg"] * 255, good["pred"] / "c2.nii.gz")
    err = _run(good, capsys)
    assert f"prediction {good['pred'] / 'c2.nii.gz'} holds label values that dataset.json does not declare" in err
    assert "(declared: 0, 1): 255" in err


def test_undeclared_label(good, capsys):
    seg = good["seg"].copy()
    seg[0, 0, 0] = 5
    _nifti(seg, good["pred"] / "c1.nii.gz")
    err = _run(good, capsys)
    assert f"{good['pred'] / 'c1.nii.gz'}" in err and "does not declare (declared: 0, 1): 5" in err


def test_fractional_values(good, capsys):
    _nifti(good["seg"].astype(np.float32) * 0.5, good["ref"] / "c1.nii.gz")
    err = _run(good, capsys)
    assert f"reference {good['ref'] / 'c1.nii.gz'} holds values that are not integer labels: 0.5" in err


# ---------------------------------------------------------------------- geometry


def test_size_mismatch(good, capsys):
    _nifti(np.zeros((6, 8, 11), np.uint8), good["pred"] / "c1.nii.gz")
    err = _run(good, capsys)
    assert f"prediction {good['pred'] / 'c1.nii.gz'} has size (6, 8, 11), its reference" in err


def test_spacing_mismatch(good, capsys):
    _nifti(good["seg"], good["pred"] / "c1.nii.gz", spacing=(1.0, 1.0, 1.5))
    err = _run(good, capsys)
    assert f"prediction {good['pred'] / 'c1.nii.gz'} has spacing (1.5, 1, 1), its reference" in err


def test_tiny_spacing_difference_is_accepted_and_printed_exactly(good, capsys):
    # 0.99999994 (float32 rounding) is within the tolerance; the CSV keeps its digits
    _nifti(good["seg"], good["ref"] / "c1.nii.gz", spacing=(0.99999994, 1.0, 1.0))
    _nifti(good["seg"], good["pred"] / "c1.nii.gz", spacing=(0.99999994, 1.0, 1.0))
    _run(good, capsys, code=0)
    text = (good["out"] / "per_case.csv").read_text()
    assert "1.0 1.0 0.99999994" in text


def test_origin_mismatch_is_a_warning(good, capsys):
    _nifti(good["seg"], good["pred"] / "c2.nii.gz", origin=(0.0, 5.0, 0.0))
    err = _run(good, capsys, code=0)
    assert f"WARNING: prediction {good['pred'] / 'c2.nii.gz'} has origin (0, 5, 0)" in err
    assert "has origin (0, 5, 0)" in (good["out"] / "table.md").read_text()


# ---------------------------------------------------------------------- dataset.json, -o, options


@pytest.mark.parametrize("content,expected", [
    ("[1, 2]", "must hold a JSON object, not list"),
    ('{"labels": "lesion", "file_ending": ".nii.gz"}', "'labels' must be a non-empty object"),
    ('{"labels": {"background": 0, "lesion": "one"}, "file_ending": ".nii.gz"}', "label 'lesion' must be an integer"),
    ('{"labels": {"background": 0, "lesion": 1}}', "has no 'file_ending' string"),
    ('{"labels": {"background": 0, "lesion": 1}, "file_ending": ".nii.gz",', "is not valid JSON: Expecting"),
])
def test_dataset_json_of_the_wrong_shape(good, capsys, content, expected):
    good["dj"].write_text(content)
    err = _run(good, capsys)
    assert str(good["dj"]) in err and expected in err


def test_dataset_json_is_a_folder(good, capsys, tmp_path):
    good["dj"] = tmp_path / "dj_folder"
    good["dj"].mkdir()
    err = _run(good, capsys)
    assert f"dataset.json {good['dj']} is a folder, not a file" in err


def test_output_that_is_a_file_is_refused_before_evaluating(good, capsys):
    good["out"].write_text("not a folder")
    err = _run(good, capsys)
    assert f"output folder {good['out']} is a file" in err
    assert "case/s" not in err and "s/case" not in err  # no progress bar: nothing was evaluated


def test_output_below_a_file(good, capsys):
    blocker = good["out"].parent / "blocker"
    blocker.write_text("x")
    good["out"] = blocker / "out"
    err = _run(good, capsys)
    assert f"output folder {good['out']} is not writable: a part of the path is a file" in err


def test_read_only_output(good):
    good["out"].mkdir()
    good["out"].chmod(0o555)
    try:
        err = _run_permission_checked(good)
    finally:
        good["out"].chmod(0o755)
    assert f"output folder {good['out']} is not writable: permission denied" in err


def test_missing_instance_folder_and_unknown_challenge(good, capsys, tmp_path):
    err = _run(good, capsys, "--challenge", "glas", "--instances", str(tmp_path / "nope"))
    assert f"instance map folder not found: {tmp_path / 'nope'}" in err
    err = _run(good, capsys, "--metrics", "challenge")
    assert "no challenge is known for this data set" in err and "--challenge" in err


# ---------------------------------------------------------------------- evaluate: splits_final.json


@pytest.mark.parametrize("content,expected", [
    ('{"train": [], "val": []}', "must hold a list of"),
    ('[{"train": ["a"], "val": "a"}]', "fold 0 is not an object with a \"val\" list"),
    ("[{", "is not valid JSON"),
])
def test_splits_of_the_wrong_shape(nnunet_env, capsys, content, expected):
    tree = build_tree(nnunet_env, 110, "Splits", "binary", n_cases=5, seed=3)
    splits = Path(nnunet_env["nnUNet_preprocessed"]) / tree["dataset"] / "splits_final.json"
    splits.write_text(content)
    assert cli_main(["evaluate", "110", "-tr", TRAINER, "-c", CONFIG, "-j", "1"]) == 1
    captured = capsys.readouterr()
    assert f"splits file {splits}" in captured.err and expected in captured.err
    assert "Traceback" not in captured.err
    assert not (tree["model"] / "crossval_deconver_eval").exists()


# ---------------------------------------------------------------------- the installed command


def test_installed_command_prints_one_line(good):
    _truncate(good["pred"] / "c1.nii.gz")
    good["dj"].write_text(json.dumps({"channel_names": {"0": "X"}, "labels": LABELS, "file_ending": ".nii.gz"}))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    exe = Path(sys.executable).parent / "nnunet-deconver"
    proc = subprocess.run([str(exe), "evaluate-folders", str(good["pred"]), str(good["ref"]), "-djfile",
                           str(good["dj"]), "-o", str(good["out"]), "-j", "1"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"cannot read prediction {good['pred'] / 'c1.nii.gz'}" in proc.stderr
    assert not good["out"].exists()


def test_printed_values_never_fake_a_perfect_score():
    from nnunet_deconver.evaluation.render import fmt

    assert fmt(0.99999994, 100) == "99.99999"  # not "100.00": digits until it differs from 100
    assert fmt(1.0, 100) == "100.00"
    assert fmt(0.99999994, 1, 4) == "0.9999999"
    assert fmt(0.00001, 100) == "0.001"  # not "0.00"
    assert fmt(0.0, 100) == "0.00" and fmt(0.98765, 100) == "98.77"


def test_prediction_folder_that_is_a_symlink_loop_or_a_file(good, capsys, tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    good["pred"] = loop
    err = _run(good, capsys)
    assert f"prediction folder {loop} is a broken or looping symbolic link" in err
    good["pred"] = good["dj"]
    err = _run(good, capsys)
    assert f"prediction folder {good['dj']} is a file, not a folder" in err


def test_truncated_png_prediction(tmp_path, capsys):
    from PIL import Image

    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    rng = np.random.default_rng(0)
    img = (rng.random((64, 64)) < 0.5).astype(np.uint8)  # noisy: compresses badly, truncation bites
    Image.fromarray(img).save(ref / "g.png")
    Image.fromarray(img).save(pred / "g.png")
    _truncate(pred / "g.png")
    dj = tmp_path / "dataset.json"
    dj.write_text(json.dumps({"channel_names": {"0": "R"}, "labels": LABELS, "file_ending": ".png"}))
    g = {"pred": pred, "ref": ref, "dj": dj, "out": tmp_path / "out"}
    err = _run(g, capsys)
    assert f"cannot read prediction {pred / 'g.png'}: " in err
