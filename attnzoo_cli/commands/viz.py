"""``attnzoo viz``: figures of a model's feature maps and attention on Fashion-MNIST test images."""

from __future__ import annotations

import argparse

from attnzoo_cli.options import check_at_least, image_side

TEST_IMAGES = 10_000  # Fashion-MNIST's test split: one figure per image, so --images cannot exceed it


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive count")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "viz", help="plot feature maps, spatial attention and per-class channel gates as PNGs",
        description="Plot, for a few test images, the input, the first channels of chosen layers and each "
                    "stage's spatial attention overlaid on the image; and per stage the mean channel gate "
                    "per class (the SE paper's excitation plots).")
    parser.add_argument("model", help="attnzoo/timm model name, e.g. resnet18_cbam")
    parser.add_argument("--checkpoint", help="safetensors weights (e.g. runs/x/best.safetensors); "
                        "without it the model has random weights, as the figure titles say")
    parser.add_argument("--data", default="fashion-mnist", choices=("fashion-mnist",),
                        help="dataset: its test split")
    parser.add_argument("--images", type=_positive, default=8,
                        help=f"images to plot, one figure each, classes taken in turn (at most {TEST_IMAGES:,})")
    parser.add_argument("--gate-images", type=_positive, default=1000,
                        help="test images averaged in the per-class channel-gate plot")
    parser.add_argument("--layers", help="comma-separated module names whose feature maps to show "
                        "(default: every stage, e.g. layer1,...,layer4)")
    parser.add_argument("--channels", type=_positive, default=8,
                        help="feature-map channels shown per layer")
    parser.add_argument("--img-size", type=_positive, help="input side in pixels (default: the checkpoint's "
                        "run recipe.yaml, else 28)")
    parser.add_argument("--resize", choices=("pad", "bilinear"), help="how 28 px images reach --img-size "
                        "(default: the checkpoint's run recipe.yaml, else pad)")
    parser.add_argument("--out", default="out/viz", help="folder for the PNGs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from attnzoo.errors import UsageError
    from attnzoo.viz.report import fashion_mnist_model, run_input, write_report

    check_at_least(args, (("--images", "images", 1, TEST_IMAGES), image_side("--img-size", "img_size")))
    layers = args.layers.split(",") if args.layers else None
    if layers and not all(name.strip() for name in layers):
        raise UsageError(f"--layers {args.layers!r} has an empty name; give comma-separated module names, "
                         "e.g. layer1,layer2")
    model = fashion_mnist_model(args.model, args.checkpoint)
    trained_with = run_input(args.checkpoint)
    weights = args.checkpoint or "untrained (random weights)"
    paths = write_report(
        model, args.out, title=f"{args.model} - {weights}", images=args.images, gate_images=args.gate_images,
        layers=[name.strip() for name in layers] if layers else None, channels=args.channels,
        img_size=args.img_size or trained_with.get("img_size", 28),
        resize=args.resize or trained_with.get("resize", "pad"),
    )
    print("\n".join(str(p) for p in paths))
    return 0
