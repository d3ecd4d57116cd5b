"""The C++ CPU convolution `sconv` (sconv.cpp): building it, loading it, and its plans and calls.

sconv is a direct convolution over structured-sparse weights, NHWC float32 on
the CPU, written with AVX-512 (or AVX2 + FMA) intrinsics and OpenMP behind a
plain C ABI that ctypes calls (ctypes releases the GIL for the call). It needs
g++ with OpenMP on an x86-64 CPU with AVX-512F or AVX2 + FMA; nothing else
(no torch headers, no Python.h), so it builds in seconds.

Building: on first use, `g++ -O3 -march=native -fopenmp -shared -fPIC` into a
cache directory ($KERNEL_STUDIO_CACHE, else ~/.cache/kernel-studio, else the
temp directory), named by a hash of the source, the compiler's version, the
flags and the CPU's model and feature flags, so a copied cache on another CPU
never loads a build for the wrong instructions. A lock file serialises builds
between processes; a lock serialises the first load between threads. A build
that fails is remembered (same hash) with its reason, so each process says so
once, in one line on stderr, and the callers fall back to their torch path
instead of trying again. `python -m kernels_taichi.sconv` builds it (make setup
runs that) and prints what it got.

Environment: KERNEL_STUDIO_SCONV=0 turns it off; KERNEL_STUDIO_CXX names the
compiler (default g++); KERNEL_STUDIO_SCONV_MARCH replaces `native` in -march
(the tests build x86-64-v3, i.e. AVX2, and plain x86-64, which must fail).

A Plan describes one layer to the kernel: the output channels in blocks of
16 * nj, and per block its segments, each one tap offset (dy, dx) with a list
of input channels (a range or an index list). Weights are packed per block,
segment after segment, each (channels x 16 * nj) row-major.
"""
from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

SOURCE = Path(__file__).with_name("sconv.cpp")
BUILD_TIMEOUT_S = 600

_P, _I, _L = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
_SIGNATURES = {
    "sconv_info": ([], _I),
    "sconv_fwd": ([_P] + [_I] * 8 + [_P, _I, _I] + [_P] * 9 + [_P, _L, _I, _I, _I, _I, _I, _P, _L, _P]
                  + [_I] * 4, _I),
    "sconv_dw": ([_P] + [_I] * 7 + [_P, _L, _I, _I] + [_P] * 8 + [_P, _I], _I),
    "ask_pack_f32": ([_P, _I, _I, _I, _I, _P, _I, _I], None),
    "ask_pack_bwd_f32": ([_P, _I, _I, _I, _P, _I, _I, _I, _I, _P, _I], None),
}


class SconvUnavailable(RuntimeError):
    """The C++ kernel cannot be built or loaded here; the message says why, in one line."""


@dataclass(frozen=True)
class Build:
    """A loaded build: the library, its file, the vector width in bits and the preferred output block (16 * nj)."""

    lib: ctypes.CDLL
    path: Path
    vector_bits: int
    preferred_nj: int


_lock = threading.Lock()
_state: dict = {}


def _cache_dir() -> Path:
    for candidate in (os.environ.get("KERNEL_STUDIO_CACHE"), Path.home() / ".cache" / "kernel-studio",
                      Path(tempfile.gettempdir()) / f"kernel-studio-{os.getuid()}"):
        if not candidate:
            continue
        path = Path(candidate) / "sconv"
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".probe{os.getpid()}"
            probe.touch()
            probe.unlink()
            return path
        except OSError:
            continue
    raise SconvUnavailable("no writable cache directory for the build (set KERNEL_STUDIO_CACHE)")


