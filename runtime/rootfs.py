"""The container's filesystem, prepared in the order the kernel needs it.

In the child, inside its new mount namespace:
  prepare_root       propagation of / (rootfsPropagation), rootfs bind-mounted onto itself
  mount_all          every config mount, destinations resolved inside the rootfs
  create_devices     default devices, linux.devices, /dev symlinks, /dev/ptmx
  pivot              pivot_root (or MS_MOVE + chroot with --no-pivot), old root detached
  finalize           sysctl, readonlyPaths, maskedPaths, root.readonly

Without a mount namespace of its own, mount_all works in the caller's, inside the rootfs
that create pinned (pin_rootfs), and delete unmounts it all again (remove_caller_mounts).

Every destination is resolved with openat2(RESOLVE_IN_ROOT) and mounted through
/proc/self/fd/N, so a symlink in the image can never lead a mount outside the rootfs.
"""
import os
import posixpath
import stat

from . import _shim as k
from . import paths
from .errors import ConfigError, PyrunError, describe_oserror

# Mount options for mount(2): name → (clear, flag). Also the source of `features.mountOptions`.
MOUNT_FLAGS = {
    "async": (True, k.MS_SYNCHRONOUS), "atime": (True, k.MS_NOATIME),
    "bind": (False, k.MS_BIND), "defaults": (False, 0), "dev": (True, k.MS_NODEV),
    "diratime": (True, k.MS_NODIRATIME), "dirsync": (False, k.MS_DIRSYNC),
    "exec": (True, k.MS_NOEXEC), "lazytime": (False, k.MS_LAZYTIME),
    "loud": (True, k.MS_SILENT), "mand": (False, k.MS_MANDLOCK),
    "noatime": (False, k.MS_NOATIME), "nodev": (False, k.MS_NODEV),
    "nodiratime": (False, k.MS_NODIRATIME), "noexec": (False, k.MS_NOEXEC),
    "nolazytime": (True, k.MS_LAZYTIME), "nomand": (True, k.MS_MANDLOCK),
    "norelatime": (True, k.MS_RELATIME), "nostrictatime": (True, k.MS_STRICTATIME),
    "nosuid": (False, k.MS_NOSUID), "nosymfollow": (False, k.MS_NOSYMFOLLOW),
    "rbind": (False, k.MS_BIND | k.MS_REC), "relatime": (False, k.MS_RELATIME),
    "remount": (False, k.MS_REMOUNT), "ro": (False, k.MS_RDONLY), "rw": (True, k.MS_RDONLY),
    "silent": (False, k.MS_SILENT), "strictatime": (False, k.MS_STRICTATIME),
    "suid": (True, k.MS_NOSUID), "sync": (False, k.MS_SYNCHRONOUS),
}
PROPAGATION_FLAGS = {
    "private": k.MS_PRIVATE, "rprivate": k.MS_PRIVATE | k.MS_REC,
    "shared": k.MS_SHARED, "rshared": k.MS_SHARED | k.MS_REC,
    "slave": k.MS_SLAVE, "rslave": k.MS_SLAVE | k.MS_REC,
    "unbindable": k.MS_UNBINDABLE, "runbindable": k.MS_UNBINDABLE | k.MS_REC,
}
# A bind takes per-mount attributes only, set with mount_setattr before it is attached:
# name → (attr_set, attr_clr). The atime modes are one field (MOUNT_ATTR__ATIME).
_A = k.MOUNT_ATTR__ATIME
MOUNT_ATTRS = {
    "ro": (k.MOUNT_ATTR_RDONLY, 0), "rw": (0, k.MOUNT_ATTR_RDONLY),
    "nosuid": (k.MOUNT_ATTR_NOSUID, 0), "suid": (0, k.MOUNT_ATTR_NOSUID),
    "nodev": (k.MOUNT_ATTR_NODEV, 0), "dev": (0, k.MOUNT_ATTR_NODEV),
    "noexec": (k.MOUNT_ATTR_NOEXEC, 0), "exec": (0, k.MOUNT_ATTR_NOEXEC),
    "nodiratime": (k.MOUNT_ATTR_NODIRATIME, 0), "diratime": (0, k.MOUNT_ATTR_NODIRATIME),
    "nosymfollow": (k.MOUNT_ATTR_NOSYMFOLLOW, 0), "symfollow": (0, k.MOUNT_ATTR_NOSYMFOLLOW),
    "noatime": (k.MOUNT_ATTR_NOATIME, _A), "strictatime": (k.MOUNT_ATTR_STRICTATIME, _A),
    "relatime": (k.MOUNT_ATTR_RELATIME, _A), "atime": (k.MOUNT_ATTR_RELATIME, _A),
    "norelatime": (k.MOUNT_ATTR_STRICTATIME, _A), "nostrictatime": (k.MOUNT_ATTR_RELATIME, _A),
}
# runc's recursive attributes ("rro", "rnosuid", …): the same, on every mount below too.
RECURSIVE_ATTRS = {"r" + name: v for name, v in MOUNT_ATTRS.items()}
# What a bind may carry besides attributes and propagation: the rest of MOUNT_FLAGS are
# superblock flags or fs data, which a bind cannot change; they are refused, not dropped.
_BIND_OK = {"bind", "rbind", "defaults", "remount"}
# Options the runtime itself acts on (not passed to the kernel): idmap/ridmap make a bind
# an idmapped mount (of the top mount / of every mount below), MOUNT_ATTR_IDMAP.
EXTRA_OPTIONS = ("tmpcopyup", "idmap", "ridmap")

