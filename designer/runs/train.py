"""The trainer: a plain function of (design, hyper-parameters, store, run folder).

It knows nothing of processes or queues (designer.runs.jobs does), so a
distributed engine can call it too. It writes metrics to the store as it
goes (every log_every steps and every log_every_s seconds), checkpoints
every epoch, every checkpoint_every steps and every checkpoint_every_s
seconds (a kill loses at most that much), and with resume=True continues
from the newest usable checkpoint exactly where it stopped: the data order
and each sample's augmentation are functions of (seed, epoch, index) and
the RNG states are saved, so the per-step losses are those of an
uninterrupted run, bit for bit on the CPU.

Defaults are tuned to learn fast on a 2-core CPU: batch 128, lr 0.1 with a
short linear warm-up then cosine decay, weight decay 5e-4. The ASK paper's
recipe is `schedule="step"` (x0.1 at 50% and 75%), batch 64, wd 1e-4,
warmup 0, 160 epochs.
"""
from __future__ import annotations

import json
import math
import random
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from designer.analysis.counting import count_design
from designer.designs.datasets import IMAGE_FOLDER
from designer.designs.design import Design
from designer.errors import DesignError
from designer.networks.build import build_model, validate
from designer.runs.checkpoints import load_latest, save_checkpoint
from designer.runs.data import SYNTHETIC, eval_loader, load_datasets, train_loader, train_size
from designer.runs.store import StoreError
from designer.workspace import data_root
from models.layers.ask import ASK_BACKENDS

SCHEDULES = ("cosine", "step")


MAX_BATCH = 4096
INT_RANGES = {  # integer fields: (lowest, highest); the optional ones may also be None
    "epochs": (1, 100_000), "batch_size": (1, MAX_BATCH), "seed": (0, 2 ** 31 - 1), "workers": (0, 4),
    "log_every": (1, 10 ** 9), "checkpoint_every": (0, 10 ** 9), "eval_batch_size": (1, MAX_BATCH),
}
OPTIONAL_INT_RANGES = {"max_steps": (1, 10 ** 9), "data_limit": (1, 10 ** 9)}
NUMBER_RANGES = {  # number fields: (lowest, highest); lr must also be above 0
    "lr": (0, 10), "momentum": (0, 1), "weight_decay": (0, 1), "warmup_epochs": (0, 1e6),
    "checkpoint_every_s": (0, 86_400), "log_every_s": (0, 86_400),
}
BOOLS = ("download", "channels_last")
OPTIONAL_PATHS = ("data_root", "init_from", "data_dir")
EVAL_PIXELS = 500 * 32 * 32  # an evaluation batch holds at most this many input pixels (unless the training one does)


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
    backend: str = "auto"  # each layer its fastest backend, reference (a masked dense conv) included; or one by name
    data: str | None = None  # None: the design's data set; "synthetic": the tests' small set
    data_root: str | None = None  # None: the workspace's data/ folder
    download: bool = True  # may torchvision download a missing data set
    workers: int = 0  # DataLoader workers (0 or 1 on 2 cores)
    log_every: int = 50  # steps between step metrics
    checkpoint_every: int = 0  # steps between extra checkpoints; 0: by epoch and time only
    eval_batch_size: int = 500
    channels_last: bool = True  # NHWC: about 2x faster convolutions on CPU (oneDNN)
    checkpoint_every_s: float = 60.0  # seconds of training between extra checkpoints (a kill loses at most that); 0: off
    log_every_s: float = 5.0  # seconds between step metrics, besides every log_every steps: curves move; 0: off
    init_from: str | None = None  # start from these weights (a dense or same-design state_dict), unless resuming
    data_limit: int | None = None  # train and test on the first N images of each split only (quick trials)
    data_dir: str | None = None  # the image folder of an image-folder design (absolute once a run is recorded)

    def checked(self) -> "HParams":
        """Self, or DesignError naming the option that is out of range or of the wrong type."""
        for name, (low, high) in {**INT_RANGES, **OPTIONAL_INT_RANGES}.items():
            value = getattr(self, name)
            if value is None and name in OPTIONAL_INT_RANGES:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise DesignError(f"must be an integer in [{low}, {high}], got {_show(value)}", _opt(name))
        for name, (low, high) in NUMBER_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high or (name == "lr" and value == 0):
                raise DesignError(f"must be a number in {'(' if name == 'lr' else '['}{low}, {high}], "
                                  f"got {_show(value)}", _opt(name))
        for name in BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise DesignError(f"must be true or false, got {_show(getattr(self, name))}", _opt(name))
        for name in OPTIONAL_PATHS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value or len(value) > 4096 or "\0" in value):
                raise DesignError(f"must be a path, got {_show(value)}", _opt(name))
        if not isinstance(self.schedule, str) or self.schedule not in SCHEDULES:
            raise DesignError(f"unknown schedule {_show(self.schedule)} (choose one of {', '.join(SCHEDULES)})",
                              "--schedule")
        if not isinstance(self.backend, str) or self.backend not in ASK_BACKENDS:
            raise DesignError(f"unknown backend {_show(self.backend)} (choose one of {', '.join(ASK_BACKENDS)})",
                              "--backend")
        if self.data not in (None, SYNTHETIC):
            raise DesignError(f"only {SYNTHETIC!r} (the tests' data set) may replace the design's data set, "
                              f"got {_show(self.data)}", "--data")
        return self

    def checked_for(self, design: Design) -> "HParams":
        """checked(), an image folder that is there with the design's classes, and the batch fits the training
        set the run will use."""
        self.checked()
        dataset = self.data or design.network.dataset
        if self.data_dir is not None and dataset != IMAGE_FOLDER:
            raise DesignError(f"--data-dir is an image folder to train on, but this run trains on {dataset} "
                              f"(an image-folder design trains on a folder)", "--data-dir")
        size = train_size(dataset, self.data_dir, design.network.num_classes)
        size = min(size, self.data_limit or size)
        if self.batch_size > size:
            raise DesignError(f"a batch of {self.batch_size} is more than the {size} training images of "
                              f"{dataset}", "--batch-size")
        return self

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> "HParams":
        """Hyper-parameters read back (the store, a file): unknown keys and wrong types are DesignErrors."""
        if not isinstance(raw, dict):
            raise DesignError("hyper-parameters must be an object", "hparams")
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise DesignError(f"unknown hyper-parameters: {', '.join(sorted(map(str, unknown)))[:200]}", "hparams")
        return cls(**raw).checked()


