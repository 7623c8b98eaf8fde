"""The lean block's first half on CPU, and the C++ kernels' plane window it runs on.

The window (``torch.ops.nnunet_deconver_cpp.forward`` / ``backward`` with ``plane_lo``,
``plane_hi``): the update's output on those planes and the gradients of that output, against
the plain-graph update (PyTorch's convolutions) cut to the window, in every build of the
kernels this CPU runs. Then ``x + Mixer(IN(x))`` in slabs against PyTorch's instance norm and
convolutions with the plain-graph update, forward and every gradient (x and each parameter),
float64 to 1e-10 and float32 to rounding, 2D and 3D, batch 1 and 2, kernels of depth 1, 3 and 5,
grouped and per-channel filters, one slab, several with a short last one, slabs thinner than the
NDC's reach, sizes no multiple of a vector width; then a lean block and a network step with it,
or with the fused second half (``fused_mlp``), against the same with that half turned off, and
where it does not apply.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _gradients import value_and_grads
from _ndc_backend import instruction_sets
from nnunet_deconver.ndc import ndc_reference
from nnunet_deconver.ndc.backends import BACKEND_ENV, cpp
from nnunet_deconver.network import Deconver, blocks, fused_mlp
from nnunet_deconver.network.blocks import BlockConfig, BlockSpec, DeconverBlock, DeconvMixer
from nnunet_deconver.network.fused_mixer import fused_mixer_applies, norm_mixer_residual
from nnunet_deconver.network.norm import instance_norm

EPS = 1e-5


def _ndc_inputs(shape, kernel, groups, ratio, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    B, C, *spatial = shape
    x = torch.rand(B, C, *spatial, generator=gen, dtype=dtype)
    s = torch.rand(B, ratio * C, *spatial, generator=gen, dtype=dtype) - 0.2  # some negative: rectified
    w = torch.rand(C, ratio * C // groups, *kernel, generator=gen, dtype=dtype)
    return x, s, w


@pytest.mark.parametrize("shape,kernel", [((2, 4, 9, 5, 6), (3, 3, 3)), ((1, 3, 7, 4, 5), (5, 3, 1)),
                                          ((1, 4, 8, 11), (5, 3)), ((2, 2, 6, 4, 3), (1, 3, 3))])
@pytest.mark.parametrize("window", [(2, 5), (0, 3), (4, None), (0, None), (3, 3)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_plane_window_equals_reference_cut_to_it(shape, kernel, window, dtype):
    kernels = cpp.extension()
    groups, eps = 2 if shape[1] % 2 == 0 else 1, 1e-8
    x, s, w = _ndc_inputs(shape, kernel, groups, 4, dtype)
    lo, hi = window[0], shape[2] if window[1] is None else window[1]
    leaves = [t.clone().requires_grad_() for t in (x, s, w)]
    reference = ndc_reference(*leaves, groups, eps, rectify_s0=True)[:, :, lo:hi]
    upstream = torch.randn(reference.shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    expected = [reference.detach(), *torch.autograd.grad(reference, leaves, upstream)] if hi > lo else None
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for build in instruction_sets():
        out, y = kernels.forward(x, s, w, groups, eps, True, lo, hi)
        assert out.shape == (*shape[:1], s.shape[1], hi - lo, *shape[3:])
        _, y_alone = kernels.forward(x, s, w, groups, eps, True, lo, hi, False)
        torch.testing.assert_close(y_alone, y, rtol=0, atol=0)
        grad_x, grad_s, grad_w, again = kernels.backward(upstream, x, s, w, y, groups, eps, True, True, True, True,
                                                        lo, hi, True)
        if expected is None:  # an empty window: no output, no gradient
            assert out.numel() == 0 and again.numel() == 0
            assert not grad_x.any() and not grad_s.any() and not grad_w.any()
            continue
        torch.testing.assert_close(again, out, rtol=0, atol=0)
        for name, mine, ref in zip(("out", "grad x", "grad s", "grad filter"), [out, grad_x, grad_s, grad_w], expected):
            error = (mine - ref).abs().max().item() / ref.abs().max().item()
            assert error <= tol, f"{build} build, {name}: relative difference {error:.2e} > {tol}"


def test_plane_window_is_checked():
    x, s, w = _ndc_inputs((1, 2, 5, 4, 4), (3, 3, 3), 1, 2, torch.float32)
    with pytest.raises(RuntimeError, match="plane window"):
        cpp.extension().forward(x, s, w, 1, 1e-8, True, 3, 6)
    with pytest.raises(RuntimeError, match="plane window"):
        cpp.extension().forward(x, s, w, 1, 1e-8, True, 4, 2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_workspace_holds_the_results_and_is_reused(dtype):
    """Forward and backward given a workspace: the results of a call without one, bit for bit, as
    channels-last views of the workspace, which grows to fit and then serves a smaller call
    without new memory (a slab after the largest)."""
    kernels, eps = cpp.extension(), 1e-8
    workspaces = {"forward": torch.empty(0, dtype=dtype), "backward": torch.empty(0, dtype=dtype)}
    memory = {}
    for shape, kernel, (lo, hi) in [((2, 4, 9, 5, 6), (3, 3, 3), (2, 7)), ((1, 4, 8, 11), (5, 3), (0, 8)),
                                    ((2, 4, 6, 5, 6), (3, 3, 3), (1, 4))]:
        x, s, w = _ndc_inputs(shape, kernel, 2, 4, dtype)
        upstream = torch.randn(*shape[:1], s.shape[1], hi - lo, *shape[3:], dtype=dtype,
                               generator=torch.Generator().manual_seed(3))
        out, y = kernels.forward(x, s, w, 2, eps, True, lo, hi)
        fresh = [out, y, *kernels.backward(upstream, x, s, w, y, 2, eps, True, True, True, True, lo, hi, True)]
        out, y = kernels.forward(x, s, w, 2, eps, True, lo, hi, workspace=workspaces["forward"])
        given = kernels.backward(upstream, x, s, w, y, 2, eps, True, True, True, True, lo, hi, True,
                                 workspace=workspaces["backward"])
        results = [out, y, *given]
        for name, mine, ref in zip(("out", "y", "grad x", "grad s", "grad filter", "out again"), results, fresh):
            assert torch.equal(mine, ref), f"{shape}, {name}: differs with a workspace"
        layout = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
        for (name, workspace), fields in zip(workspaces.items(), [[out, y], [given[0], given[1], given[3]]]):
            for field in fields:
                assert field.untyped_storage().data_ptr() == workspace.untyped_storage().data_ptr(), \
                    f"{shape}: a {name} result is not in its workspace"
                assert field.is_contiguous(memory_format=layout)
        if shape == (2, 4, 6, 5, 6):  # smaller than the first call: the same memory serves it
            assert {name: ws.data_ptr() for name, ws in workspaces.items()} == memory
        memory = memory or {name: ws.data_ptr() for name, ws in workspaces.items()}


def _mixer(channels: int, kernel: tuple[int, ...], groups: int | None, dtype) -> DeconvMixer:
    torch.manual_seed(0)
    mixer = DeconvMixer(BlockSpec(channels, kernel, BlockConfig(groups=groups))).to(dtype)
    with torch.no_grad():
        for p in mixer.parameters():
            p.add_(0.1 * torch.randn_like(p))
        mixer.ndc.weight.abs_().sub_(0.02)  # mostly positive filter taps, some rectified away
    return mixer


def _reference(x, mixer: DeconvMixer):
    """x + Mixer(IN(x)) with PyTorch's instance norm and convolutions and the plain-graph update."""
    conv = F.conv3d if x.dim() == 5 else F.conv2d
    ndc = mixer.ndc
    u = F.relu(conv(F.instance_norm(x.contiguous(), eps=EPS), mixer.proj_in.weight))
    s = ndc_reference(u, conv(u, ndc.init.weight, ndc.init.bias), F.relu(ndc.weight), ndc.groups, ndc.eps,
                      rectify_s0=True)
    return x + conv(s, mixer.proj_out.weight, mixer.proj_out.bias)


