"""Taichi kernels for sparse convolutions, wrapped as torch autograd functions.

Importing this package does not initialise Taichi: the runtime starts on the
first kernel call, so importing the models stays fast. Public functions take
tensors and plain tap descriptions, never model objects.
"""
