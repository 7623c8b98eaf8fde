"""The lean block's first half, ``x + Mixer(IN(x))``, on CPU in slabs whose NDC works on their own planes.

For a channels-last map x (B, C, *S), its instance-norm statistics mean, rstd over the whole
volume (computed here, see :func:`~nnunet_deconver.network.norm.moments`) and the mixer's
parameters W_in (C, C), W_0 (E, C), b_0 (E,), theta (C, E // G, *k), W_out (C, E), b_out (C,),
voxel by voxel (products over the channel axis)::

    N = (x - mean) * rstd,   U = ReLU(N W_in^T),   S0 = U W_0^T + b_0,
    S = NDC(U, ReLU(S0); ReLU(theta)),   Z = x + S W_out^T + b_out

(one NDC update). S at a plane of the first spatial axis depends on U within p = k0 // 2 planes
and on S0 within 2p, so each slab of own planes is computed from its input widened by 2p planes
per side, as in :func:`~nnunet_deconver.network.tiling.tiled`; but the C++ kernels' plane window
restricts the NDC to what the own planes need (A(S0) within p planes of them, the update on them
alone), W_out and the residual run on the own planes only, and nothing is an activation
checkpoint: backward keeps x alone (kept anyway, the block's input) and, slab by slab, recomputes
N, U, S0 and A(S0), not the update (the backward kernel returns S on the own planes). For the
upstream gradient G::

    dW_out += G^T S,   db_out = sum G,   dS = G W_out,   (dU, dS0, dV) = NDC backward (window),
    dW_0 += dS0^T U,   db_0 += sum dS0,   dP = (dU + dS0 W_0) * [U > 0],   dW_in += dP^T N,
    dN = dP W_in,   dx = G + sum over slabs of dN * rstd,   dmean -= rstd sum dN,
    drstd += sum dN * (x - mean),   dtheta = dV * [theta > 0]

(sums over voxels; a widened slab's dx overlaps its neighbours'); the gradients of mean and rstd
are then added to dx in place (:func:`~nnunet_deconver.network.norm.add_moments_grad_`).

With groups of one channel (G = C, the paper's) the forward orders the sources planar, source j of
channel c at j * C + c (the rows of W_0 and b_0 and the columns of W_out permuted to match): the
C++ kernels' planar mode then computes the update from the C-channel fields U and A(S0) directly,
in registers; the backward recomputes in the usual order.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nnunet_deconver.ndc.backends import backend_for, cpp
from nnunet_deconver.ndc.ops import channels_last_format, in_preferred_layout, voxel_rows
from nnunet_deconver.network.fused_mlp import fused_mlp_applies
from nnunet_deconver.network.norm import add_moments_grad_, moments
from nnunet_deconver.network.tiling import slabs, tile_thickness

Tensor = torch.Tensor

#: voxels per slab at most without gradients (two slabs of a 64^3 patch): a slab's R*C-channel
#: tensors (S0 and the update) then take tens of MB rather than hundreds, reused slab to slab; one
#: slab per patch measured 15-20% slower on a 2-core CPU (fresh pages for every block, and caches)
SLAB_VOXELS_WITHOUT_GRAD = 1 << 17


def _as_map(rows: Tensor, like: Tensor) -> Tensor:
    """(prod(S), C') rows -> the channels-last (1, C', *S) view, S from ``like`` (1, *, *S)."""
    return rows.view(1, *like.shape[2:], rows.shape[1]).movedim(-1, 1)


def _take(buffers: dict, name: str, rows: int, width: int, like: Tensor) -> Tensor:
    """A (rows, width) matrix from ``buffers[name]``, grown when too small: a slab's N, U, S0 and
    dS reuse the memory of the slab before (fresh memory costs a page fault per page)."""
    buffer = buffers.get(name)
    if buffer is None or buffer.shape[0] < rows:
        buffer = buffers[name] = like.new_empty(rows, width)
    return buffer[:rows]


def _workspace(buffers: dict, name: str, like: Tensor) -> Tensor:
    """``buffers[name]``, a flat tensor the C++ kernels carve their outputs and scratch from (and
    grow): one slab's results live in the memory of the slab before."""
    if name not in buffers:
        buffers[name] = like.new_empty(0)
    return buffers[name]


def _normalised(x: Tensor, mean: Tensor, rstd: Tensor, buffers: dict) -> Tensor:
    """N (module docstring) of x (1, C, *S), channels-last."""
    normed = _as_map(_take(buffers, "normed", x[0, 0].numel(), x.shape[1], x), x)
    return torch.sub(x, mean, out=normed).mul_(rstd)


