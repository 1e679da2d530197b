"""`pyrun features`: generated from the same tables the config code uses."""


def features() -> dict:
    from specs import SPEC_VERSION
    from . import VERSION
    from .hooks import KINDS
    from .namespaces import NS_FLAGS
    from .process import CAPABILITIES
    from .process import MEMORY_POLICY_FLAGS, MEMORY_POLICY_MODES, lsm_enabled
    from .rootfs import EXTRA_OPTIONS, MOUNT_ATTRS, MOUNT_FLAGS, PROPAGATION_FLAGS, RECURSIVE_ATTRS
    from . import cgroups, seccomp
    mount_options = sorted(set(MOUNT_FLAGS) | set(MOUNT_ATTRS) | set(RECURSIVE_ATTRS)
                           | set(PROPAGATION_FLAGS) | set(EXTRA_OPTIONS))
    linux = {
        "namespaces": sorted(NS_FLAGS),
        "capabilities": sorted(CAPABILITIES, key=CAPABILITIES.get),
        "cgroup": cgroups.features(),
        "apparmor": {"enabled": lsm_enabled("apparmor")},
        "selinux": {"enabled": lsm_enabled("selinux")},
        "intelRdt": {"enabled": False},
        "mountExtensions": {"idmap": {"enabled": "idmap" in EXTRA_OPTIONS}},
        "memoryPolicy": {"modes": sorted(MEMORY_POLICY_MODES, key=MEMORY_POLICY_MODES.get),
                         "flags": sorted(MEMORY_POLICY_FLAGS, key=MEMORY_POLICY_FLAGS.get)},
        "netDevices": {"enabled": True},  # runtime/netdev.py
    }
    linux["seccomp"] = seccomp.features()
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(KINDS),
        "mountOptions": mount_options,
        "linux": linux,
        "annotations": {"io.github.pyrun.version": VERSION},
    }
