"""The newer Linux fields and runc's newer flags (issue 20): idmapped mounts (a mount's
uidMappings/gidMappings, the idmap and ridmap options), the recursive mount attributes on a bind
with a submount, linux.netDevices, linux.memoryPolicy, more of linux.personality and
linux.timeOffsets, linux.intelRdt without resctrl, the LSM fields on a host without the LSM;
runc's `create --pidfd-socket`, `exec --cgroup`, and `delete` of a container whose bundle moved.

Each is decided by what is seen: a file's owner as `stat` shows it inside, the container's
mountinfo and whether a write or an exec goes through, `ip` inside and /sys/class/net outside,
/proc/self/numa_maps, /proc/self/personality, /proc/self/timens_offsets, the fd the socket got
(its fdinfo names the pid), /proc/<pid>/cgroup of the exec'd process, a poststop hook's mark.
What a case makes on the host (a submount, a veth pair, sub-cgroups) it undoes itself.
"""
import os
import secrets
import shutil
import signal
import subprocess

from conformance import bundle as bundles
from conformance import host
from conformance.suite import case
from conformance.cases.filesystem import mount_of, mountinfo
from conformance.cases.namespaces import needs_kernel, userns_config

# The mount mappings of the idmap cases: on-disk ids 0..9 show as 1000..1009 and 2000..2009.
MOUNT_UIDS = [{"containerID": 0, "hostID": 1000, "size": 10}]
MOUNT_GIDS = [{"containerID": 0, "hostID": 2000, "size": 10}]


def _host(argv, timeout=10.0) -> tuple[int | None, str]:
    """A host command of the suite's (ip, mount): its status and its output, both streams."""
    p = host.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    host.finish(p, 1)
    return p.returncode, out.decode(errors="replace").strip()


class _Undo:
    """A closer for Context: one host command run at close, whatever the case did."""

    def __init__(self, argv):
        self.argv = argv

    def close(self):
        _host(self.argv)


def host_tmpfs(ctx, point: str, files: dict | None = None) -> str:
    """A tmpfs of the host's at point (a submount for a bind to carry), unmounted at close."""
    os.makedirs(point, exist_ok=True)
    rc, out = _host(["mount", "-t", "tmpfs", "-o", "size=8m,mode=755", "cf-sub", point])
    if rc != 0:
        ctx.skip(f"cannot mount a tmpfs at {point}: {out}")
    ctx._closers.append(_Undo(["umount", "-l", point]))
    for rel, text in (files or {}).items():
        bundles.write(os.path.join(point, rel), text, 0o644)
    return point


def source_tree(ctx, submount: bool) -> str:
    """A bind source: a file f owned 0:0 and g owned 3:4 (and a tmpfs at sub/ with the same)."""
    src = ctx.mkdir("src")
    places = [src]
    if submount:
        places.append(host_tmpfs(ctx, os.path.join(src, "sub")))
    for d in places:
        for name, (uid, gid) in (("f", (0, 0)), ("g", (3, 4))):
            bundles.write(os.path.join(d, name), name, 0o644)
            os.chown(os.path.join(d, name), uid, gid)
    return src


def owners(out: str) -> list[str]:
    return out.split()


# --- idmapped mounts (config.md#POSIX-platform Mounts, #Linux mount options) ---------------------

def _idmapped_bind(ctx, option: str, submount: bool) -> tuple[str, dict]:
    """(the source tree, the base config with it bound at /data with `option` and the mount's
    own uid/gid mappings)."""
    src = source_tree(ctx, submount=submount)
    cfg = ctx.config()
    m = bundles.mount("/data", src, ("rbind", option))
    m.update(uidMappings=MOUNT_UIDS, gidMappings=MOUNT_GIDS)
    cfg["mounts"].append(m)
    return src, cfg


@case("mounts.idmap-mappings", "config.md#POSIX-platform Mounts")
def idmap_mappings(ctx):
    """A bind with uidMappings/gidMappings (and `idmap`) is an idmapped mount: on-disk 0:0 and
    3:4 show inside as the mapping's hostIDs, 1000:2000 and 1003:2004, in a container without
    a user namespace; the files on disk keep their owners."""
    src, cfg = _idmapped_bind(ctx, "idmap", submount=False)
    got = owners(ctx.sh("stat -c %u:%g /data/f /data/g", cfg))
    ctx.check(got == ["1000:2000", "1003:2004"], f"inside, f and g are owned by {got}")
    disk = [f"{st.st_uid}:{st.st_gid}" for st in (os.stat(os.path.join(src, n)) for n in "fg")]
    ctx.check(disk == ["0:0", "3:4"], f"on disk, f and g are now owned by {disk}")


