"""What a push publishes: timm's Hub format, stock-timm rebuild args only where exact, a model card with
the run's evidence, and nothing private."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from timm.layers import SEModule

import attnzoo
from attnzoo import hub as attnzoo_hub
from attnzoo.attention.se import SqueezeExcite
from attnzoo.flops import count_macs
from attnzoo.models import build_model
from hub_fixtures import assert_same_weights, hub, hub_server, make_run, train_steps, trained_run  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_resnet_run(tmp_path_factory):
    """A Fashion-MNIST-style run: resnet18_cbam, 1 channel, small-input stem, a few SGD steps."""
    model = train_steps(timm.create_model("resnet18_cbam", in_chans=1, num_classes=10, small_input=True), steps=1)
    return make_run(tmp_path_factory.mktemp("work"), "fmnist-resnet18_cbam", model), model


@pytest.fixture(scope="module")
def exported_run(small_resnet_run, tmp_path_factory):
    run, _ = small_resnet_run
    return attnzoo_hub.export_run(run, tmp_path_factory.mktemp("export"), repo_id="lab/resnet18_cbam.fmnist")


def test_export_writes_safetensors_config_and_card_only(exported_run, small_resnet_run):
    assert sorted(p.name for p in exported_run.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    _, model = small_resnet_run
    tensors = load_file(exported_run / "model.safetensors")
    assert all(torch.equal(tensors[k], v) for k, v in model.state_dict().items())


def test_config_is_timm_hub_format_with_the_surgery_record(exported_run, small_resnet_run):
    _, model = small_resnet_run
    config = json.loads((exported_run / "config.json").read_text())
    assert config["architecture"] == "resnet18_cbam"
    assert (config["num_classes"], config["num_features"]) == (10, 512)
    assert config["model_args"] == {"num_classes": 10, "in_chans": 1, "small_input": True, "stem_stride": 1,
                                    "stages": [1, 2, 3, 4], "attn_kwargs": {}}
    cfg = config["pretrained_cfg"]
    assert (cfg["input_size"], cfg["mean"], cfg["std"]) == ([1, 28, 28], [0.286], [0.353])
    assert (cfg["first_conv"], cfg["classifier"], cfg["hf_hub_filename"]) == ("conv1", "fc", "model.safetensors")
    assert cfg["tag"] == "fmnist" and cfg["license"] == "apache-2.0"
    assert not {"url", "hf_hub_id", "paper_ids", "origin_url"} & set(cfg)  # the base weights' provenance
    assert config["attnzoo"] == attnzoo.model_config(model)


def test_card_metadata_and_evidence(exported_run, small_resnet_run):
    _, model = small_resnet_run
    card = ModelCard.load(exported_run / "README.md")
    assert card.data.library_name == "timm" and card.data.license == "apache-2.0"
    assert {"timm", "attnzoo", "attention-cbam", "image-classification"} <= set(card.data.tags)
    assert card.data.datasets == ["zalando-datasets/fashion_mnist"]
    # the published best-on-val weights (epoch 1 of 2) scored 91.5 on test; top-5 is only known for the last
    assert [(r.metric_name, r.metric_value, r.dataset_split) for r in card.data.eval_results] == [
        ("top-1", 91.5, "test")]
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, (1, 28, 28))
    for evidence in ("| Selection | best epoch (epoch 1) chosen on the val split (5000 images held out of "
                     "training); test never used |", "| Test top-1 (the best epoch's weights) | 91.50 % |",
                     "| Test top-1 (last epoch) | 91.23 % |", "| Test top-5 (last epoch) | 99.87 % |",
                     "| Val top-1 (last epoch) | 91.80 % |", "| Val top-1 (best epoch) | 92.00 % |", f"| Params | {params / 1e6:.2f} M |",
                     f"| GMACs per image | {macs.gmacs:.4f} (attention: {macs.attention(model) / 1e9:.4f}) |",
                     "| Input size | 1x28x28 |", "| Training time | 12.6 min |",
                     "| Hardware | 2-core CPU, torch 2.14.1 |", "recipe `recipes/fmnist-resnet18_cbam.yaml`",
                     'timm.create_model("hf-hub:lab/resnet18_cbam.fmnist", pretrained=True)',
                     "Loading needs attnzoo installed", "root: <local path>"):
        assert evidence in card.text


def test_se_resnet_rebuilds_in_stock_timm_without_attnzoo_modules(tmp_path):
    model = train_steps(timm.create_model("resnet18_se", num_classes=3), steps=1, img_size=64)
    folder = attnzoo_hub.save_pretrained(model, tmp_path, repo_id="lab/resnet18_se")
    config = json.loads((folder / "config.json").read_text())
    assert (config["architecture"], config["model_args"]["block_args"]) == ("resnet18", {"attn_layer": "se"})
    stock = timm.create_model(config["architecture"], **config["model_args"])
    assert isinstance(stock.layer1[0].se, SEModule) and isinstance(model.layer1[0].se, SqueezeExcite)
    stock.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(stock.eval()(x), model(x))
    assert "stock timm rebuilds this exact model" in (folder / "README.md").read_text()


def test_surgery_no_registered_name_expresses_loads_through_attnzoo(hub):
    model = train_steps(build_model("resnet10t", attention="se", stages=[3, 4], num_classes=3), img_size=32)
    attnzoo_hub.push_to_hub(model, "lab/resnet10t-se34")
    loaded = attnzoo_hub.load_model("hf-hub:lab/resnet10t-se34")
    assert_same_weights(model, loaded)
    assert attnzoo.model_config(loaded) == attnzoo.model_config(model)


def readable_part(path: str, data: bytes) -> bytes:
    """All of a text file; of a safetensors file its JSON header (names, shapes, metadata), not tensor bytes."""
    if path.endswith(".safetensors"):
        return data[8: 8 + int.from_bytes(data[:8], "little")]
    return data


def test_cli_push_uploads_nothing_private(hub, tmp_path):
    """``attnzoo push`` of a real run, in a fresh process configured only by environment variables; then
    every uploaded file is scanned for the token, local paths, host and user details."""
    run = trained_run(tmp_path)  # its recipe, data and output live under tmp_path: absolute local paths
    env = {**os.environ, **hub.client_env(hub.hf_home), "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-m", "attnzoo", "push", str(run), "--repo", "lab/leak-check",
                             "--revision", "exp"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "pushed" in result.stdout and "lab/leak-check@exp" in result.stdout
    assert hub.token not in result.stdout + result.stderr

    uploaded = {path: data for repo, _, path, data in hub.uploaded_files() if repo == "lab/leak-check"}
    assert {"model.safetensors", "config.json", "README.md"} <= set(uploaded)
    assert "from the local recipe file `tiny-cnn3_cbam.yaml`" in uploaded["README.md"].decode()
    environment = json.loads((run / "environment.json").read_text())
    private = {hub.token, str(tmp_path), str(Path.home()), str(hub.hf_home), str(REPO_ROOT),
               environment["platform"], os.environ.get("PATH", "/nonexistent-path")}
    if len(socket.gethostname()) >= 4:  # a 2-letter host name matches ordinary text
        private.add(socket.gethostname())
    for path, data in uploaded.items():
        leaks = [secret for secret in private if secret.encode() in readable_part(path, data)]
        assert not leaks, f"{path} leaks {leaks}"


def test_card_of_an_old_protocol_run_says_its_best_was_chosen_on_test():
    from attnzoo.hub.card import RunEvidence, render_card

    summary = {"dataset": "fashion-mnist", "top1": 91.0, "top5": 99.0, "best_top1": 91.4, "epochs": 2}
    record = {"architecture": "resnet18", "num_classes": 10, "in_chans": 1, "surgery": []}
    card = render_card("lab/r18", record, input_size=(1, 32, 32), evidence=RunEvidence("r18", summary, None))
    assert "| Selection | old protocol: the best epoch was chosen on the test split" in card.text
    assert "| Test top-1 (best epoch, chosen on test) | 91.40 % |" in card.text
    # the published best weights: their test top-1, and no top-5 (only measured for the last epoch)
    assert [(r.metric_name, r.metric_value) for r in card.data.eval_results] == [("top-1", 91.4)]
