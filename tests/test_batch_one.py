"""Gradients at batch size 1: equal to batch 2's, and to the plain graph's.

Every sample is normalised on its own (instance norm) and nothing else mixes samples, so with a
loss that is a mean over the batch the gradients for the batch [x, x] (weights g duplicated) equal
those for [x]: ``sum(f(x) * g) = (sum(f(x) * g) + sum(f(x) * g)) / 2``. The input gradient of the
duplicated batch, taken with respect to the one x both copies come from, is the same too.

PyTorch's CPU ``instance_norm`` backward is wrong at batch 1 for a channels-last incoming gradient
(torch 2.14.1), which our channels-last pointwise convolutions produce: these tests fail without
the norms of :mod:`nnunet_deconver.network.norm`. The reference network is built from PyTorch's
own modules only: the same parameters in contiguous ``nn.Conv2d`` / ``3d`` 1x1 convolutions,
``nn.InstanceNorm2d`` / ``3d`` and the NDC's plain autograd graph (``memory_efficient=False``).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nnunet_deconver.ndc import NDC
from nnunet_deconver.ndc.backends import BACKEND_ENV
from nnunet_deconver.ndc.module import PointwiseConv2d, PointwiseConv3d
from nnunet_deconver.network import Deconver
from nnunet_deconver.network.blocks import BlockConfig, BlockSpec, DeconverBlock
from nnunet_deconver.network.norm import InstanceNorm2d, InstanceNorm3d, instance_norm

PLAIN = {PointwiseConv2d: nn.Conv2d, PointwiseConv3d: nn.Conv3d,
         InstanceNorm2d: nn.InstanceNorm2d, InstanceNorm3d: nn.InstanceNorm3d}


def plain_copy(module: nn.Module) -> nn.Module:
    """The same parameters computed by PyTorch's plain modules, contiguous, and the NDC's plain graph."""
    module = copy.deepcopy(module)
    for m in module.modules():
        if type(m) in PLAIN:
            m.__class__ = PLAIN[type(m)]
        if isinstance(m, NDC):
            m.memory_efficient = False
    return module


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last if t.dim() == 4 else torch.channels_last_3d)


def _grads(module: nn.Module, x: torch.Tensor, weights: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    """Input and parameter gradients of ``mean over the batch of sum(out * w)``, for ``x`` (B = 1)
    repeated ``batch`` times (the repeated input's gradient is taken with respect to x)."""
    x = x.detach().requires_grad_()
    outputs = module(torch.cat([x] * batch))
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    loss = sum((o * torch.cat([w] * batch)).sum() for o, w in zip(outputs, weights)) / batch
    params = [p for p in module.parameters() if p.requires_grad]
    return list(torch.autograd.grad(loss, [x, *params], allow_unused=True))


def _assert_all_close(got: list, expected: list, what: str) -> None:
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected)):
        assert (a is None) == (b is None), f"{what}: gradient {i} present in only one"
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=lambda m: f"{what}, gradient {i}: {m}")


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("affine", [False, True])
def test_norm_gradient_right_for_channels_last_gradient(dims, affine):
    """Our instance norm at batch 1 with a channels-last incoming gradient, against instance norm
    written out in plain differentiable ops: (x - mean) / sqrt(var + eps) * w + b over S."""
    gen = torch.Generator().manual_seed(0)
    shape = (1, 5, 6, 7, 9)[: 2 + dims]
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    g = _channels_last(torch.randn(shape, generator=gen, dtype=torch.float64))
    norm = instance_norm(5, dims, affine).double()
    if affine:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 2.0, generator=gen)
            norm.bias.uniform_(-1.0, 1.0, generator=gen)
    got = torch.autograd.grad(norm(x), [x, *norm.parameters()], g)
    axes = tuple(range(2, 2 + dims))
    mean, var = x.mean(axes, keepdim=True), x.var(axes, unbiased=False, keepdim=True)
    ref = (x - mean) / torch.sqrt(var + norm.eps)
    if affine:
        view = (1, -1) + (1,) * dims
        ref = ref * norm.weight.view(view) + norm.bias.view(view)
    expected = torch.autograd.grad(ref, [x, *norm.parameters()], g)
    _assert_all_close(list(got), list(expected), f"{dims}D norm, affine={affine}")


