"""Instance norm's moments and their gradient, chunk by chunk, against PyTorch's own reductions.

:func:`~nnunet_deconver.network.norm.moments` (mean and 1 / sqrt(var + eps) over the spatial
axes) and :func:`~nnunet_deconver.network.norm.add_moments_grad_` (the gradient through them,
added in place) against ``torch.var_mean`` and autograd through it, for channels-last maps cut
into several chunks with a short last one, one chunk, and other layouts; 2D and 3D, batch 1 and 2,
float64 to 1e-12 and float32 to rounding.
"""

from __future__ import annotations

import pytest
import torch

from nnunet_deconver.network import norm
from nnunet_deconver.network.norm import add_moments_grad_, instance_stats, moments

EPS = 1e-5


def _reference(x):
    var, mean = torch.var_mean(x.contiguous(), dim=tuple(range(2, x.dim())), correction=0, keepdim=True)
    return mean, torch.rsqrt(var + EPS)


def _map(shape, dtype, channels_last, seed=0):
    x = 3 * torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) + 2
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)
    return x


SHAPES = [(1, 5, 7, 6, 3), (2, 4, 5, 3, 7), (2, 3, 9, 11), (1, 1, 6, 5)]
CHUNKS = [1 << 18, 7 * 5]  # one chunk per sample; chunks of 7 rows (5 channels; 8 for 4, 11 for 3), a short last


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_moments_equal_var_mean(monkeypatch, shape, chunk, channels_last, dtype):
    monkeypatch.setattr(norm, "CHUNK_ELEMENTS", chunk)
    x = _map(shape, dtype, channels_last)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-6, atol=2e-6)
    for name, mine, ref in zip(("mean", "rstd"), moments(x, EPS), _reference(x)):
        assert mine.shape == ref.shape and mine.dtype == ref.dtype
        torch.testing.assert_close(mine, ref, **tol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_moments_gradient_added_in_place_equals_autograd(monkeypatch, shape, chunk, dtype):
    monkeypatch.setattr(norm, "CHUNK_ELEMENTS", chunk)
    x = _map(shape, dtype, True)
    gen = torch.Generator().manual_seed(1)
    stats_shape = (*shape[:2], *(1,) * (len(shape) - 2))
    grad_mean, grad_rstd = torch.randn(stats_shape, generator=gen, dtype=dtype), torch.randn(stats_shape, generator=gen,
                                                                                          dtype=dtype)
    start = torch.randn(shape, generator=gen, dtype=dtype).contiguous(
        memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)
    leaf = x.detach().clone().requires_grad_()
    expected = start + torch.autograd.grad(_reference(leaf), leaf, (grad_mean, grad_rstd))[0]
    grad = start.clone()
    add_moments_grad_(grad, x, *moments(x, EPS), grad_mean, grad_rstd)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, expected, **tol)
    # instance_stats' own backward (a new tensor) agrees
    leaf = x.detach().clone().requires_grad_()
    own = torch.autograd.grad(instance_stats(leaf, EPS), leaf, (grad_mean, grad_rstd))[0]
    torch.testing.assert_close(start + own, expected, **tol)
