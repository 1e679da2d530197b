"""Fuzz target: imagetool's layer unpacking, into a sandbox directory.

    python -m tests.fuzz.fuzz_unpack [--sandbox] [libFuzzer flags]   (needs atheris: make fuzz)

An input becomes one layer of an image in an OCI layout, unpacked with imagetool.unpack
into a bundle. The layer is either the input's bytes as they are (first byte % 4 == 0:
the tar reader's parsing of headers, PAX records, sizes), or a tar the input describes
(otherwise): entries whose names, types, link targets, modes, owners and PAX records are
drawn from a hostile vocabulary (`..`, absolute names, symlinks and hardlinks aimed out
of the rootfs, whiteouts, names at and past the kernel's limits), written with valid
headers so that they reach the unpacker's logic; some gzip-compressed, some rootless.

Every link and name that aims out of the rootfs aims at this sandbox: a directory
`outside` (which must stay empty) and a file `victim` (its content, mode and link
count must not change). After each input only those, the layout and the bundle are in
the sandbox. The contract: unpack succeeds or raises UnpackError; any other exception,
or anything made outside the bundle, is a crash (atheris stops and keeps the input).

Raw bytes can name any path (a PAX `path` record has no checksum): with --sandbox
(make fuzz) the target runs again under `unshare --mount --propagation private` (a test
tool), and there makes every other writable mount of that private mount namespace
read-only, so that a real escape fails on a read-only file system instead of writing
to the host.
"""
import os
import shutil
import subprocess
import sys
import tempfile

from tests.fuzz.recipe import Recipe

MAX_ENTRIES = 12
VICTIM_TEXT = b"the host's own file\n"
_SANDBOX = None


class Sandbox:
    """`top`/box holds what one input may touch; `top` itself the seeds and any crash."""

    def __init__(self, top: str):
        self.top = os.path.join(top, "box")
        os.makedirs(self.top, exist_ok=True)
        self.outside = os.path.join(top, "outside")
        self.victim = os.path.join(top, "victim")
        self.layout = os.path.join(top, "layout")
        self.bundle = os.path.join(top, "bundle")
        os.makedirs(self.outside, exist_ok=True)
        with open(self.victim, "wb") as f:
            f.write(VICTIM_TEXT)
        os.chmod(self.victim, 0o644)
        self.victim_stat = _facts(self.victim)

    def reset(self) -> None:
        for path in (self.layout, self.bundle):
            if os.path.lexists(path):
                shutil.rmtree(path)

    def check(self) -> None:
        assert os.listdir(self.outside) == [], f"written outside the bundle: {os.listdir(self.outside)}"
        assert _facts(self.victim) == self.victim_stat, "the file outside the bundle changed"
        extra = set(os.listdir(self.top)) - {"outside", "victim", "layout", "bundle"}
        assert not extra, f"made beside the bundle: {sorted(extra)}"


def _facts(path: str):
    st = os.lstat(path)
    with open(path, "rb") as f:
        return (st.st_mode, st.st_nlink, st.st_uid, st.st_gid, f.read())


def sandbox() -> Sandbox:
    global _SANDBOX
    if _SANDBOX is None:
        _SANDBOX = Sandbox(tempfile.mkdtemp(prefix="pyrun-fuzz-unpack-"))
    return _SANDBOX


# -- a tar the input describes -------------------------------------------------------------

def _vocabulary(box: Sandbox) -> tuple[list[str], list[str]]:
    top = os.path.basename(box.top)  # "box": ../../../box/outside from the rootfs
    components = ["a", "b", "l", "d", "..", ".", "etc", "dev", "proc", ".wh.a", ".wh.l", ".wh..wh..opq",
                  ".wh.", "x" * 255, "y" * 256, "é", "\udcff", "sp ace", "-", "a\\b"]
    targets = [box.outside, box.outside + "/f", "../../outside", "../../outside/f", "../../victim",
               f"../../../{top}/outside", box.victim, "a", "a/b", "l", "l/x", "/", ".", "..", "/a", "/l/x",
               "../" * 40 + box.outside.lstrip("/"), "d/../../..", "z" * 5000]
    return components, targets


def _name(recipe: Recipe, components: list[str]) -> str:
    parts = [recipe.pick(components) for _ in range(1 + recipe.below(4))]
    lead = recipe.pick(["", "", "/", "./", "../", "//"])
    return lead + "/".join(parts) + recipe.pick(["", "", "/"])


def described_tar(recipe: Recipe, box: Sandbox) -> bytes:
    from tests.support.layers import Raw, raw_tar
    components, targets = _vocabulary(box)
    entries = []
    for _ in range(1 + recipe.below(MAX_ENTRIES)):
        kind = recipe.pick("0000111222555346xKLgS7")
        name = _name(recipe, components)
        linkname = recipe.pick(targets) if kind in "12" else ""
        pax = {}
        if len(name.encode("utf-8", "surrogateescape")) > 100:
            pax["path"], name = name, "placeholder"
        if len(linkname.encode("utf-8", "surrogateescape")) > 100:
            pax["linkpath"], linkname = linkname, ""
        if recipe.chance(24):
            pax[recipe.pick(["SCHILY.xattr.user.fuzz", "SCHILY.xattr.security.capability",
                             "SCHILY.xattr.trusted.x", "size", "uid", "mtime", "path", "linkpath"])] = \
                recipe.pick(["1", "-1", "99999999999999999999", "", "x" * 300, box.outside, "../../outside"])
        entries.append(Raw(name=name, type=kind, data=recipe.blob(64) if kind == "0" else b"",
                           mode=recipe.pick([0o644, 0o755, 0o4755, 0o7777, 0o000, 0o1777]),
                           uid=recipe.pick([0, 1, 65534, 2**21 - 1]), gid=recipe.pick([0, 1, 65534]),
                           linkname=linkname, devmajor=recipe.below(8), devminor=recipe.below(8), pax=pax))
    return raw_tar(entries, end=recipe.chance(230))


