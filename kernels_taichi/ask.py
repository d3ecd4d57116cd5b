"""ASK convolution in Taichi: any taps per output-channel group, forward and backward.

A layer is described by plain data: `taps[g]` lists the (row, col) offsets of
group g's active taps inside the k x k kernel, `weights[g]` has shape
(Cout_g, Cin, len(taps[g])) in the same tap order. Padding is k // 2.

Layout: activations are channels-last and zero-padded once per call, so the
inner loops read contiguous channels and never test bounds. Each thread keeps
a PX-pixel x CB-channel tile of accumulators in a local matrix (register
tiling); nothing in a hot loop is atomic. Weights are packed once into
CB-wide channel vectors and cached until the weight tensors change.
"""

import functools
import math
from typing import Sequence

import torch
import torch.nn.functional as F

from kernels_taichi.cache import cached_pack
from kernels_taichi.runtime import taichi

CB = 32  # output channels per thread tile (one vector of accumulators per pixel)
PX = 4   # pixels per thread tile
CI = 8   # input channels per thread tile of the weight gradient
SMALL_IMAGE = 16  # output pixels up to which the forward loops over weight blocks outermost
ROWS_PIXELS = 1024  # pixels per chunk of the weight-gradient reduction (fits in L2)

Taps = tuple[tuple[tuple[int, int], ...], ...]


