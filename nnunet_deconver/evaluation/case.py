"""One case: read prediction and reference, compute every target's figures; and the pool over cases.

Modelled on nnU-Net's ``compute_metrics`` / ``compute_metrics_on_folder``: one flat function per
case (:func:`evaluate_case`, picklable task in, typed result out) and a spawn pool over cases.
A case that cannot be evaluated (unreadable file, undeclared label values, another grid) comes
back as an error message, so that all problems are reported together and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from nnunet_deconver.evaluation.files import EvaluationError
from nnunet_deconver.evaluation.metrics import dice, hd95
from nnunet_deconver.evaluation.penalty import EmptyPenalty
from nnunet_deconver.evaluation.reading import compare_geometry, read_segmentation
from nnunet_deconver.evaluation.targets import Target

__all__ = ["Settings", "CaseTask", "TargetResult", "CaseResult", "evaluate_case", "run_cases"]


@dataclass(frozen=True)
class Settings:
    """How every case is evaluated."""

    targets: tuple[Target, ...]
    ignore_label: int | None
    allowed_values: frozenset[int]
    empty_penalty: EmptyPenalty
    hd95_definition: str = "directed-max"
    paper_metrics: bool = True
    challenge: str | None = None  # a key of challenge.CHALLENGES, or None for none


@dataclass(frozen=True)
class CaseTask:
    """Everything a worker needs to evaluate one prediction against its reference."""

    group: str  # fold ("0".."4") or "all"
    case: str
    prediction_file: str
    reference_file: str
    reader: Any  # an nnU-Net BaseReaderWriter instance (picklable)
    settings: Settings
    instance_file: str | None = None  # GlaS: the reference's gland instance map


@dataclass
class TargetResult:
    """The figures of one target (label or region) of one case."""

    fold: str
    case: str
    target: str
    label_or_region: str
    n_ref: int
    n_pred: int
    n_intersection: int
    spacing: tuple[float, ...]
    shape: tuple[int, ...]
    prediction_file: str
    reference_file: str
    dice: float | None = None  # paper metrics (None when not asked for)
    hd95: float | None = None
    challenge: dict[str, float] = field(default_factory=dict)

    def value(self, metric: str) -> float:
        """A figure by name: ``dice``, ``hd95`` or a challenge column."""
        if metric in self.challenge:
            return float(self.challenge[metric])
        v = getattr(self, metric, None) if metric in ("dice", "hd95") else None
        if v is None:
            raise KeyError(metric)
        return float(v)


@dataclass
class CaseResult:
    """All targets of one case, warnings about it, or the error that stopped it."""

    group: str
    case: str
    targets: list[TargetResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


def _read_instances(path: str, shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
    except OSError as e:
        raise EvaluationError(f"cannot read instance map {path}: {e}") from None
    if arr.shape != shape:
        raise EvaluationError(f"instance map {path} has size {arr.shape}, its reference has {shape}")
    return arr.astype(np.int64)


def _evaluate(task: CaseTask) -> CaseResult:
    from nnunetv2.evaluation.evaluate_predictions import region_or_label_to_mask

    s = task.settings
    ref = read_segmentation(task.reader, task.reference_file, s.allowed_values, "reference")
    pred = read_segmentation(task.reader, task.prediction_file, s.allowed_values, "prediction")
    result = CaseResult(task.group, task.case, warnings=compare_geometry(pred, ref))
    spacing = ref.spacing
    keep = None if s.ignore_label is None else ref.array != s.ignore_label
    instances = None
    if s.challenge == "glas" and task.instance_file is not None:
        instances = _read_instances(task.instance_file, ref.array.shape)
    for t in s.targets:
        m_ref = region_or_label_to_mask(ref.array, t.label_or_region)
        m_pred = region_or_label_to_mask(pred.array, t.label_or_region)
        if keep is not None:
            m_ref &= keep
            m_pred &= keep
        r = TargetResult(task.group, task.case, t.name, t.key, int(np.count_nonzero(m_ref)),
                         int(np.count_nonzero(m_pred)), int(np.count_nonzero(m_ref & m_pred)), spacing,
                         tuple(ref.array.shape), task.prediction_file, task.reference_file)
        if s.paper_metrics:
            r.dice = dice(m_pred, m_ref)
            r.hd95 = hd95(m_pred, m_ref, spacing, s.empty_penalty, s.hd95_definition)
        if s.challenge is not None:
            from nnunet_deconver.evaluation.challenge import compute

            r.challenge = compute(s.challenge, m_pred, m_ref, spacing, s.hd95_definition, s.empty_penalty,
                                  instances)
        result.targets.append(r)
    return result


def evaluate_case(task: CaseTask) -> CaseResult:
    """Evaluate one case; an input problem comes back in ``error`` (naming the file)."""
    try:
        return _evaluate(task)
    except EvaluationError as e:
        return CaseResult(task.group, task.case, error=str(e))


def run_cases(tasks: Sequence[CaseTask], num_processes: int, desc: str) -> list[CaseResult]:
    """Evaluate cases, in a spawn pool if ``num_processes`` > 1, with a progress bar on stderr."""
    from tqdm import tqdm

    if num_processes <= 1 or len(tasks) <= 1:
        return [evaluate_case(t) for t in tqdm(tasks, desc=desc, unit="case")]
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(min(num_processes, len(tasks))) as pool:
        it = pool.imap_unordered(evaluate_case, tasks, chunksize=1)
        return list(tqdm(it, total=len(tasks), desc=desc, unit="case"))
