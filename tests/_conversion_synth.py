"""Small synthetic copies of the four data sets, in their published layouts, written as real files.

Each builder returns what it wrote (arrays, spacings, metadata) so that tests compare the
converter's output with the source, never with values the converter computed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image

CATEGORIES = "ADGN"


@dataclass
class Volume3D:
    """One synthetic 3D case: arrays (z, y, x) and the SimpleITK spacing / origin (x, y, z)."""

    channels: list[np.ndarray]
    label: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    files: list[Path] = field(default_factory=list)
    label_file: Path | None = None


@dataclass
class Image2D:
    """One synthetic 2D case: RGB (H, W, 3) uint8, the stored annotation and the expected 0/1 label."""

    rgb: np.ndarray
    stored_label: np.ndarray
    expected_label: np.ndarray
    metadata: dict
    image_file: Path | None = None
    label_file: Path | None = None


def write_nifti(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> Path:
    """Write ``array`` (z, y, x) as NIfTI with the given SimpleITK spacing and origin."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    sitk.WriteImage(image, str(path), True)
    return path


def read_nifti(path: Path) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


def write_png_like(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 (H, W) or (H, W, 3) array with Pillow, format from the suffix (.png / .bmp)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array.astype(np.uint8))).save(path)
    return path


def read_2d(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _blob_label(shape: tuple[int, ...], size: int, rng: np.random.Generator) -> np.ndarray:
    """A box of roughly ``size`` voxels per side at a random place (0/1, uint8)."""
    label = np.zeros(shape, np.uint8)
    if size <= 0:
        return label
    start = [int(rng.integers(0, max(1, s - size))) for s in shape]
    label[tuple(slice(b, b + size) for b in start)] = 1
    return label


def make_isles(root: Path, n_cases: int = 6, rawdata: bool = False, shape=(16, 24, 24), seed: int = 0
               ) -> dict[str, Volume3D]:
    """ISLES'22 BIDS layout: subjects at ``root`` (or ``root/rawdata``), masks in ``root/derivatives``."""
    rng = np.random.default_rng(seed)
    subject_root = root / "rawdata" if rawdata else root
    cases = {}
    for i in range(1, n_cases + 1):
        subject = f"sub-strokecase{i:04d}"
        session = subject_root / subject / "ses-0001"
        spacing = (1.0 + 0.25 * i, 0.9, 2.0)
        origin = (-10.0 * i, 5.0, 3.5)
        dwi = rng.normal(300, 50, shape).astype(np.float32)
        adc = rng.integers(0, 3000, shape).astype(np.int16)
        mask = _blob_label(shape, i + 1, rng)
        stem = f"{subject}_ses-0001"
        files = [write_nifti(session / "dwi" / f"{stem}_dwi.nii.gz", dwi, spacing, origin),
                 write_nifti(session / "dwi" / f"{stem}_adc.nii.gz", adc, spacing, origin)]
        (session / "dwi" / f"{stem}_dwi.json").write_text("{}")
        write_nifti(session / "anat" / f"{stem}_FLAIR.nii.gz", rng.normal(size=(8, 12, 12)).astype(np.float32),
                    (2.0, 2.0, 4.0))
        label_file = write_nifti(root / "derivatives" / subject / "ses-0001" / f"{stem}_msk.nii.gz", mask, spacing,
                                 origin)
        cases[subject] = Volume3D([dwi, adc], mask, spacing, origin, files, label_file)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "ISLES 2022 (synthetic)"}))
    return cases


BRATS_MODALITIES = ("t1n", "t1c", "t2w", "t2f")


