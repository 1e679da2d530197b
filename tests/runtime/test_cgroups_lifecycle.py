"""The container's cgroup through its life on this host: where cgroupsPath puts it (and
where it may not), what delete removes, and the commands that work on it — update,
events, ps, pause/resume, kill --all — in every state, as runc does them.
"""
import json
import os
import signal
import subprocess
import tempfile
import time

import pytest

from tests.conftest import PYRUN
from tests.runtime.test_cgroups_v1 import CG, Runc, _pid, _read, _rmdirs, _wait, cg_bundle

if os.path.exists(os.path.join(CG, "cgroup.controllers")):
    pytest.skip("a v1/hybrid host's hierarchies (this is a unified host: see test_cgroup2.py)",
                allow_module_level=True)


def _dirs(name: str) -> list[str]:
    """Where `name` (a path below each hierarchy's root) exists, in any hierarchy."""
    return [os.path.join(CG, h, name) for h in os.listdir(CG) if os.path.lexists(os.path.join(CG, h, name))]


def _status(pyrun, cid) -> str:
    return json.loads(pyrun("state", cid, check=True).stdout)["status"]


# -- cgroupsPath ----------------------------------------------------------------------

def test_nested_path_parents_that_create_made_go_with_delete_and_only_those(pyrun, bundle):
    os.mkdir(f"{CG}/pids/cg-keep")  # a parent someone else made, in one hierarchy
    try:
        b = cg_bundle(bundle, ["sleep", "100"], None, "/cg-keep/a/b")
        pyrun("run", "-d", "-b", b, "cg-nest", check=True)
        pid = _pid(pyrun, "cg-nest")
        lines = _read(f"/proc/{pid}/cgroup").splitlines()
        assert all(line.endswith(":/cg-keep/a/b") for line in lines), lines
        pyrun("delete", "-f", "cg-nest", check=True)
        assert _dirs("cg-keep") == [f"{CG}/pids/cg-keep"]
        assert os.listdir(f"{CG}/pids/cg-keep") and not os.path.exists(f"{CG}/pids/cg-keep/a")
    finally:
        _rmdirs("cg-keep/a/b", "cg-keep/a", "cg-keep")


def test_relative_path_is_under_the_runtimes_own_cgroup_as_with_runc(pyrun, bundle, tmp_path):
    b = cg_bundle(bundle, ["sleep", "100"], None, "cg-rel/x")
    runc = Runc(str(tmp_path / "runc-root"))
    try:
        assert runc.create(b, "cg-rel").returncode == 0
        want = _read(f"/proc/{_runc_pid(runc, 'cg-rel')}/cgroup")
    finally:
        runc.delete("cg-rel")
        own = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in _read("/proc/self/cgroup").splitlines()}
        for ctrls, path in own.items():
            h = ctrls.removeprefix("name=") or "unified"
            for d in (f"{path.rstrip('/')}/cg-rel/x", f"{path.rstrip('/')}/cg-rel"):
                try:
                    os.rmdir(f"{CG}/{h}{d}")
                except OSError:
                    pass
    pyrun("create", "-b", b, "cg-rel", check=True)
    assert _read(f"/proc/{_pid(pyrun, 'cg-rel')}/cgroup") == want


def _runc_pid(runc, cid) -> int:
    p = subprocess.run(["runc", "--root", runc.root, "state", cid], capture_output=True, text=True, timeout=30)
    return json.loads(p.stdout)["pid"]


@pytest.mark.parametrize("path", ["../../cg-escape", "/cg-x/../../../cg-escape", "cg-x/../..", "/.."])
def test_dotdot_is_refused_and_nothing_outside_is_made_or_removed(pyrun, bundle, tmp_path, path):
    """The old code joined `..` into every hierarchy's path: a directory made on the
    /sys/fs/cgroup tmpfs (or anywhere), an empty host dir there removed by the failed
    create, and with "cg-x/../.." the root cgroup itself, whose processes (all of the
    host's) delete then killed."""
    victim = tmp_path / "victim"
    victim.mkdir()
    rel = os.path.relpath(str(victim), CG + "/pids")
    before = sorted(os.listdir(CG))
    try:
        for p in (path, rel, "/" + rel):
            b = cg_bundle(bundle, ["true"], None, p)
            r = pyrun("run", "-b", b, "cg-dotdot")
            assert r.returncode == 1 and "cgroupsPath" in r.stderr and "is not allowed" in r.stderr, r.stderr
            assert len(r.stderr.splitlines()) == 1 and pyrun.ids() == []
        assert victim.is_dir() and sorted(os.listdir(CG)) == before
        assert not os.path.exists("/sys/fs/cg-escape") and not os.path.exists("/sys/cg-escape")
    finally:
        for junk in (f"{CG}/cg-escape", "/sys/fs/cg-escape"):
            try:
                os.rmdir(junk)
            except OSError:
                pass


