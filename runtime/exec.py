"""`exec`: start one more process inside a running container.

Parent side (this process):
  1. the target's namespaces are those of its init that differ from ours;
     pid and time apply to children only, so we join those here, via the init's pidfd
  2. we make ourselves non-dumpable (the child inherits it: while it still runs the
     runtime's interpreter, nothing in the container may open its /proc/PID/exe or
     mem — CVE-2019-5736), then clone3 the child into the container's cgroup
     (cgroup2) or let it join (v1: cgroups.join_self, its first step)
  3. the socket is close-on-exec: EOF means the child's execve succeeded,
     "error <msg>" is its one-line reason
Child side: connect the console socket while host paths are reachable, join
the remaining namespaces in one setns(pidfd, …), then the same process steps
as the init (process.become_process), and execve.
"""
import os

from . import _shim as k
from .cgroups import join_self
from .errors import ConfigError, PyrunError, describe_oserror
from .namespaces import namespaces_to_join

CHILDREN_ONLY = k.CLONE_NEWPID | k.CLONE_NEWTIME


def process_from_cli(config: dict, o: dict, args: list[str]) -> dict:
    """runc's rules: --process replaces everything; otherwise the container's process
    is the template, with args replaced and the flags applied on top."""
    if o["process"]:
        from specs import fastjson
        from .state import read_document
        try:
            proc = fastjson.loads(read_document(o["process"], f"process file {o['process']}"))
        except OSError as e:
            raise ConfigError(describe_oserror(e, f"read process file {o['process']}")) from None
        except ValueError as e:
            raise ConfigError(f"process file {o['process']}: {e}") from None
        _validate_process(proc, o["process"])
        return proc
    if not args:
        raise ConfigError("exec: process args cannot be empty")
    from specs import fastjson  # a deep copy of plain JSON data, without `copy`'s imports
    proc = fastjson.loads(fastjson.dumps(config.get("process") or {}))
    proc["args"] = list(args)
    proc["terminal"] = bool(o["tty"])
    proc.pop("consoleSize", None)
    proc["env"] = list(proc.get("env") or ()) + list(o["env"])
    if o["cwd"]:
        proc["cwd"] = o["cwd"]
    user = dict(proc.get("user") or {"uid": 0, "gid": 0})
    if o["user"]:
        uid, _, gid = o["user"].partition(":")
        try:
            user = {"uid": int(uid), "gid": int(gid) if gid else 0}
        except ValueError:
            raise ConfigError(f"exec: invalid --user {o['user']!r}: expected UID[:GID]") from None
    if o["additional_gids"]:
        try:
            user["additionalGids"] = [int(g) for g in o["additional_gids"]]
        except ValueError:
            raise ConfigError("exec: --additional-gids takes numeric group ids") from None
    proc["user"] = user
    if o["cap"]:
        caps = proc.setdefault("capabilities", {})
        for kind in ("bounding", "effective", "permitted", "ambient"):
            caps[kind] = list(caps.get(kind) or ()) + [c for c in o["cap"] if c not in (caps.get(kind) or ())]
    if o["no_new_privs"]:
        proc["noNewPrivileges"] = True
    # The template passed the schema at create; what the flags add is checked here
    # (the schema validator's import is not worth paying for four fields).
    if not proc.get("cwd", "/").startswith("/"):
        raise ConfigError(f"exec: cwd {proc['cwd']!r} must be an absolute path")
    from . import process
    process.check(proc)
    return proc


def _validate_process(proc, what: str) -> None:
    from . import process, validate
    if not isinstance(proc, dict) or not isinstance(proc.get("args"), list) or not proc["args"]:
        raise ConfigError(f"{what}: process needs a non-empty args list")
    try:
        validate.check_strings(proc)
        validate.check_process(proc, "")
    except ConfigError as e:
        raise ConfigError(str(e).replace("config.json", what, 1)) from None
    from specs import SpecError
    from specs.runtime import validate_config
    try:
        validate_config({"ociVersion": "1.0.0", "root": {"path": "rootfs"}, "process": proc})
    except SpecError as e:
        raise ConfigError(f"{what}: {e}".replace("config.json: ", "")) from None
    process.check(proc)


