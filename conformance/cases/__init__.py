"""Every case module; importing this package registers the cases, in this order."""
from conformance.cases import lifecycle, hooks, filesystem, process, namespaces, seccomp, cgroups, config, linux_newer

__all__ = ["lifecycle", "hooks", "filesystem", "process", "namespaces", "seccomp", "cgroups", "config",
           "linux_newer"]
