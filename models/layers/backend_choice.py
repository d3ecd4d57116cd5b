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
