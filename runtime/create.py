"""`create`: validate everything, claim the ID, make the cgroup, spawn the init.

Nothing is touched before the config has been read and checked; after the ID is
claimed, any failure undoes what was made (init killed, cgroup and state dir
removed), so a failed create leaves nothing behind.
"""
import os

from . import state as st
from .errors import ConfigError, PyrunError, describe_oserror


def load_config(bundle: str) -> dict:
    from specs import fastjson
    path = os.path.join(bundle, "config.json")
    try:
        data = st.read_document(path, "config.json")
    except FileNotFoundError:
        raise ConfigError("JSON specification file config.json not found") from None
    except OSError as e:
        raise ConfigError(describe_oserror(e, "read config.json")) from None
    try:
        config = fastjson.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"config.json: {e}") from None
    from .validate import check_strings, needs_string_check
    if needs_string_check(data):
        check_strings(config)
    validate_config(config)
    return config


def validate_config(config) -> None:
    from specs import SpecError
    from specs.runtime import validate_config as validate
    try:
        validate(config)
    except SpecError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith("config.json") else f"config.json: {msg}") from None


class Plan:
    """What validation found: everything create needs, computed before anything is made."""

    __slots__ = ("config", "bundle", "rootfs", "mounts", "flags", "joins", "userns", "preserve_fds",
                 "id_maps", "rootless_cgroups", "own_mountns", "rootfs_fd", "caller_mounts")

    def __init__(self, **kw):
        for key, value in kw.items():
            setattr(self, key, value)


def create(cls, cid, bundle, root, *, pid_file, console_socket, no_pivot, no_new_keyring,
           preserve_fds, config, validated=False, listen_fds=0, rootless=None):
    """The process model's steps: validate → claim → cgroup → spawn → record."""
    plan = _validate(cid, bundle, config, validated, console_socket, preserve_fds, listen_fds, rootless)

    def spawn(cgroup, cdir, created):
        pid, pidfd = _spawn(cid, root, plan, cdir, cgroup, console_socket=console_socket,
                            no_pivot=no_pivot, no_new_keyring=no_new_keyring)
        return _record(cid, plan, cdir, cgroup, pid, created, pid_file), pidfd
    cdir, (record, pidfd) = build(cid, root, plan, spawn)
    c = cls(cid, root, cdir, record)
    c.pidfd = pidfd
    return c


def build(cid: str, root: str, plan: "Plan", make):
    """Claim the ID, make the cgroup, then make(cgroup, cdir, created): (cdir, what make
    returned). create and restore differ only in make. A failure anywhere after the claim
    undoes all of it (caller mounts, cgroup, state directory) and runs the poststop hooks,
    as delete would."""
    cgroup, cdir, lock, created = _claim(root, cid, plan)
    try:
        _make_cgroup(cgroup, plan.config["linux"].get("resources"), plan.rootless_cgroups)
        return cdir, make(cgroup, cdir, created)
    except BaseException:
        _undo(cdir, cgroup, plan.caller_mounts)
        _poststop(cid, plan)
        raise
    finally:
        os.close(lock)
        if plan.rootfs_fd >= 0:
            os.close(plan.rootfs_fd)


