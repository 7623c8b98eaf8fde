"""``nnunet-deconver memory`` and the step-memory count it rests on.

The count (fake tensors, PyTorch's MemTracker) against a real float32 CPU step's measured peak
RSS growth, lean and full; the command on plans written by nnU-Net's own
``nnUNetv2_plan_experiment`` (text and JSON), and its one-line errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_command

HERE = Path(__file__).parent


@pytest.mark.parametrize("mode", ["lean", "full"])
def test_fake_count_matches_a_real_cpu_step(mode):
    """Within 20% of the peak RSS growth of the same step run for real (in a process of its own;
    large blocks mmapped, so freed tensors leave the RSS)."""
    from _memory_step import SHAPE, network
    from nnunet_deconver.nnunet.memory import step_memory

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(HERE / "_memory_step.py"), mode], env=env, capture_output=True,
                          text=True, timeout=600, cwd=HERE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = int(proc.stdout.split()[-1])
    estimate = step_memory(lambda: network(mode), SHAPE, "adamw", autocast=False)
    counted = estimate.peak - estimate.start
    assert abs(counted - measured) <= 0.2 * measured, f"counted {counted / 2**20:.0f} MiB, measured {measured / 2**20:.0f}"


def test_memory_command_on_nnunet_plans(nnunet_env):
    from nnunet_deconver.nnunet.synthetic import make_3d_dataset

    make_3d_dataset(Path(os.environ["nnUNet_raw"]), 907, "Mem", 3, 0, shape=(24, 40, 40))
    run_command(["nnUNetv2_extract_fingerprint", "-d", "907", "-np", "1"], env=nnunet_env)
    run_command(["nnUNetv2_plan_experiment", "-d", "907"], env=nnunet_env)
    plans = json.loads((Path(os.environ["nnUNet_preprocessed"]) / "Dataset907_Mem" / "nnUNetPlans.json").read_text())
    planned = plans["configurations"]["3d_fullres"]

    text = run_command(["nnunet-deconver", "memory", "907", "-c", "3d_fullres"], env=nnunet_env).stdout
    assert f"patch {'x'.join(map(str, planned['patch_size']))}, batch {planned['batch_size']}" in text
    for name in ("PlainConvUNet (nnU-Net)", "Deconver lean (nnUNetTrainerDeconver)",
                 "Deconver full (nnUNetTrainerDeconver)"):
        assert name in text, text

    out = run_command(["nnunet-deconver", "memory", "Dataset907_Mem", "-c", "3d_fullres", "--gpu-memory", "0.5",
                       "-tr", "nnUNetTrainerDeconver_k5", "--json"], env=nnunet_env).stdout
    report = json.loads(out)
    assert (report["patch_size"], report["batch_size"]) == (planned["patch_size"], planned["batch_size"])
    rows = {r["activation_memory"]: r for r in report["networks"]}
    assert set(rows) == {None, "lean", "full"}
    assert rows["lean"]["peak_bytes"] < rows["full"]["peak_bytes"]
    assert rows[None]["network"] == "PlainConvUNet (nnU-Net)" and rows[None]["optimizer"] == "sgd"
    for row in rows.values():  # the largest batch fits 0.5 GiB, one more does not
        fits = lambda b: row["fixed_bytes"] + b * row["per_sample_bytes"] <= 0.5 * 2**30  # noqa: E731
        assert fits(row["largest_batch"]) and not fits(row["largest_batch"] + 1)

    for args, message in [(["999", "-c", "3d_fullres"], "999"),
                          (["907", "-c", "3d_lowres"], "configuration 3d_lowres is not in"),
                          (["907", "-c", "3d_fullres", "-p", "nnUNetResEncUNetMPlans"], "does not exist")]:
        proc = subprocess.run([str(Path(sys.executable).parent / "nnunet-deconver"), "memory", *args], env=nnunet_env,
                              capture_output=True, text=True, timeout=300)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and message in lines[0], proc.stderr
        assert lines[0].startswith("nnunet-deconver: error:")
