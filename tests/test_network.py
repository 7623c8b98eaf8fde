"""The Deconver network: the paper's structure (exact parameter counts), FLOPs, shapes, deep supervision."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch

from conftest import run_command
from nnunet_deconver.network import Deconver, build_preset
from nnunet_deconver.network.stats import count_parameters, model_report
from nnunet_deconver.network.unet import DeconverDecoder

# exact counts of the paper's structure (instance norms without affine parameters); the paper prints
# them to one or two decimals in millions (e.g. 16.18M for G = 8 and 57.21M for G = 1)
PARAMS = [
    ("isles22", 3, {}, 10_476_545),
    ("isles22", 5, {}, 11_028_481),
    ("brats23", 3, {}, 10_553_859),
    ("brats23", 5, {}, 11_130_883),
    ("glas", 3, {}, 20_635_041),
    ("glas", 5, {}, 20_794_785),
    ("fives", 3, {}, 20_635_041),
    ("fives", 5, {}, 20_794_785),
    ("isles22", 3, {"ratio": 1}, 7_753_217),
    ("isles22", 3, {"ratio": 2}, 8_660_993),
    ("isles22", 3, {"groups": 1}, 57_215_489),
    ("isles22", 3, {"groups": 8}, 16_185_857),
    # affine norms: + 4 x the sum of all stage widths (ISLES'22: 4 x (960 + 448) = 5,632)
    ("isles22", 3, {"norm_affine": True}, 10_482_177),
    ("isles22", 3, {"groups": 1, "norm_affine": True}, 57_221_121),
    ("isles22", 3, {"groups": 8, "norm_affine": True}, 16_191_489),
    ("brats23", 3, {"norm_affine": True}, 10_559_747),
    ("glas", 5, {"norm_affine": True}, 20_804_769),
]

# the smallest patch each preset handles (the deepest level keeps 2 voxels per axis)
SMALL_PATCH = {"isles22": (16, 16, 16), "brats23": (32, 32, 32), "glas": (64, 64), "fives": (64, 64)}
INPUTS = {"isles22": 2, "brats23": 4, "glas": 3, "fives": 3}


@pytest.mark.parametrize("preset,kernel,kwargs,expected", PARAMS)
def test_parameter_counts(preset, kernel, kwargs, expected):
    assert count_parameters(build_preset(preset, kernel, **kwargs)) == expected


@pytest.mark.parametrize("preset,paper_kflops", [("isles22", 607.0), ("brats23", 167.5), ("glas", 422.8),
                                                 ("fives", 422.8)])
def test_flops_per_voxel_paper_convention(preset, paper_kflops):
    r3, r5 = model_report(preset, 3), model_report(preset, 5)
    for r in (r3, r5):
        assert abs(r["flops_per_voxel_paper"] / 1e3 - paper_kflops) <= 0.03 * paper_kflops
    # the paper's convention does not depend on the NDC kernel; counting every convolution does
    assert r3["flops_per_voxel_paper"] == r5["flops_per_voxel_paper"]
    assert r5["flops_per_voxel"] > r3["flops_per_voxel"] > r3["flops_per_voxel_paper"]


def test_flops_do_not_depend_on_patch_size():
    a = model_report("isles22", 3, patch_size=(16, 16, 16))["flops_per_voxel"]
    b = model_report("isles22", 3, patch_size=(32, 16, 24))["flops_per_voxel"]
    assert a == pytest.approx(b, rel=1e-9)


@pytest.mark.parametrize("preset", list(SMALL_PATCH))
@pytest.mark.parametrize("deep_supervision", [False, True])
def test_forward_backward_every_preset(preset, deep_supervision):
    torch.manual_seed(0)
    net = build_preset(preset, 3, deep_supervision=deep_supervision)
    patch = SMALL_PATCH[preset]
    x = torch.randn(2, INPUTS[preset], *patch)
    out = net(x)
    outputs = out if deep_supervision else [out]
    levels = net.decoder.stages.__len__()
    assert len(outputs) == (levels if deep_supervision else 1)
    for level, o in enumerate(outputs):  # highest resolution first, halved per level
        assert o.shape == (2, net.num_classes, *[p // 2**level for p in patch])
        assert torch.isfinite(o).all()
    sum(o.float().mean() for o in outputs).backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("preset", ["isles22", "glas"])
def test_no_nan_under_bfloat16_autocast(preset):
    torch.manual_seed(0)
    net = build_preset(preset, 3, deep_supervision=True)
    x = torch.randn(1, INPUTS[preset], *SMALL_PATCH[preset])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = net(x)
        loss = sum(o.float().pow(2).mean() for o in outputs)
    loss.backward()
    assert all(torch.isfinite(o.float()).all() for o in outputs)
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_anisotropic_strides_and_kernels():
    net = Deconver(2, 3, 3, [8, 16, 32], [1, [1, 2, 2], 2], kernel_sizes=[[1, 3, 3], 3, 3],
                   stem_kernel_size=[1, 3, 3], deep_supervision=True)
    assert net.encoder.stages[0].block.mixer.ndc.weight.shape[2:] == (1, 3, 3)
    assert net.encoder.downsamples[1].stride == (1, 2, 2)
    outputs = net(torch.randn(1, 2, 8, 16, 16))
    assert [tuple(o.shape[2:]) for o in outputs] == [(8, 16, 16), (8, 8, 8)]
    # normalised once, to per-axis tuples, and handed down; the decoder's geometry is the encoder's
    assert [(lv.channels, lv.kernel_size, lv.stride) for lv in net.encoder.levels] == [
        (8, (1, 3, 3), (1, 1, 1)), (16, (3, 3, 3), (1, 2, 2)), (32, (3, 3, 3), (2, 2, 2))]
    assert net.decoder.upsamples[0].stride == (2, 2, 2) and net.decoder.upsamples[1].stride == (1, 2, 2)
    assert net.decoder.stages[1].block.mixer.ndc.kernel_size == (1, 3, 3)
    decoder = DeconverDecoder(net.encoder, 3, net.config, deep_supervision=True)
    assert {k: v.shape for k, v in decoder.state_dict().items()} == {
        k: v.shape for k, v in net.decoder.state_dict().items()}  # and the encoder is not kept in it


def test_deep_supervision_toggle_and_checkpoint_compatibility():
    torch.manual_seed(0)
    kwargs = dict(input_channels=1, num_classes=2, spatial_dims=2, features_per_stage=[4, 8, 16, 16],
                  strides=[1, 2, 2, 2])
    trained = Deconver(**kwargs, deep_supervision=True)
    x = torch.randn(1, 1, 32, 32)
    assert len(trained(x)) == 3
    trained.decoder.deep_supervision = False
    full_res = trained(x)
    assert isinstance(full_res, torch.Tensor) and full_res.shape == (1, 2, 32, 32)
    trained.decoder.deep_supervision = True
    torch.testing.assert_close(trained(x)[0], full_res)
    # the paper's structure (no auxiliary heads) loads a deep-supervision checkpoint, as nnU-Net's
    # predictor does, and computes the same full-resolution output
    inference = Deconver(**kwargs, deep_supervision=False)
    assert count_parameters(inference) < count_parameters(trained)
    inference.load_state_dict(trained.state_dict())
    torch.testing.assert_close(inference(x), full_res)
    with pytest.raises(RuntimeError, match="without deep supervision"):
        inference.decoder.deep_supervision = True


def test_checkpointed_levels_give_same_gradients():
    torch.manual_seed(0)
    kwargs = dict(input_channels=1, num_classes=2, spatial_dims=3, features_per_stage=[4, 8, 16], strides=[1, 2, 2])
    plain = Deconver(**kwargs)
    ckpt = Deconver(**kwargs, checkpoint_levels=[0, 1])
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 8, 8, 8)
    plain(x).square().mean().backward()
    ckpt(x).square().mean().backward()
    for a, b in zip(plain.parameters(), ckpt.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_norms_are_non_affine_by_default():
    net = build_preset("isles22", 3)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.InstanceNorm3d)]
    assert len(norms) == 2 * 7  # two per block, one block in each of 4 encoder and 3 decoder stages
    assert all(not m.affine and m.weight is None and m.bias is None for m in norms)
    affine = build_preset("isles22", 3, norm_affine=True)
    assert all(m.affine for m in affine.modules() if isinstance(m, torch.nn.InstanceNorm3d))


def test_eps_and_iterations_reach_every_ndc_layer():
    from nnunet_deconver.ndc import NDC, ndc_reference

    torch.manual_seed(0)
    kwargs = dict(input_channels=1, num_classes=2, spatial_dims=2, features_per_stage=[4, 8], strides=[1, 2])
    net = Deconver(**kwargs, eps=1e-16, iterations=3)
    layers = [m for m in net.modules() if isinstance(m, NDC)]
    assert len(layers) == 3 and all(m.eps == 1e-16 and m.iterations == 3 for m in layers)
    assert all(m.eps == 1e-8 and m.iterations == 1 for m in Deconver(**kwargs).modules() if isinstance(m, NDC))
    # the layer applies three updates with that eps: compare with the plain graph applied step by step
    layer = layers[0].double()
    x = torch.rand(1, 4, 6, 6, dtype=torch.float64)
    s = torch.relu(layer.init(x))
    for _ in range(3):
        s = ndc_reference(x, s, torch.relu(layer.weight), layer.groups, 1e-16, 1)
    torch.testing.assert_close(layer(x), s, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="iterations"):
        Deconver(**kwargs, iterations=0)
    with pytest.raises(ValueError, match="eps"):
        Deconver(**kwargs, eps=0.0)


@pytest.mark.parametrize("trained_affine", [True, False])
def test_checkpoint_of_either_norm_variant_loads(trained_affine):
    """A network built with one norm variant loads a checkpoint of the other and computes what it computed."""
    torch.manual_seed(0)
    kwargs = dict(input_channels=2, num_classes=2, spatial_dims=3, features_per_stage=[4, 8, 16], strides=[1, 2, 2])
    trained = Deconver(**kwargs, norm_affine=trained_affine, deep_supervision=True)
    with torch.no_grad():  # scale and shift away from their identity initialisation
        for name, p in trained.named_parameters():
            if ".norm" in name:
                p.copy_(torch.rand_like(p) + 0.5)
    x = torch.randn(1, 2, 8, 8, 8)
    trained.eval()
    expected = trained(x)[0]
    loaded = Deconver(**kwargs, norm_affine=not trained_affine)
    with pytest.warns(UserWarning, match="norm_affine=" + str(trained_affine)):
        loaded.load_state_dict(trained.state_dict())
    assert loaded.norm_affine == trained_affine
    assert sum(p.numel() for p in loaded.parameters()) == sum(
        p.numel() for n, p in trained.named_parameters() if "aux_heads" not in n)
    loaded.eval()
    torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)


def test_checkpoint_of_another_structure_still_fails_loudly():
    kwargs = dict(input_channels=1, num_classes=2, spatial_dims=2, strides=[1, 2])
    other = Deconver(**kwargs, features_per_stage=[4, 8], norm_affine=True).state_dict()
    net = Deconver(**kwargs, features_per_stage=[8, 16])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no switch of the norms for a state dict of other widths
        with pytest.raises(RuntimeError, match="size mismatch"):
            net.load_state_dict(other)
    assert not net.norm_affine


def test_errors():
    with pytest.raises(ValueError, match="strides\\[0\\]"):
        Deconver(1, 2, 2, [4, 8], [2, 2])
    with pytest.raises(ValueError, match="one entry per stage"):
        Deconver(1, 2, 2, [4, 8], [1, 2, 2])
    with pytest.raises(ValueError, match="spatial_dims"):
        Deconver(1, 2, 4, [4, 8], [1, 2])
    with pytest.raises(ValueError, match="odd"):
        Deconver(1, 2, 2, [4, 8], [1, 2], kernel_sizes=4)


def test_network_imports_without_nnunet_trainer_machinery():
    code = ("import sys, nnunet_deconver.network, nnunet_deconver.ndc; "
            "assert not any(m.startswith('nnunetv2') for m in sys.modules), 'nnunetv2 imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_stats_command_json():
    out = run_command(["nnunet-deconver", "stats", "--preset", "isles22", "--kernel", "5", "--json"])
    report = json.loads(out.stdout)
    assert report["params"] == 11_028_481
    assert abs(report["flops_per_voxel_paper"] - 607.0e3) <= 0.03 * 607.0e3
    assert report["flops_per_voxel"] > report["flops_per_voxel_paper"]


def test_stats_module_entry_point_text():
    proc = subprocess.run([sys.executable, "-m", "nnunet_deconver", "stats", "--preset", "brats23"],
                          capture_output=True, text=True, check=True)
    assert "10,553,859" in proc.stdout and "167.5K" in proc.stdout
