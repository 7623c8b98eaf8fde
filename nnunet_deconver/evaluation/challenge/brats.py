"""BraTS 2023 (glioma) lesion-wise Dice and HD95, with the legacy whole-region figures.

Per region (ET, TC, WT), as the BraTS 2023 evaluation tools define them:

1. Lesions are the 26-connected components (8-connected in 2D) of the reference and of the
   prediction.
2. The reference region is dilated :data:`DILATION_ITERATIONS` = 3 times with the 18-neighbour
   structuring element (``scipy.ndimage.generate_binary_structure(3, 2)``: a voxel and the voxels
   sharing a face or an edge with it; in 2D the 8-neighbour one). Reference components that fall
   into one 26-connected component of the dilated mask form one ground-truth lesion (the reference
   itself is not changed).
3. A predicted component belongs to a ground-truth lesion when it overlaps that lesion's dilated
   extent (it may belong to several). Ground-truth lesions whose volume, voxels x the product of
   the spacing, is :data:`MIN_LESION_VOLUME_MM3` = 50 mm^3 or less are left out (and so are the
   predicted components that belong only to them).
4. Each remaining ground-truth lesion scores Dice and HD95 between it and the union of all its
   predicted components (whole components, also where they reach beyond the extent); a lesion
   without any scores Dice 0 and HD95 :data:`LESION_PENALTY` = 374, and so does every predicted
   component that belongs to no ground-truth lesion (false positive).
5. The case's lesion-wise Dice / HD95 is the mean over all those lesions; with none (both masks
   empty, or only small reference lesions and no false positive) Dice 1 and HD95 0.

Legacy figures: Dice and HD95 of the whole region; both empty: Dice 1, HD95 0; exactly one empty:
Dice 0, HD95 :data:`LESION_PENALTY`.

HD95 (lesion-wise and legacy) is the tools' own: area-weighted surface elements at voxel corners
(:mod:`nnunet_deconver.evaluation.surfels`), not the surface voxels of the paper's table; the two
differ by several voxels on some cases. The tools read images with nibabel, in the file's (x, y, z)
axis order, while nnU-Net's readers give (z, y, x): the masks' axes are reversed for the surface
elements, so that rounding (which decides ties at the percentile) is the tools' too.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from nnunet_deconver.evaluation.challenge.lesions import bounding_box, label_components
from nnunet_deconver.evaluation.metrics import dice
from nnunet_deconver.evaluation.surfels import surfel_hd95

__all__ = ["DILATION_ITERATIONS", "MIN_LESION_VOLUME_MM3", "LESION_PENALTY", "brats_hd95", "brats_metrics"]

DILATION_ITERATIONS = 3
MIN_LESION_VOLUME_MM3 = 50.0
LESION_PENALTY = 374.0


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Dilate DILATION_ITERATIONS times with the 18-neighbour element (8 in 2D), on a padded crop."""
    out = np.zeros_like(mask)
    if not mask.any():
        return out
    box = bounding_box(mask, margin=DILATION_ITERATIONS)
    structure = ndimage.generate_binary_structure(mask.ndim, 2)
    out[box] = ndimage.binary_dilation(mask[box], structure, iterations=DILATION_ITERATIONS)
    return out


def brats_hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
    """HD95 as the BraTS tools compute it: 0 if both masks are empty, 374 if one is.

    Args:
        pred, ref: binary masks in nnU-Net's axis order ((z, y, x) of the file).
        spacing: per array axis (mm).
    """
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not (has_pred or has_ref):
        return 0.0
    if has_pred != has_ref:
        return LESION_PENALTY
    return surfel_hd95(pred.T, ref.T, tuple(spacing)[::-1])


def _volume_mm3(voxels: int, spacing: Sequence[float]) -> float:
    """voxels x sx x sy x sz, multiplied in the tools' order (file axes x, y, z)."""
    volume = float(voxels)
    for s in reversed(tuple(spacing)):
        volume *= float(s)
    return volume


def brats_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Lesion-wise and legacy Dice / HD95 of one region.

    Args:
        pred, ref: binary masks of the same shape, in nnU-Net's axis order ((z, y, x) of the file).
        spacing: per array axis (mm).
    """
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
        if not _volume_mm3(int(ref_voxels[k]), spacing) > MIN_LESION_VOLUME_MM3:
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
        hds.append(brats_hd95(found, lesion, spacing))
    n_false = n_pred - len(matched)
    dices += [0.0] * n_false
    hds += [LESION_PENALTY] * n_false
    return {
        "lesionwise_dice": float(np.mean(dices)) if dices else 1.0,
        "lesionwise_hd95": float(np.mean(hds)) if hds else 0.0,
        "legacy_dice": dice(pred, ref),
        "legacy_hd95": brats_hd95(pred, ref, spacing),
        "n_lesions": n_counted,
        "n_missed_lesions": n_missed,
        "n_false_positive_lesions": n_false,
    }
