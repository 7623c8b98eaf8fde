"""BraTS'23 conversion (Dataset502_BraTS23, region-based) and the back-conversion of predictions."""

from __future__ import annotations

import argparse
import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest

from _conversion_checks import (check_splits, check_volumes, existing_dataset, expect_failure, load_json,
                                run_module, verify_with_nnunet)
from _conversion_synth import make_brats, read_nifti, snapshot, truncate, write_nifti
from dataset_conversion.brats_labels import (NNUNET_REGION_LABELS, REGIONS_CLASS_ORDER, brats_to_nnunet,
                                             nnunet_to_brats)
from dataset_conversion.Dataset502_BraTS23 import main
from nnunet_deconver.cli import brats_labels as brats_labels_command

NAME = "Dataset502_BraTS23"
# BraTS'23: 1 NCR, 2 SNFH (edema), 3 ET; nnU-Net convention (as its Dataset137_BraTS21): 1 edema, 2 NCR, 3 ET
EXPECTED_NNUNET_LABEL = {0: 0, 1: 2, 2: 1, 3: 3}
# Regions evaluated by BraTS, in BraTS labels
BRATS_REGIONS = {"whole tumor": (1, 2, 3), "tumor core": (1, 3), "enhancing tumor": (3,)}


def _expected_label(seg: np.ndarray) -> np.ndarray:
    out = np.zeros_like(seg)
    for brats, nnunet in EXPECTED_NNUNET_LABEL.items():
        out[seg == brats] = nnunet
    return out


def test_convert_and_nnunet_integrity(tmp_path, nnunet_env):
    download = tmp_path / "download"
    cases = make_brats(download / "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData", n_cases=6)
    assert {v for c in cases.values() for v in np.unique(c.label).tolist()} == {0, 1, 2, 3}
    assert main([str(download), "-j", "1", "--no-progress"]) == 0, "archive's top folder found one level down"

    out = Path(nnunet_env["nnUNet_raw"]) / NAME
    check_volumes(out, cases, expected_label=_expected_label)
    dataset = load_json(out / "dataset.json")
    assert dataset["channel_names"] == {"0": "T1n", "1": "T1c", "2": "T2w", "3": "T2f"}
    assert dataset["labels"] == {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                                 "enhancing tumor": [3]}
    assert dataset["regions_class_order"] == [1, 2, 3]
    assert (dataset["numTraining"], dataset["file_ending"]) == (6, ".nii.gz")
    check_splits(out, cases)
    metadata = load_json(out / "case_metadata.json")["cases"]
    for case_id, source in cases.items():
        expected_ml = np.count_nonzero(source.label) * np.prod(source.spacing) / 1000
        assert metadata[case_id]["whole_tumor_volume_ml"] == pytest.approx(expected_ml, abs=1e-4)
    assert sorted(m["stratum"] for m in metadata.values()) == ["T1", "T1", "T2", "T2", "T3", "T3"]

    verify_with_nnunet(502, nnunet_env)


def _label_configurations():
    """Every non-empty set of BraTS labels that can occur in one volume."""
    return [subset for r in range(1, 5) for subset in itertools.combinations((0, 1, 2, 3), r)]


@pytest.mark.parametrize("present", _label_configurations(), ids=lambda s: "labels" + "".join(map(str, s)))
def test_round_trip_through_nnunet_regions(present):
    """BraTS -> Dataset502 labels -> nnU-Net's region targets -> nnU-Net's region decoding -> BraTS.

    Uses nnU-Net's own training transform (segmentation -> regions) and its own decoding of sigmoid
    outputs with regions_class_order, fed with perfect predictions.
    """
    import torch
    from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    rng = np.random.default_rng(len(present))
    seg = rng.choice(np.array(present, np.uint8), size=(5, 6, 7))
    seg.flat[: len(present)] = present  # every listed label really occurs
    converted = brats_to_nnunet(seg)
    np.testing.assert_array_equal(converted, _expected_label(seg))

    label_manager = LabelManager(dict(NNUNET_REGION_LABELS), regions_class_order=list(REGIONS_CLASS_ORDER))
    regions = label_manager.foreground_regions
    assert len(regions) == 3
    to_regions = ConvertSegmentationToRegionsTransform(regions)
    targets = to_regions(segmentation=torch.from_numpy(converted[None].astype(np.int16)))["segmentation"]
    targets = targets.numpy().astype(np.float32)
    for target, brats_region in zip(targets, BRATS_REGIONS.values()):
        np.testing.assert_array_equal(target.astype(bool), np.isin(seg, brats_region))

    predicted = label_manager.convert_probabilities_to_segmentation(targets)  # perfect sigmoid outputs
    np.testing.assert_array_equal(predicted, converted)
    np.testing.assert_array_equal(nnunet_to_brats(predicted), seg)


def test_label_conversions_reject_unknown_values():
    with pytest.raises(ValueError, match=r"outside \{0, 1, 2, 3\}: \[4\]"):
        brats_to_nnunet(np.array([0, 1, 4]))
    with pytest.raises(ValueError, match=r"\[5\]"):
        nnunet_to_brats(np.array([5, 0]))


def _predictions(folder: Path, n: int = 3) -> dict[str, tuple[np.ndarray, tuple]]:
    """nnU-Net-style prediction files (Dataset502 labels); returns the BraTS labels they stand for."""
    rng = np.random.default_rng(5)
    expected = {}
    for i in range(n):
        brats = rng.integers(0, 4, (6, 7, 8)).astype(np.uint8)
        spacing = (1.0, 1.0 + i, 2.0)
        write_nifti(folder / f"BraTS-GLI-{i:05d}-000.nii.gz", _expected_label(brats), spacing, (1.0, 2.0, 3.0))
        expected[f"BraTS-GLI-{i:05d}-000.nii.gz"] = (brats, spacing)
    (folder / "plans.json").write_text("{}")
    return expected


