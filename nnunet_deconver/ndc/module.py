"""The NDC layer: learned nonnegative initialisation, rectified filter, multiplicative update."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from nnunet_deconver.ndc.functional import ndc, ndc_reference
from nnunet_deconver.ndc.ops import check_kernel_size, pointwise_channels_last, preferred_memory_format


def conv_class(spatial_dims: int) -> type[nn.Module]:
    """``nn.Conv2d`` or ``nn.Conv3d`` for 2 or 3 spatial dimensions."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


class _ChannelsLastPointwise:
    """Forward of a 1x1(x1) convolution module: on CPU one matrix product over the channel axis of
    a channels-last input (:func:`~nnunet_deconver.ndc.ops.pointwise_channels_last`; channels-last
    result), elsewhere the convolution. Parameters and ``state_dict`` are the convolution's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return super().forward(x)
        return pointwise_channels_last(x, self.weight, self.bias)


class PointwiseConv2d(_ChannelsLastPointwise, nn.Conv2d):
    """``nn.Conv2d`` with kernel 1, computed channels-last on CPU."""


class PointwiseConv3d(_ChannelsLastPointwise, nn.Conv3d):
    """``nn.Conv3d`` with kernel 1, computed channels-last on CPU."""


def pointwise_conv(spatial_dims: int, in_channels: int, out_channels: int, bias: bool) -> nn.Module:
    """A 1x1(x1) convolution that runs channels-last on CPU (:class:`PointwiseConv3d` / ``2d``)."""
    conv_class(spatial_dims)  # checks spatial_dims
    cls = PointwiseConv2d if spatial_dims == 2 else PointwiseConv3d
    return cls(in_channels, out_channels, 1, bias=bias)


def _plain_pointwise(spatial_dims: int, in_channels: int, out_channels: int, bias: bool) -> nn.Module:
    return conv_class(spatial_dims)(in_channels, out_channels, 1, bias=bias)


class NDC(nn.Module):
    """Nonnegative deconvolution layer: (B, C, *S) >= 0 -> (B, R * C, *S) >= 0.

    ``S0 = ReLU(pointwise conv C -> E with bias)(x)``, ``V = ReLU(theta)`` with theta of shape
    (C, E // G, *k) initialised Kaiming-uniform (a = sqrt(5)), then ``iterations`` updates of
    :func:`~nnunet_deconver.ndc.functional.ndc`.

    Args:
        channels: input channels C.
        kernel_size: odd filter size, an int or one per spatial axis (e.g. (1, 3, 3)).
        ratio: source channel ratio R, E = R * C.
        groups: number of groups G (None: G = C).
        eps: stabiliser of the update.
        iterations: number of multiplicative updates.
        spatial_dims: 2 or 3; taken from ``kernel_size`` when it is a sequence (default 3).
        memory_efficient: use :func:`~nnunet_deconver.ndc.functional.ndc` (True: the backends'
            operator, which also applies the ReLU of S0 inside the update) or the plain graph (False).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int | Sequence[int],
        ratio: int = 4,
        groups: int | None = None,
        eps: float = 1e-8,
        iterations: int = 1,
        spatial_dims: int | None = None,
        memory_efficient: bool = True,
    ):
        super().__init__()
        if isinstance(kernel_size, int):
            spatial_dims = 3 if spatial_dims is None else spatial_dims
            kernel_size = (kernel_size,) * spatial_dims
        kernel_size = tuple(int(k) for k in kernel_size)
        if spatial_dims is not None and len(kernel_size) != spatial_dims:
            raise ValueError(f"kernel_size {kernel_size} does not have {spatial_dims} entries")
        check_kernel_size(kernel_size)
        groups = channels if groups is None else groups
        sources = ratio * channels
        if ratio < 1 or channels % groups or sources % groups:
            raise ValueError(
                f"channels={channels} and ratio * channels={sources} must be divisible by groups={groups}"
            )
        self.channels, self.sources, self.groups = channels, sources, groups
        self.kernel_size, self.eps, self.iterations = kernel_size, eps, iterations
        self.memory_efficient = memory_efficient
        # channels-last on CPU: s0 is born in the layout of the fused update, with no copy
        init = pointwise_conv if memory_efficient else _plain_pointwise
        self.init = init(len(kernel_size), channels, sources, bias=True)
        self.weight = nn.Parameter(torch.empty(channels, sources // groups, *kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, *S), nonnegative -> (B, E, *S)."""
        if self.memory_efficient:
            # s0 is born in the layout the update runs in, so ndc() copies no (B, E, *S) tensor.
            x = x.contiguous(memory_format=preferred_memory_format(x))
        update = ndc if self.memory_efficient else ndc_reference
        return update(x, self.init(x), torch.relu(self.weight), self.groups, self.eps, self.iterations,
                      rectify_s0=True)

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, {self.sources}, kernel_size={self.kernel_size}, groups={self.groups}, "
            f"iterations={self.iterations}, memory_efficient={self.memory_efficient}"
        )
