"""Export and push: a model (or a training run) -> model.safetensors + config.json + README.md on the Hub.

The folder is timm's Hub format, written by timm's own ``save_for_hf(safe_serialization=True)``, then
``config.json`` is completed with what timm cannot know: the attnzoo surgery record, a clean pretrained cfg
for the new weights, and ``model_args`` for stock timm when it has an exact equivalent of the model.
Uploads go through huggingface_hub's ``create_repo`` / ``create_branch`` / ``upload_folder`` (one commit
per push). timm's ``push_to_hf_hub`` is not used: it keeps an existing README (stale evidence), cannot
create branches and writes pickled weights by default.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
from huggingface_hub import ModelCard
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import save_for_hf
from torch import nn

from attnzoo.data import fashion_mnist
from attnzoo.errors import CheckpointError
from attnzoo.flops import count_macs
from attnzoo.hub.card import RunEvidence, render_card
from attnzoo.hub_client import WEIGHTS_NAME, api, check_revision, hub_errors, split_hub_name
from attnzoo.models import load_model, model_config
from attnzoo.outputs import check_output_folder, prepare_output_folder
from attnzoo.surgery.inject import model_stages

CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
# pretrained_cfg fields that describe how to feed and load the weights; the rest (tag, url, paper ids,
# origin) describes the weights the model was built from, not the ones being published.
_PRETRAINED_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std", "num_classes",
                    "pool_size", "first_conv", "classifier", "fixed_input_size", "min_input_size",
                    "test_input_size", "test_crop_pct", "label_names", "label_descriptions")


def stock_timm_args(model: nn.Module, record: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(architecture, model_args)`` with which stock timm rebuilds ``model`` exactly, else ``None``.

    Only a ResNet-family model with one attention type in every stage, default arguments and no other
    surgery can match timm's ``block_args=dict(attn_layer=...)``; equivalence is then checked, not
    assumed: the timm twin must take the state dict strictly and compute the same logits.
    """
    ops = record["surgery"]
    if not isinstance(model, timm.models.ResNet) or len(ops) != 1 or ops[0]["op"] != "attention":
        return None
    op = ops[0]
    if op["kwargs"] or op["stages"] != list(range(1, len(model_stages(model)) + 1)):
        return None
    model_args = {"block_args": {"attn_layer": op["attn"]}, "num_classes": record["num_classes"],
                  "in_chans": record["in_chans"]}
    try:
        twin = timm.create_model(record["base"], pretrained=False, **model_args)
        twin.load_state_dict(model.state_dict(), strict=True)
    except (RuntimeError, TypeError, ValueError, KeyError):
        return None
    x = torch.randn(2, record["in_chans"], 64, 64, generator=torch.Generator().manual_seed(0))
    was_training = model.training
    with torch.no_grad():
        same = torch.allclose(model.eval()(x), twin.eval()(x), rtol=1e-5, atol=1e-6)
    model.train(was_training)
    return (record["base"], model_args) if same else None


