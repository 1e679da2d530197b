"""The conformance suite (conformance/) against pyrun, with runc as the oracle: pyrun must pass
every case runc passes on this host. And the suite itself: a runtime that only says yes
passes nothing (no case is decided by an exit code alone)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import PYRUN, REPO


def _suite(runtime: str, report: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "conformance", "--runtime", runtime, "--report", report,
                             *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(p: subprocess.Popen, report: str) -> tuple[str, dict]:
    out, _ = p.communicate(timeout=600)
    assert os.path.exists(report), f"the suite wrote no report:\n{out[-3000:]}"
    with open(report) as f:
        return out, json.load(f)


def _outcomes(doc: dict) -> dict[str, dict]:
    return {r["name"]: r for r in doc["results"]}


# Cases runc passes that pyrun fails on purpose, each with its reason (also in conformance/notes.py,
# so docs/conformance.md says it). Nothing else may be on this list.
DELIBERATE: dict[str, str] = {}


def test_pyrun_passes_every_case_runc_passes(tmp_path, root_required, capsys):
    if not shutil.which("runc"):
        pytest.skip("runc (the oracle) is not installed")
    both = {name: (_suite(binary, str(tmp_path / f"{name}.json")), str(tmp_path / f"{name}.json"))
            for name, binary in (("pyrun", PYRUN), ("runc", "runc"))}
    (pyrun_out, pyrun), (_, runc) = (_finish(*both["pyrun"]), _finish(*both["runc"]))
    with capsys.disabled():
        print("\n" + pyrun_out.rstrip())
        print(f"runc: {runc['summary']}")
    ours, oracle = _outcomes(pyrun), _outcomes(runc)
    regressions = [f"{name}: {ours[name]['outcome']}: {ours[name]['reason']}"
                   for name, r in oracle.items() if r["outcome"] == "pass" and ours[name]["outcome"] != "pass"
                   and name not in DELIBERATE]
    assert not regressions, "cases runc passes and pyrun does not:\n" + "\n".join(regressions)


def test_a_runtime_that_only_says_yes_passes_nothing(tmp_path, root_required):
    """/bin/true answers every command with success and does nothing: every case must see that."""
    report = str(tmp_path / "true.json")
    out, doc = _finish(_suite(shutil.which("true"), report, "-j", "24"), report)
    passed = [n for n, r in _outcomes(doc).items() if r["outcome"] == "pass"]
    assert not passed, f"cases passed by a runtime that does nothing: {passed}"
    assert doc["summary"]["fail"] > 200, out[-2000:]


def test_exit_status_and_selection(tmp_path, root_required):
    """-k selects by name; exit 0 when nothing failed, 1 when a case did."""
    ok = subprocess.run([sys.executable, "-m", "conformance", "--runtime", PYRUN, "-k", "query-state."],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    rows = [line.split()[0] for line in ok.stdout.splitlines() if line.startswith("query-state.")]
    assert rows == ["query-state.no-id-errors", "query-state.unknown-id-errors"], ok.stdout
    bad = subprocess.run([sys.executable, "-m", "conformance", "--runtime", shutil.which("true"),
                          "-k", "state.id"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "fail" in bad.stdout, bad.stdout + bad.stderr
