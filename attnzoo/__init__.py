"""attnzoo: channel and spatial attention for timm CNN backbones, by model surgery.

Importing attnzoo registers its models in timm's registry, so ``timm.create_model("resnet50_cbam")``
works afterwards.
"""

from attnzoo.attention import create_attention, list_attentions, register_attention
from attnzoo.loading import build_model
from attnzoo.models import load_model, model_config, save_weights
from attnzoo.surgery import SurgeryHook, inject, register_surgery
from attnzoo.version import __version__

__all__ = [
    "SurgeryHook",
    "build_model",
    "create_attention",
    "inject",
    "list_attentions",
    "load_model",
    "model_config",
    "register_attention",
    "register_surgery",
    "save_weights",
]
