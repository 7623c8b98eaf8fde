"""Shared conversion machinery: stratified splits, quantile strata, atomic output folder, output
target, NIfTI scan, command-line wiring (``convert``, ``brats-labels``, the scripts' ``main``)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dataset_conversion import ConversionError, _target
from dataset_conversion._output import atomic_output_folder
from dataset_conversion._splits import quantile_strata, stratified_kfold
from nnunet_deconver.cli import brats_labels as brats_labels_command
from nnunet_deconver.cli import convert as convert_command
from nnunet_deconver.cli.reporting import report_errors
from nnunet_deconver.errors import DeconverError
from nnunet_deconver.paper import DATASETS

REPO = Path(__file__).resolve().parents[1]


def _strata(sizes: dict[str, int]) -> dict[str, str]:
    """{case: stratum} with ``sizes[stratum]`` cases per stratum, inserted interleaved."""
    cases = {}
    for stratum, n in sizes.items():
        for i in range(n):
            cases[f"{stratum}-{i:03d}"] = stratum
    return dict(sorted(cases.items(), key=lambda kv: kv[0][::-1]))


@pytest.mark.parametrize("sizes", [
    {"benign": 74, "malignant": 91},                # GlaS-like (165 images)
    {"A": 200, "D": 200, "G": 200, "N": 200},       # FIVES-like
    {"Q1": 63, "Q2": 62, "Q3": 63, "Q4": 62},       # ISLES-like quartiles of 250
    {"x": 3, "y": 1, "z": 7},                       # strata smaller than the number of folds
])
def test_stratified_kfold_every_case_once_and_strata_balanced(sizes):
    strata = _strata(sizes)
    splits = stratified_kfold(strata, 5, seed=7)
    assert len(splits) == 5
    val_cases = [c for split in splits for c in split["val"]]
    assert sorted(val_cases) == sorted(strata), "every case in exactly one validation fold"
    for split in splits:
        assert set(split["train"]) | set(split["val"]) == set(strata)
        assert not set(split["train"]) & set(split["val"])
        counts = Counter(strata[c] for c in split["val"])
        for stratum, n in sizes.items():
            assert abs(counts[stratum] - n / 5) < 1, (stratum, counts[stratum], n)
    fold_sizes = [len(s["val"]) for s in splits]
    assert max(fold_sizes) - min(fold_sizes) <= 1


def test_stratified_kfold_is_deterministic_and_seeded():
    strata = _strata({"a": 20, "b": 13})
    first = stratified_kfold(strata, 5, seed=3)
    assert stratified_kfold(dict(reversed(list(strata.items()))), 5, seed=3) == first, "input order must not matter"
    assert stratified_kfold(strata, 5, seed=3) == first
    assert stratified_kfold(strata, 5, seed=4) != first
    assert all(split["val"] == sorted(split["val"]) for split in first)


def test_stratified_kfold_needs_enough_cases():
    with pytest.raises(ConversionError, match="4 cases cannot be split into 5"):
        stratified_kfold({"a": "x", "b": "x", "c": "y", "d": "y"}, 5)


def test_quantile_strata_ranks_with_deterministic_ties():
    values = {"h": 8.0, "a": 1.0, "c": 3.0, "b": 2.0, "e": 5.0, "d": 4.0, "g": 7.0, "f": 6.0}
    assert quantile_strata(values, 4, "Q") == {"a": "Q1", "b": "Q1", "c": "Q2", "d": "Q2", "e": "Q3", "f": "Q3",
                                               "g": "Q4", "h": "Q4"}
    ties = {"c": 0.0, "a": 0.0, "b": 0.0, "d": 1.0, "e": 2.0, "f": 3.0}
    assert quantile_strata(ties, 3, "T") == {"a": "T1", "b": "T1", "c": "T2", "d": "T2", "e": "T3", "f": "T3"}


def test_atomic_output_folder_success_and_overwrite(tmp_path):
    target = tmp_path / "Dataset900_X"
    with atomic_output_folder(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and not target.exists()
        (tmp / "new.txt").write_text("1")
    assert (target / "new.txt").read_text() == "1"
    with pytest.raises(ConversionError, match="already exists"):
        with atomic_output_folder(target):
            pass
    with atomic_output_folder(target, overwrite=True) as tmp:
        (tmp / "newer.txt").write_text("2")
        assert (target / "new.txt").exists(), "the old data set stays until the new one is complete"
    assert sorted(p.name for p in target.iterdir()) == ["newer.txt"], "no mix of old and new files"
    assert [p.name for p in tmp_path.iterdir()] == ["Dataset900_X"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_output_folder_failure_keeps_previous_state(tmp_path, error):
    target = tmp_path / "Dataset900_X"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(type(error)):
        with atomic_output_folder(target, overwrite=True) as tmp:
            (tmp / "half.txt").write_text("partial")
            raise error
    assert [p.name for p in tmp_path.iterdir()] == ["Dataset900_X"], "temporary folder removed"
    assert [p.name for p in target.iterdir()] == ["old.txt"]


def test_conversion_error_is_a_project_error():
    assert issubclass(ConversionError, DeconverError)


@pytest.mark.parametrize("unset", [None, ""], ids=["absent", "empty"])
def test_output_root_required(tmp_path, monkeypatch, unset):
    if unset is None:
        monkeypatch.delenv("nnUNet_raw", raising=False)
    else:
        monkeypatch.setenv("nnUNet_raw", unset)
    with pytest.raises(ConversionError, match="nnUNet_raw is not set"):
        _target.resolve_output_root(None)
    assert _target.resolve_output_root(tmp_path) == tmp_path


def test_output_root_follows_the_environment_of_the_moment(tmp_path, monkeypatch):
    """nnU-Net's paths are read when asked, not when first imported: each test sets its own."""
    for name in ("first", "second"):
        monkeypatch.setenv("nnUNet_raw", str(tmp_path / name))
        assert _target.resolve_output_root(None) == tmp_path / name