DEFAULT_DEVICES = (  # path, major, minor: runc's defaults, all character devices 0666
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
    ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
)
DEV_SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"),
)
# Files under /proc a mount may cover: those lxcfs emulates (runc's list). Nothing else
# of procfs, so that no mount can redirect what the runtime or the container writes there.
PROC_MOUNT_OK = ("/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
                 "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
                 "/proc/sys/kernel/ns_last_pid")


class Mount:
    """One config.json mount, its options split into what the kernel takes."""

    __slots__ = ("destination", "type", "source", "flags", "propagation", "data", "extra",
                 "attr_set", "attr_clr", "rattr_set", "rattr_clr", "canonical", "deferred_ro",
                 "uid_mappings", "gid_mappings", "idmap", "tree_fd")

    def __init__(self, m: dict):
        self.destination = m["destination"]
        self.type = m.get("type") or ""
        self.source = m.get("source") or ""
        self.flags, self.propagation, data, self.extra = 0, [], [], set()
        self.attr_set = self.attr_clr = self.rattr_set = self.rattr_clr = 0
        self.canonical, self.deferred_ro = self.destination, False
        self.uid_mappings, self.gid_mappings = m.get("uidMappings"), m.get("gidMappings")
        self.tree_fd = -1  # an idmapped bind, made detached by create (idmapped_tree)
        opts = m.get("options") or ()
        for opt in opts:
            if opt in MOUNT_FLAGS:
                clear, flag = MOUNT_FLAGS[opt]
                self.flags = (self.flags & ~flag) if clear else (self.flags | flag)
            if opt in MOUNT_ATTRS:
                self.attr_set, self.attr_clr = _merge(self.attr_set, self.attr_clr, MOUNT_ATTRS[opt])
            elif opt in RECURSIVE_ATTRS:
                self.rattr_set, self.rattr_clr = _merge(self.rattr_set, self.rattr_clr, RECURSIVE_ATTRS[opt])
            elif opt in PROPAGATION_FLAGS:
                self.propagation.append(PROPAGATION_FLAGS[opt])
            elif opt in EXTRA_OPTIONS:
                self.extra.add(opt)
            elif opt not in MOUNT_FLAGS:
                data.append(opt)
        if self.type == "bind":
            self.flags |= k.MS_BIND
        self.data = ",".join(data)
        # Mappings make the mount idmapped (the top mount, unless ridmap says every one below).
        self.idmap = "ridmap" if "ridmap" in self.extra else "idmap" if (
            "idmap" in self.extra or self.uid_mappings or self.gid_mappings) else ""
        if self.idmap:
            if not self.is_bind:
                raise ConfigError(f"mount {self.destination}: idmapped mounts must be bind mounts")
            if bool(self.uid_mappings) != bool(self.gid_mappings):
                raise ConfigError(f"mount {self.destination}: an idmapped mount needs both uidMappings and gidMappings")
        if self.is_bind:
            bad = [o for o in opts if o in MOUNT_FLAGS and o not in MOUNT_ATTRS and o not in _BIND_OK] + data
            if bad:
                raise ConfigError(f"mount {self.destination}: option {bad[0]!r} cannot apply to a bind mount")
        elif "tmpcopyup" in self.extra and self.type != "tmpfs":
            raise ConfigError(f"mount {self.destination}: tmpcopyup needs a tmpfs")

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & k.MS_BIND)


