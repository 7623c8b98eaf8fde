"""Connected components (lesions, glands) and the small helpers the challenge metrics share.

Components are labelled with :func:`scipy.ndimage.label`, by default with full connectivity (8
neighbours in 2D, 26 in 3D); ``connectivity`` picks face connectivity (4 in 2D, 6 in 3D) or, in
3D, 18 neighbours. (connected-components-3d is not used: from version 3.27 on it labels background
pixels of contiguous boolean 2D masks with connectivity 8.)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["label_components", "bounding_box", "set_hausdorff"]

#: neighbours -> rank of scipy's structuring element, per number of dimensions
_RANKS = {2: {4: 1, 8: 2}, 3: {6: 1, 18: 2, 26: 3}}


def label_components(mask: np.ndarray, connectivity: int | None = None) -> tuple[np.ndarray, int]:
    """Label the connected components of a binary 2D or 3D mask.

    Args:
        mask: binary mask (X, Y) or (X, Y, Z); nonzero = foreground.
        connectivity: neighbours that connect: 4 or 8 in 2D, 6, 18 or 26 in 3D; None: full
            connectivity (8 in 2D, 26 in 3D).

    Returns:
        ``(labels, n)``: an int32 array of the mask's shape, 0 outside and 1..n on the
        components (numbered in C order of their first voxel), and their number.
    """
    mask = np.asarray(mask) != 0
    if mask.ndim not in _RANKS:
        raise ValueError(f"components of 2D or 3D masks only, got {mask.ndim}-D")
    ranks = _RANKS[mask.ndim]
    if connectivity is None:
        connectivity = max(ranks)
    if connectivity not in ranks:
        raise ValueError(f"connectivity of a {mask.ndim}-D mask must be one of {sorted(ranks)}, got {connectivity}")
    structure = ndimage.generate_binary_structure(mask.ndim, ranks[connectivity])
    labels, n = ndimage.label(mask, structure=structure, output=np.int32)
    return labels, int(n)


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
