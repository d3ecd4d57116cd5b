"""1xN block-sparse convolution (Lin et al.): whole 1xN blocks of a kernel are pruned.

A block is N consecutive output channels x 1 input channel x the whole
kh x kw kernel. Viewing the weight as a (Cout, Cin*kh*kw) matrix, the blocks
are (N, kh*kw) tiles, so the kept weights are stored as block-CSR: values
(nnz, N, kh, kw), crow_indices (Cout/N + 1), col_indices (nnz). Only kept
blocks are parameters, so counts are real and the pattern stays fixed while
fine-tuning. With filter rearrangement the blocks group the filters in
`out_order` (sorted by L1 norm) rather than in their original order; the
output channels are not moved. Faster backends register in
BLOCKSPARSE_BACKENDS and must give the same numbers as `reference`.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from kernels_taichi.cache import cached_pack
from models.layers.backend_choice import BackendChoice
from models.layers.layout import inference_weight, memory_format

BLOCKSPARSE_BACKENDS: dict[str, Callable[["BlockSparseConv2d", torch.Tensor], torch.Tensor]] = {}


def kept_blocks(block_rows: int, in_channels: int, rate: float) -> int:
    """Blocks a layer keeps: all (block_rows x in_channels) but the int(blocks * rate) of least L1 norm."""
    return block_rows * in_channels - int(block_rows * in_channels * rate)


def block_mask(weight: torch.Tensor, block_n: int, rate: float, rearrange: bool = False):
    """(keep, order): keep[b, c] is False for the int(blocks * rate) blocks of least L1 norm.

    Blocks are taken over the filters in `order` (ascending L1 norm with
    rearrangement, else the identity), as the 1xN reference code does. The
    sort is stable: filters of equal norm keep their order, where the
    reference's torch.sort leaves ties in no defined order.
    """
    w = weight.detach()
    cout, cin = w.shape[:2]
    if rearrange:
        order = torch.sort(w.abs().reshape(cout, -1).sum(1), stable=True).indices
    else:
        order = torch.arange(cout, device=w.device)
    scores = w[order].abs().reshape(cout // block_n, block_n, cin, -1).sum((1, 3)).flatten()
    keep = torch.ones_like(scores, dtype=torch.bool)
    keep[torch.topk(scores, int(scores.numel() * rate), largest=False).indices] = False
    return keep.view(cout // block_n, cin), order


def element_mask(keep: torch.Tensor, order: torch.Tensor, block_n: int) -> torch.Tensor:
    """The (Cout, Cin) mask of kept kernels in the original filter order."""
    sorted_mask = keep.repeat_interleave(block_n, 0)
    return torch.empty_like(sorted_mask).index_copy_(0, order, sorted_mask)


class BlockSparseConv2d(BackendChoice):
    """A kh x kw conv (groups 1) whose weight keeps only the blocks of `keep`."""

    BACKENDS = BLOCKSPARSE_BACKENDS
    KIND = "block-sparse"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, block_n: int, rate: float,
                 rearrange: bool = False, stride: int = 1, padding: int | None = None, bias: bool = False,
                 backend: str = "reference"):
        super().__init__()
        if block_n < 1 or out_channels % block_n:
            raise ValueError(f"N = {block_n} must divide the {out_channels} output channels")
        if not 0 <= rate < 1:
            raise ValueError(f"the prune rate must be in [0, 1), got {rate}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding = stride, kernel_size // 2 if padding is None else padding
        self.block_n, self.rate, self.rearrange = block_n, rate, rearrange
        rows = out_channels // block_n
        nnz = kept_blocks(rows, in_channels, rate)
        self.values = nn.Parameter(torch.empty(nnz, block_n, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer("crow_indices", torch.zeros(rows + 1, dtype=torch.long))
        self.register_buffer("col_indices", torch.zeros(nnz, dtype=torch.long))
        self.register_buffer("out_order", torch.arange(out_channels))
        self.backend = backend

    @property
    def active_weights(self) -> int:
        return self.values.numel()

    @torch.no_grad()
    def set_from_dense(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Compute the mask from `weight` (Cout, Cin, kh, kw) and keep its blocks: the one place masks are made.

        The bias (when the layer has one) is `bias`, or zero without one.
        """
        keep, order = block_mask(weight, self.block_n, self.rate, self.rearrange)
        rows, cols = keep.nonzero(as_tuple=True)
        blocks = weight[order].view(-1, self.block_n, self.in_channels, self.kernel_size, self.kernel_size)
        self.values.copy_(blocks[rows, :, cols])
        self.crow_indices.copy_(F.pad(keep.sum(1).cumsum(0), (1, 0)))
        self.col_indices.copy_(cols)
        self.out_order.copy_(order)
        if self.bias is not None:
            self.bias.copy_(bias if bias is not None else torch.zeros_like(self.bias))

    def block_rows(self) -> torch.Tensor:
        """The block row of each stored block (expands crow_indices)."""
        positions = torch.arange(self.col_indices.numel(), device=self.col_indices.device)
        return torch.searchsorted(self.crow_indices[1:], positions, right=True)

    def keep(self) -> torch.Tensor:
        """The (Cout/N, Cin) block mask, in `out_order`."""
        keep = torch.zeros(self.out_channels // self.block_n, self.in_channels, dtype=torch.bool,
                           device=self.col_indices.device)
        keep[self.block_rows(), self.col_indices] = True
        return keep

    def dense_weight(self, layout: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """The masked dense weight (Cout, Cin, kh, kw) in the original filter order, in `layout` (channels_last
        for an input in it: oneDNN reorders a weight of the other layout at every call); differentiable.

        One scatter of the stored values by a cached index (its backward one gather): a training step
        builds it at every call, and the block-wise build took 6.5 ms with its backward for a 512x512 3x3
        layer, a tenth of that layer's step at batch 64."""
        k, cout, cin = self.kernel_size, self.out_channels, self.in_channels
        last = layout == torch.channels_last
        index = cached_pack(("blocksparse_scatter", last), [self.crow_indices, self.col_indices, self.out_order],
                            lambda: self._scatter_index(last))
        flat = self.values.new_zeros(cout * cin * k * k).index_copy(0, index, self.values.reshape(-1))
        return flat.view(cout, k, k, cin).permute(0, 3, 1, 2) if last else flat.view(cout, cin, k, k)

    def _scatter_index(self, channels_last: bool) -> torch.Tensor:
        """For each stored value (block i, filter j of the block, tap t), its place in the flat dense weight:
        (filter, channel, tap) order, or (filter, tap, channel) for channels_last."""
        taps = self.kernel_size * self.kernel_size
        filters = self.out_order.view(-1, self.block_n)[self.block_rows()]  # (nnz, N): original filter numbers
        tap = torch.arange(taps, device=filters.device)
        if channels_last:
            first = filters * taps * self.in_channels + self.col_indices[:, None]
            return (first[:, :, None] + tap * self.in_channels).reshape(-1)
        first = (filters * self.in_channels + self.col_indices[:, None]) * taps
        return (first[:, :, None] + tap).reshape(-1)

    @torch.no_grad()
    def scale_outputs_(self, scale: torch.Tensor) -> None:
        """Multiply output channel o by scale[o] (an eval BatchNorm folded in: models.fold); the mask stays."""
        per_block = scale[self.out_order].view(-1, self.block_n)[self.block_rows()]
        self.values.mul_(per_block[:, :, None, None])
        if self.bias is not None:
            self.bias.mul_(scale)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A dense checkpoint (prefix + "weight"): the mask is computed from its weights.
        dense = state_dict.get(prefix + "weight")
        if dense is not None and prefix + "values" not in state_dict:
            if dense.shape != (self.out_channels, self.in_channels, self.kernel_size, self.kernel_size):
                raise RuntimeError(f"{prefix}weight: shape {tuple(dense.shape)} does not fit this layer")
            self.set_from_dense(dense.to(self.values.device, self.values.dtype))
            del state_dict[prefix + "weight"]
            for name, tensor in self.state_dict(prefix=prefix, keep_vars=False).items():
                state_dict.setdefault(name, tensor)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, stride={self.stride}, "
                f"N={self.block_n}, rate={self.rate}, rearrange={self.rearrange}, blocks={self.col_indices.numel()}, "
                f"backend={self._backend}")


def _reference_forward(m: BlockSparseConv2d, x: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() and m.values.requires_grad:
        weight = m.dense_weight(memory_format(x))
    else:  # inference: build the masked kernel once per weight update, not once per call
        weight = inference_weight("blocksparse_reference", [m.values, m.crow_indices, m.col_indices, m.out_order],
                                  x, m.dense_weight)
    return F.conv2d(x, weight, m.bias, m.stride, m.padding)


BLOCKSPARSE_BACKENDS["reference"] = _reference_forward
