"""nnU-Net's GPU training defaults, exercised on CPU: torch.compile, float16 autocast with a
GradScaler, and DistributedDataParallel (gloo, two processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from _ddp_worker import initial_network
from nnunet_deconver.ndc import ndc
from nnunet_deconver.network import Deconver

HERE = Path(__file__).parent


def _network(deep_supervision: bool = True) -> Deconver:
    torch.manual_seed(0)
    return Deconver(2, 2, 3, [4, 8, 16], [1, [1, 2, 2], 2], [(1, 3, 3), 3, 3], deep_supervision=deep_supervision)


def _loss():
    """nnU-Net's Dice + CE with its deep-supervision weights, built by nnU-Net's own code."""
    state = SimpleNamespace(
        label_manager=SimpleNamespace(has_regions=False, ignore_label=None),
        configuration_manager=SimpleNamespace(batch_dice=True), is_ddp=False, _do_i_compile=lambda: False,
        enable_deep_supervision=True, _get_deep_supervision_scales=lambda: [[1, 1, 1], [1, 0.5, 0.5]],
    )
    return nnUNetTrainer._build_loss(state)


def _target(seed: int = 0) -> list[torch.Tensor]:
    seg = (torch.rand(2, 1, 8, 16, 16, generator=torch.Generator().manual_seed(seed)) > 0.6).float()
    return [seg, seg[:, :, :, ::2, ::2]]


def test_compiled_training_network_matches_eager():
    """torch.compile (inductor, CPU) of the deep-supervised network: the same outputs and gradients,
    one graph (fullgraph: a graph break is an error) and no recompilation on the next batch."""
    eager = _network()
    compiled_copy = _network()
    compiled = torch.compile(compiled_copy, fullgraph=True)
    x = torch.randn(2, 2, 8, 16, 16, generator=torch.Generator().manual_seed(1))
    loss = _loss()
    outputs = []
    for net in (eager, compiled):
        out = net(x)
        loss(out, _target()).backward()
        outputs.append(out)
    assert len(outputs[0]) == len(outputs[1]) == 2
    for a, b in zip(*outputs):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    grads = 0
    for (name, p), q in zip(eager.named_parameters(), compiled_copy.parameters()):
        if p.grad is None:  # the lowest-resolution head, whose loss weight nnU-Net sets to 0
            assert q.grad is None or not q.grad.any(), name
            continue
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-6, msg=lambda m: f"{name}: {m}")
        grads += 1
    assert grads >= len(list(eager.parameters())) - 2
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled(torch.rand_like(x)).__getitem__(0).sum().backward()


@pytest.mark.parametrize("shape", [(1, 4, 6, 6, 6), (2, 3, 7, 5)])
def test_ndc_runs_in_float32_under_float16_autocast(shape):
    """Inside float16 autocast the update gives float32's result (rounded to float16 at the end);
    float16 arithmetic would lose eps = 1e-8 and return 0 / 0 = NaN on an all-zero input."""
    gen = torch.Generator().manual_seed(0)
    channels, spatial = shape[1], shape[2:]
    weight = torch.rand(channels, 4, *[3] * len(spatial), generator=gen)
    for x, s0 in [
        (torch.rand(shape, generator=gen), torch.rand(shape[0], 4 * channels, *spatial, generator=gen)),
        (torch.zeros(shape), torch.zeros(shape[0], 4 * channels, *spatial)),
        (torch.full(shape, 1e4), torch.full((shape[0], 4 * channels, *spatial), 1e-4)),
    ]:
        x16, s16 = x.half(), s0.half()
        expected = ndc(x16.float(), s16.float(), weight, channels).half()
        with torch.autocast("cpu", dtype=torch.float16):
            got = ndc(x16, s16, weight, channels)
        assert got.dtype == torch.float16 and torch.isfinite(got).all()
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def _plain_conv_unet() -> torch.nn.Module:
    """nnU-Net's own U-Net with the geometry of :func:`_network` and nnU-Net's default settings
    (biased convolutions, affine instance norms, leaky ReLU, two convolutions per stage)."""
    torch.manual_seed(0)
    return PlainConvUNet(2, 3, [4, 8, 16], torch.nn.Conv3d, [(1, 3, 3), 3, 3], [1, [1, 2, 2], 2], [2, 2, 2], 3,
                         [2, 2], conv_bias=True, norm_op=torch.nn.InstanceNorm3d,
                         norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=torch.nn.LeakyReLU,
                         nonlin_kwargs={"inplace": True}, deep_supervision=True)


def _float16_steps(net: torch.nn.Module, x: torch.Tensor, steps: int = 14) -> list[bool]:
    """nnU-Net's train_step under float16 autocast with a GradScaler (CPU autocast here; CUDA's on
    GPU), ``steps`` times on ``x``. Asserts what must hold at every step: a finite loss, finite
    gradients in every step the scaler takes, finite weights. Returns, per step, whether it was taken."""
    loss_fn = _loss()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1e-5)
    scaler = torch.amp.GradScaler("cpu")
    taken = []
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.float16):
            output = net(x)
            loss = loss_fn(output, _target(step))
        assert torch.isfinite(loss), f"step {step}: loss {loss}"
        scale = scaler.get_scale()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grads = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
        scaler.step(optimizer)
        scaler.update()
        taken.append(scaler.get_scale() >= scale)  # a skipped step halves the scale
        if taken[-1]:
            assert torch.isfinite(grads).all(), f"step {step} was taken with non-finite gradients"
        assert all(torch.isfinite(p).all() for p in net.parameters()), f"step {step}: non-finite weights"
    return taken


@pytest.mark.parametrize("kind", ["zero", "constant", "normal", "1e4"])
def test_float16_training_steps_stay_finite(kind):
    """Float16 training with a GradScaler: finite losses, gradients and weights (asserted per step in
    :func:`_float16_steps`); the scaler skips steps only while it backs its initial scale (2^16) off
    to one the gradients fit, never after a step was taken (but on an all-zero input, below); and,
    on inputs in the range nnU-Net's
    normalisation produces, no more skipped steps than nnU-Net's own U-Net under the same steps,
    plus one. The one: a GradScaler starts at a deliberately high scale and calibrates by skipping,
    and whether a first step's largest scaled float16 weight gradient (about a sixth of float16's
    maximum here, on an all-zero input) overflows depends on the CPU's float16 matrix kernels.

    On an all-zero input nnU-Net's U-Net skips every step: each instance norm of a constant feature
    map multiplies the gradient by 1 / sqrt(eps) (about 316), which overflows float16 at any scale.
    Deconver's lean blocks normalise slab by slab: the norm's input gradient is the slabs' part,
    rstd * G, plus the statistics' part, each rounded to float16 before they are summed, so where
    they cancel (constant maps, rstd = 316) a part can overflow while the sum would not: one skip
    after calibration is allowed on that input.
    At 1e4 the input's scale reaches the stem's and the resampling convolutions' weight gradients
    unnormalised (the residual stream carries it; nnU-Net's U-Net normalises after every
    convolution), and those float16 weight gradients overflow until the scale is about 2^6: such an
    input is outside what nnU-Net feeds a network, so only the calibration rule applies there."""
    x = {"zero": torch.zeros(2, 2, 8, 16, 16), "constant": torch.full((2, 2, 8, 16, 16), 3.0),
         "normal": torch.randn(2, 2, 8, 16, 16, generator=torch.Generator().manual_seed(2)),  # as preprocessed
         "1e4": 1e4 * torch.randn(2, 2, 8, 16, 16, generator=torch.Generator().manual_seed(2))}[kind]
    taken = _float16_steps(_network(), x)
    first_taken = taken.index(True) if True in taken else len(taken)
    assert taken[first_taken:].count(False) <= (1 if kind == "zero" else 0), (
        f"a step was skipped after calibration: {taken}")
    assert sum(taken) >= 3, f"the scaler took only {sum(taken)} of {len(taken)} steps"
    if kind != "1e4":
        plain_skipped = _float16_steps(_plain_conv_unet(), x).count(False)
        assert taken.count(False) <= plain_skipped + 1, (
            f"Deconver skipped {taken.count(False)} steps on {kind} input, nnU-Net's U-Net {plain_skipped}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_keep_identical_weights(tmp_path):
    """DDP as nnU-Net wraps it (gloo on CPU), deep supervision on, switched off and on again, and a
    network without deep supervision: no unused-parameter error, the same weights on both ranks."""
    env = {**os.environ, "DDP_TEST_PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(HERE / "_ddp_worker.py"), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    initial = {"ds": initial_network(True).state_dict(), "nods": initial_network(False).state_dict()}
    for variant in ("ds", "nods"):
        rank0 = torch.load(tmp_path / f"rank0_{variant}.pt")
        rank1 = torch.load(tmp_path / f"rank1_{variant}.pt")
        assert rank0.keys() == rank1.keys() == initial[variant].keys()
        for key in rank0:
            torch.testing.assert_close(rank1[key], rank0[key], rtol=0, atol=0, msg=lambda m: f"{key}: {m}")
        moved = [k for k in rank0 if not torch.equal(rank0[k], initial[variant][k])]
        assert len(moved) == len(rank0), f"{variant}: weights that never trained: {set(rank0) - set(moved)}"

