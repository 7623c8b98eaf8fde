"""Running the cases of a conversion (or the files of a back-conversion) in worker processes.

Workers are spawned (not forked: the parent may hold SimpleITK / torch threads) and ignore Ctrl-C,
which the main process handles for all of them. A case's :class:`ConversionError` or
:class:`OSError` becomes a problem string, so that one run reports every bad case, not the first.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from dataset_conversion._model import Case, CaseResult, ConversionError, DatasetDefinition
from nnunet_deconver.errors import os_error_message
from nnunet_deconver.signals import ignore_sigint_in_worker


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


def run_case(task: tuple[Callable[[Case, Path | None], CaseResult], Case, Path | None]
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
    """Run ``definition.convert_case`` on all cases; return the results and the problems.

    ``out_folder`` None only validates (the dry run).
    """
    tasks = [(definition.convert_case, case, out_folder) for case in cases]
    desc = f"{'checking' if out_folder is None else 'converting'} {definition.paper.title}"
    outcomes = parallel_map(run_case, tasks, num_workers, desc, progress)
    results = {r.case_id: r for r, _ in outcomes if r is not None}
    return results, [problem for _, problem in outcomes if problem is not None]
