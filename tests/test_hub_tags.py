"""Registered weight tags load from a local Hub the timm way, one tag of each kind.

Each tag's repo is seeded as the real one is shaped (``model.safetensors`` + ``config.json``) with random,
woken weights of the model the repo holds (``timm/seresnet50.ra2_in1k`` holds a seresnet50, the fmnist repo
an attnzoo model); the tag must then reproduce that model's logits (published and fmnist weights load as
they are; a function-preserving tag computes its backbone's function) and adapt as timm adapts: a new head
for ``num_classes``, a folded or repeated first convolution for ``in_chans``, feature maps for
``features_only``; offline, a warm cache serves it without a request; a missing or pickle-only repo is a
one-line error in seconds, and so is a corrupt or ill-fitting file on the Hub or a missing overlay ``file``.
"""

import json

import pytest
import timm
import torch
from safetensors.torch import save
from timm.models import adapt_input_conv

import attnzoo  # noqa: F401  (registers attnzoo's names in timm)
from attention_helpers import assert_equal_to_rounding, awake_model
from attnzoo.errors import CheckpointError, HubError
from hub_fixtures import fast_one_line_error, hub, hub_server, one_line, pickled, publish_files  # noqa: F401
from hub_server import point_client_at

# A tag of each kind (docs/weights.md lists them all), and cnn3's, which timm's own builder makes; each
# model's last feature map is its forward_features.
TAGS = {
    "published": "resnet50_se.a3_in1k",
    "preserving": "resnet18_cbam.a1_in1k_untrained_attn",
    "fmnist-trained": "resnet18_cbam.fmnist",
    "fmnist-trained, timm's builder": "cnn3.fmnist",
}


def cfg_of(name_tag: str) -> dict:
    return timm.get_pretrained_cfg(name_tag).to_dict()


def seed_repo(name_tag: str) -> torch.nn.Module:
    """Publish random weights where the tag's cfg points, shaped as that repo is; returns the model they are."""
    cfg = cfg_of(name_tag)
    repo = cfg["hf_hub_id"]
    held = awake_model(repo.split("/")[1])  # e.g. seresnet50.ra2_in1k, resnet18_cbam.fmnist: as its own cfg builds
    config = {"architecture": repo.split("/")[1].split(".")[0], "num_classes": held.num_classes,
              "num_features": held.num_features, "pretrained_cfg": {k: v for k, v in cfg.items() if k != "file"}}
    publish_files(repo, {cfg.get("hf_hub_filename") or "model.safetensors": save(held.state_dict()),
                         "config.json": json.dumps(config).encode()})
    return held


def sample(name_tag: str, in_chans: int | None = None) -> torch.Tensor:
    """Two images of the tag's input, at most 64 px a side (the ResNets pool globally), to keep tests fast."""
    cfg = cfg_of(name_tag)
    channels, height, width = cfg["input_size"]
    if not cfg.get("fixed_input_size"):
        height, width = min(height, 64), min(width, 64)
    return torch.randn(2, in_chans or channels, height, width)


@pytest.fixture(params=sorted(TAGS), ids=str)
def tag(request, hub):
    """A kind's tag with its repo seeded on the local Hub, and the model the repo holds."""
    name_tag = TAGS[request.param]
    return name_tag, seed_repo(name_tag)


def test_default_classes_give_the_repos_logits(tag):
    name_tag, held = tag
    model = timm.create_model(name_tag, pretrained=True).eval()
    x = sample(name_tag)
    with torch.no_grad():
        assert_equal_to_rounding(model(x), held(x))


def test_ten_classes_replace_only_the_head(tag):
    name_tag, held = tag
    model = timm.create_model(name_tag, pretrained=True, num_classes=10).eval()
    assert model.get_classifier().out_features == 10
    x = sample(name_tag)
    with torch.no_grad():
        assert_equal_to_rounding(model.forward_features(x), held.forward_features(x))


