"""Shared fixtures: a private pyrun state root per test, busybox bundles, the real CLI."""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
# PYRUN_BINARY runs the suite against another build (an older tree, to see a regression
# test fail without its fix).
PYRUN = os.environ.get("PYRUN_BINARY") or os.path.join(BIN, "pyrun")


_SESSION_LOCK = "/tmp/pyrun-tests.lock"


def pytest_configure(config):
    """One test session at a time on a machine: containers of two sessions would share
    IDs, cgroup paths and the host's mount table. (CI runs one; developers may not.)"""
    import fcntl
    fd = os.open(_SESSION_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.stderr.write(f"waiting for another test session ({_SESSION_LOCK})\n")
        fcntl.flock(fd, fcntl.LOCK_EX)
    config._pyrun_session_lock = fd  # held until the process exits


def pytest_report_header(config):
    return f"pyrun: {PYRUN}; uid {os.getuid()}; kernel {os.uname().release}"


@pytest.fixture
def root_required():
    if os.getuid() != 0:
        pytest.skip("needs root: real namespaces, mounts and cgroups")


class Pyrun:
    """The real `pyrun` binary against a private --root."""

    def __init__(self, root: str):
        self.root = root

    def __call__(self, *args, check=False, input=None, timeout=30, env=None, cwd=None, global_args=()):
        # Files, not pipes: a detached container inherits pyrun's stdio and would hold a
        # pipe open long after pyrun exits (runc's callers do the same).
        import tempfile
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            p = subprocess.run([PYRUN, "--root", self.root, *global_args, *args], stdout=out, stderr=err,
                               text=True, input=input, timeout=timeout, env=env, cwd=cwd,
                               stdin=None if input is not None else subprocess.DEVNULL)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        if check and p.returncode != 0:
            raise AssertionError(f"pyrun {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def run_ok(self, bundle: str, cid: str = "c1") -> str:
        """`run` in the foreground, which must exit 0: the container's stdout."""
        p = self("run", "-b", bundle, cid)
        assert p.returncode == 0, p.stderr
        return p.stdout

    def ids(self) -> list[str]:
        try:
            return sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []


@pytest.fixture
def pyrun(tmp_path, root_required):
    state_root = str(tmp_path / "state")
    runner = Pyrun(state_root)
    yield runner
    for cid in runner.ids():  # never leave a container behind, whatever the test did
        # bounded: a delete that hangs fails this test by name, not the whole run by its timeout
        subprocess.run([PYRUN, "--root", state_root, "delete", "--force", cid], capture_output=True, timeout=120)
    shutil.rmtree(state_root, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory):
    """One shared read-only busybox rootfs; bundles point at it."""
    from tests.support.bundle import make_rootfs
    return make_rootfs(str(tmp_path_factory.mktemp("busybox") / "rootfs"))


@pytest.fixture
def bundle(tmp_path, busybox_rootfs):
    """make(args, **config changes) → bundle dir whose rootfs is a private busybox copy."""
    from tests.support.bundle import make_bundle
    count = [0]

    def make(args=("true",), private_rootfs=False, **changes):
        count[0] += 1
        path = str(tmp_path / f"bundle{count[0]}")
        return make_bundle(path, args=args, rootfs=None if private_rootfs else busybox_rootfs, **changes)
    return make