def _merge(set_: int, clr: int, change: tuple[int, int]) -> tuple[int, int]:
    """Later options win, as they do for mount(8)."""
    s, c = change
    return (set_ & ~c) | s, (clr & ~s) | c


def parse_mounts(config: dict) -> list[Mount]:
    mounts = []
    for m in config.get("mounts") or ():
        if not m.get("destination", "").startswith("/"):
            raise ConfigError(f"mount destination {m.get('destination')!r} is not an absolute path")
        mounts.append(Mount(m))
    return mounts


def _fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


# -- before pivot_root ---------------------------------------------------------------

def prepare_root(rootfs: str, propagation: str | None) -> None:
    """Cut propagation back to the host, then make the rootfs a mount of its own. An
    unbindable root is private until pivot made the rootfs "/" (an unbindable "/" could not
    be the source of the rootfs's bind, runc's EINVAL); pivot() then makes it unbindable."""
    flags = PROPAGATION_FLAGS.get(propagation or "", k.MS_SLAVE | k.MS_REC)
    if flags & k.MS_UNBINDABLE:
        flags = (flags & ~k.MS_UNBINDABLE) | k.MS_PRIVATE
    k.mount(None, "/", None, flags)
    _make_parent_private(rootfs)
    k.mount(rootfs, rootfs, "bind", k.MS_BIND | k.MS_REC)


def _make_parent_private(path: str) -> None:
    """pivot_root refuses a new root whose parent mount is shared."""
    best, shared = "", False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mp = fields[4]
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                best, shared = mp, any(o.startswith("shared:") for o in fields[6:fields.index("-")])
    if shared:
        k.mount(None, best, None, k.MS_PRIVATE)


def mount_all(rootfs: str, mounts: list[Mount], ctx) -> None:
    """Mount in config order, each destination resolved once inside the rootfs."""
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for m in mounts:
            try:
                _mount_one(root_fd, m, ctx)
            except OSError as e:
                raise PyrunError(describe_oserror(e, f"mount {m.source or m.type} to {m.destination}")) from None
    finally:
        os.close(root_fd)


def _mount_one(root_fd: int, m: Mount, ctx) -> None:
    if m.type == "cgroup":
        return _mount_cgroup(root_fd, m, ctx)
    if m.is_bind:
        src = m.source if m.source.startswith("/") else os.path.join(ctx.bundle, m.source)
        is_dir = os.path.isdir(src)
    else:
        src, is_dir = m.source or m.type, True
    m.canonical = paths.resolve(root_fd, m.destination)
    check_destination(m.canonical, m)
    # /dev gets its devices and a tmpfs its copied-up files after the mount: read-only
    # comes at the end (finalize), as runc does it.
    ro = m.attr_set & k.MOUNT_ATTR_RDONLY if m.is_bind else m.flags & k.MS_RDONLY
    m.deferred_ro = bool(ro) and (m.canonical == "/dev" or m.type == "tmpfs")
    _, fd = paths.make_at(root_fd, m.canonical, is_dir)
    try:
        check_landing(fd, m.canonical, m)
        if m.tree_fd >= 0:
            k.move_mount(m.tree_fd, "", fd, "", k.MOVE_MOUNT_F_EMPTY_PATH | k.MOVE_MOUNT_T_EMPTY_PATH)
            new, m.tree_fd = m.tree_fd, -1
        elif m.is_bind:
            attrs = (m.attr_set & ~k.MOUNT_ATTR_RDONLY if m.deferred_ro else m.attr_set, m.attr_clr)
            new = bind(src, fd, recursive=bool(m.flags & k.MS_REC), attrs=attrs,
                       rattrs=(m.rattr_set, m.rattr_clr))
        else:
            new = _mount_fs(root_fd, fd, src, m)
    finally:
        os.close(fd)
    try:
        for p in m.propagation:
            k.mount(None, _fdpath(new), None, p)
    finally:
        os.close(new)


