"""Issue 15's hostile config corpus, made here: every case is refused or confined, and the host
is left as it was.

A case is a config.json (or a rootfs) an attacker wrote. Refused means: non-zero exit, one
line on stderr that is a message and not a crash report (no Python exception name), and
nothing made. Confined means: the container runs, and what it and the runtime did stayed
inside the rootfs. In both, for every case (host_guard):
  - a marker directory outside the rootfs, which every hostile symlink and `..` aims at,
    stays empty;
  - a sample of the host's sysctls, its mount table, and the top-level directories of
    every cgroup hierarchy are unchanged (tests/support/hostsnap.py);
  - no state directory is left and no process lives on in an hx- cgroup.
Cases where runc (installed, the oracle) refuses are run against it as well: where
runc refuses, pyrun must refuse too.

Malformed JSON and schema violations already covered by test_errors.py (and the
type-correct mutations of test_config_fuzz.py) are not repeated here.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Callable

import pytest

from tests.support.bundle import read_config, write_config
from tests.support.hostsnap import HostSnapshot

PREFIX = "hx-"
UP = "../" * 16  # more `..` than any bundle path is deep: a relative link that climbs out
NUL = "\0"
MiB = 1 << 20
MAX_DOCUMENT = 16 * MiB  # runtime/state.py's bound on config.json, restated as the contract
# What the container runs in a confined case: it writes wherever the hostile links lead,
# and says it got that far. stderr joins stdout: the image's /dev/null may be a trap.
PROBE = ('exec 2>&1; for d in "$HX_MARK" /data /dev /etc /tmp /work /secretdir; do'
         ' touch "$d/hx-probe"; done; echo probe-done')
# A refusal is a message: a Python exception's name in it means something crashed instead.
_CRASH = re.compile(r"Traceback|\b[A-Z][A-Za-z]*(Error|Exception)\b: ")


@dataclass
class Env:
    marker: str   # the host directory that must stay empty
    bundle: str
    rootfs: str

    def fmt(self, s: str) -> str:
        return s.replace("{M}", self.marker).replace("{UP}", UP)


@dataclass
class Case:
    id: str
    expect: str                      # "refuse" (at create), "confine", or "either"
    config: Callable | None = None   # config.json edit: f(config, env)
    rootfs: Callable | None = None   # rootfs edit: f(rootfs, env)
    needles: tuple = ()              # a refusal names one of these
    document: Callable | None = None  # config.json's raw bytes instead: f(config, env) -> bytes
    runc: bool = False               # also run against runc (where runc refuses, we refuse)


# -- building blocks ------------------------------------------------------------------------

def mount(dest, type="tmpfs", source="tmpfs", options=None):
    m = {"destination": dest, "type": type, "source": source}
    if options is not None:
        m["options"] = options

    def edit(c, env):
        m2 = {k: env.fmt(v) if isinstance(v, str) else v for k, v in m.items()}
        c["mounts"].append(m2)
    return edit


def drop_mounts(*dests):
    def edit(c, env):
        c["mounts"] = [m for m in c["mounts"] if m["destination"] not in dests]
    return edit


def no_cgroup_mount(c, env):
    c["mounts"] = [m for m in c["mounts"] if m["type"] != "cgroup"]


def setting(*where_value):
    """setting("process", "cwd", "/x"): set a value (strings may use {M} and {UP})."""
    *where, value = where_value

    def edit(c, env):
        o = c
        for k in where[:-1]:
            o = o.setdefault(k, {})
        o[where[-1]] = env.fmt(value) if isinstance(value, str) else value
    return edit


def appending(*where_value):
    *where, value = where_value

    def edit(c, env):
        o = c
        for k in where[:-1]:
            o = o.setdefault(k, {})
        o.setdefault(where[-1], []).append(json.loads(env.fmt(json.dumps(value))))
    return edit


def device(path, **kw):
    return appending("linux", "devices", {"path": path, "type": "c", "major": 1, "minor": 3, **kw})


def both(*edits):
    def edit(c, env):
        for e in edits:
            e(c, env)
    return edit


def _cleared(rootfs, path) -> str:
    """`path` in the rootfs, with whatever the image had there removed (a tree, a file, a link)."""
    p = os.path.join(rootfs, path.lstrip("/"))
    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p)
    elif os.path.lexists(p):
        os.unlink(p)
    return p


def link(path, target):
    """Replace `path` in the rootfs by a symlink to `target` ({M}: the marker)."""
    def edit(rootfs, env):
        p = _cleared(rootfs, path)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        os.symlink(env.fmt(target), p)
    return edit


def regular_file(path):
    def edit(rootfs, env):
        with open(_cleared(rootfs, path), "w") as f:
            f.write("not what it seems\n")
    return edit


def link_chain(n):
    """/l0 -> /l1 -> ... -> /l{n}, the last a directory: n links to follow from /l0."""
    def edit(rootfs, env):
        for i in range(n):
            os.symlink(f"/l{i + 1}", os.path.join(rootfs, f"l{i}"))
        os.mkdir(os.path.join(rootfs, f"l{n}"))
    return edit


def rootfs_link(target):
    """root.path names a symlink in the bundle ({M}: the marker)."""
    def edit(c, env):
        os.symlink(env.fmt(target), os.path.join(env.bundle, "rootfs-link"))
        c["root"]["path"] = "rootfs-link"
    return edit


def text(s: str) -> Callable:
    return lambda c, env: s.encode("utf-8", "surrogatepass")


def padded(extra: int) -> Callable:
    """The real config, then whitespace up to MAX_DOCUMENT + extra bytes: valid JSON."""
    def doc(c, env):
        data = json.dumps(c).encode()
        return data + b" " * (MAX_DOCUMENT + extra - len(data))
    return doc


def huge_string_doc(c, env):
    c["annotations"] = {"hx": "x" * MAX_DOCUMENT}
    return json.dumps(c).encode()


def nested_in(c, kind: str, depth: int = 100_000) -> bytes:
    opener, closer = {"list": ("[", "]"), "object": ('{"a":', "}"), "mixed": ('[{"a":', "}]")}[kind]
    c["annotations"] = {"hx": "@@"}
    return json.dumps(c).replace('"@@"', opener * depth + "1" + closer * depth).encode()


def replacing(old: str, new: str) -> Callable:
    """The config's JSON text with `old` replaced (lone surrogates in `new`: raw bytes)."""
    def doc(c, env):
        data = json.dumps(c)
        assert old in data, old
        return data.replace(old, new, 1).encode("utf-8", "surrogateescape")
    return doc


