"""BSConv-style conv blocks, with padding-free downsampling and the hybrid stem.

ConvBlock is BSConv's conv -> BN -> activation. With `pool_branch` it is the
padding-free downsampling block of the Padding-free Downsampling and Hybrid
Stem code: the stride-2 conv has less padding (the caller's spec) and a
parameter-free MaxPool2d(3, stride, 0) of the block's input is added to its
output, through a 1x1 conv when the widths differ (ResNets).
StemBlock is the hybrid stem that replaces the first conv. Classifier is
BSConv's 1x1 conv (with bias) on the pooled features.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def activation(name: str | None) -> nn.Module | None:
    """BSConv's activations; h-swish and h-sigmoid are nn.Hardswish/Hardsigmoid (same formulas)."""
    table = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, "hsigmoid": nn.Hardsigmoid}
    return None if name is None else table[name](inplace=True)


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | None = None, groups: int = 1, act: str | None = "relu", use_bn: bool = True,
                 pool_branch: bool = False):
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels) if use_bn else None
        self.activation = activation(act)
        self.pool = nn.MaxPool2d(3, stride, 0) if pool_branch else None
        self.pool_proj = None
        if pool_branch and in_channels != out_channels:
            self.pool_proj = nn.Conv2d(in_channels, out_channels, 1, bias=False)

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

    def __init__(self, in_channels: int, channels: int, act: str, residual: bool):
        super().__init__()
        self.stem_1 = ConvBlock(in_channels, channels, 3, act=act)
        self.stem_1_1 = ConvBlock(channels, channels, 3, groups=channels, act=act)
        self.stem_2p = nn.MaxPool2d(3, 1, 1)
        self.stem_3 = ConvBlock(2 * channels, channels, 1, act=act)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stem_1(x)
        out = self.stem_3(torch.cat((self.stem_1_1(a), self.stem_2p(a)), 1))
        return out + a if self.residual else out


class Classifier(nn.Module):
    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.conv(x), 1)
