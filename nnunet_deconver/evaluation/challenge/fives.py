"""FIVES (retinal vessels): the figures its data paper reports; the challenge has no official code.

Dice and HD95 (this package's definitions and empty-mask penalty), and pixel-wise
sensitivity TP / (TP + FN), specificity TN / (TN + FP) and accuracy (TP + TN) / N. Sensitivity is
1 when the reference is empty, specificity 1 when the reference covers the whole image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from nnunet_deconver.evaluation.metrics import dice, hd95
from nnunet_deconver.evaluation.penalty import EmptyPenalty

__all__ = ["fives_metrics"]


def fives_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], definition: str,
                  penalty: EmptyPenalty) -> dict[str, float]:
    """Dice, HD95, sensitivity, specificity, accuracy of one image (binary masks)."""
    tp = int(np.count_nonzero(pred & ref))
    fp = int(np.count_nonzero(pred & ~ref))
    fn = int(np.count_nonzero(~pred & ref))
    tn = pred.size - tp - fp - fn
    return {
        "dice": dice(pred, ref),
        "hd95": hd95(pred, ref, spacing, penalty, definition),
        "sensitivity": 1.0 if tp + fn == 0 else tp / (tp + fn),
        "specificity": 1.0 if tn + fp == 0 else tn / (tn + fp),
        "accuracy": (tp + tn) / pred.size,
    }