@pytest.mark.parametrize("path,words", [("system.slice:cg:x", "systemd"), ("/", "root"), ("/./", "root")])
def test_systemd_form_and_the_root_are_refused(pyrun, bundle, path, words):
    b = cg_bundle(bundle, ["true"], None, path)
    r = pyrun("create", "-b", b, "cg-sd")
    assert r.returncode == 1 and "cgroupsPath" in r.stderr and words in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1 and pyrun.ids() == []
    assert _dirs("system.slice") == [] and _dirs("cg-x.scope") == []


def test_systemd_cgroup_flag_is_refused_not_ignored(pyrun, bundle):
    r = pyrun("create", "-b", bundle(["true"]), "cg-sd", global_args=("--systemd-cgroup",))
    assert r.returncode == 1 and "--systemd-cgroup" in r.stderr and pyrun.ids() == []


# -- a create killed in cgroup set-up ------------------------------------------------

def test_delete_force_removes_what_a_create_killed_in_cgroup_setup_was_making(pyrun):
    """The preliminary record names every directory before it is made: here the create
    died after making the first half of them."""
    from runtime import cgroups
    mgr = cgroups.manager("/cg-killed/a/b")
    planned = mgr.plan()
    os.makedirs(os.path.join(pyrun.root, "cg-killed"))
    try:
        with open(os.path.join(pyrun.root, "cg-killed", "state.json"), "w") as f:
            json.dump({"id": "cg-killed", "pid": 0, "bundle": "/nowhere", "created": "",
                       "cgroup": mgr.record()}, f)
        for d in planned[:len(planned) // 2]:
            os.mkdir(d)
        assert _status(pyrun, "cg-killed") == "creating"
        pyrun("delete", "--force", "cg-killed", check=True)
        assert _dirs("cg-killed") == [] and pyrun.ids() == []
    finally:
        for d in reversed(planned):
            try:
                os.rmdir(d)
            except OSError:
                pass


def test_create_killed_at_any_point_leaves_nothing_after_delete_force(pyrun, bundle):
    import random
    b = cg_bundle(bundle, ["true"], {"memory": {"limit": 64 << 20}, "pids": {"limit": 20}}, "/cg-crash/n/c")
    rng = random.Random(16)
    t0 = time.monotonic()
    pyrun("create", "-b", b, "cg-crash", check=True)
    took = time.monotonic() - t0
    pyrun("delete", "-f", "cg-crash", check=True)
    for _ in range(25):
        p = subprocess.Popen([PYRUN, "--root", pyrun.root, "create", "-b", b, "cg-crash"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, took))
        p.send_signal(signal.SIGKILL)
        p.wait()
        pyrun("delete", "--force", "cg-crash", check=True)
        assert pyrun.ids() == [] and _dirs("cg-crash") == []


# -- kill and delete in every state ------------------------------------------------------

def test_sigkill_stops_a_paused_container(pyrun, bundle):
    pyrun("run", "-d", "-b", cg_bundle(bundle, ["sleep", "100"], None, "/cg-paused"), "cg-paused", check=True)
    pyrun("pause", "cg-paused", check=True)
    assert _status(pyrun, "cg-paused") == "paused"
    pyrun("kill", "cg-paused", "KILL", check=True)
    _wait(lambda: _status(pyrun, "cg-paused") == "stopped", what="the paused container to die")
    pyrun("delete", "cg-paused", check=True)
    assert _dirs("cg-paused") == []


def test_delete_force_of_a_paused_container(pyrun, bundle):
    b = cg_bundle(bundle, ["sh", "-c", "sleep 100 & sleep 100"], None, "/cg-paused")
    pyrun("run", "-d", "-b", b, "cg-paused", check=True)
    pyrun("pause", "cg-paused", check=True)
    pyrun("delete", "--force", "cg-paused", check=True, timeout=20)
    assert pyrun.ids() == [] and _dirs("cg-paused") == []


def test_kill_all_leaves_a_paused_container_paused_but_sigkill_thaws(pyrun, bundle):
    b = cg_bundle(bundle, ["sh", "-c", "trap '' TERM; sleep 100 & wait"], None, "/cg-paused")
    pyrun("run", "-d", "-b", b, "cg-paused", check=True)
    _wait(lambda: len(_read(f"{CG}/pids/cg-paused/cgroup.procs").split()) == 2, what="two processes")
    pyrun("pause", "cg-paused", check=True)
    pyrun("kill", "--all", "cg-paused", "TERM", check=True)
    assert _status(pyrun, "cg-paused") == "paused"
    pyrun("kill", "--all", "cg-paused", "KILL", check=True)
    _wait(lambda: _status(pyrun, "cg-paused") == "stopped", what="every process to die")


def _host_pidns_bundle(bundle):
    """An init that leaves two children behind in the host's pid namespace and exits."""
    b = cg_bundle(bundle, ["sh", "-c", "sleep 1000 & sleep 1000 & exit 0"], None, "/cg-hostpid")
    from tests.support.bundle import read_config, write_config
    cfg = read_config(b)
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "pid"]
    write_config(b, cfg)
    return b


