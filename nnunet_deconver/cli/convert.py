"""``nnunet-deconver convert``, and the command line of the four ``dataset_conversion`` scripts.

Both take the same arguments (:func:`add_conversion_arguments`) and end the same way
(:func:`~nnunet_deconver.cli.reporting.report_errors`). ``convert KEY`` finds the data set's script
as ``dataset_conversion.<folder name>`` (e.g. ``Dataset501_ISLES22``, from
:mod:`nnunet_deconver.paper`); a script's ``main`` hands its own definition to :func:`script_main`.

Registration imports only the standard library; the conversion code (NumPy, SimpleITK, Pillow,
nnU-Net's ``generate_dataset_json``) loads when a conversion runs.
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from dataset_conversion._splits import DEFAULT_SEED
from nnunet_deconver.cli.reporting import NOTHING_WRITTEN, positive_int, report_errors
from nnunet_deconver.paper import DATASETS, get_dataset
from nnunet_deconver.workers import default_workers

if TYPE_CHECKING:
    from dataset_conversion._model import DatasetDefinition


def _dataset_id(text: str) -> int:
    """argparse type: an nnU-Net data set id, 1 to 999."""
    if not re.fullmatch(r"\d{1,3}", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"dataset id must be an integer from 1 to 999, got {text!r}")
    return int(text)


def add_conversion_arguments(parser: argparse.ArgumentParser, default_id: int | None = None) -> None:
    """Arguments common to the four scripts and ``nnunet-deconver convert``.

    ``default_id`` is the script's data set id, shown in the help; None (the subcommand) lists all.
    """
    parser.add_argument("raw_folder", metavar="RAW_FOLDER", type=Path,
                        help="the data set as downloaded and unpacked")
    id_default = str(default_id) if default_id is not None else \
        " / ".join(str(d.dataset_id) for d in DATASETS.values())
    parser.add_argument("--dataset-id", type=_dataset_id, default=None,
                        help=f"nnU-Net data set id (default: {id_default})")
    parser.add_argument("--output-root", type=Path, default=None,
                        help="folder to write DatasetXXX_Name into (default: $nnUNet_raw)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output data set (swapped in only once complete)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check all inputs, print what would be converted and the problems found; write nothing")
    parser.add_argument("-j", "--num-workers", type=positive_int, default=default_workers(),
                        help="worker processes (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="seed of the stratified 5-fold split (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def convert(definition: DatasetDefinition, args: argparse.Namespace) -> int:
    """Run the conversion of ``definition`` with the parsed arguments; return the exit code.

    Errors are raised (:class:`~dataset_conversion._model.ConversionError`, :class:`OSError`), for
    :func:`report_errors` to print.
    """
    from dataset_conversion._convert import convert_dataset

    return convert_dataset(definition, args.raw_folder, dataset_id=args.dataset_id, output_root=args.output_root,
                           overwrite=args.overwrite, dry_run=args.dry_run, num_workers=args.num_workers,
                           seed=args.seed, progress=not args.no_progress)


def run(args: argparse.Namespace) -> int:
    """``nnunet-deconver convert KEY RAW_FOLDER ...``: the definition comes from the data set's script,
    ``dataset_conversion.DatasetXXX_Name`` (the paper's folder name)."""
    script = importlib.import_module(f"dataset_conversion.{get_dataset(args.dataset).folder_name}")
    return convert(script.DEFINITION, args)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert`` subcommand; it sets ``func`` (:func:`run`) and ``interrupted_note``."""
    ids = ", ".join(f"{key} {d.dataset_id}" for key, d in DATASETS.items())
    titles = " / ".join(d.title for d in DATASETS.values())
    parser = subparsers.add_parser(
        "convert",
        help=f"convert {titles} into nnU-Net's raw format",
        description="Convert a downloaded data set into $nnUNet_raw/DatasetXXX_Name (imagesTr, labelsTr, "
                    "dataset.json, splits_final.json with a stratified 5-fold split, case_metadata.json). "
                    f"Ids: {ids}.",
    )
    parser.add_argument("dataset", choices=list(DATASETS), help="which data set RAW_FOLDER holds")
    add_conversion_arguments(parser)
    parser.set_defaults(func=run, interrupted_note=NOTHING_WRITTEN)


def script_main(definition: DatasetDefinition, argv: Sequence[str] | None = None) -> int:
    """``main()`` of a ``dataset_conversion.DatasetXXX_Name`` script; returns the exit code.

    Errors are printed as ``DatasetXXX_Name: error: MESSAGE`` (the module's name).
    """
    module = definition.paper.folder_name
    parser = argparse.ArgumentParser(
        prog=f"python -m dataset_conversion.{module}",
        description=f"Convert {definition.paper.title} into nnU-Net's raw format ($nnUNet_raw/{module}).",
        epilog=f"Expected layout of RAW_FOLDER:\n{definition.expected_layout}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_conversion_arguments(parser, definition.paper.dataset_id)
    parser.set_defaults(func=lambda args: convert(definition, args), interrupted_note=NOTHING_WRITTEN)
    return report_errors(module, lambda: parser.parse_args(argv))
