"""BSConv's CIFAR ResNet-(6n+2) (cifar_resnet20 ...): 1x1 conv + BN projection shortcuts.

backbone = data_bn, init_unit (conv3x3 3->16, BN, ReLU), three stages of n
StandardUnits (16, 32, 64 channels; stages 2 and 3 start with stride 2),
global average pool; classifier = 1x1 conv with bias. A unit computes its
projection shortcut (1x1 conv stride s + BN, when the shape changes) first,
then conv3x3-BN-ReLU, conv3x3-BN, add, ReLU.
With `padfree` (Padding-free Downsampling and Hybrid Stem code): the hybrid
stem (ReLU, residual) replaces init_unit; the stride-2 3x3 conv has padding 0
and adds a MaxPool2d(3, 2, 0) branch through a 1x1 conv; the stride-2
projection becomes depthwise 3x3 s2 p0 + BN + 1x1 + BN.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from models.layers.factory import ConvFactory, ConvSpec, dense_conv
from models.layers.padfree import ConvBlock, StemBlock
from models.mobilenet import Classifier
from models.registry import register_model


def projection(in_channels: int, out_channels: int, stride: int, conv_factory: ConvFactory,
               padfree: bool) -> nn.Module:
    if padfree and stride == 2:
        return nn.Sequential(
            conv_factory(ConvSpec(in_channels, in_channels, 3, 2, 0, groups=in_channels, role="depthwise")),
            nn.BatchNorm2d(in_channels),
            conv_factory(ConvSpec(in_channels, out_channels, 1, role="shortcut")),
            nn.BatchNorm2d(out_channels),
        )
    return ConvBlock(ConvSpec(in_channels, out_channels, 1, stride, role="shortcut"), conv_factory, None)


class StandardUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, conv_factory: ConvFactory, padfree: bool):
        super().__init__()
        self.projection = None
        if in_channels != out_channels or stride != 1:
            self.projection = projection(in_channels, out_channels, stride, conv_factory, padfree)
        downsample = padfree and stride == 2
        self.conv1 = ConvBlock(ConvSpec(in_channels, out_channels, 3, stride, 0 if downsample else 1),
                               conv_factory, "relu", pool_branch=downsample)
        self.conv2 = ConvBlock(ConvSpec(out_channels, out_channels, 3), conv_factory, None)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.projection(x) if self.projection is not None else x
        return self.relu(self.conv2(self.conv1(x)) + residual)


class ResNetProj(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10, conv_factory: ConvFactory = dense_conv,
                 in_channels: int = 3, padfree: bool = False):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.backbone = nn.Sequential()
        self.backbone.add_module("data_bn", nn.BatchNorm2d(in_channels))
        if padfree:
            init = StemBlock(in_channels, 16, conv_factory, "relu", residual=True)
        else:
            init = ConvBlock(ConvSpec(in_channels, 16, 3, role="first"), conv_factory, "relu")
        self.backbone.add_module("init_unit", init)
        width = 16
        for s, channels in enumerate((16, 32, 64)):
            stage = nn.Sequential()
            for u in range(n):
                stride = 2 if u == 0 and s > 0 else 1
                stage.add_module(f"unit{u + 1}", StandardUnit(width, channels, stride, conv_factory, padfree))
                width = channels
            self.backbone.add_module(f"stage{s + 1}", stage)
        self.backbone.add_module("global_pool", nn.AdaptiveAvgPool2d(1))
        self.classifier = Classifier(width, num_classes, conv_factory)
        for m in self.backbone.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight)
        if isinstance(self.classifier.conv, nn.Conv2d):
            nn.init.xavier_normal_(self.classifier.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(x))


@register_model("resnet_proj", padfree=True)
def resnet_proj(depth: int = 20, **kwargs) -> ResNetProj:
    return ResNetProj(depth=depth, **kwargs)
