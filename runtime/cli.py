"""pyrun's command line: runc's commands and flags, one small function per command.

Flags are parsed as runc's (Go flag package) parses them: `-f`, `--flag`,
`-flag`, `--flag=value`, `--flag value`, flags stop at the first argument that
is not one. The table below is the single source for parsing and for --help.
click would cost ~40 ms of import on every orchestrator call, more than a whole
runc invocation, so the table is interpreted by a few lines here instead.
"""
import sys

from specs import SPEC_VERSION

from . import VERSION
from .errors import PyrunError, UsageError


# flag spec: (names, kind, default, help); kind: "bool" | "str" | "int" | "list"
GLOBAL_FLAGS = [
    (("debug",), "bool", False, "enable debug logging"),
    (("log",), "str", "", "set the log file to write pyrun logs to (default stderr)"),
    (("log-format",), "str", "text", "set the log format ('text' (default), or 'json')"),
    (("root",), "str", "", "root directory for storage of container state "
                           "(default \"/run/pyrun\", or \"$XDG_RUNTIME_DIR/pyrun\" for a user who is not root)"),
    (("criu",), "str", "criu", "path to the criu binary used for checkpoint and restore"),
    (("systemd-cgroup",), "bool", False, "enable systemd cgroup support (not supported: create refuses it)"),
    (("rootless",), "str", "auto", "ignore cgroup permission errors ('true', 'false', or 'auto')"),
    (("help", "h"), "bool", False, "show help"),
    (("version", "v"), "bool", False, "print the version"),
]
CREATE_FLAGS = [
    (("bundle", "b"), "str", "", "path to the root of the bundle directory, defaults to the current directory"),
    (("console-socket",), "str", "", "path to an AF_UNIX socket which will receive the pty master fd"),
    (("pid-file",), "str", "", "specify the file to write the process id to"),
    (("no-pivot",), "bool", False, "do not use pivot root to jail process inside rootfs"),
    (("no-new-keyring",), "bool", False, "do not create a new session keyring for the container"),
    (("preserve-fds",), "int", 0, "pass N additional file descriptors to the container"),
    (("pidfd-socket",), "str", "", "path to an AF_UNIX socket which will receive the pidfd of the init process"),
]
# The criu options checkpoint and restore share, each spelled once; each command lists them
# by name where runc's --help puts them.
CRIU_FLAGS = {row[0][0]: row for row in [
    (("work-path",), "str", "", "path for saving work files and logs"),
    (("tcp-established",), "bool", False, "allow open tcp connections"),
    (("ext-unix-sk",), "bool", False, "allow external unix sockets"),
    (("shell-job",), "bool", False, "allow shell jobs"),
    (("file-locks",), "bool", False, "handle file locks, for safety"),
    (("manage-cgroups-mode",), "str", "", "cgroups mode: soft|full|strict|ignore (default: soft)"),
    (("empty-ns",), "list", [], "create a namespace, but don't restore its properties"),
    (("auto-dedup",), "bool", False, "enable auto deduplication of memory images"),
]}
COMMANDS = {
    "create": ("create a container", "<container-id>", CREATE_FLAGS),
    "run": ("create and run a container", "<container-id>", CREATE_FLAGS + [
        (("detach", "d"), "bool", False, "detach from the container's process"),
        (("keep",), "bool", False, "do not delete the container after it exits"),
        (("no-subreaper",), "bool", False, "disable the use of the subreaper used to reap reparented processes"),
    ]),
    "start": ("executes the user defined process in a created container", "<container-id>", []),
    "state": ("output the state of a container", "<container-id>", []),
    "kill": ("kill sends the specified signal (default: SIGTERM) to the container's init process",
             "<container-id> [signal]", [(("all", "a"), "bool", False, "send the signal to all processes in the container")]),
    "delete": ("delete any resources held by the container", "<container-id>",
               [(("force", "f"), "bool", False, "forcibly delete the container if it is still running (uses SIGKILL)")]),
    "list": ("lists containers started by pyrun with the given root", "", [
        (("format", "f"), "str", "table", "select one of: table or json"),
        (("quiet", "q"), "bool", False, "display only container IDs"),
    ]),
    "exec": ("execute new process inside the container", "<container-id> <command> [command options]", [
        (("console-socket",), "str", "", "path to an AF_UNIX socket which will receive the pty master fd"),
        (("cwd",), "str", "", "current working directory in the container"),
        (("env", "e"), "list", [], "set environment variables"),
        (("tty", "t"), "bool", False, "allocate a pseudo-TTY"),
        (("user", "u"), "str", "", "UID (format: <uid>[:<gid>])"),
        (("additional-gids", "g"), "list", [], "additional gids"),
        (("process", "p"), "str", "", "path to the process.json"),
        (("detach", "d"), "bool", False, "detach from the container's process"),
        (("pid-file",), "str", "", "specify the file to write the process id to"),
        (("process-label",), "str", "", "set the asm process label for the process commonly used with selinux"),
        (("apparmor",), "str", "", "set the apparmor profile for the process"),
        (("no-new-privs",), "bool", False, "set the no new privileges value for the process"),
        (("cap", "c"), "list", [], "add a capability to the bounding set for the process"),
        (("preserve-fds",), "int", 0, "pass N additional file descriptors to the container"),
        (("cgroup",), "list", [], "run the process in an (existing) sub-cgroup(s)"),
        (("ignore-paused",), "bool", False, "allow exec in a paused container"),
    ]),
    "pause": ("pause suspends all processes inside the container", "<container-id>", []),
    "resume": ("resumes all processes that have been previously paused", "<container-id>", []),
    "ps": ("ps displays the processes running inside a container", "<container-id> [ps options]",
           [(("format", "f"), "str", "table", "select one of: table or json")]),
    "spec": ("create a new specification file", "", [
        (("bundle", "b"), "str", "", "path to the root of the bundle directory"),
        (("rootless",), "bool", False, "generate a configuration for a rootless container"),
    ]),
    "features": ("show the enabled features", "", []),
    "update": ("update container resource constraints", "<container-id>", [
        (("resources", "r"), "str", "", "path to the file containing the resources to update or '-' to read "
                                       "from the standard input"),
        (("blkio-weight",), "int", 0, "Specifies per cgroup weight, range is from 10 to 1000 (default: 0)"),
        (("cpu-period",), "str", "", "CPU CFS period to be used for hardcapping (in usecs). 0 to use system default"),
        (("cpu-quota",), "str", "", "CPU CFS hardcap limit (in usecs). Allowed cpu time in a given period"),
        (("cpu-share",), "str", "", "CPU shares (relative weight vs. other containers)"),
        (("cpu-rt-period",), "str", "", "CPU realtime period to be used for hardcapping (in usecs). "
                                        "0 to use system default"),
        (("cpu-rt-runtime",), "str", "", "CPU realtime hardcap limit (in usecs). Allowed cpu time in a given period"),
        (("cpuset-cpus",), "str", "", "CPU(s) to use"),
        (("cpuset-mems",), "str", "", "Memory node(s) to use"),
        (("kernel-memory",), "str", "", "Kernel memory limit (in bytes)"),
        (("kernel-memory-tcp",), "str", "", "Kernel memory limit (in bytes) for tcp buffer"),
        (("memory",), "str", "", "Memory limit (in bytes)"),
        (("memory-reservation",), "str", "", "Memory reservation or soft_limit (in bytes)"),
        (("memory-swap",), "str", "", "Total memory usage (memory + swap); set '-1' to enable unlimited swap"),
        (("pids-limit",), "int", 0, "Maximum number of pids allowed in the container (default: 0)"),
        (("l3-cache-schema",), "str", "", "The string of Intel RDT/CAT L3 cache schema"),
        (("mem-bw-schema",), "str", "", "The string of Intel RDT/MBA memory bandwidth schema"),
    ]),
    "checkpoint": ("checkpoint a running container", "<container-id>", [
        (("image-path",), "str", "", "path for saving criu image files"),
        CRIU_FLAGS["work-path"],
        (("parent-path",), "str", "", "path for previous criu image files in pre-dump"),
        (("leave-running",), "bool", False, "leave the process running after checkpointing"),
        *(CRIU_FLAGS[name] for name in ("tcp-established", "ext-unix-sk", "shell-job")),
        (("lazy-pages",), "bool", False, "use userfaultfd to lazily restore memory pages (not supported: refused)"),
        (("status-fd",), "int", -1, "criu writes \\0 to this FD once lazy-pages is ready (not supported: refused)"),
        (("page-server",), "str", "", "ADDRESS:PORT of the page server"),
        CRIU_FLAGS["file-locks"],
        (("pre-dump",), "bool", False, "dump container's memory information only, leave the container running after this"),
        *(CRIU_FLAGS[name] for name in ("manage-cgroups-mode", "empty-ns", "auto-dedup")),
    ]),
    "restore": ("restore a container from a previous checkpoint", "<container-id>", [
        (("console-socket",), "str", "", "path to an AF_UNIX socket which will receive a file descriptor "
                                         "referencing the master end of the console's pseudoterminal"),
        (("image-path",), "str", "", "path to criu image files for restoring"),
        *(CRIU_FLAGS[name] for name in ("work-path", "tcp-established", "ext-unix-sk", "shell-job", "file-locks",
                                        "manage-cgroups-mode")),
        (("bundle", "b"), "str", "", "path to the root of the bundle directory"),
        (("detach", "d"), "bool", False, "detach from the container's process"),
        (("pid-file",), "str", "", "specify the file to write the process id to"),
        (("no-subreaper",), "bool", False, "disable the use of the subreaper used to reap reparented processes"),
        (("no-pivot",), "bool", False, "do not use pivot root to jail process inside rootfs (not supported: "
                                       "criu makes the mount namespace; refused)"),
        *(CRIU_FLAGS[name] for name in ("empty-ns", "auto-dedup")),
        (("lazy-pages",), "bool", False, "use userfaultfd to lazily restore memory pages (not supported: refused)"),
        (("lsm-profile",), "str", "", "Specify an LSM profile to be used during restore in the form of TYPE:NAME."),
        (("lsm-mount-context",), "str", "", "Specify an LSM mount context to be used during restore."),
    ]),
    "events": ("display container events such as OOM notifications, cpu, memory, and IO usage statistics",
               "<container-id>", [
                   (("interval",), "str", "5s", "set the stats collection interval (default: 5s)"),
                   (("stats",), "bool", False, "display the container's stats then exit"),
               ]),
}


