"""Where a design's network comes from: a paper family, torchvision, or a user's entry point.

`resolve` fills a Network's defaults and checks that it builds: the classes
come from the data set (or --num-classes; torchvision's default is 1000,
an entry point's is what it outputs), the input shape from the source (the
paper families' 3x32x32, torchvision's weights' crop size, 3x224x224 for an
entry point). `plain_network` builds it with nn.Conv2d everywhere; a design
then swaps the convolutions it changes (designer.networks.build).

Entry points run the user's own code: the CLI takes any, the app only those
its server-side setting names (KERNEL_STUDIO_MODELS, restrict_entry_points).
"""
from __future__ import annotations

import contextlib
import json
import threading
from functools import lru_cache

import torch
import torch.nn as nn

from designer.designs.datasets import dataset_info
from designer.designs.design import Network, canonical_kwargs
from designer.errors import DesignError, shown
from models import canonical_arch, list_models, model_info, padfree_archs
from models.entry_point import build_entry_point, is_entry_point, load_callable, takes_keyword
from models.torchvision_models import DEFAULT_CLASSES, build_torchvision, default_input_shape, model_name

ENTRY_POINT_INPUT = (3, 224, 224)
_allowed_entry_points: frozenset[str] | None = None  # None: any (the CLI: the user's own machine)
_build_lock = threading.RLock()  # construction may patch nn.Module (see _parameters_on_meta): one at a time
_trace_lock = threading.RLock()  # a shared meta network takes one trace's hooks at a time
_meta_networks: dict = {}  # (resolved Network, padfree) -> its plain network on the meta device, for traces
MAX_META_NETWORKS = 16


def restrict_entry_points(names) -> None:
    """Only these entry points may be built from now on (the app: its server-side setting; empty: none)."""
    global _allowed_entry_points
    _allowed_entry_points = frozenset(names)
    clear_caches()


def clear_caches() -> None:
    """Forget every resolved network and its meta build (the next trace starts from nothing)."""
    resolve.cache_clear()
    with _trace_lock:
        _meta_networks.clear()


def allowed_entry_points() -> list[str]:
    return sorted(_allowed_entry_points or ())


def _builder(network: Network, padfree: bool):
    """A function of no arguments that builds the plain network (sizes and classes already resolved)."""
    kwargs = network.kwargs_dict
    if network.source == "paper":
        info = model_info(network.arch)
        extra = {"padfree": True} if padfree else {}
        return lambda: info.build(depth=network.depth, num_classes=network.num_classes,
                                  in_channels=network.input_shape[0], **extra)
    if network.source == "torchvision":
        return lambda: build_torchvision(network.arch, network.num_classes, **kwargs)
    if network.num_classes and takes_keyword(load_callable(network.arch), "num_classes"):
        kwargs = {**kwargs, "num_classes": network.num_classes}
    return lambda: build_entry_point(network.arch, **kwargs)


