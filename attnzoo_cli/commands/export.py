"""``attnzoo export``: a model (untrained, from a checkpoint or from the Hub) as an ONNX graph."""

from __future__ import annotations

import argparse

from attnzoo_cli.options import check_at_least, image_side


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a model to ONNX and check it against PyTorch with onnxruntime",
        description="Export a model to ONNX (dynamic batch) and check onnxruntime's logits against PyTorch's.")
    parser.add_argument("model", help="timm/attnzoo model name (with a pretrained tag for timm weights) or "
                        "hf-hub:org/repo")
    parser.add_argument("--onnx", required=True, metavar="PATH", help="where to write the .onnx file")
    parser.add_argument("--checkpoint", help="safetensors file or hf-hub:org/repo holding the weights")
    parser.add_argument("--num-classes", type=int, help="classifier classes (without a checkpoint)")
    parser.add_argument("--in-chans", type=int, help="input channels (without a checkpoint)")
    parser.add_argument("--img-size", type=int, help="input side in pixels (default, as for attnzoo eval: the "
                        "run's, for a checkpoint in a run folder; else the model's pretrained config)")
    parser.add_argument("--dynamo", action="store_true", help="use the torch.export-based exporter (slower)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest accepted |onnxruntime - PyTorch| logit difference")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from attnzoo.evaluate.evaluate import input_size_of, run_img_size
    from attnzoo.export import ExportError, check_onnx, export_onnx
    from attnzoo.loading import load_eval_model

    check_at_least(args, (("--num-classes", "num_classes", 1), ("--in-chans", "in_chans", 1),
                          image_side("--img-size", "img_size"), ("--tolerance", "tolerance", 0)))
    model = load_eval_model(args.model, args.checkpoint, num_classes=args.num_classes, in_chans=args.in_chans)
    input_size = input_size_of(model, args.img_size or run_img_size(args.checkpoint))  # as `attnzoo eval`
    path = export_onnx(model, args.onnx, input_size=input_size, dynamo=args.dynamo)
    check = check_onnx(model, path, input_size=input_size)
    print(f"wrote {path} (input {'x'.join(map(str, input_size))}, dynamic batch); "
          f"onnxruntime vs PyTorch max |logit diff| = {check.max_abs_diff:.2e}")
    if check.max_abs_diff > args.tolerance:
        raise ExportError(f"onnxruntime's logits differ from PyTorch's by {check.max_abs_diff:.2e} > "
                          f"--tolerance {args.tolerance:g}; report the model name, or retry with --dynamo")
    return 0