def _mount_fs(root_fd: int, fd: int, src: str, m: Mount) -> int:
    """A new filesystem (tmpfs, proc, sysfs, mqueue, …) on the mount point `fd`. sysfs and
    mqueue are always mounted afresh: they then show the container's own network and IPC
    namespaces (joined or new), and never a host tree. Returns an O_PATH fd of the mount."""
    copy_from = -1
    if "tmpcopyup" in m.extra:
        copy_from = paths.open_canonical(root_fd, m.canonical, os.O_RDONLY | os.O_DIRECTORY)
    # A tmpfs without mode= takes the mode of the directory it covers, as runc does it.
    keep_mode = stat.S_IMODE(os.fstat(fd).st_mode) if m.type == "tmpfs" and not any(
        o.startswith("mode=") for o in m.data.split(",")) else None
    try:
        flags = m.flags & ~k.MS_RDONLY if m.deferred_ro else m.flags
        k.mount(src, _fdpath(fd), m.type, flags, m.data or None)
        new = paths.open_canonical(root_fd, m.canonical)  # the new mount's root
        try:
            if keep_mode is not None:
                os.chmod(_fdpath(new), keep_mode)
            if copy_from >= 0:
                _copy_up(copy_from, _fdpath(new))
            if m.rattr_set or m.rattr_clr:
                set_attrs(new, m.rattr_set, m.rattr_clr, recursive=True)
        except BaseException:
            os.close(new)
            raise
        return new
    finally:
        if copy_from >= 0:
            os.close(copy_from)


def check_destination(canonical: str, m: Mount) -> None:
    """runc's rules: proc and sysfs only on an ordinary directory, reached without a
    symlink; /proc itself only a procfs, and below it only what lxcfs emulates."""
    if m.type in ("proc", "sysfs") and canonical != posixpath.normpath("/" + m.destination.lstrip("/")):
        raise PyrunError(f"mount destination {m.destination}: filesystem {m.type!r} must be mounted "
                         "on an ordinary directory, not through a symlink")
    if canonical == "/proc":
        if m.type != "proc" and not (m.is_bind and _is_procfs(m.source)):
            raise PyrunError(f"mount destination {m.destination}: /proc must be a mount of type proc")
    elif paths.is_within(canonical, "/proc") and canonical not in PROC_MOUNT_OK:
        raise PyrunError(f"mount destination {m.destination} ({canonical}) is inside /proc: refused")


def check_landing(fd: int, canonical: str, m: Mount) -> None:
    """Where the mount point really is: procfs reached another way (a proc mounted elsewhere),
    or sysfs outside its cgroup tree, would let a mount redirect kernel files."""
    fstype = k.fstatfs_type(fd)
    if fstype == k.PROC_SUPER_MAGIC and canonical not in PROC_MOUNT_OK and canonical != "/proc":
        raise PyrunError(f"mount destination {m.destination} ({canonical}) is on procfs: refused")
    if fstype == k.SYSFS_MAGIC and not paths.is_within(canonical, "/sys/fs/cgroup") and canonical != "/sys":
        raise PyrunError(f"mount destination {m.destination} ({canonical}) is on sysfs: refused")


def _is_procfs(path: str) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return k.fstatfs_type(fd) == k.PROC_SUPER_MAGIC
    finally:
        os.close(fd)


def bind(src, target_fd: int, recursive: bool, attrs: tuple[int, int] = (0, 0),
         rattrs: tuple[int, int] = (0, 0)) -> int:
    """Bind `src` (a path, or an fd) onto the mount point `target_fd`.

    The new mount is made detached (open_tree), given its attributes (ro, nosuid, …)
    while nothing can see it yet, then attached: there is no moment at which it is
    writable, and no path is looked up twice. Returns an O_PATH fd of the new mount."""
    tree = detached_bind(src, recursive, attrs, rattrs)
    try:
        k.move_mount(tree, "", target_fd, "", k.MOVE_MOUNT_F_EMPTY_PATH | k.MOVE_MOUNT_T_EMPTY_PATH)
    except BaseException:
        os.close(tree)
        raise
    return tree


def detached_bind(src, recursive: bool, attrs: tuple[int, int] = (0, 0), rattrs: tuple[int, int] = (0, 0),
                  idmap: tuple[int, bool] = (-1, False)) -> int:
    """A clone of `src` (a path or an fd), not attached anywhere, with its attributes set:
    the fd of its root. idmap is (user namespace fd, every mount below too)."""
    flags = k.OPEN_TREE_CLONE | k.OPEN_TREE_CLOEXEC | (k.AT_RECURSIVE if recursive else 0)
    if isinstance(src, int):
        tree = k.open_tree(src, "", flags | k.AT_EMPTY_PATH)
    else:
        tree = k.open_tree(-100, src, flags)  # AT_FDCWD: a host path, as the config names it
    try:
        if attrs[0] or attrs[1]:
            k.mount_setattr(tree, "", k.AT_EMPTY_PATH, *attrs)
        if rattrs[0] or rattrs[1]:
            k.mount_setattr(tree, "", k.AT_EMPTY_PATH | k.AT_RECURSIVE, *rattrs)
        userns_fd, every_mount = idmap
        if userns_fd >= 0:  # only a mount not yet attached may be given an idmapping
            k.mount_setattr(tree, "", k.AT_EMPTY_PATH | (k.AT_RECURSIVE if every_mount else 0),
                            k.MOUNT_ATTR_IDMAP, 0, userns_fd=userns_fd)
    except BaseException:
        os.close(tree)
        raise
    return tree


