"""The layout store against layouts written by a builder and read by skopeo."""
import json
import os
import shutil
import subprocess

import pytest

from imagetool.layout import Layout, LayoutError, REF_NAME
from tests.support import images


@pytest.fixture
def layout_dir(tmp_path):
    path = str(tmp_path / "layout")
    images.write_layout(path, {"latest": images.busybox_image(), "v2": images.busybox_image(cmd=["id"])})
    return path


def test_resolve_reads_tagged_manifest_and_config(layout_dir):
    layout = Layout(layout_dir)
    desc = layout.resolve("v2")
    manifest = layout.read_json(desc["digest"])
    config = layout.read_json(manifest["config"]["digest"])
    assert config["config"]["Cmd"] == ["id"]
    assert layout.resolve(None) == layout.resolve("latest")
    with layout.open_blob(manifest["layers"][0]["digest"]) as f:
        assert f.read(2) == b"\x1f\x8b"  # gzip magic
    assert layout.resolve(desc["digest"]) == desc


def test_missing_layout_and_tag_are_one_line_errors(tmp_path, layout_dir):
    with pytest.raises(LayoutError, match="no such layout directory"):
        Layout(str(tmp_path / "nope"))
    with pytest.raises(LayoutError, match=r":nosuch: no such tag"):
        Layout(layout_dir).resolve("nosuch")
    (tmp_path / "plain").mkdir()
    with pytest.raises(LayoutError, match="not an OCI image layout"):
        Layout(str(tmp_path / "plain"))


def test_corrupt_json_blob_is_refused(layout_dir):
    layout = Layout(layout_dir)
    digest = layout.resolve("latest")["digest"]
    os.chmod(layout.blob_path(digest), 0o644)
    with open(layout.blob_path(digest), "r+b") as f:
        f.write(b"[")
    with pytest.raises(LayoutError, match=digest + ": blob content does not match"):
        layout.read_json(digest)


def test_set_tag_replaces_and_skopeo_reads_it(tmp_path):
    path = str(tmp_path / "new")
    layout = Layout.create(path)
    image = images.busybox_image()
    for blob in [*image.blobs(), image.manifest]:
        assert layout.write_blob(blob.digest, blob.data)
    layout.set_tag("a", image.descriptor())
    layout.set_tag("a", image.descriptor())
    layout.set_tag("b", image.descriptor())
    names = [t for t, _ in layout.tags()]
    assert sorted(names) == ["a", "b"]
    assert json.load(open(os.path.join(path, "oci-layout"))) == {"imageLayoutVersion": "1.0.0"}
    if not shutil.which("skopeo"):
        pytest.skip("skopeo not installed")
    out = subprocess.run(["skopeo", "inspect", f"oci:{path}:a"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Digest"] == image.manifest.digest


def test_create_refuses_a_non_layout_directory(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "file").write_text("x")
    with pytest.raises(LayoutError, match="not empty"):
        Layout.create(str(tmp_path / "d"))
    assert sorted(os.listdir(tmp_path / "d")) == ["file"]


def test_reads_a_layout_skopeo_wrote(tmp_path, layout_dir):
    if not shutil.which("skopeo"):
        pytest.skip("skopeo not installed")
    dest = str(tmp_path / "copy")
    out = subprocess.run(["skopeo", "copy", f"oci:{layout_dir}:v2", f"oci:{dest}:copied"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    layout = Layout(dest)
    desc = layout.resolve("copied")
    assert desc["annotations"][REF_NAME] == "copied"
    config = layout.read_json(layout.read_json(desc["digest"])["config"]["digest"])
    assert config["config"]["Cmd"] == ["id"]
