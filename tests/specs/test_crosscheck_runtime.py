"""Runtime config and state: our fast validator, jsonschema with our schema, and
jsonschema with the official runtime-spec schema must agree on every corpus entry.

The official schemas come from Debian's golang-github-opencontainers-specs-dev,
which holds runtime-spec 1.0.2-dev (package 1.0.2.118.g5cfc4c3, a snapshot
between 1.0.2 and 1.1.0; test_official_version pins it). Where that schema is
looser or stricter than the spec's prose MUSTs, or predates a field of
runtime-spec 1.1/1.2, the entry says so (`official=`, `why=`) and our schema
follows the spec's prose.
"""

import copy

import pytest

from specs import SpecError
from specs.runtime import default_config, validate_config, validate_state

from .schemas import OFFICIAL_RUNTIME, official, ours, version_of

CASES = []


def case(name, change, valid, official=None, why=None):
    """`change` edits a copy of runc's default config, or is a whole document."""
    if callable(change):
        doc = default_config()
        change(doc)
    else:
        doc = change
    assert (official is None) == (why is None), name
    CASES.append(pytest.param(doc, valid, valid if official is None else official, id=name))


def setp(path, value):
    def change(doc):
        *parents, last = path
        node = doc
        for p in parents:
            node = node.setdefault(p, {}) if isinstance(p, str) else node[p]
        node[last] = value
    return change


def delp(*path):
    def change(doc):
        node = doc
        for p in path[:-1]:
            node = node[p]
        del node[path[-1]]
    return change


def seccomp(**over):
    s = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
         "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
         "flags": ["SECCOMP_FILTER_FLAG_LOG"],
         "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                      {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                       "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
                      {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    s.update(over)
    return s


FULL = default_config()
FULL.update({
    "ociVersion": "1.1.0",
    "domainname": "example.org",
    "annotations": {"org.opencontainers.image.title": "t", "empty.value": ""},
    "hooks": {k: [{"path": "/usr/bin/hook", "args": ["hook", k], "env": ["A=1"], "timeout": 5}]
              for k in ("prestart", "createRuntime", "createContainer", "startContainer",
                        "poststart", "poststop")},
})
FULL["process"].update({
    "consoleSize": {"height": 25, "width": 80},
    "user": {"uid": 1000, "gid": 1000, "umask": 18, "additionalGids": [5, 10]},
    "apparmorProfile": "docker-default", "selinuxLabel": "system_u:system_r:container_t:s0",
    "oomScoreAdj": -500,
})
FULL["process"]["capabilities"]["inheritable"] = ["CAP_KILL"]
FULL["process"]["rlimits"].append({"type": "RLIMIT_CORE", "hard": 18446744073709551615, "soft": 0})
FULL["mounts"].append({"destination": "/data", "type": "bind", "source": "/srv",
                       "options": ["rbind", "idmap"],
                       "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                       "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]})
