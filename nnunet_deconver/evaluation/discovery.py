"""Which prediction / reference pairs to evaluate, per fold, and what is missing.

* Cross-validation: ``fold_k/validation/*<file_ending>`` of the model folder against
  ``labelsTr``; ``splits_final.json`` (when present in ``$nnUNet_preprocessed``) says which cases
  each fold should hold.
* Two folders: predictions against references of the same file name (one group, ``"all"``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from nnunet_deconver.errors import describe_os_error
from nnunet_deconver.evaluation.files import EvaluationError, load_json_file, warn

__all__ = ["Inventory", "case_files", "short_list", "read_splits", "crossval_inventory",
           "folders_inventory", "warn_inventory"]


@dataclass
class Inventory:
    """Which prediction/reference pairs exist per group, and what is missing."""

    groups: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # case, pred, ref
    requested_groups: list[str] = field(default_factory=list)
    missing_groups: dict[str, str] = field(default_factory=dict)  # group -> missing folder
    missing_cases: dict[str, list[str]] = field(default_factory=dict)  # expected, no prediction
    without_reference: dict[str, list[str]] = field(default_factory=dict)  # prediction, no ref
    unexpected_cases: dict[str, list[str]] = field(default_factory=dict)  # not in the split
    unassigned_references: list[str] = field(default_factory=list)  # in no group
    splits_file: str | None = None

    def as_dict(self) -> dict:
        return {
            "requested_folds": self.requested_groups,
            "missing_folds": self.missing_groups,
            "missing_cases": self.missing_cases,
            "predictions_without_reference": self.without_reference,
            "predictions_not_in_split": self.unexpected_cases,
            "references_without_prediction": self.unassigned_references,
            "splits_file": self.splits_file,
        }

    @property
    def anything_missing(self) -> bool:
        return bool(self.missing_groups or any(self.missing_cases.values())
                    or any(self.without_reference.values()) or self.unassigned_references)


def case_files(folder: str, file_ending: str, what: str) -> dict[str, str]:
    """case id -> path of the files in ``folder`` ending in ``file_ending`` (sorted)."""
    from batchgenerators.utilities.file_and_folder_operations import subfiles

    try:
        names = subfiles(folder, join=False, suffix=file_ending, sort=True)
        others = [n for n in os.listdir(folder) if n.endswith(file_ending) and n not in names]
    except OSError as e:
        raise EvaluationError(f"cannot read {what} {folder}: {describe_os_error(e)}") from None
    for n in sorted(others):  # named like a case but not a file: say so rather than "missing"
        path = os.path.join(folder, n)
        kind = "a folder" if os.path.isdir(path) else "a broken or looping symbolic link" \
            if os.path.islink(path) else "not a regular file"
        raise EvaluationError(f"{path} in the {what} is {kind}, not a segmentation file")
    return {n[: -len(file_ending)]: os.path.join(folder, n) for n in names}


def short_list(items: Sequence[str], limit: int = 20) -> str:
    items = list(items)
    text = ", ".join(items[:limit])
    if len(items) > limit:
        text += f", ... ({len(items) - limit} more)"
    return text


def read_splits(path: str) -> list[list[str]]:
    """Validation cases per fold from nnU-Net's ``splits_final.json`` (checked for its shape)."""
    splits: Any = load_json_file(path, "splits file")
    shape = "a list of {\"train\": [...], \"val\": [...]} objects, one per fold"
    if not isinstance(splits, list):
        raise EvaluationError(f"splits file {path} must hold {shape}, not {type(splits).__name__}")
    out = []
    for k, split in enumerate(splits):
        val = split.get("val") if isinstance(split, dict) else None
        if not (isinstance(val, list) and all(isinstance(c, str) for c in val)):
            raise EvaluationError(f"splits file {path}: fold {k} is not an object with a \"val\" list of "
                                  f"case names (expected {shape})")
        out.append(list(val))
    return out


def crossval_inventory(model_folder: str, refs: dict[str, str], file_ending: str, folds: Sequence[str],
                       splits: list[list[str]] | None, splits_file: str | None) -> Inventory:
    """Pairs of each requested fold's validation predictions with their references."""
    inv = Inventory(requested_groups=list(folds), splits_file=splits_file)
    evaluated: set[str] = set()
    for g in inv.requested_groups:
        expected = splits[int(g)] if splits is not None and g.isdigit() and int(g) < len(splits) else None
        val_folder = os.path.join(model_folder, f"fold_{g}", "validation")
        if not os.path.isdir(val_folder):
            inv.missing_groups[g] = val_folder
            if expected is not None:
                inv.missing_cases[g] = sorted(expected)
            continue
        preds = case_files(val_folder, file_ending, "prediction folder")
        inv.missing_cases[g] = sorted(c for c in (expected or []) if c not in preds)
        inv.without_reference[g] = sorted(c for c in preds if c not in refs)
        inv.unexpected_cases[g] = sorted(c for c in preds if expected is not None and c not in expected
                                         and c in refs)
        inv.groups[g] = [(c, p, refs[c]) for c, p in preds.items() if c in refs]
        evaluated.update(c for c, _, _ in inv.groups[g])
    inv.unassigned_references = sorted(set(refs) - evaluated)
    return inv


def folders_inventory(preds: dict[str, str], refs: dict[str, str]) -> Inventory:
    """One group ``"all"``: predictions paired with references by file name."""
    g = "all"
    inv = Inventory(requested_groups=[g])
    inv.groups[g] = [(c, p, refs[c]) for c, p in preds.items() if c in refs]
    inv.missing_cases[g] = sorted(c for c in refs if c not in preds)
    inv.without_reference[g] = sorted(c for c in preds if c not in refs)
    return inv


def warn_inventory(inv: Inventory, what: str = "fold") -> None:
    """Print every missing item as a warning on stderr."""
    for g, folder in inv.missing_groups.items():
        warn(f"{what} {g} missing: no folder {folder}")
    for g, cases in inv.missing_cases.items():
        if cases:
            warn(f"{what} {g}: {len(cases)} case(s) without prediction: {short_list(cases)}")
    for g, cases in inv.without_reference.items():
        if cases:
            warn(f"{what} {g}: {len(cases)} prediction(s) without reference, not evaluated: "
                 f"{short_list(cases)}")
    for g, cases in inv.unexpected_cases.items():
        if cases:
            warn(f"{what} {g}: {len(cases)} prediction(s) not in this fold's split "
                 f"({inv.splits_file}), evaluated anyway: {short_list(cases)}")
    if inv.unassigned_references:
        warn(f"{len(inv.unassigned_references)} reference(s) without a prediction in any "
             f"evaluated {what}: {short_list(inv.unassigned_references)}")
