"""runtime.md: the state, the lifecycle, errors, and the operations (state, create, start, kill,
delete), each in every state a container can be in."""
import os
import re

from conformance import bundle as bundles
from conformance import host
from conformance.suite import case

SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def sleeper(ctx, script: str = "sleep 100") -> dict:
    cfg = ctx.config()
    cfg["process"]["args"] = ["sh", "-c", script]
    return cfg


def with_mark_dir(ctx, cfg: dict) -> str:
    """Bind a case directory at /cf in the container; its host path."""
    d = ctx.mkdir("shared", mode=0o777)
    cfg["mounts"].append(bundles.mount("/cf", d))
    return d


def nothing_listed(ctx, cid: str) -> bool:
    return ctx.call("state", cid).rc not in (0, None) and not os.path.exists(os.path.join(ctx.run.root, cid))


def id_errors(op: str, section: str, command: str, *after_id: str) -> None:
    """Register `<op>.no-id-errors` and `<op>.unknown-id-errors`: the command without an ID,
    and with an ID no container has (then `after_id`, as kill's signal), errors."""
    case(f"{op}.no-id-errors", section)(
        lambda ctx: ctx.expect_error(ctx.call(command), f"{command} without an ID"))
    case(f"{op}.unknown-id-errors", section)(
        lambda ctx: ctx.expect_error(ctx.call(command, ctx.new_id(), *after_id), f"{command} of an unknown ID"))


# --- State --------------------------------------------------------------------------------------

@case("state.ociVersion", "runtime.md#State")
def state_oci_version(ctx):
    c, _ = ctx.create(sleeper(ctx))
    v = c.state().get("ociVersion")
    ctx.check(isinstance(v, str) and SEMVER.match(v), f"ociVersion {v!r} is not SemVer")


@case("state.id", "runtime.md#State")
def state_id(ctx):
    c, _ = ctx.create(sleeper(ctx))
    s = c.state()
    ctx.check(s.get("id") == c.id, f"id {s.get('id')!r}, created as {c.id!r}")


@case("state.status", "runtime.md#State")
def state_status(ctx):
    """Each status the spec defines, in the state it names: created, running, stopped."""
    c, _ = ctx.create(sleeper(ctx))
    seen = [c.state().get("status")]
    c.start()
    seen.append(c.state().get("status"))
    c.kill("KILL")
    seen.append(c.wait_stopped().get("status"))
    ctx.check(seen == ["created", "running", "stopped"], f"statuses seen: {seen}")


@case("state.pid", "runtime.md#State")
def state_pid(ctx):
    """pid is the container process as the host sees it: alive, in the container's namespaces."""
    c, _ = ctx.create(sleeper(ctx))
    pid = c.state().get("pid")
    ctx.check(isinstance(pid, int) and pid > 0, f"pid {pid!r}")
    ctx.check(host.alive(pid), f"pid {pid} is not a live process on the host")
    ctx.check(host.ns(pid, "pid") != host.ns("self", "pid"), f"pid {pid} is not in the container's pid namespace")
    c.start()
    ctx.check(c.state().get("pid") == pid, "pid changed at start")
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    ctx.check(argv[:2] == [b"sleep", b"100"], f"after start, pid {pid} runs {argv!r}, not the process")


@case("state.bundle", "runtime.md#State")
def state_bundle(ctx):
    """bundle is the absolute path of the bundle, given relative to create's cwd."""
    cfg = sleeper(ctx)
    b = ctx.bundle(cfg, name="relbundle")
    c, _ = ctx.create("relbundle", cwd=ctx.dir)
    c.bundle = b
    got = c.state().get("bundle")
    ctx.check(isinstance(got, str) and os.path.isabs(got), f"bundle {got!r} is not absolute")
    ctx.check(os.path.realpath(got) == os.path.realpath(b), f"bundle {got!r}, expected {b!r}")


@case("state.annotations", "runtime.md#State")
def state_annotations(ctx):
    cfg = sleeper(ctx)
    want = {"com.example.cf.first": "1", "com.example.cf.empty": "", "org.example.cf": "x y"}
    cfg["annotations"] = want
    c, _ = ctx.create(cfg)
    got = c.state().get("annotations")
    ctx.check(got == want, f"annotations {got!r}, config had {want!r}")


@case("state.annotations-absent", "runtime.md#State")
def state_annotations_absent(ctx):
    """Without annotations the property is absent or an empty map."""
    c, _ = ctx.create(sleeper(ctx))
    s = c.state()
    ctx.check(s.get("annotations", {}) in ({}, None), f"annotations {s.get('annotations')!r}")


# --- Lifecycle ----------------------------------------------------------------------------------

