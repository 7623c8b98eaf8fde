"""GlaS (gland segmentation in colon histology, MICCAI 2015) -> ``Dataset503_GlaS``.

All 165 images (train 85, testA 60, testB 20) become training cases for 5-fold cross-validation,
stratified by grade (benign / malignant, from ``Grade.csv``). Image: one RGB PNG
(``{case}_0000.png``, three channels, nnU-Net's NaturalImage2DIO). Label: the gland instance map
made binary (any gland = 1); the instance map itself is kept as ``instancesTr/{case}.png`` for the
object-level metrics. Each case's origin (train / testA / testB), grade, patient id and instance map
are kept in ``case_metadata.json`` beside ``dataset.json``.

Usage::

    python -m dataset_conversion.Dataset503_GlaS RAW_FOLDER [--dry-run] [--overwrite] [-j N]
    nnunet-deconver convert glas RAW_FOLDER
"""

from __future__ import annotations

import csv
import os
import re
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from dataset_conversion._discovery import find_layout_root, list_folder, visible_children
from dataset_conversion._model import NATURAL_IMAGE_2D, Case, CaseResult, ConversionError, DatasetDefinition, Discovery
from dataset_conversion._splits import metadata_strata
from nnunet_deconver.cli.convert import script_main
from nnunet_deconver.errors import os_error_message
from nnunet_deconver.paper import get_dataset

#: Id, name and title as in the paper's registry (the same for the command line and the evaluation).
PAPER = get_dataset("glas")
FILE = re.compile(r"^(train|testA|testB)_0*(\d+)(_anno)?\.(?i:bmp|png|tif|tiff)$")
GRADES = ("benign", "malignant")
IMAGE_SUFFIXES = (".bmp", ".png", ".tif", ".tiff", ".jpg", ".jpeg")
EXPECTED_LAYOUT = """\
  RAW_FOLDER/                 (e.g. "Warwick QU Dataset (Released 2016_07_08)/")
    Grade.csv                 (columns: name, Patient ID, GlaS grade, Sirinukunwattana grade)
    train_1.bmp  train_1_anno.bmp   ... train_85      (RGB image, gland instance map)
    testA_1.bmp  testA_1_anno.bmp   ... testA_60
    testB_1.bmp  testB_1_anno.bmp   ... testB_20"""


def _normalise(header: str) -> str:
    return re.sub(r"[\s_]+", " ", header.strip().lower())


def _pick_columns(headers: list[str], path: Path) -> tuple[int, int, int | None]:
    """Indices of the name, the GlaS grade and (if present) the patient id columns."""
    names = [_normalise(h) for h in headers]
    name_col = next((i for i, h in enumerate(names) if h in ("name", "image", "image name", "filename", "file name",
                                                             "file", "id")), None)
    grade_cols = [i for i, h in enumerate(names) if "grade" in h]
    preferred = [i for i in grade_cols if "glas" in names[i]] or [i for i in grade_cols if names[i] == "grade"]
    grade_col = preferred[0] if preferred else (grade_cols[0] if len(grade_cols) == 1 else None)
    if name_col is None or grade_col is None:
        raise ConversionError(f"{path}: cannot find the image name and GlaS grade columns in the header "
                              f"{headers}; expected e.g. 'name, Patient ID, GlaS grade, Sirinukunwattana grade'")
    patient_col = next((i for i, h in enumerate(names) if "patient" in h), None)
    return name_col, grade_col, patient_col