def idmapped_tree(m: Mount, bundle: str, userns_fd: int) -> int:
    """An idmapped bind, made by the runtime before clone3: only the host's root may idmap
    a mount of the host's filesystems (the container's root, in its user namespace, may
    not); the init attaches it where it belongs."""
    src = m.source if m.source.startswith("/") else os.path.join(bundle, m.source)
    set_ = m.attr_set & ~k.MOUNT_ATTR_RDONLY if posixpath.normpath("/" + m.destination.lstrip("/")) == "/dev" \
        else m.attr_set
    return detached_bind(src, bool(m.flags & k.MS_REC), (set_, m.attr_clr), (m.rattr_set, m.rattr_clr),
                         (userns_fd, m.idmap == "ridmap"))


def set_attrs(fd: int, set_: int, clr: int = 0, recursive: bool = False) -> None:
    k.mount_setattr(fd, "", k.AT_EMPTY_PATH | (k.AT_RECURSIVE if recursive else 0), set_, clr)


def _copy_up(src_dir_fd: int, target: str) -> None:
    """tmpcopyup: what the image had under the mount point shows through the tmpfs."""
    for entry in os.scandir(src_dir_fd):
        st = entry.stat(follow_symlinks=False)
        dst = os.path.join(target, entry.name)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(dst, stat.S_IMODE(st.st_mode))
            sub = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=src_dir_fd)
            try:
                _copy_up(sub, dst)
            finally:
                os.close(sub)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(entry.name, dir_fd=src_dir_fd), dst)
        elif stat.S_ISREG(st.st_mode):
            rfd = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir_fd)
            wfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, stat.S_IMODE(st.st_mode))
            try:
                while os.sendfile(wfd, rfd, None, 1 << 20):
                    pass
            finally:
                os.close(rfd)
                os.close(wfd)
        else:
            os.mknod(dst, st.st_mode, st.st_rdev)
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(dst, stat.S_IMODE(st.st_mode))
    # the tmpfs root takes the mode and owner of the directory it covers
    st = os.fstat(src_dir_fd)
    os.chmod(target, stat.S_IMODE(st.st_mode))
    os.chown(target, st.st_uid, st.st_gid)


def _mount_cgroup(root_fd: int, m: Mount, ctx) -> None:
    """A `cgroup` mount: cgroup2 on a unified host; on v1/hybrid a tmpfs holding each hierarchy.

    Without a cgroup namespace, only the container's own cgroup directories are bound
    (never a hierarchy's root): the host's tree stays out of reach."""
    from . import cgroups
    ro = k.MOUNT_ATTR_RDONLY if m.flags & k.MS_RDONLY else 0
    base = (m.flags & ~(k.MS_RDONLY | k.MS_BIND | k.MS_REC)) | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC
    battrs = (k.MOUNT_ATTR_NOSUID | k.MOUNT_ATTR_NODEV | k.MOUNT_ATTR_NOEXEC | ro, 0)
    canonical = paths.resolve(root_fd, m.destination)
    check_destination(canonical, m)
    canonical, fd = paths.make_at(root_fd, canonical, True)
    try:
        check_landing(fd, canonical, m)
        if cgroups.is_unified():
            if ctx.new_cgroupns:
                k.mount("cgroup2", _fdpath(fd), "cgroup2", base | (k.MS_RDONLY if ro else 0))
            elif "" in ctx.cgroup_dirs:
                os.close(bind(ctx.cgroup_dirs[""], fd, recursive=True, attrs=battrs))
            return
        k.mount("tmpfs", _fdpath(fd), "tmpfs", base, "mode=755")
    finally:
        os.close(fd)
    top = paths.open_canonical(root_fd, canonical)  # the new tmpfs
    try:
        for mountpoint, fstype, opts in cgroups.mounts():
            host_dir = _hierarchy_dir(ctx, fstype, opts)
            if host_dir is None:
                continue  # not a hierarchy the container was placed in
            sub = paths.mkdir_all(top, "/" + os.path.basename(mountpoint))
            try:
                if ctx.new_cgroupns:
                    data = None if fstype == "cgroup2" else ",".join(o for o in opts if o not in ("rw", "ro"))
                    k.mount("cgroup", _fdpath(sub), fstype, base | (k.MS_RDONLY if ro else 0), data)
                else:
                    os.close(bind(host_dir, sub, recursive=True, attrs=battrs))
            finally:
                os.close(sub)
        if ro:
            set_attrs(top, k.MOUNT_ATTR_RDONLY)
        for p in m.propagation:
            k.mount(None, _fdpath(top), None, p)
    finally:
        os.close(top)


