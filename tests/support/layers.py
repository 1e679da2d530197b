"""Layers and layouts for unpack tests, written byte by byte.

`tarfile` refuses to write many of the things an unpacker must refuse to
read (and normalises others), so hostile entries are made here from raw
ustar/PAX headers. Also: a snapshot of a rootfs for comparing two unpacks,
and helpers that drive umoci as the oracle.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass, field

from tests.support import images

BLOCK = 512


# -- raw tar -----------------------------------------------------------------------

@dataclass
class Raw:
    """One tar entry. type: '0' file, '1' hardlink, '2' symlink, '3' char, '4' block,
    '5' dir, '6' fifo (or any other typeflag). `pax` adds a PAX header before it."""
    name: str
    type: str = "0"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    size: int | None = None       # override the size field (hostile sizes)
    size_field: bytes | None = None  # raw 12-byte size field (base-256 tricks)
    pax: dict[str, bytes | str] = field(default_factory=dict)
    bad_checksum: bool = False


def _octal(value: int, width: int) -> bytes:
    return (b"%0*o" % (width - 1, value)) + b"\0"


def header(e: Raw) -> bytes:
    name = e.name.encode("utf-8", "surrogateescape")
    if len(name) > 100:
        raise ValueError("long names go through pax={'path': ...}")
    size = len(e.data) if e.size is None else e.size
    b = bytearray(BLOCK)
    b[0:len(name)] = name
    b[100:108] = _octal(e.mode, 8)
    b[108:116] = _octal(e.uid, 8)
    b[116:124] = _octal(e.gid, 8)
    b[124:136] = e.size_field if e.size_field is not None else _octal(size, 12)
    b[136:148] = _octal(e.mtime, 12)
    b[156:157] = e.type.encode()
    link = e.linkname.encode("utf-8", "surrogateescape")
    if len(link) > 100:
        raise ValueError("long link names go through pax={'linkpath': ...}")
    b[157:157 + len(link)] = link
    b[257:263] = b"ustar\0"
    b[263:265] = b"00"
    b[329:337] = _octal(e.devmajor, 8)
    b[337:345] = _octal(e.devminor, 8)
    b[148:156] = b" " * 8
    chk = sum(b) + (1 if e.bad_checksum else 0)
    b[148:156] = b"%06o\0 " % chk
    return bytes(b)


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def pax_block(records: dict, name: str = "PaxHeader") -> bytes:
    body = b""
    for k, v in records.items():
        v = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v
        rec = b" " + k.encode() + b"=" + v + b"\n"
        n = len(rec) + 1
        while len(str(n).encode()) + len(rec) != n:
            n = len(str(n).encode()) + len(rec)
        body += str(n).encode() + rec
    return header(Raw(name[:99], "x", body)) + _pad(body)


def raw_tar(entries: list[Raw], end: bool = True) -> bytes:
    out = bytearray()
    for e in entries:
        if e.pax:
            out += pax_block(e.pax)
        out += header(e)
        if e.type == "0":
            out += _pad(e.data)
    if end:
        out += b"\0" * (2 * BLOCK)
    return bytes(out)


# -- layouts ----------------------------------------------------------------------------

def write_image(layout: str, layer_tars: list[bytes], tag: str = "latest",
                compress: bool = True, **config) -> images.Image:
    """An OCI layout at `layout` holding one image made of `layer_tars`."""
    image = images.build_image(layer_tars, compress=compress, **config)
    images.write_layout(layout, {tag: image})
    return image


def blob_file(layout: str, digest: str) -> str:
    return os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])


def corrupt_blob(layout: str, digest: str) -> None:
    """Flip one byte of a blob in place (its digest no longer matches)."""
    path = blob_file(layout, digest)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))


def rewrite_layer(layout: str, image: images.Image, index: int, new_blob: bytes,
                  fix_diff_id: bool) -> None:
    """Replace layer `index` with `new_blob`, fixing descriptors so that only the
    intended check (diff_id, if not fix_diff_id) can catch it."""
    old = image.layers[index]
    layer = images.Blob(old.media_type, new_blob)
    cfg = json.loads(image.config.data)
    if fix_diff_id:
        raw = gzip.decompress(new_blob) if old.media_type.endswith("gzip") else new_blob
        cfg["rootfs"]["diff_ids"][index] = images.sha256(raw)
    config = images.Blob(image.config.media_type, json.dumps(cfg).encode())
    layers = list(image.layers)
    layers[index] = layer
    manifest = json.loads(image.manifest.data)
    manifest["config"] = config.descriptor()
    manifest["layers"] = [l.descriptor() for l in layers]
    new = images.Image(images.Blob(image.manifest.media_type, json.dumps(manifest).encode()),
                       config, layers, image.platform)
    shutil.rmtree(layout)
    images.write_layout(layout, {"latest": new})


# -- snapshots -------------------------------------------------------------------------------

def snapshot(root: str, mtimes: bool = True, skip_root_mtime: bool = True) -> dict:
    """path → facts about it (type, mode, owner, content hash, link target,
    device, xattrs, mtime), plus hardlink groups under the key None."""
    facts: dict = {}
    inodes: dict = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, *([""] if dirpath == root else [])]:
            path = os.path.join(dirpath, name) if name else dirpath
            rel = "/" + os.path.relpath(path, root) if path != root else "/"
            st = os.lstat(path)
            f = {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode),
                 "uid": st.st_uid, "gid": st.st_gid}
            if mtimes and not (rel == "/" and skip_root_mtime):
                f["mtime"] = st.st_mtime_ns
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    f["sha256"] = hashlib.sha256(fh.read()).hexdigest()
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                f["target"] = os.readlink(path)
                del f["mode"]
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                f["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            try:
                names = os.listxattr(path, follow_symlinks=False)
            except OSError:
                names = []
            xs = {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)
                  if not n.startswith("security.selinux")}
            if xs:
                f["xattrs"] = xs
            facts[rel] = f
    facts[None] = sorted(sorted(g) for g in inodes.values())
    return facts


def diff(a: dict, b: dict, no_mtime: set = frozenset()) -> list[str]:
    """Differences between two snapshots; `no_mtime`: paths whose mtime is
    undefined (directories made implicitly, which get the time of the unpack)."""
    out = []
    for k in no_mtime:
        for s in (a, b):
            if k in s:
                s[k] = {n: v for n, v in s[k].items() if n != "mtime"}
    for k in sorted(set(a) | set(b), key=lambda k: (k is None, str(k))):
        if a.get(k) != b.get(k):
            out.append(f"{k}: {a.get(k)} != {b.get(k)}")
    return out


# -- umoci, the oracle -------------------------------------------------------------------------

def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def umoci_unpack(layout: str, tag: str, bundle: str, rootless: bool = False) -> None:
    cmd = ["umoci", "unpack", "--image", f"{layout}:{tag}", bundle]
    if rootless:
        cmd.insert(2, "--rootless")
    subprocess.run(cmd, check=True, capture_output=True)


def umoci_layout_from_dir(layout: str, tag: str, src: str) -> None:
    """A one-layer layout made by umoci (Go's tar writer) from the tree at `src`."""
    subprocess.run(["umoci", "init", "--layout", layout], check=True, capture_output=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:{tag}"], check=True, capture_output=True)
    subprocess.run(["umoci", "insert", "--image", f"{layout}:{tag}", src, "/"],
                   check=True, capture_output=True)


# -- the feature layers ------------------------------------------------------------------------

# Parents feature_layers() never names: their mtime is the unpack's own.
FEATURE_IMPLICIT = {"/deep", "/home"}


def feature_layers() -> list[bytes]:
    """Three layers exercising what an unpacker must get right: whiteouts, an
    opaque directory, hardlinks, symlinks, setuid/setgid/sticky, devices, a FIFO,
    owners, mtimes, xattrs, long names, and replacement of one type by another."""
    long_name = "deep/" + "d" * 120 + "/file"
    base = [
        Raw("etc/", "5", mode=0o755, mtime=1_600_000_001),
        Raw("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
        Raw("etc/group", data=b"root:x:0:\nwheel:x:10:root,app\napp:x:1000:\n"),
        Raw("bin/", "5", mode=0o755, mtime=1_600_000_002),
        Raw("bin/tool", data=b"#!/bin/sh\necho tool\n", mode=0o4755, uid=0, gid=0),
        Raw("bin/sgid", data=b"sgid\n", mode=0o2755, uid=1000, gid=10),
        Raw("bin/link-to-tool", "1", linkname="bin/tool"),
        Raw("bin/sym", "2", linkname="tool", mtime=1_600_000_003),
        Raw("bin/abs", "2", linkname="/etc/passwd"),
        Raw("tmp/", "5", mode=0o1777, mtime=1_600_000_004),
        Raw("dev/", "5", mode=0o755),
        Raw("dev/null", "3", mode=0o666, devmajor=1, devminor=3),
        Raw("dev/loop9", "4", mode=0o660, devmajor=7, devminor=9, gid=6),
        Raw("run/", "5", mode=0o755),
        Raw("run/fifo", "6", mode=0o600, uid=1000, gid=1000),
        Raw("home/app/", "5", mode=0o700, uid=1000, gid=1000, mtime=1_600_000_005),
        Raw("home/app/file", data=b"app's\n", mode=0o600, uid=1000, gid=1000),
        Raw("gone/", "5", mode=0o755),
        Raw("gone/a", data=b"a\n"),
        Raw("opaque/", "5", mode=0o755),
        Raw("opaque/old", data=b"old\n"),
        Raw("opaque/sub/", "5", mode=0o755),
        Raw("opaque/sub/older", data=b"older\n"),
        Raw("replace-me", data=b"file first\n"),
        Raw("dir-to-file/", "5", mode=0o755),
        Raw("dir-to-file/x", data=b"x\n"),
        Raw("xattr-file", data=b"x\n", pax={"SCHILY.xattr.user.comment": b"hello"}),
        Raw("long", "5", mode=0o755, pax={"path": long_name.rsplit("/", 1)[0] + "/"}),
        Raw("long-file", data=b"long\n", pax={"path": long_name, "mtime": "1600000006.5"}),
        Raw("ro-dir/", "5", mode=0o555, mtime=1_600_000_007),
        Raw("ro-dir/inside", data=b"inside\n", mode=0o444),
    ]
    upper = [
        Raw(".wh.gone", data=b""),
        Raw("opaque/", "5", mode=0o750, mtime=1_600_000_008),
        Raw("opaque/.wh..wh..opq"),
        Raw("opaque/new", data=b"new\n"),
        Raw("replace-me/", "5", mode=0o755),
        Raw("replace-me/now-a-dir", data=b"dir now\n"),
        Raw("dir-to-file", data=b"file now\n"),
        Raw("bin/.wh.sym"),
        Raw("bin/sym", "2", linkname="link-to-tool"),  # whiteout then re-add in one layer
        Raw("etc/motd", data=b"hello\n", mtime=1_600_000_009),
    ]
    top = [
        Raw("opaque/new2", data=b"new2\n"),
        Raw("ro-dir/.wh.inside"),
        Raw("bin/.wh.link-to-tool"),
    ]
    return [raw_tar(base), raw_tar(upper), raw_tar(top)]


def _b256(value: int, width: int = 12) -> bytes:
    """A GNU base-256 number field (what a header uses for values octal cannot hold)."""
    return b"\x80" + value.to_bytes(width - 1, "big")


def hostile_corpus() -> dict[str, list[bytes]]:
    """name → layers that must be refused, each with a sentinel path `../sentinel` a
    naive unpacker would write next to the bundle. HOSTILE_UMOCI says what umoci
    0.4.7 does with each (the oracle: we do the same or are stricter)."""
    return {
        # `..` and absolute names
        "dotdot-file": [raw_tar([Raw("../../sentinel/pwned", data=b"x")])],
        "dotdot-deep": [raw_tar([Raw("a/../../../sentinel/pwned", data=b"x")])],
        "dotdot-only": [raw_tar([Raw("..", "5")])],
        "dotdot-symlink-name": [raw_tar([Raw("../../sentinel/link", "2", linkname="/")])],
        "absolute": [raw_tar([Raw("/tmp/imagetool-absolute-pwned", data=b"x")])],
        # hardlinks out of the rootfs, or to a host file through a symlink
        "hardlink-out": [raw_tar([Raw("evil", "1", linkname="../../sentinel/target")])],
        "hardlink-abs": [raw_tar([Raw("evil", "1", linkname="/etc/passwd")])],
        "hardlink-missing": [raw_tar([Raw("evil", "1", linkname="nope")])],
        "hardlink-via-abs-symlink": [raw_tar([Raw("etc-link", "2", linkname="/etc"),
                                              Raw("evil", "1", linkname="etc-link/passwd")])],
        "hardlink-via-dotdot-symlink": [raw_tar([Raw("up", "2", linkname="../.."),
                                                 Raw("evil", "1", linkname="up/sentinel/keep")])],
        "hardlink-to-root": [raw_tar([Raw("evil", "1", linkname="./")])],
        # whiteouts of what is not a name in the directory
        "whiteout-dotdot": [raw_tar([Raw("f", data=b"x")]), raw_tar([Raw(".wh...")])],
        "whiteout-dot": [raw_tar([Raw("f", data=b"x")]), raw_tar([Raw("d/.wh..")])],
        "whiteout-empty": [raw_tar([Raw(".wh.")])],
        # names the kernel cannot hold
        "nul-in-name": [raw_tar([Raw("x", data=b"x", pax={"path": "a\0b"})])],
        "nul-in-symlink": [raw_tar([Raw("s", "2", pax={"linkpath": "../../sentinel\0x"})])],
        "nul-in-hardlink": [raw_tar([Raw("f", data=b"x"), Raw("h", "1", pax={"linkpath": "f\0x"})])],
        "nul-in-xattr-name": [raw_tar([Raw("x", data=b"x",
                                           pax={"SCHILY.xattr.user.a\0b": b"v"})])],
        "name-max": [raw_tar([Raw("x", data=b"x", pax={"path": "d/" + "n" * 256})])],
        "path-max": [raw_tar([Raw("x", data=b"x", pax={"path": "/".join(["p"] * 2048) + "p"})])],
        "symlink-target-max": [raw_tar([Raw("s", "2", pax={"linkpath": "t/" * 2048})])],
        # sizes, owners, times and device numbers no file can have
        "negative-size": [raw_tar([Raw("neg", size_field=b"\xff" * 12)])],
        "huge-size": [raw_tar([Raw("huge", size=0o77777777777, data=b"")], end=False)],
        "huge-size-base256": [raw_tar([Raw("huge", size_field=_b256(1 << 80))])],
        "huge-size-pax": [raw_tar([Raw("huge", pax={"size": "1" + "0" * 30})])],
        "huge-uid": [raw_tar([Raw("f", data=b"x", pax={"uid": str(1 << 40)})])],
        "uid-no-change": [raw_tar([Raw("f", data=b"x", pax={"uid": str(0xFFFFFFFF)})])],
        "huge-mtime": [raw_tar([Raw("f", data=b"x", pax={"mtime": "1" + "0" * 30})])],
        "huge-devmajor": [raw_tar([Raw("disk", "3", mode=0o666, devmajor=5000, devminor=1)])],
        # broken archives
        "truncated": [raw_tar([Raw("big", data=b"y" * 5000)])[:2048]],
        # cut inside the padding after the last entry's data (cut where the padding would
        # start, it is an archive's end, as Go reads it)
        "truncated-in-padding": [raw_tar([Raw("f", data=b"y" * 10)], end=False)[:512 + 100]],
        "bad-checksum": [raw_tar([Raw("bad", data=b"x", bad_checksum=True)])],
        "root-not-dir": [raw_tar([Raw("./", "2", linkname="/")])],
        "sparse": [raw_tar([Raw("sparse", "S")])],
        "pax-huge": [raw_tar([Raw("x", pax={"comment": b"y" * (1 << 20)})])],
        "pax-negative-size": [raw_tar([Raw("x", pax={"size": "-5"})])],
        "symlink-loop": [raw_tar([Raw("a", "2", linkname="b"), Raw("b", "2", linkname="a"),
                                  Raw("a/x", data=b"x")])],
        "file-as-parent": [raw_tar([Raw("f", data=b"x"), Raw("f/x", data=b"x")])],
    }


# What umoci 0.4.7 makes of each hostile case: "refused" (an error, nothing outside
# touched), "confined" (unpacked, nothing outside touched), or "escapes" (it wrote or
# removed outside its rootfs). Measured by tests/imagetool/test_unpack.py.
HOSTILE_UMOCI = {
    "dotdot-file": "confined", "dotdot-deep": "confined", "dotdot-only": "confined",
    "dotdot-symlink-name": "confined", "absolute": "confined",
    "hardlink-out": "refused", "hardlink-abs": "refused", "hardlink-missing": "refused",
    "hardlink-via-abs-symlink": "refused", "hardlink-via-dotdot-symlink": "refused",
    "hardlink-to-root": "refused",
    "whiteout-dotdot": "escapes", "whiteout-dot": "confined", "whiteout-empty": "refused",
    "nul-in-name": "refused", "nul-in-symlink": "refused", "nul-in-hardlink": "refused",
    "nul-in-xattr-name": "refused",
    "name-max": "refused", "path-max": "refused", "symlink-target-max": "refused",
    "negative-size": "refused", "huge-size": "refused", "huge-size-base256": "refused",
    "huge-size-pax": "refused", "huge-uid": "confined", "uid-no-change": "confined",
    "huge-mtime": "refused", "huge-devmajor": "confined",
    "truncated": "refused", "truncated-in-padding": "confined", "bad-checksum": "refused", "root-not-dir": "refused",
    "sparse": "refused", "pax-huge": "refused", "pax-negative-size": "refused",
    "symlink-loop": "refused", "file-as-parent": "refused",
}


def confined_corpus() -> dict[str, tuple[list[bytes], str]]:
    """Layers whose tricks must land inside the root (resolved as in a chroot,
    as umoci and containerd do): name → (layers, path that must exist in rootfs).
    The test puts a file `keep` in the sentinel next to the bundle: it must stay,
    alone."""
    return {
        # a file or directory through a symlink that points out
        "symlink-then-file": ([raw_tar([Raw("esc", "2", linkname="../../../sentinel"),
                                        Raw("esc/pwned", data=b"x")])], "sentinel/pwned"),
        "abs-symlink-then-dir": ([raw_tar([Raw("esc", "2", linkname="/../../sentinel"),
                                           Raw("esc/dir/", "5"),
                                           Raw("esc/dir/pwned", data=b"x")])], "sentinel/dir/pwned"),
        "symlink-across-layers": ([raw_tar([Raw("esc", "2", linkname="../..")]),
                                   raw_tar([Raw("esc/sentinel/pwned", data=b"x")])],
                                  "sentinel/pwned"),
        "symlink-chain": ([raw_tar([Raw("a", "2", linkname="b"), Raw("b", "2", linkname="c/../.."),
                                    Raw("c/", "5"), Raw("a/sentinel/pwned", data=b"x")])],
                          "sentinel/pwned"),
        "symlink-nested-relative": ([raw_tar([Raw("x/y/", "5"),
                                              Raw("x/y/up", "2", linkname="../../../../.."),
                                              Raw("x/y/up/sentinel/pwned", data=b"x")])],
                                    "sentinel/pwned"),
        "symlink-to-symlinked-dir": ([raw_tar([Raw("d/", "5"), Raw("d/out", "2", linkname="/.."),
                                               Raw("s", "2", linkname="d/out/../sentinel"),
                                               Raw("s/pwned", data=b"x")])], "sentinel/pwned"),
        "symlink-to-proc": ([raw_tar([Raw("p", "2", linkname="/proc/sys/kernel"),
                                      Raw("p/core_pattern", data=b"|/tmp/imagetool-pwned\n")])],
                            "proc/sys/kernel/core_pattern"),
        "symlink-to-proc-self-root": ([raw_tar([Raw("r", "2", linkname="/proc/self/root/tmp"),
                                                Raw("r/imagetool-pwned", data=b"x")])],
                                      "proc/self/root/tmp/imagetool-pwned"),
        # the last component is replaced, never written through
        "symlink-replaced-by-file": ([raw_tar([Raw("esc", "2", linkname="../../sentinel/keep"),
                                               Raw("esc", data=b"overwrite")])], "esc"),
        "symlink-replaced-by-dir": ([raw_tar([Raw("esc", "2", linkname="../../sentinel"),
                                              Raw("esc/", "5")])], "esc"),
        # hardlinks resolve their target in the root, and link a symlink itself
        "hardlink-through-symlink": ([raw_tar([Raw("esc", "2", linkname="../../.."),
                                               Raw("f", data=b"in root"),
                                               Raw("esc/esc2", "1", linkname="esc/f")])],
                                     "esc2"),
        "hardlink-to-symlink": ([raw_tar([Raw("s", "2", linkname="../../sentinel/keep"),
                                          Raw("h", "1", linkname="s")])], "h"),
        # whiteouts resolve their directory in the root, and remove a symlink, not its target
        "whiteout-through-symlink": ([raw_tar([Raw("esc", "2", linkname="../../sentinel")]),
                                      raw_tar([Raw("esc/.wh.keep"), Raw("after", data=b"x")])],
                                     "after"),
        "opaque-through-symlink": ([raw_tar([Raw("esc", "2", linkname="/../sentinel")]),
                                    raw_tar([Raw("esc/.wh..wh..opq"), Raw("after", data=b"x")])],
                                   "esc"),
        "whiteout-of-symlink": ([raw_tar([Raw("esc", "2", linkname="../../sentinel")]),
                                 raw_tar([Raw(".wh.esc"), Raw("after", data=b"x")])], "after"),
        "opaque-at-root": ([raw_tar([Raw("old", data=b"x")]),
                            raw_tar([Raw(".wh..wh..opq"), Raw("new", data=b"x")])], "new"),
        "opaque-under-a-file": ([raw_tar([Raw("f", data=b"x")]),
                                 raw_tar([Raw("f/.wh..wh..opq")])], "f"),
        "whiteout-name-as-directory": ([raw_tar([Raw("d/", "5"), Raw("d/x", data=b"x")]),
                                        raw_tar([Raw("d/.wh..wh..opq", "5"),
                                                 Raw("d/y", data=b"y")])], "d/y"),
        # names the kernel takes as they are
        "newline-in-name": ([raw_tar([Raw("a\nb", data=b"x"), Raw("c\rd", data=b"y")])], "a\nb"),
    }
