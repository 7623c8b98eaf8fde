"""Looking through a raw folder: listing, picking files, telling why a path is unusable.

A path that cannot be used is never called "missing" when it is something else: an unreadable
folder is an error naming it, and a file of the expected name that is a folder, a broken or
looping symbolic link or unreadable is a problem saying so (:func:`pick_single`).

Standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

from dataset_conversion._model import ConversionError
from nnunet_deconver.errors import os_error_message, path_problem


def is_hidden(path: Path) -> bool:
    """True for dot files, including the ``._name`` companions that macOS puts into archives."""
    return path.name.startswith(".")


def list_folder(folder: Path) -> list[Path]:
    """Sorted non-hidden entries of ``folder``; :class:`ConversionError` if it cannot be listed."""
    try:
        return sorted(p for p in folder.iterdir() if not is_hidden(p))
    except OSError as exc:
        raise ConversionError(os_error_message(exc, "list the folder", folder)) from None


def visible_children(folder: Path, *, dirs: bool) -> list[Path]:
    """Sorted non-hidden sub-folders (``dirs=True``) or other entries (``dirs=False``) of ``folder``.

    An entry whose type cannot be determined (a broken or looping link) counts as a file, so that
    reading it later names the problem.
    """
    return [p for p in list_folder(folder) if p.is_dir() == dirs]


def unusable(entries: Iterable[Path], expected: str) -> list[str]:
    """Why each of ``entries`` (named as a case's file or folder) cannot be used as a ``"file"`` /
    ``"folder"``: a file where a folder belongs, a broken or looping link, no permission."""
    return [problem for problem in (path_problem(p, expected) for p in entries) if problem]


def find_layout_root(raw: Path, looks_right: Callable[[Path], bool], definition_title: str,
                     expected_layout: str) -> Path:
    """The folder holding the data set: ``raw`` itself or its only sub-folder that looks right.

    Archives often unpack into one extra folder (``ASNR-MICCAI-BraTS2023-GLI-Challenge-
    TrainingData/``, ``Warwick QU Dataset (Released 2016_07_08)/``): both are accepted.
    """
    problem = path_problem(raw, "folder")
    if problem:
        raise ConversionError(f"raw folder {problem}.\nExpected the {definition_title} layout:\n{expected_layout}")
    if looks_right(raw):
        return raw
    candidates = [d for d in visible_children(raw, dirs=True) if looks_right(d)]
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        names = ", ".join(d.name for d in candidates)
        raise ConversionError(f"{raw} holds several folders that look like {definition_title} ({names}); "
                              f"point RAW_FOLDER at one of them.")
    content = "it is empty" if not list_folder(raw) else "no matching files or folders were found"
    raise ConversionError(f"{raw} does not hold the {definition_title} data set: {content}.\n"
                          f"Expected layout:\n{expected_layout}")


def pick_single(found: Sequence[Path], case_id: str, what: str, where: str) -> tuple[Path | None, str | None]:
    """``(file, None)`` when exactly one usable file was found, else ``(None, problem)``."""
    if not found:
        return None, f"{case_id}: missing {what} (nothing matching in {where})"
    if len(found) > 1:
        names = ", ".join(str(p) for p in sorted(found))
        return None, f"{case_id}: two files for the same case's {what}: {names}"
    problem = path_problem(found[0], "file")
    if problem:
        return None, f"{case_id}: unusable {what}: {problem}"
    return found[0], None


def nifti_files(folder: Path, suffix: str, *, recursive: bool) -> list[Path]:
    """Non-hidden entries named ``*{suffix}.nii.gz`` / ``*{suffix}.nii`` in ``folder``.

    Entries of any type are returned (a folder or a broken link with such a name is reported by
    :func:`pick_single`, not overlooked); a sub-folder that cannot be listed is a
    :class:`ConversionError`. Symbolic links to folders are not followed.
    """
    if not os.path.lexists(folder):
        return []
    problem = path_problem(folder, "folder")
    if problem:
        raise ConversionError(problem)
    endings = (suffix + ".nii.gz", suffix + ".nii")
    if not recursive:
        return [p for p in list_folder(folder) if p.name.endswith(endings)]

    def fail(exc: OSError) -> None:
        raise ConversionError(os_error_message(exc, "list the folder"))

    found = []
    for parent, dirs, files in os.walk(folder, onerror=fail):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(parent) / name for name in dirs + files if not name.startswith(".") and name.endswith(endings)]
    return sorted(found)
