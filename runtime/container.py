"""Container: the lifecycle state machine (creating → created → running → stopped).

Usable without the CLI:

    c = Container.create("web", "/path/to/bundle")
    c.start(); c.state()["status"]; c.kill(15); c.delete(force=True)
    Container.load("web", root="/run/pyrun")

Status is derived from facts each time (state.py): whether the recorded pid is
alive *and* the same process (its start time), whether exec.fifo still exists,
whether the cgroup is frozen.

`posix`, not `os`, for state.py's reason: `state`, `kill`, `start` and `list` go
through here and never need os's import (~15% of the bare interpreter's start).
"""
import posix

from specs import SPEC_VERSION

from . import state as st
from .errors import ConfigError, ContainerNotFound, PyrunError, StateError


# Which statuses each operation accepts: one table instead of checks spread over commands.
ALLOWED = {
    "start": {"created"},
    "kill": {"created", "running", "paused"},
    "kill-all": {"created", "running", "paused", "stopped"},  # stopped: what the init left behind
    "update": {"created", "running", "paused"},
    "events": {"created", "running", "paused"},
    "pause": {"running"},
    "resume": {"paused"},
    "exec": {"created", "running", "paused"},  # paused: only with --ignore-paused
    "delete": {"stopped", "created"},   # created: killed first, as runc does
    "delete-force": {"creating", "created", "running", "paused", "stopped"},
}