def brats_segmentation(shape: tuple[int, int, int], size: int, rng: np.random.Generator) -> np.ndarray:
    """Nested BraTS labels: edema (2) around necrosis (1) around enhancing tumour (3)."""
    seg = np.zeros(shape, np.uint8)
    if size <= 0:
        return seg
    centre = [int(rng.integers(size, s - size)) if s > 2 * size else s // 2 for s in shape]
    for label, radius in ((2, size), (3, max(size - 1, 0)), (1, max(size - 2, 0))):
        if radius:
            seg[tuple(slice(max(c - radius, 0), c + radius) for c in centre)] = label
    return seg


def make_brats(root: Path, n_cases: int = 6, shape=(12, 16, 20), seed: int = 1) -> dict[str, Volume3D]:
    """BraTS'23 GLI layout: ``BraTS-GLI-XXXXX-000/BraTS-GLI-XXXXX-000-{t1n,t1c,t2w,t2f,seg}.nii.gz``."""
    rng = np.random.default_rng(seed)
    cases = {}
    for i in range(n_cases):
        case_id = f"BraTS-GLI-{i:05d}-000"
        folder = root / case_id
        spacing = (1.0, 1.0, 1.0 + 0.5 * (i % 2))
        origin = (0.0, -239.0, 0.0)
        channels = [(rng.random(shape) * 1000 + 1000 * k).astype(np.float32) for k in range(4)]
        seg = brats_segmentation(shape, 1 + i % 4, rng)
        files = [write_nifti(folder / f"{case_id}-{m}.nii.gz", c, spacing, origin)
                 for m, c in zip(BRATS_MODALITIES, channels)]
        label_file = write_nifti(folder / f"{case_id}-seg.nii.gz", seg, spacing, origin)
        cases[case_id] = Volume3D(channels, seg, spacing, origin, files, label_file)
    return cases


def _rgb(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """RGB image whose three channels differ clearly (R high, G middle, B low), to catch swaps."""
    base = rng.integers(0, 60, (*shape, 3))
    return (base + np.array([190, 100, 10])).clip(0, 255).astype(np.uint8)


GLAS_HEADER = "name, Patient ID, GlaS grade, Sirinukunwattana grade"


def make_glas(root: Path, counts=(("train", 4), ("testA", 3), ("testB", 3)), shape=(48, 64), seed: int = 2,
              header: str = GLAS_HEADER) -> dict[str, Image2D]:
    """GlaS layout: ``train_N.bmp`` + ``train_N_anno.bmp`` (gland instance map), testA, testB, Grade.csv."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    cases = {}
    rows = [header]
    k = 0
    for origin, count in counts:
        for n in range(1, count + 1):
            case_id = f"{origin}_{n}"
            grade = ("benign", "malignant")[k % 2]
            k += 1
            rgb = _rgb(shape, rng)
            instances = np.zeros(shape, np.uint8)
            for gland in range(1, 4 + n % 3):
                y, x = int(rng.integers(0, shape[0] - 8)), int(rng.integers(0, shape[1] - 8))
                instances[y:y + 6, x:x + 7] = gland * 7
            image_file = write_png_like(root / f"{case_id}.bmp", rgb)
            label_file = write_png_like(root / f"{case_id}_anno.bmp", instances)
            patient = str(10 + k // 3)
            rows.append(f"{case_id}, {patient}, {' ' + grade}, adenomatous")
            cases[case_id] = Image2D(rgb, instances, (instances > 0).astype(np.uint8),
                                     {"origin": origin, "grade": grade, "patient_id": patient}, image_file, label_file)
    (root / "Grade.csv").write_text("\n".join(rows) + "\n")
    return cases


def make_fives(root: Path, counts=(("train", 5), ("test", 3)), gt_channels: int = 1, shape=(48, 64), seed: int = 3
               ) -> dict[str, Image2D]:
    """FIVES layout: ``{train,test}/Original/N_C.png`` and ``{train,test}/Ground truth/N_C.png`` (0/255)."""
    rng = np.random.default_rng(seed)
    cases = {}
    k = 0
    for split, count in counts:
        for n in range(1, count + 1):
            category = CATEGORIES[k % 4]
            k += 1
            rgb = _rgb(shape, rng)
            vessels = (rng.random(shape) < 0.2).astype(np.uint8)
            stored = vessels * 255
            if gt_channels == 3:
                stored = np.repeat(stored[..., None], 3, axis=-1)
            image_file = write_png_like(root / split / "Original" / f"{n}_{category}.png", rgb)
            label_file = write_png_like(root / split / "Ground truth" / f"{n}_{category}.png", stored)
            cases[f"{split}_{n}_{category}"] = Image2D(rgb, stored, vessels, {"split": split, "category": category},
                                                       image_file, label_file)
    return cases


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file to a fraction of its length (a broken download)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to prove a folder was left untouched)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
