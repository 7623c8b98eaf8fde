"""The paper's Deconver results (Ashtari et al., Tables I-III), for side-by-side comparison.

DSC in %, HD95 in mm (ISLES'22, BraTS'23) or pixels (GlaS, FIVES), each the mean over the
paper's 5-fold cross-validation. Copied from ``deconver-paper.md``:

- Table I (ISLES'22): Deconver (3x3x3) 78.16 / 4.99; (5x5x5) 77.37 / 4.89.
- Table II (BraTS'23), ET / TC / WT / Avg: (3x3x3) DSC 87.01 / 91.56 / 93.42 / 90.66,
  HD95 3.30 / 3.80 / 5.63 / 4.45; (5x5x5) DSC 86.97 / 91.41 / 93.47 / 90.62,
  HD95 3.50 / 3.99 / 5.59 / 4.49.
- Table III (GlaS, FIVES): (3x3) GlaS 91.52 / 68.52, FIVES 92.48 / 35.45;
  (5x5) GlaS 92.12 / 60.49, FIVES 92.72 / 30.26.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PaperRow", "PAPER_RESULTS", "paper_rows"]


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