def _validate(cid, bundle, config, validated, console_socket, preserve_fds, listen_fds, rootless_flag) -> Plan:
    """Everything that can be refused, refused with one line before anything exists."""
    from . import cgroups, hooks, process, rootfs, rootless, validate
    from ._shim import CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER
    from .namespaces import clone_flags
    st.validate_id(cid)
    bundle = os.path.abspath(bundle)
    if not _is_dir(bundle, "bundle"):
        raise ConfigError(f"bundle {bundle} does not exist")
    if config is None:
        config = load_config(bundle)
    elif not validated:
        validate.check_strings(config)
        validate_config(config)
    linux = config.get("linux")
    if linux is None:
        raise ConfigError("config.json: linux section is required on Linux")
    root_path = (config.get("root") or {}).get("path") or ""
    try:
        rootfs_dir = os.path.realpath(os.path.join(bundle, root_path))
    except OSError as e:
        raise ConfigError(describe_oserror(e, f"root.path {root_path!r}")) from None
    if not root_path or not _is_dir(rootfs_dir, "rootfs"):
        raise ConfigError(f"rootfs ({rootfs_dir}) does not exist")
    proc = config.get("process")
    if proc is None:
        raise ConfigError("config.json: process is required to create a container")
    process.check(proc)
    hooks.check(config.get("hooks"))
    mounts = rootfs.parse_mounts(config)
    cgroups.check(linux)  # cgroupsPath and linux.resources, refused before anything is made
    flags, joins = clone_flags(linux.get("namespaces") or [])
    validate.check(config, flags, joins)
    own_mountns = bool(flags & CLONE_NEWNS) or "mount" in joins
    if not own_mountns:
        _check_without_mount_namespace(config)
    userns = bool(flags & CLONE_NEWUSER)
    if userns and not (linux.get("uidMappings") and linux.get("gidMappings")):
        raise ConfigError("a new user namespace needs linux.uidMappings and linux.gidMappings")
    if (linux.get("uidMappings") or linux.get("gidMappings")) and not userns and "user" not in joins:
        raise ConfigError("uid/gid mappings need a user namespace in linux.namespaces")
    for kind, path in joins.items():
        if not os.path.exists(path):
            raise ConfigError(f"{kind} namespace path {path} does not exist")
    id_maps = rootless.PRIVILEGED_MAPS
    if rootless.unprivileged():
        _check_unprivileged(config, mounts, flags, joins)
        if userns:
            id_maps = rootless.plan_id_maps(linux)
    if userns and flags & CLONE_NEWNET == 0:
        for m in mounts:
            if m.type == "sysfs":
                raise ConfigError(f"mount {m.destination}: sysfs cannot be mounted in a new user namespace "
                                  "without a network namespace of its own (add \"network\" to linux.namespaces, "
                                  "or bind /sys as `pyrun spec --rootless` does)")
    if id_maps.deny_setgroups and (proc.get("user") or {}).get("additionalGids"):
        raise ConfigError("process.user.additionalGids: an unprivileged user's gidMappings of its own gid "
                          "alone deny setgroups in the container (map a range from /etc/subgid instead)")
    for m in mounts:
        if m.idmap and not m.uid_mappings and not (userns or "user" in joins):
            raise ConfigError(f"mount {m.destination}: option {m.idmap} without uidMappings needs the "
                              "container's own user namespace, whose mappings it takes")
    if proc.get("terminal") and not console_socket:
        raise ConfigError("cannot allocate tty if pyrun will detach without setting console socket")
    if preserve_fds < 0:
        raise ConfigError("--preserve-fds must not be negative")
    if listen_fds:
        proc["env"] = list(proc.get("env") or ()) + [f"LISTEN_FDS={listen_fds}", "LISTEN_PID=1"]
        preserve_fds += listen_fds
    return Plan(config=config, bundle=bundle, rootfs=rootfs_dir, mounts=mounts, flags=flags,
                joins=joins, userns=userns, preserve_fds=preserve_fds, id_maps=id_maps,
                rootless_cgroups=rootless.rootless_cgroups(rootless_flag), own_mountns=own_mountns,
                rootfs_fd=-1, caller_mounts=None)


def _check_unprivileged(config: dict, mounts, flags: int, joins: dict) -> None:
    """What a user who is not root cannot have, refused by name as runc refuses it."""
    from ._shim import CLONE_NEWUSER
    linux = config["linux"]
    if not flags & CLONE_NEWUSER and "user" not in joins:
        raise ConfigError("config.json: an unprivileged user needs a user namespace (\"user\" in "
                          "linux.namespaces, with uidMappings and gidMappings: `pyrun spec --rootless` writes them)")
    if (linux.get("resources") or {}).get("devices"):
        raise ConfigError("linux.resources.devices: device rules cannot be applied rootless (the devices "
                          "cgroup and its eBPF program need CAP_SYS_ADMIN on the host)")
    for m in mounts:
        if m.idmap:
            raise ConfigError(f"mount {m.destination}: idmapped mounts need CAP_SYS_ADMIN on the host: "
                              "not available rootless")
        for opt in m.data.split(","):
            key, _, value = opt.partition("=")
            if key in ("uid", "gid") and value.isdigit() and flags & CLONE_NEWUSER:
                maps = linux.get("uidMappings" if key == "uid" else "gidMappings") or ()
                if not any(0 <= int(value) - mp["containerID"] < mp["size"] for mp in maps):
                    raise ConfigError(f"mount {m.destination}: option {opt}: {key} {value} is not mapped in "
                                      f"the container's user namespace (linux.{key}Mappings)")


