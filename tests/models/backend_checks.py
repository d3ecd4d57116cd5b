"""What every fast backend must satisfy against `reference`, shared by the layer kinds' tests."""
import torch


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


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
