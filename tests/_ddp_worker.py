"""Two-process DDP training of a small Deconver on CPU (gloo), wrapped as nnU-Net wraps it.

Run as ``python _ddp_worker.py OUTPUT_DIR``; each rank trains on its own data with nnU-Net's own
train_step, loss construction and deep-supervision switch, and saves its final weights to
OUTPUT_DIR/rank{r}.pt. Used by tests/test_training_defaults.py.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch.nn.parallel import DistributedDataParallel as DDP

from nnunet_deconver.network import Deconver

SHAPE = (8, 8, 8)
SCALES = [[1, 1, 1], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]


def initial_network(deep_supervision: bool) -> Deconver:
    """The same initial weights on both ranks (DDP also broadcasts rank 0's at wrapping)."""
    torch.manual_seed(0)
    return Deconver(2, 2, 3, [4, 8, 16], [1, 2, 2], 3, deep_supervision=deep_supervision)


def trainer_state(rank: int, deep_supervision: bool) -> SimpleNamespace:
    """What nnU-Net's train_step, _build_loss and set_deep_supervision_enabled read from a trainer."""
    network = initial_network(deep_supervision)
    state = SimpleNamespace(
        is_ddp=True, local_rank=rank, device=torch.device("cpu"), grad_scaler=None,
        enable_deep_supervision=deep_supervision, _do_i_compile=lambda: False,
        label_manager=SimpleNamespace(has_regions=False, ignore_label=None),
        configuration_manager=SimpleNamespace(batch_dice=True),
        _get_deep_supervision_scales=lambda: SCALES[:2],  # one per output of a 3-level Deconver
    )
    # nnUNetTrainer.initialize: (compile), optimiser on the bare network, SyncBatchNorm, DDP, loss
    state.optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3, weight_decay=1e-5)
    network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
    state.network = DDP(network)  # device_ids only for CUDA
    state.loss = nnUNetTrainer._build_loss(state)
    return state


def batch(rank: int, step: int, deep_supervision: bool) -> dict:
    gen = torch.Generator().manual_seed(100 * rank + step)  # different data on each rank
    data = torch.randn(2, 2, *SHAPE, generator=gen)
    seg = (torch.rand(2, 1, *SHAPE, generator=gen) > 0.6).float()
    target = [seg, seg[:, :, ::2, ::2, ::2]] if deep_supervision else seg
    return {"data": data, "target": target}


def run(rank: int, world_size: int, output: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", os.environ["DDP_TEST_PORT"]
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    try:
        # deep supervision on, as in training; off, as nnU-Net switches it for validation; on again
        state = trainer_state(rank, deep_supervision=True)
        for step in range(2):
            nnUNetTrainer.train_step(state, batch(rank, step, True))
        nnUNetTrainer.set_deep_supervision_enabled(state, False)
        state.network.eval()
        with torch.no_grad():
            single = state.network(batch(rank, 9, True)["data"])
        assert isinstance(single, torch.Tensor), "deep supervision was not switched off through DDP"
        nnUNetTrainer.set_deep_supervision_enabled(state, True)
        state.network.train()
        for step in range(2, 4):
            nnUNetTrainer.train_step(state, batch(rank, step, True))
        torch.save(state.network.module.state_dict(), os.path.join(output, f"rank{rank}_ds.pt"))
        # a network built without deep supervision (nnU-Net's noDeepSupervision trainers)
        state = trainer_state(rank, deep_supervision=False)
        for step in range(2):
            nnUNetTrainer.train_step(state, batch(rank, step, False))
        torch.save(state.network.module.state_dict(), os.path.join(output, f"rank{rank}_nods.pt"))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(run, args=(2, sys.argv[1]), nprocs=2, join=True)
