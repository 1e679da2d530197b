"""checkpoint/restore round trips on a kernel criu works on: tests/runtime/test_checkpoint.py's
tests that need criu, in the cgroup v2 guest (tests/support/cgroup2vm.py: Debian's own 6.1
kernel, the host's criu). This host's kernel fails `criu check` (vdso), so there those tests
skip, saying why.

The guest's loopback is brought up first: `criu check` probes TCP repair over it.
"""
import os
import shlex
import sys

import pytest

from tests.support import cgroup2vm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBSET = "tests/runtime/test_checkpoint.py"

pytestmark = pytest.mark.skipif(bool(os.environ.get(cgroup2vm.GUEST_ENV)), reason="already in the guest")


def guest_tests() -> list[str]:
    """The tests that need criu to work (its `criu` fixture): the rest (refusals, the RPC
    encoding) pass on this host with the whole suite, and a boot's minutes go to criu."""
    import inspect
    from tests.runtime import test_checkpoint as t
    return [f"{SUBSET}::{name}" for name, f in vars(t).items()
            if name.startswith("test_") and callable(f) and "criu" in inspect.signature(f).parameters]


def test_checkpoint_round_trips_in_the_guest():
    reason = cgroup2vm.unavailable()
    if reason:
        pytest.skip(reason)
    # -v and faulthandler: should a test hang, the tail names it and shows where it waits
    pytest_cmd = shlex.join([sys.executable, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider",
                             "-o", "faulthandler_timeout=240", "--color=no", *guest_tests()])
    rc, out = cgroup2vm.run(["sh", "-c", f"busybox ip link set lo up && criu check && exec {pytest_cmd}"],
                            rw=REPO, cwd=REPO, timeout=1200)
    tail = out[-8000:]
    assert rc == 0, tail
    summary = [line for line in out.splitlines() if " passed" in line]
    assert summary and "skipped" not in summary[-1], tail  # in the guest nothing may skip
