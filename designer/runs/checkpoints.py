"""Training checkpoints: written atomically with a digest, the last two kept, a bad one skipped with a clear error.

A checkpoint is one torch file `ckpt-<step>.pt` in the run folder holding
the model under "state_dict" (so `--checkpoint` of infer/export takes it as
it is), the optimizer and schedule state, step/epoch, the RNG states and the
design, and beside it `ckpt-<step>.pt.sha256`: the SHA-256 of the file's
bytes, checked on load (flipped bytes inside a tensor load silently
otherwise). Both are written to temporary files, flushed to disk, then
renamed (the digest first), so a crash leaves either the old or the new
checkpoint, never half of one. Everything loads with torch.load(weights_only=True).
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
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


def digest_path(path: Path) -> Path:
    return Path(f"{path}.sha256")


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    """Write atomically (temp + fsync + os.replace, digest first), then drop all but the newest KEEP.

    One writer per run folder (the run's process), so any temp file left is
    stale. A full disk is a CheckpointError saying so; the older
    checkpoints stay as they were.
    """
    path = checkpoint_path(run_dir, state["step"])
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    data = buffer.getbuffer()
    tmp, tmp_digest = (p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in (path, digest_path(path)))
    try:
        _write_synced(tmp, data)
        _write_synced(tmp_digest, hashlib.sha256(data).hexdigest().encode())
        os.replace(tmp_digest, digest_path(path))
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        tmp_digest.unlink(missing_ok=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(run_dir).free
            raise CheckpointError(f"no space left on the device to write a {len(data) / 1e6:.1f} MB checkpoint "
                                  f"({free / 1e6:.1f} MB free); the previous checkpoint is kept", str(path)) from None
        raise CheckpointError(f"cannot write the checkpoint: {err.strerror}", str(path)) from None
    for old in [*list_checkpoints(run_dir)[KEEP:], *Path(run_dir).glob(".ckpt-*.tmp")]:
        old.unlink(missing_ok=True)  # older checkpoints, and temp files of a process killed mid-write
        digest_path(old).unlink(missing_ok=True)
    for orphan in Path(run_dir).glob("ckpt-*.pt.sha256"):
        if not orphan.with_suffix("").exists():
            orphan.unlink(missing_ok=True)  # the digest of a checkpoint whose rename a kill prevented
    return path


def _write_synced(path: Path, data) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def load_checkpoint(path: Path) -> dict:
    """The checkpoint's contents; CheckpointError saying what is wrong with the file.

    A file with a digest is verified first; one without (written before
    digests existed) loads with a warning on stderr.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CheckpointError("no such checkpoint", str(path)) from None
    except OSError as err:
        raise CheckpointError(f"cannot read the checkpoint: {err.strerror}", str(path)) from None
    try:
        expected = digest_path(path).read_text().strip()
    except FileNotFoundError:
        print(f"warning: {path}: no digest beside it; loaded unverified", file=sys.stderr, flush=True)
    else:
        if hashlib.sha256(data).hexdigest() != expected:
            raise CheckpointError("digest mismatch: the file changed after it was written (corrupt)", str(path))
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
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
            if digest_path(bad).exists():
                digest_path(bad).replace(digest_path(bad.with_suffix(".corrupt")))
        return state, path
    if first_error:
        raise first_error
    return None


def run_weights_path(run: dict) -> Path:
    """The newest checkpoint of a run (a row of designer.runs.store): the file a design starts from."""
    found = list_checkpoints(Path(run["run_dir"])) if run.get("run_dir") else []
    if not found:
        raise DesignError(f"run {run['id']} has no checkpoint yet (one is written every epoch and every minute)",
                          "start from")
    return found[0]
