"""`pyrun features`: generated from the same tables the config code uses."""


def features() -> dict:
    from .cli import SPEC_VERSION, VERSION
    from .hooks import KINDS
    from .namespaces import NS_FLAGS
    from .process import CAPABILITIES
    from .rootfs import EXTRA_OPTIONS, MOUNT_FLAGS, PROPAGATION_FLAGS
    from . import cgroups
    mount_options = sorted(set(MOUNT_FLAGS) | set(PROPAGATION_FLAGS) | set(EXTRA_OPTIONS))
    linux = {
        "namespaces": sorted(NS_FLAGS),
        "capabilities": sorted(CAPABILITIES, key=CAPABILITIES.get),
        "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                   "rdma": False},
        "apparmor": {"enabled": False},
        "selinux": {"enabled": False},
        "intelRdt": {"enabled": False},
        "mountExtensions": {"idmap": {"enabled": False}},
    }
    try:
        from . import seccomp
        linux["seccomp"] = seccomp.features()
    except (ImportError, AttributeError):
        linux["seccomp"] = {"enabled": False}
    del cgroups
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(KINDS),
        "mountOptions": mount_options,
        "linux": linux,
        "annotations": {"io.github.pyrun.version": VERSION},
    }
