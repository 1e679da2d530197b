"""imagetool.unpacker: layers into a rootfs, compared with umoci, and hostile input."""
from __future__ import annotations

import gzip
import os
import stat
import subprocess

import pytest

from imagetool.unpacker import UnpackError, rootless_xattr, unpack
from tests.support import images, layers
from tests.support.layers import Raw, raw_tar

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (chown, mknod)")
needs_umoci = pytest.mark.skipif(not layers.have("umoci"), reason="umoci not installed")


def _layout(tmp_path, tars, **kw):
    lay = str(tmp_path / "layout")
    image = layers.write_image(lay, tars, **kw)
    return lay, image


# -- what a rootfs must look like ----------------------------------------------------------

@needs_root
def test_feature_layers_semantics(tmp_path):
    lay, _ = _layout(tmp_path, layers.feature_layers())
    unpack(lay, "latest", str(tmp_path / "b"))
    r = tmp_path / "b" / "rootfs"
    # whiteouts and opaque directories
    assert not (r / "gone").exists()
    assert sorted(os.listdir(r / "opaque")) == ["new", "new2"]
    assert stat.S_IMODE(os.stat(r / "opaque").st_mode) == 0o750
    assert not (r / "ro-dir" / "inside").exists()
    # type replacement both ways
    assert (r / "replace-me" / "now-a-dir").read_bytes() == b"dir now\n"
    assert (r / "dir-to-file").read_bytes() == b"file now\n"
    # a whiteout never hides what its own layer wrote
    assert os.readlink(r / "bin" / "sym") == "link-to-tool"
    # links: the hardlink was whited out above it, the symlinks stay verbatim
    assert not os.path.lexists(r / "bin" / "link-to-tool")
    assert os.readlink(r / "bin" / "abs") == "/etc/passwd"
    # modes, owners, special bits, devices, fifo
    st = os.lstat(r / "bin" / "tool")
    assert stat.S_IMODE(st.st_mode) == 0o4755
    st = os.lstat(r / "bin" / "sgid")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o2755, 1000, 10)
    assert stat.S_IMODE(os.lstat(r / "tmp").st_mode) == 0o1777
    st = os.lstat(r / "dev" / "null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    st = os.lstat(r / "dev" / "loop9")
    assert stat.S_ISBLK(st.st_mode) and st.st_gid == 6 and stat.S_IMODE(st.st_mode) == 0o660
    st = os.lstat(r / "run" / "fifo")
    assert stat.S_ISFIFO(st.st_mode) and st.st_uid == 1000
    st = os.lstat(r / "home" / "app")
    assert (st.st_uid, stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (1000, 0o700, 1_600_000_005 * 10**9)
    # mtimes of directories survive their contents being written
    assert os.lstat(r / "etc").st_mtime_ns == 1_600_000_001 * 10**9
    assert os.lstat(r / "ro-dir").st_mtime_ns == 1_600_000_007 * 10**9
    assert stat.S_IMODE(os.lstat(r / "ro-dir").st_mode) == 0o555
    assert os.lstat(r / "bin" / "abs").st_mtime_ns == 1_700_000_000 * 10**9
    # PAX: long names, fractional mtimes, xattrs
    long_file = r / "deep" / ("d" * 120) / "file"
    assert long_file.read_bytes() == b"long\n"
    assert os.lstat(long_file).st_mtime_ns == 1_600_000_006_500_000_000
    assert os.getxattr(r / "xattr-file", "user.comment") == b"hello"


@needs_root
@needs_umoci
def test_same_rootfs_as_umoci(tmp_path):
    lay, _ = _layout(tmp_path, layers.feature_layers())
    unpack(lay, "latest", str(tmp_path / "ours"))
    layers.umoci_unpack(lay, "latest", str(tmp_path / "umoci"))
    ours = layers.snapshot(str(tmp_path / "ours" / "rootfs"))
    theirs = layers.snapshot(str(tmp_path / "umoci" / "rootfs"))
    assert layers.diff(ours, theirs, layers.FEATURE_IMPLICIT) == []


@needs_root
@needs_umoci
def test_umoci_written_layer_same_as_umoci(tmp_path):
    """A layer written by Go's archive/tar (through umoci insert), read by both."""
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "busybox").write_bytes(open(images.BUSYBOX, "rb").read())
    os.chmod(src / "bin" / "busybox", 0o755)
    os.symlink("busybox", src / "bin" / "sh")
    os.link(src / "bin" / "busybox", src / "bin" / "hard")
    (src / "suid").write_bytes(b"s")
    os.chmod(src / "suid", 0o4711)
    os.mkfifo(src / "fifo", 0o640)
    os.mknod(src / "tty", 0o620 | stat.S_IFCHR, os.makedev(5, 0))
    os.chown(src / "tty", 0, 5, follow_symlinks=False)
    (src / "empty").write_bytes(b"")
    deep = src / ("long" * 40)
    deep.mkdir()
    (deep / "f").write_bytes(b"f" * 70000)
    os.setxattr(src / "suid", "user.note", b"kept")
    lay = str(tmp_path / "layout")
    layers.umoci_layout_from_dir(lay, "t", str(src))
    unpack(lay, "t", str(tmp_path / "ours"))
    layers.umoci_unpack(lay, "t", str(tmp_path / "umoci"))
    ours = layers.snapshot(str(tmp_path / "ours" / "rootfs"))
    theirs = layers.snapshot(str(tmp_path / "umoci" / "rootfs"))
    assert layers.diff(ours, theirs) == []
    assert ours[None] == [["/bin/busybox", "/bin/hard"]]


@needs_root
@needs_umoci
def test_layer_ending_where_the_padding_would_start(tmp_path):
    """umoci 0.4.7's insert writes layers without the last entry's padding and the
    end-of-archive blocks; Go's reader takes them as ended there, and so do we."""
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hello").write_text("from umoci\n")
    lay = str(tmp_path / "layout")
    layers.umoci_layout_from_dir(lay, "t", str(src))
    unpack(lay, "t", str(tmp_path / "ours"))
    assert (tmp_path / "ours" / "rootfs" / "etc" / "hello").read_text() == "from umoci\n"
    tar = raw_tar([Raw("d/", "5"), Raw("d/f", data=b"eleven byte")], end=False)
    lay2 = str(tmp_path / "layout2")
    layers.write_image(lay2, [tar[:-(512 - 11)]])
    unpack(lay2, None, str(tmp_path / "ours2"))
    layers.umoci_unpack(lay2, "latest", str(tmp_path / "umoci2"))
    ours = layers.snapshot(str(tmp_path / "ours2" / "rootfs"))
    theirs = layers.snapshot(str(tmp_path / "umoci2" / "rootfs"))
    assert layers.diff(ours, theirs) == []


def test_uncompressed_and_multi_member_gzip(tmp_path):
    tar = raw_tar([Raw("a", data=b"a" * 3000), Raw("b", data=b"b")])
    lay, image = _layout(tmp_path, [tar], compress=False)
    unpack(lay, None, str(tmp_path / "b1"))
    assert (tmp_path / "b1" / "rootfs" / "a").read_bytes() == b"a" * 3000
    # two gzip members, as pigz or `cat a.gz b.gz` produce
    two = gzip.compress(tar[:1024]) + gzip.compress(tar[1024:])
    lay2 = str(tmp_path / "layout2")
    image = layers.write_image(lay2, [tar])
    layers.rewrite_layer(lay2, image, 0, two, fix_diff_id=True)
    unpack(lay2, "latest", str(tmp_path / "b2"))
    assert (tmp_path / "b2" / "rootfs" / "b").read_bytes() == b"b"


def test_multi_member_gzip_large_first_member(tmp_path):
    """The first member inflates past one bounded decompress step, so zlib leaves the
    second member both in unused_data and in unconsumed_tail: it must be read once."""
    tar = raw_tar([Raw("big", data=b"z" * 9_000_000), Raw("after", data=b"after\n")])
    cut = len(tar) - 2048
    two = gzip.compress(tar[:cut]) + gzip.compress(tar[cut:])
    lay = str(tmp_path / "layout")
    image = layers.write_image(lay, [tar])
    layers.rewrite_layer(lay, image, 0, two, fix_diff_id=True)
    unpack(lay, "latest", str(tmp_path / "b"))
    assert (tmp_path / "b" / "rootfs" / "after").read_bytes() == b"after\n"
    assert os.path.getsize(tmp_path / "b" / "rootfs" / "big") == 9_000_000


def _gzip_with_header_fields(data: bytes) -> bytes:
    """A gzip member with FEXTRA, FNAME, FCOMMENT and FHCRC set (as RFC 1952 allows)."""
    import struct
    import zlib
    head = b"\x1f\x8b\x08" + bytes([0x02 | 0x04 | 0x08 | 0x10]) + b"\0\0\0\0\0\x03"
    head += struct.pack("<H", 6) + b"AB\x02\0xy" + b"layer.tar\0" + b"a comment\0"
    head += struct.pack("<H", zlib.crc32(head) & 0xFFFF)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = c.compress(data) + c.flush()
    return head + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def test_gzip_header_fields_and_trailer_length(tmp_path):
    tar = raw_tar([Raw("a", data=b"a" * 3000)])
    blob = _gzip_with_header_fields(tar)
    assert gzip.decompress(blob) == tar  # the oracle reads it too
    lay = str(tmp_path / "layout")
    image = layers.write_image(lay, [tar])
    layers.rewrite_layer(lay, image, 0, blob, fix_diff_id=True)
    unpack(lay, "latest", str(tmp_path / "b"))
    assert (tmp_path / "b" / "rootfs" / "a").read_bytes() == b"a" * 3000
    # a wrong ISIZE in the trailer is refused even though the deflate data is whole
    bad = blob[:-4] + (len(tar) + 1).to_bytes(4, "little")
    lay2 = str(tmp_path / "layout2")
    image = layers.write_image(lay2, [tar])
    layers.rewrite_layer(lay2, image, 0, bad, fix_diff_id=False)
    _assert_refused(tmp_path, lay2, "length in trailer does not match")


@needs_root
def test_uid_gid_map(tmp_path):
    tar = raw_tar([Raw("f", data=b"x", uid=1000, gid=10), Raw("d/", "5", uid=5, gid=5)])
    lay, _ = _layout(tmp_path, [tar])
    m = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    unpack(lay, None, str(tmp_path / "b"), uid_map=m, gid_map=m)
    r = tmp_path / "b" / "rootfs"
    assert (os.lstat(r / "f").st_uid, os.lstat(r / "f").st_gid) == (101000, 100010)
    assert os.lstat(r / "d").st_uid == 100005
    assert os.lstat(r).st_uid == 100000
    small = [{"containerID": 0, "hostID": 100000, "size": 10}]
    with pytest.raises(UnpackError, match=r"^f: uid 1000 is not in the uid map$"):
        unpack(lay, None, str(tmp_path / "b2"), uid_map=small, gid_map=m)
    assert not (tmp_path / "b2").exists()


def test_rootless_flavour(tmp_path):
    lay, _ = _layout(tmp_path, layers.feature_layers())
    unpack(lay, None, str(tmp_path / "b"), rootless=True)
    r = tmp_path / "b" / "rootfs"
    me = os.geteuid()
    st = os.lstat(r / "dev" / "null")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666 and st.st_size == 0
    st = os.lstat(r / "bin" / "sgid")
    assert st.st_uid == me and stat.S_IMODE(st.st_mode) == 0o2755
    assert os.getxattr(r / "bin" / "sgid", "user.rootlesscontainers") == rootless_xattr(1000, 10)
    assert os.getxattr(r / "home" / "app", "user.rootlesscontainers") == rootless_xattr(1000, 1000)
    assert "user.rootlesscontainers" not in os.listxattr(r / "etc" / "passwd")
    assert stat.S_ISFIFO(os.lstat(r / "run" / "fifo").st_mode)


@needs_root
@needs_umoci
def test_rootless_same_as_umoci_rootless(tmp_path):
    lay, _ = _layout(tmp_path, layers.feature_layers())
    unpack(lay, None, str(tmp_path / "ours"), rootless=True)
    layers.umoci_unpack(lay, "latest", str(tmp_path / "umoci"), rootless=True)
    ours = layers.snapshot(str(tmp_path / "ours" / "rootfs"))
    theirs = layers.snapshot(str(tmp_path / "umoci" / "rootfs"))
    assert layers.diff(ours, theirs, layers.FEATURE_IMPLICIT) == []


@needs_root
def test_rootless_as_unprivileged_user(tmp_path):
    """A real unprivileged process (nobody) unpacks into read-only directories."""
    import shutil
    import sys
    import tempfile
    if not layers.have("setpriv"):
        pytest.skip("setpriv not installed")
    work = tempfile.mkdtemp(prefix="imagetool-nobody-", dir="/tmp")
    try:
        os.chmod(work, 0o755)
        lay = os.path.join(work, "layout")
        layers.write_image(lay, layers.feature_layers())
        for d, ds, fs in os.walk(lay):
            os.chmod(d, 0o755)
            for f in fs:
                os.chmod(os.path.join(d, f), 0o644)
        out = os.path.join(work, "out")
        os.mkdir(out)
        os.chown(out, 65534, 65534)
        code = ("import sys; from imagetool.unpacker import unpack; "
                "unpack(sys.argv[1], None, sys.argv[2], rootless=True)")
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            sys.executable, "-c", code, lay, os.path.join(out, "b")],
                           capture_output=True, text=True, cwd="/",
                           env={"PYTHONPATH": os.getcwd(), "PATH": "/usr/bin:/bin"})
        if p.returncode and "No module named" in p.stderr:
            pytest.skip("the project is not readable by nobody")
        assert p.returncode == 0, p.stderr
        st = os.lstat(os.path.join(out, "b", "rootfs", "ro-dir"))
        assert st.st_uid == 65534 and stat.S_IMODE(st.st_mode) == 0o555
        st = os.lstat(os.path.join(out, "b", "rootfs", "bin", "sgid"))
        assert st.st_uid == 65534 and stat.S_IMODE(st.st_mode) == 0o2755
        st = os.lstat(os.path.join(out, "b"))  # the user's own, and theirs alone
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (65534, 0o700)
    finally:
        shutil.rmtree(work)