@case("lifecycle.create-runs-no-user-code", "runtime.md#Lifecycle")
def lifecycle_create_no_code(ctx):
    cfg = sleeper(ctx, "echo ran > /cf/marker; sleep 100")
    d = with_mark_dir(ctx, cfg)
    c, _ = ctx.create(cfg)
    ctx.check(not os.path.exists(os.path.join(d, "marker")), "the process ran at create")
    c.start()
    ctx.check(ctx.wait(lambda: os.path.exists(os.path.join(d, "marker"))), "the process did not run at start")


@case("lifecycle.config-changes-after-create", "runtime.md#Lifecycle")
def lifecycle_config_changes(ctx):
    """Updates to config.json after create MUST NOT affect the container."""
    cfg = sleeper(ctx, "echo original")
    c, _ = ctx.create(cfg)
    cfg["process"]["args"] = ["sh", "-c", "echo changed"]
    bundles.write_config(c.bundle, cfg)
    c.start()
    c.wait_stopped()
    out = c.output()
    ctx.check(out.strip() == "original", f"the container printed {out!r}")


@case("lifecycle.delete-undoes-create", "runtime.md#Lifecycle")
def lifecycle_delete_undoes(ctx):
    """After delete: no state, no process, no cgroup the container had."""
    c = ctx.started(sleeper(ctx))
    pid = c.pid
    dirs = [d for d in host.cgroup_dirs(pid).values() if d.rstrip("/") not in _cgroup_roots()]
    c.kill("KILL")
    c.wait_stopped()
    c.delete()
    ctx.check(c.try_state() is None, "state still answers after delete")
    ctx.check(not host.alive(pid), f"pid {pid} still alive")
    left = [d for d in dirs if os.path.isdir(d)]
    ctx.check(not left, f"cgroups left: {left}")


def _cgroup_roots() -> set:
    return {p.rstrip("/") for p in host.v1_mounts().values()} | {host.CGROUP_ROOT, host.CGROUP_ROOT + "/unified"}


@case("errors.create-leaves-nothing", "runtime.md#Errors")
def errors_create_leaves_nothing(ctx):
    """A create that fails leaves the environment as if it had never been tried."""
    cfg = sleeper(ctx)
    cg = ctx.cgroups_path()
    cfg["linux"]["cgroupsPath"] = cg
    cfg["mounts"].append(bundles.mount("/data", ctx.path("no-such-source")))
    cid = ctx.new_id()
    _, p = ctx.create(cfg, cid=cid, check=False)
    ctx.expect_error(p, "create with a bind of a missing source")
    ctx.check(ctx.call("state", cid).rc != 0, "state answers for the failed container")
    made = host.cgroup_hierarchy_dirs(cg)
    ctx.check(not made, f"cgroups left by the failed create: {made}")
    cfg["mounts"].pop()
    c, _ = ctx.create(cfg, cid=cid)  # the ID is free again
    ctx.check(c.state().get("status") == "created", "the ID could not be used again")


# --- Query State --------------------------------------------------------------------------------

id_errors("query-state", "runtime.md#Query State", "state")


# --- Create -------------------------------------------------------------------------------------

@case("create.status-created", "runtime.md#Create")
def create_status(ctx):
    c, _ = ctx.create(sleeper(ctx))
    ctx.check(c.state().get("status") == "created", f"status {c.state().get('status')!r}")


@case("create.no-id-errors", "runtime.md#Create")
def create_no_id(ctx):
    b = ctx.bundle(sleeper(ctx))
    ctx.expect_error(ctx.call("create", "--bundle", b), "create without an ID")


@case("create.no-bundle-errors", "runtime.md#Create")
def create_no_bundle(ctx):
    cid = ctx.new_id()
    ctx.expect_error(ctx.call("create", "--bundle", ctx.path("no-such-bundle"), cid), "create of a missing bundle")
    ctx.check(nothing_listed(ctx, cid), "a container exists after the failed create")


@case("create.duplicate-id-errors", "runtime.md#Create")
def create_duplicate(ctx):
    """A create with the ID of a container (created, running, or stopped) errors, and that
    container is untouched."""
    c, _ = ctx.create(sleeper(ctx))
    pid = c.pid
    b2 = ctx.bundle(sleeper(ctx, "echo second"))
    for status in ("created", "running", "stopped"):
        if status == "running":
            c.start()
        if status == "stopped":
            c.kill("KILL")
            c.wait_stopped()
        ctx.expect_error(ctx.call("create", "--bundle", b2, c.id), f"create with the ID of a {status} container")
        s = c.state()
        same_pid = status == "stopped" or s.get("pid") == pid  # a stopped one's pid may be gone
        ctx.check(s.get("status") == status and same_pid, f"the {status} container changed: {s}")
        ctx.check(os.path.realpath(s.get("bundle", "")) == os.path.realpath(c.bundle), "its bundle changed")
    ctx.check("second" not in c.output(), "the second config's process ran")


