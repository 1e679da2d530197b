"""What a hostile layout may cost unpack: blobs are read up to their declared size and
no further, and trees of any depth unpack, fail and go away in linear work and with
a bounded number of fds (issue 15: "layers that cost without bound")."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from imagetool.unpacker import UnpackError, unpack
from tests.support import layers
from tests.support.layers import Raw, raw_tar

ROOT = os.geteuid() == 0
needs_umoci = pytest.mark.skipif(not layers.have("umoci"), reason="umoci not installed")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def work(tmp_path):
    """tmp_path, emptied with rm -rf afterwards: pytest's own clean-up (shutil.rmtree,
    recursive in 3.11) cannot remove trees thousands of directories deep."""
    yield tmp_path
    subprocess.run(["rm", "-rf", "--one-file-system", str(tmp_path)], check=False)


def _layout(tmp_path, tars, compress=True):
    lay = str(tmp_path / "layout")
    return lay, layers.write_image(lay, tars, compress=compress)


def _refused(tmp_path, lay, match: str) -> str:
    bundle = tmp_path / "bundle"
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(UnpackError) as exc:
        unpack(lay, None, str(bundle))
    msg = str(exc.value)
    assert match in msg, msg
    assert "\n" not in msg
    assert not bundle.exists()
    assert sorted(os.listdir(tmp_path)) == before
    return msg


def _rchar() -> int:
    """Bytes this process has read(2) so far: the kernel's count, not ours."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


# -- blobs longer than their descriptors --------------------------------------------------

@pytest.mark.parametrize("compress", [True, False])
def test_layer_blob_longer_than_its_descriptor(tmp_path, compress):
    lay, image = _layout(tmp_path, [raw_tar([Raw("a", data=b"a" * 100)])], compress)
    with open(layers.blob_file(lay, image.layers[0].digest), "ab") as f:
        f.write(b"\0" * 4096)
    size = len(image.layers[0].data)
    _refused(tmp_path, lay, f"{image.layers[0].digest}: layer blob is longer than the {size} "
                            "bytes its descriptor declares")


@pytest.mark.parametrize("compress", [True, False])
def test_layer_blob_is_read_only_to_its_declared_size(tmp_path, compress):
    """A blob file with a 1 GiB (sparse) tail: unpack reads the declared bytes and one more."""
    lay, image = _layout(tmp_path, [raw_tar([Raw("a", data=b"a" * 100)])], compress)
    os.truncate(layers.blob_file(lay, image.layers[0].digest), 1 << 30)
    before = _rchar()
    _refused(tmp_path, lay, "layer blob is longer than")
    assert _rchar() - before < 32 << 20


@pytest.mark.parametrize("which", ["config", "manifest"])
def test_json_blob_longer_than_its_descriptor(tmp_path, which):
    lay, image = _layout(tmp_path, [raw_tar([Raw("a", data=b"a")])])
    blob = image.config if which == "config" else image.manifest
    with open(layers.blob_file(lay, blob.digest), "ab") as f:
        f.write(b" " * 10)
    _refused(tmp_path, lay, f"{blob.digest}: blob is longer than the {len(blob.data)} bytes "
                            "its descriptor declares")


def test_index_json_is_bounded(tmp_path):
    lay, _ = _layout(tmp_path, [raw_tar([Raw("a", data=b"a")])])
    os.truncate(os.path.join(lay, "index.json"), 64 << 20)
    _refused(tmp_path, lay, "index.json: larger than 4194304 bytes")


