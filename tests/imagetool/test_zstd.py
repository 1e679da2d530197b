"""zstd layers (application/vnd.oci.image.layer.v1.tar+zstd): pulled from a real registry,
unpacked, and the same rootfs as the gzip image of the same layers."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import imagetool
from imagetool.layout import Layout
from tests.support import images, layers
from tests.imagetool.clitools import assert_one_line_error, run_cli

zstandard = pytest.importorskip("zstandard", reason="the zstandard package is not installed")

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (chown, mknod in feature layers)")




@pytest.fixture(scope="module")
def pushed(registry):
    """The feature layers as gzip, as zstd, as multi-frame zstd and as a gzip/zstd mix."""
    tars = layers.feature_layers()
    variants = {"gzip": "gzip", "zstd": "zstd", "frames": "zstd-frames",
                "mixed": ["zstd" if i % 2 else "gzip" for i in range(len(tars))]}
    out = {}
    for tag, compression in variants.items():
        image = images.build_image(tars, cmd=["sh"], compression=compression)
        images.push(registry.address, "demo/zstd", tag, image)
        out[tag] = image
    return registry, out


def _pull_and_unpack(registry, tag: str, tmp_path) -> str:
    layout = str(tmp_path / f"layout-{tag}")
    proc = run_cli("pull", f"{registry.address}/demo/zstd:{tag}", layout)
    assert proc.returncode == 0, proc.stderr
    bundle = str(tmp_path / f"bundle-{tag}")
    proc = run_cli("unpack", f"{layout}:{tag}", bundle)
    assert proc.returncode == 0, proc.stderr
    return layout, bundle


@needs_root
@pytest.mark.parametrize("tag", ["zstd", "frames", "mixed"])
def test_zstd_image_unpacks_like_its_gzip_twin(pushed, tmp_path, tag):
    registry, built = pushed
    layout, bundle = _pull_and_unpack(registry, tag, tmp_path)
    # Stored as served: the zstd blobs and their media type are in the layout.
    manifest = Layout(layout).read_json(Layout(layout).resolve(tag)["digest"])
    types = [l["mediaType"] for l in manifest["layers"]]
    assert types == [l.media_type for l in built[tag].layers]
    assert images.OCI_LAYER_ZSTD in types
    _, gzip_bundle = _pull_and_unpack(registry, "gzip", tmp_path)
    ours = layers.snapshot(os.path.join(bundle, "rootfs"))
    twin = layers.snapshot(os.path.join(gzip_bundle, "rootfs"))
    assert layers.diff(ours, twin, layers.FEATURE_IMPLICIT) == []
    # Same image config, so the same runtime config apart from nothing at all.
    with open(os.path.join(bundle, "config.json")) as a, \
            open(os.path.join(gzip_bundle, "config.json")) as b:
        assert a.read() == b.read()


@needs_root
def test_zstd_rootfs_same_as_umoci_on_the_gzip_twin(pushed, tmp_path):
    """umoci 0.4 has no zstd: it unpacks the gzip twin, we unpack the zstd image."""
    if not layers.have("umoci"):
        pytest.skip("umoci not installed")
    registry, _ = pushed
    _, bundle = _pull_and_unpack(registry, "zstd", tmp_path)
    gzip_layout = str(tmp_path / "gz")
    imagetool.pull(f"{registry.address}/demo/zstd:gzip", gzip_layout)
    layers.umoci_unpack(gzip_layout, "gzip", str(tmp_path / "umoci"))
    ours = layers.snapshot(os.path.join(bundle, "rootfs"))
    theirs = layers.snapshot(str(tmp_path / "umoci" / "rootfs"))
    assert layers.diff(ours, theirs, layers.FEATURE_IMPLICIT) == []


def test_skopeo_reads_a_zstd_layout(pushed, tmp_path):
    if not layers.have("skopeo"):
        pytest.skip("skopeo not installed")
    registry, built = pushed
    layout = str(tmp_path / "layout")
    imagetool.pull(f"{registry.address}/demo/zstd:zstd", layout)
    out = subprocess.run(["skopeo", "inspect", f"oci:{layout}:zstd"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    import json
    assert json.loads(out.stdout)["Layers"] == [l.digest for l in built["zstd"].layers]


# -- bad zstd streams: the blob's digest is right, its content is not a good stream --------------

TAR = layers.raw_tar([layers.Raw("a", data=b"zstd " * 20000), layers.Raw("b", data=b"b")])


def _good_zstd() -> bytes:
    return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(TAR)


def _flipped() -> bytes:
    data = bytearray(_good_zstd())
    data[len(data) // 2] ^= 0x55
    return bytes(data)


@pytest.mark.parametrize("case,blob,needle", [
    ("not zstd", lambda: b"this is not a zstd stream" * 10, "corrupt zstd stream"),
    ("flipped byte", _flipped, "corrupt zstd stream"),
    ("trailing garbage", lambda: _good_zstd() + b"garbage!", "corrupt zstd stream"),
    ("cut short", lambda: _good_zstd()[:-40], "does not match diff_id"),
])
def test_bad_zstd_stream_is_one_line_and_leaves_nothing(tmp_path, case, blob, needle):
    layout = str(tmp_path / "layout")
    image = layers.write_image(layout, [TAR], compression="zstd")
    # The manifest names the bad blob by its own digest: only the stream itself is wrong.
    layers.rewrite_layer(layout, image, 0, blob(), fix_diff_id=False)
    bad_digest = images.sha256(blob())
    before = sorted(os.listdir(tmp_path))
    bundle = str(tmp_path / "bundle")
    proc = run_cli("unpack", f"{layout}:latest", bundle)
    assert_one_line_error(proc, bad_digest, needle)
    assert not os.path.exists(bundle)
    assert sorted(os.listdir(tmp_path)) == before


def test_zstd_bomb_is_streamed_in_bounded_steps(tmp_path):
    """256 MiB of zeros in a few KiB of zstd: unpacked in bounded reads, not in one call
    (a decompressobj().decompress() of the whole blob would hold all 256 MiB at once)."""
    size = 256 << 20
    layout = str(tmp_path / "layout")
    tar = layers.raw_tar([layers.Raw("zeros", data=b"\0" * size)])
    image = layers.write_image(layout, [tar], compression="zstd")
    del tar
    assert image.layers[0].descriptor()["size"] < 64 * 1024
    # VmHWM, not ru_maxrss: the latter carries the forking test process's peak across exec.
    probe = ("import imagetool, sys; imagetool.unpack(sys.argv[1], 'latest', sys.argv[2]);"
             "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))")
    proc = subprocess.run([sys.executable, "-c", probe, layout, str(tmp_path / "b")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert os.path.getsize(tmp_path / "b" / "rootfs" / "zeros") == size
    peak_kib = int(proc.stdout)
    assert peak_kib < 128 * 1024, f"unpack peaked at {peak_kib} KiB"
