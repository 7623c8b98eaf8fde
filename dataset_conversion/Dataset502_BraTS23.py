"""BraTS'23 adult glioma -> ``Dataset502_BraTS23`` (region-based).

Channels: t1n (``_0000``), t1c (``_0001``), t2w (``_0002``), t2f (``_0003``). Labels are converted
for nnU-Net's region-based training (whole tumour, tumour core, enhancing tumour; see
:mod:`dataset_conversion.brats_labels`), and ``nnunet-deconver brats-labels`` converts predictions
back to BraTS labels. Cross-validation stratified by whole-tumour-volume tertile.

Usage::

    python -m dataset_conversion.Dataset502_BraTS23 RAW_FOLDER [--dry-run] [--overwrite] [-j N]
    nnunet-deconver convert brats23 RAW_FOLDER
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
from dataset_conversion.brats_labels import NNUNET_REGION_LABELS, REGIONS_CLASS_ORDER
from nnunet_deconver.cli.convert import script_main
from nnunet_deconver.paper import get_dataset

#: Id, name and title as in the paper's registry (the same for the command line and the evaluation).
PAPER = get_dataset("brats23")
CASE = re.compile(r"^BraTS-[A-Za-z]+-\d+-\d+$")
MODALITIES = ("t1n", "t1c", "t2w", "t2f")
EXPECTED_LAYOUT = """\
  RAW_FOLDER/                            (e.g. ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData/)
    BraTS-GLI-00000-000/
      BraTS-GLI-00000-000-t1n.nii.gz
      BraTS-GLI-00000-000-t1c.nii.gz
      BraTS-GLI-00000-000-t2w.nii.gz
      BraTS-GLI-00000-000-t2f.nii.gz
      BraTS-GLI-00000-000-seg.nii.gz     (labels 0 background, 1 NCR, 2 SNFH, 3 ET)
    ... (1,251 cases)"""


def _case_dirs(folder: Path) -> list[Path]:
    return [d for d in visible_children(folder, dirs=True) if CASE.match(d.name)]


def discover(raw: Path) -> Discovery:
    """Find every case folder's four modalities and segmentation."""
    root = find_layout_root(raw, lambda d: bool(_case_dirs(d)), PAPER.title, EXPECTED_LAYOUT)
    found = Discovery()
    found.warnings.extend(f"{d}: folder matches no expected name (BraTS-XXX-NNNNN-NNN); ignored"
                          for d in visible_children(root, dirs=True) if not CASE.match(d.name))
    found.problems.extend(unusable([p for p in visible_children(root, dirs=False) if CASE.match(p.name)], "folder"))
    endings = tuple(f"-{kind}{ext}" for kind in (*MODALITIES, "seg") for ext in (".nii.gz", ".nii"))
    for folder in _case_dirs(root):
        case_id = folder.name
        found.warnings.extend(f"{p}: NIfTI file of no expected kind ({', '.join(MODALITIES)}, seg); ignored"
                              for p in nifti_files(folder, "", recursive=False) if not p.name.endswith(endings))
        picked = [pick_single(nifti_files(folder, f"-{kind}", recursive=False), case_id, f"{kind} (*-{kind}.nii.gz)",
                              str(folder)) for kind in (*MODALITIES, "seg")]
        problems = [problem for _, problem in picked if problem]
        if problems:
            found.problems.extend(problems)
        else:
            files = [path for path, _ in picked]
            found.cases.append(Case(case_id, tuple(files[:4]), files[4]))
    return found


def convert_case(case: Case, out_folder: Path | None) -> CaseResult:
    """Check the four modalities and the segmentation share one grid and BraTS labels 0-3; convert."""
    from dataset_conversion._images import load_volume_case, voxel_volume_ml, write_volume_case
    from dataset_conversion.brats_labels import brats_to_nnunet

    images, seg = load_volume_case(case, MODALITIES, "segmentation", (0, 1, 2, 3))
    if out_folder is not None:
        write_volume_case(case, images, brats_to_nnunet(seg), out_folder)
    volume = float(np.count_nonzero(seg)) * voxel_volume_ml(images[0])
    return CaseResult(case.case_id, {"whole_tumor_volume_ml": round(volume, 4)})


DEFINITION = DatasetDefinition(
    paper=PAPER,
    expected_layout=EXPECTED_LAYOUT,
    channel_names={0: "T1n", 1: "T1c", 2: "T2w", 3: "T2f"},
    labels=NNUNET_REGION_LABELS,
    regions_class_order=REGIONS_CLASS_ORDER,
    file_ending=".nii.gz",
    discover=discover,
    convert_case=convert_case,
    strata=volume_strata("whole_tumor_volume_ml", 3, "T"),
    stratified_by="whole-tumour-volume tertile",
    reference="BraTS 2023 adult glioma challenge (Baid et al. 2021, arXiv:2107.02314; Menze et al., IEEE TMI 2015; "
              "Bakas et al., Scientific Data 2017)",
    licence="see the BraTS 2023 data use agreement (Synapse)",
    description="BraTS'23 glioma training set. Region-based labels: 1 = edema (BraTS 2), 2 = necrotic core "
                "(BraTS 1), 3 = enhancing tumour (BraTS 3); convert predictions back with "
                "`nnunet-deconver brats-labels`.",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    return script_main(DEFINITION, argv)


if __name__ == "__main__":
    sys.exit(main())
