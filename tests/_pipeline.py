"""A tiny data set taken through nnU-Net's real plan / preprocess / smoke training / prediction.

The three pipelines (anisotropic 3D, 2D RGB, region-based 3D) are session fixtures in conftest.py:
each is built once and shared by every test module that asks for it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import run_command

SMOKE = "nnUNetTrainerDeconver_smoke"


def env_under(root: Path) -> dict:
    env = dict(os.environ)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir(parents=True, exist_ok=True)
        env[name] = str(root / name)
    env["nnUNet_compile"] = "f"
    env["nnUNet_def_n_proc"] = "2"  # nnU-Net's default is 8 spawned workers: 2 cores here
    return env


class Pipeline:
    """A data set taken through plan / preprocess / smoke training / prediction."""

    def __init__(self, root: Path, dataset_id: int, config: str, make):
        self.env = env_under(root)
        self.id, self.config = dataset_id, config
        self.raw = make(Path(self.env["nnUNet_raw"]))
        self.name = self.raw.name
        self.pre = Path(self.env["nnUNet_preprocessed"]) / self.name
        self.model = Path(self.env["nnUNet_results"]) / self.name / f"{SMOKE}__nnUNetPlans__{config}"
        self.pred = root / "predictions"
        run_command(["nnUNetv2_plan_and_preprocess", "-d", str(dataset_id), "-c", config, "-np", "1",
                     "--verify_dataset_integrity"], self.env)
        run_command(["nnUNetv2_train", str(dataset_id), config, "0", "-tr", SMOKE, "-device", "cpu"],
                    {**self.env, "nnUNet_n_proc_DA": "0"})
        run_command(["nnUNetv2_predict", "-i", str(self.raw / "imagesTs"), "-o", str(self.pred), "-d", str(dataset_id),
                     "-c", config, "-tr", SMOKE, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"], self.env)

    @property
    def plans(self) -> dict:
        return json.loads((self.pre / "nnUNetPlans.json").read_text())
