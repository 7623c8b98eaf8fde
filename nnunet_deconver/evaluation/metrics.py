"""Dice, HD95 and Hausdorff distance of binary masks in 2D or 3D (numpy + scipy only).

Conventions:

* **Surface.** The surface of a binary mask is the set of its voxels that have at least one
  *face* neighbour outside the mask (4-connectivity in 2D, 6-connectivity in 3D, in general the
  2N axis neighbours in N dimensions). Voxels outside the image count as outside the mask, so a
  mask voxel on the image border is always a surface voxel (as in medpy and MONAI's
  ``get_mask_edges``; the BraTS tools use surface elements at voxel corners instead, see
  :mod:`nnunet_deconver.evaluation.surfels`).
* **Directed surface distances.** d(P -> R): for every surface voxel of P the Euclidean distance
  (in the units of ``spacing``, e.g. mm) to the nearest surface voxel of R; d(R -> P) likewise.
  Distances are between voxel centres.
* **Percentile.** q-th percentile of n distances by ``numpy.percentile(d, q)`` with numpy's default
  ``method="linear"`` (also what ``torch.quantile`` and so MONAI use): with the distances sorted as
  d_0 <= ... <= d_{n-1}, h = (q / 100) (n - 1) and P_q = d_floor(h) + (h - floor(h)) (d_floor(h)+1 -
  d_floor(h)).
* **HD95, definition "directed-max" (default).** The paper's equation (9) with the 95th percentile
  in place of each maximum: HD95 = max{ P_95(d(R -> P)), P_95(d(P -> R)) }, the larger of the two
  directed 95th percentiles. This is MONAI's ``HausdorffDistanceMetric(percentile=95)``.
* **HD95, definition "pooled".** medpy's ``hd95``: one 95th percentile of the two directed sets
  concatenated, P_95(d(P -> R) ++ d(R -> P)). Usually smaller than "directed-max", not always: with
  linear interpolation it can exceed both directed percentiles (a = [0 1 1], b = [1 1 0]: 1.0
  against 0.95).
* **Hausdorff distance.** HD = max{ max d(R -> P), max d(P -> R) } (both definitions agree).
* **Dice.** DSC = 2 |A n B| / (|A| + |B|).
* **Empty masks.** Both empty: Dice 1 and HD95 0. Exactly one empty: Dice 0 and HD95 equal to a
  penalty (:class:`~nnunet_deconver.evaluation.penalty.EmptyPenalty`), by default the image
  diagonal in the units of ``spacing``.

Surfaces are found by a face-connected erosion on each mask's bounding box grown by one voxel
(zeros beyond the image reproduce "outside the image counts as outside the mask"); the distances
are exact nearest-neighbour queries of a k-d tree (:class:`scipy.spatial.cKDTree`) between the two
sets of surface-voxel centres scaled by the spacing, never all pairwise distances. Unlike distance
transforms over the masks' joint bounding box, the cost does not grow when a small false positive
lies far from the rest.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

from nnunet_deconver.evaluation.penalty import BRATS_HD95_PENALTY, EmptyPenalty, PenaltyLike
from nnunet_deconver.evaluation.penalty import image_diagonal as _diagonal

__all__ = [
    "BRATS_HD95_PENALTY",
    "HD95_DEFINITIONS",
    "dice",
    "hd95",
    "hausdorff",
    "surface_mask",
    "surface_distances",
    "image_diagonal",
    "resolve_empty_penalty",
    "binary_metrics",
]

#: The two HD95 definitions, the default first (see the module docstring).
HD95_DEFINITIONS: tuple[str, ...] = ("directed-max", "pooled")

#: Accepted values of ``empty_penalty`` (see :class:`EmptyPenalty`).
EmptyPenaltyLike = PenaltyLike


def _as_bool(mask: np.ndarray, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool:
        mask = mask != 0
    if mask.ndim < 1:
        raise ValueError(f"{name} must be an array with at least one axis, got a scalar")
    return mask


def _check_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = _as_bool(pred, "pred")
    ref = _as_bool(ref, "ref")
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    return pred, ref


def _spacing(spacing: Sequence[float] | float | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    if np.isscalar(spacing):
        spacing = (float(spacing),) * ndim  # type: ignore[arg-type]
    spacing = tuple(float(s) for s in spacing)  # type: ignore[union-attr]
    if len(spacing) != ndim:
        raise ValueError(f"spacing has {len(spacing)} entries for a {ndim}-D mask: {spacing}")
    if any(not (s > 0 and math.isfinite(s)) for s in spacing):
        raise ValueError(f"spacing must be positive and finite, got {spacing}")
    return spacing


def _check_definition(definition: str) -> str:
    if definition not in HD95_DEFINITIONS:
        raise ValueError(f"HD95 definition must be one of {HD95_DEFINITIONS}, got {definition!r}")
    return definition


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice similarity coefficient 2 |P n R| / (|P| + |R|) of two binary masks.

    Args:
        pred: prediction mask, any shape (e.g. (X, Y) or (X, Y, Z)); nonzero = foreground.
        ref: reference mask of the same shape.

    Returns:
        Dice in [0, 1]; 1.0 when both masks are empty, 0.0 when exactly one is.
    """
    pred, ref = _check_pair(pred, ref)
    n_pred = int(np.count_nonzero(pred))
    n_ref = int(np.count_nonzero(ref))
    if n_pred + n_ref == 0:
        return 1.0
    inter = int(np.count_nonzero(pred & ref))
    return 2.0 * inter / (n_pred + n_ref)