def _cli_unpack(lay: str, bundle: str) -> subprocess.CompletedProcess:
    # A subprocess with a timeout: the code before the fix reads /dev/zero or waits on
    # the FIFO forever, and the test must fail, not hang.
    return subprocess.run([sys.executable, "-m", "imagetool.cli", "unpack", lay, bundle],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.mark.parametrize("which", ["layer", "config", "manifest"])
@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_blob_that_is_not_a_regular_file(tmp_path, which, kind):
    """umoci reads /dev/zero up to the declared size and blocks on a FIFO; we refuse both
    before reading (stricter)."""
    lay, image = _layout(tmp_path, [raw_tar([Raw("a", data=b"a")])])
    blob = {"layer": image.layers[0], "config": image.config, "manifest": image.manifest}[which]
    path = layers.blob_file(lay, blob.digest)
    os.unlink(path)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    p = _cli_unpack(lay, str(tmp_path / "bundle"))
    assert p.returncode == 1, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("imagetool: "), p.stderr
    assert f"{blob.digest}: blob in layout {lay}: not a regular file" in p.stderr, p.stderr
    assert not (tmp_path / "bundle").exists()


# -- depth ----------------------------------------------------------------------------------

DEEP = 2000  # directories; "d/" * 2000 is 4000 bytes, a name the kernel still takes


def _deep(depth: int = DEEP, letter: str = "d") -> str:
    return "/".join([letter] * depth)


def _hops(hops: int, per: int = 1500) -> list[Raw]:
    """Depth past PATH_MAX from names under it: each hop is a symlink to the end of the
    one before."""
    entries, prev = [], None
    for i in range(hops):
        base = (f"s{i}/" if prev else "") + _deep(per, chr(ord("a") + i))
        entries.append(Raw("x", "5", mode=0o755, pax={"path": base + "/"}))
        entries.append(Raw(f"s{i + 1}", "2", pax={"linkpath": base}))
        prev = base
    entries.append(Raw("x", data=b"deep\n", pax={"path": f"s{hops}/f"}))
    return entries


def _open_deep(rootfs: str, depth: int, letter: str = "d") -> int:
    """An O_PATH fd of the directory `depth` levels down, one component at a time."""
    fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY)
    for _ in range(depth):
        nfd = os.open(letter, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        os.close(fd)
        fd = nfd
    return fd


def _listdir_deep(rootfs: str, depth: int, letter: str = "d") -> list[str]:
    fd = _open_deep(rootfs, depth, letter)
    try:
        lfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        try:
            return sorted(os.listdir(lfd))
        finally:
            os.close(lfd)
    finally:
        os.close(fd)


def _unpack_with_few_fds(lay: str, bundle: str, nofile: int = 64) -> subprocess.CompletedProcess:
    code = ("import resource, sys\n"
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}))\n"
            "from imagetool.unpacker import unpack\n"
            "unpack(sys.argv[1], None, sys.argv[2])\n")
    return subprocess.run([sys.executable, "-c", code, lay, bundle], capture_output=True,
                          text=True, cwd=REPO)


def test_deep_tree_unpacks_with_64_fds(work):
    """Depth costs no fds: a walk holds one beyond a cache sized from RLIMIT_NOFILE
    (the code before cached every directory of a walk and ran out at 64)."""
    lay, _ = _layout(work, [raw_tar([Raw("x", "5", mode=0o750, pax={"path": _deep() + "/"}),
                                     Raw("x", data=b"deep\n", pax={"path": _deep() + "/f"})])])
    p = _unpack_with_few_fds(lay, str(work / "b"))
    assert p.returncode == 0, p.stderr[-2000:]
    rootfs = str(work / "b" / "rootfs")
    assert _listdir_deep(rootfs, DEEP) == ["f"]
    fd = _open_deep(rootfs, DEEP)
    try:  # the deepest directory got its metadata too
        assert os.fstat(fd).st_mode & 0o777 == 0o750
    finally:
        os.close(fd)


@needs_umoci
def test_deep_tree_same_as_umoci(work):
    depth = 600  # umoci walks each path from its root again: its time grows as depth squared
    lay, _ = _layout(work, [raw_tar([Raw("x", "5", mode=0o711, pax={"path": _deep(depth) + "/"}),
                                     Raw("x", data=b"f", pax={"path": _deep(depth) + "/f"})])])
    unpack(lay, None, str(work / "ours"))
    layers.umoci_unpack(lay, "latest", str(work / "umoci"))
    for bundle in ("ours", "umoci"):
        rootfs = str(work / bundle / "rootfs")
        assert _listdir_deep(rootfs, depth) == ["f"], bundle
        fd = _open_deep(rootfs, depth)
        try:
            assert os.fstat(fd).st_mode & 0o777 == 0o711, bundle
        finally:
            os.close(fd)


def test_depth_past_path_max_through_symlinks_refused(work):
    """3000 directories from names of 3000 bytes: refused in one line, as umoci refuses
    it (its path is too long for the kernel), and the half-made bundle goes."""
    lay, _ = _layout(work, [raw_tar(_hops(2))])
    _refused(work, lay, "past the kernel's PATH_MAX (4096)")
    if layers.have("umoci"):
        p = subprocess.run(["umoci", "unpack", "--image", f"{lay}:latest", str(work / "u")],
                           capture_output=True, text=True)
        assert p.returncode != 0 and "file name too long" in p.stderr


