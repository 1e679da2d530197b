"""Runtime benchmarks: pyrun against runc and crun, on busybox bundles, as root.

Two settings. On the host (run_all): pyrun against runc, each as an orchestrator
calls it here, plus crun for `run` only through the old per-call wrapper (its
median subtracted, labelled so). In one private mount namespace without the
cgroup2 mount (run_samens, bench/samens.py): pyrun, crun and runc side by side,
nothing but the runtime timed.

Every runtime gets a private --root under the work dir; every container is
deleted (and its init reaped) before the next benchmark, also on failure.
"""
from __future__ import annotations

import itertools
import json
import os
import statistics
import sys
import time

from bench.measure import Bench, BenchError, interleave, proc_memory_kib, reap_zombies, wait_exit
from bench.measure import run as _run
from bench.measure import run_many as _run_many
from bench.runtimes import WRAPPER, Runtime

# No runtime command here should take seconds: a hang (seen: a pyrun init stuck in a
# futex) fails its step after this long instead of stalling the whole bench.
TIMEOUT = 30.0

# The interpreter pyrun runs on, bare: the floor every pyrun command pays (issue 21).
FLOOR = "floor"
FLOOR_ARGV = [sys.executable, "-I", "-S", "-c", "pass"]

# What Podman 4.3 sends for `podman run --memory 64m --memory-swap 128m --pids-limit 100
# --cpu-shares 512 --cpu-quota 50000 --cpu-period 100000` (captured from its config.json
# on this machine). Podman itself sends only the deny-all device rule; the allow entries
# are the default list runtimes apply on top of it (runc's DefaultAllowedDevices),
# spelled out as a caller that passes them does, so each rule reaches the kernel.
PODMAN_RESOURCES = {
    "memory": {"limit": 64 << 20, "swap": 128 << 20},
    "pids": {"limit": 100},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000},
    "devices": [{"allow": False, "access": "rwm"}] + [
        {"allow": True, "type": t, "major": major, "minor": minor, "access": access}
        for t, major, minor, access in (
            ("c", None, None, "m"), ("b", None, None, "m"),
            ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"),
            ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),
            ("c", 136, None, "rwm"), ("c", 10, 200, "rwm"))],
}
for _rule in PODMAN_RESOURCES["devices"]:  # a wildcard is an absent major/minor
    for _k in ("major", "minor"):
        if _k in _rule and _rule[_k] is None:
            del _rule[_k]


def run(argv, **kw):
    kw.setdefault("timeout", TIMEOUT)
    return _run(argv, **kw)


def run_many(argvs):
    return _run_many(argvs, timeout=2 * TIMEOUT)


_ids = itertools.count()


def _cid(rt: Runtime) -> str:
    return f"bench-{rt.name}-{os.getpid()}-{next(_ids)}"


def _real(rts: list[Runtime]) -> list[Runtime]:
    return [rt for rt in rts if not rt.fake]


def _pair(rts: list[Runtime]) -> list[Runtime]:
    """The runtimes that run as themselves here (not through the old crun wrapper)."""
    return [rt for rt in rts if not rt.fake and not rt.wrapped]


OLD_CRUN = "crun, old method (wrapper median subtracted)"
OLD_CRUN_RAW = "crun, old method (raw, with the wrapper)"


def _crun_adjust(bench: Bench) -> None:
    """The old method: crun − median(wrapper alone, same benchmark), under labelled names."""
    if "crun" not in bench.values or WRAPPER not in bench.values:
        return
    cost = statistics.median(bench.values[WRAPPER])
    raw = bench.values.pop("crun")
    bench.values[OLD_CRUN] = [v - cost for v in raw]
    bench.values[OLD_CRUN_RAW] = raw
    bench.ratios = [(a, OLD_CRUN if b == "crun" else b) for a, b in bench.ratios]
    bench.notes.append(f"{OLD_CRUN}: each crun call ran as `unshare -m sh -c 'umount … && exec crun …'`; "
                       f"the wrapper alone ({WRAPPER}, same rounds) has median {cost * 1000:.1f} ms, "
                       "subtracted from every crun value. The same-namespace pairing (`-ns` benchmarks) "
                       "replaces this figure; it is kept for comparison with earlier runs.")


