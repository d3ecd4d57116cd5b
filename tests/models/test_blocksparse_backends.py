"""The taichi and auto 1xN block-sparse backends equal the reference backend exactly."""
import pytest
import torch

from models.layers.blocksparse import BlockSparseConv2d
from tests.models.backend_checks import (
    assert_backend_keeps_state_dict,
    assert_inference_matches_reference,
    assert_training_matches_reference,
    rel_err,
)

CASES = [  # (Cin, Cout, k, N, rate, rearrange, stride, padding, bias, H, W, batch)
    (8, 16, 3, 4, 0.5, False, 1, None, False, 7, 9, 2), (12, 16, 3, 8, 0.5, True, 2, None, True, 9, 6, 3),
    (8, 32, 1, 16, 0.5, True, 2, None, False, 7, 7, 1), (6, 8, 1, 2, 0.3, False, 1, None, True, 5, 8, 2),
    (5, 16, 3, 16, 0.4, False, 2, 0, False, 5, 7, 1),
]


def make(cin, cout, k, block_n, rate, rearrange, stride, padding, bias):
    conv = BlockSparseConv2d(cin, cout, k, block_n, rate, rearrange, stride, padding, bias)
    conv.set_from_dense(torch.randn(cout, cin, k, k))
    if bias:
        torch.nn.init.normal_(conv.bias)
    return conv


@pytest.mark.parametrize("backend", ["taichi", "sconv", "auto"])
@pytest.mark.parametrize("cin, cout, k, block_n, rate, rearrange, stride, padding, bias, h, w, batch", CASES)
def test_backend_equals_reference(backend, cin, cout, k, block_n, rate, rearrange, stride, padding, bias, h, w, batch):
    torch.manual_seed(cin * 100 + cout + k)
    conv = make(cin, cout, k, block_n, rate, rearrange, stride, padding, bias)
    assert_training_matches_reference(conv, torch.randn(batch, cin, h, w), backend)


@pytest.mark.parametrize("backend", ["taichi", "sconv", "auto"])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cin, cout, k, block_n, rate, rearrange, stride, padding, bias, h, w, batch", CASES)
def test_inference_equals_reference(backend, channels_last, cin, cout, k, block_n, rate, rearrange, stride, padding,
                                    bias, h, w, batch):
    torch.manual_seed(cin * 10 + cout + k)
    conv = make(cin, cout, k, block_n, rate, rearrange, stride, padding, bias)
    assert_inference_matches_reference(conv, torch.randn(batch, cin, h, w), backend, channels_last)


@pytest.mark.parametrize("backend", ["taichi", "sconv", "auto"])
def test_switching_backend_keeps_state_dict(backend):
    torch.manual_seed(0)
    conv = make(8, 16, 3, 4, 0.5, True, 1, None, False)
    assert_backend_keeps_state_dict(conv, backend, torch.randn(1, 8, 5, 5))


def test_loaded_pattern_is_used():
    torch.manual_seed(1)
    conv = make(8, 16, 1, 8, 0.5, False, 1, None, False)
    conv.backend = "taichi"
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        conv(x)
        other = make(8, 16, 1, 8, 0.5, True, 1, None, False)
        conv.load_state_dict(other.state_dict())
        got = conv(x)
        conv.backend = "reference"
        assert rel_err(got, conv(x)) < 1e-5


def test_reference_inference_follows_a_new_pattern():
    """The reference backend caches its masked kernel while gradients are off; a load replaces it."""
    torch.manual_seed(2)
    conv = make(8, 16, 3, 4, 0.5, False, 1, None, False)
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        conv(x)
        conv.load_state_dict(make(8, 16, 3, 4, 0.5, True, 1, None, False).state_dict())
        got = conv(x)
        assert rel_err(got, torch.nn.functional.conv2d(x, conv.dense_weight(), padding=1)) < 1e-5
