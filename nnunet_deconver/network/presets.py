"""The Deconver of each of the paper's configurations (structure from :mod:`nnunet_deconver.paper`)."""

from __future__ import annotations

from typing import Sequence

from nnunet_deconver.network.unet import Deconver
from nnunet_deconver.paper import get_dataset


def build_preset(
    name: str,
    kernel_size: int = 3,
    ratio: int = 4,
    groups: int | None = None,
    deep_supervision: bool = False,
    num_classes: int | None = None,
    norm_affine: bool = False,
    eps: float = 1e-8,
    iterations: int = 1,
    activation_memory: str = "lean",
    checkpoint_levels: Sequence[int] = (),
) -> Deconver:
    """The Deconver of the paper's configuration for data set ``name`` (isles22, brats23, glas,
    fives): one sigmoid output per class or region, as the paper, unless ``num_classes`` is given.

    The arguments after ``num_classes`` are :class:`~nnunet_deconver.network.Deconver`'s.
    """
    dataset = get_dataset(name)
    return Deconver(
        input_channels=dataset.input_channels,
        num_classes=dataset.num_outputs if num_classes is None else num_classes,
        deep_supervision=deep_supervision,
        checkpoint_levels=checkpoint_levels,
        **dataset.network_arguments(kernel_size, ratio, groups, norm_affine, eps, iterations, activation_memory),
    )
