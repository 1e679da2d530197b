"""Every bad input: one line on stderr, exit 1, and nothing left behind."""
import json
import os

import pytest

from tests.support.bundle import write_config
from tests.support.checks import one_line_error


def _one_line_error(p, *needles):
    return one_line_error(p, *needles, code=1)


def _nothing_left(pyrun, cid):
    assert pyrun.ids() == []
    for ctrl in ("pids", "memory", "freezer"):
        assert not os.path.exists(f"/sys/fs/cgroup/{ctrl}/{cid}")
    # no init left running with this container's bundle as cwd or in its cgroup
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cg = open(f"/proc/{pid}/cgroup").read()
            except OSError:
                continue
            assert f"/{cid}\n" not in cg, f"process {pid} left in cgroup of {cid}"


def _edit(bundle_dir, fn):
    path = os.path.join(bundle_dir, "config.json")
    cfg = json.load(open(path))
    fn(cfg)
    write_config(bundle_dir, cfg)
    return bundle_dir


def test_missing_config(pyrun, tmp_path):
    (tmp_path / "empty").mkdir()
    p = pyrun("create", "-b", str(tmp_path / "empty"), "e1")
    _one_line_error(p, "config.json not found")
    _nothing_left(pyrun, "e1")


@pytest.mark.parametrize("text, where", [
    ('{"ociVersion": "1.0.2",\n "process": }', "line 2"),
    ('{"ociVersion": "1.0.2",\n "process": {"cwd": "/",}}', "line 2"),  # a trailing comma
    ('{"ociVersion": "1.0.2"', "line 1"),  # cut short
    ('{"ociVersion": "1.0\t2"}', "line 1"),  # a raw control character in a string
    ('{"ociVersion": "\\q"}', "line 1"),  # a bad escape
    ('{"ociVersion": NaN}', "NaN"),
    ("[" * 100000, "nested too deeply"),
])
def test_malformed_json(pyrun, bundle, text, where):
    b = bundle()
    with open(os.path.join(b, "config.json"), "w") as f:
        f.write(text)
    for cmd in ("create", "run"):
        _one_line_error(pyrun(cmd, "-b", b, "e1"), "config.json", where)
        _nothing_left(pyrun, "e1")


@pytest.mark.parametrize("edit, needle", [
    (lambda c: c["process"]["user"].__setitem__("uid", "root"), "uid"),
    (lambda c: c.__setitem__("ociVersion", 5), "ociVersion"),
    (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "namespaces"),
    (lambda c: c["mounts"].append({"destination": "/x", "options": "ro"}), "options"),
])
def test_schema_violation(pyrun, bundle, edit, needle):
    b = _edit(bundle(), edit)
    _one_line_error(pyrun("create", "-b", b, "e1"), needle)
    _nothing_left(pyrun, "e1")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_config_string_cannot_break_the_error_line(pyrun, bundle, log_format):
    """Messages quote the config (here a mount source): control characters come out
    escaped, so the error stays one line whatever the config holds."""
    b = _edit(bundle(), lambda c: c["mounts"].append(
        {"destination": "/mnt", "type": "bind", "source": "/nonexistent\nlevel=info msg=\x1b[2Jforged",
         "options": ["bind"]}))
    p = pyrun("create", "-b", b, "e1", global_args=("--log-format", log_format))
    line = _one_line_error(p, "/nonexistent")
    assert "\x1b" not in line
    if log_format == "json":  # JSON escapes them itself: the message keeps its characters
        assert "/nonexistent\nlevel=info msg=\x1b[2Jforged" in json.loads(line)["msg"]
    else:
        assert "/nonexistent\\nlevel=info msg=\\x1b[2Jforged" in line
    _nothing_left(pyrun, "e1")


def test_missing_rootfs(pyrun, bundle):
    b = _edit(bundle(), lambda c: c["root"].__setitem__("path", "nope"))
    _one_line_error(pyrun("create", "-b", b, "e1"), "rootfs", "does not exist")
    _nothing_left(pyrun, "e1")


def test_missing_executable_fails_create(pyrun, bundle):
    b = bundle(["/no/such/binary"])
    _one_line_error(pyrun("create", "-b", b, "e1"), "/no/such/binary")
    _nothing_left(pyrun, "e1")
    b = bundle(["nosuchcmd"])
    _one_line_error(pyrun("run", "-b", b, "e2"), "executable file not found")
    _nothing_left(pyrun, "e2")


def test_bad_cwd(pyrun, bundle):
    b = _edit(bundle(), lambda c: c["process"].__setitem__("cwd", "/does/not/exist"))
    _one_line_error(pyrun("create", "-b", b, "e1"), "cwd")
    _nothing_left(pyrun, "e1")


def test_unknown_capability(pyrun, bundle):
    b = _edit(bundle(), lambda c: c["process"]["capabilities"]["bounding"].append("CAP_MAKE_COFFEE"))
    _one_line_error(pyrun("create", "-b", b, "e1"), "CAP_MAKE_COFFEE")
    _nothing_left(pyrun, "e1")


