"""A user's own network as an import path `package.module:callable` (as uvicorn and Lightning name entry points).

The callable returns an nn.Module, optionally taking keyword arguments
(`--arch-kwargs '{"width": 2}'`). It is the user's own code on their own
machine: the CLI takes any path; the app only those named in its
server-side setting (designer.networks.sources). The current directory is
importable, as for `python -m`.
"""
from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from typing import Callable

import torch.nn as nn

# module path ':' attribute path (dots allowed on both sides, identifiers only)
ENTRY_POINT = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def is_entry_point(arch: str) -> bool:
    """`package.module:callable`: a colon between a module path and an attribute path."""
    return ":" in arch and not arch.startswith("torchvision:")


def load_callable(path: str) -> Callable[..., nn.Module]:
    """The callable an entry point names; ValueError in one line for a malformed path, a module that fails to
    import (its ImportError or whatever its code raised) or a missing attribute."""
    if not ENTRY_POINT.match(path):
        raise ValueError(f"{path!r} is not an entry point: write package.module:callable")
    module_name, attribute = path.split(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: a module in the current folder is importable
    try:
        target = importlib.import_module(module_name)
    except Exception as err:  # the user's module may raise anything while it imports
        raise ValueError(f"cannot import {module_name}: {type(err).__name__}: {_first_line(err)}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"{module_name} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{path} is a {type(target).__name__}, not a callable that returns an nn.Module")
    return target


def takes_keyword(fn: Callable, name: str) -> bool:
    """Whether `fn` accepts the keyword argument `name` (or any keyword)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def build_entry_point(path: str, **kwargs) -> nn.Module:
    """Call the entry point; ValueError when it fails or returns something that is not an nn.Module."""
    fn = load_callable(path)
    try:
        model = fn(**kwargs)
    except Exception as err:
        raise ValueError(f"{path}({_kwargs_text(kwargs)}) failed: {type(err).__name__}: {_first_line(err)}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"{path} returned a {type(model).__name__}, not an nn.Module")
    return model


def _kwargs_text(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:200] if lines else ""
