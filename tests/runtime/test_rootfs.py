"""The container's filesystem: mounts resolved inside the rootfs, devices, masks, pivot."""
import json
import os
import shutil
import time

from tests.support.bundle import read_config, write_config


def test_symlinked_mount_destination_stays_inside_rootfs(pyrun, bundle, tmp_path):
    """An image symlink pointing at a host path must not carry a mount out of the rootfs."""
    host_target = tmp_path / "host-target"
    b = bundle(["sh", "-c", "grep -c escape-probe /proc/self/mountinfo; ls -d /inside/probe"],
               private_rootfs=True)
    rootfs = os.path.join(b, "rootfs")
    os.symlink(str(host_target), os.path.join(rootfs, "evil"))          # absolute
    os.symlink("../../../../../../" + str(host_target).lstrip("/"), os.path.join(rootfs, "evil2"))
    cfg = read_config(b)
    cfg["root"]["readonly"] = False
    cfg["mounts"] += [
        {"destination": "/evil/probe", "type": "tmpfs", "source": "escape-probe", "options": ["size=1m"]},
        {"destination": "/evil2/probe2", "type": "tmpfs", "source": "escape-probe", "options": ["size=1m"]},
    ]
    cfg["mounts"].append({"destination": "/inside", "type": "bind", "source": str(tmp_path / "b"),
                          "options": ["rbind"]})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "probe").mkdir()
    write_config(b, cfg)
    out = pyrun.run_ok(b).split()
    assert out == ["2", "/inside/probe"]
    assert not host_target.exists(), "a mount point was created outside the rootfs"
    # the mount points were made inside the rootfs instead
    assert os.path.isdir(os.path.join(rootfs, str(host_target).lstrip("/"), "probe"))


def test_readonly_root_masked_and_readonly_paths(pyrun, bundle):
    from tests.support.bundle import default_config
    masked = next(p for p in default_config()["linux"]["maskedPaths"]
                  if os.path.isfile(p) and os.path.getsize(p) == 0 and open(p, "rb").read(1))
    b = bundle(["sh", "-c", "touch /newfile 2>/dev/null && echo rw || echo ro;"
                f" wc -c < {masked};"
                " (echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo sys-rw || echo sys-ro;"
                " ls /proc/acpi | wc -l"])
    cfg = read_config(b)
    assert cfg["root"]["readonly"] is True
    assert "/proc/sys" in cfg["linux"]["readonlyPaths"]
    assert pyrun.run_ok(b).split() == ["ro", "0", "sys-ro", "0"]