@case("mounts.idmap-mappings-write", "config.md#POSIX-platform Mounts")
def idmap_write(ctx):
    """A file made through an idmapped mount by uid 1000 is written to disk as 0 (the mapping
    taken back), so the mapped owner may write where the on-disk owner could."""
    src, cfg = _idmapped_bind(ctx, "idmap", submount=False)
    os.chmod(src, 0o755)  # only its owner (0 on disk, 1000 through the mapping) may write
    cfg["process"]["user"] = {"uid": 1000, "gid": 2000}
    out = ctx.sh("touch /data/new 2>&1; stat -c %u:%g /data/new", cfg, check=False)
    ctx.check(out.split()[-1:] == ["1000:2000"], f"inside, uid 1000 made: {out.strip()!r}")
    st = os.stat(os.path.join(src, "new"))
    ctx.check((st.st_uid, st.st_gid) == (0, 0), f"on disk, the new file is {st.st_uid}:{st.st_gid}")


def _userns_with(ctx, entries: list[dict], args: list[str]) -> str:
    """A bundle of a user-namespaced config (0 → 100000) with these mounts, their mount points
    made beforehand (the container's root may not make them in a rootfs the host's root owns)."""
    cfg = userns_config(ctx)
    cfg["mounts"] += entries
    cfg["process"]["args"] = args
    b = ctx.bundle(cfg)
    for e in entries:
        os.makedirs(os.path.join(b, "rootfs", e["destination"].lstrip("/")), exist_ok=True)
    return b


@case("mounts.option-idmap", "config.md#Linux mount options")
def option_idmap(ctx):
    """`idmap` without mappings of the mount's own takes the container's user namespace
    mappings: on-disk 0:0 is 0:0 inside, where a plain bind of it shows as the overflow id."""
    src = source_tree(ctx, submount=False)
    b = _userns_with(ctx, [bundles.mount("/plain", src, ("rbind",)), bundles.mount("/mapped", src, ("rbind", "idmap"))],
                     ["stat", "-c", "%u:%g", "/plain/f", "/mapped/f", "/mapped/g"])
    p = ctx.run_container(b)
    got = owners(p.out)
    ctx.check(got == ["65534:65534", "0:0", "3:4"],
              f"plain f, mapped f, mapped g are owned by {got} ({p.why() if not p.ok else 'run ok'})")


@case("mounts.option-ridmap", "config.md#Linux mount options")
def option_ridmap(ctx):
    """`ridmap` idmaps the bind and every mount below it: the submount's files too."""
    src, cfg = _idmapped_bind(ctx, "ridmap", submount=True)
    got = owners(ctx.sh("stat -c %u:%g /data/f /data/sub/f /data/sub/g", cfg))
    ctx.check(got == ["1000:2000", "1000:2000", "1003:2004"],
              f"inside, f, sub/f and sub/g are owned by {got}")


# --- recursive mount attributes (config.md#Linux mount options) ----------------------------------

def _recursive(ctx, option: str, flag: str, script: str = "") -> tuple[dict, dict, str]:
    """A bind of a tree with a tmpfs submount, with `option`: the mountinfo entries of the bind
    and of its submount inside, and what script printed. The host's submount has none of the
    flags (rw, suid, dev, exec)."""
    src = source_tree(ctx, submount=True)
    shutil.copy2(ctx.run.busybox, os.path.join(src, "sub", "bb"))
    host_sub = mountinfo(open("/proc/self/mountinfo").read()).get(os.path.join(src, "sub"))
    ctx.check(host_sub is not None and flag not in host_sub["opts"],
              f"the host's submount is already {flag}: {host_sub}")
    cfg = ctx.config()
    cfg["mounts"].append(bundles.mount("/data", src, ("rbind", option)))
    out = ctx.sh(f"{script}\necho --mountinfo--\ncat /proc/self/mountinfo", cfg)
    said, _, info = out.partition("--mountinfo--")
    return mount_of(ctx, info, "/data"), mount_of(ctx, info, "/data/sub"), said


