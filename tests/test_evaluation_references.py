"""The challenge metrics' building blocks against references that are not this package's code.

* Components: against a breadth-first flood fill written here, and on the 2D column that
  connected-components-3d >= 3.27 labels wrongly (a background pixel gets a label).
* HD95 on area-weighted surface elements (the BraTS tools' convention): against DeepMind's
  surface-distance library itself, which the BraTS tools call, and on a case worked out by hand.
"""

from __future__ import annotations

import itertools
import warnings
from collections import deque

import numpy as np
import pytest

from nnunet_deconver.evaluation.challenge.lesions import label_components
from nnunet_deconver.evaluation.metrics import hd95
from nnunet_deconver.evaluation.surfels import surfel_hd95


def tools_hd95(pred: np.ndarray, ref: np.ndarray, spacing_zyx) -> float:
    """HD95 as the BraTS tools compute it, by DeepMind's library (the reference, not our code).

    The tools call ``compute_surface_distances(gt, pred, spacing)`` then
    ``compute_robust_hausdorff(.., 95)`` on nibabel's (x, y, z) arrays: hence the transposes.
    Both masks must be non-empty (the tools score empty cases 0 or 374 without it).
    """
    import surface_distance

    with warnings.catch_warnings():  # the library imports scipy.ndimage's deprecated namespaces
        warnings.simplefilter("ignore", DeprecationWarning)
        d = surface_distance.compute_surface_distances(np.asarray(ref, bool).T.copy(),
                                                       np.asarray(pred, bool).T.copy(),
                                                       tuple(float(s) for s in spacing_zyx)[::-1])
        return float(surface_distance.compute_robust_hausdorff(d, 95))


# ---------------------------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------------------------


def flood_labels(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Breadth-first flood fill, components numbered in C order of their first voxel (reference)."""
    if connectivity in (4, 6):
        steps = [s for s in itertools.product((-1, 0, 1), repeat=mask.ndim) if sum(map(abs, s)) == 1]
    elif connectivity == 18:
        steps = [s for s in itertools.product((-1, 0, 1), repeat=3) if 0 < sum(map(abs, s)) <= 2]
    else:
        steps = [s for s in itertools.product((-1, 0, 1), repeat=mask.ndim) if any(s)]
    labels = np.zeros(mask.shape, np.int64)
    n = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        n += 1
        labels[start] = n
        queue = deque([start])
        while queue:
            p = queue.popleft()
            for s in steps:
                q = tuple(a + b for a, b in zip(p, s))
                if all(0 <= c < m for c, m in zip(q, mask.shape)) and mask[q] and not labels[q]:
                    labels[q] = n
                    queue.append(q)
    return labels, n


def test_column_of_three_pixels_is_one_component():
    """connected-components-3d >= 3.27 labels pixel (1, 0) of this contiguous bool array (8-conn.)."""
    column = np.ascontiguousarray(np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1]], dtype=bool))
    labels, n = label_components(column)
    assert n == 1
    assert labels.tolist() == [[0, 0, 1], [0, 0, 1], [0, 0, 1]]


@pytest.mark.parametrize("ndim,connectivity", [(2, 4), (2, 8), (3, 6), (3, 18), (3, 26)])
def test_components_equal_a_flood_fill(ndim, connectivity):
    rng = np.random.default_rng(ndim * 100 + connectivity)
    for _ in range(20):
        shape = tuple(int(s) for s in rng.integers(1, 12 if ndim == 2 else 7, ndim))
        mask = rng.random(shape) < rng.uniform(0.1, 0.7)
        for m in (mask, np.asfortranarray(mask), mask.astype(np.uint8) * 3):
            labels, n = label_components(m, connectivity)
            ref_labels, ref_n = flood_labels(np.asarray(m) != 0, connectivity)
            assert n == ref_n
            assert np.array_equal(labels, ref_labels)
    with pytest.raises(ValueError, match="connectivity of a 2-D mask must be one of"):
        label_components(np.ones((2, 2), bool), 6)


# ---------------------------------------------------------------------------------------------
# HD95 on area-weighted surface elements
# ---------------------------------------------------------------------------------------------


def test_surface_element_hd95_equals_deepmind_library():
    rng = np.random.default_rng(7)
    for t in range(60):
        nd = 2 + t % 2
        shape = tuple(int(s) for s in rng.integers(3, 12, nd))
        spacing = tuple(float(np.float32(s)) for s in rng.choice([0.5, 0.9375, 1.0, 1.2, 3.0], nd))
        a = rng.random(shape) < rng.uniform(0.05, 0.5)
        b = a.copy() if t % 4 == 0 else rng.random(shape) < rng.uniform(0.05, 0.5)
        b[tuple(int(rng.integers(0, s)) for s in shape)] ^= True
        if not a.any() or not b.any():
            continue
        import surface_distance

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            d = surface_distance.compute_surface_distances(a, b, spacing)
            expected = surface_distance.compute_robust_hausdorff(d, 95)
        assert surfel_hd95(b, a, spacing) == expected  # the same steps: the same bits


def test_surface_element_hd95_by_hand_differs_from_surface_voxels():
    """Reference: voxels x = 0 and x = 1 (a 2 x 1 x 1 bar); prediction: voxel x = 0; 1 mm.

    Surface elements (corners): the prediction's 8 corners all lie on the reference's corners:
    distance 0. The reference has 12 corners: 4 at x = -0.5 and 4 at x = 1.5 (one voxel in the
    block: a marching-cubes triangle of area sqrt(3)/8) and 4 at x = 0.5 (two voxels: a rectangle
    of 1 x sqrt(2)/2, area sqrt(2)/2). The 4 at x = 1.5 are 1 mm from the prediction's nearest
    corner, the rest 0: the weight at distance 0 is 4 (sqrt(3)/8 + sqrt(2)/2) of 4 (sqrt(3)/4 +
    sqrt(2)/2), 0.81 < 0.95, so P95(ref -> pred) = 1 and HD95 = 1.

    Surface voxels (the paper's): both reference voxels are surface voxels, at 0 and 1 from the
    prediction; P95 (numpy linear) of [0, 1] = 0.95; the other direction 0: HD95 0.95.
    """
    ref = np.zeros((3, 4, 3), bool)
    ref[1, 1:3, 1] = True
    pred = np.zeros_like(ref)
    pred[1, 1, 1] = True
    assert surfel_hd95(pred, ref, (1.0, 1.0, 1.0)) == 1.0
    assert tools_hd95(pred, ref, (1.0, 1.0, 1.0)) == 1.0
    assert hd95(pred, ref, (1.0, 1.0, 1.0)) == pytest.approx(0.95)
    with pytest.raises(ValueError, match="two non-empty masks"):
        surfel_hd95(pred, np.zeros_like(ref), (1.0, 1.0, 1.0))
