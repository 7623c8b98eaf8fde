"""Shared fixtures: nnU-Net folders in a temporary place and running nnU-Net's real commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="long run: opt in with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture
def nnunet_env(tmp_path, monkeypatch) -> dict:
    """nnUNet_raw / nnUNet_preprocessed / nnUNet_results under tmp_path, set in os.environ.

    Returns the environment (a dict) to hand to subprocesses.
    """
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.setenv(name, str(folder))
    monkeypatch.setenv("nnUNet_compile", "f")
    # nnU-Net spawns 8 worker processes by default (export, integrity checks): 2 cores here
    monkeypatch.setenv("nnUNet_def_n_proc", "2")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def run_command(args: list[str], env: dict | None = None, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Run an installed console command (``nnUNetv2_*``, ``nnunet-deconver``) of this environment.

    Fails the test with the command's output when it exits non-zero.
    """
    exe = BIN / args[0]
    cmd = [str(exe) if exe.exists() else args[0], *args[1:]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n--- stdout ---\n{proc.stdout[-6000:]}"
            f"\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


# nnU-Net pipelines shared by the integration modules: each is built once per session, on first use
# (plan, preprocess, smoke training and prediction of a tiny synthetic data set; see _pipeline.py).


@pytest.fixture(scope="session")
def aniso3d(tmp_path_factory):
    """Binary 3D, spacing 3 x 1 x 1 mm: nnU-Net plans a [1, 2, 2] stride and (1, 3, 3) kernels."""
    from _pipeline import Pipeline
    from nnunet_deconver.nnunet.synthetic import make_3d_dataset

    return Pipeline(tmp_path_factory.mktemp("aniso"), 901, "3d_fullres",
                    lambda raw: make_3d_dataset(raw, 901, "Aniso", 5, 1, shape=(10, 32, 32), spacing=(3.0, 1.0, 1.0)))


@pytest.fixture(scope="session")
def rgb2d(tmp_path_factory):
    from _pipeline import Pipeline
    from nnunet_deconver.nnunet.synthetic import make_2d_rgb_dataset

    return Pipeline(tmp_path_factory.mktemp("rgb"), 902, "2d",
                    lambda raw: make_2d_rgb_dataset(raw, 902, "Rgb", 5, 1, shape=(48, 64)))


@pytest.fixture(scope="session")
def regions3d(tmp_path_factory):
    """Three overlapping regions (whole / core / enhancing) from four channels, like BraTS."""
    from _pipeline import Pipeline
    from nnunet_deconver.nnunet.synthetic import make_3d_dataset

    return Pipeline(tmp_path_factory.mktemp("regions"), 903, "3d_fullres",
                    lambda raw: make_3d_dataset(raw, 903, "Regions", 5, 1, shape=(16, 16, 16), n_channels=4,
                                                region_based=True, seed=1))
