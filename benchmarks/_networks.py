"""The networks compared by bench_step, bench_inference and profile_step, and the NDC backend choice."""

from __future__ import annotations

import os
from typing import Sequence

INPUT_CHANNELS = 2
NUM_CLASSES = 2
NETWORKS = ("deconver", "plainconvunet")


def select_ndc_backend(name: str | None) -> None:
    """Force the NDC backend of this worker (``NNUNET_DECONVER_NDC_BACKEND``; None: leave it) and
    check that it is the one that runs (the C++ kernels build here on first use, before timing)."""
    if name is None:
        return
    import torch

    from nnunet_deconver.ndc.backends import BACKEND_ENV, backend_for

    os.environ[BACKEND_ENV] = name
    if backend_for(torch.device("cpu")).name != name:
        raise RuntimeError(f"the NDC backend {name!r} is not available in this worker")


def build_network(name: str, deep_supervision: bool, checkpoint_levels: Sequence[int] = (),
                  activation_memory: str = "lean"):
    """A network of the comparison, 3D, 2 input channels, 2 outputs.

    - ``deconver``: Deconver, ISLES'22 preset (widths 64-512, 4 levels, NDC k = 3, R = 4), its
      blocks ``activation_memory`` "lean" (the default) or "full";
    - ``plainconvunet``: nnU-Net's PlainConvUNet as nnU-Net's default plans build it for a 64^3
      patch at isotropic spacing (5 stages, 32-320 features, two 3^3 convs per stage, instance
      norm, LeakyReLU, He initialisation).
    """
    if name == "deconver":
        from nnunet_deconver.network import build_preset

        return build_preset(
            "isles22", kernel_size=3, deep_supervision=deep_supervision, num_classes=NUM_CLASSES,
            checkpoint_levels=list(checkpoint_levels), activation_memory=activation_memory,
        )
    if name == "plainconvunet":
        if checkpoint_levels:
            raise ValueError("checkpoint_levels is a Deconver option")
        from dynamic_network_architectures.architectures.unet import PlainConvUNet
        from torch import nn

        n_stages = 5
        network = PlainConvUNet(
            input_channels=INPUT_CHANNELS, n_stages=n_stages, features_per_stage=[32, 64, 128, 256, 320],
            conv_op=nn.Conv3d, kernel_sizes=[[3, 3, 3]] * n_stages,
            strides=[[1, 1, 1]] + [[2, 2, 2]] * (n_stages - 1), n_conv_per_stage=[2] * n_stages,
            num_classes=NUM_CLASSES, n_conv_per_stage_decoder=[2] * (n_stages - 1), conv_bias=True,
            norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None,
            nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=deep_supervision,
        )
        network.apply(network.initialize)
        return network
    raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}")


def network_label(name: str, checkpoint_levels: Sequence[int] = (), backend: str | None = None,
                  activation_memory: str | None = None) -> str:
    """Row label of a network, e.g. "Deconver ISLES'22 lean (checkpoint_levels=[0]), NDC cpp"."""
    label = {"deconver": "Deconver ISLES'22", "plainconvunet": "nnU-Net PlainConvUNet"}[name]
    if activation_memory:
        label += f" {activation_memory}"
    if checkpoint_levels:
        label += f" (checkpoint_levels={list(checkpoint_levels)})"
    return label + (f", NDC {backend}" if backend else "")
