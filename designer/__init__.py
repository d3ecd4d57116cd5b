"""Kernel Studio's domain: designs, building, counting, benchmarking, training. No UI here."""
import os

# torch (OpenMP) and Taichi share 2 cores in one process when we time them:
# spinning OpenMP workers would steal Taichi's cores. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TI_SKIP_VERSION_CHECK", "ON")
