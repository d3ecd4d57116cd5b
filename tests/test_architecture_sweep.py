"""The timm-style sweep: every registered architecture x padding-free where defined x every layer kind it can
take x the backends, built, trained one step, counted and benched.

Parametrised from the registry (models.list_models, models.supports_padfree) and from what each layer takes
(designer.networks.build.check_layer_fits), so a new architecture or a new padding-free family joins by being
registered. Each architecture runs at its smallest valid depth, batch 2. The reference backend runs every
kind everywhere; the fast backends run the kinds they implement on the smallest network only (ResNet-8),
where Taichi (which compiles its kernels on the first call, seconds each) and auto (which times every
backend on its first call) stay within the suite's time.
"""
from __future__ import annotations

from functools import lru_cache

import pytest
import torch
import torch.nn as nn

from designer.analysis.counting import CONVENTIONS, count_design
from designer.bench.latency import bench_layers
from designer.bench.timing import BenchConfig
from designer.designs.datasets import dataset_info
from designer.designs.design import Design, Network
from designer.designs.kinds import LayerChoice
from designer.errors import DesignError
from designer.networks.build import build_model, check_layer_fits, check_network, dense_design, design_layers
from designer.networks.lowrank import lowrank_saves
from models import list_models, supports_padfree

BATCH = 2
KIND_CHOICES = {  # one choice per kind, tried on every conv; a conv that cannot take it stays dense
    "dense": [LayerChoice()],
    "ask": [LayerChoice.preset("ASK_4a")],
    "hetconv": [LayerChoice.hetconv(p) for p in (4, 2)],  # the first P that divides the conv's channels
    "blocksparse": [LayerChoice.blocksparse(n, 0.5) for n in (4, 2, 1)],
    "lowrank": [LayerChoice.lowrank(2)],
}
FAST_BACKENDS = {"ask": ("decomposed", "taichi", "auto"), "hetconv": ("decomposed", "auto"),
                 "blocksparse": ("taichi", "auto")}  # Taichi on ASK and 1xN only: each kernel compiles for seconds
FAST_ON = ("resnet", False)  # the smallest network: the fast backends run here


@lru_cache(maxsize=None)
def smallest_depth(arch: str) -> int:
    """The smallest depth the family builds (0 for the fixed-depth MobileNets, 8 for ResNet, 11 for VGG)."""
    for depth in range(200):
        try:
            check_network(Network(arch, depth))
        except DesignError:
            continue
        return depth
    raise AssertionError(f"{arch} builds at no depth below 200")


def networks() -> list[tuple[str, bool]]:
    return [(arch, padfree) for arch in list_models() for padfree in (False, True)
            if not padfree or supports_padfree(arch)]


def fits(choice: LayerChoice, layer) -> bool:
    """What a user can put on this conv: what validate accepts, low-rank only where it saves MACs."""
    try:
        check_layer_fits(choice, layer, layer.name)
    except DesignError:
        return False
    return choice.kind != "lowrank" or lowrank_saves(layer, choice.rank)


@lru_cache(maxsize=None)
def kind_design(arch: str, padfree: bool, kind: str) -> Design:
    """The network with `kind` on every conv that can take it (dense elsewhere)."""
    base = dense_design(Network(arch, smallest_depth(arch)), padfree)
    layers = [next((c for c in KIND_CHOICES[kind] if fits(c, layer)), LayerChoice())
              for layer in design_layers(base)]
    return base.with_layers(layers)


def cases() -> list:
    out = []
    for arch, padfree in networks():
        for kind in KIND_CHOICES:
            design = kind_design(arch, padfree, kind)
            if kind != "dense" and all(c.kind == "dense" for c in design.layers):
                continue  # no conv of this network takes the kind (asserted apart, below)
            backends = ["reference"] + list(FAST_BACKENDS.get(kind, ()) if (arch, padfree) == FAST_ON else [])
            for backend in backends:
                out.append(pytest.param(arch, padfree, kind, backend,
                                        id=f"{arch}{'-padfree' if padfree else ''}-{kind}-{backend}"))
    return out


def changed(design: Design) -> list[str]:
    return [layer.name for layer, choice in zip(design_layers(design), design.layers) if choice.kind != "dense"]


