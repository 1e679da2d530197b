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
lookup. Callers that remove or replace a directory must call `forget()`.
"""
from __future__ import annotations

import errno
import os

MAX_SYMLINKS = 40  # as the kernel's own limit on a path walk

_O_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class InRootError(Exception):
    """A path cannot be resolved inside the root; str() is one line."""


def clean(name: str) -> list[str]:
    """Lexical clean-up of an archive path into components.

    Raises InRootError for absolute paths and for `..` that climbs above the
    root: no image builder writes those, so they are refused, not clamped.
    """
    if name.startswith("/"):
        if all(p in ("", ".") for p in name.split("/")):
            return []  # the root itself, as umoci writes it ("/")
        raise InRootError(f"{name}: absolute path in layer")
    parts = name.split("/")
    if "" in parts or "." in parts or ".." in parts:
        out: list[str] = []
        for p in parts:
            if p == "" or p == ".":
                continue
            if p == "..":
                if not out:
                    raise InRootError(f"{name}: path escapes the root with '..'")
                out.pop()
            else:
                out.append(p)
        return out
    return parts


class Root:
    """A root directory and the cache of directory fds under it."""

    def __init__(self, path: str, *, on_mkdir=None, max_cached: int | None = None):
        self.path = path
        self.fd = os.open(path, _O_DIR)
        self._dirs: dict[str, int] = {"": self.fd}
        # Called with the key of every directory the walk had to create.
        self._on_mkdir = on_mkdir
        if max_cached is None:
            import resource
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            max_cached = max(16, min(1024, soft // 4))
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

    def walk(self, parts: list[str], create: bool) -> tuple[int, str]:
        """The fd and symlink-free key of the directory `parts` names.

        Missing directories are made (mode 0700, the caller fixes metadata)
        when `create`, else FileNotFoundError. A non-directory on the way is
        NotADirectoryError.
        """
        todo = parts[::-1]
        cur: list[str] = []
        fd = self.fd
        links = 0
        dirs = self._dirs
        while todo:
            c = todo.pop()
            if c == "" or c == ".":
                continue
            if c == "..":
                if cur:
                    cur.pop()
                fd = dirs["/".join(cur)]
                continue
            key = "/".join(cur + [c]) if cur else c
            nfd = dirs.get(key)
            if nfd is None:
                try:
                    nfd = os.open(c, _O_DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(c, 0o700, dir_fd=fd)
                    if self._on_mkdir is not None:
                        self._on_mkdir(key)
                    nfd = os.open(c, _O_DIR, dir_fd=fd)
                except OSError as e:
                    if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    try:
                        target = os.readlink(c, dir_fd=fd)
                    except OSError:
                        raise NotADirectoryError(errno.ENOTDIR, "not a directory", key) from None
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise InRootError(f"{key}: too many levels of symbolic links") from None
                    if target.startswith("/"):
                        cur = []
                        fd = self.fd
                    todo.extend(target.split("/")[::-1])
                    continue
                dirs[key] = nfd
            cur.append(c)
            fd = nfd
        return fd, "/".join(cur)

    def parent(self, parts: list[str], create: bool) -> tuple[int, str]:
        """fd and key of the directory holding the last of `parts`."""
        pkey = "/".join(parts[:-1])
        fd = self._dirs.get(pkey)
        if fd is not None:
            return fd, pkey
        return self.walk(parts[:-1], create)

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
                raise InRootError(f"{name}: too many levels of symbolic links")
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
            import stat
            if not stat.S_ISREG(os.fstat(pfd).st_mode):
                raise InRootError(f"/{name}: not a regular file in the image")
            rfd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(pfd)
        try:
            chunks = []
            total = 0
            while True:
                chunk = os.read(rfd, 1 << 16)
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise InRootError(f"/{name}: larger than {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(rfd)

