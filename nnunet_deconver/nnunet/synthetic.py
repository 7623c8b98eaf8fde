"""Small synthetic data sets in nnU-Net's raw format, written as real NIfTI / PNG files.

Used by the demo and the tests: lesion-like blobs in noise, 3D (any spacing, e.g. anisotropic),
2D RGB, and region-based (three nested labels like BraTS). Deterministic for a seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _blobs(shape: Sequence[int], spacing: Sequence[float], rng: np.random.Generator, n_blobs: int,
           radius_mm: tuple[float, float]) -> list[np.ndarray]:
    """Distance-to-centre fields (in units of each blob's radius) of ``n_blobs`` random ellipsoids."""
    grids = np.meshgrid(*[np.arange(s) * sp for s, sp in zip(shape, spacing)], indexing="ij")
    extent = np.array(shape) * np.array(spacing)
    fields = []
    for _ in range(n_blobs):
        radii = rng.uniform(*radius_mm, size=len(shape))
        centre = rng.uniform(radii, extent - radii)
        fields.append(np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))))
    return fields


def lesion_case(shape: Sequence[int], spacing: Sequence[float], rng: np.random.Generator,
                n_channels: int = 2, nested_labels: int = 1) -> tuple[list[np.ndarray], np.ndarray]:
    """One case: ``n_channels`` float32 images and a uint8 label map of ``shape`` (numpy axis order).

    Labels are 1..nested_labels, label j occupying the part of a blob within radius 1 - 0.3 (j - 1)
    (so each label lies inside the previous one, like BraTS's edema / core / enhancing tumour).
    Channel c shows the blobs with contrast +1 (even c) or -1 (odd c) over Gaussian noise.
    """
    label = np.zeros(shape, dtype=np.uint8)
    extent = min(s * sp for s, sp in zip(shape, spacing))
    for dist in _blobs(shape, spacing, rng, int(rng.integers(1, 3)), (0.12 * extent, 0.25 * extent)):
        for j in range(1, nested_labels + 1):
            label[dist < 1 - 0.3 * (j - 1)] = np.maximum(label[dist < 1 - 0.3 * (j - 1)], j)
    images = []
    for c in range(n_channels):
        contrast = 1.0 if c % 2 == 0 else -1.0
        signal = contrast * (label > 0) * 1.5 + 0.4 * (label > 1)
        images.append((100 + 20 * (signal + rng.normal(0, 0.6, size=shape))).astype(np.float32))
    return images, label


def write_nifti(array: np.ndarray, spacing: Sequence[float], path: Path) -> None:
    """Write a numpy array (z, y, x) with spacing given in the same axis order."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in reversed(spacing)])
    sitk.WriteImage(image, str(path), useCompression=True)


def write_dataset_json(folder: Path, channel_names: dict, labels: dict, num_training: int, file_ending: str,
                       **extra) -> None:
    """dataset.json through nnU-Net's own writer."""
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    extra.setdefault("license", "synthetic data, no restrictions")
    extra.setdefault("converted_by", "nnunet-deconver")
    generate_dataset_json(str(folder), channel_names, labels, num_training, file_ending, **extra)


def _case_slots(raw_root: Path, dataset_id: int, name: str, n_train: int, n_test: int):
    """Create ``Dataset{id:03d}_{name}`` with its four folders; yield (folder, "Tr" | "Ts", case id)."""
    folder = Path(raw_root) / f"Dataset{dataset_id:03d}_{name}"
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_train + n_test):
        yield folder, "Tr" if i < n_train else "Ts", f"{name.lower()}_{i:03d}"


def make_3d_dataset(
    raw_root: Path,
    dataset_id: int,
    name: str,
    n_train: int,
    n_test: int = 0,
    shape: Sequence[int] = (32, 32, 32),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    n_channels: int = 2,
    region_based: bool = False,
    seed: int = 0,
) -> Path:
    """A 3D NIfTI data set ``Dataset{id:03d}_{name}`` under ``raw_root``; returns its folder.

    ``region_based``: labels 1, 2, 3 nested, with dataset.json regions whole = {1, 2, 3},
    core = {2, 3}, enhancing = {3} and ``regions_class_order`` [1, 2, 3]; otherwise binary.
    Test cases go to imagesTs / labelsTs.
    """
    rng = np.random.default_rng(seed)
    for folder, split, case in _case_slots(raw_root, dataset_id, name, n_train, n_test):
        images, label = lesion_case(shape, spacing, rng, n_channels, 3 if region_based else 1)
        for c, image in enumerate(images):
            write_nifti(image, spacing, folder / f"images{split}" / f"{case}_{c:04d}.nii.gz")
        write_nifti(label, spacing, folder / f"labels{split}" / f"{case}.nii.gz")
    channels = {str(c): f"modality{c}" for c in range(n_channels)}
    if region_based:
        labels = {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": [3]}
        write_dataset_json(folder, channels, labels, n_train, ".nii.gz", regions_class_order=[1, 2, 3],
                           dataset_name=folder.name)
    else:
        write_dataset_json(folder, channels, {"background": 0, "lesion": 1}, n_train, ".nii.gz",
                           dataset_name=folder.name)
    return folder


def make_2d_rgb_dataset(raw_root: Path, dataset_id: int, name: str, n_train: int, n_test: int = 0,
                        shape: Sequence[int] = (64, 64), seed: int = 0) -> Path:
    """A 2D RGB PNG data set (nnU-Net's natural-image layout: one 3-channel ``_0000.png`` per case)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for folder, split, case in _case_slots(raw_root, dataset_id, name, n_train, n_test):
        images, label = lesion_case(shape, (1.0, 1.0), rng, n_channels=3)
        rgb = np.stack([np.clip(2 * (im - 40), 0, 255) for im in images], axis=-1).astype(np.uint8)
        Image.fromarray(rgb, mode="RGB").save(folder / f"images{split}" / f"{case}_0000.png")
        Image.fromarray(label).save(folder / f"labels{split}" / f"{case}.png")
    write_dataset_json(folder, {"0": "R", "1": "G", "2": "B"}, {"background": 0, "object": 1}, n_train, ".png",
                       dataset_name=folder.name)
    return folder
