"""The four data sets' challenge metrics, computed from the same masks as the paper's figures.

* ``brats23``: lesion-wise Dice / HD95 per region, and the legacy whole-region figures
  (:mod:`.brats`);
* ``isles22``: Dice, absolute volume difference (ml), absolute lesion-count difference, lesion F1
  (:mod:`.isles`);
* ``glas``: object-level F1, Dice and Hausdorff distance (:mod:`.glas`);
* ``fives``: Dice, HD95, sensitivity, specificity, accuracy (:mod:`.fives`; FIVES has no official
  evaluation code, these are the figures its data paper reports).

:func:`compute` gives one target's figures; :data:`CHALLENGES` says which of them are aggregated
and how the challenge table shows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from nnunet_deconver.evaluation.challenge import glas as _glas
from nnunet_deconver.evaluation.penalty import EmptyPenalty

__all__ = ["Column", "Challenge", "CHALLENGES", "detect_challenge", "compute"]


@dataclass(frozen=True)
class Column:
    """One aggregated figure: its per_case.csv name, its table header, how to print it."""

    name: str
    header: str
    kind: str  # "fraction" (4 decimals), "distance" (2 decimals, unit added), "number" (2 decimals)


@dataclass(frozen=True)
class Challenge:
    key: str
    title: str
    columns: tuple[Column, ...]  # aggregated, in table order
    counts: tuple[str, ...]  # per-case counts written to per_case.csv, not aggregated
    per_region: bool  # True: one set of columns per region (BraTS); else one foreground target
    source: str
    # scores a set of cases from their per-case figures and counts (the challenge pools its test
    # part); None: a set's figure is the mean over its cases
    pool: Callable[[Sequence[dict[str, float]]], dict[str, float]] | None = None


_D = Column("dice", "DSC", "fraction")
_H = Column("hd95", "HD95", "distance")
CHALLENGES: dict[str, Challenge] = {
    "brats23": Challenge(
        "brats23", "BraTS 2023 (glioma), lesion-wise",
        (Column("lesionwise_dice", "Lesion-wise DSC", "fraction"),
         Column("lesionwise_hd95", "Lesion-wise HD95", "distance"),
         Column("legacy_dice", "Legacy DSC", "fraction"), Column("legacy_hd95", "Legacy HD95", "distance")),
        ("n_lesions", "n_missed_lesions", "n_false_positive_lesions"), True,
        "BraTS 2023 lesion-wise evaluation: 26-connected lesions, 3 dilations with the 18-neighbour "
        "element, lesions of 50 mm^3 or less left out, missed and false-positive lesions scored Dice 0 / "
        "HD95 374; HD95 on area-weighted surface elements (the BraTS tools' convention)"),
    "isles22": Challenge(
        "isles22", "ISLES'22",
        (_D, Column("abs_volume_diff_ml", "AVD (ml)", "number"),
         Column("abs_lesion_count_diff", "ALCD", "number"), Column("lesion_f1", "Lesion F1", "fraction")),
        ("n_true_positive_lesions", "n_false_positive_lesions", "n_false_negative_lesions"), False,
        "ISLES'22: Dice, absolute volume difference, absolute lesion-count difference, lesion-wise F1 "
        "(26-connected lesions, detected when overlapping by at least one voxel)"),
    "glas": Challenge(
        "glas", "GlaS, object level",
        (Column("object_f1", "Object F1", "fraction"), Column("object_dice", "Object Dice", "fraction"),
         Column("object_hausdorff", "Object Hausdorff", "distance")),
        _glas.POOLED_SUMS, False,
        "GlaS 2015: object F1 (> 50% overlap), area-weighted object Dice and object Hausdorff, each "
        "pooled over the objects of all images of a set, as the challenge scores a test part",
        pool=_glas.pool_glas),
    "fives": Challenge(
        "fives", "FIVES (no official evaluation code: the figures of its data paper)",
        (_D, _H, Column("sensitivity", "Sensitivity", "fraction"),
         Column("specificity", "Specificity", "fraction"), Column("accuracy", "Accuracy", "fraction")),
        (), False, "FIVES data paper: Dice, HD95 (as in the DSC/HD95 table), pixel-wise sensitivity, specificity "
        "and accuracy"),
}

_NAME_HINTS = (("brats", "brats23"), ("isles", "isles22"), ("glas", "glas"), ("fives", "fives"))


def detect_challenge(*names: str | None) -> str | None:
    """The challenge a data set name points to (``Dataset502_BraTS23`` -> ``brats23``), or None."""
    for name in names:
        if not name:
            continue
        words = re.split(r"[^a-z]+", name.lower())
        for hint, key in _NAME_HINTS:
            if any(w.startswith(hint) for w in words):
                return key
    return None


def compute(key: str, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], definition: str,
            penalty: EmptyPenalty, ref_instances: np.ndarray | None = None) -> dict[str, float]:
    """The challenge ``key``'s figures for one target of one case.

    Args:
        pred, ref: binary masks (X, Y) or (X, Y, Z).
        spacing: per array axis.
        definition: HD95 definition (``directed-max`` or ``pooled``) of the FIVES HD95; BraTS uses its
            tools' own HD95 whatever it is.
        penalty: empty-mask HD95 / Hausdorff where the challenge leaves it to the user (GlaS, FIVES).
        ref_instances: GlaS reference instance map; None: components of ``ref``.
    """
    if key == "brats23":
        from nnunet_deconver.evaluation.challenge.brats import brats_metrics

        return brats_metrics(pred, ref, spacing)
    if key == "isles22":
        from nnunet_deconver.evaluation.challenge.isles import isles_metrics

        return isles_metrics(pred, ref, spacing)
    if key == "glas":
        from nnunet_deconver.evaluation.challenge.glas import glas_metrics
        from nnunet_deconver.evaluation.challenge.lesions import label_components

        instances = ref_instances if ref_instances is not None else label_components(ref)[0]
        return glas_metrics(pred, instances * ref, spacing, penalty)
    if key == "fives":
        from nnunet_deconver.evaluation.challenge.fives import fives_metrics

        return fives_metrics(pred, ref, spacing, definition, penalty)
    raise ValueError(f"unknown challenge {key!r}; choose from {sorted(CHALLENGES)}")
