"""Pretrained cfgs: every registered name and tag has timm's complete cfg, and it describes the model it builds.

Building every name takes minutes on 2 cores: by default the build check covers every attention on one ResNet
and one MobileNet, every base with SE, the cnn3 family, every name with published weights and their tags;
``ATTNZOO_FULL_SWEEP=1`` builds every name and tag.
"""

import os

import pytest
import timm
import torch
from timm.data import resolve_data_config

import attnzoo  # noqa: F401  (registers the models)
from attnzoo.models.cfgs import ATTENTION_PAPERS
from attnzoo.models.published import PUBLISHED
from attnzoo.models.registry import INJECTED

NAMES = sorted({"cnn3", *INJECTED})
TAGGED = sorted(t for name in NAMES for t in timm.list_pretrained(f"{name}.*") if "." in t)
FULL = os.environ.get("ATTNZOO_FULL_SWEEP") == "1"
SAMPLE = sorted({n for n, base in INJECTED.items() if base in ("resnet18", "mobilenetv3_small_100", "cnn3")}
                | {n for n in INJECTED if n.endswith("_se")} | {k.partition(".")[0] for k in PUBLISHED} | {"cnn3"})
FIELDS = ("input_size", "pool_size", "crop_pct", "interpolation", "mean", "std", "first_conv", "classifier",
          "num_classes", "license")


def describes(name: str) -> None:
    """The model ``create_model(name)`` builds takes the cfg's input and gives its pool size and classes."""
    with torch.device("meta"):
        model = timm.create_model(name)
        cfg = model.pretrained_cfg
        data = resolve_data_config(model=model)
        features = model.forward_features(torch.empty(2, *data["input_size"]))
    assert data["input_size"] == tuple(cfg["input_size"])
    assert model.in_chans == cfg["input_size"][0] == len(cfg["mean"]) == len(cfg["std"])
    assert tuple(features.shape[2:]) == tuple(cfg["pool_size"]), f"{name}: feature map {features.shape}"
    params = dict(model.named_parameters())
    assert params[f"{cfg['first_conv']}.weight"].shape[1] == cfg["input_size"][0]
    assert params[f"{cfg['classifier']}.weight"].shape[0] == cfg["num_classes"] == model.num_classes


@pytest.mark.parametrize("name", NAMES + TAGGED)
def test_every_name_and_tag_has_every_field(name):
    cfg = timm.get_pretrained_cfg(name).to_dict()
    paper = () if name.partition(".")[0] == "cnn3" else ("paper_name", "paper_ids")  # plain cnn3 has no paper
    missing = [field for field in FIELDS + paper if cfg.get(field) is None]
    assert not missing, f"{name} lacks {missing}"


@pytest.mark.parametrize("name", (NAMES if FULL else SAMPLE) + [t for t in TAGGED if FULL or t.partition(".")[0] in SAMPLE])
def test_cfg_describes_the_model_it_builds(name):
    describes(name)


@pytest.mark.parametrize("name", [n for n in INJECTED if not n.startswith("cnn3")])
def test_default_tag_is_the_architecture_timm_builds(name):
    cfg = timm.get_pretrained_cfg(name)
    assert (cfg.input_size, cfg.num_classes) == ((3, 224, 224), 1000)
    published = PUBLISHED.get(f"{name}.{cfg.tag}")  # a published default carries its weights' cfg
    base = timm.get_pretrained_cfg(published["source"] if published else INJECTED[name])
    assert (cfg.mean, cfg.std, cfg.first_conv, cfg.classifier, cfg.pool_size, cfg.crop_pct) == (
        base.mean, base.std, base.first_conv, base.classifier, base.pool_size, base.crop_pct)


@pytest.mark.parametrize("name", [n for n in INJECTED if not any(k.startswith(f"{n}.") for k in PUBLISHED)])
def test_paper_fields_name_the_attention_paper(name):
    cfg = timm.get_pretrained_cfg(name)
    assert (cfg.paper_name, cfg.paper_ids) == ATTENTION_PAPERS[name[len(INJECTED[name]) + 1:]]


def test_cnn3_describes_its_fixed_28px_one_channel_input():
    cfg = timm.get_pretrained_cfg("cnn3")
    assert (cfg.input_size, cfg.num_classes, cfg.fixed_input_size) == ((1, 28, 28), 10, True)
    model = timm.create_model("cnn3_cbam").eval()
    assert model.in_chans == 1 and model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert timm.create_model("cnn3", in_chans=3, img_size=32)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["cnn3", "cnn3_se", "cnn3_cbam", "resnet18_se", "resnet18_cbam",
                                  "mobilenetv2_100_se", "mobilenetv2_100_cbam"])
def test_fmnist_tag_is_a_one_channel_ten_class_safetensors_tag(name):
    cfg = timm.get_pretrained_cfg(f"{name}.fmnist")
    assert cfg.input_size[0] == 1 and cfg.num_classes == 10 and cfg.hf_hub_filename == "model.safetensors"
    assert timm.get_pretrained_cfg(name).tag != "fmnist"
    model = timm.create_model(f"{name}.fmnist").eval()
    assert model(torch.randn(2, *cfg.input_size)).shape == (2, 10)


def test_every_tag_with_weights_pins_a_safetensors_file():
    for name in TAGGED:
        cfg = timm.get_pretrained_cfg(name)
        assert cfg.hf_hub_filename and cfg.hf_hub_filename.endswith(".safetensors"), name
        assert cfg.url is None, name  # no pickle fallback
