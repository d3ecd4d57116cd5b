"""out += conv2d(x, weight), in place, in one oneDNN call where it can.

The decomposed backends sum several convolutions into one output. As a conv
followed by an add, each extra conv costs one more pass over the output in
memory, which on large activations (batch 128 at 32x32x64: 33 MB) takes as
long as a 1x3 conv itself. oneDNN can instead add the conv's result into the
output as it writes it (the binary `add` post-op behind
torch.ops.mkldnn._convolution_pointwise_). That op has no autograd, so it
serves CPU float32 inference only, and only where torch itself would run
the conv in oneDNN; anything else takes the plain path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_CONV_ADD_ = getattr(torch.ops.mkldnn, "_convolution_pointwise_", None)


# torch's own rule (use_mkldnn in ATen's Convolution.cpp): below this many input values a single
# image runs faster in torch's native conv than in oneDNN; measured here too (VGG-16's 512x4x4
# layer: native conv + add 1.6x faster than dense, the oneDNN in-place add only 1.1x).
_MIN_ONEDNN_SINGLE_IMAGE = 20480


def onednn_runs(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True where torch would run conv2d(x, weight) in oneDNN for inference (CPU float32, no gradient)."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    return (torch.backends.mkldnn.is_available() and not needs_grad and x.device.type == "cpu"
            and x.dtype == weight.dtype == torch.float32
            and (x.shape[0] > 1 or x[0].numel() > _MIN_ONEDNN_SINGLE_IMAGE))


def _fusable(out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> bool:
    needs_grad = torch.is_grad_enabled() and out.requires_grad
    return _CONV_ADD_ is not None and not needs_grad and out.dtype == torch.float32 and onednn_runs(x, weight)


def add_conv_(out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: int,
              padding: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> torch.Tensor:
    """Add conv2d(x, weight) (no bias) to `out` in place; `out` must have the conv's output shape."""
    if _fusable(out, x, weight):
        return _CONV_ADD_.binary(out, x, weight, None, list(padding), [stride, stride], list(dilation), 1,
                                 "add", 1.0, None, [], None)
    return out.add_(F.conv2d(x, weight, stride=stride, padding=padding, dilation=dilation))