def _is_dir(path: str, what: str) -> bool:
    """A caller who may not reach the directory (an unprivileged user) is told so, not
    that it is missing."""
    try:
        os.stat(os.path.join(path, ""))
    except PermissionError as e:
        raise ConfigError(describe_oserror(e, f"{what} {path}")) from None
    except OSError:
        return False
    return True


# What would change the image itself or the caller's own mounts without a mount namespace of
# the container's: refused by name. (runc 1.1 makes the devices in the image's /dev, where they
# stay, makes the caller's "/" rslave (or rootfsPropagation), and refuses masked and read-only paths.)
_NEEDS_MOUNT_NS = (("root.readonly", lambda c: (c.get("root") or {}).get("readonly")),
                   ("linux.maskedPaths", lambda c: c["linux"].get("maskedPaths")),
                   ("linux.readonlyPaths", lambda c: c["linux"].get("readonlyPaths")),
                   ("linux.devices", lambda c: c["linux"].get("devices")),
                   ("linux.rootfsPropagation", lambda c: c["linux"].get("rootfsPropagation")))


def _check_without_mount_namespace(config: dict) -> None:
    """A config without a mount namespace runs in the caller's (as with runc and crun), its
    process chrooted into root.path, its mounts made inside the rootfs and removed at delete."""
    for field, present in _NEEDS_MOUNT_NS:
        if present(config):
            raise ConfigError(f"config.json: {field} needs a mount namespace of the container's own "
                              "(linux.namespaces has no \"mount\")")
    if config.get("process", {}).get("terminal"):
        raise ConfigError("config.json: process.terminal needs a mount namespace of the container's own "
                          "(its /dev/console and /dev/pts)")


def _claim(root: str, cid: str, plan: Plan):
    """The ID, with a first record that already names every cgroup directory to be made:
    should this process die in cgroup set-up, `delete --force` finds them (and only those)."""
    from . import cgroups
    linux = plan.config["linux"]
    cgroup = cgroups.manager(cgroups.cgroup_path(linux.get("cgroupsPath"), cid, relative=plan.rootless_cgroups))
    if plan.rootless_cgroups and not linux.get("cgroupsPath"):
        cgroup = cgroups.skip_unwritable(cgroup, linux.get("resources"))
    created = st.now_rfc3339()
    if cgroup is not None:
        cgroup.plan()
    first = {"id": cid, "pid": 0, "bundle": plan.bundle, "created": created, "cgroup": cgroup and cgroup.record()}
    if not plan.own_mountns:
        _pin_rootfs(plan)
        if plan.caller_mounts is not None:
            first["caller_mounts"] = plan.caller_mounts
    try:
        cdir, lock = st.claim(root, cid, first)  # locked until the record is whole
    except BaseException:
        if plan.rootfs_fd >= 0:
            os.close(plan.rootfs_fd)
        raise
    return cgroup, cdir, lock, created


def _pin_rootfs(plan: Plan) -> None:
    """Without a mount namespace of its own the container's mounts go into the caller's: the
    rootfs is held by an fd from here on, and what is mounted under it already is recorded
    before the init exists, so that delete can tell the new mounts (rootfs.caller_mounts)."""
    from . import rootfs
    try:
        plan.rootfs_fd = rootfs.pin_rootfs(plan.rootfs)
    except OSError as e:
        raise ConfigError(describe_oserror(e, f"rootfs {plan.rootfs}")) from None
    if plan.mounts:
        plan.caller_mounts = rootfs.caller_mounts(plan.rootfs)


def _spawn(cid: str, root: str, plan: Plan, cdir: str, cgroup, *, console_socket, no_pivot,
           no_new_keyring) -> tuple[int, int]:
    from . import spawn
    from ._shim import CLONE_NEWCGROUP, CLONE_NEWNET, CLONE_NEWUTS
    fifo = os.path.join(cdir, st.EXEC_FIFO)
    os.mkfifo(fifo, 0o622)
    os.chmod(fifo, 0o622)  # past the umask: a user-namespaced init writes to it as "other"
    flags, config = plan.flags, plan.config
    ctx = spawn.InitContext(
        id=cid, config=config, bundle=plan.bundle, rootfs=plan.rootfs, mounts=plan.mounts,
        hooks=config.get("hooks") or {}, no_pivot=no_pivot, console_socket=console_socket,
        preserve_fds=plan.preserve_fds, userns=plan.userns, join_paths=plan.joins,
        new_utsns=bool(flags & CLONE_NEWUTS), new_cgroupns=bool(flags & CLONE_NEWCGROUP),
        new_netns=bool(flags & CLONE_NEWNET),
        own_mountns=plan.own_mountns, rootfs_fd=plan.rootfs_fd,
        dev_is_bind=any(m.destination == "/dev" and m.is_bind for m in plan.mounts),
        cgroup_dirs=cgroup.hierarchies if cgroup is not None else {}, no_new_keyring=no_new_keyring,
        id_maps=plan.id_maps,
        seccomp_cache=root.rstrip("/") + "-cache/seccomp")
    ctx.fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    try:
        _idmap_userns(plan)
        return spawn.spawn(ctx, flags, cgroup)
    finally:
        os.close(ctx.fifo_fd)
        for m in plan.mounts:
            if m.tree_fd >= 0:
                os.close(m.tree_fd)
                m.tree_fd = -1


