"""The paper's Deconver rows beside this evaluation's: which of the data set's targets is which of
the paper's (ET / TC / WT or the one foreground), and the rows in the summary's form.

The figures themselves are :mod:`nnunet_deconver.paper`'s (Tables I-III).
"""

from __future__ import annotations

from typing import Sequence

from nnunet_deconver.evaluation.files import EvaluationError
from nnunet_deconver.evaluation.targets import Target
from nnunet_deconver.paper import PaperResult, get_dataset

__all__ = ["match_paper_targets", "paper_entries"]

AVG = "Avg"


def match_paper_targets(targets: Sequence[Target], row: PaperResult) -> dict[str, str]:
    """Map the paper's target names (ET/TC/WT or foreground) to this data set's target names."""
    if len(row.targets) == 1:
        if len(targets) != 1:
            raise EvaluationError(
                f"the paper's {row.table} results are for one foreground label, but this data "
                f"set has {len(targets)} labels/regions: {[t.name for t in targets]}"
            )
        return {row.targets[0]: targets[0].name}
    if len(targets) != len(row.targets):
        raise EvaluationError(
            f"the paper's {row.table} results have {len(row.targets)} regions {row.targets}, "
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


def paper_entries(targets: Sequence[Target], dataset: str, kernel: int | None = None) -> list[dict]:
    """The paper's Deconver rows of ``dataset`` (isles22, brats23, glas, fives) for NDC kernel
    ``kernel`` (both kernels if None), keyed by this data set's target names; DSC as a fraction."""
    paper = get_dataset(dataset)
    rows = [paper.result(k) for k in sorted(paper.results)] if kernel is None else [paper.result(kernel)]
    out = []
    for row in rows:
        mapping = match_paper_targets(targets, row)
        dsc = {mapping[p]: v / 100.0 for p, v in zip(row.targets, row.dsc)}
        hd = {mapping[p]: v for p, v in zip(row.targets, row.hd95)}
        if row.dsc_avg is not None:
            dsc[AVG] = row.dsc_avg / 100.0
        if row.hd95_avg is not None:
            hd[AVG] = row.hd95_avg
        size = "×".join([str(row.kernel)] * paper.spatial_dims)
        out.append({"label": f"Deconver ({size}), paper {row.table}", "dataset": paper.title, "table": row.table,
                    "kernel": row.kernel, "hd95_unit": paper.hd95_unit, "dice": dsc, "hd95": hd,
                    "mapping": mapping})
    return out
