"""The NDC operator: adjointness, monotonicity (Theorem 1), gradients, groups, dtypes, errors.

Every test that runs the update runs once per backend (the ``backend`` fixture: PyTorch's
convolutions and the fused C++ kernel).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from _ndc_backend import backend  # noqa: F401  (fixture)
from nnunet_deconver.ndc import NDC, ndc, ndc_reference, reconstruction_error
from nnunet_deconver.ndc.ops import analysis, synthesis

# (spatial size, kernel) for 2D and 3D, isotropic and anisotropic
GEOMETRIES = [((9, 11), (3, 3)), ((8, 10), (1, 5)), ((5, 6, 7), (3, 3, 3)), ((5, 6, 7), (1, 3, 3))]


def _inputs(spatial, kernel, C=4, R=2, G=2, B=2, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, C, *spatial, generator=g, dtype=dtype)
    s0 = torch.rand(B, R * C, *spatial, generator=g, dtype=dtype)
    w = torch.rand(C, R * C // G, *kernel, generator=g, dtype=dtype)
    return x, s0, w


def _conv(x, w, groups, transposed):
    """Independent reference: torch.nn.functional's 2D / 3D (transposed) convolutions."""
    pad = [k // 2 for k in w.shape[2:]]
    if w.dim() == 4:
        return (F.conv_transpose2d if transposed else F.conv2d)(x, w, padding=pad, groups=groups)
    return (F.conv_transpose3d if transposed else F.conv3d)(x, w, padding=pad, groups=groups)


@pytest.mark.parametrize("spatial,kernel", GEOMETRIES)
@pytest.mark.parametrize("G", [1, 2, 4])
def test_adjoint_identity(spatial, kernel, G):
    torch.manual_seed(1)
    C, E = 4, 8
    s = torch.randn(2, E, *spatial, dtype=torch.float64)
    x = torch.randn(2, C, *spatial, dtype=torch.float64)
    w = torch.randn(C, E // G, *kernel, dtype=torch.float64)
    lhs = (synthesis(s, w, G) * x).sum()
    rhs = (s * analysis(x, w, G)).sum()
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))
    # and the operators are the plain convolutions
    torch.testing.assert_close(synthesis(s, w, G), _conv(s, w, G, False), rtol=0, atol=1e-12)
    torch.testing.assert_close(analysis(x, w, G), _conv(x, w, G, True), rtol=0, atol=1e-12)


def _explicit_update(x, s, w, eps):
    """One multiplicative update written with F.conv (no groups argument): the paper's formula."""
    num = _conv(x, w, 1, True) + eps
    den = _conv(_conv(s, w, 1, False), w, 1, True) + eps
    return s * num / den


