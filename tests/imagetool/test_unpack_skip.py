"""imagetool.unpacker: files a later layer removes are not written (_LaterRemovals), and
the rootfs, the refusals and their messages are the same as when everything is written."""
from __future__ import annotations

import os

import pytest

import imagetool.unpacker as unpacker
from imagetool.unpacker import UnpackError, unpack
from tests.imagetool.test_unpack import HOSTILE_REASONS, _assert_refused, needs_root, needs_umoci
from tests.support import layers
from tests.support.layers import Raw, raw_tar


@pytest.fixture
def scan(monkeypatch):
    """The scan runs for every image of more than one layer and is done before the first
    layer is applied (in use it runs beside it); the files skipped and the restarts are
    counted."""
    seen = {"skipped": 0, "restarts": 0}
    real_init, real_skip = unpacker._LaterRemovals.__init__, unpacker._Applier._skip
    real_apply = unpacker._apply_all

    def init(self, layout, layer_list):
        real_init(self, layout, layer_list)
        self.thread.join()

    def skip(self, *args):
        seen["skipped"] += 1
        real_skip(self, *args)

    def apply_all(*args):
        if not args[-1]:
            seen["restarts"] += 1
        return real_apply(*args)

    monkeypatch.setattr(unpacker, "_THREAD_ABOVE", -1)
    monkeypatch.setattr(unpacker._LaterRemovals, "__init__", init)
    monkeypatch.setattr(unpacker._Applier, "_skip", skip)
    monkeypatch.setattr(unpacker, "_apply_all", apply_all)
    return seen


def _layout(tmp_path, tars):
    lay = str(tmp_path / "layout")
    layers.write_image(lay, tars)
    return lay


def _same_as_umoci(tmp_path, lay, implicit=frozenset(), umoci=True):
    """The rootfs with the scan is the one without it, and umoci's (directories made
    implicitly have the time of the unpack for their mtime)."""
    unpack(lay, "latest", str(tmp_path / "ours"))
    ours = layers.snapshot(str(tmp_path / "ours" / "rootfs"))
    with pytest.MonkeyPatch.context() as m:
        m.setattr(unpacker, "_THREAD_ABOVE", 1 << 62)
        unpack(lay, "latest", str(tmp_path / "plain"))
    assert layers.diff(ours, layers.snapshot(str(tmp_path / "plain" / "rootfs")), implicit) == []
    if umoci:
        layers.umoci_unpack(lay, "latest", str(tmp_path / "umoci"))
        theirs = layers.snapshot(str(tmp_path / "umoci" / "rootfs"))
        assert layers.diff(ours, theirs, implicit) == []


@needs_root
@needs_umoci
def test_feature_layers_same_as_umoci_with_the_scan(tmp_path, scan):
    _same_as_umoci(tmp_path, _layout(tmp_path, layers.feature_layers()), layers.FEATURE_IMPLICIT)
    # gone/ and gone/a, opaque/old, opaque/sub/ and its older, replace-me, dir-to-file/ and
    # its x, ro-dir/inside, bin/sym (whited out and made again above)
    assert scan == {"skipped": 10, "restarts": 0}


def _removals() -> list[bytes]:
    base = [Raw("usr/", "5", mode=0o755), Raw("usr/share/", "5", mode=0o755),
            Raw("usr/share/man/", "5", mode=0o755), Raw("usr/share/man/ls.1", data=b"ls\n"),
            Raw("usr/share/man/man1/", "5", mode=0o755), Raw("usr/share/man/man1/cp.1", data=b"cp\n"),
            Raw("usr/share/doc/", "5", mode=0o755), Raw("usr/share/doc/keep", data=b"keep\n"),
            Raw("usr/share/doc/drop", data=b"drop\n"), Raw("etc/", "5", mode=0o755),
            Raw("etc/conf", data=b"old\n"), Raw("etc/link", "2", linkname="../usr/share/doc"),
            Raw("etc/link/via-link", data=b"written through the symlink\n"),
            Raw("var/", "5", mode=0o755), Raw("var/cache/", "5", mode=0o755),
            Raw("var/cache/x", data=b"x\n"), Raw("file-then-dir", data=b"f\n")]
    middle = [Raw("usr/share/doc/.wh.drop"), Raw("etc/conf", data=b"new\n"),
              Raw("var/cache/.wh..wh..opq"), Raw("var/cache/y", data=b"y\n"),
              Raw("file-then-dir/", "5", mode=0o700)]
    top = [Raw("usr/share/.wh.man"), Raw("etc/link/.wh.via-link")]  # through the symlink: not matched
    return [raw_tar(base), raw_tar(middle), raw_tar(top)]


