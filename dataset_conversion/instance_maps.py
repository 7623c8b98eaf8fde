"""Reference instance maps kept beside ``labelsTr``, for object-level metrics (GlaS).

nnU-Net trains on the binary labels in ``labelsTr``; object-level evaluation needs the original
objects, which a binary mask loses where glands touch. The conversion therefore also writes each
case's instance map:

* ``instancesTr/{case}.png``: 16-bit greyscale PNG of the label's size, 0 background, the objects
  numbered 1..n in the order of their value in the source annotation;
* ``case_metadata.json`` names it per case (``"instances": "instancesTr/{case}.png"``).

``nnunet-deconver evaluate`` finds this folder in the raw data set; ``evaluate-folders`` takes it
with ``--instances``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from dataset_conversion._model import Case, ConversionError

__all__ = ["INSTANCES_FOLDER", "instance_map_name", "numbered_instances", "keeping_instances"]

INSTANCES_FOLDER = "instancesTr"


def instance_map_name(case_id: str) -> str:
    """Path of a case's instance map relative to the data set folder."""
    return f"{INSTANCES_FOLDER}/{case_id}.png"


def numbered_instances(instances: np.ndarray, case: Case) -> np.ndarray:
    """Any integer ids (0 = background) -> uint16 ids 1..n in order of value."""
    values, inverse = np.unique(instances, return_inverse=True)
    numbered = inverse.reshape(instances.shape) + (0 if values[0] == 0 else 1)
    if numbered.max() > np.iinfo(np.uint16).max:
        raise ConversionError(f"{case.case_id}: the annotation file {case.label} holds more than 65535 objects")
    return numbered.astype(np.uint16)


def keeping_instances(to_binary: Callable[[np.ndarray, Case], np.ndarray], out_folder: Path | None
                      ) -> Callable[[np.ndarray, Case], np.ndarray]:
    """Wrap a ``to_binary(mask, case)`` so that it also writes the instance map into ``out_folder``."""

    def convert(mask: np.ndarray, case: Case) -> np.ndarray:
        binary = to_binary(mask, case)
        if out_folder is not None:
            numbered = numbered_instances(np.where(binary > 0, mask, 0), case)
            target = out_folder / instance_map_name(case.case_id)
            target.parent.mkdir(exist_ok=True)
            Image.fromarray(numbered).save(target, format="PNG")
        return binary

    return convert
