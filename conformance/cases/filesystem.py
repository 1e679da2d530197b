"""The container's filesystem: config.md#Root and #Mounts (the Linux mount options), and
config-linux.md's default filesystems, rootfs mount propagation, devices, masked and readonly
paths; runtime-linux.md's /dev symbolic links. Each decided by what the container sees: its
/proc/self/mountinfo, stat, and whether a write or an exec goes through."""
import os

from conformance import bundle as bundles
from conformance.suite import case


def mountinfo(text: str) -> dict[str, dict]:
    """mount point → {opts, optional, fstype, super}; the last (topmost) mount of a point wins."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10 or "-" not in f:
            continue
        sep = f.index("-")
        point = f[4].replace("\\040", " ")
        out[point] = {"opts": set(f[5].split(",")), "optional": f[6:sep], "fstype": f[sep + 1],
                      "super": set(f[sep + 3].split(","))}
    return out


def mount_of(ctx, text: str, point: str) -> dict:
    m = mountinfo(text).get(point)
    ctx.check(m is not None, f"no mount at {point} in the container's mountinfo")
    return m


def probe_mount(ctx, entry: dict, point: str | None = None, script: str = "", cfg=None) -> dict:
    """Run a container with one more mount; its mountinfo entry for the destination."""
    cfg = cfg or ctx.config()
    cfg["mounts"].append(entry)
    out = ctx.sh(f"{script}\ncat /proc/self/mountinfo", cfg)
    return dict(mount_of(ctx, out, point or entry["destination"]), out=out)


def tmpfs(destination: str, *options: str) -> dict:
    return {"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": list(options)}


# --- Root ---------------------------------------------------------------------------------------

@case("root.path-relative", "config.md#Root")
def root_relative(ctx):
    """root.path relative to the bundle (the conventional 'rootfs')."""
    out = ctx.sh("cat /cf-root-marker", files={"cf-root-marker": "relative-root\n"})
    ctx.check(out.strip() == "relative-root", f"the container's / has {out!r}")


@case("root.path-absolute", "config.md#Root")
def root_absolute(ctx):
    alt = ctx.path("elsewhere", "rootfs")
    bundles.make_rootfs(alt, ctx.run.busybox)
    bundles.write(os.path.join(alt, "cf-root-marker"), "absolute-root\n")
    cfg = ctx.config()
    cfg["root"]["path"] = alt
    out = ctx.sh("cat /cf-root-marker", cfg)
    ctx.check(out.strip() == "absolute-root", f"the container's / has {out!r}")


@case("root.path-missing-errors", "config.md#Root")
def root_missing(ctx):
    """A directory MUST exist at root.path: create errors and makes nothing."""
    cfg = ctx.config()
    cfg["root"]["path"] = ctx.path("no-such-rootfs")
    b = ctx.bundle(cfg)
    cid = ctx.new_id()
    ctx.expect_error(ctx.call("create", "--bundle", b, cid), "create with a missing root.path")
    ctx.check(ctx.call("state", cid).rc != 0, "a container exists after the failed create")


@case("root.readonly", "config.md#Root")
def root_readonly(ctx):
    cfg = ctx.config()
    cfg["root"]["readonly"] = True
    b = ctx.bundle(cfg)
    cfg["process"]["args"] = ["sh", "-c", "touch /cf-written 2>&1; echo rc=$?; cat /proc/self/mountinfo"]
    bundles.write_config(b, cfg)
    p = ctx.run_container(b)
    ctx.check(p.ok, p.why())
    ctx.check("rc=0" not in p.out, "a file could be made in a read-only root")
    ctx.check(not os.path.exists(os.path.join(b, "rootfs", "cf-written")), "the file reached the rootfs")
    ctx.check("ro" in mount_of(ctx, p.out, "/")["opts"], "/ is not mounted read-only")


@case("root.readonly-false-writable", "config.md#Root")
def root_writable(ctx):
    cfg = ctx.config()
    b = ctx.bundle(cfg)
    cfg["process"]["args"] = ["sh", "-c", "echo data > /cf-written && echo written"]
    bundles.write_config(b, cfg)
    p = ctx.run_container(b)
    ctx.check(p.out.strip() == "written", f"the container printed {p.out!r} ({p.why()})")
    path = os.path.join(b, "rootfs", "cf-written")
    ctx.check(os.path.exists(path), "the write did not reach the rootfs")


# --- Mounts -------------------------------------------------------------------------------------

@case("mounts.listed-order", "config.md#Mounts")
def mounts_order(ctx):
    """Entries are mounted in the listed order: a bind under a tmpfs listed before it shows."""
    data = ctx.mkdir("data")
    bundles.write(os.path.join(data, "f"), "under-tmpfs\n")
    cfg = ctx.config()
    cfg["mounts"] += [tmpfs("/m"), bundles.mount("/m/sub", data)]
    out = ctx.sh("cat /m/sub/f", cfg, check=False)
    ctx.check(out.strip() == "under-tmpfs", f"/m/sub/f: {out!r}")


@case("mounts.bind", "config.md#Mounts")
def mounts_bind(ctx):
    data = ctx.mkdir("data", mode=0o777)
    bundles.write(os.path.join(data, "in"), "from-host\n")
    cfg = ctx.config()
    cfg["mounts"].append(bundles.mount("/data", data))
    out = ctx.sh("cat /data/in; echo from-container > /data/out", cfg)
    ctx.check(out.strip() == "from-host", f"the container read {out!r}")
    with open(os.path.join(data, "out")) as f:
        ctx.check(f.read().strip() == "from-container", "the container's write did not reach the host")


@case("mounts.bind-relative-source", "config.md#Mounts")
def mounts_bind_relative(ctx):
    """A bind's source may be relative to the bundle."""
    cfg = ctx.config()
    cfg["mounts"].append(bundles.mount("/data", "data"))
    cfg["process"]["args"] = ["cat", "/data/f"]
    b = ctx.bundle(cfg)
    os.makedirs(os.path.join(b, "data"))
    bundles.write(os.path.join(b, "data", "f"), "bundle-relative\n")
    p = ctx.run_container(b)
    ctx.check(p.out.strip() == "bundle-relative", f"/data/f: {p.out!r} ({p.why()})")