FULL["linux"].update({
    "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438,
                 "uid": 0, "gid": 0}],
    "cgroupsPath": "/pyrun/c1",
    "sysctl": {"net.ipv4.ip_forward": "1"},
    "seccomp": seccomp(),
    "rootfsPropagation": "slave",
    "mountLabel": "system_u:object_r:container_file_t:s0",
    "personality": {"domain": "LINUX32", "flags": []},
    "intelRdt": {"closID": "g1", "l3CacheSchema": "L3:0=ff", "memBwSchema": "MB:0=70"},
})
FULL["linux"]["namespaces"].append({"type": "cgroup", "path": "/proc/1/ns/cgroup"})
FULL["linux"]["resources"].update({
    "devices": [{"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
    "memory": {"limit": 536870912, "reservation": 0, "swap": -1, "kernel": -1, "kernelTCP": -1,
               "swappiness": 0, "disableOOMKiller": False, "useHierarchy": True,
               "checkBeforeUpdate": True},
    "cpu": {"shares": 1024, "quota": 100000, "burst": 0, "period": 100000, "realtimeRuntime": 0,
            "realtimePeriod": 0, "cpus": "0-1", "mems": "0", "idle": 0},
    "pids": {"limit": -1},
    "blockIO": {"weight": 500, "leafWeight": 300,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200}],
    "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]},
    "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
    "unified": {"memory.high": "1G", "io.weight": "100"},
})

# --- valid --------------------------------------------------------------------
case("runc-default", lambda c: None, True)
case("runc-rootless", default_config(rootless=True), True)
case("minimal", {"ociVersion": "1.0.0"}, True)
case("full-featured", copy.deepcopy(FULL), True)
case("semver-prerelease-build", setp(["ociVersion"], "1.2.0-rc.1+dev.5"), True)
case("uint64-max-rlimit", setp(["process", "rlimits", 0, "hard"], 18446744073709551615), True)
case("int64-min-swap", setp(["linux", "resources", "memory"], {"swap": -9223372036854775808}), True)
case("unknown-properties-ignored", setp(["org.example/extension"], {"x": [1]}), True)
case("unknown-nested-property-ignored", setp(["process", "futureField"], 7), True)
case("namespace-with-path", setp(["linux", "namespaces", 1], {"type": "network", "path": "/run/netns/x"}), True)
case("empty-lists", lambda c: (c.__setitem__("mounts", []), c["linux"].__setitem__("namespaces", [])), True)
case("seccomp-notify", setp(["linux", "seccomp"], seccomp(defaultAction="SCMP_ACT_ALLOW",
     listenerPath="/run/notify.sock", listenerMetadata="m",
     syscalls=[{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}])), True)
case("seccomp-all-operators", setp(["linux", "seccomp"], seccomp(syscalls=[
     {"names": ["x"], "action": "SCMP_ACT_KILL_PROCESS",
      "args": [{"index": i, "value": 1, "op": op} for i, op in enumerate(
          ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
           "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"])]}])), True)
case("empty-hook-lists", setp(["hooks"], {"prestart": [], "poststop": []}), True)
case("process-scheduler-1.2", setp(["process", "scheduler"],
     {"policy": "SCHED_BATCH", "nice": -5, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}), True)
case("process-ioPriority-1.2", setp(["process", "ioPriority"], {"class": "IOPRIO_CLASS_BE", "priority": 4}), True)
case("linux-timeOffsets-1.2", setp(["linux", "timeOffsets"], {"monotonic": {"secs": -3600, "nanosecs": 0}}), True)
case("negative-oomScoreAdj", setp(["process", "oomScoreAdj"], -1000), True)
case("annotation-empty-value", setp(["annotations"], {"a": ""}), True)
case("mounts-without-type-or-options", setp(["mounts"], [{"destination": "/x"}]), True)

