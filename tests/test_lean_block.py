"""The lean Deconver block (tiled, recomputed in backward) computes what the full block computes.

Forward and every gradient of ``activation_memory="lean"`` against ``"full"`` (the block as a
plain autograd graph keeps it), with the same weights: float64 to 1e-10 and float32 to rounding,
2D and 3D, batch 1 and 2, sizes that are not multiples of the slab, slabs thinner than the NDC's
reach, k = 3, 5 and (1, 3, 3), G in {1, 2, C}, R in {1, 4}, one and two NDC updates, on the
``torch`` and ``cpp`` NDC backends (the Triton backend's case runs under Triton's interpreter in
``_triton_interpreter_cases.py``). Then what backward keeps (eager and compiled), batch 1 against a
duplicated batch, torch.compile and float16 autocast (eager and compiled) with several slabs.
"""

from __future__ import annotations

import pytest
import torch

from nnunet_deconver.ndc.backends import BACKEND_ENV
from nnunet_deconver.network import Deconver
from nnunet_deconver.network.blocks import BlockConfig, BlockSpec, DeconverBlock
from nnunet_deconver.network import fused_mixer, tiling
from nnunet_deconver.network.tiling import slabs, tile_thickness

C = 4


def _block(mode: str, kernel, groups, ratio, tile, iterations=1, dtype=torch.float64) -> DeconverBlock:
    torch.manual_seed(0)
    config = BlockConfig(ratio=ratio, groups=groups, iterations=iterations, activation_memory=mode, tile_size=tile)
    block = DeconverBlock(BlockSpec(C, tuple(kernel), config)).to(dtype)
    with torch.no_grad():  # nonzero biases, so the NDC's zero padding at the volume's faces matters
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return block


def _step(block: DeconverBlock, x: torch.Tensor, grad: torch.Tensor):
    x = x.clone().requires_grad_()
    out = block(x)
    out.backward(grad)
    return out.detach(), x.grad, {name: p.grad for name, p in block.named_parameters()}


def _assert_same(got, want, rtol, atol):
    torch.testing.assert_close(got[0], want[0], rtol=rtol, atol=atol, msg=lambda m: f"output: {m}")
    torch.testing.assert_close(got[1], want[1], rtol=rtol, atol=atol, msg=lambda m: f"input gradient: {m}")
    assert got[2].keys() == want[2].keys()
    for name in want[2]:
        torch.testing.assert_close(got[2][name], want[2][name], rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")


# (batch, spatial size, kernel, groups (None: C), ratio, slab thickness, iterations, dtype)
CASES = [
    (1, (5, 7, 6), (3, 3, 3), None, 4, 2, 1, torch.float64),
    (2, (7, 6, 5), (1, 3, 3), 2, 1, 3, 1, torch.float64),
    (2, (9, 5, 6), (5, 5, 5), 1, 4, 4, 1, torch.float64),
    (1, (11, 9), (5, 5), 1, 4, 1, 1, torch.float64),  # slab of 1 under a reach of 4
    (2, (13, 8), (3, 3), 2, 4, 3, 2, torch.float64),  # two updates: reach 4
    (2, (9, 8), (3, 3), None, 1, 4, 1, torch.float64),
    (1, (7, 6, 5), (3, 3, 3), 2, 4, 3, 1, torch.float32),
    (2, (10, 7), (5, 5), None, 4, 3, 1, torch.float32),
]


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("batch,size,kernel,groups,ratio,tile,iterations,dtype", CASES)
def test_lean_block_equals_full_block(monkeypatch, backend, batch, size, kernel, groups, ratio, tile, iterations,
                                      dtype):
    monkeypatch.setenv(BACKEND_ENV, backend)
    full = _block("full", kernel, groups, ratio, None, iterations, dtype)
    lean = _block("lean", kernel, groups, ratio, tile, iterations, dtype)
    assert len(slabs(size[0], tile, 1)) > 1
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, C, *size, generator=gen, dtype=dtype)
    grad = torch.randn(batch, C, *size, generator=gen, dtype=dtype)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-5)
    _assert_same(_step(lean, x, grad), _step(full, x, grad), **tol)
    with torch.no_grad():
        torch.testing.assert_close(lean(x), full(x), **tol)


