"""Running as an unprivileged user (rootless), by runc 1.1's rules.

- The state root: $XDG_RUNTIME_DIR/pyrun for a user who is not root (runc uses
  $XDG_RUNTIME_DIR/runc), made 0700 and sticky as the XDG spec asks; --root wins.
- `--rootless` (true|false|auto): with it, a cgroup that cannot be made is skipped,
  as long as no cgroupsPath and no resource needs it (cgroups.skip_unwritable).
- The user namespace's id maps. An unprivileged writer may map only its own id, one
  line each, and only after "deny" is in /proc/PID/setgroups (the kernel's rule since
  CVE-2014-8989). Anything wider goes through newuidmap/newgidmap (Debian's uidmap),
  the setuid helpers that grant the ranges /etc/subuid and /etc/subgid give the user.
  Either way the init must be dumpable until its maps are written: the kernel gives a
  non-dumpable process's /proc files to root, and the helpers check the owner.
"""
import os

from .errors import ConfigError, PyrunError, describe_oserror

STATE_DIR = "pyrun"  # under $XDG_RUNTIME_DIR, as runc's "runc"
HELPER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def unprivileged() -> bool:
    """runc's RootlessEUID: whatever the capabilities, an euid other than 0."""
    return os.geteuid() != 0


def in_user_namespace() -> bool:
    """True unless this process sees the whole id space: the initial user namespace."""
    try:
        with open("/proc/self/uid_map", "rb") as f:
            return f.read().split() != [b"0", b"0", b"4294967295"]
    except OSError:
        return False


def _xdg_honoured() -> bool:
    """runc's rule: not for the real root (who keeps /run), but for anyone else, and for
    a root in a user namespace unless $USER says root."""
    if unprivileged():
        return True
    if not in_user_namespace():
        return False
    return os.environ.get("USER") != "root"


def state_root(given: str) -> str:
    """--root if given; else $XDG_RUNTIME_DIR/pyrun or /run/pyrun, by runc's rule."""
    if given:
        return given
    from .state import DEFAULT_ROOT
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and _xdg_honoured():
        if not xdg.startswith("/"):
            raise PyrunError(f"$XDG_RUNTIME_DIR {xdg!r} is not an absolute path: give --root")
        root = os.path.join(xdg, STATE_DIR)
        try:
            os.makedirs(root, 0o700, exist_ok=True)
            os.chmod(root, 0o1700)  # sticky: the XDG clean-up leaves it alone
        except OSError as e:
            raise PyrunError(describe_oserror(e, "the state root in $XDG_RUNTIME_DIR must be "
                                                 "writable by the user")) from None
        return root
    if unprivileged() and not _writable(DEFAULT_ROOT):
        raise PyrunError(f"no state root for uid {os.geteuid()}: $XDG_RUNTIME_DIR is not set and "
                         f"{DEFAULT_ROOT} is not writable (set XDG_RUNTIME_DIR or give --root)")
    return DEFAULT_ROOT


def _writable(path: str) -> bool:
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return os.access(path, os.W_OK | os.X_OK, effective_ids=True)


def parse_flag(value: str) -> bool | None:
    """--rootless: runc takes Go's booleans or "auto" (None: decide by who runs us)."""
    if value in ("", "auto", "AUTO", "Auto"):
        return None
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise PyrunError(f"--rootless {value!r}: expected true, false or auto")


def rootless_cgroups(flag: bool | None) -> bool:
    """runc's shouldUseRootlessCgroupManager, without systemd: auto means yes for a user
    who is not root and for root in a user namespace (whose cgroups are not its own)."""
    if flag is not None:
        return flag
    return unprivileged() or in_user_namespace()


class IdMaps:
    """How the init's uid_map and gid_map will be written, decided before clone3.

    uid_helper/gid_helper: the path of newuidmap/newgidmap, or "" when the runtime
    writes the map itself. deny_setgroups: "deny" goes into setgroups before gid_map,
    and the container can never call setgroups(2). by_user: the writer is not root,
    so the init stays dumpable until "go"."""

    def __init__(self, uid_helper: str, gid_helper: str, deny_setgroups: bool, by_user: bool):
        self.uid_helper, self.gid_helper = uid_helper, gid_helper
        self.deny_setgroups, self.by_user = deny_setgroups, by_user


PRIVILEGED_MAPS = IdMaps("", "", False, False)


def plan_id_maps(linux: dict) -> IdMaps:
    """Refuse, before anything exists, maps an unprivileged user cannot have written."""
    if not unprivileged():
        return PRIVILEGED_MAPS
    uid_self = _only_own(linux["uidMappings"], os.geteuid())
    gid_self = _only_own(linux["gidMappings"], os.getegid())
    uid_helper = "" if uid_self else _helper("newuidmap", "linux.uidMappings", os.geteuid(), "/etc/subuid")
    gid_helper = "" if gid_self else _helper("newgidmap", "linux.gidMappings", os.getegid(), "/etc/subgid")
    return IdMaps(uid_helper, gid_helper, deny_setgroups=gid_self, by_user=True)


def _only_own(maps: list[dict], own: int) -> bool:
    return len(maps) == 1 and maps[0]["hostID"] == own and maps[0]["size"] == 1


def _helper(name: str, field: str, own: int, table: str) -> str:
    for d in os.environ.get("PATH", HELPER_PATH).split(":"):
        cand = os.path.join(d or ".", name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise ConfigError(f"{field}: an unprivileged user may map only its own id ({own}) without {name} "
                      f"(Debian's uidmap package) and ranges in {table}")


def write_id_maps(pid: int, linux: dict, how: IdMaps) -> None:
    """The init's maps, from the parent, while the init waits for "go"."""
    if how.deny_setgroups:
        _write_proc(pid, "setgroups", "deny", "write setgroups of the init")
    for name, key, helper in (("uid_map", "uidMappings", how.uid_helper),
                              ("gid_map", "gidMappings", how.gid_helper)):
        maps = linux.get(key) or ()
        if helper:
            _run_helper(helper, pid, maps, f"linux.{key}")
        elif maps:
            text = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps)
            _write_proc(pid, name, text, f"write {name} of the init")


def _write_proc(pid: int, name: str, text: str, what: str) -> None:
    try:
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(text)
    except OSError as e:
        raise PyrunError(describe_oserror(e, what)) from None


def _run_helper(helper: str, pid: int, maps, field: str) -> None:
    """newuidmap PID ID HOSTID COUNT…: its own complaint is the one line, when it refuses."""
    argv = [helper, str(pid)] + [str(m[k]) for m in maps for k in ("containerID", "hostID", "size")]
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        child = os.posix_spawn(helper, argv, {"LC_ALL": "C", "PATH": HELPER_PATH}, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_DUP2, w, 2)])
    except OSError as e:
        os.close(r)
        raise PyrunError(describe_oserror(e, f"{field}: run {helper}")) from None
    finally:
        os.close(w)
    out = b""
    try:
        while chunk := os.read(r, 4096):
            out = (out + chunk)[:4096]
    finally:
        os.close(r)
    _, status = os.waitpid(child, 0)
    if status:
        said = " ".join(out.decode(errors="replace").split()) or f"exit status {os.waitstatus_to_exitcode(status)}"
        raise PyrunError(f"{field}: {os.path.basename(helper)} refused the mapping: {said}")


def setgroups_denied(pid: int) -> bool:
    """Whether the user namespace of `pid` denies setgroups(2) (so exec must not call it)."""
    try:
        with open(f"/proc/{pid}/setgroups", "rb") as f:
            return f.read().strip() == b"deny"
    except OSError:
        return False
