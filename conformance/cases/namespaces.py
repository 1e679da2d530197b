"""config-linux.md#Namespaces (each type: new, joined by path, inherited when absent), the user
namespace mappings, the time namespace offsets, sysctl; config.md#Hostname and #Domainname.

A namespace is compared by its /proc/<pid>/ns link, as the container reads its own
(/proc/self/ns/...) against the suite's (the runtime's) or a holder's: a process made by
unshare(1) in namespaces of its own, for a container to join.
"""
import os

from conformance import bundle as bundles
from conformance import host
from conformance.suite import case

# config type → (/proc/<pid>/ns link, unshare(1) flags for a holder)
KINDS = {
    "pid": ("pid", ["--pid", "--fork"]),
    "network": ("net", ["--net"]),
    "mount": ("mnt", ["--mount"]),
    "ipc": ("ipc", ["--ipc"]),
    "uts": ("uts", ["--uts"]),
    "user": ("user", ["--user", "--map-root-user"]),
    "cgroup": ("cgroup", ["--cgroup"]),
    "time": ("time", ["--time"]),
}
USERNS_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def userns_config(ctx, uid_maps=None, gid_maps=None) -> dict:
    """The base config in a new user namespace: mapped ids, and no v1 cgroup mount (a user
    namespace may not mount one)."""
    cfg = ctx.config()
    bundles.add_namespace(cfg, "user")
    cfg["linux"]["uidMappings"] = uid_maps or USERNS_MAP
    cfg["linux"]["gidMappings"] = gid_maps or USERNS_MAP
    bundles.drop_mount(cfg, "/sys/fs/cgroup")
    return cfg


def config_with(ctx, kind: str, path: str | None = None) -> dict:
    """The base config with a `kind` namespace (new, or joined at path)."""
    if kind == "user":
        cfg = userns_config(ctx)
        if path:  # the holder maps its root to ours, so must the config
            same = [{"containerID": 0, "hostID": 0, "size": 1}]
            cfg["linux"]["uidMappings"] = cfg["linux"]["gidMappings"] = same
            cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/dev/pts"] + [
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}]
    else:
        cfg = ctx.config()
    bundles.add_namespace(cfg, kind, path)
    return cfg


def own_ns(ctx, link: str, cfg: dict) -> str:
    out = ctx.sh(f"readlink /proc/self/ns/{link}", cfg).strip()
    ctx.check(out.startswith(f"{link}:["), f"the container read {out!r} for its {link} namespace")
    return out


def needs_kernel(ctx, link: str) -> None:
    if not os.path.exists(f"/proc/self/ns/{link}"):
        ctx.skip(f"this kernel has no {link} namespaces")


for _kind, (_link, _flags) in KINDS.items():
    def _new(ctx, kind=_kind, link=_link):
        needs_kernel(ctx, link)
        got = own_ns(ctx, link, config_with(ctx, kind))
        ctx.check(got != host.ns("self", link), f"the container is in the runtime's {link} namespace")

    def _path(ctx, kind=_kind, link=_link, flags=_flags):
        needs_kernel(ctx, link)
        holder = ctx.holder(*flags)
        got = own_ns(ctx, link, config_with(ctx, kind, holder.path(link)))
        ctx.check(got == holder.ns(link), f"the container is in {got}, the path's namespace is {holder.ns(link)}")

    def _inherited(ctx, kind=_kind, link=_link):
        needs_kernel(ctx, link)
        cfg = ctx.config()
        bundles.remove_namespace(cfg, kind)
        if kind == "uts":
            cfg.pop("hostname", None)  # a hostname would be the host's
        if kind == "mount":
            return inherited_mount(ctx, cfg)
        got = own_ns(ctx, link, cfg)
        ctx.check(got == host.ns("self", link), f"the container is in {got}, the runtime's is {host.ns('self', link)}")

    case(f"namespaces.{_kind}-new", "config-linux.md#Namespaces")(_new)
    case(f"namespaces.{_kind}-path", "config-linux.md#Namespaces")(_path)
    case(f"namespaces.{_kind}-inherited", "config-linux.md#Namespaces")(_inherited)


def inherited_mount(ctx, cfg: dict):
    """Without a mount namespace the container shares the runtime's. The runtime is run in a
    throwaway mount namespace of its own (unshare -m), so that nothing it does there reaches
    the host's; the container's process, as the host sees it, must be in that one. The one
    mount is /proc (runc needs it in the container)."""
    cfg["mounts"] = [{"destination": "/proc", "type": "proc", "source": "proc"}]
    cfg["linux"].pop("maskedPaths", None)
    cfg["linux"].pop("readonlyPaths", None)
    cfg["process"]["args"] = ["sleep", "100"]
    record = ctx.path("runtime-mnt")
    wrapper = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               f'readlink /proc/self/ns/mnt > {record} && exec "$@"', "sh"]
    c, _ = ctx.create(cfg, prefix=wrapper)
    with open(record) as f:
        runtime_mnt = f.read().strip()
    got = host.ns(c.pid, "mnt")
    ctx.check(got == runtime_mnt, f"the container is in {got}, the runtime in {runtime_mnt}")


