"""Parent side of create: clone3 the init into its namespaces and see it through set-up.

The parent ↔ init protocol, over one AF_UNIX SOCK_SEQPACKET socketpair (one
message per datagram, so no framing). The init is a forked copy of the parent,
so it already holds the parsed config; only events cross the socket:

  parent → init   "go <pid>"     uid_map/gid_map and oom_score_adj are written; <pid> is
                                 the init's pid as the runtime sees it
  init → parent   "hooks"        namespaces and mounts are ready, pivot_root is next:
                                 run prestart + createRuntime hooks now
  parent → init   "hooks-done"   they succeeded (on failure the parent kills the init)
  init → parent   "ready"        set-up is done; the init now blocks on exec.fifo
  init → parent   "error <msg>"  a step failed; <msg> is the one line the user sees,
                                 the init exits
  init → parent   "init" + fd    only with a user namespace joined at a path and a new
                                 pid namespace, before "go": the first child made the
                                 namespaces and forked the real init; the fd (SCM_RIGHTS)
                                 is its pidfd, and the first child exits
An EOF before "ready" means the init died; its exit status is reported.
"""
import _socket
import os

from . import _shim as k
from .errors import PyrunError, describe_oserror
from .namespaces import made_after_user_join, write_time_offsets


class InitContext:
    """What the init needs, computed in the parent before clone3 (the child inherits it)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)
        self.sock = None
        self.host_pid = 0
        self.after_userns = None  # spawn's: the namespaces made after joining a user namespace

    def state_for_hooks(self, status: str, pid: int | None = None) -> dict:
        """The state a hook reads on stdin; `pid` as the hook's namespace sees the init
        (the container's hooks: the init's own getpid), the host's by default."""
        return {"ociVersion": self.config.get("ociVersion", ""), "id": self.id, "status": status,
                "pid": self.host_pid if pid is None else pid, "bundle": self.bundle,
                "annotations": self.config.get("annotations") or {}}


