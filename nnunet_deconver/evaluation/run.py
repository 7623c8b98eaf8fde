"""One evaluation run, once the inputs are found: evaluate every case, aggregate, write.

The output folder is checked (created, written to) before the first case is read; if any case
cannot be evaluated, every such problem is reported together and nothing is written (a folder
this run created is removed again).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from nnunet_deconver.evaluation.aggregate import summarize
from nnunet_deconver.evaluation.case import CaseTask, Settings, TargetResult, run_cases
from nnunet_deconver.evaluation.challenge import CHALLENGES
from nnunet_deconver.evaluation.discovery import Inventory, short_list
from nnunet_deconver.evaluation.files import EvaluationError, check_output_folder, warn
from nnunet_deconver.evaluation.metrics import HD95_DEFINITIONS
from nnunet_deconver.evaluation.outputs import result_row, write_outputs
from nnunet_deconver.evaluation.comparison import paper_entries
from nnunet_deconver.evaluation.penalty import EmptyPenalty
from nnunet_deconver.evaluation.render import HD95_NOTES, render_markdown
from nnunet_deconver.evaluation.targets import DatasetSpec, Target

__all__ = ["Job", "run_job"]

NATURAL_IMAGE_READERS = ("NaturalImage2DIO",)
MAX_LISTED_ERRORS = 20


@dataclass
class Job:
    """Everything one run needs: what to evaluate, how, and where the results go."""

    mode: str  # "crossval" or "folders"
    title: str
    inventory: Inventory
    spec: DatasetSpec
    reader: Any
    empty_penalty: EmptyPenalty
    hd95_definition: str
    paper_metrics: bool
    challenge: str | None
    instance_files: dict[str, str]
    compare_paper: str | None
    kernel: int | None
    output_folder: str
    num_processes: int
    extra: dict[str, Any] = field(default_factory=dict)


def _ordered_targets(job: Job) -> tuple[list[Target], list[dict]]:
    targets = list(job.spec.targets)
    if not job.compare_paper:
        return targets, []
    try:
        paper = paper_entries(targets, job.compare_paper, job.kernel)
    except ValueError as e:
        raise EvaluationError(str(e)) from None
    if len(targets) > 1:  # columns in the paper's order (ET, TC, WT) when comparing with it
        order = list(paper[0]["mapping"].values())
        targets.sort(key=lambda t: order.index(t.name))
    return targets, paper


def _evaluate(job: Job, targets: list[Target]) -> tuple[list[TargetResult], list[str]]:
    settings = Settings(tuple(targets), job.spec.ignore_label, job.spec.allowed_values, job.empty_penalty,
                        job.hd95_definition, job.paper_metrics, job.challenge)
    tasks = [CaseTask(g, case, pred, ref, job.reader, settings, job.instance_files.get(case))
             for g, pairs in job.inventory.groups.items() for case, pred, ref in pairs]
    if not tasks:
        raise EvaluationError("no prediction with a matching reference was found; nothing to evaluate")
    results = run_cases(tasks, job.num_processes, desc=job.title.split(" — ")[0])
    errors = [r.error for r in results if r.error]
    if errors:
        listed = "\n  ".join(errors[:MAX_LISTED_ERRORS])
        more = f"\n  ... and {len(errors) - MAX_LISTED_ERRORS} more" if len(errors) > MAX_LISTED_ERRORS else ""
        raise EvaluationError(f"{len(errors)} of {len(tasks)} case(s) could not be evaluated; nothing was "
                              f"written:\n  {listed}{more}")
    warnings = [w for r in results for w in r.warnings]
    if job.challenge == "glas" and job.extra.get("instance_folder"):
        lacking = sorted({t.case for t in tasks} - set(job.instance_files))
        if lacking:
            warnings.append(f"no instance map in {job.extra['instance_folder']} for {len(lacking)} case(s), "
                            f"their reference glands are connected components: {short_list(lacking)}")
    gi = {g: i for i, g in enumerate(job.inventory.requested_groups)}
    ti = {t.name: i for i, t in enumerate(targets)}
    flat = [t for r in results for t in r.targets]
    flat.sort(key=lambda t: (gi.get(t.fold, len(gi)), t.case, ti[t.target]))
    return flat, warnings


def _summary(job: Job, targets: list[Target], paper: list[dict], results: list[TargetResult],
             warnings: list[str]) -> dict[str, Any]:
    groups = job.inventory.requested_groups
    unit = "px" if type(job.reader).__name__ in NATURAL_IMAGE_READERS else "mm"
    p = job.empty_penalty
    summary: dict[str, Any] = {
        "mode": job.mode, "title": job.title, **job.extra,
        "file_ending": job.spec.file_ending, "reader": type(job.reader).__name__,
        "region_based": job.spec.region_based, "ignore_label": job.spec.ignore_label,
        "targets": [{"name": t.name, "label_or_region": t.key, "values": list(t.values)} for t in targets],
        "metrics": "all" if job.paper_metrics and job.challenge else ("paper" if job.paper_metrics else "challenge"),
        "hd95_unit": unit, "hd95_definition": job.hd95_definition,
        "hd95_empty_penalty": p.setting, "hd95_empty_penalty_description": p.description,
        "conventions": {
            "dice": "2|P n R| / (|P| + |R|), a fraction in [0, 1] here (the Markdown table prints %)",
            "surface": "mask voxels with a face neighbour (4-conn. 2D, 6-conn. 3D) outside the mask; "
                       "outside the image counts as outside the mask",
            "hd95": HD95_NOTES[job.hd95_definition] + ", in units of the reference spacing (pixels for "
                    "2D natural images)",
            "both_empty": {"dice": 1.0, "hd95": 0.0},
            "one_empty": {"dice": 0.0, "hd95": p.description},
            "aggregation": "fold mean = mean over the fold's cases; overall = mean and sample std "
                           "(ddof=1) of the fold means; Avg = per-case mean over labels/regions",
        },
        "missing": job.inventory.as_dict(),
        "warnings": warnings,
        "statistics": summarize(results, targets, groups, ("dice", "hd95")) if job.paper_metrics else None,
        "paper": paper,
        "challenge": None,
    }
    if job.challenge:
        ch = CHALLENGES[job.challenge]
        summary["challenge"] = {
            "key": ch.key, "title": ch.title, "source": ch.source,
            "columns": [{"name": c.name, "header": c.header, "kind": c.kind} for c in ch.columns],
            "counts": list(ch.counts),
            "pooled": ch.pool is not None,
            "statistics": summarize(results, targets, groups, [c.name for c in ch.columns], ch.pool),
        }
    return summary


def run_job(job: Job) -> dict[str, Any]:
    """Evaluate, aggregate and write; returns the summary (with ``markdown``, ``output_files``, ``cases``)."""
    if job.hd95_definition not in HD95_DEFINITIONS:
        raise EvaluationError(f"HD95 definition must be one of {HD95_DEFINITIONS}, got {job.hd95_definition!r}")
    targets, paper = _ordered_targets(job)
    if job.challenge == "brats23" and not job.spec.region_based:
        warn("BraTS lesion-wise metrics on a data set without regions: computed per label")
    existed = os.path.isdir(job.output_folder)
    check_output_folder(job.output_folder)
    try:
        results, warnings = _evaluate(job, targets)
    except BaseException:
        if not existed and os.path.isdir(job.output_folder) and not os.listdir(job.output_folder):
            os.rmdir(job.output_folder)
        raise
    for w in warnings:
        warn(w)
    summary = _summary(job, targets, paper, results, warnings)
    summary["markdown"] = render_markdown(summary)
    rows = [result_row(r) for r in results]
    summary["output_files"] = write_outputs(summary, rows, job.output_folder)
    summary["cases"] = rows
    return summary
