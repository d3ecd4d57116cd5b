"""The Taichi HetConv kernel against the dense conv of the equivalent 3x3 weight: forward and both gradients."""
import pytest
import torch
import torch.nn.functional as F

from kernels_taichi.hetconv import hetconv2d, hetconv_plan

# (batch, Cin, Cout, P, H, W, stride, padding)
CASES = [
    (2, 8, 8, 2, 7, 9, 1, 1),
    (3, 12, 8, 4, 9, 6, 2, 1),
    (1, 8, 16, 4, 7, 7, 2, 0),
    (2, 6, 6, 3, 5, 8, 1, 0),
    (2, 16, 64, 2, 5, 3, 1, 1),   # 32 output channels per group: 32-wide tiles
    (1, 4, 6, 1, 4, 5, 2, 1),     # P = 1: a plain 3x3 conv
]


def dense_weight(w3, w1, part):
    """(Cout, Cin, 3, 3) with w3 on the group's channels and w1 on the centre of the others."""
    cout, ib = w3.shape[:2]
    cin = ib * part
    ob = cout // part
    rows = []
    for o in range(cout):
        g = o // ob
        row = w3.new_zeros(cin, 3, 3)
        row[g * ib:(g + 1) * ib] = w3[o]
        others = [c for c in range(cin) if c // ib != g]
        if others:
            row[others, 1, 1] = w1[o]
        rows.append(row)
    return torch.stack(rows)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("case", CASES, ids=lambda c: "n{}c{}o{}p{}_{}x{}_s{}p{}".format(*c))
def test_matches_dense_conv(case):
    n, cin, cout, part, h, w, stride, padding = case
    gen = torch.Generator().manual_seed(sum(case))
    x = torch.randn(n, cin, h, w, generator=gen, requires_grad=True)
    w3 = torch.randn(cout, cin // part, 3, 3, generator=gen, requires_grad=True)
    w1 = torch.randn(cout, cin - cin // part, generator=gen, requires_grad=True)
    y = hetconv2d(x, w3, w1, part, stride, padding)
    grad = torch.randn(y.shape, generator=gen)
    got = [y, *torch.autograd.grad(y, [x, w3, w1], grad)]
    y_ref = F.conv2d(x, dense_weight(w3, w1, part), stride=stride, padding=padding)
    expected = [y_ref, *torch.autograd.grad(y_ref, [x, w3, w1], grad, allow_unused=True)]
    for a, b in zip(got, expected):
        if b is None:  # P = 1: no 1x1 weights
            assert a.numel() == 0
            continue
        assert a.shape == b.shape
        assert rel_err(a, b) < 1e-4


def test_work_is_the_effective_macs():
    plan = hetconv_plan(64, 64, 4, 1, 1)
    # every entry of a 16-wide tile is used by all 16 filters: exactly 9*Cin/P + Cin - Cin/P entries
    real = (plan.fwd_index < plan.zero).any(1).sum().item()
    assert real * plan.cb == 64 * (9 * 16 + 48)
    assert plan.bwd_taps is not None  # the transposed pattern is sparse: the Taichi input gradient runs


def test_bias_and_weight_updates():
    x = torch.randn(2, 8, 5, 5)
    w3, w1, bias = torch.randn(8, 2, 3, 3), torch.randn(8, 6), torch.randn(8)
    first = hetconv2d(x, w3, w1, 4, bias=bias)
    with torch.no_grad():
        w3.mul_(2)
        w1.mul_(2)
    second = hetconv2d(x, w3, w1, 4, bias=bias)
    assert torch.allclose(second - bias.view(1, -1, 1, 1), 2 * (first - bias.view(1, -1, 1, 1)), atol=1e-5)
