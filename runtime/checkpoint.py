"""`checkpoint` and `restore`: a container's processes saved into criu images, and brought
back as a new container that is a normal pyrun container afterwards, as runc 1.1 does it.

criu does the work (over its RPC, criu.py); pyrun tells it what criu cannot know:

- checkpoint: the rootfs, the pid, the freezer cgroup (criu freezes the tree with it), which
  mounts come from outside the container (binds, devices, a cgroup dir bound in) so that
  criu records them as external instead of failing on them, external namespaces (a netns
  or pidns `path`), and the init's stdio, written to descriptors.json as runc does. Without
  --leave-running or --pre-dump the container is deleted afterwards (its processes are gone).
- restore: everything create validates and makes (the ID, the cgroup with its limits), then
  criu restores into it: criu itself is put in the cgroup first, cg_root maps the dumped
  cgroup onto ours, the rootfs is bound at <state dir>/criu-root (criu wants a mount point),
  each external mount gets its source, the stdio pipes are handed over from ours
  (inherit_fd; stdio files from outside the container too, which criu cannot dump: criu
  checks the file put in place has the dumped one's mode, and its size unless it was
  O_WRONLY|O_APPEND), and the restored init becomes our child (rst_sibling). Its pid goes into
  state.json like a created container's; state, kill, exec and delete work on it as on any.

Always given to criu, as runc does: an empty network namespace on restore (empty_ns has
CLONE_NEWNET: of a new network namespace pyrun sets up only lo, which it brings up again in
setup-namespaces, and criu brings none of the dump's interfaces back),
except where the container joins one by path: criu makes no namespace there, it restores
into the one handed over, and the flag would only have it lock that namespace once more
(see _empty_ns). So TCP connections (--tcp-established) come back where the namespace
outlives the container, as Podman's and CRI-O's do.
"""
import os

from . import criu
from . import state as st
from .errors import ConfigError, PyrunError, StateError, UsageError, describe_oserror
from .namespaces import NS_FILES, NS_FLAGS

DESCRIPTORS = "descriptors.json"  # runc's file: the init's fds 0-2 as they were dumped
# pyrun's own: criu's keys of the init's stdio files from outside the container (a /dev/null
# or log file of the caller's), which restore replaces with its own stdio as it does pipes
EXTERNAL_STDIO = "pyrun-external-stdio.json"
CRIU_CONFIG_ANNOTATION = "org.criu.config"
CRIU_CONFIG_DEFAULT = "/etc/criu/runc.conf"  # runc's: criu skips a file that does not exist
CRIU_LOG_LEVEL = 4

# runc's namespaceMapping, for --empty-ns (time is not among them)
EMPTY_NS = {kind: NS_FLAGS[kind] for kind in ("pid", "network", "mount", "user", "ipc", "uts", "cgroup")}
CLONE_NEWNET = NS_FLAGS["network"]
EXTERNAL_KEYS = {"network": "extRootNetNS", "pid": "extRootPidNS"}  # runc's keys, criu's "net[ino]:key"


class Options:
    """The flags both commands share, checked before anything exists."""

    __slots__ = ("image_path", "work_path", "parent_path", "leave_running", "pre_dump", "tcp_established",
                 "ext_unix_sk", "shell_job", "file_locks", "auto_dedup", "cg_mode", "empty_ns", "page_server")

    def __init__(self, **kw):
        for name in self.__slots__:
            setattr(self, name, kw.get(name))


