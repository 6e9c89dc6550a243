"""Tags with timm weights: published checkpoints under attnzoo names, and function-preserving starts.

No network: each test saves random weights (every BatchNorm woken, so the attention sees data) as the
tag's safetensors file and loads it the timm way, through ``pretrained_cfg_overlay=dict(file=...)`` or a
local Hub serving the tag's own repo id.
"""

import pytest
import timm
import torch
from safetensors.torch import save, save_file

import attnzoo  # noqa: F401  (registers the models)
from attention_helpers import assert_attention_matters, assert_equal_to_rounding, wake
from attnzoo.errors import UnknownModelError
from attnzoo.models.published import PRESERVING, PUBLISHED
from hub_fixtures import hub, hub_server, publish_files  # noqa: F401

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
PRESERVING_RESNET, PRESERVING_MOBILENET = "resnet18_cbam.a1_in1k_untrained_attn", "mobilenetv2_100_se.ra_in1k_untrained_attn"


def woken(arch: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return wake(timm.create_model(arch, **kwargs)).eval()


def saved(model: torch.nn.Module, tmp_path) -> str:
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), path)
    return str(path)


def from_file(name: str, path: str, **kwargs) -> torch.nn.Module:
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path), **kwargs).eval()


def logits(model: torch.nn.Module, x: torch.Tensor = X) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    assert torch.isfinite(out).all()
    return out


def test_published_tags_include_timms_se_and_eca_resnets():
    assert PUBLISHED["resnet50_se.ra2_in1k"]["source"] == "seresnet50.ra2_in1k"
    assert {"resnext50_32x4d_se.racm_in1k", "resnet50d_eca.miil_in1k"} <= PUBLISHED.keys()
    cfg = timm.get_pretrained_cfg("resnet50_se.ra2_in1k")
    assert (cfg.hf_hub_id, cfg.hf_hub_filename, cfg.url) == ("timm/seresnet50.ra2_in1k", "model.safetensors", None)
    assert cfg.license == timm.get_pretrained_cfg("seresnet50.ra2_in1k").license
    assert "results-imagenet.csv" in cfg.notes[0]  # the top-1 source, which timm does not ship


@pytest.mark.parametrize(("name", "source"), [("resnet50_se", "seresnet50"), ("resnext50_32x4d_se", "seresnext50_32x4d")])
def test_a_published_name_defaults_to_its_sources_default_tag(name, source):
    assert timm.get_pretrained_cfg(name).tag == timm.get_pretrained_cfg(source).tag


def test_published_weights_load_into_the_attnzoo_name_with_the_same_logits(tmp_path):
    source = woken("seresnet50")
    path = saved(source, tmp_path)
    model = from_file("resnet50_se.ra2_in1k", path)
    assert_attention_matters(model, X)
    assert_equal_to_rounding(logits(model), logits(source))
    ten = from_file("resnet50_se.ra2_in1k", path, num_classes=10)
    assert ten.num_classes == 10
    assert_equal_to_rounding(ten.forward_head(ten.forward_features(X), pre_logits=True),
                             source.forward_head(source.forward_features(X), pre_logits=True))


def test_a_published_tag_loads_from_its_sources_hub_repo(hub):
    source = woken("seresnet50")
    publish_files("timm/seresnet50.ra2_in1k", {"model.safetensors": save(source.state_dict())})
    model = timm.create_model("resnet50_se.ra2_in1k", pretrained=True, num_classes=10).eval()
    assert torch.equal(model.layer4[2].se.fc1.weight, source.layer4[2].se.fc1.weight)
    assert logits(model).shape == (2, 10)


@pytest.mark.parametrize(("tag", "backbone"), [(PRESERVING_RESNET, "resnet18"), (PRESERVING_MOBILENET, "mobilenetv2_100")])
def test_preserving_tag_computes_exactly_the_backbones_function(tmp_path, tag, backbone):
    plain = woken(backbone)
    path = saved(plain, tmp_path)
    model = from_file(tag, path)
    assert_attention_matters(model, X)  # the attention is there, compensated, not bypassed
    torch.testing.assert_close(logits(model), logits(plain), rtol=1e-5, atol=1e-5)


def test_preserving_tag_adapts_classes_and_channels_the_timm_way(tmp_path):
    path = saved(woken("resnet18"), tmp_path)
    model = from_file(PRESERVING_RESNET, path, num_classes=10, in_chans=1)
    plain = from_file("resnet18", path, num_classes=10, in_chans=1)
    x = X[:, :1]
    torch.testing.assert_close(plain.conv1.weight, model.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(model.forward_head(model.forward_features(x), pre_logits=True),
                               plain.forward_head(plain.forward_features(x), pre_logits=True), rtol=1e-5, atol=1e-5)
    assert logits(model, x).shape == (2, 10)


def test_preserving_tag_loads_features_only(tmp_path):
    path = saved(woken("resnet18"), tmp_path)
    features = from_file(PRESERVING_RESNET, path, features_only=True)(X)
    plain = from_file("resnet18", path, features_only=True)(X)
    assert len(features) == len(plain) == 5
    for got, expected in zip(features, plain):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_preserving_tag_loads_from_the_backbones_hub_repo(hub):
    plain = woken("mobilenetv2_100")
    publish_files("timm/mobilenetv2_100.ra_in1k", {"model.safetensors": save(plain.state_dict())})
    model = timm.create_model(PRESERVING_MOBILENET, pretrained=True).eval()
    torch.testing.assert_close(logits(model), logits(plain), rtol=1e-5, atol=1e-5)


def test_preserving_tags_say_the_attention_is_untrained():
    for name, entry in PRESERVING.items():
        cfg = timm.get_pretrained_cfg(name)
        assert name.endswith("_untrained_attn") and "UNTRAINED" in cfg.description, name
        assert "backbone's" in cfg.description and cfg.hf_hub_id == timm.get_pretrained_cfg(entry["source"]).hf_hub_id


def test_every_backbone_has_preserving_tags_except_where_surgery_refuses():
    bases = {entry["source"].split(".")[0] for entry in PRESERVING.values()}
    assert {"resnet18", "resnet50", "resnet50d", "mobilenetv2_100", "mobilenetv1_100"} <= bases
    assert not any(name.partition(".")[0].endswith("_simam") for name in PRESERVING)  # simam has no identity


def test_pretrained_default_without_weights_lists_the_tags_that_have_them():
    with pytest.raises(UnknownModelError, match=r"resnet50_cbam\.a1_in1k_untrained_attn.*attention untrained"):
        timm.create_model("resnet50_cbam", pretrained=True)
