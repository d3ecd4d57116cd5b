"""Trained weights as the start of any design of their network.

1xN masks (L1 norms of the kernels) and accnn low-rank factors (an SVD) are
defined on trained weights, and ASK and HetConv keep parts of a trained
kernel, so every design of a network can start from that network's dense
weights: each convolution takes them by its kind (the layer's
`set_from_dense`). A state_dict of another design of the same network (a
finished run) first goes back to dense, each variant layer through its
`dense_weight` (masked taps, masked HetConv kernel, 1xN blocks, low-rank
product). Files load with torch.load(weights_only=True): a plain state_dict,
or a run checkpoint (designer.runs.checkpoints), whose design tells which kind
each of its layers is.

A plain state_dict of the original network in its own layout (torchvision's
own weights, or a user's model's) is the dense network's, so it starts any
design of that network. Fine-tuning on another number of classes: when the
only tensors that do not fit are the classifier head's (the last layer the
forward runs, producing the classes) and only in the number of classes, the
head starts fresh (the model's own initialisation) and the description says
so. Torchvision's auxiliary heads (GoogLeNet, Inception v3), which our
builds leave out, are ignored in its weights.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn

from designer.designs.design import Design, Network, design_from_json
from designer.designs.kinds import DENSE
from designer.errors import DesignError
from designer.networks.build import build_model, design_layers, validate
from designer.networks.sources import meta_forward, resolve, traced_network
from models.layers.lowrank import LowRankConv2d
from models.torchvision_models import AUX_HEADS


@dataclass(frozen=True)
class StartWeights:
    """Weights read from a file: the tensors, the design they were trained as (run checkpoints), a label."""

    state_dict: dict[str, torch.Tensor]
    design: Design | None
    description: str


def read_weights(path: str | Path) -> StartWeights:
    """A plain state_dict or a run checkpoint, weights_only; one DesignError naming the file if it is neither."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise DesignError("no such file", where)
    if path.stat().st_size == 0:
        raise DesignError("the file is empty", where)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt archives; UnpicklingError for refused objects
        raise DesignError(f"not a plain state_dict or checkpoint ({_first_reason(err)})", where) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        state = as_state_dict(loaded["state_dict"], where)
        design = _checkpoint_design(loaded.get("design"), where)
        return StartWeights(state, design, _run_description(path, loaded.get("step"), design))
    return StartWeights(as_state_dict(loaded, where), None, f"state_dict from {path.name}")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a plain state_dict or of a run checkpoint (its 'state_dict')."""
    return read_weights(path).state_dict


def as_state_dict(obj, where: str = "state_dict") -> dict[str, torch.Tensor]:
    """`obj` as a non-empty {name: tensor} dict (a DataParallel 'module.' prefix removed); else DesignError."""
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items()):
        raise DesignError(f"not a state_dict (expected a dict of named tensors, found {type(obj).__name__})", where)
    if not obj:
        raise DesignError("the state_dict is empty", where)
    if all(k.startswith("module.") for k in obj):
        return {k.removeprefix("module."): v for k, v in obj.items()}
    return dict(obj)


def dense_weights_of(design: Design, state_dict: dict, where: str = "state_dict") -> dict[str, torch.Tensor]:
    """The dense network's state_dict from the dense network's own, or from one of `design`.

    Layer by layer: a conv whose plain `<name>.weight` is there is taken as
    dense; any other is read as the design builds it and turned into its
    dense equivalent. DesignError naming the first tensor that does not fit.
    """
    state = as_state_dict(state_dict, where)
    design = validate(design)
    layers = design_layers(design)
    source = design.with_layers(DENSE if f"{layer.name}.weight" in state else choice
                                for layer, choice in zip(layers, design.layers))
    with torch.random.fork_rng(devices=[]):  # a throwaway CPU build must not move the caller's random stream
        model = build_model(source)
    expected = model.state_dict()
    variant = {layer.name: layer for layer, choice in zip(layers, source.layers) if choice.kind != "dense"}
    for name, layer in variant.items():
        own = [k for k in expected if k.startswith(name + ".")]
        if not all(k in state for k in own):
            found = [k for k in state if k.startswith(name + ".")]
            raise DesignError(f"{name}: neither a dense weight ({name}.weight) nor the tensors of the design's "
                              f"{design.layers[layer.index].kind} layer ({', '.join(own)}) are there; found "
                              f"{', '.join(found) or 'nothing'}", where)
    _check_fits({k: tuple(v.shape) for k, v in expected.items()}, state, where)
    model.load_state_dict(state)
    dense: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        owner = next((name for name in variant if key.startswith(name + ".")), None)
        if owner is None:
            dense[key] = tensor
        elif f"{owner}.weight" not in dense:
            module = model.get_submodule(owner)
            dense[f"{owner}.weight"] = module.dense_weight().detach()
            if variant[owner].spec.bias:
                dense[f"{owner}.bias"] = _bias_of(module).detach()
    return dense


def load_start_weights(model: nn.Module, design: Design, source, fresh_head: bool = True) -> str:
    """Load trained weights into `model` (built by build_model(design)); returns what they were, for the UI.

    `source`: a path (str or Path) to a state_dict or run checkpoint, or a
    state_dict. Non-conv tensors are copied as they are; each conv takes the
    dense kernel by its kind: dense copies it, ASK keeps its active taps,
    HetConv its kept parts, 1xN computes its masks from it (L1 norms), low-rank
    decomposes it (accnn SVD at the layer's rank). A classifier head for
    another number of classes keeps the model's own fresh initialisation (said
    in the description); with fresh_head=False it is refused like any tensor
    that does not fit.
    """
    dense, description, fresh = _start_weights(design, source, fresh_head)
    load_dense_weights(model, design, dense, _where(source), keep=fresh)
    return description


def dense_start_weights(design: Design, source) -> tuple[dict[str, torch.Tensor], str]:
    """(the dense state_dict of the network, what it was) from a path or state_dict, as load_start_weights reads it.

    A run checkpoint's own design says how its layers are stored; otherwise they are dense or `design`'s.
    A classifier head for another number of classes comes freshly initialised (see load_start_weights).
    What e.g. lowrank_by_ratio(..., weights=) and the 1xN / low-rank previews of the Design page take.
    """
    dense, description, _ = _start_weights(design, source, True)
    return dense, description


def _start_weights(design: Design, source, fresh_head: bool) -> tuple[dict[str, torch.Tensor], str, frozenset]:
    """(dense state_dict, description, keys of a classifier head that starts fresh)."""
    where = _where(source)
    if isinstance(source, dict):
        start = StartWeights(as_state_dict(source, where), None, "the given state_dict")
    else:
        start = read_weights(source)
    design = validate(design)
    state, notes = _without_aux_heads(design, start.state_dict)
    fresh: frozenset = frozenset()
    if start.design is not None:  # its own layout first; then the head, against this design
        state = dense_weights_of(start.design, state, where)
    if fresh_head:
        state, fresh, note = _fresh_head(design, state)
        notes += note
    dense = state if start.design is not None else dense_weights_of(design, state, where)
    return dense, start.description + notes, fresh


def _without_aux_heads(design: Design, state: dict) -> tuple[dict, str]:
    """Torchvision's own weights of GoogLeNet / Inception v3 hold auxiliary heads our builds leave out."""
    network = design.network
    heads = AUX_HEADS.get(network.name, ()) if network.source == "torchvision" else ()
    own = _dense_keys(network, design.padfree)
    heads = [h for h in heads if not any(k.startswith(h + ".") for k in own)]
    dropped = [k for k in state if any(k.startswith(h + ".") for h in heads)]
    if not dropped:
        return state, ""
    return ({k: v for k, v in state.items() if k not in dropped},
            f"; torchvision's auxiliary heads ({', '.join(heads)}: {len(dropped)} tensors) are left out, as in "
            f"this network")


