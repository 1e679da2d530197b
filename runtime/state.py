"""The state root: one directory per container, claimed exclusively.

    <root>/<id>/state.json   what create recorded (pid, its start time, bundle, config)
    <root>/<id>/exec.fifo    exists from create until start: init blocks opening it
    <root>/<id>/             locked with flock while a command works on the container

A directory without state.json is a `create` that has not finished (or crashed):
status "creating", removable with `delete --force`.

`posix`, not `os`: this module is on every command's path, and `import os` costs
~15% of the bare interpreter's start (os.environ is a MutableMapping: it imports
_collections_abc, then posixpath and stat), more than the rest of `pyrun state`.
posix is the C module os re-exports; what only create needs (makedirs) imports os.
"""
import posix
from _stat import S_ISDIR, S_ISREG

from specs import fastjson
from .errors import ContainerNotFound, PyrunError

DEFAULT_ROOT = "/run/pyrun"
STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"
# What `start` reads from exec.fifo: this byte once the init goes on to execve, or an error
# line (any other first byte) when a startContainer hook failed and the container stops.
START_OK = b"0"

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def validate_id(cid: str) -> None:
    """runc's rule: [\\w+-.]+, and never a path component that moves (`.`, `..`)."""
    if not cid or cid in (".", "..") or not set(cid) <= _ID_CHARS or len(cid) > 1024:
        raise PyrunError(f"invalid container id format: {cid!r}")


def container_dir(root: str, cid: str) -> str:
    validate_id(cid)
    return join(root, cid)


def join(d: str, name: str) -> str:
    """os.path.join for a name without a slash."""
    return d + name if not d or d.endswith("/") else f"{d}/{name}"


