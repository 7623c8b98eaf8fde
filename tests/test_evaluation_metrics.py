"""Dice / HD95 against independent brute-force computations and hand-counted cases.

The reference implementation here finds surface voxels by explicit neighbour checks, computes all
pairwise surface distances with scipy.spatial.distance.cdist and takes the 95th percentile by
the linear-interpolation formula written out by hand; it shares no code with the module. Both HD95
definitions are checked: "directed-max" (the larger of the two directed 95th percentiles, the
default) and "pooled" (one percentile of both directions' distances together).
"""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from nnunet_deconver.evaluation.metrics import (
    BRATS_HD95_PENALTY,
    binary_metrics,
    dice,
    hd95,
    surface_distances,
    surface_mask,
)

# ---------------------------------------------------------------------------------------------
# Brute-force reference (also used by test_evaluation_report.py)
# ---------------------------------------------------------------------------------------------


def brute_surface(mask: np.ndarray) -> np.ndarray:
    """Mask voxels with at least one face neighbour outside the mask or outside the image."""
    mask = np.asarray(mask, dtype=bool)
    surf = np.zeros(mask.shape, dtype=bool)
    for idx in zip(*np.nonzero(mask)):
        for axis in range(mask.ndim):
            for step in (-1, 1):
                nb = list(idx)
                nb[axis] += step
                if nb[axis] < 0 or nb[axis] >= mask.shape[axis] or not mask[tuple(nb)]:
                    surf[idx] = True
    return surf


