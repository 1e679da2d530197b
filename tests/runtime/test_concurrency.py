"""Issue 15's concurrency: many lifecycles at once, and commands racing on one container ID.

200 whole lifecycles (create, start, state, kill, delete), 20 at a time; then 5 rounds of
20 commands started together on ONE ID (create, start, kill, delete --force, state,
exec, shuffled by a fixed seed). Every command either works or fails with one line;
every state document it prints is valid against the OCI state schema (hostsnap.valid_state); after each round
no init lives outside the container the state records; and after a final delete --force
nothing is left: no state directory, no cc- cgroup, no process (this test process is
the subreaper of whatever a racing command orphans).
"""
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.hostsnap import HostSnapshot, Subreaper, processes_in, valid_state

PREFIX = "cc-"
LIFECYCLES = 200
PARALLEL = 20
SEED = 20
# What each round finds before its commands race: a start, a kill or an exec has
# something to act on only if the container exists when it runs.
ROUND_STARTS = ("absent", "created", "running", "absent", "running")


@pytest.fixture
def subreaper():
    with Subreaper() as s:
        yield s


def _works_or_one_line(p, what: str) -> None:
    if p.returncode == 0:
        return
    if what.endswith("exec") and p.returncode == 128 + 9 and not p.stderr:
        return  # the exec'd process was killed with the container: its status, as runc passes it on
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, f"{what}: {p.returncode} {p.stderr!r}"


def _lifecycle(pyrun, b: str, cid: str) -> None:
    for args in (("create", "-b", b, cid), ("start", cid)):
        p = pyrun(*args, timeout=60)
        assert p.returncode == 0, f"{args[0]} {cid}: {p.stderr}"
    assert valid_state(pyrun("state", cid, check=True).stdout, cid)["status"] == "running"
    pyrun("kill", cid, "KILL", check=True)
    for _ in range(500):
        if valid_state(pyrun("state", cid, check=True).stdout, cid)["status"] == "stopped":
            break
        time.sleep(0.01)
    p = pyrun("delete", cid, timeout=60)
    assert p.returncode == 0, f"delete {cid}: {p.stderr}"


def test_200_lifecycles_20_at_a_time(pyrun, bundle, subreaper, tmp_path):
    b = bundle(["sleep", "100"])
    snap = HostSnapshot(prefixes=(PREFIX,), watch=(tmp_path.parent,))
    t = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as pool:
        for f in [pool.submit(_lifecycle, pyrun, b, f"{PREFIX}life{i}") for i in range(LIFECYCLES)]:
            f.result()
    took = time.monotonic() - t
    assert pyrun.ids() == []
    assert subreaper.alive() == {}
    snap.assert_unchanged("200 lifecycles")
    print(f"{LIFECYCLES} lifecycles, {PARALLEL} at a time: {took:.1f} s")


def _commands(b: str, cid: str, rng) -> list[tuple]:
    # Creates and deletes weigh most: a create racing a delete --force and a second create
    # is what once orphaned an init (on the tree before create locked its ID, this mix
    # caught one in 2 runs of 3).
    cmds = ([("create", "-b", b, cid)] * 8 + [("start", cid)] * 2 + [("kill", cid, "KILL")] * 1
            + [("delete", "--force", cid)] * 6 + [("state", cid)] * 2 + [("exec", cid, "true")] * 1)
    rng.shuffle(cmds)
    return cmds


def _pid_ns(pid) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _strays(pyrun, cid: str, wait: float = Subreaper.EXIT_WAIT):
    """(the recorded state, processes in the container's cgroup that are not in its init's
    pid namespace); those a kill has just doomed get `wait` to die first."""
    deadline = time.monotonic() + wait
    while True:
        st = pyrun("state", cid)
        recorded = valid_state(st.stdout, cid) if st.returncode == 0 else None
        theirs = _pid_ns(recorded["pid"]) if recorded and recorded["pid"] else None
        strays = {pid: cmd for pid, cmd in processes_in((cid,)).items() if _pid_ns(pid) != theirs}
        if not strays or time.monotonic() > deadline:
            return recorded, strays
        time.sleep(0.05)


def test_20_commands_at_once_on_one_id(pyrun, bundle, subreaper, tmp_path):
    b = bundle(["sleep", "100"])
    snap = HostSnapshot(prefixes=(PREFIX,), watch=(tmp_path.parent,))
    cid = f"{PREFIX}one"
    rng = random.Random(SEED)
    outcomes = {}
    for r, start in enumerate(ROUND_STARTS):
        if start != "absent":
            pyrun("run" if start == "running" else "create", *(["-d"] if start == "running" else []),
                  "-b", b, cid, check=True)
        cmds = _commands(b, cid, rng)
        with ThreadPoolExecutor(len(cmds)) as pool:
            results = list(pool.map(lambda args: pyrun(*args, timeout=60), cmds))
        for args, p in zip(cmds, results):
            what = f"round {r}: {args[0]}"
            _works_or_one_line(p, what)
            if args[0] == "state" and p.returncode == 0:
                valid_state(p.stdout, cid)
            key = f"{args[0]} {'ok' if p.returncode == 0 else 'refused'}"
            outcomes[key] = outcomes.get(key, 0) + 1
        # No init outside the container the state records: every process in its cgroup
        # is in the recorded init's pid namespace (a second init would have its own).
        recorded, strays = _strays(pyrun, cid)
        assert not strays, f"round {r}: processes outside the recorded container ({recorded}): {strays}"
        d = pyrun("delete", "--force", cid, timeout=60)
        assert d.returncode == 0, f"round {r}: delete --force: {d.stderr}"
        assert pyrun.ids() == [], f"round {r}"
        left = subreaper.alive()
        assert not left, f"round {r}: processes left: {left}"
        snap.assert_unchanged(f"round {r}")
    print(f"{len(ROUND_STARTS)} rounds of {PARALLEL} commands on one ID: {outcomes}")