def _cpu_identity() -> str:
    """The CPU's model name and feature flags: what -march=native compiles for."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines() if line.split(":")[0].strip() in ("model name", "flags")]
    return "\n".join(sorted(set(keep)))


def compiler() -> str | None:
    return shutil.which(os.environ.get("KERNEL_STUDIO_CXX", "g++"))


def flags() -> list[str]:
    march = os.environ.get("KERNEL_STUDIO_SCONV_MARCH", "native")
    return ["-O3", f"-march={march}", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]


def _one_line(text: str, limit: int = 240) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    line = (errors or lines or ["(no output)"])[0]
    return line if len(line) <= limit else line[:limit] + "..."


def _build(cxx: str, out: Path) -> None:
    """Compile SOURCE into `out` (atomically); SconvUnavailable with the compiler's first error otherwise."""
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    cmd = [cxx, *flags(), str(SOURCE), "-o", str(tmp)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SconvUnavailable(f"{Path(cxx).name} failed to run: {err}") from None
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        err = SconvUnavailable(f"{Path(cxx).name} could not build sconv.cpp: {_one_line(done.stderr)}")
        err.permanent = True  # the same source, compiler and CPU will fail again
        raise err
    os.replace(tmp, out)


def _load() -> Build:
    if os.environ.get("KERNEL_STUDIO_SCONV", "1").lower() in ("0", "off", "false", "no"):
        raise SconvUnavailable("turned off by KERNEL_STUDIO_SCONV")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise SconvUnavailable(f"it needs an x86-64 CPU (this is {platform.machine()})")
    cxx = compiler()
    if cxx is None:
        raise SconvUnavailable(f"no C++ compiler {os.environ.get('KERNEL_STUDIO_CXX', 'g++')!r} on PATH "
                               f"(install g++ to build it)")
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SconvUnavailable(f"{cxx} --version failed: {err}") from None
    key = hashlib.sha256("\0".join([SOURCE.read_text(), cxx, version, " ".join(flags()),
                                    _cpu_identity()]).encode()).hexdigest()[:16]
    cache = _cache_dir()
    so, failed = cache / f"sconv-{key}.so", cache / f"sconv-{key}.failed"
    with open(cache / f"sconv-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building the same key: wait for it, then reuse
        if failed.exists():
            raise SconvUnavailable(failed.read_text().strip() + f" (remembered in {failed}; delete it to retry)")
        if not so.exists():
            print(f"kernel-studio: building the sconv C++ kernel ({' '.join(flags())}), once ...",
                  file=sys.stderr, flush=True)
            try:
                _build(cxx, so)
            except SconvUnavailable as err:
                if getattr(err, "permanent", False):
                    failed.write_text(str(err) + "\n")
                raise
    try:
        lib = ctypes.CDLL(str(so))
    except OSError as err:
        raise SconvUnavailable(f"cannot load {so}: {err}") from None
    for name, (argtypes, restype) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, restype
    info = lib.sconv_info()
    return Build(lib, so, info // 16, info % 16)


def build() -> Build:
    """The loaded build (building it on first use); SconvUnavailable says why not. Thread-safe."""
    if "build" in _state:
        return _state["build"]
    if "error" in _state:
        raise SconvUnavailable(_state["error"])
    with _lock:
        if "build" not in _state and "error" not in _state:
            try:
                _state["build"] = _load()
            except SconvUnavailable as err:
                _state["error"] = str(err)
    return build()


def available() -> bool:
    """Whether sconv runs here (builds it on first call)."""
    try:
        build()
        return True
    except SconvUnavailable:
        return False


def unavailable_reason() -> str | None:
    try:
        build()
        return None
    except SconvUnavailable as err:
        return str(err)


def warn_fallback(what: str) -> None:
    """Say once per process, in one line on stderr, that `what` runs instead of sconv and why."""
    said = _state.setdefault("warned", set())
    if what not in said:
        said.add(what)
        print(f"kernel-studio: the sconv C++ kernel is unavailable ({unavailable_reason()}); "
              f"running {what} instead", file=sys.stderr, flush=True)


def reset() -> None:
    """Forget the loaded build or the failure (tests; a new environment takes effect on the next call)."""
    with _lock:
        _state.clear()


def preferred_nj() -> int:
    return build().preferred_nj


def pick_nj(channels: int) -> int | None:
    """The output block (16 * nj channels) for a run of `channels` output channels; None if not a multiple of 16."""
    for nj in (4, 2, 1):
        if nj <= preferred_nj() and channels % (16 * nj) == 0:
            return nj
    return None


# ------------------------------------------------------------------------------------------------- plans
Channels = range | Sequence[int]
Segment = tuple[int, int, Channels]  # (dy, dx, input channels)


def _int_array(values, dtype=np.int32) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(values, dtype=dtype))
    return a if a.size else np.zeros(1, dtype=dtype)


class Plan:
    """One layer for the kernel: `blocks` = [(first output channel, [(dy, dx, channels), ...]), ...], every block
    16 * nj output channels; (dy, dx) is the input offset from the output pixel times the stride (padding
    folded in); channels a range (contiguous) or a list of input channel indices."""

    def __init__(self, blocks: Sequence[tuple[int, Sequence[Segment]]], nj: int, cin: int, cout: int):
        self.nj, self.ocb, self.cin, self.cout = nj, 16 * nj, cin, cout
        self.blocks = [(oc, list(segs)) for oc, segs in blocks]
        ob_seg, dy, dx, c0, cn, idx_ofs, idx, wofs, ob_out = [0], [], [], [], [], [], [], [], []
        size = 0
        for oc, segs in self.blocks:
            if oc % 16 or oc + self.ocb > cout:
                raise ValueError(f"output block at {oc} does not fit {cout} channels in blocks of {self.ocb}")
            wofs.append(size)
            ob_out.append(oc)
            for sdy, sdx, ch in segs:
                dy.append(sdy)
                dx.append(sdx)
                if isinstance(ch, range) and ch.step == 1:
                    if ch.start < 0 or ch.stop > cin:
                        raise ValueError(f"channels {ch} outside 0..{cin}")
                    c0.append(ch.start)
                    idx_ofs.append(-1)
                else:
                    ch = list(ch)
                    if ch and (min(ch) < 0 or max(ch) >= cin):
                        raise ValueError(f"channel index outside 0..{cin}")
                    c0.append(0)
                    idx_ofs.append(len(idx))
                    idx += ch
                cn.append(len(ch))
                size += len(ch) * self.ocb
            ob_seg.append(len(dy))
        self.size = size  # floats of packed weights
        self.ranges_only = all(i < 0 for i in idx_ofs)
        self._arrays = [_int_array(ob_seg), _int_array(dy), _int_array(dx), _int_array(c0), _int_array(cn),
                        _int_array(idx_ofs), _int_array(idx), _int_array(wofs, np.int64), _int_array(ob_out)]
        self.pointers = [a.ctypes.data for a in self._arrays]

    def gather_index(self, k: int) -> torch.Tensor:
        """Flat indices into a dense (cout, cin, k, k) weight in packed order (offsets + k // 2 = tap)."""
        pad, parts = k // 2, []
        for oc, segs in self.blocks:
            rows = torch.arange(oc, oc + self.ocb)
            for sdy, sdx, ch in segs:
                cols = torch.as_tensor(list(ch), dtype=torch.long)
                tap = (sdy + pad) * k + (sdx + pad)
                parts.append(((rows[None, :] * self.cin + cols[:, None]) * (k * k) + tap).reshape(-1))
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    def pack_dense(self, weight: torch.Tensor, pad: int | None = None) -> torch.Tensor:
        """Packed weights from a dense (cout, cin, k, k) weight whose tap (r, c) has offset (r - pad, c - pad)."""
        k = weight.shape[-1]
        pad = k // 2 if pad is None else pad
        parts = []
        for oc, segs in self.blocks:
            for sdy, sdx, ch in segs:
                sl = weight[oc:oc + self.ocb, :, sdy + pad, sdx + pad]
                sl = sl[:, ch.start:ch.stop] if isinstance(ch, range) else sl[:, list(ch)]
                parts.append(sl.t().reshape(-1))
        return torch.cat(parts).contiguous() if parts else weight.new_zeros(1)


def out_size(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def conv(x: torch.Tensor, wp: torch.Tensor, plan: Plan, stride: int = 1, out_hw: tuple[int, int] | None = None,
         bias: torch.Tensor | None = None, relu: bool = False, residual: torch.Tensor | None = None,
         out: torch.Tensor | None = None, phase: tuple[int, int, int] | None = None, accumulate: bool = False,
         rows: bool = True) -> torch.Tensor:
    """[relu]( conv(x) [+ out if accumulate] [+ residual] [+ bias] ), NHWC (channels_last) float32 on the CPU.

    out_hw: the output grid (default: 'same' for the offsets given, i.e. (H - 1) // stride + 1).
    phase (step, oy, ox): write output pixel (oh, ow) to out[:, :, oy + oh * step, ox + ow * step] of a larger
    `out` (one phase of a strided transposed conv)."""
    lib = build().lib
    n, c, h, w = x.shape
    if c != plan.cin or x.dtype != torch.float32 or x.device.type != "cpu":
        raise ValueError(f"sconv takes float32 CPU input with {plan.cin} channels, got {x.dtype} {tuple(x.shape)} "
                         f"on {x.device}")
    ho, wo = out_hw or ((h - 1) // stride + 1, (w - 1) // stride + 1)
    x = _nhwc(x)
    if out is None:
        if phase is not None:
            raise ValueError("a phase output needs `out`")
        out = torch.empty(n, plan.cout, ho, wo, memory_format=torch.channels_last)
    if not (out.is_contiguous(memory_format=torch.channels_last) and out.shape[1] == plan.cout
            and out.dtype == torch.float32):
        raise ValueError("out must be a channels_last float32 tensor with the plan's channels")
    step, oy, ox = phase or (1, 0, 0)
    if phase is None and tuple(out.shape) != (n, plan.cout, ho, wo):
        raise ValueError(f"out has shape {tuple(out.shape)}, the conv gives {(n, plan.cout, ho, wo)}")
    if residual is not None:
        residual = _nhwc(residual)
        if tuple(residual.shape) != (n, plan.cout, ho, wo):
            raise ValueError("the residual must have the output's shape")
    if bias is not None:
        bias = bias.detach().contiguous()
    # (h, w, n) pixel order on tiny images: a tile's pixels share their position, so a tap in the padding is
    # skipped exactly; it pays only with few pointer rows per tile (nj = 4).
    order = 1 if ho * wo <= 16 and n >= 4 and plan.nj == 4 else 0
    rc = lib.sconv_fwd(x.data_ptr(), n, h, w, c, ho, wo, stride, order, wp.data_ptr(), len(plan.blocks), plan.nj,
                       *plan.pointers, out.data_ptr(), plan.cout, out.shape[2], out.shape[3], step, oy, ox,
                       _ptr(residual), plan.cout, _ptr(bias), int(relu), int(accumulate), int(rows),
                       torch.get_num_threads())
    if rc:
        raise RuntimeError(f"sconv_fwd failed ({rc})")
    return out


def weight_grad(x: torch.Tensor, dy: torch.Tensor, plan: Plan, stride: int = 1) -> torch.Tensor:
    """Packed dW of conv(x, ., plan, stride) for output gradient dy (channel ranges only)."""
    if not plan.ranges_only:
        raise ValueError("sconv's weight gradient takes channel ranges only")
    x, dy = _nhwc(x), _nhwc(dy)
    n, c, h, w = x.shape
    dwp = torch.empty(max(plan.size, 1))
    p = plan.pointers
    rc = build().lib.sconv_dw(x.data_ptr(), n, h, w, c, dy.shape[2], dy.shape[3], stride, dy.data_ptr(),
                              dy.shape[1], len(plan.blocks), plan.nj, p[0], p[1], p[2], p[3], p[4], p[5], p[7],
                              p[8], dwp.data_ptr(), torch.get_num_threads())
    if rc:
        raise RuntimeError(f"sconv_dw failed ({rc})")
    return dwp


def pack_ask(weights: Sequence[torch.Tensor], ocb: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Per-shape weights (Cout_g, Cin, T_g) -> forward packing [block][tap][Cin][ocb], all groups in order."""
    lib = build().lib
    ws = [w.detach().contiguous() for w in weights]
    total = sum(w.numel() for w in ws)
    out = torch.empty(total) if out is None else out
    offset = 0
    for w in ws:
        go, ci, t = w.shape
        lib.ask_pack_f32(w.data_ptr(), go, ci, t, ocb, out.data_ptr() + 4 * offset, 0, torch.get_num_threads())
        offset += w.numel()
    return out


def unpack_ask(packed: torch.Tensor, shapes: Sequence[tuple[int, int, int]], ocb: int) -> list[torch.Tensor]:
    """Inverse of pack_ask: packed (gradients) -> per-shape (Cout_g, Cin, T_g)."""
    lib = build().lib
    packed = packed.contiguous()
    grads, offset = [], 0
    for go, ci, t in shapes:
        g = torch.empty(go, ci, t)
        lib.ask_pack_f32(g.data_ptr(), go, ci, t, ocb, packed.data_ptr() + 4 * offset, 1, torch.get_num_threads())
        grads.append(g)
        offset += go * ci * t
    return grads


def pack_ask_transposed(weights: Sequence[torch.Tensor], taps: Sequence[Sequence[int]], ocbt: int) -> torch.Tensor:
    """Backward-data packing: per block of ocbt input channels, for each group g and each of its taps taps[g]
    (indices into its T_g), the (Cout_g x ocbt) transposed weights: [cin block][segment][Cout_g][ocbt]."""
    lib = build().lib
    gout, cin = weights[0].shape[:2]
    nseg = sum(len(t) for t in taps)
    out = torch.empty(max(cin // ocbt * nseg * gout * ocbt, 1))
    s0 = 0
    for w, sel in zip(weights, taps):
        if not sel:
            continue
        w = w.detach().contiguous()
        sel_arr = _int_array(sel)
        lib.ask_pack_bwd_f32(w.data_ptr(), gout, cin, w.shape[2], sel_arr.ctypes.data, len(sel), ocbt, nseg, s0,
                             out.data_ptr(), torch.get_num_threads())
        s0 += len(sel)
    return out


def main() -> None:
    """Build (or find) the kernel and say what this machine got; exit 0 either way (it is optional)."""
    try:
        b = build()
        print(f"sconv: {b.path} (vectors of {b.vector_bits} bits, output blocks of {16 * b.preferred_nj})")
    except SconvUnavailable as err:
        print(f"sconv unavailable: {err}; the sconv backends will run their torch fallback")


if __name__ == "__main__":
    main()
