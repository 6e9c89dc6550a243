"""``attnzoo demo``: the main job: a backbone's plain, SE and CBAM variants side by side."""

from __future__ import annotations

import argparse

import timm

from attnzoo.evaluate.flops import count_macs
from attnzoo.models import check_model_name


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="params and GMACs of a backbone's plain/SE/CBAM variants")
    parser.add_argument("backbone", nargs="?", default="resnet50", help="e.g. resnet50, mobilenetv2_100")
    parser.add_argument("--img-size", type=int, default=224)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(f"{'model':<28} {'params (M)':>10} {'GMACs':>8}   at {args.img_size}x{args.img_size}")
    for name in (args.backbone, f"{args.backbone}_se", f"{args.backbone}_cbam"):
        check_model_name(name)
        model = timm.create_model(name)
        macs = count_macs(model, (3, args.img_size, args.img_size))
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name:<28} {params:>10.2f} {macs.gmacs:>8.3f}")
    print("GMACs are multiply-adds (what the SE/CBAM papers and timm call GFLOPs), pooling and gating included.")
    return 0
