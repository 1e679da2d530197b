"""One small function per command: parse what the table gave, call the library, print.

No `import os` up here: a function that needs os imports it. state, kill, start and
list never do, and os's import is ~15% of the bare interpreter's start (state.py).
"""
import sys

from .container import Container
from .errors import PyrunError, UsageError


def _one_id(pos: list[str], cmd: str, extra_ok: int = 0) -> str:
    if not pos:
        raise UsageError(f'"{cmd}" requires a minimum of 1 argument')
    if len(pos) > 1 + extra_ok:
        raise UsageError(f'"{cmd}" requires a maximum of {1 + extra_ok} argument(s)')
    return pos[0]


def _create(g, o, pos, cmd, console=None, config=None):
    import os
    cid = _one_id(pos, cmd)
    if g["systemd_cgroup"]:
        raise PyrunError("--systemd-cgroup: pyrun has no systemd cgroup manager; "
                         "use cgroupfs (a cgroupsPath that is a path)")
    pidfd_sock = None
    if o["pidfd_socket"]:  # reached first: a socket that cannot be reached fails create up front
        from .console import connect
        pidfd_sock = connect(o["pidfd_socket"], "pidfd socket")
    try:
        c = Container.create(cid, o["bundle"] or os.getcwd(), g["root"], pid_file=o["pid_file"] or None,
                             console_socket=console or o["console_socket"] or None, no_pivot=o["no_pivot"],
                             no_new_keyring=o["no_new_keyring"], preserve_fds=o["preserve_fds"],
                             listen_fds=_listen_fds(), config=config, rootless=g["rootless"],
                             _validated=config is not None)
        if pidfd_sock is not None:
            import socket
            socket.send_fds(pidfd_sock, [b"pidfd"], [c.pidfd])  # the init's pidfd, as runc sends it
    finally:
        if pidfd_sock is not None:
            pidfd_sock.close()
    return c


def _listen_fds() -> int:
    """systemd socket activation, as runc honours it: LISTEN_FDS meant for us (LISTEN_PID)."""
    import os
    n, pid = os.environ.get("LISTEN_FDS"), os.environ.get("LISTEN_PID")
    if not n or not n.isdigit() or (pid and pid != str(os.getpid())):
        return 0
    return int(n)


def create(g, o, pos):
    _create(g, o, pos, "create")


def start(g, o, pos):
    Container.load(_one_id(pos, "start"), g["root"]).start()


def run(g, o, pos):
    import os
    from . import foreground
    from .create import load_config
    _one_id(pos, "run")
    if not o["detach"] and not o["no_subreaper"]:
        # as runc's: processes the container orphans (no pid namespace) come to us, not to
        # the host's pid 1, while we wait for the init
        import _prctl
        _prctl.prctl(_prctl.PR_SET_CHILD_SUBREAPER, 1)
    config = load_config(os.path.abspath(o["bundle"] or os.getcwd()))
    ours = theirs = None
    if not o["detach"] and not o["console_socket"] and (config.get("process") or {}).get("terminal"):
        import socket  # the init hands us the pty master over a socketpair; we proxy it
        from .console import tty_size
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # born with the user's window size: the program may ask before we proxy
        if not config["process"].get("consoleSize") and tty_size():
            config["process"]["consoleSize"] = tty_size()
    try:
        c = _create(g, o, pos, "run", console=theirs, config=config)
    finally:
        if theirs is not None:
            theirs.close()
    return foreground.run(c, detach=o["detach"], keep=o["keep"], console_conn=ours)


