"""Markdown tables from a summary: the paper's layout, then the challenge's, then the notes.

Numbers are printed with a fixed number of decimals, except that a value is never shown as a
perfect score (100.00 %, 1.0000) or as 0 when it is not exactly that: more digits are printed
until the difference shows (a Dice of 0.99999994 prints as 99.99999, not 100.00).
"""

from __future__ import annotations

import math
from typing import Any

from nnunet_deconver.evaluation.aggregate import AVG
from nnunet_deconver.evaluation.discovery import short_list

__all__ = ["fmt", "render_markdown"]

HD95_NOTES = {
    "directed-max": "the larger of the two directed 95th percentiles (numpy linear) of the distances "
                    "between face-connected surface voxels (the paper's equation (9), MONAI's)",
    "pooled": "one 95th percentile (numpy linear) of both directions' distances between "
              "face-connected surface voxels pooled together (medpy's convention)",
}


def fmt(x: float | None, scale: float = 1.0, decimals: int = 2) -> str:
    """``x * scale`` with ``decimals`` decimals, more where rounding would fake 0 or a perfect score."""
    if x is None or not math.isfinite(x):
        return "n/a"
    v = x * scale
    text = f"{v:.{decimals}f}"
    while float(text) in (0.0, 1.0, 100.0) and float(text) != v and decimals < 12:
        decimals += 1
        text = f"{v:.{decimals}f}"
    return text


def _pm(stat: dict, scale: float = 1.0, decimals: int = 2) -> str:
    m, s = stat["mean"], stat["std"]
    if s is None or not math.isfinite(s):
        return fmt(m, scale, decimals)
    return f"{fmt(m, scale, decimals)} ± {fmt(s, scale, decimals)}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def _group_rows(summary: dict, stats: dict, cells: Any, pooled: bool = False) -> list[list[str]]:
    """Fold rows (cross-validation) and the overall row; ``cells(values, is_overall)``.

    ``pooled``: a set's figures are scored over all its cases together (no mean, no std over cases).
    """
    rows = []
    if summary["mode"] == "crossval":
        for g, entry in stats["folds"].items():
            if g in summary["missing"]["missing_folds"]:
                rows.append([g, "0"] + ["missing"] * len(cells(None, False)))
                continue
            rows.append([g, str(entry["n_cases"])] + cells(entry, False))
        of = stats["over_folds"]
        first = f"**Mean ± std over {of['n_folds']} fold{'s' if of['n_folds'] != 1 else ''}**"
        rows.append([first, str(of["n_cases"])] + cells(of, True))
    else:
        oc = stats["over_cases"]
        first = "**All cases, pooled**" if pooled else "**Mean ± std over cases**"
        rows.append([first, str(oc["n_cases"])] + cells(oc, True))
    return rows


def _paper_table(summary: dict) -> list[str]:
    stats = summary["statistics"]
    cols, unit = stats["columns"], summary["hd95_unit"]
    multi = len(cols) > 1

    def header(label: str) -> list[str]:
        return [f"{label} {c}" if multi else label for c in cols]

    head = ["Fold" if summary["mode"] == "crossval" else "Set", "Cases"] + header("DSC (%)") + header(f"HD95 ({unit})")

    def cells(entry: Any, overall: bool) -> list[str]:
        if entry is None:
            return [""] * (2 * len(cols))
        if overall:
            return [_pm(entry["dice"][c], 100) for c in cols] + [_pm(entry["hd95"][c]) for c in cols]
        return [fmt(entry["dice"][c], 100) for c in cols] + [fmt(entry["hd95"][c]) for c in cols]

    rows = _group_rows(summary, stats, cells)
    paper = summary.get("paper") or []
    for p in paper:
        rows.append([p["label"], "—"] + [fmt(p["dice"].get(c), 100) for c in cols]
                    + [fmt(p["hd95"].get(c)) for c in cols])
    if len(paper) == 1:
        p = paper[0]
        overall = stats["over_folds"] if summary["mode"] == "crossval" else stats["over_cases"]

        def diff(ours: float, theirs: float | None, scale: float) -> str:
            if theirs is None or ours is None or not math.isfinite(ours):
                return "n/a"
            return f"{(ours - theirs) * scale:+.2f}"

        rows.append(["Difference (this − paper)", ""]
                    + [diff(overall["dice"][c]["mean"], p["dice"].get(c), 100) for c in cols]
                    + [diff(overall["hd95"][c]["mean"], p["hd95"].get(c), 1) for c in cols])
    return _table(head, rows)


