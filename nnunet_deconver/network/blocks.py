"""Building blocks of Deconver: Deconv Mixer, MLP, Deconver block and stage.

Convolution and normalisation classes are chosen by dimensionality
(``dynamic_network_architectures``' helpers), so one class serves 2D and 3D. All tensors are
(B, C, *S) with S = (H, W) or (D, H, W); no block changes S.
"""

from __future__ import annotations

from typing import Sequence

import torch
from dynamic_network_architectures.building_blocks.helper import (
    convert_dim_to_conv_op,
    get_matching_instancenorm,
)
from torch import nn

from nnunet_deconver.ndc import NDC


def pointwise(spatial_dims: int, in_channels: int, out_channels: int, bias: bool) -> nn.Module:
    """A 1x1(x1) convolution."""
    return convert_dim_to_conv_op(spatial_dims)(in_channels, out_channels, 1, bias=bias)


class DeconvMixer(nn.Module):
    """Pointwise conv C -> C (no bias), ReLU, NDC C -> R*C, pointwise conv R*C -> C (bias).

    (B, C, *S) -> (B, C, *S). The ReLU makes the NDC input nonnegative.
    """

    def __init__(
        self,
        channels: int,
        spatial_dims: int,
        kernel_size: int | Sequence[int],
        ratio: int = 4,
        groups: int | None = None,
        memory_efficient: bool = True,
    ):
        super().__init__()
        if isinstance(kernel_size, int):
            kernel_size = (kernel_size,) * spatial_dims
        self.proj_in = pointwise(spatial_dims, channels, channels, bias=False)
        self.ndc = NDC(channels, kernel_size, ratio, groups, memory_efficient=memory_efficient)
        self.proj_out = pointwise(spatial_dims, ratio * channels, channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.ndc(torch.relu(self.proj_in(x))))


class MLP(nn.Module):
    """Pointwise conv C -> a*C, GELU, pointwise conv a*C -> C (both with bias); (B, C, *S) -> same."""

    def __init__(self, channels: int, spatial_dims: int, mlp_ratio: int = 4):
        super().__init__()
        self.fc1 = pointwise(spatial_dims, channels, mlp_ratio * channels, bias=True)
        self.act = nn.GELU()
        self.fc2 = pointwise(spatial_dims, mlp_ratio * channels, channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DeconverBlock(nn.Module):
    """``Z = Mixer(IN(X)) + X; Y = MLP(IN(Z)) + Z`` with affine instance norms; (B, C, *S) -> same."""

    def __init__(
        self,
        channels: int,
        spatial_dims: int,
        kernel_size: int | Sequence[int],
        ratio: int = 4,
        groups: int | None = None,
        mlp_ratio: int = 4,
        memory_efficient: bool = True,
    ):
        super().__init__()
        norm = get_matching_instancenorm(dimension=spatial_dims)
        self.norm1 = norm(channels, affine=True)
        self.mixer = DeconvMixer(channels, spatial_dims, kernel_size, ratio, groups, memory_efficient)
        self.norm2 = norm(channels, affine=True)
        self.mlp = MLP(channels, spatial_dims, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x + self.mixer(self.norm1(x))
        return z + self.mlp(self.norm2(z))


class DeconverStage(nn.Module):
    """A pointwise conv (no bias) when the input width differs, then one Deconver block.

    (B, in_channels, *S) -> (B, channels, *S).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        spatial_dims: int,
        kernel_size: int | Sequence[int],
        ratio: int = 4,
        groups: int | None = None,
        mlp_ratio: int = 4,
        memory_efficient: bool = True,
    ):
        super().__init__()
        self.adapt = (
            nn.Identity() if in_channels == channels else pointwise(spatial_dims, in_channels, channels, bias=False)
        )
        self.block = DeconverBlock(channels, spatial_dims, kernel_size, ratio, groups, mlp_ratio, memory_efficient)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.adapt(x))
