"""CPU training step of the ISLES'22 preset, lean and full activation memory, beside PlainConvUNet.

One training step (forward, loss = sum over deep-supervision outputs of mean(out^2), backward,
AdamW step), 3D patch 64^3, batch 2, float32, huge pages on (as the trainers set on CPU). Each
measurement runs in a fresh process: two warm-up steps, then the peak RSS (VmHWM, reset through
/proc/self/clear_refs) is read around ``--reps`` timed steps; the networks alternate, so load on
the machine falls on all of them. Prints a Markdown table.

    .venv/bin/python benchmarks/bench_lean_step.py --reps 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
CASES = ("plainconvunet", "lean", "full")


def _kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def worker(case: str, reps: int) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    import _repo  # noqa: F401  (the working tree's nnunet_deconver, not an installed copy)
    from _networks import build_network

    if case == "plainconvunet":
        net = build_network("plainconvunet", deep_supervision=True)
    else:
        from nnunet_deconver.network import build_preset

        net = build_preset("isles22", deep_supervision=True, num_classes=2, activation_memory=case)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1e-5)
    x = torch.randn(2, 2, 64, 64, 64, generator=torch.Generator().manual_seed(0))

    def step() -> None:
        out = net(x)
        sum(o.square().mean() for o in (out if isinstance(out, (list, tuple)) else [out])).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _kib("VmRSS")
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"case": case, "seconds": min(times), "peak_growth_mb": (_kib("VmHWM") - before) / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=2, help="timed steps per network (the fastest counts)")
    p.add_argument("--rounds", type=int, default=1, help="rounds over the three networks (the fastest counts)")
    p.add_argument("--worker", choices=CASES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.reps)))
        return
    import torch

    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "1"}
    results: dict[str, dict] = {}
    for _ in range(args.rounds):
        for case in CASES:
            proc = subprocess.run([sys.executable, __file__, "--worker", case, "--reps", str(args.reps)], env=env,
                                  capture_output=True, text=True, check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            best = results.get(case)
            results[case] = r if best is None else {**r, "seconds": min(r["seconds"], best["seconds"]),
                                                      "peak_growth_mb": min(r["peak_growth_mb"], best["peak_growth_mb"])}
    plain, full = results["plainconvunet"], results["full"]
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU threads, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, --reps {args.reps} --rounds {args.rounds}\n")
    print("| network | s / step | peak RSS growth MB | time vs full | time vs PlainConvUNet | memory vs PlainConvUNet |")
    print("|---|---:|---:|---:|---:|---:|")
    names = {"plainconvunet": "PlainConvUNet (nnU-Net)", "lean": "Deconver ISLES'22, lean",
             "full": "Deconver ISLES'22, full"}
    for case in CASES:
        r = results[case]
        print(f"| {names[case]} | {r['seconds']:.2f} | {r['peak_growth_mb']:.0f} | {r['seconds'] / full['seconds']:.2f}x "
              f"| {r['seconds'] / plain['seconds']:.2f}x | {r['peak_growth_mb'] / plain['peak_growth_mb']:.2f}x |")


if __name__ == "__main__":
    main()
