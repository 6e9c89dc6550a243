"""ResNet blocks with SE or CBAM take the one-pass tails (attnzoo/surgery/resnet.py) only where they are
exact, and CBAM trains on the fused kernels (KernelCbam) with the plain route's gradients.

Surgery gives timm's BasicBlock/Bottleneck the class GatedTailBasicBlock/GatedTailBottleneck when the
attention offers ``fusable_gates``; in eager eval no-grad inference that block applies the gates, the
shortcut add and the ReLU in one kernel call (``gate_add_relu_``), and with SE or CBAM the whole tail after
the last convolution, its eval BatchNorm folded in, is one call (``se_bn_tail_``, ``cbam_bn_tail_``). Every
comparison here is against timm's own forward of the same weights (the block's class reverted) or the plain
torch route, on models whose attention is shown to change the output.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import pickle

import pytest
import timm
import torch
from timm.layers import DropPath
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn
from torch.testing import assert_close

from attention_helpers import (
    assert_attention_matters,
    assert_equal_to_rounding,
    gated_by_maps,
    randomized_attention,
    wake,
)
from attnzoo.attention.cbam import Cbam
from attnzoo.attention.fused import KernelCbam
from attnzoo.attention.se import SqueezeExcite
from attnzoo.models import build_model
from attnzoo.surgery import inject, registry
from attnzoo.surgery.resnet import GatedTailBasicBlock, GatedTailBottleneck
from kernel_helpers import assert_resnet18_training_step_matches_the_plain_route, output_and_grads, plain_route
from test_tracing import sweep_model

# BasicBlock and Bottleneck, each with a conv shortcut (resnet18, resnet50) and an avg-pool one (the "d"/"t" stems)
BASES = ["resnet18", "resnet10t", "resnet26d", "resnet50"]
TAIL_ATTENTIONS = ["se", "cbam", "cbam_channel", "cbam_spatial"]
NOT_FUSABLE = ["eca", "coord", "simam", "mhsa"]
GATED = (GatedTailBasicBlock, GatedTailBottleneck)
FOLDED_TAILS = {"se": "se_bn_tail_", "cbam": "cbam_bn_tail_"}  # attentions whose tail folds the last BN in
TAIL_OPS = ("gate_add_relu_", *FOLDED_TAILS.values())  # the one-pass tails: after the last BN, or with it folded in


def tail_op(attn: str) -> str:
    """The operator of each block's one-pass tail: SE's and CBAM's fold the last BN in, the parts of CBAM
    gate the BN's output (``gate_add_relu_``)."""
    return FOLDED_TAILS.get(attn, "gate_add_relu_")


def one_pass_tails(counting) -> int:
    return sum(counting.calls[op] for op in TAIL_OPS)


def gated_model(base: str, attn: str) -> nn.Module:
    """``base`` with ``attn`` by surgery, BatchNorms woken, eval mode."""
    torch.manual_seed(0)
    return wake(build_model(base, attention=attn)).eval()


def timm_blocks(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]


def tail_blocks(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, GATED)]


def last_bn_name(block: nn.Module) -> str:
    return "bn3" if isinstance(block, Bottleneck) else "bn2"


def last_bn(block: nn.Module) -> nn.Module:
    return getattr(block, last_bn_name(block))


def last_act(block: nn.Module) -> nn.Module:
    return block.act3 if isinstance(block, Bottleneck) else block.act2


