"""Export forms: a built network rewritten in plain standard convolutions, for ONNX and torch.export.

The `fast` form replaces each layer by the standard operators that run its
saving: an ASK conv by the sub-convolutions of its decomposed backend (dense
or dilated Conv + Add per tap block, blocks concatenated), a HetConv by its
grouped 3x3 plus a dense 1x1 (zeros on the block diagonal) added, a low-rank
pair its two factor convs with the rank padded by zero filters to a multiple
of RANK_MULTIPLE (onnxruntime's blocked NCHWc convs, AVX-512's 16 channels,
skip a conv whose channels are not a multiple of the block: VGG-16's ranks
30, 59, 118, 237 cost it a layout reorder around each pair); a 1xN block-sparse conv becomes its masked
dense conv (one Conv: the one standard-operator form that skips pruned blocks,
gathered inputs + a grouped conv, measured 0.17-0.96x of dense in torch at 50%
density, models/layers/blocksparse_backends.py; not re-measured in onnxruntime). A BatchNorm right after
an ASK or HetConv is folded into its convs: after Add or Concat no runtime
folds it (onnxruntime folds only Conv + BatchNormalization, which it still
does for dense and low-rank layers). The `masked` form is the reference
backend (one masked dense conv per layer). Weights are gathered from the
trained layer; its training code is untouched.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.fold import LAYER_KINDS, LeafTracer, bn_scale_shift
from models.layers.ask import AskConv2d
from models.layers.ask_backends import _blocks, _sub_weights, plan_shape
from models.layers.hetconv import HetConv2d
from models.layers.hetconv_backends import _dense_1x1
from models.layers.lowrank import LowRankConv2d

FORMS = ("fast", "masked")


class PlacedConv(nn.Module):
    """A dense (maybe dilated) conv whose input is first padded by (left, right, top, bottom), negative = cropped.

    Symmetric non-negative padding stays in the Conv; any other becomes a Pad
    node (onnxruntime fuses a zero Pad into the Conv that follows).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, pads: tuple[int, int, int, int],
                 dilation: tuple[int, int]):
        super().__init__()
        left, right, top, bottom = pads
        inner = (top, left) if left == right >= 0 and top == bottom >= 0 else (0, 0)
        self.pads = None if inner != (0, 0) or pads == (0, 0, 0, 0) else pads
        self.conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), stride, inner, dilation,
                              bias=bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            if bias is not None:
                self.conv.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pads) if self.pads else x)


class ConvSum(nn.Module):
    """Output channel blocks, each the sum of its placed convs, concatenated (one block: no Concat)."""

    def __init__(self, blocks: list[list[PlacedConv]]):
        super().__init__()
        self.blocks = nn.ModuleList(nn.ModuleList(block) for block in blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for block in self.blocks:
            total = block[0](x)
            for conv in block[1:]:
                total = total + conv(x)
            outputs.append(total)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)


def _pads(size: int, k: int, start: int, extent: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of a sub-kernel at `start` of a k x k 'same' kernel: same output size."""
    out = (size - 1) // stride + 1
    before = k // 2 - start
    return before, (out - 1) * stride + extent - size - before


def ask_form(m: AskConv2d, size: tuple[int, int], bn: nn.BatchNorm2d | None = None) -> ConvSum:
    """The decomposed backend's sub-convs of an ASK conv for an input of `size` (H, W), `bn` folded in."""
    scale, shift = bn_scale_shift(bn, m.out_channels)
    if m.bias is not None:  # the layer's own bias goes through the BatchNorm too
        shift = m.bias.detach() * scale + (shift if shift is not None else 0)
    blocks, first = [], 0
    with torch.no_grad():
        for (shape, groups), weights in zip(_blocks(m), _sub_weights(m)):
            rows = slice(first, first + len(groups) * m.group_out)
            first = rows.stop
            block = []
            for i, (weight, sub) in enumerate(zip(weights, plan_shape(shape, m.in_channels))):
                top, bottom = _pads(size[0], m.kernel_size, sub.row, (sub.kh - 1) * sub.dh + 1, m.stride)
                left, right = _pads(size[1], m.kernel_size, sub.col, (sub.kw - 1) * sub.dw + 1, m.stride)
                bias = shift[rows] if shift is not None and i == 0 else None
                block.append(PlacedConv(weight * scale[rows, None, None, None], bias, m.stride,
                                        (left, right, top, bottom), (sub.dh, sub.dw)))
            blocks.append(block)
    return ConvSum(blocks)


def hetconv_form(m: HetConv2d, bn: nn.BatchNorm2d | None = None) -> ConvSum:
    """Grouped 3x3 (groups P) + dense 1x1 on the centre tap, added; `bn` folded in."""
    scale, shift = bn_scale_shift(bn, m.out_channels)
    with torch.no_grad():
        bias = m.bias.detach() if m.bias is not None else None
        if shift is not None:
            bias = shift if bias is None else bias * scale + shift
        w3 = (m.weight3 * scale[:, None, None, None]).detach()
        grouped = nn.Conv2d(m.in_channels, m.out_channels, 3, m.stride, m.padding, groups=m.part,
                            bias=bias is not None)
        grouped.weight.copy_(w3)
        if bias is not None:
            grouped.bias.copy_(bias)
        block: list[nn.Module] = [grouped]
        if m.part > 1:
            crop = m.padding - 1  # the 1x1 kernel sits on the centre tap
            block.append(PlacedConv((_dense_1x1(m) * scale[:, None, None, None]).detach(), None, m.stride,
                                    (crop,) * 4, (1, 1)))
    return ConvSum([block])


def masked_conv(m: nn.Module, bn: nn.BatchNorm2d | None = None) -> nn.Conv2d:
    """One dense conv with the layer's masked kernel (1xN's fast form: see the module docstring)."""
    scale, shift = bn_scale_shift(bn, m.out_channels)
    bias = getattr(m, "bias", None)
    conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                     bias=bias is not None or shift is not None)
    with torch.no_grad():
        conv.weight.copy_(m.dense_weight() * scale[:, None, None, None])
        if conv.bias is not None:
            b = bias.detach() if bias is not None else torch.zeros(m.out_channels)
            conv.bias.copy_(b * scale + shift if shift is not None else b)
    return conv


