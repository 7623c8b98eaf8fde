"""Connected components (lesions, glands) and the small helpers the challenge metrics share.

Components use full connectivity: 8 neighbours in 2D, 26 in 3D (connected-components-3d).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["label_components", "bounding_box", "full_structure", "set_hausdorff"]


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 8-connected (2D) or 26-connected (3D) components of a binary mask.

    Returns:
        ``(labels, n)``: an integer array of the mask's shape, 0 outside and 1..n on the
        components, and their number.
    """
    import cc3d

    mask = np.ascontiguousarray(mask, dtype=bool)
    if mask.ndim not in (2, 3):
        raise ValueError(f"components of 2D or 3D masks only, got {mask.ndim}-D")
    labels, n = cc3d.connected_components(mask, connectivity=8 if mask.ndim == 2 else 26, return_N=True)
    return labels, int(n)


def full_structure(ndim: int) -> np.ndarray:
    """The 3 x 3 (x 3) structuring element of full connectivity."""
    return ndimage.generate_binary_structure(ndim, ndim)


def bounding_box(*masks: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """Slices of the joint bounding box of non-empty same-shape masks, grown by ``margin``."""
    union = np.logical_or.reduce(masks)
    box = []
    for axis in range(union.ndim):
        other = tuple(i for i in range(union.ndim) if i != axis)
        idx = np.flatnonzero(union.any(axis=other))
        box.append(slice(max(int(idx[0]) - margin, 0), min(int(idx[-1]) + 1 + margin, union.shape[axis])))
    return tuple(box)


def set_hausdorff(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> float:
    """Hausdorff distance between two non-empty pixel sets (all pixels, not only their borders).

    max{ max_{x in a} min_{y in b} |x - y|, max_{y in b} min_{x in a} |x - y| }, distances between
    pixel centres in units of ``spacing``.
    """
    box = bounding_box(a, b)
    a, b = a[box], b[box]
    to_b = ndimage.distance_transform_edt(~b, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~a, sampling=spacing)
    return float(max(to_b[a].max(), to_a[b].max()))