def layer_of(data: bytes, box: Sandbox) -> tuple[bytes, bool, bool]:
    """(uncompressed tar, gzip it?, rootless?) for an input."""
    recipe = Recipe(data)
    mode = recipe.byte()
    if mode % 4 == 0:
        return recipe.rest(), False, False
    return described_tar(recipe, box), mode % 4 == 2, mode % 8 == 3


def check(data: bytes) -> None:
    """One input: unpacked, or refused with UnpackError; nothing made outside the bundle."""
    from imagetool.unpacker import UnpackError, unpack
    from tests.support import images
    box = sandbox()
    box.reset()
    tar, compress, rootless = layer_of(data, box)
    image = images.build_image([tar], compression="gzip" if compress else "none")
    images.write_layout(box.layout, {"latest": image})
    try:
        unpack(box.layout, "latest", box.bundle, rootless=rootless)
    except UnpackError as e:
        assert "\n" not in str(e), "an UnpackError of more than one line"
        assert not os.path.lexists(box.bundle), "a refused unpack left its bundle"
    box.check()


# -- seeds, and the sandbox for make fuzz -------------------------------------------------------

def seeds() -> list[bytes]:
    from tests.support.layers import Raw, raw_tar
    plain = raw_tar([Raw("etc/", "5", mode=0o755), Raw("etc/hostname", data=b"fuzz\n"),
                     Raw("bin/sh", "2", linkname="busybox"), Raw("bin/busybox", data=b"\x7fELF")])
    escapes = raw_tar([Raw("l", "2", linkname="../../outside"), Raw("l/x", data=b"out"),
                       Raw("h", "1", linkname="../../victim"), Raw("../../outside/y", data=b"out")])
    return [
        b"\x00" + plain,
        b"\x00" + escapes,
        b"\x00" + plain[:700],  # cut inside an entry
        b"\x00" + b"\0" * 1024,
        b"\x01",
        b"\x01" + bytes(range(1, 120)),
        b"\x02" + bytes(range(200, 0, -1)),
        b"\x03" + bytes(range(7, 250, 3)),
        b"\x05" + bytes([1, 0, 3, 0, 9, 2, 2, 0, 5, 1, 1, 1]) * 8,
    ]


def enter_sandbox(writable: str, host_ns: str) -> None:
    """In a private mount namespace (not `host_ns`, the one we were started in): every
    mount but `writable` and the kernel's own file systems becomes read-only, for this
    namespace only (its propagation is private)."""
    if os.readlink("/proc/self/ns/mnt") == host_ns:
        raise SystemExit("--sandbox: not in a mount namespace of our own: refusing to remount anything")
    subprocess.run(["mount", "--bind", writable, writable], check=True)
    kernel_fs = {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "securityfs", "pstore", "bpf",
                 "debugfs", "tracefs", "configfs", "fusectl", "hugetlbfs", "binfmt_misc", "autofs", "efivarfs"}
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    for fields in mounts:
        mountpoint, fstype = fields[4], fields[fields.index("-") + 1]
        if fstype in kernel_fs or mountpoint.startswith(("/proc", "/sys")) or mountpoint == writable:
            continue
        subprocess.run(["mount", "-o", "remount,bind,ro", mountpoint], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = os.path.join("/", f".pyrun-fuzz-probe-{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600))
        os.unlink(probe)
        raise SystemExit("--sandbox: / is still writable")
    except OSError:
        pass  # read-only, as wanted


def main(argv: list[str]) -> int:
    args = argv[1:]
    global _SANDBOX
    if "--sandbox" in args:  # again, in a private mount namespace
        args.remove("--sandbox")
        ns = os.readlink("/proc/self/ns/mnt")
        return subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-m",
                               "tests.fuzz.fuzz_unpack", f"--in-sandbox={ns}", *args]).returncode
    sandboxed = [a for a in args if a.startswith("--in-sandbox=")]
    if sandboxed:
        args.remove(sandboxed[0])
        top = tempfile.mkdtemp(prefix="pyrun-fuzz-unpack-")
        enter_sandbox(top, sandboxed[0].split("=", 1)[1])
        _SANDBOX = Sandbox(top)
        os.chdir(top)  # where libFuzzer writes a crashing input
    import atheris
    import importlib
    with atheris.instrument_imports(include=["imagetool"]):
        for name in ("imagetool.unpacker", "imagetool.tarstream", "imagetool.inroot", "imagetool.bundle"):
            importlib.import_module(name)  # instrumented for coverage; check() uses them
    corpus = tempfile.mkdtemp(prefix="seeds-", dir=os.path.dirname(sandbox().top))
    for i, seed in enumerate(seeds()):
        with open(os.path.join(corpus, f"seed{i}"), "wb") as f:
            f.write(seed)
    atheris.Setup([argv[0], *args, corpus], check)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
