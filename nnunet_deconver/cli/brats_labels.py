"""``nnunet-deconver brats-labels``: Dataset502_BraTS23 predictions back to BraTS'23 labels.

The back-conversion itself is :func:`dataset_conversion.brats_labels.convert_prediction_folder`;
``python -m dataset_conversion.brats_labels`` runs the same command through :func:`script_main`.
Registration imports only the standard library; NumPy and SimpleITK load when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from nnunet_deconver.cli.reporting import NOTHING_WRITTEN, positive_int, report_errors
from nnunet_deconver.workers import default_workers

DESCRIPTION = ("Convert nnU-Net predictions of Dataset502_BraTS23 (region-based labels 1 edema, 2 necrosis, "
               "3 enhancing tumour) back to BraTS'23 labels (1 NCR, 2 SNFH, 3 ET), keeping file names and geometry.")


def add_brats_labels_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the BraTS back-conversion."""
    parser.add_argument("input_folder", metavar="IN_FOLDER", type=Path,
                        help="nnU-Net predictions (.nii.gz, labels 0-3 of Dataset502_BraTS23)")
    parser.add_argument("output_folder", metavar="OUT_FOLDER", type=Path,
                        help="where to write the same files with BraTS labels (must differ from IN_FOLDER; "
                             "written all at once: nothing appears there unless every file converts)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing non-empty OUT_FOLDER (swapped in only once complete)")
    parser.add_argument("-j", "--num-workers", type=positive_int, default=default_workers(),
                        help="worker processes (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run, interrupted_note=NOTHING_WRITTEN)


def run(args: argparse.Namespace) -> int:
    """Convert the folder; print the notes and a summary. Errors are raised, for :func:`report_errors`."""
    from dataset_conversion.brats_labels import convert_prediction_folder

    notes: list[str] = []
    try:
        written = convert_prediction_folder(args.input_folder, args.output_folder, args.num_workers,
                                            not args.no_progress, args.overwrite, notes)
    finally:
        for note in notes:
            print(f"note: {note}")
    print(f"wrote {len(written)} file(s) with BraTS labels (0 background, 1 NCR, 2 SNFH, 3 ET) "
          f"to {args.output_folder}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``brats-labels`` subcommand; it sets ``func`` (:func:`run`) and ``interrupted_note``."""
    parser = subparsers.add_parser(
        "brats-labels",
        help="convert Dataset502_BraTS23 predictions back to BraTS labels (1 NCR, 2 SNFH, 3 ET)",
        description=DESCRIPTION,
    )
    add_brats_labels_arguments(parser)


def script_main(argv: Sequence[str] | None = None) -> int:
    """``main()`` of ``python -m dataset_conversion.brats_labels``; returns the exit code.

    Errors are printed as ``brats_labels: error: MESSAGE`` (the module's name).
    """
    parser = argparse.ArgumentParser(prog="python -m dataset_conversion.brats_labels", description=DESCRIPTION)
    add_brats_labels_arguments(parser)
    return report_errors("brats_labels", lambda: parser.parse_args(argv))
