"""Low-rank (accnn) convolution: a vertical kh x 1 conv then a horizontal 1 x kw conv.

W (N, C, kh, kw) ~ H * V with V (K, C, kh, 1) and H (N, K, 1, kw), the
factorisation of Tai et al. 2015 as MXNet's tools/accnn does it. Unlike that
tool the stride is kept: vertical stride on V, horizontal on H, so at full
rank the pair equals the original conv exactly. V has no bias (the tool's is
zero); H takes the original bias. The pair is a container of two nn.Conv2d,
so counting sees two convolutions.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def factorize(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(V, H) of rank `rank` from the SVD of W permuted to (C*kh, N*kw)."""
    n, c, kh, kw = weight.shape
    u, s, q = torch.linalg.svd(weight.detach().permute(1, 2, 0, 3).reshape(c * kh, n * kw), full_matrices=False)
    root = s[:rank].sqrt()
    v = (u[:, :rank] * root).T.reshape(rank, c, kh, 1)
    h = (q.T[:, :rank] * root).reshape(n, kw, 1, rank).permute(0, 3, 2, 1)
    return v.contiguous(), h.contiguous()


def max_rank(in_channels: int, out_channels: int, kernel_size: int) -> int:
    return min(in_channels * kernel_size, out_channels * kernel_size)


class LowRankConv2d(nn.Module):
    """A k x k conv (groups 1) as `v` (rank x C x k x 1) then `h` (N x rank x 1 x k)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, rank: int, stride: int = 1,
                 padding: int | None = None, bias: bool = False):
        super().__init__()
        if not 1 <= rank <= max_rank(in_channels, out_channels, kernel_size):
            raise ValueError(f"rank {rank} is out of range 1..{max_rank(in_channels, out_channels, kernel_size)}")
        pad = kernel_size // 2 if padding is None else padding
        self.in_channels, self.out_channels, self.kernel_size, self.rank = in_channels, out_channels, kernel_size, rank
        self.v = nn.Conv2d(in_channels, rank, (kernel_size, 1), stride=(stride, 1), padding=(pad, 0), bias=False)
        self.h = nn.Conv2d(rank, out_channels, (1, kernel_size), stride=(1, stride), padding=(0, pad), bias=bias)

    @torch.no_grad()
    def set_from_dense(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        v, h = factorize(weight, self.rank)
        self.v.weight.copy_(v)
        self.h.weight.copy_(h)
        if self.h.bias is not None:
            self.h.bias.copy_(bias if bias is not None else torch.zeros_like(self.h.bias))

    def dense_weight(self) -> torch.Tensor:
        """The product H * V as one (N, C, kh, kw) weight; differentiable."""
        return torch.einsum("nkb,kca->ncab", self.h.weight[:, :, 0], self.v.weight[..., 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(self.v(x))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A dense checkpoint (prefix + "weight"): decompose it at this layer's rank.
        dense = state_dict.get(prefix + "weight")
        if dense is not None and prefix + "v.weight" not in state_dict:
            if dense.shape != (self.out_channels, self.in_channels, self.kernel_size, self.kernel_size):
                raise RuntimeError(f"{prefix}weight: shape {tuple(dense.shape)} does not fit this layer")
            v, h = factorize(dense.float(), self.rank)
            state_dict[prefix + "v.weight"] = v
            state_dict[prefix + "h.weight"] = h
            del state_dict[prefix + "weight"]
            if prefix + "bias" in state_dict:
                state_dict[prefix + "h.bias"] = state_dict.pop(prefix + "bias")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"rank={self.rank}"