@pytest.mark.parametrize("spatial,kernel", GEOMETRIES)
@pytest.mark.parametrize("G", [1, 2, 4])
def test_grouped_equals_loop_over_groups(spatial, kernel, G, backend):
    C, R = 4, 2
    x, s0, w = _inputs(spatial, kernel, C=C, R=R, G=G)
    c, e = C // G, R * C // G
    expected = torch.cat(
        [_explicit_update(x[:, g * c:(g + 1) * c], s0[:, g * e:(g + 1) * e], w[g * c:(g + 1) * c], 1e-8)
         for g in range(G)], dim=1)
    torch.testing.assert_close(ndc(x, s0, w, G), expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ndc_reference(x, s0, w, G), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("spatial,kernel", GEOMETRIES)
@pytest.mark.parametrize("G,R", [(1, 1), (2, 4), ("C", 1), ("C", 4)])
def test_monotonicity_theorem_1(spatial, kernel, G, R, backend):
    C = 4
    G = C if G == "C" else G
    for seed in range(3):
        x, s, w = _inputs(spatial, kernel, C=C, R=R, G=G, seed=seed)
        errors = [reconstruction_error(x, s, w, G)]
        for _ in range(20):
            s = ndc(x, s, w, G, eps=0.0)
            errors.append(reconstruction_error(x, s, w, G))
        errors = torch.stack(errors)  # (21, B)
        increase = (errors[1:] - errors[:-1]) / errors[:-1]
        assert (increase <= 1e-12).all(), f"error increased: {errors[:, 0].tolist()}"
        assert (errors[-1] < errors[0]).all()


@pytest.mark.parametrize("spatial,kernel", GEOMETRIES)
@pytest.mark.parametrize("G", [1, 4])
@pytest.mark.parametrize("iterations", [1, 2])
def test_gradcheck(spatial, kernel, G, iterations, backend):
    x, s0, w = _inputs(spatial, kernel, C=4, R=2, G=G, B=1)
    args = [t.requires_grad_() for t in (x, s0, w)]
    # the full Jacobian, column by column, against finite differences
    assert torch.autograd.gradcheck(lambda a, b, c: ndc(a, b, c, G, iterations=iterations), args)


@pytest.mark.parametrize("spatial,kernel", GEOMETRIES)
@pytest.mark.parametrize("G", [1, 2, 4])
def test_custom_gradients_equal_plain_graph(spatial, kernel, G, backend):
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        x, s0, w = _inputs(spatial, kernel, C=4, R=4, G=G, dtype=dtype, seed=3)
        g = torch.rand(s0.shape, dtype=dtype)
        grads = []
        for fn in (ndc, ndc_reference):
            leaves = [t.clone().requires_grad_() for t in (x, s0, w)]
            out = fn(*leaves, G)
            grads.append(torch.autograd.grad(out, leaves, g))
        for mine, ref in zip(*grads):
            torch.testing.assert_close(mine, ref, rtol=tol, atol=tol * ref.abs().max().item())


def test_only_requested_gradients(backend):
    x, s0, w = _inputs((6, 6), (3, 3))
    w.requires_grad_()
    (gw,) = torch.autograd.grad(ndc(x, s0, w, 2).sum(), [w])
    assert gw.shape == w.shape and torch.isfinite(gw).all()


@pytest.mark.parametrize("case", ["zeros", "constant", "large", "zero_filter"])
@pytest.mark.parametrize("dims", [2, 3])
def test_no_nan_or_inf(case, dims, backend):
    spatial = (6,) * dims
    layer = NDC(8, (3,) * dims)
    x = {"zeros": torch.zeros(2, 8, *spatial), "constant": torch.full((2, 8, *spatial), 0.7),
         "large": torch.full((2, 8, *spatial), 1e4), "zero_filter": torch.rand(2, 8, *spatial)}[case]
    if case == "zero_filter":
        with torch.no_grad():
            layer.weight.fill_(-1.0)  # rectified to zero
    x.requires_grad_()
    out = layer(x)
    out.sum().backward()
    assert torch.isfinite(out).all() and (out >= 0).all()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_runs_in_float32_and_returns_input_dtype(dtype, backend):
    x = torch.rand(2, 4, 6, 6, 6)
    s0 = torch.rand(2, 16, 6, 6, 6) * 1e-3
    w = torch.rand(4, 4, 3, 3, 3)
    with torch.autocast("cpu", dtype=dtype):
        out = ndc(x.to(dtype), s0.to(dtype), w, 4)
    assert out.dtype == dtype
    expected = ndc(x.to(dtype).float(), s0.to(dtype).float(), w, 4)
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-6)
    # eps = 1e-8 is 0 in float16: a float16 computation would give 0/0 = NaN on an all-zero input
    with torch.autocast("cpu", dtype=dtype):
        zero = ndc(torch.zeros(1, 4, 5, 5, 5, dtype=dtype), torch.zeros(1, 16, 5, 5, 5, dtype=dtype), w, 4)
    assert torch.isfinite(zero.float()).all()


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_keeps_its_dtype_for_backward_and_computes_in_float32(dtype, dims, backend):
    """Under autocast the update keeps x and s for backward in the autocast dtype (no float32 copy:
    the only float32 map it keeps is A(s), C channels), and its gradients are float32's on the
    same 16-bit inputs, rounded once to that dtype. Batch 1 and 2; s0 with the ReLU inside."""
    for batch in (1, 2):
        spatial = (5, 6, 7)[-dims:]
        gen = torch.Generator().manual_seed(batch)
        x16 = torch.rand(batch, 4, *spatial, generator=gen).to(dtype)
        s16 = (torch.rand(batch, 16, *spatial, generator=gen) - 0.2).to(dtype)
        w = torch.rand(4, 4, *(3,) * dims, generator=gen)
        grad = torch.rand(batch, 16, *spatial, generator=gen).to(dtype).float()

        saved = []
        x, s, wa = (t.clone().requires_grad_() for t in (x16, s16, w))
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append((t.dtype, t.shape)) or t, lambda t: t):
            with torch.autocast("cpu", dtype=dtype):
                out = ndc(x, s, wa, 4, rectify_s0=True)
        assert out.dtype == dtype
        (out.float() * grad).sum().backward()
        volume = batch * math.prod(spatial)
        wide = [(dt, tuple(shape)) for dt, shape in saved if math.prod(shape) >= 4 * volume]
        assert (torch.float32, (batch, 4, *spatial)) in wide  # y = A(s)
        assert [d for d, shape in wide if d == torch.float32 and shape[1] != 4] == [], wide
        assert {d for d, shape in wide if shape[1] == 16} == {dtype}, wide

        xr, sr, wr = (t.float().requires_grad_() for t in (x16, s16, w))
        want = ndc(xr, sr, wr, 4, rectify_s0=True)
        (want * grad).sum().backward()
        torch.testing.assert_close(out, want.to(dtype), rtol=0, atol=0)
        assert x.grad.dtype == s.grad.dtype == dtype and wa.grad.dtype == torch.float32
        for got, ref in ((x.grad, xr.grad), (s.grad, sr.grad)):
            torch.testing.assert_close(got.float(), ref.to(dtype).float(), rtol=1e-2, atol=1e-6)
        torch.testing.assert_close(wa.grad, wr.grad, rtol=1e-5, atol=1e-6)


