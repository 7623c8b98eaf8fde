"""Building blocks of Deconver: Deconv Mixer, MLP, Deconver block and stage.

Convolution and normalisation classes are chosen by dimensionality
(``dynamic_network_architectures``' helpers), so one class serves 2D and 3D. All tensors are
(B, C, *S) with S = (H, W) or (D, H, W); no block changes S. What a block is built from travels as
one frozen :class:`BlockSpec`: its width C, its NDC kernel (a tuple with one odd entry per spatial
axis, whose length is the dimensionality; normalised once, by the network) and the settings every
block of a network shares, one frozen :class:`BlockConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from nnunet_deconver.ndc import NDC
from nnunet_deconver.ndc.module import pointwise_conv, pointwise_with
from nnunet_deconver.network.fused_mixer import fused_mixer_applies, norm_mixer_residual
from nnunet_deconver.network.fused_mlp import fused_mlp_applies, norm_mlp_residual
from nnunet_deconver.network.norm import instance_norm, instance_stats, normalise
from nnunet_deconver.network.tiling import tiled

#: the values of ``activation_memory``: what a block keeps for backward
ACTIVATION_MEMORY = ("lean", "full")


@dataclass(frozen=True)
class BlockConfig:
    """Settings shared by every Deconver block of a network.

    Attributes:
        ratio: NDC source channel ratio R (E = R * C).
        groups: NDC groups G (None: G = C, the channels of each stage).
        mlp_ratio: MLP expansion.
        norm_affine: learnable scale and shift in the instance norms. The paper's structure has
            none (PyTorch's ``affine=False``); nnU-Net's own networks use affine norms.
        eps: stabiliser of the NDC update (the paper's 1e-8).
        iterations: multiplicative updates per NDC layer (the paper: 1).
        memory_efficient: NDC custom autograd (True) or plain graph (False).
        activation_memory: ``"lean"``: each block's mixer and MLP run in slabs of the first
            spatial axis and are recomputed in backward, which keeps only C-channel tensors
            (:mod:`nnunet_deconver.network.tiling`); ``"full"``: autograd keeps every
            intermediate tensor. Same parameters, same results.
        tile_size: slab thickness of ``"lean"`` blocks (None: chosen per volume).
    """

    ratio: int = 4
    groups: int | None = None
    mlp_ratio: int = 4
    norm_affine: bool = False
    eps: float = 1e-8
    iterations: int = 1
    memory_efficient: bool = True
    activation_memory: str = "lean"
    tile_size: int | None = None

    def __post_init__(self) -> None:
        if self.activation_memory not in ACTIVATION_MEMORY:
            raise ValueError(f"activation_memory must be one of {', '.join(map(repr, ACTIVATION_MEMORY))}, "
                             f"got {self.activation_memory!r}")
        if self.tile_size is not None and self.tile_size < 1:
            raise ValueError(f"tile_size must be >= 1 or None, got {self.tile_size}")
        if self.ratio < 1 or self.mlp_ratio < 1:
            raise ValueError(f"ratio and mlp_ratio must be >= 1, got {self.ratio} and {self.mlp_ratio}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not self.eps > 0:
            raise ValueError(f"eps must be positive, got {self.eps}")


@dataclass(frozen=True)
class BlockSpec:
    """What one Deconver block is built from.

    Attributes:
        channels: width C of the block (input and output).
        kernel_size: NDC kernel, one odd size per spatial axis (e.g. (1, 3, 3)).
        config: the settings shared by every block of the network.
    """

    channels: int
    kernel_size: tuple[int, ...]
    config: BlockConfig = BlockConfig()

    @property
    def spatial_dims(self) -> int:
        """2 or 3: the length of the kernel size."""
        return len(self.kernel_size)


class DeconvMixer(nn.Module):
    """Pointwise conv C -> C (no bias), ReLU, NDC C -> R*C, pointwise conv R*C -> C (bias).

    (B, C, *S) -> (B, C, *S). The ReLU makes the NDC input nonnegative. On CPU everything runs
    channels-last, like the network's residual stream (pointwise convs as matrix products, see
    :func:`~nnunet_deconver.ndc.module.pointwise_conv`).
    """

    def __init__(self, spec: BlockSpec):
        super().__init__()
        channels, config = spec.channels, spec.config
        self.proj_in = pointwise_conv(spec.spatial_dims, channels, channels, bias=False)
        self.ndc = NDC(channels, spec.kernel_size, config.ratio, config.groups, eps=config.eps,
                       iterations=config.iterations, memory_efficient=config.memory_efficient)
        self.proj_out = pointwise_conv(spec.spatial_dims, config.ratio * channels, channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # not in place: a ReLU in place on the matrix product's channels-last view makes autograd
        # rebuild that gradient contiguous, and every later operation then mixes layouts (slowly)
        return self.proj_out(self.ndc(torch.relu(self.proj_in(x))))


class MLP(nn.Module):
    """Pointwise conv C -> a*C, GELU, pointwise conv a*C -> C (both with bias); (B, C, *S) -> same."""

    def __init__(self, channels: int, spatial_dims: int, mlp_ratio: int = 4):
        super().__init__()
        self.fc1 = pointwise_conv(spatial_dims, channels, mlp_ratio * channels, bias=True)
        self.act = nn.GELU()
        self.fc2 = pointwise_conv(spatial_dims, mlp_ratio * channels, channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Channels-last on CPU (pointwise convs as matrix products), output included."""
        return self.fc2(self.act(self.fc1(x)))


def _normalised(norm: nn.Module, fn: nn.Module, mean: torch.Tensor, rstd: torch.Tensor,
                x: torch.Tensor) -> torch.Tensor:
    """``fn(norm(x))`` for a slab x of a volume whose statistics are ``mean`` and ``rstd``."""
    return fn(normalise(x, mean, rstd, norm))


class DeconverBlock(nn.Module):
    """``Z = Mixer(IN(X)) + X; Y = MLP(IN(Z)) + Z``; (B, C, *S) -> same.

    IN is instance normalisation, without learnable parameters unless ``spec.config.norm_affine``.
    With ``activation_memory="lean"`` each norm's statistics are taken over the whole volume
    (:func:`~nnunet_deconver.network.norm.instance_stats`), and the normalisation with the mixer, or
    with the MLP, runs tiled and recomputed in backward
    (:func:`~nnunet_deconver.network.tiling.tiled`): backward keeps X and Z only. The mixer's slabs
    overlap by its NDC's reach along the first spatial axis, ``iterations * 2 * (k // 2)``. On CPU
    (float32/64, norms without scale and shift) both halves run fused instead, keeping X and Z only:
    the first in slabs whose NDC computes the slab's own planes alone, nothing recomputed but the
    projections in backward (:mod:`~nnunet_deconver.network.fused_mixer`; one NDC update, C++
    kernels), the second in row tiles, norm, MLP and residual in one pass
    (:mod:`~nnunet_deconver.network.fused_mlp`), without gradients written over the block's own
    intermediate map Z (never over X).
    """

    def __init__(self, spec: BlockSpec):
        super().__init__()
        dims, affine = spec.spatial_dims, spec.config.norm_affine
        self.norm1 = instance_norm(spec.channels, dims, affine)
        self.mixer = DeconvMixer(spec)
        self.norm2 = instance_norm(spec.channels, dims, affine)
        self.mlp = MLP(spec.channels, dims, spec.config.mlp_ratio)
        self.lean = spec.config.activation_memory == "lean"
        self.tile_size = spec.config.tile_size
        self.mixer_halo = spec.config.iterations * 2 * (spec.kernel_size[0] // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.lean:
            z = x + self.mixer(self.norm1(x))
            return z + self.mlp(self.norm2(z))
        if fused_mixer_applies(x, self.norm1, self.mixer):
            z = norm_mixer_residual(x, self.norm1.eps, self.mixer, self.tile_size)
        else:
            stats = instance_stats(x, self.norm1.eps)
            z = x + tiled(partial(_normalised, self.norm1, self.mixer, *stats), x, self.mixer_halo, self.tile_size)
        if fused_mlp_applies(z, self.norm2):  # z is this block's own: without gradients Y takes its memory
            return norm_mlp_residual(z, self.norm2.eps, self.mlp.fc1, self.mlp.fc2, not torch.is_grad_enabled())
        stats = instance_stats(z, self.norm2.eps)
        return z + tiled(partial(_normalised, self.norm2, self.mlp, *stats), z, 0, self.tile_size)


class DeconverStage(nn.Module):
    """A pointwise conv (no bias) when the input width differs, then one Deconver block.

    (B, in_channels, *S) -> (B, spec.channels, *S). A decoder stage's input is the concatenation
    ``[skip, up]`` along the channels; ``forward(up, skip)`` computes the pointwise conv of it as the
    sum of its weight's two halves applied to ``skip`` and ``up`` (without gradients, the second
    added in place to the first), so the concatenated map is never made (nor kept for backward:
    the skip is kept anyway, by the encoder's downsampling).
    """

    def __init__(self, in_channels: int, spec: BlockSpec):
        super().__init__()
        self.adapt = nn.Identity() if in_channels == spec.channels else pointwise_conv(
            spec.spatial_dims, in_channels, spec.channels, bias=False)
        self.block = DeconverBlock(spec)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is None:
            return self.block(self.adapt(x))
        c = skip.shape[1]
        weight = self.adapt.weight
        merged, up = pointwise_with(self.adapt, skip, weight[:, :c]), pointwise_with(self.adapt, x, weight[:, c:])
        # without gradients summed in place, no third map (with them, autograd would copy the
        # gradient of an in-place sum on the products' channels-last views across layouts)
        return self.block(merged + up if torch.is_grad_enabled() else merged.add_(up))