class Container:
    """One container in a state root; the library under `pyrun`. For example (run by
    tests/test_api_doctest.py, with `bundle` an OCI bundle whose process is `sleep 100`
    and `root` a private state root):

    >>> c = Container.create("doc-web", bundle, root=root)
    >>> c.state()["status"]
    'created'
    >>> c.start()
    >>> Container.load("doc-web", root=root).state()["status"]
    'running'
    >>> c.kill(9)
    >>> c.delete(force=True)
    >>> Container.list(root)
    []
    """

    def __init__(self, cid: str, root: str, cdir: str, record: dict | None,
                 unparsed_config: tuple[str, int] | None = None):
        self.id, self.root, self.dir = cid, root, cdir
        # state.read_record's: the record without its config, parsed when `record` or
        # `config` is first asked for. The facts below read only _record.
        self._record, self._unparsed_config = record, unparsed_config

    @property
    def record(self) -> dict | None:
        """What create recorded (state.json), config included; None while creating."""
        if self._unparsed_config is not None:
            from specs import fastjson
            self._record["config"] = fastjson.loads_tail(*self._unparsed_config)
            self._unparsed_config = None
        return self._record

    @record.setter
    def record(self, record: dict | None) -> None:
        self._record, self._unparsed_config = record, None

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def load(cls, cid: str, root: str = st.DEFAULT_ROOT) -> "Container":
        return cls(cid, root, *st.read_record(root, cid))

    @classmethod
    def list(cls, root: str = st.DEFAULT_ROOT) -> list["Container"]:
        out = []
        for cid in st.list_ids(root):
            try:
                c = cls.load(cid, root)
            except (ContainerNotFound, PyrunError):
                continue
            if c._record is not None:  # a directory without a record is no container (runc)
                out.append(c)
        return out

    # -- facts -----------------------------------------------------------------------------

    @property
    def config(self) -> dict:
        """The config create recorded."""
        return (self.record or {}).get("config") or {}

    @property
    def pid(self) -> int:
        return self._record["pid"] if self._record else 0

    def alive(self) -> bool:
        return bool(self._record) and st.proc_start_time(self.pid) == self._record["pid_start"]

    def status(self) -> str:
        if not self._record or not self._record.get("pid"):
            return "creating"  # create has not finished (or died half way)
        if not self.alive():
            return "stopped"
        try:
            posix.stat(f"{self.dir}/{st.EXEC_FIFO}")
            return "created"
        except (OSError, ValueError):  # as os.path.exists: any failure is "not there"
            pass
        if _frozen(self._record.get("cgroup")):
            return "paused"
        return "running"

    def cgroup(self):
        if not self._record or not self._record.get("cgroup"):
            return None
        from . import cgroups
        cg = self._record["cgroup"]
        return cgroups.manager(cg["path"], cg["dirs"], cg.get("made"))

    def state(self) -> dict:
        """The OCI state, with runc's extra fields (rootfs, created, owner).

        A directory without a record was never made by create (its claim appears with
        the first record): like runc, it is no container, though delete --force removes it."""
        if self._record is None:
            raise ContainerNotFound("container does not exist")
        status = self.status()
        r = self._record
        return {
            "ociVersion": r.get("ociVersion", SPEC_VERSION), "id": self.id,
            "pid": self.pid if status not in ("stopped", "creating") else 0,
            "status": status, "bundle": r.get("bundle", ""), "rootfs": r.get("rootfs", ""),
            "created": r.get("created", ""), "owner": "",
            "annotations": r.get("annotations") or {},
        }

    def _require(self, op: str) -> str:
        status = self.status()
        if status not in ALLOWED[op]:
            if op in ("kill", "update") and status == "stopped":
                raise StateError("container not running")
            if op == "events" and status == "stopped":
                raise StateError(f"container with id {self.id} is not running")
            if op.startswith("delete"):
                raise StateError(f"cannot delete container {self.id} that is not stopped: {status}")
            raise StateError(f"cannot {op} container {self.id}: it is {status}")
        return status

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def create(cls, cid: str, bundle: str, root: str = st.DEFAULT_ROOT, *, pid_file: str | None = None,
               console_socket: str | None = None, no_pivot: bool = False, no_new_keyring: bool = False,
               preserve_fds: int = 0, listen_fds: int = 0, config: dict | None = None,
               rootless: bool | None = None, _validated: bool = False) -> "Container":
        """Create from `bundle`; `config` replaces bundle/config.json (validated all the same).

        fds 3 … 3+listen_fds+preserve_fds-1 of this process are passed on; the first
        `listen_fds` are socket-activation fds (LISTEN_FDS/LISTEN_PID=1 in the env).
        `rootless` is runc's --rootless: True, False, or None (auto: yes unless real root)."""
        from . import create
        return create.create(cls, cid, bundle, root, pid_file=pid_file, console_socket=console_socket,
                             no_pivot=no_pivot, no_new_keyring=no_new_keyring,
                             preserve_fds=preserve_fds, listen_fds=listen_fds, config=config,
                             validated=_validated, rootless=rootless)

    def start(self) -> None:
        lock = st.lock(self.dir)
        try:
            self._require("start")
            fifo = f"{self.dir}/{st.EXEC_FIFO}"
            _release_init(fifo, self.pid)
            try:
                posix.unlink(fifo)
            except FileNotFoundError:
                pass
        finally:
            posix.close(lock)
        poststart = (self.config.get("hooks") or {}).get("poststart")
        if poststart:
            from . import hooks
            hooks.run_logged(poststart, self.state(), "poststart", _warn)

    def kill(self, sig: int = 15, all: bool = False) -> None:
        if all and self.cgroup() is not None:
            self._require("kill-all")
            _signal_all(self.cgroup(), sig)
            return
        if all:  # rootless, without a cgroup: its pid namespace tells its processes apart
            import _signal
            self._require("kill-all")
            for _, pidfd in self._pid_namespace_members():
                try:
                    _signal.pidfd_send_signal(pidfd, sig)
                except ProcessLookupError:
                    pass
                finally:
                    posix.close(pidfd)
            return
        status = self._require("kill")
        _signal_pid(self.pid, self._record["pid_start"], sig)
        if status == "paused" and sig == 9:
            # a task in a frozen v1 cgroup dies only once thawed (runc thaws too)
            self.cgroup().freeze(False)

    def pause(self) -> None:
        self._require("pause")
        self._cgroup_or_fail().freeze(True)

    def resume(self) -> None:
        self._require("resume")
        self._cgroup_or_fail().freeze(False)

    def pids(self) -> "list[int]":
        """Every process of the container: its cgroup's, or without one (rootless, none
        could be made) those in its pid namespace."""
        cg = self.cgroup()
        if cg is not None:
            return cg.pids()
        members = self._pid_namespace_members()
        for _, pidfd in members:
            posix.close(pidfd)
        return [pid for pid, _ in members]

    def _pid_namespace_members(self) -> "list[tuple[int, int]]":
        """(pid, pidfd) of each process in the container's own pid namespace (none once its
        init is gone: the kernel ends them all). The pidfd is taken before the namespace is
        read, so a reused pid is only skipped or signalled in vain, never signalled wrongly."""
        if not self._own_pid_namespace():
            raise PyrunError(f"container {self.id} has neither a cgroup nor a pid namespace of its own: "
                             "its processes cannot be told apart from the host's")
        try:
            pidfd = _open_pidfd(self.pid, self.record["pid_start"])
        except StateError:
            return []
        try:
            target = posix.readlink(f"/proc/{self.pid}/ns/pid")
        finally:
            posix.close(pidfd)
        out = []
        for name in posix.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                fd = posix.pidfd_open(int(name))
            except OSError:
                continue
            try:
                if posix.readlink(f"/proc/{name}/ns/pid") == target:
                    out.append((int(name), fd))
                    continue
            except OSError:
                pass
            posix.close(fd)
        return out

    def _own_pid_namespace(self) -> bool:
        """A new pid namespace (not one joined by path): the kernel ends all of its
        processes with the init (runc's IsPrivate(NEWPID))."""
        ns = [n for n in self.config.get("linux", {}).get("namespaces") or () if n.get("type") == "pid"]
        return bool(ns) and not ns[0].get("path")

    def _cgroup_or_fail(self):
        cg = self.cgroup()
        if cg is None:
            raise PyrunError(f"container {self.id} has no cgroup")
        return cg

    def update(self, resources: dict) -> None:
        """Apply `resources` (linux.resources fields; unset ones stay as they are) to the
        running container and keep them in its record, as `runc update` does."""
        lock = st.lock(self.dir)
        try:
            self._require("update")
            from . import cgroups
            from .cgroups import fields
            fields.check(resources, cgroups.host_controllers())
            self._cgroup_or_fail().update(resources)
            config = self.record["config"] = self.config
            linux = config.setdefault("linux", {})
            linux["resources"] = _merged(linux.get("resources") or {}, resources)
            st.write_state(self.dir, self.record)
        finally:
            posix.close(lock)

    def stats(self) -> dict:
        self._require("events")
        return self._cgroup_or_fail().stats()

    def delete(self, force: bool = False) -> None:
        try:
            lock = st.lock_current(self.dir)
        except ContainerNotFound:
            if force:
                return
            raise
        try:
            # Read again under the lock: a create that held it has finished (or died) since.
            self.record = st.read_state(self.root, self.id)[1]
            status = self._require("delete-force" if force else "delete")
            devices = self.config.get("linux", {}).get("netDevices")
            if devices and self.alive():  # while their namespace still exists: back to the host
                from . import netdev
                netdev.move_out(devices, self.pid)
            cg = self.cgroup()
            if status in ("creating", "created", "running", "paused"):
                self._kill_everything(cg)
            elif cg is not None and not self._own_pid_namespace():
                # An init that shared a pid namespace can exit and leave its children
                # running in the cgroup: they go with the container. In a namespace of
                # its own they went with the init (runc's destroy skips this too).
                _kill_cgroup(cg)
            if self.record is not None and self.record.get("caller_mounts"):
                # Made in the caller's mount namespace (the config had none of its own): out
                # again, now that nothing of the container can mount any more.
                from .rootfs import remove_caller_mounts
                remove_caller_mounts(self.record["caller_mounts"])
            if cg is not None:
                from . import cgroups
                cgroups.destroy(cg)
            if self.record is not None:
                poststop = (self.config.get("hooks") or {}).get("poststop")
                if poststop:
                    from . import hooks
                    s = self.state()
                    s["status"] = "stopped"
                    hooks.run_logged(poststop, s, "poststop", _warn)
            st.remove_dir(self.dir)
        finally:
            posix.close(lock)

    def _kill_everything(self, cg) -> None:
        """SIGKILL to the init and to the cgroup's processes; also for a create that died
        half way, whose record names the cgroup but no pid yet."""
        if self.pid:
            try:
                _signal_pid(self.pid, self.record["pid_start"], 9)
            except PyrunError:
                pass
        if cg is not None:
            _kill_cgroup(cg)
        if self.pid:
            _wait_gone(self.pid, self.record["pid_start"])


