"""Compiled SE Bottlenecks pool their last convolution's input where that reads less
(``gated_through_pointwise_conv`` in attnzoo/surgery/resnet.py) and still compute timm's function.

Under ``torch.compile`` (and ``torch.export``) a GatedTailBottleneck whose attention is SE computes SE's
descriptor as ``bn3(conv3(mean(x)))`` from ``conv3``'s input ``x`` instead of pooling ``bn3(conv3(x))``
where the map outweighs ``conv3``'s weights: the same values up to float rounding, where the identity
holds. Every comparison is against timm's forward of the same weights, on models whose attention is shown
to change the output.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.models.resnet import Bottleneck
from torch import nn
from torch.nn.modules.module import register_module_forward_hook
from torch.testing import assert_close

from attention_helpers import assert_attention_matters
from attnzoo.surgery.resnet import GatedTailBottleneck, gated_through_pointwise_conv, pooling_the_input_reads_less
from test_gated_tail import gated_model, group_norm, logits, replaced_last_bn, reverted, scaled_output, subclassed
from test_gated_tail import without_running_stats


@pytest.fixture(autouse=True)
def _fresh_compiler():
    """Each test compiles a new model; without a reset, dynamo's per-code-object recompile limit trips."""
    torch.compiler.reset()
    yield


class RecordingBackend:
    """A ``torch.compile`` backend that keeps each graph dynamo captures and runs it as it is."""

    def __init__(self) -> None:
        self.graphs: list[torch.fx.GraphModule] = []

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list) -> object:
        self.graphs.append(graph)
        return graph.forward

    def linear_calls(self, model: nn.Module) -> int:
        """Calls of ``F.linear`` besides those of ``model``'s ``nn.Linear`` layers (the classifier): the route
        makes three per block that pools the convolution's input (the descriptor and SE's two layers) and two
        per block that pools its output; timm's SE makes none (its layers are 1x1
        convolutions), CBAM's channel gate two (its shared MLP, on both descriptors at once)."""
        linear = (F.linear, torch._C._nn.linear)
        calls = sum(node.op == "call_function" and node.target in linear for g in self.graphs for node in g.graph.nodes)
        return calls - sum(isinstance(m, nn.Linear) for m in model.modules())


def compiled_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, RecordingBackend]:
    backend = RecordingBackend()
    with torch.no_grad():
        out = torch.compile(model, backend=backend, fullgraph=True, dynamic=False)(x.clone())
    return out, backend


def bottlenecks(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, GatedTailBottleneck)]


def assert_close_to_rounding(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert torch.isfinite(theirs).all()
    assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * theirs.abs().max().item())


def pools_the_input(model: nn.Module, x: torch.Tensor) -> list[bool]:
    """For each Bottleneck, whether the route pools its last convolution's input at this input size."""
    sides = []
    hooks = [b.conv3.register_forward_pre_hook(lambda conv, args: sides.append(pooling_the_input_reads_less(args[0], conv)))
             for b in model.modules() if isinstance(b, Bottleneck)]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return sides


@pytest.mark.parametrize("base", ["resnet26d", "resnet50"])
def test_compiled_se_bottlenecks_take_the_route_and_give_timms_logits(base):
    model = gated_model(base, "se")
    x = torch.randn(3, 3, 64, 64)
    assert_attention_matters(model, x)
    sides = pools_the_input(reverted(model), x)
    assert any(sides) and not all(sides)  # early stages pool the input, the last the output
    out, backend = compiled_logits(model, x)
    assert backend.linear_calls(model) == sum(3 if side else 2 for side in sides)
    assert_close_to_rounding(out, logits(reverted(model), x))


def test_small_maps_pool_the_convolutions_output_because_its_weights_outweigh_them():
    """ResNet-50 at 224: at batch 1 the last two stages pool the output (their conv3 weights outweigh the
    maps), at batch 8 only the last."""
    model = reverted(gated_model("resnet50", "se"))
    stages = [len(stage) for stage in (model.layer1, model.layer2, model.layer3, model.layer4)]
    for batch, input_stages in [(1, 2), (8, 3)]:
        expected = [stage < input_stages for stage, blocks in enumerate(stages) for _ in range(blocks)]
        assert pools_the_input(model, torch.randn(batch, 3, 224, 224)) == expected


@pytest.mark.parametrize("attn", ["se", "cbam"])
@pytest.mark.parametrize("batch", [1, 2])
def test_products_of_one_or_two_descriptors_are_reductions_when_compiled(attn, batch):
    """SE's MLP and projection at batch 1 or 2, CBAM's MLP at batch 1 (both descriptors stacked) compile to
    a broadcast product and sum, not ``F.linear``; the logits stay timm's. (Larger batches use ``F.linear``:
    the other tests here count its calls at batch 3.)"""
    model = gated_model("resnet26d", attn)
    x = torch.randn(batch, 3, 64, 64)
    assert_attention_matters(model, x)
    out, backend = compiled_logits(model, x)
    assert backend.linear_calls(model) == (2 * len(bottlenecks(model)) if attn == "cbam" and batch == 2 else 0)
    assert_close_to_rounding(out, logits(reverted(model), x))


