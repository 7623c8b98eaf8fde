"""Five-epoch speed benchmarks: Deconver and nnU-Net's U-Net measured by the same trainer code.

nnU-Net's ``nnUNetTrainerBenchmark_5epochs`` trains its U-Net for 5 epochs without validation or
checkpoints and adds an entry to ``benchmark_result.json`` in the output folder (torch and cuDNN
versions, GPU name, number of GPUs, host name, the fastest epoch in seconds). The trainers here
are that class (nnU-Net's code runs on GPU unchanged) with three additions to the same entry:

- ``epoch_times``: every epoch's time in seconds (the first includes warm-up and compilation);
- ``peak_gpu_memory_gib``: ``torch.cuda.max_memory_allocated`` of the run (None on CPU);
- ``device``: ``"cuda"`` or ``"cpu"``; ``cpu_threads``: torch's intra-op threads.

nnU-Net's benchmark refuses to start without a GPU. These also run on CPU (``-device cpu``),
where the entry has ``gpu_name``, ``cudnn_version`` and ``peak_gpu_memory_gib`` set to None and
``num_gpus`` 0, so a CPU run never passes for a GPU one.

``nnUNetv2_train DATASET CONFIG 0 -tr nnUNetTrainerDeconverBenchmark_5epochs`` and ``-tr
nnUNetTrainerUNetBenchmark_5epochs`` (nnU-Net's own network) give two comparable entries.
"""

from __future__ import annotations

import subprocess

import torch
from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json, save_json
from nnunetv2.training.nnUNetTrainer.variants.benchmarking.nnUNetTrainerBenchmark_5epochs import (
    nnUNetTrainerBenchmark_5epochs,
)
from torch import distributed as dist

from nnunet_deconver.nnunet.trainers import nnUNetTrainerDeconver

RESULT_FILE = "benchmark_result.json"


class nnUNetTrainerUNetBenchmark_5epochs(nnUNetTrainerBenchmark_5epochs):
    """nnU-Net's 5-epoch benchmark of its own network, on GPU or CPU, with epoch times and peak memory."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        if device.type == "cuda":
            super().__init__(plans, configuration, fold, dataset_json, device)
            return
        # nnU-Net's benchmark asserts that CUDA is available; elsewhere its settings without that check
        super(nnUNetTrainerBenchmark_5epochs, self).__init__(plans, configuration, fold, dataset_json, device)
        if self.fold != 0:
            raise ValueError(f"benchmarks run fold 0 only (their results are parsed per data set), got fold {fold}")
        self.disable_checkpointing = True
        self.num_epochs = 5
        self.crashed_with_runtime_error = False

    def on_train_end(self) -> None:
        if self.device.type == "cuda":
            super().on_train_end()  # nnU-Net's entry
        else:
            super(nnUNetTrainerBenchmark_5epochs, self).on_train_end()
        if not self.is_ddp or self.local_rank == 0:
            self._complete_benchmark_entry()

    def _complete_benchmark_entry(self) -> None:
        """Add this run's epoch times, peak memory and device to its entry (written first on CPU)."""
        on_gpu = self.device.type == "cuda"
        hostname = subprocess.getoutput("hostname")  # as nnU-Net's benchmark, whose key this must match
        num_gpus = (dist.get_world_size() if self.is_ddp else 1) if on_gpu else 0
        gpu_name = torch.cuda.get_device_name() if on_gpu else None
        cudnn_version = torch.backends.cudnn.version() if on_gpu else None
        torch_version = torch.__version__
        key = (f"{hostname}__{cudnn_version}__{torch_version.replace(' ', '')}__"
               f"{(gpu_name or 'cpu').replace(' ', '')}__num_gpus_{num_gpus}")
        starts = self.logger.get_value("epoch_start_timestamps", step=None)
        ends = self.logger.get_value("epoch_end_timestamps", step=None)
        epoch_times = [end - start for start, end in zip(starts, ends)]
        path = join(self.output_folder, RESULT_FILE)
        results = load_json(path) if isfile(path) else {}
        entry = results.get(key) if on_gpu else None
        if entry is None:  # CPU, or nnU-Net's entry went elsewhere: one of the same fields
            if self.crashed_with_runtime_error or not epoch_times:
                fastest = "Training has ended due to an error. Check your logs for more information."
            else:
                fastest = min(epoch_times)
            entry = {"torch_version": torch_version, "cudnn_version": cudnn_version, "gpu_name": gpu_name,
                     "fastest_epoch": fastest, "num_gpus": num_gpus, "hostname": hostname}
        entry.update(
            epoch_times=epoch_times,
            peak_gpu_memory_gib=torch.cuda.max_memory_allocated(self.device) / 2**30 if on_gpu else None,
            device=self.device.type,
            cpu_threads=torch.get_num_threads(),
        )
        results[key] = entry
        save_json(results, path)


class nnUNetTrainerDeconverBenchmark_5epochs(nnUNetTrainerUNetBenchmark_5epochs, nnUNetTrainerDeconver):
    """The same benchmark of Deconver (:class:`~nnunet_deconver.nnunet.trainers.nnUNetTrainerDeconver`:
    its network and optimiser; 5 epochs of nnU-Net's 250 iterations)."""


__all__ = ["nnUNetTrainerUNetBenchmark_5epochs", "nnUNetTrainerDeconverBenchmark_5epochs"]
