"""criu's RPC, as runc drives it: one `criu swrk FD` per request, over a SOCK_SEQPACKET socketpair.

The messages are criu's rpc.proto (Debian ships it as /usr/include/criu/rpc.proto), encoded
here by hand: no protobuf library is in the virtualenv, and the few messages pyrun sends
need only varints and length-delimited fields. A schema is {field name: (number, kind)};
kind is "int32", "uint32", "bool", "enum", "string", or a nested schema; a kind in a
list is a repeated field (proto2: never packed). Decoding skips fields it does not know,
so a newer criu's answers still read.
"""
import os

from .errors import PyrunError

# criu_req_type
EMPTY, DUMP, RESTORE, CHECK, PRE_DUMP, PAGE_SERVER, NOTIFY = 0, 1, 2, 3, 4, 5, 6
FEATURE_CHECK, VERSION = 9, 10
REQ_NAMES = {DUMP: "dump", RESTORE: "restore", CHECK: "check", PRE_DUMP: "pre-dump",
             NOTIFY: "notify", FEATURE_CHECK: "feature check", VERSION: "version"}

# criu_cg_mode, by runc's --manage-cgroups-mode names ("" is criu's own default)
CG_MODES = {"": 6, "soft": 3, "full": 4, "strict": 5, "ignore": 0}

PAGE_SERVER_INFO = {"address": (1, "string"), "port": (2, "int32"), "pid": (3, "int32"), "fd": (4, "int32")}
EXT_MOUNT_MAP = {"key": (1, "string"), "val": (2, "string")}
JOIN_NAMESPACE = {"ns": (1, "string"), "ns_file": (2, "string"), "extra_opt": (3, "string")}
INHERIT_FD = {"key": (1, "string"), "fd": (2, "int32")}
CGROUP_ROOT = {"ctrl": (1, "string"), "path": (2, "string")}
OPTS = {
    "images_dir_fd": (1, "int32"), "pid": (2, "int32"), "leave_running": (3, "bool"),
    "ext_unix_sk": (4, "bool"), "tcp_established": (5, "bool"), "evasive_devices": (6, "bool"),
    "shell_job": (7, "bool"), "file_locks": (8, "bool"), "log_level": (9, "int32"),
    "log_file": (10, "string"), "ps": (11, PAGE_SERVER_INFO), "notify_scripts": (12, "bool"),
    "root": (13, "string"), "parent_img": (14, "string"), "track_mem": (15, "bool"),
    "auto_dedup": (16, "bool"), "work_dir_fd": (17, "int32"), "link_remap": (18, "bool"),
    "ext_mnt": (23, [EXT_MOUNT_MAP]), "manage_cgroups": (24, "bool"), "cg_root": (25, [CGROUP_ROOT]),
    "rst_sibling": (26, "bool"), "inherit_fd": (27, [INHERIT_FD]), "manage_cgroups_mode": (34, "enum"),
    "external": (37, ["string"]), "empty_ns": (38, "uint32"), "join_ns": (39, [JOIN_NAMESPACE]),
    "freeze_cgroup": (44, "string"), "lazy_pages": (48, "bool"), "status_fd": (49, "int32"),
    "orphan_pts_master": (50, "bool"), "config_file": (51, "string"), "lsm_profile": (53, "string"),
    "lsm_mount_context": (63, "string"),
}
FEATURES = {"mem_track": (1, "bool"), "lazy_pages": (2, "bool"), "pidfd_store": (3, "bool")}
REQ = {"type": (1, "enum"), "opts": (2, OPTS), "notify_success": (3, "bool"), "keep_open": (4, "bool"),
       "features": (5, FEATURES), "pid": (6, "uint32")}
VERSION_MSG = {"major_number": (1, "int32"), "minor_number": (2, "int32"), "gitid": (3, "string"),
               "sublevel": (4, "int32"), "extra": (5, "int32"), "name": (6, "string")}
RESP = {"type": (1, "enum"), "success": (2, "bool"), "dump": (3, {"restored": (1, "bool")}),
        "restore": (4, {"pid": (1, "int32")}), "notify": (5, {"script": (1, "string"), "pid": (2, "int32")}),
        "ps": (6, PAGE_SERVER_INFO), "cr_errno": (7, "int32"), "features": (8, FEATURES),
        "cr_errmsg": (9, "string"), "version": (10, VERSION_MSG), "status": (11, "int32")}

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class CriuError(PyrunError):
    pass


# -- the wire format -----------------------------------------------------------------------

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # a negative int32 goes out as ten bytes, two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode(schema: dict, msg: dict) -> bytes:
    out = bytearray()
    for name, value in msg.items():
        if value is None:
            continue
        number, kind = schema[name]  # a KeyError here is a bug in the caller's field name
        repeated = isinstance(kind, list)
        for v in (value if repeated else (value,)):
            k = kind[0] if repeated else kind
            if isinstance(k, dict):
                body = encode(k, v)
                out += _varint(number << 3 | _LEN) + _varint(len(body)) + body
            elif k == "string":
                body = v.encode() if isinstance(v, str) else bytes(v)
                out += _varint(number << 3 | _LEN) + _varint(len(body)) + body
            else:  # int32, uint32, bool, enum: all varints
                out += _varint(number << 3 | _VARINT) + _varint(int(v))
    return bytes(out)


