"""Models: attnzoo's names in timm's registry, building by name, and weights I/O."""

from attnzoo.models import registry  # noqa: F401  (registers the models in timm)
from attnzoo.models.build import apply_build_surgery, build_model, check_model_name, model_config, model_from_config
from attnzoo.models.io import load_model, load_state_dict_strict, load_weights, read_weights, save_weights

__all__ = [
    "apply_build_surgery",
    "build_model",
    "check_model_name",
    "load_model",
    "load_state_dict_strict",
    "load_weights",
    "model_config",
    "model_from_config",
    "read_weights",
    "save_weights",
]