def timm_args(model: nn.Module, record: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
    """``(architecture, model_args, stock)`` for config.json, so ``timm.create_model("hf-hub:...")`` rebuilds it.

    ``stock`` says timm alone suffices. Otherwise the architecture is the registered attnzoo name whose
    arguments (``small_input``, ``stages``, ``attn_kwargs``) replay the recorded surgery; a record that no
    registered name expresses (e.g. an unregistered base) keeps its own architecture and loads through
    :func:`attnzoo.hub.load_model` / ``attnzoo.build_model("hf-hub:...")``, which read the record.
    """
    args: dict[str, Any] = {"num_classes": record["num_classes"], "in_chans": record["in_chans"]}
    ops = record["surgery"]
    if not ops:
        stock_name = timm.models.model_entrypoint(record["architecture"]).__module__.startswith("timm.")
        return record["architecture"], args, stock_name
    stock = stock_timm_args(model, record)
    if stock is not None:
        return (*stock, True)
    small_input = bool(ops) and ops[0]["op"] == "small_input"
    rest = ops[1:] if small_input else ops
    if len(rest) == 1 and rest[0]["op"] == "attention" and timm.is_model(f"{record['base']}_{rest[0]['attn']}"):
        attention = rest[0]
        args.update(small_input=small_input, stages=attention["stages"], attn_kwargs=attention["kwargs"])
        if small_input:
            args["stem_stride"] = ops[0].get("stride", 1)
        return f"{record['base']}_{attention['attn']}", args, False
    return record["architecture"], args, False


def _data_config(model: nn.Module, record: dict[str, Any], evidence: RunEvidence | None) -> dict[str, Any]:
    """Preprocessing of the published weights: the run's image size and the normalisation it trained with.

    A run's ``summary.json`` ``mean``/``std`` win; Fashion-MNIST runs use the dataset's own statistics (as
    training does); otherwise the model's cfg, cut to its input channels (as training's timm datasets do).
    """
    in_chans, cfg = record["in_chans"], model.pretrained_cfg
    size = tuple(cfg.get("input_size", (in_chans, 224, 224)))[1:]
    mean = tuple(cfg.get("mean", IMAGENET_DEFAULT_MEAN))[:in_chans]
    std = tuple(cfg.get("std", IMAGENET_DEFAULT_STD))[:in_chans]
    if evidence is not None:
        img_size = evidence.summary.get("img_size")
        size = (img_size, img_size) if isinstance(img_size, int) else size
        if evidence.dataset == "fashion-mnist":
            mean, std = fashion_mnist.MEAN, fashion_mnist.STD
        mean, std = evidence.summary.get("mean", mean), evidence.summary.get("std", std)
    return {"input_size": (in_chans, *size), "mean": tuple(mean), "std": tuple(std)}


def _adaptation_layers(model: nn.Module, pretrained_cfg: dict[str, Any]) -> dict[str, str]:
    """``first_conv`` / ``classifier`` module names, which timm needs to adapt in_chans / num_classes.

    Taken from the model when its pretrained cfg leaves them empty (cnn3 and the fmnist cfgs do).
    """
    names = {module: name for name, module in model.named_modules()}
    first_conv = pretrained_cfg.get("first_conv") or next(
        (name for module, name in names.items() if isinstance(module, nn.Conv2d)), None)
    classifier = pretrained_cfg.get("classifier") or names.get(model.get_classifier())
    return {k: v for k, v in (("first_conv", first_conv), ("classifier", classifier)) if v}


def save_pretrained(
    model: nn.Module,
    folder: str | Path,
    *,
    repo_id: str,
    evidence: RunEvidence | None = None,
    license: str = "apache-2.0",
    card: Callable[[dict[str, Any]], ModelCard] | None = None,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` for ``repo_id`` into ``folder``.

    The folder is exactly what a push uploads; inspect it before publishing. ``card`` builds the model
    card from the written config.json instead of the run card, for weights that come from elsewhere
    (``attnzoo convert`` records their provenance).
    """
    folder = Path(folder)
    record = model_config(model)
    data_config = _data_config(model, record, evidence)
    save_for_hf(model, folder, safe_serialization=True, data_config=data_config)

    config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    architecture, model_args, stock = timm_args(model, record)
    pretrained_cfg = {k: v for k, v in config["pretrained_cfg"].items() if k in _PRETRAINED_KEYS}
    pretrained_cfg.update(hf_hub_filename=WEIGHTS_NAME, license=license, **_adaptation_layers(model, pretrained_cfg))
    tag = repo_id.split("/")[-1].partition(".")[2]
    if tag:
        pretrained_cfg["tag"] = tag
    config.update(architecture=architecture, num_classes=record["num_classes"], model_args=model_args,
                  pretrained_cfg=pretrained_cfg, attnzoo=record)
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if card is not None:
        card(config).save(folder / CARD_NAME)
        return folder

    input_size = tuple(pretrained_cfg["input_size"])
    macs = count_macs(model, input_size)
    card = render_card(repo_id, record, input_size=input_size, evidence=evidence, stock_timm=stock,
                       cost=(macs.gmacs, macs.attention(model) / 1e9), license=license)
    card.save(folder / CARD_NAME)
    return folder


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    evidence: RunEvidence | None = None,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    license: str = "apache-2.0",
) -> str:
    """Publish ``model`` (with its run's evidence) to ``repo_id``, on branch ``revision``; returns the commit url.

    Creates the repo, and the branch from ``main``, when missing. The token comes from ``token``, else
    ``HF_TOKEN`` or the saved login; it is sent only in request headers, never written anywhere.
    """
    split_hub_name(repo_id)
    check_revision(revision)
    client = api(token)
    with tempfile.TemporaryDirectory(prefix="attnzoo-push-") as folder:
        save_pretrained(model, folder, repo_id=repo_id, evidence=evidence, license=license)
        with hub_errors(repo_id, revision):
            client.create_repo(repo_id, private=private, exist_ok=True)
            if revision not in (None, "main"):
                client.create_branch(repo_id, branch=revision, exist_ok=True)
            message = commit_message or f"Add {evidence.name if evidence else model_config(model)['architecture']}"
            commit = client.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                          commit_message=message)
    return commit.commit_url


def run_weights(run_dir: str | Path, which: str = "best") -> Path:
    """The run's ``best`` or ``last`` safetensors checkpoint."""
    if which not in ("best", "last"):
        raise CheckpointError(f"weights {which!r} is not a run checkpoint; use 'best' or 'last'")
    path = Path(run_dir) / f"{which}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; train the run first, or choose --weights best/last")
    return path


def _run_model(run_dir: str | Path, weights: str) -> tuple[nn.Module, RunEvidence]:
    evidence = RunEvidence.read(run_dir, weights)
    return load_model(run_weights(run_dir, weights)), evidence


def export_run(
    run_dir: str | Path, folder: str | Path, *, repo_id: str, weights: str = "best", license: str = "apache-2.0"
) -> Path:
    """Write the folder :func:`push_run` would upload, without uploading (to inspect it first)."""
    split_hub_name(repo_id)
    owns = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)
    check_output_folder(folder, "the Hub files", owns)
    model, evidence = _run_model(run_dir, weights)
    folder = prepare_output_folder(folder, "the Hub files", owns)
    return save_pretrained(model, folder, repo_id=repo_id, evidence=evidence, license=license)


def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    weights: str = "best",
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    license: str = "apache-2.0",
) -> str:
    """Publish a training run folder: its ``best`` (or ``last``) weights with a card built from its evidence."""
    split_hub_name(repo_id)
    check_revision(revision)
    model, evidence = _run_model(run_dir, weights)
    return push_to_hub(model, repo_id, evidence=evidence, revision=revision, private=private, token=token,
                       license=license)
