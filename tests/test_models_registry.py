"""Registered names in timm, the cnn3 family, timm interfaces of injected models, weights I/O."""

import copy
import json
import subprocess
import sys

import pytest
import timm
import torch
from timm.optim import param_groups_layer_decay

import attnzoo
from attention_helpers import assert_attention_matters, awake_model
from attnzoo.attention import get_attention_class
from attnzoo.errors import CheckpointError, UnknownModelError
from attnzoo.models import build_model, load_model, load_weights, model_config, save_weights
from attnzoo.models.registry import ATTENTIONS, BACKBONES


def test_every_backbone_attention_pair_is_a_timm_model():
    expected = {f"{b}_{a}" for b in BACKBONES for a in ATTENTIONS} | {"cnn3", "cnn3_se", "cnn3_cbam"}
    assert expected <= set(timm.list_models())
    assert len(timm.list_models("*_cbam")) == len(BACKBONES) + 1


@pytest.mark.parametrize("attn", ATTENTIONS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_registered_name_builds(backbone, attn):
    with torch.device("meta"):
        model = timm.create_model(f"{backbone}_{attn}", num_classes=7)
    assert model.num_classes == 7
    assert any(isinstance(m, get_attention_class(attn)) for m in model.modules())


@pytest.mark.parametrize("name", ["resnet18_cbam", "mobilenetv3_small_100_se", "efficientnet_b0_eca", "resnet50_mhsa"])
def test_registered_models_run_forward_and_backward(name):
    model = timm.create_model(name, num_classes=5)
    out = model(torch.randn(2, 3, 64, 64))
    out.sum().backward()
    assert out.shape == (2, 5)


def test_cnn3_is_three_conv_bn_relu_pool_blocks_then_fc512_dropout_fc():
    model = timm.create_model("cnn3", num_classes=10, in_chans=1)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert model.fc1.in_features == 128 * 3 * 3 and model.fc1.out_features == 512
    assert model.drop.p == 0.5
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)


def test_cnn3_attention_goes_through_the_surgery_registry():
    model = timm.create_model("cnn3_cbam")
    assert [type(block.attn).__name__ for block in model.stages] == ["Cbam"] * 3
    assert model_config(model)["surgery"][0]["attn"] == "cbam"


def test_features_only_returns_every_stage():
    model = timm.create_model("resnet50_cbam", features_only=True)
    shapes = [tuple(f.shape[1:]) for f in model(torch.randn(1, 3, 64, 64))]
    assert shapes == [(64, 32, 32), (256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)]


@pytest.mark.parametrize("feature_cls", ["getter", "hook"])
def test_every_features_only_wrapper_gets_the_attention_of_the_model(feature_cls):
    """timm's other feature wrappers keep the model whole inside them; surgery reaches its blocks there."""
    model = timm.create_model("resnet18_cbam")
    features = timm.create_model("resnet18_cbam", features_only=True, feature_cls=feature_cls)
    count = lambda m: sum(isinstance(x, get_attention_class("cbam")) for x in m.modules())  # noqa: E731
    assert count(features) == count(model) == 8
    assert [f.shape[1] for f in features(torch.randn(1, 3, 64, 64))] == [64, 64, 128, 256, 512]


def test_forward_features_and_reset_classifier_still_work():
    model = timm.create_model("mobilenetv2_100_cbam").eval()
    assert model.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 1280, 2, 2)
    model.reset_classifier(3)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


