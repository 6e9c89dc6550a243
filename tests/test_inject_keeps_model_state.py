"""`inject` gives the new modules the model's train/eval mode, device, dtype and memory format, so an
eval-mode model stays a function of each image alone and a float64 or channels_last model keeps working."""

import pytest
import timm
import torch

import attnzoo


def _resnet() -> torch.nn.Module:
    # zero_init_last=False: on a fresh timm ResNet each block's last BN is zero, so attention would see zeros
    return timm.create_model("resnet18", num_classes=10, zero_init_last=False)


def test_eval_mode_model_stays_eval_and_each_image_is_independent_of_its_batch():
    model = _resnet().eval()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        plain = model(x[:1])
    attnzoo.inject(model, "cbam")
    assert not any(m.training for m in model.modules())
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    with torch.no_grad():
        alone, in_batch = model(x[:1]), model(x)[:1]
    torch.testing.assert_close(alone, in_batch, rtol=1e-5, atol=1e-5)  # no batch statistics in eval
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items())  # BN statistics untouched
    assert not torch.allclose(plain, alone, atol=1e-3)  # the attention does change the output


def test_train_mode_model_gets_train_mode_modules():
    model = _resnet().train()
    attnzoo.inject(model, "se")
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_new_modules_take_the_models_dtype(dtype):
    model = _resnet().to(dtype).eval()
    attnzoo.inject(model, "cbam")
    assert {p.dtype for p in model.parameters()} == {dtype}
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64, dtype=dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()


def test_new_modules_take_the_models_memory_format():
    model = _resnet().to(memory_format=torch.channels_last).eval()
    attnzoo.inject(model, "cbam")
    conv = model.layer1[0].se.spatial.conv.conv.weight  # the 7x7 spatial-gate conv
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_new_modules_take_the_models_device():
    model = _resnet().to("meta")
    attnzoo.inject(model, "se")
    assert {p.device.type for p in model.parameters()} == {"meta"}