@pytest.mark.parametrize("arch, padfree, kind, backend", cases())
def test_build_train_step_count_and_bench(arch, padfree, kind, backend):
    design = kind_design(arch, padfree, kind)
    info = dataset_info(design.network.dataset)
    torch.manual_seed(0)
    model = build_model(design, backend=backend).train()
    x = torch.randn(BATCH, info.in_channels, info.input_size, info.input_size)
    out = model(x)
    assert out.shape == (BATCH, info.num_classes)
    nn.functional.cross_entropy(out, torch.arange(BATCH) % info.num_classes).backward()
    no_grad = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without a gradient: {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    n_convs = len(design_layers(design))
    for convention in CONVENTIONS:
        count = count_design(design, convention)
        trainable = convention == "bsconv"
        assert count.params == sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)
        convs = {name for name in (layer.name for layer in design_layers(design))
                 if any(e.kind == "conv" and (e.name == name or e.name.startswith(name + "."))
                        for e in count.layers)}
        assert len(convs) == n_convs, f"{convention}: convs not counted"
    if kind != "dense":
        assert count_design(design, "macs").flops < count_design(dense_design(design.network, padfree), "macs").flops

    names = changed(design) or [layer.name for layer in design_layers(design)]
    rows = bench_layers(design, backend, BenchConfig(batch_size=BATCH, repeats=1, warmup=0),
                        names=names[:2] + names[-1:])
    assert rows and not [r for r in rows if "error" in r], rows
    assert all(r["dense_ms"] > 0 and r["design_ms"] > 0 for r in rows)


@pytest.mark.parametrize("arch, padfree", networks())
def test_every_network_takes_the_kinds_its_convolutions_allow(arch, padfree):
    """A kind leaves the sweep for a network only when none of its convs can take it: say which."""
    taken = {kind for kind in KIND_CHOICES if any(c.kind == kind for c in kind_design(arch, padfree, kind).layers)}
    full_3x3_same = [layer for layer in design_layers(kind_design(arch, padfree, "dense"))
                     if layer.spec.groups == 1 and layer.spec.k == 3 and layer.spec.padding[0] == 1]
    assert {"blocksparse", "lowrank"} <= taken  # every network has full convs
    assert ("ask" in taken) == bool(full_3x3_same)


def test_ask_shapes_must_have_the_size_of_the_kernel_they_replace():
    pointwise = design_layers(dense_design(Network("mobilenetv2", 0)))[1]
    assert pointwise.spec.k == 1
    with pytest.raises(DesignError, match="ASK shapes are 3x3, 5x5, 7x7; this conv is 1x1"):
        check_layer_fits(LayerChoice.preset("ASK_4a"), pointwise, pointwise.name)


# ---------------------------------------------------------------------------
# The torchvision models the README lists: built, a training step at batch 2, every convention counted (on the
# meta device), ASK_5a on every conv --anycfg covers (full 3x3 convs; ConvNeXt has none). Each at a small input
# it runs at (Inception v3 needs 75 x 75).

TORCHVISION = {"resnet18": 32, "resnet50": 32, "mobilenet_v2": 32, "mobilenet_v3_small": 32, "efficientnet_b0": 32,
               "densenet121": 32, "regnet_x_400mf": 32, "convnext_tiny": 32, "googlenet": 32, "inception_v3": 75}


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_network_builds_trains_a_step_counts_and_takes_ask(name):
    from designer.networks.cfglist import cfglist_layers
    from designer.networks.editing import apply_preset_to_3x3

    size = TORCHVISION[name]
    dense = dense_design(Network(f"torchvision:{name}", 0, "image-folder", 10, (3, size, size)))
    eligible = cfglist_layers(dense.network)
    design = apply_preset_to_3x3(dense, "ASK_5a") if eligible else dense
    assert (name == "convnext_tiny") == (not eligible)
    torch.manual_seed(0)
    model = build_model(design).train()
    out = model(torch.randn(BATCH, 3, size, size))
    assert out.shape == (BATCH, 10)
    nn.functional.cross_entropy(out, torch.arange(BATCH)).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    names = [layer.name for layer in design_layers(design)]
    for convention in CONVENTIONS:
        count = count_design(design, convention)
        trainable = convention == "bsconv"
        assert count.params == sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)
        counted = {n for n in names if any(e.kind == "conv" and (e.name == n or e.name.startswith(n + "."))
                                           for e in count.layers)}
        assert len(counted) == len(names), f"{convention}: convs not counted"
    if eligible:
        assert count_design(design, "macs").flops < count_design(dense, "macs").flops
