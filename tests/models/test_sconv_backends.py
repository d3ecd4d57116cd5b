"""The sconv backends (the C++ CPU kernel) equal `reference`, in the cases the kernel itself runs, and fall back
cleanly, with one line on stderr, where it cannot build.

The generic backend tests (test_*_backends.py) include sconv too, but their small layers mostly take the
fallback; here every layer has output groups of a multiple of 16 channels, so the kernel runs them.
"""
import random

import pytest
import torch
import torch.nn.functional as F

from designer.designs.shapes import ASK_PRESETS, KernelShape
from kernels_taichi import sconv
from models.layers.ask import ASK_BACKENDS, AskConv2d
from models.layers.autotune import fastest
from models.layers.blocksparse import BlockSparseConv2d
from models.layers.hetconv import HetConv2d
from tests.models.backend_checks import (
    assert_backend_keeps_state_dict,
    assert_inference_matches_reference,
    assert_training_matches_reference,
    rel_err,
)

needs_sconv = pytest.mark.skipif(not sconv.available(), reason=f"sconv unavailable: {sconv.unavailable_reason()}")


def shapes_of(preset):
    return [KernelShape(tuple(t)) for t in ASK_PRESETS[preset]]


@needs_sconv
@pytest.mark.parametrize("preset", sorted(ASK_PRESETS))
@pytest.mark.parametrize("stride", [1, 2])
def test_ask_presets_train_and_infer(preset, stride):
    torch.manual_seed(len(preset) * 10 + stride)
    shapes = shapes_of(preset)
    conv = AskConv2d(32, 16 * len(shapes), shapes, stride)
    x = torch.randn(2, 32, 9, 10)
    assert_training_matches_reference(conv, x, "sconv")
    for channels_last in (False, True):
        assert_inference_matches_reference(conv, x, "sconv", channels_last)


# (k, stride, n_shapes, cin, group_out, h, w, batch): a first conv (3 channels: the masked dense conv), 16-multiples,
# k = 5, tiny images (every tap in the padding somewhere), wide rows (the row-tile path), batch 1
ASK_CASES = [
    (3, 1, 1, 3, 64, 12, 12, 2), (3, 1, 2, 16, 32, 33, 20, 2), (3, 2, 3, 48, 16, 9, 7, 3), (5, 1, 2, 16, 16, 7, 9, 2),
    (5, 2, 3, 32, 16, 11, 8, 1), (3, 1, 1, 64, 64, 2, 2, 5), (3, 1, 4, 64, 16, 1, 1, 4), (3, 2, 1, 16, 48, 33, 33, 1),
    (7, 3, 2, 16, 32, 10, 10, 2), (3, 1, 1, 24, 32, 6, 6, 2),
]


@needs_sconv
@pytest.mark.parametrize("k, stride, n_shapes, cin, group_out, h, w, batch", ASK_CASES)
def test_ask_random_shapes(k, stride, n_shapes, cin, group_out, h, w, batch):
    rng = random.Random(k * 1000 + stride * 100 + cin + h)
    torch.manual_seed(rng.randint(0, 999))
    shapes = [KernelShape(tuple(rng.sample(range(1, k * k + 1), rng.randint(1, k * k))), k) for _ in range(n_shapes)]
    conv = AskConv2d(cin, group_out * n_shapes, shapes, stride, bias=True)
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(batch, cin, h, w)
    assert_training_matches_reference(conv, x, "sconv")
    assert_inference_matches_reference(conv, x, "sconv", channels_last=True)


@needs_sconv
def test_ask_input_gradient_for_channels_not_a_multiple_of_16_and_state_dict():
    """24 input channels: the kernel's input gradient needs 16-multiples, torch's dense backward gives it."""
    torch.manual_seed(5)
    conv = AskConv2d(24, 64, shapes_of("ASK_5a"))
    x = torch.randn(2, 24, 8, 8, requires_grad=True)
    conv.backend = "sconv"
    dx, = torch.autograd.grad(conv(x).square().sum(), [x])
    conv.backend = "reference"
    expected, = torch.autograd.grad(conv(x).square().sum(), [x])
    assert rel_err(dx, expected) < 1e-4
    assert_backend_keeps_state_dict(conv, "sconv", torch.randn(1, 24, 5, 5))


