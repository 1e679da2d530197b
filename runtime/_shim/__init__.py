"""The typed boundary to the C shim.

Every function here is one syscall (or one tight sequence) that Python's os module
lacks. Failures raise OSError carrying errno and the path or argument involved, so
callers can report the step that failed with its context. Nothing outside this
package touches cffi.
"""
from ._native import ffi, lib

# clone(2)/unshare(2) flags, from <linux/sched.h>.
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags, from <sys/mount.h>.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 2

# openat2(2) resolve flags, from <linux/openat2.h>.
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# open_tree(2) / move_mount(2) / mount_setattr(2).
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x04
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000
MOVE_MOUNT_T_EMPTY_PATH = 0x40

# statfs(2) f_type magics, from <linux/magic.h>.
PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572


def _check(ret, what, *detail):
    if ret < 0:
        err = ffi.errno
        import os
        raise OSError(err, f"{what}: {os.strerror(err)}", *detail)
    return ret


def _b(s):
    return None if s is None else (s.encode() if isinstance(s, str) else s)


def clone3(flags: int, cgroup_fd: int = -1) -> tuple[int, int]:
    """Fork into new namespaces. Returns (pid, pidfd) in the parent, (0, -1) in the child."""
    pidfd = ffi.new("int *", -1)
    pid = _check(lib.pyrun_clone3(flags, cgroup_fd, pidfd), "clone3")
    return pid, (pidfd[0] if pid else -1)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the three capability sets at once (bit masks)."""
    _check(lib.pyrun_capset(effective, permitted, inheritable), "capset")


PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2


def cap_ambient_raise(cap: int) -> None:
    _check(lib.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0), "prctl(PR_CAP_AMBIENT_RAISE)", cap)


def sched_setattr(policy: int, flags: int = 0, nice: int = 0, priority: int = 0, runtime: int = 0,
                  deadline: int = 0, period: int = 0) -> None:
    _check(lib.pyrun_sched_setattr(policy, flags, nice, priority, runtime, deadline, period),
           "sched_setattr")


def ioprio_set(ioclass: int, level: int) -> None:
    _check(lib.pyrun_ioprio_set(ioclass, level), "ioprio_set")


def ioprio_get(pid: int) -> int:
    return _check(lib.pyrun_ioprio_get(pid), "ioprio_get", pid)


def join_session_keyring(name: str) -> int:
    return _check(lib.pyrun_join_session_keyring(name.encode()), "keyctl(JOIN_SESSION_KEYRING)", name)


def setrlimit(resource: int, soft: int, hard: int) -> None:
    _check(lib.pyrun_setrlimit(resource, soft, hard), "setrlimit", resource)


def unshare(flags: int) -> None:
    _check(lib.unshare(flags), "unshare", hex(flags))


def setns(fd: int, nstype: int = 0) -> None:
    _check(lib.setns(fd, nstype), "setns")


def sethostname(name: str) -> None:
    b = name.encode()
    _check(lib.sethostname(b, len(b)), "sethostname", name)


def setdomainname(name: str) -> None:
    b = name.encode()
    _check(lib.setdomainname(b, len(b)), "setdomainname", name)


def mount(source, target, fstype, flags: int = 0, data=None) -> None:
    ret = lib.mount(_b(source) or ffi.NULL, _b(target), _b(fstype) or ffi.NULL, flags,
                    _b(data) or ffi.NULL)
    _check(ret, "mount", target)


def umount2(target, flags: int = 0) -> None:
    _check(lib.umount2(_b(target), flags), "umount2", target)


def pivot_root(new_root, put_old) -> None:
    _check(lib.pyrun_pivot_root(_b(new_root), _b(put_old)), "pivot_root", new_root)


def openat2(dirfd: int, path, flags: int, mode: int = 0, resolve: int = 0) -> int:
    return _check(lib.pyrun_openat2(dirfd, _b(path), flags, mode, resolve), "openat2", path)


def open_tree(dirfd: int, path, flags: int) -> int:
    return _check(lib.pyrun_open_tree(dirfd, _b(path), flags), "open_tree", path)


def move_mount(from_dirfd: int, from_path, to_dirfd: int, to_path, flags: int) -> None:
    _check(lib.pyrun_move_mount(from_dirfd, _b(from_path), to_dirfd, _b(to_path), flags),
           "move_mount", to_path)


def mount_setattr(dirfd: int, path, flags: int, attr_set: int = 0, attr_clr: int = 0,
                  propagation: int = 0, userns_fd: int = 0) -> None:
    attr = ffi.new("struct mount_attr *")
    attr.attr_set, attr.attr_clr = attr_set, attr_clr
    attr.propagation, attr.userns_fd = propagation, userns_fd
    _check(lib.pyrun_mount_setattr(dirfd, _b(path), flags, attr), "mount_setattr", path)


def fstatfs_type(fd: int) -> int:
    """The f_type magic of the filesystem that holds `fd`."""
    return _check(lib.pyrun_fstatfs_type(fd), "fstatfs")


def fresh_fs(fstype: str, attrs: int = 0) -> int:
    """A new instance of `fstype`, detached: an fd of its root (fsopen/fsmount)."""
    return _check(lib.pyrun_fresh_fs(fstype.encode(), attrs), "fsmount", fstype)


def rename_noreplace(src: str, dst: str) -> None:
    _check(lib.pyrun_rename_noreplace(src.encode(), dst.encode()), "rename", dst)


def set_mempolicy(mode: int, nodes: set[int]) -> None:
    """This thread's NUMA memory policy (inherited by execve): mode | flags, and a node set."""
    bits = 8 * ffi.sizeof("unsigned long")
    words = max(nodes) // bits + 1 if nodes else 1
    mask = ffi.new("unsigned long[]", words)
    for n in nodes:
        mask[n // bits] |= 1 << (n % bits)
    _check(lib.pyrun_set_mempolicy(mode, mask if nodes else ffi.NULL, words * bits + 1 if nodes else 0),
           "set_mempolicy", hex(mode))


def personality(persona: int) -> None:
    if lib.personality(persona) == -1:
        _check(-1, "personality", hex(persona))