def test_namespace_path_missing(pyrun, bundle):
    def edit(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
        c["linux"]["namespaces"].append({"type": "network", "path": "/var/run/netns/nope"})
    _one_line_error(pyrun("create", "-b", _edit(bundle(), edit), "e1"), "network", "/var/run/netns/nope")
    _nothing_left(pyrun, "e1")


def test_duplicate_id(pyrun, bundle):
    b = bundle(["sleep", "100"])
    pyrun("create", "-b", b, "dup", check=True)
    _one_line_error(pyrun("create", "-b", b, "dup"), "container with id exists: dup")
    assert pyrun.ids() == ["dup"]


@pytest.mark.parametrize("cid", ["bad/id", "..", ".", "a b", "x\ny"])
def test_invalid_id(pyrun, bundle, cid):
    _one_line_error(pyrun("create", "-b", bundle(), cid), "invalid container id")
    assert pyrun.ids() == []


@pytest.mark.parametrize("cmd", [["start"], ["state"], ["kill"], ["delete"], ["pause"], ["resume"]])
def test_unknown_container(pyrun, cmd):
    _one_line_error(pyrun(*cmd, "ghost"), "container does not exist")


def test_wrong_state(pyrun, bundle):
    b = bundle(["sleep", "100"])
    pyrun("create", "-b", b, "w", check=True)
    _one_line_error(pyrun("resume", "w"), "created")
    _one_line_error(pyrun("pause", "w"), "created")
    pyrun("start", "w", check=True)
    _one_line_error(pyrun("start", "w"), "running")
    _one_line_error(pyrun("delete", "w"), "not stopped")
    pyrun("kill", "w", "KILL", check=True)
    import time
    for _ in range(200):
        if json.loads(pyrun("state", "w").stdout)["status"] == "stopped":
            break
        time.sleep(0.02)
    _one_line_error(pyrun("kill", "w"), "not running")
    _one_line_error(pyrun("start", "w"), "stopped")


def test_usage_errors(pyrun):
    _one_line_error(pyrun("create"), "requires")
    _one_line_error(pyrun("kill", "--nope", "x"), "not defined")
    _one_line_error(pyrun("kill", "x", "SIGNOPE"))
    assert pyrun("frobnicate").returncode == 1


def test_a_state_dir_without_a_record_is_no_container_but_is_removable(pyrun, bundle):
    """create's claim appears with its first record; a bare directory (not ours, or an
    older pyrun's) is no container, as for runc, and delete -f removes it."""
    os.makedirs(os.path.join(pyrun.root, "half"))
    _one_line_error(pyrun("state", "half"), "container does not exist")
    assert json.loads(pyrun("list", "--format", "json", check=True).stdout) in ([], None)
    _one_line_error(pyrun("delete", "half"), "not stopped")
    pyrun("delete", "--force", "half", check=True)
    assert pyrun.ids() == []
    assert pyrun("delete", "--force", "half").returncode == 0


def test_fastjson_matches_json_module():
    """pyrun's JSON (no `json`/`re` import on the hot path) writes exactly what json does."""
    import json as std
    from specs import fastjson
    from tests.support.bundle import default_config
    docs = [default_config(), {"a": [1, 2.5, {"b": None, "c": "é\"\\\n"}], "e": {}, "f": [], "t": True}, [], "x"]
    for d in docs:
        assert fastjson.dumps(d) == std.dumps(d)
        for ind in ("  ", "\t", "    "):
            assert fastjson.dumps(d, indent=ind) == std.dumps(d, indent=ind)
        assert fastjson.loads(std.dumps(d)) == d
    # Every fault is one ValueError naming where, never the C scanner's SystemError.
    for bad, where in [('{"a": NaN}', "NaN"), ('{"a": 1} x', "line 1 column 10"), ('{"a": 1,}', "line 1 column 9"),
                       ('{"a": "\\x"}', "line 1 column 8"), ('[1,\n 2', "line 2 column 3"), ("", "line 1 column 1"),
                       ("[" * 100000, "nested too deeply"), (b'"\xff"', "utf-8")]:
        with pytest.raises(ValueError, match=where):
            fastjson.loads(bad)


def test_delete_force_after_create_died_half_way(pyrun, bundle):
    """A create killed after it placed something in the cgroup: delete --force finds the
    cgroup in the preliminary record, kills what is there and removes it all."""
    import subprocess
    cg = "/pyrun-test/halfway"
    from runtime import cgroups
    mgr = cgroups.manager(cg)
    mgr.create()
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        mgr.enter(sleeper.pid)
        os.makedirs(os.path.join(pyrun.root, "halfway"))
        with open(os.path.join(pyrun.root, "halfway", "state.json"), "w") as f:
            json.dump({"id": "halfway", "pid": 0, "bundle": "/nowhere", "created": "",
                       "cgroup": {"path": cg, "dirs": mgr.hierarchies}}, f)
        assert json.loads(pyrun("state", "halfway", check=True).stdout)["status"] == "creating"
        pyrun("delete", "--force", "halfway", check=True)
        assert sleeper.wait(timeout=5) == -9
        assert pyrun.ids() == []
        assert all(not os.path.exists(d) for d in mgr.hierarchies.values())
    finally:
        sleeper.kill()
        mgr.destroy()


def test_clone_child_leaves_no_fd_open_when_the_cgroup_cannot_be_joined(root_required):
    """Opening a cgroup's join fds can fail after its CLONE_INTO_CGROUP fd and the
    exec helper are open: both are closed, `restore` runs, one PyrunError says why."""
    from runtime.errors import PyrunError
    from runtime.spawn import clone_child

    class HalfOpenCgroup:  # a hybrid manager whose v1 `tasks` files are gone
        path = "/gone"

        def clone_fd(self):
            return os.open("/", os.O_PATH | os.O_CLOEXEC)

        def join_fds(self):
            raise FileNotFoundError(2, "No such file or directory", "/sys/fs/cgroup/pids/gone/tasks")

    restored = []
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(PyrunError, match="open cgroup /gone"):
        clone_child(0, HalfOpenCgroup(), lambda: restored.append(True), "clone3")
    assert restored == [True]
    assert sorted(os.listdir("/proc/self/fd")) == before
