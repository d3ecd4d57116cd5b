"""The decomposed and taichi HetConv backends equal the reference backend exactly."""
import pytest
import torch

from models.layers.hetconv import HetConv2d
from tests.models.backend_checks import (
    assert_backend_keeps_state_dict,
    assert_inference_matches_reference,
    assert_training_matches_reference,
    rel_err,
)

BACKENDS = ["decomposed", "taichi", "sconv", "auto"]

CASES = [  # (Cin, Cout, P, stride, padding, bias, H, W, batch)
    (8, 8, 4, 1, 1, False, 7, 9, 2), (12, 8, 4, 2, 1, False, 9, 6, 3), (8, 16, 2, 2, 0, True, 7, 7, 1),
    (6, 6, 3, 1, 0, False, 5, 8, 2), (16, 64, 2, 1, 1, True, 5, 3, 2), (4, 6, 1, 2, 1, False, 4, 5, 1),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cin, cout, part, stride, padding, bias, h, w, batch", CASES)
def test_backend_equals_reference(backend, cin, cout, part, stride, padding, bias, h, w, batch):
    torch.manual_seed(cin * 100 + cout + part)
    conv = HetConv2d(cin, cout, part, stride, padding, bias)
    if bias:
        torch.nn.init.normal_(conv.bias)
    assert_training_matches_reference(conv, torch.randn(batch, cin, h, w), backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cin, cout, part, stride, padding, bias, h, w, batch", CASES)
def test_inference_equals_reference(backend, channels_last, cin, cout, part, stride, padding, bias, h, w, batch):
    torch.manual_seed(cin * 10 + cout + part)
    conv = HetConv2d(cin, cout, part, stride, padding, bias)
    if bias:
        torch.nn.init.normal_(conv.bias)
    assert_inference_matches_reference(conv, torch.randn(batch, cin, h, w), backend, channels_last)


@pytest.mark.parametrize("backend", BACKENDS)
def test_switching_backend_keeps_state_dict(backend):
    assert_backend_keeps_state_dict(HetConv2d(8, 8, 4), backend, torch.randn(1, 8, 5, 5))


@pytest.mark.parametrize("backend", BACKENDS)
def test_cached_weights_follow_updates(backend):
    conv = HetConv2d(8, 8, 4, backend=backend).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        conv(x)
        conv.weight1.mul_(-3)
        conv.weight3.mul_(2)
        got = conv(x)
        conv.backend = "reference"
        assert rel_err(got, conv(x)) < 1e-5
