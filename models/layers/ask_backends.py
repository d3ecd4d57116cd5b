"""Fast ASK backends: `decomposed` (pure torch), `taichi` and `sconv` (kernels_taichi).

`decomposed` splits each shape into a few dense sub-convolutions that oneDNN
and cuDNN run at full speed, e.g. the plus shape [2,4,5,6,8] = a 3x1 conv over
the middle column + a 1x2 conv with dilation 2 over the middle row, outputs
summed; oneDNN adds all but the first into the output in place
(models.layers.fused_add). Each sub-conv reads weights gathered from the
module's own, so the state_dict never changes; the gathered weights are
cached (not persistent) while gradients are off, and autograd gives exact
gradients.

`sconv` runs the layer on the C++ CPU kernel (kernels_taichi.sconv_layers):
forward, input gradient and weight gradient over the active taps only, any
stride. It takes float32 CPU input whose output groups (Cout / shapes) are
multiples of 16 channels; anything else (CUDA, float64, e.g. ResNet's
16-channel layers split 4 ways) runs `decomposed`, and so does everything
when the kernel cannot build here (said once on stderr). A layer with fewer
than 16 input channels (a first conv) runs `reference`, the masked dense
conv, which is faster there (SCONV_MIN_IN_CHANNELS); one whose input
channels are not a multiple of 16 takes its input gradient, when one is
wanted, from torch's dense convolution backward.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels_taichi import sconv
from kernels_taichi.cache import cached_pack
from models.layers.ask import ASK_BACKENDS, AskConv2d, Shape
from models.layers.autotune import register_auto, sconv_usable, taichi_usable
from models.layers.epilogue import Epilogue
from models.layers.fused_add import add_conv_
from models.layers.layout import memory_format

# Relative cost of launching one more sub-convolution, in taps (measured on
# oneDNN: the plus shape as 1x3 + 2x1 runs about 1.4x faster than a 3x3).
SUBCONV_OVERHEAD_TAPS = 1.5
# Below this many input channels oneDNN has no fast path for thin or dilated
# kernels (3 -> 64 at 32x32: 1x3 + 2x1 is 3-14x slower than the 3x3), so such
# layers run one masked conv over the bounding box.
MIN_CHANNELS_TO_SPLIT = 16
# Below this many input channels sconv's reductions (taps x channels) are too short to pay for its tiles, and the
# masked dense conv is faster: a 3 -> 16 ASK_5a layer at 32x32 (ResNet-20's stem) takes 0.60 / 2.58 ms on sconv
# at batch 32 / 128 and 0.37 / 1.48 ms as the masked conv (3 -> 64: 3.4 / 17.0 against 1.1 / 18.2 ms); at
# batch 1 sconv is 0.01-0.02 ms faster.
SCONV_MIN_IN_CHANNELS = 16


@dataclass(frozen=True)
class SubConv:
    """A dense (possibly dilated) kh x kw sub-kernel at (row, col) of the k x k kernel.

    `index` maps each of its kh*kw slots (row-major) to a position in the
    shape's tap list, or -1 for a slot that must stay zero.
    """

    row: int
    col: int
    kh: int
    kw: int
    dh: int
    dw: int
    index: tuple[int, ...]

    @property
    def cost(self) -> float:
        return self.kh * self.kw + SUBCONV_OVERHEAD_TAPS


def _progression(values: list[int]) -> int | None:
    """The common step of a sorted list if it is an arithmetic progression (1 for a single value)."""
    if len(values) == 1:
        return 1
    steps = {b - a for a, b in zip(values, values[1:])}
    return steps.pop() if len(steps) == 1 else None


def _line_plan(positions: list[tuple[int, int]]) -> list[SubConv]:
    """Group taps by row, then stack rows with the same columns (row-major plan)."""
    by_row: dict[int, tuple[int, ...]] = {}
    for r, c in sorted(positions):
        by_row[r] = by_row.get(r, ()) + (c,)
    by_cols: dict[tuple[int, ...], list[int]] = {}
    for r, cols in by_row.items():
        by_cols.setdefault(cols, []).append(r)
    where = {pos: i for i, pos in enumerate(positions)}
    plan = []
    for cols, rows in by_cols.items():
        row_groups = [rows] if _progression(rows) else [[r] for r in rows]
        dw = _progression(list(cols))
        col_grid = list(cols) if dw else list(range(cols[0], cols[-1] + 1))
        for group in row_groups:
            dh = _progression(group)
            index = tuple(where.get((r, c), -1) for r in group for c in col_grid)
            plan.append(SubConv(group[0], col_grid[0], len(group), len(col_grid), dh,
                                dw or 1, index))
    return plan


def _box_plan(positions: list[tuple[int, int]]) -> list[SubConv]:
    """One dense conv over the bounding box, zeros where taps are inactive."""
    rows = [r for r, _ in positions]
    cols = [c for _, c in positions]
    r0, c0 = min(rows), min(cols)
    where = {pos: i for i, pos in enumerate(positions)}
    kh, kw = max(rows) - r0 + 1, max(cols) - c0 + 1
    index = tuple(where.get((r0 + i, c0 + j), -1) for i in range(kh) for j in range(kw))
    return [SubConv(r0, c0, kh, kw, 1, 1, index)]


def _transpose(plan: list[SubConv], positions: list[tuple[int, int]]) -> list[SubConv]:
    """A plan made on the transposed shape, mapped back to the original taps."""
    where = {pos: i for i, pos in enumerate(positions)}
    out = []
    for s in plan:
        index = tuple(where.get((s.col + j * s.dw, s.row + i * s.dh), -1)
                      for j in range(s.kw) for i in range(s.kh))
        out.append(SubConv(s.col, s.row, s.kw, s.kh, s.dw, s.dh, index))
    return out


@functools.cache
def plan_shape(shape: Shape, in_channels: int = MIN_CHANNELS_TO_SPLIT) -> tuple[SubConv, ...]:
    """The cheapest exact split of a shape into dense sub-convolutions (by the cost model)."""
    positions = shape.positions
    if in_channels < MIN_CHANNELS_TO_SPLIT:
        return tuple(_box_plan(positions))
    transposed = [(c, r) for r, c in positions]
    candidates = [  # on a tie the first wins: column-first plans measured 3-30% faster on oneDNN
        _transpose(_line_plan(transposed), positions),  # (the plus as 3x1 + dilated 1x2 vs 1x3 + dilated 2x1)
        _line_plan(positions),
        _box_plan(positions),
    ]
    best = min(candidates, key=lambda plan: (sum(s.cost for s in plan), len(plan)))
    # The largest sub-conv writes the output, the others are added into it (measured faster that way).
    return tuple(sorted(best, key=lambda sub: -sub.kh * sub.kw))


def _padding(size: int, out: int, k: int, start: int, extent: int, stride: int) -> tuple[int, int]:
    """(symmetric padding, first output index to keep) placing a sub-kernel at `start`."""
    need = k // 2 - start  # zero rows needed above the sub-kernel's first tap
    pad = need
    while pad < 0 or (size + 2 * pad - extent) // stride + 1 - (pad - need) // stride < out:
        pad += stride
    return pad, (pad - need) // stride


def _sub_weight(weight: torch.Tensor, sub: SubConv) -> torch.Tensor:
    go, cin, taps = weight.shape
    step = _progression(list(sub.index)) if -1 not in sub.index else None
    if step and step > 0:  # a strided slice: its backward is a strided copy, not index_select's slow scatter-add
        return weight[:, :, sub.index[0]:sub.index[-1] + 1:step].reshape(go, cin, sub.kh, sub.kw)
    if -1 in sub.index:
        weight = torch.cat([weight, weight.new_zeros(go, cin, 1)], 2)
    index = torch.tensor([taps if i < 0 else i for i in sub.index], device=weight.device)
    return weight.index_select(2, index).view(go, cin, sub.kh, sub.kw)


def _placement(x: torch.Tensor, sub: SubConv, module: AskConv2d,
               out_size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(padding, first output row and column to keep, full output size) of a sub-conv's dense conv."""
    k, s = module.kernel_size, module.stride
    extent = ((sub.kh - 1) * sub.dh + 1, (sub.kw - 1) * sub.dw + 1)
    ph, oh = _padding(x.shape[2], out_size[0], k, sub.row, extent[0], s)
    pw, ow = _padding(x.shape[3], out_size[1], k, sub.col, extent[1], s)
    full = ((x.shape[2] + 2 * ph - extent[0]) // s + 1, (x.shape[3] + 2 * pw - extent[1]) // s + 1)
    return (ph, pw), (oh, ow), full


def _block_output(x: torch.Tensor, weights: list[torch.Tensor], plan: tuple[SubConv, ...], module: AskConv2d,
                  out_size: tuple[int, int]) -> torch.Tensor:
    """Sum of one block's sub-convs; those that need no crop are added into the output in place."""
    total = None
    for weight, sub in zip(weights, plan):
        padding, crop, full = _placement(x, sub, module, out_size)
        dilation = (sub.dh, sub.dw)
        exact = crop == (0, 0) and full == out_size
        if total is not None and exact:
            total = add_conv_(total, x, weight, module.stride, padding, dilation)
            continue
        y = F.conv2d(x, weight, stride=module.stride, padding=padding, dilation=dilation)
        if not exact:
            y = y[:, :, crop[0]:crop[0] + out_size[0], crop[1]:crop[1] + out_size[1]]
        total = y if total is None else total + y
    return total


def _output_size(module: AskConv2d, x: torch.Tensor) -> tuple[int, int]:
    s = module.stride
    return (x.shape[2] - 1) // s + 1, (x.shape[3] - 1) // s + 1  # odd k, padding k // 2


def _conv_blocks(module: AskConv2d, x: torch.Tensor, weights: list[list[torch.Tensor]]) -> torch.Tensor:
    out_size = _output_size(module, x)
    outputs = [_block_output(x, block_weights, plan_shape(shape, module.in_channels), module, out_size)
               for (shape, _), block_weights in zip(_blocks(module), weights)]
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)


