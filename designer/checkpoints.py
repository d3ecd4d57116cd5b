"""Training checkpoints: written atomically, the last two kept, a bad one skipped with a clear error.

A checkpoint is one torch file `ckpt-<step>.pt` in the run folder holding
the model under "state_dict" (so `--checkpoint` of infer/export takes it as
it is), the optimizer and schedule state, step/epoch, the RNG states and the
design. It is written to a temporary file, flushed to disk, then renamed
over the final name, so a crash leaves either the old or the new file,
never half of one. Everything in it loads with torch.load(weights_only=True).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from designer.errors import DesignError

FORMAT = "kernel-studio-checkpoint"
KEEP = 2
REQUIRED = ("format", "state_dict", "optimizer", "scheduler", "step", "epoch")


class CheckpointError(DesignError):
    """A checkpoint file that cannot be used: truncated, corrupt or not ours."""


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / f"ckpt-{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, newest (highest step) first."""
    return sorted(Path(run_dir).glob("ckpt-*.pt"), reverse=True)


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    """Write atomically (temp + fsync + os.replace), then drop all but the newest KEEP.

    One writer per run folder (the run's process), so any temp file left is stale.
    """
    path = checkpoint_path(run_dir, state["step"])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in [*list_checkpoints(run_dir)[KEEP:], *Path(run_dir).glob(".ckpt-*.tmp")]:
        old.unlink(missing_ok=True)  # older checkpoints, and temp files of a process killed mid-write
    return path


def load_checkpoint(path: Path) -> dict:
    """The checkpoint's contents; CheckpointError saying what is wrong with the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError("no such checkpoint", str(path)) from None
    except Exception as err:  # torch raises several types for truncated or corrupt archives
        first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise CheckpointError(f"corrupt or truncated checkpoint ({first})", str(path)) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError("not a Kernel Studio training checkpoint", str(path))
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise CheckpointError(f"incomplete checkpoint (missing {', '.join(missing)})", str(path))
    return state


def load_latest(run_dir: Path) -> tuple[dict, Path] | None:
    """The newest usable checkpoint and its path; None when the run has none.

    A bad newer file is reported on stderr, renamed to *.corrupt (out of the
    rotation, kept for inspection) and the previous one is used; if none is
    usable, the newest file's CheckpointError is raised.
    """
    paths = list_checkpoints(run_dir)
    first_error = None
    for path in paths:
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            print(f"warning: {err}; trying the previous checkpoint", file=sys.stderr, flush=True)
            first_error = first_error or err
            continue
        for bad in paths[:paths.index(path)]:
            bad.replace(bad.with_suffix(".corrupt"))
        return state, path
    if first_error:
        raise first_error
    return None
