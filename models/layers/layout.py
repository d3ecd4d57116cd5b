"""The memory format an activation arrives in, so cached weights can match it.

oneDNN runs a convolution in its input's layout and reorders a weight that
is in the other layout on every call (a full copy of the weight: 1.5 ms for
VGG's 512x512x3x3 at each call), so weights cached for inference are kept in
the layout of the input that uses them.
"""
from typing import Callable, Sequence

import torch

from kernels_taichi.cache import cached_pack


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last for an NHWC-strided 4-D tensor, else contiguous_format."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def inference_weight(key: str, sources: Sequence[torch.Tensor], x: torch.Tensor,
                     build: Callable[[], torch.Tensor]) -> torch.Tensor:
    """build(), detached and in x's layout, rebuilt only when one of `sources` changes."""
    layout = memory_format(x)
    return cached_pack((key, layout), sources, lambda: build().detach().contiguous(memory_format=layout))
