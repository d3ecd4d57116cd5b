"""Convolution variants a design can choose (one module per kind) and their backends.

Each kind's module defines the layer and its backend registry with the
`reference` backend; its *_backends module adds the fast ones. Importing
this package registers them all, in that one direction (backends -> layer).
"""
from models.layers import ask, ask_backends, blocksparse, blocksparse_backends, hetconv, hetconv_backends  # noqa: F401  (the layers and their registries)  # noqa: F401  (register backends)
