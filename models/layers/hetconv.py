"""HetConv (Singh et al., CVPR 2019): each filter mixes 3x3 and 1x1 kernels.

Filter o belongs to group g = o // (Cout/P); it applies 3x3 kernels to the
input channels of block g (Cin/P channels) and 1x1 kernels to all the other
channels. Only those effective weights are stored: a grouped 3x3 weight
(Cout, Cin/P, 3, 3) and a 1x1 weight (Cout, Cin - Cin/P) over the
complementary channels in increasing channel order, so parameter counts are
real. The public implementation adds a dense 1x1 conv whose block diagonal
is held at zero; the `reference` backend here never computes that block:
it gathers each group's complementary channels and runs one grouped 1x1.
Faster backends register in HETCONV_BACKENDS and must give the same numbers.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.layers.backend_choice import BackendChoice

# name -> forward(module, x); fast backends add themselves.
HETCONV_BACKENDS: dict[str, Callable[["HetConv2d", torch.Tensor], torch.Tensor]] = {}


def complement_index(in_channels: int, part: int) -> torch.Tensor:
    """For each group g in order, the input channels outside block g (increasing)."""
    block = in_channels // part
    return torch.tensor([c for g in range(part) for c in range(in_channels) if c // block != g], dtype=torch.long)


class HetConv2d(BackendChoice):
    """3x3 HetConv with part P (stride any, padding 0 or 1)."""

    BACKENDS = HETCONV_BACKENDS
    KIND = "HetConv"

    def __init__(self, in_channels: int, out_channels: int, part: int, stride: int = 1, padding: int = 1,
                 bias: bool = False, backend: str = "reference"):
        super().__init__()
        if part < 1 or in_channels % part or out_channels % part:
            raise ValueError(f"part {part} must divide both {in_channels} input and {out_channels} output channels")
        if padding not in (0, 1):
            raise ValueError(f"a 3x3 HetConv pads by 0 or 1, got {padding}")
        self.in_channels, self.out_channels, self.part = in_channels, out_channels, part
        self.kernel_size, self.stride, self.padding = 3, stride, padding
        self.weight3 = nn.Parameter(torch.empty(out_channels, in_channels // part, 3, 3))
        self.weight1 = nn.Parameter(torch.empty(out_channels, in_channels - in_channels // part))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.register_buffer("gather", complement_index(in_channels, part), persistent=False)
        self.backend = backend
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # As the public code: kaiming normal, fan_out, on both parts.
        nn.init.normal_(self.weight3, 0.0, math.sqrt(2.0 / (9 * self.out_channels)))
        nn.init.normal_(self.weight1, 0.0, math.sqrt(2.0 / self.out_channels))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    @property
    def active_weights(self) -> int:
        return self.weight3.numel() + self.weight1.numel()

    def dense_weight(self) -> torch.Tensor:
        """The equivalent 3x3 weight (Cout, Cin, 3, 3), zero where the filter has no kernel; differentiable."""
        out_block, in_block = self.out_channels // self.part, self.in_channels // self.part
        full = self.weight3.new_zeros(self.out_channels, self.in_channels, 3, 3)
        comp = self.gather.view(self.part, -1)
        for g in range(self.part):
            rows = slice(g * out_block, (g + 1) * out_block)
            full[rows, g * in_block:(g + 1) * in_block] = self.weight3[rows]
            if self.part > 1:
                full[rows, comp[g], 1, 1] = self.weight1[rows]
        return full

    @torch.no_grad()
    def set_from_dense(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Keep the parts of a dense (Cout, Cin, 3, 3) kernel this layer has (its 3x3 block, the 1x1 centres)."""
        if tuple(weight.shape) != (self.out_channels, self.in_channels, 3, 3):
            raise ValueError(f"a dense weight of this layer is {(self.out_channels, self.in_channels, 3, 3)}, "
                             f"got {tuple(weight.shape)}")
        out_block, in_block = self.out_channels // self.part, self.in_channels // self.part
        comp = self.gather.view(self.part, -1)
        for g in range(self.part):
            rows = slice(g * out_block, (g + 1) * out_block)
            self.weight3[rows] = weight[rows, g * in_block:(g + 1) * in_block]
            if self.part > 1:
                self.weight1[rows] = weight[rows][:, comp[g], 1, 1]
        if self.bias is not None:
            self.bias.copy_(bias if bias is not None else torch.zeros_like(self.bias))

    @torch.no_grad()
    def scale_outputs_(self, scale: torch.Tensor) -> None:
        """Multiply output channel o by scale[o] (an eval BatchNorm folded in: models.fold)."""
        self.weight3.mul_(scale[:, None, None, None])
        self.weight1.mul_(scale[:, None])
        if self.bias is not None:
            self.bias.mul_(scale)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, part={self.part}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}, backend={self._backend}")


def _reference_forward(m: HetConv2d, x: torch.Tensor) -> torch.Tensor:
    y = F.conv2d(x, m.weight3, m.bias, m.stride, m.padding, groups=m.part)
    if m.part == 1:
        return y
    crop = 1 - m.padding  # the 1x1 kernel sits on the centre tap
    if crop:
        x = x[..., crop:x.shape[-2] - crop, crop:x.shape[-1] - crop]
    x = x[..., ::m.stride, ::m.stride].index_select(1, m.gather)
    return y + F.conv2d(x, m.weight1.view(m.out_channels, -1, 1, 1), groups=m.part)


HETCONV_BACKENDS["reference"] = _reference_forward
