"""The NDC layer: learned nonnegative initialisation, rectified filter, multiplicative update."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from dynamic_network_architectures.building_blocks.helper import convert_dim_to_conv_op
from torch import nn

from nnunet_deconver.ndc.functional import run_updates
from nnunet_deconver.ndc.ops import (
    check_iterations,
    check_kernel_size,
    in_preferred_layout,
    pointwise_channels_last,
)


class _ChannelsLastPointwise:
    """Forward of a 1x1(x1) convolution module: on CPU one matrix product over the channel axis of
    a channels-last input (:func:`~nnunet_deconver.ndc.ops.pointwise_channels_last`; channels-last
    result), elsewhere the convolution. Parameters and ``state_dict`` are the convolution's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pointwise_with(self, x, self.weight, self.bias)


class PointwiseConv2d(_ChannelsLastPointwise, nn.Conv2d):
    """``nn.Conv2d`` with kernel 1, computed channels-last on CPU."""


class PointwiseConv3d(_ChannelsLastPointwise, nn.Conv3d):
    """``nn.Conv3d`` with kernel 1, computed channels-last on CPU."""


def pointwise_with(conv: nn.Module, x: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
    """``conv``'s 1x1(x1) convolution of ``x`` with another ``weight`` and ``bias`` (a part of its
    own, say), computed as ``conv`` computes it (channels-last on CPU for the classes above)."""
    if isinstance(conv, _ChannelsLastPointwise) and x.device.type == "cpu":
        return pointwise_channels_last(x, weight, bias)
    return conv._conv_forward(x, weight, bias)


def pointwise_conv(spatial_dims: int, in_channels: int, out_channels: int, bias: bool,
                   channels_last: bool = True) -> nn.Module:
    """A 1x1(x1) convolution (B, in_channels, *S) -> (B, out_channels, *S) for 2 or 3 spatial dims.

    ``channels_last``: computed channels-last on CPU (:class:`PointwiseConv3d` / ``2d``, channels-last
    result); otherwise the plain ``nn.Conv3d`` / ``nn.Conv2d``. The parameters are the same.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if not channels_last:
        return convert_dim_to_conv_op(spatial_dims)(in_channels, out_channels, 1, bias=bias)
    cls = PointwiseConv2d if spatial_dims == 2 else PointwiseConv3d
    return cls(in_channels, out_channels, 1, bias=bias)


class NDC(nn.Module):
    """Nonnegative deconvolution layer: (B, C, *S) >= 0 -> (B, R * C, *S) >= 0.

    ``S0 = ReLU(pointwise conv C -> E with bias)(x)``, ``V = ReLU(theta)`` with theta of shape
    (C, E // G, *k) initialised Kaiming-uniform (a = sqrt(5)), then ``iterations`` updates of
    :func:`~nnunet_deconver.ndc.functional.ndc`. The arguments are checked here, once: the
    forward pass runs the updates (:func:`~nnunet_deconver.ndc.functional.run_updates`) unchecked.

    Args:
        channels: input channels C.
        kernel_size: odd filter size, one per spatial axis (2 or 3 entries, e.g. (1, 3, 3)); its
            length is the layer's dimensionality.
        ratio: source channel ratio R, E = R * C.
        groups: number of groups G (None: G = C).
        eps: stabiliser of the update.
        iterations: number of multiplicative updates.
        memory_efficient: the backends' operator (True: as :func:`~nnunet_deconver.ndc.functional.ndc`,
            which also applies the ReLU of S0 inside the update) or the plain graph (False: as
            :func:`~nnunet_deconver.ndc.functional.ndc_reference`).

    Raises:
        ValueError: a kernel size that is not one odd size per axis of 2 or 3 axes, groups that do
            not divide C and E, ``ratio`` or ``iterations`` < 1.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: Sequence[int],
        ratio: int = 4,
        groups: int | None = None,
        eps: float = 1e-8,
        iterations: int = 1,
        memory_efficient: bool = True,
    ):
        super().__init__()
        if isinstance(kernel_size, int) or len(kernel_size) not in (2, 3):
            raise ValueError(f"NDC kernel_size needs one entry per spatial axis (2 or 3), got {kernel_size}")
        kernel_size = tuple(kernel_size)
        check_kernel_size(kernel_size)
        check_iterations(iterations)
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
        self.init = pointwise_conv(len(kernel_size), channels, sources, bias=True, channels_last=memory_efficient)
        self.weight = nn.Parameter(torch.empty(channels, sources // groups, *kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, *S), nonnegative -> (B, E, *S)."""
        if self.memory_efficient:
            # s0 is born in the layout the update runs in, so the update copies no (B, E, *S) tensor.
            x = in_preferred_layout(x)
        return run_updates(x, self.init(x), torch.relu(self.weight), self.groups, self.eps, self.iterations,
                           rectify_s0=True, fused=self.memory_efficient)

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, {self.sources}, kernel_size={self.kernel_size}, groups={self.groups}, "
            f"iterations={self.iterations}, memory_efficient={self.memory_efficient}"
        )
