"""No NaN by construction: every registered model gives finite logits and gradients at the smallest size its
family is used at and at its default size, in train and eval mode; checks refuse non-finite logits.

The default-size pass covers every attention on one ResNet and one MobileNet (the full sweep at 224 px is
too slow for CI on 2 cores): ``ATTNZOO_FULL_SWEEP=1`` runs it for every registered model.
"""

from __future__ import annotations

import os

import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image

import attnzoo
from attention_helpers import wake
from attnzoo.errors import NonFiniteOutputError
from attnzoo.evaluate.evaluate import measure_accuracy
from attnzoo.export import check_onnx, export_onnx
from attnzoo.models import build_model, save_weights
from attnzoo.models.registry import INJECTED
from attnzoo_cli import main

NAMES = sorted({"cnn3", *INJECTED})
FULL = os.environ.get("ATTNZOO_FULL_SWEEP") == "1"
DEFAULT_SAMPLE = [f"{base}_{a}" for base in ("resnet18", "mobilenetv3_small_100") for a in attnzoo.list_attentions()]


def smallest_size(name: str) -> int:
    """The smallest input side the family is used at: 28 px cnn3, 32 px ResNets, 64 px MobileNet/EfficientNet."""
    if name.startswith("cnn3"):
        return 28
    return 32 if name.startswith(("resnet", "resnext", "wide_resnet")) else 64


def assert_finite_in_train_and_eval(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = wake(timm.create_model(name, num_classes=10))
    chans = model.pretrained_cfg["input_size"][0] if name.startswith("cnn3") else 3
    x = torch.randn(2, chans, size, size)
    model.train()
    logits = model(x)
    assert torch.isfinite(logits).all(), f"{name} at {size} px, train mode: non-finite logits"
    F.cross_entropy(logits, torch.tensor([1, 2])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), f"{name}: parameters without gradient"
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"{name} at {size} px: non-finite gradients in {bad[:3]}"
    with torch.no_grad():
        assert torch.isfinite(model.eval()(x)).all(), f"{name} at {size} px, eval mode: non-finite logits"


@pytest.mark.parametrize("name", NAMES)
def test_finite_at_the_smallest_size_of_its_family(name):
    assert_finite_in_train_and_eval(name, smallest_size(name))


@pytest.mark.parametrize("name", NAMES if FULL else DEFAULT_SAMPLE)
def test_finite_at_the_default_size(name):
    assert_finite_in_train_and_eval(name, timm.get_pretrained_cfg(name).input_size[-1])


def test_simam_on_a_1x1_map_scales_by_sigmoid_of_one_half():
    simam = attnzoo.create_attention("simam", 8)
    x = torch.randn(3, 8, 1, 1)
    torch.testing.assert_close(simam(x), x * torch.sigmoid(torch.tensor(0.5)))


def test_simam_keeps_the_papers_formula_on_larger_maps():
    simam = attnzoo.create_attention("simam", 4)
    x = torch.randn(2, 4, 3, 5)
    d = (x - x.mean((2, 3), keepdim=True)).square()
    paper = x * torch.sigmoid(d / (4 * (d.sum((2, 3), keepdim=True) / (3 * 5 - 1) + 1e-4)) + 0.5)
    torch.testing.assert_close(simam(x), paper)


def broken_cnn3() -> torch.nn.Module:
    """A cnn3 whose first BN has a negative running variance: NaN logits in eval mode."""
    model = build_model("cnn3", num_classes=3, in_chans=1).eval()
    with torch.no_grad():
        model.stages[0].bn.running_var.fill_(-1.0)
    return model


def test_accuracy_refuses_nan_logits():
    batches = [(torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 0]))]
    with pytest.raises(NonFiniteOutputError, match="NaN or infinite on 4 of 4 images in batch 1"):
        measure_accuracy(broken_cnn3(), batches)


def test_eval_command_refuses_nan_logits_in_one_line(tmp_path, capsys):
    for c in ("a", "b", "c"):
        (tmp_path / "data" / c).mkdir(parents=True)
        Image.new("L", (28, 28), color=99).save(tmp_path / "data" / c / "0.png")
    save_weights(broken_cnn3(), tmp_path / "w.safetensors")
    code = main(["eval", "cnn3", "--checkpoint", str(tmp_path / "w.safetensors"), "--data", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: " in err and err.count("\n") == 1 and "NaN or infinite" in err


def test_onnx_check_refuses_nan_logits(tmp_path):
    model = broken_cnn3()
    path = export_onnx(model, tmp_path / "m.onnx", input_size=(1, 28, 28))
    with pytest.raises(NonFiniteOutputError, match="NaN or infinite, so the export cannot be checked"):
        check_onnx(model, path, input_size=(1, 28, 28))


def test_export_of_resnet18_simam_at_32_px_reports_a_finite_difference(tmp_path, capsys):
    code = main(["export", "resnet18_simam", "--img-size", "32", "--onnx", str(tmp_path / "m.onnx")])
    out = capsys.readouterr().out
    assert code == 0
    diff = float(out.rsplit("=", 1)[1])
    assert diff < 1e-4  # False for nan
