"""The runtime bundle format: config.json and the container state document."""


import os

from specs import SpecError

__all__ = ["default_config", "load_config", "validate_config", "validate_state", "schema_enums"]

SPEC_CONFIG_VERSION = "1.0.2-dev"  # what `runc spec` (runc 1.1.x) writes; peers compare this

_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

_MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
]
_READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def _mounts(rootless: bool) -> list[dict]:
    devpts_options = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    if not rootless:
        # gid=5 (tty) exists only when the host's group 5 is mapped in.
        devpts_options.append("gid=5")
    if rootless:
        # A user namespace without its own network namespace may not mount
        # sysfs, so runc bind-mounts the host's instead.
        sys_mount = {"destination": "/sys", "type": "none", "source": "/sys",
                     "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
    else:
        sys_mount = {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                     "options": ["nosuid", "noexec", "nodev", "ro"]}
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": devpts_options},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        sys_mount,
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]


def _linux(rootless: bool) -> dict:
    if rootless:
        # Map the caller's own ids to root; no network namespace (an
        # unprivileged user could not configure it) and no device cgroup
        # rules (an unprivileged user cannot apply them).
        return {
            "uidMappings": [{"containerID": 0, "hostID": os.geteuid(), "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": os.getegid(), "size": 1}],
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "user")],
            "maskedPaths": list(_MASKED_PATHS),
            "readonlyPaths": list(_READONLY_PATHS),
        }
    return {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        "maskedPaths": list(_MASKED_PATHS),
        "readonlyPaths": list(_READONLY_PATHS),
    }


def default_config(rootless: bool = False) -> dict:
    """The config.json that `runc spec` (or `runc spec --rootless`) writes.

    A fresh dict every call, so callers may edit it in place.
    """
    return {
        "ociVersion": SPEC_CONFIG_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(_CAPS)
                             for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": _mounts(rootless),
        "linux": _linux(rootless),
    }


def validate_config(obj, doc: str = "config.json") -> None:
    """Raise SpecError naming the first place where obj breaks our config schema."""
    from specs._validator import validate

    validate(doc, "runtime-config.json", obj)


def validate_state(obj, doc: str = "state") -> None:
    """Raise SpecError naming the first place where obj breaks the state schema."""
    from specs._validator import validate

    validate(doc, "runtime-state.json", obj)


def load_config(path: str) -> dict:
    """Read, parse and validate a bundle's config.json; SpecError on any fault."""
    from specs.fastjson import JSONError, loads

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SpecError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: invalid JSON: not UTF-8 (byte {e.start})") from None
    try:
        obj = loads(text)
    except JSONError as e:
        raise SpecError(f"{path}: invalid JSON: {e}") from None
    validate_config(obj, path)
    return obj


# JSON pointers into runtime-config.json of the enumerations a runtime reports
# in `features` (runc's features.go derives them from its parser's tables; we
# derive them from the schema the validator enforces, so they cannot drift).
_ENUMS = {
    "namespaces": "#/definitions/namespace/properties/type",
    "seccompActions": "#/definitions/seccompAction",
    "seccompOperators": "#/definitions/seccomp/properties/syscalls/items/properties/args/items/properties/op",
    "seccompArchs": "#/definitions/seccomp/properties/architectures/items",
    "seccompFlags": "#/definitions/seccomp/properties/flags/items",
    "hooks": "#/properties/hooks/properties",
    "rootfsPropagation": "#/definitions/linux/properties/rootfsPropagation",
    "schedulerPolicies": "#/definitions/process/properties/scheduler/properties/policy",
    "ioPriorityClasses": "#/definitions/process/properties/ioPriority/properties/class",
    "memoryPolicyModes": "#/definitions/linux/properties/memoryPolicy/properties/mode",
}


def schema_enums() -> dict[str, list[str]]:
    """The values our config schema accepts for each enumerated field, by kind."""
    from specs._validator import _resolve

    out = {}
    for kind, pointer in _ENUMS.items():
        node, _ = _resolve(pointer, "runtime-config.json")
        out[kind] = list(node["enum"]) if "enum" in node else list(node)
    return out
