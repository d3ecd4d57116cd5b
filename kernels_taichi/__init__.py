"""The project's convolution kernels, wrapped as torch autograd functions.

- Taichi kernels for sparse convolutions (ask, hetconv, blocksparse, sparse_conv;
  CPU or CUDA): importing this package does not initialise Taichi, the runtime
  starts on the first kernel call, so importing the models stays fast.
- sconv, a C++ CPU convolution for structured-sparse layers (sconv.cpp: AVX-512
  or AVX2 + FMA, OpenMP, loaded with ctypes; sconv.py builds and calls it,
  sconv_layers.py runs ASK, HetConv and 1xN layers on it). It builds on first
  use (or `make sconv`) and, where it cannot build, says why in one line while
  its callers fall back to torch.

Public functions take tensors and plain tap descriptions, never model objects.
"""
