"""GlaS conversion (Dataset503_GlaS) on a synthetic copy of the published layout."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from _conversion_checks import (check_nnunet_reads_2d, check_rgb_images, check_splits, existing_dataset,
                                expect_failure, load_json, python_module_env, verify_with_nnunet)
from _conversion_synth import make_glas, read_2d, truncate, write_png_like
from dataset_conversion import ConversionError
from dataset_conversion.Dataset503_GlaS import main, read_grades

NAME = "Dataset503_GlaS"


def test_convert_all_origins_and_nnunet_integrity(tmp_path, nnunet_env):
    raw = tmp_path / "Warwick QU Dataset (Released 2016_07_08)"
    cases = make_glas(raw)
    assert main([str(raw), "-j", "1", "--no-progress"]) == 0

    out = Path(nnunet_env["nnUNet_raw"]) / NAME
    check_rgb_images(out, cases)
    check_nnunet_reads_2d(out, "testA_2", cases["testA_2"])
    dataset = load_json(out / "dataset.json")
    assert dataset["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert dataset["labels"] == {"background": 0, "gland": 1}
    assert (dataset["numTraining"], dataset["file_ending"]) == (10, ".png")
    assert dataset["overwrite_image_reader_writer"] == "NaturalImage2DIO"

    metadata = load_json(out / "case_metadata.json")
    assert metadata["stratified_by"].startswith("grade")
    for case_id, source in cases.items():
        entry = metadata["cases"][case_id]
        assert {k: entry[k] for k in ("origin", "grade", "patient_id")} == source.metadata
        assert entry["stratum"] == source.metadata["grade"]
        assert entry["images"] == [f"{case_id}.bmp"] and entry["label"] == f"{case_id}_anno.bmp"
    assert Counter(m["origin"] for m in metadata["cases"].values()) == {"train": 4, "testA": 3, "testB": 3}

    splits = check_splits(out, cases)
    for split in splits:  # 5 benign + 5 malignant -> one of each per validation fold
        assert Counter(cases[c].metadata["grade"] for c in split["val"]) == {"benign": 1, "malignant": 1}

    verify_with_nnunet(503, nnunet_env)


@pytest.mark.parametrize("text", [
    "name, Patient ID, GlaS grade, Sirinukunwattana grade\ntrain_1, 3,  benign, healthy\ntestA_2,4, malignant ,x\n",
    "\ufeffName;Patient ID;GlaS grade;Sirinukunwattana grade\n"
    "train_1.bmp;3;Benign;healthy\ntestA_2.bmp;4;MALIGNANT;x\n",
    "image name,grade\ntrain_01,benign\n\ntestA_2,malignant\n",
    "name,patient,Grade (GlaS),grade (Sirinukunwattana)\ntrain_1,3,benign,adenomatous\ntestA_2,4,malignant,x\n",
])
def test_grade_csv_header_variants(tmp_path, text):
    path = tmp_path / "Grade.csv"
    path.write_text(text, encoding="utf-8")
    grades, problems = read_grades(path)
    assert problems == []
    assert {k: v["grade"] for k, v in grades.items()} == {"train_1": "benign", "testA_2": "malignant"}


def test_grade_csv_without_grade_column(tmp_path):
    path = tmp_path / "Grade.csv"
    path.write_text("name,Patient ID\ntrain_1,3\n")
    with pytest.raises(ConversionError, match=r"Grade.csv: cannot find the image name and GlaS grade columns"):
        read_grades(path)


# ---------------------------------------------------------------------------- bad input


def _raw(tmp_path) -> tuple[Path, dict]:
    raw = tmp_path / "glas"
    return raw, make_glas(raw)


def _fail(tmp_path, nnunet_env, capsys, raw) -> str:
    root = Path(nnunet_env["nnUNet_raw"])
    return expect_failure(main, [str(raw), "--overwrite", "-j", "1"], capsys, root, existing_dataset(root, NAME))


def test_truncated_image(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    truncate(cases["train_3"].image_file)
    err = _fail(tmp_path, nnunet_env, capsys, raw)
    assert f"train_3: cannot read the image file {cases['train_3'].image_file}: image file is truncated" in err


def test_missing_annotation(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    cases["testB_2"].label_file.unlink()
    err = _fail(tmp_path, nnunet_env, capsys, raw)
    assert f"testB_2: missing annotation (_anno) file in {raw}" in err


def test_two_files_for_one_image(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    write_png_like(raw / "train_01.png", cases["train_1"].rgb)
    err = _fail(tmp_path, nnunet_env, capsys, raw)
    assert "train_1: two files for the same case's image" in err
    assert str(raw / "train_01.png") in err and str(raw / "train_1.bmp") in err


def test_annotation_of_another_size(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    write_png_like(cases["testA_1"].label_file, cases["testA_1"].stored_label[:40])
    err = _fail(tmp_path, nnunet_env, capsys, raw)
    assert (f"testA_1: the annotation file {cases['testA_1'].label_file} is 64x40 pixels but the image file "
            f"{cases['testA_1'].image_file} is 64x48") in err


def test_grey_image_is_refused(tmp_path, nnunet_env, capsys):
    raw, cases = _raw(tmp_path)
    write_png_like(cases["train_2"].image_file, cases["train_2"].rgb[..., 0])
    err = _fail(tmp_path, nnunet_env, capsys, raw)
    assert f"train_2: the image file {cases['train_2'].image_file} is not an RGB image (mode L" in err


@pytest.mark.parametrize("problem", ["missing file", "missing row", "bad grade", "extra row"])
def test_grade_problems(tmp_path, nnunet_env, capsys, problem):
    raw, _ = _raw(tmp_path)
    grade_csv = raw / "Grade.csv"
    lines = grade_csv.read_text().splitlines()
    if problem == "missing file":
        grade_csv.unlink()
        expected = f"missing {grade_csv}: the grade of each image"
    elif problem == "missing row":
        grade_csv.write_text("\n".join(line for line in lines if not line.startswith("testA_3,")))
        expected = f"testA_3: no grade in {grade_csv}"
    elif problem == "bad grade":
        grade_csv.write_text("\n".join(lines).replace("train_4, 11,  malignant", "train_4, 11, unknown"))
        expected = f"{grade_csv}, line 5: grade of train_4 is 'unknown', expected benign or malignant"
    else:
        grade_csv.write_text("\n".join(lines + ["testB_9, 99, benign, x"]))
        expected = f"testB_9: listed in {grade_csv} but no such image in {raw}"
    err = _fail(tmp_path, nnunet_env, capsys, raw)
    assert expected in err


def test_wrong_folder(tmp_path, nnunet_env, capsys):
    raw = tmp_path / "fives-like"
    (raw / "train" / "Original").mkdir(parents=True)
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw)], capsys, root, {})
    assert f"{raw} does not hold the GlaS data set: no matching files or folders were found" in err
    assert "train_1.bmp  train_1_anno.bmp" in err


def test_existing_output_is_refused_without_overwrite(tmp_path, nnunet_env, capsys):
    raw, _ = _raw(tmp_path)
    root = Path(nnunet_env["nnUNet_raw"])
    err = expect_failure(main, [str(raw)], capsys, root, existing_dataset(root, NAME))
    assert "already exists; pass --overwrite" in err


def test_instance_values_become_one(tmp_path, nnunet_env):
    raw, cases = _raw(tmp_path)
    source = cases["train_1"]
    assert len(np.unique(source.stored_label)) > 2, "synthetic annotation holds several glands"
    assert main([str(raw), "-j", "1", "--no-progress"]) == 0
    label = read_2d(Path(nnunet_env["nnUNet_raw"]) / NAME / "labelsTr" / "train_1.png")
    assert set(np.unique(label).tolist()) == {0, 1}
    np.testing.assert_array_equal(label == 1, source.stored_label > 0)
    # the instance map is kept: glands numbered 1..n in the order of their stored value (7, 14, ...)
    kept = read_2d(Path(nnunet_env["nnUNet_raw"]) / NAME / "instancesTr" / "train_1.png")
    expected = np.zeros_like(kept)
    for rank, value in enumerate(sorted(set(np.unique(source.stored_label).tolist()) - {0}), start=1):
        expected[source.stored_label == value] = rank
    np.testing.assert_array_equal(kept, expected)
    metadata = load_json(Path(nnunet_env["nnUNet_raw"]) / NAME / "case_metadata.json")
    assert metadata["cases"]["train_1"]["instances"] == "instancesTr/train_1.png"


def test_colour_coded_instance_map(tmp_path, nnunet_env):
    raw, cases = _raw(tmp_path)
    source = cases["testB_3"]
    instances = source.stored_label
    colour = np.zeros((*instances.shape, 3), np.uint8)
    colour[instances > 0] = [200, 30, 0]
    colour[instances == instances.max()] = [0, 0, 5]
    write_png_like(source.label_file, colour)
    assert main([str(raw), "-j", "1", "--no-progress"]) == 0
    label = read_2d(Path(nnunet_env["nnUNet_raw"]) / NAME / "labelsTr" / "testB_3.png")
    np.testing.assert_array_equal(label, (instances > 0).astype(np.uint8))
    # two colours -> two instances: (0, 0, 5) packs to 5, (200, 30, 0) to a larger number
    kept = read_2d(Path(nnunet_env["nnUNet_raw"]) / NAME / "instancesTr" / "testB_3.png")
    expected = np.where(instances == instances.max(), 1, np.where(instances > 0, 2, 0))
    np.testing.assert_array_equal(kept, expected)


def test_command_line_error_exits_without_traceback(tmp_path, nnunet_env):
    raw, cases = _raw(tmp_path)
    cases["train_1"].label_file.unlink()
    proc = subprocess.run([sys.executable, "-m", "dataset_conversion.Dataset503_GlaS", str(raw), "-j", "1"],
                          env=python_module_env(nnunet_env), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and f"error: 1 problem(s) in {raw}; nothing was written" in proc.stderr
    assert "train_1: missing annotation (_anno) file" in proc.stderr
    assert not list(Path(nnunet_env["nnUNet_raw"]).iterdir())
