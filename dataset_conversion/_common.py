"""Machinery shared by the four conversion scripts.

A script describes its data set with a :class:`DatasetDefinition` (how to find the cases in the raw
folder, how to convert one case, how to stratify the cross-validation) and hands it to
:func:`convert_dataset`, which does everything else the same way for all four:

1. check the output target (refuse a RAW_FOLDER that overlaps it, an existing data set without
   ``--overwrite``, an output folder that cannot be written);
2. discover the cases (layout problems such as missing or duplicate files, or case ids equal up to
   letter case, are collected, not raised one by one, so that a dry run can list them all; files
   of no case are warnings);
3. read, validate and convert every case, in worker processes with a progress bar, into a hidden
   temporary folder next to the target (:mod:`dataset_conversion._output`: locked, removed on
   failure, Ctrl-C and SIGTERM); every problem of every case is collected;
4. only when all cases passed: write ``dataset.json`` (nnU-Net's ``generate_dataset_json``), the
   stratified ``splits_final.json`` and ``case_metadata.json``, then move the folder into place
   without replacing anything that appeared meanwhile (an older data set is renamed aside first
   and deleted last, with ``--overwrite``).

This module imports only the standard library at import time, so that ``nnunet-deconver`` can
register its subcommands cheaply.
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Sequence, TextIO

# discovery helpers, imported from here by the four data set scripts
from dataset_conversion._discovery import (find_layout_root, list_folder, nifti_files, pick_single,  # noqa: F401
                                           visible_children)
from dataset_conversion._errors import ConversionError
from nnunet_deconver.errors import os_error_message
from dataset_conversion._output import (atomic_output_folder, existing_target_problem, overlap_problem,
                                        writable_problem)
from nnunet_deconver.signals import Terminated, ignore_sigint_in_worker, interruption_exit, termination_raises

#: Default seed of the cross-validation split (``--seed``).
DEFAULT_SEED = 12345
#: nnU-Net trains five folds.
N_FOLDS = 5
#: File beside ``dataset.json`` that records each case's origin, grade / category, stratum and fold.
METADATA_FILE = "case_metadata.json"
#: Scripts of the four data sets, by the name ``nnunet-deconver convert`` takes.
DATASET_MODULES: dict[str, str] = {
    "isles22": "dataset_conversion.Dataset501_ISLES22",
    "brats23": "dataset_conversion.Dataset502_BraTS23",
    "glas": "dataset_conversion.Dataset503_GlaS",
    "fives": "dataset_conversion.Dataset504_FIVES",
}
#: DatasetDefinition fields of a 2D RGB data set: one three-channel PNG per case read by nnU-Net's
#: NaturalImage2DIO, channels named as in nnU-Net's own Dataset120_RoadSegmentation.
NATURAL_IMAGE_2D: dict[str, Any] = {"channel_names": {0: "R", 1: "G", 2: "B"}, "file_ending": ".png",
                                    "reader_writer": "NaturalImage2DIO"}
#: At most this many problems are spelled out in an error message.
MAX_LISTED_PROBLEMS = 30


@dataclass(frozen=True)
class Case:
    """One training case as found in the raw folder.

    ``images`` are the source files in nnU-Net channel order (``_0000``, ``_0001``, ...; a 2D RGB
    image is one file holding three channels); ``metadata`` holds what discovery already knows
    (origin, grade, category, ...).
    """

    case_id: str
    images: tuple[Path, ...]
    label: Path
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Discovery:
    """Result of scanning a raw folder: the complete cases, the problems found on the way (they stop
    the conversion) and warnings (files or folders that belong to no case; reported, not fatal)."""

    cases: list[Case] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CaseResult:
    """What converting (or, in a dry run, validating) one case measured, e.g. its lesion volume."""

    case_id: str
    metadata: dict[str, Any] = field(default_factory=dict)


StrataFunction = Callable[[Sequence[Case], Mapping[str, CaseResult]], dict[str, str]]


@dataclass(frozen=True)
class DatasetDefinition:
    """Everything :func:`convert_dataset` needs to know about one data set.

    ``convert_case(case, out_folder)`` reads and validates one case (raising
    :class:`ConversionError`) and, when ``out_folder`` is not None, writes its images to
    ``out_folder/imagesTr`` and its label to ``out_folder/labelsTr``. It runs in worker processes,
    so it must be a module-level function.
    """

    key: str
    default_id: int
    name: str
    title: str
    expected_layout: str
    channel_names: Mapping[int, str]
    labels: Mapping[str, int | tuple[int, ...]]
    file_ending: str
    discover: Callable[[Path], Discovery]
    convert_case: Callable[[Case, Path | None], CaseResult]
    strata: StrataFunction
    stratified_by: str
    reference: str
    licence: str
    description: str
    regions_class_order: tuple[int, ...] | None = None
    reader_writer: str | None = None


# --------------------------------------------------------------------------------------------
# Stratified cross-validation
# --------------------------------------------------------------------------------------------


def quantile_strata(values: Mapping[str, float], n_bins: int, prefix: str) -> dict[str, str]:
    """Assign each case to one of ``n_bins`` equal-count bins of ``values`` (quartiles, tertiles).

    Cases are ranked by (value, case id), so ties are broken deterministically; bin ``i`` (named
    ``f"{prefix}{i + 1}"``) holds ranks ``[i * n / n_bins, (i + 1) * n / n_bins)``.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    ranked = sorted(values, key=lambda case: (values[case], case))
    n = len(ranked)
    return {case: f"{prefix}{rank * n_bins // n + 1}" for rank, case in enumerate(ranked)}