def _blocks(module: AskConv2d) -> list[tuple[Shape, list[int]]]:
    """Runs of consecutive groups with the same tap set, which can share one set of convs."""
    blocks: list[tuple[Shape, list[int]]] = []
    for g, shape in enumerate(module.shapes):
        if blocks and set(blocks[-1][0].taps) == set(shape.taps):
            blocks[-1][1].append(g)
        else:
            blocks.append((shape, [g]))
    return blocks


def _block_weight(module: AskConv2d, shape: Shape, groups: list[int]) -> torch.Tensor:
    """(Cout_block, Cin, taps) in `shape`'s tap order, for groups sharing one tap set."""
    parts = []
    for g in groups:
        w = module.weights[g]
        own = module.shapes[g].taps
        if own != shape.taps:
            w = w[:, :, [own.index(t) for t in shape.taps]]
        parts.append(w)
    return parts[0] if len(parts) == 1 else torch.cat(parts, 0)


def _sub_weights(module: AskConv2d) -> list[list[torch.Tensor]]:
    weights = []
    for shape, groups in _blocks(module):
        weight = _block_weight(module, shape, groups)
        weights.append([_sub_weight(weight, sub) for sub in plan_shape(shape, module.in_channels)])
    return weights


def _laid_out_sub_weights(module: AskConv2d, layout: torch.memory_format) -> list[list[torch.Tensor]]:
    return [[w.contiguous(memory_format=layout) for w in block] for block in _sub_weights(module)]


