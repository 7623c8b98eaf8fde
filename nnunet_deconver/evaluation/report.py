"""Dice / HD95 (and challenge) reports over nnU-Net cross-validation results or two folders.

* :func:`evaluate_crossval` reads the validation predictions of each fold,
  ``$nnUNet_results/DatasetXXX_Name/TRAINER__PLANS__CONFIG/fold_k/validation/*<file_ending>``,
  and the references ``$nnUNet_raw/DatasetXXX_Name/labelsTr/*<file_ending>``.
* :func:`evaluate_folders` compares a folder of predictions with a folder of references.

Both check everything they can before evaluating (dataset.json, splits, the output folder),
evaluate every label or region of every case (:mod:`.case`), aggregate (:mod:`.aggregate`) and
write ``summary.json``, ``per_case.csv`` and ``table.md`` (:mod:`.outputs`, :mod:`.render`).
nnU-Net and torch are imported only when these functions run.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from nnunet_deconver.errors import one_line
from nnunet_deconver.evaluation.challenge import CHALLENGES, detect_challenge
from nnunet_deconver.evaluation.files import EvaluationError, require_folder, warn
from nnunet_deconver.evaluation.penalty import EmptyPenalty, PenaltyLike
from nnunet_deconver.evaluation.run import Job, run_job
from nnunet_deconver.evaluation.targets import Target, read_dataset_json, targets_from_dataset_json

__all__ = ["Target", "EvaluationError", "targets_from_dataset_json", "evaluate_crossval", "evaluate_folders",
           "choose_metrics", "DEFAULT_CROSSVAL_SUBFOLDER", "DEFAULT_FOLDERS_SUBFOLDER"]

DEFAULT_CROSSVAL_SUBFOLDER = "crossval_deconver_eval"
DEFAULT_FOLDERS_SUBFOLDER = "deconver_eval"
METRIC_SETS = ("paper", "challenge", "all")


def choose_metrics(metrics: str | None, challenge: str | None, *names: str | None) -> tuple[bool, str | None]:
    """(paper metrics?, challenge key or None) from ``--metrics`` / ``--challenge`` / data set names.

    Default: ``all`` when the challenge is given or recognised from a name, else ``paper``.
    """
    if metrics is not None and metrics not in METRIC_SETS:
        raise EvaluationError(f"--metrics must be one of {METRIC_SETS}, got {metrics!r}")
    if challenge is not None and challenge not in CHALLENGES:
        raise EvaluationError(f"unknown challenge {challenge!r}; choose from {sorted(CHALLENGES)}")
    key = challenge or detect_challenge(*names)
    metrics = metrics or ("all" if key else "paper")
    if metrics == "paper":
        return True, None
    if key is None:
        raise EvaluationError(f"--metrics {metrics}: no challenge is known for this data set; name it with "
                              f"--challenge {{{','.join(CHALLENGES)}}}")
    return metrics == "all", key


def _reader(dataset_json: dict, example_file: str) -> Any:
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    try:
        return determine_reader_writer_from_dataset_json(dataset_json, example_file, verbose=False)()
    except (RuntimeError, ValueError, KeyError, AssertionError) as e:
        raise EvaluationError(f"no nnU-Net reader for {example_file}: {e}") from None


def _instance_files(folder: str | None, cases: Iterable[str]) -> dict[str, str]:
    if folder is None:
        return {}
    require_folder(folder, "instance map folder")
    return {c: os.path.join(folder, f"{c}.png") for c in cases if os.path.isfile(os.path.join(folder, f"{c}.png"))}


def evaluate_crossval(
    dataset: str | int,
    trainer: str,
    configuration: str,
    plans: str = "nnUNetPlans",
    folds: Iterable[int | str] = (0, 1, 2, 3, 4),
    output_folder: str | None = None,
    num_processes: int = 1,
    empty_penalty: PenaltyLike = "diagonal",
    compare_paper: str | None = None,
    kernel: int | None = None,
    hd95_definition: str = "directed-max",
    metrics: str | None = None,
    challenge: str | None = None,
) -> dict:
    """Evaluate an nnU-Net cross-validation (validation predictions of each fold).

    Args:
        dataset: data set id or name (``"2"``, ``2``, ``"Dataset002_X"``).
        trainer, configuration, plans: identify ``TRAINER__PLANS__CONFIG``.
        folds: folds to read (``fold_k/validation``).
        output_folder: default ``<model folder>/crossval_deconver_eval``.
        num_processes: worker processes (1: in this process).
        empty_penalty: HD95 when exactly one mask is empty (``"diagonal"``, ``"brats"``, number).
        compare_paper: ``isles22``, ``brats23``, ``glas`` or ``fives`` to add the paper's rows.
        kernel: 3 or 5 to show only that paper row (and the difference); both if None.
        hd95_definition: ``"directed-max"`` (the paper's) or ``"pooled"``.
        metrics: ``paper``, ``challenge`` or ``all``; default ``all`` when the challenge is known.
        challenge: ``brats23``, ``isles22``, ``glas`` or ``fives``; default from the data set name.

    Returns:
        The summary dict (also written as JSON, with the CSV and Markdown files beside it).
    """
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw, nnUNet_results
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    from nnunet_deconver.evaluation.discovery import case_files, crossval_inventory, read_splits, warn_inventory

    for var in (nnUNet_raw, nnUNet_results):
        if not var.is_set():
            raise EvaluationError(f"environment variable {var.env_var_name} is not set")
    try:
        dataset_name = maybe_convert_to_dataset_name(str(dataset))
    except (RuntimeError, ValueError) as e:
        raise EvaluationError(f"cannot resolve data set {dataset!r}: {one_line(e)}") from None
    model_folder = get_output_folder(dataset_name, trainer, plans, configuration)
    if not os.path.isdir(model_folder):
        raise EvaluationError(f"results folder not found: {model_folder}")
    raw_folder = os.path.join(nnUNet_raw.get(), dataset_name)
    labels_folder = os.path.join(raw_folder, "labelsTr")
    if not os.path.isdir(labels_folder):
        raise EvaluationError(f"reference folder not found: {labels_folder}")
    dj_candidates = [os.path.join(model_folder, "dataset.json"), os.path.join(raw_folder, "dataset.json")]
    dj_file = next((p for p in dj_candidates if os.path.lexists(p)), None)
    if dj_file is None:
        raise EvaluationError("dataset.json not found: looked for " + " and ".join(dj_candidates))
    spec = read_dataset_json(dj_file)
    paper_metrics, key = choose_metrics(metrics, challenge, compare_paper, dataset_name, spec.name)
    refs = case_files(labels_folder, spec.file_ending, "reference folder")
    if not refs:
        raise EvaluationError(f"no reference files ending in {spec.file_ending} in {labels_folder}")
    splits, splits_file = None, None
    if nnUNet_preprocessed.is_set():
        sp = os.path.join(nnUNet_preprocessed.get(), dataset_name, "splits_final.json")
        if os.path.lexists(sp):
            splits, splits_file = read_splits(sp), sp
    inv = crossval_inventory(model_folder, refs, spec.file_ending, [str(f) for f in folds], splits, splits_file)
    warn_inventory(inv)
    instances = os.path.join(raw_folder, "instancesTr") if key == "glas" else None
    if instances is not None and not os.path.isdir(instances):
        instances = None
    identifier = os.path.basename(model_folder)
    job = Job(
        mode="crossval", title=f"{dataset_name} — {identifier}, cross-validation", inventory=inv, spec=spec,
        reader=_reader(spec.content, next(iter(refs.values()))), empty_penalty=EmptyPenalty.parse(empty_penalty),
        hd95_definition=hd95_definition, paper_metrics=paper_metrics, challenge=key,
        instance_files=_instance_files(instances, refs), compare_paper=compare_paper, kernel=kernel,
        output_folder=output_folder or os.path.join(model_folder, DEFAULT_CROSSVAL_SUBFOLDER),
        num_processes=num_processes,
        extra={"dataset": dataset_name, "trainer": trainer, "plans": plans, "configuration": configuration,
               "model_folder": model_folder, "reference_folder": labels_folder, "dataset_json": dj_file,
               "instance_folder": instances},
    )
    return run_job(job)


def evaluate_folders(
    prediction_folder: str,
    reference_folder: str,
    dataset_json_file: str,
    output_folder: str | None = None,
    num_processes: int = 1,
    empty_penalty: PenaltyLike = "diagonal",
    compare_paper: str | None = None,
    kernel: int | None = None,
    hd95_definition: str = "directed-max",
    metrics: str | None = None,
    challenge: str | None = None,
    instance_folder: str | None = None,
) -> dict:
    """Evaluate a folder of predictions against a folder of references (same file names).

    File ending and labels/regions come from ``dataset_json_file``. Output folder default:
    ``<prediction_folder>/deconver_eval``. ``instance_folder``: GlaS reference instance maps
    (``CASE.png``); without it the reference's connected components are used, with a warning.
    See :func:`evaluate_crossval` for the other arguments.
    """
    from nnunet_deconver.evaluation.discovery import case_files, folders_inventory, warn_inventory

    require_folder(prediction_folder, "prediction folder")
    require_folder(reference_folder, "reference folder")
    spec = read_dataset_json(dataset_json_file)
    paper_metrics, key = choose_metrics(metrics, challenge, compare_paper, spec.name)
    refs = case_files(reference_folder, spec.file_ending, "reference folder")
    if not refs:
        raise EvaluationError(f"no reference files ending in {spec.file_ending} in {reference_folder}")
    preds = case_files(prediction_folder, spec.file_ending, "prediction folder")
    inv = folders_inventory(preds, refs)
    warn_inventory(inv, what="set")
    name = spec.name or os.path.basename(os.path.abspath(prediction_folder))
    job = Job(
        mode="folders", title=f"{name} — {os.path.abspath(prediction_folder)}", inventory=inv, spec=spec,
        reader=_reader(spec.content, next(iter(refs.values()))), empty_penalty=EmptyPenalty.parse(empty_penalty),
        hd95_definition=hd95_definition, paper_metrics=paper_metrics, challenge=key,
        instance_files=_instance_files(instance_folder if key == "glas" else None, refs),
        compare_paper=compare_paper, kernel=kernel,
        output_folder=output_folder or os.path.join(prediction_folder, DEFAULT_FOLDERS_SUBFOLDER),
        num_processes=num_processes,
        extra={"prediction_folder": os.path.abspath(prediction_folder),
               "reference_folder": os.path.abspath(reference_folder),
               "dataset_json": os.path.abspath(dataset_json_file),
               "instance_folder": os.path.abspath(instance_folder) if instance_folder else None},
    )
    if key == "glas" and instance_folder is None:
        warn("GlaS object metrics without --instances: the reference glands are the connected components "
             "of the reference masks (touching glands count as one)")
    return run_job(job)