def _recursive_case(option: str, flag: str, script: str = "", seen=None):
    @case(f"mounts.option-{option}-submount", "config.md#Linux mount options")
    def check(ctx):
        top, sub, said = _recursive(ctx, option, flag, script)
        ctx.check(flag in top["opts"] and flag in sub["opts"],
                  f"{option}: /data has {sorted(top['opts'])}, /data/sub has {sorted(sub['opts'])}")
        if seen:
            seen(ctx, said)
    check.__doc__ = f"`{option}` makes the bind and its submount {flag}, as mountinfo shows"


def _not_written(ctx, said):
    ctx.check("WROTE" not in said, f"a write went through on the rro submount: {said.strip()!r}")


def _not_run(ctx, said):
    ctx.check("EXECUTED" not in said, "a program ran from the rnoexec submount")


_recursive_case("rro", "ro", "touch /data/sub/x 2>/dev/null && echo WROTE", _not_written)
_recursive_case("rnosuid", "nosuid")
_recursive_case("rnodev", "nodev")
_recursive_case("rnoexec", "noexec", "/data/sub/bb echo EXECUTED 2>/dev/null", _not_run)


# --- linux.netDevices (config-linux.md#Network Devices) ------------------------------------------

def host_link(ctx) -> str:
    """One end of a veth pair the case makes on the host (ip(8), a test tool), removed at close
    (if it still exists: a netns that dies with a veth in it destroys the pair)."""
    if not shutil.which("ip"):
        ctx.skip("needs ip(8) to make an interface")
    name = "cf" + secrets.token_hex(4)
    rc, out = _host(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"])
    if rc != 0:
        ctx.skip(f"cannot make a veth pair here: {out}")
    ctx._closers.append(_Undo(["ip", "link", "del", name]))
    return name


def _on_host(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def _net_container(ctx, devices: dict, script: str = ""):
    cfg = ctx.config()
    cfg["linux"]["netDevices"] = devices
    cfg["process"]["args"] = ["sh", "-c", f"{script}\necho --ready--\nexec sleep 100"]
    c = ctx.started(cfg)
    out = c.wait_output("--ready--", 10)
    ctx.check("--ready--" in out, f"the container printed {out!r} ({c.errors().strip()[-200:]})")
    return c, out.partition("--ready--")[0]


@case("net-devices.moved-renamed", "config-linux.md#Network Devices")
def netdev_moved(ctx):
    """The host's device is in the container under its new name (and not under its host
    name), and no longer on the host while the container runs."""
    dev = host_link(ctx)
    c, out = _net_container(ctx, {dev: {"name": "cfeth9"}}, "busybox ip -o link show")
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.count(":") >= 2]
    ctx.check("cfeth9" in names and dev not in names, f"inside, the links are {names}")
    ctx.check(not _on_host(dev), f"{dev} is still on the host while the container runs")


@case("net-devices.host-name-kept", "config-linux.md#Network Devices")
def netdev_same_name(ctx):
    """Without `name`, the device keeps its host name inside."""
    dev = host_link(ctx)
    c, out = _net_container(ctx, {dev: {}}, "ls /sys/class/net")
    ctx.check(dev in out.split(), f"inside, /sys/class/net has {out.split()}")
    ctx.check(not _on_host(dev), f"{dev} is still on the host while the container runs")


@case("net-devices.up", "config-linux.md#Network Devices")
def netdev_up(ctx):
    """The runtime MUST set the device up once it is in the container's namespace."""
    dev = host_link(ctx)
    c, out = _net_container(ctx, {dev: {"name": "cfeth9"}}, "cat /sys/class/net/cfeth9/flags")
    ctx.check(out.strip().startswith("0x"), f"inside, cfeth9's flags: {out.strip()!r}")
    ctx.check(int(out.strip(), 16) & 0x1, f"cfeth9 is not up inside (flags {out.strip()})")


@case("net-devices.addresses-kept", "config-linux.md#Network Devices")
def netdev_addresses(ctx):
    """The runtime MUST keep the device's permanent global addresses: an IPv4 address the host
    gave it is on it inside."""
    dev = host_link(ctx)
    addr = f"10.{0x80 + ctx.index % 64}.{secrets.randbelow(250) + 1}.1/24"
    rc, why = _host(["ip", "addr", "add", addr, "dev", dev])
    if rc != 0:
        ctx.skip(f"cannot give {dev} an address: {why}")
    c, out = _net_container(ctx, {dev: {"name": "cfeth9"}}, "busybox ip -o -4 addr show dev cfeth9")
    ctx.check(f"inet {addr}" in out, f"inside, cfeth9 has {out.strip() or 'no IPv4 address'}; the host gave it {addr}")


@case("net-devices.existing-name-errors", "config-linux.md#Network Devices")
def netdev_name_taken(ctx):
    """A name that already exists in the container's namespace (lo) MUST be an error, and
    the device stays on the host."""
    dev = host_link(ctx)
    cfg = ctx.config()
    cfg["linux"]["netDevices"] = {dev: {"name": "lo"}}
    c, p = ctx.create(cfg, check=False)
    ctx.expect_error(p, "create moving a device in as `lo`")
    ctx.check(_on_host(dev), f"{dev} left the host after the failed create")
    ctx.check(c.try_state() is None, "a container exists after the failed create")


@case("net-devices.after-delete", "config-linux.md#Network Devices")
def netdev_after_delete(ctx):
    """Moved in, then the container deleted: the device is not held anywhere, nor does it
    linger under the container's name on the host. A virtual device (this veth) is either
    back on the host under its host name or destroyed with the namespace."""
    dev = host_link(ctx)
    c, out = _net_container(ctx, {dev: {"name": "cfeth9"}}, "ls /sys/class/net")
    ctx.check("cfeth9" in out.split() and not _on_host(dev), f"the device was not moved in: inside {out.split()}")
    pid = c.pid
    c.kill()
    c.wait_stopped()
    c.delete()
    ctx.wait(lambda: not os.path.exists(f"/proc/{pid}"), 5)
    ctx.check(not _on_host("cfeth9"), "cfeth9 (the container's name for it) is on the host after delete")
    back, peer = _on_host(dev), _on_host(dev + "p")
    ctx.check(back == peer, f"after delete, {dev} is {'on' if back else 'not on'} the host but its peer is "
                            f"{'on' if peer else 'not on'} it")


# --- linux.memoryPolicy (config-linux.md#Memory policy) -------------------------------------------

def _numa_policy(ctx, policy: dict | None) -> str:
    """The policy numa_maps shows for the process's mappings (the task's own policy, as they
    have none of theirs)."""
    if not os.path.exists("/proc/self/numa_maps"):
        ctx.skip("this kernel has no NUMA (no /proc/self/numa_maps)")
    cfg = ctx.config()
    if policy is not None:
        cfg["linux"]["memoryPolicy"] = policy
    out = ctx.sh("head -n 1 /proc/self/numa_maps", cfg)
    fields = out.split()
    ctx.check(len(fields) >= 2, f"numa_maps inside: {out!r}")
    return fields[1]


def _policy_case(name, policy, want):
    @case(f"memory-policy.{name}", "config-linux.md#Memory policy")
    def check(ctx):
        nodes = open("/sys/devices/system/node/online").read().strip() if os.path.exists(
            "/sys/devices/system/node/online") else ""
        if not nodes:
            ctx.skip("the host lists no online NUMA node")
        got = _numa_policy(ctx, policy)
        ctx.check(got == want, f"numa_maps shows the policy {got!r}, the config asks {want!r}")
    check.__doc__ = f"linux.memoryPolicy {policy}: the process's policy, as numa_maps shows it, is {want}"


# The host has node 0 at least; each policy's numa_maps spelling (mpol_to_str).
_policy_case("interleave", {"mode": "MPOL_INTERLEAVE", "nodes": "0"}, "interleave:0")
_policy_case("bind", {"mode": "MPOL_BIND", "nodes": "0"}, "bind:0")
_policy_case("preferred", {"mode": "MPOL_PREFERRED", "nodes": "0"}, "prefer:0")
_policy_case("static-nodes", {"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]},
             "interleave=static:0")
_policy_case("local", {"mode": "MPOL_LOCAL"}, "local")


@case("memory-policy.unknown-mode-errors", "config.md#Valid values")
def policy_unknown(ctx):
    cfg = ctx.config()
    cfg["linux"]["memoryPolicy"] = {"mode": "MPOL_CF_BOGUS", "nodes": "0"}
    c, p = ctx.create(cfg, check=False)
    ctx.expect_error(p, "create with memoryPolicy mode MPOL_CF_BOGUS")
    ctx.check(c.try_state() is None, "a container exists after the failed create")


@case("memory-policy.missing-node-errors", "config-linux.md#Memory policy")
def policy_no_such_node(ctx):
    """A policy the kernel refuses (MPOL_BIND to node 63, which this host lacks) cannot be
    applied: an error, and no container."""
    if os.path.exists("/sys/devices/system/node/node63"):
        ctx.skip("this host has a node 63")
    cfg = ctx.config()
    cfg["linux"]["memoryPolicy"] = {"mode": "MPOL_BIND", "nodes": "63"}
    cfg["process"]["args"] = ["sh", "-c", "head -n 1 /proc/self/numa_maps"]
    p = ctx.run_container(ctx.bundle(cfg))
    ctx.check(not p.out.strip(), f"the process ran, its policy {p.out.split()[1:2]}")
    ctx.expect_error(p, "run with memoryPolicy MPOL_BIND to node 63")


# --- linux.personality (config-linux.md#Personality) ---------------------------------------------

def _personality(ctx, domain: str, prefix=()) -> str:
    cfg = ctx.config()
    cfg["linux"]["personality"] = {"domain": domain}
    cfg["process"]["args"] = ["sh", "-c", "cat /proc/self/personality; uname -m"]
    b = ctx.bundle(cfg)
    p = ctx.run.call(["run", "--bundle", b, ctx.new_id()], timeout=ctx.left(), prefix=prefix)
    ctx.check(p.ok, p.why())
    return p.out


@case("personality.linux32-proc", "config-linux.md#Personality")
def personality_proc(ctx):
    """LINUX32 is PER_LINUX32 (8) in /proc/self/personality, and children keep it."""
    out = _personality(ctx, "LINUX32").split()
    ctx.check(out[:1] == ["00000008"], f"/proc/self/personality inside: {out[:1]}")


@case("personality.linux", "config-linux.md#Personality")
def personality_linux(ctx):
    """LINUX sets the plain Linux domain, even where the runtime's caller runs under LINUX32."""
    if not shutil.which("setarch"):
        ctx.skip("needs setarch(8) to run the runtime under LINUX32")
    out = _personality(ctx, "LINUX", prefix=("setarch", "linux32")).split()
    ctx.check(out[:1] == ["00000000"] and out[1:2] == [os.uname().machine],
              f"inside: personality {out[:1]}, uname -m {out[1:2]} (the host: {os.uname().machine})")


@case("personality.unknown-domain-errors", "config.md#Valid values")
def personality_unknown(ctx):
    cfg = ctx.config()
    cfg["linux"]["personality"] = {"domain": "CF_BOGUS"}
    c, p = ctx.create(cfg, check=False)
    ctx.expect_error(p, "create with personality domain CF_BOGUS")
    ctx.check(c.try_state() is None, "a container exists after the failed create")


# --- linux.timeOffsets (config-linux.md#Offset for Time Namespace) --------------------------------

def _offsets(ctx, offsets: dict) -> dict[str, tuple[int, int]]:
    needs_kernel(ctx, "time")
    cfg = ctx.config()
    bundles.add_namespace(cfg, "time")
    cfg["linux"]["timeOffsets"] = offsets
    out = ctx.sh("cat /proc/self/timens_offsets", cfg)
    got = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3:
            got[f[0]] = (int(f[1]), int(f[2]))
    ctx.check(got, f"/proc/self/timens_offsets inside: {out!r}")
    return got


@case("time-offsets.monotonic", "config-linux.md#Offset for Time Namespace")
def offsets_monotonic(ctx):
    """Both clocks' offsets, seconds and nanoseconds, as the time namespace holds them."""
    got = _offsets(ctx, {"monotonic": {"secs": 86400, "nanosecs": 5000}, "boottime": {"secs": 1000000}})
    ctx.check(got.get("monotonic") == (86400, 5000) and got.get("boottime") == (1000000, 0),
              f"timens_offsets inside: {got}")


@case("time-offsets.exec", "config-linux.md#Offset for Time Namespace")
def offsets_exec(ctx):
    """A process exec'd into the container is in its time namespace: the same offsets."""
    needs_kernel(ctx, "time")
    cfg = ctx.config()
    bundles.add_namespace(cfg, "time")
    cfg["linux"]["timeOffsets"] = {"boottime": {"secs": 777777}}
    cfg["process"]["args"] = ["sleep", "100"]
    c = ctx.started(cfg)
    p = c.call("exec", c.id, "cat", "/proc/self/timens_offsets")
    ctx.check(p.ok, p.why())
    ctx.check(any(line.split()[:2] == ["boottime", "777777"] for line in p.out.splitlines()),
              f"the exec'd process's timens_offsets: {p.out.strip()!r}")


# --- linux.intelRdt (config-linux.md#IntelRdt) ----------------------------------------------------

def _resctrl_mounted() -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" - ")[1].split()[0] == "resctrl" for line in f if " - " in line)