@pytest.mark.parametrize("attn", ["se", "cbam"])
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_compiled_blocks_under_autocast_give_timms_dtype_and_values(attn, batch):
    """Autocast casts ``F.linear`` to bfloat16 but not a broadcast product: a float32 gate would promote the
    block's output, and every feature map after it, to float32 where timm's stay bfloat16."""
    block = gated_model("resnet26d", attn).layer2[1]
    x = torch.randn(batch, block.conv1.in_channels, 8, 8)
    assert_attention_matters(block, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = compiled_logits(block, x)
        theirs = logits(reverted(block), x)
    assert theirs.dtype == torch.bfloat16
    assert out.dtype == theirs.dtype
    assert_close(out.float(), theirs.float(), rtol=2e-2, atol=2e-2 * theirs.abs().max().item())


@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 8, 8), (2, 1, 1), (2, 5, 3)], ids=str)
def test_the_route_gives_se_of_the_last_batchnorms_output(shape):
    """Directly, on a block: ``se(bn3(conv3(x)))`` for any batch and map size, including 1x1 maps, pooling
    either side of the convolution."""
    block = gated_model("resnet50", "se").layer2[0]
    batch, h, w = shape
    x = torch.randn(batch, block.conv3.in_channels, h, w)
    # 128 channels in, 512 out: the input side reads 384 fewer per position, against 65536 weights
    assert pooling_the_input_reads_less(x, block.conv3) == (h * w * batch > 65536 / 384)
    with torch.no_grad():
        ours = gated_through_pointwise_conv(block, x, block.conv3, block.bn3)
        ungated = block.bn3(block.conv3(x))
        theirs = block.se.forward_plain(ungated.clone())
    assert ours is not None
    assert_close_to_rounding(ours, theirs)
    assert (theirs - ungated).abs().max() > 1e-2  # the gate is not the identity


def test_a_nan_in_one_image_reaches_that_images_logits_only():
    model = gated_model("resnet50", "se")
    x = torch.randn(3, 3, 64, 64)
    x[0, 1, 5, 7] = float("nan")
    out, backend = compiled_logits(model, x)
    assert backend.linear_calls(model) > 0
    assert torch.isnan(out[0]).all()
    assert_close_to_rounding(out[1:], logits(reverted(model), x[1:]))


