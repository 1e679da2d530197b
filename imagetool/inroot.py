"""Paths resolved inside a root directory, never outside it.

The semantics are those of openat2(RESOLVE_IN_ROOT) and of umoci's
securejoin: every lookup starts at a directory fd of the root; symlinks met
on the way are followed *inside* the root (an absolute target starts again
at the root, `..` stops at the root); the last component is never followed
unless asked. Only the kernel's answers are trusted: each component is
opened with O_NOFOLLOW relative to its parent's fd, so a path never leaves
the root through a symlink, whatever the layers put there.

Directory fds are cached by their symlink-free path relative to the root,
which makes the common case (many entries in the same directory) one dict
lookup, and a walk starts at the deepest cached directory its path begins
with. Callers that remove or replace a directory must call `forget()`.

Depth is the attacker's to choose, up to what PATH_MAX allows (check_depth:
symlinks would let short names reach further, and are stopped there):
nothing here recurses, a walk holds O(1) fds beyond the bounded cache, and
every tree operation goes down by name and back up by "..", so its cost is
linear in the tree's size.
"""
from __future__ import annotations

import errno
import os
import stat

MAX_SYMLINKS = 40  # as the kernel's own limit on a path walk
NAME_MAX = 255     # bytes in one path component, the kernel's limit
PATH_MAX = 4096    # bytes in a path one syscall takes, its NUL included

_O_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_LIST = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


class InRootError(Exception):
    """A path cannot be resolved inside the root; str() is one line."""


def shown(name: str) -> str:
    """`name` as a message quotes it: a 4000-byte path is cut to its ends."""
    return name if len(name) <= 160 else f"{name[:72]}…{name[-72:]}"


def check_name(name: str, what: str = "name") -> None:
    """Refuse what the kernel would refuse anyway, with a line that says why:
    a NUL byte, a component longer than NAME_MAX, a path of PATH_MAX or more."""
    if len(name) < NAME_MAX and name.isascii() and "\0" not in name:
        return  # the common case: no component can be too long
    raw = name.encode("utf-8", "surrogateescape")
    if b"\0" in raw:
        raise InRootError(f"{shown(name)}: NUL byte in {what}")
    if len(raw) >= PATH_MAX:
        raise InRootError(f"{shown(name)}: {what} of {len(raw)} bytes is longer than "
                          f"the kernel's PATH_MAX ({PATH_MAX})")
    for part in raw.split(b"/"):
        if len(part) > NAME_MAX:
            raise InRootError(f"{shown(name)}: path component of {len(part)} bytes is longer "
                              f"than the kernel's NAME_MAX ({NAME_MAX})")


def check_depth(key: str) -> None:
    """A path in the root must stay one the kernel can name: "/" + key, NUL included,
    within PATH_MAX. Symlinks let short names reach deeper (umoci refuses those too)."""
    if len(key) > PATH_MAX // 4 - 2 and len(key.encode("utf-8", "surrogateescape")) > PATH_MAX - 2:
        raise InRootError(f"{shown(key)}: resolves to a path of more than {PATH_MAX - 1} bytes "
                          f"in the root, past the kernel's PATH_MAX ({PATH_MAX})")


def clean(name: str) -> list[str]:
    """Lexical clean-up of an archive path into components.

    Raises InRootError for absolute paths and for `..` that climbs above the
    root: no image builder writes those, so they are refused, not clamped.
    Names the kernel cannot take (check_name) are refused too.
    """
    check_name(name)
    if name.startswith("/"):
        if all(p in ("", ".") for p in name.split("/")):
            return []  # the root itself, as umoci writes it ("/")
        raise InRootError(f"{shown(name)}: absolute path in layer")
    parts = name.split("/")
    if "" in parts or "." in parts or ".." in parts:
        out: list[str] = []
        for p in parts:
            if p == "" or p == ".":
                continue
            if p == "..":
                if not out:
                    raise InRootError(f"{shown(name)}: path escapes the root with '..'")
                out.pop()
            else:
                out.append(p)
        return out
    return parts


