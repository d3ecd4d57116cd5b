"""The networks a design can start from: the papers' CIFAR families (registered in models.registry),
every torchvision classification model (models.torchvision_models) and a user's own entry point
(models.entry_point). Each builds a plain network of nn.Conv2d; layers/ holds what a design swaps in."""
from models import mobilenet, resnet, resnet_proj, vgg, vgg_hetconv  # noqa: F401  (registers, in menu order)
from models.registry import (
                             ModelInfo,
                             canonical_arch,
                             create_model,
                             list_models,
                             model_info,
                             padfree_archs,
                             register_model,
                             supports_padfree,
)

__all__ = ["ModelInfo", "canonical_arch", "create_model", "list_models", "model_info", "padfree_archs",
           "register_model", "supports_padfree"]
