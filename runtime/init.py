"""The container init: everything between clone3 and execve, in the order the kernel needs it.

This runs in the child that clone3 made, already inside its new namespaces (and
already in its cgroup where CLONE_INTO_CGROUP applies). It shares nothing with
the parent but the socket described in spawn.py, and it never returns: it
either execve()s process.args or reports one line and _exit()s.
"""
import os

from . import _shim as k
from . import process, rootfs
from .cgroups import join_self
from .errors import PyrunError, describe_oserror
from .namespaces import JOIN_ORDER, join, write_time_offsets
from .procfs import ProcFS
from .state import START_OK


def run(ctx) -> None:
    try:
        _init(ctx)
    except PyrunError as e:
        _fail(ctx, str(e))
    except OSError as e:
        _fail(ctx, describe_oserror(e, "container init"))
    except BaseException as e:  # noqa: BLE001 - the init must always report, never unwind
        _fail(ctx, f"container init: {type(e).__name__}: {e}")
    os._exit(127)


MAX_MESSAGE = 4096


def _fail(ctx, msg: str) -> None:
    """Report to `create` while it listens; after "ready" only stderr is left."""
    if len(msg) > MAX_MESSAGE:  # a huge path quoted in it must not make the report too big to send
        msg = msg[:MAX_MESSAGE] + "…"
    try:
        ctx.sock.send(b"error " + msg.encode(errors="replace"))
    except OSError:
        try:
            os.write(2, f"pyrun init: {msg}\n".encode(errors="replace"))
        except OSError:
            pass
    os._exit(1)


def _wait_for(ctx, expect: bytes) -> None:
    msg = ctx.sock.recv(65536)
    if msg != expect:
        os._exit(1)  # the parent is gone or gave up: nothing to report to


