"""A convolution's geometry, read off an nn.Conv2d: what a layer kind needs to know to replace it."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn


@dataclass(frozen=True)
class ConvSpec:
    """The attributes of an nn.Conv2d that decide which layer kinds can replace it (pairs are (height, width))."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: bool = False
    padding_mode: str = "zeros"

    @classmethod
    def of(cls, conv: nn.Conv2d) -> "ConvSpec":
        if isinstance(conv.padding, str):  # 'same' / 'valid': the numbers nn.Conv2d pads by at stride 1
            padding = tuple(0 if conv.padding == "valid" else d * (k - 1) // 2
                            for k, d in zip(conv.kernel_size, conv.dilation))
        else:
            padding = tuple(conv.padding)
        return cls(conv.in_channels, conv.out_channels, tuple(conv.kernel_size), tuple(conv.stride), padding,
                   tuple(conv.dilation), conv.groups, conv.bias is not None, conv.padding_mode)

    @property
    def k(self) -> int:
        """The kernel size of a square kernel (0 for a kh x kw kernel with kh != kw)."""
        return self.kernel[0] if self.kernel[0] == self.kernel[1] else 0

    @property
    def square(self) -> bool:
        """A square kernel with one stride, one padding and no dilation: the convs the variant layers take."""
        return (self.k > 0 and self.stride[0] == self.stride[1] and self.padding[0] == self.padding[1]
                and self.dilation == (1, 1) and self.padding_mode == "zeros")

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels

    def describe(self) -> str:
        """'64->128, 3x3, stride 2, pad 1' (and groups, dilation, padding mode where they are not plain)."""
        pair = lambda p: str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"  # noqa: E731
        text = (f"{self.in_channels}->{self.out_channels}, {self.kernel[0]}x{self.kernel[1]}, "
                f"stride {pair(self.stride)}, pad {pair(self.padding)}")
        if self.dilation != (1, 1):
            text += f", dilation {pair(self.dilation)}"
        if self.groups > 1:
            text += f", {self.groups} groups"
        if self.padding_mode != "zeros":
            text += f", {self.padding_mode} padding"
        return text