def _peer_ratios(names, suffix: str = "") -> list[tuple[str, str]]:
    return [(f"pyrun{suffix}", f"{peer}{suffix}") for peer in ("runc", "crun")
            if "pyrun" in names and peer in names]


def with_resources(bundle: str, resources: dict) -> str:
    from tests.support.bundle import read_config, write_config
    config = read_config(bundle)
    config["linux"]["resources"] = json.loads(json.dumps(resources))
    write_config(bundle, config)
    return bundle


def bench_run(rts: list[Runtime], bundle: str, n: int, name: str = "run",
              what: str = "run /bin/true", where: str = "", floor: bool = False) -> list[Bench]:
    """`run` of the bundle in the foreground: the whole runtime process, start to exit;
    its wall time and its CPU time (user + sys of it and the children it reaped).
    floor=True adds the bare interpreter (FLOOR) to the same rounds."""
    fns = {rt.name: (lambda i, rt=rt: run(rt.cmd("run", "--bundle", bundle, _cid(rt)))) for rt in rts}
    if floor:
        fns[FLOOR] = lambda i: run(FLOOR_ARGV)
    samples = interleave(fns, n)
    names = [rt.name for rt in rts]
    ratios = _peer_ratios(names) + ([("pyrun", FLOOR)] if floor else [])
    wall = Bench(name, f"{what} (whole process, wall){where}", "s",
                 {k: [s.wall for s in v] for k, v in samples.items()}, list(ratios))
    cpu = Bench(f"{name}-cpu", f"{what} (CPU: user+sys of the runtime and the children it reaped){where}",
                "s", {k: [s.cpu for s in v] for k, v in samples.items() if not _is_old_crun(rts, k)},
                [r for r in ratios if not _is_old_crun(rts, r[1])])
    _crun_adjust(wall)
    return [wall, cpu]


def _is_old_crun(rts: list[Runtime], name: str) -> bool:
    return any(rt.name == name and (rt.wrapped or rt.fake) for rt in rts)


def bench_rss_run(rts: list[Runtime], bundle: str, rounds: int = 3) -> Bench:
    rss_runs = interleave({rt.name: (lambda i, rt=rt: run(rt.cmd("run", "--bundle", bundle, _cid(rt)),
                                                         rss=True).maxrss_kib)
                           for rt in rts}, rounds, warmup=0)
    return Bench("rss-run", "peak RSS of `run /bin/true` (runtime + the children it reaped)", "KiB",
                 rss_runs, _peer_ratios(list(rss_runs)))


COMMANDS = ("create", "start", "state", "kill", "delete", "list")