@case("create.invalid-id-errors", "runtime.md#Create")
def create_invalid_id(ctx):
    """An ID that is not valid (a path separator in it) errors and makes nothing."""
    stem = ctx.new_id()
    b = ctx.bundle(sleeper(ctx))
    ctx.track(f"{stem}/sub")  # deleted at close, should a runtime accept it
    p = ctx.call("create", "--bundle", b, f"{stem}/sub")
    ctx.expect_error(p, "create with an ID holding '/'")
    ctx.check(nothing_listed(ctx, stem), f"{stem} exists after the failed create")


# --- Start --------------------------------------------------------------------------------------

id_errors("start", "runtime.md#Start", "start")


@case("start.no-process-errors", "runtime.md#Start")
def start_no_process(ctx):
    """Without process nothing can run: create or start errors (process is required at start)."""
    cfg = sleeper(ctx)
    del cfg["process"]
    c, p = ctx.create(cfg, check=False)
    if p.ok:
        ctx.expect_error(c.start(check=False), "start of a container without process")


@case("start.runs-process", "runtime.md#Start")
def start_runs(ctx):
    c = ctx.started(sleeper(ctx, "echo started-$((6*7))"))
    c.wait_stopped()
    ctx.check(c.output().strip() == "started-42", f"the container printed {c.output()!r}")


@case("start.status-running", "runtime.md#Start")
def start_status(ctx):
    c = ctx.started(sleeper(ctx))
    ctx.check(c.state().get("status") == "running", f"status {c.state().get('status')!r}")


@case("start.running-errors-no-effect", "runtime.md#Start")
def start_running(ctx):
    """start of a started container errors and has no effect on it."""
    c = ctx.started(sleeper(ctx, "echo once; sleep 100"))
    c.wait_output("once")
    pid = c.pid
    ctx.expect_error(c.start(check=False), "start of a running container")
    s = c.state()
    ctx.check(s.get("status") == "running" and s.get("pid") == pid, f"the container changed: {s}")
    ctx.check(c.output().count("once") == 1, f"the process ran again: {c.output()!r}")


@case("start.stopped-errors-no-effect", "runtime.md#Start")
def start_stopped(ctx):
    c = ctx.started(sleeper(ctx, "echo once"))
    c.wait_stopped()
    ctx.expect_error(c.start(check=False), "start of a stopped container")
    ctx.check(c.state().get("status") == "stopped", f"status {c.state().get('status')!r}")
    ctx.check(c.output().count("once") == 1, f"the process ran again: {c.output()!r}")


# --- Kill ---------------------------------------------------------------------------------------

id_errors("kill", "runtime.md#Kill", "kill", "KILL")


@case("kill.sends-signal", "runtime.md#Kill")
def kill_sends(ctx):
    """The signal reaches the container's process (which traps it and goes on)."""
    c = ctx.started(sleeper(ctx, 'trap "echo got-usr1" USR1; echo ready; while :; do sleep 0.05; done'))
    ctx.check("ready" in c.wait_output("ready"), f"the container never got ready: {c.output()!r}")
    c.kill("USR1")
    out = c.wait_output("got-usr1")
    ctx.check("got-usr1" in out, f"the process did not get SIGUSR1: {out!r}")
    ctx.check(c.state().get("status") == "running", "the container stopped")


@case("kill.created", "runtime.md#Kill")
def kill_created(ctx):
    """A created container can be signalled: SIGKILL stops it, and its process never ran."""
    cfg = sleeper(ctx, "echo ran > /cf/marker; sleep 100")
    d = with_mark_dir(ctx, cfg)
    c, _ = ctx.create(cfg)
    c.kill("KILL")
    s = c.wait_stopped()
    ctx.check(s.get("status") == "stopped", f"status {s.get('status')!r} after SIGKILL")
    ctx.check(not os.path.exists(os.path.join(d, "marker")), "the process ran")


@case("kill.stopped-errors", "runtime.md#Kill")
def kill_stopped(ctx):
    c = ctx.started(sleeper(ctx, "true"))
    c.wait_stopped()
    ctx.expect_error(c.kill("KILL", check=False), "kill of a stopped container")
    ctx.check(c.state().get("status") == "stopped", "the status changed")


