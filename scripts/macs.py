"""Print the MAC counts that docs/evaluation.md and docs/training.md quote, so each figure has a log.

Usage: ``python scripts/macs.py > results/cost/macs.txt``. Counts are per image, eval mode, under
``attnzoo.flops.MAC_CONVENTION``; nothing is timed, so the output does not depend on the machine.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from attnzoo.flops import MAC_CONVENTION, count_macs  # noqa: E402
from attnzoo.models import build_model  # noqa: E402


# ResNet-50 at 224 px: (block output channels, feature map side, blocks) per stage; reduction 16.
RESNET50_STAGES = [(256, 56, 3), (512, 28, 4), (1024, 14, 6), (2048, 7, 3)]


def learned_layer_macs(attn: str | None) -> int:
    """MACs of the attention's learned layers only, as the papers count them: SE's two FC layers
    (2·C·rd); CBAM's shared MLP, run on the avg- and the max-pooled vector (2·2·C·rd), and its 7x7 conv
    from 2 maps to 1 (2·49·H·W)."""
    per_block = {None: lambda c, s: 0, "se": lambda c, s: 2 * c * (c // 16),
                 "cbam": lambda c, s: 4 * c * (c // 16) + 2 * 49 * s * s}[attn]
    return sum(n * per_block(c, s) for c, s, n in RESNET50_STAGES)


def main() -> None:
    print("$ python scripts/macs.py > results/cost/macs.txt")
    print(MAC_CONVENTION + ", per image, eval mode.")
    print()
    print("ResNet-50 at 224 px (3 channels, 1000 classes)")
    print(f"  {'model':<16}{'GMACs':>12}{'attention MMACs':>18}{'of which learned layers':>26}")
    for attn in (None, "se", "cbam"):
        name = f"resnet50_{attn}" if attn else "resnet50"
        model = build_model(name)
        count = count_macs(model, (3, 224, 224))
        print(f"  {name:<16}{count.total / 1e9:>12.6f}{count.attention(model) / 1e6:>18.6f}"
              f"{learned_layer_macs(attn) / 1e6:>26.6f}")
    print()
    print("resnet18_cbam for Fashion-MNIST (1 channel, 10 classes)")
    small = count_macs(build_model("resnet18_cbam", num_classes=10, in_chans=1, small_input=True), (1, 28, 28))
    standard = count_macs(build_model("resnet18_cbam", num_classes=10, in_chans=1), (1, 32, 32))
    print(f"  small-input stem (3x3 stride 1, no max-pool), 28 px: {small.total / 1e6:.1f} M MACs")
    print(f"  timm's standard stem (7x7/2 + max-pool), 32 px:       {standard.total / 1e6:.1f} M MACs")
    print(f"  ratio: {small.total / standard.total:.1f}x")


if __name__ == "__main__":
    main()