@needs_sconv
def test_an_ask_first_conv_with_few_input_channels_runs_the_masked_dense_conv(monkeypatch):
    conv = AskConv2d(3, 64, shapes_of("ASK_5a"), backend="sconv").eval()
    monkeypatch.setattr(sconv, "conv", lambda *a, **k: pytest.fail("a 3-channel input reached the kernel"))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert rel_err(conv(x), F.conv2d(x, conv.dense_weight(), padding=1)) < 1e-5


@needs_sconv
def test_ask_cached_weights_follow_updates():
    conv = AskConv2d(16, 32, shapes_of("ASK_3a"), backend="sconv").eval()
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        conv(x)
        conv.weights[1].mul_(-3)
        got = conv(x)
        conv.backend = "reference"
        assert rel_err(got, conv(x)) < 1e-5


@needs_sconv
def test_ask_training_steps_match_reference():
    """A few SGD steps of a small network: same losses with sconv as with reference (weights change in place)."""
    losses = {}
    for backend in ("reference", "sconv"):
        torch.manual_seed(0)
        net = torch.nn.Sequential(AskConv2d(16, 32, shapes_of("ASK_5a"), backend=backend), torch.nn.ReLU(),
                                  AskConv2d(32, 32, shapes_of("ASK_4b"), stride=2, backend=backend))
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x = torch.randn(4, 16, 8, 8)
        out = []
        for _ in range(3):
            opt.zero_grad()
            loss = net(x).square().mean()
            loss.backward()
            opt.step()
            out.append(loss.item())
        losses[backend] = out
    assert losses["sconv"] == pytest.approx(losses["reference"], rel=1e-4)


HET_CASES = [  # (Cin, Cout, P, stride, padding, bias, H, W, batch)
    (64, 64, 4, 1, 1, True, 8, 8, 2), (64, 128, 4, 2, 1, False, 9, 7, 3), (128, 64, 2, 1, 0, True, 6, 6, 2),
    (64, 64, 4, 2, 0, False, 9, 9, 2), (32, 64, 2, 1, 1, False, 33, 20, 1), (12, 64, 4, 1, 1, True, 5, 5, 2),
    (512, 512, 4, 1, 1, False, 2, 2, 3),
]


@needs_sconv
@pytest.mark.parametrize("cin, cout, part, stride, padding, bias, h, w, batch", HET_CASES)
def test_hetconv(cin, cout, part, stride, padding, bias, h, w, batch):
    torch.manual_seed(cin + cout + part + stride)
    conv = HetConv2d(cin, cout, part, stride, padding, bias)
    if bias:
        torch.nn.init.normal_(conv.bias)
    x = torch.randn(batch, cin, h, w)
    assert_training_matches_reference(conv, x, "sconv")
    for channels_last in (False, True):
        assert_inference_matches_reference(conv, x, "sconv", channels_last)


@needs_sconv
def test_hetconv_cached_weights_follow_updates_and_state_dict_is_kept():
    conv = HetConv2d(64, 64, 4, backend="sconv").eval()
    x = torch.randn(2, 64, 6, 6)
    with torch.no_grad():
        conv(x)
        conv.weight1.mul_(-3)
        conv.weight3.mul_(2)
        got = conv(x)
        conv.backend = "reference"
        assert rel_err(got, conv(x)) < 1e-5
    assert_backend_keeps_state_dict(conv, "sconv", x)


BS_CASES = [  # (Cin, Cout, k, N, rate, rearrange, stride, padding, bias, H, W, batch)
    (64, 64, 3, 16, 0.5, True, 1, None, True, 8, 8, 2), (32, 64, 3, 32, 0.5, False, 2, None, False, 9, 9, 3),
    (64, 128, 1, 16, 0.3, True, 1, None, False, 5, 5, 2), (64, 64, 3, 16, 0.5, False, 1, 0, True, 7, 7, 2),
    (16, 128, 3, 64, 0.7, True, 2, None, False, 6, 6, 1), (32, 32, 3, 16, 0.5, True, 1, None, False, 32, 32, 1),
]


@needs_sconv
@pytest.mark.parametrize("cin, cout, k, block_n, rate, rearrange, stride, padding, bias, h, w, batch", BS_CASES)
def test_blocksparse(cin, cout, k, block_n, rate, rearrange, stride, padding, bias, h, w, batch):
    torch.manual_seed(cin + cout + k + block_n)
    conv = BlockSparseConv2d(cin, cout, k, block_n, rate, rearrange, stride, padding, bias)
    conv.set_from_dense(torch.randn(cout, cin, k, k))
    if bias:
        torch.nn.init.normal_(conv.bias)
    x = torch.randn(batch, cin, h, w)
    for channels_last in (False, True):
        assert_inference_matches_reference(conv, x, "sconv", channels_last)
    assert_training_matches_reference(conv, x, "sconv")  # training runs reference's autograd


@needs_sconv
def test_blocksparse_follows_a_loaded_pattern():
    torch.manual_seed(1)
    conv = BlockSparseConv2d(32, 32, 3, 16, 0.5, True, backend="sconv")
    conv.set_from_dense(torch.randn(32, 32, 3, 3))
    x = torch.randn(2, 32, 5, 5)
    with torch.no_grad():
        conv(x)
        other = BlockSparseConv2d(32, 32, 3, 16, 0.5, False)
        other.set_from_dense(torch.randn(32, 32, 3, 3))
        conv.load_state_dict(other.state_dict())
        got = conv(x)
        conv.backend = "reference"
        assert rel_err(got, conv(x)) < 1e-5


def backends_auto_tries(conv: AskConv2d, x: torch.Tensor) -> set[str]:
    """The ASK backends auto's measurement runs on x (wrapped to be seen; each keeps its usable())."""
    seen = []
    registry = {}
    for name, f in ASK_BACKENDS.items():
        if name != "auto":
            registry[name] = lambda m, inp, f=f, name=name: seen.append(name) or f(m, inp)
            if hasattr(f, "usable"):
                registry[name].usable = f.usable
    fastest(registry, conv, x, wants_grad=False)
    return set(seen)


@needs_sconv
def test_auto_considers_sconv_and_on_the_cpu_leaves_taichi_out():
    conv = AskConv2d(64, 64, shapes_of("ASK_5a"))
    x = torch.randn(8, 64, 16, 16).contiguous(memory_format=torch.channels_last)
    assert backends_auto_tries(conv, x) == {"reference", "decomposed", "sconv"}


@pytest.fixture
def sconv_off(monkeypatch):
    """sconv as on a machine where it cannot build."""
    monkeypatch.setenv("KERNEL_STUDIO_SCONV", "0")
    sconv.reset()
    yield
    monkeypatch.undo()
    sconv.reset()


def test_without_the_kernel_each_kind_falls_back_exactly_and_says_so_once(sconv_off, capfd):
    torch.manual_seed(2)
    ask = AskConv2d(16, 32, shapes_of("ASK_5a"))
    het = HetConv2d(32, 32, 2)
    bs = BlockSparseConv2d(32, 32, 3, 16, 0.5)
    bs.set_from_dense(torch.randn(32, 32, 3, 3))
    x16, x32 = torch.randn(2, 16, 6, 6), torch.randn(2, 32, 6, 6)
    for conv, x in ((ask, x16), (het, x32), (bs, x32)):
        assert_inference_matches_reference(conv, x, "sconv", channels_last=True)
        assert_inference_matches_reference(conv, x, "sconv", channels_last=True)
    assert_training_matches_reference(ask, x16, "sconv")
    err = capfd.readouterr().err.splitlines()
    notes = [line for line in err if "sconv C++ kernel is unavailable" in line]
    assert len(notes) == 3  # one line per layer kind, not per call
    assert all("turned off by KERNEL_STUDIO_SCONV" in line for line in notes)
    assert any("'decomposed'" in line for line in notes) and any("'reference'" in line for line in notes)


def test_without_the_kernel_auto_leaves_sconv_out_and_takes_taichi(sconv_off):
    conv = AskConv2d(16, 16, shapes_of("ASK_5a"))
    assert backends_auto_tries(conv, torch.randn(2, 16, 6, 6)) == {"reference", "decomposed", "taichi"}