def reverted(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose gated-tail blocks are timm's classes again: timm's forward, same weights."""
    twin = copy.deepcopy(model)
    for block in tail_blocks(twin):
        block.__class__ = block.__class__.__base__
    assert not tail_blocks(twin)
    return twin


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x.clone())  # clone: nothing a forward does may reach the caller's input


# --- 1. the tail gives timm's logits ------------------------------------------------------------------


@pytest.mark.parametrize("attn", TAIL_ATTENTIONS)
@pytest.mark.parametrize("base", BASES)
def test_gated_tail_gives_timms_logits_and_takes_one_call_per_block(counting, base, attn):
    model = gated_model(base, attn)
    blocks = tail_blocks(model)
    assert blocks and len(blocks) == len(timm_blocks(model))
    x = torch.randn(2, 3, 64, 64)
    fused = logits(model, x)
    assert counting.calls[tail_op(attn)] == one_pass_tails(counting) == len(blocks)
    assert counting.calls["se_gate"] == 0
    with plain_route():
        plain = logits(model, x)
    timms = logits(reverted(model), x)
    if attn in FOLDED_TAILS:  # the folded BN may round otherwise than timm's BN; then the same function
        assert_equal_to_rounding(fused, timms)
    else:  # the same gates, then the same products, add and ReLU per element
        assert torch.equal(fused, timms)
    # the plain route computes the gates in another summation order; float32 rounding grows with depth
    assert_close(fused, plain, rtol=1e-5, atol=1e-5 * plain.abs().max().item())
    assert_attention_matters(model, x)


def assert_batch_norm_is_not_the_identity(bn: nn.Module) -> None:
    """Fail unless ``bn``'s statistics and affine are far from 0 and 1 (:func:`wake`): folding it changes values."""
    assert bn.running_mean.abs().max() > 0.1 and (bn.running_var - 1).abs().max() > 0.1
    if bn.affine:
        assert (bn.weight - 1).abs().max() > 0.1 and bn.bias.abs().max() > 0.1


@pytest.fixture
def folded(monkeypatch) -> collections.Counter[int]:
    """How often each SE or CBAM module (by id) was asked for its BN-folded tail (``batch_norm_tail``)."""
    asked: collections.Counter[int] = collections.Counter()
    for attention in (SqueezeExcite, Cbam):
        original = attention.batch_norm_tail
        monkeypatch.setattr(
            attention,
            "batch_norm_tail",
            lambda self, *args, original=original: asked.update([id(self)]) or original(self, *args),
        )
    return asked


@pytest.mark.parametrize("base", ["resnet18", "resnet50"])
def test_se_tail_folds_the_last_batchnorm_in_and_gives_timms_seresnet_logits(counting, folded, base):
    model = gated_model(base, "se")
    blocks = tail_blocks(model)
    for block in blocks:
        assert_batch_norm_is_not_the_identity(last_bn(block))
    theirs = timm.create_model(f"se{base}").eval()
    theirs.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    ours = logits(model, x)
    assert folded == collections.Counter(id(block.se) for block in blocks)  # every block, once
    assert counting.calls["se_bn_tail_"] == len(blocks) > 0  # ... and each took the one C++ call
    assert counting.calls["se_gate"] == counting.calls["gate_add_relu_"] == 0
    # the kernel folds the BN and sums the pooling and the MLP in another order than ATen: equal to rounding
    assert_equal_to_rounding(ours, logits(theirs, x))
    assert_attention_matters(model, x)


@pytest.mark.parametrize("base", ["resnet18", "resnet50"])
def test_cbam_tail_folds_the_last_batchnorm_in_and_gives_the_unfolded_tails_logits(counting, folded, base):
    """The fold computes bn(x) as ATen's eval BatchNorm rounds it, and then CBAM's gates as the unfolded
    route does: the same bits as timm's forward of the block, which runs the BN and then this CBAM."""
    model = gated_model(base, "cbam")
    blocks = tail_blocks(model)
    for block in blocks:
        assert_batch_norm_is_not_the_identity(last_bn(block))
    x = torch.randn(2, 3, 64, 64)
    ours = logits(model, x)
    assert folded == collections.Counter(id(block.se) for block in blocks)
    assert counting.calls["cbam_bn_tail_"] == len(blocks) > 0
    assert counting.calls["cbam_gates"] == counting.calls["gate_add_relu_"] == 0
    assert torch.equal(ours, logits(reverted(model), x))
    assert_attention_matters(model, x)


def block_input(block: nn.Module, shape: tuple[int, ...] = (2, 16, 16)) -> torch.Tensor:
    """A non-negative feature map (as after a ReLU) for ``block``: ``shape`` is (batch, height, width)."""
    batch, height, width = shape
    return torch.randn(batch, block.conv1.in_channels, height, width).relu()


# (batch, height, width) of resnet18's layer1[1] (64 channels); the folded tails take images in chunks of 4 MiB
CHUNKS = [
    (1, 8, 8),  # one image
    (3, 5, 7),  # 35 positions: not a multiple of the vector width
    (3, 1, 1),  # one position
    (5, 64, 64),  # chunks of 4 images and 1
    (3, 128, 128),  # one image (4 MiB) per chunk
]


@pytest.mark.parametrize("shape", CHUNKS, ids=[f"{b}x{h}x{w}" for b, h, w in CHUNKS])
@pytest.mark.parametrize("attn", FOLDED_TAILS)
def test_folded_tail_gives_the_plain_routes_block_output_in_chunks_of_images(counting, attn, shape):
    block = gated_model("resnet18", attn).layer1[1]
    x = block_input(block, shape)
    fused = logits(block, x)
    assert counting.calls[FOLDED_TAILS[attn]] == 1
    with plain_route():
        assert_equal_to_rounding(fused, logits(block, x))
    assert_attention_matters(block, x)


@pytest.mark.parametrize(("batch", "size"), [(1, 64), (3, 64), (3, 224)])
@pytest.mark.parametrize("attn", FOLDED_TAILS)
def test_folded_tail_gives_the_plain_routes_logits_at_any_batch_and_size(counting, attn, batch, size):
    """At 224 a chunk of a folded tail holds 5 images in layer1, at 64 all of them."""
    model = gated_model("resnet18", attn)
    x = torch.randn(batch, 3, size, size)
    fused = logits(model, x)
    assert counting.calls[FOLDED_TAILS[attn]] == len(tail_blocks(model))
    with plain_route():
        assert_equal_to_rounding(fused, logits(model, x))
    assert_attention_matters(model, x)


def random_batch_norm(channels: int, **kwargs) -> nn.BatchNorm2d:
    """An eval ``nn.BatchNorm2d`` (``kwargs`` to it) with random statistics and, if affine, weights."""
    bn = nn.BatchNorm2d(channels, **kwargs)
    with torch.no_grad():
        bn.running_mean.normal_(0, 0.3)
        bn.running_var.uniform_(0.2, 2.0)
        if bn.affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.3)
    return bn.eval()


