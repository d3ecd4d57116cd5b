"""What follows a convolution once an eval BatchNorm is folded into it: + bias, + a residual, ReLU.

The inference form of a network (models.fold) hands this to the conv: the sconv backends run it in the
kernel's epilogue and dense convs in oneDNN's post-ops, so the output is written once instead of being
read and written again by a bias add, a BatchNorm, an add and a ReLU; any other backend runs it after
the conv, in torch. Inference only: none of the fused calls has autograd.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from models.layers.fused_add import onednn_runs

_CONV_POINTWISE = getattr(torch.ops.mkldnn, "_convolution_pointwise", None)


@dataclass(frozen=True, eq=False)
class Epilogue:
    """[relu](conv(x) + residual + bias); `residual` has the conv output's shape."""

    bias: torch.Tensor | None = None
    relu: bool = False
    residual: torch.Tensor | None = None

    def apply(self, y: torch.Tensor) -> torch.Tensor:
        """The epilogue in torch, on the conv's fresh output (in place when no gradient is wanted)."""
        in_place = not (torch.is_grad_enabled() and y.requires_grad)
        if self.bias is not None:
            bias = self.bias.view(1, -1, 1, 1)
            y = y.add_(bias) if in_place else y + bias
        if self.residual is not None:
            y = y.add_(self.residual) if in_place else y + self.residual
        if self.relu:
            y = y.relu_() if in_place else torch.relu(y)
        return y


def dense_conv(conv: nn.Conv2d, x: torch.Tensor, epilogue: Epilogue) -> torch.Tensor:
    """A plain conv (its own bias already folded into epilogue.bias) with the epilogue as oneDNN post-ops where
    torch itself would run the conv in oneDNN, else conv then epilogue in torch."""
    weight = conv.weight
    plain = (_CONV_POINTWISE is None or conv.bias is not None or conv.padding_mode != "zeros"
             or isinstance(conv.padding, str) or not onednn_runs(x, weight))
    if plain:
        return epilogue.apply(conv(x))
    args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
    unary = "relu" if epilogue.relu else "none"
    if epilogue.residual is None:
        return _CONV_POINTWISE(x, weight, epilogue.bias, *args, unary, [], "")
    return _CONV_POINTWISE.binary(x, epilogue.residual, weight, epilogue.bias, *args, "add", 1.0,
                                  "relu" if epilogue.relu else None, [], "")
