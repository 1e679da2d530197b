"""Smoke tests of the bench harness: its statistics, its target verdicts, the private
namespace it pairs crun in, and one tiny real measurement per kind. No timing
assertions: these check the harness, not speed."""
import json
import os
import shutil

import pytest

from bench import callers, measure, report, runtime, runtimes, samens
from bench.measure import Bench, Ratio, Summary


def _root():
    if os.getuid() != 0:
        pytest.skip("needs root: real namespaces and containers")


def test_summary_and_ratio_are_per_pair():
    assert Summary.of([3.0, 1.0, 2.0]) == Summary(2.0, 1.0, 3.0, 3)
    # A is twice B in every round, whatever the drift between rounds.
    r = Ratio.of([2.0, 20.0, 200.0], [1.0, 10.0, 100.0])
    assert (r.median, r.min, r.max) == (2.0, 2.0, 2.0)
    assert r.of_medians == 2.0
    with pytest.raises(ValueError):
        Ratio.of([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        Summary.of([])


def test_interleave_rotates_and_drops_warmup():
    calls = []
    out = measure.interleave({n: (lambda i, n=n: calls.append((i, n)) or i) for n in "ABC"}, n=2, warmup=1)
    assert calls == [(0, "A"), (0, "B"), (0, "C"), (1, "B"), (1, "C"), (1, "A"),
                     (2, "C"), (2, "A"), (2, "B")]
    assert out == {"A": [1, 2], "B": [1, 2], "C": [1, 2]}


def test_targets_met_missed_unmeasured_and_reported():
    ns = Bench("run-ns", "run", "s", {"pyrun": [0.050, 0.060], "crun": [0.040, 0.040],
                                      "runc": [0.100, 0.100]})
    cmds = Bench("commands", "c", "s", {"pyrun:state": [0.012, 0.012], "floor:state": [0.010, 0.010]})
    init = Bench("init-rss", "init", "KiB", {"pyrun": [10 * 1024, 10 * 1024]})
    exe = Bench("exec", "exec", "s", skipped={"pyrun": "pyrun: not implemented"})
    pm = Bench("podman-run", "podman", "s", {"pyrun": [0.3, 0.3], "runc": [0.3, 0.3]},
               skipped={"crun": "fails under this caller here: hybrid"})
    fl = Bench("launcher", "launcher", "s", {"state, copy with pyrun-launcher (sealed)": [0.0102, 0.0104],
                                             "state, copy without it (not sealed)": [0.0100, 0.0100]})
    rows = {r["target"]: r for r in report.evaluate({"run-ns": ns, "commands": cmds, "init-rss": init,
                                                    "exec": exe, "podman-run": pm, "launcher": fl})}
    assert rows["`run /bin/true` ≤ 1.0× crun, wall (one namespace)"]["verdict"].startswith("**missed** by 38%")
    assert rows["`run /bin/true` ≤ 0.85× runc, wall (one namespace)"]["verdict"].startswith("**met**")
    assert rows["`state` ≤ 1.25× the bare interpreter"]["verdict"].startswith("**met** (4% under)")
    assert rows["init while `created` ≤ 15 MiB RSS"]["verdict"].startswith("**met**")
    assert rows["`exec /bin/true` ≤ 0.7× runc"]["measured"] == "pyrun: pyrun: not implemented; runc not measured"
    assert rows["`podman run --rm IMG true` vs crun (host)"]["measured"] == "crun: fails under this caller here: hybrid"
    assert rows["`podman run --rm IMG true` vs runc (host)"]["verdict"] == "reported (no limit)"
    launcher = rows["pyrun-launcher's read-only exec, cost on `state` (sealed − not sealed copy)"]
    assert launcher["measured"].startswith("+0.3 ms") and launcher["verdict"] == "reported (no limit)"
    assert rows["no-change re-pull (Debian) ≤ 0.3 s"]["verdict"] == "not measured"


def test_run_reports_wall_cpu_and_rss_of_real_processes():
    s = measure.run(["/bin/sh", "-c", "exit 0"])
    assert s.wall > 0 and s.returncode == 0
    # CPU is the child's and what it reaped: a grandchild's busy loop counts.
    busy = measure.run(["/bin/sh", "-c", "python3 -c 'sum(range(3_000_000))'; exit 0"])
    assert busy.cpu > 0
    with pytest.raises(measure.BenchError, match="exit 3: boom"):
        measure.run(["/bin/sh", "-c", "echo boom >&2; exit 3"])
    assert measure.run_many([["/bin/true"], ["/bin/sh", "-c", "exit 0"]]) > 0
    with pytest.raises(measure.BenchError, match="still running"):
        measure.run_many([["sleep", "5"]], timeout=0.3)
    if not shutil.which("gcc"):
        pytest.skip("gcc not installed: the maxrss launcher cannot be built")
    small = measure.run(["/bin/true"], rss=True).maxrss_kib
    # 64 MiB touched by a child must show in its own peak, and /bin/true must not carry ours.
    big = measure.run(["python3", "-c", "b = bytearray(64 << 20)"], rss=True).maxrss_kib
    assert 0 < small < 8 * 1024 and big > 64 * 1024


def _inside():
    return (samens.mount_propagation(runtimes.HYBRID_CGROUP2), os.stat("/proc/self/ns/mnt").st_ino,
            runtimes.available("/nonexistent", wrapped_crun=False)[0])


def test_private_namespace_hides_cgroup2_there_only():
    _root()
    if not runtimes.hybrid_host():
        pytest.skip(f"no cgroup2 mount at {runtimes.HYBRID_CGROUP2}: nothing to hide")
    hidden, ns, rts = samens.run(_inside)
    assert hidden is None  # gone inside …
    assert ns != os.stat("/proc/self/ns/mnt").st_ino
    assert samens.mount_propagation(runtimes.HYBRID_CGROUP2) is not None  # … still here
    assert runtimes.host_cgroup2_still_mounted()
    assert not any(rt.wrapped or rt.fake for rt in rts)  # crun runs as itself in there


def _boom():
    raise ValueError("from the child")


def test_private_namespace_carries_errors_back():
    _root()
    with pytest.raises(samens.NamespaceError, match="ValueError: from the child"):
        samens.run(_boom)


def test_caller_probe_skips_a_failing_runtime_with_its_error():
    bench = Bench("c", "caller", "s")
    argv = lambda name, path, tag: ["/bin/sh", "-c", path]  # noqa: E731
    callers._timed(bench, argv, {"pyrun": "exit 0", "crun": "echo 'hybrid: no' >&2; exit 1"}, None, 2)
    assert len(bench.values["pyrun"]) == 2 and "crun" not in bench.values
    assert bench.skipped["crun"] == "fails under this caller here: exit 1: hybrid: no"
    assert bench.ratios == []
    with pytest.raises(measure.BenchError, match="pyrun fails"):
        callers._timed(Bench("c", "caller", "s"), argv, {"pyrun": "exit 1"}, None, 1)


def test_podman_resources_reach_the_cgroup(tmp_path):
    """The block the bench calls Podman's is applied by pyrun, not refused or dropped."""
    _root()
    from tests.support.bundle import make_bundle
    rts, missing = runtimes.available(str(tmp_path))
    if "pyrun" in missing:
        pytest.skip(missing["pyrun"])
    pyrun = rts[0]
    bundle = runtime.with_resources(make_bundle(str(tmp_path / "b"), args=("sleep", "60")),
                                    runtime.PODMAN_RESOURCES)
    assert runtime.PODMAN_RESOURCES["devices"][0] == {"allow": False, "access": "rwm"}
    pidfile = str(tmp_path / "pid")
    try:
        measure.run(pyrun.cmd("create", "--bundle", bundle, "--pid-file", pidfile, "res"))
        with open(pidfile) as f:
            pid = int(f.read())
        with open(f"/proc/{pid}/cgroup") as f:
            paths = dict(line.strip().split(":", 2)[1:] for line in f)
        with open(f"/sys/fs/cgroup/memory{paths['memory']}/memory.limit_in_bytes") as f:
            assert int(f.read()) == 64 << 20
        with open(f"/sys/fs/cgroup/pids{paths['pids']}/pids.max") as f:
            assert f.read().strip() == "100"
    finally:
        pyrun.force_delete_all()


def test_runtime_benches_two_rounds(tmp_path):
    _root()
    from tests.support.bundle import make_bundle
    rts, missing = runtimes.available(str(tmp_path))
    if "pyrun" in missing:
        pytest.skip(missing["pyrun"])
    bundle = make_bundle(str(tmp_path / "bundle"), args=("/bin/true",))
    sleeper = make_bundle(str(tmp_path / "sleeper"), args=("sleep", "60"))
    pyrun = [rt for rt in rts if rt.name == "pyrun"]
    # Not a subreaper here (that would outlive this test in the pytest process):
    # wait_exit falls back to polling /proc for the init's exit.
    try:
        wall, cpu = runtime.bench_run(rts, bundle, 2, floor=True)
        commands = runtime.bench_commands(pyrun, bundle, sleeper, 2, 1)[0]
    finally:
        for rt in rts:
            rt.force_delete_all()
        measure.reap_zombies()
    assert len(wall.values["pyrun"]) == 2 and all(v > 0 for v in wall.values["pyrun"])
    assert all(v > 0 for v in cpu.values["pyrun"]) and runtime.FLOOR in cpu.values
    for cmd in runtime.COMMANDS:
        assert len(commands.values[f"pyrun:{cmd}"]) == 1
        if cmd != "create":
            assert len(commands.values[f"floor:{cmd}"]) == 1
            assert (f"pyrun:{cmd}", f"floor:{cmd}") in commands.ratios
    if "crun" in [rt.name for rt in rts] and runtimes.hybrid_host():
        assert runtime.OLD_CRUN in wall.values and "crun-wrapper" in wall.values
        assert "crun" not in cpu.values  # the wrapper's CPU is not crun's
    assert runtimes.host_cgroup2_still_mounted()
    for rt in rts:  # every container deleted
        assert not os.path.isdir(rt.root) or os.listdir(rt.root) == []
    text = "\n".join(report.bench_table(wall))
    assert "pyrun / runc" in text or "runc" in missing


def test_results_md_from_saved_sections(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setattr(report, "RESULTS_MD", str(tmp_path / "results.md"))
    monkeypatch.setattr(report, "HERE", str(tmp_path))
    run = Bench("run", "run /bin/true", "s", {"pyrun": [0.05, 0.06], "runc": [0.04, 0.04]},
                [("pyrun", "runc")])
    pu = Bench("pull-unpack-busybox", "pull + unpack", "s",
               {f"{c}:{p}": [v, v] for c, v in (("imagetool", 0.1), ("skopeo+umoci", 0.08))
                for p in ("pull", "unpack", "total")},
               [("imagetool:total", "skopeo+umoci:total")])
    report.save_section("runtime", [run], {"when": "now", "mode": "quick"})
    report.save_section("images", [pu], {"when": "now", "mode": "quick",
                                         "unpack_profile": ["- imagetool unpack: 132 us an entry"]})
    text = report.write()
    assert (tmp_path / "results.md").read_text() == text
    assert "| pyrun | 55.0 ms | 50.0 ms | 60.0 ms | 2 |" in text
    assert "pyrun / runc: **1.38×**" in text
    assert "| 21 | `run /bin/true` ≤ 0.85× runc, wall (host) | 1.38× (55.0 ms vs 40.0 ms) | **missed**" in text
    assert "pull+unpack busybox: imagetool pull 100.0 ms vs skopeo 80.0 ms" in text
    assert "run [ms]\n  pyrun: 50.00 60.00" in text
    assert ("## Profile: where an unpack's time goes, per tar entry\n\n"
            "- imagetool unpack: 132 us an entry\n") in text
    saved = json.loads((tmp_path / "results" / "runtime.json").read_text())
    assert saved["benches"][0]["values"]["pyrun"] == [0.05, 0.06]