def exec(g, o, pos):  # noqa: A001 - the command's name
    from . import exec as execmod
    if not pos:
        raise UsageError('"exec" requires a minimum of 1 argument')
    c = Container.load(pos[0], g["root"])
    if c.status() == "creating":
        raise PyrunError(f"cannot exec in container {c.id}: it is creating")
    if o["apparmor"] or o["process_label"]:
        raise PyrunError("exec: apparmor and SELinux labels are not supported on this host")
    proc = execmod.process_from_cli(c.config, o, pos[1:])
    console = o["console_socket"] or None
    if proc.get("terminal") and not console and not o["detach"]:
        import socket  # the child hands us the pty master; we proxy it
        from .console import tty_size
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        if not proc.get("consoleSize") and tty_size():
            proc["consoleSize"] = tty_size()
        try:
            pid_code = execmod.run_exec(c, proc, detach=False, pid_file=o["pid_file"] or None,
                                        console_socket=theirs, preserve_fds=o["preserve_fds"],
                                        console_conn=ours, cgroups=o["cgroup"],
                                        ignore_paused=o["ignore_paused"])
        finally:
            theirs.close()
        return pid_code
    return execmod.run_exec(c, proc, detach=o["detach"], pid_file=o["pid_file"] or None,
                            console_socket=console, preserve_fds=o["preserve_fds"],
                            cgroups=o["cgroup"], ignore_paused=o["ignore_paused"])


def state(g, o, pos):
    from specs import fastjson
    s = Container.load(_one_id(pos, "state"), g["root"]).state()
    sys.stdout.write(fastjson.dumps(s, indent="  ") + "\n")


def kill(g, o, pos):
    cid = _one_id(pos, "kill", extra_ok=1)
    sig = parse_signal(pos[1]) if len(pos) > 1 else 15
    Container.load(cid, g["root"]).kill(sig, all=o["all"])


def parse_signal(s: str) -> int:
    import _signal
    if s.isdigit():
        n = int(s)
        if 0 <= n < _signal.NSIG:  # 0: runc passes it on (a liveness probe)
            return n
    else:
        name = s.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        n = getattr(_signal, name, None)
        if isinstance(n, int) and name.isidentifier():
            return n
    raise PyrunError(f"unknown signal {s!r}")


def delete(g, o, pos):
    from .errors import ContainerNotFound
    cid = _one_id(pos, "delete")
    try:
        c = Container.load(cid, g["root"])
    except ContainerNotFound:
        if o["force"]:
            from .state import sweep_claims
            sweep_claims(g["root"])  # what a create killed before its claim was whole left
            return  # runc: --force on a missing container is not an error
        raise
    c.delete(force=o["force"])


def pause(g, o, pos):
    Container.load(_one_id(pos, "pause"), g["root"]).pause()


def resume(g, o, pos):
    Container.load(_one_id(pos, "resume"), g["root"]).resume()


def list(g, o, pos):  # noqa: A001 - the command's name
    from specs import fastjson
    containers = Container.list(g["root"])
    if o["quiet"]:
        sys.stdout.write("".join(c.id + "\n" for c in containers))
        return
    names: dict[int, str] = {}  # uid → name, looked up once: getpwuid reads /etc/passwd each call
    states = [dict(c.state(), owner=_owner(c.dir, names)) for c in containers]
    if o["format"] == "json":
        # as runc's encoder writes it: compact, and null for no containers
        sys.stdout.write((fastjson.dumps(states, separators=(",", ":")) if states else "null") + "\n")
        return
    if o["format"] != "table":
        raise PyrunError(f"invalid format option {o['format']!r}")
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]) for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    out = ["".join(v.ljust(w + 3) if i < 5 else v for i, (v, w) in enumerate(zip(r, widths))).rstrip() + "\n"
           for r in rows]
    sys.stdout.write("".join(out))