def test_module_structure_and_init(backend):
    layer = NDC(8, (1, 3, 3), ratio=4)
    assert layer.weight.shape == (8, 4, 1, 3, 3) and layer.groups == 8
    assert layer.init.weight.shape == (32, 8, 1, 1, 1) and layer.init.bias is not None
    # Kaiming-uniform with a = sqrt(5): bound = 1 / sqrt(fan_in), fan_in = 4 * 1 * 3 * 3
    bound = 1 / 36 ** 0.5
    assert layer.weight.abs().max() <= bound and layer.weight.min() < 0 < layer.weight.max()
    out = layer(torch.rand(2, 8, 3, 6, 6))
    assert out.shape == (2, 32, 3, 6, 6) and (out >= 0).all()
    # float64: in float32 the layouts' different summation orders differ by rounding alone
    ref = NDC(8, (1, 3, 3), memory_efficient=False).double()
    ref.load_state_dict(layer.state_dict())
    x = torch.rand(2, 8, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(layer.double()(x), ref(x), rtol=1e-10, atol=1e-12)


def test_errors():
    x, s0, w = _inputs((6, 6), (3, 3), C=4, R=2, G=2)
    with pytest.raises(ValueError, match="odd"):
        NDC(8, (4, 4, 4))
    with pytest.raises(ValueError, match="one entry per spatial axis"):
        NDC(8, 3)  # the layer takes one size per axis: its length is the dimensionality
    with pytest.raises(ValueError, match="one entry per spatial axis"):
        NDC(8, (3, 3, 3, 3))
    with pytest.raises(ValueError, match="odd"):
        ndc(x, s0, torch.rand(4, 4, 2, 3, dtype=torch.float64), 2)
    with pytest.raises(ValueError, match="divisible"):
        NDC(6, (3, 3, 3), groups=4)
    with pytest.raises(ValueError, match="iterations"):
        NDC(4, (3, 3), iterations=0)
    with pytest.raises(ValueError, match="divide"):
        ndc(x, s0, w, 3)
    with pytest.raises(ValueError, match="weight must have shape"):
        ndc(x, s0, torch.rand(4, 3, 3, 3, dtype=torch.float64), 2)
    with pytest.raises(ValueError, match="s0"):
        ndc(x, s0[:, :, :5], w, 2)
    with pytest.raises(ValueError, match="iterations"):
        ndc(x, s0, w, 2, iterations=0)
    with pytest.raises(ValueError, match="iterations"):
        ndc_reference(x, s0, w, 2, iterations=0)


@pytest.mark.parametrize("memory_efficient", [True, False])
def test_layer_checks_once_at_construction_not_per_forward(monkeypatch, memory_efficient):
    from nnunet_deconver.ndc import functional

    calls = []
    checked = functional.check_arguments
    monkeypatch.setattr(functional, "check_arguments", lambda *args: calls.append(1) or checked(*args))
    layer = NDC(4, (1, 3, 3), ratio=2, iterations=2, memory_efficient=memory_efficient)
    out = layer(torch.rand(1, 4, 3, 5, 5))
    assert out.shape == (1, 8, 3, 5, 5) and calls == []
    functional.ndc(*_inputs((6, 6), (3, 3), C=4, R=2, G=2)[:3], 2)  # the public functional still checks
    functional.ndc_reference(*_inputs((6, 6), (3, 3), C=4, R=2, G=2)[:3], 2)
    assert len(calls) == 2