def _show(value) -> str:
    """A value for an error line, cut short (a 900 KB string or a 300-digit number is not echoed whole)."""
    if isinstance(value, int) and value.bit_length() > 100:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


OPTION_NAMES = {"init_from": "--checkpoint", "download": "--no-download"}  # fields whose CLI option differs


def _opt(name: str) -> str:
    return OPTION_NAMES.get(name, "--" + name.replace("_", "-"))


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


def _datasets(design: Design, hp: HParams):
    """(train, test) of the run's data at the network's input shape, each cut to hp.data_limit."""
    root = Path(hp.data_root) if hp.data_root else data_root()
    train_ds, test_ds = load_datasets(hp.data or design.network.dataset, root, design.network.num_classes,
                                      hp.download, input_shape=design.network.input_shape, data_dir=hp.data_dir)
    return train_ds.head(hp.data_limit), test_ds.head(hp.data_limit)


def _test_loader(test_ds, design: Design, hp: HParams):
    """Large inputs evaluate in smaller batches (memory), never smaller than the training batch; 32x32: as asked."""
    _, height, width = design.network.input_shape
    eval_batch = min(hp.eval_batch_size, max(hp.batch_size, EVAL_PIXELS // (height * width)))
    return eval_loader(test_ds, eval_batch, hp.workers)


def evaluate_design(design: Design, hp: HParams) -> dict:
    """Test loss and accuracy of a design with the weights hp.init_from (its own, or the original network's
    converted as a run would start from them): what a design costs in accuracy before any fine-tuning."""
    from designer.networks.weights import load_start_weights
    if not hp.init_from:
        raise DesignError("evaluating needs weights: give --checkpoint FILE", "--checkpoint")
    design = validate(design)
    hp = hp.checked()
    model = build_model(design, hp.backend)
    loaded = load_start_weights(model, design, hp.init_from, fresh_head=False)
    apply_masks(model)
    _, test_ds = _datasets(design, hp)
    tick = time.perf_counter()
    test_loss, test_acc = evaluate(model, _test_loader(test_ds, design, hp), channels_last=False)
    return {"test_loss": test_loss, "test_acc": test_acc, "images": len(test_ds), "weights": loaded,
            "wall_s": time.perf_counter() - tick}


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


STORE_GIVE_UP_S = 60.0  # a store that keeps failing this long stops the run, with a checkpoint
UNSAVED = "unsaved-metrics.json"  # in the run folder: rows a failing store did not take, replayed on resume


class RunStopped(KeyboardInterrupt):
    """The run was asked to stop (SIGTERM via jobs.stop_run) and did, with a checkpoint: an interrupt, not a failure."""


class _Sink:
    """Metrics and progress to the store (if any), step lines to stderr (the run's log).

    Nothing is lost when the store fails: rows wait in memory and go with
    the next write, and after a failure every row this process logged is
    written again (a removed -wal takes committed rows with it).
    """

    def __init__(self, store, run_id, run_dir: Path):
        self.store, self.run_id, self.unsaved = store, run_id, run_dir / UNSAVED
        self.active = store is not None and run_id is not None
        self.base = 0  # the resume step: rows after it are this process's
        self.written, self.pending, self.fields = [], [], {}  # rows written after base, rows not yet written
        self.rewrite, self.failing_since, self.attempts, self.error = False, None, 0, None

    def start(self, step: int) -> None:
        """Continue at `step`: drop the rows a killed process logged after it, replay rows it could not save."""
        self.base, self.rewrite = step, True
        self.fields["resume_step"] = step
        if self.active and self.unsaved.exists():
            self.pending = [row for row in _read_rows(self.unsaved) if row[0] <= step]
        if self.flush():
            self.unsaved.unlink(missing_ok=True)

    def log(self, step: int, epoch: int, split: str, values: dict) -> None:
        now = time.time()
        if self.active:
            self.pending += [(step, epoch, split, name, float(v), now) for name, v in values.items()]
            self.flush()
        text = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        print(f"step {step} epoch {epoch} {split}: {text}", file=sys.stderr, flush=True)

    def progress(self, **fields) -> None:
        if self.active:
            self.fields.update(fields)
            self.flush()

    def flush(self) -> bool:
        """Write what waits; False (and kept for the next try) when the store fails."""
        if not self.active:
            return True
        rows = (self.written if self.rewrite else []) + self.pending
        try:
            self.store.write_progress(self.run_id, rows, self.fields, self.base if self.rewrite else None)
        except StoreError as err:
            if self.failing_since is None:
                self.failing_since = time.monotonic()
                print(f"warning: {err}; the metrics wait in memory and are written at the next try",
                      file=sys.stderr, flush=True)
            self.rewrite, self.attempts, self.error = True, self.attempts + 1, err
            return False
        if self.failing_since is not None:
            print(f"the run store works again: {len(rows)} metric rows written", file=sys.stderr, flush=True)
        self.written += [row for row in self.pending if row[0] > self.base]
        self.pending, self.fields, self.rewrite, self.failing_since, self.attempts = [], {}, False, None, 0
        return True

    def gave_up(self) -> bool:
        """Has the store failed for STORE_GIVE_UP_S over 3 tries or more?"""
        return self.failing_since is not None and self.attempts >= 3 and \
            time.monotonic() - self.failing_since >= STORE_GIVE_UP_S

    def keep_unsaved(self) -> Path:
        """Write every row of this process (the store may hold none of them) beside the checkpoints."""
        tmp = self.unsaved.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.written + self.pending))
        tmp.replace(self.unsaved)
        return self.unsaved


