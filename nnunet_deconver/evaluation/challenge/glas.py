"""GlaS (gland segmentation): object-level F1, Dice and Hausdorff distance.

Objects: the reference's gland instances (the original instance map when available, else the
8-connected components of the reference mask) and the 8-connected components of the predicted
mask. Let G_i be the reference objects, S_j the predicted ones, |.| areas in pixels.

* **Object F1.** S_j's ground truth is the G_i it overlaps most. S_j is a true positive when it
  covers more than 50% of that G_i's area, otherwise a false positive; a G_i that no true positive
  covers is a false negative. F1 = 2 TP / (2 TP + FP + FN); 1 when both images have no object.
* **Object Dice.** S*(G_i) is the S_j overlapping G_i most (none: Dice 0), G*(S_j) likewise;
  Dice_obj = 1/2 [ sum_i |G_i| / sum|G| Dice(G_i, S*(G_i)) + sum_j |S_j| / sum|S|
  Dice(G*(S_j), S_j) ]: each direction's terms weighted by object area. 1 when both are empty,
  0 when exactly one is.
* **Object Hausdorff.** The same area-weighted combination of H(G_i, S*(G_i)) and
  H(G*(S_j), S_j), H the Hausdorff distance between the two pixel sets; an object that overlaps
  none on the other side is paired with the nearest one (the one at the smallest Hausdorff
  distance). 0 when both are empty; the empty-mask penalty (the image diagonal by default) when
  exactly one is.

per_case.csv holds each image's figures. A set of images (a fold, a test part) is scored as the
challenge scores a test part, by :func:`pool_glas`: F1 from the TP, FP and FN of all its images,
object Dice and Hausdorff with the area weights taken over the objects of all its images (each
image also writes the weighted sums and areas this needs). The mean of per-image figures would
weigh a small image's few glands as much as a large image's many.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from nnunet_deconver.evaluation.challenge.lesions import label_components, set_hausdorff
from nnunet_deconver.evaluation.penalty import EmptyPenalty

__all__ = ["POOLED_SUMS", "glas_metrics", "pool_glas", "relabel_instances"]

#: per-image sums from which :func:`pool_glas` scores a set of images (written to per_case.csv)
POOLED_SUMS = ("n_true_positive_objects", "n_false_positive_objects", "n_false_negative_objects",
               "area_ref_objects", "area_pred_objects", "dice_ref_area_weighted", "dice_pred_area_weighted",
               "hausdorff_ref_area_weighted", "hausdorff_pred_area_weighted")


def relabel_instances(instances: np.ndarray) -> tuple[np.ndarray, int]:
    """Instance map with any integer ids (0 = background) -> ids 1..n in order of value."""
    values, inverse = np.unique(instances, return_inverse=True)
    inverse = inverse.reshape(instances.shape)
    if values[0] == 0:
        return inverse, len(values) - 1
    return inverse + 1, len(values)


def _overlaps(ref_ids: np.ndarray, n_ref: int, pred_ids: np.ndarray, n_pred: int) -> np.ndarray:
    """(n_ref + 1, n_pred + 1) pixel counts of every (reference id, predicted id) pair."""
    pair = ref_ids.astype(np.int64) * (n_pred + 1) + pred_ids
    return np.bincount(pair.ravel(), minlength=(n_ref + 1) * (n_pred + 1)).reshape(n_ref + 1, n_pred + 1)


def _partner_distance(ids: np.ndarray, k: int, other_ids: np.ndarray, n_other: int, best: int,
                      spacing: Sequence[float]) -> float:
    """Hausdorff distance of object k to its partner ``best`` (or, if 0, to the nearest object)."""
    obj = ids == k
    if best:
        return set_hausdorff(obj, other_ids == best, spacing)
    return min(set_hausdorff(obj, other_ids == j, spacing) for j in range(1, n_other + 1))


def glas_metrics(pred: np.ndarray, ref_instances: np.ndarray, spacing: Sequence[float],
                 penalty: EmptyPenalty) -> dict[str, float]:
    """Object F1, Dice and Hausdorff of one image.

    Args:
        pred: binary prediction (H, W).
        ref_instances: reference instance map (H, W), 0 background, one id per gland.
        spacing: pixel size (1, 1 for GlaS: distances in pixels).
        penalty: Hausdorff value when exactly one image has no object.
    """
    ref_ids, n_ref = relabel_instances(ref_instances)
    pred_ids, n_pred = label_components(pred)
    if n_ref == 0 or n_pred == 0:
        both = n_ref == 0 and n_pred == 0
        distance = 0.0 if both else penalty.resolve(pred.shape, spacing)
        area_ref, area_pred = float((ref_ids > 0).sum()), float((pred_ids > 0).sum())
        return {"object_f1": 1.0 if both else 0.0, "object_dice": 1.0 if both else 0.0,
                "object_hausdorff": distance,
                "n_true_positive_objects": 0, "n_false_positive_objects": n_pred,
                "n_false_negative_objects": n_ref,
                # an object with nothing on the other side: Dice 0, Hausdorff the penalty
                "area_ref_objects": area_ref, "area_pred_objects": area_pred,
                "dice_ref_area_weighted": 0.0, "dice_pred_area_weighted": 0.0,
                "hausdorff_ref_area_weighted": area_ref * distance,
                "hausdorff_pred_area_weighted": area_pred * distance}
    counts = _overlaps(ref_ids, n_ref, pred_ids, n_pred)
    area_ref = counts[1:, :].sum(axis=1)
    area_pred = counts[:, 1:].sum(axis=0)
    inner = counts[1:, 1:]
    # best partner of each object (0 = overlaps nothing on the other side)
    best_pred = np.where(inner.max(axis=1) > 0, inner.argmax(axis=1) + 1, 0)
    best_ref = np.where(inner.max(axis=0) > 0, inner.argmax(axis=0) + 1, 0)

    tp_refs = {int(best_ref[j]) for j in range(n_pred)
               if best_ref[j] and inner[best_ref[j] - 1, j] > 0.5 * area_ref[best_ref[j] - 1]}
    tp = sum(1 for j in range(n_pred)
             if best_ref[j] and inner[best_ref[j] - 1, j] > 0.5 * area_ref[best_ref[j] - 1])
    fp, fn = n_pred - tp, n_ref - len(tp_refs)

    def pair_dice(i: int, j: int) -> float:  # 1-based ids, 0 = none
        return 0.0 if not (i and j) else 2.0 * inner[i - 1, j - 1] / (area_ref[i - 1] + area_pred[j - 1])

    # area-weighted sums (not yet divided by the total areas)
    dice_ref = sum(area_ref[i - 1] * pair_dice(i, int(best_pred[i - 1])) for i in range(1, n_ref + 1))
    dice_pred = sum(area_pred[j - 1] * pair_dice(int(best_ref[j - 1]), j) for j in range(1, n_pred + 1))
    h_ref = sum(area_ref[i - 1] * _partner_distance(ref_ids, i, pred_ids, n_pred, int(best_pred[i - 1]), spacing)
                for i in range(1, n_ref + 1))
    h_pred = sum(area_pred[j - 1] * _partner_distance(pred_ids, j, ref_ids, n_ref, int(best_ref[j - 1]), spacing)
                 for j in range(1, n_pred + 1))
    sums = {
        "n_true_positive_objects": tp,
        "n_false_positive_objects": fp,
        "n_false_negative_objects": fn,
        "area_ref_objects": float(area_ref.sum()),
        "area_pred_objects": float(area_pred.sum()),
        "dice_ref_area_weighted": float(dice_ref),
        "dice_pred_area_weighted": float(dice_pred),
        "hausdorff_ref_area_weighted": float(h_ref),
        "hausdorff_pred_area_weighted": float(h_pred),
    }
    return {**pool_glas([sums]), **sums}


def pool_glas(images: Sequence[dict[str, float]]) -> dict[str, float]:
    """Object F1, Dice and Hausdorff of a set of images from their :data:`POOLED_SUMS`.

    F1 = 2 TP / (2 TP + FP + FN) over all images' objects; Dice_obj = 1/2 [sum over all reference
    objects of |G_i| Dice / sum |G| + the same over all predicted objects]; Hausdorff likewise. A set
    with no object on either side scores F1 1, Dice 1, Hausdorff 0.
    """
    total = {k: sum(float(im[k]) for im in images) for k in POOLED_SUMS}
    tp, fp, fn = (total[f"n_{w}_objects"] for w in ("true_positive", "false_positive", "false_negative"))
    a_ref, a_pred = total["area_ref_objects"], total["area_pred_objects"]

    def combine(kind: str, both_empty: float) -> float:
        if a_ref == 0 and a_pred == 0:
            return both_empty
        ref = total[f"{kind}_ref_area_weighted"] / a_ref if a_ref else 0.0
        pred = total[f"{kind}_pred_area_weighted"] / a_pred if a_pred else 0.0
        if kind == "hausdorff" and not (a_ref and a_pred):  # one side has no object at all
            return ref + pred  # the penalty, from the side that has objects
        return (ref + pred) / 2

    return {
        "object_f1": 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn),
        "object_dice": combine("dice", 1.0),
        "object_hausdorff": combine("hausdorff", 0.0),
    }
