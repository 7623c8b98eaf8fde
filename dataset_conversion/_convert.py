"""One conversion, the same way for all four data sets.

A script describes its data set with a :class:`~dataset_conversion._model.DatasetDefinition` and
hands it to :func:`convert_dataset`, which:

1. checks the output target (:mod:`dataset_conversion._target`: refuses a RAW_FOLDER that overlaps
   it, an existing data set without ``--overwrite``, an id clash, a folder that cannot be written);
2. discovers the cases (layout problems such as missing or duplicate files, or case ids equal up to
   letter case, are collected, not raised one by one, so that a dry run can list them all; files
   of no case are warnings);
3. reads, validates and converts every case (:mod:`dataset_conversion._pool`: worker processes, a
   progress bar) into a hidden temporary folder next to the target (:mod:`dataset_conversion._output`:
   locked, removed on failure, Ctrl-C and SIGTERM); every problem of every case is collected;
4. only when all cases passed: writes ``dataset.json``, ``splits_final.json`` and
   ``case_metadata.json`` (:mod:`dataset_conversion._metadata`), then moves the folder into place
   without replacing anything that appeared meanwhile (an older data set is renamed aside first
   and deleted last, with ``--overwrite``).

With ``--dry-run`` steps 1-3 only validate and :func:`dry_run_report` prints what was found.
Standard library only at import time.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence, TextIO

from dataset_conversion._metadata import relative_to, write_dataset_files
from dataset_conversion._model import Case, CaseResult, ConversionError, DatasetDefinition, format_problems
from dataset_conversion._output import atomic_output_folder
from dataset_conversion._pool import process_cases
from dataset_conversion._splits import DEFAULT_SEED, N_FOLDS, stratified_kfold
from dataset_conversion._target import resolve_output_root, target_problems
from nnunet_deconver.errors import os_error_message
from nnunet_deconver.paper import dataset_folder_name


def _print_lines(lines: Sequence[str], prefix: str, out: TextIO) -> None:
    for line in lines:
        print(f"{prefix}: {line}", file=out)


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


def dry_run_report(definition: DatasetDefinition, raw: Path, target: Path, cases: Sequence[Case],
                   results: Mapping[str, CaseResult], problems: Sequence[str], warnings: Sequence[str], seed: int,
                   out: TextIO) -> int:
    """Print the cases, the strata and fold sizes (when every case is valid), the warnings and the
    problems of a dry run; return 1 if there are problems, else 0."""
    print(f"[dry run] {definition.paper.title}: {raw} -> {target} (nothing is written)", file=out)
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
    dataset_id = definition.paper.dataset_id if dataset_id is None else dataset_id
    folder_name = dataset_folder_name(dataset_id, definition.paper.name)
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
        raise ConversionError(f"no {definition.paper.title} cases found in {raw}.\n"
                              f"Expected layout:\n{definition.expected_layout}")
    if 0 < len(cases) < N_FOLDS and not discovery.problems:
        problems.append(f"only {len(cases)} case(s) found in {raw}: {N_FOLDS}-fold cross-validation needs "
                        f"at least {N_FOLDS}")

    if dry_run:
        results, case_problems = process_cases(definition, cases, None, num_workers, progress)
        return dry_run_report(definition, raw, target, cases, results, problems + case_problems,
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
    print(f"{definition.paper.title}: converted {len(cases)} cases into {target} "
          f"(stratified by {definition.stratified_by}, seed {seed})", file=out)
    _print_lines(discovery.warnings, "warning", out)
    return 0
