"""Fast HetConv backends: `decomposed` (pure torch), `taichi` and `sconv` (kernels_taichi).

`decomposed` is the cheapest exact torch form measured on oneDNN (VGG-16
CIFAR shapes, P=4): one grouped 3x3 conv (groups=P) plus one dense 1x1 conv
whose (Cout, Cin) weight is weight1 scattered off the block diagonal (zeros
on it), summed in place, all in channels-last. The dense 1x1 does 1/P more
1x1 work than needed (8% of the layer at P=4) but is one GEMM-shaped call;
the reference's gather of the complementary channels copies the input P-1
times, and the NCHW 1x1 is slow on large images (per layer 1.3-5x slower
than this at batch 32). The scattered weight is differentiable (autograd masks
the diagonal's gradient) and is cached while gradients are off, when oneDNN
also adds the 1x1 into the 3x3's output in place (models.layers.fused_add);
the state_dict never changes.

`sconv` runs the layer on the C++ CPU kernel (kernels_taichi.sconv_layers):
per output group, the 8 off-centre taps over its input block and the centre
tap over all inputs, so the work is the effective MACs; forward, input and
weight gradients, any stride, padding 0 or 1, bias in the kernel's epilogue
for inference. It takes float32 CPU input with output groups (Cout / P) in
multiples of 16 channels and P > 1; anything else runs `decomposed`, and so
does everything when the kernel cannot build here (said once on stderr). With
input groups (Cin / P) not a multiple of 16 the input gradient comes from
torch's dense convolution backward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels_taichi import sconv
from kernels_taichi.cache import cached_pack
from models.layers.autotune import register_auto, sconv_usable, taichi_usable
from models.layers.epilogue import Epilogue
from models.layers.fused_add import add_conv_
from models.layers.hetconv import HETCONV_BACKENDS, HetConv2d


def _scatter_index(m: HetConv2d) -> torch.Tensor:
    """(Cout, Cin - Cin/P): for each filter, its complementary input channels."""
    groups = torch.arange(m.out_channels, device=m.gather.device) // (m.out_channels // m.part)
    return m.gather.view(m.part, -1)[groups]


def _dense_1x1(m: HetConv2d) -> torch.Tensor:
    index = cached_pack(("hetconv_index",), [m.gather], lambda: _scatter_index(m))
    w = m.weight1.new_zeros(m.out_channels, m.in_channels).scatter(1, index, m.weight1)
    return w.view(m.out_channels, m.in_channels, 1, 1)


def _decomposed_forward(m: HetConv2d, x: torch.Tensor) -> torch.Tensor:
    x = x.contiguous(memory_format=torch.channels_last)
    y = F.conv2d(x, m.weight3, m.bias, m.stride, m.padding, groups=m.part)
    if m.part == 1:
        return y
    if torch.is_grad_enabled() and m.weight1.requires_grad:
        w1 = _dense_1x1(m)
    else:
        w1 = cached_pack(("hetconv_1x1", id(m)), [m.weight1, m.gather], lambda: _dense_1x1(m).detach())
    crop = 1 - m.padding  # the 1x1 kernel sits on the centre tap
    if crop:
        x = x[..., crop:x.shape[-2] - crop, crop:x.shape[-1] - crop]
    return add_conv_(y, x, w1, m.stride, (0, 0))


def _taichi_forward(m: HetConv2d, x: torch.Tensor) -> torch.Tensor:
    from kernels_taichi.hetconv import hetconv2d  # imported on first use: keeps `import models` light

    return hetconv2d(x, m.weight3, m.weight1, m.part, m.stride, m.padding, m.bias)


def _sconv_forward(m: HetConv2d, x: torch.Tensor) -> torch.Tensor:
    from kernels_taichi import sconv_layers

    if m.part == 1 or not sconv_layers.hetconv_supported(m.in_channels, m.out_channels, m.part, x.dtype, x.device):
        if x.device.type == "cpu" and not sconv.available():
            sconv.warn_fallback("the HetConv 'decomposed' backend")
        return _decomposed_forward(m, x)
    return sconv_layers.hetconv2d(x, m.weight3, m.weight1, m.part, m.stride, m.padding, m.bias)


def _sconv_with_epilogue(m: HetConv2d, x: torch.Tensor, epilogue: Epilogue) -> torch.Tensor:
    from kernels_taichi import sconv_layers

    if m.part == 1 or not sconv_layers.hetconv_supported(m.in_channels, m.out_channels, m.part, x.dtype, x.device):
        return epilogue.apply(_sconv_forward(m, x))
    return sconv_layers.hetconv2d(x, m.weight3, m.weight1, m.part, m.stride, m.padding, epilogue.bias, epilogue.relu,
                                  epilogue.residual)


_sconv_forward.with_epilogue = _sconv_with_epilogue
_sconv_forward.usable = sconv_usable  # auto's candidates: sconv where it builds, Taichi where it does not
_taichi_forward.usable = taichi_usable

HETCONV_BACKENDS["decomposed"] = _decomposed_forward
HETCONV_BACKENDS["taichi"] = _taichi_forward
HETCONV_BACKENDS["sconv"] = _sconv_forward
register_auto(HETCONV_BACKENDS)
