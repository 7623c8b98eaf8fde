"""The lean block's second half, ``z + MLP(IN(z))``, on CPU in row tiles: no (B, a*C, *S) tensor.

For a channels-last map z (B, C, *S), seen per sample b as the matrix Z_b (S, C) of its voxels,
its instance-norm statistics mean_b, rstd_b (C,) over the whole volume (computed here, see
:func:`~nnunet_deconver.network.norm.moments`), and the MLP's pointwise
convolutions W1 (H, C), b1 (H,), W2 (C, H), b2 (C,)::

    N = (Z_b - mean_b) * rstd_b,   A = N W1^T + b1,   Y_b = Z_b + GELU(A) W2^T + b2

(GELU exact, with erf), computed for TILE_ELEMENTS // H rows at a time: a tile's hidden values
(4 MB in float32) stay in the caches between the two matrix products and GELU, in buffers reused
from tile to tile, so neither the normalised map nor the (S, H) hidden tensors exist whole. A tile's
output rows depend on its own rows of z alone (and the statistics), so without gradients Y may be
written over z (``overwrite``): no new memory for the block's output.
Backward keeps z (kept anyway, by the mixer's residual) and recomputes each tile; for the
upstream gradient G::

    dW2 += G_t^T GELU(A_t),   dA_t = (G_t W2) * GELU'(A_t),   dW1 += dA_t^T N_t,   db1 += sum dA_t,
    dN_t = dA_t W1,   dZ_t = G_t + dN_t * rstd_b,   dmean_b -= rstd_b * sum dN_t,
    drstd_b += sum dN_t * (Z_t - mean_b),   db2 = sum G

(sums over the tile's rows); the gradients of mean and rstd are then added to dZ in place
(:func:`~nnunet_deconver.network.norm.add_moments_grad_`), with no tensor of z's size for them. Unlike the slab checkpoints of
:func:`~nnunet_deconver.network.tiling.tiled`, nothing runs twice in the forward direction. The
products run on PyTorch's matrix kernels, one call per tile and product.
"""

from __future__ import annotations

import torch
from torch import nn

from nnunet_deconver.ndc.ops import in_preferred_layout, voxel_rows
from nnunet_deconver.network.norm import add_moments_grad_, moments, row_tiles

#: hidden values per tile: 2^20 (4 MB in float32; on a 2-core CPU with 2 MB of L2 per core these
#: fewer, longer calls of the matrix products and GELU measured faster than 1 MB tiles, forward and
#: backward)
TILE_ELEMENTS = 1 << 20