def _init(ctx) -> None:
    config, linux = ctx.config, ctx.config.get("linux") or {}
    proc = config["process"]
    join_self(ctx.cgroup_fds)  # first: nothing the init does may run outside its cgroup
    # Before any path of the container is touched: only the fds the init needs stay
    # open, so that no cwd or path can climb out through one (CVE-2024-21626).
    console_fd = ctx.console_socket.fileno() if ctx.console_socket is not None and not isinstance(
        ctx.console_socket, str) else -1
    idmaps = tuple(m.tree_fd for m in ctx.mounts if m.tree_fd >= 0)  # attached by mount_all
    process.close_fds_except(ctx.preserve_fds, (ctx.sock.fileno(), ctx.fifo_fd, ctx.helper_fd, console_fd,
                                                ctx.rootfs_fd) + idmaps)
    # --console-socket is a host path: reach it with the host's credentials, before the
    # user namespace's root (or a joined user or mount namespace) stands in the way
    console_sock = _console_socket(ctx) if proc.get("terminal") else None
    setgroups = not ctx.id_maps.deny_setgroups
    if ctx.after_userns is not None:
        setgroups = _enter_joined_user_namespace(ctx)
    go = ctx.sock.recv(64)  # uid/gid maps and oom_score_adj are written
    if not go.startswith(b"go "):
        os._exit(1)
    ctx.host_pid = int(go[3:])
    if ctx.userns and ctx.id_maps.by_user:
        import _prctl  # dumpable only while an unprivileged parent wrote the maps
        _prctl.prctl(_prctl.PR_SET_DUMPABLE, 0)
    if ctx.userns:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    if ctx.after_userns is None:
        _join_namespaces(ctx)
    ownproc = ProcFS.fresh()  # before any container path: the runtime's own /proc
    if ctx.unshare_cgroupns:
        k.unshare(k.CLONE_NEWCGROUP)  # its root: the cgroup we have just joined
    if not ctx.no_new_keyring:
        _new_session_keyring(ctx.id)
    if ctx.new_utsns:
        _set_names(config)
    elif "uts" in ctx.join_paths:
        _set_names(config)  # a joined UTS namespace is the container's own too (runc)
    elif config.get("hostname"):
        raise PyrunError("unable to set hostname without a private UTS namespace")
    if ctx.new_netns:
        loopback_up()

    # The root filesystem, still seeing the host's paths. Without a mount namespace of its
    # own, the caller's "/" and its propagation stay as they are: the config's mounts go
    # inside the rootfs create pinned, and delete takes them out again.
    if ctx.own_mountns:
        rootfs.prepare_root(ctx.rootfs, linux.get("rootfsPropagation"))
        rootfs.mount_all(ctx.rootfs, ctx.mounts, ctx)
        rootfs.create_devices(ctx.rootfs, linux.get("devices") or [], ctx)
    else:
        _mount_in_callers_namespace(ctx)
    seccomp = process.compile_seccomp(linux, ctx.seccomp_cache)
    listener = _connect_seccomp_agent(linux) if seccomp is not None and seccomp.uses_notify else None

    if ctx.hooks.get("prestart") or ctx.hooks.get("createRuntime"):
        ctx.sock.send(b"hooks")
        _wait_for(ctx, b"hooks-done")
    if ctx.hooks.get("createContainer"):
        from . import hooks
        hooks.run(ctx.hooks["createContainer"], ctx.state_for_hooks("creating", os.getpid()), "createContainer")

    if ctx.own_mountns:
        rootfs.pivot(ctx.rootfs, ctx.no_pivot, linux.get("rootfsPropagation"))
    else:
        os.fchdir(ctx.rootfs_fd)
        os.chroot(".")
        os.chdir("/")
        os.close(ctx.rootfs_fd)
    if console_sock is not None:
        from . import console
        console.setup(console_sock, proc.get("consoleSize"), bind_console=True)  # a new session
    else:
        # A session of its own, as runc's init: the caller's terminal signals reach the
        # program through `run`'s proxy only, and criu can dump a session led inside.
        try:
            os.setsid()
        except OSError as e:
            raise PyrunError(describe_oserror(e, "setsid")) from None
    rootfs.finalize(config, linux, ctx.mounts, ownproc)

    # Settle what can fail before reporting ready, so `create` fails instead of `start`:
    # everything up to the credentials. After "ready" the init only waits, runs the
    # startContainer hooks and execs.
    process.apply_rlimits(proc.get("rlimits"))
    process.apply_scheduling(proc)
    process.apply_personality(linux.get("personality"))
    process.apply_memory_policy(linux.get("memoryPolicy"))
    env = process.with_home(list(proc.get("env") or ()), (proc.get("user") or {}).get("uid", 0))
    process.enter_cwd(proc.get("cwd") or "/")
    path = process.find_executable(proc["args"][0], env)
    send_listener = listener and _listener_sender(ctx, listener)
    process.become_process(proc, seccomp, send_listener, setgroups=setgroups)

    ctx.sock.send(b"ready")
    ctx.sock.close()

    # Block here until `pyrun start` opens the FIFO for reading. The fd was opened by the
    # parent, O_PATH: reopened through the host's procfs, not the container's /proc.
    try:
        fifo = ownproc.reopen_fd(ctx.fifo_fd, os.O_WRONLY)
    except OSError as e:
        raise PyrunError(describe_oserror(e, "open exec fifo")) from None
    process.block_signals()  # before `start` can return: what it sends next is the program's
    ownproc.close()
    if ctx.hooks.get("startContainer"):
        _start_hooks(ctx, fifo)
    os.write(fifo, START_OK)
    os.close(fifo)
    os.close(ctx.fifo_fd)

    process.finish(proc, seccomp, send_listener, preserve_fds=ctx.preserve_fds, keep_fds=(ctx.helper_fd,))
    process.execve(ctx.helper_fd, path, proc["args"], process.env_dict(env))


def _start_hooks(ctx, fifo: int) -> None:
    """runtime.md, lifecycle step 7: a failing startContainer hook is an error of `start`, and
    stops the container. So they run before the byte `start` waits for, and a failure goes
    to `start` through the fifo (in one write: below PIPE_BUF it arrives whole), which prints
    it; to the container's stderr only if `start` is gone (for `run` that would be twice)."""
    from . import hooks
    try:
        hooks.run(ctx.hooks["startContainer"], ctx.state_for_hooks("created", os.getpid()), "startContainer")
    except PyrunError as e:
        try:
            os.write(fifo, b"E" + str(e).encode(errors="replace")[:MAX_MESSAGE - 1])
        except OSError:
            _fail(ctx, str(e))
        os._exit(1)


def _mount_in_callers_namespace(ctx) -> None:
    """The config's mounts through the pinned rootfs fd, so that they land where create
    recorded (rootfs.caller_mounts); /dev gets its devices only if it is one of them (the
    image's own /dev is never written)."""
    root = f"/proc/self/fd/{ctx.rootfs_fd}"
    rootfs.mount_all(root, ctx.mounts, ctx)
    if rootfs.dev_is_ours(ctx.mounts):
        rootfs.create_devices(root, [], ctx)


def _console_socket(ctx):
    """--console-socket is a host path: connect before pivot_root. `run` hands a socket."""
    from . import console
    if isinstance(ctx.console_socket, str):
        return console.connect(ctx.console_socket)
    return ctx.console_socket


