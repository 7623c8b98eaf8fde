"""Dice / HD95 reports over nnU-Net cross-validation results or any two folders of segmentations.

Two entry points:

* :func:`evaluate_crossval` reads the validation predictions of each fold,
  ``$nnUNet_results/DatasetXXX_Name/TRAINER__PLANS__CONFIG/fold_k/validation/*<file_ending>``,
  and the references ``$nnUNet_raw/DatasetXXX_Name/labelsTr/*<file_ending>``.
* :func:`evaluate_folders` compares a folder of predictions with a folder of references.

Both evaluate every label (or, for region-based data sets, every region: dataset.json labels
holding lists of values plus ``regions_class_order``, e.g. ET / TC / WT for BraTS) of every case,
then aggregate per fold (mean over the fold's cases) and over the folds (mean and sample standard
deviation, ddof=1, of the fold means, as the paper reports 5-fold means). They write into the
output folder:

* ``summary.json``: settings, conventions, per-fold and overall figures, missing items, per-case
  rows;
* ``per_case.csv``: one row per case x label/region x fold;
* ``table.md``: a Markdown table laid out like the paper's tables (DSC in %, HD95 in mm, or in
  pixels for 2D natural images), with the paper's Deconver rows if requested.

Missing folds, missing predictions and predictions without reference are reported (warnings on
stderr, lists in the JSON and under the table) and each row states how many cases it covers.

Images are read with nnU-Net's reader/writer for the data set's file ending
(``determine_reader_writer_from_dataset_json``); labels and regions come from nnU-Net's
``LabelManager`` and masks from ``region_or_label_to_mask``. HD95 spacing is the reference image's
spacing as the reader reports it; a 2D image (nnU-Net reads it as one slice, shape (1, X, Y))
is evaluated in 2D with the in-plane spacing, which is 1 (pixels) for PNG/BMP/TIF natural images.
nnU-Net and torch are imported only when these functions run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from nnunet_deconver.evaluation.metrics import (
    BRATS_HD95_PENALTY,
    EmptyPenalty,
    binary_metrics,
    resolve_empty_penalty,
)
from nnunet_deconver.evaluation.paper import PaperRow, paper_rows

__all__ = [
    "Target",
    "CaseTask",
    "EvaluationError",
    "targets_from_dataset_json",
    "evaluate_case",
    "evaluate_crossval",
    "evaluate_folders",
    "render_markdown",
]

SUMMARY_JSON = "summary.json"
PER_CASE_CSV = "per_case.csv"
TABLE_MD = "table.md"
DEFAULT_CROSSVAL_SUBFOLDER = "crossval_deconver_eval"
DEFAULT_FOLDERS_SUBFOLDER = "deconver_eval"
AVG = "Avg"
NATURAL_IMAGE_READERS = ("NaturalImage2DIO",)


class EvaluationError(RuntimeError):
    """A missing folder / file or an inconsistent input; the message names what is wrong."""


def _warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Labels and regions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A label (int) or region (tuple of label values) to evaluate, named as in dataset.json."""

    name: str
    label_or_region: int | tuple[int, ...]

    @property
    def values(self) -> tuple[int, ...]:
        v = self.label_or_region
        return (int(v),) if np.isscalar(v) else tuple(int(i) for i in v)  # type: ignore[union-attr]

    @property
    def key(self) -> str:
        """nnU-Net's key for the label or region (``str(label_or_region)``)."""
        return str(self.label_or_region)