# -- the corpus -------------------------------------------------------------------------------

DOCUMENTS = [
    Case("doc-over-16MiB-whitespace", "refuse", document=padded(1), needles=(str(MAX_DOCUMENT),)),
    Case("doc-over-16MiB-one-string", "refuse", document=huge_string_doc, needles=(str(MAX_DOCUMENT),)),
    Case("doc-100k-nested-objects", "refuse", document=lambda c, e: nested_in(c, "object"),
         needles=("nested too deeply",), runc=True),
    Case("doc-100k-nested-inside-valid-config", "refuse", document=lambda c, e: nested_in(c, "list"),
         needles=("nested too deeply",)),
    Case("doc-100k-nested-mixed", "refuse", document=lambda c, e: nested_in(c, "mixed"),
         needles=("nested too deeply",)),
    Case("doc-empty", "refuse", document=text(""), needles=("config.json",)),
    Case("doc-null", "refuse", document=text("null"), needles=("object",)),
    Case("doc-array", "refuse", document=text("[]"), needles=("object",)),
    Case("doc-number", "refuse", document=text("42"), needles=("object",)),
    Case("doc-utf8-bom", "refuse", document=lambda c, e: b"\xef\xbb\xbf" + json.dumps(c).encode(),
         needles=("config.json",)),
    Case("doc-utf16", "refuse", document=lambda c, e: json.dumps(c).encode("utf-16"), needles=("config.json",)),
    Case("doc-invalid-utf8-in-a-string", "refuse", document=replacing('"hx-host"', '"hx-\udcffhost"'),
         needles=("utf-8",)),
    Case("doc-raw-nul-byte-in-a-string", "refuse", document=replacing('"hx-host"', '"hx-\x00host"'),
         needles=("control character",)),
    Case("doc-trailing-garbage", "refuse", document=lambda c, e: json.dumps(c).encode() + b"}",
         needles=("extra data",)),
    Case("doc-two-documents", "refuse", document=lambda c, e: json.dumps(c).encode() * 2, needles=("extra data",)),
    Case("doc-5000-digit-integer", "refuse", document=replacing('"uid": 0', '"uid": ' + "9" * 5000),
         needles=("digits",)),
    Case("doc-1e999", "refuse", document=replacing('"uid": 0', '"uid": 1e999'), needles=("uid",)),
]

