"""Run timm's own ``tests/test_models.py`` on attnzoo's registered names: ``python scripts/timm_model_tests.py``.

timm checks every model it ships with ``tests/test_models.py`` (forward, backward, pretrained-config
contract, TorchScript, features_only, forward_intermediates, FX, FX + TorchScript, pretrained loading).
This script fetches that file from the sdist of the installed timm version with pip (cached under
``~/.cache/attnzoo/timm-<version>-tests``), and runs it with ``timm_contract_plugin`` (next to this file),
which selects attnzoo's names and gives each exactly the exclusions the file applies to its base model.

    python scripts/timm_model_tests.py                     # every name: bases x attentions, cnn3 family
    python scripts/timm_model_tests.py --sample            # a subset covering every base family and attention
    python scripts/timm_model_tests.py --models 'resnet18_*' --log out/timm_tests/resnet18.txt

The log lists each case's outcome, the failures' first lines and ``passed/failed/skipped/total``; the exit
status is 1 when a case failed. ``GITHUB_ACTIONS`` is removed from the tests' environment so that the file
runs its full local set of cases wherever this runs.
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from unittest.mock import patch
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(REPO))

from attnzoo.errors import AttnzooError  # noqa: E402
from attnzoo.models.registry import INJECTED  # noqa: E402

# Every attention, on the cheapest backbones of each timm module whose blocks surgery fills (resnet;
# efficientnet: MobileNetV1/V2, EfficientNet; mobilenetv3), and the cnn3 family.
SAMPLE = (
    "resnet18_se",
    "resnet18_cbam_channel",
    "resnet18_simam",
    "resnet18_eca",
    "mobilenetv1_100_cbam_spatial",
    "mobilenetv2_100_cbam",
    "efficientnet_b0_mhsa",
    "mobilenetv3_small_100_coord",
    "cnn3_se",
)


class TimmTestsUnavailableError(AttnzooError, RuntimeError):
    """timm's test files for the installed version cannot be fetched or run."""


@dataclass(frozen=True)
class Case:
    """One collected case of test_models.py: which test, on which name, and how it ended."""

    nodeid: str
    test: str
    model_name: str
    outcome: str  # passed, failed, skipped or not run (its pytest process died first)
    seconds: float
    reason: str


def all_names() -> list[str]:
    """attnzoo's registered architectures: every backbone x attention, and the cnn3 family."""
    return sorted([*INJECTED, "cnn3"])


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "attnzoo"


def fetch_timm_tests(cache_dir: Path, timm_version: str) -> Path:
    """timm's ``tests/`` folder from the sdist of ``timm_version``, downloaded once with pip into ``cache_dir``."""
    root = cache_dir / f"timm-{timm_version}-tests"
    if (root / "tests" / "test_models.py").is_file():
        return root
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", f"timm=={timm_version}", "--no-deps",
               "--no-binary", ":all:", "--quiet", "--dest", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        sdists = sorted(Path(tmp).glob("timm-*.tar.gz"))
        if done.returncode != 0 or not sdists:
            why = (done.stderr.strip().splitlines() or ["no sdist downloaded"])[-1]
            raise TimmTestsUnavailableError(
                f"cannot fetch the timm {timm_version} sdist with pip ({why}); timm's model tests need PyPI: "
                f"check the network or pip's index settings, or place the sdist's tests/ in {root}"
            )
        staging = Path(tempfile.mkdtemp(dir=cache_dir if cache_dir.is_dir() else None))
        with tarfile.open(sdists[0]) as sdist:
            prefix = f"{sdists[0].name.removesuffix('.tar.gz')}/tests/"
            members = [m for m in sdist.getmembers() if m.name.startswith(prefix) and (m.isfile() or m.isdir())]
            for member in members:
                member.name = "tests/" + member.name[len(prefix):]
            sdist.extractall(staging, members=members, filter="data")
    if not (staging / "tests" / "test_models.py").is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise TimmTestsUnavailableError(f"the timm {timm_version} sdist has no tests/test_models.py")
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging.rename(root)  # complete or absent: a second run reuses it
    return root