def read_grades(path: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """``Grade.csv`` -> ({case id: {"grade", "patient_id"}}, problems).

    Header variants are accepted (spaces, case, ``GlaS grade`` / ``grade``); values are stripped
    and lower-cased; names may carry a file extension.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConversionError(os_error_message(exc, "read", path)) from None
    except UnicodeDecodeError as exc:
        raise ConversionError(f"cannot read {path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    delimiter = ";" if text.count(";") > text.count(",") else ","
    rows = [(number, row) for number, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1)
            if any(cell.strip() for cell in row)]
    if not rows:
        raise ConversionError(f"{path} is empty; expected a header 'name, Patient ID, GlaS grade, ...' and one "
                              f"row per image")
    name_col, grade_col, patient_col = _pick_columns(rows[0][1], path)
    grades: dict[str, dict[str, str]] = {}
    problems = []
    for line, row in rows[1:]:
        if len(row) <= max(name_col, grade_col):
            problems.append(f"{path}, line {line}: too few columns: {row}")
            continue
        name = Path(row[name_col].strip()).stem
        grade = row[grade_col].strip().lower()
        if grade not in GRADES:
            problems.append(f"{path}, line {line}: grade of {name} is {row[grade_col].strip()!r}, expected benign "
                            f"or malignant")
            continue
        match = FILE.match(name + ".bmp")
        case_id = f"{match.group(1)}_{int(match.group(2))}" if match else name
        if case_id in grades:
            problems.append(f"{path}, line {line}: {case_id} is listed a second time")
            continue
        entry = {"grade": grade}
        if patient_col is not None and len(row) > patient_col:
            entry["patient_id"] = row[patient_col].strip()
        grades[case_id] = entry
    return grades, problems


def _looks_like_glas(folder: Path) -> bool:
    return (os.path.lexists(folder / "Grade.csv")
            or any(FILE.match(p.name) for p in visible_children(folder, dirs=False)))


def discover(raw: Path) -> Discovery:
    """Pair every image with its ``_anno`` file and its grade from ``Grade.csv``."""
    root = find_layout_root(raw, _looks_like_glas, PAPER.title, EXPECTED_LAYOUT)
    found = Discovery()
    files: dict[tuple[str, bool], list[Path]] = {}
    origin_of: dict[str, str] = {}
    for path in list_folder(root):  # folders too: one named like an image is reported when read
        match = FILE.match(path.name)
        if match:
            case_id = f"{match.group(1)}_{int(match.group(2))}"
            origin_of[case_id] = match.group(1)
            files.setdefault((case_id, bool(match.group(3))), []).append(path)
        elif path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
            found.warnings.append(f"{path}: matches no expected name (train_N, testA_N, testB_N, with _anno for "
                                  f"annotations); ignored")
    if not files:
        raise ConversionError(f"no GlaS images (train_N.bmp, testA_N.bmp, testB_N.bmp) in {root}.\n"
                              f"Expected layout:\n{EXPECTED_LAYOUT}")
    grade_file = root / "Grade.csv"
    grades: dict[str, dict[str, str]] = {}
    if os.path.lexists(grade_file):  # a folder or unreadable Grade.csv is reported as such, not as missing
        grades, grade_problems = read_grades(grade_file)
        found.problems.extend(grade_problems)
    else:
        found.problems.append(f"missing {grade_file}: the grade of each image (benign / malignant) is needed for "
                              f"the stratified split")
    for case_id in sorted(origin_of):
        problems = []
        for is_anno, what in ((False, "image"), (True, "annotation (_anno)")):
            paths = files.get((case_id, is_anno), [])
            if not paths:
                problems.append(f"{case_id}: missing {what} file in {root}")
            elif len(paths) > 1:
                problems.append(f"{case_id}: two files for the same case's {what}: "
                                f"{', '.join(str(p) for p in paths)}")
        if os.path.lexists(grade_file) and case_id not in grades:
            problems.append(f"{case_id}: no grade in {grade_file}")
        if problems:
            found.problems.extend(problems)
            continue
        metadata = {"origin": origin_of[case_id], **grades.get(case_id, {})}
        found.cases.append(Case(case_id, (files[(case_id, False)][0],), files[(case_id, True)][0], metadata))
    found.problems.extend(f"{case_id}: listed in {grade_file} but no such image in {root}"
                          for case_id in sorted(set(grades) - set(origin_of)))
    return found


def _glands_to_binary(mask: np.ndarray, case: Case) -> np.ndarray:
    """Gland instance map (0 background, one integer or colour per gland) -> 0/1."""
    return mask > 0


def convert_case(case: Case, out_folder: Path | None) -> CaseResult:
    """Check image and annotation (readable, RGB, same size); write RGB PNG + binary label, and
    keep the gland instance map in ``instancesTr/`` (see :mod:`dataset_conversion.instance_maps`)."""
    from dataset_conversion._images import convert_rgb_case
    from dataset_conversion.instance_maps import instance_map_name, keeping_instances

    result = convert_rgb_case(case, out_folder, keeping_instances(_glands_to_binary, out_folder),
                              colour_instances=True)
    result.metadata["instances"] = instance_map_name(case.case_id)
    return result


DEFINITION = DatasetDefinition(
    paper=PAPER,
    expected_layout=EXPECTED_LAYOUT,
    **NATURAL_IMAGE_2D,
    labels={"background": 0, "gland": 1},
    discover=discover,
    convert_case=convert_case,
    strata=metadata_strata("grade"),
    stratified_by="grade (benign / malignant)",
    reference="Sirinukunwattana et al., Gland segmentation in colon histology images: The GlaS challenge "
              "contest, Medical Image Analysis 35 (2017); Sirinukunwattana, Snead, Rajpoot, IEEE TMI 34 (2015)",
    licence="see the GlaS challenge (Warwick QU data set) terms of use",
    description="GlaS: all 165 H&E colon histology images (train, testA, testB) with binary gland masks; origin, "
                "grade and patient of each case in case_metadata.json.",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    return script_main(DEFINITION, argv)


if __name__ == "__main__":
    sys.exit(main())
