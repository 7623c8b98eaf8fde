"""Reading, checking and writing the images of the four data sets.

3D volumes (ISLES'22, BraTS'23) go through SimpleITK, after a check of the whole NIfTI file against
its header (read by nibabel, see :func:`scan_nifti`); 2D images (GlaS, FIVES) go through Pillow.
Every reader turns a failure into a :class:`ConversionError` naming the case, the file and the
problem.
"""

from __future__ import annotations

import gzip
import shutil
import zlib
from pathlib import Path
from typing import Callable, Collection, Sequence

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nibabel.spatialimages import HeaderDataError
from PIL import Image

from dataset_conversion._model import Case, CaseResult, ConversionError
from nnunet_deconver.errors import describe_os_error, os_error_message

#: Spacing (mm), origin (mm) and direction cosines of two volumes may differ by this much.
GRID_TOLERANCE = 1e-3
#: Bytes that hold a NIfTI-1 (348) or NIfTI-2 (540) header.
_HEADER_BYTES = max(nib.Nifti1Header.sizeof_hdr, nib.Nifti2Header.sizeof_hdr)


# --------------------------------------------------------------------------------------------
# 3D (NIfTI: header through nibabel, voxels through SimpleITK)
# --------------------------------------------------------------------------------------------


def _nifti_layout(header: bytes) -> tuple[int, int, np.dtype | None] | None:
    """(bytes the file must hold, byte offset of the voxels, their dtype if floating point) of a
    single-file NIfTI-1/2 header (read by nibabel); None if ``header`` is not one."""
    for header_class in (nib.Nifti1Header, nib.Nifti2Header):
        block = header[:header_class.sizeof_hdr]
        if not header_class.may_contain_header(block):
            continue
        try:
            parsed = header_class(block, check=False)
            if parsed["magic"].item() != header_class.single_magic:  # a .hdr / .img pair: no voxels here
                continue
            shape = parsed.get_data_shape()
            try:
                dtype: np.dtype | None = parsed.get_data_dtype()
                item_size = dtype.itemsize
            except HeaderDataError:  # a datatype nibabel does not know: bitpix still gives the size
                dtype, item_size = None, max(int(parsed["bitpix"]), 0) // 8
        except (HeaderDataError, ValueError):
            continue
        voxels = int(np.prod([max(int(d), 1) for d in shape], dtype=np.int64))
        offset = max(int(parsed.get_data_offset()), header_class.sizeof_hdr)
        floating = dtype if dtype is not None and dtype.kind == "f" else None
        return offset + voxels * item_size, offset, floating
    return None