@case("mounts.bind-file", "config.md#Mounts")
def mounts_bind_file(ctx):
    src = ctx.path("file-source")
    bundles.write(src, "a-file\n")
    cfg = ctx.config()
    cfg["mounts"].append(bundles.mount("/etc/cf-file", src, ("bind", "ro")))
    out = ctx.sh("cat /etc/cf-file", cfg)
    ctx.check(out.strip() == "a-file", f"/etc/cf-file: {out!r}")


@case("mounts.option-rbind", "config.md#Linux mount options")
def mounts_rbind(ctx):
    """rbind takes the source's submounts along (host /dev has devpts at /dev/pts)."""
    cfg = ctx.config()
    cfg["mounts"].append(bundles.mount("/hostdev", "/dev", ("rbind", "ro")))
    out = ctx.sh("ls /hostdev/pts", cfg)
    ctx.check("ptmx" in out.split(), f"/hostdev/pts holds {out.split()}: the submount is missing")


@case("mounts.option-bind", "config.md#Linux mount options")
def mounts_bind_only(ctx):
    """bind (not rbind) leaves the submounts behind."""
    cfg = ctx.config()
    cfg["mounts"].append(bundles.mount("/hostdev", "/dev", ("bind", "ro")))
    out = ctx.sh("ls /hostdev/pts", cfg)
    ctx.check("ptmx" not in out.split(), f"/hostdev/pts holds {out.split()}: the submount came along")


