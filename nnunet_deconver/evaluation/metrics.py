"""Dice and HD95 for binary masks in 2D or 3D (numpy + scipy only, no nnU-Net, no torch).

Conventions (the same as medpy's ``hd95`` and the BraTS evaluation tools):

* **Surface.** The surface of a binary mask is the set of its voxels that have at least one
  *face* neighbour outside the mask (4-connectivity in 2D, 6-connectivity in 3D, in general the
  2N axis neighbours in N dimensions). Voxels outside the image count as outside the mask, so a
  mask voxel on the image border is always a surface voxel.
* **Surface distances.** For every surface voxel of A, the Euclidean distance (in the units of
  ``spacing``, e.g. mm) to the nearest surface voxel of B, and for every surface voxel of B the
  distance to the nearest surface voxel of A. Distances are between voxel centres.
* **HD95.** The two sets of distances are pooled (concatenated, both directions) and HD95 is their
  95th percentile computed by ``numpy.percentile(d, 95)`` with numpy's default ``method="linear"``:
  with the n pooled distances sorted as d_0 <= ... <= d_{n-1}, h = 0.95 (n - 1) and
  HD95 = d_floor(h) + (h - floor(h)) (d_floor(h)+1 - d_floor(h)).
* **Dice.** DSC = 2 |A n B| / (|A| + |B|).
* **Empty masks.** Both empty: Dice 1 and HD95 0. Exactly one empty: Dice 0 and HD95 equal to a
  penalty, by default the diagonal of the image in the units of ``spacing``
  (sqrt(sum((shape_i * spacing_i)^2))); :data:`BRATS_HD95_PENALTY` (373.13 mm, the diagonal of
  the 240 x 240 x 155 BraTS grid at 1 mm, the value of the BraTS challenge tools) or any number can
  be given instead.

The distances are computed with Euclidean distance transforms
(:func:`scipy.ndimage.distance_transform_edt` with ``sampling=spacing``) on the joint bounding box
of the two masks padded by one voxel on every side (zeros beyond the image), never with pairwise
distances: this is exact, since every surface voxel of both masks lies in that box, and the zero
padding reproduces "outside the image counts as outside the mask".
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
from scipy import ndimage

__all__ = [
    "BRATS_HD95_PENALTY",
    "dice",
    "hd95",
    "surface_mask",
    "surface_distances",
    "image_diagonal",
    "resolve_empty_penalty",
    "binary_metrics",
]

#: HD95 given by the BraTS challenge tools when exactly one of the masks is empty (mm): the
#: diagonal sqrt(240^2 + 240^2 + 155^2) of the BraTS 240 x 240 x 155 grid at 1 mm.
BRATS_HD95_PENALTY: float = 373.12866

#: Accepted values of ``empty_penalty``: ``"diagonal"``, ``"brats"`` or a number.
EmptyPenalty = Union[str, float]


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
        return (float(spacing),) * ndim
    spacing = tuple(float(s) for s in spacing)  # type: ignore[union-attr]
    if len(spacing) != ndim:
        raise ValueError(f"spacing has {len(spacing)} entries for a {ndim}-D mask: {spacing}")
    if any(not (s > 0 and math.isfinite(s)) for s in spacing):
        raise ValueError(f"spacing must be positive and finite, got {spacing}")
    return spacing


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


def _padded_joint_crop(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop two same-shape masks to their joint bounding box grown by one voxel on every side.

    Parts of the grown box beyond the image are filled with zeros. Both masks must not both be
    empty.
    """
    union = a | b
    lo, hi = [], []
    for axis in range(union.ndim):
        other = tuple(i for i in range(union.ndim) if i != axis)
        idx = np.flatnonzero(union.any(axis=other))
        lo.append(int(idx[0]))
        hi.append(int(idx[-1]) + 1)
    # Grow by one voxel; the part inside the image is sliced, the part outside is zero padded.
    sl = tuple(slice(max(l - 1, 0), min(h + 1, n)) for l, h, n in zip(lo, hi, union.shape))
    pad = tuple((1 if l == 0 else 0, 1 if h == n else 0) for l, h, n in zip(lo, hi, union.shape))
    a_c = np.pad(a[sl], pad, mode="constant", constant_values=False)
    b_c = np.pad(b[sl], pad, mode="constant", constant_values=False)
    return a_c, b_c


