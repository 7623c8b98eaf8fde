"""Make nnU-Net find the Deconver trainers without touching nnU-Net's installed files.

nnU-Net resolves ``-tr NAME`` in its own trainer package and then in each folder listed in the
environment variable ``nnUNet_extTrainer``. The wheel installs this file as the top-level module
``_nnunet_deconver_ext_trainer`` together with ``nnunet_deconver_trainers.pth``, whose one line
imports it at every interpreter start-up of the environment. It appends the folder
``nnunet_deconver/nnunet/trainer_lookup`` to ``nnUNet_extTrainer`` (keeping any folders already
listed), so every ``nnUNetv2_*`` command sees the trainers, including the processes DDP spawns.

It locates the package with ``importlib.util.find_spec``, which does not import it, and needs
nothing but the standard library: it runs in every interpreter of the environment.
"""

from __future__ import annotations

import importlib.util
import os


def trainer_folder() -> str | None:
    """The folder nnU-Net must search, or None when nnunet_deconver is not importable."""
    spec = importlib.util.find_spec("nnunet_deconver")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "nnunet", "trainer_lookup")


def register(environ=os.environ) -> None:
    """Append :func:`trainer_folder` to ``environ['nnUNet_extTrainer']`` unless already listed."""
    folder = trainer_folder()
    if folder is None:
        return
    listed = [p for p in environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if folder not in listed:
        environ["nnUNet_extTrainer"] = os.pathsep.join(listed + [folder])


if __name__ == "_nnunet_deconver_ext_trainer":  # imported by the .pth file at start-up
    register()
