"""Third-party checkpoints -> attnzoo weights (``attnzoo convert``).

Each source (a code base whose checkpoints map exactly onto an attnzoo architecture) lives in its own
module and registers itself; :func:`register_source` adds more. See docs/convert.md.
"""

from attnzoo.convert import coord_attention, official_cbam, senet_pytorch  # noqa: F401  (register the built-in sources)
from attnzoo.convert.convert import OUTPUT_FILES, convert_checkpoint
from attnzoo.convert.reading import read_checkpoint
from attnzoo.convert.registry import PublishedResult, Source, get_source, list_sources, register_source
from attnzoo.convert.resnet import ResNetSource

__all__ = [
    "OUTPUT_FILES",
    "PublishedResult",
    "ResNetSource",
    "Source",
    "convert_checkpoint",
    "get_source",
    "list_sources",
    "read_checkpoint",
    "register_source",
]