def stratified_kfold(strata: Mapping[str, Hashable], n_folds: int = N_FOLDS,
                     seed: int = DEFAULT_SEED) -> list[dict[str, list[str]]]:
    """Stratified ``n_folds``-fold cross-validation in nnU-Net's ``splits_final.json`` format.

    ``strata`` maps each case id to its stratum. Within each stratum (taken in sorted order) the
    cases are shuffled with ``random.Random(seed)`` and dealt to the folds in turn, continuing
    where the previous stratum stopped. Hence every case is in exactly one validation fold, each
    fold holds floor or ceil of (stratum size / n_folds) cases of every stratum, and fold sizes
    differ by at most one. The result depends only on ``strata``, ``n_folds`` and ``seed``.
    """
    if n_folds < 2:
        raise ValueError("n_folds must be at least 2")
    if len(strata) < n_folds:
        raise ConversionError(f"{len(strata)} cases cannot be split into {n_folds} cross-validation folds: "
                              f"at least {n_folds} cases are needed")
    rng = random.Random(seed)
    by_stratum: dict[str, list[str]] = {}
    for case, stratum in strata.items():
        by_stratum.setdefault(str(stratum), []).append(case)
    fold_of: dict[str, int] = {}
    next_fold = 0
    for stratum in sorted(by_stratum):
        members = sorted(by_stratum[stratum])
        rng.shuffle(members)
        for case in members:
            fold_of[case] = next_fold
            next_fold = (next_fold + 1) % n_folds
    cases = sorted(fold_of)
    return [{"train": [c for c in cases if fold_of[c] != k], "val": [c for c in cases if fold_of[c] == k]}
            for k in range(n_folds)]


def metadata_strata(key: str) -> StrataFunction:
    """Strata read from each case's discovery metadata (GlaS grade, FIVES category)."""

    def strata(cases: Sequence[Case], results: Mapping[str, CaseResult]) -> dict[str, str]:
        return {case.case_id: str(case.metadata[key]) for case in cases}

    return strata


def volume_strata(key: str, n_bins: int, prefix: str) -> StrataFunction:
    """Quantile strata of a volume measured during conversion (ISLES lesion, BraTS whole tumour)."""

    def strata(cases: Sequence[Case], results: Mapping[str, CaseResult]) -> dict[str, str]:
        return quantile_strata({case.case_id: float(results[case.case_id].metadata[key]) for case in cases},
                               n_bins, prefix)

    return strata