@case("mounts.option-ro", "config.md#Linux mount options")
def mounts_ro(ctx):
    m = probe_mount(ctx, tmpfs("/t", "ro"), script="touch /t/x 2>/dev/null && echo WRITABLE")
    ctx.check("WRITABLE" not in m["out"], "a file could be made on a read-only mount")
    ctx.check("ro" in m["opts"], f"/t options {sorted(m['opts'])}")


@case("mounts.option-ro-bind", "config.md#Linux mount options")
def mounts_ro_bind(ctx):
    data = ctx.mkdir("data", mode=0o777)
    cfg = ctx.config()
    cfg["mounts"].append(bundles.mount("/data", data, ("rbind", "ro")))
    out = ctx.sh("touch /data/x 2>/dev/null && echo WRITABLE; cat /proc/self/mountinfo", cfg)
    ctx.check("WRITABLE" not in out and not os.path.exists(os.path.join(data, "x")), "a read-only bind was written")
    ctx.check("ro" in mount_of(ctx, out, "/data")["opts"], "the bind is not read-only")


@case("mounts.option-rro", "config.md#Linux mount options")
def mounts_rro(ctx):
    """rro makes the submounts read-only too (SHOULD)."""
    m = probe_mount(ctx, bundles.mount("/hostdev", "/dev", ("rbind", "rro")), point="/hostdev/pts")
    ctx.check("ro" in m["opts"], f"/hostdev/pts options {sorted(m['opts'])}")


def _flag_case(name: str, option: str, field: str, want: str, level="MUST"):
    @case(f"mounts.option-{name}", "config.md#Linux mount options")
    def check(ctx):
        m = probe_mount(ctx, tmpfs("/t", option))
        got = m[field]
        ctx.check(want in got, f"{option}: /t has {sorted(got)}, no {want}")
    check.__doc__ = f"{option} ({level}) shows as {want} on the mount"


for _opt, _field, _want in (("nosuid", "opts", "nosuid"), ("nodev", "opts", "nodev"),
                            ("noexec", "opts", "noexec"), ("noatime", "opts", "noatime"),
                            ("nodiratime", "opts", "nodiratime"), ("relatime", "opts", "relatime"),
                            ("sync", "super", "sync"), ("dirsync", "super", "dirsync")):
    _flag_case(_opt, _opt, _field, _want)
_flag_case("nosymfollow", "nosymfollow", "opts", "nosymfollow", "SHOULD")


@case("mounts.option-strictatime", "config.md#Linux mount options")
def mounts_strictatime(ctx):
    m = probe_mount(ctx, tmpfs("/t", "strictatime"))
    ctx.check(not {"relatime", "noatime"} & m["opts"], f"strictatime: /t has {sorted(m['opts'])}")


@case("mounts.option-noexec-enforced", "config.md#Linux mount options")
def mounts_noexec_enforced(ctx):
    out = ctx.sh("cp /bin/busybox /t/bb && /t/bb echo EXECUTED 2>/dev/null; true",
                 _with(ctx, tmpfs("/t", "noexec")))
    ctx.check("EXECUTED" not in out, "a program ran from a noexec mount")


@case("mounts.option-filesystem-specific", "config.md#Linux mount options")
def mounts_fs_options(ctx):
    """Options the runtime does not know go to the filesystem as data (SHOULD)."""
    m = probe_mount(ctx, tmpfs("/t", "nr_inodes=4321", "size=1m", "mode=710"),
                    script="stat -c 'mode=%a' /t")
    ctx.check({"nr_inodes=4321", "size=1024k", "mode=710"} <= m["super"], f"/t: {sorted(m['super'])}")


def _with(ctx, entry: dict) -> dict:
    cfg = ctx.config()
    cfg["mounts"].append(entry)
    return cfg