@needs_root
@needs_umoci
def test_whiteouts_opaque_and_replacements_skipped_same_as_umoci(tmp_path, scan):
    _same_as_umoci(tmp_path, _layout(tmp_path, _removals()))
    # man/ and its ls.1, man1/ and cp.1, drop, etc/conf, var/cache/x, file-then-dir; via-link
    # is written (a symlink on the way)
    assert scan == {"skipped": 8, "restarts": 0}


@needs_root
@needs_umoci
def test_hardlink_to_a_skipped_file_restarts_without_skipping(tmp_path, scan):
    base = [Raw("d/", "5", mode=0o755), Raw("d/f", data=b"content\n"), Raw("keep", "1", linkname="d/f")]
    tars = [raw_tar(base), raw_tar([Raw(".wh.d")])]
    _same_as_umoci(tmp_path, _layout(tmp_path, tars))
    assert scan["restarts"] == 1
    assert (tmp_path / "ours" / "rootfs" / "keep").read_bytes() == b"content\n"
    # a link in a later layer than the file, to it
    tars = [raw_tar(base[:2]), raw_tar([Raw("keep", "1", linkname="d/f")]), raw_tar([Raw(".wh.d")])]
    lay2 = tmp_path / "two"
    lay2.mkdir()
    _same_as_umoci(lay2, _layout(lay2, tars))
    assert scan["restarts"] == 2


def test_path_through_a_skipped_file_is_refused_as_without_the_scan(tmp_path, scan):
    tars = [raw_tar([Raw("f", data=b"f\n")]), raw_tar([Raw("f/x", data=b"x\n")]), raw_tar([Raw(".wh.f")])]
    _assert_refused(tmp_path, _layout(tmp_path, tars), "f/x: parent f is not a directory")
    assert scan["restarts"] == 1


@needs_root
@needs_umoci
def test_path_through_a_skipped_symlink_restarts(tmp_path, scan):
    """d/s is a symlink out of d, which a later layer removes: what is written through it
    lands outside d and stays."""
    base = [Raw("alive/", "5", mode=0o755), Raw("d/", "5", mode=0o755),
            Raw("d/s", "2", linkname="../alive"), Raw("d/s/f", data=b"stays\n")]
    _same_as_umoci(tmp_path, _layout(tmp_path, [raw_tar(base), raw_tar([Raw(".wh.d")])]))
    assert (tmp_path / "ours" / "rootfs" / "alive" / "f").read_bytes() == b"stays\n"
    assert scan["restarts"] == 1


@needs_root
@needs_umoci
def test_directory_its_own_layer_writes_into_before_removing_restarts(tmp_path, scan):
    """A whiteout hides only what lower layers wrote: a keeps its lower mode and a/y (and,
    unlike umoci's, its lower mtime)."""
    base = [Raw("a/", "5", mode=0o750, uid=1000, mtime=1_600_000_000), Raw("a/x", data=b"x\n")]
    upper = [Raw("a/y", data=b"y\n"), Raw(".wh.a")]
    lay = _layout(tmp_path, [raw_tar(base), raw_tar(upper)])
    _same_as_umoci(tmp_path, lay, umoci=False)
    assert scan["restarts"] == 1
    layers.umoci_unpack(lay, "latest", str(tmp_path / "umoci"))
    theirs = layers.snapshot(str(tmp_path / "umoci" / "rootfs"))
    assert layers.diff(layers.snapshot(str(tmp_path / "ours" / "rootfs")), theirs, {"/a"}) == []


@needs_root
@needs_umoci
def test_directories_removed_then_made_again_and_whiteouts_inside_them(tmp_path, scan):
    base = [Raw("a/", "5", mode=0o700), Raw("a/b/", "5", mode=0o700), Raw("a/b/f", data=b"f\n"),
            Raw("d/", "5", mode=0o755), Raw("d/e/", "5", mode=0o755), Raw("d/e/f", data=b"f\n"),
            Raw("d/e/s", "2", linkname="f")]
    middle = [Raw(".wh.a"), Raw("d/e/.wh.f"), Raw("d/e/.wh..wh..opq")]
    top = [Raw("a/b/g", data=b"g\n"), Raw(".wh.d")]
    _same_as_umoci(tmp_path, _layout(tmp_path, [raw_tar(base), raw_tar(middle), raw_tar(top)]),
                   {"/a", "/a/b"})
    assert scan == {"skipped": 7, "restarts": 0}
    assert (tmp_path / "ours" / "rootfs" / "a" / "b" / "g").read_bytes() == b"g\n"