@pytest.mark.parametrize("mode", ["lean", "full"])
def test_batch_one_equals_a_duplicated_batch(mode):
    """Batch 1 against the same sample twice: the same output, half the parameter gradients
    (PyTorch's CPU instance norm errs at batch 1 on a channels-last incoming gradient)."""
    block = _block(mode, (3, 3, 3), None, 4, 2)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, C, 7, 6, 5, generator=gen, dtype=torch.float64)
    grad = torch.randn(1, C, 7, 6, 5, generator=gen, dtype=torch.float64)
    one = _step(block, x, grad)
    block.zero_grad(set_to_none=True)
    two = _step(block, torch.cat([x, x]), torch.cat([grad, grad]))
    torch.testing.assert_close(two[0], torch.cat([one[0], one[0]]), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(two[1], torch.cat([one[1], one[1]]), rtol=1e-10, atol=1e-10)
    for name in one[2]:
        torch.testing.assert_close(two[2][name], 2 * one[2][name], rtol=1e-10, atol=1e-10, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("mode,maps", [("lean", 2), ("full", 7)])
def test_what_backward_keeps(compiled, mode, maps):
    """What backward keeps of a block, eager and compiled, counted in bytes of distinct storages of
    feature maps (whole or slabs), in units of one C-channel map X: the lean block keeps X and Z
    only (each slab is a view of one of them); the full block keeps at least 7 (4C-channel maps among them)."""
    block = _block(mode, (3, 3, 3), None, 4, 2, dtype=torch.float32)
    if compiled:
        block = torch.compile(block, fullgraph=True)
    x = torch.randn(2, C, 6, 5, 4, requires_grad=True)
    storages = {}

    def pack(t):
        if t.dim() == 5 and t.shape[0] == 2 and tuple(t.shape[3:]) == tuple(x.shape[3:]):  # a map or a slab of one
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = block(x)
    out.sum().backward()
    kept = sum(storages.values()) / (x.numel() * x.element_size())
    assert kept == maps if mode == "lean" else kept >= maps


COMPILED_NETWORKS = [  # spatial dims, batch, input size (several slabs of 3, the last one shorter)
    (3, 1, (10, 8, 6)),
    (2, 2, (10, 12)),
]  # with tests/test_batch_one.py's compiled 2D and 3D networks at batch 1 (one slab): both dims, both batches


@pytest.mark.parametrize("dims,batch,size", COMPILED_NETWORKS)
def test_compiled_lean_network_equals_full_in_one_graph(dims, batch, size):
    """torch.compile (fullgraph) of a lean network with several slabs: the eager full network's
    outputs and gradients (float64), and no recompilation on the next batch."""
    kwargs = dict(input_channels=2, num_classes=2, spatial_dims=dims, features_per_stage=[4, 8], strides=[1, 2],
                  kernel_sizes=3)
    torch.manual_seed(0)
    full = Deconver(**kwargs, activation_memory="full").double()
    lean = Deconver(**kwargs, tile_size=3).double()
    lean.load_state_dict(full.state_dict())
    compiled = torch.compile(lean, fullgraph=True, dynamic=False)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 2, *size, generator=gen, dtype=torch.float64)
    weight = torch.randn(batch, 2, *size, generator=gen, dtype=torch.float64)
    results = []
    for net in (full, compiled):
        xi = x.clone().requires_grad_()
        out = net(xi)
        (out * weight).sum().backward()
        results.append((out, xi.grad))
    torch.testing.assert_close(results[1], results[0], rtol=1e-10, atol=1e-10)
    for (name, p), q in zip(full.named_parameters(), lean.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-10, atol=1e-10, msg=lambda m: f"{name}: {m}")
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled(torch.rand_like(x).requires_grad_()).sum().backward()


@pytest.mark.parametrize("compiled", [False, True])
def test_lean_network_under_float16_autocast(compiled):
    """float16 autocast, several slabs, eager and compiled: outputs and gradients as close to
    float32's as the full network's (float16 weight gradients summed slab by slab round differently)."""
    kwargs = dict(input_channels=2, num_classes=2, spatial_dims=3, features_per_stage=[4, 8],
                  strides=[1, 2], kernel_sizes=3)
    torch.manual_seed(0)
    nets = {"full": Deconver(**kwargs, activation_memory="full"), "lean": Deconver(**kwargs, tile_size=4)}
    nets["lean"].load_state_dict(nets["full"].state_dict())
    run = {"full": nets["full"], "lean": torch.compile(nets["lean"], fullgraph=True) if compiled else nets["lean"]}
    x = torch.randn(1, 2, 8, 6, 6, generator=torch.Generator().manual_seed(1))
    results = {}
    for half in (False, True):
        for mode, net in nets.items():
            net.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.float16, enabled=half):
                out = run[mode](x)
            out.float().square().mean().backward()
            results[mode, half] = out, {name: p.grad for name, p in net.named_parameters()}
    reference = results["full", False]

    def error(key):
        out, grads = results[key]
        return (out.float() - reference[0]).abs().max(), max(
            ((grads[n] - reference[1][n]).norm() / reference[1][n].norm()).item() for n in grads)

    assert results["lean", True][0].dtype == torch.float16
    assert max(error(("lean", False))) < 1e-5
    lean_out, lean_grad = error(("lean", True))
    full_out, full_grad = error(("full", True))
    assert lean_out < 2e-3 and lean_out <= 1.5 * full_out + 1e-4
    assert lean_grad < 0.25 and lean_grad <= 1.5 * full_grad


