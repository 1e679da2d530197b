"""What config.json may ask for: every field of the spec is either handled or refused,
before anything is made.

The tables below list, section by section, the keys the runtime acts on. A field
the spec defines that the runtime cannot honour here (REFUSED, and the checks
below) is refused with one line naming it. A property the spec does not define
is ignored, as the spec's Extensibility section requires ("MUST NOT generate an
error ... MUST ignore unknown properties"); `--debug` names each one.
`features` is generated from these same tables.
"""
import os

from .errors import ConfigError
from .process import PERSONALITY_DOMAINS, check_memory_policy, lsm_enabled

TOP = {"ociVersion", "root", "mounts", "process", "hostname", "domainname", "hooks", "annotations",
       "linux"}
OTHER_PLATFORMS = ("solaris", "windows", "vm", "zos")
ROOT = {"path", "readonly"}
MOUNT = {"destination", "source", "options", "type", "uidMappings", "gidMappings"}
PROCESS = {"terminal", "consoleSize", "cwd", "env", "args", "rlimits", "apparmorProfile",
           "capabilities", "noNewPrivileges", "oomScoreAdj", "scheduler", "selinuxLabel",
           "ioPriority", "execCPUAffinity", "user"}
USER = {"uid", "gid", "umask", "additionalGids"}
LINUX = {"namespaces", "uidMappings", "gidMappings", "timeOffsets", "devices", "cgroupsPath",
         "rootfsPropagation", "resources", "seccomp", "sysctl", "maskedPaths", "readonlyPaths",
         "personality", "mountLabel", "intelRdt", "memoryPolicy", "netDevices"}
# Known to the spec, not done by this runtime (yet): refused, never ignored.
REFUSED = {
    "process.commandLine": "it is for Windows containers",
    "process.user.username": "it is for Windows containers",
}

# Sysctls the kernel keeps per IPC namespace (runc's list), plus fs.mqueue.*.
IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}


def check(config: dict, new_ns: int, joins: dict) -> None:
    """Refuse, with one line, anything config.json asks that would not take effect.

    `new_ns` are the clone flags of the namespaces the container makes, `joins` the
    {type: path} of those it joins."""
    _known(config, TOP, "", allow=OTHER_PLATFORMS)
    _check_lengths(config)
    for platform in OTHER_PLATFORMS:
        if config.get(platform):
            raise ConfigError(f"config.json: {platform} is for another platform, not Linux")
    _known(config.get("root") or {}, ROOT, "root.")
    for i, m in enumerate(config.get("mounts") or ()):
        _known(m, MOUNT, f"mounts[{i}].")
    proc = config.get("process")
    if proc is not None:
        check_process(proc)
    linux = config.get("linux") or {}
    _known(linux, LINUX, "linux.")
    _check_personality(linux.get("personality"))
    check_memory_policy(linux.get("memoryPolicy"))
    _check_lsm_fields(linux)
    check_sysctls(linux.get("sysctl") or {}, new_ns, joins)
    if linux.get("netDevices"):
        from . import _shim as k, netdev
        netdev.check(linux["netDevices"], bool(new_ns & k.CLONE_NEWNET) or (
            "network" in joins and not _is_host_netns(joins["network"])))
    from . import _shim as k
    for field in ("hostname", "domainname"):
        if config.get(field) and not (new_ns & k.CLONE_NEWUTS or "uts" in joins):
            raise ConfigError(f"config.json: {field} needs a UTS namespace of the container's own: "
                              "it would rename the host")


def check_strings(doc, where: str = "") -> None:
    """No string of config.json may hold a NUL byte (the kernel reads every path, argument
    and name only up to it, so the config would mean something else than it says) or a
    lone surrogate (it has no UTF-8 form at all)."""
    if isinstance(doc, str):
        if "\0" in doc:
            raise ConfigError(f"config.json: {where or 'a string'} contains a NUL byte")
        try:
            doc.encode()
        except UnicodeEncodeError:
            raise ConfigError(f"config.json: {where or 'a string'} is not valid Unicode (a lone surrogate)") from None
    elif isinstance(doc, dict):
        for key, value in doc.items():
            check_strings(key, where + ".<key>")
            check_strings(value, f"{where}.{key}" if where else key)
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            check_strings(value, f"{where}[{i}]")


def needs_string_check(data: bytes) -> bool:
    """JSON spells a NUL or a surrogate only as a \\u escape: walk a document only if it has one."""
    low = data.lower()
    return b"\\u0000" in low or any(b"\\ud" + bytes([c]) in low for c in b"89abcdef")


PATH_MAX = 4096
HOST_NAME_MAX = 64
MAX_ARG_STRLEN = 32 * 4096  # the kernel's limit on one argument or environment string


