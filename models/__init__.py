"""CIFAR networks built through one conv factory (see models.layers.factory)."""
from models import mobilenet, resnet, resnet_proj, vgg, vgg_hetconv  # noqa: F401  (registers the families)
from models.registry import canonical_arch, create_model, list_models, padfree_archs, register_model, supports_padfree

__all__ = ["canonical_arch", "create_model", "list_models", "padfree_archs", "register_model", "supports_padfree"]
