"""The cgroup v2 code paths on a real unified host: one guest boot runs a subset of the suite.

See tests/support/cgroup2vm.py. The subset is the lifecycle and exec tests (every one of
them places, lists, freezes and removes cgroups) plus tests/runtime/test_cgroup2.py, which
checks what only a v2 host shows and must not skip there.
"""
import os
import sys

import pytest

from tests.support import cgroup2vm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBSET = ["tests/runtime/test_cgroup2.py", "tests/runtime/test_lifecycle.py", "tests/runtime/test_exec.py"]

pytestmark = pytest.mark.skipif(bool(os.environ.get(cgroup2vm.GUEST_ENV)), reason="already in the guest")


def test_subset_passes_on_a_cgroup_v2_host():
    reason = cgroup2vm.unavailable()
    if reason:
        pytest.skip(reason)
    # -v and faulthandler: should a test hang, the tail names it and shows where it waits
    # (one CI run once spent the whole timeout in this guest with nothing to show for it)
    rc, out = cgroup2vm.run([sys.executable, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider",
                             "-o", "faulthandler_timeout=240", "--color=no", *SUBSET], rw=REPO, cwd=REPO, timeout=900)
    tail = out[-6000:]
    assert rc == 0, tail
    summary = [line for line in out.splitlines() if " passed" in line]
    assert summary and "skipped" not in summary[-1], tail  # in the guest nothing may skip