# --- invalid, all three agree -------------------------------------------------
case("no-ociVersion", delp("ociVersion"), False)
case("ociVersion-number", setp(["ociVersion"], 1.0), False)
case("not-an-object", ["ociVersion"], False)
case("root-without-path", setp(["root"], {"readonly": True}), False)
case("root-readonly-string", setp(["root", "readonly"], "yes"), False)
case("mounts-object", setp(["mounts"], {"destination": "/x"}), False)
case("mount-without-destination", delp("mounts", 0, "destination"), False)
case("mount-options-string", setp(["mounts", 1, "options"], "nosuid,noexec"), False)
case("mount-options-number", setp(["mounts", 1, "options", 0], 1), False)
case("mount-idmap-without-size", setp(["mounts", 0, "uidMappings"], [{"containerID": 0, "hostID": 1}]), False)
case("process-without-cwd", delp("process", "cwd"), False)
case("process-args-string", setp(["process", "args"], "sh -c true"), False)
case("process-env-number", setp(["process", "env", 1], 5), False)
case("process-terminal-string", setp(["process", "terminal"], "true"), False)
case("uid-string", setp(["process", "user", "uid"], "x"), False)
case("uid-negative", setp(["process", "user", "uid"], -1), False)
case("uid-over-uint32", setp(["process", "user", "uid"], 4294967296), False)
case("uid-float", setp(["process", "user", "uid"], 1.0), False)
case("gid-bool", setp(["process", "user", "gid"], True), False)
case("additionalGids-strings", setp(["process", "user", "additionalGids"], ["5"]), False)
case("umask-negative", setp(["process", "user", "umask"], -18), False)
case("consoleSize-without-width", setp(["process", "consoleSize"], {"height": 25}), False)
case("rlimit-without-soft", delp("process", "rlimits", 0, "soft"), False)
case("rlimit-lowercase-type", setp(["process", "rlimits", 0, "type"], "rlimit_nofile"), False)
case("rlimit-over-uint64", setp(["process", "rlimits", 0, "hard"], 18446744073709551616), False)
case("capabilities-string", setp(["process", "capabilities", "bounding"], "CAP_KILL"), False)
case("noNewPrivileges-number", setp(["process", "noNewPrivileges"], 1), False)
case("oomScoreAdj-string", setp(["process", "oomScoreAdj"], "0"), False)
case("hooks-object", setp(["hooks"], {"prestart": {"path": "/x"}}), False)
case("hook-without-path", setp(["hooks"], {"poststart": [{"args": ["x"]}]}), False)
case("hook-timeout-zero", setp(["hooks"], {"poststop": [{"path": "/x", "timeout": 0}]}), False)
case("hook-timeout-string", setp(["hooks"], {"poststop": [{"path": "/x", "timeout": "5"}]}), False)
case("hook-args-string", setp(["hooks"], {"createRuntime": [{"path": "/x", "args": "x"}]}), False)
case("annotation-value-number", setp(["annotations"], {"a": 1}), False)
case("annotations-array", setp(["annotations"], ["a=b"]), False)
case("hostname-number", setp(["hostname"], 7), False)
case("namespace-type-net", setp(["linux", "namespaces", 1, "type"], "net"), False)
case("namespace-without-type", setp(["linux", "namespaces", 1], {"path": "/run/netns/x"}), False)
case("namespace-path-number", setp(["linux", "namespaces", 1, "path"], 3), False)
case("uidMapping-without-hostID", setp(["linux", "uidMappings"], [{"containerID": 0, "size": 1}]), False)
case("device-type-x", setp(["linux", "devices"], [{"path": "/dev/x", "type": "x"}]), False)
case("device-without-path", setp(["linux", "devices"], [{"type": "c", "major": 1, "minor": 3}]), False)
case("device-rule-without-allow", setp(["linux", "resources", "devices", 0], {"access": "rwm"}), False)
case("memory-limit-string", setp(["linux", "resources", "memory"], {"limit": "1G"}), False)
case("memory-limit-over-int64", setp(["linux", "resources", "memory"], {"limit": 2 ** 63}), False)
case("cpu-shares-negative", setp(["linux", "resources", "cpu"], {"shares": -1}), False)
case("pids-without-limit", setp(["linux", "resources", "pids"], {}), False)
case("hugepage-size-2M", setp(["linux", "resources", "hugepageLimits"], [{"pageSize": "2M", "limit": 1}]), False)
case("blkio-weight-over-uint16", setp(["linux", "resources", "blockIO"], {"weight": 70000}), False)
case("blkio-weightDevice-without-major", setp(["linux", "resources", "blockIO"],
     {"weightDevice": [{"minor": 0, "weight": 10}]}), False)
case("net-priority-without-priority", setp(["linux", "resources", "network"],
     {"priorities": [{"name": "eth0"}]}), False)