RANK_MULTIPLE = 16


def lowrank_form(m: LowRankConv2d) -> nn.Sequential:
    """The two factor convs, the rank padded with zero filters to a multiple of RANK_MULTIPLE."""
    rank = -(-m.rank // RANK_MULTIPLE) * RANK_MULTIPLE
    v = nn.Conv2d(m.in_channels, rank, m.v.kernel_size, m.v.stride, m.v.padding, bias=False)
    h = nn.Conv2d(rank, m.out_channels, m.h.kernel_size, m.h.stride, m.h.padding, bias=m.h.bias is not None)
    with torch.no_grad():
        v.weight.zero_()
        h.weight.zero_()
        v.weight[:m.rank] = m.v.weight
        h.weight[:, :m.rank] = m.h.weight
        if h.bias is not None:
            h.bias.copy_(m.h.bias)
    return nn.Sequential(v, h)


FAST = LAYER_KINDS


def conv_bn_pairs(model: nn.Module) -> dict[str, str]:
    """{conv path: BatchNorm path} where the BN is the conv's only consumer and each is called once.

    Found by tracing the graph (torch.fx); a network fx cannot trace folds nothing.
    """
    try:
        graph = LeafTracer().trace(model)
    except Exception:  # data-dependent control flow in a user's network: no folding, still exact
        return {}
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], FAST) or len(node.users) != 1:
            continue
        (user,) = node.users
        if (user.op == "call_module" and isinstance(modules[user.target], nn.BatchNorm2d)
                and calls[node.target] == calls[user.target] == 1 and user.args[0] is node):
            pairs[node.target] = user.target
    return pairs


def export_form(model: nn.Module, input_shape: tuple[int, int, int], form: str = "fast") -> nn.Module:
    """An eval-mode copy of `model` in the given form; input_shape (C, H, W) fixes each layer's placement."""
    if form not in FORMS:
        raise ValueError(f"unknown export form {form!r} (choose one of {', '.join(FORMS)})")
    model = copy.deepcopy(model).eval()
    targets = [name for name, m in model.named_modules() if isinstance(m, FAST)]
    if form == "masked":
        replace = {name: masked_conv(model.get_submodule(name)) for name in targets}
        return _swap(model, replace)
    lowrank = {name: lowrank_form(m) for name, m in model.named_modules() if isinstance(m, LowRankConv2d)}
    sizes = _input_sizes(model, targets, input_shape)
    pairs = conv_bn_pairs(model)
    replace = {}
    for name in targets:
        m, bn = model.get_submodule(name), (model.get_submodule(pairs[name]) if name in pairs else None)
        if isinstance(m, AskConv2d):
            replace[name] = ask_form(m, sizes[name], bn)
        elif isinstance(m, HetConv2d):
            replace[name] = hetconv_form(m, bn)
        else:
            replace[name] = masked_conv(m, bn)
        if bn is not None:
            replace[pairs[name]] = nn.Identity()
    return _swap(model, {**replace, **lowrank})


def _input_sizes(model: nn.Module, names: list[str], input_shape: tuple[int, int, int]) -> dict[str, tuple]:
    """Each named module's input (H, W), from one forward of a zero image."""
    sizes: dict[str, tuple] = {}

    def record(name: str):
        def hook(module, args):
            sizes.setdefault(name, tuple(args[0].shape[-2:]))
        return hook
    hooks = [model.get_submodule(name).register_forward_pre_hook(record(name)) for name in names]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def _swap(model: nn.Module, replace: dict[str, nn.Module]) -> nn.Module:
    for name, new in replace.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
    return model.eval()