@pytest.mark.parametrize("shape,kernel,groups", [
    ((1, 4, 9, 5, 6), (3, 3, 3), None), ((2, 6, 11, 4, 5), (5, 3, 3), 2), ((2, 4, 7, 6, 3), (1, 3, 3), None),
    ((1, 5, 13, 7), (3, 5), None), ((2, 4, 10, 9), (5, 3), 1)])
@pytest.mark.parametrize("thickness", [None, 1, 3])  # one slab; slabs thinner than the reach; several, a short last
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_mixer_equals_torch_reference(shape, kernel, groups, thickness, channels_last, dtype):
    B, C, *spatial = shape
    mixer = _mixer(C, kernel, groups, dtype)
    gen = torch.Generator().manual_seed(1)
    x = 2 * torch.rand(*shape, generator=gen, dtype=dtype) + 0.5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)
    upstream = torch.randn(*shape, generator=gen, dtype=dtype)
    assert fused_mixer_applies(x, instance_norm(C, len(spatial), False), mixer)

    def fused(t):
        return norm_mixer_residual(t, EPS, mixer, thickness)

    got = value_and_grads(fused, x, mixer, upstream)
    expected = value_and_grads(lambda t: _reference(t, mixer), x, mixer, upstream)
    assert expected[3].abs().max() > 0, "the filter gradient vanished: the test would not see it"
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    names = ["output", "grad x"] + [name for name, _ in mixer.named_parameters()]
    for name, mine, ref in zip(names, got, expected):
        torch.testing.assert_close(mine, ref, **tol, msg=lambda m: f"{name}: {m}")
    assert got[0].is_contiguous(memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)


def test_fused_mixer_without_gradients():
    mixer = _mixer(4, (3, 3, 3), None, torch.float32)
    x = torch.rand(2, 4, 9, 6, 7)
    with torch.inference_mode():
        got = norm_mixer_residual(x, EPS, mixer, 4)
    torch.testing.assert_close(got, _reference(x, mixer).detach(), rtol=1e-5, atol=1e-5)