def spawn(ctx: InitContext, flags: int, cgroup) -> tuple[int, int]:
    """Start the init and run it to "ready". Returns (pid, pidfd)."""
    from . import init, process
    process.preload(ctx.config["process"], ctx.config.get("linux") or {}, ctx.hooks)
    parent_sock, child_sock = _socket.socketpair(_socket.AF_UNIX,
                                                 _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    # A user namespace joined at a path must own the new namespaces: the init makes
    # them itself once it has joined it (init._enter_joined_user_namespace), and clone3
    # makes none. (Its cgroup namespace then too is unshared from inside its cgroup.)
    ctx.after_userns = made_after_user_join(flags, ctx.join_paths)
    if ctx.after_userns is not None:
        flags = 0
    # The cgroup namespace's root is the cgroup its creator is in. On v1 hierarchies
    # the init reaches its cgroup only after clone3, so it unshares the cgroup
    # namespace itself once it has joined.
    ctx.unshare_cgroupns = bool(flags & k.CLONE_NEWCGROUP) and (cgroup is None or cgroup.version == 1)
    if ctx.unshare_cgroupns:
        flags &= ~k.CLONE_NEWCGROUP
    # Born non-dumpable: nothing in the container may reach the init's /proc/<pid>/fd,
    # environ or mem while it is the host's interpreter (execve undoes it). An
    # unprivileged writer of the id maps needs the init dumpable until "go" (its /proc
    # files are root's otherwise): no process of the container exists before then.
    import _prctl
    by_user = ctx.userns and ctx.id_maps.by_user
    _prctl.prctl(_prctl.PR_SET_DUMPABLE, 1 if by_user else 0)
    # The init that a first child forks into a new pid namespace (see _adopt_init) must
    # be ours, to wait for: the shim's clone3 cannot take CLONE_PARENT (it always sets an
    # exit signal), so we are its subreaper until the first child has exited.
    forks = bool(ctx.after_userns and ctx.after_userns & k.CLONE_NEWPID)
    if forks:
        was_subreaper = _prctl.prctl(_prctl.PR_GET_CHILD_SUBREAPER)
        _prctl.prctl(_prctl.PR_SET_CHILD_SUBREAPER, 1)
    try:
        restore = _enter_for_children(ctx.join_paths)
        if flags & k.CLONE_NEWTIME and (ctx.config.get("linux") or {}).get("timeOffsets"):
            # Offsets can only be written before any process is in the namespace: make
            # it ours-for-children, write them, and let clone3 put the init in it.
            restore = _new_time_ns_for_children(ctx.config["linux"]["timeOffsets"], restore)
            flags &= ~k.CLONE_NEWTIME
        pid, pidfd, ctx.cgroup_fds, ctx.helper_fd = clone_child(flags, cgroup, restore,
                                                                "clone3 into new namespaces")
    except BaseException:
        _prctl.prctl(_prctl.PR_SET_DUMPABLE, 0)
        if forks:
            _prctl.prctl(_prctl.PR_SET_CHILD_SUBREAPER, was_subreaper)
        parent_sock.close()
        child_sock.close()
        raise
    if pid == 0:  # the init
        parent_sock.close()
        ctx.sock = child_sock
        _init_signals()
        init.run(ctx)
        os._exit(127)
    if by_user:
        _prctl.prctl(_prctl.PR_SET_DUMPABLE, 0)
    restore()  # only here: in the init, setns(time) would move the init itself back
    child_sock.close()
    if forks:
        try:
            pid, pidfd = _adopt_init(pid, pidfd, parent_sock)
        finally:
            _prctl.prctl(_prctl.PR_SET_CHILD_SUBREAPER, was_subreaper)
    supervise(pid, pidfd, parent_sock, lambda sock: _see_through(ctx, sock, pid))
    return pid, pidfd


def _adopt_init(first: int, first_pidfd: int, sock) -> tuple[int, int]:
    """A new pid namespace made inside a joined user namespace takes only the children of
    whoever made it: that first child forks the init, sends its pidfd and exits, and the
    init, orphaned, comes to us (the subreaper). Returns the init's (pid, pidfd) once the
    first child is reaped. On failure both are gone (the init, if any, sees EOF before "go")."""
    import sys
    fds = []
    try:
        msg, anc, _, _ = sock.recvmsg(65536, _socket.CMSG_SPACE(4), _socket.MSG_CMSG_CLOEXEC)
        for level, kind, data in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds += [int.from_bytes(data[i:i + 4], sys.byteorder) for i in range(0, len(data) - 3, 4)]
        if msg.startswith(b"error "):
            raise PyrunError(msg[6:].decode(errors="replace"))
        if msg != b"init" or len(fds) != 1:
            _, status = os.waitpid(first, 0)
            raise PyrunError(f"container init exited before it was ready ({_describe_status(status)})")
        pid = _pidfd_pid(fds[0])
    except BaseException:
        _close_fds(fds)
        _kill_and_reap(first, first_pidfd)
        sock.close()
        raise
    os.waitpid(first, 0)  # it exits right after sending
    os.close(first_pidfd)
    return pid, fds[0]


def _pidfd_pid(pidfd: int) -> int:
    """The pid a pidfd stands for, as our /proc counts (the init is ours to wait for)."""
    with open(f"/proc/self/fdinfo/{pidfd}", "rb") as f:
        for line in f:
            if line.startswith(b"Pid:"):
                pid = int(line[4:])
                if pid > 0:
                    return pid
    raise PyrunError("container init exited before it was ready")


def clone_child(flags: int, cgroup, restore, what: str) -> tuple[int, int, list[int], int]:
    """clone3 into new namespaces (`flags`) and into `cgroup`.

    Returns (pid, pidfd, cgroup join fds, exec helper fd); the fds are the child's
    (pid 0), this process has closed its copies. The child is in its cgroup before
    it does anything: born there on cgroup2 (CLONE_INTO_CGROUP), and on v1
    hierarchies it hands the join fds to cgroups.join_self first thing. The sealed
    exec helper is made here, by the runtime, so the child need not reach our files.
    On failure `restore` has run and nothing is left open."""
    from . import process
    inherited: list[int] = []
    try:
        helper_fd = process.sealed_exec_helper()
        inherited.append(helper_fd)
        try:
            cgroup_fd = cgroup.clone_fd() if cgroup is not None else -1
            inherited.append(cgroup_fd)
            fds = cgroup.join_fds() if cgroup is not None else []
            inherited += fds
        except OSError as e:
            raise PyrunError(describe_oserror(e, f"open cgroup {cgroup.path}")) from None
    except BaseException:
        _close_fds(inherited)
        restore()
        raise
    pid = -1
    try:
        pid, pidfd = k.clone3(flags, cgroup_fd)
    except OSError as e:
        restore()
        raise PyrunError(describe_oserror(e, what)) from None
    finally:
        if pid != 0:  # the child keeps its copies, but for the one clone3 itself used
            _close_fds(inherited)
        elif cgroup_fd >= 0:
            os.close(cgroup_fd)  # a directory of the host: no child may keep it
    return pid, pidfd, fds, helper_fd


def _close_fds(fds) -> None:
    for fd in fds:
        if fd >= 0:
            os.close(fd)


def supervise(pid: int, pidfd: int, sock, step) -> None:
    """step(sock) sees the child through its set-up; should it fail, the child is killed and reaped."""
    try:
        step(sock)
    except BaseException:
        _kill_and_reap(pid, pidfd)
        raise
    finally:
        sock.close()


def _see_through(ctx, sock, pid: int) -> None:
    ctx.host_pid = pid
    linux = ctx.config.get("linux") or {}
    if ctx.userns:
        from .rootless import write_id_maps
        write_id_maps(pid, linux, ctx.id_maps)
    _write_oom_score_adj(pid, ctx.config["process"].get("oomScoreAdj"))
    if linux.get("netDevices"):
        from . import netdev
        netdev.move_in(linux["netDevices"], pid)
    sock.send(b"go %d" % pid)
    while True:
        msg = sock.recv(65536)
        if msg == b"ready":
            return
        if msg == b"hooks":
            from . import hooks as hooks_mod
            state = ctx.state_for_hooks("creating")  # as runc's: create has not returned
            hooks_mod.run(ctx.hooks.get("prestart"), state, "prestart")
            hooks_mod.run(ctx.hooks.get("createRuntime"), state, "createRuntime")
            sock.send(b"hooks-done")
        elif msg.startswith(b"error "):
            raise PyrunError(msg[6:].decode(errors="replace"))
        else:
            _, status = os.waitpid(pid, 0)
            raise PyrunError(f"container init exited before it was ready ({_describe_status(status)})")


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _write_oom_score_adj(pid: int, value) -> None:
    """From here, through the host's /proc: the init is not dumpable (rootless: not yet
    anything but the user's), and the container's /proc is the config's and the image's."""
    if value is None:
        return
    try:
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as e:
        hint = " (a user who is not root may only raise it)" if e.errno == 13 and os.geteuid() else ""
        raise PyrunError(describe_oserror(e, f"set oomScoreAdj {value}") + hint) from None


def _enter_for_children(joins: dict):
    """pid and time namespaces apply to children only: join them here, before clone3.

    Returns the function that puts time_for_children back. pid_for_children cannot
    go back (the kernel refuses an ancestor), so after joining a pid namespace by
    path, prestart/createRuntime hooks start inside it too."""
    saved = []
    for kind, flag in (("pid", k.CLONE_NEWPID), ("time", k.CLONE_NEWTIME)):
        path = joins.get(kind)
        if not path:
            continue
        own = os.open(f"/proc/self/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC) if kind == "time" else -1
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise PyrunError(describe_oserror(e, f"open {kind} namespace")) from None
        try:
            k.setns(target, flag)
        except OSError as e:
            raise PyrunError(describe_oserror(e, f"join {kind} namespace {path}")) from None
        finally:
            os.close(target)
        if own >= 0:
            saved.append((own, flag))

    def restore():
        for fd, flag in saved:
            try:
                k.setns(fd, flag)
            finally:
                os.close(fd)
    return restore


def _new_time_ns_for_children(offsets: dict, restore_before):
    own = os.open("/proc/self/ns/time", os.O_RDONLY | os.O_CLOEXEC)
    try:
        k.unshare(k.CLONE_NEWTIME)
        write_time_offsets(offsets)
    except OSError as e:
        k.setns(own, k.CLONE_NEWTIME)
        os.close(own)
        restore_before()
        raise PyrunError(describe_oserror(e, "set time namespace offsets")) from None

    def restore():
        try:
            k.setns(own, k.CLONE_NEWTIME)
        finally:
            os.close(own)
            restore_before()
    return restore


def _init_signals() -> None:
    """Until execve the init is pid 1 of its namespace, where default dispositions are
    ignored: make the usual termination signals end it, as they would end runc's init."""
    import _signal

    def die(signum, frame):
        os._exit(128 + signum)
    for sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT,
                _signal.SIGUSR1, _signal.SIGUSR2):
        _signal.signal(sig, die)


def _kill_and_reap(pid: int, pidfd: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    if pidfd >= 0:
        os.close(pidfd)
