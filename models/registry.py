"""The model registry, as timm's and torchvision's: each family registers its builder with what it knows of itself.

A ModelInfo is the one home of an architecture's facts: its label, the
depths it offers and its default, its input shape and whether it takes
another, and whether it has the padding-free variant. create_model builds
the plain network (nn.Conv2d everywhere); a design swaps convolutions
afterwards, by module path (designer.networks.build).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn


@dataclass(frozen=True)
class ModelInfo:
    name: str
    build: Callable[..., nn.Module]  # build(depth=..., num_classes=..., padfree=...) -> the plain network
    label: str  # as the app shows it
    depths: tuple[int, ...] = ()  # the depths the app offers (the builder checks any other); () = fixed depth
    default_depth: int = 0
    input_shape: tuple[int, int, int] = (3, 32, 32)  # (C, H, W) the family is defined at
    any_input_size: bool = False  # True: global pooling, so any H x W of at least 32 works
    padfree: bool = False  # takes padfree=True (hybrid stem + padding-free downsampling)
    aliases: tuple[str, ...] = ()  # other names accepted for it (the ASK code's vgg_any, resnet_any)

    def depth_or_default(self, depth: int | None) -> int:
        return self.default_depth if depth is None else depth


_MODELS: dict[str, ModelInfo] = {}
_ALIASES: dict[str, str] = {}


def register_model(name: str, *, label: str, depths: tuple[int, ...] = (), default_depth: int = 0,
                   input_shape: tuple[int, int, int] = (3, 32, 32), any_input_size: bool = False,
                   padfree: bool = False, aliases: tuple[str, ...] = ()):
    """Decorator: register a family's builder under `name`; a name (or alias) taken twice is refused."""
    def wrap(fn: Callable[..., nn.Module]):
        for taken in (name, *aliases):
            if taken in _MODELS or taken in _ALIASES:
                raise ValueError(f"the model name {taken!r} is registered twice")
        _MODELS[name] = ModelInfo(name, fn, label, depths, default_depth, input_shape, any_input_size, padfree,
                                  aliases)
        _ALIASES.update({alias: name for alias in aliases})
        return fn
    return wrap


def canonical_arch(name: str) -> str:
    """Our name for an architecture, accepting the ASK reference aliases."""
    return _ALIASES.get(name, name)


def model_info(name: str) -> ModelInfo:
    """KeyError (naming the registered models) for a name that is not registered."""
    arch = canonical_arch(name)
    if arch not in _MODELS:
        raise KeyError(f"unknown architecture {name!r} (have {', '.join(list_models())})")
    return _MODELS[arch]


def list_models() -> list[str]:
    """Registered names in registration order (the app's menu order)."""
    return list(_MODELS)


def padfree_archs() -> list[str]:
    return [name for name, info in _MODELS.items() if info.padfree]


def supports_padfree(arch: str) -> bool:
    return canonical_arch(arch) in padfree_archs()


def create_model(arch: str, depth: int | None = None, num_classes: int = 10, padfree: bool = False) -> nn.Module:
    """The plain network of a registered family (ValueError from the family for a depth it does not have)."""
    info = model_info(arch)
    kwargs = {"padfree": True} if padfree else {}
    if padfree and not info.padfree:
        raise ValueError(f"padding-free downsampling is defined for {', '.join(padfree_archs())}, not {info.name}")
    return info.build(depth=info.depth_or_default(depth), num_classes=num_classes, **kwargs)
