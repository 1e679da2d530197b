"""`pyrun features` held to what pyrun does (issue 20): every namespace, mount option,
capability, hook, seccomp action, operator, architecture and flag it lists is accepted by a
real create (batched: one create carries many, and a batch that fails is split until the
culprits are named), and the namespaces and capabilities it lists are really there; what it
says it does not support (intelRdt, AppArmor or SELinux off, no systemd cgroups) is refused
with one line naming it."""
import json
import os
import subprocess
import threading

import pytest

from tests.conftest import PYRUN
from tests.support.bundle import read_config, write_config
from tests.support.checks import fd_listener, one_line_error, receive_fd

# The ns link of each namespace type of the spec.
NS_LINKS = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts", "user": "user",
            "cgroup": "cgroup", "time": "time"}
# The identity: the container's root may still reach a bundle under pytest's 0700 directories.
USERNS = {"uidMappings": [{"containerID": 0, "hostID": 0, "size": 65536}],
          "gidMappings": [{"containerID": 0, "hostID": 0, "size": 65536}]}
# The big-endian archs: libseccomp puts no two archs of different byte orders in one filter.
BIG_ENDIAN = {"SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
              "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64"}
# Syscalls the container's init and `sleep` never make: a rule on one changes nothing they do.
QUIET_SYSCALLS = ["acct", "swapon", "swapoff", "reboot", "kexec_load", "init_module", "delete_module",
                  "syslog", "quotactl", "pivot_root", "settimeofday", "sethostname", "setdomainname",
                  "iopl", "ioperm", "vhangup", "lookup_dcookie", "nfsservctl", "uselib", "sysfs"]


@pytest.fixture(scope="module")
def features():
    p = subprocess.run([PYRUN, "features"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _edit(b, fn):
    cfg = read_config(b)
    fn(cfg)
    write_config(b, cfg)
    return b


class Creator:
    """create + delete of one bundle per call, under fresh IDs."""

    def __init__(self, pyrun, bundle):
        self.pyrun, self.bundle, self.n = pyrun, bundle, 0

    def create(self, change, args=("sleep", "100"), inspect=None):
        """The create's result (and whatever inspect(pid) said while the container existed)."""
        self.n += 1
        cid = f"feat{self.n}"
        b = _edit(self.bundle(list(args)), change)
        p = self.pyrun("create", "-b", b, cid)
        seen = None
        try:
            if p.returncode == 0 and inspect:
                seen = inspect(json.loads(self.pyrun("state", cid, check=True).stdout)["pid"])
        finally:
            self.pyrun("delete", "-f", cid)
        return p, seen

    def refused(self, items, change_for):
        """The items whose change a create refuses: all of them in one create first, then
        halves of a failing batch, down to single items. {item: its error line}."""
        def apply(batch):
            return lambda cfg: [change_for(item)(cfg) for item in batch]
        p, _ = self.create(apply(items))
        if p.returncode == 0:
            return {}
        if len(items) == 1:
            return {items[0]: p.stderr.strip()}
        half = len(items) // 2
        out = self.refused(items[:half], change_for)
        out.update(self.refused(items[half:], change_for))
        if not out:  # each half passes and the whole does not: say so, with the whole's error
            out[tuple(items)] = p.stderr.strip()
        return out


@pytest.fixture
def creator(pyrun, bundle):
    return Creator(pyrun, bundle)


# --- what features lists is accepted -------------------------------------------------------------

def test_every_namespace_listed_is_made(features, creator):
    listed = features["linux"]["namespaces"]
    assert set(listed) <= set(NS_LINKS), listed

    def all_of_them(cfg):
        cfg["linux"]["namespaces"] = [{"type": t} for t in listed]
        if "user" in listed:
            cfg["linux"].update(json.loads(json.dumps(USERNS)))
            cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] != "cgroup"]

    def links(pid):
        return {t: (os.readlink(f"/proc/{pid}/ns/{NS_LINKS[t]}"), os.readlink(f"/proc/self/ns/{NS_LINKS[t]}"))
                for t in listed}
    p, seen = creator.create(all_of_them, inspect=links)
    assert p.returncode == 0, p.stderr
    shared = [t for t, (theirs, ours) in seen.items() if theirs == ours]
    assert not shared, f"features lists {shared}, and the container made with them shares the host's"


