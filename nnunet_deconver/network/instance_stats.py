"""Instance normalisation for slabs: statistics of the whole volume, normalisation per slab.

``IN(x) = (x - mean) * rstd`` with per (batch element, channel) ``mean`` and biased variance
``var`` over S, ``rstd = (var + eps)^(-1/2)``: what ``torch.nn.InstanceNorm2d`` / ``3d`` compute
without running statistics (a scale and shift, when affine, are applied after, by the caller).

A lean block normalises slab by slab inside its recomputed part and keeps no normalised tensor for
backward. Autograd would then sum the norm's input gradient from per-slab parts and a statistics
part, each of which can be far larger than the sum (they cancel where ``var`` is small), and under
half-precision autocast that partial sum overflows. So the gradient takes another road:
:func:`normalized_anchor` returns a zero tensor that costs no memory (one element, expanded); each
slab adds the matching slab of it to its normalised values, computed without autograd. The slabs'
gradients w.r.t. the normalised tensor gather on the anchor (in float32), and its backward applies
the whole instance norm's backward at once::

    dL/dx = rstd * (g - mean_S(g) - xhat * mean_S(g * xhat)),   xhat = (x - mean) * rstd

keeping only ``x`` (in its own dtype: under autocast the half-precision input, no float32 copy).
"""

from __future__ import annotations

import torch


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32, or float64 for float64 ``x``."""
    return torch.promote_types(x.dtype, torch.float32)


@torch.no_grad()
def instance_stats(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, rstd) of x (B, C, *S) over S, each (B, C, 1, ...), in :func:`compute_dtype`; no autograd."""
    with torch.autocast(x.device.type, enabled=False):
        var, mean = torch.var_mean(x.to(compute_dtype(x)), dim=tuple(range(2, x.dim())), keepdim=True, correction=0)
        return mean, (var + eps).rsqrt()


class _NormalizedAnchor(torch.autograd.Function):
    """x -> zeros of x's shape (one expanded element); backward: the instance norm's input gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, mean, rstd)
        return mean.new_zeros((1,) * x.dim()).expand(x.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, mean, rstd = ctx.saved_tensors
        dims = tuple(range(2, x.dim()))
        with torch.autocast(x.device.type, enabled=False):
            grad = grad.to(mean.dtype).contiguous()
            xhat = (x.to(mean.dtype) - mean).mul_(rstd).contiguous()  # the one work tensor of x's size
            rows, n = mean.numel(), xhat[0, 0].numel()
            projection = torch.bmm(grad.view(rows, 1, n), xhat.view(rows, n, 1)).view(mean.shape).div_(n)
            out = xhat.mul_(projection.neg_()).add_(grad).sub_(grad.mean(dims, keepdim=True)).mul_(rstd)
            return out.to(x.dtype), None, None


def normalized_anchor(x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor) -> torch.Tensor:
    """Zeros of x's shape, in mean's dtype, through which the normalised tensor's gradient reaches x.

    x (B, C, *S); mean and rstd of :func:`instance_stats`. Add a slab of it to that slab's
    :func:`normalize` (which builds no graph).
    """
    return _NormalizedAnchor.apply(x, mean, rstd)


def normalize(x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor) -> torch.Tensor:
    """``(x - mean) * rstd`` in mean's dtype, without autograd; x (B, C, *S') a slab or the volume."""
    with torch.no_grad():
        return (x.to(mean.dtype) - mean).mul_(rstd)
