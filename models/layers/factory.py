"""The one conv factory: every model asks it for each convolution.

Models describe a convolution with a ConvSpec and call `make_conv(spec)`,
never nn.Conv2d directly; a design passes its own factory to swap the
convolution (ASK, HetConv, 1xN, low-rank ...) without touching model code.
Models create their convolutions in forward order, so a spec's position in
the sequence of factory calls is the layer index of the design.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn


@dataclass(frozen=True)
class ConvSpec:
    """What a model needs from one convolution."""

    in_channels: int
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    padding: int | None = None  # None: kernel_size // 2 ("same" at stride 1)
    groups: int = 1
    bias: bool = False
    role: str = "conv"  # conv | first | depthwise | pointwise | shortcut | se | ...

    @property
    def pad(self) -> int:
        return self.kernel_size // 2 if self.padding is None else self.padding

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels


ConvFactory = Callable[[ConvSpec], nn.Module]


def dense_conv(spec: ConvSpec) -> nn.Conv2d:
    """The plain convolution a spec describes."""
    return nn.Conv2d(
        spec.in_channels, spec.out_channels, spec.kernel_size, stride=spec.stride,
        padding=spec.pad, groups=spec.groups, bias=spec.bias,
    )


class RecordingFactory:
    """Builds dense convs and remembers every spec, in call order."""

    def __init__(self, inner: ConvFactory = dense_conv):
        self.inner = inner
        self.specs: list[ConvSpec] = []
        self.built: list[nn.Module] = []

    def __call__(self, spec: ConvSpec) -> nn.Module:
        module = self.inner(spec)
        self.specs.append(spec)
        self.built.append(module)
        return module