@pytest.mark.parametrize("force", [False, True])
def test_delete_kills_what_an_init_in_the_host_pid_namespace_left(pyrun, bundle, force):
    pyrun("run", "-d", "-b", _host_pidns_bundle(bundle), "cg-hostpid", check=True)
    procs = f"{CG}/pids/cg-hostpid/cgroup.procs"
    _wait(lambda: _status(pyrun, "cg-hostpid") == "stopped" and len(_read(procs).split()) == 2,
          what="the init to exit, its children alive")
    left = [int(p) for p in _read(procs).split()]
    args = ["delete", "--force", "cg-hostpid"] if force else ["delete", "cg-hostpid"]
    pyrun(*args, check=True, timeout=20)
    assert pyrun.ids() == [] and _dirs("cg-hostpid") == []
    for pid in left:
        _wait(lambda: not os.path.exists(f"/proc/{pid}") or "Z" in _read(f"/proc/{pid}/stat").split()[2],
              what=f"{pid} to die")


def test_kill_all_reaches_children_of_an_init_that_exited(pyrun, bundle):
    pyrun("run", "-d", "-b", _host_pidns_bundle(bundle), "cg-hostpid", check=True)
    procs = f"{CG}/pids/cg-hostpid/cgroup.procs"
    _wait(lambda: _status(pyrun, "cg-hostpid") == "stopped" and len(_read(procs).split()) == 2,
          what="the init to exit, its children alive")
    assert pyrun("kill", "cg-hostpid", "KILL").returncode == 1  # no init to signal
    pyrun("kill", "--all", "cg-hostpid", "KILL", check=True)
    _wait(lambda: _read(procs) == "", what="the cgroup to empty")


# -- update, events, ps -------------------------------------------------------------------

def test_update_memory_changes_the_limit_and_events_stats_shows_it(pyrun, bundle):
    b = cg_bundle(bundle, ["sleep", "100"], {"memory": {"limit": 64 << 20}, "pids": {"limit": 20},
                                             "cpu": {"quota": 50000, "period": 100000}}, "/cg-upd")
    pyrun("run", "-d", "-b", b, "cg-upd", check=True)
    pyrun("update", "--memory", "32m", "--pids-limit", "10", "--cpu-quota", "20000", "cg-upd", check=True)
    assert _read(f"{CG}/memory/cg-upd/memory.limit_in_bytes") == str(32 << 20)
    assert _read(f"{CG}/pids/cg-upd/pids.max") == "10"
    assert _read(f"{CG}/cpu/cg-upd/cpu.cfs_quota_us") == "20000"
    assert _read(f"{CG}/cpu/cg-upd/cpu.cfs_period_us") == "100000"  # kept
    stats = json.loads(pyrun("events", "--stats", "cg-upd", check=True).stdout)
    assert stats["type"] == "stats" and stats["id"] == "cg-upd"
    assert stats["data"]["memory"]["usage"]["limit"] == 32 << 20
    assert stats["data"]["pids"]["limit"] == 10


def test_update_with_a_resources_file_or_stdin_as_podman_calls_it(pyrun, bundle, tmp_path):
    b = cg_bundle(bundle, ["sleep", "100"], {"memory": {"limit": 64 << 20}}, "/cg-upd")
    pyrun("run", "-d", "-b", b, "cg-upd", check=True)
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"memory": {"limit": 48 << 20, "swap": 96 << 20}, "pids": {"limit": 30},
                               "devices": [{"allow": True, "access": "rwm"}]}))
    pyrun("update", f"--resources={res}", "cg-upd", check=True)
    assert _read(f"{CG}/memory/cg-upd/memory.limit_in_bytes") == str(48 << 20)
    assert _read(f"{CG}/memory/cg-upd/memory.memsw.limit_in_bytes") == str(96 << 20)
    assert _read(f"{CG}/pids/cg-upd/pids.max") == "30"
    assert "a *:* rwm" not in _read(f"{CG}/devices/cg-upd/devices.list")  # runc leaves devices alone
    pyrun("update", "-r", "-", "cg-upd", input=json.dumps({"cpu": {"shares": 256}}), check=True)
    assert _read(f"{CG}/cpu/cg-upd/cpu.shares") == "256"