_NO_STATE = ("spec", "features")  # the commands that never read or make the state root


def parse_flags(argv: list[str], table) -> tuple[dict, list[str]]:
    by_name = {}
    opts = {}
    for names, kind, default, _ in table:
        for n in names:
            by_name[n] = (names[0], kind)
        opts[names[0].replace("-", "_")] = list(default) if kind == "list" else default
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        name, eq, value = a.lstrip("-").partition("=")
        if name not in by_name:
            raise UsageError(f"flag provided but not defined: -{name}")
        key, kind = by_name[name]
        key = key.replace("-", "_")
        if kind == "bool":
            if eq and value not in ("true", "false", "1", "0"):
                raise UsageError(f"invalid boolean value {value!r} for -{name}")
            opts[key] = (value in ("true", "1")) if eq else True
        else:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[i]
            if kind == "int":
                try:
                    value = int(value)
                except ValueError:
                    raise UsageError(f"invalid value {value!r} for flag -{name}: parse error") from None
            if kind == "list":
                opts[key].append(value)
            else:
                opts[key] = value
        i += 1
    return opts, argv[i:]


def usage(cmd: str | None = None) -> str:
    if cmd is None:
        lines = ["NAME:", "   pyrun - Open Container Initiative runtime", "", "USAGE:",
                 "   pyrun [global options] command [command options] [arguments...]", "", "COMMANDS:"]
        lines += [f"   {c:<12}{d[0]}" for c, d in COMMANDS.items()]
        lines += ["", "GLOBAL OPTIONS:"] + _flag_lines(GLOBAL_FLAGS)
    else:
        desc, args, flags = COMMANDS[cmd]
        lines = ["NAME:", f"   pyrun {cmd} - {desc}", "", "USAGE:", f"   pyrun {cmd} [command options] {args}",
                 "", "OPTIONS:"] + _flag_lines(flags)
    return "\n".join(lines) + "\n"


