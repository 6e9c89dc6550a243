"""Pretrained configs of attnzoo's names: the ``arch.tag`` table that timm's ``generate_default_cfgs`` reads.

Each name's default cfg describes what ``timm.create_model(name)`` builds: 3x224x224 and 1000 classes for
timm backbones. It is the first published tag where there is one, else the untagged, weightless cfg, whose
fields (input size, pooling, crop, interpolation, normalisation, first conv, classifier) are copied from the
base model's own timm default cfg, because attention surgery changes none of them; only the paper and
licence fields are attnzoo's. Tags with weights, each pinning a safetensors file so timm never takes its pickle path:

- published (e.g. ``resnet50_se.ra2_in1k``): a timm checkpoint that loads into the name as it is
  (:mod:`attnzoo.models.published`, found by ``scripts/published_weights.py``); the first is the default;
- function-preserving (``<backbone tag>_untrained_attn``, e.g. ``resnet50_cbam.a1_in1k_untrained_attn``): the
  backbone's timm checkpoint, the attention untrained and initialised so that the network computes exactly
  the backbone's function;
- ``fmnist``: weights of the shipped Fashion-MNIST recipes (1 channel, 10 classes), on the Hub under
  ``$ATTNZOO_HUB_ORG`` (default ``attnzoo``).
"""

from __future__ import annotations

import os
from typing import Any

import timm

from attnzoo.models.published import PRESERVING, PUBLISHED, TIMM_VERSION

WEIGHTS_FILE = "model.safetensors"
LICENSE = "apache-2.0"
# Ends every function-preserving tag: the backbone's weights, the attention untrained.
PRESERVE_SUFFIX = "_untrained_attn"

# The fields of a base model's timm cfg that describe its architecture and input, not its weights.
ARCHITECTURE_FIELDS = (
    "input_size", "pool_size", "crop_pct", "interpolation", "mean", "std", "first_conv", "classifier",
    "num_classes", "min_input_size", "fixed_input_size",
)

FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)
# What create_model("cnn3") builds: the tutorials' Fashion-MNIST shape. The flattened head fixes the input.
CNN3_ARCHITECTURE: dict[str, Any] = dict(
    input_size=(1, 28, 28), pool_size=(3, 3), crop_pct=1.0, interpolation="bilinear", mean=FMNIST_MEAN,
    std=FMNIST_STD, first_conv="stages.0.conv", classifier="fc", num_classes=10, fixed_input_size=True,
)

# (paper name, paper id) of each attention module.
ATTENTION_PAPERS: dict[str, tuple[str, str]] = {
    "se": ("Squeeze-and-Excitation Networks", "arXiv:1709.01507"),
    "cbam": ("CBAM: Convolutional Block Attention Module", "arXiv:1807.06521"),
    "cbam_channel": ("CBAM: Convolutional Block Attention Module (channel gate only)", "arXiv:1807.06521"),
    "cbam_spatial": ("CBAM: Convolutional Block Attention Module (spatial gate only)", "arXiv:1807.06521"),
    "eca": ("ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks", "arXiv:1910.03151"),
    "coord": ("Coordinate Attention for Efficient Mobile Network Design", "arXiv:2103.02907"),
    "simam": (
        "SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks",
        "https://proceedings.mlr.press/v139/yang21o.html",
    ),
    "mhsa": ("Bottleneck Transformers for Visual Recognition", "arXiv:2101.11605"),
}

# Backbones the Fashion-MNIST recipes train: the model arguments those weights were trained with, their
# input size, and the feature map that input gives (pool_size).
FMNIST_MODEL_ARGS: dict[str, dict[str, Any]] = {
    "resnet18": dict(in_chans=1, num_classes=10),  # padded to 32 px, standard stem
    "mobilenetv2_100": dict(in_chans=1, num_classes=10, small_input=True),
    "cnn3": dict(in_chans=1, num_classes=10),
}
FMNIST_INPUT = {"resnet18": ((1, 32, 32), (1, 1)), "mobilenetv2_100": ((1, 28, 28), (2, 2)), "cnn3": ((1, 28, 28), (3, 3))}


