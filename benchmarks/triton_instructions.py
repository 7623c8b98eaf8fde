"""Machine instructions per output of the NDC's Triton kernels, compiled for a GPU without one.

Each kernel variant the backend launches is compiled ahead of time by Triton's own compiler for
CUDA (``--capability``, default 90: H100) with the geometry of the Deconver presets (3D kernel
3x3x3, G = C so C/G = 1 and E/G = R = 4, float32), and its SASS (``cuobjdump -sass`` on the cubin)
is counted. The count is what one thread executes: a loop's body (up to a branch back in the SASS)
once per trip (the group's sources: E/G for ``A``, C/G for ``A^T`` and the update), the rest once
(both sides of a branch that skips code count, an upper bound); NOPs (padding) are not counted.
Instructions per output = that count times the program's threads over the outputs it writes.

    .venv/bin/python benchmarks/triton_instructions.py
    .venv/bin/python benchmarks/triton_instructions.py --kernels OTHER/triton_kernels.py --block 128

``--kernels`` counts another version of the kernels module (``--block``: the positions per program
it is launched with) to set two versions side by side.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

POINTERS = {"src", "weight", "out", "base", "mask_src", "x", "y", "s", "grad", "out_p", "out_gs"}

#: (row name, kernel, flags, which of the group's channel counts the outputs are)
VARIANTS = [
    ("A(s) (synthesis)", "conv_kernel", dict(TRANSPOSE=False, RELU_SRC=True, EPILOGUE=False, MASK=False), "Cg"),
    ("A^T(src) (transposed synthesis)", "conv_kernel",
     dict(TRANSPOSE=True, RELU_SRC=False, EPILOGUE=False, MASK=False), "Eg"),
    ("A^T(src) with the dL/ds epilogue", "conv_kernel",
     dict(TRANSPOSE=True, RELU_SRC=False, EPILOGUE=True, MASK=True), "Eg"),
    ("update, forward", "update_kernel", dict(BACKWARD=False, RECTIFY=True), "Eg"),
    ("update, backward", "update_kernel", dict(BACKWARD=True, RECTIFY=True), "Eg"),
]

_INSTRUCTION = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_BRANCH = re.compile(r"\bBRA\s+(0x[0-9a-f]+)")


def _cuobjdump(cubin: bytes, option: str) -> str:
    tool = shutil.which("cuobjdump")
    if tool is None:
        import triton

        tool = str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([tool, option, f.name], capture_output=True, text=True, check=True).stdout


def sass_instructions(cubin: bytes) -> list[tuple[int, str]]:
    """(address, instruction text) of every instruction of the cubin but NOPs."""
    found = (_INSTRUCTION.match(line) for line in _cuobjdump(cubin, "-sass").splitlines())
    return [(int(m.group(1), 16), m.group(2)) for m in found if m and not m.group(2).startswith("NOP")]


def resources(cubin: bytes) -> str:
    """Registers per thread and bytes of local memory (spills) of the cubin's kernel."""
    usage = _cuobjdump(cubin, "-res-usage")
    registers, local = (re.search(rf"{key}:(\d+)", usage).group(1) for key in ("REG", "LOCAL"))
    return f"{registers} ({local} B)"


def dynamic_count(instructions: list[tuple[int, str]], trips: int) -> tuple[int, int]:
    """(instructions one thread executes when every loop runs ``trips`` times, loops found); a loop
    is a branch back to an earlier address, its body the instructions from there to the branch.
    The final branch-to-self after EXIT (padding) is not a loop."""
    total, loops = len(instructions), 0
    for address, text in instructions:
        m = _BRANCH.search(text)
        if m and int(m.group(1), 16) < address:
            loops += 1
            total += (trips - 1) * sum(int(m.group(1), 16) <= a <= address for a, _ in instructions)
    return total, loops


def count(kernels_file: Path | None, block: int | None, capability: int) -> list[dict]:
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget

    from nnunet_deconver.ndc.backends import triton_backend

    if kernels_file is None:
        from nnunet_deconver.ndc.backends import triton_kernels as kernels
    else:
        spec = importlib.util.spec_from_file_location("kernels_under_count", kernels_file)
        kernels = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(kernels)
    groups = {"Cg": 1, "Eg": 4}
    geometry = dict(KD=3, KH=3, KW=3, KPAD=32, ACC=tl.float32, BLOCK=block or triton_backend.BLOCK)
    rows = []
    for name, kernel, flags, outputs in VARIANTS:
        fn = getattr(kernels, kernel)
        per_group = "OPAD" in fn.arg_names  # a program writes every output channel of its group
        constexprs = {k: v for k, v in {**geometry, **flags, "OPAD": groups[outputs]}.items() if k in fn.arg_names}
        signature = {a: "constexpr" if a in constexprs else "*fp32" if a in POINTERS else "fp32" if a == "eps"
                     else "i32" for a in fn.arg_names}
        compiled = triton.compile(triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs,
                                                          attrs={(i,): [["tt.divisibility", 16]] for i, a in enumerate(fn.arg_names) if signature[a].startswith("*")}),
                                  target=GPUTarget("cuda", capability, 32))
        instructions = sass_instructions(compiled.asm["cubin"])
        trips = groups["Cg" if outputs == "Eg" else "Eg"]
        total, loops = dynamic_count(instructions, trips)
        per_program = geometry["BLOCK"] * (groups[outputs] if per_group else 1)
        threads = compiled.metadata.num_warps * 32
        rows.append(dict(kernel=name, static=len(instructions), loops=loops, per_thread=total, threads=threads,
                         per_program=per_program, per_output=total * threads / per_program,
                         resources=resources(compiled.asm["cubin"])))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernels", type=Path, help="another kernels module file (default: the package's)")
    p.add_argument("--block", type=int, help="positions per program (default: the backend's)")
    p.add_argument("--capability", type=int, default=90, help="CUDA compute capability (default 90)")
    args = p.parse_args()
    import triton

    print(f"Triton {triton.__version__}, sm_{args.capability}, kernel 3x3x3, C/G = 1, E/G = 4, float32\n")
    print("| kernel | SASS instructions | loops | executed per thread | threads | outputs per program "
          "| instructions per output | registers (local memory) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in count(args.kernels, args.block, args.capability):
        print(f"| {r['kernel']} | {r['static']} | {r['loops']} | {r['per_thread']} | {r['threads']} "
              f"| {r['per_program']} | {r['per_output']:.0f} | {r['resources']} |")


if __name__ == "__main__":
    main()
