"""Lean activation memory: a block's wide work computed in spatial tiles, recomputed in backward.

A Deconver block's mixer and MLP widen C channels to R*C and a*C (four times C in the paper) and
back. Autograd would keep those wide tensors for backward, over the whole volume; :func:`tiled`
instead runs a C -> C function one slab of the first spatial axis at a time, under PyTorch's
non-reentrant activation checkpointing, so that

- backward keeps only the function's C-channel input (and its parameters) from forward;
- the wide tensors of one slab exist at a time, in forward and again when backward recomputes
  them, slab by slab.

A function whose output at a voxel depends on its input within ``halo`` voxels along the first
spatial axis (the NDC: ``2 * (k // 2)`` per update, one ``k // 2`` per convolution) gets each slab
with ``halo`` extra voxels per side, and keeps only the slab's own voxels of the result. Away from
the volume's faces those extra voxels are real data, so the result equals the function applied to
the whole volume: the convolutions' zero padding then acts at the volume's faces only. The result
and every gradient are those of the function on the whole volume, up to the order of summation.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint

from nnunet_deconver.ndc.ops import channels_innermost, channels_last_format


#: slabs per volume when the tile thickness is chosen automatically for training
TILES = 8
#: a batch of at most this many voxels (batch size times prod(S)) is not cut: slabs would only add
#: overhead
MIN_TILED_VOXELS = 16 * 1024
#: without gradients nothing is kept for backward and nothing is recomputed: slabs then only bound
#: the wide tensors of the moment, and each slab holds up to this many voxels (a 64^3 patch at
#: batch 4 in one piece), so that few slabs, and few recomputed borders, are made
MAX_SLAB_VOXELS_WITHOUT_GRAD = 1024 * 1024


def tile_thickness(extent: int, voxels: int, halo: int, grad: bool = True,
                   max_voxels_without_grad: int | None = None) -> int:
    """Slab thickness along an axis of ``extent`` voxels, in a volume of ``voxels`` voxels.

    With gradients (``grad``), about ``extent / TILES``, the whole extent when the volume is small
    (:data:`MIN_TILED_VOXELS`); without, the fewest slabs of at most ``max_voxels_without_grad``
    voxels each (None: :data:`MAX_SLAB_VOXELS_WITHOUT_GRAD`). At least ``4 * halo`` either way, so
    that the recomputed border is at most half the slab.
    """
    if grad:
        if voxels <= MIN_TILED_VOXELS:
            return extent
        tiles = TILES
    else:
        tiles = math.ceil(voxels / (max_voxels_without_grad or MAX_SLAB_VOXELS_WITHOUT_GRAD))
    return min(extent, max(math.ceil(extent / tiles), 4 * halo, 1))


def slabs(extent: int, thickness: int, halo: int) -> list[tuple[int, int, int, int]]:
    """``(start, length, keep_from, keep_length)`` of each slab along an axis of ``extent`` voxels.

    Slab i covers ``[i * thickness, (i + 1) * thickness)`` (the last one shorter), widened by
    ``halo`` per side within the axis; ``keep_from`` and ``keep_length`` locate the slab's own
    voxels in the widened one.
    """
    if thickness < 1 or halo < 0:
        raise ValueError(f"thickness must be >= 1 and halo >= 0, got {thickness} and {halo}")
    out = []
    for begin in range(0, extent, thickness):
        end = min(begin + thickness, extent)
        lo, hi = max(0, begin - halo), min(extent, end + halo)
        out.append((lo, hi - lo, begin - lo, end - begin))
    return out


class _Crop(torch.autograd.Function):
    """``x.narrow(2, start, length)``, whose gradient keeps the incoming gradient's layout.

    PyTorch's own backward of a slice builds a contiguous zero tensor, so a channels-last gradient
    would come out contiguous and every later operation would mix the two layouts (slowly).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, start: int, length: int) -> torch.Tensor:
        ctx.extent, ctx.start, ctx.length = x.shape[2], start, length
        return x.narrow(2, start, length)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        shape = (*grad.shape[:2], ctx.extent, *grad.shape[3:])
        memory_format = channels_last_format(grad.dim()) if channels_innermost(grad) else torch.contiguous_format
        full = torch.empty(shape, dtype=grad.dtype, device=grad.device, memory_format=memory_format)
        end = ctx.start + ctx.length
        full.narrow(2, 0, ctx.start).zero_()
        full.narrow(2, end, ctx.extent - end).zero_()
        full.narrow(2, ctx.start, ctx.length).copy_(grad)
        return full, None, None


def _slab(fn: Callable[[torch.Tensor], torch.Tensor], keep_from: int, keep_length: int,
          *pieces: torch.Tensor) -> torch.Tensor:
    """fn(slab), cropped to the slab's own voxels; the slab given as its pieces of one split."""
    x = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2)
    y = fn(x)
    return y if keep_length == y.shape[2] else _Crop.apply(y, keep_from, keep_length)


def _cuts(extent: int, parts: list[tuple[int, int, int, int]]) -> list[int]:
    """Where to split an axis so that every slab is a run of whole pieces: the slabs' ends."""
    return sorted({0, extent} | {start for start, *_ in parts} | {start + length for start, length, *_ in parts})


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, halo: int,
          thickness: int | None = None) -> torch.Tensor:
    """``fn(x)`` computed slab by slab along the first spatial axis, recomputed in backward.

    Args:
        fn: (B, C, *S') -> (B, C_out, *S'), shape-preserving in S, whose output at a voxel depends
            on its input within ``halo`` voxels along the first spatial axis (and anywhere along
            the others).
        x: (B, C, *S), S = (H, W) or (D, H, W).
        halo: that dependence range (0 for a pointwise function).
        thickness: slab thickness; None chooses it (:func:`tile_thickness`).

    Returns:
        (B, C_out, *S), ``fn(x)``. With gradients enabled each slab is an activation checkpoint:
        backward keeps ``x`` and recomputes the slab's intermediate tensors.
    """
    extent = x.shape[2]
    grad = torch.is_grad_enabled()
    if thickness is None:
        thickness = tile_thickness(extent, x.shape[0] * math.prod(x.shape[2:]), halo, grad)
    parts = slabs(extent, thickness, halo)
    # each slab is a run of pieces of one split: backward gathers x's gradient in one tensor
    cuts = _cuts(extent, parts)
    pieces = x.split([b - a for a, b in zip(cuts, cuts[1:])], dim=2)
    outs = []
    for start, length, keep_from, keep_length in parts:
        own = pieces[cuts.index(start):cuts.index(start + length)]
        if grad:
            outs.append(checkpoint(_slab, fn, keep_from, keep_length, *own, use_reentrant=False))
        else:
            outs.append(_slab(fn, keep_from, keep_length, *own))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