@pytest.mark.parametrize("kwargs", [dict(affine=False), dict(eps=0.5)], ids=["without_affine", "eps_0.5"])
@pytest.mark.parametrize("base", ["resnet18", "resnet50"])
@pytest.mark.parametrize("attn", FOLDED_TAILS)
def test_folded_tail_folds_any_eval_batchnorm2d(counting, attn, base, kwargs):
    model = gated_model(base, attn)
    block = model.layer2[0]
    x = torch.randn(2, 3, 64, 64)
    before = logits(model, x)
    bn = random_batch_norm(last_bn(block).num_features, **kwargs)
    assert_batch_norm_is_not_the_identity(bn)
    setattr(block, last_bn_name(block), bn)
    counting.calls.clear()
    fused = logits(model, x)
    assert counting.calls[FOLDED_TAILS[attn]] == len(tail_blocks(model))
    with plain_route():
        assert_equal_to_rounding(fused, logits(model, x))
    assert (fused - before).abs().max() > 1e-3  # the new BN changed the logits
    assert_attention_matters(model, x)


@pytest.mark.parametrize("attn", FOLDED_TAILS)
def test_folded_tail_folds_with_the_identity_initialised_gate(counting, attn):
    """gate_init="identity" makes each gate 2 * sigmoid: the folded tail's gains 2."""
    torch.manual_seed(0)
    model = build_model("resnet18", attention=attn, attn_kwargs=dict(gate_init="identity"))
    with torch.no_grad():
        for block in tail_blocks(model):  # the initialisation zeroes fc2 (and CBAM's spatial BN): make gates vary
            for name, param in block.se.named_parameters():
                if "fc2" in name:
                    param.normal_(0, 0.3)
    model = wake(model).eval()
    x = torch.randn(2, 3, 64, 64)
    fused = logits(model, x)
    assert counting.calls[FOLDED_TAILS[attn]] == len(tail_blocks(model)) > 0
    with plain_route():
        assert_equal_to_rounding(fused, logits(model, x))
    assert_attention_matters(model, x)


