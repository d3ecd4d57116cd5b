"""Designs that start from trained weights (designer.networks.weights): each conv takes the dense kernel by its kind."""
import pytest
import torch
import torch.nn.functional as F

from designer.designs.design import Network

from designer.designs.kinds import LayerChoice
from designer.errors import DesignError
from designer.networks import editing
from designer.networks.build import build_model, dense_design, design_layers
from designer.networks.lowrank import select_ranks
from designer.networks.weights import check_start_weights, dense_weights_of, load_start_weights, read_state_dict
from designer.runs.checkpoints import save_checkpoint
from models.layers.hetconv import HetConv2d

RESNET8 = Network("resnet", 8, "cifar10")
DENSE8 = dense_design(RESNET8)
NAMES = [layer.name for layer in design_layers(DENSE8)]


class NotWeights:
    """Any object torch.load(weights_only=True) refuses to unpickle."""


def trained(design=DENSE8, seed=0):
    """A model of `design` with random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(design)
    for name, tensor in model.state_dict().items():
        if name.endswith("running_var"):
            tensor.uniform_(0.5, 2.0)
        elif name.endswith(("running_mean", "bn1.bias", "bn2.bias")):
            tensor.normal_(0, 0.1)
    return model.eval()


def x_batch(seed=1):
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def with_layers(choices: dict) -> object:
    """DENSE8 with {layer index: choice}."""
    return DENSE8.with_layers(choices.get(i, c) for i, c in enumerate(DENSE8.layers))


def run_checkpoint(run_dir, model, design, step):
    """A checkpoint as the trainer writes it (designer.runs.checkpoints), in a run folder named by its run id."""
    run_dir.mkdir()
    return save_checkpoint(run_dir, {"state_dict": model.state_dict(), "optimizer": {}, "scheduler": {},
                                     "step": step, "epoch": 0, "design": design.to_json()})


def started(design, source):
    model = build_model(design)
    load_start_weights(model, design, source)
    return model.eval()


def test_a_dense_state_dict_in_the_dense_design_gives_the_source_logits_exactly():
    source = trained()
    model = started(DENSE8, source.state_dict())
    with torch.no_grad():
        assert torch.equal(model(x_batch()), source(x_batch()))


def test_a_data_parallel_state_dict_loads_without_its_module_prefix():
    source = trained()
    model = started(DENSE8, {f"module.{k}": v for k, v in source.state_dict().items()})
    with torch.no_grad():
        assert torch.equal(model(x_batch()), source(x_batch()))


def test_an_ask_design_gives_the_logits_of_the_dense_network_with_its_inactive_taps_zeroed():
    choices = {i: LayerChoice.preset("ASK_5a" if i < 4 else "ASK_2") for i in range(7)}
    source = trained()
    model = started(with_layers(choices), source.state_dict())
    masked = trained()
    with torch.no_grad():
        for i, choice in choices.items():
            conv = masked.get_submodule(NAMES[i])
            mask = torch.zeros_like(conv.weight).view(conv.out_channels, conv.in_channels, 9)
            group = conv.out_channels // len(choice.shapes)
            for g, shape in enumerate(choice.shapes):
                mask[g * group:(g + 1) * group, :, [t - 1 for t in shape.taps]] = 1
            conv.weight.mul_(mask.view_as(conv.weight))
        assert torch.equal(model(x_batch()), masked(x_batch()))


def l1_rule(weight, n, rate, rearrange):
    """The 1xN rule written out: (Cout, Cin) mask of kept kernels, blocks of N filters x 1 input channel."""
    cout, cin = weight.shape[:2]
    kernel_l1 = weight.abs().sum((2, 3))
    order = sorted(range(cout), key=lambda o: kernel_l1[o].sum().item()) if rearrange else list(range(cout))
    scores = kernel_l1[order].view(cout // n, n, cin).sum(1).flatten()
    keep = torch.ones_like(scores, dtype=torch.bool)
    keep[scores.argsort()[:int(scores.numel() * rate)]] = False
    mask = torch.zeros(cout, cin, dtype=torch.bool)
    mask[order] = keep.view(cout // n, cin).repeat_interleave(n, 0)
    return mask


@pytest.mark.parametrize("rearrange", [False, True])
def test_1xn_masks_from_a_loaded_state_dict_are_the_l1_rule_on_those_weights(rearrange):
    source = trained()
    model = started(with_layers({i: LayerChoice.blocksparse(4, 0.5, rearrange) for i in range(1, 7)}),
                    source.state_dict())
    for name in NAMES[1:]:
        weight = source.get_submodule(name).weight.detach()
        mask = l1_rule(weight, 4, 0.5, rearrange)
        assert torch.equal(model.get_submodule(name).dense_weight(), weight * mask[..., None, None]), name


def test_lowrank_at_full_rank_reproduces_the_dense_conv():
    source = trained()
    layer = design_layers(DENSE8)[4]  # layer2.0.conv2, 32 -> 32
    model = started(with_layers({4: LayerChoice.lowrank(3 * 32)}), source.state_dict())
    x = torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        expected = F.conv2d(x, source.get_submodule(layer.name).weight, padding=1)
        torch.testing.assert_close(model.get_submodule(layer.name)(x), expected, atol=1e-4, rtol=0)


def test_lowrank_at_a_lower_rank_holds_the_truncated_svd_of_the_dense_kernel():
    source = trained()
    layer = design_layers(DENSE8)[4]
    pair = started(with_layers({4: LayerChoice.lowrank(5)}), source.state_dict()).get_submodule(layer.name)
    w = source.get_submodule(layer.name).weight.detach()
    n, c, kh, kw = w.shape
    u, s, vh = torch.linalg.svd(w.permute(1, 2, 0, 3).reshape(c * kh, n * kw).double())
    best = (u[:, :5] * s[:5]) @ vh[:5]  # Eckart-Young: the rank-5 matrix the factors must multiply to
    product = pair.dense_weight().detach().double().permute(1, 2, 0, 3).reshape(c * kh, n * kw)
    torch.testing.assert_close(product, best, atol=1e-5, rtol=0)
    assert pair.v.weight.shape == (5, c, kh, 1) and pair.h.weight.shape == (n, 5, 1, kw)


def test_hetconv_keeps_exactly_the_kept_parts_of_the_dense_kernel():
    source = trained()
    name = NAMES[4]
    layer = started(with_layers({4: LayerChoice.hetconv(4)}), source.state_dict()).get_submodule(name)
    ones = HetConv2d(32, 32, 4)
    torch.nn.init.ones_(ones.weight3)
    torch.nn.init.ones_(ones.weight1)
    kept = ones.dense_weight().detach()  # 1 where a HetConv filter has a kernel
    assert 0 < kept.mean() < 1
    assert torch.equal(layer.dense_weight(), source.get_submodule(name).weight.detach() * kept)


@pytest.mark.parametrize("choice", [LayerChoice.preset("ASK_2"), LayerChoice.hetconv(4),
                                    LayerChoice.blocksparse(4, 0.5, True), LayerChoice.lowrank(7)],
                         ids=lambda c: c.kind)
def test_a_state_dict_of_a_design_goes_back_to_its_dense_equivalent(choice):
    design = with_layers({i: choice for i in range(1, 7)})
    variant = trained(design, seed=3)
    dense = build_model(DENSE8).eval()
    dense.load_state_dict(dense_weights_of(design, variant.state_dict()))
    with torch.no_grad():
        torch.testing.assert_close(dense(x_batch()), variant(x_batch()), atol=1e-5, rtol=1e-5)


def test_a_run_checkpoint_reads_and_says_which_run_and_step(tmp_path):
    source = trained()
    ckpt = run_checkpoint(tmp_path / "3", source, DENSE8, 469)
    assert read_state_dict(ckpt).keys() == source.state_dict().keys()
    ask = with_layers({1: LayerChoice.preset("ASK_5a")})
    model = build_model(ask)
    assert load_start_weights(model, ask, str(ckpt)) == "dense weights of run 3 (step 469)"
    assert torch.equal(model.state_dict()["fc.weight"], source.state_dict()["fc.weight"])


def test_a_checkpoint_of_another_design_starts_a_new_one_through_its_dense_equivalent(tmp_path):
    ask = with_layers({i: LayerChoice.preset("ASK_2") for i in range(1, 7)})
    run = trained(ask, seed=5)
    ckpt = run_checkpoint(tmp_path / "4", run, ask, 10)
    model = started(DENSE8, ckpt)  # the checkpoint's design says its layers are ASK
    with torch.no_grad():
        assert torch.equal(model(x_batch()), run(x_batch()))


def test_a_plain_state_dict_file_is_named_in_the_description(tmp_path):
    path = tmp_path / "mine.pt"
    torch.save(trained().state_dict(), path)
    assert load_start_weights(build_model(DENSE8), DENSE8, path) == "state_dict from mine.pt"


def test_lowrank_by_ratio_with_weights_chooses_ranks_from_those_weights():
    source = trained()
    with torch.no_grad():  # a nearly rank-1 kernel: accnn gives it few ranks, fresh weights would not
        w = source.get_submodule(NAMES[6]).weight
        w.copy_(w[:1].expand_as(w) + 1e-3 * w)
    weights = source.state_dict()
    indices = [4, 5, 6]
    chosen = editing.lowrank_by_ratio(DENSE8, indices, 2.0, weights=weights)
    layers = [design_layers(DENSE8)[i] for i in indices]
    direct = select_ranks(layers, [source.get_submodule(layer.name).weight for layer in layers], 2.0)
    assert [chosen.layers[i].rank for i in indices] == direct
    assert direct != [editing.lowrank_by_ratio(DENSE8, indices, 2.0).layers[i].rank for i in indices]


def test_bad_files_are_one_clear_error_naming_the_file(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(DesignError, match=r"empty\.pt: the file is empty"):
        read_state_dict(empty)
    pickle = tmp_path / "object.pt"
    torch.save({"model": NotWeights()}, pickle)
    with pytest.raises(DesignError, match=r"object\.pt: not a plain state_dict.*Unsupported global.*NotWeights"):
        read_state_dict(pickle)
    numbers = tmp_path / "numbers.pt"
    torch.save({"lr": 0.1}, numbers)
    with pytest.raises(DesignError, match=r"numbers\.pt: not a state_dict"):
        read_state_dict(numbers)
    truncated = tmp_path / "truncated.pt"
    torch.save(trained().state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(DesignError, match=r"truncated\.pt: not a plain state_dict or checkpoint"):
        read_state_dict(truncated)
    with pytest.raises(DesignError, match=r"missing\.pt: no such file"):
        read_state_dict(tmp_path / "missing.pt")


def test_a_checkpoint_of_another_network_names_the_tensor_and_both_shapes(tmp_path):
    path = tmp_path / "c100.pt"
    torch.save(trained(dense_design(Network("resnet", 8, "cifar100"))).state_dict(), path)
    with pytest.raises(DesignError, match=r"c100\.pt: fc\.weight has shape \(100, 64\), the design expects \(10, 64\)"):
        load_start_weights(build_model(DENSE8), DENSE8, path, fresh_head=False)
    wide = trained(dense_design(Network("resnet", 8, "cifar100"))).state_dict()
    wide["conv1.weight"] = torch.zeros(16, 3, 5, 5)  # the head and another tensor differ: not a fine-tuning start
    with pytest.raises(DesignError, match=r"conv1\.weight has shape \(16, 3, 5, 5\), the design expects \(16, 3, 3, 3\)"):
        load_start_weights(build_model(DENSE8), DENSE8, wide)
    vgg = trained(dense_design(Network("vgg", 11, "cifar10"))).state_dict()
    with pytest.raises(DesignError, match=r"conv1\.weight is missing: the design expects a tensor of shape "
                                          r"\(16, 3, 3, 3\)"):
        load_start_weights(build_model(DENSE8), DENSE8, vgg)


def test_an_ask_layer_in_place_of_a_conv_with_a_bias_keeps_the_bias():
    dense = dense_design(Network("vgg_hetconv", 11, "cifar10"))  # its first conv has a bias
    ask = dense.with_layers([LayerChoice.preset("ASK_5a"), *dense.layers[1:]])
    weights = trained(dense).state_dict()
    weights["features.0.bias"] = torch.linspace(-1, 1, 64)
    model = build_model(ask)
    load_start_weights(model, ask, weights)
    assert torch.equal(model.features[0].bias.detach(), weights["features.0.bias"])
    assert torch.equal(dense_weights_of(ask, model.state_dict())["features.0.bias"], weights["features.0.bias"])


def test_weights_are_checked_against_a_design_before_a_run_is_queued(tmp_path):
    path = tmp_path / "c100.pt"
    torch.save(trained(dense_design(Network("resnet", 8, "cifar100"))).state_dict(), path)
    lowrank = with_layers({i: LayerChoice.lowrank(4) for i in range(1, 7)})
    assert check_start_weights(lowrank, path).endswith("the design has 10: fc starts fresh (the rest is loaded)")
    torch.save(trained(dense_design(Network("resnet", 14, "cifar10"))).state_dict(), path)
    with pytest.raises(DesignError, match=r"layer1\.1\.conv1\.weight \(shape \(16, 16, 3, 3\)\) is not a tensor of this network"):
        check_start_weights(lowrank, path)
    torch.save(trained().state_dict(), path)
    assert check_start_weights(lowrank, path) == "state_dict from c100.pt"


def test_weights_of_another_design_without_its_design_say_what_the_layer_holds():
    ask = with_layers({1: LayerChoice.preset("ASK_2")})
    weights = trained(ask).state_dict()  # as `export --format weights` writes them: no design inside
    one_by_n = with_layers({1: LayerChoice.blocksparse(4, 0.5)})
    with pytest.raises(DesignError, match=r"layer1\.0\.conv1: neither a dense weight \(layer1\.0\.conv1\.weight\) "
                                          r"nor the tensors of the design's blocksparse layer .*values.*; "
                                          r"found layer1\.0\.conv1\.weights\.0"):
        load_start_weights(build_model(one_by_n), one_by_n, weights)
