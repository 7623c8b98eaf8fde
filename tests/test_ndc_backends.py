"""The NDC backends: the fused C++ kernel against the PyTorch-op path, dispatch and fallback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from _ndc_backend import BUILDS, backend, instruction_sets  # noqa: F401  (backend: a fixture)
from nnunet_deconver.ndc import NDC, ndc, ndc_reference
from nnunet_deconver.ndc.backends import BACKEND_ENV, backend_for, ndc_update

# (spatial size, kernel): 2D and 3D, kernels 3, 5 and anisotropic; no size a multiple of 4 or 8
CASES = [((9, 11), (3, 3)), ((13, 7), (5, 5)), ((7, 10), (1, 5)), ((5, 6, 7), (3, 3, 3)),
         ((7, 5, 9), (5, 5, 5)), ((3, 6, 5), (1, 3, 3))]


def _inputs(spatial, kernel, C, R, G, B, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(B, C, *spatial, generator=gen, dtype=dtype)
    s0 = torch.rand(B, R * C, *spatial, generator=gen, dtype=dtype) - 0.2  # some negative: rectify_s0
    w = torch.rand(C, R * C // G, *kernel, generator=gen, dtype=dtype)
    upstream = torch.randn(B, R * C, *spatial, generator=gen, dtype=dtype)
    return x, s0, w, upstream


def _value_and_grads(monkeypatch, name, x, s0, w, upstream, G, **kwargs):
    monkeypatch.setenv(BACKEND_ENV, name)
    assert backend_for(x.device).name == name
    leaves = [t.detach().clone().requires_grad_() for t in (x, s0, w)]
    out = ndc(*leaves, G, **kwargs)
    return (out, *torch.autograd.grad(out, leaves, upstream))


@pytest.mark.parametrize("spatial,kernel", CASES)
@pytest.mark.parametrize("G,R,B", [(1, 1, 2), (2, 4, 1), ("C", 1, 1), ("C", 4, 2)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_equals_torch_backend(monkeypatch, spatial, kernel, G, R, B, dtype):
    C = 4
    G = C if G == "C" else G
    x, s0, w, upstream = _inputs(spatial, kernel, C, R, G, B, dtype)
    rectify = R == 4  # both ways of passing s0
    if not rectify:
        s0 = s0.clamp_min(0)
    fused = _value_and_grads(monkeypatch, "cpp", x, s0, w, upstream, G, rectify_s0=rectify)
    torch_ops = _value_and_grads(monkeypatch, "torch", x, s0, w, upstream, G, rectify_s0=rectify)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for name, mine, ref in zip(("out", "grad x", "grad s0", "grad filter"), fused, torch_ops):
        assert mine.shape == ref.shape and mine.dtype == ref.dtype
        error = (mine - ref).abs().max().item() / ref.abs().max().item()
        assert error <= tol, f"{name}: relative difference {error:.2e} > {tol}"


@pytest.mark.parametrize("spatial,kernel", [((5, 6, 7), (3, 3, 3)), ((9, 11), (5, 5))])
@pytest.mark.parametrize("C,R,G", [(12, 4, 12), (8, 8, 2)])  # E = 48, 64: whole vector blocks and a remainder
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_equals_torch_backend_wide(monkeypatch, spatial, kernel, C, R, G, dtype):
    x, s0, w, upstream = _inputs(spatial, kernel, C, R, G, 2, dtype, seed=6)
    fused = _value_and_grads(monkeypatch, "cpp", x, s0, w, upstream, G, rectify_s0=True)
    torch_ops = _value_and_grads(monkeypatch, "torch", x, s0, w, upstream, G, rectify_s0=True)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for name, mine, ref in zip(("out", "grad x", "grad s0", "grad filter"), fused, torch_ops):
        error = (mine - ref).abs().max().item() / ref.abs().max().item()
        assert error <= tol, f"{name}: relative difference {error:.2e} > {tol}"


# rows long enough for several blocks of neighbouring outputs (up to 8) and a remainder, kernel widths 3, 5, 7
@pytest.mark.parametrize("spatial,kernel,B", [((5, 6, 7), (3, 3, 3), 1), ((9, 11), (5, 5), 2),
                                              ((3, 4, 29), (3, 3, 7), 1), ((4, 27), (3, 5), 2)])
@pytest.mark.parametrize("C,R,G", [(20, 4, 20), (8, 8, 2)])  # E = 80, 64: vector blocks of 16, 32, 64 and remainders
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_instruction_set_equals_torch_backend(monkeypatch, spatial, kernel, B, C, R, G, dtype):
    """Each build of the C++ kernels this CPU can run (the baseline always), not only the one it
    picks, against the PyTorch-op path."""
    x, s0, w, upstream = _inputs(spatial, kernel, C, R, G, B, dtype, seed=7)
    torch_ops = _value_and_grads(monkeypatch, "torch", x, s0, w, upstream, G, rectify_s0=True)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for build in instruction_sets():
        fused = _value_and_grads(monkeypatch, "cpp", x, s0, w, upstream, G, rectify_s0=True)
        for name, mine, ref in zip(("out", "grad x", "grad s0", "grad filter"), fused, torch_ops):
            error = (mine - ref).abs().max().item() / ref.abs().max().item()
            assert error <= tol, f"{build} build, {name}: relative difference {error:.2e} > {tol}"


def _planar(s: torch.Tensor, C: int) -> torch.Tensor:
    """(B, C * R, *S) sources in the usual order (channel c's source j at c * R + j) -> the planar
    order (at j * C + c), channels-last."""
    planar = s.unflatten(1, (C, -1)).transpose(1, 2).flatten(1, 2)
    return planar.contiguous(memory_format=torch.channels_last_3d if s.dim() == 5 else torch.channels_last)


# 2D and 3D; kernel widths 1, 3, 5, 7 and 9 (no blocked path) along the last axis; rows shorter
# than the kernel; C a multiple of every vector width (16, 32) or not (lanes one by one), C = 1
@pytest.mark.parametrize("spatial,kernel,B,C,R", [
    ((5, 6, 37), (3, 3, 3), 1, 32, 4), ((4, 5, 2), (3, 3, 5), 2, 16, 3), ((9, 23), (5, 5), 2, 20, 4),
    ((6, 27), (3, 7), 1, 5, 2), ((7, 12), (1, 9), 1, 1, 5), ((3, 4, 11), (1, 3, 1), 2, 17, 1),
    ((2, 3, 26), (5, 3, 3), 1, 48, 8),
])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_planar_source_order_equals_pytorch_ops(spatial, kernel, B, C, R, dtype):
    """The forward kernels with the sources in planar order (groups of one channel), in each build
    this CPU runs and with plane windows, against PyTorch's convolutions: y = A(ReLU(s0)) and the
    update on the window's planes."""
    import torch.nn.functional as F

    from nnunet_deconver.ndc.backends import cpp

    x, s0, w, _ = _inputs(spatial, kernel, C, R, C, B, dtype, seed=8)
    conv, conv_t = (F.conv3d, F.conv_transpose3d) if len(spatial) == 3 else (F.conv2d, F.conv_transpose2d)
    pad = [k // 2 for k in kernel]
    y_ref = conv(s0.clamp_min(0), w, padding=pad, groups=C)
    out_ref = s0.clamp_min(0) * (conv_t(x, w, padding=pad, groups=C) + 1e-8) / (conv_t(y_ref, w, padding=pad, groups=C)
                                                                                + 1e-8)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    kernels = cpp.extension()
    s_planar = _planar(s0, C)
    p0, extent = kernel[0] // 2, spatial[0]
    for build in instruction_sets():
        for lo, hi in ((0, extent), (1, min(extent, 2)), (extent - 1, extent)):
            out, y = kernels.forward(x, s_planar, w, C, 1e-8, True, lo, hi, True, planar=True)
            near = slice(max(0, lo - p0), min(extent, hi + p0))  # y is computed within p0 planes of the window
            for name, mine, ref in (("y", y[:, :, near], y_ref[:, :, near]),
                                    ("update", out, _planar(out_ref[:, :, lo:hi], C))):
                assert mine.shape == ref.shape
                error = (mine - ref).abs().max().item() / ref.abs().max().item()
                assert error <= tol, f"{build} build, window [{lo}, {hi}), {name}: relative difference {error:.2e}"


def test_planar_source_order_needs_groups_of_one_channel():
    from nnunet_deconver.ndc.backends import cpp

    x, s0, w, _ = _inputs((5, 6), (3, 3), 4, 2, 2, 1, torch.float32)
    with pytest.raises(RuntimeError, match="the planar source order needs groups equal to the channels"):
        cpp.extension().forward(x, s0, w, 2, 1e-8, True, planar=True)


def test_instruction_set_names():
    from nnunet_deconver.ndc.backends import cpp

    extension = cpp.extension()
    best = extension.instruction_set("")
    assert best in BUILDS
    assert extension.instruction_set("auto") == best
    with pytest.raises(RuntimeError, match="unknown instruction set 'sse9': use base, avx2, avx512 or auto"):
        extension.instruction_set("sse9")
    assert extension.instruction_set("") == best  # a refused name changes nothing


def test_fused_iterations_and_single_gradients(monkeypatch):
    x, s0, w, upstream = _inputs((6, 7, 5), (3, 3, 3), 8, 2, 8, 2, torch.float64, seed=1)
    s0 = s0.abs()
    for wanted in range(3):  # one gradient at a time: the others are not computed
        results = []
        for name in ("cpp", "torch"):
            monkeypatch.setenv(BACKEND_ENV, name)
            leaves = [t.clone().requires_grad_(i == wanted) for i, t in enumerate((x, s0, w))]
            out = ndc(*leaves, 8, iterations=3)
            results.append((out, *torch.autograd.grad(out, [leaves[wanted]], upstream)))
        for mine, ref in zip(*results):
            torch.testing.assert_close(mine, ref, rtol=1e-10, atol=1e-12)


def test_fused_non_contiguous_inputs(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "cpp")
    gen = torch.Generator().manual_seed(2)
    base_x = torch.rand(2, 9, 6, 7, 11, generator=gen, dtype=torch.float64)
    x = base_x[:, 1::2, :, :, ::2]  # (2, 4, 6, 7, 6), strided in C and W
    s0 = torch.rand(2, 6, 7, 6, 8, generator=gen, dtype=torch.float64).permute(0, 4, 1, 2, 3)  # (2, 8, 6, 7, 6)
    w = torch.rand(3, 3, 3, 4, 2, generator=gen, dtype=torch.float64).permute(3, 4, 0, 1, 2)  # (4, 2, 3, 3, 3)
    assert not (x.is_contiguous() or s0.is_contiguous() or w.is_contiguous())
    upstream = torch.rand(1, 8, 1, 1, 1, dtype=torch.float64).expand(2, 8, 6, 7, 6)  # stride-0 gradient
    grads = []
    for fn in (ndc, ndc_reference):
        leaves = [t.detach().requires_grad_() for t in (x, s0, w)]
        out = fn(*leaves, 4)
        grads.append((out, *torch.autograd.grad(out, leaves, upstream)))
    for mine, ref in zip(*grads):
        torch.testing.assert_close(mine, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("spatial,kernel,G",
                         [((5, 6), (3, 3), 1), ((3, 4, 3), (1, 3, 3), 4), ((3, 3, 4), (3, 3, 3), 2)])
def test_fused_gradcheck(monkeypatch, spatial, kernel, G):
    monkeypatch.setenv(BACKEND_ENV, "cpp")
    x, s0, w, _ = _inputs(spatial, kernel, 4, 2, G, 1, torch.float64, seed=3)
    s0 = s0 + 0.25 * torch.sign(s0)  # keep away from the ReLU's kink
    # the full Jacobian, column by column, against central differences
    args = [t.requires_grad_() for t in (x, s0, w)]
    assert torch.autograd.gradcheck(lambda a, b, c: ndc(a, b, c, G, iterations=2, rectify_s0=True), args)


def test_operator_registration(backend):
    x, s0, w, _ = _inputs((5, 4, 6), (3, 3, 3), 4, 2, 4, 2, torch.float64, seed=4)
    args = (x.requires_grad_(), s0.abs().requires_grad_(), w.requires_grad_(), 4, 1e-8, False)
    # schema, fake (meta) kernel, autograd registration and the dispatcher's view of the op
    torch.library.opcheck(ndc_update, args, test_utils=("test_schema", "test_autograd_registration",
                                                         "test_faketensor", "test_aot_dispatch_dynamic"))


def test_torch_compile_traces_without_graph_breaks(backend):
    x, s0, w, upstream = _inputs((5, 6, 4), (3, 3, 3), 4, 2, 4, 1, torch.float32, seed=5)
    s0 = s0.abs()
    compiled = torch.compile(lambda a, b, c: ndc(a, b, c, 4), backend="aot_eager", fullgraph=True)
    leaves = [t.clone().requires_grad_() for t in (x, s0, w)]
    out = compiled(*leaves)
    grads = torch.autograd.grad(out, leaves, upstream)
    ref_leaves = [t.clone().requires_grad_() for t in (x, s0, w)]
    ref = ndc_reference(*ref_leaves, 4)
    for mine, expected in zip((out, *grads), (ref, *torch.autograd.grad(ref, ref_leaves, upstream))):
        torch.testing.assert_close(mine, expected, rtol=1e-5, atol=1e-6)


def test_backend_environment_variable(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert backend_for(cpu).name == "torch"
    monkeypatch.setenv(BACKEND_ENV, "")
    assert backend_for(cpu).name == "cpp"  # auto: the fused kernel on CPU when it builds
    monkeypatch.setenv(BACKEND_ENV, "cpp")
    assert backend_for(torch.device("meta")).name == "torch"  # cpp serves CPU tensors only
    monkeypatch.setenv(BACKEND_ENV, "cuda-magic")
    with pytest.raises(ValueError, match=f"{BACKEND_ENV}='cuda-magic'.*auto, torch, cpp"):
        ndc(*_inputs((4, 4), (3, 3), 2, 1, 2, 1, torch.float32)[:3], 2)


FALLBACK_SCRIPT = textwrap.dedent("""
    import warnings
    import torch
    from nnunet_deconver.ndc import ndc, ndc_reference
    from nnunet_deconver.ndc.backends import NDCBackendWarning, backend_for
    x, s0, w = torch.rand(2, 4, 5, 6, 7), torch.rand(2, 8, 5, 6, 7), torch.rand(4, 2, 3, 3, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = [ndc(x, s0, w, 4) for _ in range(3)]
    ours = [w for w in caught if issubclass(w.category, NDCBackendWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    print("WARNING:", ours[0].message)
    print("BACKEND:", backend_for(torch.device("cpu")).name)
    torch.testing.assert_close(outs[-1], ndc_reference(x, s0, w, 4), rtol=1e-5, atol=1e-6)
    print("OK")
""")


@pytest.mark.parametrize("requested", ["auto", "cpp"])
def test_failed_build_falls_back_with_one_warning(tmp_path, requested):
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"),
           BACKEND_ENV: requested, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BACKEND: torch" in proc.stdout and "OK" in proc.stdout
    assert "the fused C++ NDC kernel could not be built" in proc.stdout, proc.stdout


def test_network_trains_through_fused_kernel(monkeypatch):
    from nnunet_deconver.ndc.backends import cpp
    from nnunet_deconver.network.unet import Deconver

    calls = {"forward": 0, "backward": 0}
    kernels = cpp.extension()

    class Counted:  # the compiled operators, counted: the NDC layer's operator and the lean blocks call them
        def __getattr__(self, kind):
            def wrapper(*args, **kwargs):
                calls[kind] += 1
                return getattr(kernels, kind)(*args, **kwargs)
            return wrapper

    monkeypatch.setattr(cpp, "extension", lambda: Counted())
    monkeypatch.setenv(BACKEND_ENV, "auto")
    torch.manual_seed(0)
    net = Deconver(input_channels=1, num_classes=2, spatial_dims=3, features_per_stage=[8, 16], strides=[1, 2])
    image = torch.rand(2, 1, 8, 8, 8)
    target = (image[:, 0] > 0.5).long()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(image), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert losses[-1] < losses[0] and sum(b < a for a, b in zip(losses, losses[1:])) >= 4, losses
    assert calls["forward"] >= 6 * 3 and calls["backward"] >= 6 * 3, calls  # 3 NDC layers per step


def test_module_uses_dispatch_and_matches_plain_graph(backend):
    layer = NDC(4, (1, 3, 3), ratio=4).double()
    ref = NDC(4, (1, 3, 3), ratio=4, memory_efficient=False).double()
    ref.load_state_dict(layer.state_dict())
    x = torch.rand(2, 4, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    out, out_ref = layer(x), ref(x)
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-12)
    grads = torch.autograd.grad(out.square().sum(), [x, *layer.parameters()])
    grads_ref = torch.autograd.grad(out_ref.square().sum(), [x, *ref.parameters()])
    for mine, expected in zip(grads, grads_ref):
        torch.testing.assert_close(mine, expected, rtol=1e-10, atol=1e-12)


def test_any_layout_is_accepted_off_cpu():
    """On CPU the NDC's input goes channels-last; on other devices (``meta`` here, as CUDA) a sliced
    or permuted input is taken as it is, not passed to ``Tensor.contiguous(preserve_format)``,
    which raises."""
    from nnunet_deconver.ndc.ops import in_preferred_layout

    sliced = torch.empty(2, 8, 5, 6, 7, device="meta")[:, ::2]
    assert in_preferred_layout(sliced) is sliced
    with pytest.raises(RuntimeError, match="preserve memory format is unsupported"):
        sliced.contiguous(memory_format=torch.preserve_format)  # what the module called before
    cpu = torch.rand(2, 8, 5, 6, 7)[:, ::2]
    got = in_preferred_layout(cpu)
    assert got.is_contiguous(memory_format=torch.channels_last_3d) and torch.equal(got, cpu)
