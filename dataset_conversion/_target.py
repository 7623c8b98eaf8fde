"""Where a converted data set goes, and whether it may be written there.

The output root is ``--output-root`` or nnU-Net's ``nnUNet_raw``; a target is refused when it
overlaps the raw folder, already exists (without ``--overwrite``), shares its id with another data
set (nnU-Net finds data sets by id alone) or lies in a folder that cannot be written.

nnU-Net's folders are read through nnU-Net itself (:mod:`nnunetv2.paths`), at call time, so that
the conversion and nnU-Net always agree on them.
"""

from __future__ import annotations

import os
from pathlib import Path

from dataset_conversion._model import ConversionError
from dataset_conversion._output import existing_target_problem, overlap_problem, writable_problem
from nnunet_deconver.errors import os_error_message


def nnunet_folder(variable: str) -> Path | None:
    """The folder nnU-Net takes from ``variable`` (``nnUNet_raw``, ``nnUNet_preprocessed``); None
    when it is not set or empty.

    nnU-Net's path objects read the environment each time they are asked (:meth:`get`); a plain
    value (nnU-Net versions that read it once, at import) is taken as it is.
    """
    from nnunetv2 import paths

    value = getattr(paths, variable)
    value = value.get() if hasattr(value, "get") else value
    return Path(os.fspath(value)).expanduser() if value else None


def resolve_output_root(output_root: str | os.PathLike | None) -> Path:
    """``--output-root`` if given, else nnU-Net's ``nnUNet_raw``."""
    if output_root is not None:
        return Path(output_root).expanduser()
    root = nnunet_folder("nnUNet_raw")
    if root is None:
        raise ConversionError("nnUNet_raw is not set: export nnUNet_raw=/path/to/nnUNet_raw (see nnU-Net's "
                              "documentation/setting_up_paths.md) or pass --output-root.")
    return root


def output_target_problem(target: Path, overwrite: bool) -> str | None:
    """Why ``target`` must not be written, or None.

    Refuses an existing data set without ``overwrite`` and a different data set with the same id
    in the output root or nnU-Net's ``nnUNet_preprocessed`` (nnU-Net cannot tell them apart).
    """
    problem = existing_target_problem(target, overwrite, allow_empty=False)
    if problem:
        return problem.replace("output ", "output data set ", 1)
    prefix = target.name.split("_", 1)[0] + "_"
    roots = [target.parent]
    preprocessed = nnunet_folder("nnUNet_preprocessed")
    if preprocessed is not None:
        roots.append(preprocessed)
    for root in roots:
        try:
            if not root.is_dir():
                continue
            clashes = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix)
                             and p.name != target.name)
        except OSError as exc:
            return os_error_message(exc, "list the folder", root)
        if clashes:
            return (f"{root} already holds {', '.join(clashes)} with the id of {target.name}; nnU-Net needs "
                    f"unique ids: choose another --dataset-id or remove the other data set")
    return None


def target_problems(raw: Path, target: Path, overwrite: bool) -> list[str]:
    """Why the conversion of ``raw`` must not write ``target``: overlap, existing data set, not writable."""
    overlap = overlap_problem(raw, target, "RAW_FOLDER", "output data set")
    if overlap:
        return [overlap]
    problems = [output_target_problem(target, overwrite), writable_problem(target.parent)]
    return [p for p in problems if p]
