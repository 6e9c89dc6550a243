"""The training loop, assembled from timm's parts: optimizer and scheduler factories, EMA, losses, Mixup.

One entry point, :func:`train`, serves a single process and every process of a ``torchrun`` job (DDP).
Only rank 0 writes the run folder. State is saved at epoch ends and every ``checkpoint_every`` steps,
and a run resumed from it reproduces the uninterrupted run's weights bit for bit on CPU.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import AverageMeter, ModelEmaV3, accuracy, distribute_bn
from torch import nn
from tqdm import tqdm

from attnzoo.data import DataBundle, build_data
from attnzoo.errors import AttnzooError, CheckpointError, RecipeError, RunFolderError
from attnzoo.loading import build_model, read_state_dict
from attnzoo.models import load_state_dict_strict, model_config, read_weights, save_weights
from attnzoo.train import checkpoint, commit, run_folder
from attnzoo.train.distributed import DistInfo, all_reduce_sum, barrier, default_threads, init_distributed, shutdown
from attnzoo.train.recipe import Recipe, recipe_to_dict

# Changing these between a run and its resume would break exactness or the schedule (``epochs`` sizes the
# lr schedule), so resuming checks them.
_RESUME_INVARIANT = ("model", "data", "aug", "optim", "sched", "ema", "mixup", "batch_size", "seed", "amp",
                     "label_smoothing", "epochs")


def _differences(key: str, was: object, now: object) -> list[tuple[str, object, object]]:
    """(dotted field, saved value, current value) for each leaf that differs, so an error names
    ``sched.warmup_epochs`` rather than printing the whole section."""
    if isinstance(was, dict) and isinstance(now, dict):
        keys = sorted(set(was) | set(now), key=str)
        return [d for k in keys for d in _differences(f"{key}.{k}", was.get(k), now.get(k))]
    return [] if was == now else [(key, was, now)]


class NonFiniteLossError(AttnzooError, FloatingPointError):
    """The loss became NaN or infinite; the run stopped without overwriting its last good checkpoint."""


class TrainingInterrupted(AttnzooError):
    """SIGINT (Ctrl-C) stopped the run after saving its state, so ``--resume`` continues it exactly."""


@dataclass
class Progress:
    """Where the run is and what it has measured; saved in the state file as JSON."""

    epoch: int = 0  # epoch in progress (0-based)
    step_in_epoch: int = 0  # optimizer steps finished in that epoch
    global_step: int = 0
    best_top1: float = -1.0
    train_time_s: float = 0.0
    cpu_time_s: float = 0.0  # this process's CPU time; with threads=1, what a dedicated core would take
    history: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)  # end-of-run evaluations (the test split)
    meters: dict[str, float] = field(default_factory=lambda: {"loss": 0.0, "correct": 0.0, "count": 0.0})


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _classifier_prefix(model: nn.Module) -> str | None:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    return next((name for name, m in model.named_modules() if m is head), None)


def _load_init(model: nn.Module, init: str) -> None:
    """Start from weights in a file or Hub repo (``hf-hub:org/name[@revision]``, safetensors only); a
    classifier of another size is left freshly initialised."""
    state_dict = read_state_dict(init)
    own = model.state_dict()
    head = _classifier_prefix(model)
    if head:
        for key in [k for k in state_dict if k.startswith(head + ".") and k in own]:
            if state_dict[key].shape != own[key].shape:
                state_dict[key] = own[key]
    load_state_dict_strict(model, state_dict, init)


def create_model(recipe: Recipe, data: DataBundle) -> nn.Module:
    """The recipe's model, sized for the data, with its starting weights."""
    m = recipe.model
    if m.num_classes is not None and m.num_classes < data.num_classes:
        raise RecipeError(f"recipe field model.num_classes: {m.num_classes} is fewer than the {data.num_classes} "
                          f"classes of {recipe.data.dataset}; remove it or set at least {data.num_classes}")
    model = build_model(
        m.name, num_classes=m.num_classes or data.num_classes, in_chans=m.in_chans or data.in_chans,
        pretrained=m.pretrained, attention=m.attention, stages=m.stages, preserve=m.preserve,
        attn_kwargs=m.attn_kwargs or None, small_input=m.small_input,
        **({"drop_rate": m.drop_rate} if m.drop_rate else {}),
    )
    if m.init:
        _load_init(model, m.init)
    return model


