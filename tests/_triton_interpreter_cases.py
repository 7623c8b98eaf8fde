"""The Triton NDC kernels under Triton's interpreter, against the plain autograd graph.

Run by tests/test_ndc_triton.py in a process of its own with ``TRITON_INTERPRET=1`` (Triton reads
it when a kernel is defined, so it must be set before the kernels are imported; setting it in the
test session would also change how any later Triton user in that process behaves).
"""

from __future__ import annotations

import os

import pytest
import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/test_ndc_triton.py (TRITON_INTERPRET=1)"

from nnunet_deconver.ndc import ndc_reference  # noqa: E402
from nnunet_deconver.ndc.backends import triton_backend  # noqa: E402
from nnunet_deconver.ndc.ops import synthesis  # noqa: E402

EPS = 1e-8

# (batch, C, R, G or None for G = C, spatial size, kernel, rectify)
CASES = [
    (2, 4, 4, None, (5, 6, 7), (3, 3, 3), False),
    (1, 4, 1, 1, (6, 5, 7), (5, 5, 5), False),
    (1, 4, 4, 2, (3, 6, 5), (1, 3, 3), True),
    (2, 3, 4, None, (7, 9), (3, 3), False),
    (1, 4, 1, 2, (9, 6), (5, 5), True),
    (1, 2, 4, 1, (6, 7), (3, 3), True),
    (1, 3, 1, 1, (5, 4, 6), (3, 3, 3), True),  # E/G = C/G = 3: not a power of two
    (2, 2, 3, None, (7, 5), (3, 3), False),  # E/G = 3, C/G = 1
]