class Root:
    """A root directory and the cache of directory fds under it."""

    def __init__(self, path: str, *, on_missing=None, max_cached: int | None = None):
        self.path = path
        self.fd = os.open(path, _O_DIR)
        self._dirs: dict[str, int] = {"": self.fd}
        # Called as on_missing(key, rest, create) for a directory the walk does not find,
        # before it makes one (create) or says FileNotFoundError; rest is what the walk
        # still has to go through below it, last first. It may raise instead.
        self._on_missing = on_missing
        if max_cached is None:
            # The soft RLIMIT_NOFILE, as glibc's sysconf reads it (the resource module
            # is an import of its own); unlimited or unknown reads as plenty.
            soft = os.sysconf("SC_OPEN_MAX")
            max_cached = max(16, min(1024, soft // 4 if soft > 0 else 1024))
        self._max = max_cached

    def close(self) -> None:
        for key, fd in self._dirs.items():
            if key:
                os.close(fd)
        os.close(self.fd)
        self._dirs = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- cache ------------------------------------------------------------------

    def trim(self) -> None:
        """Drop the cache when it is full. Call between entries, never during a walk."""
        if len(self._dirs) > self._max:
            for key, fd in self._dirs.items():
                if key:
                    os.close(fd)
            self._dirs = {"": self.fd}

    def forget(self, key: str) -> None:
        """`key` (a directory) is being removed or replaced: drop it and everything below."""
        prefix = key + "/"
        dead = [k for k in self._dirs if k == key or k.startswith(prefix)]
        for k in dead:
            os.close(self._dirs.pop(k))

    # -- lookups ---------------------------------------------------------------------

    def cached(self, key: str) -> int | None:
        return self._dirs.get(key)

    def walk(self, parts: list[str], create: bool, start: str = "") -> tuple[int, str]:
        """The fd and symlink-free key of the directory `parts` names, from the
        cached directory `start` (the root by default).

        Missing directories are made (mode 0700, the caller fixes metadata)
        when `create`, else FileNotFoundError. A non-directory on the way is
        NotADirectoryError. The fd returned belongs to the cache.
        """
        dirs = self._dirs
        todo = parts[::-1]
        key, fd = start, dirs[start]
        owned = False  # fd is not in the cache (it had no room): ours to close when we move on
        links = 0
        try:
            while todo:
                c = todo.pop()
                if c == "" or c == ".":
                    continue
                if c == "..":
                    if not key:
                        continue  # `..` stops at the root
                    nkey = key[:max(key.rfind("/"), 0)]
                    nfd = dirs.get(nkey)
                    nowned = False
                    if nfd is None:
                        # The directory we hold is inside the root and below it, and
                        # nothing but us writes the tree: its parent is the one nkey names.
                        nfd = os.open("..", _O_DIR, dir_fd=fd)
                        nowned = not self._keep(nkey, nfd)
                else:
                    nkey = key + "/" + c if key else c
                    nfd = dirs.get(nkey)
                    nowned = False
                    if nfd is None:
                        check_depth(nkey)
                        try:
                            nfd = os.open(c, _O_DIR, dir_fd=fd)
                        except FileNotFoundError:
                            if self._on_missing is not None:
                                self._on_missing(nkey, todo, create)
                            if not create:
                                raise
                            os.mkdir(c, 0o700, dir_fd=fd)
                            nfd = os.open(c, _O_DIR, dir_fd=fd)
                        except OSError as e:
                            if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                                raise
                            try:
                                target = os.readlink(c, dir_fd=fd)
                            except OSError:
                                raise NotADirectoryError(errno.ENOTDIR, "not a directory",
                                                         shown(nkey)) from None
                            links += 1
                            if links > MAX_SYMLINKS:
                                raise InRootError(f"{shown(nkey)}: too many levels of "
                                                  "symbolic links") from None
                            if target.startswith("/"):
                                if owned:
                                    os.close(fd)
                                key, fd, owned = "", self.fd, False
                            todo.extend(target.split("/")[::-1])
                            continue
                        nowned = not self._keep(nkey, nfd)
                if owned:
                    os.close(fd)
                key, fd, owned = nkey, nfd, nowned
            if owned:
                dirs[key] = fd  # the answer is cached, over the bound until trim()
                owned = False
            return fd, key
        finally:
            if owned:
                os.close(fd)

    def _keep(self, key: str, fd: int) -> bool:
        """Cache `fd` under `key` if there is room (True)."""
        if len(self._dirs) < self._max:
            self._dirs[key] = fd
            return True
        return False

    def parent(self, parts: list[str], create: bool) -> tuple[int, str]:
        """fd and key of the directory holding the last of `parts` (clean, as
        clean() returns them), walked from the deepest cached directory on the way."""
        pkey = "/".join(parts[:-1])
        fd = self._dirs.get(pkey)
        if fd is not None:
            return fd, pkey
        dirs = self._dirs
        end = len(pkey)
        while True:
            end = pkey.rfind("/", 0, end)
            if end < 0:
                return self.walk(parts[:-1], create)
            if pkey[:end] in dirs:
                return self.walk(pkey[end + 1:].split("/"), create, pkey[:end])

    def resolve(self, name: str) -> tuple[int, str, str]:
        """Fully resolve `name` (following a final symlink, in the root).

        Returns (parent fd, parent key, final name) of the object found;
        FileNotFoundError if it does not exist.
        """
        parts = clean(name.lstrip("/"))
        links = 0
        while True:
            while parts and parts[-1] in ("", "."):
                parts.pop()
            if not parts or parts[-1] == "..":
                raise IsADirectoryError(errno.EISDIR, "is a directory", name)
            fd, pkey = self.walk(parts[:-1], create=False)
            base = parts[-1]
            try:
                target = os.readlink(base, dir_fd=fd)
            except OSError as e:
                if e.errno == errno.EINVAL:
                    return fd, pkey, base
                raise
            links += 1
            if links > MAX_SYMLINKS:
                raise InRootError(f"{shown(name)}: too many levels of symbolic links")
            prefix = [] if target.startswith("/") else (pkey.split("/") if pkey else [])
            parts = prefix + target.split("/")  # walk() follows '..' after symlinks correctly

    def read_file(self, name: str, limit: int) -> bytes | None:
        """A regular file's content (None if it does not exist), read inside the root.

        Opened O_PATH first and checked to be a regular file, so a hostile
        image cannot make us open a FIFO or a device node.
        """
        try:
            fd, _, base = self.resolve(name)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            pfd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except FileNotFoundError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(pfd).st_mode):
                raise InRootError(f"/{name}: not a regular file in the image")
            rfd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(pfd)
        with open(rfd, "rb") as f:
            data = f.read(limit + 1)  # one byte more than allowed tells a larger file
        if len(data) > limit:
            raise InRootError(f"/{name}: larger than {limit} bytes")
        return data


# -- whole trees, one directory fd at a time ---------------------------------------------

def open_listable(dir_fd: int, name: str, unblock: bool = False) -> int:
    """An O_RDONLY fd of the directory `name` (never through a symlink). With
    `unblock`, a directory whose final mode shuts us out (0000, 0555) is made ours first."""
    try:
        return os.open(name, _O_LIST, dir_fd=dir_fd)
    except PermissionError:
        if not unblock:
            raise
    os.chmod(name, 0o700, dir_fd=dir_fd, follow_symlinks=False)
    return os.open(name, _O_LIST, dir_fd=dir_fd)


def up(fd: int) -> int:
    """The parent of the directory `fd` (one we made, below the root), and close `fd`."""
    try:
        return os.open("..", _O_LIST, dir_fd=fd)
    finally:
        os.close(fd)


def _clear_files(fd: int, unblock: bool) -> list[str]:
    """Unlink every non-directory in `fd`; the names of its subdirectories."""
    if unblock:
        os.chmod(fd, 0o700)
    subdirs = []
    with os.scandir(fd) as it:
        for e in it:
            if e.is_dir(follow_symlinks=False):
                subdirs.append(e.name)
            else:
                os.unlink(e.name, dir_fd=fd)
    return subdirs


def remove_tree(dir_fd: int, name: str, unblock: bool = False) -> None:
    """`rm -r` of the directory `name` in `dir_fd`, without following symlinks,
    iteratively (no depth limit) and with one directory fd at a time.

    `unblock`: give ourselves access to directories whose mode forbids it (a
    rootless unpack that already applied 0555 or 0000)."""
    fd = open_listable(dir_fd, name, unblock)
    try:
        frames = [(name, _clear_files(fd, unblock))]
        while True:
            base, subdirs = frames[-1]
            if subdirs:
                sub = subdirs.pop()
                child = open_listable(fd, sub, unblock)
                os.close(fd)
                fd = child
                frames.append((sub, _clear_files(fd, unblock)))
                continue
            frames.pop()
            if not frames:
                break
            fd = up(fd)
            os.rmdir(base, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def exists_as_dir(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError as e:
        if e.errno in _GONE:
            return False
        raise
