"""Random but type-correct configs through `pyrun create`: it works, or it fails with one line.

The schema rejects wrong types before anything happens (test_errors.py), so these
mutations keep every value's JSON type and change its content: huge and negative
numbers, paths that climb out, empty and very long strings, control characters,
dropped keys, repeated list items. Whatever create makes of them, the contract
holds: exit 0 and a container in state `created`, or exit 1 with exactly one line
on stderr and no state directory, cgroup or process left behind. A fixed seed
keeps each run the same; a failure prints the config that broke it.
"""
import copy
import json
import os
import random

from tests.support.bundle import write_config
from tests.support.jsontree import paths

CASES = 120
SEED = 1  # one that, among others, once caught a newline splitting the error line

INTS = [0, -1, 1, 7, 255, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1]
STRINGS = ["", "x", "/", "..", "../../../etc", "/proc/self/root/etc", "a" * 4097, "line\nbreak", "é",
           "/dev/null", "rw", "ro", "bind", "rbind", "tmpfs", "nosuid", "a=b", "CAP_SYS_ADMIN", "/sys",
           "\x1b[2J", "RLIMIT_NOFILE"]
# Optional sections the default config lacks, so that their code runs too.
EXTRAS = {
    ("linux", "devices"): [{"path": "/dev/fuzz", "type": "c", "major": 1, "minor": 3}],
    ("linux", "sysctl"): {"kernel.msgmax": "8192"},
    ("process", "scheduler"): {"policy": "SCHED_OTHER"},
    ("process", "ioPriority"): {"class": "IOPRIO_CLASS_BE", "priority": 4},
    ("process", "oomScoreAdj"): 100,
    ("process", "user", "additionalGids"): [1, 2],
    ("linux", "seccomp"): {"defaultAction": "SCMP_ACT_ALLOW",
                           "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]},
    ("linux", "timeOffsets"): {"monotonic": {"secs": 1}},
    ("domainname",): "fuzz.example",
}


def _get(o, at):
    for k in at:
        o = o[k]
    return o


def _set(o, at, value):
    for k in at[:-1]:
        o = o.setdefault(k, {}) if isinstance(o, dict) else o[k]
    o[at[-1]] = value


def _mutated(value, rng):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice(INTS)
    if isinstance(value, str):
        return rng.choice(STRINGS + [value + rng.choice(STRINGS), value * 2])
    if isinstance(value, list):
        value = list(value)
        if value and rng.random() < 0.5:
            value.append(copy.deepcopy(rng.choice(value)))
        elif value:
            value.pop(rng.randrange(len(value)))
        return value
    if isinstance(value, dict) and value:
        value = dict(value)
        value.pop(rng.choice(sorted(value)))
    return value


def _configs(base: dict):
    rng = random.Random(SEED)
    for _ in range(CASES):
        cfg = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.3:
                where = rng.choice(sorted(EXTRAS))
                _set(cfg, where, copy.deepcopy(EXTRAS[where]))
            where = rng.choice([p for p in paths(cfg) if p])
            _set(cfg, where, _mutated(_get(cfg, where), rng))
        yield cfg


def _leftover_cgroup(cid: str) -> str | None:
    for d in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.isdir(os.path.join(d, cid)):
            return os.path.join(d, cid)
    return None


def test_create_works_or_fails_with_one_line_and_leaves_nothing(pyrun, bundle):
    b = bundle(["true"], private_rootfs=True)
    with open(os.path.join(b, "config.json")) as f:
        base = json.load(f)
    outcomes = {"created": 0, "refused": 0}
    for i, cfg in enumerate(_configs(base)):
        cid = f"fuzz{i}"
        write_config(b, cfg)
        p = pyrun("create", "-b", b, cid)
        case = f"case {i}: {json.dumps(cfg)[:3000]}"
        if p.returncode == 0:
            outcomes["created"] += 1
            assert json.loads(pyrun("state", cid, check=True).stdout)["status"] == "created", case
            pyrun("delete", "--force", cid, check=True)
        else:
            outcomes["refused"] += 1
            lines = p.stderr.strip().splitlines()
            assert p.returncode == 1 and len(lines) == 1, f"{case}\nstderr: {p.stderr!r}"
            assert "Traceback" not in p.stderr and "\x1b" not in p.stderr, case
        assert pyrun.ids() == [], case
        assert _leftover_cgroup(cid) is None, case
    # Both sides of the contract were exercised, not one of them only.
    assert outcomes["created"] >= CASES // 10 and outcomes["refused"] >= CASES // 10, outcomes
