"""Fast 1xN block-sparse backend: `taichi` (kernels_taichi.blocksparse).

The kernels read the module's block-CSR storage (values, crow_indices,
col_indices, out_order) as is, so the state_dict never changes. No
`decomposed` torch backend is registered: the one exact torch form that
skips pruned blocks (gather each block row's kept input channels, pad the
rows to the longest, one grouped conv with Cout/N groups) measured
0.17-0.96x of the dense conv on VGG-16's layers at batch 32 (the gathered
input is Cout/N * (1 - rate) times the input and oneDNN's grouped conv with
N=16 outputs per group is slow), never faster than `reference`.
"""
from __future__ import annotations

import torch

from models.layers.autotune import register_auto
from models.layers.blocksparse import BLOCKSPARSE_BACKENDS, BlockSparseConv2d


def _taichi_forward(m: BlockSparseConv2d, x: torch.Tensor) -> torch.Tensor:
    from kernels_taichi.blocksparse import blocksparse_conv2d  # imported on first use

    return blocksparse_conv2d(x, m.values, m.crow_indices, m.col_indices, m.out_order, m.stride, m.padding,
                              m.bias)


BLOCKSPARSE_BACKENDS["taichi"] = _taichi_forward
register_auto(BLOCKSPARSE_BACKENDS)
