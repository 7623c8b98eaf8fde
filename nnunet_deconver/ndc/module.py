"""The NDC layer: learned nonnegative initialisation, rectified filter, multiplicative update."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from nnunet_deconver.ndc.functional import ndc, ndc_reference
from nnunet_deconver.ndc.ops import check_kernel_size, preferred_memory_format


def conv_class(spatial_dims: int) -> type[nn.Module]:
    """``nn.Conv2d`` or ``nn.Conv3d`` for 2 or 3 spatial dimensions."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


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
        memory_efficient: use the custom autograd function (True) or the plain graph (False).
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
        self.init = conv_class(len(kernel_size))(channels, sources, 1, bias=True)
        self.weight = nn.Parameter(torch.empty(channels, sources // groups, *kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, *S), nonnegative -> (B, E, *S)."""
        if self.memory_efficient:
            # s0 is born in the layout the update runs in, so ndc() copies no (B, E, *S) tensor.
            x = x.contiguous(memory_format=preferred_memory_format(x))
        s0 = torch.relu(self.init(x))
        update = ndc if self.memory_efficient else ndc_reference
        return update(x, s0, torch.relu(self.weight), self.groups, self.eps, self.iterations)

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, {self.sources}, kernel_size={self.kernel_size}, groups={self.groups}, "
            f"iterations={self.iterations}, memory_efficient={self.memory_efficient}"
        )
