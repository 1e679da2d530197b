"""The runtime under test, driven through its runc-style CLI, and what a case works with.

`Run` is one run of the suite against one runtime: a fresh --root, a work directory, a copy of
busybox, IDs prefixed `cf-<token>-`. `Context` is one case: its directory, bundles, containers,
namespace holders, console sockets, all undone by `close` whatever the case did (every
container it made is deleted with --force, and one still there afterwards fails the case).
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from conformance import bundle as bundles
from conformance import host
from conformance.suite import Failed, Skipped

RUNTIME_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Set in every runtime's environment: a container must never see it (process.env is all it gets).
LEAK_VAR = "CF_RUNTIME_ENVIRONMENT"
CALL_TIMEOUT = 20.0
# Host nodes a runtime hands to containers (bind mounts in a user namespace, stdio): they must
# be as they were when the run ends.
HOST_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")


class Proc:
    """A finished runtime call: its status (None when it had to be killed) and output."""

    def __init__(self, args, rc, out, err):
        self.args, self.rc, self.out, self.err = args, rc, out, err

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def why(self) -> str:
        """The runtime's own words, for a failure reason."""
        what = "killed after its timeout" if self.rc is None else f"exit {self.rc}"
        text = (self.err.strip() or self.out.strip()).splitlines()
        return f"`{' '.join(self.args[:2])}` {what}: {text[-1] if text else '(no output)'}"