@contextmanager
def stand_in_hub(names: list[str]) -> Iterator[dict[str, str]]:
    """A local Hub-compatible server with stand-in weights for each pretrained tag of ``names``.

    Yields the environment that points huggingface_hub (and timm) at it. Each stand-in has the architecture
    of the model its repo belongs to (a ``timm/<arch>.<tag>`` repo: timm's ``<arch>``, e.g. the backbone of
    a function-preserving tag; any other: the tagged attnzoo name), the tag's input channels and classes,
    and random values. The pretrained cases then check what they are about, that the tag's weights load
    with other ``in_chans``/``num_classes`` and into ``features_only`` models, without the Hub, which CI
    cannot reach.
    """
    import timm
    from huggingface_hub import HfApi, constants
    from safetensors.torch import save

    sys.path.insert(0, str(REPO / "tests"))
    from hub_server import HubServer

    # the local server speaks the plain LFS protocol, not Xet (the client reads this setting at import)
    with HubServer() as server, tempfile.TemporaryDirectory() as tmp, patch.object(constants, "HF_HUB_DISABLE_XET", True):
        api = HfApi(endpoint=server.url, token=server.token)
        files = {}
        for tagged in timm.list_models(names, pretrained=True):
            cfg = timm.models.get_pretrained_cfg(tagged)
            files.setdefault((cfg.hf_hub_id, cfg.hf_hub_filename or "model.safetensors"), (tagged, cfg))
        for (repo_id, filename), (tagged, cfg) in files.items():
            owner, _, repo_name = repo_id.partition("/")
            arch = repo_name.split(".")[0] if owner == "timm" else tagged.split(".")[0]
            model = timm.create_model(arch, in_chans=cfg.input_size[0], num_classes=cfg.num_classes)
            weights = io.BytesIO(save({k: v.contiguous() for k, v in model.state_dict().items()}))
            api.create_repo(repo_id, exist_ok=True)
            api.upload_file(path_or_fileobj=weights, path_in_repo=filename, repo_id=repo_id)
        yield server.client_env(Path(tmp) / "hf-home")


def run_timm_model_tests(
    names: list[str],
    cache_dir: Path | None = None,
    pytest_args: Sequence[str] = (),
    real_hub: bool = False,
    jobs: int = 1,
) -> list[Case]:
    """Run timm's test_models.py on ``names``; one :class:`Case` per collected case.

    The names are dealt round-robin to ``jobs`` pytest processes running side by side (one torch thread
    each when ``jobs`` > 1). Pretrained cases load stand-in weights from :func:`stand_in_hub` unless
    ``real_hub``. A case collected but never reported (its process died) is ``not run``.
    """
    timm_version = version("timm")
    tests_root = fetch_timm_tests(cache_dir or default_cache_dir(), timm_version)
    shards = [names[i::jobs] for i in range(min(jobs, len(names)))]
    with tempfile.TemporaryDirectory() as tmp, (nullcontext({}) if real_hub else stand_in_hub(names)) as hub_env:
        env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
        env.update(hub_env, PYTHONPATH=os.pathsep.join(filter(None, [str(SCRIPTS), str(REPO), env.get("PYTHONPATH")])))
        if len(shards) > 1:
            env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "pytest", "tests/test_models.py", "-p", "timm_contract_plugin", "-q",
               "-p", "no:cacheprovider", "--rootdir", str(tests_root), "-W", "ignore::pytest.PytestUnknownMarkWarning",
               *pytest_args]
        reports = [Path(tmp) / f"cases{i}.jsonl" for i in range(len(shards))]
        procs = [
            subprocess.Popen(cmd, cwd=tests_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**env, "ATTNZOO_TIMM_MODELS": ",".join(shard), "ATTNZOO_TIMM_REPORT": str(report)})
            for shard, report in zip(shards, reports)
        ]
        outputs = [proc.communicate()[0] for proc in procs]
        records = [json.loads(line) for report in reports if report.is_file()
                   for line in report.read_text(encoding="utf-8").splitlines()]
    for proc, output in zip(procs, outputs):
        if proc.returncode not in (0, 1) and not records:  # 1: some case failed; else pytest itself could not run
            tail = "\n".join(output.strip().splitlines()[-5:])
            raise TimmTestsUnavailableError(f"pytest could not run timm's test_models.py (exit {proc.returncode}):\n{tail}")
    return _cases(records)


def _cases(records: list[dict]) -> list[Case]:
    # A case reports when collected, then once per failing phase or passing call: the worst outcome wins.
    rank = {"collected": 0, "passed": 1, "skipped": 2, "failed": 3}
    by_id: dict[str, dict] = {}
    for rec in records:
        if rec["nodeid"] not in by_id or rank[rec["outcome"]] > rank[by_id[rec["nodeid"]]["outcome"]]:
            by_id[rec["nodeid"]] = rec
    return [
        Case(nodeid=r["nodeid"], test=r["nodeid"].split("::")[-1].split("[")[0], model_name=r["model_name"],
             outcome="not run" if r["outcome"] == "collected" else r["outcome"], seconds=r["seconds"],
             reason=r["reason"])
        for r in by_id.values()
    ]