@case("intel-rdt.without-resctrl-errors", "config-linux.md#IntelRdt")
def intel_rdt(ctx):
    """With no resctrl mounted in the runtime's mount namespace, intelRdt MUST be an error."""
    if _resctrl_mounted():
        ctx.skip("resctrl is mounted on this host")
    cfg = ctx.config()
    cfg["linux"]["intelRdt"] = {"closID": "cf", "l3CacheSchema": "L3:0=f"}
    c, p = ctx.create(cfg, check=False)
    ctx.expect_error(p, "create with intelRdt and no resctrl")
    ctx.check(c.try_state() is None, "a container exists after the failed create")


# --- LSM fields where the LSM is absent -----------------------------------------------------------

def _apparmor() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip() == "Y"
    except OSError:
        return os.path.isdir("/sys/kernel/security/apparmor")


def _selinux() -> bool:
    return os.path.exists("/sys/fs/selinux/enforce")


def _refused(ctx, cfg, what):
    cfg["process"]["args"] = ["sh", "-c", "echo RAN"]
    b = ctx.bundle(cfg)
    p = ctx.run_container(b)
    ctx.check("RAN" not in p.out, f"the process ran without the {what} it asked for")
    ctx.expect_error(p, f"run with {what} on a host without it")


# A label that cannot be applied (no such LSM here) is an error, not an unconfined process.
LSM_ABSENT = [  # (case, section, LSM present?, its name, (section, key), value, what it is)
    ("process.apparmorProfile-without-apparmor-errors", "config.md#Linux Process", _apparmor, "AppArmor",
     ("process", "apparmorProfile"), "cf-profile", "AppArmor profile"),
    ("process.selinuxLabel-without-selinux-errors", "config.md#Linux Process", _selinux, "SELinux",
     ("process", "selinuxLabel"), "system_u:system_r:container_t:s0:c1,c2", "SELinux label"),
    ("mount-label.without-selinux-errors", "config-linux.md#Mount Label", _selinux, "SELinux",
     ("linux", "mountLabel"), "system_u:object_r:container_file_t:s0:c1,c2", "SELinux mount label"),
]