def decode(schema: dict, data: bytes) -> dict:
    by_number = {number: (name, kind) for name, (number, kind) in schema.items()}
    msg: dict = {}
    i = 0

    def varint() -> int:
        nonlocal i
        n = shift = 0
        while True:
            if i >= len(data):
                raise CriuError("criu's answer is cut short")
            b = data[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n
    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value = varint()
        elif wire == _LEN:
            n = varint()
            value, i = data[i:i + n], i + n
        elif wire in (_I64, _I32):
            value, i = None, i + (8 if wire == _I64 else 4)
        else:
            raise CriuError(f"criu's answer has wire type {wire}, which protobuf does not define")
        if number not in by_number or value is None:
            continue
        name, kind = by_number[number]
        repeated = isinstance(kind, list)
        k = kind[0] if repeated else kind
        if isinstance(k, dict):
            value = decode(k, value)
        elif k == "string":
            value = value.decode(errors="replace")
        elif k == "bool":
            value = bool(value)
        elif k == "int32" and value >= 1 << 63:
            value -= 1 << 64
        if repeated:
            msg.setdefault(name, []).append(value)
        else:
            msg[name] = value
    return msg


# -- one request -----------------------------------------------------------------------------

def call(criu: str, req: dict, *, stdio=(None, None, None), pass_fds=(), on_notify=None,
         started=None, log_path: str | None = None) -> dict:
    """Send `req` to a new `criu swrk` and return its final answer.

    `stdio` are criu's fds 0-2 (restore: the restored process's pipes are handed over from
    them, as runc does); `pass_fds` keep their numbers in criu (inherit_fd names them).
    `started(pid)` runs before the request goes out (restore: criu joins the cgroup first,
    so that what it restores is born there). `on_notify(script, pid, fds)` answers each
    notification; raising from it ends criu, which undoes what it did. A failure is one
    line: criu's own message, else the first error in its log."""
    import socket
    import subprocess
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        try:
            proc = subprocess.Popen([criu, "swrk", str(theirs.fileno())], pass_fds=(theirs.fileno(), *pass_fds),
                                    stdin=_std(stdio[0]), stdout=_std(stdio[1]), stderr=_std(stdio[2]))
        except OSError as e:
            raise CriuError(f"criu binary {criu!r}: {e.strerror} (install Debian's criu, or name it with --criu)") from None
        theirs.close()
    except BaseException:
        ours.close()
        theirs.close()
        raise
    what = REQ_NAMES.get(req["type"], str(req["type"]))
    answer = None
    try:
        if started is not None:
            started(proc.pid)
        ours.send(encode(REQ, req))
        while True:
            data, fds, _, _ = socket.recv_fds(ours, 1 << 20, 8)
            if not data:
                raise CriuError(f"criu {what} failed: criu exited without an answer" + _quote_log(log_path))
            resp = decode(RESP, data)
            if not resp.get("success"):
                for fd in fds:
                    os.close(fd)
                raise CriuError(f"criu {what} failed: " + _reason(resp, log_path))
            if resp.get("type") == NOTIFY:
                note = resp.get("notify") or {}
                try:
                    if on_notify is not None:
                        on_notify(note.get("script", ""), note.get("pid", 0), fds)
                finally:
                    for fd in fds:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
                ours.send(encode(REQ, {"type": NOTIFY, "notify_success": True}))
                continue
            answer = resp
            return resp
    except OSError as e:
        raise CriuError(f"criu {what}: {e.strerror}" + _quote_log(log_path)) from None
    finally:
        ours.close()  # a pre-dump's criu waits for more; EOF ends it (as runc's does)
        code = proc.wait()
        if answer is not None and code != 0 and req["type"] != PRE_DUMP:
            raise CriuError(f"criu {what} failed: criu exited with status {code}" + _quote_log(log_path))


def _std(fd):
    import subprocess
    return subprocess.DEVNULL if fd is None else fd


def _reason(resp: dict, log_path: str | None) -> str:
    msg = "; ".join(line.strip() for line in (resp.get("cr_errmsg") or "").splitlines() if line.strip())
    errno = resp.get("cr_errno") or 0
    if not msg and errno:
        msg = os.strerror(errno)
    logged = _first_error(log_path)
    if logged and logged not in msg:
        msg = f"{msg}: {logged}" if msg else logged
    return (msg or "no reason given") + (f" (log: {log_path})" if log_path else "")


def _quote_log(log_path: str | None) -> str:
    logged = _first_error(log_path)
    return (f": {logged}" if logged else "") + (f" (log: {log_path})" if log_path else "")


def _first_error(log_path: str | None) -> str:
    """The first `Error (file:line): …` of criu's log: the cause, where later ones are its echoes."""
    if not log_path:
        return ""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - (4 << 20)))  # bounded: a verbose log can be large
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        at = line.find("Error (")
        if at >= 0:
            return line[at:].strip()
    return ""


def features(criu: str, wanted: dict) -> dict:
    """criu's FEATURE_CHECK: which of `wanted` (FEATURES names) it and the kernel have."""
    resp = call(criu, {"type": FEATURE_CHECK, "features": wanted})
    return resp.get("features") or {}


def version(criu: str) -> tuple[int, int, int]:
    v = call(criu, {"type": VERSION}).get("version") or {}
    return v.get("major_number", 0), v.get("minor_number", 0), v.get("sublevel", 0)
