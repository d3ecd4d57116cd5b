"""The trainer: a plain function of (design, hyper-parameters, store, run folder).

It knows nothing of processes or queues (designer.jobs does), so a
distributed engine can call it too. It writes metrics to the store as it
goes, checkpoints every epoch (and every N steps) and, with resume=True,
continues from the newest usable checkpoint exactly where it stopped: the
data order is a seeded permutation per epoch and the RNG states are saved.

Defaults are tuned to learn fast on a 2-core CPU: batch 128, lr 0.1 with a
short linear warm-up then cosine decay, weight decay 5e-4. The ASK paper's
recipe is `schedule="step"` (x0.1 at 50% and 75%), batch 64, wd 1e-4,
warmup 0, 160 epochs.
"""
from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from designer.build import build_model, validate
from designer.checkpoints import load_latest, save_checkpoint
from designer.counting import count_design
from designer.data import SYNTHETIC, dataset_info, eval_loader, load_datasets, train_loader
from designer.design import Design
from designer.errors import DesignError
from designer.workspace import data_root
from models.layers.ask import ASK_BACKENDS

SCHEDULES = ("cosine", "step")


@dataclass
class HParams:
    """Training hyper-parameters; field names double as the CLI option names (--max-steps ...)."""

    epochs: int = 2
    max_steps: int | None = None  # stop after this many steps in total (even mid-epoch)
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | step (x0.1 at 50% and 75% of the steps: the ASK recipe)
    warmup_epochs: float = 0.1  # linear warm-up from 0 (either schedule); 0 for none
    seed: int = 0
    backend: str = "reference"  # an ASK backend registered in models.layers.ask.ASK_BACKENDS
    data: str | None = None  # None: the design's data set; "synthetic": the tests' small set
    data_root: str | None = None  # None: the workspace's data/ folder
    download: bool = True  # may torchvision download a missing data set
    workers: int = 0  # DataLoader workers (0 or 1 on 2 cores)
    log_every: int = 50  # steps between step metrics
    checkpoint_every: int = 0  # steps between extra checkpoints; 0: once per epoch only
    eval_batch_size: int = 500
    channels_last: bool = True  # NHWC: about 2x faster convolutions on CPU (oneDNN)

    def checked(self) -> "HParams":
        """Self, or DesignError naming the option that is out of range."""
        ints = {"epochs": 1, "batch_size": 1, "log_every": 1, "checkpoint_every": 0, "seed": 0,
                "eval_batch_size": 1, "workers": 0}
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise DesignError(f"must be an integer >= {low}, got {value!r}", _opt(name))
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise DesignError(f"must be an integer >= 1, got {self.max_steps!r}", "--max-steps")
        if self.workers > 4:
            raise DesignError(f"at most 4 workers, got {self.workers}", "--workers")
        for name, low, high in (("lr", 0, 10), ("momentum", 0, 1), ("weight_decay", 0, 1), ("warmup_epochs", 0, 1e6)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high or (name == "lr" and value == 0):
                raise DesignError(f"must be a number in {'(' if name == 'lr' else '['}{low}, {high}], got {value!r}",
                                  _opt(name))
        if self.schedule not in SCHEDULES:
            raise DesignError(f"unknown schedule {self.schedule!r} (choose one of {', '.join(SCHEDULES)})",
                              "--schedule")
        if self.backend not in ASK_BACKENDS:
            raise DesignError(f"unknown backend {self.backend!r} (choose one of {', '.join(ASK_BACKENDS)})",
                              "--backend")
        if self.data not in (None, SYNTHETIC):
            raise DesignError(f"only {SYNTHETIC!r} (the tests' data set) may replace the design's data set, "
                              f"got {self.data!r}", "--data")
        return self

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> "HParams":
        if not isinstance(raw, dict):
            raise DesignError("hyper-parameters must be an object", "hparams")
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise DesignError(f"unknown hyper-parameters: {', '.join(sorted(unknown))}", "hparams")
        return cls(**raw).checked()


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


def lr_at(step: int, total: int, warmup: int, hp: HParams) -> float:
    """Learning rate of a step: linear warm-up, then cosine to 0 or the 50%/75% steps."""
    if step < warmup:
        return hp.lr * (step + 1) / warmup
    if hp.schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return hp.lr * 0.5 * (1 + math.cos(math.pi * progress))
    return hp.lr * (0.01 if step >= 0.75 * total else 0.1 if step >= 0.5 * total else 1.0)


def apply_masks(model: nn.Module) -> None:
    """Re-zero pruned weights (HetConv, 1xN) after an update: modules with `apply_mask_()` do it."""
    with torch.no_grad():
        for module in model.modules():
            fn = getattr(module, "apply_mask_", None)
            if callable(fn):
                fn()


def evaluate(model: nn.Module, loader, channels_last: bool) -> tuple[float, float]:
    """(mean loss, accuracy in %) over a loader, in eval mode."""
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out = model(x)
            loss_sum += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
    model.train()
    return loss_sum / max(seen, 1), 100.0 * correct / max(seen, 1)


class _Sink:
    """Metrics go to the store (if any) and step lines to stderr (the run's log)."""

    def __init__(self, store, run_id):
        self.store, self.run_id = store, run_id

    def log(self, step: int, epoch: int, split: str, values: dict) -> None:
        if self.store is not None and self.run_id is not None:
            self.store.log_metrics(self.run_id, step, epoch, split, values)
        text = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        print(f"step {step} epoch {epoch} {split}: {text}", file=sys.stderr, flush=True)

    def progress(self, **fields) -> None:
        if self.store is not None and self.run_id is not None:
            self.store.update_run(self.run_id, **fields)


def train(design: Design, hp: HParams, run_dir: str | Path, store=None, run_id: int | None = None,
          resume: bool = False) -> dict:
    """Train `design` with `hp`, checkpointing into run_dir; returns the final figures.

    store/run_id (designer.store.RunStore and a run row) receive metrics and
    progress; both may be None. With resume=True it continues from the
    newest usable checkpoint in run_dir (a fresh start when there is none).
    """
    design, hp = validate(design), hp.checked()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    sink = _Sink(store, run_id)
    info = dataset_info(design.network.dataset)
    torch.manual_seed(hp.seed)
    random.seed(hp.seed)
    model = build_model(design, hp.backend)
    memory_format = torch.channels_last if hp.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    root = Path(hp.data_root) if hp.data_root else data_root()
    train_ds, test_ds = load_datasets(hp.data or design.network.dataset, root, info.num_classes, hp.download)
    loader, sampler = train_loader(train_ds, hp.batch_size, hp.seed, hp.workers)
    tests = eval_loader(test_ds, hp.eval_batch_size, hp.workers)
    per_epoch = len(loader)
    total = hp.epochs * per_epoch if hp.max_steps is None else min(hp.max_steps, hp.epochs * per_epoch)
    warmup = min(round(hp.warmup_epochs * per_epoch), total // 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)

    step, best_acc, resumed_from, acc = 0, 0.0, None, {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
    if resume and (found := load_latest(run_dir)):
        state, path = found
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        step, best_acc, acc = state["step"], state.get("best_acc", 0.0), state.get("epoch_totals", acc)
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        resumed_from = step
        print(f"resumed from {path.name} at step {step}", file=sys.stderr, flush=True)
    apply_masks(model)

    def checkpoint() -> Path:
        return save_checkpoint(run_dir, {
            "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": {"name": hp.schedule, "step": step, "total_steps": total, "warmup_steps": warmup},
            "step": step, "epoch": step // per_epoch, "best_acc": best_acc, "epoch_totals": dict(acc),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
            "design": design.to_json(), "hparams": hp.to_json(),
        })

    started, trained_images, trained_time = time.perf_counter(), 0, 0.0
    test_loss = test_acc = None
    last_ckpt = None
    window = {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
    model.train()
    while step < total:
        epoch = step // per_epoch
        sampler.set_epoch(epoch, (step % per_epoch) * hp.batch_size)
        tick = time.perf_counter()
        for x, y in loader:
            x = x.contiguous(memory_format=memory_format)
            lr = lr_at(step, total, warmup, hp)
            for group in optimizer.param_groups:
                group["lr"] = lr
            out = model(x)
            loss = F.cross_entropy(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            apply_masks(model)
            step += 1
            now = time.perf_counter()
            for totals in (window, acc):
                totals["loss"] += loss.item() * len(y)
                totals["correct"] += (out.argmax(1) == y).sum().item()
                totals["seen"] += len(y)
                totals["time"] += now - tick
            trained_images, trained_time = trained_images + len(y), trained_time + now - tick
            tick = now
            epoch_done = step % per_epoch == 0 or step >= total
            if step % hp.log_every == 0 or epoch_done:
                sink.log(step, epoch + 1, "step", {"loss": window["loss"] / window["seen"],
                                                   "acc": 100.0 * window["correct"] / window["seen"],
                                                   "lr": lr, "images_per_s": window["seen"] / window["time"]})
                window = {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
            if epoch_done:
                break
            if hp.checkpoint_every and step % hp.checkpoint_every == 0:
                last_ckpt = checkpoint()
                sink.progress(step=step, epoch=epoch)
        test_loss, test_acc = evaluate(model, tests, hp.channels_last)
        best_acc = max(best_acc, test_acc)
        done_epochs = epoch + 1
        sink.log(step, done_epochs, "train", {"loss": acc["loss"] / max(acc["seen"], 1),
                                              "acc": 100.0 * acc["correct"] / max(acc["seen"], 1)})
        sink.log(step, done_epochs, "test", {"loss": test_loss, "acc": test_acc})
        sink.log(step, done_epochs, "epoch", {"time_s": acc["time"],
                                              "images_per_s": acc["seen"] / max(acc["time"], 1e-9)})
        acc = {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
        last_ckpt = checkpoint()
        sink.progress(step=step, epoch=done_epochs, best_acc=best_acc)

    if test_acc is None:  # resumed at the very end: report the checkpoint's model
        test_loss, test_acc = evaluate(model, tests, hp.channels_last)
        last_ckpt = last_ckpt or checkpoint()
    count = count_design(design)
    return {
        "run_id": run_id, "run_dir": str(run_dir), "checkpoint": str(last_ckpt),
        "arch": design.network.arch, "depth": design.network.depth, "dataset": hp.data or design.network.dataset,
        "backend": hp.backend, "epochs": hp.epochs, "steps": step, "steps_per_epoch": per_epoch,
        "resumed_from_step": resumed_from, "test_loss": test_loss, "test_acc": test_acc, "best_acc": best_acc,
        "wall_s": time.perf_counter() - started,
        "images_per_s": trained_images / trained_time if trained_time else None,
        "params": count.params, "flops": count.flops,
    }
