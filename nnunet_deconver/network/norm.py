"""Instance normalisation in any memory layout, right at every batch size.

On CPU the network runs channels-last (:class:`~nnunet_deconver.network.unet.Deconver`), and
PyTorch's CPU ``instance_norm`` handles that badly: its forward copies a channels-last input to
the contiguous layout (a slow transposition), and its backward is wrong for a channels-last
incoming gradient when the batch holds one sample (torch 2.14.1: more than 100% off, 2D and 3D,
with or without affine parameters; batch 2 is right). The norms here compute instance norm from
:func:`instance_stats` and :func:`normalise`, elementwise operations and reductions that keep
the input's layout and are right for every batch size. The parameters and state dicts are
``nn.InstanceNorm2d`` / ``3d``'s.

The lean blocks normalise slab by slab (:mod:`nnunet_deconver.network.tiling`) with whole-volume
statistics from :func:`instance_stats`, whose backward keeps only the norm's input, and
:func:`normalise`.
"""

from __future__ import annotations

import torch
from torch import nn

from nnunet_deconver.ndc.ops import channels_innermost, channels_last_format, voxel_rows

#: elements of one chunk of the chunked passes over a channels-last map (1 MB in float32): the
#: chunk's temporary stays in the cache, and no temporary of the map's size is made
CHUNK_ELEMENTS = 1 << 18


class _InstanceNorm:
    """Forward of an instance norm module computed by :func:`instance_stats` and :func:`normalise`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalise(x, *instance_stats(x, self.eps), self)


class InstanceNorm2d(_InstanceNorm, nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` computed in the input's layout (see the module docstring)."""


class InstanceNorm3d(_InstanceNorm, nn.InstanceNorm3d):
    """``nn.InstanceNorm3d`` computed in the input's layout (see the module docstring)."""


def instance_norm(channels: int, spatial_dims: int, affine: bool) -> nn.Module:
    """Instance normalisation over S of (B, channels, *S), with or without learnable scale and shift."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    return (InstanceNorm2d if spatial_dims == 2 else InstanceNorm3d)(channels, affine=affine)


class _InstanceStats(torch.autograd.Function):
    """(B, C, *S) -> (mean, rstd), each (B, C, 1, ...) in float32 (float64 for float64 input).

    ``mean = sum_S x / N`` and ``rstd = (sum_S (x - mean)^2 / N + eps)^(-1/2)``, N = prod(S), the
    biased variance of instance norm. Backward keeps x itself (no copy in another dtype):

        dL/dx = (dL/dmean - dL/drstd * rstd^3 * (x - mean)) / N.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        mean, rstd = moments(x, eps)
        ctx.save_for_backward(x, mean, rstd)
        return mean, rstd

    @staticmethod
    def backward(ctx, grad_mean: torch.Tensor, grad_rstd: torch.Tensor):
        x, mean, rstd = ctx.saved_tensors
        n = x[0, 0].numel()
        scale = grad_rstd * rstd.pow(3) / -n
        grad = (x.to(mean.dtype) - mean).mul_(scale).add_(grad_mean / n)  # a new tensor: x stays untouched
        return grad.to(x.dtype), None


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def row_tiles(x: torch.Tensor, rows: int) -> list[tuple[int, int, int]]:
    """(sample, first row, end row) of each tile of ``rows`` rows of :func:`~nnunet_deconver.ndc.ops.voxel_rows`
    of x (B, C, *S); no tile spans two samples."""
    voxels = x[0, 0].numel()
    step = max(1, min(voxels, rows))
    return [(b, b * voxels + start, b * voxels + min(voxels, start + step))
            for b in range(x.shape[0]) for start in range(0, voxels, step)]


def _dense_channels_last(x: torch.Tensor) -> bool:
    return x.dim() in (4, 5) and x.is_contiguous(memory_format=channels_last_format(x.dim()))


def moments(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance norm's mean and rstd of x (B, C, *S) over S (see :class:`_InstanceStats`), each
    (B, C, 1, ...) in float32 or wider, without autograd. For a dense channels-last x on CPU
    (not being compiled) the variance's centred squares are formed chunk by chunk
    (:data:`CHUNK_ELEMENTS`), so no temporary of x's size is made."""
    axes = tuple(range(2, x.dim()))
    x32 = x.to(_compute_dtype(x))
    if x.device.type == "cpu" and _dense_channels_last(x32) and not torch.compiler.is_compiling():
        batch, channels = x.shape[:2]
        rows = voxel_rows(x32)
        mean = rows.view(batch, -1, channels).mean(dim=1)
        var, buffer = torch.zeros_like(mean), None
        for b, start, end in row_tiles(x, CHUNK_ELEMENTS // channels):
            if buffer is None:
                buffer = rows.new_empty(end - start, channels)
            centred = torch.sub(rows[start:end], mean[b], out=buffer[: end - start])
            var[b] += centred.square_().sum(dim=0)
        shape = (batch, channels) + (1,) * len(axes)
        mean, var = mean.view(shape), var.div_(x[0, 0].numel()).view(shape)
    elif channels_innermost(x):
        # var_mean reduces such a layout 3x slower than two passes of mean
        mean = x32.mean(dim=axes, keepdim=True)
        var = (x32 - mean).square_().mean(dim=axes, keepdim=True)
    else:
        var, mean = torch.var_mean(x32, dim=axes, correction=0, keepdim=True)
    return mean, torch.rsqrt(var + eps)


def add_moments_grad_(grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
                      grad_mean: torch.Tensor, grad_rstd: torch.Tensor) -> None:
    """``grad += dL/dx`` through x's moments (:class:`_InstanceStats`' backward) in place, for
    dense channels-last grad and x of one dtype (that of mean and rstd), chunk by chunk."""
    channels, n = x.shape[1], x[0, 0].numel()
    means, rstds = mean.view(x.shape[:2]), rstd.view(x.shape[:2])
    scales = grad_rstd.view(x.shape[:2]) * rstds.pow(3) / -n
    shifts = grad_mean.view(x.shape[:2]) / n
    rows, grad_rows, buffer = voxel_rows(x), voxel_rows(grad), None
    for b, start, end in row_tiles(x, CHUNK_ELEMENTS // channels):
        if buffer is None:
            buffer = rows.new_empty(end - start, channels)
        centred = torch.sub(rows[start:end], means[b], out=buffer[: end - start])
        grad_rows[start:end].addcmul_(centred, scales[b]).add_(shifts[b])


def instance_stats(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance norm's mean and reciprocal standard deviation of (B, C, *S) over S, each (B, C, 1, ...),
    in float32 or wider; backward keeps only ``x``."""
    return _InstanceStats.apply(x, eps)


def normalise(x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """``norm(x)`` for a part (B, C, *S') of a volume whose statistics over the whole volume are
    ``mean`` and ``rstd`` (:func:`instance_stats`), with ``norm``'s scale and shift if it has them;
    computed in float32 or wider, returned in x's dtype."""
    out = (x.to(mean.dtype) - mean) * rstd
    if norm.weight is not None:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        out = out * norm.weight.view(shape) + norm.bias.view(shape)
    return out.to(x.dtype)
