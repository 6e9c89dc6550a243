"""``attnzoo convert``: a third-party checkpoint (e.g. the CBAM authors') -> attnzoo weights in timm's Hub format."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a third-party checkpoint (official CBAM, senet.pytorch, Coordinate Attention) to attnzoo weights",
        description="Convert a checkpoint of another code base into an attnzoo architecture: writes "
        "model.safetensors, config.json (timm Hub format) and README.md (provenance card) into --out. "
        "Pickled files are read with torch.load(weights_only=True), which refuses anything but tensors and plain "
        "containers. "
        "See docs/convert.md.")
    parser.add_argument("src_file", metavar="SRC_FILE",
                        help="the source checkpoint, e.g. RESNET50_CBAM_new_name_wrap.pth")
    parser.add_argument("--from", dest="source", required=True, metavar="SOURCE",
                        help="its code base: official-cbam, senet-pytorch or coord-attention, or a source a package "
                        "registers (entry point group attnzoo.convert_sources)")
    parser.add_argument("--arch", required=True, help="attnzoo architecture to convert into, e.g. resnet50_cbam")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write; must be new or empty (see --force)")
    parser.add_argument("--force", action="store_true",
                        help="replace model.safetensors, config.json and README.md in a non-empty --out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from attnzoo.convert import convert_checkpoint

    out = convert_checkpoint(args.source, args.arch, args.src_file, args.out, force=args.force)
    print(f"wrote {out}/model.safetensors, config.json and README.md: {args.arch} from {args.source} "
          f"checkpoint {args.src_file}")
    return 0
