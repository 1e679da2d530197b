"""Bundles: a busybox-static rootfs and a config.json the suite writes itself.

The base config is the one `runc spec` writes (the config every runtime with runc's CLI is
used with), with a writable root and no terminal, so that a case only states what it changes.
"""
import copy
import json
import os
import shutil

BUSYBOX = "/bin/busybox"
OCI_VERSION = "1.0.2"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The applets the cases call; each is a symlink to the one busybox.
APPLETS = (
    "sh", "cat", "echo", "ls", "id", "hostname", "dnsdomainname", "sleep", "mkdir", "touch",
    "stat", "readlink", "test", "[", "printf", "wc", "head", "tail", "grep", "tr", "env", "pwd",
    "mount", "kill", "uname", "chmod", "chown", "stty", "tty", "cp", "dd", "true", "false", "ps",
    "sed", "cut", "awk", "mknod", "ln", "rm", "nproc", "taskset", "ionice", "sysctl", "uptime",
    "date", "sync", "mkfifo", "seq", "sort", "xargs", "find", "rmdir", "setpriv", "mv",
)
DIRS = ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "home", "run", "var", "cf")
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

_BASE = {
    "ociVersion": OCI_VERSION,
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["true"],
        "env": [PATH_ENV, "TERM=xterm"],
        "cwd": "/",
        "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": False},
    "hostname": "cf",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    },
}


def base_config() -> dict:
    """A fresh copy of the base config, for a case to edit in place."""
    return copy.deepcopy(_BASE)


def make_rootfs(path: str, busybox: str) -> None:
    """A busybox tree at path; busybox is the run's own copy, hard-linked when it can be."""
    for d in DIRS:
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    target = os.path.join(path, "bin", "busybox")
    try:
        os.link(busybox, target)
    except OSError:
        shutil.copy2(busybox, target)
    for applet in APPLETS:
        os.symlink("busybox", os.path.join(path, "bin", applet))
    write(os.path.join(path, "etc", "passwd"),
          "root:x:0:0:root:/root:/bin/sh\ncf:x:1000:1000:cf:/home:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/home:/bin/false\n")
    write(os.path.join(path, "etc", "group"), "root:x:0:\ntty:x:5:\ncf:x:1000:\nnogroup:x:65534:\n")


def write(path: str, text: str, mode: int | None = None) -> None:
    with open(path, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)


def write_config(bundle: str, config: dict) -> None:
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=1)


def mount(destination: str, source: str, options=("rbind",), type_: str = "bind") -> dict:
    """A mounts entry (a bind by default)."""
    return {"destination": destination, "type": type_, "source": source, "options": list(options)}


def drop_mount(config: dict, destination: str) -> None:
    config["mounts"] = [m for m in config["mounts"] if m["destination"] != destination]


def set_namespaces(config: dict, *kinds: str, **paths: str) -> None:
    """linux.namespaces = kinds (new ones) plus kind=path entries (joined ones)."""
    entries = [{"type": k} for k in kinds]
    entries += [{"type": k, "path": p} for k, p in paths.items()]
    config["linux"]["namespaces"] = entries


def add_namespace(config: dict, kind: str, path: str | None = None) -> None:
    nss = [n for n in config["linux"]["namespaces"] if n["type"] != kind]
    nss.append({"type": kind, **({"path": path} if path else {})})
    config["linux"]["namespaces"] = nss


def remove_namespace(config: dict, kind: str) -> None:
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != kind]
