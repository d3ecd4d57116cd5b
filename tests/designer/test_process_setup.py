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
x = torch.empty(16 * 2**20).fill_(1.0)  # 64 MB, as a batch-128 activation: above glibc's mmap threshold
del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
y = torch.empty(16 * 2**20).fill_(2.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults_of_a_second_allocation(keep_heap: str) -> int:
    env = {**os.environ, "KERNEL_STUDIO_KEEP_HEAP": keep_heap}
    out = subprocess.run([sys.executable, "-c", REUSE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_memory_freed_by_one_forward_is_reused_by_the_next_without_page_faults():
    assert page_faults_of_a_second_allocation("1") < 500
    assert page_faults_of_a_second_allocation("0") > 10_000  # 16,384 pages of 4 KB, faulted in again