@pytest.mark.parametrize("args,words", [
    (["--memory", "lots"], "invalid value for --memory"),
    (["--cpu-share", "-5"], "invalid value for --cpu-share"),
    (["--l3-cache-schema", "L3:0=f"], "Intel RDT"),
])
def test_update_refuses_bad_values_with_one_line(pyrun, bundle, args, words):
    pyrun("run", "-d", "-b", cg_bundle(bundle, ["sleep", "100"], None, "/cg-upd"), "cg-upd", check=True)
    r = pyrun("update", *args, "cg-upd")
    assert r.returncode == 1 and words in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_update_of_a_stopped_container_is_refused(pyrun, bundle):
    pyrun("run", "-d", "-b", cg_bundle(bundle, ["true"], None, "/cg-upd"), "cg-upd", check=True)
    _wait(lambda: _status(pyrun, "cg-upd") == "stopped", what="the container to stop")
    r = pyrun("update", "--memory", "32m", "cg-upd")
    assert r.returncode == 1 and "container not running" in r.stderr


def test_events_streams_stats_and_reports_an_oom_kill(pyrun, bundle):
    b = cg_bundle(bundle, ["sh", "-c", "while [ ! -e /dev/shm/go ]; do sleep 0.05; done; "
                                       "head -c 67108864 /dev/zero > /dev/shm/fill; sleep 100"],
                  {"memory": {"limit": 16 << 20, "swap": 16 << 20}}, "/cg-ev")
    pyrun("run", "-d", "-b", b, "cg-ev", check=True)
    with tempfile.TemporaryFile("w+") as out:
        ev = subprocess.Popen([PYRUN, "--root", pyrun.root, "events", "--interval", "300ms", "cg-ev"],
                              stdout=out, stderr=subprocess.STDOUT)
        try:
            def lines():
                out.seek(0)
                return [json.loads(line) for line in out.read().splitlines()]
            _wait(lambda: len(lines()) >= 2, what="two stats events")
            pid = _pid(pyrun, "cg-ev")
            with open(f"/proc/{pid}/root/dev/shm/go", "w"):
                pass
            _wait(lambda: any(e["type"] == "oom" for e in lines()), what="an oom event")
            assert {"type": "oom", "id": "cg-ev"} in lines()
            pyrun("delete", "-f", "cg-ev", check=True)
            assert ev.wait(timeout=10) == 0  # the stream ends with the container
            stats = [e for e in lines() if e["type"] == "stats"]
            assert stats and all(e["id"] == "cg-ev" and "memory" in e["data"] for e in stats)
        finally:
            ev.kill()


def test_events_of_a_stopped_container_is_refused(pyrun, bundle):
    pyrun("run", "-d", "-b", cg_bundle(bundle, ["true"], None, "/cg-ev"), "cg-ev", check=True)
    _wait(lambda: _status(pyrun, "cg-ev") == "stopped", what="the container to stop")
    r = pyrun("events", "--stats", "cg-ev")
    assert r.returncode == 1 and "is not running" in r.stderr


def test_ps_lists_the_containers_processes_as_table_and_json(pyrun, bundle):
    b = cg_bundle(bundle, ["sh", "-c", "sleep 100 & sleep 100"], None, "/cg-ps")
    pyrun("run", "-d", "-b", b, "cg-ps", check=True)
    procs = f"{CG}/pids/cg-ps/cgroup.procs"
    _wait(lambda: len(_read(procs).split()) == 2, what="two processes")
    pids = sorted(int(p) for p in _read(procs).split())
    out = pyrun("ps", "--format", "json", "cg-ps", check=True).stdout
    assert sorted(json.loads(out)) == pids and " " not in out  # runc's compact array
    table = pyrun("ps", "cg-ps", check=True).stdout.splitlines()
    assert table[0].split()[:2] == ["UID", "PID"]
    assert sorted(int(line.split()[1]) for line in table[1:]) == pids
    custom = pyrun("ps", "cg-ps", "-o", "pid,comm", check=True).stdout.splitlines()
    assert sorted(line.split()[1] for line in custom[1:]) == ["sleep", "sleep"]


def test_features_reports_the_tables_the_cgroup_code_uses(pyrun):
    from runtime.cgroups import fields
    f = json.loads(pyrun("features", check=True).stdout)
    assert f["linux"]["cgroup"] == fields.features()
    assert f["linux"]["cgroup"]["systemd"] is False and f["linux"]["cgroup"]["rdma"] is True
