"""1xN block-sparse convolution in Taichi (k x k, any stride and padding), forward and backward.

The kept weights come as block-CSR: values (nnz, N, k, k), crow_indices
(Cout/N + 1), col_indices (nnz): block row b holds the filters
out_order[b*N:(b+1)*N] and keeps the input channels col_indices[crow[b]:crow[b+1]].
The kernels run in block-row order (the filters as out_order lists them):
each tile of CB <= N output channels of one block row loops over the
block row's kept (channel, tap) entries, so the work is the kept MACs, and
the output channels are put back in their original order at the end when
the filters were rearranged. The transposed pattern (N x 1 blocks) is
nearly dense over any CB input channels, and at prune rates below 0.55 the
Taichi weight gradient is slower than oneDNN's dense one, so both
gradients fall back to the dense oneDNN/cuDNN ones unless the pattern is
sparse enough (kernels_taichi.sparse_conv.BACKWARD_MAX_DENSITY).
"""
from __future__ import annotations

import torch

from kernels_taichi.cache import cached_pack
from kernels_taichi.sparse_conv import BACKWARD_MAX_DENSITY, build_plan, lanes_for, sparse_conv2d


def _index(values: torch.Tensor, crow: torch.Tensor, col: torch.Tensor, cin: int) -> torch.Tensor:
    """(Cout, Cin, k, k) position of each weight in values.flatten() (rows in block order), -1 if pruned."""
    nnz, n, k = values.shape[0], values.shape[1], values.shape[2]
    rows = crow.numel() - 1
    device = col.device
    block_row = torch.searchsorted(crow[1:], torch.arange(nnz, device=device), right=True)
    index = torch.full((rows, n, cin, k, k), -1, dtype=torch.int64, device=device)
    positions = torch.arange(nnz * n * k * k, device=device).view(nnz, n, k, k)
    index[block_row, :, col] = positions
    return index.view(rows * n, cin, k, k)


def blocksparse_plan(values: torch.Tensor, crow_indices: torch.Tensor, col_indices: torch.Tensor, in_channels: int,
                     stride: int, padding: int, backward_max_density: float = BACKWARD_MAX_DENSITY):
    """The tables of a pattern, cached until crow/col change."""
    k, n = values.shape[2], values.shape[1]
    key = ("blocksparse_plan", tuple(values.shape), in_channels, stride, padding, backward_max_density)

    def build():
        index = _index(values, crow_indices, col_indices, in_channels)
        return build_plan(index, k, stride, padding, lanes_for(n), values.numel(),
                          backward_max_density)
    return cached_pack(key, (crow_indices, col_indices), build)


def blocksparse_conv2d(x: torch.Tensor, values: torch.Tensor, crow_indices: torch.Tensor, col_indices: torch.Tensor,
                       out_order: torch.Tensor | None = None, stride: int = 1, padding: int = 0,
                       bias: torch.Tensor | None = None,
                       backward_max_density: float = BACKWARD_MAX_DENSITY) -> torch.Tensor:
    """The block-sparse conv (differentiable in x and values; hand-written backward).

    out_order[i] is the original output channel of block-order filter i
    (None: the identity). Returns (N, Cout, Ho, Wo) in channels-last memory format.
    """
    if values.dim() != 4 or values.shape[2] != values.shape[3]:
        raise ValueError(f"values must be (nnz, N, k, k), got {tuple(values.shape)}")
    plan = blocksparse_plan(values, crow_indices, col_indices, x.shape[1], stride, padding,
                            backward_max_density)
    y = sparse_conv2d(x, [values], plan)
    if out_order is not None:
        inverse = cached_pack(("blocksparse_inverse",), (out_order,), lambda: torch.argsort(out_order))
        if not cached_pack(("blocksparse_identity",), (out_order,),
                           lambda: bool(torch.equal(out_order, torch.arange(out_order.numel(),
                                                                             device=out_order.device)))):
            y = y.index_select(1, inverse)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y
