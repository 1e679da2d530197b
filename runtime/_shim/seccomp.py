"""libseccomp and seccomp(2), behind typed functions: runtime/seccomp.py never sees cffi.

libseccomp returns -errno; these wrappers raise OSError(errno, what) instead, or
return a plain value where "not known" is an answer rather than a failure.
"""
import os

from ._native import ffi, lib

NR_UNKNOWN = lib.__NR_SCMP_ERROR  # syscall_number() of a name libseccomp does not know


def _check(rc: int, what: str) -> int:
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")
    return rc


def version() -> tuple[int, int, int]:
    v = lib.seccomp_version()
    return (v.major, v.minor, v.micro)


def api_level() -> int:
    """libseccomp's API level for this kernel (it probes the kernel on first use)."""
    return lib.seccomp_api_get()


def arch_token(name: str) -> int:
    """libseccomp's token for an architecture name, 0 if it does not know the name."""
    return lib.seccomp_arch_resolve_name(name.encode())


def syscall_number(name: str, arch: int = 0) -> int:
    """The syscall's number (native, or on `arch`), NR_UNKNOWN if libseccomp does not know it.
    Below NR_UNKNOWN are libseccomp's pseudo numbers, for syscalls an arch lacks."""
    if arch:
        return lib.seccomp_syscall_resolve_name_arch(arch, name.encode())
    return lib.seccomp_syscall_resolve_name(name.encode())


def flag_supported(bit: int) -> bool:
    """Does this kernel take seccomp(SECCOMP_SET_MODE_FILTER) flag `bit`?"""
    return lib.pyrun_seccomp_flag_supported(bit) == 1


def load(program: bytes, flags: int) -> int:
    """Install a BPF program (struct sock_filter array) on this thread; returns what the
    kernel returned: the notify listener fd with SECCOMP_FILTER_FLAG_NEW_LISTENER, else 0."""
    ret = lib.pyrun_seccomp_load(ffi.from_buffer(program), len(program), flags)
    if ret < 0:
        err = ffi.errno
        raise OSError(err, os.strerror(err))
    return ret


class Builder:
    """One libseccomp filter context, released on close(): rules in, BPF out."""

    def __init__(self, default_action: int):
        self._ctx = lib.seccomp_init(default_action)
        if self._ctx == ffi.NULL:
            raise OSError(22, f"seccomp_init: action {default_action:#x} refused")

    def set_attr(self, attr: int, value: int) -> None:
        _check(lib.seccomp_attr_set(self._ctx, attr, value), "seccomp_attr_set")

    def add_arch(self, token: int) -> None:
        """Add an architecture; the native one is there already (not an error)."""
        rc = lib.seccomp_arch_add(self._ctx, token)
        if rc != -17:  # EEXIST
            _check(rc, f"seccomp_arch_add {token:#x}")

    def add_rule(self, action: int, nr: int, conditions: list[tuple[int, int, int, int]]) -> None:
        """conditions: (argument index, SCMP_CMP_* operator, datum a, datum b), all must hold."""
        cmps = ffi.new("struct scmp_arg_cmp[]", max(len(conditions), 1))
        for i, (index, op, a, b) in enumerate(conditions):
            cmps[i].arg, cmps[i].op, cmps[i].datum_a, cmps[i].datum_b = index, op, a, b
        _check(lib.seccomp_rule_add_array(self._ctx, action, nr, len(conditions), cmps),
               "seccomp_rule_add")

    def export_bpf(self) -> bytes:
        fd = os.memfd_create("pyrun-seccomp", os.MFD_CLOEXEC)
        try:
            _check(lib.seccomp_export_bpf(self._ctx, fd), "seccomp_export_bpf")
            return os.pread(fd, os.fstat(fd).st_size, 0)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._ctx is not None:
            lib.seccomp_release(self._ctx)
            self._ctx = None


def notify_receive(listener_fd: int) -> dict:
    """Block until the filter reports a syscall; returns id, pid, flags, nr, arch and args."""
    api_level()  # libseccomp probes the kernel's notify support on first use
    req = ffi.new("struct seccomp_notif *")
    _check(lib.seccomp_notify_receive(listener_fd, req), "seccomp_notify_receive")
    return {"id": req.id, "pid": req.pid, "flags": req.flags, "nr": req.data.nr,
            "arch": req.data.arch, "args": list(req.data.args)}


def notify_respond(listener_fd: int, notif_id: int, val: int, error: int, allow: bool) -> None:
    resp = ffi.new("struct seccomp_notif_resp *")
    resp.id, resp.val, resp.error = notif_id, val, error
    resp.flags = lib.SECCOMP_USER_NOTIF_FLAG_CONTINUE if allow else 0
    _check(lib.seccomp_notify_respond(listener_fd, resp), "seccomp_notify_respond")
