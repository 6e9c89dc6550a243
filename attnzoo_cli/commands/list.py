"""``attnzoo list``: registered models and attention types."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "list", help="list attnzoo models (timm names) and attention types",
        description="Print the model names attnzoo registers in timm's registry (what timm.create_model "
        "accepts after `import attnzoo`), optionally filtered, or the attention types that inject() takes.")
    parser.add_argument("pattern", nargs="?", default="*", help="wildcard filter, e.g. 'resnet50_*'")
    parser.add_argument("--pretrained", action="store_true", help="only names with pretrained weights")
    parser.add_argument("--attentions", action="store_true", help="list attention types instead")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import timm

    from attnzoo.attention import list_attentions
    from attnzoo.models.registry import INJECTED

    if args.attentions:
        print("\n".join(list_attentions()))
        return 0
    ours = {"cnn3", *INJECTED}
    names = timm.list_pretrained(args.pattern) if args.pretrained else timm.list_models(args.pattern)
    print("\n".join(n for n in names if n.split(".")[0] in ours))
    return 0
