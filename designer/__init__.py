"""Kernel Studio's domain: designs, building, counting, benchmarking, training. No UI here."""
import os

# torch (OpenMP) and Taichi share 2 cores in one process. OpenMP workers that
# spin long after each op steal Taichi's cores; workers that sleep at once wake
# too late for the next small op (VGG-16 at batch 1: 11.7 ms instead of 7.6 ms).
# A short spin (GOMP_SPINCOUNT, tens of microseconds), then sleep, serves both.
# Must be set before torch loads: import designer first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "20000")
os.environ.setdefault("TI_SKIP_VERSION_CHECK", "ON")
