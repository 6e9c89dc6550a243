"""ONNX export of attnzoo (and any timm) models, checked against PyTorch with onnxruntime.

The TorchScript-based exporter is the default: it exports a ResNet-18 in about 2 s where the
``torch.export``-based one takes about 30 s on a 2-core CPU, and both give the same graph for these
convolutional models; ``dynamo=True`` selects the newer exporter. Attention modules take their inference
route while exporting (no autograd Functions), so every registered attention exports as plain ONNX ops.
The batch dimension is dynamic.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attnzoo.errors import AttnzooError, NonFiniteOutputError
from attnzoo.outputs import prepare_output_file

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "images", "logits"


class ExportError(AttnzooError):
    """The model could not be exported, or the exported graph disagrees with PyTorch."""


@dataclass(frozen=True)
class ExportCheck:
    """How far onnxruntime's logits are from PyTorch's on a random batch, and how large PyTorch's logits are.

    ``max_abs_logit`` lets a caller judge the difference relative to the logits' scale (float32 kernels
    that differ in summation order disagree in proportion to the values they produce).
    """

    max_abs_diff: float
    batch_size: int
    input_size: tuple[int, int, int]
    max_abs_logit: float


def model_input_size(model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) the model expects, from its timm pretrained config (3x224x224 if it has none)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    channels = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    _, h, w = cfg.get("input_size", (3, 224, 224))
    return channels, h, w


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    input_size: tuple[int, int, int] | None = None,
    opset: int = OPSET,
    dynamo: bool = False,
) -> Path:
    """Write ``model`` (in eval mode, on CPU) to ``path`` as ONNX with a dynamic batch dimension."""
    path = prepare_output_file(path, "--onnx", ".onnx")
    input_size = input_size or model_input_size(model)
    was_training = model.training
    model.eval()
    example = torch.randn(2, *input_size)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            if dynamo:
                batch = torch.export.Dim("batch")
                program = torch.onnx.export(
                    model, (example,), dynamo=True, opset_version=max(opset, 18),
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},),
                )
                program.save(str(tmp))
            else:
                torch.onnx.export(
                    model, (example,), str(tmp), dynamo=False, opset_version=opset,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                )
    except Exception as err:  # the exporters raise many unrelated types
        tmp.unlink(missing_ok=True)
        raise ExportError(f"ONNX export of {type(model).__name__} failed: {err}".splitlines()[0]) from err
    finally:
        model.train(was_training)
    try:
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {err.strerror}; choose another --onnx path") from None
    return path


def ort_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session for ``path`` (``threads`` intra-op threads; None: onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_onnx(
    model: nn.Module, path: str | os.PathLike, *, batch_size: int = 3, input_size: tuple[int, int, int] | None = None
) -> ExportCheck:
    """Run ``path`` in onnxruntime and ``model`` in PyTorch on the same random batch; compare logits.

    The batch size differs from the export's example batch on purpose, to exercise the dynamic axis.
    Non-finite logits on either side raise (:class:`NonFiniteOutputError`, :class:`ExportError`): a NaN
    difference would otherwise compare as within any tolerance.
    """
    input_size = input_size or model_input_size(model)
    x = torch.randn(batch_size, *input_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(x).numpy()
    finally:
        model.train(was_training)
    size = "x".join(map(str, input_size))
    if not np.isfinite(expected).all():
        raise NonFiniteOutputError(f"PyTorch's logits at input {size} are NaN or infinite, so the export cannot be "
                                   "checked; check the weights, or export at the input size the model was trained at")
    (got,) = ort_session(path).run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    if not np.isfinite(got).all():
        raise ExportError(f"onnxruntime's logits at input {size} are NaN or infinite where PyTorch's are finite; "
                          "report the model name, or retry with --dynamo")
    return ExportCheck(float(np.abs(got - expected).max()), batch_size, input_size, float(np.abs(expected).max()))
