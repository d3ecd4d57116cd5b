"""CIFAR networks built through one conv factory (see models.layers.factory)."""
from models.registry import (canonical_arch, create_model, list_models, padfree_archs, register_model,
                             supports_padfree)
from models import vgg, resnet, vgg_hetconv, mobilenet, resnet_proj  # noqa: F401  (registers the families)

__all__ = ["canonical_arch", "create_model", "list_models", "padfree_archs", "register_model", "supports_padfree"]
