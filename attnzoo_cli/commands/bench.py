"""``attnzoo bench``: attention overhead as a ratio to the plain backbone, with timm's modules alongside."""

from __future__ import annotations

import argparse

from attnzoo_cli.options import check_at_least, image_side

MODE_HELP = "eager, compiled (torch.compile inductor), onnx (onnxruntime CPU), train (fwd+bwd+SGD), memory"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="time attention models against their plain backbone and timm's equivalents",
        description="Ratios of attnzoo models to their plain backbone (and timm's native attention) for "
        "inference and training; median of interleaved rounds.")
    parser.add_argument("models", nargs="+", metavar="MODEL", help="attnzoo models, e.g. resnet50_se resnet50_cbam")
    parser.add_argument("--modes", default="eager,compiled,onnx,train,memory",
                        help=f"comma-separated subset of: {MODE_HELP}")
    parser.add_argument("--infer-batch", type=int, default=8, help="images per inference call")
    parser.add_argument("--infer-size", type=int, default=224, help="inference image side in pixels")
    parser.add_argument("--train-batch", type=int, default=64, help="images per training step")
    parser.add_argument("--train-size", type=int, default=64, help="training image side in pixels")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; medians are reported")
    parser.add_argument("--iters", type=int, default=3, help="calls per model per round")
    parser.add_argument("--threads", default="default,1", metavar="LIST",
                        help="comma-separated torch and onnxruntime intra-op thread counts, each measured in "
                        "turn; 'default' is torch's own choice")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall-clock time, or process CPU time (steadier when other jobs share the cores; "
                        "use with --threads 1)")
    parser.add_argument("--profile", type=int, metavar="N", help="instead of timing, print the N most "
                        "expensive operators of each model (torch.profiler) for the first of --modes (eager or train) "
                        "at the first --threads setting")
    parser.add_argument("--log", metavar="PATH", help="also append the report to this file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from attnzoo.errors import AttnzooError
    from attnzoo.evaluate.bench import MODES, Setting, candidates, run_benchmark
    from attnzoo.outputs import prepare_output_file

    check_at_least(args, (("--infer-batch", "infer_batch", 1), image_side("--infer-size", "infer_size"),
                          ("--train-batch", "train_batch", 1), image_side("--train-size", "train_size"),
                          ("--rounds", "rounds", 1), ("--iters", "iters", 1), ("--profile", "profile", 1)))
    threads = thread_settings(args.threads)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise AttnzooError(f"unknown --modes {','.join(unknown)}; choose from {','.join(MODES)}")
    for name in args.models:
        candidates(name)  # fail on a bad name before minutes of timing
    setting = Setting(args.infer_batch, args.infer_size, args.train_batch, args.train_size, args.rounds,
                      args.iters, threads, args.clock)
    log = open(prepare_output_file(args.log, "--log"), "a") if args.log else None

    def report(text: str) -> None:
        print(text, flush=True)
        if log:
            print(text, file=log, flush=True)

    try:
        if args.profile:
            from attnzoo.evaluate.bench import environment, group_by_backbone, profile_ops, num_threads

            if modes[0] not in ("eager", "train"):
                raise AttnzooError(f"--profile works with --modes eager or train, not {modes[0]}")
            header = environment()
            with num_threads(threads[0]) as in_use:
                report(f"attnzoo bench --profile at {in_use} thread(s): {header}")
                for group in group_by_backbone(args.models).values():
                    report(profile_ops(group, modes[0], setting, args.profile))
        else:
            run_benchmark(args.models, modes, setting, report)
    finally:
        if log:
            log.close()
    return 0


def thread_settings(text: str) -> tuple[int | None, ...]:
    """``--threads`` as a tuple of thread counts (None for 'default'), in the order given."""
    from attnzoo.errors import UsageError
    from attnzoo.train.validation import MAX_THREADS

    settings = []
    for item in (t.strip() for t in text.split(",")):
        if item == "default":
            settings.append(None)
        elif item.isdigit() and int(item) > MAX_THREADS:
            raise UsageError(f"--threads {text}: must be at most {MAX_THREADS} threads per setting (got {item!r})")
        elif item.isdigit() and int(item) >= 1:
            settings.append(int(item))
        else:
            raise UsageError(f"--threads {text}: must be at least 1 thread per setting, or 'default' "
                             f"(got {item!r}); e.g. --threads default,1")
    return tuple(dict.fromkeys(settings))
