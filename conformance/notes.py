"""Why a case fails on a runtime: the named bug (or gap) behind each failure seen on this host, for
docs/conformance.md. NOTES[case][runtime] is shown only while that runtime fails the case;
NOTES[case]["spec"] says what the spec asks, shown whenever someone fails it. A case that no
runtime passes and has no note is a suspect case: compare.py says so."""

RUNC_POSTSTART = ("runc 1.1.5 runs the poststart hooks at the end of `create`, before the exec FIFO "
                  "is opened: the container's pid is still `runc init`, the state says `created`, and a "
                  "failing poststart hook fails create.")
CRUN_HOOK_STATE = ("crun 1.8.1 gives hooks a wrong state: status `created` during create (the "
                   "container is `creating` then), pid 0 to the container-namespace hooks, bundle `/` and "
                   "status `starting` to startContainer.")
CREATE_LEAK = ("crun 1.8.1 refuses the field, rightly (this host cannot carry it), but leaves the "
               "cgroup it made: a failed create must leave nothing.")


def newer(spec: str) -> str:
    return f"A field newer than this runtime's spec ({spec}): it is ignored silently."


NOTES = {
    "delete.created-errors-no-effect": {
        "spec": "runtime.md: delete of a container that is not `stopped` MUST error and have no effect.",
        "runc": "runc's CLI deletes a created container (it kills the waiting init), by design.",
        "crun": "crun 1.8.1 does as runc.", "pyrun": "pyrun does as runc."},
    "hooks.startContainer-fails-errors": {
        "spec": "runtime.md lifecycle step 7: a failing startContainer hook MUST be an error.",
        "runc": ("runc returns from `start` once the exec FIFO is opened; the startContainer hooks run "
                 "in the container's init after that, so a failure stops the container "
                 "(hooks.startContainer-fails-stops) but is not start's error."),
        "crun": "crun 1.8.1: as runc."},
    "hooks.create-failure-runs-poststop": {
        "crun": "crun 1.8.1 destroys the container without running the poststop hooks."},
    "devices.existing-mismatch-errors": {
        "spec": "config-linux.md: a file at a device's path that is not that device MUST be an error.",
        "runc": "runc 1.1.5 takes mknod's EEXIST as success and leaves the file.",
        "crun": "crun 1.8.1: as runc."},
    "hooks.poststart-after-process": {"runc": RUNC_POSTSTART},
    "hooks.state-on-stdin-poststart": {"runc": RUNC_POSTSTART},
    "hooks.poststart-fails-others-run": {"runc": RUNC_POSTSTART},
    "hooks.lifecycle-order": {
        "runc": RUNC_POSTSTART,
        "crun": ("crun 1.8.1 runs poststart before the startContainer hooks have run in the container, "
                 "and is at times killed by SIGPIPE (status -13) writing the state to a hook that did "
                 "not read it.")},
    "hooks.poststop-fails-others-run": {
        "runc": "runc 1.1.5 stops at the first failing poststop hook.",
        "crun": ("crun 1.8.1 is at times killed by SIGPIPE writing the state to a hook that exits without "
                 "reading it; the hooks after it never run.")},
    "hooks.state-on-stdin-prestart": {"crun": CRUN_HOOK_STATE},
    "hooks.state-on-stdin-createRuntime": {"crun": CRUN_HOOK_STATE},
    "hooks.state-on-stdin-createContainer": {"crun": CRUN_HOOK_STATE},
    "hooks.state-on-stdin-startContainer": {"crun": CRUN_HOOK_STATE},
    "mounts.option-idmap-without-mappings-errors": {
        "runc": "runc 1.1.5 predates idmapped mounts: it passes `idmap` to mount(2) as data, which a bind ignores."},
    "mounts.option-nosymfollow": {"crun": "crun 1.8.1 passes `nosymfollow` to mount(2) as data: EINVAL."},
    "mounts.option-rshared": {"crun": "crun 1.8.1 ignores propagation options on a bind mount."},
    "mounts.option-runbindable": {"crun": "crun 1.8.1 ignores propagation options on a bind mount."},
    "rootfs-propagation.shared": {
        "runc": "runc 1.1.5 makes the root shared before pivot_root; after it the container's / is private."},
    "rootfs-propagation.unbindable": {
        "runc": "runc 1.1.5 makes / unbindable and then cannot bind the rootfs onto itself (EINVAL)."},
    "rootfs-propagation.invalid-errors": {"crun": "crun 1.8.1 accepts an unknown rootfsPropagation value."},
    "namespaces.duplicate-type-errors": {
        "crun": "crun 1.8.1 accepts two entries of one namespace type."},
    "namespaces.time-new": {"runc": "runc 1.1.5 does not know the time namespace; it refuses it.",
                            "crun": "crun 1.8.1 fails to make a time namespace (`write to sync socket`)."},
    "namespaces.time-path": {"runc": "As namespaces.time-new.", "crun": "As namespaces.time-new."},
    "time-offsets": {"runc": "As namespaces.time-new.", "crun": "As namespaces.time-new."},
    "domainname": {"runc": newer("runc 1.1.5: spec 1.0.2-dev")},
    "personality": {"runc": newer("runc 1.1.5: spec 1.0.2-dev")},
    "process.scheduler": {"runc": newer("runc 1.1.5: spec 1.0.2-dev"), "crun": newer("crun 1.8.1: spec 1.0.0")},
    "process.ioPriority": {"runc": newer("runc 1.1.5: spec 1.0.2-dev"), "crun": newer("crun 1.8.1: spec 1.0.0")},
    "process.cwd-relative-errors": {
        "crun": "crun 1.8.1 accepts a relative process.cwd."},
    "seccomp.errnoRet-unsupported-action-errors": {
        "runc": "runc 1.1.5 accepts errnoRet on an action that takes none (SCMP_ACT_KILL)."},
    "extensibility.unknown-property-ignored": {
        "spec": "config.md#Extensibility: runtimes MUST NOT error on an unknown property, they MUST ignore it.",
        "pyrun": "pyrun refuses every unknown field (its enforce-or-refuse rule), which the spec forbids."},
    "extensibility.unknown-nested-property-ignored": {
        "pyrun": "As extensibility.unknown-property-ignored."},
    "cgroups.blockIO-weight": {
        "crun": "crun 1.8.1 writes blkio.weight only; this host's blkio (BFQ) has blkio.bfq.weight."},
    "cgroups.hugepageLimits": {"crun": CREATE_LEAK},
    "cgroups.network-classID": {"crun": CREATE_LEAK},
    "cgroups.unified": {"crun": CREATE_LEAK},
}