def targets_from_dataset_json(dataset_json: dict) -> tuple[list[Target], bool, int | None]:
    """Labels or regions to evaluate, as nnU-Net's ``LabelManager`` sees the dataset.json.

    Returns:
        ``(targets, region_based, ignore_label)``: foreground regions for region-based data
        sets (labels with lists of values + ``regions_class_order``), else foreground labels.
    """
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    if "labels" not in dataset_json:
        raise EvaluationError("dataset.json has no 'labels' entry")
    label_dict = dataset_json["labels"]
    try:
        lm = LabelManager(label_dict, dataset_json.get("regions_class_order"))
    except (AssertionError, RuntimeError, TypeError, ValueError) as e:
        raise EvaluationError(f"dataset.json labels not usable by nnU-Net: {e}") from e
    wanted = lm.foreground_regions if lm.has_regions else lm.foreground_labels

    def norm(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return tuple(int(i) for i in v)
        return int(v)

    names: dict[Any, str] = {}
    for name, value in label_dict.items():
        if name == "ignore":
            continue
        names.setdefault(norm(value), name)
        if isinstance(value, (list, tuple)) and len(value) == 1:
            names.setdefault(int(value[0]), name)
    targets = []
    for v in wanted:
        nv = norm(v)
        targets.append(Target(names.get(nv, str(nv)), nv))
    if not targets:
        raise EvaluationError("dataset.json declares no foreground label or region")
    return targets, bool(lm.has_regions), lm.ignore_label


# --------------------------------------------------------------------------------------------
# One case
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseTask:
    """Everything a worker needs to evaluate one prediction against its reference."""

    group: str  # fold ("0".."4") or "all"
    case: str
    prediction_file: str
    reference_file: str
    reader: Any  # an nnU-Net BaseReaderWriter instance (picklable)
    targets: tuple[Target, ...]
    ignore_label: int | None
    empty_penalty: EmptyPenalty


def _read_seg(reader: Any, path: str) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read a segmentation; returns (array (X, Y) or (X, Y, Z), spacing per array axis)."""
    try:
        seg, props = reader.read_seg(path)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise EvaluationError(f"could not read segmentation {path}: {type(e).__name__}: {e}") from e
    if seg.ndim != 4 or seg.shape[0] != 1:
        raise EvaluationError(
            f"{path}: expected a single-channel segmentation, the reader gave shape {seg.shape}"
        )
    seg = seg[0]
    spacing = tuple(float(s) for s in props["spacing"])
    if seg.shape[0] == 1:
        # nnU-Net reads 2D images as one slice (spacing[0] is a dummy like 999): evaluate in 2D.
        seg, spacing = seg[0], spacing[1:]
    return seg, spacing


def evaluate_case(task: CaseTask) -> list[dict]:
    """Dice / HD95 of every target of one case.

    Returns:
        One dict per target: group, case, target name, key, dice (fraction), hd95, voxel counts,
        spacing, shape, the files.
    """
    from nnunetv2.evaluation.evaluate_predictions import region_or_label_to_mask

    ref, spacing = _read_seg(task.reader, task.reference_file)
    pred, _ = _read_seg(task.reader, task.prediction_file)
    if ref.shape != pred.shape:
        raise EvaluationError(
            f"shape mismatch for case {task.case}: prediction {task.prediction_file} has shape "
            f"{pred.shape}, reference {task.reference_file} has shape {ref.shape}"
        )
    keep = None if task.ignore_label is None else ref != task.ignore_label
    penalty = resolve_empty_penalty(task.empty_penalty, ref.shape, spacing)
    rows = []
    for t in task.targets:
        m_ref = region_or_label_to_mask(ref, t.label_or_region)
        m_pred = region_or_label_to_mask(pred, t.label_or_region)
        if keep is not None:
            m_ref &= keep
            m_pred &= keep
        m = binary_metrics(m_pred, m_ref, spacing, penalty)
        rows.append(
            {
                "fold": task.group,
                "case": task.case,
                "target": t.name,
                "label_or_region": t.key,
                "dice": m["dice"],
                "hd95": m["hd95"],
                "n_ref": m["n_ref"],
                "n_pred": m["n_pred"],
                "n_intersection": m["n_intersection"],
                "spacing": list(spacing),
                "shape": list(ref.shape),
                "prediction_file": task.prediction_file,
                "reference_file": task.reference_file,
            }
        )
    return rows


def _run_tasks(tasks: Sequence[CaseTask], num_processes: int, desc: str) -> list[dict]:
    """Evaluate cases, in a spawn Pool if num_processes > 1, with a tqdm progress bar."""
    from tqdm import tqdm

    rows: list[dict] = []
    if num_processes <= 1 or len(tasks) <= 1:
        for task in tqdm(tasks, desc=desc, unit="case"):
            rows.extend(evaluate_case(task))
        return rows
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(num_processes, len(tasks))) as pool:
        it = pool.imap_unordered(evaluate_case, tasks, chunksize=1)
        for case_rows in tqdm(it, total=len(tasks), desc=desc, unit="case"):
            rows.extend(case_rows)
    return rows


# --------------------------------------------------------------------------------------------
# Finding files
# --------------------------------------------------------------------------------------------


@dataclass
class Inventory:
    """Which prediction/reference pairs exist per group, and what is missing."""

    groups: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # case, pred, ref
    requested_groups: list[str] = field(default_factory=list)
    missing_groups: dict[str, str] = field(default_factory=dict)  # group -> missing folder
    missing_cases: dict[str, list[str]] = field(default_factory=dict)  # expected, no prediction
    without_reference: dict[str, list[str]] = field(default_factory=dict)  # prediction, no ref
    unexpected_cases: dict[str, list[str]] = field(default_factory=dict)  # not in the split
    unassigned_references: list[str] = field(default_factory=list)  # in no group
    splits_file: str | None = None

    def as_dict(self) -> dict:
        return {
            "requested_folds": self.requested_groups,
            "missing_folds": self.missing_groups,
            "missing_cases": self.missing_cases,
            "predictions_without_reference": self.without_reference,
            "predictions_not_in_split": self.unexpected_cases,
            "references_without_prediction": self.unassigned_references,
            "splits_file": self.splits_file,
        }


def _case_files(folder: str, file_ending: str) -> dict[str, str]:
    """case id -> path for files in folder ending in file_ending (sorted)."""
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(file_ending) and os.path.isfile(path):
            out[name[: -len(file_ending)]] = path
    return out


def _short_list(items: Sequence[str], limit: int = 20) -> str:
    items = list(items)
    text = ", ".join(items[:limit])
    if len(items) > limit:
        text += f", ... ({len(items) - limit} more)"
    return text


def _warn_inventory(inv: Inventory, what: str = "fold") -> None:
    for g, folder in inv.missing_groups.items():
        _warn(f"{what} {g} missing: no folder {folder}")
    for g, cases in inv.missing_cases.items():
        if cases:
            _warn(f"{what} {g}: {len(cases)} case(s) without prediction: {_short_list(cases)}")
    for g, cases in inv.without_reference.items():
        if cases:
            _warn(f"{what} {g}: {len(cases)} prediction(s) without reference, not evaluated: "
                  f"{_short_list(cases)}")
    for g, cases in inv.unexpected_cases.items():
        if cases:
            _warn(f"{what} {g}: {len(cases)} prediction(s) not in this fold's split "
                  f"({inv.splits_file}), evaluated anyway: {_short_list(cases)}")
    if inv.unassigned_references:
        _warn(f"{len(inv.unassigned_references)} reference(s) without a prediction in any "
              f"evaluated {what}: {_short_list(inv.unassigned_references)}")


def _load_json(path: str, what: str) -> Any:
    if not os.path.isfile(path):
        raise EvaluationError(f"{what} not found: {path}")
    with open(path) as f:
        return json.load(f)


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


def _std(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) >= 2 else float("nan")


def summarize(rows: list[dict], targets: Sequence[Target], groups: Sequence[str]) -> dict:
    """Per-group means and overall statistics.

    Returns:
        ``{"folds": {g: {"n_cases", "dice": {name: mean}, "hd95": {...}}},
        "over_folds": {"n_folds", "n_cases", "dice": {name: {"mean", "std"}}, "hd95": ...},
        "over_cases": {"n_cases", "dice": {name: {"mean", "std"}}, "hd95": ...}}`` where names are
        the target names plus ``"Avg"`` (mean over targets) when there are several targets.
        Fold means are means over that fold's cases; ``over_folds`` gives the mean and sample
        std (ddof=1) of the fold means over folds with at least one case; ``over_cases`` pools
        all cases.
    """
    names = [t.name for t in targets]
    multi = len(names) > 1
    # case-level values per (group, case): name -> value, plus Avg
    per_case: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for r in rows:
        d = per_case.setdefault((r["fold"], r["case"]), {"dice": {}, "hd95": {}})
        d["dice"][r["target"]] = r["dice"]
        d["hd95"][r["target"]] = r["hd95"]
    if multi:
        for d in per_case.values():
            for metric in ("dice", "hd95"):
                d[metric][AVG] = float(np.mean([d[metric][n] for n in names]))
    keys = names + ([AVG] if multi else [])

    folds: dict[str, dict] = {}
    for g in groups:
        cases = [d for (gg, _), d in per_case.items() if gg == g]
        entry: dict[str, Any] = {"n_cases": len(cases), "dice": {}, "hd95": {}}
        for metric in ("dice", "hd95"):
            for k in keys:
                entry[metric][k] = float(np.mean([c[metric][k] for c in cases])) if cases else float("nan")
        folds[g] = entry

    present = [g for g in groups if folds[g]["n_cases"] > 0]
    over_folds: dict[str, Any] = {
        "n_folds": len(present),
        "folds": present,
        "n_cases": int(sum(folds[g]["n_cases"] for g in present)),
        "dice": {},
        "hd95": {},
    }
    over_cases: dict[str, Any] = {"n_cases": len(per_case), "dice": {}, "hd95": {}}
    for metric in ("dice", "hd95"):
        for k in keys:
            fm = [folds[g][metric][k] for g in present]
            over_folds[metric][k] = {
                "mean": float(np.mean(fm)) if fm else float("nan"),
                "std": _std(fm),
            }
            cv = [d[metric][k] for d in per_case.values()]
            over_cases[metric][k] = {
                "mean": float(np.mean(cv)) if cv else float("nan"),
                "std": _std(cv),
            }
    return {"columns": keys, "folds": folds, "over_folds": over_folds, "over_cases": over_cases}


# --------------------------------------------------------------------------------------------
# Paper comparison
# --------------------------------------------------------------------------------------------


def _match_paper_targets(targets: Sequence[Target], row: PaperRow) -> dict[str, str]:
    """Map the paper's target names (ET/TC/WT or foreground) to this data set's target names."""
    if len(row.targets) == 1:
        if len(targets) != 1:
            raise EvaluationError(
                f"the paper's {row.dataset} results are for one foreground label, but this data "
                f"set has {len(targets)} labels/regions: {[t.name for t in targets]}"
            )
        return {row.targets[0]: targets[0].name}
    if len(targets) != len(row.targets):
        raise EvaluationError(
            f"the paper's {row.dataset} results have {len(row.targets)} regions {row.targets}, "
            f"this data set has {len(targets)}: {[t.name for t in targets]}"
        )
    hints = {"ET": ("enhanc", "et"), "TC": ("core", "tc"), "WT": ("whole", "wt")}
    mapping: dict[str, str] = {}
    for paper_name in row.targets:
        hits = []
        for t in targets:
            low = t.name.lower().replace("_", " ").replace("-", " ")
            words = low.split()
            if any(h in low for h in hints[paper_name][:1]) or hints[paper_name][1] in words:
                hits.append(t.name)
        if len(hits) == 1:
            mapping[paper_name] = hits[0]
    if len(mapping) == len(row.targets) and len(set(mapping.values())) == len(row.targets):
        return mapping
    # Fall back on nesting: ET < TC < WT as sets of label values.
    by_size = sorted(targets, key=lambda t: len(t.values))
    sets = [set(t.values) for t in by_size]
    if all(sets[i] < sets[i + 1] for i in range(len(sets) - 1)):
        return {p: t.name for p, t in zip(row.targets, by_size)}
    raise EvaluationError(
        f"cannot tell which of {[t.name for t in targets]} are {row.targets}: name them "
        f"(e.g. 'enhancing tumor', 'tumor core', 'whole tumor') or make them nested regions"
    )


def _paper_entries(targets: Sequence[Target], rows: Sequence[PaperRow]) -> list[dict]:
    out = []
    for row in rows:
        mapping = _match_paper_targets(targets, row)
        dsc = {mapping[p]: v / 100.0 for p, v in zip(row.targets, row.dsc)}
        hd = {mapping[p]: v for p, v in zip(row.targets, row.hd95)}
        if row.dsc_avg is not None:
            dsc[AVG] = row.dsc_avg / 100.0
        if row.hd95_avg is not None:
            hd[AVG] = row.hd95_avg
        out.append({"label": row.label, "dataset": row.dataset, "table": row.table,
                    "kernel": row.kernel, "hd95_unit": row.hd95_unit, "dice": dsc, "hd95": hd,
                    "mapping": mapping})
    return out


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _fmt(x: float | None, scale: float = 1.0) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x * scale:.2f}"


def _fmt_pm(stat: dict, scale: float = 1.0) -> str:
    m, s = stat["mean"], stat["std"]
    if s is None or not math.isfinite(s):
        return _fmt(m, scale)
    return f"{_fmt(m, scale)} ± {_fmt(s, scale)}"


def render_markdown(summary: dict) -> str:
    """Markdown table (paper layout) and notes from a summary dict (see :func:`evaluate_crossval`)."""
    stats = summary["statistics"]
    cols = stats["columns"]
    unit = summary["hd95_unit"]
    multi = len(cols) > 1
    mode = summary["mode"]

    def header_cells(metric: str) -> list[str]:
        label = "DSC (%)" if metric == "dice" else f"HD95 ({unit})"
        return [f"{label} {c}" if multi else label for c in cols]

    head = ["Fold" if mode == "crossval" else "Set", "Cases"] + header_cells("dice") + header_cells("hd95")
    lines = []
    title = summary["title"]
    lines.append(f"### {title}")
    lines.append("")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")

    def value_row(first: str, n: Any, dice: dict, hd: dict) -> str:
        cells = [first, str(n)] + [dice[c] for c in cols] + [hd[c] for c in cols]
        return "| " + " | ".join(cells) + " |"

    if mode == "crossval":
        for g, entry in stats["folds"].items():
            if g in summary["missing"]["missing_folds"]:
                cells = {c: "missing" for c in cols}
                lines.append(value_row(g, 0, cells, cells))
                continue
            lines.append(value_row(
                g, entry["n_cases"],
                {c: _fmt(entry["dice"][c], 100) for c in cols},
                {c: _fmt(entry["hd95"][c]) for c in cols},
            ))
        of = stats["over_folds"]
        first = f"**Mean ± std over {of['n_folds']} fold{'s' if of['n_folds'] != 1 else ''}**"
        overall_dice = of["dice"]
        overall_hd = of["hd95"]
        n_overall = of["n_cases"]
    else:
        oc = stats["over_cases"]
        first = "**Mean ± std over cases**"
        overall_dice = oc["dice"]
        overall_hd = oc["hd95"]
        n_overall = oc["n_cases"]
    lines.append(value_row(
        first, n_overall,
        {c: _fmt_pm(overall_dice[c], 100) for c in cols},
        {c: _fmt_pm(overall_hd[c]) for c in cols},
    ))
    paper = summary.get("paper") or []
    for p in paper:
        lines.append(value_row(
            p["label"], "—",
            {c: _fmt(p["dice"].get(c), 100) for c in cols},
            {c: _fmt(p["hd95"].get(c)) for c in cols},
        ))
    if len(paper) == 1:
        p = paper[0]

        def diff(ours: float, theirs: float | None, scale: float) -> str:
            if theirs is None or ours is None or not math.isfinite(ours):
                return "n/a"
            return f"{(ours - theirs) * scale:+.2f}"

        lines.append(value_row(
            "Difference (this − paper)", "",
            {c: diff(overall_dice[c]["mean"], p["dice"].get(c), 100) for c in cols},
            {c: diff(overall_hd[c]["mean"], p["hd95"].get(c), 1) for c in cols},
        ))
    lines.append("")

    notes = []
    if mode == "crossval":
        notes.append(
            "Fold rows: mean over the fold's validation cases. Mean ± std: mean and sample "
            "standard deviation (ddof=1) of the fold means; Cases: cases those folds cover."
        )
    else:
        notes.append("Mean ± std over cases (sample standard deviation, ddof=1).")
    if multi:
        notes.append(f"{AVG}: per case, the mean over the {len(cols) - 1} "
                     f"{'regions' if summary['region_based'] else 'labels'}; then averaged like the others.")
    notes.append(
        f"HD95 in {'pixels' if unit == 'px' else unit}: 95th percentile (numpy linear) of the pooled "
        "symmetric distances between face-connected surface voxels (image border counts as "
        "outside). Both masks empty: DSC 100, HD95 0; one empty: DSC 0, HD95 = "
        f"{summary['hd95_empty_penalty_description']}."
    )
    if paper:
        notes.append("Paper rows: the paper's 5-fold means (Deconver, " + ", ".join(
            sorted({p['table'] for p in paper})) + ").")
        if any(p["hd95_unit"] != unit for p in paper):
            notes.append(f"Note: the paper's HD95 is in {paper[0]['hd95_unit']}, this table's in {unit}.")
    miss = summary["missing"]
    for g, folder in miss["missing_folds"].items():
        notes.append(f"Fold {g} missing (no {folder}).")
    for g, cases in miss["missing_cases"].items():
        if cases:
            notes.append(f"{'Fold ' + g if mode == 'crossval' else 'Set'}: {len(cases)} case(s) "
                         f"without prediction: {_short_list(cases)}.")
    for g, cases in miss["predictions_without_reference"].items():
        if cases:
            notes.append(f"{'Fold ' + g if mode == 'crossval' else 'Set'}: {len(cases)} "
                         f"prediction(s) without reference, not evaluated: {_short_list(cases)}.")
    for g, cases in miss["predictions_not_in_split"].items():
        if cases:
            notes.append(f"Fold {g}: {len(cases)} prediction(s) not in the fold's split, "
                         f"evaluated: {_short_list(cases)}.")
    if miss["references_without_prediction"] and mode == "crossval":
        notes.append(f"{len(miss['references_without_prediction'])} reference(s) in labelsTr "
                     f"without a prediction in any evaluated fold: "
                     f"{_short_list(miss['references_without_prediction'])}.")
    lines.extend(f"- {n}" for n in notes)
    return "\n".join(lines) + "\n"


CSV_FIELDS = ["fold", "case", "target", "label_or_region", "dice", "hd95", "n_ref", "n_pred",
              "n_intersection", "spacing", "shape", "prediction_file", "reference_file"]


def _write_outputs(summary: dict, rows: list[dict], output_folder: str) -> dict[str, str]:
    os.makedirs(output_folder, exist_ok=True)
    paths = {
        "json": os.path.join(output_folder, SUMMARY_JSON),
        "csv": os.path.join(output_folder, PER_CASE_CSV),
        "markdown": os.path.join(output_folder, TABLE_MD),
    }
    with open(paths["json"], "w") as f:
        json.dump(_nan_to_none({**summary, "cases": rows}), f, indent=2, allow_nan=False)
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "spacing": " ".join(f"{s:g}" for s in r["spacing"]),
                        "shape": " ".join(str(s) for s in r["shape"]),
                        "dice": repr(float(r["dice"])), "hd95": repr(float(r["hd95"]))})
    with open(paths["markdown"], "w") as f:
        f.write(summary["markdown"])
    return paths


def _sort_rows(rows: list[dict], targets: Sequence[Target], groups: Sequence[str]) -> list[dict]:
    gi = {g: i for i, g in enumerate(groups)}
    ti = {t.name: i for i, t in enumerate(targets)}
    return sorted(rows, key=lambda r: (gi.get(r["fold"], len(gi)), r["case"], ti[r["target"]]))


def _penalty_description(empty_penalty: EmptyPenalty) -> str:
    if isinstance(empty_penalty, str) and empty_penalty.strip().lower() == "diagonal":
        return "the image diagonal"
    if isinstance(empty_penalty, str) and empty_penalty.strip().lower() == "brats":
        return f"{BRATS_HD95_PENALTY} (BraTS)"
    return f"{resolve_empty_penalty(empty_penalty, (1,), (1.0,)):g}"


def _finish(
    *,
    mode: str,
    title: str,
    inv: Inventory,
    targets: list[Target],
    region_based: bool,
    ignore_label: int | None,
    reader: Any,
    file_ending: str,
    empty_penalty: EmptyPenalty,
    num_processes: int,
    compare_paper: str | None,
    kernel: int | None,
    output_folder: str,
    extra: dict,
) -> dict:
    resolve_empty_penalty(empty_penalty, (1,), (1.0,))  # validate early
    paper = _paper_entries(targets, paper_rows(compare_paper, kernel)) if compare_paper else []
    if paper and len(targets) > 1:
        # Columns in the paper's order (ET, TC, WT) when comparing with it.
        order = list(paper[0]["mapping"].values())
        targets = sorted(targets, key=lambda t: order.index(t.name))
    tasks = [
        CaseTask(g, case, pred, ref, reader, tuple(targets), ignore_label, empty_penalty)
        for g in inv.groups
        for case, pred, ref in inv.groups[g]
    ]
    if not tasks:
        raise EvaluationError("no prediction with a matching reference was found; nothing to evaluate "
                              f"(missing: {json.dumps(inv.as_dict())})")
    groups = list(inv.requested_groups)
    rows = _sort_rows(_run_tasks(tasks, num_processes, desc=title.split(" — ")[0]), targets, groups)
    stats = summarize(rows, targets, groups)
    unit = "px" if type(reader).__name__ in NATURAL_IMAGE_READERS else "mm"
    summary: dict[str, Any] = {
        "mode": mode,
        "title": title,
        **extra,
        "file_ending": file_ending,
        "reader": type(reader).__name__,
        "region_based": region_based,
        "ignore_label": ignore_label,
        "targets": [{"name": t.name, "label_or_region": t.key, "values": list(t.values)} for t in targets],
        "hd95_unit": unit,
        "hd95_empty_penalty": empty_penalty,
        "hd95_empty_penalty_description": _penalty_description(empty_penalty),
        "conventions": {
            "dice": "2|P n R| / (|P| + |R|), a fraction in [0, 1] here (the Markdown table prints %)",
            "surface": "mask voxels with a face neighbour (4-conn. 2D, 6-conn. 3D) outside the mask; "
                       "outside the image counts as outside the mask",
            "hd95": "numpy.percentile(concat(d(Ps->Rs), d(Rs->Ps)), 95), method 'linear', in units of "
                    "the reference spacing (pixels for 2D natural images)",
            "both_empty": {"dice": 1.0, "hd95": 0.0},
            "one_empty": {"dice": 0.0, "hd95": _penalty_description(empty_penalty)},
            "aggregation": "fold mean = mean over the fold's cases; overall = mean and sample std "
                           "(ddof=1) of the fold means; Avg = per-case mean over labels/regions",
        },
        "missing": inv.as_dict(),
        "statistics": stats,
        "paper": paper,
    }
    summary["markdown"] = render_markdown(summary)
    summary["output_files"] = _write_outputs(summary, rows, output_folder)
    summary["cases"] = rows
    return summary


def evaluate_crossval(
    dataset: str | int,
    trainer: str,
    configuration: str,
    plans: str = "nnUNetPlans",
    folds: Iterable[int | str] = (0, 1, 2, 3, 4),
    output_folder: str | None = None,
    num_processes: int = 1,
    empty_penalty: EmptyPenalty = "diagonal",
    compare_paper: str | None = None,
    kernel: int | None = None,
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

    Returns:
        The summary dict (also written as JSON, with the CSV and Markdown files beside it).
    """
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw, nnUNet_results
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    for var in (nnUNet_raw, nnUNet_results):
        if not var.is_set():
            raise EvaluationError(f"environment variable {var.env_var_name} is not set")
    try:
        dataset_name = maybe_convert_to_dataset_name(str(dataset))
    except (RuntimeError, ValueError) as e:
        raise EvaluationError(f"cannot resolve data set {dataset!r}: {e}") from e
    model_folder = get_output_folder(dataset_name, trainer, plans, configuration)
    if not os.path.isdir(model_folder):
        raise EvaluationError(f"results folder not found: {model_folder}")
    raw_folder = os.path.join(nnUNet_raw.get(), dataset_name)
    labels_folder = os.path.join(raw_folder, "labelsTr")
    if not os.path.isdir(labels_folder):
        raise EvaluationError(f"reference folder not found: {labels_folder}")
    dj_candidates = [os.path.join(model_folder, "dataset.json"), os.path.join(raw_folder, "dataset.json")]
    dj_file = next((p for p in dj_candidates if os.path.isfile(p)), None)
    if dj_file is None:
        raise EvaluationError("dataset.json not found: looked for " + " and ".join(dj_candidates))
    dataset_json = _load_json(dj_file, "dataset.json")
    file_ending = dataset_json.get("file_ending")
    if not file_ending:
        raise EvaluationError(f"{dj_file} has no 'file_ending'")
    targets, region_based, ignore_label = targets_from_dataset_json(dataset_json)

    refs = _case_files(labels_folder, file_ending)
    if not refs:
        raise EvaluationError(f"no reference files ending in {file_ending} in {labels_folder}")
    reader = determine_reader_writer_from_dataset_json(
        dataset_json, next(iter(refs.values())), verbose=False)()

    inv = Inventory()
    inv.requested_groups = [str(f) for f in folds]
    splits = None
    if nnUNet_preprocessed.is_set():
        sp = os.path.join(nnUNet_preprocessed.get(), dataset_name, "splits_final.json")
        if os.path.isfile(sp):
            splits = _load_json(sp, "splits file")
            inv.splits_file = sp
    evaluated_cases: set[str] = set()
    for g in inv.requested_groups:
        val_folder = os.path.join(model_folder, f"fold_{g}", "validation")
        if not os.path.isdir(val_folder):
            inv.missing_groups[g] = val_folder
            continue
        preds = _case_files(val_folder, file_ending)
        expected = None
        if splits is not None and g.isdigit() and int(g) < len(splits):
            expected = list(splits[int(g)]["val"])
        inv.missing_cases[g] = sorted(c for c in (expected or []) if c not in preds)
        inv.without_reference[g] = sorted(c for c in preds if c not in refs)
        inv.unexpected_cases[g] = sorted(c for c in preds if expected is not None and c not in expected
                                         and c in refs)
        inv.groups[g] = [(c, p, refs[c]) for c, p in preds.items() if c in refs]
        evaluated_cases.update(c for c, _, _ in inv.groups[g])
    expected_all: set[str] = set(refs)
    if splits is not None:
        # Cases expected in a requested but missing fold are listed with that fold.
        for g in inv.missing_groups:
            if g.isdigit() and int(g) < len(splits):
                inv.missing_cases[g] = sorted(splits[int(g)]["val"])
    inv.unassigned_references = sorted(expected_all - evaluated_cases)
    _warn_inventory(inv)

    if output_folder is None:
        output_folder = os.path.join(model_folder, DEFAULT_CROSSVAL_SUBFOLDER)
    identifier = os.path.basename(model_folder)
    return _finish(
        mode="crossval",
        title=f"{dataset_name} — {identifier}, cross-validation",
        inv=inv, targets=targets, region_based=region_based, ignore_label=ignore_label,
        reader=reader, file_ending=file_ending, empty_penalty=empty_penalty,
        num_processes=num_processes, compare_paper=compare_paper, kernel=kernel,
        output_folder=output_folder,
        extra={"dataset": dataset_name, "trainer": trainer, "plans": plans,
               "configuration": configuration, "model_folder": model_folder,
               "reference_folder": labels_folder, "dataset_json": dj_file},
    )


def evaluate_folders(
    prediction_folder: str,
    reference_folder: str,
    dataset_json_file: str,
    output_folder: str | None = None,
    num_processes: int = 1,
    empty_penalty: EmptyPenalty = "diagonal",
    compare_paper: str | None = None,
    kernel: int | None = None,
) -> dict:
    """Evaluate a folder of predictions against a folder of references (same file names).

    File ending and labels/regions come from ``dataset_json_file``. Output folder default:
    ``<prediction_folder>/deconver_eval``. See :func:`evaluate_crossval` for the other arguments.
    """
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    for folder, what in ((prediction_folder, "prediction folder"), (reference_folder, "reference folder")):
        if not os.path.isdir(folder):
            raise EvaluationError(f"{what} not found: {folder}")
    dataset_json = _load_json(dataset_json_file, "dataset.json")
    file_ending = dataset_json.get("file_ending")
    if not file_ending:
        raise EvaluationError(f"{dataset_json_file} has no 'file_ending'")
    targets, region_based, ignore_label = targets_from_dataset_json(dataset_json)
    refs = _case_files(reference_folder, file_ending)
    if not refs:
        raise EvaluationError(f"no reference files ending in {file_ending} in {reference_folder}")
    preds = _case_files(prediction_folder, file_ending)
    reader = determine_reader_writer_from_dataset_json(
        dataset_json, next(iter(refs.values())), verbose=False)()
    inv = Inventory()
    g = "all"
    inv.requested_groups = [g]
    inv.groups[g] = [(c, p, refs[c]) for c, p in preds.items() if c in refs]
    inv.missing_cases[g] = sorted(c for c in refs if c not in preds)
    inv.without_reference[g] = sorted(c for c in preds if c not in refs)
    _warn_inventory(inv, what="set")
    if output_folder is None:
        output_folder = os.path.join(prediction_folder, DEFAULT_FOLDERS_SUBFOLDER)
    name = dataset_json.get("name") or os.path.basename(os.path.abspath(prediction_folder))
    return _finish(
        mode="folders",
        title=f"{name} — {os.path.abspath(prediction_folder)}",
        inv=inv, targets=targets, region_based=region_based, ignore_label=ignore_label,
        reader=reader, file_ending=file_ending, empty_penalty=empty_penalty,
        num_processes=num_processes, compare_paper=compare_paper, kernel=kernel,
        output_folder=output_folder,
        extra={"prediction_folder": os.path.abspath(prediction_folder),
               "reference_folder": os.path.abspath(reference_folder),
               "dataset_json": os.path.abspath(dataset_json_file)},
    )