def _decomposed_forward(module: AskConv2d, x: torch.Tensor) -> torch.Tensor:
    params, layout = list(module.weights), memory_format(x)
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        # Autograd through the gathers; a hand-written backward (each sub-conv's
        # convolution_backward, weight gradients stacked back into taps) measured no faster.
        weights = _laid_out_sub_weights(module, layout)
    else:
        weights = cached_pack(("ask_decomposed", layout), params, lambda: _laid_out_sub_weights(module, layout))
    return _conv_blocks(module, x, weights)


def _taichi_forward(module: AskConv2d, x: torch.Tensor) -> torch.Tensor:
    from kernels_taichi.ask import ask_conv2d  # imported on first use: keeps `import models` light

    taps = [shape.positions for shape in module.shapes]
    return ask_conv2d(x, list(module.weights), taps, module.kernel_size, module.stride)


def _sconv_forward(module: AskConv2d, x: torch.Tensor) -> torch.Tensor:
    from kernels_taichi import sconv_layers

    if module.in_channels < SCONV_MIN_IN_CHANNELS:
        return ASK_BACKENDS["reference"](module, x)
    if not sconv_layers.ask_supported(module.in_channels, module.group_out, x.dtype, x.device):
        if x.device.type == "cpu" and not sconv.available():
            sconv.warn_fallback("the ASK 'decomposed' backend")
        return _decomposed_forward(module, x)
    taps = [shape.positions for shape in module.shapes]
    return sconv_layers.ask_conv2d(x, list(module.weights), taps, module.kernel_size, module.stride)


def _sconv_with_epilogue(module: AskConv2d, x: torch.Tensor, epilogue: Epilogue) -> torch.Tensor:
    from kernels_taichi import sconv_layers

    if module.in_channels < SCONV_MIN_IN_CHANNELS or not sconv_layers.ask_supported(
            module.in_channels, module.group_out, x.dtype, x.device):
        return epilogue.apply(_sconv_forward(module, x))
    taps = [shape.positions for shape in module.shapes]
    return sconv_layers.ask_conv2d(x, list(module.weights), taps, module.kernel_size, module.stride,
                                   epilogue.bias, epilogue.relu, epilogue.residual)


_sconv_forward.with_epilogue = _sconv_with_epilogue
_sconv_forward.usable = sconv_usable  # auto's candidates: sconv where it builds, Taichi where it does not
_taichi_forward.usable = taichi_usable

ASK_BACKENDS["decomposed"] = _decomposed_forward
ASK_BACKENDS["taichi"] = _taichi_forward
ASK_BACKENDS["sconv"] = _sconv_forward
register_auto(ASK_BACKENDS)
