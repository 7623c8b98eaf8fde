"""FIVES conversion (Dataset504_FIVES), nnU-Net planning + preprocessing on it, determinism, atomicity."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from _conversion_checks import (check_nnunet_reads_2d, check_rgb_images, check_splits, existing_dataset,
                                expect_failure, load_json, python_module_env, run_module)
from _conversion_synth import make_fives, snapshot, write_png_like
from conftest import run_command
from dataset_conversion import _convert
from dataset_conversion.Dataset504_FIVES import main

NAME = "Dataset504_FIVES"
OUTPUT_FILES = ("dataset.json", "splits_final.json", "case_metadata.json")


def test_convert_plan_and_preprocess_2d(tmp_path, nnunet_env):
    raw = tmp_path / "FIVES A Fundus Image Dataset"
    cases = make_fives(raw, gt_channels=1)
    assert main([str(raw), "-j", "1", "--no-progress"]) == 0

    out = Path(nnunet_env["nnUNet_raw"]) / NAME
    check_rgb_images(out, cases)
    check_nnunet_reads_2d(out, "test_2_G", cases["test_2_G"])
    dataset = load_json(out / "dataset.json")
    assert dataset["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert dataset["labels"] == {"background": 0, "vessel": 1}
    assert (dataset["numTraining"], dataset["file_ending"]) == (8, ".png")
    metadata = load_json(out / "case_metadata.json")["cases"]
    assert {c: {"split": m["split"], "category": m["category"]} for c, m in metadata.items()} == \
        {c: s.metadata for c, s in cases.items()}
    splits = check_splits(out, cases)
    for split in splits:  # 2 cases per category: never two of one category in a validation fold
        assert max(Counter(cases[c].metadata["category"] for c in split["val"]).values()) == 1

    run_command(["nnUNetv2_plan_and_preprocess", "-d", "504", "-c", "2d", "-np", "1", "-npfp", "1",
                 "--verify_dataset_integrity"], nnunet_env)
    preprocessed = Path(nnunet_env["nnUNet_preprocessed"]) / NAME
    assert load_json(preprocessed / "splits_final.json") == load_json(out / "splits_final.json")
    assert (preprocessed / "nnUNetPlans.json").is_file()
    written = {p.name.split(".")[0] for p in (preprocessed / "nnUNetPlans_2d").iterdir()}
    assert set(cases) <= written


def test_three_channel_ground_truth_through_python_module(tmp_path, nnunet_env):
    raw = tmp_path / "fives"
    cases = make_fives(raw, gt_channels=3)
    assert next(iter(cases.values())).stored_label.ndim == 3
    run_module("dataset_conversion.Dataset504_FIVES", [str(raw), "-j", "1"], nnunet_env)
    check_rgb_images(Path(nnunet_env["nnUNet_raw"]) / NAME, cases)


def test_nnunet_deconver_convert_command(tmp_path, nnunet_env):
    raw = tmp_path / "fives"
    cases = make_fives(raw, gt_channels=3)
    run_command(["nnunet-deconver", "convert", "fives", str(raw), "--dataset-id", "604", "-j", "1"],
                python_module_env(nnunet_env))
    check_rgb_images(Path(nnunet_env["nnUNet_raw"]) / "Dataset604_FIVES", cases)


def test_rerun_is_byte_identical_and_seed_changes_split(tmp_path, nnunet_env):
    raw = tmp_path / "fives"
    make_fives(raw, counts=(("train", 12), ("test", 8)))
    root = Path(nnunet_env["nnUNet_raw"])
    assert main([str(raw), "-j", "1", "--no-progress"]) == 0
    first = {name: (root / NAME / name).read_bytes() for name in OUTPUT_FILES}
    assert main([str(raw), "-j", "1", "--no-progress", "--overwrite"]) == 0
    assert {name: (root / NAME / name).read_bytes() for name in OUTPUT_FILES} == first
    other = tmp_path / "elsewhere"
    assert main([str(raw), "-j", "1", "--no-progress", "--output-root", str(other)]) == 0
    assert {name: (other / NAME / name).read_bytes() for name in OUTPUT_FILES} == first

    assert main([str(raw), "-j", "1", "--no-progress", "--overwrite", "--seed", "99"]) == 0
    assert (root / NAME / "dataset.json").read_bytes() == first["dataset.json"]
    assert (root / NAME / "splits_final.json").read_bytes() != first["splits_final.json"]
    check_splits(root / NAME, load_json(root / NAME / "case_metadata.json")["cases"])


def test_interrupted_run_keeps_previous_data_set(tmp_path, nnunet_env, monkeypatch, capsys):
    raw = tmp_path / "fives"
    make_fives(raw)
    root = Path(nnunet_env["nnUNet_raw"])
    assert main([str(raw), "-j", "1", "--no-progress"]) == 0
    before = snapshot(root)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_convert, "write_dataset_files", interrupted)
    capsys.readouterr()
    assert main([str(raw), "-j", "1", "--no-progress", "--overwrite", "--seed", "1"]) == 130
    err = capsys.readouterr().err
    assert err == "Dataset504_FIVES: interrupted (Ctrl-C, SIGINT); stopped before completion, nothing was written\n"
    assert snapshot(root) == before
    assert [p.name for p in root.iterdir()] == [NAME]


def test_overwrite_replaces_everything(tmp_path, nnunet_env):
    raw = tmp_path / "fives"
    cases = make_fives(raw)
    root = Path(nnunet_env["nnUNet_raw"])
    existing_dataset(root, NAME)
    assert main([str(raw), "-j", "1", "--no-progress", "--overwrite"]) == 0
    assert not (root / NAME / "imagesTr" / "old_0000.nii.gz").exists()
    check_rgb_images(root / NAME, cases)
    assert [p.name for p in root.iterdir()] == [NAME]


# ---------------------------------------------------------------------------- bad input


def _raw(tmp_path) -> tuple[Path, dict]:
    raw = tmp_path / "fives"
    return raw, make_fives(raw)


def _fail(nnunet_env, capsys, raw) -> str:
    root = Path(nnunet_env["nnUNet_raw"])
    return expect_failure(main, [str(raw), "--overwrite", "-j", "1"], capsys, root, existing_dataset(root, NAME))


def test_ground_truth_values_outside_0_255(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    source = cases["train_3_G"]
    bad = source.stored_label.copy()
    bad[0, :3] = [128, 1, 254]
    write_png_like(source.label_file, bad)
    err = _fail(nnunet_env, capsys, raw)
    assert (f"train_3_G: the ground truth file {source.label_file} holds label values outside {{0, 255}}: "
            f"1, 128, 254") in err


def test_ground_truth_with_different_colour_channels(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    source = cases["test_1_D"]
    coloured = np.stack([source.stored_label, source.stored_label, np.zeros_like(source.stored_label)], -1)
    write_png_like(source.label_file, coloured)
    err = _fail(nnunet_env, capsys, raw)
    assert f"test_1_D: the annotation file {source.label_file} has three colour channels that differ" in err


def test_missing_ground_truth(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    cases["train_5_A"].label_file.unlink()
    err = _fail(nnunet_env, capsys, raw)
    assert "train_5: missing ground truth file" in err


def test_two_images_with_one_number(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    shutil.copy(cases["train_2_D"].image_file, raw / "train" / "Original" / "2_N.png")
    err = _fail(nnunet_env, capsys, raw)
    assert "train_2: two files for the same case's image (Original)" in err and "2_N.png" in err


def test_category_mismatch_and_unknown_category(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    cases["train_1_A"].label_file.rename(raw / "train" / "Ground truth" / "1_G.png")
    for folder in ("Original", "Ground truth"):
        (raw / "test" / folder / "3_N.png").rename(raw / "test" / folder / "3_X.png")
    err = _fail(nnunet_env, capsys, raw)
    assert "train_1: the image" in err and "is category A but its ground truth" in err and "is G" in err
    assert "test_3: unknown category 'X'" in err


def test_missing_test_folder_and_bad_file_name(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    shutil.rmtree(raw / "test")
    write_png_like(raw / "train" / "Original" / "image7.png", cases["train_1_A"].rgb)
    err = _fail(nnunet_env, capsys, raw)
    assert f"missing folder test/ in {raw}" in err
    assert f"{raw / 'train' / 'Original' / 'image7.png'}: unexpected file name" in err


def test_empty_folder(tmp_path, nnunet_env, capsys):
    (tmp_path / "empty").mkdir()
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(tmp_path / "empty")], capsys, root, {})
    assert "does not hold the FIVES data set: it is empty" in err and "train/Ground truth/1_A.png" in err
