"""HetConv: exact against the public masked form, effective weights only, paper MACs."""
import pytest
import torch
import torch.nn.functional as F

from designer.analysis.counting import count_design
from designer.designs.design import Network
from designer.designs.kinds import LayerChoice
from designer.networks.build import dense_design
from models.layers.hetconv import HetConv2d


def masked_public_form(m: HetConv2d, x):
    """irvinxav's form: grouped 3x3 + dense 1x1 whose block diagonal is zero."""
    w1 = m.dense_weight()[:, :, 1, 1].clone()
    ob, ib = m.out_channels // m.part, m.in_channels // m.part
    for g in range(m.part):
        w1[g * ob:(g + 1) * ob, g * ib:(g + 1) * ib] = 0
    y = F.conv2d(x, m.weight3, m.bias, m.stride, m.padding, groups=m.part)
    crop = 1 - m.padding
    xc = x[..., crop:x.shape[-2] - crop, crop:x.shape[-1] - crop] if crop else x
    return y + F.conv2d(xc, w1[:, :, None, None], stride=m.stride)


@pytest.mark.parametrize("part,stride,padding,bias,size", [
    (1, 1, 1, False, (8, 8)), (2, 1, 1, True, (7, 9)), (4, 2, 1, False, (9, 8)), (4, 2, 0, True, (11, 10)),
    (8, 1, 0, False, (6, 6)),
])
def test_forward_and_gradient_match_masked_form(part, stride, padding, bias, size):
    torch.manual_seed(part)
    m = HetConv2d(16, 24, part, stride, padding, bias)
    if bias:
        torch.nn.init.normal_(m.bias)
    x = torch.randn(2, 16, *size, requires_grad=True)
    y = m(x)
    ref = masked_public_form(m, x)
    assert torch.allclose(y, ref, atol=1e-5)
    assert torch.allclose(y, F.conv2d(x, m.dense_weight(), m.bias, stride, padding), atol=1e-5)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, m.weight3, m.weight1], g, allow_unused=True, materialize_grads=True)
    grads_ref = torch.autograd.grad(ref, [x, m.weight3, m.weight1], g, allow_unused=True, materialize_grads=True)
    for a, b in zip(grads, grads_ref):
        assert torch.allclose(a, b, atol=1e-4)


def test_stores_effective_weights_only():
    m = HetConv2d(64, 128, 4)
    assert sum(p.numel() for p in m.parameters()) == m.active_weights == 128 * (9 * 16 + 64 - 16)


@pytest.mark.parametrize("cin,cout,part", [(3, 64, 4), (64, 30, 4), (64, 64, 0)])
def test_part_must_divide(cin, cout, part):
    with pytest.raises(ValueError, match="must divide"):
        HetConv2d(cin, cout, part)


@pytest.mark.parametrize("part,expected", [(1, 313.20e6), (4, 105.58e6)])
def test_vgg16_conv_macs_match_paper(part, expected):
    base = dense_design(Network("vgg_hetconv", 16))
    design = base.with_layers([layer if i == 0 else LayerChoice.hetconv(part) for i, layer in enumerate(base.layers)])
    count = count_design(design, "macs")
    conv = sum(layer.flops for layer in count.layers if layer.kind == "conv")
    assert abs(conv - expected) / expected < 1e-3