@pytest.mark.parametrize("name", ["cnn3", "cnn3_cbam"])
def test_cnn3_gradient_checkpointing_keeps_outputs_and_gradients(name):
    plain = awake_model(name)
    checkpointed = copy.deepcopy(plain)
    checkpointed.set_grad_checkpointing(True)
    x = torch.randn(2, 1, 28, 28)
    plain.train(), checkpointed.train()
    outputs = []
    for model in (plain, checkpointed):
        torch.manual_seed(1)  # the same dropout mask
        outputs.append(model(x))
        outputs[-1].square().sum().backward()
    torch.testing.assert_close(outputs[1], outputs[0])
    for (key, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        assert a.grad is not None and a.grad.abs().sum() > 0, key
        torch.testing.assert_close(b.grad, a.grad)


def test_cnn3_has_timms_classifier_and_layer_decay_hooks():
    model = timm.create_model("cnn3_se")
    assert model.get_classifier(name_only=True) == "fc" and model.get_classifier() is model.fc
    groups = param_groups_layer_decay(model, layer_decay=0.5)
    scales = sorted({group["lr_scale"] for group in groups})
    assert scales == [0.125, 0.25, 0.5, 1.0]  # one group per conv block, the head last
    assert sum(len(group["params"]) for group in groups) == len(list(model.parameters()))


def test_jit_trace_and_compile_reproduce_eager_outputs():
    model = awake_model("resnet18_cbam", num_classes=4)  # tests/test_tracing.py: every attention and tracer
    x = torch.randn(2, 3, 32, 32)
    assert_attention_matters(model, x)
    with torch.no_grad():
        eager = model(x.clone())
        traced = torch.jit.trace(model, x.clone())(x)
        compiled = torch.compile(model, backend="eager", fullgraph=True)(x)
    torch.testing.assert_close(traced, eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


def test_small_input_stem_keeps_resolution():
    model = build_model("resnet18_cbam", num_classes=10, in_chans=1, small_input=True)
    assert model.forward_features(torch.randn(1, 1, 28, 28)).shape == (1, 512, 4, 4)
    strided = build_model("resnet18", in_chans=1, small_input=True, stem_stride=2)
    assert strided.forward_features(torch.randn(1, 1, 28, 28)).shape == (1, 512, 2, 2)
    deep = build_model("resnet50d", in_chans=1, small_input=True)
    assert deep.forward_features(torch.randn(1, 1, 32, 32)).shape == (1, 2048, 4, 4)
    mobile = build_model("mobilenetv2_100", in_chans=1, small_input=True, attention="se")
    assert mobile.forward_features(torch.randn(1, 1, 32, 32)).shape == (1, 1280, 2, 2)


@pytest.mark.parametrize("name", ["resnet18_cbam", "mobilenetv2_100_se"])
def test_small_input_stem_is_made_on_the_model_device_and_dtype(name):
    """timm's create_model(device=..., dtype=...) places every tensor; the rebuilt stem conv too."""
    model = timm.create_model(name, small_input=True, device="meta", dtype=torch.float64)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    assert {t.device.type for t in tensors.values()} == {"meta"}
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.float64}


def test_build_model_injects_into_pretrained_style_weights_with_preserve():
    model = build_model("resnet18", attention="se", stages=[3, 4], preserve=True, num_classes=3)
    assert model.layer2[0].se is None and model.layer3[0].se is not None


def test_unknown_model_name_suggests_close_ones():
    with pytest.raises(UnknownModelError, match="did you mean resnet50_cbam"):
        build_model("resnet50_cbma")


def test_pretrained_without_any_weights_says_how_to_start_from_the_backbone():
    with pytest.raises(UnknownModelError, match=r"build_model\('resnet50', pretrained=True, attention='simam'\)"):
        timm.create_model("resnet50_simam", pretrained=True)  # simam cannot start as the identity: no preserve


def test_fmnist_tags_point_at_hub_ids_for_the_recipes_weights():
    cfg = timm.models.get_pretrained_cfg("resnet18_cbam.fmnist")
    assert cfg.hf_hub_id == "attnzoo/resnet18_cbam.fmnist"
    assert cfg.input_size == (1, 32, 32) and cfg.num_classes == 10


def test_weights_round_trip_through_safetensors_with_the_model_config(tmp_path):
    model = build_model("resnet18_cbam", num_classes=10, in_chans=1, small_input=True).eval()
    save_weights(model, tmp_path / "w.safetensors")
    loaded = load_model(tmp_path / "w.safetensors").eval()
    x = torch.randn(1, 1, 28, 28)
    assert model_config(loaded) == model_config(model)
    assert torch.equal(loaded(x), model(x))
    assert not list(tmp_path.glob(".*tmp"))


def test_truncated_checkpoint_is_a_one_line_error(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(timm.create_model("cnn3"), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="may be truncated"):
        load_model(path)


def test_a_pickled_checkpoint_points_at_attnzoo_convert(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(timm.create_model("cnn3").state_dict(), path)
    with pytest.raises(CheckpointError, match="is a PyTorch pickle .* attnzoo convert") as err:
        load_weights(timm.create_model("cnn3"), path)
    assert "\n" not in str(err.value)


def test_an_unknown_tag_lists_the_names_tags():
    expected = r"resnet50_se has no pretrained tag 'nope_in1k'; its tags are .*ra2_in1k"
    with pytest.raises(UnknownModelError, match=expected):
        timm.create_model("resnet50_se.nope_in1k")


def test_weights_that_do_not_fit_name_the_mismatch(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(timm.create_model("cnn3", num_classes=10), path)
    with pytest.raises(CheckpointError, match=r"shape mismatches \(e\.g\. fc\.weight: file \(10, 512\), model \(5, 512\)"):
        load_weights(timm.create_model("cnn3", num_classes=5), path)


def test_cli_lists_models_and_attentions():
    out = subprocess.run(
        [sys.executable, "-m", "attnzoo", "list", "resnet18_*"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "resnet18_cbam" in out and "resnet18" not in out
    attns = subprocess.run(
        [sys.executable, "-m", "attnzoo", "list", "--attentions"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert attns == attnzoo.list_attentions()


def test_cnn3_builds_on_the_requested_device_and_dtype_and_resets_its_head_there_in_its_mode():
    model = timm.create_model("cnn3_se", device="meta", dtype=torch.bfloat16)
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("meta", torch.bfloat16)}
    model.eval().reset_classifier(3)
    assert (model.fc.weight.device.type, model.fc.weight.dtype) == ("meta", torch.bfloat16)
    assert not model.fc.training


def test_cnn3_without_classifier_and_pool_returns_the_last_feature_map():
    x = torch.randn(2, 1, 28, 28)
    assert timm.create_model("cnn3_cbam", num_classes=0)(x).shape == (2, 512)  # pre-logits
    assert timm.create_model("cnn3_cbam", num_classes=0, global_pool="")(x).shape == (2, 128, 3, 3)
    model = timm.create_model("cnn3_cbam")
    model.reset_classifier(0, "")
    assert model(x).shape == (2, 128, 3, 3)
    with pytest.raises(ValueError, match="needs num_classes=0"):
        model.reset_classifier(10, "")


def test_cnn3_features_only_loads_the_whole_models_weights(tmp_path):
    from safetensors.torch import save_file

    model = awake_model("cnn3_se.fmnist").eval()
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    features = timm.create_model("cnn3_se.fmnist", pretrained=True, features_only=True,
                                 pretrained_cfg_overlay=dict(file=str(tmp_path / "w.safetensors"))).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(features(x)[-1], model.forward_features(x))
