"""ISLES'22 (ischemic stroke lesions): the challenge's four figures.

* ``dice``: Dice of the whole masks, 1 when both are empty.
* ``abs_volume_diff_ml``: | volume(prediction) - volume(reference) | in ml, from the voxel spacing
  (mm): voxel count x product of the spacing / 1000.
* ``abs_lesion_count_diff``: | number of predicted lesions - number of reference lesions |.
* ``lesion_f1``: lesions are 26-connected components (8-connected in 2D). A reference lesion
  overlapping the prediction by at least one voxel is a true positive, otherwise a false negative;
  a predicted lesion overlapping no reference voxel is a false positive.
  F1 = TP / (TP + (FP + FN) / 2); 1 when neither mask has a lesion.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from nnunet_deconver.evaluation.challenge.lesions import label_components
from nnunet_deconver.evaluation.metrics import dice

__all__ = ["isles_metrics"]


def isles_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """The four ISLES'22 figures of one case (binary masks of the same shape)."""
    ref_labels, n_ref = label_components(ref)
    pred_labels, n_pred = label_components(pred)
    tp = int(np.count_nonzero(np.unique(ref_labels[pred])))
    fp = n_pred - int(np.count_nonzero(np.unique(pred_labels[ref])))
    fn = n_ref - tp
    voxel_ml = float(np.prod(spacing)) / 1000.0
    volume_diff = abs(int(np.count_nonzero(pred)) - int(np.count_nonzero(ref))) * voxel_ml
    return {
        "dice": dice(pred, ref),
        "abs_volume_diff_ml": volume_diff,
        "abs_lesion_count_diff": abs(n_pred - n_ref),
        "lesion_f1": 1.0 if tp + fp + fn == 0 else tp / (tp + (fp + fn) / 2),
        "n_true_positive_lesions": tp,
        "n_false_positive_lesions": fp,
        "n_false_negative_lesions": fn,
    }