def _block(dims: int, kernel: tuple[int, ...], groups: int | None, ratio: int, affine: bool) -> DeconverBlock:
    torch.manual_seed(1)
    block = DeconverBlock(BlockSpec(4, kernel, BlockConfig(ratio=ratio, groups=groups, norm_affine=affine))).double()
    if affine:  # away from the identity initialisation, so the norms' parameters matter
        with torch.no_grad():
            for m in block.modules():
                if isinstance(m, (nn.InstanceNorm2d, nn.InstanceNorm3d)):
                    m.weight.uniform_(0.5, 2.0)
                    m.bias.uniform_(-0.5, 0.5)
    return block


BLOCKS = [  # dims, kernel, groups, ratio, affine, spatial size (not multiples of anything)
    (3, (3, 3, 3), None, 4, False, (5, 6, 7)),
    (3, (1, 3, 3), 2, 1, True, (3, 7, 5)),
    (2, (3, 3), None, 4, True, (9, 7)),
    (2, (5, 5), 1, 4, False, (6, 11)),
]


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("dims,kernel,groups,ratio,affine,size", BLOCKS)
def test_block_batch_one_equals_batch_two_and_plain_graph(monkeypatch, backend, dims, kernel, groups, ratio,
                                                          affine, size):
    monkeypatch.setenv(BACKEND_ENV, backend)
    block = _block(dims, kernel, groups, ratio, affine)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, *size, generator=gen, dtype=torch.float64)
    w = [torch.randn(1, 4, *size, generator=gen, dtype=torch.float64)]
    one = _grads(block, x, w, 1)
    _assert_all_close(one, _grads(block, x, w, 2), f"{dims}D block, batch 1 vs 2")
    _assert_all_close(one, _grads(plain_copy(block), x, w, 1), f"{dims}D block vs plain graph")


def _network(dims: int) -> Deconver:
    torch.manual_seed(3)
    if dims == 3:
        net = Deconver(2, 3, 3, [4, 8], [1, [1, 2, 2]], [(1, 3, 3), 3], deep_supervision=True, norm_affine=True)
    else:
        net = Deconver(3, 2, 2, [4, 8, 8], [1, 2, 2], [3, 5, 3], deep_supervision=True)
    return net.double()


NETWORK_SIZES = {3: (3, 6, 10), 2: (12, 8)}


def _network_inputs(net: Deconver, dims: int):
    gen = torch.Generator().manual_seed(4)
    size = NETWORK_SIZES[dims]
    x = torch.randn(1, net.encoder.stem.in_channels, *size, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        outputs = net(x)
    return x, [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in outputs]


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("dims", [2, 3])
def test_network_batch_one_equals_batch_two_and_plain_graph(monkeypatch, backend, dims):
    """The whole network (stem, NDC layouts, downsampling, decoder concatenation, heads and
    auxiliary heads), eager."""
    monkeypatch.setenv(BACKEND_ENV, backend)
    net = _network(dims)
    x, w = _network_inputs(net, dims)
    one = _grads(net, x, w, 1)
    assert all(g is not None for g in one), "every output is in the loss: every parameter gets a gradient"
    _assert_all_close(one, _grads(net, x, w, 2), f"{dims}D network, batch 1 vs 2")
    _assert_all_close(one, _grads(plain_copy(net), x, w, 1), f"{dims}D network vs plain graph")


@pytest.mark.parametrize("dims", [2, 3])
def test_compiled_network_batch_one_equals_plain_graph(dims):
    """torch.compile (inductor, CPU) at batch 1 against the eager plain graph."""
    net = _network(dims)
    x, w = _network_inputs(net, dims)
    expected = _grads(plain_copy(net), x, w, 1)
    compiled = torch.compile(net, fullgraph=True, dynamic=False)
    _assert_all_close(_grads(compiled, x, w, 1), expected, f"compiled {dims}D network vs plain graph")
