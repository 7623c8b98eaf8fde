"""The Deconver paper's four data sets: what it trains and every figure it reports, in one place.

Per data set (Ashtari et al., Tables I-III and the training set-up): the nnU-Net id and name the
conversion writes, the network's structure (dimensions, input channels, outputs, resolution
levels, first width C0), patch size, batch size and epochs, the parameter counts and FLOPs per
voxel the paper prints, and its Deconver rows (DSC in %, HD95 in mm for the 3D data sets and in
pixels for the 2D ones, each the mean over a 5-fold cross-validation).

``nnunet-deconver stats`` (parameters, FLOPs), ``plan`` (the preset plans), ``convert`` (ids and
names) and ``evaluate --compare-paper`` (DSC / HD95) all read this module. Standard library only,
so that the command line can list the data sets without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

#: The paper's width cap: C_l = min(C0 * 2^l, MAX_WIDTH).
MAX_WIDTH = 512


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name of a data set, e.g. ``Dataset501_ISLES22``."""
    return f"Dataset{dataset_id:03d}_{name}"


def paper_widths(c0: int, levels: int, cap: int = MAX_WIDTH) -> list[int]:
    """C_l = min(C0 * 2^l, cap) for l = 0 .. levels - 1."""
    return [min(c0 * 2**level, cap) for level in range(levels)]


def undivided_widths(widths: list[int], ratio: int, groups: int) -> list[int]:
    """The channel counts of the NDC layers (every width C and R * C) that ``groups`` does not
    divide, ascending; empty when every NDC layer can be split into ``groups`` groups."""
    return sorted({n for c in widths for n in (c, ratio * c) if n % groups})


@dataclass(frozen=True)
class PaperResult:
    """One Deconver row of the paper's tables: per target (paper order) DSC in % and HD95, and the
    printed average when there are several targets."""

    table: str
    kernel: int
    targets: tuple[str, ...]  # ("ET", "TC", "WT") or ("foreground",)
    dsc: tuple[float, ...]
    hd95: tuple[float, ...]
    dsc_avg: float | None = None
    hd95_avg: float | None = None


@dataclass(frozen=True)
class PaperDataset:
    """One of the paper's data sets: conversion target, structure, training set-up and figures."""

    key: str  # the name the command line takes: isles22, brats23, glas, fives
    dataset_id: int  # nnU-Net id the conversion writes by default
    name: str  # nnU-Net name: Dataset{id:03d}_{name}
    title: str  # as the paper prints it
    spatial_dims: int
    input_channels: int
    num_outputs: int  # classes, or regions (BraTS: ET, TC, WT)
    levels: int  # resolution levels (stages)
    c0: int  # width of the first level
    patch_size: tuple[int, ...]
    batch_size: int
    epochs: int
    params_m: Mapping[int, float]  # parameters in millions, by NDC kernel size
    flops_per_voxel: float  # the same for both kernel sizes (the paper's convention)
    hd95_unit: str  # "mm" or "px"
    results: Mapping[int, PaperResult]  # Deconver rows, by NDC kernel size

    @property
    def folder_name(self) -> str:
        """nnU-Net's folder name, e.g. ``Dataset501_ISLES22``."""
        return dataset_folder_name(self.dataset_id, self.name)

    @property
    def features_per_stage(self) -> list[int]:
        return paper_widths(self.c0, self.levels)

    @property
    def strides(self) -> list[int]:
        """Isotropic stride 2 between levels."""
        return [1] + [2] * (self.levels - 1)

    @property
    def configuration(self) -> str:
        """nnU-Net configuration the paper's set-up replaces: ``3d_fullres`` or ``2d``."""
        return "3d_fullres" if self.spatial_dims == 3 else "2d"

    def network_arguments(self, kernel_size: int = 3, ratio: int = 4, groups: int | None = None,
                          norm_affine: bool = False, eps: float = 1e-8, iterations: int = 1,
                          activation_memory: str = "lean") -> dict:
        """Keyword arguments of :class:`~nnunet_deconver.network.Deconver` for this structure, all
        but the input and output channels and deep supervision (plain values: they go into plans
        files). The defaults are the paper's: kernel 3, R = 4, G = channels, norms without affine
        parameters, one multiplicative update; training keeps the lean activation memory."""
        dims = self.spatial_dims
        return {
            "spatial_dims": dims,
            "features_per_stage": self.features_per_stage,
            "strides": [[s] * dims for s in self.strides],
            "kernel_sizes": [[kernel_size] * dims for _ in range(self.levels)],
            "stem_kernel_size": [3] * dims,
            "ratio": ratio,
            "groups": groups,
            "mlp_ratio": 4,
            "norm_affine": norm_affine,
            "eps": eps,
            "iterations": iterations,
            "activation_memory": activation_memory,
        }

    def result(self, kernel: int) -> PaperResult:
        """The paper's Deconver row for NDC kernel ``kernel``."""
        if kernel not in self.results:
            raise ValueError(f"the paper reports kernels {sorted(self.results)} for {self.title}, not {kernel}")
        return self.results[kernel]


