"""Helpers for tests whose meaning depends on attention: models whose attention sees non-zero input.

timm zero-initialises the last BN of every residual branch, so on a fresh ResNet each attention module
gates zeros and any comparison of outputs compares 0 with 0. :func:`wake` gives every BN non-trivial
weights and statistics; :func:`assert_attention_matters` proves, per test, that the attention then
changes the output.
"""

from __future__ import annotations

import copy

import timm
import torch
from torch import nn

import attnzoo
from attnzoo.attention import create_attention, get_attention_class

ATTENTION_CLASSES = tuple(get_attention_class(name) for name in attnzoo.list_attentions())


def wake(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random affine weights and running statistics (in place); returns ``model``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=generator) + 0.5)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=generator) * 0.1)
            bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=generator) * 0.1)
            bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=generator) + 0.5)
    return model


def awake_model(name: str, **kwargs) -> nn.Module:
    """``timm.create_model(name, **kwargs)`` with :func:`wake`-ed BatchNorms, in eval mode."""
    torch.manual_seed(0)
    return wake(timm.create_model(name, **kwargs)).eval()


def without_attention(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every attention module replaced by ``nn.Identity``."""
    stripped = copy.deepcopy(model)
    for parent in list(stripped.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ATTENTION_CLASSES):
                setattr(parent, name, nn.Identity())
    return stripped


def assert_attention_matters(model: nn.Module, x: torch.Tensor, min_change: float = 1e-3) -> None:
    """Fail unless removing the attention changes ``model``'s output on ``x`` (eval mode, no grad)."""
    stripped = without_attention(model).eval()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            with_attn, without = model(x.clone()), stripped(x.clone())
    finally:
        model.train(was_training)
    assert torch.isfinite(with_attn).all() and torch.isfinite(without).all()
    change = (with_attn - without).abs().max().item()
    assert change > min_change, f"removing the attention changes the output by only {change:.2e}"


def randomized_attention(name: str, channels: int, std: float = 0.3, **kwargs) -> nn.Module:
    """Attention ``name`` (``kwargs`` to its constructor) in eval mode with every parameter drawn from
    N(0, std), so no gate is trivial."""
    module = create_attention(name, channels, **kwargs).eval()
    with torch.no_grad():
        for p in module.parameters():
            nn.init.normal_(p, std=std)
    return module


def gated_by_maps(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` times every gate ``module.attention_maps`` reports: a gating module's plain arithmetic, the
    reference its fast routes must match. Channel gates (B, C) broadcast over positions."""
    out = x
    for gate in module.attention_maps(x).values():
        out = out * (gate[:, :, None, None] if gate.dim() == 2 else gate)
    return out


def assert_equal_to_rounding(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to float32 rounding, which grows with depth and with the values' scale: the fused gates sum in
    another order than ATen, so a deep network's outputs differ from timm's by a few 1e-6 of their scale.
    Fails on NaN."""
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * max(1.0, expected.abs().max().item()))