@case("namespaces.duplicate-type-errors", "config-linux.md#Namespaces")
def ns_duplicate(ctx):
    cfg = ctx.config()
    cfg["linux"]["namespaces"].append({"type": "network"})
    _, p = ctx.create(cfg, check=False)
    ctx.expect_error(p, "create with two network namespaces")


@case("namespaces.path-of-another-type-errors", "config-linux.md#Namespaces")
def ns_wrong_type(ctx):
    holder = ctx.holder("--uts")
    cfg = ctx.config()
    bundles.add_namespace(cfg, "network", holder.path("uts"))
    _, p = ctx.create(cfg, check=False)
    ctx.expect_error(p, "create with a network namespace path to a uts namespace")


@case("namespaces.path-not-a-namespace-errors", "config-linux.md#Namespaces")
def ns_not_ns(ctx):
    plain = ctx.path("not-a-namespace")
    bundles.write(plain, "")
    cfg = ctx.config()
    bundles.add_namespace(cfg, "ipc", plain)
    _, p = ctx.create(cfg, check=False)
    ctx.expect_error(p, "create with an ipc namespace path to a regular file")


@case("namespaces.pid-isolated", "config-linux.md#Namespaces")
def pid_isolated(ctx):
    """In a new pid namespace the process is pid 1 and sees only its own processes."""
    out = ctx.sh("echo $$; ls /proc | grep -c '^[0-9]'")
    ctx.check(out.split()[:1] == ["1"], f"the process is pid {out.split()[:1]}")
    ctx.check(out.split()[1:] and int(out.split()[1]) <= 3, f"it sees {out.split()[1:]} processes")


@case("namespaces.network-isolated", "config-linux.md#Namespaces")
def net_isolated(ctx):
    """A new network namespace has its own stack: only a loopback device."""
    out = ctx.sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
    ctx.check(out.split() == ["lo"], f"network devices: {out.split()}")


@case("namespaces.mount-isolated", "config-linux.md#Namespaces")
def mnt_isolated(ctx):
    """The container's mounts are its own: none of them shows in the runtime's mount table."""
    cfg = ctx.config()
    cfg["process"]["args"] = ["sleep", "100"]
    c = ctx.started(cfg)
    ctx.check(c.state().get("status") == "running", "the container is not running")
    leaked = host.mounts_under(c.bundle)
    ctx.check(not leaked, f"the container's mounts in the runtime's namespace: {leaked}")


@case("namespaces.cgroup-root", "config-linux.md#Namespaces")
def cgroup_ns_root(ctx):
    """In a new cgroup namespace the container's own cgroup is the root."""
    cfg = config_with(ctx, "cgroup")
    out = ctx.sh("cut -d: -f3 /proc/self/cgroup | sort -u", cfg)
    ctx.check(out.split() == ["/"], f"cgroup paths seen: {out.split()}")


# --- hostname, domainname, UTS ------------------------------------------------------------------

@case("hostname", "config.md#Hostname")
def hostname(ctx):
    before = os.uname().nodename
    cfg = ctx.config()
    cfg["hostname"] = "cf-host-name"
    out = ctx.sh("hostname", cfg)
    ctx.check(out.strip() == "cf-host-name", f"hostname {out.strip()!r}")
    ctx.check(os.uname().nodename == before, "the host's hostname changed")


@case("domainname", "config.md#Domainname")
def domainname(ctx):
    with open("/proc/sys/kernel/domainname") as f:
        before = f.read()
    cfg = ctx.config()
    cfg["domainname"] = "cf.example"
    out = ctx.sh("cat /proc/sys/kernel/domainname", cfg)
    ctx.check(out.strip() == "cf.example", f"domainname {out.strip()!r}")
    with open("/proc/sys/kernel/domainname") as f:
        ctx.check(f.read() == before, "the host's domainname changed")


@case("hostname.uts-path", "config.md#Hostname")
def hostname_joined(ctx):
    """A UTS namespace joined by path is the container's: hostname is set in it."""
    holder = ctx.holder("--uts")
    before = os.uname().nodename
    cfg = config_with(ctx, "uts", holder.path("uts"))
    cfg["hostname"] = "cf-joined"
    out = ctx.sh("hostname", cfg)
    ctx.check(out.strip() == "cf-joined", f"hostname {out.strip()!r}")
    in_holder = host.capture(["nsenter", "-t", str(holder.pid), "-u", "hostname"]).strip()
    ctx.check(in_holder == "cf-joined", f"the joined namespace's hostname is {in_holder!r}")
    ctx.check(os.uname().nodename == before, "the host's hostname changed")