def _flag_lines(flags) -> list[str]:
    out = []
    for names, kind, default, text in flags:
        spec = ", ".join(("--" if len(n) > 1 else "-") + n for n in names)
        if kind != "bool":
            spec += " value"
        out.append(f"   {spec:<28}{text}")
    return out


def main(argv: list[str]) -> int:
    try:
        g, rest = parse_flags(argv, GLOBAL_FLAGS)
    except UsageError as e:
        sys.stderr.write(f"{e}\n")
        return 1
    if g["log"] or g["debug"] or g["log_format"] != "text":
        from . import log  # otherwise imported only to say an error: its defaults are these
        log.path, log.fmt, log.debug_on = g["log"] or None, g["log_format"], g["debug"]
        if log.path:
            log.open_log()  # runc makes the file at start, whatever is written to it later
    if g["version"]:
        sys.stdout.write(f"pyrun version {VERSION}\nspec: {SPEC_VERSION}\n")
        return 0
    if g["help"] or not rest or rest[0] == "help":
        sys.stdout.write(usage(rest[1] if len(rest) > 1 and rest[1] in COMMANDS else None))
        return 0
    cmd, args = rest[0], rest[1:]
    if cmd not in COMMANDS:
        from . import log
        log.error(f"No help topic for '{cmd}'")
        return 1
    try:
        if "--help" in args[:1] or "-h" in args[:1]:
            sys.stdout.write(usage(cmd))
            return 0
        opts, pos = parse_flags(args, COMMANDS[cmd][2])
        if g["debug"]:
            from . import log
            log.debug(f"{cmd} {' '.join(args)}")
        if g["rootless"] == "auto" and (g["root"] or cmd in _NO_STATE):
            g["rootless"] = None  # the default, as rootless.parse_flag reads it, without its import
        else:
            from . import rootless
            g["rootless"] = rootless.parse_flag(g["rootless"])
            if cmd not in _NO_STATE:
                g["root"] = rootless.state_root(g["root"])
        from . import commands
        return getattr(commands, cmd.replace("-", "_"))(g, opts, pos) or 0
    except PyrunError as e:
        from . import log
        log.error(str(e) if not isinstance(e, UsageError) else f"{cmd}: {e}")
        # runc's exec says 255 when it could not start the process (the process's own
        # statuses are 0-255 as well, but a caller tells them apart by the error line)
        return 255 if cmd == "exec" and not isinstance(e, UsageError) else 1
    except KeyboardInterrupt:
        return 130
    except OSError as e:  # a failure nobody anticipated still gets one line
        from . import log
        from .errors import describe_oserror
        log.error(describe_oserror(e, cmd))
        if g["debug"]:
            raise
        return 1
