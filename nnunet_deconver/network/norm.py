"""Instance normalisation whose backward always receives a contiguous gradient.

On CPU the pointwise convolutions run channels-last (:func:`~nnunet_deconver.ndc.module.pointwise_conv`),
so the gradient that reaches an instance norm's output from the mixer or the MLP is channels-last.
PyTorch's CPU backward of ``instance_norm`` is wrong for a channels-last incoming gradient when the
batch holds one sample (torch 2.14.1: more than 100% off, 2D and 3D, with or without affine
parameters; batch 2 is right). The norms here hand their backward a contiguous gradient, whatever
layout arrives, so every batch size gets the right gradient on every torch. The forward and the
parameters are ``nn.InstanceNorm2d`` / ``3d``'s: state dicts are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


class _ContiguousGrad(torch.autograd.Function):
    """Identity (B, C, *S) -> the same tensor; its backward returns the gradient made contiguous."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def contiguous_grad(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself in the forward pass; the gradient flowing back through it arrives contiguous."""
    return _ContiguousGrad.apply(x)


class _ContiguousGradNorm:
    """Forward of an instance norm module whose backward receives a contiguous gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return contiguous_grad(super().forward(x))


class InstanceNorm2d(_ContiguousGradNorm, nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` whose backward always receives a contiguous gradient."""


class InstanceNorm3d(_ContiguousGradNorm, nn.InstanceNorm3d):
    """``nn.InstanceNorm3d`` whose backward always receives a contiguous gradient."""


def instance_norm(channels: int, spatial_dims: int, affine: bool) -> nn.Module:
    """Instance normalisation over S of (B, channels, *S), with or without learnable scale and shift."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    return (InstanceNorm2d if spatial_dims == 2 else InstanceNorm3d)(channels, affine=affine)