def _join_namespaces(ctx) -> None:
    for ns in JOIN_ORDER:
        path = ctx.join_paths.get(ns)
        if path:
            join(ns, path)


def _enter_joined_user_namespace(ctx) -> bool:
    """A user namespace joined at a path, in runc's order: join it, become its root, join
    the others at their paths (mount last), and only then make the new namespaces, which
    it so owns. A new pid namespace takes only children: the init forks once more, this
    process sends the parent the child's pidfd ("init") and exits, and the child, pid 1
    of its namespace (and `create`'s, its subreaper's), goes on as the init.
    Before "go": the parent moves netDevices and writes oomScoreAdj into the real init.
    Returns whether the container may call setgroups."""
    joins, new = ctx.join_paths, ctx.after_userns
    join("user", joins["user"])
    with open("/proc/self/setgroups", "rb") as f:  # still the host's /proc: only user is joined
        setgroups = f.read().strip() != b"deny"
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError as e:
        raise PyrunError(describe_oserror(e, f"become root in user namespace {joins['user']}")
                         + " (its uid_map and gid_map must map 0)") from None
    ctx.userns = True  # this copy of ctx: the init is in a user namespace (devices are bound, not made)
    for ns in JOIN_ORDER:
        if ns not in ("user", "mount") and joins.get(ns):
            join(ns, joins[ns])
    if new:
        try:
            k.unshare(new)
        except OSError as e:
            raise PyrunError(describe_oserror(e, f"make namespaces in user namespace {joins['user']}")) from None
    if new & k.CLONE_NEWTIME:
        # unshare made it ours-for-children: its offsets, then the init enters it itself
        # (setns is allowed until a process is in it; no fork is needed for time)
        offsets = (ctx.config.get("linux") or {}).get("timeOffsets")
        try:
            if offsets:
                write_time_offsets(offsets)
        except OSError as e:
            raise PyrunError(describe_oserror(e, "set time namespace offsets")) from None
        join("time", "/proc/self/ns/time_for_children")
    if joins.get("mount"):
        join("mount", joins["mount"])
    if new & k.CLONE_NEWPID:
        try:
            pid, pidfd = k.clone3(0)
        except OSError as e:
            raise PyrunError(describe_oserror(e, "fork the init into its new pid namespace")) from None
        if pid:
            import _socket
            import sys
            ctx.sock.sendmsg([b"init"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                          pidfd.to_bytes(4, sys.byteorder))])
            os._exit(0)
    return setgroups


def _new_session_keyring(cid: str) -> None:
    """The host's session keyring must not be the container's (runc does the same). The
    name is runc's: the kernel keeps names that start with "." for itself."""
    try:
        k.join_session_keyring("_ses." + cid)
    except OSError as e:
        if e.errno != 38:  # ENOSYS: no keyrings in this kernel
            raise PyrunError(describe_oserror(e, "join a new session keyring")) from None


def _set_names(config: dict) -> None:
    if config.get("hostname"):
        k.sethostname(config["hostname"])
    if config.get("domainname"):
        k.setdomainname(config["domainname"])


_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def loopback_up() -> None:
    """A network namespace of the container's own has lo up, as runc's has (its "loopback"
    network): a program inside may expect 127.0.0.1 to answer. One ioctl pair on the
    interface by name; a joined namespace is left as its owner made it."""
    import _socket
    import fcntl
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    try:
        ifreq = bytearray(b"lo".ljust(40, b"\0"))  # struct ifreq: the name, then ifr_flags
        fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, ifreq)
        ifreq[16:18] = (int.from_bytes(ifreq[16:18], "little") | _IFF_UP).to_bytes(2, "little")
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, ifreq)
    except OSError as e:
        raise PyrunError(describe_oserror(e, "bring lo up in the container's network namespace")) from None
    finally:
        s.close()


def _connect_seccomp_agent(linux: dict):
    """listenerPath is a host path: connect while it is reachable, send after the load."""
    from . import seccomp
    import json  # noqa: F401 - send_listener needs it after pivot_root
    return seccomp.connect_listener(linux["seccomp"]["listenerPath"])


def _listener_sender(ctx, sock):
    """SCMP_ACT_NOTIFY: the listener fd goes to the agent at listenerPath with our state."""
    def send(fd: int) -> None:
        from . import seccomp
        sc = ctx.config["linux"]["seccomp"]
        seccomp.send_listener(sc["listenerPath"], fd, ctx.state_for_hooks("running"), ctx.host_pid,
                              sc.get("listenerMetadata", ""), sock=sock)
    return send


