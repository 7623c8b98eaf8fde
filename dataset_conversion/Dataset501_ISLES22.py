"""ISLES'22 (ischemic stroke lesion segmentation) -> ``Dataset501_ISLES22``.

Channels: DWI (``_0000``) and ADC (``_0001``); FLAIR is not used (other grid, as in the Deconver
paper). Label: the lesion mask, binary. Cross-validation stratified by lesion-volume quartile.

Usage::

    python -m dataset_conversion.Dataset501_ISLES22 RAW_FOLDER [--dry-run] [--overwrite] [-j N]
    nnunet-deconver convert isles22 RAW_FOLDER
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from dataset_conversion._discovery import find_layout_root, nifti_files, pick_single, unusable, visible_children
from dataset_conversion._model import Case, CaseResult, DatasetDefinition, Discovery
from dataset_conversion._splits import volume_strata
from nnunet_deconver.cli.convert import script_main
from nnunet_deconver.paper import get_dataset

#: Id, name and title as in the paper's registry (the same for the command line and the evaluation).
PAPER = get_dataset("isles22")
SUBJECT = re.compile(r"^sub-[A-Za-z0-9]+$")
#: BIDS folders that hold no subjects (not reported as unexpected).
BIDS_FOLDERS = ("derivatives", "rawdata", "sourcedata", "code", "phenotype", "stimuli")
EXPECTED_LAYOUT = """\
  RAW_FOLDER/                           (or RAW_FOLDER/rawdata/ for the subject folders)
    sub-strokecase0001/ses-0001/dwi/sub-strokecase0001_ses-0001_dwi.nii.gz
    sub-strokecase0001/ses-0001/dwi/sub-strokecase0001_ses-0001_adc.nii.gz
    sub-strokecase0001/ses-0001/anat/sub-strokecase0001_ses-0001_FLAIR.nii.gz   (ignored)
    derivatives/sub-strokecase0001/ses-0001/sub-strokecase0001_ses-0001_msk.nii.gz
    ... (250 subjects)"""


def _subject_dirs(folder: Path) -> list[Path]:
    return [d for d in visible_children(folder, dirs=True) if SUBJECT.match(d.name)] if folder.is_dir() else []


def _looks_like_isles(folder: Path) -> bool:
    return bool(_subject_dirs(folder) or _subject_dirs(folder / "rawdata"))


def discover(raw: Path) -> Discovery:
    """Find every subject's DWI, ADC and lesion mask (top level or under ``rawdata/``)."""
    root = find_layout_root(raw, _looks_like_isles, PAPER.title, EXPECTED_LAYOUT)
    subjects: dict[str, list[Path]] = {}
    for folder in (root, root / "rawdata"):
        for subject in _subject_dirs(folder):
            subjects.setdefault(subject.name, []).append(subject)
    derivatives = [d for d in (root / "derivatives", root / "rawdata" / "derivatives") if d.is_dir()]
    found = Discovery()
    if not derivatives:
        found.problems.append(f"no derivatives/ folder with the lesion masks in {root} (expected "
                              f"derivatives/sub-XXX/ses-XXXX/sub-XXX_ses-XXXX_msk.nii.gz)")
    for folder in (root, root / "rawdata"):
        if folder.is_dir():
            found.problems.extend(unusable([p for p in visible_children(folder, dirs=False) if SUBJECT.match(p.name)],
                                           "folder"))
            found.warnings.extend(f"{d}: folder matches no expected name (sub-XXX or a BIDS folder); ignored"
                                  for d in visible_children(folder, dirs=True)
                                  if not SUBJECT.match(d.name) and d.name not in BIDS_FOLDERS)
    for d in derivatives:
        found.warnings.extend(f"{m}: lesion masks of a subject without its folder {m.name}/ (incomplete download?); "
                              f"ignored" for m in visible_children(d, dirs=True) if m.name not in subjects)
    for subject, folders in sorted(subjects.items()):
        if len(folders) > 1:
            found.problems.append(f"{subject}: two folders for the same case: {folders[0]} and {folders[1]}")
            continue
        folder = folders[0]
        dwi, dwi_problem = pick_single(nifti_files(folder, "_dwi", recursive=True), subject, "DWI (*_dwi.nii.gz)",
                                       str(folder))
        adc, adc_problem = pick_single(nifti_files(folder, "_adc", recursive=True), subject, "ADC (*_adc.nii.gz)",
                                       str(folder))
        masks = [m for d in derivatives for m in nifti_files(d / subject, "_msk", recursive=True)]
        mask, mask_problem = pick_single(masks, subject, "lesion mask (*_msk.nii.gz)",
                                         " or ".join(str(d / subject) for d in derivatives) or "derivatives/")
        problems = [p for p in (dwi_problem, adc_problem, mask_problem) if p]
        if problems:
            found.problems.extend(problems)
        else:
            found.cases.append(Case(subject, (dwi, adc), mask, {"subject_folder": folder.relative_to(root).as_posix()}))
    return found


def convert_case(case: Case, out_folder: Path | None) -> CaseResult:
    """Check DWI, ADC and mask share one grid and the mask is binary; write them if ``out_folder``."""
    from dataset_conversion._images import load_volume_case, voxel_volume_ml, write_volume_case

    images, mask = load_volume_case(case, ("DWI", "ADC"), "lesion mask", (0, 1))
    if out_folder is not None:
        write_volume_case(case, images, mask, out_folder)
    volume = float(np.count_nonzero(mask)) * voxel_volume_ml(images[0])
    return CaseResult(case.case_id, {"lesion_volume_ml": round(volume, 4)})


DEFINITION = DatasetDefinition(
    paper=PAPER,
    expected_layout=EXPECTED_LAYOUT,
    channel_names={0: "DWI", 1: "ADC"},
    labels={"background": 0, "stroke lesion": 1},
    file_ending=".nii.gz",
    discover=discover,
    convert_case=convert_case,
    strata=volume_strata("lesion_volume_ml", 4, "Q"),
    stratified_by="lesion-volume quartile",
    reference="Hernandez Petzsche et al., ISLES 2022: A multi-center magnetic resonance imaging stroke lesion "
              "segmentation dataset, Scientific Data 9:762 (2022)",
    licence="see the ISLES'22 challenge data terms (CC BY 4.0 at the time of release)",
    description="ISLES'22 training set: DWI (b=1000) and ADC maps with binary ischemic stroke lesion masks; "
                "FLAIR not used.",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    return script_main(DEFINITION, argv)


if __name__ == "__main__":
    sys.exit(main())
