"""Pretrained weights of registered names, fetched from a local Hub the timm way: safetensors only, and
a missing repo, a pickle-only repo, an unreachable Hub or a cold offline cache fail in seconds, in one line."""

import timm
import torch
from safetensors.torch import save

import attnzoo  # noqa: F401  (registers attnzoo's names in timm)
from attnzoo.errors import HubError
from attnzoo.models.pretrained import load_pretrained_weights
from hub_fixtures import closed_port_url, fast_one_line_error, hub, hub_server, pickled, publish_files  # noqa: F401
from hub_server import point_client_at


def load_into_fresh(cfg: dict) -> torch.nn.Module:
    model = timm.create_model("resnet18_se", num_classes=10)
    load_pretrained_weights(model, {"architecture": "resnet18_se", "tag": "test", **cfg}, num_classes=10, in_chans=3)
    return model


def test_hub_weights_load_from_the_pinned_safetensors(hub):
    source = timm.create_model("resnet18_se", num_classes=10)
    publish_files("lab/se-weights", {"model.safetensors": save(source.state_dict())})
    loaded = load_into_fresh({"hf_hub_id": "lab/se-weights", "hf_hub_filename": "model.safetensors"})
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


def test_missing_repo_fails_fast_naming_the_tag(hub):
    message = fast_one_line_error(lambda: load_into_fresh({"hf_hub_id": "lab/never-pushed"}), HubError,
                          "pretrained weights of resnet18_se.test: Hub repo 'lab/never-pushed' not found")
    assert "HF_TOKEN" in message


def test_pickle_only_repo_is_refused_not_unpickled(hub):
    publish_files("lab/only-pickle", {"pytorch_model.bin": pickled(timm.create_model("resnet18_se", num_classes=10))})
    message = fast_one_line_error(lambda: load_into_fresh({"hf_hub_id": "lab/only-pickle"}), HubError,
                          r"only pickled weights \(pytorch_model.bin\), no model.safetensors")
    assert "safetensors only" in message


def test_unreachable_hub_fails_fast_without_the_clients_retries(hub, monkeypatch):
    point_client_at(monkeypatch, closed_port_url(), hub.token, hub.hf_home)
    message = fast_one_line_error(lambda: load_into_fresh({"hf_hub_id": "lab/anything"}), HubError,
                                  "cannot reach the Hub at http://127")
    assert "HF_ENDPOINT" in message


def test_offline_with_a_cold_cache_says_how_to_fill_it(hub, monkeypatch):
    point_client_at(monkeypatch, hub.url, hub.token, hub.hf_home, offline=True)
    message = fast_one_line_error(lambda: load_into_fresh({"hf_hub_id": "lab/anything"}), HubError,
                          "HF_HUB_OFFLINE=1 and model.safetensors of lab/anything is not in the cache")
    assert "unset HF_HUB_OFFLINE" in message


def test_a_local_file_in_the_cfg_wins_over_its_hub_id(hub, tmp_path):
    source = timm.create_model("resnet18_se", num_classes=10)
    path = tmp_path / "model.safetensors"
    path.write_bytes(save(source.state_dict()))
    requests = hub.state.requests
    loaded = load_into_fresh({"hf_hub_id": "lab/never-pushed", "file": str(path)})
    assert hub.state.requests == requests
    torch.testing.assert_close(loaded.fc.weight, source.fc.weight, rtol=0, atol=0)