def _check_lengths(config: dict) -> None:
    """What the kernel cannot take, refused here by name rather than failing half way."""
    proc = config.get("process") or {}
    linux = config.get("linux") or {}
    paths = [("root.path", (config.get("root") or {}).get("path")), ("process.cwd", proc.get("cwd"))]
    paths += [(f"mounts[{i}].destination", m.get("destination")) for i, m in enumerate(config.get("mounts") or ())]
    paths += [(f"mounts[{i}].source", m.get("source")) for i, m in enumerate(config.get("mounts") or ())]
    for key in ("maskedPaths", "readonlyPaths"):
        paths += [(f"linux.{key}[{i}]", p) for i, p in enumerate(linux.get(key) or ())]
    paths += [(f"linux.devices[{i}].path", d.get("path")) for i, d in enumerate(linux.get("devices") or ())]
    for field, value in paths:
        if isinstance(value, str) and len(value.encode()) >= PATH_MAX:
            raise ConfigError(f"config.json: {field} is too long: the kernel takes paths of less than {PATH_MAX} bytes")
    for key in ("args", "env"):
        for i, value in enumerate(proc.get(key) or ()):
            if isinstance(value, str) and len(value.encode()) >= MAX_ARG_STRLEN:
                raise ConfigError(f"config.json: process.{key}[{i}] is too long: execve takes strings "
                                  f"of less than {MAX_ARG_STRLEN} bytes")
    for field in ("hostname", "domainname"):
        value = config.get(field)
        if isinstance(value, str) and len(value.encode()) > HOST_NAME_MAX:
            raise ConfigError(f"config.json: {field} is too long: the kernel takes at most {HOST_NAME_MAX} bytes")


def check_process(proc: dict, what: str = "process.") -> None:
    _known(proc, PROCESS, what)
    _known(proc.get("user") or {}, USER, what + "user.")


def _known(section: dict, keys: set, prefix: str, allow=()) -> None:
    for key in section:
        name = prefix + key
        if name in REFUSED:
            raise ConfigError(f"config.json: {name} is not supported: {REFUSED[name]}")
        if key not in keys and key not in allow:
            from . import log
            log.debug(f"config.json: {name} is not a property of the runtime-spec: ignored")


def _check_personality(p) -> None:
    if not p:
        return
    if p.get("domain") not in PERSONALITY_DOMAINS:
        raise ConfigError(f"config.json: linux.personality.domain {p.get('domain')!r} is not supported")
    if p.get("flags"):
        raise ConfigError("config.json: linux.personality.flags are not supported (the spec defines none)")


def _check_lsm_fields(linux: dict) -> None:
    if linux.get("mountLabel") and not lsm_enabled("selinux"):
        raise ConfigError(f"config.json: linux.mountLabel {linux['mountLabel']!r} requested but SELinux is not enabled on this host")
    if linux.get("mountLabel"):
        raise ConfigError("config.json: linux.mountLabel is not supported")
    if linux.get("intelRdt"):
        if not os.path.isdir("/sys/fs/resctrl/info"):
            raise ConfigError("config.json: linux.intelRdt requested but resctrl is not mounted on this host")
        raise ConfigError("config.json: linux.intelRdt is not supported")


def check_sysctls(sysctl: dict, new_ns: int, joins: dict) -> None:
    """runc's rules: only sysctls of a namespace the container does not share with the host."""
    from . import _shim as k
    own_ipc = bool(new_ns & k.CLONE_NEWIPC) or "ipc" in joins
    own_uts = bool(new_ns & k.CLONE_NEWUTS) or "uts" in joins
    own_net = bool(new_ns & k.CLONE_NEWNET) or ("network" in joins and not _is_host_netns(joins["network"]))
    for key in sysctl:
        if "/" in key or any(not part for part in key.split(".")):
            raise ConfigError(f"sysctl {key!r}: not a sysctl name")
        if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if own_ipc:
                continue
            raise ConfigError(f"sysctl {key!r} is not allowed in the host's IPC namespace")
        if key.startswith("net."):
            if own_net:
                continue
            raise ConfigError(f"sysctl {key!r} is not allowed in the host's network namespace")
        if own_uts and key == "kernel.domainname":
            continue
        if own_uts and key == "kernel.hostname":
            raise ConfigError(f"sysctl {key!r} is not allowed: it conflicts with the config's hostname field")
        raise ConfigError(f"sysctl {key!r} is not in a separate kernel namespace: it would change the host")


def _is_host_netns(path: str) -> bool:
    try:
        theirs, ours = os.stat(path), os.stat("/proc/self/ns/net")
    except OSError:
        return False  # create reports the missing path itself
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
