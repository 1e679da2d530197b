"""The state root: one directory per container, claimed exclusively.

    <root>/<id>/state.json   what create recorded (pid, its start time, bundle, config)
    <root>/<id>/exec.fifo    exists from create until start: init blocks opening it
    <root>/<id>/             locked with flock while a command works on the container

A directory without state.json is a `create` that has not finished (or crashed):
status "creating", removable with `delete --force`.
"""
import os

from specs import fastjson
from .errors import ContainerNotFound, PyrunError

DEFAULT_ROOT = "/run/pyrun"
STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def validate_id(cid: str) -> None:
    """runc's rule: [\\w+-.]+, and never a path component that moves (`.`, `..`)."""
    if not cid or cid in (".", "..") or not set(cid) <= _ID_CHARS or len(cid) > 1024:
        raise PyrunError(f"invalid container id format: {cid!r}")


def container_dir(root: str, cid: str) -> str:
    validate_id(cid)
    return os.path.join(root, cid)


def claim(root: str, cid: str) -> str:
    """Create the container's directory; its existence is the ID's reservation."""
    path = container_dir(root, cid)
    os.makedirs(root, mode=0o711, exist_ok=True)
    try:
        os.mkdir(path, 0o711)
    except FileExistsError:
        raise PyrunError(f"container with id exists: {cid}") from None
    return path


def lock(path: str) -> int:
    """Serialise commands on one container; the lock dies with the fd."""
    import fcntl
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def write_state(cdir: str, record: dict) -> None:
    write_atomic(os.path.join(cdir, STATE_FILE), fastjson.dumps(record).encode())


def read_state(root: str, cid: str) -> tuple[str, dict | None]:
    """(dir, record); record is None while create has not finished."""
    cdir = container_dir(root, cid)
    try:
        with open(os.path.join(cdir, STATE_FILE), "rb") as f:
            return cdir, fastjson.loads(f.read())
    except FileNotFoundError:
        if os.path.isdir(cdir):
            return cdir, None
        raise ContainerNotFound("container does not exist") from None


def list_ids(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.isdir(os.path.join(root, n)))


def remove_dir(cdir: str) -> None:
    for name in os.listdir(cdir):
        try:
            os.unlink(os.path.join(cdir, name))
        except FileNotFoundError:
            pass
    os.rmdir(cdir)
