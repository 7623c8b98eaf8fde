"""Machinery shared by the four conversion scripts.

A script describes its data set with a :class:`DatasetDefinition` (how to find the cases in the raw
folder, how to convert one case, how to stratify the cross-validation) and hands it to
:func:`convert_dataset`, which does everything else the same way for all four:

1. check the output target (refuse an existing data set without ``--overwrite``);
2. discover the cases (layout problems such as missing or duplicate files are collected, not
   raised one by one, so that a dry run can list them all);
3. read, validate and convert every case, in worker processes with a progress bar, into a hidden
   temporary folder next to the target; every problem of every case is collected;
4. only when all cases passed: write ``dataset.json`` (nnU-Net's ``generate_dataset_json``), the
   stratified ``splits_final.json`` and ``case_metadata.json``, then move the folder into place
   (an older data set is renamed aside first and deleted last).

This module imports only the standard library at import time, so that ``nnunet-deconver`` can
register its subcommands cheaply.
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import re
import secrets
import shutil
import sys
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Mapping, Sequence, TextIO

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


class ConversionError(Exception):
    """Bad input or refused output.

    The message names the file or case and what is wrong with it; the command-line entry points
    print it and exit non-zero without a traceback.
    """


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
    """Result of scanning a raw folder: the complete cases and the problems found on the way."""

    cases: list[Case] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


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
# Small helpers for discovery
# --------------------------------------------------------------------------------------------


def is_hidden(path: Path) -> bool:
    """True for dot files, including the ``._name`` companions that macOS puts into archives."""
    return path.name.startswith(".")


def visible_children(folder: Path, *, dirs: bool) -> list[Path]:
    """Sorted non-hidden sub-folders (``dirs=True``) or files (``dirs=False``) of ``folder``."""
    return sorted(p for p in folder.iterdir() if not is_hidden(p) and p.is_dir() == dirs)


def find_layout_root(raw: Path, looks_right: Callable[[Path], bool], definition_title: str,
                     expected_layout: str) -> Path:
    """The folder holding the data set: ``raw`` itself or its only sub-folder that looks right.

    Archives often unpack into one extra folder (``ASNR-MICCAI-BraTS2023-GLI-Challenge-
    TrainingData/``, ``Warwick QU Dataset (Released 2016_07_08)/``): both are accepted.
    """
    if not raw.is_dir():
        raise ConversionError(f"raw folder {raw} does not exist or is not a folder.\n"
                              f"Expected the {definition_title} layout:\n{expected_layout}")
    if looks_right(raw):
        return raw
    candidates = [d for d in visible_children(raw, dirs=True) if looks_right(d)]
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        names = ", ".join(d.name for d in candidates)
        raise ConversionError(f"{raw} holds several folders that look like {definition_title} ({names}); "
                              f"point RAW_FOLDER at one of them.")
    content = "it is empty" if not any(raw.iterdir()) else "no matching files or folders were found"
    raise ConversionError(f"{raw} does not hold the {definition_title} data set: {content}.\n"
                          f"Expected layout:\n{expected_layout}")


def pick_single(found: Sequence[Path], case_id: str, what: str, where: str) -> tuple[Path | None, str | None]:
    """``(file, None)`` when exactly one file was found, else ``(None, problem)``."""
    if not found:
        return None, f"{case_id}: missing {what} (nothing matching in {where})"
    if len(found) > 1:
        names = ", ".join(str(p) for p in sorted(found))
        return None, f"{case_id}: two files for the same case's {what}: {names}"
    return found[0], None


def nifti_files(folder: Path, suffix: str, *, recursive: bool) -> list[Path]:
    """Non-hidden ``*{suffix}.nii.gz`` / ``*{suffix}.nii`` files in ``folder``."""
    if not folder.is_dir():
        return []
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    endings = (suffix + ".nii.gz", suffix + ".nii")
    return sorted(p for p in candidates if p.is_file() and not is_hidden(p) and p.name.endswith(endings))


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
    if target.exists() and not overwrite:
        return (f"output data set {target} already exists; pass --overwrite to replace it (the old folder "
                f"is removed only once the new one is complete)")
    prefix = target.name.split("_", 1)[0] + "_"
    roots = [target.parent]
    if os.environ.get("nnUNet_preprocessed"):
        roots.append(Path(os.environ["nnUNet_preprocessed"]))
    for root in roots:
        if not root.is_dir():
            continue
        clashes = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix)
                         and p.name != target.name)
        if clashes:
            return (f"{root} already holds {', '.join(clashes)} with the id of {target.name}; nnU-Net needs "
                    f"unique ids: choose another --dataset-id or remove the other data set")
    return None


@contextmanager
def atomic_output_folder(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary folder next to ``target`` that replaces ``target`` on success.

    On an exception (or Ctrl-C) the temporary folder is deleted and ``target`` is untouched. On
    success an existing ``target`` (allowed only with ``overwrite``) is renamed aside, the new
    folder renamed into place, and only then the old one deleted: there is never a mix of old and
    new files. The temporary names start with a dot, so nnU-Net never mistakes them for a data set.
    """
    if target.exists() and not overwrite:
        raise ConversionError(f"output data set {target} already exists; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = target.parent / f".{target.name}.tmp-{token}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.parent / f".{target.name}.old-{token}"
    if target.exists():
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old.exists():
            os.replace(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


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

        with multiprocessing.get_context("spawn").Pool(min(num_workers, len(items))) as pool:
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


def _dry_run_report(definition: DatasetDefinition, raw: Path, target: Path, cases: Sequence[Case],
                    results: Mapping[str, CaseResult], problems: Sequence[str], seed: int, out: TextIO) -> int:
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
    if problems:
        print(format_problems(problems, f"{len(problems)} problem(s) found:"), file=out)
        return 1
    print("no problems found", file=out)
    return 0


def convert_dataset(definition: DatasetDefinition, raw_folder: str | os.PathLike, *,
                    dataset_id: int | None = None, output_root: str | os.PathLike | None = None,
                    overwrite: bool = False, dry_run: bool = False, num_workers: int = 1,
                    seed: int = DEFAULT_SEED, progress: bool = True, out: TextIO | None = None) -> int:
    """Convert ``raw_folder`` into ``<output root>/DatasetXXX_Name``; return an exit code.

    Raises :class:`ConversionError` (nothing written, an existing data set untouched) when any
    input is bad or the target is refused. With ``dry_run`` prints the cases and all problems found
    and returns 1 if there are problems, 0 otherwise, writing nothing.
    """
    out = out or sys.stdout
    raw = Path(raw_folder).expanduser()
    dataset_id = definition.default_id if dataset_id is None else dataset_id
    folder_name = dataset_folder_name(dataset_id, definition.name)
    target = resolve_output_root(output_root) / folder_name
    target_problem = output_target_problem(target, overwrite)
    if target_problem and not dry_run:
        raise ConversionError(target_problem)

    discovery = definition.discover(raw)
    cases = sorted(discovery.cases, key=lambda c: c.case_id)
    problems = ([target_problem] if target_problem else []) + list(discovery.problems)
    duplicates = sorted(k for k, n in Counter(c.case_id for c in cases).items() if n > 1)
    problems += [f"{k}: two cases with the same identifier" for k in duplicates]
    if not cases and not problems:
        raise ConversionError(f"no {definition.title} cases found in {raw}.\n"
                              f"Expected layout:\n{definition.expected_layout}")
    if 0 < len(cases) < N_FOLDS and not discovery.problems:
        problems.append(f"only {len(cases)} case(s) found in {raw}: {N_FOLDS}-fold cross-validation needs "
                        f"at least {N_FOLDS}")

    if dry_run:
        results, case_problems = process_cases(definition, cases, None, num_workers, progress)
        return _dry_run_report(definition, raw, target, cases, results, problems + case_problems, seed, out)

    if problems:
        raise ConversionError(format_problems(problems, f"{len(problems)} problem(s) in {raw}; nothing was "
                                                        f"written:"))
    with atomic_output_folder(target, overwrite) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        results, case_problems = process_cases(definition, cases, tmp, num_workers, progress)
        if case_problems:
            raise ConversionError(format_problems(
                case_problems, f"{len(case_problems)} problem(s) in {raw}; nothing was written:"))
        write_dataset_files(definition, tmp, folder_name, raw, cases, results, seed)
    print(f"{definition.title}: converted {len(cases)} cases into {target} "
          f"(stratified by {definition.stratified_by}, seed {seed})", file=out)
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
                        help="where to write the same files with BraTS labels (must differ from IN_FOLDER)")
    parser.add_argument("-j", "--num-workers", type=_positive_int, default=default_workers(),
                        help="worker processes (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_definition(key: str) -> DatasetDefinition:
    """The :class:`DatasetDefinition` of ``isles22`` / ``brats23`` / ``glas`` / ``fives``."""
    return importlib.import_module(DATASET_MODULES[key]).DEFINITION


def report_errors(func: Callable[[], int]) -> int:
    """Run ``func``; print a :class:`ConversionError` as ``error: ...`` and return 1 instead."""
    try:
        return func()
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


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
