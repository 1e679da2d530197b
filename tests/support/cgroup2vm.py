"""A real cgroup v2 host for the tests: Debian's kernel under qemu, one command per boot.

This machine's cgroups are hybrid and must never be remounted, so the code paths
of a unified host (CLONE_INTO_CGROUP into the container's own cgroup, cgroup2
mounts, cgroup.freeze, …) run in a guest booted with `cgroup_no_v1=all`:

- the kernel is the one linux-image-amd64 depends on, downloaded with apt-get and
  unpacked (never installed) into CACHE, together with a small initramfs built
  here (busybox-static + the 9p/virtio/overlay modules; cpio written in Python);
- the guest's / is the host's /, read-only over 9p under a tmpfs overlay, so the
  virtualenv and the checkout are at their host paths; `rw` is shared read-write;
- every controller is enabled in the root's subtree_control and the command runs
  in /sys/fs/cgroup/init, so a runtime can make sibling cgroups with all of them.

TCG, not KVM (a guest hangs under KVM on this machine kind): boot ≈ 5 s, Python
15-20x slower than on the host. Boot once and run a whole subset in that guest.
"""
from __future__ import annotations

import glob
import gzip
import lzma
import os
import shlex
import shutil
import subprocess
import tempfile

CACHE = "/var/cache/pyrun-cgroup2-vm"
GUEST_ENV = "PYRUN_IN_CGROUP2_VM"  # set inside the guest: the harness never recurses
MODULES = ["virtio_ring", "virtio", "virtio_mmio", "9pnet", "9pnet_virtio", "netfs", "fscache", "9p", "overlay",
           # what criu needs (checkpoint/restore tests): sock_diag for every socket kind it
           # dumps, nf_tables for its network lock, conntrack's netlink for a netns's dump,
           # tun and veth for its kernel probes
           "crc32c_generic", "libcrc32c", "nfnetlink", "nf_tables", "x_tables", "nft_compat", "xt_mark",
           "nf_defrag_ipv4", "nf_defrag_ipv6", "nf_conntrack", "nf_conntrack_netlink",
           "unix_diag", "inet_diag", "tcp_diag", "udp_diag", "raw_diag", "netlink_diag", "af_packet_diag",
           "veth", "tun"]
QEMU = "qemu-system-x86_64"

# PID 1 of the initramfs: mount the host's / (9p, read-only) under a tmpfs overlay
# and switch_root into it, since a runtime cannot pivot_root out of an initramfs.
_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in {modules}; do insmod /mods/$m.ko || echo "cgroup2vm: insmod $m failed"; done
o=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o $o,ro hostroot /lower || {{ echo "cgroup2vm: no host root"; poweroff -f; }}
mount -t tmpfs -o mode=755 tmpfs /upper
mkdir -p /upper/u /upper/w
mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w overlay /newroot
for d in /tmp /run /var/tmp /var/lib /var/cache; do mount -t tmpfs tmpfs /newroot$d; done
rw=$(sed -n 's/.* pyrunvm.rw=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
mkdir -p /newroot$rw && mount -t 9p -o $o rwshare /newroot$rw
mkdir -p /newroot/.pyrunvm && mount -t 9p -o $o jobshare /newroot/.pyrunvm
umount /proc /sys /dev
exec switch_root /newroot /bin/sh /.pyrunvm/guest
"""

# The job, in the real root: a host-like /dev, cgroup2 alone, every controller on.
_GUEST = """mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /dev/mqueue /run/lock
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts; ln -sf pts/ptmx /dev/ptmx
mount -t tmpfs tmpfs /dev/shm; mount -t mqueue mqueue /dev/mqueue
umount /sys/fs/cgroup 2>/dev/null; mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
mkdir -p /sys/fs/cgroup/init; echo $$ > /sys/fs/cgroup/init/cgroup.procs
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do echo +$c > /sys/fs/cgroup/cgroup.subtree_control; done
hostname cgroup2vm
{env}
cd {cwd}
{cmd} </dev/null
echo $? > /.pyrunvm/rc
sync; poweroff -f
"""


def unavailable() -> str | None:
    """Why no guest can run here, or None."""
    if os.getuid() != 0:
        return "the cgroup v2 guest needs root (qemu's 9p passthrough)"
    if not shutil.which(QEMU):
        return f"{QEMU} is not installed (Debian: qemu-system-x86)"
    if not os.access("/bin/busybox", os.X_OK):
        return "/bin/busybox is not installed (Debian: busybox-static)"
    return None


def image() -> tuple[str, str]:
    """(vmlinux, initrd.gz), built into CACHE on first use (~20 s: one kernel download)."""
    vmlinux, initrd = os.path.join(CACHE, "vmlinux"), os.path.join(CACHE, "initrd.gz")
    try:
        with open(os.path.join(CACHE, "modules")) as f:
            same = f.read() == " ".join(MODULES)
    except FileNotFoundError:
        same = False  # a cache from before MODULES was recorded, or none
    if not (same and os.path.exists(vmlinux) and os.path.exists(initrd)):
        _build()
    return vmlinux, initrd


def _kernel_package() -> str:
    def depends() -> str | None:
        p = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True)
        for line in p.stdout.splitlines():
            dep = line.strip().removeprefix("Depends:").strip()
            if line.strip().startswith("Depends:") and dep.startswith("linux-image-"):
                return dep
        return None
    pkg = depends()
    if pkg is None:  # no package lists yet on a fresh machine
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        pkg = depends()
    if pkg is None:
        raise RuntimeError("apt-cache knows no kernel that linux-image-amd64 depends on")
    return pkg


def _build() -> None:
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(CACHE) + ".", dir=os.path.dirname(CACHE))
    try:
        # as root: _apt may not write into this private directory
        subprocess.run(["apt-get", "download", "-qq", "-o", "APT::Sandbox::User=root", _kernel_package()],
                       cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        deb = glob.glob(os.path.join(tmp, "*.deb"))[0]
        tree = os.path.join(tmp, "k")
        subprocess.run(["dpkg-deb", "-x", deb, tree], check=True)
        kver = os.listdir(os.path.join(tree, "lib", "modules"))[0]
        os.makedirs(CACHE + ".new", exist_ok=True)
        _write_vmlinux(os.path.join(tree, "boot", f"vmlinuz-{kver}"), os.path.join(CACHE + ".new", "vmlinux"))
        _write_initrd(os.path.join(tree, "lib", "modules", kver), os.path.join(CACHE + ".new", "initrd.gz"))
        with open(os.path.join(CACHE + ".new", "modules"), "w") as f:
            f.write(" ".join(MODULES))
        shutil.rmtree(CACHE, ignore_errors=True)
        os.rename(CACHE + ".new", CACHE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(CACHE + ".new", ignore_errors=True)


def _write_vmlinux(bzimage: str, out: str) -> None:
    """qemu's microvm boots an uncompressed ELF; Debian ships an xz-compressed bzImage."""
    with open(bzimage, "rb") as f:
        data = f.read()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise RuntimeError(f"{bzimage}: no xz payload")
    with open(out, "wb") as f:
        f.write(lzma.LZMADecompressor().decompress(data[start:]))


def _write_initrd(moddir: str, out: str) -> None:
    files: list[tuple[str, int, bytes]] = [(d, 0o40755, b"") for d in (
        "bin", "proc", "sys", "dev", "lower", "upper", "newroot", "mods")]
    with open("/bin/busybox", "rb") as f:
        files.append(("bin/busybox", 0o100755, f.read()))
    for name in MODULES:
        found = glob.glob(os.path.join(moddir, "**", f"{name}.ko*"), recursive=True)
        if not found:
            raise RuntimeError(f"kernel module {name} not in {moddir}")
        with open(found[0], "rb") as f:
            data = f.read()
        if found[0].endswith(".xz"):
            data = lzma.decompress(data)
        files.append((f"mods/{name}.ko", 0o100644, data))
    files.append(("init", 0o100755, _INIT.format(modules=" ".join(MODULES)).encode()))
    with gzip.open(out, "wb", compresslevel=1) as f:
        f.write(_cpio_newc(files))


def _cpio_newc(files: list[tuple[str, int, bytes]]) -> bytes:
    """The initramfs format: 'newc' cpio, each header and body padded to 4 bytes."""
    out = bytearray()

    def pad():
        out.extend(b"\0" * (-len(out) % 4))
    for ino, (name, mode, data) in enumerate([*files, ("TRAILER!!!", 0, b"")], start=1):
        raw = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0)
        out += b"070701" + b"".join(b"%08x" % v for v in fields) + raw
        pad()
        out += data
        pad()
    return bytes(out)


