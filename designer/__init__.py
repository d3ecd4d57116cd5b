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


def _keep_freed_memory() -> None:
    """Keep freed memory in the process instead of handing it back to the OS at every free.

    glibc serves every allocation above its mmap threshold (a few MB: one activation at batch 128) with a
    fresh mmap and unmaps it when freed, so the next forward page-faults all of it back: 4,000-8,000 minor
    faults per ResNet-20 forward at batch 128, 70-78 ms instead of 56 ms dense and 40-45 ms instead of 36 ms
    with sconv (and different from one process to the next). No mmap'd chunks and no trimming of the heap
    keep the pages, as the jemalloc/tcmalloc that PyTorch recommends for CPU inference do. The price is that
    the process holds on to its peak memory and some fragmentation (VGG-16 at batches 1-128: 941 MB resident
    against 803 MB, steady over 24 forwards, where the 803 MB took 61,000 page faults per forward at batch 128).
    KERNEL_STUDIO_KEEP_HEAP=0 turns it off; without glibc it does nothing."""
    if os.environ.get("KERNEL_STUDIO_KEEP_HEAP", "1").lower() in ("0", "off", "false", "no"):
        return
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    mallopt(M_MMAP_MAX, 0)
    mallopt(M_TRIM_THRESHOLD, 2**31 - 1)


_keep_freed_memory()
