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