@contextlib.contextmanager
def _parameters_on_meta():
    """Parameters and buffers go to the meta device as modules register them: for models whose constructor
    computes with tensors (torchvision's RegNets), which the meta device context cannot run."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(module, name, param):
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer(module, name, tensor, persistent=True):
        register_buffer(module, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


def _construct(build, device: str | torch.device) -> nn.Module:
    with _build_lock:
        if str(device) != "meta":
            with torch.device(device):
                return build()
        try:
            with torch.device("meta"):
                return build()
        except (NotImplementedError, RuntimeError):  # "Cannot copy out of meta tensor": compute while building
            with _parameters_on_meta():
                return build()


def plain_network(network: Network, padfree: bool = False, device: str | torch.device = "cpu") -> nn.Module:
    """The network with plain convolutions, freshly initialised (on the meta device: shapes only, no memory)."""
    network = resolve(network, padfree)
    return _construct(_builder(network, padfree), device)


@contextlib.contextmanager
def traced_network(network: Network, padfree: bool = False):
    """The plain network on the meta device, built once per resolved network and shared by the traces that only
    read it (its convolutions, its counts): add hooks inside and remove them before leaving; never change it
    (plain_network gives a model of one's own). One trace at a time."""
    network = resolve(network, padfree)
    with _trace_lock:
        model = _meta_networks.get((network, padfree))
        if model is None:
            model = _remember(network, padfree, plain_network(network, padfree, device="meta"))
        yield model


def _remember(network: Network, padfree: bool, model: nn.Module) -> nn.Module:
    with _trace_lock:
        while len(_meta_networks) >= MAX_META_NETWORKS:
            del _meta_networks[next(iter(_meta_networks))]
        _meta_networks[network, padfree] = model
    return model


def meta_forward(model: nn.Module, input_shape: tuple[int, ...], hook=None, modules=()):
    """One eval forward of a meta-device model on one image, with `hook` as a forward hook on each of `modules`
    while it runs (how the traces of convolutions and heads see a network without computing anything); the
    model's train/eval mode is left as it was. Returns the model's output."""
    handles = [module.register_forward_hook(hook) for module in modules]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.device("meta"):
            return model(torch.empty(1, *input_shape, device="meta"))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()


def output_shape(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of the model's output for one image, traced on the meta device (the model must be there)."""
    out = meta_forward(model, input_shape)
    if not isinstance(out, torch.Tensor):
        raise DesignError(f"the network returns a {type(out).__name__}, not a tensor of logits", "network")
    return tuple(out.shape)


@lru_cache(maxsize=128)
def resolve(network: Network, padfree: bool = False) -> Network:
    """The network with its defaults filled and checked to build; DesignError naming what is wrong."""
    data = dataset_info(network.dataset)
    if network.source == "paper":
        network = _resolve_paper(network, padfree, data.num_classes)
    else:
        if padfree:
            raise DesignError(f"padding-free downsampling is defined for {', '.join(padfree_archs())}, not "
                              f"{network.arch}", "padfree")
        if network.depth:
            raise DesignError(f"--depth is for the paper families; {network.arch} has its own (leave it out)",
                              "network")
        network = _resolve_other(network, data.num_classes)
    try:
        model = _construct(_builder(network, padfree), "meta")
        shape = output_shape(model, network.input_shape)
    except DesignError:
        raise
    except (ValueError, TypeError) as err:
        raise DesignError(_one_line(err), "network") from None
    except RuntimeError as err:
        raise DesignError(f"{network.arch} does not run on a {'x'.join(map(str, network.input_shape))} input: "
                          f"{_one_line(err)}", "network") from None
    if len(shape) != 2:
        raise DesignError(f"{network.arch} outputs shape {shape} for one image; a classifier outputs (1, classes)",
                          "network")
    if network.num_classes and shape[1] != network.num_classes:
        raise DesignError(f"{network.arch} outputs {shape[1]} classes, the design needs {network.num_classes} "
                          f"(its data set's); give the network a num_classes keyword argument", "network")
    resolved = Network(network.arch, network.depth, network.dataset, shape[1], network.input_shape, network.kwargs)
    if resolved == network:  # the model built here is the resolved network's: the traces that follow reuse it
        _remember(resolved, padfree, model)
    return resolved


def _resolve_paper(network: Network, padfree: bool, data_classes: int) -> Network:
    try:
        info = model_info(network.arch)
    except KeyError:
        raise DesignError(f"unknown architecture {shown(network.arch)} (choose one of {', '.join(list_models())}, "
                          f"torchvision:NAME or package.module:callable)", "network") from None
    if padfree and not info.padfree:
        raise DesignError(f"padding-free downsampling is defined for {', '.join(padfree_archs())}, not {info.name}",
                          "padfree")
    if network.kwargs:
        raise DesignError(f"{info.name} takes no keyword arguments (--arch-kwargs is for torchvision models and "
                          f"entry points)", "network")
    shape = network.input_shape or info.input_shape
    if shape != info.input_shape and not info.any_input_size:
        raise DesignError(f"{info.label} is defined at {'x'.join(map(str, info.input_shape))} (its pooling and "
                          f"classifier fix the size), got {'x'.join(map(str, shape))}", "--input-size")
    if min(shape[1:]) < 32:
        raise DesignError(f"{info.label} needs an input of at least 32x32, got {'x'.join(map(str, shape))}",
                          "--input-size")
    classes = _classes(network, data_classes, 10)
    depth = network.depth or info.default_depth
    return Network(canonical_arch(network.arch), depth, network.dataset, classes, tuple(shape), "")


def _resolve_other(network: Network, data_classes: int) -> Network:
    if network.source == "torchvision":
        try:
            shape = network.input_shape or default_input_shape(network.arch)
        except ValueError as err:
            raise DesignError(str(err), "network") from None
        classes = _classes(network, data_classes, DEFAULT_CLASSES)
    else:
        if _allowed_entry_points is not None and network.arch not in _allowed_entry_points:
            named = ", ".join(sorted(_allowed_entry_points)) or "none"
            raise DesignError(f"{shown(network.arch)} is not one of this server's models ({named}); a server "
                              f"names them in KERNEL_STUDIO_MODELS", "network")
        if not is_entry_point(network.arch):
            raise DesignError(f"{shown(network.arch)} is not an entry point (package.module:callable)", "network")
        shape = network.input_shape or ENTRY_POINT_INPUT
        classes = _classes(network, data_classes, 0)  # 0: what the model outputs
    return Network(network.arch, 0, network.dataset, classes, tuple(shape), network.kwargs)


def _classes(network: Network, data_classes: int, default: int) -> int:
    """The data set's classes, which a --num-classes must agree with; else --num-classes, else the default."""
    if data_classes:
        if network.num_classes and network.num_classes != data_classes:
            raise DesignError(f"{network.dataset} has {data_classes} classes, the design says {network.num_classes}",
                              "--num-classes")
        return data_classes
    return network.num_classes or default


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:300] if lines else type(err).__name__


def network_from_options(arch: str, depth: int | None = None, dataset: str | None = None,
                         num_classes: int | None = None, input_shape: tuple[int, ...] | None = None,
                         kwargs: dict | str | None = None) -> Network:
    """A resolved Network from the CLI's (or a form's) options; None for each means its default."""
    if isinstance(kwargs, str):
        kwargs = parse_kwargs(kwargs)
    default_data = "cifar10" if not (arch.startswith("torchvision:") or is_entry_point(arch)) else "image-folder"
    network = Network(arch, depth or 0, dataset or default_data, num_classes or 0, tuple(input_shape or ()),
                      canonical_kwargs(kwargs))
    return resolve(network)


def parse_kwargs(text: str) -> dict:
    """--arch-kwargs: a JSON object of keyword arguments."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise DesignError(f"not a JSON object: {err}", "--arch-kwargs") from None
    if not isinstance(value, dict):
        raise DesignError(f"must be a JSON object such as {{\"width\": 2}}, got {shown(text)}", "--arch-kwargs")
    return value


def network_label(network: Network) -> str:
    """'VGG-16', 'MobileNetV2', 'torchvision resnet18', 'mypkg.nets:build'."""
    if network.source == "paper":
        info = model_info(network.arch)
        depth = network.depth or info.default_depth
        return f"{info.label}-{depth}" if info.depths else info.label
    if network.source == "torchvision":
        return f"torchvision {model_name(network.arch)}"
    return network.arch
