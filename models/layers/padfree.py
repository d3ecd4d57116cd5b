"""BSConv-style conv blocks, with padding-free downsampling and the hybrid stem.

ConvBlock is BSConv's conv -> BN -> activation. With `pool_branch` it is the
padding-free downsampling block of the Padding-free Downsampling and Hybrid
Stem code: the stride-2 conv has less padding (the caller's spec) and a
parameter-free MaxPool2d(3, stride, 0) of the block's input is added to its
output, through a 1x1 conv when the widths differ (ResNets).
StemBlock is the hybrid stem that replaces the first conv.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from models.layers.factory import ConvFactory, ConvSpec


def activation(name: str | None) -> nn.Module | None:
    """BSConv's activations; h-swish and h-sigmoid are nn.Hardswish/Hardsigmoid (same formulas)."""
    table = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, "hsigmoid": nn.Hardsigmoid}
    return None if name is None else table[name](inplace=True)


class ConvBlock(nn.Module):
    def __init__(self, spec: ConvSpec, conv_factory: ConvFactory, act: str | None = "relu", use_bn: bool = True,
                 pool_branch: bool = False):
        super().__init__()
        self.conv = conv_factory(spec)
        self.bn = nn.BatchNorm2d(spec.out_channels) if use_bn else None
        self.activation = activation(act)
        self.pool = nn.MaxPool2d(3, spec.stride, 0) if pool_branch else None
        self.pool_proj = None
        if pool_branch and spec.in_channels != spec.out_channels:
            self.pool_proj = conv_factory(ConvSpec(spec.in_channels, spec.out_channels, 1, role="pool_proj"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        if self.activation is not None:
            y = self.activation(y)
        if self.pool is not None:
            branch = self.pool(x)
            y = y + (self.pool_proj(branch) if self.pool_proj is not None else branch)
        return y


def downsample_padding(kernel_size: int) -> int:
    """Padding of a padding-free stride-2 conv: 3x3 -> 0, 5x5 -> 1 (one less than 'same')."""
    return kernel_size // 2 - 1


class StemBlock(nn.Module):
    """a = conv3x3(in->C); out = conv1x1(cat(dw3x3(a), maxpool3x3 s1(a))) (+ a in ResNets); each conv + BN + act."""

    def __init__(self, in_channels: int, channels: int, conv_factory: ConvFactory, act: str, residual: bool):
        super().__init__()
        self.stem_1 = ConvBlock(ConvSpec(in_channels, channels, 3, role="first"), conv_factory, act)
        self.stem_1_1 = ConvBlock(ConvSpec(channels, channels, 3, groups=channels, role="depthwise"), conv_factory, act)
        self.stem_2p = nn.MaxPool2d(3, 1, 1)
        self.stem_3 = ConvBlock(ConvSpec(2 * channels, channels, 1, role="pointwise"), conv_factory, act)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stem_1(x)
        out = self.stem_3(torch.cat((self.stem_1_1(a), self.stem_2p(a)), 1))
        return out + a if self.residual else out