# A propagation type → whether a mount's optional fields in mountinfo show it. Bind options
# (rshared, …) and rootfsPropagation are judged alike: slave means receiving events, never
# sending them back, so a slave is not shared.
PROPAGATION = {
    "shared": lambda got: any(o.startswith("shared:") for o in got),
    "private": lambda got: not got,
    "slave": lambda got: not any(o.startswith("shared:") for o in got),
    "unbindable": lambda got: "unbindable" in got,
}


def _check_propagation(ctx, kind: str, got: list[str], where: str) -> None:
    ctx.check(PROPAGATION[kind](got), f"{where} has {got or 'no propagation tag'}")


def _propagation(ctx, option: str) -> list[str]:
    data = ctx.mkdir("data")
    return probe_mount(ctx, bundles.mount("/data", data, ("rbind", option)))["optional"]


for _kind in ("shared", "private", "slave", "unbindable"):
    def _bind_propagation(ctx, kind=_kind):
        _check_propagation(ctx, kind, _propagation(ctx, "r" + kind), f"r{kind}: /data")
    case(f"mounts.option-r{_kind}", "config.md#Linux mount options")(_bind_propagation)


@case("mounts.option-idmap-without-mappings-errors", "config.md#Linux mount options")
def mounts_idmap_error(ctx):
    """idmap without mappings nor a user namespace MUST be an error."""
    data = ctx.mkdir("data")
    cfg = ctx.config()
    cfg["mounts"].append(bundles.mount("/data", data, ("rbind", "idmap")))
    cfg["process"]["args"] = ["sh", "-c", "echo RAN"]
    _, p = ctx.create(cfg, check=False)
    ctx.expect_error(p, "create with an idmap mount and no mappings")


# --- Default filesystems (SHOULD) ---------------------------------------------------------------

for _point, _fstype in (("/proc", "proc"), ("/sys", "sysfs"), ("/dev/pts", "devpts"), ("/dev/shm", "tmpfs")):
    def _default_fs(ctx, point=_point, fstype=_fstype):
        m = mount_of(ctx, ctx.sh("cat /proc/self/mountinfo"), point)
        ctx.check(m["fstype"] == fstype, f"{point} is {m['fstype']}, not {fstype}")
    case(f"default-filesystems.{_point.strip('/').replace('/', '-')}",
         "config-linux.md#Default Filesystems")(_default_fs)


# --- Rootfs mount propagation -------------------------------------------------------------------

def _root_propagation(ctx, value: str) -> list[str]:
    cfg = ctx.config()
    cfg["linux"]["rootfsPropagation"] = value
    return mount_of(ctx, ctx.sh("cat /proc/self/mountinfo", cfg), "/")["optional"]


for _kind in ("shared", "slave", "private", "unbindable"):
    def _rootfs_propagation(ctx, kind=_kind):
        got = _root_propagation(ctx, kind)
        _check_propagation(ctx, kind, got, "/")
        if kind == "slave":  # and / receives the host's events, where the host's root is shared
            host_root = mountinfo(open("/proc/self/mountinfo").read()).get("/", {"optional": []})
            if any(o.startswith("shared:") for o in host_root["optional"]):
                ctx.check(any(o.startswith("master:") for o in got), f"/ has {got}, no master")
    case(f"rootfs-propagation.{_kind}", "config-linux.md#Rootfs Mount Propagation")(_rootfs_propagation)


@case("rootfs-propagation.invalid-errors", "config.md#Valid values")
def rootprop_invalid(ctx):
    cfg = ctx.config()
    cfg["linux"]["rootfsPropagation"] = "cf-bogus"
    _, p = ctx.create(cfg, check=False)
    ctx.expect_error(p, "create with rootfsPropagation 'cf-bogus'")


# --- Devices ------------------------------------------------------------------------------------

def stat_dev(ctx, path: str, cfg=None) -> list[str]:
    """`stat` of a device in the container: [type, major:minor (hex), mode, uid, gid]."""
    out = ctx.sh(f"stat -c '%F|%t:%T|%a|%u|%g' {path}", cfg, check=False)
    return out.strip().split("|")