# --------------------------------------------------------------------------------------------
# Output folder
# --------------------------------------------------------------------------------------------


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name, e.g. ``Dataset501_ISLES22``."""
    return f"Dataset{dataset_id:03d}_{name}"


def resolve_output_root(output_root: str | os.PathLike | None) -> Path:
    """``--output-root`` if given, else ``$nnUNet_raw``."""
    if output_root is not None:
        return Path(output_root).expanduser()
    value = os.environ.get("nnUNet_raw")
    if not value:
        raise ConversionError("nnUNet_raw is not set: export nnUNet_raw=/path/to/nnUNet_raw (see nnU-Net's "
                              "documentation/setting_up_paths.md) or pass --output-root.")
    return Path(value).expanduser()


def output_target_problem(target: Path, overwrite: bool) -> str | None:
    """Why ``target`` must not be written, or None.

    Refuses an existing data set without ``overwrite`` and a different data set with the same id
    in the output root or ``$nnUNet_preprocessed`` (nnU-Net cannot tell them apart).
    """
    problem = existing_target_problem(target, overwrite, allow_empty=False)
    if problem:
        return problem.replace("output ", "output data set ", 1)
    prefix = target.name.split("_", 1)[0] + "_"
    roots = [target.parent]
    if os.environ.get("nnUNet_preprocessed"):
        roots.append(Path(os.environ["nnUNet_preprocessed"]))
    for root in roots:
        try:
            if not root.is_dir():
                continue
            clashes = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix)
                             and p.name != target.name)
        except OSError as exc:
            return os_error_message(exc, "list the folder", root)
        if clashes:
            return (f"{root} already holds {', '.join(clashes)} with the id of {target.name}; nnU-Net needs "
                    f"unique ids: choose another --dataset-id or remove the other data set")
    return None


# --------------------------------------------------------------------------------------------
# Running cases in parallel
# --------------------------------------------------------------------------------------------


def parallel_map(func: Callable[[Any], Any], items: Sequence[Any], num_workers: int = 1, desc: str = "",
                 progress: bool = True) -> list[Any]:
    """``[func(item) for item in items]`` in ``num_workers`` spawned processes, with a tqdm bar.

    Order is preserved. ``num_workers <= 1`` runs in this process. ``func`` must be picklable
    (a module-level function) when workers are used.
    """
    from tqdm import tqdm

    items = list(items)
    results: list[Any] = []
    with tqdm(total=len(items), desc=desc, unit="case", disable=not progress, file=sys.stderr) as progress_bar:
        if num_workers <= 1 or len(items) <= 1:
            for item in items:
                results.append(func(item))
                progress_bar.update()
            return results
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(min(num_workers, len(items)),
                                                       initializer=ignore_sigint_in_worker) as pool:
            for result in pool.imap(func, items):
                results.append(result)
                progress_bar.update()
    return results


def _run_case(task: tuple[Callable[[Case, Path | None], CaseResult], Case, Path | None]
              ) -> tuple[CaseResult | None, str | None]:
    """Worker: convert one case, turning its :class:`ConversionError` into a problem string."""
    convert_case, case, out_folder = task
    try:
        return convert_case(case, out_folder), None
    except ConversionError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"{case.case_id}: {os_error_message(exc)}"


def process_cases(definition: DatasetDefinition, cases: Sequence[Case], out_folder: Path | None,
                  num_workers: int, progress: bool) -> tuple[dict[str, CaseResult], list[str]]:
    """Run ``definition.convert_case`` on all cases; return the results and the problems."""
    tasks = [(definition.convert_case, case, out_folder) for case in cases]
    desc = f"{'checking' if out_folder is None else 'converting'} {definition.title}"
    outcomes = parallel_map(_run_case, tasks, num_workers, desc, progress)
    results = {r.case_id: r for r, _ in outcomes if r is not None}
    return results, [problem for _, problem in outcomes if problem is not None]


def format_problems(problems: Sequence[str], header: str) -> str:
    """A header line and the problems as a bullet list (at most :data:`MAX_LISTED_PROBLEMS`)."""
    lines = [header] + [f"  - {p}" for p in problems[:MAX_LISTED_PROBLEMS]]
    if len(problems) > MAX_LISTED_PROBLEMS:
        lines.append(f"  ... and {len(problems) - MAX_LISTED_PROBLEMS} more")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The conversion
# --------------------------------------------------------------------------------------------


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
    return {"dataset": folder_name, "source": definition.title, "stratified_by": definition.stratified_by,
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
        converted_by=f"nnunet-deconver (dataset_conversion, {definition.key})",
        **extra,
    )
    save_json(splits, str(folder / "splits_final.json"), sort_keys=False)
    save_json(build_metadata(definition, folder_name, raw, cases, results, strata, splits, seed),
              str(folder / METADATA_FILE), sort_keys=False)


def _print_lines(lines: Sequence[str], prefix: str, out: TextIO) -> None:
    for line in lines:
        print(f"{prefix}: {line}", file=out)


def _dry_run_report(definition: DatasetDefinition, raw: Path, target: Path, cases: Sequence[Case],
                    results: Mapping[str, CaseResult], problems: Sequence[str], warnings: Sequence[str], seed: int,
                    out: TextIO) -> int:
    print(f"[dry run] {definition.title}: {raw} -> {target} (nothing is written)", file=out)
    print(f"{len(cases)} case(s) found:", file=out)
    for case in cases:
        sources = ", ".join(relative_to(p, raw) for p in case.images)
        print(f"  {case.case_id}: {sources} | label {relative_to(case.label, raw)}", file=out)
    valid = [c for c in cases if c.case_id in results]
    if not problems and len(valid) >= N_FOLDS:
        strata = definition.strata(valid, results)
        splits = stratified_kfold(strata, N_FOLDS, seed)
        counts = ", ".join(f"{s}: {n}" for s, n in sorted(Counter(strata.values()).items()))
        print(f"strata ({definition.stratified_by}): {counts}", file=out)
        print(f"validation fold sizes (seed {seed}): {', '.join(str(len(s['val'])) for s in splits)}", file=out)
    _print_lines(warnings, "warning", out)
    if problems:
        print(format_problems(problems, f"{len(problems)} problem(s) found:"), file=out)
        return 1
    print("no problems found", file=out)
    return 0


def case_id_problems(cases: Sequence[Case]) -> list[str]:
    """Case ids used twice, or equal up to letter case (one subject would land in two folds)."""
    problems = [f"{k}: two cases with the same identifier"
                for k, n in sorted(Counter(c.case_id for c in cases).items()) if n > 1]
    by_folded: dict[str, list[Case]] = {}
    for case in cases:
        by_folded.setdefault(case.case_id.casefold(), []).append(case)
    for group in by_folded.values():
        if len({c.case_id for c in group}) > 1:
            listed = ", ".join(f"{c.case_id} ({c.label})" for c in group)
            problems.append(f"case ids that differ only in letter case: {listed}; the same subject twice would "
                            f"sit in a training and a validation fold. Remove or rename one of them")
    return problems


def target_problems(raw: Path, target: Path, overwrite: bool) -> list[str]:
    """Why the conversion of ``raw`` must not write ``target``: overlap, existing data set, not writable."""
    overlap = overlap_problem(raw, target, "RAW_FOLDER", "output data set")
    if overlap:
        return [overlap]
    problems = [output_target_problem(target, overwrite), writable_problem(target.parent)]
    return [p for p in problems if p]


def convert_dataset(definition: DatasetDefinition, raw_folder: str | os.PathLike, *,
                    dataset_id: int | None = None, output_root: str | os.PathLike | None = None,
                    overwrite: bool = False, dry_run: bool = False, num_workers: int = 1,
                    seed: int = DEFAULT_SEED, progress: bool = True, out: TextIO | None = None) -> int:
    """Convert ``raw_folder`` into ``<output root>/DatasetXXX_Name``; return an exit code.

    Raises :class:`ConversionError` (nothing written, an existing data set untouched) when any
    input is bad or the target is refused. With ``dry_run`` prints the cases, warnings and all
    problems found and returns 1 if there are problems, 0 otherwise, writing nothing.
    """
    out = out or sys.stdout
    raw = Path(raw_folder).expanduser()
    dataset_id = definition.default_id if dataset_id is None else dataset_id
    folder_name = dataset_folder_name(dataset_id, definition.name)
    target = resolve_output_root(output_root) / folder_name
    refused = target_problems(raw, target, overwrite)
    if refused and not dry_run:
        raise ConversionError(refused[0])

    try:
        discovery = definition.discover(raw)
    except OSError as exc:
        raise ConversionError(os_error_message(exc, "read")) from None
    cases = sorted(discovery.cases, key=lambda c: c.case_id)
    problems = refused + list(discovery.problems) + case_id_problems(cases)
    if not cases and not problems:
        raise ConversionError(f"no {definition.title} cases found in {raw}.\n"
                              f"Expected layout:\n{definition.expected_layout}")
    if 0 < len(cases) < N_FOLDS and not discovery.problems:
        problems.append(f"only {len(cases)} case(s) found in {raw}: {N_FOLDS}-fold cross-validation needs "
                        f"at least {N_FOLDS}")

    if dry_run:
        results, case_problems = process_cases(definition, cases, None, num_workers, progress)
        return _dry_run_report(definition, raw, target, cases, results, problems + case_problems,
                               discovery.warnings, seed, out)

    if problems:
        raise ConversionError(format_problems(problems, f"{len(problems)} problem(s) in {raw}; nothing was "
                                                        f"written:"))
    notes: list[str] = []
    try:
        with atomic_output_folder(target, overwrite, notes=notes) as tmp:
            (tmp / "imagesTr").mkdir()
            (tmp / "labelsTr").mkdir()
            results, case_problems = process_cases(definition, cases, tmp, num_workers, progress)
            if case_problems:
                raise ConversionError(format_problems(
                    case_problems, f"{len(case_problems)} problem(s) in {raw}; nothing was written:"))
            try:
                write_dataset_files(definition, tmp, folder_name, raw, cases, results, seed)
            except OSError as exc:
                raise ConversionError(os_error_message(exc, "write")) from None
    finally:
        _print_lines(notes, "note", out)
    print(f"{definition.title}: converted {len(cases)} cases into {target} "
          f"(stratified by {definition.stratified_by}, seed {seed})", file=out)
    _print_lines(discovery.warnings, "warning", out)
    return 0


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _dataset_id(text: str) -> int:
    if not re.fullmatch(r"\d{1,3}", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"dataset id must be an integer from 1 to 999, got {text!r}")
    return int(text)


def _positive_int(text: str) -> int:
    if not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def default_workers() -> int:
    """Default ``-j``: the CPU count, at most 8 (nnU-Net's default)."""
    return max(1, min(8, os.cpu_count() or 1))


def add_conversion_arguments(parser: argparse.ArgumentParser, default_id: int | None = None) -> None:
    """Arguments common to the four scripts and ``nnunet-deconver convert``."""
    parser.add_argument("raw_folder", metavar="RAW_FOLDER", type=Path,
                        help="the data set as downloaded and unpacked")
    id_default = f"{default_id}" if default_id is not None else "501 / 502 / 503 / 504"
    parser.add_argument("--dataset-id", type=_dataset_id, default=None,
                        help=f"nnU-Net data set id (default: {id_default})")
    parser.add_argument("--output-root", type=Path, default=None,
                        help="folder to write DatasetXXX_Name into (default: $nnUNet_raw)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output data set (swapped in only once complete)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check all inputs, print what would be converted and the problems found; write nothing")
    parser.add_argument("-j", "--num-workers", type=_positive_int, default=default_workers(),
                        help="worker processes (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="seed of the stratified 5-fold split (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_brats_labels_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the BraTS back-conversion (``nnunet-deconver brats-labels``)."""
    parser.add_argument("input_folder", metavar="IN_FOLDER", type=Path,
                        help="nnU-Net predictions (.nii.gz, labels 0-3 of Dataset502_BraTS23)")
    parser.add_argument("output_folder", metavar="OUT_FOLDER", type=Path,
                        help="where to write the same files with BraTS labels (must differ from IN_FOLDER; "
                             "written all at once: nothing appears there unless every file converts)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing non-empty OUT_FOLDER (swapped in only once complete)")
    parser.add_argument("-j", "--num-workers", type=_positive_int, default=default_workers(),
                        help="worker processes (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_definition(key: str) -> DatasetDefinition:
    """The :class:`DatasetDefinition` of ``isles22`` / ``brats23`` / ``glas`` / ``fives``."""
    return importlib.import_module(DATASET_MODULES[key]).DEFINITION


def report_errors(func: Callable[[], int]) -> int:
    """Run ``func`` with SIGTERM raising; print errors in one message and return an exit code.

    A :class:`ConversionError` or :class:`OSError` prints ``error: ...`` and gives 1; Ctrl-C and
    SIGTERM (after the ``with`` blocks have removed their temporary folders) print one line and give
    130 / 143.
    """
    try:
        with termination_raises():
            return func()
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {os_error_message(exc)}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as exc:
        return interruption_exit(exc, "error", "; stopped before completion, nothing was written")


def run_from_args(definition: DatasetDefinition, args: argparse.Namespace) -> int:
    """Run a conversion from parsed arguments; errors are printed, not raised."""
    return report_errors(lambda: convert_dataset(
        definition, args.raw_folder, dataset_id=args.dataset_id, output_root=args.output_root,
        overwrite=args.overwrite, dry_run=args.dry_run, num_workers=args.num_workers, seed=args.seed,
        progress=not args.no_progress))


def script_main(key: str, argv: Sequence[str] | None = None) -> int:
    """``main()`` of the ``DatasetXXX_*`` scripts."""
    definition = load_definition(key)
    module = DATASET_MODULES[key].rsplit(".", 1)[1]
    parser = argparse.ArgumentParser(
        prog=f"python -m dataset_conversion.{module}",
        description=f"Convert {definition.title} into nnU-Net's raw format "
                    f"($nnUNet_raw/{dataset_folder_name(definition.default_id, definition.name)}).",
        epilog=f"Expected layout of RAW_FOLDER:\n{definition.expected_layout}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_conversion_arguments(parser, definition.default_id)
    return run_from_args(definition, parser.parse_args(argv))
