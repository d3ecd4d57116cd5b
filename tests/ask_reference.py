"""The ASK reference code's layer layout, written independently for tests.

AnyModule_d (lgzz/ASKs models/AnyModule.py): pad the input by 1, concatenate
the shifted slices of each shape's taps along channels (tap-major), run a
1x1 conv `conv{g}` per shape, concatenate the outputs. `to_reference_layout`
swaps each AskConv2d / dense 3x3 conv of one of our models for such a module,
so the model's state_dict has the reference checkpoint's names and shapes.
"""
import torch
import torch.nn as nn

from models.layers.ask import AskConv2d


class ReferenceAnyConv(nn.Module):
    def __init__(self, in_channels, out_channels, cfg, stride=1):
        super().__init__()
        self.cfg = cfg  # list of shapes, each a list of tap numbers 1..9
        for g, taps in enumerate(cfg):
            self.add_module(f"conv{g}", nn.Conv2d(in_channels * len(taps), out_channels // len(cfg), 1,
                                                  stride=stride, bias=False))

    def forward(self, x):
        padded = nn.functional.pad(x, (1, 1, 1, 1))
        h, w = x.shape[-2:]
        outs = []
        for g, taps in enumerate(self.cfg):
            slices = [padded[:, :, (t - 1) // 3:(t - 1) // 3 + h, (t - 1) % 3:(t - 1) % 3 + w] for t in taps]
            outs.append(getattr(self, f"conv{g}")(torch.cat(slices, 1)))
        return torch.cat(outs, 1)


def to_reference_layout(model: nn.Module) -> nn.Module:
    """Replace every ASK or dense 3x3 conv by a ReferenceAnyConv with random weights (in place)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, AskConv2d):
            cfg = [list(s.taps) for s in module.shapes]
            new = ReferenceAnyConv(module.in_channels, module.out_channels, cfg, module.stride)
        elif isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
            new = ReferenceAnyConv(module.in_channels, module.out_channels, [list(range(1, 10))], module.stride[0])
        else:
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return model


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so eval outputs test them too."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