def test_block_without_gradients_leaves_its_input():
    """A lean block without gradients writes its second half over its own intermediate map, never
    over its (channels-last) input."""
    block = _lean_block(3, torch.float32, None)
    x = torch.rand(1, 6, 7, 5, 6).contiguous(memory_format=torch.channels_last_3d)
    given = x.clone()
    with torch.no_grad():
        expected = block.mlp(block.norm2(z := x + block.mixer(block.norm1(x)))) + z
        got = block(x)
    assert torch.equal(x, given)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_fused_mixer_only_where_it_applies(monkeypatch):
    x, norm = torch.rand(1, 4, 5, 5, 5), instance_norm(4, 3, False)

    def mixer(**config) -> DeconvMixer:
        return DeconvMixer(BlockSpec(4, (3, 3, 3), BlockConfig(**config)))

    assert fused_mixer_applies(x, norm, mixer()) and fused_mixer_applies(x.double(), norm, mixer())
    assert not fused_mixer_applies(x, instance_norm(4, 3, True), mixer())
    assert not fused_mixer_applies(x, norm, mixer(iterations=2))
    assert not fused_mixer_applies(x, norm, mixer(memory_efficient=False))
    assert not fused_mixer_applies(x.half(), norm, mixer())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused_mixer_applies(x, norm, mixer())
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert not fused_mixer_applies(x, norm, mixer())


def _lean_block(dims: int, dtype, tile_size: int | None) -> DeconverBlock:
    torch.manual_seed(0)
    block = DeconverBlock(BlockSpec(6, (3,) * dims, BlockConfig(tile_size=tile_size))).to(dtype)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return block


@pytest.mark.parametrize("fused,switch", [("norm_mixer_residual", "fused_mixer_applies"),
                                           ("norm_mlp_residual", "fused_mlp_applies")])
@pytest.mark.parametrize("shape", [(1, 6, 7, 5, 6), (2, 6, 9, 10)])
@pytest.mark.parametrize("tile_size", [None, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lean_block_with_fused_half_equals_unfused(monkeypatch, fused, switch, shape, tile_size, dtype):
    """The lean block with one half fused against the same block with that half in the unfused
    checkpointed slabs of norm and mixer, or of norm and MLP: forward and every gradient."""
    monkeypatch.setattr(fused_mlp, "TILE_ELEMENTS", 24 * 11)  # the MLP's row tiles: 11 rows (hidden width 24)
    block = _lean_block(len(shape) - 2, dtype, tile_size)
    gen = torch.Generator().manual_seed(2)
    x, upstream = torch.rand(*shape, generator=gen, dtype=dtype), torch.randn(*shape, generator=gen, dtype=dtype)
    # channels-last, as the network hands it on: both paths then take the same statistics (other
    # layouts: the tests against PyTorch's instance norm)
    x = x.contiguous(memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)
    calls = []
    original = getattr(blocks, fused)

    def counted(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(blocks, fused, counted)
    got = value_and_grads(block, x, block, upstream)
    assert calls, f"the lean block did not take {fused}"
    monkeypatch.setattr(blocks, switch, lambda *args: False)
    unfused = value_and_grads(block, x, block, upstream)
    names = ["output", "grad x"] + [name for name, _ in block.named_parameters()]
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    for name, mine, ref in zip(names, got, unfused):
        torch.testing.assert_close(mine, ref, **tol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("switch,batch", [("fused_mlp_applies", 1), ("fused_mixer_applies", 2)])
def test_network_step_with_fused_half_equals_unfused(monkeypatch, switch, batch):
    """A small Deconver, lean: output and every parameter gradient the same with one fused half
    of its blocks turned off (the MLP's at batch 1, the mixer's at batch 2)."""
    torch.manual_seed(0)
    net = Deconver(input_channels=1, num_classes=2, spatial_dims=3, features_per_stage=[4, 8], strides=[1, 2]).double()
    x = torch.rand(batch, 1, 8, 6, 10, dtype=torch.float64)

    def grads():
        net.zero_grad(set_to_none=True)
        out = net(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        out.square().mean().backward()
        return out.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}

    fused_out, fused_grads = grads()
    monkeypatch.setattr(blocks, switch, lambda *args: False)
    out, unfused_grads = grads()
    torch.testing.assert_close(fused_out, out, rtol=1e-10, atol=1e-10)
    for name, g in unfused_grads.items():
        torch.testing.assert_close(fused_grads[name], g, rtol=1e-10, atol=1e-10, msg=lambda m: f"{name}: {m}")


def test_flops_counted_as_in_the_full_block():
    """PyTorch's FLOP counter sees the windowed kernels: a lean network counts what the full one does."""
    from nnunet_deconver.network.stats import count_flops

    counts = []
    for mode in ("lean", "full"):
        torch.manual_seed(0)
        net = Deconver(input_channels=1, num_classes=2, spatial_dims=3, features_per_stage=[4, 8], strides=[1, 2],
                       activation_memory=mode)
        counts.append(count_flops(net, (1, 1, 8, 6, 10)))
    assert counts[1]["ndc_functional"] > 0
    assert counts[0]["total"] == counts[1]["total"]