def _frozen(cg: dict | None) -> bool:
    """Whether the recorded cgroup is frozen, as its Manager's frozen() says (cgroup.freeze
    "1" on v2; on v1 freezer.state other than THAWED, FREEZING too), read here from the
    file the record names: importing the cgroups package would be most of what `state`
    or `kill` of a running container costs."""
    dirs = (cg or {}).get("dirs") or {}
    if len(dirs) == 1 and "" in dirs:  # v2: its one directory (cgroups.manager's test)
        path = dirs[""] + "/cgroup.freeze"
    else:
        path = next((d + "/freezer.state" for name, d in dirs.items() if "freezer" in name.split(",")), None)
        if path is None:
            return False
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return False
    try:
        state = posix.read(fd, 64).strip()
    except OSError:
        return False
    finally:
        posix.close(fd)
    return state == b"1" if path.endswith("/cgroup.freeze") else state != b"THAWED"


def _warn(msg: str) -> None:
    from . import log
    log.warning(msg)


def _open_pidfd(pid: int, start_time: int) -> int:
    """A pidfd for `pid`, once it is known to be the process we started (its start time):
    from then on the pidfd cannot be confused with a reused pid."""
    try:
        pidfd = posix.pidfd_open(pid)
    except ProcessLookupError:
        raise StateError("container not running") from None
    if st.proc_start_time(pid) != start_time:
        posix.close(pidfd)
        raise StateError("container not running")
    return pidfd


