"""Fast 1xN block-sparse backends: `taichi` (kernels_taichi.blocksparse) and `sconv` (kernels_taichi.sconv_layers).

The kernels read the module's block-CSR storage (values, crow_indices,
col_indices, out_order) as is, so the state_dict never changes. No
`decomposed` torch backend is registered: the one exact torch form that
skips pruned blocks (gather each block row's kept input channels, pad the
rows to the longest, one grouped conv with Cout/N groups) measured
0.17-0.96x of the dense conv on VGG-16's layers at batch 32 (the gathered
input is Cout/N * (1 - rate) times the input and oneDNN's grouped conv with
N=16 outputs per group is slow), never faster than `reference`.

`sconv` (inference) runs each block row of N output channels (in out_order)
over its kept input channels only, on the C++ CPU kernel, and puts the
output channels back in place after it. It takes float32 CPU input with N a
multiple of 16, without gradients; training, other N, CUDA or float64 run
`reference` (the input gradient of a 1xN conv has no block structure the
kernel could skip, so a training step would gain little), and so does
everything when the kernel cannot build here (said once on stderr).
"""
from __future__ import annotations

import torch

from kernels_taichi import sconv
from models.layers.autotune import register_auto, sconv_usable, taichi_usable
from models.layers.blocksparse import BLOCKSPARSE_BACKENDS, BlockSparseConv2d
from models.layers.epilogue import Epilogue


def _taichi_forward(m: BlockSparseConv2d, x: torch.Tensor) -> torch.Tensor:
    from kernels_taichi.blocksparse import blocksparse_conv2d  # imported on first use

    return blocksparse_conv2d(x, m.values, m.crow_indices, m.col_indices, m.out_order, m.stride, m.padding,
                              m.bias)


def _sconv_forward(m: BlockSparseConv2d, x: torch.Tensor) -> torch.Tensor:
    return _sconv_with_epilogue(m, x, None)


def _sconv_with_epilogue(m: BlockSparseConv2d, x: torch.Tensor, epilogue: Epilogue | None) -> torch.Tensor:
    from kernels_taichi import sconv_layers

    params = [m.values] + ([m.bias] if m.bias is not None else [])
    wants_grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))
    if wants_grad or not sconv_layers.blocksparse_supported(m.block_n, x.dtype, x.device):
        if x.device.type == "cpu" and not wants_grad and not sconv.available():
            sconv.warn_fallback("the 1xN 'reference' backend")
        y = BLOCKSPARSE_BACKENDS["reference"](m, x)
        return y if epilogue is None else epilogue.apply(y)
    bias = m.bias if epilogue is None else epilogue.bias  # a folded layer has no bias of its own
    sources = [m.values, m.crow_indices, m.col_indices, m.out_order] + ([bias] if bias is not None else [])
    return sconv_layers.blocksparse_conv2d(x, m.dense_weight, m.crow_indices, m.col_indices, m.out_order,
                                           m.block_n, m.stride, m.padding, bias, sources,
                                           relu=epilogue is not None and epilogue.relu,
                                           residual=None if epilogue is None else epilogue.residual)


_sconv_forward.with_epilogue = _sconv_with_epilogue
_sconv_forward.usable = sconv_usable  # auto's candidates: sconv where it builds, Taichi where it does not
_taichi_forward.usable = taichi_usable

BLOCKSPARSE_BACKENDS["taichi"] = _taichi_forward
BLOCKSPARSE_BACKENDS["sconv"] = _sconv_forward
register_auto(BLOCKSPARSE_BACKENDS)
