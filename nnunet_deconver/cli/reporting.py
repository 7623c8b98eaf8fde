"""The one way a command ends in failure: one line on stderr and an exit code, never a traceback.

- a :class:`~nnunet_deconver.errors.DeconverError` (any area's: conversion, evaluation, plans) or an
  :class:`OSError`: ``PROG: error: MESSAGE``, exit code 1;
- Ctrl-C or SIGTERM: ``PROG: interrupted (Ctrl-C, SIGINT)`` / ``PROG: stopped by SIGTERM`` plus
  the command's ``interrupted_note`` (e.g. that nothing was written), exit code 130 / 143.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Callable

from nnunet_deconver.errors import DeconverError, os_error_message
from nnunet_deconver.signals import Terminated, interruption_exit, termination_raises

#: ``interrupted_note`` of the commands whose output is swapped in only once complete.
NOTHING_WRITTEN = "; stopped before completion, nothing was written"


def report_errors(prog: str, parse: Callable[[], argparse.Namespace]) -> int:
    """Parse the arguments with ``parse`` and run ``args.func(args)``; return its exit code.

    SIGTERM raises inside (:func:`~nnunet_deconver.signals.termination_raises`), so ``with``
    blocks clean up as for Ctrl-C. A command sets ``interrupted_note`` among its parser's
    defaults to add to the interruption line.
    """
    note = ""
    try:
        with termination_raises():
            args = parse()
            note = getattr(args, "interrupted_note", "")
            return int(args.func(args) or 0)
    except DeconverError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: error: {os_error_message(exc)}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as exc:
        return interruption_exit(exc, prog, note)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    if not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def dataset_name_or_id(text: str) -> str:
    """argparse type: an nnU-Net data set id (1 to 999) or folder name (``Dataset501_ISLES22``)."""
    if (re.fullmatch(r"\d+", text) and 1 <= int(text) <= 999) or re.fullmatch(r"Dataset\d{3}_[\w.-]+", text):
        return text
    raise argparse.ArgumentTypeError(f"expected an nnU-Net data set id from 1 to 999 or a name like "
                                     f"Dataset501_ISLES22, got {text!r}")


def plans_name(text: str) -> str:
    """argparse type: an nnU-Net plans identifier, the name of a plans file without ``.json`` (letters,
    digits, ``_``, ``-``, ``.``; no folder, no ``__``, which nnU-Net's result folder names use as separator)."""
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*", text) and "__" not in text and not text.endswith(".json"):
        return text
    raise argparse.ArgumentTypeError(f"expected a plans identifier such as nnUNetPlans (a file name without .json: "
                                     f"letters, digits, _ - . but not __), got {text!r}")


def fold(text: str) -> str:
    """argparse type: an nnU-Net fold, a non-negative integer or ``all``."""
    if re.fullmatch(r"\d+|all", text):
        return text
    raise argparse.ArgumentTypeError(f"expected a fold number (0, 1, ...) or 'all', got {text!r}")


def probability(text: str) -> float:
    """argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value