def _idmap_userns(plan: Plan) -> None:
    """Each idmapped mount, made detached here: mapped through its own mappings or the
    container's (a new user namespace's mappings, or the one it joins)."""
    from .namespaces import userns_fd
    from .rootfs import idmapped_tree
    linux = plan.config["linux"]
    for m in plan.mounts:
        if not m.idmap:
            continue
        if m.uid_mappings:
            ns = userns_fd(m.uid_mappings, m.gid_mappings)
        elif plan.userns:
            ns = userns_fd(linux["uidMappings"], linux["gidMappings"])
        else:
            ns = os.open(plan.joins["user"], os.O_RDONLY | os.O_CLOEXEC)
        try:
            m.tree_fd = idmapped_tree(m, plan.bundle, ns)
        except OSError as e:
            raise PyrunError(describe_oserror(e, f"idmapped mount {m.source} to {m.destination}")) from None
        finally:
            os.close(ns)


def _record(cid: str, plan: Plan, cdir: str, cgroup, pid: int, created: str, pid_file) -> dict:
    from specs import SPEC_VERSION
    config = plan.config
    record = {
        "ociVersion": config.get("ociVersion", SPEC_VERSION), "id": cid, "pid": pid,
        "pid_start": st.proc_start_time(pid), "bundle": plan.bundle, "rootfs": plan.rootfs,
        "created": created, "annotations": config.get("annotations") or {},
        "cgroup": cgroup and cgroup.record(), "config": config,
    }
    if plan.caller_mounts is not None:
        from .rootfs import made_mounts
        record["caller_mounts"] = {**plan.caller_mounts, "made": made_mounts(plan.caller_mounts)}
    st.write_state(cdir, record)
    if pid_file:
        st.write_atomic(os.path.abspath(pid_file), str(pid).encode(), 0o644)
    return record


def _make_cgroup(cg, resources, rootless: bool) -> None:
    """Made before clone3, its limits applied: the init is born into it or joins it first
    thing, and nothing runs in the container unconfined. Rootless, runc's default device
    rules are left out (no user can write them; a user namespace cannot make device nodes)."""
    if cg is None:
        return  # rootless, and no hierarchy would take it (cgroups.skip_unwritable)
    try:
        cg.create(resources, default_devices=not rootless)
    except OSError as e:
        raise PyrunError(describe_oserror(e, f"create cgroup {cg.path}")) from None


def _poststop(cid: str, plan: Plan) -> None:
    """runtime.md's lifecycle: a create that fails once the container exists goes on at
    delete, and delete runs the poststop hooks (as runc's destroy does)."""
    poststop = (plan.config.get("hooks") or {}).get("poststop")
    if not poststop:
        return
    from . import hooks, log
    state = {"ociVersion": plan.config.get("ociVersion", ""), "id": cid, "status": "stopped",
             "bundle": plan.bundle, "annotations": plan.config.get("annotations") or {}}
    hooks.run_logged(poststop, state, "poststop", log.warning)


def _undo(cdir: str, cgroup, caller_mounts) -> None:
    if caller_mounts is not None:  # the init mounts no more: spawn killed it, or it was ready
        from .rootfs import remove_caller_mounts
        try:
            remove_caller_mounts(caller_mounts)
        except PyrunError as e:
            from . import log
            log.warning(str(e))
    if cgroup is not None:
        try:
            from . import cgroups
            cgroups.destroy(cgroup)
        except PyrunError:
            pass
    try:
        st.remove_dir(cdir)
    except OSError:
        pass