def test_slabs_cover_the_axis_once_with_their_reach():
    assert slabs(7, 3, 2) == [(0, 5, 0, 3), (1, 6, 2, 3), (4, 3, 2, 1)]
    assert slabs(5, 1, 0) == [(i, 1, 0, 1) for i in range(5)]
    assert slabs(4, 10, 3) == [(0, 4, 0, 4)]
    with pytest.raises(ValueError):
        slabs(4, 0, 1)


def test_slab_thickness_with_and_without_gradients():
    assert tile_thickness(64, 2 * 64**3, 2) == 8  # training: TILES slabs
    assert tile_thickness(16, 16**3, 2) == 16  # a small volume is not cut
    assert tile_thickness(64, 64**3, 2, grad=False) == 64  # inference: one slab up to a million voxels
    assert tile_thickness(128, 128**3, 2, grad=False) == 64
    assert tile_thickness(128, 2 * 128**3, 2, grad=False) == 32
    assert tile_thickness(6, 10**9, 2, grad=False) == 6  # never thinner than 4 * halo (capped by the extent)
    assert tile_thickness(64, 64**3, 2, grad=False, max_voxels_without_grad=1 << 17) == 32  # a caller's own bound
    assert tile_thickness(64, 64**3, 2, grad=True, max_voxels_without_grad=1 << 17) == 8  # ... without gradients only