def isdir(path: str) -> bool:
    try:
        return S_ISDIR(posix.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def claim(root: str, cid: str, first_record: dict) -> tuple[str, int]:
    """Reserve the ID: its directory appears whole, with its first record, and locked.

    The directory is made under a name no ID can have, given state.json, locked,
    then renamed into place without replacing anything: no command ever sees the
    ID's directory without a record, and a `delete --force` waits for the lock
    instead of removing the directory of a create that is still at work.
    Returns (dir, lock fd); the lock goes with the fd."""
    import fcntl
    import os
    from . import _shim
    path = container_dir(root, cid)
    os.makedirs(root, mode=0o711, exist_ok=True)
    sweep_claims(root)
    tmp = join(root, _CLAIMING + posix.urandom(6).hex())
    guard = _claims_lock(root, fcntl.LOCK_SH)  # a sweep waits until the claim is locked
    try:
        posix.mkdir(tmp, 0o711)
        fd = lock(tmp)
    finally:
        posix.close(guard)
    try:
        write_state(tmp, first_record)
        _shim.rename_noreplace(tmp, path)
    except BaseException as e:
        remove_dir(tmp)
        posix.close(fd)
        if isinstance(e, FileExistsError) or getattr(e, "errno", None) in (17, 39):
            raise PyrunError(f"container with id exists: {cid}") from None
        raise
    return path, fd


_CLAIMING = "#claim-"  # '#' is no ID character: list_ids never shows these


def _claims_lock(root: str, how: int) -> int:
    """The state root itself, flocked: shared by claims being made, exclusive for a sweep."""
    import fcntl
    fd = posix.open(root, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
    fcntl.flock(fd, how)
    return fd


def sweep_claims(root: str) -> None:
    """A create killed between its claim's mkdir and rename leaves the claim: remove those
    no create holds (called by create and by delete --force)."""
    import fcntl
    try:
        names = [n for n in posix.listdir(root) if n.startswith(_CLAIMING)]
    except FileNotFoundError:
        return
    if not names:
        return
    guard = _claims_lock(root, fcntl.LOCK_EX)
    try:
        for name in names:
            d = join(root, name)
            try:
                fd = posix.open(d, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                remove_dir(d)
            except OSError:
                pass  # a create at work holds it
            finally:
                posix.close(fd)
    finally:
        posix.close(guard)


def lock_current(path: str) -> int:
    """lock(path), making sure the directory locked is still the one at `path`: a
    command that waited for the lock may find the container deleted, or its ID taken anew."""
    try:
        fd = lock(path)
    except FileNotFoundError:
        raise ContainerNotFound("container does not exist") from None
    try:
        here = posix.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        here = None
    mine = posix.fstat(fd)
    if here is None or (here.st_dev, here.st_ino) != (mine.st_dev, mine.st_ino):
        posix.close(fd)
        raise ContainerNotFound("container does not exist")
    return fd


def lock(path: str) -> int:
    """Serialise commands on one container; the lock dies with the fd."""
    import fcntl
    fd = posix.open(path, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write `path` whole or not at all. The temporary name is unpredictable and made
    with O_EXCL|O_NOFOLLOW: a symlink planted in the directory is never followed, and
    rename replaces a link at `path` itself rather than writing through it."""
    head, sep, name = path.rpartition("/")
    for _ in range(100):
        tmp = f"{head}{sep}.{name}.{posix.urandom(6).hex()}.tmp"
        try:
            fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW | posix.O_CLOEXEC,
                            mode)
            break
        except FileExistsError:
            continue
    else:
        raise PyrunError(f"write {path}: no free temporary name")
    try:
        try:
            posix.write(fd, data)
            posix.fchmod(fd, mode)  # past the umask
        finally:
            posix.close(fd)
        posix.rename(tmp, path)
    except BaseException:
        try:
            posix.unlink(tmp)
        except OSError:
            pass
        raise


MAX_DOCUMENT = 16 << 20  # config.json, process.json, state.json: far beyond any real one


def read_document(path: str, what: str) -> bytes:
    """A JSON document's bytes: a regular file, at most MAX_DOCUMENT long. A FIFO, a
    device (a link to /dev/zero) or a huge file is refused, never read without end."""
    fd = posix.open(path, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
    try:
        st = posix.fstat(fd)
        if not S_ISREG(st.st_mode):
            raise PyrunError(f"{what}: not a regular file")
        if st.st_size > MAX_DOCUMENT:
            raise PyrunError(f"{what}: {st.st_size} bytes is more than the {MAX_DOCUMENT} allowed")
        # One read of the size fstat gave, and one byte more: a regular file's short read
        # is its end, so the usual document takes a single read(2). One that grew since
        # is read on, still bounded.
        chunks = [posix.read(fd, st.st_size + 1)]
        total = len(chunks[0])
        while total > st.st_size:
            chunk = posix.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_DOCUMENT:
                raise PyrunError(f"{what}: more than the {MAX_DOCUMENT} bytes allowed")
            chunks.append(chunk)
        return b"".join(chunks) if len(chunks) > 1 else chunks[0]
    finally:
        posix.close(fd)


def write_state(cdir: str, record: dict) -> None:
    # The config goes last: readers that do not need it stop before it (read_state).
    if "config" in record:
        record = {**{k: v for k, v in record.items() if k != "config"}, "config": record["config"]}
    write_atomic(f"{cdir}/{STATE_FILE}", fastjson.dumps(record).encode())


def read_state(root: str, cid: str) -> tuple[str, dict | None]:
    """(dir, record), the record whole; None while create has not finished."""
    cdir, record, config = read_record(root, cid)
    if config is not None:
        record["config"] = fastjson.loads_tail(*config)
    return cdir, record


def read_record(root: str, cid: str) -> tuple[str, dict | None, tuple[str, int] | None]:
    """read_state, but the record's config (its last member, a whole config.json, most
    of the file) left unparsed: the third item is what fastjson.loads_tail takes to
    parse it, None if the record has none. `list` reads every record, `state` and
    `kill` one, and none of them needs the config."""
    cdir = container_dir(root, cid)
    try:
        fd = posix.open(f"{cdir}/{STATE_FILE}", posix.O_RDONLY | posix.O_CLOEXEC)
    except FileNotFoundError:
        if isdir(cdir):
            return cdir, None, None
        raise ContainerNotFound("container does not exist") from None
    try:
        data = _read_all(fd)
    finally:
        posix.close(fd)
    record, text, at = fastjson.loads_head(data, "config")
    return cdir, record, ((text, at) if at >= 0 else None)


def _read_all(fd: int) -> bytes:
    # A file of ours (the state root is root's, 0711): read(2) until a short one, which
    # for a regular file is its end; one read for any record.
    chunks = []
    while True:
        chunk = posix.read(fd, 1 << 16)
        chunks.append(chunk)
        if len(chunk) < 1 << 16:
            return b"".join(chunks) if len(chunks) > 1 else chunk


def list_ids(root: str) -> list[str]:
    """The IDs in the state root: its directories (by d_type, no stat each), claims left out."""
    try:
        with posix.scandir(root) as it:
            names = [e.name for e in it if not e.name.startswith(_CLAIMING) and e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    return sorted(names)


def remove_dir(cdir: str) -> None:
    for name in posix.listdir(cdir):
        try:
            posix.unlink(join(cdir, name))
        except FileNotFoundError:
            pass
    posix.rmdir(cdir)


def now_rfc3339() -> str:
    import time
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, or None if the pid is gone or a zombie."""
    try:
        fd = posix.open(f"/proc/{pid}/stat", posix.O_RDONLY | posix.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = posix.read(fd, 4096)  # procfs gives the whole line in one read (~300 bytes)
    except ProcessLookupError:  # it went between the open and the read
        return None
    finally:
        posix.close(fd)
    fields = data[data.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])
