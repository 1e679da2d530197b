"""Paths inside the rootfs: resolved once, from the rootfs, then made and opened without symlinks.

The image and the config are hostile: any component of a mount destination, a
device path or a masked path may be a symlink, absolute or relative, dangling or
not. A path is therefore resolved in one pass, lexically inside the root, the
way the kernel's RESOLVE_IN_ROOT would (a dangling link is followed too, so
that what gets created is its target, inside the root). The canonical path that
comes out has no symlink left in it, and everything after — mkdir, open, mount,
remount — walks that same canonical path with RESOLVE_NO_SYMLINKS: a link that
appears in between makes the walk fail instead of leading somewhere else.
"""
import os

from . import _shim as k

MAX_LINKS = 40  # the kernel's own limit on symlinks followed in one lookup
# A canonical path has no symlinks; one that shows up now is a race: fail.
_WALK = k.RESOLVE_BENEATH | k.RESOLVE_NO_SYMLINKS | k.RESOLVE_NO_MAGICLINKS


def resolve(root_fd: int, path: str) -> str:
    """The canonical form of `path` inside the root: absolute, no `.`/`..`, no symlinks."""
    todo = _components(path)
    todo.reverse()  # a stack: the next component is at the end
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        try:
            target = os.readlink(_rel(done + [part]), dir_fd=root_fd)
        except (FileNotFoundError, NotADirectoryError):
            done.append(part)  # does not exist (yet): the rest is taken as it reads
            continue
        except OSError as e:
            if e.errno != 22:  # EINVAL: not a symlink
                raise
            done.append(part)
            continue
        links += 1
        if links > MAX_LINKS:
            raise OSError(40, "Too many levels of symbolic links", path)
        if target.startswith("/"):
            done = []
        todo.extend(reversed(_components(target)))
    return "/" + "/".join(done)


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _rel(parts: list[str]) -> str:
    return "/".join(parts) or "."


def open_canonical(root_fd: int, canonical: str, flags: int = os.O_PATH) -> int:
    """Open a path that resolve() returned; any symlink on the way now is refused."""
    return k.openat2(root_fd, canonical.lstrip("/") or ".", flags | os.O_CLOEXEC, 0, _WALK)


def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH) -> int:
    return open_canonical(root_fd, resolve(root_fd, path), flags)


def mkdir_all(root_fd: int, canonical: str, mode: int = 0o755) -> int:
    """mkdir -p of a canonical path inside the root; an O_PATH fd of the directory."""
    fd = os.dup(root_fd)
    try:
        for part in _components(canonical):
            try:
                nfd = k.openat2(fd, part, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, _WALK)
            except FileNotFoundError:
                try:
                    os.mkdir(part, mode, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile: the open below checks what it is
                nfd = k.openat2(fd, part, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, _WALK)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def make_at(root_fd: int, canonical: str, is_dir: bool) -> tuple[str, int]:
    """Make a canonical path (a directory, or an empty file for a file bind).

    Returns (canonical path, O_PATH fd of it): mount onto the fd, and look the
    canonical path up again (open_canonical) for what follows."""
    if is_dir:
        return canonical, mkdir_all(root_fd, canonical)
    parent, _, name = canonical.rpartition("/")
    if not name:
        raise IsADirectoryError(21, "Is a directory", canonical)
    pfd = mkdir_all(root_fd, parent)
    try:
        try:
            return canonical, k.openat2(pfd, name, os.O_PATH | os.O_CLOEXEC, 0, _WALK)
        except FileNotFoundError:
            pass
        dfd = k.openat2(pfd, ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0, _WALK)
        try:
            fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o644, dir_fd=dfd)
            os.close(fd)
        except FileExistsError:
            pass
        finally:
            os.close(dfd)
        return canonical, k.openat2(pfd, name, os.O_PATH | os.O_CLOEXEC, 0, _WALK)
    finally:
        os.close(pfd)


def is_within(canonical: str, top: str) -> bool:
    return canonical == top or canonical.startswith(top.rstrip("/") + "/")