def bench_commands(rts: list[Runtime], true_bundle: str, sleep_bundle: str, count: int, n: int
                   ) -> list[Bench]:
    """With `count` created containers present per runtime: n rounds of create → start →
    state → kill 9 → (exit) → delete, then list, each command timed; beside each of
    pyrun's commands the bare interpreter (FLOOR), measured right before or after it
    (alternating by round), for the per-pair ratio command / floor. Also the memory of
    the present containers' inits, and the peak RSS of `create`."""
    work = os.path.dirname(true_bundle)
    ids: dict[str, list[str]] = {}
    init_rss = Bench("init-rss", "container init while `created`: VmRSS", "KiB")
    init_hwm = Bench("init-hwm", "container init while `created`: VmHWM (peak)", "KiB")
    create_rss = Bench("rss-create", "peak RSS of `create` (the runtime process, via bench/maxrss.c)", "KiB")

    def timed(rt: Runtime, i: int, out: dict, cpu: dict, cmd: str, *args: str) -> None:
        def floor():
            s = run(FLOOR_ARGV)
            out[f"{FLOOR}:{cmd}"], cpu[f"{FLOOR}:{cmd}"] = s.wall, s.cpu
        if rt.name == "pyrun" and i % 2:
            floor()
        s = run(rt.cmd(*args))
        out[f"{rt.name}:{cmd}"], cpu[f"{rt.name}:{cmd}"] = s.wall, s.cpu
        if rt.name == "pyrun" and not i % 2:
            floor()

    def cycle(rt: Runtime, i: int) -> tuple[dict, dict]:
        cid, out, cpu = _cid(rt), {}, {}
        pidfile = os.path.join(work, f"{cid}.pid")
        timed(rt, i, out, cpu, "create", "create", "--bundle", sleep_bundle, "--pid-file", pidfile, cid)
        timed(rt, i, out, cpu, "start", "start", cid)
        timed(rt, i, out, cpu, "state", "state", cid)
        timed(rt, i, out, cpu, "kill", "kill", cid, "9")
        with open(pidfile) as f:
            wait_exit(int(f.read()))
        os.unlink(pidfile)
        timed(rt, i, out, cpu, "delete", "delete", cid)
        timed(rt, i, out, cpu, "list", "list")
        return out, cpu

    try:
        for rt in rts:
            ids[rt.name] = []
            for j in range(count):
                cid = _cid(rt)
                pidfile = os.path.join(work, f"{cid}.pid")
                s = run(rt.cmd("create", "--bundle", true_bundle, "--pid-file", pidfile, cid), rss=j < 5)
                ids[rt.name].append(cid)
                if s.maxrss_kib:
                    create_rss.values.setdefault(rt.name, []).append(s.maxrss_kib)
                if j < 10:
                    with open(pidfile) as f:
                        rss, hwm = proc_memory_kib(int(f.read()))
                    init_rss.values.setdefault(rt.name, []).append(rss)
                    init_hwm.values.setdefault(rt.name, []).append(hwm)
                os.unlink(pidfile)
        samples = interleave({rt.name: (lambda i, rt=rt: cycle(rt, i)) for rt in rts}, n)
        title = f"create / start / state / kill / delete / list, {count} containers present (wall per command)"
        wall = Bench("commands", title, "s")
        cpu = Bench("commands-cpu", title.replace("wall", "CPU: user+sys"), "s")
        for name, outs in samples.items():
            for key in sorted(outs[0][0], key=lambda k: (k.startswith(FLOOR), COMMANDS.index(k.split(":")[1]))):
                wall.values[key] = [o[0][key] for o in outs]
                cpu.values[key] = [o[1][key] for o in outs]
        names = [rt.name for rt in rts]
        for b in (wall, cpu):
            for c in COMMANDS:
                b.ratios += _peer_ratios(names, f":{c}")
                if c != "create" and "pyrun" in names:
                    b.ratios.append((f"pyrun:{c}", f"{FLOOR}:{c}"))
        wall.notes.append(f"{FLOOR}: `{' '.join(FLOOR_ARGV)}`, the interpreter pyrun runs on, measured "
                          "right before or after each pyrun command (alternating by round); pyrun:X / "
                          "floor:X is the median of those pairs")
        for b in (init_rss, init_hwm, create_rss):
            b.ratios = _peer_ratios(list(b.values))
        init_rss.notes.append("read from /proc/PID/status of the pid in --pid-file, first 10 containers; "
                              "runc's is `runc init` (Go), crun's the forked crun child, pyrun's the cloned Python process")
        return [wall, cpu, init_rss, init_hwm, create_rss]
    finally:
        for rt in rts:
            for cid in ids.get(rt.name, []):
                run(rt.cmd("delete", "--force", cid), check=False)
        reap_zombies()