def options_from_cli(o: dict) -> Options:
    """The parsed flags of `checkpoint` or `restore`; what pyrun cannot do is refused by name."""
    if o.get("lazy_pages"):
        raise UsageError("--lazy-pages is not supported: pyrun neither runs criu's lazy-pages daemon "
                         "nor a page server for it")
    if o.get("status_fd", -1) != -1:
        raise UsageError("--status-fd is not supported: it only serves --lazy-pages, which pyrun refuses")
    mode = o.get("manage_cgroups_mode") or ""
    if mode not in criu.CG_MODES:
        raise UsageError(f"invalid --manage-cgroups-mode value {mode!r}: one of soft, full, strict, ignore")
    mask = CLONE_NEWNET  # runc's: criu restores a new network namespace empty
    for ns in o.get("empty_ns") or ():
        if ns not in EMPTY_NS:
            raise UsageError(f"--empty-ns: namespace {ns!r} is not supported (one of {', '.join(EMPTY_NS)})")
        mask |= EMPTY_NS[ns]
    page_server = None
    if o.get("page_server"):
        addr, _, port = o["page_server"].rpartition(":")
        if not addr or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"--page-server {o['page_server']!r}: want ADDRESS:PORT")
        page_server = {"address": addr.strip("[]"), "port": int(port)}
    image = o.get("image_path") or os.path.join(os.getcwd(), "checkpoint")
    return Options(image_path=os.path.abspath(image), work_path=os.path.abspath(o["work_path"]) if o.get("work_path") else None,
                   parent_path=o.get("parent_path") or None, leave_running=bool(o.get("leave_running")),
                   pre_dump=bool(o.get("pre_dump")), tcp_established=bool(o.get("tcp_established")),
                   ext_unix_sk=bool(o.get("ext_unix_sk")), shell_job=bool(o.get("shell_job")),
                   file_locks=bool(o.get("file_locks")), auto_dedup=bool(o.get("auto_dedup")),
                   cg_mode=criu.CG_MODES[mode], empty_ns=mask, page_server=page_server)


def _require_root(cmd: str) -> None:
    from .rootless import unprivileged
    if unprivileged():
        raise PyrunError(f"{cmd} needs root: criu dumps and restores processes with the host's privileges")


def _common_opts(opt: Options, config: dict) -> dict:
    opts = {"log_level": CRIU_LOG_LEVEL, "manage_cgroups": True, "manage_cgroups_mode": opt.cg_mode,
            "notify_scripts": True, "shell_job": opt.shell_job, "tcp_established": opt.tcp_established,
            "ext_unix_sk": opt.ext_unix_sk, "file_locks": opt.file_locks, "empty_ns": _empty_ns(opt.empty_ns, config),
            "orphan_pts_master": True, "auto_dedup": opt.auto_dedup}
    annotations = config.get("annotations") or {}
    if CRIU_CONFIG_ANNOTATION in annotations:  # empty: no configuration file at all
        if annotations[CRIU_CONFIG_ANNOTATION]:
            opts["config_file"] = annotations[CRIU_CONFIG_ANNOTATION]
    else:
        opts["config_file"] = CRIU_CONFIG_DEFAULT
    return opts


def _empty_ns(mask: int, config: dict) -> int:
    """The namespaces criu makes empty, less a network namespace the container joins by path
    (criu's external one). Given CLONE_NEWNET criu locks the restored namespace's traffic
    as it starts, for a namespace it made that has none of the dump's rules; in the joined
    one the dump's lock is still in place, and its one unlock at the end would leave the
    second: no packet would pass there again."""
    if any(ns.get("type") == "network" and ns.get("path") for ns in (config.get("linux") or {}).get("namespaces") or ()):
        return mask & ~CLONE_NEWNET
    return mask


def _loopback_up_in(pid: int) -> None:
    """lo up in the restored task's network namespace, while criu holds it stopped: the
    namespace criu made (empty_ns) has lo down, where create's init brought it up. runc does
    the same at this point of a restore (its loopback network). A child joins the namespace
    and does what the init does; its one line of failure comes back through a pipe."""
    from . import init
    from ._shim import setns
    try:
        nsfd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise PyrunError(describe_oserror(e, "open the restored network namespace")) from None
    r, w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's only way out is _exit
        code = 0
        try:
            os.close(r)
            setns(nsfd, CLONE_NEWNET)
            init.loopback_up()
        except BaseException as e:  # noqa: BLE001 - said to the parent, which raises it
            os.write(w, str(e).encode(errors="replace")[:4096])
            code = 1
        os._exit(code)
    os.close(nsfd)
    os.close(w)
    try:
        why = os.read(r, 4096).decode(errors="replace")
    finally:
        os.close(r)
    _, status = os.waitpid(child, 0)
    if status != 0:
        raise PyrunError(why or f"bring lo up in the restored network namespace: the helper ended with {status}")


def _open_dir(path: str, what: str, make: bool) -> tuple[int, bool]:
    """(fd, made) of a directory criu reads or writes through an fd of ours."""
    made = False
    if make:
        try:
            os.mkdir(path, 0o700)
            made = True
        except FileExistsError:
            pass
        except OSError as e:
            raise PyrunError(describe_oserror(e, f"{what} {path}")) from None
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), made
    except OSError as e:
        if made:
            os.rmdir(path)
        raise PyrunError(describe_oserror(e, f"{what} {path}")) from None


