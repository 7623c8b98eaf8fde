"""The lean block's second half in row tiles (CPU) computes what the unfused block computes.

``z + MLP(IN(z))`` in one tiled pass against PyTorch's own instance norm, 1x1 convolutions and
GELU in the contiguous layout (a reference that is not our code), forward and every gradient
(z, both convolutions' weights and biases), float64 to 1e-10 and float32 to rounding, 2D and 3D,
batch 1 and 2, inputs contiguous and channels-last, one tile per sample, several tiles with a
short last one, and row counts that are no multiple of any vector width. A whole lean block and a
network step with the tiled pass against the same with it turned off: ``test_fused_mixer.py``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _gradients import value_and_grads
from nnunet_deconver.network import MLP, fused_mlp
from nnunet_deconver.network.fused_mlp import fused_mlp_applies, norm_mlp_residual
from nnunet_deconver.network.norm import instance_norm

EPS = 1e-5


def _mlp(channels: int, dims: int, dtype: torch.dtype) -> MLP:
    torch.manual_seed(0)
    module = MLP(channels, dims, mlp_ratio=4).to(dtype)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return module


def _reference(z, module: MLP):
    """z + MLP(IN(z)) with PyTorch's instance norm, convolutions (contiguous) and GELU."""
    conv = F.conv3d if z.dim() == 5 else F.conv2d
    normed = F.instance_norm(z.contiguous(), eps=EPS)
    return z + conv(F.gelu(conv(normed, module.fc1.weight, module.fc1.bias)), module.fc2.weight, module.fc2.bias)


def _fused(z, module: MLP):
    return norm_mlp_residual(z, EPS, module.fc1, module.fc2)


NAMES = ("output", "grad z", "grad fc1.weight", "grad fc1.bias", "grad fc2.weight", "grad fc2.bias")


@pytest.mark.parametrize("shape", [(1, 6, 5, 7, 3), (2, 4, 3, 5, 6), (1, 5, 13, 11), (2, 3, 7, 9)])
@pytest.mark.parametrize("tile_elements", [1 << 18, 40 * 24])  # one tile per sample; tiles of 40 or 60 rows
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_norm_mlp_equals_torch_reference(monkeypatch, shape, tile_elements, channels_last, dtype):
    monkeypatch.setattr(fused_mlp, "TILE_ELEMENTS", tile_elements)
    B, C, *spatial = shape
    module = _mlp(C, len(spatial), dtype)
    gen = torch.Generator().manual_seed(1)
    z = 2 * torch.rand(*shape, generator=gen, dtype=dtype) + 0.5
    if channels_last:
        z = z.contiguous(memory_format=torch.channels_last_3d if z.dim() == 5 else torch.channels_last)
    upstream = torch.randn(*shape, generator=gen, dtype=dtype)
    assert fused_mlp_applies(z, instance_norm(C, len(spatial), False))
    fused = value_and_grads(lambda t: _fused(t, module), z, module, upstream)
    reference = value_and_grads(lambda t: _reference(t, module), z, module, upstream)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    for name, mine, ref in zip(NAMES, fused, reference):
        torch.testing.assert_close(mine, ref, **tol, msg=lambda m: f"{name}: {m}")
    assert fused[0].is_contiguous(memory_format=torch.channels_last_3d if z.dim() == 5 else torch.channels_last)


def test_fused_norm_mlp_only_where_it_applies():
    z, plain, affine = torch.rand(1, 4, 3, 3, 3), instance_norm(4, 3, False), instance_norm(4, 3, True)
    assert fused_mlp_applies(z, plain) and fused_mlp_applies(z.double(), plain)
    assert not fused_mlp_applies(z, affine)
    assert not fused_mlp_applies(z.half(), plain)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused_mlp_applies(z, plain)


def test_fused_norm_mlp_without_gradients():
    module = _mlp(4, 3, torch.float32)
    z = torch.rand(2, 4, 5, 6, 7)
    with torch.inference_mode():
        got = _fused(z, module)
    torch.testing.assert_close(got, _reference(z, module).detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 5, 4, 6, 7), (1, 5, 7, 9)])
def test_fused_norm_mlp_overwrites_its_input_only_without_gradients(monkeypatch, shape):
    """``overwrite``: the result in the channels-last input's memory, as the unfused reference
    computes it (3D batch 2, 2D batch 1, tiles of 7 rows with a short last one); refused with
    gradients; an input in another layout is left as it was."""
    monkeypatch.setattr(fused_mlp, "TILE_ELEMENTS", 7 * 20)  # hidden width 20: tiles of 7 rows
    module = _mlp(5, len(shape) - 2, torch.float32)
    z = torch.rand(*shape).contiguous(memory_format=torch.channels_last_3d if len(shape) == 5 else torch.channels_last)
    expected = _reference(z, module).detach()
    with torch.no_grad():
        given = z.clone()
        got = norm_mlp_residual(given, EPS, module.fc1, module.fc2, overwrite=True)
        assert got.data_ptr() == given.data_ptr()
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        contiguous = z.contiguous()
        got = norm_mlp_residual(contiguous, EPS, module.fc1, module.fc2, overwrite=True)
        assert torch.equal(contiguous, z)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="only without gradients"):
        norm_mlp_residual(z, EPS, module.fc1, module.fc2, overwrite=True)
