"""The files beside ``imagesTr`` / ``labelsTr``: ``dataset.json``, ``splits_final.json`` and
``case_metadata.json``.

``dataset.json`` is written by nnU-Net's own ``generate_dataset_json``; ``splits_final.json`` holds
the stratified folds (:mod:`dataset_conversion._splits`), which nnU-Net's experiment planner copies
into the preprocessed folder and trains on instead of its random split; ``case_metadata.json`` records each
case's source files, what discovery and conversion found, its stratum and its fold, so that a
result can be traced back to the download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from dataset_conversion._model import Case, CaseResult, DatasetDefinition
from dataset_conversion._splits import N_FOLDS, stratified_kfold

#: File beside ``dataset.json`` that records each case's origin, grade / category, stratum and fold.
METADATA_FILE = "case_metadata.json"


def relative_to(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form (the absolute path if it is outside ``root``)."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def build_metadata(definition: DatasetDefinition, folder_name: str, raw: Path, cases: Sequence[Case],
                   results: Mapping[str, CaseResult], strata: Mapping[str, str],
                   splits: Sequence[Mapping[str, list[str]]], seed: int) -> dict[str, Any]:
    """Content of :data:`METADATA_FILE`: per case its source files, metadata, stratum and fold."""
    fold_of = {case: k for k, split in enumerate(splits) for case in split["val"]}
    per_case = {}
    for case in sorted(cases, key=lambda c: c.case_id):
        per_case[case.case_id] = {
            "images": [relative_to(p, raw) for p in case.images],
            "label": relative_to(case.label, raw),
            **dict(case.metadata),
            **results[case.case_id].metadata,
            "stratum": strata[case.case_id],
            "fold": fold_of[case.case_id],
        }
    return {"dataset": folder_name, "source": definition.paper.title, "stratified_by": definition.stratified_by,
            "n_folds": len(splits), "seed": seed, "cases": per_case}


def write_dataset_files(definition: DatasetDefinition, folder: Path, folder_name: str, raw: Path,
                        cases: Sequence[Case], results: Mapping[str, CaseResult], seed: int) -> None:
    """Write ``dataset.json``, ``splits_final.json`` and :data:`METADATA_FILE` into ``folder``.

    Their content depends only on the input and the seed, so a re-run writes identical bytes.
    """
    from batchgenerators.utilities.file_and_folder_operations import save_json
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    strata = definition.strata(cases, results)
    splits = stratified_kfold(strata, N_FOLDS, seed)
    extra: dict[str, Any] = {}
    if definition.reader_writer is not None:
        extra["overwrite_image_reader_writer"] = definition.reader_writer
    generate_dataset_json(
        str(folder),
        channel_names=dict(definition.channel_names),
        labels=dict(definition.labels),
        num_training_cases=len(cases),
        file_ending=definition.file_ending,
        regions_class_order=definition.regions_class_order,
        dataset_name=folder_name,
        reference=definition.reference,
        description=definition.description,
        license=definition.licence,
        converted_by=f"nnunet-deconver (dataset_conversion, {definition.paper.key})",
        **extra,
    )
    save_json(splits, str(folder / "splits_final.json"), sort_keys=False)
    save_json(build_metadata(definition, folder_name, raw, cases, results, strata, splits, seed),
              str(folder / METADATA_FILE), sort_keys=False)