def _hierarchy_dir(ctx, fstype: str, opts: list[str]) -> str | None:
    """The container's own cgroup dir in the hierarchy mounted with these options."""
    want = "unified" if fstype == "cgroup2" else ",".join(
        o.removeprefix("name=") for o in opts if o not in ("rw", "ro") and not o.startswith("release_agent"))
    return ctx.cgroup_dirs.get(want)


def create_devices(rootfs: str, devices: list[dict], ctx) -> None:
    """Default devices unless /dev comes from the host, then linux.devices, then the links."""
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        wanted = {} if ctx.dev_is_bind else {
            p: {"path": p, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666, "uid": 0, "gid": 0}
            for p, ma, mi in DEFAULT_DEVICES}
        listed = set()
        for d in devices:
            wanted[d["path"]] = d
            listed.add(d["path"])
        for d in wanted.values():
            try:
                _make_device(root_fd, d, ctx, listed=d["path"] in listed)
            except OSError as e:
                raise PyrunError(describe_oserror(e, f"create device {d['path']}")) from None
        if not ctx.dev_is_bind:
            links = DEV_SYMLINKS + ((("/proc/kcore", "/dev/core"),) if os.path.exists("/proc/kcore") else ())
            for to, path in links:
                _symlink_in_root(root_fd, to, path, replace=False)
            _symlink_in_root(root_fd, "pts/ptmx", "/dev/ptmx", replace=True)
    finally:
        os.close(root_fd)


def _in_parent(root_fd: int, path: str) -> tuple[int, str]:
    """(O_PATH fd of the parent directory, made if need be; the last name) of a path in the root."""
    canonical = paths.resolve(root_fd, path)
    parent, _, name = canonical.rpartition("/")
    if not name:
        raise IsADirectoryError(21, "Is a directory", path)
    return paths.mkdir_all(root_fd, parent), name


def _make_device(root_fd: int, d: dict, ctx, listed: bool) -> None:
    """A device node at d["path"]. What is there already: the same device is kept (it may
    be the host's, through a bind-mounted /dev); anything else is an error for a device
    the config lists (config-linux.md: MUST), and replaced for a default one (never trust
    the image's /dev/null)."""
    kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[d["type"]]
    mode = d.get("fileMode", 0o666) & 0o7777
    rdev = os.makedev(d.get("major", 0), d.get("minor", 0))
    pfd, name = _in_parent(root_fd, d["path"])
    try:
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_IFMT(st.st_mode) == kind and (kind == stat.S_IFIFO or st.st_rdev == rdev):
            return
        if st is not None:
            if listed:
                raise PyrunError(f"linux.devices: {d['path']} exists and is not the device "
                                 f"{d['type']} {d.get('major', 0)}:{d.get('minor', 0)}")
            os.unlink(name, dir_fd=pfd)
        if ctx.userns:
            # mknod is refused in a user namespace: bind the host's node onto an empty file.
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644, dir_fd=pfd))
            tfd = paths.open_canonical(pfd, "/" + name)
            try:
                os.close(bind(d["path"], tfd, recursive=False))
            finally:
                os.close(tfd)
            return
        os.mknod(name, kind | mode, rdev, dir_fd=pfd)
        os.chmod(name, mode, dir_fd=pfd)  # mknod is subject to umask
        os.chown(name, d.get("uid", 0), d.get("gid", 0), dir_fd=pfd, follow_symlinks=False)
    finally:
        os.close(pfd)


def _symlink_in_root(root_fd: int, to: str, path: str, replace: bool) -> None:
    pfd, name = _in_parent(root_fd, path)
    try:
        if replace:
            try:
                os.unlink(name, dir_fd=pfd)
            except FileNotFoundError:
                pass
        os.symlink(to, name, dir_fd=pfd)
    except FileExistsError:
        pass
    finally:
        os.close(pfd)


