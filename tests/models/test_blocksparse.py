"""1xN block pruning: mask rule, rearrangement, compact module exact against weight * mask."""
import pytest
import torch
import torch.nn.functional as F

from models.layers.blocksparse import BlockSparseConv2d, block_mask, element_mask


def test_mask_prunes_the_smallest_fraction_in_whole_blocks():
    torch.manual_seed(0)
    w = torch.randn(32, 12, 3, 3)
    keep, order = block_mask(w, 4, 0.3)
    assert keep.shape == (8, 12) and torch.equal(order, torch.arange(32))
    assert (~keep).sum() == int(96 * 0.3)
    scores = w.abs().view(8, 4, 12, 9).sum((1, 3))
    assert scores[~keep].max() <= scores[keep].min()
    mask = element_mask(keep, order, 4)
    assert torch.equal(mask.view(8, 4, 12), mask.view(8, 4, 12)[:, :1].expand(8, 4, 12))  # blocks of N filters


def test_rearrangement_masks_sorted_filters_and_maps_back():
    torch.manual_seed(1)
    w = torch.randn(16, 6, 1, 1) * torch.rand(16, 1, 1, 1)
    keep, order = block_mask(w, 4, 0.5, rearrange=True)
    l1 = w.abs().flatten(1).sum(1)
    assert torch.all(l1[order][1:] >= l1[order][:-1])
    sorted_keep, _ = block_mask(w[order], 4, 0.5)
    assert torch.equal(keep, sorted_keep)
    mask = element_mask(keep, order, 4)
    assert torch.equal(mask[order], keep.repeat_interleave(4, 0))
    assert (~mask).sum() == int(24 * 0.5) * 4


@pytest.mark.parametrize("rearrange,stride,k,bias", [(False, 1, 3, False), (True, 2, 3, True), (True, 1, 1, False)])
def test_module_equals_masked_dense_conv(rearrange, stride, k, bias):
    torch.manual_seed(2)
    w = torch.randn(8, 6, k, k)
    m = BlockSparseConv2d(6, 8, k, 2, 0.5, rearrange, stride, bias=bias)
    m.set_from_dense(w)
    keep, order = block_mask(w, 2, 0.5, rearrange)
    mask = element_mask(keep, order, 2)[:, :, None, None].float()
    assert sum(p.numel() for p in m.parameters()) == 12 * 2 * k * k + (8 if bias else 0)
    assert torch.equal(m.dense_weight(), w * mask)
    channels_last = m.dense_weight(torch.channels_last)
    assert channels_last.is_contiguous(memory_format=torch.channels_last) and torch.equal(channels_last, w * mask)
    x = torch.randn(2, 6, 9, 7)
    y = m(x)
    assert torch.allclose(y, F.conv2d(x, w * mask, m.bias, stride, k // 2), atol=1e-5)
    dense = (w * mask).requires_grad_()
    g = torch.randn_like(y)
    y.backward(g)
    F.conv2d(x, dense, m.bias, stride, k // 2).backward(g)
    assert torch.allclose(_scatter_grad(m), dense.grad * mask, atol=1e-4)


def _scatter_grad(m):
    """The values' gradient laid out as a dense weight (zero where pruned)."""
    grad = m.values.grad
    with torch.no_grad():
        saved = m.values.data.clone()
        m.values.data.copy_(grad)
        out = m.dense_weight()
        m.values.data.copy_(saved)
    return out


def test_mask_stays_fixed_while_training_and_loads_from_dense_checkpoint():
    torch.manual_seed(3)
    dense = torch.nn.Conv2d(4, 8, 3, padding=1, bias=False)
    m = BlockSparseConv2d(4, 8, 3, 4, 0.5)
    m.load_state_dict(dense.state_dict())  # a dense checkpoint: mask from its weights
    keep, order = block_mask(dense.weight, 4, 0.5)
    assert torch.equal(m.keep(), keep)
    before = m.keep().clone()
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        m(torch.randn(2, 4, 5, 5)).square().sum().backward()
        opt.step()
    assert torch.equal(m.keep(), before)
    zero = ~element_mask(before, order, 4)
    assert torch.all(m.dense_weight()[zero] == 0)


def test_n_must_divide_output_channels():
    with pytest.raises(ValueError, match="must divide"):
        BlockSparseConv2d(4, 10, 3, 4, 0.5)


def test_rearrangement_keeps_filters_of_equal_norm_in_their_order():
    """The stable sort: ties (here 2,048 filters of norm 1 and 2,048 of norm 2) stay in filter order."""
    norms = torch.tensor([2.0, 1.0]).repeat(2048)
    w = norms.view(-1, 1, 1, 1) * torch.tensor([1.0, -1.0]).view(1, 2, 1, 1) / 2
    _, order = block_mask(w, 4, 0.5, rearrange=True)
    assert torch.equal(order, torch.cat([torch.arange(1, 4096, 2), torch.arange(0, 4096, 2)]))