def _wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """``model`` under DDP with its gradients living in DDP's buckets from the first step on.

    Fresh gradients take the strides autograd picks, which for 1x1 kernels under channels_last can differ
    from the bucket's (every rank then warns "Grad strides do not match bucket view strides" and pays a
    strided copy per step). Gradients that exist before DDP is built become views of its buckets, and
    backward accumulates into them in place as long as the optimizer zeroes instead of freeing them.
    """
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)


# Warm-up takes at most this share of the run, so a run shortened with --set epochs=1 still decays.
MAX_WARMUP_SHARE = 0.2


def _create_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
    s = recipe.sched
    if s.name == "none":
        return None
    warmup_epochs = min(s.warmup_epochs, MAX_WARMUP_SHARE * recipe.epochs)
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=s.name, num_epochs=recipe.epochs, decay_epochs=s.decay_epochs,
        decay_milestones=s.decay_milestones, cooldown_epochs=s.cooldown_epochs, patience_epochs=s.patience_epochs,
        decay_rate=s.decay_rate, min_lr=s.min_lr, warmup_lr=s.warmup_lr, warmup_epochs=warmup_epochs,
        plateau_mode="max", step_on_epochs=not s.per_step or s.name == "plateau",
        updates_per_epoch=steps_per_epoch,
    )
    return scheduler


def _train_loss(recipe: Recipe) -> nn.Module:
    if recipe.mixup.mixup_alpha > 0 or recipe.mixup.cutmix_alpha > 0:
        return SoftTargetCrossEntropy()
    if recipe.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=recipe.label_smoothing)
    return nn.CrossEntropyLoss()


def _mixup(recipe: Recipe, num_classes: int) -> Mixup | None:
    mx = recipe.mixup
    if mx.mixup_alpha <= 0 and mx.cutmix_alpha <= 0:
        return None
    return Mixup(mixup_alpha=mx.mixup_alpha, cutmix_alpha=mx.cutmix_alpha, prob=mx.prob, switch_prob=mx.switch_prob,
                 mode=mx.mode, label_smoothing=recipe.label_smoothing, num_classes=num_classes)


def _autocast(recipe: Recipe, device: torch.device) -> contextlib.AbstractContextManager:
    if recipe.amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if recipe.amp == "bf16" else torch.float16)


@torch.no_grad()
def evaluate(model: nn.Module, data: DataBundle, recipe: Recipe, info: DistInfo,
             split: str = "val") -> dict[str, float]:
    """Loss, top-1 and top-5 (%) over the whole ``split`` ("val" or "test"), summed across processes; keys
    are prefixed with the split's role."""
    model.eval()
    totals = [0.0, 0.0, 0.0, 0.0]  # loss sum, top-1 correct, top-5 correct, count
    for x, y in getattr(data, split).batches():
        x = x.to(info.device, non_blocking=True)
        if recipe.model.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(info.device, non_blocking=True)
        with _autocast(recipe, info.device):
            out = model(x)
        out = out.float()
        top1, top5 = accuracy(out, y, topk=(1, 5))
        n = y.shape[0]
        for i, v in enumerate((F.cross_entropy(out, y, reduction="sum").item(), top1.item() * n / 100,
                               top5.item() * n / 100, n)):
            totals[i] += v
    loss, c1, c5, count = all_reduce_sum(totals, info)
    return {f"{split}_loss": loss / count, f"{split}_top1": 100 * c1 / count, f"{split}_top5": 100 * c5 / count}


