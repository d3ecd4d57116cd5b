"""A torchvision network's own state_dict starts any design of it (designer.networks.weights): the dense design
gives torchvision's logits, ASK the logits of the same network with its inactive taps zeroed, 1xN the L1 rule on
those weights; a head for other classes starts fresh; weights of another network name the tensor."""
import pytest
import torch
import torchvision

from designer.designs.design import Network
from designer.designs.kinds import LayerChoice
from designer.errors import DesignError
from designer.networks.build import build_model, dense_design, design_layers
from designer.networks.editing import apply_preset_to_3x3
from designer.networks.weights import check_start_weights, classifier_head, dense_start_weights, load_start_weights
from tests.designer.networks.test_weights import l1_rule

SIZE = 64  # torchvision's CNNs run at any size; 64 keeps these tests fast


def network(name: str, classes: int = 10, **kwargs) -> Network:
    from designer.designs.design import canonical_kwargs
    return Network(f"torchvision:{name}", 0, "image-folder", classes, (3, SIZE, SIZE), canonical_kwargs(kwargs))


def torchvision_model(name: str, classes: int = 10, seed: int = 0, **kwargs) -> torch.nn.Module:
    """torchvision's own model, seeded, with BatchNorm statistics that are not the identity, in eval mode."""
    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, weights=None, num_classes=classes, **kwargs)
    for key, tensor in model.state_dict().items():
        if key.endswith("running_var"):
            tensor.uniform_(0.5, 2.0)
        elif key.endswith("running_mean"):
            tensor.normal_(0, 0.1)
    return model.eval()


def x_batch() -> torch.Tensor:
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def saved(model, tmp_path, name="theirs.pt"):
    path = tmp_path / name
    torch.save(model.state_dict(), path)  # a plain OrderedDict: what torchvision's weight files are
    return path


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchvision_s_state_dict_in_the_dense_design_gives_torchvision_s_logits_exactly(name, tmp_path):
    theirs = torchvision_model(name)
    design = dense_design(network(name))
    model = build_model(design)
    assert load_start_weights(model, design, saved(theirs, tmp_path)) == "state_dict from theirs.pt"
    with torch.no_grad():
        assert torch.equal(model.eval()(x_batch()), theirs(x_batch()))


def test_an_ask_design_gives_the_logits_of_torchvision_s_network_with_its_inactive_taps_zeroed(tmp_path):
    theirs = torchvision_model("resnet18")
    design = apply_preset_to_3x3(dense_design(network("resnet18")), "ASK_5a")
    changed = [layer.name for layer, c in zip(design_layers(design), design.layers) if c.kind == "ask"]
    assert len(changed) == 16 and "conv1" not in changed  # every 3x3 conv; the 7x7 stem stays dense
    model = build_model(design)
    load_start_weights(model, design, saved(theirs, tmp_path))
    masked = torchvision_model("resnet18")
    with torch.no_grad():
        for name in changed:
            weight = masked.get_submodule(name).weight
            keep = torch.zeros(9)
            keep[[1, 3, 4, 5, 7]] = 1  # taps 2, 4, 5, 6, 8
            weight.mul_(keep.view(3, 3))
        torch.testing.assert_close(model.eval()(x_batch()), masked(x_batch()), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rearrange", [False, True])
def test_1xn_masks_from_torchvision_s_weights_are_the_l1_rule_on_those_weights(rearrange):
    theirs = torchvision_model("mobilenet_v2")
    base = dense_design(network("mobilenet_v2"))
    pointwise = [i for i, layer in enumerate(design_layers(base)) if layer.role == "pointwise"][:6]
    design = base.with_layers(LayerChoice.blocksparse(4, 0.5, rearrange) if i in pointwise else c
                              for i, c in enumerate(base.layers))
    model = build_model(design)
    load_start_weights(model, design, theirs.state_dict())
    for i in pointwise:
        name = design_layers(design)[i].name
        weight = theirs.get_submodule(name).weight.detach()
        expected = weight * l1_rule(weight, 4, 0.5, rearrange)[..., None, None]
        assert torch.equal(model.get_submodule(name).dense_weight(), expected), name


def test_imagenet_weights_fine_tune_on_ten_classes_with_a_fresh_head(tmp_path):
    imagenet = saved(torchvision_model("resnet18", classes=1000), tmp_path, "imagenet.pt")
    design = apply_preset_to_3x3(dense_design(network("resnet18", classes=10)), "ASK_5a")
    assert classifier_head(design.network) == "fc"
    torch.manual_seed(3)
    model = build_model(design)
    own_head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("fc.")}
    description = load_start_weights(model, design, imagenet)
    assert description == ("state_dict from imagenet.pt; its classifier head fc is for 1000 classes, the design "
                           "has 10: fc starts fresh (the rest is loaded)")
    state, source = model.state_dict(), torch.load(imagenet, weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in own_head.items())  # the model's own initialisation
    assert torch.equal(state["layer4.1.bn2.running_var"], source["layer4.1.bn2.running_var"])
    assert torch.equal(state["conv1.weight"], source["conv1.weight"])
    assert check_start_weights(design, imagenet) == description  # what the job manager checks before queueing
    dense, _ = dense_start_weights(design, imagenet)
    assert dense["fc.weight"].shape == (10, 512)
    with pytest.raises(DesignError, match=r"fc\.weight has shape \(1000, 512\), the design expects \(10, 512\)"):
        load_start_weights(build_model(design), design, imagenet, fresh_head=False)


def test_a_head_is_started_fresh_only_when_nothing_else_differs(tmp_path):
    wide = torchvision_model("mobilenet_v2", classes=1000, width_mult=0.5).state_dict()
    design = dense_design(network("mobilenet_v2"))
    with pytest.raises(DesignError, match=r"features\.0\.0\.weight has shape \(16, 3, 3, 3\), the design expects "
                                          r"\(32, 3, 3, 3\)"):
        load_start_weights(build_model(design), design, wide)


def test_weights_of_another_network_name_the_tensor(tmp_path):
    path = saved(torchvision_model("resnet34"), tmp_path, "resnet34.pt")
    design = dense_design(network("resnet18"))
    with pytest.raises(DesignError, match=r"resnet34\.pt: layer1\.2\.conv1\.weight \(shape \(64, 64, 3, 3\)\) is not "
                                          r"a tensor of this network \(and \d+ more\)"):
        load_start_weights(build_model(design), design, path)
    vgg = torchvision_model("vgg11").state_dict()
    with pytest.raises(DesignError, match=r"conv1\.weight is missing: the design expects a tensor of shape "
                                          r"\(64, 3, 7, 7\)"):
        load_start_weights(build_model(design), design, vgg)


def test_torchvision_s_inception_weights_load_without_their_auxiliary_head():
    theirs = torchvision_model("inception_v3", aux_logits=True, init_weights=False)
    design = dense_design(Network("torchvision:inception_v3", 0, "image-folder", 10, (3, 80, 80)))
    model = build_model(design)
    description = load_start_weights(model, design, theirs.state_dict())
    assert "torchvision's auxiliary heads (AuxLogits: " in description
    x = torch.randn(1, 3, 80, 80, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model.eval()(x), theirs(x))
