"""The Hub round trip against a local Hub server, driven by the stock huggingface_hub client and timm:
train (attnzoo.train) -> push -> load (bit-identical) -> fine-tune with a new head -> push to a branch ->
load that revision -> load offline from the cache."""

import pytest
import timm
import torch
from huggingface_hub import HfApi

import attnzoo
from attnzoo import hub as attnzoo_hub
from attnzoo.errors import HubError
from attnzoo.models import build_model
from attnzoo.models.registry import FMNIST_MODEL_ARGS, hub_org
from attnzoo.train import load_recipe, train
from hub_fixtures import assert_same_weights, hub, hub_server, train_steps, trained_run  # noqa: F401
from hub_server import point_client_at
from train_helpers import make_tiny_fashion_mnist, write_recipe


def test_push_then_load_finetune_branch_and_offline(hub, tmp_path, monkeypatch):
    repo = "lab/cnn3_cbam.fmnist"
    run = trained_run(tmp_path)
    trained = attnzoo.load_model(run / "best.safetensors").eval()
    attnzoo_hub.push_run(run, repo)

    # timm alone (after import attnzoo) rebuilds the surgery and loads bit-identical weights
    loaded = timm.create_model(f"hf-hub:{repo}", pretrained=True)
    assert_same_weights(trained, loaded)
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(loaded.eval()(x), trained(x), rtol=0, atol=0)

    # fine-tune with a new 5-class head: everything but the classifier comes from the Hub
    tuned = timm.create_model(f"hf-hub:{repo}", pretrained=True, num_classes=5)
    assert tuned.fc.out_features == 5
    assert_same_weights(trained, tuned, skip=("fc.",))
    train_steps(tuned)
    attnzoo_hub.push_to_hub(tuned, repo, revision="five-classes")

    # the branch has the fine-tuned model, main still the original
    branches = {ref.name for ref in HfApi().list_repo_refs(repo).branches}
    assert branches == {"main", "five-classes"}
    from_branch = timm.create_model(f"hf-hub:{repo}@five-classes", pretrained=True)
    assert_same_weights(tuned, from_branch)
    assert attnzoo_hub.load_model(f"hf-hub:{repo}").num_classes == 10
    assert_same_weights(tuned, attnzoo_hub.load_model(f"hf-hub:{repo}", revision="five-classes"))

    # offline: the cache filled above serves both revisions without a single request
    point_client_at(monkeypatch, hub.url, hub.token, hub.hf_home, offline=True)
    requests_before = hub.state.requests
    assert_same_weights(tuned, timm.create_model(f"hf-hub:{repo}@five-classes", pretrained=True))
    assert_same_weights(trained, attnzoo_hub.load_model(f"hf-hub:{repo}"))
    assert hub.state.requests == requests_before


def test_new_input_channels_adapt_the_first_convolution_as_timm_does(hub):
    gray = train_steps(timm.create_model("cnn3_se"))
    attnzoo_hub.push_to_hub(gray, "lab/cnn3_se-gray")
    rgb = attnzoo_hub.load_model("hf-hub:lab/cnn3_se-gray", in_chans=3)
    first = "stages.0.conv.weight"
    torch.testing.assert_close(rgb.state_dict()[first], gray.state_dict()[first].repeat(1, 3, 1, 1) / 3)
    assert_same_weights(gray, rgb, skip=(first,))
    assert rgb(torch.randn(2, 3, 28, 28)).shape == (2, 10)
    assert rgb.pretrained_cfg["input_size"] == (3, 28, 28)


def test_registered_fmnist_tag_resolves_to_pushed_weights(hub):
    """``resnet18_cbam.fmnist``'s default cfg names ``{ATTNZOO_HUB_ORG}/resnet18_cbam.fmnist`` on the Hub."""
    trained = timm.create_model("resnet18_cbam", **FMNIST_MODEL_ARGS["resnet18"])  # the structure the tag builds
    attnzoo_hub.push_to_hub(trained, f"{hub_org()}/resnet18_cbam.fmnist")
    loaded = timm.create_model("resnet18_cbam.fmnist", pretrained=True)
    assert_same_weights(trained, loaded)


def test_backbone_weights_load_under_function_preserving_attention(hub):
    """Hub backbone + attention injected with preserve=True computes exactly the backbone's function."""
    plain = train_steps(timm.create_model("resnet10t", num_classes=4, in_chans=1), img_size=32)
    attnzoo_hub.push_to_hub(plain, "lab/resnet10t-plain")
    injected = attnzoo.build_model("hf-hub:lab/resnet10t-plain", pretrained=True, attention="cbam", preserve=True)
    injected.eval()
    assert attnzoo.model_config(injected)["surgery"][0]["attn"] == "cbam"
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(injected(x), plain(x), rtol=1e-5, atol=1e-5)


def test_a_recipe_fine_tunes_from_a_hub_revision_with_a_new_head(hub, tmp_path):
    source = train_steps(build_model("cnn3_cbam", num_classes=7))
    attnzoo_hub.push_to_hub(source, "lab/cnn3_cbam.seven", revision="v1")
    data = make_tiny_fashion_mnist(tmp_path / "data")
    recipe, path = load_recipe(write_recipe(tmp_path / "tune.yaml", data, tmp_path / "runs", epochs=1),
                               ["model.init=hf-hub:lab/cnn3_cbam.seven@v1", "max_steps=1", "optim.lr=0.0",
                                "optim.weight_decay=0.0", "sched.warmup_epochs=0"])
    train(recipe, path)  # one step at lr 0: only BN statistics move, the parameters are the Hub's
    tuned = attnzoo.load_model(tmp_path / "runs" / "tune" / "last.safetensors")
    assert tuned.fc.out_features == 10
    want = {k: v for k, v in source.named_parameters() if not k.startswith("fc.")}
    got = {k: v for k, v in tuned.named_parameters() if not k.startswith("fc.")}
    assert sorted(want) == sorted(got) and all(torch.equal(want[k], got[k]) for k in want)


def test_a_recipe_starting_from_a_missing_hub_revision_fails_in_one_line(hub, tmp_path):
    attnzoo_hub.push_to_hub(build_model("cnn3_cbam"), "lab/cnn3_cbam.main-only")
    data = make_tiny_fashion_mnist(tmp_path / "data")
    recipe, path = load_recipe(write_recipe(tmp_path / "tune.yaml", data, tmp_path / "runs", epochs=1),
                               ["model.init=hf-hub:lab/cnn3_cbam.main-only@nope"])
    with pytest.raises(HubError, match="nope") as err:
        train(recipe, path)
    assert "\n" not in str(err.value)
