"""load_config / validate_config / validate_state: real files, one-line errors naming the path."""

import json
import os
import subprocess
import sys

import pytest

from specs import SpecError
from specs.runtime import default_config, load_config, validate_config, validate_state


def write(tmp_path, text, name="config.json"):
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(p)


def error_of(fn, *args):
    with pytest.raises(SpecError) as ei:
        fn(*args)
    msg = str(ei.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


def test_load_config_reads_runc_default(tmp_path):
    path = write(tmp_path, json.dumps(default_config(), indent=2))
    assert load_config(path) == default_config()


def test_missing_file_names_the_path(tmp_path):
    path = str(tmp_path / "nope" / "config.json")
    msg = error_of(load_config, path)
    assert msg.startswith(path + ": ") and "No such file" in msg


def test_directory_instead_of_file(tmp_path):
    msg = error_of(load_config, str(tmp_path))
    assert msg.startswith(str(tmp_path) + ": ")


@pytest.mark.parametrize("text, where", [
    ('{"ociVersion": "1.0.2",\n  "process": {"cwd": "/",}\n}', "line 2 column 26"),
    ('{"ociVersion": "1.0.2"} trailing', "line 1 column 25"),
    ('', "line 1 column 1"),
    ('{"ociVersion": "1.0.2",\n\n "x": [1 2]}', "line 3 column 10"),
    ('{"ociVersion": NaN}', "NaN"),
    ('{"ociVersion": "a\tb"}', "line 1 column 18"),
])
def test_bad_json_names_line_and_column(tmp_path, text, where):
    path = write(tmp_path, text)
    msg = error_of(load_config, path)
    assert msg.startswith(path + ": invalid JSON: ") and where in msg


def test_not_utf8(tmp_path):
    path = write(tmp_path, b'{"ociVersion": "\xff"}')
    msg = error_of(load_config, path)
    assert msg.startswith(path + ": invalid JSON: not UTF-8")


def test_schema_violation_message_names_the_json_path(tmp_path):
    c = default_config()
    c["process"]["user"]["uid"] = "x"
    path = write(tmp_path, json.dumps(c))
    assert error_of(load_config, path) == f'{path}: process.user.uid: expected integer, got "x"'


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c.pop("ociVersion"), 'config.json: missing required property "ociVersion"'),
    (lambda c: c.__setitem__("ociVersion", "1.0"), 'config.json: ociVersion: expected a SemVer 2.0.0 version, got "1.0"'),
    (lambda c: c["mounts"][2].pop("destination"), 'config.json: mounts[2]: missing required property "destination"'),
    (lambda c: c["mounts"][3]["options"].append(7), "config.json: mounts[3].options[5]: expected string, got 7"),
    (lambda c: c["linux"]["namespaces"].append({"type": "net"}),
     'config.json: linux.namespaces[5].type: expected one of "pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"; got "net"'),
    (lambda c: c["process"]["rlimits"][0].__setitem__("soft", -1), "config.json: process.rlimits[0].soft: expected at least 0, got -1"),
    (lambda c: c["process"]["rlimits"][0].__setitem__("type", "NOFILE"),
     'config.json: process.rlimits[0].type: expected an RLIMIT_* name, got "NOFILE"'),
    (lambda c: c.__setitem__("annotations", {"org.example.key": 1}),
     'config.json: annotations["org.example.key"]: expected string, got 1'),
    (lambda c: c.__setitem__("hooks", {"prestart": [{"path": "hook"}]}),
     'config.json: hooks.prestart[0].path: expected an absolute path, got "hook"'),
    (lambda c: c.__setitem__("hostname", "a\nb" * 40),
     'config.json: hostname: expected string'),
])
def test_messages(mutate, expected):
    c = default_config()
    if "hostname" in expected:
        c["hostname"] = ["x"]
    else:
        mutate(c)
    msg = error_of(validate_config, c)
    assert msg.startswith(expected)


def test_long_values_are_cut_and_newlines_escaped():
    c = default_config()
    c["ociVersion"] = "1.0\n" * 100
    msg = error_of(validate_config, c)
    assert "1.0\\n1.0" in msg and "…" in msg and len(msg) < 250


def test_top_level_not_an_object():
    assert error_of(validate_config, []) == "config.json: expected object, got an array"


def test_state():
    good = {"ociVersion": "1.0.2", "id": "c1", "status": "running", "pid": 42, "bundle": "/b"}
    validate_state(good)
    validate_state({**{k: v for k, v in good.items() if k != "pid"}, "status": "stopped"})
    assert error_of(validate_state, {**good, "status": "paused"}).startswith('state: status: expected one of')
    no_pid = {k: v for k, v in good.items() if k != "pid"}
    assert error_of(validate_state, no_pid) == 'state: missing required property "pid"'
    assert error_of(validate_state, {**good, "bundle": "b"}) == 'state: bundle: expected an absolute path, got "b"'


def test_hot_path_imports_neither_json_nor_re(tmp_path):
    # The fast loader's whole point: pyrun create must not pay for json/re/jsonschema.
    path = write(tmp_path, json.dumps(default_config()))
    code = ("import sys; before = set(sys.modules); import specs.runtime as r; r.load_config(%r); "
            "print(' '.join(m for m in ('json', 're', 'jsonschema') if m in sys.modules and m not in before))"
            % path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_schema_enums_are_what_the_validator_enforces():
    from specs.runtime import schema_enums

    enums = schema_enums()
    assert enums["namespaces"] == ["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"]
    assert enums["hooks"] == ["prestart", "createRuntime", "createContainer", "startContainer",
                              "poststart", "poststop"]
    assert "SCMP_ACT_NOTIFY" in enums["seccompActions"] and "SCMP_CMP_MASKED_EQ" in enums["seccompOperators"]
    for arch in enums["seccompArchs"]:
        c = default_config()
        c["linux"]["seccomp"] = {"defaultAction": enums["seccompActions"][0], "architectures": [arch]}
        validate_config(c)
    c["linux"]["seccomp"]["architectures"] = ["SCMP_ARCH_NOPE"]
    with pytest.raises(SpecError):
        validate_config(c)
