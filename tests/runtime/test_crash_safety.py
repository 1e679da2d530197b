"""Issue 15's crash safety: pyrun SIGKILLed anywhere leaves nothing `delete --force` cannot remove.

`create` is killed at a random moment within the time a whole create takes here (a fixed
seed picks the moments; where in create each one lands varies with the machine, which
is why there are many), `run` in the foreground likewise, and `exec` while it starts its
process. After each kill, `state` answers with a valid document (or "does not exist"),
and `delete --force` leaves no state directory, no process, no cgroup directory and no
mount on the host.

The kills orphan processes: this test process is their child subreaper while it runs,
so that an init the killed command left behind comes to us, and is counted, instead
of vanishing under pid 1.
"""
import json
import os
import random
import signal
import subprocess
import time

import pytest

from tests.conftest import PYRUN
from tests.support.hostsnap import HostSnapshot, Subreaper, valid_state

PREFIX = "cs-"
SEED = 15
CREATE_ROUNDS = 30
RUN_ROUNDS = 10
EXEC_ROUNDS = 10


@pytest.fixture
def subreaper():
    with Subreaper() as s:
        yield s


def _start(pyrun, *args) -> subprocess.Popen:
    # Output to /dev/null: a pipe would be held open by a detached init.
    return subprocess.Popen([PYRUN, "--root", pyrun.root, *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _time_of(pyrun, *args) -> float:
    t = time.monotonic()
    p = _start(pyrun, *args)
    assert p.wait(timeout=30) == 0, args
    return time.monotonic() - t


def _status(pyrun, cid: str) -> str:
    """What `state` says after the kill: a status, or "absent". Never anything else."""
    p = pyrun("state", cid)
    if p.returncode != 0:
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "does not exist" in lines[0], p.stderr
        return "absent"
    return valid_state(p.stdout, cid)["status"]


def _kill_at(pyrun, delay: float, *args) -> None:
    p = _start(pyrun, *args)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)


def _nothing_left(pyrun, snap, orphans, what: str) -> None:
    assert pyrun.ids() == [], f"{what}: state left: {pyrun.ids()}"
    left = orphans.alive()
    assert not left, f"{what}: processes left: {left}"
    snap.assert_unchanged(what)


def test_create_killed_at_random_points(pyrun, bundle, subreaper, tmp_path):
    b = bundle(["sleep", "100"])
    snap = HostSnapshot(prefixes=(PREFIX,), watch=(tmp_path.parent,))
    # The span to aim in: the slowest of a few whole creates (the first pays for cold caches).
    span = 0.0
    for i in range(3):
        span = max(span, _time_of(pyrun, "create", "-b", b, f"{PREFIX}probe{i}"))
        pyrun("delete", "--force", f"{PREFIX}probe{i}", check=True)
    rng = random.Random(SEED)
    seen = {}
    for i in range(CREATE_ROUNDS):
        cid = f"{PREFIX}create{i}"
        _kill_at(pyrun, rng.uniform(0, span), "create", "-b", b, cid)
        status = _status(pyrun, cid)
        if status == "creating":  # before or after the preliminary record (cgroup named)
            record = os.path.exists(os.path.join(pyrun.root, cid, "state.json"))
            status += " with its record" if record else " without a record"
        seen[status] = seen.get(status, 0) + 1
        listed = pyrun("list", "--format", "json")
        assert listed.returncode == 0, listed.stderr
        listed = json.loads(listed.stdout) or []  # `null` for none, as runc prints it
        assert [s["id"] for s in listed] == ([] if status == "absent" else [cid]), listed
        d = pyrun("delete", "--force", cid)
        assert d.returncode == 0, f"round {i} ({status}): delete --force: {d.stderr}"
        _nothing_left(pyrun, snap, subreaper, f"round {i} ({status})")
    print(f"create killed {CREATE_ROUNDS} times within {span * 1000:.0f} ms; left as: {seen}")


def test_run_killed_at_random_points(pyrun, bundle, subreaper, tmp_path):
    b = bundle(["sleep", "100"])
    snap = HostSnapshot(prefixes=(PREFIX,), watch=(tmp_path.parent,))
    # run is create + start; the span is a create's and a start's, and a little of the wait.
    span = _time_of(pyrun, "create", "-b", b, f"{PREFIX}probe") + _time_of(pyrun, "start", f"{PREFIX}probe")
    pyrun("delete", "--force", f"{PREFIX}probe", check=True)
    rng = random.Random(SEED + 1)
    seen = {}
    for i in range(RUN_ROUNDS):
        cid = f"{PREFIX}run{i}"
        _kill_at(pyrun, rng.uniform(0, span * 1.2), "run", "-b", b, cid)
        status = _status(pyrun, cid)
        seen[status] = seen.get(status, 0) + 1
        d = pyrun("delete", "--force", cid)
        assert d.returncode == 0, f"round {i} ({status}): delete --force: {d.stderr}"
        _nothing_left(pyrun, snap, subreaper, f"run round {i} ({status})")
    print(f"run killed {RUN_ROUNDS} times within {span * 1200:.0f} ms; left as: {seen}")


def test_exec_killed_at_random_points(pyrun, bundle, tmp_path):
    """A killed exec never breaks the container: it stays running, with a valid state, and
    takes a new exec; delete --force then takes everything exec started with it.

    No subreaper here: the processes a killed exec started are in the container's pid
    namespace, and would wait as zombies for us to reap them while the init's exit
    waits for them (pid 1 reaps them at once). Instead, no copy of a killed `pyrun exec`
    (its fork before execve included) may outlive it, and the cgroup takes the rest."""
    b = bundle(["sleep", "100"])
    snap = HostSnapshot(prefixes=(PREFIX,), watch=(tmp_path.parent,))
    cid = f"{PREFIX}exec"
    pyrun("run", "-d", "-b", b, cid, check=True)
    span = _time_of(pyrun, "exec", cid, "true")
    rng = random.Random(SEED + 2)
    for i in range(EXEC_ROUNDS):
        _kill_at(pyrun, rng.uniform(0, span), "exec", cid, "sleep", "100")
        assert _status(pyrun, cid) == "running", f"exec round {i}"
        # What the killed exec started runs in the container's cgroup, or exits by itself.
        strays = _pyrun_processes(pyrun.root, keep=lambda pid: _in_cgroup_of(pid, cid))
        assert not strays, f"exec round {i}: left outside the container: {strays}"
    assert pyrun("exec", cid, "echo", "still-works").stdout == "still-works\n"
    pyrun("delete", "--force", cid, check=True)
    assert pyrun.ids() == []
    snap.assert_unchanged("exec")


def _pyrun_processes(root: str, keep) -> dict[int, str]:
    """Live processes whose command line names our --root (pyrun, or its fork before
    execve) for which keep(pid) is false, once those on their way out have gone."""
    deadline = time.monotonic() + Subreaper.EXIT_WAIT
    while True:
        left = {}
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                with open(f"/proc/{name}/stat", "rb") as f:
                    state = f.read()
            except OSError:
                continue
            if root in cmd and state[state.rfind(b")") + 2:][:1] not in b"ZX" and not keep(int(name)):
                left[int(name)] = cmd
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def _in_cgroup_of(pid: int, cid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return f"/{cid}\n" in f.read()
    except OSError:
        return True  # gone
