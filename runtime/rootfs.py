"""The container's filesystem, prepared in the order the kernel needs it.

In the child, inside its new mount namespace:
  prepare_root       propagation of / (rootfsPropagation), rootfs bind-mounted onto itself
  mount_all          every config mount, destinations resolved inside the rootfs
  create_devices     default devices, linux.devices, /dev symlinks, /dev/ptmx
  pivot              pivot_root (or MS_MOVE + chroot with --no-pivot), old root detached
  finalize           sysctl, readonlyPaths, maskedPaths, root.readonly

Every destination is resolved with openat2(RESOLVE_IN_ROOT) and mounted through
/proc/self/fd/N, so a symlink in the image can never lead a mount outside the rootfs.
"""
import os
import posixpath
import stat

from . import _shim as k
from .errors import ConfigError, PyrunError, describe_oserror

# Mount options: name → (clear, flag). Also the source of `features.mountOptions`.
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
# Options the runtime itself acts on (not passed to the kernel).
EXTRA_OPTIONS = ("tmpcopyup",)
# Flags a bind remount must repeat or the kernel refuses it (locked in a user namespace).
_LOCKABLE = k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC

DEFAULT_DEVICES = (  # path, major, minor: runc's defaults, all character devices 0666
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
    ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
)
DEV_SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"),
)
_RESOLVE = k.RESOLVE_IN_ROOT | k.RESOLVE_NO_MAGICLINKS


class Mount:
    """One config.json mount, its options split into what the kernel takes."""

    __slots__ = ("destination", "type", "source", "flags", "propagation", "data", "extra")

    def __init__(self, m: dict):
        self.destination = m["destination"]
        self.type = m.get("type") or ""
        self.source = m.get("source") or ""
        self.flags, self.propagation, data, self.extra = 0, [], [], set()
        for opt in m.get("options") or ():
            if opt in MOUNT_FLAGS:
                clear, flag = MOUNT_FLAGS[opt]
                self.flags = (self.flags & ~flag) if clear else (self.flags | flag)
            elif opt in PROPAGATION_FLAGS:
                self.propagation.append(PROPAGATION_FLAGS[opt])
            elif opt in EXTRA_OPTIONS:
                self.extra.add(opt)
            else:
                data.append(opt)
        if self.type == "bind":
            self.flags |= k.MS_BIND
        self.data = ",".join(data)

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & k.MS_BIND)


def parse_mounts(config: dict) -> list[Mount]:
    mounts = []
    for m in config.get("mounts") or ():
        if not m.get("destination", "").startswith("/"):
            raise ConfigError(f"mount destination {m.get('destination')!r} is not an absolute path")
        mounts.append(Mount(m))
    return mounts


# -- paths inside the rootfs ---------------------------------------------------------

def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH) -> int:
    return k.openat2(root_fd, path.lstrip("/") or ".", flags | os.O_CLOEXEC, 0, _RESOLVE)


def mkdir_in_root(root_fd: int, path: str, mode: int = 0o755, _depth: int = 0) -> int:
    """mkdir -p of `path` inside the root; returns an O_PATH fd of the directory.

    A symlink on the way whose target does not exist yet is followed the way
    RESOLVE_IN_ROOT would follow it: its target is created inside the root."""
    if _depth > 40:
        raise OSError(40, "Too many levels of symbolic links", path)
    fd = os.dup(root_fd)
    here = "/"
    try:
        for part in [p for p in path.split("/") if p not in ("", ".")]:
            try:
                nfd = k.openat2(fd, part, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, _RESOLVE)
            except FileNotFoundError:
                try:
                    os.mkdir(part, mode, dir_fd=_dirfd(fd))
                    nfd = k.openat2(fd, part, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, _RESOLVE)
                except FileExistsError:  # a dangling symlink: create what it names, inside the root
                    target = os.readlink(part, dir_fd=_dirfd(fd))
                    nfd = mkdir_in_root(root_fd, posixpath.normpath(posixpath.join(here, target)),
                                        mode, _depth + 1)
            os.close(fd)
            fd = nfd
            here = posixpath.join(here, part)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _dirfd(fd: int) -> int:
    """O_PATH fds serve as dir_fd for mkdirat/readlinkat directly."""
    return fd


def create_in_root(root_fd: int, path: str, is_dir: bool) -> int:
    """Make the mount point (a directory, or an empty file for a file bind) and open it O_PATH."""
    if is_dir:
        return mkdir_in_root(root_fd, path)
    parent, _, name = path.rstrip("/").rpartition("/")
    pfd = mkdir_in_root(root_fd, parent)
    try:
        try:
            return k.openat2(pfd, name, os.O_PATH | os.O_CLOEXEC, 0, _RESOLVE)
        except FileNotFoundError:
            # O_PATH cannot create; a real open through the parent fd can (never follows out:
            # O_NOFOLLOW|O_EXCL refuses an existing link).
            dfd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644, dir_fd=dfd)
                os.close(fd)
            finally:
                os.close(dfd)
            return k.openat2(pfd, name, os.O_PATH | os.O_CLOEXEC, 0, _RESOLVE)
    finally:
        os.close(pfd)


