"""HetConv in Taichi: one fused kernel, 3x3 over the group's channels + 1x1 over the rest.

Filter o of group g = o // (Cout/P) has 3x3 kernels on input channels
[g*Cin/P, (g+1)*Cin/P) (weight3 (Cout, Cin/P, 3, 3)) and a 1x1 kernel on
the centre tap of every other channel (weight1 (Cout, Cin - Cin/P), the
complementary channels in increasing order). The pattern goes to the
generic table-driven kernels of kernels_taichi.sparse_conv: each tile of CB
output channels of one group loops over its 9*Cin/P + Cin - Cin/P entries,
so the work is exactly the effective MACs (no zero block diagonal), and the
input gradient runs the transposed pattern the same way.
"""
from __future__ import annotations

import functools
from math import gcd

import torch

from kernels_taichi.sparse_conv import build_plan, lanes_for, sparse_conv2d


@functools.lru_cache(maxsize=256)
def hetconv_plan(cin: int, cout: int, part: int, stride: int, padding: int, device: str = "cpu"):
    """The cached tables of a HetConv layer (they depend only on its sizes)."""
    ib, ob = cin // part, cout // part
    o = torch.arange(cout).view(cout, 1)
    c = torch.arange(cin).view(1, cin)
    g_out, g_in = o // ob, c // ib
    index = torch.full((cout, cin, 3, 3), -1, dtype=torch.int64)
    own = (g_out == g_in).expand(cout, cin)
    taps = torch.arange(9).view(1, 1, 3, 3)
    w3 = ((o * ib + (c - g_out * ib)) * 9).view(cout, cin, 1, 1) + taps
    index = torch.where(own.view(cout, cin, 1, 1), w3, index)
    # the complementary channel c of filter o is column c - ib if c is past block g, else c
    column = torch.where(c > g_out * ib, c - ib, c)
    w1 = cout * ib * 9 + o * (cin - ib) + column
    centre = torch.where(own, index[:, :, 1, 1], w1)
    index[:, :, 1, 1] = centre
    zero = cout * ib * 9 + cout * (cin - ib)
    cb = lanes_for(gcd(ob, 32))
    return build_plan(index.to(device), 3, stride, padding, cb, zero)


def hetconv2d(x: torch.Tensor, weight3: torch.Tensor, weight1: torch.Tensor, part: int, stride: int = 1,
              padding: int = 1, bias: torch.Tensor | None = None) -> torch.Tensor:
    """HetConv forward (differentiable in x, weight3, weight1; hand-written backward).

    x: (N, Cin, H, W) float32; weight3: (Cout, Cin/P, 3, 3); weight1:
    (Cout, Cin - Cin/P). Returns (N, Cout, Ho, Wo) in channels-last memory format.
    """
    cout, cin = weight3.shape[0], x.shape[1]
    if weight3.shape[1] * part != cin or weight1.shape != (cout, cin - cin // part):
        raise ValueError(f"weights {tuple(weight3.shape)} and {tuple(weight1.shape)} do not fit "
                         f"{cin} input channels with part {part}")
    plan = hetconv_plan(cin, cout, part, stride, padding, str(x.device))
    y = sparse_conv2d(x, [weight3, weight1], plan)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y