def run_exec(container, proc: dict, *, detach: bool, pid_file: str | None,
             console_socket, preserve_fds: int, console_conn=None, cgroups=(),
             ignore_paused: bool = False) -> int:
    """Start `proc` in the container; returns its exit status (0 at once with detach).

    `cgroups`: exec --cgroup's sub-cgroups; `ignore_paused`: exec into a paused
    container anyway (the process then waits, frozen, for resume)."""
    status = container._require("exec")
    if status == "paused" and not ignore_paused:
        raise PyrunError(f"cannot exec in a paused container {container.id} (use --ignore-paused to override)")
    cgroup = container.cgroup()
    if cgroups:
        if cgroup is None:
            raise PyrunError(f"exec --cgroup: container {container.id} has no cgroup")
        from .cgroups import sub_cgroup
        cgroup = sub_cgroup(cgroup, cgroups)
    if proc.get("terminal") and not console_socket and detach:
        raise ConfigError("cannot allocate tty if pyrun will detach without setting console socket")
    from .container import _open_pidfd
    init_pidfd = _open_pidfd(container.pid, container.record["pid_start"])
    try:
        child, child_pidfd = _spawn(container, proc, init_pidfd, console_socket, preserve_fds, detach, cgroup)
    finally:
        os.close(init_pidfd)
    if pid_file:
        from .state import write_atomic
        write_atomic(os.path.abspath(pid_file), str(child).encode(), 0o644)
    os.close(child_pidfd)
    if detach:
        return 0
    from .foreground import forward_signals, wait_foreground
    forward_signals(child)
    return wait_foreground(child, console_conn)


