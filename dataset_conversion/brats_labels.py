"""BraTS'23 labels <-> the region-based labels of ``Dataset502_BraTS23``.

BraTS'23 (glioma) labels: 0 background, 1 necrotic tumour core (NCR), 2 peritumoral edema (SNFH),
3 enhancing tumour (ET). The evaluated regions are WT = {1, 2, 3}, TC = {1, 3}, ET = {3}.

nnU-Net's region-based training (as documented by nnU-Net and done in its own BraTS 2021
conversion) wants label values ordered so that each region is a set of labels and the regions nest
in ``regions_class_order``: after sigmoid prediction nnU-Net writes ``regions_class_order[i]``
wherever region ``i`` is predicted, in order, so later regions overwrite earlier ones. With
regions (WT, TC, ET) and ``regions_class_order = (1, 2, 3)`` this gives 1 = WT only (edema),
2 = TC but not ET (necrosis), 3 = ET. Hence the mapping

    BraTS 0 -> 0,  BraTS 2 (SNFH) -> 1,  BraTS 1 (NCR) -> 2,  BraTS 3 (ET) -> 3

and back. Unlike BraTS 2021 there is no label 4.

Command line: ``nnunet-deconver brats-labels IN_FOLDER OUT_FOLDER`` or
``python -m dataset_conversion.brats_labels IN_FOLDER OUT_FOLDER``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from dataset_conversion._model import ConversionError, format_problems
from dataset_conversion._output import atomic_output_folder, overlap_problem
from dataset_conversion._pool import parallel_map
from nnunet_deconver.errors import os_error_message, path_problem

#: BraTS'23 label -> Dataset502 label.
BRATS_TO_NNUNET: dict[int, int] = {0: 0, 1: 2, 2: 1, 3: 3}
#: Dataset502 label -> BraTS'23 label.
NNUNET_TO_BRATS: dict[int, int] = {v: k for k, v in BRATS_TO_NNUNET.items()}
#: ``labels`` of Dataset502's dataset.json: region name -> the Dataset502 labels it covers.
NNUNET_REGION_LABELS: dict[str, int | tuple[int, ...]] = {
    "background": 0,
    "whole tumor": (1, 2, 3),
    "tumor core": (2, 3),
    "enhancing tumor": (3,),
}
#: ``regions_class_order`` of Dataset502's dataset.json.
REGIONS_CLASS_ORDER: tuple[int, ...] = (1, 2, 3)


def _remap(labels: np.ndarray, mapping: dict[int, int], what: str) -> np.ndarray:
    values = np.unique(labels)
    unexpected = [v for v in values.tolist() if v not in mapping]
    if unexpected:
        raise ValueError(f"{what} holds values outside {{0, 1, 2, 3}}: {unexpected[:10]}")
    lookup = np.zeros(max(mapping) + 1, dtype=np.uint8)
    for source, target in mapping.items():
        lookup[source] = target
    return lookup[labels.astype(np.int64)]


def brats_to_nnunet(labels: np.ndarray) -> np.ndarray:
    """BraTS'23 label array -> Dataset502 label array (uint8). ValueError on other values."""
    return _remap(labels, BRATS_TO_NNUNET, "BraTS segmentation")


def nnunet_to_brats(labels: np.ndarray) -> np.ndarray:
    """Dataset502 label array (e.g. an nnU-Net prediction) -> BraTS'23 labels (uint8)."""
    return _remap(labels, NNUNET_TO_BRATS, "nnU-Net prediction")


def convert_prediction_file(pair: tuple[Path, Path]) -> str | None:
    """Convert one prediction file to BraTS labels, keeping its geometry; return a problem or None."""
    import SimpleITK as sitk

    from dataset_conversion._images import read_volume

    source, target = pair
    try:
        image = read_volume(source, "prediction", source.name)
        brats = nnunet_to_brats(sitk.GetArrayFromImage(image))
    except ConversionError as exc:
        return str(exc)
    except ValueError as exc:
        return f"{source}: {exc}"
    result = sitk.GetImageFromArray(brats)
    result.CopyInformation(image)
    try:
        sitk.WriteImage(result, str(target), True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return f"{source}: cannot write {target}: {lines[-1] if lines else exc}"
    return None


def _prediction_files(source_dir: Path) -> list[Path]:
    """The visible ``*.nii.gz`` files of ``source_dir``; :class:`ConversionError` for what is unusable."""
    problem = path_problem(source_dir, "folder")
    if problem:
        raise ConversionError(f"input folder: {problem}")
    try:
        entries = sorted(p for p in source_dir.iterdir() if p.name.endswith(".nii.gz") and not p.name.startswith("."))
    except OSError as exc:
        raise ConversionError(os_error_message(exc, "list the input folder", source_dir)) from None
    problems = [problem for problem in (path_problem(p, "file") for p in entries) if problem]
    if problems:
        raise ConversionError(format_problems(problems, f"{len(problems)} input(s) cannot be read; nothing was "
                                                        f"written:"))
    if not entries:
        raise ConversionError(f"no .nii.gz predictions in {source_dir}")
    return entries


def convert_prediction_folder(input_folder: str | Path, output_folder: str | Path, num_workers: int = 1,
                              progress: bool = True, overwrite: bool = False,
                              notes: list[str] | None = None) -> list[Path]:
    """Convert every ``*.nii.gz`` prediction in ``input_folder`` to BraTS labels in ``output_folder``.

    File names are kept (nnU-Net names predictions by case, i.e. ``BraTS-GLI-XXXXX-YYY.nii.gz``).
    All or nothing, like a conversion: the files are written into a hidden temporary folder beside
    ``output_folder``, which is moved into place only when every file was converted. Raises
    :class:`ConversionError` (nothing written) for a missing or empty input folder, an output folder
    equal to, inside or holding the input folder (converting twice would swap labels 1 and 2 back),
    an existing non-empty output folder without ``overwrite``, and files that are unreadable or
    hold values other than 0-3. Returns the files written; ``notes`` collects remarks for the user.
    """
    source_dir, target_dir = Path(input_folder), Path(output_folder)
    if target_dir.exists() and target_dir.resolve() == source_dir.resolve():
        raise ConversionError(f"output folder {target_dir} is the input folder; choose another one "
                              f"(converting in place twice would swap labels 1 and 2 back)")
    overlap = overlap_problem(source_dir, target_dir, "input folder", "output folder")
    if overlap:
        raise ConversionError(overlap)
    sources = _prediction_files(source_dir)
    with atomic_output_folder(target_dir, overwrite, allow_empty=True, notes=notes) as tmp:
        pairs = [(p, tmp / p.name) for p in sources]
        problems = [p for p in parallel_map(convert_prediction_file, pairs, num_workers, "BraTS labels", progress)
                    if p]
        if problems:
            raise ConversionError(format_problems(problems, f"{len(problems)} prediction(s) could not be "
                                                            f"converted; nothing was written:"))
    return [target_dir / p.name for p in sources]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dataset_conversion.brats_labels IN_FOLDER OUT_FOLDER``: the ``brats-labels`` command
    (:mod:`nnunet_deconver.cli.brats_labels`); returns the exit code."""
    from nnunet_deconver.cli.brats_labels import script_main

    return script_main(argv)


if __name__ == "__main__":
    sys.exit(main())
