"""The ASK convolution equals a k x k convolution masked per output block."""
import random

import pytest
import torch
import torch.nn.functional as F

from designer.designs.shapes import KernelShape
from models.layers.ask import AskConv2d


def random_shapes(rng: random.Random, k: int, n: int) -> list[KernelShape]:
    return [KernelShape(tuple(rng.sample(range(1, k * k + 1), rng.randint(1, k * k))), k) for _ in range(n)]


def masked_conv_reference(x, conv: AskConv2d):
    """Written independently of AskConv2d: a full k x k weight, zeroed outside each block's shape."""
    k, cin = conv.kernel_size, conv.in_channels
    weight = torch.zeros(conv.out_channels, cin, k, k, dtype=x.dtype)
    for g, (shape, w) in enumerate(zip(conv.shapes, conv.weights)):
        for j, tap in enumerate(shape.taps):
            row, col = (tap - 1) // k, (tap - 1) % k
            weight[g * conv.group_out:(g + 1) * conv.group_out, :, row, col] = w[:, :, j]
    return F.conv2d(x, weight, stride=conv.stride, padding=k // 2)


CASES = [  # (k, stride, n_shapes, cin, cout, h, w, batch)
    (3, 1, 1, 3, 8, 9, 9, 2), (3, 2, 4, 5, 8, 7, 11, 3), (3, 2, 2, 4, 6, 32, 32, 1),
    (5, 1, 3, 4, 9, 10, 7, 2), (5, 2, 2, 3, 4, 13, 8, 1), (7, 1, 2, 2, 4, 9, 9, 1), (3, 1, 4, 6, 12, 1, 1, 2),
]


@pytest.mark.parametrize("k, stride, n_shapes, cin, cout, h, w, batch", CASES)
def test_forward_equals_a_masked_conv(k, stride, n_shapes, cin, cout, h, w, batch):
    rng = random.Random(hash((k, stride, n_shapes, cin, h, w)))
    torch.manual_seed(rng.randint(0, 1000))
    conv = AskConv2d(cin, cout, random_shapes(rng, k, n_shapes), stride)
    x = torch.randn(batch, cin, h, w, dtype=torch.float64)
    conv = conv.double()
    expected = masked_conv_reference(x, conv)
    assert conv(x).shape == expected.shape == (batch, cout, (h - 1) // stride + 1, (w - 1) // stride + 1)
    torch.testing.assert_close(conv(x), expected)


def test_only_active_taps_are_stored():
    conv = AskConv2d(64, 128, [KernelShape((2, 4, 5, 6, 8)), KernelShape((5,))])
    assert conv.active_weights == 64 * 64 * 5 + 64 * 64 * 1
    assert sum(p.numel() for p in conv.parameters()) == conv.active_weights
    assert [tuple(w.shape) for w in conv.weights] == [(64, 64, 5), (64, 64, 1)]


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    conv = AskConv2d(3, 4, [KernelShape((1, 5, 9)), KernelShape((2, 4, 6, 8))], stride=2).double()
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *w: conv(x), (x, *conv.weights))


def test_inactive_taps_get_no_gradient_through_the_dense_weight():
    conv = AskConv2d(2, 2, [KernelShape((5,))])
    x = torch.randn(1, 2, 5, 5)
    weight = conv.dense_weight()
    weight.retain_grad()
    F.conv2d(x, weight, padding=1).sum().backward()
    assert conv.weights[0].grad is not None and conv.weights[0].grad.abs().sum() > 0
    assert weight.detach()[:, :, 0, 0].abs().sum() == 0


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown ASK backend 'cuda9'"):
        AskConv2d(2, 2, [KernelShape((5,))], backend="cuda9")
