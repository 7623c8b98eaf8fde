"""The Deconver U-Net: encoder and decoder of Deconver stages, nnU-Net style arguments.

Encoder: stem conv (k = 3, no bias) in -> C0, stage 0; every further level l downsamples with a
strided conv (kernel = stride = strides[l], bias) C_{l-1} -> C_l, then a stage. Decoder, from the
deepest level up: transposed conv (kernel = stride = strides[l+1], bias) C_{l+1} -> C_l,
concatenation [skip, up], stage 2 C_l -> C_l. Head: pointwise conv C0 -> outputs.

With deep supervision the decoder also has a pointwise head at every other decoder level and
returns one output per decoder stage, highest resolution first, as nnU-Net expects. The auxiliary
heads exist only in a network built with ``deep_supervision=True``; a network built without them
ignores their weights when loading a checkpoint (nnU-Net's predictor builds without them).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Sequence

import torch
from dynamic_network_architectures.building_blocks.helper import (
    convert_dim_to_conv_op,
    get_matching_convtransp,
)
from torch import nn
from torch.utils.checkpoint import checkpoint

from nnunet_deconver.ndc.module import pointwise_conv
from nnunet_deconver.ndc.ops import in_preferred_layout, preferred_memory_format
from nnunet_deconver.network.blocks import BlockConfig, BlockSpec, DeconverBlock, DeconverStage, instance_norm
from nnunet_deconver.network.cpu_memory import release_cpu_memory, reusing_cpu_memory

IntOrSeq = int | Sequence[int]


@dataclass(frozen=True)
class Level:
    """One resolution level l of the U-Net, per-axis tuples (normalised once, by :class:`Deconver`).

    Attributes:
        channels: width C_l of the level's stages.
        kernel_size: NDC kernel k_l of the level's stages, one odd size per spatial axis.
        stride: the downsampling into the level, per axis (ones at level 0).
    """

    channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]

    def block(self, config: BlockConfig) -> BlockSpec:
        """The spec of the level's Deconver blocks."""
        return BlockSpec(self.channels, self.kernel_size, config)


