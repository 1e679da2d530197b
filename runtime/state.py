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


def claim(root: str, cid: str, first_record: dict) -> tuple[str, int]:
    """Reserve the ID: its directory appears whole, with its first record, and locked.

    The directory is made under a name no ID can have, given state.json, locked,
    then renamed into place without replacing anything: no command ever sees the
    ID's directory without a record, and a `delete --force` waits for the lock
    instead of removing the directory of a create that is still at work.
    Returns (dir, lock fd); the lock goes with the fd."""
    import fcntl
    from . import _shim
    path = container_dir(root, cid)
    os.makedirs(root, mode=0o711, exist_ok=True)
    sweep_claims(root)
    tmp = os.path.join(root, _CLAIMING + os.urandom(6).hex())
    guard = _claims_lock(root, fcntl.LOCK_SH)  # a sweep waits until the claim is locked
    try:
        os.mkdir(tmp, 0o711)
        fd = lock(tmp)
    finally:
        os.close(guard)
    try:
        write_state(tmp, first_record)
        _shim.rename_noreplace(tmp, path)
    except BaseException as e:
        remove_dir(tmp)
        os.close(fd)
        if isinstance(e, FileExistsError) or getattr(e, "errno", None) in (17, 39):
            raise PyrunError(f"container with id exists: {cid}") from None
        raise
    return path, fd


_CLAIMING = "#claim-"  # '#' is no ID character: list_ids never shows these


def _claims_lock(root: str, how: int) -> int:
    """The state root itself, flocked: shared by claims being made, exclusive for a sweep."""
    import fcntl
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(fd, how)
    return fd


def sweep_claims(root: str) -> None:
    """A create killed between its claim's mkdir and rename leaves the claim: remove those
    no create holds (called by create and by delete --force)."""
    import fcntl
    try:
        names = [n for n in os.listdir(root) if n.startswith(_CLAIMING)]
    except FileNotFoundError:
        return
    if not names:
        return
    guard = _claims_lock(root, fcntl.LOCK_EX)
    try:
        for name in names:
            d = os.path.join(root, name)
            try:
                fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                remove_dir(d)
            except OSError:
                pass  # a create at work holds it
            finally:
                os.close(fd)
    finally:
        os.close(guard)


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
    return sorted(n for n in names if not n.startswith(_CLAIMING) and os.path.isdir(os.path.join(root, n)))


def remove_dir(cdir: str) -> None:
    for name in os.listdir(cdir):
        try:
            os.unlink(os.path.join(cdir, name))
        except FileNotFoundError:
            pass
    os.rmdir(cdir)


def now_rfc3339() -> str:
    import time
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, or None if the pid is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])