def linear_percentile(values: np.ndarray, q: float) -> float:
    """numpy's default ('linear') percentile, written out: h = (n-1) q/100, interpolate."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    h = (len(v) - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(v) - 1)
    return float(v[lo] + (h - lo) * (v[hi] - v[lo]))


def brute_directed(pred: np.ndarray, ref: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """All pairwise distances between surface voxels; per voxel of each side its nearest other."""
    sp = np.asarray(spacing, dtype=np.float64)
    pa = np.argwhere(brute_surface(pred)) * sp
    pb = np.argwhere(brute_surface(ref)) * sp
    d = cdist(pa, pb)
    return d.min(axis=1), d.min(axis=0)


def brute_hd95(pred: np.ndarray, ref: np.ndarray, spacing, penalty: float, definition: str = "directed-max") -> float:
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if not pred.any() and not ref.any():
        return 0.0
    if not pred.any() or not ref.any():
        return float(penalty)
    d_pr, d_rp = brute_directed(pred, ref, spacing)
    if definition == "pooled":
        return linear_percentile(np.concatenate([d_pr, d_rp]), 95)
    return max(linear_percentile(d_pr, 95), linear_percentile(d_rp, 95))


def brute_dice(pred: np.ndarray, ref: np.ndarray) -> float:
    p = np.asarray(pred, dtype=bool)
    r = np.asarray(ref, dtype=bool)
    tp = int((p & r).sum())
    denom = int(p.sum()) + int(r.sum())
    return 1.0 if denom == 0 else 2.0 * tp / denom


def diagonal(shape, spacing) -> float:
    return math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing)))


# ---------------------------------------------------------------------------------------------
# Random shapes
# ---------------------------------------------------------------------------------------------


def random_blob(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """Irregular test masks: ellipsoid unions, sparse noise, border-touching boxes."""
    grid = np.indices(shape).astype(np.float64)
    if kind == "ellipsoids":
        m = np.zeros(shape, dtype=bool)
        for _ in range(rng.integers(1, 4)):
            c = [rng.uniform(0, n) for n in shape]
            r = [rng.uniform(1.0, n / 2.5) for n in shape]
            m |= sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grid, c, r)) <= 1.0
        return m
    if kind == "noise":
        return rng.random(shape) < rng.uniform(0.05, 0.4)
    if kind == "border_box":
        m = np.zeros(shape, dtype=bool)
        sl = []
        for n in shape:
            a = int(rng.integers(0, n // 2))
            b = int(rng.integers(a + 1, n + 1))
            sl.append(slice(0 if rng.random() < 0.5 else a, n if rng.random() < 0.5 else b))
        m[tuple(sl)] = True
        return m
    raise ValueError(kind)


CASES_2D = [((13, 17), (0.5, 1.7)), ((9, 21), (1.0, 1.0)), ((16, 11), (2.3, 0.4))]
CASES_3D = [((9, 11, 13), (0.7, 1.3, 2.5)), ((12, 8, 10), (1.0, 1.0, 1.0)), ((7, 14, 9), (3.0, 0.5, 0.9))]
KINDS = ["ellipsoids", "noise", "border_box"]


@pytest.mark.parametrize("shape,spacing", CASES_2D + CASES_3D)
@pytest.mark.parametrize("kind_a,kind_b", list(itertools.product(KINDS, KINDS)))
def test_hd95_matches_brute_force(shape, spacing, kind_a, kind_b):
    rng = np.random.default_rng(zlib.crc32(repr((shape, kind_a, kind_b)).encode()))
    checked = 0
    for _ in range(4):
        a = random_blob(rng, shape, kind_a)
        b = random_blob(rng, shape, kind_b)
        if not a.any() or not b.any():
            continue
        for definition in ("directed-max", "pooled"):
            expected = brute_hd95(a, b, spacing, penalty=-1.0, definition=definition)
            assert hd95(a, b, spacing, definition=definition) == pytest.approx(expected, abs=1e-6)
            # both definitions are symmetric in their arguments
            assert hd95(b, a, spacing, definition=definition) == pytest.approx(expected, abs=1e-6)
        assert hd95(a, b, spacing) == pytest.approx(brute_hd95(a, b, spacing, -1.0), abs=1e-6)  # default
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("shape,spacing", CASES_2D + CASES_3D)
def test_surface_mask_matches_neighbour_checks(shape, spacing):
    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    for kind in KINDS:
        m = random_blob(rng, shape, kind)
        np.testing.assert_array_equal(surface_mask(m), brute_surface(m))


def test_surface_border_counts_as_outside():
    full = np.ones((4, 4), dtype=bool)
    expected = np.ones((4, 4), dtype=bool)
    expected[1:3, 1:3] = False  # only the 2x2 interior has all four neighbours inside
    np.testing.assert_array_equal(surface_mask(full), expected)
    cube = np.ones((3, 3, 3), dtype=bool)
    assert surface_mask(cube).sum() == 26  # all but the centre voxel


def test_surface_distances_directed_by_hand():
    # a: single voxel at (1, 1); b: 3x1 bar at rows 1..3, column 4; spacing (2, 1).
    a = np.zeros((6, 6), dtype=bool)
    b = np.zeros((6, 6), dtype=bool)
    a[1, 1] = True
    b[1:4, 4] = True
    d_ab, d_ba = surface_distances(a, b, spacing=(2.0, 1.0))
    np.testing.assert_allclose(d_ab, [3.0])
    # b voxels (1,4), (2,4), (3,4) -> a (1,1): sqrt((0*2)^2+3^2), sqrt(2^2+3^2), sqrt(4^2+3^2)
    np.testing.assert_allclose(np.sort(d_ba), [3.0, math.sqrt(13.0), 5.0])
    # pooled [3, 3, sqrt(13), 5]: h = 3 * 0.95 = 2.85 -> sqrt(13) + 0.85 (5 - sqrt(13))
    expected = math.sqrt(13.0) + 0.85 * (5.0 - math.sqrt(13.0))
    assert hd95(a, b, (2.0, 1.0), definition="pooled") == pytest.approx(expected, abs=1e-12)
    # directed-max: a -> b is [3] (P95 = 3); b -> a is [3, sqrt(13), 5]: h = 2 * 0.95 = 1.9 ->
    # sqrt(13) + 0.9 (5 - sqrt(13)); the larger of the two
    directed = math.sqrt(13.0) + 0.9 * (5.0 - math.sqrt(13.0))
    assert hd95(a, b, (2.0, 1.0)) == pytest.approx(directed, abs=1e-12)
    assert hd95(a, b, (2.0, 1.0), definition="directed-max") == pytest.approx(directed, abs=1e-12)


def test_pooled_can_exceed_directed_max():
    """a = [0 1 1], b = [1 1 0] (one row, spacing 1): every voxel is a surface voxel.

    d(a -> b) = [0, 1] and d(b -> a) = [1, 0]: each P95 = 0 + 0.95 (1 - 0) = 0.95, directed-max
    0.95. Pooled [0, 0, 1, 1]: h = 0.95 * 3 = 2.85 between two 1s: 1.0 > 0.95.
    """
    a = np.array([[0, 1, 1]], bool)
    b = np.array([[1, 1, 0]], bool)
    assert hd95(a, b) == pytest.approx(0.95, abs=1e-12)
    assert hd95(a, b, definition="pooled") == pytest.approx(1.0, abs=1e-12)


def test_hd95_single_voxels_anisotropic():
    a = np.zeros((5, 8, 4), dtype=bool)
    b = np.zeros((5, 8, 4), dtype=bool)
    a[2, 2, 1] = True
    b[2, 5, 1] = True
    assert hd95(a, b, spacing=(1.0, 2.0, 3.0)) == pytest.approx(6.0)
    assert hd95(a, a, spacing=(1.0, 2.0, 3.0)) == 0.0


def test_hd95_default_spacing_is_one_and_scalar_spacing():
    a = np.zeros((6, 6), dtype=bool)
    b = np.zeros((6, 6), dtype=bool)
    a[0, 0] = True
    b[3, 4] = True
    assert hd95(a, b) == pytest.approx(5.0)
    assert hd95(a, b, spacing=2.0) == pytest.approx(10.0)


def test_dice_hand_counted():
    a = np.zeros((5, 5), dtype=bool)
    b = np.zeros((5, 5), dtype=bool)
    a[0:2, 0:2] = True  # 4 voxels
    b[1:3, 0:3] = True  # 6 voxels, overlap a at (1,0), (1,1): 2
    assert dice(a, b) == pytest.approx(2 * 2 / (4 + 6))
    assert dice(a, a) == 1.0
    c = np.zeros((5, 5), dtype=bool)
    c[4, 4] = True
    assert dice(a, c) == 0.0
    # non-bool input: nonzero is foreground
    assert dice(a.astype(np.uint8) * 7, b.astype(np.float32)) == pytest.approx(0.4)
    # 3D: 2x2x2 cube vs 2x2x1 half of it -> 2*4/(8+4)
    x = np.zeros((3, 3, 3), dtype=bool)
    y = np.zeros((3, 3, 3), dtype=bool)
    x[:2, :2, :2] = True
    y[:2, :2, :1] = True
    assert dice(x, y) == pytest.approx(8 / 12)


def test_both_empty_convention():
    e = np.zeros((4, 5, 6), dtype=bool)
    assert dice(e, e) == 1.0
    assert hd95(e, e, (1.0, 2.0, 3.0)) == 0.0
    m = binary_metrics(e, e, (1.0, 2.0, 3.0))
    assert (m["dice"], m["hd95"], m["n_ref"], m["n_pred"]) == (1.0, 0.0, 0, 0)


@pytest.mark.parametrize("which_empty", ["pred", "ref"])
def test_one_empty_penalties(which_empty):
    shape, spacing = (10, 20, 30), (1.0, 2.0, 0.5)
    e = np.zeros(shape, dtype=bool)
    m = np.zeros(shape, dtype=bool)
    m[3:6, 4:9, 10:12] = True
    pred, ref = (e, m) if which_empty == "pred" else (m, e)
    assert dice(pred, ref) == 0.0
    # default: the image diagonal in mm, sqrt(10^2 + 40^2 + 15^2)
    assert hd95(pred, ref, spacing) == pytest.approx(math.sqrt(100 + 1600 + 225))
    assert hd95(pred, ref, spacing, empty_penalty="diagonal") == pytest.approx(diagonal(shape, spacing))
    assert hd95(pred, ref, spacing, empty_penalty="brats") == pytest.approx(373.12866)
    assert BRATS_HD95_PENALTY == pytest.approx(math.sqrt(240**2 + 240**2 + 155**2), abs=1e-5)
    assert hd95(pred, ref, spacing, empty_penalty=42.5) == 42.5
    assert hd95(pred, ref, spacing, empty_penalty="17") == 17.0
    # 2D: diagonal in pixels
    two_d_e = np.zeros((20, 30), dtype=bool)
    two_d_m = two_d_e.copy()
    two_d_m[5, 5] = True
    assert hd95(two_d_e, two_d_m) == pytest.approx(math.hypot(20, 30))


def test_invalid_inputs():
    a = np.zeros((4, 4), dtype=bool)
    with pytest.raises(ValueError):
        dice(a, np.zeros((4, 5), dtype=bool))
    with pytest.raises(ValueError):
        hd95(a, a, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError):
        hd95(a, a, spacing=(1.0, -1.0))
    b = a.copy()
    b[0, 0] = True
    with pytest.raises(ValueError):
        hd95(a, b, empty_penalty="nonsense")
    with pytest.raises(ValueError):
        surface_distances(a, b)


def test_large_volume_crop_is_exact():
    """Masks far from each other and from the border in a bigger volume: crop logic vs brute force."""
    shape, spacing = (40, 36, 30), (1.2, 0.8, 2.0)
    a = np.zeros(shape, dtype=bool)
    b = np.zeros(shape, dtype=bool)
    g = np.indices(shape)
    a[((g[0] - 10) / 4) ** 2 + ((g[1] - 8) / 3) ** 2 + ((g[2] - 20) / 5) ** 2 <= 1] = True
    b[((g[0] - 28) / 5) ** 2 + ((g[1] - 30) / 4) ** 2 + ((g[2] - 27) / 4) ** 2 <= 1] = True
    b[39, 35, 29] = True  # a corner voxel: border convention at the far corner
    assert hd95(a, b, spacing) == pytest.approx(brute_hd95(a, b, spacing, -1.0), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# The two HD95 definitions on disjoint, nested and touching shapes
# ---------------------------------------------------------------------------------------------


def _box(shape, lo, hi) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


SHAPE_PAIRS = {
    # 2D, anisotropic: two boxes far apart; a small box inside a big one; two boxes sharing a face
    "2d_disjoint": ((14, 20), (0.7, 1.9), ((1, 1), (5, 6)), ((8, 12), (13, 19))),
    "2d_nested": ((15, 15), (1.3, 0.6), ((1, 1), (14, 14)), ((6, 5), (8, 9))),
    "2d_touching": ((12, 16), (2.0, 0.5), ((2, 2), (9, 8)), ((4, 8), (7, 15))),
    # 3D, anisotropic
    "3d_disjoint": ((10, 12, 9), (0.8, 1.1, 2.5), ((0, 0, 0), (3, 4, 3)), ((6, 7, 5), (10, 12, 9))),
    "3d_nested": ((11, 11, 9), (1.0, 0.7, 3.0), ((1, 1, 1), (10, 10, 8)), ((4, 5, 3), (6, 7, 5))),
    "3d_touching": ((10, 12, 8), (0.5, 1.5, 2.0), ((1, 1, 1), (6, 7, 6)), ((6, 2, 2), (9, 11, 7))),
}


@pytest.mark.parametrize("name", sorted(SHAPE_PAIRS))
def test_both_definitions_against_brute_force_on_shapes(name):
    shape, spacing, (lo_a, hi_a), (lo_b, hi_b) = SHAPE_PAIRS[name]
    a, b = _box(shape, lo_a, hi_a), _box(shape, lo_b, hi_b)
    if name.endswith("touching"):
        assert not (a & b).any() and any((np.roll(a, 1, axis=k) & b).any() for k in range(a.ndim))  # face
    d_ab, d_ba = brute_directed(a, b, spacing)
    directed = max(linear_percentile(d_ab, 95), linear_percentile(d_ba, 95))
    pooled = linear_percentile(np.concatenate([d_ab, d_ba]), 95)
    assert hd95(a, b, spacing) == pytest.approx(directed, abs=1e-9)
    assert hd95(a, b, spacing, definition="directed-max") == pytest.approx(directed, abs=1e-9)
    assert hd95(a, b, spacing, definition="pooled") == pytest.approx(pooled, abs=1e-9)
    assert hd95(b, a, spacing) == pytest.approx(directed, abs=1e-9)
    if name.endswith("nested"):
        # the big box's surface is far from the small one, not the converse: the definitions differ
        assert directed > pooled + 1e-6


def test_percentile_is_numpy_linear_not_another_method():
    # Directed distances [3, sqrt(13), 5] (see test_surface_distances_directed_by_hand): numpy's
    # linear method gives sqrt(13) + 0.9 (5 - sqrt(13)) = 4.8606; 'lower', 'higher', 'nearest' and
    # 'midpoint' would give sqrt(13), 5, 5 and 4.3028.
    a = np.zeros((6, 6), dtype=bool)
    b = np.zeros((6, 6), dtype=bool)
    a[1, 1] = True
    b[1:4, 4] = True
    value = hd95(a, b, (2.0, 1.0))
    assert value == pytest.approx(4.860555127546399, abs=1e-12)
    for other in (math.sqrt(13.0), 5.0, (math.sqrt(13.0) + 5.0) / 2):
        assert abs(value - other) > 0.1


def test_hausdorff_is_the_larger_directed_maximum():
    from nnunet_deconver.evaluation.metrics import hausdorff

    for name, (shape, spacing, (lo_a, hi_a), (lo_b, hi_b)) in SHAPE_PAIRS.items():
        a, b = _box(shape, lo_a, hi_a), _box(shape, lo_b, hi_b)
        d_ab, d_ba = brute_directed(a, b, spacing)
        assert hausdorff(a, b, spacing) == pytest.approx(max(d_ab.max(), d_ba.max()), abs=1e-9), name


def test_unknown_definition_is_refused():
    a = np.ones((3, 3), dtype=bool)
    with pytest.raises(ValueError, match="directed-max"):
        hd95(a, a, definition="max")
