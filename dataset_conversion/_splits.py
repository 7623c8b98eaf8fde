"""The stratified 5-fold cross-validation written as nnU-Net's ``splits_final.json``.

nnU-Net's own split is random per fold; the paper's data sets are small or unbalanced (lesion
volumes, tumour grades, disease categories), so each conversion stratifies its folds by a property
of the cases: a category read during discovery (:func:`metadata_strata`) or quantiles of a volume
measured during conversion (:func:`volume_strata`).

Standard library only.
"""

from __future__ import annotations

import random
from typing import Hashable, Mapping, Sequence

from dataset_conversion._model import Case, CaseResult, ConversionError, StrataFunction

#: Default seed of the cross-validation split (``--seed``).
DEFAULT_SEED = 12345
#: nnU-Net trains five folds.
N_FOLDS = 5


def quantile_strata(values: Mapping[str, float], n_bins: int, prefix: str) -> dict[str, str]:
    """Assign each case to one of ``n_bins`` equal-count bins of ``values`` (quartiles, tertiles).

    Cases are ranked by (value, case id), so ties are broken deterministically; bin ``i`` (named
    ``f"{prefix}{i + 1}"``) holds ranks ``[i * n / n_bins, (i + 1) * n / n_bins)``.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    ranked = sorted(values, key=lambda case: (values[case], case))
    n = len(ranked)
    return {case: f"{prefix}{rank * n_bins // n + 1}" for rank, case in enumerate(ranked)}


def stratified_kfold(strata: Mapping[str, Hashable], n_folds: int = N_FOLDS,
                     seed: int = DEFAULT_SEED) -> list[dict[str, list[str]]]:
    """Stratified ``n_folds``-fold cross-validation in nnU-Net's ``splits_final.json`` format.

    ``strata`` maps each case id to its stratum. Within each stratum (taken in sorted order) the
    cases are shuffled with ``random.Random(seed)`` and dealt to the folds in turn, continuing
    where the previous stratum stopped. Hence every case is in exactly one validation fold, each
    fold holds floor or ceil of (stratum size / n_folds) cases of every stratum, and fold sizes
    differ by at most one. The result depends only on ``strata``, ``n_folds`` and ``seed``.
    """
    if n_folds < 2:
        raise ValueError("n_folds must be at least 2")
    if len(strata) < n_folds:
        raise ConversionError(f"{len(strata)} cases cannot be split into {n_folds} cross-validation folds: "
                              f"at least {n_folds} cases are needed")
    rng = random.Random(seed)
    by_stratum: dict[str, list[str]] = {}
    for case, stratum in strata.items():
        by_stratum.setdefault(str(stratum), []).append(case)
    fold_of: dict[str, int] = {}
    next_fold = 0
    for stratum in sorted(by_stratum):
        members = sorted(by_stratum[stratum])
        rng.shuffle(members)
        for case in members:
            fold_of[case] = next_fold
            next_fold = (next_fold + 1) % n_folds
    cases = sorted(fold_of)
    return [{"train": [c for c in cases if fold_of[c] != k], "val": [c for c in cases if fold_of[c] == k]}
            for k in range(n_folds)]


def metadata_strata(key: str) -> StrataFunction:
    """Strata read from each case's discovery metadata (GlaS grade, FIVES category)."""

    def strata(cases: Sequence[Case], results: Mapping[str, CaseResult]) -> dict[str, str]:
        return {case.case_id: str(case.metadata[key]) for case in cases}

    return strata


def volume_strata(key: str, n_bins: int, prefix: str) -> StrataFunction:
    """Quantile strata of a volume measured during conversion (ISLES lesion, BraTS whole tumour)."""

    def strata(cases: Sequence[Case], results: Mapping[str, CaseResult]) -> dict[str, str]:
        return quantile_strata({case.case_id: float(results[case.case_id].metadata[key]) for case in cases},
                               n_bins, prefix)

    return strata
