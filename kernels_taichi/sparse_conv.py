"""A k x k convolution with any fixed sparsity pattern, driven by entry tables.

The pattern is plain data: `index[o, c, r, q]` is the position of weight
(o, c, r, q) in the concatenation of the flattened parameter tensors, or -1
where the kernel has no weight. ASK, HetConv and 1xN block sparsity are
all such patterns; kernels_taichi.ask, kernels_taichi.hetconv and
kernels_taichi.blocksparse only build their index maps and call
`sparse_conv2d`.

A plan turns the pattern into tables once (cached until the pattern changes):
- forward: for each block of CB output channels, the list of entries
  (input channel, tap) that any of its channels uses, tap-major, padded to a
  multiple of CI with zero entries; one CB-wide weight vector per entry;
- input gradient: the same for the transposed pattern (blocks of CB input
  channels, entries (output channel, tap)), grouped by the stride phase of
  the tap so that no thread tests divisibility in its hot loop;
- at call time each entry becomes one flat offset into the padded
  channels-last activation (a runtime table: nothing recompiles per layer).
Every thread keeps a pixels x CB tile of accumulators in locals (register
tiling) and writes each output exactly once: no atomics. The weight gradient
reduces over pixel chunks into a partial buffer summed by torch. A gradient
whose pattern is denser than BACKWARD_MAX_DENSITY runs as the dense
oneDNN/cuDNN one instead (the kept weights gathered from it). On the CPU the
forward pads and convolves the batch in cache-sized chunks of images.
"""

import functools
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from kernels_taichi.cache import cached_pack
from kernels_taichi.runtime import taichi

LANES = (32, 16, 8)  # output channels per tile, the widest dividing the pattern's block size
PIXELS = {32: 4, 16: 8, 8: 8}  # pixels per thread tile for each CB (the forward names its 4 or 8 accumulators)
CI = 8               # entries per thread tile of the weight gradient (rows are padded to a multiple)
SMALL_IMAGE = 16     # output pixels up to which the forward loops over weight blocks outermost
ROWS_PIXELS = 1024   # pixels per chunk of the weight-gradient reduction
CHUNK_BYTES = 2 << 20  # padded input per forward call on the CPU (stays in L2/L3 between pad and kernel)
# Above this fraction of the dense work a gradient runs as oneDNN/cuDNN's
# dense one instead (then gathered): measured on VGG-16 shapes, batch 32, the
# Taichi weight gradient runs at about 1/3 of oneDNN's dense efficiency, and
# 1xN blocks transpose to Nx1 blocks whose union over CB input channels is
# nearly dense. HetConv P=4 (1/3 of the work) stays on the Taichi kernels.
BACKWARD_MAX_DENSITY = 0.45


def lanes_for(granule: int) -> int:
    """CB for a pattern whose rows come in runs of `granule` identical output channels."""
    return next((cb for cb in LANES if granule % cb == 0), LANES[-1])