class Trainer:
    """One run of a recipe; build it, then call :meth:`fit`."""

    def __init__(self, recipe: Recipe, recipe_path: Path | None, info: DistInfo, resume: str | None = None) -> None:
        self.recipe, self.recipe_path, self.info = recipe, recipe_path, info
        self.folder = _claim_on_every_rank(recipe, resume, info)  # locked, and checked to be this run's
        self.run_dir = self.folder.run_dir
        self._sigint = self._stop = False
        try:
            self._build(resume)
        except BaseException:
            self.folder.abandon()
            raise

    def _build(self, resume: str | None) -> None:
        recipe, info = self.recipe, self.info
        threads = recipe.threads or default_threads(info)
        if threads:
            torch.set_num_threads(threads)
        _seed_everything(recipe.seed)
        self.data = build_data(recipe, info.rank, info.world_size, info.device)
        self.model = create_model(recipe, self.data).to(info.device)
        if recipe.model.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.steps_per_epoch = len(self.data.train)
        if self.steps_per_epoch == 0:
            raise AttnzooError(f"batch_size {recipe.batch_size} exceeds the {self.data.num_train} training "
                               "images; lower batch_size")
        o = recipe.optim
        extra = {"nesterov": o.nesterov} if o.name == "sgd" else {}  # timm's sgd would default to True
        self.optimizer = create_optimizer_v2(self.model, opt=o.name, lr=o.lr, weight_decay=o.weight_decay,
                                             momentum=o.momentum, filter_bias_and_bn=o.filter_bias_and_bn, **extra)
        self.scheduler = _create_scheduler(recipe, self.optimizer, self.steps_per_epoch)
        self.ema = (ModelEmaV3(self.model, decay=recipe.ema.decay, use_warmup=recipe.ema.warmup)
                    if recipe.ema.enabled else None)
        self.scaler = torch.amp.GradScaler(info.device.type) if recipe.amp == "fp16" else None
        self.loss_fn = _train_loss(recipe)
        self.mixup = _mixup(recipe, self.data.num_classes)
        self.progress = Progress()
        self.recipe_ref = _repo_relative(self.recipe_path)
        if resume is not None:
            self._resume(resume)
        self.net: nn.Module = self.model
        if info.distributed:
            self.net = _wrap_ddp(self.model, info)
        self.scalars = run_folder.Scalars(self.run_dir) if info.is_main else None

    # -- state ------------------------------------------------------------------------------------------

    def _resume(self, path: str) -> None:
        tensors, header = checkpoint.load_state(path)
        saved = header.get("recipe", {})
        current = recipe_to_dict(self.recipe)
        changed = [d for k in _RESUME_INVARIANT for d in _differences(k, saved.get(k), current[k])]
        if changed:
            field, was, now = changed[0]
            raise CheckpointError(f"recipe field {field} differs from the run being resumed "
                                  f"({checkpoint.state_path_for(path)}: {was!r}, now {now!r}); resume with the "
                                  "run's own recipe.yaml, or start a new run (--set name=...) for another schedule")
        checkpoint.restore(tensors, header, model=self.model, optimizer=self.optimizer,
                           ema=self.ema.module if self.ema else None)
        if self.scheduler is not None and header.get("scheduler") is not None:
            self.scheduler.load_state_dict(header["scheduler"])
        if self.scaler is not None and header.get("scaler"):
            self.scaler.load_state_dict(header["scaler"])
        self.progress = Progress(**header["progress"])
        if self.recipe_path is not None and self.recipe_path.parent == self.run_dir.resolve():
            self.recipe_ref = header.get("recipe_path", self.recipe_ref)  # resumed from the run's own copy

    def _commit(self, row: dict[str, Any] | None = None, *, state: bool = True) -> None:
        """Rank 0 commits the training state and plain weights, with an epoch's ``row`` its metrics and best
        weights, and the summary, as one step (:mod:`attnzoo.train.commit`): a crash keeps all or none."""
        if not self.info.is_main:
            return
        p = self.progress
        writers = {}
        if state:
            extra = {
                "progress": vars(p),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "recipe": recipe_to_dict(self.recipe),
                "recipe_path": self.recipe_ref,
                "run_id": self.folder.run_id,
            }
            writers["last.state.safetensors"] = lambda path: checkpoint.save_state(
                path, model=self.model, optimizer=self.optimizer, ema=self.ema.module if self.ema else None,
                extra=extra)
            writers["last.safetensors"] = lambda path: save_weights(
                self.model, path, metadata={"global_step": str(p.global_step), "run_id": str(self.folder.run_id)})
        if row is not None:
            if row["improved"]:
                best = {"epoch": str(row["epoch"]), "val_top1": f"{row['val_top1']:.4f}",
                        "run_id": str(self.folder.run_id)}
                writers["best.safetensors"] = lambda path: save_weights(self._eval_model(), path, metadata=best)
            writers["metrics.csv"] = lambda path: run_folder.write_metrics(path, p.history)
        writers["summary.json"] = lambda path: run_folder.write_summary(path, self._summary())
        commit.commit_files(self.run_dir, writers)

    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    # -- loop -------------------------------------------------------------------------------------------

    def _lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _stop_non_finite(self, loss: float) -> None:
        p = self.progress
        last = self.run_dir / "last.safetensors"
        where = (f"last good checkpoint {last} (global step {self._saved_step})" if self._saved_step is not None
                 else "no checkpoint was written yet")
        self._commit(state=False)
        raise NonFiniteLossError(
            f"loss is {loss} at epoch {p.epoch + 1}, step {p.step_in_epoch + 1} (global step {p.global_step + 1}, "
            f"lr {self._lr():.3g}); stopped, {where}; lower optim.lr, add sched.warmup_epochs or set amp=off"
        )

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        info, recipe = self.info, self.recipe
        x, y = x.to(info.device, non_blocking=True), y.to(info.device, non_blocking=True)
        hard = y
        if self.mixup is not None:
            x, y = self.mixup(x, y)
        if recipe.model.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.net.train()
        with _autocast(recipe, info.device):
            out = self.net(x)
            loss = self.loss_fn(out.float(), y)
        value = loss.item()
        bad = all_reduce_sum([0.0 if math.isfinite(value) else 1.0], info)[0]
        if bad:
            self._stop_non_finite(value if not math.isfinite(value) else float("nan"))
        self.optimizer.zero_grad(set_to_none=not info.distributed)  # DDP: gradients stay in its buckets
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        p = self.progress
        p.global_step += 1
        p.step_in_epoch += 1
        if self.scheduler is not None:
            self.scheduler.step_update(num_updates=p.global_step)
        if self.ema is not None:
            self.ema.update(self.model, step=p.global_step)
        n = hard.shape[0]
        p.meters["loss"] += value * n
        p.meters["correct"] += accuracy(out.detach().float(), hard, topk=(1,))[0].item() * n / 100
        p.meters["count"] += n
        self._stop = self._stop or bool(all_reduce_sum([float(self._sigint)], info)[0])  # every rank stops here

    def _run_epoch(self) -> None:
        p, recipe = self.progress, self.recipe
        start = p.step_in_epoch
        bar = tqdm(total=self.steps_per_epoch, initial=start, desc=f"epoch {p.epoch + 1}/{recipe.epochs}",
                   unit="step", disable=not self.info.is_main, dynamic_ncols=True, file=sys.stderr,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)
        rate = AverageMeter()
        tic = time.perf_counter()
        try:
            for x, y in self.data.train.batches(p.epoch, start):
                self._train_step(x, y)
                now = time.perf_counter()
                rate.update(x.shape[0] * self.info.world_size / (now - tic))
                p.train_time_s += now - tic
                tic = now
                bar.update(1)
                bar.set_postfix(loss=f"{p.meters['loss'] / max(p.meters['count'], 1):.4f}", lr=f"{self._lr():.3g}",
                                img_s=f"{rate.avg:.0f}", refresh=False)
                if self.scalars is not None and p.global_step % 50 == 0:
                    self.scalars.add("train/loss_step", p.meters["loss"] / max(p.meters["count"], 1), p.global_step)
                if recipe.checkpoint_every and p.global_step % recipe.checkpoint_every == 0 \
                        and p.step_in_epoch < self.steps_per_epoch:
                    self._commit()
                    self._saved_step = p.global_step
                if self._stop or recipe.max_steps is not None and p.global_step >= recipe.max_steps:
                    break
        finally:
            bar.close()

    def _sync_bn(self) -> None:
        """Average BatchNorm running statistics across processes (each saw only its shard)."""
        if self.info.distributed:
            distribute_bn(self.model, self.info.world_size, reduce=True)
            if self.ema is not None:
                distribute_bn(self.ema.module, self.info.world_size, reduce=True)

    def _end_epoch(self, epoch_time: float) -> dict[str, Any]:
        p = self.progress
        self._sync_bn()
        loss, correct, count = all_reduce_sum([p.meters["loss"], p.meters["correct"], p.meters["count"]], self.info)
        tic = time.perf_counter()
        metrics = evaluate(self._eval_model(), self.data, self.recipe, self.info)
        eval_time = time.perf_counter() - tic
        p.train_time_s += eval_time
        row = {"epoch": p.epoch + 1, "train_loss": loss / max(count, 1), "train_top1": 100 * correct / max(count, 1),
               **metrics, "lr": self._lr(), "epoch_time_s": epoch_time + eval_time}
        p.history.append(row)
        if self.scheduler is not None:
            self.scheduler.step(p.epoch + 1, metrics["val_top1"])
        improved = metrics["val_top1"] > p.best_top1
        p.best_top1 = max(p.best_top1, metrics["val_top1"])
        p.epoch += 1
        p.step_in_epoch = 0
        p.meters = {"loss": 0.0, "correct": 0.0, "count": 0.0}
        return row | {"improved": improved}

    def fit(self) -> dict[str, Any]:
        """Train to the recipe's last epoch (or ``max_steps``); returns the summary written to the run folder."""
        recipe, p, info = self.recipe, self.progress, self.info
        self._saved_step: int | None = p.global_step if p.global_step else None
        previous_handler = self._catch_sigint()
        if info.is_main:
            run_folder.write_recipe(self.run_dir, recipe_to_dict(recipe))
            run_folder.write_environment(self.run_dir, info.device, info.world_size)
            print(f"training {recipe.name}: {self.data.num_train} train / {self.data.num_val} val images, "
                  f"{self.steps_per_epoch} steps/epoch, {info.world_size} process(es) on {info.device}; "
                  f"run folder {self.run_dir}", file=sys.stderr, flush=True)
        try:
            while p.epoch < recipe.epochs:
                tic, cpu_tic = time.perf_counter(), time.process_time()
                self._run_epoch()
                if p.step_in_epoch < self.steps_per_epoch:  # stopped by max_steps or SIGINT
                    p.cpu_time_s += time.process_time() - cpu_tic
                    self._sync_bn()
                    self._commit()
                    break
                row = self._end_epoch(time.perf_counter() - tic)
                p.cpu_time_s += time.process_time() - cpu_tic
                self._commit(row)
                self._saved_step = p.global_step
                if info.is_main:
                    self._log_epoch(row)
                if self._stop or recipe.max_steps is not None and p.global_step >= recipe.max_steps:
                    break
            if p.epoch >= recipe.epochs and self.data.test is not None and "test" not in p.final:
                p.final["test"] = self._test_metrics()
                self._commit()  # the test scores join the state and the summary, which now says complete
            barrier(info)
            if self._stop and p.epoch < recipe.epochs:
                raise TrainingInterrupted(
                    f"interrupted at epoch {p.epoch + 1}, step {p.step_in_epoch} (global step {p.global_step}); "
                    f"state saved, continue with attnzoo train --resume {self.run_dir / 'last.safetensors'}")
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            if self.scalars is not None:
                self.scalars.close()
            self.folder.release()
        return self._summary()

    def _catch_sigint(self) -> Any:
        """Turn the first SIGINT into a stop after the current step (state saved); a second one interrupts
        at once. Returns the previous handler (None off the main thread, where signals cannot be caught)."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def request_stop(signum: int, frame: Any) -> None:
            self._sigint = True
            signal.signal(signal.SIGINT, signal.default_int_handler)

        return signal.signal(signal.SIGINT, request_stop)

    def _test_metrics(self) -> dict[str, Any]:
        """The test split on the final weights and, when another epoch scored best on val, on those."""
        final = evaluate(self._eval_model(), self.data, self.recipe, self.info, split="test")
        history = self.progress.history
        best_epoch = max(history, key=lambda row: row["val_top1"])["epoch"]  # first of ties, as best.safetensors
        best = final
        if best_epoch != history[-1]["epoch"]:
            barrier(self.info)  # rank 0 wrote best.safetensors
            weights, _ = read_weights(self.run_dir / "best.safetensors")
            model = create_model(self.recipe, self.data).to(self.info.device)
            load_state_dict_strict(model, weights, "best.safetensors")
            best = evaluate(model, self.data, self.recipe, self.info, split="test")
        return {"final": final, "best": best, "best_epoch": best_epoch}

    def _log_epoch(self, row: dict[str, Any]) -> None:
        row.pop("improved")
        for key in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "epoch_time_s"):
            self.scalars.add(f"epoch/{key}", row[key], row["epoch"])
        self.scalars.flush()
        print(f"epoch {row['epoch']}/{self.recipe.epochs}: train loss {row['train_loss']:.4f} "
              f"top-1 {row['train_top1']:.2f} | val loss {row['val_loss']:.4f} top-1 {row['val_top1']:.2f} "
              f"top-5 {row['val_top5']:.2f} | lr {row['lr']:.3g} | {row['epoch_time_s']:.0f} s",
              file=sys.stderr, flush=True)

    def _summary(self) -> dict[str, Any]:
        p, recipe = self.progress, self.recipe
        last = p.history[-1] if p.history else {}
        return {
            "name": recipe.name,
            "run_id": self.folder.run_id,
            "model": model_config(self.model),
            "recipe": self.recipe_ref,
            "seed": recipe.seed,
            "dataset": recipe.data.dataset,
            "num_classes": self.data.num_classes,
            "img_size": self.data.img_size,
            "epochs": p.epoch,
            "splits": {"train": recipe.data.train_split, "val": recipe.data.val_split,
                       "test": recipe.data.test_split, "num_train": self.data.num_train,
                       "num_val": self.data.num_val, "num_test": self.data.num_test},
            # best.safetensors: the epoch with the highest top-1 on the val split, which may be the test set
            "selection": "test" if recipe.data.val_split == "test" else "val",
            "top1": last.get("val_top1"),  # val split, final weights
            "top5": last.get("val_top5"),
            "best_top1": p.best_top1 if p.history else None,  # val split, best epoch
            **_test_fields(p.final.get("test")),
            "train_time_s": round(p.train_time_s, 1),
            "cpu_time_s": round(p.cpu_time_s, 1),
            "params": sum(t.numel() for t in self.model.parameters()),
            "hardware": run_folder.hardware(self.info.device, self.info.world_size),
            "status": "complete" if p.epoch >= recipe.epochs and (self.data.test is None or "test" in p.final)
                      else "stopped",
        }


def _test_fields(test: dict[str, Any] | None) -> dict[str, Any]:
    """Summary keys for the test split: final weights, and the weights selected on val."""
    if test is None:
        return {"test_top1": None, "test_top5": None, "best_epoch": None, "best_test_top1": None}
    return {"test_top1": round(test["final"]["test_top1"], 4), "test_top5": round(test["final"]["test_top5"], 4),
            "best_epoch": test["best_epoch"], "best_test_top1": round(test["best"]["test_top1"], 4)}


def _claim_on_every_rank(recipe: Recipe, resume: str | None, info: DistInfo) -> run_folder.RunClaim:
    """Claim the run folder (rank 0 locks it); when any process cannot, all stop, so no rank waits forever in
    a collective for a peer that gave up."""
    claim, error = None, None
    try:
        claim = run_folder.claim(recipe, resume, info.is_main)
    except AttnzooError as err:
        error = err
    if all_reduce_sum([1.0 if error else 0.0], info)[0]:
        if claim is not None:
            claim.release()
        raise error or RunFolderError("another process of this job could not claim the run folder; see its error")
    return claim


def _repo_relative(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return os.path.relpath(path, Path.cwd()) if path.is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


def train(recipe: Recipe, recipe_path: Path | None = None, resume: str | None = None) -> dict[str, Any]:
    """Train ``recipe`` in this process (and its ``torchrun`` peers); returns the run summary."""
    info = init_distributed(recipe.device)
    try:
        return Trainer(recipe, recipe_path, info, resume).fit()
    finally:
        shutdown(info)