def inf_in_the_first_image(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x[0, :, 10, 10] = float("inf")
    return x


def nan_in_a_convolution(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        model.layer1[0].conv2.weight[3, 5, 1, 1] = float("nan")
    return x


# how the input or the model is poisoned -> which images' logits turn NaN (each image: all of them or none)
POISONS = {
    "inf_in_the_first_image": (inf_in_the_first_image, [True, False]),
    "nan_in_a_convolution": (nan_in_a_convolution, [True, True]),
}


@pytest.mark.parametrize("poison", POISONS)
@pytest.mark.parametrize("attn", FOLDED_TAILS)
def test_folded_tail_propagates_nan_and_inf_as_the_plain_route(counting, attn, poison):
    poisoned, nan_images = POISONS[poison]
    model = gated_model("resnet18", attn)
    x = poisoned(model, torch.randn(2, 3, 64, 64))
    fused = logits(model, x)
    assert counting.calls[FOLDED_TAILS[attn]] == len(tail_blocks(model))
    with plain_route():
        plain = logits(model, x)
    nan_images = torch.tensor(nan_images)
    assert torch.equal(plain.isnan(), nan_images[:, None].expand_as(plain))
    assert torch.equal(fused.isnan(), plain.isnan())
    if not nan_images.all():
        assert_equal_to_rounding(fused[~nan_images], plain[~nan_images])


class OtherBatchNorm(nn.BatchNorm2d):
    """A subclass of BatchNorm2d: its forward may differ, so the fold (nn.BatchNorm2d's arithmetic) declines it."""


def scaled_output(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
    """A forward hook that changes what it sees, so a route that skipped it would give other values."""
    return out * 1.5


def replaced_last_bn(block: nn.Module, make) -> None:
    """Puts ``make(bn)`` where ``block``'s last BN is."""
    setattr(block, last_bn_name(block), make(last_bn(block)))


def without_running_stats(bn: nn.BatchNorm2d) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(bn.num_features, track_running_stats=False).eval()
    new.load_state_dict({"weight": bn.weight, "bias": bn.bias})
    return new


def subclassed(bn: nn.BatchNorm2d) -> nn.BatchNorm2d:
    new = OtherBatchNorm(bn.num_features).eval()
    new.load_state_dict(bn.state_dict())
    return new


def group_norm(bn: nn.BatchNorm2d) -> nn.GroupNorm:
    new = nn.GroupNorm(1, bn.num_features)
    new.load_state_dict({"weight": bn.weight, "bias": bn.bias})
    return new


def hooked_drop_path(block: nn.Module) -> None:
    block.drop_path = DropPath(0.5).eval()
    block.drop_path.register_forward_hook(scaled_output)


def excitation(block: nn.Module) -> nn.Module:
    """The block's excitation MLP: SE itself, or CBAM's channel gate."""
    return block.se.channel if isinstance(block.se, Cbam) else block.se


# condition -> (its change to the block; gate_add_relu_ calls: 1 where the block runs its BN and then the gated
# tail, 0 where it runs timm's forward)
FOLD_DECLINED = {
    "bn_forward_hook": (lambda block: last_bn(block).register_forward_hook(scaled_output), 1),
    "bn_forward_pre_hook": (lambda block: last_bn(block).register_forward_pre_hook(lambda m, args: args[0] * 1.5), 1),
    "bn_in_train_mode": (lambda block: last_bn(block).train(), 1),
    "bn_without_running_stats": (lambda block: replaced_last_bn(block, without_running_stats), 1),
    "bn_subclass": (lambda block: replaced_last_bn(block, subclassed), 1),
    "group_norm": (lambda block: replaced_last_bn(block, group_norm), 1),
    "mlp_with_silu": (lambda block: setattr(excitation(block), "act", nn.SiLU()), 1),  # the C++ MLP has a ReLU
    "mlp_without_bias": (lambda block: setattr(excitation(block).fc2, "bias", None), 1),  # the C++ MLP reads both
    "attention_hooked": (lambda block: block.se.register_forward_hook(scaled_output), 0),
    "fc1_hooked": (lambda block: excitation(block).fc1.register_forward_hook(scaled_output), 0),
    "act_hooked": (lambda block: last_act(block).register_forward_hook(scaled_output), 0),
    "drop_path_hooked": (hooked_drop_path, 0),
    "float64": (lambda block: block.double(), 0),
}


# CBAM's own: its spatial BatchNorm in train mode (batch statistics, a running average to move)
CBAM_FOLD_DECLINED = {
    "spatial_bn_in_train_mode": (lambda block: block.se.spatial.conv.bn.train(), 1),
    # the kernels' spatial conv pads with zeros
    "spatial_conv_reflect_padding": (lambda block: setattr(block.se.spatial.conv.conv, "padding_mode", "reflect"), 1),
}
DECLINED_CASES = [(attn, condition) for attn in FOLDED_TAILS for condition in FOLD_DECLINED] + [
    ("cbam", condition) for condition in CBAM_FOLD_DECLINED
]


@pytest.mark.parametrize(("attn", "condition"), DECLINED_CASES)
@pytest.mark.parametrize("base", ["resnet18", "resnet50"])
def test_folded_tail_is_not_taken_where_the_block_must_run_its_batchnorm(counting, base, attn, condition):
    """The block (with a downsample) runs its BN by itself, then timm's forward or the gated tail: exactly
    timm's values, which differ from the folded route's by rounding (or more, as a train-mode BN's)."""
    change, gated_tails = {**FOLD_DECLINED, **CBAM_FOLD_DECLINED}[condition]
    block = gated_model(base, attn).layer2[0]
    x = block_input(block)
    assert_attention_matters(block, x)
    change(block)
    x = x.to(block.conv1.weight.dtype)
    timms = reverted(block)  # with the change: hooks, modes and modules are copied
    counting.calls.clear()
    out = logits(block, x)
    assert counting.calls[FOLDED_TAILS[attn]] == 0
    assert counting.calls["gate_add_relu_"] == gated_tails
    assert torch.equal(out, logits(timms, x))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("base", ["resnet18", "resnet50"])
@pytest.mark.parametrize("attn", FOLDED_TAILS)
def test_a_hook_that_keeps_the_last_convolutions_output_sees_it_unchanged(counting, attn, base):
    """The fold writes over the convolution's output; a hook holding that tensor must keep its values."""
    block = gated_model(base, attn).layer2[0]
    conv = block.conv3 if isinstance(block, Bottleneck) else block.conv2
    kept, copies = [], []
    conv.register_forward_hook(lambda m, args, out: kept.append(out) or copies.append(out.clone()))
    x = block_input(block)
    out = logits(block, x)
    assert counting.calls[FOLDED_TAILS[attn]] == 0 and counting.calls["gate_add_relu_"] == 1
    assert torch.equal(kept[0], copies[0])
    assert_equal_to_rounding(out, logits(reverted(block), x))


@pytest.mark.parametrize("attn", FOLDED_TAILS)
def test_folded_tail_leaves_a_float64_batchnorm_to_torchs_mixed_dtype_error(counting, attn):
    block = gated_model("resnet18", attn).layer2[0]
    block.bn2.double()
    x = block_input(block)
    for run in (block, reverted(block)):
        with pytest.raises(RuntimeError, match="mixed dtype"):
            logits(run, x)
    assert counting.calls[FOLDED_TAILS[attn]] == 0


@pytest.mark.parametrize("attn", TAIL_ATTENTIONS)
def test_a_drop_path_in_train_mode_drops_the_branch_as_timms_forward_does(counting, attn):
    """Stochastic depth at test time (the model in eval mode, its DropPath modules in train mode, as for Monte
    Carlo estimates): the one-pass tails have no drop path, so the block runs timm's forward."""
    block = gated_model("resnet50", attn).layer2[0]
    block.drop_path = DropPath(1.0)  # in train mode: drops the whole residual branch
    assert not block.training and block.drop_path.training
    x = block_input(block)
    out = logits(block, x)
    assert one_pass_tails(counting) == 0
    assert torch.equal(out, logits(block.downsample, x).relu())
    assert torch.equal(out, logits(reverted(block), x))


# --- 2. which blocks are swapped, and what a swap keeps -----------------------------------------------


class ThirdPartyBottleneck(Bottleneck):
    """A subclass of timm's Bottleneck whose forward attnzoo does not know: it must keep its class."""


@pytest.mark.parametrize("attn", TAIL_ATTENTIONS)
def test_blocks_with_fusable_attention_become_gated_tail_blocks(attn):
    for base, tail in (("resnet18", GatedTailBasicBlock), ("resnet26d", GatedTailBottleneck)):
        blocks = timm_blocks(build_model(base, attention=attn))
        assert blocks and all(type(block) is tail for block in blocks)


@pytest.mark.parametrize("attn", NOT_FUSABLE)
def test_blocks_with_other_attentions_keep_timms_class(attn):
    model = build_model("resnet18", attention=attn)
    assert any(block.se is not None for block in timm_blocks(model))
    assert all(type(block) is BasicBlock for block in timm_blocks(model))


def test_a_third_party_subclass_keeps_its_class():
    model = ResNet(block=ThirdPartyBottleneck, layers=[1, 1, 1, 1])
    inject(model, "cbam")
    blocks = timm_blocks(model)
    assert blocks and all(type(block) is ThirdPartyBottleneck and block.se is not None for block in blocks)


def unswapped_model(base: str, attn: str, monkeypatch: pytest.MonkeyPatch) -> nn.Module:
    """:func:`gated_model` built by hooks without a gated tail: the surgery as it would be without the swap."""
    with monkeypatch.context() as patch:
        for block_type in (BasicBlock, Bottleneck):
            patch.setitem(registry._HOOKS, block_type, dataclasses.replace(registry._HOOKS[block_type], gated_tail=None))
        return gated_model(base, attn)


@pytest.mark.parametrize("attn", ["se", "cbam"])
@pytest.mark.parametrize("base", ["resnet18", "resnet26d"])
def test_swap_keeps_state_dict_isinstance_and_logits_of_the_unswapped_surgery(monkeypatch, base, attn):
    model, unswapped = gated_model(base, attn), unswapped_model(base, attn, monkeypatch)
    assert tail_blocks(model) and not tail_blocks(unswapped)
    assert all(isinstance(block, (BasicBlock, Bottleneck)) for block in tail_blocks(model))
    ours, theirs = model.state_dict(), unswapped.state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)
    x = torch.randn(2, 3, 64, 64)
    assert_close(logits(model, x), logits(unswapped, x))
    assert_attention_matters(model, x)


@pytest.mark.parametrize("attn", ["se", "cbam"])
def test_gated_tail_model_pickles_saves_and_deepcopies(counting, tmp_path, attn):
    model = gated_model("resnet26d", attn)
    x = torch.randn(2, 3, 64, 64)
    expected = logits(model, x)
    torch.save(model, tmp_path / "model.pt")
    copies = {
        "torch.load": torch.load(tmp_path / "model.pt", weights_only=False),
        "pickle": pickle.loads(pickle.dumps(model)),
        "deepcopy": copy.deepcopy(model),
    }
    for how, twin in copies.items():
        assert [type(b) for b in timm_blocks(twin)] == [type(b) for b in timm_blocks(model)], how
        counting.calls.clear()
        assert torch.equal(logits(twin, x), expected), how
        assert counting.calls[tail_op(attn)] == one_pass_tails(counting) == len(tail_blocks(model)), how


# --- 3. where the tail is not taken, timm's forward runs ----------------------------------------------


def in_train_mode(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.train()(x.clone())


def with_grad(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x.clone().requires_grad_()).detach()


def channels_last(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return logits(model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last))


def float64(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return logits(model.double(), x.double())


def without_kernels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with plain_route():
        return logits(model, x)


FALLBACKS = {f.__name__: f for f in (in_train_mode, with_grad, channels_last, float64, without_kernels)}


@pytest.mark.parametrize("attn", ["se", "cbam"])
@pytest.mark.parametrize("condition", FALLBACKS)
def test_tail_is_not_taken_where_it_would_not_be_exact(counting, condition, attn):
    run = FALLBACKS[condition]
    model = gated_model("resnet18", attn)
    x = torch.randn(2, 3, 64, 64)
    fused = logits(model, x)
    timms = run(reverted(model), x)
    counting.calls.clear()
    out = run(model, x)
    assert one_pass_tails(counting) == 0
    assert torch.equal(out, timms)  # the block ran timm's forward
    if condition != "in_train_mode":  # the same function as the tail computes, up to rounding
        assert_close(out.float(), fused, rtol=1e-4, atol=1e-4)
    assert_attention_matters(model.float(), x)


@pytest.mark.parametrize("attn", ["se", "cbam"])
def test_a_non_contiguous_shortcut_is_gated_added_and_rectified_in_torch(counting, attn):
    """A block without downsample fed a channel slice: its shortcut is a strided view the kernel cannot add."""
    block = gated_model("resnet18", attn).layer1[1]
    timms = reverted(block)
    x = torch.randn(2, 80, 16, 16)[:, 8:72]
    assert not x.is_contiguous()
    with torch.no_grad():
        out = block(x)
        expected = timms(x)
    assert one_pass_tails(counting) == 0
    assert_close(out, expected, rtol=1e-6, atol=1e-6)
    assert (out - x.relu()).abs().max() > 0.1


@pytest.mark.parametrize("watched", ["se", "act2"])
@pytest.mark.parametrize("attn", ["se", "cbam"])
def test_a_block_whose_attention_or_activation_is_hooked_calls_the_hooks_on_timms_forward(counting, attn, watched):
    model = gated_model("resnet18", attn)
    x = torch.randn(2, 3, 64, 64)
    fused = logits(model, x)
    bn_out, seen = [], []
    block = model.layer2[0]
    block.bn2.register_forward_hook(lambda m, args, out: bn_out.append(out.clone()))
    getattr(block, watched).register_forward_hook(lambda m, args, out: seen.append((args[0].clone(), out.clone())))
    counting.calls.clear()
    out = logits(model, x)
    assert len(seen) == 1
    # only the watched block falls back
    assert counting.calls[tail_op(attn)] == one_pass_tails(counting) == len(tail_blocks(model)) - 1
    assert_close(out, fused)
    seen_input, seen_output = seen[0]
    if watched == "se":  # the hook sees the attention's input un-gated, and its output gated
        assert torch.equal(seen_input, bn_out[0])
        assert (seen_output - seen_input).abs().max() > 0.1
    else:  # the activation sees the gated sum and returns its ReLU
        assert torch.equal(seen_output, seen_input.relu())


# --- 4. CBAM training on the kernels -------------------------------------------------------------------


def tied(shape: tuple[int, ...], ties: str) -> torch.Tensor:
    """An input with ties for the maxima: over positions (constant planes) or over channels (positions
    where every channel holds the same value, 0, so ``x * c`` ties there too)."""
    x = torch.randn(shape)
    if ties == "constant_planes":
        x[:, ::2] = 0.75
    elif ties == "zero_positions":
        x[..., ::2, :] = 0.0
    return x


TRAIN_CASES = {
    "2x17x1x1": ((2, 17, 1, 1), "none"),
    "3x64x7x7": ((3, 64, 7, 7), "none"),
    "2x17x13x11": ((2, 17, 13, 11), "none"),
    "2x17x13x11_constant_planes": ((2, 17, 13, 11), "constant_planes"),
    "3x64x7x7_constant_planes": ((3, 64, 7, 7), "constant_planes"),
    "2x17x13x11_zero_positions": ((2, 17, 13, 11), "zero_positions"),
    "2x64x7x7_zero_positions": ((2, 64, 7, 7), "zero_positions"),
}
BACKWARD_OPS = ("spatial_gate_grad", "channel_gate_grad", "cbam_input_grad")


# The C++ node (the default: ReLU MLP, sigmoid gates, plain conv and BatchNorm) calls the kernels from C++,
# so the counting proxy sees one call of it; KernelCbam (any other configuration, forced here) calls each
# forward kernel and each backward kernel through the proxy once.
TRAIN_ROUTES = {
    "cpp_node": {"cbam": 1},
    "python_node": dict.fromkeys(("channel_stats", "gated_channel_stats", "gate", *BACKWARD_OPS), 1),
}


@pytest.mark.parametrize("route", TRAIN_ROUTES)
@pytest.mark.parametrize("case", TRAIN_CASES)
def test_cbam_trains_on_the_kernels_with_the_plain_routes_gradients(counting, case, route):
    shape, ties = TRAIN_CASES[case]
    kernel_module = randomized_attention("cbam", shape[1]).train()
    plain_module, torch_module = copy.deepcopy(kernel_module), copy.deepcopy(kernel_module)
    if route == "python_node":
        kernel_module.kernel_arguments = lambda: None
    x, upstream = tied(shape, ties), torch.randn(shape)

    kernel = output_and_grads(kernel_module, kernel_module, x, upstream)
    assert counting.calls == TRAIN_ROUTES[route]
    with plain_route():
        plain = output_and_grads(plain_module, plain_module, x, upstream)
        # torch's own autograd of the paper's arithmetic (amax shares a max's gradient among ties)
        reference = output_and_grads(lambda t: gated_by_maps(torch_module, t), torch_module, x, upstream)
    assert len(kernel) == len(plain) == len(reference) == 2 + len(list(kernel_module.parameters()))
    for ours, theirs, torchs in zip(kernel, plain, reference):
        assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
        assert_close(ours, torchs, rtol=1e-4, atol=1e-5)
    assert (kernel[0] - x).abs().max() > 0.1, "the attention left its input unchanged: nothing was compared"

    bn, plain_bn = kernel_module.spatial.conv.bn, plain_module.spatial.conv.bn
    assert bn.num_batches_tracked.item() == plain_bn.num_batches_tracked.item() == 1
    assert bn.running_mean.abs().max() > 0  # moved from its initial 0
    assert_close(bn.running_mean, plain_bn.running_mean)
    assert_close(bn.running_var, plain_bn.running_var)


@pytest.mark.parametrize("route", TRAIN_ROUTES)
def test_cbam_training_on_one_spatial_value_refuses_as_batchnorm_does(counting, route):
    """Batch 1 of a 1x1 map gives the spatial BatchNorm one value per channel, whose variance is 0/0: torch
    refuses it in training, and so do the kernels' routes, leaving the running statistics finite."""
    kernel_module = randomized_attention("cbam", 17).train()
    plain_module = copy.deepcopy(kernel_module)
    if route == "python_node":
        kernel_module.kernel_arguments = lambda: None
    x = torch.randn(1, 17, 1, 1, requires_grad=True)
    with plain_route(), pytest.raises(ValueError, match="Expected more than 1 value per channel") as refusal:
        plain_module(x)
    with pytest.raises(ValueError) as kernels_refusal:
        kernel_module(x)
    assert str(kernels_refusal.value) == str(refusal.value)  # torch's words, its size printed as torch.Size
    assert counting.calls, "the kernels' route did not run"
    bn, plain_bn = kernel_module.spatial.conv.bn, plain_module.spatial.conv.bn
    assert torch.isfinite(bn.running_mean).all() and torch.isfinite(bn.running_var).all()
    for name, buffer in bn.named_buffers():
        assert torch.equal(buffer, plain_bn.get_buffer(name)), name


def test_kernel_cbam_is_what_cbam_trains_on_outside_the_cpp_node(ops, monkeypatch):
    applied = []
    original = KernelCbam.apply
    monkeypatch.setattr(KernelCbam, "apply", lambda *args: applied.append(args[0].shape) or original(*args))
    module = randomized_attention("cbam", 17).train()
    module.channel.act = nn.SiLU()  # the C++ node takes a ReLU MLP only
    module(torch.randn(2, 17, 7, 7, requires_grad=True)).sum().backward()
    assert applied == [(2, 17, 7, 7)]
    assert all(torch.isfinite(p.grad).all() for p in module.parameters())


@pytest.mark.parametrize("route", TRAIN_ROUTES)
def test_cbam_on_the_kernels_refuses_double_backward(ops, route):
    module = randomized_attention("cbam", 17).train()
    if route == "python_node":
        module.kernel_arguments = lambda: None
    x = torch.randn(2, 17, 7, 7, requires_grad=True)
    with pytest.raises(RuntimeError, match="once_differentiable|not twice differentiable"):
        (grad_x,) = torch.autograd.grad(module(x).square().sum(), x, create_graph=True)
        grad_x.sum().backward()


def test_resnet18_cbam_training_step_matches_the_plain_route(counting):
    assert_resnet18_training_step_matches_the_plain_route(
        counting, "cbam", node="cbam", loss_tolerance=dict(rtol=1e-5, atol=1e-6)
    )


# --- 5. the tracing tests compare traced graphs with the gated tail ------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18_se", "resnet18_cbam"])
def test_tracing_sweep_models_take_the_gated_tail_eagerly(counting, name):
    """tests/test_tracing.py compares FX, TorchScript, jit.trace, export and compile against eager
    no-grad logits of these models; here: those eager logits come from the gated tail."""
    model = sweep_model(name)
    assert len(tail_blocks(model)) == len(timm_blocks(model)) == 8
    logits(model, torch.randn(2, 3, 32, 32))
    assert counting.calls[tail_op(name.removeprefix("resnet18_"))] == one_pass_tails(counting) == 8
