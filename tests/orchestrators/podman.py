"""A Podman of the tests' own: its store, run root and tmpdir in a temp dir, its
containers.conf the docs' snippet (named by CONTAINERS_CONF), cgroupfs and file events (no
systemd here). One per test module: Podman calls are slow, its store is shared."""
import os
import shutil
import subprocess

from tests.orchestrators import docs, images

IMAGE = "localhost/or-busybox:latest"


def missing() -> str | None:
    """Why Podman cannot run here, or None."""
    if os.getuid() != 0:
        return "needs root"
    for tool in ("podman", "conmon"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/libexec/podman/{tool}"):
            return f"{tool} is not installed"
    return None


class Podman:
    def __init__(self, top: str, pyrun: str):
        self.top = top
        self.pyrun = pyrun
        self.conf = os.path.join(top, "containers.conf")
        with open(self.conf, "w") as f:
            f.write(docs.snippet("containers.conf", pyrun))
        self.base = ["podman", "--root", os.path.join(top, "root"),
                     "--runroot", os.path.join(top, "runroot"), "--tmpdir", os.path.join(top, "tmp"),
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file"]

    def env(self, conf: str | None = None) -> dict:
        return {**os.environ, "CONTAINERS_CONF": conf or self.conf}

    def __call__(self, *args, runtime: str | None = None, check: bool = True, timeout: int = 60,
                 input: str | None = None, conf: str | None = None) -> subprocess.CompletedProcess:
        """`podman --runtime RUNTIME ARGS` (pyrun unless told); check=True asserts exit 0."""
        argv = [*self.base, "--runtime", runtime or self.pyrun, *args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env(conf),
                           input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check:
            assert p.returncode == 0, f"podman {' '.join(args)} ({p.returncode}): {p.stderr}"
        return p

    def import_busybox(self) -> str:
        tar = images.rootfs_tar(os.path.join(self.top, "rootfs.tar"))
        self("import", "--change", "ENV=PATH=/bin", tar, IMAGE)
        return IMAGE

    def inspect(self, name: str, fmt: str) -> str:
        return self("inspect", "--format", fmt, name).stdout.strip()

    def teardown(self) -> None:
        subprocess.run([*self.base, "--runtime", self.pyrun, "pod", "rm", "-a", "-f"],
                       capture_output=True, timeout=120, env=self.env())
        subprocess.run([*self.base, "--runtime", self.pyrun, "rm", "-a", "-f", "-t", "0"],
                       capture_output=True, timeout=120, env=self.env())
        subprocess.run([*self.base, "system", "reset", "-f"], capture_output=True, timeout=120,
                       env=self.env())
        shutil.rmtree(self.top, ignore_errors=True)