def _fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


# -- before pivot_root ---------------------------------------------------------------

def prepare_root(rootfs: str, propagation: str | None) -> None:
    """Cut propagation back to the host, then make the rootfs a mount of its own."""
    flags = PROPAGATION_FLAGS.get(propagation or "", k.MS_SLAVE | k.MS_REC)
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
    """Mount in config order."""
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for m in mounts:
            try:
                _mount_one(root_fd, rootfs, m, ctx)
            except OSError as e:
                raise PyrunError(describe_oserror(e, f"mount {m.source or m.type} to {m.destination}")) from None
    finally:
        os.close(root_fd)


def _mount_one(root_fd: int, rootfs: str, m: Mount, ctx) -> None:
    if m.type == "cgroup":
        return _mount_cgroup(root_fd, m, ctx)
    if m.is_bind:
        src = m.source if m.source.startswith("/") else os.path.join(ctx.bundle, m.source)
        is_dir = os.path.isdir(src)
    else:
        src, is_dir = m.source or m.type, True
    # sysfs belongs to a network namespace, mqueue to an IPC one: without our own, bind the host's.
    host_bind = {"sysfs": "/sys", "mqueue": "/dev/mqueue"}.get(m.type) if not m.is_bind and not (
        ctx.new_netns if m.type == "sysfs" else ctx.new_ipcns) else None
    fd = create_in_root(root_fd, m.destination, is_dir)
    copy_from = -1
    try:
        if "tmpcopyup" in m.extra:
            copy_from = os.open(_fdpath(fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if m.is_bind or host_bind:
            k.mount(host_bind or src, _fdpath(fd), None, k.MS_BIND | (k.MS_REC if host_bind else m.flags & k.MS_REC))
        else:
            k.mount(src, _fdpath(fd), m.type, m.flags, m.data or None)
        # The fd still names the directory under the new mount: look the path up again.
        os.close(fd)
        fd = open_in_root(root_fd, m.destination)
        if (m.is_bind or host_bind) and m.flags & ~(k.MS_BIND | k.MS_REC | k.MS_REMOUNT):
            _remount_bind(fd, m.flags & ~k.MS_REC)
        if copy_from >= 0:
            _copy_up(copy_from, _fdpath(fd))
        for p in m.propagation:
            k.mount(None, _fdpath(fd), None, p)
    finally:
        os.close(fd)
        if copy_from >= 0:
            os.close(copy_from)


def _remount_bind(fd: int, flags: int, close: bool = False) -> None:
    target = _fdpath(fd)
    try:
        try:
            k.mount(None, target, None, flags | k.MS_BIND | k.MS_REMOUNT)
        except PermissionError:
            # Flags locked by a user namespace must be repeated in the remount.
            locked = _statvfs_flags(target)
            k.mount(None, target, None, flags | locked | k.MS_BIND | k.MS_REMOUNT)
    finally:
        if close:
            os.close(fd)


def _statvfs_flags(path: str) -> int:
    st = os.statvfs(path)
    # ST_* bits coincide with MS_* for these four.
    return st.f_flag & _LOCKABLE


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
    """A `cgroup` mount: cgroup2 on a unified host; on v1/hybrid a tmpfs holding each hierarchy."""
    from . import cgroups
    ro = m.flags & k.MS_RDONLY
    base = (m.flags & ~(k.MS_RDONLY | k.MS_BIND | k.MS_REC)) | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC
    fd = create_in_root(root_fd, m.destination, True)
    try:
        target = _fdpath(fd)
        if cgroups.is_unified():
            if ctx.new_cgroupns:
                k.mount("cgroup2", target, "cgroup2", base | ro)
            else:
                k.mount(ctx.cgroup_dirs.get("", "/sys/fs/cgroup"), target, None, k.MS_BIND | k.MS_REC)
                os.close(fd)  # it names the directory under the bind mount: look it up again
                fd = open_in_root(root_fd, m.destination)
                _remount_bind(fd, base | ro)
            return
        k.mount("tmpfs", target, "tmpfs", base, "mode=755")
        os.close(fd)  # it still names the directory under the new tmpfs
        fd = open_in_root(root_fd, m.destination)
        target = _fdpath(fd)
        for mountpoint, fstype, opts in cgroups._mounts():
            name = os.path.basename(mountpoint)
            sub = mkdir_in_root(fd, name)
            host_dir = _hierarchy_dir(ctx, fstype, opts)
            try:
                if ctx.new_cgroupns and host_dir is not None:
                    data = None if fstype == "cgroup2" else ",".join(o for o in opts if o not in ("rw", "ro"))
                    k.mount("cgroup", _fdpath(sub), fstype, base | ro, data)
                    continue
                k.mount(host_dir or mountpoint, _fdpath(sub), None, k.MS_BIND | k.MS_REC)
            finally:
                os.close(sub)
            _remount_bind(open_in_root(fd, name), base | ro, close=True)
        if ro:
            _remount_bind(fd, k.MS_RDONLY | base)
    finally:
        os.close(fd)


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
        for d in devices:
            wanted[d["path"]] = d
        for d in wanted.values():
            try:
                _make_device(root_fd, d, ctx)
            except OSError as e:
                raise PyrunError(describe_oserror(e, f"create device {d['path']}")) from None
        if not ctx.dev_is_bind:
            links = DEV_SYMLINKS + ((("/proc/kcore", "/dev/core"),) if os.path.exists("/proc/kcore") else ())
            for to, path in links:
                _symlink_in_root(root_fd, to, path)
            _setup_ptmx(root_fd)
    finally:
        os.close(root_fd)


def _make_device(root_fd: int, d: dict, ctx) -> None:
    kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[d["type"]]
    mode = d.get("fileMode", 0o666) & 0o7777
    parent, _, name = d["path"].rstrip("/").rpartition("/")
    pfd = mkdir_in_root(root_fd, parent)
    dfd = os.open(_fdpath(pfd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        if ctx.userns:
            # mknod is refused in a user namespace: bind the host's node onto an empty file.
            fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o644, dir_fd=dfd)
            os.close(fd)
            tfd = k.openat2(pfd, name, os.O_PATH | os.O_CLOEXEC, 0, _RESOLVE)
            try:
                k.mount(d["path"], _fdpath(tfd), None, k.MS_BIND)
            finally:
                os.close(tfd)
            return
        os.mknod(name, kind | mode, os.makedev(d.get("major", 0), d.get("minor", 0)), dir_fd=dfd)
        os.chmod(name, mode, dir_fd=dfd)  # mknod is subject to umask
        os.chown(name, d.get("uid", 0), d.get("gid", 0), dir_fd=dfd, follow_symlinks=False)
    finally:
        os.close(dfd)
        os.close(pfd)


def _symlink_in_root(root_fd: int, to: str, path: str) -> None:
    parent, _, name = path.rpartition("/")
    pfd = mkdir_in_root(root_fd, parent)
    dfd = os.open(_fdpath(pfd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.symlink(to, name, dir_fd=dfd)
    except FileExistsError:
        pass
    finally:
        os.close(dfd)
        os.close(pfd)


def _setup_ptmx(root_fd: int) -> None:
    pfd = mkdir_in_root(root_fd, "/dev")
    dfd = os.open(_fdpath(pfd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            os.unlink("ptmx", dir_fd=dfd)
        except FileNotFoundError:
            pass
        os.symlink("pts/ptmx", "ptmx", dir_fd=dfd)
    finally:
        os.close(dfd)
        os.close(pfd)


# -- pivot_root and after --------------------------------------------------------------

def pivot(rootfs: str, no_pivot: bool) -> None:
    if no_pivot:
        os.chdir(rootfs)
        k.mount(rootfs, "/", None, k.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
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


def apply_sysctl(sysctl: dict) -> None:
    for key, value in sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise PyrunError(describe_oserror(e, f"sysctl {key}")) from None


def readonly_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        k.mount(_fdpath(fd), _fdpath(fd), None, k.MS_BIND | k.MS_REC)
        fd2 = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            _remount_bind(fd2, k.MS_RDONLY | k.MS_REC | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC)
        finally:
            os.close(fd2)
    finally:
        os.close(fd)


def mask_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            k.mount("tmpfs", _fdpath(fd), "tmpfs", k.MS_RDONLY, None)
        else:
            k.mount("/dev/null", _fdpath(fd), None, k.MS_BIND)
    finally:
        os.close(fd)


def finalize(config: dict, linux: dict) -> None:
    apply_sysctl(linux.get("sysctl") or {})
    for p in linux.get("readonlyPaths") or ():
        try:
            readonly_path(p)
        except OSError as e:
            raise PyrunError(describe_oserror(e, f"readonly path {p}")) from None
    for p in linux.get("maskedPaths") or ():
        try:
            mask_path(p)
        except OSError as e:
            raise PyrunError(describe_oserror(e, f"masked path {p}")) from None
    if (config.get("root") or {}).get("readonly"):
        try:
            fd = os.open("/", os.O_PATH | os.O_CLOEXEC)
            _remount_bind(fd, k.MS_RDONLY, close=True)
        except OSError as e:
            raise PyrunError(describe_oserror(e, "remount / read-only")) from None
