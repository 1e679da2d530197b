"""config.md#POSIX-platform Hooks and runtime.md#Lifecycle: each kind of hook, when it runs, where
(runtime or container namespace), the state on its stdin, the order, timeouts, and what a
failing hook does to the lifecycle.

Hooks in the runtime namespace are the host's /bin/sh and write to the case directory; hooks in
the container namespace (startContainer) are the rootfs's busybox sh and write to /cf, a bind of
the same directory.
"""
import json
import os

from conformance import bundle as bundles
from conformance import host
from conformance.harness import LEAK_VAR
from conformance.suite import case

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
CREATE_KINDS = ("prestart", "createRuntime", "createContainer")
HOOK_ENV = [bundles.PATH_ENV]
# the namespaces a hook's view is compared on
NS_KINDS = ("mnt", "pid", "net", "uts", "ipc")


class Hooks:
    """A config whose hooks log to one directory: `<dir>/log` (one line a hook), and files."""

    def __init__(self, ctx, args=("sleep", "100")):
        self.ctx = ctx
        self.dir = ctx.mkdir("hooks", mode=0o777)
        self.cfg = ctx.config()
        self.cfg["process"]["args"] = list(args)
        self.cfg["mounts"].append(bundles.mount("/cf", self.dir))
        self.cfg["hooks"] = {}

    def add(self, kind: str, script: str, **extra) -> None:
        """A hook of kind running `sh -c script`; in the container, paths under /cf are the
        same files as those under self.dir on the host."""
        where = "/cf" if kind == "startContainer" else self.dir
        script = script.replace("{d}", where)
        self.cfg["hooks"].setdefault(kind, []).append(
            {"path": "/bin/sh", "args": ["sh", "-c", script], "env": list(HOOK_ENV), **extra})

    def log(self, kind: str, word: str | None = None) -> None:
        self.add(kind, f"echo {word or kind} >> {{d}}/log")

    def save_state(self, kind: str) -> None:
        self.add(kind, f"cat > {{d}}/{kind}.state")

    def save_ns(self, kind: str) -> None:
        script = "; ".join(f"readlink /proc/self/ns/{n} >> {{d}}/{kind}.ns" for n in NS_KINDS)
        self.add(kind, script)

    def file(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def read(self, name: str) -> str | None:
        try:
            with open(self.file(name)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def lines(self) -> list[str]:
        return (self.read("log") or "").split()

    def state(self, kind: str) -> dict:
        text = self.read(f"{kind}.state")
        self.ctx.check(text is not None, f"the {kind} hook did not run (or got no stdin)")
        try:
            return json.loads(text)
        except ValueError:
            self.ctx.fail(f"the {kind} hook's stdin is not JSON: {text[:200]!r}")

    def ns(self, kind: str) -> list[str]:
        text = self.read(f"{kind}.ns")
        self.ctx.check(text, f"the {kind} hook did not run")
        return text.split()


def runtime_ns() -> list[str]:
    return [host.ns("self", n) for n in NS_KINDS]


def container_ns(pid: int) -> list[str]:
    return [host.ns(pid, n) for n in NS_KINDS]


# --- when each kind runs ------------------------------------------------------------------------

def _at_create(ctx, kind: str):
    h = Hooks(ctx, args=("sh", "-c", "echo process >> /cf/log; sleep 100"))
    h.log(kind)
    c, _ = ctx.create(h.cfg)
    ctx.check(h.lines() == [kind], f"after create the log is {h.lines()}, expected [{kind!r}]")
    c.start()
    ctx.wait(lambda: "process" in h.lines())
    ctx.check(h.lines() == [kind, "process"], f"after start the log is {h.lines()}")


@case("hooks.prestart-at-create", "config.md#Prestart")
def prestart_at_create(ctx):
    """prestart runs during create, before the user program."""
    _at_create(ctx, "prestart")


@case("hooks.createRuntime-at-create", "config.md#CreateRuntime Hooks")
def create_runtime_at_create(ctx):
    _at_create(ctx, "createRuntime")


@case("hooks.createContainer-at-create", "config.md#CreateContainer Hooks")
def create_container_at_create(ctx):
    _at_create(ctx, "createContainer")


@case("hooks.startContainer-at-start", "config.md#StartContainer Hooks")
def start_container_at_start(ctx):
    """startContainer runs at start (not create), before the user program."""
    h = Hooks(ctx, args=("sh", "-c", "echo process >> /cf/log; sleep 100"))
    h.log("startContainer")
    c, _ = ctx.create(h.cfg)
    ctx.check(h.lines() == [], f"after create the log is {h.lines()}")
    c.start()
    ctx.wait(lambda: "process" in h.lines())
    ctx.check(h.lines() == ["startContainer", "process"], f"after start the log is {h.lines()}")


@case("hooks.poststart-after-process", "config.md#Poststart")
def poststart_after_process(ctx):
    """poststart runs once the user program is executing: the state's pid runs it."""
    h = Hooks(ctx)
    h.add("poststart", 'pid=$(sed -n \'s/.*"pid": *\\([0-9]*\\).*/\\1/p\'); '
                       'tr "\\0" " " < /proc/$pid/cmdline > {d}/cmdline')
    ctx.started(h.cfg)
    got = h.read("cmdline")
    ctx.check(got is not None, "the poststart hook did not run before start returned")
    ctx.check(got.split() == ["sleep", "100"], f"when poststart ran, the container's pid ran {got!r}")


@case("hooks.poststart-before-start-returns", "config.md#Poststart")
def poststart_before_start_returns(ctx):
    h = Hooks(ctx)
    h.add("poststart", "sleep 0.3; echo poststart >> {d}/log")
    ctx.started(h.cfg)
    ctx.check(h.lines() == ["poststart"], f"when start returned, the log was {h.lines()}")


@case("hooks.poststop-at-delete", "config.md#Poststop")
def poststop_at_delete(ctx):
    """poststop runs at delete, not when the process stops, and before delete returns."""
    h = Hooks(ctx, args=("true",))
    h.log("poststop")
    c = ctx.started(h.cfg)
    c.wait_stopped()
    ctx.check(h.lines() == [], f"before delete the log is {h.lines()}")
    c.delete()
    ctx.check(h.lines() == ["poststop"], f"when delete returned, the log was {h.lines()}")


# --- where each kind runs -----------------------------------------------------------------------

def _in_runtime_ns(ctx, kind: str):
    h = Hooks(ctx)
    h.save_ns(kind)
    c = ctx.started(h.cfg)
    if kind == "poststop":
        c.kill("KILL")
        c.wait_stopped()
        c.delete()
    got, want = h.ns(kind), runtime_ns()
    ctx.check(got == want, f"the {kind} hook ran in {got}, the runtime's namespaces are {want}")


@case("hooks.prestart-runtime-namespace", "config.md#Prestart")
def prestart_ns(ctx):
    _in_runtime_ns(ctx, "prestart")


@case("hooks.createRuntime-runtime-namespace", "config.md#CreateRuntime Hooks")
def create_runtime_ns(ctx):
    _in_runtime_ns(ctx, "createRuntime")


@case("hooks.poststart-runtime-namespace", "config.md#Poststart")
def poststart_ns(ctx):
    _in_runtime_ns(ctx, "poststart")


@case("hooks.poststop-runtime-namespace", "config.md#Poststop")
def poststop_ns(ctx):
    _in_runtime_ns(ctx, "poststop")


@case("hooks.prestart-after-namespaces", "config.md#Prestart")
def prestart_after_ns(ctx):
    """When prestart runs, the state's pid is already in the container's new namespaces."""
    h = Hooks(ctx)
    h.add("prestart", 'pid=$(sed -n \'s/.*"pid": *\\([0-9]*\\).*/\\1/p\'); '
                      'readlink /proc/$pid/ns/net > {d}/net')
    c, _ = ctx.create(h.cfg)
    got = (h.read("net") or "").strip()
    ctx.check(got, "the prestart hook found no pid (or did not run)")
    ctx.check(got == host.ns(c.pid, "net") and got != host.ns("self", "net"),
              f"prestart saw net {got}, the container's is {host.ns(c.pid, 'net')}")


@case("hooks.createContainer-container-namespace", "config.md#CreateContainer Hooks")
def create_container_ns(ctx):
    h = Hooks(ctx)
    h.save_ns("createContainer")
    c, _ = ctx.create(h.cfg)
    got, want = h.ns("createContainer"), container_ns(c.pid)
    ctx.check(got == want, f"createContainer ran in {got}, the container's namespaces are {want}")


@case("hooks.createContainer-before-pivot-root", "config.md#CreateContainer Hooks")
def create_container_before_pivot(ctx):
    """createContainer runs before pivot_root: the runtime's root (the bundle) is still in view."""
    h = Hooks(ctx)
    b = ctx.path("bundle-cc")
    h.add("createContainer", f"test -e {b}/config.json && echo host-root >> {{d}}/log")
    ctx.create(ctx.bundle(h.cfg, name="bundle-cc"))
    ctx.check(h.lines() == ["host-root"], "createContainer did not see the runtime's root")


@case("hooks.createContainer-path-runtime-namespace", "config.md#CreateContainer Hooks")
def create_container_path(ctx):
    """createContainer's path resolves in the runtime namespace: a host-only program runs."""
    h = Hooks(ctx)
    prog = h.file("cc-hook")
    bundles.write(prog, f"#!/bin/sh\necho host-program >> {h.dir}/log\n", 0o755)
    h.cfg["hooks"]["createContainer"] = [{"path": prog, "env": HOOK_ENV}]
    ctx.create(h.cfg)
    ctx.check(h.lines() == ["host-program"], f"the log is {h.lines()}")


@case("hooks.startContainer-container-namespace", "config.md#StartContainer Hooks")
def start_container_ns(ctx):
    h = Hooks(ctx)
    h.save_ns("startContainer")
    c = ctx.started(h.cfg)
    ctx.wait(lambda: len((h.read("startContainer.ns") or "").split()) == len(NS_KINDS), 5)
    got, want = h.ns("startContainer"), container_ns(c.pid)
    ctx.check(got == want, f"startContainer ran in {got}, the container's namespaces are {want}")


@case("hooks.startContainer-path-container-namespace", "config.md#StartContainer Hooks")
def start_container_path(ctx):
    """startContainer's path resolves in the container: a program only the rootfs has runs."""
    h = Hooks(ctx)
    h.cfg["hooks"]["startContainer"] = [{"path": "/cf-hook", "env": HOOK_ENV}]
    ctx.started(h.cfg, files={"cf-hook": "#!/bin/sh\necho rootfs-program >> /cf/log\n"})
    ctx.wait(lambda: h.lines(), 5)
    ctx.check(h.lines() == ["rootfs-program"], f"the log is {h.lines()}")


@case("hooks.startContainer-before-process", "config.md#StartContainer Hooks")
def start_container_before(ctx):
    h = Hooks(ctx, args=("sh", "-c", "test -e /cf/sc && echo saw-hook; sleep 100"))
    h.add("startContainer", "touch {d}/sc")
    c = ctx.started(h.cfg)
    out = c.wait_output("saw-hook", 5)
    ctx.check("saw-hook" in out, "the process started before the startContainer hook ran")


# --- the state on stdin -------------------------------------------------------------------------

STATUS_AT = {"prestart": "creating", "createRuntime": "creating", "createContainer": "creating",
             "startContainer": "created", "poststart": "running", "poststop": "stopped"}


def _state_on_stdin(ctx, kind: str):
    h = Hooks(ctx)
    h.cfg["annotations"] = {"com.example.cf.hook": kind}
    h.save_state(kind)
    c = ctx.started(h.cfg)
    pid = c.pid
    if kind == "startContainer":
        ctx.wait(lambda: h.read("startContainer.state"), 5)
    if kind == "poststop":
        c.kill("KILL")
        c.wait_stopped()
        c.delete()
    s = h.state(kind)
    problems = []
    if s.get("id") != c.id:
        problems.append(f"id {s.get('id')!r}")
    if os.path.realpath(str(s.get("bundle"))) != os.path.realpath(c.bundle):
        problems.append(f"bundle {s.get('bundle')!r}")
    if not s.get("ociVersion"):
        problems.append("no ociVersion")
    if s.get("status") != STATUS_AT[kind]:
        problems.append(f"status {s.get('status')!r} (the container is {STATUS_AT[kind]} then)")
    # pid: as the runtime sees it for hooks in its namespace, as the container sees it for the others
    want_pid = {"createContainer": 1, "startContainer": 1, "poststop": s.get("pid")}.get(kind, pid)
    if s.get("pid") != want_pid:
        problems.append(f"pid {s.get('pid')!r}, the container's is {want_pid}")
    if s.get("annotations", {}) != {"com.example.cf.hook": kind}:
        problems.append(f"annotations {s.get('annotations')!r}")
    ctx.check(not problems, f"{kind} got: " + ", ".join(problems))


for _kind in KINDS:
    case(f"hooks.state-on-stdin-{_kind}", "config.md#POSIX-platform Hooks")(
        lambda ctx, k=_kind: _state_on_stdin(ctx, k))


# --- order, arguments, environment --------------------------------------------------------------

@case("hooks.listed-order", "config.md#POSIX-platform Hooks")
def listed_order(ctx):
    """Hooks of a kind run in the listed order."""
    h = Hooks(ctx)
    for kind in ("createRuntime", "poststart", "poststop"):
        for n in range(1, 4):
            h.log(kind, f"{kind}{n}")
    c = ctx.started(h.cfg)
    c.kill("KILL")
    c.wait_stopped()
    c.delete()
    want = [f"{k}{n}" for k in ("createRuntime", "poststart", "poststop") for n in range(1, 4)]
    ctx.check(h.lines() == want, f"ran in the order {h.lines()}")


@case("hooks.lifecycle-order", "runtime.md#Lifecycle")
def lifecycle_order(ctx):
    """prestart, createRuntime, createContainer, startContainer, poststart, poststop."""
    h = Hooks(ctx)
    for kind in KINDS:
        h.log(kind)
    c = ctx.started(h.cfg)
    c.kill("KILL")
    c.wait_stopped()
    c.delete()
    ctx.check(h.lines() == list(KINDS), f"ran in the order {h.lines()}")


@case("hooks.args", "config.md#POSIX-platform Hooks")
def hook_args(ctx):
    """args is the hook's whole argv, args[0] included."""
    h = Hooks(ctx)
    script = f"cat /proc/$$/cmdline > {h.dir}/args"
    args = ["cf-argv0", "-c", script, "one", "two words", ""]
    h.cfg["hooks"]["createRuntime"] = [{"path": "/bin/sh", "env": HOOK_ENV, "args": args}]
    ctx.create(h.cfg)
    got = (h.read("args") or "").split("\0")[:-1]
    ctx.check(got == args, f"the hook's argv was {got!r}")


@case("hooks.env", "config.md#POSIX-platform Hooks")
def hook_env(ctx):
    """A hook's environment is its env: nothing of the runtime's own."""
    h = Hooks(ctx)
    h.cfg["hooks"]["createRuntime"] = [{
        "path": "/bin/sh", "args": ["sh", "-c", f"/usr/bin/env > {h.dir}/env"],
        "env": ["CF_HOOK=one", "CF_EQ=a=b"]}]
    ctx.create(h.cfg)
    got = (h.read("env") or "").split("\n")
    ctx.check("CF_HOOK=one" in got and "CF_EQ=a=b" in got, f"the hook's environment: {got}")
    leaked = [v for v in got if v.startswith(LEAK_VAR + "=")]
    ctx.check(not leaked, f"the runtime's environment leaked into the hook: {leaked}")


@case("hooks.timeout", "config.md#POSIX-platform Hooks", timeout=40)
def hook_timeout(ctx):
    """A hook past its timeout is aborted: create fails in time, the hook is gone."""
    h = Hooks(ctx, args=("sh", "-c", "echo process >> /cf/log"))
    h.add("createRuntime", "echo $$ > {d}/hook.pid; exec sleep 60", timeout=1)
    cid = ctx.new_id()
    b = ctx.bundle(h.cfg)
    p = ctx.call("create", "--bundle", b, cid, timeout=25)
    ctx.expect_error(p, "create with a hook past its timeout")
    pid = (h.read("hook.pid") or "").strip()
    ctx.check(pid.isdigit(), "the hook never ran")
    ctx.check(ctx.wait(lambda: not host.alive(int(pid)), 5), f"the timed-out hook (pid {pid}) is still running")
    ctx.check("process" not in h.lines(), "the process ran")


# --- failures -----------------------------------------------------------------------------------

def _no_container_left(ctx, cid: str) -> str | None:
    """None when the container is gone or stopped with no process; else what is left."""
    p = ctx.call("state", cid)
    if not p.ok:
        return None
    try:
        s = json.loads(p.out)
    except ValueError:
        return "state prints no JSON"
    if s.get("status") != "stopped":
        return f"the container is still {s.get('status')}"
    return None


def _create_hook_fails(ctx, kind: str):
    h = Hooks(ctx, args=("sh", "-c", "echo process >> /cf/log"))
    h.log(kind, "first")
    h.add(kind, "exit 3")
    h.log(kind, "after-failure")
    b = ctx.bundle(h.cfg)
    cid = ctx.new_id()
    ctx.expect_error(ctx.call("create", "--bundle", b, cid), f"create with a failing {kind} hook")
    left = _no_container_left(ctx, cid)
    ctx.check(left is None, left or "")
    ctx.call("start", cid)
    ctx.check(h.lines() == ["first"], f"the log is {h.lines()} (after the failure nothing may run)")


@case("hooks.prestart-fails", "runtime.md#Lifecycle")
def prestart_fails(ctx):
    """A failing prestart hook: an error, the container stopped, nothing after it runs."""
    _create_hook_fails(ctx, "prestart")


@case("hooks.createRuntime-fails", "runtime.md#Lifecycle")
def create_runtime_fails(ctx):
    _create_hook_fails(ctx, "createRuntime")


@case("hooks.createContainer-fails", "runtime.md#Lifecycle")
def create_container_fails(ctx):
    _create_hook_fails(ctx, "createContainer")


def _start_hook_fails(ctx):
    h = Hooks(ctx, args=("sh", "-c", "echo process >> /cf/log"))
    h.log("startContainer", "first")
    h.add("startContainer", "exit 3")
    h.log("startContainer", "after-failure")
    c, _ = ctx.create(h.cfg)
    return h, c, c.start(check=False)


@case("hooks.startContainer-fails-stops", "runtime.md#Lifecycle")
def start_container_fails_stops(ctx):
    """A failing startContainer hook stops the container: nothing after it runs."""
    h, c, _ = _start_hook_fails(ctx)
    ctx.check(ctx.wait(lambda: _no_container_left(ctx, c.id) is None, 5), _no_container_left(ctx, c.id) or "")
    ctx.check(h.lines() == ["first"], f"the log is {h.lines()} (after the failure nothing may run)")


@case("hooks.startContainer-fails-errors", "runtime.md#Lifecycle")
def start_container_fails_errors(ctx):
    """A failing startContainer hook is an error of start."""
    h, c, p = _start_hook_fails(ctx)
    ctx.expect_error(p, "start with a failing startContainer hook")


@case("hooks.poststart-fails-others-run", "runtime.md#Lifecycle")
def poststart_fails(ctx):
    """A failing poststart hook is a warning: the remaining hooks run, the container runs on."""
    h = Hooks(ctx)
    h.log("poststart", "first")
    h.add("poststart", "exit 3")
    h.log("poststart", "after-failure")
    c, _ = ctx.create(h.cfg)
    c.start(check=False)
    ctx.wait(lambda: "after-failure" in h.lines(), 5)
    ctx.check(h.lines() == ["first", "after-failure"], f"the log is {h.lines()}")
    ctx.check(c.state().get("status") == "running", f"the container is {c.state().get('status')}")


@case("hooks.poststop-fails-others-run", "runtime.md#Lifecycle")
def poststop_fails(ctx):
    """A failing poststop hook is a warning: the remaining hooks run and delete completes."""
    h = Hooks(ctx, args=("true",))
    h.log("poststop", "first")
    h.add("poststop", "exit 3")
    h.log("poststop", "after-failure")
    c = ctx.started(h.cfg)
    c.wait_stopped()
    c.call("delete", c.id)
    ctx.check(h.lines() == ["first", "after-failure"], f"the log is {h.lines()}")
    ctx.check(c.try_state() is None, "the container is still there after delete")


@case("hooks.create-failure-runs-poststop", "runtime.md#Lifecycle")
def create_failure_poststop(ctx):
    """After a failing createRuntime hook the lifecycle goes on at destroy: poststop runs."""
    h = Hooks(ctx, args=("true",))
    h.add("createRuntime", "exit 3")
    h.log("poststop")
    b = ctx.bundle(h.cfg)
    cid = ctx.new_id()
    ctx.expect_error(ctx.call("create", "--bundle", b, cid), "create with a failing createRuntime hook")
    ctx.check(h.lines() == ["poststop"], f"when create returned, the log was {h.lines()}: poststop did not run")
