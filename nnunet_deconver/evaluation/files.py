"""Errors, warnings and guarded file access shared by the evaluation modules.

Every problem with an input or output path becomes an :class:`EvaluationError` whose message names
the path and says what is wrong (missing, a folder instead of a file, permission denied, not
valid JSON, ...); the command line prints it as one line, without a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from nnunet_deconver.errors import DeconverError, describe_os_error

__all__ = ["EvaluationError", "warn", "load_json_file", "require_folder",
           "check_output_folder"]


class EvaluationError(DeconverError):
    """A missing or unreadable file, an inconsistent input; the message names what is wrong."""


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def load_json_file(path: str, what: str) -> Any:
    """Parse a JSON file; :class:`EvaluationError` naming ``path`` if it cannot be read or parsed."""
    from batchgenerators.utilities.file_and_folder_operations import load_json

    if os.path.isdir(path):
        raise EvaluationError(f"{what} {path} is a folder, not a file")
    if not os.path.lexists(path):
        raise EvaluationError(f"{what} not found: {path}")
    try:
        return load_json(path)
    except OSError as e:
        raise EvaluationError(f"cannot read {what} {path}: {describe_os_error(e)}") from None
    except UnicodeDecodeError as e:
        raise EvaluationError(f"{what} {path} is not UTF-8 text ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise EvaluationError(f"{what} {path} is not valid JSON: {e.msg} at line {e.lineno}, "
                              f"column {e.colno}") from None


def require_folder(path: str, what: str) -> None:
    """:class:`EvaluationError` unless ``path`` is a readable folder."""
    if not os.path.lexists(path):
        raise EvaluationError(f"{what} not found: {path}")
    if os.path.islink(path) and not os.path.exists(path):
        raise EvaluationError(f"{what} {path} is a broken or looping symbolic link")
    if not os.path.isdir(path):
        raise EvaluationError(f"{what} {path} is a file, not a folder")
    try:
        os.listdir(path)
    except OSError as e:
        raise EvaluationError(f"cannot read {what} {path}: {describe_os_error(e)}") from None


def check_output_folder(path: str) -> None:
    """Refuse an output folder that is a file or cannot be created / written, before any work.

    Creates the folder (and its parents) if needed and writes and removes a probe file in it.
    """
    if os.path.lexists(path) and not os.path.isdir(path):
        raise EvaluationError(f"output folder {path} is a file (or a broken link), not a folder")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise EvaluationError(f"output folder {path} is not writable: {describe_os_error(e)}") from None