def _owner(cdir: str, names: dict[int, str]) -> str:
    """The state directory's owner by name, as runc's list shows it (#uid if unnamed)."""
    import posix
    import pwd
    try:
        uid = posix.stat(cdir).st_uid
    except OSError:
        return ""
    if uid not in names:
        try:
            names[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            names[uid] = f"#{uid}"
    return names[uid]


def ps(g, o, pos):
    from specs import fastjson
    c = Container.load(pos[0] if pos else _one_id(pos, "ps"), g["root"])
    if o["format"] not in ("table", "json"):
        raise PyrunError("invalid format option")
    pids = c.pids()
    if o["format"] == "json":  # runc's: a JSON array, null when there is no process
        sys.stdout.write((fastjson.dumps(pids, separators=(",", ":")) if pids else "null") + "\n")
        return
    import subprocess  # `ps` itself is the formatter, as in runc
    args = pos[1:] or ["-ef"]
    out = subprocess.run(["ps", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if out.returncode != 0:
        raise PyrunError(f"exit status {out.returncode}: {out.stdout.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return
    header = lines[0]
    try:
        col = header.split().index("PID")
    except ValueError:
        raise PyrunError("couldn't find PID field in ps output") from None
    keep = set(pids)
    rows = []
    for line in lines[1:]:
        fields = line.split()
        if not fields:
            continue
        try:
            pid = int(fields[col])
        except (IndexError, ValueError):
            raise PyrunError(f"unable to parse pid: {line!r}") from None
        if pid in keep:
            rows.append(line + "\n")
    sys.stdout.write(header + "\n" + "".join(rows))


def update(g, o, pos):
    from . import update as upd
    c = Container.load(_one_id(pos, "update"), g["root"])
    if o["resources"]:
        resources = upd.resources_from_file(o["resources"])
    else:
        resources = upd.resources_from_flags(o)
    recorded = c.config.get("linux", {}).get("resources")
    c.update(upd.keep_cpu_pair(resources, recorded))


def events(g, o, pos):
    from . import events as ev
    c = Container.load(_one_id(pos, "events"), g["root"])
    ev.run(c, ev.parse_duration(o["interval"]), o["stats"])


def spec(g, o, pos):
    import os
    from specs.runtime import default_config
    from specs import fastjson
    path = os.path.join(o["bundle"], "config.json") if o["bundle"] else "config.json"
    if os.path.exists(path):
        raise PyrunError(f"File {path} exists. Remove it first")
    with open(path, "w") as f:  # runc's bytes: Go's MarshalIndent with tabs, no final newline
        f.write(fastjson.dumps(default_config(rootless=o["rootless"]), indent="\t"))


def features(g, o, pos):
    from specs import fastjson
    from .features import features as feats
    sys.stdout.write(fastjson.dumps(feats(), indent="    ") + "\n")


def checkpoint(g, o, pos):
    from . import checkpoint as ck
    opt = ck.options_from_cli(o)  # flags first: a bad one is refused before any look-up
    ck.checkpoint(Container.load(_one_id(pos, "checkpoint"), g["root"]), opt, g["criu"])


def restore(g, o, pos):
    import os
    from . import checkpoint as ck
    from . import foreground
    cid = _one_id(pos, "restore")
    if o["no_pivot"]:
        raise UsageError("--no-pivot is not supported on restore: criu makes the mount namespace and its root itself")
    if g["systemd_cgroup"]:
        raise PyrunError("--systemd-cgroup: pyrun has no systemd cgroup manager; "
                         "use cgroupfs (a cgroupsPath that is a path)")
    opt = ck.options_from_cli(o)
    if not o["detach"] and not o["no_subreaper"]:
        import _prctl  # as run: what the restored tree orphans comes to us while we wait
        _prctl.prctl(_prctl.PR_SET_CHILD_SUBREAPER, 1)
    c = ck.restore(Container, cid, o["bundle"] or os.getcwd(), g["root"], opt, criu_path=g["criu"],
                   pid_file=o["pid_file"] or None, console_socket=o["console_socket"] or None,
                   rootless=g["rootless"], lsm_profile=o["lsm_profile"], lsm_mount_context=o["lsm_mount_context"])
    if o["detach"]:
        return 0
    foreground.forward_signals(c.pid)
    try:
        code = foreground.wait_foreground(c.pid)
    finally:
        c.delete(force=True)  # runc's restore without -d ends as run does: the container goes
    return code