def surface_mask(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a binary mask: mask voxels with a face neighbour outside the mask.

    Face neighbours are the 2N axis neighbours (4 in 2D, 6 in 3D); voxels beyond the image
    border count as outside, so mask voxels on the border are surface voxels.

    Args:
        mask: binary mask of shape (X, Y) or (X, Y, Z) (any N-D works).

    Returns:
        Boolean array of the same shape, True on the surface.
    """
    mask = _as_bool(mask, "mask")
    if not mask.any():
        return np.zeros_like(mask)
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    # border_value=0: outside the image is background, so border voxels erode away.
    eroded = ndimage.binary_erosion(mask, structure=structure, iterations=1, border_value=0)
    return mask & ~eroded


def _surface_points(mask: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Coordinates (in units of spacing) of a non-empty mask's surface voxels, C order, shape (n, N).

    The surface is found on the mask's own bounding box grown by one voxel, zero padded beyond the
    image (so "outside the image counts as outside the mask" holds unchanged).
    """
    lo, hi = [], []
    for axis in range(mask.ndim):
        other = tuple(i for i in range(mask.ndim) if i != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        lo.append(int(idx[0]) - 1)
        hi.append(int(idx[-1]) + 2)
    sl = tuple(slice(max(l, 0), min(h, n)) for l, h, n in zip(lo, hi, mask.shape))
    pad = tuple((1 if l < 0 else 0, 1 if h > n else 0) for l, h, n in zip(lo, hi, mask.shape))
    crop = np.pad(mask[sl], pad, mode="constant", constant_values=False)
    offset = np.array(lo, dtype=np.float64)  # index 0 of the padded crop is lo in the image
    return (np.argwhere(surface_mask(crop)) + offset) * np.asarray(spacing, dtype=np.float64)


def surface_distances(
    a: np.ndarray, b: np.ndarray, spacing: Sequence[float] | float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances between two non-empty binary masks.

    Exact nearest-neighbour queries (:class:`scipy.spatial.cKDTree`) between the two sets of
    surface-voxel centres, in units of ``spacing``.

    Args:
        a: binary mask, shape (X, Y) or (X, Y, Z).
        b: binary mask of the same shape.
        spacing: voxel size per axis (same order as the array axes), e.g. mm; default 1.

    Returns:
        ``(d_ab, d_ba)``: 1-D float arrays; ``d_ab`` holds, for each surface voxel of ``a`` (in
        C order), the distance to the nearest surface voxel of ``b``; ``d_ba`` the converse.

    Raises:
        ValueError: if either mask is empty (no surface).
    """
    from scipy.spatial import cKDTree

    a, b = _check_pair(a, b)
    sp = _spacing(spacing, a.ndim)
    if not a.any() or not b.any():
        raise ValueError("surface distances need two non-empty masks")
    pa, pb = _surface_points(a, sp), _surface_points(b, sp)
    d_ab = cKDTree(pb).query(pa, k=1)[0]
    d_ba = cKDTree(pa).query(pb, k=1)[0]
    return np.asarray(d_ab, dtype=np.float64), np.asarray(d_ba, dtype=np.float64)


def image_diagonal(shape: Sequence[int], spacing: Sequence[float] | float | None = None) -> float:
    """Length of the image diagonal, sqrt(sum((shape_i * spacing_i)^2)), in units of spacing."""
    return _diagonal(shape, _spacing(spacing, len(shape)))


def resolve_empty_penalty(
    empty_penalty: PenaltyLike, shape: Sequence[int], spacing: Sequence[float] | float | None = None
) -> float:
    """HD95 value used when exactly one mask is empty (see :class:`EmptyPenalty`)."""
    return EmptyPenalty.parse(empty_penalty).resolve(shape, _spacing(spacing, len(shape)))


def _distances_or_none(pred: np.ndarray, ref: np.ndarray, spacing, empty_penalty: PenaltyLike):
    """(value, None) when a mask is empty (0 or the penalty), else (None, (d_pr, d_rp))."""
    pred, ref = _check_pair(pred, ref)
    sp = _spacing(spacing, pred.ndim)
    penalty = EmptyPenalty.parse(empty_penalty)
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not has_pred and not has_ref:
        return 0.0, None
    if has_pred != has_ref:
        return penalty.resolve(pred.shape, sp), None
    return None, surface_distances(pred, ref, sp)


def hd95(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | float | None = None,
    empty_penalty: PenaltyLike = "diagonal",
    definition: str = "directed-max",
) -> float:
    """95th-percentile Hausdorff distance (HD95) of two binary masks.

    Args:
        pred: prediction mask, shape (X, Y) or (X, Y, Z); nonzero = foreground.
        ref: reference mask of the same shape.
        spacing: voxel size per axis in array-axis order (mm for medical images, 1 for pixels).
        empty_penalty: value when exactly one mask is empty, see :class:`EmptyPenalty`.
        definition: ``"directed-max"`` (default, the paper's equation (9), MONAI):
            max(P_95(d(P -> R)), P_95(d(R -> P))); ``"pooled"`` (medpy):
            P_95(d(P -> R) ++ d(R -> P)). P_95 is numpy's linear-interpolation percentile.

    Returns:
        HD95 in units of ``spacing``; 0.0 if both masks are empty; the penalty if exactly one is.
    """
    _check_definition(definition)
    value, distances = _distances_or_none(pred, ref, spacing, empty_penalty)
    if distances is None:
        return value
    d_pr, d_rp = distances
    if definition == "pooled":
        return float(np.percentile(np.concatenate([d_pr, d_rp]), 95))
    return float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))


def hausdorff(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | float | None = None,
    empty_penalty: PenaltyLike = "diagonal",
) -> float:
    """Hausdorff distance max(max d(P -> R), max d(R -> P)); empty masks as in :func:`hd95`."""
    value, distances = _distances_or_none(pred, ref, spacing, empty_penalty)
    if distances is None:
        return value
    return float(max(distances[0].max(), distances[1].max()))


def binary_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | float | None = None,
    empty_penalty: PenaltyLike = "diagonal",
    definition: str = "directed-max",
) -> dict:
    """Dice, HD95 and voxel counts of one prediction/reference pair.

    Args:
        pred, ref: binary masks of the same shape (X, Y) or (X, Y, Z).
        spacing, empty_penalty, definition: see :func:`hd95`.

    Returns:
        ``{"dice", "hd95", "n_ref", "n_pred", "n_intersection"}``.
    """
    pred, ref = _check_pair(pred, ref)
    return {
        "dice": dice(pred, ref),
        "hd95": hd95(pred, ref, spacing, empty_penalty, definition),
        "n_ref": int(np.count_nonzero(ref)),
        "n_pred": int(np.count_nonzero(pred)),
        "n_intersection": int(np.count_nonzero(pred & ref)),
    }
