"""The lean block's second half in row tiles (CPU) computes what the unfused block computes.

``z + MLP(IN(z))`` in one tiled pass against PyTorch's own instance norm, 1x1 convolutions and
GELU in the contiguous layout (a reference that is not our code), forward and every gradient
(z, both convolutions' weights and biases), float64 to 1e-10 and float32 to rounding, 2D and 3D,
batch 1 and 2, inputs contiguous and channels-last, one tile per sample, several tiles with a
short last one, and row counts that are no multiple of any vector width; then a whole lean block
with the tiled pass against the same with it turned off (a network step: ``test_fused_mixer.py``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nnunet_deconver.network import MLP, blocks, fused_mlp
from nnunet_deconver.network.blocks import BlockConfig, BlockSpec, DeconverBlock
from nnunet_deconver.network.fused_mlp import fused_mlp_applies, norm_mlp_residual
from nnunet_deconver.network.norm import instance_norm, instance_stats

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
    return norm_mlp_residual(z, *instance_stats(z, EPS), module.fc1, module.fc2)


def _value_and_grads(fn, x, module, upstream):
    x = x.detach().clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    out = fn(x)
    out.backward(upstream)
    return [out.detach(), x.grad] + [p.grad.clone() for p in module.parameters()]


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
    fused = _value_and_grads(lambda t: _fused(t, module), z, module, upstream)
    reference = _value_and_grads(lambda t: _reference(t, module), z, module, upstream)
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


def _lean_block(dims: int, dtype) -> DeconverBlock:
    torch.manual_seed(0)
    config = BlockConfig(ratio=4, groups=None, activation_memory="lean", tile_size=3)
    block = DeconverBlock(BlockSpec(6, (3,) * dims, config)).to(dtype)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return block


@pytest.mark.parametrize("shape", [(1, 6, 7, 5, 6), (2, 6, 9, 10)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lean_block_with_fused_norm_mlp_equals_unfused(monkeypatch, shape, dtype):
    """The lean block with its second half in row tiles against the same block with the slabs of
    the unfused norm and MLP, recomputed in backward: forward and every gradient."""
    monkeypatch.setattr(fused_mlp, "TILE_ELEMENTS", 24 * 11)  # tiles of 11 rows (hidden width 24)
    block = _lean_block(len(shape) - 2, dtype)
    gen = torch.Generator().manual_seed(2)
    x, upstream = torch.rand(*shape, generator=gen, dtype=dtype), torch.randn(*shape, generator=gen, dtype=dtype)
    calls = []
    original = blocks.norm_mlp_residual

    def counted(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(blocks, "norm_mlp_residual", counted)
    tiled = _value_and_grads(block, x, block, upstream)
    assert calls, "the lean block did not take the tiled pass"
    monkeypatch.setattr(blocks, "fused_mlp_applies", lambda z, norm: False)
    unfused = _value_and_grads(block, x, block, upstream)
    names = ["output", "grad x"] + [name for name, _ in block.named_parameters()]
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    for name, mine, ref in zip(names, tiled, unfused):
        torch.testing.assert_close(mine, ref, **tol, msg=lambda m: f"{name}: {m}")
