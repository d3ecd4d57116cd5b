"""CIFAR MobileNetV2 and MobileNetV3-large (w1) as the BSConv library builds them.

Layout (BSConv's cifar_mobilenetv2_w1 / cifar_mobilenetv3_large_w1):
backbone = data_bn (BatchNorm2d on the input), init_conv (3x3 stride 1),
stages of LinearBottlenecks (1x1 expand, depthwise kxk, optional SE, 1x1
project; residual when the shape is kept) with stage strides [1, 1, 2, 2, 2],
final 1x1 conv, global average pool; classifier = 1x1 conv with bias.
MobileNetV3 uses the lightweight head of the padding-free code (one 960-wide
final conv, no 1280 layer): that is the network whose counts the paper gives.
With `padfree` the first conv becomes the hybrid stem and every stride-2
depthwise conv loses padding and gains the max-pool branch.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from models.layers.padfree import Classifier, ConvBlock, StemBlock, activation, downsample_padding
from models.registry import register_model

CIFAR_STRIDES = [1, 1, 2, 2, 2]

V2 = dict(
    init=32, act="relu6", final=1280,
    channels=[[16], [24, 24], [32, 32, 32], [64, 64, 64, 64, 96, 96, 96], [160, 160, 160, 320]],
    mid=[[32], [96, 144], [144, 192, 192], [192, 384, 384, 384, 384, 576, 576], [576, 960, 960, 960]],
    kernels=[3, 3, 3, 3, 3], acts=["relu6"] * 5, se=None,
)
V3_LARGE = dict(
    init=16, act="hswish", final=960,
    channels=[[16], [24, 24], [40, 40, 40], [80, 80, 80, 80, 112, 112], [160, 160, 160]],
    mid=[[16], [64, 72], [72, 120, 120], [240, 200, 184, 184, 480, 672], [672, 960, 960]],
    kernels=[3, 3, 5, 3, 5], acts=["relu", "relu", "relu", "hswish", "hswish"],
    se=[[0], [0, 0], [1, 1, 1], [0, 0, 0, 0, 1, 1], [1, 1, 1]],
)


class SEUnit(nn.Module):
    """Squeeze-excite (BSConv): pool, 1x1 (C -> C/4, bias), ReLU, 1x1 (C/4 -> C, bias), h-sigmoid, scale."""

    def __init__(self, channels: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = nn.Conv2d(channels, channels // 4, 1, bias=True)
        self.activation1 = activation("relu")
        self.conv2 = nn.Conv2d(channels // 4, channels, 1, bias=True)
        self.activation2 = activation("hsigmoid")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.activation2(self.conv2(self.activation1(self.conv1(self.pool(x)))))


class LinearBottleneck(nn.Module):
    def __init__(self, in_channels: int, mid: int, out_channels: int, stride: int, act: str, kernel_size: int,
                 use_se: bool, padfree: bool):
        super().__init__()
        self.use_res_skip = in_channels == out_channels and stride == 1
        self.conv1 = ConvBlock(in_channels, mid, 1, act=act)
        downsample = padfree and stride == 2
        pad = downsample_padding(kernel_size) if downsample else kernel_size // 2
        self.conv2 = ConvBlock(mid, mid, kernel_size, stride, pad, groups=mid, act=act, pool_branch=downsample)
        self.se_unit = SEUnit(mid) if use_se else None
        self.conv3 = ConvBlock(mid, out_channels, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        if self.se_unit is not None:
            y = self.se_unit(y)
        y = self.conv3(y)
        return y + x if self.use_res_skip else y


class MobileNet(nn.Module):
    def __init__(self, cfg: dict, num_classes: int = 10, in_channels: int = 3, padfree: bool = False):
        super().__init__()
        self.backbone = nn.Sequential()
        self.backbone.add_module("data_bn", nn.BatchNorm2d(in_channels))
        width = cfg["init"]
        if padfree:
            stem = StemBlock(in_channels, width, cfg["act"], residual=False)
        else:
            stem = ConvBlock(in_channels, width, 3, act=cfg["act"])
        self.backbone.add_module("init_conv", stem)
        for s, stage_channels in enumerate(cfg["channels"]):
            stage = nn.Sequential()
            for u, out in enumerate(stage_channels):
                use_se = bool(cfg["se"] and cfg["se"][s][u])
                stage.add_module(f"unit{u + 1}", LinearBottleneck(
                    width, cfg["mid"][s][u], out, CIFAR_STRIDES[s] if u == 0 else 1, cfg["acts"][s],
                    cfg["kernels"][s], use_se, padfree))
                width = out
            self.backbone.add_module(f"stage{s + 1}", stage)
        self.backbone.add_module("final_conv", ConvBlock(width, cfg["final"], 1, act=cfg["act"]))
        self.backbone.add_module("global_pool", nn.AdaptiveAvgPool2d(1))
        self.classifier = Classifier(cfg["final"], num_classes)
        for m in self.backbone.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.xavier_normal_(self.classifier.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(x))


def _fixed_depth(name: str, depth: int) -> None:
    if depth != 0:
        raise ValueError(f"{name} has a fixed depth: give depth 0 (or leave --depth out), got {depth}")


@register_model("mobilenetv2", label="MobileNetV2", any_input_size=True, padfree=True)
def mobilenetv2(depth: int = 0, **kwargs) -> MobileNet:
    _fixed_depth("mobilenetv2", depth)
    return MobileNet(V2, **kwargs)


@register_model("mobilenetv3", label="MobileNetV3-large", any_input_size=True, padfree=True)
def mobilenetv3(depth: int = 0, **kwargs) -> MobileNet:
    _fixed_depth("mobilenetv3", depth)
    return MobileNet(V3_LARGE, **kwargs)
