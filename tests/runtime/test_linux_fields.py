"""The remaining Linux fields (issue 20): memoryPolicy, netDevices, --pidfd-socket."""
import os
import shutil
import subprocess

import pytest

from tests.support.bundle import read_config, write_config

PROBES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probes")


def _edit(b, fn):
    cfg = read_config(b)
    fn(cfg)
    write_config(b, cfg)
    return b


@pytest.fixture(scope="module")
def mempolicy_probe(tmp_path_factory):
    if not shutil.which("gcc"):
        pytest.skip("needs gcc to build the get_mempolicy probe")
    out = str(tmp_path_factory.mktemp("probe") / "mempolicy")
    subprocess.run(["gcc", "-static", "-O1", "-o", out, os.path.join(PROBES, "mempolicy.c")], check=True)
    return out


def test_memory_policy_reaches_the_program(pyrun, bundle, mempolicy_probe):
    b = bundle(["/mempolicy"], private_rootfs=True)
    shutil.copy(mempolicy_probe, os.path.join(b, "rootfs", "mempolicy"))
    assert pyrun.run_ok(b).split() == ["0", "0", "0"]  # MPOL_DEFAULT without the field
    _edit(b, lambda c: c["linux"].__setitem__("memoryPolicy", {
        "mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}))
    assert pyrun.run_ok(b).split() == ["3", str(1 << 15), "1"]
    _edit(b, lambda c: c["process"].__setitem__("args", ["sleep", "100"]))
    pyrun("run", "-d", "-b", b, "mp", check=True)
    assert pyrun("exec", "mp", "/mempolicy", check=True).stdout.split() == ["3", str(1 << 15), "1"]


def test_memory_policy_the_kernel_refuses_fails_create(pyrun, bundle):
    b = _edit(bundle(["true"]), lambda c: c["linux"].__setitem__("memoryPolicy", {"mode": "MPOL_BIND", "nodes": "63"}))
    p = pyrun("create", "-b", b, "mp-bad")
    assert p.returncode != 0 and len(p.stderr.splitlines()) == 1 and "memory policy" in p.stderr, p.stderr
    assert pyrun.ids() == []