# The newer Linux fields and runc's newer flags (cases/linux_newer.py): what runc 1.1.5 and
# crun 1.8.1 predate, and pyrun's gaps.
RUNC_OLD = "runc 1.1.5: spec 1.0.2-dev"
CRUN_OLD = "crun 1.8.1: spec 1.0.0"
CRUN_NO_RIDMAP = ("crun 1.8.1 predates `ridmap`: it idmaps the bind alone, without its submount "
                  "(/data/sub is the empty directory under it).")


def flag_newer(runtime: str, flag: str, since: str) -> str:
    return f"{runtime} predates `{flag}` ({since}): its flag parser refuses it."


NOTES.update({
    "mounts.idmap-mappings": {"runc": newer(RUNC_OLD) + " (idmapped mounts: runc 1.2)"},
    "mounts.idmap-mappings-write": {"runc": newer(RUNC_OLD) + " (idmapped mounts: runc 1.2)"},
    "mounts.option-idmap": {"runc": "runc 1.1.5 predates idmapped mounts: `idmap` goes to mount(2) as data, "
                                    "which a bind ignores."},
    "mounts.option-ridmap": {"runc": "As mounts.option-idmap (`ridmap`).", "crun": CRUN_NO_RIDMAP},
    "net-devices.moved-renamed": {"runc": newer(RUNC_OLD) + " (netDevices: runc 1.3)", "crun": newer(CRUN_OLD)},
    "net-devices.host-name-kept": {"runc": newer(RUNC_OLD), "crun": newer(CRUN_OLD)},
    "net-devices.up": {
        "spec": "config-linux.md#Network Devices: the runtime MUST set the device up once it is in the "
                "container's network namespace.",
        "runc": newer(RUNC_OLD), "crun": newer(CRUN_OLD)},
    "net-devices.addresses-kept": {
        "spec": "config-linux.md#Network Devices: the runtime MUST preserve the device's permanent "
                "global addresses across the move.",
        "runc": newer(RUNC_OLD), "crun": newer(CRUN_OLD)},
    "net-devices.existing-name-errors": {
        "spec": "config-linux.md#Network Devices: a name that already exists in the container's "
                "namespace MUST be an error (the runtime MUST check the move is possible).",
        "runc": newer(RUNC_OLD), "crun": newer(CRUN_OLD)},
    "net-devices.after-delete": {"runc": newer(RUNC_OLD), "crun": newer(CRUN_OLD)},
    "memory-policy.unknown-mode-errors": {"runc": newer(RUNC_OLD), "crun": newer(CRUN_OLD)},
    "memory-policy.missing-node-errors": {"runc": newer(RUNC_OLD), "crun": newer(CRUN_OLD)},
    "personality.linux32-proc": {"runc": newer(RUNC_OLD) + " (personality: runc 1.2)"},
    "personality.linux": {"runc": newer(RUNC_OLD) + " (personality: runc 1.2)"},
    "personality.unknown-domain-errors": {"runc": newer(RUNC_OLD)},
    "time-offsets.monotonic": {"runc": "As namespaces.time-new.", "crun": "As namespaces.time-new."},
    "time-offsets.exec": {"runc": "As namespaces.time-new.", "crun": "As namespaces.time-new."},
    "intel-rdt.without-resctrl-errors": {
        "crun": "crun 1.8.1 ignores linux.intelRdt where no resctrl is mounted; the spec says MUST error."},
    "mount-label.without-selinux-errors": {
        "crun": "crun 1.8.1 ignores linux.mountLabel on a host without SELinux: the mounts go unlabelled."},
    "delete.bundle-moved": {
        "crun": ("crun 1.8.1 deletes the container but runs no poststop hook once the bundle has moved "
                 "(it reads them, it seems, from the bundle's config.json at delete).")},
    "pidfd-socket.create": {"runc": flag_newer("runc 1.1.5", "--pidfd-socket", "runc 1.2"),
                            "crun": "crun 1.8.1 has no `--pidfd-socket` flag: create refuses it (exit 64)."},
})
for _mode in ("interleave", "bind", "preferred", "static-nodes", "local"):
    NOTES[f"memory-policy.{_mode}"] = {"runc": newer(RUNC_OLD),
                                       "crun": newer(CRUN_OLD)}

# Causes recognised by what was seen, for any case: (runtime, text in the reason) → why.
BY_REASON = {
    ("crun", "exit -13"): ("crun 1.8.1 was killed by SIGPIPE: it writes the state to a hook's stdin and "
                           "dies when the hook exits without reading it (runc and pyrun do not)."),
    ("crun", "writing to pipe: Broken pipe"): ("crun 1.8.1 fails the operation when a hook exits before it has "
                                                "read the state crun writes to its stdin (EPIPE; at other times "
                                                "SIGPIPE kills crun): runc and pyrun do not."),
}


def why(case: str, runtime: str, reason: str) -> str:
    """The named cause of a runtime failing a case, or ''."""
    for (rt, text), note in BY_REASON.items():
        if rt == runtime and text in reason:
            return note
    return NOTES.get(case, {}).get(runtime, "")