DEFAULT_DEVICES = {"null": ("1:3", "echo x > /dev/null && cat /dev/null | wc -c", "0"),
                   "zero": ("1:5", "head -c 4 /dev/zero | tr '\\0' z", "zzzz"),
                   "full": ("1:7", "echo x 2>&1 > /dev/full || echo refused", "refused"),
                   "random": ("1:8", "head -c 4 /dev/random | wc -c", "4"),
                   "urandom": ("1:9", "head -c 4 /dev/urandom | wc -c", "4"),
                   "tty": ("5:0", "true", "")}

for _name, (_mm, _use, _want) in DEFAULT_DEVICES.items():
    def _default_device(ctx, name=_name, mm=_mm, use=_use, want=_want):
        maj, mi = (int(x) for x in mm.split(":"))
        out = ctx.sh(f"stat -c '%F|%t:%T' /dev/{name}; {use}")
        lines = out.strip().split("\n")
        ctx.check(lines[0] == f"character special file|{maj:x}:{mi:x}", f"/dev/{name}: {lines[0]!r}")
        ctx.check(not want or (lines[-1].strip() == want), f"using /dev/{name}: {lines[1:]!r}")
    case(f"devices.default-{_name}", "config-linux.md#Default Devices")(_default_device)


@case("devices.default-ptmx", "config-linux.md#Default Devices")
def default_ptmx(ctx):
    """/dev/ptmx is a bind or symlink of the container's /dev/pts/ptmx."""
    out = ctx.sh("stat -L -c '%d:%i' /dev/ptmx /dev/pts/ptmx")
    a, b = (out.split() + ["", ""])[:2]
    ctx.check(a and a == b, f"/dev/ptmx is {a}, /dev/pts/ptmx is {b}")


def _linux_device(ctx, **fields) -> list[str]:
    cfg = ctx.config()
    entry = {"path": "/dev/cf-dev", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666,
             "uid": 0, "gid": 0, **fields}
    cfg["linux"]["devices"] = [entry]
    return stat_dev(ctx, entry["path"], cfg)


# linux.devices type → what stat calls the node made (u: an unbuffered character device).
for _type, _major, _minor, _kind in (("c", 1, 7, "character special file"), ("u", 1, 9, "character special file"),
                                     ("b", 7, 0, "block special file")):
    def _device_type(ctx, type_=_type, major=_major, minor=_minor, kind=_kind):
        got = _linux_device(ctx, type=type_, major=major, minor=minor)
        ctx.check(got[:2] == [kind, f"{major:x}:{minor:x}"], f"/dev/cf-dev: {got}")
    case(f"devices.type-{_type}", "config-linux.md#Devices")(_device_type)


@case("devices.type-p", "config-linux.md#Devices")
def device_p(ctx):
    cfg = ctx.config()
    cfg["linux"]["devices"] = [{"path": "/dev/cf-fifo", "type": "p", "fileMode": 0o600}]
    got = stat_dev(ctx, "/dev/cf-fifo", cfg)
    ctx.check(got[0] == "fifo", f"/dev/cf-fifo: {got}")


@case("devices.fileMode", "config-linux.md#Devices")
def device_mode(ctx):
    got = _linux_device(ctx, fileMode=0o640)
    ctx.check(len(got) > 2 and got[2] == "640", f"/dev/cf-dev: {got}")


@case("devices.uid-gid", "config-linux.md#Devices")
def device_owner(ctx):
    got = _linux_device(ctx, uid=1000, gid=5)
    ctx.check(got[3:5] == ["1000", "5"], f"/dev/cf-dev: {got}")


