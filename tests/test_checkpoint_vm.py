"""checkpoint/restore round trips on a kernel criu works on: tests/runtime/test_checkpoint.py
in the cgroup v2 guest (tests/support/cgroup2vm.py: Debian's own 6.1 kernel, the host's
criu). This host's kernel fails `criu check` (vdso), so there those tests skip, saying why.

The guest's loopback is brought up first: `criu check` probes TCP repair over it.
"""
import os
import shlex
import sys

import pytest

from tests.support import cgroup2vm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBSET = ["tests/runtime/test_checkpoint.py"]
# only where criu fails; in the guest it works
DESELECT = "not where_criu_fails"

pytestmark = pytest.mark.skipif(bool(os.environ.get(cgroup2vm.GUEST_ENV)), reason="already in the guest")


def test_checkpoint_round_trips_in_the_guest():
    reason = cgroup2vm.unavailable()
    if reason:
        pytest.skip(reason)
    pytest_cmd = shlex.join([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                             "--color=no", "-k", DESELECT, *SUBSET])
    rc, out = cgroup2vm.run(["sh", "-c", f"busybox ip link set lo up && criu check && exec {pytest_cmd}"],
                            rw=REPO, cwd=REPO, timeout=1200)
    tail = out[-8000:]
    assert rc == 0, tail
    summary = [line for line in out.splitlines() if " passed" in line]
    assert summary and "skipped" not in summary[-1], tail  # in the guest nothing may skip