def _signal_pid(pid: int, start_time: int, sig: int) -> None:
    import _signal
    pidfd = _open_pidfd(pid, start_time)
    try:
        _signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        raise StateError("container not running") from None
    finally:
        posix.close(pidfd)


def _wait_gone(pid: int, start_time: int, timeout: float = 10.0) -> None:
    import select
    try:
        pidfd = posix.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if st.proc_start_time(pid) != start_time:
            return
        p = select.poll()
        p.register(pidfd, select.POLLIN)
        p.poll(int(timeout * 1000))
    finally:
        posix.close(pidfd)


def _rest(fd: int) -> str:
    try:
        return posix.read(fd, 4096).decode(errors="replace")
    except BlockingIOError:
        return ""


def _release_init(fifo: str, pid: int) -> None:
    """Open exec.fifo for reading: the init's blocked open returns, it runs the
    startContainer hooks and writes one byte (or, if a hook failed, the error).

    The pidfd comes first: once the fifo is open the program may exec, exit and be
    reaped (by a shim) before this process looks again."""
    import select
    try:
        pidfd = posix.pidfd_open(pid)
    except ProcessLookupError:
        raise StateError("cannot start a container that has stopped") from None
    try:
        fd = posix.open(fifo, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
    except FileNotFoundError:
        posix.close(pidfd)
        raise StateError("cannot start an already running container") from None
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        p.register(pidfd, select.POLLIN)
        while True:
            events = dict(p.poll())
            got = posix.read(fd, 1) if events.get(fd, 0) & select.POLLIN else b""
            if got == st.START_OK:
                return
            if got:  # a startContainer hook failed: the init wrote why in one piece, and ends
                raise PyrunError(_rest(fd) or "a startContainer hook failed")
            if pidfd in events or events.get(fd, 0) & select.POLLHUP:
                raise PyrunError("container init exited before it could start")
    finally:
        posix.close(fd)
        posix.close(pidfd)


def _signal_all(cg, sig: int) -> None:
    """`kill --all`: the cgroup is frozen while the signals go out, so that nothing forks
    past the list; it is thawed again unless it was paused (and for SIGKILL always)."""
    was_frozen = cg.frozen()
    freeze = cg.can_freeze()
    if freeze and not was_frozen:
        cg.freeze(True)
    try:
        for pid in cg.pids():
            try:
                posix.kill(pid, sig)
            except ProcessLookupError:
                pass
    finally:
        if freeze and (not was_frozen or sig == 9):
            cg.freeze(False)


def _kill_cgroup(cg, timeout: float = 10.0) -> None:
    """SIGKILL every process in the cgroup (sub-cgroups too) until none is left. A
    frozen cgroup is thawed after the signals are sent: its tasks die without running."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        pids = cg.pids()
        if not pids:
            return
        for pid in pids:
            try:
                posix.kill(pid, 9)
            except ProcessLookupError:
                pass
        if cg.frozen():
            cg.freeze(False)
        if time.monotonic() > deadline:
            return
        time.sleep(0.002)


def _merged(old: dict, new: dict) -> dict:
    """linux.resources after an update: each set field of `new` replaces the old one."""
    out = dict(old)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **{k: v for k, v in value.items() if v is not None}}
        elif value is not None:
            out[key] = value
    return out


__all__ = ["Container", "ConfigError"]
