"""The Taichi ASK kernels against a masked dense conv: forward and both gradients."""
import pytest
import torch
import torch.nn.functional as F

from kernels_taichi.ask import ask_conv2d

PLUS = ((0, 1), (1, 0), (1, 1), (1, 2), (2, 1))

# (batch, Cin, Cout per group, H, W, k, stride, taps per group)
CASES = [
    (1, 3, 8, 7, 11, 3, 1, [PLUS]),
    (3, 5, 6, 7, 11, 3, 2, [((0, 1), (1, 1)), ((0, 0), (2, 2), (1, 1))]),
    (3, 8, 4, 9, 6, 3, 1, [PLUS, ((0, 0), (0, 2), (1, 1), (2, 0), (2, 2)), ((2, 1), (1, 0)), ((1, 1),)]),
    (1, 6, 40, 8, 8, 5, 1, [((0, 0), (4, 4), (2, 2)), ((1, 3),)]),
    (3, 37, 5, 6, 5, 5, 2, [((0, 0), (4, 4), (2, 2), (3, 1)), ((1, 3), (2, 2)), ((4, 0),)]),
    (1, 4, 3, 9, 7, 7, 2, [((0, 0), (6, 6), (3, 2), (5, 1))]),
]


def masked_weight(weights, taps, k):
    """The dense k x k weight equal to the sparse layer (reference semantics)."""
    blocks = []
    for w, group in zip(weights, taps):
        dense = w.new_zeros(w.shape[0], w.shape[1], k, k)
        for i, (r, c) in enumerate(group):
            dense[:, :, r, c] = w[:, :, i]
        blocks.append(dense)
    return torch.cat(blocks)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c[0]}c{c[1]}o{c[2]}_{c[3]}x{c[4]}_k{c[5]}s{c[6]}g{len(c[7])}")
def test_matches_masked_dense_conv(case):
    n, cin, go, h, w, k, stride, taps = case
    gen = torch.Generator().manual_seed(hash(case[:7]) % 2**31)
    x = torch.randn(n, cin, h, w, generator=gen, requires_grad=True)
    weights = [torch.randn(go, cin, len(g), generator=gen, requires_grad=True) for g in taps]
    y = ask_conv2d(x, weights, taps, k, stride)
    grad = torch.randn(y.shape, generator=gen)
    dx, *dws = torch.autograd.grad(y, [x, *weights], grad)
    y_ref = F.conv2d(x, masked_weight(weights, taps, k), stride=stride, padding=k // 2)
    dx_ref, *dws_ref = torch.autograd.grad(y_ref, [x, *weights], grad)
    assert y.shape == y_ref.shape
    assert rel_err(y, y_ref) < 1e-4
    assert rel_err(dx, dx_ref) < 1e-4
    for dw, dw_ref in zip(dws, dws_ref):
        assert dw.shape == dw_ref.shape
        assert rel_err(dw, dw_ref) < 1e-4


def test_packed_weights_follow_in_place_updates():
    x = torch.randn(2, 4, 6, 6)
    weight = torch.randn(8, 4, len(PLUS))
    first = ask_conv2d(x, [weight], [PLUS], 3)
    with torch.no_grad():
        weight.mul_(2)
    second = ask_conv2d(x, [weight], [PLUS], 3)
    assert torch.allclose(second, 2 * first, rtol=1e-5, atol=1e-5)


def test_only_requested_gradients():
    x = torch.randn(1, 3, 5, 5)
    weight = torch.randn(4, 3, len(PLUS), requires_grad=True)
    (dw,) = torch.autograd.grad(ask_conv2d(x, [weight], [PLUS], 3).sum(), [weight])
    assert dw.shape == weight.shape


def test_rejects_other_dtypes():
    with pytest.raises(TypeError):
        ask_conv2d(torch.randn(1, 2, 4, 4, dtype=torch.float64), [torch.randn(2, 2, 1, dtype=torch.float64)],
                   [((1, 1),)], 3)