def _channels_last_empty(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised channels-last tensor of x's shape."""
    return x.new_empty((x.shape[0], *x.shape[2:], x.shape[1])).movedim(-1, 1)


def _tiles(x: torch.Tensor, hidden: int) -> list[tuple[int, int, int]]:
    """(sample, first row, end row) of each row tile of x's rows; no tile spans two samples."""
    return row_tiles(x, TILE_ELEMENTS // hidden)


def _forward(z: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor,
             w2: torch.Tensor, b2: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Y (module docstring) of a channels-last z with its statistics, into the channels-last ``out``
    (z itself allowed)."""
    rows, out_rows, means, rstds = voxel_rows(z), voxel_rows(out), mean.view(z.shape[:2]), rstd.view(z.shape[:2])
    tiles = _tiles(z, w1.shape[0])
    size = max(end - start for _, start, end in tiles)
    normed_buffer, hidden_buffer = z.new_empty(size, z.shape[1]), z.new_empty(size, w1.shape[0])
    for b, start, end in tiles:
        normed, hidden = normed_buffer[: end - start], hidden_buffer[: end - start]
        torch.sub(rows[start:end], means[b], out=normed).mul_(rstds[b])
        torch.addmm(b1, normed, w1.t(), out=hidden)
        torch.ops.aten.gelu_(hidden)
        # the residual and bias first, then the product added to them: one pass over the tile's
        # output fewer than the product with its bias, then the residual
        result = torch.add(rows[start:end], b2, out=out_rows[start:end])
        torch.addmm(result, hidden, w2.t(), out=result)  # not addmm_: FLOP counters know addmm alone
    return out


class _NormMLPResidual(torch.autograd.Function):
    """The module docstring's tiled ``z + MLP(IN(z))``; z channels-last -> channels-last."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, eps: float, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                b2: torch.Tensor) -> torch.Tensor:
        given, z = z, in_preferred_layout(z)
        mean, rstd = moments(z, eps)
        ctx.save_for_backward(given, mean, rstd, w1, b1, w2)  # z as given: a layout copy is not kept
        return _forward(z, mean, rstd, w1, b1, w2, b2, _channels_last_empty(z))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        z, mean, rstd, w1, b1, w2 = ctx.saved_tensors
        z = in_preferred_layout(z)
        rows, grad_rows = voxel_rows(z), voxel_rows(in_preferred_layout(grad))
        means, rstds = mean.view(z.shape[:2]), rstd.view(z.shape[:2])
        grad_z = _channels_last_empty(z)
        grad_z_rows = voxel_rows(grad_z)
        grad_mean, grad_rstd = torch.zeros_like(means), torch.zeros_like(rstds)
        grad_w1, grad_b1, grad_w2 = torch.zeros_like(w1), torch.zeros_like(b1), torch.zeros_like(w2)
        tiles = _tiles(z, w1.shape[0])
        size = max(end - start for _, start, end in tiles)
        centred_buffer, normed_buffer = z.new_empty(size, z.shape[1]), z.new_empty(size, z.shape[1])
        pre_buffer, act_buffer = z.new_empty(size, w1.shape[0]), z.new_empty(size, w1.shape[0])
        for b, start, end in tiles:
            n = end - start
            centred, normed, pre, act = centred_buffer[:n], normed_buffer[:n], pre_buffer[:n], act_buffer[:n]
            g_tile, grad_normed = grad_rows[start:end], grad_z_rows[start:end]
            torch.sub(rows[start:end], means[b], out=centred)
            torch.mul(centred, rstds[b], out=normed)
            torch.addmm(b1, normed, w1.t(), out=pre)
            torch.ops.aten.gelu.out(pre, out=act)
            grad_w2.addmm_(g_tile.t(), act)
            grad_pre = torch.mm(g_tile, w2, out=act)  # GELU(A_t) is used up: its buffer takes dA_t
            torch.ops.aten.gelu_backward.grad_input(grad_pre, pre, grad_input=grad_pre)
            grad_w1.addmm_(grad_pre.t(), normed)
            grad_b1.add_(grad_pre.sum(0))
            torch.mm(grad_pre, w1, out=grad_normed)
            grad_mean[b].sub_(grad_normed.sum(0) * rstds[b])
            grad_rstd[b].add_(centred.mul_(grad_normed).sum(0))
            grad_normed.mul_(rstds[b]).add_(g_tile)
        add_moments_grad_(grad_z, z, mean, rstd, grad_mean, grad_rstd)
        return grad_z, None, grad_w1, grad_b1, grad_w2, grad_rows.sum(0)


def fused_mlp_applies(z: torch.Tensor, norm: nn.Module) -> bool:
    """Whether :func:`norm_mlp_residual` serves ``z``: CPU, float32 or float64, autocast off, not
    being compiled, and a norm without scale and shift (the paper's)."""
    return (z.device.type == "cpu" and z.dtype in (torch.float32, torch.float64) and norm.weight is None
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())


def norm_mlp_residual(z: torch.Tensor, eps: float, fc1: nn.Module, fc2: nn.Module,
                      overwrite: bool = False) -> torch.Tensor:
    """``z + fc2(GELU(fc1(IN(z))))`` in row tiles (module docstring), for a CPU map z (B, C, *S) in
    any layout, the instance norm's ``eps`` and the MLP's 1x1(x1) convolutions fc1 (C -> H) and
    fc2 (H -> C), both with bias -> (B, C, *S), channels-last. ``overwrite``: the result in z's
    memory when z is channels-last (z's values are then lost), allowed without gradients only."""
    w1, b1, w2, b2 = fc1.weight.flatten(1), fc1.bias, fc2.weight.flatten(1), fc2.bias
    if not overwrite:
        return _NormMLPResidual.apply(z, eps, w1, b1, w2, b2)
    if torch.is_grad_enabled():
        raise ValueError("norm_mlp_residual can overwrite its input only without gradients")
    z = in_preferred_layout(z)
    return _forward(z, *moments(z, eps), w1, b1, w2, b2, z)
