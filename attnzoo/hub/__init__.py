"""Hugging Face Hub I/O: publish trained models with their evidence, load them back through timm.

``push_run`` / ``push_to_hub`` write timm's Hub format (``model.safetensors`` + ``config.json`` + a model
card) and upload it; ``load_model`` rebuilds any ``hf-hub:`` model, including attnzoo surgery, from
safetensors only. See docs/hub.md.
"""

from attnzoo.hub.card import RunEvidence, render_card
from attnzoo.hub_client import split_hub_name
from attnzoo.hub.export import export_run, push_run, push_to_hub, save_pretrained
from attnzoo.hub.load import load_config, load_model, load_state_dict

__all__ = [
    "RunEvidence",
    "export_run",
    "load_config",
    "load_model",
    "load_state_dict",
    "push_run",
    "push_to_hub",
    "render_card",
    "save_pretrained",
    "split_hub_name",
]