def _sources(normed: Tensor, w_in: Tensor, w_init: Tensor, b_init: Tensor, buffers: dict) -> tuple[Tensor, Tensor]:
    """U and S0 (module docstring) of N, channels-last."""
    rows = normed[0, 0].numel()
    u = torch.mm(voxel_rows(normed), w_in.t(), out=_take(buffers, "u", rows, w_in.shape[0], normed)).relu_()
    # the bias added after the product: addmm would copy it into the output first, then read it back
    s0 = torch.mm(u, w_init.t(), out=_take(buffers, "s0", rows, w_init.shape[0], normed)).add_(b_init)
    return _as_map(u, normed), _as_map(s0, normed)


def _planar(w_init: Tensor, b_init: Tensor, w_out: Tensor, channels: int) -> tuple[Tensor, Tensor, Tensor]:
    """W_0, b_0 and W_out with the sources in planar order (source jl of channel c at jl * C + c
    instead of c * R + jl), for groups of one channel: S0 and S then come in the order of the C++
    kernels' planar mode, whose update reads the C-channel fields directly (``ndc_kernels_planar.h``)."""
    ratio = w_init.shape[0] // channels
    return (w_init.view(channels, ratio, -1).transpose(0, 1).reshape(w_init.shape),
            b_init.view(channels, ratio).t().reshape(b_init.shape),
            w_out.view(w_out.shape[0], channels, ratio).transpose(1, 2).reshape(w_out.shape))


