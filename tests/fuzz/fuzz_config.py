"""Fuzz target: config.json as `pyrun create` reads and checks it, in-process, no container made.

    python -m tests.fuzz.fuzz_config [libFuzzer flags, e.g. -runs=20000]   (needs atheris: make fuzz)

An input is either the raw bytes of a config.json (first byte even: the JSON parser, the
size bound, the schema), or a recipe of edits to runc's default config (first byte odd:
the checks behind the schema). An edit replaces a value anywhere in the document with one
from a hostile vocabulary (NUL bytes, `..`, lone surrogates, huge and negative numbers,
values of the wrong type), drops a key, or adds a section the default lacks.

Each input goes through the real `create` (runtime.create.create) up to the moment it
would claim the container's ID: there `runtime.state.claim` is stopped (Accepted), so
nothing is ever made. That is every check create runs before touching the host: the
document's size, fastjson, the schema, process/hooks/mounts/cgroups/namespaces, and
runtime.validate.check.

The contract: an input is accepted, or refused with a PyrunError (the one line the CLI
prints). Any other exception escaping is a crash: atheris stops and keeps the input.
"""
import copy
import json
import os
import sys
import tempfile

from tests.fuzz.recipe import Recipe

HOSTILE = [
    0, -1, 1, 7, 2**31 - 1, 2**31, 2**32, 2**63, -2**63, 2**64, 10**30, 1.5, -0.0, 1e308,
    True, False, None, "", "/", ".", "..", "../../../..", "/../../etc", "/proc/self/fd/3", "/proc/1/root",
    "/sys/kernel", "/dev/null", "a\0b", "/mnt\0x", "\ud800", "é", "x" * 5000, "/" + "a" * 300,
    "line\nbreak", "\x1b[2J", "CAP_SYS_ADMIN", "RLIMIT_NOFILE", "rbind", "ro", "rro", "idmap", "nosymfollow",
    "tmpfs", "proc", "sysfs", "bind", "cgroup", "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "kernel.shmmax",
    "vm.swappiness", "net.ipv4.ip_forward", "fs.mqueue.msg_max", "a:b:c", "0-3", "LINUX32",
    [], {}, ["x"], [0], {"x": 1}, [{"type": "pid"}], {"path": "/x"}, [{"destination": "/x"}],
]
# Sections runc's default config lacks, so that their checks run too.
EXTRAS = {
    ("linux", "devices"): [{"path": "/dev/fuzz", "type": "c", "major": 1, "minor": 3}],
    ("linux", "sysctl"): {"kernel.msgmax": "8192"},
    ("linux", "resources"): {"memory": {"limit": 1 << 26}, "pids": {"limit": 10}, "cpu": {"shares": 512}},
    ("linux", "seccomp"): {"defaultAction": "SCMP_ACT_ALLOW",
                           "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]},
    ("linux", "uidMappings"): [{"containerID": 0, "hostID": 1000, "size": 1}],
    ("linux", "cgroupsPath"): "/fuzz/c1",
    ("linux", "personality"): {"domain": "LINUX"},
    ("linux", "timeOffsets"): {"monotonic": {"secs": 1}},
    ("linux", "rootfsPropagation"): "rslave",
    ("process", "scheduler"): {"policy": "SCHED_OTHER"},
    ("process", "ioPriority"): {"class": "IOPRIO_CLASS_BE", "priority": 4},
    ("process", "oomScoreAdj"): 100,
    ("process", "rlimits"): [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    ("process", "execCPUAffinity"): {"initial": "0"},
    ("process", "user", "additionalGids"): [1, 2],
    ("hooks",): {"createRuntime": [{"path": "/bin/true", "args": ["true"], "timeout": 1}]},
    ("domainname",): "fuzz.example",
    ("annotations",): {"org.example": "x"},
}
MAX_EDITS = 8
# What create's checks run, for atheris' coverage.
INSTRUMENTED = ("runtime.create", "runtime.container", "runtime.state", "runtime.process", "runtime.hooks",
                "runtime.rootfs", "runtime.paths", "runtime.namespaces", "runtime.validate", "runtime.cgroups",
                "runtime.cgroups.fields", "specs.fastjson", "specs.runtime", "specs._validator")


class Accepted(Exception):
    """create got as far as claiming the ID: every check passed."""


_BUNDLE = None


def _bundle() -> str:
    global _BUNDLE
    if _BUNDLE is None:
        _BUNDLE = tempfile.mkdtemp(prefix="pyrun-fuzz-config-")
        os.mkdir(os.path.join(_BUNDLE, "rootfs"))
    return _BUNDLE


def _stop_at_claim(*args, **kwargs):
    """Stands in for runtime.state.claim, whatever it takes: nothing past it runs."""
    raise Accepted()


def base_config() -> dict:
    from specs.runtime import default_config
    return default_config()


def _paths(doc):
    from tests.support.jsontree import paths
    return [p for p in paths(doc) if p]


def _set(doc: dict, at: tuple, value) -> None:
    """doc[at[0]][at[1]]... = value, making (or replacing) the dicts on the way."""
    for k in at[:-1]:
        if not isinstance(doc.get(k), dict):
            doc[k] = {}
        doc = doc[k]
    doc[at[-1]] = value


def edited(recipe: Recipe) -> dict:
    """runc's default config after the recipe's edits."""
    cfg = base_config()
    for _ in range(1 + recipe.below(MAX_EDITS)):
        op = recipe.below(4)
        if op == 0:
            where = recipe.pick(sorted(EXTRAS))
            _set(cfg, where, copy.deepcopy(EXTRAS[where]))
            continue
        where = recipe.pick(_paths(cfg))
        parent = cfg
        for k in where[:-1]:
            parent = parent[k]
        if op == 1:
            parent[where[-1]] = copy.deepcopy(recipe.pick(HOSTILE))
        elif op == 2 and isinstance(parent, dict):
            del parent[where[-1]]
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(parent[where[-1]]))
        elif isinstance(parent[where[-1]], str):
            parent[where[-1]] += recipe.pick(["\0", "/..", "/", "\ud800", "x" * 300, "\n"])
    return cfg


def document(data: bytes) -> bytes:
    """The config.json bytes an input stands for."""
    recipe = Recipe(data)
    if recipe.byte() % 2 == 0:
        return recipe.rest()
    return json.dumps(edited(recipe)).encode()


def check(data: bytes) -> None:
    """One input through create's checks: accepted, or refused with a PyrunError."""
    from runtime import Container, state
    from runtime.errors import PyrunError
    bundle = _bundle()
    with open(os.path.join(bundle, "config.json"), "wb") as f:
        f.write(document(data))
    real_claim = state.claim
    state.claim = _stop_at_claim
    try:
        Container.create("fuzz", bundle, root=os.path.join(bundle, "state"), console_socket="fuzz.sock")
    except (Accepted, PyrunError):
        pass
    finally:
        state.claim = real_claim
    assert not os.path.exists(os.path.join(bundle, "state")), "create made its state root"


SEEDS = [
    b"\x00" + json.dumps(base_config()).encode(),
    b"\x00{}",
    b"\x00" + b"[" * 2000,
    b'\x00{"ociVersion": "1.0.2", "process": {"args": ["sh"], "cwd": "/"}, "root": {"path": "rootfs"}}',
    b"\x00\xff\xfe{}",
    b"\x01",
    b"\x01\x07\x00\x00\x00\x10\x00\x01\x00\x20\x00\x02",
    b"\x03" + bytes(range(1, 64)),
    b"\x05" + bytes(range(255, 128, -3)),
]


def main(argv: list[str]) -> int:
    import atheris
    import importlib
    with atheris.instrument_imports(include=["runtime", "specs"]):
        for name in INSTRUMENTED:  # create imports most of them lazily: load them here, instrumented
            importlib.import_module(name)
    corpus = tempfile.mkdtemp(prefix="pyrun-fuzz-config-seeds-")
    for i, seed in enumerate(SEEDS):
        with open(os.path.join(corpus, f"seed{i}"), "wb") as f:
            f.write(seed)
    atheris.Setup([argv[0], *argv[1:], corpus], check)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