@pytest.mark.parametrize("batch,size,kernel", [(2, (9, 6, 5), (3, 3, 3)), (1, (21, 7), (5, 5))])
def test_lean_block_without_gradients_in_its_own_slabs(monkeypatch, batch, size, kernel):
    """Inference slabs (chosen by voxel count, several here; the fused CPU mixer's own count too)
    give the full block's output."""
    monkeypatch.setattr(tiling, "MAX_SLAB_VOXELS_WITHOUT_GRAD", 100)
    monkeypatch.setattr(fused_mixer, "SLAB_VOXELS_WITHOUT_GRAD", 100)
    full = _block("full", kernel, None, 4, None)
    lean = _block("lean", kernel, None, 4, None)
    x = torch.randn(batch, C, *size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    voxels = batch * x[0, 0].numel()
    assert len(slabs(size[0], tile_thickness(size[0], voxels, lean.mixer_halo, grad=False), lean.mixer_halo)) > 1
    with torch.no_grad():
        torch.testing.assert_close(lean(x), full(x), rtol=1e-10, atol=1e-10)


def test_the_choice_reaches_the_network_and_checkpoints_load_across_it():
    """Trainer attribute, preset and preset plans carry ``activation_memory``; a state dict of
    either mode loads into the other and predicts the same."""
    from types import SimpleNamespace

    from nnunet_deconver.network import build_preset
    from nnunet_deconver.nnunet import trainers
    from nnunet_deconver.nnunet.plans import preset_architecture
    from nnunet_deconver.paper import get_dataset

    def modes(net):
        return {block.lean for block in net.modules() if isinstance(block, DeconverBlock)}

    config = SimpleNamespace(patch_size=[16, 16, 16], network_arch_class_name="PlainConvUNet", network_arch_init_kwargs={
        "n_stages": 2, "features_per_stage": [4, 8], "strides": [[1, 1, 1], [2, 2, 2]],
        "kernel_sizes": [[3, 3, 3], [3, 3, 3]]})
    lean = trainers.nnUNetTrainerDeconver.build_network_architecture(None, config, 1, 2, False)
    full = trainers.nnUNetTrainerDeconver_fullActivations.build_network_architecture(None, config, 1, 2, False)
    assert (trainers.nnUNetTrainerDeconver.activation_memory, modes(lean), modes(full)) == ("lean", {True}, {False})
    assert modes(build_preset("isles22", activation_memory="full")) == {False}
    assert modes(build_preset("isles22")) == {True}
    assert preset_architecture(get_dataset("brats23"))["arch_kwargs"]["activation_memory"] == "lean"
    assert lean.state_dict().keys() == full.state_dict().keys()
    lean.load_state_dict(full.state_dict())
    x = torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(lean.eval()(x), full.eval()(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="activation_memory"):
        Deconver(1, 2, 3, [4], [1], activation_memory="small")


@pytest.mark.parametrize("size,batch", [((5, 6, 4), 2), ((5, 7), 1)])
def test_decoder_stage_never_concatenates(size, batch):
    """A decoder stage applied to (up, skip) equals the stage on their concatenation [skip, up]
    (float64, output and every gradient, and without gradients; 3D and 2D, batch 2 and 1), and a
    network's backward keeps no concatenated map: no saved tensor at full resolution has 2 * C0
    channels."""
    from nnunet_deconver.network.blocks import DeconverStage

    torch.manual_seed(0)
    stage = DeconverStage(2 * C, BlockSpec(C, (3,) * len(size), BlockConfig(tile_size=2))).double()
    gen = torch.Generator().manual_seed(1)
    skip, up = (torch.randn(batch, C, *size, generator=gen, dtype=torch.float64, requires_grad=True)
                for _ in range(2))
    weight = torch.randn(batch, C, *size, generator=gen, dtype=torch.float64)
    results = []
    for out in (stage(up, skip), stage(torch.cat([skip, up], dim=1))):
        grads = torch.autograd.grad((out * weight).sum(), [skip, up, *stage.parameters()])
        results.append((out, *grads))
    torch.testing.assert_close(results[0], results[1], rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(stage(up, skip), results[1][0], rtol=1e-10, atol=1e-10)

    dims = len(size)
    net = Deconver(input_channels=2, num_classes=2, spatial_dims=dims, features_per_stage=[C, 2 * C], strides=[1, 2],
                   kernel_sizes=3, mlp_ratio=1, ratio=1)
    x = torch.randn(batch, 2, *(8,) * dims, requires_grad=True)
    kept = []

    def pack(t):
        if t.dim() == 2 + dims and tuple(t.shape[2:]) == (8,) * dims:
            kept.append(t.shape[1])
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = net(x)
    out.sum().backward()
    assert C in kept and 2 * C not in kept, kept