# -- pivot_root and after --------------------------------------------------------------

def pivot(rootfs: str, no_pivot: bool, propagation: str | None = None) -> None:
    """Make the rootfs "/", the host's tree gone; rootfsPropagation then holds on "/" itself
    (set before, it applied to the old root and went with it)."""
    if no_pivot:
        os.chdir(rootfs)
        k.mount(rootfs, "/", None, k.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
    else:
        _pivot_root(rootfs)
    if propagation:
        k.mount(None, "/", None, PROPAGATION_FLAGS[propagation])


def _pivot_root(rootfs: str) -> None:
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        k.pivot_root(".", ".")
        # The old root is now stacked under the new one at "/": detach it without
        # letting the unmount propagate back to the host.
        os.fchdir(old)
        k.mount(None, ".", None, k.MS_SLAVE | k.MS_REC)
        k.umount2(".", k.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)


def apply_sysctl(sysctl: dict, proc) -> None:
    """Through the runtime's verified procfs (procfs.ProcFS): the container's /proc may lie."""
    for key, value in sysctl.items():
        try:
            proc.write("sys/" + key.replace(".", "/"), value.encode())
        except OSError as e:
            raise PyrunError(describe_oserror(e, f"sysctl {key}")) from None


def readonly_path(root_fd: int, path: str) -> None:
    """A read-only bind of the path onto itself, every mount below it read-only too."""
    try:
        fd = paths.open_in_root(root_fd, path)
    except FileNotFoundError:
        return
    try:
        os.close(bind(fd, fd, recursive=True, rattrs=(_RO_PATH, 0)))
    finally:
        os.close(fd)


_RO_PATH = k.MOUNT_ATTR_RDONLY | k.MOUNT_ATTR_NOSUID | k.MOUNT_ATTR_NODEV | k.MOUNT_ATTR_NOEXEC


def mask_path(root_fd: int, path: str, null) -> None:
    """A directory gets an empty read-only tmpfs, a file the null device. `null()` gives
    the verified null device: never whatever the rootfs calls /dev/null (CVE-2025-31133)."""
    try:
        fd = paths.open_in_root(root_fd, path)
    except FileNotFoundError:
        return
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            k.mount("tmpfs", _fdpath(fd), "tmpfs", k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC, None)
        else:
            os.close(bind(null(), fd, recursive=False))
    finally:
        os.close(fd)


def open_null(root_fd: int) -> int:
    """The container's /dev/null, if and only if it is the null device (char 1:3)."""
    try:
        fd = paths.open_in_root(root_fd, "/dev/null")
    except OSError as e:
        raise PyrunError(describe_oserror(e, "maskedPaths: open /dev/null")) from None
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise PyrunError("maskedPaths: /dev/null in the container is not the null device (1:3): refusing to mask with it")
    return fd


def finalize(config: dict, linux: dict, mounts: list[Mount], proc) -> None:
    apply_sysctl(linux.get("sysctl") or {}, proc)
    root_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    null_fd = []

    def null() -> int:
        if not null_fd:
            null_fd.append(open_null(root_fd))
        return null_fd[0]
    try:
        for p in linux.get("readonlyPaths") or ():
            try:
                readonly_path(root_fd, p)
            except OSError as e:
                raise PyrunError(describe_oserror(e, f"readonly path {p}")) from None
        for p in linux.get("maskedPaths") or ():
            try:
                mask_path(root_fd, p, null)
            except OSError as e:
                raise PyrunError(describe_oserror(e, f"masked path {p}")) from None
        for m in mounts:
            if m.deferred_ro:
                _set_ro(root_fd, m.canonical, f"remount {m.destination} read-only")
        if (config.get("root") or {}).get("readonly"):
            _set_ro(root_fd, "/", "remount / read-only")
    finally:
        for fd in null_fd:
            os.close(fd)
        os.close(root_fd)


def _set_ro(root_fd: int, canonical: str, what: str) -> None:
    try:
        fd = paths.open_canonical(root_fd, canonical)
        try:
            set_attrs(fd, k.MOUNT_ATTR_RDONLY)
        finally:
            os.close(fd)
    except OSError as e:
        raise PyrunError(describe_oserror(e, what)) from None


# -- without a mount namespace of the container's own -------------------------------------
# The config's mounts then go into the caller's mount namespace, inside the rootfs, and come
# out again at delete (runc leaves them). Before the init exists, create records the mount IDs
# already under the rootfs; once the init is ready, those it made. Delete, even after a create
# killed half way, so unmounts only what is new under the rootfs and never what was there
# before (the rootfs may itself be a mount point, as Podman's overlay is).

_NO_LINKS = k.RESOLVE_NO_SYMLINKS | k.RESOLVE_NO_MAGICLINKS


def pin_rootfs(rootfs: str) -> int:
    """The rootfs, opened once, no symlink followed (a component swapped for one since
    create resolved it fails here): the init mounts and chroots through this fd."""
    return k.openat2(-100, rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, _NO_LINKS)


def caller_mounts(rootfs: str) -> dict:
    """The preliminary record's part: enough for delete to find the new mounts."""
    return {"rootfs": rootfs, "mntns": _mount_namespace(),
            "before": sorted(_under(_mountinfo(), rootfs))}


def made_mounts(record: dict) -> list[int]:
    """The mounts new under the rootfs since `caller_mounts`: the init's, once it is ready."""
    return sorted(set(_under(_mountinfo(), record["rootfs"])) - set(record["before"]))


def dev_is_ours(mounts: list[Mount]) -> bool:
    """/dev is, on top, a filesystem mount_all made (not a bind of a host directory): its
    devices go there, and out with it."""
    on_dev = [m for m in mounts if m.canonical == "/dev"]
    return bool(on_dev) and not on_dev[-1].is_bind


def remove_caller_mounts(record: dict | None) -> None:
    """Unmount, deepest first, what create mounted under the rootfs in this namespace, each
    mount verified by ID on an fd opened without symlinks, then detached through that fd:
    no path is looked up twice, and nothing outside the rootfs or older than create goes."""
    if not record:
        return
    from . import log
    if _mount_namespace() != record["mntns"]:
        log.debug(f"the mounts under {record['rootfs']} are in another mount namespace: left to it")
        return
    table = _mountinfo()
    for mid in sorted(_ours(table, record), key=lambda m: _depth(table, m), reverse=True):
        _unmount(mid, table[mid][1], log.warning)


def _ours(table: dict, record: dict) -> list[int]:
    """New under the rootfs; and, when the init's are known, one of them or a mount on one."""
    before, made = set(record["before"]), record.get("made")
    made = None if made is None else set(made)

    def mine(mid: int) -> bool:
        if mid in before:
            return False
        seen = set()
        while made is not None and mid in table and mid not in seen:
            if mid in made:
                return True
            seen.add(mid)
            mid = table[mid][0]
        return made is None
    return [mid for mid in _under(table, record["rootfs"]) if mine(mid)]


def _depth(table: dict, mid: int) -> int:
    seen = set()
    while mid in table and mid not in seen:
        seen.add(mid)
        mid = table[mid][0]
    return len(seen)


def _unmount(mid: int, mountpoint: str, warn) -> None:
    try:
        fd = k.openat2(-100, mountpoint, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, 0, _NO_LINKS)
    except FileNotFoundError:
        return  # gone with a mount it was on
    except OSError as e:
        warn(describe_oserror(e, f"mount {mountpoint} (mount ID {mid}) left in place: its path cannot be opened"))
        return
    try:
        if _mount_id(fd) != mid:
            warn(f"mount {mountpoint} (mount ID {mid}) left in place: its path now leads to another mount")
            return
        k.umount2(_fdpath(fd), k.MNT_DETACH)
    except OSError as e:
        raise PyrunError(describe_oserror(e, f"unmount {mountpoint}")) from None
    finally:
        os.close(fd)


def _mount_id(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    return -1


def _mount_namespace() -> int:
    return os.stat("/proc/self/ns/mnt").st_ino


def _mountinfo() -> dict[int, tuple[int, str]]:
    """This namespace's mounts: ID → (parent ID, mount point)."""
    table = {}
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split(b" ", 5)
            table[int(fields[0])] = (int(fields[1]), _unescape(fields[4]))
    return table


def _unescape(field: bytes) -> str:
    """mountinfo writes space, tab, newline and backslash as \\ooo."""
    if b"\\" in field:
        import re
        field = re.sub(rb"\\([0-7]{3})", lambda m: bytes((int(m[1], 8),)), field)
    return os.fsdecode(field)


def _under(table: dict, rootfs: str) -> list[int]:
    top = rootfs.rstrip("/") + "/"
    return [mid for mid, (_, mp) in table.items() if mp == rootfs or mp.startswith(top)]