@case("devices.existing-mismatch-errors", "config-linux.md#Devices")
def device_mismatch(ctx):
    """A file already at path that is not the requested device MUST be an error."""
    cfg = ctx.config()
    cfg["linux"]["devices"] = [{"path": "/etc/passwd", "type": "c", "major": 1, "minor": 3}]
    cfg["process"]["args"] = ["sh", "-c", "echo RAN"]
    _, p = ctx.create(cfg, check=False)
    ctx.expect_error(p, "create with a device over an existing regular file")


for _link, _target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                       ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
    def _dev_link(ctx, link=_link, target=_target):
        out = ctx.sh(f"readlink /dev/{link}").strip()
        ctx.check(out == target, f"/dev/{link} → {out!r}, expected {target}")
    case(f"dev-symlinks.{_link}", "runtime-linux.md#Dev symbolic links")(_dev_link)


# --- Masked and readonly paths ------------------------------------------------------------------

# A masked file reads as nothing and a masked directory lists nothing: the kind, the path
# masked, what the rootfs holds there, how the container looks at it, and what that does.
for _kind, _path, _held, _probe, _does in (("file", "/cf-secret", "cf-secret", "cat", "reads"),
                                           ("directory", "/cf-secret-dir", "cf-secret-dir/f", "ls -A", "lists")):
    def _masked(ctx, kind=_kind, path=_path, held=_held, probe=_probe, does=_does):
        cfg = ctx.config()
        cfg["linux"]["maskedPaths"] = [path]
        out = ctx.sh(f"{probe} {path}; echo end", cfg, files={held: "SECRET\n"})
        ctx.check(out.strip() == "end", f"the masked {kind} {does} {out!r}")
    case(f"masked-paths.{_kind}", "config-linux.md#Masked Paths")(_masked)


@case("masked-paths.proc", "config-linux.md#Masked Paths")
def masked_proc(ctx):
    """A /proc file of the default config's maskedPaths reads as empty."""
    present = [p for p in bundles.MASKED_PATHS if p.startswith("/proc/") and os.path.isfile(p)]
    if not present:
        ctx.skip("this kernel has none of the default masked /proc files")
    out = ctx.sh(f"wc -c < {present[0]}")
    ctx.check(out.strip() == "0", f"{present[0]} reads {out.strip()!r} bytes")


@case("readonly-paths.directory", "config-linux.md#Readonly Paths")
def readonly_dir(ctx):
    cfg = ctx.config()
    cfg["linux"]["readonlyPaths"] = ["/cf-ro"]
    b = ctx.bundle(cfg, files={"cf-ro/f": "x\n"})
    cfg["process"]["args"] = ["sh", "-c", "touch /cf-ro/new 2>/dev/null && echo WRITABLE; cat /proc/self/mountinfo"]
    bundles.write_config(b, cfg)
    p = ctx.run_container(b)
    ctx.check(p.ok, p.why())
    ctx.check("WRITABLE" not in p.out and not os.path.exists(os.path.join(b, "rootfs/cf-ro/new")),
              "a readonly path was written")
    ctx.check("ro" in mount_of(ctx, p.out, "/cf-ro")["opts"], "/cf-ro is not a read-only mount")


@case("readonly-paths.file", "config-linux.md#Readonly Paths")
def readonly_file(ctx):
    cfg = ctx.config()
    cfg["linux"]["readonlyPaths"] = ["/cf-ro-file"]
    out = ctx.sh("echo more >> /cf-ro-file 2>/dev/null && echo WRITABLE; cat /cf-ro-file", cfg,
                 files={"cf-ro-file": "original\n"})
    ctx.check(out.strip() == "original", f"the readonly file: {out!r}")


@case("readonly-paths.proc-sys", "config-linux.md#Readonly Paths")
def readonly_proc_sys(ctx):
    """The default config's /proc/sys is a read-only mount."""
    m = mount_of(ctx, ctx.sh("cat /proc/self/mountinfo"), "/proc/sys")
    ctx.check("ro" in m["opts"], f"/proc/sys options {sorted(m['opts'])}")
