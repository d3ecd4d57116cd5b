"""CIFAR networks built through one conv factory (see models.layers.factory)."""
from models.registry import canonical_arch, create_model, list_models, register_model
from models import vgg, resnet  # noqa: F401  (registers the families)

__all__ = ["canonical_arch", "create_model", "list_models", "register_model"]