def hub_org() -> str:
    """The Hub organisation holding attnzoo's weights (``$ATTNZOO_HUB_ORG``, default ``attnzoo``)."""
    return os.environ.get("ATTNZOO_HUB_ORG", "attnzoo")


def base_architecture(base: str) -> dict[str, Any]:
    """The architecture and input fields of ``base``'s own default cfg (cnn3's is attnzoo's)."""
    cfg = CNN3_ARCHITECTURE if base == "cnn3" else timm.get_pretrained_cfg(base).to_dict()
    return {k: cfg[k] for k in ARCHITECTURE_FIELDS if k in cfg}


def paper_fields(attn: str | None) -> dict[str, str]:
    """The attention paper's name and id (none for a plain model)."""
    if attn is None:
        return {}
    name, paper_id = ATTENTION_PAPERS[attn]
    return dict(paper_name=name, paper_ids=paper_id)


def architecture_cfg(base: str, attn: str | None) -> dict[str, Any]:
    """The untagged cfg: what ``create_model(name)`` builds; no weights."""
    what = f"{base} with {attn} attention" if attn else base
    return dict(
        **base_architecture(base), **paper_fields(attn), license=LICENSE,
        description=f"{what}, as timm.create_model builds it; no weights",
    )


def fmnist_cfg(name: str, base: str, attn: str | None) -> dict[str, Any]:
    """The ``fmnist`` tag: weights of ``recipes/fashion_mnist/<name>.yaml`` on 1-channel 10-class input."""
    input_size, pool_size = FMNIST_INPUT[base]
    return dict(
        base_architecture(base), **paper_fields(attn),
        hf_hub_id=f"{hub_org()}/{name}.fmnist", hf_hub_filename=WEIGHTS_FILE,
        input_size=input_size, pool_size=pool_size, num_classes=10, mean=FMNIST_MEAN, std=FMNIST_STD,
        crop_pct=1.0, interpolation="bilinear", license=LICENSE,
        description=f"{name} trained on Fashion-MNIST by recipes/fashion_mnist/{name}.yaml",
    )


def published_cfg(name: str, attn: str, source: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """A published tag: ``source``'s cfg and Hub file, unchanged (its paper fields, else the attention's)."""
    return dict(
        {**paper_fields(attn), **cfg},
        description=f"timm's {source} weights, unchanged: they load strictly into {name} with equal logits",
        notes=(f"Top-1 of {source}: timm's results/results-imagenet.csv (timm {TIMM_VERSION} does not ship it)",),
    )


def preserving_cfg(name: str, attn: str, source: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """A function-preserving tag: ``source``'s backbone weights, the attention untrained."""
    return dict(
        cfg, **paper_fields(attn),
        description=f"{source} backbone weights with UNTRAINED {attn} attention, initialised so that {name} "
        f"computes exactly {source}'s function; any accuracy quoted is the backbone's, not a trained {attn} "
        "model's: fine-tune before use",
        notes=(f"attention untrained; top-1 is that of {source}",),
    )


def is_preserving(tag: str | None) -> bool:
    """Whether ``tag`` loads a backbone's weights under untrained, function-preserving attention."""
    return bool(tag) and tag.endswith(PRESERVE_SUFFIX)


def _of(table: dict[str, dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in table.items() if k.partition(".")[0] == name}


def name_cfgs(name: str, base: str, attn: str | None) -> dict[str, dict[str, Any]]:
    """Every ``name.tag`` cfg of one name, in the order that makes timm pick the right default.

    The default is the first published tag if there is one, else the untagged cfg (marked ``.*``, last:
    timm makes a tag with weights the default if it comes after the marker).
    """
    cfgs = {k: published_cfg(name, attn, v["source"], v["cfg"]) for k, v in _of(PUBLISHED, name).items()}
    published = bool(cfgs)
    cfgs.update({k: preserving_cfg(name, attn, v["source"], v["cfg"]) for k, v in _of(PRESERVING, name).items()})
    if base in FMNIST_MODEL_ARGS and attn in (None, "se", "cbam"):
        cfgs[f"{name}.fmnist"] = fmnist_cfg(name, base, attn)
    if not published:
        cfgs[f"{name}.*"] = architecture_cfg(base, attn)
    return cfgs