def bench_create_resources(rts: list[Runtime], plain: str, limited: str, n: int) -> Bench:
    """`create` with Podman's resource block and without it, interleaved; each container
    is deleted (untimed) after its create."""
    def create(rt: Runtime, bundle: str) -> float:
        cid = _cid(rt)
        try:
            return run(rt.cmd("create", "--bundle", bundle, cid)).wall
        finally:
            run(rt.cmd("delete", "--force", cid), check=False)
    fns = {}
    for rt in rts:
        fns[rt.name] = lambda i, rt=rt: create(rt, limited)
        fns[f"{rt.name}, no resources"] = lambda i, rt=rt: create(rt, plain)
    samples = interleave(fns, n)
    reap_zombies()
    names = [rt.name for rt in rts]
    bench = Bench("create-resources", "`create` with the resources block Podman sends (wall)", "s", samples,
                  _peer_ratios(names) + _peer_ratios(names, ", no resources")
                  + [(rt.name, f"{rt.name}, no resources") for rt in rts])
    bench.notes.append("resources: " + json.dumps(PODMAN_RESOURCES, separators=(",", ":")))
    return bench


def bench_exec(rts: list[Runtime], sleep_bundle: str, n: int, name: str = "exec", where: str = "") -> Bench:
    """`exec /bin/true` into a running container."""
    bench = Bench(name, f"exec /bin/true into a running container (wall){where}", "s")
    usable = []
    for rt in rts:
        if rt.has_exec():
            usable.append(rt)
        else:
            bench.skipped[rt.name] = f"{rt.name}: not implemented (`{rt.name} exec --help` exits non-zero)"
    ids = {}
    try:
        for rt in usable:
            cid = _cid(rt)
            run(rt.cmd("run", "--detach", "--bundle", sleep_bundle, cid))
            ids[rt.name] = cid
        samples = interleave({rt.name: (lambda i, rt=rt: run(rt.cmd("exec", ids[rt.name], "/bin/true")).wall)
                              for rt in usable}, n)
        bench.values = samples
        bench.ratios = _peer_ratios(list(samples))
        return bench
    finally:
        for rt in usable:
            if rt.name in ids:
                run(rt.cmd("delete", "--force", ids[rt.name]), check=False)
        reap_zombies()


def bench_sequential(rts: list[Runtime], bundle: str, count: int, rounds: int) -> Bench:
    """`count` runs of /bin/true one after another: the wall time of the whole series."""
    def series(rt: Runtime) -> float:
        t0 = time.perf_counter()
        for _ in range(count):
            run(rt.cmd("run", "--bundle", bundle, _cid(rt)))
        return time.perf_counter() - t0
    samples = interleave({rt.name: (lambda i, rt=rt: series(rt)) for rt in rts}, rounds, warmup=0)
    bench = Bench("sequential", f"{count} sequential `run /bin/true` (wall of the series)", "s",
                  samples, _peer_ratios(list(samples)))
    bench.notes.append("no warm-up round of its own: the `run` benchmark just before warmed every runtime")
    return bench


