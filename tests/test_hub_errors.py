"""Bad input to the hub functions: each is one line naming the problem and the fix, never a traceback
from deep inside the Hub client."""

import io
import json

import pytest
import timm
import torch

import attnzoo  # noqa: F401  (registers cnn3 in timm)
from attnzoo import hub as attnzoo_hub
from attnzoo_cli import main
from attnzoo.errors import CheckpointError, HubError, UnknownModelError
from hub_fixtures import closed_port_url, fast_one_line_error, hub, hub_server, one_line, publish_files  # noqa: F401
from hub_server import point_client_at


def exported(tmp_path, model=None) -> dict[str, bytes]:
    """The files a push of ``model`` (default: a cnn3) uploads."""
    folder = attnzoo_hub.save_pretrained(model or timm.create_model("cnn3"), tmp_path / "export", repo_id="lab/x")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_unknown_repo_is_a_one_line_hub_error(hub):
    with pytest.raises(HubError, match="Hub repo 'lab/no-such-repo' not found") as err:
        attnzoo_hub.load_model("hf-hub:lab/no-such-repo")
    assert "HF_TOKEN" in one_line(err)


def test_unknown_revision_names_the_revision(hub, tmp_path):
    publish_files("lab/has-main", exported(tmp_path))
    with pytest.raises(HubError, match="revision 'nope' not found in Hub repo 'lab/has-main'") as err:
        attnzoo_hub.load_model("hf-hub:lab/has-main@nope")
    one_line(err)


def test_offline_with_an_empty_cache_says_how_to_fill_it(hub, monkeypatch):
    point_client_at(monkeypatch, hub.url, hub.token, hub.hf_home, offline=True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE=1 .* not in the cache") as err:
        attnzoo_hub.load_model("hf-hub:lab/anything")
    assert "unset HF_HUB_OFFLINE" in one_line(err)


def test_push_while_offline(hub, monkeypatch):
    point_client_at(monkeypatch, hub.url, hub.token, hub.hf_home, offline=True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE=1 blocks Hub access for lab/offline-push; unset") as err:
        attnzoo_hub.push_to_hub(timm.create_model("cnn3"), "lab/offline-push")
    one_line(err)


def test_private_repo_is_invisible_without_a_token(hub, monkeypatch):
    model = timm.create_model("cnn3")
    attnzoo_hub.push_to_hub(model, "lab/private-model", private=True)
    assert attnzoo_hub.load_model("hf-hub:lab/private-model").num_classes == model.num_classes
    point_client_at(monkeypatch, hub.url, None, hub.hf_home / "anonymous")
    with pytest.raises(HubError, match="Hub repo 'lab/private-model' not found .*or it is private"):
        attnzoo_hub.load_model("hf-hub:lab/private-model")


def test_unreachable_endpoint_on_load_and_on_push(hub, monkeypatch):
    point_client_at(monkeypatch, closed_port_url(), hub.token, hub.hf_home)
    message = fast_one_line_error(lambda: attnzoo_hub.load_model("hf-hub:lab/anything"), HubError,
                                  "cannot reach the Hub at http://127.0.0.1")
    assert "HF_ENDPOINT" in message
    with pytest.raises(HubError, match="cannot reach the Hub"):
        attnzoo_hub.push_to_hub(timm.create_model("cnn3"), "lab/anything")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_or_truncated_safetensors_is_a_checkpoint_error(hub, tmp_path, damage):
    files = exported(tmp_path)
    weights = files["model.safetensors"]
    files["model.safetensors"] = b"not safetensors at all" if damage == "garbage" else weights[: len(weights) // 2]
    publish_files(f"lab/{damage}", files)
    with pytest.raises(CheckpointError, match=f"model.safetensors of hf-hub:lab/{damage} is not a valid") as err:
        attnzoo_hub.load_model(f"hf-hub:lab/{damage}")
    one_line(err)


def test_config_naming_an_unknown_architecture(hub, tmp_path):
    files = exported(tmp_path)
    config = json.loads(files["config.json"])
    del config["attnzoo"]
    config["architecture"] = "no_such_net"
    publish_files("lab/unknown-arch", {**files, "config.json": json.dumps(config).encode()})
    with pytest.raises(UnknownModelError, match="names architecture 'no_such_net'") as err:
        attnzoo_hub.load_model("hf-hub:lab/unknown-arch")
    one_line(err)


def test_attnzoo_record_naming_an_unknown_base(hub, tmp_path):
    files = exported(tmp_path)
    config = json.loads(files["config.json"])
    config["attnzoo"]["base"] = "no_such_net"
    publish_files("lab/unknown-base", {**files, "config.json": json.dumps(config).encode()})
    with pytest.raises(UnknownModelError, match="config.json of hf-hub:lab/unknown-base: unknown model 'no_such_net'"):
        attnzoo_hub.load_model("hf-hub:lab/unknown-base")


def test_weights_whose_shapes_do_not_match_the_config(hub, tmp_path):
    files = exported(tmp_path)
    files["model.safetensors"] = exported(tmp_path / "other", timm.create_model("cnn3", num_classes=7))[
        "model.safetensors"]
    publish_files("lab/mismatch", files)
    expected = r"do not fit the model: 2 shape mismatches \(e.g. fc.weight: file \(7, 512\)"
    with pytest.raises(CheckpointError, match=expected) as err:
        attnzoo_hub.load_model("hf-hub:lab/mismatch")
    one_line(err)


def test_pickle_only_repo_is_refused_unless_opted_in(hub, tmp_path):
    model = timm.create_model("cnn3")
    files = exported(tmp_path, model)
    del files["model.safetensors"]
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    publish_files("lab/pickled", {**files, "pytorch_model.bin": buffer.getvalue()})
    with pytest.raises(HubError, match="only pickled weights \\(pytorch_model.bin\\).*allow_pickle=True") as err:
        attnzoo_hub.load_model("hf-hub:lab/pickled")
    one_line(err)
    loaded = attnzoo_hub.load_model("hf-hub:lab/pickled", allow_pickle=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_repo_without_weights(hub, tmp_path):
    files = exported(tmp_path)
    del files["model.safetensors"]
    publish_files("lab/no-weights", files)
    with pytest.raises(HubError, match="has no model.safetensors; publish the model with attnzoo push"):
        attnzoo_hub.load_model("hf-hub:lab/no-weights")


@pytest.mark.parametrize("name", ["hf-hub:no-namespace", "hf-hub:a/b/c", "hf-hub:org/name@rev@again"])
def test_malformed_hub_names(name):
    with pytest.raises(HubError, match="is not a Hub model id; write it as hf-hub:org/name"):
        attnzoo_hub.load_model(name)


def test_push_without_a_valid_token_is_refused_without_echoing_it(hub, monkeypatch):
    point_client_at(monkeypatch, hub.url, "hf_wrong_secret_value", hub.hf_home)
    with pytest.raises(HubError, match="refused access to lab/x \\(HTTP 401\\); set HF_TOKEN") as err:
        attnzoo_hub.push_to_hub(timm.create_model("cnn3"), "lab/x")
    assert "hf_wrong_secret_value" not in one_line(err)


def test_cli_push_error_is_one_line_and_exit_status_2(hub, tmp_path, capsys):
    assert main(["push", str(tmp_path / "runs" / "missing"), "--repo", "lab/x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no summary.json" in err