def tally(cases: list[Case]) -> Counter:
    """passed / failed / skipped / not run / total counts."""
    counts = Counter(case.outcome for case in cases)
    counts["total"] = len(cases)
    return counts


def summary(cases: list[Case]) -> str:
    counts = tally(cases)
    not_run = f", not run {counts['not run']}" if counts["not run"] else ""
    return (f"passed {counts['passed']}, failed {counts['failed']}, skipped {counts['skipped']}{not_run}, "
            f"total {counts['total']}")


def _commit() -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "an unknown commit"


def format_log(cases: list[Case], names: list[str], selection: str, seconds: float, real_hub: bool) -> str:
    """The log: versions, selection, totals, per-test totals, failures, then every case."""
    import torch

    counts = tally(cases)
    head = [
        f"timm {version('timm')} tests/test_models.py (from its sdist) on attnzoo's registered names",
        f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}; python "
        f"{platform.python_version()}; {platform.machine()}, {os.cpu_count()} CPUs; wall {seconds / 60:.1f} min",
        f"command: python scripts/timm_model_tests.py {selection}".rstrip() + f"  (attnzoo at {_commit()})",
        f"names: {len(names)} ({', '.join(names)})",
        "pretrained cases: " + ("weights from the Hub" if real_hub else "stand-in weights (each tag's architecture, "
                                "random values) from a local Hub-compatible server, tests/hub_server.py"),
        f"RESULT: {summary(cases)}",
        "",
        "per test (passed/failed/skipped):",
    ]
    per_test: dict[str, Counter] = {}
    for case in cases:
        per_test.setdefault(case.test, Counter())[case.outcome] += 1
    head += [f"  {t}: {c['passed']}/{c['failed']}/{c['skipped']}" for t, c in sorted(per_test.items())]
    failed = [c for c in cases if c.outcome in ("failed", "not run")]
    head += ["", f"failures ({len(failed)}):"] + [f"  {c.nodeid}: {c.reason or c.outcome}" for c in failed]
    head += ["", "cases:"] + [f"  {c.outcome:7s} {c.seconds:8.2f}s  {c.nodeid}" + (f"  ({c.reason})" if c.outcome == "skipped" else "")
                              for c in sorted(cases, key=lambda c: c.nodeid)]
    return "\n".join(head) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--sample", action="store_true", help="only " + ", ".join(SAMPLE))
    which.add_argument("--models", nargs="+", metavar="PATTERN", help="attnzoo names matching these fnmatch patterns")
    parser.add_argument("--log", type=Path, help="where to write the log (default out/timm_tests/<full|sample|models>.txt)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="where the timm sdist's tests are kept")
    parser.add_argument("--jobs", type=int, default=1, help="pytest processes side by side, names dealt round-robin")
    parser.add_argument("--real-hub", action="store_true",
                        help="pretrained cases download the published weights instead of stand-ins from a local server")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest after --, e.g. -- -k forward")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: give at least 1")

    if args.sample:
        names, selection, label = list(SAMPLE), "--sample", "sample"
    elif args.models:
        names = [n for n in all_names() if any(fnmatch.fnmatch(n, p) for p in args.models)]
        selection, label = "--models " + " ".join(args.models), "models"
        if not names:
            print(f"error: no attnzoo name matches {' '.join(args.models)} (see `attnzoo list`)", file=sys.stderr)
            return 2
    else:
        names, selection, label = all_names(), "", "full"
    log = args.log or REPO / "out" / "timm_tests" / f"{label}.txt"
    start = time.monotonic()
    try:
        cases = run_timm_model_tests(names, args.cache_dir, args.pytest_args, args.real_hub, args.jobs)
    except AttnzooError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    options = [selection, *(["--real-hub"] if args.real_hub else []), *([f"--jobs {args.jobs}"] if args.jobs > 1 else [])]
    if args.pytest_args:
        options += ["--", *map(shlex.quote, args.pytest_args)]
    text = format_log(cases, names, " ".join(filter(None, options)), time.monotonic() - start, args.real_hub)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(text, encoding="utf-8")
    counts = tally(cases)
    print(f"{summary(cases)}; log: {log}")
    return 1 if counts["failed"] or counts["not run"] or not counts["total"] else 0


if __name__ == "__main__":
    sys.exit(main())
