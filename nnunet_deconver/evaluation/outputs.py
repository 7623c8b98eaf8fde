"""Writing ``summary.json``, ``per_case.csv`` and ``table.md``.

All three are written to temporary names in the output folder first and renamed into place only
when all three are complete, so a failure never leaves a half-written or mixed set. JSON goes
through nnU-Net's ``recursive_fix_for_json_export`` and ``save_json``; NaN becomes ``null``.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any, Sequence

from nnunet_deconver.evaluation.case import TargetResult
from nnunet_deconver.errors import describe_os_error
from nnunet_deconver.evaluation.files import EvaluationError

__all__ = ["SUMMARY_JSON", "PER_CASE_CSV", "TABLE_MD", "csv_fields", "result_row", "write_outputs"]

SUMMARY_JSON = "summary.json"
PER_CASE_CSV = "per_case.csv"
TABLE_MD = "table.md"
_HEAD = ["fold", "case", "target", "label_or_region"]
_TAIL = ["n_ref", "n_pred", "n_intersection", "spacing", "shape", "prediction_file", "reference_file"]


def result_row(r: TargetResult) -> dict[str, Any]:
    """One target result as a flat dict (the ``cases`` entries of summary.json)."""
    row: dict[str, Any] = {"fold": r.fold, "case": r.case, "target": r.target, "label_or_region": r.label_or_region}
    if r.dice is not None:
        row["dice"] = r.dice
        row["hd95"] = r.hd95
    row.update(r.challenge)
    row.update({"n_ref": r.n_ref, "n_pred": r.n_pred, "n_intersection": r.n_intersection,
                "spacing": list(r.spacing), "shape": list(r.shape),
                "prediction_file": r.prediction_file, "reference_file": r.reference_file})
    return row


def csv_fields(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Column order: identification, figures (paper, then challenge), counts and files."""
    middle: list[str] = []
    for row in rows:
        for k in row:
            if k not in _HEAD and k not in _TAIL and k not in middle:
                middle.append(k)
    return _HEAD + middle + _TAIL


def _csv_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # full precision: 0.99999994 stays 0.99999994
    if isinstance(value, list):
        return " ".join(repr(v) if isinstance(v, float) else str(v) for v in value)
    return str(value)


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


def write_outputs(summary: dict, rows: list[dict[str, Any]], output_folder: str) -> dict[str, str]:
    """Write the three files into ``output_folder`` (which must exist); returns their paths."""
    from batchgenerators.utilities.file_and_folder_operations import save_json
    from nnunetv2.utilities.json_export import recursive_fix_for_json_export

    paths = {"json": os.path.join(output_folder, SUMMARY_JSON),
             "csv": os.path.join(output_folder, PER_CASE_CSV),
             "markdown": os.path.join(output_folder, TABLE_MD)}
    tmp = {k: f"{p}.tmp-{os.getpid()}" for k, p in paths.items()}
    try:
        content = {**summary, "cases": rows}
        recursive_fix_for_json_export(content)
        save_json(_nan_to_none(content), tmp["json"], indent=2, sort_keys=False)
        fields = csv_fields(rows)
        with open(tmp["csv"], "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for r in rows:
                w.writerow({k: _csv_value(r[k]) if k in r else "" for k in fields})
        with open(tmp["markdown"], "w") as f:
            f.write(summary["markdown"])
        for k in paths:
            os.replace(tmp[k], paths[k])
    except OSError as e:
        raise EvaluationError(f"cannot write the results into {output_folder}: {describe_os_error(e)}") from None
    finally:
        for t in tmp.values():
            if os.path.exists(t):
                os.remove(t)
    return paths