WRONG_TYPES = [  # each a schema violation test_errors.py does not have; the line names the field
    Case("type-args-a-string", "refuse", setting("process", "args", "sh -c true"), needles=("args",)),
    Case("type-env-an-object", "refuse", setting("process", "env", {"PATH": "/bin"}), needles=("env",)),
    Case("type-mounts-an-object", "refuse", setting("mounts", {"destination": "/x"}), needles=("mounts",)),
    Case("type-root-a-string", "refuse", setting("root", "rootfs"), needles=("root",)),
    Case("type-linux-a-list", "refuse", setting("linux", []), needles=("linux",)),
    Case("type-namespace-a-string", "refuse", setting("linux", "namespaces", ["pid"]), needles=("namespaces",)),
    Case("type-capabilities-a-string", "refuse", setting("process", "capabilities", "CAP_SYS_ADMIN"),
         needles=("capabilities",)),
    Case("type-rlimits-an-object", "refuse", setting("process", "rlimits", {"type": "RLIMIT_NOFILE"}),
         needles=("rlimits",)),
    Case("type-hostname-a-number", "refuse", setting("hostname", 5), needles=("hostname",)),
    Case("type-terminal-a-string", "refuse", setting("process", "terminal", "yes"), needles=("terminal",)),
    Case("type-console-size-negative", "refuse", setting("process", "consoleSize", {"height": -1, "width": 80}),
         needles=("consoleSize", "height")),
    Case("type-additional-gid-negative", "refuse", setting("process", "user", "additionalGids", [-1]),
         needles=("additionalGids",)),
    Case("type-oom-score-adj-out-of-range", "refuse", setting("process", "oomScoreAdj", 1001),
         needles=("oomScoreAdj",)),
    Case("type-sysctl-value-a-number", "refuse", setting("linux", "sysctl", {"kernel.shmmax": 1}),
         needles=("sysctl",)),
    Case("type-device-path-a-number", "refuse", appending("linux", "devices", {"path": 5, "type": "c"}),
         needles=("devices",)),
    Case("type-masked-paths-a-string", "refuse", setting("linux", "maskedPaths", "/proc/kcore"),
         needles=("maskedPaths",)),
    Case("type-hooks-an-object", "refuse", setting("hooks", "prestart", {"path": "/bin/true"}),
         needles=("prestart",)),
    Case("type-annotation-a-number", "refuse", setting("annotations", {"a": 1}), needles=("annotations",)),
    Case("type-mount-destination-null", "refuse", appending("mounts", {"destination": None, "type": "tmpfs"}),
         needles=("destination",)),
    Case("type-memory-limit-a-string", "refuse", setting("linux", "resources", {"memory": {"limit": "1G"}}),
         needles=("limit",)),
    Case("type-seccomp-action-unknown", "refuse", setting("linux", "seccomp", {"defaultAction": "ALLOW"}),
         needles=("defaultAction",)),
    Case("type-uid-a-float", "refuse", setting("process", "user", "uid", 0.5), needles=("uid",)),
]

