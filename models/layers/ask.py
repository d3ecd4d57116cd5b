"""Any-shape kernel (ASK) convolution: a k x k conv that keeps only some taps.

A shape is any object with `taps` (tap numbers 1..k*k, row-major over the
kernel: designer.designs.shapes.KernelShape) and `k`.
Output channels are split equally among the shapes, in order (ASK
semantics); block g of the output sees only the taps of shape g. Only the
active taps' weights are stored, one (Cout_g, Cin, taps_g) tensor per shape,
so parameter counts are real. The `reference` backend builds the masked
k x k kernel (once per weight update when gradients are off) and runs one
dense conv; autograd gives the backward. Faster
backends register in ASK_BACKENDS and must give the same numbers.
"""
from __future__ import annotations

import math
from typing import Callable, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.layers.backend_choice import BackendChoice
from models.layers.layout import inference_weight


class Shape(Protocol):
    """What the layer needs of a kernel shape (designer.designs.shapes.KernelShape is one)."""

    taps: tuple[int, ...]
    k: int


# name -> forward(module, x); later backends (decomposed, taichi) add themselves.
ASK_BACKENDS: dict[str, Callable[["AskConv2d", torch.Tensor], torch.Tensor]] = {}


class AskConv2d(BackendChoice):
    """k x k convolution (padding k//2, optional bias) restricted to the given shapes.

    Backends compute the convolution without the bias; forward adds it."""

    BACKENDS = ASK_BACKENDS
    KIND = "ASK"

    def __init__(self, in_channels: int, out_channels: int, shapes,
                 stride: int = 1, bias: bool = False, backend: str = "reference"):
        super().__init__()
        if not shapes:
            raise ValueError("an ASK conv needs at least one shape")
        k = shapes[0].k
        if any(s.k != k for s in shapes):
            raise ValueError("all shapes of one ASK conv must have the same kernel size")
        if out_channels % len(shapes):
            raise ValueError(f"{out_channels} output channels cannot be split among {len(shapes)} shapes")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = k, stride, k // 2
        self.shapes = list(shapes)
        self.group_out = out_channels // len(shapes)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(self.group_out, in_channels, len(s))) for s in self.shapes
        )
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.backend = backend
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # As the ASK reference initialises its 1x1 convs: N(0, sqrt(2 / out_channels_of_the_1x1)).
        std = math.sqrt(2.0 / self.group_out)
        for w in self.weights:
            nn.init.normal_(w, 0.0, std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    @property
    def active_weights(self) -> int:
        """Number of stored (active) weights: what MAC counts multiply by Ho*Wo."""
        return sum(w.numel() for w in self.weights)

    def dense_weight(self) -> torch.Tensor:
        """The equivalent masked k x k weight (Cout, Cin, k, k); differentiable."""
        k = self.kernel_size
        blocks = []
        for shape, w in zip(self.shapes, self.weights):
            flat = w.new_zeros(self.group_out, self.in_channels, k * k)
            index = torch.tensor([t - 1 for t in shape.taps], device=w.device)
            flat = flat.index_copy(2, index, w)
            blocks.append(flat.view(self.group_out, self.in_channels, k, k))
        return torch.cat(blocks, 0)

    @torch.no_grad()
    def set_from_dense(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Keep the active taps of a dense (Cout, Cin, k, k) kernel: a trained kernel's start for this layer.

        The bias (when the layer has one) is `bias`, or zero without one."""
        k = self.kernel_size
        if tuple(weight.shape) != (self.out_channels, self.in_channels, k, k):
            raise ValueError(f"a dense weight of this layer is {(self.out_channels, self.in_channels, k, k)}, "
                             f"got {tuple(weight.shape)}")
        flat = weight.reshape(self.out_channels, self.in_channels, k * k)
        for g, (shape, w) in enumerate(zip(self.shapes, self.weights)):
            index = torch.tensor([t - 1 for t in shape.taps], device=weight.device)
            w.copy_(flat[g * self.group_out:(g + 1) * self.group_out].index_select(2, index))
        if self.bias is not None:
            self.bias.copy_(bias if bias is not None else torch.zeros_like(self.bias))

    @torch.no_grad()
    def scale_outputs_(self, scale: torch.Tensor) -> None:
        """Multiply output channel o by scale[o] (an eval BatchNorm folded in: models.fold)."""
        for g, w in enumerate(self.weights):
            w.mul_(scale[g * self.group_out:(g + 1) * self.group_out, None, None])
        if self.bias is not None:
            self.bias.mul_(scale)

    def extra_repr(self) -> str:
        shapes = ", ".join("[" + ",".join(map(str, s.taps)) + "]" for s in self.shapes)
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, stride={self.stride}, "
                f"shapes={shapes}, bias={self.bias is not None}, backend={self._backend}")


def _reference_forward(module: AskConv2d, x: torch.Tensor) -> torch.Tensor:
    weights = list(module.weights)
    if torch.is_grad_enabled() and any(w.requires_grad for w in weights):
        weight = module.dense_weight()
    else:  # inference: build the masked kernel once per weight update, not once per call
        weight = inference_weight("ask_reference", weights, x, module.dense_weight)
    return F.conv2d(x, weight, stride=module.stride, padding=module.padding)


ASK_BACKENDS["reference"] = _reference_forward
