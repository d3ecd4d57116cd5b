"""The Taichi 1xN block-sparse kernels against a masked dense conv: forward and both gradients."""
import pytest
import torch
import torch.nn.functional as F

from kernels_taichi.blocksparse import blocksparse_conv2d, blocksparse_plan


def random_pattern(gen, cout, cin, k, block_n, rate):
    """Block-CSR storage of a random 1xN pattern: values, crow, col, out_order and the dense masked weight."""
    rows = cout // block_n
    keep = torch.rand(rows, cin, generator=gen) >= rate
    keep[0, 0] = True
    row_of, col = keep.nonzero(as_tuple=True)
    crow = F.pad(keep.sum(1).cumsum(0), (1, 0))
    values = torch.randn(len(col), block_n, k, k, generator=gen)
    order = torch.randperm(cout, generator=gen)
    return values, crow, col, order, keep


def dense_from(values, crow, col, order, cin):
    block_n, k = values.shape[1], values.shape[2]
    rows = crow.numel() - 1
    blocks = values.new_zeros(rows, cin, block_n, k, k)
    row_of = torch.searchsorted(crow[1:], torch.arange(len(col)), right=True)
    blocks = blocks.index_put((row_of, col), values)
    ordered = blocks.transpose(1, 2).reshape(rows * block_n, cin, k, k)
    return torch.empty_like(ordered).index_copy(0, order, ordered)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


# (batch, Cin, Cout, k, N, rate, H, W, stride, padding, rearranged, transposed Taichi input gradient)
CASES = [
    (2, 8, 16, 3, 4, 0.5, 7, 9, 1, 1, False, True),
    (3, 12, 16, 3, 8, 0.5, 9, 6, 2, 1, True, True),
    (1, 8, 32, 1, 16, 0.5, 7, 7, 2, 0, True, True),
    (2, 6, 8, 1, 2, 0.3, 5, 8, 1, 0, False, False),
    (2, 16, 64, 3, 32, 0.6, 6, 5, 1, 1, True, False),
    (1, 5, 16, 3, 16, 0.4, 5, 7, 2, 0, False, True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "n{}c{}o{}k{}N{}r{}_{}x{}_s{}p{}_{}_{}".format(*c))
def test_matches_masked_dense_conv(case):
    n, cin, cout, k, block_n, rate, h, w, stride, padding, rearranged, taichi_dx = case
    gen = torch.Generator().manual_seed(sum(map(int, case[:10])))
    values, crow, col, order, _ = random_pattern(gen, cout, cin, k, block_n, rate)
    if not rearranged:
        order = torch.arange(cout)
    values.requires_grad_(True)
    x = torch.randn(n, cin, h, w, generator=gen, requires_grad=True)
    y = blocksparse_conv2d(x, values, crow, col, order, stride, padding,
                           backward_max_density=1.0 if taichi_dx else 0.0)
    grad = torch.randn(y.shape, generator=gen)
    got = [y, *torch.autograd.grad(y, [x, values], grad)]
    y_ref = F.conv2d(x, dense_from(values, crow, col, order, cin), stride=stride, padding=padding)
    expected = [y_ref, *torch.autograd.grad(y_ref, [x, values], grad)]
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        assert rel_err(a, b) < 1e-4


def test_plan_skips_pruned_blocks():
    gen = torch.Generator().manual_seed(0)
    values, crow, col, _, keep = random_pattern(gen, 64, 32, 3, 16, 0.5)
    plan = blocksparse_plan(values, crow, col, 32, 1, 1)
    real = (plan.fwd_index < plan.zero).any(1).sum().item()
    assert real == keep.sum().item() * 9  # one entry per kept (channel, tap) of each 16-wide block row
    assert plan.bwd_taps is None  # Nx1 transposed blocks are nearly dense: the dense input gradient runs


def test_new_pattern_gets_new_tables():
    gen = torch.Generator().manual_seed(1)
    values, crow, col, order, _ = random_pattern(gen, 16, 8, 1, 8, 0.5)
    x = torch.randn(1, 8, 3, 3)
    first = blocksparse_conv2d(x, values, crow, col)
    with torch.no_grad():  # same storage, another pattern (a state_dict load does this)
        col.copy_((col + 1) % 8)
    second = blocksparse_conv2d(x, values, crow, col)
    expected = F.conv2d(x, dense_from(values, crow, col, torch.arange(16), 8))
    assert rel_err(second, expected) < 1e-5
    assert not torch.allclose(first, second)