HUGE_STRINGS = [
    Case("huge-component", "refuse", mount("/" + "a" * 300), needles=("too long",)),
    Case("huge-argument", "either", setting("process", "args", ["echo", "x" * MiB]), needles=("too long",)),
    Case("huge-env", "either", appending("process", "env", "HX=" + "x" * (8 * MiB)), needles=("too long",)),
    Case("huge-annotation", "confine", setting("annotations", {"hx": "x" * (15 * MiB)})),
    Case("many-mounts", "confine", lambda c, e: c["mounts"].extend(
        {"destination": f"/tmp/m{i}", "type": "tmpfs", "source": "tmpfs"} for i in range(300))),
]

NUL_BYTES = [  # a NUL can never reach the kernel intact: each is refused at create, naming the field
    Case("nul-mount-source", "refuse", mount("/mnt", "bind", "/tm" + NUL + "p", ["rbind"]), needles=("source", "/tm")),
    Case("nul-mount-type", "refuse", mount("/mnt", "tmp" + NUL + "fs"), needles=("type", "tmp")),
    Case("nul-arg", "refuse", setting("process", "args", ["ec" + NUL + "ho"]), needles=("args", "ec")),
    Case("nul-cwd", "refuse", setting("process", "cwd", "/tm" + NUL + "p"), needles=("cwd",)),
    Case("nul-sysctl-value", "refuse", setting("linux", "sysctl", {"kernel.shmmax": "4096" + NUL + "1"}),
         needles=("sysctl",)),
    Case("nul-cgroups-path", "refuse", setting("linux", "cgroupsPath", "/" + PREFIX + "cg" + NUL),
         needles=("cgroupsPath",)),
]

DESTINATIONS = [
    Case("dest-relative", "refuse", mount("mnt"), needles=("absolute",)),
    Case("dest-dotdot-to-the-host-marker", "confine", mount("/../../../../../..{M}")),
    Case("dest-absolute-host-path", "confine", mount("{M}")),
    Case("dest-dotdot-into-sys", "refuse", mount("/proc/../sys/kernel"), needles=("sysfs",)),
    Case("dest-through-link-to-marker", "confine", mount("/data"), link("/data", "{M}")),
    Case("dest-through-relative-link-climbing-out", "confine", mount("/data"), link("/data", "{UP}{M}")),
    Case("dest-through-dangling-link", "confine", mount("/data"), link("/data", "/nowhere/at/all")),
    Case("dest-through-link-to-proc-self", "refuse", mount("/data"), link("/data", "../proc/self"),
         needles=("/proc",)),
    Case("dest-through-link-to-proc-sys", "refuse", mount("/data", "bind", "{M}", ["rbind"]),
         link("/data", "/proc/sys/kernel"), needles=("/proc",)),
    Case("dest-through-link-to-sys", "refuse", mount("/data"), link("/data", "/sys/kernel"), needles=("sysfs",)),
    Case("dest-through-link-to-dev", "confine", mount("/data"), link("/data", "/dev")),
    Case("dest-through-link-loop", "refuse", mount("/loop/x"), link("/loop", "/loop"), needles=("symbolic links",),
         runc=True),
    Case("dest-through-41-links", "refuse", mount("/l0"), link_chain(41), needles=("symbolic links",)),
    Case("dest-through-40-links", "confine", mount("/l0"), link_chain(40)),
]