def grouped_fc1(block: nn.Module) -> None:
    fc1 = block.se.fc1
    block.se.fc1 = nn.Conv2d(fc1.in_channels, fc1.out_channels, 1, groups=fc1.out_channels // 2)


# where the identity does not hold, or the attention must be called: the block runs its plain forward
DECLINED = {
    "attention_hooked": lambda block: block.se.register_forward_hook(scaled_output),
    "fc1_hooked": lambda block: block.se.fc1.register_forward_hook(scaled_output),
    "conv_hooked": lambda block: block.conv3.register_forward_hook(scaled_output),
    "bn_hooked": lambda block: block.bn3.register_forward_hook(scaled_output),
    "bn_in_train_mode": lambda block: block.bn3.train(),
    "bn_without_running_stats": lambda block: replaced_last_bn(block, without_running_stats),
    "bn_subclass": lambda block: replaced_last_bn(block, subclassed),
    "group_norm": lambda block: replaced_last_bn(block, group_norm),
    "grouped_fc1": grouped_fc1,
}


@pytest.mark.parametrize("condition", DECLINED)
def test_compiled_blocks_run_timms_forward_where_the_route_does_not_hold(condition):
    block = gated_model("resnet50", "se").layer2[0]
    x = torch.randn(3, block.conv1.in_channels, 16, 16)
    assert_attention_matters(block, x)
    DECLINED[condition](block)
    assert gated_through_pointwise_conv(block, torch.randn(2, block.conv3.in_channels, 8, 8), block.conv3, block.bn3) is None
    out, backend = compiled_logits(block, x)
    assert backend.linear_calls(block) == 0
    theirs = logits(reverted(block), x)  # with the change: hooks, modes and modules are copied
    assert_close(out, theirs, rtol=1e-5, atol=1e-5 * theirs.abs().max().item())
    assert torch.isfinite(out).all()


def test_compiled_blocks_give_timms_forward_where_a_global_hook_changes_the_last_convolutions_output():
    """A hook for every module (``register_module_forward_hook``) sees the convolution too; the route would
    pool the convolution's input, which the hook does not change."""
    block = gated_model("resnet50", "se").layer2[0]
    x = torch.randn(3, block.conv1.in_channels, 16, 16)
    assert_attention_matters(block, x)
    twin = reverted(block)
    convolutions = (block.conv3, twin.conv3)

    def scaled_convolution(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor | None:
        return scaled_output(module, args, out) if any(module is conv for conv in convolutions) else None

    handle = register_module_forward_hook(scaled_convolution)
    try:
        assert gated_through_pointwise_conv(block, torch.randn(2, block.conv3.in_channels, 8, 8), block.conv3, block.bn3) is None
        out, backend = compiled_logits(block, x)
        theirs = logits(twin, x)
    finally:
        handle.remove()
    assert backend.linear_calls(block) == 0
    assert_close_to_rounding(out, theirs)


def scaled_input_gradient(module: nn.Module, grad_input: tuple, grad_output: tuple) -> tuple:
    """A backward hook that changes the gradient it passes on, so a route that skipped it would give other
    gradients."""
    return tuple(None if g is None else g * 3 for g in grad_input)


def input_gradient(model: nn.Module, x: torch.Tensor, compiled: bool = False) -> torch.Tensor:
    x = x.clone().requires_grad_()
    # not fullgraph: dynamo calls a module with backward hooks outside its graph
    forward = torch.compile(model, backend="eager") if compiled else model
    forward(x).square().sum().backward()
    return x.grad


# (not se.fc1: SE's in-place ReLU may not modify what a backward hook's module returns, in timm's SE as in ours)
@pytest.mark.parametrize("layer", ["conv3", "bn3", "se.fc2"])
def test_compiled_blocks_give_timms_gradients_where_a_backward_hook_watches(layer):
    """A backward hook on the convolution or BatchNorm sees the gradient of every path through it, the
    attention's descriptor included, which the route's descriptor would bypass; one on SE's layers needs
    them called."""
    block = gated_model("resnet50", "se").layer2[0]
    x = torch.randn(2, block.conv1.in_channels, 16, 16)
    unhooked = input_gradient(reverted(block), x)
    block.get_submodule(layer).register_full_backward_hook(scaled_input_gradient)
    assert gated_through_pointwise_conv(block, torch.randn(2, block.conv3.in_channels, 8, 8), block.conv3, block.bn3) is None
    theirs = input_gradient(reverted(block), x)
    assert (theirs - unhooked).abs().max() > 1e-2 * theirs.abs().max()  # the hook changes timm's gradient
    assert_close_to_rounding(input_gradient(block, x, compiled=True), theirs)


@pytest.mark.parametrize("change", [dict(stride=(2, 2)), dict(padding=(1, 1))], ids=["strided", "padded"])
def test_the_route_declines_a_last_convolution_that_is_not_the_same_map_at_every_position(change):
    """(The block cannot run with such a convolution: its output would not fit the shortcut.)"""
    block = gated_model("resnet50", "se").layer2[1]
    for attribute, value in change.items():
        setattr(block.conv3, attribute, value)
    assert gated_through_pointwise_conv(block, torch.randn(2, block.conv3.in_channels, 8, 8), block.conv3, block.bn3) is None


@pytest.mark.parametrize("attn", ["cbam", "cbam_channel", "cbam_spatial"])
def test_attentions_gated_by_more_than_the_mean_take_timms_forward_when_compiled(attn):
    """CBAM's channel gate needs the max-pooled descriptor too, which no linear map carries through."""
    model = gated_model("resnet26d", attn)
    x = torch.randn(3, 3, 64, 64)
    out, backend = compiled_logits(model, x)
    assert backend.linear_calls(model) == (0 if attn == "cbam_spatial" else 2 * len(bottlenecks(model)))
    assert_close_to_rounding(out, logits(reverted(model), x))


@pytest.mark.parametrize("dynamic_batch", [False, True], ids=["static", "dynamic_batch"])
def test_exported_se_bottlenecks_give_timms_logits(dynamic_batch):
    """With a dynamic batch, each block takes the side that reads less at every batch size, adding no guard."""
    model = gated_model("resnet26d", "se")
    x = torch.randn(2, 3, 64, 64)
    shapes = ({0: torch.export.Dim("batch", max=64)},) if dynamic_batch else None
    program = torch.export.export(model, (x,), dynamic_shapes=shapes)
    linear = sum(node.target == torch.ops.aten.linear.default for node in program.graph.nodes)
    assert linear > 1  # the classifier and the descriptors: exported graphs keep F.linear at any batch
    for batch in (2, 5) if dynamic_batch else (2,):
        x = torch.randn(batch, 3, 64, 64)
        with torch.no_grad():
            assert_close_to_rounding(program.module()(x.clone()), logits(reverted(model), x))
