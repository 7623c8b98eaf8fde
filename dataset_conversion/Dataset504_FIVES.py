"""FIVES (Fundus Image Vessel Segmentation) -> ``Dataset504_FIVES``.

All 800 images (train 600, test 200) become training cases for 5-fold cross-validation,
stratified by disease category (A AMD, D diabetic retinopathy, G glaucoma, N normal). Image: one
RGB PNG (``{case}_0000.png``, nnU-Net's NaturalImage2DIO). Label: the vessel ground truth, stored
as 0/255 with one or three channels, becomes 0/1. Case ids are ``{split}_{N}_{C}`` (train and test
both number their images from 1); split and category are kept in ``case_metadata.json``.

Usage::

    python -m dataset_conversion.Dataset504_FIVES RAW_FOLDER [--dry-run] [--overwrite] [-j N]
    nnunet-deconver convert fives RAW_FOLDER
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from dataset_conversion._discovery import find_layout_root, list_folder, visible_children
from dataset_conversion._model import NATURAL_IMAGE_2D, Case, CaseResult, DatasetDefinition, Discovery
from dataset_conversion._splits import metadata_strata
from nnunet_deconver.cli.convert import script_main
from nnunet_deconver.errors import path_problem
from nnunet_deconver.paper import get_dataset

#: Id, name and title as in the paper's registry (the same for the command line and the evaluation).
PAPER = get_dataset("fives")
SPLITS = ("train", "test")
FILE = re.compile(r"^0*(\d+)_([A-Za-z])\.(?i:png)$")
CATEGORIES = {"A": "age-related macular degeneration", "D": "diabetic retinopathy", "G": "glaucoma", "N": "normal"}
IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
EXPECTED_LAYOUT = """\
  RAW_FOLDER/                   (e.g. "FIVES A Fundus Image Dataset for AI-based Vessel Segmentation/")
    train/Original/1_A.png ... 600_N.png        (RGB fundus photographs, N_C.png, C in A, D, G, N)
    train/Ground truth/1_A.png ... 600_N.png    (vessel masks 0/255, one or three channels)
    test/Original/1_A.png ... 200_N.png
    test/Ground truth/1_A.png ... 200_N.png"""


def _key(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name.lower())


def _child(folder: Path, wanted: str) -> Path | None:
    """Entry whose name is ``wanted`` ignoring case, spaces, ``_`` and ``-`` (``Ground truth``).

    Sub-folders come first; another entry of that name (a file, a broken link) is returned too, so
    that it is reported as what it is rather than as missing.
    """
    if not folder.is_dir():
        return None
    matches = [d for d in list_folder(folder) if _key(d.name) == wanted]
    return next((d for d in matches if d.is_dir()), matches[0] if matches else None)


def _unexpected_folders(folder: Path, expected: tuple[str, ...]) -> list[str]:
    return [f"{d}: folder matches no expected name ({', '.join(expected)}); ignored"
            for d in visible_children(folder, dirs=True) if _key(d.name) not in {_key(e) for e in expected}]


def _index(folder: Path, problems: list[str]) -> dict[int, list[tuple[str, Path]]]:
    """Files ``N_C.png`` of ``folder`` by image number N: [(category, path), ...]."""
    index: dict[int, list[tuple[str, Path]]] = {}
    for path in list_folder(folder):  # folders too: one named like an image is reported when read
        match = FILE.match(path.name)
        if match:
            index.setdefault(int(match.group(1)), []).append((match.group(2).upper(), path))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            problems.append(f"{path}: unexpected file name; FIVES names its images N_C.png (C in A, D, G, N)")
    return index


def _pair(split: str, number: int, images: list[tuple[str, Path]], truths: list[tuple[str, Path]],
          found: Discovery) -> None:
    """Add the case (or its problems) made of one image and one ground truth."""
    name = f"{split}_{number}"
    problems = []
    for entries, what in ((images, "image (Original)"), (truths, "ground truth")):
        if not entries:
            problems.append(f"{name}: missing {what} file")
        elif len(entries) > 1:
            problems.append(f"{name}: two files for the same case's {what}: "
                            f"{', '.join(str(p) for _, p in entries)}")
    if not problems:
        (category, image), (truth_category, truth) = images[0], truths[0]
        if truth_category != category:
            problems.append(f"{name}: the image {image} is category {category} but its ground truth {truth} is "
                            f"{truth_category}")
        elif category not in CATEGORIES:
            problems.append(f"{name}: unknown category {category!r} in {image}; expected A, D, G or N")
        else:
            found.cases.append(Case(f"{name}_{category}", (image,), truth, {"split": split, "category": category}))
    found.problems.extend(problems)


def discover(raw: Path) -> Discovery:
    """Pair ``{train,test}/Original/N_C.png`` with ``{train,test}/Ground truth/N_C.png``."""
    root = find_layout_root(raw, lambda d: any(_child(d, s) for s in SPLITS), PAPER.title, EXPECTED_LAYOUT)
    found = Discovery()
    found.warnings.extend(_unexpected_folders(root, SPLITS))
    for split in SPLITS:
        split_dir = _child(root, split)
        unusable = path_problem(split_dir, "folder") if split_dir else None
        original = _child(split_dir, "original") if split_dir and not unusable else None
        truth = _child(split_dir, "groundtruth") if split_dir and not unusable else None
        unusable = unusable or next(filter(None, (path_problem(d, "folder") for d in (original, truth) if d)), None)
        if unusable:
            found.problems.append(f"{unusable}; expected {split}/Original/ and {split}/Ground truth/ folders")
            continue
        if split_dir:
            found.warnings.extend(_unexpected_folders(split_dir, ("Original", "Ground truth")))
        if original is None or truth is None:
            missing = f"{split}/" if split_dir is None else ("Original/" if original is None else "Ground truth/")
            found.problems.append(f"missing folder {missing} in {split_dir or root}; expected {split}/Original/ and "
                                  f"{split}/Ground truth/")
            continue
        images, truths = _index(original, found.problems), _index(truth, found.problems)
        for number in sorted(set(images) | set(truths)):
            _pair(split, number, images.get(number, []), truths.get(number, []), found)
    return found


def _vessels_to_binary(mask: np.ndarray, case: Case) -> np.ndarray:
    """Ground truth 0/255 -> 0/1; other values are an error."""
    from dataset_conversion._images import check_label_values

    check_label_values(mask, (0, 255), case.label, "ground truth", case.case_id)
    return mask == 255


def convert_case(case: Case, out_folder: Path | None) -> CaseResult:
    """Check image and ground truth (readable, RGB, same size, 0/255); write RGB PNG + 0/1 label."""
    from dataset_conversion._images import convert_rgb_case

    return convert_rgb_case(case, out_folder, _vessels_to_binary)


DEFINITION = DatasetDefinition(
    paper=PAPER,
    expected_layout=EXPECTED_LAYOUT,
    **NATURAL_IMAGE_2D,
    labels={"background": 0, "vessel": 1},
    discover=discover,
    convert_case=convert_case,
    strata=metadata_strata("category"),
    stratified_by="disease category (A, D, G, N)",
    reference="Jin et al., FIVES: A fundus image dataset for artificial intelligence based vessel segmentation, "
              "Scientific Data 9:475 (2022)",
    licence="see the FIVES data set's licence (CC BY 4.0 at the time of release)",
    description="FIVES: all 800 fundus photographs (train and test) with binary vessel masks; split and disease "
                "category of each case in case_metadata.json.",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    return script_main(DEFINITION, argv)


if __name__ == "__main__":
    sys.exit(main())