def _slabs(x: Tensor, thickness: int, theta: Tensor):
    """(b, start, length, own, own_length) of each slab of each sample of x: sample by sample, so
    that a slab's wide tensors hold one sample (see :func:`~nnunet_deconver.network.tiling.slabs`);
    a largest slab first, so that the buffers and workspaces reused by the others are sized once."""
    parts = slabs(x.shape[2], thickness, 2 * (theta.shape[2] // 2))
    return sorted(((b, *part) for b in range(x.shape[0]) for part in parts), key=lambda part: -part[2])


class _NormMixerResidual(torch.autograd.Function):
    """The module docstring's ``x + Mixer(IN(x))`` in slabs; x channels-last -> channels-last."""

    @staticmethod
    def forward(ctx, x: Tensor, norm_eps: float, w_in: Tensor, w_init: Tensor, b_init: Tensor, theta: Tensor,
                w_out: Tensor, b_out: Tensor, groups: int, eps: float, thickness: int) -> Tensor:
        given, x = x, in_preferred_layout(x)
        mean, rstd = moments(x, norm_eps)
        ctx.save_for_backward(given, mean, rstd, w_in, w_init, b_init, theta, w_out)
        ctx.groups, ctx.eps, ctx.thickness = groups, eps, thickness
        out = torch.empty_like(x, memory_format=channels_last_format(x.dim()))
        weight, kernels, buffers = torch.relu(theta), cpp.extension(), {}
        planar = groups == x.shape[1]
        if planar:
            w_init, b_init, w_out = _planar(w_init, b_init, w_out, groups)
        for b, start, length, own, own_length in _slabs(x, thickness, theta):
            part = x[b:b + 1].narrow(2, start, length)
            u, s0 = _sources(_normalised(part, mean[b:b + 1], rstd[b:b + 1], buffers), w_in, w_init, b_init, buffers)
            s, _ = kernels.forward(u, s0, weight, groups, eps, True, own, own + own_length,
                                   workspace=_workspace(buffers, "forward", x), planar=planar)
            z = voxel_rows(out[b:b + 1].narrow(2, start + own, own_length))
            torch.add(voxel_rows(part.narrow(2, own, own_length)), b_out, out=z)
            torch.addmm(z, voxel_rows(s), w_out.t(), out=z)  # not addmm_: FLOP counters know addmm alone
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        x, mean, rstd, w_in, w_init, b_init, theta, w_out = ctx.saved_tensors
        groups, eps = ctx.groups, ctx.eps
        x, grad = in_preferred_layout(x), in_preferred_layout(grad)
        weight, kernels, buffers = torch.relu(theta), cpp.extension(), {}
        grad_x = grad.clone(memory_format=channels_last_format(x.dim()))  # the residual's share
        grad_mean, grad_rstd = torch.zeros_like(mean), torch.zeros_like(rstd)
        grad_w_in, grad_w_init, grad_b_init = torch.zeros_like(w_in), torch.zeros_like(w_init), torch.zeros_like(b_init)
        grad_weight, grad_w_out = torch.zeros_like(theta), torch.zeros_like(w_out)
        for b, start, length, own, own_length in _slabs(x, ctx.thickness, theta):
            window, stats = (own, own + own_length), (mean[b:b + 1], rstd[b:b + 1])
            part = x[b:b + 1].narrow(2, start, length)
            g = voxel_rows(grad[b:b + 1].narrow(2, start + own, own_length))
            normed = _normalised(part, *stats, buffers)
            u, s0 = _sources(normed, w_in, w_init, b_init, buffers)
            _, y = kernels.forward(u, s0, weight, groups, eps, True, *window, False,
                                   workspace=_workspace(buffers, "forward", x))
            grad_s = torch.mm(g, w_out, out=_take(buffers, "grad_s", g.shape[0], w_out.shape[1], g))
            grad_u, grad_s0, grad_v, s = kernels.backward(_as_map(grad_s, part.narrow(2, own, own_length)), u, s0,
                                                          weight, y, groups, eps, True, True, True, True, *window, True,
                                                          workspace=_workspace(buffers, "backward", x))
            grad_w_out.addmm_(g.t(), voxel_rows(s))
            grad_weight += grad_v
            u_rows, grad_s0_rows, grad_p = voxel_rows(u), voxel_rows(grad_s0), voxel_rows(grad_u)
            grad_w_init.addmm_(grad_s0_rows.t(), u_rows)
            grad_b_init += grad_s0_rows.sum(0)
            grad_p.addmm_(grad_s0_rows, w_init).masked_fill_(u_rows <= 0, 0)
            grad_w_in.addmm_(grad_p.t(), voxel_rows(normed))
            grad_normed = torch.mm(grad_p, w_in, out=_take(buffers, "grad_normed", grad_p.shape[0], w_in.shape[1], x))
            product = torch.mul(grad_normed, voxel_rows(normed), out=_take(buffers, "product", *grad_normed.shape, x))
            grad_mean[b].view(-1).sub_(grad_normed.sum(0) * rstd[b].view(-1))
            grad_rstd[b].view(-1).add_(product.sum(0) / rstd[b].view(-1))
            grad_x[b:b + 1].narrow(2, start, length).add_(_as_map(grad_normed.mul_(rstd[b].view(-1)), part))
        add_moments_grad_(grad_x, x, mean, rstd, grad_mean, grad_rstd)
        return (grad_x, None, grad_w_in, grad_w_init, grad_b_init, grad_weight * (theta > 0), grad_w_out,
                grad.sum(dim=(0, *range(2, grad.dim()))), None, None, None)


def fused_mixer_applies(x: Tensor, norm: nn.Module, mixer: nn.Module) -> bool:
    """Whether :func:`norm_mixer_residual` serves ``x``: where the fused second half does
    (:func:`~nnunet_deconver.network.fused_mlp.fused_mlp_applies`), for a mixer whose NDC runs one
    update on the backends' operator, when the C++ kernels compute the NDC on this CPU."""
    ndc = mixer.ndc
    return (fused_mlp_applies(x, norm) and ndc.memory_efficient and ndc.iterations == 1
            and backend_for(x.device).name == "cpp")


def norm_mixer_residual(x: Tensor, norm_eps: float, mixer: nn.Module, thickness: int | None = None) -> Tensor:
    """``x + mixer(IN(x))`` in slabs (module docstring), for a CPU map x (B, C, *S) in any layout,
    the instance norm's ``norm_eps`` and a :class:`~nnunet_deconver.network.blocks.DeconvMixer`
    -> (B, C, *S), channels-last.
    ``thickness``: the slabs' own planes (None: with gradients, as many voxels per slab as the
    unfused lean block's slabs of the whole batch hold,
    :func:`~nnunet_deconver.network.tiling.tile_thickness`, here in one sample: thicker slabs,
    fewer borders computed twice, at the same memory; without, slabs of at most
    :data:`SLAB_VOXELS_WITHOUT_GRAD`)."""
    ndc = mixer.ndc
    halo = 2 * (ndc.kernel_size[0] // 2)
    if thickness is None:
        batch, extent, voxels = x.shape[0], x.shape[2], math.prod(x.shape[2:])
        if torch.is_grad_enabled():
            thickness = min(extent, batch * tile_thickness(extent, batch * voxels, halo))
        else:
            thickness = tile_thickness(extent, voxels, halo, False, SLAB_VOXELS_WITHOUT_GRAD)
    return _NormMixerResidual.apply(x, norm_eps, mixer.proj_in.weight.flatten(1), ndc.init.weight.flatten(1),
                                    ndc.init.bias, ndc.weight, mixer.proj_out.weight.flatten(1), mixer.proj_out.bias,
                                    ndc.groups, ndc.eps, thickness)