def _mounts_from_outside(config: dict, bundle: str, cgroup_dirs: dict, rootfs_mounts) -> list[tuple[str, str]]:
    """(destination in the container, host source) of each mount criu must treat as external:
    bind mounts, a cgroup mount made of binds (no cgroup namespace), the devices. As runc's
    list, and the cgroup v2 bind that pyrun (unlike runc) makes without a cgroup namespace."""
    from . import cgroups
    out = []
    cgroupns = any(n.get("type") == "cgroup" for n in (config.get("linux") or {}).get("namespaces") or ())
    for m in rootfs_mounts:
        if m.is_bind:
            out.append((m.destination, m.source if os.path.isabs(m.source) else os.path.join(bundle, m.source)))
        elif m.type == "cgroup" and not cgroupns:
            if cgroups.is_unified():
                if "" in cgroup_dirs:
                    out.append((m.destination, cgroup_dirs[""]))
                continue
            for mountpoint, fstype, mopts in cgroups.mounts():
                want = "unified" if fstype == "cgroup2" else ",".join(
                    x.removeprefix("name=") for x in mopts if x not in ("rw", "ro") and not x.startswith("release_agent"))
                if want in cgroup_dirs:
                    out.append((m.destination.rstrip("/") + "/" + os.path.basename(mountpoint), cgroup_dirs[want]))
    for d in (config.get("linux") or {}).get("devices") or ():
        out.append((d["path"], d["path"]))
    return out


# -- checkpoint ----------------------------------------------------------------------------------

def checkpoint(c, opt: Options, criu_path: str = "criu") -> None:
    """Dump container `c` into opt.image_path; then delete it unless it keeps running."""
    from . import rootfs
    _require_root("checkpoint")
    status = c.status()
    if status not in ("running", "paused"):
        raise StateError(f"container {c.id} cannot be checkpointed in {status} state")
    config = c.record.get("config") or {}
    mounts = rootfs.parse_mounts(config)
    if opt.pre_dump:  # runc's check: a pre-dump without memory tracking saves nothing
        feats = criu.features(criu_path, {"mem_track": True})
        if not feats.get("mem_track"):
            raise PyrunError("--pre-dump: criu reports no memory tracking on this kernel (soft-dirty bits)")
    lock = st.lock_current(c.dir)
    image_fd = work_fd = -1
    try:
        c.record = st.read_state(c.root, c.id)[1]
        status = c.status()
        if status not in ("running", "paused"):
            raise StateError(f"container {c.id} cannot be checkpointed in {status} state")
        image_fd, made_image = _open_dir(opt.image_path, "image path", make=True)
        log_dir = opt.image_path
        if opt.work_path:
            work_fd, _ = _open_dir(opt.work_path, "work path", make=True)
            log_dir = opt.work_path
        log_file = "pre-dump.log" if opt.pre_dump else "dump.log"
        opts = _common_opts(opt, config)
        opts.update(images_dir_fd=image_fd, log_file=log_file, root=c.record["rootfs"], pid=c.pid,
                    leave_running=opt.leave_running)
        if work_fd >= 0:
            opts["work_dir_fd"] = work_fd
        if opt.page_server:
            opts["ps"] = opt.page_server
        external = []
        for ns in (config.get("linux") or {}).get("namespaces") or ():
            if ns.get("path") and ns.get("type") in EXTERNAL_KEYS:
                try:
                    ino = os.stat(ns["path"]).st_ino
                except OSError as e:
                    raise PyrunError(describe_oserror(e, f"{ns['type']} namespace path")) from None
                kind = "net" if ns["type"] == "network" else "pid"
                external.append(f"{kind}[{ino}]:{EXTERNAL_KEYS[ns['type']]}")
        if external:
            opts["external"] = external
        cg = c.cgroup()
        if cg is not None:
            freezer = cg.dir_for("freezer")
            if freezer:
                opts["freeze_cgroup"] = freezer
        if opt.parent_path:
            opts["parent_img"] = opt.parent_path  # criu takes it relative to the image directory
            opts["track_mem"] = True
        if opt.pre_dump:
            opts["track_mem"] = True
        else:
            cg_dirs = cg.hierarchies if cg is not None else {}
            opts["ext_mnt"] = [{"key": dest, "val": dest} for dest, _ in _mounts_from_outside(config, c.record.get("bundle", ""), cg_dirs, mounts)]
            opts["ext_mnt"] += [{"key": p, "val": "/dev/null"} for p in _masked_files(c.pid, config)]
            _write_descriptors(opt.image_path, c.pid)
            outside = _stdio_from_outside(c.pid)
            if outside:
                opts["external"] = external + list(outside.values())
            _write_json(os.path.join(opt.image_path, EXTERNAL_STDIO), outside)
        req = {"type": criu.PRE_DUMP if opt.pre_dump else criu.DUMP, "opts": opts}
        try:
            criu.call(criu_path, req, pass_fds=[fd for fd in (image_fd, work_fd) if fd >= 0],
                      log_path=os.path.join(log_dir, log_file))
        except criu.CriuError as e:
            if "session leader" in str(e):
                # the init is one (setsid, as runc's), unless its program moved on: criu
                # cannot dump a session led from outside the pid namespace, --shell-job or not
                raise criu.CriuError(f"{e}; the container's session leader is outside it") from None
            raise
    finally:
        for fd in (image_fd, work_fd):
            if fd >= 0:
                os.close(fd)
        os.close(lock)
    if not (opt.leave_running or opt.pre_dump):
        c.delete(force=True)  # criu ended its processes: what is left is runc's destroy


