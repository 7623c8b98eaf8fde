"""HD95 on area-weighted surface elements: the convention of DeepMind's surface-distance library.

The BraTS evaluation tools compute their HD95 (lesion-wise and legacy) this way; the paper's table
uses :mod:`nnunet_deconver.evaluation.metrics` (surface voxels, MONAI's convention) instead.

Definition, for binary masks A and B (2D or 3D) and a voxel spacing:

* **Surface elements.** Every voxel corner is the centre of a 2 x 2 (x 2) block of voxels; voxels
  beyond the image count as outside. A corner whose block holds both mask and non-mask voxels is a
  surface element of the mask. Its weight is the area (3D) or length (2D) of the piece of the
  marching-cubes (marching-squares) surface that passes through the block, with the spacing
  applied; the table of those weights, one per block pattern, is the surface-distance library's
  (:mod:`surface_distance.lookup_tables`), so that the weights are exactly the library's.
* **Distances.** For each surface element of A, the Euclidean distance (in units of the spacing)
  from its corner to the nearest surface-element corner of B, and conversely.
* **Percentile.** The elements of one side sorted by distance (ties by weight); the q-th
  percentile is the distance of the first element at which the cumulative weight divided by the
  total weight reaches q / 100 (the last element's if rounding keeps it below).
* **HD95** = max(P_95(A -> B), P_95(B -> A)).

The computation follows the library's steps so that the numbers are the same to the last bit: the
two masks are cropped to the bounding box of their union, one zero voxel added at the end of each
axis; corner patterns are a correlation with a 2 x 2 (x 2) kernel of powers of two; distances come
from :func:`scipy.ndimage.distance_transform_edt` on that crop. Element order at equal distances
and the summation order of the weights decide the percentile when a cumulative weight equals q /
100 exactly, so they are kept too.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["surface_elements", "element_distances", "weighted_percentile", "surfel_hd95"]


def _tables(ndim: int, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray, int]:
    """(kernel of powers of two, weight of each block pattern, pattern of a full block)."""
    from surface_distance import lookup_tables

    if ndim == 3:
        return (lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL,
                lookup_tables.create_table_neighbour_code_to_surface_area(spacing), 255)
    if ndim == 2:
        return (lookup_tables.ENCODE_NEIGHBOURHOOD_2D_KERNEL,
                lookup_tables.create_table_neighbour_code_to_contour_length(spacing), 15)
    raise ValueError(f"surface elements of 2D or 3D masks only, got {ndim}-D")


def _check(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray, tuple]:
    a, b = np.asarray(a) != 0, np.asarray(b) != 0
    if a.shape != b.shape:
        raise ValueError(f"the two masks must have the same shape, got {a.shape} and {b.shape}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != a.ndim or not all(s > 0 and np.isfinite(s) for s in spacing):
        raise ValueError(f"spacing must hold {a.ndim} positive finite numbers, got {spacing}")
    if not a.any() or not b.any():
        raise ValueError("surface elements need two non-empty masks")
    return a, b, spacing


def surface_elements(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]):
    """Corner patterns of both masks on the crop of their union (see the module docstring).

    Returns:
        ``(code_a, code_b, weights)``: the block pattern at every corner of the crop for each mask
        (0 and the full pattern are not surface elements) and the weight table indexed by pattern.
    """
    a, b, spacing = _check(a, b, spacing)
    union = a | b
    box = []
    for axis in range(a.ndim):
        idx = np.flatnonzero(union.any(axis=tuple(i for i in range(a.ndim) if i != axis)))
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    kernel, weights, _ = _tables(a.ndim, spacing)
    codes = []
    for mask in (a, b):
        crop = np.zeros(tuple(s.stop - s.start + 1 for s in box), np.uint8)
        crop[tuple(slice(0, -1) for _ in box)] = mask[tuple(box)]
        codes.append(ndimage.correlate(crop, kernel, mode="constant", cval=0))
    return codes[0], codes[1], weights


def element_distances(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]):
    """Distances and weights of both masks' surface elements.

    Args:
        a, b: non-empty binary masks of one shape, (X, Y) or (X, Y, Z).
        spacing: voxel size per array axis.

    Returns:
        ``(d_ab, w_a, d_ba, w_b)``: for each surface element of ``a`` the distance to the nearest
        surface element of ``b`` and its weight, then the converse; unsorted.
    """
    code_a, code_b, weights = surface_elements(a, b, spacing)
    full = 255 if code_a.ndim == 3 else 15
    border_a = (code_a != 0) & (code_a != full)
    border_b = (code_b != 0) & (code_b != full)
    sampling = tuple(float(s) for s in spacing)
    to_a = ndimage.distance_transform_edt(~border_a, sampling=sampling)
    to_b = ndimage.distance_transform_edt(~border_b, sampling=sampling)
    return to_b[border_a], weights[code_a][border_a], to_a[border_b], weights[code_b][border_b]


def weighted_percentile(distances: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The q-th percentile of distances weighted by their elements' weights (module docstring)."""
    if len(distances) == 0:
        raise ValueError("a percentile of no distances")
    order = np.lexsort((weights, distances))  # by distance, ties by weight
    d, w = distances[order], weights[order]
    cumulative = np.cumsum(w) / np.sum(w)
    return float(d[min(int(np.searchsorted(cumulative, q / 100.0)), len(d) - 1)])


def surfel_hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], q: float = 95.0) -> float:
    """HD95 of two non-empty binary masks on area-weighted surface elements.

    Args:
        pred, ref: binary masks of one shape, (X, Y) or (X, Y, Z); neither may be empty.
        spacing: voxel size per array axis (mm).
        q: the percentile (95 for HD95, 100 for the Hausdorff distance of the corners).

    Returns:
        max(P_q(ref -> pred), P_q(pred -> ref)) in units of ``spacing``.
    """
    d_rp, w_r, d_pr, w_p = element_distances(ref, pred, spacing)
    return max(weighted_percentile(d_rp, w_r, q), weighted_percentile(d_pr, w_p, q))