class Run:
    """One run against one runtime binary."""

    def __init__(self, runtime: str, workdir: str | None = None, keep: bool = False):
        found = shutil.which(runtime)
        if not found:
            raise SystemExit(f"conformance: runtime not found: {runtime}")
        self.runtime = os.path.abspath(found)
        self.token = secrets.token_hex(3)
        self.dir = tempfile.mkdtemp(prefix=f"cf-{self.token}-", dir=workdir)
        os.chmod(self.dir, 0o755)  # containers running as other users reach their bundles
        self.root = os.path.join(self.dir, "state")
        self.busybox = os.path.join(self.dir, "busybox")
        shutil.copy2(bundles.BUSYBOX, self.busybox)
        self.keep = keep
        self.env = {"PATH": RUNTIME_PATH_ENV, LEAK_VAR: "leaked"}
        # A runtime's stdin is an empty file of the run's, never the host's /dev/null: a runtime
        # may chown its stdio to the container's root (crun 1.8.1 does, in a user namespace),
        # and the host's /dev/null would then belong to an unprivileged id.
        self.stdin = os.path.join(self.dir, "stdin")
        open(self.stdin, "w").close()
        self.devices = {p: _owner_mode(p) for p in HOST_DEVICES if os.path.exists(p)}

    def call(self, args, timeout=CALL_TIMEOUT, stdin=None, stdout=None, stderr=None, cwd=None,
             env=None, pass_fds=(), prefix=()) -> Proc:
        """`<runtime> --root R args...`, its stdout/stderr to files (given paths, or temporary
        ones): a container that inherits them would hold a pipe open long after the call."""
        argv = [*prefix, self.runtime, "--root", self.root, *args]
        files = [open(path, "a+b") if path else tempfile.TemporaryFile("w+b", dir=self.dir)
                 for path in (stdout, stderr)]
        empty = open(self.stdin, "rb") if stdin is None else None
        try:
            p = host.spawn(argv, stdin=stdin if stdin is not None else empty,
                           stdout=files[0], stderr=files[1], cwd=cwd, env=env or self.env,
                           pass_fds=pass_fds)
            rc = host.finish(p, max(timeout, 0.1))
            texts = []
            for f in files:
                f.seek(0)
                texts.append(f.read().decode(errors="replace"))
            return Proc(list(args), rc, *texts)
        finally:
            for f in files:
                f.close()
            if empty:
                empty.close()

    def ids(self) -> list[str]:
        try:
            return sorted(os.listdir(self.root))
        except OSError:
            return []

    def close(self) -> list[str]:
        """Delete whatever is left, remove the work directory; what could not be removed."""
        problems = []
        for cid in self.ids():
            if cid.startswith("cf-"):
                self.call(["delete", "--force", cid], timeout=10)
        for path, was in self.devices.items():
            now = _owner_mode(path)
            if now != was:  # put the host right, and say who did it
                os.chown(path, was[0], was[1])
                os.chmod(path, was[2])
                problems.append(f"the runtime changed the host's {path} (owner {now[0]}:{now[1]}, mode "
                                f"{now[2]:o}; was {was[0]}:{was[1]}, {was[2]:o}): restored")
        if self.keep:
            return problems
        leaked = host.mounts_under(self.dir)
        if leaked:
            problems.append(f"mounts left on the host, {self.dir} kept: {', '.join(leaked)}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return problems


class Container:
    """A container a case made with `create`; its stdio went to files in the case directory."""

    def __init__(self, ctx: "Context", cid: str, bundle: str, out: str, err: str):
        self.ctx, self.id, self.bundle, self.out_path, self.err_path = ctx, cid, bundle, out, err

    def call(self, *args, **kw) -> Proc:
        return self.ctx.call(*args, **kw)

    def start(self, check=True) -> Proc:
        p = self.call("start", self.id)
        if check and not p.ok:
            raise Failed(p.why())
        return p

    def try_state(self) -> dict | None:
        p = self.call("state", self.id)
        if not p.ok:
            return None
        try:
            return json.loads(p.out)
        except ValueError:
            raise Failed(f"state printed no JSON: {p.out[:200]!r}")

    def state(self) -> dict:
        s = self.try_state()
        if s is None:
            raise Failed(f"state {self.id} failed: {self.call('state', self.id).why()}")
        return s

    @property
    def pid(self) -> int:
        return int(self.state()["pid"])

    def kill(self, sig="KILL", check=True) -> Proc:
        p = self.call("kill", self.id, str(sig))
        if check and not p.ok:
            raise Failed(p.why())
        return p

    def delete(self, force=False, check=True) -> Proc:
        p = self.call("delete", *(["--force"] if force else []), self.id)
        if check and not p.ok:
            raise Failed(p.why())
        return p

    def wait_stopped(self, timeout=10.0) -> dict:
        """Until the container's process has exited and `state` says so."""
        s = self.state()
        if s.get("pid"):
            host.wait_gone(int(s["pid"]), min(timeout, self.ctx.left()))
        end = time.monotonic() + min(timeout, self.ctx.left())
        while True:
            s = self.state()
            if s.get("status") == "stopped" or time.monotonic() > end:
                return s
            time.sleep(0.02)

    def wait_output(self, text: str, timeout=10.0) -> str:
        """Until the container has written text to its stdout; what it wrote."""
        end = time.monotonic() + min(timeout, self.ctx.left())
        while True:
            out = self.output()
            if text in out or time.monotonic() > end:
                return out
            time.sleep(0.02)

    def output(self) -> str:
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def errors(self) -> str:
        with open(self.err_path, errors="replace") as f:
            return f.read()


class Holder:
    """A host process in namespaces of its own (made by unshare(1)), for a container to join."""

    def __init__(self, ctx: "Context", flags: list[str]):
        argv = ["unshare", *flags, "sleep", "1000"]
        self.proc = host.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
        self.pid = self.proc.pid
        if "--fork" in flags or "-f" in flags:  # the namespaces' process is unshare's child
            self.pid = self._child(ctx)
        end = time.monotonic() + 5
        # unshare execs sleep once the namespaces are made and mapped
        while self._comm() != "sleep" and time.monotonic() < end:
            time.sleep(0.01)
        if self._comm() != "sleep":
            why = "timeout"
            if self.proc.poll() is not None:
                why = self.proc.stderr.read().decode(errors="replace").strip()
            raise Skipped(f"unshare {' '.join(flags)} failed: {why}")

    def _child(self, ctx) -> int:
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    kids = f.read().split()
                if kids:
                    return int(kids[0])
            except OSError:
                break
            time.sleep(0.01)
        raise Skipped("unshare --fork made no child")

    def _comm(self) -> str:
        try:
            with open(f"/proc/{self.pid}/comm") as f:
                return f.read().strip()
        except OSError:
            return ""

    def ns(self, kind: str) -> str:
        return host.ns(self.pid, kind)

    def path(self, kind: str) -> str:
        return f"/proc/{self.pid}/ns/{kind}"

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        host.finish(self.proc, 5)


class ConsoleSocket:
    """The --console-socket a runtime sends the terminal's master to (SCM_RIGHTS)."""

    def __init__(self, ctx: "Context"):
        self.path = ctx.path(f"console-{len(ctx._closers)}.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.master: int | None = None
        self.error = ""
        self._got = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        try:
            conn, _ = self.sock.accept()
            with conn:
                msg, fds, _, _ = socket.recv_fds(conn, 4096, 4)
            if fds:
                self.master = fds[0]
                for extra in fds[1:]:
                    os.close(extra)
            else:
                self.error = "no fd received on the console socket"
        except OSError as e:
            self.error = str(e)
        self._got.set()

    def wait_master(self, timeout: float) -> int:
        if not self._got.wait(timeout) or self.master is None:
            raise Failed(f"no terminal master on --console-socket ({self.error or 'nothing sent'})")
        return self.master

    def read_until(self, marker: bytes, timeout: float) -> bytes:
        """What the terminal printed, until marker, EOF/EIO, or timeout."""
        import select
        fd = self.wait_master(timeout)
        out = b""
        end = time.monotonic() + timeout
        while marker not in out and time.monotonic() < end:
            if not select.select([fd], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        return out

    def close(self):
        self.sock.close()
        if self.master is not None:
            os.close(self.master)
            self.master = None


class Context:
    """What a case works with. Everything it makes is undone by close()."""

    def __init__(self, run: Run, case, index: int):
        self.run, self.case, self.index = run, case, index
        self.deadline = time.monotonic() + case.timeout
        self.dir = os.path.join(run.dir, f"case{index:03d}")
        os.makedirs(self.dir)
        self._ids: list[str] = []
        self._closers: list = []
        self._cgroup_dirs: list[str] = []
        self._cgroup_paths: list[str] = []
        self._bundles = 0

    # --- decisions -------------------------------------------------------------------------
    def check(self, cond, message: str) -> None:
        if not cond:
            raise Failed(message)

    def fail(self, message: str):
        raise Failed(message)

    def skip(self, reason: str):
        raise Skipped(reason)

    def expect_error(self, p: Proc, what: str) -> None:
        """The operation must have generated an error (and not hung)."""
        if p.rc is None:
            raise Failed(f"{what}: the runtime hung (killed after its timeout)")
        if p.rc == 0:
            raise Failed(f"{what}: the runtime reported success")

    def wait(self, cond, timeout: float = 10.0) -> bool:
        """Until cond() is true (polled), at most timeout seconds; its last value."""
        end = time.monotonic() + min(timeout, self.left())
        while not cond():
            if time.monotonic() > end:
                return bool(cond())
            time.sleep(0.02)
        return True

    # --- places ----------------------------------------------------------------------------
    def left(self) -> float:
        return max(self.deadline - time.monotonic(), 0.5)

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def mkdir(self, *parts: str, mode=0o755) -> str:
        p = self.path(*parts)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, mode)
        return p

    def new_id(self) -> str:
        cid = f"cf-{self.run.token}-{self.index}-{len(self._ids)}"
        self._ids.append(cid)
        return cid

    def track(self, cid: str) -> None:
        """An ID the case did not get from new_id, to delete at close all the same."""
        self._ids.append(cid)

    def config(self) -> dict:
        return bundles.base_config()

    def bundle(self, config: dict, files: dict | None = None, name: str | None = None) -> str:
        """A bundle directory: a busybox rootfs (plus files: path → text) and config.json."""
        self._bundles += 1
        b = self.path(name or f"bundle{self._bundles}")
        os.makedirs(b)
        rootfs = config.get("root", {}).get("path", "rootfs")
        if not os.path.isabs(rootfs):
            bundles.make_rootfs(os.path.join(b, rootfs), self.run.busybox)
        for rel, text in (files or {}).items():
            target = os.path.join(b, rootfs if not os.path.isabs(rootfs) else rootfs, rel.lstrip("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            bundles.write(target, text, 0o755)
        bundles.write_config(b, config)
        return b

    # --- the runtime -----------------------------------------------------------------------
    def call(self, *args, timeout=None, **kw) -> Proc:
        return self.run.call(list(args), timeout=min(timeout or CALL_TIMEOUT, self.left()), **kw)

    def create(self, config: dict | str, cid: str | None = None, args=(), check=True,
               files=None, cwd=None, prefix=(), pass_fds=()) -> tuple[Container, Proc]:
        """`create` (config: a dict, or a bundle path); the container's stdio to files."""
        b = config if isinstance(config, str) else self.bundle(config, files=files)
        cid = cid or self.new_id()
        out, err = self.path(f"{cid}.out"), self.path(f"{cid}.err")
        p = self.run.call(["create", "--bundle", b, *args, cid], timeout=min(CALL_TIMEOUT, self.left()),
                          stdout=out, stderr=err, cwd=cwd, prefix=prefix, pass_fds=pass_fds)
        if check and not p.ok:
            raise Failed(p.why())
        return Container(self, cid, b, out, err), p

    def started(self, config: dict, **kw) -> Container:
        """create + start."""
        c, _ = self.create(config, **kw)
        c.start()
        return c

    def run_container(self, config: dict | str, cid=None, args=(), files=None, timeout=None) -> Proc:
        """`run` in the foreground: the container's stdout and stderr are the call's."""
        b = config if isinstance(config, str) else self.bundle(config, files=files)
        return self.call("run", "--bundle", b, *args, cid or self.new_id(), timeout=timeout)

    def sh(self, script: str, config: dict | None = None, files=None, check=True) -> str:
        """Run `sh -c script` in a container (the base config, or config); its stdout."""
        config = config or self.config()
        config["process"]["args"] = ["sh", "-c", script]
        p = self.run_container(config, files=files)
        if check and not p.ok:
            raise Failed(p.why())
        return p.out

    # --- host helpers ----------------------------------------------------------------------
    def holder(self, *flags: str) -> Holder:
        h = Holder(self, list(flags))
        self._closers.append(h)
        return h

    def console_socket(self) -> ConsoleSocket:
        cs = ConsoleSocket(self)
        self._closers.append(cs)
        return cs

    def cgroups_path(self, suffix: str = "") -> str:
        """A cgroupsPath for this case; close() fails the case if the runtime leaves it behind."""
        path = f"/cf-{self.run.token}-{self.index}{suffix}"
        self._cgroup_paths.append(path)
        return path

    def own_cgroup_dir(self, path: str) -> str:
        """A cgroup directory the case makes itself (a parent); removed at close."""
        os.makedirs(path, exist_ok=True)
        self._cgroup_dirs.append(path)
        return path

    def close(self) -> str:
        """Undo the case; a non-empty reason when something could not be undone."""
        problems = []
        for cid in self._ids:
            if not os.path.exists(os.path.join(self.run.root, cid)) and self.run.call(
                    ["state", cid], timeout=10).rc != 0:
                continue
            p = self.run.call(["delete", "--force", cid], timeout=10)
            if self.run.call(["state", cid], timeout=10).ok:
                problems.append(f"{cid} is still there after delete --force ({p.why()})")
        for closer in reversed(self._closers):
            try:
                closer.close()
            except OSError:
                pass
        for path in self._cgroup_paths:
            for d in host.cgroup_hierarchy_dirs(path):
                problems.append(f"the runtime left the cgroup {d}")
                _rmdir_tree(d)
        for d in reversed(self._cgroup_dirs):
            _rmdir_tree(d, keep_top=True)
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as e:
                problems.append(f"cgroup {d} cannot be removed: {e.strerror}")
        if not self.run.keep:
            leaked = host.mounts_under(self.dir)
            if leaked:
                problems.append(f"mounts left on the host: {', '.join(leaked)}")
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
        return "; ".join(problems)


def _rmdir_tree(d: str, keep_top: bool = False) -> None:
    """Remove the (empty) cgroup directories below d, and d itself unless keep_top."""
    for sub in sorted((os.path.join(r, n) for r, ds, _ in os.walk(d) for n in ds), reverse=True):
        try:
            os.rmdir(sub)
        except OSError:
            pass
    if not keep_top:
        try:
            os.rmdir(d)
        except OSError:
            pass


def _owner_mode(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid, st.st_mode & 0o7777