for _name, _section, _present, _lsm, _field, _value, _what in LSM_ABSENT:
    def _lsm_absent(ctx, present=_present, lsm=_lsm, field=_field, value=_value, what=_what):
        if present():
            ctx.skip(f"the host has {lsm}")
        cfg = ctx.config()
        cfg[field[0]][field[1]] = value
        _refused(ctx, cfg, what)
    case(_name, _section)(_lsm_absent)


# --- runc's CLI: --pidfd-socket, exec --cgroup; delete after the bundle moved ---------------------

@case("pidfd-socket.create", "runc CLI: create --pidfd-socket")
def pidfd_socket(ctx):
    """create --pidfd-socket sends a pidfd of the container's init: fdinfo names its pid, and a
    SIGKILL through it stops the container."""
    sock = ctx.console_socket()  # any SCM_RIGHTS receiver will do
    cfg = ctx.config()
    cfg["process"]["args"] = ["sleep", "100"]
    c, p = ctx.create(cfg, args=("--pidfd-socket", sock.path), check=False)
    ctx.check(p.ok, p.why())
    fd = sock.wait_master(min(5, ctx.left()))
    link = os.readlink(f"/proc/self/fd/{fd}")
    ctx.check(link == "anon_inode:[pidfd]", f"the fd received is {link}, not a pidfd")
    with open(f"/proc/self/fdinfo/{fd}") as f:
        pids = [line.split()[1] for line in f if line.startswith("Pid:")]
    ctx.check(pids == [str(c.pid)], f"the pidfd is of pid {pids}, the init is {c.pid}")
    signal.pidfd_send_signal(fd, signal.SIGKILL)
    s = c.wait_stopped()
    ctx.check(s.get("status") == "stopped", f"after SIGKILL through the pidfd the container is {s.get('status')}")


