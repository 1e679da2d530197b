"""A real caller: Podman (through conmon) with pyrun as its OCI runtime.

Podman runs with its own root/runroot/tmpdir, cgroupfs and file events (no systemd
here), and explicit ulimits (the bounding set lacks CAP_SYS_RESOURCE, see
../shared/CALLERS.md)."""
import os
import shutil
import subprocess
import tarfile

import pytest

from tests.conftest import PYRUN

ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


@pytest.fixture(scope="module")
def podman(tmp_path_factory, busybox_rootfs):
    if os.getuid() != 0:
        pytest.skip("needs root")
    for tool in ("podman", "conmon"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/libexec/podman/{tool}"):
            pytest.skip(f"{tool} is not installed")
    top = tmp_path_factory.mktemp("podman")
    base = ["podman", "--root", str(top / "root"), "--runroot", str(top / "runroot"),
            "--tmpdir", str(top / "tmp"), "--cgroup-manager", "cgroupfs", "--events-backend", "file",
            "--runtime", PYRUN]

    def pm(*args, timeout=60, check=True):
        p = subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check:
            assert p.returncode == 0, f"podman {' '.join(args)}: {p.stderr}"
        return p
    tar = top / "rootfs.tar"
    with tarfile.open(tar, "w") as t:
        t.add(busybox_rootfs, arcname=".")
    pm("import", str(tar), "localhost/pyrun-test:latest")
    yield pm
    pm("rm", "-a", "-f", check=False)
    subprocess.run([*base, "system", "reset", "-f"], capture_output=True, timeout=60)


def test_podman_run_passes_output_and_exit_status(podman):
    p = podman("run", "--rm", *ULIMITS, "localhost/pyrun-test:latest", "sh", "-c",
               "echo hello via pyrun; id -u; exit 3", check=False)
    assert p.returncode == 3, p.stderr
    assert p.stdout.splitlines() == ["hello via pyrun", "0"]


def test_podman_detached_exec_stop_rm(podman):
    podman("run", "-d", "--name", "pm1", *ULIMITS, "localhost/pyrun-test:latest", "sleep", "1000")
    p = podman("exec", "pm1", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '")
    assert p.stdout.strip() == "sleep 1000"
    assert "pm1" in podman("ps", "--format", "{{.Names}}").stdout.split()
    podman("stop", "-t", "1", "pm1")
    podman("rm", "pm1")
    assert "pm1" not in podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