def _by_kernel(**rows: PaperResult) -> Mapping[int, PaperResult]:
    return MappingProxyType({row.kernel: row for row in rows.values()})


DATASETS: Mapping[str, PaperDataset] = MappingProxyType({d.key: d for d in (
    PaperDataset(
        key="isles22", dataset_id=501, name="ISLES22", title="ISLES'22",
        spatial_dims=3, input_channels=2, num_outputs=1, levels=4, c0=64,
        patch_size=(64, 64, 64), batch_size=8, epochs=500,
        params_m=MappingProxyType({3: 10.5, 5: 11.0}), flops_per_voxel=607.0e3, hd95_unit="mm",
        results=_by_kernel(
            k3=PaperResult("Table I", 3, ("foreground",), (78.16,), (4.99,)),
            k5=PaperResult("Table I", 5, ("foreground",), (77.37,), (4.89,)),
        ),
    ),
    PaperDataset(
        key="brats23", dataset_id=502, name="BraTS23", title="BraTS'23",
        spatial_dims=3, input_channels=4, num_outputs=3, levels=5, c0=32,
        patch_size=(128, 128, 128), batch_size=2, epochs=300,
        params_m=MappingProxyType({3: 10.6, 5: 11.0}), flops_per_voxel=167.5e3, hd95_unit="mm",
        results=_by_kernel(
            k3=PaperResult("Table II", 3, ("ET", "TC", "WT"), (87.01, 91.56, 93.42), (3.30, 3.80, 5.63),
                           dsc_avg=90.66, hd95_avg=4.45),
            k5=PaperResult("Table II", 5, ("ET", "TC", "WT"), (86.97, 91.41, 93.47), (3.50, 3.99, 5.59),
                           dsc_avg=90.62, hd95_avg=4.49),
        ),
    ),
    PaperDataset(
        key="glas", dataset_id=503, name="GlaS", title="GlaS",
        spatial_dims=2, input_channels=3, num_outputs=1, levels=6, c0=32,
        patch_size=(256, 256), batch_size=8, epochs=500,
        params_m=MappingProxyType({3: 20.6, 5: 20.8}), flops_per_voxel=422.8e3, hd95_unit="px",
        results=_by_kernel(
            k3=PaperResult("Table III", 3, ("foreground",), (91.52,), (68.52,)),
            k5=PaperResult("Table III", 5, ("foreground",), (92.12,), (60.49,)),
        ),
    ),
    PaperDataset(
        key="fives", dataset_id=504, name="FIVES", title="FIVES",
        spatial_dims=2, input_channels=3, num_outputs=1, levels=6, c0=32,
        patch_size=(512, 512), batch_size=8, epochs=500,
        params_m=MappingProxyType({3: 20.6, 5: 20.8}), flops_per_voxel=422.8e3, hd95_unit="px",
        results=_by_kernel(
            k3=PaperResult("Table III", 3, ("foreground",), (92.48,), (35.45,)),
            k5=PaperResult("Table III", 5, ("foreground",), (92.72,), (30.26,)),
        ),
    ),
)})


def get_dataset(key: str) -> PaperDataset:
    """The paper's data set called ``key`` (isles22, brats23, glas, fives; any letter case)."""
    try:
        return DATASETS[key.lower()]
    except KeyError:
        raise ValueError(f"unknown data set {key!r}; choose one of {', '.join(DATASETS)}") from None
