"""Smoke tests of the bench harness: its statistics, its target verdicts, and one tiny
real measurement per kind. No timing assertions: these check the harness, not speed."""
import os
import shutil

import pytest

from bench import measure, report, runtime, runtimes
from bench.measure import Bench, Ratio, Summary


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


def test_targets_met_missed_and_unmeasured():
    run = Bench("run", "run", "s", {"pyrun": [0.050, 0.060], "runc": [0.040, 0.040],
                                    "crun": [0.050, 0.060]})
    init = Bench("init-rss", "init", "KiB", {"pyrun": [10 * 1024, 10 * 1024]})
    exe = Bench("exec", "exec", "s", skipped={"pyrun": "pyrun: not implemented"})
    rows = {r["target"]: r for r in report.evaluate({"run": run, "init-rss": init, "exec": exe})}
    assert rows["`pyrun run /bin/true` ≤ 1.0× runc"]["verdict"].startswith("**missed** by 38%")
    assert rows["`pyrun run /bin/true` ≤ 1.6× crun"]["verdict"].startswith("**met**")
    assert rows["init while `created` ≤ 15 MiB RSS"]["verdict"].startswith("**met**")
    assert rows["`pyrun exec /bin/true` ≤ 1.0× runc"]["measured"] == "pyrun: not implemented"
    assert rows["no-change re-pull (Debian) ≤ 0.3 s"]["verdict"] == "not measured"


def test_run_and_rss_of_real_processes():
    s = measure.run(["/bin/sh", "-c", "exit 0"])
    assert s.wall > 0 and s.returncode == 0
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


def test_runtime_run_two_rounds(tmp_path):
    if os.getuid() != 0:
        pytest.skip("needs root: runs real containers")
    from tests.support.bundle import make_bundle
    rts, missing = runtimes.available(str(tmp_path))
    if "pyrun" in missing:
        pytest.skip(missing["pyrun"])
    bundle = make_bundle(str(tmp_path / "bundle"), args=("/bin/true",))
    # Not a subreaper here (that would outlive this test in the pytest process):
    # wait_exit falls back to polling /proc for the init's exit.
    try:
        wall, rss = runtime.bench_run(rts, bundle, 2)
        lifecycle = runtime.bench_lifecycle([rt for rt in rts if rt.name == "pyrun"], bundle, 1)
    finally:
        for rt in rts:
            rt.force_delete_all()
        measure.reap_zombies()
    assert len(wall.values["pyrun"]) == 2 and all(v > 0 for v in wall.values["pyrun"])
    assert all(v > 1024 for v in rss.values["pyrun"])
    assert set(lifecycle.values) >= {"pyrun:create", "pyrun:start", "pyrun:delete"}
    if "crun" in wall.values and runtimes.hybrid_host():
        assert "crun (raw)" in wall.values and "crun-wrapper" in wall.values
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
    report.save_section("images", [pu], {"when": "now", "mode": "quick"})
    text = report.write()
    assert (tmp_path / "results.md").read_text() == text
    assert "| pyrun | 55.0 ms | 50.0 ms | 60.0 ms | 2 |" in text
    assert "pyrun / runc: **1.38×**" in text
    assert "pull+unpack busybox: imagetool pull 100.0 ms vs skopeo 80.0 ms" in text
    assert "run [ms]\n  pyrun: 50.00 60.00" in text