ROOTFS = [
    Case("proc-link-loop", "refuse", None, link("/proc", "/proc"), needles=("/proc",)),
    Case("proc-regular-file", "refuse", None, regular_file("/proc"), needles=("/proc", "proc"), runc=True),
    Case("sys-link-to-marker", "refuse", None, link("/sys", "{M}"), needles=("/sys",)),
    Case("dev-link-to-marker", "confine", None, link("/dev", "{M}")),
    Case("dev-relative-link-climbing-out", "confine", None, link("/dev", "{UP}{M}")),
    Case("dev-link-to-proc", "refuse", None, link("/dev", "/proc"), needles=("/proc",), runc=True),
    Case("dev-link-to-sys", "refuse", None, link("/dev", "/sys"), needles=("/dev",), runc=True),
    Case("dev-link-loop", "refuse", None, link("/dev", "/dev"), needles=("symbolic links",)),
    Case("dev-regular-file", "refuse", None, regular_file("/dev"), needles=("/dev", "dev")),
    # The image's own /dev (no tmpfs over it): what the runtime makes there goes through its links.
    Case("image-dev-null-link-to-marker", "confine", drop_mounts("/dev"), link("/dev/null", "{M}/null")),
    Case("image-dev-null-relative-link-out", "confine", drop_mounts("/dev"), link("/dev/null", "{UP}{M}/null")),
    Case("image-dev-null-link-dangling", "confine", drop_mounts("/dev"), link("/dev/null", "/nowhere/null")),
    Case("image-dev-null-link-loop", "refuse", drop_mounts("/dev"), link("/dev/null", "/dev/null"),
         needles=("/dev/null",), runc=True),
    Case("image-dev-null-regular-file", "confine", drop_mounts("/dev"), regular_file("/dev/null")),
    Case("image-dev-ptmx-link-to-marker", "confine", drop_mounts("/dev"), link("/dev/ptmx", "{M}/ptmx")),
    Case("image-dev-console-link-to-marker", "confine", drop_mounts("/dev"), link("/dev/console", "{M}/console")),
    Case("image-dev-pts-link-to-marker", "confine", drop_mounts("/dev"), link("/dev/pts", "{M}")),
    Case("image-dev-shm-link-into-proc", "refuse", drop_mounts("/dev"), link("/dev/shm", "/proc/sys"),
         needles=("/proc",)),
    Case("image-dev-fd-link-to-marker", "confine", drop_mounts("/dev"), link("/dev/fd", "{M}/fd")),
    Case("etc-link-to-marker", "confine", None, link("/etc", "{M}")),
    Case("etc-link-into-proc", "confine", None, link("/etc", "/proc/sys/kernel")),
    Case("cwd-through-link-inside-the-rootfs", "confine", setting("process", "cwd", "/work"),
         link("/work", "/tmp")),
    Case("cwd-through-link-to-marker", "refuse", setting("process", "cwd", "/work"), link("/work", "{M}"),
         needles=("cwd",)),
    Case("masked-path-through-link-to-marker", "confine", appending("linux", "maskedPaths", "/etc/secret"),
         link("/etc/secret", "{M}/secret")),
    Case("masked-dir-through-link-to-marker", "confine", appending("linux", "maskedPaths", "/secretdir"),
         link("/secretdir", "{M}")),
    Case("readonly-dir-through-link-to-marker", "confine", appending("linux", "readonlyPaths", "/secretdir"),
         link("/secretdir", "{M}")),
    Case("rootfs-is-a-relative-link", "confine", rootfs_link("rootfs")),
    Case("rootfs-link-dangling", "refuse", rootfs_link("/nowhere-" + PREFIX), needles=("rootfs",)),
    Case("rootfs-link-loop", "refuse", rootfs_link("rootfs-link"), needles=("rootfs",)),
    Case("rootfs-link-to-a-file", "refuse", rootfs_link("config.json"), needles=("rootfs",)),
]

DEVICES = [
    Case("device-path-dotdot-to-marker", "confine", device("/dev/../../../../../..{M}/hxdev")),
    Case("device-through-link-to-marker", "confine", device("/data/hxdev"), link("/data", "{M}")),
    Case("device-through-relative-link-out", "confine", device("/data/hxdev"), link("/data", "{UP}{M}")),
    Case("device-under-image-dev-link", "confine", both(drop_mounts("/dev"), device("/dev/hx/dev")),
         link("/dev/hx", "{M}")),
    Case("device-in-proc", "refuse", device("/proc/hxdev"), needles=("/proc/hxdev",), runc=True),
    Case("device-in-sys", "refuse", device("/sys/hxdev"), needles=("/sys/hxdev",), runc=True),
    Case("device-on-the-root", "refuse", device("/"), needles=("/",)),
    Case("device-through-link-loop", "refuse", device("/loop/hxdev"), link("/loop", "/loop"),
         needles=("symbolic links",)),
]