def _challenge_table(summary: dict) -> list[str]:
    ch = summary["challenge"]
    stats = ch["statistics"]
    cols, unit = stats["columns"], summary["hd95_unit"]
    multi = len(cols) > 1
    spec = ch["columns"]  # [{"name", "header", "kind"}]

    def header(c: dict) -> str:
        return f"{c['header']} ({unit})" if c["kind"] == "distance" else c["header"]

    head = ["Fold" if summary["mode"] == "crossval" else "Set", "Cases"]
    head += [f"{header(c)} {t}" if multi else header(c) for c in spec for t in cols]

    def cells(entry: Any, overall: bool) -> list[str]:
        if entry is None:
            return [""] * (len(spec) * len(cols))
        out = []
        for c in spec:
            d = 4 if c["kind"] == "fraction" else 2
            for t in cols:
                out.append(_pm(entry[c["name"]][t], 1, d) if overall else fmt(entry[c["name"]][t], 1, d))
        return out

    return [f"**{ch['title']}**", ""] + _table(head, _group_rows(summary, stats, cells, ch.get("pooled", False)))


def _notes(summary: dict) -> list[str]:
    mode, unit = summary["mode"], summary["hd95_unit"]
    notes = []
    if mode == "crossval":
        notes.append("Fold rows: mean over the fold's validation cases. Mean ± std: mean and sample "
                     "standard deviation (ddof=1) of the fold means; Cases: cases those folds cover.")
    else:
        notes.append("Mean ± std over cases (sample standard deviation, ddof=1).")
    cols = (summary.get("statistics") or summary["challenge"]["statistics"])["columns"]
    if len(cols) > 1:
        notes.append(f"{AVG}: per case, the mean over the {len(cols) - 1} "
                     f"{'regions' if summary['region_based'] else 'labels'}; then averaged like the others.")
    challenge = summary.get("challenge") or {}
    # which tables use this HD95 (a challenge with a convention of its own states it in its note)
    tables = ["DSC/HD95"] if summary.get("statistics") else []
    tables += ["FIVES"] if challenge.get("key") == "fives" else []
    if tables:
        which = f"HD95 ({' and '.join(tables)} table{'s' if len(tables) > 1 else ''})" if challenge else "HD95"
        notes.append(f"{which} in {'pixels' if unit == 'px' else unit}: "
                     f"{HD95_NOTES[summary['hd95_definition']]}; the image border counts as outside.")
    if summary.get("statistics"):
        notes.append("Both masks empty: DSC 100, HD95 0; one empty: DSC 0, HD95 = "
                     f"{summary['hd95_empty_penalty_description']}.")
    if summary.get("challenge"):
        notes.append(f"Challenge figures: {summary['challenge']['source']}.")
        if summary["challenge"].get("pooled"):
            notes.append("Challenge table: a fold's (or the set's) figures are scored over the objects of all "
                         "its cases together, not averaged over cases.")
    paper = summary.get("paper") or []
    if paper:
        notes.append("Paper rows: the paper's 5-fold means (Deconver, "
                     + ", ".join(sorted({p['table'] for p in paper})) + ").")
        if any(p["hd95_unit"] != unit for p in paper):
            notes.append(f"Note: the paper's HD95 is in {paper[0]['hd95_unit']}, this table's in {unit}.")
    miss = summary["missing"]
    for g, folder in miss["missing_folds"].items():
        notes.append(f"Fold {g} missing (no {folder}).")
    where = (lambda g: f"Fold {g}") if mode == "crossval" else (lambda g: "Set")
    for g, cases in miss["missing_cases"].items():
        if cases:
            notes.append(f"{where(g)}: {len(cases)} case(s) without prediction: {short_list(cases)}.")
    for g, cases in miss["predictions_without_reference"].items():
        if cases:
            notes.append(f"{where(g)}: {len(cases)} prediction(s) without reference, not evaluated: "
                         f"{short_list(cases)}.")
    for g, cases in miss["predictions_not_in_split"].items():
        if cases:
            notes.append(f"Fold {g}: {len(cases)} prediction(s) not in the fold's split, evaluated: "
                         f"{short_list(cases)}.")
    if miss["references_without_prediction"] and mode == "crossval":
        refs = miss["references_without_prediction"]
        notes.append(f"{len(refs)} reference(s) in labelsTr without a prediction in any evaluated fold: "
                     f"{short_list(refs)}.")
    notes += [f"Warning: {w}" for w in summary.get("warnings", [])]
    return notes


def render_markdown(summary: dict) -> str:
    """Markdown tables and notes from a summary dict (see ``report.evaluate_crossval``)."""
    lines = [f"### {summary['title']}", ""]
    if summary.get("statistics"):
        lines += _paper_table(summary) + [""]
    if summary.get("challenge"):
        lines += _challenge_table(summary) + [""]
    lines += [f"- {n}" for n in _notes(summary)]
    return "\n".join(lines) + "\n"
