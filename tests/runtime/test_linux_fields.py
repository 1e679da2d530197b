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


@pytest.fixture
def dummy():
    """An interface of the host's to move, made with ip(8) (a test tool), gone afterwards: a
    dummy where the kernel has the driver, else one end of a veth pair."""
    if not shutil.which("ip"):
        pytest.skip("needs ip(8) to make an interface")
    name = "pyd" + os.urandom(3).hex()
    for kind in (["dummy"], ["veth", "peer", "name", name + "p"]):
        p = subprocess.run(["ip", "link", "add", name, "type", *kind], capture_output=True, text=True)
        if p.returncode == 0:
            break
    else:
        pytest.skip(f"cannot make a dummy or veth interface here: {p.stderr.strip()}")
    yield name
    subprocess.run(["ip", "link", "del", name], capture_output=True)


def test_net_device_moves_in_and_back_out_after_delete(pyrun, bundle, dummy):
    b = _edit(bundle(["sleep", "100"]), lambda c: c["linux"].__setitem__("netDevices", {dummy: {"name": "eth9"}}))
    pyrun("run", "-d", "-b", b, "nd", check=True)
    assert not os.path.exists(f"/sys/class/net/{dummy}")
    out = pyrun("exec", "nd", "ls", "/sys/class/net", check=True).stdout.split()
    assert sorted(out) == ["eth9", "lo"]
    pyrun("delete", "-f", "nd", check=True)
    assert os.path.exists(f"/sys/class/net/{dummy}")  # back, under its host name


def test_net_device_is_up_inside_with_its_addresses(pyrun, bundle, dummy):
    """config-linux.md: set up in the container, its permanent global addresses kept (the
    kernel drops them on the move)."""
    subprocess.run(["ip", "addr", "add", "10.211.7.1/24", "dev", dummy], check=True)
    subprocess.run(["ip", "addr", "add", "fd00:211::7/64", "dev", dummy, "nodad"], check=True)
    b = _edit(bundle(["sleep", "100"]), lambda c: c["linux"].__setitem__("netDevices", {dummy: {"name": "eth9"}}))
    pyrun("run", "-d", "-b", b, "nd", check=True)
    try:
        flags = pyrun("exec", "nd", "cat", "/sys/class/net/eth9/flags", check=True).stdout
        assert int(flags, 16) & 0x1, flags  # IFF_UP
        addrs = pyrun("exec", "nd", "busybox", "ip", "-o", "addr", "show", "dev", "eth9", check=True).stdout
        assert "inet 10.211.7.1/24" in addrs and "inet6 fd00:211::7/64" in addrs, addrs
    finally:
        pyrun("delete", "-f", "nd", check=True)


def test_a_name_taken_inside_is_refused_and_the_device_stays(pyrun, bundle, dummy):
    """lo exists in every network namespace: the move would succeed and the rename fail, so
    the name is checked first and the device never leaves the host."""
    b = _edit(bundle(["true"]), lambda c: c["linux"].__setitem__("netDevices", {dummy: {"name": "lo"}}))
    p = pyrun("create", "-b", b, "nd-lo")
    assert p.returncode != 0 and len(p.stderr.splitlines()) == 1 and "already has a device named lo" in p.stderr
    assert pyrun.ids() == [] and os.path.exists(f"/sys/class/net/{dummy}")


@pytest.mark.parametrize("change,needle", [
    (lambda c, d: c["linux"].__setitem__("netDevices", {"nosuchdev0": {}}), "no network device"),
    (lambda c, d: c["linux"].__setitem__("netDevices", {d: {"name": "a/b"}}), "not an interface name"),
    (lambda c, d: (c["linux"].__setitem__("netDevices", {d: {}}),
                   c["linux"].__setitem__("namespaces", [n for n in c["linux"]["namespaces"]
                                                         if n["type"] != "network"])), "network namespace"),
])
def test_net_devices_refused(pyrun, bundle, dummy, change, needle):
    b = _edit(bundle(["true"]), lambda c: change(c, dummy))
    p = pyrun("create", "-b", b, "nd-bad")
    assert p.returncode != 0 and len(p.stderr.splitlines()) == 1 and needle in p.stderr, p.stderr
    assert pyrun.ids() == [] and os.path.exists(f"/sys/class/net/{dummy}")


def test_pidfd_socket_receives_the_inits_pidfd(pyrun, bundle, tmp_path):
    import json
    import signal
    from tests.support.checks import fd_listener, receive_fd
    path = str(tmp_path / "pidfd.sock")
    srv = fd_listener(path)
    pyrun("create", "-b", bundle(["sleep", "100"]), "--pidfd-socket", path, "pfd", check=True)
    fds = [receive_fd(srv)[1]]
    pid = json.loads(pyrun("state", "pfd", check=True).stdout)["pid"]
    signal.pidfd_send_signal(fds[0], signal.SIGKILL)  # the pidfd is the init's: it dies
    import select
    assert select.select([fds[0]], [], [], 10)[0]
    os.close(fds[0])
    assert json.loads(pyrun("state", "pfd", check=True).stdout)["status"] == "stopped"
    assert pid > 0
    p = pyrun("create", "-b", bundle(["true"]), "--pidfd-socket", str(tmp_path / "nosuch"), "pfd2")
    assert p.returncode != 0 and "pidfd socket" in p.stderr and "pfd2" not in pyrun.ids()


def test_delete_after_the_bundle_moved(pyrun, bundle, tmp_path):
    """The record holds what delete needs (the config, its poststop hooks): not the bundle."""
    mark = tmp_path / "poststop-ran"
    b = _edit(bundle(["sleep", "100"]), lambda c: c.__setitem__("hooks", {"poststop": [
        {"path": "/bin/sh", "args": ["sh", "-c", f"touch {mark}"]}]}))
    pyrun("run", "-d", "-b", b, "moved", check=True)
    os.rename(b, b + ".elsewhere")
    pyrun("delete", "-f", "moved", check=True)
    assert pyrun.ids() == [] and mark.exists()