class _ContiguousOutput(torch.autograd.Function):
    """``x.contiguous()``, whose backward hands the gradient on in x's own (preferred) layout, so
    that the gradient of a channels-last network stays channels-last."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.memory_format = preferred_memory_format(x)
        return x.contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        if ctx.memory_format == torch.preserve_format:
            return grad
        return grad.contiguous(memory_format=ctx.memory_format)


def _per_axis(value: IntOrSeq, spatial_dims: int) -> tuple[int, ...]:
    return (value,) * spatial_dims if isinstance(value, int) else tuple(int(v) for v in value)


def _run_stage(stage: nn.Module, inputs: tuple[torch.Tensor, ...], use_checkpoint: bool) -> torch.Tensor:
    if use_checkpoint and torch.is_grad_enabled():
        return checkpoint(stage, *inputs, use_reentrant=False)
    return stage(*inputs)


class DeconverEncoder(nn.Module):
    """(B, in, *S) -> list of skips, level l of shape (B, C_l, *S / prod(strides[:l+1])).

    Args:
        input_channels: image channels.
        levels: the resolution levels, full resolution first.
        stem_kernel_size: kernel of the stem convolution, one per spatial axis.
        config: the settings of every block.
        checkpoint_levels: levels whose stages recompute activations in backward.

    A decoder takes its geometry from here: ``levels``, ``spatial_dims`` and ``checkpoint_levels``.
    """

    def __init__(
        self,
        input_channels: int,
        levels: Sequence[Level],
        stem_kernel_size: tuple[int, ...],
        config: BlockConfig,
        checkpoint_levels: Sequence[int] = (),
    ):
        super().__init__()
        self.levels = tuple(levels)
        self.spatial_dims = len(self.levels[0].kernel_size)
        self.checkpoint_levels = set(checkpoint_levels)
        conv = convert_dim_to_conv_op(self.spatial_dims)
        self.stem = conv(
            input_channels, self.levels[0].channels, stem_kernel_size,
            padding=[k // 2 for k in stem_kernel_size], bias=False,
        )
        self.downsamples = nn.ModuleList(
            [nn.Identity()]
            + [conv(above.channels, level.channels, level.stride, stride=level.stride, bias=True)
               for above, level in zip(self.levels, self.levels[1:])]
        )
        self.stages = nn.ModuleList(DeconverStage(level.channels, level.block(config)) for level in self.levels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        # PyTorch's CPU convolutions return the contiguous layout at batch 1 (and for a one-channel
        # input, which is contiguous and channels-last at once): their outputs are put back
        x = in_preferred_layout(self.stem(x))
        for level, (down, stage) in enumerate(zip(self.downsamples, self.stages)):
            x = _run_stage(stage, (in_preferred_layout(down(x)),), level in self.checkpoint_levels)
            skips.append(x)
        return skips


class DeconverDecoder(nn.Module):
    """Encoder skips -> logits (B, outputs, *S), or a list of them (deep supervision).

    The geometry (levels, dimensionality, checkpointed levels) is the encoder's; the encoder is read
    when building, not kept (its parameters are the encoder's own, not the decoder's).
    """

    def __init__(self, encoder: DeconverEncoder, num_classes: int, config: BlockConfig, deep_supervision: bool):
        super().__init__()
        levels, dims = encoder.levels, encoder.spatial_dims
        transp = get_matching_convtransp(dimension=dims)
        order = range(len(levels) - 2, -1, -1)  # deepest decoder level first
        self.upsamples = nn.ModuleList(
            transp(levels[l + 1].channels, levels[l].channels, levels[l + 1].stride, stride=levels[l + 1].stride,
                   bias=True)
            for l in order
        )
        self.stages = nn.ModuleList(DeconverStage(2 * levels[l].channels, levels[l].block(config)) for l in order)
        self.head = pointwise_conv(dims, levels[0].channels, num_classes, bias=True)
        # auxiliary heads for decoder levels 1 .. L-2, deepest first (only when built for it)
        self.aux_heads = nn.ModuleList(
            pointwise_conv(dims, levels[l].channels, num_classes, bias=True)
            for l in order if l > 0
        ) if deep_supervision else nn.ModuleList()
        self._deep_supervision = deep_supervision
        self.checkpoint_levels = set(encoder.checkpoint_levels)
        self._register_load_state_dict_pre_hook(self._drop_absent_aux_heads)

    @property
    def deep_supervision(self) -> bool:
        return self._deep_supervision

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        if enabled and len(self.aux_heads) != len(self.stages) - 1:
            raise RuntimeError("this Deconver was built without deep supervision heads (deep_supervision=False)")
        self._deep_supervision = bool(enabled)

    def _drop_absent_aux_heads(self, state_dict, prefix, *args) -> None:
        if len(self.aux_heads) == 0:
            for key in [k for k in state_dict if k.startswith(prefix + "aux_heads.")]:
                del state_dict[key]

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        x = skips[-1]
        outputs = []
        depth = len(self.stages)
        for i, (up, stage) in enumerate(zip(self.upsamples, self.stages)):
            level = depth - 1 - i
            x = _run_stage(stage, (in_preferred_layout(up(x)), skips[level]), level in self.checkpoint_levels)
            if self._deep_supervision and level > 0:
                outputs.append(self.aux_heads[i](x))
        logits = self.head(x)
        if not self._deep_supervision:
            return logits
        return [logits] + outputs[::-1]


class Deconver(nn.Module):
    """Deconver segmentation network (Ashtari et al.), (B, input_channels, *S) -> (B, num_classes, *S).

    Args:
        input_channels: image channels.
        num_classes: output channels (logits).
        spatial_dims: 2 or 3.
        features_per_stage: widths C_l per resolution level (the paper: min(C0 * 2^l, 512)).
        strides: per level, an int or one per axis; strides[0] must be 1 (e.g. [1, [1, 2, 2], 2, 2]).
        kernel_sizes: NDC kernel, one int for every level and axis, or one entry per level, each an
            int or one per axis (odd; e.g. [(1, 3, 3), 3, 3]).
        ratio: NDC source channel ratio R.
        groups: NDC groups (None: G = channels of each stage).
        mlp_ratio: MLP expansion.
        deep_supervision: build auxiliary heads and return one output per decoder stage.
        stem_kernel_size: kernel of the stem convolution.
        memory_efficient: NDC custom autograd (True) or plain graph (False).
        checkpoint_levels: resolution levels whose stages recompute activations in backward.
        norm_affine: learnable scale and shift in every block's two instance norms. The paper's
            structure has none (False, the default); True adds 4 x the sum of all stage widths.
        eps: the NDC update's stabiliser, added to numerator and denominator (the paper's 1e-8).
        iterations: multiplicative updates in every NDC layer (the paper uses one).
        activation_memory: what training keeps for backward. ``"lean"`` (default): each block's
            mixer and MLP run in slabs of the first spatial axis and are recomputed in backward,
            so only C-channel tensors are kept (:mod:`nnunet_deconver.network.tiling`);
            ``"full"``: every intermediate tensor is kept, R*C- and 4C-channel ones included. The
            parameters, state dict and results are the same (a checkpoint of either loads into
            the other). Under ``torch.compile`` too (its min-cut partitioner recomputes the
            checkpointed slabs in backward).
        tile_size: slab thickness of the lean blocks (None: chosen per volume).

    S must be divisible by the product of the strides on each axis.

    Loading a state dict whose blocks have (or lack) instance-norm scale and shift switches this
    network's norms to match, with a warning, so a checkpoint trained with either norm variant
    loads into a network built with the other (see :meth:`match_norms_to_state_dict`).
    """

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        spatial_dims: int,
        features_per_stage: Sequence[int],
        strides: Sequence[IntOrSeq],
        kernel_sizes: IntOrSeq | Sequence[IntOrSeq] = 3,
        ratio: int = 4,
        groups: int | None = None,
        mlp_ratio: int = 4,
        deep_supervision: bool = False,
        stem_kernel_size: IntOrSeq = 3,
        memory_efficient: bool = True,
        checkpoint_levels: Sequence[int] = (),
        norm_affine: bool = False,
        eps: float = 1e-8,
        iterations: int = 1,
        activation_memory: str = "lean",
        tile_size: int | None = None,
    ):
        super().__init__()
        n = len(features_per_stage)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if isinstance(kernel_sizes, int):
            kernel_sizes = [kernel_sizes] * n
        if len(strides) != n or len(kernel_sizes) != n:
            raise ValueError(
                f"features_per_stage, strides and kernel_sizes need one entry per stage ({n}), "
                f"got {len(strides)} strides and {len(kernel_sizes)} kernel sizes"
            )
        strides = [_per_axis(s, spatial_dims) for s in strides]
        kernel_sizes = [_per_axis(k, spatial_dims) for k in kernel_sizes]
        if any(len(k) != spatial_dims for k in (*strides, *kernel_sizes)):
            raise ValueError(f"every stride and kernel size needs {spatial_dims} entries, got {strides} and {kernel_sizes}")
        if any(s != 1 for s in strides[0]):
            raise ValueError(f"the first stage works at full resolution: strides[0] must be 1, got {strides[0]}")
        self.spatial_dims, self.num_classes = spatial_dims, num_classes
        self.features_per_stage, self.strides, self.kernel_sizes = list(features_per_stage), strides, kernel_sizes
        self.config = BlockConfig(ratio=ratio, groups=groups, mlp_ratio=mlp_ratio, norm_affine=norm_affine, eps=eps,
                                  iterations=iterations, memory_efficient=memory_efficient,
                                  activation_memory=activation_memory, tile_size=tile_size)
        levels = [Level(c, k, s) for c, k, s in zip(self.features_per_stage, kernel_sizes, strides)]
        self.encoder = DeconverEncoder(input_channels, levels, _per_axis(stem_kernel_size, spatial_dims), self.config,
                                       checkpoint_levels)
        self.decoder = DeconverDecoder(self.encoder, num_classes, self.config, deep_supervision)
        self._register_load_state_dict_pre_hook(self._match_norms_hook)

    @property
    def norm_affine(self) -> bool:
        """Whether the blocks' instance norms have learnable scale and shift."""
        return self.config.norm_affine

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Contiguous logits (a list of them with deep supervision). Inside, the network runs in
        :func:`~nnunet_deconver.ndc.ops.preferred_memory_format` (channels-last on CPU, where the
        pointwise convolutions, the NDC and the strided convolutions are fastest so, and one layout
        throughout avoids PyTorch's slow conversions between the two). Without gradients on CPU the
        tensors take memory freed before (:mod:`~nnunet_deconver.network.cpu_memory`), kept from
        one forward to the next; a forward with gradients frees it."""
        if torch.is_grad_enabled() and not torch.compiler.is_compiling():
            release_cpu_memory()
        with reusing_cpu_memory(x):
            out = self.decoder(self.encoder(in_preferred_layout(x)))
            if isinstance(out, torch.Tensor):
                return _ContiguousOutput.apply(out)
            return [_ContiguousOutput.apply(o) for o in out]

    def match_norms_to_state_dict(self, state_dict: dict, prefix: str = "") -> bool:
        """Switch every block's norms to the variant ``state_dict`` was saved with.

        Returns True when the norms were switched. A state dict that holds no Deconver block, whose
        blocks disagree among themselves or whose norm widths differ from this network's changes
        nothing (loading then reports the mismatch as usual).
        """
        blocks = [(name, m) for name, m in self.named_modules() if isinstance(m, DeconverBlock)]
        present = [f"{prefix}{name}.mixer.proj_in.weight" in state_dict for name, _ in blocks]
        affine = {f"{prefix}{name}.norm1.weight" in state_dict for (name, _), p in zip(blocks, present) if p}
        if len(affine) != 1 or affine == {self.norm_affine}:
            return False
        (affine,) = affine
        if affine and any(
            tuple(state_dict.get(f"{prefix}{name}.{attr}.{param}", torch.empty(0)).shape) != (block.norm1.num_features,)
            for name, block in blocks for attr in ("norm1", "norm2") for param in ("weight", "bias")
        ):
            return False  # another structure: loading reports the mismatch as usual
        for _, block in blocks:
            reference = block.mixer.proj_in.weight
            for attr in ("norm1", "norm2"):
                old = getattr(block, attr)
                setattr(block, attr, instance_norm(old.num_features, self.spatial_dims, affine).to(reference))
        self.config = replace(self.config, norm_affine=affine)
        return True

    def _match_norms_hook(self, state_dict, prefix, *args) -> None:
        if self.match_norms_to_state_dict(state_dict, prefix):
            warnings.warn(
                f"the checkpoint's Deconver blocks have {'affine' if self.norm_affine else 'non-affine'} instance "
                f"norms; the network was switched to {'norm_affine=True' if self.norm_affine else 'norm_affine=False'} "
                "to load it",
                stacklevel=2,
            )
