"""The host's cgroup hierarchies: where they are mounted, which mode, and the directory
operations every Manager shares (listing, removal, the guard against a hierarchy's root).

The package imports posix, not os (whose import costs ~1.5 ms, a tenth of `delete`), and
has its few path helpers here: every path it handles is absolute and clean."""
import posix

MOUNTINFO = "/proc/self/mountinfo"
ROOT = "/sys/fs/cgroup"


def mounts() -> list[tuple[str, str, list[str]]]:
    """(mountpoint, fstype, super options) of every cgroup/cgroup2 mount."""
    out = []
    with open(MOUNTINFO) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = right.split()
            if not fields or fields[0] not in ("cgroup", "cgroup2"):
                continue
            mountpoint = left.split()[4].replace("\\040", " ")
            out.append((mountpoint, fields[0], fields[2].split(",") if len(fields) > 2 else []))
    return out


def isdir(path: str) -> bool:
    try:
        return posix.stat(path).st_mode & 0o170000 == 0o040000
    except (OSError, ValueError):
        return False


def exists(path: str) -> bool:
    try:
        posix.stat(path)
    except (OSError, ValueError):
        return False
    return True


def dirname(path: str) -> str:
    return path.rpartition("/")[0] or "/"


def join(top: str, *parts: str) -> str:
    """`top` and each non-empty part, one slash between them (a part is never absolute here)."""
    return "/".join([top.rstrip("/")] + [p.strip("/") for p in parts if p.strip("/")]) or "/"


def is_unified() -> bool:
    return exists(ROOT + "/cgroup.controllers")


def mode() -> str:
    """"unified", "hybrid" or "legacy"; "none" when no cgroup filesystem is mounted."""
    found = mounts()
    if any(fstype == "cgroup2" and mp == ROOT for mp, fstype, _ in found) and is_unified():
        return "unified"
    v1 = any(fstype == "cgroup" for _, fstype, _ in found)
    v2 = any(fstype == "cgroup2" for _, fstype, _ in found)
    if v1:
        return "hybrid" if v2 else "legacy"
    return "unified" if v2 else "none"


def own_cgroups() -> dict[str, str]:
    """This process's cgroup in each hierarchy, by hierarchy name ("memory", "cpu,cpuacct",
    "systemd", and "unified" for the cgroup2 line)."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            name = ",".join(c.removeprefix("name=") for c in ctrls.split(",")) if ctrls else "unified"
            out[name] = path
    return out


def host_controllers() -> tuple[int, set[str]]:
    """(version, controllers a container's cgroup can use here). On v1 and hybrid hosts
    these are the mounted v1 hierarchies' controllers: a hybrid host's cgroup2 only
    places the container (runc sets no limit there either)."""
    if is_unified():
        try:
            with open(ROOT + "/cgroup.controllers") as f:
                return 2, set(f.read().split()) | {"devices", "freezer"}
        except OSError:
            return 2, {"devices", "freezer"}
    ctrls = set()
    for _, fstype, opts in mounts():
        if fstype == "cgroup":
            ctrls.update(o for o in opts if o not in ("rw", "ro") and "=" not in o)
    return 1, ctrls


# Directories above every hierarchy that are not mount points themselves.
_ABOVE = ("/", "/sys", "/sys/fs", ROOT)


def not_a_root(d: str) -> str:
    """A container's cgroup is never a hierarchy's root: acting on one would limit,
    freeze or kill every process on the host. cgroup_path refuses such a path; this
    guards every command that reads a directory back from a record (delete calls it
    for each hierarchy, so it costs two stats, not a realpath).

    A path with `.` or `..` in it is refused as written (a record never holds one); a
    mount point is one whose parent is on another device or is itself (`/`), both seen
    through symlinks, so a link to a hierarchy's root is one too."""
    clean = d.startswith("/") and all(p not in ("", ".", "..") for p in d[1:].split("/"))
    if not clean or d in _ABOVE or _is_mountpoint(d):
        from ..errors import PyrunError
        raise PyrunError(f"refusing to use {d} as a container's cgroup: it is the root of a hierarchy")
    return d


def _is_mountpoint(d: str) -> bool:
    try:
        st, up = posix.stat(d), posix.stat(d + "/..")
    except FileNotFoundError:
        return False  # nothing there to act on
    return st.st_dev != up.st_dev or st.st_ino == up.st_ino


def rmdir_tree(top: str) -> None:
    """cgroup dirs are removed leaf first with rmdir (their files cannot be unlinked)."""
    not_a_root(top)
    try:
        posix.rmdir(top)  # the usual case: a leaf whose tasks have gone
        return
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno not in (16, 39):  # EBUSY, ENOTEMPTY: child cgroups (or tasks) left
            raise
    for d in reversed(_tree(top)):  # children first
        try:
            posix.rmdir(d)
        except FileNotFoundError:
            pass


def rmdir_made(made: list[str], leaves) -> None:
    """The parents this container made, deepest first, when nothing else uses them."""
    leaves = set(leaves)
    for d in reversed(made):
        if d in leaves:
            continue
        try:
            posix.rmdir(d)
        except OSError:
            pass  # another container's cgroup lives there now, or it is gone already


def tree_pids(top: str) -> list[int]:
    """Every process in the cgroup at `top` and in the cgroups below it."""
    pids: list[int] = []
    not_a_root(top)
    for d in _tree(top):
        try:
            with open(d + "/cgroup.procs") as f:
                pids += [int(x) for x in f.read().split()]
        except FileNotFoundError:
            continue
    return pids


def _tree(top: str) -> list[str]:
    """`top` and the directories below it, parents first; links are not followed (cgroupfs
    has none), a directory gone meanwhile is skipped."""
    out, todo = [], [top]
    while todo:
        d = todo.pop()
        try:
            with posix.scandir(d) as it:
                todo += [f"{d}/{e.name}" for e in it if e.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            continue
        out.append(d)
    return out


def make_dirs(made: list[str]) -> None:
    """The directories plan() listed, parents first; one there already is fine."""
    for d in made:
        try:
            posix.mkdir(d, 0o755)
        except FileExistsError:
            pass
