"""BraTS 2023 (glioma) lesion-wise Dice and HD95, with the legacy whole-region figures.

Per region (ET, TC, WT), as the BraTS 2023 evaluation defines them:

1. Lesions are the 26-connected components (8-connected in 2D) of the reference and of the
   prediction.
2. The reference region is dilated by :data:`DILATION_VOXELS` = 3 voxels (full-connectivity
   structuring element); reference components that fall into one component of the dilated mask
   form one ground-truth lesion (the reference itself is not changed).
3. A predicted component belongs to a ground-truth lesion when it overlaps that lesion's dilated
   extent. Ground-truth lesions of fewer than :data:`MIN_LESION_VOXELS` = 50 voxels are left out
   (and so are the predicted components that touch only them).
4. Each remaining ground-truth lesion scores Dice and HD95 between it and the union of its
   predicted components; a lesion without any scores Dice 0 and HD95 :data:`LESION_PENALTY` = 374,
   and so does every predicted component that belongs to no ground-truth lesion (false positive).
5. The case's lesion-wise Dice / HD95 is the mean over all those lesions; with none (both masks
   empty, or only small reference lesions and no false positive) Dice 1 and HD95 0.

Legacy figures: Dice and HD95 of the whole region, HD95 :data:`LESION_PENALTY` when exactly one
mask is empty. HD95 uses this package's HD95 definition (``directed-max`` by default) on
face-connected surface voxels; the BraTS tools weight surface elements by their area, so their
HD95 can differ by a fraction of a voxel.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from nnunet_deconver.evaluation.challenge.lesions import bounding_box, full_structure, label_components
from nnunet_deconver.evaluation.metrics import dice, hd95

__all__ = ["DILATION_VOXELS", "MIN_LESION_VOXELS", "LESION_PENALTY", "brats_metrics"]

DILATION_VOXELS = 3
MIN_LESION_VOXELS = 50
LESION_PENALTY = 374.0


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Dilate by DILATION_VOXELS with the full structuring element, computed on a padded crop."""
    out = np.zeros_like(mask)
    if not mask.any():
        return out
    box = bounding_box(mask, margin=DILATION_VOXELS)
    out[box] = ndimage.binary_dilation(mask[box], full_structure(mask.ndim), iterations=DILATION_VOXELS)
    return out


def brats_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], definition: str) -> dict[str, float]:
    """Lesion-wise and legacy Dice / HD95 of one region (binary masks of the same shape)."""
    pred_labels, n_pred = label_components(pred)
    extent_labels, n_extent = label_components(_dilate(ref))
    ref_voxels = np.bincount(extent_labels[ref], minlength=n_extent + 1)
    pred_boxes = ndimage.find_objects(pred_labels)
    dices: list[float] = []
    hds: list[float] = []
    matched: set[int] = set()
    n_counted = n_missed = 0
    for k, box in enumerate(ndimage.find_objects(extent_labels), start=1):
        extent = extent_labels[box] == k
        hits = {int(v) for v in np.unique(pred_labels[box][extent]) if v}
        matched |= hits
        if ref_voxels[k] < MIN_LESION_VOXELS:
            continue
        n_counted += 1
        if not hits:
            n_missed += 1
            dices.append(0.0)
            hds.append(LESION_PENALTY)
            continue
        # joint box of the lesion's extent and its predicted components (they may reach out of it)
        starts = [min([box[a].start] + [pred_boxes[h - 1][a].start for h in hits]) for a in range(ref.ndim)]
        stops = [max([box[a].stop] + [pred_boxes[h - 1][a].stop for h in hits]) for a in range(ref.ndim)]
        crop = tuple(slice(s, e) for s, e in zip(starts, stops))
        lesion = ref[crop] & (extent_labels[crop] == k)
        found = np.isin(pred_labels[crop], list(hits))
        dices.append(dice(found, lesion))
        hds.append(hd95(found, lesion, spacing, definition=definition))
    n_false = n_pred - len(matched)
    dices += [0.0] * n_false
    hds += [LESION_PENALTY] * n_false
    return {
        "lesionwise_dice": float(np.mean(dices)) if dices else 1.0,
        "lesionwise_hd95": float(np.mean(hds)) if hds else 0.0,
        "legacy_dice": dice(pred, ref),
        "legacy_hd95": hd95(pred, ref, spacing, LESION_PENALTY, definition),
        "n_lesions": n_counted,
        "n_missed_lesions": n_missed,
        "n_false_positive_lesions": n_false,
    }
