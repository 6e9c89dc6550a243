"""Exception types raised by attnzoo.

Every error a user can cause derives from :class:`AttnzooError`, so the command line can print it as one
line and exit, and library callers can catch one type. Messages name the bad value and the fix.
"""


class AttnzooError(Exception):
    """Base class of every user-facing attnzoo error."""


class UnknownAttentionError(AttnzooError, ValueError):
    """An attention name that is not registered."""


class UnknownModelError(AttnzooError, ValueError):
    """A model name that neither attnzoo nor timm knows."""


class UnsupportedArchitectureError(AttnzooError, TypeError):
    """A model with no block type that a surgery hook handles."""


class SurgeryError(AttnzooError, ValueError):
    """Surgery arguments that cannot apply: bad stage, bad kwargs, injecting twice."""


class RecipeError(AttnzooError, ValueError):
    """A training recipe that fails validation."""


class DatasetNotFoundError(AttnzooError, FileNotFoundError):
    """A dataset that is neither installed nor downloadable."""


class CheckpointError(AttnzooError, ValueError):
    """A checkpoint that is missing, corrupt, or does not fit the model."""


class HubError(AttnzooError, RuntimeError):
    """A Hub repository, revision or file that cannot be reached or used."""


class ConvertError(AttnzooError, ValueError):
    """A conversion that cannot apply: unknown source, an architecture the source lacks, an output in the way."""


class RunFolderError(AttnzooError, RuntimeError):
    """A run folder that is in use, belongs to another run, or cannot be written (e.g. the disk is full)."""


class DataFileError(AttnzooError, ValueError):
    """A data file that is corrupt, truncated, or holds values its dataset cannot have."""


class UsageError(AttnzooError, ValueError):
    """A command-line option or function argument outside its allowed range."""


class NonFiniteOutputError(AttnzooError, ArithmeticError):
    """A model output (logits) that is NaN or infinite, where a result or a comparison would be meaningless."""
