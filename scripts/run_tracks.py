"""Run the leaderboard's Fashion-MNIST tracks one run after another, resuming where a previous call stopped.

Usage: ``python scripts/run_tracks.py [--only short_resnet18,short_cnn3,finetune] [--dry-run]``

Each run is ``python -m attnzoo train <recipe> --seed S --set name=<recipe>_s<S>``, writing
``results/runs/<track>/<name>/`` (the recipes' ``output``). A run whose summary says complete is skipped; one
with a training state is continued exactly with ``--resume``. The order interleaves tracks by seed, so an
interrupted queue leaves every track with its first seeds. Fine-tuning runs load the base run's weights
through the Hub: the script serves them from the loopback Hub of ``tests/hub_server.py`` (published with
``attnzoo push``) and points ``HF_ENDPOINT`` at it, with an empty Hugging Face cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACKS = ROOT / "recipes" / "fashion_mnist" / "tracks"
BASE_REPO = "attnzoo-evidence/resnet18-fmnist-base"
VARIANTS = {
    "short_resnet18": ["resnet18", "resnet18_se", "resnet18_cbam", "resnet18_se_identity", "resnet18_cbam_identity"],
    "short_cnn3": ["cnn3", "cnn3_se", "cnn3_cbam"],
    "finetune": ["plain", "se_preserve", "cbam_preserve", "se_inject", "cbam_inject"],
}
SEEDS = {"short_resnet18": range(5), "short_cnn3": range(5), "finetune": range(3)}


def queue(tracks: list[str]) -> list[tuple[str, str, int | None]]:
    """(track, recipe stem, seed) in run order: the fine-tuning base first, then seed by seed."""
    order: list[tuple[str, str, int | None]] = [("finetune", "base", None)] if "finetune" in tracks else []
    for seed in range(max(len(SEEDS[t]) for t in tracks)):
        order += [(t, stem, seed) for t in tracks if seed in SEEDS[t] for stem in VARIANTS[t]]
    return order


def run_dir(track: str, name: str) -> Path:
    return ROOT / "results" / "runs" / track / name


def is_complete(folder: Path) -> bool:
    try:
        return json.loads((folder / "summary.json").read_text()).get("status") == "complete"
    except (OSError, ValueError):
        return False


def train(track: str, stem: str, seed: int | None, env: dict[str, str]) -> None:
    name = stem if seed is None else f"{stem}_s{seed}"
    folder = run_dir(track, name)
    if is_complete(folder):
        print(f"skip {track}/{name}: complete", flush=True)
        return
    cmd = [sys.executable, "-m", "attnzoo", "train", str((TRACKS / track / f"{stem}.yaml").relative_to(ROOT)),
           "--set", f"name={name}"]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    if (folder / "last.state.safetensors").exists():
        cmd += ["--resume", str((folder / "last.safetensors").relative_to(ROOT))]
    print("run", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


class LoopbackHub:
    """The base run's weights published on a local Hub-compatible server for the fine-tuning runs."""

    def __init__(self) -> None:
        sys.path.insert(0, str(ROOT / "tests"))
        from hub_server import HubServer, client_env

        self.server = HubServer().start()
        self.home = tempfile.mkdtemp(prefix="run-tracks-hf-")
        self.env = {**os.environ, **client_env(self.server.url, self.server.token, Path(self.home))}
        subprocess.run([sys.executable, "-m", "attnzoo", "push", str(run_dir("finetune", "base")),
                        "--repo", BASE_REPO], cwd=ROOT, env=self.env, check=True)

    def close(self) -> None:
        self.server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(VARIANTS), help="comma-separated tracks (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="print the queue and exit")
    args = parser.parse_args()
    tracks = [t for t in VARIANTS if t in args.only.split(",")]
    order = queue(tracks)
    if args.dry_run:
        print("\n".join(f"{t}/{s}" + ("" if seed is None else f"_s{seed}") for t, s, seed in order))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    hub = None
    try:
        for track, stem, seed in order:
            if track == "finetune" and stem != "base" and hub is None:
                hub = LoopbackHub()
                env = {**hub.env, "OMP_NUM_THREADS": "1"}
            train(track, stem, seed, env)
    finally:
        if hub is not None:
            hub.close()


if __name__ == "__main__":
    main()