def test_bind_mount_options_and_tmpfs(pyrun, bundle, tmp_path):
    src = tmp_path / "share"
    src.mkdir()
    (src / "hello.txt").write_text("from host\n")
    b = bundle(["sh", "-c", "cat /data/hello.txt; touch /data/x 2>/dev/null && echo w || echo nw;"
                " touch /scratch/y && echo tw; stat -c %a /scratch;"
                " grep ' /scratch ' /proc/self/mountinfo | grep -c nosuid"])
    cfg = read_config(b)
    cfg["mounts"] += [
        {"destination": "/data", "type": "bind", "source": str(src), "options": ["rbind", "ro"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777", "size=4m"]},
    ]
    write_config(b, cfg)
    assert pyrun.run_ok(b).split() == ["from", "host", "nw", "tw", "1777", "1"]
    assert not (src / "x").exists()


def test_file_bind_mount(pyrun, bundle, tmp_path):
    f = tmp_path / "hosts"
    f.write_text("127.0.0.1 pyrun-test\n")
    b = bundle(["cat", "/etc/hosts"])
    cfg = read_config(b)
    cfg["mounts"].append({"destination": "/etc/hosts", "type": "bind", "source": str(f),
                          "options": ["bind", "ro"]})
    write_config(b, cfg)
    assert pyrun.run_ok(b) == "127.0.0.1 pyrun-test\n"


def test_tmpcopyup(pyrun, bundle):
    b = bundle(["sh", "-c", "cat /etc/passwd | head -1; touch /etc/new && echo ok"], private_rootfs=True)
    cfg = read_config(b)
    cfg["mounts"].append({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                          "options": ["tmpcopyup", "mode=755"]})
    write_config(b, cfg)
    assert pyrun.run_ok(b).split() == ["root:x:0:0:root:/root:/bin/sh", "ok"]
    assert not os.path.exists(os.path.join(b, "rootfs", "etc", "new"))


def test_default_and_configured_devices(pyrun, bundle):
    b = bundle(["sh", "-c", "stat -c '%n %F %t:%T %a' /dev/null /dev/zero /dev/tty /dev/mydev;"
                " stat -c '%u:%g' /dev/mydev; readlink /dev/fd; readlink /dev/ptmx; readlink /dev/stdin"])
    cfg = read_config(b)
    cfg["linux"]["devices"] = [{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 7,
                                "fileMode": 0o640, "uid": 1000, "gid": 1001}]
    write_config(b, cfg)
    lines = pyrun.run_ok(b).splitlines()
    assert lines[:4] == ["/dev/null character special file 1:3 666",
                         "/dev/zero character special file 1:5 666",
                         "/dev/tty character special file 5:0 666",
                         "/dev/mydev character special file 1:7 640"]
    assert lines[4:] == ["1000:1001", "/proc/self/fd", "pts/ptmx", "/proc/self/fd/0"]


def test_no_pivot(pyrun, bundle):
    b = bundle(["sh", "-c", "ls /bin/busybox && hostname"])
    p = pyrun("run", "--no-pivot", "-b", b, "c1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["/bin/busybox", "runc"]


def test_sysctl_in_own_netns(pyrun, bundle):
    b = bundle(["cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/msgmax"])
    cfg = read_config(b)
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.msgmax": "12345"}
    write_config(b, cfg)
    assert pyrun.run_ok(b).split() == ["1", "12345"]


def test_user_namespace_mappings(pyrun, bundle, tmp_path):
    # The mapped root must be able to reach the rootfs: pytest's tmp dirs are 0700.
    import tempfile
    from tests.support.bundle import make_rootfs
    top = tempfile.mkdtemp(prefix="pyrun-userns-")
    os.chmod(top, 0o755)
    try:
        _userns_run(pyrun, bundle, make_rootfs(os.path.join(top, "rootfs")))
    finally:
        shutil.rmtree(top)


def _userns_run(pyrun, bundle, rootfs):
    b = bundle(["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; cat /proc/self/cgroup"])
    os.unlink(os.path.join(b, "rootfs"))
    os.symlink(rootfs, os.path.join(b, "rootfs"))
    cfg = read_config(b)
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    write_config(b, cfg)
    p = pyrun("run", "-b", b, "c1")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert [line.split() for line in lines[:3]] == [["0", "100000", "65536"], ["0", "200000", "65536"], ["0"]]
    # Joined every hierarchy from inside its user namespace (cgroups.join_self).
    assert lines[3:] and all(line.endswith(":/c1") for line in lines[3:]), lines


def test_cgroup_and_time_namespaces(pyrun, bundle):
    b = bundle(["sh", "-c", "cat /proc/self/cgroup | grep -vc ':/$'; ls /sys/fs/cgroup | grep -c ."])
    cfg = read_config(b)
    cfg["linux"]["namespaces"] += [{"type": "cgroup"}, {"type": "time"}]
    write_config(b, cfg)
    out = pyrun.run_ok(b).split()
    # The namespace's root is the container's cgroup, in every hierarchy.
    assert int(out[0]) == 0 and int(out[1]) >= 1


def test_join_network_namespace_by_path(pyrun, bundle):
    """Two containers share one network namespace when the second names the first's."""
    b1 = bundle(["sleep", "100"])
    pyrun("run", "-d", "-b", b1, "owner", check=True)
    pid = json.loads(pyrun("state", "owner", check=True).stdout)["pid"]
    b2 = bundle(["readlink", "/proc/self/ns/net"])
    cfg = read_config(b2)
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
    cfg["linux"]["namespaces"].append({"type": "network", "path": f"/proc/{pid}/ns/net"})
    write_config(b2, cfg)
    assert pyrun.run_ok(b2, "joiner").strip() == os.readlink(f"/proc/{pid}/ns/net")


def test_a_network_namespace_of_its_own_has_lo_up_as_with_runc(pyrun, bundle):
    """runc brings lo up in a new network namespace (its "loopback" network), so 127.0.0.1
    answers inside; a namespace joined by path is left as its owner made it (lo down here)."""
    import subprocess
    probe = ["cat", "/sys/class/net/lo/flags"]  # IFF_UP is bit 0: 0x9 up, 0x8 down
    b = bundle(probe, private_rootfs=True)  # runc refuses a rootfs that is a symlink
    assert int(pyrun.run_ok(b).strip(), 16) & 1 == 1
    if shutil.which("runc"):
        runc = subprocess.run(["runc", "--root", pyrun.root + "-runc", "run", "lo-oracle"], cwd=b,
                              capture_output=True, text=True, timeout=60)
        assert runc.returncode == 0 and int(runc.stdout.strip(), 16) & 1 == 1, runc.stderr
    unshared = subprocess.Popen(["unshare", "-n", "sleep", "100"])  # a netns nobody configured
    try:
        time.sleep(0.2)
        b2 = bundle(probe)
        cfg = read_config(b2)
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
        cfg["linux"]["namespaces"].append({"type": "network", "path": f"/proc/{unshared.pid}/ns/net"})
        write_config(b2, cfg)
        assert int(pyrun.run_ok(b2, "joiner").strip(), 16) & 1 == 0
    finally:
        unshared.kill()
        unshared.wait()


def test_no_fd_leaks_into_container(pyrun, bundle):
    b = bundle(["ls", "/proc/self/fd"])
    out = pyrun.run_ok(b).split()
    assert sorted(int(x) for x in out) == [0, 1, 2, 3]  # 3 is ls's own directory fd


def test_spec_validates_against_official_schema(pyrun, tmp_path):
    from tests.specs.schemas import OFFICIAL_RUNTIME, official
    validator = official(OFFICIAL_RUNTIME, "config-schema.json")
    pyrun("spec", "--bundle", str(tmp_path), check=True)
    validator.validate(json.load(open(tmp_path / "config.json")))
    p = pyrun("spec", "--bundle", str(tmp_path))
    assert p.returncode == 1 and "exists" in p.stderr


def test_runtime_and_imagetool_never_import_each_other():
    import ast
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for pkg, other in (("runtime", "imagetool"), ("imagetool", "runtime")):
        for dirpath, _, files in os.walk(os.path.join(repo, pkg)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                tree = ast.parse(open(os.path.join(dirpath, name)).read())
                for node in ast.walk(tree):
                    mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                        [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
                    for m in mods:
                        assert m.split(".")[0] != other, f"{pkg}/{name} imports {m}"


def test_a_listed_device_over_another_file_is_refused(pyrun, bundle):
    """config-linux.md: a file at the path that is not the device MUST be an error; the
    image's file is left as it was (it used to be unlinked and replaced)."""
    b = bundle(["true"], private_rootfs=True)
    cfg = read_config(b)
    cfg["linux"]["devices"] = [{"path": "/etc/hostname-probe", "type": "c", "major": 1, "minor": 3}]
    write_config(b, cfg)
    probe = os.path.join(b, "rootfs", "etc", "hostname-probe")
    with open(probe, "w") as f:
        f.write("image's file\n")
    p = pyrun("run", "-b", b, "dev-mismatch")
    assert p.returncode != 0 and len(p.stderr.splitlines()) == 1, p.stderr
    assert "/etc/hostname-probe exists and is not the device c 1:3" in p.stderr, p.stderr
    assert open(probe).read() == "image's file\n" and pyrun.ids() == []


def test_unbindable_rootfs_propagation_holds_on_root(pyrun, bundle):
    """Made unbindable after pivot_root: before it, "/" could not be the rootfs bind's source."""
    b = bundle(["sh", "-c", "grep -E '^[0-9]+ [0-9]+ [^ ]+ [^ ]+ / ' /proc/self/mountinfo"])
    cfg = read_config(b)
    cfg["linux"]["rootfsPropagation"] = "unbindable"
    write_config(b, cfg)
    assert "unbindable" in pyrun.run_ok(b)
