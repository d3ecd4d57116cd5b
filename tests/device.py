"""The device the kernel and backend tests make their tensors on: cpu, or cuda under `make gpu-check`."""
import os

DEVICE = os.environ.get("KERNEL_STUDIO_DEVICE", "cpu")
