"""The paper's four configurations (Ashtari et al., Tables I-III)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from nnunet_deconver.network.unet import Deconver


def paper_widths(c0: int, levels: int, cap: int = 512) -> list[int]:
    """C_l = min(C0 * 2^l, cap) for l = 0 .. levels - 1."""
    return [min(c0 * 2**level, cap) for level in range(levels)]


@dataclass(frozen=True)
class Preset:
    """One of the paper's configurations and the figures it reports."""

    name: str
    title: str
    spatial_dims: int
    input_channels: int
    num_classes: int
    levels: int
    c0: int
    patch_size: tuple[int, ...]
    batch_size: int
    epochs: int
    region_based: bool = False
    # exact parameter counts of this structure (non-affine norms), by kernel size
    params: dict = field(default_factory=dict)
    # what the paper prints: parameters by kernel size (millions) and FLOPs per voxel
    paper_params_m: dict = field(default_factory=dict)
    paper_flops_per_voxel: float = 0.0

    @property
    def features_per_stage(self) -> list[int]:
        return paper_widths(self.c0, self.levels)

    @property
    def strides(self) -> list[int]:
        return [1] + [2] * (self.levels - 1)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("isles22", "ISLES'22", 3, 2, 1, 4, 64, (64, 64, 64), 8, 500,
               params={3: 10_476_545, 5: 11_028_481}, paper_params_m={3: 10.5, 5: 11.0},
               paper_flops_per_voxel=607.0e3),
        Preset("brats23", "BraTS'23", 3, 4, 3, 5, 32, (128, 128, 128), 2, 300, region_based=True,
               params={3: 10_553_859, 5: 11_130_883}, paper_params_m={3: 10.6, 5: 11.0},
               paper_flops_per_voxel=167.5e3),
        Preset("glas", "GlaS", 2, 3, 1, 6, 32, (256, 256), 8, 500,
               params={3: 20_635_041, 5: 20_794_785}, paper_params_m={3: 20.6, 5: 20.8},
               paper_flops_per_voxel=422.8e3),
        Preset("fives", "FIVES", 2, 3, 1, 6, 32, (512, 512), 8, 500,
               params={3: 20_635_041, 5: 20_794_785}, paper_params_m={3: 20.6, 5: 20.8},
               paper_flops_per_voxel=422.8e3),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (isles22, brats23, glas, fives)."""
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


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
    checkpoint_levels: Sequence[int] = (),
) -> Deconver:
    """The Deconver of a paper configuration (one sigmoid output per class or region, as the paper).

    The arguments after ``num_classes`` are :class:`~nnunet_deconver.network.Deconver`'s.
    """
    preset = get_preset(name)
    return Deconver(
        input_channels=preset.input_channels,
        num_classes=preset.num_classes if num_classes is None else num_classes,
        spatial_dims=preset.spatial_dims,
        features_per_stage=preset.features_per_stage,
        strides=preset.strides,
        kernel_sizes=kernel_size,
        ratio=ratio,
        groups=groups,
        deep_supervision=deep_supervision,
        norm_affine=norm_affine,
        eps=eps,
        iterations=iterations,
        checkpoint_levels=checkpoint_levels,
    )
