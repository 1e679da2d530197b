"""Typed wrappers over the shim's bpf(2) calls (src/bpf.py): cgroup v2 device programs.

Each raises OSError with errno on failure; a program the verifier refuses carries
the verifier's log in the message.
"""
import os

from ._native import ffi, lib

BPF_CGROUP_DEVICE = 6       # enum bpf_attach_type
BPF_F_ALLOW_MULTI = 1 << 1  # several programs on one cgroup, each must allow
_LOG_SIZE = 1 << 16


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ffi.errno
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def prog_load_cgroup_device(insns: bytes) -> int:
    """Load struct bpf_insn[] `insns` as a BPF_PROG_TYPE_CGROUP_DEVICE program; its fd."""
    log = ffi.new("char[]", _LOG_SIZE)
    fd = lib.pyrun_bpf_prog_load_cgroup_device(insns, len(insns), log, _LOG_SIZE)
    if fd < 0:
        err = ffi.errno
        detail = ffi.string(log).decode(errors="replace").strip().splitlines()
        why = f" (verifier: {detail[-1]})" if detail else ""
        raise OSError(err, f"bpf(BPF_PROG_LOAD): {os.strerror(err)}{why}")
    return fd


def prog_attach_device(cgroup_fd: int, prog_fd: int) -> None:
    _check(lib.pyrun_bpf_prog_attach(cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI),
           "bpf(BPF_PROG_ATTACH)")


def prog_detach_device(cgroup_fd: int, prog_fd: int) -> None:
    _check(lib.pyrun_bpf_prog_detach(cgroup_fd, prog_fd, BPF_CGROUP_DEVICE), "bpf(BPF_PROG_DETACH)")


def prog_query_device(cgroup_fd: int) -> list[int]:
    """The ids of the device programs attached to the cgroup itself (not inherited)."""
    room = 64
    while True:
        ids = ffi.new("uint32_t[]", room)
        count = ffi.new("unsigned int *", room)
        ret = lib.pyrun_bpf_prog_query(cgroup_fd, BPF_CGROUP_DEVICE, ids, count)
        if ret < 0 and ffi.errno == 28 and count[0] > room:  # ENOSPC: more than room
            room = count[0]
            continue
        _check(ret, "bpf(BPF_PROG_QUERY)")
        return [ids[i] for i in range(min(count[0], room))]


def prog_detach_device_id(cgroup_fd: int, prog_id: int) -> None:
    fd = _check(lib.pyrun_bpf_prog_get_fd_by_id(prog_id), "bpf(BPF_PROG_GET_FD_BY_ID)")
    try:
        prog_detach_device(cgroup_fd, fd)
    finally:
        os.close(fd)