def test_failure_deep_in_a_tree_removes_the_bundle(work):
    """The real error, in one line, and the half-made deep bundle gone (before: the
    recursive clean-up died with "maximum recursion depth exceeded" and left it)."""
    lay, _ = _layout(work, [raw_tar([Raw("x", "5", pax={"path": _deep() + "/"}),
                                     Raw("x", data=b"x", pax={"path": _deep(10) + "/" + "n" * 256})])])
    _refused(work, lay, "path component of 256 bytes is longer than the kernel's NAME_MAX (255)")


def test_failure_after_deep_tree_removes_it(work):
    """A failure that is only found at the layer's end (the diff_id), after the tree is made."""
    tar = raw_tar([Raw("x", data=b"x", pax={"path": _deep() + "/f"})])
    lay, image = _layout(work, [tar])
    import gzip
    layers.rewrite_layer(lay, image, 0, gzip.compress(tar + b"\0" * 1024), fix_diff_id=False)
    _refused(work, lay, "does not match diff_id")


def test_whiteout_of_a_deep_tree(work):
    lay, _ = _layout(work, [raw_tar([Raw("x", data=b"x", pax={"path": _deep() + "/f"})]),
                            raw_tar([Raw(".wh.d"), Raw("kept", data=b"k")])])
    unpack(lay, None, str(work / "b"))
    assert os.listdir(work / "b" / "rootfs") == ["kept"]


def test_opaque_over_a_deep_tree_this_layer_rewrote(work):
    """An opaque whiteout hides the lower content of directories the layer itself wrote,
    at every depth (before: one Python frame per level, RecursionError at ~1000)."""
    lower = raw_tar([Raw("x", "5", pax={"path": _deep() + "/"}),
                     Raw("x", data=b"old\n", pax={"path": _deep() + "/old"}),
                     Raw("x", data=b"old\n", pax={"path": _deep(1000) + "/old"})])
    upper = raw_tar([Raw("d/.wh..wh..opq"), Raw("x", data=b"new\n", pax={"path": _deep() + "/new"})])
    lay, _ = _layout(work, [lower, upper])
    unpack(lay, None, str(work / "b"))
    rootfs = str(work / "b" / "rootfs")
    assert _listdir_deep(rootfs, DEEP) == ["new"]
    assert _listdir_deep(rootfs, 1000) == ["d"]


@pytest.fixture
def shared_work():
    """A directory under /tmp that nobody (uid 65534) can reach, removed with rm -rf."""
    import tempfile
    path = tempfile.mkdtemp(prefix="imagetool-nobody-", dir="/tmp")
    os.chmod(path, 0o755)
    yield __import__("pathlib").Path(path)
    subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)


@pytest.mark.skipif(not ROOT, reason="needs root (to run the unpack as nobody)")
def test_failure_in_finish_removes_closed_deep_directories(shared_work):
    """A rootless unpack (as nobody: no capability overrides a mode) that fails in the
    directory pass, after a 0000 mode deep down was applied, still removes it all."""
    chain = _deep(1200, "c")
    entries = [Raw("x", "5", mode=0o000, pax={"path": chain + "/"}),
               # applied after everything below it; ext4 takes no 70 kB xattr value (E2BIG)
               Raw("c/", "5", pax={"SCHILY.xattr.user.big": b"v" * 70000})]
    work = shared_work
    lay = str(work / "layout")
    layers.write_image(lay, [raw_tar(entries)])
    for d, _, fs in os.walk(lay):
        os.chmod(d, 0o755)
        for f in fs:
            os.chmod(os.path.join(d, f), 0o644)
    os.mkdir(work / "out")
    os.chown(work / "out", 65534, 65534)
    code = ("import os, sys\n"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            "from imagetool.unpacker import unpack, UnpackError\n"
            "try:\n"
            "    unpack(sys.argv[1], None, sys.argv[2], rootless=True)\n"
            "except UnpackError as e:\n"
            "    print(e)\n")
    p = subprocess.run([sys.executable, "-c", code, lay, str(work / "out" / "b")],
                       capture_output=True, text=True, cwd="/", env={"PYTHONPATH": REPO})
    if "No module named" in p.stderr:
        pytest.skip("the project is not readable by nobody")
    assert "cannot set xattr user.big" in p.stdout, (p.stdout, p.stderr[-2000:])
    assert os.listdir(work / "out") == []
