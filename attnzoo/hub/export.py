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
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import save_for_hf
from torch import nn

from attnzoo.errors import CheckpointError
from attnzoo.hub.card import RunEvidence, render_card
from attnzoo.hub.client import api, hub_errors, split_hub_name
from attnzoo.models import load_model, model_config
from attnzoo.surgery.inject import model_stages

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
# pretrained_cfg fields that describe how to feed and load the weights; the rest (tag, url, paper ids,
# origin) describes the weights the model was built from, not the ones being published.
_PRETRAINED_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std", "num_classes",
                    "pool_size", "first_conv", "classifier", "fixed_input_size", "min_input_size",
                    "test_input_size", "test_crop_pct", "label_names", "label_descriptions")
_DATA_KEYS = ("mean", "std", "interpolation", "crop_pct", "crop_mode")


def stock_timm_args(model: nn.Module, record: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(architecture, model_args)`` with which stock timm rebuilds ``model`` exactly, else ``None``.

    Only a ResNet-family model with one attention type in every stage, default arguments and no other
    surgery can match timm's ``block_args=dict(attn_layer=...)``; equivalence is then checked, not
    assumed: the timm twin must take the state dict strictly and compute the same logits.
    """
    ops = record.get("surgery", [])
    if not isinstance(model, timm.models.ResNet) or len(ops) != 1 or ops[0].get("op") != "attention":
        return None
    op = ops[0]
    if op.get("kwargs") or op.get("stages") != list(range(1, len(model_stages(model)) + 1)):
        return None
    base = record["architecture"].removesuffix(f"_{op['attn']}")
    model_args = {"block_args": {"attn_layer": op["attn"]}, "num_classes": record["num_classes"],
                  "in_chans": record["in_chans"]}
    try:
        twin = timm.create_model(base, pretrained=False, **model_args)
        twin.load_state_dict(model.state_dict(), strict=True)
    except (RuntimeError, TypeError, ValueError, KeyError):
        return None
    size = model.pretrained_cfg.get("input_size", (record["in_chans"], 224, 224))
    x = torch.randn(2, *size, generator=torch.Generator().manual_seed(0))
    was_training = model.training
    with torch.no_grad():
        same = torch.allclose(model.eval()(x), twin.eval()(x), rtol=1e-5, atol=1e-6)
    model.train(was_training)
    return (base, model_args) if same else None


def _data_config(model: nn.Module, record: dict[str, Any], evidence: RunEvidence | None) -> dict[str, Any]:
    """Preprocessing of the published weights: the run's image size and normalisation when known."""
    size = tuple(model.pretrained_cfg.get("input_size", (record["in_chans"], 224, 224)))
    data: dict[str, Any] = {"input_size": (record["in_chans"], *size[1:])}
    if evidence is not None:
        img_size = evidence.summary.get("img_size")
        if isinstance(img_size, int):
            data["input_size"] = (record["in_chans"], img_size, img_size)
        recipe_data = (evidence.recipe or {}).get("data") or {}
        data.update({k: recipe_data[k] for k in _DATA_KEYS if recipe_data.get(k) is not None})
    return data


def save_pretrained(
    model: nn.Module,
    folder: str | Path,
    *,
    repo_id: str,
    evidence: RunEvidence | None = None,
    license: str = "apache-2.0",
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` for ``repo_id`` into ``folder``.

    The folder is exactly what a push uploads; inspect it before publishing.
    """
    folder = Path(folder)
    record = model_config(model)
    data_config = _data_config(model, record, evidence)
    save_for_hf(model, folder, safe_serialization=True, data_config=data_config)

    config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    stock = stock_timm_args(model, record)
    pretrained_cfg = {k: v for k, v in config["pretrained_cfg"].items() if k in _PRETRAINED_KEYS}
    pretrained_cfg.update(hf_hub_filename=WEIGHTS_NAME, license=license)
    tag = repo_id.split("/")[-1].partition(".")[2]
    if tag:
        pretrained_cfg["tag"] = tag
    config.update(
        architecture=stock[0] if stock else record["architecture"],
        num_classes=record["num_classes"],
        model_args=stock[1] if stock else {"num_classes": record["num_classes"], "in_chans": record["in_chans"]},
        pretrained_cfg=pretrained_cfg,
        attnzoo=record,
    )
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    card = render_card(repo_id, record, input_size=tuple(pretrained_cfg["input_size"]), evidence=evidence,
                       stock_timm=stock is not None, license=license)
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
    evidence = RunEvidence.read(run_dir)
    model = load_model(run_weights(run_dir, weights))
    return push_to_hub(model, repo_id, evidence=evidence, revision=revision, private=private, token=token,
                       license=license)