def test_other_input_channels_adapt_the_first_convolution(tag):
    name_tag, held = tag
    first_conv = cfg_of(name_tag)["first_conv"] + ".weight"
    weight = held.state_dict()[first_conv]
    in_chans = 1 if weight.shape[1] != 1 else 3
    model = timm.create_model(name_tag, pretrained=True, in_chans=in_chans).eval()
    expected = adapt_input_conv(in_chans, weight, base_chans=weight.shape[1])  # what timm does to pretrained weights
    torch.testing.assert_close(model.state_dict()[first_conv], expected, rtol=0, atol=0)
    assert torch.isfinite(model(sample(name_tag, in_chans))).all()


def test_features_only_gives_the_repos_feature_maps(tag):
    name_tag, held = tag
    features = timm.create_model(name_tag, pretrained=True, features_only=True).eval()
    x = sample(name_tag)
    with torch.no_grad():
        assert_equal_to_rounding(features(x)[-1], held.forward_features(x))


def test_offline_a_warm_cache_serves_the_tag_without_a_request(tag, hub, monkeypatch):
    name_tag, held = tag
    timm.create_model(name_tag, pretrained=True)
    point_client_at(monkeypatch, hub.url, hub.token, hub.hf_home, offline=True)
    requests = hub.state.requests
    model = timm.create_model(name_tag, pretrained=True).eval()
    assert hub.state.requests == requests
    x = sample(name_tag)
    with torch.no_grad():
        assert_equal_to_rounding(model(x), held(x))


def load_from(name_tag: str, repo: str) -> torch.nn.Module:
    """The tag, loaded through its own path, with its repo replaced by ``repo``."""
    return timm.create_model(name_tag, pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id=repo))


@pytest.mark.parametrize("name_tag", sorted(TAGS.values()))
def test_unpublished_repo_is_a_fast_one_line_error(hub, name_tag):
    repo = f"nobody/{name_tag}"  # the tag's own repo may be seeded by the tests above
    fast_one_line_error(lambda: load_from(name_tag, repo), HubError,
                        f"pretrained weights of {name_tag}: Hub repo '{repo}' not found")


@pytest.mark.parametrize("name_tag", sorted(TAGS.values()))
def test_pickle_only_repo_is_refused_fast(hub, name_tag):
    repo = f"lab/pickled-{name_tag}"
    publish_files(repo, {"pytorch_model.bin": pickled(timm.create_model(name_tag))})
    fast_one_line_error(lambda: load_from(name_tag, repo), HubError, r"only pickled weights \(pytorch_model.bin\)")


# Registered attention models' tags (cnn3's weights load through timm's own builder).
INJECTED_TAGS = sorted(t for t in TAGS.values() if not t.startswith("cnn3"))


@pytest.mark.parametrize("name_tag", INJECTED_TAGS)
def test_corrupt_hub_file_is_a_one_line_error(hub, name_tag):
    repo = f"lab/corrupt-{name_tag}"
    publish_files(repo, {"model.safetensors": b"not a safetensors file" * 4})
    fast_one_line_error(lambda: load_from(name_tag, repo), CheckpointError, "not a readable safetensors file")


@pytest.mark.parametrize("name_tag", INJECTED_TAGS)
def test_weights_of_another_model_name_the_first_mismatch_in_one_line(hub, name_tag):
    repo = f"lab/other-model-{name_tag}"
    publish_files(repo, {"model.safetensors": save(timm.create_model("cnn3").state_dict())})
    message = fast_one_line_error(lambda: load_from(name_tag, repo), CheckpointError,
                                  f"pretrained weights of {name_tag} .* do not fit the model: ")
    assert "missing keys (e.g. " in message


@pytest.mark.parametrize("name_tag", INJECTED_TAGS)
def test_missing_overlay_file_is_a_one_line_error(tmp_path, name_tag):
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(CheckpointError, match=f"{missing} does not exist") as err:
        timm.create_model(name_tag, pretrained=True, pretrained_cfg_overlay=dict(file=str(missing)))
    one_line(err)
