"""The callers' view (issue 18): `podman run --rm IMG true` and `ctr run --rm IMG ID true`
with pyrun, runc and crun as the OCI runtime, interleaved: the end-to-end latency an
orchestrator sees, its own work included.

The Podman and containerd are the orchestrator tests' own harnesses
(tests/orchestrators/: a private --root/--runroot/--tmpdir, cgroupfs, the docs'
containers.conf with default_ulimits; a containerd with its own root, state and socket),
so what is measured is what the tests drive. Two settings: the host as it is (crun
refuses this hybrid cgroup host under both callers: its error is reported), and, through
bench/samens.py, the caller itself started in a mount namespace without the cgroup2
mount, where all three runtimes run.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from bench.measure import Bench, BenchError, interleave
from bench.measure import run as _run
from bench.runtimes import PYRUN

TIMEOUT = 60.0
NAMESPACE = "or-bench"  # containerd namespace; "or-" so the harness's teardown removes its cgroup parent


def runtimes() -> dict[str, str]:
    found = {"pyrun": PYRUN}
    for name in ("runc", "crun"):
        path = shutil.which(name)
        if path:
            found[name] = path
    return found


def _usable(argv_of, rts: dict[str, str], env: dict | None, bench: Bench) -> dict[str, str]:
    """The runtimes whose first call succeeds (also the caller's warm-up); the others
    are listed as skipped with the caller's last error line."""
    ok = {}
    for name, path in rts.items():
        try:
            _run(argv_of(name, path, "probe"), env=env, timeout=TIMEOUT)
            ok[name] = path
        except BenchError as e:
            bench.skipped[name] = f"fails under this caller here: {e.detail}"
    return ok


def _timed(bench: Bench, argv_of, rts: dict[str, str], env: dict | None, n: int) -> Bench:
    ok = _usable(argv_of, rts, env, bench)
    if "pyrun" not in ok:
        raise BenchError(f"{bench.title}: pyrun fails: {bench.skipped.get('pyrun')}")
    counter = iter(range(10 ** 6))
    bench.values = interleave({name: (lambda i, name=name, path=path: _run(
        argv_of(name, path, str(next(counter))), env=env, timeout=TIMEOUT).wall) for name, path in ok.items()}, n)
    bench.ratios = [("pyrun", peer) for peer in ("runc", "crun") if peer in ok]
    return bench


def bench_podman(rts: dict[str, str], n: int, where: str = "") -> Bench:
    from tests.orchestrators import podman as harness
    # Podman refuses a run root longer than 50 characters: a short temp dir of its own.
    pm = harness.Podman(tempfile.mkdtemp(prefix="pyrun-bench-pm-", dir="/tmp"), PYRUN)
    try:
        image = pm.import_busybox()
        bench = Bench("podman-run" + ("-ns" if where else ""), f"`podman run --rm IMG true` (wall){where}", "s")
        bench.notes.append("Podman 4.3 + conmon, cgroupfs, file events, a store of its own, the docs' "
                           "containers.conf (tests/orchestrators/podman.py); default network")
        return _timed(bench, lambda name, path, tag: [*pm.base, "--runtime", path, "run", "--rm", image, "true"],
                      rts, pm.env(), n)
    finally:
        pm.teardown()


def bench_ctr(top: str, rts: dict[str, str], n: int, where: str = "") -> Bench:
    from tests.orchestrators import containerd as harness
    os.makedirs(top, exist_ok=True)
    c = harness.Containerd(top, PYRUN, rts.get("runc"))
    try:
        c.import_images(NAMESPACE)
        bench = Bench("ctr-run" + ("-ns" if where else ""), f"`ctr run --rm IMG ID true` (wall){where}", "s")
        bench.notes.append("containerd 1.6, io.containerd.runc.v2 shim with --runc-binary, a daemon of its own "
                           "(tests/orchestrators/containerd.py)")
        argv = lambda name, path, tag: ["ctr", "--address", c.socket, "--namespace", NAMESPACE, "run",  # noqa: E731
                                        "--rm", "--runtime", harness.SHIM, "--runc-binary", path,
                                        harness.IMAGE, f"bench-{name}-{os.getpid()}-{tag}", "true"]
        return _timed(bench, argv, rts, None, n)
    finally:
        c.teardown()


def _steps(steps, log, prefix: str) -> tuple[list[Bench], list[str]]:
    out, notes = [], []
    for label, step in steps:
        log(f"{prefix}: {label} …")
        try:
            out.append(step())
        except (BenchError, AssertionError, OSError) as e:
            log(f"{prefix}: {label} FAILED: {e}")
            notes.append(f"FAILED {prefix} {label}: {e}")
    return out, notes


def missing() -> str | None:
    from tests.orchestrators import containerd, podman
    return podman.missing() or containerd.missing()


def run_all(workdir: str, quick: bool, log, where: str = "") -> tuple[list[Bench], list[str]]:
    """Both callers with every runtime installed; `where` set: inside the private namespace."""
    rts = runtimes()
    n = 5 if quick else 25
    prefix = "callers" + (" (one namespace)" if where else "")
    return _steps([("podman run --rm", lambda: bench_podman(rts, n, where)),
                   ("ctr run --rm", lambda: bench_ctr(os.path.join(workdir, "containerd"), rts, n, where))],
                  log, prefix)