def test_every_capability_listed_is_granted(features, pyrun, bundle):
    listed = features["linux"]["capabilities"]
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    from runtime.process import CAPABILITIES
    bounding = int(open("/proc/self/status").read().split("CapBnd:")[1].split()[0], 16)
    # the kernel here knows these, and this test's own bounding set has them (no one may grant more)
    known = [c for c in listed if CAPABILITIES[c] <= last and bounding & (1 << CAPABILITIES[c])]
    b = _edit(bundle(["sh", "-c", "grep -E '^Cap(Bnd|Eff|Prm)' /proc/self/status"]), lambda c: c["process"].__setitem__(
        "capabilities", {k: list(known) for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}))
    out = pyrun.run_ok(b, "caps")
    want = sum(1 << CAPABILITIES[c] for c in known)
    got = {line.split(":")[0]: int(line.split()[1], 16) for line in out.splitlines()}
    assert set(got) == {"CapBnd", "CapEff", "CapPrm"}, out
    for field, mask in got.items():
        missing = sorted(c for c in known if not mask & (1 << CAPABILITIES[c]))
        assert not missing, f"{field} lacks {missing}, which features lists"
    assert all(mask == want for mask in got.values()), (got, want)


def _mount_for(option: str, src: str, kind: str):
    """A mount that carries `option`: a bind of src (kind "bind"), or a tmpfs (kind "tmpfs", for
    the options of a superblock, which a bind cannot take); idmap options get mappings."""
    def change(cfg):
        dest = f"/opt-{option}"
        if kind == "tmpfs":
            m = {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": [option]}
        else:
            base = [] if option in ("bind", "rbind") else ["rbind"]
            m = {"destination": dest, "type": "bind", "source": src, "options": base + [option]}
        if option in ("idmap", "ridmap"):
            m["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
            m["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
        cfg["mounts"].append(m)
    return change


def test_every_mount_option_listed_is_accepted(features, creator, tmp_path):
    """Each on a bind, and those a bind refuses on a tmpfs: each must be taken by one of them."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    on_bind = creator.refused(list(features["mountOptions"]), lambda o: _mount_for(o, str(src), "bind"))
    assert all(isinstance(o, str) for o in on_bind), on_bind
    refused = creator.refused(sorted(on_bind), lambda o: _mount_for(o, str(src), "tmpfs"))
    assert not refused, "mount options features lists and create refuses on a bind and on a tmpfs:\n" + "\n".join(
        f"{k}: {on_bind.get(k, '')} / {v}" for k, v in refused.items())


def test_every_hook_listed_is_run(features, pyrun, bundle, tmp_path):
    logs = tmp_path / "hooklog"
    logs.mkdir()
    log = logs / "hooks.log"

    def hooks(cfg):
        cfg["hooks"] = {k: [{"path": "/bin/sh", "args": ["sh", "-c", f"cat >/dev/null; echo {k} >> {log}"]}]
                        for k in features["hooks"]}
        # createContainer and startContainer run in the container's mount namespace: the log is
        # bound there at the same path
        cfg["mounts"].append({"destination": str(logs), "type": "bind", "source": str(logs), "options": ["rbind"]})
    b = _edit(bundle(["true"], private_rootfs=True), hooks)
    pyrun("run", "-b", b, "hooks", check=True)
    ran = log.read_text().split()
    assert sorted(ran) == sorted(features["hooks"]), ran


def _seccomp(rules, **extra):
    def change(cfg):
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules, **extra}
    return change


def _add_rule(rule):
    def change(cfg):
        cfg["linux"].setdefault("seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []})["syscalls"].append(rule)
    return change


def test_every_seccomp_action_listed_is_accepted(features, creator, tmp_path):
    actions = [a for a in features["linux"]["seccomp"]["actions"] if a != "SCMP_ACT_NOTIFY"]
    assert len(actions) <= len(QUIET_SYSCALLS)
    rules = [{"names": [QUIET_SYSCALLS[i]], "action": a} for i, a in enumerate(actions)]
    refused = creator.refused(rules, _add_rule)
    assert not refused, refused
    if "SCMP_ACT_NOTIFY" in features["linux"]["seccomp"]["actions"]:
        path = str(tmp_path / "agent.sock")
        srv = fd_listener(path)
        got = []
        t = threading.Thread(target=lambda: got.append(receive_fd(srv)), daemon=True)
        t.start()
        b = _edit(creator.bundle(["true"]), _seccomp([{"names": ["acct"], "action": "SCMP_ACT_NOTIFY"}],
                                                     listenerPath=path))
        p = creator.pyrun("run", "-d", "-b", b, "feat-notify")  # the filter exists once the process does
        t.join(10)
        creator.pyrun("delete", "-f", "feat-notify")
        srv.close()
        assert p.returncode == 0, p.stderr
        assert got and b"seccompFd" in got[0][0], got  # the agent got the listener fd
        os.close(got[0][1])


def test_every_seccomp_operator_arch_and_flag_listed_is_accepted(features, creator):
    sc = features["linux"]["seccomp"]
    ops = [{"names": ["acct"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 0, "value": 7, "valueTwo": 7 if op == "SCMP_CMP_MASKED_EQ" else 0, "op": op}]}
           for op in sc["operators"]]
    p, _ = creator.create(_seccomp(ops))
    assert p.returncode == 0, f"the operators {sc['operators']}: {p.stderr}"
    native = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}.get(os.uname().machine)
    if native:  # one filter may hold only the archs of the native byte order (libseccomp's rule)
        little = [a for a in sc["archs"] if a not in BIG_ENDIAN]
        p, _ = creator.create(_seccomp([{"names": ["acct"], "action": "SCMP_ACT_ERRNO"}], architectures=little))
        assert p.returncode == 0, f"the architectures {little}: {p.stderr}"
    for flag in sc["supportedFlags"]:
        p, _ = creator.create(_seccomp([{"names": ["acct"], "action": "SCMP_ACT_ERRNO"}], flags=[flag]))
        assert p.returncode == 0, f"the supported flag {flag}: {p.stderr}"
    assert set(sc["supportedFlags"]) <= set(sc["knownFlags"]), sc


def test_seccomp_arch_refused_here_is_named(features, creator):
    """The archs of the other byte order are listed (recognised) but cannot join a native filter:
    each is then refused by name."""
    native = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}.get(os.uname().machine)
    other = sorted(set(features["linux"]["seccomp"]["archs"]) & BIG_ENDIAN)
    if not native or not other:
        pytest.skip("no arch of the other byte order listed on this host")
    for arch in other:
        p, _ = creator.create(_seccomp([{"names": ["acct"], "action": "SCMP_ACT_ERRNO"}], architectures=[native, arch]))
        if p.returncode != 0:
            one_line_error(p, arch)


def test_idmap_mount_extension(features, creator, tmp_path):
    if not features["linux"]["mountExtensions"]["idmap"]["enabled"]:
        pytest.skip("features says idmapped mounts are off (the refusal is tested below)")
    src = tmp_path / "src"
    src.mkdir()
    p, _ = creator.create(_mount_for("idmap", str(src), "bind"))
    assert p.returncode == 0, p.stderr


def test_oci_versions_listed_are_accepted(features, creator):
    for v in (features["ociVersionMin"], features["ociVersionMax"]):
        p, _ = creator.create(lambda cfg, v=v: cfg.__setitem__("ociVersion", v))
        assert p.returncode == 0, f"ociVersion {v}: {p.stderr}"


# --- what features says is off is refused, by name ----------------------------------------------

def test_intel_rdt_off_is_refused(features, creator):
    assert features["linux"]["intelRdt"]["enabled"] is False, "intelRdt on: test that it is applied instead"
    p, _ = creator.create(lambda cfg: cfg["linux"].__setitem__("intelRdt", {"closID": "feat"}))
    assert "intelRdt" in one_line_error(p)


@pytest.mark.parametrize("lsm,field,value,needle", [
    ("apparmor", "process.apparmorProfile", "feat-profile", "AppArmor"),
    ("selinux", "process.selinuxLabel", "system_u:system_r:container_t:s0", "SELinux"),
    ("selinux", "linux.mountLabel", "system_u:object_r:container_file_t:s0", "mountLabel"),
])
def test_lsm_off_is_refused(features, creator, lsm, field, value, needle):
    if features["linux"][lsm]["enabled"]:
        pytest.skip(f"features says {lsm} is on")
    section, key = field.split(".")
    p, _ = creator.create(lambda cfg: cfg[section].__setitem__(key, value))
    assert needle in one_line_error(p)


def test_systemd_cgroups_off_is_refused(features, pyrun, bundle):
    assert features["linux"]["cgroup"]["systemd"] is False, "systemd on: test that it is used instead"
    p = pyrun("create", "-b", bundle(["true"]), "feat-sd", global_args=("--systemd-cgroup",))
    assert "--systemd-cgroup" in one_line_error(p)
    assert pyrun.ids() == []


def test_seccomp_action_not_listed_is_refused(features, creator):
    assert "SCMP_ACT_CF_BOGUS" not in features["linux"]["seccomp"]["actions"]
    p, _ = creator.create(_seccomp([{"names": ["acct"], "action": "SCMP_ACT_CF_BOGUS"}]))
    assert "SCMP_ACT_CF_BOGUS" in one_line_error(p)


def test_fields_pyrun_applies_are_listed(features):
    linux = features["linux"]
    assert linux.get("netDevices", {}).get("enabled") is True
    assert "MPOL_INTERLEAVE" in linux.get("memoryPolicy", {}).get("modes", [])
