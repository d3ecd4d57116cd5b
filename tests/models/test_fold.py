"""The inference form (models.fold): BatchNorm folded into the conv before it, the bias, residual add and ReLU run
in the conv's call; it computes what the eval network computes, for every layer kind and backend."""
import pytest
import torch
import torch.nn as nn

from designer.designs.design import Network
from designer.designs.kinds import LayerChoice
from designer.networks.build import build_model, dense_design, design_layers, validate, why_not_layer
from kernels_taichi import sconv
from models.fold import FoldedConv, fold_for_inference
from tests.models.backend_checks import rel_err


def randomise_batchnorms(model: nn.Module) -> nn.Module:
    """Statistics and affine parameters far from the identity, so a fold that forgot one would show."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.6 - 0.3)
    return model.eval()


def design_of(arch: str, depth: int, choice: LayerChoice | None, input_size: int | None = None):
    network = Network(arch, depth) if input_size is None else Network(arch, depth, input_shape=(3, input_size,
                                                                                                input_size))
    base = validate(dense_design(network))
    if choice is None:
        return base
    layers = design_layers(base)  # the first conv stays dense, and so does any the choice does not fit
    return validate(base.with_layers([LayerChoice() if i == 0 or why_not_layer(choice, layer) else choice
                                      for i, layer in enumerate(layers)]))


def assert_folded_matches(design, backend: str, batch: int = 3) -> object:
    model = randomise_batchnorms(build_model(design, backend=backend))
    x = torch.randn(batch, *design.network.input_shape).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = model(x)
        folded, report = fold_for_inference(model, x)
        assert rel_err(folded(x), expected) < 1e-5
        assert rel_err(folded(torch.cat([x, x])), torch.cat([expected, expected])) < 1e-5  # any batch after
    return report


KINDS = {
    "ASK_5a": LayerChoice.preset("ASK_5a"),
    "HetConv P=4": LayerChoice.hetconv(4),
    "1xN N=16": LayerChoice.blocksparse(16, 0.5),
}


@pytest.mark.parametrize("backend", ["reference", "sconv", "auto"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_vgg_folds_every_conv_with_its_batchnorm_and_relu(kind, backend):
    report = assert_folded_matches(design_of("vgg", 11, KINDS[kind]), backend)
    assert (report.folded, report.relus, report.residuals, report.why_not) == (8, 8, 0, "")


@pytest.mark.parametrize("backend", ["reference", "sconv"])
def test_resnet_folds_the_residual_add_and_relu_into_the_second_conv_of_each_block(backend):
    report = assert_folded_matches(design_of("resnet", 20, LayerChoice.preset("ASK_5a")), backend)
    # 19 convs; every block's second conv takes its block's shortcut; every conv is followed by a ReLU
    assert (report.folded, report.residuals, report.relus) == (19, 9, 19)


def test_torchvision_resnet_folds_its_downsample_convs_and_the_adds_after_them():
    report = assert_folded_matches(design_of("torchvision:resnet18", 0, LayerChoice.preset("ASK_5a"), 64), "sconv")
    # 17 3x3/7x7 convs + 3 downsample 1x1 convs; 8 blocks add their shortcut; the downsample BNs have no ReLU
    assert (report.folded, report.residuals, report.relus) == (20, 8, 17)


def test_mobilenet_folds_without_relu6_and_padfree_folds_too():
    report = assert_folded_matches(design_of("mobilenetv2", 0, None), "reference")
    assert report.folded > 40 and report.relus == 0  # ReLU6 stays an op of its own
    padfree = validate(dense_design(Network("resnet_proj", 20), padfree=True))
    assert assert_folded_matches(padfree, "reference").folded > 0


def test_lowrank_folds_into_its_second_factor():
    report = assert_folded_matches(design_of("vgg", 11, LayerChoice.lowrank(8)), "reference")
    assert report.folded == 8


def test_the_model_given_is_left_as_it_was():
    model = randomise_batchnorms(build_model(design_of("resnet", 8, None))).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold_for_inference(model, torch.randn(2, 3, 32, 32))
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class BroadcastAdd(nn.Module):
    """conv -> BN -> + a per-channel tensor (a broadcast, not a residual) -> ReLU."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.shift = nn.Parameter(torch.randn(1, 16, 1, 1))

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)) + self.shift)


def test_an_add_of_another_shape_is_not_taken_for_a_residual():
    model = randomise_batchnorms(BroadcastAdd())
    x = torch.randn(2, 16, 8, 8)
    folded, report = fold_for_inference(model, x)
    assert (report.folded, report.residuals, report.relus) == (1, 0, 0)
    with torch.no_grad():
        assert rel_err(folded(x), model(x)) < 1e-5


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return y if y.sum() > 0 else -y  # fx cannot trace a branch on a value


def test_a_network_fx_cannot_trace_stays_as_it_is_and_says_why():
    model = randomise_batchnorms(DataDependent())
    x = torch.randn(2, 3, 8, 8)
    folded, report = fold_for_inference(model, x)
    assert report.folded == 0 and "cannot trace" in report.why_not
    with torch.no_grad():
        assert torch.equal(folded(x), model(x))


@pytest.mark.skipif(not sconv.available(), reason="sconv unavailable")
def test_the_sconv_layers_run_the_epilogue_in_the_kernel():
    model = randomise_batchnorms(build_model(design_of("resnet", 20, LayerChoice.preset("ASK_5a")), backend="sconv"))
    x = torch.randn(2, 3, 32, 32)
    folded, _ = fold_for_inference(model, x)
    calls = []
    original = sconv.conv
    try:
        sconv.conv = lambda *args, **kw: calls.append(kw) or original(*args, **kw)
        with torch.inference_mode():
            folded(x)
    finally:
        sconv.conv = original
    assert calls and all(kw.get("relu") for kw in calls)
    assert sum(kw.get("residual") is not None for kw in calls) >= 1
    assert all(isinstance(m.bias, torch.Tensor) for m in folded.modules() if isinstance(m, FoldedConv))