def _spawn(container, proc, init_pidfd, console_socket, preserve_fds, detach, cgroup) -> tuple[int, int]:
    import _prctl
    import _socket
    from . import process
    process.preload(proc, container.config.get("linux") or {})
    join = namespaces_to_join(container.pid)
    from .rootless import setgroups_denied, unprivileged
    setgroups = not setgroups_denied(container.pid)
    # Non-dumpable, /proc/self is root's: an unprivileged user sets the child's score
    # in itself first (the child inherits it), and puts its own back after clone3.
    own_oom = _swap_oom_score_adj(proc.pop("oomScoreAdj")) if unprivileged() and \
        proc.get("oomScoreAdj") is not None else None
    parent_sock, child_sock = _socket.socketpair(_socket.AF_UNIX,
                                                 _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    _prctl.prctl(_prctl.PR_SET_DUMPABLE, 0)
    from .spawn import clone_child, supervise
    try:
        in_userns = bool(join & k.CLONE_NEWUSER) and unprivileged()
        if in_userns:
            _join_user_namespace(init_pidfd)
            join &= ~k.CLONE_NEWUSER
        restore = _join_for_children(init_pidfd, join & CHILDREN_ONLY, back=not in_userns)
        pid, pidfd, cgroup_fds, helper_fd = clone_child(0, cgroup, restore, "clone3 for exec")
    except BaseException:
        parent_sock.close()
        child_sock.close()
        if own_oom is not None:
            _swap_oom_score_adj(own_oom, undo=True)
        raise
    if pid == 0:
        parent_sock.close()
        _child(container, proc, init_pidfd, join & ~CHILDREN_ONLY, child_sock, console_socket,
               preserve_fds, cgroup_fds, helper_fd, detach, setgroups)
        os._exit(127)
    if own_oom is not None:
        _swap_oom_score_adj(own_oom, undo=True)
    restore()  # never in the child: setns(time) would move the child itself back
    child_sock.close()
    supervise(pid, pidfd, parent_sock, _await_execve)
    return pid, pidfd


def _await_execve(sock) -> None:
    msg = sock.recv(65536)  # EOF: the close-on-exec socket went with a successful execve
    if msg.startswith(b"error "):
        raise PyrunError(msg[6:].decode(errors="replace"))


def _join_user_namespace(pidfd: int) -> None:
    """Unprivileged, this process may join the container's pid namespace only from inside
    the user namespace that owns it (as its owner it may enter that one). It forks nothing
    else, and stays non-dumpable: what the container's root gains over it there cannot
    reach its memory, made in the host's namespace."""
    try:
        k.setns(pidfd, k.CLONE_NEWUSER)
    except OSError as e:
        raise PyrunError(describe_oserror(e, "join the container's user namespace")) from None


def _join_for_children(pidfd: int, flags: int, back: bool = True):
    """Join the pid/time namespaces for our children. The kernel never lets a process
    move its pid_for_children back up to an ancestor namespace, so that one stays:
    the exec process forks nothing else. time_for_children is put back, unless `back`
    is off (from inside the container's user namespace the host's time namespace is
    out of reach)."""
    if not flags:
        return lambda: None
    own_time = os.open("/proc/self/ns/time", os.O_RDONLY | os.O_CLOEXEC) if (
        flags & k.CLONE_NEWTIME and back) else -1
    try:
        k.setns(pidfd, flags)
    except OSError as e:
        if own_time >= 0:
            os.close(own_time)
        raise PyrunError(describe_oserror(e, "join the container's pid namespace")) from None

    def restore():
        if own_time >= 0:
            try:
                k.setns(own_time, k.CLONE_NEWTIME)
            finally:
                os.close(own_time)
    return restore


def _child(container, proc, init_pidfd, join, sock, console_socket, preserve_fds, cgroup_fds,
           helper_fd, detach, setgroups) -> None:
    from . import process
    try:
        join_self(cgroup_fds)  # first: nothing may run outside the container's cgroup
        # Only what the child needs stays open: no cwd or path may climb out through
        # an fd (CVE-2024-21626). A console socket object (`run`'s) is one of them.
        console_fd = console_socket.fileno() if console_socket is not None and not isinstance(
            console_socket, str) else -1
        process.close_fds_except(preserve_fds, (sock.fileno(), helper_fd, init_pidfd, console_fd))
        config = container.config
        linux = config.get("linux") or {}
        seccomp = process.compile_seccomp(linux, container.root.rstrip("/") + "-cache/seccomp")
        console_sock = None
        if proc.get("terminal"):
            from . import console
            console_sock = console.connect(console_socket) if isinstance(console_socket, str) else console_socket
        if proc.get("oomScoreAdj") is not None:
            _set_own_oom_score_adj(proc["oomScoreAdj"])  # while /proc is still the host's
        if join:
            try:
                k.setns(init_pidfd, join)
            except OSError as e:
                raise PyrunError(describe_oserror(e, "join the container's namespaces")) from None
        os.close(init_pidfd)
        if console_sock is not None:
            from . import console
            console.setup(console_sock, proc.get("consoleSize"), bind_console=False)
        elif detach:
            os.setsid()  # as runc's: a detached process is not in the caller's session
        process.apply_rlimits(proc.get("rlimits"))
        process.apply_scheduling(proc)
        process.apply_personality(linux.get("personality"))
        process.apply_memory_policy(linux.get("memoryPolicy"))
        process.enter_cwd(proc.get("cwd") or "/")
        env = process.with_home(list(proc.get("env") or ()), (proc.get("user") or {}).get("uid", 0))
        path = process.find_executable(proc["args"][0], env)
        process.become_process(proc, seccomp, None, setgroups)
        process.finish(proc, seccomp, None, preserve_fds=preserve_fds, keep_fds=(sock.fileno(), helper_fd))
        process.execve(helper_fd, path, proc["args"], process.env_dict(env))
    except PyrunError as e:
        _report(sock, str(e))
    except OSError as e:
        _report(sock, describe_oserror(e, f"exec {proc['args'][0]!r}"))
    except BaseException as e:  # noqa: BLE001 - the child must report, never unwind
        _report(sock, f"exec: {type(e).__name__}: {e}")


def _swap_oom_score_adj(value: int, undo: bool = False) -> int:
    """Set our own oom_score_adj, returning the old one. Putting the old one back is never
    refused (it is not below the floor), and a failure to then is no failure of exec."""
    try:
        with open("/proc/self/oom_score_adj", "r+") as f:
            old = int(f.read())
            f.seek(0)
            f.write(str(value))
        return old
    except OSError as e:
        if undo:
            return value
        raise PyrunError(describe_oserror(e, f"set oomScoreAdj {value}")) from None


def _set_own_oom_score_adj(value: int) -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as e:
        raise PyrunError(describe_oserror(e, f"set oomScoreAdj {value}")) from None


def _report(sock, msg: str) -> None:
    try:
        sock.send(b"error " + msg.encode(errors="replace"))
    finally:
        os._exit(1)