def _sub_cgroups(ctx, pid: int, own: str, name: str) -> dict[str, str]:
    """controller → a new sub-cgroup `name` of pid's cgroup (own, its cgroupsPath) in each hierarchy (cpuset's
    cpus and mems copied, as v1 wants before a task may join)."""
    made = {}
    for ctrl, d in host.cgroup_dirs(pid).items():
        if not d.endswith(own):  # a hierarchy the runtime left the container out of
            continue
        sub = os.path.join(d, name)
        try:
            os.makedirs(sub, exist_ok=True)
        except OSError as e:
            ctx.skip(f"cannot make {sub}: {e.strerror}")
        made[ctrl] = sub
        for f in ("cpuset.cpus", "cpuset.mems"):
            if ctrl != "" and os.path.exists(os.path.join(sub, f)):
                with open(os.path.join(d, f)) as src, open(os.path.join(sub, f), "w") as dst:
                    dst.write(src.read())
    return made


@case("exec.cgroup", "runc CLI: exec --cgroup")
def exec_cgroup(ctx):
    """exec --cgroup sub runs the process in the sub-cgroup of the container's cgroup."""
    cfg = ctx.config()
    cfg["linux"]["cgroupsPath"] = ctx.cgroups_path()
    cfg["process"]["args"] = ["sleep", "100"]
    c = ctx.started(cfg)
    made = _sub_cgroups(ctx, c.pid, cfg["linux"]["cgroupsPath"], "cfsub")
    if not made:
        ctx.fail(f"the container is in none of the cgroups {cfg['linux']['cgroupsPath']}: {host.cgroup_dirs(c.pid)}")
    try:
        p = c.call("exec", "--cgroup", "cfsub", c.id, "cat", "/proc/self/cgroup")
        ctx.check(p.ok, p.why())
        paths = {}
        for line in p.out.splitlines():
            _, ctrls, path = line.split(":", 2)
            for k in (ctrls.split(",") if ctrls else [""]):
                paths[k] = path
        ctx.check(paths, f"the exec'd process's /proc/self/cgroup: {p.out.strip()!r}")
        wrong = {k: paths.get(k) for k in made if k in paths and not paths[k].endswith("/cfsub")}
        ctx.check(not wrong and any(k in paths for k in made),
                  f"the exec'd process is not in the sub-cgroups: {wrong or paths}")
    finally:
        c.kill(check=False)
        c.wait_stopped()
        for sub in made.values():
            try:
                os.rmdir(sub)
            except OSError:
                pass


@case("delete.bundle-moved", "runtime.md#Delete")
def delete_bundle_moved(ctx):
    """delete needs nothing of the bundle: after it moved, delete still removes the container,
    its cgroup, and runs the poststop hooks."""
    mark = ctx.path("poststop-ran")
    cfg = ctx.config()
    cfg["linux"]["cgroupsPath"] = ctx.cgroups_path()
    cfg["process"]["args"] = ["sleep", "100"]
    # the hook reads the state it is given: a runtime killed by SIGPIPE is another case's failure
    cfg["hooks"] = {"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat >/dev/null; touch {mark}"]}]}
    c = ctx.started(cfg)
    os.rename(c.bundle, c.bundle + ".moved")
    c.kill()
    c.wait_stopped()
    p = c.delete(check=False)
    ctx.check(p.ok, f"delete after the bundle moved: {p.why()}")
    ctx.check(c.try_state() is None, "the container is still there after delete")
    ctx.check(os.path.exists(mark), "the poststop hook did not run")
