"""On CPU the network runs channels-last from its input to its logits, in forward and backward.

PyTorch's CPU kernels are slow when an operation meets a contiguous and a channels-last operand
(measured 20x for an addition of two 64-channel 64^3 maps) and when a tensor is converted between
the two layouts. Every operation of a training step is watched here (a dispatch mode sees the
ones autograd runs in backward too): none may involve activations of both layouts. The network's
input and its logits (fewer channels than any stage) are the only tensors that change layout, and
they are not watched. With a one-channel input (contiguous and channels-last at once) the stem's
output is converted once more, which is allowed, and checked to be the only exception.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nnunet_deconver.network import Deconver

WIDTHS = [8, 16]


def _layout(t: object, batch: int) -> str | None:
    """"last" or "first" for an activation (batch leading, a stage's width or more, more than one
    voxel) whose channels or whose last axis are innermost; None for anything else."""
    if not isinstance(t, torch.Tensor) or t.dim() not in (4, 5) or t.shape[0] != batch:
        return None
    if t.shape[1] < min(WIDTHS) or t[0, 0].numel() < 2:
        return None
    if t.stride(1) == 1:
        return "last"
    return "first" if t.stride(-1) == 1 else None


class _MixedLayouts(TorchDispatchMode):
    """Records every operation whose activation arguments and results are not all in one layout."""

    def __init__(self, batch: int):
        super().__init__()
        self.batch, self.mixed = batch, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func._schema.is_mutable is False and any(r.alias_info for r in func._schema.returns):
            return out  # a view (a permutation, say) computes nothing
        flat = list(args) + list((kwargs or {}).values()) + (list(out) if isinstance(out, (tuple, list)) else [out])
        tensors = [a for a in flat if isinstance(a, torch.Tensor)]
        tensors += [t for a in flat if isinstance(a, (tuple, list)) for t in a if isinstance(t, torch.Tensor)]
        layouts = {_layout(t, self.batch) for t in tensors} - {None}
        if len(layouts) > 1:
            self.mixed.append(f"{func} on {[tuple(t.shape) for t in tensors]}")
        return out


def _net(dims: int, channels: int, mode: str) -> Deconver:
    torch.manual_seed(0)
    return Deconver(channels, 2, dims, WIDTHS, [1, 2], deep_supervision=True, norm_affine=True,
                    activation_memory=mode, tile_size=3)  # several slabs, with borders, at both levels


SIZE = (10, 12, 14)


@pytest.mark.parametrize("dims,channels,batch", [(2, 1, 1), (2, 1, 2), (3, 2, 2), (3, 1, 2)])
@pytest.mark.parametrize("mode", ["lean", "full"])
def test_training_step_never_mixes_layouts(dims, channels, batch, mode):
    net = _net(dims, channels, mode)
    x = torch.randn(batch, channels, *SIZE[:dims])
    watch = _MixedLayouts(batch)
    with watch:
        outputs = net(x)
        sum(o.square().mean() for o in outputs).backward()
    assert all(o.is_contiguous() for o in outputs)
    assert all(p.grad is not None for p in net.parameters())
    stem = f"aten.clone.default on {[(batch, WIDTHS[0], *SIZE[:dims])] * 2}"  # the stem's output, put back
    assert [m for m in watch.mixed if m != stem] == [], "\n".join(watch.mixed[:10])


@pytest.mark.parametrize("mode", ["lean", "full"])
def test_3d_inference_at_batch_one_converts_only_convolution_outputs(mode):
    """PyTorch's CPU 3D convolutions return the contiguous layout at batch 1: the stem, strided and
    transposed convolutions' outputs are put back (one copy each), and nothing else mixes."""
    net = _net(3, 2, mode).eval()
    net.decoder.deep_supervision = False
    x = torch.randn(1, 2, *SIZE)
    watch = _MixedLayouts(1)
    with watch, torch.no_grad():
        out = net(x)
    assert out.is_contiguous()
    convolutions = 1 + 2 * (len(WIDTHS) - 1)  # stem, downsampling, upsampling
    assert all(m.startswith(("aten.convolution.default", "aten.clone.default")) for m in watch.mixed), watch.mixed
    assert sum(m.startswith("aten.clone.default") for m in watch.mixed) <= convolutions, watch.mixed