@case("kill.status-stopped", "runtime.md#Kill")
def kill_status(ctx):
    """Once the process is stopped (here by kill), status is stopped."""
    c = ctx.started(sleeper(ctx))
    pid = c.pid
    c.kill("KILL")
    s = c.wait_stopped()
    ctx.check(not host.alive(pid), f"pid {pid} survived SIGKILL")
    ctx.check(s.get("status") == "stopped", f"status {s.get('status')!r}")


# --- Delete -------------------------------------------------------------------------------------

id_errors("delete", "runtime.md#Delete", "delete")


@case("delete.running-errors-no-effect", "runtime.md#Delete")
def delete_running(ctx):
    c = ctx.started(sleeper(ctx))
    pid = c.pid
    ctx.expect_error(c.delete(check=False), "delete of a running container")
    s = c.state()
    ctx.check(s.get("status") == "running" and s.get("pid") == pid and host.alive(pid), f"it changed: {s}")


@case("delete.created-errors-no-effect", "runtime.md#Delete")
def delete_created(ctx):
    """delete of a container that is not stopped (here: created) errors and has no effect."""
    c, _ = ctx.create(sleeper(ctx))
    pid = c.pid
    ctx.expect_error(c.delete(check=False), "delete of a created container")
    s = c.try_state() or {}
    ctx.check(s.get("status") == "created" and s.get("pid") == pid and host.alive(pid), f"it changed: {s}")


@case("delete.stopped", "runtime.md#Delete")
def delete_stopped(ctx):
    c = ctx.started(sleeper(ctx, "true"))
    c.wait_stopped()
    c.delete()
    ctx.check(c.try_state() is None, "state still answers after delete")


@case("delete.removes-cgroup", "runtime.md#Delete")
def delete_cgroup(ctx):
    """The cgroup made for the container (cgroupsPath) is gone after delete."""
    cfg = sleeper(ctx)
    cg = ctx.cgroups_path()
    cfg["linux"]["cgroupsPath"] = cg
    c = ctx.started(cfg)
    dirs = [d for d in host.cgroup_dirs(c.pid).values() if d.endswith(cg)]
    ctx.check(dirs, f"the process is in no cgroup named {cg}: {host.cgroup_dirs(c.pid)}")
    c.kill("KILL")
    c.wait_stopped()
    c.delete()
    left = [d for d in dirs if os.path.isdir(d)]
    ctx.check(not left, f"cgroups left: {left}")


@case("delete.keeps-what-it-did-not-create", "runtime.md#Delete")
def delete_keeps(ctx):
    """A bind-mounted host directory and a pre-existing parent cgroup survive delete."""
    cfg = sleeper(ctx)
    data = ctx.mkdir("data")
    bundles.write(os.path.join(data, "keep"), "kept")
    cfg["mounts"].append(bundles.mount("/data", data))
    # the parent, made by the suite in every hierarchy before create
    parent = f"cf-{ctx.run.token}-{ctx.index}-parent"
    roots = set(host.v1_mounts().values())
    if host.cgroup_mode() != "legacy":
        roots.add(host.CGROUP_ROOT if host.cgroup_mode() == "unified" else host.CGROUP_ROOT + "/unified")
    made = [ctx.own_cgroup_dir(os.path.join(r, parent)) for r in sorted(roots)]
    ctx.cgroups_path("-parent/child")
    cfg["linux"]["cgroupsPath"] = f"/{parent}/child"
    c = ctx.started(cfg)
    c.kill("KILL")
    c.wait_stopped()
    c.delete()
    ctx.check(os.path.exists(os.path.join(data, "keep")), "the bind-mounted host file was removed")
    gone = [d for d in made if not os.path.isdir(d)]
    ctx.check(not gone, f"parent cgroups the runtime did not make were removed: {gone}")


@case("delete.id-reusable", "runtime.md#Delete")
def delete_reuse(ctx):
    c = ctx.started(sleeper(ctx, "true"))
    c.wait_stopped()
    c.delete()
    c2, _ = ctx.create(sleeper(ctx, "echo again"), cid=c.id)
    ctx.check(c2.state().get("status") == "created", "the ID could not be used again")
    c2.start()
    c2.wait_stopped()
    ctx.check(c2.output().strip() == "again", f"the new container printed {c2.output()!r}")


@case("pid-file.create", "runc CLI: create --pid-file")
def pid_file(ctx):
    """create --pid-file writes the container process's host pid (runc's CLI)."""
    path = ctx.path("pidfile")
    c, _ = ctx.create(sleeper(ctx), args=("--pid-file", path))
    with open(path) as f:
        text = f.read().strip()
    ctx.check(text.isdigit() and int(text) == c.pid, f"pid file {text!r}, state pid {c.pid}")