@lru_cache(maxsize=64)
def _dense_keys(network: Network, padfree: bool) -> frozenset:
    with traced_network(network, padfree) as model:
        return frozenset(model.state_dict())


@lru_cache(maxsize=64)
def classifier_head(network: Network, padfree: bool = False) -> str | None:
    """The module path of the classifier head: the last nn.Linear or nn.Conv2d the forward runs, when its output
    features are the network's classes (None otherwise)."""
    network = resolve(network, padfree)
    with traced_network(network, padfree) as model:
        names = {module: name for name, module in model.named_modules()
                 if isinstance(module, (nn.Linear, nn.Conv2d))}
        called: list[nn.Module] = []
        meta_forward(model, network.input_shape, lambda m, i, o: called.append(m), names)
    if not called:
        return None
    last = called[-1]
    features = last.out_features if isinstance(last, nn.Linear) else last.out_channels
    return names[last] if features == network.num_classes else None


def _fresh_head(design: Design, state: dict) -> tuple[dict, frozenset, str]:
    """When the only tensors of `state` (dense layout) of another shape than the design's are its classifier
    head's, and only in the number of classes: those replaced by a fresh initialisation of the head, their
    keys, and a note. Else `state` as it is (the usual check names what does not fit)."""
    head = classifier_head(design.network, design.padfree)
    if head is None:
        return state, frozenset(), ""
    with torch.device("meta"):
        model = build_model(design)
    expected = _dense_shapes(model, design_layers(design))
    wrong = [k for k, shape in expected.items() if k in state and tuple(state[k].shape) != shape]
    keys = [k for k in expected if k.startswith(head + ".") and "." not in k[len(head) + 1:]]
    if f"{head}.weight" not in wrong or not set(wrong) <= set(keys) or \
            any(tuple(state[k].shape[1:]) != expected[k][1:] for k in wrong):
        return state, frozenset(), ""
    with traced_network(design.network, design.padfree) as model:
        module = copy.deepcopy(model.get_submodule(head))
    with torch.random.fork_rng(devices=[]):  # a placeholder init must not move the caller's random stream
        module = module.to_empty(device="cpu")
        module.reset_parameters()
    fresh = {f"{head}.{name}": tensor.detach() for name, tensor in module.state_dict().items()}
    theirs, ours = state[f"{head}.weight"].shape[0], expected[f"{head}.weight"][0]
    note = (f"; its classifier head {head} is for {theirs} classes, the design has {ours}: {head} starts fresh "
            f"(the rest is loaded)")
    return {**state, **{k: fresh[k] for k in keys}}, frozenset(keys), note