def scan_nifti(path: Path) -> tuple[str | None, int, int]:
    """(why the file is damaged or truncated or None, number of NaN voxels, of infinite voxels).

    ITK reads a truncated ``.nii.gz`` without complaint (the missing voxels come out as zeros) and
    turns NaN and infinite voxels into zeros, so the whole stream is decompressed here: its length
    is compared with what the header announces and floating-point voxels are checked.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    counts = [0, 0]
    try:
        with opener(path, "rb") as handle:
            header = handle.read(_HEADER_BYTES)
            layout = _nifti_layout(header)
            size, pending, chunk = 0, b"", header
            while chunk:
                if layout is not None and layout[2] is not None:
                    end, offset, dtype = layout
                    pending += chunk[max(0, offset - size):max(0, end - size)]
                    usable = len(pending) // dtype.itemsize * dtype.itemsize
                    values = np.frombuffer(pending[:usable], dtype)
                    counts[0] += int(np.isnan(values).sum())
                    counts[1] += int(np.isinf(values).sum())
                    pending = pending[usable:]
                size += len(chunk)
                chunk = handle.read(1 << 22)
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # the system refused: not the file's fault
            return os_error_message(exc, "read", path).replace(f"cannot read {path}: ", "", 1), 0, 0
        return f"damaged or truncated file ({exc})", 0, 0
    if layout is not None and size < layout[0]:
        return f"truncated file: {size} bytes, the NIfTI header announces {layout[0]}", 0, 0
    return None, counts[0], counts[1]


def nifti_completeness_problem(path: Path) -> str | None:
    """Why a NIfTI file is damaged or truncated, or None (see :func:`scan_nifti`)."""
    return scan_nifti(path)[0]


def read_volume(path: Path, what: str, case_id: str) -> sitk.Image:
    """Read a 3D scalar volume; :class:`ConversionError` if it is unreadable, truncated, holds NaN or
    infinite voxels or is not 3D."""
    problem, n_nan, n_inf = scan_nifti(path)
    if problem is not None:
        raise ConversionError(f"{case_id}: cannot read the {what} file {path}: {problem}")
    if n_nan or n_inf:
        raise ConversionError(f"{case_id}: the {what} file {path} holds {n_nan} NaN and {n_inf} infinite voxel(s); "
                              f"only finite values are accepted (readers differ in what they make of the others)")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ConversionError(f"{case_id}: cannot read the {what} file {path}: unreadable image "
                              f"({lines[-1] if lines else exc})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ConversionError(f"{case_id}: the {what} file {path} is not a 3D scalar volume "
                              f"(size {image.GetSize()}, {image.GetNumberOfComponentsPerPixel()} component(s))")
    return image


def _write_image(image: sitk.Image, path: Path) -> None:
    """``sitk.WriteImage`` with its RuntimeError (disk full, permission) as :class:`ConversionError`."""
    try:
        sitk.WriteImage(image, str(path), True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ConversionError(f"cannot write {path}: {lines[-1] if lines else exc}") from None


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def check_same_grid(reference: sitk.Image, reference_file: Path, reference_what: str,
                    image: sitk.Image, image_file: Path, what: str, case_id: str) -> None:
    """Raise :class:`ConversionError` unless ``image`` lies on ``reference``'s voxel grid.

    Sizes must be equal; spacing, origin and direction may differ by :data:`GRID_TOLERANCE`.
    """
    differences = []
    if image.GetSize() != reference.GetSize():
        differences.append(f"size {image.GetSize()} instead of {reference.GetSize()}")
    for name, getter in (("spacing", "GetSpacing"), ("origin", "GetOrigin"), ("direction", "GetDirection")):
        mine, theirs = getattr(image, getter)(), getattr(reference, getter)()
        if not np.allclose(mine, theirs, rtol=0, atol=GRID_TOLERANCE):
            differences.append(f"{name} {_fmt(mine)} instead of {_fmt(theirs)}")
    if differences:
        raise ConversionError(f"{case_id}: the {what} file {image_file} is on another grid than the "
                              f"{reference_what} file {reference_file}: {'; '.join(differences)}")


def check_label_values(values: np.ndarray, allowed: Collection[int], path: Path, what: str, case_id: str) -> None:
    """Raise :class:`ConversionError` naming the values of ``values`` outside ``allowed``."""
    found = np.unique(values)
    unexpected = [v for v in found.tolist() if v not in set(allowed)]
    if unexpected:
        shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in unexpected[:10])
        more = f" (and {len(unexpected) - 10} more)" if len(unexpected) > 10 else ""
        raise ConversionError(f"{case_id}: the {what} file {path} holds label values outside "
                              f"{{{', '.join(str(a) for a in sorted(allowed))}}}: {shown}{more}")


def load_volume_case(case: Case, channel_names: Sequence[str], label_name: str,
                     allowed_labels: Collection[int]) -> tuple[list[sitk.Image], np.ndarray]:
    """Read a 3D case: its channels (all on the first channel's grid) and its label array.

    The label must lie on the same grid and hold only ``allowed_labels``.
    """
    images = [read_volume(path, what, case.case_id) for path, what in zip(case.images, channel_names)]
    for image, path, what in zip(images[1:], case.images[1:], channel_names[1:]):
        check_same_grid(images[0], case.images[0], channel_names[0], image, path, what, case.case_id)
    label_image = read_volume(case.label, label_name, case.case_id)
    check_same_grid(images[0], case.images[0], channel_names[0], label_image, case.label, label_name, case.case_id)
    label = sitk.GetArrayFromImage(label_image)
    check_label_values(label, allowed_labels, case.label, label_name, case.case_id)
    return images, label


def voxel_volume_ml(image: sitk.Image) -> float:
    """Volume of one voxel in millilitres (spacing in mm)."""
    return float(np.prod(image.GetSpacing())) / 1000.0


def _same_geometry(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and a.GetSpacing() == b.GetSpacing() and a.GetOrigin() == b.GetOrigin()
            and a.GetDirection() == b.GetDirection())


def write_volume_case(case: Case, images: Sequence[sitk.Image], label: np.ndarray, out_folder: Path) -> None:
    """Write ``imagesTr/{case}_{i:04d}.nii.gz`` and ``labelsTr/{case}.nii.gz`` (uint8).

    All files get the first channel's geometry, so that grids equal within
    :data:`GRID_TOLERANCE` become exactly equal for nnU-Net. A ``.nii.gz`` channel that already has
    exactly that geometry is copied byte for byte (as nnU-Net's own BraTS conversion does), which
    saves recompressing 1,251 x 4 BraTS volumes; others are written by SimpleITK.
    """
    reference = images[0]
    for index, (image, source) in enumerate(zip(images, case.images)):
        target = out_folder / "imagesTr" / f"{case.case_id}_{index:04d}.nii.gz"
        if source.name.endswith(".nii.gz") and _same_geometry(image, reference):
            shutil.copyfile(source, target)
            continue
        image = sitk.Image(image)
        image.CopyInformation(reference)
        _write_image(image, target)
    label_image = sitk.GetImageFromArray(label.astype(np.uint8))
    label_image.CopyInformation(reference)
    _write_image(label_image, out_folder / "labelsTr" / f"{case.case_id}.nii.gz")


# --------------------------------------------------------------------------------------------
# 2D (PNG / BMP through Pillow)
# --------------------------------------------------------------------------------------------


def _read_2d(path: Path, what: str, case_id: str) -> tuple[np.ndarray, str]:
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode == "P" and what == "image":
                image = image.convert("RGB")
                mode = "RGB"
            array = np.asarray(image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        reason = describe_os_error(exc) if isinstance(exc, OSError) and exc.errno is not None else exc
        raise ConversionError(f"{case_id}: cannot read the {what} file {path}: {reason}") from None
    return array, mode


def read_rgb(path: Path, what: str, case_id: str) -> np.ndarray:
    """An 8-bit RGB image as an (H, W, 3) uint8 array; an alpha channel is dropped."""
    array, mode = _read_2d(path, what, case_id)
    if mode not in ("RGB", "RGBA"):
        raise ConversionError(f"{case_id}: the {what} file {path} is not an RGB image (mode {mode}, "
                              f"shape {array.shape})")
    return np.ascontiguousarray(array[..., :3])


def read_mask_2d(path: Path, what: str, case_id: str, colour_instances: bool = False) -> np.ndarray:
    """A 2D label map as an (H, W) integer array.

    Accepts one channel (grey, palette indices, 16/32-bit, 1-bit as 0/255) or three / four
    channels whose colour channels are equal (ground truth saved as RGB). With
    ``colour_instances`` differing colour channels are accepted too (an instance map with one
    colour per object) and packed into one integer per pixel (0 stays 0).
    """
    array, mode = _read_2d(path, what, case_id)
    if mode == "1":
        return array.astype(np.uint8) * 255
    if array.ndim == 3:
        if array.shape[-1] == 2:  # grey + alpha
            return array[..., 0]
        colours = array[..., :3]
        if colour_instances:
            packed = colours.astype(np.uint32)
            return (packed[..., 0] << 16) | (packed[..., 1] << 8) | packed[..., 2]
        if not (np.array_equal(colours[..., 0], colours[..., 1]) and np.array_equal(colours[..., 0], colours[..., 2])):
            raise ConversionError(f"{case_id}: the {what} file {path} has three colour channels that differ; "
                                  f"expected a grey label map (stored with one or three equal channels)")
        return colours[..., 0]
    if array.ndim != 2:
        raise ConversionError(f"{case_id}: the {what} file {path} is not a 2D label map (shape {array.shape})")
    return array


def write_png(array: np.ndarray, path: Path) -> None:
    """Write a uint8 (H, W) or (H, W, 3) array as PNG (lossless, deterministic)."""
    Image.fromarray(np.ascontiguousarray(array.astype(np.uint8))).save(path, format="PNG")


def convert_rgb_case(case: Case, out_folder: Path | None, to_binary: Callable[[np.ndarray, Case], np.ndarray],
                     colour_instances: bool = False) -> CaseResult:
    """Read, check and (if ``out_folder``) write a 2D case: one RGB image and one binary label.

    ``to_binary(mask, case)`` turns the stored annotation into a 0/1 array (raising
    :class:`ConversionError` on unexpected values); ``colour_instances`` is passed to
    :func:`read_mask_2d`. The image is written as one three-channel
    ``{case}_0000.png`` (nnU-Net's NaturalImage2DIO convention), the label as ``{case}.png``.
    """
    rgb = read_rgb(case.images[0], "image", case.case_id)
    mask = read_mask_2d(case.label, "annotation", case.case_id, colour_instances)
    if mask.shape != rgb.shape[:2]:
        raise ConversionError(f"{case.case_id}: the annotation file {case.label} is {mask.shape[1]}x{mask.shape[0]} "
                              f"pixels but the image file {case.images[0]} is {rgb.shape[1]}x{rgb.shape[0]}")
    label = to_binary(mask, case).astype(np.uint8)
    if out_folder is not None:
        write_png(rgb, out_folder / "imagesTr" / f"{case.case_id}_0000.png")
        write_png(label, out_folder / "labelsTr" / f"{case.case_id}.png")
    return CaseResult(case.case_id, {"height": int(rgb.shape[0]), "width": int(rgb.shape[1]),
                                     "foreground_fraction": round(float(label.mean()), 6)})
