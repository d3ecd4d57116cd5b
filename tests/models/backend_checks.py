"""What every fast backend must satisfy against `reference`, shared by the layer kinds' tests."""
import torch


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def outputs_and_grads(conv: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, backend: str) -> list:
    """The output and the gradients of x and of every (non-empty) parameter for output gradient `grad`."""
    conv.backend = backend
    x = x.clone().requires_grad_(True)
    y = conv(x)
    params = [p for p in conv.parameters() if p.numel()]
    return [y, *torch.autograd.grad(y, [x, *params], grad)]


def assert_training_matches_reference(conv: torch.nn.Module, x: torch.Tensor, backend: str) -> None:
    """Forward and both gradients equal the reference backend's (1e-4 relative)."""
    conv.backend = "reference"
    with torch.no_grad():
        grad = torch.randn(conv(x).shape)
    expected = outputs_and_grads(conv, x, grad, "reference")
    got = outputs_and_grads(conv, x, grad, backend)
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        assert rel_err(a, b) < 1e-4


def assert_inference_matches_reference(conv: torch.nn.Module, x: torch.Tensor, backend: str,
                                       channels_last: bool) -> None:
    """Without gradients backends take other paths (cached weights, oneDNN's in-place add)."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    conv.backend = "reference"
    with torch.no_grad():
        expected = conv(x)
        conv.backend = backend
        got = conv(x)
    assert got.shape == expected.shape
    assert rel_err(got, expected) < 1e-4


def assert_backend_keeps_state_dict(conv: torch.nn.Module, backend: str, x: torch.Tensor) -> None:
    """Running a backend, with and without gradients, changes neither the state_dict's keys nor its values."""
    before = {k: v.clone() for k, v in conv.state_dict().items()}
    conv.backend = backend
    with torch.no_grad():
        conv(x)
    conv(x).sum().backward()
    after = conv.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
