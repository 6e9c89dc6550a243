"""Process-group set-up for ``torchrun``: one process per device, gloo on CPU, NCCL on CUDA."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from attnzoo.errors import UsageError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits; ``world_size == 1`` means no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun``'s environment describes (or run alone without one).

    ``device`` is ``auto`` (this process's CUDA device if there is one, else CPU), ``cpu`` or ``cuda``.
    """
    world_size, rank, local_rank = _torchrun_env()
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        dev = torch.device(device if ":" in device else f"cuda:{local_rank}")
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world_size, local_rank, dev)


def _torchrun_env() -> tuple[int, int, int]:
    """WORLD_SIZE, RANK and LOCAL_RANK as ``torchrun`` sets them, checked, so that a stray or mistyped
    variable in a shell is a one-line error instead of a failed rendezvous."""
    names = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}
    raw = {name: os.environ.get(name, default).strip() for name, default in names.items()}
    bad = [name for name, text in raw.items() if not text.isdigit()]
    world_size = int(raw["WORLD_SIZE"]) if "WORLD_SIZE" not in bad else 0
    if not bad and world_size < 1:
        bad = ["WORLD_SIZE"]
    if not bad and not int(raw["RANK"]) < world_size:
        bad = ["RANK"]
    if not bad and world_size > 1:
        bad = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ][:1]
    if bad:
        shown = f"{bad[0]}={os.environ[bad[0]]!r}" if bad[0] in os.environ else f"{bad[0]} (unset)"
        raise UsageError(f"environment variable {shown} does not describe a torchrun "
                         "process (WORLD_SIZE >= 1, 0 <= RANK < WORLD_SIZE, MASTER_ADDR and MASTER_PORT set); "
                         "start with torchrun, or unset WORLD_SIZE, RANK and LOCAL_RANK")
    return world_size, int(raw["RANK"]), int(raw["LOCAL_RANK"])


def default_threads(info: DistInfo) -> int | None:
    """Intra-op threads for a CPU process whose recipe leaves ``threads`` unset: an equal share of the
    cores this process may use among the processes ``torchrun`` started on this machine, so that N processes
    do not each spread over every core and wait on each other. ``None`` (torch's own choice, which honours
    ``OMP_NUM_THREADS``) for a process alone or on a GPU."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if local <= 1 or info.device.type != "cpu":
        return None
    return max(1, len(os.sched_getaffinity(0)) // local)


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sum of ``values`` over all processes (the values themselves when alone)."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