@functools.cache
def _kernels(cb: int):
    """Forward, input-gradient and weight-gradient kernels for tiles CB channels wide."""
    ti = taichi()
    npx = PIXELS[cb]
    vec = ti.types.vector(cb, ti.f32)
    f32_1 = ti.types.ndarray(ti.f32, ndim=1)
    vec_1 = ti.types.ndarray(vec, ndim=1)
    vec_2 = ti.types.ndarray(vec, ndim=2)
    vec_3 = ti.types.ndarray(vec, ndim=3)
    vec_4 = ti.types.ndarray(vec, ndim=4)
    i32_1 = ti.types.ndarray(ti.i32, ndim=1)
    i32_2 = ti.types.ndarray(ti.i32, ndim=2)

    @ti.func
    def fwd_tile(x: ti.template(), w: ti.template(), off: ti.template(), ptr: ti.template(), y: ti.template(),
                 hp, wp, cin, s, wo, hw, ob, tile):
        # npx consecutive output pixels of the flattened (image, row, col) range, so
        # that small images fill whole tiles; past the end the last pixel is
        # recomputed and not stored.
        last = y.shape[0] - 1
        base = ti.Vector([0] * npx)
        for i in ti.static(range(npx)):
            q = ti.min(tile * npx + i, last)
            n, r = q // hw, q % hw
            base[i] = ((n * hp + (r // wo) * s) * wp + (r % wo) * s) * cin
        # one named CB-vector per pixel (measured 5-25% faster than one npx x CB matrix with 16-wide tiles)
        a0 = ti.Vector.zero(ti.f32, cb)
        a1 = ti.Vector.zero(ti.f32, cb)
        a2 = ti.Vector.zero(ti.f32, cb)
        a3 = ti.Vector.zero(ti.f32, cb)
        a4 = ti.Vector.zero(ti.f32, cb)
        a5 = ti.Vector.zero(ti.f32, cb)
        a6 = ti.Vector.zero(ti.f32, cb)
        a7 = ti.Vector.zero(ti.f32, cb)
        for e in range(ptr[ob], ptr[ob + 1]):
            o = off[e]
            wv = w[e]
            a0 += x[base[0] + o] * wv
            a1 += x[base[1] + o] * wv
            a2 += x[base[2] + o] * wv
            a3 += x[base[3] + o] * wv
            if ti.static(npx == 8):
                a4 += x[base[4] + o] * wv
                a5 += x[base[5] + o] * wv
                a6 += x[base[6] + o] * wv
                a7 += x[base[7] + o] * wv
        y[tile * npx, ob] = a0
        if tile * npx + 1 <= last:
            y[tile * npx + 1, ob] = a1
        if tile * npx + 2 <= last:
            y[tile * npx + 2, ob] = a2
        if tile * npx + 3 <= last:
            y[tile * npx + 3, ob] = a3
        if ti.static(npx == 8):
            if tile * npx + 4 <= last:
                y[tile * npx + 4, ob] = a4
            if tile * npx + 5 <= last:
                y[tile * npx + 5, ob] = a5
            if tile * npx + 6 <= last:
                y[tile * npx + 6, ob] = a6
            if tile * npx + 7 <= last:
                y[tile * npx + 7, ob] = a7

    @ti.kernel
    def forward(x: f32_1, w: vec_1, off: i32_1, ptr: i32_1, y: vec_2, hp: ti.i32, wp: ti.i32, cin: ti.i32,
                s: ti.i32, wo: ti.i32, hw: ti.i32, weights_outer: ti.template()):
        tiles = (y.shape[0] + npx - 1) // npx
        if ti.static(weights_outer):  # small images: one weight block stays hot across the batch
            for ob, tile in ti.ndrange(y.shape[1], tiles):
                fwd_tile(x, w, off, ptr, y, hp, wp, cin, s, wo, hw, ob, tile)
        else:  # large images: the tiles of about one image stay hot across the weight blocks
            per = ti.max(hw // npx, 1)
            for g, ob, t in ti.ndrange((tiles + per - 1) // per, y.shape[1], per):
                if g * per + t < tiles:
                    fwd_tile(x, w, off, ptr, y, hp, wp, cin, s, wo, hw, ob, g * per + t)

    @ti.kernel
    def backward_input(dy: f32_1, wt: vec_1, off: i32_1, ptr: i32_2, dx: vec_4, hdp: ti.i32, wdp: ti.i32,
                       cout: ti.i32, s: ti.i32):
        # dx (padded input) pixel (py + s*a, qx + s*j) takes the taps of phase (py, qx):
        # dy pixel (a - r//s, j - q//s), folded into the entry's offset.
        for n, ib, a, py, qx, xb in ti.ndrange(dx.shape[0], dx.shape[3], dx.shape[1] // s, s, s,
                                               dx.shape[2] // (s * npx)):
            phase = py * s + qx
            base = ti.Vector([((n * hdp + a) * wdp + xb * npx + i) * cout for i in ti.static(range(npx))])
            acc = ti.Matrix.zero(ti.f32, npx, cb)
            for e in range(ptr[ib, phase], ptr[ib, phase + 1]):
                o = off[e]
                wv = wt[e]
                dv = ti.Vector([dy[base[i] + o] for i in ti.static(range(npx))])
                acc += dv.outer_product(wv)
            for i in ti.static(range(npx)):
                dx[n, py + s * a, qx + s * (xb * npx + i), ib] = ti.Vector([acc[i, j] for j in ti.static(range(cb))])

    @ti.kernel
    def backward_weight(x: f32_1, dy: vec_3, off: i32_1, grp: i32_1, part: vec_2, rows: ti.i32, hp: ti.i32,
                        wp: ti.i32, cin: ti.i32, s: ti.i32, ho: ti.i32, wo: ti.i32):
        total = dy.shape[0] * ho
        for chunk, g in ti.ndrange(part.shape[0], grp.shape[0]):
            ob = grp[g]
            offs = ti.Vector([off[g * CI + j] for j in ti.static(range(CI))])
            acc = ti.Matrix.zero(ti.f32, CI, cb)
            for row in range(chunk * rows, ti.min((chunk + 1) * rows, total)):
                n, oy = row // ho, row % ho
                rbase = (n * hp + oy * s) * wp * cin
                for ox in range(wo):
                    dv = dy[n, oy * wo + ox, ob]
                    b = rbase + ox * s * cin
                    xv = ti.Vector([x[b + offs[j]] for j in ti.static(range(CI))])
                    acc += xv.outer_product(dv)
            for j in ti.static(range(CI)):
                part[chunk, g * CI + j] = ti.Vector([acc[j, i] for i in ti.static(range(cb))])

    return forward, backward_input, backward_weight


@dataclass(eq=False)
class SparsePlan:
    """Tables of one sparsity pattern (all int tensors on the pattern's device)."""

    cout: int
    cin: int
    k: int
    stride: int
    padding: int
    cb: int
    zero: int                       # index of the zero slot appended to the flat parameters
    dense_index: torch.Tensor       # (Cout, Cin, k, k) int64, -1 mapped to `zero`
    fwd_taps: torch.Tensor          # (E, 3) int64: input channel, row, col (zero entries: 0, 0, 0)
    fwd_ptr: torch.Tensor           # (OB + 1,) int32
    fwd_index: torch.Tensor         # (E, CB) int64 into the flat parameters
    fwd_group: torch.Tensor         # (E / CI,) int32: output block of each run of CI entries
    bwd_taps: torch.Tensor | None   # (ET, 3) int64: output channel, row, col; None: dense input gradient
    bwd_ptr: torch.Tensor | None    # (IB, s*s + 1) int32
    bwd_index: torch.Tensor | None  # (ET, CB) int64
    density: float                  # work of the forward pattern / dense work
    dense_weight_grad: bool         # the weight gradient runs as a dense one (denser than the threshold)
    param_fwd_pos: torch.Tensor     # (zero,) int64: each parameter's position in fwd_index.flatten()
    param_dense_pos: torch.Tensor   # (zero,) int64: each parameter's position in dense_index.flatten()
    _offsets: dict = field(default_factory=dict)

    @property
    def out_blocks(self) -> int:
        return math.ceil(self.cout / self.cb)

    @property
    def in_blocks(self) -> int:
        return math.ceil(self.cin / self.cb)

    def fwd_offsets(self, wp: int) -> torch.Tensor:
        key = ("f", wp)
        if key not in self._offsets:
            c, r, q = self.fwd_taps.unbind(1)
            self._offsets[key] = ((r * wp + q) * self.cin + c).to(torch.int32)
        return self._offsets[key]

    def bwd_offsets(self, wdp: int) -> torch.Tensor:
        key = ("b", wdp)
        if key not in self._offsets:
            o, r, q = self.bwd_taps.unbind(1)
            b, s = self.k - 1, self.stride
            self._offsets[key] = (((b - r // s) * wdp + (b - q // s)) * self.cout + o).to(torch.int32)
        return self._offsets[key]


def _entries(index: torch.Tensor, cb: int, zero: int):
    """Per block of cb rows of `index` (R, C, k, k): union entries (block, r, q, c) and lane indices."""
    rows, cols, k = index.shape[0], index.shape[1], index.shape[2]
    blocks = math.ceil(rows / cb)
    padded = F.pad(index, (0, 0, 0, 0, 0, 0, 0, blocks * cb - rows), value=-1)
    lanes = padded.view(blocks, cb, cols, k, k).permute(0, 3, 4, 2, 1)  # (blocks, r, q, c, cb)
    used = (lanes >= 0).any(-1)
    nz = used.nonzero()  # lexicographic: block, r, q, c
    lane_index = lanes[nz.unbind(1)]
    lane_index = torch.where(lane_index >= 0, lane_index, torch.full_like(lane_index, zero))
    return nz, lane_index, blocks


def build_plan(index: torch.Tensor, k: int, stride: int, padding: int, cb: int, zero: int,
               backward_max_density: float = BACKWARD_MAX_DENSITY) -> SparsePlan:
    """Tables for the pattern `index` (Cout, Cin, k, k) int64, -1 where there is no weight."""
    # normal tensors even under inference_mode: the weight cache keys on them (version counters)
    with torch.inference_mode(False):
        return _build_plan(index.clone(), k, stride, padding, cb, zero, backward_max_density)


def _build_plan(index: torch.Tensor, k: int, stride: int, padding: int, cb: int, zero: int,
                backward_max_density: float) -> SparsePlan:
    index = index.detach().to(torch.int64)
    cout, cin = index.shape[:2]
    device = index.device
    nz, lane_index, blocks = _entries(index, cb, zero)
    counts = torch.bincount(nz[:, 0], minlength=blocks)
    padded = (counts + CI - 1) // CI * CI
    start = F.pad(counts.cumsum(0), (1, 0))
    pstart = F.pad(padded.cumsum(0), (1, 0))
    total = int(pstart[-1])
    pos = pstart[nz[:, 0]] + torch.arange(len(nz), device=device) - start[nz[:, 0]]
    taps = torch.zeros(total, 3, dtype=torch.int64, device=device)
    taps[pos] = nz[:, [3, 1, 2]]
    fwd_index = torch.full((total, cb), zero, dtype=torch.int64, device=device)
    fwd_index[pos] = lane_index
    group = torch.repeat_interleave(torch.arange(blocks, device=device), padded // CI).to(torch.int32)
    density = len(nz) / max(blocks * cin * k * k, 1)

    bwd_taps = bwd_ptr = bwd_index = None
    nzt, lane_t, in_blocks = _entries(index.transpose(0, 1), cb, zero)
    if len(nzt) / max(in_blocks * cout * k * k, 1) <= backward_max_density:
        s = stride
        phase = (nzt[:, 1] % s) * s + nzt[:, 2] % s
        key = nzt[:, 0] * s * s + phase
        order = torch.sort(key, stable=True).indices
        nzt, lane_t, key = nzt[order], lane_t[order], key[order]
        bwd_taps = nzt[:, [3, 1, 2]].contiguous()
        bwd_index = lane_t.contiguous()
        per = torch.bincount(key, minlength=in_blocks * s * s).view(in_blocks, s * s)
        bwd_ptr = F.pad(per.flatten().cumsum(0), (1, 0))[:-1].view(in_blocks, s * s)
        bwd_ptr = torch.cat([bwd_ptr, bwd_ptr[:, -1:] + per[:, -1:]], 1).to(torch.int32).contiguous()

    dense_index = torch.where(index >= 0, index, torch.full_like(index, zero))
    return SparsePlan(cout, cin, k, stride, padding, cb, zero, dense_index, taps,
                      pstart.to(torch.int32), fwd_index, group, bwd_taps, bwd_ptr, bwd_index, density,
                      density > backward_max_density, _positions(fwd_index, zero), _positions(dense_index, zero))


def _positions(index: torch.Tensor, zero: int) -> torch.Tensor:
    """Inverse of an index map: where each parameter (0 .. zero-1) sits in index.flatten()."""
    flat = index.flatten()
    where = torch.full((zero + 1,), -1, dtype=torch.int64, device=index.device)
    where[flat] = torch.arange(flat.numel(), device=index.device)  # duplicates only at the zero slot
    where = where[:zero]
    if bool((where < 0).any()):
        raise ValueError("the sparsity pattern does not place every parameter")
    return where


def _flat(params: Sequence[torch.Tensor]) -> torch.Tensor:
    parts = [p.detach().reshape(-1) for p in params]
    return torch.cat(parts + [parts[0].new_zeros(1)])


def _packed(plan: SparsePlan, params: Sequence[torch.Tensor], which: str) -> torch.Tensor:
    index = {"fwd": plan.fwd_index, "bwd": plan.bwd_index, "dense": plan.dense_index}[which]
    # the index tensor is one of the keys: a new plan (new pattern) never hits an old entry
    return cached_pack(("sparse_conv", which), (*params, index), lambda: _flat(params)[index].contiguous())


def output_size(size: int, k: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - k) // stride + 1


def _check_int32(*tensors: torch.Tensor) -> None:
    if any(t.numel() >= 2**31 for t in tensors):
        raise ValueError("tensor too large for the int32 offsets of the Taichi sparse conv kernels")


def _channels_last_padded(x: torch.Tensor, p: int, out: torch.Tensor | None = None,
                          bottom: int | None = None, right: int | None = None) -> torch.Tensor:
    """x (N, C, H, W) as a channels-last (N, p+H+bottom, p+W+right, C) copy with zero borders.

    bottom and right default to p; `out` is filled if given. One pass over x
    whatever its memory format (F.pad of a channels-last tensor takes a slow path).
    """
    n, c, h, w = x.shape
    bottom = p if bottom is None else bottom
    right = p if right is None else right
    if out is None:
        out = x.new_empty(n, p + h + bottom, p + w + right, c)
    out[:, :p].zero_()
    out[:, h + p:].zero_()
    out[:, p:h + p, :p].zero_()
    out[:, p:h + p, w + p:].zero_()
    out[:, p:h + p, p:w + p].copy_(x.detach().permute(0, 2, 3, 1))
    return out


def _image_chunks(n: int, image_bytes: int) -> list[tuple[int, int]]:
    """Batch ranges whose padded copy stays in cache while the kernel reads it (one chunk on a GPU)."""
    per = max(1, CHUNK_BYTES // max(image_bytes, 1))
    return [(i, min(i + per, n)) for i in range(0, n, per)]


def _forward(x: torch.Tensor, plan: SparsePlan, params: Sequence[torch.Tensor]) -> torch.Tensor:
    n, cin, h, w = x.shape
    k, s, p = plan.k, plan.stride, plan.padding
    ho, wo = output_size(h, k, s, p), output_size(w, k, s, p)
    hp, wp = h + 2 * p, w + 2 * p
    y = x.new_empty(n, ho * wo, plan.out_blocks, plan.cb)
    forward, _, _ = _kernels(plan.cb)
    packed, off = _packed(plan, params, "fwd"), plan.fwd_offsets(wp)
    chunks = _image_chunks(n, hp * wp * cin * 4) if x.device.type == "cpu" else [(0, n)]
    buffer = x.new_empty(chunks[0][1], hp, wp, cin)
    _check_int32(buffer)
    for i0, i1 in chunks:
        # pad one chunk of images, then convolve it while it is still in cache
        xp = _channels_last_padded(x[i0:i1], p, buffer[:i1 - i0])
        forward(xp.view(-1), packed, off, plan.fwd_ptr, y[i0:i1].view(-1, plan.out_blocks, plan.cb), hp, wp, cin,
                s, wo, ho * wo, ho * wo <= SMALL_IMAGE)
    y = y.view(n, ho, wo, plan.out_blocks * plan.cb)
    if y.shape[3] != plan.cout:
        y = y[..., :plan.cout]
    return y.permute(0, 3, 1, 2)


def _grad_input(dy: torch.Tensor, plan: SparsePlan, params: Sequence[torch.Tensor],
                size: tuple[int, int]) -> torch.Tensor:
    n, cout, ho, wo = dy.shape
    h, w = size
    k, s, p = plan.k, plan.stride, plan.padding
    if plan.bwd_taps is None:  # nearly dense transposed pattern: oneDNN/cuDNN's dense input gradient
        weight = _packed(plan, params, "dense").view(plan.cout, plan.cin, k, k)
        return torch.nn.grad.conv2d_input((n, plan.cin, h, w), weight, dy, stride=s, padding=p)
    hp, wp = h + 2 * p, w + 2 * p
    npx = PIXELS[plan.cb]
    rows = math.ceil(hp / s)
    cols = math.ceil(math.ceil(wp / s) / npx) * npx
    border = k - 1
    hdp, wdp = border + max(rows, ho), border + max(cols, wo)
    dyp = _channels_last_padded(dy, border, bottom=hdp - border - ho, right=wdp - border - wo)
    _check_int32(dyp)
    dx = dy.new_empty(n, rows * s, cols * s, plan.in_blocks, plan.cb)
    _, backward_input, _ = _kernels(plan.cb)
    backward_input(dyp.view(-1), _packed(plan, params, "bwd"), plan.bwd_offsets(wdp), plan.bwd_ptr, dx,
                   hdp, wdp, cout, s)
    dx = dx.view(n, rows * s, cols * s, plan.in_blocks * plan.cb)[:, p:p + h, p:p + w, :plan.cin]
    return dx.permute(0, 3, 1, 2)


def _grad_params(x: torch.Tensor, dy: torch.Tensor, plan: SparsePlan,
                 params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    n, cin, h, w = x.shape
    ho, wo = dy.shape[2:]
    k, s, p = plan.k, plan.stride, plan.padding
    if plan.dense_weight_grad:  # dense pattern: oneDNN/cuDNN's dense weight gradient, kept weights gathered
        dense = torch.nn.grad.conv2d_weight(x, (plan.cout, plan.cin, k, k), dy, stride=s, padding=p)
        return _split(dense.reshape(-1)[plan.param_dense_pos], params)
    xp = _channels_last_padded(x, p)
    width = plan.out_blocks * plan.cb
    dyp = F.pad(dy.permute(0, 2, 3, 1), (0, width - plan.cout)).contiguous().view(n, ho * wo, plan.out_blocks,
                                                                                  plan.cb)
    rows = max(1, ROWS_PIXELS // wo)
    chunks = math.ceil(n * ho / rows)
    entries = plan.fwd_index.shape[0]
    partial = x.new_empty(chunks, entries, plan.cb)
    _, _, backward_weight = _kernels(plan.cb)
    backward_weight(xp.view(-1), dyp, plan.fwd_offsets(w + 2 * p), plan.fwd_group, partial, rows,
                    h + 2 * p, w + 2 * p, cin, s, ho, wo)
    grad = partial.sum(0) if chunks > 1 else partial[0]
    return _split(grad.reshape(-1)[plan.param_fwd_pos], params)


def _split(flat: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The gradient of each parameter from the gradient of their concatenation."""
    out, start = [], 0
    for t in params:
        out.append(flat[start:start + t.numel()].view_as(t))
        start += t.numel()
    return out


class _SparseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, plan, *params):
        ctx.save_for_backward(x, *params)
        ctx.plan = plan
        return _forward(x, plan, params)

    @staticmethod
    def backward(ctx, dy):
        x, *params = ctx.saved_tensors
        dx = None
        if ctx.needs_input_grad[0]:
            dx = _grad_input(dy, ctx.plan, params, x.shape[2:])
        grads = [None] * len(params)
        if any(ctx.needs_input_grad[2:]):
            grads = _grad_params(x, dy, ctx.plan, params)
            grads = [g if need else None for g, need in zip(grads, ctx.needs_input_grad[2:])]
        return (dx, None, *grads)


def sparse_conv2d(x: torch.Tensor, params: Sequence[torch.Tensor], plan: SparsePlan) -> torch.Tensor:
    """The convolution of `plan`'s pattern with weights taken from `params` (float32).

    Returns (N, Cout, Ho, Wo) in channels-last memory format; differentiable
    in x and every parameter (hand-written backward).
    """
    if x.dtype != torch.float32 or any(t.dtype != torch.float32 for t in params):
        raise TypeError(f"the Taichi sparse conv kernels take float32, got {x.dtype}")
    if x.shape[1] != plan.cin:
        raise ValueError(f"expected {plan.cin} input channels, got {x.shape[1]}")
    return _SparseConv.apply(x, plan, *params)
