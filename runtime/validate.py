"""What config.json may ask for: every key is either handled or refused, before anything is made.

The tables below list, section by section, the keys the runtime acts on. A key
that is not listed is refused: a field we do not know may restrict the
container, and dropping it would leave a hole no one sees. A listed key the
runtime cannot honour here (REFUSED) is refused with one line naming it.
`features` is generated from these same tables.
"""
import os

from .errors import ConfigError
from .process import PERSONALITY_DOMAINS, lsm_enabled

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
    "linux.netDevices": "moving network devices into the container is not supported",
    "linux.memoryPolicy": "memory policies are not supported",
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
    _check_lsm_fields(linux)
    check_sysctls(linux.get("sysctl") or {}, new_ns, joins)
    from . import _shim as k
    for field in ("hostname", "domainname"):
        if config.get(field) and not (new_ns & k.CLONE_NEWUTS or "uts" in joins):
            raise ConfigError(f"config.json: {field} needs a UTS namespace of the container's own: "
                              "it would rename the host")


def refuse_nul(doc, where: str = "") -> None:
    """No string of config.json may hold a NUL byte: the kernel reads every path, argument
    and name only up to it, so the config would mean something else than it says."""
    if isinstance(doc, str):
        if "\0" in doc:
            raise ConfigError(f"config.json: {where or 'a string'} contains a NUL byte")
    elif isinstance(doc, dict):
        for key, value in doc.items():
            refuse_nul(key, where + ".<key>")
            refuse_nul(value, f"{where}.{key}" if where else key)
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            refuse_nul(value, f"{where}[{i}]")


def check_process(proc: dict, what: str = "process.") -> None:
    _known(proc, PROCESS, what)
    _known(proc.get("user") or {}, USER, what + "user.")


def _known(section: dict, keys: set, prefix: str, allow=()) -> None:
    for key in section:
        name = prefix + key
        if name in REFUSED:
            raise ConfigError(f"config.json: {name} is not supported: {REFUSED[name]}")
        if key not in keys and key not in allow:
            raise ConfigError(f"config.json: unknown field {name}: refused, since it may restrict the container")


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