def _masked_files(pid: int, config: dict) -> list[str]:
    """maskedPaths that are files (bound over with /dev/null), as runc lists them for criu."""
    out = []
    for path in (config.get("linux") or {}).get("maskedPaths") or ():
        try:
            import stat
            if not stat.S_ISDIR(os.stat(f"/proc/{pid}/root/{path.lstrip('/')}").st_mode):
                out.append(path)
        except OSError:
            continue
    return out


def _write_descriptors(image_path: str, pid: int) -> None:
    fds = []
    for i in range(3):
        try:
            fds.append(os.readlink(f"/proc/{pid}/fd/{i}"))
        except OSError:
            fds.append("/dev/null")  # closed: restore gives it nothing of ours
    _write_json(os.path.join(image_path, DESCRIPTORS), fds)


def _write_json(path: str, value) -> None:
    from specs import fastjson
    st.write_atomic(path, fastjson.dumps(value).encode(), 0o600)


def _stdio_from_outside(pid: int) -> dict:
    """{fd: criu's external key} of the init's fds 0-2 that are files on a mount the container
    does not have: criu cannot dump those (runc's callers hand over pipes or a pty only);
    declared external, restore puts its own stdio in their place, as it does for pipes."""
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            theirs = {int(line.split(" ", 1)[0]) for line in f if line.strip()}
    except OSError:
        return {}
    out = {}
    for i in range(3):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{i}")
            if not link.startswith("/"):
                continue  # pipe:[…], socket:[…], anon_inode:…: criu's own kinds
            with open(f"/proc/{pid}/fdinfo/{i}") as f:
                mnt_id = next(int(line.split()[1]) for line in f if line.startswith("mnt_id:"))
            ino = os.stat(f"/proc/{pid}/fd/{i}").st_ino
        except (OSError, StopIteration, ValueError):
            continue
        if mnt_id not in theirs:
            out[str(i)] = f"file[{mnt_id:x}:{ino:x}]"
    return out


# -- restore ----------------------------------------------------------------------------------

def restore(cls, cid: str, bundle: str, root: str, opt: Options, *, criu_path: str = "criu",
            pid_file: str | None = None, console_socket: str | None = None, rootless=None,
            lsm_profile: str = "", lsm_mount_context: str = "") -> "object":
    """A new container `cid` from `bundle`'s config, its processes restored from opt.image_path.

    As create: everything that can be refused is refused before the ID is claimed, and a
    failure afterwards undoes what was made (restored processes killed, cgroup and state
    directory removed)."""
    from . import create
    _require_root("restore")
    # the restored init's stdio: ours in place of the pipes (runc's rule) and outside files
    stdio = [{"key": d, "fd": i} for i, d in enumerate(_read_descriptors(opt.image_path)[:3]) if "pipe:" in d]
    stdio += [{"key": key, "fd": int(i)} for i, key in _read_external_stdio(opt.image_path).items()]
    lsm = _check_lsm(lsm_profile, lsm_mount_context)
    plan = create._validate(cid, bundle, None, False, console_socket, 0, 0, rootless)
    linux = plan.config["linux"]
    for ns in linux.get("namespaces") or ():
        if ns.get("type") == "cgroup" and ns.get("path"):
            raise ConfigError("linux.namespaces: criu cannot restore into an existing cgroup namespace (path)")

    def restore_into(cgroup, cdir, created):
        pid = 0
        try:
            pid = _criu_restore(cid, plan, cdir, cgroup, opt, stdio, lsm, criu_path, console_socket)
            record = create._record(cid, plan, cdir, cgroup, pid, created, pid_file)
            record["restored_from"] = opt.image_path  # what `state` shows is a container like any other
            st.write_state(cdir, record)
            return record
        except BaseException:
            if pid:
                _kill_restored(pid)
            raise
    cdir, record = create.build(cid, root, plan, restore_into)
    return cls(cid, root, cdir, record)


