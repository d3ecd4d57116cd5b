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

from models.layers.padfree import Classifier, ConvBlock, StemBlock
from models.registry import register_model
from models.resnet import RESNET_DEPTHS


def projection(in_channels: int, out_channels: int, stride: int, padfree: bool) -> nn.Module:
    if padfree and stride == 2:
        return nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, 2, 0, groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    return ConvBlock(in_channels, out_channels, 1, stride, act=None)


class StandardUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, padfree: bool):
        super().__init__()
        self.projection = None
        if in_channels != out_channels or stride != 1:
            self.projection = projection(in_channels, out_channels, stride, padfree)
        downsample = padfree and stride == 2
        self.conv1 = ConvBlock(in_channels, out_channels, 3, stride, 0 if downsample else 1, act="relu",
                               pool_branch=downsample)
        self.conv2 = ConvBlock(out_channels, out_channels, 3, act=None)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.projection(x) if self.projection is not None else x
        return self.relu(self.conv2(self.conv1(x)) + residual)


class ResNetProj(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3, padfree: bool = False):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.backbone = nn.Sequential()
        self.backbone.add_module("data_bn", nn.BatchNorm2d(in_channels))
        if padfree:
            init = StemBlock(in_channels, 16, "relu", residual=True)
        else:
            init = ConvBlock(in_channels, 16, 3, act="relu")
        self.backbone.add_module("init_unit", init)
        width = 16
        for s, channels in enumerate((16, 32, 64)):
            stage = nn.Sequential()
            for u in range(n):
                stride = 2 if u == 0 and s > 0 else 1
                stage.add_module(f"unit{u + 1}", StandardUnit(width, channels, stride, padfree))
                width = channels
            self.backbone.add_module(f"stage{s + 1}", stage)
        self.backbone.add_module("global_pool", nn.AdaptiveAvgPool2d(1))
        self.classifier = Classifier(width, num_classes)
        for m in self.backbone.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight)
        nn.init.xavier_normal_(self.classifier.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(x))


@register_model("resnet_proj", label="ResNet (proj.)", depths=RESNET_DEPTHS, default_depth=20,
                any_input_size=True, padfree=True)
def resnet_proj(depth: int = 20, **kwargs) -> ResNetProj:
    return ResNetProj(depth=depth, **kwargs)