def test_same_id_other_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    (tmp_path / "Dataset503_Other").mkdir()
    problem = _target.output_target_problem(tmp_path / "Dataset503_GlaS", overwrite=False)
    assert problem is not None and "Dataset503_Other" in problem and "--dataset-id" in problem
    assert _target.output_target_problem(tmp_path / "Dataset513_GlaS", overwrite=False) is None


def test_same_id_in_nnunet_preprocessed_is_refused(tmp_path, monkeypatch):
    raw, preprocessed = tmp_path / "raw", tmp_path / "preprocessed"
    raw.mkdir()
    (preprocessed / "Dataset503_Other").mkdir(parents=True)
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    assert _target.output_target_problem(raw / "Dataset503_GlaS", overwrite=False) is None
    monkeypatch.setenv("nnUNet_preprocessed", str(preprocessed))
    problem = _target.output_target_problem(raw / "Dataset503_GlaS", overwrite=False)
    assert problem is not None and str(preprocessed) in problem and "Dataset503_Other" in problem


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnunet-deconver")
    subparsers = parser.add_subparsers(dest="command", required=True)
    convert_command.register(subparsers)
    brats_labels_command.register(subparsers)
    return parser


def test_register_adds_convert_and_brats_labels(tmp_path):
    parser = _parser()
    args = parser.parse_args(["convert", "glas", str(tmp_path), "--dataset-id", "42", "--dry-run", "-j", "3",
                              "--seed", "9", "--overwrite", "--output-root", str(tmp_path / "out")])
    assert (args.dataset, args.raw_folder, args.dataset_id, args.dry_run, args.num_workers, args.seed,
            args.overwrite, args.output_root) == ("glas", tmp_path, 42, True, 3, 9, True, tmp_path / "out")
    assert callable(args.func) and args.interrupted_note == "; stopped before completion, nothing was written"
    args = parser.parse_args(["brats-labels", "in", "out", "-j", "1"])
    assert (args.input_folder, args.output_folder, args.num_workers) == (Path("in"), Path("out"), 1)
    assert callable(args.func) and args.interrupted_note == "; stopped before completion, nothing was written"
    for bad in (["convert", "msd", "x"], ["convert", "glas", "x", "--dataset-id", "1000"],
                ["convert", "glas", "x", "-j", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_convert_subcommand_reports_errors_without_traceback(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    parser = _parser()
    code = report_errors("nnunet-deconver", lambda: parser.parse_args(
        ["convert", "fives", str(tmp_path / "empty"), "--output-root", str(tmp_path)]))
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("nnunet-deconver: error: ") and "does not hold the FIVES data set: it is empty" in err
    assert "Original" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_script_main_reports_errors_under_the_module_name(tmp_path, capsys):
    from dataset_conversion.Dataset504_FIVES import main

    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--output-root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Dataset504_FIVES: error: ") and "does not hold the FIVES data set" in err, err


@pytest.mark.parametrize("key", list(DATASETS))
def test_convert_finds_each_script_by_the_paper_registry(key, monkeypatch):
    """``convert KEY`` runs ``dataset_conversion.<folder name>``'s DEFINITION, whose id, name and
    title are the paper's."""
    seen = []
    monkeypatch.setattr(convert_command, "convert", lambda definition, args: seen.append(definition) or 0)
    args = _parser().parse_args(["convert", key, "raw"])
    assert args.func(args) == 0
    paper = DATASETS[key]
    (definition,) = seen
    found = definition.paper
    assert (found.key, found.dataset_id, found.name, found.title) == (key, paper.dataset_id, paper.name, paper.title)
    assert found.folder_name == paper.folder_name


def test_cli_module_import_is_light():
    code = ("import sys, nnunet_deconver.cli.convert, nnunet_deconver.cli.brats_labels; "
            "print(sorted(m for m in ('torch', 'nnunetv2', 'numpy', 'SimpleITK', 'PIL', 'nibabel') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == []


def _nifti(path: Path, array: np.ndarray, version: int, byte_order: str) -> Path:
    import nibabel as nib

    image_class = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    image = image_class(array, np.eye(4))
    nib.save(image_class(array.astype(array.dtype.newbyteorder(byte_order)), np.eye(4),
                         header=image.header.as_byteswapped(byte_order)), path)
    return path


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("byte_order", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_scan_nifti_counts_non_finite_voxels_and_finds_truncation(tmp_path, version, byte_order, suffix):
    from dataset_conversion._images import scan_nifti

    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    array[1, 2, 3], array[2, 3, 4], array[3, 4, 5] = np.nan, np.inf, -np.inf
    path = _nifti(tmp_path / f"image{suffix}", array, version, byte_order)
    assert scan_nifti(path) == (None, 1, 2)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 40])
    problem, _, _ = scan_nifti(path)
    assert problem is not None and "truncated" in problem, problem
    assert scan_nifti(_nifti(tmp_path / f"labels{suffix}", np.zeros((3, 3, 3), np.uint8), version,
                             byte_order)) == (None, 0, 0)
