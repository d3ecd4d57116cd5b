"""Where Kernel Studio keeps its files: data sets, runs, the run store.

Default ./workspace (git-ignored); KERNEL_STUDIO_HOME or --home overrides.
"""
from __future__ import annotations

import os
from pathlib import Path


def workspace_home(override: str | os.PathLike | None = None) -> Path:
    home = Path(override or os.environ.get("KERNEL_STUDIO_HOME") or "workspace")
    home.mkdir(parents=True, exist_ok=True)
    return home


def data_root(home: Path | None = None) -> Path:
    return (home or workspace_home()) / "data"