# --- user namespace mappings --------------------------------------------------------------------

def _maps(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


@case("userns.uidMappings", "config-linux.md#User namespace mappings")
def uid_map(ctx):
    out = ctx.sh("cat /proc/self/uid_map", userns_config(ctx))
    ctx.check(_maps(out) == [["0", "100000", "65536"]], f"uid_map {_maps(out)}")


@case("userns.gidMappings", "config-linux.md#User namespace mappings")
def gid_map(ctx):
    out = ctx.sh("cat /proc/self/gid_map", userns_config(ctx))
    ctx.check(_maps(out) == [["0", "100000", "65536"]], f"gid_map {_maps(out)}")


@case("userns.several-ranges", "config-linux.md#User namespace mappings")
def several_ranges(ctx):
    maps = [{"containerID": 0, "hostID": 100000, "size": 1000},
            {"containerID": 1000, "hostID": 300000, "size": 10}]
    out = ctx.sh("cat /proc/self/uid_map; echo --; cat /proc/self/gid_map", userns_config(ctx, maps, maps))
    uid, _, gid = out.partition("--")
    want = [["0", "100000", "1000"], ["1000", "300000", "10"]]
    ctx.check(_maps(uid) == want and _maps(gid) == want, f"uid_map {_maps(uid)}, gid_map {_maps(gid)}")


@case("userns.host-ids", "config-linux.md#User namespace mappings")
def host_ids(ctx):
    """Container root is the mapped host id, as the host sees it; the process user too."""
    cfg = userns_config(ctx)
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    cfg["process"]["args"] = ["sh", "-c", "id -u; sleep 100"]
    c = ctx.started(cfg)
    out = c.wait_output("\n", 5)
    ctx.check(out.strip() == "1000", f"inside, id -u is {out.strip()!r}")
    uid = host.status_field(c.pid, "Uid").split()
    ctx.check(uid == ["101000"] * 4, f"the host sees Uid {uid}")


@case("userns.rootfs-ownership-unchanged", "config-linux.md#User namespace mappings")
def rootfs_untouched(ctx):
    """The runtime SHOULD NOT chown the filesystems it maps."""
    cfg = userns_config(ctx)
    b = ctx.bundle(cfg)
    cfg["process"]["args"] = ["id", "-u"]
    bundles.write_config(b, cfg)
    p = ctx.run_container(b)
    ctx.check(p.out.strip() == "0", f"the container's id -u: {p.out!r} ({p.why()})")
    owners = {os.lstat(os.path.join(b, "rootfs", rel)).st_uid for rel in ("", "bin", "bin/busybox", "etc/passwd")}
    ctx.check(owners == {0}, f"rootfs owners now {owners}")


# --- time namespace -----------------------------------------------------------------------------

@case("time-offsets", "config-linux.md#Offset for Time Namespace")
def time_offsets(ctx):
    needs_kernel(ctx, "time")
    cfg = config_with(ctx, "time")
    cfg["linux"]["timeOffsets"] = {"boottime": {"secs": 1000000, "nanosecs": 0}}
    out = ctx.sh("cut -d' ' -f1 /proc/uptime", cfg)
    with open("/proc/uptime") as f:
        here = float(f.read().split()[0])
    ctx.check(out.strip() and float(out.strip()) >= here + 999000, f"uptime inside {out.strip()!r}, here {here}")


# --- sysctl -------------------------------------------------------------------------------------

def _sysctl(ctx, key: str, value: str):
    path = "/proc/sys/" + key.replace(".", "/")
    with open(path) as f:
        before = f.read().strip()
    if before == value:
        ctx.skip(f"the host's {key} is already {value}")
    cfg = ctx.config()
    cfg["linux"]["sysctl"] = {key: value}
    out = ctx.sh(f"cat {path}", cfg)
    ctx.check(out.strip() == value, f"{key} inside: {out.strip()!r}, configured {value}")
    with open(path) as f:
        ctx.check(f.read().strip() == before, f"the host's {key} changed")


@case("sysctl.network", "config-linux.md#Sysctl")
def sysctl_net(ctx):
    _sysctl(ctx, "net.ipv4.ip_default_ttl", "77")


@case("sysctl.ipc", "config-linux.md#Sysctl")
def sysctl_ipc(ctx):
    _sysctl(ctx, "kernel.msgmax", "12345")