def surface_distances(
    a: np.ndarray, b: np.ndarray, spacing: Sequence[float] | float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances between two non-empty binary masks.

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
    a, b = _check_pair(a, b)
    sp = _spacing(spacing, a.ndim)
    if not a.any() or not b.any():
        raise ValueError("surface distances need two non-empty masks")
    a_c, b_c = _padded_joint_crop(a, b)
    surf_a = surface_mask(a_c)
    surf_b = surface_mask(b_c)
    # EDT gives, at every voxel, the distance to the nearest zero of its input: zeros = surface.
    dist_to_b = ndimage.distance_transform_edt(~surf_b, sampling=sp)
    dist_to_a = ndimage.distance_transform_edt(~surf_a, sampling=sp)
    return dist_to_b[surf_a].astype(np.float64), dist_to_a[surf_b].astype(np.float64)


def image_diagonal(shape: Sequence[int], spacing: Sequence[float] | float | None = None) -> float:
    """Length of the image diagonal, sqrt(sum((shape_i * spacing_i)^2)), in units of spacing."""
    sp = _spacing(spacing, len(shape))
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, sp))))


def resolve_empty_penalty(
    empty_penalty: EmptyPenalty, shape: Sequence[int], spacing: Sequence[float] | float | None = None
) -> float:
    """HD95 value used when exactly one mask is empty.

    Args:
        empty_penalty: ``"diagonal"`` (image diagonal in units of spacing), ``"brats"``
            (:data:`BRATS_HD95_PENALTY`), or a number (also accepted as a string, e.g. "373.13").
        shape: image shape.
        spacing: voxel size per axis.
    """
    if isinstance(empty_penalty, str):
        key = empty_penalty.strip().lower()
        if key == "diagonal":
            return image_diagonal(shape, spacing)
        if key == "brats":
            return BRATS_HD95_PENALTY
        try:
            value = float(key)
        except ValueError:
            raise ValueError(
                f"empty_penalty must be 'diagonal', 'brats' or a number, got {empty_penalty!r}"
            ) from None
    else:
        value = float(empty_penalty)
    if not value >= 0:
        raise ValueError(f"empty_penalty must be >= 0, got {value}")
    return value


def hd95(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | float | None = None,
    empty_penalty: EmptyPenalty = "diagonal",
) -> float:
    """95th percentile of the pooled symmetric surface distances (HD95).

    Args:
        pred: prediction mask, shape (X, Y) or (X, Y, Z); nonzero = foreground.
        ref: reference mask of the same shape.
        spacing: voxel size per axis in array-axis order (mm for medical images, 1 for pixels).
        empty_penalty: value when exactly one mask is empty, see :func:`resolve_empty_penalty`.

    Returns:
        HD95 in units of ``spacing``: ``numpy.percentile(concat(d_pr, d_rp), 95)`` (linear
        interpolation); 0.0 if both masks are empty; the penalty if exactly one is.
    """
    pred, ref = _check_pair(pred, ref)
    sp = _spacing(spacing, pred.ndim)
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not has_pred and not has_ref:
        return 0.0
    if has_pred != has_ref:
        return resolve_empty_penalty(empty_penalty, pred.shape, sp)
    d_pr, d_rp = surface_distances(pred, ref, sp)
    return float(np.percentile(np.concatenate([d_pr, d_rp]), 95))


def binary_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | float | None = None,
    empty_penalty: EmptyPenalty = "diagonal",
) -> dict:
    """Dice, HD95 and voxel counts of one prediction/reference pair.

    Args:
        pred, ref: binary masks of the same shape (X, Y) or (X, Y, Z).
        spacing: voxel size per axis; empty_penalty: see :func:`hd95`.

    Returns:
        ``{"dice", "hd95", "n_ref", "n_pred", "n_intersection"}``.
    """
    pred, ref = _check_pair(pred, ref)
    return {
        "dice": dice(pred, ref),
        "hd95": hd95(pred, ref, spacing, empty_penalty),
        "n_ref": int(np.count_nonzero(ref)),
        "n_pred": int(np.count_nonzero(pred)),
        "n_intersection": int(np.count_nonzero(pred & ref)),
    }
