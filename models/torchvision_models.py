"""Every torchvision classification model as a network source, named `torchvision:NAME`.

Built with weights=None (nothing is downloaded; trained weights come as a
state_dict the user gives). The default input size is the one torchvision's
own weights are evaluated at (their transforms' crop size: 224 for most,
299 for inception_v3, up to 600 for efficientnet_b7).
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import torch.nn as nn

PREFIX = "torchvision:"
DEFAULT_INPUT = (3, 224, 224)
DEFAULT_CLASSES = 1000
# Models whose auxiliary heads return a tuple in training; our trainer trains on the logits alone.
WITHOUT_AUX = {"googlenet": {"aux_logits": False, "init_weights": False},
               "inception_v3": {"aux_logits": False, "init_weights": False}}
# Their modules: a state_dict of torchvision's own weights holds them; ours leave them out (designer.networks.weights).
AUX_HEADS = {"googlenet": ("aux1", "aux2"), "inception_v3": ("AuxLogits",)}


def is_torchvision(arch: str) -> bool:
    return arch.startswith(PREFIX)


@lru_cache(maxsize=1)
def torchvision_names() -> tuple[str, ...]:
    """The classification models torchvision lists (torchvision.models.list_models(module=torchvision.models))."""
    import torchvision
    return tuple(torchvision.models.list_models(module=torchvision.models))


def model_name(arch: str) -> str:
    """NAME of `torchvision:NAME`; ValueError naming close matches for a model torchvision does not have."""
    name = arch[len(PREFIX):]
    if name not in torchvision_names():
        import difflib
        close = difflib.get_close_matches(name, torchvision_names(), n=3)
        hint = f"; did you mean {', '.join(PREFIX + c for c in close)}?" if close else \
            f" (torchvision has {len(torchvision_names())} classification models, e.g. {PREFIX}resnet18)"
        raise ValueError(f"torchvision has no classification model {name!r}{hint}")
    return name


@lru_cache(maxsize=None)
def default_input_shape(arch: str) -> tuple[int, int, int]:
    """(3, S, S) with S the crop size of the model's default torchvision weights (224 when it has none)."""
    import torchvision
    weights = torchvision.models.get_model_weights(model_name(arch)).DEFAULT
    size = getattr(weights.transforms, "keywords", {}).get("crop_size", DEFAULT_INPUT[1])
    return (3, size, size)


def build_torchvision(arch: str, num_classes: int = DEFAULT_CLASSES, **kwargs) -> nn.Module:
    """The plain torchvision model, randomly initialised (weights=None)."""
    import torchvision
    name = model_name(arch)
    kwargs = {**WITHOUT_AUX.get(name, {}), **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # inception's note on its future default initialisation
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