def test_no_skip_when_a_later_layer_is_corrupt(tmp_path, scan):
    tars = [raw_tar([Raw("d/f", data=b"f\n")]), raw_tar([Raw("d/.wh.f")])]
    lay = str(tmp_path / "layout")
    image = layers.write_image(lay, tars)
    layers.corrupt_blob(lay, image.layers[1].digest)
    _assert_refused(tmp_path, lay, image.layers[1].digest)
    assert scan["skipped"] == 0


def test_scanned_layers_are_inflated_once(tmp_path, scan, monkeypatch):
    """The scan keeps the upper layers' tars it inflated and checked, and they are applied
    from there: each blob is inflated once. A layer past _KEEP_MAX is read again; the
    rootfs is the same either way."""
    inflated = []
    real = unpacker._inflated

    def counting(source, desc):
        inflated.append(desc["digest"])
        return real(source, desc)

    monkeypatch.setattr(unpacker, "_inflated", counting)
    lay = str(tmp_path / "layout")
    image = layers.write_image(lay, _removals())
    digests = [b.digest for b in image.layers]
    unpack(lay, "latest", str(tmp_path / "kept"))
    assert sorted(inflated) == sorted(digests)
    inflated.clear()
    monkeypatch.setattr(unpacker, "_KEEP_MAX", 0)
    unpack(lay, "latest", str(tmp_path / "read-again"))
    assert sorted(inflated) == sorted(digests + digests[1:])
    assert layers.diff(layers.snapshot(str(tmp_path / "kept" / "rootfs")),
                       layers.snapshot(str(tmp_path / "read-again" / "rootfs"))) == []


@pytest.mark.parametrize("fix_diff_id", [True, False])
def test_upper_layer_that_does_not_match_is_refused_with_the_scan(tmp_path, scan, fix_diff_id):
    """What the scan keeps is what matched the digest and the diff_id: an upper layer that
    does not match either is kept by nobody, read again at its turn and refused there,
    and nothing of the bundle stays."""
    import gzip
    tars = [raw_tar([Raw("d/f", data=b"f\n"), Raw("d/g", data=b"g\n")]), raw_tar([Raw("d/.wh.f")])]
    lay = str(tmp_path / "layout")
    image = layers.write_image(lay, tars)
    if fix_diff_id:  # the blob's bytes changed, the descriptors not: its digest differs
        layers.corrupt_blob(lay, image.layers[1].digest)
        match = "does not match its digest"
    else:  # digest and size fixed in the manifest, the config's diff_id not
        layers.rewrite_layer(lay, image, 1, gzip.compress(raw_tar([Raw("d/.wh.g")])),
                             fix_diff_id=False)
        match = "does not match diff_id"
    msg = _assert_refused(tmp_path, lay, match)
    assert "layer" in msg
    assert scan["skipped"] == 0


@pytest.mark.parametrize("case", sorted(HOSTILE_REASONS))
def test_hostile_layer_refused_with_the_scan(tmp_path, scan, case):
    lay = _layout(tmp_path, layers.hostile_corpus()[case])
    _assert_refused(tmp_path, lay, HOSTILE_REASONS[case])


@pytest.mark.parametrize("case", sorted(layers.confined_corpus()))
def test_symlink_tricks_stay_inside_with_the_scan(tmp_path, scan, case):
    tars, inside = layers.confined_corpus()[case]
    lay = _layout(tmp_path, tars)
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep").write_bytes(b"keep")
    unpack(lay, None, str(tmp_path / "b"))
    assert os.listdir(sentinel) == ["keep"]
    assert os.path.lexists(tmp_path / "b" / "rootfs" / inside)


def test_scan_thread_stops_with_the_unpack(tmp_path, monkeypatch):
    """A refused first layer ends the unpack while the scan may still be reading: no
    thread stays behind."""
    import threading
    monkeypatch.setattr(unpacker, "_THREAD_ABOVE", -1)
    big = raw_tar([Raw(f"f{i}", data=os.urandom(1 << 18)) for i in range(16)])
    tars = [raw_tar([Raw("a", data=b"a"), Raw("bad", data=b"x", bad_checksum=True)]
                    + [Raw(f"pad{i}", data=os.urandom(1 << 18)) for i in range(40)]), big]
    with pytest.raises(UnpackError, match="checksum mismatch"):
        unpack(_layout(tmp_path, tars), "latest", str(tmp_path / "b"))
    assert [t.name for t in threading.enumerate() if t.name.startswith("layer-")] == []
