"""ISLES'22 conversion (Dataset501_ISLES22) on synthetic copies of the published BIDS layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from _conversion_checks import (check_splits, check_volumes, existing_dataset, expect_failure, load_json,
                                run_module, verify_with_nnunet)
from _conversion_synth import make_isles, truncate, write_nifti
from dataset_conversion.Dataset501_ISLES22 import main

NAME = "Dataset501_ISLES22"


def test_convert_top_level_layout_and_nnunet_integrity(tmp_path, nnunet_env):
    raw = tmp_path / "ISLES-2022"
    cases = make_isles(raw, n_cases=6)
    assert main([str(raw), "-j", "1", "--no-progress"]) == 0

    out = Path(nnunet_env["nnUNet_raw"]) / NAME
    check_volumes(out, cases, expected_label=lambda mask: mask)
    dataset = load_json(out / "dataset.json")
    assert dataset["channel_names"] == {"0": "DWI", "1": "ADC"}
    assert dataset["labels"] == {"background": 0, "stroke lesion": 1}
    assert (dataset["numTraining"], dataset["file_ending"]) == (6, ".nii.gz")
    splits = check_splits(out, cases)

    metadata = load_json(out / "case_metadata.json")["cases"]
    for case_id, source in cases.items():
        expected_ml = source.label.sum() * np.prod(source.spacing) / 1000
        assert metadata[case_id]["lesion_volume_ml"] == pytest.approx(expected_ml, abs=1e-4)
    # lesion sizes grow with the case number (synthetic builder): two per quartile bin of 6 -> Q1 Q1 Q2 Q3 Q3 Q4
    assert [metadata[c]["stratum"] for c in sorted(cases)] == ["Q1", "Q1", "Q2", "Q3", "Q3", "Q4"]
    assert all(metadata[c]["fold"] == next(k for k, s in enumerate(splits) if c in s["val"]) for c in cases)

    verify_with_nnunet(501, nnunet_env)


def test_rawdata_variant_through_python_module_with_workers(tmp_path, nnunet_env):
    raw = tmp_path / "isles"
    cases = make_isles(raw, n_cases=5, rawdata=True)
    run_module("dataset_conversion.Dataset501_ISLES22", [str(raw), "-j", "2", "--dataset-id", "601"], nnunet_env)
    out = Path(nnunet_env["nnUNet_raw"]) / "Dataset601_ISLES22"
    check_volumes(out, cases, expected_label=lambda mask: mask)
    check_splits(out, cases)


def test_grid_within_tolerance_is_accepted_and_made_exact(tmp_path, nnunet_env):
    raw = tmp_path / "isles"
    cases = make_isles(raw, n_cases=5)
    source = cases["sub-strokecase0002"]
    shifted = tuple(o + 2e-4 for o in source.origin)
    write_nifti(source.files[1], source.channels[1], source.spacing, shifted)
    assert main([str(raw), "-j", "1", "--no-progress"]) == 0
    check_volumes(Path(nnunet_env["nnUNet_raw"]) / NAME, cases, expected_label=lambda mask: mask)


# ---------------------------------------------------------------------------- bad input


def _raw(tmp_path) -> tuple[Path, dict]:
    raw = tmp_path / "isles"
    return raw, make_isles(raw, n_cases=5)


def test_missing_adc(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    cases["sub-strokecase0003"].files[1].unlink()
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw), "--overwrite", "-j", "1"], capsys, root, existing_dataset(root, NAME))
    assert "sub-strokecase0003: missing ADC" in err and "nothing was written" in err


def test_missing_mask(tmp_path, nnunet_env, capsys):
    raw, _ = _raw(tmp_path)
    shutil.rmtree(raw / "derivatives" / "sub-strokecase0004")
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw), "--overwrite"], capsys, root, existing_dataset(root, NAME))
    assert "sub-strokecase0004: missing lesion mask" in err


def test_mask_on_another_grid(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    source = cases["sub-strokecase0002"]
    write_nifti(source.label_file, source.label, (3.0, 3.0, 3.0), source.origin)
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw), "--overwrite", "-j", "1"], capsys, root, existing_dataset(root, NAME))
    assert "sub-strokecase0002" in err and str(source.label_file) in err
    assert "another grid" in err and "spacing (3, 3, 3)" in err


def test_adc_of_another_size(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    source = cases["sub-strokecase0001"]
    write_nifti(source.files[1], source.channels[1][:, :, :-2], source.spacing, source.origin)
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw), "--overwrite", "-j", "1"], capsys, root, existing_dataset(root, NAME))
    assert f"the ADC file {source.files[1]} is on another grid" in err and "size (22, 24, 16)" in err


def test_mask_with_values_outside_0_1(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    source = cases["sub-strokecase0005"]
    bad = source.label.copy()
    bad[0, 0, 0], bad[0, 0, 1] = 2, 7
    write_nifti(source.label_file, bad, source.spacing, source.origin)
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw), "--overwrite", "-j", "1"], capsys, root, existing_dataset(root, NAME))
    assert (f"sub-strokecase0005: the lesion mask file {source.label_file} holds label values outside "
            f"{{0, 1}}: 2, 7") in err


def test_truncated_dwi(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    truncate(cases["sub-strokecase0001"].files[0])
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw), "--overwrite", "-j", "1"], capsys, root, existing_dataset(root, NAME))
    assert f"sub-strokecase0001: cannot read the DWI file {cases['sub-strokecase0001'].files[0]}" in err
    assert "truncated" in err


def test_two_dwi_files_for_one_case(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    dwi = cases["sub-strokecase0002"].files[0]
    shutil.copy(dwi, dwi.with_name(dwi.name.replace(".nii.gz", ".nii")))
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw), "--overwrite"], capsys, root, existing_dataset(root, NAME))
    assert "sub-strokecase0002: two files for the same case's DWI" in err and str(dwi) in err


def test_same_subject_at_top_level_and_under_rawdata(tmp_path, nnunet_env, capsys):
    raw, _ = _raw(tmp_path)
    shutil.copytree(raw / "sub-strokecase0003", raw / "rawdata" / "sub-strokecase0003")
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw), "--overwrite"], capsys, root, existing_dataset(root, NAME))
    assert "sub-strokecase0003: two folders for the same case" in err


@pytest.mark.parametrize("content", ["empty", "wrong"])
def test_empty_or_wrong_folder(tmp_path, nnunet_env, capsys, content):
    raw = tmp_path / "raw"
    raw.mkdir()
    if content == "wrong":
        (raw / "BraTS-GLI-00000-000").mkdir()
        (raw / "notes.txt").write_text("not ISLES")
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw)], capsys, root, {})
    assert f"{raw} does not hold the ISLES'22 data set" in err
    assert ("it is empty" if content == "empty" else "no matching files") in err
    assert "sub-strokecase0001/ses-0001/dwi/sub-strokecase0001_ses-0001_dwi.nii.gz" in err, "expected layout shown"


def test_missing_raw_folder(tmp_path, nnunet_env, capsys):
    err = expect_failure(main, [str(tmp_path / "nope")], capsys, Path(nnunet_env["nnUNet_raw"]), {})
    assert f"raw folder {tmp_path / 'nope'} does not exist" in err


def test_existing_output_is_refused_without_overwrite(tmp_path, nnunet_env, capsys):
    raw, _ = _raw(tmp_path)
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw)], capsys, root, existing_dataset(root, NAME))
    assert f"output data set {root / NAME} already exists; pass --overwrite" in err
