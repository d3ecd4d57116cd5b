"""ASK, HetConv and 1xN convolutions on the sconv C++ kernel (kernels_taichi.sconv): tensors in, tensors out.

Each layer kind is a fixed structure, built once per size into sconv Plans:
- ASK: output group g (Cout_g channels) sees taps[g] over all input channels. Forward, input gradient and
  weight gradient all run in sconv, at any stride: a stride-s input gradient is s*s phases, each a stride-1
  conv over the output gradient with the taps that land on it, written straight into its pixels of dx.
- HetConv: output group g sees the 8 off-centre taps over input block g and the centre tap over all inputs
  (weight3's centre on its own block, weight1 elsewhere). Forward and both gradients in sconv.
- 1xN: each block of N output channels (in `out_order`) sees the whole kernel over its kept input
  channels. Inference only (its transposed form has no block structure the kernel could skip).

What sconv needs, else the callers (models.layers.*_backends) run their torch form: float32 on the CPU,
output groups (ASK: Cout_g; HetConv: Cout/P; 1xN: N) in multiples of 16 channels. An input gradient also needs
the input channels (HetConv: Cin/P) in multiples of 16; without that it comes from torch's
convolution_backward on the masked dense weight (exact, dense speed).

Outputs are channels_last (NHWC) float32 tensors. Packed weights for inference are cached until the
weights change (kernels_taichi.cache); in training they are packed again at every call (in C++ for ASK).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch

from kernels_taichi import sconv
from kernels_taichi.cache import cached_pack
from kernels_taichi.sconv import Plan

Taps = tuple[tuple[tuple[int, int], ...], ...]  # per group, (row, col) of each tap in the k x k kernel


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _wants_grad(x: torch.Tensor, params: Sequence[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))


@dataclass(frozen=True)
class Phase:
    """One phase (py, px) of a stride-s input gradient: dx[:, :, py::s, px::s] = conv(dy, packed, plan).
    `taps[g]` lists, per forward group (or tap set), the indices of its taps that land on this phase."""

    py: int
    px: int
    plan: Plan
    taps: tuple[tuple[int, ...], ...]


def _phase_offset(p: int, r: int, pad: int, s: int) -> int | None:
    """The offset in the output-gradient grid of tap row r for input phase p, or None if the tap misses it."""
    return (p - r + pad) // s if (p - r + pad) % s == 0 else None


def _phase_size(size: int, p: int, s: int) -> int:
    return max(0, (size - p + s - 1) // s)


def _transposed_conv(dy: torch.Tensor, phases: Sequence[Phase], packs: Sequence[torch.Tensor], stride: int,
                     in_shape: torch.Size) -> torch.Tensor:
    dx = torch.empty(in_shape, memory_format=torch.channels_last)
    for phase, packed in zip(phases, packs):
        hp, wp = _phase_size(in_shape[2], phase.py, stride), _phase_size(in_shape[3], phase.px, stride)
        if hp and wp:
            sconv.conv(dy, packed, phase.plan, 1, out_hw=(hp, wp), out=dx, phase=(stride, phase.py, phase.px))
    return dx


# --------------------------------------------------------------------------------------------------- ASK
@dataclass(frozen=True)
class AskPlans:
    forward: Plan
    stride: int
    pad: int
    phases: tuple[Phase, ...] | None  # None: Cin is not a multiple of 16 (input gradient from torch)


def ask_supported(cin: int, group_out: int, dtype: torch.dtype, device: torch.device) -> bool:
    return (dtype == torch.float32 and device.type == "cpu" and group_out % 16 == 0 and sconv.available())


@functools.lru_cache(maxsize=256)
def ask_plans(cin: int, group_out: int, taps: Taps, k: int, stride: int) -> AskPlans:
    pad = k // 2
    nj = sconv.pick_nj(group_out)
    if nj is None:
        raise ValueError(f"sconv needs output groups of a multiple of 16 channels, got {group_out}")
    ocb = 16 * nj
    blocks = []
    for g, group in enumerate(taps):
        segs = [(r - pad, c - pad, range(cin)) for r, c in group]
        blocks += [(g * group_out + b * ocb, segs) for b in range(group_out // ocb)]
    forward = Plan(blocks, nj, cin, group_out * len(taps))
    phases = None
    njt = sconv.pick_nj(cin)
    if njt is not None:
        ocbt, phases = 16 * njt, []
        for py in range(stride):
            for px in range(stride):
                segs, chosen = [], []
                for g, group in enumerate(taps):
                    picked = []
                    for i, (r, c) in enumerate(group):
                        oy, ox = _phase_offset(py, r, pad, stride), _phase_offset(px, c, pad, stride)
                        if oy is not None and ox is not None:
                            segs.append((oy, ox, range(g * group_out, (g + 1) * group_out)))
                            picked.append(i)
                    chosen.append(tuple(picked))
                plan = Plan([(b * ocbt, segs) for b in range(cin // ocbt)], njt, group_out * len(taps), cin)
                phases.append(Phase(py, px, plan, tuple(chosen)))
        phases = tuple(phases)
    return AskPlans(forward, stride, pad, phases)


def ask_masked_weight(weights: Sequence[torch.Tensor], taps: Taps, k: int) -> torch.Tensor:
    """The dense (Cout, Cin, k, k) weight equal to the ASK layer (zeros off its taps)."""
    blocks = []
    for w, group in zip(weights, taps):
        flat = w.new_zeros(w.shape[0], w.shape[1], k * k)
        flat[:, :, [r * k + c for r, c in group]] = w
        blocks.append(flat.view(w.shape[0], w.shape[1], k, k))
    return torch.cat(blocks)


class _AskConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, plans: AskPlans, taps: Taps, k: int, *weights):
        x = _nhwc(x.detach())
        ocb = plans.forward.ocb
        y = sconv.conv(x, sconv.pack_ask(weights, ocb), plans.forward, plans.stride)
        ctx.save_for_backward(x, *weights)
        ctx.plans, ctx.taps, ctx.k = plans, taps, k
        return y

    @staticmethod
    def backward(ctx, dy):
        x, *weights = ctx.saved_tensors
        plans = ctx.plans
        dy = _nhwc(dy)
        dx = None
        if ctx.needs_input_grad[0]:
            if plans.phases is None:
                dx = torch.ops.aten.convolution_backward(
                    dy, x, ask_masked_weight(weights, ctx.taps, ctx.k), None, [plans.stride] * 2,
                    [plans.pad] * 2, [1, 1], False, [0, 0], 1, [True, False, False])[0]
            else:
                ocbt = plans.phases[0].plan.ocb
                packs = [sconv.pack_ask_transposed(weights, ph.taps, ocbt) for ph in plans.phases]
                dx = _transposed_conv(dy, plans.phases, packs, plans.stride, x.shape)
        grads = [None] * len(weights)
        if any(ctx.needs_input_grad[4:]):
            dwp = sconv.weight_grad(x, dy, plans.forward, plans.stride)
            grads = sconv.unpack_ask(dwp, [tuple(w.shape) for w in weights], plans.forward.ocb)
        return (dx, None, None, None, *grads)


def ask_conv2d(x: torch.Tensor, weights: Sequence[torch.Tensor], taps: Sequence[Sequence[tuple[int, int]]], k: int,
               stride: int = 1, bias: torch.Tensor | None = None, relu: bool = False,
               residual: torch.Tensor | None = None) -> torch.Tensor:
    """ASK convolution (padding k // 2) on sconv: output group g uses weights[g] (Cout_g, Cin, len(taps[g])) on
    taps[g], then [relu](. + residual + bias) (in the kernel's epilogue for inference). Differentiable in x and
    the weights. ValueError if sconv cannot take it (see ask_supported)."""
    frozen = tuple(tuple((int(r), int(c)) for r, c in group) for group in taps)
    weights = list(weights)
    plans = ask_plans(x.shape[1], weights[0].shape[0], frozen, k, stride)
    if _wants_grad(x, weights):
        return _epilogue(_AskConv.apply(x, plans, frozen, k, *weights), bias, relu, residual)
    ocb = plans.forward.ocb
    packed = cached_pack(("sconv_ask", ocb), weights, lambda: sconv.pack_ask(weights, ocb))
    return sconv.conv(x, packed, plans.forward, stride, bias=bias, relu=relu, residual=residual)


def _epilogue(y: torch.Tensor, bias: torch.Tensor | None, relu: bool, residual: torch.Tensor | None) -> torch.Tensor:
    """What sconv's epilogue does, in torch (for autograd): [relu](y + residual + bias)."""
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    if residual is not None:
        y = y + residual
    return torch.relu(y) if relu else y


# ----------------------------------------------------------------------------------------------- HetConv
OFF_CENTRE = (0, 1, 2, 3, 5, 6, 7, 8)


@dataclass(frozen=True)
class HetPlans:
    forward: Plan
    part: int
    stride: int
    pad: int
    phases: tuple[Phase, ...] | None  # taps[0] of a phase: its taps 0..8 in order (4 = the centre)


def hetconv_supported(cin: int, cout: int, part: int, dtype: torch.dtype, device: torch.device) -> bool:
    return dtype == torch.float32 and device.type == "cpu" and (cout // part) % 16 == 0 and sconv.available()


@functools.lru_cache(maxsize=256)
def hetconv_plans(cin: int, cout: int, part: int, stride: int, pad: int) -> HetPlans:
    gin, gout = cin // part, cout // part
    nj = sconv.pick_nj(gout)
    if nj is None:
        raise ValueError(f"sconv needs HetConv output groups of a multiple of 16 channels, got {gout}")
    ocb, blocks = 16 * nj, []
    for g in range(part):
        segs = [(t // 3 - pad, t % 3 - pad, range(cin) if t == 4 else range(g * gin, (g + 1) * gin))
                for t in range(9)]
        blocks += [(g * gout + b * ocb, segs) for b in range(gout // ocb)]
    forward = Plan(blocks, nj, cin, cout)
    phases = None
    njt = sconv.pick_nj(gin)
    if njt is not None:
        ocbt, phases = 16 * njt, []
        for py in range(stride):
            for px in range(stride):
                taps = [t for t in range(9) if _phase_offset(py, t // 3, pad, stride) is not None
                        and _phase_offset(px, t % 3, pad, stride) is not None]
                blocks = []
                for g in range(part):
                    segs = [(_phase_offset(py, t // 3, pad, stride), _phase_offset(px, t % 3, pad, stride),
                             range(cout) if t == 4 else range(g * gout, (g + 1) * gout)) for t in taps]
                    blocks += [(g * gin + b * ocbt, segs) for b in range(gin // ocbt)]
                phases.append(Phase(py, px, Plan(blocks, njt, cout, cin), (tuple(taps),)))
        phases = tuple(phases)
    return HetPlans(forward, part, stride, pad, phases)


def _het_pack(w3: torch.Tensor, w1: torch.Tensor, part: int, ocb: int) -> torch.Tensor:
    """Forward packing from weight3 (Cout, Cin/P, 3, 3) and weight1 (Cout, Cin - Cin/P): per output block
    [taps 0..3][Cin/P][ocb], [centre: Cin][ocb], [taps 5..8][Cin/P][ocb]."""
    cout, gin = w3.shape[0], w3.shape[1]
    cin, gout = gin * part, cout // part
    nb = gout // ocb
    out = w3.new_empty(part, nb, 8 * gin * ocb + cin * ocb)
    t = w3.reshape(part, nb, ocb, gin, 9).permute(0, 1, 4, 3, 2)  # (P, nb, 9, gin, ocb)
    out[:, :, :4 * gin * ocb].view(part, nb, 4, gin, ocb).copy_(t[:, :, :4])
    out[:, :, 4 * gin * ocb + cin * ocb:].view(part, nb, 4, gin, ocb).copy_(t[:, :, 5:])
    centre = out[:, :, 4 * gin * ocb:4 * gin * ocb + cin * ocb].view(part, nb, cin, ocb)
    w1v = w1.reshape(part, nb, ocb, cin - gin).permute(0, 1, 3, 2)  # (P, nb, Cin - gin, ocb)
    for g in range(part):
        centre[g, :, :g * gin].copy_(w1v[g, :, :g * gin])
        centre[g, :, g * gin:(g + 1) * gin].copy_(t[g, :, 4])
        centre[g, :, (g + 1) * gin:].copy_(w1v[g, :, g * gin:])
    return out.view(-1)


def _het_unpack(packed: torch.Tensor, part: int, cout: int, cin: int, ocb: int):
    """Inverse of _het_pack: packed (gradients) -> (weight3-shaped, weight1-shaped)."""
    gin, gout = cin // part, cout // part
    nb = gout // ocb
    d = packed.view(part, nb, -1)
    g3 = packed.new_empty(part, nb, ocb, gin, 9)
    g3[..., :4].copy_(d[:, :, :4 * gin * ocb].view(part, nb, 4, gin, ocb).permute(0, 1, 4, 3, 2))
    g3[..., 5:].copy_(d[:, :, 4 * gin * ocb + cin * ocb:].view(part, nb, 4, gin, ocb).permute(0, 1, 4, 3, 2))
    centre = d[:, :, 4 * gin * ocb:4 * gin * ocb + cin * ocb].view(part, nb, cin, ocb)
    g1 = packed.new_empty(part, nb, ocb, cin - gin)
    for g in range(part):
        g3[g, ..., 4].copy_(centre[g, :, g * gin:(g + 1) * gin].permute(0, 2, 1))
        g1[g, :, :, :g * gin].copy_(centre[g, :, :g * gin].permute(0, 2, 1))
        g1[g, :, :, g * gin:].copy_(centre[g, :, (g + 1) * gin:].permute(0, 2, 1))
    return g3.view(cout, gin, 3, 3), g1.view(cout, cin - gin)


def _het_centre(w3: torch.Tensor, w1: torch.Tensor, part: int) -> torch.Tensor:
    """(Cout, Cin) centre-tap matrix: weight1 off the block diagonal, weight3's centre on it."""
    cout, gin = w3.shape[0], w3.shape[1]
    gout = cout // part
    rows = []
    for g in range(part):
        w = w1[g * gout:(g + 1) * gout]
        rows.append(torch.cat([w[:, :g * gin], w3[g * gout:(g + 1) * gout, :, 1, 1], w[:, g * gin:]], 1))
    return torch.cat(rows, 0)


def _het_pack_transposed(w3: torch.Tensor, w1: torch.Tensor, part: int, taps: Sequence[int],
                         ocbt: int) -> torch.Tensor:
    """Backward-data packing for a phase with `taps`: per input block [tap: Cout/P (centre: Cout)][ocbt]."""
    cout, gin = w3.shape[0], w3.shape[1]
    gout, nb = cout // part, gin // ocbt
    w3t = w3.reshape(part, gout, nb, ocbt, 9).permute(0, 2, 4, 1, 3)  # (P, nb, 9, gout, ocbt)
    pieces = []
    for t in taps:
        if t == 4:
            centre = _het_centre(w3, w1, part).reshape(cout, part, nb, ocbt).permute(1, 2, 0, 3)
            pieces.append(centre.reshape(part, nb, -1))
        else:
            pieces.append(w3t[:, :, t].reshape(part, nb, -1))
    return torch.cat(pieces, 2).reshape(-1).contiguous() if pieces else w3.new_zeros(1)


class _HetConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, plans: HetPlans, w3, w1):
        x = _nhwc(x.detach())
        y = sconv.conv(x, _het_pack(w3, w1, plans.part, plans.forward.ocb), plans.forward, plans.stride,
                       out_hw=_out_hw(x, plans.stride, plans.pad))
        ctx.save_for_backward(x, w3, w1)
        ctx.plans = plans
        return y

    @staticmethod
    def backward(ctx, dy):
        x, w3, w1 = ctx.saved_tensors
        plans = ctx.plans
        dy = _nhwc(dy)
        dx = g3 = g1 = None
        if ctx.needs_input_grad[0]:
            if plans.phases is None:
                dense = hetconv_dense_weight(w3, w1, plans.part)
                dx = torch.ops.aten.convolution_backward(
                    dy, x, dense, None, [plans.stride] * 2, [plans.pad] * 2, [1, 1], False, [0, 0], 1,
                    [True, False, False])[0]
            else:
                ocbt = plans.phases[0].plan.ocb
                packs = [_het_pack_transposed(w3, w1, plans.part, ph.taps[0], ocbt) for ph in plans.phases]
                dx = _transposed_conv(dy, plans.phases, packs, plans.stride, x.shape)
        if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
            dwp = sconv.weight_grad(x, dy, plans.forward, plans.stride)
            g3, g1 = _het_unpack(dwp, plans.part, w3.shape[0], x.shape[1], plans.forward.ocb)
        return dx, None, g3, g1


def _out_hw(x: torch.Tensor, stride: int, pad: int, k: int = 3) -> tuple[int, int]:
    return sconv.out_size(x.shape[2], k, stride, pad), sconv.out_size(x.shape[3], k, stride, pad)


def hetconv_dense_weight(w3: torch.Tensor, w1: torch.Tensor, part: int) -> torch.Tensor:
    """The dense (Cout, Cin, 3, 3) weight equal to the HetConv layer."""
    cout, gin = w3.shape[0], w3.shape[1]
    gout = cout // part
    dense = w3.new_zeros(cout, gin * part, 3, 3)
    dense[:, :, 1, 1] = _het_centre(w3, w1, part)
    for g in range(part):
        rows = slice(g * gout, (g + 1) * gout)
        block = w3[rows].clone()
        block[:, :, 1, 1] = 0
        dense[rows, g * gin:(g + 1) * gin] += block
    return dense


def hetconv2d(x: torch.Tensor, weight3: torch.Tensor, weight1: torch.Tensor, part: int, stride: int = 1,
              padding: int = 1, bias: torch.Tensor | None = None, relu: bool = False,
              residual: torch.Tensor | None = None) -> torch.Tensor:
    """HetConv (3x3 over input block g for output group g, 1x1 over the other inputs) on sconv, then
    [relu](. + residual + bias); differentiable. ValueError if sconv cannot take it (see hetconv_supported)."""
    cout, cin = weight3.shape[0], x.shape[1]
    plans = hetconv_plans(cin, cout, part, stride, padding)
    if _wants_grad(x, [weight3, weight1]) or (bias is not None and _wants_grad(x, [bias])):
        return _epilogue(_HetConv.apply(x, plans, weight3, weight1), bias, relu, residual)
    ocb = plans.forward.ocb
    packed = cached_pack(("sconv_hetconv", ocb, part), [weight3, weight1],
                         lambda: _het_pack(weight3.detach(), weight1.detach(), part, ocb).contiguous())
    return sconv.conv(x, packed, plans.forward, stride, out_hw=_out_hw(x, stride, padding), bias=bias, relu=relu,
                      residual=residual)


# ---------------------------------------------------------------------------------------------------- 1xN
def blocksparse_supported(block_n: int, dtype: torch.dtype, device: torch.device) -> bool:
    return dtype == torch.float32 and device.type == "cpu" and block_n % 16 == 0 and sconv.available()


def blocksparse_plan(crow_indices: torch.Tensor, col_indices: torch.Tensor, cin: int, block_n: int, k: int,
                     stride: int, pad: int) -> Plan:
    """Per block row (N output channels in out_order): every tap of the kernel over its kept input channels
    (a range where they are contiguous)."""
    nj = sconv.pick_nj(block_n)
    if nj is None:
        raise ValueError(f"sconv needs 1xN blocks of a multiple of 16 output channels, got N = {block_n}")
    crow, col = crow_indices.tolist(), col_indices.tolist()
    blocks = []
    for b in range(len(crow) - 1):
        kept = col[crow[b]:crow[b + 1]]
        contiguous = bool(kept) and kept == list(range(kept[0], kept[-1] + 1))
        channels = range(kept[0], kept[-1] + 1) if contiguous else kept
        segs = [(r - pad, c - pad, channels) for r in range(k) for c in range(k)] if kept else []
        blocks += [(b * block_n + j * 16 * nj, segs) for j in range(block_n // (16 * nj))]
    return Plan(blocks, nj, cin, (len(crow) - 1) * block_n)


def blocksparse_conv2d(x: torch.Tensor, dense_weight: torch.Tensor, crow_indices: torch.Tensor,
                       col_indices: torch.Tensor, out_order: torch.Tensor, block_n: int, stride: int, padding: int,
                       bias: torch.Tensor | None, sources: Sequence[torch.Tensor], relu: bool = False,
                       residual: torch.Tensor | None = None) -> torch.Tensor:
    """1xN block-sparse conv on sconv, inference only, then [relu](. + residual + bias). `dense_weight()`
    (a callable, the masked (Cout, Cin, k, k) weight in the original filter order) is called only when
    `sources` (the tensors it comes from) change."""
    cout, cin = len(out_order), x.shape[1]

    def build():
        w = dense_weight().detach()
        k = w.shape[-1]
        plan = blocksparse_plan(crow_indices, col_indices, cin, block_n, k, stride, padding)
        identity = bool(torch.equal(out_order, torch.arange(cout, device=out_order.device)))
        if not identity:
            w = w[out_order]  # blocks in sorted order; the output goes back in place after the kernel
        b = None if bias is None else (bias.detach() if identity else bias.detach()[out_order]).contiguous()
        return plan, plan.pack_dense(w, padding), b, None if identity else out_order.clone(), k

    plan, packed, b, order, k = cached_pack(("sconv_blocksparse", stride, padding, cin), list(sources), build)
    if residual is not None and order is not None:
        residual = residual.index_select(1, order)  # the kernel writes the channels in block order
    y = sconv.conv(x, packed, plan, stride, out_hw=_out_hw(x, stride, padding, k), bias=b, relu=relu,
                   residual=residual)
    if order is not None:
        y = torch.empty_like(y).index_copy_(1, order, y)
    return y