@functools.cache
def _kernels():
    """Compile-on-demand Taichi kernels; built after Taichi is initialised."""
    ti = taichi()
    vec = ti.types.vector(CB, ti.f32)
    f32_4 = ti.types.ndarray(ti.f32, ndim=4)
    vec_3 = ti.types.ndarray(vec, ndim=3)
    vec_4 = ti.types.ndarray(vec, ndim=4)
    vec_5 = ti.types.ndarray(vec, ndim=5)
    i32_1 = ti.types.ndarray(ti.i32, ndim=1)
    i32_3 = ti.types.ndarray(ti.i32, ndim=3)

    @ti.func
    def fwd_tile(x: ti.template(), w: ti.template(), taps: ti.template(), ntaps: ti.template(),
                 y: ti.template(), cin, s, wo, n, cb, tile):
        # PX consecutive output pixels in row-major order (a tile may wrap to the
        # next row); past the end the last pixel is recomputed and not stored.
        gb = w.shape[3]
        g = cb // gb
        last = y.shape[1] - 1
        oy = ti.Vector([ti.min(tile * PX + i, last) // wo for i in ti.static(range(PX))])
        ox = ti.Vector([ti.min(tile * PX + i, last) % wo for i in ti.static(range(PX))])
        acc = ti.Matrix.zero(ti.f32, PX, CB)
        for t in range(ntaps[g]):
            r, c = taps[g, t, 0], taps[g, t, 1]
            for ci in range(cin):
                wv = w[g, t, ci, cb - g * gb]
                xv = ti.Vector([x[n, oy[i] * s + r, ox[i] * s + c, ci] for i in ti.static(range(PX))])
                acc += xv.outer_product(wv)
        for i in ti.static(range(PX)):
            if tile * PX + i <= last:
                y[n, tile * PX + i, cb] = ti.Vector([acc[i, j] for j in ti.static(range(CB))])

    @ti.kernel
    def forward(x: f32_4, w: vec_4, taps: i32_3, ntaps: i32_1, y: vec_3, cin: ti.i32, s: ti.i32, wo: ti.i32,
                weights_outer: ti.template()):
        tiles = (y.shape[1] + PX - 1) // PX
        if ti.static(weights_outer):  # small images: keep one weight block hot across the batch
            for cb, n, tile in ti.ndrange(y.shape[2], y.shape[0], tiles):
                fwd_tile(x, w, taps, ntaps, y, cin, s, wo, n, cb, tile)
        else:  # large images: keep one image hot across the weight blocks
            for n, cb, tile in ti.ndrange(y.shape[0], y.shape[2], tiles):
                fwd_tile(x, w, taps, ntaps, y, cin, s, wo, n, cb, tile)

    @ti.kernel
    def backward_input(dy: f32_4, wt: vec_4, taps: i32_3, ntaps: i32_1, dx: vec_4,
                       ho: ti.i32, s: ti.i32, p: ti.i32, border: ti.i32):
        go = wt.shape[2]
        for n, cb, iy, phase, xb in ti.ndrange(dx.shape[0], dx.shape[3], dx.shape[1], s, dx.shape[2] // (s * PX)):
            acc = ti.Matrix.zero(ti.f32, PX, CB)
            for g in range(wt.shape[0]):
                for t in range(ntaps[g]):
                    qy = iy + p - taps[g, t, 0] + s * border
                    qx = phase + p - taps[g, t, 1] + s * border
                    oy = qy // s - border
                    if qy % s == 0 and qx % s == 0 and 0 <= oy and oy < ho:
                        ox0 = qx // s + xb * PX  # column in dy, which has `border` zero columns on the left
                        for co in range(go):
                            wv = wt[g, t, co, cb]
                            dv = ti.Vector([dy[n, oy, ox0 + i, g * go + co] for i in ti.static(range(PX))])
                            acc += dv.outer_product(wv)
            for i in ti.static(range(PX)):
                dx[n, iy, phase + s * (xb * PX + i), cb] = ti.Vector([acc[i, j] for j in ti.static(range(CB))])

    @ti.kernel
    def backward_weight(x: f32_4, dy: vec_4, taps: i32_3, ntaps: i32_1, dw: vec_5, rows: ti.i32, s: ti.i32):
        gb = dw.shape[4]
        ho, wo = dy.shape[1], dy.shape[2]
        total = dy.shape[0] * ho
        for chunk, g, t, cib, cb in ti.ndrange(dw.shape[0], dw.shape[1], dw.shape[2], dw.shape[3] // CI, gb):
            if t < ntaps[g]:
                acc = ti.Matrix.zero(ti.f32, CI, CB)
                r, c = taps[g, t, 0], taps[g, t, 1]
                for row in range(chunk * rows, ti.min((chunk + 1) * rows, total)):
                    n, oy = row // ho, row % ho
                    for ox in range(wo):
                        dv = dy[n, oy, ox, g * gb + cb]
                        xv = ti.Vector([x[n, oy * s + r, ox * s + c, cib * CI + j] for j in ti.static(range(CI))])
                        acc += xv.outer_product(dv)
                for j in ti.static(range(CI)):
                    dw[chunk, g, t, cib * CI + j, cb] = ti.Vector([acc[j, i] for i in ti.static(range(CB))])

    return forward, backward_input, backward_weight


def _blocks(channels: int) -> int:
    return math.ceil(channels / CB)


def _tap_tables(taps: Taps, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, Tmax, 2) int32 offsets (unused slots zero) and (G,) int32 counts."""
    tmax = max(len(t) for t in taps)
    table = torch.zeros(len(taps), tmax, 2, dtype=torch.int32)
    for g, group in enumerate(taps):
        if group:
            table[g, :len(group)] = torch.tensor(group, dtype=torch.int32)
    counts = torch.tensor([len(t) for t in taps], dtype=torch.int32)
    return table.to(device), counts.to(device)


def _pack_forward(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """(G, Tmax, Cin, blocks, CB): output channels innermost, zero-padded to whole blocks."""
    go, cin = weights[0].shape[:2]
    tmax = max(w.shape[2] for w in weights)
    packed = weights[0].new_zeros(len(weights), tmax, cin, _blocks(go) * CB)
    for g, w in enumerate(weights):
        packed[g, :w.shape[2], :, :go] = w.detach().permute(2, 1, 0)
    return packed.view(len(weights), tmax, cin, _blocks(go), CB)


def _pack_transposed(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """(G, Tmax, Cout_g, Cin blocks, CB): input channels innermost, for the input gradient."""
    go, cin = weights[0].shape[:2]
    tmax = max(w.shape[2] for w in weights)
    packed = weights[0].new_zeros(len(weights), tmax, go, _blocks(cin) * CB)
    for g, w in enumerate(weights):
        packed[g, :w.shape[2], :, :cin] = w.detach().permute(2, 0, 1)
    return packed.view(len(weights), tmax, go, _blocks(cin), CB)


def output_size(size: int, k: int, stride: int) -> int:
    return (size + 2 * (k // 2) - k) // stride + 1


def _pad_input(x: torch.Tensor, k: int, channels: int) -> torch.Tensor:
    """Channels-last copy of x, zero-padded by k//2 around and to `channels` channels."""
    p = k // 2
    padded = F.pad(x.detach(), (p, p, p, p, 0, channels - x.shape[1]))
    return padded.permute(0, 2, 3, 1).contiguous()


def _forward(x: torch.Tensor, weights: Sequence[torch.Tensor], taps: Taps, k: int, stride: int) -> torch.Tensor:
    n, cin, h, w = x.shape
    go = weights[0].shape[0]
    ho, wo = output_size(h, k, stride), output_size(w, k, stride)
    xp = _pad_input(x, k, cin)
    packed = cached_pack(("ask_fwd",), weights, lambda: _pack_forward(weights))
    table, counts = cached_pack(("ask_taps", taps, str(x.device)), (), lambda: _tap_tables(taps, x.device))
    blocks = _blocks(go)
    y = x.new_empty(n, ho * wo, len(weights) * blocks, CB)
    forward, _, _ = _kernels()
    forward(xp, packed, table, counts, y, cin, stride, wo, ho * wo <= SMALL_IMAGE)
    y = y.view(n, ho, wo, len(weights), blocks * CB)
    if blocks * CB != go:
        y = y[..., :go]
    return y.reshape(n, ho, wo, len(weights) * go).permute(0, 3, 1, 2)


def _grad_input(dy: torch.Tensor, weights: Sequence[torch.Tensor], taps: Taps, k: int, stride: int,
                size: tuple[int, int]) -> torch.Tensor:
    n, cout, ho, wo = dy.shape
    h, w = size
    cin = weights[0].shape[1]
    border = k
    tiles = math.ceil(math.ceil(w / stride) / PX)
    width = border + tiles * PX + k + 1
    dyp = F.pad(dy, (border, max(width - border - wo, 0))).permute(0, 2, 3, 1).contiguous()
    packed = cached_pack(("ask_bwd",), weights, lambda: _pack_transposed(weights))
    table, counts = cached_pack(("ask_taps", taps, str(dy.device)), (), lambda: _tap_tables(taps, dy.device))
    dx = dy.new_empty(n, h, stride * tiles * PX, _blocks(cin), CB)
    _, backward_input, _ = _kernels()
    backward_input(dyp, packed, table, counts, dx, ho, stride, k // 2, border)
    return dx.view(n, h, -1, _blocks(cin) * CB)[:, :, :w, :cin].permute(0, 3, 1, 2)


def _grad_weights(x: torch.Tensor, dy: torch.Tensor, groups: int, taps: Taps, k: int,
                  stride: int) -> list[torch.Tensor]:
    n, cin = x.shape[:2]
    ho, wo = dy.shape[2:]
    go = dy.shape[1] // groups
    cin_pad = math.ceil(cin / CI) * CI
    xp = _pad_input(x, k, cin_pad)
    blocks = _blocks(go)
    dyp = F.pad(dy.reshape(n, groups, go, ho, wo), (0, 0, 0, 0, 0, blocks * CB - go))
    dyp = dyp.permute(0, 3, 4, 1, 2).contiguous().view(n, ho, wo, groups * blocks, CB)
    rows = max(1, ROWS_PIXELS // wo)
    chunks = math.ceil(n * ho / rows)
    table, counts = cached_pack(("ask_taps", taps, str(x.device)), (), lambda: _tap_tables(taps, x.device))
    partial = x.new_zeros(chunks, groups, table.shape[1], cin_pad, blocks, CB)
    _, _, backward_weight = _kernels()
    backward_weight(xp, dyp, table, counts, partial, rows, stride)
    full = partial.sum(0).view(groups, table.shape[1], cin_pad, blocks * CB)
    return [full[g, :len(taps[g]), :cin, :go].permute(2, 1, 0).contiguous() for g in range(groups)]


class _AskConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, taps, k, stride, *weights):
        ctx.save_for_backward(x, *weights)
        ctx.taps, ctx.k, ctx.stride = taps, k, stride
        return _forward(x, weights, taps, k, stride)

    @staticmethod
    def backward(ctx, dy):
        x, *weights = ctx.saved_tensors
        dx = None
        if ctx.needs_input_grad[0]:
            dx = _grad_input(dy, weights, ctx.taps, ctx.k, ctx.stride, x.shape[2:])
        dws = [None] * len(weights)
        if any(ctx.needs_input_grad[4:]):
            dws = _grad_weights(x, dy, len(weights), ctx.taps, ctx.k, ctx.stride)
        return (dx, None, None, None, *dws)


def ask_conv2d(x: torch.Tensor, weights: Sequence[torch.Tensor], taps: Sequence[Sequence[tuple[int, int]]],
               k: int, stride: int = 1) -> torch.Tensor:
    """Sparse k x k convolution (padding k//2): output block g uses weights[g] on taps[g].

    x: (N, Cin, H, W) float32; weights[g]: (Cout_g, Cin, len(taps[g])), all groups
    the same Cout_g; taps[g]: (row, col) offsets in the kernel. Returns
    (N, G*Cout_g, Ho, Wo) in channels-last memory format.
    """
    if x.dtype != torch.float32:
        raise TypeError(f"the Taichi ASK kernels take float32, got {x.dtype}")
    if len({w.shape[0] for w in weights}) != 1:
        raise ValueError("all groups of an ASK conv need the same number of output channels")
    frozen = tuple(tuple((int(r), int(c)) for r, c in group) for group in taps)
    return _AskConv.apply(x, frozen, k, stride, *weights)
