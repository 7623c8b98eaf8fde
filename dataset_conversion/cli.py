"""``nnunet-deconver convert`` and ``nnunet-deconver brats-labels``.

Registration imports only the standard library; the conversion code (NumPy, SimpleITK, Pillow,
nnU-Net's ``generate_dataset_json``) loads when a subcommand runs.
"""

from __future__ import annotations

import argparse

from dataset_conversion._common import (DATASET_MODULES, add_brats_labels_arguments, add_conversion_arguments,
                                        load_definition, run_from_args)


def _run_convert(args: argparse.Namespace) -> int:
    return run_from_args(load_definition(args.dataset), args)


def _run_brats_labels(args: argparse.Namespace) -> int:
    from dataset_conversion import brats_labels

    return brats_labels.run_from_args(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert`` and ``brats-labels`` subcommands; each sets ``func(args) -> exit code``."""
    convert = subparsers.add_parser(
        "convert",
        help="convert ISLES'22 / BraTS'23 / GlaS / FIVES into nnU-Net's raw format",
        description="Convert a downloaded data set into $nnUNet_raw/DatasetXXX_Name (imagesTr, labelsTr, "
                    "dataset.json, splits_final.json with a stratified 5-fold split, case_metadata.json). "
                    "Ids: isles22 501, brats23 502, glas 503, fives 504.",
    )
    convert.add_argument("dataset", choices=list(DATASET_MODULES), help="which data set RAW_FOLDER holds")
    add_conversion_arguments(convert)
    convert.set_defaults(func=_run_convert)

    brats = subparsers.add_parser(
        "brats-labels",
        help="convert Dataset502_BraTS23 predictions back to BraTS labels (1 NCR, 2 SNFH, 3 ET)",
        description="Convert nnU-Net predictions of Dataset502_BraTS23 (region-based labels 1 edema, 2 necrosis, "
                    "3 enhancing tumour) back to BraTS'23 labels (1 NCR, 2 SNFH, 3 ET), keeping file names and "
                    "geometry.",
    )
    add_brats_labels_arguments(brats)
    brats.set_defaults(func=_run_brats_labels)
