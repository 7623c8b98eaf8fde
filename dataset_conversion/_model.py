"""What a conversion talks about: cases, what discovery found, what converting a case measured, how a
data set is described, and the error that bad input or a refused output raises.

Standard library only, so that the command line can import it while registering its subcommands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from nnunet_deconver.errors import DeconverError
from nnunet_deconver.paper import PaperDataset

#: DatasetDefinition fields of a 2D RGB data set: one three-channel PNG per case read by nnU-Net's
#: NaturalImage2DIO, channels named R, G, B as in nnU-Net's own conversions of RGB data sets.
NATURAL_IMAGE_2D: dict[str, Any] = {"channel_names": {0: "R", 1: "G", 2: "B"}, "file_ending": ".png",
                                    "reader_writer": "NaturalImage2DIO"}
#: At most this many problems are spelled out in an error message.
MAX_LISTED_PROBLEMS = 30


class ConversionError(DeconverError):
    """Bad input or refused output of a conversion.

    The message names the file or case and what is wrong with it; the command line prints it as one
    ``PROG: error: MESSAGE`` line and exits with code 1, without a traceback.
    """


def format_problems(problems: Sequence[str], header: str) -> str:
    """A header line and the problems as a bullet list (at most :data:`MAX_LISTED_PROBLEMS`).

    Problems are collected rather than raised one by one, so that a single run names all of them.
    """
    lines = [header] + [f"  - {p}" for p in problems[:MAX_LISTED_PROBLEMS]]
    if len(problems) > MAX_LISTED_PROBLEMS:
        lines.append(f"  ... and {len(problems) - MAX_LISTED_PROBLEMS} more")
    return "\n".join(lines)


@dataclass(frozen=True)
class Case:
    """One training case as found in the raw folder.

    ``images`` are the source files in nnU-Net channel order (``_0000``, ``_0001``, ...; a 2D RGB
    image is one file holding three channels); ``metadata`` holds what discovery already knows
    (origin, grade, category, ...).
    """

    case_id: str
    images: tuple[Path, ...]
    label: Path
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Discovery:
    """Result of scanning a raw folder: the complete cases, the problems found on the way (they stop
    the conversion) and warnings (files or folders that belong to no case; reported, not fatal)."""

    cases: list[Case] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CaseResult:
    """What converting (or, in a dry run, validating) one case measured, e.g. its lesion volume."""

    case_id: str
    metadata: dict[str, Any] = field(default_factory=dict)


#: ``strata(cases, results) -> {case id: stratum}`` for the stratified cross-validation.
StrataFunction = Callable[[Sequence[Case], Mapping[str, CaseResult]], dict[str, str]]


@dataclass(frozen=True)
class DatasetDefinition:
    """Everything :func:`~dataset_conversion._convert.convert_dataset` needs to know about one data set.

    ``paper`` is the data set's entry in the paper's registry (:mod:`nnunet_deconver.paper`): its
    key, default id, nnU-Net name, title and folder name. ``convert_case(case, out_folder)`` reads and
    validates one case (raising :class:`ConversionError`) and, when ``out_folder`` is not None,
    writes its images to ``out_folder/imagesTr`` and its label to ``out_folder/labelsTr``. It runs in
    worker processes, so it must be a module-level function.
    """

    paper: PaperDataset
    expected_layout: str
    channel_names: Mapping[int, str]
    labels: Mapping[str, int | tuple[int, ...]]
    file_ending: str
    discover: Callable[[Path], Discovery]
    convert_case: Callable[[Case, Path | None], CaseResult]
    strata: StrataFunction
    stratified_by: str
    reference: str
    licence: str
    description: str
    regions_class_order: tuple[int, ...] | None = None
    reader_writer: str | None = None
