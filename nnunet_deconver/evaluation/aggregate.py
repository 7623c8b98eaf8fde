"""Aggregation of typed per-target results: per fold, over folds and over cases.

A fold's figure is the mean over its cases, or, for a challenge that scores a set of cases as a
whole (GlaS pools the objects of all images), that challenge's ``pool`` of the fold's cases; the
overall figure is the mean and sample standard deviation (ddof=1) of the fold figures over folds
that have cases (the paper's "average over the 5-fold cross-validation"); ``over_cases`` takes
all cases together (a pooled figure has no standard deviation over cases: NaN). With several
targets an ``Avg`` column holds each case's mean over them (for pooled figures: the mean of the
targets' pooled figures), aggregated the same way.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from nnunet_deconver.evaluation.case import TargetResult
from nnunet_deconver.evaluation.targets import Target

__all__ = ["AVG", "summarize"]

AVG = "Avg"


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _std(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) >= 2 else float("nan")


def summarize(results: Sequence[TargetResult], targets: Sequence[Target], groups: Sequence[str],
              metrics: Sequence[str],
              pool: Callable[[Sequence[dict[str, float]]], dict[str, float]] | None = None) -> dict[str, Any]:
    """Per-group means (or ``pool``-ed figures) and overall statistics of ``metrics`` (e.g. ``("dice", "hd95")``).

    ``pool`` scores a set of cases from their challenge dicts (:attr:`TargetResult.challenge`).

    Returns:
        ``{"columns": [target names (+ "Avg")], "folds": {g: {"n_cases", metric: {column: mean}}},
        "over_folds": {"n_folds", "folds", "n_cases", metric: {column: {"mean", "std"}}},
        "over_cases": {"n_cases", metric: {column: {"mean", "std"}}}}``.
    """
    names = [t.name for t in targets]
    columns = names + ([AVG] if len(names) > 1 else [])
    per_case: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for r in results:
        entry = per_case.setdefault((r.fold, r.case), {m: {} for m in metrics})
        for m in metrics:
            entry[m][r.target] = r.value(m)
    if len(names) > 1:
        for entry in per_case.values():
            for m in metrics:
                entry[m][AVG] = float(np.mean([entry[m][n] for n in names]))

    def set_figures(keys: Sequence[tuple[str, str]]) -> dict[str, dict[str, float]]:
        """{metric: {column: figure}} of the cases ``keys``."""
        if pool is None:
            return {m: {c: _mean([per_case[k][m][c] for k in keys]) for c in columns} for m in metrics}
        out: dict[str, dict[str, float]] = {m: {} for m in metrics}
        for name in names:
            dicts = [r.challenge for r in results if (r.fold, r.case) in keys and r.target == name]
            pooled = pool(dicts) if dicts else {}
            for m in metrics:
                out[m][name] = float(pooled.get(m, float("nan")))
        for m in metrics:
            if AVG in columns:
                out[m][AVG] = _mean([out[m][n] for n in names])
        return out

    folds: dict[str, dict[str, Any]] = {}
    for g in groups:
        keys = {k for k in per_case if k[0] == g}
        folds[g] = {"n_cases": len(keys), **set_figures(keys)}
    present = [g for g in groups if folds[g]["n_cases"] > 0]
    over_folds: dict[str, Any] = {"n_folds": len(present), "folds": present,
                                  "n_cases": int(sum(folds[g]["n_cases"] for g in present))}
    over_cases: dict[str, Any] = {"n_cases": len(per_case)}
    all_cases = set_figures(set(per_case)) if pool is not None else None
    for m in metrics:
        over_folds[m], over_cases[m] = {}, {}
        for c in columns:
            fm = [folds[g][m][c] for g in present]
            over_folds[m][c] = {"mean": _mean(fm), "std": _std(fm)}
            if all_cases is None:
                cv = [d[m][c] for d in per_case.values()]
                over_cases[m][c] = {"mean": _mean(cv), "std": _std(cv)}
            else:
                over_cases[m][c] = {"mean": all_cases[m][c], "std": float("nan")}
    return {"columns": columns, "folds": folds, "over_folds": over_folds, "over_cases": over_cases}