def check_start_weights(design: Design, source) -> str:
    """What `source` is, once it is known to fit `design` (DesignError if not): a check before a run is queued.

    Reads and converts the weights but builds the design on the meta device, so nothing is decomposed.
    """
    dense, description = dense_start_weights(design, source)
    with torch.device("meta"):
        model = build_model(design)
    _check_fits(_dense_shapes(model, design_layers(validate(design))), dense, _where(source))
    return description


@torch.no_grad()
def load_dense_weights(model: nn.Module, design: Design, dense: dict, where: str = "state_dict",
                       keep=frozenset()) -> None:
    """Load a dense state_dict of the design's network into `model`, each conv by its kind; the tensors named in
    `keep` (a head that starts fresh) stay as the model has them."""
    dense = as_state_dict(dense, where)
    layers = design_layers(validate(design))
    names = [layer.name for layer in layers]
    _check_fits(_dense_shapes(model, layers), dense, where)
    conv_keys = {f"{name}.{part}" for name in names for part in ("weight", "bias")}
    model.load_state_dict({k: v for k, v in dense.items() if k not in conv_keys and k not in keep}, strict=False)
    for layer in layers:
        if f"{layer.name}.weight" in keep:
            continue
        module = model.get_submodule(layer.name)
        like = next(module.parameters())
        weight = dense[f"{layer.name}.weight"].to(like.device, like.dtype)
        bias = dense.get(f"{layer.name}.bias")
        bias = None if bias is None else bias.to(like.device, like.dtype)
        if isinstance(module, nn.Conv2d):
            module.weight.copy_(weight)
            if module.bias is not None:
                module.bias.copy_(bias)
        else:
            module.set_from_dense(weight, bias)


def _dense_shapes(model: nn.Module, layers) -> dict[str, tuple]:
    """The tensor shapes of the dense network of `model` (a build of any design of it)."""
    names = [layer.name for layer in layers]
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()
              if not any(k.startswith(name + ".") for name in names)}
    for layer in layers:
        s = layer.spec
        shapes[f"{layer.name}.weight"] = (s.out_channels, s.in_channels // s.groups, *s.kernel)
        if s.bias:
            shapes[f"{layer.name}.bias"] = (s.out_channels,)
    return shapes


def _where(source) -> str:
    return "state_dict" if isinstance(source, dict) else str(source)


def _bias_of(module: nn.Module) -> torch.Tensor | None:
    return module.h.bias if isinstance(module, LowRankConv2d) else getattr(module, "bias", None)


def _check_fits(expected: dict[str, tuple], state: dict, where: str) -> None:
    """DesignError for the first tensor of `state` that is missing, extra or of another shape than `expected`."""
    for key, shape in expected.items():
        if key in state and tuple(state[key].shape) != shape:
            raise DesignError(f"{key} has shape {tuple(state[key].shape)}, the design expects {shape}", where)
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DesignError(f"{missing[0]} is missing: the design expects a tensor of shape "
                          f"{expected[missing[0]]}{more}", where)
    extra = [k for k in state if k not in expected]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise DesignError(f"{extra[0]} (shape {tuple(state[extra[0]].shape)}) is not a tensor of this "
                          f"network{more}", where)


def _checkpoint_design(raw, where: str) -> Design | None:
    if raw is None:
        return None
    try:
        return design_from_json(raw)
    except DesignError as err:
        raise DesignError(f"the checkpoint's design does not read ({err})", where) from None


def _run_description(path: Path, step, design: Design | None) -> str:
    """'dense weights of run 3 (step 469)': run folders are named by run id (designer.runs.store)."""
    what = "dense weights" if design is not None and all(c.kind == "dense" for c in design.layers) else "weights"
    run = f"run {path.parent.name}" if path.parent.name.isdigit() else path.name
    return f"{what} of {run} (step {step})" if step is not None else f"{what} of {run}"


def _first_reason(err: Exception) -> str:
    """The line of torch's message that says why: 'Unsupported global: ...' for a refused pickle."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    reason = next((line for line in lines if "Unsupported global" in line), lines[0] if lines else "")
    return f"{type(err).__name__}: {reason[:160]}" if reason else type(err).__name__


def same_network(a: Design, b: Design) -> bool:
    """Whether weights of one design's network fit the other's: same architecture, depth, keyword arguments,
    padding-free switch and number of classes (the data set and input size may differ)."""
    a, b = validate(a), validate(b)
    key = lambda d: (d.network.arch, d.network.depth, d.network.kwargs, d.padfree, d.network.num_classes)  # noqa: E731
    return key(a) == key(b)