def bench_concurrent(rts: list[Runtime], bundle: str, count: int, rounds: int) -> list[Bench]:
    """`count` runs of /bin/true started at once: the wall time until the last exits, and
    the CPU time all of them used (the batch's children, reaped: RUSAGE_CHILDREN)."""
    import resource

    def batch(rt: Runtime) -> tuple[float, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = run_many([rt.cmd("run", "--bundle", bundle, _cid(rt)) for _ in range(count)])
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    samples = interleave({rt.name: (lambda i, rt=rt: batch(rt)) for rt in rts}, rounds, warmup=1)
    reap_zombies()
    what = f"{count} concurrent `run /bin/true`"
    return [Bench("concurrent", f"{what} (wall until all exited)", "s",
                  {k: [w for w, _ in v] for k, v in samples.items()}, _peer_ratios(list(samples))),
            Bench("concurrent-cpu", f"{what} (CPU: user+sys of all of them)", "s",
                  {k: [c for _, c in v] for k, v in samples.items()}, _peer_ratios(list(samples)))]


def _bundles(workdir: str) -> dict[str, str]:
    from tests.support.bundle import make_bundle
    # Each bundle has its own rootfs directory: runc refuses a rootfs that is a symlink.
    return {"true": make_bundle(os.path.join(workdir, "bundle-true"), args=("/bin/true",)),
            "sleep": make_bundle(os.path.join(workdir, "bundle-sleep"), args=("sleep", "3600")),
            "true-res": with_resources(make_bundle(os.path.join(workdir, "bundle-true-res"),
                                                   args=("/bin/true",)), PODMAN_RESOURCES)}


def _steps(steps, rts: list[Runtime], log, prefix: str) -> tuple[list[Bench], list[str]]:
    out: list[Bench] = []
    failures: list[str] = []
    for label, step in steps:
        log(f"{prefix}: {label} …")
        for attempt in (1, 2):
            try:
                out += list(step())
                break
            except BenchError as e:
                # The tree under test is shared and edited live: one retry after a pause
                # rides out a half-saved module; a second failure is reported.
                log(f"{prefix}: {label} FAILED (attempt {attempt}): {e}")
                if attempt == 2:
                    failures.append(f"FAILED {prefix} {label}: {e}")
                else:
                    time.sleep(20)
            finally:
                for rt in rts:
                    rt.force_delete_all()
                reap_zombies()
    return out, failures


def run_all(rts: list[Runtime], workdir: str, quick: bool, log) -> tuple[list[Bench], list[str]]:
    """The host's benchmarks: pyrun and runc as they run here (crun, through the old
    wrapper, for `run` only). `log` prints progress lines. A failed step is reported
    in the returned notes and the others still run."""
    b = _bundles(workdir)
    pair = _pair(rts)
    # Rounds: `run` carries the headline targets (each round ~0.1 s), the rest 50; on this
    # shared machine fewer left the ratios moving by ±0.1 from one run to the next.
    n = 8 if quick else 50
    steps = [
        ("run /bin/true", lambda: bench_run(rts, b["true"], n if quick else 200, floor=True)),
        ("peak RSS of run", lambda: [bench_rss_run(pair, b["true"])]),
        ("run /bin/true with Podman's resources", lambda: bench_run(
            pair, b["true-res"], n, "run-resources", "run /bin/true with Podman's resources")),
        ("create with Podman's resources", lambda: [bench_create_resources(pair, b["true"], b["true-res"], n)]),
        ("commands with many containers present", lambda: bench_commands(
            pair, b["true"], b["sleep"], 20 if quick else 100, n)),
        ("exec", lambda: [bench_exec(pair, b["sleep"], n)]),
        ("sequential lifecycles", lambda: [bench_sequential(pair, b["true"], 50, 1 if quick else 2)]),
        ("concurrent lifecycles", lambda: bench_concurrent(pair, b["true"], 20, 2 if quick else 10)),
    ]
    return _steps(steps, rts, log, "runtime")


NS_SUFFIX = "-ns"
NS_WHERE = ", pyrun/crun/runc in one mount namespace without the cgroup2 mount"


def run_samens(rts: list[Runtime], workdir: str, quick: bool, log) -> tuple[list[Bench], list[str]]:
    """Run inside bench/samens.py's namespace: pyrun, crun and runc side by side (crun
    unwrapped), so the crun ratios carry no wrapper."""
    b = _bundles(workdir)
    n = 8 if quick else 50
    steps = [
        ("run /bin/true", lambda: bench_run(rts, b["true"], n if quick else 200, "run" + NS_SUFFIX,
                                            where=NS_WHERE, floor=True)),
        ("run /bin/true with Podman's resources", lambda: bench_run(
            rts, b["true-res"], n if quick else 50, "run-resources" + NS_SUFFIX,
            "run /bin/true with Podman's resources", NS_WHERE)),
        ("exec", lambda: [bench_exec(rts, b["sleep"], n, "exec" + NS_SUFFIX, NS_WHERE)]),
    ]
    return _steps(steps, rts, log, "runtime (one namespace)")