def _read_rows(path: Path) -> list[tuple]:
    """Metric rows kept in a file by a run the store failed; a damaged file is reported and yields none."""
    try:
        rows = [tuple(row) for row in json.loads(path.read_text())]
        if all(len(row) == 6 and all(isinstance(v, int) and not isinstance(v, bool) for v in row[:2])
               and all(isinstance(v, str) for v in row[2:4])
               and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row[4:]) for row in rows):
            return rows
    except (OSError, ValueError, TypeError):
        pass
    print(f"warning: {path}: not the metric rows a run keeps; ignored", file=sys.stderr, flush=True)
    return []


def train(design: Design, hp: HParams, run_dir: str | Path, store=None, run_id: int | None = None,
          resume: bool = False, stop: threading.Event | None = None) -> dict:
    """Train `design` with `hp`, checkpointing into run_dir; returns the final figures.

    store/run_id (designer.runs.store.RunStore and a run row) receive metrics and
    progress; both may be None. With resume=True it continues from the
    newest usable checkpoint in run_dir (a fresh start when there is none),
    exactly: the per-step losses are those of an uninterrupted run. It
    checkpoints at every epoch's end, every checkpoint_every steps and every
    checkpoint_every_s seconds; when `stop` is set it checkpoints and raises
    RunStopped. A store that keeps failing ends the run the same way, its
    unsaved metric rows kept in the run folder for the resume.
    """
    design = validate(design)
    hp = hp.checked_for(design)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    sink = _Sink(store, run_id, run_dir)
    torch.manual_seed(hp.seed)
    random.seed(hp.seed)
    model = build_model(design, hp.backend)
    memory_format = torch.channels_last if hp.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    train_ds, test_ds = _datasets(design, hp)
    loader, sampler = train_loader(train_ds, hp.batch_size, hp.seed, hp.workers)
    tests = _test_loader(test_ds, design, hp)
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
        if hp.init_from:
            print(f"warning: start weights {hp.init_from} not loaded: the run continues from its checkpoint",
                  file=sys.stderr, flush=True)
    elif hp.init_from:
        from designer.networks.weights import load_start_weights
        print(load_start_weights(model, design, hp.init_from), file=sys.stderr, flush=True)
    sink.start(step)
    apply_masks(model)

    saved_at, saved = time.monotonic(), None

    def checkpoint(**fields) -> Path:
        """Save (once per step) and record the step a resume would continue from."""
        nonlocal saved_at, saved
        if saved is not None and saved[0] == step:
            return saved[1]
        path = save_checkpoint(run_dir, {
            "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": {"name": hp.schedule, "step": step, "total_steps": total, "warmup_steps": warmup},
            "step": step, "epoch": step // per_epoch, "best_acc": best_acc, "epoch_totals": dict(acc),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
            "design": design.to_json(), "hparams": hp.to_json(),
        })
        saved_at, saved = time.monotonic(), (step, path)
        sink.progress(**{"resume_step": step, "epoch": step // per_epoch, **fields})
        return path

    def end_early() -> None:
        """Stop asked or the store gone: checkpoint here and leave (RunStopped / StoreError)."""
        if stop is not None and stop.is_set():
            path = checkpoint()
            print(f"stopped at step {step}; resume continues from {path.name}", file=sys.stderr, flush=True)
            raise RunStopped(f"stopped at step {step}; resume continues from {path.name}")
        if sink.gave_up():
            path = checkpoint()
            kept = sink.keep_unsaved()
            raise StoreError(f"the run store failed for over {STORE_GIVE_UP_S:.0f} s ({sink.error}); the run stopped "
                             f"at step {step} with {path.name}, its unsaved metric rows are in {kept} and go to the "
                             f"store on resume", str(run_dir))

    started, trained_images, trained_time = time.perf_counter(), 0, 0.0
    test_loss = test_acc = None
    last_ckpt = None
    window = {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
    logged_at = time.monotonic()
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
            if step % hp.log_every == 0 or epoch_done or \
                    (hp.log_every_s and time.monotonic() - logged_at >= hp.log_every_s):
                sink.log(step, epoch + 1, "step", {"loss": window["loss"] / window["seen"],
                                                   "acc": 100.0 * window["correct"] / window["seen"],
                                                   "lr": lr, "images_per_s": window["seen"] / window["time"]})
                window = {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
                logged_at = time.monotonic()
            if epoch_done:
                break
            if (hp.checkpoint_every and step % hp.checkpoint_every == 0) or \
                    (hp.checkpoint_every_s and time.monotonic() - saved_at >= hp.checkpoint_every_s):
                last_ckpt = checkpoint()
            end_early()
        test_loss, test_acc = evaluate(model, tests, hp.channels_last)
        best_acc = max(best_acc, test_acc)
        done_epochs = epoch + 1
        sink.log(step, done_epochs, "train", {"loss": acc["loss"] / max(acc["seen"], 1),
                                              "acc": 100.0 * acc["correct"] / max(acc["seen"], 1)})
        sink.log(step, done_epochs, "test", {"loss": test_loss, "acc": test_acc})
        sink.log(step, done_epochs, "epoch", {"time_s": acc["time"],
                                              "images_per_s": acc["seen"] / max(acc["time"], 1e-9)})
        acc = {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
        last_ckpt = checkpoint(epoch=done_epochs, best_acc=best_acc)
        if step < total:
            end_early()

    if test_acc is None:  # resumed at the very end: report the checkpoint's model
        test_loss, test_acc = evaluate(model, tests, hp.channels_last)
        last_ckpt = last_ckpt or checkpoint()
    while not sink.flush():  # the last rows: wait for a failing store as long as a run would
        if sink.gave_up():
            kept = sink.keep_unsaved()
            raise StoreError(f"the run store failed for over {STORE_GIVE_UP_S:.0f} s ({sink.error}); the run ended "
                             f"at step {step} with {Path(last_ckpt).name}, its unsaved metric rows are in {kept} and "
                             f"go to the store on resume", str(run_dir))
        time.sleep(1.0)
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
