"""Shared conversion machinery: stratified splits, quantile strata, atomic output folder, CLI wiring."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from dataset_conversion import _common, cli
from dataset_conversion._common import ConversionError, quantile_strata, stratified_kfold
from dataset_conversion._output import atomic_output_folder

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


def test_output_root_required(tmp_path, monkeypatch):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    with pytest.raises(ConversionError, match="nnUNet_raw is not set"):
        _common.resolve_output_root(None)
    assert _common.resolve_output_root(tmp_path) == tmp_path


def test_same_id_other_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    (tmp_path / "Dataset503_Other").mkdir()
    problem = _common.output_target_problem(tmp_path / "Dataset503_GlaS", overwrite=False)
    assert problem is not None and "Dataset503_Other" in problem and "--dataset-id" in problem
    assert _common.output_target_problem(tmp_path / "Dataset513_GlaS", overwrite=False) is None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnunet-deconver")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_register_adds_convert_and_brats_labels(tmp_path):
    parser = _parser()
    args = parser.parse_args(["convert", "glas", str(tmp_path), "--dataset-id", "42", "--dry-run", "-j", "3",
                              "--seed", "9", "--overwrite", "--output-root", str(tmp_path / "out")])
    assert (args.dataset, args.raw_folder, args.dataset_id, args.dry_run, args.num_workers, args.seed,
            args.overwrite, args.output_root) == ("glas", tmp_path, 42, True, 3, 9, True, tmp_path / "out")
    assert callable(args.func)
    args = parser.parse_args(["brats-labels", "in", "out", "-j", "1"])
    assert (args.input_folder, args.output_folder, args.num_workers) == (Path("in"), Path("out"), 1)
    assert callable(args.func)
    for bad in (["convert", "msd", "x"], ["convert", "glas", "x", "--dataset-id", "1000"],
                ["convert", "glas", "x", "-j", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_convert_subcommand_reports_errors_without_traceback(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    args = _parser().parse_args(["convert", "fives", str(tmp_path / "empty"), "--output-root", str(tmp_path)])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not hold the FIVES data set: it is empty" in err and "Original" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_cli_module_import_is_light():
    code = ("import sys, dataset_conversion.cli; "
            "print(sorted(m for m in ('torch', 'nnunetv2', 'numpy', 'SimpleITK', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == []
