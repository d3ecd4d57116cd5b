"""The decomposed and taichi ASK backends equal the reference backend exactly."""
import random

import pytest
import torch

from designer.designs.shapes import ASK_PRESETS, KernelShape
from models.layers.ask import AskConv2d
from models.layers.ask_backends import plan_shape
from tests.models.backend_checks import (
    assert_backend_keeps_state_dict,
    assert_inference_matches_reference,
    assert_training_matches_reference,
    rel_err,
)

BACKENDS = ["decomposed", "taichi", "sconv", "auto"]

CASES = [  # (k, stride, n_shapes, cin, cout, h, w, batch)
    (3, 1, 1, 3, 8, 7, 11, 1), (3, 2, 4, 5, 8, 7, 11, 3), (3, 2, 2, 4, 6, 9, 9, 1),
    (5, 1, 3, 4, 9, 10, 7, 3), (5, 2, 2, 3, 4, 13, 8, 1), (7, 2, 2, 2, 4, 9, 9, 1), (3, 1, 4, 6, 12, 1, 1, 3),
    # 16+ input channels: decomposed splits shapes into several sub-convs
    (3, 1, 2, 16, 8, 8, 8, 2), (3, 2, 3, 16, 12, 9, 7, 2), (5, 1, 2, 17, 8, 6, 9, 1),
]


def random_shapes(rng: random.Random, k: int, n: int) -> list[KernelShape]:
    return [KernelShape(tuple(rng.sample(range(1, k * k + 1), rng.randint(1, k * k))), k) for _ in range(n)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k, stride, n_shapes, cin, cout, h, w, batch", CASES)
def test_backend_equals_reference(backend, k, stride, n_shapes, cin, cout, h, w, batch):
    rng = random.Random(hash((k, stride, n_shapes, cin, h, w)))
    torch.manual_seed(rng.randint(0, 1000))
    conv = AskConv2d(cin, cout, random_shapes(rng, k, n_shapes), stride)
    assert_training_matches_reference(conv, torch.randn(batch, cin, h, w), backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("k, stride, n_shapes, cin, cout, h, w, batch", CASES)
def test_inference_equals_reference(backend, channels_last, k, stride, n_shapes, cin, cout, h, w, batch):
    rng = random.Random(hash((k, stride, n_shapes, cin, h, w, "infer")))
    torch.manual_seed(rng.randint(0, 1000))
    conv = AskConv2d(cin, cout, random_shapes(rng, k, n_shapes), stride)
    assert_inference_matches_reference(conv, torch.randn(batch, cin, h, w), backend, channels_last)


@pytest.mark.parametrize("preset", sorted(ASK_PRESETS))
def test_decomposed_presets_stride_2(preset):
    torch.manual_seed(0)
    shapes = [KernelShape(tuple(t)) for t in ASK_PRESETS[preset]]
    conv = AskConv2d(16, 4 * len(shapes), shapes, stride=2)  # 16 input channels: the shapes are split
    assert_training_matches_reference(conv, torch.randn(3, 16, 7, 10), "decomposed")


def test_plans_cover_each_tap_once():
    rng = random.Random(1)
    for k in (3, 5, 7):
        for shape in random_shapes(rng, k, 30):
            covered = [i for sub in plan_shape(shape) for i in sub.index if i >= 0]
            assert sorted(covered) == list(range(len(shape)))


def test_plus_shape_is_two_sub_convolutions():
    plan = plan_shape(KernelShape((2, 4, 5, 6, 8)))
    assert [(s.kh, s.kw, s.dh, s.dw) for s in plan] == [(3, 1, 1, 1), (1, 2, 1, 2)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_switching_backend_keeps_state_dict(backend):
    conv = AskConv2d(4, 8, [KernelShape((2, 4, 5, 6, 8)), KernelShape((1, 5, 9))])
    assert_backend_keeps_state_dict(conv, backend, torch.randn(1, 4, 5, 5))


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_cached_weights_follow_updates(backend):
    conv = AskConv2d(3, 4, [KernelShape((2, 4, 5, 6, 8))], backend=backend).eval()
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        conv(x)
        conv.weights[0].mul_(-3)
        got = conv(x)
        assert rel_err(got, torch.nn.functional.conv2d(x, conv.dense_weight(), padding=1)) < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_groups_sharing_a_tap_set_in_another_order(backend):
    """Groups with one tap set share sub-convs; each still gets its own weights' gradients."""
    torch.manual_seed(3)
    conv = AskConv2d(16, 8, [KernelShape((2, 4, 5, 6, 8)), KernelShape((8, 6, 5, 4, 2))])
    assert_training_matches_reference(conv, torch.randn(2, 16, 6, 5), backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_only_where_asked(backend):
    torch.manual_seed(4)
    conv = AskConv2d(16, 8, [KernelShape((1, 5, 9))], stride=2, backend=backend)
    x = torch.randn(2, 16, 7, 7, requires_grad=True)
    conv.requires_grad_(False)
    dx, = torch.autograd.grad(conv(x).sum(), [x])
    conv.backend = "reference"
    expected, = torch.autograd.grad(conv(x).sum(), [x])
    assert rel_err(dx, expected) < 1e-4
    conv.requires_grad_(True)
    conv.backend = backend
    conv(x.detach()).sum().backward()
    got = conv.weights[0].grad.clone()
    conv.weights[0].grad = None
    conv.backend = "reference"
    conv(x.detach()).sum().backward()
    assert rel_err(got, conv.weights[0].grad) < 1e-4
