"""FX, TorchScript, torch.jit.trace, torch.export (dynamic batch) and torch.compile give eager's outputs.

Eager forwards take the fast routes (in-place gating, fused autograd nodes); every tracer sees the plain
formulation. Each comparison below is therefore between two routes, on models whose attention is shown to
change the output (BatchNorms woken with :func:`attention_helpers.wake`).
"""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision.models.feature_extraction as tv_fx
from torch import nn

import attnzoo
from attention_helpers import assert_attention_matters, awake_model, wake
from attnzoo.models import build_model

TOL = dict(rtol=1e-5, atol=1e-5)
# (model, input): every attention type on a ResNet, a MobileNet and cnn3; maps reach 1x1 on the first two
SWEEP = {
    **{f"resnet18_{a}": (3, 32) for a in attnzoo.list_attentions()},
    **{f"mobilenetv2_100_{a}": (3, 32) for a in attnzoo.list_attentions()},
    **{f"cnn3+{a}": (1, 28) for a in attnzoo.list_attentions()},
}


def sweep_model(name: str) -> nn.Module:
    """A sweep model with woken BatchNorms (``cnn3+attn``: cnn3 with ``attn`` by surgery), eval mode."""
    torch.manual_seed(0)
    if "+" in name:
        base, attn = name.split("+")
        return wake(build_model(base, attention=attn, num_classes=10, in_chans=1)).eval()
    return awake_model(name, num_classes=10)


def inputs(name: str, batch: int = 2) -> torch.Tensor:
    chans, size = SWEEP[name]
    return torch.randn(batch, chans, size, size)


@pytest.fixture(scope="module", params=list(SWEEP))
def case(request):
    name = request.param
    model = sweep_model(name)
    assert_attention_matters(model, inputs(name))
    return name, model


@pytest.fixture(autouse=True)
def _fresh_compiler():
    """Each test compiles a new model; without a reset, dynamo's per-code-object recompile limit trips."""
    torch.compiler.reset()
    yield


def eager(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():  # the in-place inference route where surgery allows it
        return model(x.clone())


def test_fx_symbolic_trace_matches_eager(case):
    name, model = case
    x = inputs(name)
    graph = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), eager(model, x), **TOL)


def test_torchscript_matches_eager(case):
    name, model = case
    x = inputs(name)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), eager(model, x), **TOL)


@pytest.mark.parametrize("name", ["cnn3", "cnn3_se", "cnn3_cbam"])
def test_fx_graph_of_the_cnn3_family_can_be_scripted(name):
    """timm's FX + TorchScript route: the graph's code carries forward()'s annotations, which must resolve."""
    model = awake_model(name) if name == "cnn3" else sweep_model(f"cnn3+{name[5:]}")
    x = torch.randn(2, 1, 28, 28)
    scripted = torch.jit.script(torch.fx.symbolic_trace(model))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), eager(model, x), **TOL)


def test_torch_export_with_dynamic_batch_matches_eager(case):
    name, model = case
    program = torch.export.export(model, (inputs(name, 2),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    x = inputs(name, 3)  # not the example batch: the batch axis really is dynamic
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), eager(model, x), **TOL)


def test_jit_trace_matches_eager(case):
    name, model = case
    x = inputs(name)
    with torch.no_grad():
        traced = torch.jit.trace(model, x.clone())
        torch.testing.assert_close(traced(x), eager(model, x), **TOL)


def test_torch_compile_matches_eager(case):
    name, model = case
    if name.startswith("mobilenet"):
        pytest.skip("dynamo takes 7-15 s per MobileNet here; the CBAM one is compiled below, with gradients")
    x = inputs(name)
    with torch.no_grad():
        compiled = torch.compile(model, backend="eager", fullgraph=True, dynamic=False)
        torch.testing.assert_close(compiled(x), eager(model, x), **TOL)


# SE and CBAM have fast eager routes in training too (attnzoo.attention.fused): their gradients are compared.
FAST = ["resnet18_se", "resnet18_cbam", "mobilenetv2_100_cbam", "cnn3+se", "cnn3+cbam"]


def assert_gradients_close(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    """Equal up to float64 rounding, relative to each tensor's scale.

    float64 because train-mode BatchNorm backward amplifies float32 summation-order differences through
    eight blocks to ~5e-4 of the gradient's scale; in float64 the two routes agree to ~1e-9 or better.
    """
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7 * max(1.0, b.abs().max().item()))


def input_and_parameter_grads(run: nn.Module, x: torch.Tensor, params: list[nn.Parameter]) -> list[torch.Tensor]:
    """``run(x)`` and the gradients of its sum of squares for ``x`` and ``params``."""
    x = x.clone().requires_grad_()
    torch.manual_seed(0)  # the same dropout mask (cnn3) for every route
    out = run(x)
    return [out, *torch.autograd.grad(out.square().sum(), [x, *params])]


@pytest.mark.parametrize("name", FAST)
def test_fx_graph_trains_with_eagers_gradients(name):
    model = sweep_model(name).double().train()
    graph = torch.fx.symbolic_trace(model)  # shares the parameters; train-mode BN uses batch statistics
    x = inputs(name, 4).double()
    params = list(model.parameters())
    assert_gradients_close(input_and_parameter_grads(model, x, params), input_and_parameter_grads(graph, x, params))


@pytest.mark.parametrize("name", ["resnet18_cbam", "cnn3+se", "cnn3+cbam"])  # 4-30 s each
def test_aot_compiled_training_step_matches_eager(name):
    model = sweep_model(name).double().train()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=False)
    x = inputs(name, 4).double()
    params = list(model.parameters())
    assert_gradients_close(input_and_parameter_grads(model, x, params), input_and_parameter_grads(compiled, x, params))


@pytest.mark.parametrize("name", ["resnet18_se", "resnet18_cbam", "mobilenetv2_100_cbam"])
def test_timm_fx_feature_extraction_matches_features_only(name):
    model = awake_model(name)
    fx_features = timm.models.FeatureGraphNet(model, out_indices=(0, 1, 2, 3, 4)).eval()  # timm's FX route
    features = timm.create_model(name, features_only=True).eval()
    features.load_state_dict({k: v for k, v in model.state_dict().items() if k in features.state_dict()})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = features(x.clone())
        got = fx_features(x)
    assert len(got) == len(expected) == 5
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("extractor", ["timm", "torchvision"])
@pytest.mark.parametrize("attn", ["se", "cbam"])
def test_fx_feature_extractor_sees_the_attention_input_ungated(attn, extractor):
    """Returning the attention's input as a feature: in-place gating must not overwrite it under FX."""
    model = awake_model(f"resnet18_{attn}", num_classes=10)
    x = torch.randn(2, 3, 64, 64)
    nodes = {"layer2.0.bn2": "before", "layer2.0.se": "after", "fc": "logits"}
    reference = {}
    for layer, key in nodes.items():  # clones: the block adds its shortcut to the attention's output in place
        hook = lambda m, a, out, key=key: reference.update({key: out.detach().clone()})  # noqa: E731
        model.get_submodule(layer).register_forward_hook(hook)
    model(x.clone())
    for layer in nodes:
        model.get_submodule(layer)._forward_hooks.clear()
    if extractor == "timm":
        features = timm.models.create_feature_extractor(model, return_nodes=nodes)
    else:
        features = tv_fx.create_feature_extractor(model, return_nodes=nodes)
    with torch.no_grad():
        got = features(x)
    assert not torch.allclose(got["before"], got["after"])
    for key in reference:
        torch.testing.assert_close(got[key], reference[key], **TOL)