def run(argv: list[str], *, rw: str, cwd: str | None = None, env: dict | None = None,
        timeout: float = 900, mem_mib: int = 2048, cpus: int = 2) -> tuple[int, str]:
    """Boot, run argv as root in the guest, power off: (exit status, console output).

    An exit status of 125 means the guest never reported one (boot failure, timeout)."""
    vmlinux, initrd = image()
    rw = os.path.realpath(rw)
    job = tempfile.mkdtemp(prefix="pyrun-cgroup2vm-")
    try:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/root", "LANG": "C.UTF-8",
               **(env or {}), GUEST_ENV: "1"}
        with open(os.path.join(job, "guest"), "w") as f:
            f.write(_GUEST.format(env="\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items()),
                                  cwd=shlex.quote(cwd or rw), cmd=shlex.join(argv)))
        append = f"console=ttyS0 quiet panic=-1 cgroup_no_v1=all pyrunvm.rw={rw}"
        khz = _host_tsc_khz()
        if khz:  # under TCG the guest cannot calibrate its TSC quickly
            append += f" tsc_early_khz={khz}"
        cmd = [QEMU, "-M", "microvm,rtc=on", "-accel", "tcg", "-cpu", "max", "-smp", str(cpus),
               "-m", str(mem_mib), "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
               "-serial", "stdio", "-kernel", vmlinux, "-initrd", initrd, "-append", append]
        for tag, path, ro in (("hostroot", "/", True), ("rwshare", rw, False), ("jobshare", job, False)):
            cmd += ["-fsdev", f"local,id={tag},path={path},security_model=passthrough,multidevs=remap"
                    + (",readonly=on" if ro else ""),
                    "-device", f"virtio-9p-device,fsdev={tag},mount_tag={tag}"]
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=timeout)
            output = p.stdout.decode(errors="replace").replace("\r", "")
        except subprocess.TimeoutExpired as e:
            output = (e.stdout or b"").decode(errors="replace").replace("\r", "") + f"\n(timeout {timeout} s)"
        try:
            with open(os.path.join(job, "rc")) as f:
                return int(f.read().strip()), output
        except (FileNotFoundError, ValueError):
            return 125, output
    finally:
        shutil.rmtree(job, ignore_errors=True)


def _host_tsc_khz() -> int | None:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    return None
