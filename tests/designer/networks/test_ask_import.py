"""Checkpoints of the ASK reference code load into our models with the same outputs."""
import pytest
import torch

from designer.designs.design import Network

from designer.designs.kinds import LayerChoice
from designer.errors import DesignError
from designer.networks.ask_import import import_ask_checkpoint
from designer.networks.build import build_model, dense_design
from designer.networks.cfglist import design_from_cfglist
from tests.ask_reference import randomise_batchnorm, to_reference_layout


def reference_checkpoint(design, seed=0):
    """A model in the reference layout with random weights and BN stats, saved as main.py does."""
    torch.manual_seed(seed)
    reference = to_reference_layout(build_model(design))
    randomise_batchnorm(reference, seed)
    return reference.eval(), {"epoch": 3, "best_prec1": 0.5, "state_dict": reference.state_dict()}


def mixed(network, n):
    shapes = [[[2, 4, 5, 6, 8]], [[1, 2, 4, 5], [2, 3, 5, 6], [4, 5, 7, 8], [5, 6, 8, 9]], [[5, 8, 2], [4, 6, 5]],
              [list(range(1, 10))]]
    return design_from_cfglist(network, [shapes[i % len(shapes)] for i in range(n)])


@pytest.mark.parametrize("design", [
    mixed(Network("vgg", 11), 8),
    mixed(Network("resnet", 8), 7),
    dense_design(Network("resnet", 8, "cifar100")),
    dense_design(Network("vgg", 11)).with_layers([LayerChoice.preset("ASK_3b")] * 8),
], ids=["vgg11-mixed", "resnet8-mixed", "resnet8-dense-cifar100", "vgg11-ask3b"])
def test_eval_outputs_match_the_reference(design):
    reference, checkpoint = reference_checkpoint(design)
    ours = import_ask_checkpoint(design, checkpoint).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max().item() < 1e-4


def test_a_checkpoint_for_another_design_is_refused_with_the_layer():
    network = Network("resnet", 8)
    _, checkpoint = reference_checkpoint(dense_design(network).with_layers([LayerChoice.preset("ASK_5a")] * 7))
    with pytest.raises(DesignError, match=r"layer 1 \(conv1\).*\(16, 15, 1, 1\).*\(4, 6, 1, 1\)"):
        import_ask_checkpoint(dense_design(network).with_layers([LayerChoice.preset("ASK_2")] * 7), checkpoint)


def test_not_a_checkpoint():
    with pytest.raises(DesignError, match="not an ASK reference checkpoint"):
        import_ask_checkpoint(dense_design(Network("resnet", 8)), {"state_dict": [1, 2]})