# -- who may reach the bundle --------------------------------------------------------------------

def _as_nobody(check) -> int:
    """Run check() in a forked child as uid/gid 65534 with no groups; its return value
    (a small int) is the child's exit status."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = check()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture
def shared_dir():
    """A directory under /tmp every host user can traverse (pytest's tmp_path is 0700)."""
    import tempfile
    path = tempfile.mkdtemp(prefix="imagetool-shared-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)


def _private_image(lay: str) -> None:
    layers.write_image(lay, [raw_tar([
        Raw("bin/", "5", mode=0o755),
        Raw("bin/su", data=b"#!/bin/sh\nid\n", mode=0o4755),  # setuid root
        Raw("dev/", "5", mode=0o755),
        Raw("dev/null", "3", mode=0o666, devmajor=1, devminor=3),
    ])])


@needs_root
def test_other_host_users_cannot_reach_the_rootfs(shared_dir):
    """The bundle is 0700 as umoci makes it: no other host user runs the image's
    setuid-root binary or opens its device nodes (before: 0755, and nobody got euid 0)."""
    lay = os.path.join(shared_dir, "layout")
    _private_image(lay)
    bundle = os.path.join(shared_dir, "bundle")
    unpack(lay, None, bundle)
    su = os.path.join(bundle, "rootfs", "bin", "su")
    node = os.path.join(bundle, "rootfs", "dev", "null")
    assert stat.S_IMODE(os.stat(su).st_mode) == 0o4755

    def reach() -> int:
        code = 0
        try:
            os.listdir(shared_dir)  # the test itself: nobody gets this far
        except OSError:
            return 10
        for bit, path in ((1, su), (2, node)):
            try:
                os.close(os.open(path, os.O_RDONLY))
                code |= bit
            except PermissionError:
                pass
        if os.access(su, os.X_OK):
            code |= 4
        return code
    assert _as_nobody(reach) == 0
    assert stat.S_IMODE(os.stat(bundle).st_mode) == 0o700


@needs_root
@needs_umoci
def test_bundle_and_rootfs_modes_as_umoci(tmp_path):
    lay = str(tmp_path / "layout")
    _private_image(lay)
    unpack(lay, None, str(tmp_path / "ours"))
    layers.umoci_unpack(lay, "latest", str(tmp_path / "umoci"))
    for path in ("", "rootfs"):
        ours, theirs = (os.stat(tmp_path / b / path) for b in ("ours", "umoci"))
        assert stat.S_IMODE(ours.st_mode) == stat.S_IMODE(theirs.st_mode), path
    assert stat.S_IMODE(os.stat(tmp_path / "ours").st_mode) == 0o700


def test_existing_empty_bundle_dir_made_private_and_given_back_on_failure(tmp_path):
    lay = str(tmp_path / "layout")
    layers.write_image(lay, [raw_tar([Raw("a", data=b"a")])])
    ok = tmp_path / "ok"
    ok.mkdir(mode=0o755)
    unpack(lay, None, str(ok))
    assert stat.S_IMODE(os.stat(ok).st_mode) == 0o700  # as umoci does with an existing one
    bad_lay = str(tmp_path / "bad-layout")
    layers.write_image(bad_lay, [raw_tar([Raw("../x", data=b"a")])])
    kept = tmp_path / "kept"
    kept.mkdir(mode=0o751)
    os.chmod(kept, 0o751)
    with pytest.raises(UnpackError, match="escapes the root"):
        unpack(bad_lay, None, str(kept))
    assert os.listdir(kept) == [] and stat.S_IMODE(os.stat(kept).st_mode) == 0o751


# -- bad input ------------------------------------------------------------------------------------

def _assert_refused(tmp_path, lay, match, tag=None, **kw):
    bundle = tmp_path / "bundle"
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir(exist_ok=True)
    (sentinel / "keep").write_bytes(b"keep")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(UnpackError) as exc:
        unpack(lay, tag, str(bundle), **kw)
    msg = str(exc.value)
    assert "\n" not in msg and msg
    assert match in msg, msg
    assert not bundle.exists()
    assert sorted(os.listdir(tmp_path)) == before
    assert os.listdir(sentinel) == ["keep"]
    assert not os.path.exists("/tmp/imagetool-absolute-pwned")
    return msg


HOSTILE_REASONS = {
    "dotdot-file": "../../sentinel/pwned: path escapes the root with '..'",
    "dotdot-deep": "path escapes the root",
    "dotdot-only": "..: path escapes the root with '..'",
    "dotdot-symlink-name": "../../sentinel/link: path escapes the root with '..'",
    "absolute": "/tmp/imagetool-absolute-pwned: absolute path in layer",
    "hardlink-out": "../../sentinel/target: path escapes the root",
    "hardlink-abs": "/etc/passwd: absolute path in layer",
    "hardlink-missing": "evil: hardlink target nope does not exist",
    "hardlink-via-abs-symlink": "evil: hardlink target etc-link/passwd does not exist",
    "hardlink-via-dotdot-symlink": "evil: hardlink target up/sentinel/keep does not exist",
    "hardlink-to-root": "evil: hardlink to the root directory",
    "whiteout-dotdot": ".wh...: malformed whiteout",
    "whiteout-dot": "d/.wh..: malformed whiteout",
    "whiteout-empty": ".wh.: malformed whiteout",
    "nul-in-name": "a\0b: NUL byte in name",
    "nul-in-symlink": "NUL byte in symlink target",
    "nul-in-hardlink": "NUL byte in hardlink target",
    "nul-in-xattr-name": "x: NUL byte in xattr name",
    "name-max": "path component of 256 bytes is longer than the kernel's NAME_MAX (255)",
    "path-max": "name of 4096 bytes is longer than the kernel's PATH_MAX (4096)",
    "symlink-target-max": "symlink target of 4096 bytes is longer than the kernel's PATH_MAX",
    "negative-size": "neg: negative size",
    "huge-size": "huge: archive truncated",
    "huge-size-base256": "huge: archive truncated",
    "huge-size-pax": "huge: archive truncated",
    "huge-uid": "f: owner 1099511627776:0 out of range",
    "uid-no-change": "f: owner 4294967295:0 out of range",
    "huge-mtime": "f: mtime out of range",
    "huge-devmajor": "disk: device number 5000:1 out of range",
    "truncated": "big: archive truncated",
    "truncated-in-padding": "f: archive truncated",
    "bad-checksum": "bad: tar header checksum mismatch",
    "root-not-dir": "refusing to change the type of the root directory",
    "sparse": "sparse: unsupported tar entry (GNU sparse file)",
    "pax-huge": "metadata record is too large",
    "pax-negative-size": "malformed PAX size",
    "symlink-loop": "too many levels of symbolic links",
    "file-as-parent": "f/x: parent f is not a directory",
}


def test_hostile_corpus_has_reasons_and_oracle_outcomes():
    assert set(HOSTILE_REASONS) == set(layers.hostile_corpus()) == set(layers.HOSTILE_UMOCI)


@pytest.mark.parametrize("case", sorted(HOSTILE_REASONS))
def test_hostile_layer_refused(tmp_path, case):
    lay, _ = _layout(tmp_path, layers.hostile_corpus()[case])
    _assert_refused(tmp_path, lay, HOSTILE_REASONS[case])


def _umoci_outcome(tmp_path, lay) -> str:
    """What umoci makes of a layout: refused, confined, or escapes (it wrote or removed
    outside its rootfs: the sentinel, a file next to its bundle, or a marker in it)."""
    work = tmp_path / "umoci-work"
    work.mkdir()
    (work / "sentinel").mkdir()
    (work / "sentinel" / "keep").write_bytes(b"keep")
    (work / "bundle").mkdir()
    (work / "bundle" / "marker").write_bytes(b"m")
    before = sorted(os.listdir(work))
    p = subprocess.run(["umoci", "unpack", "--image", f"{lay}:latest", str(work / "bundle")],
                       capture_output=True, text=True)
    if (sorted(os.listdir(work)) != before or os.listdir(work / "sentinel") != ["keep"]
            or not (work / "bundle" / "marker").exists()
            or os.path.exists("/tmp/imagetool-absolute-pwned")):
        return "escapes"
    return "refused" if p.returncode else "confined"


@needs_root
@needs_umoci
@pytest.mark.parametrize("case", sorted(HOSTILE_REASONS))
def test_hostile_layer_against_umoci(tmp_path, case):
    """umoci is the oracle: where it refuses we refuse; where it clamps (`..`,
    absolute names), takes what the kernel cuts (ids, device numbers) or, for
    `.wh...`, removes its own bundle, we are stricter and refuse."""
    lay, _ = _layout(tmp_path, layers.hostile_corpus()[case])
    assert _umoci_outcome(tmp_path, lay) == layers.HOSTILE_UMOCI[case]


def _core_pattern() -> bytes:
    with open("/proc/sys/kernel/core_pattern", "rb") as f:
        return f.read()


@pytest.mark.parametrize("case", sorted(layers.confined_corpus()))
def test_symlink_tricks_stay_inside(tmp_path, case):
    tars, inside = layers.confined_corpus()[case]
    lay, _ = _layout(tmp_path, tars)
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep").write_bytes(b"keep")
    outside_before = sorted(os.listdir(tmp_path))
    core_pattern = _core_pattern()
    unpack(lay, None, str(tmp_path / "b"))
    assert os.listdir(sentinel) == ["keep"]
    assert (sentinel / "keep").read_bytes() == b"keep"
    assert sorted(os.listdir(tmp_path)) == sorted(outside_before + ["b"])
    assert os.path.lexists(tmp_path / "b" / "rootfs" / inside)
    assert _core_pattern() == core_pattern
    assert not os.path.lexists("/tmp/imagetool-pwned")


@needs_root
@needs_umoci
@pytest.mark.parametrize("case", sorted(layers.confined_corpus()))
def test_symlink_tricks_umoci_confines_them_too(tmp_path, case):
    tars, inside = layers.confined_corpus()[case]
    lay, _ = _layout(tmp_path, tars)
    assert _umoci_outcome(tmp_path, lay) == "confined"
    assert os.path.lexists(tmp_path / "umoci-work" / "bundle" / "rootfs" / inside)


def test_digest_mismatch(tmp_path):
    lay, image = _layout(tmp_path, [raw_tar([Raw("a", data=b"a" * 100)])])
    layers.corrupt_blob(lay, image.layers[0].digest)
    msg = _assert_refused(tmp_path, lay, image.layers[0].digest)
    assert "does not match its digest" in msg or "gzip" in msg or "truncated" in msg


def test_diff_id_mismatch(tmp_path):
    tar = raw_tar([Raw("a", data=b"a")])
    lay, image = _layout(tmp_path, [tar])
    other = gzip.compress(raw_tar([Raw("a", data=b"b")]))
    layers.rewrite_layer(lay, image, 0, other, fix_diff_id=False)
    _assert_refused(tmp_path, lay, "does not match diff_id")


def test_truncated_gzip(tmp_path):
    tar = raw_tar([Raw("a", data=os.urandom(20000))])
    lay, image = _layout(tmp_path, [tar])
    short = gzip.compress(tar)[:-100]
    layers.rewrite_layer(lay, image, 0, short, fix_diff_id=False)
    _assert_refused(tmp_path, lay, "truncated")


def test_unsupported_media_type(tmp_path):
    lay, image = _layout(tmp_path, [raw_tar([Raw("a")])])
    import json
    mpath = layers.blob_file(lay, image.manifest.digest)
    doc = json.loads(open(mpath).read())
    doc["layers"][0]["mediaType"] = "application/x-rar"
    new = images.Blob(image.manifest.media_type, json.dumps(doc).encode())
    images.write_layout(lay, {"latest": images.Image(new, image.config, image.layers)})
    _assert_refused(tmp_path, lay, "unsupported layer media type 'application/x-rar'")


def test_missing_layout_tag_and_busy_bundle(tmp_path):
    _assert_refused(tmp_path, str(tmp_path / "nope"), "no such layout directory")
    lay, _ = _layout(tmp_path, [raw_tar([Raw("a")])])
    _assert_refused(tmp_path, lay, "no such tag", tag="v9")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("mine")
    with pytest.raises(UnpackError, match="exists and is not empty"):
        unpack(lay, None, str(busy))
    assert (busy / "x").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    unpack(lay, None, str(empty))
    assert (empty / "rootfs" / "a").exists()


def test_unknown_user_removes_bundle(tmp_path):
    lay, _ = _layout(tmp_path, [raw_tar([Raw("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n")])],
                     user="ghost")
    _assert_refused(tmp_path, lay, "user 'ghost' not found in the image's /etc/passwd")


@needs_root
def test_setgid_bundle_parent_does_not_leak_its_group(tmp_path):
    parent = tmp_path / "sgid"
    parent.mkdir()
    os.chown(parent, 0, 50)
    os.chmod(parent, 0o2775)
    lay, _ = _layout(tmp_path, [raw_tar([Raw("d/", "5"), Raw("d/f", data=b"x"), Raw("g", data=b"y")])])
    unpack(lay, None, str(parent / "b"))
    r = parent / "b" / "rootfs"
    for p in (parent / "b", r, r / "d", r / "d" / "f", r / "g"):
        st = os.lstat(p)
        assert st.st_mode & stat.S_ISGID == 0, p
    for p in (r, r / "d", r / "d" / "f", r / "g"):
        assert os.lstat(p).st_gid == 0, p


def test_gnu_and_v7_tar_formats(tmp_path):
    """GNU long names/links ('L'/'K') and base-256 numbers, as GNU tar writes them."""
    import io
    import tarfile
    long_dir = "g" * 150
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, kind, extra in [(long_dir, tarfile.DIRTYPE, {}),
                                  (long_dir + "/file", tarfile.REGTYPE, {"uid": 0o10000000}),
                                  ("sym", tarfile.SYMTYPE, {"linkname": long_dir + "/file"})]:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mtime = 1_650_000_000
            for k, v in extra.items():
                setattr(info, k, v)
            data = b"gnu\n" if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    lay, _ = _layout(tmp_path, [buf.getvalue()])
    unpack(lay, None, str(tmp_path / "b"), rootless=True)
    r = tmp_path / "b" / "rootfs"
    assert (r / long_dir / "file").read_bytes() == b"gnu\n"
    assert os.readlink(r / "sym") == long_dir + "/file"
    assert os.getxattr(r / long_dir / "file", "user.rootlesscontainers") == rootless_xattr(0o10000000, 0)


@pytest.mark.parametrize("threaded", [False, True])
def test_inflate_inline_and_in_a_thread_agree(tmp_path, monkeypatch, threaded):
    """Small layers inflate inline, big ones in a producer thread: both give the same
    rootfs and both refuse a corrupt layer the same way."""
    import imagetool.unpacker as unpacker
    monkeypatch.setattr(unpacker, "_THREAD_ABOVE", -1 if threaded else 1 << 62)
    tars = [raw_tar([Raw(f"d/f{i}", data=os.urandom(3000)) for i in range(50)]),
            raw_tar([Raw("d/f1", data=b"replaced")])]
    lay, image = _layout(tmp_path, tars)
    unpack(lay, "latest", str(tmp_path / "b"))
    assert open(tmp_path / "b" / "rootfs" / "d" / "f1", "rb").read() == b"replaced"
    assert len(os.listdir(tmp_path / "b" / "rootfs" / "d")) == 50
    layers.corrupt_blob(lay, image.layers[0].digest)
    msg = _assert_refused(tmp_path, lay, image.layers[0].digest)
    assert "does not match its digest" in msg or "gzip" in msg or "truncated" in msg


@pytest.mark.parametrize("threaded", [False, True])
def test_zstd_inline_and_in_a_thread_agree(tmp_path, monkeypatch, threaded):
    """zstd layers take the same two paths: in a thread, zstandard reads the blob through
    the hashes both threads share. The same rootfs, a corrupt blob refused, no thread left."""
    import threading

    import imagetool.unpacker as unpacker
    pytest.importorskip("zstandard", reason="the zstandard package is not installed")
    monkeypatch.setattr(unpacker, "_THREAD_ABOVE", -1 if threaded else 1 << 62)
    data = [os.urandom(30000) for _ in range(50)]
    tars = [raw_tar([Raw(f"d/f{i}", data=d) for i, d in enumerate(data)]),
            raw_tar([Raw("d/f1", data=b"replaced")])]
    lay, image = _layout(tmp_path, tars, compression="zstd")
    assert image.layers[0].media_type == images.OCI_LAYER_ZSTD
    unpack(lay, "latest", str(tmp_path / "b"))
    assert open(tmp_path / "b" / "rootfs" / "d" / "f1", "rb").read() == b"replaced"
    assert all(open(tmp_path / "b" / "rootfs" / "d" / f"f{i}", "rb").read() == d
               for i, d in enumerate(data) if i != 1)
    layers.corrupt_blob(lay, image.layers[0].digest)
    msg = _assert_refused(tmp_path, lay, image.layers[0].digest)
    assert "does not match its digest" in msg or "zstd" in msg, msg
    assert [t.name for t in threading.enumerate() if t.name.startswith("layer-")] == []


@pytest.mark.parametrize("threaded", [False, True])
def test_diff_id_checked_inline_and_in_a_thread_and_no_thread_stays(tmp_path, monkeypatch, threaded):
    """A big layer is inflated in one thread and its diff_id hashed in another: a mismatch
    is refused as inline, and neither a good unpack nor a refused one, at the end or half-way,
    leaves a thread behind (the library runs in its caller's process)."""
    import threading

    import imagetool.unpacker as unpacker
    monkeypatch.setattr(unpacker, "_THREAD_ABOVE", -1 if threaded else 1 << 62)
    tar = raw_tar([Raw(f"f{i}", data=os.urandom(5000)) for i in range(40)])
    lay, image = _layout(tmp_path, [tar])
    unpack(lay, "latest", str(tmp_path / "good"))
    other = gzip.compress(raw_tar([Raw(f"f{i}", data=b"other") for i in range(40)]))
    layers.rewrite_layer(lay, image, 0, other, fix_diff_id=False)
    _assert_refused(tmp_path, lay, "does not match diff_id")
    # a tar error early in a long layer: the consumer stops reading while the producer
    # still has megabytes to go, and its threads must stop too
    bad = raw_tar([Raw("f0", data=b"x"), Raw("bad", data=b"x", bad_checksum=True)]
                  + [Raw(f"big{i}", data=os.urandom(1 << 20)) for i in range(8)])
    layers.rewrite_layer(lay, image, 0, gzip.compress(bad, compresslevel=1), fix_diff_id=True)
    _assert_refused(tmp_path, lay, "checksum mismatch")
    assert [t.name for t in threading.enumerate() if t.name.startswith("layer-")] == []


def test_shared_hashes_keep_each_streams_order():
    """_SharedHash: two streams (the blob's and the diff_id's) queued together and hashed
    by two threads at once, each taking the next chunk when it can, give each stream's
    digest in its order, and no more than `limit` chunks wait."""
    import hashlib
    import random
    import threading

    from imagetool.unpacker import _SharedHash
    blob = [os.urandom(random.randrange(1, 5000)) for _ in range(2000)]
    tar = [os.urandom(random.randrange(1, 5000)) for _ in range(3000)]
    shared = _SharedHash(limit=4)
    blob_hash, tar_hash = shared.hasher(hashlib.sha256()), shared.hasher(hashlib.sha256())
    most = []

    def produce():
        b = iter(blob)
        for c in tar:
            for _ in range(random.randrange(0, 3)):
                chunk = next(b, None)
                if chunk is not None:
                    blob_hash.update(chunk)
            tar_hash.update(c)
            most.append(len(shared.pending))
            if random.random() < 0.3:
                shared.step()
        for chunk in b:
            blob_hash.update(chunk)

    t = threading.Thread(target=produce)
    t.start()
    while t.is_alive():
        shared.step()
    t.join()
    assert tar_hash.hexdigest() == hashlib.sha256(b"".join(tar)).hexdigest()
    assert blob_hash.hexdigest() == hashlib.sha256(b"".join(blob)).hexdigest()
    assert max(most) <= 4


def test_a_failing_diff_id_hash_fails_the_unpack(tmp_path, monkeypatch):
    """The diff_id hasher's failure (in the consumer, beside the inflate thread) reaches the
    caller, the inflate thread stops though the layer is longer than its queue is deep,
    and nothing is left."""
    import threading
    import imagetool.unpacker as unpacker
    real = unpacker._hasher

    class Broken:
        def update(self, data):
            raise MemoryError("hash thread out of memory")

    def hasher(digest, what, size):
        h, hexpart = real(digest, what, size)
        return (Broken(), hexpart) if what == "diff_id" else (h, hexpart)

    monkeypatch.setattr(unpacker, "_THREAD_ABOVE", -1)
    monkeypatch.setattr(unpacker, "_hasher", hasher)
    tar = raw_tar([Raw(f"f{i}", data=os.urandom(1 << 18)) for i in range(40)])
    lay, _ = _layout(tmp_path, [tar])
    with pytest.raises(MemoryError, match="hash thread"):
        unpack(lay, "latest", str(tmp_path / "b"))
    assert not (tmp_path / "b").exists()
    assert [t.name for t in threading.enumerate() if t.name.startswith("layer-")] == []
