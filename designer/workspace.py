"""Where Kernel Studio keeps its files: data sets, runs, the run store.

Default ./workspace (git-ignored); KERNEL_STUDIO_HOME or --home overrides.
"""
from __future__ import annotations

import os
from pathlib import Path

from designer.errors import DesignError


def workspace_home(override: str | os.PathLike | None = None) -> Path:
    """The workspace folder, made when missing; DesignError when it is a file or cannot be made.

    An existing folder is never written here: a read-only workspace can still be listed.
    """
    home = Path(override or os.environ.get("KERNEL_STUDIO_HOME") or "workspace")
    if home.is_dir():
        return home
    if home.exists():
        raise DesignError("the workspace must be a folder, this is a file", str(home))
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DesignError(f"cannot make the workspace folder: {err.strerror}", str(home)) from None
    return home


def data_root(home: Path | None = None) -> Path:
    return (home or workspace_home()) / "data"