def _read_descriptors(image_path: str) -> list[str]:
    from specs import fastjson
    path = os.path.join(image_path, DESCRIPTORS)
    try:
        data = st.read_document(path, DESCRIPTORS)
    except FileNotFoundError:
        if not os.path.isdir(image_path):
            raise PyrunError(f"image path {image_path} does not exist") from None
        raise PyrunError(f"image path {image_path}: no {DESCRIPTORS} (not a checkpoint pyrun or runc made, "
                         "or a pre-dump only)") from None
    except OSError as e:
        raise PyrunError(describe_oserror(e, f"read {path}")) from None
    try:
        fds = fastjson.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise PyrunError(f"{path}: {e}") from None
    if not isinstance(fds, list) or not all(isinstance(x, str) for x in fds):
        raise PyrunError(f"{path}: not a list of strings")
    return fds


def _read_external_stdio(image_path: str) -> dict:
    """EXTERNAL_STDIO, where pyrun wrote one (a runc checkpoint has none)."""
    from specs import fastjson
    path = os.path.join(image_path, EXTERNAL_STDIO)
    try:
        value = fastjson.loads(st.read_document(path, EXTERNAL_STDIO))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise PyrunError(f"{path}: {e}") from None
    if not isinstance(value, dict) or not all(k in ("0", "1", "2") and isinstance(v, str) for k, v in value.items()):
        raise PyrunError(f"{path}: not a map of fds 0-2 to criu keys")
    return value


def _check_lsm(profile: str, mount_context: str) -> dict:
    """--lsm-profile TYPE:NAME and --lsm-mount-context, passed on where that LSM is enabled."""
    from .process import lsm_enabled
    out = {}
    if profile:
        kind, _, name = profile.partition(":")
        if kind not in ("apparmor", "selinux") or not name:
            raise UsageError(f"--lsm-profile {profile!r}: want TYPE:NAME, TYPE apparmor or selinux")
        if not lsm_enabled(kind):
            raise PyrunError(f"--lsm-profile {profile!r}: {kind} is not enabled on this host")
        out["lsm_profile"] = profile
    if mount_context:
        if not lsm_enabled("selinux"):
            raise PyrunError(f"--lsm-mount-context {mount_context!r}: SELinux is not enabled on this host")
        out["lsm_mount_context"] = mount_context
    return out


