"""Model registry in the timm style: families register constructors by name."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from models.layers.factory import ConvFactory, dense_conv

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_ALIASES = {"vgg_any": "vgg", "resnet_any": "resnet"}
_PADFREE: set[str] = set()  # families that take padfree=True (padding-free downsampling + hybrid stem)


def register_model(name: str, padfree: bool = False):
    def wrap(fn: Callable[..., nn.Module]):
        _MODELS[name] = fn
        if padfree:
            _PADFREE.add(name)
        return fn
    return wrap


def supports_padfree(arch: str) -> bool:
    return canonical_arch(arch) in _PADFREE


def padfree_archs() -> list[str]:
    return sorted(_PADFREE)


def list_models() -> list[str]:
    return sorted(_MODELS)


def canonical_arch(name: str) -> str:
    """Our name for an architecture, accepting the ASK reference aliases."""
    return _ALIASES.get(name, name)


def create_model(arch: str, depth: int | None = None, num_classes: int = 10,
                 conv_factory: ConvFactory = dense_conv, **kwargs) -> nn.Module:
    """Build a registered network; every conv goes through `conv_factory`."""
    arch = canonical_arch(arch)
    if arch not in _MODELS:
        raise KeyError(f"unknown architecture {arch!r} (have {', '.join(list_models())})")
    if depth is not None:
        kwargs["depth"] = depth
    return _MODELS[arch](num_classes=num_classes, conv_factory=conv_factory, **kwargs)