case("rdma-negative", setp(["linux", "resources", "rdma"], {"mlx": {"hcaHandles": -1}}), False)
case("rootfsPropagation-rslave", setp(["linux", "rootfsPropagation"], "rslave"), True, official=False,
     why="runc takes the recursive propagation modes; the 1.0.2 schema predates them")
case("rootfsPropagation-bogus", setp(["linux", "rootfsPropagation"], "rwhatever"), False)
case("seccomp-without-defaultAction", setp(["linux", "seccomp"], {"syscalls": []}), False)
case("seccomp-action-deny", setp(["linux", "seccomp"], seccomp(defaultAction="SCMP_ACT_DENY")), False)
case("seccomp-empty-names", setp(["linux", "seccomp"], seccomp(syscalls=[{"names": [], "action": "SCMP_ACT_ALLOW"}])), False)
case("seccomp-bad-operator", setp(["linux", "seccomp"], seccomp(syscalls=[
     {"names": ["x"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}])), False)
case("seccomp-arg-without-index", setp(["linux", "seccomp"], seccomp(syscalls=[
     {"names": ["x"], "action": "SCMP_ACT_ALLOW", "args": [{"value": 1, "op": "SCMP_CMP_EQ"}]}])), False)
case("seccomp-arch-x86_64", setp(["linux", "seccomp"], seccomp(architectures=["x86_64"])), False)
case("seccomp-bad-flag", setp(["linux", "seccomp"], seccomp(flags=["SECCOMP_FILTER_FLAG_FOO"])), False)
case("seccomp-errnoRet-negative", setp(["linux", "seccomp"], seccomp(defaultErrnoRet=-1)), False)
case("sysctl-number", setp(["linux", "sysctl"], {"net.ipv4.ip_forward": 1}), False)
case("maskedPaths-string", setp(["linux", "maskedPaths"], "/proc/kcore"), False)
case("personality-LINUX64", setp(["linux", "personality"], {"domain": "LINUX64"}), False)
case("memBwSchema-L3", setp(["linux", "intelRdt"], {"memBwSchema": "L3:0=ff"}), False)
case("unified-number", setp(["linux", "resources", "unified"], {"memory.max": 5}), False)

# --- the official schema disagrees; the spec decides ----------------------------
case("ociVersion-not-semver", setp(["ociVersion"], "1.0"), False, official=True,
     why="config.md: ociVersion MUST be in SemVer v2.0.0 format; official checks only the type")
case("hook-relative-path", setp(["hooks"], {"prestart": [{"path": "bin/hook"}]}), False, official=True,
     why="config.md (POSIX hooks): path MUST be absolute; official checks only the type")
case("annotation-empty-key", setp(["annotations"], {"": "x"}), False, official=True,
     why="config.md: annotation keys MUST NOT be an empty string; official's patternProperties .{1,} skip ''")
case("annotation-newline-key-number-value", setp(["annotations"], {"\n": 1}), False, official=True,
     why="config.md: annotation values MUST be strings; '.' does not match a newline so official skips the key")
case("device-type-trailing-newline", setp(["linux", "devices"], [{"path": "/dev/x", "type": "c\n"}]), False,
     official=True, why="config-linux.md: type is one of c, b, u, p; official's ^[cbup]$ under Python's re "
     "(not ECMA 262) lets $ match before a final newline")
case("rlimit-type-trailing-newline", setp(["process", "rlimits", 0, "type"], "RLIMIT_NOFILE\n"), False,
     official=True, why="same Python-re $ leak in official ^RLIMIT_[A-Z]+$; ours adds (?!\\n)")
case("device-rule-type-x", setp(["linux", "resources", "devices", 0, "type"], "x"), False, official=True,
     why="config-linux.md: device rule type is a (all), c (char) or b (block); official checks only the type")
case("device-fileMode-setgid", setp(["linux", "devices"], [{"path": "/dev/x", "type": "c", "fileMode": 1462}]),
     True, official=False, why="config-linux.md: fileMode is a uint32; official caps it at 512 (not even 0777=511)")
case("namespace-time", lambda c: c["linux"]["namespaces"].append({"type": "time"}), True, official=False,
     why="runtime-spec 1.2 adds the time namespace; the packaged schema predates it")
case("seccomp-arch-loongarch64", setp(["linux", "seccomp"], seccomp(architectures=["SCMP_ARCH_LOONGARCH64"])),
     True, official=False, why="runtime-spec 1.2 adds SCMP_ARCH_LOONGARCH64/M68K/SH/SHEB; the packaged schema predates them")
case("scheduler-bad-policy", setp(["process", "scheduler"], {"policy": "SCHED_FAST"}), False, official=True,
     why="runtime-spec 1.2 process.scheduler.policy enum; the packaged schema predates the field (ignores it)")
case("ioPriority-without-class", setp(["process", "ioPriority"], {"priority": 1}), False, official=True,
     why="runtime-spec 1.2 process.ioPriority.class is REQUIRED; the packaged schema predates the field")
case("intelRdt-schemata-string", setp(["linux", "intelRdt"], {"schemata": "L3:0=ff"}), False, official=True,
     why="runtime-spec 1.2 linux.intelRdt.schemata is an array of strings; the packaged schema predates it")


@pytest.mark.parametrize("doc, valid, official_valid", CASES)
def test_runtime_config_corpus(doc, valid, official_valid):
    assert ours("runtime-config.json").is_valid(doc) is valid
    if valid:
        validate_config(doc)
    else:
        with pytest.raises(SpecError):
            validate_config(doc)
    assert official(OFFICIAL_RUNTIME, "config-schema.json").is_valid(doc) is official_valid


def test_corpus_is_big_enough():
    assert len(CASES) >= 40
    assert sum(1 for p in CASES if p.values[1]) >= 10


STATE = {"ociVersion": "1.0.2", "id": "c1", "status": "running", "pid": 4242, "bundle": "/run/b",
         "annotations": {"a": "b"}}
STATE_CASES = []


def state_case(name, change, valid, official=None, why=None):
    doc = dict(STATE)
    change(doc)
    STATE_CASES.append(pytest.param(doc, valid, valid if official is None else official, id=name))


state_case("running", lambda d: None, True)
state_case("creating-without-pid", lambda d: (d.pop("pid"), d.update(status="creating")), True)
state_case("stopped-without-pid", lambda d: (d.pop("pid"), d.update(status="stopped")), True)
state_case("created", lambda d: d.update(status="created"), True)
state_case("status-paused", lambda d: d.update(status="paused"), False)
state_case("no-id", lambda d: d.pop("id"), False)
state_case("no-bundle", lambda d: d.pop("bundle"), False)
state_case("pid-negative", lambda d: d.update(pid=-1), False)
state_case("pid-string", lambda d: d.update(pid="1"), False)
state_case("annotations-number", lambda d: d.update(annotations={"a": 1}), False)
state_case("running-without-pid", lambda d: d.pop("pid"), False, official=True,
           why="runtime.md: pid is REQUIRED when status is created or running on Linux")
state_case("bundle-relative", lambda d: d.update(bundle="b"), False, official=True,
           why="runtime.md: bundle MUST be an absolute path")


@pytest.mark.parametrize("doc, valid, official_valid", STATE_CASES)
def test_runtime_state_corpus(doc, valid, official_valid):
    assert ours("runtime-state.json").is_valid(doc) is valid
    if valid:
        validate_state(doc)
    else:
        with pytest.raises(SpecError):
            validate_state(doc)
    assert official(OFFICIAL_RUNTIME, "state-schema.json").is_valid(doc) is official_valid


def test_official_version():
    # The disagreements above are stated against this exact packaged version.
    official(OFFICIAL_RUNTIME, "config-schema.json")
    assert version_of("runtime-spec") == "1.0.2-dev"
