"""A layer kind with several exact implementations ("backends"), chosen by name.

Each kind (ASK, HetConv, 1xN) keeps a registry name -> forward(module, x);
its reference backend registers with the layer, the fast ones (and `auto`)
register from its *_backends module. Switching backend never touches the
layer's parameters or state_dict.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from models.layers.autotune import AUTO, chosen_backend, run_with_epilogue
from models.layers.epilogue import Epilogue


class BackendChoice(nn.Module):
    """Base of the layers that run one backend of their kind's registry."""

    BACKENDS: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]]  # set by each layer kind
    KIND: str  # the kind's name in messages

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        if name not in self.BACKENDS:
            raise ValueError(f"unknown {self.KIND} backend {name!r} (have {', '.join(self.BACKENDS)})")
        self._backend = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.BACKENDS[self._backend](self, x)

    def forward_with_epilogue(self, x: torch.Tensor, epilogue: Epilogue) -> torch.Tensor:
        """[relu](self(x) + residual + bias), in the backend's own call where it has one (its forward's
        `with_epilogue`), else the epilogue after it in torch; auto times its candidates that way."""
        if getattr(self, "bias", None) is not None:  # a folded layer's bias is in the epilogue
            return epilogue.apply(self(x))
        name = self._backend
        if name == AUTO:
            name = chosen_backend(self.BACKENDS, self, x, epilogue)
        return run_with_epilogue(self.BACKENDS[name], self, x, epilogue)
