"""The README, copied in order by a newcomer: every ```sh and ```python block runs, as written, in a fresh
clone; each command exits 0 and no committed file changes.

What stands in for the newcomer's machine, and nothing else differs from the README:

- the clone's ``.venv`` is a link to this interpreter's environment (what ``scripts/setup.sh`` would build);
- ``make demo`` runs the README's documented short demo, ``.venv/bin/attnzoo demo --max-steps 20``, and ``make test``
  is this suite itself (both also re-run the set-up, which the link replaces);
- the Hub is the loopback server of ``tests/hub_server.py``, reached through ``HF_ENDPOINT`` and ``HF_TOKEN``
  in the environment; it holds a randomly initialised ``timm/resnet50.a1_in1k`` for the examples that
  download timm's weights;
- ``PYTHONPATH`` names the clone, so its code runs even where the environment's editable install points at
  another checkout;
- ``OMP_NUM_THREADS=1``: one thread per process, as in the rest of the suite, so that a busy machine slows
  the commands down no more than their CPU time (threads spinning on shared cores cost several times that).

It needs the real Fashion-MNIST (``scripts/setup.sh`` installs it) and takes minutes, not seconds: the
per-command times are printed (``pytest -s``). A command that would take longer belongs shortened in the
README, through its documented options, not here.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnzoo.data.fashion_mnist import FASHION_MNIST_ROOT
from hub_fixtures import hub, hub_server  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[1]
SETUP_STAND_INS = {"make demo": ".venv/bin/attnzoo demo --max-steps 20", "make test": None}  # as the Makefile calls it
COMMAND_TIMEOUT_S = 900  # catches a hung command; the suite's budget is the real limit


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every ```sh and ```python block, in the README's order."""
    return re.findall(r"^```(sh|python)\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def shell_commands(body: str) -> list[str]:
    """The lines of a ```sh block that do something (comments stay on their line: the shell drops them)."""
    return [line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def stand_in(command: str) -> str | None:
    """``command``, or what replaces a set-up command on a machine that is already set up."""
    for setup, replacement in SETUP_STAND_INS.items():
        if command.split("#")[0].strip() == setup:
            return replacement
    return command


def has_fashion_mnist() -> bool:
    root = Path(os.environ.get("ATTNZOO_FASHION_MNIST", FASHION_MNIST_ROOT))
    return any(root.glob("t10k-images-idx3-ubyte*"))


def serve_timm_resnet50(hub) -> None:
    """Put a randomly initialised resnet50 where timm looks for its default weights, ``timm/resnet50.a1_in1k``."""
    import timm
    from huggingface_hub import HfApi

    folder = Path(hub.hf_home).parent / "resnet50.a1_in1k"
    timm.models.save_for_hf(timm.create_model("resnet50"), str(folder), safe_serialization=True)
    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo("timm/resnet50.a1_in1k")
    api.upload_folder(repo_id="timm/resnet50.a1_in1k", folder_path=str(folder))


def clone_with_environment(tmp_path: Path) -> Path:
    """A git clone of this repository with this interpreter's environment linked in as ``.venv``."""
    clone = tmp_path / "attnzoo"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    venv = Path(sys.prefix)
    (clone / ".venv").symlink_to(venv, target_is_directory=True)
    return clone


def children_cpu_seconds() -> float:
    """CPU time of every finished child process so far: what a command costs, however busy the machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_logged(argv: list[str], clone: Path, env: dict[str, str], label: str, times: list) -> None:
    """Run one README command in the clone; fail with its output's tail when it does not exit 0."""
    tic, cpu_tic = time.perf_counter(), children_cpu_seconds()
    result = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    times.append((time.perf_counter() - tic, children_cpu_seconds() - cpu_tic, label))
    output = (result.stdout + result.stderr)[-3000:]
    assert result.returncode == 0, f"`{label}` exited {result.returncode}:\n{output}"
    assert "Traceback" not in output, f"`{label}` printed a traceback:\n{output}"


def print_times(times: list[tuple[float, float, str]]) -> None:
    print(f"\nREADME commands on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    print("wall s   CPU s  command")
    for wall, cpu, label in times:
        print(f"{wall:6.1f}  {cpu:6.1f}  {label}")
    print(f"{sum(t[0] for t in times):6.1f}  {sum(t[1] for t in times):6.1f}  in all")


@pytest.mark.skipif(not (Path(sys.prefix) / "bin" / "activate").is_file(), reason="needs a virtual environment")
@pytest.mark.skipif(not has_fashion_mnist(), reason="needs Fashion-MNIST (scripts/setup.sh installs it)")
def test_every_readme_command_runs_as_written_in_a_fresh_clone(hub, tmp_path, capsys):
    serve_timm_resnet50(hub)
    clone = clone_with_environment(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env |= hub.client_env(hub.hf_home) | {"PYTHONPATH": str(clone), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    prelude: list[str] = []  # lines that set up the shell (`. .venv/bin/activate`) hold for every later line
    times: list[tuple[float, float, str]] = []
    blocks = readme_blocks((clone / "README.md").read_text(encoding="utf-8"))
    assert [lang for lang, _ in blocks].count("sh") >= 5

    try:
        for lang, body in blocks:
            if lang == "python":
                run_logged([sys.executable, "-c", body], clone, env, body.splitlines()[0] + " ...", times)
                continue
            for line in shell_commands(body):
                command = stand_in(line)
                if command is None:
                    continue
                if command.startswith((". ", "source ")):
                    prelude.append(command)
                run_logged(["bash", "-c", "\n".join(["set -e", *prelude, command])], clone, env, command, times)
    finally:
        with capsys.disabled():
            print_times(times)

    assert (clone / "runs/demo/cnn3_cbam/last.safetensors").is_file()
    assert (clone / "out/cnn3_cbam.onnx").stat().st_size > 100_000
    assert (clone / "out/viz/excitation.png").is_file()
    pushed = {path for repo, _, path, _ in hub.uploaded_files() if repo == "myorg/cnn3_cbam.fmnist"}
    assert {"model.safetensors", "config.json", "README.md"} <= pushed
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True)
    assert status.stdout == "", f"the README's commands changed committed files:\n{status.stdout}"

