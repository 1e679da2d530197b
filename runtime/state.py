"""The state root: one directory per container, claimed exclusively.

    <root>/<id>/state.json   what create recorded (pid, its start time, bundle, config)
    <root>/<id>/exec.fifo    exists from create until start: init blocks opening it
    <root>/<id>/             locked with flock while a command works on the container

A directory without state.json is a `create` that has not finished (or crashed):
status "creating", removable with `delete --force`.
"""
import os
import stat

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


def claim(root: str, cid: str) -> tuple[str, int]:
    """Create the container's directory and lock it: its existence is the ID's reservation,
    the lock says a create is at work in it (`delete --force` waits for the lock, so it
    cannot remove the directory of a create that is still running).

    Returns (dir, lock fd); the lock goes with the fd."""
    path = container_dir(root, cid)
    os.makedirs(root, mode=0o711, exist_ok=True)
    try:
        os.mkdir(path, 0o711)
    except FileExistsError:
        raise PyrunError(f"container with id exists: {cid}") from None
    try:
        return path, lock_current(path)
    except ContainerNotFound:  # between mkdir and flock a `delete --force` took it
        raise PyrunError(f"container with id exists: {cid}") from None


def lock_current(path: str) -> int:
    """lock(path), making sure the directory locked is still the one at `path`: a
    command that waited for the lock may find the container deleted, or its ID taken anew."""
    try:
        fd = lock(path)
    except FileNotFoundError:
        raise ContainerNotFound("container does not exist") from None
    try:
        here = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        here = None
    mine = os.fstat(fd)
    if here is None or (here.st_dev, here.st_ino) != (mine.st_dev, mine.st_ino):
        os.close(fd)
        raise ContainerNotFound("container does not exist")
    return fd


def lock(path: str) -> int:
    """Serialise commands on one container; the lock dies with the fd."""
    import fcntl
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write `path` whole or not at all. The temporary name is unpredictable and made
    with O_EXCL|O_NOFOLLOW: a symlink planted in the directory is never followed, and
    rename replaces a link at `path` itself rather than writing through it."""
    d, name = os.path.split(path)
    for _ in range(100):
        tmp = os.path.join(d, f".{name}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
            break
        except FileExistsError:
            continue
    else:
        raise PyrunError(f"write {path}: no free temporary name")
    try:
        try:
            os.write(fd, data)
            os.fchmod(fd, mode)  # past the umask
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


MAX_DOCUMENT = 16 << 20  # config.json, process.json, state.json: far beyond any real one


def read_document(path: str, what: str) -> bytes:
    """A JSON document's bytes: a regular file, at most MAX_DOCUMENT long. A FIFO, a
    device (a link to /dev/zero) or a huge file is refused, never read without end."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PyrunError(f"{what}: not a regular file")
        if st.st_size > MAX_DOCUMENT:
            raise PyrunError(f"{what}: {st.st_size} bytes is more than the {MAX_DOCUMENT} allowed")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > MAX_DOCUMENT:
                raise PyrunError(f"{what}: more than the {MAX_DOCUMENT} bytes allowed")
            chunks.append(chunk)
    finally:
        os.close(fd)


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
