"""The sconv C++ kernel itself: its plans against a torch reference, and how it builds, caches and falls back.

The layer backends on it are checked in tests/models/test_sconv_backends.py. The build tests use their own
cache directory (KERNEL_STUDIO_CACHE) so they build for real; the AVX2 build runs the layer checks in a
subprocess, so the AVX2 code path is tested on an AVX-512 machine too.
"""
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kernels_taichi import sconv
from kernels_taichi.sconv import Plan
from tests.device import DEVICE

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(DEVICE != "cpu", reason="the C++ kernel runs on the CPU only (its layers' CUDA "
                                "fallback is in tests/models/test_sconv_backends.py)")
needs_sconv = pytest.mark.skipif(not sconv.available(), reason=f"sconv unavailable: {sconv.unavailable_reason()}")
needs_gxx = pytest.mark.skipif(sconv.compiler() is None or os.uname().machine != "x86_64",
                               reason="no g++ on an x86-64 machine")


def cpu_has(flag: str) -> bool:
    try:
        return flag in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def random_plan(rng: random.Random, cin: int, cout: int, nj: int, k: int, index_lists: bool) -> Plan:
    pad, ocb, blocks = k // 2, 16 * nj, []
    for oc in range(0, cout, ocb):
        segs = []
        for tap in rng.sample(range(k * k), rng.randint(1, k * k)):
            lo = rng.randrange(cin)
            hi = rng.randint(lo + 1, cin)
            ch = sorted(rng.sample(range(cin), rng.randint(1, cin))) if index_lists and rng.random() < 0.5 \
                else range(lo, hi)
            segs.append((tap // k - pad, tap % k - pad, ch))
        blocks.append((oc, segs))
    return Plan(blocks, nj, cin, cout)


def dense_of(plan: Plan, packed: torch.Tensor, k: int) -> torch.Tensor:
    """The dense (Cout, Cin, k, k) weight a plan + packed weights compute (segments of one tap add up)."""
    pad, w, at = k // 2, torch.zeros(plan.cout, plan.cin, k, k), 0
    for oc, segs in plan.blocks:
        for sdy, sdx, ch in segs:
            ch = list(ch)
            block = packed[at:at + len(ch) * plan.ocb].view(len(ch), plan.ocb)
            w[oc:oc + plan.ocb, ch, sdy + pad, sdx + pad] += block.t()
            at += len(ch) * plan.ocb
    return w


@needs_sconv
@pytest.mark.parametrize("seed", range(6))
def test_conv_with_every_epilogue_equals_torch(seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    nj = rng.choice([n for n in (1, 2, 4) if n <= sconv.preferred_nj()])
    k, stride = rng.choice([1, 3, 5]), rng.choice([1, 2])
    cin, cout = rng.choice([3, 16, 24, 64]), 16 * nj * rng.randint(1, 3)
    n, h, w = rng.randint(1, 5), rng.randint(1, 17), rng.randint(1, 40)
    plan = random_plan(rng, cin, cout, nj, k, index_lists=seed % 2 == 1)
    packed = torch.randn(plan.size)
    x = torch.randn(n, cin, h, w)
    expected = F.conv2d(x, dense_of(plan, packed, k), stride=stride, padding=k // 2)
    assert torch.allclose(sconv.conv(x, packed, plan, stride), expected, atol=1e-4, rtol=1e-4)
    bias, residual, old = torch.randn(cout), torch.randn_like(expected), torch.randn_like(expected)
    out = old.contiguous(memory_format=torch.channels_last)
    got = sconv.conv(x, packed, plan, stride, bias=bias, relu=True, residual=residual, out=out, accumulate=True)
    assert got.data_ptr() == out.data_ptr()
    assert torch.allclose(got, (expected + old + residual + bias.view(1, -1, 1, 1)).relu(), atol=1e-4, rtol=1e-4)


@needs_sconv
@pytest.mark.parametrize("seed", range(4))
def test_weight_gradient_equals_torch(seed):
    rng = random.Random(100 + seed)
    torch.manual_seed(seed)
    nj = rng.choice([n for n in (1, 2, 4) if n <= sconv.preferred_nj()])
    k, stride = rng.choice([3, 5]), rng.choice([1, 2])
    cin, cout = rng.choice([3, 16, 40]), 16 * nj * rng.randint(1, 2)
    plan = random_plan(rng, cin, cout, nj, k, index_lists=False)
    x = torch.randn(rng.randint(1, 4), cin, rng.randint(2, 12), rng.randint(2, 12))
    dy = torch.randn_like(sconv.conv(x, torch.zeros(plan.size), plan, stride))
    weight = torch.zeros(cout, cin, k, k, requires_grad=True)
    F.conv2d(x, weight, stride=stride, padding=k // 2).mul(dy).sum().backward()
    # the plan's gradient: each segment's slice of the dense gradient (a tap met twice in a block counts twice)
    expected = plan.pack_dense(weight.grad)
    assert torch.allclose(sconv.weight_grad(x, dy, plan, stride), expected, atol=1e-3, rtol=1e-4)


@needs_sconv
def test_bad_inputs_are_refused():
    plan = Plan([(0, [(0, 0, range(16))])], 1, 16, 16)
    with pytest.raises(ValueError, match="float32 CPU input with 16 channels"):
        sconv.conv(torch.randn(1, 8, 4, 4), torch.zeros(plan.size), plan)
    with pytest.raises(ValueError, match="float32"):
        sconv.conv(torch.randn(1, 16, 4, 4, dtype=torch.float64), torch.zeros(plan.size), plan)
    with pytest.raises(ValueError, match="does not fit"):
        Plan([(8, [(0, 0, range(16))])], 1, 16, 32)
    with pytest.raises(ValueError, match="outside"):
        Plan([(0, [(0, 0, range(20))])], 1, 16, 16)


def run_python(code: str, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout)


@needs_gxx
def test_concurrent_first_use_builds_once(tmp_path):
    """Two processes of four threads each ask for the kernel at once in an empty cache: one build, all load it."""
    code = ("import threading; from kernels_taichi import sconv\n"
            "got = []\n"
            "ts = [threading.Thread(target=lambda: got.append(sconv.available())) for _ in range(4)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n"
            "print(got, sconv.build().path)\n")
    env = {"KERNEL_STUDIO_CACHE": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    if not cpu_has("avx2"):
        pytest.skip("this CPU has neither AVX-512F nor AVX2: nothing to build")
    assert all(out.startswith("[True, True, True, True]") for out, _ in outs), outs
    assert sum(err.count("building the sconv C++ kernel") for _, err in outs) == 1, outs
    assert len(list((tmp_path / "sconv").glob("*.so"))) == 1


@needs_gxx
def test_a_failed_build_is_one_line_remembered_and_falls_back(tmp_path):
    """-march=x86-64 (no AVX2) cannot build: the reason is one line, kept in the cache, and the layers still run."""
    code = ("import torch; from kernels_taichi import sconv\n"
            "from designer.designs.shapes import preset_shapes\n"
            "from models.layers.ask import AskConv2d\n"
            "assert not sconv.available()\n"
            "print('REASON', sconv.unavailable_reason())\n"
            "conv = AskConv2d(16, 32, preset_shapes('ASK_5a'), backend='sconv')\n"
            "x = torch.randn(2, 16, 5, 5)\n"
            "a = conv(x); conv.backend = 'reference'\n"
            "assert torch.allclose(a, conv(x), atol=1e-5)\n")
    env = {"KERNEL_STUDIO_CACHE": str(tmp_path), "KERNEL_STUDIO_SCONV_MARCH": "x86-64"}
    first = run_python(code, env)
    assert first.returncode == 0, first.stderr
    reason = [line for line in first.stdout.splitlines() if line.startswith("REASON")][0]
    assert "could not build sconv.cpp" in reason and "AVX-512F, or AVX2 and FMA" in reason
    notes = [line for line in first.stderr.splitlines() if "unavailable" in line]
    assert len(notes) == 1 and "running the ASK 'decomposed' backend instead" in notes[0]
    assert len(list((tmp_path / "sconv").glob("*.failed"))) == 1
    second = run_python(code, env)
    assert second.returncode == 0, second.stderr
    assert "building" not in second.stderr and "remembered in" in second.stdout


def test_no_compiler_is_said_in_one_line(monkeypatch):
    monkeypatch.setenv("KERNEL_STUDIO_CXX", "no-such-compiler-here")
    sconv.reset()
    try:
        assert not sconv.available()
        assert "no C++ compiler 'no-such-compiler-here' on PATH" in sconv.unavailable_reason()
        with pytest.raises(sconv.SconvUnavailable):
            sconv.build()
    finally:
        monkeypatch.undo()
        sconv.reset()


def test_turned_off(monkeypatch):
    monkeypatch.setenv("KERNEL_STUDIO_SCONV", "0")
    sconv.reset()
    try:
        assert sconv.unavailable_reason() == "turned off by KERNEL_STUDIO_SCONV"
    finally:
        monkeypatch.undo()
        sconv.reset()


@needs_gxx
@pytest.mark.skipif(not (cpu_has("avx2") and cpu_has("fma")), reason="this CPU has no AVX2 + FMA")
def test_avx2_build_passes_the_layer_checks(tmp_path):
    """The AVX2 + FMA variant (what a CPU without AVX-512 builds) runs the sconv layer checks exactly."""
    env = {"KERNEL_STUDIO_CACHE": str(tmp_path), "KERNEL_STUDIO_SCONV_MARCH": "x86-64-v3"}
    info = run_python("from kernels_taichi import sconv; b = sconv.build(); print(b.vector_bits, b.preferred_nj)",
                      env)
    assert info.returncode == 0 and info.stdout.split() == ["256", "1"], info.stderr
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           "tests/models/test_sconv_backends.py", "-k", "presets or hetconv or blocksparse or random"],
                          cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout.splitlines()[-1]


def test_main_says_what_it_got(capsys):
    sconv.main()
    out = capsys.readouterr().out
    assert out.startswith("sconv: ") or out.startswith("sconv unavailable: ")