def _criu_restore(cid, plan, cdir, cgroup, opt: Options, stdio, lsm, criu_path, console_socket) -> int:
    from . import hooks
    from . import _shim as k
    config, linux = plan.config, plan.config["linux"]
    image_fd, _ = _open_dir(opt.image_path, "image path", make=False)
    work_fd = -1
    extra_fds: list[int] = []
    criu_root = os.path.join(cdir, "criu-root")
    mounted = False
    try:
        log_dir = opt.image_path
        if opt.work_path:
            work_fd, _ = _open_dir(opt.work_path, "work path", make=True)
            log_dir = opt.work_path
        _make_mountpoints(plan)
        os.mkdir(criu_root, 0o755)
        try:
            # criu wants the root a mount point whose parent is not overmounted (runc's reason too)
            k.mount(plan.rootfs, criu_root, None, k.MS_BIND | k.MS_REC)
            mounted = True
        except OSError as e:
            raise PyrunError(describe_oserror(e, f"bind rootfs {plan.rootfs}")) from None
        opts = _common_opts(opt, config)
        opts.update(images_dir_fd=image_fd, log_file="restore.log", root=criu_root, rst_sibling=True,
                    evasive_devices=True, **lsm)
        if work_fd >= 0:
            opts["work_dir_fd"] = work_fd
        cg_dirs = cgroup.hierarchies if cgroup is not None else {}
        opts["ext_mnt"] = [{"key": dest, "val": src} for dest, src in _mounts_from_outside(config, plan.bundle, cg_dirs, plan.mounts)]
        if linux.get("maskedPaths"):
            opts["ext_mnt"].append({"key": "/dev/null", "val": "/dev/null"})
        inherit = list(stdio)
        join = []
        for ns in linux.get("namespaces") or ():
            path, kind = ns.get("path"), ns.get("type")
            if not path:
                continue
            if kind in EXTERNAL_KEYS:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as e:
                    raise PyrunError(describe_oserror(e, f"{kind} namespace path")) from None
                extra_fds.append(fd)
                inherit.append({"key": EXTERNAL_KEYS[kind], "fd": fd})
            else:
                join.append({"ns": NS_FILES[kind], "ns_file": path})
        if inherit:
            opts["inherit_fd"] = inherit
        if join:
            opts["join_ns"] = join
        restored = {"pid": 0}

        def started(criu_pid: int) -> None:
            if cgroup is None:
                return
            try:
                cgroup.enter(criu_pid)  # what criu forks is born in the container's cgroup
            except OSError as e:
                raise PyrunError(describe_oserror(e, f"move criu into cgroup {cgroup.path}")) from None
            opts["cg_root"] = _cg_roots(criu_pid)

        def on_notify(script: str, pid: int, fds: list[int]) -> None:
            if script == "setup-namespaces":
                h = config.get("hooks") or {}
                s = {"ociVersion": config.get("ociVersion", ""), "id": cid, "status": "creating", "pid": pid,
                     "bundle": plan.bundle, "annotations": config.get("annotations") or {}}
                if plan.flags & CLONE_NEWNET:  # a new one, as create's new_netns
                    _loopback_up_in(pid)  # before the hooks, as create has it before they run
                hooks.run(h.get("prestart"), s, "prestart")
                hooks.run(h.get("createRuntime"), s, "createRuntime")
            elif script == "post-restore":
                restored["pid"] = pid
            elif script == "orphan-pts-master" and fds:
                if not console_socket:
                    raise PyrunError("the checkpoint has a terminal: restore needs --console-socket")
                from .console import connect, send_master
                send_master(connect(console_socket), os.dup(fds[0]), "/dev/ptmx")  # it closes both

        req = {"type": criu.RESTORE, "opts": opts}
        resp = criu.call(criu_path, req, stdio=(0, 1, 2), pass_fds=[image_fd, *extra_fds] + ([work_fd] if work_fd >= 0 else []),
                         started=started, on_notify=on_notify, log_path=os.path.join(log_dir, "restore.log"))
        pid = (resp.get("restore") or {}).get("pid") or restored["pid"]
        if not pid:
            raise PyrunError("criu restore answered without the restored pid")
        return pid
    finally:
        for fd in (image_fd, work_fd, *extra_fds):
            if fd >= 0:
                os.close(fd)
        if mounted:
            try:
                k.umount2(criu_root, k.MNT_DETACH)
            except OSError:
                pass
        try:
            os.rmdir(criu_root)
        except OSError:
            pass


def _cg_roots(pid: int) -> list[dict]:
    """criu's cg_root: each hierarchy's cgroup of criu (now the container's), where the dumped
    cgroup tree goes. The cgroup2 line names no controller: criu's global root."""
    out = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            out.append({"ctrl": ctrls, "path": path} if ctrls else {"path": path})
    return out


def _make_mountpoints(plan) -> None:
    """The mount points of bind mounts, as create made them (a rootfs restored elsewhere may
    lack them); not on a tmpfs the container mounts, whose contents criu restores itself."""
    from . import paths
    tmpfs = [m.destination.rstrip("/") + "/" for m in plan.mounts if m.type == "tmpfs"]
    root_fd = os.open(plan.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for m in plan.mounts:
            if not m.is_bind or any(m.destination.startswith(t) for t in tmpfs):
                continue
            src = m.source if os.path.isabs(m.source) else os.path.join(plan.bundle, m.source)
            try:
                _, fd = paths.make_at(root_fd, paths.resolve(root_fd, m.destination), os.path.isdir(src))
                os.close(fd)
            except OSError as e:
                raise PyrunError(describe_oserror(e, f"mount point {m.destination}")) from None
    finally:
        os.close(root_fd)


def _kill_restored(pid: int) -> None:
    """The restored init is our child (rst_sibling): kill and reap it."""
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
