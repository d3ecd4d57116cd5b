"""ASK convolution in Taichi: any taps per output-channel group, forward and backward.

A layer is plain data: `taps[g]` lists the (row, col) offsets of group g's
active taps in the k x k kernel, `weights[g]` is (Cout_g, Cin, len(taps[g]))
in the same tap order; padding is k // 2. That is one fixed sparsity pattern,
so the layer runs on the generic table-driven kernels of
kernels_taichi.sparse_conv (register-tiled, no atomics, hand-written
gradients; a gradient denser than its BACKWARD_MAX_DENSITY runs as
oneDNN/cuDNN's dense one): each tile of output channels of one group loops
over its Cin x len(taps[g]) entries, so the work is the active MACs.
"""
from __future__ import annotations

import functools
from math import gcd
from typing import Sequence

import torch

from kernels_taichi.sparse_conv import build_plan, lanes_for, sparse_conv2d

Taps = tuple[tuple[tuple[int, int], ...], ...]


@functools.lru_cache(maxsize=256)
def ask_plan(cin: int, group_out: int, taps: Taps, k: int, stride: int, device: str = "cpu"):
    """The cached tables of an ASK layer (they depend only on its sizes and taps)."""
    index = torch.full((len(taps) * group_out, cin, k, k), -1, dtype=torch.int64)
    start = 0
    for g, group in enumerate(taps):
        count = group_out * cin * len(group)
        positions = torch.arange(start, start + count).view(group_out, cin, len(group))
        for t, (r, q) in enumerate(group):
            index[g * group_out:(g + 1) * group_out, :, r, q] = positions[:, :, t]
        start += count
    return build_plan(index.to(device), k, stride, k // 2, lanes_for(gcd(group_out, 32)), start)


def ask_conv2d(x: torch.Tensor, weights: Sequence[torch.Tensor], taps: Sequence[Sequence[tuple[int, int]]],
               k: int, stride: int = 1) -> torch.Tensor:
    """Sparse k x k convolution (padding k//2): output block g uses weights[g] on taps[g].

    x: (N, Cin, H, W) float32; weights[g]: (Cout_g, Cin, len(taps[g])), all groups
    the same Cout_g. Differentiable in x and the weights (hand-written backward).
    Returns (N, G*Cout_g, Ho, Wo) in channels-last memory format.
    """
    if len({w.shape[0] for w in weights}) != 1:
        raise ValueError("all groups of an ASK conv need the same number of output channels")
    frozen = tuple(tuple((int(r), int(c)) for r, c in group) for group in taps)
    plan = ask_plan(x.shape[1], weights[0].shape[0], frozen, k, stride, str(x.device))
    return sparse_conv2d(x, list(weights), plan)