def _check_back_converted(folder: Path, expected: dict) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)
    for name, (brats, spacing) in expected.items():
        array, image = read_nifti(folder / name)
        np.testing.assert_array_equal(array, brats)
        assert image.GetSpacing() == pytest.approx(spacing) and image.GetOrigin() == pytest.approx((1, 2, 3))


def test_brats_labels_subcommand(tmp_path):
    expected = _predictions(tmp_path / "pred")
    parser = argparse.ArgumentParser()
    brats_labels_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["brats-labels", str(tmp_path / "pred"), str(tmp_path / "brats"), "-j", "1",
                              "--no-progress"])
    assert args.func(args) == 0
    _check_back_converted(tmp_path / "brats", expected)


def test_brats_labels_python_module(tmp_path, nnunet_env):
    expected = _predictions(tmp_path / "pred")
    run_module("dataset_conversion.brats_labels", [str(tmp_path / "pred"), str(tmp_path / "out")], nnunet_env)
    _check_back_converted(tmp_path / "out", expected)


def test_brats_labels_errors(tmp_path, capsys):
    from dataset_conversion.brats_labels import main as labels_main

    pred = tmp_path / "pred"
    _predictions(pred)
    assert labels_main([str(pred), str(pred)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("brats_labels: error: output folder ") and "is the input folder" in err, err
    bad = pred / "BraTS-GLI-00001-000.nii.gz"
    write_nifti(bad, np.full((2, 2, 2), 4, np.uint8))
    assert labels_main([str(pred), str(tmp_path / "out"), "-j", "1"]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "outside {0, 1, 2, 3}: [4]" in err
    (tmp_path / "empty").mkdir()
    assert labels_main([str(tmp_path / "empty"), str(tmp_path / "out2")]) == 1
    assert "no .nii.gz predictions" in capsys.readouterr().err


# ---------------------------------------------------------------------------- bad input


def _raw(tmp_path) -> tuple[Path, dict]:
    raw = tmp_path / "brats"
    return raw, make_brats(raw, n_cases=5)


def test_missing_modality(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    cases["BraTS-GLI-00002-000"].files[3].unlink()
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw), "--overwrite"], capsys, root, existing_dataset(root, NAME))
    assert f"BraTS-GLI-00002-000: missing t2f (*-t2f.nii.gz) (nothing matching in {raw / 'BraTS-GLI-00002-000'})" in err


def test_missing_segmentation(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    cases["BraTS-GLI-00004-000"].label_file.unlink()
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw), "--overwrite"], capsys, root, existing_dataset(root, NAME))
    assert "BraTS-GLI-00004-000: missing seg" in err


def test_brats21_label_4_is_rejected(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    source = cases["BraTS-GLI-00003-000"]
    write_nifti(source.label_file, np.where(source.label == 3, 4, source.label).astype(np.uint8), source.spacing,
                source.origin)
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw), "--overwrite", "-j", "1"], capsys, root, existing_dataset(root, NAME))
    assert (f"BraTS-GLI-00003-000: the segmentation file {source.label_file} holds label values outside "
            f"{{0, 1, 2, 3}}: 4") in err


def test_segmentation_on_another_grid(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    source = cases["BraTS-GLI-00001-000"]
    write_nifti(source.label_file, source.label, source.spacing, (5.0, -239.0, 0.0))
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw), "--overwrite", "-j", "1"], capsys, root, existing_dataset(root, NAME))
    assert f"BraTS-GLI-00001-000: the segmentation file {source.label_file} is on another grid" in err
    assert "origin (5, -239, 0) instead of (0, -239, 0)" in err


def test_two_files_for_one_modality(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    t1n = cases["BraTS-GLI-00000-000"].files[0]
    shutil.copy(t1n, t1n.with_name("BraTS-GLI-00000-000-t1n.nii"))
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw), "--overwrite"], capsys, root, existing_dataset(root, NAME))
    assert "BraTS-GLI-00000-000: two files for the same case's t1n" in err


def test_unreadable_modality(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    bad = cases["BraTS-GLI-00001-000"].files[1]
    bad.write_bytes(b"this is not a NIfTI file")
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw), "--overwrite", "-j", "1"], capsys, root, existing_dataset(root, NAME))
    assert f"BraTS-GLI-00001-000: cannot read the t1c file {bad}" in err


def test_dry_run_lists_cases_and_problems_and_writes_nothing(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    root = Path(nnunet_env["nnUNet_raw"])
    assert main([str(raw), "--dry-run", "-j", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert all(case_id in out for case_id in cases) and "no problems found" in out
    assert "validation fold sizes (seed 12345): 1, 1, 1, 1, 1" in out
    assert snapshot(root) == {} and not list(root.iterdir())

    truncate(cases["BraTS-GLI-00000-000"].label_file)
    cases["BraTS-GLI-00004-000"].files[0].unlink()
    assert main([str(raw), "--dry-run", "-j", "1", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "2 problem(s) found" in out and "BraTS-GLI-00004-000: missing t1n" in out
    assert f"cannot read the segmentation file {cases['BraTS-GLI-00000-000'].label_file}" in out
    assert not list(root.iterdir())


def test_dry_run_reports_existing_output(tmp_path, nnunet_env, capsys):
    raw, _ = _raw(tmp_path)
    root = Path(nnunet_env["nnUNet_raw"])
    before = existing_dataset(root, NAME)
    assert main([str(raw), "--dry-run", "-j", "1", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "1 problem(s) found" in out and f"output data set {root / NAME} already exists" in out
    assert snapshot(root) == before
