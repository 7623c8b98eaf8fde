"""CPU training step of the ISLES'22 preset, lean and full activation memory, beside PlainConvUNet.

One training step (forward, loss = sum over deep-supervision outputs of mean(out^2), backward,
AdamW step), 3D patch 64^3, batch 2, float32, huge pages on (as the trainers set on CPU). Each
measurement runs in a fresh process: two warm-up steps, then the peak RSS (VmHWM, reset through
/proc/self/clear_refs) is read around ``--reps`` timed steps; the networks alternate, so load on
the machine falls on all of them. Prints a Markdown table. ``--cases`` picks the networks
(``lean-unfused-mlp``: the lean block with its second half as slabs of norm and MLP recomputed
in backward, as where the tiled pass does not apply); ``--baseline-tree`` adds the lean network of
another checkout of this repository, measured in the same rounds (a side-by-side comparison).

    .venv/bin/python benchmarks/bench_lean_step.py --reps 2
    .venv/bin/python benchmarks/bench_lean_step.py --cases lean lean-unfused-mlp --baseline-tree ../old --rounds 2
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
CASES = ("plainconvunet", "lean", "full", "lean-unfused-mlp")
NAMES = {"plainconvunet": "PlainConvUNet (nnU-Net)", "lean": "Deconver ISLES'22, lean",
         "full": "Deconver ISLES'22, full",
         "lean-unfused-mlp": "Deconver ISLES'22, lean, second half unfused (slabs of norm + MLP)",
         "baseline": "Deconver ISLES'22, lean, --baseline-tree"}


def _kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def worker(case: str, reps: int, tree: str | None) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    import _repo  # noqa: F401  (the working tree's nnunet_deconver, not an installed copy)

    if tree:  # another checkout's nnunet_deconver, measured the same way
        sys.path.insert(0, tree)
    if case == "plainconvunet":
        from _networks import build_network

        net = build_network("plainconvunet", deep_supervision=True)
    else:
        from nnunet_deconver.network import blocks, build_preset

        if case == "lean-unfused-mlp":
            blocks.fused_mlp_applies = lambda z, norm: False
        mode = "full" if case == "full" else "lean"
        net = build_preset("isles22", deep_supervision=True, num_classes=2, activation_memory=mode)
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
    p.add_argument("--rounds", type=int, default=1, help="rounds over the networks measured (the fastest counts)")
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES[:3]),
                   help="networks to measure (default: plainconvunet lean full; lean-unfused-mlp: the lean "
                        "block with its second half as slabs of norm and MLP recomputed in backward)")
    p.add_argument("--baseline-tree", help="another checkout of this repository: its lean network is "
                                           "measured too, alternating with these (a side-by-side comparison)")
    p.add_argument("--worker", choices=CASES, help=argparse.SUPPRESS)
    p.add_argument("--tree", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.reps, args.tree)))
        return
    import torch

    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "1"}
    runs = [(case, case, None) for case in args.cases]
    if args.baseline_tree:
        runs.append(("baseline", "lean", str(Path(args.baseline_tree).resolve())))
    results: dict[str, dict] = {}
    for _ in range(args.rounds):
        for label, case, tree in runs:
            command = [sys.executable, __file__, "--worker", case, "--reps", str(args.reps)]
            proc = subprocess.run(command + (["--tree", tree] if tree else []), env=env,
                                  capture_output=True, text=True, check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            best = results.get(label)
            results[label] = r if best is None else {**r, "seconds": min(r["seconds"], best["seconds"]),
                                                      "peak_growth_mb": min(r["peak_growth_mb"], best["peak_growth_mb"])}
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU threads, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, --reps {args.reps} --rounds {args.rounds}\n")

    def ratio(r: dict, against: str, key: str) -> str:
        return f"{r[key] / results[against][key]:.2f}x" if against in results else "-"

    print("| network | s / step | peak RSS growth MB | time vs lean | time vs PlainConvUNet | memory vs PlainConvUNet |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in results.items():
        print(f"| {NAMES[label]} | {r['seconds']:.2f} | {r['peak_growth_mb']:.0f} | {ratio(r, 'lean', 'seconds')} "
              f"| {ratio(r, 'plainconvunet', 'seconds')} | {ratio(r, 'plainconvunet', 'peak_growth_mb')} |")

if __name__ == "__main__":
    main()
