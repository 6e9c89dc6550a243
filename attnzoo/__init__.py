"""attnzoo: channel and spatial attention for timm CNN backbones, by model surgery.

Importing attnzoo registers its models in timm's registry, so ``timm.create_model("resnet50_cbam")``
works afterwards.
"""

from attnzoo.attention import create_attention, list_attentions, register_attention
from attnzoo.models import build_model, load_model, model_config, save_weights
from attnzoo.surgery import SurgeryHook, inject, register_surgery

__version__ = "0.1.0"

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
