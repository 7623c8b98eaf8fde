"""Reading a segmentation defensively, and checking a prediction against its reference.

* The file is read completely: ITK reads a truncated ``.nii.gz`` without complaint (the missing
  voxels come out as zeros), so NIfTI files are decompressed in full first and their length is
  compared with what the header announces.
* Values must be integers among the label values dataset.json declares (a mask stored as 0/255,
  or a label the data set does not have, is an error naming the file and the values).
* A prediction must have its reference's size and spacing (error otherwise); a different origin or
  direction, which nnU-Net itself accepts with a warning, gives a warning.

Images are read with nnU-Net's reader for the data set's file ending.
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from nnunet_deconver.errors import describe_os_error
from nnunet_deconver.evaluation.files import EvaluationError

__all__ = ["GRID_TOLERANCE", "Segmentation", "read_segmentation", "compare_geometry"]

#: Spacing (mm), origin (mm), direction cosines and affine entries may differ by this much.
GRID_TOLERANCE = 1e-3


@dataclass
class Segmentation:
    """A label map (X, Y) or (X, Y, Z) of integers, its spacing per array axis and geometry."""

    path: str
    array: np.ndarray
    spacing: tuple[float, ...]
    geometry: dict[str, tuple[float, ...]]  # what the reader reports: origin, direction, affine


def _nifti_problem(path: str) -> str | None:
    """Why a NIfTI file is incomplete or damaged, or None."""
    import nibabel

    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        return describe_os_error(e)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        return f"damaged or truncated compressed file ({e})"
    except OSError as e:
        return describe_os_error(e)
    header_class = None
    for cls, size in ((nibabel.Nifti1Header, 348), (nibabel.Nifti2Header, 540)):
        for order in ("<", ">"):
            if len(raw) >= size and int(np.frombuffer(raw[:4], dtype=order + "i4")[0]) == size:
                header_class = cls
    if header_class is None:
        return "not a NIfTI file (no NIfTI header)"
    try:
        header = header_class.from_fileobj(io.BytesIO(raw))
        n_voxels = int(np.prod(header.get_data_shape(), dtype=np.int64))
        expected = int(header.get_data_offset()) + n_voxels * header.get_data_dtype().itemsize
    except Exception as e:  # noqa: BLE001 - any header parsing failure is a damaged header
        return f"damaged NIfTI header ({e})"
    if len(raw) < expected:
        return f"truncated file: {len(raw)} bytes, the NIfTI header announces {expected}"
    return None


def _last_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _show(values: Iterable[float], limit: int = 10) -> str:
    values = list(values)
    text = ", ".join(f"{v:g}" if float(v) != int(v) else str(int(v)) for v in values[:limit])
    return text + (f" (and {len(values) - limit} more)" if len(values) > limit else "")


def _as_labels(array: np.ndarray, path: str, what: str, allowed: frozenset[int]) -> np.ndarray:
    """Integer label map; :class:`EvaluationError` for non-integers or undeclared values."""
    ints = array.astype(np.int64)
    bad = ints != array  # NaN, inf and fractions
    if bad.any():
        examples = np.unique(array[bad])[:5]
        raise EvaluationError(f"{what} {path} holds values that are not integer labels: "
                              f"{_show(examples)}")
    lo, hi = int(ints.min()), int(ints.max())
    if lo >= 0 and hi < 65536:
        found = np.flatnonzero(np.bincount(ints.ravel()))
    else:
        found = np.unique(ints)
    unexpected = sorted(set(int(v) for v in found) - allowed)
    if unexpected:
        raise EvaluationError(f"{what} {path} holds label values that dataset.json does not declare "
                              f"(declared: {_show(sorted(allowed))}): {_show(unexpected)}")
    dtype = np.uint8 if lo >= 0 and hi < 256 else np.int32
    return ints.astype(dtype)


def read_segmentation(reader: Any, path: str, allowed: frozenset[int], what: str) -> Segmentation:
    """Read one segmentation completely and check its values.

    Args:
        reader: an nnU-Net ``BaseReaderWriter`` instance for the data set's file ending.
        path: the file.
        allowed: label values dataset.json declares.
        what: ``"prediction"`` or ``"reference"`` (for messages).
    """
    if path.endswith((".nii", ".nii.gz")):
        problem = _nifti_problem(path)
        if problem is not None:
            raise EvaluationError(f"cannot read {what} {path}: {problem}")
    try:
        seg, props = reader.read_seg(path)
    except OSError as e:
        raise EvaluationError(f"cannot read {what} {path}: {describe_os_error(e)}") from None
    except Exception as e:  # noqa: BLE001 - readers raise anything; re-raised naming the file
        raise EvaluationError(f"cannot read {what} {path}: unreadable image ({_last_line(e)})") from None
    if seg.ndim != 4 or seg.shape[0] != 1:
        raise EvaluationError(f"{what} {path}: expected a single-channel segmentation, the reader "
                              f"gave shape {seg.shape}")
    array = seg[0]
    spacing = tuple(float(s) for s in props["spacing"])
    if array.shape[0] == 1:
        # nnU-Net reads 2D images as one slice (spacing[0] is a dummy like 999): evaluate in 2D.
        array, spacing = array[0], spacing[1:]
    geometry: dict[str, tuple[float, ...]] = {}
    sitk_stuff = props.get("sitk_stuff") or {}
    for key in ("origin", "direction"):
        if key in sitk_stuff:
            geometry[key] = tuple(float(v) for v in sitk_stuff[key])
    nib_stuff = props.get("nibabel_stuff") or {}
    if "original_affine" in nib_stuff:
        geometry["affine"] = tuple(float(v) for v in np.asarray(nib_stuff["original_affine"]).ravel())
    return Segmentation(path, _as_labels(array, path, what, allowed), spacing, geometry)


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def compare_geometry(pred: Segmentation, ref: Segmentation) -> list[str]:
    """Check that ``pred`` lies on ``ref``'s grid.

    Raises:
        EvaluationError: size or spacing differ (beyond :data:`GRID_TOLERANCE` for spacing).

    Returns:
        Warnings for origin / direction / affine differences beyond :data:`GRID_TOLERANCE`.
    """
    if pred.array.shape != ref.array.shape:
        raise EvaluationError(f"prediction {pred.path} has size {pred.array.shape}, its reference "
                              f"{ref.path} has size {ref.array.shape}")
    if not np.allclose(pred.spacing, ref.spacing, rtol=0, atol=GRID_TOLERANCE):
        raise EvaluationError(f"prediction {pred.path} has spacing {_fmt(pred.spacing)}, its reference "
                              f"{ref.path} has spacing {_fmt(ref.spacing)}")
    warnings = []
    for key, mine in pred.geometry.items():
        theirs = ref.geometry.get(key)
        if theirs is not None and not np.allclose(mine, theirs, rtol=0, atol=GRID_TOLERANCE):
            warnings.append(f"prediction {pred.path} has {key} {_fmt(mine)}, its reference {ref.path} "
                            f"has {_fmt(theirs)} (evaluated voxel by voxel; nnU-Net accepts this too)")
    return warnings
