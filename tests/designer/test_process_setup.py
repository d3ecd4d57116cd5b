"""What importing designer sets up for the process: freed memory stays in the process (no page faults when the
next forward allocates its activations again), unless KERNEL_STUDIO_KEEP_HEAP=0."""
import os
import subprocess
import sys

import pytest

from tests.designer.cli.test_commands import ROOT

REUSE = """
import resource
import designer, torch
net = torch.nn.Sequential(torch.nn.Conv2d(16, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3, padding=1))
x = torch.randn(64, 16, 32, 32)  # activations of 16 MB: above glibc's mmap threshold
with torch.inference_mode():
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        net(x)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)  # in the third forward
"""


def page_faults_of_a_third_forward(keep_heap: str) -> int:
    env = {**os.environ, "KERNEL_STUDIO_KEEP_HEAP": keep_heap}
    out = subprocess.run([sys.executable, "-c", REUSE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_memory_freed_by_one_forward_is_reused_by_the_next_without_page_faults():
    assert page_faults_of_a_third_forward("1") < 100
    assert page_faults_of_a_third_forward("0") > 4_000  # 16 MB = 4,096 pages of 4 KB, faulted in again
