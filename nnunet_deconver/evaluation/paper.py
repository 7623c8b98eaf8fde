"""The paper's Deconver results (Ashtari et al., Tables I-III), for side-by-side comparison.

DSC in %, HD95 in mm (ISLES'22, BraTS'23) or pixels (GlaS, FIVES), each the mean over the
paper's 5-fold cross-validation, as printed in the paper:

- Table I (ISLES'22): Deconver (3x3x3) 78.16 / 4.99; (5x5x5) 77.37 / 4.89.
- Table II (BraTS'23), ET / TC / WT / Avg: (3x3x3) DSC 87.01 / 91.56 / 93.42 / 90.66,
  HD95 3.30 / 3.80 / 5.63 / 4.45; (5x5x5) DSC 86.97 / 91.41 / 93.47 / 90.62,
  HD95 3.50 / 3.99 / 5.59 / 4.49.
- Table III (GlaS, FIVES): (3x3) GlaS 91.52 / 68.52, FIVES 92.48 / 35.45;
  (5x5) GlaS 92.12 / 60.49, FIVES 92.72 / 30.26.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from nnunet_deconver.evaluation.files import EvaluationError
from nnunet_deconver.evaluation.targets import Target

__all__ = ["PaperRow", "PAPER_RESULTS", "paper_rows", "match_paper_targets", "paper_entries"]

AVG = "Avg"


@dataclass(frozen=True)
class PaperRow:
    """One Deconver row of the paper: values per target (paper order), plus the average if any."""

    dataset: str
    table: str
    kernel: int
    dims: int
    targets: tuple[str, ...]  # ("ET", "TC", "WT") or ("foreground",)
    dsc: tuple[float, ...]  # %, per target
    hd95: tuple[float, ...]  # per target
    dsc_avg: float | None = None  # the paper's printed average (multi-target only)
    hd95_avg: float | None = None
    hd95_unit: str = "mm"

    @property
    def label(self) -> str:
        k = "×".join([str(self.kernel)] * self.dims)
        return f"Deconver ({k}), paper {self.table}"


PAPER_RESULTS: dict[str, dict[int, PaperRow]] = {
    "isles22": {
        3: PaperRow("ISLES'22", "Table I", 3, 3, ("foreground",), (78.16,), (4.99,)),
        5: PaperRow("ISLES'22", "Table I", 5, 3, ("foreground",), (77.37,), (4.89,)),
    },
    "brats23": {
        3: PaperRow("BraTS'23", "Table II", 3, 3, ("ET", "TC", "WT"), (87.01, 91.56, 93.42),
                    (3.30, 3.80, 5.63), 90.66, 4.45),
        5: PaperRow("BraTS'23", "Table II", 5, 3, ("ET", "TC", "WT"), (86.97, 91.41, 93.47),
                    (3.50, 3.99, 5.59), 90.62, 4.49),
    },
    "glas": {
        3: PaperRow("GlaS", "Table III", 3, 2, ("foreground",), (91.52,), (68.52,), hd95_unit="px"),
        5: PaperRow("GlaS", "Table III", 5, 2, ("foreground",), (92.12,), (60.49,), hd95_unit="px"),
    },
    "fives": {
        3: PaperRow("FIVES", "Table III", 3, 2, ("foreground",), (92.48,), (35.45,), hd95_unit="px"),
        5: PaperRow("FIVES", "Table III", 5, 2, ("foreground",), (92.72,), (30.26,), hd95_unit="px"),
    },
}


def paper_rows(dataset: str, kernel: int | None = None) -> list[PaperRow]:
    """The paper's Deconver rows for ``dataset`` (isles22, brats23, glas, fives); both kernels if None."""
    key = dataset.lower()
    if key not in PAPER_RESULTS:
        raise ValueError(f"unknown paper data set {dataset!r}; choose from {sorted(PAPER_RESULTS)}")
    rows = PAPER_RESULTS[key]
    if kernel is None:
        return [rows[k] for k in sorted(rows)]
    if kernel not in rows:
        raise ValueError(f"the paper reports kernels {sorted(rows)} for {dataset}, not {kernel}")
    return [rows[kernel]]


def match_paper_targets(targets: Sequence[Target], row: PaperRow) -> dict[str, str]:
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


def paper_entries(targets: Sequence[Target], rows: Sequence[PaperRow]) -> list[dict]:
    out = []
    for row in rows:
        mapping = match_paper_targets(targets, row)
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
