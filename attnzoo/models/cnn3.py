"""cnn3: the small three-block CNN that attention tutorials start from.

Three conv3x3-BN-ReLU-[attention]-maxpool blocks (32, 64, 128 channels), then FC 512, dropout 0.5 and the
classifier. The attention slot (``attn``) is filled through the same surgery registry as timm's blocks,
with a hook registered here the way a third party would register one.
"""

# No `from __future__ import annotations`: FX copies forward()'s annotations into the code it generates,
# and TorchScript cannot read them as strings (timm's FX + TorchScript test).

import torch
from timm.models import build_model_with_cfg, checkpoint_seq, resolve_pretrained_cfg
from torch import nn

from attnzoo.models.pretrained import local_weights_cfg
from attnzoo.surgery import SurgeryHook, register_surgery
from attnzoo.surgery.registry import scale_

CNN3_WIDTHS = (32, 64, 128)
CNN3_HIDDEN = 512


class ConvBlock(nn.Module):
    """conv3x3 - BN - ReLU - attention slot - 2x2 max-pool."""

    def __init__(self, in_chs: int, out_chs: int, device=None, dtype=None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size=3, padding=1, bias=False, device=device, dtype=dtype)
        self.bn = nn.BatchNorm2d(out_chs, device=device, dtype=dtype)
        self.act = nn.ReLU(inplace=True)
        self.attn: nn.Module = nn.Identity()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.attn(self.act(self.bn(self.conv(x)))))


def _compensate_bn(block: ConvBlock, gain: float) -> None:
    # ReLU is positively homogeneous, so scaling the BN output scales the attention input.
    scale_(block.bn.weight, block.bn.bias, by=1 / gain)


register_surgery(
    ConvBlock,
    SurgeryHook(
        channels=lambda block: block.bn.num_features,
        compensate=_compensate_bn,
        slot="attn",
        slot_input_is_temporary=True,
    ),
)


class Cnn3(nn.Module):
    """The three-block CNN with timm's model interface (features, head, reset_classifier).

    The head flattens the last feature map, so ``img_size`` (an int or timm's ``(H, W)``) fixes the input.
    Its flatten plays the part of timm's global pool: ``global_pool=""`` (with no classifier) returns the
    last feature map, as timm's models do.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int | tuple[int, int] = 28,
        drop_rate: float = 0.5,
        global_pool: str = "flatten",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        dd = dict(device=device, dtype=dtype)
        chans = (in_chans, *CNN3_WIDTHS)
        self.stages = nn.Sequential(*(ConvBlock(chans[i], chans[i + 1], **dd) for i in range(len(CNN3_WIDTHS))))
        self.feature_info = [
            dict(num_chs=c, reduction=2 ** (i + 1), module=f"stages.{i}") for i, c in enumerate(CNN3_WIDTHS)
        ]
        height, width = (img_size, img_size) if isinstance(img_size, int) else img_size
        reduction = 2 ** len(CNN3_WIDTHS)
        self.fc1 = nn.Linear(CNN3_WIDTHS[-1] * (height // reduction) * (width // reduction), CNN3_HIDDEN, **dd)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(drop_rate)
        self.num_features = CNN3_WIDTHS[-1]  # channels of forward_features, as timm defines it
        self.head_hidden_size = CNN3_HIDDEN  # width of forward_head(pre_logits=True)
        self.reset_classifier(num_classes, global_pool)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Parameter groups for timm's layer-wise learning-rate decay: one per conv block, the head last."""
        return dict(blocks=r"^stages\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each conv block's activations in the backward pass instead of storing them."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self, name_only: bool = False) -> str | nn.Module:
        return "fc" if name_only else self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier on the model's device, dtype and mode; ``global_pool=""`` also drops the flatten + FC 512."""
        if global_pool is not None:
            if global_pool not in ("flatten", ""):
                raise ValueError(f"cnn3 global_pool={global_pool!r}: use 'flatten' (its head) or '' (none)")
            if num_classes and not global_pool:
                raise ValueError("cnn3 global_pool='' returns the feature map: it needs num_classes=0")
            self.global_pool = global_pool
        self.num_classes = num_classes
        weight = self.fc1.weight
        self.fc = (nn.Linear(CNN3_HIDDEN, num_classes, device=weight.device, dtype=weight.dtype)
                   if num_classes else nn.Identity()).train(self.training)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.stages, x)
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if not self.global_pool:
            return x
        x = self.drop(self.act(self.fc1(x.flatten(1))))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_cnn3(variant: str, pretrained: bool = False, **kwargs) -> Cnn3:
    """timm-style builder (pretrained cfg, features_only) for the plain cnn3.

    Hub weights download through attnzoo's client, as for every attnzoo name (fast one-line errors).
    """
    if pretrained:
        cfg = resolve_pretrained_cfg(variant, kwargs.pop("pretrained_cfg", None),
                                     kwargs.pop("pretrained_cfg_overlay", None))
        kwargs["pretrained_cfg"] = local_weights_cfg(cfg.to_dict(), kwargs.get("cache_dir"))
    return build_model_with_cfg(
        Cnn3, variant, pretrained, feature_cfg=dict(flatten_sequential=True, out_indices=(0, 1, 2)), **kwargs
    )
