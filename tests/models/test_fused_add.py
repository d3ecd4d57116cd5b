"""add_conv_ adds a convolution into an output in place, with and without gradients."""
import pytest
import torch
import torch.nn.functional as F

from models.layers.fused_add import add_conv_


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("stride, padding, dilation", [(1, (0, 1), (1, 1)), (2, (1, 0), (2, 1)), (1, (1, 1), (1, 1))])
def test_inference_adds_in_place(channels_last, stride, padding, dilation):
    torch.manual_seed(stride)
    x = torch.randn(2, 16, 9, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(8, 16, 2, 3)
    with torch.no_grad():
        conv = F.conv2d(x, weight, stride=stride, padding=padding, dilation=dilation)
        out = torch.randn_like(conv)
        expected = out + conv
        got = add_conv_(out, x, weight, stride, padding, dilation)
    assert got.data_ptr() == out.data_ptr()
    assert torch.allclose(got, expected, atol=1e-4)


def test_gradients_flow_to_input_weight_and_output():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    weight = torch.randn(3, 4, 1, 3, requires_grad=True)
    base = torch.randn(2, 3, 6, 6, requires_grad=True)
    add_conv_(base * 1, x, weight, 1, (0, 1)).pow(2).sum().backward()
    got = [t.grad.clone() for t in (x, weight, base)]
    for t in (x, weight, base):
        t.grad = None
    (base + F.conv2d(x, weight, padding=(0, 1))).pow(2).sum().backward()
    for a, t in zip(got, (x, weight, base)):
        assert torch.allclose(a, t.grad, atol=1e-4)
