"""What to evaluate, from a dataset.json: labels or regions, their names and the allowed values.

The dataset.json is checked for the shape nnU-Net expects (an object with ``labels`` mapping names
to an integer or a list of integers, a ``file_ending`` string); anything else is an
:class:`~nnunet_deconver.evaluation.files.EvaluationError` naming the file. Labels and regions
come from nnU-Net's ``LabelManager``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nnunet_deconver.evaluation.files import EvaluationError, load_json_file

__all__ = ["Target", "DatasetSpec", "read_dataset_json", "targets_from_dataset_json"]


@dataclass(frozen=True)
class Target:
    """A label (int) or region (tuple of label values) to evaluate, named as in dataset.json."""

    name: str
    label_or_region: int | tuple[int, ...]

    @property
    def values(self) -> tuple[int, ...]:
        v = self.label_or_region
        return (v,) if isinstance(v, int) else tuple(v)

    @property
    def key(self) -> str:
        """nnU-Net's key for the label or region (``str(label_or_region)``)."""
        return str(self.label_or_region)


@dataclass(frozen=True)
class DatasetSpec:
    """The parts of a dataset.json the evaluation uses."""

    path: str
    content: dict
    file_ending: str
    targets: tuple[Target, ...]
    region_based: bool
    ignore_label: int | None
    allowed_values: frozenset[int]  # every label value a segmentation may hold
    name: str | None


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_shape(dj: Any, path: str) -> None:
    if not isinstance(dj, dict):
        raise EvaluationError(f"dataset.json {path} must hold a JSON object, not {type(dj).__name__}")
    labels = dj.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise EvaluationError(f"dataset.json {path}: 'labels' must be a non-empty object mapping names "
                              f"to label values, got {labels!r}"[:300])
    for name, value in labels.items():
        ok = _is_int(value) or (isinstance(value, list) and value and all(_is_int(v) for v in value))
        if not ok:
            raise EvaluationError(f"dataset.json {path}: label {name!r} must be an integer or a list of "
                                  f"integers, got {value!r}"[:300])
    ending = dj.get("file_ending")
    if not isinstance(ending, str) or not ending:
        raise EvaluationError(f"dataset.json {path} has no 'file_ending' string (e.g. \".nii.gz\")")
    rco = dj.get("regions_class_order")
    if rco is not None and not (isinstance(rco, list) and all(_is_int(v) for v in rco)):
        raise EvaluationError(f"dataset.json {path}: 'regions_class_order' must be a list of integers, "
                              f"got {rco!r}"[:300])


def targets_from_dataset_json(dataset_json: dict, path: str = "dataset.json"
                              ) -> tuple[list[Target], bool, int | None]:
    """Labels or regions to evaluate, as nnU-Net's ``LabelManager`` sees the dataset.json.

    Returns:
        ``(targets, region_based, ignore_label)``: foreground regions for region-based data
        sets (labels with lists of values + ``regions_class_order``), else foreground labels.
    """
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    if "labels" not in dataset_json:
        raise EvaluationError(f"{path} has no 'labels' entry")
    label_dict = dataset_json["labels"]
    try:
        lm = LabelManager(label_dict, dataset_json.get("regions_class_order"))
    except (AssertionError, RuntimeError, TypeError, ValueError, KeyError) as e:
        raise EvaluationError(f"{path}: labels not usable by nnU-Net: {e}") from None
    wanted = lm.foreground_regions if lm.has_regions else lm.foreground_labels

    def norm(v: Any) -> int | tuple[int, ...]:
        if isinstance(v, (list, tuple)):
            return tuple(int(i) for i in v)
        return int(v)

    names: dict[Any, str] = {}
    for name, value in label_dict.items():
        if name == "ignore":
            continue
        names.setdefault(norm(value), name)
        if isinstance(value, (list, tuple)) and len(value) == 1:
            names.setdefault(int(value[0]), name)
    targets = [Target(names.get(norm(v), str(norm(v))), norm(v)) for v in wanted]
    if not targets:
        raise EvaluationError(f"{path} declares no foreground label or region")
    return targets, bool(lm.has_regions), lm.ignore_label


def read_dataset_json(path: str) -> DatasetSpec:
    """Read and check a dataset.json; :class:`EvaluationError` naming it if unusable."""
    dj = load_json_file(path, "dataset.json")
    _check_shape(dj, path)
    targets, region_based, ignore_label = targets_from_dataset_json(dj, path)
    allowed: set[int] = set()
    for value in dj["labels"].values():
        allowed.update(value if isinstance(value, list) else [value])
    name = dj.get("name") if isinstance(dj.get("name"), str) else None
    return DatasetSpec(path, dj, dj["file_ending"], tuple(targets), region_based, ignore_label,
                       frozenset(int(v) for v in allowed), name)