def _inputs(batch, channels, ratio, groups, size, kernel, rectify, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    groups = channels if groups is None else groups
    sources = ratio * channels
    x = torch.rand(batch, channels, *size, generator=gen, dtype=torch.float64)
    s = torch.rand(batch, sources, *size, generator=gen, dtype=torch.float64)
    if rectify:  # some entries negative: the ReLU and its gradient mask matter
        s = s - 0.3
    weight = torch.rand(channels, sources // groups, *kernel, generator=gen, dtype=torch.float64)
    return x.to(dtype), s.to(dtype), weight.to(dtype), groups


def _reference(x, s, weight, groups, rectify, grad):
    x, s, weight = (t.detach().clone().requires_grad_() for t in (x, s, weight))
    out = ndc_reference(x, s, weight, groups, EPS, 1, rectify)
    out.backward(grad)
    return out.detach(), x.grad, s.grad, weight.grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"B{c[0]}C{c[1]}R{c[2]}G{c[3]}S{'x'.join(map(str, c[4]))}"
                                                      f"k{''.join(map(str, c[5]))}{'relu' if c[6] else ''}")
def test_forward_and_gradients_match_the_plain_graph(case, dtype):
    *shape, rectify = case
    x, s, weight, groups = _inputs(*shape, rectify, dtype)
    grad = torch.rand(s.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    out, y = triton_backend.forward(x, s, weight, groups, EPS, rectify)
    grads = triton_backend.backward(grad, x, s, weight, y, groups, EPS, rectify, True, True, True)
    expected = _reference(x, s, weight, groups, rectify, grad)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, expected[0], **tol)
    torch.testing.assert_close(y, synthesis(s.clamp_min(0) if rectify else s, weight, groups), **tol)
    for name, got, want in zip(("x", "s", "weight"), grads, expected[1:]):
        assert got.shape == want.shape and got.dtype == dtype, name
        torch.testing.assert_close(got, want, **tol, msg=lambda m: f"d/d{name}: {m}")


def test_only_the_requested_gradients_are_computed():
    x, s, weight, groups = _inputs(1, 2, 4, None, (4, 5, 6), (3, 3, 3), False, torch.float64)
    out, y = triton_backend.forward(x, s, weight, groups, EPS, False)
    grad = torch.ones_like(out)
    full = triton_backend.backward(grad, x, s, weight, y, groups, EPS, False, True, True, True)
    for needs in [(True, False, False), (False, True, False), (False, False, True)]:
        got = triton_backend.backward(grad, x, s, weight, y, groups, EPS, False, *needs)
        for g, f, needed in zip(got, full, needs):
            assert (g is not None) == needed
            if needed:
                torch.testing.assert_close(g, f, rtol=0, atol=0)


def test_non_contiguous_inputs():
    """Channels-last and sliced inputs give the contiguous inputs' results."""
    x, s, weight, groups = _inputs(2, 2, 4, 2, (4, 5, 6), (3, 3, 3), True, torch.float64)
    grad = torch.rand(s.shape, dtype=torch.float64)
    out, y = triton_backend.forward(x, s, weight, groups, EPS, True)
    expected = triton_backend.backward(grad, x, s, weight, y, groups, EPS, True, True, True, True)
    cl = torch.channels_last_3d
    wide = torch.rand(2, 2 * s.shape[1], *s.shape[2:], dtype=torch.float64)
    wide[:, ::2] = s
    out2, y2 = triton_backend.forward(x.contiguous(memory_format=cl), wide[:, ::2], weight, groups, EPS, True)
    got = triton_backend.backward(grad.contiguous(memory_format=cl), x.contiguous(memory_format=cl), wide[:, ::2],
                                  weight, y2.contiguous(memory_format=cl), groups, EPS, True, True, True, True)
    torch.testing.assert_close(out2, out, rtol=0, atol=0)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_half_inputs_are_computed_in_float32():
    """float16 x and s (as autocast keeps them) with a float32 filter: forward and every gradient are
    float32's on the same float16 values, returned in float32; finite on zeros."""
    x, s, weight, groups = _inputs(1, 2, 4, None, (4, 5, 6), (3, 3, 3), True, torch.float16)
    weight = weight.float()
    grad = torch.rand(s.shape, generator=torch.Generator().manual_seed(1))
    out, y = triton_backend.forward(x, s, weight, groups, EPS, True)
    got = triton_backend.backward(grad, x, s, weight, y, groups, EPS, True, True, True, True)
    want, want_y = triton_backend.forward(x.float(), s.float(), weight, groups, EPS, True)
    want_grads = triton_backend.backward(grad, x.float(), s.float(), weight, want_y, groups, EPS, True, True, True,
                                         True)
    assert out.dtype == y.dtype == torch.float32 and all(g.dtype == torch.float32 for g in got)
    for a, b in zip((out, y, *got), (want, want_y, *want_grads)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    reference = _reference(x.double(), s.double(), weight.double(), groups, True, grad.double())
    for a, b in zip((out, *got), reference):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-6)
    zeros, _ = triton_backend.forward(torch.zeros_like(x), torch.zeros_like(s), weight, groups, EPS, False)
    assert torch.isfinite(zeros).all() and not zeros.any()  # 0 * eps / eps; float16 would give 0 / 0


def test_through_the_operator_and_the_environment_variable(monkeypatch):
    """Registered for CPU tensors here (on a machine it serves CUDA ones), forced with
    NNUNET_DECONVER_NDC_BACKEND=triton: ndc() and its autograd match the plain graph."""
    from nnunet_deconver.ndc import ndc
    from nnunet_deconver.ndc.backends import BACKEND_ENV, BACKENDS, Backend, backend_for

    monkeypatch.setitem(BACKENDS, "triton", Backend("triton", ("cpu",), triton_backend.forward,
                                                    triton_backend.backward, triton_backend.is_available))
    monkeypatch.setenv(BACKEND_ENV, "triton")
    assert backend_for(torch.device("cpu")).name == "triton"
    x, s, weight, groups = _inputs(1, 2, 4, 2, (3, 5, 6), (1, 3, 3), True, torch.float32)
    leaves = [t.clone().requires_grad_() for t in (x, s, weight)]
    out = ndc(*leaves, groups, EPS, iterations=2, rectify_s0=True)
    out.square().sum().backward()
    ref_leaves = [t.clone().requires_grad_() for t in (x, s, weight)]
    ndc_reference(*ref_leaves, groups, EPS, iterations=2, rectify_s0=True).square().sum().backward()
    torch.testing.assert_close(out, ndc_reference(x, s, weight, groups, EPS, 2, True), rtol=1e-5, atol=1e-6)
    for got, want in zip(leaves, ref_leaves):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-4, atol=1e-6)


