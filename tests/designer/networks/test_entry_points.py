"""A user's own network as an entry point (package.module:callable): built, counted, given any kernel, started
from its own state_dict and trained a few steps, like the paper families and torchvision's models."""
import sys
import textwrap

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from designer.analysis.counting import count_design
from designer.designs.design import Network, canonical_kwargs
from designer.designs.kinds import LayerChoice
from designer.errors import DesignError
from designer.networks.build import build_model, dense_design, design_layers
from designer.networks.editing import apply_preset_to_3x3
from designer.networks.weights import load_start_weights
from designer.runs.train import HParams, train

MODULE = "kernel_studio_user_nets"
SOURCE = '''
import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class Net(nn.Module):
    def __init__(self, num_classes=10, width=16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.blocks = nn.Sequential(Block(width), Block(width))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def build(num_classes=10, width=16):
    return Net(num_classes, width)


def fixed():  # no num_classes: the design takes what it outputs
    return Net(7, 8)
'''


@pytest.fixture(scope="module", autouse=True)
def user_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user")
    (folder / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop(MODULE, None)


def network(dataset="cifar10", classes=0, size=32, **kwargs) -> Network:
    return Network(f"{MODULE}:build", 0, dataset, classes, (3, size, size), canonical_kwargs(kwargs))


def test_an_entry_point_resolves_builds_and_counts_as_flop_counter_mode_does():
    design = dense_design(network(width=24))
    assert design.network.num_classes == 10 and design.network.input_shape == (3, 32, 32)
    assert [layer.name for layer in design_layers(design)] == ["stem.0", "blocks.0.conv1", "blocks.0.conv2",
                                                                 "blocks.1.conv1", "blocks.1.conv2"]
    import kernel_studio_user_nets as user
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        user.build(10, 24).eval()(torch.zeros(1, 3, 32, 32))
    assert count_design(design, "macs").flops == counter.get_total_flops() // 2
    model = build_model(design)
    assert sum(p.numel() for p in model.parameters()) == count_design(design, "ask").params
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert dense_design(Network(f"{MODULE}:build")).network.input_shape == (3, 224, 224)  # an entry point's default


def test_the_classes_come_from_the_data_set_or_from_what_the_model_outputs():
    assert dense_design(network("cifar100")).network.num_classes == 100  # passed as num_classes=
    fixed = Network(f"{MODULE}:fixed", 0, "image-folder", 0, (3, 32, 32))
    assert dense_design(fixed).network.num_classes == 7
    with pytest.raises(DesignError, match=f"{MODULE}:fixed outputs 7 classes, the design needs 10"):
        dense_design(Network(f"{MODULE}:fixed", 0, "cifar10", 0, (3, 32, 32)))


def test_its_own_state_dict_starts_an_ask_design_with_the_inactive_taps_zeroed():
    base = dense_design(network())
    design = apply_preset_to_3x3(base, "ASK_4a")
    torch.manual_seed(0)
    import kernel_studio_user_nets as user
    theirs = user.build().eval()
    model = build_model(design)
    assert load_start_weights(model, design, theirs.state_dict()) == "the given state_dict"
    with torch.no_grad():
        shapes = [(1, 2, 4, 5), (2, 3, 5, 6), (4, 5, 7, 8), (5, 6, 8, 9)]  # ASK_4a: a quarter of the filters each
        for layer in design_layers(design):
            weight = theirs.get_submodule(layer.name).weight
            group = weight.shape[0] // 4
            for g, taps in enumerate(shapes):
                keep = torch.zeros(9)
                keep[[t - 1 for t in taps]] = 1
                weight[g * group:(g + 1) * group] *= keep.view(3, 3)
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(model.eval()(x), theirs(x), atol=1e-5, rtol=1e-5)


def test_an_entry_point_design_trains_a_few_steps(tmp_path):
    base = dense_design(network())
    design = base.with_layers([base.layers[0], LayerChoice.preset("ASK_5a"), LayerChoice.hetconv(4),
                               LayerChoice.blocksparse(4, 0.5), LayerChoice.lowrank(4)])
    assert count_design(design).flops < count_design(base).flops
    result = train(design, HParams(epochs=1, max_steps=3, batch_size=32, data="synthetic", warmup_epochs=0),
                   tmp_path)
    assert result["steps"] == 3 and result["arch"] == f"{MODULE}:build"