OTHERS = [
    Case("cgroups-path-climbing-out", "refuse", setting("linux", "cgroupsPath", "/" + PREFIX + "cg/../../.."),
         needles=("cgroupsPath",)),
]

CORPUS = DOCUMENTS + WRONG_TYPES + HUGE_STRINGS + NUL_BYTES + DESTINATIONS + ROOTFS + DEVICES + OTHERS


# -- found by this corpus, and fixed since (4cdf5fc, aa00226): each failed on the tree before ------

FOUND = [
    # An init's error longer than a SOCK_SEQPACKET datagram: a second line on stderr
    # (init._fail falls back to writing it itself, then create adds its own), or the line
    # cut at 64 KiB (spawn's recv) before its reason.
    Case("huge-hostname", "refuse", setting("hostname", "h" * MiB), needles=("hostname",)),
    Case("huge-mount-destination", "refuse", mount("/" + "a" * MiB), needles=("too long",)),
    Case("huge-mount-destination-100k", "refuse", mount("/" + "a" * 100_000), needles=("too long",)),
    Case("huge-mount-destination-deep", "refuse", mount("/a" * (MiB // 2)), needles=("too long",)),
    Case("huge-mount-source", "refuse", mount("/mnt", "bind", "/" + "s" * MiB, ["rbind"]), needles=("too long",)),
    Case("huge-cwd", "refuse", setting("process", "cwd", "/" + "c" * MiB), needles=("too long",)),
    Case("huge-masked-path", "refuse", appending("linux", "maskedPaths", "/" + "m" * MiB), needles=("too long",)),
    # A NUL byte: a traceback (create, validate, hooks), the init's "ValueError", or cut
    # silently (a mount option after the NUL is dropped; env only fails at start).
    Case("nul-mount-destination", "refuse", mount("/mnt" + NUL + "x"), needles=("/mnt", "destination"), runc=True),
    Case("nul-mount-option", "refuse", mount("/mnt", options=["mode=755" + NUL + ",uid=5"]),
         needles=("mode=755", "option"), runc=True),
    Case("nul-root-path", "refuse", setting("root", "path", "root" + NUL + "fs"), needles=("root",)),
    Case("nul-env", "refuse", appending("process", "env", "HX=a" + NUL + "b"), needles=("env", "HX="), runc=True),
    Case("nul-masked-path", "refuse", appending("linux", "maskedPaths", "/proc/kc" + NUL + "ore"),
         needles=("maskedPaths", "masked", "/proc/kc")),
    Case("nul-readonly-path", "refuse", appending("linux", "readonlyPaths", "/proc/s" + NUL + "ys"),
         needles=("readonlyPaths", "readonly", "/proc/s")),
    Case("nul-device-path", "refuse", device("/dev/f" + NUL + "z"), needles=("devices", "device", "/dev/f")),
    Case("nul-namespace-path", "refuse", lambda c, e: c["linux"].__setitem__("namespaces", [
        n for n in c["linux"]["namespaces"] if n["type"] != "network"] + [
        {"type": "network", "path": "/proc/self/ns/n" + NUL + "et"}]), needles=("network", "namespace")),
    Case("nul-hook-path", "refuse", appending("hooks", "createRuntime", {"path": "/bin/tr" + NUL + "ue"}),
         needles=("hook", "/bin/tr")),
    Case("surrogate-root-path", "refuse", setting("root", "path", "root\ud800fs"), needles=("root",)),
    # paths.make_at names an undefined `path` for a file mount onto "/".
    Case("dest-file-bind-onto-root", "refuse", mount("/", "bind", "/etc/hostname", ["bind"]), needles=("/",)),
    # procfs/sysfs onto a symlink: runc refuses ("must be mounted on ordinary directory");
    # pyrun mounts them wherever the link leads inside the rootfs.
    Case("proc-link-to-marker", "refuse", None, link("/proc", "{M}"), needles=("/proc",), runc=True),
    Case("proc-relative-link-climbing-out", "refuse", None, link("/proc", "{UP}{M}"), needles=("/proc",)),
    Case("proc-link-dangling", "refuse", None, link("/proc", "/nowhere"), needles=("/proc",), runc=True),
    Case("sys-link-to-marker-no-cgroup-mount", "refuse", no_cgroup_mount, link("/sys", "{M}"),
         needles=("/sys",), runc=True),
    Case("sys-link-dangling-no-cgroup-mount", "refuse", no_cgroup_mount, link("/sys", "/nowhere"),
         needles=("/sys",)),
    # The init's UnicodeEncodeError instead of a refusal naming the hostname.
    Case("hostname-lone-surrogate", "either", setting("hostname", "\ud800"), needles=("hostname",)),
]
CORPUS += FOUND


# -- the contract ------------------------------------------------------------------------------

class HostGuard:
    """The marker directory, and a snapshot of the host taken before the case."""

    def __init__(self, marker: str, pyrun, watch: str):
        self.marker = marker
        self.pyrun = pyrun
        self.snapshot = HostSnapshot(prefixes=(PREFIX,), watch=(watch,))

    def check(self, what: str) -> None:
        assert os.listdir(self.marker) == [], f"{what}: written outside the rootfs: {os.listdir(self.marker)}"
        assert self.pyrun.ids() == [], f"{what}: state left: {self.pyrun.ids()}"
        self.snapshot.assert_unchanged(what)


@pytest.fixture
def host_guard(tmp_path, pyrun):
    marker = tmp_path / "marker-outside-the-rootfs"
    marker.mkdir()
    return HostGuard(str(marker), pyrun, str(tmp_path.parent))


def build(bundle, case: Case, marker: str) -> tuple[str, Env]:
    b = bundle(["sh", "-c", PROBE], private_rootfs=True)
    env = Env(marker=marker, bundle=b, rootfs=os.path.join(b, "rootfs"))
    cfg = read_config(b)
    cfg["hostname"] = "hx-host"
    cfg["process"]["env"].append(f"HX_MARK={marker}")
    if case.rootfs:
        case.rootfs(env.rootfs, env)
    if case.document:
        data = case.document(cfg, env)
        with open(os.path.join(b, "config.json"), "wb") as f:
            f.write(data)
        return b, env
    if case.config:
        case.config(cfg, env)
    write_config(b, cfg)
    return b, env


def refusal(p, case: Case) -> str:
    """The one line a refusal must be: returns it."""
    assert p.returncode != 0, f"{case.id}: accepted (stdout {p.stdout[-500:]!r})"
    lines = p.stderr.strip().splitlines()
    shown = [ln[:300] + ("..." if len(ln) > 300 else "") for ln in lines]
    assert len(lines) == 1, f"{case.id}: {len(lines)} lines on stderr: {shown}"
    line = lines[0]
    assert not _CRASH.search(line), f"{case.id}: a crash, not a message: {shown[0]}"
    if case.needles:
        assert any(n in line for n in case.needles), f"{case.id}: the line names none of {case.needles}: {shown[0]}"
    return line


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_hostile_config_is_refused_or_confined(pyrun, bundle, host_guard, case):
    b, env = build(bundle, case, host_guard.marker)
    cid = PREFIX + case.id[:40]
    if case.expect == "refuse":
        p = pyrun("create", "-b", b, cid, timeout=60)
        if p.returncode == 0:
            pyrun("delete", "--force", cid)
        refusal(p, case)
    else:
        p = pyrun("run", "-b", b, cid, timeout=60)
        if case.expect == "confine":
            assert p.returncode == 0 and "probe-done" in p.stdout, \
                f"{case.id}: did not run: {p.returncode} {p.stderr[-500:]!r} {p.stdout[-500:]!r}"
        elif p.returncode != 0 or "probe-done" not in p.stdout:
            assert "probe-done" not in p.stdout, f"{case.id}: the container ran, then it failed: {p.stderr!r}"
            refusal(p, case)
    host_guard.check(case.id)


# -- /dev/console with a terminal ---------------------------------------------------------------

def test_console_bind_through_an_image_link_stays_inside(pyrun, bundle, host_guard, tmp_path):
    """With a terminal, the runtime binds the pty onto /dev/console: through the image's link
    to the marker, that bind (and the file it needs) lands inside the rootfs."""
    case = Case("console", "confine", both(drop_mounts("/dev"), setting("process", "terminal", True)),
                link("/dev/console", "{M}/console"))
    b, env = build(bundle, case, host_guard.marker)
    cfg = read_config(b)
    cfg["process"]["args"] = ["sh", "-c", "ls -l /dev/console; echo console-done"]
    write_config(b, cfg)
    path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(20)
    try:
        pyrun("create", "-b", b, "--console-socket", path, PREFIX + "console", check=True)
        conn, _ = srv.accept()
        _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        conn.close()
        pyrun("start", PREFIX + "console", check=True)
        out = b""
        while b"console-done" not in out:
            try:
                chunk = os.read(fds[0], 4096)
            except OSError:  # EIO: the container side is gone
                break
            if not chunk:
                break
            out += chunk
        os.close(fds[0])
    finally:
        srv.close()
    assert b"console-done" in out, out
    pyrun("delete", "--force", PREFIX + "console", check=True)
    host_guard.check("console")


# -- runc as the oracle: where runc refuses, pyrun refuses --------------------------------------

RUNC_CASES = [c for c in CORPUS if c.runc]


@pytest.fixture(scope="module")
def runc_works(tmp_path_factory):
    """runc runs the unmodified bundle: its refusals below are about the case, not our bundle."""
    if not shutil.which("runc"):
        pytest.skip("runc is not installed (the oracle)")
    if os.getuid() != 0:
        pytest.skip("needs root: real namespaces, mounts and cgroups")
    from tests.support.bundle import make_bundle
    tmp = tmp_path_factory.mktemp("runc-baseline")
    b = make_bundle(str(tmp / "bundle"), args=["true"])
    p = _runc(str(tmp / "root"), "run", "-b", b, PREFIX + "runc-baseline")
    assert p.returncode == 0, f"runc cannot run our bundle at all: {p.stderr}"
    return True


def _runc(root: str, *args) -> subprocess.CompletedProcess:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.run(["runc", "--root", root, *args], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                           text=True, timeout=60)
        out.seek(0)
        err.seek(0)
        p.stdout, p.stderr = out.read(), err.read()
    return p


@pytest.mark.parametrize("case", RUNC_CASES, ids=lambda c: c.id)
def test_where_runc_refuses_we_refuse(pyrun, bundle, runc_works, tmp_path, case):
    marker = tmp_path / "marker-outside-the-rootfs"
    marker.mkdir()
    b, env = build(bundle, case, str(marker))
    cid = PREFIX + "oracle"
    theirs = _runc(str(tmp_path / "runc-root"), "create", "-b", b, cid)
    _runc(str(tmp_path / "runc-root"), "delete", "--force", cid)
    assert theirs.returncode != 0, f"{case.id}: runc accepts it: the oracle no longer says refuse"
    # (runc 1.1.5 writes through some of these links itself: its traces are not ours to judge)
    for name in os.listdir(marker):
        subprocess.run(["rm", "-rf", str(marker / name)], check=True)
    host_guard = HostGuard(str(marker), pyrun, str(tmp_path.parent))
    ours = pyrun("create", "-b", b, cid, timeout=60)
    if ours.returncode == 0:
        pyrun("delete", "--force", cid)
    assert ours.returncode != 0, f"{case.id}: runc refuses ({theirs.stderr.strip()[-300:]}), pyrun accepts"
    refusal(ours, case)
    host_guard.check(case.id)