def test_self_test_passes_here_and_failure_falls_back_with_one_warning(monkeypatch):
    from nnunet_deconver.ndc.backends import NDCBackendWarning

    monkeypatch.setitem(triton_backend._state, "available", None)
    assert triton_backend.is_available()

    def broken():
        raise RuntimeError("no kernels for this device")

    monkeypatch.setitem(triton_backend._state, "available", None)
    monkeypatch.setattr(triton_backend, "_kernels", broken)
    with pytest.warns(NDCBackendWarning, match="no kernels for this device") as record:
        assert not triton_backend.is_available()
        assert not triton_backend.is_available()  # decided once
    assert len(record) == 1


def test_lean_block_equals_full_block_on_this_backend(monkeypatch):
    """A Deconver block cut into slabs no thicker than its NDC's reach, recomputed in backward, on the
    Triton backend: the output and every gradient of the full block."""
    from nnunet_deconver.ndc.backends import BACKEND_ENV, BACKENDS, Backend
    from nnunet_deconver.network.blocks import BlockConfig, BlockSpec, DeconverBlock

    monkeypatch.setitem(BACKENDS, "triton", Backend("triton", ("cpu",), triton_backend.forward,
                                                    triton_backend.backward, triton_backend.is_available))
    monkeypatch.setenv(BACKEND_ENV, "triton")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 5, 4, generator=gen, dtype=torch.float64)
    grad = torch.randn(1, 4, 5, 4, generator=gen, dtype=torch.float64)
    results = []
    for mode in ("full", "lean"):
        torch.manual_seed(0)
        block = DeconverBlock(BlockSpec(4, (3, 3), BlockConfig(groups=2, activation_memory=mode, tile_size=2)))
        block = block.double()
        leaf = x.clone().requires_grad_()
        out = block(leaf)
        out.backward(grad)
        results.append([out.detach(), leaf.grad, *(p.grad for p in block.parameters())])
    for want, got in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_self_check_catches_a_wrong_kernel(monkeypatch):
    """The check compares every kernel with float64 PyTorch: a result 0.1% off is reported by name."""
    assert triton_backend.check_kernels(torch.device("cpu")) == []
    real = triton_backend._weight_grad
    monkeypatch.setattr(triton_backend, "_weight_grad", lambda *args: real(*args) * 1.001)
    problems = triton_backend.check_kernels(torch.device("cpu"))
    assert problems and all(p.startswith("dL/dV") for p in problems), problems


def test_forced_backend_that_fails_its_check_is_an_error(monkeypatch):
    """Forced with NNUNET_DECONVER_NDC_BACKEND=triton, a failed check is an error that says why
    (every call, no fallback); under ``auto`` the same failure warns once and falls back."""
    from nnunet_deconver.ndc.backends import BACKEND_ENV, NDCBackendError, NDCBackendWarning

    monkeypatch.setattr(triton_backend, "check_kernels", lambda device: ["dL/dV (3D, rectify=True) off by 0.5"])
    monkeypatch.setitem(triton_backend._state, "available", None)
    monkeypatch.setenv(BACKEND_ENV, "triton")
    for _ in range(2):
        with pytest.raises(NDCBackendError, match="NNUNET_DECONVER_NDC_BACKEND=triton.*dL/dV .3D, rectify=True. off"):
            triton_backend.is_available()
    monkeypatch.setitem(triton_backend._state, "available", None)
    monkeypatch.setenv(BACKEND_ENV, "auto")
    with pytest.warns(NDCBackendWarning, match="dL/dV") as record:
        assert not triton_backend.is_available()
        assert not triton_backend.is_available()
    assert len(record) == 1
