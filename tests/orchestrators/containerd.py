"""A containerd of the tests' own: root, state, sockets and config.toml in a temp dir, the
CRI plugin on (its pause image ours, no CNI: sandboxes use the host network), with two
runtime handlers: `pyrun` (the docs' snippet: runc's shim, BinaryName pyrun) and `runc`.
Started and stopped by the tests; the host's containerd (if any) is never touched."""
import json
import os
import shutil
import signal
import subprocess
import time

from tests.orchestrators import docs, images

IMAGE = "localhost/or-busybox:latest"
PAUSE_IMAGE = "localhost/or-pause:latest"
SHIM = "io.containerd.runc.v2"
CRI_NAMESPACE = "k8s.io"  # where the CRI plugin keeps its images and containers


def missing() -> str | None:
    """Why containerd cannot run here, or None."""
    if os.getuid() != 0:
        return "needs root"
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if not shutil.which(tool):
            return f"{tool} is not installed (Debian: apt-get install containerd)"
    return None


def config_toml(top: str, pyrun: str, runc: str | None) -> str:
    own = f'''version = 2
root = "{top}/root"
state = "{top}/state"

[grpc]
  address = "{top}/containerd.sock"

[ttrpc]
  address = "{top}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{top}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = {"true" if _lacks_cap_sys_resource() else "false"}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{top}/cni/bin"
    conf_dir = "{top}/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "pyrun"
'''
    if runc:
        own += f'''  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "{SHIM}"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      BinaryName = "{runc}"
'''
    return own + "\n" + docs.snippet("containerd-runtime", pyrun)


CAP_SYS_RESOURCE = 24


def _lacks_cap_sys_resource() -> bool:
    """The CRI plugin gives a sandbox oom_score_adj -998; lowering it takes
    CAP_SYS_RESOURCE, which this machine's bounding set lacks (runc fails there too:
    "can't get final child's PID from pipe"). Where it is missing, the plugin is told to
    keep scores at or above its own (restrict_oom_score_adj, as for rootless nodes)."""
    with open("/proc/self/status") as f:
        bounding = next(int(l.split()[1], 16) for l in f if l.startswith("CapBnd:"))
    return not bounding >> CAP_SYS_RESOURCE & 1


class Containerd:
    def __init__(self, top: str, pyrun: str, runc: str | None):
        self.top = top
        self.pyrun = pyrun
        self.socket = os.path.join(top, "containerd.sock")
        for d in ("cni/bin", "cni/conf"):
            os.makedirs(os.path.join(top, d), exist_ok=True)
        self.config = os.path.join(top, "config.toml")
        with open(self.config, "w") as f:
            f.write(config_toml(top, pyrun, runc))
        self.log = open(os.path.join(top, "containerd.log"), "w")
        self.proc = subprocess.Popen(["containerd", "--config", self.config], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self, tries: int = 300) -> None:
        for _ in range(tries):
            if self.proc.poll() is not None:
                raise AssertionError(f"containerd exited {self.proc.returncode}: {self.log_tail()}")
            if os.path.exists(self.socket) and self.ctr("version", check=False).returncode == 0:
                return
            time.sleep(0.05)
        raise AssertionError(f"containerd never answered on {self.socket}: {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        self.log.flush()
        with open(self.log.name) as f:
            return "".join(f.readlines()[-lines:])

    def ctr(self, *args, namespace: str = "or-ctr", check: bool = True, timeout: int = 60,
            input: str | None = None, **kw) -> subprocess.CompletedProcess:
        argv = ["ctr", "--address", self.socket, "--namespace", namespace, *args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL, **kw)
        if check:
            assert p.returncode == 0, f"ctr {' '.join(args)} ({p.returncode}): {p.stderr}"
        return p

    def import_images(self, namespace: str) -> None:
        archive = images.oci_archive(os.path.join(self.top, "images.tar"), {
            IMAGE: images.busybox_image(["sh"]), PAUSE_IMAGE: images.pause_image()})
        self.ctr("images", "import", archive, namespace=namespace)

    def tasks(self, namespace: str = "or-ctr") -> dict[str, str]:
        """task id → status (RUNNING, PAUSED, STOPPED, …)."""
        out = self.ctr("tasks", "ls", namespace=namespace).stdout.splitlines()[1:]
        return {line.split()[0]: line.split()[2] for line in out if line.strip()}

    def containers(self, namespace: str = "or-ctr") -> list[str]:
        return self.ctr("containers", "ls", "-q", namespace=namespace).stdout.split()

    def teardown(self) -> None:
        """Every task killed and deleted, every container removed, then containerd stopped
        (its shims leave with their tasks)."""
        namespaces = []
        try:
            namespaces = self.ctr("namespaces", "ls", "-q", check=False).stdout.split()
            for ns in namespaces:
                for cid in self.tasks(ns):
                    self.ctr("tasks", "delete", "-f", cid, namespace=ns, check=False, timeout=30)
                for cid in self.containers(ns):
                    self.ctr("containers", "delete", cid, namespace=ns, check=False)
        finally:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
            _unmount_under(self.top)
            shutil.rmtree(self.top, ignore_errors=True)
            _remove_empty_cgroup_parents()
            for ns in namespaces:
                try:  # the shim's --root for the namespace, left empty by the runtime
                    os.rmdir(os.path.join(RUNTIME_ROOT_TOP, ns))
                except OSError:
                    pass


RUNTIME_ROOT_TOP = "/run/containerd/runc"  # the shim's --root is RUNTIME_ROOT_TOP/<namespace>
CGROUP_V1 = "/sys/fs/cgroup"
# Every cgroup parent the tests make starts so: ctr's /<namespace> (or-ctr) and the pods'
# cgroup_parent (or-kubepods/pod<uid>). Runtimes remove a container's own cgroup, not these.
CGROUP_PREFIX = "or-"


def _remove_empty_cgroup_parents() -> None:
    """The tests' cgroup parents, deepest first; one still holding a cgroup stays."""
    for hierarchy in os.listdir(CGROUP_V1):
        top = os.path.join(CGROUP_V1, hierarchy)
        try:
            names = [n for n in os.listdir(top) if n.startswith(CGROUP_PREFIX)]
        except OSError:
            continue
        for name in names:
            for path, _dirs, _files in sorted(os.walk(os.path.join(top, name)), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(path)
                except OSError:
                    pass


def _unmount_under(top: str) -> None:
    """Snapshot or sandbox mounts containerd left below `top` (deepest first)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(top + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def metrics(c: Containerd, cid: str, namespace: str = "or-ctr") -> dict:
    return json.loads(c.ctr("tasks", "metrics", "--format", "json", cid, namespace=namespace).stdout)


def on_pty(argv: list[str], timeout: int = 30) -> tuple[int, str]:
    """Run `argv` with a terminal as its stdin/stdout/stderr (ctr -t wants one): its
    exit status and all it wrote."""
    import pty
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every holder of the slave is gone
                break
            if not chunk:
                break
            out += chunk
        status = p.wait(timeout=timeout)
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
    return status, out.decode(errors="replace").replace("\r\n", "\n")
