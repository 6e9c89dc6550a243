"""ONNX export: every attention on the ResNet and MobileNet families runs in onnxruntime as in PyTorch."""

import json

import pytest
import timm
import torch

import attnzoo
from attention_helpers import assert_attention_matters, awake_model, wake
from attnzoo_cli import main
from attnzoo.export import check_onnx, export_onnx, model_input_size
from attnzoo.models import build_model, save_weights

SMALL = (3, 64, 64)


@pytest.mark.parametrize("attn", attnzoo.list_attentions())
@pytest.mark.parametrize("base", ["resnet18", "mobilenetv2_100"])
def test_exported_logits_match_pytorch(tmp_path, base, attn):
    model = awake_model(f"{base}_{attn}", num_classes=10)
    x = torch.randn(2, *SMALL)
    assert_attention_matters(model, x)
    path = export_onnx(model, tmp_path / "model.onnx", input_size=SMALL)
    check = check_onnx(model, path, input_size=SMALL)
    assert check.batch_size != 2  # the export's example batch: the batch axis really is dynamic
    # woken BNs give logits up to ~25 (mobilenetv2 + mhsa): float32 kernels agree to ~1e-5 of that scale
    assert check.max_abs_diff < 5e-5 * max(1.0, check.max_abs_logit)  # False for NaN


def test_input_size_comes_from_the_model_config_and_first_conv():
    assert model_input_size(timm.create_model("resnet34_se")) == (3, 224, 224)
    assert model_input_size(timm.create_model("resnet34_se", in_chans=1)) == (1, 224, 224)
    assert model_input_size(timm.create_model("resnet18_se.fmnist")) == (1, 32, 32)
    assert model_input_size(timm.create_model("resnet18_se")) == (3, 224, 224)


def test_export_command_loads_a_checkpoint_with_its_surgery(tmp_path, capsys):
    model = build_model("resnet18_cbam", num_classes=10, in_chans=1, small_input=True)
    wake(model)  # the zero-initialised residual branches would silence the attention
    assert_attention_matters(model, torch.randn(2, 1, 28, 28))
    save_weights(model, tmp_path / "best.safetensors")
    out = tmp_path / "deploy" / "model.onnx"
    code = main(["export", "resnet18_cbam", "--checkpoint", str(tmp_path / "best.safetensors"),
                 "--onnx", str(out), "--img-size", "28"])
    assert code == 0
    assert out.is_file()
    assert "input 1x28x28" in capsys.readouterr().out
    assert check_onnx(model, out, input_size=(1, 28, 28)).max_abs_diff < 1e-4


def test_export_command_takes_the_input_size_of_the_checkpoints_run_as_eval_does(tmp_path, capsys):
    run = tmp_path / "runs" / "cnn3-s0"
    save_weights(build_model("resnet18_se", num_classes=10, in_chans=1, small_input=True), run / "last.safetensors")
    (run / "summary.json").write_text(json.dumps({"img_size": 32}))
    code = main(["export", "resnet18_se", "--checkpoint", str(run / "last.safetensors"),
                 "--onnx", str(tmp_path / "m.onnx")])
    assert code == 0
    assert "input 1x32x32" in capsys.readouterr().out


def test_export_command_names_a_missing_checkpoint(tmp_path, capsys):
    code = main(["export", "resnet18_se", "--checkpoint", str(tmp_path / "nope.safetensors"),
                 "--onnx", str(tmp_path / "m.onnx")])
    assert code == 2
    assert "nope.safetensors does not exist" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
