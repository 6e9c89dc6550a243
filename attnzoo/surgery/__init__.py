"""Model surgery: per-block hooks (one file per block family) and :func:`inject`."""

from attnzoo.surgery import efficientnet, resnet  # noqa: F401  (registers the hooks)
from attnzoo.surgery.inject import apply_surgery, inject, model_stages
from attnzoo.surgery.record import record_surgery, surgery_record
from attnzoo.surgery.registry import SurgeryHook, register_surgery, supported_block_types
from attnzoo.surgery.stem import adapt_small_input

__all__ = [
    "SurgeryHook",
    "adapt_small_input",
    "apply_surgery",
    "inject",
    "model_stages",
    "record_surgery",
    "register_surgery",
    "supported_block_types",
    "surgery_record",
]
