"""Surgery: placement, function-preserving init, stage selection, timm interfaces, bad input."""

import pytest
import timm
import torch
from timm.models._efficientnet_blocks import SqueezeExcite as TimmEfficientNetSE
from torch import nn

import attnzoo
from attnzoo.attention.cbam import Cbam
from attnzoo.attention.se import SqueezeExcite
from attnzoo.errors import SurgeryError, UnknownAttentionError, UnsupportedArchitectureError
from attnzoo.surgery import SurgeryHook, model_stages
from attnzoo.surgery import registry as surgery_registry


def as_if_pretrained(model: nn.Module) -> nn.Module:
    """Random non-trivial weights and BN statistics, standing in for a pretrained checkpoint."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                if name.endswith("running_var"):
                    tensor.uniform_(0.5, 2.0)
                else:
                    tensor.normal_(0, 0.1)
    return model.eval()


def max_logit_change(base: str, attn: str, preserve: bool, size: int = 64, **kwargs) -> float:
    model = as_if_pretrained(timm.create_model(base))
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        before = model(x)
        after = attnzoo.inject(model, attn, preserve=preserve, **kwargs).eval()(x)
    return (after - before).abs().max().item()


@pytest.mark.parametrize("base", ["resnet50", "mobilenetv2_100"])
@pytest.mark.parametrize("attn", ["se", "cbam"])
def test_preserve_keeps_the_pretrained_function(base, attn):
    assert max_logit_change(base, attn, preserve=True) < 1e-5


@pytest.mark.parametrize("attn", ["cbam_channel", "cbam_spatial", "eca", "coord", "mhsa"])
def test_preserve_keeps_the_function_for_every_attention_with_parameters(attn):
    assert max_logit_change("resnet18", attn, preserve=True) < 1e-5


def test_without_preserve_the_sigmoid_gates_change_the_function():
    assert max_logit_change("resnet18", "cbam", preserve=False) > 1e-3


def test_preserved_model_is_the_plain_paper_architecture():
    preserved = attnzoo.inject(timm.create_model("resnet18"), "cbam", preserve=True)
    plain = timm.create_model("resnet18_cbam")
    assert preserved.state_dict().keys() == plain.state_dict().keys()
    assert isinstance(preserved.layer1[0].se, Cbam)


def test_preserved_attention_learns():
    model = attnzoo.inject(as_if_pretrained(timm.create_model("resnet18")), "se", preserve=True).train()
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert model.layer1[0].se.fc2.weight.grad.abs().sum() > 0


def test_backbone_weights_load_with_only_attention_keys_missing():
    base = timm.create_model("resnet50")
    injected = timm.create_model("resnet50_cbam")
    result = injected.load_state_dict(base.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(".se." in key for key in result.missing_keys)


def test_resnet_attention_sits_after_the_last_bn_before_the_add():
    model = attnzoo.inject(timm.create_model("resnet50"), "se")
    block = model.layer2[0]
    seen = []
    block.bn3.register_forward_hook(lambda *_: seen.append("bn3"))
    block.se.register_forward_hook(lambda *_: seen.append("se"))
    block.downsample.register_forward_hook(lambda *_: seen.append("shortcut"))
    block(torch.randn(1, 256, 8, 8))
    assert seen.index("bn3") + 1 == seen.index("se")
    assert block.se.fc1.in_channels == block.bn3.num_features == 512


def test_efficientnet_blocks_get_attention_in_expanded_channels_replacing_their_se():
    model = attnzoo.inject(timm.create_model("efficientnet_b0"), "se")
    block = model.blocks[1][0]  # InvertedResidual 16 -> 24, expansion 6
    assert isinstance(block.se, SqueezeExcite)
    assert block.se.fc1.in_channels == block.conv_pwl.in_channels == 96
    assert block.se.fc1.out_channels == 4  # 1/4 of the block's 16 input channels, as timm's EfficientNet SE
    assert not any(isinstance(m, TimmEfficientNetSE) for m in model.modules())


def test_efficientnet_reduction_follows_a_user_rd_ratio():
    model = attnzoo.inject(timm.create_model("mobilenetv2_100"), "cbam", rd_ratio=1 / 2)
    assert model.blocks[1][0].se.channel.fc1.out_channels == 8  # 16 input channels / 2


def test_stages_select_where_attention_goes():
    model = attnzoo.inject(timm.create_model("resnet50"), "se", stages=(2, 3))
    with_se = [i for i, stage in enumerate(model_stages(model), 1) if stage[0].se is not None]
    assert with_se == [2, 3]


def test_mhsa_defaults_to_the_last_stage_only():
    model = attnzoo.inject(timm.create_model("resnet18"), "mhsa")
    assert [stage[0].se is not None for stage in model_stages(model)] == [False, False, False, True]


def test_surgery_is_recorded_on_the_model():
    model = attnzoo.inject(timm.create_model("resnet18"), "cbam", stages=[4], rd_ratio=1 / 8)
    assert attnzoo.model_config(model)["surgery"] == [
        {"op": "attention", "attn": "cbam", "stages": [4], "preserve": False, "kwargs": {"rd_ratio": 1 / 8}}
    ]


def test_stage_out_of_range_names_the_valid_range():
    with pytest.raises(SurgeryError, match=r"stage 5 is out of range; this model has stages 1\.\.4"):
        attnzoo.inject(timm.create_model("resnet18"), "se", stages=(4, 5))


def test_injecting_twice_is_refused():
    model = timm.create_model("resnet18_se")
    with pytest.raises(SurgeryError, match="already has 'se' attention"):
        attnzoo.inject(model, "cbam")


def test_unknown_attention_is_refused_before_touching_the_model():
    model = timm.create_model("resnet18")
    with pytest.raises(UnknownAttentionError, match="unknown attention 'sse'"):
        attnzoo.inject(model, "sse")
    assert model.layer1[0].se is None


def test_unsupported_architecture_lists_supported_blocks():
    with pytest.raises(UnsupportedArchitectureError, match="supported block types: BasicBlock, Bottleneck"):
        attnzoo.inject(timm.create_model("vit_tiny_patch16_224"), "se")


def test_bad_attention_kwargs_are_refused():
    with pytest.raises(SurgeryError, match="'eca' does not take rd_ratio"):
        attnzoo.inject(timm.create_model("resnet18"), "eca", rd_ratio=0.5)


def test_preserve_refuses_parameter_free_simam():
    with pytest.raises(SurgeryError, match="'simam' has no parameters"):
        attnzoo.inject(timm.create_model("resnet18"), "simam", preserve=True)


def test_preserve_refuses_to_replace_an_existing_se():
    with pytest.raises(SurgeryError, match="already has SqueezeExcite"):
        attnzoo.inject(timm.create_model("efficientnet_b0"), "cbam", preserve=True)


def test_third_party_block_gets_attention_through_a_registered_hook(monkeypatch):
    monkeypatch.setattr(surgery_registry, "_HOOKS", dict(surgery_registry._HOOKS))
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 3, padding=1)
            self.se = nn.Identity()

        def forward(self, x):
            return self.se(self.conv(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stages = nn.Sequential(nn.Sequential(Block()), nn.Sequential(Block()))

        def forward(self, x):
            return self.stages(x)

    def compensate(block, gain):
        block.conv.weight.data /= gain
        block.conv.bias.data /= gain

    attnzoo.register_surgery(Block, SurgeryHook(channels=lambda b: b.conv.out_channels, compensate=compensate))
    net = Net().eval()
    x = torch.randn(1, 8, 5, 5)
    before = net(x)
    attnzoo.inject(net, "cbam", preserve=True)
    assert isinstance(net.stages[1][0].se, Cbam)
    assert not net.stages[1][0].se.gate_in_place  # the hook did not promise a temporary slot input
    assert (net(x) - before).abs().max() < 1e-6
